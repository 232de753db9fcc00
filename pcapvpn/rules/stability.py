"""Stability: does the tunnel stay up?  DPD/liveness, flapping, restarts, rekey collisions, and the
SPI mismatches a restart leaves behind."""

from __future__ import annotations

from dissect.vpn.registry import ExchangeType, NotifyV1, PayloadV2
from pcapvpn.findings import declare, make, msg, msg_join
from pcapvpn.rules import rule
from pcapvpn.rules.common import (
    ANSWERED, PENDING, UNANSWERED, backoff, deleted_ts, endpoint_text, esp_filter,
    established_ts, exchange_label, exchange_status,
    ike_filter, ike_tunnel_of, ip_text, set_filter,
)

#: IKE SAs spelled out in a detail (all are counted)
MAX_LISTED = 8
#: IKEv1 DPD inferred from encrypted Informationals: this many sends from one side, or this many
#: spaced more than dpd_timeout in all
MIN_SENDS = 3
MIN_SPACED_SENDS = 2

declare("DPD_TIMEOUT", "stability", "error",
        "Dead-peer detection / liveness checks went unanswered: the peer (or the path to it) "
        "stopped responding while the tunnel was up.",
        ["Check whether the peer rebooted, lost its route, or a firewall/NAT dropped the flow "
         "(NAT mapping timeout: keepalives and DPD intervals should be shorter than the NAT's UDP "
         "timeout).",
         "strongSwan logs 'sending DPD request' ... 'retransmit N of request' ... 'giving up after "
         "N retransmits', then runs its dpd_action; libreswan 'liveness: ... peer ... "
         "unresponsive'; Cisco 'DPD: peer is dead'."])
declare("IKE_SA_FLAPPING", "stability", "warning",
        "IKE SAs between the same gateways died without an orderly teardown (liveness/DPD "
        "failure, retransmissions given up, a DELETE never answered, a peer restart or "
        "INITIAL_CONTACT replacing a live SA) and were negotiated again and again (not rekeys; "
        "an SA ended by a DELETE that was answered, or sent by both peers, does not count): the "
        "tunnel keeps dropping and coming back.",
        ["Look at why each SA ended: DPD timeouts, DELETEs from one side, lifetimes that differ "
         "wildly, or two gateways both initiating (duplicate SAs).",
         "Check that only one side initiates or that both use the same lifetimes."])
declare("IKE_PEER_RESTART", "stability", "warning",
        "A peer negotiated a new IKE SA while an established one still existed and was never "
        "deleted: the peer restarted (or lost its state).",
        ["Check the peer for a reboot or daemon restart at that time.",
         "After a restart the other side keeps sending on the old SAs until DPD notices: enable "
         "DPD, and INITIAL_CONTACT handling (strongSwan uniqueids) so old SAs are replaced at "
         "once."])
declare("IKE_REKEY_COLLISION", "stability", "info",
        "Both peers started a CREATE_CHILD_SA at the same moment: a rekey collision (RFC 7296 "
        "§2.8.1), after which one of the new SAs is deleted again, or, right after IKE_AUTH, "
        "both sides creating a Child SA for the same traffic.",
        ["Harmless when resolved; frequent collisions come from identical lifetimes on both sides "
         "— give one side a shorter rekey time or more rekey jitter (strongSwan rand_time)."],
        failure=False)
declare("ESP_SPI_MISMATCH", "dataplane", "error",
        "ESP arrives on an SPI that no live SA announces: after the peer restarted or deleted the "
        "SA, or reported by an INVALID_SPI notification.",
        ["The sender still uses an SA the receiver no longer has: clear the stale SAs on the "
         "sender (or enable DPD so it notices) and check for a peer restart.",
         "strongSwan logs 'received INVALID_SPI notify'; the Linux kernel counts "
         "XfrmInNoStates in /proc/net/xfrm_stat."])


