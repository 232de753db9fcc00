#!/usr/bin/env python3
"""Before/after comparison of pcapvpn's JSON reports over every capture.

A change that should alter no output (or only the outputs it lists) is checked by analysing every
capture in ``captures/`` and ``../shared/corpus`` with the code before and after it and comparing
the JSON reports field by field::

    # 1. the code before (a frozen copy: git worktree, ``git archive | tar -x``, another checkout)
    git archive main | (mkdir -p /tmp/before && tar -x -C /tmp/before)
    python bench/report_diff.py snapshot --src /tmp/before --out /tmp/rd-before
    # 2. the code after (default --src: this checkout)
    python bench/report_diff.py snapshot --out /tmp/rd-after
    # 3. what changed, capture by capture (exit status 1 when anything did)
    python bench/report_diff.py compare /tmp/rd-before /tmp/rd-after

``snapshot`` runs the analysis in a child process whose ``PYTHONPATH`` starts with ``--src``, so
the two trees never mix; each capture's report is written as ``<out>/<relative path>.json`` (keys
sorted), a lab capture's report with the scenario's saved keys as ``<relative path>+keys.json``,
with the daemons' logs of its scenario (``*.log``) as ``+logs.json`` (and ``+keys+logs.json``),
plus ``<out>/_errors.json`` for captures the analysis refused (exit 2 paths).  ``compare``
prints, per capture, every JSON path whose value differs (lists of findings and tunnels are
matched by their ``id``, other lists by position), then the kinds of difference with the number
of reports showing each (``--brief``: only those); ``--ignore PATH_GLOB`` drops paths (e.g.
``--ignore 'version'``).  ``--captures`` restricts ``snapshot`` to some files.  ``snapshot
--formats text,markdown,html`` also writes those renderings (``<name>.text`` ...), which
``compare`` compares byte for byte (the first differing line is shown).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")


def default_captures() -> list[Path]:
    roots = [REPO / "captures", (REPO / ".." / "shared" / "corpus").resolve()]
    out = []
    for root in roots:
        if root.is_dir():
            out += sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
    return out


def _name(path: Path) -> str:
    for base in (REPO, (REPO / ".." / "shared").resolve()):
        try:
            return str(path.resolve().relative_to(base))
        except ValueError:
            pass
    return str(path).lstrip("/")


def _lab_keys(path: Path) -> Path | None:
    """The key directory a lab scenario's expected.json names for this capture, if any."""
    exp = path.parent / "expected.json"
    if not exp.is_file():
        return None
    try:
        caps = json.loads(exp.read_text()).get("captures", [])
    except ValueError:
        return None
    for cap in caps:
        if cap.get("file") == path.name and cap.get("keys"):
            return path.parent / cap["keys"]
    return None


def _lab_logs(path: Path) -> list[str]:
    """The daemons' logs beside a lab capture (``*.log`` in its scenario directory), if any."""
    if (path.parent / "expected.json").is_file():
        return sorted(str(p) for p in path.parent.glob("*.log"))
    return []


def _worker(out: Path, paths: list[str]) -> int:
    """Runs inside the child process (its PYTHONPATH selects the code).  A lab capture whose
    expected.json names its keys is also analysed with them (``<name>+keys.json``)."""
    from pcapvpn.analysis import Options, run
    try:
        from pcapvpn.decrypt.keyfile import load_keys
    except ImportError:  # a tree from before the decrypt package (pcapvpn/keys.py)
        from pcapvpn.keys import load_keys  # type: ignore[no-redef]
    from pcapvpn.logsrc import open_logs
    from pcapvpn.report import render

    formats = [f for f in os.environ.get("REPORT_DIFF_FORMATS", "").split(",") if f]

    errors = {}
    for p in paths:
        runs = [("", None, ())]
        keys = _lab_keys(Path(p))
        logs = _lab_logs(Path(p))
        if keys is not None:
            runs.append(("+keys", keys, ()))
        if logs:
            runs.append(("+logs", None, logs))
            if keys is not None:
                runs.append(("+keys+logs", keys, logs))
        for suffix, kd, lf in runs:
            name = _name(Path(p)) + suffix
            target = out / (name + ".json")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                opts = None
                if kd is not None or lf:
                    opts = Options(keys=load_keys([str(kd)]) if kd is not None else None,
                                   logs=open_logs(list(lf)))
                result = run([p], opts).report
                report = result.to_dict()
            except Exception as e:  # noqa: BLE001 - a refused capture is a result too
                errors[name] = f"{type(e).__name__}: {e}"
                continue
            target.write_text(json.dumps(report, sort_keys=True, indent=1, default=str))
            for fmt in formats:
                target.with_suffix("." + fmt).write_text(render(result, fmt), encoding="utf-8")
    (out / "_errors.json").write_text(json.dumps(errors, sort_keys=True, indent=1))
    return 0


def snapshot(src: Path, out: Path, captures: list[Path], formats=()) -> int:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, REPORT_DIFF_FORMATS=",".join(formats))
    env["PYTHONPATH"] = str(src) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, __file__, "_worker", str(out)] + [str(p) for p in captures]
    res = subprocess.run(cmd, env=env, cwd=str(src))
    print(f"{len(captures)} capture(s) analysed with {src} into {out}", file=sys.stderr)
    return res.returncode


