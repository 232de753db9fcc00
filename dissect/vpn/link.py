"""Link layers and mirror wrappers: frame bytes -> the network tuple of the first real IP header.

``decode_frame(linktype, data)`` returns the network tuple of :mod:`dissect.vpn.ip` (a plain
tuple, :data:`~dissect.vpn.ip.NetFields`; :class:`~dissect.vpn.ip.NetTuple` names its fields)::

    (ipver, src, dst, proto, sport, dport, l4off, end, frag_off, more_frags, ident, hdr_off)

for the outermost IP header that is not a mirror wrapper, or ``None`` for a frame that carries no
IP (ARP, 802.3 length-field frames with LLC/SNAP such as STP, LLDP, PPPoE discovery, non-IP PPP,
MPLS payloads that are neither IP nor a control-word Ethernet pseudowire, SLL netlink ...).
Malformed or truncated headers raise :class:`DissectError` (reason, offset into ``data``).
A linktype not in :data:`SUPPORTED_LINKTYPES` raises ``DissectError`` too: callers should check
the linktype once per interface rather than per frame.

Link types (numbers from the tcpdump.org LINKTYPE_ list):

- 1 ETHERNET: Ethernet II.  A type/length field < 0x0600 is an IEEE 802.3 length (LLC follows):
  no IP, ``None``.
- 0 NULL: 4-byte address family in the *capturing host's* byte order; 108 LOOP: the same in
  network byte order.  Both byte orders are accepted for both: AF_INET = 2, AF_INET6 = 24
  (NetBSD/OpenBSD/BSD/OS), 28 (FreeBSD), 30 (Darwin).  Another family: ``None``.
- 101 RAW, and 12 / 14 (DLT_RAW on most platforms / on OpenBSD, found in old files): IPv4 or
  IPv6 by the version nibble.  Under 12 / 14 a first nibble of 0 is tried as a NULL/LOOP header
  (DLT_LOOP is 12 on OpenBSD).  228 IPV4 and 229 IPV6: that version only.
- 113 LINUX_SLL (16-byte header, protocol at offset 14) and 276 LINUX_SLL2 (20-byte header,
  protocol at offset 0).  ARPHRD_NETLINK (824) frames carry no IP; protocol 0x6558 (transparent
  Ethernet bridging on ARPHRD_IPGRE) is followed by Ethernet.

Inside a link layer (ethertypes, IEEE registry):

- 0x8100 802.1Q, 0x88A8 802.1ad, 0x9100 / 0x9200 legacy QinQ: 4-byte tags, any depth.
- 0x8847 / 0x8848 MPLS (RFC 3032): labels are popped up to the bottom-of-stack bit; the payload
  is then guessed by its first nibble: 4 IPv4, 6 IPv6.  A payload whose first 16 bits are 0x0000
  is taken as the Ethernet pseudowire control word (RFC 4385 / RFC 4448: nibble 0, reserved 0,
  16-bit sequence) followed by an Ethernet frame.  Anything else: ``None``.  An Ethernet
  pseudowire *without* control word is not recognised (its destination MAC would be read as the
  payload's first nibble): a known simplification.
- 0x8864 PPPoE session (RFC 2516, 6-byte header) with PPP protocol 0x0021 IPv4 / 0x0057 IPv6;
  other PPP protocols (LCP, IPCP ...): ``None``.

Mirror wrappers are peeled (the endpoints reported are those of the mirrored frame):

- GRE (IP protocol 47, RFC 2784 / RFC 2890, version 0, no routing) with protocol
  0x88BE: ERSPAN type II when the GRE sequence bit is set (8-byte ERSPAN header, then Ethernet),
  type I when it is not (Ethernet right after GRE);
  0x22EB: ERSPAN type III (12-byte header; when its O flag is set an 8-byte platform-specific
  subheader follows; frame type 0 = Ethernet, 2 = IP; other frame types: ``None``);
  0x6558: transparent Ethernet bridging.
  (ERSPAN layouts: draft-foschiano-erspan-03.)
- VXLAN (RFC 7348): UDP destination port 4789 with the I flag set in the 8-byte VXLAN header,
  then Ethernet.  Without the I flag it is ordinary UDP.
- A fragmented wrapper is not peeled (the outer tuple is returned).  The inner packet is bounded
  by the outer IP packet's ``end``.  At most :data:`MAX_ENCAP` wrappers and :data:`MAX_LAYERS`
  headers in all are peeled; deeper nesting raises ``DissectError``.

Any other GRE (PPTP's enhanced GRE version 1 with protocol 0x880B, GRE tunnels carrying IP,
GRE with routing) is traffic: the outer header is returned with proto 47.  IP-in-IP (4) and
IPv6-in-IP (41) are traffic too; :func:`dissect.vpn.ip.decode_ip` decodes the inner header.

Speed: ``decode_frame`` first tries fixed-offset shortcuts (one ``unpack_from`` each) for the
frames that make up nearly all of a mirror-port capture: Ethernet II, optionally one 802.1Q tag,
then IPv4 without options and not fragmented, or IPv6 without extension headers, carrying UDP
(except VXLAN), TCP or ESP.  The general path peels everything else; inside it a plain IPv4
header with UDP/TCP/ESP is again read with one ``unpack_from``.  Both paths return identical
tuples (the tests compare them on every fuzzed frame).
"""

