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

import statistics

from dissect.vpn.ip import IpProto
from dissect.vpn.registry import exchange_name

from pcapvpn import findings as F
from pcapvpn.findings import FrameRef, Term, msg, msg_join
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
    "Two inputs were read as one capture point, but they hold the same packets at a steady "
    "time difference: two files with the same IKE messages (or, without IKE in common, the "
    "same ESP SPI and sequence numbers), or two interfaces of one file (pcapng interfaces, the "
    "interfaces of a Linux -i any capture) with the same IKE messages. They were captured at "
    "two points of the same traffic. Read as one point, every packet is counted twice (copies, "
    "retransmissions, reordering). Naming the points with --vantage matches the packets "
    "across them: clock offset, and where a packet was lost. A tunnel interface is an inside "
    "view of its tunnel, never a second point.",
    ["Run again with one --vantage NAME=FILE per capture point, e.g. "
     "pcapvpn analyze --vantage gw-a=a.pcap --vantage gw-b=b.pcap; for the interfaces of one "
     "file --vantage NAME=FILE#IFACE (an interface name, or ifindex=N for a Linux -i any "
     "capture)."],
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


def _ranges_text(ranges, limit=8, mask=0xFFFFFFFF) -> str:
    parts = []
    for a, b in ranges[:limit]:
        a &= mask
        b = (b - 1) & mask
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
    elif x.kind != "ike":
        title, detail, flt, ev, key = _seq_loss(ctx, tid, x, way)
        stage = "dataplane"
    else:
        ispi, exch, msgid, _resp = x.ike
        name = exchange_name(exch)
        what = msg_join(", ", [Term(m) for m in sorted(set(x.messages))])  # labels: translated
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


#: the other VPNs' numbered flows: the protocol's name, and the Wireshark fields of the number
#: and of what names the flow
_SEQ_FIELDS = {
    "ah": ("AH", "ah.sequence"),
    "wireguard": ("WireGuard", "wg.counter"),
    "openvpn": ("OpenVPN", None),
    "l2tp": ("L2TP", "l2tp.Ns"),
    "sslvpn": ("DTLS", "dtls.record.sequence_number"),
    "pptp": ("PPTP", "gre.sequence_number"),
}


def _seq_filter(x) -> str:
    """The display filter of a loss of AH or another VPN's numbered flow."""
    _name, num = _SEQ_FIELDS[x.kind]
    if x.kind == "ah":
        base = f"ah.spi == 0x{x.spi:08x}"
    elif x.kind == "wireguard" and isinstance(x.key, tuple):  # a handshake message
        return f"wg.sender == 0x{x.key[1]:08x}"
    elif x.kind == "wireguard":
        base = f"wg.receiver == 0x{x.key:08x}"
    elif x.kind == "pptp":
        base = f"gre.key.call_id == {x.key}"
    elif x.kind == "sslvpn":
        base = f"udp.port == {x.key[1]} && dtls.record.epoch == {x.key[2]}"
    elif x.kind == "l2tp":
        tun, sess = x.key
        base = f"l2tp.tunnel == {tun}" + (f" && l2tp.session == {sess}" if sess is not None
                                          else " && l2tp.type == 1")
    else:
        what = x.key[0]
        if what == "control":
            base = f"openvpn.sessionid == 0x{x.key[1]:016x}"
            num = "openvpn.pid" if "replay" in (x.flow or "") else "openvpn.mpid"
        else:
            base = "openvpn.opcode == 9" if x.key[1] is not None else "openvpn.opcode == 6"
            if x.key[1] is not None:
                base += f" && openvpn.peerid == {x.key[1]}"
    if num is None or not x.ranges:
        return base
    mask = (1 << x.width) - 1
    # the lost numbers and the next one (the packet after the hole downstream)
    alts = [f"({num} >= {a & mask} && {num} <= {b & mask})"
            for a, b in x.ranges[:FILTER_RANGES] if (a & mask) <= (b & mask)]
    return base + (" && (" + " || ".join(alts) + ")" if alts else "")


