#!/usr/bin/env python3
"""Benchmark pcapvpn side by side with its anchors (tshark, dpkt, scapy) on one generated capture.

    python bench/run.py --packets 1000000            # ~10 minutes on 2 cores
    python bench/run.py --packets 1000000 --big      # + the 5M-packet memory run

Every tool runs as a subprocess under ``/usr/bin/time -v`` (peak RSS), sequentially, ``--repeat``
times on the same file; the best wall time is reported, the peak RSS is the largest seen.  Results
go to bench/RESULTS.md (and the raw numbers to bench/out/results.json).  See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PY = sys.executable
TIME = "/usr/bin/time"
STAGES = ("read", "decode", "dissect")

#: environment of the measured subprocesses (PYTHONPATH → the snapshot of pcapvpn, see main)
ENV: dict | None = None

TARGET_TSHARK = 4.0      # read+decode+classify >= 4x `tshark -q -Y frame`
TARGET_SCAPY = 50.0      # ... and >= 50x scapy
TARGET_FULL = 3.0        # full analysis >= 3x `tshark -q -Y frame` (the analyze issue)
TARGET_RSS_MB = 100.0    # peak memory of the full analyze (the analyze issue allows 150)
FLAT_TOLERANCE = 1.15    # 5M-packet RSS within 15 % of the 1M-packet RSS counts as flat
TARGET_JOBS = 1.8        # --jobs 2 >= 1.8x the single process (issue 19)
TARGET_JOBS_TSHARK = 5.0  # --jobs 2 >= 5x `tshark -q -Y frame` (issue 19)


# -------------------------------------------------------------------------------------------
# capture files


def _gen_digest() -> str:
    return hashlib.sha256((BENCH / "gen.py").read_bytes()).hexdigest()[:16]


def ensure_capture(packets: int, seed: int | None, out_dir: Path, log,
                   pps: int | None = None) -> tuple[Path, dict]:
    """Generate bench/out/vpn-<packets>[-pps<pps>].pcap unless an identical one (same generator
    source, same arguments) is already there.  Returns (path, ground truth)."""
    path = out_dir / (f"vpn-{packets}.pcap" if pps is None else f"vpn-{packets}-pps{pps}.pcap")
    truth_path = path.with_suffix(".json")
    meta_path = path.with_suffix(".meta")
    meta = {"packets": packets, "seed": seed, "pps": pps, "gen": _gen_digest()}
    if path.exists() and truth_path.exists() and meta_path.exists():
        try:
            if json.loads(meta_path.read_text()) == meta:
                log(f"reusing {_short(str(path))}")
                return path, json.loads(truth_path.read_text())
        except ValueError:
            pass
    cmd = [PY, str(BENCH / "gen.py"), "--packets", str(packets), "--out", str(path),
           "--ground-truth", str(truth_path)]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if pps is not None:
        cmd += ["--pps", str(pps)]
    log("generating " + " ".join(cmd[1:]))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    log(f"  {time.perf_counter() - t0:.1f} s")
    meta_path.write_text(json.dumps(meta))
    return path, json.loads(truth_path.read_text())


# -------------------------------------------------------------------------------------------
# running one measurement


_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
_USER = re.compile(r"User time \(seconds\): ([\d.]+)")
_SYS = re.compile(r"System time \(seconds\): ([\d.]+)")


def measure(cmd: list[str], stdout=subprocess.DEVNULL, timeout: float = 3600) -> dict:
    """Run ``cmd`` once under /usr/bin/time -v; wall seconds from our own clock."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run([TIME, "-v", "-o", tf.name] + cmd, stdout=stdout,
                              stderr=subprocess.PIPE, timeout=timeout, cwd=REPO, env=ENV)
        wall = time.perf_counter() - t0
        report = open(tf.name).read()
    rss = _RSS.search(report)
    user, sys_ = _USER.search(report), _SYS.search(report)
    out = proc.stdout.decode(errors="replace") if isinstance(proc.stdout, bytes) else ""
    return {
        "rc": proc.returncode, "wall": wall, "load1": load,
        "rss_mb": int(rss.group(1)) / 1024 if rss else None,
        "cpu": (float(user.group(1)) + float(sys_.group(1))) if user and sys_ else None,
        "stderr_tail": proc.stderr.decode(errors="replace").strip().splitlines()[-3:],
        "stdout": out.strip()[-300:],
    }


def bench(name: str, cmd: list[str], packets: int, repeat: int, log, *, capture_stdout=False,
          note: str = "", ok_rcs=(0,)) -> dict:
    runs = []
    for i in range(repeat):
        r = measure(cmd, stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL)
        runs.append(r)
        log(f"  {name:<40} run {i + 1}/{repeat}: rc={r['rc']} {r['wall']:.2f} s "
            f"cpu {r['cpu'] or 0:.2f} s rss {r['rss_mb'] or 0:.0f} MB load {r['load1']:.2f}")
        if r["rc"] not in ok_rcs:
            break
    ok = [r for r in runs if r["rc"] in ok_rcs]
    res = {"tool": name, "cmd": cmd, "packets": packets, "runs": runs, "note": note}
    if ok:
        best = min(ok, key=lambda r: r["wall"])
        res.update(ok=True, seconds=best["wall"], cpu=best["cpu"], pps=packets / best["wall"],
                   rss_mb=max(r["rss_mb"] for r in runs if r["rss_mb"] is not None),
                   stdout=best["stdout"])
    else:
        res.update(ok=False, error=f"exit {runs[-1]['rc']}: " + " | ".join(runs[-1]["stderr_tail"]))
    return res


# -------------------------------------------------------------------------------------------
# what is measured: a frozen copy of HEAD, so commits landing during a run do not mix in


