"""Where the NATs are: NAT_DETECTED (a translation is visible at the capture point) or, when no
SA of the tunnel shows a real NAT, NAT_ENCAPSULATION_FORCED (a side fakes its NAT-D hash to force
UDP encapsulation)."""

from __future__ import annotations

from dissect.vpn.ip import Port
from pcapvpn.findings import Term, advice_for, declare, make, msg, msg_join, when
from pcapvpn.rules import rule
from pcapvpn.rules.common import endpoint_text, ike_filter, ike_spis, ip_text
from pcapvpn.rules.nat.common import OR_LIMIT, _annotate, _or, _other, _side_ep, _tunnel_verdicts
from pcapvpn.track.nat import HASH_NAMES, STANDARD_PORTS, on_custom_ports, port_translated

#: advice lines said in general in the registry and, for the sides of one finding, by
#: _advice_nat / _advice_forced (which then replace them: one line per fact)
_NAT_LOGS = ("strongSwan logs 'local host is behind NAT, sending keep alives' on the side behind "
             "the NAT and 'remote host is behind NAT' on its peer.")
_NAT_KEEPALIVES = ("Expect NAT keepalives (UDP 4500, one byte 0xFF) from the side behind the NAT "
                   "when the tunnel is idle, more often than the NAT's UDP timeout (strongSwan "
                   "charon.keep_alive, default 20 s).")
_FORCED_LOGS = ("strongSwan logs 'faking NAT situation to enforce UDP encapsulation' on the side "
                "that forces it.")

declare("NAT_DETECTED", "nat_traversal", "info",
        "NAT detection (NAT-D hashes recomputed against the addresses seen at the capture point) "
        "found a NAT between the peers: which side is behind it, and where the capture point "
        "sits (a faked NAT-D without a NAT is NAT_ENCAPSULATION_FORCED).",
        [when("Expect IKE and ESP on UDP 4500 from IKE_AUTH on (RFC 7296 §2.23).", version=2),
         when("Expect IKE and ESP on UDP 4500 from Main Mode message 5 / Aggressive Mode message "
              "3 on (RFC 3947 §4).", version=1),
         _NAT_KEEPALIVES, _NAT_LOGS],
        failure=False)
declare("NAT_ENCAPSULATION_FORCED", "nat_traversal", "info",
        "A peer's NAT_DETECTION_SOURCE_IP (IKEv1: source NAT-D) hash matches no address or port "
        "seen while nothing between it and the capture point translates anything: it fakes the "
        "hash to force UDP encapsulation (strongSwan encap = yes; kernel-libipsec always does "
        "it). Not a NAT, although both peers then log 'remote host is behind NAT'. Inferred from "
        "one vantage point: a 1:1 NAT keeping ports 500/4500 would look the same. Reported only "
        "when no SA of the tunnel shows a real NAT; beside a real NAT, NAT_DETECTED tells it.",
        ["Nothing to fix if UDP encapsulation is intended (encap = yes, kernel-libipsec, ESP "
         "filtered on the path).",
         _FORCED_LOGS],
        failure=False)


def _natd_filter(sa) -> str:
    if sa.version == 2:
        return f"{ike_filter(sa)} && isakmp.notify.msgtype in {{16388, 16389}}"
    return f"{ike_filter(sa)} && isakmp.ike.nat_hash"



def _esp_summary(t) -> str:
    n = {"udp": 0, "tcp": 0, "ip": 0}
    ah = 0
    for e in t.esp_sas:
        if e.proto != "esp":
            ah += 1
        elif e.encap in n:
            n[e.encap] += 1
    parts = []
    if n["udp"]:
        parts.append(msg("{n} UDP-encapsulated", n=n['udp']))
    if n["tcp"]:
        parts.append(msg("{n} in TCP (RFC 9329)", n=n['tcp']))
    if n["ip"]:
        parts.append(msg("{n} as IP protocol 50", n=n['ip']))
    if ah:
        parts.append(msg("{n} AH", n=ah))
    return (msg("ESP SAs: {parts}.", parts=msg_join(", ", parts)) if parts
            else msg("No ESP seen."))


