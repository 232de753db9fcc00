"""ESP arriving in IP fragments, and fragment sets that never completed."""

from __future__ import annotations


from dissect.vpn.ip import IpProto
from pcapvpn.findings import declare, make, msg
from pcapvpn.rules import rule
from pcapvpn.rules.common import (
    host_filter, ip_text,
)
from pcapvpn.rules.dataplane.common import _ix, _label, _spi, _what, sa_filter


declare("ESP_FRAGMENTED", "dataplane", "warning",
        "ESP packets were carried in IP fragments (or only fragments of them arrived): after "
        "encapsulation the packets exceed the path MTU.  Fragments cost reassembly at the "
        "receiver and are dropped by many NATs and firewalls.",
        ["Clamp the TCP MSS inside the tunnel (e.g. 1360) or lower the tunnel MTU so that ESP "
         "packets fit the path MTU.",
         "Prefer fragmentation before encryption (Cisco 'crypto ipsec fragmentation "
         "before-encryption'), so that each fragment is a whole ESP packet.",
         "If fragments are incomplete at the capture point, a device on the path drops "
         "fragments: find it, or avoid fragmentation as above."])


def _incomplete_esp(fs):
    """(what, spi) when an incomplete fragment set is ESP (protocol 50 or UDP 4500), else None."""
    head = fs.head
    if fs.proto == IpProto.ESP:
        return "ESP", head.spi if head is not None else None
    if fs.proto == IpProto.UDP and head is not None and head.spi:
        # spi zero: the non-ESP marker of IKE (the reachability rules' case)
        return "ESP in UDP", head.spi
    return None


@rule
def fragmented(ctx):
    for t in ctx.state.tunnels:
        for sa in t.esp_sas:
            n = getattr(sa, "fragmented", 0)
            if not n:
                continue
            spi = _spi(sa)
            refs = list(getattr(sa, "frag_refs", ()))
            yield make(
                "ESP_FRAGMENTED", f"{sa.proto}|{spi}|{sa.dst.hex()}|frag",
                title=msg("{n} {what} packet(s) on SPI 0x{spi} arrived in IP fragments", n=n,
                          what=_what(sa), spi=spi),
                detail=msg("{n} of {total} packets of {sa} were reassembled from IP fragments "
                           "(largest ESP packet {max} bytes): after encapsulation they exceed "
                           "the path MTU.", n=n, total=sa.packets, sa=_label(sa),
                           max=sa.max_len),
                basis="observed",
                evidence=ctx.evidence(refs, sa.first_ts, sa.last_ts, esp_spis=[spi],
                                      peers=[ip_text(sa.src), ip_text(sa.dst)]),
                wireshark_filter=f"({sa_filter([sa])}) || ({host_filter(sa.ipver, sa.src, sa.dst)}"
                                 + (" && (ip.flags.mf == 1 || ip.frag_offset > 0))"
                                    if sa.ipver == 4 else " && ipv6.fragment)"),
                tunnel=t.id)
    groups: dict = {}
    for fs in ctx.state.incomplete_fragments:
        r = _incomplete_esp(fs)
        if r is None:
            continue
        groups.setdefault((fs.src, fs.dst, r[0]), []).append((fs, r[1]))
    for (src, dst, what), items in groups.items():
        t = _ix(ctx).tunnel_between(src, dst)
        refs = []
        for fs, _spi_ in items:
            refs.extend(fs.frames)
        spis = sorted({s for _f, s in items if s})
        fs0 = items[0][0]
        yield make(
            "ESP_FRAGMENTED", f"incomplete|{src.hex()}|{dst.hex()}|{what}",
            title=msg("{n} fragmented {what} packet(s) from {src} to {dst} arrived incomplete",
                      n=len(items), what=what, src=ip_text(src), dst=ip_text(dst)),
            detail=msg("{n} {what} datagram(s) from {src} to {dst} (first at +{t} s) were "
                       "IP-fragmented and at least one fragment of each never reached the "
                       "capture point: these ESP packets are lost (dropped fragments, or the "
                       "capture missed them).", n=len(items), what=what, src=ip_text(src),
                       dst=ip_text(dst), t=ctx.rel(fs0.first_ts)),
            basis="observed",
            evidence=ctx.evidence(refs, fs0.first_ts, items[-1][0].first_ts,
                                  esp_spis=[f"{s:08x}" for s in spis],
                                  peers=[ip_text(src), ip_text(dst)]),
            wireshark_filter=(f"{host_filter(fs0.ipver, src, dst)} && "
                              + ("(ip.flags.mf == 1 || ip.frag_offset > 0)" if fs0.ipver == 4
                                 else "ipv6.fragment")),
            tunnel=t.id if t else None)
