"""Run the pipeline over capture files and build the report model.

sources → decode → track → rules → model.  The CLI, live mode and the tests call :func:`analyze`.

The rooms: this module runs the pipeline (:func:`run`, :func:`diagnose`, several vantage points
in :func:`run_points`); :mod:`.feed` hands the sources' frames to the decoder (merged by time,
one interface of a file, progress); :mod:`.summary` builds the capture summary of the report
(files, interfaces, counts, damage: :func:`.summary.build_report`); :mod:`.lists` fills the
report's lists from the rules' results (findings, tunnels, SAs, within the report's bounds) and
adds the gateway logs.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from pcapvpn import model as m
from pcapvpn.analysis.feed import _decode, _frames, _point_frames
from pcapvpn.analysis.lists import _apply_logs, _build_lists
from pcapvpn.analysis.summary import _drops, build_report, capture_end
from pcapvpn.decode import Decoder, NullSink
from pcapvpn.limits import Limits
from pcapvpn.sources import open_source
from pcapvpn.thresholds import DEFAULT, Thresholds

STAGES = ("read", "decode", "dissect", "full")


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
    #: decryption keys (--keys): a pcapvpn.decrypt.keys.KeyStore, or None
    keys: object = None
    #: SSL-VPN servers (--vpn-server ADDR[:PORT]): (packed address, port or None)
    vpn_servers: list = field(default_factory=list)
    #: hand ESP of the common shapes over a chunk at a time (dissect.vpn.batch); False: one
    #: event per packet (the same result, slower; the tests compare the two)
    batch: bool = True
    #: gateway evidence (--log): pcapvpn.logsrc.LogSource objects (read before the capture)
    logs: list = field(default_factory=list)
    #: several vantage points (--vantage NAME=FILE[#IFACE]): ``[(name, [paths], iface or
    #: None)]``; the first is the point the report's tunnels, findings and times are of
    vantage: list = field(default_factory=list)
    #: worker processes for big capture files (``--jobs``; :mod:`pcapvpn.parallel`): 1 a
    #: single pass, 0 the cores available; the report is the same either way
    jobs: int = 1
    #: tests: cut the files at these record offsets, ``[offsets]`` (every file) or ``{file index:
    #: [offsets]}`` (default: pcapvpn.parallel.plan and cut_points)
    slice_at: list | dict | None = None
    #: who reads the slices: None local worker processes, "serial" this process (tests), or a
    #: ``pcapvpn.parallel.DaskPool`` (``--dask SCHEDULER``: the tasks of a Dask cluster)
    workers: object = None


@dataclass
class Result:
    """Everything an analysis produced: the report model plus the live objects behind it."""

    report: m.Report
    state: object = None
    findings: list = field(default_factory=list)
    verdicts: list = field(default_factory=list)
    #: the (closed) sources: their ``fetch(numbers)`` reads evidence frames again
    sources: list = field(default_factory=list)
    #: --vantage: the points (pcapvpn.track.vantage.Point), the first one's first
    points: list = field(default_factory=list)
    #: --jobs: ``{"slices": n}``, or ``{"slices": n, "fallback": why}`` when the slices did not
    #: line up with a single pass and the file was analysed in one pass instead; None: one pass
    parallel: dict | None = None


def analyze(paths, options: Options | None = None) -> m.Report:
    """Analyse the capture files ``paths`` (``-`` = stdin); raises SourceError for bad inputs."""
    return run(paths, options).report


@contextmanager
def no_gc():
    """The cyclic garbage collector paused for a block (re-enabled after, if it was on).

    An analysis allocates millions of small objects that all stay alive (SAs, messages, their
    indexes) or die by reference counting (events, findings); the collector's passes over the
    growing heap cost 15-40 % of the time of a big analysis or a live evaluation and find
    nothing.  The few reference cycles made meanwhile are collected once it is back on."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def run(paths, options: Options | None = None) -> Result:
    options = options or Options()
    with no_gc():
        return _in_time_order(paths, options, _run(paths, options))


def _in_time_order(paths, options: Options, result: Result) -> Result:
    """A capture file that is not in time order (its readers counted frames earlier than a
    frame before them) is analysed again with its frames read in time order, as ``reordercap``
    would write them, each keeping its frame number (:meth:`pcapvpn.sources.Source.time_ordered`;
    several files: merged by time as always).  Files that cannot be read again or indexed
    (:func:`pcapvpn.sources.file_order_why`) stay in file order; CAPTURE_OUT_OF_ORDER says which.
    With --jobs the second analysis is one pass."""
    from pcapvpn.sources import file_order_why

    if options.stop_after != "full":
        return result
    limit = (options.limits or Limits()).reorder_max_records
    again = {s.index: limit for s in result.sources
             if s.out_of_order and file_order_why(s, limit) is None}
    if not again:
        return result
    ordered = _run_once(paths, options, reorder=again)
    if result.parallel is not None:
        ordered.parallel = {"slices": 0, "fallback": "not in time order: the file is read in "
                                                     "time order in one pass"}
    return ordered


