"""IKEv2 payload bodies (RFC 7296 §3, RFC 7383, RFC 9370, RFC 5685).

Each parser gets ``(raw, off, end)`` where ``raw[off:end]`` is the payload body (after the
4-byte generic header) and returns a record; :func:`dissect.vpn.ike.common.walk_payloads` fills
the generic fields (``type``, ``next_payload``, ``critical``, ``offset``, ``length``).  Records
carry numbers and bytes; names are :mod:`dissect.vpn.registry`'s job.

SK (46) and SKF (53) are not decrypted here: their records give the offsets of the encrypted
data (IV | ciphertext | ICV, RFC 7296 §3.14) in the buffer that was walked, and their
``next_payload`` names the first inner payload.  :func:`parse_payloads` walks decrypted inner
payloads.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ..errors import DissectError
from .common import BodyParser, NotifyRecord, Payload, Problem, walk_payloads
from ..registry import GwIdentType, IdTypeV2, NotifyV2, PayloadV2, TsType
from ..types import Buffer

__all__ = [
    "PARSERS", "parse_payloads", "parse_attributes",
    "SA", "Proposal", "Transform", "KeyExchange", "Identification", "Certificate",
    "CertificateRequest", "Auth", "DataPayload", "Notify", "Redirect", "Delete", "TrafficSelectors",
    "TrafficSelector", "Encrypted", "EncryptedFragment", "Configuration", "Eap",
]

# Transform attribute type, RFC 7296 §3.3.5 (the only one IKEv2 defines)
ATTR_KEY_LENGTH = 14

# ID types with a fixed length (RFC 7296 §3.5)
_ID_LEN: dict[int, int] = {IdTypeV2.IPV4_ADDR: 4, IdTypeV2.IPV6_ADDR: 16}

_U16 = struct.Struct(">H")
_HH = struct.Struct(">HH")
_PROP = struct.Struct(">BBHBBBB")
_TRANS = struct.Struct(">BBHBBH")
_KE = struct.Struct(">HH")
_NOTIFY = struct.Struct(">BBH")
_DELETE = struct.Struct(">BBH")
_TS = struct.Struct(">BBHHH")
_EAP = struct.Struct(">BBH")
_SKF = struct.Struct(">HH")


def _need(off: int, n: int, end: int, what: str) -> None:
    if off + n > end:
        raise DissectError(f"{what} truncated", off)


def parse_attributes(data: Buffer, off: int, end: int) -> list[tuple[int, int | bytes]]:
    """RFC 7296 §3.3.5 transform attributes → list of ``(type, value)``: int for TV (AF=1),
    bytes for TLV."""
    attrs: list[tuple[int, int | bytes]] = []
    hh = _HH.unpack_from
    while off < end:
        if off + 4 > end:
            raise DissectError("transform attribute header truncated", off)
        t, v = hh(data, off)
        if t & 0x8000:
            attrs.append((t & 0x7FFF, v))
            off += 4
            continue
        vend = off + 4 + v
        if vend > end:
            raise DissectError(f"transform attribute {t} length {v} runs past its transform",
                               off + 2)
        attrs.append((t, bytes(data[off + 4:vend])))
        off = vend
    return attrs


class Transform:
    """RFC 7296 §3.3.2: ``transform_type`` (1 ENCR, 2 PRF, 3 INTEG, 4 KE, 5 ESN, 6-12 ADDKE1-7
    of RFC 9370), ``transform_id``, ``attributes`` [(type, value)], ``next_payload`` (3 or 0,
    "Last Substruc")."""

    __slots__ = ("transform_type", "transform_id", "attributes", "next_payload")

    def __init__(self, transform_type: int, transform_id: int,
                 attributes: list[tuple[int, int | bytes]], next_payload: int) -> None:
        self.transform_type = transform_type
        self.transform_id = transform_id
        self.attributes = attributes
        self.next_payload = next_payload

    @property
    def key_length(self) -> int | bytes | None:
        for t, v in self.attributes:
            if t == ATTR_KEY_LENGTH:
                return v
        return None

    def __repr__(self) -> str:
        kl = self.key_length
        return (f"Transform(type={self.transform_type}, id={self.transform_id}"
                + (f", key_length={kl!s}" if kl is not None else "") + ")")


class Proposal:
    """RFC 7296 §3.3.1: ``number``, ``protocol`` (1 IKE, 2 AH, 3 ESP), ``spi`` (bytes),
    ``num_transforms`` (declared), ``transforms``, ``next_payload`` (2 or 0)."""

    __slots__ = ("number", "protocol", "spi", "num_transforms", "transforms", "next_payload")

    def __init__(self, number: int, protocol: int, spi: bytes, num_transforms: int,
                 transforms: list[Transform], next_payload: int) -> None:
        self.number = number
        self.protocol = protocol
        self.spi = spi
        self.num_transforms = num_transforms
        self.transforms = transforms
        self.next_payload = next_payload

    @property
    def spi_value(self) -> int:
        """The SPI as an unsigned integer (0 when the proposal carries none)."""
        return int.from_bytes(self.spi, "big") if self.spi else 0

    def transforms_of(self, ttype: int) -> list[Transform]:
        return [t for t in self.transforms if t.transform_type == ttype]

    def ids(self, ttype: int) -> list[int]:
        """Transform ids of one type, in order."""
        return [t.transform_id for t in self.transforms if t.transform_type == ttype]

    def __repr__(self) -> str:
        return (f"Proposal(number={self.number}, protocol={self.protocol}, spi={self.spi.hex()}, "
                f"transforms={self.transforms!r})")


def _parse_transforms(raw: Buffer, pos: int, end: int) -> list[Transform]:
    out = []
    unpack = _TRANS.unpack_from
    while pos < end:
        _need(pos, 8, end, "transform header")
        nxt, _r, tlen, ttype, _r2, tid = unpack(raw, pos)
        if tlen < 8 or pos + tlen > end:
            raise DissectError(f"transform length {tlen} invalid", pos + 2)
        if tlen == 8:
            attrs = []
        elif tlen == 12 and raw[pos + 8] & 0x80:   # the usual single TV key-length attribute
            t, v = _HH.unpack_from(raw, pos + 8)
            attrs = [(t & 0x7FFF, v)]
        else:
            attrs = parse_attributes(raw, pos + 8, pos + tlen)
        out.append(Transform(ttype, tid, attrs, nxt))
        pos += tlen
        if nxt == 0:
            break
        if nxt != 3:
            raise DissectError(f"transform Last Substruc {nxt} is neither 0 nor 3", pos - tlen)
    else:
        if out:
            raise DissectError("last transform announces another (Last Substruc 3)", pos)
    if pos != end:
        raise DissectError(f"{end - pos} bytes after the last transform", pos)
    return out


def parse_proposals(raw: Buffer, pos: int, end: int) -> list[Proposal]:
    out = []
    unpack = _PROP.unpack_from
    while pos < end:
        _need(pos, 8, end, "proposal header")
        nxt, _r, plen, pnum, proto, spisz, ntrans = unpack(raw, pos)
        pend = pos + plen
        if plen < 8 + spisz or pend > end:
            raise DissectError(f"proposal length {plen} invalid", pos + 2)
        spi = bytes(raw[pos + 8:pos + 8 + spisz])
        out.append(Proposal(pnum, proto, spi, ntrans,
                            _parse_transforms(raw, pos + 8 + spisz, pend), nxt))
        pos = pend
        if nxt == 0:
            break
        if nxt != 2:
            raise DissectError(f"proposal Last Substruc {nxt} is neither 0 nor 2", pos - plen)
    else:
        if out:
            raise DissectError("last proposal announces another (Last Substruc 2)", pos)
    if pos != end:
        raise DissectError(f"{end - pos} bytes after the last proposal", pos)
    return out


class SA(Payload):
    """RFC 7296 §3.3: ``proposals``."""

    __slots__ = ("proposals",)

    def __init__(self, proposals: list[Proposal]) -> None:
        self.proposals = proposals


def _parse_sa(raw: Buffer, off: int, end: int) -> SA:
    return SA(parse_proposals(raw, off, end))


class KeyExchange(Payload):
    """RFC 7296 §3.4: ``group`` (DH group number), ``data``."""

    __slots__ = ("group", "data")

    def __init__(self, group: int, data: bytes) -> None:
        self.group = group
        self.data = data


def _parse_ke(raw: Buffer, off: int, end: int) -> KeyExchange:
    _need(off, 4, end, "KE header")
    return KeyExchange(_KE.unpack_from(raw, off)[0], bytes(raw[off + 4:end]))


class Identification(Payload):
    """RFC 7296 §3.5 IDi/IDr: ``id_type``, ``data``.  ``value``: packed address for
    ID_IPV4_ADDR (1) / ID_IPV6_ADDR (5), ``str`` for ID_FQDN (2) / ID_RFC822_ADDR (3), else
    bytes."""

    __slots__ = ("id_type", "data")

    def __init__(self, id_type: int, data: bytes) -> None:
        self.id_type = id_type
        self.data = data

    @property
    def value(self) -> str | bytes:
        if self.id_type in (2, 3):
            return self.data.decode("utf-8", "replace")
        return self.data


def _parse_id(raw: Buffer, off: int, end: int) -> Identification:
    _need(off, 4, end, "ID header")
    id_type = raw[off]
    data = bytes(raw[off + 4:end])
    want = _ID_LEN.get(id_type)
    if want is not None and len(data) != want:
        raise DissectError(f"ID type {id_type} needs {want} bytes, has {len(data)}", off + 4)
    return Identification(id_type, data)


class Certificate(Payload):
    """RFC 7296 §3.6 CERT: ``encoding``, ``data``."""

    __slots__ = ("encoding", "data")

    def __init__(self, encoding: int, data: bytes) -> None:
        self.encoding = encoding
        self.data = data


class CertificateRequest(Payload):
    """RFC 7296 §3.7 CERTREQ: ``encoding``, ``authority`` (concatenated SHA-1 key hashes for
    X.509)."""

    __slots__ = ("encoding", "authority")

    def __init__(self, encoding: int, authority: bytes) -> None:
        self.encoding = encoding
        self.authority = authority


def _parse_cert(raw: Buffer, off: int, end: int) -> Certificate:
    _need(off, 1, end, "certificate encoding")
    return Certificate(raw[off], bytes(raw[off + 1:end]))


def _parse_certreq(raw: Buffer, off: int, end: int) -> CertificateRequest:
    _need(off, 1, end, "certificate encoding")
    return CertificateRequest(raw[off], bytes(raw[off + 1:end]))


class Auth(Payload):
    """RFC 7296 §3.8: ``method``, ``data``."""

    __slots__ = ("method", "data")

    def __init__(self, method: int, data: bytes) -> None:
        self.method = method
        self.data = data


def _parse_auth(raw: Buffer, off: int, end: int) -> Auth:
    _need(off, 4, end, "AUTH header")
    return Auth(raw[off], bytes(raw[off + 4:end]))


class DataPayload(Payload):
    """Opaque body: Nonce (40, RFC 7296 §3.9), Vendor ID (43, §3.12)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def _parse_data(raw: Buffer, off: int, end: int) -> DataPayload:
    return DataPayload(bytes(raw[off:end]))


