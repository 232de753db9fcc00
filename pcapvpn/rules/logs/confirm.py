"""Confirmation: the log lines that say the same thing as a finding (an event of a kind that
confirms its code, tied to the same tunnel, near its evidence in time), and the exact reason a
log gives behind an encrypted or inferred error."""

from __future__ import annotations

import re

from dissect.vpn.registry import ExchangeType
from pcapvpn.findings import Term, msg, msg_join
from pcapvpn.rules.common import established_ts
from pcapvpn.rules.logs.common import (
    MAX_REFS, _add_ref, _count, _Linked, _translated, _wire, ref,
)

#: finding code → log event kinds that confirm it
CONFIRMS = {
    "IKE_NO_RESPONSE": {"give_up", "ike_retransmit", "connect_failed"},
    "IKE_RETRANSMISSION": {"ike_retransmit"},
    "NAT_T_BLOCKED": {"give_up", "ike_retransmit", "nat_detected"},
    "IKE_NO_PROPOSAL_CHOSEN": {"no_proposal", "negotiation_failed"},
    "IKE_INVALID_KE": {"invalid_ke", "negotiation_failed"},
    "IKE_ERROR_NOTIFY": {"negotiation_failed", "no_proposal", "invalid_ke", "auth_failed",
                         "ts_unacceptable", "child_failed", "invalid_spi"},
    "IKE_AUTH_FAILED": {"auth_failed", "cert_failed", "auth_suspected", "negotiation_failed"},
    "CERT_EXPIRED": {"cert_failed"},
    "CERT_NOT_YET_VALID": {"cert_failed"},
    "IKE_TS_UNACCEPTABLE": {"ts_unacceptable", "child_failed"},
    "CHILD_SA_FAILED": {"child_failed", "no_proposal", "ts_unacceptable", "ike_retransmit",
                        "give_up"},
    "CP_FAILED": {"child_failed"},
    "IKE_COOKIE": {"cookie"},
    "IKE_SIMULTANEOUS_INIT": {"ike_init", "ike_peer_init", "duplicate_sa"},
    "NAT_DETECTED": {"nat_detected"},
    "NAT_ENCAPSULATION_FORCED": {"nat_faked", "nat_detected"},
    "IKE_FRAGMENTATION_LOSS": {"ike_retransmit", "give_up", "fragment"},
    "DPD_TIMEOUT": {"dpd_timeout", "dpd_request", "give_up", "ike_retransmit"},
    "IKE_PEER_RESTART": {"peer_restart", "ike_init", "ike_established"},
    "IKE_REKEY_COLLISION": {"ike_rekey"},
    "IKE_SA_FLAPPING": {"ike_init", "ike_established", "give_up", "tunnel_down"},
    "ICMP_UNREACHABLE": {"ike_retransmit", "give_up", "dpd_timeout", "connect_failed"},
    "ESP_ONE_WAY": {"sa_counters"},
    "ESP_NO_TRAFFIC": {"sa_counters"},
    "ESP_SA_UNUSED": {"sa_counters"},
    "ESP_SEQUENCE_GAP": {"sa_counters", "esp_error"},
    "MTU_BLACK_HOLE": {"sa_counters"},
    "ESP_REPLAY": {"esp_error"},
    "ESP_SPI_MISMATCH": {"invalid_spi"},
    "IKE_AGGRESSIVE_MODE_PSK": {"aggressive_mode"},
    "IKE_WEAK_CRYPTO": {"proposal_selected", "proposals"},
    "OPENVPN_HANDSHAKE_STALLED": {"tls_failed", "cert_failed"},
    "OPENVPN_NO_RESPONSE": {"tls_crypt_failed", "tls_failed", "connect_failed"},
    "VPN_DATA_ONE_WAY": {"wg_peer", "esp_error"},
    "WIREGUARD_NO_RESPONSE": {"wg_peer", "wg_retry", "wg_handshake_invalid", "give_up"},
    "WIREGUARD_COOKIE": {"cookie"},
    "TLS_ALERT": {"cert_failed", "tls_failed"},
    "TLS_CERT_INVALID": {"cert_failed"},
    "TCP_NO_ANSWER": {"connect_failed"},
    "TCP_RESET": {"connect_failed"},
}
#: weak algorithms as strongSwan / libreswan / vendors name them in a selected proposal
_WEAK = re.compile(r"(?<![A-Z0-9])(3DES|DES|MD5|SHA1|HMAC_SHA1|HMAC_MD5|MODP_768|MODP_1024|"
                   r"MODP_1536|DH1|DH2|DH5|BLOWFISH|CAST)(?![A-Z0-9_])", re.I)
