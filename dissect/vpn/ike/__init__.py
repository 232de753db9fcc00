"""IKE (IKEv1 and IKEv2) messages: :func:`parse_message` and what it returns.

The package's modules import one way, never back::

    common  the 28-byte header, the generic payload chain (walk_payloads) and the records both
            versions share (IkeHeader, IkeMessage, Payload, NotifyRecord, RawPayload)
    v1      IKEv1 / ISAKMP payload bodies (RFC 2408, 2407, 2409 ...): records and PARSERS
    v2      IKEv2 payload bodies (RFC 7296, 7383 ...): records and PARSERS
    this    parse_message: the header, then the payload walk with the version's PARSERS

``v1`` and ``v2`` import ``common`` only; this module imports all three.  The message-level API
(``parse_message`` and ``common``'s names: ``IkeMessage``, ``parse_header``, ``HEADER_LEN``,
``sa_key``, the flags ...) is importable from here; the version records from ``v1`` / ``v2``.
"""

from __future__ import annotations

from ..errors import DissectError
from ..types import Buffer
from . import v1, v2
from .common import (
    FLAG_V1_AUTH_ONLY, FLAG_V1_COMMIT, FLAG_V1_ENCRYPTED, FLAG_V2_INITIATOR, FLAG_V2_RESPONSE,
    FLAG_V2_VERSION, HEADER_LEN, HEADER_STRUCT, BodyParser, IkeHeader, IkeMessage, NotifyRecord,
    Payload, Problem, RawPayload, copy_bytes, copy_digest, parse_header, sa_key, walk_payloads,
)

__all__ = [
    "parse_message", "v1", "v2",
    "HEADER_LEN", "HEADER_STRUCT", "IkeHeader", "IkeMessage", "Payload", "NotifyRecord",
    "RawPayload", "BodyParser", "Problem", "parse_header", "walk_payloads", "sa_key", "copy_bytes",
    "copy_digest",
    "FLAG_V1_ENCRYPTED", "FLAG_V1_COMMIT", "FLAG_V1_AUTH_ONLY",
    "FLAG_V2_INITIATOR", "FLAG_V2_VERSION", "FLAG_V2_RESPONSE",
]

# the payload body parsers of each version (the dicts themselves, bound once)
_V1_PARSERS = v1.PARSERS
_V2_PARSERS = v2.PARSERS


def parse_message(data: Buffer, off: int = 0, end: int | None = None) -> IkeMessage:
    """Parse the IKE message at ``data[off:end]`` (``end`` defaults to ``len(data)``)."""
    if end is None or end > len(data):
        end = len(data)
    if off < 0 or end - off < HEADER_LEN:
        raise DissectError("IKE header truncated", off)
    ispi, rspi, np, ver, exch, flags, msgid, length = HEADER_STRUCT.unpack_from(data, off)
    major = ver >> 4
    if major != 1 and major != 2:
        raise DissectError(f"IKE major version {major} is neither 1 nor 2", off + 17)
    m = IkeMessage(ispi, rspi, np, major, ver & 0x0F, exch, flags, msgid, length)
    errors = []
    avail = end - off
    truncated = False
    if length < HEADER_LEN:
        errors.append((f"IKE Length field {length} below the header size", 24))
        mlen = avail
    elif length > avail:
        truncated = True
        mlen = avail
    else:
        if length < avail:
            errors.append((f"{avail - length} bytes after the IKE message (Length {length}, "
                           f"datagram {avail})", length))
        mlen = length
    raw = bytes(data[off:off + mlen])
    m.raw = raw
    m.trailer = bytes(data[off + mlen:end]) if mlen < avail else b""
    m.errors = errors
    m.truncated = truncated
    m.marker = False
    m.encrypted_body = None
    if major == 1:
        if flags & FLAG_V1_ENCRYPTED:
            # RFC 2408 §3.1: everything after the header is encrypted.
            m.encrypted_body = raw[HEADER_LEN:]
            m.payloads = []
            return m
        payloads, perr = walk_payloads(raw, HEADER_LEN, mlen, np, _V1_PARSERS, False,
                                       truncated)
    else:
        payloads, perr = walk_payloads(raw, HEADER_LEN, mlen, np, _V2_PARSERS, True,
                                       truncated)
    m.payloads = payloads
    if perr:
        errors.extend(perr)
    return m