class Notify(NotifyRecord):
    """RFC 7296 §3.10: ``protocol``, ``spi`` (bytes), ``notify_type``, ``data``; accessors
    return None when the notify is of another type or its data is malformed.  Iterates as
    ``(notify_type, spi, data)``, like :class:`dissect.vpn.ike.v1.Notification`."""

    __slots__ = ("protocol", "spi", "notify_type", "data")
    VERSION = 2

    def __init__(self, protocol: int, spi: bytes, notify_type: int, data: bytes) -> None:
        self.protocol = protocol
        self.spi = spi
        self.notify_type = notify_type
        self.data = data

    @property
    def invalid_ke_group(self) -> int | None:
        """INVALID_KE_PAYLOAD (17): the 2-byte accepted group (RFC 7296 §1.2)."""
        if self.notify_type == NotifyV2.INVALID_KE_PAYLOAD and len(self.data) >= 2:
            group: int = _U16.unpack_from(self.data, 0)[0]
            return group
        return None

    @property
    def rekey_spi(self) -> bytes | None:
        """REKEY_SA (16393): the SPI of the SA being rekeyed (RFC 7296 §1.3.3)."""
        return self.spi if self.notify_type == NotifyV2.REKEY_SA else None

    @property
    def cookie(self) -> bytes | None:
        """COOKIE (16390) data (RFC 7296 §2.6)."""
        return self.data if self.notify_type == NotifyV2.COOKIE else None

    @property
    def nat_hash(self) -> bytes | None:
        """NAT_DETECTION_SOURCE_IP / _DESTINATION_IP: the 20-byte SHA-1 (RFC 7296 §2.23)."""
        if self.notify_type in (NotifyV2.NAT_DETECTION_SOURCE_IP, NotifyV2.NAT_DETECTION_DESTINATION_IP):
            return self.data
        return None

    @property
    def signature_hash_algorithms(self) -> list[int] | None:
        """SIGNATURE_HASH_ALGORITHMS (16431): list of 16-bit ids (RFC 7427 §4)."""
        if self.notify_type != NotifyV2.SIGNATURE_HASH_ALGORITHMS or len(self.data) % 2:
            return None
        d = self.data
        return [(d[i] << 8) | d[i + 1] for i in range(0, len(d), 2)]

    @property
    def redirect(self) -> Redirect | None:
        """REDIRECT (16407) / REDIRECTED_FROM (16408), RFC 5685 §8/§9: a :class:`Redirect`
        ``(gw_type, gw_identity, nonce)``, or None."""
        if self.notify_type not in (NotifyV2.REDIRECT, NotifyV2.REDIRECTED_FROM):
            return None
        d = self.data
        if len(d) < 2 or 2 + d[1] > len(d):
            return None
        return Redirect(d[0], bytes(d[2:2 + d[1]]), bytes(d[2 + d[1]:]))


