"""Inside the tunnel (stage ``inner``): DNS for internal names, internal firewalls, MTU inside the
tunnel, read from the one inner model (:mod:`pcapvpn.track.inner`): tunnel interfaces, a
gateway's LAN side, XFRM re-injected packets and decrypted ESP alike.

The helpers here are shared with :mod:`pcapvpn.rules.routing` (stage ``routing``).  Requests
count as unanswered only once :data:`pcapvpn.track.inner.ANSWER_TIMEOUT` has passed before the
end of the capture.
"""

from __future__ import annotations

import functools
import ipaddress

from dissect.vpn.ip import IpProto, icmp_too_big
from pcapvpn.findings import Term, declare, make, msg, msg_join
from pcapvpn.rules import rule
from pcapvpn.rules.common import frames_filter, ip_text
from pcapvpn.track.inner import ANSWER_TIMEOUT, seen_at, watches

declare("DNS_NO_ANSWER", "inner", "error",
        "DNS queries sent through the tunnel (to a resolver on the remote side) got no answer: "
        "internal names do not resolve after connecting (`nslookup intranet.local` times out).",
        ["Check that the DNS server pushed to VPN clients is up and answers queries from the "
         "VPN address pool (its ACL / `allow-query`, listen addresses).",
         "Check the route from the DNS server back to the VPN pool (a missing return route "
         "looks the same).",
         "Check the firewall between the gateway and the DNS server for UDP/TCP 53 from the VPN "
         "pool."])
declare("DNS_ERROR", "inner", "warning",
        "The DNS server reached through the tunnel answered queries for internal names with "
        "an error (NXDOMAIN, SERVFAIL or REFUSED), and no query for the same name (under any "
        "suffix) was answered.",
        ["NXDOMAIN: check the name and the DNS suffix / search domain pushed to the client "
         "(the client may append the wrong domain).",
         "REFUSED: the server does not serve the VPN pool (recursion / `allow-query` ACL).",
         "SERVFAIL: the server cannot reach the zone's authoritative servers (forwarders, "
         "DNSSEC)."])
declare("DNS_OUTSIDE_TUNNEL", "inner", "warning",
        "Queries for internal names went to a resolver outside the tunnel (the local ISP or home "
        "router), which cannot know them: the client does not use the DNS server of the VPN "
        "for the internal domain.",
        ["Push the internal DNS server and domain to the client (strongSwan/IKEv2 "
         "INTERNAL_IP4_DNS + INTERNAL_DNS_DOMAIN, OpenVPN `dhcp-option DNS` / `DOMAIN`, "
         "AnyConnect split-DNS) and check that the client applies them (Windows NRPT / "
         "interface metric, systemd-resolved per-link domains).",
         "Split tunnel: route the DNS server's address into the tunnel."])
declare("INNER_BLOCKED", "inner", "error",
        "Inside a working tunnel an internal firewall or the host refuses the VPN users: TCP "
        "reset, ICMP administratively prohibited, or connection attempts to one service "
        "retransmitted without answer while other traffic through the tunnel works.",
        ["ICMP admin-prohibited from an address: that filter denies the VPN pool; allow the "
         "service from the pool (e.g. a `deny ip 192.168.200.0/24 -> 192.168.10.0/24`).",
         "RST from the target itself: the port is closed on the host (service down, listening "
         "on another address), or a firewall answers for it.",
         "Silent drops: check the firewalls between the gateway and the host for the VPN pool "
         "and the service's port."])
declare("INNER_MTU", "inner", "error",
        "TCP inside the tunnel stalls on full-size segments (retransmitted, never acknowledged) "
        "while small packets pass, or an ICMP fragmentation-needed / packet-too-big came from "
        "inside: the MTU inside the tunnel is smaller than the segments sent.",
        ["Clamp the TCP MSS of traffic entering the tunnel to the tunnel MTU minus 40 "
         "(IPv4) / 60 (IPv6): Cisco `ip tcp adjust-mss 1360`, strongSwan/Linux `iptables -t "
         "mangle ... TCPMSS --clamp-mss-to-pmtu`, FortiGate `set tcp-mss-sender`.",
         "Lower the MTU of the tunnel interface, or let ICMP fragmentation-needed / "
         "packet-too-big through (path MTU discovery).",
         "If the outer view shows large ESP lost (MTU_BLACK_HOLE / PATH_MTU_ICMP), fix the "
         "outer path MTU first."])
