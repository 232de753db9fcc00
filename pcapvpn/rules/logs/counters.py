"""Counters vs. packets (LOG_SA_NOTHING_SENT, LOG_SA_NO_REPLIES, LOG_SA_ESP_LOST): a gateway's
per-SA status counters against the ESP counted on the wire for the same SPI."""

from __future__ import annotations

from pcapvpn.findings import Term, declare, make, msg, msg_join
from pcapvpn.rules.logs.common import _count, _wire, ref
from pcapvpn.track.logs import _norm

declare(
    "LOG_SA_NOTHING_SENT", "dataplane", "warning",
    "The gateway's status output shows an installed IPsec SA that encapsulated no packet "
    "(pkts encaps 0 / out 0 packets), and the capture shows no ESP on its outbound SPI: nothing "
    "is routed into the tunnel on this side.",
    ["Check that traffic for the remote subnets reaches this gateway and matches the crypto ACL "
     "/ traffic selectors (mask, both directions, typos).",
     "Check the routes towards the tunnel and NAT exemption (traffic NATed before it reaches "
     "the policy no longer matches it)."],
    failure=False)
declare(
    "LOG_SA_NO_REPLIES", "inner", "warning",
    "The gateway decapsulated packets from the peer (pkts decaps / in rising) but sent none "
    "back into the tunnel: the hosts behind it do not answer, or their replies are routed "
    "elsewhere (no route back to the remote subnet through this gateway).",
    ["Check routing behind the gateway: the reply path to the remote subnet must lead back to "
     "this gateway (default route, asymmetric routing, a second router).",
     "Check a firewall on the inside hosts and on the gateway's inside interface."],
    failure=False)
declare(
    "LOG_SA_ESP_LOST", "dataplane", "warning",
    "The gateway counted ESP packets on an SA that the capture does not show: they were lost "
    "between the gateway and the capture point (or, counted as received, between the capture "
    "point and the gateway).",
    ["Compare with a capture on the gateway's own outside interface to find the hop that drops "
     "ESP (firewalls, NAT devices without ESP/NAT-T support, ACLs).",
     "If the capture point sees only part of the traffic (mirror port, filter), the difference "
     "may be the capture's: check it first."],
    failure=False)


def _sends_elsewhere(li, linked) -> bool:
    """Another SA of the same gateway towards the same peer (or tunnel) sent packets: this one
    is idle (a duplicate or replaced child SA), not the tunnel's only way out."""
    me = li.ent.ev
    key = li.tunnel or _norm(me.peer)
    for o in linked:
        ev = o.ent.ev
        if o is li or o.src is not li.src or ev.kind != "sa_counters" or not ev.counters:
            continue
        if (o.tunnel or _norm(ev.peer)) == key and (_count(ev.counters, "out") or 0) > 0:
            return True
    return False


def _counters(ctx, findings, linked, used) -> list:
    out = []
    wire = _wire(ctx)
    for li in linked:
        ev = li.ent.ev
        if ev.kind != "sa_counters" or not ev.counters:
            continue
        c = ev.counters
        spi_out, spi_in = c.get("spi_out"), c.get("spi_in")
        n_out, n_in = _count(c, "out"), _count(c, "in")
        if spi_out is None or spi_in is None or n_out is None or n_in is None:
            continue
        w_out = sum(x.packets for x in wire.get(spi_out, ()))
        w_in = sum(x.packets for x in wire.get(spi_in, ()))
        unit = Term("packets" if "packets_out" in c or "pkts_encaps" in c else "bytes")
        where = f"{li.src.name}:{ev.line}"
        r = ref(ctx, li)
        base = msg("{where}: the SA with SPIs {spi_in} (in) / {spi_out} (out) counts {n_out} "
                   "{unit} sent and {n_in} {unit} received; the capture shows {w_out} ESP "
                   "packet(s) on SPI {spi_out} and {w_in} on SPI {spi_in}.", where=where,
                   spi_in=spi_in, spi_out=spi_out, n_out=n_out, unit=unit, n_in=n_in,
                   w_out=w_out, w_in=w_in)
        refs = _esp_refs(list(wire.get(spi_out, ())) + list(wire.get(spi_in, ())))
        ev_ = ctx.evidence(refs, esp_spis=[s for s in (spi_in, spi_out)
                                           if wire.get(s)], peers=[p for p in (
                                               _norm(ev.local), _norm(ev.peer)) if p])
        tunnel = li.tunnel
        if n_out == 0 and w_out == 0:
            if _sends_elsewhere(li, linked):
                continue
            if n_in > 0:
                f = make("LOG_SA_NO_REPLIES", f"noreply|{where}|{spi_out}",
                         title=msg("{log}: ESP received on SPI {spi_in} but nothing sent back "
                                   "on SPI {spi_out}", log=li.src.name, spi_in=spi_in,
                                   spi_out=spi_out),
                         detail=base + msg(" Packets from the peer arrive and are decapsulated, "
                                           "but no reply enters the tunnel: routing behind the "
                                           "gateway."),
                         basis="log", evidence=ev_, tunnel=tunnel,
                         wireshark_filter=_esp_filter([spi_in, spi_out]))
            else:
                f = make("LOG_SA_NOTHING_SENT", f"nothing|{where}|{spi_out}",
                         title=msg("{log}: no packet entered the tunnel (SPI {spi_out}: 0 "
                                   "{unit})", log=li.src.name, spi_out=spi_out, unit=unit),
                         detail=base + msg(" Nothing is routed into the tunnel (crypto ACL / "
                                           "traffic selectors, routes)."),
                         basis="log", evidence=ev_, tunnel=tunnel,
                         wireshark_filter=_esp_filter([spi_in, spi_out]))
            f.logs = [r]
            used.add(id(li.ent))
            out.append(f)
            continue
        if unit != "packets":
            continue
        lost_out = n_out - w_out if n_out > w_out and _covers(ctx, wire.get(spi_out, ())) else 0
        if n_out > 0 and w_out == 0:
            lost_out = n_out
        lost_in = w_in - n_in if w_in > n_in else 0
        if lost_out > 0 or lost_in > 0:
            parts = []
            if lost_out:
                parts.append(msg("{n} of the {total} packets the gateway sent on SPI {spi} are "
                                 "not in the capture: lost between the gateway and the capture "
                                 "point", n=lost_out, total=n_out, spi=spi_out))
            if lost_in:
                parts.append(msg("{n} of the {total} packets the capture shows on SPI {spi} were "
                                 "not counted by the gateway: lost between the capture point and "
                                 "the gateway (or dropped by it)", n=lost_in, total=w_in,
                                 spi=spi_in))
            f = make("LOG_SA_ESP_LOST", f"lost|{where}|{spi_out}",
                     title=msg("{log}: ESP counted by the gateway but missing on the wire (SPI "
                               "{spi})", log=li.src.name, spi=spi_out if lost_out else spi_in),
                     detail=base + " " + msg_join("; ", parts) + ".",
                     basis="log", evidence=ev_, tunnel=tunnel,
                     wireshark_filter=_esp_filter([spi_in, spi_out]))
            f.logs = [r]
            used.add(id(li.ent))
            out.append(f)
    return out


def _covers(ctx, sas) -> bool:
    """The capture saw the SA from its first packet (sequence number 1)."""
    return any(getattr(x, "starts_at_one", False) for x in sas)


def _esp_refs(sas) -> list:
    refs = []
    for x in sas:
        refs.extend(getattr(x, "first_refs", ())[:5])
    return refs


def _esp_filter(spis) -> str:
    from pcapvpn.rules.common import esp_filter

    return esp_filter([int(s, 16) for s in spis])
