"""Routing inside the tunnel (stage ``routing``, between ``dataplane`` and ``inner``): does traffic
for the remote subnets enter the tunnel, and do replies come back into it?

* ``ROUTE_OUTSIDE_TUNNEL``: on a capture holding the tunnel's outer traffic, conversations to the
  subnets the tunnel carries leave in clear on a physical interface (split-tunnel route missing
  or too narrow);
* ``INNER_NO_RETURN``: requests enter the tunnel and no reply from the destination ever comes
  back (no return route on the remote LAN, or a filter dropping everything from it);
* ``SUBNET_OVERLAP``: the client's local LAN is (part of) the remote subnet: ARP on the local
  LAN for addresses that should be remote; with keys also the traffic selectors themselves
  (:mod:`pcapvpn.rules.decrypted`).

The subnets a tunnel carries are its decrypted traffic selectors (--keys) and, without keys, the
neighbourhood of the hosts reached through it (:func:`pcapvpn.rules.inner.ip_net`: /16 in 10/8
and 172.16/12, /24 elsewhere).
"""

from __future__ import annotations

import ipaddress

from dissect.vpn.ip import IpProto, Port
from pcapvpn.findings import Term, declare, make, msg, msg_join
from pcapvpn.rules import rule
from pcapvpn.rules.common import ip_text
from pcapvpn.track.inner import ordinary
from pcapvpn.rules.inner import (basis_of, evidence, flow_evidence, flow_filter, flow_text,
                                 ip_net, judged, locate_flows, located, models, where)

#: a destination is silent after this many SYNs (a retransmission) or TCP packets, or this many
#: echo requests / datagrams without an answer
SILENT_SYNS = 2
SILENT_TCP_PACKETS = 3
SILENT_REQUESTS = 2

declare("ROUTE_OUTSIDE_TUNNEL", "routing", "error",
        "Traffic for a subnet the tunnel carries leaves in clear on the physical interface "
        "instead of entering the tunnel: the client's split-tunnel route for it is missing or "
        "too narrow (e.g. only 10.0.0.0/8 is routed into the VPN).",
        ["Compare the client's routing table after connecting (`route print`, `ip route`, "
         "`netstat -rn`) with the remote subnets; add the missing ones to the split-tunnel "
         "list the gateway pushes (IKEv2 traffic selectors / INTERNAL_IP4_SUBNET, OpenVPN "
         "`push \"route ...\"`, AnyConnect split-include ACL).",
         "A more specific local route (another VPN, a docker or VM network) may capture the "
         "subnet: remove it or narrow it."])
declare("INNER_NO_RETURN", "routing", "error",
        "Requests enter the tunnel (seen on the tunnel interface, decrypted, or arriving on the "
        "gateway's LAN side) and no reply ever comes back from the destination: the remote LAN "
        "has no route back to the VPN clients' addresses, or a firewall drops the replies.",
        ["On the remote LAN, route the VPN pool / client subnet back to the VPN gateway "
         "(the internal host's default gateway or the core router needs it).",
         "Check firewalls between the gateway and the host for the VPN pool in both "
         "directions; with a gateway LAN-side capture, check whether the host answered at all.",
         "If the gateway NATs VPN clients, check that the NAT rule applies to this traffic."])
declare("SUBNET_OVERLAP", "routing", "error",
        "The client's local LAN uses (part of) the remote subnet: traffic for the remote hosts "
        "stays on the local LAN (ARP requests for them go unanswered) or is routed into the "
        "tunnel unpredictably. \"This can never work\" until one side is renumbered.",
        ["Renumber the home/local LAN to a range the office does not use (preferred).",
         "Stopgap: NAT on the VPN side (map the remote subnet to a distinct range) or hand out "
         "a virtual IP and narrow the remote selectors to the hosts actually needed."])


# -- the subnets a tunnel carries ----------------------------------------------------------------

