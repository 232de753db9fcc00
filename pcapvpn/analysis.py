"""Run the pipeline over capture files and build the report model.

sources → decode → track → rules → model.  The CLI, live mode and the tests call :func:`analyze`.
"""

from __future__ import annotations

import gc
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from dissect.vpn.ip import Port
from pcapvpn import __version__
from pcapvpn import model as m
from pcapvpn.decode import Decoder, NullSink
from pcapvpn.limits import Limits
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
    with no_gc():
        return _run(paths, options)


def _run(paths, options: Options | None = None) -> Result:
    options = options or Options()
    if (options.jobs != 1 or options.workers is not None) and not options.vantage:
        from pcapvpn import parallel

        jobs = parallel.jobs_for(paths, options)
        if jobs > 1:
            try:
                result = _run_once(paths, options, jobs)
            except parallel.Fallback as exc:
                result = _run_once(paths, options)
                result.parallel = {"slices": 0, "fallback": str(exc)}
            return result
    return _run_once(paths, options)


def _run_once(paths, options: Options, jobs: int = 1) -> Result:
    if options.vantage:
        return run_points(options)
    sources = []
    stop_workers = None
    order = None  # --jobs: the files' order of reading
    try:
        if jobs > 1:
            from pcapvpn.parallel import sliced_sources

            esp = (options.thresholds, options.limits) if options.stop_after == "full" else None
            sources, order, stop_workers = sliced_sources(
                paths, jobs, options.batch, options.slice_at, options.workers, esp)
        for i, p in enumerate(paths if order is None else ()):
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
        decoder = Decoder(tracker, options.limits, vpn_servers=options.vpn_servers)
        _decode(decoder, sources, options, order)
        decoder.finish()
        tracker.finish()
        result = diagnose(sources, decoder, tracker, options)
        result.sources = sources
        if jobs > 1:
            result.parallel = {"slices": sum(s.reader.slices for s in sources)}
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


def _point_frames(sources, iface):
    """The frames of one interface (``#IFACE``: an interface name or description, or the
    global interface number) of a point's files, merged by time."""
    import heapq

    def one(src):
        memo: dict = {}
        if iface.startswith("ifindex="):  # a Linux -i any capture: the SLL2 interface index
            from dissect.vpn.link import cooked_header

            want = int(iface[8:]) if iface[8:].isdigit() else -2
            for f in src.frames(interfaces=True):
                ck = cooked_header(f[3], f[4])
                if ck is not None and ck[0] == want:
                    yield f
            return
        for f in src.frames(interfaces=True):
            i = f[7]
            ok = memo.get(i)
            if ok is None:
                ok = memo[i] = _iface_matches(src, i, iface)
            if ok:
                yield f

    streams = [one(s) for s in sources]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda f: (f[2], f[0], f[1]))


def _iface_matches(src, i, want) -> bool:
    if want.isdigit():
        return i == int(want)
    ifs = src.interfaces
    if i >= len(ifs):
        return False
    itf = ifs[i]
    return want in (getattr(itf, "name", None), getattr(itf, "description", None))


def run_points(options: Options) -> Result:
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


def _frames(sources, options, interfaces=False):
    frames = merge_frames(sources, interfaces)
    if options.progress is not None:
        frames = _with_progress(frames, sources, options.progress)
    return frames


def _decode(decoder, sources, options, order=None) -> None:
    """One file: push its frames (the copy-free ESP fast path); several: merge them by time
    (``order``, --jobs: one file after the other in that order, when that is the same)."""
    if order is not None and len(sources) > 1:
        from pcapvpn.parallel import check_order

        import os

        total = sum(os.path.getsize(s.name) for s in sources)
        done = 0
        for k, i in enumerate(order):
            check_order(sources, order, k)
            hook = None
            if options.progress is not None:
                def hook(offset, _p=options.progress, _d=done):
                    _p(f"{len(sources)} files", _d + offset, total)
            decoder.run_source(sources[i], hook, batch=options.batch)
            done += os.path.getsize(sources[i].name)
        if options.progress is not None:
            options.progress(f"{len(sources)} files", total, total)
        return
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
    decoder.run(_frames(sources, options, True), interfaces=True)


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


def diagnose(sources, decoder, tracker, options, now=None, points=None) -> Result:
    """Rules over the tracked state (``now``: end of capture offline, the clock live).
    ``points``: several vantage points (the first is this tracker's), matched before the
    rules run."""
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
    findings = run_rules(state)
    ctx = Context(state)
    if points:
        from pcapvpn.rules.path import locate

        locate(ctx, findings)
    verdicts = tunnel_verdicts(ctx, findings)
    start = cap.start_ts
    names = tracker.names
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


