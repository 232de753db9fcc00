"""Numbered flows of the VPNs beside ESP, at one vantage point (issue 16): what lets the same
packet be recognised at two points when NAT rewrote its addresses and ports.

* WireGuard transport data: (receiver index, 64-bit counter) — the counter starts at 0 for each
  session and never repeats (WireGuard paper §5.4.6);
* OpenVPN control packets: (sender's session ID, replay packet ID under tls-auth / tls-crypt,
  else the message packet ID); data packets: (key ID and peer ID, direction, packet ID) where
  the packet ID is in the clear (AEAD data channel, :func:`dissect.vpn.openvpn.data_packet_id`;
  a flow whose numbers do not run in order is not used for losses);
* DTLS (an SSL-VPN's data channel): (sender, client port, epoch, record sequence number);
* WireGuard handshake initiations and responses: (message, sender index), one each;
* PPTP's enhanced GRE: (call ID, sequence number);
* OpenVPN over TCP: the packets of the stream by the same numbers as over UDP;
* L2TP control messages: (tunnel ID, Ns) — ZLB acknowledgements are left out, their Ns is the
  next message's; data messages with sequencing: (tunnel ID, session ID, Ns) (RFC 2661 §5.8,
  16-bit numbers unwrapped here).

(AH is tracked by the ESP tracker like ESP: :class:`pcapvpn.track.vantage.PointEspTracker`.)

Each flow keeps what an ESP SA keeps at a point: the lowest and highest (unwrapped) number, the
holes between them (bounded), a sample of the numbers (the same numbers at every point), the
addresses of its first packet.  A number that falls far below the highest one while small is a
restart of the numbering (a peer restarted, a new session reused the index): a new *epoch* of
the flow begins, and numbers of two epochs are never compared or matched.
"""

from __future__ import annotations

from dissect.vpn import l2tp as _l2tp
from dissect.vpn import openvpn as _ov
from dissect.vpn import tls as _tls
from dissect.vpn import wireguard as _wg
from dissect.vpn.errors import DissectError
from pcapvpn.track.vantage.ranges import fill_hole, hole_refs, seen_ranges

#: holes kept per flow (beyond them the flow's comparison is approximate)
MAX_HOLES = 4096
#: flows followed per point (further ones are counted)
MAX_FLOWS = 4096
#: a number this far below the highest one, and at most RESTART_LOW, starts a new epoch
RESTART_DEPTH = 128
RESTART_LOW = 64
#: epochs kept per flow key (the latest ones)
MAX_EPOCHS = 16
#: a number this wide never wraps (WireGuard's 64-bit counter)
NO_WRAP = 64


class SeqFlow:
    """One epoch of one numbered flow at one point."""

    __slots__ = ("kind", "key", "epoch", "width", "ipver", "src", "dst", "sport", "dport",
                 "packets", "first_ts", "last_ts", "first_ref", "last_ref", "min_seq",
                 "max_seq", "base", "reordered", "duplicates", "holes", "holes_over",
                 "samples", "fragmented", "moves_total", "label", "mixed")

    def __init__(self, kind, key, epoch, width, ipver, src, dst, sport, dport, ts, ref, seq,
                 label):
        from pcapvpn.track.vantage import SampleSet

        self.kind = kind
        self.key = key
        self.epoch = epoch
        self.width = width
        self.ipver = ipver
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.packets = 0
        self.first_ts = ts
        self.last_ts = ts
        self.first_ref = ref
        self.last_ref = ref
        self.min_seq = seq
        self.max_seq = seq - 1
        self.base = 0
        self.reordered = 0
        self.duplicates = 0
        #: [[first missing, end (exclusive), ref of the packet after the hole], ...] sorted
        self.holes: list = []
        self.holes_over = False
        self.samples = SampleSet()
        # what the ESP SA has and the path facts read
        self.fragmented = 0
        self.moves_total = 0
        #: words naming the flow in findings ("receiver index 0x1a2b3c4d")
        self.label = label
        #: packets of another address/port tuple came under the same key (two clients whose
        #: numbers are not unique, or a NAT remap): the numbers are no sequence here
        self.mixed = False

    @property
    def spi(self):
        return self.key

    @property
    def in_order(self) -> bool:
        """The numbers ran in order (nearly every number between the lowest and the highest
        was seen): they are sequence numbers, losses can be told."""
        span = self.max_seq - self.min_seq + 1
        return not self.mixed and self.packets > 0 and span <= 2 * self.packets + RESTART_LOW

    def unwrap(self, seq: int) -> int:
        """The extended number of a ``width``-bit number near the highest one seen."""
        w = self.width
        if w >= NO_WRAP:
            return seq
        m = 1 << w
        s = seq + self.base
        top = self.max_seq
        if s < top - m // 2:
            s += m
        elif s > top + m // 2 and s >= m:
            s -= m
        return s

    def add(self, ts, ref, s, length) -> None:
        """Packet with extended number ``s`` (a new number or a late one)."""
        top = self.max_seq
        if s > top:
            if s - top > 1 and self.packets:
                h = self.holes
                if len(h) < MAX_HOLES:
                    h.append([top + 1, s, ref])
                else:
                    self.holes_over = True
            self.max_seq = s
            if self.width < NO_WRAP and s - self.base >= 1 << self.width:
                self.base += 1 << self.width
        elif s < self.min_seq:
            self.min_seq = s
            self.reordered += 1
        elif fill_hole(self.holes, s):
            self.reordered += 1
        else:
            self.duplicates += 1  # already seen here (a copy or a retransmission)
            return
        self.packets += 1
        self.last_ts = ts
        self.last_ref = ref
        self.samples.add(s, ts, ref, length)

    def seen(self) -> list:
        """The numbers seen, as ranges ``[(a, b), ...]`` (b exclusive)."""
        return seen_ranges(self.min_seq, self.max_seq + 1, self.holes)

    def hole_refs(self, ranges) -> list:
        return hole_refs(self.holes, ranges)


