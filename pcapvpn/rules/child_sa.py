"""Child SA: are the IPsec SAs agreed?

Keyless inferences (RFC 7296 §3.14, the SK header names the first encrypted payload): an IKE_AUTH
response that starts with IDr carries the IKE SA; when it is too small to also hold SA, TSi and TSr
and no ESP follows, the child SA was refused (an idle child cannot be excluded).  A CREATE_CHILD_SA
response that starts with a Notify refused the new or rekeyed child.  IKEv1: Quick Mode that stalls
after QM1, or QM1 answered by an Informational.
"""

from __future__ import annotations

from dissect.vpn import registry as reg
from dissect.vpn.registry import ExchangeType, NotifyV1, NotifyV2, PayloadV2
from pcapvpn.findings import declare, make, msg, when
from pcapvpn.rules import rule
from pcapvpn.rules.common import (
    endpoint_text, ike_facts, ike_filter, ike_tunnel_of, ip_text,
)


#: bytes an SA payload (one ESP proposal, SPI, 2-3 transforms) plus TSi and TSr (one IPv4 range
#: each) need at least: 4+8+4+3*8 = 40, 2 * (4+4+16) = 48  (RFC 7296 §3.3, §3.13)
MIN_CHILD_PAYLOADS = 88

declare("IKE_TS_UNACCEPTABLE", "child_sa", "error",
        "The peer refused the traffic selectors (TS_UNACCEPTABLE): the local/remote subnets "
        "configured on the two gateways do not match.",
        ["Make the subnets mirror each other exactly (local on one side = remote on the other), "
         "including protocol/port restrictions.",
         "strongSwan responder logs 'traffic selectors A === B unacceptable'; the initiator "
         "'received TS_UNACCEPTABLE notify, no CHILD_SA built'; libreswan 'responding with "
         "TS_UNACCEPTABLE'."])
declare("CHILD_SA_FAILED", "child_sa", "error",
        "The IKE SA is up but its child SA (the IPsec/ESP SA) was refused or never created.",
        ["Compare the child SA (phase 2) settings: ESP proposals/PFS group, and the traffic "
         "selectors (local and remote subnets) on both gateways.",
         when("strongSwan: the responder logs 'no acceptable proposal found' or 'traffic "
              "selectors A === B unacceptable'; the initiator 'received NO_PROPOSAL_CHOSEN "
              "notify, no CHILD_SA built' (or TS_UNACCEPTABLE) and 'failed to establish "
              "CHILD_SA, keeping IKE_SA'.", version=2, impl="strongSwan"),
         when("libreswan (initiator) logs 'IKE_AUTH response rejected Child SA with <NOTIFY>'.",
              version=2, impl="libreswan"),
         when("strongSwan: the Quick Mode responder logs 'no matching proposal found, sending "
              "NO_PROPOSAL_CHOSEN' (ESP proposal) or 'no matching CHILD_SA config found' (proxy "
              "IDs, answered with INVALID_ID_INFORMATION); the initiator 'received "
              "NO_PROPOSAL_CHOSEN error notify'.", version=1, impl="strongSwan"),
         when("libreswan (Quick Mode initiator) logs '... No acceptable response to our first "
              "Quick Mode message: perhaps peer likes no proposal' when it gives up.",
              version=1, impl="libreswan"),
         "With keys (--keys) pcapvpn names the exact notification."])


def _childless_supported(sa) -> bool:
    """Both IKE_SA_INIT messages carry CHILDLESS_IKEV2_SUPPORTED (RFC 6023 §3)."""
    sides = {m.is_response for m in sa.messages
             if m.exch == ExchangeType.IKE_SA_INIT and m.has_notify(NotifyV2.CHILDLESS_IKEV2_SUPPORTED)}
    return sides == {False, True}


def _sk_len(m) -> int:
    return m.sk_len if m.sk_len is not None else m.size


