"""L2TP (v2 and v3 over UDP 1701) and PPTP (TCP 1723 control, enhanced GRE data): dissectors,
tracker, rules (L2TP_ERROR, PPTP_ERROR, GRE one-way), and the corpus (nDPI and tcpdump PPTP
captures, tcpdump's malformed L2TP capture)."""

from __future__ import annotations

import struct

import pytest

from conftest import corpus_dir
from dissect.vpn import l2tp, pptp
from dissect.vpn.errors import DissectError
from test_vpn_rules import C, S, Cap, Conn, analyse, check_filters, codes, vpn_tunnels


# -- builders -------------------------------------------------------------------------------------

def avp(atype, value, m=True, hidden=False, vendor=0):
    w = (0x8000 if m else 0) | (0x4000 if hidden else 0) | (6 + len(value))
    return struct.pack(">HHH", w, vendor, atype) + value


def l2tp_ctl(msg_type, tid=0, sid=0, ns=0, nr=0, extra=(), version=2):
    body = b"" if msg_type is None else avp(0, struct.pack(">H", msg_type))
    body += b"".join(extra)
    if version == 3:
        return struct.pack(">HHIHH", 0xC803, 12 + len(body), tid, ns, nr) + body
    return struct.pack(">HHHHHH", 0xC802, 12 + len(body), tid, sid, ns, nr) + body


def l2tp_data(tid, sid, n=60):
    return struct.pack(">HHH", 0x0002, tid, sid) + b"\xff\x03\x00\x21" + bytes(n)


def result(code, error=None, msg=b""):
    v = struct.pack(">H", code) + (struct.pack(">H", error) if error is not None else b"") + msg
    return avp(1, v)


def pptp_msg(ctype, body):
    return struct.pack(">HHIHH", 12 + len(body), 1, pptp.MAGIC, ctype, 0) + body


def sccrq():
    return pptp_msg(1, struct.pack(">HHIIHH", 0x0100, 0, 1, 1, 0, 0) + b"client".ljust(64, b"\0")
                    + b"Microsoft".ljust(64, b"\0"))


def sccrp(res=1, err=0):
    return pptp_msg(2, struct.pack(">HBBIIHH", 0x0100, res, err, 1, 1, 0, 0)
                    + b"server".ljust(64, b"\0") + b"Vendor".ljust(64, b"\0"))


def ocrq(call=1):
    return pptp_msg(7, struct.pack(">HH", call, 1) + bytes(152))


def ocrp(call=2, peer=1, res=1, err=0):
    return pptp_msg(8, struct.pack(">HHBBHIHHI", call, peer, res, err, 0, 100000000, 64, 0, 0))


def cdn(call=2, res=3, err=0):
    return pptp_msg(13, struct.pack(">HBBHH", call, res, err, 0, 0) + bytes(128))


def gre(call, seq, n=80, ack=None):
    flags = 0x3001 | (0x0080 if ack is not None else 0)
    h = struct.pack(">HHHHI", flags, 0x880B, n, call, seq)
    if ack is not None:
        h += struct.pack(">I", ack)
    return h + bytes(n)


# -- dissectors -----------------------------------------------------------------------------------

def test_l2tp_v2_control_and_data():
    m = l2tp_ctl(l2tp.STOPCCN, tid=5, ns=3, nr=2,
                 extra=[avp(9, struct.pack(">H", 77)), result(2, 6, b"vendor says no")])
    c = l2tp.parse_control(m, 0, len(m))
    assert (c.header.version, c.header.tunnel_id, c.header.ns, c.header.nr) == (2, 5, 3, 2)
    assert (c.msg_type, c.result, c.error, c.error_message) == (4, 2, 6, "vendor says no")
    assert c.assigned_tunnel_id == 77
    assert "General error" in l2tp.result_text(c.msg_type, c.result, c.error)
    z = l2tp_ctl(None, tid=5, ns=4, nr=3)
    assert l2tp.parse_control(z, 0, len(z)).msg_type is None  # ZLB
    d = l2tp_data(5, 9)
    h = l2tp.parse_header(d, 0, len(d))
    assert (h.control, h.tunnel_id, h.session_id, h.payload_off) == (False, 5, 9, 6)
    hidden = l2tp_ctl(l2tp.CDN, extra=[avp(1, bytes(8), hidden=True)])
    assert l2tp.parse_control(hidden, 0, len(hidden)).result is None


