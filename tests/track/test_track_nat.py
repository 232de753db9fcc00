"""pcapvpn.track.nat: NAT keepalive flows and the NAT-D verdict of IKE SAs.

Hashes are computed here with hashlib from the RFC formulas (RFC 7296 §2.23: SHA-1(SPIi | SPIr |
IP | port), SPIr zero in the IKE_SA_INIT request; RFC 3947 §3.2: HASH(CKY-I | CKY-R | IP | Port)
with the negotiated phase-1 hash, first NAT-D = destination), independently of the module.
"""

from __future__ import annotations

import hashlib
import json
import struct

import pytest

from conftest import corpus_dir
from synth import ike_sa_init, ip, v2_notify
from pcapvpn.events import ike_event
from pcapvpn.thresholds import DEFAULT
from pcapvpn.track.ike import IkeTracker
from pcapvpn.track.nat import KeepaliveTracker, annotate, natd_hash, nat_verdict

ISPI = bytes.fromhex("1122334455667788")
RSPI = bytes.fromhex("99aabbccddeeff00")
ZERO = bytes(8)
I_PRIV, I_PUB = "10.0.0.2", "198.51.100.7"
R_PUB, R_PRIV = "203.0.113.1", "10.1.0.2"


def h2(ispi, rspi, addr, port):
    return hashlib.sha1(ispi + rspi + ip(addr) + struct.pack(">H", port)).digest()


def v2_init_pair(i_src, r_src, i_dst=None, r_dst=None):
    """IKE_SA_INIT request/response whose hashes are computed over the given (addr, port)."""
    req = ike_sa_init(ISPI, ZERO, False, extra=[
        (41, v2_notify(16388, h2(ISPI, ZERO, *i_src))),
        (41, v2_notify(16389, h2(ISPI, ZERO, *i_dst)))])
    resp = ike_sa_init(ISPI, RSPI, True, extra=[
        (41, v2_notify(16388, h2(ISPI, RSPI, *r_src))),
        (41, v2_notify(16389, h2(ISPI, RSPI, *r_dst)))])
    return req, resp


def feed(messages):
    """messages: (ts, src, sport, dst, dport, raw) → the IKE SAs."""
    t = IkeTracker(DEFAULT)
    for n, (ts, src, sport, dst, dport, raw) in enumerate(messages, 1):
        ipver = 6 if ":" in src else 4
        ike_event(t, (0, n), ts, ipver, ip(src), ip(dst), sport, dport, "udp", raw, 0, len(raw),
                  ((0, n),))
    t.finish()
    return t.sas


def one(messages):
    sas = feed(messages)
    assert len(sas) == 1
    return sas[0], nat_verdict(sas[0])


def ike_auth(response, ct=64):
    from synth import ike_encrypted

    return ike_encrypted(ISPI, RSPI, 35, 1, 35 if not response else 36, response,
                         not response, ct)


# -- hash formula ------------------------------------------------------------------------------


def test_natd_hash_formula():
    assert natd_hash("sha1", ISPI, ZERO, ip("192.0.2.1"), 500) == \
        hashlib.sha1(ISPI + ZERO + bytes((192, 0, 2, 1)) + b"\x01\xf4").digest()
    assert natd_hash("md5", ISPI, RSPI, ip("2001:db8::1"), 4500) == \
        hashlib.md5(ISPI + RSPI + ip("2001:db8::1") + b"\x11\x94").digest()


# -- IKEv2 verdicts ----------------------------------------------------------------------------


def test_v2_no_nat_hashes_match():
    req, resp = v2_init_pair((I_PUB, 500), (R_PUB, 500), (R_PUB, 500), (I_PUB, 500))
    sa, v = one([(0.0, I_PUB, 500, R_PUB, 500, req), (0.01, R_PUB, 500, I_PUB, 500, resp)])
    assert v.kind == "none" and v.basis == "observed"
    assert (v.initiator, v.responder, v.capture_point) == ("none", "none", "outside")
    assert set(v.hashes.values()) == {"match"}
    assert v.hash_alg == "sha1" and v.nat_d_frames == [[0, 1], [0, 2]]
    assert not v.detected
    json.dumps(v.to_dict())  # plain data