@rule
def child_failures(ctx):
    # per address pair, the last ESP packet of its SAs ("did ESP follow?" is one comparison),
    # and per direction (src, dst) (did the peer's ESP go on?)
    esp_last: dict = {}
    esp_from: dict = {}
    for e in ctx.state.esp_sas:
        k = frozenset((e.src, e.dst))
        last = esp_last.get(k)
        if last is None or e.last_ts > last:
            esp_last[k] = e.last_ts
        last = esp_from.get((e.src, e.dst))
        if last is None or e.last_ts > last:
            esp_from[(e.src, e.dst)] = e.last_ts
    for sa in ctx.state.ike_sas:
        t = ike_tunnel_of(ctx, sa)
        tid = t.id if t else None
        spis = [sa.ispi.hex(), sa.rspi.hex()]
        pair = frozenset((sa.initiator[1], sa.responder[1])) if sa.initiator else None
        esp = esp_last.get(pair)
        # cleartext TS_UNACCEPTABLE / phase-2 errors
        for m in sa.messages:
            if m.copy:
                continue
            for n in m.notifies:
                ntype, spi = n.notify_type, n.spi
                if ntype == NotifyV2.TS_UNACCEPTABLE and sa.version == 2:
                    yield make("IKE_TS_UNACCEPTABLE", f"{sa.id}|{m.n}",
                               title=msg("TS_UNACCEPTABLE from {peer}", peer=ip_text(m.src)),
                               detail=msg("{peer} refused the traffic selectors (in the clear).",
                                          peer=endpoint_text((m.ipver, m.src, m.sport))),
                               evidence=ctx.evidence(m.frames, m.ts, None, ike_spis=spis),
                               wireshark_filter=ike_filter(sa, msgids=[m.msgid]),
                               tunnel=tid)
                elif sa.version == 1 and spi and len(spi) == 4 and ntype in (
                        NotifyV1.NO_PROPOSAL_CHOSEN, NotifyV1.INVALID_ID_INFORMATION):
                    name = reg.notify_name(1, ntype)
                    yield make("CHILD_SA_FAILED", f"{sa.id}|{m.n}|{ntype}", facts=ike_facts(sa),
                               title=msg("Quick Mode refused by {peer}: {name}",
                                         peer=ip_text(m.src), name=name),
                               detail=msg("{peer} sent {name} for the IPsec SA (SPI {spi}) in the "
                                          "clear.", peer=endpoint_text((m.ipver, m.src, m.sport)),
                                          name=name, spi=spi.hex()),
                               evidence=ctx.evidence(m.frames, m.ts, None, ike_spis=spis,
                                                     esp_spis=[spi.hex()]),
                               wireshark_filter=ike_filter(sa, msgids=[m.msgid]),
                               tunnel=tid)
        if sa.version == 2:
            yield from _v2(ctx, sa, tid, spis, esp)
        else:
            yield from _v1(ctx, sa, tid, spis, esp_from)


