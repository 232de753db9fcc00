"""Per-tunnel verdict: healthy | degraded | failing | unknown, the furthest stage reached, the
failed stage, the primary finding, and what the capture could not show and why.

The contract is written down in docs/verdicts.md (a test keeps the two in step).  In short:

* the state at the end of the capture decides between *failing* and *degraded*: a failure the
  tunnel got over (a later IKE SA came up, or ESP flowed both ways again) is *recovered*: it is
  still reported, at warning at most, with "recovered at +N s by ..." in its detail;
* history decides between *degraded* and *healthy*: any warning, and any recovered failure,
  degrades;
* *healthy* needs positive evidence (ESP both ways, or an IKE SA up where no traffic was sent);
* *unknown* when nothing decisive was seen: only requests whose answer time had not passed, a
  one-way ESP sample too short to judge, timestamps that cannot be used, or a damaged capture
  whose readable part covers too little.  Items that cannot be judged are listed in
  ``not_seen`` and never, on their own, make a tunnel that otherwise shows its state unknown.

The verdicts of the VPNs beside IPsec (:func:`pcapvpn.rules.vpn.vpn_verdicts`) follow the same
contract through :func:`decide`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from dissect.vpn.registry import ExchangeType
from pcapvpn.findings import STAGES, Term, msg, msg_join, severity_rank, stage_rank
from pcapvpn.rules.common import (OPENING, PENDING, PHASE1, established_ts, exchange_label,
                                  exchange_status, ip_text, last_requests, seen_working)
from pcapvpn.track.nat import on_nat_t

#: below this share of the capture's time covered by readable records, a tunnel is unknown
MIN_COVERAGE = 0.5

#: findings about something *missing*: decisive only when the capture can show absence (it saw
#: both directions and its timestamps can be used)
ABSENCE_CODES = frozenset((
    "IKE_NO_RESPONSE", "NAT_T_BLOCKED", "IKE_FRAGMENTATION_LOSS", "EXPECTED_PEER_ABSENT",
    "NAT_KEEPALIVE_MISSING", "ESP_ONE_WAY", "ESP_SEQUENCE_GAP",
    "ESP_NO_TRAFFIC", "MTU_BLACK_HOLE", "DPD_TIMEOUT", "IKE_RETRANSMISSION", "VPN_DATA_ONE_WAY",
    "VPN_NO_DATA", "OPENVPN_NO_RESPONSE", "WIREGUARD_NO_RESPONSE", "TCP_NO_ANSWER",
    "OPENVPN_HANDSHAKE_STALLED", "IKE_SA_FLAPPING", "INNER_NO_RETURN", "DNS_NO_ANSWER"))

#: root causes: when one of these is on a tunnel, the failures it explains (within its time
#: span) are its consequences and never the primary finding
EXPLAINS = {
    "IKE_PEER_RESTART": frozenset((
        "DPD_TIMEOUT", "ESP_ONE_WAY", "ESP_SPI_MISMATCH", "ICMP_UNREACHABLE", "IKE_NO_RESPONSE",
        "IKE_RETRANSMISSION", "ESP_SA_UNUSED", "IKE_SA_FLAPPING")),
    "IKE_SIMULTANEOUS_INIT": frozenset((
        "IKE_NO_RESPONSE", "IKE_RETRANSMISSION", "ESP_SA_UNUSED", "IKE_SA_FLAPPING")),
    "MTU_BLACK_HOLE": frozenset(("ESP_SEQUENCE_GAP", "ESP_ONE_WAY", "PATH_MTU_ICMP",
                                 "INNER_MTU")),
    # inside the tunnel (issue 15): the routing cause explains the inner symptoms
    "SUBNET_OVERLAP": frozenset(("ROUTE_OUTSIDE_TUNNEL", "INNER_NO_RETURN", "INNER_NO_ANSWER")),
    "INNER_NO_RETURN": frozenset(("INNER_NO_ANSWER", "DNS_NO_ANSWER")),
    "DNS_NO_ANSWER": frozenset(("INNER_NO_ANSWER",)),
}

#: root causes that explain only findings at one stage (the cause at it too): a peer that
#: stopped answering while the tunnel was up (an unanswered liveness check, or a request of an IKE
#: SA that worked) explains the one-way ESP its silence made (its ESP stopped with its IKE:
#: ``one_way`` places that one at stability)
EXPLAINS_AT = {
    "DPD_TIMEOUT": ("stability", frozenset(("ESP_ONE_WAY",))),
    "IKE_NO_RESPONSE": ("stability", frozenset(("ESP_ONE_WAY",))),
}

#: stages inside a working tunnel: ESP flowing again says nothing about them, so their failures
#: are never "recovered" by it (a later success of the same conversation is not tracked)
INSIDE_STAGES = frozenset(("routing", "inner"))

#: failures that are a property of the path: a new IKE SA or small packets flowing again do not
#: show them gone
PATH_PROPERTIES = frozenset(("MTU_BLACK_HOLE", "PATH_MTU_ICMP"))

#: how significant a degradation is, most first: an outage the tunnel recovered from, then what
#: explains it, then what users feel on the data plane, then stability, then the negotiation
SIGNIFICANCE = ("recovered", "cause", "dataplane", "routing", "inner", "stability", "child_sa",
                "authentication", "nat_traversal", "negotiation", "reachability")


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


# -- evidence times --------------------------------------------------------------------------------

def last_evidence(ctx, f):
    """Capture time of a finding's last evidence frame (None when it has none)."""
    ev = f.evidence.last or f.evidence.first
    if not ev or ev.get("rel") is None:
        return None
    return ctx.start + ev["rel"]


