"""Findings read from decrypted IKE and ESP (--keys): ``basis: decrypted``.

The exact notification inside IKE_AUTH / CREATE_CHILD_SA / INFORMATIONAL (IKEv2) and the
encrypted Informationals of IKEv1 use the same codes as the keyless inferences
(IKE_AUTH_FAILED, IKE_TS_UNACCEPTABLE, CHILD_SA_FAILED, ESP_SPI_MISMATCH, DPD_TIMEOUT ...) and
supersede the inferred finding about the same exchange (:func:`pcapvpn.rules.supersede`).  New
codes cover what only decryption shows: certificates outside their validity at the packet's
time, overlapping traffic selectors, configuration-payload failures, negotiated SAs that never
carry ESP, inner traffic without answers, keys that do not match an SA, and SAs left undecrypted.
The IKE <-> ESP cross-check ties every ESP SA to the child SA that announced its SPI.

A rule never parses bytes: what the payloads say comes from the tracker
(``IkeMsg.inner``, ``EspSA.decrypt``).
"""

from __future__ import annotations

import datetime as _dt

from dissect.vpn import registry as reg
from dissect.vpn.registry import (
    CfgAttributeV1, ExchangeType, NotifyV1, NotifyV2, PayloadV2, ProtocolId,
)
from pcapvpn.findings import Term, declare, make, msg, msg_join
from pcapvpn.rules import routing as _routing  # noqa: F401  (declares SUBNET_OVERLAP)
from pcapvpn.rules import rule, supersede
from pcapvpn.rules.common import (
    endpoint_text, esp_filter, ike_facts, ike_filter, ike_tunnel_of, implementations, ip_text,
    side_of, step_label,
)

OPENED = ("ok", "unverified")
#: R-U-THERE sequence numbers spelled out in a detail
MAX_SEQS = 5

#: IKEv2 error notifies that refuse a child SA (RFC 7296 §3.10.1)
_V2_CHILD = frozenset((NotifyV2.NO_PROPOSAL_CHOSEN, NotifyV2.INVALID_KE_PAYLOAD,
                       NotifyV2.SINGLE_PAIR_REQUIRED, NotifyV2.NO_ADDITIONAL_SAS,
                       NotifyV2.INVALID_SELECTORS, NotifyV2.TEMPORARY_FAILURE,
                       NotifyV2.CHILD_SA_NOT_FOUND))

declare("KEYS_MISMATCH", "capture", "warning",
        "Keys were given for an SA, but they do not open its messages: the integrity check (ICV) "
        "fails or the decrypted bytes make no sense. Either the key table is for another SA / "
        "another run, or (IKEv1) the two peers derived different keys.",
        ["Check that the key table was written during this capture (strongSwan save-keys appends "
         "to its files: an old line for a reused SPI does not match), and that ESP lines are "
         "matched by SPI.",
         "IKEv1: when the initiator's and the responder's keys for the same SA differ, the peers "
         "do not share the pre-shared key — fix the PSK."],
        failure=False)
declare("KEYS_MISSING", "capture", "info",
        "Keys were given, but not for every encrypted SA: those SAs are listed as not decrypted "
        "and judged from their cleartext headers only.",
        ["Add the missing lines to the key tables (strongSwan save-keys on the gateway that "
         "negotiated the SA; `ip xfrm state` for ESP keys of the Linux kernel)."],
        failure=False)
declare("CERT_EXPIRED", "authentication", "error",
        "A certificate sent in IKE had expired at the time of the packet: the peer will refuse "
        "it (AUTHENTICATION_FAILED).",
        ["Renew the certificate (and reload it: strongSwan `swanctl --load-creds`).",
         "Check the gateway's clock if the certificate should still be valid."])
declare("CERT_NOT_YET_VALID", "authentication", "error",
        "A certificate sent in IKE was not yet valid at the time of the packet: a clock is wrong "
        "or the certificate was issued with a future start date.",
        ["Check NTP on both gateways (and on the CA that issued the certificate)."])
declare("TS_OVERLAP", "routing", "warning",
        "Former code of SUBNET_OVERLAP with basis decrypted (the traffic selectors overlap, e.g. "
        "the home LAN equals the office LAN, both 192.168.1.0/24). No longer emitted: "
        "SUBNET_OVERLAP findings read from decrypted selectors name it in `aliases` for one "
        "schema version.",
        ["Renumber one of the networks, or NAT the client side into a distinct range before it "
         "enters the tunnel (strongSwan: a virtual IP from a pool outside both LANs).",
         "Remote access: hand out a virtual IP and narrow the remote selectors to the networks "
         "actually needed."])
