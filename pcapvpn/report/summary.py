"""Rows of the capture summary shared by the text and Markdown renderers."""

from __future__ import annotations


def _fmt_drop(v):
    return "not recorded" if v is None else str(v)


def summary_rows(cap) -> list[tuple[str, str]]:
    c = cap.counts
    rows = [
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
        ("truncated frames (snaplen)", str(c.truncated_frames)),
        ("non-IP frames", str(c.non_ip_frames)),
        ("other IP frames", str(c.other_ip_frames)),
        ("undecodable frames", str(cap.decode_errors)),
    ]
    return rows