def _liveness(x) -> bool:
    return x.version == 2 and x.exch == ExchangeType.INFORMATIONAL and any(m.sk_next == PayloadV2.NONE for m in x.requests)


@rule
def dpd(ctx):
    for sa in ctx.state.ike_sas:
        t = ike_tunnel_of(ctx, sa)
        tid = t.id if t else None
        spis = [sa.ispi.hex(), sa.rspi.hex()]
        if sa.version == 2:
            checks = [x for x in sa.exchanges if _liveness(x)]
            if not checks:
                continue
            failed = [x for x in checks if exchange_status(ctx, x) not in (ANSWERED, PENDING)]
            if not failed:
                continue
            x = failed[0]
            reqs = [m for m in x.requests if m.duplicate_of is None]
            ok = [y for y in checks if y.answered]
            last_ok = max((y.responses[0].ts for y in ok), default=None)
            iv = backoff(reqs)
            who = ip_text(reqs[0].src)
            peer = ip_text(reqs[0].dst)
            detail = (msg("{n} liveness check(s) (empty INFORMATIONAL) in the capture, {ok} "
                          "answered. {who}'s check (Message ID {msgid}) was sent {sent} time(s)",
                          n=len(checks), ok=len(ok), who=who, msgid=x.msgid, sent=len(reqs))
                      + (msg(" at intervals {iv} s", iv=', '.join(f'{i:g}' for i in iv))
                         if iv else "")
                      + msg(" without an answer from {peer}.", peer=peer))
            if last_ok is not None:
                detail += msg(" The last answered check was at +{t} s.", t=ctx.rel(last_ok))
            later = [y for y in sa.exchanges[x.index + 1:] if y.msgs and y.msgs[0].src == reqs[0].dst]
            if later:
                detail += msg(" The peer was heard again later in this IKE SA.")
            yield make("DPD_TIMEOUT", f"{sa.id}|dpd|{x.index}",
                       title=msg("Liveness checks from {who} to {peer} unanswered", who=who,
                                 peer=peer),
                       detail=detail,
                       evidence=ctx.evidence(ctx.msg_refs(x.msgs), reqs[0].ts, reqs[-1].ts,
                                             ike_spis=spis, peers=[who, peer]),
                       wireshark_filter=ike_filter(sa, msgids=[x.msgid]),
                       tunnel=tid)
        else:
            yield from _v1_dpd(ctx, sa, tid, spis)


