"""The keys read from key tables (:mod:`pcapvpn.decrypt.keyfile`): one record per IKEv1 / IKEv2 /
ESP SA and the :class:`KeyStore` the decryptors look them up in.  No ``repr`` shows key material."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

__all__ = ["KeyStore", "IkeV1Key", "IkeV2Key", "EspKey"]


def _hidden(n: int) -> str:
    return f"<{n} bytes>"


@dataclass(frozen=True)
class IkeV1Key:
    """Phase-1 encryption key of an IKEv1 SA (Wireshark: "Encryption Key"), by initiator
    cookie.  The cipher and hash come from the SA proposal in the capture."""

    icookie: bytes
    key: bytes = field(repr=False)
    origin: str = ""

    def __repr__(self):
        return f"IkeV1Key({self.icookie.hex()}, key={_hidden(len(self.key))}, {self.origin})"


@dataclass(frozen=True)
class IkeV2Key:
    ispi: bytes
    rspi: bytes
    encr: str               # canonical cipher or "unsupported"
    encr_name: str          # as written in the file
    icv_len: int            # AEAD tag length (0 for non-AEAD)
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    integ: str = "none"     # canonical integrity or "unsupported"
    integ_name: str = ""
    integ_len: int = 0
    sk_ai: bytes = field(repr=False, default=b"")
    sk_ar: bytes = field(repr=False, default=b"")
    origin: str = ""

    @property
    def supported(self) -> bool:
        return self.encr != "unsupported" and self.integ != "unsupported"

    def __repr__(self):
        return (f"IkeV2Key({self.ispi.hex()}/{self.rspi.hex()}, {self.encr_name}, "
                f"{self.integ_name}, {self.origin})")


@dataclass(frozen=True)
class EspKey:
    spi: int | None         # None: any SPI (tcpdump -E without spi@)
    ipver: int | None       # None: any
    src: str | None         # text as written ("*" / "" → None)
    dst: str | None
    encr: str               # canonical cipher or "unsupported"
    encr_name: str
    icv_len: int | None     # ICV / tag bytes; None = to be found (strongSwan "AES-GCM [RFC4106]")
    ekey: bytes = field(repr=False)
    auth: str = "none"      # canonical integrity, "any" (length only) or "unsupported"
    auth_name: str = ""
    akey: bytes = field(repr=False, default=b"")
    origin: str = ""

    @property
    def supported(self) -> bool:
        return self.encr != "unsupported" and self.auth != "unsupported"

    @property
    def checks_integrity(self) -> bool:
        """True when a wrong key shows as an ICV failure (AEAD, or HMAC with its key)."""
        if self.encr in ("aes-gcm", "aes-ccm", "chacha20-poly1305"):
            return True
        return self.auth not in ("none", "any")

    def matches(self, src: str, dst: str) -> bool:
        """Addresses as written in the file (wildcards and prefixes with ``*`` allowed)."""
        return _addr_match(self.src, src) and _addr_match(self.dst, dst)

    def __repr__(self):
        spi = f"{self.spi:08x}" if self.spi is not None else "*"
        return f"EspKey({spi}, {self.encr_name}, {self.auth_name}, {self.origin})"


def _addr_match(pattern: str | None, addr: str) -> bool:
    if pattern is None:
        return True
    if pattern == addr:
        return True
    if "*" in pattern:
        return re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), addr) is not None
    try:
        if "/" in pattern:
            return ipaddress.ip_address(addr) in ipaddress.ip_network(pattern, strict=False)
        return ipaddress.ip_address(pattern) == ipaddress.ip_address(addr)
    except ValueError:
        return False


class KeyStore:
    """All keys loaded: IKEv2 by SPI pair, IKEv1 by initiator cookie (several keys per cookie
    are kept: each peer writes its own, and they differ when the peers disagree on the PSK),
    ESP by SPI (each peer writes its own view of the addresses, which differ across a NAT)."""

    def __init__(self):
        self.ikev2: dict = {}   # (ispi, rspi) -> [IkeV2Key]
        self.ikev1: dict = {}   # icookie -> [IkeV1Key]
        self.esp: dict = {}     # spi -> [EspKey]
        self.esp_any: list = []  # EspKey with spi None
        self.files: list = []   # the paths read
        self.skipped: list = []  # files in a directory that hold no key table

    def __bool__(self):
        return bool(self.ikev2 or self.ikev1 or self.esp or self.esp_any)

    def __repr__(self):
        return (f"KeyStore(ikev2={sum(map(len, self.ikev2.values()))}, "
                f"ikev1={sum(map(len, self.ikev1.values()))}, "
                f"esp={sum(map(len, self.esp.values())) + len(self.esp_any)})")

    # -- lookups ---------------------------------------------------------------------------

    def ikev2_for(self, ispi: bytes, rspi: bytes) -> list:
        return self.ikev2.get((bytes(ispi), bytes(rspi)), [])

    def ikev1_for(self, icookie: bytes) -> list:
        return self.ikev1.get(bytes(icookie), [])

    @property
    def esp_spis(self) -> frozenset:
        """SPIs with keys (the decoder's opt-in set); empty when a wildcard key exists — then
        :attr:`esp_all` is True."""
        return frozenset(self.esp)

    @property
    def esp_all(self) -> bool:
        return bool(self.esp_any)

    def esp_for(self, spi: int, src: str | None = None, dst: str | None = None) -> list:
        """Keys for an ESP SA: by SPI first; among several with that SPI, those whose addresses
        match come first (the others stay candidates: across a NAT a peer's addresses differ
        from the capture's)."""
        cands = list(self.esp.get(spi, ())) + list(self.esp_any)
        if src is None or len(cands) < 2:
            return cands
        good = [k for k in cands if k.matches(src, dst)]
        return good + [k for k in cands if k not in good]

    # -- adding ----------------------------------------------------------------------------

    def add(self, rec) -> None:
        if isinstance(rec, IkeV2Key):
            lst = self.ikev2.setdefault((rec.ispi, rec.rspi), [])
        elif isinstance(rec, IkeV1Key):
            lst = self.ikev1.setdefault(rec.icookie, [])
        elif rec.spi is None:
            lst = self.esp_any
        else:
            lst = self.esp.setdefault(rec.spi, [])
        if not any(_same(rec, r) for r in lst):
            lst.append(rec)


def _same(a, b) -> bool:
    """Equal but for where they came from (the same line in two copies of a table)."""
    if type(a) is not type(b):
        return False
    da = {k: v for k, v in a.__dict__.items() if k != "origin"}
    db = {k: v for k, v in b.__dict__.items() if k != "origin"}
    if isinstance(a, EspKey):  # save-keys vs rewritten names of the same key
        for d in (da, db):
            d.pop("encr_name")
            d.pop("auth_name")
    return da == db
