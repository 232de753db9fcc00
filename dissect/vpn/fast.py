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

__all__ = ["esp_at", "esp_frame"]

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


def esp_frame(linktype: int, data: Buffer) -> EspHit | None:
    """:func:`esp_at` for a whole captured frame of ``linktype`` (only Ethernet, 1, qualifies)."""
    if linktype != 1:
        return None
    return esp_at(data, 0, len(data))