def _v1_dpd(ctx, sa, tid, spis):
    """IKEv1 DPD (RFC 3706): R-U-THERE / ACK are separate Informational exchanges.  In the clear
    they pair by sequence number; encrypted (the usual case) a run of Informationals from one side
    with nothing from the other side afterwards is an unanswered DPD (inferred)."""
    infos = [m for m in sa.messages if m.exch == ExchangeType.INFORMATIONAL_V1 and not m.copy]
    if not infos:
        return
    clear = {}
    for m in infos:
        for n in m.notifies:
            if n.dpd_seq is not None:
                clear.setdefault(n.dpd_seq, {})[n.notify_type] = m
    ask, ack = NotifyV1.R_U_THERE, NotifyV1.R_U_THERE_ACK
    unanswered = [v[ask] for v in clear.values() if ask in v and ack not in v
                  and ctx.now - v[ask].ts >= ctx.th.dpd_timeout]
    basis = "observed"
    if not unanswered:
        # encrypted: trailing informationals from one side (messages decrypted with --keys are
        # judged on their R-U-THERE / ACK by the decrypted rules, never by this pattern)
        enc = [m for m in infos if m.encrypted
               and getattr(m, "decrypt_status", None) not in ("ok", "unverified")]
        if len(enc) < 2:
            return
        last_sender = enc[-1].src
        tail = []
        for m in reversed(enc):
            if m.src != last_sender:
                break
            tail.append(m)
        tail.reverse()
        if len(tail) < 2:
            return
        heard_after = [m for m in sa.messages if m.src != last_sender and m.ts > tail[0].ts]
        if heard_after or ctx.now - tail[-1].ts < 0:
            return
        # a periodic run: at least 3 sends from one side, or 2 spaced > dpd_timeout in total.
        # Messages less than a second apart are one send: the DELETEs of an orderly shutdown
        # (one per child SA, then the ISAKMP SA) go out together, DPD retransmissions do not.
        sends = 1 + sum(1 for a, b in zip(tail, tail[1:]) if b.ts - a.ts >= 1.0)
        if sends < MIN_SPACED_SENDS or (sends < MIN_SENDS
                                        and tail[-1].ts - tail[0].ts < ctx.th.dpd_timeout):
            return
        unanswered = tail
        basis = "inferred"
    first = unanswered[0]
    who = ip_text(first.src)
    peer = ip_text(first.dst)
    yield make("DPD_TIMEOUT", f"{sa.id}|v1dpd",
               title=msg("DPD from {who} to {peer} unanswered", who=who, peer=peer),
               detail=(msg("{n} DPD message(s) (Informational{kind}) from {who} between +{t0} s "
                           "and +{t1} s got no answer from {peer}", n=len(unanswered),
                           kind=msg(", encrypted") if basis == "inferred" else ", R-U-THERE",
                           who=who, t0=ctx.rel(first.ts), t1=ctx.rel(unanswered[-1].ts),
                           peer=peer)
                       + (msg(" (keyless: a run of encrypted Informationals from one side with "
                              "nothing from the other is the R-U-THERE pattern)")
                          if basis == "inferred" else "")
                       + "."),
               basis=basis,
               evidence=ctx.evidence(ctx.msg_refs(unanswered), first.ts, unanswered[-1].ts,
                                     ike_spis=spis, peers=[who, peer]),
               wireshark_filter=ike_filter(sa, exch=ExchangeType.INFORMATIONAL_V1),
               tunnel=tid)


def _new_negotiations(t):
    out = []
    for sa in t.ike_sas:
        if sa.mid_session or sa.retry_of is not None or sa.rekey_of is not None:
            continue
        first = sa.messages[0] if sa.messages else None
        if first is None:
            continue
        if first.exch in (ExchangeType.IKE_SA_INIT, ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE):
            out.append(sa)
    return out


#: INITIAL_CONTACT (RFC 7296 §3.10.1 16384; IKEv1 RFC 2407 §4.6.3.3 24578)
_INITIAL_CONTACT = {2: 16384, 1: 24578}
#: endings of an IKE SA that are an orderly teardown (not flapping)
_ORDERLY = ("deleted",)


