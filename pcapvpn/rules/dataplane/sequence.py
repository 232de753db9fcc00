"""Sequence numbers: gaps, replays, reordering beyond the replay window, a counter near its wrap."""

from __future__ import annotations


from pcapvpn.findings import declare, make
from pcapvpn.rules import rule
from pcapvpn.rules.common import (
    ip_text,
)
from pcapvpn.rules.dataplane.common import MAX_LISTED, _label, _spi, _what, sa_filter


declare("ESP_SEQUENCE_GAP", "dataplane", "warning",
        "ESP sequence numbers were skipped and never arrived (inside the anti-replay window): "
        "packets were lost between the sender and the capture point, or by the capture itself.",
        ["Check the capture for drops first (pcapng interface statistics, tcpdump's 'dropped by "
         "kernel'); a capture on a busy mirror port loses packets itself.",
         "Compare with the sender's and receiver's counters (Linux 'ip -s xfrm state', Cisco "
         "'show crypto ipsec sa' #pkts encaps/decaps) to locate the loss.",
         "Loss in bursts points to congestion or policing on the path (check interface drops and "
         "QoS/policers on the WAN link); loss of large packets only points to MTU."])


declare("ESP_REPLAY", "dataplane", "warning",
        "The same ESP sequence number arrived twice (not a capture copy), or the sequence "
        "restarted at a low number on the same SPI: the receiver's anti-replay check drops these "
        "packets (RFC 4303 §3.4.3).",
        ["Duplicates on the network: look for a layer-2 loop, a duplicating load balancer or "
         "WAN optimiser, or redundant links both delivering the packet.",
         "A sequence restart on the same SPI: the sender restarted (or a cluster failed over "
         "without SA sync) and reuses the SPI; the receiver rejects the new packets as replays "
         "until the SA is renegotiated: clear the SA on both peers, and enable SA sync / DPD.",
         "strongSwan/Linux count these in XfrmInStateSeqError (/proc/net/xfrm_stat); Cisco "
         "'show crypto ipsec sa' shows 'replay failed'."])


declare("ESP_REORDER", "dataplane", "warning",
        "ESP packets arrived out of order by more than a receiver's anti-replay window accepts "
        "(32 is the minimum, 64 the default): a receiver drops them as too old although they are "
        "valid.  Reordering inside the window is harmless (info).",
        ["Find the cause of reordering: load balancing of the ESP flow over parallel links "
         "(ECMP/LACP per packet), QoS queues treating packets of one SA differently.",
         "Enlarge the replay window on the receiver (strongSwan replay_window, Linux 'ip xfrm "
         "state ... replay-window', Cisco 'crypto ipsec security-association replay "
         "window-size 1024') or use separate SAs per QoS class."])


declare("ESP_SEQUENCE_NEAR_WRAP", "dataplane", "warning",
        "An SA's 32-bit sequence counter is close to 2^32 and no extended sequence number wrap "
        "was seen: without ESN the sender must rekey before the counter cycles (RFC 4303 "
        "§3.3.3), otherwise the SA stops.",
        ["Check the SA lifetime in packets/bytes (strongSwan lifepackets/lifebytes, Cisco "
         "'lifetime kilobytes') or negotiate ESN (strongSwan esp=...-esn, Cisco 'esn')."])


def _all_sas(ctx):
    return [(t, s) for t in ctx.state.tunnels for s in t.esp_sas]


def _shared_counters(sas) -> set:
    """ids of SAs whose sender uses one SPI towards several destinations (manually keyed SAs,
    e.g. OSPFv3 with AH to ff02::5 and to its neighbour, RFC 4552): one sequence counter spread
    over several destinations, so a per-destination sequence analysis means nothing."""
    by = {}
    for s in sas:
        by.setdefault((s.proto, s.src, s.spi), []).append(s)
    out = set()
    for group in by.values():
        if len({s.dst for s in group}) > 1:
            out.update(id(s) for s in group)
    return out


