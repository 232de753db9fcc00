"""bench/gen.py: deterministic output, and a ground truth that describes the file exactly."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import struct
import subprocess
import sys
from collections import defaultdict

import pytest

from conftest import REPO, tshark_fields
from dissect.vpn.capture import open_capture

spec = importlib.util.spec_from_file_location("bench_gen", REPO / "bench" / "gen.py")
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)

N = 5000


def _generate(packets=N, **kw):
    buf = io.BytesIO()
    truth = gen.generate(buf, packets, **kw)
    return buf.getvalue(), truth


@pytest.fixture(scope="module")
def small():
    """5,000 packets at the default rate (half a second of capture)."""
    return _generate()


@pytest.fixture(scope="module")
def slow():
    """5,000 packets over 100 s (50 packets/s): every kind of control packet and fault occurs."""
    return _generate(pps=50)


def test_same_args_same_bytes(small):
    data2, truth2 = _generate()
    assert hashlib.sha256(small[0]).hexdigest() == hashlib.sha256(data2).hexdigest()
    assert small[1] == truth2


def test_same_bytes_in_another_process(small, tmp_path):
    """No dependence on hash randomisation, the clock or the working directory."""
    out = tmp_path / "g.pcap"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run([sys.executable, str(REPO / "bench" / "gen.py"), "--packets", str(N),
                    "--out", str(out), "--ground-truth", str(tmp_path / "g.json")],
                   check=True, env=env, cwd=tmp_path, capture_output=True)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(small[0]).digest()


def test_seed_matters(small):
    assert _generate(seed=1)[0] != small[0]


def test_pcapng_has_same_packets(small):
    data, _ = _generate(fmt="pcapng")
    a = [(r[0], r[2]) for r in open_capture(io.BytesIO(small[0])).records()]
    b = [(r[0], r[2]) for r in open_capture(io.BytesIO(data)).records()]
    assert a == b


# ---- reading the file back (deliberately independent of the project's decoders)


def _parse(frame: bytes):
    """Ethernet + IPv4/IPv6 + UDP/ESP → (src, dst, proto, sport, dport, payload)."""
    et = struct.unpack_from("!H", frame, 12)[0]
    if et == 0x0800:
        ihl = (frame[14] & 15) * 4
        total = struct.unpack_from("!H", frame, 16)[0]
        assert sum(struct.unpack_from("!10H", frame, 14)) % 0xFFFF == 0  # header checksum
        src, dst, proto = frame[26:30], frame[30:34], frame[23]
        l4, end = 14 + ihl, 14 + total
    else:
        assert et == 0x86DD
        plen = struct.unpack_from("!H", frame, 18)[0]
        src, dst, proto = frame[22:38], frame[38:54], frame[20]
        l4, end = 54, 54 + plen
    assert end == len(frame)
    if proto == 17:
        sport, dport, ulen = struct.unpack_from("!HHH", frame, l4)
        assert l4 + ulen == end
        return src, dst, proto, sport, dport, frame[l4 + 8:end]
    return src, dst, proto, -1, -1, frame[l4:end]


def _frames(data):
    return [(r[0], r[2]) for r in open_capture(io.BytesIO(data)).records()]


def _ike(payload, sport, dport):
    if 4500 in (sport, dport):
        assert payload[:4] == b"\0\0\0\0"
        payload = payload[4:]
    spii, spir, np, ver, exch, flags, msgid, length = struct.unpack_from("!8s8sBBBBII", payload)
    assert ver == 0x20 and length == len(payload)
    return spii, spir, np, exch, flags, msgid, payload


def _payloads(msg, np):
    off = 28
    out = []
    while np:
        nxt, _, plen = struct.unpack_from("!BBH", msg, off)
        out.append((np, msg[off + 4:off + plen]))
        np, off = nxt, off + plen
    assert off == len(msg)
    return out


@pytest.mark.parametrize("which", ["small", "slow"])
def test_ground_truth_describes_the_file(which, request):
    data, truth = request.getfixturevalue(which)
    frames = _frames(data)
    assert len(frames) == truth["packets"] == N
    ts = [t for t, _ in frames]
    assert ts == sorted(ts)
    parsed = [_parse(f) for _, f in frames]

    # every ESP packet, per SPI, in file order
    esp = defaultdict(list)        # spi -> [(frame, seq)]
    keepalives = set()
    ike_frames = set()
    for no, (src, dst, proto, sport, dport, pl) in enumerate(parsed, 1):
        if proto == 50 or (proto == 17 and 4500 in (sport, dport) and len(pl) >= 8
                           and pl[:4] != b"\0\0\0\0"):
            spi, seq = struct.unpack_from("!II", pl)
            esp[f"{spi:08x}"].append((no, seq))
        elif proto == 17 and pl == b"\xff":
            keepalives.add(no)
        else:
            assert proto == 17
            ike_frames.add(no)

    sas = [sa for t in truth["tunnels"] for sa in t["esp_sas"]]
    assert sorted(esp) == sorted(sa["spi"] for sa in sas if sa["packets"])
    assert sum(len(v) for v in esp.values()) == truth["counts"]["esp"]
    gap_frames = {g["frame"]: g for f in truth["faults"] if f["type"] == "esp_seq_gap"
                  for g in f["gaps"]}
    for sa in sas:
        seen = esp.get(sa["spi"], [])
        assert len(seen) == sa["packets"]
        if not seen:
            continue
        assert (seen[0][0], seen[-1][0]) == (sa["first_frame"], sa["last_frame"])
        assert seen[0][1] == 1 and seen[-1][1] == sa["last_seq"]
        for (_, a), (no, b) in zip(seen, seen[1:]):
            if no in gap_frames:
                assert list(range(a + 1, b)) == gap_frames[no]["missing_seqs"]
            else:
                assert b == a + 1
        src, dst, proto, sport, dport, _ = parsed[seen[0][0] - 1]
        assert (gen._addr(src), gen._addr(dst)) == (sa["src"], sa["dst"])
        assert proto == (17 if sa["encap"] == "udp" else 50)

    faults = {f["type"]: f for f in truth["faults"]}
    assert set(faults) == {"ike_no_response", "no_proposal_chosen", "esp_one_way", "esp_seq_gap"}
    gaps = faults["esp_seq_gap"]["gaps"]
    assert [len(g["missing_seqs"]) for g in gaps] == [1, 3, 2]
    ow = faults["esp_one_way"]
    stopped = esp[ow["stopped_spi"]]
    assert stopped[-1][0] == ow["last_frame_stopped"]
    assert esp[ow["working_spi"]][-1][0] > ow["last_frame_stopped"]
    assert stopped[-1][0] < len(frames) * 0.6 < esp[ow["working_spi"]][-1][0]

    # control packets: every IKE record points at an IKE message with the stated header
    expect_ike = set()
    for t in truth["tunnels"]:
        spii, spir = bytes.fromhex(t["ike_spi_i"]), bytes.fromhex(t["ike_spi_r"])
        recs = t["ike"] + [d[k] for d in t["liveness"] for k in ("request", "response")]
        for r in recs:
            expect_ike.add(r["frame"])
            src, dst, _, sport, dport, pl = parsed[r["frame"] - 1]
            assert (sport, dport) == (r["sport"], r["dport"])
            ispi, rspi, np, exch, flags, msgid, msg = _ike(pl, sport, dport)
            assert ispi == spii and rspi == (spir if r["exchange"] != "IKE_SA_INIT"
                                             or r["response"] else b"\0" * 8)
            assert gen.__dict__[r["exchange"]] == exch and msgid == r["msgid"]
            assert bool(flags & 0x20) == r["response"]
            if exch == gen.IKE_AUTH:
                assert np == 46 and msg[28] == (36 if r["response"] else 35)
            if exch == gen.INFORMATIONAL:
                assert np == 46 and msg[28] == 0
            if exch == gen.IKE_SA_INIT:
                _check_natd(t, r, msg, np, src, dst, sport, dport)
        for k in t["keepalives"]:
            assert k["frame"] in keepalives
        assert len(t["keepalives"]) == sum(
            1 for no in keepalives if gen._addr(parsed[no - 1][0]) == t["initiator"])
    for key in ("ike_no_response",):
        expect_ike |= {s["frame"] for s in faults[key]["sends"]}
    expect_ike |= {faults["no_proposal_chosen"][k]["frame"] for k in ("request", "response")}
    assert expect_ike == ike_frames

    # the rejected proposal is answered by a lone NO_PROPOSAL_CHOSEN notify
    resp = faults["no_proposal_chosen"]["response"]
    src, dst, _, sport, dport, pl = parsed[resp["frame"] - 1]
    *_, np, exch, flags, msgid, msg = _ike(pl, sport, dport)
    assert _payloads(msg, np) == [(41, struct.pack("!BBH", 0, 0, 14))]

    # unanswered IKE_SA_INIT: identical retransmissions after 4, 7.2, 12.96, ... s
    sends = faults["ike_no_response"]["sends"]
    assert len({parsed[s["frame"] - 1][5] for s in sends}) == 1   # same IKE message
    gaps_us = [b["ts_us"] - a["ts_us"] for a, b in zip(sends, sends[1:])]
    assert gaps_us == [round(4e6 * 1.8 ** n) for n in range(len(gaps_us))]
    if which == "slow":
        assert len(sends) == 6
        assert all(len(t["liveness"]) >= 2 for t in truth["tunnels"])
        assert all(len(t["keepalives"]) >= 4 for t in truth["tunnels"] if t["nat"])


def _check_natd(t, r, msg, np, src, dst, sport, dport):
    pls = _payloads(msg, np)
    notes = {struct.unpack_from("!H", b, 2)[0]: b[4:] for typ, b in pls if typ == 41}
    assert {16388, 16389, 16430, 16431} <= set(notes)
    spii = msg[:8]
    spir = msg[8:16]
    h = lambda a, p: hashlib.sha1(spii + spir + a + struct.pack("!H", p)).digest()  # noqa: E731
    # the responder is never behind NAT: its hashes always match the addresses on the wire
    if r["response"]:
        assert notes[16388] == h(src, sport)
        assert notes[16389] == h(dst, dport)       # what the responder saw: the NAT's address
    else:
        assert notes[16389] == h(dst, dport)
        assert (notes[16388] == h(src, sport)) == (not t["nat"])
    ke = next(b for typ, b in pls if typ == 34)
    assert len(ke) - 4 == gen.KE_LEN[struct.unpack_from("!H", ke)[0]]


def test_oracle_tshark_agrees(slow, tmp_path):
    data, truth = slow
    path = tmp_path / "slow.pcap"
    path.write_bytes(data)
    rows = tshark_fields(path, ["frame.number", "isakmp.exchangetype", "isakmp.messageid"],
                         display_filter="isakmp")
    n_ike = sum(len(t["ike"]) + 2 * len(t["liveness"]) for t in truth["tunnels"])
    faults = {f["type"]: f for f in truth["faults"]}
    n_ike += len(faults["ike_no_response"]["sends"]) + 2
    assert len(rows) == n_ike
    ka = tshark_fields(path, ["frame.number"], display_filter="udpencap.nat_keepalive")
    assert len(ka) == sum(len(t["keepalives"]) for t in truth["tunnels"])
    # Wireshark's ESP sequence check flags exactly the injected gaps
    bad = tshark_fields(path, ["frame.number"], display_filter="_ws.expert.group == sequence")
    assert sorted(int(r[0]) for r in bad) == [g["frame"] for g in faults["esp_seq_gap"]["gaps"]]