declare("INNER_NO_ANSWER", "inner", "warning",
        "Inside a working tunnel (answers keep coming through it), some requests got no answer: "
        "ICMP echo requests or TCP connection attempts (SYN) to hosts behind the gateway that "
        "answer other requests. The VPN works; the problem is beyond it (a firewall or a "
        "service on the host, routing for some destinations behind the gateway). Unanswered DNS "
        "queries are DNS_NO_ANSWER; hosts that never answer are INNER_NO_RETURN.",
        ["Check the route back from the target network to the client's (virtual) address "
         "through the gateway, and firewalls behind the gateway.",
         "Check that the service listens on the host and that the host's own firewall admits the "
         "VPN clients' addresses."])

#: names that are internal by their form (single label, private top-level domains)
INTERNAL_SUFFIXES = (".lan", ".corp", ".internal", ".intranet", ".home.arpa", ".localdomain",
                     ".private", ".intra")
#: ICMP codes of "administratively prohibited" (RFC 792 / RFC 1812: type 3 code 9, 10, 13;
#: RFC 4443: ICMPv6 type 1 code 1)
ADMIN_PROHIBITED = {4: (3, (9, 10, 13)), 6: (1, (1,))}
RCODE_NAMES = {2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


# -- shared helpers ------------------------------------------------------------------------------

def models(ctx):
    """The tunnels' inner models, in report order."""
    return list((ctx.state.inner_models or {}).values())


def view_label(ctx, v) -> str:
    return v.label(ctx.state.names)


def flow_text(f) -> str:
    if f.proto in (IpProto.TCP, IpProto.UDP):
        return (f"{ip_text(f.cli)} -> {ip_text(f.srv)}:{f.sport}/"
                f"{'tcp' if f.proto == IpProto.TCP else 'udp'}")
    if f.echo:
        return f"{ip_text(f.cli)} -> {ip_text(f.srv)} (ICMP echo)"
    return f"{ip_text(f.cli)} -> {ip_text(f.srv)} (IP protocol {f.proto})"


def flow_filter(flows) -> str:
    """A display filter showing the conversations (addresses and service); decrypted ones by
    their ESP frames (Wireshark shows inner fields only with the keys loaded)."""
    parts = []
    keyed = []
    for f in flows:
        if f.view.kind == "keys":
            keyed.extend(flow_refs([f]))
            continue
        ip = "ip" if f.ipver == 4 else "ipv6"
        p = f"{ip}.addr == {ip_text(f.srv)} && {ip}.addr == {ip_text(f.cli)}"
        if f.proto == IpProto.TCP:
            p += f" && tcp.port == {f.sport}"
        elif f.proto == IpProto.UDP:
            p += f" && udp.port == {f.sport}"
        elif f.proto in (IpProto.ICMP, IpProto.ICMPV6):
            p += " && icmp" if f.ipver == 4 else " && icmpv6"
        if p not in parts:
            parts.append(p)
    parts = parts[:8]
    if keyed:
        parts.append(frames_filter(sorted(set(keyed))))
    if not parts:
        return ""
    return parts[0] if len(parts) == 1 else " || ".join(f"({p})" for p in parts)


def flow_refs(flows, limit=40) -> list:
    refs = []
    for f in flows:
        refs.extend(f.refs[0])
        refs.extend(f.refs[1])
        refs.extend(r for r, _ln in f.retx_refs[0] + f.retx_refs[1])
        refs.extend(f.hole_refs[0] + f.hole_refs[1])
        if f.icmp is not None:
            refs.append(f.icmp[5])
        if f.rst is not None:
            refs.append(f.rst[2])
    out = sorted(set(refs))
    return out[:limit]


def evidence(ctx, refs, ts0, ts1, m):
    return ctx.evidence(refs, ts0, ts1, peers=[ip_text(a) for a in m.outer])


def flow_evidence(ctx, flows, m):
    """The evidence of conversations: their frames, from the first packet to the last."""
    return evidence(ctx, flow_refs(flows), min(f.first_ts for f in flows),
                    max(f.last_ts for f in flows), m)


def basis_of(views) -> str:
    kinds = {v.kind for v in views}
    return "decrypted" if kinds == {"keys"} else "observed"


def judged(ctx, ts) -> bool:
    """A request at ``ts``: was there time enough before the end of the capture for an answer?"""
    return ts is not None and ctx.state.now - ts >= ANSWER_TIMEOUT


def where(ctx, views) -> str:
    labels = []
    for v in views:
        lab = view_label(ctx, v)
        if lab not in labels:
            labels.append(lab)
    return msg_join("; ", [Term(x) for x in labels])


def requests_ok(f) -> bool:
    """A conversation opened and answered (a reply, a SYN-ACK, an echo reply)."""
    return f.pkts[1] > 0 and f.rst is None or (f.synack > 0)


def is_internal_name(name: str | None) -> bool:
    if not name:
        return False
    n = name.rstrip(".").lower()
    if "." not in n:
        return True
    return n.endswith(INTERNAL_SUFFIXES)


#: configuration attributes that push DNS domains to a client: IKEv2 INTERNAL_DNS_DOMAIN
#: (RFC 8598, presentation format); IKEv1 mode-config UNITY_DEF_DOMAIN and UNITY_SPLITDNS_NAME
#: (comma-separated)
DOMAIN_ATTRS = frozenset((25, 28674, 28675))


def pushed_domains(ctx, tid) -> set:
    """DNS domains the gateway pushed to the client in decrypted configuration payloads."""
    out = set()
    t = next((t for t in ctx.state.tunnels if t.id == tid), None)
    for sa in getattr(t, "ike_sas", ()):
        for message in sa.messages:
            inner = getattr(message, "inner", None)
            for _cfg, attrs in (inner.config if inner is not None else ()):
                for attr, value in attrs:
                    if attr in DOMAIN_ATTRS and value:
                        for d in bytes(value).decode("ascii", "replace").split(","):
                            d = d.strip().strip(".").lower()
                            if d:
                                out.add(d)
    return out


def parent(name: str) -> str | None:
    return name.split(".", 1)[1] if name and "." in name else None


_WIDE = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("172.16.0.0/12"))


