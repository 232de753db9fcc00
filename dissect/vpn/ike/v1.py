"""IKEv1 / ISAKMP payload bodies (RFC 2408 §3, RFC 2407 §4, RFC 2409, RFC 3947, RFC 3706).

Each parser gets ``(raw, off, end)`` where ``raw[off:end]`` is the payload body (after the
4-byte generic header) and returns a record; :func:`dissect.vpn.ike.common.walk_payloads` fills
the generic fields (``type``, ``next_payload``, ``critical``, ``offset``, ``length``).  Records
carry numbers and bytes; names are :mod:`dissect.vpn.registry`'s job.  A malformed body raises
:class:`DissectError` (the walker then keeps it as a ``RawPayload`` and records the error).
"""

from __future__ import annotations

import struct

from ..errors import DissectError
from .common import BodyParser, NotifyRecord, Payload, Problem, walk_payloads
from ..registry import (
    IdTypeV1, IkeAttrV1, IpsecAttrV1, NotifyV1, PayloadV1, ProtocolId,
)
from ..types import Buffer

__all__ = [
    "PARSERS", "parse_payloads", "parse_attributes",
    "SA", "Proposal", "Transform", "KeyExchange", "Identification", "Certificate",
    "CertificateRequest", "DataPayload", "Notification", "Delete", "NatOA", "ModeConfig",
    "Fragment",
]

# fixed-length ID data, RFC 2407 §4.6.2.2 - §4.6.2.8
_ID_LEN: dict[int, int] = {IdTypeV1.IPV4_ADDR: 4, IdTypeV1.IPV4_ADDR_SUBNET: 8, IdTypeV1.IPV6_ADDR: 16,
           IdTypeV1.IPV6_ADDR_SUBNET: 32, IdTypeV1.IPV4_ADDR_RANGE: 8, IdTypeV1.IPV6_ADDR_RANGE: 32}

# Phase-1 attributes (RFC 2409 Appendix A) whose variable-length form is an integer:
# 12 Life Duration.  Phase-2 (RFC 2407 §4.5): 2 SA Life Duration.
_P1_INT_TLV = frozenset((IkeAttrV1.LIFE_DURATION,))
_P2_INT_TLV = frozenset((IpsecAttrV1.SA_LIFE_DURATION,))

# RFC 3706 §5.1 R-U-THERE / R-U-THERE-ACK
_DPD_TYPES = (NotifyV1.R_U_THERE, NotifyV1.R_U_THERE_ACK)

# RFC 2407 §4.2 situation bits that add the labeled-domain block (§4.6.1)
_SIT_SECRECY = 0x02
_SIT_INTEGRITY = 0x04

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_HH = struct.Struct(">HH")
_II = struct.Struct(">II")
_PROP = struct.Struct(">BBHBBBB")
_TRANS = struct.Struct(">BBHBBH")
_ID = struct.Struct(">BBH")
_NOTIFY = struct.Struct(">IBBH")
_DELETE = struct.Struct(">IBBH")
_CFG = struct.Struct(">BBH")
_FRAG = struct.Struct(">HBB")


def _need(off: int, n: int, end: int, what: str) -> None:
    if off + n > end:
        raise DissectError(f"{what} truncated", off)


def parse_attributes(data: Buffer, off: int, end: int,
                     int_tlv: frozenset[int] = frozenset()) -> list[tuple[int, int | bytes]]:
    """RFC 2408 §3.3 data attributes in ``data[off:end]`` → list of ``(type, value)``.

    AF=1 (TV): value is the 16-bit int; AF=0 (TLV): value is ``bytes`` (an int for the
    attribute types in ``int_tlv`` when 1..8 bytes long).
    """
    attrs: list[tuple[int, int | bytes]] = []
    hh = _HH.unpack_from
    while off < end:
        if off + 4 > end:
            raise DissectError("data attribute header truncated", off)
        t, v = hh(data, off)
        if t & 0x8000:
            attrs.append((t & 0x7FFF, v))
            off += 4
            continue
        vend = off + 4 + v
        if vend > end:
            raise DissectError(f"data attribute {t} length {v} runs past its container", off + 2)
        val: int | bytes = bytes(data[off + 4:vend])
        if t in int_tlv and 0 < v <= 8:
            val = int.from_bytes(data[off + 4:vend], "big")
        attrs.append((t, val))
        off = vend
    return attrs