declare("CP_FAILED", "child_sa", "error",
        "The remote-access configuration failed: no internal address could be assigned "
        "(INTERNAL_ADDRESS_FAILURE), the peer requires a configuration payload "
        "(FAILED_CP_REQUIRED), or mode-config / XAUTH failed.",
        ["Check the responder's address pool (exhausted, or not configured for this connection: "
         "strongSwan `pools =`, Cisco `ip local pool`).",
         "FAILED_CP_REQUIRED: the client must request a virtual IP (strongSwan `vips = 0.0.0.0`).",
         "XAUTH failed: check the user name / password and the responder's XAUTH backend."])
declare("ESP_SA_UNUSED", "dataplane", "warning",
        "A child SA was negotiated (its SPIs announced in IKE) but neither of its ESP SAs ever "
        "carried a packet in the capture.",
        ["Check that traffic matching the traffic selectors is sent at all (routing / policy on "
         "the gateways: strongSwan installs policies only for the negotiated selectors).",
         "Check for a filter dropping ESP (IP protocol 50) or UDP 4500 on the path."])
declare("INNER_NO_ANSWER", "inner", "warning",
        "Inside a working tunnel (answers keep coming through it), some requests got no answer: "
        "ICMP echo requests or TCP connection attempts (SYN) to hosts behind the gateway that "
        "answer other requests. The VPN works; the problem is beyond it (a firewall or a "
        "service on the host, routing for some destinations behind the gateway). Unanswered DNS "
        "queries are DNS_NO_ANSWER; hosts that never answer are INNER_NO_RETURN.",
        ["Check the route back from the target network to the client's (virtual) address "
         "through the gateway, and firewalls behind the gateway.",
         "Check that the service listens on the host and that the host's own firewall admits the "
         "VPN clients' addresses."])


def _msgs(sa):
    """Opened, described messages of an IKE SA (copies excluded)."""
    return [m for m in sa.messages
            if not m.copy and m.inner is not None and m.decrypt_status in OPENED]


def _tid(ctx, sa):
    t = ike_tunnel_of(ctx, sa)
    return t.id if t else None


def _spis(sa):
    return [sa.ispi.hex(), sa.rspi.hex()]


def _date(ts) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _key_note(m) -> str:
    return msg(" (decrypted with {keys})", keys=m.key_origin) if m.key_origin else ""


def _exchange(sa, m):
    return sa.exchanges[m.exchange] if m.exchange is not None else None


def _identities(sa, upto_ts=None) -> str:
    """IDi / IDr / certificate subjects seen in the SA's decrypted messages."""
    parts = []
    for m in _msgs(sa):
        if upto_ts is not None and m.ts > upto_ts:
            break
        for pt, _it, val in m.inner.ids:
            label = reg.payload_name(sa.version, pt)
            if sa.version == 1:
                if m.exch not in (ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE):
                    continue
                label = f"ID of {ip_text(m.src)}"
            txt = f"{label}={val}"
            if txt not in parts:
                parts.append(txt)
        for c in m.inner.certs:
            if "subject" in c:
                txt = f"certificate of {ip_text(m.src)}: {c['subject']}"
                if txt not in parts:
                    parts.append(txt)
    return "; ".join(parts)


def _phase1_done(sa, before_ts) -> bool:
    for x in sa.exchanges:
        if x.exch == ExchangeType.MAIN_MODE and x.last_step >= 6 and x.msgs[-1].ts <= before_ts:
            return True
        if x.exch == ExchangeType.AGGRESSIVE and x.last_step >= 3:
            return True
    return False


def _v1_failed_exchange(sa, m):
    """The exchange an IKEv1 Informational answers: the latest Quick Mode / Transaction / Main
    Mode exchange with a message from the other side before it."""
    best = None
    for x in sa.exchanges:
        if x.exch == ExchangeType.INFORMATIONAL_V1 or not x.msgs:
            continue
        if x.msgs[0].ts <= m.ts:
            best = x
    return best


# -- the exact notifications --------------------------------------------------------------------

