"""Oracle: every frame of every corpus and project capture, compared with tshark.

Per frame: number, timestamp (to the microsecond), source and destination of the outermost IP
header after mirror wrappers are peeled, IP protocol, UDP/TCP ports and fragment status.  ICMP
quotes are excluded (tshark lists the quoted header as a further occurrence; we compare the
occurrence that belongs to the frame itself).  IP reassembly is switched off in tshark so that each
fragment shows its own header, as ours does.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from conftest import corpus_captures, corpus_dir, project_captures, rel, tshark_fields
from dissect.vpn.errors import DissectError
from dissect.vpn.link import decode_frame
from pcapvpn.model import addr
from pcapvpn.sources import open_source

FIELDS = [
    "frame.number", "frame.time_epoch", "frame.protocols",
    "ip.src", "ip.dst", "ip.proto", "ip.flags.mf", "ip.frag_offset",
    "ipv6.src", "ipv6.dst", "ipv6.fraghdr.offset", "ipv6.fraghdr.more",
    "udp.srcport", "udp.dstport", "tcp.srcport", "tcp.dstport",
]
TSHARK_OPTS = ["-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
               "-o", "udp.try_heuristic_first:FALSE", "-o", "tcp.desegment_tcp_streams:FALSE"]

# Tokens of frame.protocols that mark a mirror wrapper we peel (the frame's endpoints are inside).
WRAPPERS = {"erspan", "vxlan"}

# Frames where tshark and we legitimately differ, with the reason.  Keyed by (relative path, frame).
KNOWN_DIFFERENCES: dict[tuple[str, int], str] = {}


def _ours(path: Path):
    src = open_source(str(path))
    try:
        for fidx, num, ts, lt, data, wirelen, off in src.frames():
            try:
                r = decode_frame(lt, data)
            except DissectError as e:
                r = e
            yield num, ts, r
    finally:
        src.close()


def _expected(row):
    """Pick the occurrence of each field that belongs to the frame's own (peeled) IP header."""
    (num, epoch, protos, ip_src, ip_dst, ip_proto, mf, frag_off, v6_src, v6_dst, v6_foff,
     v6_more, usp, udp_, tsp, tdp) = row
    tokens = protos.split(":")
    # skip past the last mirror wrapper
    start = 0
    for i, t in enumerate(tokens):
        if t in WRAPPERS or (t == "gre" and i + 1 < len(tokens) and tokens[i + 1] in ("eth", "erspan")):
            start = i + 1
    idx = {"ip": 0, "ipv6": 0, "udp": 0, "tcp": 0}
    for t in tokens[:start]:
        if t in idx:
            idx[t] += 1
    ver = None
    pos = None
    for i in range(start, len(tokens)):
        if tokens[i] in ("ip", "ipv6"):
            ver = 4 if tokens[i] == "ip" else 6
            pos = i
            break
    if ver is None:
        return None

    def occ(s, k):
        parts = s.split(",") if s else []
        return parts[k] if k < len(parts) else ""

    k = idx["ip" if ver == 4 else "ipv6"]
    exp = {"ver": ver}
    if ver == 4:
        exp["src"], exp["dst"] = occ(ip_src, k), occ(ip_dst, k)
        exp["frag"] = occ(mf, k) in ("1", "True") or occ(frag_off, k) not in ("", "0")
        exp["proto"] = occ(ip_proto, k)
    else:
        exp["src"], exp["dst"] = occ(v6_src, k), occ(v6_dst, k)
        exp["frag"] = bool(occ(v6_foff, k)) and (occ(v6_foff, k) != "0" or occ(v6_more, k) in ("1", "True"))
    # transport: the first udp/tcp token right after our IP header (and its extension headers)
    exp["ports"] = None
    for t in tokens[pos + 1:]:
        if t in ("ip", "ipv6", "icmp", "icmpv6", "gre"):
            break
        if t in ("udp", "tcp"):
            j = idx[t] + sum(1 for x in tokens[start:pos + 1] if x == t)
            s, d = (usp, udp_) if t == "udp" else (tsp, tdp)
            if occ(s, j):
                exp["ports"] = (t, int(occ(s, j)), int(occ(d, j)))
            break
    return exp


def _compare(path: Path):
    rows = tshark_fields(path, FIELDS, extra=TSHARK_OPTS, occurrence="a")
    ours = list(_ours(path))
    problems = []
    n = min(len(rows), len(ours))
    if len(rows) != len(ours):
        problems.append(f"frame count: tshark {len(rows)}, pcapvpn {len(ours)}")
    for row, (num, ts, r) in zip(rows[:n], ours[:n]):
        key = (rel(path), num)
        if key in KNOWN_DIFFERENCES:
            continue
        if int(row[0]) != num:
            problems.append(f"frame {num}: tshark numbers it {row[0]}")
            continue
        if abs(Decimal(row[1]) - Decimal(repr(ts))) >= Decimal("0.000001"):
            problems.append(f"frame {num}: time {ts!r} vs tshark {row[1]}")
        exp = _expected(row)
        if exp is None:
            if isinstance(r, tuple):
                problems.append(f"frame {num}: tshark sees no IP, we see {addr(r[1])}->{addr(r[2])}")
            continue
        if isinstance(r, DissectError):
            if "_ws.malformed" in row[2] or "malformed" in row[2]:
                continue  # both call it malformed
            if not exp["src"]:
                continue
            problems.append(f"frame {num}: we raise {r.reason!r}; tshark: {exp}")
            continue
        if r is None:
            problems.append(f"frame {num}: we see no IP; tshark: {exp}")
            continue
        ipver, src, dst, proto, sport, dport, l4off, end, frag_off, mf, ident, hoff = r
        if ipver != exp["ver"] or addr(src) != exp["src"] or addr(dst) != exp["dst"]:
            problems.append(f"frame {num}: {ipver} {addr(src)}->{addr(dst)} vs tshark "
                            f"{exp['ver']} {exp['src']}->{exp['dst']}")
            continue
        frag = bool(frag_off or mf)
        if frag != exp["frag"]:
            problems.append(f"frame {num}: fragment {frag} vs tshark {exp['frag']}")
        if ipver == 4 and exp["proto"] and int(exp["proto"]) != proto:
            problems.append(f"frame {num}: proto {proto} vs tshark {exp['proto']}")
        if exp["ports"] is not None and not frag:
            t, s, d = exp["ports"]
            want = 17 if t == "udp" else 6
            if proto != want or (sport, dport) != (s, d):
                problems.append(f"frame {num}: {proto}/{sport}->{dport} vs tshark {t} {s}->{d}")
    return problems


def _all_captures():
    return corpus_captures() + project_captures()


@pytest.mark.oracle
def test_corpus_present():
    corpus_dir()
    assert corpus_captures(), "the corpus folder holds no capture"


@pytest.mark.oracle
@pytest.mark.parametrize("path", _all_captures(), ids=rel)
def test_frames_match_tshark(path):
    problems = _compare(path)
    assert not problems, f"{rel(path)}:\n" + "\n".join(problems[:30])
