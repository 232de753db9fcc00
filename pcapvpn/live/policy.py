"""When a live finding counts: held back until it can be certain (:data:`HOLD`), raised after
:data:`RAISE_AFTER` evaluations and resolved after :data:`RESOLVE_AFTER` (cleared, or superseded
by the tunnel's recovery), and the capture's own drops noted on findings about an absence."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ABSENCE_CODES", "HOLD", "RAISE_AFTER", "RESOLVED_CLEARED", "RESOLVED_RECOVERED",
           "RESOLVE_AFTER", "annotate_drops", "annotate_late"]

#: findings that depend on something missing: when the capture dropped packets they say so
ABSENCE_CODES = frozenset((
    "IKE_NO_RESPONSE", "NAT_T_BLOCKED", "IKE_FRAGMENTATION_LOSS", "EXPECTED_PEER_ABSENT",
    "NAT_KEEPALIVE_MISSING", "CHILD_SA_FAILED", "ESP_ONE_WAY", "CAPTURE_ONE_DIRECTION",
    "ESP_SEQUENCE_GAP", "ESP_NO_TRAFFIC", "MTU_BLACK_HOLE", "DPD_TIMEOUT"))

#: findings the rules report with a "too soon" caveat at the end of a file; live holds them
#: until the capture has run this threshold (name in Thresholds) since their first evidence /
#: since the capture started (None)
HOLD = {
    # "never answered": analyze says it at the end of a file once a retransmission was seen;
    # a running capture says it once the request has waited the response timeout, as analyze
    # does for a request that was not retransmitted (an answer may still be on its way)
    "IKE_NO_RESPONSE": ("response_timeout", "evidence"),
    "NAT_T_BLOCKED": ("response_timeout", "evidence"),
    "IKE_FRAGMENTATION_LOSS": ("response_timeout", "evidence"),
    "OPENVPN_NO_RESPONSE": ("response_timeout", "evidence"),
    "WIREGUARD_NO_RESPONSE": ("response_timeout", "evidence"),
    "TCP_NO_ANSWER": ("response_timeout", "evidence"),
    # one direction only: wait the one-way window after the first packet (the rule's caveat)
    "CAPTURE_ONE_DIRECTION": ("one_way_window", "evidence"),
    # a gateway that talks at all shows up within a DPD interval (keepalives, DPD, ESP)
    "EXPECTED_PEER_ABSENT": ("dpd_timeout", "start"),
}


#: why a raised finding was resolved (a resolved event's ``reason``; ``--lang`` translates it)
RESOLVED_RECOVERED = ("the tunnel recovered: a later IKE SA came up, or ESP flowed both ways "
                      "again")
RESOLVED_CLEARED = "the condition cleared"

#: evaluations in a row a finding must be present before it is raised / absent before it is
#: resolved: an evaluation may fall between a request and its answer (an IKE_SA_INIT whose
#: response arrives a millisecond later) and see a state that lasts only that long
RAISE_AFTER = 2
RESOLVE_AFTER = 2


@dataclass
class _Active:
    finding: object
    raised_ts: float
    missing: int = 0



def _held(ctx, f) -> bool:
    hold = HOLD.get(f.code)
    if hold is None:
        return False
    name, since = hold
    wait = getattr(ctx.th, name)
    if since == "start":
        t0 = ctx.start
    else:
        ev = f.evidence.first
        t0 = ctx.start + ev["rel"] if ev and ev.get("rel") is not None else ctx.start
    return ctx.now - t0 < wait


def _superseded(ctx, tunnels, f) -> bool:
    """A failure that happened before the tunnel's latest IKE SA came up and carried ESP both
    ways (the verdict's "recovered"): in live mode it is over."""
    # the verdicts of this evaluation (computed first) marked the recovered failures
    return bool(f.failure and not f.posture and f.recovered)


def annotate_drops(findings, drops: int, rx_dropped: int = 0, unread: int = 0) -> None:
    """Findings about something missing say that the capture itself lost packets (``drops``)
    or left packets unread in its ring at the stop (``unread``: captured, not analysed)."""
    if not drops and not unread:
        return
    from pcapvpn.findings import msg

    if not unread:
        note = msg(" Note: the capture dropped {drops} packet(s) itself (capture ring / "
                   "interface), so this absence may be the capture's, not the network's.",
                   drops=drops)
    else:
        note = msg(" Note: the capture dropped {drops} packet(s) itself (capture ring / "
                   "interface) and left {unread} captured packet(s) unread in its ring at the "
                   "stop, so this absence may be the capture's, not the network's.",
                   drops=drops, unread=unread)
    for f in findings:
        if f.code in ABSENCE_CODES and note not in f.detail:
            f.detail += note


def annotate_late(findings, at: float, after: int) -> None:
    """Findings about something missing, in the report of the evaluation at ``at`` that the stop
    gave when its own rules were late (``--report-within``): ``after`` packets captured after
    that evaluation (read, or left in the ring at the stop) were not judged, and may hold what
    was missing."""
    from pcapvpn.live.events import _hms

    if not after:  # nothing came after it that could have ended an absence
        return
    from pcapvpn.findings import msg

    note = msg(" Note: judged at {at}, the last evaluation before the stop (the final rules "
               "were late); {n} packet(s) captured after it were not judged, so this absence "
               "may have ended since.", at=_hms(at), n=after)
    for f in findings:
        if f.code in ABSENCE_CODES:
            f.detail += note
