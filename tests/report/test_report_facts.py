"""What a tunnel's section shows beside its findings (issue 14): with --keys, what the keys
revealed (decrypted counts with integrity, identities, certificates, proposals chosen, traffic
selectors, inner flows and pings answered) in text and HTML; the VPNs beside IPsec with their
handshakes, sessions, per-direction counts and TLS stage, and their frames counted under their
protocol in the capture summary."""

from __future__ import annotations

import pytest

from conftest import CAPTURES, corpus_dir
from pcapvpn.analysis import Options, run
from pcapvpn.decrypt.keyfile import load_keys
from pcapvpn.report import render

LAB = CAPTURES / "lab"


def _keyed(name):
    scen = LAB / name
    return run([str(scen / f"{name}.pcap")], Options(keys=load_keys([scen / "keys"]))).report


def test_what_the_keys_showed_in_text_and_html():
    report = _keyed("ikev2_healthy")
    want = ["decrypted 4/4 IKE messages (integrity verified), 10/10 ESP packets (ICV ok)",
            "identities: IDi left.lab.example; IDr right.lab.example",
            "proposals chosen: IKE_SA_INIT: IKE:aes128-sha256-modp2048; IKE_AUTH: "
            "ESP:aes128-sha256-noesn",
            "traffic selectors: 10.10.1.0/24 <=> 10.20.1.0/24",
            "10.10.1.1 -> 10.20.1.1 ICMP (5 packets)",
            "pings answered: 5/5"]
    text = " ".join(render(report, "text").split())
    html = render(report, "html").replace("&lt;", "<").replace("&gt;", ">")
    for w in want:
        assert w in text, w
        assert w in html, w
    assert "What the keys showed" in html
    # without keys nothing of the kind
    plain = render(run([str(LAB / "ikev2_healthy" / "ikev2_healthy.pcap")]).report, "text")
    assert "decrypted" not in plain and "identities:" not in plain


def test_certificates_and_failed_authentication():
    report = _keyed("ikev2_cert_untrusted")
    text = " ".join(render(report, "text").split())
    assert "certificates: CN=left.lab.example,O=pcapvpn lab,C=ZZ (issuer" in text
    assert "identities: IDi left.lab.example; IDr right.lab.example" in text


def test_openvpn_section_and_frames_under_their_protocol():
    report = run([str(LAB / "openvpn_udp_healthy" / "openvpn_udp_healthy.pcap")]).report
    text = render(report, "text")
    sec = text[text.index("== 192.0.2.2<->198.51.100.2:1194/udp =="):]
    sec = sec[:sec.index("\n\n")]
    for w in ("client 192.0.2.2 (port", "packets: 20 client -> server (10 data), 18 server -> "
              "client (10 data)", "control channel: plain", "session 1: established",
              "TLS complete (TLS 1.3)"):
        assert w in " ".join(sec.split()), w
    c = report.capture.counts
    assert c.openvpn_frames == 38 and c.other_ip_frames == 0
    assert "OpenVPN frames" in text and "What the capture shows" in render(report, "html")


@pytest.mark.parametrize("rel, words, counter", [
    ("zeek-spicy-wireguard/Traces/wireguard.pcap",
     ["handshakes: 1 initiation(s), 1 answered"], "wireguard_frames"),
    ("nDPI/pcap/forticlient.pcap",
     ["recognised as an SSL-VPN by", "TLS stage: complete (TLS 1.2)", "TCP connections: 5"],
     "sslvpn_frames"),
    ("nDPI/pcap/pptp.pcap",
     ["control messages: Start-Control-Connection-Request x1", "Call-Disconnect-Notify"],
     "pptp_frames"),
])
def test_vpn_sections_from_the_corpus(rel, words, counter):
    path = corpus_dir() / rel
    if not path.exists():
        pytest.fail(f"{path} missing from the corpus")
    report = run([str(path)]).report
    text = " ".join(render(report, "text").split())
    for w in words:
        assert w in text, w
    c = report.capture.counts
    assert getattr(c, counter) > 0
    total = sum(getattr(c, k) for k in ("openvpn_frames", "wireguard_frames", "l2tp_frames",
                                        "pptp_frames", "sslvpn_frames"))
    assert total + c.other_ip_frames + c.non_ip_frames <= report.capture.frames
