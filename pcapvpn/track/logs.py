"""Gateway evidence on the capture's clock: align each log with the packets, and tie its events
to IKE SAs and tunnels.

**Anchors.**  A log event that stands for a packet (``sending packet ... (464 bytes)``, ``retransmit
2 of request with message ID 1``, ``initiating IKE_SA ... to B``, OpenVPN's ``TLS: Initial packet
from ..., sid=...``, pluto's ``TCP: connect(21) failed: Connection refused``: the RST that
answered an IKE-over-TCP SYN; WireGuard's ``Sending handshake initiation``, ``Received handshake
response``, ``Received invalid initiation message from ...``) is paired with every packet of the
capture it could be: same direction
relative to the gateway, the peer address on the right side (the gateway's own address may be
translated by a NAT), and where the log says them the IKE message length, exchange, Message ID,
request/response, retransmission, or the OpenVPN session ID.

**Offset.**  Each pair bounds the offset (capture clock minus log clock): the log's stamp is the
true time truncated to its resolution *r*, and the daemon logs a packet within a short latency
δ of the capture point seeing it, so ``offset ∈ (P − L − r − δ, P − L + δ]``.  The offset
contained in the bounds of the most distinct events wins (a sweep over the sorted bounds,
O(n log n)); the events consistent with it are the matches; the intersection of their bounds
gives the estimate (its middle) and the uncertainty (half its width, at least half the stamps'
resolution).  With 1-second stamps and a handful of packets on both sides of a second boundary
this is well under a second: over every lab log shifted by 0 s, +37 s, -125 s, +3 h 12 s and
-5 h 30 min the error was at most 0.38 s (median 0.07 s); over the lab branch's 51
regenerated scenarios at most 0.41 s, always inside the stated uncertainty.

**Zone.**  A log whose stamps name no zone is read as UTC (or ``--log-tz``); an offset within
five minutes of a whole hour (or half / quarter hour) is then reported as a time-zone difference
plus the remaining clock error, never as a clock error of hours.

**Association.**  Events of one daemon context (strongSwan ``<conn|N>``, pluto ``#N``, OpenVPN's
peer prefix) belong together: a context whose events matched packets of an IKE SA belongs to that
SA and its tunnel; otherwise a context or event is tied to a tunnel by ESP/IKE SPIs or by the
peer address it names.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from dissect.vpn.registry import ExchangeType



#: latency between the capture point seeing a packet and the daemon logging it (seconds)
LATENCY = 0.25
#: candidates per event beyond which the event says too little to align on
MAX_CANDIDATES = 64
#: events looked at for alignment (evenly spread over the log when there are more)
MAX_ANCHOR_EVENTS = 5000
#: a residual offset this close to a whole hour / half / quarter hour is a zone difference
ZONE_SLACK = 300.0

EXCH_NUM = {"IKE_SA_INIT": 34, "IKE_AUTH": 35, "CREATE_CHILD_SA": 36, "INFORMATIONAL": 37,
            "IKE_INTERMEDIATE": 43, "MAIN_MODE": 2, "AGGRESSIVE": 4, "QUICK_MODE": 32,
            "INFORMATIONAL_V1": 5, "TRANSACTION": 6}


@dataclass
class Alignment:
    offset: float = 0.0              # capture clock − log clock (seconds), zone included
    uncertainty: float | None = None  # half-width of the interval the offset lies in
    matched: int = 0                 # events matched to packets
    anchors: int = 0                 # events that could have matched
    zone_offset: float = 0.0         # the whole-hour part read as a time-zone difference
    clock_error: float = 0.0         # the rest
    method: str = "none"
    pairs: list = field(default_factory=list)  # (Entry, anchor)


class Anchor:
    """A packet a log line may stand for."""

    __slots__ = ("ts", "kind", "src", "dst", "sport", "dport", "size", "exch", "msgid",
                 "response", "retransmit", "first", "sa", "tunnel", "session", "refs")

    def __init__(self, ts, kind, src, dst, sport=None, dport=None, sa=None, tunnel=None):
        self.ts = ts
        self.kind = kind
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.size = None
        self.exch = None
        self.msgid = None
        self.response = None
        self.retransmit = False
        self.first = False
        self.sa = sa
        self.tunnel = tunnel
        self.session = None
        self.refs = ()


def _txt(a) -> str:
    try:
        return str(ipaddress.ip_address(a))
    except ValueError:
        return ""


def _norm(addr) -> str | None:
    """An address as a daemon wrote it → canonical text (None: not an address)."""
    if not addr:
        return None
    try:
        return str(ipaddress.ip_address(addr.strip("[]").split("%")[0]))
    except ValueError:
        return None


def capture_anchors(state) -> list[Anchor]:
    out = []
    tunnel_of = {}
    for t in getattr(state, "tunnels", ()):
        for sa in t.ike_sas:
            tunnel_of[id(sa)] = t.id
    for sa in state.ike_sas:
        tid = tunnel_of.get(id(sa))
        for m in sa.messages:
            if m.duplicate_of is not None:
                continue
            a = Anchor(m.ts, "ike", _txt(m.src), _txt(m.dst), m.sport, m.dport, sa, tid)
            a.size = m.length
            a.exch = m.exch
            a.msgid = m.msgid
            a.response = bool(m.is_response)
            a.retransmit = m.retransmit_of is not None
            a.first = (not a.response and not a.retransmit and
                       (m.exch == ExchangeType.IKE_SA_INIT or (sa.version == 1 and m.msgid == 0 and
                                                  m.step == 1)))
            a.refs = tuple(m.frames)
            out.append(a)
    for t in getattr(state, "tunnels", ()):  # IKE over TCP (RFC 9329)
        for c in t.tcp_conns:
            _tcp_refused(out, c, _txt(c.client), _txt(c.server), c.port, t.id)
    for t in getattr(state, "vpn_tunnels", ()):
        if t.transport == "tcp":
            for c in t.conns.values():
                _tcp_refused(out, c, _txt(t.client), _txt(t.server), t.port, t.id)
        if t.protocol == "wireguard" and t.st is not None:
            _wireguard(out, t)
            continue
        if t.protocol != "openvpn" or t.st is None:
            continue
        client, server = _txt(t.client), _txt(t.server)
        for s in t.st.sessions:
            for i, (ts, ref) in enumerate(s.client_resets):
                a = Anchor(ts, "ovpn_client_reset", client, server, None, t.port, None, t.id)
                a.first = i == 0
                a.session = f"{s.client_sid:016x}" if s.client_sid is not None else None
                a.refs = (ref,)
                out.append(a)
            for i, (ts, ref) in enumerate(s.server_resets):
                a = Anchor(ts, "ovpn_server_reset", server, client, t.port, None, None, t.id)
                a.first = i == 0
                a.session = f"{s.server_sid:016x}" if s.server_sid is not None else None
                a.refs = (ref,)
                out.append(a)
    out.sort(key=lambda a: a.ts)
    return out


def _wireguard(out: list, t) -> None:
    """WireGuard handshakes: each initiation, and the response that answered it (a daemon's
    "Sending handshake initiation" / "Received handshake response" ...)."""
    client, server = _txt(t.client), _txt(t.server)
    for h in t.st.handshakes:
        ini, resp = (client, server) if h.from_client else (server, client)
        a = Anchor(h.ts, "wg_initiation", ini, resp, None, None, None, t.id)
        a.response = False
        a.refs = (h.ref,)
        out.append(a)
        if h.response_ts is not None:
            a = Anchor(h.response_ts, "wg_response", resp, ini, None, None, None, t.id)
            a.response = True
            a.refs = (h.response_ref,)
            out.append(a)


def _tcp_refused(out: list, c, client: str, server: str, port, tunnel) -> None:
    """A TCP connection refused by the server side (its RST answered the SYN, nothing ever
    came back): the moment the client's connect() failed, a daemon's "connect ... failed:
    Connection refused" line (libreswan's IKE over TCP, an OpenVPN client over TCP)."""
    if not c.syn or not c.rst_server or c.synack or c.bytes[1]:
        return
    a = Anchor(c.rst_server[0][0], "tcp_refused", client, server, c.cport, port, None, tunnel)
    a.first = True
    a.refs = tuple(r for _ts, r in c.syn) + (c.rst_server[0][1],)
    out.append(a)