from __future__ import annotations

import struct
from struct import error as StructError

from .errors import DissectError
from .types import Buffer
from .ip import IpProto, NetFields, Port, decode_ip, decode_ipv4, decode_ipv6

__all__ = [
    "COOKED_LINKTYPES",
    "PACKET_TYPES",
    "cooked_header",
    "cooked_info",
    "TUNNEL_HATYPES",
    "decode_frame",
    "frame_esp_spi",
    "decode_ip",
    "linktype_name",
    "SUPPORTED_LINKTYPES",
    "MAX_ENCAP",
    "MAX_LAYERS",
]

# LINKTYPE_ values (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_DLT_RAW_12 = 12  # DLT_RAW on most platforms (LOOP on OpenBSD)
LINKTYPE_DLT_RAW_14 = 14  # DLT_RAW on OpenBSD
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

SUPPORTED_LINKTYPES = frozenset(
    (
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_DLT_RAW_12,
        LINKTYPE_DLT_RAW_14,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    )
)

# LINKTYPE_ names (tcpdump.org) for reports; the supported ones plus common unsupported ones.
LINKTYPE_NAMES = {
    LINKTYPE_NULL: "NULL",
    LINKTYPE_ETHERNET: "ETHERNET",
    9: "PPP",
    LINKTYPE_DLT_RAW_12: "RAW (DLT 12)",
    LINKTYPE_DLT_RAW_14: "RAW (DLT 14)",
    50: "PPP_HDLC",
    LINKTYPE_RAW: "RAW",
    104: "C_HDLC",
    105: "IEEE802_11",
    LINKTYPE_LOOP: "LOOP",
    LINKTYPE_LINUX_SLL: "LINUX_SLL",
    127: "IEEE802_11_RADIOTAP",
    LINKTYPE_IPV4: "IPV4",
    LINKTYPE_IPV6: "IPV6",
    239: "NFLOG",
    LINKTYPE_LINUX_SLL2: "LINUX_SLL2",
}


def linktype_name(linktype: int) -> str:
    """The LINKTYPE_ name of ``linktype`` (``"LINKTYPE <n>"`` when not in the table)."""
    return LINKTYPE_NAMES.get(linktype, f"LINKTYPE {linktype}")


# Ethertypes (IEEE 802 numbers registry / IANA ieee-802-numbers).
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
ETH_MPLS_UC = 0x8847
ETH_MPLS_MC = 0x8848
ETH_PPPOE_SESSION = 0x8864
ETH_TEB = 0x6558  # transparent Ethernet bridging (GRE protocol type, RFC 1701)
ETH_MIN_TYPE = 0x0600  # IEEE 802.3: a type/length field below 1536 is a length
GRE_ERSPAN_I_II = 0x88BE
GRE_ERSPAN_III = 0x22EB
PPP_IPV4 = 0x0021  # RFC 1332
PPP_IPV6 = 0x0057  # RFC 5072
ARPHRD_NETLINK = 824
# plain ints for the per-frame walk (dissect.vpn.number)
VXLAN_PORT = int(Port.VXLAN)
IPPROTO_GRE = int(IpProto.GRE)
IPPROTO_UDP = int(IpProto.UDP)
IPPROTO_TCP = int(IpProto.TCP)
IPPROTO_ESP = int(IpProto.ESP)
NAT_T_PORT = int(Port.NAT_T)
# ESP header: SPI + sequence number (RFC 4303 §2); ESP in UDP: behind the 8-byte UDP header
_ESP_MIN = 8
_UDP_HEADER = 8
_UDP_ESP_MIN = _UDP_HEADER + _ESP_MIN
# BSD address families in NULL/LOOP headers (tcpdump.org LINKTYPE_NULL).
AF_INET = 2
AF_INET6 = frozenset((24, 28, 30))