def _classify(sa, m, ntype):
    """(code, kind) for an error notification found in a decrypted message."""
    x = _exchange(sa, m)
    if sa.version == 2:
        if ntype == NotifyV2.AUTHENTICATION_FAILED:
            return "IKE_AUTH_FAILED", "auth"
        if ntype == NotifyV2.TS_UNACCEPTABLE:
            return "IKE_TS_UNACCEPTABLE", "ts"
        if ntype in (NotifyV2.INTERNAL_ADDRESS_FAILURE, NotifyV2.FAILED_CP_REQUIRED):
            return "CP_FAILED", "cp"
        if ntype == NotifyV2.INVALID_SPI:
            return "ESP_SPI_MISMATCH", "spi"
        if ntype in _V2_CHILD and x is not None and x.exch in (ExchangeType.IKE_AUTH, ExchangeType.CREATE_CHILD_SA):
            if x.exch == ExchangeType.CREATE_CHILD_SA and _is_ike_rekey(x):
                return "IKE_NO_PROPOSAL_CHOSEN" if ntype == NotifyV2.NO_PROPOSAL_CHOSEN else \
                    "IKE_ERROR_NOTIFY", "ike-rekey"
            return "CHILD_SA_FAILED", "child"
        return "IKE_ERROR_NOTIFY", "other"
    if ntype in (NotifyV1.INVALID_HASH_INFORMATION, NotifyV1.AUTHENTICATION_FAILED, NotifyV1.INVALID_SIGNATURE):
        return "IKE_AUTH_FAILED", "auth"
    if ntype == NotifyV1.INVALID_SPI:
        return "ESP_SPI_MISMATCH", "spi"
    p1 = _phase1_done(sa, m.ts)
    if ntype == NotifyV1.PAYLOAD_MALFORMED and not p1:
        # the responder could not read MM5: with PSK, the peers derived different keys
        return "IKE_AUTH_FAILED", "auth"
    if ntype in (NotifyV1.NO_PROPOSAL_CHOSEN, NotifyV1.INVALID_ID_INFORMATION) and p1:
        return "CHILD_SA_FAILED", "child"
    if ntype == NotifyV1.INVALID_ID_INFORMATION:
        return "IKE_AUTH_FAILED", "auth"
    return "IKE_ERROR_NOTIFY", "other"


def _is_ike_rekey(x) -> bool:
    """A CREATE_CHILD_SA whose request proposes an IKE SA (protocol 1): an IKE SA rekey."""
    for m in x.requests:
        if m.inner is not None:
            return any(p.protocol == ProtocolId.IKE for p in m.inner.proposals or ())
    return False


_SUPERSEDES = {
    "auth": ("IKE_AUTH_FAILED", "CHILD_SA_FAILED", "IKE_ERROR_NOTIFY"),
    "ts": ("IKE_TS_UNACCEPTABLE", "CHILD_SA_FAILED"),
    "child": ("CHILD_SA_FAILED", "IKE_TS_UNACCEPTABLE", "IKE_NO_PROPOSAL_CHOSEN"),
    "cp": ("CHILD_SA_FAILED", "IKE_AUTH_FAILED"),
    "spi": ("ESP_SPI_MISMATCH",),
    "ike-rekey": ("CHILD_SA_FAILED", "IKE_ERROR_NOTIFY"),
    "other": ("IKE_ERROR_NOTIFY", "IKE_AUTH_FAILED", "CHILD_SA_FAILED"),
}



@rule
def notifications(ctx):
    for sa in ctx.state.ike_sas:
        groups = {}
        for m in _msgs(sa):
            for n in m.inner.notifies:
                if not n.is_error:
                    continue
                ntype = n.notify_type
                code, kind = _classify(sa, m, ntype)
                groups.setdefault((code, kind, ntype), []).append((m, n))
        for (code, kind, ntype), hits in groups.items():
            yield _notify_finding(ctx, sa, code, kind, ntype, hits)


