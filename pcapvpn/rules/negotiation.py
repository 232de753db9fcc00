"""Negotiation: do the crypto proposals match?  Plus the posture findings about IKE crypto."""

from __future__ import annotations

import bisect
import heapq

from dissect.vpn import registry as reg
from dissect.vpn.registry import ExchangeType, IkeAttrV1, NotifyV1, NotifyV2, PayloadV2
from pcapvpn.findings import Term, declare, make, msg, msg_join, when
from pcapvpn.rules import rule
from pcapvpn.rules.incremental import ike_unit_fp, per_sa
from pcapvpn.rules.common import (
    UNANSWERED, MaxTree, answers_mm5, backoff, deleted_ts, endpoint_text, exchange_status,
    ike_facts, ike_filter,
    ike_tunnel_of, implementation_hint, ip_text, proposal_texts, set_filter, weak_transforms,
)
from pcapvpn.track.ike_sa import V1_STEPS

#: error notifies with a code of their own (handled by their stage's rules)
OWN_CODE = {
    2: {NotifyV2.NO_PROPOSAL_CHOSEN, NotifyV2.INVALID_KE_PAYLOAD, NotifyV2.INVALID_MAJOR_VERSION,
        NotifyV2.AUTHENTICATION_FAILED, NotifyV2.TS_UNACCEPTABLE, NotifyV2.INVALID_SPI},
    # INVALID_HASH_INFORMATION / INVALID_SIGNATURE: IKE_AUTH_FAILED (rules/authentication.py)
    1: {NotifyV1.NO_PROPOSAL_CHOSEN, NotifyV1.INVALID_MAJOR_VERSION, NotifyV1.AUTHENTICATION_FAILED,
        NotifyV1.INVALID_ID_INFORMATION, NotifyV1.INVALID_SPI, NotifyV1.INVALID_HASH_INFORMATION,
        NotifyV1.INVALID_SIGNATURE},
}

declare("IKE_NO_PROPOSAL_CHOSEN", "negotiation", "error",
        "The peer found no acceptable proposal among those offered (NO_PROPOSAL_CHOSEN): the "
        "encryption, integrity, PRF or DH group configured on the two gateways do not overlap.",
        [when("Compare the proposals listed in the detail with the responder's configuration and "
              "make one of them match exactly (strongSwan 'proposals =', Cisco 'crypto ikev2 "
              "proposal', FortiGate phase1-interface 'set proposal', PAN-OS IKE Crypto profile).",
              version=2),
         when("Compare the proposals listed in the detail with the responder's configuration and "
              "make one of them match exactly (strongSwan 'proposals =', Cisco 'crypto isakmp "
              "policy', FortiGate phase1-interface 'set proposal', PAN-OS IKE Crypto profile).",
              version=1),
         when("strongSwan: the responder logs 'received proposals unacceptable'; the initiator "
              "'received NO_PROPOSAL_CHOSEN notify error'.", version=2, impl="strongSwan"),
         when("strongSwan: the responder logs 'no proposal found'; the initiator 'received "
              "NO_PROPOSAL_CHOSEN error notify'.", version=1, impl="strongSwan")])
declare("IKE_INVALID_KE", "negotiation", "warning",
        "The responder rejected the initiator's key exchange (DH) group with INVALID_KE_PAYLOAD "
        "and asked for another; the initiator must retry with the requested group.",
        ["Put the requested group first in the initiator's proposal to save a round trip.",
         "strongSwan logs 'peer didn't accept key exchange method X, it requested Y'; libreswan "
         "'initiator guessed wrong keying material group'."])
declare("IKE_VERSION_MISMATCH", "negotiation", "error",
        "The peer refused the IKE version (INVALID_MAJOR_VERSION): one side speaks only IKEv1, "
        "the other only IKEv2.",
        ["Configure the same IKE version on both gateways (strongSwan 'version = 1|2', Cisco "
         "'crypto ikev1' vs 'crypto ikev2' maps, FortiGate 'set ike-version')."])
declare("IKE_ERROR_NOTIFY", "negotiation", "error",
        "The peer answered with an IKE error notification (named in the title).",
        [when("Look the notification up in RFC 7296 §3.10.1 and check the peer's log at that "
              "time (strongSwan: 'received <NAME> notify error').", version=2),
         when("Look the notification up in RFC 2408 §3.14.1 and check the peer's log at that "
              "time (strongSwan: 'received <NAME> error notify').", version=1)])
declare("IKE_RETRANSMISSION", "negotiation", "warning",
        "An IKE exchange was answered only after retransmissions: packets are being lost or the "
        "responder is slow.",
        ["Look for loss on the path (the retransmitted message or the lost answer), rate limits or "
         "an overloaded responder.",
         when("strongSwan logs 'retransmit N of request with message ID {msgid}'; the responder "
              "'received retransmit of request with ID {msgid}, retransmitting response'.",
              version=2, impl="strongSwan"),
         when("strongSwan logs 'sending retransmit N of request message ID {msgid}, seq N' (a "
              "responder re-sending its answer: '... of response message ID ...').",
              version=1, impl="strongSwan"),
         when("libreswan logs '<STATE>: retransmission; will wait N seconds for response'.",
              impl="libreswan")])
