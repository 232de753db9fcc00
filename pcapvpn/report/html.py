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

import html as _html
import math

from pcapvpn.i18n import Lang
from pcapvpn.report import ladder as _ladder
from pcapvpn.report.escape import printable
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

COLORS = {"req": "#1f4e79", "resp": "#067647", "retx": "#c2410c", "dup": "#8a8f98",
          "lost": "#b42318", "ended": "#8a8f98", "float": "#6d28d9", "grid": "#e5e7eb",
          "life": "#9aa4b2",
          "bar0": "#2563eb", "bar1": "#0d9488", "gap": "#fde68a", "stop": "#b42318",
          "rekey": "#6d28d9", "seq": "#b42318", "log": "#92400e"}


def esc(s) -> str:
    """Escape any value for HTML text and attribute values (quotes included), its control
    characters, bidirectional controls, noncharacters and non-UTF-8 bytes of file names made
    visible first (:func:`pcapvpn.report.escape.printable`): the page is valid UTF-8 and holds
    no character HTML calls a parse error."""
    return _html.escape("" if s is None else printable(s), quote=True)


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[:max(0, n - 1)] + "…"


def _fmt_t(t) -> str:
    return "-" if t is None else f"{t:.3f}"


# -- ladder SVG --------------------------------------------------------------------------------

def _arrow_label(r, L: Lang) -> str:
    """A message's label with what became of it: no response, or the capture ended first."""
    if r.unanswered:
        return f"{r.label} · {L._('no response')}"
    if r.pending:
        return f"{r.label} · {L._('capture ended')}"
    return r.label