# Internal "ethertypes" of the peeling loop (outside the 16-bit range).
_ETHER = 0x10000  # an Ethernet header starts here
_RAWIP = 0x10001  # an IP header, version by nibble
_NONE = 0x10002  # no IP: decode_frame returns None

MAX_ENCAP = 8  # mirror wrappers (GRE/ERSPAN/TEB/VXLAN) peeled at most
MAX_LAYERS = 32  # headers of any kind (Ethernet, tags, labels, PPPoE, IP, wrappers)

_u16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I")
_GRE = struct.Struct("!HH").unpack_from
_SLL = struct.Struct("!2xH10xH").unpack_from  # ARPHRD type, protocol
_SLL2 = struct.Struct("!H6xH").unpack_from  # protocol, ARPHRD type
_SLL_PKTTYPE = struct.Struct("!H").unpack_from  # SLL: packet type at 0
_SLL2_IF = struct.Struct("!4xI2xB").unpack_from  # SLL2: interface index at 4, packet type at 10

#: Linux cooked captures (``tcpdump -i any``): SLL has the packet type, SLL2 also the index of
#: the interface the packet was captured on
COOKED_LINKTYPES = frozenset((113, 276))
#: packet types of SLL / SLL2 (linux/if_packet.h PACKET_*): "host" = addressed to this host
#: (incoming), "outgoing" = sent by this host
PACKET_TYPES = {0: "host", 1: "broadcast", 2: "multicast", 3: "otherhost", 4: "outgoing",
                5: "loopback", 6: "user", 7: "kernel"}


def cooked_info(linktype: int, data: Buffer, off: int = 0,
                end: int | None = None) -> tuple[int | None, int] | None:
    """``(interface index or None, packet type)`` of a Linux cooked frame ``data[off:end]``
    (SLL has no interface index), or None for another link type or a frame too short for its
    header."""
    n = (len(data) if end is None else end) - off
    if linktype == 276:
        return _SLL2_IF(data, off) if n >= 20 else None
    if linktype == 113:
        return (None, _SLL_PKTTYPE(data, off)[0]) if n >= 16 else None
    return None


#: ARPHRD_* types (linux/if_arp.h) of interfaces that carry IP without a link header of their
#: own: tunnels (TUN devices such as OpenVPN's tun0, strongSwan's ipsec0 and wireguard-go use
#: ARPHRD_NONE), PPP, IP-in-IP, SIT, GRE, VTI
TUNNEL_HATYPES = frozenset((0xFFFE, 512, 768, 769, 776, 778, 823))
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
_SLL_HEAD = struct.Struct("!HH").unpack_from  # SLL: packet type, ARPHRD type
_SLL2_HEAD = struct.Struct("!4xIHB").unpack_from  # SLL2: interface index, ARPHRD, packet type


def cooked_header(linktype: int, data: Buffer) -> tuple[int, int, int] | None:
    """``(interface index, ARPHRD type, packet type)`` of a Linux cooked frame (SLL has no
    interface index: -1), or None for another link type or a frame too short for its header."""
    n = len(data)
    if linktype == 276:
        return _SLL2_HEAD(data, 0) if n >= 20 else None
    if linktype == 113:
        if n < 16:
            return None
        pkt, hatype = _SLL_HEAD(data, 0)
        return -1, hatype, pkt
    return None

