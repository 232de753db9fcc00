"""Pieces shared by the text and Markdown renderers (layout only, no diagnosis)."""

from __future__ import annotations

import time as _time

from pcapvpn.findings import Term, msg, msg_join, severity_rank, stage_rank
from pcapvpn.report.escape import one_line

VERDICT_ORDER = {"failing": 0, "degraded": 1, "unknown": 2, "healthy": 3}


def proto_label(t) -> str:
    """``IKEv2`` for IPsec tunnels, else the VPN protocol and its transport (``OpenVPN/udp``)."""
    proto = t.get("protocol", "ipsec")
    if proto == "ipsec":
        return f"IKEv{t['ike_version']}" if t.get("ike_version") else "IPsec"
    names = {"openvpn": "OpenVPN", "wireguard": "WireGuard", "l2tp": "L2TP", "pptp": "PPTP",
             "sslvpn": "SSL-VPN"}
    label = names.get(proto, proto)
    tr = t.get("transport")
    return f"{label}/{tr}" if tr else label


def _fmt_drop(v):
    return Term("not recorded") if v is None else str(v)


#: the VPNs beside IPsec in the capture summary: (Counts field, label)
VPN_FRAME_ROWS = (("openvpn_frames", "OpenVPN frames"), ("wireguard_frames", "WireGuard frames"),
                  ("l2tp_frames", "L2TP frames"), ("pptp_frames", "PPTP frames (TCP 1723, GRE)"),
                  ("sslvpn_frames", "SSL-VPN frames (TLS, DTLS)"))


def summary_rows(cap) -> list[tuple[str, str]]:
    c = cap.counts
    rows = [
        ("files", msg_join(", ", [msg("{name} ({format}, {compression})", name=f.name,
                                      format=f.format, compression="gzip") if f.compressed
                                  else msg("{name} ({format})", name=f.name, format=f.format)
                                  for f in cap.files])),
        ("frames", str(cap.frames)),
        ("start", cap.start.utc or "-"),
        ("end", cap.end.utc or "-"),
        ("duration", f"{cap.duration:.6f} s"),
    ]
    stopped = getattr(cap, "stopped", None)
    if stopped is not None and stopped.rel is not None:
        rows.append(("capture stopped", msg("{utc} ({after:.1f} s after the last frame, as the "
                                            "file records)", utc=stopped.utc,
                                            after=stopped.rel - cap.duration)))
    ooo = getattr(cap, "out_of_order", None)
    if ooo:  # CAPTURE_OUT_OF_ORDER
        top = max(ooo, key=lambda f: f["largest_step_s"])
        how = (msg("analysed in time order") if all(f["time_order"] for f in ooo)
               else msg("analysed in file order"))
        rows.append(("frames out of time order",
                     msg("{n} (largest step back {step:.6g} s, frame {frame}); {how}",
                         n=sum(f["frames"] for f in ooo), step=top["largest_step_s"],
                         frame=top["frame"], how=how)))
    rows += [
        ("link types", ", ".join(f"{k} ({v})" for k, v in sorted(cap.linktypes.items())) or "-"),
        ("interface drops (pcapng ISB)",
         msg("if_drop {if_drop}, os_drop {os_drop}", if_drop=_fmt_drop(cap.drops.get('if_drop')),
             os_drop=_fmt_drop(cap.drops.get('os_drop')))),
        ("IKE messages", f"{c.ike} (UDP 500: {c.ike_udp_500}, UDP 4500: {c.ike_udp_4500}, "
                         f"TCP: {c.ike_tcp})"),
        ("ESP packets", f"{c.esp} (IP proto 50: {c.esp_ip}, UDP 4500: {c.esp_udp}, "
                        f"TCP: {c.esp_tcp})"),
        ("AH packets", str(c.ah)),
    ]
    rows += [(label, str(getattr(c, k, 0))) for k, label in VPN_FRAME_ROWS
             if getattr(c, k, 0)]
    rows += [
        ("NAT keepalives", str(c.nat_keepalives)),
        ("ICMP errors", str(c.icmp_errors)),
        ("IP fragment frames", msg("{frames} ({reassembled} datagrams reassembled, "
                                   "{incomplete} incomplete)", frames=c.ip_fragment_frames,
                                   reassembled=c.reassembled_datagrams,
                                   incomplete=c.incomplete_fragment_sets)),
        ("truncated frames (snaplen)", str(c.truncated_frames)),
        ("non-IP frames", str(c.non_ip_frames)),
        ("other IP frames", str(c.other_ip_frames)),
        ("undecodable frames", str(cap.decode_errors)),
    ]
    return rows + _interface_rows(cap)


