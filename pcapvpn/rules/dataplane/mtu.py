"""MTU: large packets one way only (MTU_BLACK_HOLE), ICMP fragmentation-needed / packet-too-big."""

from __future__ import annotations


from dissect.vpn.ip import icmp_too_big, is_multicast
from pcapvpn.findings import Term, declare, make, msg
from pcapvpn.rules import rule
from pcapvpn.rules.common import (
    ip_text,
)
from pcapvpn.rules.dataplane.common import (
    _ix, _mtu_pattern, _pairs, _quoted_vpn, _spi, _spis, sa_filter,
)


declare("MTU_BLACK_HOLE", "dataplane", "warning",
        "Inferred: large ESP packets were sent again and again (retransmitted) while the reverse "
        "direction sent nothing back — it went silent right after the first large packet, or "
        "stayed silent until small packets resumed — the pattern of a path MTU black hole (large "
        "packets dropped on the path, the ICMP that would say so never arriving; small packets "
        "such as pings still pass).",
        ["Test with pings of growing size and DF set through the tunnel (ping -M do -s 1400 / "
         "ping -f -l 1400) to find the largest size that passes.",
         "Clamp TCP MSS on the tunnel (Linux iptables/nft TCPMSS --clamp-mss-to-pmtu or "
         "--set-mss 1360; Cisco 'ip tcp adjust-mss 1360') or lower the tunnel MTU.",
         "Allow ICMP 'fragmentation needed' (type 3 code 4) and ICMPv6 'packet too big' through "
         "the firewalls on the path so path MTU discovery works."])


declare("PATH_MTU_ICMP", "dataplane", "warning",
        "A router reported that ESP / UDP 4500 packets of the tunnel are too big for the next "
        "link (ICMP fragmentation needed / ICMPv6 packet too big, with the MTU): the encapsulated "
        "packets exceed the path MTU.",
        ["Make sure the gateway that sent the big packets receives these ICMP messages and lowers "
         "its packet size (path MTU discovery); if it keeps sending the same sizes, clamp the "
         "TCP MSS inside the tunnel or lower the tunnel MTU to the reported MTU minus the ESP "
         "overhead (about 60-80 bytes).",
         "Cisco: 'crypto ipsec df-bit clear' / 'ip tcp adjust-mss'; Linux: TCPMSS clamping."])


@rule
def mtu_black_hole(ctx):
    th = ctx.th
    for t in ctx.state.tunnels:
        if is_multicast(t.a) or is_multicast(t.b):
            continue
        for x, y in _pairs(t):
            if x is None or y is None:
                continue
            for big, back in ((x, y), (y, x)):
                kind = _mtu_pattern(ctx, t, big, back)
                if kind is None:
                    continue
                fl = big.first_large_ts
                icmp = _icmp_for(ctx, big)
                if kind == "silent":
                    detail = msg("{back} answered on SPI 0x{bspi} ({n} packets) until +{t} s; "
                                 "from +{t0} s {big} sent large packets (>= {size} bytes of ESP, "
                                 "up to {max}) on SPI 0x{spi} — {large} of them, the last at "
                                 "+{t1} s — and nothing came back after the first one.",
                                 back=ip_text(back.src), bspi=_spi(back), n=back.packets,
                                 t=ctx.rel(back.last_ts), t0=ctx.rel(fl), big=ip_text(big.src),
                                 size=th.large_packet, max=big.max_len, spi=_spi(big),
                                 large=big.large, t1=ctx.rel(big.last_large_ts))
                else:
                    detail = msg("From +{t0} s {big} sent large packets (>= {size} bytes of ESP, "
                                 "up to {max}) on SPI 0x{spi} — {large} of them, the last at "
                                 "+{t1} s, spaced like retransmissions — and {back} sent nothing "
                                 "on SPI 0x{bspi} in all that time, although it had answered "
                                 "small packets before and small packets passed both ways again "
                                 "afterwards (until +{t} s): small packets get through, large "
                                 "ones do not (a bulk transfer stalls while pings work).",
                                 t0=ctx.rel(fl), big=ip_text(big.src), size=th.large_packet,
                                 max=big.max_len, spi=_spi(big), large=big.large,
                                 t1=ctx.rel(big.last_large_ts), back=ip_text(back.src),
                                 bspi=_spi(back), t=ctx.rel(back.last_ts))
                if icmp:
                    detail += msg(" {n} ICMP 'too big' error(s) about this path were seen (MTU "
                                  "{mtus}): see PATH_MTU_ICMP.", n=len(icmp),
                                  mtus=str(sorted({e.mtu for e in icmp})))
                else:
                    detail += msg(" No ICMP 'fragmentation needed' / 'packet too big' reached "
                                  "the capture point.")
                detail += msg(" Inferred from sizes and timing only (the inner traffic is "
                              "encrypted).")
                # the stalled form is the state at the end: large packets do not pass while
                # small ones do (the tunnel is failing for any bulk transfer)
                yield make(
                    "MTU_BLACK_HOLE", f"{t.id}|mtu|{big.proto}|{_spi(big)}|{big.dst.hex()}",
                    severity="error" if kind == "stalled" else None,
                    title=msg("Possible MTU black hole: large ESP from {src} to {dst} never "
                              "answered", src=ip_text(big.src), dst=ip_text(big.dst)),
                    detail=detail, basis="inferred",
                    evidence=ctx.evidence([back.last_ref, big.last_ref], fl, big.last_large_ts,
                                          esp_spis=[_spi(big), _spi(back)],
                                          peers=[ip_text(big.src), ip_text(big.dst)]),
                    # both SAs whole: the large packets and the silence of the other way
                    wireshark_filter=sa_filter([big, back]),
                    tunnel=t.id)


