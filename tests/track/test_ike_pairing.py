"""IKE_SA_INIT pairing whatever the responder SPI (libreswan, issue 13 §2b) and the widened
IKE_SIMULTANEOUS_INIT (issue 13 §2): both peers initiating while the other's initiation was
pending, the survivor named.

The libreswan behaviour is rebuilt with scapy (a real libreswan capture comes later from the
lab): pluto ignores an unprotected NO_PROPOSAL_CHOSEN in answer to its IKE_SA_INIT ("ignoring
IKE_SA_INIT response containing NO_PROPOSAL_CHOSEN notification", anchors.md) and retransmits
the request byte for byte (0.5 s, doubling), and the libreswan responder answers every copy
within a fraction of a millisecond with a fresh responder SPI."""

from __future__ import annotations

import pytest

from synth import esp_frame, ike_encrypted, ike_frame, ike_sa_init, write_pcap
from pcapvpn.analysis import run
from pcapvpn.rules.common import ip_text

A, B = "192.0.2.10", "198.51.100.20"
ISPI = bytes.fromhex("1122334455667788")
LIBRESWAN_TIMES = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]


def _scapy_capture(path, success_at=None):
    """Seven copies of one IKE_SA_INIT, each answered 0.3 ms later by NO_PROPOSAL_CHOSEN under
    a fresh responder SPI; with ``success_at`` (a copy's index) that copy is answered with an SA
    instead and the initiator goes on with IKE_AUTH under that responder SPI."""
    import os

    from scapy.all import IP, UDP, Ether, wrpcap
    from scapy.contrib.ikev2 import (IKEv2, IKEv2_KE, IKEv2_Nonce, IKEv2_Notify,
                                     IKEv2_Proposal, IKEv2_SA, IKEv2_Transform)

    def prop():
        return IKEv2_Proposal(
            proposal=1, proto=1, trans_nb=4,
            trans=IKEv2_Transform(transform_type=1, transform_id=12, key_length=256)
            / IKEv2_Transform(transform_type=2, transform_id=5)
            / IKEv2_Transform(transform_type=3, transform_id=12)
            / IKEv2_Transform(transform_type=4, transform_id=14))

    req = (IKEv2(init_SPI=ISPI, resp_SPI=bytes(8), exch_type=34, flags="Initiator", id=0)
           / IKEv2_SA(prop=prop()) / IKEv2_KE(group=14, ke=os.urandom(256))
           / IKEv2_Nonce(nonce=os.urandom(32)))
    mac = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    pkts = []
    t0 = 1_700_000_000.0
    times = LIBRESWAN_TIMES if success_at is None else LIBRESWAN_TIMES[:success_at + 1]
    for i, dt in enumerate(times):
        p = Ether(**mac) / IP(src=A, dst=B) / UDP(sport=500, dport=500) / req
        p.time = t0 + dt
        pkts.append(p)
        rspi = bytes.fromhex(f"aabbccdd000000{i + 1:02x}")
        if i == success_at:
            body = (IKEv2(init_SPI=ISPI, resp_SPI=rspi, exch_type=34, flags="Response", id=0)
                    / IKEv2_SA(prop=prop()) / IKEv2_KE(group=14, ke=os.urandom(256))
                    / IKEv2_Nonce(nonce=os.urandom(32)))
        else:
            body = (IKEv2(init_SPI=ISPI, resp_SPI=rspi, exch_type=34, flags="Response", id=0)
                    / IKEv2_Notify(type=14))
        r = Ether(**mac) / IP(src=B, dst=A) / UDP(sport=500, dport=500) / body
        r.time = t0 + dt + 0.0003
        pkts.append(r)
    wrpcap(str(path), pkts)
    if success_at is None:
        return path, []
    rspi = bytes.fromhex(f"aabbccdd000000{success_at + 1:02x}")
    t = times[-1] + 0.01
    extra = [(t0 + t, ike_frame(A, B, ike_encrypted(ISPI, rspi, 35, 1, 35, False, True, 200),
                                 4500, 4500)),
             (t0 + t + 0.01, ike_frame(B, A, ike_encrypted(ISPI, rspi, 35, 1, 36, True, False,
                                                           180), 4500, 4500))]
    return path, extra