def _ike_ports(sa) -> list[int]:
    """The UDP ports of the SA's IKE messages that have neither 500 nor 4500 on either side
    (custom IKE / NAT-T ports; a NAT's remapped ports meet 500/4500 on the other side), else
    []."""
    return sorted({p for m in sa.messages if on_custom_ports(m) for p in (m.sport, m.dport)})


def _ports_text(sa) -> str:
    """The IKE ports the text names: "500/4500", or the custom ones seen."""
    return "/".join(str(p) for p in (_ike_ports(sa) or STANDARD_PORTS))


def _float_text(ctx, v, sa) -> str:
    if "tcp" in v.transports and "udp" not in v.transports:
        return msg("IKE ran over TCP (RFC 9329).")
    if v.floated and _ike_ports(sa):
        # custom ports: the side that moved, from its port before to its port at the move
        m = next((m for m in sa.messages if list(m.ref) == v.float_frame), None)
        before = None if m is None else next(
            (p.sport for p in reversed(sa.messages) if p.n < m.n and p.src == m.src
             and p.transport == "udp"), None)
        if m is not None and before is not None and before != m.sport:
            side = "initiator" if m.from_initiator else "responder"
            return msg("IKE moved from UDP {old} to {new} (the {side}'s port) at frame {frame} "
                       "({t} s).", old=before, new=m.sport, side=Term(side),
                       frame=v.float_frame[1], t=ctx.rel(v.float_ts))
    if v.floated:
        return msg("IKE moved from UDP 500 to 4500 at frame {frame} ({t} s).",
                   frame=v.float_frame[1], t=ctx.rel(v.float_ts))
    if v.start_port == Port.NAT_T:
        return msg("IKE ran on UDP 4500 from the start.")
    if v.after_natd_on_500:
        return msg("IKE stayed on UDP 500 ({n} later messages).", n=v.after_natd_on_500)
    return ""


def _explain_nat(sa, v, forced=()) -> list[str]:
    """Sentences saying what the hashes showed about the real NATs; ``forced``: sides of the
    tunnel that also fake their source hash (told here: one NAT story per tunnel)."""
    src_name = "NAT_DETECTION_SOURCE_IP" if sa.version == 2 else msg("source NAT-D")
    out = []
    for side in v.nat_sides:
        st = getattr(v, side)
        ep = _side_ep(sa, side)
        seen = endpoint_text((ep[0], ep[1], v.ports.get(side, ep[2])))
        peer = Term(_other(side))
        side = Term(side)
        if st == "nat":
            s = msg("The {side}'s {src_name} hash does not match {seen} as seen here", side=side,
                    src_name=src_name, seen=seen)
            if side in v.translated_from:
                s += msg(" but {orig}, also in this capture (the translation)",
                         orig=v.translated_from[side])
            elif port_translated(v, str(side)):
                s += msg("; its source port {port} is not 500/4500 (the NAT translated it)",
                         port=v.ports[str(side)])
            elif str(side) in v.keepalive_sides:
                s += msg("; it sends NAT keepalives, as a host does when it finds itself "
                         "behind a NAT (RFC 3948 §2.3), so its NAT keeps the ports")
            out.append(s + msg(": the {side} is behind a NAT and this capture point is outside "
                               "it.", side=side))
        else:
            out.append(msg("The {peer}'s destination hash for the {side} does not match {seen}: "
                           "the {peer} sees the {side} at a translated address, so this capture "
                           "was taken between the {side} and its NAT.", peer=peer, side=side,
                           seen=seen))
    if forced:
        one = len(forced) == 1
        real = msg_join(" and the ", [Term(s) for s in v.nat_sides])
        out.append((msg("The {forced} also sends a {src_name} hash that matches no address or "
                        "port seen for it: it fakes it to force UDP encapsulation "
                        "(kernel-libipsec always does; strongSwan encap = yes). That is not "
                        "another NAT: only the NAT in front of the {real} is real, and it needs "
                        "UDP 4500 anyway.", forced=Term(forced[0]), src_name=src_name, real=real)
                    if one else
                    msg("The {forced} also send a {src_name} hash that matches no address or "
                        "port seen for them: they fake it to force UDP encapsulation "
                        "(kernel-libipsec always does; strongSwan encap = yes). That is not "
                        "another NAT: only the NAT in front of the {real} is real, and it needs "
                        "UDP 4500 anyway.", forced=msg_join(" and the ", [Term(s) for s in forced]),
                        src_name=src_name, real=real)))
    return out


