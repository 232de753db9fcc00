"""What the NAT rules share: the NAT verdicts of a tunnel's IKE SAs (annotated once per
evaluation), the sides behind a NAT, and small text and filter helpers."""

from __future__ import annotations

import ipaddress

from pcapvpn.track.nat import annotate, ensure_verdict

#: at most this many SAs / changes are spelled out in a detail (all are counted)
MAX_LISTED = 5


def _side_ep(sa, side):
    return sa.initiator if side == "initiator" else sa.responder


def _other(side):
    return "responder" if side == "initiator" else "initiator"


def _packed(text):
    return ipaddress.ip_address(text).packed


def _esp_moves(e):
    """(ts, ref, src, sport) source changes of an ESP SA (``moves`` in track/esp.py)."""
    moves = getattr(e, "src_changes", None)
    if moves is None:
        moves = getattr(e, "moves", None)
    return list(moves or ())


def _tunnel_verdicts(t, ctx=None):
    """``[(sa, its NAT verdict)]`` of tunnel ``t``'s IKE SAs; with ``ctx``, built once per
    tunnel and context (four NAT rules read it; a flood's big tunnel holds thousands of SAs).
    Read only."""
    if ctx is not None:
        return ctx.memo(f"nat|verdicts|{id(t)}", lambda: _tunnel_verdicts(t))
    return [(sa, ensure_verdict(sa)) for sa in t.ike_sas if sa.initiator is not None]


def _annotate(ctx) -> None:
    """NAT verdicts for every IKE SA, once per context (the tracker may have done it)."""
    ctx.memo("nat", lambda: annotate(ctx.state.ike_sas, ctx.state.keepalives) or True)


def _tunnel_nat_sides(ctx, t) -> dict:
    """:func:`_nat_sides` of tunnel ``t``'s verdicts, once per tunnel and context (read
    only)."""
    return ctx.memo(f"nat|sides|{id(t)}", lambda: _nat_sides(_tunnel_verdicts(t, ctx)))


def _nat_sides(verdicts) -> dict:
    """side -> set of packed addresses of that side, for sides behind a real NAT."""
    out: dict = {}
    for sa, v in verdicts:
        for side in v.nat_sides:
            out.setdefault(side, set()).add(_side_ep(sa, side)[1])
            for c in v.endpoint_changes:
                if c["side"] == side:
                    out[side].add(_packed(c["new_addr"]))
    return out



#: SAs (or flows) one filter names at most (:func:`_or`)
OR_LIMIT = 8


def _or(parts, limit=OR_LIMIT) -> str:
    parts = [p for p in parts if p][:limit]
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0]
    return " || ".join(f"({p})" for p in parts)
