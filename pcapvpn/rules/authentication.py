"""Authentication: do identities, PSK and certificates match?

Without keys (RFC 7296 §3.14: the SK header's Next Payload names the first encrypted payload):
an IKE_AUTH response whose first inner payload is a Notify is an error response (strongSwan
sends AUTHENTICATION_FAILED alone); an INFORMATIONAL request from the initiator right after an
answered IKE_AUTH that starts with a Notify is the initiator rejecting the responder's
authentication (RFC 7296 §2.21.2).  IKEv1: MM5 answered with an error, or MM4 re-sent by the
responder after MM5 (it could not decrypt/verify MM5: typically a PSK mismatch); XAUTH
(draft-beaulieu-ike-xauth-02) in Transaction exchanges after phase 1 with no Quick Mode and no
ESP after them (the gateway refused the user's credentials and dropped the IKE SA).
"""

from __future__ import annotations

from dissect.vpn import registry as reg
from dissect.vpn.registry import ExchangeType, NotifyV1, PayloadV2
from pcapvpn.findings import declare, make, msg, msg_join, when
from pcapvpn.rules import rule
from pcapvpn.rules.incremental import ike_unit_fp, per_sa
from pcapvpn.rules.common import (
    endpoint_text, ike_facts, mm5_answers, ike_filter, ike_tunnel_of, implementations, ip_text, side_of,
)

#: an initiator refuses the responder's AUTH with an INFORMATIONAL Notify sent within this many
#: seconds of the IKE_AUTH response
REJECT_AFTER = 5.0


declare("IKE_AUTH_FAILED", "authentication", "error",
        "Authentication failed: the peers do not agree on the pre-shared key, the identities, or "
        "the certificate chain.",
        # refused_by: the peer that refused the authentication; impl: either peer's Vendor IDs
        # credentials: "user" for XAUTH (the user's name and password), else the gateways'
        [when("Compare the pre-shared key on both gateways and the identities it is bound to.",
              credentials="gateway"),
         when("Certificates: check the CA is trusted by the peer, the certificate is within its "
              "validity period, and its identity (subjectAltName) matches the configured remote "
              "ID.", credentials="gateway"),
         when("Check the user's name and password and the gateway's user database (local "
              "users, RADIUS or LDAP server: is it reachable, does it accept the user?).",
              credentials="user"),
         when("XAUTH: the group pre-shared key was accepted (phase 1 completed); the user's "
              "credentials were refused.", credentials="user", exchange="XAUTH"),
         when("strongSwan: the gateway logs 'EAP-MS-CHAPv2 verification failed, retry (1)'; the "
              "client logs 'EAP_MSCHAPV2 method failed' and sends AUTHENTICATION_FAILED. Windows "
              "reports a refused user name or password as error 691 (RasClient event 20227).",
              credentials="user", version=2),
         when("strongSwan (gateway) logs 'XAuth authentication of 'USER' failed' and then "
              "'destroying IKE_SA after failed XAuth authentication'.",
              credentials="user", impl="strongSwan", version=1, exchange="XAUTH"),
         when("strongSwan: the responder logs 'tried N shared key(s) for 'A' - 'B', but MAC "
              "mismatched' (PSK) or 'no trusted RSA public key found for ...' (certificate); the "
              "initiator logs 'received AUTHENTICATION_FAILED notify error'.",
              version=2, refused_by="responder", credentials="gateway", impl="strongSwan"),
         when("strongSwan: the initiator rejects the responder's AUTH and logs 'tried N shared "
              "key(s) for 'A' - 'B', but MAC mismatched' (PSK) or 'no trusted RSA public key "
              "found for ...' (certificate), then deletes the IKE SA.",
              version=2, refused_by="initiator", credentials="gateway", impl="strongSwan"),
         when("libreswan (initiator) logs 'IKE SA authentication request rejected by peer: "
              "AUTHENTICATION_FAILED'.", version=2, refused_by="responder", credentials="gateway", impl="libreswan"),
         when("strongSwan: the responder cannot decrypt MM5 and logs 'invalid ID_V1 payload "
              "length, decryption failed?' / 'could not decrypt payloads'; the initiator logs "
              "'invalid HASH_V1 payload length, decryption failed?' for the responder's encrypted "
              "error notification, then 'sending retransmit N of request message ID 0, seq N' "
              "and 'giving up after N retransmits'.",
              version=1, exchange="MM5", credentials="gateway", impl="strongSwan"),
         when("libreswan (initiator) logs '... Possible authentication failure: no acceptable "
              "response to our first encrypted message' when it gives up.",
              version=1, exchange="MM5", credentials="gateway", impl="libreswan"),
         when("Cisco: 'show crypto isakmp sa' shows the initiator's SA in MM_WAIT_MSG6 (ASA) / "
              "MM_KEY_EXCH (IOS): MM5 was not accepted.",
              version=1, exchange="MM5", credentials="gateway", impl="Cisco")])