def first_evidence(ctx, f):
    ev = f.evidence.first or f.evidence.last
    if not ev or ev.get("rel") is None:
        return None
    return ctx.start + ev["rel"]


# -- what works when -----------------------------------------------------------------------------

def _esp_both_ways_after(t, ts) -> bool:
    """ESP/AH in both directions of the tunnel with packets after ``ts`` (the direction as a
    whole: parallel child SAs without keys cannot be paired SA by SA)."""
    out = back = False
    for s in t.esp_sas:
        if s.last_ts is None or s.last_ts <= ts:
            continue
        if t.side(s.src) == t.a:
            out = True
        else:
            back = True
    return out and back


def _esp_latest(ctx, t) -> tuple[float, float]:
    """The last ESP/AH packet of tunnel ``t`` in each direction (``-inf``: none), once per
    tunnel and evaluation: "ESP both ways / any ESP after ts" as two comparisons (a flood of
    failures on a tunnel of thousands of SAs asks it for each)."""
    def build():
        out = back = float("-inf")
        for s in t.esp_sas:
            if s.last_ts is None:
                continue
            if t.side(s.src) == t.a:
                out = max(out, s.last_ts)
            else:
                back = max(back, s.last_ts)
        return out, back
    return ctx.memo(f"esp_latest|{id(t)}", build)


def recovery(ctx, t, f):
    """``(ts, how)`` when the tunnel worked after failure ``f`` (a later IKE SA came up and its
    traffic, if any, flowed both ways; or ESP flowed both ways after it), else None.  Used by the
    verdict and by live mode (a recovered failure is over)."""
    if t is None or not hasattr(t, "ike_sas") or f.code in PATH_PROPERTIES or \
            f.stage in INSIDE_STAGES:
        return None
    last = last_evidence(ctx, f)
    if last is None:
        return None
    out, back = _esp_latest(ctx, t)
    both_after = out > last and back > last  # _esp_both_ways_after(t, last)
    latest = max(out, back)
    own = set(f.evidence.ike_spis)
    # the tunnel's IKE SAs seen working, in order of their start (computed once per evaluation:
    # a flood of failures on a tunnel of thousands of SAs asks this once each)
    for est, sa in ctx.working_sas(t):
        if sa.ispi.hex() in own:
            continue  # the IKE SA the failure is about does not recover from it by coming up
        if est <= last:
            continue
        if sa.mid_session and est == sa.first_ts:
            continue  # up before the capture began: its first message is not its coming up
        if both_after or not latest > est:  # no ESP at all after it came up
            who = ip_text(sa.initiator[1]) if sa.initiator else "?"
            return est, msg("a new IKE SA ({sa}, initiated by {who})", sa=sa.id, who=who)
    if both_after:
        return last, msg("ESP flowing both ways after it")
    if f.code == "IKE_NO_RESPONSE" and f.stage == "reachability":
        return _answered_later(ctx, t, f, last, own)
    return None