def _notify_finding(ctx, sa, code, kind, ntype, hits):
    m, n = hits[0]
    name = reg.notify_name(sa.version, ntype)
    who = ip_text(m.src)
    peer = ip_text(m.dst)
    x = _exchange(sa, m)
    related = list(x.msgs) if x is not None else [m]
    fx = _v1_failed_exchange(sa, m) if sa.version == 1 else None
    if sa.version == 1:
        if fx is not None:
            related = list(fx.msgs) + [h[0] for h in hits]
    else:
        related += [h[0] for h in hits if h[0] not in related]
    refs = ctx.msg_refs(related)
    exch = reg.exchange_name(m.exch, short=True)
    count = msg(" ({n} times)", n=len(hits)) if len(hits) > 1 else ""
    detail = msg("{sender} sent {name} in an encrypted {exch} {what}{count}{note}.",
                 sender=endpoint_text((m.ipver, m.src, m.sport)), name=name, exch=exch,
                 what=Term('response' if m.is_response else 'message'), count=count,
                 note=_key_note(m))
    esp_spis = []
    title = msg("{name} from {who} (decrypted)", name=name, who=who)
    if kind == "auth":
        ids = _identities(sa, m.ts)
        detail += (msg(" {who} rejected {peer}'s authentication", who=who, peer=peer)
                   + (msg(" — the request carried: {ids}", ids=ids) if ids else "") + ".")
        if sa.version == 1 and sa.crypto is not None and getattr(sa.crypto, "keys_differ", False):
            detail += msg(" The two peers' phase-1 keys differ (each side's messages open only "
                          "with its own key line): they derived different keys, i.e. the "
                          "pre-shared keys do not match.")
        elif sa.version == 1 and ntype == NotifyV1.PAYLOAD_MALFORMED:
            detail += msg(" An IKEv1 responder that cannot parse MM5 derived a different key: "
                          "with pre-shared keys, the PSKs differ.")
    elif kind in ("ts", "child"):
        req = _request_of(x)
        if req is not None and (req.inner.ts_initiator or req.inner.ts_responder):
            detail += msg(" The request asked for {tsi} === {tsr}",
                          tsi=_ts_text(req.inner.ts_initiator),
                          tsr=_ts_text(req.inner.ts_responder))
            props = _child_proposals(req)
            if props:
                detail += msg(" with {props}", props=props)
            detail += "."
        elif req is not None and _child_proposals(req):
            detail += msg(" The request proposed {props}.", props=_child_proposals(req))
        if sa.version == 2 and x is not None and x.exch == ExchangeType.IKE_AUTH:
            detail += (msg(" The IKE SA itself is up (IKE_AUTH succeeded); only the child SA was "
                           "refused.") if any(r.inner and PayloadV2.IDR in r.inner.payload_types
                                              for r in x.responses if r.inner) else "")
        if sa.version == 1:
            title = msg("Quick Mode refused by {who}: {name} (decrypted)", who=who, name=name)
    elif kind == "cp":
        detail += msg(" The responder could not give the client an internal address / "
                      "configuration.")
    elif kind == "spi":
        bad = n.invalid_spi or b""
        if bad:
            esp_spis = [bad.hex()]
            detail += msg(" The SPI it has no SA for: 0x{spi}.", spi=bad.hex())
            title = msg("{who} reports INVALID_SPI 0x{spi} (decrypted)", who=who, spi=bad.hex())
    step = fx if sa.version == 1 and fx is not None else x
    facts = ike_facts(sa, None, side_of(sa, m.src), impl=implementations(sa),
                      refused_by=side_of(sa, m.src),
                      exchange=step_label(step) if step is not None else exch)
    f = make(code, f"{sa.id}|dec|{kind}|{ntype}|{m.n}", title=title, detail=detail,
             basis="decrypted", facts=facts,
             evidence=ctx.evidence(refs, min(r.ts for r in related), max(r.ts for r in related),
                                   ike_spis=_spis(sa), esp_spis=esp_spis,
                                   peers=[who, peer]),
             wireshark_filter=ike_filter(sa, msgids=sorted({r.msgid for r in related})),
             tunnel=_tid(ctx, sa))
    return supersede(f, _SUPERSEDES[kind], frames=f.evidence.frames, esp_spis=esp_spis)


def _request_of(x):
    if x is None:
        return None
    for m in x.msgs:
        if m.inner is not None and not m.is_response and m.decrypt_status in OPENED:
            return m
    return None


def _ts_text(sels) -> str:
    from dissect.vpn.ident import selector_text

    return ", ".join(selector_text(s) for s in sels) or "(none)"


def _child_proposals(m) -> str:
    from pcapvpn.rules.common import proposal_texts

    props = [p for p in (m.inner.proposals or ()) if p.protocol in (ProtocolId.AH, ProtocolId.ESP)]
    return "; ".join(proposal_texts(m.version, props))


# -- XAUTH / mode-config ------------------------------------------------------------------------

@rule
def config_failures(ctx):
    for sa in ctx.state.ike_sas:
        if sa.version != 1:
            continue
        for m in _msgs(sa):
            if m.exch != ExchangeType.TRANSACTION:
                continue
            for cfg_type, attrs in m.inner.config:
                status = next((v for t, v in attrs if t == CfgAttributeV1.XAUTH_STATUS), None)
                if status != 0:
                    continue
                f = make("IKE_AUTH_FAILED", f"{sa.id}|dec|xauth|{m.n}",
                         facts=ike_facts(sa, None, side_of(sa, m.src), exchange="XAUTH",
                                         impl=implementations(sa)),
                         title=msg("XAUTH failed: {who} sent STATUS=FAIL (decrypted)",
                                   who=ip_text(m.src)),
                         detail=msg("{who} ended XAUTH with XAUTH-STATUS FAIL in a Transaction "
                                    "exchange{note}: the user name or password was refused.",
                                    who=endpoint_text((m.ipver, m.src, m.sport)),
                                    note=_key_note(m)),
                         basis="decrypted",
                         evidence=ctx.evidence(m.frames, m.ts, None, ike_spis=_spis(sa)),
                         wireshark_filter=ike_filter(sa, msgids=[m.msgid]),
                         tunnel=_tid(ctx, sa))
                yield supersede(f, ("IKE_AUTH_FAILED",), frames=f.evidence.frames)


# -- certificates -------------------------------------------------------------------------------

