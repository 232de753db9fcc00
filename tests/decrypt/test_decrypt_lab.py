"""Decryption of the lab captures with their own keys, checked against tshark with the same
tables; each lab failure diagnosed exactly (basis: decrypted); synthetic captures (built from a
real lab capture and its keys, or from scratch with RFC constructions) for what the lab does not
produce: ESP after its SA's DELETE, ESP on an SPI never announced, a child SA that never carries
ESP, unanswered pings inside a working tunnel, overlapping selectors, certificates outside their
validity, configuration-payload failures and IKEv1 R-U-THERE without ACK."""

from __future__ import annotations

import datetime as dt
import json
import os
import struct
import subprocess
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import CAPTURES, lab_esp_sas, tshark_path
from oracle_util import decode_as_of
from pcapvpn.analysis import Options, run
from pcapvpn.decrypt.keyfile import load_keys
from pcapvpn.thresholds import DEFAULT

LAB = CAPTURES / "lab"

#: lab expectations this module reads differently, with the reason (reported to the lead)
EXPECTATION_OVERRIDES = {
    # IKEv1 Quick Mode refused with NO-PROPOSAL-CHOSEN: a phase-2 (child SA) failure, reported
    # with the code the cleartext rule (rules/child_sa.py) and IKEv2 use — CHILD_SA_FAILED, stage
    # child_sa; IKE_NO_PROPOSAL_CHOSEN (stage negotiation) would say phase 1 failed.
    ("ikev1_qm_no_proposal", "IKE_NO_PROPOSAL_CHOSEN"): "CHILD_SA_FAILED",
}


def lab_cases():
    out = []
    for d in sorted(LAB.iterdir()):
        exp = d / "expected.json"
        if not exp.is_file():
            continue
        e = json.loads(exp.read_text())
        for c in e.get("captures", []):
            if c.get("keys") and (d / c["keys"]).is_dir():
                out.append((d.name, d / c["file"], d / c["keys"], e))
    return out


CASES = lab_cases()
_RUNS: dict = {}


def analysed(cap, keys):
    key = (str(cap), str(keys))
    if key not in _RUNS:
        _RUNS[key] = run([str(cap)], Options(keys=load_keys([keys])))
    return _RUNS[key]


@pytest.mark.parametrize("name,cap,keys,exp", CASES, ids=[c[1].name for c in CASES])
def test_every_lab_capture_decrypts_with_its_keys(name, cap, keys, exp):
    r = analysed(cap, keys)
    enc = [m for sa in r.state.ike_sas for m in sa.messages if m.encrypted]
    esp = [e for e in r.state.esp_sas if e.proto == "esp"]
    if name == "ikev1_wrong_psk":
        # the two sides derived different keys by design: reported as a key mismatch, and each
        # side's messages open with its own key
        codes = {(f.code, f.basis) for f in r.findings}
        assert ("KEYS_MISMATCH", "decrypted") in codes
        assert ("IKE_AUTH_FAILED", "decrypted") in codes
        assert r.state.ike_sas[0].crypto.keys_differ
        assert {m.decrypt_status for m in enc} == {"unverified"}
        return
    for m in enc:
        want = "ok" if m.version == 2 else "unverified"  # IKEv1 has no integrity check
        assert m.decrypt_status == want, (m.n, m.decrypt_status, m.decrypt_detail)
    for e in esp:
        assert e.decrypt is not None, f"no key for ESP SPI {e.spi:08x}"
        # 100 % with a good ICV
        assert (e.decrypt.ok, e.decrypt.failed, e.decrypt.status) == (e.packets, 0, "decrypted")
    assert "KEYS_MISMATCH" not in {f.code for f in r.findings}


