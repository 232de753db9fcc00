"""Markdown report (paste into a ticket).

Capture text never leaves its cell or line: every value goes through :func:`_md` (control
characters and newlines as visible escapes, then the Markdown syntax characters escaped) or,
where it is code, :func:`_code` (a code span longer than any backtick run in it)."""

from __future__ import annotations

import re

from tabulate import tabulate

from pcapvpn.i18n import Lang

from pcapvpn.report.escape import printable
from pcapvpn.report.facts import tunnel_facts
from pcapvpn.report.summary import (
    GATEWAY_HEADERS, cell, clock_note, damage_lines, compact, error_groups, esp_rows, findings_by_tunnel,
    frames_text, gateway_rows, grouped_ids, groups_of, ike_rows, ladder_sas, list_text,
    location_text, log_event_rows, log_notes, log_ref_lines, log_source_rows, path_ladder,
    path_rows, summary_rows, tunnel_order, vantage_inside_lines, vantage_rows, verdict_rows,
)


#: inline syntax (CommonMark / GFM): emphasis (``_`` only where it is not inside a word), code,
#: links and images, strikethrough, table cells, headings, the backslash itself
_SYNTAX = re.compile(r"[\\`*\[\]#|~]|(?<![^\W_])_|_(?![^\W_])")
#: ``&`` and ``<`` where they could start a character reference, a tag, a comment or an autolink
_ENTITY = re.compile(r"&(?=[#A-Za-z])")
_TAG = re.compile(r"<(?=[A-Za-z/!?])")
#: what opens a block when it starts a line: a list item or quote, a setext underline, an ordered
#: list item ("1." / "1)")
_BLOCK_START = re.compile(r"^(?:[-+=>]|\d+(?=[.)]))")


def _md(s, lead: bool = False) -> str:
    """Any value as Markdown text that stays in its line and table cell (capture text is
    attacker-controlled: vendor IDs, identities, host names, messages, file names).  ``lead``:
    the value begins the content of a line or list item, where it must not open a block either
    (list item, quote, heading underline, indented code, a blank line)."""
    s = _TAG.sub("&lt;", _ENTITY.sub("&amp;", printable(s)))
    s = _SYNTAX.sub(lambda m: "\\" + m.group(), s)
    if lead:
        if not s or s[0] == " ":
            s = "&#32;" + s[1:]
        s = _BLOCK_START.sub(lambda m: m.group() + "\\" if m.group()[0].isdigit()
                             else "\\" + m.group(), s, count=1)
    return s


def _strong(s) -> str:
    """``**s**`` that stays bold whatever ``s`` starts or ends with (whitespace beside the
    delimiters would cancel the emphasis and leave the asterisks in the text)."""
    s = re.sub(r"^\s|\s$", lambda m: f"&#{ord(m.group())};", _md(s))
    return f"**{s}**"


