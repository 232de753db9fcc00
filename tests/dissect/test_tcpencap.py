"""dissect.vpn.tcpencap: RFC 9329 framing, the unframed variants and what is not RFC 9329."""

import struct

import pytest

from dissect.vpn.errors import DissectError
from dissect.vpn.tcpencap import (
    FRAMED, IKETCP_PREFIX, MARKER, NEED, NONE, RAW,
    cisco_trailer, ike_header_length, probe, split, split_tcp_stream,
)
from dissect.vpn.udpencap import ESP, IKE, MALFORMED
from test_udpencap import whole


def frame(payload):
    return struct.pack(">H", len(payload) + 2) + payload


def esp(spi, seq, n=40):
    return struct.pack(">II", spi, seq) + b"\xee" * n


def test_constants():
    assert IKETCP_PREFIX == b"IKETCP"
    assert (NONE, FRAMED, MARKER, RAW, NEED) == (0, 1, 2, 3, -1)



def test_split_tcp_stream():
    ike = whole(body=b"\x00" * 4)
    esp = struct.pack(">II", 0x1234, 99) + b"\xee" * 20
    buf = IKETCP_PREFIX + frame(b"\x00" * 4 + ike) + frame(esp) + frame(b"") + frame(b"\x01\x02")
    msgs, consumed = split_tcp_stream(buf, 6)
    assert consumed == len(buf) - 6
    assert msgs[0] == (IKE, 6 + 2 + 4, 6 + 2 + 4 + len(ike), 0, 0)
    assert buf[msgs[0][1]:msgs[0][2]] == ike
    k, o, e, spi, seq = msgs[1]
    assert (k, spi, seq) == (ESP, 0x1234, 99) and buf[o:e] == esp
    assert msgs[2][0] == MALFORMED and msgs[3][0] == MALFORMED


def test_split_tcp_stream_partial():
    esp = struct.pack(">II", 1, 2) + b"x" * 10
    buf = frame(esp) + frame(esp)[:-3]
    msgs, consumed = split_tcp_stream(buf, 0)
    assert len(msgs) == 1 and consumed == len(frame(esp))
    assert split_tcp_stream(buf, consumed) == ([], 0)
    assert split_tcp_stream(b"\x00", 0) == ([], 0)


def test_split_tcp_stream_bad_length():
    esp = struct.pack(">II", 1, 2)
    buf = frame(esp) + b"\x00\x01" + b"zzzz"
    msgs, consumed = split_tcp_stream(buf, 0)
    assert len(msgs) == 1 and consumed == 10
    with pytest.raises(DissectError) as ei:
        split_tcp_stream(buf, consumed)
    assert ei.value.offset == 10


def test_ike_header_length():
    msg = whole(body=b"\x00" * 12)
    assert ike_header_length(msg, 0) == len(msg)
    assert ike_header_length(whole(ver=0x10, exch=2, flags=0), 0) == 28
    assert ike_header_length(whole(ispi=bytes(8)), 0) == 0          # initiator SPI zero
    assert ike_header_length(whole(flags=0x01), 0) == 0             # an IKEv1 flag on IKEv2
    assert ike_header_length(whole(ver=0x30), 0) == 0
    assert ike_header_length(whole(exch=99), 0) == 0
    assert ike_header_length(msg[:27], 0) == 0


def test_probe_framed_ike_needs_both_lengths_to_agree():
    msg = whole(body=b"\x00" * 100)
    buf = frame(b"\x00" * 4 + msg)
    assert probe(buf, 0) == FRAMED and probe(buf, 0, strict=False) == FRAMED
    bad = struct.pack(">H", len(msg) + 7) + buf[2:]
    assert probe(bad, 0) == NONE
    assert probe(buf[:20], 0) == NEED      # the IKE header is not complete yet


def test_probe_unframed_variants_only_where_ike_is_expected():
    msg = whole(body=b"\x00" * 100)
    assert probe(b"\x00" * 4 + msg, 0, strict=False) == MARKER
    assert probe(b"\x00" * 4 + msg, 0, strict=True) == NONE
    assert probe(msg, 0, strict=False) == RAW
    assert probe(msg, 0, strict=True) == NONE


def test_probe_esp_pair_joined_mid_stream():
    buf = frame(esp(0xC0FFEE, 41)) + frame(esp(0xC0FFEE, 42))
    assert probe(buf, 0, strict=False) == FRAMED
    assert probe(buf, 0, strict=True) == NONE  # ESP alone proves nothing on another port
    assert probe(buf[:50], 0, strict=False) == NEED
    other = frame(esp(0xC0FFEE, 41)) + frame(esp(0xBADBAD, 42))
    assert probe(other, 0, strict=False) == NONE
    far = frame(esp(0xC0FFEE, 41)) + frame(esp(0xC0FFEE, 41 + 1000))
    assert probe(far, 0, strict=False) == NONE


