"""ESP packets (RFC 4303) opened with the candidate keys of an SA: integrity check, decryption and
the trailer (padding, Next Header)."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, modes

from pcapvpn.decrypt.primitives import (
    _BLOCK, _IV, AEAD, ICV_FAILED, MALFORMED, OK, TRUNCATED, UNSUPPORTED, UNVERIFIED, Aead,
    _block_algorithm, _plain, mac,
)

#: Next Header values a decrypted ESP trailer may carry (IANA protocol numbers): IPv4-in-IP 4,
#: TCP 6, UDP 17, IPv6 41, GRE 47, ESP 50, ICMP 1, ICMPv6 58, no next header 59 (RFC 4303 §2.6
#: dummy packets), EtherIP 97, SCTP 132, MPLS-in-IP 137, Ethernet 143
ESP_NEXT_HEADERS = frozenset((1, 4, 6, 17, 41, 47, 50, 58, 59, 97, 132, 137, 143))


class EspDecryptor:
    """One ESP SA with its candidate keys: the first packet that verifies (or, without integrity,
    has a sane trailer) locks a key; ``open(data, off, end)`` → ``(status, next_header,
    plaintext)`` with ``data[off:end]`` the ESP packet from the SPI on."""

    __slots__ = ("cands", "locked", "key", "ok", "failed", "unverified", "malformed",
                 "truncated", "first_failure", "first_ok")

    def __init__(self, keys):
        self.cands = []
        for k in keys:
            if not k.supported:
                continue
            icvs = [k.icv_len] if k.icv_len is not None else [16, 12, 8]
            for icv in icvs:
                self.cands.append(_EspKeyed(k, icv))
        self.locked = None
        self.key = keys[0] if keys else None
        self.ok = 0
        self.unverified = 0
        self.failed = 0
        self.malformed = 0
        self.truncated = 0
        self.first_failure = None
        self.first_ok = None

    @property
    def supported(self) -> bool:
        return bool(self.cands)

    def open(self, data, off, end):
        c = self.locked
        if c is not None:
            return c.open(data, off, end)
        first = None
        for c in self.cands:
            r = c.open(data, off, end)
            if r[0] == OK or r[0] == UNVERIFIED:
                self.locked = c
                self.key = c.key
                return r
            if first is None:
                first = r
        return first or (UNSUPPORTED, None, None)


class _CbcDecryptor:
    """CBC decryption with one ECB context per key (RFC 3602 §2: P_i = D(C_i) xor C_(i-1)):
    creating a CBC context per packet costs more than decrypting it."""

    __slots__ = ("_ecb",)

    def __init__(self, cipher, key):
        self._ecb = Cipher(_block_algorithm(cipher, key), modes.ECB()).decryptor()

    def __call__(self, iv, ct):
        n = len(ct)
        if not n:
            return b""
        x = self._ecb.update(ct)
        prev = iv + ct[:n - len(iv)]
        return (int.from_bytes(x, "little") ^ int.from_bytes(prev, "little")).to_bytes(n, "little")


class _EspKeyed:
    __slots__ = ("key", "cipher", "icv", "ivl", "blk", "aead", "integ", "akey", "ekey", "check",
                 "_cbc")

    def __init__(self, key, icv):
        self.key = key
        self.cipher = key.encr
        self.icv = icv
        self.ivl = _IV[key.encr]
        self.blk = _BLOCK.get(key.encr, 1)
        self.aead = Aead(key.encr, key.ekey, icv) if key.encr in AEAD else None
        self.integ = key.auth
        self.akey = key.akey
        self.ekey = key.ekey
        self.check = self.aead is not None or key.auth not in ("none", "any")
        self._cbc = _CbcDecryptor(key.encr, key.ekey) if key.encr.endswith("-cbc") else None

    def open(self, data, off, end):
        ivl = self.ivl
        icv = self.icv
        p = off + 8
        if end - p < ivl + icv + 2:
            return (TRUNCATED, None, None)
        if self.aead is not None:
            pt = self.aead.open(data[p:p + ivl], data[p + ivl:end], data[off:p])
            if pt is None:
                return (ICV_FAILED, None, None)
        else:
            cend = end - icv
            if self.check and mac(self.integ, self.akey, data[off:cend], icv) != data[cend:end]:
                return (ICV_FAILED, None, None)
            ct = data[p + ivl:cend]
            if self.blk > 1 and len(ct) % self.blk:
                return (MALFORMED, None, None)
            if self._cbc is not None:
                pt = self._cbc(data[p:p + ivl], ct)
            else:
                pt = _plain(self.cipher, self.ekey, data[p:p + ivl], ct)
        n = len(pt)
        if n < 2:
            return (MALFORMED, None, None)
        pad = pt[-2]
        nh = pt[-1]
        if pad + 2 > n:
            return (MALFORMED, None, None)
        if not self.check:
            # no integrity: the trailer must look right (RFC 4303 §2.4 default padding 1, 2, ...)
            if nh not in ESP_NEXT_HEADERS:
                return (MALFORMED, None, None)
            if pad and pt[n - 2 - pad:n - 2] != bytes(range(1, pad + 1)):
                return (MALFORMED, None, None)
            return (UNVERIFIED, nh, pt[:n - 2 - pad])
        return (OK, nh, pt[:n - 2 - pad])
