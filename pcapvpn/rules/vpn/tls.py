"""TLS / DTLS of OpenVPN's control channel and of SSL-VPNs: alerts and certificates."""

from __future__ import annotations

from dissect.vpn import tls as _tls
from pcapvpn.findings import Term, declare, make, msg
from pcapvpn.rules import rule
from pcapvpn.rules.common import frames_filter, ip_text
from pcapvpn.rules.vpn.common import (
    _NAMES, _ev, _flow_filter, _peers, _server_txt, _tls_conversations,
)


declare("TLS_ALERT", "authentication", "error",
        "A TLS or DTLS alert was sent in the clear during the handshake of an SSL-VPN or of "
        "OpenVPN's control channel (named in the title).  The sender refused the handshake.",
        ["handshake_failure / insufficient_security / protocol_version: the two sides share no "
         "protocol version or cipher suite; compare the client's and the gateway's TLS "
         "settings (minimum TLS version, cipher list).",
         "bad_certificate / unknown_ca / certificate_expired / certificate_unknown / "
         "certificate_required: the sender did not accept the peer's certificate; check the "
         "chain, the trusted CAs and the validity dates (the gateway's log names the reason).",
         "access_denied: the gateway refused the user or client (policy, licence, posture).",
         "OpenVPN logs 'TLS error: ... alert ...' on the receiving side; FortiGate 'SSL "
         "negotiation failed'; AnyConnect 'Certificate Validation Failure'."])


declare("TLS_CERT_INVALID", "authentication", "error",
        "A certificate shown in the clear (TLS <= 1.2) was not valid at the time of the "
        "packet — expired or not yet valid — or does not carry the name the client asked for "
        "(SNI).",
        ["Renew the certificate (or fix the clock of the device that issued or checks it: a "
         "gateway booting with a wrong date sees valid certificates as not yet valid).",
         "For a name mismatch, connect with the name the certificate carries or add the name "
         "to its subjectAltName.",
         "OpenVPN logs 'VERIFY ERROR: depth=0, error=certificate has expired'; browsers and "
         "AnyConnect 'certificate is expired' / 'Untrusted server certificate'."])


_QUIET_ALERTS = frozenset((_tls.AlertDescription.CLOSE_NOTIFY, _tls.AlertDescription.USER_CANCELED,
                           _tls.AlertDescription.NO_RENEGOTIATION))


@rule
def tls_alerts(ctx):
    for t in ctx.state.vpn_tunnels:
        for label, conv, _c in _tls_conversations(t):
            for from_client, a in conv.alerts():
                if a.encrypted or a.description in _QUIET_ALERTS and not a.fatal:
                    continue
                sender = ip_text(t.client) if from_client else _server_txt(t)
                lvl = "fatal" if a.fatal else "warning"
                what = "DTLS" if conv.dtls else ("TLS" if t.protocol != "openvpn" else
                                                 msg("TLS (OpenVPN control channel)"))
                stage = conv.stage
                detail = msg("{what} alert {name} ({description}, {level}) from the {side} "
                             "{sender} ({label}) at +{t} s, handshake stage {stage}.", what=what,
                             name=a.name, description=a.description, level=Term(lvl),
                             side=Term('client' if from_client else 'server'), sender=sender,
                             label=label, t=ctx.rel(a.ts), stage=Term(stage.replace('_', ' ')))
                ch = conv.client.client_hello
                if ch is not None and ch.sni:
                    detail += msg(" SNI {sni}.", sni=ch.sni)
                if a.description == _tls.AlertDescription.HANDSHAKE_FAILURE and stage == "client_hello":
                    detail += msg(" The server rejected the ClientHello outright: no common "
                                  "protocol version or cipher suite.")
                fld = "dtls" if conv.dtls else "tls"
                yield make("TLS_ALERT",
                           f"tlsalert|{t.id}|{label}|{int(from_client)}|{a.ts:.6f}",
                           title=msg("{what} alert {name} from the {side} ({proto} {server})",
                                     what=what, name=a.name,
                                     side=Term('client' if from_client else 'server'),
                                     proto=_NAMES[t.protocol], server=_server_txt(t)),
                           detail=detail, basis="observed",
                           severity="error" if a.fatal else "warning",
                           evidence=_ev(ctx, [a.ref], a.ts, a.ts, peers=_peers(t)),
                           wireshark_filter=(f"{frames_filter([a.ref])} || "
                                             f"({fld}.alert_message.desc == {a.description} && "
                                             f"{_flow_filter(t, 'udp' if conv.dtls else None)})"),
                           tunnel=t.id)


@rule
def tls_certificates(ctx):
    for t in ctx.state.vpn_tunnels:
        seen = set()
        for label, conv, _c in _tls_conversations(t):
            for from_client, side in ((False, conv.server), (True, conv.client)):
                if not side.certs:
                    continue
                ee = side.certs[0]
                who = "client" if from_client else "server"
                problems = []
                bad = ee.valid_at(side.cert_ts)
                if bad:
                    import datetime as _dt
                    nb = _dt.datetime.fromtimestamp(ee.not_before, _dt.timezone.utc)
                    na = _dt.datetime.fromtimestamp(ee.not_after, _dt.timezone.utc)
                    problems.append((bad, "error",
                                     f"valid from {nb:%Y-%m-%d %H:%M:%S} to "
                                     f"{na:%Y-%m-%d %H:%M:%S} UTC, packet time "
                                     f"{ctx.time(side.cert_ts)['utc']}"))
                sni = conv.client.client_hello.sni if conv.client.client_hello else None
                if not from_client and sni and ee.names and not ee.matches(sni) and \
                        t.protocol == "sslvpn" and not _is_ip(sni):
                    problems.append(("name mismatch", "warning",
                                     f"SNI {sni} not among its names "
                                     f"{', '.join(ee.names[:6])}"))
                for what, sev, text in problems:
                    key = (ee.sha1, what, who)
                    if key in seen:
                        continue
                    seen.add(key)
                    detail = msg("The {who} certificate ({subject}; issuer {issuer}) sent in "
                                 "{label} is {what}: {text}.", who=Term(who), subject=ee.subject,
                                 issuer=ee.issuer, label=label, what=Term(what), text=Term(text))
                    yield make("TLS_CERT_INVALID", f"cert|{t.id}|{ee.sha1}|{what}|{who}",
                               title=msg("{proto} {who} certificate {what} ({server})",
                                         proto=_NAMES[t.protocol], who=Term(who),
                                         what=Term(what), server=_server_txt(t)),
                               detail=detail, basis="observed", severity=sev,
                               evidence=_ev(ctx, [side.cert_ref], side.cert_ts,
                                                     peers=_peers(t)),
                               wireshark_filter=frames_filter([side.cert_ref]), tunnel=t.id)


def _is_ip(s: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False