@rule
def certificates(ctx):
    for sa in ctx.state.ike_sas:
        seen = set()
        for m in _msgs(sa):
            for c in m.inner.certs:
                if "subject" not in c:
                    continue
                key = (c["subject"], c.get("serial"), m.src)
                if key in seen:
                    continue
                if m.ts > c["not_after"]:
                    code = "CERT_EXPIRED"
                    short = msg("expired on {date}", date=_date(c['not_after']))
                    when = short + msg(", {days:.1f} days before this packet",
                                       days=(m.ts - c['not_after']) / 86400)
                elif m.ts < c["not_before"]:
                    code = "CERT_NOT_YET_VALID"
                    short = msg("is valid only from {date}", date=_date(c['not_before']))
                    when = short + msg(", {days:.1f} days after this packet",
                                       days=(c['not_before'] - m.ts) / 86400)
                else:
                    continue
                seen.add(key)
                yield make(code, f"{sa.id}|dec|cert|{c['subject']}|{c.get('serial')}",
                           title=msg("Certificate of {who} {when}", who=ip_text(m.src),
                                     when=short),
                           detail=msg("{who} sent the certificate {subject} (issuer {issuer}) in "
                                      "{exchange}; it {when} ({date}){note}.", who=ip_text(m.src),
                                      subject=c['subject'], issuer=c['issuer'],
                                      exchange=reg.exchange_name(m.exch, short=True), when=when,
                                      date=_date(m.ts), note=_key_note(m)),
                           basis="decrypted",
                           evidence=ctx.evidence(m.frames, m.ts, None, ike_spis=_spis(sa)),
                           wireshark_filter=ike_filter(sa, msgids=[m.msgid]),
                           tunnel=_tid(ctx, sa))


# -- traffic selectors ---------------------------------------------------------------------------

def _overlap(a, b):
    """Intersection size of two selectors of the same IP version (0 when disjoint)."""
    if a[0] != b[0]:
        return 0
    lo = max(a[1], b[1])
    hi = min(a[2], b[2])
    return hi - lo + 1 if hi >= lo else 0


def _is_any(sel) -> bool:
    ipver = sel[0]
    bits = 32 if ipver == 4 else 128
    return sel[1] == 0 and sel[2] == (1 << bits) - 1


@rule
def selectors_overlap(ctx):
    for sa in ctx.state.ike_sas:
        done = set()
        for m in _msgs(sa):
            tsi, tsr = m.inner.ts_initiator, m.inner.ts_responder
            if not tsi or not tsr:
                continue
            x = _exchange(sa, m)
            xkey = x.index if x is not None else m.n
            if xkey in done:
                continue
            for a in tsi:
                for b in tsr:
                    if _is_any(a) or _is_any(b):
                        continue
                    n = _overlap(a, b)
                    # a host address inside the other side (a virtual IP from the remote
                    # network) is no overlap of two networks
                    if n <= 1:
                        continue
                    done.add(xkey)
                    from dissect.vpn.ident import selector_text

                    yield make(
                        "SUBNET_OVERLAP", f"{sa.id}|dec|ts|{xkey}", severity="warning",
                        title=msg("Local and remote subnets overlap: {a} and {b}",
                                  a=selector_text(a), b=selector_text(b)),
                        detail=msg("The traffic selectors in {exchange} from {who} ({tsi} === "
                                   "{tsr}) share {n} addresses{note}: the initiator's side and the "
                                   "responder's side use the same address range (the 'home LAN "
                                   "equals office LAN' problem).",
                                   exchange=reg.exchange_name(m.exch, short=True),
                                   who=ip_text(m.src), tsi=_ts_text(tsi), tsr=_ts_text(tsr), n=n,
                                   note=_key_note(m)),
                        basis="decrypted",
                        evidence=ctx.evidence(m.frames, m.ts, None, ike_spis=_spis(sa)),
                        wireshark_filter=ike_filter(sa, msgids=[m.msgid]),
                        tunnel=_tid(ctx, sa))
                    break
                if xkey in done:
                    break


# -- IKEv1 DPD (R-U-THERE / ACK in encrypted Informationals) ------------------------------------

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
                                       ike_spis=_spis(sa), peers=[who, peer]),
                 wireshark_filter=ike_filter(sa, exch=ExchangeType.INFORMATIONAL_V1),
                 tunnel=_tid(ctx, sa))
        yield supersede(f, ("DPD_TIMEOUT",), frames=f.evidence.frames)


def _dpd_seq(m) -> int:
    """The sequence number of the message's (first well-formed) R-U-THERE."""
    return next((n.dpd_seq for n in m.inner.notifies
                 if n.notify_type == NotifyV1.R_U_THERE and n.dpd_seq is not None), 0)


# -- keys that do not match, SAs without keys ----------------------------------------------------