def test_libreswan_fresh_responder_spi_per_npc_reply_is_one_sa(tmp_path):
    path, _ = _scapy_capture(tmp_path / "npc.pcap")
    r = run([str(path)])
    sas = r.state.ike_sas
    assert len(sas) == 1, [sa.id for sa in sas]
    sa = sas[0]
    assert len(sa.messages) == 14
    # the copies are copies, whatever the responder SPI of the answer
    assert sum(1 for m in sa.messages if m.retransmit_of is not None) == 12
    codes = [f.code for f in r.findings]
    assert "IKE_NO_RESPONSE" not in codes  # every copy was answered within 0.3 ms
    assert "IKE_SA_FLAPPING" not in codes  # one retransmitted request, not 7 negotiations
    assert codes.count("IKE_NO_PROPOSAL_CHOSEN") == 1
    rt = [f for f in r.findings if f.code == "IKE_RETRANSMISSION"]
    assert len(rt) == 1 and rt[0].severity == "info"
    assert "Every copy of the request was answered" in rt[0].detail
    assert "ignoring IKE_SA_INIT response containing NO_PROPOSAL_CHOSEN" in rt[0].detail
    t, = r.report.tunnels
    assert t["primary_code"] == "IKE_NO_PROPOSAL_CHOSEN"


def test_initiator_goes_on_under_a_later_responder_spi(tmp_path):
    """Copy 3 is answered with an SA (responder SPI ...03): IKE_AUTH under that SPI stays in
    the same IKE SA, which is then known by it."""
    pcap, extra = _scapy_capture(tmp_path / "ok.pcap", success_at=2)
    from pcapvpn.sources import open_source

    src = open_source(str(pcap))
    frames = [(f[2], bytes(f[4])) for f in src.frames()] + extra
    src.close()
    r = run([str(write_pcap(tmp_path / "all.pcap", frames))])
    sa, = r.state.ike_sas
    assert sa.rspi == bytes.fromhex("aabbccdd00000003")
    assert sa.established
    assert not [f for f in r.findings if f.code in ("IKE_NO_RESPONSE", "IKE_SA_FLAPPING")]


# -- IKE_SIMULTANEOUS_INIT ------------------------------------------------------------------------

IA, RA = bytes.fromhex("aaaa000000000001"), bytes.fromhex("aaab000000000001")
IB, RB = bytes.fromhex("bbbb000000000001"), bytes.fromhex("bbbc000000000001")


def _init(t, src, dst, ispi, rspi, answer_after=0.01, copies=()):
    out = [(t, ike_frame(src, dst, ike_sa_init(ispi, bytes(8), False)))]
    out += [(t + c, ike_frame(src, dst, ike_sa_init(ispi, bytes(8), False))) for c in copies]
    if answer_after is not None:
        out.append((t + answer_after, ike_frame(dst, src, ike_sa_init(ispi, rspi, True))))
    return out


def _auth(t, src, dst, ispi, rspi):
    return [(t, ike_frame(src, dst, ike_encrypted(ispi, rspi, 35, 1, 35, False, True), 4500,
                          4500)),
            (t + 0.02, ike_frame(dst, src, ike_encrypted(ispi, rspi, 35, 1, 36, True, False),
                                 4500, 4500))]


def _delete(t, src, dst, ispi, rspi):
    return [(t, ike_frame(src, dst, ike_encrypted(ispi, rspi, 37, 2, 42, False, True), 4500,
                          4500)),
            (t + 0.01, ike_frame(dst, src, ike_encrypted(ispi, rspi, 37, 2, 0, True, False),
                                 4500, 4500))]


def _esp(t, n=40):
    out = []
    for i in range(n):
        out.append((t + i, esp_frame(A, B, 0xC0000001, i + 1)))
        out.append((t + i + 0.01, esp_frame(B, A, 0xC0000002, i + 1)))
    return out


def _simul(tmp_path, frames):
    # float seconds (an int is nanoseconds to the pcap writer)
    frames = sorted(((float(t), f) for t, f in frames), key=lambda f: f[0])
    r = run([str(write_pcap(tmp_path / "s.pcap", frames))])
    return r, [f for f in r.findings if f.code == "IKE_SIMULTANEOUS_INIT"]