@functools.lru_cache(maxsize=1 << 16)
def ip_net(ipver, addr: bytes):
    """The network a destination is assumed to share with its neighbours: /16 for 10/8 and
    172.16/12, /24 for the rest of IPv4, /64 for IPv6.  (Cached: a capture's flows name the
    same addresses again and again; networks are immutable.)"""
    a = ipaddress.ip_address(addr)
    if ipver == 6:
        return ipaddress.IPv6Network((a, 64), strict=False)
    return ipaddress.IPv4Network((a, 16 if a in _WIDE[0] or a in _WIDE[1] else 24),
                                 strict=False)


#: a segment this small always fits a tunnel (IPv6 minimum MTU 1280 minus headers and ESP)
SMALL_SEGMENT = 1000


def _stalled_dirs(f):
    """``[(direction, how)]`` of a TCP flow stalled on full-size segments while small ones pass:
    ``retx`` large segments retransmitted and never acknowledged (seen where they were sent),
    ``hole`` the sender moved past bytes that never arrived while every segment that did was
    small although the receiver's MSS allowed full-size ones (seen beyond the loss)."""
    out = []
    if f.proto != IpProto.TCP:
        return out
    for d in (0, 1):
        if f.retx[d] > 1 and f.maxlen[d] > f.acked[d] and f.pkts[1 - d] > 0:
            out.append((d, "retx"))
        elif f.hole[d] >= 2 * SMALL_SEGMENT and 0 < f.maxlen[d] < SMALL_SEGMENT and \
                (f.mss[1 - d] or 536) >= SMALL_SEGMENT:
            out.append((d, "hole"))
    return out