def _ending(ctx, sa, nxt, esp_sas):
    """(kind, text): what ended IKE SA ``sa`` (``nxt``: the next new negotiation of the tunnel,
    or None).  kind: "deleted" (a DELETE answered, or both peers deleting; IKEv1: a Delete, which
    IKEv1 never acknowledges), "dropped" (no orderly teardown: liveness / retransmissions given
    up, a DELETE never answered, replaced without a DELETE — restart, INITIAL_CONTACT),
    "unknown" (IKEv1 Informationals encrypted: a Delete or DPD, keys would tell), "failed" (never
    established), "open" (still up when the capture ends)."""
    if not sa.established:
        return "failed", msg("never established")
    end = nxt.first_ts if nxt is not None else ctx.now
    if sa.version == 2:
        dels = [x for x in sa.exchanges if x.exch == ExchangeType.INFORMATIONAL
                and any(m.sk_next == PayloadV2.D for m in x.requests) and x.msgs[0].ts <= end + 1]
        if dels:
            x = dels[0]
            who = ip_text(x.requests[0].src)
            sides = {y.requester for y in dels}
            if x.answered:
                return "deleted", msg("DELETE from {who} answered at +{t} s", who=who,
                                      t=ctx.rel(x.msgs[0].ts))
            if len(sides) == 2:
                return "deleted", msg("both peers sent a DELETE at +{t} s",
                                      t=ctx.rel(x.msgs[0].ts))
            if exchange_status(ctx, x) == PENDING:
                return "deleted", msg("DELETE from {who} at +{t} s (the capture ends before its "
                                      "answer was due)", who=who, t=ctx.rel(x.msgs[0].ts))
            return "dropped", msg("DELETE from {who} at +{t} s never answered (the peer was "
                                  "gone)", who=who, t=ctx.rel(x.msgs[0].ts))
    else:
        dels = [m for m in sa.messages if m.deletes and m.ts <= end + 1]
        if dels:
            return "deleted", msg("Delete from {who} at +{t} s", who=ip_text(dels[0].src),
                                  t=ctx.rel(dels[0].ts))
    for x in sa.exchanges:
        if exchange_status(ctx, x) != UNANSWERED:
            continue
        reqs = [m for m in x.msgs if m.duplicate_of is None and not m.is_response]
        who = ip_text(x.msgs[0].src)
        if _liveness(x):
            return "dropped", msg("liveness checks from {who} unanswered from +{t} s (DPD)",
                                  who=who, t=ctx.rel(x.msgs[0].ts))
        if sa.version == 2:
            return "dropped", msg("{exchange} from {who} sent {n} time(s) from +{t} s, never "
                                  "answered (retransmissions given up)", exchange=exchange_label(x),
                                  who=who, n=len(reqs), t=ctx.rel(x.msgs[0].ts))
    if nxt is None:
        return "open", msg("still up when the capture ends")
    if any(m.has_notify(_INITIAL_CONTACT[nxt.version]) for m in nxt.messages):
        return "dropped", msg("replaced at +{t} s by a new IKE SA with INITIAL_CONTACT, without a "
                              "DELETE", t=ctx.rel(nxt.first_ts))
    silent = _silent_side(sa, nxt, esp_sas)
    if silent is not None:
        return "dropped", msg("{who} went silent (restart or crash); replaced at +{t} s without "
                              "a DELETE", who=ip_text(silent), t=ctx.rel(nxt.first_ts))
    if sa.version == 1 and any(m.exch == ExchangeType.INFORMATIONAL_V1 and m.encrypted for m in sa.messages):
        return "unknown", msg("encrypted Informational(s) before the next IKE SA (a Delete or "
                              "DPD: the keys would tell)")
    return "dropped", msg("replaced at +{t} s by a new IKE SA without a DELETE",
                          t=ctx.rel(nxt.first_ts))


@rule
def flapping(ctx):
    """IKE SAs of one tunnel that died without an orderly teardown and were negotiated again:
    at least ``flap_count`` negotiations of which ``flap_count - 1`` established SAs dropped.
    SAs ended by a DELETE (answered, or sent by both peers) are orderly and do not count."""
    for t in ctx.state.tunnels:
        negs = _new_negotiations(t)
        if len(negs) < ctx.th.flap_count:
            continue
        endings = [_ending(ctx, sa, nxt, t.esp_sas)
                   for sa, nxt in zip(negs, negs[1:] + [None])]
        dropped = [sa for sa, (kind, _txt), nxt in zip(negs, endings, negs[1:])
                   if kind == "dropped"]
        if len(dropped) < ctx.th.flap_count - 1:
            continue
        refs = []
        for sa in negs:
            refs.extend(sa.messages[0].frames)
        lines = [msg("{sa} (+{t} s): {txt}", sa=sa.id, t=ctx.rel(sa.first_ts), txt=txt)
                 for sa, (_kind, txt) in zip(negs, endings)]
        orderly = sum(1 for kind, _t in endings if kind in _ORDERLY)
        detail = (msg("The IKE SA was negotiated {n} times from scratch between +{t0} s and "
                      "+{t1} s ({ok} established); {dropped} ended without an orderly teardown",
                      n=len(negs), t0=ctx.rel(negs[0].first_ts), t1=ctx.rel(negs[-1].first_ts),
                      ok=sum(1 for s in negs if s.established), dropped=len(dropped))
                  + (msg(" and {n} with one (not counted)", n=orderly) if orderly else "")
                  + msg(". What ended each: {lines}", lines=msg_join("; ", lines[:MAX_LISTED]))
                  + ("; ..." if len(lines) > MAX_LISTED else "") + ".")
        yield make("IKE_SA_FLAPPING", f"{t.id}|flap",
                   title=msg("{n} IKE SA(s) between {tunnel} dropped and were re-negotiated "
                             "({negs} negotiations)", n=len(dropped), tunnel=t.id,
                             negs=len(negs)),
                   detail=detail,
                   evidence=ctx.evidence(refs, negs[0].first_ts, negs[-1].first_ts,
                                         ike_spis=[s.ispi.hex() for s in negs]),
                   wireshark_filter=set_filter("isakmp.exchangetype", [2, 4, 34])
                   + " && isakmp.rspi == 00:00:00:00:00:00:00:00",
                   tunnel=t.id)


