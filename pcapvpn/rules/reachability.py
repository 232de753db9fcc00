"""Reachability: do the gateways reach each other on the VPN ports?

Also the two codes that compete with "no response" for an unanswered IKE message (precedence of
the analyze issue): an unanswered message that went out as IP fragments while RFC 7383 IKE
fragmentation was not negotiated is ``IKE_FRAGMENTATION_LOSS``; unanswered unfragmented traffic on
4500 after a working 500 is ``NAT_T_BLOCKED``; anything else unanswered is ``IKE_NO_RESPONSE``.
Liveness checks (empty INFORMATIONAL) are the stability rules' (DPD_TIMEOUT).
"""

from __future__ import annotations

import bisect
from collections import namedtuple

from dissect.vpn import registry as reg
from dissect.vpn.ip import (
    IpProto, Port, icmp_error_text,
)
from dissect.vpn.registry import ExchangeType, NotifyV2, PayloadV2
from pcapvpn.findings import Term, declare, make, msg, msg_join, when
from pcapvpn.rules import rule
from pcapvpn.rules.incremental import ike_unit_fp, per_sa
from pcapvpn.rules.common import (
    UNANSWERED, backoff, endpoint_text, established_ts, exchange_label, exchange_status, ike_facts, ike_filter,
    ike_tunnel_of, implementation_hint, ip_text, last_requests, frames_filter, side_of,
    mm5_answers, starts_and_latest, tcp_connection_findings, unreachable_errors,
)
from pcapvpn.track.nat import port_role

FRAGMENTATION_VID_PREFIX = bytes.fromhex("4048b7d56ebce88525e7de7f00d6c2d3")  # IKEv1 (Cisco/strongSwan)

#: what the daemons log when a request goes unanswered (anchors.md §2.5; strongSwan
#: task_manager_v1/v2.c, libreswan retransmit.c: the text depends on the state the initiator
#: is in when it gives up; Cisco 'show crypto isakmp sa' states of the initiator, ASA / IOS)
_NO_ANSWER_LOGS = [
    when("strongSwan logs 'retransmit N of request with message ID {msgid}' on the side that "
         "sent the request, then 'giving up after N retransmits'.",
         version=2, impl="strongSwan"),
    when("strongSwan logs 'sending retransmit N of request message ID {msgid}, seq N' on the "
         "side that sent the request, then 'giving up after N retransmits'.",
         version=1, impl="strongSwan"),
    when("libreswan logs '...: retransmission; will wait N seconds for response', and when it "
         "gives up '... No response (or no acceptable response) to our first IKEv2 message'.",
         exchange="IKE_SA_INIT", impl="libreswan"),
    when("libreswan logs '...: retransmission; will wait N seconds for response', and when it "
         "gives up '... No response (or no acceptable response) to our first IKEv1 message'.",
         exchange=("MM1", "AM1"), impl="libreswan"),
    when("libreswan logs '... Possible authentication failure: no acceptable response to our "
         "first encrypted message' when it gives up — misleading when the request never "
         "arrived.",
         exchange=("IKE_AUTH", "MM5"), impl="libreswan"),
    when("libreswan logs '... No acceptable response to our first Quick Mode message: perhaps "
         "peer likes no proposal' when it gives up.",
         exchange="QM1", impl="libreswan"),
    when("Cisco: 'show crypto isakmp sa' shows the initiator's SA in MM_WAIT_MSG2 (ASA) / "
         "MM_NO_STATE (IOS).", exchange="MM1", impl="Cisco"),
    when("Cisco: 'show crypto isakmp sa' shows the initiator's SA in MM_WAIT_MSG4 (ASA) / "
         "MM_SA_SETUP (IOS).", exchange="MM3", impl="Cisco"),
    when("Cisco: 'show crypto isakmp sa' shows the initiator's SA in MM_WAIT_MSG6 (ASA) / "
         "MM_KEY_EXCH (IOS).", exchange="MM5", impl="Cisco"),
    when("Cisco IOS: 'show crypto isakmp sa' shows the SA in AG_NO_STATE.",
         exchange="AM1", impl="Cisco"),
]

declare("IKE_NO_RESPONSE", "reachability", "error",
        "An IKE request was retransmitted or left unanswered for longer than the response timeout: "
        "the peer never answered it (or its answers never reached the capture point). A "
        "CREATE_CHILD_SA or INFORMATIONAL request of an IKE SA that worked before (the peer had "
        "answered it) is placed at stability: the peer stopped answering while the tunnel was up.",
        ["Check that the peer receives the request: capture on its side too (only a capture "
         "showing both gateways tells where packets disappear).",
         "Check firewalls/ACLs on the path for UDP 500 and 4500 (and IP protocol 50) in both "
         "directions.",
         "Check that the IKE daemon runs and listens on the peer that should answer (ss -ulpn | "
         "grep -E ':500|:4500')."] + _NO_ANSWER_LOGS)
