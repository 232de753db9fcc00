"""DNS messages (RFC 1035 §4.1): header, the first question, the response code.

:func:`parse_dns` is enough to pair queries with answers and to judge them: the ID, QR, the
RCODE, the counts, and the first question's name (lower case, without the final dot) and type.
Compressed names (§4.1.4) are followed with a bound on the number of pointers.
"""

from __future__ import annotations

import struct

from .errors import DissectError
from .types import Buffer

#: RCODE values (RFC 1035 §4.1.1, RFC 6895)
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
#: query types named in reports
QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
          33: "SRV", 64: "SVCB", 65: "HTTPS", 255: "ANY"}

_HEAD = struct.Struct("!HHHHHH").unpack_from
_MAX_POINTERS = 16
_ID_FLAGS = struct.Struct("!HH").unpack_from


def message_id(data: Buffer, off: int) -> tuple[int, bool]:
    """``(ID, QR)`` of the DNS header at ``off`` (RFC 1035 §4.1.1; QR true: a response), the
    12-byte header checked by the caller: enough to pair a query with its answer."""
    ident, flags = _ID_FLAGS(data, off)
    return ident, bool(flags & 0x8000)


def read_name(data: Buffer, off: int, end: int) -> tuple[str, int]:
    """``(name, offset after the name)`` of the domain name at ``off`` (RFC 1035 §3.1, §4.1.4)."""
    labels = []
    pos = off
    after = None
    jumps = 0
    while True:
        if pos >= end:
            raise DissectError("DNS name runs past the message", pos)
        ln = data[pos]
        if ln == 0:
            pos += 1
            break
        if ln & 0xC0 == 0xC0:
            if pos + 2 > end:
                raise DissectError("truncated DNS name pointer", pos)
            if after is None:
                after = pos + 2
            jumps += 1
            if jumps > _MAX_POINTERS:
                raise DissectError("DNS name pointer loop", pos)
            pos = ((ln & 0x3F) << 8 | data[pos + 1])
            continue
        if ln & 0xC0:
            raise DissectError(f"DNS label type 0x{ln & 0xC0:02x} not supported", pos)
        if pos + 1 + ln > end:
            raise DissectError("DNS label runs past the message", pos)
        labels.append(bytes(data[pos + 1:pos + 1 + ln]).decode("ascii", "replace").lower())
        pos += 1 + ln
    return ".".join(labels), (after if after is not None else pos)


def parse_dns(data: Buffer, off: int,
              end: int) -> tuple[int, bool, int, int, int, str | None, int | None]:
    """``(ident, is_response, rcode, qdcount, ancount, qname, qtype)`` of the DNS message at
    ``data[off:end]`` (UDP payload; for TCP skip the 2-byte length first).  ``qname`` / ``qtype``
    are None without a question."""
    if end > len(data):
        end = len(data)
    if off + 12 > end:
        raise DissectError("truncated DNS header", off)
    ident, flags, qd, an, _ns, _ar = _HEAD(data, off)
    qname = qtype = None
    if qd:
        qname, p = read_name(data, off + 12, end)
        if p + 4 > end:
            raise DissectError("truncated DNS question", p)
        qtype = struct.unpack_from("!H", data, p)[0]
    return ident, bool(flags & 0x8000), flags & 0x0F, qd, an, qname, qtype