def make_snapshot(out_dir: Path) -> tuple[Path, str, bool]:
    rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                         text=True, cwd=REPO, check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "pcapvpn", "dissect"],
                                capture_output=True, text=True, cwd=REPO).stdout.strip())
    dest = out_dir / f"src-{rev}"
    if not (dest / "pcapvpn" / "__init__.py").exists():
        tmp = out_dir / f".src-{rev}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", "HEAD", "pcapvpn", "dissect"],
                                 capture_output=True, cwd=REPO, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        tmp.rename(dest)
    # byte-compile it, as installing a package does: otherwise, with PYTHONDONTWRITEBYTECODE set,
    # every measured run would compile every module again (~0.2 s here)
    subprocess.run([PY, "-m", "compileall", "-q", str(dest)], check=True)
    return dest, rev, dirty


# -------------------------------------------------------------------------------------------
# RESULTS.md: run.py owns the part between the markers; anything else in the file is kept

BEGIN = "<!-- bench/run.py: begin (generated; edits inside are overwritten) -->"
END = "<!-- bench/run.py: end -->"


def write_results(path: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the block between ``begin`` and ``end`` (the main block: the whole file when it
    is missing; another block: appended when missing)."""
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        new = head + block + ("\n" + tail if tail else "")
    elif begin == BEGIN:
        new = block
    else:
        new = old.rstrip("\n") + "\n\n" + block
    path.write_text(new)


# -------------------------------------------------------------------------------------------
# pcapvpn capabilities


def pcapvpn_cmd(path: Path, stage: str | None = None) -> list[str]:
    cmd = [PY, "-m", "pcapvpn", "analyze", str(path), "--format", "json", "-o", "/dev/null"]
    if stage:
        cmd += ["--stop-after", stage]
    return cmd


def _ok_rcs(tool: str) -> tuple[int, ...]:
    """Exit codes that mean "ran to the end": pcapvpn exits 1 when it reports findings."""
    return (0, 1) if tool.startswith("pcapvpn") else (0,)


def probe_pcapvpn(small: Path) -> tuple[str | None, dict[str, str]]:
    """Does `pcapvpn analyze` work on a small capture, and which --stop-after stages exist?

    Returns (error or None, {stage: "ok" | reason}).  The option may be hidden from --help, so
    each stage is tried on the small file."""
    res = subprocess.run(pcapvpn_cmd(small), capture_output=True, text=True, cwd=REPO, env=ENV,
                         timeout=600)
    error = None
    if res.returncode not in (0, 1):
        tail = (res.stderr.strip().splitlines() or ["(no message)"])[:2]
        error = f"exit {res.returncode}: " + " | ".join(tail)
    helptext = subprocess.run([PY, "-m", "pcapvpn", "analyze", "--help"], capture_output=True,
                              text=True, cwd=REPO, env=ENV).stdout
    stages = {}
    for st in STAGES:
        r = subprocess.run(pcapvpn_cmd(small, st), capture_output=True, text=True, cwd=REPO,
                           env=ENV, timeout=600)
        choices = re.search(r"is not one of (.*?)\.?$", r.stderr.strip(), re.M)
        if r.returncode in (0, 1):
            stages[st] = "ok"
        elif "No such option" in r.stderr:
            stages[st] = "--stop-after not implemented yet" + (
                " (listed in --help)" if "--stop-after" in helptext else "")
        elif choices:
            stages[st] = f"not a --stop-after stage (choices: {choices.group(1)})"
        else:
            msg = (r.stderr.strip().splitlines() or ["(no message)"])[0]
            stages[st] = f"exit {r.returncode}: {msg[:160]}"
    return error, stages


# -------------------------------------------------------------------------------------------
# report


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
        return out.strip().splitlines()[0] if out.strip() else "?"
    except (OSError, subprocess.SubprocessError):
        return "not installed"


def machine_info() -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, cwd=REPO).stdout.strip()
    pyver = subprocess.run([PY, "-c", "import dpkt, scapy; print(dpkt.__version__, "
                            "scapy.__version__)"], capture_output=True, text=True).stdout.split()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "python": platform.python_version(), "tshark": _version(["tshark", "--version"]),
        "dpkt": pyver[0] if pyver else "?", "scapy": pyver[1] if len(pyver) > 1 else "?",
        "git": rev,
    }


def _fmt_int(n) -> str:
    return f"{n:,.0f}"


def render(results: list[dict], info: dict, args, files: dict, pcapvpn_error, stages,
           big: list[dict]) -> str:
    by = {r["tool"]: r for r in results}
    ref_t = by.get("tshark -q -Y frame")
    ref_s = by.get("scapy PcapReader loop")
    tpps = ref_t["pps"] if ref_t and ref_t.get("ok") else None
    spps = ref_s["pps"] if ref_s and ref_s.get("ok") else None
    L = []
    L.append("# pcapvpn benchmark results\n")
    L.append(f"- date: {info['date']}; git {info['git']}; {info.get('measured', '')}")
    L.append(f"- machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}; "
             f"Python {info['python']}; {info['tshark']}; dpkt {info['dpkt']}; "
             f"scapy {info['scapy']}")
    loads = [r["load1"] for res in results + big for r in res["runs"]]
    if loads:
        L.append(f"- machine load (1-min load average at the start of each run): "
                 f"{min(loads):.2f} … {max(loads):.2f}"
                 + ("  ← other work was running: wall times are pessimistic"
                    if max(loads) > 1.0 else ""))
    for label, f in files.items():
        L.append(f"- {label}: `{f['path']}` — {_fmt_int(f['packets'])} packets, "
                 f"{f['mb']:.0f} MB, {f['duration_s']:.0f} s of capture time "
                 f"(`bench/gen.py --packets {f['packets']}"
                 + (f" --pps {f['pps']}" if f.get("pps") not in (None, 10_000) else "") + "`)")
    L.append(f"- each tool run {args.repeat}× sequentially on the same file; best wall time "
             "shown, peak RSS = largest of the runs (`/usr/bin/time -v`). Ratios are packets/s ÷ "
             "the anchor's packets/s on wall time; the (cpu) columns use user+sys CPU seconds of "
             "the same run instead, which other load on the machine disturbs less.")
    L.append("")
    L.append("| tool | packets | seconds | packets/s | peak RSS MB | vs tshark -Y frame "
             "| vs scapy | cpu s | vs tshark (cpu) | vs scapy (cpu) |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    tcpu = ref_t["packets"] / ref_t["cpu"] if ref_t and ref_t.get("ok") and ref_t["cpu"] else None
    scpu = ref_s["packets"] / ref_s["cpu"] if ref_s and ref_s.get("ok") and ref_s["cpu"] else None
    for r in results:
        if not r.get("ok"):
            L.append(f"| {r['tool']} | {_fmt_int(r['packets'])} | — | — | — | — | — | — | — "
                     "| — |")
            continue
        cpps = r["packets"] / r["cpu"] if r["cpu"] else None
        vt = f"{r['pps'] / tpps:.2f}×" if tpps else "—"
        vs = f"{r['pps'] / spps:.1f}×" if spps else "—"
        vtc = f"{cpps / tcpu:.2f}×" if tcpu and cpps else "—"
        vsc = f"{cpps / scpu:.1f}×" if scpu and cpps else "—"
        L.append(f"| {r['tool']} | {_fmt_int(r['packets'])} | {r['seconds']:.2f} | "
                 f"{_fmt_int(r['pps'])} | {r['rss_mb']:.0f} | {vt} | {vs} | {r['cpu']:.2f} | "
                 f"{vtc} | {vsc} |")
    L.append("")

    # targets
    L.append("## Targets\n")
    L.append("| target | measured | status |")
    L.append("|---|---|---|")
    stage_res = by.get("pcapvpn analyze --stop-after decode")
    full = by.get("pcapvpn analyze (full)")
    rdc = stage_res if stage_res and stage_res.get("ok") else None
    rdc_label = "`--stop-after decode`"
    if rdc is None and full and full.get("ok"):
        rdc, rdc_label = full, "full analyze (no `--stop-after decode` yet)"
    targets = (("read+decode+classify ≥ 4× `tshark -q -Y frame`", tpps, tcpu, TARGET_TSHARK),
               ("read+decode+classify ≥ 50× scapy", spps, scpu, TARGET_SCAPY))
    for label, ref, ref_cpu, goal in targets:
        if rdc and ref:
            ratio = rdc["pps"] / ref
            ratio_cpu = (rdc["packets"] / rdc["cpu"]) / ref_cpu if ref_cpu and rdc["cpu"] else 0
            ok = ratio >= goal and ratio_cpu >= goal
            L.append(f"| {label} | {ratio:.2f}× wall, {ratio_cpu:.2f}× cpu ({rdc_label}) | "
                     f"{'PASS' if ok else 'FAIL'}{'' if ok else ' (both must reach it)'} |")
        else:
            L.append(f"| {label} | not measurable | pcapvpn does not run yet |")
    if full and full.get("ok") and tpps:
        ratio = full["pps"] / tpps
        ratio_cpu = (full["packets"] / full["cpu"]) / tcpu if tcpu and full["cpu"] else 0
        ok = ratio >= TARGET_FULL and ratio_cpu >= TARGET_FULL
        L.append(f"| full analysis ≥ {TARGET_FULL:.0f}× `tshark -q -Y frame` | {ratio:.2f}× wall, "
                 f"{ratio_cpu:.2f}× cpu | {'PASS' if ok else 'FAIL'}"
                 f"{'' if ok else ' (both must reach it)'} |")
    if full and full.get("ok"):
        L.append(f"| peak RSS < {TARGET_RSS_MB:.0f} MB (full analyze, 1M) | "
                 f"{full['rss_mb']:.0f} MB | {'PASS' if full['rss_mb'] < TARGET_RSS_MB else 'FAIL'} |")
    else:
        L.append(f"| peak RSS < {TARGET_RSS_MB:.0f} MB (full analyze) | not measurable | "
                 "pcapvpn does not run yet |")
    main_dur = files["main capture"]["duration_s"]
    bsame = next((b for b in big if b["tool"] == "pcapvpn analyze (full)" and b.get("ok")
                  and b["duration_s"] == main_dur), None)
    blong = next((b for b in big if b["tool"] == "pcapvpn analyze (full)" and b.get("ok")
                  and b["duration_s"] != main_dur), None)
    if bsame and full and full.get("ok"):
        flat = bsame["rss_mb"] <= full["rss_mb"] * FLAT_TOLERANCE
        L.append(f"| memory flat: RSS(5M packets) ≤ {FLAT_TOLERANCE:.2f} × RSS(1M), same "
                 f"{main_dur:.0f} s of capture | {bsame['rss_mb']:.0f} MB vs {full['rss_mb']:.0f} MB"
                 f" | {'PASS' if flat else 'FAIL'} |")
        if blong:
            L.append(f"| (info) 5M packets over {blong['duration_s']:.0f} s: what grows with "
                     f"capture time | {blong['rss_mb']:.0f} MB | — |")
    else:
        L.append("| memory flat (5M vs 1M) | not measured | "
                 + ("run with `--big`" if not args.big else "pcapvpn does not run yet") + " |")
    L.append("")

    if big:
        L.append("## Memory vs capture size (`--big`)\n")
        L.append(f"| tool | packets | capture s | seconds | packets/s | peak RSS MB | same tool "
                 f"on 1M ({files['main capture']['duration_s']:.0f} s): RSS MB |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        for b in big:
            small = by.get(b["tool"])
            srss = f"{small['rss_mb']:.0f}" if small and small.get("ok") else "—"
            if b.get("ok"):
                L.append(f"| {b['tool']} | {_fmt_int(b['packets'])} | {b['duration_s']:.0f} | "
                         f"{b['seconds']:.2f} | {_fmt_int(b['pps'])} | {b['rss_mb']:.0f} | "
                         f"{srss} |")
            else:
                L.append(f"| {b['tool']} | {_fmt_int(b['packets'])} | {b['duration_s']:.0f} | "
                         f"— | — | — | {srss} |")
        L.append("")

    L.append("## Notes\n")
    if pcapvpn_error:
        L.append(f"- `pcapvpn analyze` does not work yet: {pcapvpn_error}")
    for st, status in stages.items():
        if status != "ok":
            L.append(f"- `--stop-after {st}` skipped: {status}")
    if any(run["rc"] == 1 for r in results + big if r["tool"].startswith("pcapvpn")
           for run in r["runs"]):
        L.append("- pcapvpn exits 1 when it reports findings at or above `--fail-on`: such runs "
                 "completed and are counted.")
    for r in results + big:
        if not r.get("ok") and not (pcapvpn_error and r["tool"].startswith("pcapvpn")):
            L.append(f"- {r['tool']} failed: {r.get('error', '?')}")
        if r.get("note"):
            L.append(f"- {r['tool']}: {r['note']}")
        if r.get("ok") and r.get("stdout"):
            L.append(f"- {r['tool']} printed: `{r['stdout']}`")
    L.append("")
    L.append("Commands (FILE = the 1M capture; scapy uses the 100k one):\n")
    for r in results:
        L.append(f"- {r['tool']}: `{' '.join(_short(c) for c in r['cmd'])}`")
    L.append("")
    return "\n".join(L)


def _short(c: str) -> str:
    if c == PY:
        return "python"
    try:
        return str(Path(c).relative_to(REPO))
    except ValueError:
        return c


# -------------------------------------------------------------------------------------------
# --jobs (issue 19): one process vs worker processes vs tshark, and where the time goes

JOBS_BEGIN = "<!-- bench/run.py --jobs: begin (generated; edits inside are overwritten) -->"
JOBS_END = "<!-- bench/run.py --jobs: end -->"
#: the same on a gzip file (``--jobs-bench --gzip PATH``): the parent decompresses and cuts
JOBS_GZ_BEGIN = ("<!-- bench/run.py --jobs --gzip: begin (generated; edits inside are "
                 "overwritten) -->")
JOBS_GZ_END = "<!-- bench/run.py --jobs --gzip: end -->"
#: the same on plain standard input (``--jobs-bench --stdin PATH``: ``cat PATH | pcapvpn
#: analyze -``): the parent's reading thread splices the pipe into the slices' files
JOBS_STDIN_BEGIN = ("<!-- bench/run.py --jobs --stdin: begin (generated; edits inside are "
                    "overwritten) -->")
JOBS_STDIN_END = "<!-- bench/run.py --jobs --stdin: end -->"

#: run in a measured subprocess: the analysis with its own CPU split (this process = the parent,
#: its children = the workers), printed as JSON
_CPU_SPLIT = """
import json, resource, runpy, sys, time
t0 = time.perf_counter()
sys.argv = ["pcapvpn", "analyze", sys.argv[1], "--format", "json", "-o", "/dev/null",
            "--jobs", sys.argv[2]]
try:
    runpy.run_module("pcapvpn", run_name="__main__")
except SystemExit:
    pass
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": time.perf_counter() - t0,
                  "parent_cpu": me.ru_utime + me.ru_stime,
                  "workers_cpu": kids.ru_utime + kids.ru_stime}))