declare("ICMP_UNREACHABLE", "reachability", "error",
        "An ICMP/ICMPv6 error quoting IKE or ESP: port unreachable means no daemon listens; "
        "administratively prohibited means a filter rejects it; net/host unreachable is routing.",
        ["Port unreachable: start the IKE daemon on the peer / check it listens on UDP 500/4500.",
         "Administratively prohibited: find the filter (firewall, ACL, security group) that sent it "
         "— the ICMP source address names the device.",
         "Net/host unreachable: check the routing towards the peer."])
declare("NAT_T_BLOCKED", "nat_traversal", "error",
        "IKE worked on UDP 500, but after the move to UDP 4500 (NAT traversal) the requests were "
        "never answered: UDP 4500 is blocked or not forwarded.",
        ["Allow UDP 4500 in both directions on every firewall/NAT on the path (and forward it on "
         "the responder's NAT, if any).",
         when("strongSwan logs 'retransmit N of request with message ID {msgid}' on the side "
              "that sent the request, after 'local host is behind NAT, sending keep alives' / "
              "'remote host is behind NAT', then 'giving up after N retransmits'.",
              version=2, impl="strongSwan"),
         when("strongSwan logs 'sending retransmit N of request message ID {msgid}, seq N' on "
              "the side that sent the request, after 'remote host is behind NAT', then 'giving up "
              "after N retransmits'.", version=1, impl="strongSwan"),
         when("libreswan logs '... Possible authentication failure: no acceptable response to "
              "our first encrypted message' when it gives up, although the request never "
              "arrived.", exchange=("IKE_AUTH", "MM5"), impl="libreswan"),
         when("As a test, disable forced UDP encapsulation (strongSwan encap = no) when no NAT "
              "exists on the path: IKE and ESP then stay on UDP 500 and IP protocol 50.",
              nat="forced")])
declare("IKE_FRAGMENTATION_LOSS", "nat_traversal", "error",
        "An IKE message too large for one packet went out as IP fragments and was never answered, "
        "and IKE fragmentation (RFC 7383) was not negotiated: fragments are dropped on the path "
        "(typical with certificates).",
        ["Enable IKE fragmentation on both peers (strongSwan fragmentation=yes, Cisco 'crypto "
         "ikev2 fragmentation', FortiGate 'set fragmentation enable'), so that IKE fragments "
         "itself instead of relying on IP fragments.",
         "Find the device that drops IP fragments (firewalls and some NATs do) or lower the "
         "certificate chain size (send only the end-entity certificate, use ECDSA keys).",
         when("libreswan logs 'Possible authentication failure: no acceptable response to our "
              "first encrypted message' in this case, which misleads: the message never "
              "arrived.", exchange=("IKE_AUTH", "MM5"), impl="libreswan")]
        + _NO_ANSWER_LOGS[:2])
declare("EXPECTED_PEER_ABSENT", "reachability", "error",
        "A gateway named with --expect-peer never appears in the capture: nothing was sent to or "
        "from it.",
        ["Check the capture point: is it on the path towards that peer?",
         "Check that the local gateway tries to connect (is the tunnel configured to start "
         "automatically, or does it wait for traffic?)."])


#: advice of TCP_NO_ANSWER / TCP_RESET (declared in rules/vpn/flows.py) for IKE over TCP (RFC 9329)
IKE_TCP_ADVICE = (
    "Check firewalls/ACLs on the path for the IKE TCP port (4500 unless configured otherwise) "
    "in both directions.",
    "Check that the responder accepts IKE over TCP on that port: libreswan needs listen-tcp=yes "
    "on the responder and enable-tcp=yes|fallback with a matching tcp-remoteport on the "
    "initiator (ss -tlpn on the responder shows the listener).",
    "A refused connection (RST answering the SYN) makes libreswan's initiator log 'TCP: "
    "connect(...) failed: Connection refused (errno 111)'.",
)


def _nat_story(sa) -> str | None:
    """"real" (NAT-D shows a NAT), "forced" (only a faked hash), None (no NAT-D seen)."""
    from pcapvpn.track.nat import ensure_verdict

    v = ensure_verdict(sa)
    if v.nat_sides:
        return "real"
    return "forced" if v.forced_sides else None


def _is_liveness(x) -> bool:
    return x.version == 2 and x.exch == ExchangeType.INFORMATIONAL and any(
        m.sk_next == 0 for m in x.requests)


def _fragmented(msgs) -> bool:
    return any(len(m.frames) > 1 or m.head_only for m in msgs)


