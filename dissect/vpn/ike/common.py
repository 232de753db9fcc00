"""IKE header (IKEv1 and IKEv2), the generic payload chain and the records both versions share.

Wire format: RFC 2408 §3.1 (ISAKMP header) and RFC 7296 §3.1 (IKEv2 header) share one 28-byte
layout::

    Initiator SPI (8) | Responder SPI (8) | Next Payload (1) | MjVer<<4|MnVer (1) |
    Exchange Type (1) | Flags (1) | Message ID (4) | Length (4)

and one generic payload header (RFC 2408 §3.2, RFC 7296 §3.2)::

    Next Payload (1) | C (1 bit, IKEv2 only) + RESERVED (7) | Payload Length (2, incl. header)

:func:`dissect.vpn.ike.parse_message` returns an :class:`IkeMessage`.  A bad header (fewer
than 28 bytes, major version other than 1 or 2) raises :class:`DissectError`; anything wrong after
the header is *reported* in ``IkeMessage.errors`` so that the header and the payloads before the
bad spot stay available.  All offsets inside an :class:`IkeMessage` (payload ``offset``, SK data offsets, error
offsets) are relative to the start of the message, i.e. indexes into ``IkeMessage.raw``.

Records carry numbers and raw bytes only; names come from :mod:`dissect.vpn.registry`.
"""

from __future__ import annotations

import hashlib
import struct

from typing import Callable, Iterator

from ..errors import DissectError
from ..registry import ExchangeType, PayloadV1, PayloadV2, is_error_notify, notify_types
from ..types import Buffer

__all__ = [
    "HEADER_LEN", "HEADER_STRUCT", "IkeHeader", "IkeMessage", "Payload", "NotifyRecord",
    "RawPayload", "BodyParser", "Problem", "parse_header", "walk_payloads", "sa_key", "copy_bytes",
    "copy_digest",
    "FLAG_V1_ENCRYPTED", "FLAG_V1_COMMIT", "FLAG_V1_AUTH_ONLY",
    "FLAG_V2_INITIATOR", "FLAG_V2_VERSION", "FLAG_V2_RESPONSE",
]

HEADER_LEN = 28

# RFC 2408 §3.1 flags
FLAG_V1_ENCRYPTED = 0x01
FLAG_V1_COMMIT = 0x02
FLAG_V1_AUTH_ONLY = 0x04
# RFC 7296 §3.1 flags
FLAG_V2_INITIATOR = 0x08
FLAG_V2_VERSION = 0x10
FLAG_V2_RESPONSE = 0x20

# IKEv2 payload types handled structurally (RFC 7296 §3.2, RFC 7383 §2.5), as plain ints
_V2_SK = int(PayloadV2.SK)
_V2_SKF = int(PayloadV2.SKF)
#: the Notify payload of each version (v2?): a cut one still names its type
_NOTIFY = {True: int(PayloadV2.N), False: int(PayloadV1.N)}

#: the 28-byte header's layout (RFC 2408 §3.1, RFC 7296 §3.1): parse_header, parse_message
HEADER_STRUCT = struct.Struct(">8s8sBBBBII")
_GEN = struct.Struct(">BBH")


def _name(kind: str, code: int, version: int | None = None) -> str:
    """A registry name for repr only (dissect.vpn.registry is optional here); "" if none."""
    try:
        from .. import registry
        if kind == "exch":
            return registry.exchange_name(code)
        return registry.payload_name(version or 1, code)
    except Exception:  # noqa: BLE001 - repr must never fail
        return ""


