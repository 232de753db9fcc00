"""NAT traversal rules end to end: synthetic captures → pcapvpn.analysis.run → findings.

Every emitted Wireshark filter is run through ``tshark -Y`` on its capture and must show the
evidence frames.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess

import pytest

from conftest import corpus_dir, tshark_path
from synth import (
    esp_frame, ike_encrypted, ike_frame, ike_sa_init, ip, keepalive_frame, v2_notify, write_pcap,
)
from pcapvpn.analysis import Options, run
from pcapvpn.thresholds import DEFAULT

ISPI = bytes.fromhex("1122334455667788")
RSPI = bytes.fromhex("99aabbccddeeff00")
ZERO = bytes(8)
I_PRIV, I_PUB, R = "10.0.0.2", "198.51.100.7", "203.0.113.1"
SPI_I, SPI_R = 0xC0DE0001, 0xC0DE0002
NAT_CODES = ("NAT_DETECTED", "NAT_ENCAPSULATION_FORCED", "NAT_T_NOT_USED",
             "NAT_KEEPALIVE_MISSING", "NAT_MAPPING_CHANGED")


def h2(ispi, rspi, addr, port):
    return hashlib.sha1(ispi + rspi + ip(addr) + struct.pack(">H", port)).digest()


def init_pair(i_src, r_src, i_dst, r_dst):
    req = ike_sa_init(ISPI, ZERO, False, extra=[
        (41, v2_notify(16388, i_src if isinstance(i_src, bytes) else h2(ISPI, ZERO, *i_src))),
        (41, v2_notify(16389, h2(ISPI, ZERO, *i_dst)))])
    resp = ike_sa_init(ISPI, RSPI, True, extra=[
        (41, v2_notify(16388, r_src if isinstance(r_src, bytes) else h2(ISPI, RSPI, *r_src))),
        (41, v2_notify(16389, h2(ISPI, RSPI, *r_dst)))])
    return req, resp


def auth(response):
    return ike_encrypted(ISPI, RSPI, 35, 1, 36 if response else 35, response, not response)


def info(msgid, response, from_initiator):
    return ike_encrypted(ISPI, RSPI, 37, msgid, 0, response, from_initiator)


class Cap:
    """Frames of one synthetic capture (ts, bytes)."""

    def __init__(self):
        self.frames = []
        self.seq = {}

    def ike(self, ts, src, sport, dst, dport, raw):
        self.frames.append((ts, ike_frame(src, dst, raw, sport, dport)))

    def esp(self, ts, src, dst, spi, ports=None):
        n = self.seq[spi] = self.seq.get(spi, 0) + 1
        self.frames.append((ts, esp_frame(src, dst, spi, n, udp_ports=ports)))

    def ka(self, ts, src, sport, dst, dport=4500):
        self.frames.append((ts, keepalive_frame(src, dst, sport, dport)))

    def write(self, path):
        self.frames.sort(key=lambda f: f[0])
        return write_pcap(path, [(1_700_000_000.0 + ts, data) for ts, data in self.frames])


def nat_start(c, i_ep=(I_PUB, 40001), i_float=(I_PUB, 40002)):
    """Initiator behind a NAPT (private 10.0.0.2:500), capture outside; IKE floats to 4500."""
    req, resp = init_pair((I_PRIV, 500), (R, 500), (R, 500), i_ep)
    c.ike(0.0, *i_ep, R, 500, req)
    c.ike(0.01, R, 500, *i_ep, resp)
    c.ike(0.05, *i_float, R, 4500, auth(False))
    c.ike(0.06, R, 4500, *i_float, auth(True))


def floated_pair(c, req, resp, i_ip=I_PUB):
    """IKE_SA_INIT ``req``/``resp`` on 500, IKE_AUTH on 4500, the initiator at ``i_ip``
    (nothing translates its ports)."""
    c.ike(0.0, i_ip, 500, R, 500, req)
    c.ike(0.01, R, 500, i_ip, 500, resp)
    c.ike(0.05, i_ip, 4500, R, 4500, auth(False))
    c.ike(0.06, R, 4500, i_ip, 4500, auth(True))


def esp_both(c, t0, t1, i_ep=(I_PUB, 40002), step=1.0):
    t = t0
    while t <= t1:
        c.esp(t, i_ep[0], R, SPI_I, (i_ep[1], 4500))
        c.esp(t + 0.01, R, i_ep[0], SPI_R, (4500, i_ep[1]))
        t += step


def analyse(tmp_path, c, name="cap.pcap", thresholds=DEFAULT):
    path = c.write(tmp_path / name)
    res = run([str(path)], Options(thresholds=thresholds))
    nat = [f for f in res.findings if f.code in NAT_CODES]
    for f in nat:
        check_filter(path, f)
    return res, {f.code: f for f in nat}, nat


def check_filter(path, f):
    """The filter is valid for tshark and shows at least one evidence frame."""
    assert f.wireshark_filter, f.code
    out = subprocess.run([tshark_path(), "-n", "-r", str(path), "-Y", f.wireshark_filter,
                          "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{f.code}: {f.wireshark_filter!r}: {out.stderr}"
    shown = {int(x) for x in out.stdout.split()}
    wanted = {fr.frame for fr in f.evidence.frames}
    assert shown & wanted, f"{f.code}: filter {f.wireshark_filter!r} shows none of {wanted}"


# -- scenarios ---------------------------------------------------------------------------------


def test_no_nat_no_findings(tmp_path):
    c = Cap()
    req, resp = init_pair((I_PUB, 500), (R, 500), (R, 500), (I_PUB, 500))
    c.ike(0.0, I_PUB, 500, R, 500, req)
    c.ike(0.01, R, 500, I_PUB, 500, resp)
    c.ike(0.05, I_PUB, 500, R, 500, auth(False))
    c.ike(0.06, R, 500, I_PUB, 500, auth(True))
    for t in range(1, 5):
        c.esp(t, I_PUB, R, SPI_I)
        c.esp(t + 0.01, R, I_PUB, SPI_R)
    res, by, nat = analyse(tmp_path, c)
    assert nat == []
    assert res.state.ike_sas[0].nat.kind == "none"


def test_initiator_behind_nat_idle_then_remapped(tmp_path):
    c = Cap()
    nat_start(c)
    esp_both(c, 1.0, 10.0)
    # 190 s of silence (no keepalives), then the NAT gives the initiator a new port
    new = (I_PUB, 40999)
    c.esp(200.0, I_PUB, R, SPI_I, (40999, 4500))
    c.ike(201.0, *new, R, 4500, info(2, False, True))
    c.ike(201.01, R, 4500, *new, info(2, True, False))
    esp_both(c, 202.0, 205.0, i_ep=new)
    res, by, nat = analyse(tmp_path, c)
    assert set(by) == {"NAT_DETECTED", "NAT_KEEPALIVE_MISSING", "NAT_MAPPING_CHANGED"}

    d = by["NAT_DETECTED"]
    assert d.severity == "info" and d.basis == "observed" and not d.failure
    assert "initiator 198.51.100.7" in d.title
    assert "port 40001 is not 500/4500" in d.detail and "frame 3" in d.detail
    assert any("local host is behind NAT" in a for a in d.advice)
    assert [f.frame for f in d.evidence.frames] == [1, 2]
    assert d.tunnel == res.state.tunnels[0].id

    k = by["NAT_KEEPALIVE_MISSING"]
    assert k.severity == "warning"
    assert "no NAT keepalive at all" in k.detail
    assert "Its source changed right after" in k.detail
    assert "190" in k.title or "189" in k.title

    m = by["NAT_MAPPING_CHANGED"]
    assert m.severity == "warning" and "port" in m.title
    assert ("198.51.100.7:40002 → 198.51.100.7:40999 at 200.0 s (frame 25; seen in ESP SPI "
            "0xc0de0001, IKE)") in m.detail
    assert "changed its source 1 time(s)" in m.detail and "1x" in m.title
    assert "NAT mapping timeout likely" in m.detail
    assert "ESP SPI 0xc0de0001" in m.detail and "IKE" in m.detail
    assert "the peer followed it" in m.detail
    assert m.evidence.esp_spis == [f"{SPI_I:08x}"]


def test_keepalives_every_20s_keep_the_mapping(tmp_path):
    c = Cap()
    nat_start(c)
    esp_both(c, 1.0, 10.0)
    t = 30.0
    while t < 200.0:
        c.ka(t, I_PUB, 40002, R)
        t += 20.0
    esp_both(c, 200.0, 203.0)
    res, by, nat = analyse(tmp_path, c)
    assert set(by) == {"NAT_DETECTED"}
    (flow,) = res.state.keepalives
    assert flow.count == 9 and flow.median_interval == pytest.approx(20.0)


def test_keepalives_every_90s_are_too_rare(tmp_path):
    c = Cap()
    nat_start(c)
    esp_both(c, 1.0, 10.0)
    for t in (100.0, 190.0):
        c.ka(t, I_PUB, 40002, R)
    esp_both(c, 280.0, 283.0)
    res, by, nat = analyse(tmp_path, c)
    assert "NAT_KEEPALIVE_MISSING" in by
    k = by["NAT_KEEPALIVE_MISSING"]
    assert "sent 2 NAT keepalive(s)" in k.detail and "3 such silences" in k.detail
    assert "NAT_MAPPING_CHANGED" not in by


def test_esp_traffic_refreshes_the_mapping(tmp_path):
    # no keepalive at all, but ESP every 5 s: nothing to say about keepalives
    c = Cap()
    nat_start(c)
    esp_both(c, 1.0, 300.0, step=5.0)
    res, by, nat = analyse(tmp_path, c)
    assert set(by) == {"NAT_DETECTED"}


def test_new_ike_sa_after_silence_is_not_a_keepalive_problem(tmp_path):
    c = Cap()
    nat_start(c)
    esp_both(c, 1.0, 5.0)
    c.ike(6.0, I_PUB, 40002, R, 4500, info(2, False, True))
    c.ike(6.01, R, 4500, I_PUB, 40002, info(2, True, False))
    # a new IKE SA 300 s later (the tunnel was down in between)
    ispi2 = bytes.fromhex("aa" * 8)
    req = ike_sa_init(ispi2, ZERO, False)
    c.ike(306.0, I_PUB, 40100, R, 500, req)
    res, by, nat = analyse(tmp_path, c)
    assert "NAT_KEEPALIVE_MISSING" not in by


def test_nat_t_not_used(tmp_path):
    c = Cap()
    req, resp = init_pair((I_PRIV, 500), (R, 500), (R, 500), (I_PUB, 40001))
    c.ike(0.0, I_PUB, 40001, R, 500, req)
    c.ike(0.01, R, 500, I_PUB, 40001, resp)
    c.ike(0.05, I_PUB, 40001, R, 500, auth(False))
    c.ike(0.06, R, 500, I_PUB, 40001, auth(True))
    for t in range(1, 6):
        c.esp(t, I_PUB, R, SPI_I)
        c.esp(t + 0.01, R, I_PUB, SPI_R)
    res, by, nat = analyse(tmp_path, c)
    f = by["NAT_T_NOT_USED"]
    assert f.severity == "error" and f.basis == "observed"
    assert "IKE stays on UDP 500" in f.title and "ESP goes as IP protocol 50" in f.title
    assert "frames 3, 4" in f.detail and "10 packets" in f.detail
    assert sorted(f.evidence.esp_spis) == [f"{SPI_I:08x}", f"{SPI_R:08x}"]
    assert "NAT_KEEPALIVE_MISSING" not in by


def test_forced_encapsulation_is_not_a_nat(tmp_path):
    # kernel-libipsec: both source hashes fake, nothing translated, IKE and ESP on 4500
    c = Cap()
    floated_pair(c, *init_pair(b"\x01" * 20, b"\x02" * 20, (R, 500), (I_PUB, 500)))
    esp_both(c, 1.0, 5.0, i_ep=(I_PUB, 4500))
    esp_both(c, 300.0, 302.0, i_ep=(I_PUB, 4500))  # idle: no NAT, no keepalive needed
    res, by, nat = analyse(tmp_path, c)
    assert set(by) == {"NAT_ENCAPSULATION_FORCED"}  # never NAT_DETECTED: there is no NAT
    d = by["NAT_ENCAPSULATION_FORCED"]
    assert d.basis == "inferred" and not d.failure and d.severity == "info"
    assert d.title.startswith("UDP encapsulation forced (inferred)") and "no NAT" in d.title
    assert "kernel-libipsec's signature" in d.detail
    assert any("faking NAT situation to enforce UDP encapsulation" in a for a in d.advice)


def test_forced_one_side_behind_real_nat_elsewhere(tmp_path):
    # the responder fakes its source hash while the initiator is behind a real NAPT (the lab's
    # ikev2_nat seen from outside): one NAT story, NAT_DETECTED, which tells the fake hash too
    c = Cap()
    req, resp = init_pair((I_PRIV, 500), b"\x02" * 20, (R, 500), (I_PUB, 40001))
    c.ike(0.0, I_PUB, 40001, R, 500, req)
    c.ike(0.01, R, 500, I_PUB, 40001, resp)
    c.ike(0.05, I_PUB, 40002, R, 4500, auth(False))
    c.ike(0.06, R, 4500, I_PUB, 40002, auth(True))
    res, by, nat = analyse(tmp_path, c)
    assert set(by) == {"NAT_DETECTED"}
    d = by["NAT_DETECTED"]
    assert d.basis == "observed" and "initiator" in d.title
    assert "The responder also sends a NAT_DETECTION_SOURCE_IP hash" in d.detail
    assert "only the NAT in front of the initiator is real" in d.detail
    assert "NAT_ENCAPSULATION_FORCED" not in d.detail and "Not a NAT" not in " ".join(d.advice)


def test_ikev1_napt_without_natt(tmp_path):
    from test_track_nat import _v1_msg, _v1_sa

    c = Cap()
    mm = [_v1_msg(ISPI, ZERO, [(1, _v1_sa([2]))]), _v1_msg(ISPI, RSPI, [(1, _v1_sa([2]))]),
          _v1_msg(ISPI, RSPI, [(4, bytes(128)), (10, bytes(16))]),
          _v1_msg(ISPI, RSPI, [(4, bytes(128)), (10, bytes(16))])]
    for n, raw in enumerate(mm):
        if n % 2 == 0:
            c.ike(n * 0.01, I_PUB, 40001, R, 500, raw)
        else:
            c.ike(n * 0.01, R, 500, I_PUB, 40001, raw)
    for t in range(1, 4):
        c.esp(t, I_PUB, R, SPI_I)
    res, by, nat = analyse(tmp_path, c)
    f = by["NAT_T_NOT_USED"]
    assert f.basis == "inferred" and "no NAT-D was exchanged" in f.detail
    assert "NAT_DETECTED" not in by


def test_capture_inside_initiator_nat(tmp_path):
    c = Cap()
    req, resp = init_pair((I_PRIV, 500), (R, 500), (R, 500), (I_PUB, 40001))
    c.ike(0.0, I_PRIV, 500, R, 500, req)
    c.ike(0.01, R, 500, I_PRIV, 500, resp)
    c.ike(0.05, I_PRIV, 4500, R, 4500, auth(False))
    c.ike(0.06, R, 4500, I_PRIV, 4500, auth(True))
    res, by, nat = analyse(tmp_path, c)
    d = by["NAT_DETECTED"]
    assert "capture taken inside the initiator's NAT" in d.title
    assert "taken between the initiator and its NAT" in d.detail


# -- corpus end to end -------------------------------------------------------------------------


def test_corpus_ipsec_client_end_to_end():
    path = corpus_dir() / "zeek-spicy-ipsec" / "traces" / "ipsec_client.pcap"
    res = run([str(path)])
    by = {f.code: f for f in res.findings if f.code in NAT_CODES}
    assert set(by) == {"NAT_DETECTED"}
    for f in by.values():
        check_filter(path, f)
    assert "capture taken inside the initiator's NAT" in by["NAT_DETECTED"].title


def test_corpus_lab_forced_encapsulation():
    from conftest import CAPTURES

    path = CAPTURES / "lab" / "ikev2_healthy" / "ikev2_healthy.pcap"
    if not path.exists():
        pytest.skip("lab capture not generated")
    res = run([str(path)])
    by = {f.code: f for f in res.findings if f.code in NAT_CODES}
    assert set(by) == {"NAT_ENCAPSULATION_FORCED"}
    check_filter(path, by["NAT_ENCAPSULATION_FORCED"])


@pytest.mark.parametrize("name,cp", [("ikev2_nat.pcap", "outside"),
                                     ("ikev2_nat-inside.pcap", "inside_initiator_nat")])
def test_lab_real_nat_with_kernel_libipsec(name, cp):
    from conftest import CAPTURES

    path = CAPTURES / "lab" / "ikev2_nat" / name
    if not path.exists():
        pytest.skip("lab capture not generated")
    res = run([str(path)])
    by = {f.code: f for f in res.findings if f.code in NAT_CODES}
    # a real NAT (masquerade) plus kernel-libipsec's fake source hashes; keepalives every 5 s:
    # one NAT story (the lab's logs: the initiator logs 'local host is behind NAT'), the fake
    # hashes told inside it
    assert set(by) == {"NAT_DETECTED"}
    d = by["NAT_DETECTED"]
    assert d.basis == "observed" and "the initiator" in d.title
    assert "fake it to force UDP encapsulation" in d.detail or \
        "fakes it to force UDP encapsulation" in d.detail
    assert "That is not another NAT" in d.detail
    (sa,) = res.state.ike_sas
    assert sa.nat.kind == "initiator" and sa.nat.capture_point == cp and sa.nat.floated
    assert res.state.keepalives and res.state.keepalives[0].count >= 2
    for f in by.values():
        check_filter(path, f)


@pytest.mark.parametrize("rel", ["nDPI/pcap/esp.pcapng", "tcpdump/ikev2four.pcap"])
def test_corpus_no_nat_findings(rel):
    res = run([str(corpus_dir() / rel)])
    assert [f.code for f in res.findings if f.code in NAT_CODES] == []


@pytest.mark.parametrize("keepalives", [False, True])
def test_nat_keeping_the_ports_told_by_keepalives(tmp_path, keepalives):
    """A NAT that translates the initiator's address but keeps its ports 500/4500 (what most
    NATs do when the port is free; the lab's ikev2_custom_ports_nat): from outside, the NAT-D
    hashes read as forced encapsulation.  The initiator's NAT keepalives tell it apart: a host
    sends them when it finds itself behind a NAT (RFC 3948 §2.3)."""
    c = Cap()
    # the initiator hashes its own private address; the responder sees the NAT's
    floated_pair(c, *init_pair((I_PRIV, 500), (R, 500), (R, 500), (I_PUB, 500)))
    esp_both(c, 1.0, 5.0, i_ep=(I_PUB, 4500))
    if keepalives:
        for t in range(25, 125, 20):
            c.ka(float(t), I_PUB, 4500, R)
    esp_both(c, 130.0, 132.0, i_ep=(I_PUB, 4500))
    res, by, nat = analyse(tmp_path, c, name=f"ka{keepalives}.pcap")
    if not keepalives:
        assert set(by) == {"NAT_ENCAPSULATION_FORCED"}
        return
    assert set(by) == {"NAT_DETECTED"}, set(by)
    d = by["NAT_DETECTED"]
    assert "the initiator" in d.title and "responder" not in d.title
    assert "it sends NAT keepalives" in d.detail and "RFC 3948 §2.3" in d.detail
    assert res.state.ike_sas[0].nat.keepalive_sides == ["initiator"]


@pytest.mark.parametrize("v1", [False, True])
def test_libreswan_forced_encapsulation_hashes_port_0(tmp_path, v1):
    """libreswan ``encapsulation=yes`` hashes its own address with port 0 (IKEv2: its source
    hash; IKEv1: both) and sends NAT keepalives though no NAT is there: forced encapsulation,
    never NAT_DETECTED, whatever the keepalives say."""
    c = Cap()
    if v1:
        from synth import v1_message

        def h1(ispi, rspi, addr, port):
            # the negotiated hash: SHA-1 in synth.v1_sa
            return hashlib.sha1(ispi + rspi + ip(addr) + struct.pack(">H", port)).digest()

        ib, rb = bytes.fromhex("b2b2b2b2b2b2b2b2"), bytes.fromhex("c3c3c3c3c3c3c3c3")
        # Main Mode 3/4 carry NAT-D (RFC 3947 §3.2): the peer's hash first, then the sender's
        mm3 = v1_message(ib, rb, 2, 0, 3, natd=[h1(ib, rb, R, 0), h1(ib, rb, I_PUB, 0)])
        mm4 = v1_message(ib, rb, 2, 0, 4, natd=[h1(ib, rb, I_PUB, 500), h1(ib, rb, R, 500)])
        for step, (src, dst) in enumerate(((I_PUB, R), (R, I_PUB)), 1):
            c.ike(step * 0.01, src, 500, dst, 500,
                  v1_message(ib, bytes(8) if step == 1 else rb, 2, 0, step))
        c.ike(0.03, I_PUB, 500, R, 500, mm3)
        c.ike(0.04, R, 500, I_PUB, 500, mm4)
        c.ike(0.05, I_PUB, 4500, R, 4500, v1_message(ib, rb, 2, 0, 5, encrypted=True))
        c.ike(0.06, R, 4500, I_PUB, 4500, v1_message(ib, rb, 2, 0, 6, encrypted=True))
    else:
        floated_pair(c, *init_pair(h2(ISPI, ZERO, I_PUB, 0), (R, 500), (R, 500), (I_PUB, 500)))
    for t in range(25, 125, 20):
        c.ka(float(t), I_PUB, 4500, R)
    res, by, nat = analyse(tmp_path, c, name=f"v1{v1}.pcap")
    assert set(by) == {"NAT_ENCAPSULATION_FORCED"}, set(by)
    v = res.state.ike_sas[0].nat
    assert v.initiator == "forced" and v.responder == "none", (v.initiator, v.responder)
    assert any("libreswan's encapsulation=yes" in n for n in v.notes)
