"""ARP (RFC 826) over Ethernet/IPv4, and the link-layer payload of frames that carry no IP.

:func:`link_payload` finds the payload of a non-IP frame (ethertype + offset) under Ethernet II
(with 802.1Q / 802.1ad tags), Linux cooked SLL / SLL2; :func:`parse_arp` reads an ARP packet
there.  Only Ethernet hardware (1) with IPv4 protocol addresses (0x0800, 6 + 4 byte addresses)
is decoded; other ARP forms return None.
"""

from __future__ import annotations

import struct

from .errors import DissectError
from .types import Buffer

ETHERTYPE_ARP = 0x0806
ARP_REQUEST = 1
ARP_REPLY = 2

_ARP = struct.Struct("!HHBBH6s4s6s4s").unpack_from
_U16 = struct.Struct("!H").unpack_from
_TAGS = (0x8100, 0x88A8, 0x9100, 0x9200)


def link_payload(linktype: int, data: Buffer) -> tuple[int, int] | None:
    """``(ethertype, offset)`` of the payload of an Ethernet (1), SLL (113) or SLL2 (276) frame,
    802.1Q/802.1ad tags skipped; None for another link type or a frame too short."""
    n = len(data)
    if linktype == 1:
        off = 12
        while True:
            if off + 2 > n:
                return None
            et = _U16(data, off)[0]
            if et in _TAGS:
                off += 4
                continue
            return et, off + 2
    if linktype == 113:
        return (_U16(data, 14)[0], 16) if n >= 16 else None
    if linktype == 276:
        return (_U16(data, 0)[0], 20) if n >= 20 else None
    return None


def parse_arp(data: Buffer, off: int,
              end: int | None = None) -> tuple[int, bytes, bytes, bytes, bytes] | None:
    """``(op, sender_mac, sender_ip, target_mac, target_ip)`` (addresses as bytes) of an
    Ethernet/IPv4 ARP packet at ``off``; None for other hardware / protocol types.  A truncated
    Ethernet/IPv4 ARP raises :class:`DissectError`."""
    if end is None or end > len(data):
        end = len(data)
    if off + 8 > end:
        raise DissectError("truncated ARP header", off)
    htype, ptype, hlen, plen = struct.unpack_from("!HHBB", data, off)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        return None
    if off + 28 > end:
        raise DissectError("truncated Ethernet/IPv4 ARP packet", off)
    _h, _p, _hl, _pl, op, sha, spa, tha, tpa = _ARP(data, off)
    return op, sha, spa, tha, tpa
