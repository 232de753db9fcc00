"""Decryption and integrity checks of IKEv2 SK/SKF, IKEv1 and ESP with keys from key tables.

Algorithms (all through ``cryptography``; 3DES from its ``decrepit`` module when present, single
DES as 3DES with the key repeated):

* IKEv2 (RFC 7296 §3.14; SKF: RFC 7383 §2.5): AES-CBC 128/192/256 (RFC 3602), AES-CTR (RFC 5930:
  the key material ends with a 4-byte nonce), AES-GCM and AES-CCM with 8/12/16-octet ICV
  (RFC 5282: salt 4 / 3 bytes, 8-byte IV, the associated data is everything from the IKE header to
  the end of the SK/SKF payload header), ChaCha20-Poly1305 (RFC 7634), 3DES, NULL; HMAC-MD5-96,
  HMAC-SHA1-96, HMAC-SHA1-160, HMAC-SHA2-256-128, HMAC-SHA2-384-192, HMAC-SHA2-512-256 (the ICV
  covers the whole message up to the ICV).
* IKEv1 (RFC 2409 Appendix B): DES, 3DES, AES-CBC.  Phase 1: the first IV is
  ``hash(g^xi | g^xr)`` cut to the block size, then each encrypted message's last ciphertext
  block is the next IV; phase 2 / Informational / Transaction: ``hash(last phase-1 ciphertext
  block | Message ID)`` for an exchange's first message, then the chain per Message ID.  IKEv1
  has no integrity check on its encryption: a wrong key is recognised by a payload chain that
  does not parse (unknown payload types, lengths running past the message).
* ESP (RFC 4303): AES-CBC, 3DES/DES-CBC, AES-CTR (RFC 3686), AES-GCM (RFC 4106), AES-CCM
  (RFC 4309), ChaCha20-Poly1305 (RFC 7634), NULL (RFC 2410); HMAC ICVs as above.  Without an
  integrity check (``ANY n bit`` / tcpdump ``-hmac96``) a wrong key is recognised by the trailer:
  the default padding 1, 2, 3 ... (RFC 4303 §2.4) and a known Next Header.

Statuses (``Opened.status``): ``ok`` (integrity verified), ``unverified`` (no integrity check
was possible; the plaintext is sane), ``icv_failed`` (the keys do not match this SA/message),
``malformed`` (decrypted, but the result is no valid payload chain / trailer: wrong key where
nothing else can tell), ``truncated``, ``unsupported``.

Nothing here keeps packet bytes beyond a call; key material never appears in a message.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

try:  # cryptography >= 43 moved 3DES to the "decrepit" module
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES as _TripleDES
except ImportError:  # pragma: no cover - older cryptography
    _TripleDES = algorithms.TripleDES

from dissect.vpn import ikev1 as _v1
from dissect.vpn import ikev2 as _v2
from dissect.vpn.errors import DissectError
from dissect.vpn.ident import id_text, selectors
from dissect.vpn.registry import CERT_X509_SIGNATURE, PayloadV1, PayloadV2, ProtocolId

__all__ = ["Opened", "OK", "UNVERIFIED", "ICV_FAILED", "MALFORMED", "TRUNCATED", "UNSUPPORTED",
           "Ikev2Keyed", "Ikev2Decryptor", "Ikev1Decryptor", "EspDecryptor", "cert_summary",
           "InnerPayloads", "ChildSpi", "describe_inner"]

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


# -- primitives ------------------------------------------------------------------------------------

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


# -- IKEv2 -----------------------------------------------------------------------------------------

class Ikev2Keyed:
    """One ``ikev2_decryption_table`` line applied to SK / SKF payloads."""

    def __init__(self, key):
        self.key = key
        self.ok = key.supported
        self.aead = key.encr in AEAD
        self._aead = {}
        if self.ok and self.aead:
            self._aead = {True: Aead(key.encr, key.sk_ei, key.icv_len),
                          False: Aead(key.encr, key.sk_er, key.icv_len)}

    def open(self, raw: bytes, data_off: int, data_end: int, from_initiator: bool) -> Opened:
        """Decrypt ``raw[data_off:data_end]`` (IV | ciphertext | ICV) of the message ``raw``;
        the plaintext returned is the inner payloads without padding and Pad Length."""
        k = self.key
        if not self.ok:
            return Opened(UNSUPPORTED, None,
                          f"algorithm not supported ({k.encr_name} / {k.integ_name})")
        enc = k.encr
        ivl = _IV[enc]
        icv_bad = False
        if self.aead:
            icv = k.icv_len
            if data_end - data_off < ivl + icv + 1:
                return Opened(TRUNCATED, None, "encrypted payload shorter than IV + ICV")
            pt = self._aead[from_initiator].open(raw[data_off:data_off + ivl],
                                                 raw[data_off + ivl:data_end], raw[:data_off])
            if pt is None:
                return Opened(ICV_FAILED, None, "AEAD tag does not verify")
        else:
            ilen = k.integ_len
            body_end = data_end - ilen
            if body_end - data_off < ivl + 1:
                return Opened(TRUNCATED, None, "encrypted payload shorter than IV + ICV")
            if k.integ not in ("none", "any"):
                ak = k.sk_ai if from_initiator else k.sk_ar
                if mac(k.integ, ak, raw[:body_end], ilen) != raw[body_end:data_end]:
                    icv_bad = True
            ct = raw[data_off + ivl:body_end]
            blk = _BLOCK[enc]
            if blk > 1 and len(ct) % blk:
                return Opened(ICV_FAILED if icv_bad else MALFORMED, None,
                              f"ciphertext of {len(ct)} bytes is not a multiple of {blk}")
            ek = k.sk_ei if from_initiator else k.sk_er
            pt = _plain(enc, ek, raw[data_off:data_off + ivl], ct)
        if not pt:
            return Opened(MALFORMED, None, "empty plaintext")
        pad = pt[-1]
        if pad + 1 > len(pt):
            return Opened(ICV_FAILED if icv_bad else MALFORMED, None,
                          f"Pad Length {pad} exceeds the plaintext")
        inner = pt[:len(pt) - pad - 1]
        if icv_bad:
            return Opened(ICV_FAILED, inner, "integrity check value does not match")
        if k.integ == "any" or (not self.aead and k.integ == "none"):
            return Opened(UNVERIFIED, inner, "no integrity key: not verified")
        return Opened(OK, inner)


def _chain_ok(payloads, errors, known) -> bool:
    if not payloads:
        return False
    for reason, _off in errors:
        if not reason.endswith("bytes after the last payload"):
            return False
    return all(p.type in known for p in payloads)


_V2_KNOWN = frozenset(_v2.PARSERS) - {PayloadV2.SK, PayloadV2.SKF}
_V1_KNOWN = frozenset(_v1.PARSERS)


class Ikev2Decryptor:
    """The decryption state of one IKEv2 SA: its key lines (the one that worked first is tried
    first afterwards) and SKF fragments waiting for the rest of their message."""

    def __init__(self, keys):
        self.keyed = [Ikev2Keyed(k) for k in keys]
        self._frags: dict = {}  # (msgid, is_response, from_initiator) -> {num: (bytes, next)}
        self.used = None  # the key line that opened a message

    def _open(self, raw, off, end, from_initiator):
        order = ([self.used] if self.used is not None else []) + \
            [k for k in self.keyed if k is not self.used]
        first = None
        for kd in order:
            r = kd.open(raw, off, end, from_initiator)
            if r.status in (OK, UNVERIFIED):
                self.used = kd
                return r, kd
            if first is None:
                first = (r, kd)
        return first

    def message(self, m):
        """Decrypt the SK / SKF payload of ``m`` (an IkeMsg); returns ``(status, detail, origin,
        payloads, first_payload, complete)`` — ``payloads`` the inner records (None when nothing
        could be read), ``complete`` False for an SKF fragment still waiting for others."""
        msg = m.msg
        raw = msg.raw
        rec = None
        for p in msg.payloads:
            if p.type == PayloadV2.SK or p.type == PayloadV2.SKF:
                rec = p
        if rec is None:
            return (MALFORMED, "no SK/SKF payload", None, None, None, True)
        if msg.truncated:
            return (TRUNCATED, "message cut by the capture's snaplen", None, None, None, True)
        res = self._open(raw, rec.data_off, rec.data_end, bool(m.from_initiator))
        r, kd = res
        origin = kd.key.origin
        if rec.type == PayloadV2.SK:
            return self._finish(r, origin, rec.next_payload)
        # SKF (RFC 7383 §2.6): fragments are protected one by one; reassembled in order
        if r.data is None:
            return (r.status, r.detail, origin, None, None, True)
        key = (m.msgid, bool(m.is_response), bool(m.from_initiator))
        fs = self._frags.setdefault(key, {})
        num, total = rec.fragment_number, rec.total_fragments
        fs[num] = (r.data, rec.next_payload, r.status)
        if total == 0 or any(i not in fs for i in range(1, total + 1)):
            return (r.status, f"fragment {num} of {total}", origin, None, None, False)
        del self._frags[key]
        data = b"".join(fs[i][0] for i in range(1, total + 1))
        statuses = {fs[i][2] for i in range(1, total + 1)}
        status = ICV_FAILED if ICV_FAILED in statuses else (
            UNVERIFIED if UNVERIFIED in statuses else OK)
        return self._finish(Opened(status, data, f"{total} fragments reassembled"), origin,
                            fs[1][1])

    @staticmethod
    def _finish(r: Opened, origin, first):
        if r.data is None:
            return (r.status, r.detail, origin, None, None, True)
        try:
            payloads, errors = _v2.parse_payloads(r.data, 0, len(r.data), first)
        except DissectError as e:
            payloads, errors = [], [(e.reason, e.offset)]
        sane = (not errors and (payloads or first == 0)
                and all(p.type in _V2_KNOWN or not p.critical for p in payloads))
        if r.status == ICV_FAILED:
            if sane:
                return (ICV_FAILED, "integrity check failed, but the payloads decrypt to a valid "
                        "chain: the encryption key matches, the integrity key (or the ICV) "
                        "does not", origin, payloads, first, True)
            return (ICV_FAILED, r.detail, origin, None, None, True)
        if not sane:
            why = errors[0][0] if errors else "unknown critical payload"
            return (MALFORMED, f"decrypted payloads do not parse: {why}", origin, payloads,
                    first, True)
        return (r.status, r.detail, origin, payloads, first, True)


# -- IKEv1 -----------------------------------------------------------------------------------------

#: RFC 2409 App. A: Encryption Algorithm (1) values; AES-CBC 7 from RFC 3602 §5
_V1_ENCR = {1: "des-cbc", 5: "3des-cbc", 7: "aes-cbc"}
#: RFC 2409 App. A: Hash Algorithm (2) values; SHA2 from RFC 4868 §2.4 (IANA)
_V1_HASH = {1: "md5", 2: "sha1", 4: "sha256", 5: "sha384", 6: "sha512"}
_V1_ATTR_ENCR = 1
_V1_ATTR_HASH = 2
_V1_ATTR_KEYLEN = 14
_V1_PHASE1 = (2, 4)  # Main, Aggressive
_V1_INFO = 5


class Ikev1Decryptor:
    """One IKEv1 SA: the phase-1 cipher and hash (learned from the cleartext SA payloads), the
    two KE values (for the first IV) and the IV chains (RFC 2409 Appendix B).  Several keys may
    exist for one initiator cookie (each peer writes its own): every message is tried with each;
    :attr:`used_by` records which key opened which sender's messages, so that two peers with
    different keys (a PSK mismatch) are told apart from a wrong key file."""

    def __init__(self, keys):
        self.keys = list(keys)
        self.encr = None        # (cipher, key bytes)
        self.hash = None        # hashlib name
        self.offered = None
        self.gxi = None
        self.gxr = None
        self.p1_iv = None       # IV of the next encrypted phase-1 message
        #: phase-1 IV states, oldest first (the first IV, then each encrypted message's last
        #: block).  A peer that could not verify a phase-1 message keeps the older state (strongSwan
        #: after an undecryptable MM5): phase-2 IVs are tried from each, the latest first.
        self.p1_states: list = []
        self.chains: dict = {}  # Message ID -> next IV
        self.used_by: dict = {}  # role -> set of key indexes that opened its messages

    # -- learning from cleartext ---------------------------------------------------------

    def learn(self, m, role: str) -> None:
        if m.exch not in _V1_PHASE1:
            return
        for p in m.msg.payloads:
            t = p.type
            if t == PayloadV1.SA and getattr(p, "proposals", None):
                tr = p.proposals[0].transforms
                attrs = tr[0].attributes if tr else []
                if role == "responder" or self.offered is None:
                    self.offered = (attrs, len(tr), role)
            elif t == PayloadV1.KE and hasattr(p, "data"):
                if role == "initiator":
                    self.gxi = p.data
                else:
                    self.gxr = p.data

    def _setup(self):
        """Cipher, hash and first IV once both KE values and the chosen transform are known."""
        if self.hash is not None:
            return None
        if self.offered is None:
            return "the phase-1 SA proposal is not in the capture"
        attrs, ntrans, role = self.offered
        if role != "responder" and ntrans != 1:
            return "the responder's phase-1 SA payload (the chosen transform) is not in the capture"
        a = {t: v for t, v in attrs if isinstance(v, int)}
        cipher = _V1_ENCR.get(a.get(_V1_ATTR_ENCR))
        h = _V1_HASH.get(a.get(_V1_ATTR_HASH))
        if cipher is None:
            return f"phase-1 encryption algorithm {a.get(_V1_ATTR_ENCR)} not supported"
        if h is None:
            return f"phase-1 hash algorithm {a.get(_V1_ATTR_HASH)} not supported"
        if self.gxi is None or self.gxr is None:
            return "the phase-1 KE payloads are not in the capture (the first IV derives from them)"
        klen = {"des-cbc": 8, "3des-cbc": 24}.get(cipher) or (a.get(_V1_ATTR_KEYLEN, 128) // 8)
        self.encr = (cipher, klen)
        self.hash = h
        bs = _BLOCK[cipher]
        # RFC 2409 App. B: IV = hash(g^xi | g^xr), truncated to the block size
        self.p1_iv = hashlib.new(h, self.gxi + self.gxr).digest()[:bs]
        self.p1_states = [self.p1_iv]
        return None

    # -- encrypted messages --------------------------------------------------------------

    def message(self, m, role: str):
        """Decrypt an E-flag message → ``(status, detail, origin, payloads, first, True)``.
        Advances the IV chains (ciphertext-based: whatever the key)."""
        why = self._setup()
        if why is not None:
            return (UNSUPPORTED, f"not decrypted: {why} (IKEv1 IVs chain from phase 1)", None,
                    None, None, True)
        cipher, klen = self.encr
        bs = _BLOCK[cipher]
        body = m.msg.encrypted_body or b""
        if m.msg.truncated:
            return (TRUNCATED, "message cut by the capture's snaplen", None, None, None, True)
        n = len(body) - len(body) % bs
        if n <= 0:
            return (MALFORMED, "encrypted body shorter than one block", None, None, None, True)
        ct = body[:n]
        phase1 = m.exch in _V1_PHASE1
        mid = m.msgid
        if phase1:
            ivs = [self.p1_iv]
        elif m.exch != _V1_INFO and mid in self.chains:
            ivs = [self.chains[mid]]
        else:
            # RFC 2409 App. B: hash(last phase-1 CBC output block | M-ID)
            mb = struct.pack(">I", mid)
            ivs = [hashlib.new(self.hash, last + mb).digest()[:bs]
                   for last in reversed(self.p1_states)]
        # advance the chains: the next IV is this message's last ciphertext block
        if phase1:
            self.p1_iv = ct[-bs:]
            self.p1_states.append(self.p1_iv)
        elif m.exch != _V1_INFO:
            self.chains[mid] = ct[-bs:]
        first = m.msg.next_payload
        tried = 0
        for i, k in enumerate(self.keys):
            if len(k.key) < klen:
                continue
            tried += 1
            for j, iv in enumerate(ivs):
                pt = cbc_decrypt(cipher, k.key[:klen], iv, ct)
                try:
                    payloads, errors = _v1.parse_payloads(pt, 0, len(pt), first)
                except DissectError:
                    continue
                if not _chain_ok(payloads, errors, _V1_KNOWN):
                    continue
                self.used_by.setdefault(role, set()).add(i)
                note = "" if n == len(body) else f" ({len(body) - n} bytes beyond the last block)"
                if j:
                    note += (" (IV from an earlier phase-1 state: this peer did not accept the "
                             "last phase-1 message)")
                return (UNVERIFIED, "IKEv1: no integrity check; the payload chain is valid" + note,
                        k.origin, payloads, first, True)
        if not tried:
            return (UNSUPPORTED, f"key too short for {cipher} ({klen} bytes needed)",
                    self.keys[0].origin if self.keys else None, None, None, True)
        return (MALFORMED, "decrypts to no valid payload chain with "
                + ("this key" if tried == 1 else f"any of the {tried} keys")
                + ": the key does not match this SA (or this peer)",
                self.keys[0].origin, None, None, True)

    @property
    def keys_differ(self) -> bool:
        """The initiator's and the responder's messages opened with different keys only."""
        a = self.used_by.get("initiator", set())
        b = self.used_by.get("responder", set())
        return bool(a) and bool(b) and not (a & b)


# -- ESP -------------------------------------------------------------------------------------------

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


# -- what the payloads say (records → plain values for tracking and rules) -------------------------

def cert_summary(der: bytes):
    """Subject, issuer, validity and subjectAltNames of an X.509 certificate (DER), or None when
    it does not parse."""
    try:
        from cryptography import x509

        c = x509.load_der_x509_certificate(bytes(der))
    except Exception:  # noqa: BLE001 - any parse failure: not a certificate we can read
        return None
    try:
        nb = c.not_valid_before_utc.timestamp()
        na = c.not_valid_after_utc.timestamp()
    except AttributeError:  # pragma: no cover - cryptography < 42
        import calendar

        nb = calendar.timegm(c.not_valid_before.utctimetuple())
        na = calendar.timegm(c.not_valid_after.utctimetuple())
    sans = []
    try:
        ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for g in ext:
            sans.append(str(getattr(g, "value", g)))
    except Exception:  # noqa: BLE001 - no SAN extension (or an unreadable one)
        pass
    try:
        subject = c.subject.rfc4514_string()
        issuer = c.issuer.rfc4514_string()
    except Exception:  # noqa: BLE001
        subject = issuer = "?"
    return {"subject": subject, "issuer": issuer, "not_before": nb, "not_after": na,
            "subject_alt_names": sans, "serial": format(c.serial_number, "x")}


class ChildSpi(NamedTuple):
    """The SPI a decrypted SA proposal offers for an AH / ESP child SA."""

    protocol: int  # ProtocolId.AH / ESP
    spi: bytes
    value: int  # the SPI as an integer


@dataclass(slots=True)
class InnerPayloads:
    """What the decrypted payloads of an IKE message say (:func:`describe_inner`), for tracking,
    the rules and the report.  Records are dissect's where dissect has them."""

    #: the first inner payload type
    first: int | None
    payload_types: list = field(default_factory=list)
    #: Notify (IKEv2) / Notification (IKEv1) records: ``n.notify_type``, ``n.invalid_spi``,
    #: ``n.dpd_seq`` ...
    notifies: list = field(default_factory=list)
    #: Delete records: ``protocol``, ``spis`` (bytes), ``spi_values`` (ints)
    deletes: list = field(default_factory=list)
    #: AH / ESP SPIs offered in SA proposals (:class:`ChildSpi`)
    child_spis: list = field(default_factory=list)
    #: the SA payload's proposal records
    proposals: list = field(default_factory=list)
    #: ``(payload type, id type, text)`` of each ID payload
    ids: list = field(default_factory=list)
    #: traffic selectors of the initiator / the responder (:func:`dissect.vpn.ident.selectors`)
    ts_initiator: list = field(default_factory=list)
    ts_responder: list = field(default_factory=list)
    #: :func:`cert_summary` of each X.509 CERT, or ``{"encoding": n}``
    certs: list = field(default_factory=list)
    #: ``(cfg type, [(attribute, value)])`` of CP / Mode-CFG payloads
    config: list = field(default_factory=list)
    #: ``(code, type)`` of EAP payloads
    eap: list = field(default_factory=list)
    auth_method: int | None = None


