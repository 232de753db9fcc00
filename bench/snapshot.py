"""Before/after comparison of whole reports: analyze every capture of the project and of the
public corpus and keep the JSON reports, so that a change meant to be invisible (speed, memory,
indexes) can be shown to change nothing, and an intended change shows exactly where it lands.

    python bench/snapshot.py --out /tmp/before            # reports of the code on PYTHONPATH
    python bench/snapshot.py --out /tmp/after
    python bench/snapshot.py --diff /tmp/before /tmp/after

Every capture under ``captures/`` and ``../shared/corpus`` is analysed once without keys and,
for the lab scenarios whose expected.json names a key directory, once more with ``--keys``.
Each report is written as ``<name>.json`` (the capture path, flattened).  ``--diff`` compares
two directories report by report and prints, per capture, the finding codes / verdicts that
appear or disappear and the first differing JSON paths; exit status 1 when anything differs.
``--workers N`` runs N analyses at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")


def cases(root: Path = ROOT) -> list[tuple[str, Path, Path | None]]:
    """(report name, capture, key directory or None)."""
    out = []
    dirs = [root / "captures", (root / ".." / "shared" / "corpus").resolve()]
    for d in dirs:
        if not d.is_dir():
            continue
        for p in sorted(d.rglob("*")):
            if p.is_file() and p.name.endswith(SUFFIXES):
                rel = p.relative_to(d.parent)
                out.append((str(rel).replace("/", "__"), p, None))
    for exp in sorted((root / "captures" / "lab").glob("*/expected.json")):
        e = json.loads(exp.read_text())
        for c in e.get("captures", []):
            if c.get("keys") and (exp.parent / c["keys"]).is_dir():
                cap = exp.parent / c["file"]
                rel = cap.relative_to(root)
                out.append((str(rel).replace("/", "__") + "+keys", cap, exp.parent / c["keys"]))
    return out


def _run(case, out: Path) -> str:
    name, cap, keys = case
    cmd = [sys.executable, "-m", "pcapvpn", "analyze", str(cap), "--format", "json"]
    if keys is not None:
        cmd += ["--keys", str(keys)]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    target = out / (name + ".json")
    if cp.returncode not in (0, 1):
        target.write_text(json.dumps({"exit": cp.returncode, "stderr": cp.stderr[-4000:]}))
        return f"{name}: exit {cp.returncode}"
    target.write_text(cp.stdout)
    return ""


def snapshot(out: Path, workers: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    todo = cases()
    with ThreadPoolExecutor(workers) as ex:
        errs = [e for e in ex.map(lambda c: _run(c, out), todo) if e]
    print(f"{len(todo)} reports in {out}")
    for e in errs:
        print("  " + e)
    return 0


def _paths(a, b, path="", out=None, limit=8):
    """The first ``limit`` JSON paths where a and b differ."""
    if out is None:
        out = []
    if len(out) >= limit:
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: {'added' if k not in a else 'removed'}")
            elif a[k] != b[k]:
                _paths(a[k], b[k], f"{path}/{k}", out, limit)
            if len(out) >= limit:
                break
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                _paths(x, y, f"{path}/{i}", out, limit)
            if len(out) >= limit:
                break
    else:
        sa, sb = json.dumps(a)[:120], json.dumps(b)[:120]
        out.append(f"{path}: {sa} -> {sb}")
    return out


def _summary(r: dict) -> tuple[set, dict]:
    codes = {(f.get("code"), f.get("severity")) for f in r.get("findings", [])}
    verdicts = {t["id"]: (t.get("verdict"), t.get("primary_code")) for t in r.get("tunnels", [])}
    return codes, verdicts


def _strip(r: dict) -> dict:
    """Drop what differs between two runs of the same code (none today: kept as the hook)."""
    return r


def diff(a: Path, b: Path) -> int:
    names = sorted({p.name for p in a.glob("*.json")} | {p.name for p in b.glob("*.json")})
    changed = 0
    for n in names:
        pa, pb = a / n, b / n
        if not pa.exists() or not pb.exists():
            print(f"{n}: only in {'after' if not pa.exists() else 'before'}")
            changed += 1
            continue
        ra, rb = _strip(json.loads(pa.read_text())), _strip(json.loads(pb.read_text()))
        if ra == rb:
            continue
        changed += 1
        ca, va = _summary(ra)
        cb, vb = _summary(rb)
        print(f"== {n}")
        for c in sorted(ca - cb, key=str):
            print(f"   - finding {c[0]} ({c[1]})")
        for c in sorted(cb - ca, key=str):
            print(f"   + finding {c[0]} ({c[1]})")
        for t in sorted(set(va) | set(vb)):
            if va.get(t) != vb.get(t):
                print(f"   verdict {t}: {va.get(t)} -> {vb.get(t)}")
        for p in _paths(ra, rb):
            print(f"   {p}")
    print(f"{len(names)} reports compared, {changed} differ")
    return 1 if changed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the reports here")
    ap.add_argument("--diff", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args(argv)
    if a.diff:
        return diff(*a.diff)
    if a.out:
        return snapshot(a.out, a.workers)
    ap.error("--out or --diff")
    return 2


if __name__ == "__main__":
    sys.exit(main())
