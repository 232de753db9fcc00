"""The VPNs beside IPsec over the public corpus (../shared/corpus, MANIFEST.md): for each capture
the tunnels (protocol, server, verdict) and the findings that must / must not appear; the JSON
report validates against docs/schema.json; and no capture of the corpus that carries no such VPN
(IPsec, malformed, web traffic) grows a VPN tunnel."""

from __future__ import annotations

import json

import jsonschema
import pytest

from conftest import REPO, analysed, corpus_captures, corpus_dir, rel
from pcapvpn.report import render

SCHEMA = json.loads((REPO / "docs" / "schema.json").read_text())
BAD = {"OPENVPN_NO_RESPONSE", "OPENVPN_HANDSHAKE_STALLED", "TLS_ALERT", "TLS_CERT_INVALID",
       "WIREGUARD_NO_RESPONSE", "VPN_DATA_ONE_WAY", "TCP_NO_ANSWER", "TCP_RESET", "L2TP_ERROR",
       "PPTP_ERROR", "ICMP_UNREACHABLE", "DECODE_ERRORS"}

# path: ([(protocol, server, server_port, verdict)], must-have codes, must-not codes)
CASES = {
    # OpenVPN over TCP 1194 with tls-auth (HMAC-SHA1), P_DATA_V1 both ways
    "nDPI/pcap/443-opvn.pcap": ([("openvpn", "192.12.192.103", 1194, "healthy")], set(), BAD),
    # tls-crypt-v2 (HARD_RESET_CLIENT_V3 + WKC_V1) over IPv6 loopback; no data in 13 frames
    "nDPI/pcap/openvpn-tlscrypt.pcap": ([("openvpn", "::1", 1194, "unknown")], set(), BAD),
    "nDPI/pcap/openvpn_nohmac.pcapng": ([("openvpn", "85.134.13.165", 1194, "healthy")], set(),
                                        BAD),
    "nDPI/pcap/openvpn_nohmac_tcp.pcapng": ([("openvpn", "10.251.71.30", 1194, "healthy")],
                                            set(), BAD),
    # obfuscated (NordVPN): the client's bytes are no OpenVPN framing, the server's are
    # (its hard reset, tls-auth, a TLS 1.3 server flight inside; nDPI's heuristic calls the
    # flow obfuscated OpenVPN): one OpenVPN tunnel seen from the server, unknown
    "nDPI/pcap/openvpn_obfuscated.pcapng": ([("openvpn", "107.161.86.131", 443, "unknown")],
                                            set(), BAD),
    "zeek-spicy-openvpn/traces/openvpn.pcap": ([("openvpn", "46.246.122.61", 1198, "healthy")],
                                               set(), BAD),
    "zeek-spicy-openvpn/traces/openvpn_udp_hmac_256.pcap":
        ([("openvpn", "68.235.38.75", 1194, "healthy")], set(), BAD),
    "zeek-spicy-openvpn/traces/openvpn_tcp_nontlsauth.pcap":
        ([("openvpn", "192.168.56.102", 1194, "healthy")], set(), BAD),
    # two clients; the second one's port is closed after it leaves (ICMP port unreachable
    # from the client: the end of the session, not a failure)
    "zeek-spicy-openvpn/traces/openvpn_udp_tls-auth.pcap":
        ([("openvpn", "192.168.56.102", 1194, "healthy")] * 2, set(), BAD),
    "zeek-spicy-openvpn/traces/openvpn-tcp-tls-auth.pcap":
        ([("openvpn", "192.168.56.102", 1194, "healthy")] * 2, set(), BAD),
    "zeek-spicy-wireguard/Traces/wireguard.pcap":
        ([("wireguard", "188.166.170.115", 51194, "healthy")], set(), BAD),
    "zeek-spicy-wireguard/Traces/tailscale_linux.pcap":
        ([("wireguard", None, 41641, "healthy")], set(), BAD),
    "nDPI/pcap/tailscale.pcap": ([("wireguard", None, 41641, "healthy")], set(), BAD),
    "nDPI/pcap/mullvad_wireguard.pcap": ([("wireguard", "198.54.131.98", 5060, "healthy")],
                                         set(), BAD),
    # handshake answered, data from the client only for 0.3 s: too short to judge
    "nDPI/pcap/tunnelbear.pcap": ([("wireguard", "142.93.78.79", 51820, "unknown")], set(), BAD),
    "nDPI/pcap/anyconnect-vpn.pcap": ([("sslvpn", "8.37.102.91", 443, "healthy")], set(), BAD),
    "nDPI/pcap/forticlient.pcap": ([("sslvpn", "82.81.46.13", 10443, "healthy")], set(), BAD),
    # SoftEther (UDP 5004): not a protocol of this issue
    "nDPI/pcap/softether.pcap": ([], set(), BAD),
    # PPTP control only (no GRE in the capture): unknown, no error
    "nDPI/pcap/pptp.pcap": ([("pptp", "191.101.61.1", 1723, "unknown")], set(), BAD),
    "tcpdump/pptp.pcap": ([("pptp", "10.1.1.10", 1723, "unknown")], set(), BAD),
    # fuzzed L2TP: decode errors, no tunnel
    "tcpdump/l2tp-avp-overflow.pcap": ([], {"DECODE_ERRORS"}, BAD - {"DECODE_ERRORS"}),
    # a web server's handshake_failure: not a VPN unless named (test_tls names it)
    "suricata-verify/tls-extra-alert/input.pcap": ([], set(), BAD),
}


