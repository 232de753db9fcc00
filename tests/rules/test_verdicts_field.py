"""Verdicts on what captures from other implementations and other capture points look like
(the hold-out the field sends us): pluto's silent IKEv1 PSK mismatch, vendors that answer MM5
with a cleartext PAYLOAD_MALFORMED, captures that start mid-session (no negotiation to pair
the ESP SAs by, a remote-access client gone after its ESP worked)."""

from __future__ import annotations

import struct

import pytest

from synth import (esp_frame, eth, ike_encrypted, ike_header, ike_sa_init, ipv4, udp,
                   v1_message)
from test_verdicts import T0, A, B, ISPI, RSPI, ZERO, Cap, by_code, ikev2_up, the

IB = bytes.fromhex("b2b2b2b2b2b2b2b2")
RB = bytes.fromhex("c3c3c3c3c3c3c3c3")


def _mm_to_5(c, t=0.0):
    """Main Mode 1-4 answered on UDP 500, MM5 sent."""
    for step, (src, dst) in enumerate(((A, B), (B, A)) * 2 + ((A, B),), 1):
        c.ike(t + step * 0.01, src, dst, v1_message(IB, ZERO if step == 1 else RB, 2, 0, step,
                                                    encrypted=step >= 5))


def _v1_notify(ntype: int, msgid: int = 0) -> bytes:
    """A cleartext ISAKMP Informational carrying one Notification payload (RFC 2408 §3.14)."""
    body = struct.pack(">BBHIBBH", 0, 0, 12, 1, 1, 0, ntype)
    return ike_header(IB, RB, 11, 5, 0, msgid, body, version=0x10)


def test_ikev1_psk_mismatch_both_sides_retransmit_is_authentication(tmp_path):
    """pluto sends nothing when it cannot read MM5: the initiator re-sends MM5 and the responder
    MM4, on the ports that carried MM1-MM4.  That is the PSK mismatch, not an unreachable
    peer (lab: libreswan_ikev1_wrong_psk)."""
    c = Cap()
    _mm_to_5(c)
    for k, t in enumerate((0.5, 1.0, 2.0, 4.0, 8.0)):
        c.ike(t, A, B, v1_message(IB, RB, 2, 0, 5, encrypted=True))
        c.ike(t + 0.002, B, A, v1_message(IB, RB, 2, 0, 4))
    res = c.analyse(tmp_path)
    v = the(res)
    assert (v.verdict, v.failed_stage, v.primary_code) == \
        ("failing", "authentication", "IKE_AUTH_FAILED"), [f.code for f in res.findings]
    assert "IKE_NO_RESPONSE" not in {f.code for f in res.findings}
    f = by_code(res, "IKE_AUTH_FAILED")
    frames = [r.frame for r in f.evidence.frames]
    assert frames == sorted(frames)


def test_mm5_unanswered_by_a_silent_peer_stays_reachability(tmp_path):
    """The same MM5 retransmissions without a word from the responder after MM4: the request
    may be lost on the way; it stays IKE_NO_RESPONSE, and the detail no longer claims the peer
    sent nothing (it sent MM2 and MM4)."""
    c = Cap()
    _mm_to_5(c)
    for t in (0.5, 1.0, 2.0, 4.0, 8.0):
        c.ike(t, A, B, v1_message(IB, RB, 2, 0, 5, encrypted=True))
    res = c.analyse(tmp_path)
    f = by_code(res, "IKE_NO_RESPONSE")
    assert "sent nothing at all" not in f.detail


def test_mm5_answered_by_cleartext_payload_malformed_is_authentication(tmp_path):
    """A responder that decrypts MM5 with the wrong key reads garbage and says
    PAYLOAD_MALFORMED (16) in the clear: authentication failed, not a negotiation error."""
    c = Cap()
    _mm_to_5(c)
    c.ike(0.06, B, A, _v1_notify(16))
    for t in (2.0, 4.0):
        c.ike(t, A, B, v1_message(IB, RB, 2, 0, 5, encrypted=True))
    res = c.analyse(tmp_path)
    v = the(res)
    codes = {f.code for f in res.findings}
    assert (v.verdict, v.failed_stage, v.primary_code) == \
        ("failing", "authentication", "IKE_AUTH_FAILED"), codes
    assert "IKE_ERROR_NOTIFY" not in codes
    assert "PAYLOAD-MALFORMED" in by_code(res, "IKE_AUTH_FAILED").detail


def test_aggressive_mode_invalid_hash_is_authentication_only(tmp_path):
    """libreswan's initiator that cannot verify HASH_R says INVALID_HASH_INFORMATION (23):
    one IKE_AUTH_FAILED, no IKE_ERROR_NOTIFY at negotiation in front of it."""
    c = Cap()
    c.ike(0, A, B, v1_message(IB, ZERO, 4, 0, 1, encrypted=True))
    c.ike(0.01, B, A, v1_message(IB, RB, 4, 0, 2, encrypted=True))
    c.ike(0.02, A, B, _v1_notify(23))
    res = c.analyse(tmp_path)
    codes = [f.code for f in res.findings]
    assert "IKE_ERROR_NOTIFY" not in codes
    v = the(res)
    assert (v.failed_stage, v.primary_code) == ("authentication", "IKE_AUTH_FAILED"), codes


def test_mid_session_unequal_sa_counts_are_not_one_way(tmp_path):
    """A capture that starts mid-session: A -> B on two SAs, B -> A on one, all running the
    whole time and no negotiation to pair them by.  The direction as a whole answers."""
    c = Cap()
    for spi in (0xA1, 0xA2):
        c.seq[spi] = 5000
    c.seq[0xB1] = 7000
    c.flow(A, B, 0xA1, 0, 30, rate=0.5)
    c.flow(A, B, 0xA2, 0.5, 30.5, rate=0.5)
    c.flow(B, A, 0xB1, 0.2, 30.2)
    res = c.analyse(tmp_path)
    assert "ESP_ONE_WAY" not in {f.code for f in res.findings}
    assert the(res).verdict != "failing"