def _fits(e, a: Anchor, peer: str | None, local: str | None, known=frozenset()) -> bool:
    """Could the log event ``e`` (a LogEvent) stand for the packet ``a``?  A peer address the
    capture never shows (the gateway sees its peer through a NAT) does not rule a packet out:
    the other facts must then fit."""
    k = e.kind
    if peer is not None and known and peer not in known and local is None:
        peer = None
    if a.kind == "ike":
        if k not in ("ike_send", "ike_recv", "ike_init", "ike_peer_init", "ike_retransmit",
                     "aggressive_mode") and (e.exchange is None or e.direction is None or
                                             e.response is None):
            return False
        if e.direction == "out":
            if peer is not None and a.dst != peer and (local is None or a.src != local):
                return False
        elif e.direction == "in":
            if peer is not None and a.src != peer and (local is None or a.dst != local):
                return False
        else:
            return False
        if e.size is not None and a.size != e.size:
            return False
        if e.exchange is not None and EXCH_NUM.get(e.exchange, -1) != a.exch:
            return False
        if e.msgid is not None and a.msgid != e.msgid:
            return False
        if e.response is not None and a.response != e.response:
            return False
        if k == "ike_retransmit" and not a.retransmit:
            return False
        if k in ("ike_init", "ike_peer_init", "aggressive_mode") and e.size is None:
            return a.first
        if k in ("ike_send",) and e.size is None and e.exchange is None:
            return False
        return True
    if a.kind == "tcp_refused":  # the daemon opened the connection: the peer is the server
        return (k == "connect_failed" and e.direction == "out" and "refused" in
                (e.reason or "").lower() and (peer is None or a.dst == peer) and
                (local is None or a.src == local) and
                (e.peer_port is None or e.peer_port == a.dport))
    if k in ("wg_handshake", "wg_handshake_invalid"):  # WireGuard
        if a.kind not in ("wg_initiation", "wg_response") or a.response != e.response:
            return False
        if e.direction == "out":
            return (peer is None or a.dst == peer) and (local is None or a.src == local)
        return (peer is None or a.src == peer) and (local is None or a.dst == local)
    # OpenVPN
    if k == "tls_initial":
        if e.session is not None:
            return a.session == e.session
        if e.direction == "out":  # the client's first packet to the server
            return a.kind == "ovpn_client_reset" and a.first and (peer is None or a.dst == peer)
        return a.kind == "ovpn_client_reset" and a.first and (peer is None or a.src == peer)
    if k == "tls_crypt_failed" and e.direction == "in":
        return a.kind == "ovpn_client_reset" and (peer is None or a.src == peer)
    if k is None and e.direction == "out" and a.kind == "ovpn_client_reset":
        return a.first and (peer is None or a.dst == peer)
    return False