def test_l2tp_v3():
    m = l2tp_ctl(l2tp.SCCRQ, tid=0, version=3, extra=[avp(61, struct.pack(">I", 0xDEADBEEF))])
    c = l2tp.parse_control(m, 0, len(m))
    assert (c.header.version, c.msg_type, c.assigned_tunnel_id) == (3, 1, 0xDEADBEEF)
    d = struct.pack(">HHI", 0x0003, 0, 0x1234) + bytes(20)
    h = l2tp.parse_header(d, 0, len(d))
    assert (h.version, h.control, h.session_id) == (3, False, 0x1234)


@pytest.mark.parametrize("raw", [
    b"\xc8\x02\x02\x02" + bytes(8),                     # Length past the datagram
    struct.pack(">HHHHHH", 0xC802, 20, 1, 0, 0, 0) + struct.pack(">HHH", 0x8000 | 40, 0, 0) + b"xx",
    struct.pack(">HHHHHH", 0xC802, 18, 1, 0, 0, 0) + avp(7, b"host"),  # first AVP not a type
    b"\xc8\x05" + bytes(10),                             # version 5
    b"\x80\x02",                                         # truncated
])
def test_l2tp_malformed(raw):
    with pytest.raises(DissectError):
        l2tp.parse_control(raw, 0, len(raw))


def test_pptp_messages_and_gre():
    stream = sccrq() + sccrp(4, 0) + ocrp(res=7)[:10]
    msgs, used = pptp.split_stream(stream)
    assert len(msgs) == 2 and used == 156 * 2
    m = pptp.parse_message(stream, *msgs[1])
    assert (m.type, m.result, m.host_name) == (pptp.SCCRP, 4, "server")
    o = ocrp(call=9, peer=1, res=7, err=0)
    m = pptp.parse_message(o, 0, len(o))
    assert (m.call_id, m.peer_call_id, m.result) == (9, 1, 7)
    assert "Do Not Accept" in pptp.result_text(m.type, m.result)
    g = gre(9, 5, ack=4)
    assert pptp.parse_gre(g, 0, len(g)) == (9, 80, 5, 4, 16)
    with pytest.raises(DissectError):
        pptp.split_stream(b"\x00\x10\x00\x01\xde\xad\xbe\xef" + bytes(8))
    with pytest.raises(DissectError):
        pptp.parse_gre(struct.pack(">HHHH", 0x2001, 0x0800, 0, 0), 0, 8)
    with pytest.raises(DissectError):
        pptp.parse_message(pptp_msg(99, bytes(10)), 0, 22)


# -- L2TP rules -----------------------------------------------------------------------------------

def _l2tp_setup(c, t=0.0):
    c.udp(t, C, S, 1701, 1701, l2tp_ctl(l2tp.SCCRQ, extra=[avp(9, struct.pack(">H", 11))]))
    c.udp(t + 0.05, S, C, 1701, 1701, l2tp_ctl(l2tp.SCCRP, tid=11, nr=1,
                                                extra=[avp(9, struct.pack(">H", 22))]))
    c.udp(t + 0.1, C, S, 1701, 1701, l2tp_ctl(l2tp.SCCCN, tid=22, ns=1, nr=1))
    c.udp(t + 0.2, C, S, 1701, 1701, l2tp_ctl(l2tp.ICRQ, tid=22, ns=2, nr=1))
    c.udp(t + 0.25, S, C, 1701, 1701, l2tp_ctl(l2tp.ICRP, tid=11, ns=1, nr=3))
    c.udp(t + 0.3, C, S, 1701, 1701, l2tp_ctl(l2tp.ICCN, tid=22, ns=3, nr=2))


def _l2tp_session(c):
    """A tunnel set up, ten seconds of data both ways, the call cleared (CDN)."""
    _l2tp_setup(c)
    for i in range(10):
        c.udp(1 + i, C, S, 1701, 1701, l2tp_data(22, 1))
        c.udp(1.1 + i, S, C, 1701, 1701, l2tp_data(11, 2))
    c.udp(12, C, S, 1701, 1701, l2tp_ctl(l2tp.CDN, tid=22, ns=4, nr=2, extra=[result(3)]))