class Redirect(NamedTuple):
    """The new gateway of a REDIRECT, or the redirecting one of a REDIRECTED_FROM (RFC 5685 §8):
    ``gw_type`` (:class:`~dissect.vpn.registry.GwIdentType`), ``gw_identity`` (bytes), ``nonce``
    (bytes; REDIRECT in an IKE_SA_INIT response echoes the initiator's nonce)."""

    gw_type: int
    gw_identity: bytes
    nonce: bytes

    @property
    def address(self) -> bytes | None:
        """The packed IPv4 / IPv6 address, when the type says so and the length agrees."""
        want = _GW_ADDR_LEN.get(self.gw_type)
        return self.gw_identity if want == len(self.gw_identity) else None

    @property
    def fqdn(self) -> str | None:
        if self.gw_type != GwIdentType.FQDN:
            return None
        return self.gw_identity.decode("ascii", "replace")


_GW_ADDR_LEN: dict[int, int] = {GwIdentType.IPV4: 4, GwIdentType.IPV6: 16}


def _parse_notify(raw: Buffer, off: int, end: int) -> Notify:
    _need(off, 4, end, "notify header")
    proto, spisz, ntype = _NOTIFY.unpack_from(raw, off)
    _need(off + 4, spisz, end, "notify SPI")
    return Notify(proto, bytes(raw[off + 4:off + 4 + spisz]), ntype,
                  bytes(raw[off + 4 + spisz:end]))


