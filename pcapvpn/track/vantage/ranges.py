"""Sets of sequence numbers as sorted, disjoint ranges ``[(a, b), ...]`` (b exclusive)."""

from __future__ import annotations



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