def test_l2tp_healthy_and_normal_teardown(tmp_path):
    c = Cap()
    _l2tp_session(c)
    c.udp(12.1, C, S, 1701, 1701, l2tp_ctl(l2tp.STOPCCN, tid=22, ns=5, nr=2, extra=[result(1)]))
    r = analyse(c.write(tmp_path / "l2tp.pcap"))
    t, = vpn_tunnels(r)
    assert (t["protocol"], t["verdict"], t["stage_reached"]) == ("l2tp", "healthy", "dataplane")
    assert t["vpn"]["l2tp"]["messages"]["SCCRP"] == 1
    assert r.findings == []


def test_l2tp_stopccn_error(tmp_path):
    c = Cap()
    c.udp(0, C, S, 40000, 1701, l2tp_ctl(l2tp.SCCRQ, extra=[avp(9, struct.pack(">H", 11))]))
    c.udp(0.05, S, C, 1701, 40000, l2tp_ctl(l2tp.STOPCCN, tid=11, nr=1,
                                             extra=[result(4, None, b"not authorized")]))
    p = c.write(tmp_path / "stop.pcap")
    r = analyse(p)
    assert codes(r) == ["L2TP_ERROR"]
    f = r.findings[0]
    assert "not authorized" in f.detail and "result 4" in f.title
    t, = vpn_tunnels(r)
    assert t["verdict"] == "failing" and t["failed_stage"] == "negotiation"
    check_filters(p, r)


def test_l2tp_sccrq_unanswered(tmp_path):
    c = Cap()
    for dt in (0, 1, 3, 7):
        c.udp(dt, C, S, 1701, 1701, l2tp_ctl(l2tp.SCCRQ, ns=0))
    r = analyse(c.write(tmp_path / "nr.pcap"))
    assert codes(r) == ["L2TP_ERROR"] and "never answered" in r.findings[0].title


def test_l2tp_malformed_corpus_capture():
    """tcpdump's l2tp-avp-overflow.pcap: 20 fuzzed frames; read without an exception, the bad
    frames counted as undecodable, no tunnel and no failure invented."""
    r = analyse(corpus_dir() / "tcpdump" / "l2tp-avp-overflow.pcap")
    cap = r.report.capture
    assert cap.frames == 20 and cap.decode_errors > 0
    assert any("L2TP" in k for k in cap.decode_errors_by_reason)
    assert vpn_tunnels(r) == []
    assert not [f for f in r.findings if f.code in ("L2TP_ERROR", "VPN_DATA_ONE_WAY")]


# -- PPTP rules -----------------------------------------------------------------------------------

def _pptp_control(c, k, t=0.0, sccrp_res=1, ocrp_res=1):
    k.handshake(t)
    k.send(t + 0.1, True, sccrq())
    k.send(t + 0.15, False, sccrp(sccrp_res))
    if sccrp_res != 1:
        return
    k.send(t + 0.2, True, ocrq(1))
    k.send(t + 0.25, False, ocrp(2, 1, ocrp_res))


def test_pptp_healthy(tmp_path):
    c = Cap()
    _pptp_control(c, Conn(c, C, S, 40000, 1723))
    for i in range(12):
        c.raw_ip(1 + i, C, S, 47, gre(2, i))
        c.raw_ip(1.05 + i, S, C, 47, gre(1, i, ack=i))
    r = analyse(c.write(tmp_path / "pptp.pcap"))
    t, = vpn_tunnels(r)
    assert (t["protocol"], t["verdict"], t["stage_reached"]) == ("pptp", "healthy", "dataplane")
    assert t["vpn"]["data_packets"] == {"client_to_server": 12, "server_to_client": 12}
    assert r.findings == []


