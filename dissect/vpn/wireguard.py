"""WireGuard messages (UDP, any port).

The wire format is the WireGuard paper's (J. A. Donenfeld, "WireGuard: Next Generation Kernel
Network Tunnel", NDSS 2017, §5.4; the protocol page wireguard.com/protocol): a one-byte message
type, three reserved zero bytes, then

* 1 handshake initiation (148 bytes): sender index, unencrypted ephemeral (32), encrypted static
  (32 + 16), encrypted timestamp (12 + 16), mac1 (16), mac2 (16);
* 2 handshake response (92 bytes): sender index, receiver index, ephemeral (32), encrypted
  nothing (16), mac1, mac2;
* 3 cookie reply (64 bytes): receiver index, nonce (24), encrypted cookie (16 + 16);
* 4 transport data (at least 32 bytes): receiver index, 64-bit little-endian counter, the packet
  encrypted with its 16-byte tag; the plaintext is padded to a multiple of 16 unless that would
  exceed the MTU (§5.4.6), so lengths are 32 + 16·n except for packets near the MTU (a
  keepalive is 32 bytes).

Indexes and the counter are little-endian.  mac2 is all zeros unless the sender holds a cookie
(§5.4.4).  Some clients (TunnelBear) send handshake messages longer than these sizes (zero
padding, or extra bytes): :func:`parse` reads the standard fields and says whether the message
had exactly the standard form (``exact``: the size, or the size followed by zero bytes only) so
that callers can ask for more evidence before trusting a longer one.  Results are plain tuples;
malformed input raises DissectError.
"""

from __future__ import annotations

import struct

from .errors import DissectError
from .types import Buffer

__all__ = [
    "INITIATION", "RESPONSE", "COOKIE_REPLY", "DATA", "MESSAGE_NAMES", "SIZES",
    "looks_like", "parse", "message_name",
    "REKEY_AFTER_TIME", "REJECT_AFTER_TIME", "REKEY_TIMEOUT", "KEEPALIVE_TIMEOUT",
    "REKEY_ATTEMPT_TIME",
]

INITIATION = 1
RESPONSE = 2
COOKIE_REPLY = 3
DATA = 4
MESSAGE_NAMES = {1: "handshake initiation", 2: "handshake response", 3: "cookie reply",
                 4: "transport data"}
SIZES = {INITIATION: 148, RESPONSE: 92, COOKIE_REPLY: 64}

# Protocol timers, WireGuard paper §6.1 (seconds).
REKEY_AFTER_TIME = 120
REJECT_AFTER_TIME = 180
REKEY_ATTEMPT_TIME = 90
REKEY_TIMEOUT = 5
KEEPALIVE_TIMEOUT = 10

_I = struct.Struct("<I").unpack_from
_II = struct.Struct("<II").unpack_from
_IQ = struct.Struct("<IQ").unpack_from
_ZERO16 = bytes(16)
#: bytes a message must have captured to be read: the header (type, reserved), transport data's
#: receiver index and counter, a handshake message's indexes
_HEADER, _DATA_FIELDS = 4, 16
_INDEXES = {INITIATION: 8, RESPONSE: 12, COOKIE_REPLY: 8}


def message_name(t: int) -> str:
    return MESSAGE_NAMES.get(t, f"type {t}")


def _padding_zero(data: Buffer, start: int, end: int) -> bool:
    return start >= end or not any(data[start:end])


#: a transport data message at least this long may end unpadded (the MTU cut the padding)
MTU_CUT = 1200


def looks_like(data: Buffer, off: int, end: int) -> bool:
    """Type 1..4, three zero bytes, and at least the length of that type (data: 32 + 16·n bytes,
    or any length from :data:`MTU_CUT`).  An ``end`` beyond ``data`` is the message's end on the
    wire (the snapshot length cut the capture): the sizes are the wire's."""
    n = end - off
    if n < 32 or min(end, len(data)) - off < _HEADER or data[off + 1] or data[off + 2] \
            or data[off + 3]:
        return False
    t = data[off]
    if t == DATA:
        return not (n - 32) & 15 or n >= MTU_CUT
    size = SIZES.get(t)
    return size is not None and n >= size


def parse(data: Buffer, off: int, end: int) -> tuple[int, ...]:
    """Parse one WireGuard message.

    Returns a tuple whose first item is the type:

    * ``(INITIATION, sender, mac2_set, exact)``
    * ``(RESPONSE, sender, receiver, mac2_set, exact)``
    * ``(COOKIE_REPLY, receiver, exact)``
    * ``(DATA, receiver, counter, payload_len)`` (``payload_len`` 0 for a keepalive)
    """
    cap = min(end, len(data))  # ``end`` beyond ``data``: the message's end on the wire
    n = end - off
    if cap - off < _HEADER or off < 0:
        raise DissectError("WireGuard message shorter than its header", off)
    t = data[off]
    if data[off + 1] or data[off + 2] or data[off + 3]:
        raise DissectError("WireGuard reserved bytes not zero", off + 1)
    if t == DATA:
        if n < 32 or cap - off < _DATA_FIELDS:
            raise DissectError(f"WireGuard transport data of {n} bytes (at least 32)", off)
        receiver, counter = _IQ(data, off + 4)
        return (DATA, receiver, counter, n - 32)
    size = SIZES.get(t)
    if size is None:
        raise DissectError(f"unknown WireGuard message type {t}", off)
    if n < size or cap - off < _INDEXES[t]:
        raise DissectError(f"WireGuard {MESSAGE_NAMES[t]} of {n} bytes (expected {size})", off)
    exact = n == size or _padding_zero(data, off + size, cap)
    # (mac2 cut by the snapshot length: not known to be set)
    if t == INITIATION:
        mac2 = cap - off >= size and data[off + 132:off + 148] != _ZERO16
        return (INITIATION, _I(data, off + 4)[0], mac2, exact)
    if t == RESPONSE:
        sender, receiver = _II(data, off + 4)
        mac2 = cap - off >= size and data[off + 76:off + 92] != _ZERO16
        return (RESPONSE, sender, receiver, mac2, exact)
    return (COOKIE_REPLY, _I(data, off + 4)[0], exact)
