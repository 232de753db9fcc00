"""Data one way, TCP connections without an answer or reset (OpenVPN-TCP, PPTP, SSL-VPN)."""

from __future__ import annotations

from dissect.vpn import pptp as _pptp
from pcapvpn.findings import Term, declare, make, msg
from pcapvpn.rules import rule
from pcapvpn.rules.common import ip_text, tcp_connection_findings
from pcapvpn.rules.vpn.common import (
    _DATA_NAMES, _NAMES, _ev, _fld, _flow_filter, _peers, _server_txt,
)


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
                how = msg("{silent} stopped sending {what} at +{t} s (after {n} packet(s))",
                          silent=silent, what=Term(what), t=ctx.rel(t.data_last_ts[o]),
                          n=t.data[o])
            else:
                how = msg("{silent} never sent {what}", silent=silent, what=Term(what))
            detail = msg("{n} {what} packet(s) from {sender} over {span:.1f} s while {how}; it "
                         "sent {other} other packet(s) in this tunnel, so the capture sees that "
                         "direction.", n=run, what=Term(what), sender=sender, span=span, how=how,
                         other=t.pkts[o])
            if t.protocol == "pptp" and not t.data[o]:
                detail += msg(" Typical of GRE (IP protocol 47) blocked or not NAT-ed on the "
                              "path.")
            refs = list(t.data_refs[d]) + list(t.data_tail[d])
            yield make("VPN_DATA_ONE_WAY", f"oneway|{t.id}|{d}",
                       title=msg("{proto} data one-way: {sender} -> {silent} only",
                                 proto=_NAMES[t.protocol], sender=sender, silent=silent),
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
        detail = msg("{n} DTLS packet(s) from {client}:{cport} to {server}:{sport}/udp over "
                     "{span:.1f} s, none back: the DTLS data channel did not come up.",
                     n=f.pkts[0], client=ip_text(t.client), cport=f.cport,
                     server=ip_text(t.server), sport=f.sport, span=f.last_ts - f.first_ts)
        if tls_ok:
            detail += msg(" The TLS session works: the client falls back to tunnelling over "
                          "TLS.")
        fl = _fld(t)
        yield make("VPN_DATA_ONE_WAY", f"dtls1way|{t.id}|{f.cport}",
                   title=msg("SSL-VPN DTLS channel to {server}:{sport}/udp unanswered",
                             server=ip_text(t.server), sport=f.sport),
                   detail=detail, basis="observed", severity="warning" if tls_ok else None,
                   evidence=_ev(ctx, [f.first_ref], f.first_ts, f.last_ts, peers=_peers(t)),
                   wireshark_filter=(f"{fl}.addr == {ip_text(t.server)} && "
                                     f"udp.port == {f.sport} && udp.port == {f.cport}"),
                   tunnel=t.id)


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