def test_pptp_gre_blocked(tmp_path):
    c = Cap()
    _pptp_control(c, Conn(c, C, S, 40000, 1723))
    for i in range(15):
        c.raw_ip(1 + i, C, S, 47, gre(2, i))
    p = c.write(tmp_path / "gre1way.pcap")
    r = analyse(p)
    assert codes(r) == ["VPN_DATA_ONE_WAY"]
    assert "GRE" in r.findings[0].detail and "blocked" in r.findings[0].detail
    check_filters(p, r)


def echo(ident, reply=False):
    return pptp_msg(6, struct.pack(">IBBH", ident, 1, 0, 0)) if reply else \
        pptp_msg(5, struct.pack(">I", ident))


def ccrq(call=1):
    return pptp_msg(12, struct.pack(">HH", call, 0))


@pytest.mark.parametrize("cleared", [False, True])
def test_pptp_call_without_gre(tmp_path, cleared):
    # the call is set up on TCP 1723, then not one GRE packet either way (GRE blocked): the
    # client keeps the control connection alive, or clears the call after 25 s (Windows 619)
    c = Cap()
    k = Conn(c, C, S, 40000, 1723)
    _pptp_control(c, k)
    if cleared:
        k.send(25.0, True, ccrq(1))
        k.send(25.05, False, cdn(2, 3))
    else:
        for i, t in enumerate((15.0, 30.0)):
            k.send(t, True, echo(i))
            k.send(t + 0.05, False, echo(i, reply=True))
    p = c.write(tmp_path / "nogre.pcap")
    r = analyse(p)
    assert codes(r) == ["VPN_NO_DATA"]
    f = r.findings[0]
    assert f.severity == "error" and f.stage == "dataplane" and f.tunnel
    assert "no GRE either way" in f.title and "Outgoing-Call-Reply (Connected" in f.detail
    assert ("cleared it at +25.0" in f.detail) == cleared
    adv = " ".join(f.advice)
    assert "806" in adv and "619" in adv and "PPTP ALG" in adv and "L2TP" not in adv
    t, = vpn_tunnels(r)
    assert t["id"] == f.tunnel and t["primary_code"] == "VPN_NO_DATA"
    assert t["verdict"] == "failing" and t["failed_stage"] == "dataplane"
    check_filters(p, r)


def test_pptp_call_just_set_up_is_not_judged(tmp_path):
    c = Cap()
    k = Conn(c, C, S, 40000, 1723)
    _pptp_control(c, k)
    k.send(3.0, True, echo(1))
    r = analyse(c.write(tmp_path / "short.pcap"))
    assert codes(r) == []
    t, = vpn_tunnels(r)
    assert t["verdict"] == "unknown"
    assert any("too short to call the data missing" in n for n in t["not_seen"])


def test_l2tp_session_without_data(tmp_path):
    c = Cap()
    _l2tp_setup(c)
    for i in range(4):  # HELLOs keep the control connection alive, no PPP either way
        c.udp(8 + 8 * i, C, S, 1701, 1701, l2tp_ctl(l2tp.HELLO, tid=22, ns=4 + i, nr=2))
        c.udp(8.05 + 8 * i, S, C, 1701, 1701, l2tp_ctl(None, tid=11, ns=2, nr=5 + i))
    p = c.write(tmp_path / "l2tpnodata.pcap")
    r = analyse(p)
    assert codes(r) == ["VPN_NO_DATA"]
    f = r.findings[0]
    assert "ICCN" in f.detail and "L2TP data message" in f.detail
    adv = " ".join(f.advice)
    assert "LNS starts PPP" in adv and "GRE" not in adv
    check_filters(p, r)


@pytest.mark.parametrize("sccrp_res,ocrp_res,word", [(4, 1, "not authorized"),
                                                      (1, 7, "Do Not Accept")])
def test_pptp_error_results(tmp_path, sccrp_res, ocrp_res, word):
    c = Cap()
    _pptp_control(c, Conn(c, C, S, 40000, 1723), sccrp_res=sccrp_res, ocrp_res=ocrp_res)
    p = c.write(tmp_path / "pptperr.pcap")
    r = analyse(p)
    assert codes(r) == ["PPTP_ERROR"]
    assert word in r.findings[0].title or word in r.findings[0].detail
    check_filters(p, r)