@pytest.mark.parametrize("name,cap,keys,exp", CASES, ids=[c[1].name for c in CASES])
def test_lab_diagnosis_with_keys(name, cap, keys, exp):
    r = analysed(cap, keys)
    fname = cap.name
    got = {(f.code, f.basis) for f in r.findings}
    ef = exp.get("expected_findings", {})

    def applies(f):
        return f.get("capture") in (None, fname)

    for f in ef.get("with_keys", []):
        if not applies(f):
            continue
        code = EXPECTATION_OVERRIDES.get((name, f["code"]), f["code"])
        assert (code, "decrypted") in got, (name, code, sorted(got))
    decrypted = {c for c, b in got if b == "decrypted"}
    for f in ef.get("keyless", []):
        if not applies(f) or f.get("basis") != "inferred":
            continue
        # an inferred finding stays, unless a decrypted one about the same exchange replaced it
        assert f["code"] in {c for c, _b in got} or decrypted, (name, f["code"], sorted(got))
    for code in exp.get("forbidden_findings", []):
        if (name, code) in {(k[0], v) for k, v in EXPECTATION_OVERRIDES.items()}:
            continue
        assert code not in {c for c, _b in got}, (name, code)
    # nothing is both inferred and decrypted for the same exchange
    for f in r.findings:
        if f.basis == "decrypted" and getattr(f, "supersedes", None):
            codes, refs, _spis = f.supersedes
            for g in r.findings:
                if g.basis == "inferred" and g.code in codes:
                    assert not any((x.file, x.frame) in refs for x in g.evidence.frames), g.code


def _tshark(cap, keys, fields, extra=()):
    # a capture on custom ports: the Decode As it records (expected.json)
    decode = [a for d in decode_as_of(cap) for a in ("-d", d)]
    cmd = [tshark_path(), "-n", "-r", str(cap), "-o", "esp.enable_encryption_decode:TRUE",
           "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", *decode, *extra]
    for f in fields:
        cmd += ["-e", f]
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=str(keys))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return [(line.split("\t") + [""] * len(fields))[:len(fields)]
            for line in res.stdout.splitlines()]


#: what Wireshark 4.0 cannot decrypt (no ChaCha20-Poly1305, no ESP AES-CCM): the comparison
#: with tshark is left out there (pcapvpn's own decryption is checked by the tests above)
TSHARK_CANNOT = {"ikev2_healthy_chacha20": {"ike", "esp"}, "ikev2_healthy_ccm": {"esp"}}


@pytest.mark.oracle
@pytest.mark.parametrize("name,cap,keys,exp", [c for c in CASES if c[0] != "ikev1_wrong_psk"],
                         ids=[c[1].name for c in CASES if c[0] != "ikev1_wrong_psk"])
def test_lab_against_tshark(name, cap, keys, exp):
    """The notifications (cleartext + decrypted) per frame and the inner IP flows of ESP are
    the ones tshark shows with the same key tables."""
    lacks = TSHARK_CANNOT.get(name, set())
    if {"ike", "esp"} <= lacks:
        pytest.skip("Wireshark 4.0 decrypts neither this capture's IKE nor its ESP")
    r = analysed(cap, keys)
    rows = _tshark(cap, keys, ["frame.number", "isakmp.notify.msgtype", "ip.src", "ip.dst",
                               "esp.spi", "_ws.expert.message", "ip.proto"])
    ours = {}
    for sa in r.state.ike_sas:
        for m in sa.messages:
            n = [t for t, _s, _d in m.notifies]
            if m.inner is not None:
                n += [t for t, _s, _d in m.inner.notifies]
            ours[m.frames[-1][1]] = n
    theirs_flows = Counter()
    skipped = []
    for num, notes, srcs, dsts, spi, expert, protos in rows:
        num = int(num)
        if num in ours and "ike" not in lacks:
            if "Integrity Checksum Data is incorrect" in expert and _encrypted_v2(r, num):
                # tshark uses the first table line for an SPI pair; when each peer wrote its own
                # and the first does not match, tshark cannot open what pcapvpn opens
                skipped.append(num)
                continue
            assert sorted(int(x) for x in notes.split(",") if x) == sorted(ours[num]), num
        if spi and protos.split(",")[0] in ("17", "50"):  # not ESP quoted in an ICMP error
            s, d = srcs.split(","), dsts.split(",")
            if len(s) >= 2:
                theirs_flows[(s[1], d[1])] += 1
    ours_flows = Counter()
    import ipaddress

    for e in r.state.esp_sas:
        if e.decrypt is None:
            continue
        for k, v in e.decrypt.flows.items():
            ours_flows[(str(ipaddress.ip_address(k[1])), str(ipaddress.ip_address(k[2])))] += v[0]
    if "esp" not in lacks:
        assert ours_flows == theirs_flows
    else:  # tshark opens none of it; pcapvpn opens every ESP packet
        assert not theirs_flows and sum(ours_flows.values()) == sum(
            e.packets for e in r.state.esp_sas)
    if skipped:
        assert name == "ikev2_rekey", skipped  # (see above; documented in the report)


