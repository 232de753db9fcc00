"""Advice chosen per finding (issue 13 §2): the lines of a code that apply to the finding's IKE
version, exchange, side and implementation (Vendor IDs), with the real Message ID filled in, each
line once; on synthetic captures."""

from __future__ import annotations

import hashlib
import re
import struct

import pytest

from synth import chain, ike_frame, ike_header, ike_sa_init, write_pcap
from pcapvpn import i18n
from pcapvpn.analysis import run
from pcapvpn.findings import REGISTRY, advice_for
from pcapvpn.rules import load_all
from pcapvpn.rules.common import implementation_hint

A, B = "192.0.2.10", "198.51.100.20"
I1 = bytes.fromhex("a1a1a1a1a1a1a1a1")
R1 = bytes.fromhex("b2b2b2b2b2b2b2b2")
Z = bytes(8)
STRONGSWAN_VID = hashlib.md5(b"strongSwan").digest()
V1_VID = 13


def analyse(tmp_path, frames):
    return run([str(write_pcap(tmp_path / "c.pcap", frames))])


def finding(r, code):
    hits = [f for f in r.findings if f.code == code]
    assert hits, f"no {code} in {[f.code for f in r.findings]}"
    return hits[0]


def text(f) -> str:
    return "\n".join(f.advice)


def v1(items, rspi=Z, flags=0, exch=2, msgid=0):
    np, body = chain(*items)
    return ike_header(I1, rspi, np, exch, flags, msgid, body, version=0x10)


def v1_sa() -> bytes:
    """IKEv1 SA payload body: DOI 1, SIT_IDENTITY_ONLY, one proposal with one KEY_IKE transform
    (AES-CBC, SHA1, PSK, MODP 2048) (RFC 2408 §3.4-3.6, RFC 2409 App. A)."""
    attrs = b"".join(struct.pack(">HH", 0x8000 | t, v) for t, v in ((1, 7), (2, 2), (3, 1),
                                                                     (4, 14)))
    transform = struct.pack(">BBHBBH", 0, 0, 8 + len(attrs), 1, 1, 0) + attrs
    proposal = struct.pack(">BBHBBBB", 0, 0, 8 + len(transform), 1, 1, 0, 1) + transform
    return struct.pack(">II", 1, 1) + proposal


def mm(step, vid=None):
    """IKEv1 Main Mode message ``step`` (1-4 in the clear)."""
    if step in (1, 2):
        items = [(1, v1_sa())]
    else:
        items = [(4, bytes(128)), (10, bytes(16))]
    if vid is not None:
        items.append((V1_VID, vid))
    return v1(items, rspi=Z if step == 1 else R1)


def test_advice_for_keeps_unknown_facts_and_fills_placeholders():
    load_all()
    every = advice_for("IKE_NO_RESPONSE", {})
    # without facts nothing is narrowed, but a line naming an unknown fact ({msgid}) is left out
    assert not any("{" in a for a in every)
    assert len(every) == len([a for a in REGISTRY["IKE_NO_RESPONSE"].advice if "{" not in a])
    v2 = advice_for("IKE_NO_RESPONSE", {"version": 2, "exchange": "IKE_SA_INIT", "msgid": 0,
                                        "impl": set()})
    assert "first IKEv2 message" in "\n".join(v2)
    assert "message ID 0'" in "\n".join(v2)
    assert not any("IKEv1" in a or "MM_" in a or "Quick Mode" in a for a in v2)
    only_ss = advice_for("IKE_NO_RESPONSE", {"version": 2, "exchange": "IKE_SA_INIT",
                                             "msgid": 0, "impl": {"strongSwan"}})
    assert not any("libreswan" in a or "Cisco" in a for a in only_ss)
    assert any("strongSwan" in a for a in only_ss)
    assert len(only_ss) == len(set(only_ss))


def test_ikev2_no_response_quotes_no_ikev1_state(tmp_path):
    req = ike_frame(A, B, ike_sa_init(I1, Z, False))
    r = analyse(tmp_path, [(0.0, req), (4.0, req), (11.2, req), (24.2, req)])
    f = finding(r, "IKE_NO_RESPONSE")
    adv = text(f)
    assert "MM_WAIT" not in adv and "MM_NO_STATE" not in adv and "IKEv1" not in adv
    assert "first IKEv2 message" in adv
    assert "'retransmit N of request with message ID 0'" in adv
    assert "Retransmission pattern of the initiator: strongSwan-like" in f.detail


def test_ikev1_mm1_no_response_quotes_ikev1_logs(tmp_path):
    m1 = ike_frame(A, B, mm(1))
    r = analyse(tmp_path, [(0.0, m1), (4.0, m1), (11.2, m1)])
    adv = text(finding(r, "IKE_NO_RESPONSE"))
    assert "IKEv2" not in adv
    assert "first IKEv1 message" in adv
    assert "MM_WAIT_MSG2" in adv and "MM_NO_STATE" in adv
    assert "'sending retransmit N of request message ID 0, seq N'" in adv
    assert "first encrypted message" not in adv and "Quick Mode" not in adv


