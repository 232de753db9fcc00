"""TLS and DTLS record and handshake headers, hellos, certificates (as DER slices) and alerts.

* TLS records: RFC 8446 §5.1 / RFC 5246 §6.2.1 — content type (1), legacy version (2),
  length (2, at most 2^14 + 2048 for protected records, RFC 5246 §6.2.3);
* DTLS records: RFC 6347 §4.1 / RFC 9147 §4 (DTLSPlaintext) — content type, version, epoch (2),
  sequence number (6), length (2); a datagram may hold several records;
* handshake messages: type (1) and 24-bit length (RFC 8446 §4); DTLS adds message_seq (2),
  fragment_offset (3) and fragment_length (3) (RFC 6347 §4.2.2);
* ClientHello / ServerHello: RFC 8446 §4.1.2-§4.1.3 (DTLS: the cookie after the session ID,
  RFC 6347 §4.2.1); extensions server_name (RFC 6066 §3), ALPN (RFC 7301 §3.1),
  supported_versions (RFC 8446 §4.2.1); HelloRetryRequest is a ServerHello with the special
  Random of RFC 8446 §4.1.3;
* Certificate: TLS <= 1.2 a 24-bit list of 24-bit-length DER certificates (RFC 5246 §7.4.2); in
  TLS 1.3 it is encrypted (parse_certificate still reads the RFC 8446 §4.4.2 form for tests);
* Alert: level (1), description (1) (RFC 8446 §6, RFC 5246 §7.2); names from the IANA "TLS
  Alerts" registry.  An alert sent after ChangeCipherSpec is encrypted (longer than 2 bytes).

DTLS 0x0100 is the pre-RFC 4347 version number of OpenSSL's early DTLS ("DTLS1_BAD_VER"), still
spoken by Cisco AnyConnect.  Nothing here decrypts.  Malformed input raises DissectError.
"""

from __future__ import annotations

import struct
from typing import Iterator, NamedTuple

from .errors import DissectError
from .number import Number
from .types import Buffer

__all__ = [
    "CHANGE_CIPHER_SPEC", "ALERT", "HANDSHAKE", "APPLICATION_DATA", "HEARTBEAT", "TLS12_CID",
    "CONTENT_TYPES", "HANDSHAKE_TYPES", "ALERTS", "AlertLevel", "AlertDescription", "VERSIONS", "CLIENT_HELLO", "SERVER_HELLO",
    "HELLO_VERIFY_REQUEST", "CERTIFICATE", "SERVER_KEY_EXCHANGE", "CERTIFICATE_REQUEST",
    "SERVER_HELLO_DONE", "CERTIFICATE_VERIFY", "CLIENT_KEY_EXCHANGE", "FINISHED",
    "ClientHello", "ServerHello", "version_name", "alert_name", "handshake_name",
    "split_records", "looks_like_record", "looks_like_client_hello", "split_handshakes",
    "parse_client_hello", "parse_server_hello", "parse_certificate", "parse_alert",
    "looks_like_dtls", "parse_dtls_records", "DTLS_VERSIONS", "HRR_RANDOM",
]

CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEARTBEAT = 24      # RFC 6520
TLS12_CID = 25      # RFC 9146
CONTENT_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data",
                 24: "heartbeat", 25: "tls12_cid"}

CLIENT_HELLO = 1
SERVER_HELLO = 2
HELLO_VERIFY_REQUEST = 3
CERTIFICATE = 11
SERVER_KEY_EXCHANGE = 12
CERTIFICATE_REQUEST = 13
SERVER_HELLO_DONE = 14
CERTIFICATE_VERIFY = 15
CLIENT_KEY_EXCHANGE = 16
FINISHED = 20
# IANA "TLS HandshakeType" (RFC 8446 §4, RFC 5246 §7.4, RFC 6347 §4.3.2, RFC 6066 §8)
HANDSHAKE_TYPES = {
    0: "HelloRequest", 1: "ClientHello", 2: "ServerHello", 3: "HelloVerifyRequest",
    4: "NewSessionTicket", 5: "EndOfEarlyData", 8: "EncryptedExtensions", 11: "Certificate",
    12: "ServerKeyExchange", 13: "CertificateRequest", 14: "ServerHelloDone",
    15: "CertificateVerify", 16: "ClientKeyExchange", 20: "Finished", 22: "CertificateStatus",
    24: "KeyUpdate", 254: "message_hash",
}