class SeqStore:
    """The numbered flows of one point: ``(kind, key) -> [SeqFlow epochs]``."""

    def __init__(self, vpn_tracker):
        self.vpn = vpn_tracker
        self.flows: dict = {}
        self.dropped = 0

    def _flow(self, kind, key, width, ipver, src, dst, sport, dport, ts, ref, seq, label):
        k = (kind, key)
        eps = self.flows.get(k)
        if eps is None:
            if len(self.flows) >= MAX_FLOWS:
                self.dropped += 1
                return None, seq
            f = SeqFlow(kind, key, 0, width, ipver, src, dst, sport, dport, ts, ref, seq,
                        label)
            self.flows[k] = [f]
            return f, seq
        f = eps[-1]
        s = f.unwrap(seq)
        if f.max_seq - s >= RESTART_DEPTH and seq <= RESTART_LOW:
            # the numbering restarted: a new epoch, never compared with the old one
            f = SeqFlow(kind, key, f.epoch + 1, width, ipver, src, dst, sport, dport, ts, ref,
                        seq, label)
            eps.append(f)
            if len(eps) > MAX_EPOCHS:
                del eps[0]
            s = seq
        return f, s

    def _packet(self, kind, key, width, ipver, src, dst, sport, dport, ts, ref, seq, length,
                label, unique=False):
        """``unique``: the key names one flow whatever its tuple (a WireGuard receiver index,
        an OpenVPN session ID); else packets of another tuple under the key mark it mixed."""
        f, s = self._flow(kind, key, width, ipver, src, dst, sport, dport, ts, ref, seq, label)
        if f is not None:
            if not unique and (src, dst, sport, dport) != (f.src, f.dst, f.sport, f.dport):
                f.mixed = True
            f.add(ts, ref, s, length)

    def udp(self, ref, ts, ipver, src, dst, sport, dport, proto, data, off, end) -> None:
        """After the VPN tracker took the datagram: its number, if its flow is a VPN's."""
        ent = self.vpn.udp_flows.get((src, sport, dst, dport))
        if ent is None:
            return
        t, fc, _rkey = ent
        try:
            if t.protocol == "wireguard" and proto == "wireguard":
                m = _wg.parse(data, off, end)
                if m[0] == _wg.DATA:
                    self._packet("wireguard", m[1], NO_WRAP, ipver, src, dst, sport, dport, ts, ref,
                                 m[2], end - off, f"receiver index 0x{m[1]:08x}", True)
                elif m[0] in (_wg.INITIATION, _wg.RESPONSE):
                    # one message per fresh sender index (paper §5.4.2, §5.4.3): a flow of one
                    name = _wg.message_name(m[0])
                    self._packet("wireguard", (name, m[1]), NO_WRAP, ipver, src, dst, sport,
                                 dport, ts, ref, 0, end - off,
                                 f"{name}, sender index 0x{m[1]:08x}", True)
            elif t.protocol == "openvpn" and proto == "openvpn":
                self._openvpn(t, fc, ref, ts, ipver, src, dst, sport, dport, data, off, end)
            elif t.protocol == "sslvpn" and proto == "dtls":
                # DTLS records: (epoch, 48-bit sequence number) per sender (RFC 6347 §4.1);
                # the datagram's first record names it
                recs = _tls.parse_dtls_records(data, off, end)
                if recs:
                    _ct, _ver, epoch, seq, _a, _b = recs[0]
                    way = "client" if fc else "server"
                    self._packet("sslvpn", (way, dport if fc else sport, epoch), NO_WRAP, ipver,
                                 src, dst, sport, dport, ts, ref, seq, end - off,
                                 f"DTLS from the {way}, epoch {epoch}")
            elif t.protocol == "l2tp":
                h = _l2tp.parse_header(data, off, end)
                if h.ns is None:
                    return
                if h.control:
                    if h.payload_off >= end:
                        return  # a ZLB acknowledgement: its Ns is the next message's
                    self._packet("l2tp", (h.tunnel_id, None), 16, ipver, src, dst, sport,
                                 dport, ts, ref, h.ns, end - off,
                                 f"control, tunnel ID {h.tunnel_id}")
                else:
                    self._packet("l2tp", (h.tunnel_id, h.session_id), 16, ipver, src, dst,
                                 sport, dport, ts, ref, h.ns, end - off,
                                 f"data, tunnel ID {h.tunnel_id} session ID {h.session_id}")
        except DissectError:
            return

    def tcp(self, ref, ts, ipver, src, dst, sport, dport, proto, msg, frames,
            from_client) -> None:
        """After the VPN tracker took a message of a TCP stream: OpenVPN over TCP's packets by
        the same numbers as over UDP (the stream's bytes pass a NAT unchanged)."""
        if proto != "openvpn" or not len(msg):
            return
        if from_client:
            key = ("tcp", src, dst, dport)
        else:
            key = ("tcp", dst, src, sport)
        t = self.vpn.tunnels.get(key)
        if t is None or t.protocol != "openvpn":
            return
        try:
            self._openvpn(t, from_client, ref, ts, ipver, src, dst, sport, dport, msg, 0,
                          len(msg))
        except DissectError:
            return

    def gre(self, ref, ts, ipver, src, dst, call_id, length, seq, ack) -> None:
        """PPTP's enhanced GRE (RFC 2637 §4.1): (call ID, sequence number) when it has one."""
        if seq is None or seq < 0:
            return
        self._packet("pptp", call_id, 32, ipver, src, dst, -1, -1, ts, ref, seq, length,
                     f"GRE call ID {call_id}")

    def _openvpn(self, t, fc, ref, ts, ipver, src, dst, sport, dport, data, off, end):
        op, key_id = _ov.opcode(data, off)
        if op in _ov.DATA_OPCODES:
            pid = _ov.data_packet_id(data, off, end)
            if pid is None:
                return
            peer = _ov.parse_header(data, off, end)[2]
            way = "client" if fc else "server"
            self._packet("openvpn", ("data", peer, key_id, fc), 32, ipver, src, dst, sport,
                         dport, ts, ref, pid, end - off,
                         f"data from the {way}, key ID {key_id}"
                         + (f" peer ID {peer}" if peer is not None else ""))
            return
        layout = t.st.layout
        if layout is None:
            return
        c = _ov.parse_control(data, off, end, layout)
        seq = c.replay_id if c.replay_id is not None else c.packet_id
        if seq is None:
            return
        what = "replay packet ID" if c.replay_id is not None else "message packet ID"
        self._packet("openvpn", ("control", c.session_id), 32, ipver, src, dst, sport, dport,
                     ts, ref, seq, end - off,
                     f"control, session ID {c.session_id:016x} ({what})", True)

    def expire(self, before: float) -> None:
        """Forget the epochs whose last packet came before ``before`` (live mode)."""
        for k in list(self.flows):
            eps = [f for f in self.flows[k] if f.last_ts >= before]
            if eps:
                self.flows[k] = eps
            else:
                del self.flows[k]

    def all_flows(self) -> list:
        return [f for eps in self.flows.values() for f in eps]
