"""Dataplane rules end to end: synthetic captures → pcapvpn.analysis.run → findings, plus the
corpus checks (one-way-by-construction captures, healthy captures).

Every emitted Wireshark filter is run through ``tshark -Y`` on its capture and must show the
evidence frames.
"""

from __future__ import annotations

import struct
import subprocess

import pytest

from conftest import corpus_dir, tshark_path
from synth import esp_frame, eth, ike_encrypted, ike_frame, ike_sa_init, ipv4, write_pcap
from pcapvpn.analysis import run

ISPI = bytes.fromhex("1122334455667788")
RSPI = bytes.fromhex("99aabbccddeeff00")
ZERO = bytes(8)
A, B = "192.0.2.1", "203.0.113.9"
ROUTER = "198.51.100.254"
SPI_AB, SPI_BA = 0xC1000001, 0xC2000002
T0 = 1_700_000_000.0
DATAPLANE = ("ESP_ONE_WAY", "CAPTURE_ONE_DIRECTION", "ESP_SEQUENCE_GAP", "ESP_REPLAY",
             "ESP_REORDER", "ESP_NO_TRAFFIC", "MTU_BLACK_HOLE", "PATH_MTU_ICMP", "ESP_FRAGMENTED",
             "ESP_SEQUENCE_NEAR_WRAP", "CAPTURE_MID_SESSION")


class Cap:
    """Frames of one synthetic capture: (ts, bytes)."""

    def __init__(self):
        self.frames = []
        self.seq = {}

    def add(self, ts, data):
        self.frames.append((ts, data))

    def ike(self, ts, src, dst, raw, sport=500, dport=500):
        self.add(ts, ike_frame(src, dst, raw, sport, dport))

    def esp(self, ts, src, dst, spi, seq=None, size=64, ports=None):
        if seq is None:
            seq = self.seq[spi] = self.seq.get(spi, 0) + 1
        self.add(ts, esp_frame(src, dst, spi, seq, body_len=size - 8, udp_ports=ports))

    def flow(self, src, dst, spi, t0, t1, rate=1.0, **kw):
        n = int(round((t1 - t0) * rate))
        for i in range(n + 1):
            self.esp(t0 + i / rate, src, dst, spi, **kw)

    def write(self, path):
        self.frames.sort(key=lambda f: f[0])
        return write_pcap(path, [(T0 + ts, data) for ts, data in self.frames])


def ikev2_up(c, t=0.0):
    """IKE_SA_INIT + IKE_AUTH between A (initiator) and B: an established IKE SA."""
    c.ike(t, A, B, ike_sa_init(ISPI, ZERO, False))
    c.ike(t + 0.01, B, A, ike_sa_init(ISPI, RSPI, True))
    c.ike(t + 0.02, A, B, ike_encrypted(ISPI, RSPI, 35, 1, 35, False, True))
    c.ike(t + 0.03, B, A, ike_encrypted(ISPI, RSPI, 35, 1, 36, True, False))


def liveness(c, t, msgid=2):
    c.ike(t, A, B, ike_encrypted(ISPI, RSPI, 37, msgid, 0, False, True))
    c.ike(t + 0.01, B, A, ike_encrypted(ISPI, RSPI, 37, msgid, 0, True, False))


def analyse(c, tmp_path, name="cap.pcap"):
    path = c.write(tmp_path / name)
    res = run([str(path)])
    return path, res


def codes(res, only=DATAPLANE):
    return sorted(f.code for f in res.findings if f.code in only)


def find(res, code):
    fs = [f for f in res.findings if f.code == code]
    assert fs, f"{code} not in {[f.code for f in res.findings]}"
    return fs