class AlertLevel(Number):
    """TLS alert levels (RFC 5246 §7.2; RFC 8446 §6 sends every alert but two as fatal)."""

    WARNING = 1
    FATAL = 2


class AlertDescription(Number):
    """IANA "TLS Alerts" (RFC 8446 §6, RFC 5246 §7.2, RFC 7507, RFC 7301, RFC 6066)."""

    CLOSE_NOTIFY = 0
    UNEXPECTED_MESSAGE = 10
    BAD_RECORD_MAC = 20
    DECRYPTION_FAILED = 21
    RECORD_OVERFLOW = 22
    DECOMPRESSION_FAILURE = 30
    HANDSHAKE_FAILURE = 40
    NO_CERTIFICATE = 41
    BAD_CERTIFICATE = 42
    UNSUPPORTED_CERTIFICATE = 43
    CERTIFICATE_REVOKED = 44
    CERTIFICATE_EXPIRED = 45
    CERTIFICATE_UNKNOWN = 46
    ILLEGAL_PARAMETER = 47
    UNKNOWN_CA = 48
    ACCESS_DENIED = 49
    DECODE_ERROR = 50
    DECRYPT_ERROR = 51
    EXPORT_RESTRICTION = 60
    PROTOCOL_VERSION = 70
    INSUFFICIENT_SECURITY = 71
    INTERNAL_ERROR = 80
    INAPPROPRIATE_FALLBACK = 86
    USER_CANCELED = 90
    NO_RENEGOTIATION = 100
    MISSING_EXTENSION = 109
    UNSUPPORTED_EXTENSION = 110
    CERTIFICATE_UNOBTAINABLE = 111
    UNRECOGNIZED_NAME = 112
    BAD_CERTIFICATE_STATUS_RESPONSE = 113
    BAD_CERTIFICATE_HASH_VALUE = 114
    UNKNOWN_PSK_IDENTITY = 115
    CERTIFICATE_REQUIRED = 116
    NO_APPLICATION_PROTOCOL = 120


ALERTS = {int(a): a.name.lower() for a in AlertDescription}
#: the DTLS 1.0 version number of the pre-RFC OpenSSL / Cisco AnyConnect implementations
DTLS_PRE_RFC = 0x0100
VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2",
            0x0304: "TLS 1.3", 0xFEFF: "DTLS 1.0", 0xFEFD: "DTLS 1.2", 0xFEFC: "DTLS 1.3",
            DTLS_PRE_RFC: "DTLS 1.0 (pre-RFC, OpenSSL/Cisco)"}
DTLS_VERSIONS = frozenset((0xFEFF, 0xFEFD, 0xFEFC, DTLS_PRE_RFC))
#: RFC 8446 §4.1.3: the Random of a HelloRetryRequest (SHA-256 of "HelloRetryRequest")
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

EXT_SERVER_NAME = 0
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43
MAX_RECORD = (1 << 14) + 2048

_U16 = struct.Struct(">H").unpack_from
_HDR = struct.Struct(">BHH").unpack_from
#: a TLS record header: content type (1), version (2), length (2) (RFC 8446 §5.1)
RECORD_HEADER_LEN = 5
_DTLS_HDR = struct.Struct(">BHH6sH").unpack_from


def version_name(v: int | None) -> str:
    if v is None:
        return "unknown"
    return VERSIONS.get(v, f"0x{v:04x}")


def alert_name(desc: int) -> str:
    return ALERTS.get(desc, f"alert {desc}")