@rule
def keys_mismatch(ctx):
    for sa in ctx.state.ike_sas:
        enc = [m for m in sa.messages if m.encrypted and not m.copy]
        bad = [m for m in enc if m.decrypt_status in ("icv_failed", "malformed")]
        differ = sa.version == 1 and sa.crypto is not None and \
            getattr(sa.crypto, "keys_differ", False)
        if not bad and not differ:
            continue
        if differ:
            detail = msg("The key table holds {n} phase-1 keys for initiator cookie {cookie}: the "
                         "initiator's messages open only with one, the responder's only with "
                         "another. Both peers wrote their own key, and they differ: the peers "
                         "derived different keys (with pre-shared keys: the PSKs do not match).",
                         n=len(sa.crypto.keys), cookie=sa.ispi.hex())
            refs = ctx.msg_refs([m for m in enc if m.decrypt_status in OPENED])
            title = msg("The peers of IKE SA {sa} derived different keys", sa=sa.ispi.hex())
        else:
            why = bad[0].decrypt_detail or bad[0].decrypt_status
            half = [m for m in bad if m.inner is not None]
            detail = msg("{n} of {total} encrypted IKE messages of SA {sa} do not open with the "
                         "keys given ({why}).", n=len(bad), total=len(enc), sa=sa.id,
                         why=Term(why))
            if half:
                detail += msg(" Their payloads still decrypt to a valid chain: the encryption key "
                              "matches, the integrity key does not (or the ICVs were computed "
                              "wrongly by the sender).")
            refs = ctx.msg_refs(bad)
            title = msg("Keys do not match IKE SA {sa}", sa=f"{sa.ispi.hex()}/{sa.rspi.hex()}")
        yield make("KEYS_MISMATCH", f"{sa.id}|dec|keys", title=title, detail=detail,
                   basis="decrypted",
                   evidence=ctx.evidence(refs, sa.first_ts, sa.last_ts, ike_spis=_spis(sa)),
                   wireshark_filter=ike_filter(sa), tunnel=_tid(ctx, sa))
    for e in ctx.state.esp_sas:
        st = e.decrypt
        if st is None or not st.failed:
            continue
        spi = f"{e.spi:08x}"
        total = st.opened + st.failed
        if st.opened:
            detail = msg("{n} of {total} packets on SPI 0x{spi} ({src} -> {dst}) fail the "
                         "integrity check while {ok} open with the same key: corrupted in "
                         "transit, or another SA reusing the SPI.", n=st.failed, total=total,
                         spi=spi, src=ip_text(e.src), dst=ip_text(e.dst), ok=st.opened)
        else:
            detail = msg("None of the {total} packets on SPI 0x{spi} ({src} -> {dst}) opens with "
                         "the key given ({keys}): {why}: the keys do not match this SA (a line "
                         "for another SA or another run of the gateway).", total=total, spi=spi,
                         src=ip_text(e.src), dst=ip_text(e.dst), keys=st.key_origin or '?',
                         why=msg("the ICV does not match") if st.icv_failed else
                         msg("the decrypted trailer is not valid"))
        refs = [st.first_fail[1]] + ([st.last_fail[1]] if st.last_fail else [])
        yield make("KEYS_MISMATCH", f"esp|{e.dst.hex()}|{spi}|dec|keys",
                   title=msg("Keys do not match ESP SA 0x{spi}", spi=spi),
                   detail=detail, basis="decrypted",
                   evidence=ctx.evidence(refs, st.first_fail[0],
                                         st.last_fail[0] if st.last_fail else None,
                                         esp_spis=[spi], peers=[ip_text(e.src), ip_text(e.dst)]),
                   wireshark_filter=esp_filter([e.spi]), tunnel=_esp_tunnel(ctx, e))


def _esp_tunnel(ctx, e):
    for t in ctx.state.tunnels:
        if e in t.esp_sas:
            return t.id
    return None


@rule
def keys_missing(ctx):
    if getattr(ctx.state, "keys", None) is None:
        return
    for t in ctx.state.tunnels:
        ike = [sa for sa in t.ike_sas if any(m.decrypt_status == "no_keys" for m in sa.messages)]
        esp = [e for e in t.esp_sas if e.proto == "esp" and (
            e.decrypt is None or e.decrypt.status == "unsupported")]
        if not ike and not esp:
            continue
        parts = []
        if ike:
            parts.append(msg("IKE SA(s) {sas} (no line in ikev1/ikev2_decryption_table)",
                             sas=', '.join(sa.ispi.hex() + '/' + sa.rspi.hex() for sa in ike)))
        if esp:
            why = []
            for e in esp:
                r = e.decrypt.reason if e.decrypt is not None and e.decrypt.reason else "no key"
                why.append(msg("0x{spi} ({why})", spi=f"{e.spi:08x}", why=Term(r)))
            parts.append(msg("ESP SA(s) {sas}", sas=msg_join(', ', why)))
        refs = [sa.messages[0].frames[0] for sa in ike] + [e.first_ref for e in esp]
        flt = " || ".join([f"({ike_filter(sa)})" for sa in ike]
                          + ([f"({esp_filter([e.spi for e in esp])})"] if esp else []))
        yield make("KEYS_MISSING", f"{t.id}|dec|missing",
                   title=msg("Not decrypted: {ike} IKE SA(s), {esp} ESP SA(s) of {tunnel}",
                             ike=len(ike), esp=len(esp), tunnel=t.id),
                   detail=msg("Keys were given, but not for: {parts}. These SAs are judged from "
                              "their cleartext headers only.", parts=msg_join("; ", parts)),
                   basis="observed",
                   evidence=ctx.evidence(refs, None, None,
                                         ike_spis=[sa.ispi.hex() for sa in ike],
                                         esp_spis=[f"{e.spi:08x}" for e in esp]),
                   wireshark_filter=flt, tunnel=t.id)


