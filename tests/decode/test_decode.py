"""pcapvpn.decode: classification, IP fragment reassembly and TCP streams, with hand-built frames."""

from __future__ import annotations

import struct

import pytest

from synth import (
    LINKTYPE_ETHERNET, eth, esp, esp_frame, ike_frame, ike_sa_init, ip_frame, ipv4, ipv6,
    keepalive_frame, udp,
)
from pcapvpn.decode import Decoder, NullSink
from pcapvpn.limits import Limits

ISPI = bytes.fromhex("0102030405060708")
ZERO = bytes(8)


class Rec(NullSink):
    def __init__(self):
        self.events = []

    def ike(self, ref, ts, ipver, src, dst, sport, dport, transport, msg, frames):
        self.events.append(("ike", ref[1], sport, dport, transport, msg.size, frames))

    def ike_rejected(self, ref, ts, ipver, src, dst, sport, dport, transport, data, reason,
                     frames):
        self.events.append(("ike", ref[1], sport, dport, transport, len(data), frames))

    def esp(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, length):
        self.events.append(("esp", ref[1], sport, dport, spi, seq, length))

    def esp_tcp(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, length):
        self.events.append(("esp_tcp", ref[1], spi, seq))

    def ah(self, ref, ts, ipver, src, dst, spi, seq, length):
        self.events.append(("ah", ref[1], spi, seq))

    def keepalive(self, ref, ts, ipver, src, dst, sport, dport):
        self.events.append(("keepalive", ref[1]))

    def icmp_error(self, ref, ts, ipver, src, dst, icmp_type, icmp_code, mtu, quoted):
        self.events.append(("icmp", ref[1], icmp_type, icmp_code, mtu, quoted[3] if quoted else None))

    def fragments_incomplete(self, first_ts, ipver, src, dst, proto, ident, frames, first, why):
        self.events.append(("incomplete", ident, tuple(f[1] for f in frames), why))

    def esp_fragmented(self, ipver, src, dst, spi, frames, proto):
        self.events.append(("esp_fragmented", spi, tuple(f[1] for f in frames)))

    def decode_error(self, ref, reason):
        self.events.append(("error", ref[1], reason))


def run(frames, limits=None):
    sink = Rec()
    d = Decoder(sink, limits)
    d.run([(0, i + 1, ts, LINKTYPE_ETHERNET, data, len(data), 0)
           for i, (ts, data) in enumerate(frames)])
    d.finish()
    return sink.events, d


def test_classification():
    msg = ike_sa_init(ISPI, ZERO, False)
    frames = [
        (1.0, ike_frame("192.0.2.1", "198.51.100.1", msg)),
        (1.1, ike_frame("192.0.2.1", "198.51.100.1", msg, 4500, 4500)),
        (1.2, esp_frame("192.0.2.1", "198.51.100.1", 0x1234, 7)),
        (1.3, esp_frame("192.0.2.1", "198.51.100.1", 0x5678, 9, udp_ports=(4500, 4500))),
        (1.4, keepalive_frame("192.0.2.1", "198.51.100.1")),
        (1.5, ip_frame("192.0.2.1", "198.51.100.1", 17, udp(4500, 4500, b"\x01\x02"))),
        (1.6, eth(b"\x00" * 28, 0x0806)),  # ARP: not IP
    ]
    ev, d = run(frames)
    assert ev[0][:5] == ("ike", 1, 500, 500, "udp") and ev[0][5] == len(msg)
    assert ev[1][:5] == ("ike", 2, 4500, 4500, "udp") and ev[1][5] == len(msg)
    assert ev[2] == ("esp", 3, -1, -1, 0x1234, 7, 72)
    assert ev[3] == ("esp", 4, 4500, 4500, 0x5678, 9, 72)
    assert ev[4] == ("keepalive", 5)
    assert ev[5][0] == "error" and ev[5][1] == 6
    assert d.non_ip == 1 and d.frames == 7 and d.decode_errors == 1