def test_v2_initiator_behind_napt_capture_outside():
    # the initiator hashes its private address; a NAPT maps 10.0.0.2:500 to 198.51.100.7:40001
    req, resp = v2_init_pair((I_PRIV, 500), (R_PUB, 500), (R_PUB, 500), (I_PUB, 40001))
    sa, v = one([
        (0.0, I_PUB, 40001, R_PUB, 500, req), (0.01, R_PUB, 500, I_PUB, 40001, resp),
        (0.05, I_PUB, 40002, R_PUB, 4500, ike_auth(False)),
        (0.06, R_PUB, 4500, I_PUB, 40002, ike_auth(True)),
    ])
    assert v.kind == "initiator" and v.basis == "observed"
    assert (v.initiator, v.responder, v.capture_point) == ("nat", "none", "outside")
    assert v.hashes == {"initiator_src": "mismatch", "initiator_dst": "match",
                        "responder_src": "match", "responder_dst": "match"}
    assert v.ports == {"initiator": 40001, "responder": 500}
    assert v.floated and v.float_frame == [0, 3] and v.float_ts == 0.05 and v.float_exchange == 35
    assert v.start_port == 500 and v.after_natd == 2 and v.after_natd_on_500 == 0
    assert v.endpoint_changes == []  # 40001 -> 40002 comes with the move to 4500
    assert v.nat_sides == ["initiator"] and v.detected


def test_v2_responder_behind_nat_translation_in_capture():
    # two vantage points merged: the responder's private address appears too (inside leg)
    req, resp = v2_init_pair((I_PUB, 500), (R_PRIV, 500), (R_PUB, 500), (I_PUB, 500))
    sa, v = one([
        (0.0, I_PUB, 500, R_PUB, 500, req),
        (0.001, I_PUB, 500, R_PRIV, 500, req),  # after the NAT (same bytes: a copy)
        (0.01, R_PUB, 500, I_PUB, 500, resp),
    ])
    assert v.kind == "responder" and v.responder == "nat" and v.initiator == "none"
    assert v.hashes["responder_src"] == "other"
    assert v.translated_from == {"responder": "10.1.0.2:500"}


def test_v2_capture_inside_initiator_nat():
    # seen between the initiator and its NAT: the responder hashed the public mapping
    req, resp = v2_init_pair((I_PRIV, 500), (R_PUB, 500), (R_PUB, 500), (I_PUB, 40001))
    sa, v = one([(0.0, I_PRIV, 500, R_PUB, 500, req), (0.01, R_PUB, 500, I_PRIV, 500, resp)])
    assert v.kind == "initiator" and v.initiator == "inside" and v.responder == "none"
    assert v.capture_point == "inside_initiator_nat"
    assert v.hashes["responder_dst"] == "mismatch" and v.hashes["initiator_src"] == "match"


def test_v2_capture_inside_responder_nat():
    # seen between the responder's NAT and the responder: the initiator addressed the public one
    req, resp = v2_init_pair((I_PUB, 500), (R_PRIV, 500), (R_PUB, 500), (I_PUB, 500))
    sa, v = one([(0.0, I_PUB, 500, R_PRIV, 500, req), (0.01, R_PRIV, 500, I_PUB, 500, resp)])
    assert v.kind == "responder" and v.responder == "inside"
    assert v.capture_point == "inside_responder_nat"


def test_v2_forced_encapsulation_one_side():
    # strongSwan encap=yes: a random source hash, nothing translated, ports 500 -> 4500
    req = ike_sa_init(ISPI, ZERO, False, extra=[
        (41, v2_notify(16388, bytes(range(20)))),
        (41, v2_notify(16389, h2(ISPI, ZERO, R_PUB, 500)))])
    resp = ike_sa_init(ISPI, RSPI, True, extra=[
        (41, v2_notify(16388, h2(ISPI, RSPI, R_PUB, 500))),
        (41, v2_notify(16389, h2(ISPI, RSPI, I_PUB, 500)))])
    sa, v = one([
        (0.0, I_PUB, 500, R_PUB, 500, req), (0.01, R_PUB, 500, I_PUB, 500, resp),
        (0.05, I_PUB, 4500, R_PUB, 4500, ike_auth(False)),
        (0.06, R_PUB, 4500, I_PUB, 4500, ike_auth(True)),
    ])
    assert v.kind == "forced" and v.basis == "inferred"
    assert (v.initiator, v.responder) == ("forced", "none")
    assert v.forced_sides == ["initiator"] and v.nat_sides == [] and v.detected
    assert v.floated


