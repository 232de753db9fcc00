"""The events between decode and track: the sink contract of :class:`pcapvpn.decode.Decoder`
(docs/internals.md, "Events").  :class:`NullSink` has a no-op for every event (the base of the
trackers and of partial sinks); :class:`DissectSink` counts what ``--stop-after dissect``
parses; :func:`ike_event` hands one IKE message over (its bounds before its parse).
"""

from __future__ import annotations

from dissect.vpn import ike as _ike
from dissect.vpn.errors import DissectError
from dissect.vpn.udpencap import NAT_T_PORT as _NAT_T

__all__ = ["DissectSink", "EncapFlows", "HEAD_ONLY", "NullSink", "ike_event"]

#: ``IkeMessage.truncated`` of a message read from the first IP fragment of a datagram whose
#: later fragments are not in the capture (they carry no UDP ports, so a port capture filter
#: such as 'udp port 500 or udp port 4500' drops them; or they were lost before the capture
#: point): the header and the payloads that fit, the size from the IKE Length
HEAD_ONLY = "first-fragment"


class NullSink:
    """A sink that ignores every event (base class for partial sinks)."""

    def ike_admit(self, ref, ts, transport, sport, dport, key, size) -> bool:
        """Whether an IKE message whose header shows ``key`` (:func:`dissect.vpn.ike.sa_key`)
        and whose datagram is ``size`` bytes is to be parsed and delivered: the sink's bounds,
        asked before any parse (a flood is not parsed).  False: the sink counted the drop."""
        return True

    def ike(self, ref, ts, ipver, src, dst, sport, dport, transport, msg, frames):
        """One IKE message, parsed: ``msg`` a :class:`dissect.vpn.ike.IkeMessage`."""

    def ike_rejected(self, ref, ts, ipver, src, dst, sport, dport, transport, data, reason,
                     frames):
        """An IKE datagram whose header does not parse (``reason``: fewer than 28 bytes, a major
        version neither 1 nor 2); ``data`` its bytes, as a payload no parser took is kept."""

    def esp(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, length):
        pass

    def esp_batch(self, tag, batch):
        """ESP packets of file ``tag`` a chunk at a time (:class:`dissect.vpn.batch.EspBatch`):
        by default one :meth:`esp` call each; nothing at all when :meth:`esp` ignores them."""
        esp = self.esp
        if getattr(esp, "__func__", None) is NullSink.esp:
            return
        for ev in batch.events(tag):
            esp(*ev)

    def esp_tcp(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, length):
        """ESP carried in an RFC 9329 TCP stream; by default handled like any ESP packet."""
        self.esp(ref, ts, ipver, src, dst, sport, dport, spi, seq, length)

    def ah(self, ref, ts, ipver, src, dst, spi, seq, length):
        pass

    def keepalive(self, ref, ts, ipver, src, dst, sport, dport):
        pass

    def icmp_error(self, ref, ts, ipver, src, dst, icmp_type, icmp_code, mtu, quoted):
        pass

    def fragments_incomplete(self, first_ts, ipver, src, dst, proto, ident, frames, head, why):
        """An IP fragment set that never completed.  ``why``: "timeout" (it waited
        ``frag_timeout`` seconds of capture time), "evicted" (memory bound) or "end" (the capture
        ended first: absence not established)."""

    def esp_fragmented(self, ipver, src, dst, spi, frames, proto):
        """The ESP/AH packet just delivered was reassembled from the IP fragments ``frames``."""

    def tcp_segment(self, ref, ts, ipver, src, dst, sport, dport, flags, length):
        pass

    def decode_error(self, ref, reason):
        pass

    # VPNs beside IPsec (docs/internals.md); ``data[off:end]`` is only valid during the call
    def vpn_udp(self, ref, ts, ipver, src, dst, sport, dport, proto, data, off, end):
        """A UDP datagram that may be ``proto`` ("openvpn", "wireguard", "l2tp", "dtls"): a
        cheap structural candidate; the tracker confirms the flow."""

    def vpn_tcp_segment(self, ref, ts, ipver, src, dst, sport, dport, flags, length, proto,
                        from_client, segments=1):
        """A TCP segment of a followed VPN stream (``proto`` "openvpn", "pptp" or "tls");
        ``segments``: how many segments (frames) it stands for (a TLS stream past its handshake
        is reported every 64th segment, ``length`` their bytes)."""

    def vpn_tcp(self, ref, ts, ipver, src, dst, sport, dport, proto, msg, frames, from_client):
        """One framed message of a VPN TCP stream: an OpenVPN packet (length removed), a PPTP
        control message, or a TLS record (header included)."""

    def plain(self, ref, ts, iface, linktype, cooked, net, data):
        """An IP packet that is none of the VPN traffic the decoder knows (plaintext: a tunnel
        interface, the LAN side of a gateway, traffic that bypasses a tunnel).  ``iface`` the
        frame's global interface index in its file, ``cooked`` :func:`dissect.vpn.link.
        cooked_header` (Linux cooked frames) or None, ``net`` the network tuple of
        :func:`dissect.vpn.link.decode_frame`."""

    def link_other(self, ref, ts, iface, linktype, cooked, data):
        """A frame that carries no IP (ARP, LLDP, ...), with its interface as for :meth:`plain`."""

    def gre(self, ref, ts, ipver, src, dst, call_id, length, seq, ack):
        """An enhanced GRE (PPTP data, RFC 2637 §4.1) packet."""


