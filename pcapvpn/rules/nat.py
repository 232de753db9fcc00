"""NAT traversal (stage ``nat_traversal``): where the NATs are, whether NAT-T is used across them,
whether the NAT mappings are kept alive, and whether they changed during an SA.

The facts come from :mod:`pcapvpn.track.nat` (``sa.nat``: the NAT-D hashes recomputed against the
addresses seen at the capture point, the 500→4500 move, source changes of IKE messages), the ESP
SAs (``encap``, their source changes ``moves``, time bins) and the NAT keepalive flows.  No bytes
are parsed here.

Protocol background: RFC 7296 §2.23 (IKEv2 NAT traversal: once a NAT is detected "all future IKE
and ESP packets" go over UDP 4500), RFC 3947 (IKEv1 NAT-D, the move to 4500), RFC 3948 (UDP
encapsulation of ESP, NAT keepalives sent by the peer behind the NAT, §4), RFC 3715 §2.1 (AH cannot
cross a NAT; ESP without UDP cannot cross a NAPT).  A faked NAT-D that only forces UDP
encapsulation (strongSwan encap = yes, kernel-libipsec) is not a NAT: it is reported as
``NAT_ENCAPSULATION_FORCED``, never as ``NAT_DETECTED``.  ``NAT_T_BLOCKED`` (4500 never
answered) is a reachability rule (it competes with IKE_NO_RESPONSE).
"""

from __future__ import annotations

from bisect import bisect_right

import ipaddress

from dissect.vpn.ip import Port
from dissect.vpn.registry import ExchangeType, PayloadV2
from pcapvpn.findings import Term, advice_for, declare, make, msg, msg_join, when
from pcapvpn.rules import rule
from pcapvpn.rules.common import endpoint_text, host_filter, ike_filter, ip_text
from pcapvpn.track.nat import HASH_NAMES, STANDARD_PORTS, annotate, ensure_verdict

#: at most this many SAs / changes are spelled out in a detail (all are counted)
MAX_LISTED = 5
_WHAT = {"esp": "ESP", "ike": "IKE", "keepalive": "NAT keepalive", "delete": "IKE",
         "init": "IKE"}
#: seconds: a source change this soon after a long silence is blamed on the silence
_AFTER_GAP = 30.0

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
declare("NAT_KEEPALIVE_MISSING", "nat_traversal", "warning",
        "A peer behind a NAT let the tunnel go idle longer than the keepalive threshold (no NAT "
        "keepalive, no ESP, no IKE either way) before traffic resumed: the NAT mapping may have "
        "expired, so the other peer could not reach it and its next packets may come from a new "
        "port.",
        ["Make the side behind the NAT send NAT keepalives (RFC 3948 §4) more often than the NAT's "
         "UDP timeout: strongSwan charon.keep_alive (default 20 s), Cisco 'crypto isakmp "
         "nat keepalive', libreswan keep-alive.",
         "Or raise the UDP timeout for 4500 on the NAT device, or enable DPD so a lost mapping is "
         "noticed and the tunnel re-established."])
declare("NAT_MAPPING_CHANGED", "nat_traversal", "warning",
        "The source address or port of a peer behind a NAT changed in the middle of an SA (IKE or "
        "ESP): the NAT created a new mapping (timeout of the old one, NAT restart, carrier-grade "
        "NAT re-mapping) or the client roamed to another network.",
        ["Check the NAT's UDP timeout against the keepalive interval (strongSwan charon.keep_alive,"
         " default 20 s) and keep the mapping alive.",
         "The peer not behind the NAT must follow the new address/port (RFC 7296 §2.23, RFC 3948): "
         "if it keeps sending to the old one, traffic to the NATed peer is lost until DPD or a "
         "rekey; for roaming clients use MOBIKE (RFC 4555).",
         "With carrier-grade NAT, prefer the client initiating and frequent keepalives."])


# -- small helpers -----------------------------------------------------------------------------


def _side_ep(sa, side):
    return sa.initiator if side == "initiator" else sa.responder


def _other(side):
    return "responder" if side == "initiator" else "initiator"


def _spis(sa):
    return [bytes(sa.ispi).hex(), bytes(sa.rspi).hex()]


