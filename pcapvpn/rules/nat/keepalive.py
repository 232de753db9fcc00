"""NAT_KEEPALIVE_MISSING: a peer behind a NAT let the tunnel go idle longer than the keepalive
threshold before traffic resumed."""

from __future__ import annotations

from bisect import bisect_right

from pcapvpn.findings import Term, declare, make, msg
from pcapvpn.rules import rule
from pcapvpn.rules.common import ip_text, time_filter, tunnel_filter
from pcapvpn.rules.nat.common import (
    MAX_LISTED, _annotate, _or, _tunnel_nat_sides, _tunnel_verdicts,
)
from pcapvpn.rules.nat.timeline import (
    _AFTER_GAP, _around, _flows_between, _gaps, _nat_t_start, _points, _timeline,
    _tunnel_changes,
)

_WHAT = {"esp": "ESP", "ike": "IKE", "keepalive": "NAT keepalive", "delete": "IKE",
         "init": "IKE"}

declare("NAT_KEEPALIVE_MISSING", "nat_traversal", "warning",
        "A peer behind a NAT let the tunnel go idle longer than the keepalive threshold (no NAT "
        "keepalive, no ESP, no IKE either way) before traffic resumed: the NAT mapping may have "
        "expired, so the other peer could not reach it and its next packets may come from a new "
        "port.",
        ["Make the side behind the NAT send NAT keepalives (RFC 3948 §4) more often than the NAT's "
         "UDP timeout: strongSwan charon.keep_alive (default 20 s), Cisco 'crypto isakmp "
         "nat keepalive', libreswan keep-alive.",
         "Or raise the UDP timeout for 4500 on the NAT device, or enable DPD so a lost mapping is "
         "noticed and the tunnel re-established."])


@rule
def nat_keepalive_missing(ctx):
    _annotate(ctx)
    limit = ctx.th.keepalive_max_interval
    for t in ctx.state.tunnels:
        verdicts = _tunnel_verdicts(t, ctx)
        sides = _tunnel_nat_sides(ctx, t)
        if not sides:
            continue
        start = _nat_t_start(verdicts, t)
        if start is None:
            continue  # NAT-T not in use: NAT_T_NOT_USED says it
        flows = _flows_between(ctx, t)
        gaps = [g for g in _gaps(_timeline(ctx, t, flows), start, limit)
                if g[4] != "init" and g[5] != "delete"]
        if not gaps:
            continue
        longest = max(gaps, key=lambda g: g[1] - g[0])
        changes = _tunnel_changes(ctx, t, verdicts, sides)
        pts = _points(t, flows)
        for side, addrs in sorted(sides.items()):
            mine = [f for f in flows if f.src in addrs]
            ip = ", ".join(sorted(ip_text(a) for a in addrs))
            gs, ge, rb, ra, resumed, _w = longest
            detail = msg("The {side} {ip} is behind a NAT, but the tunnel carried nothing for at "
                         "least {idle:.1f} s ({t0} s → {t1} s): no NAT keepalive, no ESP, no IKE "
                         "in either direction; then {what} traffic resumed", side=Term(side),
                         ip=ip, idle=ge - gs, t0=ctx.rel(gs), t1=ctx.rel(ge),
                         what=Term(_WHAT.get(resumed, resumed)))
            detail += (msg(" (frame {frame}).", frame=ra[1]) if ra else ".")
            if len(gaps) > 1:
                detail += msg(" {n} such silences in all.", n=len(gaps))
            if mine:
                n = sum(f.count for f in mine)
                med = [f.median_interval for f in mine if f.median_interval is not None]
                mx = [f.max_interval for f in mine if f.max_interval is not None]
                detail += (msg(" {ip} sent {n} NAT keepalive(s)", ip=ip, n=n)
                           + (msg(", median interval {med:.1f} s, longest {mx:.1f} s",
                                  med=min(med), mx=max(mx)) if med else "") + ".")
            else:
                detail += msg(" {ip} sent no NAT keepalive at all (RFC 3948 §4: the peer behind "
                              "the NAT sends them).", ip=ip)
            detail += msg(" NAT UDP mappings commonly expire after 30-120 s (threshold "
                          "keepalive_max_interval = {limit:g} s).", limit=limit)
            c = _first_after(changes, side, gaps)
            if c is not None:
                detail += msg(" Its source changed right after ({old} → {new} at frame {frame}): "
                              "the mapping had likely expired.", old=c[3], new=c[4],
                              frame=c[2][1])
            refs = []
            lo, hi = gs, ge
            for g in [longest] + [g for g in gaps[:MAX_LISTED] if g is not longest]:
                b, a = _around(pts, g[0], g[1])
                for p in (b, a):
                    if p is not None:
                        refs.append(p[1])
                if g is longest:
                    lo = b[0] if b else gs
                    hi = a[0] if a else ge
            for f in mine:
                refs += f.refs[:3]
            fld = "ip" if t.ipver == 4 else "ipv6"
            wf = f"{tunnel_filter(t)} && {time_filter(ctx, lo, hi)}"
            if mine:
                wf = _or([wf, f"{fld}.src == {ip_text(sorted(addrs)[0])} && "
                              f"udpencap.nat_keepalive"])
            yield make(
                "NAT_KEEPALIVE_MISSING", f"{t.id}|{side}",
                title=msg("{ip} (behind NAT) left the tunnel idle {idle:.0f} s without "
                          "keepalives", ip=ip, idle=ge - gs),
                detail=detail,
                evidence=ctx.evidence(refs, gs, ge, peers=[ip_text(t.a), ip_text(t.b)]),
                wireshark_filter=wf, tunnel=t.id)


def _first_after(changes, side, gaps):
    """The first change of ``side`` at most ``_AFTER_GAP`` s after the end of one of ``gaps``
    (whose ends never decrease), or None."""
    for c in changes:
        if c[0] != side:
            continue
        i = bisect_right(gaps, c[1] + 1e-6, key=lambda g: g[1]) - 1
        if i >= 0 and c[1] - gaps[i][1] <= _AFTER_GAP:
            return c
    return None
