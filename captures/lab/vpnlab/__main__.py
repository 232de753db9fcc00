"""Command line: ``python -m vpnlab`` (or ``captures/lab/run``)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from . import LAB_DIR, pki, proc, savekeys
from .lab import execute
from .scenarios import SCENARIOS

# packages the lab needs (Debian bookworm): one per line in captures/lab/packages.txt
DEBIAN_PACKAGES = " ".join(
    line.strip() for line in (LAB_DIR / "packages.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#"))
TOOLS = ("ip", "nft", "tc", "ethtool", "ping", "tcpdump", "tshark", "swanctl", "pki",
         "openvpn", "unshare", "certutil", "dpkg-deb", "apt-get", "dnsmasq", "dumpcap")


def missing_dependencies() -> list[str]:
    miss = [t for t in TOOLS if not shutil.which(t)]
    if not Path("/usr/lib/ipsec/charon").exists():
        miss.append("/usr/lib/ipsec/charon")
    if not Path("/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so").exists():
        miss.append("kernel-libipsec plugin (libcharon-extra-plugins)")
    return miss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="captures/lab/run", description=__doc__)
    ap.add_argument("scenarios", nargs="*", help="scenario names (default: all)")
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    ap.add_argument("--fast", action="store_true", help="only the CI subset")
    ap.add_argument("--out", type=Path, default=LAB_DIR,
                    help="output root (default: captures/lab)")
    ap.add_argument("--keep-work", action="store_true", help="keep the temporary work dirs")
    ap.add_argument("--no-verify", action="store_true", help="skip the tshark fact checks")
    ap.add_argument("--index", action="store_true",
                    help="only regenerate captures/README.md from the committed scenarios")
    ap.add_argument("--redoc", action="store_true",
                    help="rewrite expected.json/README.md of existing scenario directories "
                         "from the scenario definitions (no capture; no root needed)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.redoc:
        from . import docs
        bad = 0
        for name, sc in SCENARIOS.items():
            if args.scenarios and name not in args.scenarios:
                continue
            d = args.out / name
            if not (d / "expected.json").exists():
                continue
            old = json.loads((d / "expected.json").read_text())["generated"]
            src = old.get("keys_source") or ""
            res = {"seconds": old.get("seconds"),
                   "keys_source": "log-derived" if src.startswith("log-derived") else
                   (src or None)}
            problems = docs.finish(sc, d, res, src, verify=not args.no_verify, generated=old)
            for p in problems:
                print(f"{name}: {p}", file=sys.stderr)
            bad += bool(problems)
        docs.write_index(LAB_DIR.parent)
        return 1 if bad else 0
    if args.index:
        from . import docs
        print(docs.write_index(LAB_DIR.parent))
        return 0
    if args.list:
        for sc in SCENARIOS.values():
            print(f"{sc.name:32s} {'[fast] ' if sc.fast else ''}{sc.title}")
        return 0
    proc.VERBOSE = args.verbose
    names = args.scenarios or [n for n, s in SCENARIOS.items() if s.fast or not args.fast]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(unknown)}")
    if os.geteuid() != 0:
        print("the lab needs root (network namespaces)", file=sys.stderr)
        return 2
    miss = missing_dependencies()
    if miss:
        print(f"missing: {', '.join(miss)}\ninstall: apt-get install -y "
              f"--no-install-recommends {DEBIAN_PACKAGES}", file=sys.stderr)
        return 2
    from . import docs  # late: only needed when generating

    t_start = time.monotonic()
    pki_dir = pki.ensure()
    so, keys_note = savekeys.plugin_or_none()
    proc.log(f"keys: {keys_note}" + (f" ({so})" if so else ""))
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        sc = SCENARIOS[name]
        proc.log(f"=== {name}")
        res = execute(sc, args.out, so, pki_dir, keep_work=args.keep_work)
        if res["ok"]:
            problems = docs.finish(sc, args.out / name, res, res.get("keys_note", keys_note),
                                   verify=not args.no_verify)
            res["fact_failures"] = problems
            for p in problems:
                proc.log(f"{name}: fact check: {p}")
        results.append(res)
        status = "ok" if res["ok"] and not res.get("fact_failures") else "FAILED"
        proc.log(f"=== {name}: {status} in {res['seconds']}s")
    total = round(time.monotonic() - t_start, 1)
    bad = [r["scenario"] for r in results if not r["ok"] or r.get("fact_failures")]
    summary = {"total_seconds": total, "results": results}
    if args.out.resolve() == LAB_DIR:
        docs.write_index(LAB_DIR.parent)
    (args.out / ".last-run.json").write_text(json.dumps(summary, indent=1) + "\n")
    proc.log(f"{len(results) - len(bad)}/{len(results)} scenarios ok in {total}s"
             + (f"; failed: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
