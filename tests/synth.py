"""Build synthetic frames and captures for tests (struct only: fast and explicit).

Addresses are documentation ranges (RFC 5737 / RFC 3849).  Frames are Ethernet II unless a
builder says otherwise; checksums are left 0 (tshark does not validate them by default).
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

from dissect.vpn.capture import PcapWriter

LINKTYPE_ETHERNET = 1
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def ip(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def eth(payload: bytes, ethertype: int = 0x0800, src=MAC_A, dst=MAC_B) -> bytes:
    return dst + src + struct.pack(">H", ethertype) + payload


def ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int = 0, flags_frag: int = 0,
         ttl: int = 64, total_len: int | None = None) -> bytes:
    tl = 20 + len(payload) if total_len is None else total_len
    hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, tl, ident, flags_frag, ttl, proto, 0,
                      ip(src), ip(dst))
    return hdr + payload


def ipv6(src: str, dst: str, nh: int, payload: bytes, hlim: int = 64) -> bytes:
    return struct.pack(">IHBB16s16s", 0x60000000, len(payload), nh, hlim, ip(src), ip(dst)) \
        + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def esp(spi: int, seq: int, body_len: int = 64) -> bytes:
    return struct.pack(">II", spi, seq) + bytes((i * 7) & 0xFF for i in range(body_len))


def ip_frame(src: str, dst: str, proto: int, payload: bytes, **kw) -> bytes:
    """Ethernet + IPv4 or IPv6 (by the address family of ``src``)."""
    if ":" in src:
        return eth(ipv6(src, dst, proto, payload), 0x86DD)
    return eth(ipv4(src, dst, proto, payload, **kw))


def esp_frame(src: str, dst: str, spi: int, seq: int, body_len: int = 64,
              udp_ports: tuple[int, int] | None = None) -> bytes:
    e = esp(spi, seq, body_len)
    if udp_ports:
        return ip_frame(src, dst, 17, udp(udp_ports[0], udp_ports[1], e))
    return ip_frame(src, dst, 50, e)


def keepalive_frame(src: str, dst: str, sport: int = 4500, dport: int = 4500) -> bytes:
    return ip_frame(src, dst, 17, udp(sport, dport, b"\xff"))


def ike_frame(src: str, dst: str, ike: bytes, sport: int = 500, dport: int = 500) -> bytes:
    payload = ike if 500 in (sport, dport) and 4500 not in (sport, dport) else b"\x00" * 4 + ike
    return ip_frame(src, dst, 17, udp(sport, dport, payload))


# -- IKE messages (RFC 7296 §3) -----------------------------------------------------------------


def ike_header(ispi: bytes, rspi: bytes, np: int, exch: int, flags: int, msgid: int,
               body: bytes, version: int = 0x20) -> bytes:
    return struct.pack(">8s8sBBBBII", ispi, rspi, np, version, exch, flags, msgid,
                       28 + len(body)) + body


def payload(np: int, body: bytes, critical: bool = False) -> bytes:
    return struct.pack(">BBH", np, 0x80 if critical else 0, 4 + len(body)) + body


def chain(*items: tuple[int, bytes]) -> tuple[int, bytes]:
    """``chain((type, body), ...)`` → (first payload type, bytes) with Next Payload fields set."""
    out = b""
    for i, (ptype, body) in enumerate(items):
        nxt = items[i + 1][0] if i + 1 < len(items) else 0
        out += payload(nxt, body)
    return (items[0][0] if items else 0), out


def v2_transform(ttype: int, tid: int, keylen: int | None = None, last: bool = False) -> bytes:
    attrs = struct.pack(">HH", 0x800E, keylen) if keylen else b""
    return struct.pack(">BBHBBH", 0 if last else 3, 0, 8 + len(attrs), ttype, 0, tid) + attrs


def v2_proposal(num: int, proto: int, transforms: list[tuple], spi: bytes = b"",
                last: bool = True) -> bytes:
    body = b""
    for i, t in enumerate(transforms):
        body += v2_transform(*t, last=(i == len(transforms) - 1))
    return struct.pack(">BBHBBBB", 0 if last else 2, 0, 8 + len(spi) + len(body), num, proto,
                       len(spi), len(transforms)) + spi + body


def v2_sa(proposals: list[bytes]) -> bytes:
    return b"".join(proposals)


def v2_notify(ntype: int, data: bytes = b"", proto: int = 0, spi: bytes = b"") -> bytes:
    return struct.pack(">BBH", proto, len(spi), ntype) + spi + data


def v2_ke(group: int, data: bytes) -> bytes:
    return struct.pack(">HH", group, 0) + data


def v2_sk(inner_first: int, ct_len: int = 64) -> tuple[int, bytes]:
    """An SK payload whose generic header names ``inner_first`` (RFC 7296 §3.14)."""
    return 46, struct.pack(">BBH", inner_first, 0, 4 + ct_len) + bytes(ct_len)


def ike_sa_init(ispi: bytes, rspi: bytes, response: bool, extra=(), group: int = 14,
                proposals=None, msgid: int = 0, flags: int | None = None) -> bytes:
    if proposals is None:
        proposals = [v2_proposal(1, 1, [(1, 12, 256), (3, 12), (2, 5), (4, group)])]
    items = [(33, v2_sa(proposals)), (34, v2_ke(group, bytes(256))), (40, bytes(32))]
    items += list(extra)
    np, body = chain(*items)
    if flags is None:
        flags = 0x20 if response else 0x08
    return ike_header(ispi, rspi, np, 34, flags, msgid, body)


def ike_notify_only(ispi: bytes, rspi: bytes, exch: int, ntype: int, data: bytes = b"",
                    response: bool = True, msgid: int = 0, from_initiator: bool = False) -> bytes:
    np, body = chain((41, v2_notify(ntype, data)))
    flags = (0x20 if response else 0) | (0x08 if from_initiator else 0)
    return ike_header(ispi, rspi, np, exch, flags, msgid, body)


def ike_encrypted(ispi: bytes, rspi: bytes, exch: int, msgid: int, inner_first: int,
                  response: bool, from_initiator: bool, ct_len: int = 64) -> bytes:
    t, sk = v2_sk(inner_first, ct_len)
    flags = (0x20 if response else 0) | (0x08 if from_initiator else 0)
    # the SK payload's generic header is already in ``sk``
    return ike_header(ispi, rspi, t, exch, flags, msgid, sk)


def write_pcap(path: Path, frames: list[tuple[float, bytes]],
               linktype: int = LINKTYPE_ETHERNET) -> Path:
    with open(path, "wb") as f:
        w = PcapWriter(f, linktype)
        for ts, data in frames:
            w.write_packet(ts, data)
    return path


def snap_copy(src: Path, dst: Path, snap: int) -> Path:
    """``src`` (pcap or pcapng, Ethernet) as ``tcpdump -s SNAP`` would have written it: every
    frame cut to ``snap`` bytes, its length on the wire kept as the record's original length."""
    from scapy.utils import rdpcap

    with open(dst, "wb") as f:
        w = PcapWriter(f, LINKTYPE_ETHERNET)
        for p in rdpcap(str(src)):
            data = bytes(p)
            w.write_packet(float(p.time), data[:snap], len(data))
    return dst


