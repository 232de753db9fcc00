"""IKEv1 encrypted messages (RFC 2409 Appendix B): the phase-1 cipher and hash learned from the
cleartext SA payloads, the first IV from the KE values, and the IV chains per Message ID."""

from __future__ import annotations

import hashlib
import struct

from dissect.vpn import ikev1 as _v1
from dissect.vpn.errors import DissectError
from dissect.vpn.registry import PayloadV1
from pcapvpn.decrypt.primitives import (
    _BLOCK, MALFORMED, TRUNCATED, UNSUPPORTED, UNVERIFIED, cbc_decrypt,
)

#: RFC 2409 App. A: Encryption Algorithm (1) values; AES-CBC 7 from RFC 3602 §5
_V1_ENCR = {1: "des-cbc", 5: "3des-cbc", 7: "aes-cbc"}
#: RFC 2409 App. A: Hash Algorithm (2) values; SHA2 from RFC 4868 §2.4 (IANA)
_V1_HASH = {1: "md5", 2: "sha1", 4: "sha256", 5: "sha384", 6: "sha512"}
_V1_ATTR_ENCR = 1
_V1_ATTR_HASH = 2
_V1_ATTR_KEYLEN = 14
_V1_PHASE1 = (2, 4)  # Main, Aggressive
_V1_INFO = 5

_V1_KNOWN = frozenset(_v1.PARSERS)


def _chain_ok(payloads, errors, known) -> bool:
    """A decrypted IKEv1 payload chain that parses (IKEv1 has no integrity check: a wrong key
    shows as unknown payload types or lengths running past the message)."""
    if not payloads:
        return False
    for reason, _off in errors:
        if not reason.endswith("bytes after the last payload"):
            return False
    return all(p.type in known for p in payloads)



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