def handshake_name(t: int) -> str:
    return HANDSHAKE_TYPES.get(t, f"handshake type {t}")


class ClientHello(NamedTuple):
    legacy_version: int
    cipher_suites: int         # number offered
    sni: str | None
    versions: tuple[int, ...]  # supported_versions, () when absent
    alpn: tuple[str, ...]
    cookie_len: int            # DTLS only


class ServerHello(NamedTuple):
    legacy_version: int
    cipher_suite: int
    version: int               # negotiated: supported_versions when present, else legacy
    retry: bool                # HelloRetryRequest


def _record_ok(ctype: int, ver: int, length: int) -> bool:
    return 20 <= ctype <= 25 and (ver >> 8) == 3 and length <= MAX_RECORD


def looks_like_record(data: Buffer, off: int, end: int) -> bool:
    """A plausible TLS record header at ``off`` (5 bytes available)."""
    if end - off < 5:
        return False
    return _record_ok(*_HDR(data, off))


def looks_like_client_hello(data: Buffer, off: int, end: int) -> bool:
    """A TCP payload that starts a TLS stream: a handshake record holding a ClientHello."""
    if end - off < 9:
        return False
    ctype, ver, length = _HDR(data, off)
    return ctype == HANDSHAKE and (ver >> 8) == 3 and length <= MAX_RECORD \
        and data[off + 5] == CLIENT_HELLO


def split_records(buf: Buffer, start: int = 0) -> tuple[list[tuple[int, int, int, int]], int]:
    """Split TLS records out of a TCP byte stream ``buf[start:]``.

    Returns ``(records, consumed)``: ``records`` a list of ``(content_type, version, body_off,
    body_end)`` of complete records.  A header that is not a TLS record (unknown content type,
    major version not 3, length over 2^14 + 2048) breaks the framing: DissectError when it is the
    first at ``start``, else the records before it are returned."""
    out: list[tuple[int, int, int, int]] = []
    pos = start
    n = len(buf)
    while pos + 5 <= n:
        ctype, ver, length = _HDR(buf, pos)
        if not _record_ok(ctype, ver, length):
            if pos == start:
                raise DissectError(f"not a TLS record header (type {ctype}, version 0x{ver:04x}, "
                                   f"length {length})", pos)
            break
        e = pos + 5 + length
        if e > n:
            break
        out.append((ctype, ver, pos + 5, e))
        pos = e
    return out, pos - start


def split_handshakes(buf: Buffer, start: int = 0, end: int | None = None,
                     dtls: bool = False) -> tuple[list[tuple[int, int, int]], int]:
    """Split handshake messages out of ``buf[start:end]`` (the concatenated bodies of handshake
    records of one direction).

    Returns ``(messages, consumed)``: a list of ``(msg_type, body_off, body_end)``; for DTLS the
    12-byte header is read and only a message that is not fragmented (fragment offset 0, fragment
    length = length) gets its body bounds — a fragment is returned with ``body_off = -1``.
    An incomplete message at the end is left (TLS) / consumed as a fragment (DTLS)."""
    if end is None:
        end = len(buf)
    out: list[tuple[int, int, int]] = []
    pos = start
    hl = 12 if dtls else 4
    while pos + hl <= end:
        t = buf[pos]
        length = (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]
        if dtls:
            foff = (buf[pos + 6] << 16) | (buf[pos + 7] << 8) | buf[pos + 8]
            flen = (buf[pos + 9] << 16) | (buf[pos + 10] << 8) | buf[pos + 11]
            e = pos + hl + flen
            if e > end:
                raise DissectError("DTLS handshake fragment runs past its record", pos)
            if foff == 0 and flen == length:
                out.append((t, pos + hl, e))
            else:
                out.append((t, -1, e))
            pos = e
            continue
        e = pos + hl + length
        if e > end:
            break
        out.append((t, pos + hl, e))
        pos = e
    return out, pos - start


