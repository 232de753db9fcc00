"""Rewrite the addresses carried in the clear by a captured frame (pseudonymisation).

Stateless: every function takes the frame bytes and a *mapper*, an object with

- ``ip(packed: bytes) -> bytes`` (same length: IPv4 → IPv4, IPv6 → IPv6),
- ``mac(b: bytes) -> bytes`` (6 bytes),
- ``ident(b: bytes) -> bytes`` (same length: an identity's text replaced),
- ``addresses() -> iterable of packed addresses`` (originals the mapper knows: the candidates
  when a NAT-D hash is recomputed),

and returns ``(linktype, new_bytes)``.  What is rewritten:

- link layer: Ethernet (+ 802.1Q/802.1ad tags) MAC addresses, Linux SLL/SLL2 source address;
  any other encapsulation (mirror wrappers such as ERSPAN, GRE, VXLAN, whose outer headers hold
  addresses of their own) is cut off and the frame written as raw IP (LINKTYPE_RAW);
- IPv4/IPv6 source and destination (IPv6 extension headers walked), the IPv4 header checksum;
- UDP/TCP/ICMP/ICMPv6 checksums (adjusted by the difference, RFC 1624, so a checksum over bytes
  the capture cut off stays right; a zero IPv4 UDP checksum stays zero);
- ICMP/ICMPv6 errors: the quoted IP header's addresses and checksum, the quoted UDP/TCP checksum;
- IKE in the clear on UDP 500/4500, and on other ports where its header validates (custom IKE
  ports, after a non-ESP marker or not) (RFC 7296, RFC 2408/2409): IKEv2 IDi/IDr, TSi/TSr,
  CP attributes, REDIRECT/REDIRECTED_FROM gateway identities, MOBIKE ADDITIONAL_IP*_ADDRESS;
  IKEv1 ID (addresses, subnets, ranges), NAT-OA, Mode Config attributes; identities (FQDN,
  e-mail, DN, key ID) through ``ident``; cleartext CERT data zeroed; NAT-D hashes recomputed
  for the new addresses (they are unkeyed: RFC 7296 §2.23 SHA-1(SPIi | SPIr | IP | port), RFC
  3947 §3.2 HASH(CKY-I | CKY-R | IP | port)); encrypted parts (SK, IKEv1 encrypted bodies) are
  left alone.

Lengths never change.  Bytes that do not parse are left as they are (a rewrite never raises
on bad input: at worst a field stays unmapped).
"""

from __future__ import annotations

import hashlib
import struct
from typing import Iterable, Protocol

from .link import (
    ETH_IPV4 as _IPV4, ETH_IPV6 as _IPV6, ETH_VLAN as _VLAN_TYPES, LINKTYPE_DLT_RAW_12,
    LINKTYPE_DLT_RAW_14, LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2, LINKTYPE_LOOP, LINKTYPE_NULL, LINKTYPE_RAW,
)
from .udpencap import IKE, classify_udp


class Mapper(Protocol):
    """What a rewrite asks of the pseudonymiser (see the module docstring)."""

    def ip(self, packed: bytes) -> bytes: ...

    def mac(self, b: bytes) -> bytes: ...

    def ident(self, b: bytes) -> bytes: ...

    def addresses(self) -> Iterable[bytes]: ...


#: a UDP datagram's (source address, source port, destination address, destination port)
Endpoints = tuple[bytes, int, bytes, int]

_DLT_RAW = (LINKTYPE_DLT_RAW_12, LINKTYPE_DLT_RAW_14)  # DLT_RAW on some BSDs / OpenBSD
_V6_EXT = (0, 43, 60)           # hop-by-hop, routing, destination options (RFC 8200 §4)
_V6_FRAG = 44
_ICMP_ERRORS_V4 = (3, 4, 5, 11, 12)
_ICMP_ERRORS_V6 = (1, 2, 3, 4)