def _v2(ctx, sa, tid, spis, esp):
    """``esp``: the last ESP packet's time between the SA's peers, or None."""
    for x in sa.exchanges:
        if x.exch == ExchangeType.IKE_AUTH:
            resp = [r for r in x.responses if not r.copy]
            req = [r for r in x.requests if not r.copy]
            if not resp or not req or resp[0].sk_next != PayloadV2.IDR:
                continue
            r = resp[0]
            q = req[0]
            r_len = _sk_len(r)
            q_len = _sk_len(q)
            if esp is not None and esp >= r.ts:  # an ESP SA of the pair was active after it
                continue
            # child refused: the response is smaller than the request by at least what SA, TSi
            # and TSr take (both carry ID + AUTH; the request also carries the child payloads)
            if q_len - r_len < MIN_CHILD_PAYLOADS:
                continue
            if _childless_supported(sa):
                # RFC 6023: both peers announced CHILDLESS_IKEV2_SUPPORTED; an IKE_AUTH response
                # without child payloads is then a childless IKE SA, not a refused child
                continue
            waited = ctx.now - r.ts
            caveat = "" if waited >= ctx.th.one_way_window else msg(
                " (the capture ends only {waited:.1f} s later: ESP might still have followed, "
                "but the size of the response already says the child payloads are missing)",
                waited=waited)
            later_child = any(y.exch == ExchangeType.CREATE_CHILD_SA for y in sa.exchanges[x.index + 1:])
            yield make(
                "CHILD_SA_FAILED", f"{sa.id}|{x.index}|ike-auth-no-child", facts=ike_facts(sa, x),
                title=msg("IKE SA up with {peer}, but its child SA was apparently refused",
                          peer=ip_text(r.src)),
                detail=msg("The IKE_AUTH response starts with IDr (the IKE SA is established) but "
                           "its encrypted payload is {r_len} bytes against {q_len} in the request "
                           "— too small to also hold SA, TSi and TSr — and no ESP follows in the "
                           "{waited:.1f} s until the capture ends", r_len=r_len, q_len=q_len,
                           waited=waited) + caveat
                       + (msg(" (a later CREATE_CHILD_SA was seen)") if later_child else "")
                       + msg(". Likely TS_UNACCEPTABLE, NO_PROPOSAL_CHOSEN or "
                             "INTERNAL_ADDRESS_FAILURE for the child; an idle child SA cannot be "
                             "excluded without keys."),
                basis="inferred",
                evidence=ctx.evidence(ctx.msg_refs(x.msgs), q.ts, r.ts, ike_spis=spis),
                wireshark_filter=ike_filter(sa, msgids=[x.msgid]),
                tunnel=tid)
        elif x.exch == ExchangeType.CREATE_CHILD_SA:
            later_ok = any(
                y.exch == ExchangeType.CREATE_CHILD_SA and any(r.sk_next == PayloadV2.SA for r in y.responses)
                for y in sa.exchanges[x.index + 1:])
            for r in x.responses:
                if r.copy or r.sk_next != PayloadV2.N:
                    continue
                yield make(
                    "CHILD_SA_FAILED", f"{sa.id}|{x.index}|ccsa-notify", facts=ike_facts(sa, x),
                    title=msg("CREATE_CHILD_SA refused by {peer}", peer=ip_text(r.src)),
                    detail=msg("The CREATE_CHILD_SA response (Message ID {msgid}) starts with a "
                               "Notify: the new or rekeyed child SA (or IKE SA rekey) was refused "
                               "(e.g. NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE, INVALID_KE_PAYLOAD, "
                               "TEMPORARY_FAILURE during a rekey collision). Needs keys to name "
                               "it.", msgid=x.msgid)
                           + (msg(" Later CREATE_CHILD_SA exchanges on this IKE SA succeeded "
                                  "(their responses start with SA).") if later_ok else ""),
                    basis="inferred", severity="warning" if later_ok else None,
                    evidence=ctx.evidence(ctx.msg_refs(x.msgs), x.msgs[0].ts, r.ts, ike_spis=spis),
                    wireshark_filter=ike_filter(sa, msgids=[x.msgid]),
                    tunnel=tid)
                break


def _qm_answer(ctx, sends, infos):
    """The Informational that answered QM1 (an error notification), or None: it comes from the
    peer within the response timeout of a copy of QM1 and QM1 is not sent again after it (an
    answer stops the retransmissions; DPD and other notifications in between do not)."""
    for i in infos:
        before = [m for m in sends if m.ts <= i.ts]
        if not before or i.ts - before[-1].ts > ctx.th.response_timeout:
            continue
        if any(m.ts > i.ts for m in sends):
            continue
        return i
    return None


#: an Informational that follows a copy of QM1 this quickly, before the next copy, answers it
QM_PROMPT = 2.0