def align(source, state, anchors=None) -> Alignment:
    """The offset of one log source against the capture (``source``: a LogSource whose entries
    carry ``log_ts``)."""
    if anchors is None:
        anchors = capture_anchors(state)
    al = Alignment()
    ctx_peer = context_peers(source)
    usable = [e for e in source.entries if e.log_ts is not None and
              (e.ev.direction is not None or e.ev.kind == "tls_initial") and
              e.ev.kind not in ("proposals", "proposal_selected", "keepalive", "dpd_request")]
    if len(usable) > MAX_ANCHOR_EVENTS:
        step = len(usable) / MAX_ANCHOR_EVENTS
        usable = [usable[int(i * step)] for i in range(MAX_ANCHOR_EVENTS)]
    bounds = []  # (lo, hi, event index, anchor)
    known = frozenset(x for a in anchors for x in (a.src, a.dst))
    by_size: dict = {}
    by_exch: dict = {}
    by_addr: dict = {}
    for a in anchors:  # candidates are looked up, not scanned (captures with many IKE SAs)
        by_size.setdefault(a.size, []).append(a)
        by_exch.setdefault(a.exch, []).append(a)
        for x in (a.src, a.dst):
            by_addr.setdefault(x, []).append(a)
    for i, ent in enumerate(usable):
        ev = ent.ev
        peer = _norm(ev.peer) or ctx_peer.get(ev.ctx)
        local = _norm(ev.local)
        if ev.size is not None:
            pool = by_size.get(ev.size, ())
        elif ev.exchange is not None and ev.exchange in EXCH_NUM:
            pool = by_exch.get(EXCH_NUM[ev.exchange], ())
        elif peer is not None and peer in known:
            pool = by_addr.get(peer, ())
        else:
            pool = anchors
        cands = [a for a in pool if _fits(ev, a, peer, local, known)]
        if not cands or len(cands) > MAX_CANDIDATES:
            continue
        al.anchors += 1
        r = ent.res if ent.res else 0.0
        for a in cands:
            d = a.ts - ent.log_ts
            bounds.append((d - r - LATENCY, d + LATENCY, i, a))
    if not bounds:
        _zone(source, al)
        al.method = "none"
        return al
    best = _stab(bounds)
    lo, hi, matched = best
    # the matches: per event, the candidate whose bounds hold the chosen point, nearest its middle
    point = (lo + hi) / 2
    chosen = {}
    for b_lo, b_hi, i, a in bounds:
        if b_lo <= point <= b_hi:
            mid = (b_lo + b_hi) / 2
            if i not in chosen or abs(mid - point) < abs(chosen[i][2] - point):
                chosen[i] = (b_lo, b_hi, mid, a)
    ilo = max(c[0] for c in chosen.values())
    ihi = min(c[1] for c in chosen.values())
    al.offset = (ilo + ihi) / 2
    # never claim better than half the stamps' resolution (a whole-second log cannot place
    # the offset closer than that, whatever the intersection says)
    res = max((usable[i].res or 0.0) for i in chosen)
    al.uncertainty = max((ihi - ilo) / 2, res / 2)
    al.matched = len(chosen)
    al.pairs = [(usable[i], c[3]) for i, c in sorted(chosen.items())]
    al.method = "packets"
    _zone(source, al)
    return al


