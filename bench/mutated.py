"""A live capture of mutated frames (issue 20): the flood ``bench/hostile_bench.py`` feeds
``pcapvpn live`` with, and ``tests/hostile/test_live_bounds.py`` at a small size.

:class:`MutatedCapture` is a capture object as ``LiveSession`` takes them (``captures=[...]``;
see ``LiveSession._open`` for the interface): it hands out the frames of the lab captures
mutated at random — bytes flipped, frames cut, addresses and ports replaced (new flows and new
SAs all the time) — ``step`` seconds apart, ``per_read`` of them per read, without end.
"""

from __future__ import annotations

import random
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "captures" / "lab"


def lab_frames(paths=None) -> list:
    """``[(linktype, frame bytes)]`` of the lab captures (or of ``paths``)."""
    from pcapvpn.sources import open_source

    out = []
    for p in (sorted(LAB.glob("*/*.pcap")) if paths is None else paths):
        src = open_source(str(p))
        out += [(f[3], bytes(f[4])) for f in src.frames()]
        src.close()
    if not out:
        raise RuntimeError(f"no lab captures under {LAB}")
    return out


class SimCapture:
    """What a capture object has beside ``read``: no waiting, no drops, nothing to close."""

    linktype = 1
    bytes = 0

    def wait(self, timeout):
        return False

    def stats(self):
        return {"received": 0, "drops": 0, "packets": 0, "truncated": 0, "interface": {}}

    def close(self):
        pass


class MutatedCapture(SimCapture):
    """Lab frames mutated at random, ``step`` seconds apart, ``per_read`` per :meth:`read`."""

    name = "mutated"

    def __init__(self, frames, seed=20, per_read=500, step=0.001, t0=1_700_000_000.0):
        self.frames = frames
        self.rng = random.Random(seed)
        self.per_read = per_read
        self.step = step
        self.i = 0  # frames handed out
        self.t = t0  # the last frame's time stamp
        self.bytes = 0
        self.dry = False  # True: nothing more arrives (a stop after the flood)

    def read(self, out, fidx, num, max_blocks=None):
        if self.dry:
            return 0
        rng = self.rng
        frames = self.frames
        n = 0
        for _ in range(self.per_read):
            lt, data = frames[self.i % len(frames)]
            self.i += 1
            b = bytearray(data)
            r = rng.random()
            if r < 0.5 and len(b) > 14:
                for _k in range(rng.randint(1, 4)):
                    b[rng.randrange(14, len(b))] = rng.randrange(256)
            elif r < 0.7:
                b = b[:rng.randrange(1, len(b) + 1)]
            elif r < 0.85 and len(b) > 38:
                b[26:38] = rng.randbytes(12)  # addresses and ports
            self.t += self.step
            n += 1
            out.append((fidx, num + n, self.t, lt, bytes(b), len(b), 0))
            self.bytes += len(b)
        return n
