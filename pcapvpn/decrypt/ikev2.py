"""IKEv2 SK / SKF payloads (RFC 7296 §3.14, RFC 7383 §2.5) opened with the keys of an IKE SA."""

from __future__ import annotations

from dissect.vpn import ikev2 as _v2
from dissect.vpn.errors import DissectError
from dissect.vpn.registry import PayloadV2
from pcapvpn.decrypt.primitives import (
    _BLOCK, _IV, AEAD, ICV_FAILED, MALFORMED, OK, TRUNCATED, UNSUPPORTED, UNVERIFIED, Aead, Opened,
    _plain, mac,
)


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


_V2_KNOWN = frozenset(_v2.PARSERS) - {PayloadV2.SK, PayloadV2.SKF}


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