_NAT_D_HASHES = {16: ("md5",), 20: ("sha1",), 32: ("sha256",), 48: ("sha384",), 64: ("sha512",)}


# -- checksums (RFC 1071, incremental RFC 1624) ---------------------------------------------------

def _sum16(b: bytes) -> int:
    if len(b) & 1:
        b = b + b"\x00"
    s: int = sum(struct.unpack(f">{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _adjust(csum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), over whole regions (same length and alignment)."""
    if old == new:
        return csum
    s = (~csum & 0xFFFF) + (~_sum16(old) & 0xFFFF) + _sum16(new)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def checksum(b: bytes) -> int:
    return ~_sum16(b) & 0xFFFF


# -- frames -------------------------------------------------------------------------------------

def rewrite_frame(linktype: int, data: bytes, mapper: Mapper) -> tuple[int, bytes]:
    """The frame with its addresses mapped (see the module doc); ``(linktype, bytes)``."""
    buf = bytearray(data)
    off = None
    if linktype == LINKTYPE_ETHERNET and len(buf) >= 14:
        buf[0:6] = mapper.mac(bytes(buf[0:6]))
        buf[6:12] = mapper.mac(bytes(buf[6:12]))
        p = 12
        et = struct.unpack_from(">H", buf, p)[0]
        while et in _VLAN_TYPES and p + 6 <= len(buf):
            p += 4
            et = struct.unpack_from(">H", buf, p)[0]
        if et in (_IPV4, _IPV6):
            off = p + 2
    elif linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6) + _DLT_RAW:
        off = 0
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP) and len(buf) >= 4:
        off = 4
    elif linktype == LINKTYPE_LINUX_SLL and len(buf) >= 16:
        alen = struct.unpack_from(">H", buf, 4)[0]
        if alen == 6:
            buf[6:12] = mapper.mac(bytes(buf[6:12]))
        elif 0 < alen <= 8:
            buf[6:6 + alen] = bytes(alen)
        if struct.unpack_from(">H", buf, 14)[0] in (_IPV4, _IPV6):
            off = 16
    elif linktype == LINKTYPE_LINUX_SLL2 and len(buf) >= 20:
        alen = buf[11]
        if alen == 6:
            buf[12:18] = mapper.mac(bytes(buf[12:18]))
        elif 0 < alen <= 8:
            buf[12:12 + alen] = bytes(alen)
        if struct.unpack_from(">H", buf, 0)[0] in (_IPV4, _IPV6):
            off = 20
    from dissect.vpn.errors import DissectError
    from dissect.vpn.link import decode_frame

    try:
        d = decode_frame(linktype, data)
    except (DissectError, ValueError, IndexError, struct.error):
        d = None
    if d is None:  # no IP (ARP ...): nothing of it is kept
        return LINKTYPE_RAW, b""
    hdr = d[-1]
    if off == hdr and (buf[off] >> 4) in (4, 6):
        _ip(buf, off, mapper)
        return linktype, bytes(buf)
    # a mirror wrapper or an unknown link layer: keep only the IP packet the analyzer uses
    raw = bytearray(data[hdr:])
    _ip(raw, 0, mapper)
    return LINKTYPE_RAW, bytes(raw)


