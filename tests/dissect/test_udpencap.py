import struct

import pytest

from dissect.vpn.udpencap import (
    ESP, IKE, KEEPALIVE, MALFORMED, OTHER,
    classify_udp, ike_header_valid,
)


def ike_hdr(ver=0x20, exch=34, length=28, np=0, flags=0x08, msgid=0, ispi=b"\x11" * 8, body=b""):
    return ispi + b"\x00" * 8 + bytes((np, ver, exch, flags)) + struct.pack(">II", msgid, length) + body


def whole(ver=0x20, exch=34, body=b"", **kw):
    return ike_hdr(ver=ver, exch=exch, length=28 + len(body), body=body, **kw)


def test_constants():
    assert (OTHER, IKE, ESP, KEEPALIVE, MALFORMED) == (0, 1, 2, 3, -1)


@pytest.mark.parametrize("sport,dport", [(4500, 4500), (4500, 33000), (33000, 4500)])
def test_4500_esp(sport, dport):
    pad = b"\xaa" * 5
    data = pad + struct.pack(">II", 0xC0FFEE01, 7) + b"\x00" * 40
    assert classify_udp(sport, dport, data, 5, len(data)) == (ESP, 0xC0FFEE01, 7)


def test_4500_ike_after_marker():
    msg = whole()
    data = b"\x00\x00\x00\x00" + msg
    assert classify_udp(4500, 4500, data, 0, len(data)) == (IKE, 4, 0)
    # even when the IKE header is bad, the marker says IKE (parse_message reports the rest)
    data = b"\x00" * 4 + b"\x01\x02\x03"
    assert classify_udp(4500, 4500, data, 0, len(data)) == (IKE, 4, 0)


def test_4500_keepalive_and_malformed():
    assert classify_udp(4500, 1234, b"\xff", 0, 1) == (KEEPALIVE, 0, 0)
    assert classify_udp(4500, 1234, b"xx\xff", 2, 3) == (KEEPALIVE, 0, 0)
    assert classify_udp(4500, 1234, b"\x00", 0, 1) == (MALFORMED, 0, 0)
    assert classify_udp(4500, 1234, b"", 0, 0) == (MALFORMED, 0, 0)
    assert classify_udp(4500, 1234, b"\x01\x02\x03\x04\x05", 0, 5) == (MALFORMED, 0, 0)
    # end bounds the payload even if the buffer is longer (link padding)
    data = struct.pack(">II", 5, 6)
    assert classify_udp(4500, 1, data, 0, 7) == (MALFORMED, 0, 0)


def test_500_ike():
    msg = whole(ver=0x10, exch=2)
    assert classify_udp(500, 500, msg, 0, len(msg)) == (IKE, 0, 0)
    # garbage on 500 is still IKE (the parser reports the error)
    assert classify_udp(500, 9, b"abc", 0, 3) == (IKE, 0, 0)
    # non-standard marker tolerated when the header behind it validates
    data = b"\x00" * 4 + msg
    assert classify_udp(500, 500, data, 0, len(data)) == (IKE, 4, 0)
    # zero marker but nothing valid behind: IKE at off
    data = b"\x00" * 40
    assert classify_udp(500, 500, data, 0, len(data)) == (IKE, 0, 0)


def test_other_port_heuristic():
    for ver, exch in [(0x10, 1), (0x10, 2), (0x10, 32), (0x10, 33), (0x20, 34), (0x20, 37),
                      (0x20, 43), (0x20, 44)]:
        msg = whole(ver=ver, exch=exch, body=b"\x00" * 8)
        assert classify_udp(1000, 2000, msg, 0, len(msg)) == (IKE, 0, 0)
        data = b"\x00" * 4 + msg
        assert classify_udp(1000, 2000, data, 0, len(data)) == (IKE, 4, 0)
    for ver, exch in [(0x10, 34), (0x20, 2), (0x11, 2), (0x21, 34), (0x30, 34), (0x20, 38)]:
        msg = whole(ver=ver, exch=exch)
        assert classify_udp(1000, 2000, msg, 0, len(msg)) == (OTHER, 0, 0)
    # length mismatch
    msg = ike_hdr(length=60)
    assert classify_udp(1000, 2000, msg, 0, len(msg)) == (OTHER, 0, 0)
    assert classify_udp(1000, 2000, b"", 0, 0) == (OTHER, 0, 0)
    assert not ike_header_valid(b"\x00" * 27, 0, 27)


def test_buffer_types():
    msg = whole()
    for wrap in (bytes, bytearray, memoryview):
        data = wrap(b"\x00" * 4 + msg)
        assert classify_udp(4500, 4500, data, 0, len(data)) == (IKE, 4, 0)
        assert classify_udp(4500, 4500, wrap(b"\x00\x00\x00"), 0, 3) == (MALFORMED, 0, 0)
        assert classify_udp(1, 2, data, 0, len(data)) == (IKE, 4, 0)
        esp = wrap(struct.pack(">II", 9, 10))
        assert classify_udp(4500, 1, esp, 0, 8) == (ESP, 9, 10)