class Delete(Payload):
    """RFC 7296 §3.11: ``protocol``, ``spi_size``, ``spis`` (list of bytes; empty for IKE)."""

    __slots__ = ("protocol", "spi_size", "spis")

    def __init__(self, protocol: int, spi_size: int, spis: list[bytes]) -> None:
        self.protocol = protocol
        self.spi_size = spi_size
        self.spis = spis

    @property
    def spi_values(self) -> list[int]:
        """The SPIs as unsigned integers."""
        return [int.from_bytes(x, "big") for x in self.spis]


def _parse_delete(raw: Buffer, off: int, end: int) -> Delete:
    _need(off, 4, end, "delete header")
    proto, spisz, nspi = _DELETE.unpack_from(raw, off)
    pos = off + 4
    total = spisz * nspi
    if pos + total > end:
        raise DissectError(f"{nspi} SPIs of {spisz} bytes run past the delete payload", off + 2)
    if pos + total != end:
        raise DissectError(f"{end - pos - total} bytes after the SPIs", pos + total)
    spis = [bytes(raw[p:p + spisz]) for p in range(pos, pos + total, spisz)] if spisz else []
    return Delete(proto, spisz, spis)


class TrafficSelector:
    """RFC 7296 §3.13.1: ``ts_type``, ``protocol`` (IP protocol, 0 = any), ``start_port``,
    ``end_port``, ``start_addr``, ``end_addr`` (packed).  For types other than 7/8 the fields
    after ``ts_type`` are None and ``data`` holds the selector body."""

    __slots__ = ("ts_type", "protocol", "start_port", "end_port", "start_addr", "end_addr",
                 "data")

    def __init__(self, ts_type: int, protocol: int | None, start_port: int | None,
                 end_port: int | None, start_addr: bytes | None, end_addr: bytes | None,
                 data: bytes | None) -> None:
        self.ts_type = ts_type
        self.protocol = protocol
        self.start_port = start_port
        self.end_port = end_port
        self.start_addr = start_addr
        self.end_addr = end_addr
        self.data = data

    def __repr__(self) -> str:
        if self.start_addr is None:
            return f"TrafficSelector(type={self.ts_type}, data={(self.data or b'').hex()})"
        return (f"TrafficSelector(type={self.ts_type}, proto={self.protocol}, "
                f"ports={self.start_port}-{self.end_port}, "
                f"{self.start_addr.hex()}-{(self.end_addr or b'').hex()})")