def test_v2_forced_both_sides_kernel_libipsec():
    req = ike_sa_init(ISPI, ZERO, False, extra=[
        (41, v2_notify(16388, b"\x01" * 20)), (41, v2_notify(16389, h2(ISPI, ZERO, R_PUB, 500)))])
    resp = ike_sa_init(ISPI, RSPI, True, extra=[
        (41, v2_notify(16388, b"\x02" * 20)), (41, v2_notify(16389, h2(ISPI, RSPI, I_PUB, 500)))])
    sa, v = one([(0.0, I_PUB, 500, R_PUB, 500, req), (0.01, R_PUB, 500, I_PUB, 500, resp)])
    assert v.kind == "forced" and v.forced_sides == ["initiator", "responder"]


def test_v2_inside_nat_with_fake_source_hash():
    # kernel-libipsec behind a real NAT, seen inside it (the lab's ikev2_nat-inside): the
    # responder hashed the public mapping, the initiator's own source hash is fake anyway
    req = ike_sa_init(ISPI, ZERO, False, extra=[
        (41, v2_notify(16388, b"\x01" * 20)), (41, v2_notify(16389, h2(ISPI, ZERO, R_PUB, 500)))])
    resp = ike_sa_init(ISPI, RSPI, True, extra=[
        (41, v2_notify(16388, b"\x02" * 20)),
        (41, v2_notify(16389, h2(ISPI, RSPI, I_PUB, 40001)))])
    sa, v = one([(0.0, I_PRIV, 500, R_PUB, 500, req), (0.01, R_PUB, 500, I_PRIV, 500, resp)])
    assert v.kind == "initiator" and v.initiator == "inside" and v.responder == "forced"
    assert v.capture_point == "inside_initiator_nat"
    assert v.fake_source == ["initiator"] and v.forced_sides == ["initiator", "responder"]
    assert v.nat_sides == ["initiator"]


def test_v2_random_hash_with_translated_port_is_a_nat():
    # a source hash matching nothing, but the port was translated: a real NAT, not forced
    req, resp = v2_init_pair(("172.16.9.9", 500), (R_PUB, 500), (R_PUB, 500), (I_PUB, 61000))
    sa, v = one([(0.0, I_PUB, 61000, R_PUB, 500, req), (0.01, R_PUB, 500, I_PUB, 61000, resp)])
    assert v.kind == "initiator" and v.initiator == "nat"


def test_v2_inconsistent_hashes():
    # every hash over addresses not seen here (e.g. tcpdump's ikev2four.pcap): no NAT placement
    req, resp = v2_init_pair(("192.0.2.50", 500), ("192.0.2.60", 500), ("192.0.2.61", 500),
                             ("192.0.2.51", 500))
    sa, v = one([(0.0, I_PUB, 500, R_PUB, 500, req), (0.01, R_PUB, 500, I_PUB, 500, resp)])
    assert v.kind == "inconsistent" and not v.detected


def test_v2_request_only_and_no_natd():
    req, _resp = v2_init_pair((I_PRIV, 500), (R_PUB, 500), (R_PUB, 500), (I_PUB, 40001))
    sa, v = one([(0.0, I_PUB, 40001, R_PUB, 500, req)])
    assert v.kind == "initiator" and v.responder == "none"
    assert v.hashes["responder_src"] is None
    plain = ike_sa_init(ISPI, ZERO, False)
    sa, v = one([(0.0, I_PUB, 500, R_PUB, 500, plain)])
    assert v.kind == "unknown" and v.hash_alg is None and v.initiator is None


def test_v2_cookie_retry_uses_answered_request():
    req, resp = v2_init_pair((I_PUB, 500), (R_PUB, 500), (R_PUB, 500), (I_PUB, 500))
    from synth import ike_notify_only

    cookie = ike_notify_only(ISPI, ZERO, 34, 16390, b"c" * 16, response=True)
    req2 = ike_sa_init(ISPI, ZERO, False, extra=[(41, v2_notify(16390, b"c" * 16))] + [
        (41, v2_notify(16388, h2(ISPI, ZERO, I_PUB, 500))),
        (41, v2_notify(16389, h2(ISPI, ZERO, R_PUB, 500)))])
    sa, v = one([(0.0, I_PUB, 500, R_PUB, 500, req), (0.01, R_PUB, 500, I_PUB, 500, cookie),
                 (0.02, I_PUB, 500, R_PUB, 500, req2), (0.03, R_PUB, 500, I_PUB, 500, resp)])
    assert v.kind == "none" and v.nat_d_frames == [[0, 3], [0, 4]]


