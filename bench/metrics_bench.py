#!/usr/bin/env python3
"""``pcapvpn live --metrics``: what the exporter costs a sensor.  Results: docs/scale.md.

    python bench/metrics_bench.py                       # root: live at 50k and 100k ESP pps
    python bench/metrics_bench.py --rates 100000 --seconds 20
    python bench/metrics_bench.py --scrape-only         # no root: scrape time vs SAs tracked

1. Per sensor (root, network namespaces; the set-up of ``bench/live_bench.py``, whose sender and
   namespace it reuses): ``pcapvpn live -i va`` pinned to CPU 1, an ESP sender pinned to CPU 0
   offering a fixed rate (``--live-sas`` SAs: 16 and 500, 128-byte frames) for ``--seconds``; once without
   ``--metrics``, once with ``--metrics`` and a scraper fetching ``/metrics`` every
   ``--scrape-interval`` seconds (1 s: fifteen times Prometheus' default, to make the cost
   visible) from the sender's start until it is done.  Per run: packets sent / captured /
   dropped, live's CPU seconds over the run (and per packet), its resident memory at the end
   (VmRSS and RssAnon), the scrapes, their time and the largest exposition.
2. Scrape cost (no root): a ``LiveSession`` holding N ESP SAs in N/2 tunnels (16 packets each,
   one rule evaluation done), the time of one collection (``generate_latest``: median of 5) for
   N up to the default ``--max-sas`` 20000.  The collection holds the interpreter lock that long
   while the capture waits: the number is what a scrape takes from the capture thread.

The machine is shared (other processes may run): the 1-minute load average is recorded with
each run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

import live_bench as lb  # noqa: E402 - the sender, namespace and /proc readers

PY = sys.executable
PORT = 9464

#: scrapes every INTERVAL seconds until the file STOP exists (the sender is done); prints the
#: scrapes, their median and longest time, the largest exposition
_SCRAPER = r"""
import os, sys, time, urllib.request
url, interval, stop = sys.argv[1], float(sys.argv[2]), sys.argv[3]
n, took, size = 0, [], 0
while not os.path.exists(stop):
    t = time.perf_counter()
    try:
        size = max(size, len(urllib.request.urlopen(url, timeout=30).read()))
        took.append(time.perf_counter() - t)
        n += 1
    except OSError:
        pass
    time.sleep(max(0.0, interval - (time.perf_counter() - t)))
