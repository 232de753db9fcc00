"""PPTP (RFC 2637): control connection messages on TCP 1723 and the enhanced GRE (version 1)
header of the data channel.

* Control messages (§2): Length (2, the whole message), PPTP Message Type (2, 1 = control),
  Magic Cookie 0x1A2B3C4D (4), Control Message Type (2), Reserved0 (2), then the fixed fields of
  that message type (§2.1-§2.16).  Result and error codes are read where the message has them.
* Enhanced GRE (§4.1): flags C R K S s Recur A, version 1, protocol type 0x880B (PPP), Key =
  payload length (16) + Call ID (16) of the receiving peer, optional sequence and
  acknowledgement numbers.

Malformed input raises DissectError.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .errors import DissectError
from .types import Buffer
from .ip import Port

__all__ = [
    "PORT", "MAGIC", "GRE_PPP", "MESSAGE_TYPES", "SCCRQ", "SCCRP", "STOPCCRQ", "STOPCCRP",
    "ECHO_REQUEST", "ECHO_REPLY", "OCRQ", "OCRP", "ICRQ", "ICRP", "ICCN", "CCRQ", "CDN", "WEN",
    "SLI", "RESULTS", "ERROR_CODES", "STOP_REASONS", "Message", "split_stream", "parse_message",
    "parse_gre", "looks_like_gre", "message_name", "result_text", "result_is_error", "SUCCESS",
]

PORT = int(Port.PPTP)   # RFC 2637 §1.3
MAGIC = 0x1A2B3C4D      # §2
GRE_PPP = 0x880B        # §4.1

SCCRQ, SCCRP, STOPCCRQ, STOPCCRP, ECHO_REQUEST, ECHO_REPLY = 1, 2, 3, 4, 5, 6
OCRQ, OCRP, ICRQ, ICRP, ICCN, CCRQ, CDN, WEN, SLI = 7, 8, 9, 10, 11, 12, 13, 14, 15
MESSAGE_TYPES = {
    1: "Start-Control-Connection-Request", 2: "Start-Control-Connection-Reply",
    3: "Stop-Control-Connection-Request", 4: "Stop-Control-Connection-Reply",
    5: "Echo-Request", 6: "Echo-Reply", 7: "Outgoing-Call-Request", 8: "Outgoing-Call-Reply",
    9: "Incoming-Call-Request", 10: "Incoming-Call-Reply", 11: "Incoming-Call-Connected",
    12: "Call-Clear-Request", 13: "Call-Disconnect-Notify", 14: "WAN-Error-Notify",
    15: "Set-Link-Info",
}
#: minimum length of each message (§2.1-§2.16)
_SIZES = {1: 156, 2: 156, 3: 16, 4: 16, 5: 16, 6: 20, 7: 168, 8: 32, 9: 220, 10: 24, 11: 28,
          12: 16, 13: 148, 14: 40, 15: 24}
#: result codes per message type (§2.2, §2.4, §2.6, §2.8, §2.10, §2.13)
RESULTS = {
    SCCRP: {1: "Successful channel establishment", 2: "General error",
            3: "Command channel already exists", 4: "Requester is not authorized",
            5: "The protocol version of the requester is not supported"},
    STOPCCRP: {1: "OK", 2: "General error"},
    ECHO_REPLY: {1: "OK", 2: "General error"},
    OCRP: {1: "Connected", 2: "General error", 3: "No Carrier", 4: "Busy", 5: "No Dial Tone",
           6: "Time-out", 7: "Do Not Accept"},
    ICRP: {1: "Connect", 2: "General error", 3: "Do Not Accept"},
    CDN: {1: "Lost Carrier", 2: "General error", 3: "Admin Shutdown", 4: "Request"},
}
#: the result code that means success, per message type
SUCCESS = {SCCRP: 1, STOPCCRP: 1, ECHO_REPLY: 1, OCRP: 1, ICRP: 1}
ERROR_CODES = {0: "None", 1: "Not-Connected", 2: "Bad-Format", 3: "Bad-Value", 4: "No-Resource",
               5: "Bad-Call ID", 6: "PAC-Error"}   # §2.16
STOP_REASONS = {1: "None", 2: "Stop-Protocol", 3: "Stop-Local-Shutdown"}  # §2.3

_HDR = struct.Struct(">HHIHH").unpack_from
_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from


class Message(NamedTuple):
    type: int
    call_id: int | None        # the sender's Call ID (OCRQ/OCRP/ICRQ/ICRP/CCRQ/CDN)
    peer_call_id: int | None   # OCRP/ICRP/ICCN/WEN/SLI
    result: int | None
    error: int | None
    cause: int | None          # OCRP / CDN cause code
    reason: int | None         # StopCCRQ
    host_name: str | None      # SCCRQ / SCCRP
    vendor: str | None


def message_name(t: int) -> str:
    return MESSAGE_TYPES.get(t, f"control message type {t}")


#: Call-Disconnect-Notify result "General error" (§2.13)
_CDN_GENERAL_ERROR = 2


def result_is_error(msg_type: int, result: int | None) -> bool:
    """A reply whose result code is not its success code, or a Call-Disconnect-Notify for a
    general error (RFC 2637 §2.2-§2.13).  WAN-Error-Notify carries counters, never a result."""
    if msg_type == WEN or result is None:
        return False
    ok = SUCCESS.get(msg_type)
    if ok is not None and result != ok:
        return True
    return msg_type == CDN and result == _CDN_GENERAL_ERROR


def result_text(msg_type: int, result: int | None, error: int | None = None) -> str:
    meaning = RESULTS.get(msg_type, {}).get(result, "unknown") if result is not None else "unknown"
    s = f"result {result} ({meaning})"
    if error:
        s += f", error {error} ({ERROR_CODES.get(error, 'unknown')})"
    return s


def split_stream(buf: Buffer, start: int = 0) -> tuple[list[tuple[int, int]], int]:
    """Split control messages out of a TCP 1723 byte stream ``buf[start:]``: ``(messages,
    consumed)`` with ``(off, end)`` per complete message.  A length below 12 or a wrong magic
    cookie breaks the framing (DissectError at ``start``)."""
    out = []
    pos = start
    n = len(buf)
    while pos + 8 <= n:
        length = _U16(buf, pos)[0]
        cookie = _U32(buf, pos + 4)[0]
        if length < 12 or cookie != MAGIC:
            if pos == start:
                raise DissectError("not a PPTP control message (length "
                                   f"{length}, magic cookie 0x{cookie:08x})", pos)
            break
        e = pos + length
        if e > n:
            break
        out.append((pos, e))
        pos = e
    return out, pos - start


def _text(data: Buffer, a: int, b: int) -> str:
    raw = bytes(data[a:b]).split(b"\x00", 1)[0]
    return raw.decode("ascii", "replace")


def parse_message(data: Buffer, off: int, end: int) -> Message:
    if end > len(data):
        end = len(data)
    if end - off < 12 or off < 0:
        raise DissectError("PPTP message shorter than its header", off)
    length, ptype, cookie, ctype, _r = _HDR(data, off)
    if cookie != MAGIC:
        raise DissectError(f"PPTP magic cookie 0x{cookie:08x} (expected 0x1a2b3c4d)", off + 4)
    if ptype != 1:
        raise DissectError(f"PPTP message type {ptype} (only 1, control, is defined)", off + 2)
    if length != end - off:
        raise DissectError(f"PPTP Length {length} does not match the message", off)
    need = _SIZES.get(ctype)
    if need is None:
        raise DissectError(f"unknown PPTP control message type {ctype}", off + 8)
    if length < need:
        raise DissectError(f"PPTP {MESSAGE_TYPES[ctype]} of {length} bytes (at least {need})",
                           off)
    b = off + 12
    call = peer = result = error = cause = reason = None
    host = vendor = None
    if ctype in (SCCRQ, SCCRP):
        if ctype == SCCRP:
            result, error = data[b + 2], data[b + 3]
        host = _text(data, b + 16, b + 80)
        vendor = _text(data, b + 80, b + 144)
    elif ctype == STOPCCRQ:
        reason = data[b]
    elif ctype == STOPCCRP:
        result, error = data[b], data[b + 1]
    elif ctype == ECHO_REPLY:
        result, error = data[b + 4], data[b + 5]
    elif ctype in (OCRQ, ICRQ, CCRQ):
        call = _U16(data, b)[0]
    elif ctype == OCRP:
        call, peer = struct.unpack_from(">HH", data, b)
        result, error = data[b + 4], data[b + 5]
        cause = _U16(data, b + 6)[0]
    elif ctype == ICRP:
        call, peer = struct.unpack_from(">HH", data, b)
        result, error = data[b + 4], data[b + 5]
    elif ctype in (ICCN, WEN, SLI):
        peer = _U16(data, b)[0]
    elif ctype == CDN:
        call = _U16(data, b)[0]
        result, error = data[b + 2], data[b + 3]
        cause = _U16(data, b + 4)[0]
    return Message(ctype, call, peer, result, error, cause, reason, host, vendor)


def looks_like_gre(data: Buffer, off: int, end: int) -> bool:
    """Enhanced GRE of PPTP (RFC 2637 §4.1): version 1, protocol 0x880B, by its first 4 bytes."""
    return end - off >= 8 and data[off + 1] & 7 == 1 and \
        (data[off + 2] << 8 | data[off + 3]) == GRE_PPP


def parse_gre(data: Buffer, off: int, end: int) -> tuple[int, int, int | None, int | None, int]:
    """Enhanced GRE header: ``(call_id, payload_len, seq, ack, payload_off)`` (``seq``/``ack``
    None when absent).  DissectError when it is not version 1 with protocol 0x880B and the Key
    bit set."""
    if end > len(data):
        end = len(data)
    if end - off < 8 or off < 0:
        raise DissectError("enhanced GRE header truncated", off)
    flags, proto, plen, call = struct.unpack_from(">HHHH", data, off)
    if flags & 7 != 1 or proto != GRE_PPP or not flags & 0x2000:
        raise DissectError("not an enhanced GRE (PPTP) header", off)
    p = off + 8
    seq = ack = None
    if flags & 0x1000:
        if p + 4 > end:
            raise DissectError("enhanced GRE sequence number truncated", p)
        seq = _U32(data, p)[0]
        p += 4
    if flags & 0x0080:
        if p + 4 > end:
            raise DissectError("enhanced GRE acknowledgement number truncated", p)
        ack = _U32(data, p)[0]
        p += 4
    return (call, plen, seq, ack, p)
