"""Sequence numbers: gaps, replays, reordering beyond the replay window, a counter near its wrap."""

from __future__ import annotations


from pcapvpn.findings import declare, make, msg, msg_join
from pcapvpn.rules import rule
from pcapvpn.rules.common import (
    ip_text,
)
from pcapvpn.rules.dataplane.common import MAX_LISTED, _label, _spi, _what, sa_filter
from pcapvpn.rules.incremental import per_sa


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
    # one tunnel at a time (live's RuleCache keeps each tunnel's findings: the loop tells it
    # which tunnel a finding is of)
    for t in ctx.state.tunnels:
        for s in t.esp_sas:
            yield t, s


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
    # over the whole state (live's RuleCache runs the rules over the tunnels that changed;
    # each SA's answer is noted: the SPI of one sender may go to another tunnel's peer)
    whole = getattr(ctx.state, "whole", None)
    # live: computed once per RuleCache run (its change check may have made it already)
    once = getattr(ctx.state, "shared", None) if whole is not None else None
    shared = once.get("sequence.shared") if once is not None else None
    if shared is None:
        shared = _shared_counters((whole if whole is not None else ctx.state).esp_sas)
        if once is not None:
            once["sequence.shared"] = shared
    note = getattr(ctx.state, "facts", None)
    if note is not None:
        shared = note("sequence.shared", dict.fromkeys(shared, True))
    unread = _tcp_unread(ctx)
    for t, sa in _all_sas(ctx):
        if id(sa) in shared:
            continue
        tcp_unread = unread and sa.encap == "tcp"
        # each SA's findings read that SA alone: live keeps them per SA (per_sa)
        yield from per_sa(ctx, sa, _fingerprint(t, sa) + (tcp_unread,),
                          lambda t=t, sa=sa, u=tcp_unread: _one(ctx, th, t, sa, u))


def _tcp_unread(ctx) -> bool:
    """Bytes of the TCP streams the capture did not read: holes it never filled, frames the
    snapshot length cut, bytes a memory bound dropped."""
    cap = ctx.state.capture
    if cap is None:
        return False
    c = cap.counts
    return bool(c.tcp_gaps or c.truncated_frames or c.tcp_bytes_dropped or c.tcp_streams_evicted)


def _fingerprint(t, sa) -> tuple:
    """What :func:`_one` reads of ``sa`` that changes as packets arrive (and its tunnel)."""
    return (t.id, sa.spi, sa.packets, sa.last_ts, sa.last_ref, sa.nxt, sa.base, sa.missing, sa._lost,
            sa.duplicates, sa.capture_duplicates, sa.resets, sa.reordered, sa.too_old,
            sa.wraps, sa.max_gap, len(sa.gaps), len(sa.last_gaps))