declare("IKE_COOKIE", "negotiation", "info",
        "The responder demanded a COOKIE (RFC 7296 §2.6): its DoS protection is active (many "
        "half-open IKE SAs, or a low cookie threshold).",
        ["Normal under load; if it persists, check for a flood of IKE_SA_INIT requests or the "
         "responder's threshold (strongSwan charon.cookie_threshold)."], failure=False)
declare("IKE_WEAK_CRYPTO", "negotiation", "warning",
        "Weak algorithms were offered or chosen (e.g. DES/3DES, MD5/SHA-1, MODP 768/1024/1536).",
        ["Move both gateways to current algorithms (e.g. aes256gcm16-prfsha384-ecp384 or "
         "aes256-sha256-modp2048 as a minimum)."], posture=True)
declare("IKE_AGGRESSIVE_MODE_PSK", "negotiation", "warning",
        "IKEv1 Aggressive Mode with a pre-shared key: the responder's hash is sent in the clear "
        "and can be cracked offline (ike-scan/psk-crack).",
        ["Use Main Mode or IKEv2; if Aggressive Mode is required, use certificates or a long random "
         "PSK."], posture=True)
declare("IKE_REDIRECT", "negotiation", "warning",
        "The gateway answered IKE_SA_INIT with REDIRECT (RFC 5685): it sent the client to another "
        "gateway (load balancing or maintenance). The tunnel then ends as the redirected "
        "connection does: failing there makes this an error, working there information.",
        ["Check that the client can reach the gateway named in the redirect (and that it is "
         "configured to follow redirects); capture towards that gateway next."])
declare("IKE_SIMULTANEOUS_INIT", "negotiation", "warning",
        "Both gateways initiated an IKE SA to each other while the other's initiation was still "
        "pending (not yet answered, or retransmitted unanswered), and both were answered: two IKE "
        "SAs between the same gateways where one is needed. The detail says which one survived "
        "(the other is deleted, or lingers as a duplicate).",
        ["Let one side initiate only (strongSwan auto=start on one side, auto=route / trap or "
         "passive on the other).",
         "If one side's IKE_SA_INIT waited long for its answer (retransmitted), find out why the "
         "responder ignored it at first (load, a firewall or rate limit dropping the first "
         "packets, the responder's own initiation in progress)."])


def _cleartext_errors(sa):
    for m in sa.messages:
        if m.copy:
            continue
        for n in m.notifies:
            if n.is_error:
                yield m, n


def _offered_and_chosen(sa, exch_types):
    offered = None
    chosen = None
    for m in sa.messages:
        if m.exch not in exch_types or m.proposals is None:
            continue
        if m.is_response:
            chosen = chosen or m
        else:
            offered = offered or m
    return offered, chosen


def _answers_mm5(sa, m) -> bool:
    """An IKEv1 Informational from the peer after the initiator's MM5 of a Main Mode that never
    reached MM6: the responder could not read MM5 (a PSK mismatch makes it decrypt garbage, so
    PAYLOAD_MALFORMED or INVALID_PAYLOAD_TYPE is what it says).  IKE_AUTH_FAILED (inferred,
    rules/authentication.py) reports it, naming the notification."""
    if sa.version != 1 or m.exch != ExchangeType.INFORMATIONAL_V1:
        return False
    for x in sa.exchanges:
        if x.exch != ExchangeType.MAIN_MODE or x.last_step >= 6:
            continue
        mm5 = next((k for k in x.msgs if k.step == 5), None)
        if mm5 is not None and answers_mm5(m, mm5):
            return True
    return False