def _interface_rows(cap) -> list[tuple[str, str]]:
    """An "interfaces" row when the files say more than one unnamed interface would: several
    interfaces, names or descriptions, Linux cooked interface indexes and packet types."""
    files = cap.files
    if not any(len(f.interfaces) > 1 or any(i.name or i.description or i.cooked
                                            for i in f.interfaces) for f in files):
        return []
    parts = []
    for f in files:
        for i in f.interfaces:
            label = i.name or f"#{i.index}"
            text = msg("{label} ({linktype}{description}): {n} frames", label=label,
                       linktype=i.linktype_name,
                       description=f", {i.description}" if i.description else "", n=i.frames)
            if i.cooked:
                text += " [" + msg_join("; ", [
                    ("ifindex " + str(c["ifindex"]) if c["ifindex"] is not None
                     else msg("no index"))
                    + f": {c['frames']} (" + ", ".join(f"{k} {v}" for k, v in
                                                     c["packet_types"].items()) + ")"
                    for c in i.cooked]) + "]"
            parts.append((f"{f.name}: " if len(files) > 1 else "") + text)
    return [("interfaces", msg_join("; ", parts))]


def damage_lines(cap, limit: int = 5) -> list[str]:
    """The damaged-capture notice every format puts at its top (empty without damage): a
    headline, then one line per damaged range (the first ``limit``).  Capture text (file names,
    reasons) is left to the renderer to escape."""
    dmg = getattr(cap, "damage", None)
    if not dmg:
        return []
    nbytes = sum(d.length for d in dmg)
    records = sum(d.frames_skipped for d in dmg)
    cov = cap.coverage or {}
    head = (msg("DAMAGED CAPTURE: {nbytes} bytes in {places} place(s) could not be read",
                nbytes=nbytes, places=len(dmg))
            + (msg(" ({records} record(s) lost)", records=records) if records else "")
            + msg("; reading resumed after each."))
    if cap.frames and cov.get("share") is not None:
        head += msg(" The readable part covers {share:.1%} of the capture's time "
                    "({bytes_share:.1%} of its bytes).", share=cov['share'],
                    bytes_share=cov.get('bytes_share', 0.0))
    else:
        head += msg(" Nothing in it could be read.")
    out = [head]
    for d in dmg[:limit]:
        rec = msg(", {n} record(s)", n=d.frames_skipped) if d.frames_skipped else ""
        end = msg(" (the end of the file)") if d.trailing else ""
        out.append(msg("{file}: offset {offset}, {length} bytes{rec}{end}: {reason}",
                       file=d.file, offset=d.offset, length=d.length, rec=rec, end=end,
                       reason=Term(d.reason)))
    if len(dmg) > limit:
        out.append(msg("... and {n} more damaged range(s) (capture.damage in the JSON report)",
                       n=len(dmg) - limit))
    return out


def frames_text(frames, limit: int = 30) -> str:
    files = {f.file for f in frames}
    points = {getattr(f, "point", None) for f in frames}
    if len(points) > 1 or None not in points:
        # several vantage points: the point names the file (a point of several files adds it)
        per = {}
        for f in frames:
            per.setdefault(f.point, set()).add(f.file)
        s = ", ".join(f"{f.point}:{f.frame}" if len(per[f.point]) == 1
                      else f"{f.point}:{f.file}#{f.frame}" for f in frames[:limit])
    elif len(files) <= 1:
        s = ", ".join(str(f.frame) for f in frames[:limit])
    else:
        s = ", ".join(f"{f.file}#{f.frame}" for f in frames[:limit])
    if len(frames) > limit:
        s += msg(", ... ({n} frames)", n=len(frames))
    return s


def finding_order(f):
    return (f.posture, not f.failure, severity_rank(f.severity), stage_rank(f.stage))