def _slot_repr(obj: object) -> str:
    parts = []
    for cls in reversed(type(obj).__mro__):
        for name in getattr(cls, "__slots__", ()):
            if name in ("raw", "encrypted_body"):
                continue
            val = getattr(obj, name, None)
            if isinstance(val, (bytes, bytearray)):
                val = val.hex() if len(val) <= 24 else val[:24].hex() + f"...({len(val)})"
                parts.append(f"{name}={val}")
                continue
            parts.append(f"{name}={val!r}")
            if name == "exch" and isinstance(val, int):
                parts[-1] += f"({_name('exch', val)})"
            elif name == "type" and isinstance(val, int):
                parts[-1] += f"({_name('payload', val, 2 if 33 <= val <= 54 else 1)})"
    return f"{type(obj).__name__}({', '.join(parts)})"


class IkeHeader:
    """The 28-byte IKE header (RFC 2408 §3.1 / RFC 7296 §3.1)."""

    __slots__ = ("ispi", "rspi", "next_payload", "major", "minor", "exch", "flags", "msgid",
                 "length")

    def __init__(self, ispi: bytes, rspi: bytes, next_payload: int, major: int, minor: int,
                 exch: int, flags: int, msgid: int, length: int) -> None:
        self.ispi = ispi
        self.rspi = rspi
        self.next_payload = next_payload
        self.major = major
        self.minor = minor
        self.exch = exch
        self.flags = flags
        self.msgid = msgid
        self.length = length

    @property
    def is_v2(self) -> bool:
        return self.major == 2

    @property
    def initiator(self) -> bool | None:
        """IKEv2 I flag (sent by the original initiator); None for IKEv1 (no such flag)."""
        if self.major == 2:
            return bool(self.flags & FLAG_V2_INITIATOR)
        return None

    @property
    def response(self) -> bool | None:
        """IKEv2 R flag; None for IKEv1 (no such flag)."""
        if self.major == 2:
            return bool(self.flags & FLAG_V2_RESPONSE)
        return None

    @property
    def version_flag(self) -> bool:
        """IKEv2 V flag (sender could speak a higher major version)."""
        return self.major == 2 and bool(self.flags & FLAG_V2_VERSION)

    @property
    def commit(self) -> bool:
        return self.major == 1 and bool(self.flags & FLAG_V1_COMMIT)

    @property
    def auth_only(self) -> bool:
        return self.major == 1 and bool(self.flags & FLAG_V1_AUTH_ONLY)

    @property
    def encrypted(self) -> bool:
        """IKEv1: the E flag.  IKEv2 (no flag): the first payload is SK or SKF."""
        if self.major == 1:
            return bool(self.flags & FLAG_V1_ENCRYPTED)
        return self.next_payload in (_V2_SK, _V2_SKF)

    __repr__ = _slot_repr


def parse_header(data: Buffer, off: int = 0) -> IkeHeader:
    """Decode the IKE header at ``data[off:]``; DissectError when fewer than 28 bytes."""
    if len(data) - off < HEADER_LEN or off < 0:
        raise DissectError("IKE header truncated", off)
    ispi, rspi, np, ver, exch, flags, msgid, length = HEADER_STRUCT.unpack_from(data, off)
    return IkeHeader(ispi, rspi, np, ver >> 4, ver & 0x0F, exch, flags, msgid, length)


_SA_KEY = struct.Struct(">8s9xB")
#: where the responder SPI lies in the header
_RSPI = slice(8, 16)


def sa_key(data: Buffer, off: int = 0) -> tuple[int, bytes]:
    """``(major version, initiator SPI)`` from the 28 bytes of an IKE header at ``data[off:]``
    (the caller checked the length): what a tracker indexes IKE SAs by before parsing the rest."""
    ispi, ver = _SA_KEY.unpack_from(data, off)
    return ver >> 4, ispi


def copy_bytes(data: Buffer) -> bytes:
    """The bytes two copies of the IKE datagram ``data`` share: all of them, with the responder
    SPI zeroed in an IKEv2 IKE_SA_INIT response (a responder that re-sends its response with a
    fresh SPI, as libreswan does, re-sends the same message).  DissectError below 28 bytes."""
    h = parse_header(data)
    if h.major == 2 and h.exch == ExchangeType.IKE_SA_INIT and h.flags & FLAG_V2_RESPONSE:
        return bytes(data[:_RSPI.start]) + bytes(_RSPI.stop - _RSPI.start) + bytes(data[_RSPI.stop:])
    return bytes(data)