# -- where on the path (several vantage points) ----------------------------------------------------

def _clock(p, t):
    """A time of point ``p``'s clock on the first point's (as far as the matching told)."""
    off = p.offset
    return t if off is None or t is None else off.to_first(t)


def located(finding, loc):
    """``finding`` with its ``location`` (None: none known)."""
    if loc is not None:
        finding.location = loc
    return finding


def locate_flows(ctx, flows, d=0, answered=True, big=False):
    """:func:`locate_flow` of each conversation: the location most of them share, a loss
    between two points before one at the end of the path."""
    vt = getattr(ctx.state, "vantage", None)
    if vt is None or len(vt.points) < 2:
        return None
    locs = [loc for loc in (locate_flow(ctx, [f], d, answered, big) for f in flows) if loc]
    if not locs:
        return None
    counts: dict = {}
    for loc in locs:
        k = (loc["from"], loc["to"])
        counts[k] = counts.get(k, 0) + 1
    best = max(counts, key=lambda k: (k[1] is not None, counts[k]))
    return next(loc for loc in locs if (loc["from"], loc["to"]) == best)


def _count(d, big):
    if big:
        return lambda s: 1 if s.maxlen[d] >= SMALL_SEGMENT else 0
    return lambda s: s.pkts[d]


def _drop(path, count):
    """The first pair of consecutive points where fewer packets arrived than the point before
    saw: ``(from, to)``, or None."""
    for k in range(1, len(path)):
        a, b = count(path[k - 1][1]), count(path[k][1])
        if a > 0 and b < a:
            return path[k - 1][0], path[k][0]
    return None


def locate_flow(ctx, flows, d=0, answered=True, big=False):
    """``location`` (``{from, to, why}``, as ``PATH_LOSS`` has it) of conversations the first
    point shows failing, from what every vantage point (``--vantage``) saw of them (points
    ordered by when each first saw them, clocks corrected by the matching): direction ``d``'s
    packets (``big``: its full-size segments) seen at one point and fewer (or none) at the next
    one on their way; with ``answered``, then the answers the same way back, or ``to`` None when
    the requests reached the last point and no point saw an answer.  None where no point shows
    a loss."""
    vt = ctx.state.vantage
    addrs = {f.srv for f in flows} | {f.cli for f in flows}
    rows, silent = [], []
    for i, p in enumerate(vt.points):
        plain = getattr(p.tracker, "plain_tracker", None)
        if plain is None:
            continue
        s = seen_at(plain, flows)
        if s is None:
            if watches(plain, addrs):
                silent.append(p.name)  # it sees these hosts, not these conversations
            continue
        rows.append((_clock(p, s.first_ts), i, p.name, s))
    if not rows or not (len(rows) > 1 or silent):  # one point alone tells nothing
        return None
    rows.sort(key=lambda r: (r[0], r[1]))
    # from the sender of direction d on
    path = [(n, s) for _t, _i, n, s in (rows if d == 0 else rows[::-1])]
    what = ((msg("full-size segments") if big else msg("packets")) if not answered
            else msg("requests"))
    sent = _count(d, big)
    lost = _drop(path, sent)
    if lost is not None:
        return {"from": lost[0], "to": lost[1],
                "why": msg("{what} seen at {a} never reached {b}", what=what, a=lost[0],
                           b=lost[1])}
    reached = [n for n, s in path if sent(s)]
    if not reached:
        return None
    last = reached[-1]
    if silent:
        return {"from": last, "to": silent[0],
                "why": msg("{what} seen at {a} never reached {b}", what=what, a=last,
                           b=silent[0])}
    if not answered:
        return None
    back = _count(1 - d, False)
    lost = _drop(path[::-1], back)
    if lost is not None:
        return {"from": lost[0], "to": lost[1],
                "why": msg("answers seen at {a} never reached {b}", a=lost[0], b=lost[1])}
    if any(back(s) for _n, s in path):
        return None
    return {"from": last, "to": None,
            "why": msg("the requests reached {last}, the last point that saw them, and no "
                       "answer was seen at any point: the destination (or what lies beyond "
                       "{last}) did not answer", last=last)}