class TrafficSelectors(Payload):
    """RFC 7296 §3.13 TSi/TSr: ``num_ts`` (declared), ``selectors``."""

    __slots__ = ("num_ts", "selectors")

    def __init__(self, num_ts: int, selectors: list[TrafficSelector]) -> None:
        self.num_ts = num_ts
        self.selectors = selectors


def _parse_ts(raw: Buffer, off: int, end: int) -> TrafficSelectors:
    _need(off, 4, end, "TS header")
    num = raw[off]
    pos = off + 4
    sels = []
    unpack = _TS.unpack_from
    for _ in range(num):
        _need(pos, 4, end, "traffic selector header")
        ts_type = raw[pos]
        slen = _U16.unpack_from(raw, pos + 2)[0]
        send = pos + slen
        if slen < 4 or send > end:
            raise DissectError(f"traffic selector length {slen} invalid", pos + 2)
        if ts_type == TsType.TS_IPV4_ADDR_RANGE or ts_type == TsType.TS_IPV6_ADDR_RANGE:
            alen = 4 if ts_type == TsType.TS_IPV4_ADDR_RANGE else 16
            if slen != 8 + 2 * alen:
                raise DissectError(f"traffic selector type {ts_type} length {slen} invalid",
                                   pos + 2)
            _t, proto, _l, sport, eport = unpack(raw, pos)
            a = pos + 8
            sels.append(TrafficSelector(ts_type, proto, sport, eport, bytes(raw[a:a + alen]),
                                        bytes(raw[a + alen:send]), None))
        else:
            sels.append(TrafficSelector(ts_type, None, None, None, None, None,
                                        bytes(raw[pos + 4:send])))
        pos = send
    if pos != end:
        raise DissectError(f"{end - pos} bytes after {num} traffic selectors", pos)
    return TrafficSelectors(num, sels)


class Encrypted(Payload):
    """RFC 7296 §3.14 SK: ``next_payload`` (generic field) is the FIRST INNER payload type;
    ``data_off``/``data_end`` delimit IV | ciphertext | padding | ICV in the walked buffer
    (``IkeMessage.raw`` for a message)."""

    __slots__ = ("data_off", "data_end")

    def __init__(self, data_off: int, data_end: int) -> None:
        self.data_off = data_off
        self.data_end = data_end

    @property
    def first_inner(self) -> int:
        return self.next_payload


def _parse_sk(raw: Buffer, off: int, end: int) -> Encrypted:
    return Encrypted(off, end)


class EncryptedFragment(Payload):
    """RFC 7383 §2.5 SKF: ``next_payload`` is the first inner payload in fragment 1 and 0 in
    the others; ``fragment_number`` (from 1), ``total_fragments``, ``data_off``/``data_end`` of
    IV | ciphertext | ICV."""

    __slots__ = ("fragment_number", "total_fragments", "data_off", "data_end")

    def __init__(self, fragment_number: int, total_fragments: int, data_off: int,
                 data_end: int) -> None:
        self.fragment_number = fragment_number
        self.total_fragments = total_fragments
        self.data_off = data_off
        self.data_end = data_end

    @property
    def first_inner(self) -> int:
        return self.next_payload


