"""ESP in one direction only (ESP_ONE_WAY), or a capture that saw only one direction
(CAPTURE_ONE_DIRECTION)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from dissect.vpn.ip import is_multicast
from dissect.vpn import registry as reg
from pcapvpn.findings import declare, make, msg
from pcapvpn.rules import rule, supersede
from pcapvpn.rules.common import (
    OPENING, ip_text, tunnel_filter,
)
from pcapvpn.track.tunnels import PAIR_WINDOW
from pcapvpn.rules.dataplane.common import (
    ANSWER_WINDOW, LOOKUP_BUDGET, MAX_LISTED, _heard, _heard_text, _ix, _mtu_pattern, _pairs, _spi,
    _spis, _srcs, _takeover, _what, sa_filter,
)


declare("ESP_ONE_WAY", "dataplane", "error",
        "ESP flows in one direction of a child SA and nothing comes back on the other (no SA at "
        "all, or the reverse SA stopped while this one continued): the receiving peer drops the "
        "packets (SPI unknown to it, wrong keys, policy mismatch) or its answers take another "
        "path.",
        ["Look at the receiving peer first: does it have the SA (ip xfrm state / 'ipsec statusall' "
         "/ 'show crypto ipsec sa')? Are its decrypt counters rising (Cisco '#pkts decaps', Linux "
         "XfrmInNoStates / XfrmInStateProtoError in /proc/net/xfrm_stat)?",
         "If it decrypts but does not answer: check routing and firewall rules for the inner "
         "traffic on the receiving side, and that the traffic selectors (leftsubnet/rightsubnet, "
         "crypto ACL) match on both peers.",
         "If its answers leave by another path (asymmetric routing, another uplink), they never "
         "cross this capture point: capture on the peer itself.",
         "One-way by nature (syslog, NetFlow/SNMP traps inside the tunnel) is normal: check what "
         "the flowing side sends."])


declare("CAPTURE_ONE_DIRECTION", "capture", "warning",
        "The capture holds traffic from one gateway of a pair only: nothing at all (no IKE, no "
        "ESP, no NAT keepalive) from the other.  Either the capture sees one direction only "
        "(a mirror/SPAN of one direction, asymmetric routing around the capture point) or the "
        "other gateway never sends; the capture alone cannot tell, unless the first gateway's "
        "own messages show the other answered (an IKE message carrying the responder SPI that "
        "only the missing answer gave).",
        ["Mirror both directions (SPAN 'both', or capture on the gateway itself) and capture "
         "again.",
         "If the capture point does see both directions, treat it as one-way ESP: check that the "
         "silent gateway has the SA and answers."],
        failure=False)


def _replaced(ctx, t, flow, window, drain) -> bool:
    """``flow`` is an old generation draining: it ran briefly, and a newer SA of the same
    direction that has a partner took over and kept going."""
    if flow.last_ts - flow.first_ts > drain:
        return False
    g = _ix(ctx).paired_direction(t, (flow.src, flow.dst, flow.proto))
    if g is None:
        return False
    firsts, ends = g
    i = bisect_right(firsts, flow.last_ts + window) - 1
    # (``flow`` is unpaired wherever this is asked: it is not among the paired SAs)
    return i >= 0 and ends[i] >= flow.last_ts + window


def _reverse_covers(ctx, t, flow, partners, window) -> bool:
    """An SA of the opposite direction answers ``flow`` although the pairing did not put them
    together: it overlaps ``flow`` in time and is unpaired (or in another tunnel, its source
    having moved), or its partner stopped early (a rekey generation paired by start time with
    the wrong SA).

    Unpaired candidates are one bisection; paired ones of this tunnel are looked at one by one,
    all of them when they are few, else the ``LOOKUP_BUDGET`` nearest the two ends of the
    window: beyond that the question is left open (counted; no one-way finding is made)."""
    ix = _ix(ctx)
    x, y = flow.last_ts + window, flow.first_ts - window
    groups = []
    for d in _srcs(flow):
        g = ix.reverse_group((d, flow.proto, flow.dst))
        if g is None:
            continue
        if g.any_without_partner(t, x, y):
            return True
        mine = g.paired.get(id(t))
        if mine is not None:
            groups.append(mine)
    cut = False
    for starts, sas in groups:
        hi = bisect_right(starts, x)
        if hi <= LOOKUP_BUDGET:
            todo = sas[:hi]
        else:
            lo = bisect_left(starts, y, 0, hi)
            half = LOOKUP_BUDGET // 2
            todo = sas[lo:min(hi, lo + half)] + sas[max(lo + half, hi - half):hi]
            cut = True
        for s in todo:
            if _answers(s, flow, partners, window):
                return True
    if cut:
        ctx.cut_short("one_way_reverse", flow.first_ref, flow.first_ts)
        return True
    return False


def _parallel_children(ctx, t, ts) -> int:
    """Child SAs negotiated in this tunnel within ``PAIR_WINDOW`` of ``ts``: completed IKEv1
    Quick Modes, established IKE_AUTH exchanges, answered CREATE_CHILD_SA (keyless view).  The
    completion times of a tunnel are sorted once per evaluation: a count is two bisections."""
    times = _ix(ctx).child_times(t)
    return bisect_right(times, PAIR_WINDOW, key=lambda x: x - ts) - \
        bisect_left(times, -PAIR_WINDOW, key=lambda x: x - ts)


def _negotiation_seen(ctx, t, ts) -> bool:
    """A child SA negotiation of this tunnel completed before ``ts`` (or within
    ``PAIR_WINDOW`` after it).  Without one — a capture that starts mid-session — the ESP SAs
    cannot be paired by their negotiation, only guessed by start time."""
    times = _ix(ctx).child_times(t)
    return bisect_right(times, ts + PAIR_WINDOW) > 0


def _direction_answers(ctx, t, flow, window) -> bool:
    """With parallel child SAs negotiated together (two Quick Modes, both peers initiating), or
    with no negotiation in the capture at all, the pairing of ESP SAs by start time is a guess, and one direction may spread over more SAs
    than the other: the tunnel direction as a whole answers ``flow`` when ESP of its protocol
    comes back from its destination over its whole span."""
    span = _ix(ctx).direction_span(t, (flow.proto, flow.dst, flow.src))
    if span is None:
        return False
    return span[0] <= flow.first_ts + window and span[1] >= flow.last_ts - window


def _answers(s, flow, partners, window) -> bool:
    if s.first_ts > flow.last_ts + window or s.last_ts < flow.first_ts - window:
        return False
    p = partners.get(id(s))
    if p is None or p.last_ts < min(flow.last_ts, s.last_ts) - window:
        return True
    # its partner is an older SA that ``flow`` replaced (rekey)
    return p.first_ts <= flow.first_ts and p.last_ts < flow.last_ts - ANSWER_WINDOW


@rule
def one_way(ctx):
    th = ctx.th
    W = th.one_way_window
    for t in ctx.state.tunnels:
        if is_multicast(t.a) or is_multicast(t.b):
            continue  # multicast SAs are one-way by nature
        pairs = _pairs(t)
        partners = _ix(ctx).partners(t)
        capture_only = []  # (flow SA) nothing at all from the silent side, no IKE in the tunnel
        for x, y in pairs:
            if (x is None) != (y is None):
                flow = x if x is not None else y
                if _reverse_covers(ctx, t, flow, partners, W):
                    continue
                if (_parallel_children(ctx, t, flow.first_ts) > 1
                        or not _negotiation_seen(ctx, t, flow.first_ts)) and \
                        _direction_answers(ctx, t, flow, W):
                    continue
                silent = flow.dst
                h, last_heard = _heard(ctx, t, silent)
                nothing = not any(h.values())
                if nothing and not t.ike_sas:
                    capture_only.append(flow)
                    continue
                if flow.packets < th.one_way_min_packets:
                    continue
                # absence needs time: the capture runs long enough after the first packet, or
                # the silent peer was heard (other traffic) well after it
                long_enough = ctx.now - flow.first_ts >= W
                heard_after = last_heard is not None and \
                    last_heard - flow.first_ts >= ANSWER_WINDOW
                if not (long_enough or heard_after):
                    continue
                if _replaced(ctx, t, flow, W, th.rekey_drain):
                    continue
                yield _one_way_never(ctx, t, flow, h, nothing, last_heard)
            elif x is not None:
                for flow, back in ((x, y), (y, x)):
                    f = _one_way_stopped(ctx, t, flow, back)
                    if f is not None:
                        yield f
        if capture_only:
            yield _capture_one_direction(ctx, t, capture_only)


def _one_way_never(ctx, t, flow, h, nothing, last_heard):
    silent = ip_text(flow.dst)
    span = flow.last_ts - flow.first_ts
    detail = msg("{n} {what} packet(s) on SPI 0x{spi} from {src} to {silent} between +{t0} s "
                 "and +{t1} s ({span:.1f} s); 0 packets on any SA from {silent} back to {src} "
                 "for this child SA (the capture runs {runs:.1f} s after the first packet).",
                 n=flow.packets, what=_what(flow), spi=_spi(flow), src=ip_text(flow.src),
                 silent=silent, t0=ctx.rel(flow.first_ts), t1=ctx.rel(flow.last_ts), span=span,
                 runs=ctx.now - flow.first_ts)
    basis = "observed"
    if nothing:
        basis = "inferred"
        detail += msg(" Nothing at all from {silent} is in the capture (only IKE from {src}): "
                      "the capture may see one direction only — check that it mirrors both "
                      "directions before blaming {silent}.", silent=silent, src=ip_text(flow.src))
    else:
        detail += msg(" {silent} is otherwise heard ({heard}", silent=silent,
                      heard=_heard_text(h))
        if last_heard is not None:
            detail += msg(", last at +{t} s", t=ctx.rel(last_heard))
        detail += msg("), so the capture sees that direction: its ESP for this child SA is "
                      "missing.")
    if flow.large and flow.first_large_ts is not None:
        detail += msg(" {n} of the packets were large (>= {size} bytes).", n=flow.large,
                      size=ctx.th.large_packet)
    return make(
        "ESP_ONE_WAY", f"{t.id}|never|{flow.proto}|{_spi(flow)}|{flow.dst.hex()}",
        title=msg("{what} from {src} to {silent} is never answered (SPI 0x{spi})",
                  what=_what(flow), src=ip_text(flow.src), silent=silent, spi=_spi(flow)),
        detail=detail, basis=basis,
        evidence=ctx.evidence(list(flow.first_refs) + [flow.last_ref], flow.first_ts,
                              flow.last_ts, esp_spis=[_spi(flow)],
                              peers=[ip_text(flow.src), silent]),
        wireshark_filter=sa_filter([flow]),
        tunnel=t.id)


def _one_way_stopped(ctx, t, flow, back):
    th = ctx.th
    W = th.one_way_window
    T = back.last_ts
    if flow.last_ts - T < W:
        return None
    after = flow.packets_between(T)
    if after < th.one_way_min_packets:
        return None
    if _takeover(ctx, t, back, T, W, th.rekey_drain, flow):
        return None
    silent = ip_text(back.src)
    detail = msg("{silent} sent {n} packet(s) on SPI 0x{spi} until +{t} s and then stopped, "
                 "while {src} kept sending on SPI 0x{spi2} until +{t2} s ({longer:.1f} s longer, "
                 "at least {after} more packet(s)); no other SA from {silent} took over.",
                 silent=silent, n=back.packets, spi=_spi(back), t=ctx.rel(T),
                 src=ip_text(flow.src), spi2=_spi(flow), t2=ctx.rel(flow.last_ts),
                 longer=flow.last_ts - T, after=after)
    sent = _ix(ctx).tunnel_ike(t)
    asked = _count_between(sent.get(flow.src), T, flow.last_ts)
    told = _count_between(sent.get(back.src), T, flow.last_ts) if back.src != flow.src else asked
    gone = bool(asked and not told)
    if gone:
        detail += msg(" {silent} also stopped answering IKE ({asked} IKE message(s) from {src} "
                      "after +{t} s got no reply): the peer itself went away (restart, crash, "
                      "path down), not only its ESP — see the stability findings.",
                      silent=silent, asked=asked, src=ip_text(flow.src), t=ctx.rel(T))
    elif told:
        detail += msg(" {silent} still talks IKE ({n} message(s) after +{t} s).", silent=silent,
                      n=told, t=ctx.rel(T))
    if _mtu_pattern(ctx, t, flow, back):
        detail += msg(" Large packets were being sent when the answers stopped: see "
                      "MTU_BLACK_HOLE.")
    f = make(
        "ESP_ONE_WAY", f"{t.id}|stopped|{back.proto}|{_spi(back)}|{back.dst.hex()}",
        title=msg("{what} from {silent} stopped at +{t} s while {src} kept sending",
                  what=_what(back), silent=silent, t=ctx.rel(T), src=ip_text(flow.src)),
        detail=detail, basis="observed",
        evidence=ctx.evidence([back.last_ref, flow.last_ref], T, flow.last_ts,
                              esp_spis=[_spi(back), _spi(flow)],
                              peers=[ip_text(flow.src), silent]),
        wireshark_filter=sa_filter([back, flow]),
        tunnel=t.id)
    if gone:
        # the peer went away (its ESP and its IKE stopped together): the tunnel did not stay up,
        # a stability failure (pcapvpn.rules.verdict.EXPLAINS_AT: the unanswered liveness
        # check or request explains it)
        f.stage = "stability"
    return f


def _count_between(times, lo, hi) -> int:
    """How many of the sorted ``times`` are in (lo, hi]."""
    if not times:
        return 0
    return max(0, bisect_right(times, hi) - bisect_right(times, lo))


def _capture_one_direction(ctx, t, flows):
    src = {f.src for f in flows}
    dst = {f.dst for f in flows}
    pk = sum(f.packets for f in flows)
    first = min(f.first_ts for f in flows)
    last = max(f.last_ts for f in flows)
    sender = ", ".join(sorted(ip_text(a) for a in src))
    silent = ", ".join(sorted(ip_text(a) for a in dst))
    listed = ", ".join(f"0x{_spi(f)} ({f.packets} pkts)" for f in flows[:MAX_LISTED])
    more = msg(" and {n} more", n=len(flows) - MAX_LISTED) if len(flows) > MAX_LISTED else ""
    detail = msg("{n} ESP/AH packet(s) from {sender} to {silent} on {sas} SA(s) [{listed}{more}] "
                 "between +{t0} s and +{t1} s; nothing at all from {silent} in the capture: no "
                 "IKE, no ESP/AH, no NAT keepalive, and no IKE for this gateway pair either.",
                 n=pk, sender=sender, silent=silent, sas=len(flows), listed=listed, more=more,
                 t0=ctx.rel(first), t1=ctx.rel(last))
    if ctx.now - first < ctx.th.one_way_window:
        detail += msg(" The capture also ends {after:.1f} s after the first packet (less than "
                      "{need:g} s), too soon to call the tunnel one-way.", after=ctx.now - first,
                      need=ctx.th.one_way_window)
    refs = []
    for f in flows:
        refs.extend(f.first_refs[:2])
    return make(
        "CAPTURE_ONE_DIRECTION", f"{t.id}|one-direction",
        title=msg("Only {sender} -> {silent} is in the capture", sender=sender, silent=silent),
        detail=detail, basis="inferred",
        evidence=ctx.evidence(refs, first, last, esp_spis=_spis(flows),
                              peers=[sender, silent]),
        wireshark_filter=tunnel_filter(t),
        tunnel=t.id)


def _answer_proof(t, x):
    """``(opening, later)``: an opening request ``x`` sent in this capture (responder SPI zero)
    and a later message of ``x`` under the same initiator SPI carrying a responder SPI, which
    only the responder's answer to that request gave it (RFC 7296 §3.1, RFC 2408 §3.1); None
    when the capture shows no such pair."""
    zero = b"\x00" * 8
    opened: dict = {}
    for sa in t.ike_sas:
        for m in sa.messages:
            if m.src == x and m.rspi == zero and m.exch in OPENING and not m.is_response \
                    and not m.copy:
                o = opened.get((m.version, m.ispi))
                if o is None or m.ts < o.ts:
                    opened[(m.version, m.ispi)] = m
    if not opened:
        return None
    for sa in t.ike_sas:
        for m in sa.messages:
            if m.src != x or m.rspi == zero:
                continue
            o = opened.get((m.version, m.ispi))
            if o is not None and m.ts >= o.ts:
                return o, m
    return None


def _label(m) -> str:
    name = reg.exchange_name(m.exch, short=True)
    return f"{name} (Message ID {m.msgid})" if m.version == 2 else name


#: an answer this long after the capture began answered a request sent within it
_ANSWER_IN_CAPTURE = 1.0
#: of the answers, the one that surely answered a request sent within the capture (only the
#: first can answer one sent before it began)
_SURE_ANSWER = 2


def _response_proof(ctx, t, x):
    """A response of ``x`` to a request of the other gateway (RFC 7296 §3.1 Response flag;
    IKEv1: a message of the exchange's responder) whose request was sent within the capture:
    the second response, or one late enough that the capture did not begin between its
    request and it; None when there is none."""
    seen = 0
    for sa in t.ike_sas:
        for m in sa.messages:
            if m.src == x and m.is_response and not m.copy:
                seen += 1
                if seen >= _SURE_ANSWER or m.ts - ctx.start >= _ANSWER_IN_CAPTURE:
                    return m
    return None


@rule
def one_direction_ike(ctx):
    """A tunnel with IKE from one gateway only and nothing at all from the other, where that
    gateway's own messages show the other spoke: it went on with the responder SPI of an answer
    the capture does not hold, or it answered a request the capture does not hold.  The capture
    sees one direction (the absences it shows are not the network's: the verdict cannot judge
    them)."""
    ix = _ix(ctx)
    for t in ctx.state.tunnels:
        if not t.ike_sas:
            continue
        sent = ix.tunnel_ike(t)
        talkers = [p for p, times in sent.items() if times]
        if len(talkers) != 1 or talkers[0] not in (t.a, t.b):
            continue
        x = talkers[0]
        silent = t.b if x == t.a else t.a
        h, _last = _heard(ctx, t, silent)
        if any(h.values()):
            continue
        proof = _answer_proof(t, x)
        answer = _response_proof(ctx, t, x) if proof is None else None
        if proof is None and answer is None:
            continue
        sender, quiet = ip_text(x), ip_text(silent)
        if answer is not None:
            detail = msg("{n} IKE message(s) from {sender} and nothing at all from {silent} (no "
                         "IKE, no ESP/AH, no NAT keepalive). {sender} sent {label}, a response, "
                         "at +{t} s: {silent} sent the request it answers, and the capture does "
                         "not hold it: it sees one direction only (a mirror or capture filter of "
                         "one direction, asymmetric routing around the capture point). What it "
                         "shows as unanswered cannot be judged.", n=len(sent[x]), sender=sender,
                         silent=quiet, label=_label(answer), t=ctx.rel(answer.ts))
            o = m = answer
            spis = [answer.ispi.hex(), answer.rspi.hex()]
        else:
            o, m = proof
            spis = [o.ispi.hex(), m.rspi.hex()]
            detail = msg("{n} IKE message(s) from {sender} and nothing at all from {silent} "
                         "(no IKE, no ESP/AH, no NAT keepalive). {sender} went on after its "
                         "{opening} with {later}, which carries the responder SPI {rspi}: only "
                         "{silent}'s answer to the {opening} could have given it. {silent} "
                         "answered, and the capture does not hold its packets: it sees one "
                         "direction only (a mirror or capture filter of one direction, asymmetric "
                         "routing around the capture point). What it shows as unanswered cannot "
                         "be judged.", n=len(sent[x]), sender=sender, silent=quiet,
                         opening=_label(o), later=_label(m), rspi=m.rspi.hex())
        f = make(
            "CAPTURE_ONE_DIRECTION", f"{t.id}|one-direction",
            title=msg("Only {sender} -> {silent} is in the capture", sender=sender,
                      silent=quiet),
            detail=detail, basis="inferred",
            evidence=ctx.evidence(ctx.msg_refs([o] if o is m else [o, m]), o.ts, m.ts,
                                  ike_spis=spis,
                                  peers=[sender, quiet]),
            wireshark_filter=tunnel_filter(t),
            tunnel=t.id)
        # an IKEv1 exchange "never answered" (a Quick Mode whose QM3 the tracker took for QM1
        # again, QM2 not being in the capture) is not judged from one direction
        refs = {(ctx.file(r[0]), r[1]) for sa in t.ike_sas for y in sa.messages
                if y.src == x for r in y.frames}
        yield supersede(f, ("CHILD_SA_FAILED",), frames=refs)
