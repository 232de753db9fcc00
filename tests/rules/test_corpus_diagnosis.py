"""The diagnosis each public corpus capture must (and must not) produce, derived from
../shared/corpus/MANIFEST.md (its descriptions and failure-scenario index)."""

from __future__ import annotations

import pytest

from conftest import CORPUS, analysed, corpus_dir

#: failure findings a healthy tunnel must never produce
FAILURES = {"IKE_NO_RESPONSE", "ICMP_UNREACHABLE", "IKE_NO_PROPOSAL_CHOSEN", "IKE_INVALID_KE",
            "IKE_VERSION_MISMATCH", "IKE_ERROR_NOTIFY", "IKE_AUTH_FAILED", "NAT_T_BLOCKED",
            "NAT_T_NOT_USED", "IKE_FRAGMENTATION_LOSS", "IKE_TS_UNACCEPTABLE", "CHILD_SA_FAILED",
            "ESP_ONE_WAY", "ESP_SPI_MISMATCH", "ESP_NO_TRAFFIC", "DPD_TIMEOUT"}

# path: (verdicts of the tunnels, codes that must appear {code: severity or None}, codes that
# must not appear)
CASES = {
    # IKE_AUTH of 3468 bytes in 3 IP fragments, sent 3 times, never answered (MANIFEST)
    "zeek-spicy-ipsec/traces/ipsec_client.pcap":
        ({"failing"}, {"IKE_FRAGMENTATION_LOSS": "error"}, {"IKE_NO_RESPONSE", "NAT_T_BLOCKED"}),
    # IKEv1 NO-PROPOSAL-CHOSEN from the initiator after MM2, recovered after the responder
    # retransmitted MM2 10 s later; MM3-MM6 + Quick Mode complete; ESP both ways: a failure it
    # recovered from, at warning (docs/verdicts.md)
    "zeek-spicy-ipsec/traces/ipsec.cap":
        ({"degraded"}, {"IKE_NO_PROPOSAL_CHOSEN": "warning", "IKE_RETRANSMISSION": "warning"},
         FAILURES - {"IKE_NO_PROPOSAL_CHOSEN"}),
    # clean Main / Aggressive Mode: healthy, MODP1024/SHA1 and aggressive PSK are posture only
    "zeek-spicy-ipsec/traces/ipsec-ikev1-isakmp-main-mode.pcap":
        ({"healthy"}, {"IKE_WEAK_CRYPTO": "warning"}, FAILURES | {"IKE_RETRANSMISSION"}),
    "zeek-spicy-ipsec/traces/ipsec-ikev1-isakmp-aggressive-mode.pcap":
        ({"healthy"}, {"IKE_WEAK_CRYPTO": "warning", "IKE_AGGRESSIVE_MODE_PSK": "warning"},
         FAILURES | {"IKE_RETRANSMISSION"}),
    "suricata-verify/ikev1-rules/ikev1-isakmp-main-mode.pcap":
        ({"healthy"}, {"IKE_WEAK_CRYPTO": "warning"}, FAILURES),
    "tcpdump/ISAKMP_sa_setup.pcap": ({"healthy"}, {}, FAILURES),
    # clean negotiation, but QM1 answered only after a retransmission 10 s later: degraded
    "zeek-spicy-ipsec/traces/ikev1-certs.pcap":
        ({"degraded"}, {"IKE_RETRANSMISSION": "warning"}, FAILURES),
    # AH+ESP both ways, seq 1-5 each, no IKE
    "zeek-spicy-ipsec/traces/IPsec_ESP-AH_tunnel_mode.cap": ({"healthy"}, {}, FAILURES),
    "arkime/ah-esp.pcap": ({"healthy"}, {}, FAILURES),
    # IKEv2 INIT+AUTH then one ESP packet each way
    "nDPI/pcap/esp.pcapng": ({"healthy"}, {}, FAILURES),
    "nDPI/pcap/ah.pcapng": ({"healthy"}, {}, FAILURES),
    # the capture ends at the weak IKE_SA_INIT request: unknown verdict, posture finding
    "suricata-verify/ikev2-weak-dh/IKEv2_SA_INIT_2-8-weak.pcap":
        ({"unknown"}, {"IKE_WEAK_CRYPTO": "warning"}, FAILURES),
    # one-way ESP by construction, nothing from the other side: capture caveat, not a failure
    "arkime/wireshark-esp.pcap": ({"unknown"}, {"CAPTURE_ONE_DIRECTION": None}, FAILURES),
    "suricata-verify/eve-flow-esp/input.pcap": ({"unknown"}, {"CAPTURE_ONE_DIRECTION": None}, FAILURES),
    "tcpdump/02-sunrise-sunset-esp.pcap": ({"unknown"}, {"CAPTURE_ONE_DIRECTION": None}, FAILURES),
    "tcpdump/08-sunrise-sunset-aes.pcap": ({"unknown"}, {"CAPTURE_ONE_DIRECTION": None}, FAILURES),
    "tcpdump/espudp1.pcap": ({"unknown"}, {"CAPTURE_ONE_DIRECTION": None}, FAILURES),
    # COOKIE challenge answered by a retry; two CREATE_CHILD_SA refused (the responses start
    # with a Notify), later ones succeed: recovered failures; the last INFORMATIONAL request is
    # unanswered as the capture ends (not visible)
    "tcpdump/ikev2four.pcap":
        ({"degraded"}, {"IKE_COOKIE": "info", "CHILD_SA_FAILED": "warning"}, {"IKE_NO_RESPONSE"}),
    # only the responder's INVALID_KE_PAYLOAD reply (Openswan unit test input)
    "openswan/lp09-I1notify/parentR1notify.pcap": (None, {"IKE_INVALID_KE": None}, set()),
    # IKEv1 Informational with INVALID-MAJOR-VERSION notifies
    "tcpdump/isakmp-no-none-np.pcapng": (None, {"IKE_VERSION_MISMATCH": None}, set()),
}

