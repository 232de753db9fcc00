"""The primitives every decryptor uses: the statuses of an opened message or packet, block and
stream ciphers, AEAD (GCM, CCM, ChaCha20-Poly1305) and truncated HMACs, all through
``cryptography``."""

from __future__ import annotations

import hmac
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

try:  # cryptography >= 43 moved 3DES to the "decrepit" module
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES as _TripleDES
except ImportError:  # pragma: no cover - older cryptography
    _TripleDES = algorithms.TripleDES

OK = "ok"
UNVERIFIED = "unverified"
ICV_FAILED = "icv_failed"
MALFORMED = "malformed"
TRUNCATED = "truncated"
UNSUPPORTED = "unsupported"


class Opened(NamedTuple):
    status: str
    data: bytes | None
    detail: str = ""


AEAD = frozenset(("aes-gcm", "aes-ccm", "chacha20-poly1305"))
#: salt bytes at the end of the key material (RFC 5282 §4 / RFC 4106 §8.1 / RFC 4309 §7.1 /
#: RFC 7634 §2 and §4; CTR nonce: RFC 5930 §2 / RFC 3686 §5.1)
_SALT = {"aes-gcm": 4, "aes-ccm": 3, "chacha20-poly1305": 4, "aes-ctr": 4}
_BLOCK = {"aes-cbc": 16, "3des-cbc": 8, "des-cbc": 8, "aes-ctr": 1, "null": 1}
#: IV bytes on the wire (RFC 3602 §3: one block for CBC; CTR/GCM/CCM/ChaCha: 8)
_IV = {"aes-cbc": 16, "3des-cbc": 8, "des-cbc": 8, "aes-ctr": 8, "null": 0, "aes-gcm": 8,
       "aes-ccm": 8, "chacha20-poly1305": 8}
_HASH = {"hmac-md5": "md5", "hmac-sha1": "sha1", "hmac-sha256": "sha256",
         "hmac-sha384": "sha384", "hmac-sha512": "sha512"}


def _block_algorithm(cipher: str, key: bytes):
    if cipher in ("aes-cbc", "aes-ctr"):
        return algorithms.AES(key)
    if cipher == "3des-cbc":
        return _TripleDES(key)
    if cipher == "des-cbc":
        return _TripleDES(key * 3)  # single DES = 3DES with K1 = K2 = K3
    raise ValueError(cipher)


def cbc_decrypt(cipher: str, key: bytes, iv: bytes, data: bytes) -> bytes:
    d = Cipher(_block_algorithm(cipher, key), modes.CBC(iv)).decryptor()
    return d.update(data) + d.finalize()


def cbc_encrypt(cipher: str, key: bytes, iv: bytes, data: bytes) -> bytes:
    """For tests and benchmarks (builds protected messages)."""
    e = Cipher(_block_algorithm(cipher, key), modes.CBC(iv)).encryptor()
    return e.update(data) + e.finalize()


def ctr_crypt(key_material: bytes, iv: bytes, data: bytes) -> bytes:
    """RFC 3686 §4 / RFC 5930: counter block = nonce (last 4 key bytes) | IV (8) | 1 (32 bits)."""
    key, nonce = key_material[:-4], key_material[-4:]
    c = Cipher(algorithms.AES(key), modes.CTR(nonce + iv + b"\x00\x00\x00\x01")).decryptor()
    return c.update(data) + c.finalize()


class Aead:
    """One AEAD key (salt included): ``open(iv8, ciphertext_and_tag, aad)`` → plaintext or None
    (tag mismatch); ``seal`` for tests and benchmarks."""

    __slots__ = ("cipher", "icv", "salt", "_obj", "_key")

    def __init__(self, cipher: str, key_material: bytes, icv: int):
        n = _SALT[cipher]
        key, self.salt = key_material[:-n], key_material[-n:]
        self.cipher = cipher
        self.icv = icv
        self._key = key
        if cipher == "aes-gcm":
            self._obj = AESGCM(key) if icv == 16 else None
        elif cipher == "aes-ccm":
            self._obj = AESCCM(key, tag_length=icv)
        else:
            if icv != 16:
                raise ValueError("ChaCha20-Poly1305 has a 16-byte tag (RFC 7634 §2)")
            self._obj = ChaCha20Poly1305(key)

    def open(self, iv: bytes, ct: bytes, aad: bytes):
        nonce = self.salt + iv
        obj = self._obj
        try:
            if obj is not None:
                return obj.decrypt(nonce, ct, aad)
            # AES-GCM with an 8- or 12-octet ICV (AESGCM only takes 16)
            tag = ct[-self.icv:]
            d = Cipher(algorithms.AES(self._key),
                       modes.GCM(nonce, tag, min_tag_length=self.icv)).decryptor()
            d.authenticate_additional_data(aad)
            return d.update(ct[:-self.icv]) + d.finalize()
        except InvalidTag:
            return None

    def seal(self, iv: bytes, pt: bytes, aad: bytes) -> bytes:
        nonce = self.salt + iv
        if self._obj is not None:
            return self._obj.encrypt(nonce, pt, aad)
        e = Cipher(algorithms.AES(self._key), modes.GCM(nonce)).encryptor()
        e.authenticate_additional_data(aad)
        ct = e.update(pt) + e.finalize()
        return ct + e.tag[:self.icv]


def mac(alg: str, key: bytes, data: bytes, n: int) -> bytes:
    return hmac.digest(key, data, _HASH[alg])[:n]


def _plain(cipher: str, key: bytes, iv: bytes, ct: bytes) -> bytes:
    if cipher == "null":
        return bytes(ct)
    if cipher == "aes-ctr":
        return ctr_crypt(key, iv, ct)
    return cbc_decrypt(cipher, key, iv, ct)