def _answered_later(ctx, t, f, last, own):
    """An unanswered opening request is over when the same responder answered the same
    initiator's later opening request: the responder is reachable (the vendor review's nDPI
    capture: one IKE_SA_INIT lost among twenty answered ones is no reachability failure).
    ``(ts, how)`` of the first such answer, else None."""
    def build():
        by = {}
        for sa in t.ike_sas:
            if not sa.initiator or not sa.responder or not sa.exchanges:
                continue
            x = sa.exchanges[0]
            if x.exch not in OPENING:
                continue
            resp = sa.responder[1]
            for m in x.msgs:
                if m.src == resp and not m.copy:
                    by.setdefault((sa.initiator[1], resp), []).append((m.ts, sa.ispi.hex()))
                    break
        for v in by.values():
            v.sort()
        return by
    answers = ctx.memo(f"opening_answers|{id(t)}", build)

    def by_spi():
        out = {}
        for k, sa in enumerate(t.ike_sas):
            if sa.initiator and sa.responder:
                out.setdefault(sa.ispi.hex(), (k, sa))
        return out
    spis = ctx.memo(f"ike_sa_by_ispi|{id(t)}", by_spi)
    found = sorted((spis[x] for x in own if x in spis), key=lambda e: e[0])
    if not found:
        return None
    failed = found[0][1]
    rows = answers.get((failed.initiator[1], failed.responder[1]), ())
    for i in range(bisect.bisect_right(rows, (last, "\uffff")), len(rows)):
        ts, ispi = rows[i]  # no slice: a copy of the tail per failure would be quadratic
        if ispi not in own:
            return ts, msg("an answer from {responder} to a later opening request (the "
                           "responder is reachable)", responder=ip_text(failed.responder[1]))
    return None


def _working_generation(t):
    """``(established_ts, sa)`` of the latest IKE SA of the tunnel seen working (None)."""
    best = None
    for sa in t.ike_sas:
        if not seen_working(sa):
            continue
        est = established_ts(sa)
        if best is None or est > best[0]:
            best = (est, sa)
    return best


def has_evidence_of_health(t) -> bool:
    """ESP (or AH) both ways, an IKEv1 Quick Mode that completed, or an IKE SA up where no
    traffic was sent (a childless IKE SA, an idle child SA)."""

    if _esp_both_ways_after(t, float("-inf")):
        return True
    if any(x.exch == ExchangeType.QUICK_MODE and x.last_step >= 3 and len({m.src for m in x.msgs}) >= 2
           for sa in t.ike_sas for x in sa.exchanges):
        return not t.esp_sas
    if not t.esp_sas and _working_generation(t) is not None:
        return True
    return False


# -- capture facts --------------------------------------------------------------------------------

def unusable_time(t) -> str | None:
    """Why the tunnel's timestamps cannot be used to judge time (retransmission vs duplicate,
    answer times, one-way windows), or None."""
    msgs = sorted((m for sa in t.ike_sas for m in sa.messages), key=lambda m: m.n)
    ts = [m.ts for m in msgs]
    ts += [x for s in t.esp_sas for x in (s.first_ts, s.last_ts) if x is not None]
    if len(ts) >= 3 and max(ts) == min(ts):
        return msg("all {n} timestamps of this tunnel's packets are equal ({value}): answer "
                   "times, retransmissions and capture duplicates cannot be told apart",
                   n=len(ts), value=msg("zero") if ts[0] == 0 else msg("one value"))
    if len(ts) >= 2 and max(ts) - min(ts) > 366 * 86400:
        return msg("the timestamps of this tunnel's packets are years apart: the capture clock "
                   "jumped, so time-based judgements are not possible")
    back = sum(1 for a, b in zip(ts[:len(msgs)], ts[1:len(msgs)]) if b < a - 1.0)
    if len(msgs) >= 4 and back * 4 >= len(msgs):
        return msg("{back} of {n} IKE messages go back in time by more than a second: the "
                   "capture's timestamps cannot be trusted", back=back, n=len(msgs))
    return None


def coverage_note(ctx, t) -> str | None:
    """A damaged capture whose readable part covers less than half of its time."""
    cap = ctx.state.capture
    cov = getattr(cap, "coverage", None) if cap is not None else None
    if callable(cov):
        share = cov(t.first_ts, t.last_ts) if getattr(t, "first_ts", None) is not None else None
    else:
        share = None
    if share is None:
        share = getattr(cap, "readable_share", None) if cap is not None else None
    if share is not None and share < MIN_COVERAGE:
        return msg("the capture is damaged: its readable records cover {share:.0%} of its time "
                   "(at least {need:.0%} is needed to judge a tunnel)", share=share,
                   need=MIN_COVERAGE)
    return None


