"""docs/findings.md, generated from the rule registry, the thresholds and the limits.

    python -m pcapvpn.rules.catalog > docs/findings.md

A test keeps docs/findings.md in step with this output.
"""

from __future__ import annotations

from pcapvpn.limits import Limits
from pcapvpn.findings import ALL_STAGES, REGISTRY
from pcapvpn.rules import load_all
from pcapvpn.thresholds import describe, valid_range


def _only(conditions) -> str:
    """``*(IKEv1, MM1, libreswan)* `` for an advice line given only under conditions."""
    if not conditions:
        return ""
    parts = []
    order = ("version", "exchange", "impl")
    for key, values in sorted(conditions, key=lambda c: (order + (c[0],)).index(c[0])):
        if key == "version":
            parts.append(" / ".join(f"IKEv{v}" for v in values))
        elif key in ("exchange", "impl"):
            parts.append(" / ".join(str(v) for v in values))
        else:
            parts.append(key.replace("_", " ") + ": " + " / ".join(str(v) for v in values))
    return "*(" + ", ".join(parts) + ")* "


def render() -> str:
    load_all()
    out = ["# pcapvpn finding codes", "",
           "Generated from the rule registry (`python -m pcapvpn.rules.catalog > docs/findings.md`);",
           "a test fails when this file and the code disagree. An advice line marked *(...)* is "
           "given only where its conditions hold (IKE version, exchange, the implementation named "
           "by Vendor IDs, ...); `{name}` is filled from the finding.", "",
           "Stages, in the order a VPN comes up: " + " → ".join(
               s for s in ALL_STAGES if s != "capture")
           + "; `capture` is outside the order (can the capture be trusted?). Posture findings are "
             "reported beside the verdict and never change it; findings marked *not a failure* do not "
             "fail a tunnel.", ""]
    for stage in ALL_STAGES:
        specs = sorted((s for s in REGISTRY.values() if s.stage == stage), key=lambda s: s.code)
        if not specs:
            continue
        out += [f"## {stage}", ""]
        for s in specs:
            flags = []
            if s.posture:
                flags.append("posture")
            if not s.failure:
                flags.append("not a failure")
            out.append(f"### `{s.code}`")
            out.append("")
            out.append(f"Default severity **{s.severity}**" + (f" ({', '.join(flags)})" if flags else "")
                       + ".")
            out.append("")
            out.append(s.meaning)
            out.append("")
            if s.advice:
                out.append("Advice:")
                out.append("")
                conds = s.advice_when or ((),) * len(s.advice)
                out += [f"{i}. {_only(c)}{a}" for i, (a, c) in enumerate(zip(s.advice, conds), 1)]
                out.append("")
    out += ["## Thresholds", "",
            "Options of `analyze` and `live`: `--set NAME=VALUE` (a value outside its range is "
            "refused with exit status 2).", "",
            "| name | default | valid values | meaning |", "|---|---|---|---|"]
    for name, default, doc in describe():
        out.append(f"| `{name}` | {default} | {valid_range(name)} | {doc} |")
    out += ["", "## Limits", "",
            "Bounds of what an analysis keeps (`pcapvpn.limits.Limits`), so that a hostile "
            "capture (a flood of SPIs or IKE_SA_INITs, garbage) gives a bounded analysis and "
            "report; what a bound drops is counted and reported (`CAPTURE_LIMITS`, and "
            "`omitted` in JSON for the report's lists). Options of `analyze`: "
            "`--limit NAME=VALUE` (a positive number). `pcapvpn live` lowers the bounds of the "
            "last column to what its `--max-sas` S needs (`Limits.for_live`): idle and least "
            "recently active entries are evicted to make room, and counted.", "",
            "| name | default | live (`--max-sas` S) | meaning |", "|---|---|---|---|"]
    for name, default, doc in describe(Limits):
        live = ""
        if name in Limits.LIVE:
            per_sa, floor = Limits.LIVE[name]
            live = (f"at most {floor:,}" if not per_sa
                    else f"at most max({floor:,}, {per_sa:,} × S)")
        out.append(f"| `{name}` | {default:,} | {live} | {doc} |" if isinstance(default, int)
                   else f"| `{name}` | {default} | {live} | {doc} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(render())