def _vpn(report):
    return [t for t in report.tunnels if t.get("protocol", "ipsec") != "ipsec"]


@pytest.mark.parametrize("path", sorted(CASES))
def test_corpus_vpn_diagnosis(path):
    full = corpus_dir() / path
    want, must, must_not = CASES[path]
    res = analysed(full)
    got = sorted((t["protocol"], t["b"], t["server_port"], t["verdict"])
                 for t in _vpn(res.report))
    exp = sorted((p, srv, port, v) for p, srv, port, v in want)
    assert [(p, port, v) for p, _s, port, v in got] == [(p, port, v) for p, _s, port, v in exp]
    for (_p, s1, _x, _v), (_q, s2, _y, _w) in zip(got, exp):
        assert s2 is None or s1 == s2
    codes = {f.code for f in res.findings}
    assert must <= codes, sorted(codes)
    assert not (codes & must_not), sorted(codes & must_not)
    doc = json.loads(render(res.report, "json"))
    jsonschema.validate(doc, SCHEMA)


def _no_vpn_captures():
    skip = set(CASES) | {"zeek-spicy-wireguard", "zeek-spicy-openvpn"}
    out = []
    for p in corpus_captures():
        r = rel(p)
        if r in skip or any(r.startswith(s) for s in skip):
            continue
        out.append(p)
    return out


@pytest.mark.parametrize("path", _no_vpn_captures(), ids=rel)
def test_no_vpn_invented(path):
    """IPsec and everything else in the corpus: no OpenVPN/WireGuard/L2TP/PPTP/SSL-VPN tunnel,
    none of their findings."""
    res = analysed(path)
    assert _vpn(res.report) == [], [t["id"] for t in _vpn(res.report)]
    assert not {f.code for f in res.findings} & (BAD - {"ICMP_UNREACHABLE", "DECODE_ERRORS"})




def test_obfuscated_openvpn_client_is_named_not_called_absent():
    """nDPI's NordVPN capture: the client's bytes carry no OpenVPN framing (obfuscated), the
    server's do.  The tunnel says the client sent bytes in which no OpenVPN packet could be
    read, not that the capture may hold only one direction (the client's segments are there)."""
    res = analysed(corpus_dir() / "nDPI/pcap/openvpn_obfuscated.pcapng")
    t, = _vpn(res.report)
    notes = " ".join(str(n) for n in t["not_seen"])
    assert "the client sent" in notes and "obfuscated OpenVPN" in notes
    assert "nothing from the client" not in notes
