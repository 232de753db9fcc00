"""Decryption units: every listed IKEv2 cipher x integrity, SKF reassembly, IKEv1 IV chaining
(RFC 2409 App. B) through the tracker, ESP against scapy's independent ESP implementation.

The protected messages are built here with ``cryptography`` straight from the RFCs (not with
pcapvpn's helpers), so a wrong nonce, AAD or IV construction in pcapvpn fails these tests."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, ChaCha20Poly1305

from dissect.vpn import ident
from dissect.vpn import ike as _ike
from pcapvpn.decrypt.esp import EspDecryptor, _EspKeyed
from pcapvpn.decrypt.ikev2 import Ikev2Decryptor
from pcapvpn.decrypt.keyfile import load_keys
from pcapvpn.decrypt.payloads import cert_summary
from pcapvpn.events import ike_event
from pcapvpn.thresholds import DEFAULT
from pcapvpn.track.ike import IkeTracker

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover
    TripleDES = algorithms.TripleDES

ISPI = bytes.fromhex("1122334455667788")
RSPI = bytes.fromhex("99aabbccddeeff00")
#: AUTHENTICATION_FAILED notify (RFC 7296 §3.10): generic header + protocol 0, SPI size 0, type 24
INNER = b"\x00\x00\x00\x08\x00\x00\x00\x18"
N = 41

# (Wireshark/strongSwan name, key bytes incl. salt, kind, block/iv, icv)
ENCR = [
    ("AES-CBC-128 [RFC3602]", 16, "cbc", 16, 0), ("AES-CBC-192 [RFC3602]", 24, "cbc", 16, 0),
    ("AES-CBC-256 [RFC3602]", 32, "cbc", 16, 0), ("AES-CTR-128 [RFC5930]", 20, "ctr", 8, 0),
    ("AES-CTR-192 [RFC5930]", 28, "ctr", 8, 0), ("AES-CTR-256 [RFC5930]", 36, "ctr", 8, 0),
    ("3DES [RFC2451]", 24, "3des", 8, 0),
]
AEAD = [(f"AES-{m}-{b} with {i} octet ICV [RFC5282]", b // 8 + (4 if m == "GCM" else 3),
         m.lower(), 8, i) for m in ("GCM", "CCM") for b in (128, 192, 256) for i in (8, 12, 16)]
AEAD.append(("CHACHA20-POLY1305 [RFC7634]", 36, "chacha", 8, 16))
INTEG = [("HMAC_MD5_96 [RFC2403]", "md5", 16, 12), ("HMAC_SHA1_96 [RFC2404]", "sha1", 20, 12),
         ("HMAC_SHA1_160 [RFC4595]", "sha1", 20, 20),
         ("HMAC_SHA2_256_128 [RFC4868]", "sha256", 32, 16),
         ("HMAC_SHA2_384_192 [RFC4868]", "sha384", 48, 24),
         ("HMAC_SHA2_512_256 [RFC4868]", "sha512", 64, 32)]
CASES = [(e, i) for e in ENCR for i in INTEG] + [(a, None) for a in AEAD] + \
    [(("NULL [RFC2410]", 0, "null", 0, 0), INTEG[1])]


def _encrypt(kind, key, iv, pt, aad, icv):
    """RFC 3602 (CBC), RFC 5930 (CTR), RFC 5282 (GCM/CCM), RFC 7634 (ChaCha20-Poly1305)."""
    if kind == "cbc":
        e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    elif kind == "3des":
        e = Cipher(TripleDES(key), modes.CBC(iv)).encryptor()
    elif kind == "ctr":
        e = Cipher(algorithms.AES(key[:-4]), modes.CTR(key[-4:] + iv + b"\0\0\0\1")).encryptor()
    elif kind == "gcm":
        e = Cipher(algorithms.AES(key[:-4]), modes.GCM(key[-4:] + iv)).encryptor()
        e.authenticate_additional_data(aad)
        ct = e.update(pt) + e.finalize()
        return ct + e.tag[:icv]
    elif kind == "ccm":
        return AESCCM(key[:-3], tag_length=icv).encrypt(key[-3:] + iv, pt, aad)
    elif kind == "chacha":
        return ChaCha20Poly1305(key[:32]).encrypt(key[32:] + iv, pt, aad)
    elif kind == "null":
        return pt
    return e.update(pt) + e.finalize()


def v2_message(encr, integ, ekey, akey, inner=INNER, first=N, exch=35, flags=0x20, msgid=1,
               skf=None, ispi=ISPI, rspi=RSPI):
    """An IKEv2 message with one SK (or SKF: ``skf=(number, total)``) payload."""
    name, klen, kind, ivlen, icv = encr
    blk = 16 if kind == "cbc" else 8 if kind == "3des" else 1
    padlen = (-(len(inner) + 1)) % blk
    pt = inner + bytes(padlen) + bytes([padlen])
    iv = os.urandom(ivlen)
    ilen = integ[3] if integ else 0
    ptype = 53 if skf else 46
    extra = struct.pack(">HH", *skf) if skf else b""
    body_len = 4 + len(extra) + ivlen + len(pt) + (icv if icv else 0) + ilen
    length = 28 + body_len
    hdr = ispi + rspi + bytes([ptype, 0x20, exch, flags]) + struct.pack(">II", msgid, length)
    skh = bytes([first, 0]) + struct.pack(">H", body_len) + extra
    aad = hdr + skh
    ct = _encrypt(kind, ekey, iv, pt, aad, icv)
    msg = aad + iv + ct
    if integ:
        msg += hmac.new(akey, msg, integ[1]).digest()[:ilen]
    assert len(msg) == length
    return msg


def keys_for(tmp_path, encr, integ):
    ek = os.urandom(encr[1])
    ak = os.urandom(integ[2]) if integ else b""
    iname = integ[0] if integ else "NONE [RFC4306]"
    line = (f"{ISPI.hex()},{RSPI.hex()},{ek.hex()},{os.urandom(encr[1]).hex()},\"{encr[0]}\","
            f"{ak.hex()},{os.urandom(len(ak)).hex()},\"{iname}\"\n")
    p = tmp_path / "ikev2_decryption_table"
    p.write_text(line)
    (k,) = load_keys([p]).ikev2_for(ISPI, RSPI)
    return k, ek, ak


class Msg:
    """The attributes of an IkeMsg the decryptor reads."""

    def __init__(self, raw, from_initiator=True, is_response=False):
        self.msg = _ike.parse_message(raw)
        self.msgid = self.msg.msgid
        self.from_initiator = from_initiator
        self.is_response = is_response


@pytest.mark.parametrize("encr,integ", CASES,
                         ids=[f"{e[0].split(' [')[0]}-{i[0].split(' [')[0] if i else 'AEAD'}"
                              for e, i in CASES])
def test_ikev2_every_algorithm(tmp_path, encr, integ):
    k, ek, ak = keys_for(tmp_path, encr, integ)
    raw = v2_message(encr, integ, ek, ak)
    d = Ikev2Decryptor([k])
    status, detail, origin, payloads, first, complete = d.message(Msg(raw))
    assert status == "ok", detail
    assert first == N and [p.notify_type for p in payloads] == [24]
    assert origin.endswith("ikev2_decryption_table:1")
    # one flipped ciphertext bit: the integrity check (ICV / AEAD tag) catches it
    bad = bytearray(raw)
    bad[-1 - (integ[3] if integ else encr[4])] ^= 1
    assert Ikev2Decryptor([k]).message(Msg(bytes(bad)))[0] == "icv_failed"


@pytest.mark.parametrize("encr", [ENCR[0], AEAD[2], AEAD[-1]], ids=lambda e: e[0][:12])
def test_ikev2_wrong_key_is_an_icv_failure(tmp_path, encr):
    integ = None if encr[4] else INTEG[3]
    k, ek, ak = keys_for(tmp_path, encr, integ)
    raw = v2_message(encr, integ, os.urandom(len(ek)), ak)  # encrypted with another key
    status = Ikev2Decryptor([k]).message(Msg(raw))[0]
    if integ:  # HMAC still right: decrypts to garbage -> no valid payload chain
        assert status == "malformed"
    else:
        assert status == "icv_failed"


def test_ikev2_integrity_key_wrong_but_payloads_valid(tmp_path):
    """The ikev2pI2 case: the ICV fails, yet the plaintext is a valid chain (told apart)."""
    k, ek, ak = keys_for(tmp_path, ENCR[0], INTEG[1])
    raw = v2_message(ENCR[0], INTEG[1], ek, os.urandom(20))
    status, detail, _o, payloads, _f, _c = Ikev2Decryptor([k]).message(Msg(raw))
    assert status == "icv_failed" and payloads is not None and "encryption key matches" in detail


def test_ikev2_skf_reassembly(tmp_path):
    """RFC 7383 §2.6: fragments protected one by one, reassembled in order, first payload from
    fragment 1."""
    encr = AEAD[2]
    k, ek, _ak = keys_for(tmp_path, encr, None)
    inner = INNER[:1] + b"\x00" + INNER[2:]  # one notify
    idr = b"\x29\x00\x00\x0c" + b"\x02\x00\x00\x00" + b"host"  # IDr (36) -> next N
    whole = idr + INNER
    parts = [whole[:7], whole[7:]]
    d = Ikev2Decryptor([k])
    r1 = d.message(Msg(v2_message(encr, None, ek, b"", parts[0], first=36, skf=(1, 2))))
    assert r1[0] == "ok" and r1[5] is False and "fragment 1 of 2" in r1[1]
    r2 = d.message(Msg(v2_message(encr, None, ek, b"", parts[1], first=0, skf=(2, 2))))
    assert r2[0] == "ok" and r2[5] is True and r2[4] == 36
    assert [p.type for p in r2[3]] == [36, 41]
    assert inner  # (kept for readability)


@pytest.mark.oracle
def test_ikev2_construction_agrees_with_tshark(tmp_path):
    """The messages built above for every algorithm Wireshark 4.0 knows (all but
    ChaCha20-Poly1305) decrypt in tshark to the same Notify with a correct ICV: the RFC
    constructions used to test pcapvpn are Wireshark's too."""
    import subprocess

    from scapy.all import IP, UDP, Ether, Raw, wrpcap

    from conftest import tshark_path

    frames, lines, want = [], [], {}
    for i, (encr, integ) in enumerate(c for c in CASES if "CHACHA" not in c[0][0]):
        ispi, rspi = struct.pack(">Q", 0x1000 + i), struct.pack(">Q", 0x2000 + i)
        ek, ak = os.urandom(encr[1]), os.urandom(integ[2]) if integ else b""
        iname = integ[0] if integ else "NONE [RFC4306]"
        lines.append(f"{ispi.hex()},{rspi.hex()},{os.urandom(encr[1]).hex()},{ek.hex()},"
                     f"\"{encr[0]}\",{os.urandom(len(ak)).hex()},{ak.hex()},\"{iname}\"")
        raw = v2_message(encr, integ, ek, ak, ispi=ispi, rspi=rspi)  # a response: SK_er, SK_ar
        p = Ether() / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=500, dport=500) / Raw(raw)
        p.time = 1_700_000_000 + i
        frames.append(p)
        want[i + 1] = encr[0]
    cap = tmp_path / "v2.pcap"
    wrpcap(str(cap), frames)
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "ikev2_decryption_table").write_text("\n".join(lines) + "\n")
    res = subprocess.run([tshark_path(), "-n", "-r", str(cap), "-T", "fields", "-e",
                          "frame.number", "-e", "isakmp.notify.msgtype", "-e",
                          "_ws.expert.message"], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, WIRESHARK_CONFIG_DIR=str(cfg)))
    assert res.returncode == 0, res.stderr
    rows = [line.split("\t") for line in res.stdout.splitlines()]
    assert len(rows) == len(want)
    for num, notify, expert in rows:
        assert notify == "24" and "incorrect" not in expert, (want[int(num)], notify, expert)