def _seq_loss(ctx, tid, x, way):
    """Title, detail, filter, evidence and key of a loss of AH or another VPN's flow."""
    name, _num = _SEQ_FIELDS[x.kind]
    flow = f"SPI 0x{x.spi:08x}" if x.kind == "ah" else (x.flow or "")
    mask = (1 << x.width) - 1
    about = (msg(" (about: the holes of the sequence went beyond what is kept)")
             if x.approximate else "")
    title = msg("{n} {name} packet(s) of {flow} lost {where}", n=x.lost, name=name, flow=flow,
                where=_segment(x.src, x.dst))
    detail = msg("{name} {flow} ({way} on tunnel {tunnel}): {n} packet(s) seen at {src} never "
                 "reached {dst}{about}; numbers {ranges}.", name=name, flow=flow, way=way,
                 tunnel=tid, n=x.lost, src=_pname(x.src), dst=x.dst or msg('any later point'),
                 about=about,
                 ranges=_ranges_text(x.ranges, mask=mask) or msg('not listed'))
    ev = F.Evidence(frames=_frames(x), first=ctx.time(x.first_ts), last=ctx.time(x.last_ts))
    key = f"{tid}|{x.kind}|{flow}|{x.src}|{x.dst}"
    return title, detail, _seq_filter(x), ev, key


# -- plaintext lost between points: the inner codes (issue 15) with a location ---------------

def _plain_filter(c) -> str:
    from pcapvpn.model import addr

    proto, src, sport, dst, dport = c
    ip = "ipv6" if len(src) == 16 else "ip"
    flt = f"{ip}.src == {addr(src)} && {ip}.dst == {addr(dst)}"
    if proto in (IpProto.TCP, IpProto.UDP) and sport is not None and sport >= 0:
        t = "tcp" if proto == IpProto.TCP else "udp"
        flt += f" && {t}.srcport == {sport} && {t}.dstport == {dport}"
    elif proto in (IpProto.ICMP, IpProto.ICMPV6):
        flt += " && icmp" if proto == IpProto.ICMP else " && icmpv6"
    return flt


def _refs_at_first(v, x) -> set:
    """The first point's frames of the conversation of plaintext loss ``x`` (both ways), when
    the first point saw it."""
    rec = getattr(v.points[0].tracker, "plain_rec", None)
    if rec is None:
        return set()
    name = v.points[0].name
    if x.src == name:
        c = x.conv
    elif x.dst == name and x.conv_dst is not None:
        c = x.conv_dst
    else:
        return set()
    r = (c[0], c[3], c[4], c[1], c[2])
    names = v.points[0].tracker.names
    return {(names[ref[0]], ref[1]) for _ts, ref, conv, _n in rec.d.values()
            if conv == c or conv == r}


