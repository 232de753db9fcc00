"""The report's capture summary: files and their interfaces, link types, drops the capture
reported, damaged ranges and the coverage they leave, the counts of what was decoded and tracked,
decode errors, and when the capture ended."""

from __future__ import annotations

from collections import Counter

from dissect.vpn.ip import Port
from pcapvpn import __version__
from pcapvpn import model as m
from pcapvpn.decode import Decoder
from pcapvpn.findings import msg as _msg
from pcapvpn.track.nat import on_custom_ports


def linktype_name(lt: int) -> str:
    try:
        from dissect.vpn.link import linktype_name as _name
    except ImportError:
        return f"LINKTYPE {lt}"
    return _name(lt)


def capture_end(sources, ended: float | None = None) -> float:
    """When the capture stopped: its last frame, or later when a file says it ran on (pcapng
    ``isb_endtime``, which live ``--write`` and dumpcap record): absences are judged up to it.
    ``ended``: a stop the sources do not record yet (a live evaluation's ``now``)."""
    last = max((s.last_ts for s in sources if s.last_ts is not None), default=0.0)
    ends = [e for s in sources if (e := getattr(s, "ended", None)) is not None]
    if ended is not None:
        ends.append(ended)
    return max([last] + ends) if last else last


def stopped_time(sources, start, ended: float | None = None):
    """The report's ``capture.stopped``: :func:`capture_end` when later than the last frame,
    else None."""
    end = max((s.last_ts for s in sources if s.last_ts is not None), default=None)
    if end is None:
        return None
    stopped = capture_end(sources, ended)
    return m.Time.of(stopped, start) if stopped > end else None


def _drops(sources):
    """Packets the capture itself reported lost (pcapng ISB if/os drops, packet drop counts),
    None when the files say nothing."""
    n = None
    for s in sources:
        isb = s.isb if isinstance(s.isb, dict) else {}
        for st in isb.values():
            for k in ("ifdrop", "osdrop"):
                if st.get(k):
                    n = (n or 0) + st[k]
        drops = getattr(s, "drops", None)
        if isinstance(drops, dict):
            for v in drops.values():
                if v:
                    n = (n or 0) + v
    return n


def _damage(sources, start, end):
    """The damaged ranges of all files (``capture.damage``), the intervals of time they leave
    unread (a run of adjacent ranges is one gap, from the packet before it to the packet after
    it), seconds of gaps beyond the ranges kept, and the capture's coverage (None without
    damage): ``{first, last, share, bytes_share}``."""
    out = []
    gaps = []
    extra = 0.0
    lost = 0
    total = 0
    for s in sources:
        dmg = getattr(s, "damage", None) or []
        more = getattr(s, "damage_more", None) or (0, 0, 0, 0.0)
        size = getattr(s, "size", None)
        if not dmg and not more[0]:
            if size:
                total += size
            continue
        run = None  # [before, after, end offset] of the current run of adjacent ranges
        for d in dmg:
            out.append(m.Damage(s.name, d.offset, d.length, d.frames, d.numbered, d.trailing,
                                d.reason, m.Time.of(d.before, start) if d.before is not None
                                else None,
                                m.Time.of(d.after, start) if d.after is not None else None))
            lost += d.length
            if run is not None and run[2] == d.offset:
                run[1] = d.after
                run[2] = d.offset + d.length
            else:
                if run is not None:
                    gaps.append(run)
                run = [d.before, d.after, d.offset + d.length]
        if run is not None:
            gaps.append(run)
        lost += more[1]
        extra += more[3]
        total += size if size else sum(d.offset + d.length for d in dmg[-1:])
    if not out and not extra:
        return [], [], 0.0, None
    spans = [(a, b) for a, b, _e in gaps if a is not None and b is not None and b > a]
    cov = m.coverage(start, end, spans, start, extra)
    cov["bytes_share"] = round(max(0.0, 1.0 - lost / total), 6) if total else 0.0
    return out, spans, extra, m.Coverage(cov, spans, extra)


