"""Several vantage points (issue 16): two captures of the same traffic analysed as two points,
next to one point and to tshark on both files.

    python bench/vantage_bench.py                        # 1M packets per file, print the table
    python bench/vantage_bench.py --results bench/RESULTS.md   # and write its section there

The captures come from ``bench/gen.py --second-point``: the synthetic IPsec mix and the same
traffic at a second point (clock 3.217 s ahead, ±40 µs one-way delay, one in 1,000 initiator ESP
packets lost between the points).  Measured with ``/usr/bin/time -v`` (seconds, peak RSS), best
of ``--repeat`` runs: ``pcapvpn analyze A`` (one point, today), ``pcapvpn analyze --vantage a=A
--vantage b=B`` (two points) and ``tshark -q -Y frame -r`` on each file (the anchor: both files
read, every frame dissected).  The claim of the issue: two points stay under 300 MB and cost no
more per packet (of both files) than one point.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BEGIN = "<!-- bench/vantage_bench.py: begin (generated; edits inside are overwritten) -->"
END = "<!-- bench/vantage_bench.py: end -->"


#: 1-minute load average at the start of each run (other work shares the CPUs)
LOADS: list = []


def timed(cmd, env=None) -> tuple[float, float, str]:
    """(seconds, peak RSS MB, stdout) of ``cmd`` under /usr/bin/time -v."""
    LOADS.append(os.getloadavg()[0])
    cp = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    if cp.returncode not in (0, 1):
        raise RuntimeError(f"{cmd}: rc={cp.returncode}: {cp.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", cp.stderr)
    h = int(wall.group(1) or 0)
    secs = h * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", cp.stderr).group(1))
    return secs, rss / 1024, cp.stdout


def best(cmd, repeat, env=None):
    runs = [timed(cmd, env) for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs), runs[0][2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out-dir", type=Path, default=HERE / "out")
    ap.add_argument("--results", type=Path, help="write the table into this RESULTS.md")
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    a = args.out_dir / f"vantage-{args.packets}-a.pcap"
    b = args.out_dir / f"vantage-{args.packets}-b.pcap"
    meta = a.with_suffix(".meta")
    want = f"{args.packets} {(HERE / 'gen.py').stat().st_mtime_ns}"
    if not (a.exists() and b.exists() and meta.exists() and meta.read_text() == want):
        subprocess.run([sys.executable, str(HERE / "gen.py"), "--packets", str(args.packets),
                        "--out", str(a), "--second-point", str(b)], check=True)
        meta.write_text(want)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    py = [sys.executable, "-m", "pcapvpn", "analyze", "--format", "json"]
    one = best(py + [str(a)], args.repeat, env)
    two = best(py + ["--vantage", f"a={a}", "--vantage", f"b={b}"], args.repeat, env)
    ts = [best(["tshark", "-q", "-Y", "frame", "-r", str(p)], args.repeat) for p in (a, b)]
    doc = json.loads(two[2])
    vp = doc["vantage_points"]
    n_a = vp[0]["frames"]
    n_b = vp[1]["frames"]
    lost = sum(x["lost"] for t in doc["tunnels"] for x in (t.get("path") or {}).get("losses", ()))
    per_one = one[0] / n_a * 1e6
    per_two = two[0] / (n_a + n_b) * 1e6
    ts_secs = sum(t[0] for t in ts)
    lines = [
        f"Captures: `bench/gen.py --packets {args.packets} --second-point` ({n_a:,} and "
        f"{n_b:,} frames, {a.stat().st_size / 1e6:.0f} + {b.stat().st_size / 1e6:.0f} MB); best "
        f"of {args.repeat} runs, peak RSS from `/usr/bin/time -v`.",
        "",
        "| run | seconds | µs per packet (all files) | peak RSS MB | vs tshark |",
        "|---|---:|---:|---:|---:|",
        f"| pcapvpn, one point (A) | {one[0]:.2f} | {per_one:.2f} | {one[1]:.0f} | "
        f"{one[0] / ts[0][0]:.2f}x of tshark on A |",
        f"| pcapvpn, two points (`--vantage a=A --vantage b=B`) | {two[0]:.2f} | {per_two:.2f} | "
        f"{two[1]:.0f} | {two[0] / ts_secs:.2f}x of tshark on A+B |",
        f"| tshark -q -Y frame, A then B | {ts_secs:.2f} | "
        f"{ts_secs / (n_a + n_b) * 1e6:.2f} | {max(t[1] for t in ts):.0f} | 1.00x |",
        "",
        f"Two points per packet of both files / one point per packet: "
        f"{per_two / per_one:.2f}.  Matched: offset of b {vp[1]['clock_offset_s']:+.6f} s "
        f"(truth +3.217001 s, ±40 µs one-way), {vp[1]['matched_packets']} matched packets, "
        f"{lost} ESP packets placed between a and b (the generator drops one in 1,000 "
        f"initiator ESP packets).  Machine: {os.cpu_count()} CPUs, Python "
        f"{sys.version.split()[0]}; 1-minute load average at the start of the runs "
        f"{min(LOADS):.2f} … {max(LOADS):.2f} (other work shares the CPUs).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        from tcp_flood import write_section

        write_section(args.results, BEGIN, END,
                      "## Two vantage points of the same traffic (issue 16)", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