# -- IKEv1 through the tracker -----------------------------------------------------------------

def _gen(np, body):
    return bytes([np, 0]) + struct.pack(">H", 4 + len(body)) + body


def _v1_header(np, exch, flags, msgid, length, rcookie=RSPI):
    return ISPI + rcookie + bytes([np, 0x10, exch, flags]) + struct.pack(">II", msgid, length)


def _v1_sa(np):
    # RFC 2409 App. A attributes (TV): encr 7 (AES-CBC), key length 128, hash 2 (SHA), auth 1
    # (PSK), group 14
    attrs = b"".join(struct.pack(">HH", 0x8000 | t, v)
                     for t, v in ((1, 7), (14, 128), (2, 2), (3, 1), (4, 14)))
    tr = bytes([0, 0]) + struct.pack(">H", 8 + len(attrs)) + bytes([1, 1, 0, 0]) + attrs
    prop = bytes([0, 0]) + struct.pack(">H", 8 + len(tr)) + bytes([1, 1, 0, 1]) + tr
    return _gen(np, struct.pack(">II", 1, 1) + prop)


def _v1_clear(np, exch, payloads, msgid=0, rcookie=RSPI):
    return _v1_header(np, exch, 0, msgid, 28 + len(payloads), rcookie) + payloads


def _v1_enc(np, exch, payloads, key, iv, msgid=0):
    pad = (-len(payloads)) % 16
    e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ct = e.update(payloads + bytes(pad)) + e.finalize()
    return _v1_header(np, exch, 1, msgid, 28 + len(ct)) + ct, ct[-16:]