def _ike_fragmentation_negotiated(sa) -> bool:
    if sa.version == 2:
        sides = set()
        for m in sa.messages:
            if m.has_notify(NotifyV2.IKEV2_FRAGMENTATION_SUPPORTED):
                sides.add(m.is_response)
        return sides == {False, True}
    sides = set()
    for m in sa.messages:
        if any(bytes(v).startswith(FRAGMENTATION_VID_PREFIX) for v in m.vendor_ids):
            sides.add(m.src)
    return len(sides) >= 2


def _v1_peer_still_talking(sa, x, first, reqs) -> bool:
    """IKEv1 Main Mode: the peer answered MM5 with an Informational (an error notification, in
    the clear or encrypted), or it answered our previous step on these very ports and kept
    re-sending its last message while ours (MM5, small, not fragmented) went unanswered.

    pluto (libreswan) sends no notification when it cannot read MM5 (a PSK mismatch): both sides
    retransmit, MM4 and MM5, until they give up. The path carried MM1-MM4 on the same ports,
    so the request was not lost on the way; what the peer could not do is read it, which is
    authentication (IKE_AUTH_FAILED, inferred, in rules/authentication.py). A request that went
    to other ports (NAT-T's move to 4500) or as IP fragments keeps its reachability finding."""
    if x.version != 1 or x.exch != ExchangeType.MAIN_MODE or first.step != 5:
        return False
    if mm5_answers(sa, first):
        return True
    if _fragmented(reqs):
        return False
    ports = (first.transport, first.sport, first.dport)
    answered_here = any(m.src != first.src and m.step == first.step - 1
                        and (m.transport, m.dport, m.sport) == ports for m in x.msgs)
    resent = any(m.src != first.src and m.step < first.step and m.ts > first.ts
                 for m in x.msgs)
    return answered_here and resent


#: the first phase-1 step by which a peer shows the SA keyed (RFC 2409 §5: Main Mode's MM5 and
#: MM6 are encrypted; Aggressive Mode's AM2 carries the responder's hash)
_PEER_KEYED_STEP = {ExchangeType.MAIN_MODE: 5, ExchangeType.AGGRESSIVE: 2}


def _v1_phase2_after_phase1_here(sa, x, first, reqs) -> bool:
    """The first Quick Mode of an IKEv1 SA whose phase 1 the peer completed on these very
    ports (its MM5 / MM6 or AM2 came back on them): the path carries this SA's encrypted messages, so
    an unanswered QM1 is the child SA's negotiation (a responder that drops a phase-2 proposal
    or proxy IDs it does not accept without a word), judged at child_sa, not an unreachable peer.
    A later Quick Mode (a rekey) is the stability case (``_while_up``); QM1 sent as IP fragments
    keeps its path finding."""
    if x.version != 1 or x.exch != ExchangeType.QUICK_MODE or _fragmented(reqs):
        return False
    ports = (first.transport, first.sport, first.dport)
    done_here = False
    for y in sa.exchanges[:x.index]:
        if y.exch == ExchangeType.QUICK_MODE:
            return False
        keyed = _PEER_KEYED_STEP.get(y.exch)
        if keyed is not None and any(
                m.src != first.src and m.step >= keyed
                and (m.transport, m.dport, m.sport) == ports for m in y.msgs):
            done_here = True
    return done_here


def _peer_esp_on(ctx, t, first):
    """When the peer's ESP-in-UDP SAs on the request's ports (peer -> sender) that started
    before the request were last heard, when ESP also flowed the other way (the SA worked);
    else None."""
    if t is None or first.transport != "udp" or (
            Port.NAT_T not in (first.sport, first.dport) and not first.encap):
        return None
    by_ports, starts = ctx.memo(f"reachability|esp_udp|{id(t)}", lambda: _esp_udp_index(t))
    got = by_ports.get((first.dst, first.src, first.dport, first.sport))
    if got is None:
        return None
    firsts, latest = got
    k = bisect.bisect_left(firsts, first.ts)  # the SAs that started before the request
    forth = starts.get((first.src, first.dst), float("inf")) < first.ts
    return latest[k - 1] if k and forth else None


def _esp_udp_index(t):
    """Tunnel ``t``'s ESP-in-UDP SAs by (src, dst, sport, dport) as their starts in order with
    the running maximum of their last packets, and the earliest start per (src, dst): one pass
    per tunnel and evaluation, a bisection per unanswered request (a flood of SAs on the same
    ports)."""
    groups: dict = {}
    starts: dict = {}
    for sa in t.esp_sas:
        if not sa.encap:
            continue
        groups.setdefault((sa.src, sa.dst, sa.sport, sa.dport), []).append(sa)
        k = (sa.src, sa.dst)
        starts[k] = min(starts.get(k, sa.first_ts), sa.first_ts)
    return {key: starts_and_latest(sas) for key, sas in groups.items()}, starts


