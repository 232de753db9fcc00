"""OpenVPN: no answer to the client's hard reset, a stalled TLS handshake, clock skew."""

from __future__ import annotations

from dissect.vpn import openvpn as _ov
from dissect.vpn import tls as _tls
from pcapvpn.findings import Term, declare, make, msg
from pcapvpn.model import rfc3339
from pcapvpn.rules import rule
from pcapvpn.rules.common import frames_filter, ip_text
from pcapvpn.rules.vpn.common import (
    RETRANS_SHARE, RETRANS_WARN, _ev, _flow_filter, _intervals, _peers, _refs, _server_txt, _vpn,
)


_TIMEOUT_LOG = ("OpenVPN's client logs 'TLS Error: TLS key negotiation failed to occur within "
                "60 seconds (check your network connectivity)' and 'TLS Error: TLS handshake "
                "failed', then restarts ('SIGUSR1[soft,tls-error] received, process restarting').")


declare("OPENVPN_NO_RESPONSE", "reachability", "error",
        "An OpenVPN client sent its hard reset (the first packet of a session) and the server "
        "never answered.  On the wire a blocked port, a wrong port or protocol (UDP vs TCP), and "
        "a tls-auth / tls-crypt key mismatch look the same: the server silently drops packets "
        "whose HMAC or tag does not verify.",
        ["Check that the server listens on that port and protocol ('port' and 'proto' in both "
         "configurations; ss -ulpn / ss -tlpn on the server) and that firewalls/NAT on the path "
         "forward it in both directions.",
         "Compare the tls-auth / tls-crypt / tls-crypt-v2 keys and the key direction of client "
         "and server: the server logs 'TLS Error: tls-crypt unwrapping failed from ...' or "
         "'TLS Error: cannot locate HMAC in incoming packet from ...' / 'TLS Error: incoming "
         "packet authentication failed from ...' for each dropped packet.",
         _TIMEOUT_LOG,
         "Capture on the server side too: only a capture showing both ends tells whether the "
         "packets reach the server."])


declare("OPENVPN_HANDSHAKE_STALLED", "authentication", "error",
        "An OpenVPN session got past the hard resets but its TLS handshake never completed and "
        "no data channel came up (or completed only after repeated control retransmissions).  "
        "A server that rejects the client certificate drops the session silently: the client's "
        "certificate flight is the last thing it acknowledges and the client retransmits.",
        ["Look at the server log at that time: 'VERIFY ERROR: depth=0, error=...' (client "
         "certificate expired, revoked, or from a CA the server does not trust), 'TLS_ERROR: "
         "BIO read tls_read_plaintext error', 'TLS Error: TLS object -> incoming plaintext read "
         "error'.",
         "Check the client certificate against the server's 'ca' (and 'crl-verify'), its "
         "validity dates, and 'verify-x509-name' / 'remote-cert-tls' on both sides.",
         "Check 'tls-version-min' / 'tls-cipher' / 'data-ciphers' compatibility ('TLS error: "
         "Unsupported protocol', 'no shared cipher').",
         _TIMEOUT_LOG,
         "Repeated control retransmissions on a session that completes mean loss on the path "
         "(check MTU: 'tun-mtu' / 'mssfix', or a fragmenting firewall)."])


declare("OPENVPN_CLOCK_SKEW", "capture", "info",
        "The net time in an OpenVPN tls-auth / tls-crypt hard reset (the sender's clock when it "
        "started numbering its control packets) is far from the capture's clock.  Either the "
        "sender's clock or the capture machine's clock is off, or the capture was replayed "
        "(tcpreplay / a mirror that re-timestamps).  OpenVPN itself does not compare the net time "
        "with its own clock, so this alone breaks nothing; pcapvpn never uses it to recognise "
        "packets.",
        ["Check the clocks (NTP) of the sender and of the capture machine: a client whose clock "
         "is off by days also sees valid certificates as expired or not yet valid ('VERIFY "
         "ERROR: ... certificate is not yet valid').",
         "Times in this report are the capture's; the sender's own log is off by the skew "
         "shown."], failure=False)


