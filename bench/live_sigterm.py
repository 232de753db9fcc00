#!/usr/bin/env python3
"""``pcapvpn live -i lo`` under a flood, then SIGTERM (issue 20): the time from the signal to the
final report on disk and to the process's exit, end to end (the capture loop's exit, the ring
drain, the rules, the report, the interpreter's exit).  Needs root (AF_PACKET on ``lo``).

    python bench/live_sigterm.py [--max-sas N ...] [--seconds S]

The frames of the lab captures mutated at random (``bench/mutated.py``) are sent on ``lo`` by a
thread of this process as fast as it can for ``--seconds``; the signal comes either while the
flood goes on ("flood on") or just after it stopped ("flood off").  Printed, not written to
RESULTS.md (copy the lines there with the load average they print).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from mutated import MutatedCapture, lab_frames  # noqa: E402


def _rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


#: ``--trace``: ``pcapvpn live`` run with the stop's steps wrapped (nothing in pcapvpn changes):
#: each step's wall-clock end (``time.time()``, as this process's signal time) on standard error
TRACE = r"""
import os, signal, sys, time
from pcapvpn.live import evaluate, finish, session
from pcapvpn.report import deliver as _deliver
from pcapvpn import cli, analysis

def mark(label):
    os.write(2, f"TRACE {label} {time.time():.6f} {time.process_time():.6f}\n".encode())

def wrap(owner, name, label):
    fn = getattr(owner, name, None)
    if fn is None:  # (an older tree)
        return
    def timed(*a, **kw):
        mark(label + ">")
        try:
            return fn(*a, **kw)
        finally:
            mark(label + "<")
    setattr(owner, name, timed)

import gc
def _gc(phase, info):  # the collector's full passes over the heap
    if info["generation"] == 2:
        mark("gc2" + (">" if phase == "start" else "<"))
gc.callbacks.append(_gc)
if os.environ.get("LIVE_SIGTERM_SPLIT_ABOVE"):  # --split-above
    from pcapvpn.rules.incremental import RuleCache
    RuleCache.SPLIT_ABOVE = int(os.environ["LIVE_SIGTERM_SPLIT_ABOVE"])
wrap(session.LiveSession, "finish", "finish")
wrap(evaluate.Evaluation, "_child_at_stop", "child")
wrap(evaluate.Evaluation, "_poll_child", "poll")
wrap(evaluate.Evaluation, "_abandon_child", "kill")
wrap(evaluate.Evaluation, "_evaluate", "evaluate")
wrap(analysis, "diagnose", "diagnose")
wrap(_deliver, "deliver", "deliver")
wrap(finish.Finish, "_judged_result", "late")  # the bound passed: the held report
_stop = session.LiveSession.stop
def stop(self, *a):
    mark("stop")
    child = self._child
    if child is not None:
        mark(f"child-running {time.perf_counter() - child[3]:.3f}")
    return _stop(self, *a)
session.LiveSession.stop = stop
_exit = os._exit
def exit_(code):
    mark("exit")
    _exit(code)