# -- the decision ------------------------------------------------------------------------------

def _significance(f, recovered: bool, causes: set) -> tuple:
    if recovered:
        key = "recovered"
    elif f.code in causes:
        key = "cause"
    else:
        key = f.stage if f.stage in SIGNIFICANCE else "negotiation"
    return (SIGNIFICANCE.index(key), stage_rank(f.stage), severity_rank(f.severity))


def _explained(fs, ctx) -> dict:
    """finding id -> the root-cause finding that explains it."""
    out: dict = {}
    by_code: dict = {}
    for f in fs:
        by_code.setdefault(f.code, []).append(f)
    starts: dict = {}  # id(f) -> first_evidence (each finding's once: a tunnel may hold thousands)
    for cause in fs:
        codes = EXPLAINS.get(cause.code)
        at = None
        if not codes:
            at, codes = EXPLAINS_AT.get(cause.code, (None, None))
            if not codes or cause.stage != at:
                continue
        c0 = first_evidence(ctx, cause)
        c1 = last_evidence(ctx, cause)
        # the findings of the codes it explains, in their order in ``fs``
        group = [f for code in codes for f in by_code.get(code, ())]
        if len(codes) > 1:
            pos = {id(f): i for i, f in enumerate(fs)}
            group.sort(key=lambda f: pos[id(f)])
        for f in group:
            if f is cause or (at is not None and f.stage != at):
                continue
            k = id(f)
            if k not in starts:
                starts[k] = first_evidence(ctx, f)
            f0 = starts[k]
            # a consequence happens around the cause: not long before it, not after it ended
            if f0 is None or c0 is None or (c0 - 60.0 <= f0 <= (c1 or c0) + 5.0):
                out[f.id] = cause
    return out


def decide(ctx, t, fs, *, not_seen, pending, healthy_evidence, unjudgeable=None,
           reached="reachability"):
    """The verdict of one tunnel from its findings ``fs`` (the contract above).  Recovered
    failures are downgraded in place (severity at most warning, the recovery in the detail).
    ``pending``: items that could not be judged (listed in ``not_seen``); ``unjudgeable``: a
    reason why absence cannot be judged at all (unusable timestamps, a capture that shows one
    direction, too little of a damaged capture)."""
    failures = [f for f in fs if f.failure and not f.posture]
    recovered = {}
    for f in failures:
        if f.severity not in ("critical", "error"):
            continue
        rec = recovery(ctx, t, f)
        if rec is None:
            continue
        recovered[f.id] = rec
        _mark_recovered(ctx, f, rec)
    explained = _explained(failures, ctx)
    causes = {f.code for f in failures if f.code in EXPLAINS}
    causes.update(c.code for c in explained.values())  # EXPLAINS_AT's, where they explain
    hard = [f for f in failures if f.severity in ("critical", "error")]
    if unjudgeable:
        hard = [f for f in hard if f.code not in ABSENCE_CODES]
    hard_ids = {id(f) for f in hard}
    soft = [f for f in failures if id(f) not in hard_ids and f.severity != "info"]
    if unjudgeable:
        soft = [f for f in soft if f.code not in ABSENCE_CODES]
    not_seen = list(not_seen)
    if hard:
        pool = [f for f in hard if f.id not in explained] or hard
        # the first stage that failed in the last attempt (the last IKE SA generation started
        # from either side): earlier attempts' failures are history
        start = _last_attempt_start(t)
        if start is not None:
            pool = [f for f in pool if (last_evidence(ctx, f) or start) >= start] or pool
        pool.sort(key=lambda f: (stage_rank(f.stage), severity_rank(f.severity)))
        primary, verdict = pool[0], "failing"
    elif soft:
        pool = [f for f in soft if f.id not in explained] or soft
        pool.sort(key=lambda f: _significance(f, f.id in recovered, causes))
        primary, verdict = pool[0], "degraded"
    elif unjudgeable:
        primary, verdict = None, "unknown"
    elif healthy_evidence:
        primary, verdict = None, "healthy"
    else:
        primary, verdict = None, "unknown"
    if unjudgeable:
        not_seen.append(unjudgeable)
    if pending:
        not_seen.extend(pending)
    if verdict == "unknown" and not pending and not unjudgeable and not not_seen:
        not_seen.append(msg("nothing decisive was seen: no answer, no error and no traffic in "
                            "both directions that would show the tunnel working"))
    by_id = {x.id: x for x in reversed(fs)} if explained else {}  # the first of an id
    for fid, cause in explained.items():
        f = by_id.get(fid)
        if f is not None and cause.code not in f.detail:
            f.detail += msg(" A consequence of {code} ({title}).", code=cause.code,
                            title=cause.title)
    order = sorted(fs, key=lambda f: (f.posture, not f.failure, severity_rank(f.severity),
                                      stage_rank(f.stage)))
    out = Verdict(
        tunnel=t.id, verdict=verdict, stage_reached=reached,
        failed_stage=primary.stage if primary else None,
        primary=primary.id if primary else None,
        primary_code=primary.code if primary else None,
        findings=[f.id for f in order], not_seen=_unique(not_seen))
    if len(out.not_seen) != len(not_seen):
        # the items before some were left out as the same text (not a field: live's kept
        # verdicts write their texts that follow the clock again, then leave them out again)
        out.not_seen_all = not_seen
    return out


