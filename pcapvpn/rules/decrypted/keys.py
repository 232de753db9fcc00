"""KEYS_MISMATCH (keys given for an SA do not open it) and KEYS_MISSING (encrypted SAs without
keys)."""

from __future__ import annotations

from pcapvpn.findings import Term, declare, make, msg, msg_join
from pcapvpn.rules import rule
from pcapvpn.rules.common import esp_filter, ike_filter, ike_spis, ip_text
from pcapvpn.rules.decrypted.common import OPENED, _tid

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
                   evidence=ctx.evidence(refs, sa.first_ts, sa.last_ts, ike_spis=ike_spis(sa)),
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
