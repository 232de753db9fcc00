"""VPNs beside IPsec, end to end on synthetic captures: decoder integration (which datagrams and
TCP streams are followed), the tracker's tunnels, every rule of pcapvpn.rules.vpn, verdicts, the
JSON schema, and the Wireshark filters of the findings (run through ``tshark -Y``).

The builders at the top are shared by the other VPN test modules (test_openvpn, test_wireguard,
test_l2tp_pptp, test_tls)."""

from __future__ import annotations

import json
import struct
import subprocess

from conftest import REPO, tshark_path
from synth import ip_frame, ipv4, udp, write_pcap
from pcapvpn.analysis import Options, run

T0 = 1_700_000_000.0
C, S = "192.0.2.10", "198.51.100.20"
ROUTER = "203.0.113.1"


# -- builders ------------------------------------------------------------------------------------

def tcp_seg(sport, dport, seq, ack, flags, payload=b""):
    """TCP header (20 bytes) + payload; flags: 'S', 'SA', 'A', 'PA', 'R', 'RA', 'FA'."""
    bits = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10}
    f = 0
    for ch in flags:
        f |= bits[ch]
    return struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 5 << 4, f, 65535, 0, 0) + payload


class Cap:
    """Frames of one synthetic capture (relative times) and TCP conversations."""

    def __init__(self):
        self.frames = []

    def add(self, ts, data):
        self.frames.append((ts, data))

    def udp(self, ts, src, dst, sport, dport, payload):
        self.add(ts, ip_frame(src, dst, 17, udp(sport, dport, payload)))

    def raw_ip(self, ts, src, dst, proto, payload):
        self.add(ts, ip_frame(src, dst, proto, payload))

    def tcp(self, ts, src, dst, sport, dport, seq, ack, flags, payload=b""):
        self.add(ts, ip_frame(src, dst, 6, tcp_seg(sport, dport, seq, ack, flags, payload)))

    def write(self, path):
        self.frames.sort(key=lambda f: f[0])
        return write_pcap(path, [(T0 + ts, data) for ts, data in self.frames])


class Conn:
    """A TCP connection client -> server with sequence numbers kept."""

    def __init__(self, cap, client, server, cport, sport, isn_c=1000, isn_s=5000):
        self.cap, self.c, self.s, self.cp, self.sp = cap, client, server, cport, sport
        self.seq = {True: isn_c, False: isn_s}

    def handshake(self, ts):
        self.syn(ts)
        self.cap.tcp(ts + 0.01, self.s, self.c, self.sp, self.cp, self.seq[False],
                     self.seq[True] + 1, "SA")
        self.seq[True] += 1
        self.seq[False] += 1
        self.cap.tcp(ts + 0.02, self.c, self.s, self.cp, self.sp, self.seq[True],
                     self.seq[False], "A")

    def syn(self, ts):
        self.cap.tcp(ts, self.c, self.s, self.cp, self.sp, self.seq[True], 0, "S")

    def send(self, ts, from_client, payload, flags="PA"):
        src, dst, a, b = (self.c, self.s, self.cp, self.sp) if from_client else \
            (self.s, self.c, self.sp, self.cp)
        self.cap.tcp(ts, src, dst, a, b, self.seq[from_client], self.seq[not from_client],
                     flags, payload)
        self.seq[from_client] += len(payload)

    def rst(self, ts, from_client, ack=True):
        src, dst, a, b = (self.c, self.s, self.cp, self.sp) if from_client else \
            (self.s, self.c, self.sp, self.cp)
        self.cap.tcp(ts, src, dst, a, b, self.seq[from_client], self.seq[not from_client],
                     "RA" if ack else "R")


# OpenVPN (ssl_pkt.h layout; see dissect.vpn.openvpn)

def ovpn_control(op, sid, pid=0, acks=(), rsid=0, payload=b"", key_id=0, hmac=0, replay=1,
                 net_time=None):
    b = bytes([(op << 3) | key_id]) + struct.pack(">Q", sid)
    if hmac:
        b += bytes(range(hmac)) + struct.pack(">II", replay, int(net_time or T0))
    b += bytes([len(acks)]) + b"".join(struct.pack(">I", a) for a in acks)
    if acks:
        b += struct.pack(">Q", rsid)
    if op != 5:
        b += struct.pack(">I", pid) + payload
    return b