def _last_attempt_start(t):
    """When the last IKE SA generation of an IPsec tunnel started (rekeys continue their
    generation), or None."""
    starts = [sa.first_ts for sa in getattr(t, "ike_sas", ())
              if sa.rekey_of is None and sa.first_ts is not None and not sa.mid_session]
    return max(starts) if starts else None


def _mark_recovered(ctx, f, rec) -> None:
    ts, how = rec
    if getattr(f, "recovered", None):
        return
    f.recovered = {"at": ctx.time(ts), "by": how}
    if severity_rank(f.severity) < severity_rank("warning"):
        f.severity = "warning"
    f.detail += msg(" Recovered at +{t} s by {how}.", t=ctx.rel(ts), how=how)


def _unique(items):
    seen = set()
    out = []
    for x in items:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


# -- IPsec tunnels --------------------------------------------------------------------------------

def _stage_reached(ctx, t) -> str:
    """The furthest stage the tunnel got into, from what the capture shows."""

    reached = "reachability"

    def up(stage):
        nonlocal reached
        if stage_rank(reached) < stage_rank(stage):
            reached = stage

    for sa in t.ike_sas:
        resp = sa.responder[1] if sa.responder else None
        answered = any(any(m.src == resp for m in x.msgs) for x in sa.exchanges)
        if answered:
            up("negotiation")
            if any(on_nat_t(sa, m) for m in sa.messages):
                up("nat_traversal")
        if sa.established:
            up("authentication")
    qm_done = any(x.exch == ExchangeType.QUICK_MODE and x.last_step >= 3 for sa in t.ike_sas
                  for x in sa.exchanges)
    if t.esp_sas or qm_done:
        up("child_sa")
        if _esp_both_ways_after(t, float("-inf")):
            up("dataplane")
            inner_reached(ctx, t.id, up)
    return reached


def inner_reached(ctx, tid, up) -> None:
    """Past the data plane: traffic of the tunnel's inner model entered it (``routing``) and got
    replies back through it (``inner``)."""
    m = (getattr(ctx.state, "inner_models", None) or {}).get(tid)
    if m is None:
        return
    opened = answered = False
    for _v, how, f in m.flows():
        if how == "xfrm" or f.cli in m.outer or f.srv in m.outer:
            continue
        opened = True
        if f.pkts[1]:
            answered = True
            break
    if opened:
        up("routing")
    if answered:
        up("inner")


def tunnel_verdicts(ctx, findings) -> list[Verdict]:
    by_tunnel = {}
    for f in findings:
        by_tunnel.setdefault(f.tunnel, []).append(f)
    out = []
    args = {}
    for t in ctx.state.tunnels:
        fs = by_tunnel.get(t.id, [])
        unjudgeable = unusable_time(t) or coverage_note(ctx, t)
        if not unjudgeable and any(f.code == "CAPTURE_ONE_DIRECTION" for f in fs):
            unjudgeable = msg("the capture shows one direction of this tunnel only: what the "
                              "other gateway sent (answers, ESP) cannot be seen, so its absence "
                              "proves nothing")
        due = _quick_mode_due(ctx, t, fs)
        args[t.id] = dict(not_seen=_not_seen(ctx, t, fs),
                          pending=_pending(ctx, t) + ([due] if due else []),
                          healthy_evidence=due is None and has_evidence_of_health(t),
                          unjudgeable=unjudgeable, reached=_stage_reached(ctx, t))
        out.append(decide(ctx, t, fs, **args[t.id]))
    _follow_redirects(ctx, out, by_tunnel, args)
    # imported here, not at the top: importing the package registers its rules, and the rule
    # order is load_all's (the import is one-way: rules.vpn never imports this module)
    from pcapvpn.rules.vpn import vpn_evidence

    for t in ctx.state.vpn_tunnels:  # OpenVPN, WireGuard, L2TP, PPTP, SSL-VPN
        fs = by_tunnel.get(t.id, [])
        out.append(decide(ctx, t, fs, unjudgeable=coverage_note(ctx, t),
                          **vpn_evidence(ctx, t, fs)))
    return out


