"""OpenVPN: dissect.vpn.openvpn (layouts, reliability layer, TCP framing), the session tracker,
the rules (no response, stalled handshake, retransmissions, one-way data), and the corpus against
the Zeek spicy-openvpn baselines (every message: opcode, key ID, session ID, packet ID, ACKs) and
the lab's OpenVPN scenarios."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, corpus_dir
from dissect.vpn import openvpn as ov
from dissect.vpn.errors import DissectError
from pcapvpn.decode import Decoder, NullSink
from pcapvpn.sources import merge_frames, open_source
from test_vpn_rules import (C, S, T0, Cap, analyse, check_filters, codes, make_cert,
                            ovpn_control, ovpn_crypt, ovpn_data, tcp_frame_ovpn, tls_record,
                            client_hello, server_hello, certificate, hs, vpn_tunnels)

SID_C, SID_S = 0x1122334455667788, 0x99AABBCCDDEEFF00


# -- dissector -----------------------------------------------------------------------------------

@pytest.mark.parametrize("hmac", [0, 20, 32, 64])
def test_layouts_detected_and_parsed(hmac):
    reset = ovpn_control(7, SID_C, hmac=hmac)
    assert ov.detect_layout(reset, 0, len(reset)) == (hmac or ov.PLAIN)
    srv = ovpn_control(8, SID_S, acks=[0], rsid=SID_C, hmac=hmac)
    assert ov.detect_layout(srv, 0, len(srv)) == (hmac or ov.PLAIN)
    c = ov.parse_control(srv, 0, len(srv), hmac or ov.PLAIN)
    assert (c.opcode, c.session_id, c.acks, c.remote_session_id, c.packet_id) == \
        (8, SID_S, (0,), SID_C, 0)
    ack = ovpn_control(5, SID_C, acks=[3, 4], rsid=SID_S, hmac=hmac)
    c = ov.parse_control(ack, 0, len(ack), hmac or ov.PLAIN)
    assert c.acks == (3, 4) and c.packet_id is None
    ctl = ovpn_control(4, SID_C, pid=5, payload=b"\x16\x03\x03\x00\x01\x01", hmac=hmac)
    c = ov.parse_control(ctl, 0, len(ctl), hmac or ov.PLAIN)
    assert c.packet_id == 5 and ctl[c.payload_off:c.payload_end] == b"\x16\x03\x03\x00\x01\x01"
    if hmac:
        assert (c.replay_id, c.net_time) == (1, int(T0))


def test_tls_crypt_and_v2():
    p = ovpn_crypt(7, SID_C)
    assert ov.detect_layout(p, 0, len(p)) == ov.CRYPT
    c = ov.parse_control(p, 0, len(p), ov.CRYPT)
    assert c.encrypted and c.packet_id is None and c.wkc_len == 0
    v3 = ovpn_crypt(10, SID_C, wkc=299)
    c = ov.parse_control(v3, 0, len(v3), ov.CRYPT)
    assert c.wkc_len == 299 and c.payload_end == len(v3) - 299
    assert ov.detect_layout(v3, 0, len(v3)) == ov.CRYPT


@pytest.mark.parametrize("skew", [0, -86400 * 30, 86400 * 3 + 1, -86400 * 365 * 3])
def test_layout_does_not_trust_the_senders_clock(skew):
    """The net time is the sender's clock: a capture replayed months later, or a sender whose
    clock is off by days, is recognised all the same (issue 13 §0)."""
    for op, extra in ((7, {}), (8, {}), (10, {"wkc": 120})):
        p = ovpn_crypt(op, SID_C, net_time=T0 + skew, **extra)
        assert ov.detect_layout(p, 0, len(p)) == ov.CRYPT
    for hmac in (20, 32, 64):
        p = ovpn_control(7, SID_C, hmac=hmac, net_time=T0 + skew)
        assert ov.detect_layout(p, 0, len(p)) == hmac


def test_reset_replay_structure():
    """A hard reset is among the first packets of its sender's replay context: replay packet ID
    1 (or a little more after retransmissions), never a large one."""
    for rid in (1, 2, 13, ov.RESET_MAX_REPLAY):
        p = ovpn_crypt(7, SID_C, replay=rid)
        assert ov.detect_layout(p, 0, len(p)) == ov.CRYPT
    for rid in (0, ov.RESET_MAX_REPLAY + 1, 70000, 0xFFFFFFFF):
        p = ovpn_crypt(7, SID_C, replay=rid)
        assert ov.detect_layout(p, 0, len(p)) in (None, ov.PLAIN)
    # other control packets are ambiguous alone: the caller confirms with a second packet
    a = ovpn_crypt(4, SID_C, replay=7)
    b = ovpn_crypt(4, SID_C, replay=9)
    assert ov.detect_layout(a, 0, len(a)) is None
    ca, cb = ov.wrap_candidates(a, 0, len(a)), ov.wrap_candidates(b, 0, len(b))
    assert [x[0] for x in ca if any(ov.same_context(x, y) for y in cb)] == [ov.CRYPT]
    other = ovpn_crypt(4, SID_C, replay=9, net_time=T0 + 1)   # another context
    assert not any(ov.same_context(x, y) for x in ca
                   for y in ov.wrap_candidates(other, 0, len(other)))


def _random_control(rng, n):
    """Random bytes behind a control opcode with key ID 0 (the shape _new_udp considers)."""
    op = rng.choice(sorted(ov.CONTROL_OPCODES))
    return bytes([op << 3]) + rng.randbytes(n - 1)


def test_random_payloads_never_pass_for_a_wrapped_reset():
    """False positives of the clockless recognition on random datagrams: zero in 300,000
    (a wrapped reset needs a replay ID of 1..64: 64 / 2**32 per packet)."""
    import random

    rng = random.Random(13)
    hits = {}
    for i in range(300_000):
        p = _random_control(rng, 14 + (i % 1400))
        lay = ov.detect_layout(p, 0, len(p))
        if lay is not None and lay != ov.PLAIN:
            hits[lay] = hits.get(lay, 0) + 1
    assert hits == {}


@settings(max_examples=3000, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(op=st.sampled_from(sorted(ov.CLIENT_RESETS | ov.SERVER_RESETS)),
       body=st.binary(min_size=13, max_size=1500))
def test_hypothesis_random_resets_not_wrapped(op, body):
    """Random payloads behind a hard-reset opcode: a wrapped layout only when the replay
    structure is really there (a replay ID of 1..64 at the place the layout puts it)."""
    p = bytes([op << 3]) + body
    lay = ov.detect_layout(p, 0, len(p))
    if lay is None or lay == ov.PLAIN:
        return
    c = ov.parse_control(p, 0, len(p), lay)
    assert 1 <= c.replay_id <= ov.RESET_MAX_REPLAY


def test_no_openvpn_in_other_udp_captures():
    """Every capture in captures/ and the corpus that holds no OpenVPN: no OpenVPN tunnel is
    made of its UDP (issue 13 §0: zero false positives without the clock check)."""
    from conftest import corpus_captures, corpus_dir, project_captures

    root = corpus_dir()
    openvpn = {root / row.split("`")[1] for row in (root / "MANIFEST.md").read_text().splitlines()
               if row.startswith("| `") and "OpenVPN" in row}
    checked = 0
    for p in project_captures() + corpus_captures():
        if p in openvpn or "openvpn" in p.name:
            continue
        r = analyse(p)
        assert not [t for t in vpn_tunnels(r) if t.get("protocol") == "openvpn"], p
        checked += 1
    assert checked > 100


def test_malformed_control_packets():
    with pytest.raises(DissectError):
        ov.parse_control(b"\x38" + bytes(8), 0, 9)          # no ACK length
    with pytest.raises(DissectError):
        ov.parse_control(b"\x38" + bytes(8) + b"\x09" + bytes(60), 0, 70)  # 9 ACKs
    with pytest.raises(DissectError):
        ov.parse_header(b"\xf8abc", 0, 4)                     # opcode 31
    bad_ack = ovpn_control(5, SID_C, acks=[1], rsid=SID_S) + b"x"
    with pytest.raises(DissectError):
        ov.parse_control(bad_ack, 0, len(bad_ack))
    for n in range(0, 40):
        buf = (b"\x38" + bytes(range(60)))[:n]
        try:
            ov.parse_control(buf, 0, n, ov.PLAIN)
        except DissectError:
            pass
        ov.detect_layout(buf, 0, n)
        ov.looks_like(buf, 0, n)


def test_tcp_framing():
    a, b = ovpn_control(7, SID_C), ovpn_data(50)
    stream = tcp_frame_ovpn(a) + tcp_frame_ovpn(b) + tcp_frame_ovpn(a)[:5]
    msgs, used = ov.split_tcp(stream)
    assert [stream[x:y] for x, y in msgs] == [a, b] and used == len(a) + len(b) + 4
    with pytest.raises(DissectError):
        ov.split_tcp(b"\x00\x00" + a)
    with pytest.raises(DissectError):
        ov.split_tcp(b"\x00\x05\xf8abcd")
    assert ov.tcp_stream_start(tcp_frame_ovpn(a), 0, len(a) + 2)
    assert not ov.tcp_stream_start(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, 27)
    assert not ov.tcp_stream_start(tcp_frame_ovpn(ovpn_control(7, SID_C, key_id=1)), 0, 16)


# -- tracker and rules ---------------------------------------------------------------------------

def _udp_session(c, t, sid_c=SID_C, port=1194, cport=40000, hmac=0, data=10, server=True):
    c.udp(t, C, S, cport, port, ovpn_control(7, sid_c, hmac=hmac))
    if not server:
        return
    c.udp(t + 0.05, S, C, port, cport, ovpn_control(8, SID_S, acks=[0], rsid=sid_c, hmac=hmac))
    c.udp(t + 0.1, C, S, cport, port, ovpn_control(5, sid_c, acks=[0], rsid=SID_S, hmac=hmac))
    c.udp(t + 0.2, C, S, cport, port,
          ovpn_control(4, sid_c, pid=1, payload=tls_record(22, client_hello(), 0x0301),
                       hmac=hmac))
    c.udp(t + 0.3, S, C, port, cport,
          ovpn_control(4, SID_S, pid=1, acks=[1], rsid=sid_c,
                       payload=tls_record(22, server_hello(0x0304)), hmac=hmac))
    for i in range(data):
        c.udp(t + 1 + i, C, S, cport, port, ovpn_data())
        c.udp(t + 1.2 + i, S, C, port, cport, ovpn_data())


@pytest.mark.parametrize("hmac", [0, 20])
def test_healthy_udp_session_on_any_port(tmp_path, hmac):
    c = Cap()
    _udp_session(c, 0, port=51234, hmac=hmac)
    r = analyse(c.write(tmp_path / "ok.pcap"))
    t, = vpn_tunnels(r)
    assert (t["protocol"], t["server_port"], t["verdict"]) == ("openvpn", 51234, "healthy")
    s, = t["vpn"]["openvpn"]["sessions"]
    assert s["client_session_id"] == f"{SID_C:016x}" and s["server_session_id"] == f"{SID_S:016x}"
    assert s["tls"]["version"] == "TLS 1.3" and s["established"]
    assert t["vpn"]["openvpn"]["control_protection"] == ov.layout_name(hmac or ov.PLAIN)
    assert not [f for f in r.findings if f.severity != "info"]


def _ooo_session(c, n=8, size=100):
    """A session whose client control packets 2 .. n+1 come while packet 1 never does."""
    c.udp(0, C, S, 40000, 1194, ovpn_control(7, SID_C))
    c.udp(0.05, S, C, 1194, 40000, ovpn_control(8, SID_S, acks=[0], rsid=SID_C))
    for i in range(n):
        c.udp(0.2 + i / 100, C, S, 40000, 1194,
              ovpn_control(4, SID_C, pid=2 + i, payload=bytes(size)))


def _limits_detail(r):
    (f,) = [f for f in r.findings if f.code == "CAPTURE_LIMITS"]
    return f.detail


def test_openvpn_control_held_out_of_order_within_the_tcp_bounds(tmp_path):
    """Issue 20 / 18: the control channel's out-of-order hold has the TCP reassembly's bounds
    (Limits.tcp_max_ooo packets, tcp_max_ooo_bytes bytes); what they leave out is counted."""
    from pcapvpn.limits import Limits

    c = Cap()
    _ooo_session(c)
    p = c.write(tmp_path / "ooo.pcap")
    assert "CAPTURE_LIMITS" not in codes(analyse(p))  # the defaults hold 8 packets of 100 bytes
    r = analyse(p, limits=Limits(tcp_max_ooo=3))
    assert "5 OpenVPN control packets not held out of order (tcp_max_ooo = 3)" in \
        _limits_detail(r)
    r = analyse(p, limits=Limits(tcp_max_ooo_bytes=250))
    assert "6 OpenVPN control packets not held out of order (tcp_max_ooo_bytes = 250)" in \
        _limits_detail(r)


def test_openvpn_tls_stream_beyond_the_buffer_is_counted(tmp_path):
    """A TLS record of the control channel larger than Limits.tcp_max_buffer: the stream is cut
    (no handshake read from it) and the cut counted."""
    from pcapvpn.limits import Limits

    rec = tls_record(22, client_hello() + bytes(3000), 0x0301)
    c = Cap()
    c.udp(0, C, S, 40000, 1194, ovpn_control(7, SID_C))
    c.udp(0.05, S, C, 1194, 40000, ovpn_control(8, SID_S, acks=[0], rsid=SID_C))
    for i in range(3):
        c.udp(0.2 + i / 100, C, S, 40000, 1194,
              ovpn_control(4, SID_C, pid=1 + i, payload=rec[i * 1100:(i + 1) * 1100]))
    p = c.write(tmp_path / "buf.pcap")
    assert "CAPTURE_LIMITS" not in codes(analyse(p))
    r = analyse(p, limits=Limits(tcp_max_buffer=2000))
    assert "1 TLS streams cut (a record or handshake message beyond the buffer) " \
        "(tcp_max_buffer = 2,000)" in _limits_detail(r)


def test_no_response_then_pending(tmp_path):
    c = Cap()
    for dt in (0, 2, 6, 14):
        c.udp(dt, C, S, 40000, 1194, ovpn_crypt(7, SID_C, net_time=T0 + dt))
    p = c.write(tmp_path / "nr.pcap")
    r = analyse(p)
    assert codes(r) == ["OPENVPN_NO_RESPONSE"]
    f = r.findings[0]
    assert f.basis == "observed" and "tls-crypt" in f.detail and len(f.evidence.frames) == 4
    assert "2, 4, 8" in f.detail
    t, = vpn_tunnels(r)
    assert t["verdict"] == "failing" and t["stage_reached"] == "reachability"
    check_filters(p, r)
    # a single hard reset and the capture ends 3 s later: unknown, not failing
    c = Cap()
    c.udp(0, C, S, 40000, 1194, ovpn_control(7, SID_C))
    c.udp(3, C, "192.0.2.200", 1, 2, b"z")
    r = analyse(c.write(tmp_path / "pending.pcap"))
    assert codes(r) == []
    t, = vpn_tunnels(r)
    assert t["verdict"] == "unknown" and any("hard reset" in n for n in t["not_seen"])


@pytest.mark.parametrize("skew_days", [2, 3, 30, -400])
def test_diagnosis_survives_a_sender_clock_off_by_days(tmp_path, skew_days):
    """The +2 days / +3 days regressions of issue 13 §0: the tls-crypt no-response diagnosis
    stays, and the skew is an info note on the tunnel."""
    c = Cap()
    net = T0 + 86400 * skew_days
    for i, dt in enumerate((0, 2, 6, 14)):
        c.udp(dt, C, S, 40000, 1194, ovpn_crypt(7, SID_C, replay=i + 1, net_time=net))
    r = analyse(c.write(tmp_path / "skew.pcap"))
    assert codes(r) == ["OPENVPN_CLOCK_SKEW", "OPENVPN_NO_RESPONSE"]
    t, = vpn_tunnels(r)
    assert t["verdict"] == "failing" and t["primary_code"] == "OPENVPN_NO_RESPONSE"
    sk = next(f for f in r.findings if f.code == "OPENVPN_CLOCK_SKEW")
    assert sk.severity == "info" and not sk.failure and f"{abs(skew_days)}.0 days" in sk.title
    assert ("ahead of" if skew_days > 0 else "behind") in sk.title
    assert t["vpn"]["openvpn"]["clock_skew_s"]["client"] == pytest.approx(86400 * skew_days)


def test_small_skew_is_not_reported(tmp_path):
    c = Cap()
    _udp_session(c, 0, hmac=32)
    r = analyse(c.write(tmp_path / "ok.pcap"))
    assert "OPENVPN_CLOCK_SKEW" not in codes(r)


def _mid_session(c, crypt: bool):
    """A capture that starts after the hard resets: control packets, then data both ways."""
    for i in range(3):
        if crypt:
            c.udp(i, C, S, 40000, 1194, ovpn_crypt(4, SID_C, replay=20 + i, net_time=T0 - 50))
            c.udp(i + 0.1, S, C, 1194, 40000,
                  ovpn_crypt(5, SID_S, replay=30 + i, net_time=T0 - 49, body=20))
        else:
            # plain, with an ACK: the bytes after the session ID read as a plausible tls-crypt
            # replay ID / net time in one packet, never as one replay context over two
            c.udp(i, C, S, 40000, 1194,
                  ovpn_control(4, SID_C, pid=5 + i, acks=[0x00C0FFEE + 7 * i], rsid=SID_S,
                               payload=tls_record(23, b"x" * 40)))
            c.udp(i + 0.1, S, C, 1194, 40000,
                  ovpn_control(5, SID_S, acks=[5 + i], rsid=SID_C))
    for i in range(12):
        c.udp(4 + i, C, S, 40000, 1194, ovpn_data())
        c.udp(4.2 + i, S, C, 1194, 40000, ovpn_data())


@pytest.mark.parametrize("crypt", [True, False])
def test_mid_session_layout_confirmed_by_a_second_packet(tmp_path, crypt):
    c = Cap()
    _mid_session(c, crypt)
    r = analyse(c.write(tmp_path / "mid.pcap"))
    t, = vpn_tunnels(r)
    ovs = t["vpn"]["openvpn"]
    assert ovs["control_protection"] == ("tls-crypt" if crypt else "none")
    assert ovs["undecodable_packets"] == 0
    assert sum(s["client_control"]["packets"] for s in ovs["sessions"]) == 3
    assert t["verdict"] == "healthy"


def test_no_response_recovered_by_a_later_session(tmp_path):
    c = Cap()
    for dt in (0, 2, 6):
        c.udp(dt, C, S, 40000, 1194, ovpn_control(7, SID_C))
    _udp_session(c, 20, sid_c=SID_C + 1, cport=40001)
    r = analyse(c.write(tmp_path / "recover.pcap"))
    assert "OPENVPN_NO_RESPONSE" not in codes(r)
    assert vpn_tunnels(r)[0]["verdict"] == "healthy"


def test_stalled_after_client_certificate(tmp_path):
    """The lab's rejected-client-certificate pattern: TLS 1.2, the client's certificate flight
    retransmitted, the server silent."""
    c = Cap()
    c.udp(0, C, S, 40000, 1194, ovpn_control(7, SID_C))
    c.udp(0.05, S, C, 1194, 40000, ovpn_control(8, SID_S, acks=[0], rsid=SID_C))
    c.udp(0.1, C, S, 40000, 1194, ovpn_control(4, SID_C, pid=1, acks=[0], rsid=SID_S,
                                                payload=tls_record(22, client_hello(), 0x0301)))
    flight = server_hello() + certificate([make_cert("server")]) + hs(13, b"\x01\x01\x00\x00") \
        + hs(14, b"")
    c.udp(0.2, S, C, 1194, 40000, ovpn_control(4, SID_S, pid=1, acks=[1], rsid=SID_C,
                                                payload=tls_record(22, flight)))
    cflight = tls_record(22, certificate([make_cert("client1")]) + hs(16, bytes(66))
                         + hs(15, bytes(72))) + tls_record(20, b"\x01") + tls_record(22, bytes(40))
    for dt in (0.3, 2.3, 6.3, 14.3):
        c.udp(dt, C, S, 40000, 1194, ovpn_control(4, SID_C, pid=2, acks=[1], rsid=SID_S,
                                                  payload=cflight))
    p = c.write(tmp_path / "stall.pcap")
    r = analyse(p)
    assert codes(r) == ["OPENVPN_HANDSHAKE_STALLED"]
    f = r.findings[0]
    assert f.basis == "inferred" and "client's certificate" in f.title
    assert "3 retransmitted" in f.detail and "client flight" in f.detail
    t, = vpn_tunnels(r)
    assert t["verdict"] == "failing" and t["failed_stage"] == "authentication"
    check_filters(p, r)


@pytest.mark.parametrize("accepted", [False, True])
def test_tls13_client_flight_never_acknowledged(tmp_path, accepted):
    """TLS 1.3 (OpenVPN 2.6's default): the server's flight and the client's Certificate ..
    Finished are all protected records, so counting them said "TLS completed, refused after the
    handshake (auth-user-pass ...)".  The server never acknowledged the client's flight, which
    the client re-sent: the certificate was rejected.  When the server acknowledges it and sends
    more protected records (tickets), the handshake did complete."""
    c = Cap()
    c.udp(0, C, S, 40000, 1194, ovpn_control(7, SID_C))
    c.udp(0.05, S, C, 1194, 40000, ovpn_control(8, SID_S, acks=[0], rsid=SID_C))
    c.udp(0.1, C, S, 40000, 1194, ovpn_control(4, SID_C, pid=1, acks=[0], rsid=SID_S,
                                                payload=tls_record(22, client_hello(
                                                    versions=(0x0304,)), 0x0301)))
    sflight = tls_record(22, server_hello(0x0304)) + tls_record(20, b"\x01") + b"".join(
        tls_record(23, bytes(n)) for n in (40, 60, 900, 280, 70))
    c.udp(0.2, S, C, 1194, 40000, ovpn_control(4, SID_S, pid=1, acks=[1], rsid=SID_C,
                                                payload=sflight))
    cflight = tls_record(20, b"\x01") + b"".join(tls_record(23, bytes(n))
                                                  for n in (800, 280, 70))
    if accepted:
        c.udp(0.3, C, S, 40000, 1194, ovpn_control(4, SID_C, pid=2, acks=[1], rsid=SID_S,
                                                    payload=cflight))
        c.udp(0.35, S, C, 1194, 40000, ovpn_control(4, SID_S, pid=2, acks=[2], rsid=SID_C,
                                                     payload=tls_record(23, bytes(250))))
        c.udp(20, C, "192.0.2.200", 1, 2, b"z")
    else:
        for dt in (0.3, 2.3, 6.3, 14.3):
            c.udp(dt, C, S, 40000, 1194, ovpn_control(4, SID_C, pid=2, acks=[1], rsid=SID_S,
                                                      payload=cflight))
    r = analyse(c.write(tmp_path / "tls13.pcap"))
    assert codes(r) == ["OPENVPN_HANDSHAKE_STALLED"]
    f = r.findings[0]
    if accepted:
        assert "TLS handshake stage reached: complete" in f.detail
        assert "auth-user-pass" in f.detail and "never acknowledged" not in f.title
    else:
        assert "rejected the client's certificate flight: never acknowledged" in f.title
        assert "never packet ID 2" in f.detail and "retransmitted 3 time(s)" in f.detail
        assert "stage reached: client flight (TLS 1.3)" in f.detail
        assert "auth-user-pass" not in f.detail


def test_stalled_tls_crypt_and_alert(tmp_path):
    c = Cap()
    c.udp(0, C, S, 40000, 1194, ovpn_crypt(7, SID_C))
    c.udp(0.1, S, C, 1194, 40000, ovpn_crypt(8, SID_S))
    for dt in (0.2, 2.2, 6.2):
        c.udp(dt, C, S, 40000, 1194, ovpn_crypt(4, SID_C, replay=2))
    r = analyse(c.write(tmp_path / "stallcrypt.pcap"))
    assert codes(r) == ["OPENVPN_HANDSHAKE_STALLED"]
    assert "tls-crypt" in r.findings[0].detail
    # a fatal alert in the clear explains the stall: TLS_ALERT only
    c = Cap()
    c.udp(0, C, S, 40000, 1194, ovpn_control(7, SID_C))
    c.udp(0.05, S, C, 1194, 40000, ovpn_control(8, SID_S, acks=[0], rsid=SID_C))
    c.udp(0.1, C, S, 40000, 1194, ovpn_control(4, SID_C, pid=1, acks=[0], rsid=SID_S,
                                                payload=tls_record(22, client_hello(), 0x0301)))
    c.udp(0.2, S, C, 1194, 40000, ovpn_control(4, SID_S, pid=1, acks=[1], rsid=SID_C,
                                                payload=tls_record(21, b"\x02\x46")))
    c.udp(20, C, "192.0.2.200", 1, 2, b"z")
    r = analyse(c.write(tmp_path / "alert.pcap"))
    assert codes(r) == ["TLS_ALERT"] and "protocol_version" in r.findings[0].title


def test_retransmissions_degrade_a_session_that_comes_up(tmp_path):
    c = Cap()
    _udp_session(c, 0)
    # the client's packet 1 sent 6 more times before the server acknowledged it
    for i in range(6):
        c.udp(0.2 + 0.01 * (i + 1), C, S, 40000, 1194,
              ovpn_control(4, SID_C, pid=1, payload=tls_record(22, client_hello(), 0x0301)))
    r = analyse(c.write(tmp_path / "retx.pcap"))
    f, = [f for f in r.findings if f.code == "OPENVPN_HANDSHAKE_STALLED"]
    assert f.severity == "warning" and "6" in f.title
    assert vpn_tunnels(r)[0]["verdict"] == "degraded"


def test_data_one_way(tmp_path):
    c = Cap()
    _udp_session(c, 0, data=2)
    for i in range(30):
        c.udp(4 + i, C, S, 40000, 1194, ovpn_data())
    p = c.write(tmp_path / "oneway.pcap")
    r = analyse(p)
    assert codes(r) == ["VPN_DATA_ONE_WAY"]
    f = r.findings[0]
    assert "stopped sending" in f.detail and f.title.endswith("198.51.100.20:1194/udp only")
    check_filters(p, r)
    # data from one side for 5 s only: too short, unknown with the reason
    c = Cap()
    _udp_session(c, 0, data=0)
    for i in range(5):
        c.udp(1 + i, C, S, 40000, 1194, ovpn_data())
    r = analyse(c.write(tmp_path / "short.pcap"))
    assert codes(r) == []
    t, = vpn_tunnels(r)
    assert t["verdict"] == "unknown" and any("too short" in n for n in t["not_seen"])


# -- corpus: Zeek spicy-openvpn baselines ----------------------------------------------------------

ZEEK = {"openvpn.pcap": "analyzer.openvpn", "openvpn_udp_tls-auth.pcap": "analyzer.openvpnhmac",
        "openvpn_udp_hmac_256.pcap": "analyzer.openvpnhmac256",
        "openvpn_tcp_nontlsauth.pcap": "analyzer.openvpntcp",
        "openvpn-tcp-tls-auth.pcap": "analyzer.openvpntcphmac"}


def _zeek_bytes(s: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(s):
        if s.startswith("\\x", i) and re.match(r"[0-9a-fA-F]{2}", s[i + 2:i + 4]):
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            out.append(ord(s[i]))
            i += 1
    return bytes(out)


def _zeek_records(path):
    out = []
    for line in open(path, encoding="latin-1"):
        if not line.startswith("[opcode="):
            continue
        body = line.strip()[1:-1]
        op = int(re.match(r"opcode=(\d+)", body).group(1))
        kid = int(re.search(r"key_id=(\d+)", body).group(1))
        if op in (6, 9):
            out.append((op, kid, None, None, None))
            continue
        sid = _zeek_bytes(re.search(r"session_id=(.*?), packet_id_ack_array", body).group(1))
        acks = re.search(r"packet_id_ack_array=(\[[^\]]*\]|<uninitialized>)", body).group(1)
        acks = () if acks == "<uninitialized>" else tuple(int(x) for x in acks[1:-1].split(","))
        pid = re.search(r", packet_id=(\d+)", body)
        out.append((op, kid, int.from_bytes(sid, "big"), acks,
                    int(pid.group(1)) if pid else None))
    return sorted(out, key=repr)


class _Collect(NullSink):
    def __init__(self):
        self.msgs = []

    def vpn_udp(self, ref, ts, ipver, src, dst, sport, dport, proto, data, off, end):
        if proto == "openvpn":
            self.msgs.append((ts, bytes(data[off:end])))

    def vpn_tcp(self, ref, ts, ipver, src, dst, sport, dport, proto, msg, frames, fc):
        if proto == "openvpn":
            self.msgs.append((ts, msg))


def _our_records(path):
    sink = _Collect()
    src = open_source(str(path), 0)
    try:
        Decoder(sink).run(merge_frames([src]))
    finally:
        src.close()
    layout = None
    out = []
    for ts, m in sink.msgs:
        op, kid, _x = ov.parse_header(m, 0, len(m))
        if op in (6, 9):
            out.append((op, kid, None, None, None))
            continue
        if layout is None:
            layout = ov.detect_layout(m, 0, len(m))
        c = ov.parse_control(m, 0, len(m), layout)
        out.append((op, kid, c.session_id, c.acks, c.packet_id))
    return sorted(out, key=repr)


@pytest.mark.parametrize("trace", sorted(ZEEK))
def test_zeek_baseline_every_message(trace):
    root = corpus_dir() / "zeek-spicy-openvpn"
    ours = _our_records(root / "traces" / trace)
    zeek = _zeek_records(root / "baseline" / ZEEK[trace] / "openvpn.out")
    assert ours == zeek


@pytest.mark.parametrize("trace", sorted(ZEEK))
def test_zeek_traces_healthy(trace):
    root = corpus_dir() / "zeek-spicy-openvpn" / "traces"
    r = analyse(root / trace)
    ts = vpn_tunnels(r)
    # conn.log: one OpenVPN flow per client (two clients in the tls-auth traces)
    assert len(ts) == (2 if "tls-auth" in trace else 1)
    assert all(t["protocol"] == "openvpn" and t["verdict"] == "healthy" for t in ts), ts
    assert not [f for f in r.findings if f.severity in ("critical", "error", "warning")]


# -- the lab's OpenVPN scenarios (captures/lab/openvpn_*/expected.json) --------------------------

LAB = REPO / "captures" / "lab"
SCENARIOS = sorted(p.parent.name for p in LAB.glob("openvpn_*/expected.json"))


@pytest.mark.parametrize("name", SCENARIOS)
def test_lab_openvpn(name):
    import json

    exp = json.loads((LAB / name / "expected.json").read_text())
    for cap in exp["captures"]:
        r = analyse(LAB / name / cap["file"])
        got = {f.code: f for f in r.findings}
        assert r.report.capture.decode_errors == 0
        for want in exp["expected_findings"]["keyless"]:
            assert want["code"] in got, (name, sorted(got))
            assert got[want["code"]].basis == want["basis"]
        assert not set(got) & set(exp["forbidden_findings"]), sorted(got)
        t, = vpn_tunnels(r)
        if exp["fault"] == "none":
            assert t["verdict"] == "healthy", t
            assert not [f for f in r.findings if f.severity in ("critical", "error", "warning")]
        else:
            assert t["verdict"] == "failing"


def test_one_direction_captured_is_not_no_response(tmp_path):
    """Only the client's packets are in the capture: its data channel packets after the hard
    reset need keys from the TLS handshake with the server, so the server answered.  No
    OPENVPN_NO_RESPONSE; the tunnel is unknown, not failing."""
    c = Cap()
    c.udp(0, C, S, 40000, 1194, ovpn_control(7, SID_C))
    c.udp(0.1, C, S, 40000, 1194, ovpn_control(5, SID_C, acks=[0], rsid=SID_S))
    for i in range(20):
        c.udp(1 + i, C, S, 40000, 1194, ovpn_data())
    r = analyse(c.write(tmp_path / "onedir.pcap"))
    assert "OPENVPN_NO_RESPONSE" not in codes(r)
    t, = vpn_tunnels(r)
    assert t["verdict"] == "unknown"


@pytest.mark.parametrize("hmac", [0, 20])
def test_mirror_copies_are_not_retransmissions(tmp_path, hmac):
    """Every packet captured twice 20 µs apart (a mirror of both ways of a port): the copies of
    the control packets and resets are not retransmissions, the session stays healthy (it was
    degraded: OPENVPN_HANDSHAKE_STALLED); a packet ID sent again a second later still is one."""
    c = Cap()
    _udp_session(c, 0, hmac=hmac)
    c.frames += [(ts + 0.00002, data) for ts, data in c.frames]
    r = analyse(c.write(tmp_path / "dup.pcap"))
    assert codes(r) == []
    t, = vpn_tunnels(r)
    assert t["verdict"] == "healthy"
    s = t["vpn"]["openvpn"]["sessions"][0]
    assert s["client_resets"] == 1 and s["server_resets"] == 1, s
    assert s["client_control"]["retransmissions"] == 0
    c = Cap()
    _udp_session(c, 0, hmac=hmac)
    c.udp(1.3, C, S, 40000, 1194,
          ovpn_control(4, SID_C, pid=1, payload=tls_record(22, client_hello(), 0x0301),
                       hmac=hmac))
    r = analyse(c.write(tmp_path / "retx.pcap"))
    t, = vpn_tunnels(r)
    assert t["vpn"]["openvpn"]["sessions"][0]["client_control"]["retransmissions"] == 1


@pytest.mark.parametrize("snap", [96, 128])
def test_snaplen_cut_openvpn_over_tcp_keeps_its_session(tmp_path, snap):
    """The lab's OpenVPN over TCP 443 with tls-crypt, captured with a snapshot length of 96 /
    128 bytes: the control packets keep their opcode and session ID, and where a segment
    carried a second packet whose Length was cut, the framing is found again at the next
    segment (no decode error).  Before, the stream stopped at the first cut segment: unknown at
    128 bytes, no tunnel at all at 96."""
    from synth import snap_copy

    from pcapvpn.analysis import run

    src = REPO / "captures" / "lab" / "openvpn_tcp_tlscrypt_healthy" / \
        "openvpn_tcp_tlscrypt_healthy.pcap"
    whole = run([str(src)]).report
    cut = run([str(snap_copy(src, tmp_path / "cut.pcap", snap))]).report
    assert cut.capture.counts.truncated_frames > 0 and cut.capture.decode_errors == 0
    def verdicts(report):
        return [(t["id"], t["verdict"], t["stage_reached"]) for t in report.tunnels]

    assert verdicts(cut) == verdicts(whole) and verdicts(cut)[0][1] == "healthy"


def test_openvpn_over_tcp_seen_from_the_server_side_only(tmp_path):
    """A capture that holds only the server's direction of OpenVPN over TCP 443 (asymmetric
    routing, a filter on the server's address): its first packet is the server's hard reset,
    not TLS.  It is an OpenVPN tunnel whose client is not visible (unknown), as the client's
    direction alone is; before, the stream was taken for something other than TLS and the
    capture showed no tunnel at all."""
    from scapy.layers.inet import IP
    from scapy.utils import rdpcap, wrpcap

    from pcapvpn.analysis import run

    src = REPO / "captures" / "lab" / "openvpn_tcp_tlscrypt_healthy" / \
        "openvpn_tcp_tlscrypt_healthy.pcap"
    pkts = rdpcap(str(src))
    for side, want in (("198.51.100.2", "nothing from the client"),
                       ("192.0.2.2", "nothing from the server")):
        path = tmp_path / f"{side}.pcap"
        wrpcap(str(path), [p for p in pkts if IP in p and p[IP].src == side])
        t, = run([str(path)]).report.tunnels
        assert (t["id"], t["verdict"]) == ("192.0.2.2<->198.51.100.2:443/tcp", "unknown")
        assert any(want in str(n) for n in t["not_seen"])
    # the server's hard reset opens a stream only read as the server's
    data = bytes(next(p for p in pkts if IP in p and p[IP].src == "198.51.100.2"
                      and len(bytes(p[IP].payload.payload)) > 16)[IP].payload.payload)
    assert ov.tcp_stream_start(data, 0, len(data), server=True)
    assert not ov.tcp_stream_start(data, 0, len(data))