@rule
def error_notifies(ctx):
    for sa in ctx.state.ike_sas:
        t = ike_tunnel_of(ctx, sa)
        for m, n in _cleartext_errors(sa):
            ntype, spi = n.notify_type, n.spi
            name = reg.notify_name(sa.version, ntype)
            sender = endpoint_text((m.ipver, m.src, m.sport))
            receiver = endpoint_text((m.ipver, m.dst, m.dport))
            ev = ctx.evidence(m.frames, m.ts, None, ike_spis=[sa.ispi.hex(), sa.rspi.hex()],
                              peers=[sender, receiver])
            flt = ike_filter(sa, msgids=[m.msgid]) + f" && isakmp.notify.msgtype == {ntype}"
            tid = t.id if t else None
            key = f"{sa.id}|{m.n}|{ntype}"
            facts = ike_facts(sa)
            notify = reg.notify_types(sa.version)
            phase2 = sa.version == 1 and spi and len(spi) == 4
            if ntype == notify.NO_PROPOSAL_CHOSEN and not phase2:
                offered, chosen = _offered_and_chosen(
                    sa, {ExchangeType.IKE_SA_INIT} if sa.version == 2 else {ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE})
                lines = proposal_texts(sa.version, offered.proposals) if offered else []
                detail = msg("{sender} sent {name} to {receiver} in {exchange}.", sender=sender,
                             name=name, receiver=receiver,
                             exchange=reg.exchange_name(m.exch, short=True))
                if lines:
                    detail += msg(" Offered by {peer}: {proposals}.", peer=endpoint_text(
                        (offered.ipver, offered.src, offered.sport)), proposals="; ".join(lines))
                if chosen is not None:
                    detail += msg(" Chosen: {proposals}.", proposals="; ".join(
                        proposal_texts(sa.version, chosen.proposals)))
                if sa.version == 1 and offered is not None and m.src == offered.src:
                    detail += msg(" The initiator itself rejected the responder's choice "
                                  "(it did not accept the proposal the responder picked).")
                # a later success makes it a recovered failure: the verdict says so
                yield make("IKE_NO_PROPOSAL_CHOSEN", key,
                           title=msg("{name} from {peer}", name=name, peer=ip_text(m.src)),
                           detail=detail, evidence=ev, wireshark_filter=flt, tunnel=tid,
                           facts=facts)
            elif ntype == NotifyV2.INVALID_KE_PAYLOAD and sa.version == 2:
                group = n.invalid_ke_group
                offered, _ = _offered_and_chosen(sa, {ExchangeType.IKE_SA_INIT})
                gname = reg.group_name(group) if group is not None else "?"
                sent = reg.group_name(offered.ke_group) if offered and offered.ke_group else "?"
                retry_ok = _recovered_after(ctx, sa, m)
                # RFC 7296 §1.2: the initiator retries at once with the requested group; a
                # capture that ends before a retry was due cannot tell (not visible)
                too_soon = not retry_ok and ctx.now - m.ts < ctx.th.response_timeout
                detail = msg("{sender} rejected key exchange group {sent} and requested {wanted} "
                             "(INVALID_KE_PAYLOAD).", sender=sender, sent=sent, wanted=gname)
                if retry_ok:
                    detail += msg(" The initiator retried with the requested group and the "
                                  "exchange completed.")
                elif too_soon:
                    detail += msg(" The capture ends {after:.1f} s after it, before a retry could "
                                  "be judged (not visible): the initiator normally retries at "
                                  "once with the requested group.", after=ctx.now - m.ts)
                else:
                    detail += msg(" No successful retry with the requested group was seen.")
                yield make("IKE_INVALID_KE", key,
                           title=msg("Responder asked for DH group {wanted} instead of {sent}",
                                     wanted=gname, sent=sent),
                           detail=detail, evidence=ev, wireshark_filter=flt, tunnel=tid,
                           severity="info" if retry_ok or too_soon else "error")
            elif ntype == notify.INVALID_MAJOR_VERSION:
                yield make("IKE_VERSION_MISMATCH", key,
                           title=msg("{peer} refused IKEv{version} ({name})", peer=ip_text(m.src),
                                     version=sa.version, name=name),
                           detail=msg("{sender} answered {name}: it does not speak IKEv{version}.",
                                      sender=sender, name=name, version=sa.version),
                           evidence=ev, wireshark_filter=flt, tunnel=tid)
            elif ntype not in OWN_CODE.get(sa.version, ()) and not _answers_mm5(sa, m):
                yield make("IKE_ERROR_NOTIFY", key,
                           title=msg("{name} from {peer}", name=name, peer=ip_text(m.src)),
                           detail=msg("{sender} sent the error notification {name} ({ntype}) to "
                                      "{receiver} in {exchange}", sender=sender, name=name,
                                      ntype=ntype, receiver=receiver,
                                      exchange=reg.exchange_name(m.exch, short=True))
                                  + (msg(" (response)") if m.is_response else "") + ".",
                           evidence=ev, wireshark_filter=flt, tunnel=tid,
                           severity="info" if sa.established else None, facts=facts)


def _retrans_label(x, retrans) -> str:
    from pcapvpn.track.ike_sa import V1_STEP_PREFIX

    name = reg.exchange_name(x.exch, short=True)
    if x.version == 2:
        return f"{name} (Message ID {x.msgid})"
    prefix = V1_STEP_PREFIX.get(x.exch, "")
    steps = sorted({m.step for m in retrans if isinstance(m.step, int)})
    mid = f" (Message ID 0x{x.msgid:08x})" if x.msgid else ""
    return f"{name} " + "/".join(f"{prefix}{s}" for s in steps) + mid


#: a retry after INVALID_KE / COOKIE comes at once (RFC 7296 §1.2, §2.6); an IKE_SA_INIT between
#: the same addresses this soon after the notification is the retry even when the initiator
#: picked a new SPI and the tracker could not link it
RETRY_WINDOW = 30.0


