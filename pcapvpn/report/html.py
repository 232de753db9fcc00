"""``--format html``: one self-contained page for a ticket.

Inline CSS and SVG only: no script, no external fetch (fonts, images, styles), readable on a
phone (fluid layout, SVGs scale to the width) and printable (``@media print``).  Contents: the
verdict per tunnel; each finding with its meaning, evidence, Wireshark filter and advice; per IKE
SA a ladder diagram (:mod:`pcapvpn.report.ladder`); per tunnel an ESP timeline (packets per
second per direction per SPI from the SAs' time bins, sequence gaps, where a direction stops,
rekeys); the capture summary with what could not be seen and why.

Everything that comes from the capture (vendor IDs, identities, file names, free text in the
findings) goes through :func:`esc`; nothing is ever inserted unescaped.  A renderer never computes
a diagnosis: colours and marks come from the model and the findings.
"""

from __future__ import annotations

from pcapvpn.i18n import Lang
from pcapvpn.report import ladder as _ladder
from pcapvpn.report.escape import esc
from pcapvpn.report.html_figures import (arrow_label, fmt_t, ladder_legend, ladder_svg,
                                         path_ladder_svg, timeline_legend, timeline_svg)
from pcapvpn.report.facts import tunnel_facts
from pcapvpn.report.summary import (
    GATEWAY_HEADERS, clock_note, damage_lines, compact, detailed_tunnels, duration_text, endpoint, error_groups,
    findings_by_tunnel, frames_text, gateway_rows, grouped_ids, groups_of, ladder_sas, list_text,
    location_text, path_rows, proto_label, summary_rows, tunnel_order, vantage_inside_lines,
    vantage_rows, verdict_rows,
)

