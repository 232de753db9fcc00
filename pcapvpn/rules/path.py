"""Several vantage points (``--vantage``): where on the path a packet was lost.

``PATH_LOSS`` turns each loss the matching found (:mod:`pcapvpn.track.vantage`: packets seen
at one point and never at the next point of their direction) into a finding with a
``location``; :func:`locate` gives the first point's own findings (``ESP_ONE_WAY``,
``IKE_NO_RESPONSE``, ``IKE_RETRANSMISSION``, ``ESP_SEQUENCE_GAP``, ``NAT_MAPPING_CHANGED``,
``IKE_FRAGMENTATION_LOSS``, ``NAT_T_BLOCKED``) the same ``location`` where the points show
it.  A location is ``{"from": point, "to": point, "why": words}``: seen at ``from``, never
at ``to``; ``from`` None: before the first point (never sent, or lost before any point saw
it); ``to`` None: past the last point.
"""

from __future__ import annotations

from dissect.vpn.registry import exchange_name

from pcapvpn import findings as F
from pcapvpn.findings import FrameRef, msg
from pcapvpn.rules import rule
from pcapvpn.rules.common import colon_hex
from pcapvpn.track.vantage import FILTER_RANGES

F.declare(
    "PATH_LOSS", "dataplane", "warning",
    "Packets of the tunnel (ESP, or IKE messages) were seen at one capture point and never at "
    "the next point on their way: they were lost between those two points (the location names "
    "them). The stage is that of what was lost: dataplane for ESP, the exchange's stage for "
    "IKE.",
    ["Look at the devices and links between the two named points: interface errors and drops "
     "(show interface, ethtool -S, nstat), firewall or ACL drops and rate limits, NAT and "
     "conntrack tables, queue drops (tc -s qdisc).",
     "If only large packets vanished, check the MTU between the points (ICMP "
     "fragmentation-needed filtered, a tunnel or PPPoE hop).",
     "If the loss lies before the first point or after the last one, capture closer to the "
     "sender or the receiver to narrow it further."])

F.declare(
    "SEVERAL_CAPTURE_POINTS", "capture", "info",
    "Two input files were read as pieces of one capture point, but they hold the same IKE "
    "messages at a steady time difference: they were captured at two points of the same "
    "traffic. Read as one point, every packet is counted twice (copies, retransmissions, "
    "reordering). Naming the points with --vantage matches the packets across them: clock "
    "offset, and where a packet was lost.",
    ["Run again with one --vantage NAME=FILE per capture point, e.g. "
     "pcapvpn analyze --vantage gw-a=a.pcap --vantage gw-b=b.pcap."],
    failure=False)

#: IKE exchange type -> the stage a loss of its messages belongs to
_IKE_STAGE = {
    (2, 34): "reachability",  # IKE_SA_INIT
    (2, 35): "authentication",  # IKE_AUTH
    (2, 36): "child_sa",  # CREATE_CHILD_SA
    (2, 37): "stability",  # INFORMATIONAL
    (2, 43): "negotiation",  # IKE_INTERMEDIATE
    (1, 2): "negotiation",  # Main Mode
    (1, 4): "negotiation",  # Aggressive Mode
    (1, 5): "stability",  # Informational
    (1, 6): "authentication",  # Transaction (XAUTH / mode-config)
    (1, 32): "child_sa",  # Quick Mode
}


def _pname(name) -> str:
    return name if name is not None else msg("(before the first point)")


def _segment(src, dst) -> str:
    if src is None:
        return msg("before {b}", b=dst)
    if dst is None:
        return msg("after {a} (past the last capture point)", a=src)
    return msg("between {a} and {b}", a=src, b=dst)


def _ranges_text(ranges, limit=8) -> str:
    parts = []
    for a, b in ranges[:limit]:
        a &= 0xFFFFFFFF
        b = (b - 1) & 0xFFFFFFFF
        parts.append(str(a) if a == b else f"{a}-{b}")
    more = len(ranges) - limit
    return ", ".join(parts) + (msg(" and {n} more range(s)", n=more) if more > 0 else "")


def _frames(x) -> list:
    return [FrameRef(file, frame, point) for point, file, frame in x.frames[:200]]


@rule
def path_loss(ctx):
    v = getattr(ctx.state, "vantage", None)
    if v is None:
        return
    for tid, view in v.paths.items():
        for x in view.losses:
            yield _loss_finding(ctx, tid, x)


