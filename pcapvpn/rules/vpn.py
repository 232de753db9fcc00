"""Rules for the VPNs beside IPsec: OpenVPN, WireGuard, L2TP, PPTP and SSL-VPN (TLS/DTLS).

The stages are IPsec's: reachability (does anything come back from the server: TCP SYN-ACK,
a hard reset, a handshake response, SCCRP), negotiation (L2TP/PPTP control connections), the
authentication step (the TLS handshake of OpenVPN and SSL-VPN, WireGuard's Noise handshake), the
data plane (data both ways).  A tunnel is a client and a server:port (:mod:`pcapvpn.track.vpn`).

Findings about something missing need the capture to have run ``response_timeout`` seconds past
the last request or retransmissions to have been seen; otherwise the tunnel's verdict is
``unknown`` with the reason in ``not_seen``.  A healthy session yields nothing at warning or
above.  Rules never parse bytes.
"""

from __future__ import annotations

from dissect.vpn import l2tp as _l2tp
from dissect.vpn import openvpn as _ov
from dissect.vpn import pptp as _pptp
from dissect.vpn import tls as _tls
from dissect.vpn import wireguard as _wg
from dissect.vpn.ip import IpProto, icmp_error_text, icmp_too_big, icmp_unreachable_or_expired
from pcapvpn.findings import declare, make, when
from pcapvpn.model import rfc3339
from pcapvpn.rules import rule
from pcapvpn.rules import reachability as _reach  # noqa: F401 - declares ICMP_UNREACHABLE
from pcapvpn.rules.common import frames_filter, ip_text, tcp_connection_findings

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
declare("WIREGUARD_NO_RESPONSE", "reachability", "error",
        "WireGuard handshake initiations went unanswered (a peer retries every 5 s: "
        "REKEY_TIMEOUT).  The responder is unreachable on that port, or it ignores the "
        "initiation: a public key it does not know (or a wrong preshared key) is dropped "
        "silently, exactly like a blocked packet.  After a working session this is a "
        "handshake renewal failing (every REKEY_AFTER_TIME, 120 s).",
        ["Check that the responder listens on that UDP port (wg show: 'listening port') and "
         "that firewalls/NAT forward it both ways.",
         "Check the initiator's [Peer] PublicKey = the responder's public key and the "
         "responder's [Peer] entry for the initiator (PublicKey, PresharedKey); 'wg show' on "
         "the responder shows no 'latest handshake' for that peer.",
         "Check AllowedIPs on both sides and Endpoint on the initiator.",
         "The Linux kernel logs (with dynamic debug) 'Handshake for peer N (ip:port) did not "
         "complete after 5 seconds, retrying (try 2)'."])
declare("WIREGUARD_COOKIE", "negotiation", "info",
        "The WireGuard responder answered with a cookie reply: it is under load and demands "
        "proof of the initiator's address before it computes a handshake (WireGuard paper "
        "§5.3 / §5.4.7).",
        ["Normal under load; if it persists, look for a flood of handshake initiations towards "
         "the responder."], failure=False)
declare("VPN_DATA_ONE_WAY", "dataplane", "error",
        "The data plane of a VPN beside IPsec flows one way only (OpenVPN P_DATA, WireGuard "
        "transport data, L2TP data, PPTP's GRE, the DTLS channel of an SSL-VPN): the other "
        "side sends nothing back while the capture sees its other packets.",
        ["Capture on both sides to see where the packets disappear.",
         "PPTP: GRE (IP protocol 47) must be allowed and NAT-ed in both directions ('PPTP "
         "passthrough'); Windows reports error 619 / 806 when GRE is blocked.",
         "OpenVPN / WireGuard: check routing of the tunnel networks on the far side "
         "(push 'route' / 'iroute', AllowedIPs) and that the far side's replies go into the "
         "tunnel; a one-way data channel after a completed handshake is rarely the network.",
         "SSL-VPN DTLS: UDP (usually 443) blocked on the path; the client falls back to the "
         "slower TLS channel (AnyConnect: 'DTLS connection failed, using TLS')."])
declare("VPN_NO_DATA", "dataplane", "error",
        "The control connection of a VPN beside IPsec set a session up — a PPTP call "
        "(Outgoing/Incoming-Call-Reply: connected), an L2TP session (ICCN/OCCN) — but no data "
        "packet (PPTP's GRE, L2TP data messages) flowed in either direction while the session "
        "lasted, for at least one_way_window seconds.  PPTP: GRE (IP protocol 47) blocked or "
        "not NAT-ed on the path is the classic cause.  (OpenVPN's data channel shares the "
        "control channel's port: a session whose handshake completed without P_DATA is "
        "OPENVPN_HANDSHAKE_STALLED.)",
        [when("PPTP: GRE (IP protocol 47) must pass in both directions, besides TCP 1723: "
              "allow it on every firewall on the path, and on a NAT enable 'PPTP passthrough' / "
              "the PPTP ALG, which maps GRE back to the client by its Call ID (without it, or "
              "with a second client behind the same NAT, GRE is dropped).", protocol="pptp"),
         when("PPTP: Windows reports error 806 (a firewall or router on the path does not allow "
              "GRE) or 619 (the connection could not be established) when GRE does not get "
              "through; the PPP negotiation over GRE times out.", protocol="pptp"),
         when("L2TP: the session is up but no PPP frame flowed: check that the LNS starts PPP "
              "for the session (xl2tpd / pppd, RRAS) and, for L2TP/IPsec, that the IPsec policy "
              "covers UDP 1701 both ways.", protocol="l2tp"),
         "Capture on the server side too: only a capture showing both ends tells whether the "
         "data packets leave the client and where they disappear (and check that the capture "
         "filter did not leave them out)."])
declare("TCP_NO_ANSWER", "reachability", "error",
        "TCP connection attempts to a VPN server port got no SYN-ACK: the SYN was retransmitted "
        "(or left unanswered for the response timeout).  A filter drops it, or nothing "
        "reachable owns the address.",
        ["Check firewalls/ACLs/security groups on the path for that TCP port, and the routing "
         "towards the server.",
         "Check that the server is up and listens on that port (ss -tlpn).",
         "OpenVPN logs 'TCP: connect to [AF_INET]...:443 failed: Connection timed out'; "
         "AnyConnect 'Connection attempt has timed out'."])