@rule
def openvpn_no_response(ctx):
    th = ctx.th
    for t in _vpn(ctx, "openvpn"):
        sessions = t.st.sessions
        # the unanswered sessions after the last answered one
        tail = []
        for s in reversed(sessions):
            if s.answered or not s.client_resets:
                break
            tail.append(s)
        if not tail:
            continue
        tail.reverse()
        resets = [x for s in tail for x in s.client_resets]
        n = sum(s.ctl[0].packets for s in tail)
        last = max(ts for ts, _r in resets)
        first = min(ts for ts, _r in resets)
        if n <= 1 and ctx.now - last < th.response_timeout:
            continue  # pending: see vpn_evidence
        if t.transport == "tcp" and not any(c.established for c in t.conns.values()):
            continue  # the TCP connection itself failed: TCP_NO_ANSWER / TCP_RESET
        if any(s.data[0] for s in tail):
            # the client sent on the data channel of one of these sessions: its keys come from
            # the TLS handshake with the server, so the server answered and the capture does not
            # hold its packets (one direction captured)
            continue
        answered_before = any(s.answered for s in sessions[:len(sessions) - len(tail)])
        opname = _ov.opcode_name(tail[0].reset_opcode or 7)
        detail = msg("{op} from {client} to {server}: {n} packet(s) in {sessions} session(s) "
                     "(session IDs {ids}) over {span:.1f} s; the server sent nothing back (the "
                     "capture ends {after:.1f} s after the last one).", op=opname,
                     client=ip_text(t.client), server=_server_txt(t), n=n, sessions=len(tail),
                     ids=", ".join(f"{s.client_sid:016x}" for s in tail[:4]
                                   if s.client_sid is not None),
                     span=last - first, after=ctx.now - last)
        iv = _intervals([ts for ts, _r in resets])
        if iv:
            detail += msg(" Intervals: {iv} s.", iv=', '.join(f'{x:g}' for x in iv[:12]))
        lay = t.st.layout
        if lay is not None and lay != _ov.PLAIN:
            detail += msg(" The control channel uses {layout}: a key mismatch between client and "
                          "server looks exactly like this.", layout=_ov.layout_name(lay))
        else:
            detail += msg(" Without keys the capture cannot tell a blocked port from a tls-auth / "
                          "tls-crypt key mismatch.")
        if answered_before:
            detail += msg(" Earlier sessions in this capture were answered: the server stopped "
                          "answering.")
        refs = _refs(resets)
        yield make("OPENVPN_NO_RESPONSE", f"ovpn-nr|{t.id}|{tail[0].index}",
                   title=msg("OpenVPN server {server} never answered the hard reset",
                             server=_server_txt(t)),
                   detail=detail, basis="observed",
                   evidence=_ev(ctx, refs, first, last, peers=_peers(t)),
                   wireshark_filter=_flow_filter(t), tunnel=t.id)


@rule
def openvpn_clock_skew(ctx):
    limit = ctx.th.clock_skew
    for t in _vpn(ctx, "openvpn"):
        for d, side in ((0, "client"), (1, "server")):
            sk = t.st.skew[d]
            if sk is None or abs(sk[0]) <= limit:
                continue
            secs, ts, ref = sk
            who = ip_text(t.client) if d == 0 else _server_txt(t)
            yield make("OPENVPN_CLOCK_SKEW", f"ovpn-skew|{t.id}|{d}",
                       title=(msg("OpenVPN {side} {who}: its clock is {skew} ahead of the "
                                  "capture's", side=Term(side), who=who,
                                  skew=Term(_duration(abs(secs)))) if secs > 0 else
                              msg("OpenVPN {side} {who}: its clock is {skew} behind the "
                                  "capture's", side=Term(side), who=who,
                                  skew=Term(_duration(abs(secs))))),
                       detail=msg("The net time of the {side}'s hard reset says {claimed}; the "
                                  "capture recorded the packet at {seen} ({secs:+.0f} s).  The "
                                  "skew is reported only; recognising OpenVPN does not depend "
                                  "on it.", side=Term(side), claimed=rfc3339(ts + secs),
                                  seen=rfc3339(ts), secs=secs),
                       basis="observed", evidence=_ev(ctx, [ref], ts, ts, peers=_peers(t)),
                       wireshark_filter=_flow_filter(t), tunnel=t.id)