"""

#: the same for a stream (``--gzip``): the analysis through the API, so that the CPU of the
#: parent's threads can be told apart: the thread that reads (decompresses) and cuts the stream,
#: and the rest of the main process (pcapvpn.parallel.stream)
_STREAM_SPLIT = """
import json, resource, sys, time
t0 = time.perf_counter()
if sys.argv[1] == "-":  # (--stdin: this process's standard input is a pipe from cat)
    import subprocess
    cat = subprocess.Popen(["cat", sys.argv[3]], stdout=subprocess.PIPE)
    sys.stdin = open(cat.stdout.fileno(), "r", closefd=False)
from pcapvpn.analysis import Options, run
from pcapvpn.report import render
r = run([sys.argv[1]], Options(jobs=int(sys.argv[2])))
render(r.report, "json")
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
reading = getattr(r.sources[0].reader, "reading_cpu", None) if r.sources else None
print(json.dumps({"wall": time.perf_counter() - t0,
                  "parent_cpu": me.ru_utime + me.ru_stime,
                  "workers_cpu": kids.ru_utime + kids.ru_stime,
                  "reading_cpu": reading}))
"""

#: the single pass's stages, timed in one process (the interpreter start and imports measured
#: apart): printed as JSON
_STAGES = """
import json, sys, time
T = time.process_time  # CPU seconds: what other load on the machine disturbs least
t = T()
import numpy  # noqa: F401
from pcapvpn.analysis import Options, run
import pcapvpn.track, pcapvpn.rules, pcapvpn.report  # noqa: E401,F401
from pcapvpn.report import render
from pcapvpn.sources import open_source
imports = T() - t
path = sys.argv[1]
out = {"imports": imports}
def best(fn, n=3):
    times = []
    for _ in range(n):
        t = T(); r = fn(); times.append(T() - t)
    return min(times), r
