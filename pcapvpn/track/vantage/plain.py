"""Plaintext packets between vantage points (issue 16): the inside views (tunnel interfaces, a
gateway's LAN side, traffic beside a tunnel) matched by what a NAT leaves alone
(:func:`dissect.vpn.ip.nat_fingerprint`: the IPv4 ID and a hash of the first bytes of the
transport header and payload), the NAT translation learnt from the matches, and what one point
saw of a conversation direction that never reached the next point.

Plaintext has no sequence numbers, so a point keeps one entry per packet, bounded:
:data:`MAX_PLAIN` packets per point (beyond them packets are counted, and only the time both
points recorded is compared).  Copies of one packet at one point within ``duplicate_window``
(a mirror's copy, the same packet on two interfaces of a ``-i any`` capture) are folded.

The direction of a conversation between two points is told by its matched packets (the point
that sees them first is upstream, on the first point's clock); a direction with no match at all
takes the reverse of its reverse's order.  Only conversations both points saw (at least one
packet matched either way) are compared.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from dissect.vpn.ip import IpProto, nat_fingerprint

#: plaintext packets recorded per point
MAX_PLAIN = 100_000
#: evidence frames kept per lost conversation direction
MAX_LOST_REFS = 10
_PROTO_NAMES = {IpProto.TCP: "TCP", IpProto.UDP: "UDP", IpProto.ICMP: "ICMP",
                IpProto.ICMPV6: "ICMPv6"}


class PlainRecorder:
    """The plaintext packets of one point: ``fingerprint -> [ts, ref, conv, length]`` where
    ``conv`` is the packet's ``(proto, src, sport, dst, dport)``."""

    def __init__(self, dup_window: float):
        self.d: dict = {}
        self.dropped = 0
        self.folded = 0
        #: time of the last packet recorded before the bound was reached (None: none dropped)
        self.until: float | None = None
        self.dup_window = dup_window
        #: one tuple per conversation direction, shared by its packets' entries
        self.convs: dict = {}
        #: the conversation directions seen on a tunnel interface (the inside of a tunnel)
        self.tunnel_convs: set = set()

    def wrap(self, plain, views=None):
        """``plain`` recording its packets; ``views``: the plaintext tracker's views (their
        ``kind`` tells a tunnel interface)."""
        d = self.d
        limit = MAX_PLAIN
        win = self.dup_window
        convs = self.convs
        tunnel_convs = self.tunnel_convs

        def recorded(ref, ts, iface, linktype, cooked, net, data):
            plain(ref, ts, iface, linktype, cooked, net, data)
            if net[8] or net[9]:
                return  # IP fragments are not handed over as plaintext anyway
            fp = nat_fingerprint(data, net)
            x = d.get(fp)
            if x is not None:
                if ts - x[0] <= win:
                    self.folded += 1
                return
            if len(d) >= limit:
                if self.until is None:
                    self.until = ts
                self.dropped += 1
                return
            c = (net[3], net[1], net[4], net[2], net[5])
            cc = convs.get(c)
            if cc is None:
                cc = convs[c] = c
                if views is not None:
                    key = (ref[0], iface, -1, -1) if cooked is None else \
                        (ref[0], iface, cooked[0], cooked[1])
                    v = views.get(key)
                    if v is not None and v.kind == "tunnel":
                        tunnel_convs.add(c)
            d[fp] = (ts, ref, cc, net[7] - net[6])

        return recorded


    def expire(self, before: float) -> None:
        """Forget the packets recorded before ``before`` (live mode); recording resumes."""
        d = self.d  # the same dict: wrap()'s closure holds it
        for fp in [fp for fp, x in d.items() if x[0] < before]:
            del d[fp]
        self.until = None
        live = {x[2] for x in d.values()}
        for c in [c for c in self.convs if c not in live]:
            del self.convs[c]
            self.tunnel_convs.discard(c)


@dataclass
class PlainLoss:
    """Packets of one conversation direction seen at ``src`` and never at ``dst``."""

    src: str
    dst: str
    #: the conversation direction at ``src``: (proto, src, sport, dst, dport)
    conv: tuple
    #: the same direction at ``dst`` (as a NAT between the points made it), when known
    conv_dst: tuple | None
    lost: int
    #: packets of the direction at ``src`` that ``dst`` could have seen (within its capture)
    sent: int
    first_ts: float
    last_ts: float
    frames: list = field(default_factory=list)
    #: True when the direction is the one that opened the conversation (its first packet)
    opener: bool = True
    #: the reverse direction reached ``dst``'s side (answers flowed the other way)
    reverse_ok: bool = False
    #: point index of ``src`` (for the rules: the first point's own views)
    src_index: int = 0
    #: the matched one-way delay from ``src`` to ``dst`` (the nearest downstream point wins)
    delay: float = 0.0
    #: the conversation was seen on a tunnel interface at either point (the inside of a tunnel)
    inside: bool = False


def _conv_key(c) -> tuple:
    """Both directions of a conversation under one key."""
    a = (c[1], c[2])
    b = (c[3], c[4])
    return (c[0],) + ((a, b) if a <= b else (b, a))


def offset_pairs(points, k) -> list:
    """Matched plaintext packets of points 0 and ``k``: ``(t0, t_k - t0, (src, dst) at 0)``."""
    ra = getattr(points[0].tracker, "plain_rec", None)
    rb = getattr(points[k].tracker, "plain_rec", None)
    if ra is None or rb is None:
        return []
    out = []
    for fp in ra.d.keys() & rb.d.keys():
        a, b = ra.d[fp], rb.d[fp]
        out.append((a[0], b[0] - a[0], (a[2][1], a[2][3])))
    return out