declare("TCP_RESET", "reachability", "error",
        "The VPN server (or a device on the path) reset the TCP connection before the VPN "
        "came up: nothing listens on that port (RST answering the SYN), or the server or a "
        "firewall closed it during the handshake.",
        ["RST answering the SYN: the service does not listen on that port, or a firewall "
         "rejects with RST; check 'port'/'proto' and ss -tlpn on the server.",
         "RST during the handshake: look at the server's log at that time (OpenVPN 'Connection "
         "reset, restarting', FortiGate 'sslvpn_login_... fail'); an IPS or proxy may also "
         "reset connections it does not like.",
         "OpenVPN logs 'Connection reset, restarting [0]'; AnyConnect 'The VPN connection was "
         "closed by the server'."])
declare("L2TP_ERROR", "negotiation", "error",
        "An L2TP control connection or session was refused or torn down with an error (StopCCN "
        "or CDN with a result code other than a normal clear), or the SCCRQ that opens the "
        "control connection was never answered.",
        ["Look the result and error codes up (RFC 2661 §4.4.2 / RFC 3931 §5.4.2) and check the "
         "LNS log at that time (xl2tpd, RRAS, the gateway's L2TP log).",
         "L2TP/IPsec: UDP 1701 must arrive inside the IPsec SA (the IPsec policy must cover "
         "UDP 1701); an unanswered SCCRQ in the clear means the traffic is not protected as "
         "the server expects.",
         "Windows reports error 789 / 809 when L2TP/IPsec cannot be set up."])
declare("PPTP_ERROR", "negotiation", "error",
        "The PPTP control connection reported an error: a reply with a result code other than "
        "success (Start-Control-Connection-Reply, Outgoing-Call-Reply, ...), a "
        "Call-Disconnect-Notify with a general error, or a request never answered.",
        ["Look the result and error codes up (RFC 2637 §2) and check the server's log.",
         "PPTP needs TCP 1723 and GRE (IP protocol 47) both ways; many NATs and firewalls pass "
         "only one PPTP client at a time.",
         "PPTP is obsolete and insecure (MS-CHAPv2 is broken): plan a move to a modern VPN."])


_DATA_NAMES = {"openvpn": "OpenVPN P_DATA", "wireguard": "WireGuard transport data",
               "l2tp": "L2TP data", "pptp": "GRE (PPTP data)", "sslvpn": "DTLS application data"}
_NAMES = {"openvpn": "OpenVPN", "wireguard": "WireGuard", "l2tp": "L2TP", "pptp": "PPTP",
          "sslvpn": "SSL-VPN"}
_QUIET_ALERTS = frozenset((_tls.AlertDescription.CLOSE_NOTIFY, _tls.AlertDescription.USER_CANCELED,
                           _tls.AlertDescription.NO_RENEGOTIATION))
#: a session that came up after at least this many control retransmissions, making up at least
#: this share of its control packets, is degraded (a few retransmissions over a long path are
#: normal: OpenVPN retransmits after 2 s without an ACK)
RETRANS_WARN = 5
RETRANS_SHARE = 0.2


# -- helpers --------------------------------------------------------------------------------------

def _fld(t) -> str:
    return "ip" if t.ipver == 4 else "ipv6"


def _flow_filter(t, transport=None) -> str:
    f = _fld(t)
    tr = transport or t.transport
    return (f"{f}.addr == {ip_text(t.client)} && {f}.addr == {ip_text(t.server)} && "
            f"{tr}.port == {t.port}")


def _server_txt(t) -> str:
    s = ip_text(t.server)
    if t.ipver == 6:
        s = f"[{s}]"
    return f"{s}:{t.port}/{t.transport}"


def _peers(t):
    return [ip_text(t.client), _server_txt(t)]


def _ev(ctx, refs, *a, **kw):
    """Evidence with its frames in capture order."""
    return ctx.evidence(sorted(set(refs)), *a, **kw)


def _refs(pairs):
    return [r for _ts, r in pairs]


def _intervals(ts_list):
    ts = sorted(ts_list)
    return [round(b - a, 1) for a, b in zip(ts, ts[1:])]


def _vpn(ctx, protocol=None):
    for t in ctx.state.vpn_tunnels:
        if protocol is None or t.protocol == protocol:
            yield t


def _tls_conversations(t):
    """(label, TlsConversation, conn or None) of a tunnel."""
    if t.protocol == "openvpn":
        for s in t.st.sessions:
            if s.tls is not None:
                yield f"session {s.index}", s.tls, None
    elif t.protocol == "sslvpn":
        for c in t.conns.values():
            if c.tls is not None:
                yield f"TCP {c.cport}", c.tls, c
        for f in t.st.dtls.values():
            yield f"DTLS {f.cport}", f.conv, None


