"""The TCP streams :class:`pcapvpn.decode.Decoder` follows, and how their bytes become messages.

A segment is followed when it belongs to IKE/ESP over TCP (RFC 9329: the IKE ports, or any port
once the IKETCP prefix or a framed IKE message shows it; :mod:`dissect.vpn.tcpencap` tells the
framings apart, Cisco's cTCP and other bytes are counted as unrecognised) or to a VPN beside
IPsec (OpenVPN's 2-byte length framing, PPTP control messages, TLS records of SSL-VPNs; by
server port, ``--vpn-server``, or OpenVPN's first packet on any port).  Every followed stream is
reassembled by the one :class:`pcapvpn.tcp_reassembly.TcpReassembler` (``Decoder.tcp``); the
framing here reads each direction's in-order buffer and releases what it delivered.
"""

from __future__ import annotations

from dissect.vpn import esp as _esp
from dissect.vpn import ip as _ip
from dissect.vpn import openvpn as _openvpn
from dissect.vpn import pptp as _pptp
from dissect.vpn import tcpencap as _tcpencap
from dissect.vpn import tls as _tls
from dissect.vpn import udpencap as _udpencap
from dissect.vpn.errors import DissectError
from dissect.vpn.ip import Port
from pcapvpn.events import ike_event
from pcapvpn.tcp_reassembly import SYN

_ESP = _udpencap.ESP
_IKE = _udpencap.IKE
_ESP_HEAD = _esp.ESP_HEADER_LEN
_OPENVPN_HEAD = _openvpn.TCP_FRAME_HEAD
#: the most bytes a snapshot length can have cut off a TCP segment: an IP packet is at most
#: 65,535 bytes (RFC 791 Total Length, RFC 8200 Payload Length; jumbograms aside)
_MAX_CUT = 0xFFFF

#: TCP streams of the VPNs beside IPsec, by server port: OpenVPN (IANA 1194), PPTP (RFC 2637,
#: 1723), TLS for SSL-VPNs (443; FortiGate 10443, SonicWall 4433).  OpenVPN over TCP is also
#: recognised on any port by its first packet; a TLS port whose client speaks OpenVPN is OpenVPN.
VPN_TCP_SERVICES = {Port.OPENVPN: "openvpn", Port.PPTP: "pptp", Port.HTTPS: "tls",
                    Port.FORTIGATE_SSLVPN: "tls", Port.SONICWALL_SSLVPN: "tls"}
#: application_data records delivered per TLS direction before the stream is only counted
_TLS_APPDATA_RECORDS = 4


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