def _answered_inits(ctx, key, same):
    """For the IKE SAs ``same`` between one address pair (capture order): their start times,
    the time of each one's last IKE_SA_INIT answer without error or COOKIE (-inf: none) in a
    range-maximum tree, and each one's position (cached per evaluation)."""
    cache = ctx.memo("answered_inits", dict)
    got = cache.get(key)
    if got is None:
        starts = [o.first_ts or 0.0 for o in same]
        good = []
        for o in same:
            ts = [r.ts for x in o.exchanges if x.exch == ExchangeType.IKE_SA_INIT for r in x.responses
                  if not r.error_notifies() and not r.has_notify(NotifyV2.COOKIE)]
            good.append(max(ts) if ts else float("-inf"))
        got = cache[key] = (starts, MaxTree(good), {id(o): i for i, o in enumerate(same)})
    return got


def _recovered_after(ctx, sa, notify_msg) -> bool:
    """After an INVALID_KE / COOKIE response: an IKE_SA_INIT exchange later in the same SA, or in
    an SA between the same two addresses started within ``RETRY_WINDOW`` seconds (its retry SA,
    linked or not), answered without an error.  The SAs started in that window are asked with
    one range maximum (a flood of COOKIE answers asks this once each)."""
    for x in sa.exchanges:
        if x.exch != ExchangeType.IKE_SA_INIT:
            continue
        for r in x.responses:
            if r.ts > notify_msg.ts and not r.error_notifies() and not r.has_notify(NotifyV2.COOKIE):
                return True
    if not (sa.initiator and sa.responder):
        return False
    key = (sa.version, sa.initiator[1], sa.responder[1])
    same = ctx.ike_by_peers.get(key, ())
    starts, latest, pos = _answered_inits(ctx, key, same)
    t = notify_msg.ts
    lo = bisect.bisect_left(starts, t)
    hi = bisect.bisect_right(range(len(starts)), RETRY_WINDOW, lo=lo,
                             key=lambda i: starts[i] - t)
    me = pos.get(id(sa), -1)
    if lo <= me < hi:
        best = max(latest.max(lo, me), latest.max(me + 1, hi))
    else:
        best = latest.max(lo, hi)
    return best > t


def _each_copy_answered(x):
    """IKEv2: every request of ``x`` (capture duplicates aside) was followed by a response
    before the next one: the longest wait in seconds; None when one was not."""
    if x.version != 2:
        return None
    waiting = None
    longest = 0.0
    for m in x.msgs:
        if m.is_response:
            if waiting is not None:
                longest = max(longest, m.ts - waiting)
                waiting = None
        elif m.duplicate_of is None:
            if waiting is not None:
                return None
            waiting = m.ts
    return longest if waiting is None else None


@rule
def retransmissions(ctx):
    for sa in ctx.state.ike_sas:
        t = ike_tunnel_of(ctx, sa)
        # each SA's findings read that SA alone: live keeps them per SA (per_sa)
        yield from per_sa(ctx, sa, (ike_unit_fp(sa), t.id if t else None),
                          lambda sa=sa, t=t: _retransmissions(ctx, sa, t))


def _retransmissions(ctx, sa, t):
    """IKE_RETRANSMISSION findings of the IKE SA ``sa`` (of tunnel ``t``)."""
    for x in sa.exchanges:
        if exchange_status(ctx, x) == UNANSWERED:
            continue
        if x.version == 1 and x.last_step < V1_STEPS.get(x.exch, 0):
            continue  # stalled: the stall's own finding tells (with the re-sends)
        if x.version == 2 and not x.answered:
            continue
        retrans = x.retransmissions()
        if not retrans:
            continue
        by_sender = {}
        for m in x.msgs:
            if m.duplicate_of is None:
                by_sender.setdefault((m.src, m.step), []).append(m)
        parts = []
        refs = []
        for (src, step), msgs in by_sender.items():
            if len(msgs) < 2:
                continue
            iv = backoff(msgs)
            hint = implementation_hint(iv)
            who = ip_text(src)
            what = msg("its response") if msgs[0].is_response else msg("its request")
            if sa.version == 1 and isinstance(step, int):
                from pcapvpn.track.ike_sa import V1_STEP_PREFIX
                what = f"{V1_STEP_PREFIX.get(x.exch, 'message ')}{step}"
                if step % 2 == 0:
                    what += msg(" (the next message from its peer did not come in time)")
            parts.append(msg("{who} sent {what} {n} times (intervals {intervals} s", who=who,
                             what=what, n=len(msgs),
                             intervals=', '.join(f'{i:g}' for i in iv))
                         + (msg("; {hint}", hint=Term(hint)) if hint else "") + ")")
            refs.extend(ctx.msg_refs(msgs))
        if not parts:
            continue
        reqs = [m for m in x.msgs if not m.is_response]
        resps = [m for m in x.msgs if m.is_response]
        tta = ""
        if x.version == 2 and reqs and resps:
            tta = msg(" Answered {after:.2f} s after the first request.",
                      after=resps[0].ts - reqs[0].ts)
        label = _retrans_label(x, retrans)
        lost_response = x.version == 2 and any(m.is_response for m in retrans)
        # an exchange answered only after retransmissions is a degradation (the verdict
        # contract): the setup waited for a timer
        sev = "warning"
        why = (msg(" The responder re-sent its response: the first response (or the "
                   "retransmitted request) was lost.") if lost_response else "")
        each = _each_copy_answered(x)
        if each is not None:
            # nothing was lost and nothing waited for a timer: the initiator asked again
            # although it had its answer
            sev = "info"
            why = msg(" Every copy of the request was answered (within {ms:.1f} ms): "
                      "nothing was lost; the initiator re-sent a request it had an answer to.",
                      ms=each * 1000)
            errs = sorted({reg.notify_name(2, t) for r in x.responses
                           for t in r.error_notifies()})
            if errs and x.exch == ExchangeType.IKE_SA_INIT:
                why += msg(" The answers carry the unprotected error {errors}, which need not "
                           "end the exchange for the initiator (RFC 7296 §2.21.1: errors "
                           "before the IKE SA is protected); libreswan logs 'ignoring "
                           "IKE_SA_INIT response containing {first} notification' and "
                           "retransmits until it gives up.", errors=', '.join(errs),
                           first=errs[0])
        yield make(
            "IKE_RETRANSMISSION", f"{sa.id}|{x.index}",
            title=msg("{label}: {n} retransmission(s) before the exchange went on",
                      label=label, n=len(retrans)),
            facts=ike_facts(sa, x),
            detail=msg_join("; ", parts) + "." + tta + why,
            evidence=ctx.evidence(refs, x.msgs[0].ts, x.msgs[-1].ts,
                                  ike_spis=[sa.ispi.hex(), sa.rspi.hex()]),
            wireshark_filter=ike_filter(sa, msgids=[x.msgid]),
            severity=sev,
            tunnel=t.id if t else None)