def _ts_nets(ctx, tid):
    """Decrypted traffic selectors of the tunnel as networks: (initiator side, responder side)."""
    ini, resp = [], []
    t = next((t for t in ctx.state.tunnels if t.id == tid), None)
    if t is None:
        return ini, resp
    for sa in t.ike_sas:
        for message in sa.messages:
            inner = getattr(message, "inner", None)
            if not inner:
                continue
            for sels, out in ((inner.ts_initiator, ini), (inner.ts_responder, resp)):
                for sel in sels:
                    ipver, a, b = sel[0], sel[1], sel[2]
                    cls = ipaddress.IPv4Address if ipver == 4 else ipaddress.IPv6Address
                    try:
                        nets = ipaddress.summarize_address_range(cls(a), cls(b))
                    except ValueError:
                        continue
                    for n in nets:
                        if n.prefixlen and n not in out:
                            out.append(n)
    return ini, resp


#: inferred remote networks kept per tunnel (each host reached adds at most one)
MAX_INFERRED_NETS = 256


class Nets:
    """The subnets a tunnel carries towards the remote side: its decrypted traffic selectors
    (few, tested one by one) and the inferred neighbourhoods of the hosts reached through it
    (looked up by :func:`ip_net` of the address: constant time per question)."""

    def __init__(self, ts, inferred):
        self.ts = ts              # [network]
        self.inferred = inferred  # {network: why}

    def __bool__(self):
        return bool(self.ts or self.inferred)

    def find(self, addr: bytes, ts_only: bool = False):
        """``(network, why)`` of the network holding ``addr``, or None."""
        a = ipaddress.ip_address(addr)
        for n in self.ts:
            if a.version == n.version and a in n:
                return n, "traffic selector"
        if ts_only:
            return None
        n = ip_net(a.version, addr)
        why = self.inferred.get(n)
        return (n, why) if why is not None else None


def remote_nets(ctx, m) -> Nets:
    _ini, resp = _ts_nets(ctx, m.tunnel)
    own = {ip_net(4 if len(c) == 4 else 6, c) for c in m.clients}
    inferred = {}
    for a in sorted(m.servers):
        if len(inferred) >= MAX_INFERRED_NETS:
            break
        n = ip_net(4 if len(a) == 4 else 6, a)
        if n in own or n in inferred:
            continue  # the client side's own neighbourhood, or known
        if any(n.version == x.version and n.subnet_of(x) for x in resp):
            continue
        inferred[n] = f"hosts reached through the tunnel ({ip_text(a)})"
    return Nets(resp, inferred)


def _own_views(ctx, m):
    """Physical views of the capture files holding the tunnel's outer traffic that are not
    tied to it (the client's own interfaces)."""
    plain = ctx.state.plain
    if plain is None:
        return []
    tied = {id(v) for v, _h in m.views}
    return [v for v in plain.views.values()
            if v.kind == "physical" and id(v) not in tied and v.group in m.files]


# -- ROUTE_OUTSIDE_TUNNEL -----------------------------------------------------------------------