class TcpStreams:
    """The decoder's TCP path (a base of :class:`pcapvpn.decode.Decoder`, whose ``sink``,
    ``tcp``, ``limits``, counters and ``_error`` it uses)."""

    # -- TCP -----------------------------------------------------------------------------------

    def _tcp(self, ref, ts, ipver, src, dst, data, l4off, end, cut=0):
        """A TCP segment: followed when it belongs to IKE/ESP (the IKE ports, or any port once
        the IKETCP prefix or a framed IKE message shows it) or to a VPN beside IPsec; reassembled
        by :class:`pcapvpn.tcp_reassembly.TcpReassembler`.  ``cut``: bytes the snapshot length
        cut off its end.  A length-framed stream (IKE/ESP, OpenVPN) keeps its framing across a
        cut segment (its next Length is in the next segment): the messages it cut are delivered
        with their captured bytes only, as a cut UDP datagram's are; a TLS or PPTP stream has a
        gap there (their records are read whole)."""
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
            self.sink.tcp_segment(ref, ts, ipver, src, dst, sport, dport, flags,
                                  end - poff + cut)
            if flags & SYN:
                app.restart()
            elif app.framing == _NOT_IKE:
                tcp.touch(d)
                return True
        else:
            self.other += 1
            if not self._vpn_tcp_segment(d, ref, ts, flags, end - poff + cut):
                tcp.touch(d)
                return app.vproto != "tls"
            if app.vproto != "openvpn":
                cut = 0
        if cut > _MAX_CUT:  # a record's original length beyond any IP packet: damaged input
            cut = _MAX_CUT
        for x in tcp.segment(d, seq, ack, flags, data, poff, end, ref, cut):
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
            if _openvpn.tcp_stream_start(data, poff, end, server=True):
                # the server's side of it (the capture holds only that direction)
                return _VpnTcp("openvpn", False)
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
        framed = st.framing == _tcpencap.FRAMED
        # the bytes that frame a message: RFC 9329's Length (and the Non-ESP Marker or SPI
        # that tells IKE from ESP), else the Non-ESP Marker and the IKE header up to its Length
        head = _tcpencap.frame_head(st.framing)
        try:
            messages, consumed = _tcpencap.split(buf, start, st.framing)
        except DissectError as e:
            if d.cuts and self._framing_cut(d, start, start + head, ref, ts):
                return
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
        cuts = d.cuts
        pos = start
        for kind, off, mend, spi, seq in messages:
            if cuts:
                if tcp.cut_in(d, pos, pos + head) >= 0:
                    break  # its Length was not captured: the framing is lost here (below)
                cend = tcp.captured_end(d, off, mend)
                if framed and cend < off:  # IKE or ESP cannot be told (the frame is counted
                    pos = mend             # among the truncated ones)
                    continue
            else:
                cend = mend
            pos = mend
            if kind == _IKE:
                if cend < mend:
                    self._ike_tcp_cut(d, ref, ts, buf, off, cend, mend, frames)
                else:
                    ike_event(sink, ref, ts, ipver, src, dst, sport, dport, "tcp", buf, off,
                              mend, frames)
            elif kind == _ESP:
                if cend - off < _ESP_HEAD:
                    # its SPI or sequence number was not captured (its frame is counted among
                    # the truncated ones)
                    continue
                sink.esp_tcp(ref, ts, ipver, src, dst, sport, dport, spi, seq, mend - off)
                if cend == mend:
                    self._esp_payload(ref, ts, ipver, src, dst, sport, dport, spi, seq,
                                      bytes(buf[off:mend]), 0, mend - off)
            else:
                self._error(ref, "TCP-encapsulated message is neither IKE nor ESP")
        if not cuts:
            tcp.consume(d, start + consumed)
            return
        tcp.consume(d, pos)
        self._framing_cut(d, 0, head, ref, ts)

    def _framing_cut(self, d, a, b, ref, ts) -> bool:
        """When the bytes ``d.buf[a:b]`` that frame the next message were cut by the snapshot
        length: the stream is read again from the end of that cut (the next segment's start,
        where a message boundary is looked for as after a gap; counted in the gaps); True when
        so."""
        tcp = self.tcp
        e = tcp.cut_in(d, a, b)
        if e < 0:
            return False
        tcp.consume(d, e)
        tcp.gaps += 1
        d.gap = True
        if d.buf:  # the segments after it are here already
            if d.app.__class__ is _IkeTcp:
                self._ike_tcp_deliver(d, ref, ts)
            else:
                self._vpn_tcp_deliver(d, ref, ts)
        return True

    def _ike_tcp_cut(self, d, ref, ts, buf, off, cend, mend, frames):
        """An IKE message of a TCP stream whose bytes from ``cend`` on the snapshot length cut
        (it fills its frame up to ``mend``): its captured bytes, as a cut UDP datagram's IKE
        message (the tracker sees it truncated).  When only the header's Length is missing (a
        96-byte snapshot of a segment with TCP timestamps keeps 24 bytes of the header), it is
        the frame's: RFC 9329 §3 frames one whole IKE message (after the Non-ESP Marker)."""
        ipver, src, dst, sport, dport = d.addr
        data = _tcpencap.ike_head_of_frame(buf, off, cend, mend)
        if data is not None:
            off, cend = 0, len(data)
        else:
            data = buf
        ike_event(self.sink, ref, ts, ipver, src, dst, sport, dport, "tcp", data, off, cend,
                  frames)

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
            if proto == "tls" and _openvpn.tcp_stream_start(buf, 0, n, not st.from_client):
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
                try:
                    msgs, used = _openvpn.split_tcp(buf, 0)
                except DissectError:
                    if d.cuts and self._framing_cut(d, 0, _OPENVPN_HEAD, ref, ts):
                        return
                    raise
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
        tcp = self.tcp
        cuts = d.cuts
        for a, b in msgs:
            if cuts:
                if tcp.cut_in(d, a - 2, a + 1) >= 0:
                    # its Length or opcode was not captured: the framing is lost here
                    used = a - 2
                    break
                b = tcp.captured_end(d, a, b)  # a packet the cut shortened: its captured bytes
            sink.vpn_tcp(ref, ts, ipver, src, dst, sport, dport, proto, bytes(buf[a:b]), frames,
                         st.from_client)
            if proto == "tls" and buf[a] == 23:
                st.appdata += 1
        if proto == "tls" and st.appdata >= _TLS_APPDATA_RECORDS:
            self._vpn_tcp_stop(d)  # the handshake is over: the rest is encrypted application data
            return
        self.tcp.consume(d, used)
        if cuts and self._framing_cut(d, 0, _OPENVPN_HEAD, ref, ts):
            return
        if d.gap:  # the partial message outgrew tcp_max_buffer
            d.gap = False
            self._vpn_tcp_stop(d)

    def _vpn_tcp_stop(self, d):
        d.app.done = True
        self.tcp.stop(d)

    # -- end -----------------------------------------------------------------------------------
