"""WireGuard: dissect.vpn.wireguard, the handshake/counter tracker, the rules on synthetic
failures (no response, renewal failing after REKEY_AFTER_TIME, cookie replies, one-way data,
counter gaps) and the corpus (Zeek spicy-wireguard baselines, nDPI captures)."""

from __future__ import annotations

import pytest

from conftest import corpus_dir, tshark_fields
from dissect.vpn import wireguard as wg
from dissect.vpn.errors import DissectError
from test_vpn_rules import (C, S, Cap, analyse, check_filters, codes, vpn_tunnels, wg_cookie,
                            wg_data, wg_init, wg_resp)

PORT = 51820


def test_dissect_messages():
    m = wg_init(0xAABBCCDD)
    assert len(m) == 148 and wg.looks_like(m, 0, 148)
    assert wg.parse(m, 0, 148) == (wg.INITIATION, 0xAABBCCDD, False, True)
    r = wg_resp(5, 0xAABBCCDD)
    assert wg.parse(r, 0, len(r)) == (wg.RESPONSE, 5, 0xAABBCCDD, False, True)
    k = wg_cookie(7)
    assert wg.parse(k, 0, len(k)) == (wg.COOKIE_REPLY, 7, True)
    d = wg_data(9, 2 ** 40 + 3, plen=0)
    assert wg.parse(d, 0, len(d)) == (wg.DATA, 9, 2 ** 40 + 3, 0)
    # padding: zeros keep the standard form, other bytes make it non-standard
    assert wg.parse(wg_init(1, bytes(56)), 0, 204)[3] is True
    assert wg.parse(wg_init(1, b"\x01" * 56), 0, 204)[3] is False
    assert not wg.looks_like(wg_data(1, 1)[:40], 0, 40)      # unpadded below the MTU
    assert wg.parse(wg_data(1, 1)[:40], 0, 40)[:3] == (wg.DATA, 1, 1)
    for bad in (b"\x01\x00\x00\x01" + bytes(144), b"\x05\x00\x00\x00" + bytes(60),
                wg_init(1)[:100], wg_data(1, 1)[:31]):
        assert not wg.looks_like(bad, 0, len(bad))
        with pytest.raises(DissectError):
            wg.parse(bad, 0, len(bad))


def _handshake(c, t, sender, receiver, cport=40000):
    c.udp(t, C, S, cport, PORT, wg_init(sender))
    c.udp(t + 0.03, S, C, PORT, cport, wg_resp(receiver, sender))


def _data(c, t0, t1, recv_s, recv_c, rate=1.0, cport=40000, start=0, both=True):
    n = int((t1 - t0) * rate)
    for i in range(n):
        c.udp(t0 + i / rate, C, S, cport, PORT, wg_data(recv_s, start + i))
        if both:
            c.udp(t0 + i / rate + 0.01, S, C, PORT, cport, wg_data(recv_c, start + i))


def test_healthy(tmp_path):
    c = Cap()
    _handshake(c, 0, 0x10, 0x20)
    _data(c, 0.1, 30, 0x20, 0x10)
    r = analyse(c.write(tmp_path / "ok.pcap"))
    t, = vpn_tunnels(r)
    assert (t["protocol"], t["verdict"], t["stage_reached"]) == ("wireguard", "healthy",
                                                                  "dataplane")
    w = t["vpn"]["wireguard"]
    assert w["handshakes"] == 1 and w["handshakes_answered"] == 1 and w["counter_gaps"] == 0
    assert r.findings == []


def test_no_response_every_five_seconds(tmp_path):
    c = Cap()
    for i in range(6):
        c.udp(i * 5.0, C, S, 40000, PORT, wg_init(0x100 + i))
    p = c.write(tmp_path / "nr.pcap")
    r = analyse(p)
    assert codes(r) == ["WIREGUARD_NO_RESPONSE"]
    f = r.findings[0]
    assert "6 handshake initiation(s)" in f.detail and "5, 5, 5" in f.detail
    assert len(f.evidence.frames) == 6
    t, = vpn_tunnels(r)
    assert t["verdict"] == "failing" and t["stage_reached"] == "reachability"
    check_filters(p, r)


def test_single_initiation_pending(tmp_path):
    c = Cap()
    c.udp(0, C, S, 40000, PORT, wg_init(1))
    c.udp(2, C, "192.0.2.99", 1, 2, b"x")
    r = analyse(c.write(tmp_path / "one.pcap"))
    assert codes(r) == []
    t, = vpn_tunnels(r)
    assert t["verdict"] == "unknown" and any("handshake initiation" in n for n in t["not_seen"])


def test_retry_answered_is_healthy(tmp_path):
    c = Cap()
    c.udp(0, C, S, 40000, PORT, wg_init(1))          # lost
    _handshake(c, 5, 2, 0x20)                         # the retry is answered
    _data(c, 5.1, 30, 0x20, 2)
    r = analyse(c.write(tmp_path / "retry.pcap"))
    assert codes(r) == [] and vpn_tunnels(r)[0]["verdict"] == "healthy"