def _encrypted_v2(r, num):
    return any(m.frames[-1][1] == num and m.version == 2 and m.encrypted
               for sa in r.state.ike_sas for m in sa.messages)


def check_filters(cap, findings):
    """Every filter of a decrypted (or keys) finding is accepted by tshark — without keys:
    the filters select by IKE SPI / Message ID / ESP SPI / frame — and shows the evidence."""
    for f in findings:
        if f.basis != "decrypted" and not f.code.startswith("KEYS_"):
            continue
        assert f.wireshark_filter, f.code
        res = subprocess.run([tshark_path(), "-n", "-r", str(cap), "-Y", f.wireshark_filter,
                              "-T", "fields", "-e", "frame.number"], capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, (f.code, f.wireshark_filter, res.stderr)
        shown = {int(x) for x in res.stdout.split()}
        want = {e.frame for e in f.evidence.frames}
        assert want <= shown, (f.code, f.wireshark_filter, sorted(want - shown))


@pytest.mark.oracle
@pytest.mark.parametrize("name,cap,keys,exp", CASES, ids=[c[1].name for c in CASES])
def test_lab_decrypted_filters(name, cap, keys, exp):
    check_filters(cap, analysed(cap, keys).findings)


# -- synthetic captures from a real lab capture -------------------------------------------------

scapy = pytest.importorskip("scapy.all")


def _lab_frames(name):
    from scapy.all import rdpcap

    return list(rdpcap(str(LAB / name / f"{name}.pcap")))


def _esp_sa(line):
    """A scapy SecurityAssociation from an esp_sa line of the lab (AES-CBC + HMAC-SHA-256-128,
    ESP in UDP 4500 as kernel-libipsec sends it)."""
    from scapy.all import IP, UDP
    from scapy.layers.ipsec import ESP, SecurityAssociation

    f = [x.strip('"') for x in line.split(",")]
    return SecurityAssociation(ESP, spi=int(f[3], 16), crypt_algo="AES-CBC",
                               crypt_key=bytes.fromhex(f[5][2:]), auth_algo="SHA2-256-128",
                               auth_key=bytes.fromhex(f[7][2:]),
                               tunnel_header=IP(src=f[1], dst=f[2]),
                               nat_t_header=UDP(sport=4500, dport=4500))


def _esp_frame(tmpl, sa, inner, seq, ts):
    from scapy.all import Ether

    sa.seq_num = seq
    pkt = Ether(src=tmpl.src, dst=tmpl.dst) / sa.encrypt(inner)
    pkt.time = ts
    return pkt


def _write(tmp_path, name, frames):
    from scapy.all import wrpcap

    p = tmp_path / f"{name}.pcap"
    wrpcap(str(p), sorted(frames, key=lambda f: float(f.time)))
    return p


class _Healthy(NamedTuple):
    """ikev2_healthy as the synthetic tests use it, read from the capture and its keys (SPIs,
    frame numbers and packet counts change with every regeneration of the lab)."""

    frames: list   # scapy packets, in capture order
    out: str       # the esp_sa line of the initiator's outbound SA
    back: str      # the esp_sa line of the responder's SA
    esp: list      # indices of the ESP frames (by content), between IKE_AUTH and the DELETE
    initiator: str

    def first_esp(self, src):
        """The first ESP frame sent by ``src`` (a template: MAC addresses, NAT-T ports)."""
        return next(self.frames[i] for i in self.esp if self.frames[i]["IP"].src == src)

    def sent(self, src) -> int:
        """ESP packets ``src`` sent (the last sequence number of its SA: no loss in the lab)."""
        return sum(self.frames[i]["IP"].src == src for i in self.esp)

    @property
    def closing(self) -> int:
        """Index of the first frame after the last ESP: the INFORMATIONAL with the DELETE."""
        return self.esp[-1] + 1


def _is_esp(pkt) -> bool:
    """ESP or ESP in UDP 4500 (RFC 3948: no non-ESP marker, not a 1-byte keepalive)."""
    from scapy.all import IP, UDP

    if IP not in pkt:
        return False
    if pkt[IP].proto == 50:
        return True
    if UDP in pkt and 4500 in (pkt[UDP].sport, pkt[UDP].dport):
        body = bytes(pkt[UDP].payload)
        return len(body) > 4 and body[:4] != bytes(4)
    return False


def _healthy() -> _Healthy:
    from scapy.all import IP, UDP

    frames = _lab_frames("ikev2_healthy")
    lines = (LAB / "ikev2_healthy/keys/esp_sa").read_text().splitlines()
    ike = [p for p in frames if UDP in p and 500 in (p[UDP].sport, p[UDP].dport)]
    initiator = ike[0][IP].src  # the IKE_SA_INIT request's source
    esp = [i for i, p in enumerate(frames) if _is_esp(p)]
    assert esp and esp == list(range(esp[0], esp[-1] + 1)), esp  # one run of ESP
    assert esp[-1] + 1 < len(frames), "no INFORMATIONAL exchange after the ESP"
    out = next(ln for ln in lines if ln.split(",")[1].strip('"') == initiator)
    back = next(ln for ln in lines if ln.split(",")[2].strip('"') == initiator)
    return _Healthy(frames, out, back, esp, initiator)


def test_esp_after_its_delete(tmp_path):
    from scapy.all import ICMP, IP

    h = _healthy()
    frames = h.frames
    t_del = float(frames[h.closing].time)  # INFORMATIONAL with the DELETE (IKE SA)
    sa = _esp_sa(h.out)
    n = h.sent(h.initiator)
    extra = [_esp_frame(h.first_esp(h.initiator), sa,
                        IP(src="10.10.1.1", dst="10.20.1.1") / ICMP(seq=100 + i),
                        n + 1 + i, t_del + 3.0 + i) for i in range(3)]
    cap = _write(tmp_path, "after_delete", frames + extra)
    r = run([str(cap)], Options(keys=load_keys([LAB / "ikev2_healthy/keys"])))
    check_filters(cap, r.findings)
    (f,) = [f for f in r.findings if f.code == "ESP_SPI_MISMATCH"]
    assert f.basis == "decrypted" and "after its SA was deleted" in f.title
    assert f.evidence.esp_spis == [spi for src, _d, spi in lab_esp_sas("ikev2_healthy")
                                   if src == h.initiator]
    # the DELETE and the last ESP packet after it (the three come after every lab frame)
    assert {x.frame for x in f.evidence.frames} >= {h.closing + 1, len(frames) + 3}
    # without keys the same capture gives no decrypted finding
    r0 = run([str(cap)])
    assert not [f for f in r0.findings if f.basis == "decrypted"]


def test_esp_on_an_spi_never_announced(tmp_path):
    from scapy.all import ICMP, IP

    h = _healthy()
    f = h.out.split(",")
    f[3] = '"0x0badf00d"'
    sa = _esp_sa(",".join(f))
    tmpl = h.first_esp(h.initiator)
    extra = [_esp_frame(tmpl, sa, IP(src="10.10.1.1", dst="10.20.1.1") / ICMP(seq=i),
                        1 + i, float(tmpl.time) + 0.05 + 0.1 * i) for i in range(4)]
    cap = _write(tmp_path, "unannounced", h.frames + extra)
    r = run([str(cap)], Options(keys=load_keys([LAB / "ikev2_healthy/keys"])))
    check_filters(cap, r.findings)
    hits = [f for f in r.findings if f.code == "ESP_SPI_MISMATCH"]
    assert [x.basis for x in hits] == ["decrypted"]
    assert "0x0badf00d" in hits[0].title and "no IKE exchange announced" in hits[0].title
    # the rogue SPI has no key: listed as not decrypted
    (m,) = [f for f in r.findings if f.code == "KEYS_MISSING"]
    assert "0x0badf00d" in m.detail


def test_child_sa_that_never_carries_esp(tmp_path):
    """The child SA of the lab's healthy tunnel with every ESP packet removed and its DELETE
    20 s later: ESP_SA_UNUSED names both SPIs the keys give for it (basis decrypted: with keys
    the child SA's SPIs are known from the decrypted IKE_AUTH)."""
    h = _healthy()
    kept = [f for i, f in enumerate(h.frames) if i not in h.esp]  # drop all ESP
    for f in h.frames[h.closing:]:
        f.time = float(f.time) + 20.0  # the DELETE comes 20 s later
    cap = _write(tmp_path, "unused", kept)
    r = run([str(cap)], Options(keys=load_keys([LAB / "ikev2_healthy/keys"])))
    check_filters(cap, r.findings)
    (f,) = [f for f in r.findings if f.code == "ESP_SA_UNUSED"]
    assert f.basis == "decrypted"
    assert sorted(f.evidence.esp_spis) == sorted(spi for _s, _d, spi in
                                                 lab_esp_sas("ikev2_healthy"))


def test_pings_inside_a_working_tunnel_unanswered(tmp_path):
    from scapy.all import ICMP, IP

    h = _healthy()
    frames = h.frames
    out, back = _esp_sa(h.out), _esp_sa(h.back)
    responder = h.back.split(",")[1].strip('"')
    n_out, n_back = h.sent(h.initiator), h.sent(responder)  # the lab's own pings, all answered
    t0 = float(frames[h.esp[-1]].time)
    extra = []
    for i in range(4):  # 4 pings to 10.20.1.77: only the last is answered
        extra.append(_esp_frame(h.first_esp(h.initiator), out,
                                IP(src="10.10.1.1", dst="10.20.1.77") / ICMP(type=8, id=9, seq=i),
                                n_out + 1 + i, t0 + 1 + 2 * i))
    extra.append(_esp_frame(h.first_esp(responder), back, IP(src="10.20.1.77", dst="10.10.1.1") /
                            ICMP(type=0, id=9, seq=3), n_back + 1, t0 + 7.1))
    for f in frames[h.closing:]:
        f.time = float(f.time) + 20.0
    cap = _write(tmp_path, "inner", frames + extra)
    r = run([str(cap)], Options(keys=load_keys([LAB / "ikev2_healthy/keys"])))
    check_filters(cap, r.findings)
    (f,) = [f for f in r.findings if f.code == "INNER_NO_ANSWER"]
    assert f.basis == "decrypted" and f.stage == "inner"
    assert f.title.startswith("3 ICMP echo")
    (t,) = r.report.tunnels
    assert t["inner"]["icmp_echo"] == {"requests": n_out + 4, "answered": n_back + 1,
                                       "unanswered": 3}


# -- synthetic IKEv2 SAs built from scratch ------------------------------------------------------

def _payload(ptype_next, body):
    return bytes([ptype_next, 0]) + struct.pack(">H", 4 + len(body)) + body


def _chain(items):
    """[(type, body)] → (first type, bytes) with each generic header naming the next type."""
    out = b""
    for i, (_t, body) in enumerate(items):
        nxt = items[i + 1][0] if i + 1 < len(items) else 0
        out += _payload(nxt, body)
    return items[0][0], out


def _ts(a, b):
    """One TS_IPV4_ADDR_RANGE (RFC 7296 §3.13.1)."""
    import ipaddress

    return bytes([1, 0, 0, 0]) + bytes([7, 0]) + struct.pack(">HHH", 16, 0, 65535) + \
        ipaddress.ip_address(a).packed + ipaddress.ip_address(b).packed


def _esp_proposal(spi):
    tr = bytes([0, 0]) + struct.pack(">H", 12) + bytes([1, 0]) + struct.pack(">H", 12) + \
        struct.pack(">HH", 0x800E, 128)
    return bytes([0, 0]) + struct.pack(">H", 8 + 4 + len(tr)) + bytes([1, 3, 4, 1]) + spi + tr


def _cert(not_before, not_after):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client.example")])
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(key.public_key()).serial_number(7).not_valid_before(not_before)
         .not_valid_after(not_after).sign(key, hashes.SHA256()))
    return c.public_bytes(serialization.Encoding.DER)


