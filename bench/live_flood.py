#!/usr/bin/env python3
"""``pcapvpn live`` under a long flood of mutated frames, in process (issue 20): resident memory
along the run with the size of every container that grows, and the stop path (``finish`` and the
JSON report) timed, optionally profiled.  No network interface: a ``LiveSession`` is fed
``bench/mutated.py``'s frames as ``bench/hostile_bench.py``'s live rows are (rules every 20,000
frames with expiry and eviction); the AF_PACKET path end to end is ``bench/live_sigterm.py``.

    python bench/live_flood.py --frames 1000000 --max-sas 2000 20000
    python bench/live_flood.py --frames 5000000 --max-sas 2000 --samples 25   # the RSS plateau
    python bench/live_flood.py --frames 300000 --max-sas 20000 --profile out.prof
    python bench/live_flood.py --frames 1000000 --max-sas 20000 --expiry-only --then 2000
    python bench/live_flood.py --frames 1000000 --max-sas 20000 --expiry-only --then 2000 --stops 3

Each ``--max-sas`` runs in a fresh process.  Printed, not written to RESULTS.md (copy the lines
there with the load averages they print).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from hostile_bench import _rss_mb  # noqa: E402 - this process's VmRSS in MB


def containers(s) -> dict:
    """The sizes of what the session holds that a flood can grow (entries)."""
    t = s.tracker
    out = {}

    def put(name, obj):
        try:
            out[name] = len(obj)
        except TypeError:
            pass

    it = t.ike_tracker
    put("ike_sas", it.sas)
    out["ike_msgs"] = it.kept
    put("esp_sas", t.esp_tracker._sas)
    put("vpn_tunnels", t.vpn_tracker.tunnels)
    for obj, prefix in ((t, "tracker"), (it, "ike"), (t.esp_tracker, "esp"),
                        (t.vpn_tracker, "vpn"), (s.decoder, "decoder")):
        for k, v in vars(obj).items():
            if isinstance(v, (dict, list, set)) and len(v) > 50:
                out[f"{prefix}.{k}"] = len(v)
    for k in ("nat_tracker", "keepalive_tracker", "plain_tracker", "icmp_tracker", "tcp_tracker"):
        sub = getattr(t, k, None)
        if sub is None:
            continue
        for kk, v in vars(sub).items():
            if isinstance(v, (dict, list, set)) and len(v) > 50:
                out[f"{k}.{kk}"] = len(v)
    # what the session holds that only the idle expiry emptied before (flat2): OpenVPN
    # sessions and their control channels' packet-ID sets, TCP reassembly directions
    sess = [x for tt in t.vpn_tracker.tunnels.values()
            if tt.protocol == "openvpn" and tt.st is not None for x in tt.st.sessions]
    out["openvpn_sessions"] = len(sess)
    out["openvpn_ctl_ids"] = sum(len(c.pids) + len(c.acked) for x in sess for c in x.ctl)
    out["tcp_reassembly_dirs"] = len(s.decoder.tcp.dirs)
    out["active"] = len(s.active)
    out["archived"] = len(s.archived)
    out["pending"] = len(s._pending)
    return out


def attribute(root, top: int = 200) -> dict:
    """``--attribute``: the bytes and objects held by ``root`` (the session), each object
    charged to the attribute it hangs from, ``Class.attr`` (the rssflat method, session 7):
    a breadth-first walk from the session, every object counted once (``sys.getsizeof``) and
    charged to the label of the first path that reaches it; the elements of a container (dict,
    list, set, tuple, deque) take its label.  Modules, classes and functions are not walked.
    Returns ``{label: [bytes, objects]}`` of the ``top`` largest."""
    import collections
    import types

    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
            types.MethodType, types.CodeType, types.FrameType)
    seen = {id(root)}
    out: dict = collections.defaultdict(lambda: [0, 0])
    queue = collections.deque([(root, "session")])
    while queue:
        obj, label = queue.popleft()
        b = out[label]
        b[0] += sys.getsizeof(obj)
        b[1] += 1
        children = []
        if isinstance(obj, dict):
            children = [(x, label) for kv in obj.items() for x in kv]
        elif isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
            children = [(x, label) for x in obj]
        elif not isinstance(obj, (str, bytes, bytearray, int, float, complex, bool, memoryview)):
            cls = type(obj).__name__
            d = getattr(obj, "__dict__", None)
            items = list(d.items()) if isinstance(d, dict) else []
            for k in type(obj).__mro__:
                for name in getattr(k, "__slots__", ()):
                    if hasattr(obj, name) and name != "__dict__":
                        items.append((name, getattr(obj, name)))
            if isinstance(d, dict):
                b[0] += sys.getsizeof(d)
            children = [(v, f"{cls}.{k}") for k, v in items]
        for x, lab in children:
            if id(x) in seen or isinstance(x, skip) or x is None:
                continue
            seen.add(id(x))
            queue.append((x, lab))
    ranked = sorted(out.items(), key=lambda kv: -kv[1][0])[:top]
    return {k: v for k, v in ranked}


def _alloc() -> dict:
    """Where the resident memory is (``--alloc``): Python's allocated blocks, pymalloc's arenas
    (1 MiB each) and the bytes in their used and free blocks, glibc malloc's heap in use and
    free (``mallinfo2``), so that RSS growing while the objects held do not shows as free space
    kept by an allocator (fragmentation), not as a container."""
    import ctypes
    import re
    import tempfile

    out = {"blocks": sys.getallocatedblocks()}
    with tempfile.TemporaryFile("w+") as f:  # _debugmallocstats writes to the C stderr
        sys.stderr.flush()
        fd = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(fd, 2)
            os.close(fd)
        f.seek(0)
        text = f.read()
    for key, name in (("arenas allocated current", "py_arenas"),
                      ("bytes in allocated blocks", "py_used"),
                      ("bytes in available blocks", "py_free")):
        m = re.search(r"# " + key + r"\s*=\s*([\d,]+)", text)
        if m:
            out[name] = int(m.group(1).replace(",", ""))

    class _Mi2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mi2
        mi = libc.mallinfo2()
        out.update(malloc_used=mi.uordblks + mi.hblkhd, malloc_free=mi.fordblks)
    except (OSError, AttributeError):  # not glibc, or glibc < 2.33
        pass
    return out


def _gc_counter() -> dict:
    """``--gc``: the cyclic collector's passes during the feed (``gc.callbacks``), per
    generation: ``[passes, CPU s, wall s, longest wall s, objects collected]``."""
    import gc

    out = {"0": [0, 0.0, 0.0, 0.0, 0], "1": [0, 0.0, 0.0, 0.0, 0], "2": [0, 0.0, 0.0, 0.0, 0]}
    mark = [0.0, 0.0]

    def cb(phase, info):
        if phase == "start":
            mark[0], mark[1] = time.perf_counter(), time.process_time()
            return
        w = time.perf_counter() - mark[0]
        x = out[str(info["generation"])]
        x[0] += 1
        x[1] += time.process_time() - mark[1]
        x[2] += w
        x[3] = max(x[3], w)
        x[4] += info["collected"]

    gc.callbacks.append(cb)
    return out


def _phases() -> dict:
    """CPU seconds of the stop path's steps: the functions ``finish`` and ``diagnose`` call,
    wrapped where they are looked up (nothing in pcapvpn changes)."""
    import pcapvpn.analysis as analysis
    import pcapvpn.rules as rules
    import pcapvpn.rules.verdict as verdict
    import pcapvpn.track.inner as inner
    from pcapvpn.live.session import LiveSession
    from pcapvpn.track import Tracker

    spent: dict = {}

    def wrap(owner, name, label):
        fn = getattr(owner, name)

        def timed(*a, **kw):
            c0 = time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - c0
        setattr(owner, name, timed)

    wrap(analysis, "build_report", "capture summary")
    wrap(inner, "pair", "plaintext ties")
    wrap(Tracker, "state", "tracker state")
    wrap(rules, "run_rules", "rules")
    wrap(verdict, "tunnel_verdicts", "verdicts")
    wrap(analysis, "_build_lists", "report lists")
    wrap(LiveSession, "_apply", "events")
    return spent


def _stop_in_fork(s, before: bool) -> dict:
    """The stop path in a forked child (the same held state for each run): ``before`` as
    at 443614c (the collector back on after ``finish``'s rules, ``json.dumps(indent=2)``),
    else as now.  Returns CPU and wall seconds of finish and JSON, and the document's hash."""
    import pickle

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        import gc

        from pcapvpn.analysis import no_gc
        from pcapvpn.report import render

        os.close(r)
        gc.enable()
        w0, c0 = time.perf_counter(), time.process_time()
        if before:
            res = s.finish()
            c1 = time.process_time()
            with no_gc():
                text = json.dumps(res.report.to_dict(), indent=2) + "\n"
        else:
            with no_gc():
                res = s.finish()
                c1 = time.process_time()
                text = render(res.report, "json")
        w2, c2 = time.perf_counter(), time.process_time()
        out = {"finish_cpu": c1 - c0, "json_cpu": c2 - c1, "cpu": c2 - c0, "wall": w2 - w0,
               "doc": _sha(json.dumps(json.loads(text), sort_keys=True))}
        with os.fdopen(w, "wb") as f:
            f.write(pickle.dumps(out))
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return pickle.loads(data)


def _side_by_side(s, repeat: int) -> dict:
    """Before and after on the same state, alternated ``repeat`` times; the best CPU of each."""
    runs: dict = {"before": [], "after": []}
    for _ in range(repeat):
        for kind in ("before", "after"):
            runs[kind].append(_stop_in_fork(s, kind == "before"))
    out = {}
    for kind, rs in runs.items():
        best = min(rs, key=lambda x: x["cpu"])
        out[kind] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in best.items()}
        out[kind]["cpu_all"] = [round(x["cpu"], 2) for x in rs]
    return out