@rule
def route_outside(ctx):
    for m in models(ctx):
        nets = remote_nets(ctx, m)
        if not nets:
            continue
        inside = {(f.cli, f.srv) for _v, _h, f in m.flows()}
        items = []
        for v in _own_views(ctx, m):
            arped = set(v.arp)
            for f in v.conversations():
                if f.srv in m.outer or not (ordinary(f.cli) and ordinary(f.srv)):
                    continue  # broadcast (DHCP), multicast, link-local: no route to take
                hit = nets.find(f.srv)
                if hit is None or nets.find(f.cli) is not None or f.srv in arped:
                    continue
                if (f.cli, f.srv) in inside:
                    continue
                items.append((v, f, hit))
        if not items:
            continue
        flows = [f for _v, f, _h in items]
        views = [v for v, _f, _h in items]
        prefixes = sorted({str(h[0]) for _v, _f, h in items})
        answered = [f for f in flows if f.pkts[1] > 0]
        icmp = [f for f in flows if f.icmp is not None]
        if answered:
            ans = msg("{n} of {total} got replies from outside the tunnel (e.g. {flow})",
                      n=len(answered), total=len(flows), flow=flow_text(answered[0]))
        elif icmp:
            ans = msg("none was answered; ICMP type {type} code {code} came from {host}",
                      type=icmp[0].icmp[0], code=icmp[0].icmp[1], host=ip_text(icmp[0].icmp[3]))
        else:
            ans = msg("nothing answered")
        whys = sorted({h[1] for _v, _f, h in items})
        yield make(
            "ROUTE_OUTSIDE_TUNNEL", f"{m.tunnel}|routing|outside",
            title=msg("Traffic for {prefixes} bypasses the tunnel ({n} conversation(s) in "
                      "clear)", prefixes=', '.join(prefixes[:3]), n=len(flows)),
            detail=msg("On {where}, {n} conversation(s) to {prefixes} (carried by the tunnel: "
                       "{whys}) left in clear instead of entering the tunnel, e.g. {flows}; "
                       "{ans}.", where=where(ctx, views), n=len(flows),
                       prefixes=', '.join(prefixes),
                       whys=msg_join("; ", [Term(w) for w in whys[:3]]),
                       flows=', '.join(flow_text(f) for f in flows[:3]), ans=ans),
            basis="observed", severity="warning" if len(answered) == len(flows) else "error",
            evidence=flow_evidence(ctx, flows, m),
            wireshark_filter=flow_filter(flows), tunnel=m.tunnel)


# -- INNER_NO_RETURN ----------------------------------------------------------------------------

#: UDP services that answer every request (DNS, DHCP, Kerberos, NTP, SNMP, LDAP, RADIUS, SIP):
#: other datagrams may be one-way by design (syslog, streams) and prove nothing
UDP_REQUESTS = frozenset((53, 67, 88, 123, 161, 389, 1812, 1813, 5060))


def _request(f) -> bool:
    """A conversation whose opener expects an answer."""
    return f.proto == IpProto.TCP or bool(f.echo) or (f.proto == IpProto.UDP
                                                      and f.sport in UDP_REQUESTS)


def _enough(f) -> bool:
    """Enough unanswered requests to call the destination silent: retransmitted SYNs, several
    echo requests or datagrams."""
    if f.proto == IpProto.TCP:
        return f.syn >= SILENT_SYNS or f.pkts[0] >= SILENT_TCP_PACKETS
    if f.echo:
        return f.echo[0] >= SILENT_REQUESTS
    return f.pkts[0] >= SILENT_REQUESTS


@rule
def no_return(ctx):
    for m in models(ctx):
        by_srv = {}
        talkers = set()
        views_of = {}
        for v, how, f in m.flows():
            if how == "xfrm":
                continue  # outbound plaintext is not captured there: absence proves nothing
            if f.pkts[0]:
                talkers.add(f.cli)
            if f.pkts[1]:
                talkers.add(f.srv)
            if f.srv in m.outer or f.cli in m.outer or not _request(f):
                continue
            by_srv.setdefault(f.srv, {})[id(f)] = f
            views_of.setdefault(f.srv, []).append(v)
        for srv, fs in by_srv.items():
            flows = list(fs.values())
            if srv in talkers or any(f.pkts[1] or f.rst or f.icmp for f in flows):
                continue
            if all(f.proto == IpProto.UDP and f.sport == Port.DNS for f in flows):
                continue  # DNS only: DNS_NO_ANSWER says it
            if not any(_enough(f) for f in flows) or not judged(ctx, max(f.last_ts
                                                                          for f in flows)):
                continue
            views = views_of[srv]
            lan = [v for v in views if v.kind == "physical"]
            note = (msg(" On the gateway's LAN side ({where}) the requests were forwarded to "
                        "{host} and no reply from it was seen there: the host did not answer, "
                        "or its replies took another route.", where=where(ctx, lan),
                        host=ip_text(srv))
                    if lan else "")
            reqs = sum(f.pkts[0] for f in flows)
            yield located(make(
                "INNER_NO_RETURN", f"{m.tunnel}|routing|noreturn|{ip_text(srv)}",
                title=msg("No reply from {host} through the tunnel ({reqs} request packet(s), "
                          "{n} conversation(s))", host=ip_text(srv), reqs=reqs, n=len(flows)),
                detail=msg("Seen on {where}: {flows} entered the tunnel and nothing from {host} "
                           "ever came back, while the tunnel itself works.{note}",
                           where=where(ctx, views),
                           flows=', '.join(flow_text(f) for f in flows[:4]), host=ip_text(srv),
                           note=note),
                basis=basis_of(views),
                evidence=flow_evidence(ctx, flows, m),
                wireshark_filter=flow_filter(flows), tunnel=m.tunnel), locate_flows(ctx, flows))