# Fast path: Ethernet II, ethertype, IPv4 version/IHL, total length, identification,
# flags/fragment offset, protocol, source, destination, the two 16-bit words after a 20-byte
# IPv4 header (UDP/TCP ports; for ESP the SPI, ignored).
_FAST = struct.Struct("!12xHBxHHHxB2x4s4sHH").unpack_from
# Ethernet II + IPv6: first byte, payload length, next header, source, destination, 2 words.
_FAST6 = struct.Struct("!14xBxxxHBx16s16sHH").unpack_from
# The same from the IPv4 header on, for the other link layers and inner frames.
_FAST_IP = struct.Struct("!BxHHHxB2x4s4sHH").unpack_from


def decode_frame(linktype: int, data: Buffer) -> NetFields | None:
    """Decode one captured frame; see the module docstring.  ``data`` is bytes-like."""
    # Fast path: Ethernet II (optionally one 802.1Q tag) + IPv4 without options, not
    # fragmented (DF allowed), carrying UDP (not VXLAN), TCP or ESP; or Ethernet II + IPv6
    # without extension headers carrying the same.  Else the general path.
    if linktype == 1:
        try:
            et, vihl, tl, ident, ff, proto, src, dst, sport, dport = _FAST(data)
        except StructError:  # shorter than 38 bytes: the general path explains why
            return _decode_general(linktype, data)
        if et == 0x0800 and vihl == 0x45 and not ff & 0x3FFF and tl >= 24:
            end = tl + 14
            n = len(data)
            if end > n:
                end = n
            if proto == 17:
                if dport != 4789:  # VXLAN: peel in the general path
                    return (4, src, dst, 17, sport, dport, 34, end, 0, False, ident, 14)
            elif proto == 50:
                return (4, src, dst, 50, -1, -1, 34, end, 0, False, ident, 14)
            elif proto == 6:
                return (4, src, dst, 6, sport, dport, 34, end, 0, False, ident, 14)
        elif et == 0x8100:
            # Same with one 802.1Q tag (mirror ports are often trunks): the same layout 4 bytes on.
            try:
                et, vihl, tl, ident, ff, proto, src, dst, sport, dport = _FAST(data, 4)
            except StructError:
                return _decode_general(linktype, data)
            if et == 0x0800 and vihl == 0x45 and not ff & 0x3FFF and tl >= 24:
                end = tl + 18
                n = len(data)
                if end > n:
                    end = n
                if proto == 17:
                    if dport != 4789:
                        return (4, src, dst, 17, sport, dport, 38, end, 0, False, ident, 18)
                elif proto == 50:
                    return (4, src, dst, 50, -1, -1, 38, end, 0, False, ident, 18)
                elif proto == 6:
                    return (4, src, dst, 6, sport, dport, 38, end, 0, False, ident, 18)
        elif et == 0x86DD:
            # IPv6 whose first next header is UDP (not VXLAN), ESP or TCP, payload length set.
            try:
                b0, plen, nh, src, dst, sport, dport = _FAST6(data)
            except StructError:
                return _decode_general(linktype, data)
            if b0 & 0xF0 == 0x60 and plen >= 4:
                end = plen + 54
                n = len(data)
                if end > n:
                    end = n
                if nh == 17:
                    if dport != 4789:
                        return (6, src, dst, 17, sport, dport, 54, end, 0, False, 0, 14)
                elif nh == 50:
                    return (6, src, dst, 50, -1, -1, 54, end, 0, False, 0, 14)
                elif nh == 6:
                    return (6, src, dst, 6, sport, dport, 54, end, 0, False, 0, 14)
    return _decode_general(linktype, data)


def _null_family(data: Buffer, off: int, n: int) -> int:
    """The ethertype-like value for a NULL/LOOP 4-byte address family header at ``off``."""
    if off + 4 > n:
        raise DissectError("truncated NULL/LOOP header", off)
    b0, b1, b2, b3 = data[off], data[off + 1], data[off + 2], data[off + 3]
    if b1 == 0 and b2 == 0 and b3 == 0:
        fam = b0  # little-endian host
    elif b0 == 0 and b1 == 0 and b2 == 0:
        fam = b3  # big-endian host, or LOOP
    else:
        return _NONE
    if fam == AF_INET:
        return ETH_IPV4
    if fam in AF_INET6:
        return ETH_IPV6
    return _NONE