def _stops(s, repeat: int) -> dict:
    """The stop path as now, ``repeat`` times, each in a fork of the same held state: the CPU
    of each run and the best (the document's hash is the same in every run)."""
    runs = [_stop_in_fork(s, False) for _ in range(repeat)]
    best = min(runs, key=lambda x: x["cpu"])
    out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in best.items()}
    out["cpu_all"] = [round(x["cpu"], 2) for x in runs]
    out["docs"] = sorted({x["doc"] for x in runs})
    return out


def child(frames_total: int, max_sas: int, samples_n: int, profile: str | None,
          seed: int = 20, phases: bool = False, ab: int = 0, expiry_only: bool = False,
          then: int = 0, alloc: bool = False, stops: int = 0,
          attribute_at: tuple = (), stop_child: str = "",
          split_above: int | None = None, gc_count: bool = False,
          collector: bool = False) -> dict:
    from mutated import MutatedCapture, lab_frames
    from pcapvpn.analysis import no_gc
    from pcapvpn.live import LiveOptions, LiveSession
    from pcapvpn.report import render

    cap = MutatedCapture(lab_frames(), seed=seed, per_read=2000, step=0.0005)
    clock = [cap.t]
    if split_above is not None:  # the stop's rules shared with a forked process from N SAs
        from pcapvpn.rules.incremental import RuleCache

        RuleCache.SPLIT_ABOVE = split_above
    s = LiveSession(LiveOptions(interfaces=["sim"], max_sas=max_sas), [],
                    clock=lambda: clock[0], captures=[cap])
    policy = None
    if collector:  # the collector's policy of ``pcapvpn live`` (run_command), when the tree has it
        try:
            from pcapvpn.live.collector import Collector
        except ImportError:
            Collector = None
        if Collector is not None:
            policy = s.collector = Collector()
            policy.start()
    gcs = _gc_counter() if gc_count else None
    load0 = os.getloadavg()[0]
    samples = [{"frames": 0, "rss": round(_rss_mb(), 1)}]
    done = 0
    t0 = time.perf_counter()
    step = max(frames_total // samples_n, 2000)
    nxt = step
    evals = []
    attributed = {}
    todo = sorted(attribute_at)
    while done < frames_total:
        done += s._feed(0, cap, [])
        clock[0] = cap.t
        if done % 20_000 < 2000:
            c0 = time.process_time()
            if expiry_only:  # the memory bound without the rules (a faster feed)
                s._prepare()
                s.tracker.expire(clock[0], s.opts.idle_expiry, s.opts.max_sas)
            else:
                s._evaluate(clock[0])
            evals.append(time.process_time() - c0)
        if done >= nxt:
            nxt += step
            samples.append({"frames": done, "rss": round(_rss_mb(), 1), **containers(s),
                            **(_alloc() if alloc else {}), **(_gc_objects() if gc_count else {})})
        if todo and done >= todo[0]:
            todo.pop(0)
            attributed[done] = attribute(s)
    feed = time.perf_counter() - t0
    if gcs is not None:
        gcs = {k: [v[0], round(v[1], 2), round(v[2], 2), round(v[3], 3), v[4]]
               for k, v in gcs.items()}
        if policy is not None:
            gcs["policy_full"] = [policy.full_passes, round(policy.full_seconds, 2)]
    steps = {}
    if then:
        # an evaluation of everything held, ``then`` frames and an evaluation (what one
        # interval changes), ``then`` frames more and the stop below
        from pcapvpn.analysis import no_gc as _no_gc

        with _no_gc():
            for label in ("eval_full", "eval_then"):
                c0 = time.process_time()
                s._evaluate(clock[0])
                steps[label] = round(time.process_time() - c0, 2)
                n = 0
                while n < then:
                    n += s._feed(0, cap, [])
                clock[0] = cap.t
    if stop_child:
        # a forked evaluation, ``then`` frames while it runs, and the stop when it is about to
        # end: its rules' cache merged ("merge") or the child killed ("kill", as before)
        import select

        assert s._fork_evaluation(clock[0])
        n = 0
        while n < max(then, 2000):
            n += s._feed(0, cap, [])
        clock[0] = cap.t
        select.select([s._child[1]], [], [])
        s.child_seconds = 1e-3 if stop_child == "merge" else 1e9
        s.STOP_WAIT = 60.0
        at_stop = s._child_at_stop

        def timed_at_stop(*a):  # its CPU (unpickling and merging the child's cache)
            chunks = s._child[2]
            c0 = time.process_time()
            try:
                return at_stop(*a)
            finally:
                steps["child_at_stop_cpu"] = round(time.process_time() - c0, 3)
                steps["child_bytes"] = sum(map(len, chunks))
        s._child_at_stop = timed_at_stop
    cap.dry = True  # the stop: nothing more arrives
    load1 = os.getloadavg()[0]
    ab = _side_by_side(s, repeat=ab) if ab else None
    stops_r = _stops(s, stops) if stops else None
    spent = _phases() if phases else None
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    with no_gc():  # as live's run_command: no collector pass from the stop to the report
        w0, c0 = time.perf_counter(), time.process_time()
        res = s.finish()
        w1, c1 = time.perf_counter(), time.process_time()
        text = render(res.report, "json")
        w2, c2 = time.perf_counter(), time.process_time()
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)
    return {"frames": done, "max_sas": max_sas, "samples": samples, "feed_s": round(feed, 1),
            "eval_cpu_last": round(evals[-1], 3) if evals else None,
            "finish_wall": round(w1 - w0, 2), "finish_cpu": round(c1 - c0, 2),
            "render_wall": round(w2 - w1, 2), "render_cpu": round(c2 - c1, 2),
            "stop_wall": round(w2 - w0, 2), "stop_cpu": round(c2 - c0, 2),
            "report_mb": round(len(text) / 1e6, 2), "report_sha": _sha(text),
            "phases": {k: round(v, 3) for k, v in (spent or {}).items()}, "ab": ab,
            "stops": stops_r, "stop_child": getattr(s, "stop_child", None),
            "evicted": s.tracker.evicted_sas, "expired": s.tracker.expired_sas,
            "steps": steps, "held": (len(s.tracker.ike_tracker.sas),
                                     len(s.tracker.esp_tracker._sas)),
            "cache": {k: v for k, v in getattr(getattr(s, "rule_cache", None), "stats",
                                                {}).items()
                      if k in ("groups", "dirty", "ike_sas", "esp_sas", "units")},
            "load": (round(load0, 2), round(load1, 2)), "attributed": attributed,
            "gc": gcs,
            # the collector policy's own work in the feed (trees that have it): full passes,
            # malloc_trim calls and their seconds
            "policy": None if policy is None else {
                "full_passes": policy.full_passes, "full_s": round(policy.full_seconds, 3),
                "trims": getattr(policy, "trims", None),
                "trim_s": round(getattr(policy, "trim_seconds", 0.0), 3)}}


