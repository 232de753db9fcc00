#!/usr/bin/env python3
"""TCP reassembly under a hostile capture (issue 20): time and peak memory.

    python bench/tcp_flood.py                                  # 256 streams x 64 x 32 KiB
    python bench/tcp_flood.py --src /tmp/before --src .        # before / after, side by side
    python bench/tcp_flood.py --results bench/RESULTS.md       # and write its section there

The capture (classic pcap, Ethernet/IPv4, deterministic) holds ``--streams`` TCP connections to
port 4500 (an IKE TCP port, where every stream is reassembled); each sends a SYN, then
``--segments`` segments of ``--size`` bytes that all come after a one-byte hole that never fills,
the streams interleaved: every byte is held out of order, all streams at once.  With the old
count-only bound (64 segments per direction, 4,096 directions) this held 256 x 64 x 32 KiB =
512 MiB; the byte bounds of ``Limits`` (per direction and over all streams) hold it at
``tcp_max_bytes``.

Each ``--src`` tree runs ``python -m pcapvpn analyze FILE --format json`` under ``/usr/bin/time
-v`` (best of ``--repeat`` wall times, largest peak RSS); the table also shows the report's TCP
counters when the tree reports them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from dissect.vpn.capture import PcapWriter  # noqa: E402

BEGIN = "<!-- bench/tcp_flood.py: begin (generated; edits inside are overwritten) -->"
END = "<!-- bench/tcp_flood.py: end -->"


def _frame(src: int, sport: int, seq: int, flags: int, payload: bytes) -> bytes:
    tcp = struct.pack(">HHIIBBHHH", sport, 4500, seq, 0, 0x50, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0,
                     src.to_bytes(4, "big"), bytes((198, 51, 100, 1)))
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp + payload


def generate(path: Path, streams: int, segments: int, size: int) -> None:
    payload = b"\xaa" * size
    t = 1_700_000_000.0
    with open(path, "wb") as f:
        w = PcapWriter(f, 1, snaplen=65535 + 64)
        srcs = [0xC0000200 + i % 250 + 1 + ((i // 250) << 16) for i in range(streams)]
        for i, src in enumerate(srcs):  # 192.0.2.1.., 192.1.2.1..
            w.write_packet(t, _frame(src, 40000 + i, 1000, 0x02, b""))  # SYN: next expected 1001
        for k in range(segments):  # the streams interleaved: all of them hold bytes at once
            for i, src in enumerate(srcs):
                t += 0.0001
                # every segment after the byte 1001, which never comes
                w.write_packet(t, _frame(src, 40000 + i, 1002 + k * size, 0x18, payload))


def measure(src: Path, capture: Path, repeat: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src)
    best = None
    rss = 0
    counts = {}
    for _ in range(repeat):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            res = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "pcapvpn",
                                  "analyze", str(capture), "--format", "json", "-o", out.name],
                                 env=env, capture_output=True, text=True, cwd=str(src))
            err = res.stderr
            m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): "
                          r"(?:(\d+):)?(\d+):([\d.]+)", err)
            wall = (int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3)))
            kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))
            best = wall if best is None else min(best, wall)
            rss = max(rss, kb)
            try:
                doc = json.loads(Path(out.name).read_text())
                counts = {k: v for k, v in doc["capture"]["counts"].items() if k.startswith("tcp")}
            except (OSError, ValueError, KeyError):
                counts = {"error": res.returncode}
    rev = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    if rev and subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "pcapvpn",
                               "dissect"], capture_output=True, text=True).stdout.strip():
        rev += " + uncommitted changes"
    return {"src": str(src), "rev": rev or "(no git)", "seconds": best, "rss_mb": rss / 1024,
            "counts": counts}


def table(rows, args, size_mb) -> str:
    lines = [
        f"Capture: {args.streams} TCP streams to port 4500 x {args.segments} segments x "
        f"{args.size:,} bytes, all after a hole that never fills ({size_mb:.0f} MB, "
        f"`bench/tcp_flood.py --streams {args.streams} --segments {args.segments} --size "
        f"{args.size}`); best of {args.repeat} runs of `pcapvpn analyze --format json`, peak RSS "
        "from `/usr/bin/time -v`.",
        "",
        "| pcapvpn | seconds | peak RSS MB | TCP counters in the report |",
        "|---|---:|---:|---|",
    ]
    for r in rows:
        c = ", ".join(f"{k} {v}" for k, v in r["counts"].items()
                      if k != "tcp_segments_on_vpn_ports")
        lines.append(f"| {r['rev']} (`{r['src']}`) | {r['seconds']:.2f} | {r['rss_mb']:.0f} | "
                     f"{c or '-'} |")
    from pcapvpn.limits import Limits

    lim = Limits()
    lines += [
        "",
        f"Bounds of this checkout (`pcapvpn.limits.Limits`): {lim.tcp_max_ooo} segments and "
        f"{lim.tcp_max_ooo_bytes // 1024} KiB out of order per direction, "
        f"{lim.tcp_max_buffer // 1024} KiB buffered per direction, "
        f"{lim.tcp_max_bytes // (1024 * 1024)} MiB over all directions, "
        f"{lim.tcp_max_streams} directions.  Before, only the count of out-of-order segments was "
        "bounded: 4,096 directions x 64 segments x up to 64 KiB, about 16 GiB.  Machine: "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; other work on the machine "
        "disturbs the seconds, not the memory.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=256)
    ap.add_argument("--segments", type=int, default=64)
    ap.add_argument("--size", type=int, default=32 * 1024)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "tcp-flood.pcap")
    ap.add_argument("--src", type=Path, action="append", help="source tree(s); default: this one")
    ap.add_argument("--label", action="append", default=[],
                    help="a name for each --src, in order (default: its git revision)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--results", type=Path, help="write the table into this RESULTS.md")
    args = ap.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = args.out.with_suffix(".meta")
    want = f"interleaved {args.streams} {args.segments} {args.size}"
    if not args.out.exists() or not meta.exists() or meta.read_text() != want:
        generate(args.out, args.streams, args.segments, args.size)
        meta.write_text(want)
    rows = [measure(s.resolve(), args.out, args.repeat) for s in (args.src or [REPO])]
    for r, label in zip(rows, args.label):
        r["rev"] = label
    text = table(rows, args, args.out.stat().st_size / 1e6)
    print(text)
    if args.results:
        write_section(args.results, BEGIN, END,
                      "## TCP reassembly under a flood of out-of-order segments (issue 20)", text)
    return 0


def write_section(results: Path, begin: str, end: str, title: str, text: str) -> None:
    """Put ``title`` and ``text`` between the markers ``begin`` / ``end`` of ``results``
    (replaced where they are, appended otherwise): each bench script owns its own block of
    RESULTS.md."""
    section = f"{begin}\n{title}\n\n{text}{end}\n"
    old = results.read_text() if results.exists() else ""
    if begin in old and end in old:
        new = old[:old.index(begin)] + section + old[old.index(end) + len(end) + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + section
    results.write_text(new)


if __name__ == "__main__":
    sys.exit(main())
