"""Frames → VPN events.

The decoder takes Frames from :mod:`pcapvpn.sources`, lets :mod:`dissect.vpn` parse link, IP and
VPN headers, reassembles IP fragments and TCP streams on VPN ports (the only state kept here), and
calls the sink's event methods (see docs/internals.md).  It never interprets what the events mean:
that is :mod:`pcapvpn.track`'s job.

Bounds (all in :class:`pcapvpn.limits.Limits`): fragment sets expire after ``frag_timeout`` seconds of capture
time and are capped in number and bytes; TCP streams are capped in number, buffered bytes and
out-of-order segments; the trackers' SAs, messages and flows and the report's lists have their
bounds there too.  Whatever is dropped because of a bound is counted, never silent.
"""

from __future__ import annotations

from collections import Counter
from dissect.vpn import esp as _esp
from dissect.vpn import fast as _fast
from dissect.vpn import ip as _ip
from dissect.vpn import l2tp as _l2tp
from dissect.vpn import link as _link
from dissect.vpn import openvpn as _openvpn
from dissect.vpn import pptp as _pptp
from dissect.vpn import tls as _tls
from dissect.vpn import udpencap as _udpencap
from dissect.vpn import wireguard as _wg
from dissect.vpn.errors import DissectError
from dissect.vpn.ip import IpProto, Port
from pcapvpn.events import DissectSink, NullSink, ike_event
from pcapvpn.ip_fragments import FragmentReassembly
from pcapvpn.limits import Limits
from pcapvpn.tcp_reassembly import TcpReassembler
from pcapvpn.tcp_streams import VPN_TCP_SERVICES, TcpStreams

__all__ = ["Decoder", "DissectSink", "NullSink", "VPN_TCP_PORTS", "VPN_TCP_SERVICES", "ike_event"]

#: TCP ports whose streams are reassembled: RFC 9329 IKE/ESP over TCP is usually on 4500 (its
#: suggested port) or 500; 443/1194/1723 are added by the other VPN protocols.
VPN_TCP_PORTS = frozenset((Port.IKE, Port.NAT_T))

#: L2TP (RFC 2661 §8.1) is known by its port; the other UDP VPNs by structure on any port
L2TP_PORT = _l2tp.PORT
#: IP protocol numbers as plain ints for the per-frame dispatch (dissect.vpn.number)
_P_ICMP, _P_TCP, _P_UDP, _P_GRE, _P_ESP, _P_AH, _P_ICMPV6 = (int(p) for p in (
    IpProto.ICMP, IpProto.TCP, IpProto.UDP, IpProto.GRE, IpProto.ESP, IpProto.AH, IpProto.ICMPV6))
#: ports that carry no VPN (DNS, DHCP, NTP, NetBIOS, SNMP, syslog, SSDP, mDNS, LLMNR): skipped
#: before any VPN classification
_NOT_VPN_PORTS = frozenset((53, 67, 68, 123, 137, 138, 161, 162, 514, 1900, 5353, 5355))
#: the reason counted for errors beyond ``Limits.max_error_reasons`` distinct ones
OTHER_REASONS = "other reasons (too many distinct ones to list)"

_ESP = _udpencap.ESP
_IKE = _udpencap.IKE
_KEEPALIVE = _udpencap.KEEPALIVE
_OTHER = _udpencap.OTHER
_MALFORMED = _udpencap.MALFORMED


def lane_ports(tcp_ports=VPN_TCP_PORTS, vpn_servers=()) -> frozenset | None:
    """The ports whose TCP the reader's plaintext lane (``on_tcp`` of the walk) leaves to the
    general path: the ones :meth:`Decoder._tcp` follows and DNS (the sink reads DNS over TCP
    from the frame's bytes).  None when a decoder with these ``vpn_servers`` takes no run
    (``--vpn-server ADDR:PORT``: TLS followed on that port whatever the addresses)."""
    if any(p is not None for _a, p in vpn_servers):
        return None
    return frozenset(tcp_ports) | frozenset(VPN_TCP_SERVICES) | {53}


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