def _ip(buf: bytearray, off: int, mapper: Mapper, quoted: bool = False) -> None:
    """Rewrite the IP packet at ``off`` in place (``quoted``: inside an ICMP error)."""
    v = buf[off] >> 4
    if v == 4:
        if off + 20 > len(buf):
            return
        ihl = (buf[off] & 0x0F) * 4
        if ihl < 20 or off + ihl > len(buf):
            return
        old_ph = bytes(buf[off + 12:off + 20])
        buf[off + 12:off + 16] = mapper.ip(bytes(buf[off + 12:off + 16]))
        buf[off + 16:off + 20] = mapper.ip(bytes(buf[off + 16:off + 20]))
        new_ph = bytes(buf[off + 12:off + 20])
        buf[off + 10:off + 12] = b"\x00\x00"
        struct.pack_into(">H", buf, off + 10, checksum(bytes(buf[off:off + ihl])))
        total = struct.unpack_from(">H", buf, off + 2)[0]
        end = min(len(buf), off + total) if total >= ihl else len(buf)
        frag = struct.unpack_from(">H", buf, off + 6)[0]
        first = (frag & 0x1FFF) == 0
        whole = first and not frag & 0x2000 and off + total <= len(buf)
        _l4(buf, off + ihl, end, buf[off + 9], old_ph, new_ph, 4, first, whole, quoted, mapper)
    elif v == 6:
        if off + 40 > len(buf):
            return
        old_ph = bytes(buf[off + 8:off + 40])
        buf[off + 8:off + 24] = mapper.ip(bytes(buf[off + 8:off + 24]))
        buf[off + 24:off + 40] = mapper.ip(bytes(buf[off + 24:off + 40]))
        new_ph = bytes(buf[off + 8:off + 40])
        plen = struct.unpack_from(">H", buf, off + 4)[0]
        end = min(len(buf), off + 40 + plen) if plen else len(buf)
        nh = buf[off + 6]
        p = off + 40
        first = whole = True
        while nh in _V6_EXT or nh == _V6_FRAG:
            if p + 8 > end:
                return
            if nh == _V6_FRAG:
                fo = struct.unpack_from(">H", buf, p + 2)[0]
                first = (fo >> 3) == 0
                whole = first and not fo & 1
                nh = buf[p]
                p += 8
                continue
            nh, ln = buf[p], (buf[p + 1] + 1) * 8
            p += ln
        whole = whole and off + 40 + plen <= len(buf)
        _l4(buf, p, end, nh, old_ph, new_ph, 6, first, whole, quoted, mapper)


def _l4(buf: bytearray, p: int, end: int, proto: int, old_ph: bytes, new_ph: bytes, ipver: int, first: bool, whole: bool, quoted: bool, mapper: Mapper) -> None:
    """Transport layer at ``p`` (``first``: it starts here; ``whole``: not fragmented and
    captured to its end)."""
    if not first or p >= end:
        return
    if proto == 17 and p + 8 <= end:
        old = bytes(buf[p:end])
        if whole and not quoted:
            sport, dport = struct.unpack_from(">HH", buf, p)
            _udp_payload(buf, p + 8, end, sport, dport, old_ph, new_ph, ipver, mapper)
        csum = struct.unpack_from(">H", buf, p + 6)[0]
        if csum == 0 and ipver == 4:
            return
        # the checksum field itself is part of the region: take it out of both sides
        buf[p + 6:p + 8] = b"\x00\x00"
        old = old[:6] + b"\x00\x00" + old[8:]
        new = _adjust(csum, old_ph + old, new_ph + bytes(buf[p:end]))
        struct.pack_into(">H", buf, p + 6, new or 0xFFFF)
    elif proto == 6 and p + 18 <= end:
        csum = struct.unpack_from(">H", buf, p + 16)[0]
        struct.pack_into(">H", buf, p + 16, _adjust(csum, old_ph, new_ph))
    elif proto == 1 and p + 4 <= end:
        old = bytes(buf[p:end])
        if buf[p] in _ICMP_ERRORS_V4 and not quoted and p + 8 < end:
            _ip(buf, p + 8, mapper, quoted=True)
        csum = struct.unpack_from(">H", buf, p + 2)[0]
        buf[p + 2:p + 4] = b"\x00\x00"
        old = old[:2] + b"\x00\x00" + old[4:]
        struct.pack_into(">H", buf, p + 2, _adjust(csum, old, bytes(buf[p:end])))
    elif proto == 58 and p + 4 <= end:
        old = bytes(buf[p:end])
        if buf[p] in _ICMP_ERRORS_V6 and not quoted and p + 8 < end:
            _ip(buf, p + 8, mapper, quoted=True)
        csum = struct.unpack_from(">H", buf, p + 2)[0]
        buf[p + 2:p + 4] = b"\x00\x00"
        old = old[:2] + b"\x00\x00" + old[4:]
        struct.pack_into(">H", buf, p + 2,
                         _adjust(csum, old_ph + old, new_ph + bytes(buf[p:end])))