@rule
def unanswered_ike(ctx):
    for sa in ctx.state.ike_sas:
        t = ike_tunnel_of(ctx, sa)
        # live keeps each SA's draft (per_sa) while the SA and what the draft read of its
        # tunnel stay the same; the sentence that follows the clock is written every time
        for d in per_sa(ctx, sa, (ike_unit_fp(sa), t.id if t else None),
                        lambda sa=sa, t=t: _unanswered_draft(ctx, sa, t),
                        lambda found, sa=sa, t=t: all(_draft_reads(ctx, sa, t, d) == d.reads
                                                      for d in found)):
            yield _unanswered_finding(ctx, d, t)


#: what a draft keeps of the request (the look-ups made again read these)
_Req = namedtuple("_Req", "transport sport dport src dst ts encap")


class _Draft:
    """An unanswered request's finding without the sentence that follows the clock: that
    sentence goes between ``head`` and ``tail`` (:func:`_unanswered_finding`)."""

    __slots__ = ("finding", "head", "tail", "first", "last_ts", "reads")

    def __init__(self, finding, head, tail, first, last_ts, reads):
        self.finding = finding
        self.head = head
        self.tail = tail
        self.first = first
        self.last_ts = last_ts
        self.reads = reads

    def __reduce__(self):  # a forked evaluation's cache comes back pickled
        return (_Draft, (self.finding, self.head, self.tail, self.first, self.last_ts,
                         self.reads))


def _draft_reads(ctx, sa, t, d) -> tuple:
    """What draft ``d`` read of ``sa``'s tunnel ``t``, read again: the peer's ESP in UDP on the
    request's ports (when it was looked up) and the IKE SA over TCP the sender fell back to."""
    first = d.first
    how = d.reads[0][0]
    esp = None if how == "unread" else _peer_esp_on(ctx, t, first)
    return (_esp_read(how, esp), _tcp_key(_fallback_to_tcp(ctx, t, sa, first)))


def _esp_read(how, esp) -> tuple:
    """What a draft read of the peer's ESP in UDP (``_peer_esp_on``): nothing ("unread"), or
    whether there was any ("some"; "value": the time it was last heard is shown, and that
    sentence is written with the finding, :class:`_EspUntil`: the draft stays while the peer's
    ESP goes on)."""
    if how == "unread":
        return (how, None)
    return (how, esp is not None)


class _EspUntil:
    """A draft's sentence "the peer had sent ESP in UDP on these very ports until +t s": the
    time is looked up again when the finding is written (:func:`_unanswered_finding`)."""

    __slots__ = ("peer",)

    def __init__(self, peer):
        self.peer = peer

    def __reduce__(self):  # a forked evaluation's cache comes back pickled
        return (_EspUntil, (self.peer,))

    def text(self, ctx, t, first):
        return msg(" {peer} had sent ESP in UDP on these very ports until +{t} s, "
                   "and ESP flowed both ways: UDP 4500 is not blocked; the peer "
                   "stopped answering. An INFORMATIONAL request (a DELETE or a "
                   "liveness check) left unanswered after the SA worked means the "
                   "peer has gone (a remote-access client closed or lost its link): "
                   "not a NAT failure.", peer=self.peer,
                   t=ctx.rel(_peer_esp_on(ctx, t, first)))


def _tcp_key(tcp):
    return None if tcp is None else (tcp.responder[2], tcp.first_ts)


def _unanswered_finding(ctx, d, t):
    """The finding of draft ``d`` (of an IKE SA of tunnel ``t``) as of ``ctx.now``."""
    from pcapvpn.findings import MAX_DETAIL, _bounded

    first = d.first
    detail = d.head + msg("); no response within {within:.1f} s of the first send (the capture "
                          "ends {wait:.1f} s after the last copy).", within=ctx.now - first.ts,
                          wait=ctx.now - d.last_ts)
    for part in d.tail:
        detail += part.text(ctx, t, first) if type(part) is _EspUntil else part
    # a shallow copy of the draft's finding (as copy.copy, without its detour: a live stop
    # writes thousands of these)
    f = object.__new__(type(d.finding))
    f.__dict__.update(d.finding.__dict__)
    f.detail = _bounded(detail, MAX_DETAIL)
    return f