def ovpn_crypt(op, sid, replay=1, net_time=None, body=64, wkc=0, key_id=0):
    """tls-crypt(-v2) control packet: replay ID, net time, 32-byte tag, encrypted body."""
    b = bytes([(op << 3) | key_id]) + struct.pack(">QII", sid, replay, int(net_time or T0))
    b += bytes(range(32)) + bytes((i * 13 + 5) & 0xFF for i in range(body))
    if wkc:
        b += bytes(wkc - 2) + struct.pack(">H", wkc)
    return b


def ovpn_data(n=100, v2=True, peer_id=7, key_id=0):
    if v2:
        return bytes([(9 << 3) | key_id]) + peer_id.to_bytes(3, "big") + bytes(n)
    return bytes([(6 << 3) | key_id]) + bytes(n)


def tcp_frame_ovpn(pkt):
    return struct.pack(">H", len(pkt)) + pkt


# WireGuard (paper §5.4)

def wg_init(sender, pad=b""):
    return struct.pack("<BxxxI", 1, sender) + bytes(range(108)) + bytes(32) + pad


def wg_resp(sender, receiver):
    return struct.pack("<BxxxII", 2, sender, receiver) + bytes(range(48)) + bytes(32)


def wg_cookie(receiver):
    return struct.pack("<BxxxI", 3, receiver) + bytes(56)


def wg_data(receiver, counter, plen=64):
    return struct.pack("<BxxxIQ", 4, receiver, counter) + bytes(plen + 16)


# TLS (RFC 8446 / RFC 5246)

def tls_record(ctype, body, version=0x0303):
    return struct.pack(">BHH", ctype, version, len(body)) + body


def hs(msg_type, body):
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def dtls_record(ctype, body, version=0xFEFD, epoch=0, seq=0):
    return struct.pack(">BHH", ctype, version, epoch) + seq.to_bytes(6, "big") \
        + struct.pack(">H", len(body)) + body


def dtls_hs(msg_type, body, msg_seq=0):
    n = len(body).to_bytes(3, "big")
    return bytes([msg_type]) + n + struct.pack(">H", msg_seq) + bytes(3) + n + body


def ext(etype, body):
    return struct.pack(">HH", etype, len(body)) + body


def client_hello(sni=None, versions=(), dtls=False):
    exts = b""
    if sni:
        name = sni.encode()
        lst = b"\x00" + struct.pack(">H", len(name)) + name
        exts += ext(0, struct.pack(">H", len(lst)) + lst)
    if versions:
        exts += ext(43, bytes([2 * len(versions)]) + b"".join(struct.pack(">H", v)
                                                              for v in versions))
    body = struct.pack(">H", 0xFEFD if dtls else 0x0303) + bytes(32) + b"\x00"
    if dtls:
        body += b"\x00"
    body += struct.pack(">H", 4) + b"\x13\x01\xc0\x2f" + b"\x01\x00"
    body += struct.pack(">H", len(exts)) + exts
    return hs(1, body)


def server_hello(version=0x0303, cipher=0xC02F):
    exts = ext(43, struct.pack(">H", version)) if version == 0x0304 else b""
    body = struct.pack(">H", 0x0303) + bytes(range(32)) + b"\x00" + struct.pack(">H", cipher) \
        + b"\x00" + struct.pack(">H", len(exts)) + exts
    return hs(2, body)


def certificate(ders):
    lst = b"".join(len(d).to_bytes(3, "big") + d for d in ders)
    return hs(11, len(lst).to_bytes(3, "big") + lst)


