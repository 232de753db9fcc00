"""Tunnels: a pair of gateways and everything between them over time.

A tunnel ties the IKE SAs between two addresses (all generations: retries, rekeys, restarts) to
the ESP/AH SAs flowing between the same two addresses.  The two ESP SAs of one child SA are paired
(opposite directions, starting together: within ``PAIR_WINDOW`` seconds of each other, or both
after the same IKE exchange); an SA replaced by a rekey (the old SPI draining while the new one
starts) is a generation, not loss and not a mismatch.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left

from pcapvpn.model import _addr

#: two opposite ESP SAs whose first packets are this close (seconds) belong to one child SA
PAIR_WINDOW = 30.0


class Tunnel:
    __slots__ = ("id", "ipver", "a", "b", "ike_sas", "esp_sas", "pairs", "tcp_conns", "moved")

    def __init__(self, ipver, a, b):
        self.ipver = ipver
        self.a = a  # IKE initiator's address when known (else the lower address)
        self.b = b
        self.id = f"{_txt(a)}<->{_txt(b)}"
        self.ike_sas = []
        self.esp_sas = []
        #: (SA a->b or None, SA b->a or None), ESP and AH alike (an SA's ``proto`` tells)
        self.pairs = []
        #: IKE-over-TCP connections between the two (pcapvpn.track.IkeTcpConn), attempts included
        self.tcp_conns = []
        #: addresses an end moved to while keeping its IKE SA (MOBIKE, RFC 4555, or a NAT that
        #: changed the public address): new address -> ``a`` or ``b``
        self.moved: dict = {}

    def side(self, addr):
        """``a`` or ``b`` for an address of this tunnel (a moved end's new address included)."""
        return self.moved.get(addr, addr)

    @property
    def version(self):
        vs = {sa.version for sa in self.ike_sas}
        return vs.pop() if len(vs) == 1 else (max(vs) if vs else None)

    def outbound(self, sa) -> bool:
        """True when the ESP SA flows a -> b."""
        return self.side(sa.src) == self.a

    @property
    def first_ts(self):
        ts = [x.first_ts for x in self.ike_sas + self.esp_sas + self.tcp_conns
              if x.first_ts is not None]
        return min(ts) if ts else None

    @property
    def last_ts(self):
        ts = [x.last_ts for x in self.ike_sas + self.esp_sas + self.tcp_conns
              if x.last_ts is not None]
        return max(ts) if ts else None


def _txt(a: bytes) -> str:
    # the model's cached text of a packed address (a tunnel's id is written again at every
    # state build and every look-up of it)
    return _addr(a) if type(a) is bytes else str(ipaddress.ip_address(a))


def _pair_key(x: bytes, y: bytes):
    return (x, y) if x <= y else (y, x)


def build_tunnels(ike_sas, esp_sas, thresholds=None, tcp_conns=()) -> list[Tunnel]:
    """Tunnels of the IKE SAs and ESP/AH SAs; ``tcp_conns`` (IKE over TCP, RFC 9329) join the
    tunnel of their two addresses, and form one when nothing else did (a refused or unanswered
    TCP-only initiator: its client is the initiator)."""
    tunnels: dict = {}
    order = []

    def get(ipver, x, y, initiator=None):
        key = _pair_key(x, y)
        t = tunnels.get(key)
        if t is None:
            if initiator is not None:
                a, b = (x, y) if initiator == x else (y, x)
            else:
                a, b = key
            t = tunnels[key] = Tunnel(ipver, a, b)
            order.append(t)
        return t

    for sa in sorted(ike_sas, key=lambda s: s.first_ts or 0):
        if sa.initiator is None:
            continue
        t = get(sa.initiator[0], sa.initiator[1], sa.responder[1], sa.initiator[1])
        t.ike_sas.append(sa)
    for t in order:
        _follow_moves(t, tunnels)
    for sa in sorted(esp_sas, key=lambda s: s.first_ts or 0):
        t = get(sa.ipver, sa.src, sa.dst)
        t.esp_sas.append(sa)
    for c in sorted(tcp_conns, key=lambda c: c.first_ts):
        if c.syn or c.bytes[0] or c.bytes[1]:
            get(c.ipver, c.client, c.server, c.client).tcp_conns.append(c)
    for t in order:
        _pair(t)
    return order


def _follow_moves(t: Tunnel, tunnels: dict) -> None:
    """An IKE SA whose messages continue from a new address of one end (the other end the
    same): MOBIKE's UPDATE_SA_ADDRESSES (RFC 4555 §3.5) or a NAT that changed the public
    address.  The new pair joins this tunnel, unless IKE SAs of its own made it a tunnel."""
    for sa in t.ike_sas:
        for m in sa.messages:
            src, dst = m.src, m.dst
            if src in (t.a, t.b) and dst in (t.a, t.b):
                continue
            if dst in (t.a, t.b) and src not in (t.a, t.b):
                new, old = src, (t.b if dst == t.a else t.a)
            elif src in (t.a, t.b) and dst not in (t.a, t.b):
                new, old = dst, (t.b if src == t.a else t.a)
            else:
                continue
            key = _pair_key(new, t.a if old == t.b else t.b)
            if tunnels.get(key, t) is not t or new in t.moved:
                continue
            t.moved[new] = old
            tunnels[key] = t


def _pair(t: Tunnel) -> None:
    sas = t.esp_sas
    if not sas:  # IKE only
        return
    moved = t.moved
    if len(sas) == 1 and t.a != t.b:  # one SA (most tunnels of a flood): nothing to pair
        s = sas[0]
        if s.proto in ("esp", "ah"):
            side = moved.get(s.src, s.src)
            if side == t.a:
                t.pairs.append((s, None))
            elif side == t.b:
                t.pairs.append((None, s))
        return
    # the tunnel's SAs by protocol and direction in one pass (each list in their order)
    parts: dict = {}
    for s in t.esp_sas:
        parts.setdefault((s.proto, moved.get(s.src, s.src)), []).append(s)
    for proto in ("esp", "ah"):
        t.pairs.extend(pair_by_start(parts.get((proto, t.a), []), parts.get((proto, t.b), []),
                                     PAIR_WINDOW))
    t.pairs.sort(key=_pair_start)


def _pair_start(p) -> float:
    """A pair's first packet (the earlier of its SAs')."""
    a, b = p
    if b is None:
        return a.first_ts
    if a is None:
        return b.first_ts
    return min(a.first_ts, b.first_ts)


def pair_by_start(out: list, back: list, window: float) -> list:
    """Pair SAs of two opposite directions by start time: each SA of ``out`` in turn takes the
    unused SA of ``back`` whose first packet is closest to its own, within ``window`` seconds
    (on a tie the first in ``back``, which is in start-time order).  Returns ``(out SA, back SA or None)`` in the order
    of ``out``, then ``(None, back SA)`` for each SA of ``back`` left over.

    ``back`` is searched by bisection with two "next unused" pointers (path-compressed), so
    pairing n SAs costs O(n log n), not O(n²): one gateway pair can carry thousands of SPIs."""
    if not out or not back:  # one direction only (most tunnels of a flood): nothing to pair
        return [(o, None) for o in out] + [(None, r) for r in back]
    order = sorted(range(len(back)), key=lambda i: (back[i].first_ts, i))
    firsts = [back[i].first_ts for i in order]
    n = len(order)
    right = list(range(n + 1))  # right[k]: toward the lowest unused position >= k (n: none)
    left = list(range(n + 1))   # left[k]: toward the highest unused position < k, plus one
    used = set()
    pairs = []
    for o in out:
        f = o.first_ts
        k = bisect_left(firsts, f)
        best = None
        r = _find(right, k)
        if r < n:
            best = (firsts[r] - f, r)
        lo = _find(left, k) - 1
        if lo >= 0:
            d = f - firsts[lo]
            # every earlier start at the same (rounded) distance ties: the lowest one unused
            p0 = bisect_left(range(lo + 1), True, key=lambda p: f - firsts[p] <= d)
            eq = _find(right, p0)
            if best is None or d < best[0] or (d == best[0] and order[eq] < order[best[1]]):
                best = (d, eq)
        if best is None or best[0] > window:
            pairs.append((o, None))
            continue
        pos = best[1]
        right[pos] = pos + 1
        left[pos + 1] = pos
        used.add(order[pos])
        pairs.append((o, back[order[pos]]))
    pairs += [(None, r) for i, r in enumerate(back) if i not in used]
    return pairs


def _find(ptr: list, k: int) -> int:
    """Follow ``ptr`` from ``k`` to a fixed point (an unused position), compressing the path."""
    root = k
    while ptr[root] != root:
        root = ptr[root]
    while ptr[k] != root:
        ptr[k], k = root, ptr[k]
    return root
