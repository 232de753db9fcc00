"""Several vantage points (issue 16): matching the VPNs beside ESP between points.

AH by (SPI, sequence number), WireGuard by (receiver index, counter), OpenVPN by (session ID,
packet ID) for control and (peer ID, direction, packet ID) for the AEAD data channel, L2TP by
(tunnel, session, Ns).  The two-point captures are synthetic, made from real captures by
``bench/pointsplit.py``: the real capture is point ``a`` beside the client; point ``b`` lies
towards the server (its clock shifted by a known odd amount, a known one-way delay), chosen
frames dropped between the points, a NAT between them where the test says so.  The expected
losses follow from the frames dropped (their numbers read from the real capture with tshark
in the comments).
"""

from __future__ import annotations

import json
import sys

import jsonschema
import pytest

from conftest import REPO, corpus_dir
from pcapvpn.analysis import Options, run
from pcapvpn.report import render

sys.path.insert(0, str(REPO / "bench"))
from pointsplit import split_points  # noqa: E402
from vantage_util import check_filters  # noqa: E402

SCHEMA = json.loads((REPO / "docs" / "schema.json").read_text())
LAB = REPO / "captures" / "lab"
TOLERANCE = 0.005


def _two(tmp_path, src, client, offset, delay, drop_a=(), drop_b=(), nat=None):
    a = tmp_path / "a.pcap"
    b = tmp_path / "b.pcap"
    split_points(str(src), str(a), str(b), client, offset, delay, drop_a, drop_b, nat)
    return run([], Options(vantage=[("near-client", [str(a)], None),
                                    ("near-server", [str(b)], None)]))


def _losses(res, kind):
    out = []
    for t in res.report.tunnels:
        for x in (t.get("path") or {}).get("losses", []):
            if x["kind"] == kind:
                out.append((x["from"], x["to"], x.get("flow") or x.get("spi"), x["lost"],
                            [tuple(r) for r in x["ranges"]]))
    return sorted(out, key=str)


def _offset(res):
    return res.report.vantage_points[1]


def _check_report(res):
    """The report validates and renders; every filter is valid for tshark and shows, in each
    point's file, the evidence frames cited from it."""
    doc = json.loads(render(res.report, "json"))
    jsonschema.validate(doc, SCHEMA)
    for fmt in ("text", "markdown", "html"):
        assert render(res.report, fmt)
    check_filters(res.report.findings)


def test_openvpn_control_and_data_located_through_nat(tmp_path):
    """openvpn_udp_healthy: frame 8 is the client's control packet with message packet ID 3,
    frames 21 and 23 the client's AEAD data packets 3 and 4 (dropped before near-server),
    frame 30 the server's data packet 7 (dropped before near-client); a NAT between the points
    rewrites the client to 203.0.113.9:40000."""
    res = _two(tmp_path, LAB / "openvpn_udp_healthy" / "openvpn_udp_healthy.pcap",
               "192.0.2.2", 2.5037, 0.004, drop_a=[30], drop_b=[8, 21, 23],
               nat=("203.0.113.9", 40000))
    got = _losses(res, "openvpn")
    assert [(g[0], g[1], g[3], g[4]) for g in got] == sorted([
        ("near-client", "near-server", 1, [(3, 3)]),
        ("near-client", "near-server", 2, [(3, 4)]),
        ("near-server", "near-client", 1, [(7, 7)]),
    ], key=str), got
    flows = {g[2] for g in got}
    assert any(f.startswith("control, session ID a5cedda751b067c0") for f in flows), flows
    assert "data from the client, key ID 0 peer ID 0" in flows
    assert "data from the server, key ID 0 peer ID 0" in flows
    o = _offset(res)
    assert abs(o["clock_offset_s"] - 2.5037) < TOLERANCE, o
    fs = [f for f in res.report.findings if f.code == "PATH_LOSS"]
    assert len(fs) == 3
    for f in fs:
        assert f.location["from"] in ("near-client", "near-server")
        assert f.stage == "dataplane"
    path = res.report.tunnels[0]["path"]
    assert path["order"] == ["near-client", "near-server"]
    assert any(n["what"] == "openvpn" and "203.0.113.9:40000" in n["points"]["near-server"]
               for n in path["nat"]), path["nat"]
    _check_report(res)