took.sort()
print(n, took[len(took) // 2] if took else 0.0, took[-1] if took else 0.0, size)
"""


#: the sender of bench/live_bench.py with ``NSA`` SAs (at most 508: one /24 of gateway pairs)
_SENDER = ("import sys; sys.path.insert(0, sys.argv[1]); import live_bench as lb; "
           "lb.NSA = int(sys.argv[2]); lb.send_main(sys.argv[3], float(sys.argv[4]), "
           "float(sys.argv[5]), 0, float(sys.argv[6]))")


def run(rate: float, seconds: float, metrics: bool, interval: float, work: Path,
        nsa: int = 16) -> dict:
    tag = f"m{int(rate) // 1000}{'on' if metrics else 'off'}{nsa}"
    stop = work / f"{tag}.stop"
    err = work / f"{tag}.err"
    report = work / f"{tag}.json"
    load = os.getloadavg()[0]
    with lb.Netns(tag) as ns:
        cmd = ns.cmd("taskset", "-c", "1", PY, "-m", "pcapvpn", "live", "-i", "va", "--quiet",
                     "--events", "none", "--format", "json", "-o", str(report))
        if metrics:
            cmd += ["--metrics", f"127.0.0.1:{PORT}"]
        with open(err, "w") as ef:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=ef)
        scraper = None
        try:
            lb._wait_ready(err, proc, "live", timeout=60)
            time.sleep(0.5)
            # the sender builds its frames first (seconds on a busy machine; it starts at
            # once when that took longer); CPU and scrapes are counted from now on
            start_at = time.monotonic() + 8.0
            sender = subprocess.Popen(ns.cmd("taskset", "-c", "0", PY, "-c", _SENDER, str(BENCH),
                                             str(nsa), "vb", str(rate), str(seconds),
                                             str(start_at)),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(max(0.0, start_at - time.monotonic()))
            cpu0 = lb._cpu_seconds(proc.pid)
            if metrics:
                scraper = subprocess.Popen(
                    ns.cmd("taskset", "-c", "0", PY, "-c", _SCRAPER,
                           f"http://127.0.0.1:{PORT}/metrics", str(interval), str(stop)),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, errs = sender.communicate(timeout=seconds + 300)
            if sender.returncode:
                raise RuntimeError(f"sender failed: {errs[-2000:]}")
            sent = json.loads(out.strip().splitlines()[-1])
            time.sleep(1.5)  # the consumer catches up with the ring
            stop.touch()
            cpu = lb._cpu_seconds(proc.pid) - cpu0
            rss = lb._rss_mb(proc.pid)
            anon = lb._rss_mb(proc.pid, "RssAnon")
            scrapes = None
            if scraper is not None:
                sout, _ = scraper.communicate(timeout=60)
                n, med, worst, size = sout.split()
                scrapes = {"n": int(n), "median_ms": round(1000 * float(med), 1),
                           "max_ms": round(1000 * float(worst), 1), "bytes": int(size)}
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=300)
            r = json.loads(report.read_text())
        finally:
            for p in (proc, scraper):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
    captured = r["capture"]["frames"]
    drops = (r["capture"]["drops"].get("os_drop") or 0) + (r["capture"]["drops"].get("if_drop")
                                                           or 0)
    return {"metrics": metrics, "sas": nsa, "tunnels": len(r["tunnels"]),
            "offered_pps": rate, "sender_pps": sent["rate"],
            "sent": sent["sent"], "captured": captured, "drops": drops,
            "cpu_s": round(cpu, 2),
            "cpu_us_per_pkt": round(1e6 * cpu / captured, 2) if captured else None,
            "rss_mb": round(rss, 1), "rss_anon_mb": round(anon, 1), "scrapes": scrapes,
            "load1": round(load, 2)}


class _NoCapture:
    linktype = 1
    name = "bench"
    bytes = 0

    def read(self, *a, **k):
        return 0

    def stats(self):
        return {"received": 0, "drops": 0, "packets": 0, "truncated": 0, "interface": {}}

    def close(self):
        pass


def scrape_cost(n_sas: int, repeat: int = 5) -> dict:
    """One collection's time with ``n_sas`` ESP SAs (``n_sas / 2`` tunnels) tracked."""
    import prometheus_client as pc

    from pcapvpn.live import LiveOptions, LiveSession
    from pcapvpn.metrics import make_registry

    t0 = 1_700_000_000.0
    clock = [t0 + 30.0]
    s = LiveSession(LiveOptions(interfaces=["bench"], max_sas=max(20000, n_sas)), [],
                    clock=lambda: clock[0], captures=[_NoCapture()])
    esp = s.tracker.esp
    for k in range(n_sas // 2):
        a = bytes([10, 1 + (k >> 16) % 200, (k >> 8) & 255, k & 255])
        b = bytes([172, 16 + (k >> 16) % 16, (k >> 8) & 255, k & 255])
        for d, (src, dst) in enumerate(((a, b), (b, a))):
            spi = 0x10000000 + 2 * k + d
            for seq in range(1, 17):
                esp((0, 1), t0 + seq * 0.5, 4, src, dst, -1, -1, spi, seq, 128)
    t = time.perf_counter()
    s._evaluate(clock[0])
    evaluation = time.perf_counter() - t
    reg, _c = make_registry(s)
    took = []
    size = 0
    for _ in range(repeat):
        t = time.perf_counter()
        size = len(pc.generate_latest(reg))
        took.append(time.perf_counter() - t)
    return {"sas": n_sas, "tunnels": len((s.last_eval or {}).get("verdicts", ())),
            "scrape_ms": round(1000 * statistics.median(took), 1), "bytes": size,
            "evaluation_ms": round(1000 * evaluation, 1), "load1": round(os.getloadavg()[0], 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="50000,100000")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--scrape-interval", type=float, default=1.0)
    ap.add_argument("--live-sas", default="16,500",
                    help="ESP SAs the sender spreads its packets over (half as many tunnels; "
                         "at most 508)")
    ap.add_argument("--sas", default="100,1000,5000,20000")
    ap.add_argument("--scrape-only", action="store_true")
    ap.add_argument("--json", type=Path, default=BENCH / "out" / "metrics.json")
    args = ap.parse_args(argv)
    out = {"machine": lb._machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "scrape_cost": [], "live": []}
    for n in (int(x) for x in args.sas.split(",") if x):
        r = scrape_cost(n)
        print(json.dumps(r), flush=True)
        out["scrape_cost"].append(r)
    if not args.scrape_only:
        if os.geteuid() != 0:
            print("metrics_bench: the live runs need root (network namespaces)", file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory() as tmp:
            for nsa in (int(x) for x in args.live_sas.split(",") if x):
                for rate in (float(x) for x in args.rates.split(",") if x):
                    for metrics in (False, True):
                        r = run(rate, args.seconds, metrics, args.scrape_interval, Path(tmp),
                                nsa)
                        print(json.dumps(r), flush=True)
                        out["live"].append(r)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