def _feed(tr, msgs):
    a, b = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
    for i, (raw, from_init) in enumerate(msgs):
        src, dst = (a, b) if from_init else (b, a)
        ike_event(tr, (0, i + 1), 1000.0 + i, 4, src, dst, 500, 500, "udp", raw, 0, len(raw),
                  ((0, i + 1),))


def test_ikev1_iv_chaining_through_the_tracker(tmp_path):
    key = os.urandom(16)
    (tmp_path / "ikev1_decryption_table").write_text(f"{ISPI.hex()},{key.hex()}\n")
    keys = load_keys([tmp_path])
    gxi, gxr = os.urandom(256), os.urandom(256)
    h = lambda data: hashlib.sha1(data).digest()[:16]  # noqa: E731
    msgs = [(_v1_clear(1, 2, _v1_sa(0), rcookie=bytes(8)), True),
            (_v1_clear(1, 2, _v1_sa(0)), False),
            (_v1_clear(4, 2, _gen(10, gxi) + _gen(0, os.urandom(16))), True),
            (_v1_clear(4, 2, _gen(10, gxr) + _gen(0, os.urandom(16))), False)]
    # MM5: ID + HASH with IV = hash(g^xi | g^xr) (RFC 2409 App. B)
    mm5, last = _v1_enc(5, 2, _gen(8, b"\x02\x00\x00\x00left") + _gen(0, os.urandom(20)), key,
                        h(gxi + gxr))
    mm6, last = _v1_enc(5, 2, _gen(8, b"\x02\x00\x00\x00right") + _gen(0, os.urandom(20)), key,
                        last)
    msgs += [(mm5, True), (mm6, False)]
    # Quick Mode: IV = hash(last phase-1 block | M-ID), then chained
    mid = 0x01020304
    subnet = b"\x04\x00\x00\x00" + bytes([10, 1, 0, 0, 255, 255, 255, 0])
    subnet2 = b"\x04\x00\x00\x00" + bytes([10, 1, 0, 0, 255, 255, 0, 0])
    # HASH, SA(ESP SPI cafe0001), Nonce, IDci, IDcr
    sa_body = struct.pack(">II", 1, 1) + bytes([0, 0, 0, 20, 1, 3, 4, 1]) + b"\xca\xfe\x00\x01" + \
        bytes([0, 0, 0, 8, 1, 12, 0, 0])
    qm1_body = _gen(1, os.urandom(20)) + _gen(10, sa_body) + _gen(5, os.urandom(16)) + \
        _gen(5, subnet) + _gen(0, subnet2)
    qm1, qlast = _v1_enc(8, 32, qm1_body, key, h(last + struct.pack(">I", mid)), mid)
    qm2, _ = _v1_enc(8, 32, _gen(0, os.urandom(20)), key, qlast, mid)
    # Informational R-U-THERE (RFC 3706), its own IV from the phase-1 block
    dpd = struct.pack(">IBBH", 1, 1, 16, 36136) + ISPI + RSPI + struct.pack(">I", 7)
    info, _ = _v1_enc(8, 5, _gen(11, os.urandom(20)) + _gen(0, dpd), key,
                      h(last + struct.pack(">I", 0x0a0b0c0d)), 0x0a0b0c0d)
    msgs += [(qm1, True), (qm2, False), (info, True)]
    tr = IkeTracker(DEFAULT, ["x"], keys)
    _feed(tr, msgs)
    (sa,) = tr.sas
    enc = [m for m in sa.messages if m.encrypted]
    assert [m.decrypt_status for m in enc] == ["unverified"] * 5
    assert enc[0].inner.ids[0][2] == "left" and enc[1].inner.ids[0][2] == "right"
    q = enc[2].inner
    assert q.child_spis == [(3, b"\xca\xfe\x00\x01", 0xCAFE0001)]
    assert q.ts_initiator == [(4, 0x0A010000, 0x0A0100FF, 0, 0, 65535)]
    assert q.ts_responder == [(4, 0x0A010000, 0x0A01FFFF, 0, 0, 65535)]
    assert enc[4].inner.notifies[0].notify_type == 36136
    assert enc[4].inner.notifies[0].dpd_seq == 7
    # a wrong key: no message makes a valid payload chain
    (tmp_path / "ikev1_decryption_table").write_text(f"{ISPI.hex()},{os.urandom(16).hex()}\n")
    tr2 = IkeTracker(DEFAULT, ["x"], load_keys([tmp_path]))
    _feed(tr2, msgs)
    assert {m.decrypt_status for m in tr2.sas[0].messages if m.encrypted} == {"malformed"}


