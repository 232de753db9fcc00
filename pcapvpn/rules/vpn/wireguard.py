"""WireGuard: initiations without a response, cookie replies (under load)."""

from __future__ import annotations

from dissect.vpn import wireguard as _wg
from pcapvpn.findings import declare, make, msg
from pcapvpn.rules import rule
from pcapvpn.rules.common import frames_filter, ip_text
from pcapvpn.rules.vpn.common import _ev, _flow_filter, _intervals, _peers, _server_txt, _vpn


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


def _new_session_after(st, tail) -> bool:
    """Transport data from the initiator's side of ``tail`` (unanswered initiations) that opens a
    new session after the first of them: counter 0 to a receiver index no answered handshake
    named."""
    first = tail[-1] if tail[-1].ts <= tail[0].ts else tail[0]
    d = 0 if first.from_client else 1
    known = {h.responder_index for h in st.handshakes if h.responder_index is not None}
    return any(c.d == d and c.min == 0 and c.first_ts >= first.ts and i not in known
               for i, c in st.counters.items())


@rule
def wireguard_handshakes(ctx):
    th = ctx.th
    for t in _vpn(ctx, "wireguard"):
        st = t.st
        if st.cookies:
            answered = sum(1 for h in st.handshakes if h.cookie_ts is not None and h.answered)
            yield make("WIREGUARD_COOKIE", f"wgcookie|{t.id}",
                       title=msg("WireGuard responder sent {n} cookie reply(ies) ({server})",
                                 n=st.cookies, server=_server_txt(t)),
                       detail=msg("{n} cookie reply(ies): the responder is under load (its "
                                  "handshake rate limit is active). {answered} handshake(s) got "
                                  "a response after a cookie.", n=st.cookies, answered=answered),
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
        # the initiator's own transport data on a new session (counter 0, to a receiver index
        # first used after the initiation): it holds the responder's index, which only the
        # response gives (WireGuard paper §5.4.6: the initiator sends data only once the
        # response arrived): answered, the response not captured (one direction captured)
        if _new_session_after(st, tail):
            continue
        if len(tail) < 2 and ctx.now - last.ts < th.response_timeout:
            continue  # pending
        prev = st.last_answered()
        initiator = ip_text(t.client) if first.from_client else ip_text(t.server)
        responder = _server_txt(t) if first.from_client else ip_text(t.client)
        detail = msg("{n} handshake initiation(s) from {initiator} to {responder} over "
                     "{span:.1f} s without a response (the capture ends {after:.1f} s after the "
                     "last one)", n=len(tail), initiator=initiator, responder=responder,
                     span=last.ts - first.ts, after=ctx.now - last.ts)
        iv = _intervals([h.ts for h in tail])
        if iv:
            detail += msg("; intervals {iv} s", iv=', '.join(f'{x:g}' for x in iv[:12]))
        detail += "."
        if any(h.cookie_ts is not None for h in tail):
            detail += msg(" The responder sent cookie replies but no handshake response.")
        title = msg("WireGuard handshake to {responder} never answered", responder=responder)
        if prev is not None:
            age = first.ts - prev.response_ts
            detail += msg(" The previous handshake succeeded at +{t} s ({age:.0f} s before)",
                          t=ctx.rel(prev.response_ts), age=age)
            if age >= _wg.REKEY_AFTER_TIME - 10:
                detail += msg(": the renewal after REKEY_AFTER_TIME ({rekey} s) fails; data "
                              "stops at REJECT_AFTER_TIME ({reject} s)",
                              rekey=_wg.REKEY_AFTER_TIME, reject=_wg.REJECT_AFTER_TIME)
                title = msg("WireGuard handshake renewal with {responder} failing",
                            responder=responder)
            detail += "."
        refs = [h.ref for h in tail]
        yield make("WIREGUARD_NO_RESPONSE", f"wgnr|{t.id}|{first.sender}",
                   title=title, detail=detail, basis="observed",
                   evidence=_ev(ctx, refs, first.ts, last.ts, peers=_peers(t)),
                   wireshark_filter=_flow_filter(t), tunnel=t.id)