def test_mid_session_client_gone_after_esp_in_udp_worked(tmp_path):
    """A capture that starts after IKE_AUTH (lab: ikev2_ra_client_gone cut at frame 7): ESP in
    UDP both ways, then the gateway's DELETE to the client's NAT port is never answered.  The
    client left; the peer's ESP on those very ports says 4500 was not blocked."""
    c = Cap()
    for k in range(10):
        c.frames.append((k * 0.2, esp_frame(A, B, 0xA1, 100 + k, udp_ports=(43929, 4500))))
        c.frames.append((k * 0.2 + 0.01, esp_frame(B, A, 0xB1, 100 + k, udp_ports=(4500, 43929))))
    for t in (8, 10, 13, 17.5):
        c.ike(t, B, A, ike_encrypted(ISPI, RSPI, 37, 0, 42, False, False), 4500, 43929)
    res = c.analyse(tmp_path)
    f = by_code(res, "IKE_NO_RESPONSE")
    assert f.severity == "info" and "peer has gone" in f.detail
    assert the(res).verdict == "healthy", [(f.code, f.severity) for f in res.findings]


def test_mm5_moved_to_4500_and_mm4_resent_on_500_is_nat_t_blocked(tmp_path):
    """The same two-sided retransmission, but MM5 went to UDP 4500 (NAT detected) and the
    responder kept re-sending MM4 on 500, never a word on 4500: MM5 did not arrive
    (lab: libreswan_ikev1_nat_4500_blocked).  Not a PSK mismatch."""
    c = Cap()
    for step, (src, dst) in enumerate(((A, B), (B, A)) * 2, 1):
        c.ike(step * 0.01, src, dst, v1_message(IB, ZERO if step == 1 else RB, 2, 0, step))
    for t in (0.05, 0.5, 1.0, 2.0, 4.0, 8.0):
        c.ike(t, A, B, v1_message(IB, RB, 2, 0, 5, encrypted=True), 4500, 4500)
        if t > 0.05:
            c.ike(t + 0.004, B, A, v1_message(IB, RB, 2, 0, 4))
    res = c.analyse(tmp_path)
    v = the(res)
    codes = {f.code for f in res.findings}
    assert (v.verdict, v.failed_stage, v.primary_code) == \
        ("failing", "nat_traversal", "NAT_T_BLOCKED"), codes
    assert "IKE_AUTH_FAILED" not in codes


def test_an_end_that_moves_keeps_its_tunnel(tmp_path):
    """MOBIKE (RFC 4555) or a NAT that changed the public address: the IKE SA continues from
    A2 (same SPIs), and so does the ESP.  One tunnel, its ESP paired across the move, healthy
    (lab: ikev2_mobike_roam)."""
    from test_verdicts import ikev2_up
    a2 = "192.0.2.77"
    c = Cap()
    ikev2_up(c)
    c.flow(A, B, 0xA1, 1, 10)
    c.flow(B, A, 0xB1, 1.1, 10.1)
    c.ike(11, a2, B, ike_encrypted(ISPI, RSPI, 37, 2, 41, False, True))
    c.ike(11.01, B, a2, ike_encrypted(ISPI, RSPI, 37, 2, 0, True, False))
    c.flow(a2, B, 0xA2, 12, 30)
    c.flow(B, a2, 0xB2, 12.1, 30.1)
    res = c.analyse(tmp_path)
    v = the(res)
    assert v.verdict == "healthy", [(f.code, f.severity) for f in res.findings]
    t, = res.state.tunnels
    assert t.side(bytes([192, 0, 2, 77])) == t.a and len(t.esp_sas) == 4
    assert all(x is not None and y is not None for x, y in t.pairs)


def test_private_exchange_opening_an_sa_is_pending_not_mid_session(tmp_path):
    """Microsoft AuthIP's Main Mode is IKEv1 exchange type 243 (private use): a first message
    with a zero responder cookie starts an SA, and nothing answered it yet (public capture:
    libreswan testing/pluto/replay-authip-01)."""
    from synth import ike_header
    c = Cap()
    c.ike(0, A, B, ike_header(IB, ZERO, 0, 243, 0, 0, b"", version=0x10))
    res = c.analyse(tmp_path)
    sa, = res.state.ike_sas
    x, = sa.exchanges
    from pcapvpn.rules.common import PENDING, exchange_status
    assert not sa.mid_session
    assert exchange_status(type("C", (), {"now": 100.0, "th": res.state.thresholds})(), x) \
        == PENDING


def test_copies_are_not_called_duplicates_without_a_clock(tmp_path):
    """A capture whose every timestamp is 0 (tcpdump tests/isakmp4500.pcap): a resent Quick
    Mode message cannot be told from a mirror's copy."""
    c = Cap()
    for step, (src, dst) in enumerate(((A, B), (B, A)) * 3, 1):
        c.ike(0, src, dst, v1_message(IB, ZERO if step == 1 else RB, 2, 0, step,
                                      encrypted=step >= 5))
    for _ in range(3):
        c.ike(0, B, A, v1_message(IB, RB, 32, 0x1234, 2, encrypted=True))
    res = c.analyse(tmp_path, base=None)
    assert "CAPTURE_DUPLICATES" not in {f.code for f in res.findings}


def test_a_delete_followed_by_more_exchanges_deleted_a_child_sa(tmp_path):
    """IKEv2 keyless: an INFORMATIONAL whose first payload is a Delete, then the IKE SA goes on
    (liveness checks): it deleted a child SA, not the IKE SA (arkime tests/pcap/IKEv2.pcap)."""
    from pcapvpn.rules.common import deleted_ts
    from test_verdicts import ikev2_up
    c = Cap()
    ikev2_up(c)
    c.ike(5, A, B, ike_encrypted(ISPI, RSPI, 37, 2, 42, False, True))
    c.ike(5.01, B, A, ike_encrypted(ISPI, RSPI, 37, 2, 0, True, False))
    for k, t in enumerate((10, 15, 20)):
        c.ike(t, A, B, ike_encrypted(ISPI, RSPI, 37, 3 + k, 0, False, True))
        c.ike(t + 0.01, B, A, ike_encrypted(ISPI, RSPI, 37, 3 + k, 0, True, False))
    res = c.analyse(tmp_path)
    sa, = res.state.ike_sas
    assert deleted_ts(sa) is None
    c.ike(25, A, B, ike_encrypted(ISPI, RSPI, 37, 6, 42, False, True))
    c.ike(25.01, B, A, ike_encrypted(ISPI, RSPI, 37, 6, 0, True, False))
    res = c.analyse(tmp_path, name="again.pcap")
    sa, = res.state.ike_sas
    assert deleted_ts(sa) == pytest.approx(25 + T0)