#: findings listed, and IKE messages listed over all IKE SAs, at most this many times
#: ``Limits.report_max_items``
TOTAL_ITEMS = 5


def capture_end(sources) -> float:
    """When the capture stopped: its last frame, or later when a file says it ran on (pcapng
    ``isb_endtime``, which live ``--write`` and dumpcap record): absences are judged up to it."""
    last = max((s.last_ts for s in sources if s.last_ts is not None), default=0.0)
    ended = [e for s in sources if (e := getattr(s, "ended", None)) is not None]
    return max([last] + ended) if last else last


def _exchange_status(ctx, sas, dicts, limits) -> None:
    """Each listed exchange's ``status`` as the rules judge it: ``answered``, ``unanswered``, or
    ``pending`` (the capture ended before an answer was due: not visible, never a failure)."""
    from pcapvpn.rules.common import exchange_status

    for sa, d, limit in zip(sas, dicts, limits):
        for x, xd in zip(m.kept(sa.exchanges, limit, ends=True)[0], d["exchanges"]):
            xd["status"] = exchange_status(ctx, x)


def _build_lists(report, state, findings, vmap, start, names, limit, ctx) -> None:
    """The report's lists: at most ``limit`` objects of each in full (``Limits.report_max_items``:
    a flood of a million SAs gives a report of bounded size), the rest counted in
    ``report.omitted``; findings, and the messages of all listed IKE SAs, at most
    ``TOTAL_ITEMS`` times that many.  A tunnel names only SAs and findings the report lists
    (its own ``omitted`` counts the others); the primary finding of a listed tunnel is always
    listed, and so is the first finding of each code and severity (the exit status stays that
    of the whole analysis)."""
    from pcapvpn.findings import finding_groups

    omitted = report.omitted
    tunnels = [(True, t) for t in state.tunnels] + [(False, t) for t in state.vpn_tunnels]
    tunnels, n = m.kept(tunnels, limit)
    gone_tunnels = set()
    if n:
        omitted["tunnels"] = n
        rest = [t for t in state.tunnels] + [t for t in state.vpn_tunnels]
        rest = rest[len(tunnels):]
        gone_tunnels = {t.id for t in rest}
        omitted["tunnel_verdicts"] = dict(Counter(vmap[t.id].verdict for t in rest))
    ike_sas, n = m.kept(state.ike_sas, limit)
    if n:
        omitted["ike_sas"] = n
    esp_sas, n = m.kept(state.esp_sas, limit)
    if n:
        omitted["esp_sas"] = n
    keepalives, n = m.kept(state.keepalives, limit)
    if n:
        omitted["nat_keepalives"] = n
    primaries = {vmap[t.id].primary for _ipsec, t in tunnels}
    listed = []
    per_kind: Counter = Counter()
    left: Counter = Counter()
    budget = TOTAL_ITEMS * limit
    for f in findings:
        kind = (f.code, f.severity)
        if f.id not in primaries and per_kind[kind] and (
                f.tunnel in gone_tunnels or per_kind[kind] >= limit or len(listed) >= budget):
            left[f.code] += 1
            continue
        per_kind[kind] += 1
        listed.append(f)
    if left:
        omitted["findings"] = dict(left)
    report.findings = listed
    report.groups = finding_groups(listed)
    # the messages of all listed IKE SAs together: at most TOTAL_ITEMS * limit (each SA shows
    # at least its first and last message)
    report.ike_sas = []
    shown = []
    budget = TOTAL_ITEMS * limit
    for sa in ike_sas:
        allow = max(2, min(limit, budget))
        budget -= min(len(sa.messages), allow)
        report.ike_sas.append(m.ike_sa_dict(sa, start, names, allow))
        shown.append(allow)
    _message_texts(ike_sas, report.ike_sas, shown)
    _exchange_status(ctx, ike_sas, report.ike_sas, shown)
    report.esp_sas = [m.esp_sa_dict(sa, start, names) for sa in esp_sas]
    report.nat_keepalives = [m._conventions(m._plain(k), start, names) for k in keepalives]
    im = state.inner_models
    report.tunnels = [m.tunnel_dict(t, vmap[t.id], start, im.get(t.id), names) if ipsec
                      else m.vpn_tunnel_dict(t, vmap[t.id], start, names, im.get(t.id))
                      for ipsec, t in tunnels]
    cap = report.capture
    if cap.damage:
        # what of each tunnel's own span the readable parts of the damaged capture cover
        for (_ipsec, t), d in zip(tunnels, report.tunnels):
            d["coverage"] = m.coverage(t.first_ts, t.last_ts, cap.gaps, start, cap.gap_extra)
    _trim_tunnels(report, limit)
    if omitted:
        files, n = m.kept(cap.files, limit)
        if n:
            cap.files = files
            omitted["files"] = n
        warnings, n = m.kept(cap.warnings, limit)
        if n:
            cap.warnings = warnings
            omitted["warnings"] = n
        what = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in omitted.items()
                         if isinstance(v, int))
        nf = sum(omitted.get("findings", {}).values())
        if nf:
            what += (", " if what else "") + f"{nf:,} findings"
        cap.warnings.append(f"report: not listed in full (at most {limit:,} of each kind): "
                            f"{what}; JSON counts them under 'omitted'")


