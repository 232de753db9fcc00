"""The SVG figures of ``--format html`` and their legends: the ladder of an IKE SA
(:mod:`pcapvpn.report.ladder`), the ESP timeline of a tunnel (packets per second per direction
per SPI, sequence gaps, where a direction stops, rekeys) and the path ladder across vantage
points.  Inline SVG only; every value from the capture goes through :func:`esc`; colours and
marks come from the model and the findings.
"""

from __future__ import annotations

import math

from pcapvpn.i18n import Lang, close_marks
from pcapvpn.report import ladder as _ladder
from pcapvpn.report.escape import esc
from pcapvpn.report.summary import endpoint


COLORS = {"req": "#1f4e79", "resp": "#067647", "retx": "#c2410c", "dup": "#8a8f98",
          "lost": "#b42318", "ended": "#8a8f98", "float": "#6d28d9", "grid": "#e5e7eb",
          "life": "#9aa4b2",
          "bar0": "#2563eb", "bar1": "#0d9488", "gap": "#fde68a", "stop": "#b42318",
          "rekey": "#6d28d9", "seq": "#b42318", "log": "#92400e"}


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else close_marks(s[:max(0, n - 1)]) + "…"


def fmt_t(t) -> str:
    return "-" if t is None else f"{t:.3f}"


def arrow_label(r, L: Lang) -> str:
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
                     f'<text x="4" y="{yy + 4}" font-size="10" class="m">{fmt_t(r.t)}</text></g>')
            continue
        if r.kind == "float":
            yy = y0 + 13
            o.append(f'<g><title>{esc(L.msg(r.text))}</title>'
                     f'<line x1="{xl}" y1="{yy}" x2="{xr}" y2="{yy}" stroke="{COLORS["float"]}" '
                     f'stroke-width="6" stroke-opacity=".18"/>'
                     f'<text x="{mid}" y="{yy + 4}" text-anchor="middle" font-size="11" '
                     f'font-weight="700" fill="{COLORS["float"]}">'
                     f'{esc(L._("NAT-T: IKE moves to UDP 4500"))}</text>'
                     f'<text x="4" y="{yy + 4}" font-size="10" class="m">{fmt_t(r.t)}</text></g>')
            continue
        ya = y0 + 20
        kind = ("dup" if r.copy == "duplicate" else "retx" if r.copy == "retransmission"
                else "resp" if r.response else "req")
        color = (COLORS["lost"] if r.unanswered else COLORS["ended"] if r.pending
                 else COLORS[kind])
        dash = {"retx": ' stroke-dasharray="7 4"', "dup": ' stroke-dasharray="2 3"'}.get(kind, "")
        x1, x2 = (xl, xr) if r.rightward else (xr, xl)
        tip = [f"{r.label}", f"{endpoint(r.src)} → {endpoint(r.dst)}",
               f"{L._('frames')}: {', '.join(str(f) for f in r.frames)}", L.msg(r.details)]
        if r.codes:
            tip.append(", ".join(r.codes))
        g = [f'<g><title>{esc(chr(10).join(t for t in tip if t))}</title>']
        g.append(f'<text x="4" y="{ya + 4}" font-size="10" class="m">{fmt_t(r.t)}</text>')
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
        label = arrow_label(r, L)
        g.append(f'<text class="ladder-label" x="{mid}" y="{ya - 5}" text-anchor="middle" '
                 f'font-size="11.5" font-weight="600" fill="{color}">'
                 f'{esc(_clip(label, 70))}</text>')
        det = L.msg(r.details)
        mark = ""
        if r.codes:
            mark = "⚑ " + ", ".join(r.codes) + "  "
        if det or mark:
            g.append(f'<text x="{mid}" y="{ya + 14}" text-anchor="middle" font-size="9.5" '
                     f'fill="#5a6169"><tspan fill="{COLORS["lost"]}" font-weight="700">'
                     f'{esc(mark)}</tspan>{esc(_clip(det, max(16, 86 - len(mark))))}</text>')
        g.append("</g>")
        o.append("".join(g))
    o.append("</svg>")
    _ = lane
    return "".join(o)


def ladder_legend(L: Lang) -> str:
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


def timeline_legend(L: Lang) -> str:
    items = [(COLORS["bar0"], L._("packets/s, a → b")), (COLORS["bar1"], L._("packets/s, b → a")),
             (COLORS["gap"], L._("no packets while the SA was in use")),
             (COLORS["stop"], L._("a direction stops")), (COLORS["rekey"], L._("rekey")),
             (COLORS["seq"], L._("sequence gap (lost packets)"))]
    return '<p class="legend">' + "".join(
        f'<span><i class="sw" style="border-top:8px solid {c}"></i>{esc(t)}</span>'
        for c, t in items) + "</p>"


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
        label = L.label(m["label"]) + (f" — {L._('lost here')}" if lost else "")
        o.append(f'<text x="{40 + col * len(order) + 6}" y="{y + 4}" font-size="11" '
                 f'fill="{COLORS["lost"] if lost else "#1b1f23"}">{esc(_clip(label, 48))}'
                 "</text>")
    o.append("</svg>")
    return "".join(o)