def test_wireguard_counters_located(tmp_path):
    """zeek-spicy-wireguard wireguard.pcap (public corpus): the initiator 188.166.170.114
    sends to receiver index 0x0ae66888; frame 10 carries counter 2, frames 171 and 172
    counters 83 and 84 (dropped before near-server); frame 176 is the responder's counter 79 to
    0xc4632862 (dropped before near-client).  Clock of near-server 1.7531 s behind."""
    src = corpus_dir() / "zeek-spicy-wireguard" / "Traces" / "wireguard.pcap"
    res = _two(tmp_path, src, "188.166.170.114", -1.7531, 0.003, drop_a=[176],
               drop_b=[10, 171, 172])
    got = _losses(res, "wireguard")
    assert got == sorted([
        ("near-client", "near-server", "receiver index 0x0ae66888", 3, [(2, 2), (83, 84)]),
        ("near-server", "near-client", "receiver index 0xc4632862", 1, [(79, 79)]),
    ], key=str), got
    o = _offset(res)
    assert abs(o["clock_offset_s"] + 1.7531) < TOLERANCE, o
    assert o["matched_packets"] > 100
    f = next(f for f in res.report.findings if f.code == "PATH_LOSS"
             and "0x0ae66888" in f.title)
    assert "wg.counter >= 83 && wg.counter <= 85" in f.wireshark_filter
    _check_report(res)


def test_ah_located_and_gap_placed(tmp_path):
    """zeek-spicy-ipsec IPsec_ESP-AH_tunnel_mode.cap (public corpus): AH (with ESP inside)
    between 10.0.0.1 and 10.0.0.2, sequence numbers 1..5 each way; frame 5 is 10.0.0.1's
    AH/ESP number 3 (dropped before near-server), frame 8 10.0.0.2's number 4 (dropped before
    near-client).  The first point's ESP_SEQUENCE_GAP on the AH SPI is placed on the path."""
    src = corpus_dir() / "zeek-spicy-ipsec" / "traces" / "IPsec_ESP-AH_tunnel_mode.cap"
    res = _two(tmp_path, src, "10.0.0.1", 0.7529, 0.002, drop_a=[8], drop_b=[5])
    assert _losses(res, "ah") == sorted([
        ("near-client", "near-server", "8179b705", 1, [(3, 3)]),
        ("near-server", "near-client", "ba8bd060", 1, [(4, 4)]),
    ], key=str)
    assert abs(_offset(res)["clock_offset_s"] - 0.7529) < TOLERANCE
    gap = next(f for f in res.report.findings if f.code == "ESP_SEQUENCE_GAP"
               and "ba8bd060" in f.title)
    assert (gap.location["from"], gap.location["to"]) == ("near-server", "near-client")
    _check_report(res)


def test_no_loss_no_finding(tmp_path):
    """Nothing dropped: no PATH_LOSS, every packet matched."""
    src = LAB / "openvpn_udp_healthy" / "openvpn_udp_healthy.pcap"
    res = _two(tmp_path, src, "192.0.2.2", -0.3001, 0.001)
    assert not [f for f in res.report.findings if f.code == "PATH_LOSS"]
    assert abs(_offset(res)["clock_offset_s"] + 0.3001) < TOLERANCE


@pytest.mark.parametrize("width,seqs,epochs", [
    (16, [65533, 65534, 65535, 0, 1, 2], 1),  # a 16-bit Ns wraps: one epoch
    (32, [500, 501, 502, 1, 2, 3], 2),        # the numbering restarted: a new epoch
])
def test_seqflow_wrap_and_restart(width, seqs, epochs):
    from pcapvpn.track.vantage.seqflows import SeqStore

    st = SeqStore(None)
    for n, s in enumerate(seqs):
        st._packet("l2tp", (1, None), width, 4, b"a", b"b", 1701, 1701, float(n), (0, n + 1),
                   s, 100, "x")
    eps = st.flows[("l2tp", (1, None))]
    assert len(eps) == epochs
    assert sum(f.packets for f in eps) == len(seqs)
    for f in eps:
        assert f.seen() == [(f.min_seq, f.max_seq + 1)]
        assert not f.holes