def test_v2_ipv6():
    a, b = "2001:db8::1", "2001:db8:1::1"
    req, resp = v2_init_pair((a, 500), (b, 500), (b, 500), (a, 500))
    sa, v = one([(0.0, a, 500, b, 500, req), (0.01, b, 500, a, 500, resp)])
    assert v.kind == "none"


def test_v2_endpoint_change_after_float():
    req, resp = v2_init_pair((I_PRIV, 500), (R_PUB, 500), (R_PUB, 500), (I_PUB, 40001))
    from synth import ike_encrypted

    info = ike_encrypted(ISPI, RSPI, 37, 2, 0, False, True)
    info_r = ike_encrypted(ISPI, RSPI, 37, 2, 0, True, False)
    sa, v = one([
        (0.0, I_PUB, 40001, R_PUB, 500, req), (0.01, R_PUB, 500, I_PUB, 40001, resp),
        (0.05, I_PUB, 40002, R_PUB, 4500, ike_auth(False)),
        (0.06, R_PUB, 4500, I_PUB, 40002, ike_auth(True)),
        (300.0, I_PUB, 40999, R_PUB, 4500, info), (300.01, R_PUB, 4500, I_PUB, 40999, info_r),
    ])
    assert v.endpoint_changes_total == 1
    c = v.endpoint_changes[0]
    assert (c["side"], c["old"], c["new"], c["frame"], c["ts"]) == \
        ("initiator", "198.51.100.7:40002", "198.51.100.7:40999", [0, 5], 300.0)
    assert c["old_port"] == 40002 and c["new_port"] == 40999 and c["exchange"] == 37


def test_v2_stays_on_500_after_nat():
    req, resp = v2_init_pair((I_PRIV, 500), (R_PUB, 500), (R_PUB, 500), (I_PUB, 40001))
    sa, v = one([
        (0.0, I_PUB, 40001, R_PUB, 500, req), (0.01, R_PUB, 500, I_PUB, 40001, resp),
        (0.05, I_PUB, 40001, R_PUB, 500, ike_auth(False)),
        (0.06, R_PUB, 500, I_PUB, 40001, ike_auth(True)),
    ])
    assert v.kind == "initiator" and not v.floated
    assert v.after_natd == 2 and v.after_natd_on_500 == 2
    assert v.after_natd_on_500_frames == [[0, 3], [0, 4]]


def test_verdict_cached_until_new_messages():
    from pcapvpn.track.nat import ensure_verdict

    req, resp = v2_init_pair((I_PUB, 500), (R_PUB, 500), (R_PUB, 500), (I_PUB, 500))
    sas = feed([(0.0, I_PUB, 500, R_PUB, 500, req), (0.01, R_PUB, 500, I_PUB, 500, resp)])
    annotate(sas)
    v = sas[0].nat
    assert v.kind == "none" and ensure_verdict(sas[0]) is v


# -- IKEv1 (RFC 3947) --------------------------------------------------------------------------


def _tv(t, v):
    return struct.pack(">HH", 0x8000 | t, v)


def _v1_msg(icky, rcky, items, exch=2):
    out = b""
    for i, (t, body) in enumerate(items):
        nxt = items[i + 1][0] if i + 1 < len(items) else 0
        out += struct.pack(">BBH", nxt, 0, 4 + len(body)) + body
    first = items[0][0]
    return icky + rcky + bytes((first, 0x10, exch, 0)) + struct.pack(">II", 0, 28 + len(out)) + out


def _v1_sa(hash_ids):
    trans = b""
    for i, hid in enumerate(hash_ids):
        attrs = _tv(1, 7) + _tv(14, 128) + _tv(2, hid) + _tv(3, 1) + _tv(4, 14)
        last = i == len(hash_ids) - 1
        trans += struct.pack(">BBHBBH", 0 if last else 3, 0, 8 + len(attrs), i + 1, 1, 0) + attrs
    prop = struct.pack(">BBHBBBB", 0, 0, 8 + len(trans), 1, 1, 0, len(hash_ids)) + trans
    return struct.pack(">II", 1, 1) + prop


def h1(alg, icky, rcky, addr, port):
    return hashlib.new(alg, icky + rcky + ip(addr) + struct.pack(">H", port)).digest()