# -- IKE <-> ESP cross-check ---------------------------------------------------------------------

class Child:
    """A child SA announced in decrypted IKE: the SPIs each side receives on."""

    __slots__ = ("sa", "x", "ts", "proto", "spis", "deleted", "msgs")

    def __init__(self, sa, x, ts, proto, spis, msgs):
        self.sa = sa
        self.x = x
        self.ts = ts
        self.proto = proto
        self.spis = spis          # {int spi: packed address of the peer receiving on it}
        self.deleted = None       # (ts, IkeMsg) of the first DELETE naming it
        self.msgs = msgs


def children(sa) -> list:
    """Child SAs of an IKE SA from its decrypted exchanges (IKEv2 IKE_AUTH / CREATE_CHILD_SA,
    IKEv1 Quick Mode) and the DELETEs naming them (RFC 7296 §3.11 / RFC 2408 §3.15: a Delete
    lists the sender's inbound SPIs)."""
    out = []
    for x in sa.exchanges:
        if sa.version == 2 and x.exch in (ExchangeType.IKE_AUTH, ExchangeType.CREATE_CHILD_SA):
            req = _request_of(x)
            resp = next((m for m in x.msgs if m.is_response and m.inner is not None
                         and m.decrypt_status in OPENED), None)
        elif sa.version == 1 and x.exch == ExchangeType.QUICK_MODE:
            req = next((m for m in x.msgs if m.step == 1 and m.inner is not None
                        and m.decrypt_status in OPENED), None)
            resp = next((m for m in x.msgs if m.step == 2 and m.inner is not None
                         and m.decrypt_status in OPENED), None)
        else:
            continue
        if req is None or resp is None:
            continue
        rs = resp.inner.child_spis
        qs = req.inner.child_spis
        if not rs or not qs:
            continue
        proto = rs[0].protocol
        q = next((c for c in qs if c.protocol == proto), None)
        if q is None:
            continue
        spis = {q.value: req.src, rs[0].value: resp.src}
        out.append(Child(sa, x, resp.ts, proto, spis, [req, resp]))
    by_spi = {}
    for c in out:
        for s in c.spis:
            by_spi.setdefault(s, []).append(c)
    for m in _msgs(sa):
        for dl in m.inner.deletes:
            proto = dl.protocol
            if proto == ProtocolId.IKE:
                # deleting an IKEv2 SA deletes its child SAs (RFC 7296 §1.4.1) — unless it was
                # rekeyed: the new IKE SA inherits them (§2.18).  IKEv1 phase 2 SAs outlive
                # their phase 1.
                hit = out if sa.version == 2 and sa.rekeyed_by is None else []
            elif proto in (ProtocolId.AH, ProtocolId.ESP):
                hit = [c for s in dl.spi_values for c in by_spi.get(s, ())]
            else:
                continue
            for c in hit:
                if c.deleted is None and m.ts >= c.ts:
                    c.deleted = (m.ts, m)
    return out


def _fully_decrypted(sa) -> bool:
    enc = [m for m in sa.messages if m.encrypted and not m.copy]
    return bool(enc) and all(m.decrypt_status in OPENED or m.decrypt_detail
                             and m.decrypt_detail.startswith("fragment") for m in enc)