#: what a redirect (RFC 5685) is worth on the redirecting tunnel, by the verdict of the
#: tunnel the client was sent to
_REDIRECT_SEVERITY = {"failing": "error", "degraded": "warning", "healthy": "info",
                      "unknown": "info"}


def _follow_redirects(ctx, out, by_tunnel, args) -> None:
    """A tunnel whose last attempt the gateway answered with REDIRECT (RFC 5685: load
    balancing, maintenance) worked or failed as the redirected attempt did: the gateway did its
    job, and the client's connection is the one it then made to the other gateway.  Its verdict
    is decided again with the redirect weighed by the target tunnel's verdict (failing: an error
    at negotiation; degraded: a warning; healthy: information, and the redirect counts as the
    tunnel doing its job).  Not followed in the capture (the client's IKE_SA_INIT to the new
    gateway is not in it: another capture point, or the capture ended): unknown, unless the
    tunnel's other findings decide.  A client that came back to the same gateway later is
    judged on that attempt as usual.  Redirect chains are followed (a few hops)."""
    tunnels = {t.id: t for t in ctx.state.tunnels}
    for _hop in range(4):
        verdicts = {v.tunnel: v for v in out}
        changed = False
        for i, v in enumerate(out):
            t = tunnels.get(v.tunnel)
            fs = by_tunnel.get(v.tunnel, [])
            red = [f for f in fs if f.code == "IKE_REDIRECT" and getattr(f, "redirect", None)]
            if t is None or not red:
                continue
            f = max(red, key=lambda f: f.redirect["ts"])
            ts = f.redirect["ts"]
            if any(sa.first_ts is not None and sa.first_ts > ts and not sa.mid_session
                   for sa in t.ike_sas):
                continue  # the client came back: that attempt decides
            target = verdicts.get(f.redirect["target"]) if f.redirect["target"] else None
            if f.redirect["followed"] and target is None:
                continue  # followed within the same tunnel
            kw = dict(args[v.tunnel])
            if target is None:
                sev = "info"
                kw["unjudgeable"] = kw["unjudgeable"] or msg(
                    "the gateway redirected the client (RFC 5685), and the client's IKE_SA_INIT "
                    "to the new gateway is not in the capture: how the redirected connection "
                    "ended cannot be seen")
            else:
                sev = _REDIRECT_SEVERITY[target.verdict]
                if target.verdict == "healthy":
                    kw["healthy_evidence"] = True
                elif target.verdict == "unknown":
                    kw["unjudgeable"] = kw["unjudgeable"] or msg(
                        "the redirected connection (tunnel {tunnel}) is itself unknown",
                        tunnel=target.tunnel)
            note = (msg(" The redirected connection (tunnel {tunnel}) is {verdict}.",
                        tunnel=target.tunnel, verdict=Term(target.verdict))
                    if target is not None else "")
            if f.severity == sev and f.redirect.get("note", "") == note:
                continue
            f.severity = sev
            # live mode may keep a finding between evaluations: the target's verdict of the
            # last one is replaced, never added to
            base = f.redirect.setdefault("detail", f.detail)
            f.detail = base + note if note else base
            f.redirect["note"] = note
            new = decide(ctx, t, fs, **kw)
            if new != v:
                out[i] = new
                changed = True
        if not changed:
            return