def _udp_payload(buf: bytearray, p: int, end: int, sport: int, dport: int, old_ph: bytes, new_ph: bytes, ipver: int, mapper: Mapper) -> None:
    if 500 in (sport, dport) and 4500 not in (sport, dport):
        start = p
    else:
        # UDP 4500 (RFC 3948: IKE after the non-ESP marker; ESP and keepalives left alone) and
        # IKE on custom ports: the decoder's own classification
        kind, start, _b = classify_udp(sport, dport, buf, p, end)
        if kind != IKE:
            return
    if ipver == 4:
        src_old, dst_old = old_ph[0:4], old_ph[4:8]
    else:
        src_old, dst_old = old_ph[0:16], old_ph[16:32]
    rewrite_ike(buf, start, end, mapper, (src_old, sport, dst_old, dport))


# -- IKE ----------------------------------------------------------------------------------------

def rewrite_ike(buf: bytearray, off: int, end: int, mapper: Mapper, endpoints: Endpoints | None = None) -> None:
    """Rewrite the cleartext payloads of the IKE message at ``buf[off:end]`` in place.
    ``endpoints``: ``(src, sport, dst, dport)`` of the packet (original addresses), tried first
    when a NAT-D hash is matched."""
    if end - off < 28:
        return
    ispi_rspi = bytes(buf[off:off + 16])
    np = buf[off + 16]
    major = buf[off + 17] >> 4
    flags = buf[off + 19]
    length = struct.unpack_from(">I", buf, off + 24)[0]
    end = min(end, off + length) if length >= 28 else end
    if major == 1 and flags & 0x01:
        return  # IKEv1 encrypted body (RFC 2408 §3.1 E flag)
    p = off + 28
    while np and p + 4 <= end:
        nxt = buf[p]
        plen = struct.unpack_from(">H", buf, p + 2)[0]
        if plen < 4 or p + plen > end:
            return
        body, bend = p + 4, p + plen
        try:
            if major == 2:
                if np in (46, 53):  # SK / SKF: the rest is encrypted
                    return
                _v2_payload(buf, np, body, bend, mapper, ispi_rspi, endpoints)
            elif major == 1:
                _v1_payload(buf, np, body, bend, mapper, ispi_rspi, endpoints)
        except (struct.error, IndexError, ValueError):
            pass
        np = nxt
        p = bend


def _map_addr(buf: bytearray, p: int, n: int, mapper: Mapper) -> None:
    buf[p:p + n] = mapper.ip(bytes(buf[p:p + n]))


def _map_range(buf: bytearray, p: int, n: int, mapper: Mapper) -> None:
    """A start/end address pair: the bits the two share (the network) are mapped, the host bits
    stay as written, so a whole subnet stays the whole (mapped) subnet and a range keeps its
    shape (the mapper is prefix-preserving: the first k bits of a mapped address depend only on
    the first k bits of the address)."""
    a = int.from_bytes(buf[p:p + n], "big")
    b = int.from_bytes(buf[p + n:p + 2 * n], "big")
    host = (1 << (a ^ b).bit_length()) - 1
    net = int.from_bytes(mapper.ip(bytes(buf[p:p + n])), "big") & ~host & ((1 << 8 * n) - 1)
    buf[p:p + n] = (net | (a & host)).to_bytes(n, "big")
    buf[p + n:p + 2 * n] = (net | (b & host)).to_bytes(n, "big")