def test_esp_negotiated_in_the_capture_starting_at_seq_2_was_not_already_running(tmp_path):
    """A FortiGate's SAs start at sequence number 2 right after the Quick Mode that made them
    (arkime tests/pcap/IKEv1.pcap): their first packet is missing, they were not running
    before the capture."""
    from test_verdicts import ikev2_up
    c = Cap()
    ikev2_up(c)
    c.seq[0xA1] = 1
    c.seq[0xB1] = 1
    c.flow(A, B, 0xA1, 1, 20)
    c.flow(B, A, 0xB1, 1.1, 20.1)
    res = c.analyse(tmp_path)
    notes = " ".join(str(n) for n in the(res).not_seen)
    assert "already running" not in notes and "above 1" in notes


def test_public_palo_alto_fortigate_captures():
    """captures/public/arkime (Palo Alto <-> FortiGate, IPv6): one side's ignored initiation
    while the peer's own succeeded is degraded; the FortiGate's SAs negotiated in the capture
    start at sequence 2 (not "already running"); the IKEv2 IKE SA that deleted a child SA and
    lived on is the survivor of the simultaneous initiation; both vendors are named."""
    from conftest import REPO
    from pcapvpn.analysis import run

    base = REPO / "captures" / "public" / "arkime"
    res = run([str(base / "IKEv1.pcap")])
    v = the(res)
    assert (v.verdict, v.primary_code) == ("degraded", "IKE_NO_RESPONSE")
    notes = " ".join(str(n) for n in v.not_seen)
    assert "already running" not in notes and "above 1" in notes
    vendors = {str(x) for sa in res.report.to_dict()["ike_sas"] for m in sa["messages"]
               for x in m.get("vendor_ids") or ()}
    assert any("FortiGate" in x for x in vendors) and any("Palo Alto" in x for x in vendors)
    res = run([str(base / "IKEv2.pcap")])
    v = the(res)
    assert (v.verdict, v.primary_code) == ("degraded", "IKE_SIMULTANEOUS_INIT")
    f = by_code(res, "IKE_SIMULTANEOUS_INIT")
    assert "e5bc67550fd4d3ea:b51cdb5af0efa3ac (initiated by 2003:51:6012::2) survived" in f.detail


def test_public_redirect_capture():
    """captures/public/scapy: 10.5.2.52 redirects the client (RFC 5685), whose new attempt at
    10.5.2.53 is refused with NO_PROPOSAL_CHOSEN. Nothing works: both tunnels fail, the
    redirecting one with the redirect as its primary (it was "degraded" before)."""
    from conftest import REPO
    from pcapvpn.analysis import run

    res = run([str(REPO / "captures" / "public" / "scapy" / "ikev2_notify_redirect.pcap")])
    tunnels = {t["id"]: t for t in res.report.tunnels}
    src, dst = tunnels["10.5.2.60<->10.5.2.52"], tunnels["10.5.2.60<->10.5.2.53"]
    assert (dst["verdict"], dst["failed_stage"], dst["primary_code"]) == \
        ("failing", "negotiation", "IKE_NO_PROPOSAL_CHOSEN")
    assert (src["verdict"], src["failed_stage"], src["primary_code"]) == \
        ("failing", "negotiation", "IKE_REDIRECT")


def test_one_lost_ike_sa_init_among_answered_ones_is_not_reachability(tmp_path):
    """nDPI's remote-access capture (vendor review): one IKE_SA_INIT never answered, while the
    same gateway answers the client's IKE_SA_INITs before and after it; the last attempt stops
    after IKE_SA_INIT. The responder is reachable: the lost request is recovered (a warning),
    never the failing reachability primary."""
    c = Cap()
    ikev2_up(c, 0.0)
    c.flow(A, B, 0x1001, 0.1, 20.0)
    c.flow(B, A, 0x2001, 0.1, 20.0)
    lost = bytes.fromhex("d1" * 8)
    for t in (100.0, 100.5, 101.5, 103.5):  # retransmitted, never answered
        c.ike(t, A, B, ike_sa_init(lost, ZERO, False))
    late_i, late_r = bytes.fromhex("e2" * 8), bytes.fromhex("f3" * 8)
    c.ike(200.0, A, B, ike_sa_init(late_i, ZERO, False))
    c.ike(200.01, B, A, ike_sa_init(late_i, late_r, True))
    res = c.analyse(tmp_path)
    v = the(res)
    f = by_code(res, "IKE_NO_RESPONSE")
    assert v.verdict == "degraded" and f.severity == "warning"
    assert f.recovered and "later opening request" in f.detail


def _mm_qm(c, qm2_after_qm3, t=0.0):
    """Main Mode 1-6, then Quick Mode QM1-QM3 (sizes differ: the tracker tells the steps by
    order and copies by their bytes); ``qm2_after_qm3`` times at which the responder sends QM2
    again, each answered by QM3 again."""
    for step, (src, dst) in enumerate(((A, B), (B, A)) * 3, 1):
        c.ike(t + step * 0.01, src, dst, v1_message(IB, ZERO if step == 1 else RB, 2, 0, step,
                                                    encrypted=step >= 5))
    qm1 = v1_message(IB, RB, 32, 0x1234, 1, encrypted=True, size=200)
    qm2 = v1_message(IB, RB, 32, 0x1234, 2, encrypted=True, size=180)
    qm3 = v1_message(IB, RB, 32, 0x1234, 3, encrypted=True, size=52)
    c.ike(t + 0.1, A, B, qm1)
    c.ike(t + 0.11, B, A, qm2)
    c.ike(t + 0.12, A, B, qm3)
    for at in qm2_after_qm3:
        c.ike(t + at, B, A, qm2)
        c.ike(t + at + 0.01, A, B, qm3)


def test_ikev1_responder_repeats_qm2_after_qm3_is_child_sa(tmp_path):
    """tcpdump's isakmp4500.pcap (vendor review): the Quick Mode responder sends QM2 again and
    again after the initiator's QM3, and only the initiator sends ESP. QM3 never completes the
    exchange on the responder: the child SA failed, told by the frames' order."""
    c = Cap()
    _mm_qm(c, (2.0, 6.0, 14.0))
    c.flow(A, B, 0x1001, 0.2, 30.0)
    res = c.analyse(tmp_path)
    v = the(res)
    assert (v.verdict, v.failed_stage, v.primary_code) == ("failing", "child_sa",
                                                           "CHILD_SA_FAILED")
    f = by_code(res, "CHILD_SA_FAILED")
    assert "repeats QM2 after QM3" in f.title and "sent QM2 again 3 time(s)" in f.detail