def test_pptp_sccrq_unanswered(tmp_path):
    c = Cap()
    k = Conn(c, C, S, 40000, 1723)
    k.handshake(0)
    k.send(0.1, True, sccrq())
    c.udp(20, C, "192.0.2.99", 1, 2, b"x")
    r = analyse(c.write(tmp_path / "pptpnr.pcap"))
    assert codes(r) == ["PPTP_ERROR"] and "never answered" in r.findings[0].title


@pytest.mark.parametrize("path,counts", [
    ("nDPI/pcap/pptp.pcap", {1: 1, 2: 1, 7: 1, 8: 1, 15: 2, 12: 1, 13: 1}),
    ("tcpdump/pptp.pcap", {1: 1, 2: 1, 7: 1, 8: 1, 15: 1}),
])
def test_pptp_corpus(path, counts):
    """Control messages as MANIFEST.md lists them (tshark); SCCRP/OCRP successful: no error."""
    r = analyse(corpus_dir() / path)
    t, = r.state.vpn_tunnels
    assert t.protocol == "pptp" and t.st.counts == counts
    assert not [f for f in r.findings if f.code in ("PPTP_ERROR", "TCP_RESET", "TCP_NO_ANSWER")]
    assert r.report.capture.decode_errors == 0


def test_l2tp_inside_esp_with_keys(tmp_path):
    """L2TP/IPsec (RFC 3193): the L2TP control channel travels in transport-mode ESP; with the
    SA's keys (ESP_NULL here, RFC 2410, so the test needs no cipher) the StopCCN is found."""
    from synth import eth, ipv4, write_pcap

    def esp_null(spi, seq, udp_payload, sport, dport):
        inner = struct.pack(">HHHH", sport, dport, 8 + len(udp_payload), 0) + udp_payload
        pad = (-(len(inner) + 2)) % 4  # RFC 4303 §2.4: 4-byte alignment, default padding 1,2,...
        trailer = bytes(range(1, pad + 1)) + bytes([pad, 17])  # Next Header 17 (UDP)
        return struct.pack(">II", spi, seq) + inner + trailer

    sccrq = l2tp_ctl(l2tp.SCCRQ, extra=[avp(9, struct.pack(">H", 11))])
    stop = l2tp_ctl(l2tp.STOPCCN, tid=11, nr=1, extra=[result(4, None, b"not authorized")])
    frames = [
        (0.0, eth(ipv4("192.0.2.7", "198.51.100.9", 50, esp_null(0x1001, 1, sccrq, 1701, 1701)))),
        (0.05, eth(ipv4("198.51.100.9", "192.0.2.7", 50, esp_null(0x2002, 1, stop, 1701, 1701)))),
    ]
    p = write_pcap(tmp_path / "l2tp-esp.pcap", frames)
    keys = tmp_path / "esp_sa"
    keys.write_text(
        '"IPv4","192.0.2.7","198.51.100.9","0x00001001","NULL","","NULL",""\n'
        '"IPv4","198.51.100.9","192.0.2.7","0x00002002","NULL","","NULL",""\n')
    from pcapvpn.analysis import Options, run
    from pcapvpn.decrypt.keyfile import load_keys

    without = run([str(p)])
    assert "L2TP_ERROR" not in [f.code for f in without.findings]  # invisible without keys
    r = run([str(p)], Options(keys=load_keys([str(keys)])))
    errs = [f for f in r.findings if f.code == "L2TP_ERROR"]
    assert errs and "not authorized" in errs[0].detail


def test_l2tp_section_and_frames_in_the_text_report(tmp_path):
    """The text report gives an L2TP tunnel its own section (control messages, per-direction
    counts, result codes) and counts its frames as L2TP frames, not other IP frames."""
    from pcapvpn.report import render

    c = Cap()
    _l2tp_session(c)
    r = analyse(c.write(tmp_path / "l2tp.pcap"))
    text = " ".join(render(r.report, "text").split())
    assert "control messages: SCCRQ x1, SCCRP x1" in text
    assert "packets: 15 client -> server (10 data), 12 server -> client (10 data)" in text
    assert "CDN from the client: result 3" in text
    counts = r.report.capture.counts
    assert counts.l2tp_frames == 27 and counts.other_ip_frames == 0