def _keyed(items):
    if items and all(isinstance(x, dict) and "id" in x for x in items):
        keys = [x["id"] for x in items]
        if len(set(keys)) == len(keys):
            return dict(zip(keys, items))
    return None


def diff(a, b, path="") -> list[tuple[str, object, object]]:
    """Every leaf path whose value differs between ``a`` and ``b``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            p = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append((p, "<absent>", b[k]))
            elif k not in b:
                out.append((p, a[k], "<absent>"))
            else:
                out += diff(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list):
        ka, kb = _keyed(a), _keyed(b)
        if ka is not None and kb is not None:
            return diff(ka, kb, path)
        out = []
        for i in range(max(len(a), len(b))):
            p = f"{path}[{i}]"
            if i >= len(a):
                out.append((p, "<absent>", b[i]))
            elif i >= len(b):
                out.append((p, a[i], "<absent>"))
            else:
                out += diff(a[i], b[i], p)
        return out
    return [] if a == b else [(path, a, b)]


def _short(v, n=160) -> str:
    s = json.dumps(v, sort_keys=True, default=str) if not isinstance(v, str) else v
    return s if len(s) <= n else s[:n - 3] + "..."


def _pattern(path: str, old, new) -> str:
    """A difference's kind for the summary: list positions as [*], and whether the field
    appeared, disappeared or changed."""
    p = re.sub(r"\[\d+\]", "[*]", path)
    p = re.sub(r"\.F[0-9a-f]{12}\b", ".<finding>", p)
    if old == "<absent>":
        return f"{p} (new)"
    if new == "<absent>":
        return f"{p} (gone)"
    return p


def compare(before: Path, after: Path, ignore: list[str], brief: bool = False) -> int:
    names = sorted({str(p.relative_to(before)) for p in before.rglob("*.json")} |
                   {str(p.relative_to(after)) for p in after.rglob("*.json")})
    changed = 0
    total = 0
    kinds = Counter()
    for name in names:
        if name == "_errors.json":
            continue
        total += 1
        pa, pb = before / name, after / name
        a = json.loads(pa.read_text()) if pa.exists() else None
        b = json.loads(pb.read_text()) if pb.exists() else None
        d = diff(a, b) if a is not None and b is not None else [("", a is not None, b is not None)]
        d = [x for x in d if not any(fnmatch.fnmatch(x[0], g) for g in ignore)]
        if not d:
            continue
        changed += 1
        kinds.update({_pattern(p, x, y) for p, x, y in d})
        if brief:
            continue
        print(f"== {name[:-5]}: {len(d)} difference(s)")
        for p, x, y in d:
            print(f"   {p}: {_short(x)}  ->  {_short(y)}")
    for fmt in ("text", "markdown", "html"):
        for name in sorted({str(p.relative_to(before)) for p in before.rglob("*." + fmt)} |
                           {str(p.relative_to(after)) for p in after.rglob("*." + fmt)}):
            pa, pb = before / name, after / name
            total += 1
            la = pa.read_text(encoding="utf-8").splitlines() if pa.exists() else ["<absent>"]
            lb = pb.read_text(encoding="utf-8").splitlines() if pb.exists() else ["<absent>"]
            if la == lb:
                continue
            changed += 1
            kinds[f"<{fmt} rendering>"] += 1
            if not brief:
                i = next((i for i, (x, y) in enumerate(zip(la, lb)) if x != y), min(len(la),
                                                                                   len(lb)))
                print(f"== {name} differs from line {i + 1}: "
                      f"{_short(la[i] if i < len(la) else '<end>')}  ->  "
                      f"{_short(lb[i] if i < len(lb) else '<end>')}")
    ea, eb = (json.loads((d / "_errors.json").read_text()) if (d / "_errors.json").exists() else {}
              for d in (before, after))
    for k in sorted(set(ea) | set(eb)):
        if ea.get(k) != eb.get(k):
            changed += 1
            print(f"== {k}: refused {ea.get(k)!r} -> {eb.get(k)!r}")
    if kinds:
        print("kinds of difference (reports with it):")
        for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {n:5d}  {k}")
    print(f"{changed} of {total} report(s) differ")
    return 1 if changed else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        return _worker(Path(argv[1]), argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("snapshot", help="analyse every capture with the code in --src")
    s.add_argument("--src", type=Path, default=REPO, help="source tree to import pcapvpn from")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--captures", nargs="*", type=Path,
                   help="default: captures/ and ../shared/corpus")
    s.add_argument("--formats", default="",
                   help="renderings to write and compare too (comma-separated: text,markdown,html)")
    c = sub.add_parser("compare", help="print the differences between two snapshots")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--ignore", action="append", default=[], help="JSON path glob to leave out")
    c.add_argument("--brief", action="store_true", help="only the summary of kinds")
    a = ap.parse_args(argv)
    if a.cmd == "snapshot":
        return snapshot(a.src.resolve(), a.out, a.captures or default_captures(),
                        [f for f in a.formats.split(",") if f])
    return compare(a.before, a.after, a.ignore, a.brief)


if __name__ == "__main__":
    sys.exit(main())