class DissectSink(NullSink):
    """Benchmarks (``--stop-after dissect``): every IKE message parsed in full (the decoder
    does it, :func:`ike_event`) and counted; ESP has been parsed to its header already."""

    def __init__(self):
        self.ike_messages = 0
        self.ike_errors = 0

    def ike(self, ref, ts, ipver, src, dst, sport, dport, transport, msg, frames):
        self.ike_messages += 1

    def ike_rejected(self, ref, ts, ipver, src, dst, sport, dport, transport, data, reason,
                     frames):
        self.ike_errors += 1


class EncapFlows(dict):
    """UDP flows framed as on port 4500 though on other ports: IKE after a non-ESP marker was
    seen on them (custom NAT-T ports: strongSwan ``port_nat_t``, libreswan ``ikeport``, a
    FortiGate's ``ike-port``).  Both directions of each flow, ``(src, sport, dst, dport) ->
    True``, oldest first.  A sink holds one as ``encap_flows`` and calls :meth:`learn` from its
    ``ike``; the decoder reads it to take the flows' ESP and keepalives
    (:meth:`pcapvpn.decode.Decoder._classify_udp`).  At most ``max_flows`` flows: the oldest
    is forgotten first (and learnt again from its next such IKE message), counted in
    ``evicted`` (``first_evicted``: its ``(ref, ts)``)."""

    def __init__(self, max_flows: int):
        super().__init__()
        self.max_flows = max_flows
        self.evicted = 0
        self.first_evicted = (None, None)

    def learn(self, ref, ts, src, dst, sport, dport, transport, msg) -> None:
        """The IKE message ``msg`` (an ``ike`` event's arguments)."""
        if not msg.marker or transport != "udp" or sport == _NAT_T or dport == _NAT_T:
            return
        key = (src, sport, dst, dport)
        if key in self:
            return
        while len(self) >= 2 * self.max_flows and self:
            old = next(iter(self))
            del self[old]
            self.pop((old[2], old[3], old[0], old[1]), None)
            if not self.evicted:
                self.first_evicted = (ref, ts)
            self.evicted += 1
        self[key] = True
        self[(dst, dport, src, sport)] = True


def ike_event(sink, ref, ts, ipver, src, dst, sport, dport, transport, data, off, end, frames,
              marker=False, head_only=False):
    """The IKE message at ``data[off:end]`` (a UDP payload after any non-ESP marker, or one
    message of a TCP stream) to ``sink``: its fixed header first, the sink's bounds
    (``ike_admit``), and only then the payloads (:func:`dissect.vpn.ike.parse_message`), so
    that a flood the bounds drop is never parsed.  The message goes to ``sink.ike`` (with
    ``msg.marker``: a non-ESP marker preceded it in its UDP datagram); a header that does not
    parse to ``sink.ike_rejected``.  ``head_only``: ``data`` is the first IP fragment of a
    datagram that never completed (:data:`HEAD_ONLY`)."""
    if end - off >= _ike.HEADER_LEN and not sink.ike_admit(
            ref, ts, transport, sport, dport, _ike.sa_key(data, off), end - off):
        return
    try:
        msg = _ike.parse_message(data, off, end)
    except DissectError as e:
        sink.ike_rejected(ref, ts, ipver, src, dst, sport, dport, transport,
                          bytes(data[off:end]), e.reason, frames)
        return
    msg.marker = marker
    if head_only:
        msg.truncated = HEAD_ONLY
    sink.ike(ref, ts, ipver, src, dst, sport, dport, transport, msg, frames)
