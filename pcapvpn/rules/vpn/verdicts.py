"""The evidence for the verdicts of OpenVPN, WireGuard, L2TP, PPTP and SSL-VPN tunnels: the
stage reached, what is pending and what the capture could not show.  :mod:`pcapvpn.rules.verdict`
asks for it and decides; this module never imports the verdict (the arrow points one way)."""

from __future__ import annotations

from dissect.vpn import l2tp as _l2tp
from dissect.vpn import pptp as _pptp
from pcapvpn.findings import Term, msg
from pcapvpn.rules.common import ip_text
from pcapvpn.rules.vpn.common import _NAMES, _healthy_evidence, _server_txt
from pcapvpn.rules.vpn.no_data import _no_data_span


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


def _pending(ctx, t) -> list:
    out = []
    th = ctx.th
    if t.protocol == "openvpn" and t.st.sessions:
        s = t.st.sessions[-1]
        if s.client_resets and not s.answered and s.ctl[0].packets <= 1:
            last = s.client_resets[-1][0]
            if ctx.now - last < th.response_timeout:
                out.append(msg("the capture ends {after:.1f} s after the OpenVPN hard reset "
                               "from {ip} (at least {timeout:g} s are needed to call it "
                               "unanswered)", after=ctx.now - last, ip=ip_text(t.client),
                               timeout=th.response_timeout))
    if t.protocol == "wireguard" and t.st.handshakes:
        h = t.st.handshakes[-1]
        if not h.answered and len([x for x in t.st.handshakes if not x.answered]) < 2 and \
                ctx.now - h.ts < th.response_timeout:
            out.append(msg("the capture ends {after:.1f} s after a WireGuard handshake "
                           "initiation (at least {timeout:g} s are needed to call it "
                           "unanswered)", after=ctx.now - h.ts, timeout=th.response_timeout))
    for c in t.conns.values():
        if c.syn and not c.synack and not c.rst_server and len(c.syn) < 2 and \
                ctx.now - c.syn[0][0] < th.response_timeout:
            out.append(msg("the capture ends {after:.1f} s after a TCP SYN to {server}",
                           after=ctx.now - c.syn[0][0], server=_server_txt(t)))
            break
    return out


def _not_seen(ctx, t) -> list:
    notes = []
    if t.protocol == "openvpn":
        if any(s.encrypted for s in t.st.sessions):
            notes.append(msg("the OpenVPN control channel is protected with tls-crypt: the TLS "
                             "handshake inside it is not visible"))
        if any(s.tls is not None and s.tls.tls13 for s in t.st.sessions):
            notes.append(msg("TLS 1.3: certificates are encrypted, their validity cannot be "
                             "checked"))
        if t.st.sessions and all(s.mid_session for s in t.st.sessions):
            notes.append(msg("the capture started after the OpenVPN session was set up"))
        if not t.st.sessions and t.data[0] + t.data[1]:
            notes.append(msg("only the data channel is in the capture (the session was set up "
                             "before it started)"))
    if t.protocol == "wireguard" and not t.st.handshakes:
        if t.st.cookies:
            # a cookie reply answers an initiation that is not in the capture: say what was seen
            notes.append(msg("no WireGuard handshake initiation or response in the capture, "
                             "only {n} cookie reply(ies) from {server}: the responder is under "
                             "load and demands a cookie before it computes a handshake; the "
                             "initiation(s) it answered and the exchange that follows are not "
                             "in the capture", n=t.st.cookies, server=_server_txt(t))
                         + ("" if t.data[0] or t.data[1]
                            else msg(" (and no transport data either)")))
        elif t.data[0] or t.data[1]:
            notes.append(msg("no WireGuard handshake in the capture (the session was set up "
                             "before it started): only the data plane is visible"))
    if t.protocol == "wireguard":
        gaps = sum(c.missing for c in t.st.counters.values())
        if gaps:
            total = sum(c.count for c in t.st.counters.values())
            notes.append(msg("WireGuard counters skip {gaps} packet(s) of {total}: lost before "
                             "the capture point (or not mirrored)", gaps=gaps, total=gaps + total))
    if t.protocol == "sslvpn":
        if any(c.tls is not None and c.tls.tls13 for c in t.conns.values()):
            notes.append(msg("TLS 1.3: certificates are encrypted, their validity cannot be "
                             "checked"))
        stopped = [c.tls.stage for c in t.conns.values()
                   if c.tls is not None and not c.tls.complete]
        if stopped and not any(c.tls is not None and c.tls.complete for c in t.conns.values()):
            stages = ", ".join(sorted({s.replace("_", " ") for s in stopped}))
            notes.append(msg("{n} TLS connection(s) never completed the handshake (stage "
                             "reached: {stages})", n=len(stopped), stages=Term(stages)))
        if not t.st.dtls and any(c.tls is not None and c.tls.complete for c in t.conns.values()):
            notes.append(msg("no DTLS data channel in the capture: the tunnel runs over TLS (DTLS "
                             "disabled, blocked, or not negotiated)"))
    if t.protocol in ("pptp", "l2tp") and not (t.data[0] or t.data[1]):
        span = _no_data_span(ctx, t)
        if span is not None and span[2] < ctx.th.one_way_window:
            notes.append(msg("the {proto} session was set up only {t:.1f} s {when}, with no "
                             "data yet: too short to call the data missing (at least {need:g} s "
                             "are needed)", proto=_NAMES[t.protocol], t=span[2],
                             when=msg("before it was cleared") if span[1]
                             else msg("before the capture ends"),
                             need=ctx.th.one_way_window))
    if t.pkts[0] == 0 or t.pkts[1] == 0:
        side = "server" if t.pkts[1] == 0 else "client"
        tcp_bytes = sum(c.bytes_s if side == "server" else c.bytes_c
                        for c in t.conns.values()) if t.protocol == "openvpn" else 0
        if tcp_bytes:
            # its TCP segments are there, but no OpenVPN packet could be read from them
            notes.append(msg("the {side} sent {n} bytes over TCP in which no OpenVPN packet "
                             "could be read: obfuscated OpenVPN (a scramble/XOR patch, a "
                             "proxy's wrapping) or another protocol on the port", side=Term(side),
                             n=tcp_bytes))
        else:
            notes.append(msg("nothing from the {side} in this tunnel: the capture may see only "
                             "one direction", side=Term(side)))
    elif (t.data[0] == 0) != (t.data[1] == 0):
        d = 0 if t.data[0] else 1
        span = t.data_last_ts[d] - t.data_first_ts[d]
        if span < ctx.th.one_way_window:
            notes.append(msg("data only from the {side} so far, over {span:.1f} s: too short "
                             "to call the data plane one-way (at least {need:g} s are needed)",
                             side=Term('client' if d == 0 else 'server'), span=span,
                             need=ctx.th.one_way_window))
    return notes


def vpn_evidence(ctx, t, fs) -> dict:
    """What the verdict contract (:func:`pcapvpn.rules.verdict.decide`) needs to judge an
    OpenVPN, WireGuard, L2TP, PPTP or SSL-VPN tunnel ``t`` with its findings ``fs``: what the
    capture could not show, what is pending, the evidence of health and the stage reached."""
    not_seen = _not_seen(ctx, t)
    if any(f.stage == "reachability" and f.failure and f.severity in ("critical", "error")
           for f in fs):
        # the finding explains the silence better than "one direction captured"
        not_seen = [n for n in not_seen if "only one direction" not in n]
    return {"not_seen": not_seen, "pending": _pending(ctx, t),
            "healthy_evidence": _healthy_evidence(t), "reached": _stage_reached(t)}
