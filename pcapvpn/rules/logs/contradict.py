"""LOG_CONTRADICTION: the log's claim and the packets disagree (a suspected authentication failure
while the request was never answered; a daemon retransmitting while its answers reach the
capture point)."""

from __future__ import annotations

from pcapvpn.findings import declare, make, msg
from pcapvpn.rules.logs.common import (
    MAX_REFS, _add_ref, _at, _clip, _copy_evidence, _exch, _host, _ike_msg_filter, ref,
)
from pcapvpn.track.logs import _txt

declare(
    "LOG_CONTRADICTION", "capture", "info",
    "A gateway log and the packets disagree about what happened: the log names a cause the "
    "capture rules out (a suspected authentication failure while the request was never "
    "answered at all), or the daemon says it got no answer while the capture shows the answers "
    "reaching the capture point on their way to it.",
    ["Trust the packets for where traffic went: the capture shows what crossed the wire.",
     "Answers that reach the capture point but never the daemon are dropped on the gateway "
     "itself: its host firewall (input rules for UDP 500/4500), a wrong interface or source "
     "address, conntrack/NAT on the host.",
     "A daemon that *suspects* authentication (libreswan 'Possible authentication failure') "
     "while nothing ever came back: check the path for UDP 4500 (NAT-T) first."],
    failure=False)


def _contradictions(ctx, findings, linked, used) -> list:
    out = []
    by_tunnel: dict = {}
    for f in findings:
        by_tunnel.setdefault(f.tunnel, []).append(f)
    sas = ctx.ike_sa_by_id
    done = set()
    for li in linked:
        ev = li.ent.ev
        if ev.kind == "auth_suspected" and li.tunnel is not None:
            f = _auth_suspected(ctx, li, by_tunnel.get(li.tunnel, ()), done)
            if f is not None:
                used.add(id(li.ent))
                out.append(f)
        elif ev.kind in ("ike_retransmit", "give_up", "dpd_timeout") and li.ike_sa in sas:
            f = _answers_dropped(ctx, li, sas[li.ike_sa], linked,
                                 by_tunnel.get(li.tunnel, ()), done, used)
            if f is not None:
                used.add(id(li.ent))
                out.append(f)
    return out


def _auth_suspected(ctx, li, tfindings, done):
    """libreswan guesses authentication; the capture shows the IKE_AUTH never answered."""
    key = ("auth", li.src.index, li.ent.ev.ctx)
    if key in done:
        return None
    hit = [f for f in tfindings if f.code in ("NAT_T_BLOCKED", "IKE_NO_RESPONSE")]
    if not hit:
        return None
    done.add(key)
    f0 = hit[0]
    r = ref(ctx, li, agrees=False)
    for f in hit:
        _add_ref(f, r)
    what = (msg("UDP 4500 (NAT-T) is dropped on the path") if f0.code == "NAT_T_BLOCKED"
            else msg("nothing came back from the peer"))
    g = make("LOG_CONTRADICTION", f"auth|{li.src.name}|{li.ent.ev.line}",
             title=msg("{log} suspects an authentication failure, but the capture shows the "
                       "request was never answered", log=li.src.name),
             detail=msg("{log}:{line} says '{text}' — a guess: the daemon got no acceptable "
                        "answer to its first encrypted message.  The packets show no answer at "
                        "all ({code}: {title}): {what}, so authentication was never tried by the "
                        "peer.", log=li.src.name, line=li.ent.ev.line,
                        text=_clip(li.ent.ev.reason or li.ent.ev.text), code=f0.code,
                        title=f0.title, what=what),
             basis="log", evidence=_copy_evidence(f0.evidence), tunnel=li.tunnel,
             wireshark_filter=f0.wireshark_filter)
    g.logs = [r]
    return g


