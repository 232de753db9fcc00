"""Sessions that came up but carried no data."""

from __future__ import annotations

from dissect.vpn import l2tp as _l2tp
from dissect.vpn import pptp as _pptp
from pcapvpn.findings import declare, make, msg, when
from pcapvpn.rules import rule
from pcapvpn.rules.common import ip_text
from pcapvpn.rules.vpn.common import _NAMES, _ev, _fld, _flow_filter, _peers, _server_txt


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
        data = msg("GRE (IP protocol 47, PPTP's data)") if t.protocol == "pptp" else \
            msg("L2TP data message (PPP)")
        detail = (msg("The {proto} control connection {client} -> {server} set a session up at "
                      "+{t} s ({what}", proto=_NAMES[t.protocol], client=ip_text(t.client),
                      server=_server_txt(t), t=ctx.rel(ts0), what=what)
                  + (msg("; {n} in all", n=len(up)) if len(up) > 1 else "") + msg(") and "))
        detail += (msg("cleared it at +{t} s ({lasted:.1f} s later)", t=ctx.rel(cleared[0]),
                       lasted=lasted) if cleared
                   else msg("the capture ends {lasted:.1f} s later", lasted=lasted))
        detail += msg("; not one {data} was seen in either direction.", data=data)
        if t.protocol == "pptp":
            detail += msg(" GRE blocked or not NAT-ed on the path is the classic cause (the "
                          "client then gives up its PPP negotiation: Windows error 619 / 806), "
                          "unless the capture filter left IP protocol 47 out.")
        refs = [r for _ts, r, _w in up] + ([cleared[1]] if cleared else [])
        fl = _fld(t)
        flt = (f"{fl}.addr == {ip_text(t.client)} && {fl}.addr == {ip_text(t.server)} && "
               f"(pptp || gre)" if t.protocol == "pptp" else _flow_filter(t))
        yield make("VPN_NO_DATA", f"nodata|{t.id}",
                   title=msg("{proto} session with {server} up, but no {what} either way",
                             proto=_NAMES[t.protocol], server=_server_txt(t),
                             what="GRE" if t.protocol == "pptp" else msg("data")),
                   detail=detail, basis="observed", facts={"protocol": t.protocol},
                   evidence=_ev(ctx, refs, ts0, cleared[0] if cleared else None,
                                peers=_peers(t)),
                   wireshark_filter=flt, tunnel=t.id)
