"""The bounds of the analysis (pcapvpn.limits.Limits) and what they left out.

A capture can hold more than an analysis should keep (a flood of SPIs or IKE_SA_INITs from a
scanner, garbage on a mirror port): the trackers keep a bounded number of SAs, messages and
flows, and some rules give up a question after a bounded number of look-ups.  What was dropped
or left open is counted; this rule says so, so that the verdict is read knowing what the
analysis could not see.  It runs after every other rule (its module is the last one).
"""

from __future__ import annotations

from pcapvpn.findings import Term, declare, make, msg, msg_join
from pcapvpn.rules import rule
from pcapvpn.rules.common import frames_filter

declare("CAPTURE_LIMITS", "capture", "warning",
        "The capture holds more than the analysis keeps: beyond a bound (IKE SAs, IKE messages, "
        "ESP SAs, flows; see README 'Limits') packets were only counted, or a question was left "
        "open after a bounded number of look-ups. Findings and verdicts cover what was kept; "
        "what was dropped is counted in the detail. A flood (scanner, IKE_SA_INIT or SPI flood) "
        "is the usual cause.",
        ["Look at what filled the capture (the first dropped frame is in the evidence): a "
         "scanner or flood is worth a finding of its own on the gateway's side (rate limits, "
         "IKE cookies: strongSwan charon.cookie_threshold, libreswan ddos-mode).",
         "To analyse one tunnel of a busy capture, cut the capture to it first (tcpdump -r IN "
         "-w OUT host A and host B) and analyse that."],
        failure=False)

#: what a rule's look-up budget left open, by the name the rule gave it
QUESTIONS = {
    "one_way_reverse": "one-way ESP checks left open (too many SAs of the opposite direction "
                       "to compare; no ESP_ONE_WAY was said for them)",
}


@rule
def capture_limits(ctx):
    hits = list(getattr(ctx.state, "limits", None) or [])
    for name, (n, ref, ts) in sorted(ctx.cut.items()):
        hits.append({"bound": "look-ups", "limit": None, "dropped": n,
                     "unit": QUESTIONS.get(name, name), "first_ref": ref, "first_ts": ts})
    if not hits:
        return
    parts = []
    refs = []
    times = []
    for h in hits:
        bound = h["bound"] if h["limit"] is None else f"{h['bound']} = {h['limit']:,}"
        parts.append(msg("{n:,} {unit} ({bound})", n=h['dropped'], unit=Term(h['unit']),
                         bound=bound))
        if h["first_ref"] is not None:
            refs.append(tuple(h["first_ref"]))
        if h["first_ts"] is not None:
            times.append(h["first_ts"])
    total = sum(h["dropped"] for h in hits)
    detail = msg("Not analysed, only counted: {parts}. Findings and verdicts cover the rest; "
                 "the evidence names the first frame each bound dropped.",
                 parts=msg_join("; ", parts))
    yield make(
        "CAPTURE_LIMITS", "limits",
        title=msg("The analysis reached its bounds: {n:,} item(s) counted but not analysed",
                  n=total),
        detail=detail, basis="observed",
        evidence=ctx.evidence(refs, min(times) if times else None, None),
        wireshark_filter=frames_filter(refs) if refs else "frame")
