"""The ESP fast path: from a captured frame to its ESP header in one call, for the common case.

Mirror-port captures are nearly all ESP.  :func:`esp_at` recognises the two shapes that make up
almost all of it — Ethernet II + IPv4 without options, not fragmented, carrying ESP (IP protocol
50, RFC 4303) or ESP in UDP port 4500 (RFC 3948) — with one ``unpack_from`` (two for UDP), reading
the frame where it lies in a buffer (no copy), and returns None for every other frame, which the
caller then hands to the general decoder (:func:`dissect.vpn.link.decode_frame`).  It never
raises: a frame too short for this shape is simply "not this shape".
"""

from __future__ import annotations

import struct

from .types import Buffer

__all__ = ["esp_at", "esp_cooked_at", "esp_frame", "IP_OFFSET"]

#: (src, dst, sport, dport, spi, seq, esp_len)
EspHit = tuple[bytes, bytes, int, int, int, int, int]

# Ethernet type, IPv4 version/IHL, total length, flags+fragment offset, protocol, source,
# destination, then the first two 32-bit words after the 20-byte IPv4 header (ESP: SPI and
# sequence number; UDP: ports, then length+checksum).
_E = struct.Struct("!12xHBxH2xHxB2x4s4sII").unpack_from
_II = struct.Struct("!II").unpack_from


def esp_at(buf: Buffer, off: int, end: int) -> EspHit | None:
    """The Ethernet frame ``buf[off:end]`` as ``(src, dst, sport, dport, spi, seq, esp_len)``, or
    None when it is not Ethernet/IPv4/ESP or Ethernet/IPv4/UDP-4500/ESP.

    ``sport``/``dport`` are -1 for native ESP; ``esp_len`` counts from the SPI to the end of the
    IP payload (IPv4 total length applied, capped by the captured bytes).  SPI 0 (reserved, RFC
    4303 §2.1; on UDP 4500 the non-ESP marker of IKE) is never returned.
    """
    if end - off < 42:
        return None
    et, vihl, tl, ff, proto, src, dst, w1, w2 = _E(buf, off)
    if et != 0x0800 or vihl != 0x45 or ff & 0x3FFF:
        return None
    ipend = off + 14 + tl
    if ipend > end:
        ipend = end
    if proto == 50:
        if w1 and ipend - off >= 42:  # an ESP header of 8 bytes at least (else: the general path)
            return (src, dst, -1, -1, w1, w2, ipend - off - 34)
        return None
    if proto == 17:
        sport = w1 >> 16
        dport = w1 & 0xFFFF
        if (sport == 4500 or dport == 4500) and ipend - off >= 50:
            spi, seq = _II(buf, off + 42)
            if spi:
                return (src, dst, sport, dport, spi, seq, ipend - off - 42)
    return None


# IPv4 from its first byte: version/IHL, total length, flags+fragment offset, protocol, source,
# destination, the two 32-bit words after a 20-byte header
_IP = struct.Struct("!BxH2xHxB2x4s4sII").unpack_from
#: where the IPv4 header starts in a frame of each link type with a fast path, and the link
#: header's protocol field (offset, value): Ethernet; Linux cooked SLL (tcpdump -i any on older
#: systems) and SLL2 (tcpdump -i any), whose ESP a client's capture of every interface is full of
IP_OFFSET = {1: 14, 113: 16, 276: 20}
_COOKED_PROTO = {113: 14, 276: 0}


def esp_cooked_at(buf: Buffer, off: int, end: int, linktype: int) -> EspHit | None:
    """:func:`esp_at` for a Linux cooked frame (SLL 113, SLL2 276) at ``buf[off:end]``: the same
    tuple (``esp_len`` from the SPI on), or None."""
    p = _COOKED_PROTO[linktype]
    ip = off + IP_OFFSET[linktype]
    if end - ip < 28 or buf[off + p] != 0x08 or buf[off + p + 1] != 0:
        return None
    vihl, tl, ff, proto, src, dst, w1, w2 = _IP(buf, ip)
    if vihl != 0x45 or ff & 0x3FFF:
        return None
    ipend = ip + tl
    if ipend > end:
        ipend = end
    if proto == 50:
        if w1 and ipend - ip >= 28:
            return (src, dst, -1, -1, w1, w2, ipend - ip - 20)
        return None
    if proto == 17:
        sport = w1 >> 16
        dport = w1 & 0xFFFF
        if (sport == 4500 or dport == 4500) and ipend - ip >= 36:
            spi, seq = _II(buf, ip + 28)
            if spi:
                return (src, dst, sport, dport, spi, seq, ipend - ip - 28)
    return None


def esp_frame(linktype: int, data: Buffer) -> EspHit | None:
    """:func:`esp_at` / :func:`esp_cooked_at` for a whole captured frame of ``linktype``
    (Ethernet, Linux cooked SLL and SLL2 qualify)."""
    if linktype == 1:
        return esp_at(data, 0, len(data))
    if linktype == 276 or linktype == 113:
        return esp_cooked_at(data, 0, len(data), linktype)
    return None