def test_ikev1_qm2_crossing_qm3_once_is_not_a_failure(tmp_path):
    """One QM2 re-send that crossed QM3 on the way, then ESP both ways: no child SA failure
    (the retransmission itself degrades, as any does)."""
    c = Cap()
    _mm_qm(c, (0.5,))
    c.flow(A, B, 0x1001, 1.0, 30.0)
    c.flow(B, A, 0x2001, 1.0, 30.0)
    res = c.analyse(tmp_path)
    assert not [f for f in res.findings if f.code == "CHILD_SA_FAILED"]
    assert (the(res).verdict, the(res).primary_code) == ("degraded", "IKE_RETRANSMISSION")


def test_public_zero_timestamps_qm3_not_taken():
    """captures/public/tcpdump/isakmp4500.pcap: every timestamp is zero, so absence proves
    nothing, but the frames' order does: the responder repeats QM2 after QM3 (failing at
    child_sa; it was "unknown")."""
    from conftest import REPO
    from pcapvpn.analysis import run

    v = the(run([str(REPO / "captures" / "public" / "tcpdump" / "isakmp4500.pcap")]))
    assert (v.verdict, v.failed_stage, v.primary_code) == ("failing", "child_sa",
                                                           "CHILD_SA_FAILED")


def _v1_dpd_pairs(c, n, answered, t0=0.0, ports=(500, 500)):
    """IKEv1 DPD seen mid-session (RFC 3706 §5): every 10 s an encrypted Informational from A
    (R-U-THERE) and, for the first ``answered`` of them, one from B (R-U-THERE-ACK), each an
    exchange of its own (its own Message ID)."""
    for k in range(n):
        c.ike(t0 + k * 10, A, B, v1_message(IB, RB, 5, 0x1000 + k, 0, encrypted=True, size=80),
              *ports)
        if k < answered:
            c.ike(t0 + k * 10 + 0.01, B, A,
                  v1_message(IB, RB, 5, 0x2000 + k, 0, encrypted=True, size=80),
                  ports[1], ports[0])


def test_ikev1_mid_session_dpd_answered_is_an_idle_working_tunnel(tmp_path):
    """A capture of IKE only (the usual 'udp port 500 or 4500' or a firewall's isakmp capture)
    on an idle IKEv1 tunnel: DPD both ways under the ISAKMP SA.  Both peers protect messages
    with the SA, so it works on both sides: healthy with the absence of ESP reported, as for an
    IKEv2 tunnel seen the same way (it was unknown, the informational pairs being one-message
    exchanges)."""
    c = Cap()
    _v1_dpd_pairs(c, 10, answered=10)
    res = c.analyse(tmp_path)
    assert the(res).verdict == "healthy", [(f.code, f.severity) for f in res.findings]
    assert "ESP_NO_TRAFFIC" in {f.code for f in res.findings}
    # the peer stops answering: the same SA worked, then DPD failed
    c = Cap()
    _v1_dpd_pairs(c, 10, answered=3)
    res = c.analyse(tmp_path)
    v = the(res)
    assert (v.verdict, v.primary_code) == ("failing", "DPD_TIMEOUT")


def test_ikev1_mid_session_one_side_only_is_not_working(tmp_path):
    """Only A's encrypted messages: nothing shows the SA alive at B (unknown, as before)."""
    c = Cap()
    _v1_dpd_pairs(c, 3, answered=0)
    res = c.analyse(tmp_path)
    assert "ESP_NO_TRAFFIC" not in {f.code for f in res.findings}
    assert the(res).verdict != "healthy"


# -- a peer that stops answering while the tunnel is up -------------------------------------------

SPI_AB, SPI_BA = 0xC0000001, 0xC0000002
_BACKOFF = (0, 4, 11.2, 24.2, 47.6)  # strongSwan's retransmissions (4 s x 1.8^n)


def _up_with_traffic(c, b_until):
    """An IKEv2 tunnel up at +0 s, ESP both ways once a second; B's ESP stops at ``b_until``
    while A's goes on to +110 s."""
    ikev2_up(c)
    c.flow(A, B, SPI_AB, 1.0, 110.0)
    c.flow(B, A, SPI_BA, 1.01, b_until)


@pytest.mark.parametrize("what", ["create_child_sa", "liveness"])
def test_peer_gone_while_up_is_stability_not_one_way_esp(tmp_path, what):
    """The peer vanishes at +57 s (crash, reboot, path down): its ESP stops and it answers none
    of A's IKE requests (a rekey's CREATE_CHILD_SA, or DPD).  The tunnel did not stay up: the
    unanswered request is the primary finding at stability, and the one-way ESP it made is its
    consequence, also at stability (it was ESP_ONE_WAY at dataplane, or IKE_NO_RESPONSE at
    reachability, as if the peer had never been reached)."""
    c = Cap()
    _up_with_traffic(c, 57.0)
    for dt in _BACKOFF:
        if what == "liveness":
            c.ike(67.0 + dt, A, B, ike_encrypted(ISPI, RSPI, 37, 2, 0, False, True, 16))
        else:
            c.ike(60.0 + dt, A, B, ike_encrypted(ISPI, RSPI, 36, 2, 33, False, True, 300))
    res = c.analyse(tmp_path)
    v = the(res)
    code = "DPD_TIMEOUT" if what == "liveness" else "IKE_NO_RESPONSE"
    assert (v.verdict, v.failed_stage, v.primary_code) == ("failing", "stability", code), \
        [(f.code, f.stage) for f in res.findings]
    one_way = by_code(res, "ESP_ONE_WAY")
    assert one_way.stage == "stability"
    assert f"A consequence of {code}" in one_way.detail
    if what != "liveness":
        f = by_code(res, "IKE_NO_RESPONSE")
        assert f.stage == "stability"
        assert "stopped answering while the tunnel was up" in f.detail


