"""Tunnels: a pair of gateways and everything between them over time.

A tunnel ties the IKE SAs between two addresses (all generations: retries, rekeys, restarts) to
the ESP/AH SAs flowing between the same two addresses.  The two ESP SAs of one child SA are paired
(opposite directions, starting together: within ``PAIR_WINDOW`` seconds of each other, or both
after the same IKE exchange); an SA replaced by a rekey (the old SPI draining while the new one
starts) is a generation, not loss and not a mismatch.
"""

from __future__ import annotations

import ipaddress

#: two opposite ESP SAs whose first packets are this close (seconds) belong to one child SA
PAIR_WINDOW = 30.0


class Tunnel:
    __slots__ = ("id", "ipver", "a", "b", "ike_sas", "esp_sas", "pairs", "tcp_conns")

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

    @property
    def version(self):
        vs = {sa.version for sa in self.ike_sas}
        return vs.pop() if len(vs) == 1 else (max(vs) if vs else None)

    def outbound(self, sa) -> bool:
        """True when the ESP SA flows a -> b."""
        return sa.src == self.a

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
    return str(ipaddress.ip_address(a))


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
    for sa in sorted(esp_sas, key=lambda s: s.first_ts or 0):
        t = get(sa.ipver, sa.src, sa.dst)
        t.esp_sas.append(sa)
    for c in sorted(tcp_conns, key=lambda c: c.first_ts):
        if c.syn or c.bytes[0] or c.bytes[1]:
            get(c.ipver, c.client, c.server, c.client).tcp_conns.append(c)
    for t in order:
        _pair(t)
    return order


def _pair(t: Tunnel) -> None:
    for proto in ("esp", "ah"):
        _pair_proto(t, proto)
    t.pairs.sort(key=lambda p: min(x.first_ts for x in p if x is not None))


def _pair_proto(t: Tunnel, proto: str) -> None:
    out = [s for s in t.esp_sas if s.src == t.a and s.proto == proto]
    back = [s for s in t.esp_sas if s.src == t.b and s.proto == proto]
    used = set()
    for o in out:
        best = None
        for i, r in enumerate(back):
            if i in used:
                continue
            d = abs(r.first_ts - o.first_ts)
            if d <= PAIR_WINDOW and (best is None or d < best[0]):
                best = (d, i)
        if best is not None:
            used.add(best[1])
            t.pairs.append((o, back[best[1]]))
        else:
            t.pairs.append((o, None))
    for i, r in enumerate(back):
        if i not in used:
            t.pairs.append((None, r))