#: the zeroed responder SPI of :func:`copy_digest`
_NO_RSPI = bytes(_RSPI.stop - _RSPI.start)


def copy_digest(m: IkeMessage) -> bytes:
    """A 12-byte BLAKE2b of :func:`copy_bytes` of the datagram ``m`` was parsed from (``m.raw``
    and ``m.trailer``): two copies of one message have the same digest."""
    h = hashlib.blake2b(digest_size=12)
    raw = m.raw
    if m.major == 2 and m.exch == ExchangeType.IKE_SA_INIT and m.flags & FLAG_V2_RESPONSE:
        h.update(raw[:_RSPI.start])
        h.update(_NO_RSPI)
        h.update(raw[_RSPI.stop:])
    else:
        h.update(raw)
    if m.trailer:
        h.update(m.trailer)
    return h.digest()


class Payload:
    """Fields every payload record has.

    ``type`` the payload type; ``next_payload`` the Next Payload field of its generic header (for
    IKEv2 SK/SKF it names the first *inner* payload, RFC 7296 §3.14); ``critical`` the IKEv2
    critical bit (always False for IKEv1); ``offset`` where the generic header starts (relative to
    the message); ``length`` the Payload Length field.
    """

    __slots__ = ("type", "next_payload", "critical", "offset", "length")
    type: int
    next_payload: int
    critical: bool
    offset: int
    length: int

    __repr__ = _slot_repr


class NotifyRecord(Payload):
    """What an IKEv1 Notification and an IKEv2 Notify share (RFC 2408 §3.14, RFC 7296 §3.10):
    ``notify_type``, ``spi`` (bytes), ``data``; they iterate as ``(notify_type, spi, data)``.
    Subclasses set ``VERSION``."""

    __slots__ = ()
    VERSION = 0
    notify_type: int
    spi: bytes
    data: bytes

    def __iter__(self) -> Iterator[int | bytes]:
        return iter((self.notify_type, self.spi, self.data))

    @property
    def is_error(self) -> bool:
        """Types below 16384 are errors (RFC 7296 §3.10.1, RFC 2408 §3.14.1)."""
        return is_error_notify(self.VERSION, self.notify_type)

    @property
    def invalid_spi(self) -> bytes | None:
        """INVALID_SPI (11 in both versions): the SPI the sender has no SA for, from the SPI field
        or else the first 4 bytes of the data (RFC 7296 §3.10.1: "the Notification Data contains
        the SPI"; RFC 2408 §3.14.1 puts it in the SPI field); b"" when neither holds one; None for
        another notify."""
        if self.notify_type != notify_types(self.VERSION).INVALID_SPI:
            return None
        return self.spi if self.spi else bytes(self.data[:4])


class RawPayload(Payload):
    """A payload without a dedicated record (unknown type, or a body that did not parse)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


#: a payload body parser: ``f(raw, body_off, body_end) -> Payload``
BodyParser = Callable[[Buffer, int, int], "Payload"]
#: what a walk reports: ``(reason, offset)``
Problem = tuple[str, int]


def _generic(rec: Payload, np: int, nxt: int, resv: int, pos: int, plen: int,
             v2: bool) -> Payload:
    """``rec`` with the generic payload header's fields filled in (the Critical bit is IKEv2's,
    RFC 7296 §3.2; IKEv1's byte is reserved)."""
    rec.type = np
    rec.next_payload = nxt
    rec.critical = bool(resv & 0x80) if v2 else False
    rec.offset = pos
    rec.length = plen
    return rec