CSS = """
:root{--fg:#1b1f23;--muted:#5a6169;--bg:#fff;--line:#d0d7de;--card:#f6f8fa;
--req:#1f4e79;--resp:#067647;
--failing:#b42318;--degraded:#b54708;--unknown:#175cd3;--healthy:#067647;
--critical:#7a0916;--error:#b42318;--warning:#b54708;--info:#175cd3}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK JP",
"Hiragino Sans",Meiryo,sans-serif;color:var(--fg);background:var(--bg);margin:0;padding:0 12px 40px}
main{max-width:980px;margin:0 auto}
h1{font-size:1.45em;margin:.8em 0 .2em}h2{font-size:1.2em;margin:1.6em 0 .5em;border-bottom:2px solid var(--line);
padding-bottom:.2em}h3{font-size:1.02em;margin:.2em 0 .3em}h4{font-size:.95em;margin:.8em 0 .2em}
p{margin:.35em 0}.muted{color:var(--muted)}small{font-size:.85em}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Noto Sans Mono CJK JP",monospace;font-size:.9em}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{border:1px solid var(--line);padding:4px 7px;text-align:left;vertical-align:top}
th{background:var(--card)}td.num{text-align:right;white-space:nowrap}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;color:#fff;font-size:.78em;
font-weight:700;letter-spacing:.02em;vertical-align:middle;white-space:nowrap}
.v-failing{background:var(--failing)}.v-degraded{background:var(--degraded)}
.v-unknown{background:var(--unknown)}.v-healthy{background:var(--healthy)}
.s-critical{background:var(--critical)}.s-error{background:var(--error)}
.s-warning{background:var(--warning)}.s-info{background:var(--info)}
.finding{border:1px solid var(--line);border-left:6px solid var(--info);border-radius:6px;
padding:8px 12px;margin:10px 0;background:#fff;break-inside:avoid}
.finding.sev-critical,.finding.sev-error{border-left-color:var(--error)}
.finding.sev-warning{border-left-color:var(--warning)}
.finding .meta{color:var(--muted);font-size:.85em}
.finding .detail{white-space:pre-wrap;overflow-wrap:anywhere}
.finding .orig{font-size:.9em}
dl.ev{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;margin:.5em 0;font-size:.9em}
dl.ev dt{color:var(--muted)}dl.ev dd{margin:0;overflow-wrap:anywhere}
code.filter{display:block;background:var(--card);border:1px solid var(--line);border-radius:4px;
padding:4px 6px;user-select:all;-webkit-user-select:all;overflow-wrap:anywhere;white-space:pre-wrap}
ol.advice{margin:.2em 0 .2em 1.3em;padding:0}ol.advice li{margin:.15em 0}
.notseen{background:#fffbe6;border:1px solid #f0d98c;border-radius:6px;padding:6px 12px;margin:8px 0}
.notseen ul{margin:.2em 0 .2em 1.2em;padding:0}
figure{margin:12px 0 18px;break-inside:avoid}figcaption{font-size:.9em;color:var(--muted);margin-bottom:4px}
svg.ladder,svg.timeline{width:100%;height:auto;max-width:760px;display:block;background:#fff;
border:1px solid var(--line);border-radius:6px}
svg text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK JP",sans-serif}
svg .m{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.legend{font-size:.82em;color:var(--muted);margin:4px 0}
.legend span{margin-right:12px;white-space:nowrap}
details{margin:6px 0}summary{cursor:pointer;color:var(--muted);font-size:.9em}
.sw{display:inline-block;width:18px;height:0;border-top:2px solid;vertical-align:middle;margin-right:4px}
footer{margin-top:30px;color:var(--muted);font-size:.85em;border-top:1px solid var(--line);padding-top:8px}
.facts{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:6px 12px;
margin:8px 0}
.facts ul{margin:.2em 0 .2em 1.2em;padding:0}
h2,h3,td,th,li,p,dd{overflow-wrap:anywhere}
ol.vladder{display:none;list-style:none;margin:0;padding:0;border:1px solid var(--line);
border-radius:6px}
ol.vladder li{padding:5px 8px;border-bottom:1px solid var(--line);border-left:5px solid var(--req)}
ol.vladder li:last-child{border-bottom:0}
ol.vladder li.peers{display:flex;justify-content:space-between;gap:8px;
border-left-color:transparent;font-weight:700;font-size:.9em}
ol.vladder li.l{text-align:right;border-left-color:var(--resp)}
ol.vladder li.k-retx{border-left-color:#c2410c}ol.vladder li.k-dup{border-left-color:#8a8f98}
ol.vladder li.k-lost{border-left-color:var(--error)}ol.vladder li.k-ended{border-left-color:#8a8f98}
ol.vladder li.note{font-style:italic;color:var(--muted);border-left-color:#6d28d9}
ol.vladder .t{font-family:ui-monospace,monospace;font-size:.85em;color:var(--muted);
margin-right:6px}
ol.vladder .ladder-label{font-weight:600}
ol.vladder .det{display:block;font-size:.85em;color:var(--muted)}
ol.vladder .mark{color:var(--error);font-weight:700}
@media (max-width:600px){body{font-size:14px;padding:0 8px 30px}dl.ev{grid-template-columns:1fr}
th,td{padding:3px 4px}
table.stack,table.stack tbody,table.stack tr,table.stack td{display:block;width:100%}
table.stack tr.head{display:none}
table.stack tr{border:1px solid var(--line);border-radius:6px;margin:6px 0;padding:4px 8px}
table.stack td{border:0;padding:1px 0}
table.stack td[data-l]::before{content:attr(data-l) ": ";color:var(--muted);font-size:.85em}
svg.ladder{display:none}ol.vladder{display:block}
svg.timeline{min-width:560px}}
@media print{body{padding:0;font-size:11pt}main{max-width:none}a{color:inherit;text-decoration:none}
details{display:block}summary{display:none}.finding,figure,table{break-inside:avoid}
h2{break-after:avoid}.scroll{overflow:visible}}
"""


# -- ladder SVG --------------------------------------------------------------------------------


