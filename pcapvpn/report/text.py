"""Terminal text report."""

from __future__ import annotations

from tabulate import tabulate

from pcapvpn.report.summary import summary_rows


def _bold(s: str, color: bool) -> str:
    return f"\033[1m{s}\033[0m" if color else s


def render_text(report, color: bool = False) -> str:
    cap = report.capture
    out = [_bold("Capture summary", color), ""]
    out.append(tabulate(summary_rows(cap), tablefmt="plain"))
    if cap.warnings:
        out += ["", _bold("Warnings", color)]
        out += [f"  {w}" for w in cap.warnings]
    if cap.decode_errors:
        out += ["", _bold(f"Undecodable frames: {cap.decode_errors}", color)]
        for reason, n in sorted(cap.decode_errors_by_reason.items(), key=lambda kv: -kv[1]):
            out.append(f"  {n:>7}  {reason}")
        shown = cap.decode_error_samples[:20]
        for e in shown:
            out.append(f"  {e.file}: frame {e.frame}: {e.reason}")
        if len(cap.decode_error_samples) > len(shown) or cap.decode_errors > len(shown):
            out.append(f"  ... ({cap.decode_errors - len(shown)} more; --format json lists up to "
                       f"{len(cap.decode_error_samples)})")
    return "\n".join(out) + "\n"
