"""Sets of sequence numbers as sorted, disjoint ranges ``[(a, b), ...]`` (b exclusive)."""

from __future__ import annotations

import bisect



def r_count(rs) -> int:
    return sum(b - a for a, b in rs)


def r_diff(xs, ys) -> list:
    """Ranges of ``xs`` not in ``ys`` (both sorted, disjoint, b exclusive)."""
    out = []
    j = 0
    for a, b in xs:
        cur = a
        while j < len(ys) and ys[j][1] <= cur:
            j += 1
        k = j
        while k < len(ys) and ys[k][0] < b:
            ya, yb = ys[k]
            if ya > cur:
                out.append((cur, ya))
            cur = max(cur, yb)
            k += 1
        if cur < b:
            out.append((cur, b))
    return out


def r_clip(xs, lo, hi) -> list:
    return [(max(a, lo), min(b, hi)) for a, b in xs if min(b, hi) > max(a, lo)]


def r_union(xs, ys) -> list:
    out = []
    for a, b in sorted(list(xs) + list(ys)):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


# -- holes: ``[[first missing, end (exclusive), ref of the packet after the hole], ...]`` sorted

def seen_ranges(lo, hi, holes) -> list:
    """The numbers from ``lo`` to ``hi`` (exclusive) outside ``holes``, as ranges."""
    out = []
    cur = lo
    for a, b, _ref in holes:
        if a > cur:
            out.append((cur, min(a, hi)))
        cur = max(cur, b)
    if cur < hi:
        out.append((cur, hi))
    return [r for r in out if r[0] < r[1]]


def hole_refs(holes, ranges) -> list:
    """Refs of the packets right after the holes that overlap ``ranges``."""
    return [ref for a, b, ref in holes if any(a < y and x < b for x, y in ranges)]


def fill_hole(holes, s) -> bool:
    """A late number ``s`` arrived: split the hole that holds it.  False when no hole holds it
    (the number was seen already)."""
    i = bisect.bisect_right(holes, [s, float("inf")]) - 1
    if i < 0 or not holes[i][0] <= s < holes[i][1]:
        return False
    a, b, ref = holes[i]
    holes[i:i + 1] = [p for p in ([a, s, ref], [s + 1, b, ref]) if p[0] < p[1]]
    return True