@rule
def auth_failed(ctx):
    for sa in ctx.state.ike_sas:
        t = ike_tunnel_of(ctx, sa)
        tid = t.id if t else None
        spis = [sa.ispi.hex(), sa.rspi.hex()]
        # what reads the SA alone: live keeps it per SA (per_sa); XAUTH reads the tunnel's ESP
        yield from per_sa(ctx, sa, (ike_unit_fp(sa), tid),
                          lambda sa=sa, tid=tid, spis=spis: _auth_failed(ctx, sa, tid, spis))
        if sa.version != 2:
            yield from _v1_xauth_unfinished(ctx, sa, t, spis)


def _auth_failed(ctx, sa, tid, spis):
    """The IKE_AUTH_FAILED findings of the IKE SA ``sa`` (of tunnel ``tid``) that read it
    alone: a cleartext AUTHENTICATION_FAILED, an inferred rejection, an unfinished EAP."""
    # cleartext AUTHENTICATION_FAILED (either version)
    for m in sa.messages:
        if m.copy:
            continue
        for n in m.notifies:
            ntype = n.notify_type
            failed = ntype == reg.notify_types(sa.version).AUTHENTICATION_FAILED or (
                sa.version == 1 and ntype in (NotifyV1.INVALID_HASH_INFORMATION,
                                              NotifyV1.INVALID_SIGNATURE)
                ) or (sa.version == 1 and ntype == NotifyV1.INVALID_ID_INFORMATION
                      and not _phase2(m))
            if not failed:
                continue
            name = reg.notify_name(sa.version, ntype)
            yield make(
                "IKE_AUTH_FAILED", f"{sa.id}|{m.n}|{ntype}",
                facts=ike_facts(sa, None, side_of(sa, m.src), impl=implementations(sa),
                                refused_by=side_of(sa, m.src),
                                exchange=reg.exchange_name(m.exch, short=True)),
                title=msg("{name} from {peer}", name=name, peer=ip_text(m.src)),
                detail=msg("{peer} sent {name} in {exchange} (in the clear).",
                           peer=endpoint_text((m.ipver, m.src, m.sport)), name=name,
                           exchange=reg.exchange_name(m.exch, short=True)),
                evidence=ctx.evidence(m.frames, m.ts, None, ike_spis=spis),
                wireshark_filter=ike_filter(sa, msgids=[m.msgid])
                + f" && isakmp.notify.msgtype == {ntype}",
                tunnel=tid)
    if sa.version == 2:
        yield from _v2_inferred(ctx, sa, tid, spis)
        yield from _v2_eap_unfinished(ctx, sa, tid, spis)
    else:
        yield from _v1_inferred(ctx, sa, tid, spis)


def _phase2(m) -> bool:
    return m.exch not in (ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE)


