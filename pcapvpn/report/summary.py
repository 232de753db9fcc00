"""Pieces shared by the text and Markdown renderers (layout only, no diagnosis)."""

from __future__ import annotations

import time as _time

from pcapvpn.findings import severity_rank, stage_rank
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
    ] + ([("capture stopped", f"{cap.stopped.utc} (the file records it: "
                              f"{cap.stopped.rel - cap.duration:.1f} s after the last frame)")]
         if getattr(cap, "stopped", None) else []) + [
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
        what = (f"dated {start[:10]}: the capturing machine's clock was not set (pcap time "
                f"counts from 1970-01-01)")
    elif t1 > now + _YEAR:
        what = (f"dated {cap.end.utc[:10] if cap.end.utc else start[:10]}, years after this "
                f"machine's clock: the capturing clock is wrong")
    else:
        what = None
    if cap.duration > _YEAR:
        span = f"timestamps {cap.duration / (365.25 * 86400):.0f} years apart (the capture clock jumped)"
        what = f"{what}; {span}" if what else span
    return what


def duration_text(cap) -> str:
    """The header's duration: ``12.3 s``, or that it cannot be told when the clock jumped."""
    if cap.duration > _YEAR:
        return "duration unknown"
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
                "yes" if x["answered"] else ("too soon" if status == "pending" else "NO"),
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
