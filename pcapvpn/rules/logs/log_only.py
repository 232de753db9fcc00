"""LOG_ONLY_FAILURE: a failure a log reports inside the capture's time span that no packet
finding explains."""

from __future__ import annotations

from pcapvpn.findings import Evidence, Term, declare, make, msg
from pcapvpn.rules.logs.common import FAILURE_KINDS, KIND_STAGE, MAX_REFS, _at, _clip, ref
from pcapvpn.track.logs import _norm

declare(
    "LOG_ONLY_FAILURE", "capture", "warning",
    "A gateway log reports a failure, inside the capture's time span, that no finding from the "
    "packets explains: it happened on a tunnel or a path this capture does not show, or inside "
    "encrypted messages.  Listed beside the verdict; it never changes it.",
    ["Capture where the failing tunnel's packets pass (both gateways' outside interfaces), at "
     "the time the log names.",
     "Read the log line: it names the peer and the reason."],
    failure=False)


def _log_only(ctx, linked, used, start, end) -> list:
    groups: dict = {}
    for li in linked:
        e = li.ent
        if id(e) in used or e.ev.kind not in FAILURE_KINDS or e.ts is None:
            continue
        if start is not None and end is not None and not (start - 1.0 <= e.ts <= end + 1.0):
            continue
        key = (li.src.index, e.ev.kind, e.ev.ctx, li.tunnel)
        groups.setdefault(key, []).append(li)
    out = []
    for (_i, kind, _ctxkey, tunnel), lis in groups.items():
        li = lis[0]
        ev = li.ent.ev
        peer = _norm(ev.peer)
        where = f"{li.src.name}:{ev.line}"
        f = make("LOG_ONLY_FAILURE", f"{li.src.name}|{kind}|{ev.ctx}|{ev.line}",
                 title=msg("{log} reports {kind}{peer} (not seen in the packets)",
                           log=li.src.name, kind=Term(kind.replace('_', ' ')),
                           peer=msg(" with {peer}", peer=peer) if peer else ""),
                 detail=msg("{where} at {t}: '{text}'", where=where, t=_at(ctx, li.ent.ts),
                            text=_clip(ev.text))
                        + (msg(" ({n} such line(s))", n=len(lis)) if len(lis) > 1 else "")
                        + msg(".  The log speaks of the {stage} stage; no finding from the "
                              "packets covers it.", stage=Term(KIND_STAGE.get(kind, 'unknown'))),
                 basis="log", evidence=Evidence(first=ctx.time(li.ent.ts),
                                                last=ctx.time(lis[-1].ent.ts),
                                                peers=[peer] if peer else []),
                 wireshark_filter=_peer_filter(peer), tunnel=tunnel)
        f.logs = [ref(ctx, x) for x in lis[:MAX_REFS]]
        out.append(f)
    return out


def _peer_filter(peer: str | None) -> str:
    """The traffic to and from the peer a log line names (what to look at in the capture)."""
    if not peer:
        return ""
    return f"ipv6.addr == {peer}" if ":" in peer else f"ip.addr == {peer}"