def test_rekey_unanswered_while_esp_flows_is_degraded_stability(tmp_path):
    """The peer's IKE stops answering a CREATE_CHILD_SA while ESP still flows both ways (the
    old child SA until its hard lifetime): degraded, at stability, recovered by the ESP."""
    c = Cap()
    _up_with_traffic(c, 110.0)
    for dt in _BACKOFF:
        c.ike(60.0 + dt, A, B, ike_encrypted(ISPI, RSPI, 36, 2, 33, False, True, 300))
    res = c.analyse(tmp_path)
    v = the(res)
    assert (v.verdict, v.failed_stage, v.primary_code) == \
        ("degraded", "stability", "IKE_NO_RESPONSE"), [(f.code, f.stage) for f in res.findings]
    assert "ESP_ONE_WAY" not in {f.code for f in res.findings}


def test_esp_stopped_while_peer_still_talks_ike_stays_dataplane(tmp_path):
    """B's ESP stops but B answers A's liveness checks: its IKE is alive, only its ESP is not:
    ESP_ONE_WAY stays at dataplane and is the primary finding."""
    c = Cap()
    _up_with_traffic(c, 57.0)
    for k, t in enumerate((70.0, 80.0, 90.0)):
        c.ike(t, A, B, ike_encrypted(ISPI, RSPI, 37, 2 + k, 0, False, True, 16))
        c.ike(t + 0.01, B, A, ike_encrypted(ISPI, RSPI, 37, 2 + k, 0, True, False, 16))
    res = c.analyse(tmp_path)
    v = the(res)
    assert (v.verdict, v.failed_stage, v.primary_code) == ("failing", "dataplane", "ESP_ONE_WAY")
    assert by_code(res, "ESP_ONE_WAY").stage == "dataplane"


def test_first_request_of_a_new_sa_unanswered_stays_reachability(tmp_path):
    """An IKE_SA_INIT never answered is reachability, as before (the stage moves only for the
    requests of an IKE SA that worked)."""
    c = Cap()
    for dt in _BACKOFF:
        c.ike(dt, A, B, ike_sa_init(ISPI, ZERO, False))
    res = c.analyse(tmp_path)
    assert by_code(res, "IKE_NO_RESPONSE").stage == "reachability"


def _v1_up_then_rekey(c, b_until, rekey_at=60.0):
    """IKEv1 phase 1 and a Quick Mode completed, ESP both ways once a second (B's until
    ``b_until``), then A's phase-2 rekey (a new Quick Mode) sent with strongSwan's backoff and
    never answered."""
    _mm_qm(c, ())
    c.flow(A, B, 0x1001, 1.0, 110.0)
    c.flow(B, A, 0x2001, 1.01, b_until)
    for dt in _BACKOFF:
        c.ike(rekey_at + dt, A, B, v1_message(IB, RB, 32, 0x5678, 1, encrypted=True, size=200))


def test_ikev1_rekey_to_a_peer_gone_is_stability(tmp_path):
    """The IKEv1 twin of the CREATE_CHILD_SA case: the peer's ESP stops at +57 s and it answers
    none of A's rekey Quick Mode.  The peer went away: IKE_NO_RESPONSE at stability, primary, the
    one-way ESP its consequence; no CHILD_SA_FAILED blaming the phase-2 proposal (it was failing at
    reachability, with 'the responder drops QM1 without a word')."""
    c = Cap()
    _v1_up_then_rekey(c, 57.0)
    res = c.analyse(tmp_path)
    v = the(res)
    assert (v.verdict, v.failed_stage, v.primary_code) == \
        ("failing", "stability", "IKE_NO_RESPONSE"), [(f.code, f.stage) for f in res.findings]
    assert "CHILD_SA_FAILED" not in {f.code for f in res.findings}
    f = by_code(res, "IKE_NO_RESPONSE")
    assert "Quick Mode" in f.title and "stopped answering while the tunnel was up" in f.detail
    assert "A consequence of IKE_NO_RESPONSE" in by_code(res, "ESP_ONE_WAY").detail


def test_ikev1_second_quick_mode_unanswered_while_peer_esp_flows_keeps_child_sa(tmp_path):
    """The peer's ESP goes on while a new Quick Mode gets no answer (a second pair of subnets
    the peer drops without a word, or a lost rekey): the peer is alive, the child SA finding
    stays; the unanswered request is a stability warning, not reachability."""
    c = Cap()
    _v1_up_then_rekey(c, 110.0)
    res = c.analyse(tmp_path)
    assert by_code(res, "CHILD_SA_FAILED")
    assert by_code(res, "IKE_NO_RESPONSE").stage == "stability"
    assert the(res).verdict == "degraded"


def test_ikev1_first_quick_mode_unanswered_stays_child_sa(tmp_path):
    """Phase 1 up, the first Quick Mode never answered: the child SA's negotiation failed
    (CHILD_SA_FAILED at child_sa, as before); the tunnel was never up, so nothing moves to
    stability."""
    c = Cap()
    for step, (src, dst) in enumerate(((A, B), (B, A)) * 3, 1):
        c.ike(step * 0.01, src, dst, v1_message(IB, ZERO if step == 1 else RB, 2, 0, step,
                                                encrypted=step >= 5))
    for dt in _BACKOFF:
        c.ike(0.1 + dt, A, B, v1_message(IB, RB, 32, 0x5678, 1, encrypted=True, size=200))
    res = c.analyse(tmp_path)
    v = the(res)
    assert (v.verdict, v.failed_stage) == ("failing", "child_sa"), \
        [(f.code, f.stage) for f in res.findings]
    assert all(f.stage != "stability" for f in res.findings if f.code == "IKE_NO_RESPONSE")


# -- a capture of one direction only ----------------------------------------------------------------

def test_ikev2_one_direction_captured_is_unknown_not_unreachable(tmp_path):
    """Only the initiator's packets (a SPAN of one direction, asymmetric routing, a capture
    filter on the source): IKE_SA_INIT, IKE_AUTH with the responder's SPI, then ESP for a minute.
    The IKE_AUTH proves the IKE_SA_INIT answered (its SPI comes from the answer, and the window
    is one request during the initial exchanges, RFC 7296 §2.3): CAPTURE_ONE_DIRECTION, the
    tunnel unknown (it was failing: IKE_SA_INIT never answered, at reachability)."""
    c = Cap()
    c.ike(0.0, A, B, ike_sa_init(ISPI, ZERO, False))
    c.ike(0.02, A, B, ike_encrypted(ISPI, RSPI, 35, 1, 35, False, True))
    c.flow(A, B, SPI_AB, 1.0, 60.0)
    res = c.analyse(tmp_path)
    v = the(res)
    assert v.verdict == "unknown", [(f.code, f.severity) for f in res.findings]
    f = by_code(res, "CAPTURE_ONE_DIRECTION")
    assert "carries the responder SPI" in f.detail and RSPI.hex() in f.detail
    assert [r.frame for r in f.evidence.frames] == [1, 2]
    assert not any(x.code == "IKE_NO_RESPONSE" and "IKE_SA_INIT" in x.title
                   for x in res.findings)
    assert any("one direction" in n for n in v.not_seen)