def _cut_notify(raw: Buffer, pos: int, end: int, plen: int,
                parser: BodyParser) -> Payload | None:
    """A Notify / Notification payload at ``raw[pos:]`` whose Length ``plen`` runs past ``end``
    where the capture stopped (the snapshot length): parsed as if whole, then its SPI and data
    cut back to the captured bytes, so that its type (in the fixed part) is still read.  None
    when the fixed part itself was cut."""
    body = bytes(raw[pos + 4:end])
    try:
        rec = parser(body + bytes(plen - 4 - len(body)), 0, plen - 4)
    except DissectError:
        return None
    if not isinstance(rec, NotifyRecord):
        return None
    fixed = plen - 4 - len(rec.spi) - len(rec.data)  # the body before the SPI
    if len(body) < fixed:
        return None
    spi = rec.spi[:len(body) - fixed]
    data = rec.data[:max(0, len(body) - fixed - len(spi))]
    # (the fields live in each version's __slots__, not in NotifyRecord's)
    setattr(rec, "spi", spi)
    setattr(rec, "data", data)
    return rec


def walk_payloads(raw: Buffer, pos: int, end: int, np: int, parsers: dict[int, BodyParser],
                  v2: bool, truncated: bool = False) -> tuple[list[Payload], list[Problem]]:
    """Walk a generic payload chain in ``raw[pos:end]`` starting with payload type ``np``.

    ``parsers`` maps a payload type to ``f(raw, body_off, body_end) -> Payload`` (the body is
    what follows the 4-byte generic header; the walker fills the generic fields).  Returns
    ``(payloads, errors)``; the walk stops at the first chain error (bad length, payload beyond
    ``end``); a body that fails to parse is kept as a :class:`RawPayload`, its error recorded,
    and the walk goes on (the generic length is still trustworthy).  IKEv2 SK/SKF end the walk
    (RFC 7296 §3.14: SK is the last payload).  With ``truncated`` (the captured bytes stop before
    the message's Length) a payload running past ``end`` stops the walk silently; an SK/SKF
    payload cut that way is still recorded (``data_end`` = ``end``, ``length`` the field), and so
    is a Notify whose fixed part was captured (its SPI and data cut to the captured bytes).
    """
    payloads: list[Payload] = []
    errors: list[Problem] = []
    gen = _GEN.unpack_from
    get = parsers.get
    while np:
        if pos + 4 > end:
            if truncated:
                pass  # the capture stops here; not a format error
            elif pos == end:
                errors.append((f"payload chain does not end with NONE (next payload {np} "
                               "at the end of the message)", pos))
            else:
                errors.append((f"payload {np} header runs past the end of the message", pos))
            return payloads, errors
        nxt, resv, plen = gen(raw, pos)
        if plen < 4:
            errors.append((f"payload {np} length {plen} below 4", pos + 2))
            return payloads, errors
        pend = pos + plen
        if pend > end:
            if not truncated:
                errors.append((f"payload {np} length {plen} runs past the end of the message",
                               pos + 2))
            elif v2 and (np == _V2_SK or np == _V2_SKF):
                # Cut by the snaplen: still worth its header (its Next Payload names the first
                # inner payload); data_end is then the end of the captured bytes.
                try:
                    cut = parsers[np](raw, pos + 4, end)
                except DissectError:
                    return payloads, errors
                payloads.append(_generic(cut, np, nxt, resv, pos, plen, v2))
            elif np == _NOTIFY[v2]:
                note = _cut_notify(raw, pos, end, plen, parsers[np])
                if note is not None:
                    payloads.append(_generic(note, np, nxt, resv, pos, plen, v2))
            return payloads, errors
        fn = get(np)
        rec = None
        if fn is not None:
            try:
                rec = fn(raw, pos + 4, pend)
            except DissectError as e:
                errors.append((f"payload {np}: {e.reason}", e.offset))
                rec = None
        if rec is None:
            rec = RawPayload(bytes(raw[pos + 4:pend]))
        payloads.append(_generic(rec, np, nxt, resv, pos, plen, v2))
        pos = pend
        if v2 and (np == _V2_SK or np == _V2_SKF):
            if pos != end:
                errors.append((f"{end - pos} bytes after the encrypted payload (must be last)",
                               pos))
            return payloads, errors
        np = nxt
    if pos < end and not (not v2 and end - pos < 4 and not any(raw[pos:end])):
        # (IKEv1: libreswan pads a cleartext message to a multiple of 4 octets with zeros
        # after the last payload, its Length counting them; RFC 2408 §3.1 neither asks nor
        # forbids it, and Wireshark accepts it)
        errors.append((f"{end - pos} bytes after the last payload", pos))
    return payloads, errors


