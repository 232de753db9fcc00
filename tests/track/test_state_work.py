"""The tracker's state build does per tunnel only what the tunnel needs (issue 20: live builds it
at every evaluation and at the stop, for every held SA): counted, and the same result.

* a tunnel with no ESP/AH SA, or one, is not paired (``pair_by_start``): its pairs as before;
* tying plaintext views to tunnels works out each tunnel's span once, not once per view.
"""

from __future__ import annotations

import random
import struct
from types import SimpleNamespace as NS

import pcapvpn.track.tunnels as T


def _old_pairs(t) -> list:
    """The pairs as ``_pair`` made them before (every tunnel through ``pair_by_start``)."""
    parts: dict = {}
    for s in t.esp_sas:
        parts.setdefault((s.proto, t.moved.get(s.src, s.src)), []).append(s)
    pairs = []
    for proto in ("esp", "ah"):
        pairs.extend(T.pair_by_start(parts.get((proto, t.a), []), parts.get((proto, t.b), []),
                                     T.PAIR_WINDOW))
    pairs.sort(key=lambda p: min(x.first_ts for x in p if x is not None))
    return pairs


def _sas(seed: int) -> list:
    rnd = random.Random(seed)
    out = []
    for i in range(300):
        a = bytes([10, 0, 0, rnd.randrange(1, 40)])
        b = bytes([10, 0, 1, rnd.randrange(1, 40)]) if rnd.random() < 0.97 else a  # a == b too
        src, dst = (a, b) if rnd.random() < 0.6 else (b, a)
        out.append(NS(proto=rnd.choice(("esp", "esp", "esp", "ah", "other")), src=src, dst=dst,
                      ipver=4, first_ts=float(rnd.randrange(0, 200)), spi=i))
    return out


def test_tunnels_of_one_sa_are_not_paired(monkeypatch):
    calls = []
    real = T.pair_by_start
    monkeypatch.setattr(T, "pair_by_start", lambda *a: calls.append(len(a[0]) + len(a[1]))
                        or real(*a))
    for seed in range(20):
        calls.clear()
        tunnels = T.build_tunnels([], _sas(seed))
        single = [t for t in tunnels if len(t.esp_sas) <= 1 and t.a != t.b]
        assert single
        # only the tunnels of several SAs (or of one address) were paired: two calls each
        assert len(calls) == 2 * (len(tunnels) - len(single))
        monkeypatch.setattr(T, "pair_by_start", real)
        for t in tunnels:
            assert t.pairs == _old_pairs(t)
        monkeypatch.setattr(T, "pair_by_start", lambda *a: calls.append(len(a[0]) + len(a[1]))
                            or real(*a))


class _Tunnel:
    """A tunnel whose span counts how often it is asked."""

    def __init__(self, n, t0, t1, asked):
        self.id = f"t{n}"
        self.a = bytes([192, 0, 2, 1])
        self.b = bytes([192, 0, 2, n])
        self.ike_sas = []
        self.esp_sas = [NS(first_ref=(0, n), dst=self.b, packets=10, spi=n)]
        self._span = (t0, t1)
        self._asked = asked

    @property
    def first_ts(self):
        self._asked.append(self.id)
        return self._span[0]

    @property
    def last_ts(self):
        return self._span[1]


def test_tie_works_out_each_tunnels_span_once():
    """Two tunnel interfaces in a file of 40 tunnels, tied by timing: each tunnel's span is
    worked out once (before: once per view), and the ties are as before."""
    from pcapvpn.track.inner import PlainTracker, tie

    pt = PlainTracker({0: [NS(name="tun0", description=None), NS(name="tun1", description=None)]})
    for itf, (src, dst, t0) in enumerate(((1, 2, 100.0), (3, 4, 500.0))):
        net = (4, bytes([10, 0, 0, src]), bytes([10, 1, 0, dst]), 17, 1000, 2000, 20, 40, 0,
               False, 0, 0)
        data = bytes(20) + struct.pack("!HHHH", 1000, 2000, 20, 0) + bytes(12)
        for i in range(3):
            pt.plain((0, 10 * itf + i + 1), t0 + i, itf, 101, None, net, data)
    asked: list = []
    tunnels = [_Tunnel(n, 1000.0 + n, 1001.0 + n, asked) for n in range(2, 40)]
    tunnels.append(_Tunnel(40, 90.0, 110.0, asked))  # active while tun0 carried traffic
    tunnels.append(_Tunnel(41, 490.0, 510.0, asked))  # while tun1 did
    models = tie(pt, tunnels, [])
    assert sorted(models) == ["t40", "t41"]
    assert all([h for _v, h in m.views] == ["timing"] for m in models.values())
    assert sorted(asked) == sorted(t.id for t in tunnels)  # once each
