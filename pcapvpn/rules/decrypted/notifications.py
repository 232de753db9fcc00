"""The exact error notifications inside decrypted IKE (IKEv2 IKE_AUTH / CREATE_CHILD_SA /
INFORMATIONAL, IKEv1 encrypted Informationals) and XAUTH failures (IKEv1 Transaction exchanges):
the keyless inferences' codes with ``basis: decrypted``, superseding the inferred finding about
the same exchange."""

from __future__ import annotations

from dissect.vpn import registry as reg
from dissect.vpn.registry import (
    CfgAttributeV1, ExchangeType, NotifyV1, NotifyV2, PayloadV2, ProtocolId,
)
from pcapvpn.findings import Term, declare, make, msg
from pcapvpn.rules import rule, supersede
from pcapvpn.rules.common import (
    endpoint_text, ike_facts, ike_filter, ike_spis, implementations, ip_text, side_of, step_label,
)
from pcapvpn.rules.decrypted.common import (
    _exchange, _key_note, _msgs, _request_of, _tid, _ts_text,
)

#: IKEv2 error notifies that refuse a child SA (RFC 7296 §3.10.1)
_V2_CHILD = frozenset((NotifyV2.NO_PROPOSAL_CHOSEN, NotifyV2.INVALID_KE_PAYLOAD,
                       NotifyV2.SINGLE_PAIR_REQUIRED, NotifyV2.NO_ADDITIONAL_SAS,
                       NotifyV2.INVALID_SELECTORS, NotifyV2.TEMPORARY_FAILURE,
                       NotifyV2.CHILD_SA_NOT_FOUND))

declare("CP_FAILED", "child_sa", "error",
        "The remote-access configuration failed: no internal address could be assigned "
        "(INTERNAL_ADDRESS_FAILURE), the peer requires a configuration payload "
        "(FAILED_CP_REQUIRED), or mode-config / XAUTH failed.",
        ["Check the responder's address pool (exhausted, or not configured for this connection: "
         "strongSwan `pools =`, Cisco `ip local pool`).",
         "FAILED_CP_REQUIRED: the client must request a virtual IP (strongSwan `vips = 0.0.0.0`).",
         "XAUTH failed: check the user name / password and the responder's XAUTH backend."])


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
                                   ike_spis=ike_spis(sa), esp_spis=esp_spis,
                                   peers=[who, peer]),
             wireshark_filter=ike_filter(sa, msgids=sorted({r.msgid for r in related})),
             tunnel=_tid(ctx, sa))
    return supersede(f, _SUPERSEDES[kind], frames=f.evidence.frames, esp_spis=esp_spis)


def _child_proposals(m) -> str:
    from pcapvpn.rules.common import proposal_texts

    props = [p for p in (m.inner.proposals or ()) if p.protocol in (ProtocolId.AH, ProtocolId.ESP)]
    return "; ".join(proposal_texts(m.version, props))


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
                         evidence=ctx.evidence(m.frames, m.ts, None, ike_spis=ike_spis(sa)),
                         wireshark_filter=ike_filter(sa, msgids=[m.msgid]),
                         tunnel=_tid(ctx, sa))
                yield supersede(f, ("IKE_AUTH_FAILED",), frames=f.evidence.frames)