def test_renewal_failing_after_rekey_after_time(tmp_path):
    c = Cap()
    _handshake(c, 0, 1, 0x20)
    _data(c, 0.1, 125, 0x20, 1, rate=0.5)
    for i in range(8):                               # renewal from 121 s, never answered
        c.udp(121 + 5 * i, C, S, 40000, PORT, wg_init(0x300 + i))
    _data(c, 125, 180, 0x20, 1, rate=0.5, start=70, both=False)
    p = c.write(tmp_path / "rekey.pcap")
    r = analyse(p)
    f = next(f for f in r.findings if f.code == "WIREGUARD_NO_RESPONSE")
    assert "renewal" in f.title and "REKEY_AFTER_TIME (120 s)" in f.detail
    assert vpn_tunnels(r)[0]["verdict"] == "failing"
    check_filters(p, r)


def test_cookie_reply(tmp_path):
    c = Cap()
    c.udp(0, C, S, 40000, PORT, wg_init(1))
    c.udp(0.02, S, C, PORT, 40000, wg_cookie(1))
    c.udp(5, C, S, 40000, PORT, wg_init(2))
    c.udp(5.02, S, C, PORT, 40000, wg_resp(0x20, 2))
    _data(c, 5.1, 20, 0x20, 2)
    r = analyse(c.write(tmp_path / "cookie.pcap"))
    assert codes(r) == ["WIREGUARD_COOKIE"]
    f = r.findings[0]
    assert f.severity == "info" and not f.failure
    assert vpn_tunnels(r)[0]["verdict"] == "healthy"


def test_cookie_reply_alone(tmp_path):
    """A flow holding only a cookie reply: not "set up before the capture started", but what was
    seen — a responder under load whose initiation/response exchange is not in the capture."""
    c = Cap()
    c.udp(0.02, S, C, PORT, 40000, wg_cookie(1))
    c.udp(20, C, "192.0.2.200", 1, 2, b"z")
    r = analyse(c.write(tmp_path / "cookieonly.pcap"))
    t, = vpn_tunnels(r)
    assert codes(r) == ["WIREGUARD_COOKIE"] and t["verdict"] == "unknown"
    note = " ".join(t["not_seen"])
    assert "only 1 cookie reply(ies)" in note and "under load" in note
    assert "not in the capture" in note and "set up before" not in note
    assert "data plane is visible" not in note


def test_data_one_way_after_handshake(tmp_path):
    c = Cap()
    _handshake(c, 0, 1, 0x20)
    _data(c, 0.1, 30, 0x20, 1, both=False)
    p = c.write(tmp_path / "oneway.pcap")
    r = analyse(p)
    assert codes(r) == ["VPN_DATA_ONE_WAY"]
    assert "never sent WireGuard transport data" in r.findings[0].detail
    check_filters(p, r)


def test_counter_gaps_reported(tmp_path):
    c = Cap()
    _handshake(c, 0, 1, 0x20)
    for i in range(40):
        if i % 10 == 3:
            continue  # lost before the capture point
        c.udp(0.1 + i * 0.5, C, S, 40000, PORT, wg_data(0x20, i))
        c.udp(0.1 + i * 0.5 + 0.01, S, C, PORT, 40000, wg_data(1, i))
    r = analyse(c.write(tmp_path / "gaps.pcap"))
    w = vpn_tunnels(r)[0]["vpn"]["wireguard"]
    assert w["counter_gaps"] == 8
    assert {x["missing"] for x in w["receiver_indexes"]} == {4}
    t, = vpn_tunnels(r)
    assert any("skip 8 packet(s) of 80" in n for n in t["not_seen"])
    assert t["verdict"] == "healthy" and r.findings == []


def test_data_only_flow_needs_consistent_counters(tmp_path):
    c = Cap()
    c.udp(0, C, S, 40000, 5060, wg_data(7, 100))
    c.udp(1, C, S, 40000, 5060, wg_data(8, 3))        # another index: not the same flow yet
    c.udp(2, C, S, 40000, 5060, wg_data(8, 4))        # consistent: accepted (held one replayed)
    c.udp(2.5, S, C, 5060, 40000, wg_data(9, 0))
    r = analyse(c.write(tmp_path / "dataonly.pcap"))
    t, = vpn_tunnels(r)
    assert t["vpn"]["data_packets"] == {"client_to_server": 2, "server_to_client": 1}
    assert any("no WireGuard handshake" in n for n in t["not_seen"])


# -- corpus ----------------------------------------------------------------------------------------

