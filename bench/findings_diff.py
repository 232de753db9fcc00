"""Before/after comparison of the findings and verdicts of every capture in captures/ and
../shared/corpus.

    python bench/findings_diff.py snapshot OUT.json   # analyse every capture (keyless; lab
                                                      # captures also with their saved keys)
    python bench/findings_diff.py diff BEFORE.json AFTER.json

To compare with another revision, unpack it and put it first on the path, e.g.
``git archive main | tar -x -C /tmp/base && PYTHONPATH=/tmp/base python bench/findings_diff.py
snapshot before.json`` (the captures are read from this checkout either way).

A snapshot holds, per capture (and per "capture + keys"), the tunnels' verdicts and every
finding's code, severity, tunnel, title, detail and advice; ``diff`` prints what changed, capture
by capture (findings matched by their stable id).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import CORPUS, capture_files  # noqa: E402


def _cases():
    for p in capture_files(ROOT / "captures"):
        rel = str(p.relative_to(ROOT))
        yield rel, p, None
        exp = p.parent / "expected.json"
        if exp.is_file():
            for cap in json.loads(exp.read_text()).get("captures", []):
                if cap.get("file") == p.name and cap.get("keys"):
                    yield rel + " +keys", p, p.parent / cap["keys"]
    if CORPUS.is_dir():
        for p in capture_files(CORPUS):
            yield "corpus/" + str(p.relative_to(CORPUS)), p, None


def _one(path, keys):
    from pcapvpn.analysis import Options, run

    opts = Options()
    if keys is not None:
        from pcapvpn.keys import load_keys
        opts.keys = load_keys([str(keys)])
    try:
        rep = run([str(path)], opts).report.to_dict()
    except Exception as e:  # noqa: BLE001 — recorded, compared like any other outcome
        return {"error": f"{type(e).__name__}: {e}"}
    out = {"verdicts": {}, "not_seen": {}, "findings": {}}
    for t in rep.get("tunnels", []):
        out["verdicts"][t.get("id")] = " ".join(
            str(t.get(k)) for k in ("verdict", "failed_stage", "primary_code"))
        out["not_seen"][t.get("id")] = t.get("not_seen")
    for f in rep.get("findings", []):
        out["findings"][f["id"]] = {k: f.get(k) for k in
                                    ("code", "severity", "tunnel", "title", "detail", "advice")}
    return out


def snapshot(out):
    res = {}
    for name, path, keys in _cases():
        res[name] = _one(path, keys)
        print(name, file=sys.stderr)
    Path(out).write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")


def diff(before, after) -> int:
    a = json.loads(Path(before).read_text())
    b = json.loads(Path(after).read_text())
    changed = 0
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name), b.get(name)
        if x == y:
            continue
        changed += 1
        print(f"== {name}")
        if x is None or y is None or "error" in x or "error" in y:
            print(f"   before: {x if x is None or 'error' in x else 'ok'}")
            print(f"   after:  {y if y is None or 'error' in y else 'ok'}")
            continue
        for t in sorted(set(x["verdicts"]) | set(y["verdicts"]), key=str):
            if x["verdicts"].get(t) != y["verdicts"].get(t):
                print(f"   verdict {t}: {x['verdicts'].get(t)} -> {y['verdicts'].get(t)}")
            if x["not_seen"].get(t) != y["not_seen"].get(t):
                print(f"   not seen {t}: {x['not_seen'].get(t)}")
                print(f"            -> {y['not_seen'].get(t)}")
        fx, fy = x["findings"], y["findings"]
        for i in sorted(set(fx) - set(fy), key=lambda i: fx[i]["code"]):
            print(f"   - {fx[i]['code']} ({fx[i]['severity']}) {fx[i]['title']}")
        for i in sorted(set(fy) - set(fx), key=lambda i: fy[i]["code"]):
            print(f"   + {fy[i]['code']} ({fy[i]['severity']}) {fy[i]['title']}")
        for i in sorted(set(fx) & set(fy), key=lambda i: fx[i]["code"]):
            if fx[i] == fy[i]:
                continue
            print(f"   ~ {fx[i]['code']} [{i}]")
            for k in ("severity", "tunnel", "title", "detail", "advice"):
                if fx[i][k] != fy[i][k]:
                    if k == "advice":
                        gone = [s for s in fx[i][k] if s not in fy[i][k]]
                        new = [s for s in fy[i][k] if s not in fx[i][k]]
                        for s in gone:
                            print(f"       advice - {s}")
                        for s in new:
                            print(f"       advice + {s}")
                        if not gone and not new:
                            print(f"       advice: order/count {len(fx[i][k])} -> {len(fy[i][k])}")
                    else:
                        print(f"       {k}: {fx[i][k]!r}")
                        print(f"       {' ' * len(k)}  -> {fy[i][k]!r}")
    print(f"{changed} capture(s) changed of {len(set(a) | set(b))}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "snapshot":
        snapshot(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "diff":
        sys.exit(diff(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