def _decode_general(linktype: int, data: Buffer) -> NetFields | None:
    n = len(data)
    off = 0
    if linktype == LINKTYPE_ETHERNET:
        et = _ETHER
    elif linktype == LINKTYPE_RAW or linktype == LINKTYPE_DLT_RAW_12 or linktype == LINKTYPE_DLT_RAW_14:
        if n == 0:
            raise DissectError("empty raw IP frame", 0)
        nib = data[0] >> 4
        if nib == 4:
            et = ETH_IPV4
        elif nib == 6:
            et = ETH_IPV6
        elif nib == 0 and linktype != LINKTYPE_RAW:
            et = _null_family(data, 0, n)
            off = 4
        else:
            raise DissectError(f"raw IP frame with IP version {nib}", 0)
    elif linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:
        et = _null_family(data, 0, n)
        off = 4
    elif linktype == LINKTYPE_LINUX_SLL:
        if n < 16:
            raise DissectError("truncated Linux SLL header", 0)
        hatype, et = _SLL(data, 0)
        if hatype == ARPHRD_NETLINK:
            return None
        off = 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if n < 20:
            raise DissectError("truncated Linux SLL2 header", 0)
        et, hatype = _SLL2(data, 0)
        if hatype == ARPHRD_NETLINK:
            return None
        off = 20
    elif linktype == LINKTYPE_IPV4:
        et = ETH_IPV4
    elif linktype == LINKTYPE_IPV6:
        et = ETH_IPV6
    else:
        raise DissectError(f"unsupported linktype {linktype}", 0)
    if et == ETH_TEB:
        et = _ETHER
    return _peel(data, et, off, n)