def _packed(text):
    return ipaddress.ip_address(text).packed


def _esp_moves(e):
    """(ts, ref, src, sport) source changes of an ESP SA (``moves`` in track/esp.py)."""
    moves = getattr(e, "src_changes", None)
    if moves is None:
        moves = getattr(e, "moves", None)
    return list(moves or ())


def _tunnel_verdicts(t):
    return [(sa, ensure_verdict(sa)) for sa in t.ike_sas if sa.initiator is not None]


def _annotate(ctx) -> None:
    """NAT verdicts for every IKE SA, once per context (the tracker may have done it)."""
    ctx.memo("nat", lambda: annotate(ctx.state.ike_sas) or True)


def _nat_sides(verdicts) -> dict:
    """side -> set of packed addresses of that side, for sides behind a real NAT."""
    out: dict = {}
    for sa, v in verdicts:
        for side in v.nat_sides:
            out.setdefault(side, set()).add(_side_ep(sa, side)[1])
            for c in v.endpoint_changes:
                if c["side"] == side:
                    out[side].add(_packed(c["new_addr"]))
    return out


def _natd_filter(sa) -> str:
    if sa.version == 2:
        return f"{ike_filter(sa)} && isakmp.notify.msgtype in {{16388, 16389}}"
    return f"{ike_filter(sa)} && isakmp.ike.nat_hash"


def esp_filter(spis) -> str:
    """``esp.spi == 0x...`` / ``esp.spi in {0x..., 0x...}`` (tshark 4.0 wants commas in sets)."""
    spis = sorted(set(spis))
    if len(spis) == 1:
        return f"esp.spi == 0x{spis[0]:08x}"
    return "esp.spi in {" + ", ".join(f"0x{s:08x}" for s in spis) + "}"


def _or(parts, limit=8) -> str:
    parts = [p for p in parts if p][:limit]
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0]
    return " || ".join(f"({p})" for p in parts)


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


def _float_text(ctx, v) -> str:
    if "tcp" in v.transports and "udp" not in v.transports:
        return msg("IKE ran over TCP (RFC 9329).")
    if v.floated:
        return msg("IKE moved from UDP 500 to 4500 at frame {frame} ({t} s).",
                   frame=v.float_frame[1], t=ctx.rel(v.float_ts))
    if v.start_port == Port.NAT_T:
        return msg("IKE ran on UDP 4500 from the start.")
    if v.after_natd_on_500:
        return msg("IKE stayed on UDP 500 ({n} later messages).", n=v.after_natd_on_500)
    return ""


