"""CERT_EXPIRED / CERT_NOT_YET_VALID: a certificate sent in decrypted IKE outside its validity at
the packet's time."""

from __future__ import annotations

import datetime as _dt

from dissect.vpn import registry as reg
from pcapvpn.findings import declare, make, msg
from pcapvpn.rules import rule
from pcapvpn.rules.common import ike_filter, ike_spis, ip_text
from pcapvpn.rules.decrypted.common import _key_note, _msgs, _tid

declare("CERT_EXPIRED", "authentication", "error",
        "A certificate sent in IKE had expired at the time of the packet: the peer will refuse "
        "it (AUTHENTICATION_FAILED).",
        ["Renew the certificate (and reload it: strongSwan `swanctl --load-creds`).",
         "Check the gateway's clock if the certificate should still be valid."])
declare("CERT_NOT_YET_VALID", "authentication", "error",
        "A certificate sent in IKE was not yet valid at the time of the packet: a clock is wrong "
        "or the certificate was issued with a future start date.",
        ["Check NTP on both gateways (and on the CA that issued the certificate)."])


def _date(ts) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


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
                           evidence=ctx.evidence(m.frames, m.ts, None, ike_spis=ike_spis(sa)),
                           wireshark_filter=ike_filter(sa, msgids=[m.msgid]),
                           tunnel=_tid(ctx, sa))
