"""OpenVPN packets (TLS mode) over UDP and TCP.

OpenVPN has no RFC; the wire format is the one documented by the project ("OpenVPN Protocol",
openvpn.net/community-resources/openvpn-protocol, the comment block of ssl.h / ssl_pkt.h, and
doc/tls-crypt-v2.txt for tls-crypt-v2):

* TCP only: a 16-bit big-endian packet length (not counting itself) before every packet;
* byte 0: opcode (high 5 bits) and key ID (low 3 bits);
* P_DATA_V1: the data channel payload follows; P_DATA_V2: a 24-bit peer ID, then the payload;
* control packets (every other opcode): the 64-bit session ID of the sender, then, depending on
  the control-channel protection configured on both ends:

  - none: the reliability layer in the clear;
  - ``tls-auth``: an HMAC (16..64 bytes, the digest size of ``auth``), a 32-bit replay packet ID
    and a 32-bit net time (seconds since the epoch), then the reliability layer in the clear;
  - ``tls-crypt`` / ``tls-crypt-v2``: replay packet ID, net time, a 256-bit tag, then the
    reliability layer and payload *encrypted*; HARD_RESET_CLIENT_V3 and WKC_V1 (tls-crypt-v2)
    carry the wrapped client key at the end, its 16-bit length (counting itself) last;

* the reliability layer: an ACK array length (8 bits), that many 32-bit packet IDs being
  acknowledged and, when the array is not empty, the 64-bit remote session ID; then (not in
  P_ACK_V1) the 32-bit message packet ID and the payload (TLS records, in order of packet ID).

Nothing on the wire says which protection is in use: :func:`detect_layout` finds the one under
which a hard reset is self-consistent (no ACKs, message packet ID 0, a replay packet ID among the
first of its sender's context), and callers keep it per session.  Other control packets are
ambiguous alone (a tls-crypt header, a tls-auth header and a plain reliability layer can all
parse the same bytes): :func:`wrap_candidates` lists the wrapped readings of one packet and
:func:`same_context` confirms one with a second packet of the same sender (same session ID, same
net time, a replay packet ID a little higher).  The sender's clock is never trusted: the net time
is a field the sender fills from its own clock, so a capture replayed later or a sender whose
clock is off by days must be recognised all the same (callers may report the skew).  Results are
plain tuples / NamedTuples; malformed input raises :class:`DissectError`.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .errors import DissectError
from .types import Buffer

__all__ = [
    "OPCODES", "TCP_FRAME_HEAD", "P_CONTROL_HARD_RESET_CLIENT_V1", "P_CONTROL_HARD_RESET_SERVER_V1",
    "P_CONTROL_SOFT_RESET_V1", "P_CONTROL_V1", "P_ACK_V1", "P_DATA_V1",
    "P_CONTROL_HARD_RESET_CLIENT_V2", "P_CONTROL_HARD_RESET_SERVER_V2", "P_DATA_V2",
    "P_CONTROL_HARD_RESET_CLIENT_V3", "P_CONTROL_WKC_V1",
    "CLIENT_RESETS", "SERVER_RESETS", "DATA_OPCODES", "CONTROL_OPCODES",
    "PLAIN", "CRYPT", "AUTH_SIZES", "Control", "opcode_name", "layout_name",
    "looks_like", "parse_header", "parse_control", "detect_layout", "wrap_candidates",
    "same_context", "split_tcp", "tcp_stream_start", "RESET_MAX_REPLAY", "REPLAY_STEP_MAX",
    "data_packet_id",
]

P_CONTROL_HARD_RESET_CLIENT_V1 = 1
P_CONTROL_HARD_RESET_SERVER_V1 = 2
P_CONTROL_SOFT_RESET_V1 = 3
P_CONTROL_V1 = 4
P_ACK_V1 = 5
P_DATA_V1 = 6
P_CONTROL_HARD_RESET_CLIENT_V2 = 7
P_CONTROL_HARD_RESET_SERVER_V2 = 8
P_DATA_V2 = 9
P_CONTROL_HARD_RESET_CLIENT_V3 = 10   # tls-crypt-v2
P_CONTROL_WKC_V1 = 11                 # tls-crypt-v2: control packet carrying the wrapped key

OPCODES = {
    1: "P_CONTROL_HARD_RESET_CLIENT_V1", 2: "P_CONTROL_HARD_RESET_SERVER_V1",
    3: "P_CONTROL_SOFT_RESET_V1", 4: "P_CONTROL_V1", 5: "P_ACK_V1", 6: "P_DATA_V1",
    7: "P_CONTROL_HARD_RESET_CLIENT_V2", 8: "P_CONTROL_HARD_RESET_SERVER_V2", 9: "P_DATA_V2",
    10: "P_CONTROL_HARD_RESET_CLIENT_V3", 11: "P_CONTROL_WKC_V1",
}
#: what frames an OpenVPN-over-TCP packet: its 16-bit Length and its opcode byte
TCP_FRAME_HEAD = 3
CLIENT_RESETS = frozenset((1, 7, 10))
SERVER_RESETS = frozenset((2, 8))
DATA_OPCODES = frozenset((6, 9))
CONTROL_OPCODES = frozenset((1, 2, 3, 4, 5, 7, 8, 10, 11))
_WKC_OPCODES = frozenset((10, 11))

#: control-channel protection ("layout"): PLAIN, CRYPT (tls-crypt / tls-crypt-v2) or the HMAC
#: size in bytes for tls-auth (MD5 16, SHA1 20, SHA224 28, SHA256 32, SHA384 48, SHA512 64)
PLAIN = 0
CRYPT = -1
AUTH_SIZES = (20, 32, 64, 16, 28, 48)
_TAG = 32          # tls-crypt: HMAC-SHA256 tag
#: the reliability layer acknowledges at most this many packet IDs per packet (OpenVPN's
#: RELIABLE_ACK_SIZE is 8)
MAX_ACKS = 8
#: a plausible net time (the sender's clock when its replay context started): 2005-01-01 ..
#: 2100-01-01.  Only a sanity bound: about 70 % of random 32-bit values pass it, so it never
#: decides a layout alone.
_TIME_MIN = 1104537600
_TIME_MAX = 4102444800
#: a hard reset is among the first packets its sender wraps in a new tls-auth / tls-crypt
#: context: replay packet ID 1, or a few more when it was retransmitted (OpenVPN wraps every
#: packet it sends, retransmissions included, with the next ID; a session gives up after its
#: hand-window of 60 s, a dozen retransmissions at most).  Random bytes pass this with
#: probability 64 / 2**32.
RESET_MAX_REPLAY = 64
#: two wrapped packets of one sender belong to one replay context when their net times are equal
#: and the later replay packet ID is higher by at most this much
REPLAY_STEP_MAX = 1024

_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_U64 = struct.Struct(">Q").unpack_from
_II = struct.Struct(">II").unpack_from


def opcode_name(op: int) -> str:
    return OPCODES.get(op, f"opcode {op}")


def layout_name(layout: int | None) -> str:
    if layout is None:
        return "unknown"
    if layout == PLAIN:
        return "none"
    if layout == CRYPT:
        return "tls-crypt"
    return f"tls-auth (HMAC {layout * 8} bits)"


#: a :func:`wrap_candidates` entry: ``(layout, session_id, replay_id, net_time)``
Candidate = tuple[int, int, int, int]


class Control(NamedTuple):
    """A control packet (every opcode except P_DATA_V1/V2) under a given layout."""

    opcode: int
    key_id: int
    session_id: int
    #: tls-auth / tls-crypt replay protection (None without)
    replay_id: int | None
    net_time: int | None
    #: True for tls-crypt: ``acks`` .. ``payload`` are encrypted and not known
    encrypted: bool
    acks: tuple[int, ...]
    remote_session_id: int | None
    #: message packet ID (None for P_ACK_V1 and encrypted packets)
    packet_id: int | None
    payload_off: int
    payload_end: int
    #: tls-crypt-v2 wrapped client key length (HARD_RESET_CLIENT_V3 / WKC_V1), else 0
    wkc_len: int


def looks_like(data: Buffer, off: int, end: int) -> bool:
    """Cheap candidate test for a UDP payload: a known opcode and the minimum length for it.

    Random datagrams pass about a third of the time: callers confirm with session-ID consistency
    (and :func:`detect_layout` on hard resets) before calling a flow OpenVPN.
    """
    n = end - off
    if n < 4:
        return False
    op = data[off] >> 3
    if op == 6 or op == 9:
        return n >= 8
    return 1 <= op <= 11 and n >= 14


def opcode(data: Buffer, off: int) -> tuple[int, int]:
    """``(opcode, key_id)`` of the packet at ``data[off]``: the first byte holds the opcode in
    its high 5 bits and the key ID in its low 3 (the caller knows the packet is not empty)."""
    b = data[off]
    return b >> 3, b & 7


def parse_header(data: Buffer, off: int, end: int) -> tuple[int, int, int | None]:
    """``(opcode, key_id, session_id_or_peer_id)``: the session ID for control packets, the
    24-bit peer ID for P_DATA_V2, None for P_DATA_V1."""
    if end - off < 1 or off < 0 or off >= len(data):
        raise DissectError("OpenVPN packet empty", off)
    b = data[off]
    op = b >> 3
    if op not in OPCODES:
        raise DissectError(f"unknown OpenVPN opcode {op}", off)
    if op == P_DATA_V1:
        return (op, b & 7, None)
    if op == P_DATA_V2:
        if end - off < 4:
            raise DissectError("OpenVPN P_DATA_V2 shorter than its peer ID", off)
        return (op, b & 7, (data[off + 1] << 16) | (data[off + 2] << 8) | data[off + 3])
    if end - off < 9 or off + 9 > len(data):
        raise DissectError(f"OpenVPN {OPCODES[op]} shorter than its session ID", off)
    sid: int = _U64(data, off + 1)[0]
    return (op, b & 7, sid)


def data_packet_id(data: Buffer, off: int, end: int) -> int | None:
    """The 32-bit packet ID of a data packet as the AEAD data channel (OpenVPN 2.4+, GCM /
    ChaCha20-Poly1305) sends it in the clear: right after the opcode byte (P_DATA_V1) or the
    peer ID (P_DATA_V2), before the 16-byte tag.  Under CBC + HMAC the same bytes are part of the
    HMAC (no order): the caller checks that the numbers run in order.  None when the packet is
    too short to hold an ID and a tag, or is not a data packet."""
    if off < 0 or end > len(data) or end - off < 1:
        return None
    op = data[off] >> 3
    pos = off + 1 if op == P_DATA_V1 else off + 4 if op == P_DATA_V2 else -1
    if pos < 0 or pos + 4 + 16 > end:
        return None
    pid: int = _U32(data, pos)[0]
    return pid


def parse_control(data: Buffer, off: int, end: int, layout: int = PLAIN) -> Control:
    """Parse a control packet at ``data[off:end]`` under ``layout`` (PLAIN, CRYPT or an HMAC
    size)."""
    if end > len(data):
        end = len(data)
    op, key_id, sid = parse_header(data, off, end)
    if op not in CONTROL_OPCODES:
        raise DissectError(f"{OPCODES[op]} is not a control packet", off)
    assert sid is not None  # a control packet has its session ID (parse_header)
    pos = off + 9
    replay = ntime = None
    wkc = 0
    if layout == CRYPT:
        if pos + 8 + _TAG > end:
            raise DissectError("OpenVPN tls-crypt header truncated", pos)
        replay, ntime = _II(data, pos)
        pos += 8 + _TAG
        if op in _WKC_OPCODES:
            if end - pos < 2:
                raise DissectError("OpenVPN tls-crypt-v2 wrapped key missing", pos)
            wkc = _U16(data, end - 2)[0]
            if wkc < 2 or end - wkc < pos:
                raise DissectError(f"OpenVPN tls-crypt-v2 wrapped key length {wkc} invalid",
                                   end - 2)
        return Control(op, key_id, sid, replay, ntime, True, (), None, None, pos, end - wkc, wkc)
    if layout != PLAIN:
        if layout not in AUTH_SIZES:
            raise DissectError(f"unknown OpenVPN layout {layout}", off)
        if pos + layout + 8 > end:
            raise DissectError("OpenVPN tls-auth header truncated", pos)
        replay, ntime = _II(data, pos + layout)
        pos += layout + 8
    if pos >= end:
        raise DissectError("OpenVPN ACK array length missing", pos)
    nack = data[pos]
    pos += 1
    if nack > MAX_ACKS:
        raise DissectError(f"OpenVPN ACK array of {nack} entries (at most {MAX_ACKS})", pos - 1)
    acks = ()
    rsid = None
    if nack:
        need = 4 * nack + 8
        if pos + need > end:
            raise DissectError("OpenVPN ACK array truncated", pos)
        acks = struct.unpack_from(">%dI" % nack, data, pos)
        pos += 4 * nack
        rsid = _U64(data, pos)[0]
        pos += 8
    if op == P_ACK_V1:
        if not nack:
            raise DissectError("OpenVPN P_ACK_V1 without acknowledgements", pos - 1)
        if pos != end:
            raise DissectError(f"OpenVPN P_ACK_V1 with {end - pos} trailing bytes", pos)
        return Control(op, key_id, sid, replay, ntime, False, acks, rsid, None, pos, pos, 0)
    if pos + 4 > end:
        raise DissectError("OpenVPN message packet ID truncated", pos)
    pid = _U32(data, pos)[0]
    pos += 4
    return Control(op, key_id, sid, replay, ntime, False, acks, rsid, pid, pos, end, 0)


def _time_ok(t: int) -> bool:
    return _TIME_MIN <= t <= _TIME_MAX


def _wrapped(data: Buffer, off: int, end: int, op: int, layout: int) -> tuple[int, int] | None:
    """``(replay_id, net_time)`` of a control packet read under a wrapped ``layout`` (CRYPT or an
    HMAC size) when it parses and the two fields are plausible, else None."""
    pos = off + 9
    if layout == CRYPT:
        if end - pos < 8 + _TAG + (0 if op == P_ACK_V1 else 1):
            return None
        rid, t = _II(data, pos)
    else:
        if end - pos < layout + 9:
            return None
        rid, t = _II(data, pos + layout)
    if rid < 1 or not _time_ok(t):
        return None
    try:
        c = parse_control(data, off, end, layout)
    except DissectError:
        return None
    if layout != CRYPT and not _plausible(c):
        return None
    return rid, t


def wrap_candidates(data: Buffer, off: int, end: int) -> list[Candidate]:
    """``[(layout, session_id, replay_id, net_time), ...]``: the wrapped layouts (tls-crypt, then
    tls-auth by HMAC size) under which the control packet ``data[off:end]`` parses with a replay
    packet ID >= 1 and a plausible net time.  One packet is weak evidence (random bytes pass the
    net-time bound most of the time); confirm with :func:`same_context`."""
    if end > len(data):
        end = len(data)
    try:
        op, _k, sid = parse_header(data, off, end)
    except DissectError:
        return []
    if op not in CONTROL_OPCODES:
        return []
    out: list[Candidate] = []
    for layout in (CRYPT,) + AUTH_SIZES:
        w = _wrapped(data, off, end, op, layout)
        if w is not None:
            assert sid is not None  # a control packet (parse_header)
            out.append((layout, sid, w[0], w[1]))
    return out


def same_context(earlier: Candidate, later: Candidate) -> bool:
    """True when two :func:`wrap_candidates` entries of one sender (earlier and later in the
    capture) read as one replay context: same layout and session ID, the same net time, and a
    replay packet ID higher by 1 .. :data:`REPLAY_STEP_MAX`."""
    return (earlier[0] == later[0] and earlier[1] == later[1] and earlier[3] == later[3]
            and 0 < later[2] - earlier[2] <= REPLAY_STEP_MAX)


def detect_layout(data: Buffer, off: int, end: int) -> int | None:
    """The layout under which the control packet ``data[off:end]`` is self-consistent on its own,
    or None.

    Hard resets decide alone: tls-crypt — a replay packet ID of 1 .. :data:`RESET_MAX_REPLAY`
    and a plausible net time right after the session ID; tls-auth — the same after an HMAC of
    one of the usual sizes, then a valid reliability layer (client resets: no ACKs and message
    packet ID 0; server resets: message packet ID 0); none — that reliability layer right after
    the session ID.  Any other control packet is PLAIN when no wrapped reading exists (see
    :func:`wrap_candidates`) and its reliability layer parses, else None: the caller confirms a
    wrapped reading with a second packet (:func:`same_context`).  The net time is the sender's
    clock and is not compared with the capture's.
    """
    if end > len(data):
        end = len(data)
    try:
        op, _k, _sid = parse_header(data, off, end)
    except DissectError:
        return None
    if op not in CONTROL_OPCODES:
        return None
    wrapped = wrap_candidates(data, off, end)
    if op in CLIENT_RESETS or op in SERVER_RESETS:
        for layout, _s, rid, _t in wrapped:
            if rid <= RESET_MAX_REPLAY:
                return layout
    elif wrapped:
        return None
    try:
        c = parse_control(data, off, end, PLAIN)
    except DissectError:
        return None
    return PLAIN if _plausible(c) else None


def _plausible(c: Control) -> bool:
    if c.opcode in CLIENT_RESETS:
        return not c.acks and c.packet_id == 0
    if c.opcode in SERVER_RESETS:
        return c.packet_id == 0
    return True


def split_tcp(buf: Buffer, start: int = 0) -> tuple[list[tuple[int, int]], int]:
    """Split OpenVPN-over-TCP packets (16-bit length prefix, not counting itself) out of
    ``buf[start:]``.  Returns ``(packets, consumed)`` with ``packets`` a list of ``(off, end)``
    of complete packets (without the length); an incomplete packet is left for the next call.
    A zero length, or a first byte that is no opcode, breaks the framing: DissectError (for the
    first packet at ``start``; otherwise the packets before it are returned)."""
    out: list[tuple[int, int]] = []
    pos = start
    n = len(buf)
    while pos + 2 <= n:
        length: int = _U16(buf, pos)[0]
        if length == 0 or (pos + 2 < n and (buf[pos + 2] >> 3) not in OPCODES):
            if pos == start:
                raise DissectError(
                    "OpenVPN TCP packet length 0" if length == 0 else
                    f"OpenVPN TCP packet with unknown opcode {buf[pos + 2] >> 3}", pos)
            break
        e = pos + 2 + length
        if e > n:
            break
        out.append((pos + 2, e))
        pos = e
    return out, pos - start


def tcp_stream_start(data: Buffer, off: int, end: int, server: bool = False) -> bool:
    """True when a TCP payload looks like the first packet of an OpenVPN-over-TCP stream from
    the client (``server``: from the server): a length that fits a hard reset and a
    HARD_RESET_CLIENT (HARD_RESET_SERVER) opcode with key ID 0 (used to recognise OpenVPN on
    ports other than 1194, and on a TLS port)."""
    if end - off < 16:
        return False
    length = _U16(data, off)[0]
    if length < 14 or length > 1600:
        return False
    b = data[off + 2]
    if b & 7 or (b >> 3) not in (SERVER_RESETS if server else CLIENT_RESETS):
        return False
    if off + 2 + length > end:
        return True  # the segment holds the start of it only; the caller confirms later
    return detect_layout(data, off + 2, off + 2 + length) is not None