def make_cert(cn="vpn.example.com", not_before=None, not_after=None, sans=None,
              issuer_o="Example CA"):
    """A self-signed certificate (DER) with the given validity (epoch seconds)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subj = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    iss = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, issuer_o),
                     x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    nb = dt.datetime.fromtimestamp(not_before or T0 - 86400 * 30, dt.timezone.utc)
    na = dt.datetime.fromtimestamp(not_after or T0 + 86400 * 365, dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subj).issuer_name(iss).public_key(key.public_key())
         .serial_number(1234).not_valid_before(nb).not_valid_after(na))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), False)
    return b.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def tls12_handshake(conn, t, cert_der=None, sni=None, appdata=True, server_done=True):
    """A TLS 1.2 full handshake on ``conn`` starting at ``t``; returns the time after it."""
    conn.send(t, True, tls_record(22, client_hello(sni), 0x0301))
    flight = server_hello() + certificate([cert_der or make_cert()]) + hs(14, b"")
    conn.send(t + 0.05, False, tls_record(22, flight))
    if not server_done:
        return t + 0.1
    conn.send(t + 0.1, True, tls_record(22, hs(16, bytes(66))) + tls_record(20, b"\x01")
              + tls_record(22, bytes(40)))
    conn.send(t + 0.15, False, tls_record(20, b"\x01") + tls_record(22, bytes(40)))
    if appdata:
        conn.send(t + 0.2, True, tls_record(23, bytes(100)))
        conn.send(t + 0.25, False, tls_record(23, bytes(300)))
    return t + 0.3


def analyse(path, **opts):
    return run([str(path)], Options(**opts))


def codes(result):
    return sorted(f.code for f in result.findings)


def vpn_tunnels(result):
    return [t for t in result.report.tunnels if t.get("protocol", "ipsec") != "ipsec"]


def check_filters(path, result):
    """Every finding's filter is valid for tshark 4.0 and shows at least one evidence frame."""
    tshark = tshark_path()
    for f in result.findings:
        if not f.wireshark_filter:
            continue
        cp = subprocess.run([tshark, "-n", "-r", str(path), "-Y", f.wireshark_filter, "-T",
                             "fields", "-e", "frame.number"], capture_output=True, text=True,
                            timeout=60)
        assert cp.returncode == 0, f"{f.code}: bad filter {f.wireshark_filter!r}: {cp.stderr}"
        shown = {int(x) for x in cp.stdout.split()}
        ev = {fr.frame for fr in f.evidence.frames}
        if ev:
            assert shown & ev, f"{f.code}: filter {f.wireshark_filter!r} shows none of {ev}"


# -- decoder integration -------------------------------------------------------------------------

def test_random_udp_is_not_a_vpn(tmp_path):
    """Datagrams whose first byte happens to be an OpenVPN opcode, on ports other than 1194,
    make no tunnel; nor do DNS-like flows or a lone WireGuard-shaped data packet."""
    import random

    rnd = random.Random(7)
    c = Cap()
    for i in range(400):
        payload = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(20, 300)))
        c.udp(i * 0.01, C, S, 40000 + i % 7, 3478 + i % 3, payload)
        c.udp(i * 0.01 + 0.005, S, C, 3478 + i % 3, 40000 + i % 7, payload[::-1])
    c.udp(5.0, C, S, 5555, 6666, wg_data(0x1234, 5))  # one packet: not enough
    c.udp(5.1, C, S, 5353, 53, ovpn_control(7, 1))     # DNS port
    r = analyse(c.write(tmp_path / "rnd.pcap"))
    assert vpn_tunnels(r) == []
    assert r.findings == [] or all(f.code.startswith("CAPTURE") for f in r.findings)


def test_ipsec_path_untouched(tmp_path):
    """ESP and IKE datagrams never reach the VPN tracker (the hot path stays as it was)."""
    from pcapvpn.decode import Decoder, NullSink
    from synth import esp_frame

    class Sink(NullSink):
        def __init__(self):
            self.vpn = 0
            self.esp_n = 0

        def esp(self, *a):
            self.esp_n += 1

        def vpn_udp(self, *a):
            self.vpn += 1

    s = Sink()
    frames = [(0, i + 1, T0 + i, 1, esp_frame(C, S, 0x1001, i + 1, udp_ports=(4500, 4500)),
               100, 0) for i in range(10)]
    Decoder(s).run(frames)
    assert s.esp_n == 10 and s.vpn == 0


def test_openvpn_tcp_on_any_port_and_on_443(tmp_path):
    c = Cap()
    for port, cport in ((8443, 40001), (443, 40002)):
        k = Conn(c, C, S, cport, port)
        k.handshake(0.0)
        k.send(0.1, True, tcp_frame_ovpn(ovpn_control(7, 0x1111 + port)))
        k.send(0.2, False, tcp_frame_ovpn(ovpn_control(8, 0x2222 + port, acks=[0],
                                                       rsid=0x1111 + port)))
        for i in range(5):
            k.send(1 + i, True, tcp_frame_ovpn(ovpn_data()))
            k.send(1.1 + i, False, tcp_frame_ovpn(ovpn_data()))
    r = analyse(c.write(tmp_path / "ovtcp.pcap"))
    ts = {t["server_port"]: t for t in vpn_tunnels(r)}
    assert set(ts) == {8443, 443}
    for t in ts.values():
        assert t["protocol"] == "openvpn" and t["verdict"] == "healthy", t
        assert t["vpn"]["data_packets"] == {"client_to_server": 5, "server_to_client": 5}
    assert not [f for f in r.findings if f.severity in ("critical", "error", "warning")]