def tunnel_order(report) -> list:
    """The tunnels, the worst verdict first (the order of every tunnel list)."""
    return sorted(report.tunnels, key=lambda t: VERDICT_ORDER.get(t["verdict"], 9))


def groups_of(report) -> list[dict]:
    """The report's repeated findings (``report.groups``; computed for a report made without)."""
    groups = getattr(report, "groups", None)
    if groups is None:
        from pcapvpn.findings import finding_groups

        groups = finding_groups(report.findings)
    return groups


def grouped_ids(report) -> dict:
    """{finding id: its group} for the findings shown once, as a group."""
    return {fid: g for g in groups_of(report) for fid in g["findings"]}


def findings_by_tunnel(report, include=(), skip=()):
    """[(tunnel id or None, findings worst first)] in the order of the tunnel summary: every
    tunnel with findings or something not visible, and the tunnels ``include`` names; findings
    whose ids are in ``skip`` (shown as a group) left out of their tunnel."""
    order = {t["id"]: i for i, t in enumerate(tunnel_order(report))}
    groups = {t["id"]: [] for t in report.tunnels if t["not_seen"] or t["id"] in include}
    for f in report.findings:
        lst = groups.setdefault(f.tunnel, [])
        if f.id not in skip:
            lst.append(f)
    out = []
    for tid, fs in sorted(groups.items(), key=lambda kv: order.get(kv[0], 10 ** 6)):
        fs.sort(key=finding_order)
        out.append((tid, fs))
    return out


#: more tunnels than this: the compact first screen (gateways, grouped verdict rows, errors)
COMPACT_TUNNELS = 12


def compact(report) -> bool:
    return len(report.tunnels) > COMPACT_TUNNELS


def list_text(items, width: int) -> str:
    """``a, b, c, … (N)`` within ``width`` characters (all of them when they fit)."""
    items = list(items)
    full = ", ".join(items)
    if len(full) <= width:
        return full
    tail = f", … ({len(items)})"
    out = ""
    for x in items:
        nxt = f"{out}, {x}" if out else x
        if len(nxt) + len(tail) > width:
            break
        out = nxt
    return (out or items[0][:max(1, width - len(tail))]) + tail


GATEWAY_HEADERS = ("gateway", "tunnels", "failing", "degraded", "unknown", "healthy",
                   "most frequent problems")