def _stab(bounds):
    """The point covered by the bounds of the most distinct events: ``(lo, hi, count)`` of the
    segment where that count holds (ties: the widest segment, the one least sensitive to the
    assumed latency; never a preference for any particular offset)."""
    pts = []
    for lo, hi, i, _a in bounds:
        pts.append((lo, 0, i))
        pts.append((hi, 1, i))
    pts.sort(key=lambda p: (p[0], p[1]))
    cover: dict = {}
    distinct = 0
    best = None
    for k, (x, kind, i) in enumerate(pts):
        if kind == 0:
            c = cover.get(i, 0)
            cover[i] = c + 1
            if c == 0:
                distinct += 1
            nxt = pts[k + 1][0] if k + 1 < len(pts) else x
            if best is None or distinct > best[2] or (
                    distinct == best[2] and (nxt - x) > (best[1] - best[0]) + 1e-9):
                best = (x, nxt, distinct)
        else:
            c = cover[i] - 1
            cover[i] = c
            if c == 0:
                distinct -= 1
    return best


def _zone(source, al: Alignment) -> None:
    """Split the offset into a time-zone difference and a clock error (only for a log whose
    zone is unknown: no zone in its stamps and no --log-tz)."""
    al.zone_offset = 0.0
    al.clock_error = al.offset
    if source.zone_in_log or source.tz is not None or al.method == "none":
        return
    for unit in (3600.0, 1800.0, 900.0):
        whole = round(al.offset / unit) * unit
        if whole and abs(al.offset - whole) <= ZONE_SLACK and abs(whole) <= 14 * 3600:
            al.zone_offset = whole
            al.clock_error = al.offset - whole
            return