def walk():
    src = open_source(path)
    nop = lambda *a: None
    src.walk(nop, nop, None, nop)
out["walk"], _ = best(walk)
out["decode"], _ = best(lambda: run([path], Options(stop_after="decode")))
out["full"], res = best(lambda: run([path], Options()))
out["json"], _ = best(lambda: render(res.report, "json"))
out["text"], _ = best(lambda: render(res.report, "text"))
print(json.dumps(out))
"""


def _count_packets(path: Path) -> int:
    """The packets of a capture file (gzip or not)."""
    sys.path.insert(0, str(REPO))
    from pcapvpn.sources import open_source

    with open_source(str(path)) as src:
        return sum(1 for _f in src.frames())


def _pcap_parts(path: Path, out_dir: Path) -> tuple[Path, Path, Path] | None:
    """The two halves of a capture file, cut at the first record at or after its middle, and
    its first 2,000 records, as files of their own (each behind the file's header: the pcap
    header, or pcapng's section and interface blocks, as :func:`pcapvpn.parallel.slicing._head`
    finds them); None when it has no such records.  For the bound of :func:`jobs_bench`."""
    sys.path.insert(0, str(REPO))
    from dissect.vpn.capture import open_capture
    from pcapvpn.parallel.slicing import _head
    from pcapvpn.sources import _Prefixed

    _reader, prefix, _nifs, first = _head(str(path))
    if first is None:
        return None
    size = path.stat().st_size
    small = mid = None
    with open(path, "rb", buffering=0) as f:
        for n, rec in enumerate(open_capture(_Prefixed(b"", f)).records(), 1):
            if n == 2001:
                small = rec[4]
            if rec[4] >= size // 2:
                mid = rec[4]
                break
    if mid is None or small is None:
        return None
    stem = out_dir / path.stem
    names = (Path(f"{stem}-half1.pcap"), Path(f"{stem}-half2.pcap"), Path(f"{stem}-2000.pcap"))
    spans = ((first, mid), (mid, size), (first, small))
    with open(path, "rb") as f:
        for name, (a, b) in zip(names, spans):
            if name.exists() and name.stat().st_size == len(prefix) + b - a:
                continue
            with open(name, "wb") as out:
                out.write(prefix)
                f.seek(a)
                left = b - a
                while left:
                    chunk = f.read(min(left, 64 << 20))
                    out.write(chunk)
                    left -= len(chunk)
    return names


def _together(cmds: list[list[str]]) -> dict:
    """Run ``cmds`` at the same time; the wall seconds until the last one ends."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                              env=ENV) for c in cmds]
    rcs = [p.wait() for p in procs]
    return {"wall": time.perf_counter() - t0, "rc": max(rcs), "cpu": None, "load1": load}


