"""TCP encapsulation of IKE and ESP (RFC 9329, which obsoletes RFC 8229), and the encapsulations
that share its ports without being it.

Framings of a byte stream (one TCP direction):

* ``FRAMED`` — RFC 9329 §3: every message is preceded by a 16-bit Length that counts the Length
  field itself and "MUST NOT be 0 or 1"; an IKE message starts with the 4-byte Non-ESP Marker
  (§3.1), an ESP packet with its (non-zero) SPI (§3.2).  The TCP originator first sends the 6-byte
  stream prefix ``IKETCP`` (§4); the responder's direction has none.
* ``MARKER`` — the same messages without the Length field: Non-ESP Marker + IKE, back to back.
  This is what libreswan writes to its TCP socket; with the kernel's espintcp module attached to
  the socket, the kernel adds (and on receipt strips) the Length field (Linux ``espintcp``: "only
  the length field, TCP encap is done by the socket"), so the wire carries ``FRAMED``.  Without
  espintcp (libreswan's ``tcp-skip-setsockopt-espintcp`` impairment, as in this project's lab),
  the wire carries ``MARKER``.  ESP cannot travel this way (it has no length to delimit it).
* ``RAW`` — IKE messages back to back with neither marker nor Length, each delimited by its own
  IKE header Length: Check Point's "IKE over TCP" on TCP 500 (ike-scan ``--tcp=1``, "RAW IKE over
  TCP as used by Checkpoint").
* Cisco's "IPsec over TCP" (cTCP, VPN 3000 / ASA, default TCP 10000): every segment is a UDP
  header + ISAKMP message, or an ESP packet, followed by a 16-byte trailer (4 zero bytes, ...,
  the protocol 17 or 50 at trailer offset 13) — the layout of Wireshark's ``tcpencap``
  dissector.  :func:`cisco_trailer` recognises it so that it is never read as RFC 9329; its
  content is not decoded.

:func:`probe` tells the framing of a stream from its first bytes (the caller keeps the stream
state: where the stream starts, whether the prefix was seen); :func:`split` cuts complete
messages out of a buffer.  Both are stateless.
"""

from __future__ import annotations

import struct

from .errors import DissectError
from .types import Buffer
from .udpencap import _V1_EXCH, _V2_EXCH, ESP, IKE, MALFORMED

__all__ = [
    "IKETCP_PREFIX", "FRAMED", "MARKER", "RAW", "NONE", "NEED",
    "probe", "split", "split_tcp_stream", "ike_header_length", "cisco_trailer",
    "frame_head", "ike_head_of_frame",
]

#: RFC 9329 §4: the stream prefix sent by the TCP originator.
IKETCP_PREFIX = b"IKETCP"

# framings (probe results)
NONE = 0     # not TCP-encapsulated IKE/ESP as far as the bytes show
FRAMED = 1   # RFC 9329 Length-prefixed messages
MARKER = 2   # Non-ESP Marker + IKE, no Length (libreswan without espintcp)
RAW = 3      # bare IKE messages (Check Point IKE over TCP)
NEED = -1    # too few bytes to tell yet

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_II = struct.Struct(">II").unpack_from
_ZERO4 = b"\x00\x00\x00\x00"
_ZERO8 = bytes(8)
_HEADER = 28
#: a 16-bit Length frames at most 65,535 bytes; larger raw IKE messages are not believed
_MAX_IKE = 65535
#: the ESP-pair proof: the second packet of an SPI within this many sequence numbers
_SEQ_STEP = 64


def ike_header_length(buf: Buffer, off: int) -> int:
    """The Length field of a plausible IKE header at ``buf[off:]``, else 0.

    Plausible (RFC 7296 §3.1 / RFC 2408 §3.1): 28 bytes present, a non-zero initiator SPI,
    version 2.0 with an IKEv2 exchange type and only the I/V/R flags (0x38), or version 1.0 with
    an IKEv1 exchange type and only the E/C/A flags (0x07), and 28 <= Length <= 65,535.
    """
    if off < 0 or len(buf) - off < _HEADER:
        return 0
    ver = buf[off + 17]
    exch = buf[off + 18]
    flags = buf[off + 19]
    if ver == 0x20:
        if exch not in _V2_EXCH or flags & ~0x38:
            return 0
    elif ver == 0x10:
        if exch not in _V1_EXCH or flags & ~0x07:
            return 0
    else:
        return 0
    if buf[off:off + 8] == _ZERO8:
        return 0
    length = _U32(buf, off + 24)[0]
    return length if _HEADER <= length <= _MAX_IKE else 0


def probe(buf: Buffer, off: int = 0, strict: bool = True) -> int:
    """The framing of the stream whose first message starts at ``buf[off]``.

    ``strict`` (a port that is not an IKE port, nothing else known about the stream) accepts only
    an RFC 9329 frame carrying IKE whose two lengths agree (the frame's Length = 6 + the IKE
    header's Length).  Otherwise also: ``MARKER`` (Non-ESP Marker + plausible IKE header),
    ``RAW`` (a plausible IKE header), and ``FRAMED`` from two consecutive Length-framed ESP
    packets of the same SPI whose sequence numbers rise by 1..64 (a stream joined after its IKE).
    Returns ``NEED`` while the bytes present cannot decide.
    """
    n = len(buf) - off
    if n < 2:
        return NEED
    length = _U16(buf, off)[0]
    need = False
    if length >= 6 + _HEADER:
        if n < 6 + _HEADER:
            need = True
        elif buf[off + 2:off + 6] == _ZERO4 and ike_header_length(buf, off + 6) == length - 6:
            return FRAMED
    elif n < 6 + _HEADER:
        need = True
    if strict:
        return NEED if need else NONE
    if n >= 4 + _HEADER and buf[off:off + 4] == _ZERO4 and ike_header_length(buf, off + 4):
        return MARKER
    if n >= _HEADER and ike_header_length(buf, off):
        return RAW
    if length >= 10 and n >= 10:
        spi, seq = _II(buf, off + 2)
        if spi:
            nxt = off + length
            if len(buf) - nxt < 10:
                return NEED
            length2 = _U16(buf, nxt)[0]
            spi2, seq2 = _II(buf, nxt + 2)
            if length2 >= 10 and spi2 == spi and 0 < ((seq2 - seq) & 0xFFFFFFFF) <= _SEQ_STEP:
                return FRAMED
            return NONE
    return NEED if need or n < 10 else NONE


