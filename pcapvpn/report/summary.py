"""Pieces shared by the text and Markdown renderers (layout only, no diagnosis)."""

from __future__ import annotations

from pcapvpn.findings import severity_rank, stage_rank

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
    return "not recorded" if v is None else str(v)


def summary_rows(cap) -> list[tuple[str, str]]:
    c = cap.counts
    return [
        ("files", ", ".join(f"{f.name} ({f.format}{', gzip' if f.compressed else ''})"
                            for f in cap.files)),
        ("frames", str(cap.frames)),
        ("start", cap.start.utc or "-"),
        ("end", cap.end.utc or "-"),
        ("duration", f"{cap.duration:.6f} s"),
        ("link types", ", ".join(f"{k} ({v})" for k, v in sorted(cap.linktypes.items())) or "-"),
        ("interface drops (pcapng ISB)",
         f"if_drop {_fmt_drop(cap.drops.get('if_drop'))}, os_drop {_fmt_drop(cap.drops.get('os_drop'))}"),
        ("IKE messages", f"{c.ike} (UDP 500: {c.ike_udp_500}, UDP 4500: {c.ike_udp_4500}, TCP: {c.ike_tcp})"),
        ("ESP packets", f"{c.esp} (IP proto 50: {c.esp_ip}, UDP 4500: {c.esp_udp}, TCP: {c.esp_tcp})"),
        ("AH packets", str(c.ah)),
        ("NAT keepalives", str(c.nat_keepalives)),
        ("ICMP errors", str(c.icmp_errors)),
        ("IP fragment frames", f"{c.ip_fragment_frames} ({c.reassembled_datagrams} datagrams reassembled, "
                               f"{c.incomplete_fragment_sets} incomplete)"),
        *([("TCP reassembly",
            f"{c.tcp_retransmissions} retransmission(s), {c.tcp_gaps} gap(s) "
            f"({c.tcp_gaps_by_limit} at the out-of-order limit), {c.tcp_streams_evicted} "
            f"stream direction(s) and {c.tcp_bytes_dropped} bytes dropped at memory limits")]
          if c.tcp_retransmissions or c.tcp_gaps or c.tcp_streams_evicted or c.tcp_bytes_dropped
          else []),
        ("truncated frames (snaplen)", str(c.truncated_frames)),
        ("non-IP frames", str(c.non_ip_frames)),
        ("other IP frames", str(c.other_ip_frames)),
        ("undecodable frames", str(cap.decode_errors)),
    ]


def frames_text(frames, limit: int = 30) -> str:
    files = {f.file for f in frames}
    if len(files) <= 1:
        s = ", ".join(str(f.frame) for f in frames[:limit])
    else:
        s = ", ".join(f"{f.file}#{f.frame}" for f in frames[:limit])
    if len(frames) > limit:
        s += f", ... ({len(frames)} frames)"
    return s


def findings_by_tunnel(report):
    """[(tunnel id or None, findings worst first)] in the order of the tunnel summary."""
    order = {t["id"]: i for i, t in enumerate(
        sorted(report.tunnels, key=lambda t: VERDICT_ORDER.get(t["verdict"], 9)))}
    groups = {t["id"]: [] for t in report.tunnels if t["not_seen"]}
    for f in report.findings:
        groups.setdefault(f.tunnel, []).append(f)
    out = []
    for tid, fs in sorted(groups.items(), key=lambda kv: order.get(kv[0], 10 ** 6)):
        fs.sort(key=lambda f: (f.posture, not f.failure, severity_rank(f.severity),
                               stage_rank(f.stage)))
        out.append((tid, fs))
    return out


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
            rows.append([
                f"{first['time']['rel']:.3f}", f"v{sa['version']} {sa['ispi'][:8]}",
                x["exchange"], x["message_id"], f"{first['src']} -> {first['dst']}",
                "yes" if x["answered"] else "NO", len(ms), x["retransmissions"],
                ",".join(notifies + [f"SK:{i}" for i in inner])[:60],
                ",".join(str(f["frame"]) for m in ms for f in m["frames"])[:40],
            ])
    if not rows:
        return None
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
        return "(status)"
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
            clock = "not aligned"
        else:
            clock = f"{off:+.3f} s" + (f" ± {unc:.3f}" if unc is not None else "")
            if s.get("time_zone_offset_s"):
                clock += f" (zone {s['time_zone_offset_s'] / 3600:+g} h)"
        rows.append([s["file"], s.get("title") or "not recognised", s["lines"], s["events"],
                     s["unrecognised"], s.get("classified", 0), clock,
                     s.get("aligned_events", 0)])
    return (["log", "format", "lines", "events", "unrecognised", "used", "clock offset",
             "aligned on"], rows)


def log_notes(report) -> list[str]:
    out = []
    for s in getattr(report, "log_sources", None) or ():
        for n in s.get("notes") or ():
            out.append(f"{s['file']}: {n}")
    return out


def log_event_rows(report, limit: int = 200):
    """``(headers, rows)`` of the log events on the capture's clock (time, file:line, kind,
    tunnel, text); None without --log."""
    evs = getattr(report, "log_events", None)
    if evs is None:
        return None
    rows = [[_at(e.get("time")), f"{e['file']}:{e['line']}", e["kind"], e.get("tunnel") or "-",
             clip_text(e["text"], 140)] for e in evs[:limit]]
    return (["time", "line", "kind", "tunnel", "text"], rows)


def log_ref_lines(f) -> list[str]:
    """One line per gateway log line a finding cites."""
    out = []
    for r in getattr(f, "logs", None) or ():
        mark = "" if r.agrees else " (contradicts)"
        out.append(f"log {r.file}:{r.line} {_at(r.time)}{mark}: {clip_text(r.text, 160)}")
    return out


def clip_text(s: str, n: int) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[:n - 1] + "…"