def _out_of_order(sources, limit: int) -> list:
    """``capture.out_of_order``: the files with frames earlier than a frame before them, their
    largest step back in time, and whether the analysis read them in time order (else why not:
    :func:`pcapvpn.sources.file_order_why`)."""
    from pcapvpn.sources import file_order_why

    out = []
    for s in sources:
        n = getattr(s, "out_of_order", 0)
        if not n:
            continue
        ordered = bool(getattr(s, "reordered", False))
        out.append({"file": s.name, "frames": n,
                    "largest_step_s": round(getattr(s, "step_back", 0.0), 6),
                    "frame": getattr(s, "step_frame", None),
                    "from_frame": getattr(s, "step_from_frame", None),
                    "time_order": ordered,
                    "file_order_why": None if ordered else file_order_why(s, limit)})
    return out


def _cooked(counts) -> dict:
    """Linux cooked frames of a file per interface: ``{iface: [{ifindex, frames, packet_types}]}``
    (``Source.cooked``, keyed ``(iface, ifindex, packet type)``)."""
    from dissect.vpn.link import PACKET_TYPES

    out: dict = {}
    for (iface, ifindex, ptype), n in counts.items():
        per = out.setdefault(iface, {}).setdefault(ifindex, Counter())
        per[PACKET_TYPES.get(ptype, f"type {ptype}")] += n
    return {iface: [{"ifindex": k, "frames": sum(c.values()),
                     "packet_types": dict(sorted(c.items()))}
                    for k, c in sorted(per.items(), key=lambda kv: (kv[0] is not None, kv[0] or 0))]
            for iface, per in out.items()}


def _custom_ike_ports(sas) -> dict:
    """The responders' UDP ports of IKE messages that have neither 500 nor 4500 on either side
    (custom IKE ports), each with whether the non-ESP marker framed IKE there (Wireshark's
    UDPENCAP dissector, else ISAKMP)."""
    out: dict = {}
    for sa in sas:
        for msg in sa.messages:
            if not on_custom_ports(msg):
                continue
            port = msg.sport if msg.from_initiator is False else msg.dport
            out[port] = out.get(port, False) or msg.encap
    return out