os._exit = exit_
sys.argv = ["pcapvpn"] + sys.argv[1:]
cli.main()
"""


def _trace(err: str, t_signal: float) -> str:
    """The stop's steps from ``--trace`` marks: seconds after the signal at each (from the
    last collector pass or collection of a forked evaluation that began before the signal)."""
    marks = []
    for line in err.splitlines():
        if line.startswith("TRACE "):
            parts = line.split()
            marks.append((" ".join(parts[1:-2]), float(parts[-2]) - t_signal))
    first = len(marks)
    for i, (label, t) in enumerate(marks):
        if t >= 0:
            first = i
            break
    while first > 0 and marks[first - 1][0] in ("gc2>", "poll>", "evaluate>"):
        first -= 1  # a step in progress at the signal
    return "; ".join(f"{label} {t:+.2f}" for label, t in marks[first:])


def run(max_sas: int, seconds: float, flood_on: bool, frames: list, trace: bool = False,
        split_above: int | None = None, report_within: float | None = None) -> str:
    out = Path(tempfile.mkdtemp()) / "report.json"
    env = dict(os.environ)
    if split_above is not None:
        env["LIVE_SIGTERM_SPLIT_ABOVE"] = str(split_above)
    cmd = ([sys.executable, "-c", TRACE] if trace else [sys.executable, "-m", "pcapvpn"])
    p = subprocess.Popen(cmd + ["live", "-i", "lo", "--max-sas",
                                str(max_sas), "--events", "none", "--quiet", "--format", "json",
                                "-o", str(out)]
                         + ([] if report_within is None else ["--report-within", f"{report_within:g}"]),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         cwd=BENCH.parent, env=env)
    # standard error read while it runs: the trace's marks would fill the pipe and block live
    err_chunks: list = []
    reader = threading.Thread(target=lambda: err_chunks.append(p.stderr.read()), daemon=True)
    reader.start()
    time.sleep(3)  # the ring is set up
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("lo", 0))
    stop = threading.Event()
    sent = [0]

    def send():
        i = 0
        n = len(frames)
        while not stop.is_set():
            try:
                s.send(frames[i % n])
            except OSError:
                pass
            i += 1
        sent[0] = i

    th = threading.Thread(target=send)
    th.start()
    time.sleep(seconds)
    rss = _rss_mb(p.pid)
    if not flood_on:
        stop.set()
        th.join()
    t_signal = time.time()
    t0 = time.perf_counter()
    p.send_signal(signal.SIGTERM)
    while not out.exists() and p.poll() is None:
        time.sleep(0.005)
    t_report = time.perf_counter() - t0
    p.wait()
    reader.join()
    err = b"".join(err_chunks)
    rc = p.returncode
    t_exit = time.perf_counter() - t0
    stop.set()
    th.join()
    size = out.stat().st_size / 1e6 if out.exists() else 0.0
    left = _left(out)
    late = _late(out)
    return (f"| {max_sas:,} | {'on' if flood_on else 'off'} | {seconds:.0f} s, {sent[0]:,} frames "
            f"sent | {rss} | {t_report:.2f} | {t_exit:.2f} | exit {rc}, {size:.1f} MB"
            + (f", {left:,} frames left in the ring" if left else "")
            + (f", the last evaluation's report ({late})" if late else "")
            + f" | {os.getloadavg()[0]:.1f} |" + (f" {_trace(err.decode(), t_signal)}" if trace
                                                  else ""))


def _left(path: Path) -> int:
    """The frames the stop's drain left in the ring, as the report's capture warnings count
    them (0: none, or a tree that does not count them)."""
    import json
    import re

    try:
        warnings = json.loads(path.read_text())["capture"]["warnings"]
    except (OSError, ValueError, KeyError):
        return 0
    return sum(int(m.group(1)) for w in warnings
               if (m := re.search(r"(\d+) frame\(s\) captured before the stop were still", w)))


def _late(path: Path) -> str:
    """When the stop's rules were late (``--report-within``): how old the report is and how many
    frames came after it, from its capture warning ("" otherwise)."""
    import json
    import re

    try:
        warnings = json.loads(path.read_text())["capture"]["warnings"]
    except (OSError, ValueError, KeyError):
        return ""
    for w in warnings:
        m = re.search(r"\(([\d.]+) s before the stop\); the (\d+) frame\(s\) read after", w)
        if m:
            return f"{m.group(1)} s old, {int(m.group(2)):,} frames after it"
    return ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-sas", type=int, nargs="+", default=[2_000, 20_000])
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--trace", action="store_true",
                    help="the stop's steps, seconds after the signal, after each row (live run "
                         "with its stop's functions wrapped)")
    ap.add_argument("--repeat", type=int, default=1, help="each row this many times")
    ap.add_argument("--split-above", type=int, default=None, metavar="N",
                    help="with --trace: the stop's rules shared with a forked process from N SAs "
                         "in the dirty part (RuleCache.SPLIT_ABOVE; a huge N: never)")
    ap.add_argument("--report-within", type=float, default=None, metavar="S",
                    help="live's --report-within (default: live's own)")
    ap.add_argument("--flood", choices=("both", "off", "on"), default="both",
                    help="the flood at the signal: stopped, running, or each in turn (default)")
    args = ap.parse_args(argv)
    if args.split_above is not None and not args.trace:
        ap.error("--split-above needs --trace")
    cap = MutatedCapture(lab_frames(), per_read=2000, step=0.0005)
    frames: list = []
    while len(frames) < 200_000:
        batch: list = []
        cap.read(batch, 0, 0)
        frames += [f[4] for f in batch if len(f[4]) >= 14]
    print("| --max-sas | flood at the signal | flood | RSS MB before the signal (ring "
          "included) | SIGTERM → report file s | SIGTERM → exit s | result | load (1 min) |")
    print("|---:|---|---|---:|---:|---:|---|---:|")
    for max_sas in args.max_sas:
        for _ in range(args.repeat):
            for flood_on in {"both": (False, True), "off": (False,), "on": (True,)}[args.flood]:
                print(run(max_sas, args.seconds, flood_on, frames, args.trace, args.split_above,
                          args.report_within), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
