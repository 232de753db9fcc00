"""Helpers shared by the rules of the VPNs beside IPsec (names, filters, evidence, tunnel lists)."""

from __future__ import annotations

from pcapvpn.rules.common import ip_text


_DATA_NAMES = {"openvpn": "OpenVPN P_DATA", "wireguard": "WireGuard transport data",
               "l2tp": "L2TP data", "pptp": "GRE (PPTP data)", "sslvpn": "DTLS application data"}


_NAMES = {"openvpn": "OpenVPN", "wireguard": "WireGuard", "l2tp": "L2TP", "pptp": "PPTP",
          "sslvpn": "SSL-VPN"}


#: a session that came up after at least this many control retransmissions, making up at least
#: this share of its control packets, is degraded (a few retransmissions over a long path are
#: normal: OpenVPN retransmits after 2 s without an ACK)
RETRANS_WARN = 5


RETRANS_SHARE = 0.2


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


def _healthy_evidence(t) -> bool:
    if t.data[0] and t.data[1]:
        return True
    if t.protocol == "sslvpn":
        return any(c.tls is not None and c.tls.complete and c.tls.client.appdata
                   and c.tls.server.appdata for c in t.conns.values())
    return False