class Transform:
    """RFC 2408 §3.6 transform: ``number``, ``transform_id``, ``attributes`` [(type, value)],
    ``phase`` (1 when the proposal's protocol is ISAKMP, else 2: selects the attribute
    namespace, RFC 2409 App. A vs RFC 2407 §4.5), ``next_payload`` (3 or 0)."""

    __slots__ = ("number", "transform_id", "attributes", "phase", "next_payload")

    def __init__(self, number: int, transform_id: int, attributes: list[tuple[int, int | bytes]],
                 phase: int, next_payload: int) -> None:
        self.number = number
        self.transform_id = transform_id
        self.attributes = attributes
        self.phase = phase
        self.next_payload = next_payload

    def attr(self, atype: int, default: int | bytes | None = None) -> int | bytes | None:
        for t, v in self.attributes:
            if t == atype:
                return v
        return default

    @property
    def key_length(self) -> int | bytes | None:
        return self.attr(IkeAttrV1.KEY_LENGTH if self.phase == 1 else IpsecAttrV1.KEY_LENGTH)

    @property
    def encapsulation_mode(self) -> int | bytes | None:
        # 3/4 UDP-encapsulated: RFC 3947 §4.1; 61443/61444 drafts
        return self.attr(IpsecAttrV1.ENCAPSULATION_MODE) if self.phase == 2 else None

    @property
    def esn(self) -> int | bytes | None:
        return self.attr(IpsecAttrV1.ESN) if self.phase == 2 else None  # RFC 4304 §2

    def __repr__(self) -> str:
        return (f"Transform(number={self.number}, id={self.transform_id}, phase={self.phase}, "
                f"attributes={self.attributes!r})")


class Proposal:
    """RFC 2408 §3.5 proposal: ``number``, ``protocol`` (RFC 2407 §4.4.1), ``spi`` (bytes),
    ``num_transforms`` (the declared count), ``transforms``, ``next_payload`` (2 or 0)."""

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

    def __repr__(self) -> str:
        return (f"Proposal(number={self.number}, protocol={self.protocol}, spi={self.spi.hex()}, "
                f"transforms={self.transforms!r})")


def _parse_transforms(raw: Buffer, pos: int, end: int, phase: int) -> list[Transform]:
    out = []
    unpack = _TRANS.unpack_from
    int_tlv = _P1_INT_TLV if phase == 1 else _P2_INT_TLV
    while pos < end:
        _need(pos, 8, end, "transform header")
        nxt, _r, tlen, tnum, tid, _r2 = unpack(raw, pos)
        if tlen < 8 or pos + tlen > end:
            raise DissectError(f"transform length {tlen} invalid", pos + 2)
        attrs = parse_attributes(raw, pos + 8, pos + tlen, int_tlv)
        out.append(Transform(tnum, tid, attrs, phase, nxt))
        pos += tlen
        if nxt == PayloadV1.NONE:
            break
        if nxt != PayloadV1.TRANSFORM:
            raise DissectError(f"transform followed by next payload {nxt}", pos - tlen)
    else:
        if out:
            raise DissectError("last transform announces another (Last Substruc 3)", pos)
    if pos != end:
        raise DissectError(f"{end - pos} bytes after the last transform", pos)
    return out