def _need(off: int, n: int, end: int, what: str) -> None:
    if off + n > end:
        raise DissectError(f"{what} truncated", off)


def _extensions(data: Buffer, off: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield (type, body_off, body_end) of an extensions block at off (with its 2-byte length)."""
    if off == end:
        return
    _need(off, 2, end, "TLS extensions length")
    total: int = _U16(data, off)[0]
    off += 2
    stop = off + total
    if stop > end:
        raise DissectError("TLS extensions run past the message", off - 2)
    while off + 4 <= stop:
        et, el = struct.unpack_from(">HH", data, off)
        off += 4
        if off + el > stop:
            raise DissectError(f"TLS extension {et} runs past the extensions block", off - 4)
        yield et, off, off + el
        off += el


def parse_client_hello(data: Buffer, off: int, end: int, dtls: bool = False) -> ClientHello:
    """Parse a ClientHello body ``data[off:end]`` (after the handshake header)."""
    if end > len(data):
        end = len(data)
    _need(off, 35, end, "ClientHello")
    legacy = _U16(data, off)[0]
    p = off + 34
    sl = data[p]
    _need(p + 1, sl, end, "ClientHello session ID")
    p += 1 + sl
    cookie_len = 0
    if dtls:
        _need(p, 1, end, "ClientHello cookie")
        cookie_len = data[p]
        _need(p + 1, cookie_len, end, "ClientHello cookie")
        p += 1 + cookie_len
    _need(p, 2, end, "ClientHello cipher suites")
    cl = _U16(data, p)[0]
    _need(p + 2, cl, end, "ClientHello cipher suites")
    p += 2 + cl
    _need(p, 1, end, "ClientHello compression methods")
    ml = data[p]
    _need(p + 1, ml, end, "ClientHello compression methods")
    p += 1 + ml
    sni = None
    versions = ()
    alpn: tuple[str, ...] = ()
    for et, a, b in _extensions(data, p, end):
        if et == EXT_SERVER_NAME and b - a >= 5:
            # ServerNameList: length (2), then name_type (1) = host_name (0), length (2), name
            q = a + 2
            stop = min(b, a + 2 + _U16(data, a)[0])
            while q + 3 <= stop:
                nt = data[q]
                nl = _U16(data, q + 1)[0]
                if q + 3 + nl > stop:
                    raise DissectError("TLS server_name runs past its extension", q)
                if nt == 0 and sni is None:
                    sni = bytes(data[q + 3:q + 3 + nl]).decode("ascii", "replace")
                q += 3 + nl
        elif et == EXT_SUPPORTED_VERSIONS and b - a >= 1:
            n = data[a]
            if a + 1 + n > b or n & 1:
                raise DissectError("TLS supported_versions list malformed", a)
            versions = tuple(_U16(data, a + 1 + 2 * i)[0] for i in range(n // 2))
        elif et == EXT_ALPN and b - a >= 2:
            q = a + 2
            names = []
            while q < b:
                ln = data[q]
                if q + 1 + ln > b:
                    raise DissectError("TLS ALPN list malformed", q)
                names.append(bytes(data[q + 1:q + 1 + ln]).decode("ascii", "replace"))
                q += 1 + ln
            alpn = tuple(names)
    return ClientHello(legacy, cl // 2, sni, versions, alpn, cookie_len)


def parse_server_hello(data: Buffer, off: int, end: int, dtls: bool = False) -> ServerHello:
    """Parse a ServerHello body (the negotiated version from supported_versions when present)."""
    if end > len(data):
        end = len(data)
    _need(off, 35, end, "ServerHello")
    legacy = _U16(data, off)[0]
    retry = bytes(data[off + 2:off + 34]) == HRR_RANDOM
    p = off + 34
    sl = data[p]
    _need(p + 1, sl + 3, end, "ServerHello session ID / cipher suite")
    p += 1 + sl
    cipher = _U16(data, p)[0]
    p += 3  # cipher suite, compression method
    version = legacy
    for et, a, b in _extensions(data, p, end):
        if et == EXT_SUPPORTED_VERSIONS and b - a == 2:
            version = _U16(data, a)[0]
    return ServerHello(legacy, cipher, version, retry)


def parse_certificate(data: Buffer, off: int, end: int,
                      tls13: bool = False) -> list[tuple[int, int]]:
    """The DER certificates of a Certificate body as ``(der_off, der_end)`` slices, end-entity
    first (TLS <= 1.2: RFC 5246 §7.4.2; ``tls13``: RFC 8446 §4.4.2 with its request context and
    per-entry extensions)."""
    if end > len(data):
        end = len(data)
    p = off
    if tls13:
        _need(p, 1, end, "Certificate request context")
        p += 1 + data[p]
    _need(p, 3, end, "Certificate list length")
    total = (data[p] << 16) | (data[p + 1] << 8) | data[p + 2]
    p += 3
    stop = p + total
    if stop > end:
        raise DissectError("Certificate list runs past the message", p - 3)
    out: list[tuple[int, int]] = []
    while p + 3 <= stop:
        ln = (data[p] << 16) | (data[p + 1] << 8) | data[p + 2]
        p += 3
        if p + ln > stop:
            raise DissectError("certificate runs past the Certificate list", p - 3)
        out.append((p, p + ln))
        p += ln
        if tls13:
            _need(p, 2, stop, "certificate entry extensions")
            p += 2 + _U16(data, p)[0]
    return out


#: a plaintext alert record: level (1) and description (1)
ALERT_LENGTH = 2


def parse_alert(data: Buffer, off: int, end: int) -> tuple[int, int]:
    """``(level, description)`` of a plaintext alert (2 bytes).  A longer alert record is
    encrypted: DissectError (callers check the length first)."""
    if end - off != ALERT_LENGTH or off + ALERT_LENGTH > len(data):
        raise DissectError(f"TLS alert of {end - off} bytes is encrypted or malformed", off)
    return (data[off], data[off + 1])


def record_header(data: Buffer, off: int) -> tuple[int, int]:
    """``(content type, version)`` of the TLS record at ``data[off:]`` (the caller checked that its
    5-byte header is there)."""
    ctype, version, _length = _HDR(data, off)
    return ctype, version


def dtls_version(data: Buffer, off: int) -> int:
    """The version field of the DTLS record at ``data[off:]`` (its header is there)."""
    version: int = _U16(data, off + 1)[0]
    return version


def looks_like_dtls(data: Buffer, off: int, end: int) -> bool:
    """A UDP payload starting with a DTLSPlaintext header of a known content type and DTLS
    version whose length fits the datagram."""
    if end - off < 13:
        return False
    ctype = data[off]
    if not 20 <= ctype <= 25:
        return False
    ver = (data[off + 1] << 8) | data[off + 2]
    if ver not in DTLS_VERSIONS:
        return False
    length = (data[off + 11] << 8) | data[off + 12]
    return off + 13 + length <= end


def parse_dtls_records(data: Buffer, off: int,
                       end: int) -> list[tuple[int, int, int, int, int, int]]:
    """Every DTLS record of a datagram: ``(content_type, version, epoch, seq, body_off,
    body_end)`` (RFC 6347 §4.1)."""
    if end > len(data):
        end = len(data)
    out: list[tuple[int, int, int, int, int, int]] = []
    p = off
    while p < end:
        if p + 13 > end:
            raise DissectError("DTLS record header truncated", p)
        ctype, ver, epoch, seq, length = _DTLS_HDR(data, p)
        if not 20 <= ctype <= 25 or ver not in DTLS_VERSIONS:
            raise DissectError(f"not a DTLS record (type {ctype}, version 0x{ver:04x})", p)
        if p + 13 + length > end:
            raise DissectError("DTLS record runs past the datagram", p + 11)
        out.append((ctype, ver, epoch, int.from_bytes(seq, "big"), p + 13, p + 13 + length))
        p += 13 + length
    return out