def _duration(secs: float) -> str:
    if secs >= 2 * 86400:
        return f"{secs / 86400:.1f} days"
    if secs >= 2 * 3600:
        return f"{secs / 3600:.1f} hours"
    return f"{secs:.0f} s"


def _ovpn_tls_stage(s):
    if s.tls is None:
        return None
    return s.tls.stage


@rule
def openvpn_handshake(ctx):
    th = ctx.th
    for t in _vpn(ctx, "openvpn"):
        sessions = [s for s in t.st.sessions if not s.mid_session]
        later_ok = False
        for s in reversed(sessions):
            if s.established:
                rt = s.ctl[0].retrans + s.ctl[1].retrans
                sent = s.ctl[0].packets + s.ctl[1].packets
                if rt >= RETRANS_WARN and rt >= RETRANS_SHARE * sent and not later_ok:
                    refs = list(s.ctl[0].retrans_refs) + list(s.ctl[1].retrans_refs)
                    yield make(
                        "OPENVPN_HANDSHAKE_STALLED", f"ovpn-retx|{t.id}|{s.index}",
                        title=msg("OpenVPN control channel retransmitted {n} times before the "
                                  "session to {server} came up", n=rt, server=_server_txt(t)),
                        detail=msg("Session {index}: the client retransmitted {c} and the server "
                                   "{s} control packet(s) (same message packet ID sent again: "
                                   "not acknowledged in time); the data channel came up "
                                   "afterwards. Loss or delay on the path.", index=s.index,
                                   c=s.ctl[0].retrans, s=s.ctl[1].retrans),
                        basis="observed", severity="warning",
                        evidence=_ev(ctx, refs, s.first_ts, s.last_ts, peers=_peers(t)),
                        wireshark_filter=frames_filter(refs) or _flow_filter(t), tunnel=t.id)
                later_ok = True
                continue
            if later_ok or not s.answered or s.data[0] or s.data[1]:
                continue
            if s.tls is not None and any(
                    a.fatal and not a.encrypted for _c, a in s.tls.alerts()):
                continue  # TLS_ALERT explains it
            last_ctl = max(x for x in (s.ctl[0].last_ts, s.ctl[1].last_ts) if x is not None)
            retx = s.ctl[0].retrans
            if s.encrypted:
                # tls-crypt hides packet IDs: the client repeating itself after the server's
                # last packet is the retransmission
                retx = max(retx, s.repeats - 2)
            if retx == 0 and ctx.now - last_ctl < th.response_timeout:
                continue  # pending
            stage = _ovpn_tls_stage(s)
            srv_last = s.ctl[1].last_ts
            detail = msg("Session {index} ({sid}): the server answered the hard reset; {c} "
                         "control packet(s) from the client ({retx} retransmitted) and {s} from "
                         "the server, the last from the server at +{t} s; no data channel "
                         "packet in either direction (the capture ends {after:.1f} s after the "
                         "last control packet).", index=s.index,
                         sid=msg("client session ID {sid}", sid=f"{s.client_sid:016x}")
                         if s.client_sid is not None else "",
                         c=s.ctl[0].packets, retx=retx, s=s.ctl[1].packets,
                         t=ctx.rel(srv_last), after=ctx.now - last_ctl)
            title = msg("OpenVPN handshake with {server} stalled", server=_server_txt(t))
            unacked = s.unacked(0)
            rejected = bool(unacked) and retx > 0 and s.tls is not None and \
                stage in ("client_flight", "complete")
            if rejected:
                # the server never acknowledged the client's last flight, which the client kept
                # re-sending: the server dropped the session on reading it (its certificate)
                c = s.tls.client
                sent_cert = c.has(_tls.CERTIFICATE)
                what = (msg("certificate flight") if sent_cert or s.tls.tls13
                        else msg("last handshake flight"))
                title = msg("OpenVPN server {server} rejected the client's {what}: never "
                            "acknowledged", server=_server_txt(t), what=what)
                ids = ", ".join(str(p) for p in unacked[:8])
                detail += msg(" TLS handshake stage reached: {stage}",
                              stage=Term(stage.replace('_', ' ')))
                if s.tls.version:
                    detail += f" ({_tls.version_name(s.tls.version)})"
                plural = "s" if len(unacked) > 1 else ""
                detail += msg(". The server acknowledged the client's control packets up to "
                              "packet ID {acked} but never packet ID{plural} {ids} (the client's "
                              "{flight}), which the client retransmitted {retx} time(s). The "
                              "server rejected the client certificate — untrusted CA, expired or "
                              "revoked: it logs 'VERIFY ERROR: depth=0, error=...', then 'Packet "
                              "(P_CONTROL_V1) with invalid or missing SID' for each "
                              "retransmission — and dropped the session without an alert "
                              "(OpenVPN 2.6 resets the client instance before the alert is "
                              "sent).", acked=unacked[0] - 1, plural=plural, ids=ids,
                              flight=msg("Certificate, key exchange and Finished") if sent_cert
                              else msg("encrypted TLS 1.3 flight — its Certificate, "
                                       "CertificateVerify and Finished when the server asks "
                                       "for a client certificate")
                              if s.tls.tls13 else msg("key exchange and Finished"),
                              retx=retx)
            elif s.tls is not None and stage is not None:
                c = s.tls.client
                detail += msg(" TLS handshake stage reached: {stage}",
                              stage=Term(stage.replace('_', ' ')))
                if s.tls.version:
                    detail += f" ({_tls.version_name(s.tls.version)})"
                detail += "."
                if stage == "client_flight":
                    sent_cert = c.has(_tls.CERTIFICATE)
                    detail += msg(" The client sent its {flight} and the server went silent",
                                  flight=msg("certificate, key exchange and Finished")
                                  if sent_cert else msg("key exchange and Finished"))
                    if retx:
                        detail += msg(" while the client retransmitted")
                    detail += (msg(": the server rejected the client certificate and dropped the "
                                   "session without an alert (OpenVPN 2.6 resets the client "
                                   "instance before the alert is sent).") if sent_cert else
                               msg(": the server rejected the client's handshake and dropped "
                                   "the session without an alert (OpenVPN 2.6 resets the client "
                                   "instance before the alert is sent)."))
                    title = (msg("OpenVPN server {server} went silent after the client's "
                                 "certificate flight", server=_server_txt(t)) if sent_cert else
                             msg("OpenVPN server {server} went silent after the client's "
                                 "handshake flight", server=_server_txt(t)))
                elif stage == "server_flight":
                    detail += msg(" The server sent its certificate flight and the client never "
                                  "answered it: the client did not accept the server "
                                  "(certificate, 'verify-x509-name', 'remote-cert-tls').")
                elif stage in ("server_hello", "client_hello"):
                    detail += msg(" The handshake stopped early: version or cipher mismatch, or "
                                  "loss.")
                elif stage == "complete":
                    detail += msg(" TLS completed, but no data channel followed: the server "
                                  "refused the client after the handshake (auth-user-pass, "
                                  "client-connect script, duplicate CN) or the key exchange "
                                  "inside TLS failed.")
            elif s.encrypted:
                detail += msg(" The control channel is protected with tls-crypt: the TLS stage is "
                              "not visible.")
            refs = list(s.ctl[0].refs) + list(s.ctl[1].refs[-3:]) + list(s.ctl[0].retrans_refs)
            yield make("OPENVPN_HANDSHAKE_STALLED", f"ovpn-stall|{t.id}|{s.index}",
                       title=title, detail=detail, basis="inferred",
                       evidence=_ev(ctx, refs, s.first_ts, last_ctl, peers=_peers(t)),
                       wireshark_filter=_flow_filter(t), tunnel=t.id)
            break  # the latest stalled session is the one that matters