def _v2_frame(ispi, rspi, exch, msgid, flags, items, ekey, akey, ts, init, encrypt=True):
    """ESP-in-UDP port 4500 IKEv2 frame (non-ESP marker), SK with AES-CBC-128 +
    HMAC-SHA2-256-128 built per RFC 7296 §3.14."""
    import hmac

    from scapy.all import IP, UDP, Ether, Raw

    from test_decrypt import _encrypt

    first, inner = _chain(items)
    if encrypt:
        padlen = (-(len(inner) + 1)) % 16
        pt = inner + bytes(padlen) + bytes([padlen])
        iv = os.urandom(16)
        body = 4 + 16 + len(pt) + 16
        hdr = ispi + rspi + bytes([46, 0x20, exch, flags]) + struct.pack(">II", msgid, 28 + body)
        sk = bytes([first, 0]) + struct.pack(">H", body)
        msg = hdr + sk + iv + _encrypt("cbc", ekey, iv, pt, b"", 0)
        msg += hmac.new(akey, msg, "sha256").digest()[:16]
    else:
        msg = ispi + rspi + bytes([first, 0x20, exch, flags]) + \
            struct.pack(">II", msgid, 28 + len(inner)) + inner
    a, b = ("192.0.2.50", "203.0.113.50") if init else ("203.0.113.50", "192.0.2.50")
    pkt = Ether() / IP(src=a, dst=b) / UDP(sport=4500, dport=4500) / Raw(b"\0\0\0\0" + msg)
    pkt.time = ts
    return pkt


