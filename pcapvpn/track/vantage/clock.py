"""The clock of a point against the first point's (the NTP way, RFC 5905 §8; see the package
docstring)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from pcapvpn.track.vantage import DRIFT_WINDOWS

@dataclass
class Offset:
    """Clock of a point minus the first point's clock, at time ``t`` of the first point's
    clock: ``offset + drift * (t - t_ref)``."""

    offset: float = 0.0
    uncertainty: float | None = 0.0
    drift: float = 0.0
    t_ref: float = 0.0
    matched: int = 0
    #: matched packets in one direction only: the offset includes the one-way delay
    one_way: bool = False

    def at(self, t: float) -> float:
        return self.offset + self.drift * (t - self.t_ref)

    def to_first(self, t: float) -> float:
        """A time of this point's clock on the first point's clock."""
        return t - self.at(t - self.offset)


def estimate_offset(pairs, drift_span: float) -> Offset | None:
    """``pairs``: ``(t0, d, label)`` with ``d = t_k - t_0`` of one matched packet and ``label``
    its direction (``(src, dst)`` at point 0).  None without pairs."""
    if not pairs:
        return None
    t0s = [p[0] for p in pairs]
    span = max(t0s) - min(t0s)
    const = _bounds(pairs)
    if const is None:
        ds = sorted(p[1] for p in pairs)
        # one direction only: the offset plus the one-way delay (the smallest d bounds it)
        return Offset(ds[0], None, 0.0, min(t0s), len(pairs), one_way=True)
    lo, hi = const
    if span > 0 and (span > drift_span or lo > hi):
        fit = _drift_fit(pairs, min(t0s), span)
        if fit is not None:
            return fit
    return Offset((lo + hi) / 2, abs(hi - lo) / 2, 0.0, min(t0s), len(pairs))


def _bounds(pairs):
    """(largest d of the directions towards point 0, smallest d of the directions away from
    it), or None when no direction has its reverse among the pairs."""
    by: dict = {}
    for _t, d, label in pairs:
        by.setdefault(label, []).append(d)
    lows = []
    highs = []
    for (a, b), ds in by.items():
        if (a, b) > (b, a) or (b, a) not in by:
            continue
        rs = by[(b, a)]
        if statistics.median(ds) >= statistics.median(rs):
            up, down = ds, rs
        else:
            up, down = rs, ds
        highs.append(min(up))
        lows.append(max(down))
    if not lows:
        return None
    return max(lows), min(highs)


def _drift_fit(pairs, t_first, span) -> Offset | None:
    w = span / DRIFT_WINDOWS
    bins: dict = {}
    for p in pairs:
        bins.setdefault(min(int((p[0] - t_first) / w), DRIFT_WINDOWS - 1), []).append(p)
    pts = []
    widths = []
    for k in sorted(bins):
        b = _bounds(bins[k])
        if b is None:
            continue
        lo, hi = b
        pts.append((statistics.fmean(p[0] for p in bins[k]) - t_first, (lo + hi) / 2))
        widths.append(abs(hi - lo) / 2)
    if len(pts) < 3:
        return None
    mx = statistics.fmean(x for x, _ in pts)
    my = statistics.fmean(y for _, y in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx <= 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx
    off = my - slope * mx
    resid = max(abs(y - (off + slope * x)) for x, y in pts)
    return Offset(off, max(widths) + resid, slope, t_first, len(pairs))