# -- IKEv1 messages (RFC 2408 §3, RFC 2409 §5) ---------------------------------------------------


def v1_sa(encr: int = 7, hash_: int = 2, auth: int = 1, group: int = 14) -> bytes:
    """An ISAKMP SA payload body (DOI IPsec, identity-only situation) with one proposal of one
    KEY_IKE transform: AES / SHA / PSK / the group."""
    attrs = b"".join(struct.pack(">HH", 0x8000 | t, v)
                     for t, v in ((1, encr), (2, hash_), (3, auth), (4, group)))
    transform = struct.pack(">BBHBBH", 0, 0, 8 + len(attrs), 1, 1, 0) + attrs
    proposal = struct.pack(">BBHBBBB", 0, 0, 8 + len(transform), 1, 1, 0, 1) + transform
    # the proposal carries its own generic header (next payload 0, length)
    return struct.pack(">II", 1, 1) + proposal


def v1_message(ispi: bytes, rspi: bytes, exch: int, msgid: int, step: int,
               encrypted: bool = False, size: int = 64, natd=()) -> bytes:
    """One IKEv1 message: Main Mode MM1/MM2 (SA), MM3/MM4 (KE, NONCE, and the NAT-D hashes
    ``natd``: RFC 3947 payload 20, the peer's first), and every encrypted message (MM5/MM6,
    Aggressive, Quick Mode, Informational) as ``size`` bytes of ciphertext."""
    if encrypted:
        # first payload: HASH (8) for Quick Mode / Informational, ID (5) for MM5/MM6
        np = 8 if exch in (5, 32) else 5
        return ike_header(ispi, rspi, np, exch, 0x01, msgid, bytes(size), version=0x10)
    if step in (1, 2):
        np, body = chain((1, v1_sa()))
    else:
        np, body = chain((4, bytes(128)), (10, bytes(16)), *((20, h) for h in natd))
    return ike_header(ispi, rspi, np, exch, 0, msgid, body, version=0x10)