def test_ikev1_one_direction_captured_is_unknown(tmp_path):
    """IKEv1 Main Mode and Quick Mode, initiator only: MM3 carries the responder cookie that
    only MM2 gave.  The Quick Mode 'QM1 never answered' (QM3 taken for QM1 again, QM2 not
    captured) is not judged: unknown, not CHILD_SA_FAILED."""
    c = Cap()
    for step in (1, 3, 5):
        c.ike(step * 0.01, A, B, v1_message(IB, ZERO if step == 1 else RB, 2, 0, step,
                                            encrypted=step >= 5))
    c.ike(0.11, A, B, v1_message(IB, RB, 32, 0x1234, 1, encrypted=True, size=200))
    c.ike(0.13, A, B, v1_message(IB, RB, 32, 0x1234, 3, encrypted=True, size=48))
    c.flow(A, B, SPI_AB, 1.0, 60.0)
    res = c.analyse(tmp_path)
    v = the(res)
    assert v.verdict == "unknown", [(f.code, f.severity) for f in res.findings]
    assert "CHILD_SA_FAILED" not in {f.code for f in res.findings}
    assert by_code(res, "CAPTURE_ONE_DIRECTION")


def test_unanswered_ike_sa_init_retransmitted_is_still_failing(tmp_path):
    """IKE_SA_INIT re-sent and nothing else: nothing proves an answer; failing, reachability,
    and no CAPTURE_ONE_DIRECTION (the capture cannot tell a silent peer from one direction)."""
    c = Cap()
    for dt in _BACKOFF:
        c.ike(dt, A, B, ike_sa_init(ISPI, ZERO, False))
    res = c.analyse(tmp_path)
    v = the(res)
    assert (v.verdict, v.failed_stage, v.primary_code) == \
        ("failing", "reachability", "IKE_NO_RESPONSE")
    assert "CAPTURE_ONE_DIRECTION" not in {f.code for f in res.findings}


def test_ike_auth_unanswered_after_answered_init_stays_no_response(tmp_path):
    """Both directions captured, IKE_AUTH re-sent without an answer: no later request proves
    anything, IKE_NO_RESPONSE stays (the proof by a later Message ID needs one)."""
    c = Cap()
    c.ike(0.0, A, B, ike_sa_init(ISPI, ZERO, False))
    c.ike(0.01, B, A, ike_sa_init(ISPI, RSPI, True))
    for dt in _BACKOFF:
        c.ike(0.02 + dt, A, B, ike_encrypted(ISPI, RSPI, 35, 1, 35, False, True))
    res = c.analyse(tmp_path)
    f = by_code(res, "IKE_NO_RESPONSE")
    assert "IKE_AUTH" in f.title
    assert the(res).verdict == "failing"


def test_responder_only_capture_is_unknown(tmp_path):
    """Only the responder's packets: its IKE_SA_INIT and IKE_AUTH responses answer requests the
    capture does not hold, and its ESP seems never answered.  The capture sees one direction:
    unknown (it was failing, ESP_ONE_WAY).  One response at the very start could answer a
    request sent before the capture began: it alone proves nothing."""
    c = Cap()
    c.ike(0.01, B, A, ike_sa_init(ISPI, RSPI, True))
    c.ike(0.03, B, A, ike_encrypted(ISPI, RSPI, 35, 1, 36, True, False))
    c.flow(B, A, SPI_BA, 1.0, 60.0)
    res = c.analyse(tmp_path)
    v = the(res)
    assert v.verdict == "unknown", [(f.code, f.severity) for f in res.findings]
    assert "a response" in by_code(res, "CAPTURE_ONE_DIRECTION").detail
    c = Cap()
    c.ike(0.01, B, A, ike_sa_init(ISPI, RSPI, True))
    c.flow(B, A, SPI_BA, 1.0, 60.0)
    res = c.analyse(tmp_path)
    assert not [f for f in res.findings if f.code == "CAPTURE_ONE_DIRECTION"
                and f.evidence.ike_spis]


# -- IKEv1 captured from inside phase 1 ------------------------------------------------------------

def test_ikev1_psk_mismatch_captured_from_mm5_is_authentication(tmp_path):
    """The capture begins after MM1-MM4 (in the clear): the initiator's encrypted MM5, re-sent,
    each copy answered by the responder's encrypted Informational.  The first encrypted Main
    Mode message is MM5 (RFC 2409 §5): the PSK-mismatch signature, IKE_AUTH_FAILED, as in the
    whole capture (it was healthy: both peers' encrypted messages read as a working SA)."""
    c = Cap()
    for k, t in enumerate((0.0, 2.0, 5.0, 9.5)):
        c.ike(t, A, B, v1_message(IB, RB, 2, 0, 5, encrypted=True, size=120))
        c.ike(t + 0.001, B, A, v1_message(IB, RB, 5, 0x3000 + k, 0, encrypted=True, size=84))
    res = c.analyse(tmp_path)
    v = the(res)
    assert (v.verdict, v.failed_stage, v.primary_code) == \
        ("failing", "authentication", "IKE_AUTH_FAILED"), [(f.code, f.title) for f in res.findings]


def test_ikev1_xauth_refused_captured_from_mm5_is_authentication(tmp_path):
    """From MM5 on: MM5, MM6, then the gateway's XAUTH Transaction exchanges and nothing more
    (no Quick Mode, no ESP): the user authentication ended there, as in the whole capture."""
    c = Cap()
    c.ike(0.0, A, B, v1_message(IB, RB, 2, 0, 5, encrypted=True, size=120))
    c.ike(0.01, B, A, v1_message(IB, RB, 2, 0, 6, encrypted=True, size=120))
    for k, t in enumerate((0.02, 0.05)):
        c.ike(t, B, A, v1_message(IB, RB, 6, 0x4000 + k, 1, encrypted=True, size=80))
        c.ike(t + 0.01, A, B, v1_message(IB, RB, 6, 0x4000 + k, 2, encrypted=True, size=80))
    c.ike(30.0, A, "192.0.2.99", v1_message(IB, RB, 5, 1, 0, encrypted=True))  # the clock runs on
    res = c.analyse(tmp_path)
    v = next(x for x in res.verdicts if B in x.tunnel)
    assert (v.verdict, v.primary_code) == ("failing", "IKE_AUTH_FAILED"), \
        [(f.code, f.title) for f in res.findings]