def _peel(data: Buffer, et: int, off: int, limit: int) -> NetFields | None:
    """The peeling loop: ``et`` says what starts at ``off``; ``limit`` bounds it."""
    layers = 0
    encaps = 0
    while True:
        layers += 1
        if layers > MAX_LAYERS:
            raise DissectError("too many nested headers", off)
        if et == ETH_IPV4:
            # Plain IPv4 (no options, not a fragment) with UDP (not VXLAN), TCP or ESP, and the
            # 4 port bytes inside the packet: the result needs no further look.  Else in full.
            try:
                vihl, tl, ident, ff, proto, src, dst, sport, dport = _FAST_IP(data, off)
            except StructError:
                vihl = 0
            if vihl == 0x45 and not ff & 0x3FFF and tl >= 24:
                end = off + tl
                if end > limit:
                    end = limit
                if end >= off + 24:
                    if proto == 17:
                        t = (4, src, dst, 17, sport, dport, off + 20, end, 0, False, ident, off)
                        if dport != 4789:
                            return t
                    elif proto == 50:
                        return (4, src, dst, 50, -1, -1, off + 20, end, 0, False, ident, off)
                    elif proto == 6:
                        return (4, src, dst, 6, sport, dport, off + 20, end, 0, False, ident, off)
                    else:  # GRE (maybe a mirror wrapper) and the rest
                        t = (4, src, dst, proto, -1, -1, off + 20, end, 0, False, ident, off)
                else:
                    t = decode_ipv4(data, off, limit)
            else:
                t = decode_ipv4(data, off, limit)
        elif et == ETH_IPV6:
            t = decode_ipv6(data, off, limit)
        elif et == _ETHER:
            if off + 14 > limit:
                raise DissectError("truncated Ethernet header", off)
            et = _u16(data, off + 12)[0]
            off += 14
            if et < ETH_MIN_TYPE:
                return None  # 802.3 length field: LLC/SNAP (STP, CDP ...)
            continue
        elif et in ETH_VLAN:
            if off + 4 > limit:
                raise DissectError("truncated VLAN tag", off)
            et = _u16(data, off + 2)[0]
            off += 4
            if et < ETH_MIN_TYPE:
                return None
            continue
        elif et == ETH_MPLS_UC or et == ETH_MPLS_MC:
            while True:
                if off + 4 > limit:
                    raise DissectError("truncated MPLS label stack", off)
                bos = data[off + 2] & 1
                off += 4
                if bos:
                    break
                layers += 1
                if layers > MAX_LAYERS:
                    raise DissectError("too many nested headers", off)
            if off >= limit:
                raise DissectError("empty MPLS payload", off)
            nib = data[off] >> 4
            if nib == 4:
                et = ETH_IPV4
            elif nib == 6:
                et = ETH_IPV6
            elif off + 2 <= limit and data[off] == 0 and data[off + 1] == 0:
                et = _ETHER  # Ethernet pseudowire control word (RFC 4448 section 3)
                off += 4
            else:
                return None
            continue
        elif et == ETH_PPPOE_SESSION:
            if off + 8 > limit:
                raise DissectError("truncated PPPoE session header", off)
            ppp = _u16(data, off + 6)[0]
            off += 8
            if ppp == PPP_IPV4:
                et = ETH_IPV4
            elif ppp == PPP_IPV6:
                et = ETH_IPV6
            else:
                return None
            continue
        elif et == _RAWIP:
            if off >= limit:
                raise DissectError("empty IP packet", off)
            nib = data[off] >> 4
            if nib == 4:
                et = ETH_IPV4
            elif nib == 6:
                et = ETH_IPV6
            else:
                raise DissectError(f"IP version {nib} is neither 4 nor 6", off)
            continue
        else:
            return None  # ARP, LLDP, PPPoE discovery, _NONE, unknown ethertypes ...

        # An IP header: is it a mirror wrapper to peel?
        proto = t[3]
        if proto == IPPROTO_GRE:
            if t[8] or t[9]:
                return t
            p = t[6]
            end = t[7]
            if p + 4 > end:
                return t
            flags, gproto = _GRE(data, p)
            # Version 0 only (version 1 is PPTP's enhanced GRE, RFC 2637), no routing (RFC 1701).
            if flags & 0x4007:
                return t
            h = p + 4
            if flags & 0x8000:
                h += 4  # checksum + reserved1
            if flags & 0x2000:
                h += 4  # key (RFC 2890)
            if flags & 0x1000:
                h += 4  # sequence number (RFC 2890)
            if gproto == GRE_ERSPAN_I_II:
                if flags & 0x1000:
                    h += 8  # ERSPAN type II header; type I has none
                et = _ETHER
            elif gproto == GRE_ERSPAN_III:
                if h + 12 > end:
                    raise DissectError("truncated ERSPAN type III header", h)
                ft = (data[h + 10] >> 2) & 0x1F
                if data[h + 11] & 1:
                    h += 20  # O flag: 8-byte platform-specific subheader
                else:
                    h += 12
                et = _ETHER if ft == 0 else _RAWIP if ft == 2 else _NONE
            elif gproto == ETH_TEB:
                et = _ETHER
            else:
                return t  # GRE tunnel traffic
            off = h
        elif proto == IPPROTO_UDP and t[5] == VXLAN_PORT and not t[9]:
            v = t[6] + 8
            end = t[7]
            if v + 8 > end or not data[v] & 0x08:
                return t
            off = v + 8
            et = _ETHER
        else:
            return t
        encaps += 1
        if encaps > MAX_ENCAP:
            raise DissectError("too many nested mirror encapsulations", off)
        limit = end


def frame_esp_spi(linktype: int, data: Buffer, any_udp: bool = False) -> int | None:
    """The SPI of a frame's ESP packet (IP protocol 50, or UDP 4500 whose first word is not the
    zero non-ESP marker, RFC 3948 §2.2), else None (also for a frame that does not decode).
    ``any_udp``: the first word of a UDP datagram on any port (custom NAT-T ports; the caller
    knows which SPIs it looks for)."""
    try:
        d = decode_frame(linktype, data)
    except DissectError:
        return None
    if d is None:
        return None
    proto, sport, dport, l4off, end = d[3:8]
    if proto == IPPROTO_ESP and end - l4off >= _ESP_MIN:
        return int(_U32.unpack_from(data, l4off)[0])
    if proto == IPPROTO_UDP and (any_udp or NAT_T_PORT in (sport, dport)) and \
            end - l4off >= _UDP_ESP_MIN:
        return int(_U32.unpack_from(data, l4off + _UDP_HEADER)[0]) or None
    return None