@rule
def cookies(ctx):
    for sa in ctx.state.ike_sas:
        if sa.version != 2:
            continue
        for m in sa.messages:
            if m.exch == ExchangeType.IKE_SA_INIT and m.is_response and m.has_notify(NotifyV2.COOKIE) and not m.copy:
                t = ike_tunnel_of(ctx, sa)
                ok = _recovered_after(ctx, sa, m)
                yield make(
                    "IKE_COOKIE", f"{sa.id}|{m.n}",
                    title=msg("{peer} demanded a COOKIE", peer=ip_text(m.src))
                          + (msg(" (initiator retried and succeeded)") if ok else ""),
                    detail=msg("IKE_SA_INIT response from {peer} carried only a COOKIE "
                               "notification ({n} bytes of cookie data).",
                               peer=endpoint_text((m.ipver, m.src, m.sport)),
                               n=len(m.notify_data(NotifyV2.COOKIE) or b''))
                           + (msg(" The initiator repeated its request with the cookie and was "
                                  "answered.") if ok
                              else msg(" No answered retry with the cookie was seen.")),
                    evidence=ctx.evidence(m.frames, m.ts, None, ike_spis=[sa.ispi.hex()]),
                    wireshark_filter=ike_filter(sa, msgids=[0]) + f" && isakmp.notify.msgtype == {NotifyV2.COOKIE}",
                    tunnel=t.id if t else None)


#: how long after a redirect to an FQDN the client's next IKE SA with another gateway is taken as
#: the redirected negotiation (no address to match, no REDIRECTED_FROM)
REDIRECT_FOLLOW = 60.0


def _redirect_notifies(m, ntype):
    """The gateways (:class:`dissect.vpn.ike.v2.Redirect`) of the REDIRECT / REDIRECTED_FROM
    notifies of a message."""
    return [n.redirect for n in m.notifies if n.notify_type == ntype and n.redirect is not None]


def _gw_text(gw) -> str:
    if gw.address is not None:
        return ip_text(gw.address)
    if gw.fqdn is not None:
        return gw.fqdn
    return msg("gateway identity type {type}", type=gw.gw_type)


def _ikev2_by_initiator(ike_sas) -> dict:
    """Initiator address -> (first times, IKEv2 SAs) in time order: the SAs a client started,
    looked up by bisection (a flood of redirects costs one index, not a scan per redirect)."""
    by = {}
    for o in ike_sas:
        if o.version == 2 and o.initiator and o.responder and o.first_ts is not None:
            by.setdefault(o.initiator[1], []).append(o)
    out = {}
    for addr, sas in by.items():
        sas.sort(key=lambda o: o.first_ts)
        out[addr] = ([o.first_ts for o in sas], sas)
    return out