def ladder_svg(lad: _ladder.Ladder, L: Lang) -> str:
    W = 600
    TW = 62                    # time column
    xl, xr = TW + 34, W - 34   # lifelines
    top = 58
    ys = []
    y = top
    for r in lad.rows:
        h = 44 if r.kind == "msg" else 26
        ys.append((y, h))
        y += h
    H = y + 14
    o = [f'<svg class="ladder" viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" '
         f'role="img" aria-label="{esc(L._("Ladder diagram") + " " + lad.sa_id)}">',
         '<defs>'
         + "".join(f'<marker id="ah-{k}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
                   f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" '
                   f'fill="{COLORS[k]}"/></marker>' for k in ("req", "resp", "retx", "dup"))
         + '</defs>']
    # peers
    for x, peer, anchor in ((xl, lad.left, "start"), (xr, lad.right, "end")):
        tx = 6 if anchor == "start" else W - 6
        o.append(f'<text x="{tx}" y="18" text-anchor="{anchor}" font-size="13" font-weight="700" '
                 f'class="m">{esc(_clip(peer.address, 40))}</text>')
        ports = ("UDP " + ", ".join(str(p) for p in peer.ports)) if peer.ports else ""
        role = L._("initiator") if peer is lad.left else L._("responder")
        o.append(f'<text x="{tx}" y="34" text-anchor="{anchor}" font-size="11" fill="#5a6169">'
                 f'{esc(role)}{esc(" · " + ports if ports else "")}</text>')
        o.append(f'<line x1="{x}" y1="42" x2="{x}" y2="{H - 6}" stroke="{COLORS["life"]}" '
                 f'stroke-width="2"/>')
    o.append(f'<text x="4" y="52" font-size="10" fill="#5a6169">{esc(L._("t (s)"))}</text>')
    lane = xr - xl
    mid = (xl + xr) / 2
    for r, (y0, h) in zip(lad.rows, ys):
        if r.kind == "elided":
            o.append(f'<text x="{mid}" y="{y0 + 17}" text-anchor="middle" font-size="11" '
                     f'font-style="italic" fill="#5a6169">{esc(_clip(L.msg(r.text), 90))}</text>')
            continue
        if r.kind == "log":
            yy = y0 + 13
            xs = xr if r.rightward else xl
            col = COLORS["lost"] if not r.agrees else COLORS["log"]
            anchor, tx = ("end", xs - 10) if r.rightward else ("start", xs + 10)
            label = f"{r.source}: {L.msg(r.text)}"
            o.append(f'<g><title>{esc(label)}</title>'
                     f'<circle cx="{xs}" cy="{yy}" r="4.5" fill="{col}"/>'
                     f'<text x="{tx}" y="{yy + 4}" text-anchor="{anchor}" font-size="10" '
                     f'fill="{col}">{esc(_clip(label, 84))}</text>'
                     f'<text x="4" y="{yy + 4}" font-size="10" class="m">{_fmt_t(r.t)}</text></g>')
            continue
        if r.kind == "float":
            yy = y0 + 13
            o.append(f'<g><title>{esc(L.msg(r.text))}</title>'
                     f'<line x1="{xl}" y1="{yy}" x2="{xr}" y2="{yy}" stroke="{COLORS["float"]}" '
                     f'stroke-width="6" stroke-opacity=".18"/>'
                     f'<text x="{mid}" y="{yy + 4}" text-anchor="middle" font-size="11" '
                     f'font-weight="700" fill="{COLORS["float"]}">'
                     f'{esc(L._("NAT-T: IKE moves to UDP 4500"))}</text>'
                     f'<text x="4" y="{yy + 4}" font-size="10" class="m">{_fmt_t(r.t)}</text></g>')
            continue
        ya = y0 + 20
        kind = ("dup" if r.copy == "duplicate" else "retx" if r.copy == "retransmission"
                else "resp" if r.response else "req")
        color = (COLORS["lost"] if r.unanswered else COLORS["ended"] if r.pending
                 else COLORS[kind])
        dash = {"retx": ' stroke-dasharray="7 4"', "dup": ' stroke-dasharray="2 3"'}.get(kind, "")
        x1, x2 = (xl, xr) if r.rightward else (xr, xl)
        tip = [f"{r.label}", f"{endpoint(r.src)} → {endpoint(r.dst)}",
               f"{L._('frames')}: {', '.join(str(f) for f in r.frames)}", L.value(r.details)]
        if r.codes:
            tip.append(", ".join(r.codes))
        g = [f'<g><title>{esc(chr(10).join(t for t in tip if t))}</title>']
        g.append(f'<text x="4" y="{ya + 4}" font-size="10" class="m">{_fmt_t(r.t)}</text>')
        if r.dt is not None and r.dt >= 0.0005:
            g.append(f'<text x="4" y="{ya + 16}" font-size="9" fill="#5a6169" class="m">'
                     f'+{r.dt:.3f}</text>')
        if r.unanswered:
            xe = x1 + (x2 - x1) * 0.82
            g.append(f'<line x1="{x1}" y1="{ya}" x2="{xe:.1f}" y2="{ya}" stroke="{color}" '
                     f'stroke-width="2"{dash}/>')
            g.append(f'<path d="M{xe - 6:.1f},{ya - 6}L{xe + 6:.1f},{ya + 6}M{xe - 6:.1f},{ya + 6}'
                     f'L{xe + 6:.1f},{ya - 6}" stroke="{color}" stroke-width="2.5"/>')
        elif r.pending:  # the capture ended before an answer was due: a bar, not a cross
            xe = x1 + (x2 - x1) * 0.82
            g.append(f'<line x1="{x1}" y1="{ya}" x2="{xe:.1f}" y2="{ya}" stroke="{color}" '
                     f'stroke-width="2" stroke-dasharray="3 3"/>')
            g.append(f'<path d="M{xe:.1f},{ya - 7}L{xe:.1f},{ya + 7}" stroke="{color}" '
                     f'stroke-width="2.5"/>')
        else:
            g.append(f'<line x1="{x1}" y1="{ya}" x2="{x2 - (3 if x2 > x1 else -3)}" y2="{ya}" '
                     f'stroke="{color}" stroke-width="2"{dash} marker-end="url(#ah-{kind})"/>')
        label = _arrow_label(r, L)
        g.append(f'<text class="ladder-label" x="{mid}" y="{ya - 5}" text-anchor="middle" '
                 f'font-size="11.5" font-weight="600" fill="{color}">'
                 f'{esc(_clip(label, 70))}</text>')
        det = L.value(r.details)
        mark = ""
        if r.codes:
            mark = "⚑ " + ", ".join(r.codes) + "  "
        if det or mark:
            g.append(f'<text x="{mid}" y="{ya + 14}" text-anchor="middle" font-size="9.5" '
                     f'fill="#5a6169"><tspan fill="{COLORS["lost"]}" font-weight="700">'
                     f'{esc(mark)}</tspan>{esc(L.value(_clip(r.details, max(16, 86 - len(mark)))))}</text>')
        g.append("</g>")
        o.append("".join(g))
    o.append("</svg>")
    _ = lane
    return "".join(o)


