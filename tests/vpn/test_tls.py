"""TLS/DTLS: dissect.vpn.tls (records, hellos, certificates, alerts, DTLS records), the
handshake stage logic of pcapvpn.track.tlsvpn, TLS_CERT_INVALID, and the SSL-VPN corpus captures
(FortiClient, AnyConnect with its DTLS channel, Suricata's tls-extra-alert)."""

from __future__ import annotations

import ipaddress

import pytest

from conftest import corpus_dir, tshark_fields
from dissect.vpn import tls
from dissect.vpn.errors import DissectError
from pcapvpn.track.tlsvpn import TlsConversation, cert_info
from test_vpn_rules import (C, S, T0, Cap, Conn, analyse, certificate, check_filters,
                            client_hello, codes, dtls_hs, dtls_record, hs, make_cert,
                            server_hello, tls12_handshake, tls_record, vpn_tunnels)


# -- dissector ------------------------------------------------------------------------------------

def test_records_split_across_segments():
    a = tls_record(22, client_hello("vpn.example.com", versions=(0x0304, 0x0303)), 0x0301)
    b = tls_record(23, bytes(50))
    stream = a + b + b[:3]
    recs, used = tls.split_records(stream)
    assert [(t, v) for t, v, _a, _b in recs] == [(22, 0x0301), (23, 0x0303)]
    assert used == len(a) + len(b)
    with pytest.raises(DissectError):
        tls.split_records(b"GET / HTTP/1.1\r\n")
    assert tls.looks_like_client_hello(a, 0, len(a)) and not tls.looks_like_client_hello(b, 0, 9)


def test_client_and_server_hello():
    ch = client_hello("vpn.example.com", versions=(0x0304, 0x0303))
    msgs, used = tls.split_handshakes(ch)
    (t, a, b), = msgs
    h = tls.parse_client_hello(ch, a, b)
    assert (h.sni, h.versions, h.cipher_suites) == ("vpn.example.com", (0x0304, 0x0303), 2)
    sh = server_hello(0x0304)
    (t, a, b), = tls.split_handshakes(sh)[0]
    s = tls.parse_server_hello(sh, a, b)
    assert (s.legacy_version, s.version, s.cipher_suite, s.retry) == (0x0303, 0x0304, 0xC02F,
                                                                       False)
    hrr = bytearray(sh)
    hrr[6:38] = tls.HRR_RANDOM
    assert tls.parse_server_hello(bytes(hrr), 4, len(hrr)).retry
    dch = client_hello(dtls=True)
    assert tls.parse_client_hello(dch, 4, len(dch), dtls=True).cookie_len == 0
    for n in range(4, len(ch), 7):
        try:
            tls.parse_client_hello(ch, 4, n)
        except DissectError:
            pass


def test_certificates_and_alerts():
    d1, d2 = make_cert("a"), make_cert("b")
    c = certificate([d1, d2])
    slices = tls.parse_certificate(c, 4, len(c))
    assert [c[x:y] for x, y in slices] == [d1, d2]
    c13 = hs(11, b"\x00" + (len(d1) + 5).to_bytes(3, "big") + len(d1).to_bytes(3, "big") + d1
             + b"\x00\x00")
    assert [c13[x:y] for x, y in tls.parse_certificate(c13, 4, len(c13), tls13=True)] == [d1]
    with pytest.raises(DissectError):
        tls.parse_certificate(c[:40], 4, 40)
    assert tls.parse_alert(b"\x02\x2a", 0, 2) == (2, 42)
    assert tls.alert_name(42) == "bad_certificate" and tls.alert_name(200) == "alert 200"
    with pytest.raises(DissectError):
        tls.parse_alert(bytes(26), 0, 26)