# -- TCP reachability ----------------------------------------------------------------------------

def test_tcp_no_answer_and_pending(tmp_path):
    c = Cap()
    k = Conn(c, C, S, 41000, 1194)
    for i, dt in enumerate((0, 1, 3, 7)):
        k.syn(dt)
    r = analyse(c.write(tmp_path / "syn.pcap"))
    assert codes(r) == ["TCP_NO_ANSWER"]
    t = vpn_tunnels(r)[0]
    assert t["verdict"] == "failing" and t["failed_stage"] == "reachability"
    f = r.findings[0]
    assert "4 SYN(s)" in f.detail and len(f.evidence.frames) == 4
    check_filters(tmp_path / "syn.pcap", r)
    # one SYN and the capture ends 2 s later: not established either way
    c2 = Cap()
    Conn(c2, C, S, 41001, 1194).syn(0)
    c2.udp(2.0, C, "192.0.2.99", 1, 2, b"x")
    r2 = analyse(c2.write(tmp_path / "syn1.pcap"))
    assert "TCP_NO_ANSWER" not in codes(r2)
    assert vpn_tunnels(r2)[0]["verdict"] == "unknown"


def test_tcp_reset_refused_and_later_success(tmp_path):
    c = Cap()
    k = Conn(c, C, S, 41000, 1723)
    k.syn(0)
    c.tcp(0.01, S, C, 1723, 41000, 0, 1001, "RA")
    r = analyse(c.write(tmp_path / "rst.pcap"))
    assert codes(r) == ["TCP_RESET"]
    assert "refused" in r.findings[0].title
    check_filters(tmp_path / "rst.pcap", r)
    # a later connection that works: the refusal is history, no finding
    k2 = Conn(c, C, S, 41001, 1723)
    k2.handshake(5)
    r2 = analyse(c.write(tmp_path / "rst2.pcap"))
    assert "TCP_RESET" not in codes(r2)


def test_vpn_server_names_a_tls_server(tmp_path):
    """TLS on 443 is an SSL-VPN only when named (or with a DTLS channel / signature)."""
    import ipaddress

    c = Cap()
    k = Conn(c, C, S, 42000, 443)
    k.handshake(0)
    k.send(0.1, True, tls_record(22, client_hello("vpn.example.com"), 0x0301))
    k.send(0.2, False, tls_record(21, b"\x02\x28"))
    p = c.write(tmp_path / "alert.pcap")
    assert vpn_tunnels(analyse(p)) == []
    r = analyse(p, vpn_servers=[(ipaddress.ip_address(S).packed, None)])
    assert codes(r) == ["TLS_ALERT"]
    assert "handshake_failure" in r.findings[0].title
    t = vpn_tunnels(r)[0]
    assert t["protocol"] == "sslvpn" and t["verdict"] == "failing"
    check_filters(p, r)
    # --vpn-server ADDR:PORT follows TLS on any port
    c2 = Cap()
    k = Conn(c2, C, S, 42001, 8443)
    k.handshake(0)
    k.send(0.1, True, tls_record(22, client_hello(), 0x0301))
    k.send(0.2, False, tls_record(21, b"\x02\x30"))
    r2 = analyse(c2.write(tmp_path / "alert8443.pcap"),
                 vpn_servers=[(ipaddress.ip_address(S).packed, 8443)])
    assert codes(r2) == ["TLS_ALERT"] and "unknown_ca" in r2.findings[0].title
    # a named gateway whose handshake stops without an alert: unknown, with the stage
    c3 = Cap()
    k = Conn(c3, C, S, 42002, 443)
    k.handshake(0)
    k.send(0.1, True, tls_record(22, client_hello(), 0x0301))
    c3.udp(30, C, "192.0.2.99", 1, 2, b"x")
    r3 = analyse(c3.write(tmp_path / "stall443.pcap"),
                 vpn_servers=[(ipaddress.ip_address(S).packed, None)])
    t, = vpn_tunnels(r3)
    assert t["verdict"] == "unknown"
    assert any("never completed the handshake (stage reached: client hello)" in n
               for n in t["not_seen"])


