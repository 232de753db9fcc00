"""Terminal text report: a one-screen summary per tunnel, then the findings with their evidence,
then tables of IKE exchanges and ESP SAs, then the capture summary.

Every value is written through :func:`pcapvpn.report.escape.printable` (capture text cannot act on
the terminal); the colours are added after it."""

from __future__ import annotations

import textwrap

from tabulate import tabulate

from pcapvpn.report.escape import printable as _s
from pcapvpn.report.summary import (
    proto_label as _proto,
    VERDICT_ORDER, esp_rows, findings_by_tunnel, frames_text, ike_rows, log_event_rows,
    log_notes, log_ref_lines, log_source_rows, summary_rows,
)

_COLORS = {"failing": "31", "degraded": "33", "unknown": "36", "healthy": "32",
           "critical": "31;1", "error": "31", "warning": "33", "info": "36"}


def _c(s: str, key: str, color: bool) -> str:
    code = _COLORS.get(key)
    return f"\033[{code}m{s}\033[0m" if color and code else s


def _bold(s: str, color: bool) -> str:
    return f"\033[1m{s}\033[0m" if color else s


def _wrap(s: str, indent: str) -> str:
    return textwrap.fill(s, width=100, initial_indent=indent, subsequent_indent=indent)


def render_text(report, color: bool = False) -> str:
    cap = report.capture
    out = []
    tunnels = sorted(report.tunnels, key=lambda t: VERDICT_ORDER.get(t["verdict"], 9))
    fmap = {f.id: f for f in report.findings}
    out.append(_bold(f"pcapvpn {_s(report.version)} — {len(tunnels)} tunnel(s), "
                     f"{len(report.findings)} finding(s), {cap.frames} frames, "
                     f"{cap.duration:.1f} s", color))
    out.append("")
    if tunnels:
        rows = []
        for t in tunnels:
            p = fmap.get(t["primary_finding"])
            rows.append([_s(t["id"]), _s(_proto(t)),
                         _c(_s(t["verdict"].upper()), t["verdict"], color),
                         _s(t["failed_stage"] or t["stage_reached"]),
                         _s(f"{p.code}: {p.title}") if p else "-"])
        out.append(tabulate(rows, headers=["tunnel", "protocol", "verdict", "stage", "primary finding"],
                            tablefmt="simple"))
    else:
        out.append("No IKE, ESP or AH traffic between gateways was found.")
    groups = findings_by_tunnel(report)
    for tid, fs in groups:
        out += ["", _bold(f"== {_s(tid or 'capture')} ==", color)]
        t = next((x for x in tunnels if x["id"] == tid), None)
        if t and t["not_seen"]:
            out.append("  Not visible in this capture:")
            for n in t["not_seen"]:
                out.append(_wrap(f"- {_s(n)}", "    "))
        for f in fs:
            tag = "posture " if f.posture else ""
            out.append("")
            out.append(f"  [{_c(_s(f.severity.upper()), f.severity, color)}] {tag}"
                       f"{_bold(_s(f.code), color)} ({_s(f.stage)}, {_s(f.basis)}): {_s(f.title)}")
            out.append(_wrap(_s(f.detail), "      "))
            if f.evidence.frames:
                out.append(_wrap("frames: " + _s(frames_text(f.evidence.frames)), "      "))
            if f.wireshark_filter:
                out.append(f"      filter: {_s(f.wireshark_filter)}")
            for line in log_ref_lines(f):
                out.append(_wrap(_s(line), "      "))
            for i, a in enumerate(f.advice, 1):
                out.append(_wrap(f"{i}. {_s(a)}", "      ").replace("      ", "    > ", 1))
    out += _logs_section(report, color)
    ike = ike_rows(report)
    if ike:
        out += ["", _bold("IKE exchanges", color)]
        out.append(tabulate([[_s(c) for c in r] for r in ike[1]], headers=ike[0],
                            tablefmt="simple"))
    esp = esp_rows(report)
    if esp:
        out += ["", _bold("ESP/AH SAs", color)]
        out.append(tabulate([[_s(c) for c in r] for r in esp[1]], headers=esp[0],
                            tablefmt="simple"))
    out += ["", _bold("Capture", color)]
    out.append(tabulate([(k, _s(v)) for k, v in summary_rows(cap)], tablefmt="plain"))
    if cap.warnings:
        out += ["", _bold("Warnings", color)]
        out += [f"  {_s(w)}" for w in cap.warnings]
    if cap.decode_errors:
        out += ["", _bold(f"Undecodable frames: {cap.decode_errors}", color)]
        for reason, n in sorted(cap.decode_errors_by_reason.items(), key=lambda kv: -kv[1]):
            out.append(f"  {n:>7}  {_s(reason)}")
        shown = cap.decode_error_samples[:20]
        for e in shown:
            out.append(f"  {_s(e.file)}: frame {e.frame}: {_s(e.reason)}")
        if cap.decode_errors > len(shown):
            out.append(f"  ... ({cap.decode_errors - len(shown)} more; --format json lists up to "
                       f"{len(cap.decode_error_samples)})")
    return "\n".join(out) + "\n"


def _logs_section(report, color: bool) -> list[str]:
    """The gateway logs (--log): what was read, how it was aligned, its events on the
    capture's clock."""
    src = log_source_rows(report)
    if src is None:
        return []
    out = ["", _bold("Logs", color),
           tabulate([[_s(c) for c in r] for r in src[1]], headers=src[0], tablefmt="simple")]
    for n in log_notes(report):
        out.append(_wrap(f"- {_s(n)}", "  "))
    ev = log_event_rows(report)
    if ev and ev[1]:
        out += ["", tabulate([[_s(c) for c in r] for r in ev[1]], headers=ev[0],
                             tablefmt="simple")]
        more = len(report.log_events) - len(ev[1])
        if more > 0:
            out.append(f"  ... ({more} more events; --format json lists them)")
    return out