def parse_proposals(raw: Buffer, pos: int, end: int) -> list[Proposal]:
    """The RFC 2408 §3.5 proposal list of an SA payload body."""
    out = []
    unpack = _PROP.unpack_from
    while pos < end:
        _need(pos, 8, end, "proposal header")
        nxt, _r, plen, pnum, proto, spisz, ntrans = unpack(raw, pos)
        pend = pos + plen
        if plen < 8 + spisz or pend > end:
            raise DissectError(f"proposal length {plen} invalid", pos + 2)
        spi = bytes(raw[pos + 8:pos + 8 + spisz])
        phase = 1 if proto == ProtocolId.IKE else 2
        transforms = _parse_transforms(raw, pos + 8 + spisz, pend, phase)
        out.append(Proposal(pnum, proto, spi, ntrans, transforms, nxt))
        pos = pend
        if nxt == PayloadV1.NONE:
            break
        if nxt != PayloadV1.PROPOSAL:
            raise DissectError(f"proposal followed by next payload {nxt}", pos - plen)
    else:
        if out:
            raise DissectError("last proposal announces another (Last Substruc 2)", pos)
    if pos != end:
        raise DissectError(f"{end - pos} bytes after the last proposal", pos)
    return out


def _pad4(n: int) -> int:
    return (n + 3) & ~3


class SA(Payload):
    """RFC 2408 §3.4: ``doi``, ``situation`` (int), ``proposals``."""

    __slots__ = ("doi", "situation", "proposals")

    def __init__(self, doi: int, situation: int, proposals: list[Proposal]) -> None:
        self.doi = doi
        self.situation = situation
        self.proposals = proposals


def _parse_sa(raw: Buffer, off: int, end: int) -> SA:
    _need(off, 8, end, "SA DOI/situation")
    doi, sit = _II.unpack_from(raw, off)
    pos = off + 8
    if doi == 1 and sit & (_SIT_SECRECY | _SIT_INTEGRITY):
        # RFC 2407 §4.6.1 labeled domain: LDI(4), then secrecy and integrity level/category
        # fields, each (length 2, reserved 2, value padded to 32 bits).
        _need(pos, 4, end, "labeled domain identifier")
        pos += 4
        for in_bits in (False, True, False, True):
            _need(pos, 4, end, "labeled domain field")
            n: int = _U16.unpack_from(raw, pos)[0]
            if in_bits:
                n = (n + 7) // 8
            pos += 4 + _pad4(n)
            if pos > end:
                raise DissectError("labeled domain field runs past the SA payload", pos)
    return SA(doi, sit, parse_proposals(raw, pos, end))


