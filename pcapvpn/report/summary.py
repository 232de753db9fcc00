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
