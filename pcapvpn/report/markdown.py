"""Markdown report (paste into a ticket)."""

from __future__ import annotations

from tabulate import tabulate

from pcapvpn.report.summary import summary_rows


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(report) -> str:
    cap = report.capture
    out = [f"## pcapvpn {report.version}: capture summary", ""]
    rows = [(k, _md_escape(v)) for k, v in summary_rows(cap)]
    out.append(tabulate(rows, headers=["", ""], tablefmt="github"))
    if cap.warnings:
        out += ["", "### Warnings", ""] + [f"- {_md_escape(w)}" for w in cap.warnings]
    if cap.decode_errors:
        out += ["", f"### Undecodable frames ({cap.decode_errors})", ""]
        out += [f"- {_md_escape(e.file)} frame {e.frame}: {_md_escape(e.reason)}"
                for e in cap.decode_error_samples[:50]]
    return "\n".join(out) + "\n"