def _redirected_sa(ctx, sa, m, target_addr, fqdn):
    """The IKE SA the client started after the redirect ``m`` towards the new gateway: by the
    new gateway's address, by REDIRECTED_FROM naming the gateway that redirected, and (redirect
    to an FQDN) by time.  Returns (IKE SA, how it was matched) or (None, None)."""
    client, gw = m.dst, m.src
    starts, sas = ctx.memo("ikev2_by_initiator",
                           lambda: _ikev2_by_initiator(ctx.state.ike_sas)).get(client, ((), ()))
    later = [o for o in sas[bisect.bisect_left(starts, m.ts):] if o is not sa]
    for o in later:
        first = o.messages[0]
        came_from = [gw.address for gw in _redirect_notifies(first, NotifyV2.REDIRECTED_FROM)
                     if gw.address is not None]
        if target_addr is not None and o.responder[1] == target_addr:
            how = msg("the redirect's address")
            if gw in came_from:
                how += msg(" and REDIRECTED_FROM {gw}", gw=ip_text(gw))
            return o, how
        if gw in came_from:
            return o, msg("REDIRECTED_FROM {gw} in its IKE_SA_INIT", gw=ip_text(gw))
    if fqdn:
        for o in later:
            if o.responder[1] != gw and o.first_ts - m.ts <= REDIRECT_FOLLOW:
                return o, msg("time (the client's next IKE SA, {after:.1f} s later)",
                              after=o.first_ts - m.ts)
    return None, None


@rule
def redirects(ctx):
    """REDIRECT (RFC 5685) in a cleartext IKE_SA_INIT response, linked to the negotiation the
    client then started with the new gateway, and whether that one succeeded."""
    for sa in ctx.state.ike_sas:
        if sa.version != 2:
            continue
        for m in sa.messages:
            if m.copy or not m.is_response or not m.has_notify(NotifyV2.REDIRECT):
                continue
            gws = _redirect_notifies(m, NotifyV2.REDIRECT)
            target, target_addr, fqdn = "?", None, False
            if gws:
                target = _gw_text(gws[0])
                target_addr = gws[0].address
                fqdn = gws[0].fqdn is not None
            new, how = _redirected_sa(ctx, sa, m, target_addr, fqdn)
            t = ike_tunnel_of(ctx, sa)
            detail = msg("The IKE_SA_INIT response from {gw} carries REDIRECT to {target} (RFC "
                         "5685): the gateway sent the client {client} elsewhere.",
                         gw=endpoint_text((m.ipver, m.src, m.sport)), target=target,
                         client=ip_text(m.dst))
            refs = list(m.frames)
            ok = False
            nt = None
            if new is not None:
                ok = new.established
                nt = ike_tunnel_of(ctx, new)
                detail += (msg(" The client started IKE with {gw} at +{t} s ({after:.2f} s later; "
                               "IKE SA {sa}, matched by {how})", gw=ip_text(new.responder[1]),
                               t=ctx.rel(new.first_ts), after=new.first_ts - m.ts, sa=new.id,
                               how=how)
                           + (msg(", tunnel {tunnel}", tunnel=nt.id)
                              if nt is not None and (t is None or nt is not t) else "") + ": ")
                detail += (msg("that negotiation succeeded (IKE SA established).") if ok else
                           msg("that negotiation did not complete (no IKE SA established: see "
                               "that tunnel's findings)."))
                refs += list(new.messages[0].frames)
            else:
                detail += msg(" No IKE_SA_INIT from the client to {target} (nor one carrying "
                              "REDIRECTED_FROM {gw}) follows in the capture, which ends "
                              "{after:.1f} s after the redirect.", target=target,
                              gw=ip_text(m.src), after=ctx.now - m.ts)
            flt = ike_filter(sa, msgids=[m.msgid]) + f" && isakmp.notify.msgtype == {NotifyV2.REDIRECT}"
            if new is not None:
                flt = f"({flt}) || ({ike_filter(new, msgids=[0])})"
            f = make(
                "IKE_REDIRECT", f"{sa.id}|{m.n}|redirect",
                title=msg("{gw} redirected the client to {target}", gw=ip_text(m.src),
                          target=target)
                      + (msg(" (the new negotiation succeeded)") if ok else
                         msg(" (the new negotiation failed)") if new is not None else ""),
                detail=detail,
                evidence=ctx.evidence(refs, m.ts, new.first_ts if new is not None else None,
                                      ike_spis=[sa.ispi.hex()]
                                      + ([new.ispi.hex()] if new is not None else [])),
                wireshark_filter=flt,
                severity="info" if ok else None,
                tunnel=t.id if t else None)
            # for the verdict: the redirected attempt's tunnel (None: not followed in the
            # capture, or the same tunnel) decides how the redirecting one ended
            f.redirect = {"followed": new is not None,
                          "target": nt.id if nt is not None and nt is not t else None,
                          "ts": m.ts}
            yield f