@pytest.mark.parametrize("alg,hid", [("md5", 1), ("sha1", 2), ("sha256", 4)])
def test_v1_main_mode_natd_negotiated_hash(alg, hid):
    icky, rcky = ISPI, RSPI
    natt_vid = (13, bytes.fromhex("4a131c81070358455c5728f20e95452f"))
    # the initiator offers MD5, SHA1 and SHA2-256; the responder chooses ``hid``
    mm1 = _v1_msg(icky, ZERO, [(1, _v1_sa([1, 2, 4])), natt_vid])
    mm2 = _v1_msg(icky, rcky, [(1, _v1_sa([hid])), natt_vid])
    # MM3 from the initiator behind a NAPT: first NAT-D = remote (destination), then local
    mm3 = _v1_msg(icky, rcky, [(4, bytes(128)), (10, bytes(16)),
                               (20, h1(alg, icky, rcky, R_PUB, 500)),
                               (20, h1(alg, icky, rcky, I_PRIV, 500))])
    mm4 = _v1_msg(icky, rcky, [(4, bytes(128)), (10, bytes(16)),
                               (20, h1(alg, icky, rcky, I_PUB, 40001)),
                               (20, h1(alg, icky, rcky, R_PUB, 500))])
    mm5 = icky + rcky + bytes((5, 0x10, 2, 1)) + struct.pack(">II", 0, 28 + 48) + bytes(48)
    sa, v = one([
        (0.0, I_PUB, 40001, R_PUB, 500, mm1), (0.01, R_PUB, 500, I_PUB, 40001, mm2),
        (0.02, I_PUB, 40001, R_PUB, 500, mm3), (0.03, R_PUB, 500, I_PUB, 40001, mm4),
        (0.04, I_PUB, 40002, R_PUB, 4500, mm5),
    ])
    assert v.hash_alg == alg and v.notes == []
    assert v.kind == "initiator" and v.initiator == "nat" and v.responder == "none"
    assert v.hashes == {"initiator_src": "mismatch", "initiator_dst": "match",
                        "responder_src": "match", "responder_dst": "match"}
    assert v.nat_d_frames == [[0, 3], [0, 4]]
    assert v.floated and v.float_frame == [0, 5]


def test_v1_hash_inferred_from_length_without_responder_sa():
    # only MM3 (e.g. Openswan lp101/lp109 unit-test captures): MD5 from the 16-byte hash
    mm3 = _v1_msg(ISPI, RSPI, [(4, bytes(128)), (10, bytes(16)),
                               (20, h1("md5", ISPI, RSPI, R_PUB, 500)),
                               (20, h1("md5", ISPI, RSPI, I_PUB, 500))])
    sa, v = one([(0.0, I_PUB, 500, R_PUB, 500, mm3)])
    assert v.hash_alg == "md5" and v.kind == "none"
    assert "inferred from the 16-byte NAT-D hash" in v.notes[0]


def test_v1_aggressive_mode_natd_in_am2():
    # RFC 3947 §3.2: NAT-D in Aggressive Mode messages 2 and 3
    am1 = _v1_msg(ISPI, ZERO, [(1, _v1_sa([2])), (4, bytes(128)), (10, bytes(16)),
                               (5, struct.pack(">BBH", 1, 17, 500) + ip(I_PRIV))], exch=4)
    am2 = _v1_msg(ISPI, RSPI, [(1, _v1_sa([2])), (4, bytes(128)), (10, bytes(16)),
                               (20, h1("sha1", ISPI, RSPI, I_PUB, 40001)),
                               (20, h1("sha1", ISPI, RSPI, R_PUB, 500))], exch=4)
    sa, v = one([(0.0, I_PUB, 40001, R_PUB, 500, am1), (0.01, R_PUB, 500, I_PUB, 40001, am2)])
    assert v.hash_alg == "sha1" and v.responder == "none"
    assert v.hashes["responder_dst"] == "match" and v.initiator == "none"


# -- keepalives --------------------------------------------------------------------------------


def test_keepalive_flow_statistics():
    kt = KeepaliveTracker(DEFAULT)
    a, b = ip(I_PUB), ip(R_PUB)
    ts = [0.0, 20.0, 40.0, 40.001, 60.0, 160.0, 180.0]  # one capture duplicate, one 100 s gap
    for n, t in enumerate(ts, 1):
        kt.keepalive((0, n), t, 4, a, b, 40002, 4500)
    kt.keepalive((0, 99), 5.0, 4, b, a, 4500, 40002)
    flows = kt.flows()
    assert len(flows) == 2 and kt.count == 8
    f = flows[0]
    assert (f.src, f.sport, f.dst, f.dport) == (a, 40002, b, 4500)
    assert f.count == 6 and f.duplicates == 1 and f.intervals == 5
    assert f.min_interval == pytest.approx(19.999, abs=0.01)
    assert f.max_interval == pytest.approx(100.0)
    assert f.median_interval == pytest.approx(20.0, rel=0.02)
    assert f.long_gaps == [(60.0, 160.0, (0, 5), (0, 6))] and f.long_gaps_total == 1
    assert f.max_gap[0] == pytest.approx(100.0)
    assert f.first_ts == 0.0 and f.last_ts == 180.0 and f.refs[0] == (0, 1)
    d = f.to_dict()
    assert d["src"] == I_PUB and d["count"] == 6 and d["long_gaps"][0]["frames"] == [[0, 5], [0, 6]]
    json.dumps(d)


