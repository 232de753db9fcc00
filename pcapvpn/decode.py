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
from dissect.vpn import ip as _ip
from dissect.vpn import link as _link
from dissect.vpn import openvpn as _openvpn
from dissect.vpn import pptp as _pptp
from dissect.vpn import tls as _tls
from dissect.vpn import udpencap as _udpencap
from dissect.vpn import wireguard as _wg
from dissect.vpn.errors import DissectError

__all__ = ["Decoder", "DissectSink", "Limits", "NullSink", "VPN_TCP_PORTS", "VPN_TCP_SERVICES"]

#: TCP ports whose streams are reassembled: RFC 9329 IKE/ESP over TCP is usually on 4500 (its
#: suggested port) or 500; 443/1194/1723 are added by the other VPN protocols.
VPN_TCP_PORTS = frozenset((500, 4500))

#: TCP streams of the VPNs beside IPsec, by server port: OpenVPN (IANA 1194), PPTP (RFC 2637,
#: 1723), TLS for SSL-VPNs (443; FortiGate 10443, SonicWall 4433).  OpenVPN over TCP is also
#: recognised on any port by its first packet; a TLS port whose client speaks OpenVPN is OpenVPN.
VPN_TCP_SERVICES = {1194: "openvpn", 1723: "pptp", 443: "tls", 10443: "tls", 4433: "tls"}
#: L2TP (RFC 2661 §8.1); the other UDP VPNs are recognised by structure on any port
L2TP_PORT = 1701
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
    """Memory and time bounds of the decoder's state (documented in README "Thresholds")."""

    #: seconds a fragment set may wait for its missing pieces (Linux ``ipfrag_time`` is 30 s).
    frag_timeout: float = 30.0
    #: concurrent fragment sets; the oldest is given up when a new one would exceed it.
    frag_max_sets: int = 4096
    #: bytes buffered over all fragment sets.
    frag_max_bytes: int = 32 * 1024 * 1024
    #: concurrent TCP streams reassembled (per direction).
    tcp_max_streams: int = 4096
    #: bytes buffered per TCP direction awaiting a complete message.
    tcp_max_buffer: int = 256 * 1024
    #: out-of-order segments held per TCP direction.
    tcp_max_ooo: int = 64

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

    def ike(self, ref, ts, ipver, src, dst, sport, dport, transport, msg, frames):
        pass

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

    def fragments_incomplete(self, first_ts, ipver, src, dst, proto, ident, frames, first, why):
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
                        from_client):
        """A TCP segment of a followed VPN stream (``proto`` "openvpn", "pptp" or "tls")."""

    def vpn_tcp(self, ref, ts, ipver, src, dst, sport, dport, proto, msg, frames, from_client):
        """One framed message of a VPN TCP stream: an OpenVPN packet (length removed), a PPTP
        control message, or a TLS record (header included)."""

    def gre(self, ref, ts, ipver, src, dst, call_id, length, seq, ack):
        """An enhanced GRE (PPTP data, RFC 2637 §4.1) packet."""


class DissectSink(NullSink):
    """Benchmarks (``--stop-after dissect``): parse every IKE message in full
    (:func:`dissect.vpn.ike.parse_message`); ESP has been parsed to its header already."""

    def __init__(self):
        self.ike_messages = 0
        self.ike_errors = 0

    def ike(self, ref, ts, ipver, src, dst, sport, dport, transport, msg, frames):
        from dissect.vpn.ike import parse_message

        try:
            parse_message(msg)
            self.ike_messages += 1
        except DissectError:
            self.ike_errors += 1


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


class _TcpDir:
    """One direction of a TCP stream on a VPN port."""

    __slots__ = ("next_seq", "buf", "ooo", "iketcp", "prefix_checked", "gaps", "retrans",
                 "frames", "overflow", "last_ts")

    def __init__(self):
        self.next_seq = -1
        self.buf = bytearray()
        self.ooo = {}  # seq -> (payload, ref)
        self.iketcp = False
        self.prefix_checked = False
        self.gaps = 0
        self.retrans = 0
        self.frames = []  # refs of segments whose bytes are still in buf
        self.overflow = 0
        self.last_ts = 0.0