def match_plain(points, corrected, window, slack) -> tuple:
    """``(losses, nat)``: :class:`PlainLoss` for every pair of points and conversation direction
    that both saw; NAT translations ``{"what": "plain", "points": {name: tuple}}``."""
    recs = [getattr(p.tracker, "plain_rec", None) for p in points]
    losses: list = []
    nat: list = []
    seen_nat: set = set()
    for u in range(len(points)):
        for w in range(len(points)):
            if u == w or recs[u] is None or recs[w] is None or not recs[u].d or not recs[w].d:
                continue
            _pair(points, u, w, recs[u], recs[w], corrected, window, slack, losses, nat,
                  seen_nat)
    # several points downstream: the loss belongs to the segment to the nearest one
    best: dict = {}
    for x in losses:
        k = (x.src, x.conv)
        if k not in best or x.delay < best[k].delay:
            best[k] = x
    return [x for x in losses if best[(x.src, x.conv)] is x], nat


def _rev(c):
    return (c[0], c[3], c[4], c[1], c[2])


def _pair(points, u, w, ru, rw, corrected, window, slack, losses, nat, seen_nat):
    """What point ``u`` saw of the conversation directions it sends towards ``w`` (``u``
    upstream) and ``w`` never saw."""
    common = ru.d.keys() & rw.d.keys()
    if not common:
        return
    delays: dict = {}  # direction at u -> [t_w - t_u]
    at_w: dict = {}  # direction at u -> the same direction at w
    for fp in common:
        a, b = ru.d[fp], rw.d[fp]
        delays.setdefault(a[2], []).append(corrected(w, b[0]) - corrected(u, a[0]))
        at_w.setdefault(a[2], b[2])
    by_u: dict = {}
    for fp, x in ru.d.items():
        by_u.setdefault(x[2], []).append((fp, x))
    convs = {_conv_key(c) for c in delays}
    ww = window(points[w])
    if ww is None:
        return
    # a packet is judged when w was capturing from before it and either ran ``slack`` past
    # it or saw a later packet of the same conversation; within what both points recorded
    start = ww[0]
    end = ww[1]
    bound = min((corrected(p, r.until) for r, p in ((ru, u), (rw, w)) if r.until is not None),
                default=float("inf"))
    last_w: dict = {}  # conversation (both ways, as at w) -> its latest packet at w
    for x in rw.d.values():
        k = _conv_key(x[2])
        t = corrected(w, x[0])
        if t > last_w.get(k, float("-inf")):
            last_w[k] = t
    firsts: dict = {}
    for c, xs in by_u.items():
        k = _conv_key(c)
        t = min(x[0] for _fp, x in xs)
        if k not in firsts or t < firsts[k][0]:
            firsts[k] = (t, c)
    for c, xs in by_u.items():
        k = _conv_key(c)
        if k not in convs:
            continue
        rev = _rev(c)
        ds = delays.get(c)
        if ds:
            delay = statistics.median(ds)
            if delay < 0:
                continue  # w is upstream for this direction
        elif not delays.get(rev) or statistics.median(delays[rev]) > 0:
            continue  # the reverse flows u -> w: this direction flows w -> u (or unknown)
        else:
            delay = -statistics.median(delays[rev])
        cw = at_w.get(c)
        if cw is None and at_w.get(rev) is not None:
            cw = _rev(at_w[rev])
        if cw is not None and cw != c and (c, cw) not in seen_nat:
            seen_nat.update({(c, cw), (cw, c), (rev, _rev(cw)), (_rev(cw), rev)})
            nat.append({"what": "plain", "points": {points[u].name: _tuple_text(c),
                                                    points[w].name: _tuple_text(cw)},
                        "between": [[points[u].name, points[w].name]], "source_changes": {}})
        later = last_w.get(_conv_key(cw), float("-inf")) if cw is not None else float("-inf")
        lost = []
        judged = 0
        for fp, x in xs:
            t = corrected(u, x[0])
            if t < start or t > bound:
                continue
            if t + slack > end and later <= t:
                continue  # w stopped capturing before it could have arrived
            judged += 1
            if fp not in rw.d:
                lost.append((t, x[1]))
        if not lost:
            continue
        lost.sort()
        opened = firsts.get(k)
        losses.append(PlainLoss(
            points[u].name, points[w].name, c, cw, len(lost), judged, lost[0][0],
            lost[-1][0], [(points[u].name, points[u].file(r[0]), r[1])
                          for _t, r in lost[:MAX_LOST_REFS]],
            opener=opened is None or opened[1] == c, reverse_ok=bool(delays.get(rev)),
            src_index=u, delay=delay,
            inside=bool({c, rev} & ru.tunnel_convs) or (cw is not None and bool(
                {cw, _rev(cw)} & rw.tunnel_convs))))


def _tuple_text(c) -> str:
    from pcapvpn.model import addr

    proto, s, sp, d, dp = c
    name = _PROTO_NAMES.get(proto, f"proto {proto}")
    sps = f":{sp}" if sp is not None and sp >= 0 else ""
    dps = f":{dp}" if dp is not None and dp >= 0 else ""
    return f"{name} {addr(s)}{sps} -> {addr(d)}{dps}"


def tuple_text(c) -> str:
    """``TCP 10.0.0.1:40000 -> 10.1.0.5:443`` of a conversation direction."""
    return _tuple_text(c)
