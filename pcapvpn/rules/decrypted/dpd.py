"""DPD_TIMEOUT read from IKEv1 R-U-THERE / R-U-THERE-ACK in encrypted Informationals (RFC 3706)."""

from __future__ import annotations

from dissect.vpn.registry import ExchangeType, NotifyV1
from pcapvpn.findings import make, msg
from pcapvpn.rules import rule, supersede
from pcapvpn.rules.common import ike_filter, ike_spis, ip_text
from pcapvpn.rules.decrypted.common import _key_note, _msgs, _tid

#: R-U-THERE sequence numbers spelled out in a detail
MAX_SEQS = 5


@rule
def v1_dpd(ctx):
    for sa in ctx.state.ike_sas:
        if sa.version != 1:
            continue
        asks = {}
        acks = {}
        for m in _msgs(sa):
            if m.exch != ExchangeType.INFORMATIONAL_V1:
                continue
            for n in m.inner.notifies:
                if n.dpd_seq is not None:
                    (asks if n.notify_type == NotifyV1.R_U_THERE else acks).setdefault(n.dpd_seq, m)
        if not asks:
            continue
        open_ = [m for seq, m in sorted(asks.items()) if seq not in acks
                 and ctx.now - m.ts >= ctx.th.dpd_timeout]
        # an R-U-THERE followed by a later answered one is a lost packet, not a dead peer
        last_ok = max((asks[s].ts for s in asks if s in acks), default=None)
        open_ = [m for m in open_ if last_ok is None or m.ts > last_ok]
        if not open_:
            continue
        first = open_[0]
        who, peer = ip_text(first.src), ip_text(first.dst)
        answered = sum(1 for s in asks if s in acks)
        f = make("DPD_TIMEOUT", f"{sa.id}|dec|v1dpd",
                 title=msg("DPD R-U-THERE from {who} to {peer} unanswered (decrypted)", who=who,
                           peer=peer),
                 detail=msg("{n} R-U-THERE (RFC 3706) in encrypted Informationals, {answered} "
                            "answered by an R-U-THERE-ACK with the same sequence number; the last "
                            "{open} from {who} (sequence {seqs}) between +{t0} s and +{t1} s got "
                            "none{note}.", n=len(asks), answered=answered, open=len(open_),
                            who=who, seqs=', '.join(str(_dpd_seq(m)) for m in open_[:MAX_SEQS])
                            + ('...' if len(open_) > MAX_SEQS else ''),
                            t0=ctx.rel(first.ts), t1=ctx.rel(open_[-1].ts),
                            note=_key_note(first)),
                 basis="decrypted",
                 evidence=ctx.evidence(ctx.msg_refs(open_), first.ts, open_[-1].ts,
                                       ike_spis=ike_spis(sa), peers=[who, peer]),
                 wireshark_filter=ike_filter(sa, exch=ExchangeType.INFORMATIONAL_V1),
                 tunnel=_tid(ctx, sa))
        yield supersede(f, ("DPD_TIMEOUT",), frames=f.evidence.frames)


def _dpd_seq(m) -> int:
    """The sequence number of the message's (first well-formed) R-U-THERE."""
    return next((n.dpd_seq for n in m.inner.notifies
                 if n.notify_type == NotifyV1.R_U_THERE and n.dpd_seq is not None), 0)