# -- ESP against scapy -------------------------------------------------------------------------

scapy_ipsec = pytest.importorskip("scapy.layers.ipsec")

ESP_CASES = [
    # (scapy crypt, key bytes, icv, our name, scapy auth, auth key bytes, our auth name)
    ("AES-CBC", 16, None, "AES-CBC [RFC3602]", "HMAC-SHA1-96", 20, "HMAC-SHA-1-96 [RFC2404]"),
    ("AES-CBC", 32, None, "AES-CBC [RFC3602]", "SHA2-256-128", 32, "HMAC-SHA-256-128 [RFC4868]"),
    ("AES-CBC", 24, None, "AES-CBC [RFC3602]", "SHA2-384-192", 48, "HMAC-SHA-384-192 [RFC4868]"),
    ("AES-CBC", 16, None, "AES-CBC [RFC3602]", "SHA2-512-256", 64, "HMAC-SHA-512-256 [RFC4868]"),
    ("3DES", 24, None, "TripleDES-CBC [RFC2451]", "HMAC-MD5-96", 16, "HMAC-MD5-96 [RFC2403]"),
    ("DES", 8, None, "DES-CBC [RFC2405]", "HMAC-SHA1-96", 20, "HMAC-SHA-1-96 [RFC2404]"),
    ("AES-CTR", 20, None, "AES-CTR [RFC3686]", "HMAC-SHA1-96", 20, "HMAC-SHA-1-96 [RFC2404]"),
    ("AES-GCM", 20, 16, "AES-GCM with 16 octet ICV [RFC4106]", None, 0, "NULL"),
    ("AES-GCM", 36, 12, "AES-GCM with 12 octet ICV [RFC4106]", None, 0, "NULL"),
    ("AES-GCM", 28, 8, "AES-GCM with 8 octet ICV [RFC4106]", None, 0, "NULL"),
    ("AES-GCM", 20, 16, "AES-GCM [RFC4106]", None, 0, "ANY 128 bit authentication [no checking]"),
    ("AES-GCM", 20, 12, "AES-GCM [RFC4106]", None, 0, "ANY 64 bit authentication [no checking]"),
    ("AES-CCM", 19, 16, "AES-CCM with 16 octet ICV [RFC4309]", None, 0, "NULL"),
    ("AES-CCM", 35, 8, "AES-CCM with 8 octet ICV [RFC4309]", None, 0, "NULL"),
    ("AES-CCM", 27, 12, "AES-CCM with 12 octet ICV [RFC4309]", None, 0, "NULL"),
    ("CHACHA20-POLY1305", 36, 16, "CHACHA20-POLY1305 [RFC7634]", None, 0, "NULL"),
    ("NULL", 0, None, "NULL", "HMAC-SHA1-96", 20, "HMAC-SHA-1-96 [RFC2404]"),
]