def _icmp_for(ctx, sa):
    return _ix(ctx).icmp_about(sa.src, sa.dst)


@rule
def path_mtu_icmp(ctx):
    groups: dict = {}
    for e in ctx.state.icmp_errors:
        if not icmp_too_big(e.ipver, e.icmp_type, e.icmp_code):
            continue
        what = _quoted_vpn(e.quoted)
        if what is None:
            continue
        q = e.quoted
        groups.setdefault((q.src, q.dst, what), []).append(e)
    for (qsrc, qdst, what), errs in groups.items():
        t = _ix(ctx).tunnel_between(qsrc, qdst)
        e0 = errs[0]
        mtus = sorted({e.mtu for e in errs if e.mtu})
        reporters = sorted({ip_text(e.src) for e in errs})
        sas = _ix(ctx).esp_between(qsrc, qdst)
        if what == "UDP 4500":
            q = e0.quoted
            sas = [s for s in sas if s.encap == "udp" and s.sport in (q[4], -1)] or sas
        detail = msg("{n} {icmp} {kind} error(s) from {reporters} about {what} {src} -> {dst}, "
                     "between +{t0} s and +{t1} s; next-hop MTU {mtu}.", n=len(errs),
                     icmp=f"ICMP{'v6' if e0.ipver == 6 else ''}",
                     kind=Term('packet too big' if e0.ipver == 6 else 'fragmentation needed'),
                     reporters=', '.join(reporters), what=what, src=ip_text(qsrc),
                     dst=ip_text(qdst), t0=ctx.rel(e0.ts), t1=ctx.rel(errs[-1].ts),
                     mtu=', '.join(str(m) for m in mtus) if mtus else msg('not given'))
        if sas:
            big = max(s.max_len for s in sas)
            detail += msg(" The largest ESP packet of {src} to {dst} carried {n} bytes of "
                          "{payload} (plus {headers} headers).", src=ip_text(qsrc),
                          dst=ip_text(qdst), n=big,
                          payload=msg('UDP payload') if sas[0].encap == 'udp' else 'ESP',
                          headers=f"IP{'/UDP' if sas[0].encap == 'udp' else ''}")
            later = [s for s in sas if s.last_large_ts is not None
                     and s.last_large_ts > errs[-1].ts]
            if later:
                detail += msg(" Large packets were still sent after the last error: the sender "
                              "does not adapt (ICMP filtered before it, or DF forced).")
        fld = "icmpv6" if e0.ipver == 6 else "icmp"
        cond = f"{fld}.type == 2" if e0.ipver == 6 else "icmp.type == 3 && icmp.code == 4"
        yield make(
            "PATH_MTU_ICMP", f"pmtu|{qsrc.hex()}|{qdst.hex()}|{what}",
            title=msg("{what} from {src} to {dst} too big for the path (MTU {mtu})", what=what,
                      src=ip_text(qsrc), dst=ip_text(qdst), mtu=mtus[0] if mtus else '?'),
            detail=detail, basis="observed",
            evidence=ctx.evidence([e.ref for e in errs], e0.ts, errs[-1].ts,
                                  esp_spis=_spis(sas),
                                  peers=[ip_text(qsrc), ip_text(qdst)] + reporters),
            wireshark_filter=f"{cond} && {'ipv6' if e0.ipver == 6 else 'ip'}.addr == "
                             f"{ip_text(qdst)}",
            tunnel=t.id if t else None)
