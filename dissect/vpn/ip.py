"""IPv4, IPv6 (with extension headers), UDP/TCP ports, TCP header and ICMP/ICMPv6 errors.

Every IP decoder returns the *network tuple* of docs/internals.md ("Network decode") as a plain
tuple (:data:`NetFields`; the per-frame paths unpack it); :class:`NetTuple` names the same fields
where the tuple leaves the decoder (the datagram an ICMP error quotes)::

    (ipver, src, dst, proto, sport, dport, l4off, end, frag_off, more_frags, ident, hdr_off)

- ``src``/``dst``: packed addresses (``bytes`` of 4 or 16);
- ``proto``: the upper-layer protocol.  IPv4: the protocol field.  IPv6: the next header after the
  extension-header chain (hop-by-hop, routing, destination options, mobility, HIP, shim6,
  experimental 253/254 are skipped; AH 51, ESP 50, No Next Header 59 and everything else end the
  chain).  For a fragment it is the fragment's protocol: the IPv4 protocol field, or the IPv6
  Fragment header's next header (the chain is not followed past a Fragment header, so that
  ``data[l4off:end]`` is always exactly the fragmentable part, ready for reassembly);
- ``sport``/``dport``: UDP (17) / TCP (6) ports when the packet is not a non-first fragment and the
  4 port bytes lie inside ``end``; else -1;
- ``l4off``: offset of the transport header (for a fragment: of the fragment data); ``end``: end of
  the IP payload (total length / payload length applied, so link padding is excluded, capped by
  ``limit``, i.e. by the captured length or the enclosing packet);
- ``frag_off``: fragment offset in bytes (field * 8); ``more_frags``: MF flag (``bool``).
  A packet is a fragment iff ``frag_off > 0 or more_frags``;
- ``ident``: IPv4 Identification (always, fragment or not; useful to spot mirror duplicates);
  IPv6: the Fragment header's 32-bit Identification, 0 when there is no Fragment header;
- ``hdr_off``: offset of the IP header.

Numbers: RFC 791 (IPv4), RFC 8200 (IPv6 and its extension headers), RFC 6275 (Mobility header
135), RFC 7401 (HIP 139), RFC 5533 (shim6 140), RFC 3692 (253/254), RFC 4302 (AH), RFC 4303 (ESP),
RFC 768 (UDP), RFC 9293 (TCP), RFC 792 / RFC 1191 (ICMP, next-hop MTU), RFC 4443 (ICMPv6).

Malformed input raises only :class:`DissectError`.  A total length larger than the captured
data is snaplen truncation, not an error: ``end`` is capped.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from .errors import DissectError
from .types import Buffer
from .number import Number

__all__ = [
    "NetTuple",
    "NetFields",
    "IpProto",
    "Port",
    "TcpFlag",
    "Icmp4Type",
    "Icmp6Type",
    "decode_ip",
    "decode_ipv4",
    "decode_ipv6",
    "decode_udp",
    "decode_tcp",
    "decode_icmp_error",
    "ports",
    "nat_fingerprint",
    "icmp_echo",
    "icmp_too_big",
    "icmp_unreachable_or_expired",
    "icmp_error_text",
    "is_fragment",
    "is_multicast",
    "is_ordinary_unicast",
    "IPV6_GENERIC_EXT",
]



class IpProto(Number):
    """IP protocol numbers (IANA "Assigned Internet Protocol Numbers")."""

    ICMP = 1  # RFC 792
    IPIP = 4  # IPv4 in IP, RFC 2003
    TCP = 6  # RFC 9293
    UDP = 17  # RFC 768
    IPV6 = 41  # IPv6 in IP, RFC 2473
    GRE = 47  # RFC 2784
    ESP = 50  # RFC 4303
    AH = 51  # RFC 4302
    ICMPV6 = 58  # RFC 4443


class Port(Number):
    """The UDP/TCP ports the analyzer knows a protocol by (IANA "Service Name and Transport
    Protocol Port Number Registry" unless noted)."""

    DNS = 53  # RFC 1035
    HTTPS = 443  # TLS SSL-VPNs
    IKE = 500  # RFC 7296 §2
    OPENVPN = 1194
    L2TP = 1701  # RFC 2661 §8.1
    PPTP = 1723  # RFC 2637 §1.3
    SONICWALL_SSLVPN = 4433  # SonicWall NetExtender / SMA default
    NAT_T = 4500  # RFC 3948 §2
    VXLAN = 4789  # RFC 7348
    FORTIGATE_SSLVPN = 10443  # FortiGate SSL-VPN default
    WIREGUARD = 51820  # wg(8) default ListenPort (no IANA port)
    DHCP_SERVER = 67  # BOOTP/DHCP server (RFC 2131 §4.1)
    DHCP_CLIENT = 68  # BOOTP/DHCP client


class TcpFlag(Number):
    """TCP header flags (RFC 9293 §3.1)."""

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10


class Icmp4Type(Number):
    """ICMP types (RFC 792; 12 RFC 1122)."""

    ECHO_REPLY = 0
    DEST_UNREACHABLE = 3
    SOURCE_QUENCH = 4
    REDIRECT = 5
    ECHO_REQUEST = 8
    TIME_EXCEEDED = 11
    PARAMETER_PROBLEM = 12


class Icmp6Type(Number):
    """ICMPv6 types (RFC 4443)."""

    DEST_UNREACHABLE = 1
    PACKET_TOO_BIG = 2
    TIME_EXCEEDED = 3
    PARAMETER_PROBLEM = 4
    ECHO_REQUEST = 128
    ECHO_REPLY = 129


class NetTuple(NamedTuple):
    """The network tuple (see the module docstring) with its field names: what leaves the decoder
    (the datagram an ICMP error quotes).  The per-frame decoders (``decode_ipv4``/``6``,
    :func:`dissect.vpn.link.decode_frame`) return the same fields as a plain tuple
    (:data:`NetFields`): a named tuple costs about 150 ns more per frame, which the decoder's
    per-frame paths unpack positionally anyway."""

    ipver: int
    src: bytes
    dst: bytes
    proto: int
    sport: int
    dport: int
    l4off: int
    end: int
    frag_off: int
    more_frags: bool
    ident: int
    hdr_off: int


#: the network tuple as the per-frame decoders return it (NetTuple's fields, unnamed)
NetFields = tuple[int, bytes, bytes, int, int, int, int, int, int, bool, int, int]


# --- precompiled structs -----------------------------------------------------------------------
# IPv4: version/IHL, (TOS), total length, identification, flags+fragment offset, (TTL), protocol,
# (checksum), source, destination.  RFC 791 section 3.1.
_IPV4 = struct.Struct("!BxHHHxB2x4s4s")
# IPv6: first byte (version nibble), (rest of traffic class / flow label), payload length,
# next header, (hop limit), source, destination.  RFC 8200 section 3.
_IPV6 = struct.Struct("!BxxxHBx16s16s")
_U16 = struct.Struct("!H")
_PORTS = struct.Struct("!HH")
# IPv6 Fragment header (RFC 8200 section 4.5): next header, reserved, offset(13)|res(2)|M(1), id.
_FRAG6 = struct.Struct("!BxHI")
# TCP (RFC 9293 section 3.1): ports, sequence, acknowledgment, data offset + flags.
_TCP = struct.Struct("!HHIIH")
_U32 = struct.Struct("!I")

_u16 = _U16.unpack_from
_ports = _PORTS.unpack_from
_ipv4 = _IPV4.unpack_from
_ipv6 = _IPV6.unpack_from
_frag6 = _FRAG6.unpack_from

# IPv6 extension headers that share the generic "next header, length in 8-octet units not
# counting the first 8" layout and are skipped: hop-by-hop 0, routing 43, destination options 60
# (RFC 8200), mobility 135 (RFC 6275), HIP 139 (RFC 7401), shim6 140 (RFC 5533), experimental
# 253/254 (RFC 3692 / RFC 4727).  AH 51 is reported, not skipped; ESP 50 is final.
IPV6_GENERIC_EXT = frozenset((0, 43, 60, 135, 139, 140, 253, 254))
_IPV6_FRAGMENT = 44
# Bound on the extension-header chain (no real packet comes close).
MAX_IPV6_EXT_HEADERS = 16

# plain ints for the per-packet paths (see dissect.vpn.number)
_PROTO_TCP = int(IpProto.TCP)
_PROTO_UDP = int(IpProto.UDP)

# ICMP error types.  ICMPv4 (RFC 792): 3 destination unreachable, 4 source quench, 5 redirect,
# 11 time exceeded, 12 parameter problem.  ICMPv6 (RFC 4443): 1 destination unreachable,
# 2 packet too big, 3 time exceeded, 4 parameter problem.
ICMP4_ERRORS = frozenset(int(t) for t in (
    Icmp4Type.DEST_UNREACHABLE, Icmp4Type.SOURCE_QUENCH, Icmp4Type.REDIRECT,
    Icmp4Type.TIME_EXCEEDED, Icmp4Type.PARAMETER_PROBLEM))
ICMP6_ERRORS = frozenset(int(t) for t in (
    Icmp6Type.DEST_UNREACHABLE, Icmp6Type.PACKET_TOO_BIG, Icmp6Type.TIME_EXCEEDED,
    Icmp6Type.PARAMETER_PROBLEM))
_PROTO_ICMP = int(IpProto.ICMP)
_PROTO_ICMPV6 = int(IpProto.ICMPV6)


def is_multicast(addr: bytes) -> bool:
    """IPv4 224.0.0.0/4 (RFC 5771) or IPv6 ff00::/8 (RFC 4291 §2.7), packed."""
    return (addr[0] & 0xF0) == 0xE0 if len(addr) == 4 else addr[0] == 0xFF


def is_ordinary_unicast(addr: bytes) -> bool:
    """A packed unicast address that can stand for a host beyond its link: not multicast or
    broadcast (IPv4 224/3, RFC 5771 / RFC 919; IPv6 ff00::/8), link-local (169.254/16, RFC 3927;
    fe80::/10 taken as fe80::/16, RFC 4291 §2.5.6), unspecified (0/8, ::) or loopback (127/8,
    ::1)."""
    if len(addr) == 4:
        a0 = addr[0]
        return not (a0 >= 224 or a0 == 127 or a0 == 0 or addr[:2] == b"\xa9\xfe")
    return not (addr[0] == 0xFF or addr[:2] == b"\xfe\x80" or addr == bytes(16)
                or addr == bytes(15) + b"\x01")


def is_fragment(t: NetFields) -> bool:
    """True when the network tuple ``t`` describes an IP fragment (first, middle or last)."""
    return t[8] > 0 or t[9]  # frag_off, more_frags


def decode_ipv4(data: Buffer, off: int, limit: int) -> NetFields:
    """Decode the IPv4 header at ``off``; ``limit`` bounds the packet (captured length or the
    enclosing packet's end).  Returns the network tuple."""
    if off + 20 > limit:
        raise DissectError("truncated IPv4 header", off)
    vihl, total_len, ident, ff, proto, src, dst = _ipv4(data, off)
    if vihl >> 4 != 4:
        raise DissectError(f"IP version {vihl >> 4} in an IPv4 header", off)
    hlen = (vihl & 0x0F) << 2
    if hlen < 20:
        raise DissectError(f"IPv4 header length {hlen} < 20", off)
    l4off = off + hlen
    if l4off > limit:
        raise DissectError("truncated IPv4 options", off)
    if total_len == 0:
        # Total length 0: a packet handed to the NIC for TCP segmentation offload, captured on
        # the sending host before the NIC fills it in.  Use the captured length (as Wireshark).
        end = limit
    else:
        if total_len < hlen:
            raise DissectError(f"IPv4 total length {total_len} < header length {hlen}", off + 2)
        end = off + total_len
        if end > limit:
            end = limit  # truncated by the snaplen: not an error
    frag_off = (ff & 0x1FFF) << 3
    more = (ff & 0x2000) != 0
    if (proto == _PROTO_UDP or proto == _PROTO_TCP) and frag_off == 0 and l4off + 4 <= end:
        sport, dport = _ports(data, l4off)
    else:
        sport = dport = -1
    return (4, src, dst, proto, sport, dport, l4off, end, frag_off, more, ident, off)


def decode_ipv6(data: Buffer, off: int, limit: int) -> NetFields:
    """Decode the IPv6 header at ``off`` and walk its extension-header chain."""
    if off + 40 > limit:
        raise DissectError("truncated IPv6 header", off)
    b0, plen, nh, src, dst = _ipv6(data, off)
    if b0 >> 4 != 6:
        raise DissectError(f"IP version {b0 >> 4} in an IPv6 header", off)
    p = off + 40
    if plen == 0:
        # Jumbogram (RFC 2675) or a TSO/LRO packet: use what was captured.
        end = limit
    else:
        end = p + plen
        if end > limit:
            end = limit
    frag_off = 0
    more = False
    ident = 0
    count = 0
    while True:
        if nh in IPV6_GENERIC_EXT:
            count += 1
            if count > MAX_IPV6_EXT_HEADERS:
                raise DissectError("too many IPv6 extension headers", p)
            if p + 8 > end:
                raise DissectError(f"truncated IPv6 extension header {nh}", p)
            hend = p + ((data[p + 1] + 1) << 3)
            if hend > end:
                raise DissectError(f"truncated IPv6 extension header {nh}", p)
            nh = data[p]
            p = hend
            continue
        if nh == _IPV6_FRAGMENT:
            if p + 8 > end:
                raise DissectError("truncated IPv6 fragment header", p)
            nh, offm, ident = _frag6(data, p)
            frag_off = offm & 0xFFF8
            more = (offm & 1) == 1
            p += 8
        break
    if (nh == _PROTO_UDP or nh == _PROTO_TCP) and frag_off == 0 and p + 4 <= end:
        sport, dport = _ports(data, p)
    else:
        sport = dport = -1
    return (6, src, dst, nh, sport, dport, p, end, frag_off, more, ident, off)


def decode_ip(data: Buffer, off: int, ipver: int = 0, limit: int | None = None) -> NetFields:
    """Decode an IP header at ``off`` (e.g. the inner header of IP-in-IP, proto 4 -> ipver 4,
    proto 41 -> ipver 6).  ``ipver`` 0 means: decide by the version nibble.  ``limit`` defaults
    to ``len(data)``; pass the outer tuple's ``end`` to keep the inner packet inside the outer.
    Returns the network tuple (offsets into ``data``)."""
    if limit is None or limit > len(data):
        limit = len(data)
    if off < 0:
        raise DissectError("negative IP header offset", off)
    if ipver == 0:
        if off >= limit:
            raise DissectError("truncated IP header", off)
        ipver = data[off] >> 4
    if ipver == 4:
        return decode_ipv4(data, off, limit)
    if ipver == 6:
        return decode_ipv6(data, off, limit)
    raise DissectError(f"IP version {ipver} is neither 4 nor 6", off)


def decode_udp(data: Buffer, off: int, end: int) -> tuple[int, int, int]:
    """Decode the UDP header at ``off`` (``end`` = the IP payload end, e.g. of a reassembled
    datagram).  Returns ``(sport, dport, payload_off)``.  The UDP length field is not applied:
    the IP length is authoritative (and the field is 0 in jumbograms)."""
    if end > len(data):
        end = len(data)
    if off < 0 or off + 8 > end:
        raise DissectError("truncated UDP header", off)
    sport, dport = _ports(data, off)
    return (sport, dport, off + 8)


def decode_tcp(data: Buffer, off: int, end: int) -> tuple[int, int, int, int, int, int]:
    """Decode the TCP header at ``off`` (``end`` = the IP payload end).

    Returns ``(sport, dport, seq, ack, flags, payload_off)``; ``flags`` is the 12 bits after the
    data offset (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80,
    AE 0x100), ``payload_off`` honours the data offset (options skipped)."""
    if end > len(data):
        end = len(data)
    if off < 0 or off + 20 > end:
        raise DissectError("truncated TCP header", off)
    sport, dport, seq, ack, word = _TCP.unpack_from(data, off)
    hlen = (word >> 12) << 2
    if hlen < 20:
        raise DissectError(f"TCP data offset {hlen} < 20", off + 12)
    if off + hlen > end:
        raise DissectError(f"truncated TCP options (data offset {hlen})", off + 12)
    return (sport, dport, seq, ack, word & 0x0FFF, off + hlen)


# Destination unreachable codes as operators read them: ICMP type 3 (RFC 792; 9/10 RFC 1122;
# 13 RFC 1812) and ICMPv6 type 1 (RFC 4443 §3.1).
_UNREACHABLE4 = {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable",
                 3: "port unreachable", 9: "network administratively prohibited",
                 10: "host administratively prohibited",
                 13: "communication administratively prohibited"}
_UNREACHABLE6 = {0: "no route to destination", 1: "administratively prohibited",
                 3: "address unreachable", 4: "port unreachable",
                 5: "source address failed ingress/egress policy",
                 6: "reject route to destination"}
_FRAG_NEEDED = 4  # ICMP type 3 code 4 (RFC 1191)


def ports(data: Buffer, off: int) -> tuple[int, int]:
    """``(source port, destination port)`` of the TCP (RFC 9293 §3.1) or UDP (RFC 768) header
    at ``off`` (the caller checked that 4 bytes are there)."""
    sport, dport = _PORTS.unpack_from(data, off)
    return sport, dport


#: payload bytes a NAT fingerprint covers
FINGERPRINT_BYTES = 32


def nat_fingerprint(data: Buffer, net: NetFields) -> int:
    """A number that is the same for one IP packet wherever it is captured, before or after a
    NAT (which rewrites addresses, ports, checksums and the ICMP query identifier, RFC 3022
    §4.1-4.3), and that differs between packets of one conversation: the IPv4 Identification
    (high bits; 0 for IPv6) and a CRC-32 of the protocol and of bytes a NAT leaves alone — TCP
    sequence and acknowledgement numbers, flags and the first :data:`FINGERPRINT_BYTES` of
    payload; UDP length and payload; ICMP type, code, sequence number and payload; anything
    else its first bytes."""
    ipver, _src, _dst, proto, _sp, _dp, l4, end = net[:8]
    ident = net[10] if ipver == 4 else 0
    end = min(end, len(data))
    n = FINGERPRINT_BYTES
    if proto == 6 and l4 + 20 <= end:
        hl = (data[l4 + 12] >> 4) * 4
        parts = bytes(data[l4 + 4:l4 + 14]) + bytes(data[l4 + hl:min(end, l4 + hl + n)])
    elif proto == 17 and l4 + 8 <= end:
        parts = bytes(data[l4 + 4:l4 + 6]) + bytes(data[l4 + 8:min(end, l4 + 8 + n)])
    elif proto in (1, 58) and l4 + 8 <= end:
        parts = bytes(data[l4:l4 + 2]) + bytes(data[l4 + 6:min(end, l4 + 8 + n)])
    else:
        parts = bytes(data[l4:min(end, l4 + n)])
    crc: int = zlib.crc32(parts, proto)
    return (ident << 32) | crc


def icmp_echo(data: Buffer, off: int) -> tuple[int, int, int]:
    """``(type, identifier, sequence number)`` of the ICMP (RFC 792) / ICMPv6 (RFC 4443 §4)
    message at ``off`` (8 bytes checked by the caller); identifier and sequence mean something
    for echo requests and replies only."""
    ident, seq = _PORTS.unpack_from(data, off + 4)
    return data[off], ident, seq


def icmp_too_big(ipver: int, icmp_type: int, icmp_code: int) -> bool:
    """ICMP "fragmentation needed and DF set" (type 3 code 4, RFC 1191) or ICMPv6 Packet Too Big
    (type 2, RFC 8201): the path MTU signals."""
    if ipver == 4:
        return icmp_type == Icmp4Type.DEST_UNREACHABLE and icmp_code == _FRAG_NEEDED
    return icmp_type == Icmp6Type.PACKET_TOO_BIG


def icmp_unreachable_or_expired(ipver: int, icmp_type: int) -> bool:
    """Destination unreachable or time exceeded (either version)."""
    if ipver == 4:
        return icmp_type in (Icmp4Type.DEST_UNREACHABLE, Icmp4Type.TIME_EXCEEDED)
    return icmp_type in (Icmp6Type.DEST_UNREACHABLE, Icmp6Type.TIME_EXCEEDED)


def icmp_error_text(ipver: int, icmp_type: int, icmp_code: int) -> str:
    """What an ICMP / ICMPv6 error says, in words ("port unreachable", "time exceeded")."""
    if ipver == 4:
        if icmp_type == Icmp4Type.DEST_UNREACHABLE:
            return _UNREACHABLE4.get(icmp_code, f"unreachable code {icmp_code}")
        if icmp_type == Icmp4Type.TIME_EXCEEDED:
            return "time exceeded"
        return f"ICMP type {icmp_type} code {icmp_code}"
    if icmp_type == Icmp6Type.DEST_UNREACHABLE:
        return _UNREACHABLE6.get(icmp_code, f"unreachable code {icmp_code}")
    if icmp_type == Icmp6Type.TIME_EXCEEDED:
        return "time exceeded"
    return f"ICMPv6 type {icmp_type} code {icmp_code}"


def tcp_mss(data: Buffer, off: int, poff: int) -> int | None:
    """The Maximum Segment Size option (RFC 9293 §3.2, kind 2) among the TCP options
    ``data[off + 20:poff]`` (``poff`` from :func:`decode_tcp`), or None.  A malformed option
    list ends the search (no error: the segment itself was decoded)."""
    p = off + 20
    while p < poff:
        kind = data[p]
        if kind == 0:
            return None
        if kind == 1:
            p += 1
            continue
        if p + 1 >= poff:
            return None
        ln = data[p + 1]
        if ln < 2 or p + ln > poff:
            return None
        if kind == 2 and ln == 4:
            return int((data[p + 2] << 8) | data[p + 3])
        p += ln
    return None


def decode_icmp_error(data: Buffer, l4off: int, end: int,
                      ipver: int) -> tuple[int, int, int | None, NetTuple | None] | None:
    """Decode an ICMP (ipver 4) or ICMPv6 (ipver 6) message at ``l4off`` (``end`` = IP payload end).

    Returns ``None`` when it is not an error message, else ``(icmp_type, icmp_code, mtu, quoted)``:

    - ``mtu``: next-hop MTU of ICMPv4 type 3 code 4 "fragmentation needed and DF set" (RFC 1191,
      16 bits at offset 6) or the MTU of ICMPv6 type 2 "packet too big" (RFC 4443, 32 bits at
      offset 4); else 0;
    - ``quoted``: the invoking datagram decoded like a frame (same network tuple shape) with
      offsets into ``data`` (the quote starts at ``l4off + 8``) and bounded by ``end``; the quoted
      total length is usually larger than the quote, so its ``end`` is capped.  Ports are present
      when 4 bytes of the quoted transport header are.  ``None`` when the quote is too short for
      an IP header or is not a decodable IP header (the type/code/MTU are still reported).
    """
    if end > len(data):
        end = len(data)
    if l4off < 0 or l4off + 2 > end:
        raise DissectError("truncated ICMP header", l4off)
    itype = data[l4off]
    code = data[l4off + 1]
    if ipver == 4:
        if itype not in ICMP4_ERRORS:
            return None
    elif ipver == 6:
        if itype not in ICMP6_ERRORS:
            return None
    else:
        raise DissectError(f"ICMP with IP version {ipver}", l4off)
    if l4off + 8 > end:
        raise DissectError("truncated ICMP error header", l4off)
    mtu = 0
    if ipver == 4:
        if itype == 3 and code == 4:
            mtu = _u16(data, l4off + 6)[0]
    elif itype == 2:
        mtu = _U32.unpack_from(data, l4off + 4)[0]
    try:
        quoted: NetTuple | None = NetTuple(*decode_ip(data, l4off + 8, ipver, end))
    except DissectError:
        quoted = None
    return (itype, code, mtu, quoted)
