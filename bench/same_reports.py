#!/usr/bin/env python3
"""Are the reports of every known capture the same before and after a change?

    python bench/same_reports.py                     # where the branch left main vs the tree
    python bench/same_reports.py --base HEAD~3       # another base (any git revision)
    python bench/same_reports.py --new HEAD          # a revision instead of the working tree
    python bench/same_reports.py --formats json,text,markdown --keep /tmp/rep

Every capture under ``captures/`` and ``../shared/corpus`` (the suffixes of tests/conftest.py) is
analysed twice, once by a frozen copy of ``--base`` (``git archive`` into a temporary directory,
put first on ``PYTHONPATH``) and once by the working tree, each side in one process; the rendered
reports are compared byte for byte.  Prints one line per capture whose reports differ (and a
unified diff of the first ``--show`` of them) and exits 1 when any differs, 0 when all are equal.
A capture one side cannot read at all (exit 2 of ``analyze``) is compared by its error text.

The reports do not depend on the clock or on the order captures are analysed in; a difference is a
change of behaviour (intended or not).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")


def captures() -> list[Path]:
    roots = [REPO / "captures", (REPO / ".." / "shared" / "corpus").resolve()]
    out = []
    for root in roots:
        if root.is_dir():
            out += sorted(p for p in root.rglob("*")
                          if p.is_file() and p.name.endswith(SUFFIXES))
    return out


def _label(path: Path) -> str:
    for base in (REPO, (REPO / ".." / "shared").resolve()):
        try:
            return str(path.relative_to(base))
        except ValueError:
            pass
    return str(path)


def worker(out_dir: Path, formats: list[str], paths: list[str]) -> None:
    """Analyse each path and write ``<n>.<format>`` files to ``out_dir`` (run with the
    PYTHONPATH of the side being measured)."""
    import pcapvpn
    from pcapvpn.analysis import run
    from pcapvpn.report import render
    from pcapvpn.sources import SourceError

    (out_dir / "source.txt").write_text(str(Path(pcapvpn.__file__).parent.parent) + "\n")
    for i, p in enumerate(paths):
        try:
            report = run([p]).report
        except SourceError as e:
            for fmt in formats:
                (out_dir / f"{i}.{fmt}").write_text(f"error: {e}\n")
            continue
        except Exception as e:  # noqa: BLE001 - a crash is a result to compare too
            for fmt in formats:
                (out_dir / f"{i}.{fmt}").write_text(f"crash: {type(e).__name__}: {e}\n")
            continue
        for fmt in formats:
            (out_dir / f"{i}.{fmt}").write_text(render(report, fmt), encoding="utf-8")


def _snapshot(rev: str, dest: Path) -> None:
    tar = dest / "src.tar"
    with open(tar, "wb") as f:
        subprocess.run(["git", "archive", rev, "pcapvpn", "dissect"], cwd=REPO, stdout=f,
                       check=True)
    with tarfile.open(tar) as t:
        t.extractall(dest / "src")  # noqa: S202 - our own repository's archive
    tar.unlink()


def _run_side(pythonpath: Path, out_dir: Path, formats, paths) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(pythonpath), PYTHONHASHSEED="0")
    listing = out_dir / "paths.json"
    listing.write_text(json.dumps([str(p) for p in paths]))
    # cwd outside the repository: ``python`` puts its working directory first on sys.path, which
    # would shadow the snapshot with the working tree
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(out_dir),
                    "--formats", ",".join(formats)], env=env, check=True, cwd=out_dir)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default=None,
                    help="git revision to compare with (default: the merge base of main and "
                         "HEAD, i.e. what this branch changed)")
    ap.add_argument("--new", default=None,
                    help="git revision to compare (default: the working tree as it is)")
    ap.add_argument("--formats", default="json,text", help="comma-separated report formats")
    ap.add_argument("--keep", default=None, help="keep both sides' reports in this directory")
    ap.add_argument("--show", type=int, default=3, help="diffs to print in full")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    if args.worker:
        out = Path(args.worker)
        worker(out, formats, json.loads((out / "paths.json").read_text()))
        return 0
    if args.base is None:
        args.base = subprocess.run(["git", "merge-base", "main", "HEAD"], cwd=REPO, check=True,
                                   capture_output=True, text=True).stdout.strip()
    paths = captures()
    tmp = tempfile.TemporaryDirectory(prefix="same-reports-")
    work = Path(args.keep) if args.keep else Path(tmp.name)
    base_src = Path(tmp.name) / "base"
    base_src.mkdir(parents=True, exist_ok=True)
    _snapshot(args.base, base_src)
    _run_side(base_src / "src", work / "base", formats, paths)
    new_src = REPO
    if args.new:
        (Path(tmp.name) / "new").mkdir()
        _snapshot(args.new, Path(tmp.name) / "new")
        new_src = Path(tmp.name) / "new" / "src"
    _run_side(new_src, work / "new", formats, paths)
    for side in ("base", "new"):
        print(f"{side}: pcapvpn from {(work / side / 'source.txt').read_text().strip()}")
    differ = 0
    shown = 0
    for i, p in enumerate(paths):
        for fmt in formats:
            a = (work / "base" / f"{i}.{fmt}").read_text(encoding="utf-8")
            b = (work / "new" / f"{i}.{fmt}").read_text(encoding="utf-8")
            if a == b:
                continue
            differ += 1
            print(f"DIFFERS ({fmt}): {_label(p)}")
            if shown < args.show:
                shown += 1
                sys.stdout.writelines(list(difflib.unified_diff(
                    a.splitlines(True), b.splitlines(True), f"{args.base}",
                    args.new or "working tree",
                    n=2))[:80])
    print(f"{len(paths)} captures x {len(formats)} formats: {differ} report(s) differ "
          f"(base {args.base})")
    tmp.cleanup()
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
