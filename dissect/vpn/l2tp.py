"""L2TP over UDP (port 1701): version 2 (RFC 2661) and version 3 (RFC 3931).

* L2TPv2 header (RFC 2661 §3.1): flags T (control), L (length present), S (Ns/Nr present),
  O (offset present), P (priority) and the version in the low 4 bits, then Length (when L),
  Tunnel ID, Session ID, Ns/Nr (when S), Offset Size/pad (when O).  Control messages have T, L
  and S set; a control message without AVPs is a ZLB acknowledgement (§5.8).
* L2TPv3 over UDP (RFC 3931 §4.1.2.1): control messages have the same flags and version 3, a
  32-bit Control Connection ID, then Ns/Nr (§3.2.1); data messages start with T clear, the
  version, 16 reserved bits and a 32-bit Session ID.
* AVPs (RFC 2661 §4.1, RFC 3931 §5.1): M and H bits, a 10-bit length counting the 6-byte
  header, Vendor ID, Attribute Type, value.  The first AVP of a control message is the Message
  Type (type 0); Result Code (type 1): result code, optional error code and message
  (RFC 2661 §4.4.2, RFC 3931 §5.4.2).  Hidden (H) values are encrypted and not read.

Message type, result and error code names are RFC 2661 §3.2 / §4.4.2 and RFC 3931 §6 / §5.4.2.
Malformed input raises DissectError.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .errors import DissectError
from .types import Buffer
from .ip import Port

__all__ = [
    "PORT", "MESSAGE_TYPES", "SCCRQ", "SCCRP", "SCCCN", "STOPCCN", "HELLO", "ICRQ", "ICRP",
    "ICCN", "OCRQ", "OCRP", "OCCN", "CDN", "WEN", "SLI", "ACK",
    "STOPCCN_RESULTS", "CDN_RESULTS", "ERROR_CODES", "Header", "Control", "Avp",
    "parse_header", "parse_avps", "parse_control", "message_name", "result_text",
    "result_is_normal",
]

PORT = int(Port.L2TP)  # RFC 2661 §8.1

SCCRQ, SCCRP, SCCCN, STOPCCN, HELLO = 1, 2, 3, 4, 6
OCRQ, OCRP, OCCN, ICRQ, ICRP, ICCN = 7, 8, 9, 10, 11, 12
CDN, WEN, SLI = 14, 15, 16
ACK = 20  # RFC 3931 §6.1 (Explicit Acknowledgement)
MESSAGE_TYPES = {
    1: "SCCRQ", 2: "SCCRP", 3: "SCCCN", 4: "StopCCN", 6: "HELLO", 7: "OCRQ", 8: "OCRP",
    9: "OCCN", 10: "ICRQ", 11: "ICRP", 12: "ICCN", 14: "CDN", 15: "WEN", 16: "SLI", 20: "ACK",
    21: "FSQ", 22: "FSR",
}
STOPCCN_RESULTS = {
    0: "Reserved", 1: "General request to clear control connection",
    2: "General error, Error Code indicates the problem", 3: "Control channel already exists",
    4: "Requester is not authorized to establish a control channel",
    5: "The protocol version of the requester is not supported",
    6: "Requester is being shut down", 7: "Finite State Machine error",
}
CDN_RESULTS = {
    0: "Reserved", 1: "Call disconnected due to loss of carrier",
    2: "Call disconnected for the reason indicated in error code",
    3: "Call disconnected for administrative reasons",
    4: "Call failed due to lack of appropriate facilities being available (temporary condition)",
    5: "Call failed due to lack of appropriate facilities being available (permanent condition)",
    6: "Invalid destination", 7: "Call failed due to no carrier detected",
    8: "Call failed due to detection of a busy signal", 9: "Call failed due to lack of a dial tone",
    10: "Call was not established within time allotted by LAC",
    11: "Call was connected but no appropriate framing was detected",
    12: "Disconnecting call due to mismatching SDS value",
    13: "Session not established due to losing tie breaker",
    14: "Session not established due to unsupported PW type",
    15: "Session not established, sequencing required without valid L2-Specific Sublayer",
    16: "Finite state machine error or timeout",
}
ERROR_CODES = {
    0: "No general error", 1: "No control connection exists yet for this pair of LCCEs",
    2: "Length is wrong", 3: "One of the field values was out of range",
    4: "Insufficient resources to handle this operation now",
    5: "Invalid Session ID", 6: "A generic vendor-specific error occurred",
    7: "Try another", 8: "Receipt of an unknown AVP with the M bit set",
    9: "Try another directed", 10: "Next hop unreachable", 11: "Next hop busy", 12: "TSA busy",
}

AVP_MESSAGE_TYPE = 0
AVP_RESULT_CODE = 1
AVP_HOST_NAME = 7
AVP_ASSIGNED_TUNNEL_ID = 9          # v2
AVP_ASSIGNED_SESSION_ID = 14        # v2
AVP_ASSIGNED_CONTROL_CONN_ID = 61   # v3
AVP_LOCAL_SESSION_ID = 63           # v3
AVP_REMOTE_SESSION_ID = 64          # v3

_T, _L, _S, _O = 0x8000, 0x4000, 0x0800, 0x0200
_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from


class Header(NamedTuple):
    version: int          # 2 or 3
    control: bool
    length: int | None
    tunnel_id: int        # v2 Tunnel ID / v3 Control Connection ID (0 for v3 data)
    session_id: int
    ns: int | None
    nr: int | None
    payload_off: int


class Avp(NamedTuple):
    mandatory: bool
    hidden: bool
    vendor: int
    type: int
    value_off: int
    value_end: int


class Control(NamedTuple):
    header: Header
    #: None for a ZLB (no AVPs)
    msg_type: int | None
    result: int | None
    error: int | None
    error_message: str | None
    assigned_tunnel_id: int | None
    assigned_session_id: int | None
    host_name: str | None


def message_name(t: int) -> str:
    if t is None:
        return "ZLB"
    return MESSAGE_TYPES.get(t, f"message type {t}")


#: result codes of an orderly end: StopCCN 1 "General request to clear control connection"
#: (RFC 2661 §4.4.2); CDN 1 "loss of carrier" and 3 "administrative reasons"
_NORMAL_RESULTS = {STOPCCN: (1,), CDN: (1, 3)}


def result_is_normal(msg_type: int, result: int | None) -> bool:
    """A StopCCN / CDN result code that ends a tunnel or call in the ordinary way."""
    return result in _NORMAL_RESULTS.get(msg_type, ())


def result_text(msg_type: int, result: int | None, error: int | None = None) -> str:
    table = STOPCCN_RESULTS if msg_type == STOPCCN else CDN_RESULTS
    meaning = table.get(result, "unknown") if result is not None else "unknown"
    s = f"result {result} ({meaning})"
    if error is not None and error != 0:
        s += f", error {error} ({ERROR_CODES.get(error, 'unknown')})"
    return s


def parse_header(data: Buffer, off: int, end: int) -> Header:
    if end > len(data):
        end = len(data)
    if end - off < 6 or off < 0:
        raise DissectError("L2TP header truncated", off)
    flags = _U16(data, off)[0]
    ver = flags & 0x0F
    ctl = bool(flags & _T)
    if ver == 2:
        p = off + 2
        length = None
        if flags & _L:
            length = _U16(data, p)[0]
            p += 2
            if length < 6 or off + length > end:
                raise DissectError(f"L2TP Length {length} does not fit the datagram", off + 2)
        if p + 4 > end:
            raise DissectError("L2TP tunnel/session IDs truncated", p)
        tid, sid = struct.unpack_from(">HH", data, p)
        p += 4
        ns = nr = None
        if flags & _S:
            if p + 4 > end:
                raise DissectError("L2TP Ns/Nr truncated", p)
            ns, nr = struct.unpack_from(">HH", data, p)
            p += 4
        if flags & _O:
            if p + 2 > end:
                raise DissectError("L2TP Offset Size truncated", p)
            p += 2 + _U16(data, p)[0]
            if p > end:
                raise DissectError("L2TP Offset pad runs past the datagram", p)
        if ctl and (not flags & _L or not flags & _S):
            raise DissectError("L2TP control message without Length or Ns/Nr (RFC 2661 §3.1)",
                               off)
        return Header(2, ctl, length, tid, sid, ns, nr, p)
    if ver == 3:
        if ctl:
            if not flags & _L or not flags & _S:
                raise DissectError("L2TPv3 control message without Length or Ns/Nr", off)
            if end - off < 12:
                raise DissectError("L2TPv3 control header truncated", off)
            length = _U16(data, off + 2)[0]
            if length < 12 or off + length > end:
                raise DissectError(f"L2TPv3 Length {length} does not fit the datagram", off + 2)
            ccid = _U32(data, off + 4)[0]
            ns, nr = struct.unpack_from(">HH", data, off + 8)
            return Header(3, True, length, ccid, 0, ns, nr, off + 12)
        if end - off < 8:
            raise DissectError("L2TPv3 data header truncated", off)
        return Header(3, False, None, 0, _U32(data, off + 4)[0], None, None, off + 8)
    raise DissectError(f"L2TP version {ver} (only 2 and 3 exist)", off + 1)


def parse_avps(data: Buffer, off: int, end: int) -> list[Avp]:
    out = []
    p = off
    while p < end:
        if p + 6 > end:
            raise DissectError("L2TP AVP header truncated", p)
        w, vendor, atype = struct.unpack_from(">HHH", data, p)
        length = w & 0x03FF
        if length < 6 or p + length > end:
            raise DissectError(f"L2TP AVP length {length} invalid", p)
        out.append(Avp(bool(w & 0x8000), bool(w & 0x4000), vendor, atype, p + 6, p + length))
        p += length
    return out


def parse_control(data: Buffer, off: int, end: int) -> Control:
    """Parse a control message (header + AVPs) at ``data[off:end]``."""
    if end > len(data):
        end = len(data)
    h = parse_header(data, off, end)
    if not h.control:
        raise DissectError("L2TP data message, not a control message", off)
    stop = off + h.length if h.length is not None else end
    avps = parse_avps(data, h.payload_off, stop)
    if not avps:
        return Control(h, None, None, None, None, None, None, None)
    first = avps[0]
    if first.vendor != 0 or first.type != AVP_MESSAGE_TYPE or first.hidden:
        raise DissectError("L2TP control message does not start with a Message Type AVP",
                           h.payload_off)
    if first.value_end - first.value_off != 2:
        raise DissectError("L2TP Message Type AVP of the wrong length", first.value_off)
    mtype = _U16(data, first.value_off)[0]
    result = error = msg = None
    atid = asid = None
    host = None
    for a in avps[1:]:
        if a.vendor != 0 or a.hidden:
            continue
        n = a.value_end - a.value_off
        if a.type == AVP_RESULT_CODE:
            if n < 2:
                raise DissectError("L2TP Result Code AVP too short", a.value_off)
            result = _U16(data, a.value_off)[0]
            if n >= 4:
                error = _U16(data, a.value_off + 2)[0]
            if n > 4:
                msg = bytes(data[a.value_off + 4:a.value_end]).decode("utf-8", "replace")
        elif a.type in (AVP_ASSIGNED_TUNNEL_ID, AVP_ASSIGNED_SESSION_ID) and n == 2:
            v = _U16(data, a.value_off)[0]
            if a.type == AVP_ASSIGNED_TUNNEL_ID:
                atid = v
            else:
                asid = v
        elif a.type in (AVP_ASSIGNED_CONTROL_CONN_ID, AVP_LOCAL_SESSION_ID) and n == 4:
            v = _U32(data, a.value_off)[0]
            if a.type == AVP_ASSIGNED_CONTROL_CONN_ID:
                atid = v
            else:
                asid = v
        elif a.type == AVP_HOST_NAME and n:
            host = bytes(data[a.value_off:a.value_end]).decode("utf-8", "replace")
    return Control(h, mtype, result, error, msg, atid, asid, host)