# -- INNER_BLOCKED -------------------------------------------------------------------------------

@rule
def inner_blocked(ctx):
    for m in models(ctx):
        seen = {}
        for v, how, f in m.flows():
            if how == "xfrm":
                continue
            seen.setdefault(id(f), (v, f))
        pairs = list(seen.values())
        answered_srv = {f.srv for _v, f in pairs if f.pkts[1] > 0 and f.rst is None}
        answered_srv |= {f.srv for _v, f in pairs if f.synack}
        any_ok = any(requests_ok(f) for _v, f in pairs)
        items = []
        for v, f in pairs:
            ap = ADMIN_PROHIBITED.get(f.ipver)
            if f.icmp is not None and ap and f.icmp[0] == ap[0] and f.icmp[1] in ap[1]:
                items.append((v, f, msg("refused by a filter at {at} (ICMP type {type} code "
                                        "{code}, administratively prohibited)",
                                        at=ip_text(f.icmp[3]), type=f.icmp[0], code=f.icmp[1])))
            elif f.proto == IpProto.TCP and f.syn and not f.synack and f.rst is not None and f.rst[0] == 1:
                items.append((v, f, msg("refused by the host itself (TCP RST from {host}: port "
                                        "closed, or a firewall answering for it)",
                                        host=ip_text(f.srv))))
            elif f.proto == IpProto.TCP and f.syn > 1 and not f.synack and f.rst is None and \
                    f.icmp is None and any_ok and f.srv in answered_srv and judged(ctx, f.last_ts):
                items.append((v, f, msg("{n} SYNs without any answer while the host answers "
                                        "other services (dropped by a filter)", n=f.syn)))
        if not items:
            continue
        flows = [f for _v, f, _w in items]
        svc = sorted({f"{ip_text(f.srv)} {f.service()}" for f in flows})
        # failing: a destination none of whose traffic works at the end; else degraded
        dead = [f for f in flows if f.srv not in answered_srv]
        sev = "error" if dead else "warning"
        lines = msg_join("; ", [msg("{flow}: {why}", flow=flow_text(f), why=why)
                                for _v, f, why in items[:6]])
        views = [v for v, _f, _w in items]
        silent = [f for _v, f, why in items if f.rst is None and f.icmp is None]
        yield located(make(
            "INNER_BLOCKED", f"{m.tunnel}|inner|blocked",
            title=msg("Inside the tunnel, {n} service(s) refused: {services}", n=len(svc),
                      services=', '.join(svc[:4])),
            detail=msg("Seen on {where}: {lines}.", where=where(ctx, views), lines=lines)
                   + ("" if dead else msg(" Other traffic to the same host works: a partial "
                                          "failure.")),
            basis=basis_of(views), severity=sev,
            evidence=flow_evidence(ctx, flows, m),
            wireshark_filter=flow_filter(flows), tunnel=m.tunnel), locate_flows(ctx, silent))


# -- INNER_NO_ANSWER ------------------------------------------------------------------------------

#: answers through the tunnel this long after a request began show that the tunnel still worked
WORKS_AFTER = 1.0