def _loss_finding(ctx, tid, x):
    way = "a->b" if x.forward else "b->a"
    if x.kind == "esp":
        spi = f"{x.spi:08x}"
        title = msg("{n} ESP packet(s) of SPI 0x{spi} lost {where}", n=x.lost, spi=spi,
                    where=_segment(x.src, x.dst))
        about = (msg(" (about: the holes of the sequence went beyond what is kept)")
                 if x.approximate else "")
        detail = msg("ESP SA 0x{spi} ({way} on tunnel {tunnel}): {n} packet(s) seen at {src} "
                     "never reached {dst}{about}; sequence numbers {ranges}.", spi=spi, way=way,
                     tunnel=tid, n=x.lost, src=_pname(x.src),
                     dst=x.dst or msg('any later point'), about=about,
                     ranges=_ranges_text(x.ranges) or msg('not listed'))
        flt = f"esp.spi == 0x{spi}"
        if x.ranges:
            # the lost numbers and the next one (the packet after the hole downstream)
            alts = []
            for a, b in x.ranges[:FILTER_RANGES]:
                alts.append(f"(esp.sequence >= {a & 0xFFFFFFFF} && esp.sequence <= "
                            f"{b & 0xFFFFFFFF})")
            flt += " && (" + " || ".join(alts) + ")"
        ev = F.Evidence(frames=_frames(x), first=ctx.time(x.first_ts), last=ctx.time(x.last_ts),
                        esp_spis=[spi])
        key = f"{tid}|esp|{spi}|{x.src}|{x.dst}"
        stage = "dataplane"
    else:
        ispi, exch, msgid, _resp = x.ike
        name = exchange_name(exch)
        what = ", ".join(sorted(set(x.messages)))
        title = msg("IKE {name} message(s) lost {where}", name=name,
                    where=_segment(x.src, x.dst))
        detail = msg("IKE SA {sa}, {name} (Message ID {msgid}, {way} on tunnel {tunnel}): {n} "
                     "{copies} of the {what} seen at {src} never reached {dst}.",
                     sa=bytes(ispi).hex(), name=name, msgid=msgid, way=way, tunnel=tid, n=x.lost,
                     copies=msg("copy") if x.lost == 1 else msg("copies"), what=what,
                     src=_pname(x.src), dst=x.dst or msg('any later point'))
        flt = f"isakmp.ispi == {colon_hex(ispi)} && isakmp.messageid == {msgid}"
        ev = F.Evidence(frames=_frames(x), first=ctx.time(x.first_ts), last=ctx.time(x.last_ts),
                        ike_spis=[bytes(ispi).hex()])
        key = f"{tid}|ike|{bytes(ispi).hex()}|{exch}|{msgid}|{x.src}|{x.dst}"
        stage = _IKE_STAGE.get((x.version, exch), "reachability")
    f = F.make("PATH_LOSS", key, title=title, detail=detail, evidence=ev, wireshark_filter=flt,
               tunnel=tid)
    f.stage = stage
    f.location = {"from": x.src, "to": x.dst,
                  "why": msg("lost {where}", where=_segment(x.src, x.dst))}
    return f


def several_points_finding(hint) -> F.Finding:
    """The ``--vantage`` hint (:func:`pcapvpn.track.vantage.same_packets_hint`)."""
    a, b = hint["files"]
    f = F.make(
        "SEVERAL_CAPTURE_POINTS", f"{a}|{b}",
        title=msg("{a} and {b} look like two capture points of the same traffic", a=a, b=b),
        detail=msg("{n} IKE messages are in both files, byte for byte, {offset:+.6f} s apart "
                   "each time (a steady difference: the same packets seen at two points, or the "
                   "same point with another clock), so they are not pieces of one capture. Use "
                   "--vantage to match them.", n=hint['matched'], offset=hint['offset_s']),
        wireshark_filter="isakmp")
    return f


# -- locations of the first point's findings -----------------------------------------------

def locate(ctx, findings) -> None:
    """Give the first point's findings a ``location`` where the points show it."""
    v = getattr(ctx.state, "vantage", None)
    if v is None:
        return
    first = v.points[0].name
    for f in findings:
        for r in f.evidence.frames:
            if r.point is None:
                r.point = first
        if f.location is not None:
            continue
        fn = _LOCATORS.get(f.code)
        view = v.paths.get(f.tunnel) if f.tunnel else None
        if fn is None or view is None or len(view.order) < 2:
            continue
        loc = fn(ctx, v, view, f)
        if loc is not None:
            f.location = loc


def _names(v, idxs) -> list:
    return [v.points[i].name for i in idxs]


def _msgs_of(ctx, v, f) -> list:
    """The first point's IKE messages among a finding's evidence frames."""
    want = {(r.file, r.frame) for r in f.evidence.frames if r.point == v.points[0].name}
    out = []
    for sa in ctx.state.ike_sas:
        for m in sa.messages:
            refs = m.frames or (m.ref,)
            if any((ctx.file(r[0]), r[1]) in want for r in refs):
                out.append((sa, m))
    return out


def _exchange(sa, m):
    """The exchange of message ``m`` (the IKE tracker numbers them per SA)."""
    i = m.exchange
    if i is None:
        return None
    if 0 <= i < len(sa.exchanges) and sa.exchanges[i].index == i:
        return sa.exchanges[i]
    return next((x for x in sa.exchanges if x.index == i), None)