#: malformed corpus captures: no exception, errors counted, no invented failure
MALFORMED = [
    "tcpdump/ikev1_id_ipv6_addr_subnet-oobr.pcap", "tcpdump/ikev2pI2-segfault.pcapng",
    "tcpdump/isakmp-3948-oobr-2.pcap", "tcpdump/isakmp-delete-segfault.pcap",
    "tcpdump/isakmp-identification-segfault.pcap", "tcpdump/isakmp-ikev1_n_print-oobr.pcap",
    "tcpdump/isakmp-pointer-loop.pcap", "tcpdump/isakmp-rfc3948-oobr.pcap",
    "tcpdump/isakmp-various-oobr.pcap", "tcpdump/isakmpv1-attr-oobr.pcap",
    "tcpdump/esp_truncated.pcap", "tcpdump/l2tp-avp-overflow.pcap",
    "zeek-spicy-ipsec/traces/ipsec-ikev1-payload-bad-length.pcap",
    "zeek-spicy-ipsec/traces/ipsec-ikev1-zero-length.pcap",
]


def _get(rel):
    corpus_dir()
    p = CORPUS / rel
    assert p.is_file(), f"corpus capture missing: {rel}"
    return analysed(p)


@pytest.mark.parametrize("rel", sorted(CASES))
def test_corpus_diagnosis(rel):
    verdicts, must, must_not = CASES[rel]
    r = _get(rel)
    got = {}
    for f in r.findings:
        got.setdefault(f.code, set()).add(f.severity)
    if verdicts is not None:
        vs = {t["verdict"] for t in r.report.tunnels}
        assert vs and vs <= verdicts, f"verdicts {vs}, expected {verdicts}"
    for code, sev in must.items():
        assert code in got, f"{code} missing; got {sorted(got)}"
        if sev is not None:
            assert sev in got[code], f"{code} severity {got[code]}, expected {sev}"
    bad = sorted((set(got) & must_not) - set(must))
    assert not bad, f"unexpected findings {bad}"


def test_ipsec_client_evidence_and_numbers():
    r = _get("zeek-spicy-ipsec/traces/ipsec_client.pcap")
    f = next(f for f in r.findings if f.code == "IKE_FRAGMENTATION_LOSS")
    assert [e.frame for e in f.evidence.frames] == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert "3 time(s)" in f.detail and "2 retransmission(s)" in f.detail
    assert "isakmp.messageid == 1" in f.wireshark_filter
    tunnel = r.report.tunnels[0]
    assert tunnel["primary_code"] == "IKE_FRAGMENTATION_LOSS"


@pytest.mark.parametrize("rel", MALFORMED)
def test_malformed_corpus_passes(rel):
    r = _get(rel)
    cap = r.report.capture
    assert cap.frames >= 1
    failing = [f.code for f in r.findings if f.code in FAILURES]
    assert not failing, f"a fuzzed capture must not invent failures: {failing}"
    # every undecodable frame is counted with its frame number and reason
    assert cap.decode_errors == sum(cap.decode_errors_by_reason.values())
    for e in cap.decode_error_samples:
        assert e.frame >= 1 and e.reason