def _unanswered_draft(ctx, sa, t) -> list:
    """The draft of ``sa``'s first unanswered request (none or one)."""
    for x in sa.exchanges:
        if _is_liveness(x):
            continue
        status = exchange_status(ctx, x)
        if status not in (UNANSWERED,):
            continue
        reqs = last_requests(x)
        if not reqs:
            continue
        first = reqs[0]
        if _v1_peer_still_talking(sa, x, first, reqs):
            continue  # the authentication rules judge it (IKE_AUTH_FAILED, inferred)
        if _v1_phase2_after_phase1_here(sa, x, first, reqs):
            continue  # the child SA's negotiation failed: CHILD_SA_FAILED (rules/child_sa.py)
        sends = [m for m in reqs if m.duplicate_of is None]
        retrans = len([m for m in sends if m.retransmit_of is not None])
        intervals = backoff(sends)
        last_ts = max(m.ts for m in reqs)
        answered_before = [y for y in sa.exchanges[:x.index]
                           if exchange_status(ctx, y) != UNANSWERED
                           and any(m.src != first.src for m in y.msgs)]
        # IKEv1 phase 1 is one exchange: the peer's earlier steps of it (MM2, MM4) count
        peer_before = [m for m in x.msgs if m.src != first.src and m.ts < first.ts] \
            if x.version == 1 else []
        # the ports' roles (500 / 4500, or custom ports by the non-ESP marker: port_role)
        heard_500 = any(m.src != first.src and port_role(sa, m) == Port.IKE
                        for y in answered_before for m in y.msgs) or \
            any(port_role(sa, m) == Port.IKE for m in peer_before)
        to_4500 = first.transport == "udp" and port_role(sa, first) == Port.NAT_T
        # the peer answered on UDP 4500 earlier in this IKE SA: 4500 is not blocked
        heard_4500 = [m for y in answered_before for m in y.msgs
                      if m.src != first.src and port_role(sa, m) == Port.NAT_T] + \
            [m for m in peer_before if port_role(sa, m) == Port.NAT_T]
        # a capture that starts mid-session has no IKE answer before: the peer's ESP in UDP
        # on these very ports (both ways: the SA worked) says the same
        esp_here = None if heard_4500 else _peer_esp_on(ctx, t, first)
        esp_how = "unread" if heard_4500 else "some"
        gone = bool(heard_4500 or esp_here is not None) and x.exch in (ExchangeType.INFORMATIONAL,
                                                           ExchangeType.INFORMATIONAL_V1)
        refs = ctx.msg_refs(reqs)
        frag = _fragmented(reqs)
        label = exchange_label(x)
        sender = endpoint_text((first.ipver, first.src, first.sport))
        receiver = endpoint_text((first.ipver, first.dst, first.dport))
        # (the size on the wire: a message the snapshot length cut, or read from its first IP
        # fragment only, has the Length of its header)
        size = max(m.length if m.truncated else m.size for m in reqs)
        hint = implementation_hint(intervals)
        over = msg(" over TCP") if first.transport == "tcp" else ""
        head = (msg("{label} from {sender} to {receiver}{over} ({size} bytes) was sent {n} "
                    "time(s) ({retrans} retransmission(s)", label=label, sender=sender,
                    receiver=receiver, over=over, size=size, n=len(sends), retrans=retrans)
                + (msg(" at intervals {iv} s", iv=_intervals_text(intervals))
                   if intervals else ""))
        # the sentence "no response within ..." comes here (_unanswered_finding)
        tail: list = []
        side = side_of(sa, first.src)
        if hint:
            tail.append(msg(" Retransmission pattern of the {side}: {hint}.",
                            side=Term(side or 'sender'), hint=Term(hint)))
        others = []
        if frag and not _ike_fragmentation_negotiated(sa):
            code = "IKE_FRAGMENTATION_LOSS"
            nfr = max(len(m.frames) for m in reqs)
            if any(m.head_only for m in reqs):
                got = max(m.size for m in reqs if m.head_only)
                tail.append(msg(" Each copy went out as IP fragments of which the capture holds "
                                "only the first ({got} of the {size} bytes; the later fragments "
                                "carry no UDP ports: a port capture filter such as 'udp port 500 "
                                "or udp port 4500' drops them, or they were lost before the "
                                "capture point), and RFC 7383 IKE fragmentation was not "
                                "negotiated (no IKEV2_FRAGMENTATION_SUPPORTED from both sides).",
                                got=got, size=size))
            else:
                tail.append(msg(" Each copy went out as {n} IP fragments and RFC 7383 IKE "
                                "fragmentation was not negotiated (no "
                                "IKEV2_FRAGMENTATION_SUPPORTED from both sides).", n=nfr))
            if heard_500 and to_4500:
                others.append(msg("NAT_T_BLOCKED (the request went to UDP 4500 after UDP 500 "
                                  "worked, but fragments explain the loss better)"))
            others.append("IKE_NO_RESPONSE")
        elif heard_500 and to_4500 and not heard_4500 and \
                _v1_float_received(ctx, sa, first):
            # IKEv1: the peer did not re-send its last message on UDP 500 (MM4 / AM2) after
            # the first message on 4500: it got that message, so 4500 reaches it
            if x.exch == ExchangeType.QUICK_MODE:
                continue  # phase 1 is up: the Quick Mode's own finding (CHILD_SA_FAILED)
            code = "IKE_NO_RESPONSE"
            tail.append(msg(" {peer} did not re-send its last message on UDP 500 after the "
                            "first message came on UDP 4500: it received that one, so UDP 4500 "
                            "reaches it; it does not answer this exchange.",
                            peer=ip_text(first.dst)))
        elif heard_500 and to_4500 and not heard_4500:
            code = "NAT_T_BLOCKED"
            what = reg.exchange_name(first.exch, short=True)
            ike_port = next((m.sport for y in answered_before for m in y.msgs
                             if m.src != first.src and port_role(sa, m) == Port.IKE),
                            next((m.sport for m in peer_before), Port.IKE))
            if first.dport == Port.NAT_T and ike_port == Port.IKE:
                tail.append(msg(" UDP 500 was answered earlier in this IKE SA; nothing came back "
                                "on UDP 4500 ({what} was the first exchange sent there).",
                                what=what))
            else:  # custom ports (track.nat.port_role): named as the capture shows them
                tail.append(msg(" UDP {ike} (its IKE port) was answered earlier in this IKE SA; "
                                "nothing came back on UDP {natt} (its NAT traversal port; {what} "
                                "was the first exchange sent there).", ike=ike_port,
                                natt=first.dport, what=what))
            others.append("IKE_NO_RESPONSE")
        elif esp_here is not None and gone:
            code = "IKE_NO_RESPONSE"
            esp_how = "value"
            tail.append(_EspUntil(ip_text(first.dst)))
        elif heard_4500:
            code = "IKE_NO_RESPONSE"
            tail.append(msg(" {peer} had answered on UDP 4500 earlier in this IKE SA ({what} "
                            "at +{t} s): UDP 4500 is not blocked; the peer stopped answering.",
                            peer=ip_text(first.dst),
                            what=reg.exchange_name(heard_4500[-1].exch, short=True),
                            t=ctx.rel(heard_4500[-1].ts)))
            if gone:
                tail.append(msg(" An INFORMATIONAL request (a DELETE or a liveness check) left "
                                "unanswered after the SA worked means the peer has gone (a "
                                "remote-access client closed or lost its link): not a NAT "
                                "failure."))
        else:
            code = "IKE_NO_RESPONSE"
            if not answered_before and not any(m.src != first.src for m in x.msgs):
                tail.append(msg(" The peer sent nothing at all in this IKE SA."))
        # a request of an IKE SA that worked (established, answered by the peer) or whose peer's
        # ESP flowed on these ports: the peer stopped answering while the tunnel was up
        est = established_ts(sa) if answered_before else None
        up = code == "IKE_NO_RESPONSE" and _while_up(x, answered_before) and (
            (est is not None and est <= first.ts) or esp_here is not None)
        if up and not heard_4500 and esp_here is None:
            tail.append(msg(" The IKE SA was up (established at +{t} s) and {peer} had answered "
                            "it: the peer stopped answering while the tunnel was up.",
                            t=ctx.rel(est), peer=ip_text(first.dst)))
        if others:
            tail.append(msg(" Other candidates: {others}.", others=msg_join("; ", others)))
        tcp = _fallback_to_tcp(ctx, t, sa, first)
        if tcp is not None:
            # RFC 9329 §1: TCP is the fallback when IKE cannot be negotiated over UDP (the
            # verdict marks the failure recovered by that IKE SA)
            tail.append(msg(" {peer} then fell back to IKE over TCP (RFC 9329): the IKE SA it "
                            "started over TCP port {port} at +{t:g} s was established, so UDP "
                            "{udp} is blocked or dropped on the path while TCP passes.",
                            peer=ip_text(first.src), port=tcp.responder[2],
                            t=ctx.rel(tcp.first_ts), udp=first.dport))
        msgids = [x.msgid] if x.version == 2 else None
        facts = ike_facts(sa, x, side, nat=_nat_story(sa))
        f = make(
            code, f"{sa.id}|{x.index}", severity="info" if gone else None, facts=facts,
            title=msg("{label} to {peer} never answered", label=label,
                      peer=ip_text(first.dst)),
            detail="", basis="observed",
            evidence=ctx.evidence(refs, first.ts, reqs[-1].ts,
                                  ike_spis=[sa.ispi.hex(), sa.rspi.hex()],
                                  peers=[sender, receiver]),
            wireshark_filter=ike_filter(sa, msgids=msgids,
                                        exch=x.exch if x.version == 1 else None),
            tunnel=t.id if t else None)
        if up:
            f.stage = "stability"
        # the first unanswered exchange of an SA is the one that matters
        req = _Req(first.transport, first.sport, first.dport, first.src, first.dst, first.ts,
                   first.encap)
        reads = (_esp_read(esp_how, esp_here), _tcp_key(tcp))
        return [_Draft(f, head, tail, req, last_ts, reads)]
    return []