def build_report(sources, decoder: Decoder, tracker) -> m.Report:
    starts = [s.first_ts for s in sources if s.first_ts is not None]
    ends = [s.last_ts for s in sources if s.last_ts is not None]
    start = min(starts) if starts else None
    end = max(ends) if ends else None
    names = [s.name for s in sources]

    files = []
    linktypes: Counter = Counter()
    if_drop_total = None
    os_drop_total = None
    warnings = []
    for s in sources:
        ifaces = []
        isb = s.isb if isinstance(s.isb, (dict, list)) else {}
        frames_per_if = getattr(s, "interface_frames", None) or {}
        cooked = _cooked(getattr(s, "cooked", None) or {})
        per_section: Counter = Counter()
        for idx, itf in enumerate(s.interfaces):
            section = getattr(itf, "section", 0) or 0
            per_section[section] += 1
            st = (isb.get(idx) if isinstance(isb, dict) else (isb[idx] if idx < len(isb) else None)) or {}
            if_drop = st.get("ifdrop")
            os_drop = st.get("osdrop")
            if if_drop is not None:
                if_drop_total = (if_drop_total or 0) + if_drop
            if os_drop is not None:
                os_drop_total = (os_drop_total or 0) + os_drop
            ifaces.append(m.Interface(idx, itf.linktype, linktype_name(itf.linktype), itf.snaplen,
                                      getattr(itf, "name", None), if_drop, os_drop,
                                      description=getattr(itf, "description", None),
                                      frames=frames_per_if.get(idx, 0), section=section,
                                      idb=per_section[section] - 1, cooked=cooked.get(idx)))
        for lt, c in s.linktypes.items():
            linktypes[linktype_name(lt)] += c
        files.append(m.FileInfo(s.name, s.format, s.compressed, s.frame_count, s.byte_count,
                                m.Time.of(s.first_ts, start), m.Time.of(s.last_ts, start),
                                ifaces, list(s.warnings)))
        warnings.extend(s.warnings)
    damage, gaps, gap_extra, coverage = _damage(sources, start, end)

    dc = decoder.counters()
    counts = m.Counts(
        ip_fragment_frames=dc["ip_fragment_frames"],
        reassembled_datagrams=dc["reassembled_datagrams"],
        incomplete_fragment_sets=dc["incomplete_fragment_sets"],
        tcp_segments_on_vpn_ports=dc["tcp_segments"],
        tcp_retransmissions=dc["tcp_retransmissions"],
        tcp_gaps=dc["tcp_gaps"],
        tcp_gaps_by_limit=dc["tcp_gaps_by_limit"],
        tcp_streams_evicted=dc["tcp_streams_evicted"],
        tcp_bytes_dropped=dc["tcp_bytes_dropped"],
        tcp_streams_unrecognised=dc["tcp_streams_unrecognised"],
        non_ip_frames=dc["non_ip"],
        other_ip_frames=dc["other"],
        truncated_frames=dc["truncated"],
    )
    samples = []
    if tracker is not None:
        it = tracker.ike_tracker
        for msg_sa in it.sas:
            for msg in msg_sa.messages:
                counts.ike += 1
                if msg.transport == "tcp":
                    counts.ike_tcp += 1
                elif Port.NAT_T in (msg.sport, msg.dport) or (
                        msg.encap and Port.IKE not in (msg.sport, msg.dport)):
                    # NAT-T framing on a custom port counts with 4500's
                    counts.ike_udp_4500 += 1
                else:
                    counts.ike_udp_500 += 1
        custom = _custom_ike_ports(it.sas)
        if custom:
            warnings.append(_msg(
                "wireshark: IKE on UDP ports other than 500/4500; Wireshark dissects them only "
                "with Decode As ({decode_as}): the display filters cited here match after that",
                decode_as=", ".join(f"udp.port=={p} as {'UDPENCAP' if enc else 'ISAKMP'}"
                                    for p, enc in sorted(custom.items()))))
        counts.ike += it.header_errors
        # messages a bound dropped (Limits): counted all the same
        counts.ike += sum(it.dropped_by_transport.values())
        counts.ike_tcp += it.dropped_by_transport["tcp"]
        counts.ike_udp_4500 += it.dropped_by_transport["udp_4500"]
        counts.ike_udp_500 += it.dropped_by_transport["udp_500"]
        for e in list(tracker.esp_tracker.all_sas()) + list(tracker.esp_tracker.overflow.values()):
            if e.proto == "ah":
                counts.ah += e.packets
                continue
            counts.esp += e.packets
            if e.encap == "ip":
                counts.esp_ip += e.packets
            elif e.encap == "tcp":
                counts.esp_tcp += e.packets
            else:
                counts.esp_udp += e.packets
        vpn = Counter()
        for t in tracker.vpn_tracker.all_tunnels():
            vpn[t.protocol] += t.frames
        for proto, n in vpn.items():
            if hasattr(counts, f"{proto}_frames"):
                setattr(counts, f"{proto}_frames", n)
                counts.other_ip_frames = max(0, counts.other_ip_frames - n)
        counts.nat_keepalives = tracker.keepalive_tracker.count
        counts.icmp_errors = len(tracker.icmp_errors) + tracker.icmp_dropped
        errs = list(tracker.decode_errors) + list(it.parse_errors)
        samples = [m.DecodeError(names[ref[0]], ref[1], reason)
                   for ref, reason in errs[:decoder.limits.max_error_samples]]
    by_reason = Counter(decoder.errors_by_reason)
    n_errors = dc["decode_errors"]
    if tracker is not None:
        by_reason.update(tracker.ike_tracker.parse_error_reasons)
        n_errors += tracker.ike_tracker.parse_error_count
    summary = m.CaptureSummary(
        files=files,
        frames=dc["frames"],
        start=m.Time.of(start, start),
        end=m.Time.of(end, start),
        duration=round(end - start, 6) if start is not None else 0.0,
        linktypes=dict(sorted(linktypes.items())),
        drops={"if_drop": if_drop_total, "os_drop": os_drop_total},
        counts=counts,
        decode_errors=n_errors,
        decode_errors_by_reason=dict(by_reason),
        decode_error_samples=samples,
        warnings=warnings,
        damage=damage,
        coverage=coverage,
        out_of_order=_out_of_order(sources, decoder.limits.reorder_max_records),
    )
    summary.stopped = stopped_time(sources, start)
    summary.start_ts = start  # not serialised: for relative times
    # not serialised: the unreadable intervals of time (and seconds of unplaced ones), for
    # model.coverage_share of any span (the verdict)
    summary.gaps = gaps
    summary.gap_extra = gap_extra
    return m.Report(tool="pcapvpn", version=__version__, capture=summary)