class DataPayload(Payload):
    """A payload whose body is opaque bytes: KE (4), HASH (8), SIG (9), NONCE (10), VID (13),
    NAT-D (20/130), and others without structure."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


KeyExchange = DataPayload


def _parse_data(raw: Buffer, off: int, end: int) -> DataPayload:
    return DataPayload(bytes(raw[off:end]))


class Identification(Payload):
    """RFC 2408 §3.8 + RFC 2407 §4.6.2: ``id_type``, ``protocol``, ``port`` (zero or 500 in
    phase 1, traffic-selector protocol/port in phase 2), ``data`` (raw identification data).
    ``value`` decodes it: packed address (bytes) for single addresses, a pair of packed
    addresses for subnets (address, mask) and ranges (start, end), ``str`` for FQDN/USER_FQDN,
    bytes otherwise."""

    __slots__ = ("id_type", "protocol", "port", "data")

    def __init__(self, id_type: int, protocol: int, port: int, data: bytes) -> None:
        self.id_type = id_type
        self.protocol = protocol
        self.port = port
        self.data = data

    @property
    def value(self) -> bytes | tuple[bytes, bytes] | str:
        t = self.id_type
        d = self.data
        if t in (IdTypeV1.IPV4_ADDR, IdTypeV1.IPV6_ADDR):
            return d
        if t in (IdTypeV1.IPV4_ADDR_SUBNET, IdTypeV1.IPV4_ADDR_RANGE, IdTypeV1.IPV6_ADDR_SUBNET,
                 IdTypeV1.IPV6_ADDR_RANGE):
            h = len(d) // 2
            return (d[:h], d[h:])
        if t in (IdTypeV1.FQDN, IdTypeV1.USER_FQDN):
            return d.decode("utf-8", "replace")
        return d


def _parse_id(raw: Buffer, off: int, end: int) -> Identification:
    _need(off, 4, end, "ID header")
    id_type, proto, port = _ID.unpack_from(raw, off)
    data = bytes(raw[off + 4:end])
    want = _ID_LEN.get(id_type)
    if want is not None and len(data) != want:
        raise DissectError(f"ID type {id_type} needs {want} bytes, has {len(data)}", off + 4)
    return Identification(id_type, proto, port, data)


class Certificate(Payload):
    """RFC 2408 §3.9 CERT: ``encoding``, ``data``."""

    __slots__ = ("encoding", "data")

    def __init__(self, encoding: int, data: bytes) -> None:
        self.encoding = encoding
        self.data = data


def _parse_cert(raw: Buffer, off: int, end: int) -> Certificate:
    _need(off, 1, end, "certificate encoding")
    return Certificate(raw[off], bytes(raw[off + 1:end]))


class CertificateRequest(Payload):
    """RFC 2408 §3.10 CR: ``cert_type``, ``authority`` (bytes, may be empty)."""

    __slots__ = ("cert_type", "authority")

    def __init__(self, cert_type: int, authority: bytes) -> None:
        self.cert_type = cert_type
        self.authority = authority


def _parse_cr(raw: Buffer, off: int, end: int) -> CertificateRequest:
    _need(off, 1, end, "certificate type")
    return CertificateRequest(raw[off], bytes(raw[off + 1:end]))


class Notification(NotifyRecord):
    """RFC 2408 §3.14: ``doi``, ``protocol``, ``spi`` (bytes), ``notify_type``, ``data``.
    ``dpd_seq``: the 32-bit sequence of R-U-THERE / R-U-THERE-ACK (RFC 3706 §5.1) or None.
    Iterates as ``(notify_type, spi, data)``, like :class:`dissect.vpn.ike.v2.Notify`."""

    __slots__ = ("doi", "protocol", "spi", "notify_type", "data")
    VERSION = 1

    def __init__(self, doi: int, protocol: int, spi: bytes, notify_type: int, data: bytes) -> None:
        self.doi = doi
        self.protocol = protocol
        self.spi = spi
        self.notify_type = notify_type
        self.data = data

    @property
    def dpd_seq(self) -> int | None:
        if self.notify_type in _DPD_TYPES and len(self.data) == 4:
            seq: int = _U32.unpack(self.data)[0]
            return seq
        return None


def _parse_n(raw: Buffer, off: int, end: int) -> Notification:
    _need(off, 8, end, "notification header")
    doi, proto, spisz, ntype = _NOTIFY.unpack_from(raw, off)
    _need(off + 8, spisz, end, "notification SPI")
    spi = bytes(raw[off + 8:off + 8 + spisz])
    return Notification(doi, proto, spi, ntype, bytes(raw[off + 8 + spisz:end]))


class Delete(Payload):
    """RFC 2408 §3.15: ``doi``, ``protocol``, ``spi_size``, ``spis`` (list of bytes)."""

    __slots__ = ("doi", "protocol", "spi_size", "spis")

    def __init__(self, doi: int, protocol: int, spi_size: int, spis: list[bytes]) -> None:
        self.doi = doi
        self.protocol = protocol
        self.spi_size = spi_size
        self.spis = spis

    @property
    def spi_values(self) -> list[int]:
        """The SPIs as unsigned integers."""
        return [int.from_bytes(x, "big") for x in self.spis]


def _parse_d(raw: Buffer, off: int, end: int) -> Delete:
    _need(off, 8, end, "delete header")
    doi, proto, spisz, nspi = _DELETE.unpack_from(raw, off)
    pos = off + 8
    if pos + spisz * nspi > end:
        raise DissectError(f"{nspi} SPIs of {spisz} bytes run past the delete payload", off + 6)
    spis = [bytes(raw[p:p + spisz]) for p in range(pos, pos + spisz * nspi, spisz)] \
        if spisz else []
    if pos + spisz * nspi != end:
        raise DissectError(f"{end - pos - spisz * nspi} bytes after the SPIs", pos + spisz * nspi)
    return Delete(doi, proto, spisz, spis)


class NatOA(Payload):
    """RFC 3947 §5.2 NAT-OA: ``id_type`` (1 IPv4, 5 IPv6), ``address`` (packed)."""

    __slots__ = ("id_type", "address")

    def __init__(self, id_type: int, address: bytes) -> None:
        self.id_type = id_type
        self.address = address


def _parse_natoa(raw: Buffer, off: int, end: int) -> NatOA:
    _need(off, 4, end, "NAT-OA header")
    id_type = raw[off]
    addr = bytes(raw[off + 4:end])
    want = _ID_LEN.get(id_type)
    if id_type in (IdTypeV1.IPV4_ADDR, IdTypeV1.IPV6_ADDR) and len(addr) != want:
        raise DissectError(f"NAT-OA type {id_type} needs {want} address bytes", off + 4)
    return NatOA(id_type, addr)


class ModeConfig(Payload):
    """Mode-config attribute payload (draft-dukes-ike-mode-cfg §3.2): ``cfg_type``
    (1 REQUEST, 2 REPLY, 3 SET, 4 ACK), ``identifier``, ``attributes`` [(type, value)] in the
    RFC 2408 §3.3 data-attribute format (XAUTH attributes included)."""

    __slots__ = ("cfg_type", "identifier", "attributes")

    def __init__(self, cfg_type: int, identifier: int,
                 attributes: list[tuple[int, int | bytes]]) -> None:
        self.cfg_type = cfg_type
        self.identifier = identifier
        self.attributes = attributes


def _parse_cfg(raw: Buffer, off: int, end: int) -> ModeConfig:
    _need(off, 4, end, "attribute payload header")
    cfg_type, _r, ident = _CFG.unpack_from(raw, off)
    return ModeConfig(cfg_type, ident, parse_attributes(raw, off + 4, end))


class Fragment(Payload):
    """Proprietary IKEv1 fragment (payload 132, Cisco/strongSwan): ``frag_id`` (16 bit),
    ``number`` (1-based), ``flags`` (bit 0x01 = last fragment), ``data`` (fragment bytes)."""

    __slots__ = ("frag_id", "number", "flags", "data")

    def __init__(self, frag_id: int, number: int, flags: int, data: bytes) -> None:
        self.frag_id = frag_id
        self.number = number
        self.flags = flags
        self.data = data

    @property
    def last(self) -> bool:
        return bool(self.flags & 0x01)


def _parse_frag(raw: Buffer, off: int, end: int) -> Fragment:
    _need(off, 4, end, "fragment header")
    fid, num, flags = _FRAG.unpack_from(raw, off)
    return Fragment(fid, num, flags, bytes(raw[off + 4:end]))


PARSERS: dict[int, BodyParser] = {
    PayloadV1.SA: _parse_sa,
    PayloadV1.KE: _parse_data,
    PayloadV1.ID: _parse_id,
    PayloadV1.CERT: _parse_cert,
    PayloadV1.CR: _parse_cr,
    PayloadV1.HASH: _parse_data,
    PayloadV1.SIG: _parse_data,
    PayloadV1.NONCE: _parse_data,
    PayloadV1.N: _parse_n,
    PayloadV1.D: _parse_d,
    PayloadV1.VID: _parse_data,
    PayloadV1.ATTR: _parse_cfg,
    PayloadV1.NAT_D: _parse_data,
    PayloadV1.NAT_OA: _parse_natoa,
    PayloadV1.NAT_D_DRAFT: _parse_data,
    PayloadV1.NAT_D_OLD: _parse_data,
    PayloadV1.NAT_OA_OLD: _parse_natoa,
    PayloadV1.NAT_OA_DRAFT: _parse_natoa,
    PayloadV1.FRAGMENT: _parse_frag,
}


def parse_payloads(data: Buffer, off: int, end: int, first_payload: int,
                   truncated: bool = False) -> tuple[list[Payload], list[Problem]]:
    """Walk an IKEv1 payload chain (e.g. a decrypted body) → ``(payloads, errors)``; offsets are
    indexes into ``data``."""
    if end > len(data):
        end = len(data)
    if off < 0 or off > end:
        raise DissectError("payload chain offset outside the buffer", off)
    return walk_payloads(data, off, end, first_payload, PARSERS, False, truncated)