def _parse_skf(raw: Buffer, off: int, end: int) -> EncryptedFragment:
    _need(off, 4, end, "SKF header")
    num, total = _SKF.unpack_from(raw, off)
    return EncryptedFragment(num, total, off + 4, end)


class Configuration(Payload):
    """RFC 7296 §3.15 CP: ``cfg_type`` (1 REQUEST, 2 REPLY, 3 SET, 4 ACK), ``attributes``
    [(type, bytes)] (§3.15.1: R bit + 15-bit type, 16-bit length, value)."""

    __slots__ = ("cfg_type", "attributes")

    def __init__(self, cfg_type: int, attributes: list[tuple[int, bytes]]) -> None:
        self.cfg_type = cfg_type
        self.attributes = attributes


def _parse_cp(raw: Buffer, off: int, end: int) -> Configuration:
    _need(off, 4, end, "CP header")
    cfg_type = raw[off]
    pos = off + 4
    attrs = []
    hh = _HH.unpack_from
    while pos < end:
        _need(pos, 4, end, "configuration attribute header")
        t, alen = hh(raw, pos)
        aend = pos + 4 + alen
        if aend > end:
            raise DissectError(f"configuration attribute {t & 0x7FFF} length {alen} runs past "
                               "the CP payload", pos + 2)
        attrs.append((t & 0x7FFF, bytes(raw[pos + 4:aend])))
        pos = aend
    return Configuration(cfg_type, attrs)


class Eap(Payload):
    """RFC 7296 §3.16 / RFC 3748 §4: ``code`` (1 Request, 2 Response, 3 Success, 4 Failure),
    ``identifier``, ``eap_length``, ``eap_type`` (requests/responses only, else None),
    ``data`` (after the type)."""

    __slots__ = ("code", "identifier", "eap_length", "eap_type", "data")

    def __init__(self, code: int, identifier: int, eap_length: int, eap_type: int | None,
                 data: bytes) -> None:
        self.code = code
        self.identifier = identifier
        self.eap_length = eap_length
        self.eap_type = eap_type
        self.data = data


def _parse_eap(raw: Buffer, off: int, end: int) -> Eap:
    _need(off, 4, end, "EAP header")
    code, ident, elen = _EAP.unpack_from(raw, off)
    if elen < 4 or off + elen > end:
        raise DissectError(f"EAP length {elen} invalid", off + 2)
    eend = off + elen
    if code in (1, 2) and elen >= 5:
        return Eap(code, ident, elen, raw[off + 4], bytes(raw[off + 5:eend]))
    return Eap(code, ident, elen, None, bytes(raw[off + 4:eend]))


PARSERS: dict[int, BodyParser] = {
    PayloadV2.SA: _parse_sa,
    PayloadV2.KE: _parse_ke,
    PayloadV2.IDI: _parse_id,
    PayloadV2.IDR: _parse_id,
    PayloadV2.CERT: _parse_cert,
    PayloadV2.CERTREQ: _parse_certreq,
    PayloadV2.AUTH: _parse_auth,
    PayloadV2.NONCE: _parse_data,
    PayloadV2.N: _parse_notify,
    PayloadV2.D: _parse_delete,
    PayloadV2.V: _parse_data,
    PayloadV2.TSI: _parse_ts,
    PayloadV2.TSR: _parse_ts,
    PayloadV2.SK: _parse_sk,
    PayloadV2.CP: _parse_cp,
    PayloadV2.EAP: _parse_eap,
    PayloadV2.SKF: _parse_skf,
}


def parse_payloads(data: Buffer, off: int, end: int, first_payload: int,
                   truncated: bool = False) -> tuple[list[Payload], list[Problem]]:
    """Walk an IKEv2 payload chain in ``data[off:end]`` (e.g. the decrypted inner payloads of
    an SK payload, whose ``next_payload`` is ``first_payload``) → ``(payloads, errors)``;
    offsets are indexes into ``data``."""
    if end > len(data):
        end = len(data)
    if off < 0 or off > end:
        raise DissectError("payload chain offset outside the buffer", off)
    return walk_payloads(data, off, end, first_payload, PARSERS, True, truncated)