@rule
def cross_check(ctx):
    th = ctx.th
    for t in ctx.state.tunnels:
        kids = []
        for sa in t.ike_sas:
            kids.extend(children(sa))
        if not kids:
            continue
        by_spi = {}
        for c in kids:
            for s in c.spis:
                by_spi.setdefault(s, []).append(c)
        complete = bool(t.ike_sas) and all(
            _fully_decrypted(sa) and not sa.mid_session for sa in t.ike_sas)
        ike_start = min(sa.first_ts for sa in t.ike_sas)
        used = set()
        for e in t.esp_sas:
            if e.proto not in ("esp", "ah"):
                continue
            cs = [c for c in by_spi.get(e.spi, ()) if c.spis.get(e.spi) == e.dst] or \
                by_spi.get(e.spi, [])
            spi = f"{e.spi:08x}"
            if cs:
                c = max((c for c in cs if c.ts <= e.first_ts + 1.0), key=lambda c: c.ts,
                        default=cs[0])
                used.add(id(c))
                if c.deleted is not None and e.last_ts > c.deleted[0] + th.delete_grace:
                    dts, dm = c.deleted
                    after = e.packets_between(dts + th.delete_grace)
                    refs = list(dm.frames) + [e.last_ref]
                    f = make("ESP_SPI_MISMATCH", f"{t.id}|dec|after-delete|{spi}",
                             title=msg("ESP on SPI 0x{spi} after its SA was deleted (decrypted "
                                       "DELETE)", spi=spi),
                             detail=msg("{who} deleted the child SA with SPIs {spis} at +{t} s "
                                        "(DELETE in {exchange}, decrypted), but {src} kept sending "
                                        "ESP on 0x{spi} until +{t1} s", who=ip_text(dm.src),
                                        spis=_spi_list(c), t=ctx.rel(dts),
                                        exchange=reg.exchange_name(dm.exch, short=True),
                                        src=ip_text(e.src), spi=spi, t1=ctx.rel(e.last_ts))
                                    + (msg(" (at least {n} packets more than {grace:g} s after "
                                           "the DELETE)", n=after, grace=th.delete_grace)
                                       if after else "")
                                    + msg(": the receiver drops them (and may answer "
                                          "INVALID_SPI)."),
                             basis="decrypted",
                             evidence=ctx.evidence(refs, dts, e.last_ts,
                                                   ike_spis=_spis(c.sa), esp_spis=[spi]),
                             wireshark_filter=f"({esp_filter([e.spi])}) || "
                                              f"({ike_filter(c.sa, msgids=[dm.msgid])})",
                             tunnel=t.id)
                    yield supersede(f, ("ESP_SPI_MISMATCH",), esp_spis=[spi])
                continue
            # no child SA announced this SPI
            if not complete or e.first_ts < ike_start or e.mid_session(th.replay_window):
                continue
            f = make("ESP_SPI_MISMATCH", f"{t.id}|dec|unannounced|{spi}",
                     title=msg("ESP on SPI 0x{spi} that no IKE exchange announced", spi=spi),
                     detail=msg("{src} sent {n} ESP packet(s) to {dst} on SPI 0x{spi} from +{t} s, "
                                "but no child SA negotiated in the capture (all {msgs} IKE "
                                "messages decrypted; SPIs announced: {spis}) uses it: an SA from "
                                "an earlier IKE SA or a peer that lost its state.",
                                src=ip_text(e.src), n=e.packets, dst=ip_text(e.dst), spi=spi,
                                t=ctx.rel(e.first_ts),
                                msgs=sum(len(sa.messages) for sa in t.ike_sas),
                                spis=', '.join('0x%08x' % s for s in sorted(by_spi))),
                     basis="decrypted",
                     evidence=ctx.evidence([e.first_ref, e.last_ref], e.first_ts, e.last_ts,
                                           esp_spis=[spi],
                                           peers=[ip_text(e.src), ip_text(e.dst)]),
                     wireshark_filter=esp_filter([e.spi]), tunnel=t.id)
            yield supersede(f, ("ESP_SPI_MISMATCH",), esp_spis=[spi])
        seen_spis = {e.spi for e in t.esp_sas}
        for c in kids:
            if id(c) in used or any(s in seen_spis for s in c.spis):
                continue
            if ctx.now - c.ts < th.one_way_window:
                continue
            if c.deleted is not None and c.deleted[0] - c.ts < th.one_way_window:
                continue  # torn down (or rekeyed) before it could carry traffic
            refs = ctx.msg_refs(c.msgs)
            yield make("ESP_SA_UNUSED", f"{t.id}|dec|unused|{c.sa.id}|{c.x.index}",
                       title=msg("Child SA {spis} never carried ESP", spis=_spi_list(c)),
                       detail=msg("The child SA negotiated in {exchange} at +{t} s (SPIs {spis}, "
                                  "decrypted) carried no ESP in either direction during the "
                                  "{span:.1f} s until {end}",
                                  exchange=reg.exchange_name(c.x.exch, short=True),
                                  t=ctx.rel(c.ts), spis=_spi_list(c), span=ctx.now - c.ts,
                                  end=msg("its DELETE.") if c.deleted
                                  else msg("the capture ends.")),
                       basis="decrypted",
                       evidence=ctx.evidence(refs, c.msgs[0].ts, c.ts, ike_spis=_spis(c.sa),
                                             esp_spis=[f"{s:08x}" for s in c.spis]),
                       wireshark_filter=ike_filter(c.sa, msgids=[c.x.msgid]), tunnel=t.id)


def _spi_list(c) -> str:
    return "/".join(f"0x{s:08x}" for s in c.spis)


# -- inner traffic: INNER_NO_ANSWER is judged on the one inner model (pcapvpn.rules.inner)