@rule
def plain_lost_between_points(ctx):
    """A conversation direction seen at one point and never at the next: the inner codes
    (INNER_BLOCKED for the direction that opened it, INNER_NO_RETURN for the answers) with a
    location.  Partial losses stay path facts (the conversation worked)."""
    v = getattr(ctx.state, "vantage", None)
    if v is None:
        return
    from pcapvpn.track.vantage.plain import tuple_text

    for x in v.plain_losses:
        what = tuple_text(x.conv)
        seg = _segment(x.src, x.dst)
        vpn = _vpn_tcp_tunnel(ctx, x)
        if vpn is not None:
            # the outer TCP connection of an SSL-VPN: its own packets, PATH_LOSS
            ev = F.Evidence(frames=[FrameRef(file, frame, point)
                                    for point, file, frame in x.frames],
                            first=ctx.time(x.first_ts), last=ctx.time(x.last_ts))
            f = F.make("PATH_LOSS", f"{vpn}|tls|{what}|{x.src}|{x.dst}",
                       title=msg("{n} TCP segment(s) of the SSL-VPN connection {what} lost "
                                 "{where}", n=x.lost, what=what, where=seg),
                       detail=msg("Tunnel {tunnel}: {n} of {sent} segment(s) {what} seen at {src} "
                                  "never reached {dst}, not even as a retransmission.",
                                  tunnel=vpn, n=x.lost, sent=x.sent, what=what, src=x.src,
                                  dst=x.dst),
                       evidence=ev, wireshark_filter=_plain_filter(x.conv), tunnel=vpn)
            f.location = {"from": x.src, "to": x.dst, "why": msg("lost {where}", where=seg)}
            yield f
            continue
        if x.lost < x.sent:
            continue
        tunnel = _plain_tunnel(ctx, v, x)
        if tunnel is None and not x.inside:
            continue  # traffic beside any tunnel: a path fact only (vantage_inside)
        if x.opener:
            code = "INNER_BLOCKED"
            title = msg("{what}: {n} packet(s) never got past {src} to {dst}", what=what,
                        n=x.lost, src=x.src, dst=x.dst)
            detail = msg("The conversation {what} was opened at {src} and none of its {n} "
                         "packet(s) that way reached {dst}: they were dropped {where} (a firewall "
                         "or a missing route there).", what=what, src=x.src, n=x.sent,
                         dst=x.dst, where=seg)
        else:
            code = "INNER_NO_RETURN"
            title = msg("{what}: the replies never got past {src} to {dst}", what=what,
                        src=x.src, dst=x.dst)
            detail = (msg("The replies {what} left {src} ({n} packet(s)) and none reached {dst}: "
                          "they were dropped {where}", what=what, src=x.src, n=x.sent,
                          dst=x.dst, where=seg)
                      + (msg(" while the requests passed the other way") if x.reverse_ok
                         else "")
                      + ".")
        ev = F.Evidence(frames=[FrameRef(file, frame, point) for point, file, frame in x.frames],
                        first=ctx.time(x.first_ts), last=ctx.time(x.last_ts))
        f = F.make(code, f"path|{x.src}|{x.dst}|{what}", title=title, detail=detail,
                   evidence=ev, wireshark_filter=_plain_filter(x.conv), tunnel=tunnel)
        f.location = {"from": x.src, "to": x.dst, "why": msg("lost {where}", where=seg)}
        v.plain_findings[f.id] = x
        yield f


def _vpn_tcp_tunnel(ctx, x):
    """The SSL-VPN (TLS over TCP) tunnel whose outer connection a plaintext loss belongs to:
    its server address and port on either end of the conversation (a NAT in front of the
    client leaves the server's side alone), else None."""
    proto, s, sp, d, dp = x.conv
    if proto != IpProto.TCP:
        return None
    for t in getattr(ctx.state, "vpn_tunnels", None) or ():
        if t.transport != "tcp" or t.protocol != "sslvpn" or not t.identified:
            continue
        if (d, dp) == (t.server, t.port) or (s, sp) == (t.server, t.port):
            return t.id
    return None


def _plain_tunnel(ctx, v, x):
    """The tunnel of a plaintext loss: the first point's inner model holding the conversation
    (None when the first point did not see it or no tunnel is tied)."""
    refs = _refs_at_first(v, x)
    if not refs:
        return None
    for tid, model in (getattr(ctx.state, "inner_models", None) or {}).items():
        for _view, _how, fl in model.flows():
            for ref in fl.refs[0] + fl.refs[1]:
                if (ctx.file(ref[0]), ref[1]) in refs:
                    return tid
    return None