def _answers_dropped(ctx, li, sa, linked, tfindings, done, used):
    """The daemon retransmits / gives up while the answers reach the capture point."""
    ev = li.ent.ev
    t = li.ent.ts
    if t is None:
        return None
    msgid = ev.msgid
    if msgid is None:  # give_up / DPD timeout: the last request retransmitted in this context
        for other in linked:
            oe = other.ent.ev
            if other.src is li.src and oe.ctx == ev.ctx and oe.kind == "ike_retransmit" and \
                    oe.msgid is not None and other.ent.ts is not None and other.ent.ts <= t:
                msgid = oe.msgid
    if msgid is None:
        return None
    key = ("answers", li.src.index, ev.ctx, msgid)
    if key in done:
        return None
    host = _host(li.src.alignment)
    if host is None:
        return None  # which side the daemon is on must be known before it is contradicted
    slack = (li.src.alignment.uncertainty or 0.0) + li.ent.res + 0.5
    for x in sa.exchanges:
        if x.msgid != msgid or sa.version != 2:
            continue
        reqs = [m for m in x.msgs if not m.is_response]
        resps = [m for m in x.msgs if m.is_response]
        if not reqs or not resps:
            continue
        # the daemon is the requester: it logs the retransmission; the responses go to it (each
        # side numbers its own requests: the Message ID alone does not name the exchange)
        requester = reqs[0].src
        if _txt(requester) != host:
            continue
        before = [m for m in resps if m.ts < t - slack and m.dst == requester]
        if not before:
            continue
        # the daemon says it received something of this exchange (and ignored it): no claim
        heard = [o for o in linked if o.src is li.src and o.ent.ev.ctx == ev.ctx and
                 o.ent.ev.direction == "in" and o.ent.ts is not None and
                 before[0].ts - slack <= o.ent.ts <= t + slack and
                 o.ent.ev.exchange == _exch(x) and o.ent.ev.response is not False]
        if heard:
            continue
        done.add(key)
        claims = [o for o in linked if o.src is li.src and o.ent.ev.ctx == ev.ctx and (
            (o.ent.ev.kind == "ike_retransmit" and o.ent.ev.msgid == msgid) or
            o.ent.ev.kind in ("give_up", "dpd_timeout"))]
        n_retx = sum(1 for o in claims if o.ent.ev.kind == "ike_retransmit")
        gave_up = any(o.ent.ev.kind == "give_up" for o in claims)
        claimed = {(o.src.name, o.ent.ev.line) for o in claims}
        for o in claims:
            used.add(id(o.ent))
        refs = [m.frames[-1] for m in resps]
        affected = [f for f in tfindings if any(
            (fr.file, fr.frame) in {(ctx.file(r[0]), r[1]) for r in refs}
            for fr in f.evidence.frames)]
        r = ref(ctx, li, agrees=False)
        for f in affected:
            _add_ref(f, r)
            for lr in f.logs:  # the same claim on other lines disagrees as well
                if (lr.file, lr.line) in claimed:
                    lr.agrees = False
        first = before[0]
        g = make("LOG_CONTRADICTION", f"answers|{li.src.name}|{ev.ctx}|{msgid}",
                 title=msg("{log}: the daemon got no answer to Message ID {msgid}, but {n} "
                           "answer(s) reached the capture point", log=li.src.name, msgid=msgid,
                           n=len(resps)),
                 detail=msg("{log}:{line} says '{text}'", log=li.src.name, line=ev.line,
                            text=_clip(ev.text))
                        + ((msg(" ({n} retransmission(s) logged, then it gave up)", n=n_retx)
                            if gave_up else msg(" ({n} retransmission(s) logged)", n=n_retx))
                           if n_retx else "")
                        + msg("; the capture shows {n} response(s) to {exchange} Message ID "
                              "{msgid} from {src} to {dst}, the first at {t}, before the daemon's "
                              "line ({t_log}).  The answers are dropped between the capture "
                              "point and the daemon: on the gateway itself (host firewall, "
                              "interface, conntrack/NAT).", n=len(resps), exchange=_exch(x),
                              msgid=msgid, src=_txt(first.src), dst=_txt(requester),
                              t=_at(ctx, first.ts), t_log=_at(ctx, t)),
                 basis="log",
                 evidence=ctx.evidence(refs, first.ts, resps[-1].ts,
                                       ike_spis=[bytes(sa.ispi).hex()],
                                       peers=[_txt(requester), _txt(first.src)]),
                 wireshark_filter=_ike_msg_filter(sa, msgid), tunnel=li.tunnel)
        g.logs = [r] + [ref(ctx, o, agrees=False) for o in claims if o is not li][:MAX_REFS - 1]
        for f in affected[:1]:
            g.detail += msg("  Affected finding: {code} ({title}).", code=f.code, title=f.title)
        return g
    return None