def _l2tp_capture(path):
    """A synthetic L2TPv2 exchange (labelled synthetic: built here, RFC 2661 headers): the
    control connection (SCCRQ, SCCRP, SCCCN, ZLB, ICRQ, ICRP, ICCN: Ns 0..3 from the client,
    0..1 from the server) and 20 sequenced data messages each way in session 7 (Ns 0..19).
    Returns the frame numbers of the client's data messages by Ns."""
    import ipaddress
    import struct

    client, server = "192.0.2.10", "198.51.100.20"

    def ctl(tid, ns, nr, msg_type):
        avps = b"" if msg_type is None else struct.pack("!HHHH", 0x8008, 0, 0, msg_type)
        return struct.pack("!HHHHHH", 0xC802, 12 + len(avps), tid, 0, ns, nr) + avps

    def data(tid, sid, ns):
        return struct.pack("!HHHHH", 0x0802, tid, sid, ns, 0) + b"\xff\x03\x00\x21" + bytes(40)

    recs = []
    t = 1_700_000_000.0
    client_data = {}

    def add(frm, payload):
        nonlocal t
        t += 0.01
        src, dst = (client, server) if frm == "c" else (server, client)
        udp = struct.pack("!HHHH", 1701, 1701, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), len(recs), 0, 64, 17, 0,
                         ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
        frame = bytes(6) + bytes(6) + b"\x08\x00" + ip + udp
        recs.append(struct.pack("<IIII", int(t), round((t % 1) * 1e6), len(frame), len(frame))
                    + frame)
        return len(recs)

    add("c", ctl(0, 0, 0, 1))      # SCCRQ
    add("s", ctl(5, 0, 1, 2))      # SCCRP
    add("c", ctl(9, 1, 1, 3))      # SCCCN
    add("s", ctl(5, 1, 2, None))   # ZLB
    add("c", ctl(9, 2, 1, 10))     # ICRQ
    add("s", ctl(5, 1, 3, 11))     # ICRP
    add("c", ctl(9, 3, 2, 12))     # ICCN
    for ns in range(20):
        client_data[ns] = add("c", data(9, 7, ns))
        add("s", data(5, 3, ns))
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(recs))
    return client_data


def test_l2tp_control_and_data_located(tmp_path):
    src = tmp_path / "l2tp.pcap"
    cd = _l2tp_capture(src)
    # the client's SCCCN (frame 3, Ns 1) and data Ns 5, 6 and 12 lost before near-server
    res = _two(tmp_path, src, "192.0.2.10", 4.4443, 0.002, drop_b=[3, cd[5], cd[6], cd[12]])
    got = _losses(res, "l2tp")
    assert got == sorted([
        ("near-client", "near-server", "control, tunnel ID 9", 1, [(1, 1)]),
        ("near-client", "near-server", "data, tunnel ID 9 session ID 7", 3, [(5, 6), (12, 12)]),
    ], key=str), got
    assert abs(_offset(res)["clock_offset_s"] - 4.4443) < TOLERANCE
    _check_report(res)


def test_capture_summary_of_every_point(tmp_path):
    """Each point's capture summary: files with frames and span, undecodable frames (a
    truncated IKE datagram appended to the second point's file), in JSON and in the table."""
    import struct

    a = tmp_path / "a.pcap"
    b = tmp_path / "b.pcap"
    split_points(str(LAB / "openvpn_udp_healthy" / "openvpn_udp_healthy.pcap"), str(a), str(b),
                 "192.0.2.2", 1.25, 0.002, drop_b=[21])
    data = b.read_bytes()
    # the time of b's last record, plus a second
    off = 24
    t = 0
    while off + 16 <= len(data):
        sec, usec, incl, _orig = struct.unpack_from("<IIII", data, off)
        t = sec
        off += 16 + incl
    udp = struct.pack("!HHHH", 500, 500, 8 + 6, 0) + b"\x01\x02\x03\x04\x05\x06"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     bytes([192, 0, 2, 2]), bytes([198, 51, 100, 2]))
    frame = bytes(12) + b"\x08\x00" + ip + udp
    b.write_bytes(data + struct.pack("<IIII", t + 1, 0, len(frame), len(frame)) + frame)
    res = run([], Options(vantage=[("near-client", [str(a)], None),
                                   ("near-server", [str(b)], None)]))
    vp = res.report.vantage_points
    assert [p["file_summary"][0]["frames"] for p in vp] == [40, 40]
    assert vp[0]["undecodable"] == 0
    assert vp[1]["undecodable"] == 1, vp[1]
    assert vp[1]["undecodable_by_reason"]
    text = render(res.report, "text")
    assert "undecodable" in text
    _check_report(res)