# -- OpenVPN --------------------------------------------------------------------------------------

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
            continue  # pending: see vpn_verdicts
        if t.transport == "tcp" and not any(c.established for c in t.conns.values()):
            continue  # the TCP connection itself failed: TCP_NO_ANSWER / TCP_RESET
        answered_before = any(s.answered for s in sessions[:len(sessions) - len(tail)])
        opname = _ov.opcode_name(tail[0].reset_opcode or 7)
        detail = (f"{opname} from {ip_text(t.client)} to {_server_txt(t)}: {n} packet(s) in "
                  f"{len(tail)} session(s) (session IDs "
                  + ", ".join(f"{s.client_sid:016x}" for s in tail[:4] if s.client_sid is not None)
                  + f") over {last - first:.1f} s; the server sent nothing back "
                  f"(the capture ends {ctx.now - last:.1f} s after the last one).")
        iv = _intervals([ts for ts, _r in resets])
        if iv:
            detail += f" Intervals: {', '.join(f'{x:g}' for x in iv[:12])} s."
        lay = t.st.layout
        if lay is not None and lay != _ov.PLAIN:
            detail += (f" The control channel uses {_ov.layout_name(lay)}: a key mismatch "
                       f"between client and server looks exactly like this.")
        else:
            detail += (" Without keys the capture cannot tell a blocked port from a tls-auth / "
                       "tls-crypt key mismatch.")
        if answered_before:
            detail += (" Earlier sessions in this capture were answered: the server stopped "
                       "answering.")
        refs = _refs(resets)
        yield make("OPENVPN_NO_RESPONSE", f"ovpn-nr|{t.id}|{tail[0].index}",
                   title=f"OpenVPN server {_server_txt(t)} never answered the hard reset",
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
            ahead = "ahead of" if secs > 0 else "behind"
            yield make("OPENVPN_CLOCK_SKEW", f"ovpn-skew|{t.id}|{d}",
                       title=f"OpenVPN {side} {who}: its clock is {_duration(abs(secs))} "
                             f"{ahead} the capture's",
                       detail=(f"The net time of the {side}'s hard reset says "
                               f"{rfc3339(ts + secs)}; the capture recorded the packet at "
                               f"{rfc3339(ts)} ({secs:+.0f} s).  The skew is reported only; "
                               f"recognising OpenVPN does not depend on it."),
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
                    refs = s.ctl[0].retrans_refs + s.ctl[1].retrans_refs
                    yield make(
                        "OPENVPN_HANDSHAKE_STALLED", f"ovpn-retx|{t.id}|{s.index}",
                        title=f"OpenVPN control channel retransmitted {rt} times before the "
                              f"session to {_server_txt(t)} came up",
                        detail=(f"Session {s.index}: the client retransmitted {s.ctl[0].retrans} "
                                f"and the server {s.ctl[1].retrans} control packet(s) (same "
                                f"message packet ID sent again: not acknowledged in time); the "
                                f"data channel came up afterwards. Loss or delay on the path."),
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
            detail = (f"Session {s.index} (client session ID {s.client_sid:016x}"
                      if s.client_sid is not None else f"Session {s.index} (")
            detail += (f"): the server answered the hard reset; {s.ctl[0].packets} control "
                       f"packet(s) from the client ({retx} retransmitted) and "
                       f"{s.ctl[1].packets} from the server, the last from the server at "
                       f"+{ctx.rel(srv_last)} s; no data channel packet in either direction "
                       f"(the capture ends {ctx.now - last_ctl:.1f} s after the last control "
                       f"packet).")
            title = f"OpenVPN handshake with {_server_txt(t)} stalled"
            unacked = s.unacked(0)
            rejected = bool(unacked) and retx > 0 and s.tls is not None and \
                stage in ("client_flight", "complete")
            if rejected:
                # the server never acknowledged the client's last flight, which the client kept
                # re-sending: the server dropped the session on reading it (its certificate)
                c = s.tls.client
                sent_cert = c.has(_tls.CERTIFICATE)
                what = ("certificate flight" if sent_cert or s.tls.tls13 else "last handshake "
                        "flight")
                title = (f"OpenVPN server {_server_txt(t)} rejected the client's {what}: never "
                         f"acknowledged")
                ids = ", ".join(str(p) for p in unacked[:8])
                detail += f" TLS handshake stage reached: {stage.replace('_', ' ')}"
                if s.tls.version:
                    detail += f" ({_tls.version_name(s.tls.version)})"
                plural = "s" if len(unacked) > 1 else ""
                detail += (f". The server acknowledged the client's control packets up to packet "
                           f"ID {unacked[0] - 1} but never packet ID{plural} {ids} (the client's "
                           + ("Certificate, key exchange and Finished" if sent_cert else
                              "encrypted TLS 1.3 flight — its Certificate, CertificateVerify "
                              "and Finished when the server asks for a client certificate"
                              if s.tls.tls13 else "key exchange and Finished")
                           + f"), which the client retransmitted {retx} time(s). The server "
                           "rejected the client certificate — untrusted CA, expired or revoked: "
                           "it logs 'VERIFY ERROR: depth=0, error=...', then 'Packet "
                           "(P_CONTROL_V1) with invalid or missing SID' for each retransmission "
                           "— and dropped the session without an alert (OpenVPN 2.6 resets the "
                           "client instance before the alert is sent).")
            elif s.tls is not None and stage is not None:
                c = s.tls.client
                detail += f" TLS handshake stage reached: {stage.replace('_', ' ')}"
                if s.tls.version:
                    detail += f" ({_tls.version_name(s.tls.version)})"
                detail += "."
                if stage == "client_flight":
                    sent_cert = c.has(_tls.CERTIFICATE)
                    detail += (" The client sent its " + ("certificate, key exchange and "
                               "Finished" if sent_cert else "key exchange and Finished")
                               + " and the server went silent")
                    if retx:
                        detail += " while the client retransmitted"
                    detail += (": the server rejected the client" + (" certificate" if sent_cert
                               else "'s handshake") + " and dropped the session without an "
                               "alert (OpenVPN 2.6 resets the client instance before the alert "
                               "is sent).")
                    title = (f"OpenVPN server {_server_txt(t)} went silent after the client's "
                             + ("certificate" if sent_cert else "handshake") + " flight")
                elif stage == "server_flight":
                    detail += (" The server sent its certificate flight and the client never "
                               "answered it: the client did not accept the server (certificate, "
                               "'verify-x509-name', 'remote-cert-tls').")
                elif stage in ("server_hello", "client_hello"):
                    detail += " The handshake stopped early: version or cipher mismatch, or loss."
                elif stage == "complete":
                    detail += (" TLS completed, but no data channel followed: the server refused "
                               "the client after the handshake (auth-user-pass, "
                               "client-connect script, duplicate CN) or the key exchange "
                               "inside TLS failed.")
            elif s.encrypted:
                detail += (" The control channel is protected with tls-crypt: the TLS stage is "
                           "not visible.")
            refs = list(s.ctl[0].refs) + list(s.ctl[1].refs[-3:]) + s.ctl[0].retrans_refs
            yield make("OPENVPN_HANDSHAKE_STALLED", f"ovpn-stall|{t.id}|{s.index}",
                       title=title, detail=detail, basis="inferred",
                       evidence=_ev(ctx, refs, s.first_ts, last_ctl, peers=_peers(t)),
                       wireshark_filter=_flow_filter(t), tunnel=t.id)
            break  # the latest stalled session is the one that matters


# -- TLS / DTLS -----------------------------------------------------------------------------------

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
                                                 "TLS (OpenVPN control channel)")
                stage = conv.stage
                detail = (f"{what} alert {a.name} ({a.description}, {lvl}) from "
                          f"{'the client ' if from_client else 'the server '}{sender} "
                          f"({label}) at +{ctx.rel(a.ts)} s, handshake stage "
                          f"{stage.replace('_', ' ')}.")
                ch = conv.client.client_hello
                if ch is not None and ch.sni:
                    detail += f" SNI {ch.sni}."
                if a.description == _tls.AlertDescription.HANDSHAKE_FAILURE and stage == "client_hello":
                    detail += (" The server rejected the ClientHello outright: no common "
                               "protocol version or cipher suite.")
                fld = "dtls" if conv.dtls else "tls"
                yield make("TLS_ALERT",
                           f"tlsalert|{t.id}|{label}|{int(from_client)}|{a.ts:.6f}",
                           title=f"{what} alert {a.name} from the "
                                 f"{'client' if from_client else 'server'} "
                                 f"({_NAMES[t.protocol]} {_server_txt(t)})",
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
                    detail = (f"The {who} certificate ({ee.subject}; issuer {ee.issuer}) sent "
                              f"in {label} is {what}: {text}.")
                    yield make("TLS_CERT_INVALID", f"cert|{t.id}|{ee.sha1}|{what}|{who}",
                               title=f"{_NAMES[t.protocol]} {who} certificate {what} "
                                     f"({_server_txt(t)})",
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


# -- WireGuard ------------------------------------------------------------------------------------

@rule
def wireguard_handshakes(ctx):
    th = ctx.th
    for t in _vpn(ctx, "wireguard"):
        st = t.st
        if st.cookies:
            answered = sum(1 for h in st.handshakes if h.cookie_ts is not None and h.answered)
            yield make("WIREGUARD_COOKIE", f"wgcookie|{t.id}",
                       title=f"WireGuard responder sent {st.cookies} cookie reply(ies) "
                             f"({_server_txt(t)})",
                       detail=(f"{st.cookies} cookie reply(ies): the responder is under load "
                               f"(its handshake rate limit is active). {answered} handshake(s) "
                               f"got a response after a cookie."),
                       basis="observed",
                       evidence=_ev(ctx, st.cookie_refs, None, peers=_peers(t)),
                       wireshark_filter=frames_filter(st.cookie_refs), tunnel=t.id)
        hs = st.handshakes
        if not hs:
            continue
        tail = []
        for h in reversed(hs):
            if h.answered:
                break
            tail.append(h)
        if not tail:
            continue
        tail.reverse()
        first, last = tail[0], tail[-1]
        # transport data sent to the index of one of these initiations: the new session is in
        # use, so a response came (not captured); data on the old session proves nothing (it is
        # valid until REJECT_AFTER_TIME)
        if any(h.sender in st.counters for h in tail):
            continue
        if len(tail) < 2 and ctx.now - last.ts < th.response_timeout:
            continue  # pending
        prev = st.last_answered()
        initiator = ip_text(t.client) if first.from_client else ip_text(t.server)
        responder = _server_txt(t) if first.from_client else ip_text(t.client)
        detail = (f"{len(tail)} handshake initiation(s) from {initiator} to {responder} over "
                  f"{last.ts - first.ts:.1f} s without a response (the capture ends "
                  f"{ctx.now - last.ts:.1f} s after the last one)")
        iv = _intervals([h.ts for h in tail])
        if iv:
            detail += f"; intervals {', '.join(f'{x:g}' for x in iv[:12])} s"
        detail += "."
        if any(h.cookie_ts is not None for h in tail):
            detail += " The responder sent cookie replies but no handshake response."
        title = f"WireGuard handshake to {responder} never answered"
        if prev is not None:
            age = first.ts - prev.response_ts
            detail += (f" The previous handshake succeeded at +{ctx.rel(prev.response_ts)} s "
                       f"({age:.0f} s before)")
            if age >= _wg.REKEY_AFTER_TIME - 10:
                detail += (f": the renewal after REKEY_AFTER_TIME ({_wg.REKEY_AFTER_TIME} s) "
                           f"fails; data stops at REJECT_AFTER_TIME ({_wg.REJECT_AFTER_TIME} s)")
                title = f"WireGuard handshake renewal with {responder} failing"
            detail += "."
        refs = [h.ref for h in tail]
        yield make("WIREGUARD_NO_RESPONSE", f"wgnr|{t.id}|{first.sender}",
                   title=title, detail=detail, basis="observed",
                   evidence=_ev(ctx, refs, first.ts, last.ts, peers=_peers(t)),
                   wireshark_filter=_flow_filter(t), tunnel=t.id)


# -- data plane -----------------------------------------------------------------------------------

@rule
def data_one_way(ctx):
    th = ctx.th
    for t in ctx.state.vpn_tunnels:
        if t.protocol == "sslvpn":
            yield from _dtls_one_way(ctx, t)
            continue
        for d in (0, 1):
            o = 1 - d
            run = t.since_other[d]
            if run < th.one_way_min_packets or t.since_other_ts[d] is None:
                continue
            if t.pkts[o] == 0:
                continue  # the other side never appears: capture of one direction? (verdict)
            span = t.data_last_ts[d] - t.since_other_ts[d]
            quiet_since = t.data_last_ts[o] if t.data_last_ts[o] is not None else t.first_ts
            if span < th.one_way_window or ctx.now - quiet_since < th.one_way_window:
                continue
            sender = ip_text(t.client) if d == 0 else _server_txt(t)
            silent = _server_txt(t) if d == 0 else ip_text(t.client)
            what = _DATA_NAMES[t.protocol]
            if t.data[o]:
                how = (f"{silent} stopped sending {what} at +{ctx.rel(t.data_last_ts[o])} s "
                       f"(after {t.data[o]} packet(s))")
            else:
                how = f"{silent} never sent {what}"
            detail = (f"{run} {what} packet(s) from {sender} over {span:.1f} s while {how}; "
                      f"it sent {t.pkts[o]} other packet(s) in this tunnel, so the capture "
                      f"sees that direction.")
            if t.protocol == "pptp" and not t.data[o]:
                detail += " Typical of GRE (IP protocol 47) blocked or not NAT-ed on the path."
            refs = list(t.data_refs[d]) + list(t.data_tail[d])
            yield make("VPN_DATA_ONE_WAY", f"oneway|{t.id}|{d}",
                       title=f"{_NAMES[t.protocol]} data one-way: {sender} -> {silent} only",
                       detail=detail, basis="observed",
                       evidence=_ev(ctx, refs, t.since_other_ts[d], t.data_last_ts[d],
                                             peers=_peers(t)),
                       wireshark_filter=(f"{_fld(t)}.addr == {ip_text(t.client)} && "
                                         f"{_fld(t)}.addr == {ip_text(t.server)} && gre"
                                         if t.protocol == "pptp" else _flow_filter(t)),
                       tunnel=t.id)


def _dtls_one_way(ctx, t):
    th = ctx.th
    tls_ok = any(c.tls is not None and c.tls.complete for c in t.conns.values())
    for f in t.st.dtls.values():
        if f.pkts[1] or f.pkts[0] < 1:
            continue
        if f.pkts[0] <= 1 and ctx.now - f.last_ts < th.response_timeout:
            continue
        detail = (f"{f.pkts[0]} DTLS packet(s) from {ip_text(t.client)}:{f.cport} to "
                  f"{ip_text(t.server)}:{f.sport}/udp over {f.last_ts - f.first_ts:.1f} s, none "
                  f"back: the DTLS data channel did not come up.")
        if tls_ok:
            detail += " The TLS session works: the client falls back to tunnelling over TLS."
        fl = _fld(t)
        yield make("VPN_DATA_ONE_WAY", f"dtls1way|{t.id}|{f.cport}",
                   title=f"SSL-VPN DTLS channel to {ip_text(t.server)}:{f.sport}/udp unanswered",
                   detail=detail, basis="observed", severity="warning" if tls_ok else None,
                   evidence=_ev(ctx, [f.first_ref], f.first_ts, f.last_ts, peers=_peers(t)),
                   wireshark_filter=(f"{fl}.addr == {ip_text(t.server)} && "
                                     f"udp.port == {f.sport} && udp.port == {f.cport}"),
                   tunnel=t.id)


# -- TCP ------------------------------------------------------------------------------------------

def _conn_vpn_up(t, c) -> bool:
    if c.tls is not None:
        return c.tls.complete
    if t.protocol == "openvpn":
        return c.msgs[1] > 0 and any(s.established for s in t.st.sessions)
    if t.protocol == "pptp":
        return any(m[3].type == _pptp.SCCRP and m[3].result == 1 for m in t.st.messages)
    return c.bytes[1] > 0


@rule
def tcp_reachability(ctx):
    for t in ctx.state.vpn_tunnels:
        if t.transport != "tcp" or not t.conns:
            continue
        yield from tcp_connection_findings(
            ctx, list(t.conns.values()), ipver=t.ipver, client=t.client, server=t.server,
            port=t.port, name=_NAMES[t.protocol], tunnel=t.id, key=t.id,
            up=lambda c, t=t: _conn_vpn_up(t, c))


# -- L2TP / PPTP ----------------------------------------------------------------------------------

@rule
def l2tp_errors(ctx):
    th = ctx.th
    for t in _vpn(ctx, "l2tp"):
        st = t.st
        for m in st.messages:
            ts, ref, d, mt, result, error, emsg, tid, sid = m
            if mt not in (_l2tp.STOPCCN, _l2tp.CDN) or result is None:
                continue
            if _l2tp.result_is_normal(mt, result):
                continue
            who = "client (LAC)" if d == 0 else "server (LNS)"
            detail = (f"{_l2tp.message_name(mt)} from the {who} at +{ctx.rel(ts)} s: "
                      f"{_l2tp.result_text(mt, result, error)}"
                      + (f", message '{emsg}'" if emsg else "")
                      + f" (tunnel ID {tid}" + (f", session ID {sid}" if sid else "") + ").")
            yield make("L2TP_ERROR", f"l2tp|{t.id}|{ts:.6f}",
                       title=f"L2TP {_l2tp.message_name(mt)} with result {result} "
                             f"({_server_txt(t)})",
                       detail=detail, basis="observed",
                       evidence=_ev(ctx, [ref], ts, peers=_peers(t)),
                       wireshark_filter=frames_filter([ref]), tunnel=t.id)
        sccrq = [m for m in st.messages if m[3] == _l2tp.SCCRQ and m[2] == 0]
        answered = any(m[2] == 1 for m in st.messages) or st.zlb[1] or t.pkts[1]
        if sccrq and not answered:
            last = sccrq[-1][0]
            if len(sccrq) >= 2 or ctx.now - last >= th.response_timeout:
                refs = [m[1] for m in sccrq]
                yield make("L2TP_ERROR", f"l2tp-nr|{t.id}",
                           title=f"L2TP SCCRQ to {_server_txt(t)} never answered",
                           detail=(f"{len(sccrq)} SCCRQ(s) from {ip_text(t.client)} over "
                                   f"{last - sccrq[0][0]:.1f} s; nothing came back from the "
                                   f"server (the capture ends {ctx.now - last:.1f} s after the "
                                   f"last one)."),
                           basis="observed",
                           evidence=_ev(ctx, refs, sccrq[0][0], last, peers=_peers(t)),
                           wireshark_filter=_flow_filter(t), tunnel=t.id)


@rule
def pptp_errors(ctx):
    th = ctx.th
    for t in _vpn(ctx, "pptp"):
        st = t.st
        for ts, ref, d, m in st.messages:
            if not _pptp.result_is_error(m.type, m.result):
                continue
            who = "client" if d == 0 else "server"
            detail = (f"{_pptp.message_name(m.type)} from the {who} at +{ctx.rel(ts)} s: "
                      f"{_pptp.result_text(m.type, m.result, m.error)}"
                      + (f", cause code {m.cause}" if m.cause else "") + ".")
            yield make("PPTP_ERROR", f"pptp|{t.id}|{ts:.6f}",
                       title=f"PPTP {_pptp.message_name(m.type)}: "
                             f"{_pptp.RESULTS.get(m.type, {}).get(m.result, m.result)}",
                       detail=detail, basis="observed",
                       evidence=_ev(ctx, [ref], ts, peers=_peers(t)),
                       wireshark_filter=frames_filter([ref]), tunnel=t.id)
        # requests never answered
        for req, rep in ((_pptp.SCCRQ, _pptp.SCCRP), (_pptp.OCRQ, _pptp.OCRP)):
            reqs = [x for x in st.messages if x[3].type == req and x[2] == 0]
            reps = [x for x in st.messages if x[3].type == rep]
            if not reqs or reps:
                continue
            last = reqs[-1][0]
            if ctx.now - last < th.response_timeout:
                continue
            yield make("PPTP_ERROR", f"pptp-nr|{t.id}|{req}",
                       title=f"PPTP {_pptp.message_name(req)} never answered ({_server_txt(t)})",
                       detail=(f"{len(reqs)} {_pptp.message_name(req)} from "
                               f"{ip_text(t.client)}; no {_pptp.message_name(rep)} within "
                               f"{ctx.now - last:.1f} s."),
                       basis="observed",
                       evidence=_ev(ctx, [x[1] for x in reqs], reqs[0][0], last,
                                             peers=_peers(t)),
                       wireshark_filter=frames_filter([x[1] for x in reqs]), tunnel=t.id)


# -- sessions without data ------------------------------------------------------------------------

#: control messages that set a data session up (the reply saying "connected") and that end it
_PPTP_UP = {_pptp.OCRP: "Outgoing-Call-Reply", _pptp.ICRP: "Incoming-Call-Reply"}
_PPTP_DOWN = (_pptp.CCRQ, _pptp.CDN, _pptp.STOPCCRQ)
_L2TP_UP = (_l2tp.ICCN, _l2tp.OCCN)
_L2TP_DOWN = (_l2tp.CDN, _l2tp.STOPCCN)


def _sessions_up(t):
    """(ts, ref, what) of the control messages that set a data session up, and (ts, ref) of
    those that ended one, in capture order."""
    up, down = [], []
    if t.protocol == "pptp":
        for ts, ref, _d, m in t.st.messages:
            if m.type in _PPTP_UP and m.result == _pptp.SUCCESS.get(m.type):
                up.append((ts, ref, f"{_PPTP_UP[m.type]} (Connected, Call ID {m.call_id})"))
            elif m.type in _PPTP_DOWN:
                down.append((ts, ref))
    elif t.protocol == "l2tp":
        for ts, ref, _d, mt, *_rest in t.st.messages:
            if mt in _L2TP_UP:
                up.append((ts, ref, _l2tp.message_name(mt)))
            elif mt in _L2TP_DOWN:
                down.append((ts, ref))
    return up, down


def _no_data_span(ctx, t):
    """(set-up, end, cleared) of the first data session and how long it lasted in the capture:
    up to the message that ended it or to the end of the capture."""
    up, down = _sessions_up(t)
    if not up:
        return None
    ts0 = up[0][0]
    ends = [d for d in down if d[0] >= ts0]
    end = ends[0][0] if ends else ctx.now
    return up, ends[0] if ends else None, end - ts0


@rule
def no_data(ctx):
    """PPTP calls and L2TP sessions set up with no data either way (VPN_NO_DATA)."""
    th = ctx.th
    for t in ctx.state.vpn_tunnels:
        if t.protocol not in ("pptp", "l2tp") or t.data[0] or t.data[1]:
            continue
        span = _no_data_span(ctx, t)
        if span is None:
            continue
        up, cleared, lasted = span
        if lasted < th.one_way_window:
            continue  # too short to call the data missing: _not_seen says so
        ts0, ref0, what = up[0]
        data = "GRE (IP protocol 47, PPTP's data)" if t.protocol == "pptp" else \
            "L2TP data message (PPP)"
        detail = (f"The {_NAMES[t.protocol]} control connection {ip_text(t.client)} -> "
                  f"{_server_txt(t)} set a session up at +{ctx.rel(ts0)} s ({what}"
                  + (f"; {len(up)} in all" if len(up) > 1 else "") + ") and ")
        detail += (f"cleared it at +{ctx.rel(cleared[0])} s ({lasted:.1f} s later)" if cleared
                   else f"the capture ends {lasted:.1f} s later")
        detail += f"; not one {data} was seen in either direction."
        if t.protocol == "pptp":
            detail += (" GRE blocked or not NAT-ed on the path is the classic cause (the client "
                       "then gives up its PPP negotiation: Windows error 619 / 806), unless the "
                       "capture filter left IP protocol 47 out.")
        refs = [r for _ts, r, _w in up] + ([cleared[1]] if cleared else [])
        fl = _fld(t)
        flt = (f"{fl}.addr == {ip_text(t.client)} && {fl}.addr == {ip_text(t.server)} && "
               f"(pptp || gre)" if t.protocol == "pptp" else _flow_filter(t))
        yield make("VPN_NO_DATA", f"nodata|{t.id}",
                   title=(f"{_NAMES[t.protocol]} session with {_server_txt(t)} up, but no "
                          + ("GRE" if t.protocol == "pptp" else "data") + " either way"),
                   detail=detail, basis="observed", facts={"protocol": t.protocol},
                   evidence=_ev(ctx, refs, ts0, cleared[0] if cleared else None,
                                peers=_peers(t)),
                   wireshark_filter=flt, tunnel=t.id)


# -- ICMP errors about VPN flows ------------------------------------------------------------------

@rule
def vpn_icmp(ctx):
    tunnels = list(ctx.state.vpn_tunnels)
    if not tunnels or not ctx.state.icmp_errors:
        return
    # the tunnels between two addresses, in order (an ICMP error looks up its pair, not every
    # tunnel: thousands of errors and tunnels on a busy mirror port)
    by_pair: dict = {}
    for t in tunnels:
        by_pair.setdefault(frozenset((t.client, t.server)), []).append(t)
    groups = {}
    for e in ctx.state.icmp_errors:
        q = e.quoted
        if q is None:
            continue
        if icmp_too_big(e.ipver, e.icmp_type, e.icmp_code):
            continue  # path MTU
        if not icmp_unreachable_or_expired(e.ipver, e.icmp_type):
            continue
        qsrc, qdst, qproto, qsport, qdport = q.src, q.dst, q.proto, q.sport, q.dport
        for t in by_pair.get(frozenset((qsrc, qdst)), ()):
            if qdst == t.client and _healthy_evidence(t) and t.data_last_ts[1] is not None \
                    and e.ts >= t.data_last_ts[1] - 1.0:
                break  # the server's packets to a client that has gone: the end of a session
            if qproto == IpProto.GRE and t.protocol == "pptp":
                what = "GRE"
            elif qproto == IpProto.UDP and t.transport == "udp" and t.port in (qsport, qdport):
                what = f"UDP {t.port}"
            elif qproto == IpProto.TCP and t.transport == "tcp" and t.port in (qsport, qdport):
                what = f"TCP {t.port}"
            elif qproto == IpProto.UDP and t.protocol == "sslvpn" and any(
                    f.sport in (qsport, qdport) for f in t.st.dtls.values()):
                what = f"UDP {qdport} (DTLS)"
            else:
                continue
            groups.setdefault((t.id, what, e.icmp_type, e.icmp_code, qsrc, qdst), (t, []))[1] \
                .append(e)
            break
    for (tid, what, itype, icode, qsrc, qdst), (t, errs) in groups.items():
        e0 = errs[0]
        meaning = icmp_error_text(e0.ipver, itype, icode)
        reporter = ip_text(e0.src)
        detail = (f"{len(errs)} ICMP error(s) '{meaning}' from {reporter} about {what} "
                  f"{ip_text(qsrc)} -> {ip_text(qdst)} ({_NAMES[t.protocol]})"
                  + (" (sent by the peer itself)" if e0.src == qdst else
                     " (sent by a device on the path)") + ".")
        fld = "icmp" if e0.ipver == 4 else "icmpv6"
        yield make("ICMP_UNREACHABLE", f"vpnicmp|{tid}|{what}|{itype}|{icode}",
                   title=f"{what} to {ip_text(qdst)}: {meaning} ({_NAMES[t.protocol]})",
                   detail=detail, basis="observed",
                   evidence=_ev(ctx, [x.ref for x in errs], e0.ts, errs[-1].ts,
                                         peers=[ip_text(qsrc), ip_text(qdst), reporter]),
                   wireshark_filter=f"{fld}.type == {itype} && {fld}.code == {icode}",
                   advice=[f"Port/protocol unreachable: the {_NAMES[t.protocol]} service does "
                           f"not listen there (check the port and UDP/TCP in both "
                           f"configurations).",
                           "Administratively prohibited: find the filter that sent it — the "
                           "ICMP source address names the device.",
                           "Net/host unreachable: check the routing towards the server."],
                   tunnel=t.id)


# -- verdicts -------------------------------------------------------------------------------------

def _stage_reached(t) -> str:
    p = t.protocol
    reached = "reachability"
    if p == "openvpn":
        if any(s.answered for s in t.st.sessions):
            reached = "negotiation"
        if any(s.ctl[1].packets and s.ctl[0].packets > len(s.client_resets)
               for s in t.st.sessions):
            reached = "authentication"
    elif p == "wireguard":
        if any(h.answered for h in t.st.handshakes):
            reached = "authentication"
    elif p == "l2tp":
        if t.st.counts.get(_l2tp.SCCRP):
            reached = "negotiation"
        if t.st.counts.get(_l2tp.ICRP) or t.st.counts.get(_l2tp.OCRP):
            reached = "child_sa"
    elif p == "pptp":
        if t.st.counts.get(_pptp.SCCRP):
            reached = "negotiation"
        if t.st.counts.get(_pptp.OCRP) or t.st.counts.get(_pptp.ICRP):
            reached = "child_sa"
    elif p == "sslvpn":
        if any(c.synack for c in t.conns.values()) or any(
                f.pkts[1] for f in t.st.dtls.values()):
            reached = "negotiation"
        if any(c.tls is not None and c.tls.complete for c in t.conns.values()):
            reached = "authentication"
    if t.data[0] and t.data[1]:
        reached = "dataplane"
    elif p == "sslvpn" and any(c.tls is not None and c.tls.complete and c.tls.client.appdata
                               and c.tls.server.appdata for c in t.conns.values()):
        reached = "dataplane"
    return reached


def _healthy_evidence(t) -> bool:
    if t.data[0] and t.data[1]:
        return True
    if t.protocol == "sslvpn":
        return any(c.tls is not None and c.tls.complete and c.tls.client.appdata
                   and c.tls.server.appdata for c in t.conns.values())
    return False


def _pending(ctx, t) -> list:
    out = []
    th = ctx.th
    if t.protocol == "openvpn" and t.st.sessions:
        s = t.st.sessions[-1]
        if s.client_resets and not s.answered and s.ctl[0].packets <= 1:
            last = s.client_resets[-1][0]
            if ctx.now - last < th.response_timeout:
                out.append(f"the capture ends {ctx.now - last:.1f} s after the OpenVPN hard "
                           f"reset from {ip_text(t.client)} (at least "
                           f"{th.response_timeout:g} s are needed to call it unanswered)")
    if t.protocol == "wireguard" and t.st.handshakes:
        h = t.st.handshakes[-1]
        if not h.answered and len([x for x in t.st.handshakes if not x.answered]) < 2 and \
                ctx.now - h.ts < th.response_timeout:
            out.append(f"the capture ends {ctx.now - h.ts:.1f} s after a WireGuard handshake "
                       f"initiation (at least {th.response_timeout:g} s are needed to call it "
                       f"unanswered)")
    for c in t.conns.values():
        if c.syn and not c.synack and not c.rst_server and len(c.syn) < 2 and \
                ctx.now - c.syn[0][0] < th.response_timeout:
            out.append(f"the capture ends {ctx.now - c.syn[0][0]:.1f} s after a TCP SYN to "
                       f"{_server_txt(t)}")
            break
    return out


def _not_seen(ctx, t) -> list:
    notes = []
    if t.protocol == "openvpn":
        if any(s.encrypted for s in t.st.sessions):
            notes.append("the OpenVPN control channel is protected with tls-crypt: the TLS "
                         "handshake inside it is not visible")
        if any(s.tls is not None and s.tls.tls13 for s in t.st.sessions):
            notes.append("TLS 1.3: certificates are encrypted, their validity cannot be checked")
        if t.st.sessions and all(s.mid_session for s in t.st.sessions):
            notes.append("the capture started after the OpenVPN session was set up")
        if not t.st.sessions and t.data[0] + t.data[1]:
            notes.append("only the data channel is in the capture (the session was set up "
                         "before it started)")
    if t.protocol == "wireguard" and not t.st.handshakes:
        if t.st.cookies:
            # a cookie reply answers an initiation that is not in the capture: say what was seen
            notes.append(f"no WireGuard handshake initiation or response in the capture, only "
                         f"{t.st.cookies} cookie reply(ies) from {_server_txt(t)}: the responder "
                         f"is under load and demands a cookie before it computes a handshake; "
                         f"the initiation(s) it answered and the exchange that follows are not "
                         f"in the capture"
                         + ("" if t.data[0] or t.data[1] else " (and no transport data either)"))
        elif t.data[0] or t.data[1]:
            notes.append("no WireGuard handshake in the capture (the session was set up before "
                         "it started): only the data plane is visible")
    if t.protocol == "wireguard":
        gaps = sum(c.missing for c in t.st.counters.values())
        if gaps:
            total = sum(c.count for c in t.st.counters.values())
            notes.append(f"WireGuard counters skip {gaps} packet(s) of {gaps + total}: lost before "
                         f"the capture point (or not mirrored)")
    if t.protocol == "sslvpn":
        if any(c.tls is not None and c.tls.tls13 for c in t.conns.values()):
            notes.append("TLS 1.3: certificates are encrypted, their validity cannot be checked")
        stopped = [c.tls.stage for c in t.conns.values()
                   if c.tls is not None and not c.tls.complete]
        if stopped and not any(c.tls is not None and c.tls.complete for c in t.conns.values()):
            stages = ", ".join(sorted({s.replace("_", " ") for s in stopped}))
            notes.append(f"{len(stopped)} TLS connection(s) never completed the handshake "
                         f"(stage reached: {stages})")
        if not t.st.dtls and any(c.tls is not None and c.tls.complete for c in t.conns.values()):
            notes.append("no DTLS data channel in the capture: the tunnel runs over TLS (DTLS "
                         "disabled, blocked, or not negotiated)")
    if t.protocol in ("pptp", "l2tp") and not (t.data[0] or t.data[1]):
        span = _no_data_span(ctx, t)
        if span is not None and span[2] < ctx.th.one_way_window:
            notes.append(f"the {_NAMES[t.protocol]} session was set up only {span[2]:.1f} s "
                         + ("before it was cleared" if span[1] else "before the capture ends")
                         + f", with no data yet: too short to call the data missing (at least "
                         f"{ctx.th.one_way_window:g} s are needed)")
    if t.pkts[0] == 0 or t.pkts[1] == 0:
        side = "server" if t.pkts[1] == 0 else "client"
        notes.append(f"nothing from the {side} in this tunnel: the capture may see only one "
                     f"direction")
    elif (t.data[0] == 0) != (t.data[1] == 0):
        d = 0 if t.data[0] else 1
        span = t.data_last_ts[d] - t.data_first_ts[d]
        if span < ctx.th.one_way_window:
            notes.append(f"data only from the {'client' if d == 0 else 'server'} so far, over "
                         f"{span:.1f} s: too short to call the data plane one-way (at least "
                         f"{ctx.th.one_way_window:g} s are needed)")
    return notes


def vpn_verdicts(ctx, findings) -> list:
    """Verdicts of the tunnels in ``state.vpn_tunnels``: the contract of
    :mod:`pcapvpn.rules.verdict` (:func:`~pcapvpn.rules.verdict.decide`) with this module's
    evidence of health, pending items and stage reached."""
    from pcapvpn.rules.verdict import coverage_note, decide

    by_tunnel = {}
    for f in findings:
        by_tunnel.setdefault(f.tunnel, []).append(f)
    out = []
    for t in ctx.state.vpn_tunnels:
        fs = by_tunnel.get(t.id, [])
        not_seen = _not_seen(ctx, t)
        if any(f.stage == "reachability" and f.failure and f.severity in ("critical", "error")
               for f in fs):
            # the finding explains the silence better than "one direction captured"
            not_seen = [n for n in not_seen if "only one direction" not in n]
        out.append(decide(ctx, t, fs, not_seen=not_seen, pending=_pending(ctx, t),
                          healthy_evidence=_healthy_evidence(t),
                          unjudgeable=coverage_note(ctx, t), reached=_stage_reached(t)))
    return out


__all__ = ["vpn_verdicts"]