def _explain_forced(sa, v) -> list[str]:
    src_name = "NAT_DETECTION_SOURCE_IP" if sa.version == 2 else msg("source NAT-D")
    forced = v.forced_sides
    if len(forced) > 1:
        s = msg("The {a}'s and the {b}'s {src_name} hashes match no address or port seen for "
                "this SA, while nothing between them and the capture point translates anything "
                "(ports {ports}, the same 4-tuple both ways): a faked hash that forces UDP "
                "encapsulation (strongSwan encap = yes, or kernel-libipsec which always does it)",
                a=Term(forced[0]), b=Term(forced[1]), src_name=src_name, ports=_ports_text(sa))
    else:
        s = msg("The {side}'s {src_name} hash matches no address or port seen for this SA, while "
                "nothing between it and the capture point translates anything (ports {ports}, "
                "the same 4-tuple both ways): a faked hash that forces UDP encapsulation "
                "(strongSwan encap = yes, or kernel-libipsec which always does it)",
                side=Term(forced[0]), src_name=src_name, ports=_ports_text(sa))
    if len(forced) == 2:
        s += msg("; both peers faking it is kernel-libipsec's signature (both then log 'remote "
                 "host is behind NAT'), not a NAT on each side.")
    elif getattr(v, forced[0]) == "forced":
        s += msg(" — inferred from one vantage point: a 1:1 NAT or port forwarding that keeps "
                 "ports 500/4500 in front of it would look the same.")
    else:
        s += "."
    return [s]


def _advice_forced(v, sa) -> list[str]:
    both = len(v.forced_sides) == 2
    return [
        "Not a NAT: strongSwan logs 'faking NAT situation to enforce UDP encapsulation' on the "
        "side that forces it" + (" — here both sides do (kernel-libipsec forces it on every SA), "
                                 "so both peers log 'remote host is behind NAT'" if both else
                                 " and its peer logs 'remote host is behind NAT'") + ".",
        msg("If neither encap = yes nor kernel-libipsec is configured on the {sides}, compare "
            "its own interface address with the one seen here: a 1:1 NAT keeping ports "
            "500/4500 gives the same picture.",
            sides=msg_join(" / ", [msg("{side} ({address})", side=Term(s),
                                       address=ip_text(_side_ep(sa, s)[1]))
                                   for s in v.forced_sides]))][:1 if both else 2]


def _advice_nat(v, sa) -> list[str]:
    adv = []
    for side in v.nat_sides:
        ip = ip_text(_side_ep(sa, side)[1])
        peer = ip_text(_side_ep(sa, _other(side))[1])
        if side in v.forced_sides:
            continue
        adv.append(f"strongSwan on the {side} ({ip}) logs 'local host is behind NAT, sending "
                   f"keep alives'; on the {_other(side)} ({peer}) 'remote host is behind NAT'.")
        adv.append(f"Expect NAT keepalives (UDP 4500, one byte 0xFF) from {ip} when the tunnel is "
                   f"idle, more often than the NAT's UDP timeout (strongSwan charon.keep_alive, "
                   f"default 20 s).")
    if v.capture_point.startswith("inside"):
        adv.append("This capture was taken inside a NAT: the translated addresses/ports the peer "
                   "sees are not in it — capture outside the NAT too to see them.")
    if "responder" in v.nat_sides:
        adv.append("The responder's NAT must forward UDP 500 and 4500 to it.")
    return adv


