"""Identities and traffic selectors as text (RFC 7296 §3.5 / §3.13.1, RFC 2407 §4.6.2).

Formats only: ID payload data, IKEv1 Quick Mode IDs and IKEv2 TS payloads (as parsed by
:mod:`dissect.vpn.ike.v1` / :mod:`dissect.vpn.ike.v2`) in, plain text or tuples out.

- :func:`id_text` writes an identity the way operators write it (``gw.example.net``,
  ``192.0.2.1``, ``10.1.0.0/16``, ``C=AT, O=Example, CN=gw``): decrypted identities;
- :func:`id_value_text` writes a parsed ID record's ``value`` the way the report has always shown
  cleartext identities (addresses, ``addr/mask``, printable ASCII, else the length and hex);
- :func:`der_name_text` turns an X.501 Name (RFC 5280 §4.1.2.4) into ``C=.., O=.., CN=..``;
- :func:`selectors` gives traffic selectors as ``(ipver, start, end, protocol, start_port,
  end_port)`` (addresses as ints), :func:`selector_text` as ``10.10.1.0/24 proto 17 port 1701``.

Nothing here raises on malformed input: what does not decode is written as hex.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .registry import IdTypeV1
from .types import Buffer

__all__ = ["id_text", "id_value_text", "der_name_text", "selectors", "selector_text"]

#: (ipver, start, end, protocol, start_port, end_port), addresses as ints
Selector = tuple[int, int, int, int, int, int]

#: the ID types both versions number alike (RFC 7296 §3.5, RFC 2407 §4.6.2.1): addresses,
#: names, and IKEv1's subnets and ranges (IKEv2 has no ID types 4, 6, 7, 8)
_ADDRESS = (IdTypeV1.IPV4_ADDR, IdTypeV1.IPV6_ADDR)
_NAME = (IdTypeV1.FQDN, IdTypeV1.USER_FQDN)
_SUBNET = (IdTypeV1.IPV4_ADDR_SUBNET, IdTypeV1.IPV6_ADDR_SUBNET)
_RANGE = (IdTypeV1.IPV4_ADDR_RANGE, IdTypeV1.IPV6_ADDR_RANGE)
_ADDR_LENGTHS = (4, 16)
_PAIR_LENGTHS = (8, 32)
_PRINTABLE = range(0x20, 0x7F)
#: bytes of an unreadable identity shown in hex by id_value_text
_HEX_SHOWN = 32
#: the port range "any" (RFC 7296 §3.13.1: 0-65535; 0-0 in an IKEv1 ID)
_ANY_PORTS = ((0, 65535), (0, 0))

# X.501 attribute types (RFC 4519, RFC 5280 App. A, RFC 4524 for DC) as OpenSSL abbreviates them
_OID_NAMES = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
              "2.5.4.11": "OU", "1.2.840.113549.1.9.1": "emailAddress", "2.5.4.5": "serialNumber",
              "0.9.2342.19200300.100.1.25": "DC"}
_DER_SEQUENCE = 0x30
_DER_LONG_LENGTH = 0x80
_OID_ARC = 40  # X.690 §8.19.4: the first two arcs share one subidentifier


def _addr_text(b: Buffer) -> str:
    try:
        return str(ipaddress.ip_address(bytes(b)))
    except ValueError:
        return bytes(b).hex()


def _int(b: Buffer) -> int:
    return int.from_bytes(b, "big")


def id_text(id_type: int, data: Buffer) -> str:
    """An identity as operators write it (RFC 7296 §3.5 / RFC 2407 §4.6.2.1 types)."""
    if id_type in _ADDRESS and len(data) in _ADDR_LENGTHS:
        return _addr_text(data)
    if id_type in _NAME:
        return bytes(data).decode("utf-8", "replace")
    if id_type in _SUBNET and len(data) in _PAIR_LENGTHS:
        h = len(data) // 2
        try:
            net = ipaddress.ip_network(f"{_addr_text(data[:h])}/{_addr_text(data[h:])}",
                                       strict=False)
            return str(net)
        except ValueError:
            return f"{_addr_text(data[:h])}/{_addr_text(data[h:])}"
    if id_type in _RANGE and len(data) in _PAIR_LENGTHS:
        h = len(data) // 2
        return f"{_addr_text(data[:h])}-{_addr_text(data[h:])}"
    if id_type == IdTypeV1.DER_ASN1_DN:
        return der_name_text(bytes(data))
    return "0x" + bytes(data).hex()


def id_value_text(rec: Any) -> str:
    """A parsed ID record (``value``, ``id_type``, ``data``) as the report shows cleartext
    identities: the decoded name, ``addr/mask`` for an address pair, an address, printable ASCII,
    else ``<n bytes> <hex of the first 32>``."""
    v = rec.value
    if isinstance(v, str):
        return v
    if isinstance(v, tuple) and len(v) == 2 and all(len(x) in _ADDR_LENGTHS for x in v):
        return f"{_addr_text(v[0])}/{_addr_text(v[1])}"
    if isinstance(v, (bytes, bytearray)) and len(v) in _ADDR_LENGTHS and rec.id_type in _ADDRESS:
        return _addr_text(v)
    b = bytes(rec.data)
    if b and all(c in _PRINTABLE for c in b):
        return b.decode("ascii")
    return f"<{len(b)} bytes> {b[:_HEX_SHOWN].hex()}"


def _der_tlv(b: bytes, i: int) -> tuple[int, int, int]:
    tag = b[i]
    n = b[i + 1]
    i += 2
    if n & _DER_LONG_LENGTH:
        k = n & ~_DER_LONG_LENGTH
        n = int.from_bytes(b[i:i + k], "big")
        i += k
    return tag, i, i + n


def _oid_text(b: bytes) -> str:
    first = b[0]
    parts = [str(first // _OID_ARC), str(first % _OID_ARC)]
    v = 0
    for x in b[1:]:
        v = (v << 7) | (x & 0x7F)
        if not x & 0x80:
            parts.append(str(v))
            v = 0
    return ".".join(parts)


def der_name_text(der: bytes) -> str:
    """X.501 Name (RFC 5280 §4.1.2.4) → ``C=AT, O=..., CN=...`` (in the order of the DER);
    ``0x<hex>`` when it does not decode."""
    try:
        tag, s, e = _der_tlv(der, 0)
        if tag != _DER_SEQUENCE:
            raise ValueError
        out = []
        i = s
        while i < e:
            _t, rs, re_ = _der_tlv(der, i)  # SET
            j = rs
            while j < re_:
                _t2, as_, ae = _der_tlv(der, j)  # SEQUENCE {oid, value}
                _ot, os_, oe = _der_tlv(der, as_)
                _vt, vs, ve = _der_tlv(der, oe)
                oid = _oid_text(der[os_:oe])
                val = der[vs:ve].decode("utf-8", "replace")
                out.append(f"{_OID_NAMES.get(oid, oid)}={val}")
                j = ae
            i = re_
        return ", ".join(out)
    except (IndexError, ValueError):
        return "0x" + bytes(der).hex()


def selectors(rec: Any, version: int) -> list[Selector]:
    """Traffic selectors as ``(ipver, start, end, protocol, start_port, end_port)`` (addresses as
    ints): IKEv2 TSi/TSr (RFC 7296 §3.13.1) or an IKEv1 Quick Mode ID (RFC 2407 §4.6.2: address,
    subnet or range, with its protocol and port)."""
    out = []
    if version == 2:
        for s in getattr(rec, "selectors", ()) or ():
            if s.start_addr is None:
                continue
            ipver = 4 if len(s.start_addr) == 4 else 6
            out.append((ipver, _int(s.start_addr), _int(s.end_addr), s.protocol, s.start_port,
                        s.end_port))
        return out
    t = getattr(rec, "id_type", None)
    d = getattr(rec, "data", b"")
    port = getattr(rec, "port", 0) or 0
    sp, ep = (port, port) if port else _ANY_PORTS[0]
    proto = getattr(rec, "protocol", 0) or 0
    if t in _ADDRESS:
        v = _int(d)
        out.append((4 if t == IdTypeV1.IPV4_ADDR else 6, v, v, proto, sp, ep))
    elif t in _SUBNET:
        h = len(d) // 2
        a, mask = _int(d[:h]), _int(d[h:])
        bits = h * 8
        start = a & mask
        end = start | (~mask & ((1 << bits) - 1))
        out.append((4 if h == 4 else 6, start, end, proto, sp, ep))
    elif t in _RANGE:
        h = len(d) // 2
        out.append((4 if h == 4 else 6, _int(d[:h]), _int(d[h:]), proto, sp, ep))
    return out


def selector_text(sel: Selector) -> str:
    """``(ipver, start, end, proto, sport, eport)`` → ``10.10.1.0/24`` (a range when it is no
    prefix), with ``proto/port`` when restricted."""
    ipver, a, b, proto, sp, ep = sel
    cls = ipaddress.IPv4Address if ipver == 4 else ipaddress.IPv6Address
    try:
        nets = list(ipaddress.summarize_address_range(cls(a), cls(b)))
        txt = str(nets[0]) if len(nets) == 1 else f"{cls(a)}-{cls(b)}"
    except ValueError:
        txt = f"{cls(a)}-{cls(b)}"
    if proto:
        txt += f" proto {proto}"
    if (sp, ep) not in _ANY_PORTS and sp is not None:
        txt += f" port {sp}" if sp == ep else f" ports {sp}-{ep}"
    return txt
