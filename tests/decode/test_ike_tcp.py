"""IKE over TCP (RFC 9329, formerly RFC 8229; issue 13 §2b): real libreswan captures
(tests/data/iketcp, see its README) and synthetic streams built with scapy from the same IKE
messages, framed as libreswan's kernel (espintcp) frames them."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import jsonschema
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap

from conftest import REPO
from pcapvpn.analysis import run
from pcapvpn.report import render

DATA = REPO / "tests" / "data" / "iketcp"
SCHEMA = json.loads((REPO / "docs" / "schema.json").read_text())
WEST, EAST = "192.0.2.2", "198.51.100.2"
TUNNEL = f"{WEST}<->{EAST}"


def analyse(path: Path):
    res = run([str(path)])
    doc = json.loads(render(res.report, "json"))
    jsonschema.validate(doc, SCHEMA)
    return res, doc


def codes(doc, tunnel=TUNNEL):
    t = next(t for t in doc["tunnels"] if t["id"] == tunnel)
    by_id = {f["id"]: f for f in doc["findings"]}
    return t, [by_id[i] for i in t["findings"]]


# -- the real captures -------------------------------------------------------------------------

def test_libreswan_ike_over_tcp_forms_the_tunnel():
    res, doc = analyse(DATA / "libreswan_tcp.pcap")
    c = doc["capture"]["counts"]
    assert c["ike_tcp"] == c["ike"] == 6 and c["ike_udp_500"] == c["ike_udp_4500"] == 0
    assert doc["capture"]["decode_errors"] == 0
    assert [t["id"] for t in doc["tunnels"]] == [TUNNEL]
    (sa,) = doc["ike_sas"]
    assert sa["initiator"] == {"address": WEST, "port": 52796} and sa["established"]
    assert sa["nat"]["transports"] == ["tcp"]
    assert all(m["transport"] == "tcp" for s in doc["ike_sas"] for m in s["messages"])
    exch = [(m["exchange"], m["response"]) for m in doc["ike_sas"][0]["messages"]]
    assert exch[:4] == [("IKE_SA_INIT", False), ("IKE_SA_INIT", True), ("IKE_AUTH", False),
                        ("IKE_AUTH", True)]
    t, fs = codes(doc)
    assert not [f for f in fs if f["severity"] in ("error", "critical")]
    assert t["stage_reached"] != "reachability"


def test_libreswan_udp_blocked_then_tcp_is_one_tunnel_that_recovered():
    _res, doc = analyse(DATA / "libreswan_fallback.pcap")
    c = doc["capture"]["counts"]
    assert c["ike_udp_500"] == 6 and c["ike_tcp"] == 6
    assert [t["id"] for t in doc["tunnels"]] == [TUNNEL]
    udp_sa, tcp_sa = doc["ike_sas"]
    assert tcp_sa["retry_of"] == udp_sa["id"]  # the TCP attempt is the UDP one's retry
    assert {m["transport"] for m in udp_sa["messages"]} == {"udp"}
    assert {m["transport"] for m in tcp_sa["messages"]} == {"tcp"}
    _t, fs = codes(doc)
    (nr,) = [f for f in fs if f["code"] == "IKE_NO_RESPONSE"]
    assert nr["severity"] == "warning"  # recovered: material for a degraded verdict
    assert "Recovered at +" in nr["detail"] and "IKE over TCP" in nr["detail"]
    assert not [f for f in fs if f["code"] in ("TCP_RESET", "TCP_NO_ANSWER", "NAT_T_BLOCKED")]


def test_libreswan_tcp_only_refused_with_rst():
    _res, doc = analyse(DATA / "libreswan_refused.pcap")
    t, fs = codes(doc)
    assert t["verdict"] == "failing" and t["failed_stage"] == "reachability"
    assert t["primary_code"] == "TCP_RESET" and t["ike_sas"] == []
    (f,) = fs
    assert "refused" in f["title"] and "2 refused" in f["detail"]
    assert any("listen-tcp=yes" in a for a in f["advice"])
    assert len(f["evidence"]["frames"]) == 2


def test_libreswan_tcp_only_syn_unanswered():
    _res, doc = analyse(DATA / "libreswan_dropped.pcap")
    t, fs = codes(doc)
    assert t["verdict"] == "failing" and t["primary_code"] == "TCP_NO_ANSWER"
    assert "IKE over TCP" in fs[0]["title"] and "9 SYN(s)" in fs[0]["detail"]


# -- synthetic streams -------------------------------------------------------------------------

def libreswan_messages() -> list[tuple[bool, bytes]]:
    """(from the initiator, IKE message) of libreswan_tcp.pcap, in order (Non-ESP Marker + IKE,
    no Length, after the IKETCP prefix)."""
    out = []
    for p in rdpcap(str(DATA / "libreswan_tcp.pcap")):
        if TCP not in p:
            continue
        data = bytes(p[TCP].payload)
        if not data or data == b"IKETCP":
            continue
        assert data[:4] == bytes(4)
        (length,) = struct.unpack_from(">I", data, 4 + 24)
        assert length == len(data) - 4  # one message per segment in this capture
        out.append((p[IP].src == WEST, data[4:]))
    return out


def framed(msg: bytes) -> bytes:
    """RFC 9329 §3.1: Length (counting itself) + Non-ESP Marker + IKE."""
    return struct.pack(">H", 2 + 4 + len(msg)) + bytes(4) + msg


def framed_esp(spi: int, seq: int, n: int = 80) -> bytes:
    body = struct.pack(">II", spi, seq) + bytes((seq * 13 + i) & 0xFF for i in range(n))
    return struct.pack(">H", 2 + len(body)) + body


class Conversation:
    """A TCP connection written with scapy: sequence and acknowledgement numbers kept for both
    sides; ``drop`` leaves a segment out of the capture (it still reaches the peer)."""

    def __init__(self, client=WEST, server=EAST, cport=52796, sport=4500, v6=False):
        # libreswan_tcp.pcap's ports by default: its NAT-D hashes then match
        self.ep = {True: (client, cport), False: (server, sport)}
        self.seq = {True: 1000, False: 500000}
        self.v6 = v6
        self.frames = []
        self.t = 1_700_000_000.0

    def _pkt(self, from_client, flags, payload=b"", seq=None):
        (src, sp), (dst, dp) = self.ep[from_client], self.ep[not from_client]
        ipl = IPv6(src=src, dst=dst) if self.v6 else IP(src=src, dst=dst)
        seg = TCP(sport=sp, dport=dp, flags=flags,
                  seq=self.seq[from_client] if seq is None else seq,
                  ack=self.seq[not from_client] if "A" in flags else 0)
        self.t += 0.001
        p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ipl / seg / payload
        p.time = self.t
        return p

    def handshake(self):
        self.frames.append(self._pkt(True, "S"))
        self.seq[True] += 1
        self.frames.append(self._pkt(False, "SA"))
        self.seq[False] += 1
        self.frames.append(self._pkt(True, "A"))
        return self

    def send(self, from_client, data: bytes, cuts=(), drop=False, ack=True):
        pieces, last = [], 0
        for c in list(cuts) + [len(data)]:
            pieces.append(data[last:c])
            last = c
        for piece in pieces:
            p = self._pkt(from_client, "PA", piece)
            if not drop:
                self.frames.append(p)
            self.seq[from_client] += len(piece)
        if ack:
            self.frames.append(self._pkt(not from_client, "A"))
        return self

    def close(self, rst_from_server=False):
        if rst_from_server:
            self.frames.append(self._pkt(False, "R"))
            return self
        for side in (True, False):
            self.frames.append(self._pkt(side, "FA"))
            self.seq[side] += 1
        self.frames.append(self._pkt(True, "A"))
        return self

    def write(self, path: Path) -> Path:
        wrpcap(str(path), self.frames)
        return path


def rfc9329_session(conv: Conversation, esp_packets=4, prefix=True, cut=True) -> Conversation:
    msgs = libreswan_messages()
    if prefix:
        conv.send(True, b"IKETCP")
    for i, (from_init, msg) in enumerate(msgs[:4]):
        data = framed(msg)
        # cut inside the Length, inside the IKE header and near the end
        conv.send(from_init, data, cuts=((1, 30, len(data) - 3) if cut and i % 2 == 0 else ()))
    esp = b"".join(framed_esp(0xC1000001, s) for s in range(1, esp_packets + 1))
    conv.send(True, esp, cuts=(50, 200) if cut else ())
    back = b"".join(framed_esp(0xC2000002, s) for s in range(1, esp_packets + 1))
    conv.send(False, back, cuts=(7,) if cut else ())
    return conv


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_rfc9329_framed_session_with_esp(tmp_path, v6):
    client, server = ("2001:db8::2", "2001:db8:1::2") if v6 else (WEST, EAST)
    conv = rfc9329_session(Conversation(client, server, v6=v6).handshake()).close()
    _res, doc = analyse(conv.write(tmp_path / "framed.pcap"))
    c = doc["capture"]["counts"]
    assert c["ike_tcp"] == 4 and c["esp_tcp"] == 8 and doc["capture"]["decode_errors"] == 0
    (t,) = doc["tunnels"]
    assert t["id"] == f"{client}<->{server}"
    assert t["verdict"] == "healthy", [f["code"] for f in doc["findings"]]
    assert {e["encap"] for e in doc["esp_sas"]} == {"tcp"} and len(t["esp_sas"]) == 2


def test_stream_joined_mid_way(tmp_path):
    """The capture starts after the handshake and the IKE_SA_INIT: no SYN, no prefix; the first
    framed IKE message proves the framing.  A second connection carries only ESP (joined after
    its IKE): two framed packets of one SPI prove it."""
    conv = rfc9329_session(Conversation().handshake(), cut=False)
    first_auth = next(i for i, p in enumerate(conv.frames)
                      if TCP in p and len(bytes(p[TCP].payload)) > 100
                      and bytes(p[TCP].payload)[2:6] == bytes(4)
                      and bytes(p[TCP].payload)[6 + 18] == 35)
    other = Conversation(cport=41999).handshake()
    other.send(True, b"".join(framed_esp(0xC3000003, s) for s in range(40, 44)))
    frames = conv.frames[first_auth:] + other.frames[3:]
    wrpcap(str(tmp_path / "mid.pcap"), frames)
    _res, doc = analyse(tmp_path / "mid.pcap")
    c = doc["capture"]["counts"]
    assert c["ike_tcp"] == 2 and c["esp_tcp"] == 12
    assert doc["capture"]["decode_errors"] == 0


@pytest.mark.parametrize("port", [8443, 443])
def test_any_port_once_the_prefix_shows_it(tmp_path, port):
    """Port 443 is also an SSL-VPN port (FortiGate's ike-tcp-port defaults to 443)."""
    conv = rfc9329_session(Conversation(sport=port).handshake()).close()
    _res, doc = analyse(conv.write(tmp_path / "p.pcap"))
    assert doc["capture"]["counts"]["ike_tcp"] == 4
    assert doc["capture"]["counts"]["esp_tcp"] == 8
    assert [t["id"] for t in doc["tunnels"]] == [TUNNEL]


def test_unframed_libreswan_stream_on_another_port(tmp_path):
    conv = Conversation(sport=8500).handshake()
    conv.send(True, b"IKETCP")
    for from_init, msg in libreswan_messages():
        conv.send(from_init, bytes(4) + msg, cuts=(3,))
    _res, doc = analyse(conv.close().write(tmp_path / "u.pcap"))
    assert doc["capture"]["counts"]["ike_tcp"] == 6 and doc["capture"]["decode_errors"] == 0


def test_random_tcp_on_another_port_is_not_followed(tmp_path):
    conv = Conversation(sport=8443).handshake()
    conv.send(True, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conv.send(False, b"HTTP/1.1 200 OK\r\n\r\n" + bytes(200))
    res, doc = analyse(conv.close().write(tmp_path / "h.pcap"))
    assert doc["capture"]["counts"]["tcp_segments_on_vpn_ports"] == 0
    assert doc["tunnels"] == [] and doc["capture"]["decode_errors"] == 0


def _ctcp_segment(payload: bytes, proto: int, seq: int) -> bytes:
    """Cisco IPsec over TCP: packet + 16-byte trailer (Wireshark tcpencap's layout)."""
    trailer = bytes(4) + struct.pack(">HH", seq, 0x4000 if proto == 17 else 0) + \
        b"\x21\x45\x6c\x69\x6f" + bytes((proto,)) + b"\x00\x00"
    return payload + trailer


@pytest.mark.parametrize("port", [4500, 10000])
def test_cisco_ctcp_is_not_taken_for_rfc9329(tmp_path, port):
    ike = libreswan_messages()[0][1]
    udp = struct.pack(">HHHH", 500, 500, 8 + len(ike), 0)
    conv = Conversation(sport=port).handshake()
    conv.send(True, _ctcp_segment(udp + ike, 17, 1))
    conv.send(True, _ctcp_segment(struct.pack(">II", 0xDEAD0001, 1) + bytes(60), 50, 2))
    conv.send(False, _ctcp_segment(struct.pack(">II", 0xBEEF0001, 1) + bytes(60), 50, 1))
    res, doc = analyse(conv.close().write(tmp_path / "ctcp.pcap"))
    c = doc["capture"]["counts"]
    assert c["ike"] == 0 and c["esp"] == 0 and doc["capture"]["decode_errors"] == 0
    assert c.get("tcp_streams_unrecognised", 0) == (2 if port == 4500 else 0)
    assert not [f for f in doc["findings"] if f["severity"] in ("error", "critical")]


def test_check_point_raw_ike_over_tcp_500(tmp_path):
    """Check Point's IKE over TCP (ike-scan --tcp=1, "RAW IKE over TCP"): bare IKE messages."""
    conv = Conversation(sport=500).handshake()
    for from_init, msg in libreswan_messages()[:4]:
        conv.send(from_init, msg)
    _res, doc = analyse(conv.close().write(tmp_path / "cp.pcap"))
    assert doc["capture"]["counts"]["ike_tcp"] == 4 and doc["capture"]["decode_errors"] == 0


def test_segment_missed_by_the_capture_is_a_gap_not_the_end(tmp_path):
    """One ESP packet's segment never reached the capture but the peer acknowledged it: the
    hole is given up at that ACK and the packets after it are still read."""
    conv = rfc9329_session(Conversation().handshake(), esp_packets=2, cut=False)
    conv.send(True, framed_esp(0xC1000001, 3), drop=True)
    for s in range(4, 8):
        conv.send(True, framed_esp(0xC1000001, s))
    _res, doc = analyse(conv.close().write(tmp_path / "gap.pcap"))
    c = doc["capture"]["counts"]
    assert c["tcp_gaps"] == 1 and c["esp_tcp"] == 2 + 4 + 2
    assert doc["capture"]["decode_errors"] == 0
    # the peer acknowledged the missed segment: TCP delivered it; the sequence number it carried
    # is the capture's gap, not a lost packet (before: ESP_SEQUENCE_GAP, degraded)
    assert "ESP_SEQUENCE_GAP" not in {f["code"] for f in doc["findings"]}
    assert doc["tunnels"][0]["verdict"] == "healthy"


def test_esp_over_tcp_skipping_numbers_in_a_whole_stream_is_still_a_gap(tmp_path):
    """Every byte of the stream was captured and the sender's ESP sequence still skips numbers:
    the packets were dropped before they entered its TCP stream (a full socket buffer): a
    sequence gap as on UDP."""
    conv = rfc9329_session(Conversation().handshake(), esp_packets=2, cut=False)
    for s in range(6, 10):
        conv.send(True, framed_esp(0xC1000001, s))
    _res, doc = analyse(conv.close().write(tmp_path / "skipped.pcap"))
    assert doc["capture"]["counts"]["tcp_gaps"] == 0
    assert "ESP_SEQUENCE_GAP" in {f["code"] for f in doc["findings"]}


def _verdicts(doc):
    return [(t["id"], t["verdict"], t["stage_reached"]) for t in doc["tunnels"]]


def test_snaplen_cut_libreswan_capture_keeps_its_ike_over_tcp(tmp_path):
    """libreswan_tcp.pcap captured with a snapshot length of 128 bytes (TCP timestamps: 62 bytes
    of each segment): every IKE message is cut after its header and first payloads.  The stream
    keeps its place past each cut segment: the six messages are read (cut, as cut UDP
    datagrams' are), and the tunnel is what the whole capture shows.  Before, the bytes not
    captured were a hole in the stream and not one message was read: unknown."""
    from synth import snap_copy

    _res, whole = analyse(DATA / "libreswan_tcp.pcap")
    _res, doc = analyse(snap_copy(DATA / "libreswan_tcp.pcap", tmp_path / "cut.pcap", 128))
    c = doc["capture"]["counts"]
    assert c["ike_tcp"] == c["ike"] == 6 and doc["capture"]["decode_errors"] == 0
    assert _verdicts(doc) == _verdicts(whole) and doc["tunnels"][0]["verdict"] == "healthy"
    exch = [(m["exchange"], m["response"]) for m in doc["ike_sas"][0]["messages"]]
    assert exch == [(m["exchange"], m["response"]) for m in whole["ike_sas"][0]["messages"]]


def test_snaplen_cut_rfc9329_stream_is_read_past_its_cut_segments(tmp_path):
    """An RFC 9329 session captured with a snapshot length of 96 bytes (42 bytes of each
    segment): each IKE message keeps its header, each segment's first ESP packet its SPI and
    sequence number.  Where a segment carried more packets, the next one's Length was cut: the
    framing is lost there (a gap, no decode error) and found again at the next segment, which
    starts a packet.  The tunnel is the whole capture's."""
    from synth import snap_copy

    conv = rfc9329_session(Conversation().handshake(), cut=False)
    for s in range(5, 8):  # one packet a segment
        conv.send(True, framed_esp(0xC1000001, s))
    conv.close()
    _res, whole = analyse(conv.write(tmp_path / "whole.pcap"))
    _res, doc = analyse(snap_copy(tmp_path / "whole.pcap", tmp_path / "cut.pcap", 96))
    c = doc["capture"]["counts"]
    assert c["ike_tcp"] == 4 and doc["capture"]["decode_errors"] == 0
    # the two 4-packet segments give their first packet; the three single ones all
    assert c["esp_tcp"] == 1 + 3 + 1 and c["tcp_gaps"] == 2
    assert _verdicts(doc) == _verdicts(whole) and doc["tunnels"][0]["verdict"] == "healthy"
    assert {e["spi"] for e in doc["esp_sas"]} == {e["spi"] for e in whole["esp_sas"]}


def test_reset_after_a_working_session_is_no_finding(tmp_path):
    conv = rfc9329_session(Conversation().handshake()).close(rst_from_server=True)
    _res, doc = analyse(conv.write(tmp_path / "rst.pcap"))
    assert not [f for f in doc["findings"] if f["code"] in ("TCP_RESET", "TCP_NO_ANSWER")]


def test_refused_then_working_connection_is_no_finding(tmp_path):
    refused = Conversation(cport=40001)
    refused.frames.append(refused._pkt(True, "S"))
    refused.seq[True] += 1
    refused.frames.append(refused._pkt(False, "RA"))
    conv = rfc9329_session(Conversation(cport=40002).handshake()).close()
    for p in conv.frames:
        p.time += 1
    wrpcap(str(tmp_path / "r.pcap"), refused.frames + conv.frames)
    _res, doc = analyse(tmp_path / "r.pcap")
    assert not [f for f in doc["findings"] if f["code"] in ("TCP_RESET", "TCP_NO_ANSWER")]
    assert doc["tunnels"][0]["verdict"] == "healthy"


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["tcp", "fallback", "refused", "dropped"])
def test_filters_valid_and_show_the_evidence(name):
    """Wireshark does not dissect RFC 9329 streams: the filters name the segments by number."""
    from test_filters import _matching

    path = DATA / f"libreswan_{name}.pcap"
    res = run([str(path)])
    assert res.findings or name == "tcp"
    for f in res.findings:
        rc, err, frames = _matching(path, f.wireshark_filter)
        assert rc in (0, 2) and "isn't a valid" not in err, (f.code, f.wireshark_filter, err)
        want = {e.frame for e in f.evidence.frames}
        assert want <= frames, (f.code, f.wireshark_filter, sorted(want - frames))


def test_ike_tcp_advice_is_translated():
    from pcapvpn import i18n
    from pcapvpn.rules.reachability import IKE_TCP_ADVICE

    ja = i18n.Lang("ja")
    assert all(ja.text(a) != a for a in IKE_TCP_ADVICE)


def test_garbage_after_the_prefix_is_a_decode_error(tmp_path):
    conv = Conversation().handshake()
    conv.send(True, b"IKETCP" + bytes(2) + b"not an IKE header at all, just text" * 3)
    _res, doc = analyse(conv.close().write(tmp_path / "g.pcap"))
    reasons = doc["capture"]["decode_errors_by_reason"]
    assert doc["capture"]["decode_errors"] == 1
    assert any("after the IKETCP prefix" in r for r in reasons)