@rule
def inner_no_answer(ctx):
    """Requests inside a working tunnel that got no answer where no more specific inner code
    speaks: ICMP echo requests without their replies, TCP SYNs (sent once) without SYN-ACK, to
    hosts that answer other requests through the tunnel, while answers kept coming through the
    tunnel afterwards.  From every view of the one model alike: tunnel interfaces, a gateway's
    LAN side, decrypted ESP.  Destinations that never answer are ``INNER_NO_RETURN``, DNS is
    ``DNS_NO_ANSWER``, refused or retransmitted connections ``INNER_BLOCKED``."""
    for m in models(ctx):
        pairs = {}
        for v, how, f in m.flows():
            if how != "xfrm":
                pairs.setdefault(id(f), (v, f))
        if not pairs:
            continue
        answered_srv = {f.srv for _v, f in pairs.values() if f.pkts[1] > 0}
        back = [f.last[1] for _v, f in pairs.values() if f.last[1] is not None]
        last_back = max(back) if back else None
        items = []
        for v, f in pairs.values():
            if f.srv in m.outer or f.srv not in answered_srv or f.icmp is not None or \
                    f.rst is not None:
                continue
            if f.echo and f.echo[0] > f.echo[1]:
                n = f.echo[0] - f.echo[1]
            elif f.proto == IpProto.TCP and f.syn == 1 and not f.synack and not f.pkts[1]:
                n = 1
            else:
                continue
            if not judged(ctx, f.last[0]) or last_back is None or \
                    last_back < f.first_ts + WORKS_AFTER:
                continue
            items.append((v, f, n))
        if not items:
            continue
        # one conversation seen on several views (a gateway's tunnel interface and LAN side):
        # counted once, where it shows most
        best: dict = {}
        for v, f, n in items:
            k = (f.proto, f.cli, f.cport, f.srv, f.sport)
            if k not in best or n > best[k][2]:
                best[k] = (v, f, n)
        views = [v for v, _f, _n in items]
        flows = [f for _v, f, _n in items]
        items = list(best.values())
        echo = sum(n for _v, f, n in items if f.echo)
        syns = sum(n for _v, f, n in items if not f.echo)
        what = msg_join(" and ", [x for x in (
            msg("{n} ICMP echo request(s)", n=echo) if echo else "",
            msg("{n} TCP connection attempt(s)", n=syns) if syns else "") if x])
        yield located(make(
            "INNER_NO_ANSWER", f"{m.tunnel}|inner|noanswer",
            title=msg("{what} inside the tunnel unanswered", what=what),
            detail=msg("Seen on {where}: {parts}, while the same hosts answered other requests "
                       "and answers kept coming through the tunnel (last at +{t} s).",
                       where=where(ctx, views),
                       parts=msg_join("; ", [msg("{flow}: {n} without an answer",
                                                 flow=flow_text(f), n=n)
                                             for _v, f, n in items[:6]]),
                       t=ctx.rel(last_back)),
            basis=basis_of(views),
            evidence=flow_evidence(ctx, flows, m),
            wireshark_filter=flow_filter(flows), tunnel=m.tunnel), locate_flows(ctx, flows))


# -- INNER_MTU -----------------------------------------------------------------------------------

