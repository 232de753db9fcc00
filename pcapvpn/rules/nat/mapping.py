"""NAT_MAPPING_CHANGED: the source address or port of a peer behind a NAT changed in the middle
of an SA."""

from __future__ import annotations

from bisect import bisect_right

from pcapvpn.findings import Term, declare, make, msg, msg_join
from pcapvpn.rules import rule
from pcapvpn.rules.common import endpoint_text, esp_filter, ike_filter, ike_spis, ip_text
from pcapvpn.rules.nat.common import (
    MAX_LISTED, _annotate, _or, _tunnel_nat_sides, _tunnel_verdicts,
)
from pcapvpn.rules.nat.timeline import (
    _AFTER_GAP, _flows_between, _gaps, _timeline, _tunnel_changes,
)

declare("NAT_MAPPING_CHANGED", "nat_traversal", "warning",
        "The source address or port of a peer behind a NAT changed in the middle of an SA (IKE or "
        "ESP): the NAT created a new mapping (timeout of the old one, NAT restart, carrier-grade "
        "NAT re-mapping) or the client roamed to another network.",
        ["Check the NAT's UDP timeout against the keepalive interval (strongSwan charon.keep_alive,"
         " default 20 s) and keep the mapping alive.",
         "The peer not behind the NAT must follow the new address/port (RFC 7296 §2.23, RFC 3948): "
         "if it keeps sending to the old one, traffic to the NATed peer is lost until DPD or a "
         "rekey; for roaming clients use MOBIKE (RFC 4555).",
         "With carrier-grade NAT, prefer the client initiating and frequent keepalives."])


@rule
def nat_mapping_changed(ctx):
    _annotate(ctx)
    limit = ctx.th.keepalive_max_interval
    for t in ctx.state.tunnels:
        verdicts = _tunnel_verdicts(t, ctx)
        sides = _tunnel_nat_sides(ctx, t)
        changes = _tunnel_changes(ctx, t, verdicts, sides)
        if not changes:
            continue
        flows = _flows_between(ctx, t)
        iv = _timeline(ctx, t, flows)
        silences = _gaps(iv, float("-inf"), limit)
        by_side: dict = {}
        for c in changes:
            by_side.setdefault(c[0], []).append(c)
        for side, cs in by_side.items():
            # the same move seen in IKE and in ESP (and on several SPIs) is one change
            moves: dict = {}
            for c in cs:
                moves.setdefault((c[3], c[4]), []).append(c)
            lines = []
            refs = []
            ike_sas = []
            esp_spis = []
            seen_sas = set()
            seen_spis = set()
            for (old, new), seen in moves.items():
                if len(lines) < MAX_LISTED:  # only the listed moves are described
                    ts, ref = seen[0][1], seen[0][2]
                    what = ", ".join(dict.fromkeys(c[5] for c in seen))
                    idle = _idle_before(silences, ts)
                    line = msg("{old} → {new} at {t} s (frame {frame}; seen in {what})", old=old,
                               new=new, t=ctx.rel(ts), frame=ref[1], what=what)
                    if idle is not None:
                        line += msg(" after {idle:.0f} s of silence (NAT mapping timeout likely)",
                                    idle=idle)
                    for c in seen:
                        if c[5] == "IKE":
                            follow = _followed(c[6], c)
                            if follow:
                                line += msg("; {follow}", follow=Term(follow))
                                break
                    lines.append(line)
                for c in seen:
                    refs.append(c[2])
                    if c[5] == "IKE":
                        if id(c[6]) not in seen_sas:
                            seen_sas.add(id(c[6]))
                            ike_sas.append(c[6])
                    elif c[6].spi not in seen_spis:
                        seen_spis.add(c[6].spi)
                        esp_spis.append(c[6].spi)
            n = len(moves)
            addr_changed = any(_host(c[3]) != _host(c[4]) for c in cs)
            cause = (msg("the NAT's public address changed (carrier-grade NAT pool, NAT restart) "
                         "or the client roamed to another network") if addr_changed else
                     msg("the NAT created a new mapping (the old one timed out, or the NAT "
                         "restarted)"))
            ip = ", ".join(sorted({_host(c[3]) for c in cs}))
            behind = msg("behind a NAT") if side in sides else msg("(port translated)")
            detail = (msg("The {side} {ip} {behind} changed its source {n} time(s) during the SA: "
                          "{lines}", side=Term(side), ip=ip, behind=behind, n=n,
                          lines=msg_join("; ", lines))
                      + ("; ..." if n > MAX_LISTED else "")
                      + msg(". Typical cause: {cause}.", cause=cause))
            wf = _or([ike_filter(sa) for sa in ike_sas[:4]]
                     + ([esp_filter(esp_spis)] if esp_spis else []))
            spis = ike_spis(ike_sas[0]) if ike_sas else []
            yield make(
                "NAT_MAPPING_CHANGED", f"{t.id}|{side}",
                title=msg("NAT mapping of the {side} {ip} changed mid-SA ({what}, {n}x, first at "
                          "{t} s)", side=Term(side), ip=ip,
                          what=msg("address") if addr_changed else msg("port"), n=n,
                          t=ctx.rel(cs[0][1])),
                detail=detail,
                evidence=ctx.evidence(refs, cs[0][1], cs[-1][1], ike_spis=spis,
                                      esp_spis=[f"{s:08x}" for s in esp_spis],
                                      peers=[ip_text(t.a), ip_text(t.b)]),
                wireshark_filter=wf, tunnel=t.id)


def _host(ep_text: str) -> str:
    """``192.0.2.1:4500`` / ``[2001:db8::1]:4500`` → the address part."""
    if ep_text.startswith("["):
        return ep_text[1:ep_text.index("]")]
    return ep_text.rsplit(":", 1)[0]


def _idle_before(silences, ts) -> float | None:
    """Length of a silence (``_gaps`` of the timeline: in order, their ends never decrease)
    that ended at most ``_AFTER_GAP`` s before ``ts`` (the traffic that ended it may be the
    moved packet itself), the last such; else None.  A bisection: a tunnel can move often."""
    i = bisect_right(silences, ts + 1e-6, key=lambda g: g[1]) - 1
    if i >= 0 and ts - silences[i][1] <= _AFTER_GAP:
        return silences[i][1] - silences[i][0]
    return None


def _followed(sa, change) -> str | None:
    """Did the peer send IKE to the new source afterwards, or keep using the old one?"""
    _side, ts, _ref, old, new, _what, _obj = change
    to_new = to_old = 0
    for m in sa.messages:
        if m.ts <= ts:
            continue
        dst = endpoint_text((m.ipver, m.dst, m.dport))
        if dst == new:
            to_new += 1
        elif dst == old:
            to_old += 1
    if to_old and not to_new:
        return f"the peer kept sending IKE to the old {old} ({to_old} message(s))"
    if to_new:
        return "the peer followed it"
    return None
