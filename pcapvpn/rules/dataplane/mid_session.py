"""A capture that started in the middle of a session."""

from __future__ import annotations


from pcapvpn.findings import declare, make, msg, msg_join
from pcapvpn.rules import rule
from pcapvpn.rules.common import (
    ip_text,
)
from pcapvpn.rules.dataplane.common import MAX_LISTED, _spi, _spis, sa_filter


declare("CAPTURE_MID_SESSION", "capture", "info",
        "ESP SAs were already running when the capture started (their first sequence numbers "
        "are far from 1): their negotiation and first packets are not in the capture.",
        ["To see the negotiation, start the capture first, then bring the tunnel up (or clear the "
         "SAs: 'swanctl --terminate', 'clear crypto sa')."],
        failure=False)


@rule
def mid_session(ctx):
    W = ctx.th.replay_window
    for t in ctx.state.tunnels:
        late = [s for s in t.esp_sas if s.mid_session(W)]
        if not late:
            continue
        listed = msg_join(", ", [msg("0x{spi} from seq {seq}", spi=_spi(s), seq=s.min_seq)
                                 for s in late[:MAX_LISTED]])
        more = msg(" and {n} more", n=len(late) - MAX_LISTED) if len(late) > MAX_LISTED else ""
        yield make(
            "CAPTURE_MID_SESSION", f"{t.id}|mid-session",
            title=msg("{n} ESP/AH SA(s) between {a} and {b} were already running when the "
                      "capture started", n=len(late), a=ip_text(t.a), b=ip_text(t.b)),
            detail=msg("Their first sequence numbers are far from 1 ({listed}{more}): the SAs "
                       "were created before the capture, so their negotiation and first packets "
                       "are not in it, and loss before the first captured packet cannot be "
                       "measured.", listed=listed, more=more),
            basis="observed",
            evidence=ctx.evidence([s.first_ref for s in late], min(s.first_ts for s in late),
                                  None, esp_spis=_spis(late),
                                  peers=[ip_text(t.a), ip_text(t.b)]),
            wireshark_filter=sa_filter(late), tunnel=t.id)