def _ladder_list(lad: _ladder.Ladder, L: Lang) -> str:
    """The ladder laid out vertically (shown instead of the SVG on narrow screens): one line per
    message, its direction as an arrow, its label in the text's own size."""
    def peer(p, role):
        ports = ("UDP " + ", ".join(str(x) for x in p.ports)) if p.ports else ""
        return f"<span>{esc(role)} {esc(p.address)}{esc(' · ' + ports if ports else '')}</span>"

    items = [f'<li class="peers">{peer(lad.left, L._("initiator"))}'
             f'{peer(lad.right, L._("responder"))}</li>']
    for r in lad.rows:
        if r.kind != "msg":
            t = f'<span class="t">{fmt_t(r.t)}</span>' if r.kind in ("float", "log") else ""
            src = f"{r.source}: " if r.kind == "log" else ""
            items.append(f'<li class="note">{t}{esc(src + L.msg(r.text))}</li>')
            continue
        kind = ("lost" if r.unanswered else "ended" if r.pending else
                "dup" if r.copy == "duplicate" else "retx" if r.copy == "retransmission"
                else "")
        label = arrow_label(r, L)
        arrow = "→" if r.rightward else "←"
        det = L.msg(r.details)
        mark = f'<span class="mark">⚑ {esc(", ".join(r.codes))}</span> ' if r.codes else ""
        items.append(f'<li class="{"r" if r.rightward else "l"}{" k-" + kind if kind else ""}">'
                     f'<span class="t">{fmt_t(r.t)}</span>{arrow} '
                     f'<span class="ladder-label">{esc(label)}</span>'
                     f'<span class="det">{mark}{esc(det)}</span></li>')
    return f'<ol class="vladder">{"".join(items)}</ol>'


def _stack_table(headers, rows, cls: str = "") -> str:
    """A table whose rows become cards on narrow screens (each cell labelled by its header):
    ``rows`` hold cells already in HTML."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td data-l="{esc(h)}">{c}</td>'
                                     for h, c in zip(headers, r)) + "</tr>" for r in rows)
    return f'<table class="stack {cls}"><tr class="head">{head}</tr>{body}</table>'


def _ladder_table(lad: _ladder.Ladder, L: Lang) -> str:
    rows = []
    for r in lad.rows:
        if r.kind != "msg":
            src = f"{esc(r.source)}: " if r.kind == "log" else ""
            rows.append(f'<tr><td class="num">{fmt_t(r.t) if r.kind in ("float", "log") else ""}'
                        f'</td><td colspan="5"><em>{src}{esc(L.msg(r.text))}</em></td></tr>')
            continue
        arrow = "→" if r.rightward else "←"
        flags = []
        if r.unanswered:
            flags.append(L._("no response"))
        elif r.pending:
            flags.append(L._("capture ended"))
        if r.codes:
            flags.append(", ".join(r.codes))
        rows.append(f'<tr><td class="num">{fmt_t(r.t)}</td>'
                    f'<td class="num">{esc(",".join(str(f) for f in r.frames))}</td>'
                    f'<td class="mono">{esc(endpoint(r.src))} {arrow} {esc(endpoint(r.dst))}</td>'
                    f'<td>{esc(r.label)}</td><td>{esc(L.msg(r.details))}</td>'
                    f'<td>{esc("; ".join(flags))}</td></tr>')
    head = "".join(f"<th>{esc(L._(h))}</th>" for h in
                   ("t (s)", "frames", "from → to", "message", "payloads / notifies", "marks"))
    return (f'<details><summary>{esc(L._("The same messages as a table"))}</summary>'
            f'<div class="scroll"><table><tr>{head}</tr>{"".join(rows)}</table></div></details>')


def _ladder_figure(sa: dict, marks, L: Lang, logs=None) -> str:
    lad = _ladder.layout(sa, marks, logs=logs)
    cap = [f'<b>{esc(L._("IKE SA"))}</b> <code>{esc(lad.sa_id)}</code> · IKEv{esc(lad.version)}',
           f'{esc(L._("established"))}: {esc(L._("yes") if lad.established else L._("no"))}',
           f'{esc(L._("messages"))}: {lad.messages}',
           f'{esc(L._("retransmissions"))}: {lad.retransmissions}',
           f'{esc(L._("unanswered exchanges"))}: {lad.unanswered}']
    if lad.rekey_of:
        cap.append(f'{esc(L._("rekey of"))} <code>{esc(lad.rekey_of)}</code>')
    if lad.retry_of:
        cap.append(f'{esc(L._("retry of"))} <code>{esc(lad.retry_of)}</code>')
    if lad.start_utc:
        cap.append(f'{esc(L._("first message"))}: {esc(lad.start_utc)}')
    return (f'<figure id="sa-{esc(lad.sa_id)}"><figcaption>{" · ".join(cap)}</figcaption>'
            f'<div class="scroll">{ladder_svg(lad, L)}</div>{_ladder_list(lad, L)}'
            f'{ladder_legend(L)}{_ladder_table(lad, L)}</figure>')


# -- ESP timeline SVG ---------------------------------------------------------------------------


# -- gateway logs (--log) ----------------------------------------------------------------------

def _sa_logs(report, sa: dict) -> list:
    return _ladder.log_rows(sa, getattr(report, "log_events", None),
                            getattr(report, "log_sources", None))


def _tunnel_logs(report, tunnel: dict) -> list:
    """The tunnel's log events worth a mark on its ESP timeline."""
    return [e for e in getattr(report, "log_events", None) or ()
            if e.get("tunnel") == tunnel.get("id") and e.get("time")
            and e.get("kind") in _ladder.LADDER_LOG_KINDS][:_ladder.MAX_LOG_ROWS]