@rule
def weak_crypto(ctx):
    for sa in ctx.state.ike_sas:
        exch = {ExchangeType.IKE_SA_INIT} if sa.version == 2 else {ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE}
        offered, chosen = _offered_and_chosen(sa, exch)
        src = chosen or offered
        if src is None:
            continue
        weak = weak_transforms(sa.version, src.proposals)
        if not weak:
            continue
        t = ike_tunnel_of(ctx, sa)
        which = msg("chosen") if chosen is not None else msg("offered (no response seen)")
        yield make(
            "IKE_WEAK_CRYPTO", f"{sa.id}|weak",
            title=msg("Weak IKE crypto {which}: {names}", which=which,
                      names=", ".join(sorted({w[0] for w in weak}))),
            detail=msg_join("; ", [msg("{name}: {why}", name=name, why=Term(why))
                                   for name, why in weak])
                   + msg(" ({which} by {peer}).", which=which,
                         peer=endpoint_text((src.ipver, src.src, src.sport))),
            evidence=ctx.evidence(src.frames, src.ts, None, ike_spis=[sa.ispi.hex()]),
            wireshark_filter=ike_filter(sa, msgids=[src.msgid]),
            tunnel=t.id if t else None)


@rule
def aggressive_psk(ctx):
    for sa in ctx.state.ike_sas:
        if sa.version != 1:
            continue
        msgs = [m for m in sa.messages if m.exch == ExchangeType.AGGRESSIVE and m.proposals and not m.copy]
        if not msgs:
            continue
        methods = set()
        for m in msgs:
            for p in m.proposals:
                for tr in p.transforms:
                    for atype, value in tr.attributes:
                        if atype == IkeAttrV1.AUTHENTICATION_METHOD and isinstance(value, int):
                            methods.add(value)
        psk = methods & reg.V1_AUTH_PSK_METHODS
        if not psk:
            continue
        t = ike_tunnel_of(ctx, sa)
        m = msgs[0]
        yield make(
            "IKE_AGGRESSIVE_MODE_PSK", f"{sa.id}|am-psk",
            title=msg("IKEv1 Aggressive Mode with a pre-shared key"),
            detail=msg("Aggressive Mode from {peer} offers pre-shared-key authentication; the "
                       "responder's AM2 carries a hash of the PSK that can be attacked offline.",
                       peer=endpoint_text((m.ipver, m.src, m.sport))),
            evidence=ctx.evidence(ctx.msg_refs(msgs), msgs[0].ts, msgs[-1].ts,
                                  ike_spis=[sa.ispi.hex()]),
            wireshark_filter=ike_filter(sa, exch=ExchangeType.AGGRESSIVE),
            tunnel=t.id if t else None)


def _init_answer(sa):
    """The first response to ``sa``'s IKE_SA_INIT that creates the IKE SA (an SA payload, no
    error, no NotifyV2.COOKIE), or None."""
    for x in sa.exchanges:
        if x.exch != ExchangeType.IKE_SA_INIT:
            continue
        for m in x.msgs:
            if m.is_response and not m.copy and PayloadV2.SA in m.payload_types and \
                    not m.error_notifies() and not m.has_notify(NotifyV2.COOKIE):
                return m
    return None


def _initiations(ctx) -> dict:
    """IKEv2 SAs that start with an IKE_SA_INIT request and were answered (the IKE SA exists
    on both sides), grouped by gateway pair: ``{pair: [(start, n, sa, answer)]}`` in start
    order.  The start of a retry (COOKIE / INVALID_KE) is that of its first attempt; an SA that
    was retried is left to its retry."""
    by_id = {}
    for sa in ctx.state.ike_sas:
        if sa.version == 2:
            by_id.setdefault(sa.id, sa)
    groups: dict = {}
    for sa in ctx.state.ike_sas:
        if sa.version != 2 or sa.mid_session or sa.retried_by is not None or not sa.messages:
            continue
        first = sa.messages[0]
        if first.exch != ExchangeType.IKE_SA_INIT or first.is_response:
            continue
        answer = _init_answer(sa)
        if answer is None:
            continue
        root = sa
        for _ in range(8):  # a retry of a retry ...
            prev = by_id.get(root.retry_of) if root.retry_of else None
            if prev is None or prev is root:
                break
            root = prev
        a, b = sa.initiator[1], sa.responder[1]
        key = (a, b) if a <= b else (b, a)
        groups.setdefault(key, []).append((root.first_ts, first.n, sa, answer))
    for lst in groups.values():
        lst.sort(key=lambda e: (e[0], e[1]))
    return groups


