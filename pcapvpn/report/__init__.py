"""Renderers: model (+ findings) → text, JSON, Markdown.  A renderer never computes a diagnosis."""

from __future__ import annotations

FORMATS = ("text", "json", "markdown", "html")


def render(report, fmt: str, color: bool = False, lang: str = "en", redacted: bool = False) -> str:
    """``lang`` (en, ja) applies to text, Markdown and HTML; JSON stays English."""
    if fmt == "json":
        from pcapvpn.report.json import render_json
        return render_json(report)
    if fmt == "html":
        from pcapvpn.report.html import render_html
        return render_html(report, lang=lang, redacted=redacted)
    if lang != "en":
        from pcapvpn.i18n import localize
        report = localize(report, lang)
    if fmt == "markdown":
        from pcapvpn.report.markdown import render_markdown
        return render_markdown(report, lang=lang)
    from pcapvpn.report.text import render_text
    return render_text(report, color=color, lang=lang)


def select(report, peers=(), spis=(), min_severity: str = "info"):
    """A copy of ``report`` limited to tunnels of ``peers`` / carrying ``spis`` and to findings at
    or above ``min_severity`` (presentation only: the diagnosis is unchanged)."""
    import copy
    import ipaddress

    from pcapvpn.findings import finding_groups, severity_rank

    if not peers and not spis and min_severity == "info":
        return report
    r = copy.copy(report)
    tunnels = list(report.tunnels)
    if peers:
        want = {str(ipaddress.ip_address(p)) for p in peers}
        tunnels = [t for t in tunnels if t["a"] in want or t["b"] in want]
    if spis:
        hexes = {format(s, "08x") for s in spis} | {format(s, "016x") for s in spis}
        sa_ids = {sa["id"] for sa in report.ike_sas if sa["ispi"] in hexes or sa["rspi"] in hexes}
        tunnels = [t for t in tunnels
                   if any(e.split("/")[-1] in hexes for e in t["esp_sas"])
                   or any(i in sa_ids for i in t["ike_sas"])]
    keep = {t["id"] for t in tunnels}
    r.tunnels = tunnels
    limit = severity_rank(min_severity)
    r.findings = [f for f in report.findings
                  if severity_rank(f.severity) <= limit
                  and (not (peers or spis) or f.tunnel in keep)]
    r.groups = finding_groups(r.findings)
    if peers or spis:
        ike_keep = {i for t in tunnels for i in t["ike_sas"]}
        esp_keep = {e for t in tunnels for e in t["esp_sas"]}
        r.ike_sas = [sa for sa in report.ike_sas if sa["id"] in ike_keep]
        r.esp_sas = [e for e in report.esp_sas
                     if f"{e.get('dst')}/{e.get('spi')}" in esp_keep]
    return r