def _run(paths, options: Options | None = None) -> Result:
    options = options or Options()
    if (options.jobs != 1 or options.workers is not None) and not options.vantage:
        from pcapvpn import parallel

        jobs = parallel.jobs_for(paths, options)
        if jobs > 1:
            try:
                result = _run_once(paths, options, jobs)
            except parallel.Fallback as exc:
                if "-" in paths:  # a stream reads on alone instead (pcapvpn.parallel.stream)
                    raise RuntimeError(f"-: standard input cannot be read again ({exc})") \
                        from exc
                result = _run_once(paths, options)
                result.parallel = {"slices": 0, "fallback": str(exc)}
            return result
    return _run_once(paths, options)


def _run_once(paths, options: Options, jobs: int = 1, reorder: dict | None = None) -> Result:
    """One analysis; ``reorder``: ``{file index: records}`` the files to read in time order."""
    if options.vantage:
        return run_points(options, reorder)
    sources = []
    stop_workers = None
    order = None  # --jobs: the files' order of reading
    try:
        if jobs > 1:
            from pcapvpn.decode import lane_ports
            from pcapvpn.parallel import sliced_sources

            esp = (options.thresholds, options.limits) if options.stop_after == "full" else None
            sources, order, stop_workers = sliced_sources(
                paths, jobs, options.batch, options.slice_at, options.workers, esp,
                lane_ports(vpn_servers=options.vpn_servers), options.spool_stdin)
            if esp is not None:
                # the rule modules' imports (0.15 s) while the workers read, not after them
                # (parallel.FIXED_BYTES counts them)
                from pcapvpn.rules import load_all

                load_all()
        for i, p in enumerate(paths if order is None else ()):
            sources.append(open_source(p, i, spool=options.spool_stdin and p == "-"))
            sources[-1].reorder = (reorder or {}).get(i, 0)
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
            _decode(decoder, sources, options, order)
            decoder.finish()
            return Result(build_report(sources, decoder, None))
        if options.stop_after == "decode":
            decoder = Decoder(NullSink(), options.limits)
            _decode(decoder, sources, options, order)
            decoder.finish()
            return Result(build_report(sources, decoder, None))
        from pcapvpn.track import Tracker

        tracker = Tracker(options.thresholds, names, options.keys, options.vpn_servers,
                          options.limits, interfaces={s.index: s.interfaces for s in sources})
        sampler = None
        if len(sources) > 1 and jobs <= 1:
            # for the --vantage hint: the same ESP in two files?  (With --jobs the files are
            # rotated pieces read one after the other: overlapping files run as one pass.)
            from pcapvpn.track.vantage import EspPairSampler

            sampler = EspPairSampler()
            tracker.esp = sampler.wrap(tracker.esp)
        if jobs > 1:  # the workers' ESP SA states merge into this tracker's
            for s in sources:
                s.reader.esp_tracker = tracker.esp_tracker
                s.reader.encap_flows = tracker.encap_flows
        decoder = Decoder(tracker, options.limits, vpn_servers=options.vpn_servers)
        _decode(decoder, sources, options, order)
        decoder.finish()
        tracker.finish()
        result = diagnose(sources, decoder, tracker, options)
        result.sources = sources
        if jobs > 1:
            result.parallel = {"slices": sum(s.reader.slices for s in sources)}
            for s in sources:  # a stream the parent read on alone from a slice (and why)
                if getattr(s.reader, "tail", None):
                    result.parallel["tail"] = s.reader.tail
        _several_points_hint(result, tracker, names, sampler, sources)
        return result
    finally:
        if stop_workers is not None:
            stop_workers()
        for s in sources:
            s.close()


def _several_points_hint(result, tracker, names, sampler=None, sources=()) -> None:
    """Plain inputs are pieces of one point; two that hold the same IKE messages (or, without
    IKE in common, the same ESP: ``sampler``) at a steady time difference, or two interfaces of
    one file that do, are two points of the same traffic: say so, suggest ``--vantage``."""
    from pcapvpn.findings import finding_groups
    from pcapvpn.rules.path import several_points_finding
    from pcapvpn.track.vantage import same_interfaces_hint, same_packets_hint

    hint = same_packets_hint(tracker, names, sampler) if len(names) > 1 else None
    if hint is None:
        hint = same_interfaces_hint(tracker, sources)
    if hint is not None:
        f = several_points_finding(hint)
        result.report.findings.append(f)
        if result.findings is not result.report.findings:
            result.findings.append(f)
        result.report.groups = finding_groups(result.report.findings)