def test_dtls_records():
    body = dtls_hs(1, client_hello(dtls=True)[4:])
    dg = dtls_record(22, body, version=0x0100) + dtls_record(23, bytes(30), version=0x0100,
                                                             epoch=1, seq=5)
    assert tls.looks_like_dtls(dg, 0, len(dg))
    recs = tls.parse_dtls_records(dg, 0, len(dg))
    assert [(r[0], r[1], r[2], r[3]) for r in recs] == [(22, 0x0100, 0, 0), (23, 0x0100, 1, 5)]
    (t, a, b), = tls.split_handshakes(dg, recs[0][4], recs[0][5], dtls=True)[0]
    assert t == 1 and a > 0
    with pytest.raises(DissectError):
        tls.parse_dtls_records(dg[:-3], 0, len(dg) - 3)
    assert not tls.looks_like_dtls(b"\x16\x03\x03" + bytes(20), 0, 23)


def test_cert_info_validity_and_names():
    der = make_cert("vpn.example.com", not_before=T0 - 100, not_after=T0 + 100,
                    sans=["vpn.example.com", "*.vpn.example.org"])
    ci = cert_info(der)
    assert ci.valid_at(T0) is None and ci.valid_at(T0 + 200) == "expired"
    assert ci.valid_at(T0 - 200) == "not yet valid"
    assert ci.matches("VPN.example.com") and ci.matches("a.vpn.example.org")
    assert not ci.matches("b.a.vpn.example.org") and not ci.matches("example.com")
    bad = cert_info(b"\x30\x03\x02\x01\x00")
    assert bad.error and bad.valid_at(T0) is None


# -- handshake stages -----------------------------------------------------------------------------

def _rec(conv, from_client, raw, ts=0.0):
    for t, v, a, b in tls.split_records(raw)[0]:
        conv.side(from_client).record(t, v, raw, a, b, ts, (0, 1))


def test_stages_tls12_and_13():
    c = TlsConversation()
    assert c.stage == "none"
    _rec(c, True, tls_record(22, client_hello()))
    assert c.stage == "client_hello"
    _rec(c, False, tls_record(22, server_hello() + certificate([make_cert()])))
    assert c.stage == "server_hello"
    _rec(c, False, tls_record(22, hs(14, b"")))
    assert c.stage == "server_flight"
    _rec(c, True, tls_record(22, hs(16, bytes(10))) + tls_record(20, b"\x01")
         + tls_record(22, bytes(40)))
    assert c.stage == "client_flight"
    _rec(c, False, tls_record(20, b"\x01") + tls_record(22, bytes(40)))
    assert c.stage == "complete" and c.server.encrypted_hs == 1
    assert c.server.certs and c.server.certs[0].names == ["vpn.example.com"]
    t13 = TlsConversation()
    _rec(t13, True, tls_record(22, client_hello(versions=(0x0304,))))
    _rec(t13, False, tls_record(22, server_hello(0x0304)) + tls_record(20, b"\x01"))
    assert t13.tls13 and t13.stage == "server_hello"
    _rec(t13, False, tls_record(23, bytes(900)))
    assert t13.stage == "server_flight"
    _rec(t13, True, tls_record(20, b"\x01") + tls_record(23, bytes(50)))
    assert t13.stage == "client_flight"
    _rec(t13, False, tls_record(23, bytes(200)))
    _rec(t13, True, tls_record(23, bytes(200)))
    assert t13.stage == "complete"
    # an alert after ChangeCipherSpec is encrypted: never named
    _rec(c, True, tls_record(21, bytes(26)))
    assert c.client.alerts[-1].encrypted


# -- certificate rules ----------------------------------------------------------------------------

def test_expired_server_certificate_on_fortigate_port(tmp_path):
    c = Cap()
    k = Conn(c, C, S, 43000, 10443)
    k.handshake(0)
    tls12_handshake(k, 0.1, cert_der=make_cert("vpn.example.com", not_before=T0 - 400 * 86400,
                                                  not_after=T0 - 86400),
                    sni="vpn.example.com")
    p = c.write(tmp_path / "expired.pcap")
    r = analyse(p)
    assert codes(r) == ["TLS_CERT_INVALID"]
    f = r.findings[0]
    assert f.severity == "error" and "expired" in f.title and "server" in f.title
    assert vpn_tunnels(r)[0]["verdict"] == "failing"
    check_filters(p, r)