def _log_refs(f, L: Lang) -> str:
    refs = getattr(f, "logs", None) or ()
    if not refs:
        return ""
    items = []
    for r in refs:
        when = f"{fmt_t(r.time.get('rel'))} s" if r.time else L._("status output")
        tag = "" if r.agrees else f' <b class="contra">{esc(L._("contradicts"))}</b>'
        items.append(f'<li><span class="mono">{esc(r.file)}:{r.line}</span> · {esc(when)}{tag}'
                     f'<br><code>{esc(r.text)}</code></li>')
    return (f'<h4>{esc(L._("Gateway log"))}</h4><ul class="logs">' + "".join(items) + "</ul>")


def _logs_section(report, L: Lang) -> str:
    sources = getattr(report, "log_sources", None)
    if sources is None:
        return ""
    from pcapvpn.report.summary import log_event_rows, log_notes, log_source_rows

    head, rows = log_source_rows(report)
    o = [f'<section id="logs"><h2>{esc(L._("Gateway logs"))}</h2><div class="scroll"><table>'
         "<tr>" + "".join(f"<th>{esc(L._(h))}</th>" for h in head) + "</tr>"]
    for r in rows:
        o.append("<tr>" + "".join(f"<td>{esc(L.msg(c))}</td>" for c in r) + "</tr>")
    o.append("</table></div>")
    notes = log_notes(report)
    if notes:
        o.append("<ul>" + "".join(f"<li>{esc(L.msg(n))}</li>" for n in notes) + "</ul>")
    ev = log_event_rows(report, limit=300)
    if ev and ev[1]:
        o.append(f'<details><summary>{esc(L._("Log events on the capture clock"))} '
                 f'({len(report.log_events)})</summary><div class="scroll"><table><tr>'
                 + "".join(f"<th>{esc(L._(h))}</th>" for h in ev[0]) + "</tr>")
        for r in ev[1]:
            o.append("<tr>" + "".join(f'<td class="{"mono" if i == 4 else ""}">{esc(L.msg(c))}</td>'
                                      for i, c in enumerate(r)) + "</tr>")
        o.append("</table></div></details>")
    o.append("</section>")
    return "".join(o)


# -- findings ----------------------------------------------------------------------------------

def _group_id(g) -> str:
    return f"g-{g['code']}-{g['severity']}"