#: the exchanges of an IKE SA that is up: unanswered after it worked, the tunnel did not stay up
_WHILE_UP = frozenset((ExchangeType.CREATE_CHILD_SA, ExchangeType.INFORMATIONAL,
                       ExchangeType.INFORMATIONAL_V1))


def _while_up(x, answered_before) -> bool:
    """``x`` is an exchange of an IKE SA that is up: a CREATE_CHILD_SA or INFORMATIONAL, or an
    IKEv1 Quick Mode after one the peer answered (a phase-2 rekey; the first Quick Mode after
    phase 1 is the child SA's negotiation, judged at child_sa)."""
    if x.exch in _WHILE_UP:
        return True
    return x.exch == ExchangeType.QUICK_MODE and any(
        y.exch == ExchangeType.QUICK_MODE for y in answered_before)


def _fallback_to_tcp(ctx, t, sa, first):
    """The IKE SA of tunnel ``t`` that the initiator of the unanswered UDP request ``first``
    negotiated over TCP afterwards and that was established (a UDP -> TCP fallback), or None."""
    if t is None or first.transport != "udp":
        return None
    for other in ctx.tcp_sas(t):
        # the cheap tests first: ``established`` walks the SA's exchanges (a flood's tunnel
        # asks this for each of its unanswered requests at every evaluation)
        if (other is not sa and other.first_ts is not None
                and other.first_ts > first.ts and other.initiator is not None
                and other.initiator[1] == first.src and other.established):
            return other
    return None