def cisco_trailer(buf: Buffer, off: int, end: int) -> bool:
    """True when ``buf[off:end]`` (one TCP segment's payload) ends with Cisco's cTCP trailer: 16
    bytes whose first four are zero, whose bytes 6-7 have their low 12 bits zero and whose byte 13
    is the protocol 17 (UDP, i.e. IKE) or 50 (ESP), after at least 8 bytes of packet."""
    if end > len(buf):
        end = len(buf)
    if end - off < 16 + 8:
        return False
    t = end - 16
    return (buf[t:t + 4] == _ZERO4 and not _U16(buf, t + 6)[0] & 0xFFF
            and buf[t + 13] in (17, 50))


#: the IKE header's Length field starts here (RFC 7296 §3.1; RFC 2408 §3.1)
_LENGTH_AT = 24


def frame_head(framing: int) -> int:
    """The bytes at the start of a message of ``framing`` that frame it: RFC 9329's Length
    (``FRAMED``), else the (Non-ESP Marker and the) IKE header up to the end of its Length."""
    if framing == FRAMED:
        return 2
    return _HEADER + (4 if framing == MARKER else 0)


def ike_head_of_frame(buf: Buffer, off: int, captured: int, end: int) -> bytes | None:
    """The IKE header at ``buf[off:]`` of a message that fills its RFC 9329 frame up to ``end``,
    when the bytes captured of it (up to ``captured``: a snapshot length cut the rest) hold the
    header but its Length: the 24 bytes captured and the frame's length as the Length (§3
    frames one whole IKE message).  None when more or less of the header was captured."""
    if not _LENGTH_AT <= captured - off < _HEADER:
        return None
    return bytes(buf[off:off + _LENGTH_AT]) + struct.pack(">I", end - off)


def split(buf: Buffer, start: int, framing: int) -> tuple[list[tuple[int, int, int, int, int]], int]:
    """Complete messages of ``framing`` in ``buf[start:]``: ``(messages, consumed)`` as
    :func:`split_tcp_stream` returns them (``MARKER`` / ``RAW`` streams carry IKE only).

    A ``MARKER`` / ``RAW`` element that is not (a marker and) a plausible IKE header breaks the
    framing: :class:`DissectError` when it is the first one at ``start``; otherwise the messages
    before it are returned and the next call raises.
    """
    if framing == FRAMED:
        return split_tcp_stream(buf, start)
    skip = 4 if framing == MARKER else 0
    messages = []
    pos = start
    n = len(buf)
    while n - pos >= skip + _HEADER:
        if skip and buf[pos:pos + 4] != _ZERO4:
            length = 0
        else:
            length = ike_header_length(buf, pos + skip)
        if not length:
            if pos == start:
                raise DissectError("TCP stream element is not " +
                                   ("a Non-ESP Marker and an IKE header" if skip else
                                    "an IKE header"), pos)
            break
        end = pos + skip + length
        if end > n:
            break
        messages.append((IKE, pos + skip, end, 0, 0))
        pos = end
    return messages, pos - start


def split_tcp_stream(buf: Buffer, start: int = 0) -> tuple[list[tuple[int, int, int, int, int]], int]:
    """Split RFC 9329 length-prefixed messages out of ``buf[start:]``.

    Returns ``(messages, consumed)``: ``messages`` is a list of
    ``(kind, off, end, spi, seq)`` for each *complete* message, where ``buf[off:end]`` is the
    message without its length field (for IKE: starting at the IKE header, the Non-ESP Marker
    skipped); ``consumed`` is the number of bytes from ``start`` covered by those messages (an
    incomplete message at the end is left for the next call).

    * IKE: ``(IKE, off_after_marker, end, 0, 0)``;
    * ESP: ``(ESP, off, end, spi, seq)``;
    * a framed message that is neither (empty, or 1..7 bytes not starting with the marker):
      ``(MALFORMED, off, end, 0, 0)`` — the framing is intact, so splitting goes on.

    A Length field below 2 (RFC 9329 §3: "MUST NOT be 0 or 1") breaks the framing: when it is the
    first message at ``start``, :class:`DissectError` is raised with its offset; otherwise the
    messages before it are returned and the next call (starting at it) raises.
    """
    messages = []
    pos = start
    n = len(buf)
    while pos + 2 <= n:
        length = _U16(buf, pos)[0]
        if length < 2:
            if pos == start:
                raise DissectError("TCP-encapsulation length field below 2 (RFC 9329 §3)", pos)
            break
        end = pos + length
        if end > n:
            break
        moff = pos + 2
        mlen = length - 2
        if mlen >= 4 and buf[moff:moff + 4] == _ZERO4:
            messages.append((IKE, moff + 4, end, 0, 0))
        elif mlen >= 8:
            spi, seq = _II(buf, moff)
            messages.append((ESP, moff, end, spi, seq))
        else:
            messages.append((MALFORMED, moff, end, 0, 0))
        pos = end
    return messages, pos - start