def _silent_side(old, new, esp_sas):
    """The peer that went silent on the old IKE SA before the new one started: its IKE and ESP
    stop while the other peer keeps talking (DPD, ESP) into the void.  None when both kept
    talking on the old SA after the new one started (two SAs side by side, not a restart)."""
    a, b = old.initiator[1], old.responder[1]

    def last_from(x):
        ts = [m.ts for m in old.messages if m.src == x]
        ts += [e.last_ts for e in esp_sas if e.src == x and e.first_ts <= new.first_ts]
        return max(ts) if ts else None

    la, lb = last_from(a), last_from(b)
    if la is None or lb is None:
        return None
    if la > new.first_ts and lb > new.first_ts:
        return None
    return a if la < lb else b


@rule
def restarts(ctx):
    for t in ctx.state.tunnels:
        negs = _new_negotiations(t)
        for old, new in zip(negs, negs[1:]):
            if not old.established:
                continue
            deleted = deleted_ts(old)
            if deleted is not None and deleted <= new.first_ts + 1:
                continue
            restarter = _silent_side(old, new, t.esp_sas)
            if restarter is None:
                continue
            first = new.messages[0]
            other = old.responder[1] if restarter == old.initiator[1] else old.initiator[1]
            who = ip_text(restarter)
            detail = msg("{who} went silent on the established IKE SA {old} while {other} kept "
                         "sending to it, and a new IKE SA ({new}, initiated by {by}) started at "
                         "+{t} s without the old one being deleted: {who} lost its state "
                         "(restart, crash or failover).", who=who, old=old.id,
                         other=ip_text(other), new=new.id, by=ip_text(first.src),
                         t=ctx.rel(new.first_ts))
            yield make("IKE_PEER_RESTART", f"{t.id}|restart|{new.id}",
                       title=msg("{who} restarted (new IKE SA without deleting the old one)",
                                 who=who),
                       detail=detail, basis="inferred",
                       evidence=ctx.evidence(first.frames, new.first_ts, None,
                                             ike_spis=[old.ispi.hex(), new.ispi.hex()]),
                       wireshark_filter=ike_filter(new),
                       tunnel=t.id)
            # ESP still sent to the restarted peer on the old SAs: stale SAs
            stale = [e for e in t.esp_sas
                     if e.proto == "esp" and e.first_ts < new.first_ts and e.dst == restarter
                     and e.last_ts > _silence_start(old, new, restarter, t.esp_sas)
                     + ctx.th.delete_grace]
            for e in stale:
                yield make("ESP_SPI_MISMATCH", f"{t.id}|stale|{e.spi:08x}",
                           title=msg("ESP to {who} continued on stale SPI 0x{spi} after its "
                                     "restart", who=who, spi=f"{e.spi:08x}"),
                           detail=msg("{src} kept sending ESP on SPI 0x{spi} until +{t} s, after "
                                      "{who} had gone silent: the restarted peer has no such SA "
                                      "any more and drops these packets (it may answer "
                                      "INVALID_SPI).", src=ip_text(e.src), spi=f"{e.spi:08x}",
                                      t=ctx.rel(e.last_ts), who=who),
                           basis="inferred",
                           evidence=ctx.evidence([e.last_ref], e.first_ts, e.last_ts,
                                                 esp_spis=[f"{e.spi:08x}"]),
                           wireshark_filter=esp_filter([e.spi]),
                           tunnel=t.id)