def test_zeek_wireguard_baseline():
    """wireguard.log: established, 1 initiation, 1 response, 188.166.170.114:45965 ->
    188.166.170.115:51194; conn.log: 90 / 82 packets (the UDP flow)."""
    r = analyse(corpus_dir() / "zeek-spicy-wireguard" / "Traces" / "wireguard.pcap")
    t, = vpn_tunnels(r)
    assert (t["a"], t["b"], t["server_port"]) == ("188.166.170.114", "188.166.170.115", 51194)
    assert t["vpn"]["client_ports"] == [45965]
    w = t["vpn"]["wireguard"]
    assert w["handshakes"] == 1 and w["handshakes_answered"] == 1
    assert t["verdict"] == "healthy" and r.findings == []
    # 170 transport messages (MANIFEST, tshark); per receiver index as tshark counts them
    d = t["vpn"]["data_packets"]
    assert d["client_to_server"] + d["server_to_client"] == 170
    rows = tshark_fields(corpus_dir() / "zeek-spicy-wireguard" / "Traces" / "wireguard.pcap",
                         ["wg.receiver", "wg.counter"], "wg.type == 4")
    theirs = {}
    for recv, ctr in rows:
        n, hi = theirs.get(int(recv, 16), (0, 0))
        theirs[int(recv, 16)] = (n + 1, max(hi, int(ctr)))
    ours = {int(x["index"], 16): (x["packets"], x["last_counter"])
            for x in w["receiver_indexes"]}
    assert ours == theirs


@pytest.mark.parametrize("path,data", [
    ("zeek-spicy-wireguard/Traces/tailscale_linux.pcap", 46),
    ("nDPI/pcap/tailscale.pcap", 46),
    ("nDPI/pcap/mullvad_wireguard.pcap", 10),
])
def test_corpus_data_only_captures(path, data):
    r = analyse(corpus_dir() / path)
    t, = vpn_tunnels(r)
    d = t["vpn"]["data_packets"]
    assert d["client_to_server"] + d["server_to_client"] == data
    assert t["verdict"] == "healthy" and r.findings == []


def test_tunnelbear_padded_handshake():
    """TunnelBear pads its handshake messages: the initiation (204 bytes) is confirmed by the
    response naming its sender index; the capture ends 0.3 s later: unknown, no finding."""
    r = analyse(corpus_dir() / "nDPI" / "pcap" / "tunnelbear.pcap")
    t, = vpn_tunnels(r)
    assert t["protocol"] == "wireguard" and t["server_port"] == 51820
    assert t["vpn"]["wireguard"]["handshakes_answered"] == 1
    assert t["verdict"] == "unknown" and r.findings == []


def test_one_direction_captured_is_not_no_response(tmp_path):
    """Only the initiator's packets are in the capture (a mirror of one direction, asymmetric
    routing): its transport data on a new session, counter 0 to a receiver index no earlier
    handshake named, holds the responder's index that only the response gives.  The handshake
    was answered: no WIREGUARD_NO_RESPONSE, the tunnel unknown, not failing."""
    c = Cap()
    c.udp(0, C, S, 40000, PORT, wg_init(0x10))
    _data(c, 0.1, 30, 0x20, 0x10, both=False)
    r = analyse(c.write(tmp_path / "onedir.pcap"))
    assert "WIREGUARD_NO_RESPONSE" not in codes(r)
    t, = vpn_tunnels(r)
    assert t["verdict"] == "unknown"
    # data on the old session only (its receiver index named by the answered handshake) proves
    # nothing about the later initiations: still never answered
    c = Cap()
    _handshake(c, 0, 0x10, 0x20)
    for i in range(6):
        c.udp(10 + i * 5.0, C, S, 40000, PORT, wg_init(0x100 + i))
    _data(c, 0.1, 40, 0x20, 0x10, both=False)
    r = analyse(c.write(tmp_path / "old.pcap"))
    assert "WIREGUARD_NO_RESPONSE" in codes(r)


@pytest.mark.parametrize("snap", [96, 64])
def test_snaplen_cut_capture_keeps_the_tunnel(tmp_path, snap):
    """tcpdump -s 96 (headers only): the handshake initiation (148 bytes) and response (92) are
    cut, and WireGuard messages are told by their sizes.  The sizes are the wire's (the records'
    original lengths), the indexes and counters are in the captured bytes: the same healthy
    tunnel as the whole capture (it vanished).  mac2, past the cut, is not taken as set."""
    from dissect.vpn.capture.writers import PcapWriter
    from synth import LINKTYPE_ETHERNET

    c = Cap()
    _handshake(c, 0, 0x10, 0x20)
    _data(c, 0.1, 30, 0x20, 0x10)
    whole = analyse(c.write(tmp_path / "whole.pcap"))
    c.frames.sort(key=lambda f: f[0])
    with open(tmp_path / "cut.pcap", "wb") as f:
        w = PcapWriter(f, LINKTYPE_ETHERNET)
        for ts, data in c.frames:
            w.write_packet(1_700_000_000.0 + ts, data[:snap], len(data))
    cut = analyse(tmp_path / "cut.pcap")
    t, = vpn_tunnels(cut)
    assert (t["verdict"], t["stage_reached"]) == ("healthy", "dataplane")
    w0, w1 = vpn_tunnels(whole)[0]["vpn"]["wireguard"], t["vpn"]["wireguard"]
    assert (w1["handshakes"], w1["handshakes_answered"]) == (1, 1)
    assert w1["receiver_indexes"] == w0["receiver_indexes"]
    m = wg.parse(b"\x01\x00\x00\x00" + (0x10).to_bytes(4, "little") + bytes(40), 0, 148)
    assert m == (wg.INITIATION, 0x10, False, True)