def test_ikev1_mm4_resent_after_mm5_captured_midway_is_not_phase1_done(tmp_path):
    """From MM5 on, the responder re-sends MM4 in the clear (MM5 did not reach it): that is not
    MM6 (only MM5 and MM6 are encrypted), phase 1 is not up: failing, not a working SA."""
    c = Cap()
    for t in (0.0, 0.5, 1.5, 3.5, 7.5):
        c.ike(t, A, B, v1_message(IB, RB, 2, 0, 5, encrypted=True, size=120), 4500, 4500)
        c.ike(t + 0.001, B, A, v1_message(IB, RB, 2, 0, 4))
    res = c.analyse(tmp_path)
    v = the(res)
    assert v.verdict == "failing", [(f.code, f.title) for f in res.findings]
    assert res.report.ike_sas[0]["exchanges"][0]["last_step"] == 5


def test_ikev1_xauth_refused_captured_after_phase1_is_authentication(tmp_path):
    """The capture begins after phase 1: only the gateway's XAUTH Transaction exchanges, the
    last ones re-sent, then its Delete.  Phase 1 completed before the capture (the messages are
    protected by it): the refused XAUTH is IKE_AUTH_FAILED, as in the whole capture."""
    c = Cap()
    for k, t in enumerate((0.0, 0.01)):
        c.ike(t, A, B, v1_message(IB, RB, 6, 0x4000 + k, 1, encrypted=True, size=80))
        c.ike(t + 0.001, B, A, v1_message(IB, RB, 6, 0x4000 + k, 2, encrypted=True, size=80))
    for t in (0.5, 1.0, 2.0, 4.0):
        c.ike(t, B, A, v1_message(IB, RB, 6, 0x4100, 1, encrypted=True, size=96))
    c.ike(11.0, B, A, v1_message(IB, RB, 5, 0x5000, 0, encrypted=True, size=80))
    res = c.analyse(tmp_path)
    v = the(res)
    assert (v.verdict, v.primary_code) == ("failing", "IKE_AUTH_FAILED"), \
        [(f.code, f.title) for f in res.findings]


def test_mid_session_sa_is_no_recovery_of_its_own_one_way_esp(tmp_path):
    """A capture that begins mid-session: one-way ESP, then the same (old) IKE SA's DELETE
    exchange.  That IKE SA was up before the capture: it did not come up after the failure, so
    it recovers nothing (it said: recovered by a new IKE SA, degraded)."""
    c = Cap()
    c.flow(A, B, SPI_AB, 0.0, 30.0)
    c.ike(31.0, A, B, ike_encrypted(ISPI, RSPI, 37, 5, 42, False, True))
    c.ike(31.01, B, A, ike_encrypted(ISPI, RSPI, 37, 5, 0, True, False))
    res = c.analyse(tmp_path)
    v = the(res)
    assert (v.verdict, v.primary_code) == ("failing", "ESP_ONE_WAY"), \
        [(f.code, f.detail[-120:]) for f in res.findings]


# -- a port capture filter keeps only the first IP fragment ----------------------------------------

_FIRST = 1400  # bytes of the UDP datagram in its first fragment (a multiple of 8)


def _first_fragment(c, ts, src, dst, raw, ident):
    """Only the first IP fragment of the UDP 4500 datagram carrying ``raw`` (after the non-ESP
    marker): what 'udp port 500 or udp port 4500' keeps of it (the later fragments have no UDP
    header)."""
    datagram = udp(4500, 4500, bytes(4) + raw)
    assert len(datagram) > _FIRST
    c.frames.append((ts, eth(ipv4(src, dst, 17, datagram[:_FIRST], ident=ident,
                                  flags_frag=0x2000, total_len=20 + _FIRST))))


def _sa_init(c):
    c.ike(0.0, A, B, ike_sa_init(ISPI, ZERO, False))
    c.ike(0.01, B, A, ike_sa_init(ISPI, RSPI, True))


def test_fragmented_ike_auth_captured_with_a_port_filter_unanswered(tmp_path):
    """tcpdump 'udp port 500 or udp port 4500' on the initiator's side of a certificate
    IKE_AUTH that a firewall's fragment drop kills: only the first fragment of each copy is in
    the capture.  The IKE_AUTH is read from those first fragments, sent four times and never
    answered, as IP fragments: IKE_FRAGMENTATION_LOSS, failing, as with the whole capture (it
    was unknown: no IKE_AUTH at all)."""
    c = Cap()
    _sa_init(c)
    auth = ike_encrypted(ISPI, RSPI, 35, 1, 35, False, True, 2000)
    for k, t in enumerate((0.02, 2.02, 5.02, 9.52)):
        _first_fragment(c, t, A, B, auth, 100 + k)
    res = c.analyse(tmp_path)
    v = the(res)
    assert (v.verdict, v.primary_code) == ("failing", "IKE_FRAGMENTATION_LOSS"), \
        [(f.code, f.stage) for f in res.findings]
    f = by_code(res, "IKE_FRAGMENTATION_LOSS")
    assert "IKE_AUTH" in f.title and "holds only the first" in f.detail
    assert [r.frame for r in f.evidence.frames] == [3, 4, 5, 6]
    assert any("first IP fragment only" in n for n in v.not_seen)
    assert "NAT_T_BLOCKED" not in {x.code for x in res.findings}