# -- NAT_DETECTED ------------------------------------------------------------------------------


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
            elif v.ports.get(side) is not None and v.ports[side] not in STANDARD_PORTS:
                s += msg("; its source port {port} is not 500/4500 (the NAT translated it)",
                         port=v.ports[side])
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
                "(ports 500/4500, the same 4-tuple both ways): a faked hash that forces UDP "
                "encapsulation (strongSwan encap = yes, or kernel-libipsec which always does it)",
                a=Term(forced[0]), b=Term(forced[1]), src_name=src_name)
    else:
        s = msg("The {side}'s {src_name} hash matches no address or port seen for this SA, while "
                "nothing between it and the capture point translates anything (ports 500/4500, "
                "the same 4-tuple both ways): a faked hash that forces UDP encapsulation "
                "(strongSwan encap = yes, or kernel-libipsec which always does it)",
                side=Term(forced[0]), src_name=src_name)
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
        for sa, v in _tunnel_verdicts(t):
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
            refs = [tuple(r) for _sa, vv in items for r in vv.nat_d_frames]
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
            detail += [s for s in (_float_text(ctx, v), _esp_summary(t)) if s]
            detail += [Term(n) for n in v.notes if "forced encapsulation (inferred)" not in n]
            code = "NAT_ENCAPSULATION_FORCED" if key[0] == "forced" else "NAT_DETECTED"
            yield make(
                code, t.id + "|" + "|".join(str(k) for k in key),
                title=title, detail=msg_join(" ", detail), basis=basis,
                evidence=ctx.evidence(refs, min(ts) if ts else None, max(ts) if ts else None,
                                      ike_spis=_spis(sa),
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


# -- NAT_T_NOT_USED ----------------------------------------------------------------------------


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
        verdicts = _tunnel_verdicts(t)
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
            evidence=ctx.evidence(refs, first, last, ike_spis=_spis(sa),
                                  esp_spis=[f"{s:08x}" for s in spis],
                                  peers=[ip_text(t.a), ip_text(t.b)]),
            wireshark_filter=_or([ike_part, esp_filter(spis) if spis else ""]),
            tunnel=t.id)


# -- activity timeline (keepalives, mapping changes) -------------------------------------------


def _esp_intervals(e):
    """Active periods of an ESP SA from its time bins (a whole bin counts as active: the gaps
    found between them are never longer than the real ones)."""
    try:
        counts = e.bin_counts()
        base, width = e.bin_base, e.bin_width
    except AttributeError:
        return [(e.first_ts, e.last_ts, e.first_ref, e.last_ref)]
    out = []
    cur = None
    for i, c in enumerate(counts):
        if not c:
            cur = None
            continue
        s = max(base + i * width, e.first_ts)
        end = min(base + (i + 1) * width, e.last_ts)
        if cur is not None:
            cur[1] = end
        else:
            cur = [s, end, None, None]
            out.append(cur)
    if not out:
        return [(e.first_ts, e.last_ts, e.first_ref, e.last_ref)]
    out[0][2] = e.first_ref
    out[-1][3] = e.last_ref
    return [tuple(x) for x in out]


def _keepalive_intervals(f):
    """A keepalive flow is active from its first to its last keepalive except in its long gaps."""
    out = []
    s, r0 = f.first_ts, f.first_ref
    for gs, ge, ra, rb in sorted(f.long_gaps):
        out.append((s, gs, r0, ra))
        s, r0 = ge, rb
    out.append((s, f.last_ts, r0, f.last_ref))
    return out


def _timeline(ctx, t, flows):
    """Activity of the tunnel in both directions: (start, end, ref at start, ref at end, what
    starts it).  ``what`` is "init" for a message that starts a new IKE SA (then a silence
    before it is between SAs, not inside one), "delete" for a message that ends one."""
    iv = []
    for sa in t.ike_sas:
        for m in sa.messages:
            if m.exch == ExchangeType.IKE_SA_INIT or (m.version == 1 and m.step == 1 and m.exch in (
                    ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE)):
                what = "init"
            elif m.deletes or (m.version == 2 and m.exch == ExchangeType.INFORMATIONAL
                               and m.sk_next == PayloadV2.D):
                what = "delete"
            else:
                what = "ike"
            iv.append((m.ts, m.ts, m.ref, m.ref, what))
    for e in t.esp_sas:
        for s, end, r0, r1 in _esp_intervals(e):
            iv.append((s, end, r0, r1, "esp"))
    for f in flows:
        for s, end, r0, r1 in _keepalive_intervals(f):
            iv.append((s, end, r0, r1, "keepalive"))
    iv.sort(key=lambda x: (x[0], x[1]))
    return iv


def _gaps(iv, start, limit):
    """Silences longer than ``limit`` after ``start``: (gap start, gap end, ref before, ref after,
    what resumed, what ended before)."""
    out = []
    end = None
    ref_end = None
    what_end = None
    for s, e, r0, r1, what in iv:
        if e < start:
            continue
        if end is not None and s - end > limit:
            out.append((end, s, ref_end, r0, what, what_end))
        if end is None or e >= end:
            end, ref_end, what_end = e, r1, what
    return out


def _points(t, flows):
    """(ts, ref) of the frames whose time is known: IKE messages, first/last packets and source
    changes of ESP SAs, first/last keepalives and those around their long gaps."""
    pts = []
    for sa in t.ike_sas:
        pts += [(m.ts, m.ref) for m in sa.messages]
    for e in t.esp_sas:
        pts += [(e.first_ts, e.first_ref), (e.last_ts, e.last_ref)]
        pts += [(ts, ref) for ts, ref, _s, _p in _esp_moves(e)]
    for f in flows:
        pts += [(f.first_ts, f.first_ref), (f.last_ts, f.last_ref)]
        pts += [(a, ra) for a, _b, ra, _rb in f.long_gaps]
        pts += [(b, rb) for _a, b, _ra, rb in f.long_gaps]
    return sorted((p for p in pts if p[1] is not None), key=lambda p: p[0])


def _around(pts, gs, ge):
    """The last known frame at or before ``gs`` and the first at or after ``ge``."""
    before = [p for p in pts if p[0] <= gs + 1e-6]
    after = [p for p in pts if p[0] >= ge - 1e-6]
    return (before[-1] if before else None), (after[0] if after else None)


def _nat_t_start(verdicts, t):
    ts = [v.float_ts for _sa, v in verdicts if v.float_ts is not None]
    ts += [v.nat_d_ts for _sa, v in verdicts
           if v.nat_d_ts is not None and v.start_port == Port.NAT_T]
    ts += [e.first_ts for e in t.esp_sas if e.encap == "udp"]
    return min(ts) if ts else None


def _flows_between(ctx, t):
    ends = (t.a, t.b)
    return [f for f in ctx.state.keepalives
            if f.src in ends and f.dst in ends and f.src != f.dst]


# -- NAT_KEEPALIVE_MISSING ---------------------------------------------------------------------


@rule
def nat_keepalive_missing(ctx):
    _annotate(ctx)
    limit = ctx.th.keepalive_max_interval
    for t in ctx.state.tunnels:
        verdicts = _tunnel_verdicts(t)
        sides = _nat_sides(verdicts)
        if not sides:
            continue
        start = _nat_t_start(verdicts, t)
        if start is None:
            continue  # NAT-T not in use: NAT_T_NOT_USED says it
        flows = _flows_between(ctx, t)
        gaps = [g for g in _gaps(_timeline(ctx, t, flows), start, limit)
                if g[4] != "init" and g[5] != "delete"]
        if not gaps:
            continue
        longest = max(gaps, key=lambda g: g[1] - g[0])
        changes = _changes(ctx, t, verdicts, sides)
        pts = _points(t, flows)
        for side, addrs in sorted(sides.items()):
            mine = [f for f in flows if f.src in addrs]
            ip = ", ".join(sorted(ip_text(a) for a in addrs))
            gs, ge, rb, ra, resumed, _w = longest
            detail = msg("The {side} {ip} is behind a NAT, but the tunnel carried nothing for at "
                         "least {idle:.1f} s ({t0} s → {t1} s): no NAT keepalive, no ESP, no IKE "
                         "in either direction; then {what} traffic resumed", side=Term(side),
                         ip=ip, idle=ge - gs, t0=ctx.rel(gs), t1=ctx.rel(ge),
                         what=Term(_WHAT.get(resumed, resumed)))
            detail += (msg(" (frame {frame}).", frame=ra[1]) if ra else ".")
            if len(gaps) > 1:
                detail += msg(" {n} such silences in all.", n=len(gaps))
            if mine:
                n = sum(f.count for f in mine)
                med = [f.median_interval for f in mine if f.median_interval is not None]
                mx = [f.max_interval for f in mine if f.max_interval is not None]
                detail += (msg(" {ip} sent {n} NAT keepalive(s)", ip=ip, n=n)
                           + (msg(", median interval {med:.1f} s, longest {mx:.1f} s",
                                  med=min(med), mx=max(mx)) if med else "") + ".")
            else:
                detail += msg(" {ip} sent no NAT keepalive at all (RFC 3948 §4: the peer behind "
                              "the NAT sends them).", ip=ip)
            detail += msg(" NAT UDP mappings commonly expire after 30-120 s (threshold "
                          "keepalive_max_interval = {limit:g} s).", limit=limit)
            c = _first_after(changes, side, gaps)
            if c is not None:
                detail += msg(" Its source changed right after ({old} → {new} at frame {frame}): "
                              "the mapping had likely expired.", old=c[3], new=c[4],
                              frame=c[2][1])
            refs = []
            lo, hi = gs, ge
            for g in [longest] + [g for g in gaps[:MAX_LISTED] if g is not longest]:
                b, a = _around(pts, g[0], g[1])
                for p in (b, a):
                    if p is not None:
                        refs.append(p[1])
                if g is longest:
                    lo = b[0] if b else gs
                    hi = a[0] if a else ge
            for f in mine:
                refs += f.refs[:3]
            fld = "ip" if t.ipver == 4 else "ipv6"
            wf = (f"{host_filter(t.ipver, t.a, t.b)} && frame.time_relative >= "
                  f"{max(0.0, ctx.rel(lo) - 0.001):.3f} && frame.time_relative <= "
                  f"{ctx.rel(hi) + 0.001:.3f}")
            if mine:
                wf = _or([wf, f"{fld}.src == {ip_text(sorted(addrs)[0])} && "
                              f"udpencap.nat_keepalive"])
            yield make(
                "NAT_KEEPALIVE_MISSING", f"{t.id}|{side}",
                title=msg("{ip} (behind NAT) left the tunnel idle {idle:.0f} s without "
                          "keepalives", ip=ip, idle=ge - gs),
                detail=detail,
                evidence=ctx.evidence(refs, gs, ge, peers=[ip_text(t.a), ip_text(t.b)]),
                wireshark_filter=wf, tunnel=t.id)


def _first_after(changes, side, gaps):
    """The first change of ``side`` at most ``_AFTER_GAP`` s after the end of one of ``gaps``
    (whose ends never decrease), or None."""
    for c in changes:
        if c[0] != side:
            continue
        i = bisect_right(gaps, c[1] + 1e-6, key=lambda g: g[1]) - 1
        if i >= 0 and c[1] - gaps[i][1] <= _AFTER_GAP:
            return c
    return None


# -- NAT_MAPPING_CHANGED -----------------------------------------------------------------------


def _changes(ctx, t, verdicts, sides):
    """(side, ts, ref, old, new, what, sa or esp) of sources that moved during an SA, for sides
    behind a NAT (or, without NAT-D, when a port other than 500/4500 is involved)."""
    out = []
    for sa, v in verdicts:
        for c in v.endpoint_changes:
            side = c["side"]
            if side in sides or c["old_port"] not in STANDARD_PORTS \
                    or c["new_port"] not in STANDARD_PORTS:
                out.append((side, c["ts"], tuple(c["frame"]), c["old"], c["new"], "IKE", sa))
    ini = {sa.initiator[1] for sa, _v in verdicts}
    rsp = {sa.responder[1] for sa, _v in verdicts}
    for e in t.esp_sas:
        moves = _esp_moves(e)
        if not moves:
            continue
        side = "initiator" if e.src in ini else ("responder" if e.src in rsp else None)
        prev = (e.src, e.sport)
        for ts, ref, src, sport in moves:
            old = endpoint_text((e.ipver, prev[0], prev[1]))
            new = endpoint_text((e.ipver, src, sport))
            nat_side = side in sides if side else False
            if nat_side or (sport >= 0 and (sport not in STANDARD_PORTS
                                             or prev[1] not in STANDARD_PORTS)):
                out.append((side or "peer", ts, tuple(ref), old, new,
                            f"ESP SPI 0x{e.spi:08x}", e))
            prev = (src, sport)
    out.sort(key=lambda c: c[1])
    return out


@rule
def nat_mapping_changed(ctx):
    _annotate(ctx)
    limit = ctx.th.keepalive_max_interval
    for t in ctx.state.tunnels:
        verdicts = _tunnel_verdicts(t)
        sides = _nat_sides(verdicts)
        changes = _changes(ctx, t, verdicts, sides)
        if not changes:
            continue
        flows = _flows_between(ctx, t)
        iv = _timeline(ctx, t, flows)
        silences = _gaps(iv, float("-inf"), limit)
        by_side: dict = {}
        for c in changes:
            by_side.setdefault(c[0], []).append(c)
        for side, cs in by_side.items():
            # the same move seen in IKE and in ESP (and on several SPIs) is one change
            moves: dict = {}
            for c in cs:
                moves.setdefault((c[3], c[4]), []).append(c)
            lines = []
            refs = []
            ike_sas = []
            esp_spis = []
            seen_sas = set()
            seen_spis = set()
            for (old, new), seen in moves.items():
                if len(lines) < MAX_LISTED:  # only the listed moves are described
                    ts, ref = seen[0][1], seen[0][2]
                    what = ", ".join(dict.fromkeys(c[5] for c in seen))
                    idle = _idle_before(silences, ts)
                    line = msg("{old} → {new} at {t} s (frame {frame}; seen in {what})", old=old,
                               new=new, t=ctx.rel(ts), frame=ref[1], what=what)
                    if idle is not None:
                        line += msg(" after {idle:.0f} s of silence (NAT mapping timeout likely)",
                                    idle=idle)
                    for c in seen:
                        if c[5] == "IKE":
                            follow = _followed(c[6], c)
                            if follow:
                                line += msg("; {follow}", follow=Term(follow))
                                break
                    lines.append(line)
                for c in seen:
                    refs.append(c[2])
                    if c[5] == "IKE":
                        if id(c[6]) not in seen_sas:
                            seen_sas.add(id(c[6]))
                            ike_sas.append(c[6])
                    elif c[6].spi not in seen_spis:
                        seen_spis.add(c[6].spi)
                        esp_spis.append(c[6].spi)
            n = len(moves)
            addr_changed = any(_host(c[3]) != _host(c[4]) for c in cs)
            cause = (msg("the NAT's public address changed (carrier-grade NAT pool, NAT restart) "
                         "or the client roamed to another network") if addr_changed else
                     msg("the NAT created a new mapping (the old one timed out, or the NAT "
                         "restarted)"))
            ip = ", ".join(sorted({_host(c[3]) for c in cs}))
            behind = msg("behind a NAT") if side in sides else msg("(port translated)")
            detail = (msg("The {side} {ip} {behind} changed its source {n} time(s) during the SA: "
                          "{lines}", side=Term(side), ip=ip, behind=behind, n=n,
                          lines=msg_join("; ", lines))
                      + ("; ..." if n > MAX_LISTED else "")
                      + msg(". Typical cause: {cause}.", cause=cause))
            wf = _or([ike_filter(sa) for sa in ike_sas[:4]]
                     + ([esp_filter(esp_spis)] if esp_spis else []))
            spis = _spis(ike_sas[0]) if ike_sas else []
            yield make(
                "NAT_MAPPING_CHANGED", f"{t.id}|{side}",
                title=msg("NAT mapping of the {side} {ip} changed mid-SA ({what}, {n}x, first at "
                          "{t} s)", side=Term(side), ip=ip,
                          what=msg("address") if addr_changed else msg("port"), n=n,
                          t=ctx.rel(cs[0][1])),
                detail=detail,
                evidence=ctx.evidence(refs, cs[0][1], cs[-1][1], ike_spis=spis,
                                      esp_spis=[f"{s:08x}" for s in esp_spis],
                                      peers=[ip_text(t.a), ip_text(t.b)]),
                wireshark_filter=wf, tunnel=t.id)


def _host(ep_text: str) -> str:
    """``192.0.2.1:4500`` / ``[2001:db8::1]:4500`` → the address part."""
    if ep_text.startswith("["):
        return ep_text[1:ep_text.index("]")]
    return ep_text.rsplit(":", 1)[0]


def _idle_before(silences, ts) -> float | None:
    """Length of a silence (``_gaps`` of the timeline: in order, their ends never decrease)
    that ended at most ``_AFTER_GAP`` s before ``ts`` (the traffic that ended it may be the
    moved packet itself), the last such; else None.  A bisection: a tunnel can move often."""
    i = bisect_right(silences, ts + 1e-6, key=lambda g: g[1]) - 1
    if i >= 0 and ts - silences[i][1] <= _AFTER_GAP:
        return silences[i][1] - silences[i][0]
    return None


def _followed(sa, change) -> str | None:
    """Did the peer send IKE to the new source afterwards, or keep using the old one?"""
    _side, ts, _ref, old, new, _what, _obj = change
    to_new = to_old = 0
    for m in sa.messages:
        if m.ts <= ts:
            continue
        dst = endpoint_text((m.ipver, m.dst, m.dport))
        if dst == new:
            to_new += 1
        elif dst == old:
            to_old += 1
    if to_old and not to_new:
        return f"the peer kept sending IKE to the old {old} ({to_old} message(s))"
    if to_new:
        return "the peer followed it"
    return None