def _loc_ike(ctx, v, view, f):
    msgs = _msgs_of(ctx, v, f)
    if not msgs:
        return None
    xs = []
    for sa, m in msgs:
        x = _exchange(sa, m)
        if x is not None and x not in xs:
            xs.append(x)
    for x in xs:
        key = (bytes(x.sa.ispi), x.exch, x.msgid)
        hits = [y for y in view.losses if y.kind == "ike" and
                (bytes(y.ike[0]), y.ike[1], y.ike[2]) == key]
        if hits:
            y = max(hits, key=lambda z: z.lost)
            return {"from": y.src, "to": y.dst,
                    "why": msg("{what} lost {where}", what=', '.join(sorted(set(y.messages))),
                               where=_segment(y.src, y.dst))}
    # nothing lost between the points: how far did the requests get?
    x = xs[0] if xs else None
    if x is None:
        return None
    reqs = [m.digest for m in x.msgs if not m.is_response] if x.version == 2 else \
        [m.digest for m in x.msgs if m.step == x.last_step]
    for dg, fwd, per in view.ike_flows:
        if dg not in reqs:
            continue
        order = view.placed if fwd else view.placed[::-1]
        seen = [i for i in order if i in per]
        if not seen:
            continue
        last = seen[-1]
        if last == order[-1]:
            name = v.points[last].name
            return {"from": name, "to": None,
                    "why": msg("the request reached the last point ({name}) and no answer "
                               "came back past it: the responder (or what lies beyond {name}) "
                               "did not answer", name=name)}
    return None


def _loc_one_way(ctx, v, view, f):
    spis = {int(s, 16) for s in f.evidence.esp_spis}
    flowing = [fwd for spi, fwd, _per in view.esp_flows if spi in spis]
    if not flowing:
        return None
    missing = not flowing[0]
    hits = [y for y in view.losses if y.kind == "esp" and y.forward == missing]
    if hits:
        y = max(hits, key=lambda z: z.lost)
        return {"from": y.src, "to": y.dst,
                "why": msg("the reverse direction left the far side and was lost {where}",
                           where=_segment(y.src, y.dst))}
    order = view.placed if missing else view.placed[::-1]
    seen = set()
    for _spi, fwd, per in view.esp_flows:
        if fwd == missing:
            seen.update(per)
    if not seen:
        first = v.points[order[0]].name
        return {"from": None, "to": first,
                "why": msg("the reverse direction was never seen at any point: it did not "
                           "leave the far gateway (or was lost before {first})", first=first)}
    return None


def _loc_gap(ctx, v, view, f):
    spis = {int(s, 16) for s in f.evidence.esp_spis}
    for spi, fwd, per in view.esp_flows:
        if spi not in spis:
            continue
        order = view.placed if fwd else view.placed[::-1]
        if 0 not in order:
            return None
        here = order.index(0)
        hits = [y for y in view.losses if y.kind == "esp" and y.spi == spi]
        pos = {v.points[i].name: k for k, i in enumerate(order)}
        hits = [y for y in hits if pos.get(y.dst, len(order)) <= here]
        if hits:
            y = max(hits, key=lambda z: z.lost)
            return {"from": y.src, "to": y.dst,
                    "why": msg("{n} packet(s) lost on the path {where}", n=y.lost,
                               where=_segment(y.src, y.dst))}
        first = v.points[order[0]].name
        if order[0] in per:
            return {"from": None, "to": first,
                    "why": msg("the numbers are missing at {first} too, the point nearest the "
                               "sender: never sent, or lost before {first}", first=first)}
    return None


def _loc_nat(ctx, v, view, f):
    pos = {n: k for k, n in enumerate(view.order)}
    for fact in view.nat:
        moves = fact.get("source_changes")
        if not moves:
            continue
        still = [n for n, c in moves.items() if not c and n in pos]
        moved = [n for n, c in moves.items() if c and n in pos]
        if not still or not moved:
            continue
        # the adjacent pair across the boundary
        best = min(((a, b) for a in still for b in moved), key=lambda ab: abs(pos[ab[0]] -
                                                                                pos[ab[1]]))
        what = (f"ESP SPI 0x{fact['spi']}" if fact["what"] == "esp"
                else f"IKE SA {fact['ike_spi']}")
        return {"from": best[0], "to": best[1],
                "why": msg("the source of {what} changed at {moved} ({n} time(s)) and not at "
                           "{still}: the NAT whose mapping changed lies between them ({a} at "
                           "{still}, {b} at {moved})", what=what, moved=best[1],
                           n=moves[best[1]], still=best[0], a=fact['points'][best[0]],
                           b=fact['points'][best[1]])}
    return None


_LOCATORS = {
    "IKE_NO_RESPONSE": _loc_ike,
    "IKE_RETRANSMISSION": _loc_ike,
    "IKE_FRAGMENTATION_LOSS": _loc_ike,
    "NAT_T_BLOCKED": _loc_ike,  # an unanswered request on UDP 4500: where did it stop?
    "ESP_ONE_WAY": _loc_one_way,
    "ESP_SEQUENCE_GAP": _loc_gap,
    "NAT_MAPPING_CHANGED": _loc_nat,
}