def test_fragmented_ike_auth_captured_with_a_port_filter_answered(tmp_path):
    """The same filter on a working tunnel: the IKE_AUTH request and response each show their
    first fragment only, then ESP both ways (UDP-encapsulated) and a liveness check.  The
    IKE_AUTH is answered (read in its place, before the messages that follow it); no
    fragment loss is claimed: healthy."""
    c = Cap()
    _sa_init(c)
    _first_fragment(c, 0.02, A, B, ike_encrypted(ISPI, RSPI, 35, 1, 35, False, True, 2000), 7)
    _first_fragment(c, 0.05, B, A, ike_encrypted(ISPI, RSPI, 35, 1, 36, True, False, 1800), 8)
    c.ike(0.06, A, B, ike_encrypted(ISPI, RSPI, 37, 2, 0, False, True, 16), 4500, 4500)
    c.ike(0.07, B, A, ike_encrypted(ISPI, RSPI, 37, 2, 0, True, False, 16), 4500, 4500)
    for k in range(30):
        for src, dst, spi in ((A, B, SPI_AB), (B, A, SPI_BA)):
            c.frames.append((1.0 + k, esp_frame(src, dst, spi, k + 1,
                                                          udp_ports=(4500, 4500))))
    res = c.analyse(tmp_path)
    v = the(res)
    assert v.verdict == "healthy", [(f.code, f.severity) for f in res.findings]
    assert "IKE_FRAGMENTATION_LOSS" not in {f.code for f in res.findings}
    sa, = res.state.ike_sas
    auth = [x for x in sa.exchanges if x.msgid == 1 and x.exch == 35]
    assert len(auth) == 1 and len(auth[0].msgs) == 2 and all(m.head_only for m in auth[0].msgs)
    assert [x.msgid for x in sa.exchanges] == [0, 1, 2]


# -- captures that end right after the decisive messages ------------------------------------------

def test_ikev1_capture_ending_right_after_xauth_is_unknown(tmp_path):
    """Main Mode, then XAUTH's Transaction exchanges, and the capture stops 5 ms later (an IKE-port
    filter leaves nothing after them): no Quick Mode could have come yet, XAUTH's result is
    encrypted, so the tunnel is unknown with what is pending said (it was healthy: 'came up')."""
    c = Cap()
    for step, (src, dst) in enumerate(((A, B), (B, A)) * 3, 1):
        c.ike(step * 0.01, src, dst, v1_message(IB, ZERO if step == 1 else RB, 2, 0, step,
                                                encrypted=step >= 5))
    for k, (src, dst) in enumerate(((B, A), (A, B), (B, A), (A, B))):
        c.ike(0.1 + k * 0.001, src, dst,
              v1_message(IB, RB, 6, 0x7000 + k // 2, 0, encrypted=True, size=90 + k))
    res = c.analyse(tmp_path)
    v = the(res)
    assert v.verdict == "unknown", [(f.code, f.severity) for f in res.findings]
    assert any("no Quick Mode followed" in n and "XAUTH" in n for n in v.not_seen)


def test_eap_ended_by_the_clients_notify_needs_no_timeout(tmp_path):
    """EAP over three IKE_AUTH rounds, the last answer still EAP, and the client's INFORMATIONAL
    starting with a Notify 5 ms later; the capture ends there.  The client's Notify ends EAP at
    once (strongSwan's AUTHENTICATION_FAILED after an EAP failure): IKE_AUTH_FAILED, not only a
    retransmission (the answer timeout is for silence)."""
    c = Cap()
    _sa_init(c)
    for k in range(1, 4):
        t = 0.02 * k
        c.ike(t, A, B, ike_encrypted(ISPI, RSPI, 35, k, 48 if k > 1 else 35, False, True),
              4500, 4500)
        c.ike(t + 0.005, B, A, ike_encrypted(ISPI, RSPI, 35, k, 36 if k == 1 else 48, True,
                                             False), 4500, 4500)
    c.ike(0.1, A, B, ike_encrypted(ISPI, RSPI, 37, 4, 41, False, True), 4500, 4500)
    c.ike(0.105, B, A, ike_encrypted(ISPI, RSPI, 37, 4, 0, True, False), 4500, 4500)
    res = c.analyse(tmp_path)
    v = the(res)
    assert (v.verdict, v.failed_stage, v.primary_code) == \
        ("failing", "authentication", "IKE_AUTH_FAILED"), [f.code for f in res.findings]
    assert "did not complete" in by_code(res, "IKE_AUTH_FAILED").title


def test_ikev1_capture_begun_at_qm3_is_no_child_sa_failure(tmp_path):
    """A capture begun after phase 1 and QM1-QM2 (the lab's ikev1_dpd_healthy with its first
    quarter cut): its first message is the initiator's QM3, 76 bytes (HASH(3) alone; QM1 and
    QM2 carry an SA and a nonce, 100 bytes at least).  Taken for QM1, DPD's Informational 5 s
    later 'answered' it: CHILD_SA_FAILED, degraded.  It is QM3: healthy."""
    c = Cap()
    c.ike(0.0, A, B, v1_message(IB, RB, 32, 0x1234, 3, encrypted=True, size=48))
    c.flow(A, B, SPI_AB, 0.02, 14.0)
    c.flow(B, A, SPI_BA, 0.021, 14.0)
    for k, t in enumerate((5.0, 10.0)):
        c.ike(t, A, B, v1_message(IB, RB, 5, 0x100 + k, 0, encrypted=True, size=80))
        c.ike(t + 0.003, B, A, v1_message(IB, RB, 5, 0x200 + k, 0, encrypted=True, size=80))
    res = c.analyse(tmp_path)
    assert "CHILD_SA_FAILED" not in {f.code for f in res.findings}
    assert the(res).verdict == "healthy", [(f.code, f.severity) for f in res.findings]
    sa, = res.state.ike_sas
    assert [m.step for m in sa.messages if m.exch == 32] == [3]


def test_simultaneous_init_under_a_snapshot_length(tmp_path):
    """The lab's simultaneous initiation captured with a snapshot length of 96 bytes: every
    IKE_SA_INIT answer is cut inside its SA payload.  The header still names it (an answer that
    creates the IKE SA, not an error or a COOKIE): the same IKE_SIMULTANEOUS_INIT as the whole
    capture (before: only the retransmissions of the initiation that waited)."""
    from conftest import REPO
    from synth import snap_copy

    from pcapvpn.analysis import run

    src = REPO / "captures" / "lab" / "ikev2_ignored_init_duplicate" / \
        "ikev2_ignored_init_duplicate.pcap"
    res = run([str(snap_copy(src, tmp_path / "cut.pcap", 96))])
    v, = res.verdicts
    assert (v.verdict, v.primary_code) == ("degraded", "IKE_SIMULTANEOUS_INIT")