def _qm_prompt_answers(sends, infos):
    """The peer's Informational messages that each followed a copy of QM1 within
    :data:`QM_PROMPT` seconds and before the next copy.  libreswan's initiator ignores a
    NO_PROPOSAL_CHOSEN that answers QM1 and sends QM1 again, so every copy gets its answer and
    the last word may be a copy of QM1 (DPD or other notifications come on their own timers,
    not after each copy)."""
    out = []
    for k, s in enumerate(sends):
        nxt = sends[k + 1].ts if k + 1 < len(sends) else float("inf")
        a = next((i for i in infos if s.ts <= i.ts < nxt and i.ts - s.ts <= QM_PROMPT), None)
        if a is not None:
            out.append(a)
    return out


#: the responder's QM2 sent again this many times after the initiator's QM3: a loop, not a
#: re-send that crossed QM3 on the way
QM2_AFTER_QM3 = 2


def _qm3_lost(ctx, sa, x, tid, spis):
    """The Quick Mode responder keeps sending QM2 after the initiator sent QM3 (RFC 2409 §5.5:
    QM3 completes the exchange on the responder; it re-sends QM2 only while it waits for QM3):
    QM3 did not reach it or was not accepted, and the child SA is not up on the responder.
    Told by the order of the frames, so it holds when the timestamps cannot be used (a
    vendor-review capture with every timestamp zero)."""
    qm3 = [m for m in x.msgs if m.step == 3]
    if not qm3:
        return
    first3 = min(qm3, key=lambda m: m.n)
    again = [m for m in x.msgs if m.step == 2 and m.copy and m.n > first3.n]
    if len(again) < QM2_AFTER_QM3:
        return
    qm2 = min((m for m in x.msgs if m.step == 2), key=lambda m: m.n)
    resp = endpoint_text((qm2.ipver, qm2.src, qm2.sport))
    label = f"Quick Mode (Message ID 0x{x.msgid:08x})"
    resent3 = sum(1 for m in qm3 if m.copy)
    detail = msg("{responder} sent QM2 again {n} time(s) after {initiator} had sent QM3 (the "
                 "initiator answered with QM3 {k} more time(s)): QM3 does not reach the "
                 "responder, or it cannot read it, so the responder never completes the "
                 "exchange and its side of the child SA is not installed (RFC 2409 §5.5).",
                 responder=resp, n=len(again),
                 initiator=endpoint_text((first3.ipver, first3.src, first3.sport)), k=resent3)
    yield make(
        "CHILD_SA_FAILED", f"{sa.id}|{x.index}|qm3", facts=ike_facts(sa, x),
        title=msg("{label} failed: the responder repeats QM2 after QM3", label=label),
        detail=detail,
        evidence=ctx.evidence(ctx.msg_refs(sorted([first3] + again, key=lambda m: m.n)),
                              first3.ts, again[-1].ts, ike_spis=spis),
        wireshark_filter=ike_filter(sa, msgids=[x.msgid]),
        tunnel=tid)


def _peer_gone(sa, x, qm1, esp_from) -> bool:
    """A Quick Mode after one the peer answered (a phase-2 rekey), and from its first QM1 on
    the peer said nothing: no IKE message and no ESP to the sender.  The peer went away (crash,
    reboot, path down), not the child SA's proposal: reachability's IKE_NO_RESPONSE at
    stability tells it, as for an IKEv2 CREATE_CHILD_SA (rules/reachability.py)."""
    if not any(y.exch == ExchangeType.QUICK_MODE and y.index < x.index
               and any(m.src != qm1.src and m.step == 2 for m in y.msgs)
               for y in sa.exchanges):
        return False
    if any(m.src != qm1.src and m.ts >= qm1.ts for m in sa.messages):
        return False
    esp = esp_from.get((qm1.dst, qm1.src))
    return esp is None or esp < qm1.ts