@rule
def inner_mtu(ctx):
    for m in models(ctx):
        items = []
        for v, how, f in m.flows():
            if how == "xfrm":
                continue
            if f.icmp is not None and icmp_too_big(f.ipver, f.icmp[0], f.icmp[1]):
                items.append((v, f, None))
                continue
            for d, how in _stalled_dirs(f):
                # retransmissions: the last one had its time; a hole: nothing more arrived
                if judged(ctx, f.last_ts if how == "retx" else f.data_ts[d]):
                    items.append((v, f, (d, how)))
        if not items:
            continue
        parts = []
        for v, f, dh in items[:4]:
            if dh is None:
                what = Term("fragmentation needed" if f.ipver == 4 else "packet too big")
                parts.append(msg("{flow}: ICMP {what} from {at}, MTU {mtu}", flow=flow_text(f),
                                 what=what, at=ip_text(f.icmp[3]), mtu=f.icmp[2]))
                continue
            d, how = dh
            sender = ip_text(f.cli if d == 0 else f.srv)
            mss = msg("; MSS offered: {mss}", mss=msg_join(", ", [
                msg("{mss} by {host}", mss=x, host=ip_text(a))
                for x, a in ((f.mss[0], f.cli), (f.mss[1], f.srv)) if x])) if any(f.mss) else ""
            if how == "retx":
                parts.append(msg("{flow}: {n} retransmissions of segments up to {max} bytes from "
                                 "{sender} never acknowledged; the largest segment that got "
                                 "through was {acked} bytes{mss}", flow=flow_text(f),
                                 n=f.retx[d], max=f.maxlen[d], sender=sender, acked=f.acked[d],
                                 mss=mss))
            else:
                parts.append(msg("{flow}: {sender} sent {n} bytes that never arrived here, while "
                                 "every segment that did was at most {max} bytes{mss}",
                                 flow=flow_text(f), sender=sender, n=f.hole[d],
                                 max=f.maxlen[d], mss=mss))
        flows = [f for _v, f, _d in items]
        views = [v for v, _f, _d in items]
        loc = None
        for _v, f, dh in items:
            if dh is not None:
                loc = locate_flows(ctx, [f], dh[0], answered=False, big=True)
                if loc is not None:
                    break
        yield located(make(
            "INNER_MTU", f"{m.tunnel}|inner|mtu",
            title=msg("TCP inside the tunnel stalls on full-size segments ({n} connection(s))",
                      n=len({id(f) for f in flows})),
            detail=msg("Seen on {where}: {parts}. Small packets pass: the MTU inside the tunnel "
                       "is below the segment size; clamp the MSS to the tunnel MTU minus 40.",
                       where=where(ctx, views), parts=msg_join("; ", parts)),
            basis=basis_of(views),
            evidence=flow_evidence(ctx, flows, m),
            wireshark_filter=flow_filter(flows), tunnel=m.tunnel), loc)


# -- DNS ----------------------------------------------------------------------------------------

def _answered_names(m) -> set:
    return {q.name for _v, _h, q in m.dns() if q.rcode == 0 and q.answers and q.name}


@rule
def dns_inside(ctx):
    for m in models(ctx):
        qs = [(v, q) for v, how, q in m.dns() if how != "xfrm"]
        if not qs:
            continue
        lost = [(v, q) for v, q in qs if q.rcode is None and judged(ctx, q.ts)]
        if lost:
            servers = sorted({ip_text(q.server) for _v, q in lost})
            ok = [q for _v, q in qs if q.rcode is not None]
            names = sorted({q.name or "?" for _v, q in lost})
            tries = sum(q.tries for _v, q in lost)
            views = [v for v, _q in lost]
            qflows = [f for f in (q.view.flows.get((IpProto.UDP, q.client, q.cport, q.server,
                                                     53)) for _v, q in lost) if f is not None]
            yield located(make(
                "DNS_NO_ANSWER", f"{m.tunnel}|inner|dns-lost",
                title=(msg("{n} DNS query through the tunnel to {servers} unanswered",
                           n=len(lost), servers=', '.join(servers)) if len(lost) == 1 else
                       msg("{n} DNS queries through the tunnel to {servers} unanswered",
                           n=len(lost), servers=', '.join(servers))),
                detail=msg("Seen on {where}: queries for {names} ({tries} packets with retries) "
                           "to {servers} got no answer within {timeout:g} s",
                           where=where(ctx, views), names=', '.join(names[:6]), tries=tries,
                           servers=', '.join(servers), timeout=ANSWER_TIMEOUT)
                       + (msg("; {n} other queries were answered.", n=len(ok)) if ok else
                          msg("; no DNS query through the tunnel was answered.")),
                basis=basis_of(views), severity="warning" if ok else "error",
                evidence=evidence(ctx, [q.ref for _v, q in lost][:40], lost[0][1].ts,
                                  lost[-1][1].ts, m),
                wireshark_filter=_dns_filter(q for _v, q in lost), tunnel=m.tunnel),
                locate_flows(ctx, list(dict.fromkeys(qflows))))
        good = _answered_names(m)
        good_labels = {n.split(".")[0] for n in good}
        bad = [(v, q) for v, q in qs if q.rcode in RCODE_NAMES and q.name
               and q.name.split(".")[0] not in good_labels]
        if bad:
            names = {}
            for _v, q in bad:
                names.setdefault(q.name, set()).add(RCODE_NAMES[q.rcode])
            views = [v for v, _q in bad]
            txt = "; ".join(f"{n}: {'/'.join(sorted(r))}" for n, r in sorted(names.items())[:6])
            yield make(
                "DNS_ERROR", f"{m.tunnel}|inner|dns-error",
                title=msg("Internal name(s) not resolved through the tunnel: {names}",
                          names=', '.join(sorted({n.split('.')[0] for n in names}))),
                detail=msg("Seen on {where}: {txt} (server {servers}); no query for the same "
                           "name under another suffix was answered", where=where(ctx, views),
                           txt=txt, servers=', '.join(sorted({ip_text(q.server)
                                                              for _v, q in bad})))
                       + (msg(" (other names resolved: {names}).",
                              names=', '.join(sorted(good)[:4])) if good else "."),
                basis=basis_of(views),
                evidence=evidence(ctx, sorted({r for _v, q in bad for r in (q.ref, q.rref)
                                               if r is not None})[:40],
                                  bad[0][1].ts, bad[-1][1].rts or bad[-1][1].ts, m),
                wireshark_filter=_dns_filter(q for _v, q in bad), tunnel=m.tunnel)