def _v2_inferred(ctx, sa, tid, spis):
    auth = [x for x in sa.exchanges if x.exch == ExchangeType.IKE_AUTH]
    for x in auth:
        for r in x.responses:
            if r.copy or r.sk_next != PayloadV2.N:
                continue
            req = x.requests[0] if x.requests else None
            size = msg("{n} bytes", n=r.size) + (msg(", request {n} bytes", n=req.size)
                                                 if req else "")
            yield make(
                "IKE_AUTH_FAILED", f"{sa.id}|{x.index}|v2-auth-notify",
                facts=ike_facts(sa, x, "responder", impl=implementations(sa),
                                refused_by="responder"),
                title=msg("IKE_AUTH rejected by {peer} (encrypted error notification)",
                          peer=ip_text(r.src)),
                detail=msg("The IKE_AUTH response from {peer} starts with a Notify payload "
                           "instead of IDr ({size}): the responder refused the IKE SA. Most "
                           "likely AUTHENTICATION_FAILED (PSK, identity or certificate); other "
                           "errors that end the IKE SA are possible (e.g. INTERNAL_ADDRESS_FAILURE "
                           "is sent with IDr). The exact notification needs the IKE keys "
                           "(--keys).", peer=endpoint_text((r.ipver, r.src, r.sport)), size=size),
                basis="inferred",
                evidence=ctx.evidence(ctx.msg_refs(x.msgs), x.msgs[0].ts, r.ts, ike_spis=spis),
                wireshark_filter=ike_filter(sa, msgids=[x.msgid]),
                tunnel=tid)
            return
        # the initiator rejects the responder's AUTH: an INFORMATIONAL request from the initiator
        # whose first inner payload is a Notify, right after an answered IKE_AUTH
        resp = [r for r in x.responses if r.sk_next not in (None, PayloadV2.N)]
        if not resp or resp[0].sk_next == PayloadV2.EAP:
            # an answer that is still EAP: the initiator's Notify ends the EAP conversation
            # (strongSwan sends AUTHENTICATION_FAILED after an EAP failure): _v2_eap_unfinished
            continue
        for y in sa.exchanges[x.index + 1:]:
            if y.exch == ExchangeType.IKE_AUTH:
                break  # further IKE_AUTH rounds (EAP): the Notify follows the last of them
            if y.exch != ExchangeType.INFORMATIONAL or y.requester != "initiator":
                continue
            req = y.requests[0] if y.requests else None
            if req is None or req.sk_next != PayloadV2.N or req.ts - resp[0].ts > REJECT_AFTER:
                break
            yield make(
                "IKE_AUTH_FAILED", f"{sa.id}|{y.index}|v2-init-reject",
                facts=ike_facts(sa, x, "initiator", impl=implementations(sa),
                                refused_by="initiator"),
                title=msg("{peer} rejected the responder's authentication",
                          peer=ip_text(req.src)),
                detail=msg("Right after the IKE_AUTH response ({after:.2f} s later) the initiator "
                           "sent an INFORMATIONAL whose first encrypted payload is a Notify: it "
                           "did not accept the responder's AUTH (RFC 7296 §2.21.2 — typically "
                           "AUTHENTICATION_FAILED: untrusted or expired certificate, or a remote "
                           "identity that does not match). Needs keys to name the notification.",
                           after=req.ts - resp[0].ts),
                basis="inferred",
                evidence=ctx.evidence(ctx.msg_refs(x.msgs + y.msgs), x.msgs[0].ts, req.ts,
                                      ike_spis=spis),
                wireshark_filter=ike_filter(sa, msgids=[x.msgid, y.msgid]),
                tunnel=tid)
            break


def _v2_eap_unfinished(ctx, sa, tid, spis):
    """EAP (RFC 7296 §2.16): after the responder's first IKE_AUTH answer (IDr, AUTH, EAP) the
    two sides exchange EAP in further IKE_AUTH exchanges, and the initiator ends with an
    IKE_AUTH carrying its AUTH once EAP succeeded.  When the last IKE_AUTH response still
    starts with EAP and the initiator sends no further IKE_AUTH, EAP ended there: an
    EAP-Failure (wrong user name or password: Windows reports error 13801 / event 20227), or the
    client gave up."""
    auth = [x for x in sa.exchanges if x.exch == ExchangeType.IKE_AUTH and x.responses]
    if len(auth) < 2 or not any(r.sk_next == PayloadV2.EAP for x in auth for r in x.responses):
        return
    x = auth[-1]
    r = next((m for m in x.responses if not m.copy), None)
    if r is None or r.sk_next != PayloadV2.EAP:
        return
    client = ip_text(x.requests[0].src) if x.requests else "the initiator"
    # the client may end it itself: an INFORMATIONAL whose first payload is a Notify
    # (strongSwan: AUTHENTICATION_FAILED after 'EAP_MSCHAPV2 method failed'); that ends it at
    # once, silence needs the answer timeout
    ended = next((y.requests[0] for y in sa.exchanges[x.index + 1:]
                  if y.exch == ExchangeType.INFORMATIONAL and y.requester == "initiator"
                  and y.requests and y.requests[0].sk_next == PayloadV2.N), None)
    if ended is None and ctx.now - r.ts < ctx.th.response_timeout:
        return
    told = (msg(" {client} then sent an INFORMATIONAL starting with a Notify ({after:.2f} s "
                "later): the client itself ended the exchange, as after an EAP failure it was "
                "told of.", client=client, after=ended.ts - r.ts) if ended is not None else "")
    yield make(
        "IKE_AUTH_FAILED", f"{sa.id}|{x.index}|v2-eap-unfinished",
        facts=ike_facts(sa, x, "responder", impl=implementations(sa), refused_by="responder"),
        title=msg("EAP authentication of {client} did not complete", client=client),
        detail=msg("{n} IKE_AUTH exchanges carried EAP; the last response (Message ID {msgid}, "
                   "from {peer}) still starts with an EAP payload and {client} sent no further "
                   "IKE_AUTH with its AUTH in the {after:.1f} s the capture runs after it: the "
                   "EAP conversation ended there — an EAP-Failure (user name or password "
                   "refused, the RADIUS server said no or did not answer) or the client gave "
                   "up.{told} Keys name it exactly.", n=len(auth), msgid=x.msgid,
                   peer=endpoint_text((r.ipver, r.src, r.sport)), client=client,
                   after=ctx.now - r.ts, told=told),
        basis="inferred",
        evidence=ctx.evidence(ctx.msg_refs(x.msgs + ([ended] if ended is not None else [])),
                              x.msgs[0].ts, r.ts, ike_spis=spis),
        wireshark_filter=ike_filter(sa, msgids=[x.msgid] + ([ended.msgid] if ended is not None
                                                             else [])),
        tunnel=tid)