def _gcm_esp(ekey, icv, inner, seq):
    """RFC 4106 built here: scapy's AESGCM path always appends a 16-byte tag (its
    crypt_icv_size is ignored for GCM), so the 8- and 12-octet ICVs are made by hand."""
    from scapy.layers.inet import IP

    hdr = struct.pack(">II", 0x0BADCAFE, seq)
    iv = os.urandom(8)
    padlen = (-(len(inner) + 2)) % 4
    pt = inner + bytes(range(1, padlen + 1)) + bytes([padlen, 4])
    ct = _encrypt("gcm", ekey, iv, pt, hdr, icv)
    outer = IP(src="198.51.100.1", dst="203.0.113.9", proto=50) / (hdr + iv + ct)
    return bytes(outer)


def _scapy_esp(case, ekey, akey, tunnel=True, n=3):
    from scapy.layers.inet import ICMP, IP, UDP

    crypt, _kl, icv, _n, auth, _al, _an = case
    if crypt == "AES-GCM" and icv != 16:
        if not tunnel:
            return []
        return [_gcm_esp(ekey, icv, bytes(IP(src="10.1.1.1", dst="10.2.2.2") /
                                          ICMP(type=8, id=77, seq=i)), i + 1) for i in range(n)]
    sa = scapy_ipsec.SecurityAssociation(
        scapy_ipsec.ESP, spi=0x0BADCAFE, crypt_algo=crypt, crypt_key=ekey or None,
        crypt_icv_size=icv, auth_algo=auth, auth_key=akey or None,
        tunnel_header=IP(src="198.51.100.1", dst="203.0.113.9") if tunnel else None)
    out = []
    for i in range(n):
        inner = IP(src="10.1.1.1", dst="10.2.2.2") / (
            ICMP(type=8, id=77, seq=i) if tunnel else UDP(sport=1701, dport=1701) / b"l2tp")
        out.append(bytes(sa.encrypt(inner)))
    return out