@rule
def sequence(ctx):
    th = ctx.th
    shared = _shared_counters(ctx.state.esp_sas)
    for t, sa in _all_sas(ctx):
        if id(sa) in shared:
            continue
        spi = _spi(sa)
        peers = [ip_text(sa.src), ip_text(sa.dst)]
        lost = sa.lost
        if lost >= max(1, th.seq_gap_min):
            gaps = sa.lost_gaps()
            pct = sa.loss_pct
            shown = "; ".join(f"{m} before seq {g} at +{ctx.rel(ts)} s (frame {ref[1]})"
                              for ts, ref, _e, g, m in gaps[:MAX_LISTED])
            detail = (f"{lost} of {sa.expected} sequence numbers ({pct:.3g} %) between "
                      f"{sa.min_seq} and {sa.max_seq} never arrived on {_label(sa)} "
                      f"({sa.packets} packets seen). Largest gap: {sa.max_gap}. First gaps: "
                      f"{shown}.")
            if sa.too_old:
                detail += (f" {sa.too_old} of them arrived later, beyond the "
                           f"{th.replay_window}-packet window (a receiver drops them as too old).")
            if sa.capture_duplicates:
                detail += f" {sa.capture_duplicates} capture copies were not counted."
            detail += (" The loss happened between the sender and the capture point, or in the "
                       "capture itself.")
            yield make(
                "ESP_SEQUENCE_GAP", f"{sa.proto}|{spi}|{sa.dst.hex()}|gap",
                title=f"{lost} packet(s) lost on {_what(sa)} SPI 0x{spi} "
                      f"({ip_text(sa.src)} -> {ip_text(sa.dst)}, {pct:.3g} %)",
                detail=detail, basis="observed",
                evidence=ctx.evidence([g[1] for g in gaps], gaps[0][0] if gaps else sa.first_ts,
                                      gaps[-1][0] if gaps else sa.last_ts, esp_spis=[spi],
                                      peers=peers),
                wireshark_filter=sa_filter([sa]), tunnel=t.id)
        if sa.duplicates or sa.resets:
            parts = []
            if sa.duplicates:
                parts.append(f"{sa.duplicates} sequence number(s) arrived twice (not capture "
                             f"copies: more than {th.duplicate_window * 1000:g} ms after the "
                             f"previous packet)")
            if sa.resets:
                r = sa.reset_events[0]
                parts.append(f"the sequence restarted {sa.resets} time(s) on the same SPI (first "
                             f"at +{ctx.rel(r[0])} s, frame {r[1][1]}: from {r[2]} to {r[3]}); "
                             f"a receiver that kept the SA drops the new packets as replays")
            detail = f"On {_label(sa)}: " + "; ".join(parts) + "."
            if sa.capture_duplicates:
                detail += (f" Besides, {sa.capture_duplicates} capture copies (within "
                           f"{th.duplicate_window * 1000:g} ms) were counted apart "
                           f"(CAPTURE_DUPLICATES).")
            refs = [e[1] for e in sa.reset_events] or [sa.last_ref]
            yield make(
                "ESP_REPLAY", f"{sa.proto}|{spi}|{sa.dst.hex()}|replay",
                title=(f"Replayed/restarted sequence numbers on {_what(sa)} SPI 0x{spi} "
                       f"({ip_text(sa.src)} -> {ip_text(sa.dst)})"),
                detail=detail, basis="observed",
                evidence=ctx.evidence(refs, sa.first_ts, sa.last_ts, esp_spis=[spi],
                                      peers=peers),
                wireshark_filter=sa_filter([sa]), tunnel=t.id)
        if sa.reordered:
            # late packets from before the first one seen are reordering too
            beyond = sa.beyond32
            detail = (f"{sa.reordered} packet(s) arrived below the highest sequence number "
                      f"already seen on {_label(sa)}; deepest {sa.max_reorder} packets. "
                      f"{sa.beyond64} would be dropped by a receiver with a 64-packet window, "
                      f"{sa.beyond32} by one with a 32-packet window.")
            sev = None if beyond else "info"
            title = (f"ESP reordering beyond the replay window on SPI 0x{spi}" if beyond
                     else f"ESP reordering within the replay window on SPI 0x{spi}")
            if not beyond:
                detail += " Within every window: harmless."
            yield make(
                "ESP_REORDER", f"{sa.proto}|{spi}|{sa.dst.hex()}|reorder",
                title=title + f" ({ip_text(sa.src)} -> {ip_text(sa.dst)})",
                detail=detail, basis="observed", severity=sev,
                evidence=ctx.evidence([sa.first_ref, sa.last_ref], sa.first_ts, sa.last_ts,
                                      esp_spis=[spi], peers=peers),
                wireshark_filter=sa_filter([sa]), tunnel=t.id)
        if sa.near_wrap:
            yield make(
                "ESP_SEQUENCE_NEAR_WRAP", f"{sa.proto}|{spi}|{sa.dst.hex()}|wrap",
                title=f"Sequence counter of SPI 0x{spi} close to 2^32 ({sa.max_seq})",
                detail=(f"{_label(sa)} reached sequence number {sa.max_seq} "
                        f"({(1 << 32) - 1 - sa.max_seq} left before the 32-bit counter cycles) "
                        f"and no ESN wrap was seen."),
                basis="observed",
                evidence=ctx.evidence([sa.last_ref], sa.last_ts, None, esp_spis=[spi],
                                      peers=peers),
                wireshark_filter=sa_filter([sa]), tunnel=t.id)