def _one(ctx, th, t, sa, tcp_unread=False):
    """The sequence findings of one SA.  ``tcp_unread``: the SA is carried over TCP (RFC 9329)
    and the capture did not read all of the TCP streams' bytes: TCP retransmits what the
    network loses, so its skipped sequence numbers are in the bytes the capture missed, not lost
    packets."""
    spi = _spi(sa)
    peers = [ip_text(sa.src), ip_text(sa.dst)]
    lost = sa.lost
    if lost >= max(1, th.seq_gap_min) and not tcp_unread:
        gaps = sa.lost_gaps()
        pct = sa.loss_pct
        shown = msg_join("; ", [msg("{n} before seq {seq} at +{t} s (frame {frame})", n=m,
                                    seq=g, t=ctx.rel(ts), frame=ref[1])
                                for ts, ref, _e, g, m in gaps[:MAX_LISTED]])
        detail = msg("{lost} of {expected} sequence numbers ({pct:.3g} %) between {lo} and "
                     "{hi} never arrived on {sa} ({n} packets seen). Largest gap: {gap}. "
                     "First gaps: {shown}.", lost=lost, expected=sa.expected, pct=pct,
                     lo=sa.min_seq, hi=sa.max_seq, sa=_label(sa), n=sa.packets,
                     gap=sa.max_gap, shown=shown)
        if sa.too_old:
            detail += msg(" {n} of them arrived later, beyond the {window}-packet window (a "
                          "receiver drops them as too old).", n=sa.too_old,
                          window=th.replay_window)
        if sa.capture_duplicates:
            detail += msg(" {n} capture copies were not counted.", n=sa.capture_duplicates)
        detail += msg(" The loss happened between the sender and the capture point, or in "
                      "the capture itself.")
        yield make(
            "ESP_SEQUENCE_GAP", f"{sa.proto}|{spi}|{sa.dst.hex()}|gap",
            title=msg("{lost} packet(s) lost on {what} SPI 0x{spi} ({src} -> {dst}, "
                      "{pct:.3g} %)", lost=lost, what=_what(sa), spi=spi,
                      src=ip_text(sa.src), dst=ip_text(sa.dst), pct=pct),
            detail=detail, basis="observed",
            evidence=ctx.evidence([g[1] for g in gaps], gaps[0][0] if gaps else sa.first_ts,
                                  gaps[-1][0] if gaps else sa.last_ts, esp_spis=[spi],
                                  peers=peers),
            wireshark_filter=sa_filter([sa]), tunnel=t.id)
    if sa.duplicates or sa.resets:
        parts = []
        if sa.duplicates:
            parts.append(msg("{n} sequence number(s) arrived twice (not capture copies: "
                             "more than {ms:g} ms after the previous packet)",
                             n=sa.duplicates, ms=th.duplicate_window * 1000))
        if sa.resets:
            r = sa.reset_events[0]
            parts.append(msg("the sequence restarted {n} time(s) on the same SPI (first at "
                             "+{t} s, frame {frame}: from {a} to {b}); a receiver that kept "
                             "the SA drops the new packets as replays", n=sa.resets,
                             t=ctx.rel(r[0]), frame=r[1][1], a=r[2], b=r[3]))
        detail = msg("On {sa}: {parts}.", sa=_label(sa), parts=msg_join("; ", parts))
        if sa.capture_duplicates:
            detail += msg(" Besides, {n} capture copies (within {ms:g} ms) were counted apart "
                          "(CAPTURE_DUPLICATES).", n=sa.capture_duplicates,
                          ms=th.duplicate_window * 1000)
        refs = [e[1] for e in sa.reset_events] or [sa.last_ref]
        yield make(
            "ESP_REPLAY", f"{sa.proto}|{spi}|{sa.dst.hex()}|replay",
            title=msg("Replayed/restarted sequence numbers on {what} SPI 0x{spi} ({src} -> "
                      "{dst})", what=_what(sa), spi=spi, src=ip_text(sa.src),
                      dst=ip_text(sa.dst)),
            detail=detail, basis="observed",
            evidence=ctx.evidence(refs, sa.first_ts, sa.last_ts, esp_spis=[spi],
                                  peers=peers),
            wireshark_filter=sa_filter([sa]), tunnel=t.id)
    if sa.reordered:
        # late packets from before the first one seen are reordering too
        beyond = sa.beyond32
        detail = msg("{n} packet(s) arrived below the highest sequence number already seen "
                     "on {sa}; deepest {deepest} packets. {b64} would be dropped by a "
                     "receiver with a 64-packet window, {b32} by one with a 32-packet "
                     "window.", n=sa.reordered, sa=_label(sa), deepest=sa.max_reorder,
                     b64=sa.beyond64, b32=sa.beyond32)
        sev = None if beyond else "info"
        title = (msg("ESP reordering beyond the replay window on SPI 0x{spi}", spi=spi)
                 if beyond else
                 msg("ESP reordering within the replay window on SPI 0x{spi}", spi=spi))
        if not beyond:
            detail += msg(" Within every window: harmless.")
        yield make(
            "ESP_REORDER", f"{sa.proto}|{spi}|{sa.dst.hex()}|reorder",
            title=title + msg(" ({src} -> {dst})", src=ip_text(sa.src), dst=ip_text(sa.dst)),
            detail=detail, basis="observed", severity=sev,
            evidence=ctx.evidence([sa.first_ref, sa.last_ref], sa.first_ts, sa.last_ts,
                                  esp_spis=[spi], peers=peers),
            wireshark_filter=sa_filter([sa]), tunnel=t.id)
    if sa.near_wrap:
        yield make(
            "ESP_SEQUENCE_NEAR_WRAP", f"{sa.proto}|{spi}|{sa.dst.hex()}|wrap",
            title=msg("Sequence counter of SPI 0x{spi} close to 2^32 ({seq})", spi=spi,
                      seq=sa.max_seq),
            detail=msg("{sa} reached sequence number {seq} ({left} left before the 32-bit "
                       "counter cycles) and no ESN wrap was seen.", sa=_label(sa),
                       seq=sa.max_seq, left=(1 << 32) - 1 - sa.max_seq),
            basis="observed",
            evidence=ctx.evidence([sa.last_ref], sa.last_ts, None, esp_spis=[spi],
                                  peers=peers),
            wireshark_filter=sa_filter([sa]), tunnel=t.id)
