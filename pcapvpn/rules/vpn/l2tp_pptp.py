"""L2TP and PPTP control connections that end in an error."""

from __future__ import annotations

from dissect.vpn import l2tp as _l2tp
from dissect.vpn import pptp as _pptp
from pcapvpn.findings import Term, declare, make, msg
from pcapvpn.rules import rule
from pcapvpn.rules.common import frames_filter, ip_text
from pcapvpn.rules.vpn.common import _ev, _flow_filter, _peers, _server_txt, _vpn


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
            who = Term("client (LAC)" if d == 0 else "server (LNS)")
            detail = (msg("{message} from the {who} at +{t} s: {result}",
                          message=_l2tp.message_name(mt), who=who, t=ctx.rel(ts),
                          result=Term(_l2tp.result_text(mt, result, error)))
                      + (msg(", message '{text}'", text=emsg) if emsg else "")
                      + msg(" (tunnel ID {tid}", tid=tid)
                      + (msg(", session ID {sid}", sid=sid) if sid else "") + ").")
            yield make("L2TP_ERROR", f"l2tp|{t.id}|{ts:.6f}",
                       title=msg("L2TP {message} with result {result} ({server})",
                                 message=_l2tp.message_name(mt), result=result,
                                 server=_server_txt(t)),
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
                           title=msg("L2TP SCCRQ to {server} never answered",
                                     server=_server_txt(t)),
                           detail=msg("{n} SCCRQ(s) from {client} over {span:.1f} s; nothing "
                                      "came back from the server (the capture ends {after:.1f} s "
                                      "after the last one).", n=len(sccrq),
                                      client=ip_text(t.client), span=last - sccrq[0][0],
                                      after=ctx.now - last),
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
            who = Term("client" if d == 0 else "server")
            detail = (msg("{message} from the {who} at +{t} s: {result}",
                          message=_pptp.message_name(m.type), who=who, t=ctx.rel(ts),
                          result=Term(_pptp.result_text(m.type, m.result, m.error)))
                      + (msg(", cause code {cause}", cause=m.cause) if m.cause else "") + ".")
            yield make("PPTP_ERROR", f"pptp|{t.id}|{ts:.6f}",
                       title=msg("PPTP {message}: {result}", message=_pptp.message_name(m.type),
                                 result=Term(str(_pptp.RESULTS.get(m.type, {}).get(m.result,
                                                                                    m.result)))),
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
                       title=msg("PPTP {message} never answered ({server})",
                                 message=_pptp.message_name(req), server=_server_txt(t)),
                       detail=msg("{n} {message} from {client}; no {reply} within {after:.1f} s.",
                                  n=len(reqs), message=_pptp.message_name(req),
                                  client=ip_text(t.client), reply=_pptp.message_name(rep),
                                  after=ctx.now - last),
                       basis="observed",
                       evidence=_ev(ctx, [x[1] for x in reqs], reqs[0][0], last,
                                             peers=_peers(t)),
                       wireshark_filter=frames_filter([x[1] for x in reqs]), tunnel=t.id)