def _esp_capture(path, runs):
    """A synthetic ESP capture (labelled synthetic: headers built here, RFC 4303): ``runs`` of
    ``(gap_s, [seq, ...])``; each number is sent by 192.0.2.1 on SPI 0x11111111 and answered by
    198.51.100.1 on SPI 0x22222222 with the same number, 10 ms apart.  Returns
    ``{(direction, run index, seq): frame number}``."""
    import struct

    recs = []
    frames = {}
    t = 1_700_000_000.0
    for k, (gap, seqs) in enumerate(runs):
        t += gap
        for seq in seqs:
            for d, (src, dst, spi) in enumerate((((192, 0, 2, 1), (198, 51, 100, 1), 0x11111111),
                                                 ((198, 51, 100, 1), (192, 0, 2, 1),
                                                  0x22222222))):
                t += 0.005
                esp = struct.pack("!II", spi, seq & 0xFFFFFFFF) + bytes(48)
                ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(esp), 0, 0, 64, 50, 0,
                                 bytes(src), bytes(dst))
                frame = bytes(12) + b"\x08\x00" + ip + esp
                recs.append(struct.pack("<IIII", int(t), round((t % 1) * 1e6), len(frame),
                                        len(frame)) + frame)
                frames[(d, k, seq)] = len(recs)
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(recs))
    return frames


def _esp_losses(res):
    return sorted((x["from"], x["to"], x["spi"], x["lost"], [tuple(r) for r in x["ranges"]])
                  for t in res.report.tunnels for x in (t.get("path") or {}).get("losses", ())
                  if x["kind"] == "esp")


def test_esp_restart_never_paired_across(tmp_path):
    """The SA's numbering restarts at 1 with the same SPI (a peer restart): numbers 1..300, a
    pause, then 1..120.  Number 50 of the second run is lost between the points; number 50 of
    the first run arrived, which must not hide the loss, and nothing else is lost."""
    src = tmp_path / "esp.pcap"
    fr = _esp_capture(src, [(0.0, list(range(1, 301))), (30.0, list(range(1, 121)))])
    res = _two(tmp_path, src, "192.0.2.1", 0.6173, 0.003, drop_b=[fr[(0, 1, 50)]])
    assert _esp_losses(res) == [("near-client", "near-server", "11111111", 1, [(50, 50)])]
    assert abs(_offset(res)["clock_offset_s"] - 0.6173) < TOLERANCE


def test_esn_wrap_matched(tmp_path):
    """An ESN SA whose low 32 bits wrap (2**32 - 200 .. 2**32 - 1, then 0 .. 199): numbers on
    both sides of the wrap lost between the points are placed, nothing else."""
    src = tmp_path / "esn.pcap"
    top = 1 << 32
    fr = _esp_capture(src, [(0.0, list(range(top - 200, top)) + list(range(top, top + 200)))])
    res = _two(tmp_path, src, "192.0.2.1", -2.2229, 0.003,
               drop_b=[fr[(0, 0, top - 100)], fr[(0, 0, top + 10)]])
    assert _esp_losses(res) == [("near-client", "near-server", "11111111", 2,
                                 [(top - 100, top - 100), (10, 10)])]
    assert abs(_offset(res)["clock_offset_s"] + 2.2229) < TOLERANCE