def _ladder_legend(L: Lang) -> str:
    items = [("req", "", L._("request")), ("resp", "", L._("response")),
             ("retx", "dashed", L._("retransmission")), ("dup", "dotted", L._("capture duplicate")),
             ("lost", "", L._("no response (ends in a cross)")),
             ("ended", "dashed", L._("capture ended before an answer was due (ends in a bar)")),
             ("float", "", L._("NAT-T move to UDP 4500"))]
    out = []
    for k, style, text in items:
        st = f"border-top-color:{COLORS[k]}" + (f";border-top-style:{style}" if style else "")
        out.append(f'<span><i class="sw" style="{st}"></i>{esc(text)}</span>')
    out.append(f'<span>⚑ {esc(L._("cited by a finding"))}</span>')
    return '<p class="legend">' + "".join(out) + "</p>"


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
            t = f'<span class="t">{_fmt_t(r.t)}</span>' if r.kind in ("float", "log") else ""
            src = f"{r.source}: " if r.kind == "log" else ""
            items.append(f'<li class="note">{t}{esc(src + L.msg(r.text))}</li>')
            continue
        kind = ("lost" if r.unanswered else "ended" if r.pending else
                "dup" if r.copy == "duplicate" else "retx" if r.copy == "retransmission"
                else "")
        label = _arrow_label(r, L)
        arrow = "→" if r.rightward else "←"
        det = L.value(r.details)
        mark = f'<span class="mark">⚑ {esc(", ".join(r.codes))}</span> ' if r.codes else ""
        items.append(f'<li class="{"r" if r.rightward else "l"}{" k-" + kind if kind else ""}">'
                     f'<span class="t">{_fmt_t(r.t)}</span>{arrow} '
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
            rows.append(f'<tr><td class="num">{_fmt_t(r.t) if r.kind in ("float", "log") else ""}'
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
        rows.append(f'<tr><td class="num">{_fmt_t(r.t)}</td>'
                    f'<td class="num">{esc(",".join(str(f) for f in r.frames))}</td>'
                    f'<td class="mono">{esc(endpoint(r.src))} {arrow} {esc(endpoint(r.dst))}</td>'
                    f'<td>{esc(r.label)}</td><td>{esc(L.value(r.details))}</td>'
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
            f'{_ladder_legend(L)}{_ladder_table(lad, L)}</figure>')


# -- ESP timeline SVG ---------------------------------------------------------------------------

def _nice_step(span: float, n: int = 6) -> float:
    if span <= 0:
        return 1.0
    raw = span / n
    k = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * k:
            return m * k
    return 10 * k


def _esp_lanes(tunnel: dict, esp_sas: list) -> list[dict]:
    ids = set(tunnel.get("esp_sas") or ())
    lanes = []
    for e in esp_sas:
        if f"{e.get('dst')}/{e.get('spi')}" not in ids:
            continue
        lanes.append(e)
    a = tunnel.get("a")
    lanes.sort(key=lambda e: (e.get("src") != a, (e.get("first") or {}).get("rel") or 0.0))
    return lanes


def timeline_svg(tunnel: dict, esp_sas: list, ike_sas: list, duration: float, L: Lang,
                 logs=None) -> str | None:
    lanes = _esp_lanes(tunnel, esp_sas)
    if not lanes:
        return None
    a, b = tunnel.get("a"), tunnel.get("b")
    have = {(e.get("src"), e.get("dst")) for e in lanes}
    for src, dst in ((a, b), (b, a)):
        if (src, dst) not in have and not any(s == src for s, _d in have):
            lanes.append({"_missing": True, "src": src, "dst": dst})
    real = [e for e in lanes if not e.get("_missing")]
    # common bin width: the widest of the lanes, at least 1/300 of the capture
    width = max([float((e.get("bins") or {}).get("width") or 1.0) for e in real] + [1e-9])
    while duration / width > 300:
        width *= 2
    t0 = 0.0
    t1 = max(duration, max(((e.get("last") or {}).get("rel") or 0.0) for e in real), 1e-6)
    nb = int(math.ceil((t1 - t0) / width)) + 1
    series = []
    for e in real:
        b = e.get("bins") or {}
        start = (b.get("start") or {}).get("rel") or 0.0
        w = float(b.get("width") or width)
        counts = [0] * nb
        for i, c in enumerate(b.get("packets") or ()):
            if not c:
                continue
            k = int(math.floor((start + i * w - t0) / width + 1e-9))
            counts[min(max(k, 0), nb - 1)] += c
        series.append([c / width for c in counts])
    peak = max((max(s) for s in series), default=0) or 1.0
    W = 600
    LW = 8
    x0, x1 = LW, W - 10
    lane_h = 46
    top = 16
    H = top + lane_h * len(lanes) + 34

    def X(t):
        return x0 + (x1 - x0) * (t - t0) / (t1 - t0)

    o = [f'<svg class="timeline" viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" role="img" '
         f'aria-label="{esc(L._("ESP timeline") + " " + tunnel.get("id", ""))}">']
    # grid
    step = _nice_step(t1 - t0)
    t = 0.0
    while t <= t1 + 1e-9:
        x = X(t)
        o.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{H - 28}" '
                 f'stroke="{COLORS["grid"]}"/>'
                 f'<text x="{x:.1f}" y="{H - 16}" text-anchor="middle" font-size="10" '
                 f'fill="#5a6169">{t:g}</text>')
        t += step
    o.append(f'<text x="{x1}" y="{H - 4}" text-anchor="end" font-size="10" fill="#5a6169">'
             f'{esc(L._("seconds from the start of the capture"))}</text>')
    # rekeys: CREATE_CHILD_SA exchanges (IKEv2) / Quick Modes after the first (IKEv1)
    sa_ids = set(tunnel.get("ike_sas") or ())
    rekeys = []
    for sa in ike_sas:
        if sa.get("id") not in sa_ids:
            continue
        byn = {m["n"]: m for m in sa.get("messages") or ()}
        for x in sa.get("exchanges") or ():
            if x.get("exchange") in ("CREATE_CHILD_SA", "Quick Mode") and x.get("answered"):
                ms = [byn[n] for n in x.get("messages") or () if n in byn]
                if ms:
                    rekeys.append(ms[0]["time"]["rel"])
        if sa.get("rekey_of"):
            rekeys.append((sa.get("first") or {}).get("rel"))
    for rt in sorted({round(r, 3) for r in rekeys if r is not None}):
        x = X(rt)
        o.append(f'<g><title>{esc(L._("rekey"))} @ {rt:.3f} s</title>'
                 f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{H - 28}" '
                 f'stroke="{COLORS["rekey"]}" stroke-dasharray="4 3"/>'
                 f'<text x="{x + 2:.1f}" y="{top - 7}" font-size="9" fill="{COLORS["rekey"]}">'
                 f'{esc(L._("rekey"))}</text></g>')
    # per direction: where it stops (its last packet, when the capture or the other direction
    # goes on for more than two bins after it)
    last_dir: dict = {}
    for e in real:
        key = (e.get("src"), e.get("dst"))
        last_dir[key] = max(last_dir.get(key, -1e18), (e.get("last") or {}).get("rel") or 0.0)
    ends = max(last_dir.values())
    series = iter(series)
    for i, e in enumerate(lanes):
        s = [] if e.get("_missing") else next(series)
        ly = top + i * lane_h
        base = ly + lane_h - 12
        hmax = lane_h - 24
        if e.get("_missing"):
            fwd = e.get("src") == tunnel.get("a")
            label = (f'{"→" if fwd else "←"} {e.get("src")} → {e.get("dst")}  '
                     f'{L._("no ESP seen in this direction")}')
            o.append(f'<text x="{x0}" y="{ly + 9}" font-size="10.5" font-weight="700" '
                     f'fill="{COLORS["stop"]}" class="m">{esc(_clip(label, 96))}</text>'
                     f'<rect x="{x0}" y="{base - hmax:.1f}" width="{x1 - x0}" height="{hmax}" '
                     f'fill="{COLORS["stop"]}" opacity=".08"/>'
                     f'<line x1="{x0}" y1="{base}" x2="{x1}" y2="{base}" '
                     f'stroke="{COLORS["stop"]}" stroke-dasharray="4 3"/>')
            continue
        first = (e.get("first") or {}).get("rel") or 0.0
        last = (e.get("last") or {}).get("rel") or 0.0
        fwd = e.get("src") == tunnel.get("a")
        color = COLORS["bar0"] if fwd else COLORS["bar1"]
        arrow = "→" if fwd else "←"
        label = (f'{arrow} {e.get("src")} → {e.get("dst")}  SPI {e.get("spi")}  '
                 f'{e.get("packets", 0)} {L._("packets")}')
        o.append(f'<text x="{x0}" y="{ly + 9}" font-size="10.5" fill="#1b1f23" class="m">'
                 f'{esc(_clip(label, 96))}</text>')
        o.append(f'<line x1="{x0}" y1="{base}" x2="{x1}" y2="{base}" stroke="{COLORS["life"]}"/>')
        bw = max(0.6, (x1 - x0) * width / (t1 - t0))
        for k, v in enumerate(s):
            bt = t0 + k * width
            bwk = min(bw, max(0.6, x1 - X(bt)))
            if v:
                h = max(1.0, hmax * v / peak)
                o.append(f'<rect x="{X(bt):.1f}" y="{base - h:.1f}" width="{bwk:.1f}" '
                         f'height="{h:.1f}" fill="{color}"><title>{bt:.1f}–{bt + width:.1f} s: '
                         f'{v:.1f} {esc(L._("packets/s"))}</title></rect>')
            elif first - width < bt < last:
                o.append(f'<rect x="{X(bt):.1f}" y="{base - hmax:.1f}" width="{bwk:.1f}" '
                         f'height="{hmax:.1f}" fill="{COLORS["gap"]}" opacity=".7"><title>'
                         f'{esc(L._("no packets"))} {bt:.1f}–{bt + width:.1f} s</title></rect>')
        for g in (e.get("sequence") or {}).get("gaps") or ():
            gt = (g.get("ts") or {}).get("rel")
            if gt is None:
                continue
            x = X(gt)
            o.append(f'<path d="M{x:.1f},{base + 1}l-3,6h6z" fill="{COLORS["seq"]}"><title>'
                     f'{esc(L._("sequence gap"))}: {esc(g.get("missing"))} '
                     f'{esc(L._("missing"))} @ {gt:.3f} s</title></path>')
        key = (e.get("src"), e.get("dst"))
        stop = last_dir.get(key)
        if last == stop and max(ends, t1) - stop > 2 * width:
            xs = X(stop)
            o.append(f'<g><title>{esc(L._("last packet in this direction"))} @ {stop:.3f} s'
                     f'</title><rect x="{xs:.1f}" y="{base - hmax:.1f}" width="{x1 - xs:.1f}" '
                     f'height="{hmax:.1f}" fill="{COLORS["stop"]}" opacity=".08"/>'
                     f'<line x1="{xs:.1f}" y1="{base - hmax - 2:.1f}" x2="{xs:.1f}" y2="{base + 2}" '
                     f'stroke="{COLORS["stop"]}" stroke-width="2.5"/>'
                     f'<text x="{min(xs + 3, x1 - 90):.1f}" y="{base - hmax + 9:.1f}" '
                     f'font-size="10" font-weight="700" fill="{COLORS["stop"]}">'
                     f'{esc(L._("stops"))} @ {stop:.2f} s</text></g>')
    for e in logs or ():  # gateway log events on the capture's clock
        lt = e["time"]["rel"]
        if lt is None or not t0 <= lt <= t1:
            continue
        x = X(lt)
        col = COLORS["lost"] if e.get("contradicts") else COLORS["log"]
        o.append(f'<g><title>{esc(e["file"])}:{e["line"]} @ {lt:.3f} s: {esc(L.value(e["text"]))}'
                 f'</title><line x1="{x:.1f}" y1="{top - 2}" x2="{x:.1f}" y2="{H - 28}" '
                 f'stroke="{col}" stroke-width="1.2" stroke-dasharray="1 3"/>'
                 f'<circle cx="{x:.1f}" cy="{top - 4}" r="3" fill="{col}"/></g>')
    o.append(f'<text x="{x0}" y="{H - 4}" font-size="10" fill="#5a6169">'
             f'{esc(L._("peak"))} {peak:.0f} {esc(L._("packets/s"))}, '
             f'{esc(L._("bin"))} {width:g} s</text>')
    o.append("</svg>")
    return "".join(o)


def _timeline_legend(L: Lang) -> str:
    items = [(COLORS["bar0"], L._("packets/s, a → b")), (COLORS["bar1"], L._("packets/s, b → a")),
             (COLORS["gap"], L._("no packets while the SA was in use")),
             (COLORS["stop"], L._("a direction stops")), (COLORS["rekey"], L._("rekey")),
             (COLORS["seq"], L._("sequence gap (lost packets)"))]
    return '<p class="legend">' + "".join(
        f'<span><i class="sw" style="border-top:8px solid {c}"></i>{esc(t)}</span>'
        for c, t in items) + "</p>"


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
        when = f"{_fmt_t(r.time.get('rel'))} s" if r.time else L._("status output")
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
        span = f"{_fmt_t(ev.first.get('rel'))} s"
        if ev.last and ev.last.get("rel") != ev.first.get("rel"):
            span += f" – {_fmt_t(ev.last.get('rel'))} s"
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
                 + "".join(f"<li>{esc(e.file)} {esc(L._('frame'))} {e.frame}: {esc(L.value(e.reason))}</li>"
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


def path_ladder_svg(t, L: Lang) -> str:
    """The IKE messages of a tunnel along the path: one column per point (side a left), an
    arrow across the points that saw each copy, a red cross where it vanished."""
    path = t.get("path") or {}
    order = path.get("order") or []
    msgs = [m for m in path.get("messages") or () if any(n in order for n in m["seen"])]
    if len(order) < 2 or not msgs:
        return ""
    col = 150
    W = 40 + col * len(order) + 260
    top = 40
    H = top + 24 * len(msgs) + 16
    x = {n: 40 + col * i + col // 2 for i, n in enumerate(order)}
    o = [f'<svg class="ladder" viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" '
         f'role="img" aria-label="{esc(L._("Path ladder"))}">',
         '<defs><marker id="ph" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
         'markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" '
         f'fill="{COLORS["req"]}"/></marker></defs>']
    for n in order:
        o.append(f'<text x="{x[n]}" y="18" text-anchor="middle" font-size="12" '
                 f'font-weight="700">{esc(_clip(n, 22))}</text>'
                 f'<line x1="{x[n]}" y1="26" x2="{x[n]}" y2="{H - 6}" '
                 f'stroke="{COLORS["life"]}" stroke-dasharray="3 3"/>')
    for k, m in enumerate(msgs):
        y = top + 24 * k + 8
        seen = [n for n in order if n in m["seen"]]
        fwd = m["direction"] == "a_to_b"
        a, b = (seen[0], seen[-1]) if fwd else (seen[-1], seen[0])
        color = COLORS["req"] if fwd else COLORS["resp"]
        if a != b:
            o.append(f'<line x1="{x[a]}" y1="{y}" x2="{x[b]}" y2="{y}" stroke="{color}" '
                     f'stroke-width="2" marker-end="url(#ph)"/>')
        for n in seen:
            o.append(f'<circle cx="{x[n]}" cy="{y}" r="3.5" fill="{color}"/>')
        i = order.index(b) + (1 if fwd else -1)
        lost = 0 <= i < len(order) and order[i] not in m["seen"]
        if lost:
            nx = x[order[i]]
            o.append(f'<line x1="{x[b]}" y1="{y}" x2="{nx}" y2="{y}" stroke="{COLORS["lost"]}" '
                     f'stroke-dasharray="4 3"/><text x="{nx}" y="{y + 5}" text-anchor="middle" '
                     f'font-size="15" font-weight="700" fill="{COLORS["lost"]}">×</text>')
        label = L.value(m["label"]) + (f" — {L._('lost here')}" if lost else "")
        o.append(f'<text x="{40 + col * len(order) + 6}" y="{y + 4}" font-size="11" '
                 f'fill="{COLORS["lost"] if lost else "#1b1f23"}">{esc(_clip(label, 48))}'
                 "</text>")
    o.append("</svg>")
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
                 f'{esc(L._("first"))} {_fmt_t(t["first"]["rel"])} s · {esc(L._("last"))} '
                 f'{_fmt_t(t["last"]["rel"])} s</p>')
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
                     f"{_timeline_legend(L)}</figure>")
        o.append("</section>")
    if brief:
        note = L._("Their findings are among the repeated findings above; their ladders are "
                   "not drawn.")
        rows = [[f'<span class="mono" id="t-{esc(t["id"])}">{esc(t["id"])}</span>',
                 esc(proto_label(t)), f'{_fmt_t(t["first"]["rel"])} s',
                 f'{_fmt_t(t["last"]["rel"])} s', str(len(t.get("ike_sas") or ())),
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