def test_initiation_ignored_40s_while_the_peer_initiated(tmp_path):
    """A's IKE_SA_INIT is retransmitted for 40 s before being answered; B initiated its own
    IKE SA at +10 s; A's SA is deleted at +45 s: B's survived."""
    frames = (_init(0, A, B, IA, RA, answer_after=40.01, copies=(4, 11.2, 24.16, 40))
              + _auth(40.05, A, B, IA, RA) + _init(10, B, A, IB, RB) + _auth(10.05, B, A, IB, RB)
              + _delete(45, A, B, IA, RA) + _esp(10.2))
    r, found = _simul(tmp_path, frames)
    assert len(found) == 1
    f = found[0]
    assert f.severity == "warning" and f.stage == "negotiation"
    assert "waited 40 s" in f.title
    ida, idb = (sa.id for sa in sorted(r.state.ike_sas, key=lambda s: s.ispi))
    assert f"{idb} (initiated by {B}) survived" in f.detail
    assert f"{ida} was deleted at +45.0 s" in f.detail
    assert "after 5 sends" in f.detail


def test_both_at_the_same_time(tmp_path):
    frames = (_init(0, A, B, IA, RA, answer_after=0.02) + _init(0.005, B, A, IB, RB)
              + _auth(0.1, A, B, IA, RA) + _auth(0.1, B, A, IB, RB) + _esp(0.3))
    _r, found = _simul(tmp_path, frames)
    assert len(found) == 1 and "at the same time" in found[0].title
    assert "Neither was deleted" in found[0].detail


def test_not_simultaneous_when_the_first_was_answered_before(tmp_path):
    """B's initiation 1 s after A's was answered is a second SA, not a simultaneous one (the
    old rule said so for anything within 5 s)."""
    frames = (_init(0, A, B, IA, RA) + _auth(0.05, A, B, IA, RA) + _init(1.0, B, A, IB, RB)
              + _auth(1.05, B, A, IB, RB))
    _r, found = _simul(tmp_path, frames)
    assert not found


def test_not_simultaneous_when_one_was_never_answered(tmp_path):
    frames = _init(0, A, B, IA, RA, answer_after=None, copies=(4, 11.2)) + \
        _init(1.0, B, A, IB, RB) + _auth(1.05, B, A, IB, RB)
    _r, found = _simul(tmp_path, frames)
    assert not found


@pytest.mark.parametrize("n", [50, 100])
def test_many_pending_initiations_pair_each_at_most_once(tmp_path, n):
    """A flood of initiations both ways, all pending at once: at most one finding per pair of
    SAs (never n x n)."""
    frames = []
    for i in range(n):
        ia = (0xA0000000 + i).to_bytes(8, "big")
        ib = (0xB0000000 + i).to_bytes(8, "big")
        frames += _init(i * 0.001, A, B, ia, (0xC0 + i).to_bytes(8, "big"), answer_after=5)
        frames += _init(i * 0.001 + 0.0005, B, A, ib, (0xD0 + i).to_bytes(8, "big"),
                        answer_after=5)
    _r, found = _simul(tmp_path, frames)
    assert len(found) == n
    used = [sa for f in found for sa in f.evidence.ike_spis]
    assert len(used) == len(set(used)) == 2 * n


# -- the lab's real daemons -----------------------------------------------------------------------

LAB = __import__("pathlib").Path(__file__).resolve().parents[2] / "captures" / "lab"


def _lab(name):
    p = LAB / name / f"{name}.pcap"
    if not p.exists():
        pytest.fail(f"lab capture {p} missing")
    return run([str(p)])


def test_lab_libreswan_no_proposal_is_one_sa():
    """libreswan answering each retransmitted IKE_SA_INIT with NO_PROPOSAL_CHOSEN under a fresh
    responder SPI (the lab's real pluto): one IKE SA, one NO_PROPOSAL_CHOSEN, no flapping."""
    r = _lab("libreswan_ikev2_no_proposal")
    assert len(r.state.ike_sas) == 1
    codes = [f.code for f in r.findings]
    assert codes.count("IKE_NO_PROPOSAL_CHOSEN") == 1
    assert "IKE_SA_FLAPPING" not in codes and "IKE_NO_RESPONSE" not in codes


def test_lab_ignored_initiation_names_the_survivor():
    """The lab's ignored initiation (expected.json: the right gateway deleted the SA it had
    initiated; the left-initiated one survived and carried the ESP)."""
    r = _lab("ikev2_ignored_init_duplicate")
    f, = [f for f in r.findings if f.code == "IKE_SIMULTANEOUS_INIT"]
    assert "waited 42 s" in f.title
    left = next(sa for sa in r.state.ike_sas if ip_text(sa.initiator[1]) == "192.0.2.2")
    right = next(sa for sa in r.state.ike_sas if sa is not left)
    assert f"{left.id} (initiated by 192.0.2.2) survived" in f.detail
    assert f"{right.id} was deleted at" in f.detail