def test_dtls_records_located(tmp_path):
    """A synthetic SSL-VPN DTLS data channel (labelled synthetic: RFC 6347 record headers built
    here, on UDP 443): 30 application-data records each way in epoch 1; the client's records
    with sequence numbers 7 and 8 are lost before near-server."""
    import ipaddress
    import struct

    client, server = "192.0.2.30", "198.51.100.30"
    recs = []
    t = 1_700_000_000.0
    frames = {}
    for seq in range(1, 31):
        for fc in (True, False):
            t += 0.01
            rec = struct.pack("!BHHHIH", 23, 0xFEFD, 1, seq >> 32, seq & 0xFFFFFFFF, 48) + \
                bytes(48)
            sport, dport = (40000, 443) if fc else (443, 40000)
            src, dst = (client, server) if fc else (server, client)
            udp = struct.pack("!HHHH", sport, dport, 8 + len(rec), 0) + rec
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), len(recs), 0, 64, 17, 0,
                             ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
            frame = bytes(12) + b"\x08\x00" + ip + udp
            recs.append(struct.pack("<IIII", int(t), round((t % 1) * 1e6), len(frame),
                                    len(frame)) + frame)
            frames[(fc, seq)] = len(recs)
    src = tmp_path / "dtls.pcap"
    src.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(recs))
    res = _two(tmp_path, src, client, 3.1337, 0.002,
               drop_b=[frames[(True, 7)], frames[(True, 8)]])
    assert _losses(res, "sslvpn") == [
        ("near-client", "near-server", "DTLS from the client, epoch 1", 2, [(7, 8)])]
    assert abs(_offset(res)["clock_offset_s"] - 3.1337) < TOLERANCE
    _check_report(res)


def test_sslvpn_tcp_segments_located(tmp_path):
    """nDPI forticlient.pcap (public corpus): FortiClient SSL-VPN on TCP 10443 from
    192.168.1.178.  Frames 9 and 15 (the client's TLS segments of 107 and 164 bytes on the
    connection from port 61805) lost before near-server and never retransmitted; a NAT between
    the points rewrites the client's address only.  The outer connection's own packets:
    PATH_LOSS on the SSL-VPN tunnel, not an inner code."""
    src = corpus_dir() / "nDPI" / "pcap" / "forticlient.pcap"
    res = _two(tmp_path, src, "192.168.1.178", 0.4242, 0.003, drop_b=[9, 15],
               nat=("203.0.113.50", 0))
    fs = [f for f in res.report.findings
          if f.code in ("PATH_LOSS", "INNER_BLOCKED", "INNER_NO_RETURN")]
    assert [(f.code, f.location["from"], f.location["to"], f.tunnel) for f in fs] == [
        ("PATH_LOSS", "near-client", "near-server", "192.168.1.178<->82.81.46.13:10443/tcp")]
    assert "2 TCP segment(s)" in fs[0].title and ":61805 -> 82.81.46.13:10443" in fs[0].title
    assert abs(_offset(res)["clock_offset_s"] - 0.4242) < TOLERANCE
    _check_report(res)



def test_wireguard_handshake_located(tmp_path):
    """wireguard.pcap (public corpus): frame 3 is the handshake initiation (sender index
    0xc4632862) — lost before near-server; the response (frame 4) was sent all the same in
    the original, so near-server sees it (synthetic by construction)."""
    src = corpus_dir() / "zeek-spicy-wireguard" / "Traces" / "wireguard.pcap"
    res = _two(tmp_path, src, "188.166.170.114", 0.25, 0.003, drop_b=[3])
    got = _losses(res, "wireguard")
    assert got == [("near-client", "near-server", "handshake initiation, sender index "
                    "0xc4632862", 1, [(0, 0)])], got
    f = next(f for f in res.report.findings if f.code == "PATH_LOSS")
    assert f.wireshark_filter == "wg.sender == 0xc4632862"
    _check_report(res)


def test_pptp_gre_located(tmp_path):
    """Synthetic PPTP enhanced GRE (labelled synthetic: RFC 2637 §4.1 headers built here):
    call ID 7 from 192.0.2.40 with sequence numbers 1..25 (and call ID 9 back); numbers 10 and
    11 lost before near-server."""
    import ipaddress
    import struct

    client, server = "192.0.2.40", "198.51.100.40"
    recs = []
    frames = {}
    t = 1_700_000_000.0
    for seq in range(1, 26):
        for fc in (True, False):
            t += 0.01
            payload = b"\xff\x03\x00\x21" + bytes(36)
            gre = struct.pack("!HHHHI", 0x3001, 0x880B, len(payload), 7 if fc else 9, seq) + \
                payload
            src, dst = (client, server) if fc else (server, client)
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(gre), len(recs), 0, 64, 47, 0,
                             ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
            frame = bytes(12) + b"\x08\x00" + ip + gre
            recs.append(struct.pack("<IIII", int(t), round((t % 1) * 1e6), len(frame),
                                    len(frame)) + frame)
            frames[(fc, seq)] = len(recs)
    src = tmp_path / "pptp.pcap"
    src.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(recs))
    res = _two(tmp_path, src, client, -0.9871, 0.002,
               drop_b=[frames[(True, 10)], frames[(True, 11)]])
    assert _losses(res, "pptp") == [
        ("near-client", "near-server", "GRE call ID 7", 2, [(10, 11)])]
    assert abs(_offset(res)["clock_offset_s"] + 0.9871) < TOLERANCE
    _check_report(res)