def _trim_tunnels(report, limit) -> None:
    """A listed tunnel names only the IKE SAs, ESP SAs and findings the report lists, at most
    ``limit`` of each and of its "not seen" notes (the others counted in its own
    ``omitted``); nothing changes for a tunnel within the bounds."""
    ike = {d["id"] for d in report.ike_sas}
    esp = {f"{d.get('dst')}/{d.get('spi')}" for d in report.esp_sas}
    fids = {f.id for f in report.findings}
    for t in report.tunnels:
        om = {}
        for key, have in (("ike_sas", ike), ("esp_sas", esp), ("findings", fids),
                          ("not_seen", None)):
            lst = t[key]
            names, _n = m.kept([x for x in lst if have is None or x in have], limit)
            gone = len(lst) - len(names)
            if gone:
                t[key] = names
                om[key] = gone
        pairs = t["child_sa_pairs"]
        spis = {e.split("/")[-1] for e in t["esp_sas"]}
        keep = [p for p in pairs if all(x is None or x in spis for x in p)]
        keep, _n = m.kept(keep, limit)
        if len(keep) != len(pairs):
            t["child_sa_pairs"] = keep
            om["child_sa_pairs"] = len(pairs) - len(keep)
        if om:
            t["omitted"] = om


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


def _message_texts(sas, dicts, limits=None) -> None:
    """Add the texts of each listed IKE message to its dict: ``proposals`` (its SA payload,
    cleartext or decrypted, as strongSwan writes proposals), ``vendor_ids`` (known name, or the
    text of a printable unknown one, else ``UNKNOWN:<hex>``) and ``identities`` (ID payloads sent
    in the clear: IKEv1 Aggressive Mode, anything unencrypted).  Capture text: renderers escape it,
    --redact replaces identities.  (Belongs in model.ike_message_dict; kept here for now.)"""
    from dissect.vpn import registry as reg
    from dissect.vpn import vendor_ids as vid
    from dissect.vpn.ident import id_value_text
    from pcapvpn.rules.common import proposal_texts

    for i, (sa, d) in enumerate(zip(sas, dicts)):
        limit = limits[i] if limits is not None else None
        for msg, md in zip(m.kept(sa.messages, limit, ends=True)[0], d["messages"]):
            names = []
            for v in msg.vendor_ids or ():
                v = bytes(v)
                if vid.lookup(v) is None and v and all(0x20 <= b < 0x7F for b in v):
                    names.append(repr(v.decode("ascii"))[1:-1])
                else:
                    names.append(vid.describe(v))
            ids = [f"{reg.payload_name(msg.version, p.type)} "
                   f"{reg.id_type_name(msg.version, p.id_type)} {id_value_text(p)}"
                   for p in msg.ids]
            md["vendor_ids"] = names
            md["identities"] = ids
            # the SA payload as an operator writes proposals (a response holds the chosen one)
            if msg.proposals:
                md["proposals"] = proposal_texts(msg.version, msg.proposals)
            inner = getattr(msg, "inner", None)
            if md.get("decryption") is not None and inner and inner.proposals:
                md["decryption"]["proposals"] = proposal_texts(msg.version, inner.proposals)


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
                elif Port.NAT_T in (msg.sport, msg.dport):
                    counts.ike_udp_4500 += 1
                else:
                    counts.ike_udp_500 += 1
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
    )
    stopped = capture_end(sources)
    if end is not None and stopped > end:
        summary.stopped = m.Time.of(stopped, start)
    summary.start_ts = start  # not serialised: for relative times
    # not serialised: the unreadable intervals of time (and seconds of unplaced ones), for
    # model.coverage_share of any span (the verdict)
    summary.gaps = gaps
    summary.gap_extra = gap_extra
    return m.Report(tool="pcapvpn", version=__version__, capture=summary)