def test_fortigate_port_and_dtls_channel(tmp_path):
    c = Cap()
    k = Conn(c, C, S, 43000, 10443)
    k.handshake(0)
    tls12_handshake(k, 0.1)
    r = analyse(c.write(tmp_path / "forti.pcap"))
    t = vpn_tunnels(r)[0]
    assert t["protocol"] == "sslvpn" and t["verdict"] == "healthy"
    assert r.findings == [] or all(f.severity == "info" for f in r.findings)
    # a DTLS channel makes a 443 server an SSL-VPN; one that is never answered is one-way
    c = Cap()
    k = Conn(c, C, S, 43001, 443)
    k.handshake(0)
    tls12_handshake(k, 0.1)
    hello = client_hello(dtls=True)
    for i in range(3):
        c.udp(1 + i, C, S, 50000, 443, dtls_record(22, dtls_hs(1, hello[4:]), seq=i))
    p = c.write(tmp_path / "dtls.pcap")
    r = analyse(p)
    t = vpn_tunnels(r)[0]
    assert "DTLS data channel beside the TLS session" in t["vpn"]["sslvpn"]["recognised_by"]
    assert codes(r) == ["VPN_DATA_ONE_WAY"]
    assert r.findings[0].severity == "warning"  # TLS works: degraded, not failing
    assert t["verdict"] == "degraded"
    check_filters(p, r)


def test_icmp_about_vpn_ports(tmp_path):
    c = Cap()
    for i in range(3):
        pkt = udp(40000, 51820, wg_init(0x100 + i))
        c.udp(i * 5.0, C, S, 40000, 51820, wg_init(0x100 + i))
        quoted = ipv4(C, S, 17, pkt)[:28]
        icmp = struct.pack(">BBHI", 3, 13, 0, 0) + quoted
        c.raw_ip(i * 5.0 + 0.01, ROUTER, C, 1, icmp)
    p = c.write(tmp_path / "icmp.pcap")
    r = analyse(p)
    assert "ICMP_UNREACHABLE" in codes(r) and "WIREGUARD_NO_RESPONSE" in codes(r)
    f = next(f for f in r.findings if f.code == "ICMP_UNREACHABLE")
    assert "administratively prohibited" in f.title and f.tunnel == vpn_tunnels(r)[0]["id"]
    check_filters(p, r)


def test_report_schema_and_text(tmp_path):
    import jsonschema

    from pcapvpn.report import render

    c = Cap()
    k = Conn(c, C, S, 41000, 1194)
    for dt in (0, 1, 3):
        k.syn(dt)
    c.udp(0, C, S, 40000, 51820, wg_init(1))
    c.udp(0.05, S, C, 51820, 40000, wg_resp(2, 1))
    for i in range(6):
        c.udp(1 + i, C, S, 40000, 51820, wg_data(2, i))
        c.udp(1.1 + i, S, C, 51820, 40000, wg_data(1, i))
    r = analyse(c.write(tmp_path / "mix.pcap"))
    schema = json.loads((REPO / "docs" / "schema.json").read_text())
    doc = json.loads(render(r.report, "json"))
    jsonschema.validate(doc, schema)
    protos = {t["protocol"] for t in doc["tunnels"]}
    assert protos == {"openvpn", "wireguard"}
    text = render(r.report, "text")
    assert "TCP_NO_ANSWER" in text and "198.51.100.20:51820/udp" in text


def test_cli_vpn_server(tmp_path):
    import sys

    c = Cap()
    k = Conn(c, C, S, 42000, 443)
    k.handshake(0)
    k.send(0.1, True, tls_record(22, client_hello("vpn.example.com"), 0x0301))
    k.send(0.2, False, tls_record(21, b"\x02\x28"))
    p = c.write(tmp_path / "cli.pcap")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", str(p), *args],
                              capture_output=True, text=True, timeout=120, cwd=REPO)

    plain = cli("--format", "json")
    assert plain.returncode == 0 and "TLS_ALERT" not in plain.stdout
    for spec in (S, f"{S}:443"):
        named = cli("--format", "json", "--vpn-server", spec)
        assert named.returncode == 1, named.stderr
        doc = json.loads(named.stdout)
        assert [f["code"] for f in doc["findings"]] == ["TLS_ALERT"]
    bad = cli("--vpn-server", f"{S}:0")
    assert bad.returncode == 2 and "port" in bad.stderr
    assert cli("--vpn-server", "[2001:db8::1]:443").returncode == 0