def _mm5_moved_unheard(sa, mm5) -> bool:
    """MM5 left on other ports than the peer's MM4 came from, and the peer never sent anything
    on MM5's ports."""
    mm4 = [m for m in sa.messages if m.step == 4 and m.src == mm5.dst
           and m.exch == ExchangeType.MAIN_MODE]
    if not mm4 or (mm4[0].sport, mm4[0].dport) == (mm5.dport, mm5.sport):
        return False
    return not any(m.src == mm5.dst and (m.sport, m.dport) == (mm5.dport, mm5.sport)
                   for m in sa.messages)


def _v1_inferred(ctx, sa, tid, spis):
    mm = [x for x in sa.exchanges if x.exch == ExchangeType.MAIN_MODE]
    for x in mm:
        mm5 = [m for m in x.msgs if m.step == 5]
        if not mm5 or x.last_step >= 6:
            continue
        t5 = mm5[0].ts
        # the responder re-sent MM4 after MM5 arrived
        mm4_again = [m for m in x.msgs if m.step == 4 and m.retransmit_of is not None and m.ts > t5]
        if mm4_again and _mm5_moved_unheard(sa, mm5[0]):
            # MM5 went to other ports (NAT-T's move to 4500) and nothing ever came back on them:
            # the re-sent MM4 says MM5 did not arrive (rules/reachability: NAT_T_BLOCKED)
            mm4_again = []
        # or answered MM5 with an (encrypted or cleartext) Informational
        info = mm5_answers(sa, mm5[0])
        if not mm4_again and not info:
            continue
        why = []
        if mm4_again:
            why.append(msg("the responder re-sent MM4 {n} time(s) after MM5 arrived (it could "
                           "not decrypt or verify MM5)", n=len(mm4_again)))
        if info:
            told = [reg.notify_name(1, n.notify_type) for n in info[0].notifies]
            why.append(msg("the responder answered MM5 with an Informational message")
                       + (msg(" (encrypted)") if info[0].encrypted else "")
                       + (msg(" carrying {names}", names=", ".join(told)) if told else ""))
        refs = ctx.msg_refs(sorted(mm5 + mm4_again + info, key=lambda m: m.ts))
        yield make(
            "IKE_AUTH_FAILED", f"{sa.id}|{x.index}|v1-mm5",
            facts=ike_facts(sa, x, side_of(sa, mm5[0].dst), impl=implementations(sa),
                            refused_by=side_of(sa, mm5[0].dst), exchange="MM5"),
            title=msg("Main Mode stopped at MM5: {peer} did not accept it",
                      peer=ip_text(mm5[0].dst)),
            detail=(msg_join("; ", why) + msg(". With pre-shared keys this is the signature of a "
                                              "PSK mismatch (the responder derives a different "
                                              "key and cannot read MM5); with certificates, an "
                                              "identity or signature the responder rejects.")),
            basis="inferred",
            evidence=ctx.evidence(refs, t5, max(m.ts for m in mm5 + mm4_again + info),
                                  ike_spis=spis),
            wireshark_filter=ike_filter(sa),
            tunnel=tid)