def shown_frames(path, flt) -> set[int]:
    out = subprocess.run([tshark_path(), "-n", "-r", str(path), "-Y", flt, "-T", "fields",
                          "-e", "frame.number"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"tshark rejects {flt!r}: {out.stderr}"
    return {int(x) for x in out.stdout.split()}


def check_filter(path, f, must_show=True):
    shown = shown_frames(path, f.wireshark_filter)
    if must_show:
        assert shown, f"{f.code}: filter {f.wireshark_filter!r} shows nothing"
    ev = {fr.frame for fr in f.evidence.frames}
    return shown, ev


def verdict(res):
    return {v.tunnel: v.verdict for v in res.verdicts}


# -- healthy ----------------------------------------------------------------------------------


def test_healthy_tunnel_has_no_dataplane_finding(tmp_path):
    c = Cap()
    ikev2_up(c)
    c.flow(A, B, SPI_AB, 1.0, 40.0, rate=2)
    c.flow(B, A, SPI_BA, 1.05, 40.05, rate=2)
    liveness(c, 41.0)
    _p, res = analyse(c, tmp_path)
    assert codes(res) == []
    assert set(verdict(res).values()) == {"healthy"}


def test_healthy_nat_t_tunnel_with_rekey(tmp_path):
    c = Cap()
    ikev2_up(c)
    ports = (4500, 4500)
    c.flow(A, B, SPI_AB, 1.0, 30.0, ports=ports)
    c.flow(B, A, SPI_BA, 1.1, 29.1, ports=ports)  # B switched first
    c.flow(A, B, 0xC1000003, 30.5, 60.5, ports=ports)
    c.flow(B, A, 0xC2000004, 29.6, 60.6, ports=ports)
    _p, res = analyse(c, tmp_path)
    assert codes(res) == []


# -- one-way ----------------------------------------------------------------------------------


def test_one_way_never_answered(tmp_path):
    c = Cap()
    ikev2_up(c)
    c.flow(A, B, SPI_AB, 1.0, 20.0)
    liveness(c, 21.0)
    path, res = analyse(c, tmp_path)
    assert codes(res) == ["ESP_ONE_WAY"]
    f = find(res, "ESP_ONE_WAY")[0]
    assert f.severity == "error" and f.basis == "observed"
    assert "20 ESP packet(s) on SPI 0xc1000001" in f.detail
    assert "otherwise heard" in f.detail
    assert f.evidence.esp_spis == ["c1000001"]
    assert verdict(res)[f.tunnel] == "failing"
    shown, ev = check_filter(path, f)
    assert ev <= shown


def test_one_way_too_short_says_nothing(tmp_path):
    c = Cap()
    ikev2_up(c)
    c.flow(A, B, SPI_AB, 1.0, 6.0)  # capture ends 5 s after the first ESP; B not heard since
    _p, res = analyse(c, tmp_path)
    assert codes(res) == []


def test_one_way_short_capture_but_peer_heard_later(tmp_path):
    c = Cap()
    ikev2_up(c)
    c.flow(A, B, SPI_AB, 0.1, 4.5, rate=3)
    liveness(c, 5.5)  # B answers IKE 5 s later: its direction reaches the capture point
    _p, res = analyse(c, tmp_path)
    assert codes(res) == ["ESP_ONE_WAY"]


def test_one_way_reverse_stopped(tmp_path):
    c = Cap()
    ikev2_up(c)
    c.flow(A, B, SPI_AB, 1.0, 40.0)
    c.flow(B, A, SPI_BA, 1.1, 10.1)
    path, res = analyse(c, tmp_path)
    assert codes(res) == ["ESP_ONE_WAY"]
    f = find(res, "ESP_ONE_WAY")[0]
    assert "stopped" in f.title and "0xc2000002" in f.detail
    shown, ev = check_filter(path, f)
    assert ev <= shown


def test_rekey_drain_is_not_one_way(tmp_path):
    """Capture starts during a rekey: the old outbound SA of A drains a few seconds with its
    reverse already gone; the new pair flows both ways."""
    c = Cap()
    c.flow(A, B, SPI_AB, 0.0, 3.0, seq=None)
    c.flow(A, B, 0xC1000003, 2.0, 40.0)
    c.flow(B, A, 0xC2000004, 1.0, 40.0)
    liveness(c, 20.0)
    _p, res = analyse(c, tmp_path)
    assert "ESP_ONE_WAY" not in codes(res)


def test_rekey_capture_ends_before_peer_switched(tmp_path):
    """A switched to its new outbound SA; B still sends on the old one when the capture ends."""
    c = Cap()
    ikev2_up(c)
    c.flow(A, B, SPI_AB, 1.0, 30.0, rate=2)
    c.flow(B, A, SPI_BA, 1.1, 36.1, rate=2)
    c.flow(A, B, 0xC1000003, 30.5, 36.0, rate=2)
    _p, res = analyse(c, tmp_path)
    assert "ESP_ONE_WAY" not in codes(res)


def test_one_way_child_beside_a_healthy_child(tmp_path):
    c = Cap()
    ikev2_up(c)
    c.flow(A, B, SPI_AB, 1.0, 30.0)
    c.flow(B, A, SPI_BA, 1.1, 30.1)
    c.flow(A, B, 0xC1000003, 1.2, 30.2)  # a second child SA: nothing comes back on it
    _p, res = analyse(c, tmp_path)
    f = find(res, "ESP_ONE_WAY")[0]
    assert "0xc1000003" in f.title


def test_address_change_mid_sa_is_not_one_way(tmp_path):
    """MOBIKE / a NAT changing the public address: the SAs move, nothing is one-way."""
    c = Cap()
    ikev2_up(c)
    moved = "192.0.2.77"
    ports = (4500, 4500)
    for i in range(40):
        src = A if i < 15 else moved
        c.esp(1.0 + i, src, B, SPI_AB, seq=i + 1, ports=ports)
        c.esp(1.1 + i, B, src, SPI_BA, seq=i + 1, ports=ports)
    _p, res = analyse(c, tmp_path)
    assert [x for x in codes(res) if x != "CAPTURE_MID_SESSION"] == []
    sa = next(s for s in res.state.esp_sas if s.spi == SPI_AB)
    assert sa.moves_total == 1 and sa.moves[0][2] == bytes([192, 0, 2, 77])


def test_capture_one_direction_without_ike(tmp_path):
    c = Cap()
    c.flow(A, B, SPI_AB, 0.0, 30.0)
    path, res = analyse(c, tmp_path)
    assert codes(res) == ["CAPTURE_ONE_DIRECTION"]
    f = find(res, "CAPTURE_ONE_DIRECTION")[0]
    assert f.stage == "capture" and not f.failure
    assert set(verdict(res).values()) == {"unknown"}
    shown, ev = check_filter(path, f)
    assert ev <= shown


def test_capture_one_direction_even_when_short(tmp_path):
    c = Cap()
    c.esp(0.0, A, B, SPI_AB)
    c.esp(0.001, A, B, SPI_AB)
    _p, res = analyse(c, tmp_path)
    f = find(res, "CAPTURE_ONE_DIRECTION")[0]
    assert "too soon" in f.detail
    assert "ESP_ONE_WAY" not in codes(res)


def test_ike_only_from_flowing_side_is_one_way_with_caveat(tmp_path):
    c = Cap()
    c.ike(0.0, A, B, ike_encrypted(ISPI, RSPI, 37, 5, 0, False, True), 4500, 4500)
    c.flow(A, B, SPI_AB, 1.0, 20.0, ports=(4500, 4500))
    _p, res = analyse(c, tmp_path)
    f = find(res, "ESP_ONE_WAY")[0]
    assert f.basis == "inferred" and "one direction only" in f.detail
    assert "CAPTURE_ONE_DIRECTION" not in codes(res)


def test_multicast_ah_is_not_one_way_nor_sequence(tmp_path):
    """OSPFv3 with AH (RFC 4552): one manually keyed SA per sender, to ff02::5 and unicast."""
    from synth import ipv6, eth as _eth

    def ah(src, dst, spi, seq):
        body = struct.pack(">BBHII", 89, 4, 0, spi, seq) + bytes(16) + bytes(40)
        return _eth(ipv6(src, dst, 51, body), 0x86DD)

    c = Cap()
    for me, peer, s0 in (("fe80::1", "fe80::2", 19), ("fe80::2", "fe80::1", 13)):
        for i in range(30):
            c.add(i * 1.0 + (0.5 if me == "fe80::2" else 0), ah(me, "ff02::5" if i % 3 else peer,
                                                               0x100, s0 + i))
    _p, res = analyse(c, tmp_path)
    assert codes(res) == []


# -- sequence ---------------------------------------------------------------------------------


def two_way(c, t1=20.0, skip=(), dup_at=None):
    ikev2_up(c)
    seq = 0
    for i in range(int(t1)):
        seq += 1
        while seq in skip:
            seq += 1
        c.esp(1.0 + i, A, B, SPI_AB, seq=seq)
        if dup_at is not None and seq == dup_at[0]:
            c.esp(1.0 + i + dup_at[1], A, B, SPI_AB, seq=seq)
    c.flow(B, A, SPI_BA, 1.05, t1 + 0.05)


def test_sequence_gap(tmp_path):
    c = Cap()
    two_way(c, skip={5, 6, 12})
    path, res = analyse(c, tmp_path)
    assert codes(res) == ["ESP_SEQUENCE_GAP"]
    f = find(res, "ESP_SEQUENCE_GAP")[0]
    assert f.severity == "warning"
    assert f.detail.startswith("3 of 23 sequence numbers")
    assert "2 before seq 7" in f.detail and "1 before seq 13" in f.detail
    assert [fr.frame for fr in f.evidence.frames] == [13, 23]  # the packets after each gap
    assert verdict(res)[f.tunnel] == "degraded"
    shown, ev = check_filter(path, f)
    assert ev <= shown


def test_replay_vs_capture_copy(tmp_path):
    c = Cap()
    two_way(c, dup_at=(7, 0.4))  # the same number 0.4 s later: a replay
    _p, res = analyse(c, tmp_path)
    assert codes(res) == ["ESP_REPLAY"]
    c = Cap()
    two_way(c, dup_at=(7, 0.0005))  # 0.5 ms later: the mirror copied it
    _p, res = analyse(c, tmp_path)
    assert codes(res) == []
    assert "CAPTURE_DUPLICATES" in [f.code for f in res.findings]
    sa = next(s for s in res.state.esp_sas if s.spi == SPI_AB)
    assert sa.capture_duplicates == 1 and sa.duplicates == 0


def test_sequence_reset_is_replay(tmp_path):
    c = Cap()
    ikev2_up(c)
    for i in range(300):
        c.esp(1.0 + i * 0.05, A, B, SPI_AB, seq=i + 1)
    for i in range(20):
        c.esp(20.0 + i * 0.05, A, B, SPI_AB, seq=i + 1)  # sender restarted, same SPI
    c.flow(B, A, SPI_BA, 1.0, 21.0)
    _p, res = analyse(c, tmp_path)
    f = find(res, "ESP_REPLAY")[0]
    assert "restarted 1 time(s)" in f.detail and "from 300 to 1" in f.detail


def test_reorder_beyond_32_is_warning_inside_is_info(tmp_path):
    c = Cap()
    ikev2_up(c)
    order = [1] + list(range(3, 43)) + [2] + list(range(43, 60))
    for i, s in enumerate(order):
        c.esp(1.0 + i * 0.2, A, B, SPI_AB, seq=s)
    c.flow(B, A, SPI_BA, 1.0, 13.0)
    _p, res = analyse(c, tmp_path)
    f = find(res, "ESP_REORDER")[0]
    assert f.severity == "warning" and "0 would be dropped by a receiver with a 64" in f.detail
    assert "1 by one with a 32-packet window" in f.detail
    c = Cap()
    ikev2_up(c)
    order = [1, 2, 4, 3] + list(range(5, 60))
    for i, s in enumerate(order):
        c.esp(1.0 + i * 0.2, A, B, SPI_AB, seq=s)
    c.flow(B, A, SPI_BA, 1.0, 13.0)
    _p, res = analyse(c, tmp_path)
    f = find(res, "ESP_REORDER")[0]
    assert f.severity == "info"
    assert set(verdict(res).values()) == {"healthy"}


def test_mid_session_one_finding_per_tunnel(tmp_path):
    c = Cap()
    for i in range(20):
        c.esp(i * 1.0, A, B, SPI_AB, seq=5000 + i)
        c.esp(i * 1.0 + 0.1, B, A, SPI_BA, seq=7000 + i)
    _p, res = analyse(c, tmp_path)
    assert codes(res) == ["CAPTURE_MID_SESSION"]
    f = find(res, "CAPTURE_MID_SESSION")[0]
    assert f.severity == "info" and "0xc1000001 from seq 5000" in f.detail


# -- no traffic -------------------------------------------------------------------------------


def test_no_esp_after_established(tmp_path):
    c = Cap()
    ikev2_up(c)
    liveness(c, 30.0)
    path, res = analyse(c, tmp_path)
    assert codes(res) == ["ESP_NO_TRAFFIC"]
    f = find(res, "ESP_NO_TRAFFIC")[0]
    assert "idle child SA" in f.detail
    shown, ev = check_filter(path, f)
    assert ev <= shown


def test_no_esp_but_capture_too_short(tmp_path):
    c = Cap()
    ikev2_up(c)
    liveness(c, 5.0)
    _p, res = analyse(c, tmp_path)
    assert codes(res) == []


# -- MTU --------------------------------------------------------------------------------------


def icmp_frag_needed(router, to, q_src, q_dst, mtu, spi):
    quoted = ipv4(q_src, q_dst, 50, struct.pack(">II", spi, 1) + bytes(1392))[:28]
    body = struct.pack(">BBHHH", 3, 4, 0, 0, mtu) + quoted
    return eth(ipv4(router, to, 1, body))


def test_mtu_black_hole(tmp_path):
    c = Cap()
    ikev2_up(c)
    c.flow(A, B, SPI_AB, 1.0, 10.0)
    c.flow(B, A, SPI_BA, 1.05, 10.05)
    for i in range(12):  # large packets, retransmitted, never answered
        c.esp(10.5 + i * 1.5, A, B, SPI_AB, size=1420)
    path, res = analyse(c, tmp_path)
    assert "MTU_BLACK_HOLE" in codes(res)
    f = find(res, "MTU_BLACK_HOLE")[0]
    assert f.basis == "inferred" and "12 of them" in f.detail
    shown, ev = check_filter(path, f)
    assert ev <= shown


def test_small_and_large_answered_is_not_mtu(tmp_path):
    c = Cap()
    ikev2_up(c)
    for i in range(40):
        c.esp(1.0 + i * 0.5, A, B, SPI_AB, size=1420 if i % 2 else 100)
        c.esp(1.2 + i * 0.5, B, A, SPI_BA, size=100)
    _p, res = analyse(c, tmp_path)
    assert codes(res) == []


def test_path_mtu_icmp(tmp_path):
    c = Cap()
    ikev2_up(c)
    c.flow(A, B, SPI_AB, 1.0, 20.0, size=1420)
    c.flow(B, A, SPI_BA, 1.05, 20.05)
    c.add(5.0, icmp_frag_needed(ROUTER, A, A, B, 1400, SPI_AB))
    path, res = analyse(c, tmp_path)
    f = find(res, "PATH_MTU_ICMP")[0]
    assert "next-hop MTU 1400" in f.detail and "1420 bytes" in f.detail
    assert "still sent after the last error" in f.detail
    assert f.tunnel == f"{A}<->{B}"
    shown, ev = check_filter(path, f)
    assert ev <= shown
    assert "ICMP_UNREACHABLE" not in [x.code for x in res.findings]


# -- fragments --------------------------------------------------------------------------------


def test_incomplete_esp_fragments(tmp_path):
    c = Cap()
    ikev2_up(c)
    c.flow(A, B, SPI_AB, 1.0, 20.0)
    c.flow(B, A, SPI_BA, 1.05, 20.05)
    payload = struct.pack(">II", SPI_AB, 999) + bytes(1600)
    # first fragment only (MF set, offset 0): the rest never arrives
    c.add(5.0, eth(ipv4(A, B, 50, payload[:1480], ident=77, flags_frag=0x2000,
                        total_len=20 + 1480)))
    path, res = analyse(c, tmp_path)
    f = find(res, "ESP_FRAGMENTED")[0]
    assert "arrived incomplete" in f.title
    shown, ev = check_filter(path, f)
    assert ev <= shown


def test_esp_fragmented_attribute(tmp_path):
    """ESP reassembled from IP fragments: the tracker's ``fragmented`` count (fed by the decoder's
    hook, see EspTracker.fragmented) makes ESP_FRAGMENTED."""
    from pcapvpn.rules import run_rules
    from pcapvpn.thresholds import DEFAULT
    from pcapvpn.track import Tracker

    t = Tracker(DEFAULT, ["x.pcap"])
    a, b = bytes([192, 0, 2, 1]), bytes([203, 0, 113, 9])
    for i in range(20):
        t.esp((0, 2 * i + 1), 100.0 + i, 4, a, b, -1, -1, SPI_AB, i + 1, 1500)
        t.esp((0, 2 * i + 2), 100.2 + i, 4, b, a, -1, -1, SPI_BA, i + 1, 100)
    t.esp_tracker.fragmented(4, a, b, SPI_AB, ((0, 41), (0, 42)))
    fs = [f for f in run_rules(t.state(130.0)) if f.code == "ESP_FRAGMENTED"]
    assert len(fs) == 1 and [x.frame for x in fs[0].evidence.frames] == [41, 42]


# -- corpus -----------------------------------------------------------------------------------

ONE_WAY_CORPUS = ["arkime/wireshark-esp.pcap", "suricata-verify/eve-flow-esp/input.pcap",
                  "tcpdump/02-sunrise-sunset-esp.pcap", "tcpdump/08-sunrise-sunset-esp2.pcap"]
HEALTHY_CORPUS = ["zeek-spicy-ipsec/traces/IPsec_ESP-AH_tunnel_mode.cap", "nDPI/pcap/esp.pcapng"]


@pytest.mark.parametrize("name", ONE_WAY_CORPUS)
def test_corpus_one_way_by_construction(name):
    path = corpus_dir() / name
    res = run([str(path)])
    got = codes(res)
    assert "CAPTURE_ONE_DIRECTION" in got
    assert "ESP_ONE_WAY" not in got
    assert not [f for f in res.findings if f.failure and f.severity in ("error", "critical")]
    assert "failing" not in verdict(res).values()


@pytest.mark.parametrize("name", HEALTHY_CORPUS)
def test_corpus_healthy_has_no_dataplane_failure(name):
    path = corpus_dir() / name
    res = run([str(path)])
    bad = [f.code for f in res.findings
           if f.code in DATAPLANE and f.failure and f.severity != "info"]
    assert bad == []


def test_sequence_near_wrap(tmp_path):
    c = Cap()
    ikev2_up(c)
    hi = (1 << 32) - 1000
    for i in range(20):
        c.esp(1.0 + i, A, B, SPI_AB, seq=hi + i)
    c.flow(B, A, SPI_BA, 1.05, 20.05)
    _p, res = analyse(c, tmp_path)
    assert codes(res) == ["CAPTURE_MID_SESSION", "ESP_SEQUENCE_NEAR_WRAP"]