#: the reason a log gives → advice that follows from it
REASON_ADVICE = [
    (re.compile(r"pre-shared key|MAC mismatched|PSK", re.I),
     "The gateway log says the pre-shared keys differ: set the same PSK on both sides (and the "
     "identities it is configured for)."),
    (re.compile(r"not trusted|issuer|unknown CA|unable to get local issuer", re.I),
     "The gateway log says the peer's certificate is not trusted: install the CA that issued it "
     "(and any intermediate) on this side, or have the peer send the chain."),
    (re.compile(r"expired|not valid", re.I),
     "The gateway log says a certificate is expired or not yet valid: renew it, and check both "
     "gateways' clocks (NTP)."),
    (re.compile(r"DH group|key exchange method", re.I),
     "The gateway log names the DH groups: configure the group the responder asks for first in "
     "the initiator's proposal."),
    (re.compile(r"XAuth user|EAP user|EAP-MS-CHAP|password did not verify", re.I),
     "The gateway log says the user's credentials were refused (XAuth / EAP): check the user "
     "name and password on the client against the gateway's user database or RADIUS server."),
    (re.compile(r"responder could not authenticate the handshake initiation", re.I),
     "The WireGuard responder's log says it could not authenticate the initiations: add the "
     "initiator's public key as a peer on the responder, and check that the initiator uses "
     "the responder's current public key."),
    (re.compile(r"traffic selectors", re.I),
     "The gateway log names the refused traffic selectors: make both sides' local/remote "
     "subnets mirror each other."),
]
#: link window around a finding's evidence (seconds), before and after
WINDOW = 30.0
#: after the capture ends, log events still confirm a finding for this long
AFTER_END = 600.0
#: log references per log file within a finding
MAX_REFS_PER_FILE = 4
#: log lines of one kind per file referenced by a finding
MAX_REFS_PER_KIND = 2
#: IKEv2 Message IDs count up from 0: a daemon's log naming a larger one is an IKEv1 Quick Mode's
#: (random, RFC 2409 §5.5)
COUNTED_MSGIDS = 255


def _window(ctx, f, end):
    ev = f.evidence
    first = ev.first["rel"] + ctx.start if ev.first and ev.first.get("rel") is not None else None
    last = ev.last["rel"] + ctx.start if ev.last and ev.last.get("rel") is not None else first
    if first is None:
        return None
    hi = last + WINDOW
    if end is not None and end - last < 60.0:
        hi = max(hi, end + AFTER_END)
    return first - WINDOW, hi


def _after_phase1(ctx, li: _Linked) -> bool:
    """The line was written after its IKE SA was established: a NO_PROPOSAL_CHOSEN then is about
    a child SA (pluto logs the Quick Mode's refusal under the ISAKMP SA's serial)."""
    if ctx is None or li.ike_sa is None:
        return False
    sa, ts = ctx.ike_sa_by_id.get(li.ike_sa), li.ent.ts
    est = established_ts(sa) if sa is not None else None
    return est is not None and ts is not None and ts >= est


def _fits_code(code: str, li: _Linked, f, ctx=None) -> bool:
    ev = li.ent.ev
    k = ev.kind
    if code == "IKE_NO_PROPOSAL_CHOSEN" and ev.child and f.stage != "child_sa":
        return False
    if code == "CHILD_SA_FAILED" and k == "ike_retransmit":
        a = li.anchor
        if a is not None and a.kind == "ike":
            return a.exch in (ExchangeType.QUICK_MODE, ExchangeType.CREATE_CHILD_SA)
        return (ev.msgid or 0) > COUNTED_MSGIDS  # an IKEv1 Quick Mode's random Message ID
    if code == "CHILD_SA_FAILED" and k != "child_failed" and not ev.child and not (
            k == "no_proposal" and _after_phase1(ctx, li)):
        return False
    if code == "NAT_ENCAPSULATION_FORCED" and k == "nat_detected":
        return "remote host" in (ev.reason or "")
    if code == "IKE_WEAK_CRYPTO":
        return bool(_WEAK.search(ev.reason or ""))
    if code in ("ESP_SEQUENCE_GAP", "MTU_BLACK_HOLE") and k == "sa_counters":
        return bool(set(ev.esp_spis) & {s.rjust(8, "0") for s in f.evidence.esp_spis})
    if code == "ESP_SA_UNUSED" and k == "sa_counters":
        c = ev.counters or {}
        return bool(set(ev.esp_spis) & {s.rjust(8, "0") for s in f.evidence.esp_spis}) and \
            _count(c, "in") == 0 and _count(c, "out") == 0
    if code == "WIREGUARD_NO_RESPONSE" and k == "wg_peer":
        return (ev.counters or {}).get("handshake_epoch") == 0
    if code == "WIREGUARD_NO_RESPONSE" and k == "wg_handshake_invalid":
        return not ev.response  # the responder dropped the initiation it could not authenticate
    if code in ("ESP_ONE_WAY", "ESP_NO_TRAFFIC"):
        c = ev.counters or {}
        pin, pout = _count(c, "in"), _count(c, "out")
        if pin is None or pout is None:
            return False
        if code == "ESP_ONE_WAY":
            return (pin == 0) != (pout == 0)
        return pin == 0 and pout == 0
    if code == "DPD_TIMEOUT" and k == "ike_retransmit":
        return ev.exchange in (None, "INFORMATIONAL", "INFORMATIONAL_V1") and (ev.msgid or 0) > 0
    if code == "IKE_PEER_RESTART" and k in ("ike_init", "ike_established"):
        return True
    return True