def _v1_xauth_unfinished(ctx, sa, t, spis):
    """IKEv1 remote access (draft-beaulieu-ike-xauth-02): after phase 1 the gateway asks for the
    user's name and password in a Transaction exchange (REQUEST/REPLY), then reports the result
    (SET with XAUTH-STATUS, ACK); Mode Config may follow, then the client starts Quick Mode.
    When phase 1 completed, Transaction exchanges followed and then nothing of this IKE SA —
    no Quick Mode, no ESP between the peers — for ``response_timeout`` seconds, the user
    authentication ended there: XAUTH-STATUS FAIL (strongSwan then destroys the IKE SA without a
    Delete; Cisco and FortiGate send one), or the client gave up.  Keys name it exactly
    (``config_failures`` in rules/decrypted/notifications.py supersedes this finding)."""
    phase1 = [x for x in sa.exchanges
              if x.exch in (ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE)]
    # (a capture that begins after phase 1: its Transaction messages are protected by it)
    done = any(x.last_step >= (6 if x.exch == ExchangeType.MAIN_MODE else 3) for x in phase1) \
        or (not phase1 and sa.mid_session and sa.established)
    tms = [x for x in sa.exchanges if x.exch == ExchangeType.TRANSACTION]
    if not done or not tms:
        return
    last = max(m.ts for x in tms for m in x.msgs)
    if any(x.exch == ExchangeType.QUICK_MODE and max(m.ts for m in x.msgs) >= last
           for x in sa.exchanges):
        return
    if t is not None and any(e.last_ts is not None and e.last_ts >= last for e in t.esp_sas):
        return
    first = min(m.ts for x in tms for m in x.msgs)
    # an Informational after the Transaction exchanges (libreswan deletes the IKE SA once it
    # gives up on XAUTH) ends it at once; silence needs the answer timeout
    info = [m for m in sa.messages if m.exch == ExchangeType.INFORMATIONAL_V1 and m.ts > first
            and not m.copy]
    if not info and ctx.now - last < ctx.th.response_timeout:
        return  # pending: too soon to say no Quick Mode followed
    retx = sum(1 for x in tms for m in x.msgs if m.retransmit_of is not None)
    gateway = sa.responder[1] if sa.responder else None
    refs = ctx.msg_refs([m for x in tms for m in x.msgs] + info[:1])
    n = sum(len(x.msgs) for x in tms)
    parts = [msg("Phase 1 completed, then {n} Transaction exchange(s) ({msgs} message(s), "
                 "XAUTH user authentication or Mode Config), and no Quick Mode and no ESP followed "
                 "in the {after:.1f} s the capture runs after the last one. The user "
                 "authentication ended there: the gateway refused the user name or password "
                 "(XAUTH-STATUS FAIL, then the IKE SA is dropped) or the client gave up.",
                 n=len(tms), msgs=n, after=ctx.now - last)]
    if info:
        parts.append(msg("{who} then sent an Informational (+{at} s: the IKE SA deleted).",
                         who=ip_text(info[0].src), at=ctx.rel(info[0].ts)))
    if retx:
        parts.append(msg("{retx} of the Transaction messages were retransmissions that got no "
                         "answer (the gateway asking again after a refused password, as libreswan "
                         "does).", retx=retx))
    parts.append(msg("Keys name it exactly."))
    yield make(
        "IKE_AUTH_FAILED", f"{sa.id}|v1-xauth-unfinished",
        facts=ike_facts(sa, None, "responder", impl=implementations(sa), refused_by="responder",
                        exchange="XAUTH"),
        title=msg("XAUTH at {gw} did not lead to a Quick Mode",
                  gw=ip_text(gateway) if gateway else msg('the gateway')),
        detail=msg_join(" ", parts),
        basis="inferred",
        evidence=ctx.evidence(refs, first, max([last] + [m.ts for m in info[:1]]), ike_spis=spis),
        wireshark_filter=(ike_filter(sa) + f" && isakmp.exchangetype in "
                          f"{{{int(ExchangeType.TRANSACTION)}, {int(ExchangeType.INFORMATIONAL_V1)}}}"
                          if info else ike_filter(sa, exch=ExchangeType.TRANSACTION)),
        tunnel=t.id if t else None)