def _lab_points(tmp_path, name, files, drop=None):
    """Options.vantage for lab captures taken at the same time (``files``: point -> file name);
    ``drop``: {point: display filter of frames left out of that point's copy}."""
    from vantage_util import without

    d = LAB / name
    pts = []
    for point, f in files.items():
        path = d / f
        if drop and point in drop:
            path, n = without(tmp_path, path, drop[point], f"{point}.pcap", "pcap")
            assert n
        pts.append((point, [str(path)], None))
    return run([], Options(vantage=pts))


def test_wireguard_lab_points(tmp_path):
    """wireguard_healthy (lab, wireguard-go): the client's -i any capture and the router's, at
    the same time on one clock.  As captured: WireGuard matched, the router after the client on
    the path, nothing lost.  With the client's transport data counters 2 and 3 (to receiver
    0x7503016f) left out of the router's copy: lost between client and router."""
    files = {"client": "wireguard_healthy-client-any.pcap", "router": "wireguard_healthy.pcap"}
    res = _lab_points(tmp_path, "wireguard_healthy", files)
    t = res.report.tunnels[0]
    assert t["path"]["order"] == ["client", "router"] and not t["path"]["losses"]
    assert abs(_offset(res)["clock_offset_s"]) < TOLERANCE
    res = _lab_points(tmp_path, "wireguard_healthy", files, {
        "router": "wg.receiver == 0x7503016f && (wg.counter == 2 || wg.counter == 3)"})
    assert _losses(res, "wireguard") == [
        ("client", "router", "receiver index 0x7503016f", 2, [(2, 3)])]
    _check_report(res)


def test_inner_wireguard_no_return_three_points(tmp_path):
    """inner_wireguard_no_return (lab): client, router and server (-i any: r-eth0, wg1, the
    LAN side) at once.  The path runs client -> router -> gw; the requests to the office host
    reach the server's LAN side and are never answered: INNER_NO_RETURN and DNS_NO_ANSWER
    placed past the last point (gw)."""
    res = _lab_points(tmp_path, "inner_wireguard_no_return", {
        "client": "inner_wireguard_no_return-client-any.pcap",
        "router": "inner_wireguard_no_return.pcap",
        "gw": "inner_wireguard_no_return-gw-any.pcap"})
    assert res.report.tunnels[0]["path"]["order"] == ["client", "router", "gw"]
    got = {f.code: (f.location["from"], f.location["to"]) for f in res.report.findings
           if f.code in ("INNER_NO_RETURN", "DNS_NO_ANSWER")}
    assert got == {"INNER_NO_RETURN": ("gw", None), "DNS_NO_ANSWER": ("gw", None)}, got


def test_wireguard_no_response_located(tmp_path):
    """wireguard_unknown_peer (lab: the server lacks the client's key): the initiations reach
    the router, the last point, and nothing answers: WIREGUARD_NO_RESPONSE placed past it."""
    res = _lab_points(tmp_path, "wireguard_unknown_peer", {
        "client": "wireguard_unknown_peer-client-any.pcap",
        "router": "wireguard_unknown_peer.pcap"})
    f = next(f for f in res.report.findings if f.code == "WIREGUARD_NO_RESPONSE")
    assert (f.location["from"], f.location["to"]) == ("router", None), f.location