def _code(s) -> str:
    """A code span holding ``s`` (shown verbatim): delimited by more backticks than any run in
    it, padded when it starts or ends with one."""
    s = printable(s)
    run = max((len(r) for r in re.findall(r"`+", s)), default=0)
    fence = "`" * (run + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip(" ") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _ladders(report, L) -> list[str]:
    """Each IKE SA's ladder as a fenced text diagram (a fence longer than any backtick run in
    it, so capture text cannot close it)."""
    from pcapvpn.report import ladder

    out = []
    marks = ladder.finding_marks(report.findings)
    for sa in ladder_sas(report):
        lad = ladder.layout(sa, marks, logs=ladder.log_rows(sa, getattr(report, "log_events", None),
                                                             getattr(report, "log_sources", None)))
        body = ladder.text(lad, L=L)
        run = max((len(r) for r in re.findall(r"`+", body)), default=0)
        fence = "`" * max(3, run + 1)
        out += ["", f"#### {L._('Ladder')}: {_md(sa['id'])}", "", fence + "text", body, fence]
    return out


def _path_view(t, L) -> list[str]:
    """A tunnel's path over several vantage points: the points table, the path facts and the
    ladder with one column per point (a fenced text diagram)."""
    pv = path_rows(t) if t else None
    if not pv:
        return []
    lines, headers, rows = pv
    out = [f"**{_md(L.msg(lines[0]))}**", "",
           tabulate([[_md(L.msg(c)) for c in r] for r in rows], headers=L.headers(headers),
                    tablefmt="github"), ""]
    out += [f"- {_md(L.msg(line))}" for line in lines[1:]]
    lad = path_ladder(t, L=L)
    if lad:
        body = "\n".join(printable(x) for x in lad)
        run = max((len(r) for r in re.findall(r"`+", body)), default=0)
        fence = "`" * max(3, run + 1)
        out += ["", L._("IKE messages along the path:"), "", fence + "text", body, fence]
    return out + [""]


def _finding(out, f, L, count=None, tunnels=None):
    _ = L._
    times = f" ×{count}" if count else ""
    out.append(f"- {_strong(L.upper(f.severity))} {_code(f.code)}{times} ({_md(_(f.stage))}, "
               f"{_md(_(f.basis))}" + (", " + _("posture") if f.posture else "")
               + f"): {_md(f.title)}  ")
    if tunnels:
        out.append("  " + L.fmt("On these {n} tunnels:", n=len(tunnels))
                   + f" {_md(', '.join(tunnels))}.  ")
        out.append(f"  {_('E.g.')} {_md(f.tunnel or _('capture'))}: {_md(f.detail)}  ")
    else:
        out.append(f"  {_md(f.detail, lead=True)}  ")
    loc = location_text(f)
    if loc:
        out.append(f"  {_md(L.msg(loc), lead=True)}  ")
    if f.evidence.frames:
        out.append(f"  {_('Frames')}: {_md(frames_text(f.evidence.frames))}  ")
    if f.wireshark_filter:
        out.append(f"  {_('Filter')}: {_code(f.wireshark_filter)}  ")
    for line in log_ref_lines(f):
        out.append(f"  {_md(L.msg(line), lead=True)}  ")
    for i, a in enumerate(f.advice, 1):
        out.append(f"  {i}. {_md(a, lead=True)}")


def render_markdown(report, lang: str = "en") -> str:
    """``lang``: the language of headings and labels (the findings are already translated:
    :func:`pcapvpn.i18n.localize`)."""
    L = Lang(lang)
    _ = L._
    cap = report.capture
    fmap = {f.id: f for f in report.findings}
    many = compact(report)
    out = [f"## pcapvpn {_md(report.version)}: " + L.fmt(
        "{tunnels} tunnel(s), {findings} finding(s)", tunnels=len(report.tunnels),
        findings=len(report.findings)), ""]
    note = clock_note(cap)
    if note:
        out += [f"**{_('Capture clock')}:** {_md(L.msg(note))}", ""]
    damage = damage_lines(cap)
    if damage:
        out += [f"> **{_md(L.msg(damage[0]))}**"] + [f"> - {_md(L.msg(line))}"
                                                     for line in damage[1:]] + [""]
    tunnels = tunnel_order(report)
    vp = vantage_rows(report)
    if vp:
        out += ["### " + _("Vantage points (times on the first point's clock)"), "",
                tabulate([[_md(L.msg(c)) for c in r] for r in vp[1]], headers=L.headers(vp[0]),
                         tablefmt="github"), ""]
        inside = vantage_inside_lines(report)
        if inside:
            out += [f"- {_md(L.msg(line))}" for line in inside] + [""]
    gws = gateway_rows(report) if many else []
    if gws:
        out.append(tabulate([[_md(L.msg(c)) for c in r] for r in gws],
                            headers=L.headers(GATEWAY_HEADERS), tablefmt="github"))
        out.append("")
    if tunnels:
        rows = []
        for label, proto, verdict, stage, p, _ids in verdict_rows(report, fmap):
            rows.append([_md(L.msg(label)), _md(proto), _strong(L.upper(verdict)), _md(_(stage)),
                         _md(cell(f"{p.code}: {p.title}", 90)) if p else "-"])
        out.append(tabulate(rows, headers=L.headers(["tunnel" + ("s" if many else ""),
                                                     "protocol", "verdict", "stage",
                                                     "primary finding"]),
                            tablefmt="github"))
    if many:
        errs = error_groups(report)
        out += ["", "### " + _("Errors"), ""]
        out += [f"- {_strong(L.upper(sev))} {_code(code)} ×{n}: {_md(title)} — {_('on')} "
                f"{_md(list_text(tids, 200))}" for sev, code, n, title, tids in errs] \
            or [_("None.")]
    groups = groups_of(report)
    skip = grouped_ids(report)
    if groups:
        out += ["", "### " + _("Repeated findings (each shown once)"), ""]
        for g in groups:
            first = fmap.get(g["findings"][0])
            if first is not None:
                _finding(out, first, L, count=g["count"], tunnels=g["tunnels"])
    facts = {t["id"]: tunnel_facts(report, t) for t in tunnels}
    include = [tid for tid, fl in facts.items() if fl and not many]
    include += [t["id"] for t in tunnels if t.get("path") and t["id"] not in include]
    for tid, fs in findings_by_tunnel(report, include=include, skip=skip):
        t = next((x for x in tunnels if x["id"] == tid), None)
        if many and not fs and t is not None and not t["not_seen"]:
            continue
        out += ["", f"### {_md(tid or _('capture'))}", ""]
        if facts.get(tid):
            out += [f"- {_md(L.msg(line))}" for line in facts[tid]] + [""]
        out += _path_view(t, L)
        if t and t["not_seen"]:
            out.append(_("Not visible in this capture:") + " "
                       + "; ".join(_md(n) for n in t["not_seen"]) + ".")
            out.append("")
        for f in fs:
            _finding(out, f, L)
        also = sorted({skip[f.id]["code"] for f in report.findings
                       if f.tunnel == tid and f.id in skip})
        if also and tid is not None:
            out += ["", _("Also (see Repeated findings):") + " "
                    + ", ".join(_code(c) for c in also)]
    out += _logs_section(report, L)
    ike = ike_rows(report)
    if ike:
        out += ["", "### " + _("IKE exchanges"), ""]
        out.append(tabulate([[_md(L.msg(c)) for c in r] for r in ike[1]], headers=L.headers(ike[0]),
                            tablefmt="github"))
        out += _ladders(report, L)
    esp = esp_rows(report)
    if esp:
        out += ["", "### " + _("ESP/AH SAs"), ""]
        out.append(tabulate([[_md(L.msg(c)) for c in r] for r in esp[1]], headers=L.headers(esp[0]),
                            tablefmt="github"))
    out += ["", "### " + _("Capture"), ""]
    out.append(tabulate([(_(k), _md(L.msg(v))) for k, v in summary_rows(cap)],
                        headers=["", ""], tablefmt="github"))
    if cap.warnings:
        out += ["", "#### " + _("Warnings"), ""] + [f"- {_md(L.msg(w), lead=True)}"
                                                   for w in cap.warnings]
    if cap.decode_errors:
        out += ["", f"#### {_('Undecodable frames')} ({cap.decode_errors})", ""]
        out += [f"- {_md(e.file, lead=True)} {_('frame')} {e.frame}: {_md(L.reason(e.reason))}"
                for e in cap.decode_error_samples[:50]]
    return "\n".join(out) + "\n"


def _logs_section(report, L) -> list[str]:
    src = log_source_rows(report)
    if src is None:
        return []
    out = ["", "### " + L._("Logs"), "",
           tabulate([[_md(L.msg(c)) for c in r] for r in src[1]], headers=L.headers(src[0]),
                    tablefmt="github")]
    notes = log_notes(report)
    if notes:
        out += [""] + [f"- {_md(L.msg(n))}" for n in notes]
    ev = log_event_rows(report)
    if ev and ev[1]:
        out += ["", tabulate([[_md(L.msg(c)) for c in r] for r in ev[1]], headers=L.headers(ev[0]),
                             tablefmt="github")]
    return out