def run_points(options: Options, reorder: dict | None = None) -> Result:
    """Several vantage points (issue 16): each point's files are decoded and tracked on their
    own (the one-point fast path), the first point is diagnosed as usual, and the points'
    packets are matched (:mod:`pcapvpn.track.vantage`): clock offsets, where each packet
    vanished, path facts; the rules add ``PATH_LOSS`` and locations."""
    from pcapvpn.track.vantage import Point, PointTracker

    points = []
    all_sources = []
    try:
        index = 0
        for name, paths, iface in options.vantage:
            srcs = []
            for p in paths:
                srcs.append(open_source(p, index, spool=options.spool_stdin and p == "-"))
                srcs[-1].reorder = (reorder or {}).get(index, 0)
                all_sources.append(srcs[-1])
                index += 1
            points.append(Point(name, list(paths), iface, sources=srcs))
        names = [s.name for s in all_sources]
        for pt in points:
            tracker = PointTracker(options.thresholds, names, options.keys, options.vpn_servers,
                                   options.limits,
                                   interfaces={s.index: s.interfaces for s in pt.sources})
            decoder = Decoder(tracker, options.limits, vpn_servers=options.vpn_servers)
            if pt.iface is not None:
                decoder.run(_point_frames(pt.sources, pt.iface), interfaces=True)
            else:
                _decode(decoder, pt.sources, options)
            decoder.finish()
            tracker.finish()
            pt.tracker = tracker
            pt.decoder = decoder
            starts = [s.first_ts for s in pt.sources if s.first_ts is not None]
            pt.start = min(starts) if starts else None
            pt.end = capture_end(pt.sources) if starts else None
            pt.drops = _drops(pt.sources)
        first = points[0]
        result = diagnose(first.sources, first.decoder, first.tracker, options, points=points)
        result.sources = all_sources
        result.points = points
        return result
    finally:
        for s in all_sources:
            s.close()


def diagnose(sources, decoder, tracker, options, now=None, points=None, rules=None,
             verdicts=None) -> Result:
    """Rules over the tracked state (``now``: end of capture offline, the clock live).
    ``points``: several vantage points (the first is this tracker's), matched before the
    rules run.  ``rules``: what runs them (default :func:`pcapvpn.rules.run_rules`; live
    passes its :class:`pcapvpn.rules.incremental.RuleCache`'s ``run``); ``verdicts``: what
    judges the tunnels (default :func:`pcapvpn.rules.verdict.tunnel_verdicts`; live passes the
    same cache's ``verdicts``)."""
    from pcapvpn.rules import run_rules
    from pcapvpn.rules.common import Context
    from pcapvpn.rules.verdict import tunnel_verdicts

    report = build_report(sources, decoder, tracker)
    cap = report.capture
    if now is None:
        now = capture_end(sources)
    from pcapvpn.track.inner import pair

    pair(tracker.plain_tracker, sources)  # per-packet ties: frames read again (issue 15)
    state = tracker.state(now, capture=cap)
    state.expect_peers = list(options.expect_peers)
    if points:
        from pcapvpn.track.vantage import match

        state.vantage = match(points, options.thresholds, state.tunnels, state.vpn_tunnels)
    findings = (rules or run_rules)(state)
    ctx = Context(state)
    if points:
        from pcapvpn.rules.path import locate

        locate(ctx, findings)
    verdicts = (verdicts or tunnel_verdicts)(ctx, findings)
    return judged_report(report, state, findings, verdicts, ctx, tracker.names, options, points)


def judged_report(report, state, findings, verdicts, ctx, names, options, points=None) -> Result:
    """The end of :func:`diagnose`: ``report`` (:func:`build_report`'s, of the state's capture)
    completed with the rules' ``findings`` and the ``verdicts`` (the gateways' log lines tied
    to them, the report's lists).  Live's forked evaluations make the report of their state
    with it too (the stop's report when the final rules are late, :mod:`pcapvpn.live.finish`)."""
    start = report.capture.start_ts
    vmap = {v.tunnel: v for v in verdicts}
    if options.logs:
        findings = _apply_logs(report, state, findings, options.logs)
    _build_lists(report, state, findings, vmap, start, names,
                 (options.limits or Limits()).report_max_items, ctx)
    report.thresholds = asdict(options.thresholds)
    if points:
        report.vantage_points = m.vantage_points(points, start)
        report.vantage_inside = m.inside_dict(state.vantage, start)
        for d in report.tunnels:
            view = state.vantage.paths.get(d["id"])
            if view is not None:
                d["path"] = m.path_dict(view, start)
    return Result(report, state, findings, verdicts)