def test_keepalive_memory_is_bounded():
    kt = KeepaliveTracker(DEFAULT)
    a, b = ip(I_PUB), ip(R_PUB)
    t = 0.0
    for n in range(20000):
        t += 15.0 + (n % 13)  # 15..27 s
        kt.keepalive((0, n), t, 4, a, b, 4500, 4500)
    f = kt.flows()[0]
    assert f.count == 20000
    assert len(f.refs) <= 2 * f.SAMPLE
    assert len(f._bins) < 40
    assert 15.0 <= f.median_interval <= 27.0
    assert not f.long_gaps and f.long_gaps_total == 0


# -- corpus ------------------------------------------------------------------------------------


def _corpus_sas(path):
    from dissect.vpn.capture import open_capture
    from pcapvpn.decode import Decoder
    from pcapvpn.track import Tracker

    tracker = Tracker(DEFAULT, [path.name])
    with open(path, "rb") as f:
        reader = open_capture(f)
        frames = ((0, n, ts, lt, data, wl, off)
                  for n, (ts, lt, data, wl, off, _i) in enumerate(reader.records(), 1))
        d = Decoder(tracker)
        d.run(frames)
        d.finish()
    tracker.finish()
    annotate(tracker.ike_tracker.sas)
    return tracker.ike_tracker.sas


def test_corpus_ndpi_esp_no_nat():
    sas = _corpus_sas(corpus_dir() / "nDPI" / "pcap" / "esp.pcapng")
    (sa,) = sas
    assert sa.nat.kind == "none" and set(sa.nat.hashes.values()) == {"match"}
    assert not sa.nat.floated


def test_corpus_ipsec_client_capture_inside_initiator_nat():
    # Windows client 192.168.0.10 behind a home NAT; the responder hashed its public mapping
    sas = _corpus_sas(corpus_dir() / "zeek-spicy-ipsec" / "traces" / "ipsec_client.pcap")
    (sa,) = sas
    v = sa.nat
    assert v.kind == "initiator" and v.initiator == "inside"
    assert v.capture_point == "inside_initiator_nat"
    assert v.hashes == {"initiator_src": "match", "initiator_dst": "match",
                        "responder_src": "match", "responder_dst": "mismatch"}
    if not any(m.exch == 35 for m in sa.messages):
        pytest.xfail("the decoder did not deliver the IP-fragmented IKE_AUTH on 4500")
    assert v.floated and v.float_frame[1] == 5


def test_corpus_ikev2four_hashes_match_nothing():
    # tcpdump's ikev2four: NAT-D hashes over none of the addresses seen (not a NAT)
    sas = _corpus_sas(corpus_dir() / "tcpdump" / "ikev2four.pcap")
    first = sas[0]
    assert first.nat.kind == "inconsistent" and not first.nat.detected
    assert set(first.nat.hashes.values()) == {"mismatch"}
    assert all(sa.nat.kind == "unknown" for sa in sas[1:])


def test_corpus_openswan_natt_initiator_behind_napt():
    sas = _corpus_sas(corpus_dir() / "openswan" / "lp62-nattR1" / "nattI1.pcap")
    (sa,) = sas
    v = sa.nat
    assert v.kind == "initiator" and v.initiator == "nat" and v.capture_point == "outside"
    assert v.ports == {"initiator": 55044}
    # the hash is over the initiator's own (private) endpoint, 192.168.1.1:500
    req = sa.messages[0]
    src = [d for t, d in req.nat_d if t == 16388][0]
    assert src == h2(sa.ispi, ZERO, "192.168.1.1", 500)


def test_corpus_v1_main_mode_sha1():
    sas = _corpus_sas(corpus_dir() / "zeek-spicy-ipsec" / "traces" / "ipsec.cap")
    v = sas[0].nat
    assert v.hash_alg == "sha1" and v.kind == "none" and set(v.hashes.values()) == {"match"}
