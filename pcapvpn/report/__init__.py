"""Renderers: model (+ findings) → text, JSON, Markdown.  A renderer never computes a diagnosis."""

from __future__ import annotations

FORMATS = ("text", "json", "markdown")


def render(report, fmt: str, color: bool = False) -> str:
    if fmt == "json":
        from pcapvpn.report.json import render_json
        return render_json(report)
    if fmt == "markdown":
        from pcapvpn.report.markdown import render_markdown
        return render_markdown(report)
    from pcapvpn.report.text import render_text
    return render_text(report, color=color)