@rule
def ike_tcp_reachability(ctx):
    """IKE over TCP (RFC 9329) connections refused (RST) or never answered (SYN unanswered),
    TCP-only initiators included: their tunnel is made from the connection attempts."""
    for t in ctx.state.tunnels:
        groups = {}
        for c in t.tcp_conns:
            groups.setdefault((c.client, c.server, c.port), []).append(c)
        for (client, server, port), conns in groups.items():
            yield from tcp_connection_findings(
                ctx, conns, ipver=conns[0].ipver, client=client, server=server, port=port,
                name="IKE over TCP", tunnel=t.id, key=f"{t.id}|{port}",
                up=lambda c: c.bytes[1] > 0, advice=IKE_TCP_ADVICE)


def _v1_float_received(ctx, sa, first) -> bool:
    """IKEv1 (RFC 3947 §4: the initiator moves to UDP 4500 at MM5 / AM3): the peer's last
    message on UDP 500 was not sent again during ``response_timeout`` after the sender's first
    message on 4500 — an IKEv1 peer re-sends its last message until the next one arrives, so the
    first message on 4500 reached it."""
    if sa.version != 1:
        return False
    mine = [m for m in sa.messages if m.src == first.src and port_role(sa, m) == Port.NAT_T]
    if not mine:
        return False
    moved = mine[0].ts
    theirs = [m for m in sa.messages if m.src == first.dst and port_role(sa, m) == Port.IKE]
    if not theirs or ctx.now - moved < ctx.th.response_timeout:
        return False
    return not any(m.ts > moved and m.copy for m in theirs)


@rule
def incomplete_ike_fragments(ctx):
    """IP fragment sets of IKE datagrams that never completed at the capture point.  A set whose
    first fragment gave its IKE message to the tracker (``IkeMsg.head_only``) is judged by that
    message's exchange (answered or not), not here."""
    sets = ctx.state.incomplete_fragments
    heads = {m.ref for sa in ctx.state.ike_sas for m in sa.messages if m.head_only} \
        if sets else ()
    for fs in sets:
        if fs.why == "end":
            continue  # the capture ended before the set could time out: absence not established
        if heads and any(ref in heads for ref in fs.frames):
            continue
        if fs.proto != IpProto.UDP or fs.head is None or fs.head.sport is None:
            continue
        sport, dport = fs.head.sport, fs.head.dport
        if Port.IKE not in (sport, dport) and Port.NAT_T not in (sport, dport):
            continue
        t = next((t for t in ctx.state.tunnels if {t.a, t.b} == {fs.src, fs.dst}), None)
        yield make(
            "IKE_FRAGMENTATION_LOSS", f"frags|{fs.src.hex()}|{fs.dst.hex()}|{fs.ident}",
            title=msg("IKE datagram from {src} to {dst} arrived incomplete (IP fragments "
                      "missing)", src=ip_text(fs.src), dst=ip_text(fs.dst)),
            detail=msg("{n} IP fragment(s) of a UDP {sport}->{dport} datagram (IP ID {ident}) were "
                       "seen but the set never completed within the reassembly timeout: a "
                       "fragment was lost before the capture point (or the capture dropped it).",
                       n=len(fs.frames), sport=sport, dport=dport, ident=fs.ident),
            basis="observed",
            evidence=ctx.evidence(fs.frames, fs.first_ts, None,
                                  peers=[ip_text(fs.src), ip_text(fs.dst)]),
            wireshark_filter=frames_filter(fs.frames),
            tunnel=t.id if t else None)