def _v2_sa(n, request_items, response_items, ts, keys_lines):
    ispi = bytes([n]) * 8
    rspi = bytes([0x80 + n]) * 8
    ei, er, ai, ar = (os.urandom(16), os.urandom(16), os.urandom(32), os.urandom(32))
    keys_lines.append(f"{ispi.hex()},{rspi.hex()},{ei.hex()},{er.hex()},\"AES-CBC-128 [RFC3602]\","
                      f"{ai.hex()},{ar.hex()},\"HMAC_SHA2_256_128 [RFC4868]\"")
    nonce = (40, os.urandom(32))
    return [
        _v2_frame(ispi, bytes(8), 34, 0, 0x08, [nonce], None, None, ts, True, encrypt=False),
        _v2_frame(ispi, rspi, 34, 0, 0x20, [nonce], None, None, ts + 0.01, False,
                  encrypt=False),
        _v2_frame(ispi, rspi, 35, 1, 0x08, request_items, ei, ai, ts + 0.02, True),
        _v2_frame(ispi, rspi, 35, 1, 0x20, response_items, er, ar, ts + 0.03, False),
    ]


def test_synthetic_ikev2_certificates_selectors_config(tmp_path):
    t0 = 1_900_000_000.0  # 2030-03-17
    now = dt.datetime.fromtimestamp(t0, dt.timezone.utc)
    idi = (35, b"\x02\x00\x00\x00client.example")
    idr = (36, b"\x02\x00\x00\x00gw.example")
    auth = (39, b"\x02\x00\x00\x00" + os.urandom(32))
    sa = (33, _esp_proposal(b"\x11\x22\x33\x44"))
    sa_r = (33, _esp_proposal(b"\x55\x66\x77\x88"))
    tsi, tsr = (44, _ts("10.1.0.0", "10.1.255.255")), (45, _ts("10.9.0.0", "10.9.0.255"))
    auth_failed = [(41, b"\x00\x00\x00\x18")]                      # N(AUTHENTICATION_FAILED)
    lines = []
    expired = _cert(now - dt.timedelta(days=400), now - dt.timedelta(days=35))
    future = _cert(now + dt.timedelta(days=2), now + dt.timedelta(days=400))
    frames = []
    frames += _v2_sa(1, [idi, (37, b"\x04" + expired), auth, sa, tsi, tsr], auth_failed, t0,
                     lines)
    frames += _v2_sa(2, [idi, (37, b"\x04" + future), auth, sa, tsi, tsr], auth_failed, t0 + 1,
                     lines)
    # home LAN equals office LAN: 192.168.1.0/24 on both sides
    same = (44, _ts("192.168.1.0", "192.168.1.255")), (45, _ts("192.168.1.0", "192.168.1.255"))
    frames += _v2_sa(3, [idi, auth, sa, *same], [idr, auth, sa_r, *same], t0 + 2, lines)
    # remote access: CP(REQUEST INTERNAL_IP4_ADDRESS) answered with INTERNAL_ADDRESS_FAILURE
    cp = (47, b"\x01\x00\x00\x00" + struct.pack(">HH", 1, 0))
    frames += _v2_sa(4, [idi, auth, cp, sa, tsi, tsr],
                     [idr, auth, (41, b"\x00\x00\x00\x24")], t0 + 3, lines)
    # separate tunnels per SA (peer addresses differ)
    for i, f in enumerate(frames):
        n = i // 4
        ip = f["IP"]
        a, b = ip.src, ip.dst
        ip.src = a.rsplit(".", 1)[0] + f".{50 + n}"
        ip.dst = b.rsplit(".", 1)[0] + f".{50 + n}"
    cap = _write(tmp_path, "synthetic_v2", frames)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys/ikev2_decryption_table").write_text("\n".join(lines) + "\n")
    r = run([str(cap)], Options(keys=load_keys([tmp_path / "keys"])))
    check_filters(cap, r.findings)
    by = {}
    for f in r.findings:
        by.setdefault(f.code, []).append(f)
    assert all(m.decrypt_status == "ok" for sa in r.state.ike_sas for m in sa.messages
               if m.encrypted)
    (ce,) = by["CERT_EXPIRED"]
    assert ce.basis == "decrypted" and "CN=client.example" in ce.detail and "35.0 days" in ce.detail
    (cn,) = by["CERT_NOT_YET_VALID"]
    assert "2.0 days after" in cn.detail
    assert {f.basis for f in by["IKE_AUTH_FAILED"]} == {"decrypted"}
    assert len(by["IKE_AUTH_FAILED"]) == 2
    (ov,) = by["SUBNET_OVERLAP"]  # TS_OVERLAP folded in (issue 15), named as its alias
    assert "192.168.1.0/24" in ov.title and "256 addresses" in ov.detail
    assert ov.basis == "decrypted" and ov.aliases == ["TS_OVERLAP"] and ov.stage == "routing"
    (cpf,) = by["CP_FAILED"]
    assert "INTERNAL_ADDRESS_FAILURE" in cpf.title and cpf.basis == "decrypted"
    # the keyless analysis of the same capture infers, the keyed one replaces the inference
    r0 = run([str(cap)])
    assert {f.basis for f in r0.findings if f.code == "IKE_AUTH_FAILED"} == {"inferred"}
    assert not [f for f in r.findings if f.code == "IKE_AUTH_FAILED" and f.basis == "inferred"]