def _map_subnet(buf: bytearray, p: int, n: int, mapper: Mapper) -> None:
    """Address + mask (IKEv1 ID subnets, IKEv2 INTERNAL_IP4_SUBNET): map the network, keep the
    host bits as written."""
    mask = int.from_bytes(buf[p + n:p + 2 * n], "big")
    a = int.from_bytes(buf[p:p + n], "big")
    net = int.from_bytes(mapper.ip(bytes(buf[p:p + n])), "big") & mask
    buf[p:p + n] = (net | (a & ~mask & ((1 << 8 * n) - 1))).to_bytes(n, "big")


def _ident(buf: bytearray, p: int, e: int, mapper: Mapper) -> None:
    if e > p:
        new = mapper.ident(bytes(buf[p:e]))
        if len(new) == e - p:
            buf[p:e] = new


def _natd(buf: bytearray, p: int, e: int, mapper: Mapper, spis: bytes, endpoints: Endpoints | None) -> None:
    h = bytes(buf[p:e])
    algs = _NAT_D_HASHES.get(len(h))
    if not algs:
        return
    cands = []
    if endpoints:
        src, sport, dst, dport = endpoints
        cands += [(src, sport), (dst, dport), (src, dport), (dst, sport)]
    ports = {500, 4500}
    if endpoints:
        ports |= {endpoints[1], endpoints[3]}
    for a in mapper.addresses():
        for port in sorted(ports):
            cands.append((a, port))
    for alg in algs:
        for addr, port in cands:
            if hashlib.new(alg, spis + addr + struct.pack(">H", port)).digest() == h:
                buf[p:e] = hashlib.new(alg, spis + mapper.ip(addr)
                                       + struct.pack(">H", port)).digest()
                return


# IKEv2 CP attributes holding addresses: RFC 7296 §3.15.1 (+ RFC 7651 P-CSCF 20/21):
# type -> (address length, layout) where layout is "addr", "addr+prefix" or "subnet"
_V2_CP = {1: (4, "addr"), 3: (4, "addr"), 4: (4, "addr"), 6: (4, "addr"), 8: (16, "addr+prefix"),
          10: (16, "addr"), 12: (16, "addr"), 13: (4, "subnet"), 15: (16, "addr+prefix"),
          20: (4, "addr"), 21: (16, "addr")}
# IKEv1 Mode Config (draft-dukes-ike-mode-cfg §3.2): same numbering for these
_V1_CP = {1: (4, "addr"), 3: (4, "addr"), 4: (4, "addr"), 6: (4, "addr"), 8: (16, "addr"),
          10: (16, "addr"), 12: (16, "addr"), 13: (4, "subnet"), 15: (16, "addr+prefix")}


def _cp_attr(buf: bytearray, p: int, ln: int, table: dict[int, tuple[int, str]], mapper: Mapper) -> None:
    spec = table.get(struct.unpack_from(">H", buf, p)[0] & 0x7FFF)
    if not spec or ln == 0:
        return
    n, layout = spec
    v = p + 4
    if layout == "subnet" and ln >= 2 * n:
        _map_subnet(buf, v, n, mapper)
    elif ln >= n:
        _map_addr(buf, v, n, mapper)