def jobs_bench(path: Path, packets: int, repeat: int, log, stream: bool = False,
               stdin: bool = False) -> dict:
    """``--jobs 1`` and ``--jobs 2`` and tshark, interleaved run by run (the same load for
    each), plus the CPU split of the parallel run and the single pass's stage times (a
    ``stream``, a gzip file: the CPU of the thread that reads it instead of the stages;
    ``stdin``: ``path`` piped into standard input by ``cat``, whose CPU the rows include)."""
    stream = stream or stdin
    stages = not stream
    runs: dict = {"pcapvpn --jobs 1": [], "pcapvpn --jobs 2": [], "tshark -q -Y frame": []}
    split: dict = {"1": [], "2": []}
    cmds = {"pcapvpn --jobs 1": pcapvpn_cmd(path) + ["--jobs", "1"],
            "pcapvpn --jobs 2": pcapvpn_cmd(path) + ["--jobs", "2"],
            "tshark -q -Y frame": ["tshark", "-r", str(path), "-q", "-Y", "frame"]}
    if stdin:
        def piped(cmd):
            cmd = [("-" if c == str(path) else c) for c in cmd]
            return ["sh", "-c", f"cat {shlex.quote(str(path))} | " + shlex.join(cmd)]

        cmds = {k: piped(v) for k, v in cmds.items()}
    parts = None if stream else _pcap_parts(path, path.parent)
    bound: dict = {"halves": [], "fixed": []}
    for i in range(repeat):
        for name, cmd in cmds.items():
            r = measure(cmd)
            runs[name].append(r)
            log(f"  {name:<24} run {i + 1}/{repeat}: rc={r['rc']} {r['wall']:.2f} s "
                f"cpu {r['cpu'] or 0:.2f} s load {r['load1']:.2f}")
        if parts is not None:
            # what no cut of this work between 2 processes can beat: two single passes over
            # the two halves at once, nothing handed over or merged; and what every process
            # pays whatever it reads (interpreter, imports, rules, report: 2,000 records)
            r = _together([pcapvpn_cmd(parts[0]) + ["--jobs", "1"],
                           pcapvpn_cmd(parts[1]) + ["--jobs", "1"]])
            bound["halves"].append(r)
            bound["fixed"].append(measure(pcapvpn_cmd(parts[2]) + ["--jobs", "1"]))
            log(f"  {'two halves at once':<24} run {i + 1}/{repeat}: {r['wall']:.2f} s; "
                f"2,000 records {bound['fixed'][-1]['wall']:.2f} s")
        for j in ("1", "2"):
            args = ["-", j, str(path)] if stdin else [str(path), j]
            res = subprocess.run([PY, "-c", _STREAM_SPLIT if stream else _CPU_SPLIT, *args],
                                 capture_output=True,
                                 text=True, cwd=REPO, env=ENV, timeout=3600)
            if res.returncode == 0 and res.stdout.strip():
                d = json.loads(res.stdout.strip().splitlines()[-1])
                d["load1"] = os.getloadavg()[0]
                split[j].append(d)
    if stages:
        res = subprocess.run([PY, "-c", _STAGES, str(path)], capture_output=True, text=True,
                             cwd=REPO, env=ENV, timeout=3600)
        stages = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else {
            "error": res.stderr.strip()[-300:]}
    else:
        stages = {"error": "not measured"}
    start = measure([PY, "-c", "pass"])
    return {"packets": packets, "path": _short(str(path)), "mb": path.stat().st_size / 1e6,
            "runs": runs, "split": split, "stages": stages, "python_start": start["wall"],
            "bound": bound,
            "cmds": {k: " ".join(_short(c) for c in v) for k, v in cmds.items()},
            "nproc": len(os.sched_getaffinity(0)), "date": dt.datetime.now(
                dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def render_jobs(j: dict, info: dict, title: str = "## Every core: `analyze --jobs N` (issue 19; "
                "`bench/run.py --jobs-bench`)") -> str:
    ok = {k: [r for r in v if r["rc"] in (0, 1)] for k, v in j["runs"].items()}
    best = {k: min(v, key=lambda r: r["wall"]) for k, v in ok.items() if v}
    loads = [r["load1"] for v in j["runs"].values() for r in v]
    L = [title + "\n"]
    L.append(f"- date: {j['date']}; git {info['git']}; {info.get('measured', '')}; "
             f"{j['nproc']} CPUs usable")
    L.append(f"- capture: `{j['path']}` ({j['packets']:,} packets, {j['mb']:.0f} MB)")
    L.append(f"- 1-min load average at the start of each run: {min(loads):.2f} … "
             f"{max(loads):.2f}" + ("  ← **other work shared the CPUs: re-measure these "
                                    "figures on a quiet machine**" if max(loads) > 1.0 else ""))
    L.append(f"- each tool {len(next(iter(j['runs'].values())))}× interleaved (one run of "
             "each in turn, so they share the load); best wall time; cpu = user + sys of the "
             "process and its workers")
    L.append("")
    L.append("| tool | seconds | cpu s | packets/s | vs `--jobs 1` (wall) | vs tshark (wall) | "
             "vs tshark (cpu) |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    one, ts = best.get("pcapvpn --jobs 1"), best.get("tshark -q -Y frame")
    for name, r in best.items():
        pps = j["packets"] / r["wall"]
        v1 = f"{one['wall'] / r['wall']:.2f}×" if one else "—"
        vt = f"{ts['wall'] / r['wall']:.2f}×" if ts else "—"
        vtc = f"{ts['cpu'] / r['cpu']:.2f}×" if ts and r["cpu"] and ts["cpu"] else "—"
        L.append(f"| {name} | {r['wall']:.2f} | {r['cpu']:.2f} | {pps:,.0f} | {v1} | {vt} | "
                 f"{vtc} |")
    L.append("")
    sp = {k: min(v, key=lambda d: d["wall"]) for k, v in j["split"].items() if v}
    if sp:
        L.append("Where the CPU goes (the same runs from inside: the main process, and the "
                 "worker processes it started):\n")
        L.append("| run | wall s | main process cpu s | workers cpu s | load |")
        L.append("|---|---:|---:|---:|---:|")
        for k, d in sp.items():
            L.append(f"| `--jobs {k}` | {d['wall']:.2f} | {d['parent_cpu']:.2f} | "
                     f"{d['workers_cpu']:.2f} | {d['load1']:.2f} |")
        L.append("")
        if "2" in sp and sp["2"].get("reading_cpu") is not None:
            d2 = sp["2"]
            L.append(f"Of the main process's {d2['parent_cpu']:.2f} CPU seconds in `--jobs 2`, "
                     f"{d2['reading_cpu']:.2f} are the thread that reads the stream (decompresses "
                     f"a gzip, splices a pipe into the slices' files) and cuts it; the rest (the replay, the rules, the report, handing "
                     f"the slices to the pool) runs beside it in the main thread.\n")
        if "2" in sp and "1" in sp:
            d1, d2 = sp["1"], sp["2"]
            crit = max(d2["parent_cpu"], d2["workers_cpu"])
            if d2.get("reading_cpu") is not None:  # two threads in the main process
                crit = max(d2["reading_cpu"], d2["parent_cpu"] - d2["reading_cpu"],
                           d2["workers_cpu"], (d2["parent_cpu"] + d2["workers_cpu"]) / 2)
            cols = ("of its two CPU columns" if d2.get("reading_cpu") is None else
                    "of its threads' CPU (the reading thread, the rest of the main process, the "
                    "workers) and half their sum on 2 CPUs")
            L.append(f"On an idle machine the parallel run's wall time is at least the larger "
                     f"{cols} ({crit:.2f} s): {d1['parent_cpu'] / crit:.2f}× "
                     f"the single process's CPU ({d1['parent_cpu']:.2f} s) is the most "
                     f"`--jobs 2` can give on this capture as the work is divided now.\n")
    st = j["stages"]
    if "error" not in st:
        L.append("The single pass by stage (one process, best of 3, CPU seconds; "
                 f"interpreter start {j['python_start']:.2f} s wall measured apart):\n")
        L.append("| stage | cpu s | what |")
        L.append("|---|---:|---|")
        rows = [("imports", st["imports"], "numpy, pcapvpn's modules"),
                ("read + classify", st["walk"], "the record walk and the numpy ESP "
                 "classification (Source.walk, no sink)"),
                ("decode", max(0.0, st["decode"] - st["walk"]), "the general path's frames, the "
                 "decoder (`--stop-after decode` minus the walk)"),
                ("track + rules + report model", st["full"] - st["decode"], "ESP batches "
                 "into the SAs, IKE, the rules, the verdicts, the report model"),
                ("render JSON", st["json"], "`--format json`"),
                ("render text", st["text"], "`--format text` (tabulate)")]
        for name, sec, what in rows:
            L.append(f"| {name} | {sec:.3f} | {what} |")
        L.append("")
    bd = j.get("bound") or {}
    if bd.get("halves") and bd.get("fixed") and one:
        h = min(bd["halves"], key=lambda r: r["wall"])["wall"]
        fx = min(bd["fixed"], key=lambda r: r["wall"])["wall"]
        L.append("The bound of any 2-process split of this work (the same runs, interleaved): "
                 f"two single passes over the two halves of the capture at once, nothing handed "
                 f"over or merged, take {h:.2f} s: **{one['wall'] / h:.2f}×** `--jobs 1` is "
                 f"the most 2 processes reach on this capture.  What every process pays "
                 f"whatever it reads (interpreter, imports, rules, report; a single pass over "
                 f"the first 2,000 records) is {fx:.2f} s of the single pass's "
                 f"{one['wall']:.2f} s: with that fixed part F, 2 processes give at most "
                 f"1 / (F + (1 - F) / 2) = {1 / (fx / one['wall'] + (1 - fx / one['wall']) / 2):.2f}×.\n")
    L.append("### Targets (issue 19)\n")
    L.append("| target | measured | status |")
    L.append("|---|---|---|")
    two = best.get("pcapvpn --jobs 2")
    if one and two:
        r = one["wall"] / two["wall"]
        L.append(f"| `--jobs 2` ≥ {TARGET_JOBS}× `--jobs 1` (wall) | {r:.2f}× | "
                 f"{'PASS' if r >= TARGET_JOBS else 'FAIL'} |")
    if ts and two:
        r = ts["wall"] / two["wall"]
        L.append(f"| `--jobs 2` ≥ {TARGET_JOBS_TSHARK:.0f}× `tshark -q -Y frame` (wall) | "
                 f"{r:.2f}× | {'PASS' if r >= TARGET_JOBS_TSHARK else 'FAIL'} |")
    L.append("")
    L.append("Commands: " + "; ".join(f"`{c}`" for c in j["cmds"].values()))
    return "\n".join(L)


# -------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="pcapvpn benchmark harness")
    ap.add_argument("--packets", type=int, default=1_000_000, help="main capture size")
    ap.add_argument("--scapy-packets", type=int, default=100_000,
                    help="capture size for the (slow) scapy loop; scaled to packets/s")
    ap.add_argument("--big-packets", type=int, default=5_000_000)
    ap.add_argument("--big", action="store_true",
                    help="also run pcapvpn (and tshark) on a --big-packets capture: memory "
                         "must not grow with the capture")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=None, help="generator seed (default: gen.py's)")
    ap.add_argument("--skip", action="append", default=[], metavar="TOOL",
                    help="skip tools whose name contains this (e.g. scapy); repeatable")
    ap.add_argument("--out-dir", default=str(BENCH / "out"))
    ap.add_argument("--results", default=str(BENCH / "RESULTS.md"))
    ap.add_argument("--rerender", action="store_true",
                    help="only rewrite RESULTS.md from out/results.json of the last run")
    ap.add_argument("--jobs-bench", action="store_true",
                    help="only the --jobs measurement (issue 19): pcapvpn --jobs 1 and 2 and "
                         "tshark -q -Y frame on the main capture, the CPU split and the single "
                         "pass's stages; its own block of RESULTS.md")
    ap.add_argument("--capture", metavar="PATH",
                    help="--jobs-bench on this capture instead of the generated main capture "
                         "(e.g. the client capture of bench/plain_bench.py)")
    ap.add_argument("--gzip", metavar="PATH.gz",
                    help="--jobs-bench on this gzip file (e.g. a gzip of the main capture in "
                         "/tmp): the parent decompresses and cuts, the workers read the slices "
                         "(issue 19); its own block of RESULTS.md")
    ap.add_argument("--no-snapshot", dest="snapshot", action="store_false",
                    help="measure the working tree as it changes instead of a frozen copy of "
                         "HEAD (the default: `git archive HEAD` into out/src-<rev>, PYTHONPATH)")
    ap.add_argument("--stdin", metavar="PATH",
                    help="--jobs-bench on this plain capture piped into standard input (`cat "
                         "PATH | pcapvpn analyze -`, and `cat PATH | tshark -r -`): the parent "
                         "splices the pipe into slices, the workers read them (issue 19); its "
                         "own block of RESULTS.md")
    args = ap.parse_args(argv)

    if not os.path.exists(TIME):
        sys.exit(f"{TIME} is missing: apt-get install time")
    if not shutil.which("tshark"):
        print("warning: tshark not found; its rows will fail", file=sys.stderr)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    def skipped(name):
        return any(s in name for s in args.skip)

    if args.rerender:
        raw = json.loads((out_dir / "results.json").read_text())
        for k, v in raw.get("args", {}).items():
            if k in ("big", "repeat"):
                setattr(args, k, v)
        text = render(raw["results"], raw["info"], args, raw["files"], raw["pcapvpn_error"],
                      raw["stages"], raw["big"])
        write_results(Path(args.results), text)
        print(text)
        return 0

    global ENV
    snapshot_note = "working tree as it was during the run (`--no-snapshot`)"
    if args.snapshot:
        src, rev, dirty = make_snapshot(out_dir)
        # PYTHONSAFEPATH: `python -m` run from the checkout would put the working tree first on
        # sys.path and measure it instead of the snapshot (Python >= 3.11)
        ENV = dict(os.environ, PYTHONPATH=str(src), PYTHONSAFEPATH="1")
        snapshot_note = (f"pcapvpn measured from a frozen copy of commit {rev} "
                         f"(`{_short(str(src))}`)"
                         + ("; uncommitted changes in pcapvpn/ or dissect/ were not measured"
                            if dirty else ""))
        log(snapshot_note)

    if args.jobs_bench and (args.gzip or args.stdin):
        # a stream: a gzip file, or a plain capture piped into standard input
        src = Path(args.gzip or args.stdin)
        kind, begin, end, title = (
            ("gzip", JOBS_GZ_BEGIN, JOBS_GZ_END, "## Every core on a gzip file: `analyze --jobs "
             "N FILE.gz` (issue 19; `bench/run.py --jobs-bench --gzip`)") if args.gzip else
            ("stdin", JOBS_STDIN_BEGIN, JOBS_STDIN_END, "## Every core on standard input: `cat "
             "FILE | analyze - --jobs N` (issue 19; `bench/run.py --jobs-bench --stdin`)"))
        j = jobs_bench(src, _count_packets(src), args.repeat, log, stream=True,
                       stdin=bool(args.stdin))
        (out_dir / f"jobs-{kind}.json").write_text(json.dumps(j, indent=1, default=str))
        info = machine_info()
        info["measured"] = snapshot_note
        text = render_jobs(j, info, title)
        write_results(Path(args.results), text, begin, end)
        print(text)
        return 0
    if args.jobs_bench and args.capture:
        main_file = Path(args.capture)
        truth = {"packets": _count_packets(main_file)}
    else:
        main_file, truth = ensure_capture(args.packets, args.seed, out_dir, log)
    if args.jobs_bench:
        j = jobs_bench(main_file, truth["packets"], args.repeat, log)
        (out_dir / "jobs.json").write_text(json.dumps(j, indent=1, default=str))
        info = machine_info()
        info["measured"] = snapshot_note
        text = render_jobs(j, info)
        write_results(Path(args.results), text, JOBS_BEGIN, JOBS_END)
        print(text)
        return 0
    scapy_file, struth = ensure_capture(args.scapy_packets, args.seed, out_dir, log)
    small_file, _ = ensure_capture(5000, args.seed, out_dir, log)
    files = {"main capture": main_file, "scapy capture": scapy_file}
    finfo = {}
    for label, f in files.items():
        t = truth if f == main_file else struth
        finfo[label] = {"path": _short(str(f)), "packets": t["packets"], "pps": t["pps"],
                        "mb": f.stat().st_size / 1e6, "duration_s": t["duration_s"]}

    pcapvpn_error, stages = probe_pcapvpn(small_file)
    log(f"pcapvpn probe: {pcapvpn_error or 'ok'}; stages {stages}")

    n = truth["packets"]
    plan = [("pcapvpn analyze (full)", pcapvpn_cmd(main_file), n, False, "")]
    for st in STAGES:
        if stages.get(st) == "ok":
            plan.append((f"pcapvpn analyze --stop-after {st}", pcapvpn_cmd(main_file, st), n,
                         False, ""))
    plan += [
        ("tshark -q -Y frame", ["tshark", "-r", str(main_file), "-q", "-Y", "frame"], n, False,
         ""),
        ("tshark -T fields esp.spi,esp.sequence,isakmp.ispi",
         ["tshark", "-r", str(main_file), "-T", "fields", "-e", "esp.spi", "-e",
          "esp.sequence", "-e", "isakmp.ispi"], n, False, "output to /dev/null"),
        ("dpkt loop", [PY, str(BENCH / "dpkt_loop.py"), str(main_file)], n, True, ""),
        ("scapy PcapReader loop", [PY, str(BENCH / "scapy_loop.py"), str(scapy_file)],
         struth["packets"], True, f"run on the {struth['packets']:,}-packet capture"),
    ]
    results = []
    for name, cmd, packets, cap, note in plan:
        if skipped(name):
            log(f"skipping {name}")
            continue
        if name.startswith("pcapvpn") and pcapvpn_error:
            results.append({"tool": name, "cmd": cmd, "packets": packets, "ok": False,
                            "runs": [], "error": pcapvpn_error, "note": ""})
            log(f"{name}: not run ({pcapvpn_error})")
            continue
        log(name)
        results.append(bench(name, cmd, packets, args.repeat, log, capture_stdout=cap, note=note,
                             ok_rcs=_ok_rcs(name)))

    big = []
    if args.big:
        # Two 5M captures: one as long as the main capture (5x the packet rate) isolates the
        # packet count; one at the same rate (5x as long) adds what grows with capture time.
        same_pps = max(1, round(truth["pps"] * args.big_packets / truth["packets"]))
        long_file, ltruth = ensure_capture(args.big_packets, args.seed, out_dir, log)
        same_file, mtruth = ensure_capture(args.big_packets, args.seed, out_dir, log, pps=same_pps)
        for label, f, t in (("big capture, same duration", same_file, mtruth),
                            ("big capture, same rate", long_file, ltruth)):
            finfo[label] = {"path": _short(str(f)), "packets": t["packets"], "pps": t["pps"],
                            "mb": f.stat().st_size / 1e6, "duration_s": t["duration_s"]}
        bplan = [("pcapvpn analyze (full)", same_file, mtruth, pcapvpn_cmd(same_file)),
                 ("pcapvpn analyze (full)", long_file, ltruth, pcapvpn_cmd(long_file))]
        if stages.get("read") == "ok":
            bplan.append(("pcapvpn analyze --stop-after read", long_file, ltruth,
                          pcapvpn_cmd(long_file, "read")))
        bplan += [("tshark -q -Y frame", long_file, ltruth,
                   ["tshark", "-r", str(long_file), "-q", "-Y", "frame"]),
                  ("dpkt loop", long_file, ltruth,
                   [PY, str(BENCH / "dpkt_loop.py"), str(long_file)])]
        for name, f, t, cmd in bplan:
            if skipped(name):
                continue
            if name.startswith("pcapvpn") and pcapvpn_error:
                r = {"tool": name, "cmd": cmd, "packets": t["packets"], "ok": False,
                     "runs": [], "error": pcapvpn_error, "note": ""}
            else:
                log(f"[big {t['duration_s']:.0f} s] {name}")
                r = bench(name, cmd, t["packets"], 1, log, capture_stdout=True,
                          ok_rcs=_ok_rcs(name))
            r["duration_s"] = t["duration_s"]
            big.append(r)

    info = machine_info()
    info["measured"] = snapshot_note
    text = render(results, info, args, finfo, pcapvpn_error, stages, big)
    write_results(Path(args.results), text)
    (out_dir / "results.json").write_text(json.dumps(
        {"args": vars(args), "info": info, "files": finfo, "pcapvpn_error": pcapvpn_error,
         "stages": stages,
         "results": results, "big": big}, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