def _dns_filter(queries) -> str:
    """The queries by name; decrypted ones by their ESP frames."""
    names = []
    keyed = []
    for q in queries:
        if q.view.kind == "keys":
            keyed.extend(r for r in (q.ref, q.rref) if r is not None)
        elif q.name and q.name not in names:
            names.append(q.name)
    parts = []
    if names:
        parts.append("dns.qry.name in {" + ", ".join(f'"{n}"' for n in names[:8]) + "}"
                     if len(names) > 1 else f'dns.qry.name == "{names[0]}"')
    if keyed:
        parts.append(frames_filter(sorted(set(keyed))))
    if not parts:
        return "dns"
    return parts[0] if len(parts) == 1 else " || ".join(f"({p})" for p in parts)


@rule
def dns_outside(ctx):
    plain = ctx.state.plain
    if plain is None:
        return
    for m in models(ctx):
        inside = _answered_names(m) | {q.name for _v, _h, q in m.dns() if q.name}
        pushed = pushed_domains(ctx, m.tunnel)
        domains = {parent(n) for n in inside if parent(n)} | pushed
        tied = {id(v) for v, _h in m.views}
        hits = []
        for v in plain.views.values():
            if v.kind != "physical" or id(v) in tied or v.group not in m.files:
                continue
            for q in v.dns:
                if q.server in m.outer or not q.name:
                    continue
                if is_internal_name(q.name) or q.name in inside or \
                        any(q.name == d or q.name.endswith("." + d) for d in pushed) or \
                        parent(q.name) in domains:
                    hits.append((v, q))
        if not hits:
            continue
        views = [v for v, _q in hits]
        names = sorted({q.name for _v, q in hits})
        servers = sorted({ip_text(q.server) for _v, q in hits})
        how = msg_join(", ", [Term(x) for x in sorted({"unanswered" if q.rcode is None else
                                                       RCODE_NAMES.get(q.rcode, "answered")
                                                       for _v, q in hits})])
        yield make(
            "DNS_OUTSIDE_TUNNEL", f"{m.tunnel}|inner|dns-outside",
            title=msg("Internal name(s) asked outside the tunnel: {names}",
                      names=', '.join(names[:4])),
            detail=msg("Seen on {where}: queries for {names} went to {servers} outside the "
                       "tunnel ({how}); ", where=where(ctx, views), names=', '.join(names[:6]),
                       servers=', '.join(servers), how=how)
                   + (msg("names under {domains} are resolved through the tunnel.",
                          domains=', '.join(sorted(d for d in domains if d)[:3])) if domains else
                      msg("these names are internal by their form.")),
            basis="observed",
            evidence=evidence(ctx, sorted({q.ref for _v, q in hits})[:40], hits[0][1].ts,
                              hits[-1][1].ts, m),
            wireshark_filter=_dns_filter(q for _v, q in hits), tunnel=m.tunnel)