def gateway_rows(report) -> list[list]:
    """Per gateway that several tunnels share (a head-end): [address, tunnels, failing,
    degraded, unknown, healthy, the most frequent primary code among the others]."""
    from collections import Counter

    per: dict = {}
    for t in report.tunnels:
        for a in {t.get("a"), t.get("b")}:
            if a:
                per.setdefault(a, []).append(t)
    rows = []
    for a, ts in sorted(per.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if len(ts) < 2:
            continue
        v = Counter(t["verdict"] for t in ts)
        bad = Counter(t["primary_code"] for t in ts if t["verdict"] != "healthy"
                      and t.get("primary_code"))
        top = ", ".join(f"{c} x{n}" for c, n in bad.most_common(3))
        rows.append([a, len(ts), v["failing"], v["degraded"], v["unknown"], v["healthy"],
                     top or "-"])
    return rows[:10]


def verdict_rows(report, fmap, width: int = 44) -> list[tuple]:
    """The verdict table's rows ``(tunnel(s), protocol, verdict, stage, primary finding or
    None, [tunnel ids])``: one per tunnel, or in the compact form one per (protocol, verdict,
    stage, primary code) with the tunnels it covers."""
    tunnels = tunnel_order(report)
    if not compact(report):
        return [(t["id"], proto_label(t), t["verdict"], t["failed_stage"] or t["stage_reached"],
                 fmap.get(t["primary_finding"]), [t["id"]]) for t in tunnels]
    rows: dict = {}
    for t in tunnels:
        key = (proto_label(t), t["verdict"], t["failed_stage"] or t["stage_reached"],
               t.get("primary_code"))
        rows.setdefault(key, []).append(t)
    out = []
    for (proto, verdict, stage, _code), ts in rows.items():
        ids = [t["id"] for t in ts]
        label = ids[0] if len(ids) == 1 else msg("{n} tunnels: {ids}", n=len(ids),
                                                  ids=list_text(ids, width))
        out.append((label, proto, verdict, stage, fmap.get(ts[0]["primary_finding"]), ids))
    return out


def detailed_tunnels(report) -> set:
    """The tunnels drawn in full (ladders, timelines): all of them, or with many tunnels the
    ones that are not healthy (the healthy ones are counted in the verdict table)."""
    return {t["id"] for t in report.tunnels
            if not compact(report) or t["verdict"] != "healthy"}


def ladder_sas(report) -> list:
    """The IKE SAs whose ladder is drawn: those of the tunnels drawn in full and those of no
    tunnel."""
    shown = detailed_tunnels(report)
    owner = {i: t["id"] for t in report.tunnels for i in t.get("ike_sas") or ()}
    return [sa for sa in report.ike_sas if owner.get(sa["id"], None) in shown
            or sa["id"] not in owner]


def verdict_line(report) -> str:
    """The last line of the text report: the verdict in one sentence a newcomer can act on."""
    from collections import Counter

    tunnels = tunnel_order(report)
    fmap = {f.id: f for f in report.findings}
    if not tunnels:
        return msg("Verdict: no VPN tunnel was found in this capture.")
    if len(tunnels) == 1:
        t = tunnels[0]
        p = fmap.get(t["primary_finding"])
        what = msg("{title} ({code})", title=p.title, code=p.code) if p else ""
        v = t["verdict"]
        if v == "failing":
            return msg("Verdict: FAILING — the tunnel {tunnel} breaks at {stage}: {what}. The "
                       "numbered steps above say what to check.", tunnel=t['id'],
                       stage=Term(str(t['failed_stage'] or t['stage_reached'])), what=what)
        if v == "degraded":
            return msg("Verdict: DEGRADED — the tunnel {tunnel} works, but: {what}.",
                       tunnel=t['id'], what=what)
        if v == "unknown":
            return msg("Verdict: UNKNOWN — nothing decisive was seen for {tunnel} (see 'Not "
                       "visible in this capture').", tunnel=t['id'])
        return msg("Verdict: HEALTHY — the tunnel {tunnel} came up (stage reached: {stage}) and "
                   "nothing degraded it.", tunnel=t['id'], stage=Term(str(t['stage_reached'])))
    v = Counter(t["verdict"] for t in tunnels)
    parts = []
    for verdict in ("failing", "degraded", "unknown", "healthy"):
        if not v[verdict]:
            continue
        codes = Counter(t["primary_code"] for t in tunnels
                        if t["verdict"] == verdict and t.get("primary_code"))
        why = msg_join(", ", [msg("{code} on {n}", code=c, n=n) for c, n in codes.most_common(3)])
        parts.append(msg("{n} {verdict}", n=v[verdict], verdict=Term(verdict))
                     + (msg(" ({why})", why=why) if why and verdict != "healthy" else ""))
    return msg("Verdict: {n} tunnels: {parts}.", n=len(tunnels), parts=msg_join("; ", parts))


def error_groups(report) -> list[tuple]:
    """Errors and critical findings by code: ``[(severity, code, count, title of the first,
    tunnel ids)]`` (the compact first screen lists every one)."""
    by: dict = {}
    for f in sorted(report.findings, key=finding_order):
        if severity_rank(f.severity) <= severity_rank("error"):
            by.setdefault((f.severity, f.code), []).append(f)
    out = []
    for (sev, code), fs in sorted(by.items(), key=lambda kv: (severity_rank(kv[0][0]),
                                                                -len(kv[1]), kv[0][1])):
        out.append((sev, code, len(fs), fs[0].title, sorted({f.tunnel or "capture" for f in fs})))
    return out


def endpoint(ep: str) -> str:
    """A model endpoint ``addr:port`` as written for reading: an IPv6 address in brackets
    (``[2001:db8::1]:500``), as URLs and Wireshark write it."""
    a, sep, port = str(ep).rpartition(":")
    if sep and ":" in a and not a.startswith("["):
        return f"[{a}]:{port}"
    return str(ep)


def cell(s, width: int) -> str:
    """A table cell of at most ``width`` characters; a cut one ends with an ellipsis."""
    return one_line(s, width)


#: a capture dated before this (1995-01-01) has a clock that was never set
_CLOCK_UNSET_BEFORE = 788918400.0
#: seconds: more than a year apart / ahead is no capture's real duration or date
_YEAR = 366 * 86400.0


def clock_note(cap, now=None) -> str | None:
    """What is wrong with the capture's dates, for the header (None when nothing): dated 1970
    (a clock never set), timestamps years apart (a clock that jumped: the duration means
    nothing), or dated years ahead of this machine's clock.  ``now``: that clock (tests)."""
    start = cap.start.utc
    if not start or cap.start.rel is None:
        return None
    t0 = _epoch(start)
    if t0 is None:
        return None
    t1 = t0 + (cap.duration or 0.0)
    now = _time.time() if now is None else now
    if t0 < _CLOCK_UNSET_BEFORE:
        what = msg("dated {date}: the capturing machine's clock was not set (pcap time counts "
                   "from 1970-01-01)", date=start[:10])
    elif t1 > now + _YEAR:
        what = msg("dated {date}, years after this machine's clock: the capturing clock is "
                   "wrong", date=cap.end.utc[:10] if cap.end.utc else start[:10])
    else:
        what = None
    if cap.duration > _YEAR:
        years = cap.duration / (365.25 * 86400)
        span = msg("timestamps {years:.0f} years apart (the capture clock jumped)", years=years)
        what = msg("{what}; {span}", what=what, span=span) if what else span
    return what


def duration_text(cap) -> str:
    """The header's duration: ``12.3 s``, or that it cannot be told when the clock jumped."""
    if cap.duration > _YEAR:
        return msg("duration unknown")
    return f"{cap.duration:.1f} s"


def _epoch(utc: str) -> float | None:
    import datetime as dt

    try:
        return dt.datetime.strptime(utc, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        return None


def ike_rows(report):
    rows = []
    for sa in report.ike_sas:
        msgs = {m["n"]: m for m in sa["messages"]}
        for x in sa["exchanges"]:
            ms = [msgs[n] for n in x["messages"] if n in msgs]
            if not ms:
                continue
            first = ms[0]
            notifies = sorted({n for m in ms for n in m["notifies"]})
            inner = sorted({m["sk_first_payload"] for m in ms if m["sk_first_payload"]})
            status = x.get("status")
            rows.append([
                f"{first['time']['rel']:.3f}", f"v{sa['version']} {sa['ispi'][:8]}",
                x["exchange"], x["message_id"],
                f"{endpoint(first['src'])} -> {endpoint(first['dst'])}",
                msg("yes") if x["answered"] else (msg("too soon") if status == "pending"
                                                  else msg("NO")),
                len(ms), x["retransmissions"],
                cell(",".join(notifies + [f"SK:{i}" for i in inner]), 60),
                cell(",".join(str(f["frame"]) for m in ms for f in m["frames"]), 40),
            ])
    if not rows:
        return None
    # every IKE SA's exchanges in the order they happened (not SA by SA)
    rows.sort(key=lambda r: float(r[0]))
    return (["t (s)", "IKE SA", "exchange", "msgid", "first sender -> receiver", "answered",
             "msgs", "retx", "notifies / SK first", "frames"], rows)


def esp_rows(report):
    rows = []
    for e in report.esp_sas:
        rows.append([
            e.get("proto", "esp").upper(), e["spi"], f"{e.get('src', '?')} -> {e.get('dst', '?')}",
            e.get("encap", "?"), e.get("packets", 0), e.get("bytes", 0),
            f"{e['first']['rel']:.3f}" if e["first"]["rel"] is not None else "-",
            f"{e['last']['rel']:.3f}" if e["last"]["rel"] is not None else "-",
            e.get("lost", ""), e.get("duplicates", ""), e.get("reordered", ""),
        ])
    if not rows:
        return None
    return (["proto", "SPI", "src -> dst", "encap", "packets", "bytes", "first (s)", "last (s)",
             "lost", "dup", "reord"], rows)


# -- gateway evidence (--log) --------------------------------------------------------------------

def _at(t) -> str:
    if not t or t.get("rel") is None:
        return msg("(status)")
    return f"{t['rel']:+.3f} s"


def log_source_rows(report):
    """``(headers, rows)`` of the ``--log`` files: format, counts, clock offset; None without."""
    if not getattr(report, "log_sources", None):
        return None
    rows = []
    for s in report.log_sources:
        off = s.get("clock_offset_s")
        unc = s.get("clock_offset_uncertainty_s")
        if off is None or (not s.get("aligned_events") and not off):
            clock = msg("not aligned")
        else:
            clock = f"{off:+.3f} s" + (f" ± {unc:.3f}" if unc is not None else "")
            if s.get("time_zone_offset_s"):
                clock += msg(" (zone {hours:+g} h)", hours=s['time_zone_offset_s'] / 3600)
        title = s.get("title")
        rows.append([s["file"], msg("{title}", title=Term(title))
                     if title and title != "not recognised" else msg("not recognised"),
                     s["lines"], s["events"],
                     s["unrecognised"], s.get("classified", 0), clock,
                     s.get("aligned_events", 0)])
    return (["log", "format", "lines", "events", "unrecognised", "used", "clock offset",
             "aligned on"], rows)


def log_notes(report) -> list[str]:
    out = []
    for s in getattr(report, "log_sources", None) or ():
        for n in s.get("notes") or ():
            out.append(msg("{file}: {note}", file=s['file'], note=n))
    return out


def log_event_rows(report, limit: int = 200):
    """``(headers, rows)`` of the log events on the capture's clock (time, file:line, kind,
    tunnel, text); None without --log."""
    evs = getattr(report, "log_events", None)
    if evs is None:
        return None
    rows = [[_at(e.get("time")), f"{e['file']}:{e['line']}", e["kind"], e.get("tunnel") or "-",
             msg("{text}", text=clip_text(e["text"], 140))] for e in evs[:limit]]
    return (["time", "line", "kind", "tunnel", "text"], rows)


def log_ref_lines(f) -> list[str]:
    """One line per gateway log line a finding cites."""
    out = []
    for r in getattr(f, "logs", None) or ():
        mark = "" if r.agrees else msg(" (contradicts)")
        out.append(msg("log {file}:{line} {at}{mark}: {text}", file=r.file, line=r.line,
                       at=_at(r.time), mark=mark, text=clip_text(r.text, 160)))
    return out


def clip_text(s: str, n: int) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[:n - 1] + "…"


# -- several vantage points (--vantage) ---------------------------------------------------------

def location_text(f) -> str | None:
    """Where a finding happened, in words (``None`` without a location)."""
    loc = getattr(f, "location", None)
    if not loc:
        return None
    a, b = loc.get("from"), loc.get("to")
    if a is None and b is None:
        where = msg("not located")
    elif a is None:
        where = msg("before {b}", b=b)
    elif b is None:
        where = msg("after {a} (past the last capture point)", a=a)
    else:
        where = msg("between {a} and {b}", a=a, b=b)
    why = loc.get("why")
    return msg("where: {where}", where=where) + (msg(" — {why}", why=why)
                                                 if why and why != f"lost {where}" else "")


VANTAGE_HEADERS = ["point", "files", "frames", "span", "clock offset", "uncertainty", "drift",
                   "matched", "undecodable"]


def _span(p) -> str:
    """A point's capture span on the first point's clock (seconds from the report's start)."""
    a = (p.get("first") or {}).get("rel")
    b = (p.get("last") or {}).get("rel")
    if a is None or b is None:
        return ""
    return f"{a:+.3f} .. {b:+.3f} s"


def vantage_rows(report):
    """The vantage points table (``None`` for a report of one point)."""
    pts = getattr(report, "vantage_points", None)
    if not pts:
        return None
    rows = []
    for i, p in enumerate(pts):
        off = p.get("clock_offset_s")
        unc = p.get("offset_uncertainty_s")
        name = p["name"] + (f" #{p['iface']}" if p.get("iface") else "")
        rows.append([name, ", ".join(p["files"]), str(p.get("frames", "")), _span(p),
                     msg("reference") if i == 0 else ("-" if off is None else f"{off:+.6f} s"),
                     "" if i == 0 else (msg("one direction only") if unc is None and off is not None
                                        else "-" if unc is None else f"±{unc * 1000:.3f} ms"),
                     "" if i == 0 or not p.get("drift_ppm") else f"{p['drift_ppm']:+.1f} ppm",
                     "" if i == 0 else str(p.get("matched_packets", 0)),
                     str(p.get("undecodable", ""))])
    return VANTAGE_HEADERS, rows


def vantage_inside_lines(report) -> list:
    """The plaintext seen at several points: NAT translations and what vanished between
    points (one line each)."""
    d = getattr(report, "vantage_inside", None) or {}
    lines = []
    for n in d.get("nat") or ():
        for a, b in n.get("between") or ():
            pts = n["points"]
            lines.append(msg("inside, NAT between {a} and {b}: {x} at {a} is {y} at {b}", a=a,
                             b=b, x=pts.get(a), y=pts.get(b)))
    for x in d.get("losses") or ():
        whole = msg(" (all of them)") if x["lost"] == x["judged"] else ""
        lines.append(msg("inside, lost between {a} and {b}: {conversation}, {n} of {total} "
                         "packet(s){whole}", a=x['from'], b=x['to'],
                         conversation=x['conversation'], n=x['lost'], total=x['judged'],
                         whole=whole))
    return lines


def path_rows(t):
    """A tunnel's path view: ``(lines, headers, rows)`` — the points in order from side a to
    side b, packets per direction per point and where they vanished; ``None`` without a path."""
    path = t.get("path")
    if not path or not path.get("order"):
        return None
    order = path["order"]
    lines = [msg("path {a} -> {b}: {order}", a=t.get('a', 'a'), b=t.get('b', 'b'),
                 order=" -> ".join(order))]
    if path.get("unplaced"):
        lines.append(msg("not placed on the path (nothing matched): {points}",
                         points=", ".join(path["unplaced"])))
    lost_at: dict = {}
    for x in path.get("losses") or ():
        lost_at.setdefault((x["to"], x["direction"]), 0)
        lost_at[(x["to"], x["direction"])] += x["lost"]
    rows = []
    for name in order + list(path.get("unplaced") or ()):
        pk = (path.get("packets") or {}).get(name, {})
        rows.append([name, str(pk.get("a_to_b", 0)), str(pk.get("b_to_a", 0)),
                     _vanished(lost_at, name)])
    for d in path.get("delays") or ():
        arrow = "a->b" if d["direction"] == "a_to_b" else "b->a"
        lines.append(msg("one-way delay {a} -> {b} ({arrow}): {ms:.3f} ms (min {lo:.3f}, max "
                         "{hi:.3f}; {n} packets)", a=d['from'], b=d['to'], arrow=arrow,
                         ms=d['delay_s'] * 1000, lo=d['delay_min_s'] * 1000,
                         hi=d['delay_max_s'] * 1000, n=d['samples']))
    for x in path.get("losses") or ():
        what = (msg("{flow}: {n} packet(s)", flow=_flow_name(x), n=x['lost'])
                if x["kind"] != "ike" else
                f"IKE {x.get('exchange')} #{x.get('message_id')}: "
                f"{', '.join(sorted(set(x.get('messages') or ())))}")
        src = x["from"] or msg("(before the first point)")
        dst = x["to"] or msg("(past the last point)")
        lines.append(msg("lost between {a} and {b}: {what}", a=src, b=dst, what=what))
    for a in path.get("appeared") or ():
        why = {"capture_drops": msg("the upstream capture reports drops"),
               "other_path": msg("no capture drops recorded: another path (asymmetric "
                                 "routing)")}.get(a.get("why"), a.get("why"))
        lines.append(msg("seen at {b} but never at {a}: {flow}, {n} packet(s) ({why})",
                         b=a['to'], a=a['from'], flow=_flow_name(a), n=a['packets'], why=why))
    for r in path.get("reordering") or ():
        lines.append(msg("reordering introduced between {a} and {b}: {flow}, {x} -> {y} late "
                         "packets", a=r['from'], b=r['to'], flow=_flow_name(r),
                         x=r['reordered_from'], y=r['reordered_to']))
    for n in path.get("nat") or ():
        if n["what"] == "ike_mapping":
            lines.append(msg("NAT mapping changes of IKE SA {spi}: {changes}", spi=n['ike_spi'],
                             changes=", ".join(f"{k}: {v}"
                                               for k, v in n["source_changes"].items())))
            continue
        label = "IKE" if n["what"] == "ike" else _flow_name({**n, "kind": n["what"]})
        pts = n["points"]
        for a, b in n.get("between") or ():
            lines.append(msg("NAT between {a} and {b} ({label}): {x} at {a} is {y} at {b}", a=a,
                             b=b, label=label, x=pts[a], y=pts[b]))
        moved = {k: v for k, v in (n.get("source_changes") or {}).items() if v}
        if moved:
            lines.append(msg("source changes ({label}): {changes}", label=label,
                             changes=", ".join(f"{k}: {v}" for k, v in
                                               (n.get("source_changes") or {}).items())))
    for mtu in path.get("mtu") or ():
        ex = mtu.get("example")
        lines.append(msg("size changed between {a} and {b}: {flow}, {n} sampled packet(s) "
                         "resized", a=mtu['from'], b=mtu['to'], flow=_flow_name(mtu),
                         n=mtu['resized_samples'])
                     + (f" (seq {ex['seq']}: {ex['from_length']} -> {ex['to_length']} B)"
                        if ex else "")
                     + msg(", fragmented {x} -> {y}", x=mtu['fragmented_from'],
                           y=mtu['fragmented_to']))
    return lines, ["point", "a->b", "b->a", "vanished before this point"], rows


#: the protocols of a path's flows, by the ``kind`` of a loss or path fact
_FLOW_PROTOCOLS = {"esp": "ESP", "ah": "AH", "wireguard": "WireGuard", "openvpn": "OpenVPN",
                   "l2tp": "L2TP", "sslvpn": "SSL-VPN", "tls": "TLS", "pptp": "PPTP"}


def _flow_name(d) -> str:
    """``ESP SPI 0x...``, ``AH SPI 0x...``, ``WireGuard receiver index 0x...`` ... of a loss or
    path fact of the path view."""
    kind = d.get("kind") or "esp"
    name = _FLOW_PROTOCOLS.get(kind, kind)
    if d.get("flow"):
        return f"{name} {d['flow']}"
    return f"{name} SPI 0x{d.get('spi')}"


def _vanished(lost_at, name) -> str:
    parts = []
    for way in ("a_to_b", "b_to_a"):
        n = lost_at.get((name, way))
        if n:
            parts.append(f"{n} {'a->b' if way == 'a_to_b' else 'b->a'}")
    return ", ".join(parts) or "-"


def path_ladder(t, width: int = 14, L=None) -> list[str]:
    """The path ladder in text: one column per point (side a left), one row per IKE message:
    ``o`` at each point that saw it, the arrow head at the last one, ``x`` at the next point
    it never reached."""
    path = t.get("path") or {}
    order = path.get("order") or []
    msgs = path.get("messages") or []
    if len(order) < 2 or not msgs:
        return []
    col = {n: i for i, n in enumerate(order)}
    mid = [i * width + width // 2 for i in range(len(order))]
    from pcapvpn.i18n import Lang

    L = L or Lang()
    out = ["".join(n[:width - 1].center(width) for n in order) + "  " + L._("message")]
    for m in msgs:
        seen = sorted(col[n] for n in m["seen"] if n in col)
        if not seen:
            continue
        fwd = m["direction"] == "a_to_b"
        row = [" "] * (width * len(order))
        for k in range(mid[seen[0]], mid[seen[-1]]):
            row[k] = "-"
        for i in seen:
            row[mid[i]] = "o"
        end = seen[-1] if fwd else seen[0]
        row[mid[end]] = ">" if fwd else "<"
        nxt = end + (1 if fwd else -1)
        lost = 0 <= nxt < len(order) and order[nxt] not in m["seen"]
        if lost:
            for k in range(min(mid[end], mid[nxt]) + 1, max(mid[end], mid[nxt])):
                row[k] = "."
            row[mid[nxt]] = "x"
        out.append("".join(row) + "  " + L.label(m["label"])
                   + ("  (" + L._("lost here") + ")" if lost else ""))
    return out
