"""UDP encapsulation of IKE and ESP: which protocol a datagram carries.

* RFC 3948 §2 (UDP encapsulation, port 4500): a payload starting with four zero bytes (the
  Non-ESP Marker, §2.2) carries IKE after the marker; a one-byte payload 0xFF is a NAT-keepalive
  (§2.3); anything else is ESP, whose SPI is never 0 (RFC 4303 §2.1 reserves SPI 0).
* Port 500 carries IKE directly (RFC 7296 §2, RFC 2408 §3.1).
* On any other port a datagram is called IKE only when its header validates (below).
* TCP encapsulation (RFC 9329) is :mod:`dissect.vpn.tcpencap`.

Results are plain tuples (hot path: every UDP-encapsulated ESP packet goes through
:func:`classify_udp`).
"""

from __future__ import annotations

from .types import Buffer

import struct
from typing import NamedTuple

from .ip import IpProto, Port

__all__ = [
    "OTHER", "IKE", "ESP", "KEEPALIVE", "MALFORMED",
    "NAT_T_PORT", "IKE_PORT",
    "classify_encap", "classify_udp", "ike_header_valid", "FragmentHead", "fragment_head",
]

# kinds
OTHER = 0
IKE = 1
ESP = 2
KEEPALIVE = 3
MALFORMED = -1

# plain ints for the per-datagram classification (dissect.vpn.number)
IKE_PORT = int(Port.IKE)
NAT_T_PORT = int(Port.NAT_T)
_PROTO_ESP = int(IpProto.ESP)
_PROTO_UDP = int(IpProto.UDP)
_HH = struct.Struct(">HH")

_II = struct.Struct(">II")
_unpack_ii = _II.unpack_from
_U32 = struct.Struct(">I")

# Exchange types accepted by the header heuristic on non-IKE ports.
# IKEv1: RFC 2408 §3.1 / IANA "ISAKMP Exchange Types": 1 Base, 2 Identity Protection,
# 3 Authentication Only, 4 Aggressive, 5 Informational, 6 Transaction (mode-config draft);
# RFC 2409 §5.5 Quick Mode 32, §6.1 New Group Mode 33.
_V1_EXCH = frozenset((1, 2, 3, 4, 5, 6, 32, 33))
# IKEv2: RFC 7296 §3.1: 34 IKE_SA_INIT, 35 IKE_AUTH, 36 CREATE_CHILD_SA, 37 INFORMATIONAL;
# RFC 9242 43 IKE_INTERMEDIATE; RFC 5723 44 IKE_SESSION_RESUME.
_V2_EXCH = frozenset((34, 35, 36, 37, 43, 44))

_ZERO4 = b"\x00\x00\x00\x00"


def ike_header_valid(data: Buffer, off: int, end: int) -> bool:
    """True when ``data[off:end]`` starts with a plausible IKE header for exactly that length.

    RFC 7296 §3.1 / RFC 2408 §3.1: 28-byte header, Length (offset 24) == message length, major
    version 1 (minor 0) with an IKEv1 exchange type or major 2 (minor 0) with an IKEv2 one.
    An ``end`` beyond ``data`` is the datagram's end on the wire (the snapshot length cut the
    capture): the header is read from the captured bytes, the Length compared with ``end``.
    """
    if min(end, len(data)) - off < 28 or off < 0:
        return False
    ver = data[off + 17]
    exch = data[off + 18]
    if ver == 0x10:
        if exch not in _V1_EXCH:
            return False
    elif ver == 0x20:
        if exch not in _V2_EXCH:
            return False
    else:
        return False
    return bool(_U32.unpack_from(data, off + 24)[0] == end - off)


def classify_encap(data: Buffer, off: int, end: int) -> tuple[int, int, int]:
    """The UDP payload ``data[off:end]`` of a flow that uses the UDP encapsulation of RFC 3948
    §2 (port 4500, or the ports where IKE after a non-ESP marker was seen): ESP (SPI != 0),
    Non-ESP Marker + IKE, or NAT-keepalive; as :func:`classify_udp` returns them."""
    n = end - off
    if n >= 8:
        try:
            spi, seq = _unpack_ii(data, off)
        except struct.error:  # end beyond the buffer: a caller bug, still no crash
            return (MALFORMED, 0, 0)
        if spi:
            return (2, spi, seq)  # ESP
        return (IKE, off + 4, 0)
    if n == 1:
        if data[off:end] == b"\xff":
            return (KEEPALIVE, 0, 0)
        return (MALFORMED, 0, 0)
    if n >= 4 and data[off:off + 4] == _ZERO4:
        return (IKE, off + 4, 0)
    return (MALFORMED, 0, 0)


def classify_udp(sport: int, dport: int, data: Buffer, off: int, end: int) -> tuple[int, int, int]:
    """Classify the UDP payload ``data[off:end]``.

    Returns ``(IKE, msg_off, 0)``, ``(ESP, spi, seq)``, ``(KEEPALIVE, 0, 0)``,
    ``(MALFORMED, 0, 0)`` or ``(OTHER, 0, 0)``.
    """
    if sport == 4500 or dport == 4500:
        return classify_encap(data, off, end)
    if sport == 500 or dport == 500:
        # IKE directly; tolerate a (non-standard) Non-ESP Marker when the header after it
        # validates and the one at ``off`` does not.
        if (end - off >= 32 and data[off:off + 4] == _ZERO4
                and not ike_header_valid(data, off, end)
                and ike_header_valid(data, off + 4, end)):
            return (IKE, off + 4, 0)
        return (IKE, off, 0)
    if ike_header_valid(data, off, end):
        return (IKE, off, 0)
    if data[off:off + 4] == _ZERO4 and ike_header_valid(data, off + 4, end):
        return (IKE, off + 4, 0)
    return (OTHER, 0, 0)


class FragmentHead(NamedTuple):
    """What the first IP fragment of a datagram shows of its transport (the rest never arrived):
    ``sport``/``dport`` (UDP, when its 4 port bytes are there), ``spi`` (ESP: the SPI; UDP 4500:
    the first word after the UDP header once those 12 bytes are there, 0 being IKE's non-ESP
    marker); None where the fragment is too short or the protocol has no such field."""

    sport: int | None
    dport: int | None
    spi: int | None


_UDP_PORTS = 4
_UDP_HEADER = 8


def fragment_head(proto: int, first: Buffer | None) -> FragmentHead | None:
    """The :class:`FragmentHead` of a first fragment's payload ``first`` (transport header and
    data) of IP protocol ``proto``; None for a set whose first fragment was never seen."""
    if first is None:
        return None
    n = len(first)
    if proto == _PROTO_ESP:
        return FragmentHead(None, None, _U32.unpack_from(first, 0)[0] if n >= 4 else None)
    if proto != _PROTO_UDP or n < _UDP_PORTS:
        return FragmentHead(None, None, None)
    sport, dport = _HH.unpack_from(first, 0)
    spi = None
    if NAT_T_PORT in (sport, dport) and n >= _UDP_HEADER + 4:
        spi = _U32.unpack_from(first, _UDP_HEADER)[0]
    return FragmentHead(sport, dport, spi)