def _gc_objects() -> dict:
    """With ``--gc``, at each sample: the objects the collector tracks and, of them, frozen."""
    import gc

    return {"gc_tracked": len(gc.get_objects()),
            "gc_frozen": gc.get_freeze_count() if hasattr(gc, "get_freeze_count") else 0}


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--max-sas", type=int, nargs="+", default=[2_000, 20_000])
    ap.add_argument("--samples", type=int, default=10, help="RSS samples along the run")
    ap.add_argument("--profile", help="cProfile the stop path into this file (one --max-sas)")
    ap.add_argument("--phases", action="store_true",
                    help="the stop path's CPU time per step (finish, diagnose)")
    ap.add_argument("--ab", type=int, default=0, metavar="N",
                    help="also run the stop path as before (443614c) and as now, alternated N "
                         "times, each in a fork of the same held state")
    ap.add_argument("--expiry-only", action="store_true",
                    help="during the feed only the memory bound every 20,000 frames, no rules "
                         "(a faster feed to a held state)")
    ap.add_argument("--then", type=int, default=0, metavar="N",
                    help="after the feed: an evaluation, N frames, an evaluation, N frames, the "
                         "stop (each timed)")
    ap.add_argument("--alloc", action="store_true",
                    help="with each RSS sample, the allocators' figures (Python blocks, pymalloc "
                         "arenas used / free, malloc in use / free): RSS against what is held")
    ap.add_argument("--stops", type=int, default=0, metavar="N",
                    help="after the feed (and --then): the stop N times, each in a fork of the "
                         "same held state (the best CPU; compare trees with PYTHONPATH)")
    ap.add_argument("--attribute", type=int, nargs="+", default=[], metavar="FRAMES",
                    help="at these frame counts, the bytes held by the session charged to the "
                         "attribute they hang from (Class.attr), and the change between the "
                         "first and the last")
    ap.add_argument("--stop-child", choices=("merge", "kill"), default="",
                    help="after the feed (and --then): a forked evaluation, --then frames (2,000 "
                         "at least) while it runs, and the stop when it is about to end: its "
                         "rules' cache merged (as live now does) or the child killed (before)")
    ap.add_argument("--split-above", type=int, default=None, metavar="N",
                    help="the stop's rules shared with a forked process when the dirty part "
                         "holds N SAs or more (RuleCache.SPLIT_ABOVE; a huge N: never)")
    ap.add_argument("--gc", action="store_true",
                    help="count the cyclic collector's passes during the feed per generation "
                         "(gc.callbacks: passes, CPU and wall seconds, the longest) and, at each "
                         "sample, the objects it tracks and of them frozen")
    ap.add_argument("--collector", action="store_true",
                    help="the collector's policy of `pcapvpn live` (pcapvpn.live.collector, "
                         "as run_command installs it), when the tree has it")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print the raw result lines")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.frames, args.max_sas[0], args.samples, args.profile,
                               phases=args.phases, ab=args.ab, expiry_only=args.expiry_only,
                               then=args.then, alloc=args.alloc, stops=args.stops,
                               attribute_at=tuple(args.attribute),
                               stop_child=args.stop_child, split_above=args.split_above,
                               gc_count=args.gc, collector=args.collector)))
        return 0
    for n in args.max_sas:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--frames",
               str(args.frames), "--max-sas", str(n), "--samples", str(args.samples)]
        if args.profile:
            cmd += ["--profile", args.profile]
        if args.phases:
            cmd.append("--phases")
        if args.ab:
            cmd += ["--ab", str(args.ab)]
        if args.expiry_only:
            cmd.append("--expiry-only")
        if args.then:
            cmd += ["--then", str(args.then)]
        if args.alloc:
            cmd.append("--alloc")
        if args.stops:
            cmd += ["--stops", str(args.stops)]
        if args.attribute:
            cmd += ["--attribute", *map(str, args.attribute)]
        if args.stop_child:
            cmd += ["--stop-child", args.stop_child]
        if args.split_above is not None:
            cmd += ["--split-above", str(args.split_above)]
        if args.gc:
            cmd.append("--gc")
        if args.collector:
            cmd.append("--collector")
        cp = subprocess.run(cmd, capture_output=True, text=True, cwd=BENCH.parent)
        if cp.returncode:
            print(f"--max-sas {n}: failed\n{cp.stderr[-2000:]}")
            continue
        r = json.loads(cp.stdout.strip().splitlines()[-1])
        if args.json:
            print(json.dumps(r))
            continue
        curve = ", ".join(f"{x['frames'] // 1000:,}k: {x['rss']:.0f}" for x in r["samples"])
        print(f"--max-sas {n:,}, {r['frames']:,} frames (fed in {r['feed_s']} s; last "
              f"evaluation {r['eval_cpu_last']} s cpu); load {r['load'][0]} / {r['load'][1]}")
        print(f"  RSS MB: {curve}")
        if args.alloc:
            mb = 1 / 1048576
            print("  allocators MB (pymalloc arenas / used / free, malloc used / free): " + ", ".join(
                f"{x['frames'] // 1000:,}k: {x.get('py_arenas', 0)} / {x.get('py_used', 0) * mb:.1f}"
                f" / {x.get('py_free', 0) * mb:.1f}, {x.get('malloc_used', 0) * mb:.1f} / "
                f"{x.get('malloc_free', 0) * mb:.1f}" for x in r["samples"][1:]))
        last = r["samples"][-1]
        print("  held at the end: " + ", ".join(f"{k} {v:,}" for k, v in last.items()
                                                 if k not in ("frames", "rss", "blocks", "py_arenas",
                                                              "py_used", "py_free", "malloc_used",
                                                              "malloc_free")))
        print(f"  stop: finish {r['finish_wall']} s ({r['finish_cpu']} cpu) + JSON "
              f"{r['render_wall']} s ({r['render_cpu']} cpu) = {r['stop_wall']} s "
              f"({r['stop_cpu']} cpu); report {r['report_mb']} MB sha {r['report_sha']}; "
              f"evicted {r['evicted']:,}, expired {r['expired']:,}")
        if r.get("steps"):
            print(f"  held {r['held'][0]:,} IKE / {r['held'][1]:,} ESP SAs; evaluation of all "
                  f"{r['steps']['eval_full']} s cpu, after {args.then:,} frames "
                  f"{r['steps']['eval_then']} s cpu, stop after {args.then:,} more (above); "
                  f"rule cache at the stop: {r.get('cache') or 'none'}")
        for kind, x in (r["ab"] or {}).items():
            print(f"  stop {kind}: finish {x['finish_cpu']} + JSON {x['json_cpu']} = {x['cpu']} s cpu "
                  f"({x['wall']} s wall; cpu of each run {x['cpu_all']}); document {x['doc']}")
        x = r.get("stops")
        if x:
            print(f"  stop x{args.stops} in forks of the held state: best finish {x['finish_cpu']} + "
                  f"JSON {x['json_cpu']} = {x['cpu']} s cpu ({x['wall']} s wall; cpu of each run "
                  f"{x['cpu_all']}); documents {x['docs']}")
        att = r.get("attributed") or {}
        if att:
            marks = sorted(att, key=int)
            first, last = att[marks[0]], att[marks[-1]]
            print(f"  held by the session, charged to the attribute it hangs from (MB / objects) "
                  f"at {', '.join(f'{int(m):,}' for m in marks)} frames, by growth:")
            labels = sorted(set(first) | set(last),
                            key=lambda k: -(last.get(k, [0, 0])[0] - first.get(k, [0, 0])[0]))
            for k in labels[:25]:
                cells = " -> ".join(f"{att[m].get(k, [0, 0])[0] / 1e6:.2f} / "
                                    f"{att[m].get(k, [0, 0])[1]:,}" for m in marks)
                print(f"    {k}: {cells}")
        g = r.get("gc")
        if g:
            print("  collector passes in the feed (passes, CPU s, wall s, longest s, collected): "
                  + ", ".join(f"gen {k}: {g[k]}" for k in ("0", "1", "2"))
                  + (f"; the policy's full passes {g['policy_full']}" if "policy_full" in g
                     else ""))
            print("  objects tracked / frozen: " + ", ".join(
                f"{x['frames'] // 1000:,}k: {x['gc_tracked']:,} / {x['gc_frozen']:,}"
                for x in r["samples"][1:]))
        if r.get("policy"):
            p = r["policy"]
            print(f"  collector policy: {p['full_passes']} full passes ({p['full_s']} s), "
                  f"malloc_trim {p['trims']} calls ({p['trim_s']} s)")
        if r["phases"]:
            print("  stop path cpu s: " + ", ".join(f"{k} {v}" for k, v in r["phases"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