# -- robustness: dissectors raise only DissectError; the pipeline never breaks -------------------

def _seeds():
    return [ovpn_control(7, 1), ovpn_control(8, 2, acks=[0], rsid=1, hmac=20),
            ovpn_control(4, 1, pid=1, payload=tls_record(22, client_hello("a.b"))),
            ovpn_crypt(10, 1, wkc=60), ovpn_data(), wg_init(1), wg_resp(2, 1), wg_cookie(1),
            wg_data(1, 2), tls_record(22, client_hello("x", versions=(0x0304,))),
            tls_record(22, server_hello(0x0304)), tls_record(22, certificate([bytes(40)])),
            dtls_record(22, dtls_hs(1, client_hello(dtls=True)[4:])),
            struct.pack(">HHHHHH", 0xC802, 20, 1, 0, 0, 0) + struct.pack(">HHHH", 0x8008, 0, 0, 1),
            struct.pack(">HHIHH", 156, 1, 0x1A2B3C4D, 2, 0) + bytes(144),
            struct.pack(">HHHHI", 0x3001, 0x880B, 10, 1, 1) + bytes(10)]


def test_dissectors_fuzz():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from dissect.vpn import l2tp, openvpn, pptp, tls, wireguard
    from dissect.vpn.errors import DissectError

    parsers = [
        lambda b: openvpn.parse_header(b, 0, len(b)),
        lambda b: [openvpn.parse_control(b, 0, len(b), lay) for lay in (0, -1, 20, 32)],
        lambda b: openvpn.detect_layout(b, 0, len(b)),
        lambda b: openvpn.wrap_candidates(b, 0, len(b)),
        lambda b: openvpn.split_tcp(b),
        lambda b: openvpn.tcp_stream_start(b, 0, len(b)),
        lambda b: wireguard.parse(b, 0, len(b)),
        lambda b: tls.split_records(b),
        lambda b: tls.split_handshakes(b),
        lambda b: tls.split_handshakes(b, dtls=True),
        lambda b: tls.parse_client_hello(b, 4, len(b)),
        lambda b: tls.parse_client_hello(b, 4, len(b), dtls=True),
        lambda b: tls.parse_server_hello(b, 4, len(b)),
        lambda b: tls.parse_certificate(b, 4, len(b)),
        lambda b: tls.parse_certificate(b, 4, len(b), tls13=True),
        lambda b: tls.parse_dtls_records(b, 0, len(b)),
        lambda b: l2tp.parse_control(b, 0, len(b)),
        lambda b: pptp.split_stream(b),
        lambda b: pptp.parse_message(b, 0, len(b)),
        lambda b: pptp.parse_gre(b, 0, len(b)),
    ]

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(_seeds()), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)),
                                               max_size=6), st.integers(0, 400))
    def run_one(seed, flips, cut):
        b = bytearray(seed)
        for pos, val in flips:
            if b:
                b[pos % len(b)] = val
        b = bytes(b[:cut])
        for p in parsers:
            try:
                p(b)
            except DissectError:
                pass

    run_one()


def test_pipeline_fuzz(tmp_path):
    """Mutated VPN packets on their ports: counted as decode errors at worst, never an internal
    error of the decoder or the tracker."""
    import random

    rnd = random.Random(11)
    c = Cap()
    seeds = _seeds()
    for i in range(1500):
        b = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(0, 4)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        b = bytes(b[:rnd.randint(1, len(b))])
        port = rnd.choice((1194, 51820, 1701, 443, 40000))
        if rnd.random() < 0.5:
            c.udp(i * 0.01, C, S, 30000 + i % 5, port, b)
        else:
            c.udp(i * 0.01, S, C, port, 30000 + i % 5, b)
        if i % 7 == 0:
            c.tcp(i * 0.01, C, S, 30000 + i % 5, rnd.choice((1194, 1723, 443)),
                  rnd.randrange(2 ** 32), 0, "PA", struct.pack(">H", len(b)) + b)
        if i % 11 == 0:
            c.raw_ip(i * 0.01, C, S, 47, b)
    r = analyse(c.write(tmp_path / "fuzz.pcap"))
    reasons = r.report.capture.decode_errors_by_reason
    assert not [k for k in reasons if "internal" in k], reasons
