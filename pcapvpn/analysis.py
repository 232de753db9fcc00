"""Run the pipeline over capture files and build the report model.

sources → decode → track → rules → model.  The CLI, live mode and the tests call :func:`analyze`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from pcapvpn import __version__
from pcapvpn import model as m
from pcapvpn.decode import Decoder, Limits, NullSink
from pcapvpn.sources import merge_frames, open_source
from pcapvpn.thresholds import DEFAULT, Thresholds

STAGES = ("read", "decode", "dissect", "full")


def linktype_name(lt: int) -> str:
    try:
        from dissect.vpn.link import linktype_name as _name
    except ImportError:
        return f"LINKTYPE {lt}"
    return _name(lt)


@dataclass
class Options:
    limits: Limits | None = None
    thresholds: Thresholds = DEFAULT
    #: stop after a pipeline stage (benchmarks): "read", "decode", "dissect" or "full"
    stop_after: str = "full"
    #: gateways that should appear (--expect-peer), packed addresses
    expect_peers: list = field(default_factory=list)
    #: ``progress(name, done_bytes, total_bytes)`` called now and then (CLI on a TTY)
    progress: object = None
    #: copy standard input to a temporary file so that frames can be fetched again
    #: (``--export-evidence``; ``Result.sources[i].fetch``)
    spool_stdin: bool = False
    #: decryption keys (--keys): a pcapvpn.keys.KeyStore, or None
    keys: object = None
    #: SSL-VPN servers (--vpn-server ADDR[:PORT]): (packed address, port or None)
    vpn_servers: list = field(default_factory=list)
    #: hand ESP of the common shapes over a chunk at a time (dissect.vpn.batch); False: one
    #: event per packet (the same result, slower; the tests compare the two)
    batch: bool = True
    #: gateway evidence (--log): pcapvpn.logsrc.LogSource objects (read before the capture)
    logs: list = field(default_factory=list)


@dataclass
class Result:
    """Everything an analysis produced: the report model plus the live objects behind it."""

    report: m.Report
    state: object = None
    findings: list = field(default_factory=list)
    verdicts: list = field(default_factory=list)
    #: the (closed) sources: their ``fetch(numbers)`` reads evidence frames again
    sources: list = field(default_factory=list)


def analyze(paths, options: Options | None = None) -> m.Report:
    """Analyse the capture files ``paths`` (``-`` = stdin); raises SourceError for bad inputs."""
    return run(paths, options).report


def run(paths, options: Options | None = None) -> Result:
    options = options or Options()
    sources = []
    try:
        for i, p in enumerate(paths):
            sources.append(open_source(p, i, spool=options.spool_stdin and p == "-"))
        names = [s.name for s in sources]
        if options.stop_after == "read":
            n = 0
            for _ in _frames(sources, options):
                n += 1
            decoder = Decoder(NullSink(), options.limits)
            decoder.frames = n
            return Result(build_report(sources, decoder, None))
        if options.stop_after == "dissect":
            # benchmarks: every IKE message parsed in full, ESP to its header, nothing tracked
            from pcapvpn.decode import DissectSink

            decoder = Decoder(DissectSink(), options.limits)
            _decode(decoder, sources, options)
            decoder.finish()
            return Result(build_report(sources, decoder, None))
        if options.stop_after == "decode":
            decoder = Decoder(NullSink(), options.limits)
            _decode(decoder, sources, options)
            decoder.finish()
            return Result(build_report(sources, decoder, None))
        from pcapvpn.track import Tracker

        tracker = Tracker(options.thresholds, names, options.keys, options.vpn_servers)
        decoder = Decoder(tracker, options.limits, vpn_servers=options.vpn_servers)
        _decode(decoder, sources, options)
        decoder.finish()
        tracker.finish()
        result = diagnose(sources, decoder, tracker, options)
        result.sources = sources
        return result
    finally:
        for s in sources:
            s.close()


def _frames(sources, options):
    frames = merge_frames(sources)
    if options.progress is not None:
        frames = _with_progress(frames, sources, options.progress)
    return frames


def _decode(decoder, sources, options) -> None:
    """One file: push its frames (the copy-free ESP fast path); several: merge them by time."""
    if len(sources) == 1:
        src = sources[0]
        hook = None
        if options.progress is not None:
            import os

            try:
                total = os.path.getsize(src.name) if src.name != "-" and not src.compressed else 0
            except OSError:
                total = 0
            if total:
                def hook(offset, _p=options.progress, _n=src.name, _t=total):
                    _p(_n, offset, _t)
        decoder.run_source(src, hook, batch=options.batch)
        if hook is not None:
            options.progress(src.name, 1, 1)
        return
    decoder.run(_frames(sources, options))


def _with_progress(frames, sources, progress):
    """Report progress by file offset (regular files only; stdin and gzip have no known size)."""
    import os

    sizes = {}
    for s in sources:
        try:
            sizes[s.index] = os.path.getsize(s.name) if not s.compressed and s.name != "-" else 0
        except OSError:
            sizes[s.index] = 0
    total = sum(sizes.values())
    if not total:
        yield from frames
        return
    done_before = {}
    acc = 0
    for s in sources:
        done_before[s.index] = acc
        acc += sizes[s.index]
    n = 0
    label = sources[0].name if len(sources) == 1 else f"{len(sources)} files"
    for f in frames:
        n += 1
        if not n & 0xFFFF:
            progress(label, done_before[f[0]] + f[6], total)
        yield f
    progress(label, total, total)


def diagnose(sources, decoder, tracker, options, now=None) -> Result:
    """Rules over the tracked state (``now``: end of capture offline, the clock live)."""
    from pcapvpn.rules import run_rules
    from pcapvpn.rules.common import Context
    from pcapvpn.rules.verdict import tunnel_verdicts

    report = build_report(sources, decoder, tracker)
    cap = report.capture
    if now is None:
        now = max((s.last_ts for s in sources if s.last_ts is not None), default=0.0)
    state = tracker.state(now, capture=cap)
    state.expect_peers = list(options.expect_peers)
    findings = run_rules(state)
    ctx = Context(state)
    verdicts = tunnel_verdicts(ctx, findings)
    start = cap.start_ts
    names = tracker.names
    report.findings = findings
    vmap = {v.tunnel: v for v in verdicts}
    report.tunnels = [m.tunnel_dict(t, vmap[t.id], start) for t in state.tunnels]
    report.tunnels += [m.vpn_tunnel_dict(t, vmap[t.id], start, names) for t in state.vpn_tunnels]
    report.ike_sas = [m.ike_sa_dict(sa, start, names) for sa in state.ike_sas]
    _message_texts(state.ike_sas, report.ike_sas)
    report.esp_sas = [m.esp_sa_dict(sa, start, names) for sa in state.esp_sas]
    report.nat_keepalives = [m._conventions(m._plain(k), start, names) for k in state.keepalives]
    report.thresholds = asdict(options.thresholds)
    if options.logs:
        findings = _apply_logs(report, state, findings, options.logs)
    return Result(report, state, findings, verdicts)


def _apply_logs(report, state, findings, sources) -> list:
    """Gateway evidence (--log): aligned, linked to the findings, contradictions and counter
    comparisons added after the verdicts (a log never changes a verdict)."""
    from pcapvpn.rules.common import Context
    from pcapvpn.rules.logs import apply_logs

    outcome = apply_logs(Context(state), findings, sources)
    report.findings = findings + outcome.findings
    report.log_sources = outcome.sources
    report.log_events = outcome.events
    report.log_tunnel_facts = outcome.tunnel_facts  # not serialised: for a verdict hook
    return report.findings


def _message_texts(sas, dicts) -> None:
    """Add the cleartext texts of each IKE message to its dict: ``vendor_ids`` (known name, or the
    text of a printable unknown one, else ``UNKNOWN:<hex>``) and ``identities`` (ID payloads sent
    in the clear: IKEv1 Aggressive Mode, anything unencrypted).  Capture text: renderers escape it,
    --redact replaces identities.  (Belongs in model.ike_message_dict; kept here for now.)"""
    from dissect.vpn import registry as reg
    from dissect.vpn import vendor_ids as vid

    for sa, d in zip(sas, dicts):
        for msg, md in zip(sa.messages, d["messages"]):
            names = []
            for v in msg.vendor_ids or ():
                v = bytes(v)
                if vid.lookup(v) is None and v and all(0x20 <= b < 0x7F for b in v):
                    names.append(repr(v.decode("ascii"))[1:-1])
                else:
                    names.append(vid.describe(v))
            ids = []
            parsed = getattr(msg, "msg", None)
            for p in getattr(parsed, "payloads", ()) or ():
                if getattr(p, "type", None) not in ((35, 36) if msg.version == 2 else (5,)) \
                        or not hasattr(p, "id_type"):
                    continue
                ids.append(f"{reg.payload_name(msg.version, p.type)} "
                           f"{reg.id_type_name(msg.version, p.id_type)} {_id_text(p)}")
            md["vendor_ids"] = names
            md["identities"] = ids


def _id_text(p) -> str:
    v = p.value
    if isinstance(v, str):
        return v
    if isinstance(v, tuple) and len(v) == 2 and all(len(x) in (4, 16) for x in v):
        return f"{m.addr(v[0])}/{m.addr(v[1])}"
    if isinstance(v, (bytes, bytearray)) and len(v) in (4, 16) and p.id_type in (1, 5):
        return m.addr(bytes(v))
    b = bytes(p.data)
    if b and all(0x20 <= c < 0x7F for c in b):
        return b.decode("ascii")
    return f"<{len(b)} bytes> {b[:32].hex()}"


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
        for idx, itf in enumerate(s.interfaces):
            st = (isb.get(idx) if isinstance(isb, dict) else (isb[idx] if idx < len(isb) else None)) or {}
            if_drop = st.get("ifdrop")
            os_drop = st.get("osdrop")
            if if_drop is not None:
                if_drop_total = (if_drop_total or 0) + if_drop
            if os_drop is not None:
                os_drop_total = (os_drop_total or 0) + os_drop
            ifaces.append(m.Interface(idx, itf.linktype, linktype_name(itf.linktype), itf.snaplen,
                                      getattr(itf, "name", None), if_drop, os_drop))
        for lt, c in s.linktypes.items():
            linktypes[linktype_name(lt)] += c
        files.append(m.FileInfo(s.name, s.format, s.compressed, s.frame_count, s.byte_count,
                                m.Time.of(s.first_ts, start), m.Time.of(s.last_ts, start),
                                ifaces, list(s.warnings)))
        warnings.extend(s.warnings)

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
                elif msg.sport == 4500 or msg.dport == 4500:
                    counts.ike_udp_4500 += 1
                else:
                    counts.ike_udp_500 += 1
        counts.ike += it.header_errors
        for e in tracker.esp_tracker.all_sas():
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
        counts.nat_keepalives = tracker.keepalive_tracker.count
        counts.icmp_errors = len(tracker.icmp_errors) + tracker.icmp_dropped
        errs = list(tracker.decode_errors) + list(it.parse_errors)
        samples = [m.DecodeError(names[ref[0]], ref[1], reason) for ref, reason in errs[:1000]]
    by_reason = Counter(decoder.errors_by_reason)
    n_errors = dc["decode_errors"]
    if tracker is not None:
        for _ref, reason in tracker.ike_tracker.parse_errors:
            by_reason[reason] += 1
        n_errors += len(tracker.ike_tracker.parse_errors)
    summary = m.CaptureSummary(
        files=files,
        frames=dc["frames"],
        start=m.Time.of(start, start),
        end=m.Time.of(end, start),
        duration=round(end - start, 6) if start is not None else 0.0,
        linktypes=dict(linktypes),
        drops={"if_drop": if_drop_total, "os_drop": os_drop_total},
        counts=counts,
        decode_errors=n_errors,
        decode_errors_by_reason=dict(by_reason),
        decode_error_samples=samples,
        warnings=warnings,
    )
    summary.start_ts = start  # not serialised: for relative times
    return m.Report(tool="pcapvpn", version=__version__, capture=summary)