def _finding(f, L: Lang, group=None) -> str:
    """One finding as an article; ``group``: it stands for a group of repeated findings (their
    count and tunnels shown, their ids kept as anchors)."""
    from pcapvpn.findings import REGISTRY

    spec = REGISTRY.get(f.code)
    own = L.has_msg(f.title)  # the finding's own title, translated from its facts
    title = L.msg(f.title) if own else L.title(f.code, f.title)
    times = f" ×{group['count']}" if group else ""
    anchors = ("".join(f'<a id="{esc(fid)}"></a>' for fid in group["findings"])
               if group else "")
    o = [f'<article class="finding sev-{esc(f.severity)}" '
         f'id="{esc(_group_id(group) if group else f.id)}">{anchors}',
         f'<h3><span class="badge s-{esc(f.severity)}">{esc(L._(f.severity).upper())}</span> '
         f'<code>{esc(f.code)}</code>{esc(times)} {esc(title)}</h3>']
    meta = [L._(f.stage), L._(f.basis)]
    if f.posture:
        meta.append(L._("posture (does not change the verdict)"))
    elif not f.failure:
        meta.append(L._("not a failure"))
    o.append(f'<p class="meta">{esc(" · ".join(meta))}</p>')
    if not own:
        o.append(f'<p class="orig"><b>{esc(L._("Observed"))}:</b> {esc(f.title)}</p>')
    if group:
        o.append(f'<p class="tunnels"><b>{esc(L._("On these tunnels"))} '
                 f'({len(group["tunnels"])}):</b> '
                 + ", ".join(f'<a href="#t-{esc(t)}" class="mono">{esc(t)}</a>'
                             for t in group["tunnels"]) + "</p>")
        o.append(f'<p class="muted">{esc(L._("For example"))} '
                 f'<span class="mono">{esc(f.tunnel or "capture")}</span>:</p>')
    o.append(f'<p class="detail">{esc(L.msg(f.detail))}</p>')
    loc = location_text(f)
    if loc:
        o.append(f'<p class="location"><b>{esc(L.msg(loc))}</b></p>')
    if spec is not None:
        o.append(f'<p class="muted"><b>{esc(L._("What this means"))}:</b> '
                 f'{esc(L.msg(spec.meaning))}</p>')
    ev = f.evidence
    rows = []
    if ev.frames:
        rows.append((L._("frames"), frames_text(ev.frames, limit=60)))
    if ev.first:
        span = f"{fmt_t(ev.first.get('rel'))} s"
        if ev.last and ev.last.get("rel") != ev.first.get("rel"):
            span += f" – {fmt_t(ev.last.get('rel'))} s"
        rows.append((L._("time"), f"{span} ({ev.first.get('utc')})"))
    if ev.peers:
        rows.append((L._("peers"), ", ".join(ev.peers)))
    if ev.ike_spis:
        rows.append((L._("IKE SPIs"), ", ".join(ev.ike_spis)))
    if ev.esp_spis:
        rows.append((L._("ESP SPIs"), ", ".join(ev.esp_spis)))
    o.append('<dl class="ev">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows))
    if f.wireshark_filter:
        o.append(f'<dt>{esc(L._("Wireshark filter"))}</dt><dd><code class="filter">'
                 f'{esc(f.wireshark_filter)}</code></dd>')
    o.append("</dl>")
    o.append(_log_refs(f, L))
    if f.advice:
        o.append(f'<h4>{esc(L._("Next steps"))}</h4><ol class="advice">'
                 + "".join(f"<li>{esc(L.msg(a))}</li>" for a in f.advice) + "</ol>")
    o.append("</article>")
    return "".join(o)


# -- page --------------------------------------------------------------------------------------

def _capture(report, L: Lang) -> str:
    cap = report.capture
    o = [f'<section id="capture"><h2>{esc(L._("Capture"))}</h2><div class="scroll"><table>']
    for k, v in summary_rows(cap):
        o.append(f"<tr><th>{esc(L._(k))}</th><td>{esc(L.msg(v))}</td></tr>")
    o.append("</table></div>")
    seen = [(t["id"], n) for t in report.tunnels for n in t.get("not_seen") or ()]
    o.append(f'<h3>{esc(L._("What this capture cannot show"))}</h3>')
    if seen:
        o.append("<ul>" + "".join(f"<li><b>{esc(tid)}</b>: {esc(L.msg(n))}</li>"
                                  for tid, n in seen) + "</ul>")
    else:
        o.append(f'<p class="muted">{esc(L._("Nothing noted."))}</p>')
    if cap.warnings:
        o.append(f'<h3>{esc(L._("Warnings"))}</h3><ul>'
                 + "".join(f"<li>{esc(L.msg(w))}</li>" for w in cap.warnings) + "</ul>")
    if cap.decode_errors:
        o.append(f'<h3>{esc(L._("Undecodable frames"))} ({cap.decode_errors})</h3><ul>'
                 + "".join(f"<li>{esc(e.file)} {esc(L._('frame'))} {e.frame}: {esc(L.reason(e.reason))}</li>"
                           for e in cap.decode_error_samples[:50]) + "</ul>")
    o.append("</section>")
    return "".join(o)


def _vantage(report, L: Lang) -> str:
    """The vantage points table (several capture points of the same traffic)."""
    vp = vantage_rows(report)
    if not vp:
        return ""
    note = L._("Times are on the first point's clock.")
    inside = "".join(f"<li>{esc(L.msg(line))}</li>" for line in vantage_inside_lines(report))
    return (f'<section id="vantage"><h2>{esc(L._("Vantage points"))}</h2>'
            f'<p class="muted">{esc(note)}</p>'
            + _stack_table([L._(h) for h in vp[0]], [[esc(L.msg(c)) for c in r] for r in vp[1]])
            + (f"<ul>{inside}</ul>" if inside else "") + "</section>")


def _path(t, L: Lang) -> str:
    """A tunnel's path over the vantage points: packets per point and direction, where they
    vanished, the path facts, and the ladder with one column per point."""
    pv = path_rows(t)
    if not pv:
        return ""
    lines, headers, rows = pv
    o = [f'<h3>{esc(L._("Path"))}</h3><p class="mono">{esc(L.msg(lines[0]))}</p>',
         _stack_table([L._(h) for h in headers], [[esc(c) for c in r] for r in rows])]
    if lines[1:]:
        o.append("<ul>" + "".join(f"<li>{esc(L.msg(x))}</li>" for x in lines[1:]) + "</ul>")
    svg = path_ladder_svg(t, L)
    if svg:
        o.append(f'<figure><div class="scroll">{svg}</div></figure>')
    return "".join(o)


def _facts(report, t, L: Lang) -> str:
    lines = tunnel_facts(report, t)
    if not lines:
        return ""
    head = (L._("What the keys showed") if t.get("protocol", "ipsec") == "ipsec"
            else L._("What the capture shows"))
    return (f'<div class="facts"><b>{esc(head)}:</b><ul>'
            + "".join(f"<li>{esc(L.msg(x))}</li>" for x in lines) + "</ul></div>")


def render_html(report, lang: str = "en", redacted: bool = False) -> str:
    from pcapvpn.rules import load_all

    load_all()
    L = Lang(lang)
    cap = report.capture
    tunnels = tunnel_order(report)
    fmap = {f.id: f for f in report.findings}
    marks = _ladder.finding_marks(report.findings)
    many = compact(report)
    groups = groups_of(report)
    skip = grouped_ids(report)
    title = (f"pcapvpn — {len(tunnels)} {L._('tunnel(s)')}, {len(report.findings)} "
             f"{L._('finding(s)')}")
    o = ["<!DOCTYPE html>", f'<html lang="{esc(L.code)}"><head><meta charset="utf-8">',
         '<meta name="viewport" content="width=device-width, initial-scale=1">',
         '<meta name="referrer" content="no-referrer">',
         f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>",
         f"<header><h1>{esc(L._('VPN capture analysis'))}</h1>"
         f'<p class="muted">{esc(title)} · {cap.frames} {esc(L._("frames"))} · '
         f'{esc(L.msg(duration_text(cap)))} · {esc(cap.start.utc or "-")}'
         + (f' · <b>{esc(L._("redacted: addresses and identities are pseudonyms"))}</b>'
            if redacted else "") + "</p>"
         + (f'<p class="notseen"><b>{esc(L._("Capture clock"))}:</b> {esc(L.msg(clock_note(cap)))}</p>'
            if clock_note(cap) else "") + "</header>"]
    gws = gateway_rows(report) if many else []
    if gws:
        heads = [L._(h) for h in GATEWAY_HEADERS]
        o.append(f'<section id="gateways"><h2>{esc(L._("Gateways"))}</h2>'
                 + _stack_table(heads, [[esc(L.msg(c)) for c in r] for r in gws]) + "</section>")
    damage = damage_lines(cap)
    if damage:
        # the look of the "not visible" box, in the error colour (the stylesheet, and so the
        # page of an undamaged capture, stays as it was)
        o.append('<div class="notseen damaged" role="alert" style="background:#fdecea;'
                 f'border-color:var(--error)"><b>{esc(L.msg(damage[0]))}</b><ul>'
                 + "".join(f"<li>{esc(L.msg(line))}</li>" for line in damage[1:]) + "</ul></div>")
    o.append(_vantage(report, L))
    # verdicts
    o.append(f'<section id="verdicts"><h2>{esc(L._("Verdict per tunnel"))}</h2>')
    if tunnels:
        rows = []
        for label, proto, verdict, stage, p, ids in verdict_rows(report, fmap, width=60):
            pf = "-"
            if p is not None:
                href = _group_id(skip[p.id]) if p.id in skip else p.id
                pf = (f'<a href="#{esc(href)}"><code>{esc(p.code)}</code></a> '
                      f'{esc(L.msg(p.title) if L.has_msg(p.title) else L.title(p.code, p.title))}')
            rows.append([f'<a href="#t-{esc(ids[0])}" class="mono">{esc(L.msg(label))}</a>', esc(proto),
                         f'<span class="badge v-{esc(verdict)}">{esc(L._(verdict).upper())}</span>',
                         esc(L._(stage or "-")), pf])
        o.append(_stack_table([L._(h) for h in ("tunnel", "protocol", "verdict", "stage",
                                                "primary finding")], rows, "verdicts"))
    else:
        o.append(f"<p>{esc(L._('No IKE, ESP or AH traffic between gateways was found.'))}</p>")
    if many:
        errs = error_groups(report)
        o.append(f'<h3>{esc(L._("Errors"))}</h3>')
        o.append("<ul>" + "".join(
            f'<li><span class="badge s-{esc(sev)}">{esc(L._(sev).upper())}</span> '
            f'<code>{esc(code)}</code> ×{n}: {esc(L.msg(title))} — {esc(list_text(tids, 160))}</li>'
            for sev, code, n, title, tids in errs) + "</ul>" if errs else
            f'<p class="muted">{esc(L._("None."))}</p>')
    o.append("</section>")
    if groups:
        note = L._("Each is shown once, with the tunnels it was found on.")
        o.append(f'<section id="repeated"><h2>{esc(L._("Repeated findings"))}</h2>'
                 f'<p class="muted">{esc(note)}</p>')
        for g in groups:
            first = fmap.get(g["findings"][0])
            if first is not None:
                o.append(_finding(first, L, group=g))
        o.append("</section>")
    # per tunnel
    by_tunnel = dict(findings_by_tunnel(report, skip=skip))
    full = detailed_tunnels(report)
    drawn = set()
    brief = []
    for t in tunnels:
        if t["id"] not in full:
            brief.append(t)
            continue
        o.append(f'<section class="tunnel" id="t-{esc(t["id"])}"><h2>{esc(L._("Tunnel"))} '
                 f'<span class="mono">{esc(t["id"])}</span> <span class="badge '
                 f'v-{esc(t["verdict"])}">{esc(L._(t["verdict"]).upper())}</span></h2>')
        stage = t["failed_stage"] or t["stage_reached"]
        o.append(f'<p class="muted">{esc(L._("stage"))}: {esc(L._(stage or "-"))} · '
                 f'{esc(L._("first"))} {fmt_t(t["first"]["rel"])} s · {esc(L._("last"))} '
                 f'{fmt_t(t["last"]["rel"])} s</p>')
        o.append(_facts(report, t, L))
        o.append(_path(t, L))
        if t.get("not_seen"):
            o.append(f'<div class="notseen"><b>{esc(L._("Not visible in this capture"))}:</b><ul>'
                     + "".join(f"<li>{esc(L.msg(n))}</li>" for n in t["not_seen"]) + "</ul></div>")
        for f in by_tunnel.get(t["id"], ()):
            o.append(_finding(f, L))
        also = sorted({(skip[f.id]["code"], _group_id(skip[f.id])) for f in report.findings
                       if f.tunnel == t["id"] and f.id in skip})
        if also:
            o.append(f'<p class="muted">{esc(L._("Also (repeated findings)"))}: '
                     + ", ".join(f'<a href="#{esc(gid)}"><code>{esc(c)}</code></a>'
                                 for c, gid in also) + "</p>")
        sas = [sa for sa in report.ike_sas if sa["id"] in set(t.get("ike_sas") or ())]
        if sas:
            o.append(f'<h3>{esc(L._("IKE ladder"))}</h3>')
            for sa in sas:
                o.append(_ladder_figure(sa, marks, L, _sa_logs(report, sa)))
                drawn.add(sa["id"])
        tl = timeline_svg(t, report.esp_sas, report.ike_sas, cap.duration, L,
                          _tunnel_logs(report, t))
        if tl:
            o.append(f'<h3>{esc(L._("ESP timeline"))}</h3><figure><div class="scroll">{tl}</div>'
                     f"{timeline_legend(L)}</figure>")
        o.append("</section>")
    if brief:
        note = L._("Their findings are among the repeated findings above; their ladders are "
                   "not drawn.")
        rows = [[f'<span class="mono" id="t-{esc(t["id"])}">{esc(t["id"])}</span>',
                 esc(proto_label(t)), f'{fmt_t(t["first"]["rel"])} s',
                 f'{fmt_t(t["last"]["rel"])} s', str(len(t.get("ike_sas") or ())),
                 str(len(t.get("esp_sas") or ()))] for t in brief]
        o.append(f'<section id="healthy"><h2>{esc(L._("Healthy tunnels"))} ({len(brief)})</h2>'
                 f'<p class="muted">{esc(note)}</p>'
                 + _stack_table([L._(h) for h in ("tunnel", "protocol", "first", "last",
                                                  "IKE SAs", "ESP SAs")], rows) + "</section>")
    known = {t["id"] for t in tunnels}
    rest = [f for tid, fs in by_tunnel.items() if tid not in known for f in fs]
    if rest:
        o.append(f'<section id="other"><h2>{esc(L._("Other findings"))}</h2>'
                 + "".join(_finding(f, L) for f in rest) + "</section>")
    owned = {i for t in tunnels for i in t.get("ike_sas") or ()}
    other_sas = [sa for sa in ladder_sas(report) if sa["id"] not in drawn and sa["id"] not in owned]
    if other_sas:
        o.append(f'<section id="other-sas"><h2>{esc(L._("Other IKE SAs"))}</h2>'
                 + "".join(_ladder_figure(sa, marks, L, _sa_logs(report, sa))
                           for sa in other_sas) + "</section>")
    o.append(_logs_section(report, L))
    o.append(_capture(report, L))
    o.append(f"<footer>{esc(report.tool)} {esc(report.version)} · "
             f"{esc(L._('schema'))} {esc(report.schema_version)} · "
             f"{esc(L._('Finding codes and Wireshark filters are the same in every language.'))}"
             "</footer></main></body></html>")
    return "\n".join(o) + "\n"