@rule
def icmp_unreachable(ctx):
    groups = {}
    for e, q in unreachable_errors(ctx):
        qsrc, qdst, qproto, qsport, qdport = q.src, q.dst, q.proto, q.sport, q.dport
        if qproto == IpProto.UDP and ({qsport, qdport} & {Port.IKE, Port.NAT_T}):
            what = f"UDP {qdport}"
        elif qproto == IpProto.ESP:
            what = "ESP"
        elif qproto == IpProto.AH:
            what = "AH"
        else:
            continue
        key = (qsrc, qdst, what, e.icmp_type, e.icmp_code)
        groups.setdefault(key, []).append(e)
    for (qsrc, qdst, what, itype, icode), errs in groups.items():
        e0 = errs[0]
        meaning = icmp_error_text(e0.ipver, itype, icode)
        t = next((t for t in ctx.state.tunnels if {t.a, t.b} == {qsrc, qdst}), None)
        if t is not None and _all_deleted_before(t, e0.ts):
            continue  # the tear-down: the peer's daemon or NAT mapping is gone after a Delete
        reporter = ip_text(e0.src)
        by_peer = e0.src == qdst
        detail = (msg("{n} ICMP error(s) '{meaning}' from {reporter} about {what} {src} -> "
                      "{dst}", n=len(errs), meaning=Term(meaning), reporter=reporter, what=what,
                      src=ip_text(qsrc), dst=ip_text(qdst))
                  + (msg(" (sent by the peer itself)") if by_peer
                     else msg(" (sent by a device on the path)"))
                  + ".")
        if "port unreachable" in meaning:
            detail += msg(" Nothing listens on that port at the destination: the IKE daemon is "
                          "not running, crashed, or is bound to another address.")
        fld = "icmp" if e0.ipver == 4 else "icmpv6"
        yield make(
            "ICMP_UNREACHABLE", f"icmp|{qsrc.hex()}|{qdst.hex()}|{what}|{itype}|{icode}",
            title=msg("{what} to {peer}: {meaning}", what=what, peer=ip_text(qdst),
                      meaning=Term(meaning)),
            detail=detail, basis="observed",
            evidence=ctx.evidence([x.ref for x in errs], e0.ts, errs[-1].ts,
                                  peers=[ip_text(qsrc), ip_text(qdst), reporter]),
            wireshark_filter=f"{fld}.type == {itype} && {fld}.code == {icode}",
            tunnel=t.id if t else None)


def _all_deleted_before(t, ts) -> bool:
    """Every IKE SA of the tunnel ended with an answered Delete (keyless: an INFORMATIONAL whose
    first encrypted payload is a Delete, RFC 7296 §1.4.1) before ``ts``."""
    if not t.ike_sas:
        return False
    for sa in t.ike_sas:
        done = False
        for x in sa.exchanges:
            if x.exch == ExchangeType.INFORMATIONAL and x.answered and any(
                    m.sk_next == PayloadV2.D for m in x.requests) and x.msgs[-1].ts <= ts:
                done = True
            if x.version == 1 and any(m.deletes for m in x.msgs) and x.msgs[-1].ts <= ts:
                done = True
        if not done:
            return False
    return True


@rule
def expected_peers(ctx):
    for peer in getattr(ctx.state, "expect_peers", None) or ():
        seen = any(peer in (t.a, t.b) for t in ctx.state.tunnels) or any(
            peer in (e.src, e.dst) for e in ctx.state.icmp_errors)
        if seen:
            continue
        fld = "ip" if len(peer) == 4 else "ipv6"
        yield make(
            "EXPECTED_PEER_ABSENT", f"expect|{peer.hex()}",
            title=msg("Nothing was sent to or from {peer}", peer=ip_text(peer)),
            detail=msg("No IKE, ESP, AH, NAT keepalive or ICMP error involving {peer} was seen in "
                       "the capture.", peer=ip_text(peer)),
            basis="observed", evidence=ctx.evidence([], None, None, peers=[ip_text(peer)]),
            wireshark_filter=f"{fld}.addr == {ip_text(peer)}")


#: retransmission intervals written out in a detail (the rest counted: a request sent thousands
#: of times keeps its detail short enough for the implementation hint to stay in it)
SHOWN_INTERVALS = 12


def _intervals_text(intervals) -> str:
    shown = ", ".join(f"{i:g}" for i in intervals[:SHOWN_INTERVALS])
    if len(intervals) > SHOWN_INTERVALS:
        shown += msg(", … ({n:,} intervals)", n=len(intervals))
    return shown