def _cut(data, end, wirelen) -> int:
    """The bytes the snapshot length cut off a packet that ends at ``end`` of the captured
    ``data`` (0 when nothing was cut): an ESP event's length is the packet's size on the wire."""
    n = len(data)
    return wirelen - n if wirelen > n and end == n else 0


class Decoder(FragmentReassembly, TcpStreams):
    """Decode frames and feed events to ``sink``; IP fragments are reassembled by
    :class:`pcapvpn.ip_fragments.FragmentReassembly`, TCP streams followed and framed by
    :class:`pcapvpn.tcp_streams.TcpStreams`."""

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
        self.tcp_segments = 0
        #: directions on the IKE TCP ports whose bytes are no IKE/ESP framing (Cisco cTCP, other)
        self.tcp_streams_unrecognised = 0
        self.other = 0
        self._init_fragments()
        #: every followed TCP stream, IKE/ESP and the other VPNs alike (one policy)
        self.tcp = TcpReassembler(self.limits)
        #: the capture's clock: the latest timestamp of any frame so far, ESP of the fast paths
        #: included.  Fragment sets expire when it passes ``_frag_deadline`` (the oldest set's
        #: first fragment + frag_timeout; inf: none pending), checked on every frame of the
        #: general path and at the end: the outcome does not depend on which frames took a fast
        #: path, nor (batches) on when their ESP was handed over
        self._clock = float("-inf")
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
        #: ports whose TCP the lane leaves to the general path (lane_ports)
        self._lane_ports = lane_ports(self.tcp_ports)
        #: UDP 4-tuples (both directions) framed as on port 4500 though on other ports: learnt by
        #: the sink from IKE after a non-ESP marker (None: a sink that does not learn them)
        self._encap_flows = getattr(sink, "encap_flows", None)

    # -- UDP encapsulation on other ports -------------------------------------------------------

    def _classify_udp(self, src, dst, sport, dport, data, poff, end, wire_end=None):
        """:func:`dissect.vpn.udpencap.classify_udp`, and on a flow where IKE came after a
        non-ESP marker on ports other than 4500 (custom NAT-T ports: strongSwan
        ``port_nat_t``, libreswan ``ikeport``, a FortiGate's ``ike-port``; the sink's
        ``encap_flows``, learnt from those IKE messages) the same framing as on 4500 (RFC 3948
        §2): ESP, IKE after the marker or a NAT keepalive."""
        r = _udpencap.classify_udp(sport, dport, data, poff, end)
        if wire_end is not None and r[0] == _OTHER:
            # cut by the snapshot length (``wire_end``: the datagram's end on the wire): IKE on
            # other ports is told by its header's Length against the size on the wire
            r = _udpencap.classify_udp(sport, dport, data, poff, wire_end)
        flows = self._encap_flows
        if flows and r[0] != _ESP and (src, sport, dst, dport) in flows:
            return _udpencap.classify_encap(data, poff, end)
        return r

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
            cut = wirelen - len(data)
            if cut > 0:
                truncated += 1
            r = esp_fast(linktype, data)
            if r is not None:
                if ts > self._clock:
                    self._clock = ts
                src, dst, sport, dport, a, b, ln = r
                # (the length on the wire: the snapshot length may have cut the frame)
                sink_esp((fidx, num), ts, 4, src, dst, sport, dport, a, b,
                         ln + cut if cut > 0 else ln)
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
        copy (:meth:`dissect.vpn.capture.reader._Reader.walk`); every other frame to the general path.
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
                cut = _cut(data, end, wirelen)
                kind, a, b = self._classify_udp(src, dst, sport, dport, data, poff, end,
                                                end + cut if cut else None)
                if kind == _ESP:
                    sink.esp((fidx, num), ts, ipver, src, dst, sport, dport, a, b,
                             end - poff + cut)
                    if keyed is not None and a in keyed:
                        sink.esp_payload((fidx, num), ts, ipver, src, dst, sport, dport, a, b,
                                         data, poff, end)
                    return
                vpn = self._udp_other((fidx, num), ts, ipver, src, dst, sport, dport, kind, a,
                                      data, poff, end, ((fidx, num),), end + cut if cut else None)
            elif proto == _P_ESP:
                spi, seq = _esp.parse_esp(data, l4off, end)
                sink.esp((fidx, num), ts, ipver, src, dst, -1, -1, spi, seq,
                         end - l4off + _cut(data, end, wirelen))
                if keyed is not None and spi in keyed:
                    sink.esp_payload((fidx, num), ts, ipver, src, dst, -1, -1, spi, seq, data,
                                     l4off, end)
            else:
                vpn = self._other_proto((fidx, num), ts, ipver, src, dst, proto, sport, dport,
                                        data, l4off, end, _cut(data, end, wirelen))
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
                   frames, wire_end=None) -> bool:
        """IKE, NAT keepalives, malformed datagrams on the IKE ports and the VPNs beside
        IPsec; False when the datagram is none of them (plaintext)."""
        if kind == _IKE:
            if self._ike_heads:  # IKE heads of the pair waiting for their fragments go first
                self._ike_passed(src, dst, ts)
            ike_event(self.sink, ref, ts, ipver, src, dst, sport, dport, "udp", data, a, end,
                      frames, a != poff)
        elif kind == _KEEPALIVE:
            self.sink.keepalive(ref, ts, ipver, src, dst, sport, dport)
        elif kind == _MALFORMED:
            self._error(ref, f"UDP {dport if dport in VPN_TCP_PORTS else sport} payload of "
                             f"{end - poff} bytes is neither ESP, IKE nor a NAT keepalive")
        else:
            self.other += 1
            return self._vpn_udp(ref, ts, ipver, src, dst, sport, dport, data, poff, end,
                                 wire_end)
        return True

    def _other_proto(self, ref, ts, ipver, src, dst, proto, sport, dport, data, l4off,
                     end, cut=0) -> bool:
        """AH, ICMP, TCP, GRE and the rest; False when the packet is plaintext (no VPN
        traffic; ICMP errors are both: they may quote a VPN flow or an inner one).  ``cut``: the
        bytes the snapshot length cut off the packet's end."""
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
            return self._tcp(ref, ts, ipver, src, dst, data, l4off, end, cut)
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

    def _vpn_udp(self, ref, ts, ipver, src, dst, sport, dport, data, poff, end, wire_end=None):
        """Deliver a UDP datagram that may belong to a VPN beside IPsec (structural candidate:
        the tracker confirms flows).  Never called for IKE / ESP / NAT-keepalive datagrams.
        ``wire_end``: the datagram's end on the wire when the snapshot length cut it (WireGuard's
        messages are told by their sizes: they go with it)."""
        if sport in _NOT_VPN_PORTS or dport in _NOT_VPN_PORTS or end - poff < 4:
            return False
        if sport == L2TP_PORT or dport == L2TP_PORT:
            proto = "l2tp"
        elif _wg.looks_like(data, poff, wire_end or end):
            proto = "wireguard"
            end = wire_end or end
        elif _tls.looks_like_dtls(data, poff, end):
            proto = "dtls"
        elif _openvpn.looks_like(data, poff, end):
            proto = "openvpn"
        else:
            return False
        self.vpn_frames += 1
        self.sink.vpn_udp(ref, ts, ipver, src, dst, sport, dport, proto, data, poff, end)
        return True

    def finish(self):
        """Flush state at the end of the input: incomplete fragment sets are reported, as timed
        out when the input went on for ``frag_timeout`` after their first fragment (whatever
        frames it was), else as cut off by its end."""
        self._finish_fragments()
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