_CHILD_PROTOCOLS = (ProtocolId.AH, ProtocolId.ESP)


def _child_spis(out: InnerPayloads, proposals) -> None:
    out.proposals = proposals
    for pr in proposals:
        if pr.protocol in _CHILD_PROTOCOLS and pr.spi:
            out.child_spis.append(ChildSpi(pr.protocol, pr.spi, pr.spi_value))


def _cert(out: InnerPayloads, p) -> None:
    s = cert_summary(p.data) if p.encoding == CERT_X509_SIGNATURE else None
    out.certs.append(s if s is not None else {"encoding": p.encoding})


def describe_inner(version: int, payloads, first) -> InnerPayloads:
    """What decrypted payloads say, as an :class:`InnerPayloads`."""
    out = InnerPayloads(first)
    qm_ids = []
    for p in payloads or ():
        t = p.type
        out.payload_types.append(t)
        if version == 2:
            if t == PayloadV2.N and hasattr(p, "notify_type"):
                out.notifies.append(p)
            elif t == PayloadV2.D and hasattr(p, "spis"):
                out.deletes.append(p)
            elif t == PayloadV2.SA and hasattr(p, "proposals"):
                _child_spis(out, p.proposals)
            elif t in (PayloadV2.IDI, PayloadV2.IDR) and hasattr(p, "id_type"):
                out.ids.append((t, p.id_type, id_text(p.id_type, p.data)))
            elif t in (PayloadV2.TSI, PayloadV2.TSR) and hasattr(p, "selectors"):
                (out.ts_initiator if t == PayloadV2.TSI else out.ts_responder).extend(
                    selectors(p, 2))
            elif t == PayloadV2.CERT and hasattr(p, "encoding"):
                _cert(out, p)
            elif t == PayloadV2.CP and hasattr(p, "cfg_type"):
                out.config.append((p.cfg_type, list(p.attributes)))
            elif t == PayloadV2.EAP and hasattr(p, "code"):
                out.eap.append((p.code, p.eap_type))
            elif t == PayloadV2.AUTH and hasattr(p, "method"):
                out.auth_method = p.method
        else:
            if t == PayloadV1.N and hasattr(p, "notify_type"):
                out.notifies.append(p)
            elif t == PayloadV1.D and hasattr(p, "spis"):
                out.deletes.append(p)
            elif t == PayloadV1.SA and hasattr(p, "proposals"):
                _child_spis(out, p.proposals)
            elif t == PayloadV1.ID and hasattr(p, "id_type"):
                out.ids.append((t, p.id_type, id_text(p.id_type, p.data)))
                qm_ids.append(p)
            elif t == PayloadV1.CERT and hasattr(p, "encoding"):
                _cert(out, p)
            elif t == PayloadV1.ATTR and hasattr(p, "cfg_type"):
                out.config.append((p.cfg_type, list(p.attributes)))
    if version == 1 and len(qm_ids) == 2:
        # Quick Mode IDci / IDcr (RFC 2409 §5.5): the initiator's and the responder's selectors
        out.ts_initiator = selectors(qm_ids[0], 1)
        out.ts_responder = selectors(qm_ids[1], 1)
    return out


#: configuration attributes whose values are secrets and never leave this module as values:
#: XAUTH USER-PASSWORD 16522 and PASSCODE 16525 (draft-beaulieu-ike-xauth-02 §6.1)
SECRET_CONFIG_ATTRIBUTES = frozenset((16522, 16525))
