"""NAT_T_NOT_USED: a NAT between the peers, but IKE stayed on UDP 500 or ESP went as IP
protocol 50 (or AH was used)."""

from __future__ import annotations

from dissect.vpn.ip import Port
from pcapvpn.findings import Term, declare, make, msg, msg_join
from pcapvpn.rules import rule
from pcapvpn.rules.common import endpoint_text, esp_filter, ike_filter, ike_spis, ip_text
from pcapvpn.rules.nat.common import (
    MAX_LISTED, _annotate, _or, _side_ep, _tunnel_verdicts,
)
from pcapvpn.track.nat import STANDARD_PORTS

declare("NAT_T_NOT_USED", "nat_traversal", "error",
        "A NAT sits between the peers, but IKE stayed on UDP 500 or ESP went as IP protocol 50 "
        "(or AH was used): ESP without UDP cannot cross a NAPT and AH cannot cross any NAT "
        "(RFC 3715 §2.1; RFC 7296 §2.23 and RFC 3947 require UDP 4500 once a NAT is detected).",
        ["Enable NAT traversal on both peers (IKEv1: both must send the RFC 3947 Vendor ID; Cisco "
         "'crypto isakmp nat-traversal'; strongSwan does it automatically unless encap/NAT-T "
         "support is broken on one side).",
         "Allow UDP 4500 in both directions on every firewall/NAT on the path.",
         "Do not rely on 'IPsec passthrough' of a NAT for protocol 50: it works for one host at a "
         "time at best.",
         "Use ESP, not AH, across a NAT."])


def _port_translated_without_natd(sa, v) -> str | None:
    """No NAT-D at all, but IKE on 500 came from a port other than 500/4500: a NAPT translated it
    and NAT-T was not negotiated (one peer does not support or has disabled it)."""
    if v.kind != "unknown" or v.hash_alg is not None or sa.mid_session:
        return None
    if v.start_port != Port.IKE:
        return None
    for side in ("initiator", "responder"):
        ep = _side_ep(sa, side)
        if ep is not None and ep[2] not in STANDARD_PORTS:
            return side
    return None


@rule
def nat_t_not_used(ctx):
    _annotate(ctx)
    for t in ctx.state.tunnels:
        verdicts = _tunnel_verdicts(t, ctx)
        nat = [(sa, v) for sa, v in verdicts if v.nat_sides]
        inferred = [(sa, v, side) for sa, v in verdicts
                    for side in [_port_translated_without_natd(sa, v)] if side]
        if not nat and not inferred:
            continue
        stuck = [(sa, v) for sa, v in nat
                 if v.after_natd_on_500 and not v.floated and "tcp" not in v.transports]
        plain = [e for e in t.esp_sas if e.proto != "esp" or e.encap == "ip"]
        if inferred and not nat and not plain:
            continue  # without NAT-D only ESP in IP shows that NAT-T is missing
        if not stuck and not plain:
            continue
        why = []
        refs = []
        spis = []
        first = last = None
        if nat:
            sa, v = nat[0]
            sides = msg_join(" and ", [msg("{side} {ip}", side=Term(s),
                                           ip=ip_text(_side_ep(sa, s)[1])) for s in v.nat_sides])
            why.append(msg("NAT-D shows a NAT in front of the {sides} (IKE SA {sa}).",
                           sides=sides, sa=sa.id))
            refs += [tuple(r) for r in v.nat_d_frames]
            first = v.nat_d_ts
        else:
            sa, v, side = inferred[0]
            ep = _side_ep(sa, side)
            why.append(msg("The {side} {ep} sent IKE to port 500 from port {port}, not 500: a "
                           "NAPT translated it, and no NAT-D was exchanged (NAT-T not supported "
                           "or disabled on a peer).", side=Term(side), ep=endpoint_text(ep),
                           port=ep[2]))
            refs += list(sa.messages[0].frames)
            first = sa.messages[0].ts
        for sa, v in stuck:
            n = v.after_natd_on_500
            fr = ", ".join(str(r[1]) for r in v.after_natd_on_500_frames[:MAX_LISTED])
            why.append(msg("IKE stayed on UDP 500 after the NAT was detected: {n} message(s) of "
                           "IKE SA {sa} (frames {frames}).", n=n, sa=sa.id,
                           frames=fr + (', ...' if n > MAX_LISTED else '')))
            refs += [tuple(r) for r in v.after_natd_on_500_frames]
        if plain:
            esp_ip = [e for e in plain if e.proto == "esp"]
            ah = [e for e in plain if e.proto != "esp"]
            if esp_ip:
                pk = sum(e.packets for e in esp_ip)
                why.append(msg("ESP went as IP protocol 50, not UDP 4500: {n} SA(s), {pk} "
                               "packets (SPI {spis}).", n=len(esp_ip), pk=pk,
                               spis=", ".join(f"0x{e.spi:08x}" for e in esp_ip[:MAX_LISTED])))
            if ah:
                why.append(msg("AH was used ({n} SA(s)): AH authenticates the outer addresses "
                               "and cannot cross any NAT.", n=len(ah)))
            for e in plain:
                refs += [e.first_ref, e.last_ref]
                spis.append(e.spi)
                last = e.last_ts if last is None else max(last, e.last_ts)
        why.append(msg("A NAPT cannot translate ESP without UDP (there are no ports): RFC 7296 "
                       "§2.23 and RFC 3947 §4 move IKE and ESP to UDP 4500 once a NAT is "
                       "detected (RFC 3948)."))
        ike_part = _or([ike_filter(sa) for sa, _v in (stuck or nat[:1])]) if nat else \
            ike_filter(inferred[0][0])
        yield make(
            "NAT_T_NOT_USED", f"{t.id}|{bool(stuck)}|{bool(plain)}",
            title=(msg("NAT between {a} and {b} but ", a=ip_text(t.a), b=ip_text(t.b))
                   + (msg("IKE stays on UDP 500") if stuck else "")
                   + (msg(" and ") if stuck and plain else "")
                   + (msg("ESP goes as IP protocol 50")
                      if plain and any(e.proto == "esp" for e in plain)
                      else (msg("AH is used") if plain else ""))),
            detail=msg_join(" ", why),
            basis="observed" if nat else "inferred",
            evidence=ctx.evidence(refs, first, last, ike_spis=ike_spis(sa),
                                  esp_spis=[f"{s:08x}" for s in spis],
                                  peers=[ip_text(t.a), ip_text(t.b)]),
            wireshark_filter=_or([ike_part, esp_filter(spis) if spis else ""]),
            tunnel=t.id)