def _pending(ctx, t) -> list[str]:
    """Requests whose answer time had not passed when the capture ended (each exchange once;
    INFORMATIONAL requests from both gateways at the end are one orderly teardown)."""

    items = []
    for sa in t.ike_sas:
        for x in sa.exchanges:
            if exchange_status(ctx, x) == PENDING:
                items.append((max(m.ts for m in x.msgs), x))
    if not items:
        return []
    items.sort(key=lambda i: i[0])
    info = [(ts, x) for ts, x in items if x.exch in (ExchangeType.INFORMATIONAL, ExchangeType.INFORMATIONAL_V1)]
    out = []
    if len({x.msgs[0].src for _ts, x in info}) >= 2:
        listed = msg_join(", ", [msg("{exchange} from {ip} at +{t} s", exchange=exchange_label(x),
                                     ip=ip_text(x.msgs[0].src), t=ctx.rel(ts))
                                 for ts, x in info])
        out.append(msg("both gateways sent INFORMATIONAL requests as the capture ended (the "
                       "DELETEs of an orderly teardown from each side, or liveness checks): "
                       "{listed}; the capture ends {after:.1f} s after the last, too soon for "
                       "their answers", listed=listed, after=ctx.now - info[-1][0]))
        items = [(ts, x) for ts, x in items if (ts, x) not in info]
    for ts, x in items:
        if x.version == 2:
            out.append(msg("{exchange} from {ip}: the capture ends {after:.1f} s after the "
                           "request (a response may still have come; at least {timeout:g} s are "
                           "needed to call it unanswered)", exchange=exchange_label(x),
                           ip=ip_text(x.msgs[0].src), after=ctx.now - ts,
                           timeout=ctx.th.response_timeout))
        else:  # IKEv1: the last step's sender waits for the next message of the exchange
            out.append(msg("{exchange} from {ip}: the capture ends {after:.1f} s after it (the "
                           "next message may still have come; at least {timeout:g} s are needed "
                           "to call it unanswered)", exchange=exchange_label(x),
                           ip=ip_text(last_requests(x)[0].src), after=ctx.now - ts,
                           timeout=ctx.th.response_timeout))
    return out


#: what comes between phase 1 and the first Quick Mode: phase 1 itself, XAUTH and Mode Config
_PHASE1_ON = PHASE1 | {ExchangeType.TRANSACTION}


def _failed_by_authentication(fs) -> bool:
    """A failure of the findings ``fs`` at authentication or before it, not recovered."""
    return any(f.failure and f.severity in ("critical", "error") and not f.recovered
               and stage_rank(f.stage) <= stage_rank("authentication") for f in fs)


def _quick_mode_due(ctx, t, fs=()) -> str | None:
    """IKEv1: the tunnel's latest working IKE SA completed phase 1 (and XAUTH or Mode Config)
    less than the answer timeout before the capture ended, with no Quick Mode and no ESP: only
    a Quick Mode brings up a child SA (RFC 2409 §5.5), and the capture ends before it was due,
    so the tunnel cannot be called up (nor XAUTH's encrypted result judged).  What to say in
    ``pending``, or None (also when a finding ``fs`` shows the SA failed by then)."""
    if t.esp_sas or _failed_by_authentication(fs):
        return None
    gen = _working_generation(t)
    if gen is None or gen[1].version != 1:
        return None
    sa = gen[1]
    if any(x.exch == ExchangeType.QUICK_MODE for x in sa.exchanges) or \
            not any(x.exch in PHASE1 for x in sa.exchanges):
        return None  # (phase 1 before the capture: its Quick Mode may be too)
    last = max(m.ts for x in sa.exchanges if x.exch in _PHASE1_ON for m in x.msgs)
    after = ctx.now - last
    if after >= ctx.th.response_timeout:
        return None
    xauth = any(x.exch == ExchangeType.TRANSACTION for x in sa.exchanges)
    return msg("phase 1{xauth} ended {after:.1f} s before the capture did, and no Quick "
               "Mode followed in that time: whether the child SA came up cannot be seen (at "
               "least {timeout:g} s are needed)",
               xauth=msg(" and the Transaction exchanges (XAUTH, Mode Config)") if xauth else "",
               after=after, timeout=ctx.th.response_timeout)


def _first_child_exchange(t):
    """When the first child SA negotiation of tunnel ``t`` (Quick Mode, IKE_AUTH,
    CREATE_CHILD_SA) started, or None."""
    kinds = (ExchangeType.QUICK_MODE, ExchangeType.IKE_AUTH, ExchangeType.CREATE_CHILD_SA)
    return min((x.msgs[0].ts for sa in t.ike_sas for x in sa.exchanges
                if x.exch in kinds and x.msgs), default=None)


