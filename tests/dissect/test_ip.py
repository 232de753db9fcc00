"""dissect.vpn.ip: IPv4/IPv6 headers, fragments, extension headers, TCP, ICMP errors.

Packets are built by hand with struct (the builders below are also used by test_link.py).  The
last test compares decode_frame with tshark on every capture of the public corpus.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest

from dissect.vpn.errors import DissectError
from dissect.vpn.ip import (
    decode_icmp_error,
    decode_ip,
    decode_tcp,
    decode_udp,
    is_fragment,
)
from dissect.vpn.link import decode_frame

# --- builders ----------------------------------------------------------------------------------

A4 = bytes([192, 0, 2, 1])
B4 = bytes([198, 51, 100, 7])
A6 = ipaddress.IPv6Address("2001:db8::1").packed
B6 = ipaddress.IPv6Address("2001:db8:ffff::2").packed
MAC = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb"


def ipv4(payload=b"", proto=17, src=A4, dst=B4, ident=0x1234, mf=False, frag_off=0, df=False,
         options=b"", total=None, ihl=None):
    assert len(options) % 4 == 0
    hl = 20 + len(options)
    ff = (frag_off // 8) | (0x2000 if mf else 0) | (0x4000 if df else 0)
    tl = hl + len(payload) if total is None else total
    vihl = 0x40 | ((hl // 4) if ihl is None else ihl)
    return struct.pack("!BBHHHBBH4s4s", vihl, 0, tl, ident, ff, 64, proto, 0, src, dst) + options + payload


def ipv6(payload=b"", nh=17, src=A6, dst=B6, plen=None):
    plen = len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", 0x60000000, plen, nh, 64, src, dst) + payload


def ext6(nh, units=0):
    """A generic IPv6 extension header (hop-by-hop, routing, dest options ...) of 8*(units+1)."""
    return struct.pack("!BB", nh, units) + bytes(6 + 8 * units)


def frag6(nh, frag_off=0, more=False, ident=0xDEADBEEF):
    return struct.pack("!BBHI", nh, 0, frag_off | (1 if more else 0), ident)


def udp(sport=500, dport=500, payload=b""):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport=40000, dport=443, payload=b"", flags=0x18, options=b"", seq=1, ack=2, doff=None):
    hl = 20 + len(options)
    doff = hl // 4 if doff is None else doff
    return struct.pack("!HHIIHHHH", sport, dport, seq, ack, (doff << 12) | flags, 65535, 0, 0) + options + payload


def esp(spi=0x01020304, seq=1, payload=b"\xaa" * 32):
    return struct.pack("!II", spi, seq) + payload


def eth(et, payload, mac=MAC):
    return mac + struct.pack("!H", et) + payload


def icmp(itype, code, rest=b"\0\0\0\0", quote=b""):
    return struct.pack("!BBH", itype, code, 0) + rest + quote


def T(r):
    """The network tuple as a dict, for readable asserts."""
    keys = ("ipver", "src", "dst", "proto", "sport", "dport", "l4off", "end", "frag_off",
            "more_frags", "ident", "hdr_off")
    assert isinstance(r, tuple) and len(r) == 12
    return dict(zip(keys, r))


# --- IPv4 --------------------------------------------------------------------------------------


def test_ipv4_udp_basic_and_padding_excluded():
    pkt = ipv4(udp(500, 4500, b"x" * 4))
    frame = eth(0x0800, pkt + b"\0" * 20)  # Ethernet padding after the IP packet
    t = T(decode_frame(1, frame))
    assert t == dict(ipver=4, src=A4, dst=B4, proto=17, sport=500, dport=4500, l4off=34,
                     end=14 + len(pkt), frag_off=0, more_frags=False, ident=0x1234, hdr_off=14)


def test_ipv4_small_frame_padded_general_path():
    # 20 + 8 bytes of UDP: frame padded to 60 bytes; end must stop at the IP total length.
    pkt = ipv4(udp(500, 500))
    frame = eth(0x0800, pkt + bytes(60 - 14 - len(pkt)))
    t = T(decode_frame(1, frame))
    assert t["end"] == 14 + 28 and t["sport"] == 500


def test_ipv4_options_skipped():
    pkt = ipv4(udp(1701, 1701, b"abc"), options=b"\x94\x04\x00\x00" + b"\x01" * 4)  # RA + NOPs
    t = T(decode_frame(1, eth(0x0800, pkt)))
    assert t["l4off"] == 14 + 28 and (t["sport"], t["dport"]) == (1701, 1701)
    assert t["end"] == 14 + len(pkt)


def test_ipv4_truncated_by_snaplen_is_not_an_error():
    pkt = ipv4(udp(4500, 4500, esp()))
    frame = eth(0x0800, pkt)[:40]
    t = T(decode_frame(1, frame))
    assert t["end"] == 40 and t["sport"] == 4500 and t["dport"] == 4500


def test_ipv4_esp_and_tcp_fast_path():
    t = T(decode_frame(1, eth(0x0800, ipv4(esp(), proto=50, df=True))))
    assert (t["proto"], t["sport"], t["dport"], t["l4off"]) == (50, -1, -1, 34)
    t = T(decode_frame(1, eth(0x0800, ipv4(tcp(40000, 443), proto=6))))
    assert (t["proto"], t["sport"], t["dport"]) == (6, 40000, 443)


def test_ipv4_fragments_first_middle_last():
    body = udp(4500, 4500, bytes(200))
    first = ipv4(body[:96], ident=77, mf=True)
    middle = ipv4(body[96:192], ident=77, mf=True, frag_off=96)
    last = ipv4(body[192:], ident=77, frag_off=192)
    t1, t2, t3 = (T(decode_frame(1, eth(0x0800, p))) for p in (first, middle, last))
    assert (t1["frag_off"], t1["more_frags"], t1["sport"], t1["dport"]) == (0, True, 4500, 4500)
    assert (t2["frag_off"], t2["more_frags"], t2["sport"], t2["dport"]) == (96, True, -1, -1)
    assert (t3["frag_off"], t3["more_frags"], t3["sport"]) == (192, False, -1)
    for t in (t1, t2, t3):
        assert t["proto"] == 17 and t["ident"] == 77 and t["l4off"] == 34
    # data[l4off:end] of the pieces rebuilds the datagram
    rebuilt = b"".join(eth(0x0800, p)[t["l4off"]:t["end"]] for p, t in ((first, t1), (middle, t2), (last, t3)))
    assert rebuilt == body
    assert all(is_fragment(decode_frame(1, eth(0x0800, p))) for p in (first, middle, last))
    assert not is_fragment(decode_frame(1, eth(0x0800, ipv4(body, df=True))))


def test_ipv4_errors_carry_offsets():
    with pytest.raises(DissectError) as e:
        decode_frame(1, eth(0x0800, ipv4(udp())[:15]))
    assert e.value.offset == 14 and "truncated IPv4" in e.value.reason
    with pytest.raises(DissectError) as e:
        decode_frame(1, eth(0x0800, ipv4(udp(), ihl=4)))
    assert e.value.offset == 14
    with pytest.raises(DissectError) as e:  # total length < IHL*4
        decode_frame(1, eth(0x0800, ipv4(udp(), total=19)))
    assert e.value.offset == 16
    with pytest.raises(DissectError) as e:  # options run past the capture
        decode_frame(1, eth(0x0800, ipv4(b"", ihl=15) + bytes(10)))
    assert e.value.offset == 14
    with pytest.raises(DissectError):  # ethertype IPv4, version 6
        decode_frame(1, eth(0x0800, ipv6(udp())))


def test_ipv4_total_length_zero_is_tso():
    frame = eth(0x0800, ipv4(udp(500, 500, b"abc"), total=0))
    t = T(decode_frame(1, frame))
    assert t["end"] == len(frame) and t["sport"] == 500


def test_ipv4_udp_header_cut_ports_absent():
    frame = eth(0x0800, ipv4(udp(500, 500))[:22])
    t = T(decode_frame(1, frame))
    assert t["sport"] == -1 and t["end"] == 36


# --- IPv6 --------------------------------------------------------------------------------------


def test_ipv6_ext_chain_hop_routing_fragment():
    body = udp(500, 500, bytes(40))
    pkt = ipv6(ext6(43) + ext6(44, 1) + frag6(17, 0, True, 0xCAFEBABE) + body, nh=0)
    t = T(decode_frame(1, eth(0x86DD, pkt)))
    assert t["ipver"] == 6 and t["src"] == A6 and t["dst"] == B6
    assert t["proto"] == 17 and t["frag_off"] == 0 and t["more_frags"] is True
    assert t["ident"] == 0xCAFEBABE and (t["sport"], t["dport"]) == (500, 500)
    assert t["l4off"] == 14 + 40 + 8 + 16 + 8 and t["end"] == 14 + len(pkt)


def test_ipv6_non_first_fragment():
    pkt = ipv6(ext6(44) + frag6(50, 1232, False, 9) + bytes(100), nh=60)
    t = T(decode_frame(1, eth(0x86DD, pkt)))
    assert (t["proto"], t["frag_off"], t["more_frags"], t["ident"]) == (50, 1232, False, 9)
    assert t["sport"] == -1 and t["l4off"] == 14 + 40 + 8 + 8
    assert is_fragment(decode_frame(1, eth(0x86DD, pkt)))


def test_ipv6_unfragmented_generic_headers_and_ah_not_skipped():
    pkt = ipv6(ext6(60) + ext6(135) + ext6(253) + ext6(17, 2) + udp(4500, 4500, b"\xff"), nh=0)
    t = T(decode_frame(1, eth(0x86DD, pkt)))
    assert (t["proto"], t["sport"], t["ident"], t["more_frags"]) == (17, 4500, 0, False)
    ah = struct.pack("!BBHII", 50, 4, 0, 0x1000, 1) + bytes(12)
    t = T(decode_frame(1, eth(0x86DD, ipv6(ext6(51) + ah + esp(), nh=0))))
    assert t["proto"] == 51 and t["l4off"] == 14 + 48


def test_ipv6_padding_and_jumbo_and_truncation():
    pkt = ipv6(udp(500, 500, b"abc"))
    t = T(decode_frame(1, eth(0x86DD, pkt + bytes(10))))
    assert t["end"] == 14 + len(pkt)
    t = T(decode_frame(1, eth(0x86DD, ipv6(udp(500, 500, b"abc"), plen=0) + bytes(10))))
    assert t["end"] == 14 + len(pkt) + 10  # payload length 0: captured length
    with pytest.raises(DissectError) as e:
        decode_frame(1, eth(0x86DD, pkt[:39]))
    assert e.value.offset == 14
    with pytest.raises(DissectError) as e:  # extension header longer than the payload
        decode_frame(1, eth(0x86DD, ipv6(struct.pack("!BB", 17, 4) + bytes(6), nh=0)))
    assert e.value.offset == 14 + 40
    with pytest.raises(DissectError):  # endless chain of hop-by-hop headers
        decode_frame(1, eth(0x86DD, ipv6(ext6(0) * 40, nh=0)))


# --- decode_ip / IP-in-IP ----------------------------------------------------------------------


def test_ip_in_ip_not_peeled_decode_ip_on_inner():
    inner = ipv4(udp(500, 500, b"ike"), src=b"\x0a\0\0\1", dst=b"\x0a\0\0\2")
    frame = eth(0x0800, ipv4(inner, proto=4) + bytes(6))
    t = T(decode_frame(1, frame))
    assert t["proto"] == 4 and t["src"] == A4
    i = T(decode_ip(frame, t["l4off"], 4, t["end"]))
    assert i["src"] == b"\x0a\0\0\1" and i["sport"] == 500 and i["hdr_off"] == 34
    assert i["end"] == 34 + len(inner)
    inner6 = ipv6(esp(), nh=50)
    frame = eth(0x0800, ipv4(inner6, proto=41))
    t = T(decode_frame(1, frame))
    assert t["proto"] == 41
    assert T(decode_ip(frame, t["l4off"], 6, t["end"]))["proto"] == 50
    assert T(decode_ip(frame, t["l4off"], 0, t["end"]))["ipver"] == 6  # by nibble
    with pytest.raises(DissectError):
        decode_ip(frame, t["l4off"], 4, t["end"])
    for bad in ((frame, -1, 0), (frame, len(frame), 0), (b"\x50" + bytes(40), 0, 0), (frame, 0, 5)):
        with pytest.raises(DissectError):
            decode_ip(*bad)


def test_inner_bounded_by_outer_end():
    inner = ipv4(udp(500, 500, bytes(50)))
    outer = ipv4(inner[:30], proto=4)  # the outer packet only carries 30 bytes of the inner
    frame = eth(0x0800, outer + bytes(40))
    t = decode_frame(1, frame)
    assert decode_ip(frame, t[6], 4, t[7])[7] == len(eth(0x0800, outer))


# --- TCP ---------------------------------------------------------------------------------------


def test_decode_tcp_options_and_errors():
    seg = tcp(1194, 50000, b"hello", flags=0x012, options=b"\x02\x04\x05\xb4" + b"\x01" * 4, seq=7, ack=9)
    frame = eth(0x0800, ipv4(seg, proto=6))
    t = decode_frame(1, frame)
    sport, dport, seq, ack, flags, poff = decode_tcp(frame, t[6], t[7])
    assert (sport, dport, seq, ack, flags) == (1194, 50000, 7, 9, 0x012)
    assert frame[poff:t[7]] == b"hello"
    bad = eth(0x0800, ipv4(tcp(doff=4), proto=6))
    with pytest.raises(DissectError) as e:
        decode_tcp(bad, 34, len(bad))
    assert e.value.offset == 34 + 12
    bad = eth(0x0800, ipv4(tcp(doff=15), proto=6))
    with pytest.raises(DissectError):
        decode_tcp(bad, 34, len(bad))
    with pytest.raises(DissectError) as e:
        decode_tcp(frame, 34, 50)
    assert e.value.offset == 34


def test_decode_udp():
    dgram = udp(4500, 4501, b"\0\0\0\0esp")
    assert decode_udp(dgram, 0, len(dgram)) == (4500, 4501, 8)
    with pytest.raises(DissectError) as e:
        decode_udp(dgram, 0, 7)
    assert e.value.offset == 0 and "UDP" in e.value.reason


# --- ICMP --------------------------------------------------------------------------------------


def test_icmp_port_unreachable_quoting_udp500():
    quoted = ipv4(udp(500, 500, bytes(300)), src=B4, dst=A4)[:28]  # header + 8 bytes
    frame = eth(0x0800, ipv4(icmp(3, 3, quote=quoted), proto=1))
    t = decode_frame(1, frame)
    assert t[3] == 1
    itype, code, mtu, q = decode_icmp_error(frame, t[6], t[7], 4)
    assert (itype, code, mtu) == (3, 3, 0)
    q = T(q)
    assert (q["src"], q["dst"], q["proto"], q["sport"], q["dport"]) == (B4, A4, 17, 500, 500)
    assert q["hdr_off"] == 42 and q["end"] == len(frame)  # quoted total length capped


def test_icmp_quote_with_only_four_transport_bytes_and_too_short():
    quoted = ipv4(udp(4500, 4500, bytes(100)))[:24]
    frame = eth(0x0800, ipv4(icmp(11, 0, quote=quoted), proto=1))
    t = decode_frame(1, frame)
    q = T(decode_icmp_error(frame, t[6], t[7], 4)[3])
    assert (q["sport"], q["dport"]) == (4500, 4500)
    frame = eth(0x0800, ipv4(icmp(3, 1, quote=quoted[:12]), proto=1))
    t = decode_frame(1, frame)
    assert decode_icmp_error(frame, t[6], t[7], 4) == (3, 1, 0, None)


def test_icmp_frag_needed_mtu_and_non_errors():
    quoted = ipv4(esp(payload=bytes(1400)), proto=50, df=True)[:28]
    frame = eth(0x0800, ipv4(icmp(3, 4, rest=struct.pack("!HH", 0, 1400), quote=quoted), proto=1))
    t = decode_frame(1, frame)
    itype, code, mtu, q = decode_icmp_error(frame, t[6], t[7], 4)
    assert (itype, code, mtu, q[3], q[4]) == (3, 4, 1400, 50, -1)
    echo = eth(0x0800, ipv4(icmp(8, 0, quote=b"ping"), proto=1))
    assert decode_icmp_error(echo, 34, len(echo), 4) is None
    with pytest.raises(DissectError):
        decode_icmp_error(frame, 34, 39, 4)  # error type, header cut
    with pytest.raises(DissectError):
        decode_icmp_error(frame, 34, 35, 4)


def test_icmpv6_packet_too_big_quoting_esp():
    quoted = ipv6(esp(spi=0xABCDEF01, payload=bytes(1400)), nh=50, src=B6, dst=A6)[:1232 - 48]
    frame = eth(0x86DD, ipv6(icmp(2, 0, rest=struct.pack("!I", 1280), quote=quoted), nh=58))
    t = decode_frame(1, frame)
    assert t[3] == 58
    itype, code, mtu, q = decode_icmp_error(frame, t[6], t[7], 6)
    assert (itype, code, mtu) == (2, 0, 1280)
    q = T(q)
    assert (q["ipver"], q["src"], q["dst"], q["proto"]) == (6, B6, A6, 50)
    assert frame[q["l4off"]:q["l4off"] + 4] == bytes.fromhex("abcdef01")
    echo = eth(0x86DD, ipv6(icmp(128, 0), nh=58))
    assert decode_icmp_error(echo, 54, len(echo), 6) is None
    unreach = eth(0x86DD, ipv6(icmp(1, 4, quote=ipv6(udp(500, 4500))), nh=58))
    assert decode_icmp_error(unreach, 54, len(unreach), 6)[3][4:6] == (500, 4500)


# --- oracle: tshark on the public corpus --------------------------------------------------------

ORACLE_FIELDS = [
    "frame.number", "frame.protocols",
    "ip.src", "ip.dst", "ip.proto", "ip.flags.mf", "ip.frag_offset",
    "ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.hopopts.nxt", "ipv6.routing.nxt",
    "ipv6.dstopts.nxt", "ipv6.fraghdr.nxt", "ipv6.fraghdr.offset", "ipv6.fraghdr.more",
    "udp.srcport", "udp.dstport", "tcp.srcport", "tcp.dstport",
]
ORACLE_OPTS = ["-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"]
# tshark protocol tokens after which the next IP header is the mirrored one.
_WRAPPER_TOKENS = {"erspan", "vxlan"}
# IPv6 extension headers as frame.protocols tokens -> index of their next-header field in a row.
_IPV6_EXT_NXT = {"ipv6.hopopts": 10, "ipv6.routing": 11, "ipv6.dstopts": 12, "ipv6.fraghdr": 13}


def _records(path: Path):
    """(number, linktype, data) per frame: the project's reader when present, else scapy's."""
    try:
        from dissect.vpn.capture import open_capture
    except ImportError:  # pragma: no cover - the project's reader is being written
        open_capture = None
    if open_capture is not None:
        with open(path, "rb") as f:
            num = 0
            for rec in open_capture(f).records():
                num += 1
                yield num, rec[1], rec[2]
        return
    from scapy.utils import RawPcapReader  # pragma: no cover

    with RawPcapReader(str(path)) as r:  # pragma: no cover
        for num, (data, meta) in enumerate(r, 1):
            yield num, getattr(meta, "linktype", None) or r.linktype, data


def _occ(value: str, k: int) -> str:
    parts = value.split(",") if value else []
    return parts[k] if k < len(parts) else ""


def _expected(row):
    """tshark's view of the frame's own IP header: (ipver, src, dst, proto, sport, dport,
    is_fragment) or None when tshark sees no IP."""
    (num, protos, ip_src, ip_dst, ip_proto, mf, foff, v6_src, v6_dst, v6_nxt, _h, _r, _d,
     f_nxt, f_off, f_more, usp, udp_, tsp, tdp) = row
    toks = protos.split(":")
    start = 0
    for i, tok in enumerate(toks):
        if tok in _WRAPPER_TOKENS or (tok == "gre" and i + 1 < len(toks) and toks[i + 1] in ("eth", "erspan")):
            start = i + 1
    pos = next((i for i in range(start, len(toks)) if toks[i] in ("ip", "ipv6")), None)
    if pos is None:
        return None
    after = pos + 1
    if toks[pos] == "ip":
        k = toks[:pos].count("ip")
        proto = int(_occ(ip_proto, k))
        frag = _occ(mf, k) in ("1", "True") or int(_occ(foff, k) or 0) > 0
        ver, src, dst = 4, _occ(ip_src, k), _occ(ip_dst, k)
    else:
        k = toks[:pos].count("ipv6")
        ver, src, dst = 6, _occ(v6_src, k), _occ(v6_dst, k)
        proto = int(_occ(v6_nxt, k))
        frag = False
        # walk the extension headers tshark shows; stop after a fragment header (as we do)
        while after < len(toks) and toks[after] in _IPV6_EXT_NXT:
            tok = toks[after]
            kk = toks[:after].count(tok)
            proto = int(_occ(row[_IPV6_EXT_NXT[tok]], kk))
            after += 1
            if tok == "ipv6.fraghdr":
                frag = int(_occ(f_off, kk) or 0) > 0 or _occ(f_more, kk) in ("1", "True")
                break
    # ports: the transport right after this IP header (and its extension headers)
    sport = dport = -1
    nxt_tok = toks[after] if after < len(toks) else ""
    if nxt_tok in ("udp", "tcp"):
        ku = toks[:after].count(nxt_tok)
        sp, dp = (usp, udp_) if nxt_tok == "udp" else (tsp, tdp)
        if _occ(sp, ku):
            sport, dport = int(_occ(sp, ku)), int(_occ(dp, ku))
    return ver, src, dst, proto, sport, dport, frag


# Frames where we knowingly differ from tshark: (corpus-relative path, frame) -> why.
ORACLE_KNOWN_DIFFERENCES: dict[tuple[str, int], str] = {}


def _tshark_rows(files, tmp_path):
    """tshark rows for all files, in order: one tshark run over a concatenation made by mergecap
    (tshark's start-up dominates otherwise), or one run per file without mergecap."""
    import shutil
    import subprocess

    from conftest import tshark_fields

    mergecap = shutil.which("mergecap")
    if mergecap:
        merged = tmp_path / "corpus.pcapng"
        subprocess.run([mergecap, "-a", "-F", "pcapng", "-w", str(merged), *map(str, files)],
                       check=True, capture_output=True, timeout=120)
        return tshark_fields(merged, ORACLE_FIELDS, extra=ORACLE_OPTS, occurrence="a")
    rows = []
    for path in files:
        rows += tshark_fields(path, ORACLE_FIELDS, extra=ORACLE_OPTS, occurrence="a")
    return rows


@pytest.mark.oracle
def test_decode_frame_matches_tshark_on_corpus(tmp_path):
    from conftest import corpus_captures, corpus_dir, rel, tshark_path

    corpus_dir()
    tshark_path()
    files = corpus_captures()
    assert files, "the corpus holds no captures"
    ours = [(path, num, lt, data) for path in files for num, lt, data in _records(path)]
    rows = _tshark_rows(files, tmp_path)
    assert len(rows) == len(ours), f"tshark saw {len(rows)} frames, our reader {len(ours)}"
    mismatches = []
    frames = 0
    for (path, num, lt, data), row in zip(ours, rows):
        if lt is None or lt < 0:
            continue
        frames += 1
        exp = _expected(row)
        try:
            got = decode_frame(lt, data)
        except DissectError as e:
            got = e
        key = (rel(path), num)
        if key in ORACLE_KNOWN_DIFFERENCES:
            continue
        if isinstance(got, DissectError) or got is None:
            if exp is not None:
                mismatches.append((key, "ours", repr(got), "tshark", exp))
            continue
        if exp is None:
            mismatches.append((key, "ours", got[:6], "tshark", "no IP"))
            continue
        ver, src, dst, proto, sport, dport, frag = exp
        mine = (got[0], str(ipaddress.ip_address(got[1])), str(ipaddress.ip_address(got[2])),
                got[3], got[4], got[5], is_fragment(got))
        theirs = (ver, str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), proto,
                  sport, dport, frag)
        if mine != theirs:
            mismatches.append((key, "ours", mine, "tshark", theirs))
    print(f"oracle: {frames} frames in {len(files)} captures, {len(mismatches)} mismatches")
    assert not mismatches, "\n".join(map(str, mismatches[:30]))


def test_header_fields_the_inner_tracker_reads():
    """Ports, ICMP echo id/seq, DNS ID/QR and a bare ESP SPI: read in dissect, not in track."""
    import struct

    from dissect.vpn import dns, esp, ip

    assert ip.ports(b"\x00" + struct.pack("!HH", 5353, 53), 1) == (5353, 53)
    echo = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 7)
    assert ip.icmp_echo(b"xx" + echo, 2) == (8, 0x1234, 7)
    assert dns.message_id(struct.pack("!HH", 0xBEEF, 0x8180) + bytes(8), 0) == (0xBEEF, True)
    assert dns.message_id(struct.pack("!HH", 1, 0x0100) + bytes(8), 0) == (1, False)
    assert esp.esp_spi(b"\x00" + struct.pack("!I", 0xC0FFEE01), 1) == 0xC0FFEE01
    assert esp.esp_spi(bytes(4), 0) == 0  # reserved, but a nested header is looked up anyway