def _silence_start(old, new, who, esp_sas):
    ts = [m.ts for m in old.messages if m.src == who]
    ts += [e.last_ts for e in esp_sas if e.src == who and e.first_ts < new.first_ts]
    return max(ts) if ts else old.first_ts


@rule
def invalid_spi(ctx):
    for sa in ctx.state.ike_sas:
        for m in sa.messages:
            if m.copy:
                continue
            for n in m.notifies:
                bad = n.invalid_spi
                if bad is None:
                    continue
                t = ike_tunnel_of(ctx, sa)
                yield make("ESP_SPI_MISMATCH", f"{sa.id}|{m.n}|invalid-spi",
                           title=msg("{who} reports INVALID_SPI {spi}", who=ip_text(m.src),
                                     spi=bad.hex() or '?'),
                           detail=msg("{who} received ESP on SPI {spi} for which it has no SA "
                                      "(INVALID_SPI, in the clear).",
                                      who=endpoint_text((m.ipver, m.src, m.sport)),
                                      spi=bad.hex() or '?'),
                           evidence=ctx.evidence(m.frames, m.ts, None, ike_spis=[sa.ispi.hex()],
                                                 esp_spis=[bad.hex()] if bad else []),
                           wireshark_filter=ike_filter(sa, msgids=[m.msgid]),
                           tunnel=t.id if t else None)


#: CREATE_CHILD_SA requests this soon after IKE_AUTH completed are not rekeys (no lifetime is
#: that short): both sides creating a Child SA for the same traffic
EARLY_CHILD = 10.0


@rule
def rekey_collisions(ctx):
    for sa in ctx.state.ike_sas:
        if sa.version != 2:
            continue
        cc = sorted((x for x in sa.exchanges
                     if x.exch == ExchangeType.CREATE_CHILD_SA and x.requests),
                    key=lambda x: x.requests[0].ts)
        est = None
        for i, a in enumerate(cc):
            for b in cc[i + 1:]:
                dt = b.requests[0].ts - a.requests[0].ts
                if dt > 1.0:
                    break  # in time order: no later request is closer
                if b.requester == a.requester:
                    continue
                t = ike_tunnel_of(ctx, sa)
                if est is None:
                    est = established_ts(sa) or float("-inf")
                after = a.requests[0].ts - est
                detail = msg("CREATE_CHILD_SA requests from both sides {dt:.3f} s apart "
                             "(Message IDs {a} and {b}).", dt=dt, a=a.msgid, b=b.msgid)
                if 0 <= after <= EARLY_CHILD:
                    detail += msg(" They came {after:.2f} s after IKE_AUTH completed, too early "
                                  "for a rekey: both sides most likely created a Child SA for "
                                  "the same traffic (a duplicate, one of them usually carries "
                                  "no traffic).", after=after)
                lo, hi = sorted((a.index, b.index))
                yield make("IKE_REKEY_COLLISION", f"{sa.id}|coll|{lo}|{hi}",
                           title=msg("Simultaneous CREATE_CHILD_SA from both peers"),
                           detail=detail,
                           evidence=ctx.evidence(ctx.msg_refs(a.msgs + b.msgs),
                                                 a.requests[0].ts, b.requests[0].ts,
                                                 ike_spis=[sa.ispi.hex()]),
                           wireshark_filter=ike_filter(sa, msgids=[a.msgid, b.msgid]),
                           tunnel=t.id if t else None)