@pytest.mark.parametrize("case", ESP_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[4] or c[2]}" for c in ESP_CASES])
def test_esp_against_scapy(tmp_path, case):
    crypt, klen, icv, name, auth, alen, aname = case
    ekey, akey = os.urandom(klen), os.urandom(alen)
    (tmp_path / "esp_sa").write_text(
        f'"IPv4","198.51.100.1","203.0.113.9","0x0badcafe","{name}","0x{ekey.hex()}",'
        f'"{aname}","{("0x" + akey.hex()) if akey else ""}"\n')
    keys = load_keys([tmp_path]).esp_for(0x0BADCAFE)
    d = EspDecryptor(keys)
    for pkt in _scapy_esp(case, ekey, akey):
        status, nh, pt = d.open(pkt, 20, len(pkt))
        assert status == ("ok" if (icv or auth) else "unverified"), status
        assert nh == 4 and pt[12:20] == bytes([10, 1, 1, 1, 10, 2, 2, 2])
    # transport mode (L2TP/IPsec): the next header is UDP
    for pkt in _scapy_esp(case, ekey, akey, tunnel=False, n=1):
        status, nh, pt = d.open(pkt, 20, len(pkt))
        assert nh == 17 and pt[:4] == b"\x06\xa5\x06\xa5"
    # a key that does not match
    other = EspDecryptor(load_keys([tmp_path]).esp_for(0x0BADCAFE))
    other.cands = [_EspKeyed(c.key.__class__(**{
        **c.key.__dict__, "ekey": os.urandom(len(ekey)) if ekey else b"",
        "akey": os.urandom(len(akey)) if akey else b""}), c.icv) for c in other.cands]
    pkt = _scapy_esp(case, ekey, akey, n=1)[0]
    if (icv or auth) and other.cands:
        assert other.open(pkt, 20, len(pkt))[0] == "icv_failed"