def _v1(ctx, sa, tid, spis, esp_from):
    phase1 = next((reg.exchange_name(x.exch, short=True) for x in sa.exchanges
                   if x.exch in (ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE)), None)
    p1 = msg("Phase 1 ({mode}) is up", mode='Aggressive Mode' if phase1 == 'Aggressive'
             else phase1) if phase1 else msg("Phase 1 is up")
    for x in sa.exchanges:
        if x.exch == ExchangeType.QUICK_MODE and x.last_step >= 3:
            yield from _qm3_lost(ctx, sa, x, tid, spis)
            continue
        if x.exch != ExchangeType.QUICK_MODE or x.last_step >= 2:
            continue
        qm1 = [m for m in x.msgs if m.step == 1]
        if not qm1:
            continue
        sender = endpoint_text((qm1[0].ipver, qm1[0].src, qm1[0].sport))
        sends = [m for m in qm1 if m.duplicate_of is None]
        retrans = len(sends) - 1
        infos = [m for m in sa.messages if m.exch == ExchangeType.INFORMATIONAL_V1 and m.ts >= qm1[0].ts
                 and m.src != qm1[0].src and not m.copy]
        answer = _qm_answer(ctx, sends, infos)
        prompt = _qm_prompt_answers(sends, infos)
        if len(prompt) >= 2 and len(prompt) >= len(sends) - 1:
            answer = prompt[0]
        label = f"Quick Mode (Message ID 0x{x.msgid:08x})"
        if answer is not None:
            title = msg("{label} failed: QM1 answered by an Informational message instead of "
                        "QM2", label=label)
            copy = [m for m in sends if m.ts <= answer.ts][-1]
            detail = (msg("QM1 from {sender} was answered {after:.3f} s later by an Informational "
                          "message from {peer} instead of QM2", sender=sender,
                          after=answer.ts - copy.ts, peer=ip_text(answer.src))
                      + (msg(" (encrypted: likely NO-PROPOSAL-CHOSEN or INVALID-ID-INFORMATION)")
                         if answer.encrypted else "")
                      + msg(". {p1}; the phase-2 proposal (ESP transforms, PFS group) or the "
                            "proxy IDs (local/remote subnets) do not match.", p1=p1))
            if len(prompt) >= 2:
                detail += msg(" The peer answered {n} of the {copies} copies of QM1 the same "
                              "way; the initiator ignored the answers and sent QM1 again "
                              "(libreswan ignores a Quick Mode error notification and "
                              "retransmits until it gives up).", n=len(prompt),
                              copies=len(sends))
            answers = prompt if len(prompt) >= 2 else [answer]
            refs = ctx.msg_refs(sorted(qm1 + answers, key=lambda m: m.ts))
            ids = sorted({x.msgid} | {a.msgid for a in answers})
        elif _peer_gone(sa, x, qm1[0], esp_from):
            continue  # a rekey to a peer that went away: IKE_NO_RESPONSE at stability says it
        elif retrans > 0 or ctx.now - sends[-1].ts >= ctx.th.response_timeout:
            title = msg("{label} failed: QM1 never answered (sent {n} time(s))", label=label,
                        n=len(sends))
            detail = msg("QM1 from {sender} was sent {n} time(s) ({retrans} retransmission(s)) "
                         "and never answered (the capture ends {after:.1f} s after the last "
                         "copy)", sender=sender, n=len(sends), retrans=retrans,
                         after=ctx.now - sends[-1].ts)
            if infos:
                detail += msg("; the {n} Informational message(s) the peer sent meanwhile did "
                              "not answer it (QM1 was sent again after them, or they came later "
                              "than the response timeout: DPD or notifications)", n=len(infos))
            detail += msg(". {p1}; the responder drops QM1 without a word (some implementations "
                          "do so when the phase-2 proposal or the proxy IDs (local/remote "
                          "subnets) do not match), or QM1 and its answers are lost on the path.",
                          p1=p1)
            refs = ctx.msg_refs(qm1)
            ids = [x.msgid]
        else:
            continue  # one copy, the capture ends before an answer was due
        yield make(
            "CHILD_SA_FAILED", f"{sa.id}|{x.index}|qm", facts=ike_facts(sa, x),
            title=title, detail=detail, basis="inferred",
            evidence=ctx.evidence(refs, qm1[0].ts, None, ike_spis=spis),
            wireshark_filter=ike_filter(sa, msgids=ids),
            tunnel=tid)