def test_probe_rejects_random_text():
    http = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"
    # "GE" read as a Length announces an ESP packet of 18,245 bytes: wait for the next one
    assert probe(http * 3, 0, strict=False) == NEED
    assert probe(http * 1000, 0, strict=False) == NONE
    assert probe(http * 3, 0, strict=True) == NONE
    assert probe(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n" + b"\x00" * 40, 0) == NONE


def test_split_marker_and_raw():
    a, b = whole(body=b"\x01" * 10), whole(exch=35, body=b"\x02" * 30)
    buf = b"\x00" * 4 + a + b"\x00" * 4 + b + b"\x00" * 4 + b[:20]
    msgs, used = split(buf, 0, MARKER)
    assert [(k, buf[o:e]) for k, o, e, _s, _q in msgs] == [(IKE, a), (IKE, b)]
    assert used == 8 + len(a) + len(b)
    msgs, used = split(a + b, 0, RAW)
    assert len(msgs) == 2 and used == len(a) + len(b)
    with pytest.raises(DissectError):
        split(b"\x01" * 40, 0, MARKER)
    with pytest.raises(DissectError):
        split(b"\x00" * 4 + b"\x01" * 40, 0, RAW)
    assert split(frame(esp(1, 2)), 0, FRAMED) == split_tcp_stream(frame(esp(1, 2)), 0)


def test_libreswan_stream_from_the_lab():
    """The first 40 bytes libreswan 4.10 sent without espintcp (tests/data/iketcp): the IKETCP
    prefix in a segment of its own, then Non-ESP Marker + IKE_SA_INIT (828 bytes), no Length."""
    head = bytes.fromhex("00000000338f26ad0467e977000000000000000021202208000000000000033c"
                         "220001b4")
    assert probe(head, 0, strict=False) == MARKER
    assert probe(head, 0, strict=True) == NONE


def test_cisco_ctcp_is_not_rfc9329():
    """Cisco IPsec over TCP: UDP header (500 -> 500) + ISAKMP + 16-byte trailer, per segment
    (Wireshark tcpencap); ESP + trailer."""
    ike = whole(ver=0x10, exch=2, flags=0, body=b"\x00" * 40)
    udp = struct.pack(">HHHH", 500, 500, 8 + len(ike), 0)
    trailer = (bytes(4) + struct.pack(">HH", 1, 0x4000) + b"\x21\x45\x6c\x69\x6f" + b"\x11"
               + b"\x00\x00")
    seg = udp + ike + trailer
    assert cisco_trailer(seg, 0, len(seg))
    assert probe(seg, 0, strict=False) == NEED  # 0x01f4 read as a Length: 500 bytes
    assert probe(seg * 8, 0, strict=False) == NONE
    espseg = esp(0x12345678, 1) + bytes(4) + struct.pack(">HH", 2, 0) + b"\x21\x45\x6c\x69\x6f" + \
        b"\x32" + b"\x00\x00"
    assert cisco_trailer(espseg, 0, len(espseg))
    assert probe(espseg, 0, strict=False) != FRAMED
    assert not cisco_trailer(frame(esp(1, 2)), 0, len(frame(esp(1, 2))))


def test_frame_head_and_an_ike_header_cut_before_its_length():
    """What frames a message in each framing; an IKE header of which a snapshot length kept 24
    bytes (all but its Length) takes the frame's length, anything else is not rebuilt."""
    from dissect.vpn.ike import parse_message
    from dissect.vpn.tcpencap import FRAMED, MARKER, RAW, frame_head, ike_head_of_frame

    assert (frame_head(FRAMED), frame_head(MARKER), frame_head(RAW)) == (2, 32, 28)
    msg = bytes(range(1, 17)) + bytes((33, 0x20, 34, 0x08)) + struct.pack(">II", 0, 300) \
        + bytes(272)
    buf = struct.pack(">H", 6 + len(msg)) + bytes(4) + msg
    off, end = 6, len(buf)
    head = ike_head_of_frame(buf, off, off + 24, end)
    assert head == msg[:28] and parse_message(head).truncated
    assert ike_head_of_frame(buf, off, off + 23, end) is None
    assert ike_head_of_frame(buf, off, off + 28, end) is None