class _VpnTcpDir(_TcpDir):
    """One direction of a TCP stream of a VPN beside IPsec (OpenVPN, PPTP, TLS)."""

    __slots__ = ("vproto", "from_client", "done", "synced", "appdata", "resyncs", "quiet",
                 "quiet_bytes")

    def __init__(self, vproto, from_client):
        super().__init__()
        self.vproto = vproto
        self.from_client = from_client
        self.done = False      # framing given up, or a TLS handshake over: segments counted only
        self.synced = False    # the stream began with its SYN: framing errors are real
        self.appdata = 0
        self.resyncs = 0
        self.quiet = 0         # segments of a finished TLS stream not reported one by one
        self.quiet_bytes = 0


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
        self.tcp_gaps = 0
        self.tcp_retransmissions = 0
        self.tcp_streams_evicted = 0
        self.tcp_overflow_bytes = 0
        self.other = 0
        self._frags: OrderedDict = OrderedDict()
        self._frag_bytes = 0
        self._tcp: OrderedDict = OrderedDict()
        #: the capture's clock: the latest timestamp of any frame so far, ESP of the fast paths
        #: included.  Fragment sets expire when it passes ``_frag_deadline`` (the oldest set's
        #: first fragment + frag_timeout; inf: none pending), checked on every frame of the
        #: general path and at the end: the outcome does not depend on which frames took a fast
        #: path, nor (batches) on when their ESP was handed over
        self._clock = float("-inf")
        self._frag_deadline = float("inf")
        #: --vpn-server ADDR:PORT (packed address, port): TLS streams followed on that port too
        self._named_tcp = {(a, p): "tls" for a, p in vpn_servers if p is not None}
        self._vtcp: OrderedDict = OrderedDict()
        self.vpn_frames = 0

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

    def run(self, frames):
        """Decode every frame of the iterable ``frames`` (see :mod:`pcapvpn.sources`)."""
        esp_fast = _fast.esp_frame
        general = self._general
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
                    e = (34 if sport < 0 else 42) + ln  # dissect.vpn.fast: Ethernet + IPv4 (+ UDP)
                    esp_payload((fidx, num), ts, 4, src, dst, sport, dport, a, b, data, e - ln, e)
                continue
            general(fidx, num, ts, linktype, data, wirelen, off)
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
            self.run(source.frames())
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
                    on_batch if sink_batch is not None else None)
        self.frames += source.frame_count
        st = getattr(source.reader, "walk_stats", None) or {}
        self.truncated += st.get("truncated", 0)
        last = st.get("last_ts")
        if last is not None and last > self._clock:
            self._clock = last

    def _general(self, fidx, num, ts, linktype, data, wirelen, _off):
        """Every frame that is not ESP of the common shape (:mod:`dissect.vpn.fast`)."""
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
                return
            ipver, src, dst, proto, sport, dport, l4off, end, frag_off, mf, ident, _h = r
            if frag_off or mf:
                self._fragment((fidx, num), ts, r, data)
                return
            if proto == 17:
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
                self._udp_other((fidx, num), ts, ipver, src, dst, sport, dport, kind, a,
                                data, poff, end, ((fidx, num),))
            elif proto == 50:
                spi, seq = _esp.parse_esp(data, l4off, end)
                sink.esp((fidx, num), ts, ipver, src, dst, -1, -1, spi, seq, end - l4off)
                if keyed is not None and spi in keyed:
                    sink.esp_payload((fidx, num), ts, ipver, src, dst, -1, -1, spi, seq, data,
                                     l4off, end)
            else:
                self._other_proto((fidx, num), ts, ipver, src, dst, proto, sport, dport,
                                  data, l4off, end)
        except DissectError as e:
            self._error((fidx, num), e.reason)
        except Exception as e:  # a dissector bug must not end the analysis: count it
            self._error((fidx, num), f"internal decoder error ({type(e).__name__}: {e})")

    # -- slow paths ----------------------------------------------------------------------------

    def _esp_payload(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, data, off, end):
        """--keys: the ESP bytes of a keyed SPI (reassembled, AH+ESP and TCP paths)."""
        keyed = getattr(self.sink, "keyed_spis", None)
        if keyed and spi in keyed:
            self.sink.esp_payload(ref, ts, ipver, src, dst, sport, dport, spi, seq, data, off, end)

    def _udp_other(self, ref, ts, ipver, src, dst, sport, dport, kind, a, data, poff, end, frames):
        if kind == _IKE:
            self.sink.ike(ref, ts, ipver, src, dst, sport, dport, "udp", bytes(data[a:end]), frames)
        elif kind == _KEEPALIVE:
            self.sink.keepalive(ref, ts, ipver, src, dst, sport, dport)
        elif kind == _MALFORMED:
            self._error(ref, f"UDP {dport if dport in (500, 4500) else sport} payload of "
                             f"{end - poff} bytes is neither ESP, IKE nor a NAT keepalive")
        else:
            self.other += 1
            self._vpn_udp(ref, ts, ipver, src, dst, sport, dport, data, poff, end)

    def _other_proto(self, ref, ts, ipver, src, dst, proto, sport, dport, data, l4off, end):
        sink = self.sink
        if proto == 51:
            nh, plen, spi, seq, icv = _esp.parse_ah(data, l4off, end)
            sink.ah(ref, ts, ipver, src, dst, spi, seq, end - l4off)
            if nh == 50:
                # AH+ESP (RFC 4302 §3.1: Payload Length is the AH length in 32-bit words - 2)
                eoff = l4off + (plen + 2) * 4
                spi, seq = _esp.parse_esp(data, eoff, end)
                sink.esp(ref, ts, ipver, src, dst, -1, -1, spi, seq, end - eoff)
                self._esp_payload(ref, ts, ipver, src, dst, -1, -1, spi, seq, data, eoff, end)
        elif proto == 1 or proto == 58:
            r = _ip.decode_icmp_error(data, l4off, end, ipver)
            if r is not None:
                icmp_type, icmp_code, mtu, quoted = r
                sink.icmp_error(ref, ts, ipver, src, dst, icmp_type, icmp_code, mtu, quoted)
            else:
                self.other += 1
        elif proto == 6:
            if sport in self.tcp_ports or dport in self.tcp_ports:
                self._tcp_segment(ref, ts, ipver, src, dst, data, l4off, end)
            else:
                self.other += 1
                self._vpn_tcp(ref, ts, ipver, src, dst, data, l4off, end)
        elif proto == 47:
            self.other += 1
            # enhanced GRE of PPTP (RFC 2637 §4.1): version 1, protocol 0x880B
            if end - l4off >= 8 and data[l4off + 1] & 7 == 1 and \
                    data[l4off + 2] == 0x88 and data[l4off + 3] == 0x0B:
                call, plen, gseq, gack, _p = _pptp.parse_gre(data, l4off, end)
                self.vpn_frames += 1
                sink.gre(ref, ts, ipver, src, dst, call, plen, gseq, gack)
        else:
            self.other += 1

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
        if proto == 17:
            sport, dport, poff = _ip.decode_udp(payload, 0, end)
            kind, a, b = _udpencap.classify_udp(sport, dport, payload, poff, end)
            if kind == _ESP:
                self.sink.esp(ref, ts, ipver, src, dst, sport, dport, a, b, end - poff)
                self._esp_payload(ref, ts, ipver, src, dst, sport, dport, a, b, payload, poff, end)
                self.sink.esp_fragmented(ipver, src, dst, a, frames, "esp")
            else:
                self._udp_other(ref, ts, ipver, src, dst, sport, dport, kind, a, payload, poff,
                                end, frames)
        elif proto == 50:
            spi, seq = _esp.parse_esp(payload, 0, end)
            self.sink.esp(ref, ts, ipver, src, dst, -1, -1, spi, seq, end)
            self._esp_payload(ref, ts, ipver, src, dst, -1, -1, spi, seq, payload, 0, end)
            self.sink.esp_fragmented(ipver, src, dst, spi, frames, "esp")
        else:
            self._other_proto(ref, ts, ipver, src, dst, proto, -1, -1, payload, 0, end)
            if proto == 51 and end >= 8:
                spi = _esp.parse_ah(payload, 0, end)[2]
                self.sink.esp_fragmented(ipver, src, dst, spi, frames, "ah")

    def _give_up(self, fs, why):
        self._frag_bytes -= fs.nbytes
        self.frag_incomplete += 1
        if why == "evicted":
            self.frag_evicted += 1
        self.sink.fragments_incomplete(fs.first_ts, fs.ipver, fs.src, fs.dst, fs.proto, fs.ident,
                                       tuple(fs.frames), fs.first_piece(), why)

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

    def _tcp_segment(self, ref, ts, ipver, src, dst, data, l4off, end):
        sport, dport, seq, ack, flags, poff = _ip.decode_tcp(data, l4off, end)
        self.tcp_segments += 1
        self.sink.tcp_segment(ref, ts, ipver, src, dst, sport, dport, flags, end - poff)
        key = (src, sport, dst, dport)
        st = self._tcp.get(key)
        if st is None:
            if len(self._tcp) >= self.limits.tcp_max_streams:
                self._tcp.popitem(last=False)
                self.tcp_streams_evicted += 1
            st = self._tcp[key] = _TcpDir()
        else:
            self._tcp.move_to_end(key)
        st.last_ts = ts
        syn = flags & 0x02
        if syn:
            st.next_seq = (seq + 1) & 0xFFFFFFFF
            st.buf.clear()
            st.ooo.clear()
            st.frames.clear()
            st.prefix_checked = False
            st.iketcp = False
            return
        payload_len = end - poff
        if flags & 0x05:  # FIN or RST: the stream ends; leftovers stay as they are
            if payload_len <= 0:
                return
        if payload_len <= 0:
            return
        if st.next_seq < 0:
            # joined mid-stream: we cannot know the framing boundary reliably, but a segment
            # that begins a message usually aligns with the segment start; start there.
            st.next_seq = seq
        delta = (seq - st.next_seq) & 0xFFFFFFFF
        if delta >= 0x80000000:
            # starts before what we have: (partial) retransmission
            overlap = (st.next_seq - seq) & 0xFFFFFFFF
            if overlap >= payload_len:
                st.retrans += 1
                self.tcp_retransmissions += 1
                return
            poff += overlap
            seq = st.next_seq
            delta = 0
        if delta > 0:
            if len(st.ooo) >= self.limits.tcp_max_ooo:
                # give up waiting: account the gap and resynchronise at the earliest held segment
                st.gaps += 1
                self.tcp_gaps += 1
                st.buf.clear()
                st.frames.clear()
                first = min(st.ooo, key=lambda s: (s - st.next_seq) & 0xFFFFFFFF)
                st.next_seq = first
            else:
                st.ooo[seq] = (bytes(data[poff:end]), ref)
                return
        else:
            self._tcp_append(st, data[poff:end], ref)
        while st.ooo:
            item = st.ooo.pop(st.next_seq, None)
            if item is None:
                break
            self._tcp_append(st, item[0], item[1])
        self._tcp_deliver(st, ref, ts, ipver, src, dst, sport, dport)

    def _tcp_append(self, st, chunk, ref):
        st.buf += chunk
        st.next_seq = (st.next_seq + len(chunk)) & 0xFFFFFFFF
        st.frames.append(ref)

    def _tcp_deliver(self, st, ref, ts, ipver, src, dst, sport, dport):
        """``ref``: the segment whose arrival completed the messages (their event frame)."""
        buf = st.buf
        start = 0
        if not st.prefix_checked:
            if len(buf) < len(_udpencap.IKETCP_PREFIX):
                if _udpencap.IKETCP_PREFIX.startswith(bytes(buf)):
                    return
            st.prefix_checked = True
            if buf.startswith(_udpencap.IKETCP_PREFIX):
                st.iketcp = True
                start = len(_udpencap.IKETCP_PREFIX)
        try:
            messages, consumed = _udpencap.split_tcp_stream(buf, start)
        except DissectError as e:
            self._error(st.frames[-1], "TCP-encapsulated stream: " + e.reason)
            st.buf = bytearray()
            st.frames = []
            return
        sink = self.sink
        frames = tuple(sorted(set(st.frames)))
        for kind, off, mend, spi, seq in messages:
            if kind == _IKE:
                sink.ike(ref, ts, ipver, src, dst, sport, dport, "tcp", bytes(buf[off:mend]), frames)
            elif kind == _ESP:
                sink.esp_tcp(ref, ts, ipver, src, dst, sport, dport, spi, seq, mend - off)
                self._esp_payload(ref, ts, ipver, src, dst, sport, dport, spi, seq,
                                  bytes(buf[off:mend]), 0, mend - off)
            else:
                self._error(ref, "TCP-encapsulated message is neither IKE nor ESP")
        used = start + consumed
        if used:
            del buf[:used]
            if not buf:
                st.frames = []
            else:
                st.frames = st.frames[-1:]
        if len(buf) > self.limits.tcp_max_buffer:
            st.overflow += len(buf)
            self.tcp_overflow_bytes += len(buf)
            st.buf = bytearray()
            st.frames = []

    # -- VPNs beside IPsec (OpenVPN, WireGuard, L2TP, PPTP, SSL-VPN) ---------------------------

    def _vpn_udp(self, ref, ts, ipver, src, dst, sport, dport, data, poff, end):
        """Deliver a UDP datagram that may belong to a VPN beside IPsec (structural candidate:
        the tracker confirms flows).  Never called for IKE / ESP / NAT-keepalive datagrams."""
        if sport in _NOT_VPN_PORTS or dport in _NOT_VPN_PORTS or end - poff < 4:
            return
        if sport == L2TP_PORT or dport == L2TP_PORT:
            proto = "l2tp"
        elif _wg.looks_like(data, poff, end):
            proto = "wireguard"
        elif _tls.looks_like_dtls(data, poff, end):
            proto = "dtls"
        elif _openvpn.looks_like(data, poff, end):
            proto = "openvpn"
        else:
            return
        self.vpn_frames += 1
        self.sink.vpn_udp(ref, ts, ipver, src, dst, sport, dport, proto, data, poff, end)

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

    def _vpn_tcp(self, ref, ts, ipver, src, dst, data, l4off, end):
        sport, dport, seq, _ack, flags, poff = _ip.decode_tcp(data, l4off, end)
        key = (src, sport, dst, dport)
        vt = self._vtcp
        st = vt.get(key)
        if st is None:
            rev = vt.get((dst, dport, src, sport))
            if rev is not None:
                proto, from_client = rev.vproto, not rev.from_client
            else:
                svc = self._tcp_service(src, sport, dst, dport)
                if svc is not None:
                    proto, from_client = svc
                elif poff < end and _openvpn.tcp_stream_start(data, poff, end):
                    proto, from_client = "openvpn", True  # OpenVPN over TCP on any port
                else:
                    return
            if len(vt) >= self.limits.tcp_max_streams:
                vt.popitem(last=False)
                self.tcp_streams_evicted += 1
            st = vt[key] = _VpnTcpDir(proto, from_client)
        else:
            vt.move_to_end(key)
        self.vpn_frames += 1
        payload_len = end - poff
        if st.done and not flags & 0x07 and st.vproto == "tls":
            # a TLS stream past its handshake (or not TLS): only its flags matter; bytes are
            # summed and reported with every 64th segment (the tracker's last-seen time)
            st.quiet += 1
            st.quiet_bytes += payload_len
            if st.quiet & 63:
                return
            payload_len = st.quiet_bytes
            st.quiet_bytes = 0
        elif st.quiet_bytes:
            payload_len += st.quiet_bytes
            st.quiet_bytes = 0
        self.sink.vpn_tcp_segment(ref, ts, ipver, src, dst, sport, dport, flags, payload_len,
                                  st.vproto, st.from_client)
        st.last_ts = ts
        if flags & 0x02:
            st.next_seq = (seq + 1) & 0xFFFFFFFF
            st.buf.clear()
            st.ooo.clear()
            st.frames.clear()
            st.prefix_checked = False
            st.done = False
            st.synced = True
            return
        if payload_len <= 0 or st.done:
            return
        if st.next_seq < 0:
            st.next_seq = seq  # joined mid-stream: framing re-synchronised below if needed
        delta = (seq - st.next_seq) & 0xFFFFFFFF
        if delta >= 0x80000000:
            overlap = (st.next_seq - seq) & 0xFFFFFFFF
            if overlap >= payload_len:
                st.retrans += 1
                return
            poff += overlap
            delta = 0
        if delta > 0:
            if len(st.ooo) < self.limits.tcp_max_ooo:
                st.ooo[seq] = (bytes(data[poff:end]), ref)
                return
            # a hole that will not fill: the framing boundary is lost; start again later
            st.gaps += 1
            self.tcp_gaps += 1
            st.done = True
            st.buf = bytearray()
            st.ooo.clear()
            st.frames = []
            return
        self._tcp_append(st, data[poff:end], ref)
        while st.ooo:
            item = st.ooo.pop(st.next_seq, None)
            if item is None:
                break
            self._tcp_append(st, item[0], item[1])
        self._vpn_tcp_deliver(st, ref, ts, ipver, src, dst, sport, dport)

    def _vpn_tcp_deliver(self, st, ref, ts, ipver, src, dst, sport, dport):
        buf = st.buf
        proto = st.vproto
        if not st.prefix_checked:
            st.prefix_checked = True
            n = len(buf)
            if proto == "tls" and st.from_client and _openvpn.tcp_stream_start(buf, 0, n):
                proto = st.vproto = "openvpn"  # OpenVPN on a TLS port (e.g. proto tcp, port 443)
                rev = self._vtcp.get((dst, dport, src, sport))
                if rev is not None:
                    rev.vproto = "openvpn"
            elif proto == "tls" and not _tls.looks_like_record(buf, 0, n):
                st.done = True  # not TLS (or joined inside a record): segments counted only
                st.buf = bytearray()
                st.frames = []
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
            st.buf = bytearray()
            st.frames = []
            if not st.synced and proto != "tls" and st.resyncs < 8:
                # joined mid-stream: try again from the start of a later segment
                st.resyncs += 1
                st.next_seq = -1
                st.prefix_checked = True
                return
            if st.synced and proto != "tls":
                self._error(ref, f"{proto} TCP stream: {e.reason}")
            st.done = True
            return
        sink = self.sink
        frames = tuple(sorted(set(st.frames)))
        for a, b in msgs:
            sink.vpn_tcp(ref, ts, ipver, src, dst, sport, dport, proto, bytes(buf[a:b]), frames,
                         st.from_client)
            if proto == "tls" and buf[a] == 23:
                st.appdata += 1
        if used:
            del buf[:used]
            st.frames = [] if not buf else st.frames[-1:]
        if proto == "tls" and st.appdata >= _TLS_APPDATA_RECORDS:
            st.done = True  # the handshake is over: the rest is encrypted application data
            st.buf = bytearray()
            st.frames = []
        elif len(buf) > self.limits.tcp_max_buffer:
            st.overflow += len(buf)
            self.tcp_overflow_bytes += len(buf)
            st.done = True
            st.buf = bytearray()
            st.frames = []

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
            "tcp_gaps": self.tcp_gaps,
            "tcp_retransmissions": self.tcp_retransmissions,
            "tcp_streams_evicted": self.tcp_streams_evicted,
            "tcp_overflow_bytes": self.tcp_overflow_bytes,
            "other": self.other,
        }