class IkeMessage(IkeHeader):
    """One IKE message: the header fields plus

    * ``raw`` — the bytes of the message (from the header to its Length, capped by the data);
    * ``trailer`` — the bytes given after the Length (an error; else ``b""``): ``raw + trailer``
      is what was parsed (the datagram, or the message of a TCP stream), ``size`` its length;
    * ``payloads`` — payload records in wire order (IKEv1 with the E flag: empty);
    * ``encrypted_body`` — IKEv1 E-flag messages: the bytes after the header (else None);
    * ``errors`` — list of ``(reason, offset)``; empty for a well-formed message; the payload
      walk stops at the first chain error, the payloads before it are kept;
    * ``truncated`` — the data ends before the Length field says (snaplen);
    * ``marker`` — the message followed a non-ESP marker in its UDP datagram (RFC 3948 §2.2:
      four zero bytes, the UDP encapsulation of port 4500, whatever the port): set by the
      caller that framed the datagram (:func:`dissect.vpn.udpencap.classify_udp`), False from
      :func:`dissect.vpn.ike.parse_message`.
    """

    __slots__ = ("raw", "trailer", "payloads", "encrypted_body", "errors", "truncated",
                 "marker")
    raw: bytes
    trailer: bytes
    payloads: list[Payload]
    encrypted_body: bytes | None
    errors: list[Problem]
    truncated: bool
    marker: bool

    @property
    def size(self) -> int:
        """The bytes given to :func:`dissect.vpn.ike.parse_message` (the datagram)."""
        return len(self.raw) + len(self.trailer)

    @property
    def error(self) -> Problem | None:
        """The first ``(reason, offset)`` or None."""
        return self.errors[0] if self.errors else None

    @property
    def payload_types(self) -> list[int]:
        return [p.type for p in self.payloads]

    @property
    def type_past_cut(self) -> int:
        """A message the snapshot length cut (``truncated``, no chain error): the payload type
        named by the last Next Payload field captured (the header's, or the last payload's),
        whose payload is on the wire but not in ``payloads``; else 0.  Not for an IKEv1
        message whose payloads are encrypted, nor after an SK/SKF payload (its Next Payload
        names the first inner payload)."""
        if not self.truncated or self.errors or self.encrypted_body is not None:
            return 0
        if not self.payloads:
            return self.next_payload
        last = self.payloads[-1]
        if self.major != 1 and (last.type == _V2_SK or last.type == _V2_SKF):
            return 0
        return last.next_payload

    @property
    def encrypted(self) -> bool:
        """IKEv1: the E flag.  IKEv2: an SK or SKF payload is present."""
        if self.major == 1:
            return bool(self.flags & FLAG_V1_ENCRYPTED)
        for p in self.payloads:
            if p.type == _V2_SK or p.type == _V2_SKF:
                return True
        return False

    def find(self, ptype: int) -> Payload | None:
        """The first payload of type ``ptype`` or None."""
        for p in self.payloads:
            if p.type == ptype:
                return p
        return None

    def find_all(self, ptype: int) -> list[Payload]:
        return [p for p in self.payloads if p.type == ptype]