def test_name_mismatch_is_a_warning(tmp_path):
    c = Cap()
    k = Conn(c, C, S, 43000, 10443)
    k.handshake(0)
    tls12_handshake(k, 0.1, cert_der=make_cert("other.example.net", sans=["other.example.net"]),
                    sni="vpn.example.com")
    r = analyse(c.write(tmp_path / "name.pcap"))
    assert codes(r) == ["TLS_CERT_INVALID"]
    assert r.findings[0].severity == "warning" and "name mismatch" in r.findings[0].title
    assert vpn_tunnels(r)[0]["verdict"] == "degraded"


# -- corpus ---------------------------------------------------------------------------------------

def test_suricata_tls_extra_alert():
    """suricata-verify tls-extra-alert: ClientHello answered by a fatal handshake_failure (40).
    A web server unless named: with --vpn-server it is an SSL-VPN failing at the handshake."""
    path = corpus_dir() / "suricata-verify" / "tls-extra-alert" / "input.pcap"
    assert vpn_tunnels(analyse(path)) == []
    r = analyse(path, vpn_servers=[(ipaddress.ip_address("3.168.86.127").packed, 443)])
    assert codes(r) == ["TLS_ALERT"]
    f = r.findings[0]
    assert "handshake_failure" in f.title and f.severity == "error"
    assert "rejected the ClientHello" in f.detail
    t, = vpn_tunnels(r)
    assert t["verdict"] == "failing" and t["b"] == "3.168.86.127"
    # the same alert as tshark reads it
    rows = tshark_fields(path, ["frame.number", "tls.alert_message.desc"], "tls.alert_message")
    assert [(int(a), int(b)) for a, b in rows] == [(f.evidence.frames[0].frame, 40)]


def test_forticlient():
    """nDPI forticlient.pcap: 5 TLS sessions to 82.81.46.13:10443 (FortiGate), certificate
    CN=FWF60E4Q16012050 valid 2016-09-12 .. 2038-01-19 (nDPI result): healthy, no finding."""
    r = analyse(corpus_dir() / "nDPI" / "pcap" / "forticlient.pcap")
    t, = vpn_tunnels(r)
    assert (t["protocol"], t["server_port"], t["verdict"]) == ("sslvpn", 10443, "healthy")
    conns = t["vpn"]["tcp_connections"]
    assert len(conns) == 5 and all(c["tls"]["stage"] == "complete" for c in conns)
    cert = conns[0]["tls"]["server"]["certificates"][0]
    assert "CN=FWF60E4Q16012050" in cert["subject"]
    assert cert["not_before_ts"]["utc"].startswith("2016-09-12T10:06:20")
    assert cert["not_after_ts"]["utc"].startswith("2038-01-19T03:14:07")
    assert any("FortiGate" in s for s in t["vpn"]["sslvpn"]["recognised_by"])
    assert r.findings == []


def test_anyconnect_dtls():
    """nDPI anyconnect-vpn.pcap: TLS to 8.37.102.91:443 plus the DTLS (0x0100) data channel
    (29 frames, nDPI: 14 <-> 15 packets); the other TLS servers of the capture are web traffic."""
    r = analyse(corpus_dir() / "nDPI" / "pcap" / "anyconnect-vpn.pcap")
    t, = vpn_tunnels(r)
    assert (t["protocol"], t["b"], t["verdict"]) == ("sslvpn", "8.37.102.91", "healthy")
    d, = t["vpn"]["sslvpn"]["dtls_flows"]
    assert d["packets"] == {"client_to_server": 14, "server_to_client": 15}
    assert d["dtls"]["version"] == "DTLS 1.0 (pre-RFC, OpenSSL/Cisco)"
    assert d["dtls"]["stage"] == "complete"
    assert not [f for f in r.findings if f.severity in ("critical", "error", "warning")]