def several_points_finding(hint) -> F.Finding:
    """The ``--vantage`` hint (:func:`pcapvpn.track.vantage.same_packets_hint`)."""
    a, b = hint["files"]
    if hint.get("what") == "interfaces":
        return F.make(
            "SEVERAL_CAPTURE_POINTS", f"{a}|{b}",
            title=msg("{a} and {b} look like two capture points of the same traffic", a=a,
                      b=b),
            detail=msg("{n} IKE messages were captured on both interfaces, byte for byte, "
                       "{ms:.3f} ms apart each time (a steady delay: the same packets seen on two "
                       "sides of a box), so every packet is counted twice. Use --vantage "
                       "in=FILE#IFACE --vantage out=FILE#IFACE, here --vantage in={a} --vantage "
                       "out={b}, to match them.", n=hint['matched'],
                       ms=hint['offset_s'] * 1000, a=a, b=b),
            wireshark_filter="isakmp")
    f = F.make(
        "SEVERAL_CAPTURE_POINTS", f"{a}|{b}",
        title=msg("{a} and {b} look like two capture points of the same traffic", a=a, b=b),
        detail=msg("{n} {what} are in both files, {offset:+.6f} s apart each time (a steady "
                   "difference: the same packets seen at two points, or the same point with "
                   "another clock), so they are not pieces of one capture. Use --vantage to match "
                   "them.", n=hint['matched'], what=_HINT_WHAT[hint.get('what', 'ike')],
                   offset=hint['offset_s']),
        wireshark_filter="esp" if hint.get("what") == "esp" else "isakmp")
    return f


#: what the hint matched, in its detail
_HINT_WHAT = {"ike": msg("IKE messages (byte for byte)"),
              "esp": msg("ESP packets (the same SPI and sequence number)"),
              "interfaces": msg("IKE messages (byte for byte)")}


# -- locations of the first point's findings -----------------------------------------------

def locate(ctx, findings) -> None:
    """Give the first point's findings a ``location`` where the points show it."""
    v = getattr(ctx.state, "vantage", None)
    if v is None:
        return
    _locate_plain(ctx, v, findings)
    _locate_unanswered(ctx, v, findings)
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
    flows = [(spi, "esp", fwd, per) for spi, fwd, per in view.esp_flows]
    flows += [(key[1], "ah", fwd, per) for key, fwd, per in view.seq_flows if key[0] == "ah"]
    for spi, kind, fwd, per in flows:
        if spi not in spis:
            continue
        order = view.placed if fwd else view.placed[::-1]
        if 0 not in order:
            return None
        here = order.index(0)
        hits = [y for y in view.losses if y.kind == kind and y.spi == spi]
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
        if "ike_spi" in fact:
            what = f"IKE SA {fact['ike_spi']}"
        elif "spi" in fact:
            what = f"{fact['what'].upper()} SPI 0x{fact['spi']}"
        else:
            what = f"{_SEQ_FIELDS[fact['what']][0]} {fact['flow']}"
        return {"from": best[0], "to": best[1],
                "why": msg("the source of {what} changed at {moved} ({n} time(s)) and not at "
                           "{still}: the NAT whose mapping changed lies between them ({a} at "
                           "{still}, {b} at {moved})", what=what, moved=best[1],
                           n=moves[best[1]], still=best[0], a=fact['points'][best[0]],
                           b=fact['points'][best[1]])}
    return None


def _locate_plain(ctx, v, findings) -> None:
    """The first point's own inner findings (INNER_NO_RETURN, INNER_BLOCKED) whose evidence is
    a conversation lost between points take the loss's location; the path's finding of the same
    code for it is then dropped (one finding per problem)."""
    path_fs = {f.id: f for f in findings if f.id in v.plain_findings}
    if not path_fs:
        return
    name = v.points[0].name
    drop = set()
    for f in findings:
        if f.id in path_fs or f.code not in ("INNER_NO_RETURN", "INNER_BLOCKED") or \
                f.location is not None:
            continue
        mine = {(r.file, r.frame) for r in f.evidence.frames if r.point in (None, name)}
        for fid, pf in path_fs.items():
            if fid in drop or pf.code != f.code:
                continue
            if mine & _refs_at_first(v, v.plain_findings[fid]):
                f.location = pf.location
                drop.add(fid)
                break
    if drop:
        findings[:] = [f for f in findings if f.id not in drop]