def _confirm(ctx, f, cands, used: set, end) -> None:
    kinds = CONFIRMS.get(f.code)
    if not kinds:
        return
    win = _window(ctx, f, end)
    frames = {(fr.file, fr.frame) for fr in f.evidence.frames}
    hits = []
    for li in cands:
        e = li.ent
        if f.code == "NAT_DETECTED" and _translated(li):
            pass  # the gateway names its peer by another address than the capture shows
        elif e.ev.kind not in kinds or not _fits_code(f.code, li, f, ctx):
            continue
        t = e.ts if e.ts is not None else end
        if win is not None and t is not None and not (win[0] <= t <= win[1]):
            continue
        centre = (win[0] + win[1]) / 2 if win else 0.0
        dist = abs((t or 0.0) - centre)
        if li.anchor is not None and frames and any(
                (ctx.file(r[0]), r[1]) in frames for r in li.anchor.refs):
            dist = -1.0  # the line stands for a packet this finding cites
        hits.append((dist, li))
    if not hits:
        return
    hits.sort(key=lambda h: (h[0], h[1].ent.ev.line))
    seen: dict = {}
    per_src: dict = {}
    chosen = []
    for _d, li in hits:  # per log file: at most two lines of each kind, nearest first
        used.add(id(li.ent))
        k = (li.src.index, li.ent.ev.kind)
        if seen.get(k, 0) >= MAX_REFS_PER_KIND or per_src.get(li.src.index, 0) >= MAX_REFS_PER_FILE or \
                len(chosen) >= MAX_REFS:
            continue
        seen[k] = seen.get(k, 0) + 1
        per_src[li.src.index] = per_src.get(li.src.index, 0) + 1
        chosen.append(li)
    chosen.sort(key=lambda li: (li.src.index, li.ent.ev.line))
    reasons = []
    for li in chosen:
        _add_ref(f, ref(ctx, li, nat=f.code == "NAT_DETECTED"))
        r = li.ent.ev.reason
        if r and li.ent.ev.kind in ("auth_failed", "cert_failed", "invalid_ke",
                                     "ts_unacceptable", "no_proposal", "tls_failed",
                                     "tls_crypt_failed", "wg_handshake_invalid") and r not in [x[0] for x in reasons]:
            reasons.append((r, li))
    if f.code in ("ESP_ONE_WAY", "ESP_NO_TRAFFIC"):
        for li in chosen:
            counters_note = _counters_text(ctx, li)
            if counters_note:
                f.detail += msg(" Gateway status ({log}): {note}.", log=li.src.name,
                                note=counters_note)
                break
    for r, li in reasons[:2]:
        f.detail += msg(" Gateway log ({log}:{line}): {reason}.", log=li.src.name,
                        line=li.ent.ev.line, reason=r)
        for rx, advice in REASON_ADVICE:
            if rx.search(r) and advice not in f.advice:
                f.advice.insert(0, advice)
                break


def _counters_text(ctx, li) -> str:
    c = li.ent.ev.counters or {}
    wire = _wire(ctx)
    parts = []
    for d, label in (("out", Term("sent")), ("in", Term("received"))):
        spi = c.get(f"spi_{d}")
        n = _count(c, d)
        if spi is None or n is None:
            continue
        unit = Term("packets" if (f"packets_{d}" in c or f"pkts_{'decaps' if d == 'in' else 'encaps'}"
                                  in c) else "bytes")
        seen = sum(x.packets for x in wire.get(spi, ()))
        parts.append(msg("{label} {n} {unit} on SPI {spi}, {seen} ESP packet(s) with that SPI in "
                         "the capture", label=label, n=n, unit=unit, spi=spi, seen=seen))
    return msg_join("; ", parts)