@pytest.mark.oracle
def test_esp_construction_agrees_with_tshark(tmp_path):
    """The ESP packets of the cases Wireshark 4.0 can decrypt (all but AES-CCM and
    ChaCha20-Poly1305, which scapy checks instead) open in tshark with a good ICV."""
    import subprocess

    from scapy.all import Ether, wrpcap
    from scapy.layers.inet import IP

    from conftest import tshark_path

    frames, lines = [], []
    for i, case in enumerate(c for c in ESP_CASES
                             if c[0] not in ("AES-CCM", "CHACHA20-POLY1305")
                             and not c[3].startswith("AES-GCM [")):
        ekey, akey = os.urandom(case[1]), os.urandom(case[5])
        spi = 0x0BADCAFE
        raw = _scapy_esp(case, ekey, akey, n=1)[0]
        assert int.from_bytes(raw[20:24], "big") == spi
        lines.append(f'"IPv4","198.51.100.1","203.0.113.9","0x{spi:08x}","{case[3]}",'
                     f'"0x{ekey.hex()}","{case[6]}","{("0x" + akey.hex()) if akey else ""}"')
        p = Ether() / IP(raw)
        p.time = 1_700_000_000 + i
        frames.append((p, lines[-1]))
    for i, (p, line) in enumerate(frames):  # one capture per case: the same SPI in each
        cap = tmp_path / f"esp{i}.pcap"
        wrpcap(str(cap), [p])
        cfg = tmp_path / f"cfg{i}"
        cfg.mkdir()
        (cfg / "esp_sa").write_text(line + "\n")
        res = subprocess.run([tshark_path(), "-n", "-r", str(cap), "-o",
                              "esp.enable_encryption_decode:TRUE", "-o",
                              "esp.enable_authentication_check:TRUE", "-T", "fields", "-E",
                              "occurrence=a", "-e", "ip.src", "-e", "esp.icv_good", "-e",
                              "esp.icv_bad"], capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, WIRESHARK_CONFIG_DIR=str(cfg)))
        src, _good, bad = (res.stdout.strip().split("\t") + ["", ""])[:3]
        assert "10.1.1.1" in src.split(","), (line, res.stdout, res.stderr)
        assert bad != "1", line


def test_esp_without_integrity_uses_the_trailer(tmp_path):
    """tcpdump -E '...-hmac96' keys have no authentication key: a wrong key shows in the
    trailer (RFC 4303 §2.4 default padding, Next Header)."""
    case = ("AES-CBC", 16, None, "", "HMAC-SHA1-96", 20, "")
    ekey, akey = os.urandom(16), os.urandom(20)
    pkts = _scapy_esp(case, ekey, akey, n=5)
    (tmp_path / "s").write_text(f"0x0badcafe@203.0.113.9 aes128-cbc-hmac96:0x{ekey.hex()}\n")
    d = EspDecryptor(load_keys([tmp_path / "s"]).esp_for(0x0BADCAFE))
    assert {d.open(p, 20, len(p))[0] for p in pkts} == {"unverified"}
    (tmp_path / "s").write_text("0x0badcafe@203.0.113.9 aes128-cbc-hmac96:0x"
                                f"{os.urandom(16).hex()}\n")
    d = EspDecryptor(load_keys([tmp_path / "s"]).esp_for(0x0BADCAFE))
    assert [d.open(p, 20, len(p))[0] for p in pkts].count("malformed") >= 4


def test_selectors_and_text():
    from types import SimpleNamespace as NS

    v1 = NS(id_type=4, data=bytes([192, 168, 1, 0, 255, 255, 255, 0]), protocol=17, port=1701)
    (s,) = ident.selectors(v1, 1)
    assert ident.selector_text(s) == "192.168.1.0/24 proto 17 port 1701"
    rng = NS(id_type=7, data=bytes([10, 0, 0, 5, 10, 0, 0, 9]), protocol=0, port=0)
    assert ident.selector_text(ident.selectors(rng, 1)[0]) == "10.0.0.5-10.0.0.9"


def test_cert_summary_and_dn():
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "AT"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "gw.example")])
    now = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(42)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("gw.example")]), False)
            .sign(key, hashes.SHA256()))
    s = cert_summary(cert.public_bytes(serialization.Encoding.DER))
    assert s["subject"] == "CN=gw.example,C=AT" and s["subject_alt_names"] == ["gw.example"]
    assert s["not_before"] == now.timestamp()
    assert cert_summary(b"not a certificate") is None
    assert ident.id_text(9, name.public_bytes()) == "C=AT, CN=gw.example"