#: the first point's inner findings of requests never answered: how far did the requests get?
_UNANSWERED = ("INNER_NO_RETURN", "DNS_NO_ANSWER", "INNER_NO_ANSWER")


def _locate_unanswered(ctx, v, findings) -> None:
    """Requests the first point saw unanswered that reached other points, and no reply came
    back past any of them: the farthest point they reached is where the answer should have
    come from (``to`` None: past the last point)."""
    todo = [f for f in findings if f.code in _UNANSWERED and f.location is None]
    p0 = v.points[0]
    rec0 = getattr(p0.tracker, "plain_rec", None)
    if not todo or rec0 is None or len(v.points) < 2:
        return
    names = p0.tracker.names
    by_ref = {(names[x[1][0]], x[1][1]): (fp, x[0]) for fp, x in rec0.d.items()}
    from pcapvpn.track.vantage.access import corrected

    for f in todo:
        sent = [by_ref[(r.file, r.frame)] for r in f.evidence.frames
                if r.point in (None, p0.name) and (r.file, r.frame) in by_ref]
        if not sent:
            continue
        far = None
        for k in range(1, len(v.points)):
            rec = getattr(v.points[k].tracker, "plain_rec", None)
            if rec is None:
                continue
            ds = [corrected(v.points, k, rec.d[fp][0]) - t for fp, t in sent if fp in rec.d]
            if not ds:
                continue
            # later there than here (an offset resting on one direction only includes the
            # one-way delay: the requests' delays are then about 0)
            d = statistics.median(ds)
            if d >= -1e-3 and (far is None or d > far[1]):
                far = (v.points[k].name, d, len(ds))
        if far is not None:
            name = far[0]
            f.location = {"from": name, "to": None,
                          "why": msg("{n} of the {total} request packet(s) reached {name} and "
                                     "no reply came back past it: the destination (or what lies "
                                     "beyond {name}) did not answer", n=far[2], total=len(sent),
                                     name=name)}


def _loc_vpn_unanswered(ctx, v, view, f):
    """A VPN beside IPsec whose handshake got no answer (WIREGUARD_NO_RESPONSE,
    OPENVPN_NO_RESPONSE): where its packets were lost between points, or, when nothing was
    lost, how far the client's packets got."""
    kind = "wireguard" if f.code.startswith("WIREGUARD") else "openvpn"
    hits = [y for y in view.losses if y.kind == kind]
    if hits:
        y = max(hits, key=lambda z: (not z.forward, z.lost))  # answers lost first
        what = msg("the answers") if not y.forward else msg("the client's packets")
        return {"from": y.src, "to": y.dst,
                "why": msg("{what} were lost {where}", what=what, where=_segment(y.src, y.dst))}
    seen = [i for key, fwd, per in view.seq_flows if key[0] == kind and fwd for i in per]
    answered = any(not fwd for key, fwd, _per in view.seq_flows if key[0] == kind)
    order = view.placed
    if not seen or answered or not order:
        return None
    last = order[-1]
    if last in seen:
        name = v.points[last].name
        return {"from": name, "to": None,
                "why": msg("the client's packets reached the last point ({name}) and no answer "
                           "came back past it: the server (or what lies beyond {name}) did not "
                           "answer", name=name)}
    return None


_LOCATORS = {
    "IKE_NO_RESPONSE": _loc_ike,
    "IKE_RETRANSMISSION": _loc_ike,
    "IKE_FRAGMENTATION_LOSS": _loc_ike,
    "NAT_T_BLOCKED": _loc_ike,  # an unanswered request on UDP 4500: where did it stop?
    "ESP_ONE_WAY": _loc_one_way,
    "ESP_SEQUENCE_GAP": _loc_gap,
    "NAT_MAPPING_CHANGED": _loc_nat,
    "WIREGUARD_NO_RESPONSE": _loc_vpn_unanswered,
    "OPENVPN_NO_RESPONSE": _loc_vpn_unanswered,
}