def _v2_payload(buf: bytearray, np: int, p: int, e: int, mapper: Mapper, spis: bytes, endpoints: Endpoints | None) -> None:
    if np in (35, 36) and e - p >= 4:          # IDi / IDr (RFC 7296 §3.5)
        t = buf[p]
        d = p + 4
        if t == 1 and e - d == 4:
            _map_addr(buf, d, 4, mapper)
        elif t == 5 and e - d == 16:
            _map_addr(buf, d, 16, mapper)
        elif t == 9 or t == 10:
            buf[d:e] = bytes(e - d)            # DER DN/GN: no names left
        elif t in (2, 3, 11, 12):
            _ident(buf, d, e, mapper)
    elif np in (44, 45) and e - p >= 4:        # TSi / TSr (§3.13)
        q = p + 4
        for _ in range(buf[p]):
            if q + 8 > e:
                return
            t, _proto, ln = struct.unpack_from(">BBH", buf, q)
            if ln < 8 or q + ln > e:
                return
            if t == 7 and ln >= 16:
                _map_range(buf, q + 8, 4, mapper)
            elif t == 8 and ln >= 40:
                _map_range(buf, q + 8, 16, mapper)
            q += ln
    elif np == 47 and e - p >= 4:              # CP (§3.15)
        q = p + 4
        while q + 4 <= e:
            ln = struct.unpack_from(">H", buf, q + 2)[0]
            if q + 4 + ln > e:
                return
            _cp_attr(buf, q, ln, _V2_CP, mapper)
            q += 4 + ln
    elif np == 37 and e - p >= 1:              # CERT in the clear: no names left
        buf[p + 1:e] = bytes(e - p - 1)
    elif np == 41 and e - p >= 4:              # Notify (§3.10)
        spi_size = buf[p + 1]
        ntype = struct.unpack_from(">H", buf, p + 2)[0]
        d = p + 4 + spi_size
        if ntype in (16388, 16389):            # NAT_DETECTION_*_IP (§2.23)
            _natd(buf, d, e, mapper, spis, endpoints)
        elif ntype in (16407, 16408) and e - d >= 2:   # REDIRECT / REDIRECTED_FROM (RFC 5685)
            gt, gl = buf[d], buf[d + 1]
            g = d + 2
            if g + gl <= e:
                if gt in (1, 2) and gl in (4, 16):
                    _map_addr(buf, g, gl, mapper)
                elif gt == 3:
                    _ident(buf, g, g + gl, mapper)
        elif ntype == 16397 and e - d == 4:    # ADDITIONAL_IP4_ADDRESS (RFC 4555)
            _map_addr(buf, d, 4, mapper)
        elif ntype == 16398 and e - d == 16:   # ADDITIONAL_IP6_ADDRESS
            _map_addr(buf, d, 16, mapper)


def _v1_payload(buf: bytearray, np: int, p: int, e: int, mapper: Mapper, spis: bytes, endpoints: Endpoints | None) -> None:
    if np == 5 and e - p >= 4:                 # ID (RFC 2407 §4.6.2)
        t = buf[p]
        d = p + 4
        n = e - d
        if t == 1 and n == 4:
            _map_addr(buf, d, 4, mapper)
        elif t == 5 and n == 16:
            _map_addr(buf, d, 16, mapper)
        elif t == 4 and n == 8:
            _map_subnet(buf, d, 4, mapper)
        elif t == 6 and n == 32:
            _map_subnet(buf, d, 16, mapper)
        elif t == 7 and n == 8:
            _map_range(buf, d, 4, mapper)
        elif t == 8 and n == 32:
            _map_range(buf, d, 16, mapper)
        elif t in (9, 10):
            buf[d:e] = bytes(n)
        elif t in (2, 3, 11):
            _ident(buf, d, e, mapper)
    elif np in (20, 130):                      # NAT-D (RFC 3947 §3.2)
        _natd(buf, p, e, mapper, spis, endpoints)
    elif np in (21, 131) and e - p >= 4:       # NAT-OA (RFC 3947 §5.2)
        t = buf[p]
        if t == 1 and e - p - 4 == 4:
            _map_addr(buf, p + 4, 4, mapper)
        elif t == 5 and e - p - 4 == 16:
            _map_addr(buf, p + 4, 16, mapper)
    elif np == 6 and e - p >= 1:               # CERT in the clear
        buf[p + 1:e] = bytes(e - p - 1)
    elif np == 14 and e - p >= 4:              # Mode Config attributes
        q = p + 4
        while q + 4 <= e:
            at = struct.unpack_from(">H", buf, q)[0]
            if at & 0x8000:                    # TV: 2-byte value in the length field
                q += 4
                continue
            ln = struct.unpack_from(">H", buf, q + 2)[0]
            if q + 4 + ln > e:
                return
            _cp_attr(buf, q, ln, _V1_CP, mapper)
            q += 4 + ln