def context_peers(source) -> dict:
    """Per daemon context: the peer address its events name (the first one)."""
    out = {}
    for e in source.entries:
        ev = e.ev
        if ev.ctx is None or ev.ctx in out:
            continue
        p = _norm(ev.peer)
        if p is not None:
            out[ev.ctx] = p
    return out


@dataclass
class Association:
    """Which tunnel / IKE SA each entry of a source belongs to."""

    tunnel: dict = field(default_factory=dict)   # id(entry) -> tunnel id
    ike_sa: dict = field(default_factory=dict)   # id(entry) -> IKE SA id
    matched: dict = field(default_factory=dict)  # id(entry) -> Anchor


def associate(source, state, al: Alignment) -> Association:
    assoc = Association()
    ctx_sa: dict = {}
    ctx_tunnel: dict = {}
    for ent, a in al.pairs:
        assoc.matched[id(ent)] = a
        if ent.ev.ctx is not None:
            if a.sa is not None:
                ctx_sa.setdefault(ent.ev.ctx, a.sa.id)
            if a.tunnel is not None:
                ctx_tunnel.setdefault(ent.ev.ctx, a.tunnel)
    by_spi: dict = {}
    by_ike_spi: dict = {}
    by_addr: dict = {}
    for t in getattr(state, "tunnels", ()):
        for e in t.esp_sas:
            by_spi.setdefault(f"{e.spi:08x}", t.id)
        for sa in t.ike_sas:
            by_ike_spi.setdefault(bytes(sa.ispi).hex(), (t.id, sa.id))
        for a in (t.a, t.b):
            by_addr.setdefault(_txt(a), []).append(t.id)
    for t in getattr(state, "vpn_tunnels", ()):
        for a in (t.client, t.server):
            by_addr.setdefault(_txt(a), []).append(t.id)
    ctx_peer = context_peers(source)
    tunnels_seen = {a.tunnel for _e, a in al.pairs if a.tunnel is not None}
    only = next(iter(tunnels_seen)) if len(tunnels_seen) == 1 else None
    for ent in source.entries:
        ev = ent.ev
        tid = None
        sa = None
        a = assoc.matched.get(id(ent))
        if a is not None:
            tid = a.tunnel
            sa = a.sa.id if a.sa is not None else None
        if tid is None and ev.ctx is not None:
            tid = ctx_tunnel.get(ev.ctx)
            sa = ctx_sa.get(ev.ctx)
        if tid is None:
            for s in ev.esp_spis:
                tid = by_spi.get(s.rjust(8, "0"))
                if tid:
                    break
        if tid is None:
            for s in ev.ike_spis:
                hit = by_ike_spi.get(s)
                if hit:
                    tid, sa = hit
                    break
        if tid is None:
            peer = _norm(ev.peer) or ctx_peer.get(ev.ctx)
            cands = by_addr.get(peer, []) if peer else []
            if len(set(cands)) == 1:
                tid = cands[0]
            elif only is not None and only in cands:
                tid = only
        if tid is None and only is not None and ev.peer is None and ev.ctx is None and \
                not ev.esp_spis:
            tid = only  # a gateway log whose matched packets are all one tunnel's
        if tid is not None:
            assoc.tunnel[id(ent)] = tid
        if sa is not None:
            assoc.ike_sa[id(ent)] = sa
    return assoc