def _not_seen(ctx, t, fs=()) -> list[str]:
    notes = []
    enc = heads = 0  # messages encrypted (and not decrypted); read from a first fragment only
    for sa in t.ike_sas:
        for m in sa.messages:
            if m.encrypted and getattr(m, "decrypt_status", None) not in ("ok", "unverified"):
                enc += 1
            if m.truncated and m.head_only:
                heads += 1
    if enc:
        notes.append(msg("{n} IKE message(s) are encrypted: without keys their content "
                         "(identities, traffic selectors, child SA SPIs, exact error "
                         "notifications) is inferred from sizes and the SK header only", n=enc))
    if heads:
        notes.append(msg("{n} IKE message(s) are read from their first IP fragment only: the "
                         "later fragments are not in the capture (they carry no UDP ports, so a "
                         "port capture filter such as 'udp port 500 or udp port 4500' drops "
                         "them, or they were lost before the capture point); what they carried "
                         "past the first fragment cannot be seen", n=heads))
    if any(sa.mid_session for sa in t.ike_sas):
        notes.append(msg("the capture started after the IKE SA was negotiated (its IKE_SA_INIT / "
                         "Main Mode is not in the capture)"))
    late = [e for e in t.esp_sas if getattr(e, "first_seq", 1) not in (None, 0, 1)]
    if late:
        # an SA negotiated in the capture whose first sequence number is a little above 1 was
        # not running before: its first packets are missing (not seen at this point)
        child = _first_child_exchange(t)
        missed = [e for e in late if child is not None and child <= e.first_ts
                  and e.first_seq <= ctx.th.replay_window]
        if len(missed) < len(late):
            notes.append(msg("{n} ESP SA(s) were already running when the capture started",
                             n=len(late) - len(missed)))
        if missed:
            notes.append(msg("{n} ESP SA(s) negotiated in the capture start at a sequence number "
                             "above 1 (first: {seq}): their first packets are not in the "
                             "capture", n=len(missed), seq=min(e.first_seq for e in missed)))
    if t.esp_sas and not t.ike_sas:
        notes.append(msg("no IKE for this gateway pair in the capture: ESP SAs cannot be tied "
                         "to their negotiation"))
    # (not when the IKE SA itself failed: XAUTH refused after phase 1, ...)
    if t.ike_sas and not t.esp_sas and _working_generation(t) is not None and \
            not _failed_by_authentication(fs):
        notes.append(msg("no ESP in the capture: the IKE SA is up; whether a child SA carried "
                         "traffic cannot be seen (none was sent while the capture ran)"))
    return notes


# -- docs/verdicts.md ------------------------------------------------------------------------------

BEGIN = "<!-- BEGIN GENERATED: python -m pcapvpn.rules.verdict -->"
END = "<!-- END GENERATED -->"


def doc_tables() -> str:
    """The generated part of docs/verdicts.md: the constants the decision uses."""
    lines = [BEGIN, "",
             f"- A damaged capture: a tunnel is unknown below **{MIN_COVERAGE:.0%}** of the "
             f"capture's time covered by readable records.",
             "- Findings about something missing (not decisive where the capture cannot show "
             "absence: one direction only, unusable timestamps): "
             + ", ".join(f"`{c}`" for c in sorted(ABSENCE_CODES)) + ".",
             "", "Root causes and the findings they explain (those are never primary while "
             "their cause is on the tunnel):", "",
             "| root cause | explains |", "|---|---|"]
    for cause, codes in sorted(EXPLAINS.items()):
        lines.append(f"| `{cause}` | " + ", ".join(f"`{c}`" for c in sorted(codes)) + " |")
    for cause, (at, codes) in sorted(EXPLAINS_AT.items()):
        lines.append(f"| `{cause}` at `{at}` | " + ", ".join(f"`{c}` at `{at}`"
                                                          for c in sorted(codes)) + " |")
    lines += ["", "Significance of a degradation, most significant first (the primary finding "
              "of a degraded tunnel):", ""]
    labels = {"recovered": "a failure the tunnel recovered from",
              "cause": "a root cause (table above)"}
    for i, key in enumerate(SIGNIFICANCE, 1):
        lines.append(f"{i}. {labels.get(key, f'a warning at stage `{key}`')}")
    lines += ["", END]
    return "\n".join(lines)


def _main() -> None:  # pragma: no cover - run by hand: rewrites docs/verdicts.md's tables
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "docs" / "verdicts.md"
    text = path.read_text()
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    path.write_text(head + doc_tables() + tail)


if __name__ == "__main__":  # pragma: no cover
    _main()


__all__ = ["Verdict", "tunnel_verdicts", "decide", "recovery", "last_evidence",
           "has_evidence_of_health", "unusable_time", "established_ts", "ABSENCE_CODES",
           "STAGES"]