def test_vendor_id_keeps_that_implementation_only(tmp_path):
    m1 = ike_frame(A, B, mm(1, vid=STRONGSWAN_VID))
    r = analyse(tmp_path, [(0.0, m1), (4.0, m1), (11.2, m1)])
    adv = text(finding(r, "IKE_NO_RESPONSE"))
    assert "strongSwan logs 'sending retransmit" in adv
    assert "libreswan" not in adv and "Cisco" not in adv


def test_ikev1_psk_mismatch_logs_on_the_right_side(tmp_path):
    mm5 = ike_frame(A, B, ike_header(I1, R1, 5, 2, 1, 0, bytes(64), version=0x10))
    m4 = ike_frame(B, A, mm(4))
    frames = [(0.0, ike_frame(A, B, mm(1))), (0.01, ike_frame(B, A, mm(2))),
              (0.02, ike_frame(A, B, mm(3))), (0.03, m4), (0.04, mm5), (5.0, m4),
              (5.04, mm5), (10.0, m4)]
    f = finding(analyse(tmp_path, frames), "IKE_AUTH_FAILED")
    adv = text(f)
    assert "the responder cannot decrypt MM5 and logs 'invalid ID_V1 payload length" in adv
    assert "the initiator logs 'invalid HASH_V1 payload length" in adv
    assert "AUTHENTICATION_FAILED" not in adv  # IKEv2 wording
    assert "MM_WAIT_MSG6" in adv
    assert "HASH_V1" not in f.detail  # the detail says what was seen, the advice who logs what


def test_ikev1_mm5_unanswered_on_4500(tmp_path):
    # Main Mode 1-4 on 500, MM5 on 4500 never answered (Message ID 0): the initiator's logs for
    # MM5 of IKEv1, never IKE_AUTH's "message ID 1"
    mm5 = ike_frame(A, B, ike_header(I1, R1, 5, 2, 1, 0, bytes(64), version=0x10), 4500, 4500)
    frames = [(0.0, ike_frame(A, B, mm(1))), (0.01, ike_frame(B, A, mm(2))),
              (0.02, ike_frame(A, B, mm(3))), (0.03, ike_frame(B, A, mm(4))),
              (0.04, mm5), (4.0, mm5), (11.2, mm5)]
    r = analyse(tmp_path, frames)
    assert "DECODE_ERRORS" not in {f.code for f in r.findings}
    f = next(f for f in r.findings if f.code in ("NAT_T_BLOCKED", "IKE_NO_RESPONSE"))
    adv = text(f)
    assert "message ID 1" not in adv and "IKEv2" not in adv
    assert "'sending retransmit N of request message ID 0, seq N'" in adv
    assert "first encrypted message" in adv  # libreswan's MAIN_I3 wording
    assert "MM_WAIT_MSG6" in adv and "MM_WAIT_MSG2" not in adv


@pytest.mark.parametrize("msgid", [1, 3])
def test_nat_t_blocked_ikev2_message_id(tmp_path, msgid):
    from synth import ike_encrypted

    req = ike_frame(A, B, ike_encrypted(I1, R1, 35, msgid, 35, False, True, 200), 4500, 4500)
    frames = [(0.0, ike_frame(A, B, ike_sa_init(I1, Z, False))),
              (0.01, ike_frame(B, A, ike_sa_init(I1, R1, True))),
              (1.0, req), (3.0, req), (6.0, req)]
    adv = text(finding(analyse(tmp_path, frames), "NAT_T_BLOCKED"))
    assert f"'retransmit N of request with message ID {msgid}'" in adv
    assert "sending retransmit" not in adv  # IKEv1 wording


def test_filled_lines_are_translated():
    load_all()
    line = advice_for("NAT_T_BLOCKED", {"version": 2, "msgid": 7})[1]
    ja = i18n.Lang("ja").text(line)
    assert ja != line and "message ID 7" in ja and "要求" in ja


def test_implementation_hint_survives_thousands_of_intervals():
    # one request re-sent thousands of times (a long capture of a peer that never answers)
    assert implementation_hint([4.0 * 1.8 ** i for i in range(5)] + [60.0] * 5000) is None
    assert implementation_hint([2.0] * 5000) == "constant 2.0 s retransmission interval"
    assert implementation_hint([4.0, 7.2, 12.96]).startswith("strongSwan-like")


def _quoted(line: str) -> set[str]:
    """Log lines quoted in an advice line ('...'), long enough to be a daemon's phrase."""
    return {q for q in re.findall(r"'([^']{15,})'", line)}


def _all_captures():
    from conftest import corpus_captures, project_captures

    return project_captures() + corpus_captures()


@pytest.mark.parametrize("path", _all_captures(), ids=lambda p: p.name)
def test_no_advice_said_twice(path):
    """One finding lists each advice line once, and quotes each daemon log line once (the NAT
    findings used to append the registry's general lines to the same lines built per side)."""
    from conftest import analysed

    for f in analysed(path).findings:
        assert len(f.advice) == len(set(f.advice)), (f.code, f.advice)
        seen: dict = {}
        for line in f.advice:
            for q in _quoted(line):
                assert q not in seen, (f.code, q, seen[q], line)
                seen[q] = line