# -- SUBNET_OVERLAP (keyless: ARP on the local LAN) --------------------------------------------

@rule
def subnet_overlap(ctx):
    for m in models(ctx):
        nets = remote_nets(ctx, m)
        if not nets:
            continue
        items = []
        for v in _own_views(ctx, m):
            for target, (n, ts0, ref, sender, answered) in v.arp.items():
                hit = nets.find(target)
                if hit is None or (answered and nets.find(target, ts_only=True) is None):
                    continue
                local = ipaddress.ip_network(f"{ipaddress.ip_address(sender)}/24", strict=False)
                if ipaddress.ip_address(target) not in local:
                    continue
                items.append((v, target, n, ts0, ref, sender, hit, answered, local))
            for lease in v.leases:
                addr, mask = lease[0], lease[1]
                if mask is None:
                    continue
                local = ipaddress.ip_network(f"{ipaddress.ip_address(addr)}/"
                                             f"{ipaddress.ip_address(mask)}", strict=False)
                for n, why in [(n, "traffic selector") for n in nets.ts] + \
                        list(nets.inferred.items()):
                    if n.version == local.version and n.overlaps(local):
                        items.append((v, addr, 0, None, lease[5], addr, (n, why), True, local))
        if not items:
            continue
        views = [x[0] for x in items]
        locals_ = sorted({str(x[8]) for x in items})
        remotes = sorted({str(x[6][0]) for x in items})
        arps = [x for x in items if x[3] is not None]
        tell = (msg("{n} ARP request(s) on the local LAN for {hosts}{unanswered}",
                    n=sum(x[2] for x in arps), hosts=', '.join(ip_text(x[1]) for x in arps[:4]),
                    unanswered=msg(' (unanswered)') if not any(x[7] for x in arps) else '')
                if arps else msg("a DHCP lease on the local LAN"))
        refs = sorted({x[4] for x in items if x[4] is not None})
        ts = [x[3] for x in arps]
        yield make(
            "SUBNET_OVERLAP", f"{m.tunnel}|routing|overlap",
            title=msg("Local LAN {local} overlaps the remote subnet {remote}",
                      local=', '.join(locals_), remote=', '.join(remotes)),
            detail=msg("On {where}: {tell}, addresses the tunnel should carry ({why}): the "
                       "client's local LAN uses the same range, so this traffic never enters "
                       "the tunnel.", where=where(ctx, views), tell=tell,
                       why=msg_join("; ", [Term(x) for x in
                                           sorted({x[6][1] for x in items})[:2]])),
            basis=basis_of(views),
            evidence=evidence(ctx, refs[:40], min(ts) if ts else None,
                              max(ts) if ts else None, m),
            wireshark_filter=("arp.dst.proto_ipv4 in {" + ", ".join(ip_text(x[1])
                                                                   for x in arps[:8]) + "}")
            if len(arps) > 1 else (f"arp.dst.proto_ipv4 == {ip_text(arps[0][1])}" if arps
                                   else "dhcp"),
            tunnel=m.tunnel)