def _survivor(ctx, a, b):
    """(the IKE SA that survived or None, one sentence on the fate of both): the one not
    deleted (or deleted last, more than a second after the other), else the one established,
    else the one that kept talking."""
    da, db = deleted_ts(a), deleted_ts(b)

    def kept(sa, why="", deleted=None):
        return msg("{sa} (initiated by {who}) survived ({why}its last IKE message at +{t} s"
                   "{deleted})", sa=sa.id, who=ip_text(sa.initiator[1]), why=why,
                   t=ctx.rel(sa.last_ts), deleted=deleted or "")

    if (da is None) != (db is None):
        keep, gone, when = (b, a, da) if da is not None else (a, b, db)
        return keep, msg("{kept}; {gone} was deleted at +{t} s.", kept=kept(keep), gone=gone.id,
                         t=ctx.rel(when))
    if a.established != b.established:
        keep, gone = (a, b) if a.established else (b, a)
        return keep, (msg("{kept}; {gone} never completed IKE_AUTH",
                          kept=kept(keep, msg('established, ')), gone=gone.id)
                      + (msg(" and was deleted too.") if da is not None else "."))
    if da is not None:
        if abs(da - db) > 1.0:
            # the duplicate went first; the other lived on until its own Delete (a teardown)
            keep, gone = (a, b) if da > db else (b, a)
            return keep, msg("{gone} was deleted at +{t} s and {kept}.", gone=gone.id,
                             t=ctx.rel(min(da, db)),
                             kept=kept(keep, deleted=msg(", its own Delete at +{t} s",
                                                         t=ctx.rel(max(da, db)))))
        return None, msg("Both were deleted ({a} at +{ta} s, {b} at +{tb} s).", a=a.id,
                         ta=ctx.rel(da), b=b.id, tb=ctx.rel(db))
    if abs(a.last_ts - b.last_ts) < ctx.th.response_timeout:
        return None, msg("Neither was deleted in the capture: both IKE SAs remain (their last "
                         "messages at +{ta} s and +{tb} s).", ta=ctx.rel(a.last_ts),
                         tb=ctx.rel(b.last_ts))
    keep, gone = (a, b) if a.last_ts > b.last_ts else (b, a)
    return keep, msg("{kept}; {gone} went quiet at +{t} s without a Delete in the capture.",
                     kept=kept(keep), gone=gone.id, t=ctx.rel(gone.last_ts))


@rule
def simultaneous_init(ctx):
    """Both peers initiated to each other while the other's initiation was pending (sent and
    not yet answered, retransmitted or not), and both initiations were answered: two IKE SAs
    where one was needed.  Per gateway pair, one sweep in start order: each initiation is
    matched with at most one pending initiation of the other side (a heap of those still
    pending, by the time they were answered)."""
    for key, inits in _initiations(ctx).items():
        pending = {key[0]: [], key[1]: []}  # by initiator: heap of (answer ts, n, entry)
        for e in inits:
            start, n, b, answer_b = e
            other = b.responder[1]
            heap = pending.get(other)
            while heap and heap[0][0] < start:
                heapq.heappop(heap)  # answered before this one started: not pending
            if heap:
                _ts, _n, ea = heapq.heappop(heap)
                yield _simultaneous(ctx, ea, e)
                continue
            mine = pending.get(b.initiator[1])
            if mine is not None:
                heapq.heappush(mine, (answer_b.ts, n, e))


def _simultaneous(ctx, ea, eb):
    start_a, _na, a, answer_a = ea
    start_b, _nb, b, answer_b = eb
    t = ike_tunnel_of(ctx, a)
    x, y = ip_text(a.initiator[1]), ip_text(b.initiator[1])
    sent_a = sum(1 for m in a.messages if m.exch == ExchangeType.IKE_SA_INIT and not m.is_response
                 and m.duplicate_of is None and m.ts <= answer_a.ts)
    late = answer_a.ts - start_a
    detail = msg("{x} started IKE SA {a} at +{t0} s; its IKE_SA_INIT was answered at +{t1} s "
                 "({late:.2f} s later{sends}). Meanwhile, at +{t2} s, {y} started its own IKE SA "
                 "{b} towards {x} (answered at +{t3} s). Two IKE SAs between the same gateways "
                 "where one was needed. ", x=x, a=a.id, t0=ctx.rel(start_a),
                 t1=ctx.rel(answer_a.ts), late=late,
                 sends=msg(", after {n} sends", n=sent_a) if sent_a > 1 else "",
                 t2=ctx.rel(start_b), y=y, b=b.id, t3=ctx.rel(answer_b.ts))
    _keep, fate = _survivor(ctx, a, b)
    detail += fate
    frames = list(a.messages[0].frames) + list(answer_a.frames) + list(b.messages[0].frames) \
        + list(answer_b.frames)
    return make(
        "IKE_SIMULTANEOUS_INIT", f"{a.id}|{b.id}",
        title=(msg("{x} and {y} initiated to each other at the same time: two IKE SAs", x=x,
                   y=y) if late < 1.0 else
               msg("{x} and {y} initiated to each other while {x}'s initiation waited {late:.0f} "
                   "s for an answer: two IKE SAs", x=x, y=y, late=late)),
        detail=detail,
        evidence=ctx.evidence(frames, min(start_a, start_b), max(answer_a.ts, answer_b.ts),
                              ike_spis=[a.ispi.hex(), b.ispi.hex()], peers=[x, y]),
        wireshark_filter=set_filter("isakmp.ispi", [_ch(a.ispi), _ch(b.ispi)]),
        tunnel=t.id if t else None)


def _ch(b):
    return ":".join(f"{x:02x}" for x in b)