def test_ipv4_fragments_reassembled_out_of_order():
    msg = ike_sa_init(ISPI, ZERO, False, group=14)
    dgram = udp(500, 500, msg)
    a, b = dgram[:200], dgram[200:]
    f1 = eth(ipv4("192.0.2.1", "198.51.100.1", 17, a, ident=77, flags_frag=0x2000))
    f2 = eth(ipv4("192.0.2.1", "198.51.100.1", 17, b, ident=77, flags_frag=200 // 8))
    ev, d = run([(1.0, f2), (1.001, f1)])
    ike = [e for e in ev if e[0] == "ike"]
    assert len(ike) == 1 and ike[0][5] == len(msg)
    assert [f[1] for f in ike[0][6]] == [1, 2]  # every fragment is evidence
    assert d.fragment_frames == 2 and d.reassembled == 1


def test_ipv6_fragments_and_esp_fragmented_event():
    inner = esp(0xABCDEF01, 3, 1400)
    a, b = inner[:1000], inner[1000:]

    def frag(off, more, data):
        fh = struct.pack(">BBHI", 50, 0, (off & 0xFFF8) | (1 if more else 0), 9)
        return eth(ipv6("2001:db8::1", "2001:db8::2", 44, fh + data), 0x86DD)

    ev, _ = run([(1.0, frag(0, True, a)), (1.1, frag(1000, False, b))])
    assert ("esp", 2, -1, -1, 0xABCDEF01, 3, len(inner)) in ev
    assert ("esp_fragmented", 0xABCDEF01, (1, 2)) in ev


def test_incomplete_fragments_timeout_vs_end():
    a = udp(4500, 4500, bytes(4) + ike_sa_init(ISPI, ZERO, False))[:300]
    first = eth(ipv4("192.0.2.1", "198.51.100.1", 17, a, ident=5, flags_frag=0x2000))
    other = eth(ipv4("192.0.2.1", "198.51.100.1", 17, a, ident=6, flags_frag=0x2000))
    ev, d = run([(1.0, first), (40.0, other)], Limits(frag_timeout=30.0))
    inc = [e for e in ev if e[0] == "incomplete"]
    assert inc == [("incomplete", 5, (1,), "timeout"), ("incomplete", 6, (2,), "end")]
    assert d.frag_incomplete == 2


def test_fragments_time_out_whatever_frames_follow():
    # the capture goes on for longer than frag_timeout with ESP only (which the fast paths keep
    # from the general decoder): the set timed out, it was not cut off by the end of the capture
    a = udp(4500, 4500, bytes(4) + ike_sa_init(ISPI, ZERO, False))[:300]
    first = eth(ipv4("192.0.2.1", "198.51.100.1", 17, a, ident=5, flags_frag=0x2000))
    later = [(2.0 + i, esp_frame("192.0.2.1", "198.51.100.1", 0x1234, i + 1)) for i in range(40)]
    ev, d = run([(1.0, first)] + later, Limits(frag_timeout=30.0))
    assert [e for e in ev if e[0] == "incomplete"] == [("incomplete", 5, (1,), "timeout")]
    # not long enough: cut off by the end
    ev, d = run([(1.0, first)] + later[:20], Limits(frag_timeout=30.0))
    assert [e for e in ev if e[0] == "incomplete"] == [("incomplete", 5, (1,), "end")]


def test_fragment_joins_only_a_set_that_has_not_timed_out():
    a = udp(4500, 4500, bytes(4) + ike_sa_init(ISPI, ZERO, False))
    head = eth(ipv4("192.0.2.1", "198.51.100.1", 17, a[:200], ident=7, flags_frag=0x2000))
    tail = eth(ipv4("192.0.2.1", "198.51.100.1", 17, a[200:], ident=7, flags_frag=200 // 8))
    esp_only = [(2.0 + i, esp_frame("192.0.2.1", "198.51.100.1", 0x1234, i + 1))
                for i in range(31)]
    # the tail 31.5 s after the head: the head's set timed out first, the tail starts a new one
    ev, _ = run([(1.0, head)] + esp_only + [(32.5, tail)], Limits(frag_timeout=30.0))
    # the IKE message is read from the head alone (frame 1), once; the tail makes no message
    assert [e[1] for e in ev if e[0] == "ike"] == [1]
    assert [e for e in ev if e[0] == "incomplete"] == [
        ("incomplete", 7, (1,), "timeout"), ("incomplete", 7, (33,), "end")]
    # 29 s: reassembled
    ev, _ = run([(1.0, head), (30.0, tail)], Limits(frag_timeout=30.0))
    assert [e[0] for e in ev] == ["ike"]


def test_fragment_sets_are_bounded():
    frames = []
    for i in range(10):
        frames.append((1.0 + i / 100, eth(ipv4("192.0.2.1", "198.51.100.1", 17, bytes(64),
                                                 ident=i, flags_frag=0x2000))))
    ev, d = run(frames, Limits(frag_max_sets=4))
    assert d.frag_evicted == 6
    assert sum(1 for e in ev if e[0] == "incomplete" and e[3] == "evicted") == 6


def _tcp(sport, dport, seq, flags, payload=b""):
    return struct.pack(">HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload


def test_tcp_encapsulation_rfc9329_stream_reassembly():
    msg = ike_sa_init(ISPI, ZERO, False)
    stream = b"IKETCP" + struct.pack(">H", len(msg) + 6) + bytes(4) + msg
    espmsg = struct.pack(">II", 0x11223344, 1) + bytes(40)
    stream += struct.pack(">H", len(espmsg) + 2) + espmsg
    cut = 50
    seq0 = 1000
    frames = [
        (1.0, ip_frame("192.0.2.1", "198.51.100.1", 6, _tcp(40000, 4500, seq0 - 1, 0x02))),
        # second segment first (out of order), then the first, then a retransmission
        (1.1, ip_frame("192.0.2.1", "198.51.100.1", 6,
                       _tcp(40000, 4500, seq0 + cut, 0x18, stream[cut:]))),
        (1.2, ip_frame("192.0.2.1", "198.51.100.1", 6, _tcp(40000, 4500, seq0, 0x18, stream[:cut]))),
        (1.3, ip_frame("192.0.2.1", "198.51.100.1", 6, _tcp(40000, 4500, seq0, 0x18, stream[:cut]))),
    ]
    ev, d = run(frames)
    ike = [e for e in ev if e[0] == "ike"]
    assert len(ike) == 1 and ike[0][4] == "tcp" and ike[0][5] == len(msg)
    assert ("esp_tcp", 3, 0x11223344, 1) in ev
    assert d.tcp.retransmissions == 1


def test_icmp_error_quoting_ike():
    quoted = ipv4("192.0.2.1", "198.51.100.1", 17, udp(500, 500, b"\x00" * 8))[:28]
    icmp = struct.pack(">BBHI", 3, 3, 0, 0) + quoted
    ev, _ = run([(1.0, ip_frame("198.51.100.1", "192.0.2.1", 1, icmp))])
    assert ev == [("icmp", 1, 3, 3, 0, 17)]


def test_ah_then_esp():
    ah = struct.pack(">BBHII", 50, 4, 0, 0x1111, 5) + bytes(12)  # 24-byte AH (RFC 4302 §2.2)
    ev, _ = run([(1.0, ip_frame("192.0.2.1", "198.51.100.1", 51, ah + esp(0x2222, 5)))])
    assert ("ah", 1, 0x1111, 5) in ev
    assert ("esp", 1, -1, -1, 0x2222, 5, 72) in ev


def test_malformed_frames_counted_not_raised():
    bad = eth(ipv4("192.0.2.1", "198.51.100.1", 50, b"\x00\x00")[:22])
    ev, d = run([(1.0, bad), (1.1, b"\x01\x02"), (1.2, esp_frame("192.0.2.1", "198.51.100.1", 9, 1))])
    assert d.decode_errors >= 1
    assert ev[-1][0] == "esp"


def _ike_head_and_tail(src, dst, ident, size=600):
    """A UDP 4500 IKE datagram (non-ESP marker, IKE_SA_INIT) cut in two IPv4 fragments."""
    a = udp(4500, 4500, bytes(4) + ike_sa_init(ISPI, ZERO, src != "192.0.2.1"))
    assert len(a) > 200
    head = eth(ipv4(src, dst, 17, a[:200], ident=ident, flags_frag=0x2000, total_len=220))
    tail = eth(ipv4(src, dst, 17, a[200:], ident=ident, flags_frag=200 // 8))
    return head, tail


def test_ike_head_given_up_in_its_place_when_the_conversation_moves_on():
    """A port capture filter keeps only first fragments: the request's first fragment, then
    (20 ms later) the peer's answer in one packet.  The request is read from its first
    fragment and handed over before the answer ("passed"), not at the end of the capture."""
    head, _tail = _ike_head_and_tail("192.0.2.1", "198.51.100.1", 9)
    answer = eth(ipv4("198.51.100.1", "192.0.2.1", 17,
                      udp(4500, 4500, bytes(4) + ike_sa_init(ISPI, ISPI, True))))
    ev, d = run([(1.0, head), (1.02, answer)])
    got = [(e[0], e[1]) for e in ev if e[0] in ("ike", "incomplete")]
    assert got == [("ike", 1), ("incomplete", 9), ("ike", 2)]
    assert [e[3] for e in ev if e[0] == "incomplete"] == ["passed"]
    assert d.frag_incomplete == 1 and d.reassembled == 0


def test_ike_head_waits_for_its_tail_within_a_burst():
    """Another IKE message between the pair 1 ms after the first fragment (within
    FRAGMENT_BURST): the set stays, its tail completes it, one whole message."""
    head, tail = _ike_head_and_tail("192.0.2.1", "198.51.100.1", 9)
    other = eth(ipv4("198.51.100.1", "192.0.2.1", 17,
                     udp(4500, 4500, bytes(4) + ike_sa_init(ISPI, ISPI, True))))
    ev, d = run([(1.0, head), (1.001, other), (1.002, tail)])
    assert [e for e in ev if e[0] == "incomplete"] == []
    assert [(e[1], e[6]) for e in ev if e[0] == "ike"] == [(2, ((0, 2),)), (3, ((0, 1), (0, 3)))]
    assert d.reassembled == 1


def test_ike_head_retransmitted_gives_up_the_previous_copy():
    """The same request re-sent as a new datagram 2 s later, first fragments only: the first
    copy is given up when the second starts, so the copies reach the tracker in order."""
    h1, _ = _ike_head_and_tail("192.0.2.1", "198.51.100.1", 9)
    h2, _ = _ike_head_and_tail("192.0.2.1", "198.51.100.1", 10)
    ev, d = run([(1.0, h1), (3.0, h2)])
    got = [(e[0], e[1]) for e in ev if e[0] in ("ike", "incomplete")]
    assert got == [("ike", 1), ("incomplete", 9), ("ike", 2), ("incomplete", 10)]
    assert [e[3] for e in ev if e[0] == "incomplete"] == ["passed", "end"]


@pytest.mark.parametrize("batch", [True, False])
@pytest.mark.parametrize("udp_ports", [None, (4500, 4500)])
def test_snaplen_cut_esp_keeps_its_size_on_the_wire(tmp_path, batch, udp_ports):
    """tcpdump -s 96 (or a router's capture that keeps headers only): ESP frames cut to 96
    bytes.  Their size is the size on the wire (the record's original length), as in the whole
    capture, on every path (ESP fast path, batches, the general decoder for IPv6), so what reads
    sizes (MTU black holes, bytes per SA) sees the same packets."""
    from dissect.vpn.capture.writers import PcapWriter
    from pcapvpn.analysis import Options, run as analyse

    frames = [esp_frame("192.0.2.1", "198.51.100.1", 0x1234, i + 1, body_len=1400,
                        udp_ports=udp_ports) for i in range(5)]
    frames += [esp_frame("2001:db8::1", "2001:db8::2", 0x5678, i + 1, body_len=1200,
                         udp_ports=udp_ports) for i in range(5)]
    sizes = {}
    for name, snap in (("whole", None), ("cut", 96)):
        path = tmp_path / f"{name}.pcap"
        with open(path, "wb") as f:
            w = PcapWriter(f, LINKTYPE_ETHERNET)
            for i, data in enumerate(frames):
                w.write_packet(1.0 + i, data[:snap] if snap else data, len(data))
        res = analyse([str(path)], Options(batch=batch))
        sizes[name] = sorted((e.spi, e.packets, e.bytes) for e in res.state.esp_sas)
    assert sizes["cut"] == sizes["whole"]
    assert [b for _s, _n, b in sizes["whole"]] == [5 * (1400 + 8), 5 * (1200 + 8)]


def test_snaplen_cut_ike_on_custom_ports_is_still_ike():
    """IKE on ports other than 500/4500 is told by its header's Length matching the datagram;
    cut by a snapshot length of 96 bytes, the Length is compared with the size on the wire
    (the record's original length), so the message is still IKE (it was 'other' and the
    tunnel vanished); the same bytes not cut but short stay unrecognised."""
    raw = ike_sa_init(ISPI, ZERO, False)
    frame = eth(ipv4("192.0.2.1", "198.51.100.1", 17, udp(7500, 7500, raw)))
    for wirelen, want in ((len(frame), [("ike", 1)]), (None, [])):
        sink = Rec()
        d = Decoder(sink)
        d.run([(0, 1, 1.0, LINKTYPE_ETHERNET, frame[:96], wirelen or 96, 0)])
        d.finish()
        assert [(e[0], e[1]) for e in sink.events if e[0] == "ike"] == want


def test_snaplen_cut_unanswered_ike_gives_its_size_on_the_wire(tmp_path):
    """An IKE_SA_INIT never answered, captured with a snapshot length of 96 bytes: the finding
    gives the message's size on the wire (its header's Length), not the bytes captured."""
    from dissect.vpn.capture.writers import PcapWriter
    from pcapvpn.analysis import run

    raw = ike_sa_init(ISPI, ZERO, False)
    frame = eth(ipv4("192.0.2.1", "198.51.100.1", 17, udp(500, 500, raw)))
    assert len(raw) > 96
    with open(tmp_path / "cut.pcap", "wb") as f:
        w = PcapWriter(f, LINKTYPE_ETHERNET)
        for i in range(4):
            w.write_packet(1_700_000_000.0 + 2 ** i, frame[:96], len(frame))
    res = run([str(tmp_path / "cut.pcap")])
    f, = [f for f in res.findings if f.code == "IKE_NO_RESPONSE"]
    assert f"({len(raw)} bytes)" in f.detail and "(54 bytes)" not in f.detail