@rule
def nat_detected(ctx):
    """One NAT story per tunnel: a real NAT (NAT_DETECTED, observed: a translation is visible —
    a NAT-D hash of another address or port seen here, a remapped port, a 4-tuple that differs
    between the directions, or a capture point inside the NAT) or, when no SA of the tunnel shows
    one, a side faking its source hash (NAT_ENCAPSULATION_FORCED, inferred).  A side that fakes
    its hash beside a real NAT (kernel-libipsec does on every SA) is told in NAT_DETECTED."""
    _annotate(ctx)
    for t in ctx.state.tunnels:
        groups: dict = {}
        forced_sides: list = []
        for sa, v in _tunnel_verdicts(t, ctx):
            if v.kind not in ("initiator", "responder", "both", "forced"):
                continue
            if v.nat_sides:
                key = ("nat", v.kind, v.initiator, v.responder, v.capture_point)
                groups.setdefault(key, []).append((sa, v))
            if v.forced_sides:
                key = ("forced", tuple(v.forced_sides))
                groups.setdefault(key, []).append((sa, v))
                forced_sides += [s for s in v.forced_sides if s not in forced_sides]
        if any(k[0] == "nat" for k in groups):
            groups = {k: items for k, items in groups.items() if k[0] == "nat"}
        forced_sides.sort(key=("initiator", "responder").index)
        for key, items in groups.items():
            sa, v = items[0]
            # the frames of the SAs the filter names (at most OR_LIMIT)
            refs = [tuple(r) for _sa, vv in items[:OR_LIMIT] for r in vv.nat_d_frames]
            ts = [vv.nat_d_ts for _sa, vv in items if vv.nat_d_ts is not None]
            if key[0] == "forced":
                who = msg_join(" and ", [msg("{side} {ip}", side=Term(s),
                                             ip=ip_text(_side_ep(sa, s)[1]))
                                         for s in v.forced_sides])
                title = msg("UDP encapsulation forced (inferred): fake NAT-D from the {who}",
                            who=who)
                if not v.nat_sides:
                    title += msg(", no NAT")
                basis = "inferred"
                explain = _explain_forced(sa, v)
                advice = _advice_forced(v, sa)
            else:
                cp = v.capture_point
                who = msg_join(" and ", [msg("{side} {ip}", side=Term(s),
                                             ip=ip_text(_side_ep(sa, s)[1]))
                                         for s in v.nat_sides])
                title = (msg("NAT: the {who} are behind a NAT", who=who) if len(v.nat_sides) > 1
                         else msg("NAT: the {who} is behind a NAT", who=who))
                if cp == "inside_initiator_nat":
                    title += msg(" (capture taken inside the initiator's NAT)")
                elif cp == "inside_responder_nat":
                    title += msg(" (capture taken inside the responder's NAT)")
                basis = "observed"
                explain = _explain_nat(sa, v, forced_sides)
                advice = _advice_nat(v, sa)
            alg = HASH_NAMES.get(v.hash_alg, v.hash_alg)
            detail = [msg("NAT-D hashes ({alg}) recomputed over the addresses and ports seen "
                          "here for IKE SA {sa}", alg=alg, sa=sa.id)
                      + (msg(" and {n} more", n=len(items) - 1) if len(items) > 1 else "") + "."]
            detail += explain
            detail += [s for s in (_float_text(ctx, v, sa), _esp_summary(t)) if s]
            detail += [Term(n) for n in v.notes if "forced encapsulation (inferred)" not in n]
            code = "NAT_ENCAPSULATION_FORCED" if key[0] == "forced" else "NAT_DETECTED"
            yield make(
                code, t.id + "|" + "|".join(str(k) for k in key),
                title=title, detail=msg_join(" ", detail), basis=basis,
                evidence=ctx.evidence(refs, min(ts) if ts else None, max(ts) if ts else None,
                                      ike_spis=ike_spis(sa),
                                      peers=[endpoint_text(sa.initiator),
                                             endpoint_text(sa.responder)]),
                wireshark_filter=_or([_natd_filter(s) for s, _v in items]),
                advice=advice + _general_advice(code, sa, advice),
                tunnel=t.id)


def _general_advice(code, sa, specific) -> list[str]:
    """The registry's advice for the finding's IKE version, less the general lines that the
    lines built for its sides already say (one line per fact)."""
    said = set()
    if code == "NAT_ENCAPSULATION_FORCED":
        said.add(_FORCED_LOGS)
    elif any("'local host is behind NAT" in a for a in specific):
        said.update((_NAT_LOGS, _NAT_KEEPALIVES))
    return [a for a in advice_for(code, {"version": sa.version}) if a not in said]