def test_synthetic_ikev1_r_u_there_without_ack(tmp_path):
    """IKEv1 DPD: R-U-THERE / R-U-THERE-ACK are separate encrypted Informationals paired by
    their sequence number (RFC 3706 §5); the last ones get no ACK."""
    import hashlib

    from scapy.all import IP, UDP, Ether, Raw

    from test_decrypt import ISPI, RSPI, _gen, _v1_clear, _v1_enc, _v1_sa

    key = os.urandom(16)
    gxi, gxr = os.urandom(256), os.urandom(256)

    def h(b):
        return hashlib.sha1(b).digest()[:16]

    msgs = [(_v1_clear(1, 2, _v1_sa(0), rcookie=bytes(8)), True),
            (_v1_clear(1, 2, _v1_sa(0)), False),
            (_v1_clear(4, 2, _gen(10, gxi) + _gen(0, os.urandom(16))), True),
            (_v1_clear(4, 2, _gen(10, gxr) + _gen(0, os.urandom(16))), False)]
    mm5, last = _v1_enc(5, 2, _gen(8, b"\x02\x00\x00\x00left") + _gen(0, os.urandom(20)), key,
                        h(gxi + gxr))
    mm6, last = _v1_enc(5, 2, _gen(8, b"\x02\x00\x00\x00right") + _gen(0, os.urandom(20)), key,
                        last)
    msgs += [(mm5, True), (mm6, False)]
    times = [0, 0.01, 0.02, 0.03, 0.04, 0.05]

    def dpd(seq, ack, mid, from_init, t):
        body = struct.pack(">IBBH", 1, 1, 16, 36137 if ack else 36136) + ISPI + RSPI + \
            struct.pack(">I", seq)
        raw, _ = _v1_enc(8, 5, _gen(11, os.urandom(20)) + _gen(0, body), key,
                         h(last + struct.pack(">I", mid)), mid)
        msgs.append((raw, from_init))
        times.append(t)

    dpd(1, False, 0x1001, True, 10)
    dpd(1, True, 0x2001, False, 10.01)
    for i, t in enumerate((20, 30, 40, 50)):
        dpd(2 + i, False, 0x1002 + i, True, t)
    frames = []
    for (raw, init), t in zip(msgs, times):
        a, b = ("192.0.2.1", "192.0.2.2") if init else ("192.0.2.2", "192.0.2.1")
        p = Ether() / IP(src=a, dst=b) / UDP(sport=500, dport=500) / Raw(raw)
        p.time = 1_800_000_000.0 + t
        frames.append(p)
    frames.append(frames[-1].copy())  # something from the initiator much later
    frames[-1].time = 1_800_000_000.0 + 90
    cap = _write(tmp_path, "v1dpd", frames)
    (tmp_path / "ikev1_decryption_table").write_text(f"{ISPI.hex()},{key.hex()}\n")
    r = run([str(cap)], Options(keys=load_keys([tmp_path / "ikev1_decryption_table"])))
    check_filters(cap, r.findings)
    (f,) = [f for f in r.findings if f.code == "DPD_TIMEOUT"]
    assert f.basis == "decrypted"
    assert "6 R-U-THERE" not in f.detail and "5 R-U-THERE" in f.detail and "1 answered" in f.detail
    assert "sequence 2, 3, 4, 5" in f.detail
    assert DEFAULT.dpd_timeout <= 40


def test_keyless_analysis_unchanged_by_the_keys_code():
    """Without --keys nothing of the decryption shows: no decryption fields, no decrypted
    findings (the benchmark capture's analysis is unchanged)."""
    cap = LAB / "ikev2_healthy/ikev2_healthy.pcap"
    from pcapvpn.report import render

    doc = json.loads(render(run([str(cap)]).report, "json"))
    text = json.dumps(doc)
    assert '"decryption"' not in text and '"inner"' not in text
    assert not [f for f in doc["findings"] if f["basis"] == "decrypted"]


def test_cli_keys_option():
    import sys

    cap = LAB / "ikev2_auth_failed/ikev2_auth_failed.pcap"
    r = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", str(cap), "--keys",
                        str(LAB / "ikev2_auth_failed/keys"), "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    (f,) = [f for f in doc["findings"] if f["code"] == "IKE_AUTH_FAILED"]
    assert f["basis"] == "decrypted" and "AUTHENTICATION_FAILED" in f["title"]
    assert doc["tunnels"][0]["primary_code"] == "IKE_AUTH_FAILED"
    assert Path(cap).exists()
