"""Terminal text report.  The first screen is enough to act on: the header, for a capture with
many tunnels a summary per gateway, the verdict table (tunnels with the same verdict, stage and
primary finding in one row when there are many), and every error by code; then the repeated
findings once each (``IKE_COOKIE x70, on these tunnels: ...``), one section per tunnel (what the
keys or the VPN protocol showed, what was not visible, its other findings with their evidence),
tables of IKE exchanges and ESP SAs, and the capture summary.

Every value is written through :func:`pcapvpn.report.escape.printable` (capture text cannot act on
the terminal); the colours are added after it."""

from __future__ import annotations

import textwrap

from pcapvpn.i18n import Lang

from tabulate import tabulate

from pcapvpn.report.escape import printable as _s
from pcapvpn.report.facts import tunnel_facts
from pcapvpn.report.summary import (
    GATEWAY_HEADERS, cell, clock_note, damage_lines, compact, duration_text, error_groups, esp_rows,
    findings_by_tunnel, frames_text, gateway_rows, grouped_ids, groups_of, ike_rows, list_text,
    location_text, log_event_rows, log_notes, log_ref_lines, log_source_rows, path_ladder,
    path_rows, summary_rows, tunnel_order, vantage_inside_lines, vantage_rows, verdict_line,
    verdict_rows,
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


def _finding(out, f, color, L, count=None, tunnels=None):
    """A finding with its evidence and advice; ``count``/``tunnels``: shown once for a group
    (the first one's evidence stands for the rest)."""
    _ = L._
    tag = _("posture") + " " if f.posture else ""
    times = f" x{count}" if count else ""
    out.append("")
    out.append(f"  [{_c(_s(f.severity.upper()), f.severity, color)}] {tag}"
               f"{_bold(_s(f.code) + times, color)} ({_s(_(f.stage))}, {_s(_(f.basis))}): "
               f"{_s(f.title)}")
    if tunnels:
        out.append(_wrap(L.fmt("on these {n} tunnels:", n=len(tunnels)) + f" {_s(', '.join(tunnels))}",
                         "      "))
        out.append(_wrap(f"{_('e.g.')} {_s(f.tunnel or _('capture'))}: {_s(f.detail)}", "      "))
    else:
        out.append(_wrap(_s(f.detail), "      "))
    loc = location_text(f)
    if loc:
        out.append(_wrap(_s(L.msg(loc)), "      "))
    if f.evidence.frames:
        out.append(_wrap(_("frames") + ": " + _s(frames_text(f.evidence.frames)), "      "))
    if f.wireshark_filter:
        out.append(f"      {_('filter')}: {_s(f.wireshark_filter)}")
    for line in log_ref_lines(f):
        out.append(_wrap(_s(L.msg(line)), "      "))
    for i, a in enumerate(f.advice, 1):
        out.append(_wrap(f"{i}. {_s(a)}", "      ").replace("      ", "    > ", 1))


def render_text(report, color: bool = False, lang: str = "en") -> str:
    """``lang``: the language of headings and labels (the findings are already translated:
    :func:`pcapvpn.i18n.localize`)."""
    L = Lang(lang)
    _ = L._
    cap = report.capture
    out = []
    tunnels = tunnel_order(report)
    fmap = {f.id: f for f in report.findings}
    many = compact(report)
    out.append(_bold(f"pcapvpn {_s(report.version)} — " + L.fmt(
        "{tunnels} tunnel(s), {findings} finding(s), {frames} frames, {duration}",
        tunnels=len(tunnels), findings=len(report.findings), frames=cap.frames,
        duration=duration_text(cap)), color))
    note = clock_note(cap)
    if note:
        out.append(_c(f"{_('Capture clock')}: {_s(L.msg(note))}", "warning", color))
    damage = damage_lines(cap)
    if damage:
        out.append(_c(_wrap(_s(L.msg(damage[0])), ""), "error", color))
        out += [_wrap(f"- {_s(L.msg(line))}", "  ") for line in damage[1:]]
    out.append("")
    vp = vantage_rows(report)
    if vp:
        out.append(_bold(_("Vantage points (times on the first point's clock)"), color))
        out.append(tabulate([[_s(L.msg(c)) for c in r] for r in vp[1]], headers=L.headers(vp[0]),
                            tablefmt="simple"))
        out += [_wrap(f"- {_s(L.msg(line))}", "  ") for line in vantage_inside_lines(report)]
        out.append("")
    gws = gateway_rows(report) if many else []
    if gws:
        out.append(tabulate([[_s(L.msg(c)) for c in r] for r in gws], headers=L.headers(GATEWAY_HEADERS),
                            tablefmt="simple"))
        out.append("")
    if tunnels:
        rows = []
        for label, proto, verdict, stage, p, _ids in verdict_rows(report, fmap):
            rows.append([_s(L.msg(label)), _s(proto), _c(_s(L.upper(verdict)), verdict, color),
                         _s(_(stage)), _s(cell(f"{p.code}: {p.title}", 70)) if p else "-"])
        out.append(tabulate(rows, headers=L.headers(["tunnel" + ("s" if many else ""), "protocol",
                                                     "verdict", "stage", "primary finding"]),
                            tablefmt="simple"))
    else:
        out.append(_("No IKE, ESP or AH traffic between gateways was found."))
    if many:
        errs = error_groups(report)
        out += ["", _bold(L.fmt("Errors: {n} finding(s) of {kinds} kind(s)",
                                n=sum(e[2] for e in errs), kinds=len(errs)) if errs else _("Errors: none"), color)]
        for sev, code, n, title, tids in errs:
            head = f"  [{sev.upper()}] {code} x{n}: "
            out.append(_c(_s(head), sev, color)
                       + _s(cell(f"{title} — {_('on')} {list_text(tids, 60)}", 100 - len(head))))
    groups = groups_of(report)
    skip = grouped_ids(report)
    if groups:
        out += ["", _bold(f"== {_('Repeated findings (each shown once)')} ==", color)]
        for g in groups:
            first = fmap.get(g["findings"][0])
            if first is not None:
                _finding(out, first, color, L, count=g["count"], tunnels=g["tunnels"])
    facts = {t["id"]: tunnel_facts(report, t) for t in tunnels}
    # with many tunnels, a healthy tunnel whose findings are all in groups gets no section
    include = [tid for tid, fl in facts.items() if fl and not many]
    include += [t["id"] for t in tunnels if t.get("path") and t["id"] not in include]
    for tid, fs in findings_by_tunnel(report, include=include, skip=skip):
        t = next((x for x in tunnels if x["id"] == tid), None)
        if many and not fs and t is not None and not t["not_seen"]:
            continue
        out += ["", _bold(f"== {_s(tid or _('capture'))} ==", color)]
        for line in facts.get(tid, ()):
            out.append(_wrap(f"- {_s(L.msg(line))}", "  ").replace("  - ", "  ", 1))
        pv = path_rows(t) if t else None
        if pv:
            lines, headers, rows = pv
            out.append(_wrap(_s(L.msg(lines[0])), "  "))
            out.append("\n".join("  " + x for x in tabulate(
                [[_s(L.msg(c)) for c in r] for r in rows], headers=L.headers(headers),
                tablefmt="simple").splitlines()))
            for line in lines[1:]:
                out.append(_wrap(f"- {_s(L.msg(line))}", "  "))
            lad = path_ladder(t, L=L)
            if lad:
                out.append("  " + _("IKE messages along the path:"))
                out += ["    " + _s(x) for x in lad]
        if t and t["not_seen"]:
            out.append("  " + _("Not visible in this capture:"))
            for n in t["not_seen"]:
                out.append(_wrap(f"- {_s(n)}", "    "))
        for f in fs:
            _finding(out, f, color, L)
        also = sorted({g["code"] for f in report.findings if f.tunnel == tid and f.id in skip
                       for g in [skip[f.id]]})
        if also and tid is not None:
            out.append("")
            out.append(_wrap(_("also (see Repeated findings):") + " " + _s(", ".join(also)),
                             "  "))
    out += _logs_section(report, color, L)
    ike = ike_rows(report)
    if ike:
        out += ["", _bold(_("IKE exchanges"), color)]
        out.append(tabulate([[_s(L.msg(c)) for c in r] for r in ike[1]], headers=L.headers(ike[0]),
                            tablefmt="simple"))
    esp = esp_rows(report)
    if esp:
        out += ["", _bold(_("ESP/AH SAs"), color)]
        out.append(tabulate([[_s(L.msg(c)) for c in r] for r in esp[1]], headers=L.headers(esp[0]),
                            tablefmt="simple"))
    out += ["", _bold(_("Capture"), color)]
    out.append(tabulate([(_(k), _s(L.msg(v))) for k, v in summary_rows(cap)],
                        tablefmt="plain"))
    if cap.warnings:
        out += ["", _bold(_("Warnings"), color)]
        out += [f"  {_s(L.msg(w))}" for w in cap.warnings]
    if cap.decode_errors:
        out += ["", _bold(f"{_('Undecodable frames')}: {cap.decode_errors}", color)]
        for reason, n in sorted(cap.decode_errors_by_reason.items(), key=lambda kv: -kv[1]):
            out.append(f"  {n:>7}  {_s(L.reason(reason))}")
        shown = cap.decode_error_samples[:20]
        for e in shown:
            out.append(f"  {_s(e.file)}: {_('frame')} {e.frame}: {_s(L.reason(e.reason))}")
        if cap.decode_errors > len(shown):
            out.append("  " + L.fmt("... ({n} more; --format json lists up to {limit})",
                                    n=cap.decode_errors - len(shown),
                                    limit=len(cap.decode_error_samples)))
    verdict = tunnels[0]["verdict"] if len(tunnels) == 1 else (
        "failing" if any(t["verdict"] == "failing" for t in tunnels) else None)
    out += ["", _c(_bold(_s(L.msg(verdict_line(report))), color), verdict or "", color)]
    return "\n".join(out) + "\n"


def _logs_section(report, color: bool, L: Lang) -> list[str]:
    """The gateway logs (--log): what was read, how it was aligned, its events on the
    capture's clock."""
    src = log_source_rows(report)
    if src is None:
        return []
    out = ["", _bold(L._("Logs"), color),
           tabulate([[_s(L.msg(c)) for c in r] for r in src[1]], headers=L.headers(src[0]),
                    tablefmt="simple")]
    for n in log_notes(report):
        out.append(_wrap(f"- {_s(L.msg(n))}", "  "))
    ev = log_event_rows(report)
    if ev and ev[1]:
        out += ["", tabulate([[_s(L.msg(c)) for c in r] for r in ev[1]], headers=L.headers(ev[0]),
                             tablefmt="simple")]
        more = len(report.log_events) - len(ev[1])
        if more > 0:
            out.append("  " + L.fmt("... ({n} more events; --format json lists them)", n=more))
    return out
