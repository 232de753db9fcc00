"""Frames → VPN events.

The decoder takes Frames from :mod:`pcapvpn.sources`, lets :mod:`dissect.vpn` parse link, IP and
VPN headers, reassembles IP fragments and TCP streams on VPN ports (the only state kept here), and
calls the sink's event methods (see docs/internals.md).  It never interprets what the events mean:
that is :mod:`pcapvpn.track`'s job.

Bounds (all in :class:`Limits`): fragment sets expire after ``frag_timeout`` seconds of capture
time and are capped in number and bytes; TCP streams are capped in number, buffered bytes and
out-of-order segments; the trackers' SAs, messages and flows and the report's lists have their
bounds there too.  Whatever is dropped because of a bound is counted, never silent.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass

from dissect.vpn import esp as _esp
from dissect.vpn import fast as _fast
from dissect.vpn import ike as _ike
from dissect.vpn import ip as _ip
from dissect.vpn import l2tp as _l2tp
from dissect.vpn import link as _link
from dissect.vpn import openvpn as _openvpn
from dissect.vpn import pptp as _pptp
from dissect.vpn import tcpencap as _tcpencap
from dissect.vpn import tls as _tls
from dissect.vpn import udpencap as _udpencap
from dissect.vpn import wireguard as _wg
from dissect.vpn.errors import DissectError
from dissect.vpn.ip import IpProto, Port
from pcapvpn.tcp_reassembly import SYN, TcpReassembler

__all__ = ["Decoder", "DissectSink", "Limits", "NullSink", "VPN_TCP_PORTS", "VPN_TCP_SERVICES",
           "ike_event"]

#: TCP ports whose streams are reassembled: RFC 9329 IKE/ESP over TCP is usually on 4500 (its
#: suggested port) or 500; 443/1194/1723 are added by the other VPN protocols.
VPN_TCP_PORTS = frozenset((Port.IKE, Port.NAT_T))

#: TCP streams of the VPNs beside IPsec, by server port: OpenVPN (IANA 1194), PPTP (RFC 2637,
#: 1723), TLS for SSL-VPNs (443; FortiGate 10443, SonicWall 4433).  OpenVPN over TCP is also
#: recognised on any port by its first packet; a TLS port whose client speaks OpenVPN is OpenVPN.
VPN_TCP_SERVICES = {Port.OPENVPN: "openvpn", Port.PPTP: "pptp", Port.HTTPS: "tls",
                    Port.FORTIGATE_SSLVPN: "tls", Port.SONICWALL_SSLVPN: "tls"}
#: L2TP (RFC 2661 §8.1) is known by its port; the other UDP VPNs by structure on any port
L2TP_PORT = _l2tp.PORT
#: IP protocol numbers as plain ints for the per-frame dispatch (dissect.vpn.number)
_P_ICMP, _P_TCP, _P_UDP, _P_GRE, _P_ESP, _P_AH, _P_ICMPV6 = (int(p) for p in (
    IpProto.ICMP, IpProto.TCP, IpProto.UDP, IpProto.GRE, IpProto.ESP, IpProto.AH, IpProto.ICMPV6))
#: ports that carry no VPN (DNS, DHCP, NTP, NetBIOS, SNMP, syslog, SSDP, mDNS, LLMNR): skipped
#: before any VPN classification
_NOT_VPN_PORTS = frozenset((53, 67, 68, 123, 137, 138, 161, 162, 514, 1900, 5353, 5355))
#: application_data records delivered per TLS direction before the stream is only counted
_TLS_APPDATA_RECORDS = 4

#: the reason counted for errors beyond ``Limits.max_error_reasons`` distinct ones
OTHER_REASONS = "other reasons (too many distinct ones to list)"

_ESP = _udpencap.ESP
_IKE = _udpencap.IKE
_KEEPALIVE = _udpencap.KEEPALIVE
_MALFORMED = _udpencap.MALFORMED


@dataclass
class Limits:
    """Memory and time bounds of the decoder's state.  Whatever a bound drops is counted
    (:meth:`Decoder.counters`, the capture summary's counts)."""

    #: seconds a fragment set may wait for its missing pieces (Linux ``ipfrag_time`` is 30 s).
    frag_timeout: float = 30.0
    #: concurrent fragment sets; the oldest is given up when a new one would exceed it.
    frag_max_sets: int = 4096
    #: bytes buffered over all fragment sets.
    frag_max_bytes: int = 32 * 1024 * 1024
    #: TCP stream directions followed (the least recently active is forgotten beyond it).
    tcp_max_streams: int = 4096
    #: bytes buffered per TCP direction awaiting a complete message (the largest RFC 9329 or
    #: OpenVPN message is 64 KiB; a TLS record 16 KiB + 2 KiB).
    tcp_max_buffer: int = 256 * 1024
    #: out-of-order segments held per TCP direction, and their bytes: beyond either, the first
    #: hole is given up (pcapvpn.tcp_reassembly).
    tcp_max_ooo: int = 64
    tcp_max_ooo_bytes: int = 256 * 1024
    #: bytes held over all TCP directions (buffered + out of order): beyond it the least recently
    #: active directions holding bytes are forgotten.  With the per-direction bounds above, TCP
    #: reassembly never holds more than this, whatever the number of streams.
    tcp_max_bytes: int = 32 * 1024 * 1024

    # -- what the trackers keep (pcapvpn.track) and the report lists.  A hostile capture (a
    # flood of SPIs or of IKE_SA_INITs, garbage) must not make an analysis grow without bound:
    # each container that grows with the input has a count bound, and a byte bound where its
    # elements vary in size (else the count times the element's own bound).  What a bound
    # drops is counted and reported by the CAPTURE_LIMITS finding, so the verdict can say what
    # it could not see.
    #: IKE SAs tracked (about 5 KB each with their first messages); messages of further IKE
    #: SAs are counted from their 28-byte header only, not parsed nor kept.
    ike_max_sas: int = 10_000
    #: IKE messages kept over all IKE SAs (parsed: 2-5 KB each).
    ike_max_messages: int = 40_000
    #: bytes of IKE messages kept (their size on the wire) over all IKE SAs.
    ike_max_bytes: int = 32 * 1024 * 1024
    #: IKE messages kept per IKE SA (copies, SKF fragments, a long series of exchanges).
    ike_max_messages_per_sa: int = 4_000
    #: ESP/AH SAs tracked (1.5-6 KB each: their gaps, moves and time bins are bounded);
    #: packets of further SAs are counted only.
    esp_max_sas: int = 50_000
    #: tunnels of the VPNs beside IPsec (OpenVPN, WireGuard, L2TP, PPTP, SSL-VPN) tracked (a
    #: few KB each: their connections and evidence lists are bounded); events of further ones
    #: are counted only.
    vpn_max_tunnels: int = 20_000
    #: NAT keepalive flows, TCP connections on VPN ports, ICMP errors and incomplete fragment
    #: sets kept, each (a few hundred bytes each; frame references per flow bounded).
    max_flows: int = 10_000
    #: decode / IKE parse errors listed with their frame (all are counted).
    max_error_samples: int = 1_000
    #: distinct decode / IKE parse error reasons counted by name (further ones are counted
    #: together as "other reasons").
    max_error_reasons: int = 200
    #: objects listed in full per list of the report (tunnels, IKE SAs, ESP SAs, NAT keepalive
    #: flows, files, the messages and exchanges of one IKE SA, the findings of one code and
    #: severity, the SAs, findings and notes of one tunnel); the others are counted under
    #: "omitted" in JSON.
    report_max_items: int = 1_000

    def with_overrides(self, items: dict) -> "Limits":
        """A copy with ``{name: text}`` applied (``analyze --limit NAME=VALUE``); ValueError
        names the bad item and the valid range."""
        import dataclasses

        known = {f.name for f in dataclasses.fields(self)}
        values = {}
        for k, v in items.items():
            if k not in known:
                raise ValueError(f"unknown limit {k!r} (known: {', '.join(sorted(known))})")
            cur = getattr(self, k)
            try:
                x = type(cur)(v)
            except ValueError:
                raise ValueError(f"limit {k} needs a {type(cur).__name__}, got {v!r}") from None
            if not x > 0 or x != x or x == float("inf"):
                raise ValueError(f"limit {k} must be a positive finite number, got {v!r}")
            values[k] = x
        return dataclasses.replace(self, **values)


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


def ike_event(sink, ref, ts, ipver, src, dst, sport, dport, transport, data, off, end, frames):
    """The IKE message at ``data[off:end]`` (a UDP payload after any non-ESP marker, or one
    message of a TCP stream) to ``sink``: its fixed header first, the sink's bounds
    (``ike_admit``), and only then the payloads (:func:`dissect.vpn.ike.parse_message`), so
    that a flood the bounds drop is never parsed.  The message goes to ``sink.ike``; a header
    that does not parse to ``sink.ike_rejected``."""
    if end - off >= _ike.HEADER_LEN and not sink.ike_admit(
            ref, ts, transport, sport, dport, _ike.sa_key(data, off), end - off):
        return
    try:
        msg = _ike.parse_message(data, off, end)
    except DissectError as e:
        sink.ike_rejected(ref, ts, ipver, src, dst, sport, dport, transport,
                          bytes(data[off:end]), e.reason, frames)
        return
    sink.ike(ref, ts, ipver, src, dst, sport, dport, transport, msg, frames)


class _FragSet:
    __slots__ = ("first_ts", "last_ts", "pieces", "total", "nbytes", "frames",
                 "ipver", "src", "dst", "proto", "ident")

    def __init__(self, ts, ipver, src, dst, proto, ident):
        self.first_ts = ts
        self.last_ts = ts
        self.pieces = []  # (offset, bytes)
        self.total = -1  # known once the last fragment (MF clear) arrived
        self.nbytes = 0
        self.frames = []
        self.ipver = ipver
        self.src = src
        self.dst = dst
        self.proto = proto
        self.ident = ident

    def complete(self):
        """Return the reassembled payload when every byte 0..total is present, else None."""
        total = self.total
        if total < 0:
            return None
        pieces = sorted(self.pieces)
        covered = 0
        for off, chunk in pieces:
            if off > covered:
                return None
            e = off + len(chunk)
            if e > covered:
                covered = e
        if covered < total:
            return None
        buf = bytearray(total)
        for off, chunk in pieces:  # later (overlapping) copies win, as in most stacks
            n = min(len(chunk), total - off)
            if n > 0:
                buf[off:off + n] = chunk[:n]
        return bytes(buf)

    def first_piece(self):
        for off, chunk in self.pieces:
            if off == 0:
                return chunk
        return None


#: _IkeTcp.framing of a direction that is not TCP-encapsulated IKE/ESP (segments counted only)
_NOT_IKE = -2
#: message boundaries looked for at this many segment starts (joined mid-stream, after a gap)
_IKE_TCP_TRIES = 8
#: bytes a framing proof may wait for: a Length-framed ESP packet announces up to 65,535 bytes,
#: and the proof reads the next packet's header after it
_IKE_TCP_PROBE = 65535 + 10


class _IkeTcp:
    """The framing state of one direction of a TCP stream of IKE/ESP (RFC 9329 and the unframed
    variants, :mod:`dissect.vpn.tcpencap`)."""

    __slots__ = ("framing", "prefix", "loose", "proven", "tries")

    def __init__(self, loose):
        self.framing = None   # tcpencap.FRAMED / MARKER / RAW; None: looking for it; _NOT_IKE
        self.prefix = True    # the IKETCP prefix may still come (the stream's first bytes)
        #: an IKE port, or the other direction is IKE/ESP: the weaker proofs of
        #: tcpencap.probe count (else only the IKETCP prefix or a framed IKE message)
        self.loose = loose
        self.proven = False   # the prefix or a framing was seen: framing errors are real
        self.tries = 0

    def restart(self):
        """A SYN: a new connection on these ports."""
        self.framing = None
        self.prefix = True
        self.tries = 0


class _VpnTcp:
    """The framing state of one direction of a TCP stream of a VPN beside IPsec (OpenVPN, PPTP,
    TLS)."""

    __slots__ = ("vproto", "from_client", "done", "synced", "appdata", "resyncs", "quiet",
                 "quiet_bytes", "quiet_n", "prefix_checked")

    def __init__(self, vproto, from_client):
        self.vproto = vproto
        self.from_client = from_client
        self.done = False      # framing given up, or a TLS handshake over: segments counted only
        self.synced = False    # began with its SYN (no gap since): framing errors are real
        self.appdata = 0
        self.resyncs = 0
        self.quiet = 0         # segments of a finished TLS stream not reported one by one
        self.quiet_bytes = 0
        self.quiet_n = 0       # of them, not reported yet
        self.prefix_checked = False


def _iketcp_start(data, poff, end) -> bool:
    """A TCP payload on a port that is not an IKE port starts IKE over TCP: the IKETCP prefix, or
    an RFC 9329 frame carrying an IKE message whose two lengths agree."""
    prefix = _tcpencap.IKETCP_PREFIX
    if data[poff:poff + len(prefix)] == prefix:
        return True
    return (end - poff >= 34 and data[poff + 2:poff + 6] == b"\x00\x00\x00\x00"
            and _tcpencap.probe(memoryview(data)[poff:end], 0) == _tcpencap.FRAMED)


def _bound(sink, name):
    """``sink.name`` unless it is :class:`NullSink`'s no-op (or missing): None then."""
    f = getattr(sink, name, None)
    if f is None or getattr(f, "__func__", None) is getattr(NullSink, name):
        return None
    return f


def _split_iface(frames, cur):
    """Frames with their interface appended: yield the frame, its interface into ``cur[0]``."""
    for fr in frames:
        cur[0] = fr[7]
        yield fr[:7]


_cooked = _link.cooked_header


class Decoder:
    """Decode frames and feed events to ``sink``."""

    def __init__(self, sink, limits: Limits | None = None, tcp_ports=VPN_TCP_PORTS,
                 vpn_servers=()):
        self.sink = sink
        self.limits = limits or Limits()
        self.tcp_ports = frozenset(tcp_ports)
        # counters (reported in the capture summary)
        self.frames = 0
        self.non_ip = 0
        self.truncated = 0  # captured length < original length
        self.decode_errors = 0
        self.errors_by_reason = Counter()
        self.fragment_frames = 0
        self.reassembled = 0
        self.frag_incomplete = 0
        self.frag_evicted = 0
        self.tcp_segments = 0
        #: directions on the IKE TCP ports whose bytes are no IKE/ESP framing (Cisco cTCP, other)
        self.tcp_streams_unrecognised = 0
        self.other = 0
        self._frags: OrderedDict = OrderedDict()
        self._frag_bytes = 0
        #: every followed TCP stream, IKE/ESP and the other VPNs alike (one policy)
        self.tcp = TcpReassembler(self.limits)
        #: the capture's clock: the latest timestamp of any frame so far, ESP of the fast paths
        #: included.  Fragment sets expire when it passes ``_frag_deadline`` (the oldest set's
        #: first fragment + frag_timeout; inf: none pending), checked on every frame of the
        #: general path and at the end: the outcome does not depend on which frames took a fast
        #: path, nor (batches) on when their ESP was handed over
        self._clock = float("-inf")
        self._frag_deadline = float("inf")
        #: --vpn-server ADDR:PORT (packed address, port): TLS streams followed on that port too
        self._named_tcp = {(a, p): "tls" for a, p in vpn_servers if p is not None}
        self.vpn_frames = 0
        #: frames handed over as plaintext (``sink.plain``): IP that is no known VPN traffic
        self.plain_frames = 0
        # the plaintext events, None when the sink ignores them (nothing extra per frame)
        self._plain = _bound(sink, "plain")
        self._link_other = _bound(sink, "link_other")
        # plaintext TCP decoded by the reader (_plain_tcp): the sink's event, else plain()
        # through the general path
        self._plain_tcp_sink = getattr(sink, "plain_tcp", None) if self._plain is not None \
            else None
        #: ports whose TCP the lane leaves to the general path: the ones _tcp follows, and DNS
        #: (the sink reads DNS over TCP from the frame's bytes)
        self._lane_ports = self.tcp_ports | frozenset(VPN_TCP_SERVICES) | {53}

    # -- errors --------------------------------------------------------------------------------

    def _error(self, ref, reason):
        self.decode_errors += 1
        by = self.errors_by_reason
        key = reason
        if key not in by and len(by) >= self.limits.max_error_reasons:
            key = OTHER_REASONS
        by[key] += 1
        self.sink.decode_error(ref, reason)

    # -- the hot loop --------------------------------------------------------------------------

    def run(self, frames, interfaces: bool = False):
        """Decode every frame of the iterable ``frames`` (see :mod:`pcapvpn.sources`);
        ``interfaces``: the frames carry their interface as an eighth field
        (``Source.frames(interfaces=True)``)."""
        esp_fast = _fast.esp_frame
        general = self._general
        cur = [0]  # the interface of the frame being decoded
        if interfaces:
            frames = _split_iface(frames, cur)
        sink = self.sink
        sink_esp = sink.esp
        # --keys: ESP of keyed SPIs also goes to sink.esp_payload (None: one test per packet)
        keyed = getattr(sink, "keyed_spis", None) or None
        esp_payload = sink.esp_payload if keyed is not None else None
        n = 0
        truncated = 0
        for fidx, num, ts, linktype, data, wirelen, off in frames:
            n += 1
            if wirelen > len(data):
                truncated += 1
            r = esp_fast(linktype, data)
            if r is not None:
                if ts > self._clock:
                    self._clock = ts
                src, dst, sport, dport, a, b, ln = r
                sink_esp((fidx, num), ts, 4, src, dst, sport, dport, a, b, ln)
                if keyed is not None and a in keyed:
                    # dissect.vpn.fast: link header + IPv4 (+ UDP)
                    e = _fast.IP_OFFSET[linktype] + (20 if sport < 0 else 28) + ln
                    esp_payload((fidx, num), ts, 4, src, dst, sport, dport, a, b, data, e - ln, e)
                continue
            general(fidx, num, ts, linktype, data, wirelen, off, cur[0])
        self.frames += n
        self.truncated += truncated

    def run_source(self, source, on_progress=None, batch=True):
        """Decode one :class:`pcapvpn.sources.Source` by pushing (the single-file hot path): ESP
        of the common shape goes from the reader straight to ``sink.esp_batch`` (Ethernet pcap:
        a chunk at a time, :mod:`dissect.vpn.batch`) or ``sink.esp``, with no frame tuple and no
        copy (:meth:`dissect.vpn.capture._Reader.walk`); every other frame to the general path.
        ``batch=False``: one ``sink.esp`` call per packet (the same events, slower).  With
        ``--keys`` (the sink has ``keyed_spis``) the ESP bytes are needed: then this is
        :meth:`run` over the source's frames."""
        if getattr(self.sink, "keyed_spis", None):
            self.run(source.frames(interfaces=True), interfaces=True)
            return
        sink_esp = self.sink.esp
        sink_batch = getattr(self.sink, "esp_batch", None) if batch else None

        def on_esp(ref, ts, *rest):
            if ts > self._clock:
                self._clock = ts
            sink_esp(ref, ts, *rest)

        def on_batch(tag, b):
            last = float(b.ts.max())
            if last > self._clock:
                self._clock = last
            sink_batch(tag, b)

        source.walk(on_esp, self._general, on_progress,
                    on_batch if sink_batch is not None else None,
                    (self._lane_ports, self._plain_tcp) if sink_batch is not None and (
                        self._plain is None or self._plain_tcp_sink is not None) else None)
        self.frames += source.frame_count
        st = getattr(source.reader, "walk_stats", None) or {}
        self.truncated += st.get("truncated", 0)
        last = st.get("last_ts")
        if last is not None and last > self._clock:
            self._clock = last

    def _general(self, fidx, num, ts, linktype, data, wirelen, _off, iface=0):
        """Every frame that is not ESP of the common shape (:mod:`dissect.vpn.fast`);
        ``iface`` its global interface index in its file."""
        if ts > self._clock:
            self._clock = ts
        if self._clock >= self._frag_deadline:
            self._expire_fragments(self._clock)
        sink = self.sink
        keyed = getattr(sink, "keyed_spis", None) or None
        try:
            r = _link.decode_frame(linktype, data)
            if r is None:
                self.non_ip += 1
                if self._link_other is not None:
                    self._link_other((fidx, num), ts, iface, linktype,
                                     _cooked(linktype, data), data)
                return
            ipver, src, dst, proto, sport, dport, l4off, end, frag_off, mf, ident, _h = r
            if frag_off or mf:
                self._fragment((fidx, num), ts, r, data)
                return
            vpn = True
            if proto == _P_UDP:
                if sport < 0:
                    self._error((fidx, num), "UDP header truncated")
                    return
                poff = l4off + 8
                kind, a, b = _udpencap.classify_udp(sport, dport, data, poff, end)
                if kind == _ESP:
                    sink.esp((fidx, num), ts, ipver, src, dst, sport, dport, a, b, end - poff)
                    if keyed is not None and a in keyed:
                        sink.esp_payload((fidx, num), ts, ipver, src, dst, sport, dport, a, b,
                                         data, poff, end)
                    return
                vpn = self._udp_other((fidx, num), ts, ipver, src, dst, sport, dport, kind, a,
                                      data, poff, end, ((fidx, num),))
            elif proto == _P_ESP:
                spi, seq = _esp.parse_esp(data, l4off, end)
                sink.esp((fidx, num), ts, ipver, src, dst, -1, -1, spi, seq, end - l4off)
                if keyed is not None and spi in keyed:
                    sink.esp_payload((fidx, num), ts, ipver, src, dst, -1, -1, spi, seq, data,
                                     l4off, end)
            else:
                vpn = self._other_proto((fidx, num), ts, ipver, src, dst, proto, sport, dport,
                                        data, l4off, end)
            if not vpn and self._plain is not None:
                self.plain_frames += 1
                self._plain((fidx, num), ts, iface, linktype, _cooked(linktype, data), r, data)
        except DissectError as e:
            self._error((fidx, num), e.reason)
        except Exception as e:  # a dissector bug must not end the analysis: count it
            self._error((fidx, num), f"internal decoder error ({type(e).__name__}: {e})")

    def _plain_tcp(self, tag, linktype, ifaces, buf, run) -> bool:
        """A run of IPv4 TCP segments whose headers the reader decoded
        (:meth:`dissect.vpn.capture.PcapReader.walk`'s ``on_tcp``: none on the ports
        ``_lane_ports``, none whose payload may start a VPN stream): plaintext straight to the
        sink's ``plain_tcp`` when none of them belongs to a TCP stream the decoder follows (what
        :meth:`_tcp` would find); else False (the reader hands them to the general path)."""
        dirs = self.tcp.dirs
        if self._named_tcp:
            return False
        if dirs:
            a = run["arrays"]
            for s, sp, d, dp in zip(a["src"].tolist(), a["sport"].tolist(), a["dst"].tolist(),
                                    a["dport"].tolist()):
                s, d = s.to_bytes(4, "big"), d.to_bytes(4, "big")
                if (s, sp, d, dp) in dirs or (d, dp, s, sp) in dirs:
                    return False
        ts = run["ts"]
        last = max(ts)
        if last > self._clock:
            self._clock = last
        if self._clock >= self._frag_deadline:
            self._expire_fragments(self._clock)
        self.other += len(ts)
        if self._plain_tcp_sink is not None:
            self.plain_frames += len(ts)
            try:
                self._plain_tcp_sink(tag, linktype, ifaces, buf, run)
            except Exception as e:  # as in _general: a bug must not end the analysis
                self._error((tag, run["number"][0]),
                            f"internal decoder error ({type(e).__name__}: {e})")
        return True

    # -- slow paths ----------------------------------------------------------------------------

    def _esp_payload(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, data, off, end):
        """--keys: the ESP bytes of a keyed SPI (reassembled, AH+ESP and TCP paths)."""
        keyed = getattr(self.sink, "keyed_spis", None)
        if keyed and spi in keyed:
            self.sink.esp_payload(ref, ts, ipver, src, dst, sport, dport, spi, seq, data, off, end)

    def _udp_other(self, ref, ts, ipver, src, dst, sport, dport, kind, a, data, poff, end,
                   frames) -> bool:
        """IKE, NAT keepalives, malformed datagrams on the IKE ports and the VPNs beside
        IPsec; False when the datagram is none of them (plaintext)."""
        if kind == _IKE:
            ike_event(self.sink, ref, ts, ipver, src, dst, sport, dport, "udp", data, a, end,
                      frames)
        elif kind == _KEEPALIVE:
            self.sink.keepalive(ref, ts, ipver, src, dst, sport, dport)
        elif kind == _MALFORMED:
            self._error(ref, f"UDP {dport if dport in VPN_TCP_PORTS else sport} payload of "
                             f"{end - poff} bytes is neither ESP, IKE nor a NAT keepalive")
        else:
            self.other += 1
            return self._vpn_udp(ref, ts, ipver, src, dst, sport, dport, data, poff, end)
        return True

    def _other_proto(self, ref, ts, ipver, src, dst, proto, sport, dport, data, l4off,
                     end) -> bool:
        """AH, ICMP, TCP, GRE and the rest; False when the packet is plaintext (no VPN
        traffic; ICMP errors are both: they may quote a VPN flow or an inner one)."""
        sink = self.sink
        if proto == _P_AH:
            nh, plen, spi, seq, icv = _esp.parse_ah(data, l4off, end)
            sink.ah(ref, ts, ipver, src, dst, spi, seq, end - l4off)
            if nh == _P_ESP:
                # AH+ESP (RFC 4302 §3.1: Payload Length is the AH length in 32-bit words - 2)
                eoff = l4off + (plen + 2) * 4
                spi, seq = _esp.parse_esp(data, eoff, end)
                sink.esp(ref, ts, ipver, src, dst, -1, -1, spi, seq, end - eoff)
                self._esp_payload(ref, ts, ipver, src, dst, -1, -1, spi, seq, data, eoff, end)
        elif proto == _P_ICMP or proto == _P_ICMPV6:
            r = _ip.decode_icmp_error(data, l4off, end, ipver)
            if r is not None:
                icmp_type, icmp_code, mtu, quoted = r
                sink.icmp_error(ref, ts, ipver, src, dst, icmp_type, icmp_code, mtu, quoted)
            else:
                self.other += 1
            return False
        elif proto == _P_TCP:
            return self._tcp(ref, ts, ipver, src, dst, data, l4off, end)
        elif proto == _P_GRE:
            self.other += 1
            if _pptp.looks_like_gre(data, l4off, end):
                call, plen, gseq, gack, _p = _pptp.parse_gre(data, l4off, end)
                self.vpn_frames += 1
                sink.gre(ref, ts, ipver, src, dst, call, plen, gseq, gack)
                return True
            return False
        else:
            self.other += 1
            return False
        return True

    # -- IP fragments --------------------------------------------------------------------------

    def _fragment(self, ref, ts, r, data):
        ipver, src, dst, proto, sport, dport, l4off, end, frag_off, mf, ident, _h = r
        self.fragment_frames += 1
        lim = self.limits
        key = (ipver, src, dst, proto if ipver == 4 else 0, ident)
        fs = self._frags.get(key)
        if fs is None:
            while len(self._frags) >= lim.frag_max_sets:
                self._give_up(self._frags.popitem(last=False)[1], "evicted")
            self._new_deadline()
            fs = self._frags[key] = _FragSet(ts, ipver, src, dst, proto, ident)
            if len(self._frags) == 1:
                self._frag_deadline = ts + lim.frag_timeout
        chunk = bytes(data[l4off:end])
        if self._frag_bytes + len(chunk) > lim.frag_max_bytes:
            while self._frags and self._frag_bytes + len(chunk) > lim.frag_max_bytes:
                k, old = next(iter(self._frags.items()))
                if old is fs:
                    break
                del self._frags[k]
                self._give_up(old, "evicted")
            self._new_deadline()
        fs.pieces.append((frag_off, chunk))
        fs.nbytes += len(chunk)
        self._frag_bytes += len(chunk)
        fs.frames.append(ref)
        fs.last_ts = ts
        if frag_off == 0 and ipver == 6:
            fs.proto = proto
        if not mf:
            fs.total = frag_off + len(chunk)
        payload = fs.complete()
        if payload is None:
            return
        del self._frags[key]
        self._new_deadline()
        self._frag_bytes -= fs.nbytes
        self.reassembled += 1
        self._reassembled(ref, ts, fs, payload)

    def _reassembled(self, ref, ts, fs, payload):
        """Dispatch a reassembled datagram (``payload`` = transport header + data)."""
        frames = tuple(fs.frames)
        ipver, src, dst, proto = fs.ipver, fs.src, fs.dst, fs.proto
        end = len(payload)
        if proto == _P_UDP:
            sport, dport, poff = _ip.decode_udp(payload, 0, end)
            kind, a, b = _udpencap.classify_udp(sport, dport, payload, poff, end)
            if kind == _ESP:
                self.sink.esp(ref, ts, ipver, src, dst, sport, dport, a, b, end - poff)
                self._esp_payload(ref, ts, ipver, src, dst, sport, dport, a, b, payload, poff, end)
                self.sink.esp_fragmented(ipver, src, dst, a, frames, "esp")
            else:
                self._udp_other(ref, ts, ipver, src, dst, sport, dport, kind, a, payload, poff,
                                end, frames)
        elif proto == _P_ESP:
            spi, seq = _esp.parse_esp(payload, 0, end)
            self.sink.esp(ref, ts, ipver, src, dst, -1, -1, spi, seq, end)
            self._esp_payload(ref, ts, ipver, src, dst, -1, -1, spi, seq, payload, 0, end)
            self.sink.esp_fragmented(ipver, src, dst, spi, frames, "esp")
        else:
            self._other_proto(ref, ts, ipver, src, dst, proto, -1, -1, payload, 0, end)
            if proto == _P_AH and end >= 8:
                spi = _esp.parse_ah(payload, 0, end)[2]
                self.sink.esp_fragmented(ipver, src, dst, spi, frames, "ah")

    def _give_up(self, fs, why):
        self._frag_bytes -= fs.nbytes
        self.frag_incomplete += 1
        if why == "evicted":
            self.frag_evicted += 1
        self.sink.fragments_incomplete(fs.first_ts, fs.ipver, fs.src, fs.dst, fs.proto, fs.ident,
                                       tuple(fs.frames),
                                       _udpencap.fragment_head(fs.proto, fs.first_piece()), why)

    def _expire_fragments(self, now):
        limit = now - self.limits.frag_timeout
        frags = self._frags
        while frags:
            key, fs = next(iter(frags.items()))
            if fs.first_ts > limit:
                break
            del frags[key]
            self._give_up(fs, "timeout")
        self._new_deadline()

    def _new_deadline(self):
        """The oldest pending set (in arrival order) decides when the next expiry is due."""
        frags = self._frags
        self._frag_deadline = (next(iter(frags.values())).first_ts + self.limits.frag_timeout
                               if frags else float("inf"))

    # -- TCP -----------------------------------------------------------------------------------

    def _tcp(self, ref, ts, ipver, src, dst, data, l4off, end):
        """A TCP segment: followed when it belongs to IKE/ESP (the IKE ports, or any port once
        the IKETCP prefix or a framed IKE message shows it) or to a VPN beside IPsec; reassembled
        by :class:`pcapvpn.tcp_reassembly.TcpReassembler`."""
        sport, dport, seq, ack, flags, poff = _ip.decode_tcp(data, l4off, end)
        key = (src, sport, dst, dport)
        tcp = self.tcp
        d = tcp.get(key)
        if d is None:
            app = self._tcp_app(src, sport, dst, dport, data, poff, end)
            if app is None:
                self.other += 1
                return False
            d = tcp.open(key, (ipver, src, dst, sport, dport), app)
        app = d.app
        if app.__class__ is _IkeTcp:
            self.tcp_segments += 1
            self.sink.tcp_segment(ref, ts, ipver, src, dst, sport, dport, flags, end - poff)
            if flags & SYN:
                app.restart()
            elif app.framing == _NOT_IKE:
                tcp.touch(d)
                return True
        else:
            self.other += 1
            if not self._vpn_tcp_segment(d, ref, ts, flags, end - poff):
                tcp.touch(d)
                return app.vproto != "tls"
        for x in tcp.segment(d, seq, ack, flags, data, poff, end, ref):
            if x.app.__class__ is _IkeTcp:
                self._ike_tcp_deliver(x, ref, ts)
            else:
                self._vpn_tcp_deliver(x, ref, ts)
        # TLS on 443 is an SSL-VPN or ordinary HTTPS: the plaintext view sees it too
        return app.__class__ is _IkeTcp or app.vproto != "tls"

    def _tcp_app(self, src, sport, dst, dport, data, poff, end):
        """The framing state of a new direction, or None (the stream is not followed)."""
        rev = self.tcp.get((dst, dport, src, sport))
        if rev is not None:
            if rev.app.__class__ is _IkeTcp:
                return _IkeTcp(True)
            return _VpnTcp(rev.app.vproto, not rev.app.from_client)
        if sport in self.tcp_ports or dport in self.tcp_ports:
            return _IkeTcp(True)
        svc = self._tcp_service(src, sport, dst, dport)
        if svc is not None:
            return _VpnTcp(*svc)
        if poff < end:
            if _iketcp_start(data, poff, end):
                return _IkeTcp(False)  # IKE over TCP on another port
            if _openvpn.tcp_stream_start(data, poff, end):
                return _VpnTcp("openvpn", True)  # OpenVPN over TCP on any port
        return None

    def _ike_tcp_deliver(self, d, ref, ts):
        """IKE messages and ESP packets of a TCP stream; ``ref``: the segment whose arrival
        completed them (their event frame)."""
        st = d.app
        tcp = self.tcp
        if d.gap:  # bytes were skipped: find a message boundary again
            d.gap = False
            st.prefix = False
            if st.framing is not None:
                st.framing = None
        if st.framing == _NOT_IKE:
            return
        buf = d.buf
        start = 0
        if st.framing is None:
            prefix = _tcpencap.IKETCP_PREFIX
            if st.prefix:
                if len(buf) < len(prefix) and prefix.startswith(bytes(buf)):
                    return
                st.prefix = False
                if buf.startswith(prefix):
                    start = len(prefix)
                    self._ike_tcp_proven(d)
            framing = _tcpencap.probe(buf, start, not st.loose)
            if (framing <= _tcpencap.NONE and start and len(buf) - start >= 2
                    and buf[start:start + 2] != b"\x00\x00"):
                framing = _tcpencap.FRAMED  # after the prefix a Length (never 0, RFC 9329 §3)
            if framing <= _tcpencap.NONE:
                cisco = _tcpencap.cisco_trailer(buf, start, len(buf))
                if framing == _tcpencap.NEED and not cisco and len(buf) - start < _IKE_TCP_PROBE:
                    if start:
                        tcp.consume(d, start)
                    return
                self._ike_tcp_unframed(d, ref, cisco, start > 0)
                return
            st.framing = framing
            self._ike_tcp_proven(d)
        try:
            messages, consumed = _tcpencap.split(buf, start, st.framing)
        except DissectError as e:
            self._error(d.frames[-1] if d.frames else ref, "TCP-encapsulated stream: " + e.reason)
            st.framing = None
            st.tries += 1
            tcp.discard(d)
            if st.tries > _IKE_TCP_TRIES:
                self._ike_tcp_stop(d)
            return
        if messages:
            st.tries = 0
        sink = self.sink
        ipver, src, dst, sport, dport = d.addr
        frames = tuple(sorted(set(d.frames)))
        for kind, off, mend, spi, seq in messages:
            if kind == _IKE:
                ike_event(sink, ref, ts, ipver, src, dst, sport, dport, "tcp", buf, off, mend,
                          frames)
            elif kind == _ESP:
                sink.esp_tcp(ref, ts, ipver, src, dst, sport, dport, spi, seq, mend - off)
                self._esp_payload(ref, ts, ipver, src, dst, sport, dport, spi, seq,
                                  bytes(buf[off:mend]), 0, mend - off)
            else:
                self._error(ref, "TCP-encapsulated message is neither IKE nor ESP")
        tcp.consume(d, start + consumed)

    def _ike_tcp_proven(self, d):
        """The IKETCP prefix or a framing was seen: this direction and the other are IKE/ESP."""
        d.app.proven = d.app.loose = True
        rev = self.tcp.get(d.rkey)
        if rev is not None and rev.app.__class__ is _IkeTcp:
            rev.app.loose = True

    def _ike_tcp_unframed(self, d, ref, cisco, after_prefix):
        """No message boundary at the start of the buffer: try the next segment start (joined
        mid-stream, or after a gap: a segment need not start a message), unless the stream began
        here and its first bytes are simply not IKE/ESP (Cisco's cTCP, another protocol) or too
        many tries failed.  Bytes after the IKETCP prefix that are no framing are an error."""
        st = d.app
        self.tcp.discard(d)
        st.tries += 1
        if after_prefix:
            self._error(d.frames[-1] if d.frames else ref,
                        "TCP-encapsulated stream: the bytes after the IKETCP prefix are neither "
                        "RFC 9329 messages nor Non-ESP Marker + IKE")
        if cisco or (d.synced and not st.proven) or st.tries > _IKE_TCP_TRIES:
            self._ike_tcp_stop(d)

    def _ike_tcp_stop(self, d):
        st = d.app
        st.framing = _NOT_IKE
        self.tcp.stop(d)
        if not st.proven:
            self.tcp_streams_unrecognised += 1

    # -- VPNs beside IPsec (OpenVPN, WireGuard, L2TP, PPTP, SSL-VPN) ---------------------------

    def _vpn_udp(self, ref, ts, ipver, src, dst, sport, dport, data, poff, end):
        """Deliver a UDP datagram that may belong to a VPN beside IPsec (structural candidate:
        the tracker confirms flows).  Never called for IKE / ESP / NAT-keepalive datagrams."""
        if sport in _NOT_VPN_PORTS or dport in _NOT_VPN_PORTS or end - poff < 4:
            return False
        if sport == L2TP_PORT or dport == L2TP_PORT:
            proto = "l2tp"
        elif _wg.looks_like(data, poff, end):
            proto = "wireguard"
        elif _tls.looks_like_dtls(data, poff, end):
            proto = "dtls"
        elif _openvpn.looks_like(data, poff, end):
            proto = "openvpn"
        else:
            return False
        self.vpn_frames += 1
        self.sink.vpn_udp(ref, ts, ipver, src, dst, sport, dport, proto, data, poff, end)
        return True

    def _tcp_service(self, src, sport, dst, dport):
        """``(proto, from_client)`` of a VPN TCP port on either side, or None."""
        named = self._named_tcp
        svc = (named.get((dst, dport)) if named else None) or VPN_TCP_SERVICES.get(dport)
        if svc is not None:
            return svc, True
        svc = (named.get((src, sport)) if named else None) or VPN_TCP_SERVICES.get(sport)
        if svc is not None:
            return svc, False
        return None

    def _vpn_tcp_segment(self, d, ref, ts, flags, payload_len) -> bool:
        """Report a segment of a VPN TCP stream; False when its bytes are not to be reassembled
        (the framing gave up, or a TLS handshake is over)."""
        st = d.app
        ipver, src, dst, sport, dport = d.addr
        self.vpn_frames += 1
        if st.done and not flags & 0x07 and st.vproto == "tls":
            # a TLS stream past its handshake (or not TLS): only its flags matter; bytes are
            # summed and reported with every 64th segment (the tracker's last-seen time)
            st.quiet += 1
            st.quiet_n += 1
            st.quiet_bytes += payload_len
            if st.quiet & 63:
                return False
            payload_len = st.quiet_bytes
            st.quiet_bytes = 0
            segments = st.quiet_n
        else:
            payload_len += st.quiet_bytes
            st.quiet_bytes = 0
            segments = 1 + st.quiet_n
        st.quiet_n = 0
        self.sink.vpn_tcp_segment(ref, ts, ipver, src, dst, sport, dport, flags, payload_len,
                                  st.vproto, st.from_client, segments)
        if flags & SYN:
            st.prefix_checked = False
            st.done = False
            st.synced = True
            return True
        return not st.done

    def _vpn_tcp_deliver(self, d, ref, ts):
        st = d.app
        if st.done:
            return
        if d.gap:
            # bytes were skipped: the next message boundary must be found again, as when the
            # capture joins a stream mid-way (OpenVPN / PPTP resynchronise, TLS checks its
            # record header again)
            d.gap = False
            st.synced = False
            st.prefix_checked = False
        buf = d.buf
        if not buf:
            return
        proto = st.vproto
        ipver, src, dst, sport, dport = d.addr
        if not st.prefix_checked:
            st.prefix_checked = True
            n = len(buf)
            if proto == "tls" and st.from_client and _openvpn.tcp_stream_start(buf, 0, n):
                proto = st.vproto = "openvpn"  # OpenVPN on a TLS port (e.g. proto tcp, port 443)
                rev = self.tcp.get(d.rkey)
                if rev is not None:
                    rev.app.vproto = "openvpn"
            elif proto == "tls" and _iketcp_start(buf, 0, n):
                # IKE over TCP on a TLS port (FortiGate's ike-tcp-port is 443 by default)
                d.app = _IkeTcp(False)
                rev = self.tcp.get(d.rkey)
                if rev is not None and rev.app.__class__ is _VpnTcp:
                    rev.app = _IkeTcp(True)
                self._ike_tcp_deliver(d, ref, ts)
                return
            elif proto == "tls" and not _tls.looks_like_record(buf, 0, n):
                self._vpn_tcp_stop(d)  # not TLS (or joined inside a record): segments counted only
                return
        try:
            if proto == "openvpn":
                msgs, used = _openvpn.split_tcp(buf, 0)
            elif proto == "pptp":
                msgs, used = _pptp.split_stream(buf, 0)
            else:
                recs, used = _tls.split_records(buf, 0)
                msgs = [(a - 5, b) for _t, _v, a, b in recs]
        except DissectError as e:
            self.tcp.discard(d)
            if not st.synced and proto != "tls" and st.resyncs < 8:
                # joined mid-stream: try again from the start of a later segment
                st.resyncs += 1
                return
            if st.synced and proto != "tls":
                self._error(ref, f"{proto} TCP stream: {e.reason}")
            self._vpn_tcp_stop(d)
            return
        sink = self.sink
        frames = tuple(sorted(set(d.frames)))
        for a, b in msgs:
            sink.vpn_tcp(ref, ts, ipver, src, dst, sport, dport, proto, bytes(buf[a:b]), frames,
                         st.from_client)
            if proto == "tls" and buf[a] == 23:
                st.appdata += 1
        if proto == "tls" and st.appdata >= _TLS_APPDATA_RECORDS:
            self._vpn_tcp_stop(d)  # the handshake is over: the rest is encrypted application data
            return
        self.tcp.consume(d, used)
        if d.gap:  # the partial message outgrew tcp_max_buffer
            d.gap = False
            self._vpn_tcp_stop(d)

    def _vpn_tcp_stop(self, d):
        d.app.done = True
        self.tcp.stop(d)

    # -- end -----------------------------------------------------------------------------------

    def finish(self):
        """Flush state at the end of the input: incomplete fragment sets are reported, as timed
        out when the input went on for ``frag_timeout`` after their first fragment (whatever
        frames it was), else as cut off by its end."""
        if self._frags and self._clock > float("-inf"):
            self._expire_fragments(self._clock)
        while self._frags:
            _key, fs = self._frags.popitem(last=False)
            self._give_up(fs, "end")
        self.tcp.finish()

    def counters(self) -> dict:
        return {
            "frames": self.frames,
            "non_ip": self.non_ip,
            "truncated": self.truncated,
            "decode_errors": self.decode_errors,
            "ip_fragment_frames": self.fragment_frames,
            "reassembled_datagrams": self.reassembled,
            "incomplete_fragment_sets": self.frag_incomplete,
            "fragment_sets_evicted": self.frag_evicted,
            "tcp_segments": self.tcp_segments,
            "tcp_streams_unrecognised": self.tcp_streams_unrecognised,
            "tcp_retransmissions": self.tcp.retransmissions,
            "tcp_gaps": self.tcp.gaps,
            "tcp_gaps_by_limit": self.tcp.gaps_by_limit,
            "tcp_streams_evicted": self.tcp.streams_evicted,
            "tcp_bytes_dropped": self.tcp.bytes_dropped,
            "other": self.other,
        }