def test_openvpn_answers_lost_on_the_way_back(tmp_path):
    """openvpn_udp_healthy: every server packet (frames from 198.51.100.2) lost between
    near-server and near-client: the client sees no answer (OPENVPN_NO_RESPONSE), and the
    points place the loss on the way back.  The client's data packets go at both points (a
    client that got no answer has no data channel keys: its data would show the server
    answered)."""
    import subprocess

    from conftest import tshark_path

    src = LAB / "openvpn_udp_healthy" / "openvpn_udp_healthy.pcap"

    def frames(flt):
        cp = subprocess.run([tshark_path(), "-r", str(src), "-Y", flt, "-T", "fields", "-e",
                             "frame.number"], capture_output=True, text=True, check=True)
        return [int(x) for x in cp.stdout.split()]
    data = frames("ip.src == 192.0.2.2 && (openvpn.opcode == 6 || openvpn.opcode == 9)")
    assert data
    res = _two(tmp_path, src, "192.0.2.2", 0.5, 0.002,
               drop_a=sorted(set(frames("ip.src == 198.51.100.2")) | set(data)),
               drop_b=data)
    f = next(f for f in res.report.findings if f.code == "OPENVPN_NO_RESPONSE")
    assert (f.location["from"], f.location["to"]) == ("near-server", "near-client"), f.location


def test_openvpn_tcp_located(tmp_path):
    """openvpn_tcp_tlscrypt_healthy (lab, OpenVPN over TCP 443 with tls-crypt): the stream's
    packets matched by the same numbers as over UDP (control: session ID + replay packet ID;
    AEAD data: packet ID).  Frame 29 (the client's data packet with packet ID 2) lost before
    near-server; a NAT rewrites the client's address.  Near-server's stream has a hole there
    and reads on: one OpenVPN packet lost between the points."""
    src = LAB / "openvpn_tcp_tlscrypt_healthy" / "openvpn_tcp_tlscrypt_healthy.pcap"
    res = _two(tmp_path, src, "192.0.2.2", 1.1111, 0.0, drop_b=[29],
               nat=("203.0.113.9", 0))
    assert _losses(res, "openvpn") == [
        ("near-client", "near-server", "data from the client, key ID 0 peer ID 0", 1,
         [(2, 2)])]
    assert abs(_offset(res)["clock_offset_s"] - 1.1111) < TOLERANCE
    assert _offset(res)["matched_packets"] > 20


def test_epochs_lined_up_by_time(tmp_path):
    """L2TP control whose Ns restarted (a new control connection reusing the tunnel IDs):
    Ns 0..299 each way, a pause, then 0..59.  Near-client began capturing after the restart
    (the first run is left out of its copy), near-server saw both runs: near-client's only
    epoch is near-server's second.  The client's Ns 20 of the second run is lost before
    near-server: found, and nothing of the first run is called lost or paired."""
    import ipaddress
    import struct

    client, server = "192.0.2.50", "198.51.100.50"
    recs = []
    frames = {}
    t = 1_700_000_000.0
    for run_, (gap, count) in enumerate(((0.0, 300), (20.0, 60))):
        t += gap
        for ns in range(count):
            for fc in (True, False):
                t += 0.01
                avp = struct.pack("!HHHH", 0x8008, 0, 0, 6)  # HELLO
                l2 = struct.pack("!HHHHHH", 0xC802, 12 + len(avp), 9 if fc else 5, 0, ns,
                                 ns) + avp
                src, dst = (client, server) if fc else (server, client)
                udp = struct.pack("!HHHH", 1701, 1701, 8 + len(l2), 0) + l2
                ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), len(recs) & 0xFFFF,
                                 0, 64, 17, 0, ipaddress.ip_address(src).packed,
                                 ipaddress.ip_address(dst).packed)
                frame = bytes(12) + b"\x08\x00" + ip + udp
                recs.append(struct.pack("<IIII", int(t), round((t % 1) * 1e6), len(frame),
                                        len(frame)) + frame)
                frames[(run_, fc, ns)] = len(recs)
    src = tmp_path / "l2tp.pcap"
    src.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(recs))
    first_run = [n for (r, _fc, _ns), n in frames.items() if r == 0]
    res = _two(tmp_path, src, client, 0.7777, 0.002, drop_a=first_run,
               drop_b=[frames[(1, True, 20)]])
    assert _losses(res, "l2tp") == [
        ("near-client", "near-server", "control, tunnel ID 9", 1, [(20, 20)])]
    assert abs(_offset(res)["clock_offset_s"] - 0.7777) < TOLERANCE
