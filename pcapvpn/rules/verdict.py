"""Per-tunnel verdict: healthy | degraded | failing | unknown, the furthest stage reached, the
primary finding, and what the capture could not show and why."""

from __future__ import annotations

from dataclasses import dataclass, field

from pcapvpn.findings import STAGES, severity_rank, stage_rank
from pcapvpn.rules.common import PENDING, exchange_status, exchange_label, ip_text


@dataclass
class Verdict:
    tunnel: str
    verdict: str
    stage_reached: str
    failed_stage: str | None
    primary: str | None  # finding id
    primary_code: str | None
    findings: list[str] = field(default_factory=list)  # ids, worst first
    not_seen: list[str] = field(default_factory=list)


def _stage_reached(ctx, t) -> str:
    """The furthest stage the tunnel got into, from what the capture shows."""
    reached = "reachability"
    for sa in t.ike_sas:
        answered = any(
            any(m.src == (sa.responder[1] if sa.responder else None) for m in x.msgs)
            for x in sa.exchanges)
        if answered and stage_rank(reached) < stage_rank("negotiation"):
            reached = "negotiation"
        if any(m.sport == 4500 or m.dport == 4500 for m in sa.messages) and answered:
            if stage_rank(reached) < stage_rank("nat_traversal"):
                reached = "nat_traversal"
        if sa.established and stage_rank(reached) < stage_rank("authentication"):
            reached = "authentication"
    from pcapvpn.track.ike import V1_QUICK

    qm_done = any(x.exch == V1_QUICK and x.last_step >= 3 for sa in t.ike_sas for x in sa.exchanges)
    if t.esp_sas or qm_done:
        if stage_rank(reached) < stage_rank("child_sa"):
            reached = "child_sa"
        both = any(a is not None and b is not None for a, b in t.pairs)
        if both:
            reached = "dataplane"
    return reached


def tunnel_verdicts(ctx, findings) -> list[Verdict]:
    by_tunnel = {}
    for f in findings:
        by_tunnel.setdefault(f.tunnel, []).append(f)
    out = []
    for t in ctx.state.tunnels:
        fs = by_tunnel.get(t.id, [])
        failures = [f for f in fs if f.failure and not f.posture]
        failures.sort(key=lambda f: (severity_rank(f.severity), stage_rank(f.stage)))
        hard = [f for f in failures if f.severity in ("critical", "error")]
        soft = [f for f in failures if f.severity == "warning"]
        not_seen = _not_seen(ctx, t)
        pending = _pending(ctx, t)
        recovered_at = _recovered_at(t)
        if hard and recovered_at is not None and all(
                _last_evidence(ctx, f) is not None and _last_evidence(ctx, f) < recovered_at for f in hard):
            # everything that broke happened before the latest IKE SA came up and carried ESP
            # both ways: the tunnel dropped and recovered
            hard.sort(key=lambda f: (stage_rank(f.stage), severity_rank(f.severity)))
            primary = hard[0]
            verdict = "degraded"
            not_seen.append(f"the tunnel recovered: a new IKE SA was established at "
                            f"+{ctx.rel(recovered_at)} s and ESP flowed both ways afterwards")
        elif hard:
            # the first stage that broke, among the errors
            hard.sort(key=lambda f: (stage_rank(f.stage), severity_rank(f.severity)))
            primary = hard[0]
            verdict = "failing"
        elif soft:
            soft.sort(key=lambda f: (stage_rank(f.stage), severity_rank(f.severity)))
            primary = soft[0]
            verdict = "degraded"
        else:
            primary = None
            verdict = "healthy"
        if pending and verdict in ("healthy", "degraded"):
            verdict = "unknown"
            not_seen.extend(pending)
        if verdict == "healthy" and not _has_evidence_of_health(t):
            verdict = "unknown"
        if verdict == "healthy" and any(f.code == "CAPTURE_ONE_DIRECTION" for f in fs):
            verdict = "unknown"
        all_sorted = sorted(fs, key=lambda f: (f.posture, not f.failure, severity_rank(f.severity),
                                               stage_rank(f.stage)))
        out.append(Verdict(
            tunnel=t.id, verdict=verdict, stage_reached=_stage_reached(ctx, t),
            failed_stage=primary.stage if primary else None,
            primary=primary.id if primary else None,
            primary_code=primary.code if primary else None,
            findings=[f.id for f in all_sorted], not_seen=not_seen))
    from pcapvpn.rules.vpn import vpn_verdicts  # OpenVPN, WireGuard, L2TP, PPTP, SSL-VPN

    out.extend(vpn_verdicts(ctx, findings))
    return out


def _has_evidence_of_health(t) -> bool:
    """ESP (or AH) both ways, or an IKEv1 Quick Mode that completed: a child SA that works.  An
    IKEv2 SA without any ESP cannot show its child SA works (idle, or refused) without keys."""
    if any(a is not None and b is not None for a, b in t.pairs):
        return True
    from pcapvpn.track.ike import V1_QUICK

    return any(x.exch == V1_QUICK and x.last_step >= 3 for sa in t.ike_sas for x in sa.exchanges)


def _last_evidence(ctx, f):
    ev = f.evidence.last or f.evidence.first
    if not ev or ev.get("rel") is None:
        return None
    return ctx.start + ev["rel"]


def _recovered_at(t):
    """Start of the latest established IKE SA when ESP flowed both ways after it, else None."""
    est = [sa for sa in t.ike_sas if sa.established and sa.first_ts is not None]
    if not est or len(t.ike_sas) < 2:
        return None
    last = max(est, key=lambda sa: sa.first_ts)
    after = [p for p in t.pairs if p[0] is not None and p[1] is not None
             and min(p[0].first_ts, p[1].first_ts) >= last.first_ts]
    return last.first_ts if after else None


def _pending(ctx, t) -> list[str]:
    out = []
    for sa in t.ike_sas:
        for x in sa.exchanges:
            if exchange_status(ctx, x) == PENDING:
                last = max(m.ts for m in x.msgs)
                out.append(f"{exchange_label(x)} from {ip_text(x.msgs[0].src)}: the capture ends "
                           f"{ctx.now - last:.1f} s after the request (a response may still have "
                           f"come; at least {ctx.th.response_timeout:g} s are needed to call it "
                           f"unanswered)")
    return out


def _not_seen(ctx, t) -> list[str]:
    notes = []
    enc = sum(1 for sa in t.ike_sas for m in sa.messages
              if m.encrypted and getattr(m, "decrypt_status", None) not in ("ok", "unverified"))
    if enc:
        notes.append(f"{enc} IKE message(s) are encrypted: without keys their content (identities, "
                     f"traffic selectors, child SA SPIs, exact error notifications) is inferred "
                     f"from sizes and the SK header only")
    if any(sa.mid_session for sa in t.ike_sas):
        notes.append("the capture started after the IKE SA was negotiated (its IKE_SA_INIT / "
                     "Main Mode is not in the capture)")
    late = [e for e in t.esp_sas if getattr(e, "first_seq", 1) not in (None, 0, 1)]
    if late:
        notes.append(f"{len(late)} ESP SA(s) were already running when the capture started")
    if t.esp_sas and not t.ike_sas:
        notes.append("no IKE for this gateway pair in the capture: ESP SAs cannot be tied to "
                     "their negotiation")
    return notes


__all__ = ["Verdict", "tunnel_verdicts", "STAGES"]
