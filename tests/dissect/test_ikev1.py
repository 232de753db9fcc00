"""IKEv1 / ISAKMP payload records on messages built here (struct) and by scapy."""

import struct

import pytest

from dissect.vpn.ike import v1 as ikev1
from dissect.vpn.errors import DissectError
from dissect.vpn.ike import RawPayload, parse_message

ICKY = bytes.fromhex("fafaeb49382a763c")
RCKY = bytes.fromhex("0102030405060708")


def chain(items):
    out = b""
    for i, (t, body) in enumerate(items):
        nxt = items[i + 1][0] if i + 1 < len(items) else 0
        out += struct.pack(">BBH", nxt, 0, 4 + len(body)) + body
    return (items[0][0] if items else 0), out


def msg(items, exch=2, flags=0, msgid=0, rspi=b"\0" * 8, length=None):
    first, body = chain(items)
    ln = 28 + len(body) if length is None else length
    return ICKY + rspi + bytes((first, 0x10, exch, flags)) + struct.pack(">II", msgid, ln) + body


def tv(t, v):
    return struct.pack(">HH", 0x8000 | t, v)


def tlv(t, value):
    return struct.pack(">HH", t, len(value)) + value


def transform(num, tid, attrs, last=False):
    return struct.pack(">BBHBBH", 0 if last else 3, 0, 8 + len(attrs), num, tid, 0) + attrs


def proposal(num, proto, transforms, spi=b"", last=True):
    body = b"".join(transforms)
    return struct.pack(">BBHBBBB", 0 if last else 2, 0, 8 + len(spi) + len(body), num, proto,
                       len(spi), len(transforms)) + spi + body


def sa(proposals, doi=1, situation=1):
    return struct.pack(">II", doi, situation) + b"".join(proposals)


P1_ATTRS = (tv(1, 7) + tv(14, 256) + tv(2, 2) + tv(3, 1) + tv(4, 14) + tv(11, 1)
            + tlv(12, struct.pack(">I", 28800)))


def mm1():
    return msg([
        (1, sa([proposal(1, 1, [transform(1, 1, P1_ATTRS),
                                transform(2, 1, tv(1, 5) + tv(2, 1) + tv(3, 65001) + tv(4, 2)
                                          + tv(11, 1) + tv(12, 3600), last=True)])])),
        (13, bytes.fromhex("4a131c81070358455c5728f20e95452f")),
        (13, bytes.fromhex("afcad71368a1f1c96b8696fc77570100")),
    ])


def test_main_mode_sa():
    m = parse_message(mm1())
    assert m.errors == [] and (m.major, m.minor, m.exch) == (1, 0, 2)
    assert m.initiator is None and m.response is None and not m.encrypted and not m.is_v2
    assert m.payload_types == [1, 13, 13]
    s = m.payloads[0]
    assert isinstance(s, ikev1.SA) and (s.doi, s.situation) == (1, 1)
    (p,) = s.proposals
    assert (p.number, p.protocol, p.spi, p.num_transforms) == (1, 1, b"", 2)
    t1, t2 = p.transforms
    assert (t1.number, t1.transform_id, t1.phase) == (1, 1, 1)
    assert t1.attributes == [(1, 7), (14, 256), (2, 2), (3, 1), (4, 14), (11, 1), (12, 28800)]
    assert t1.key_length == 256 and t2.key_length is None and t1.encapsulation_mode is None
    assert t2.attr(3) == 65001 and t2.attr(12) == 3600 and t2.attr(99, "d") == "d"
    assert m.payloads[1].data.hex() == "4a131c81070358455c5728f20e95452f"
    repr(m), repr(t1), repr(p)


def test_quick_mode_phase2():
    p2 = (tv(1, 1) + tlv(2, struct.pack(">I", 3600)) + tv(4, 3) + tv(5, 2) + tv(6, 128)
          + tv(11, 1) + tv(3, 14))
    ids = struct.pack(">BBH", 4, 17, 0) + bytes((10, 1, 0, 0)) + bytes((255, 255, 0, 0))
    idr = struct.pack(">BBH", 8, 0, 0) + b"\x20" + b"\0" * 15 + b"\x20" + b"\xff" * 15
    data = msg([
        (8, b"H" * 20),
        (1, sa([proposal(1, 3, [transform(1, 12, p2, last=True)], spi=b"\xca\xfe\x00\x01",
                         last=False),
                proposal(1, 2, [transform(1, 2, tv(4, 61443), last=True)],
                         spi=b"\xca\xfe\x00\x02")])),
        (10, b"n" * 16),
        (4, b"k" * 128),
        (5, ids),
        (5, idr),
        (21, struct.pack(">B3x", 1) + bytes((192, 168, 1, 7))),
        (131, struct.pack(">B3x", 5) + b"\x20" * 16),
    ], exch=32, msgid=0x1234)
    m = parse_message(data)
    assert m.errors == [] and m.msgid == 0x1234
    s = m.payloads[1]
    esp, ah = s.proposals
    assert (esp.protocol, esp.spi, esp.next_payload) == (3, b"\xca\xfe\x00\x01", 2)
    t = esp.transforms[0]
    assert (t.phase, t.transform_id, t.key_length, t.encapsulation_mode, t.esn) == (2, 12, 128, 3, 1)
    assert t.attr(2) == 3600 and t.attr(3) == 14
    assert ah.transforms[0].encapsulation_mode == 61443 and ah.transforms[0].phase == 2
    assert m.payloads[2].data == b"n" * 16 and m.payloads[3].data == b"k" * 128
    i1, i2 = m.payloads[4:6]
    assert (i1.id_type, i1.protocol, i1.port, i1.value) == (
        4, 17, 0, (bytes((10, 1, 0, 0)), bytes((255, 255, 0, 0))))
    assert i2.id_type == 8 and i2.value[0][0] == 0x20 and len(i2.value[1]) == 16
    oa, oa6 = m.payloads[6:8]
    assert (oa.type, oa.id_type, oa.address) == (21, 1, bytes((192, 168, 1, 7)))
    assert (oa6.type, oa6.id_type, oa6.address) == (131, 5, b"\x20" * 16)


def test_aggressive_mode_ids_and_natd():
    data = msg([
        (5, struct.pack(">BBH", 2, 17, 500) + b"gw.example.net"),
        (5, struct.pack(">BBH", 3, 0, 0) + b"user@example.net"),
        (5, struct.pack(">BBH", 1, 17, 500) + bytes((198, 51, 100, 1))),
        (5, struct.pack(">BBH", 9, 0, 0) + b"\x30\x00"),
        (5, struct.pack(">BBH", 11, 0, 0) + b"\xff\xfe"),
        (20, b"d" * 20),
        (130, b"s" * 16),
        (6, b"\x04" + b"CERT"),
        (7, b"\x04"),
        (9, b"sig"),
    ], exch=4)
    m = parse_message(data)
    assert m.errors == []
    fq, uf, v4, dn, kid, natd, natd_draft, cert, cr, sig = m.payloads
    assert (fq.value, fq.protocol, fq.port) == ("gw.example.net", 17, 500)
    assert uf.value == "user@example.net" and v4.value == bytes((198, 51, 100, 1))
    assert dn.value == b"\x30\x00" and kid.value == b"\xff\xfe"
    assert natd.data == b"d" * 20 and natd_draft.type == 130 and natd_draft.data == b"s" * 16
    assert (cert.encoding, cert.data) == (4, b"CERT") and (cr.cert_type, cr.authority) == (4, b"")
    assert sig.data == b"sig"


def test_notification_dpd_delete():
    spi16 = ICKY + RCKY
    data = msg([
        (8, b"h" * 20),
        (11, struct.pack(">IBBH", 1, 1, 16, 36136) + spi16 + struct.pack(">I", 0x5D1A)),
        (11, struct.pack(">IBBH", 1, 1, 16, 36137) + spi16 + struct.pack(">I", 0x5D1A)),
        (11, struct.pack(">IBBH", 1, 3, 4, 24578) + b"\0\0\0\1"),
        (11, struct.pack(">IBBH", 1, 1, 0, 14)),
        (12, struct.pack(">IBBH", 1, 3, 4, 2) + b"\xaa\xbb\xcc\xdd\x11\x22\x33\x44"),
        (12, struct.pack(">IBBH", 1, 1, 16, 1) + spi16),
    ], exch=5)
    m = parse_message(data)
    assert m.errors == []
    _, rut, ack, ic, npc, d1, d2 = m.payloads
    assert (rut.doi, rut.protocol, rut.spi, rut.notify_type, rut.dpd_seq) == (1, 1, spi16, 36136,
                                                                               0x5D1A)
    assert ack.dpd_seq == 0x5D1A and ic.dpd_seq is None and ic.spi == b"\0\0\0\1"
    assert (npc.notify_type, npc.spi, npc.data) == (14, b"", b"")
    assert (d1.protocol, d1.spi_size, d1.spis) == (3, 4, [b"\xaa\xbb\xcc\xdd", b"\x11\x22\x33\x44"])
    assert d2.spis == [spi16]


def test_mode_config_and_fragment():
    cfg = struct.pack(">BBH", 1, 0, 0x1234) + tv(16520, 0) + tlv(16521, b"") + tlv(16522, b"")
    data = msg([(8, b"h" * 20), (14, cfg)], exch=6, msgid=7)
    m = parse_message(data)
    c = m.payloads[1]
    assert (c.cfg_type, c.identifier, c.attributes) == (1, 0x1234, [(16520, 0), (16521, b""),
                                                                   (16522, b"")])
    frag = msg([(132, struct.pack(">HBB", 1, 2, 1) + b"fragment-bytes")], exch=2)
    f = parse_message(frag).payloads[0]
    assert (f.frag_id, f.number, f.flags, f.last, f.data) == (1, 2, 1, True, b"fragment-bytes")


def test_encrypted_message_body_is_opaque():
    body = b"\x11" * 48
    data = ICKY + RCKY + bytes((5, 0x10, 2, 1)) + struct.pack(">II", 0, 28 + 48) + body
    m = parse_message(data)
    assert m.encrypted and m.payloads == [] and m.encrypted_body == body and m.errors == []
    assert m.next_payload == 5
    # decrypted bodies are walked with parse_payloads
    first, inner = chain([(5, struct.pack(">BBH", 1, 17, 500) + bytes(4)), (8, b"h" * 20)])
    pl, err = ikev1.parse_payloads(inner + b"\0" * 3, 0, len(inner), first)
    assert [p.type for p in pl] == [5, 8] and err == []


def test_labeled_situation():
    # RFC 2407 §4.6.1: situation SIT_SECRECY → LDI + secrecy level (3 bytes, padded) + category
    # (10 bits → 2 bytes, padded) + integrity fields (empty)
    labeled = (struct.pack(">I", 7) + struct.pack(">HH", 3, 0) + b"abc\0"
               + struct.pack(">HH", 10, 0) + b"\xff\xc0\0\0" + struct.pack(">HH", 0, 0)
               + struct.pack(">HH", 0, 0))
    body = struct.pack(">II", 1, 3) + labeled + proposal(1, 1, [transform(1, 1, tv(1, 5), True)])
    m = parse_message(msg([(1, body)]))
    assert m.errors == [] and m.payloads[0].situation == 3
    assert m.payloads[0].proposals[0].transforms[0].attributes == [(1, 5)]


@pytest.mark.parametrize("ptype,body,needle", [
    (5, struct.pack(">BBH", 1, 0, 0) + b"\x01\x02", "ID type 1"),
    (5, struct.pack(">BBH", 6, 0, 0) + b"\0" * 24, "ID type 6"),
    (5, b"\x01", "ID header"),
    (11, struct.pack(">IBBH", 1, 1, 16, 1) + b"\0" * 4, "notification SPI"),
    (12, struct.pack(">IBBH", 1, 3, 4, 3) + b"\0" * 8, "run past"),
    (12, struct.pack(">IBBH", 1, 3, 4, 1) + b"\0" * 5, "after the SPIs"),
    (21, struct.pack(">B3x", 1) + b"\0" * 16, "NAT-OA"),
    (1, struct.pack(">II", 1, 1) + proposal(1, 1, [transform(1, 1, b"\x00\x0c\x00\x08")]),
     "attribute"),
    (1, struct.pack(">II", 1, 1) + proposal(1, 1, [transform(1, 1, tv(1, 1))]), "announces"),
    (1, struct.pack(">I", 1), "SA DOI"),
    (14, b"\x01", "attribute payload"),
    (132, b"\0\1", "fragment header"),
    (6, b"", "certificate"),
])
def test_malformed_bodies_are_reported_and_walk_continues(ptype, body, needle):
    m = parse_message(msg([(ptype, body), (10, b"nonce")]))
    assert isinstance(m.payloads[0], RawPayload) and m.payloads[0].data == body
    assert needle in m.errors[0][0], m.errors
    assert m.payloads[1].data == b"nonce"


def test_no_none_terminator_and_trailing_bytes():
    # the shape of tcpdump's isakmp-no-none-np: Length shorter than the datagram, the last
    # payload inside Length still announcing another
    n = struct.pack(">IBBH", 1, 1, 0, 5)
    good = msg([(11, n), (11, n)])
    raw = bytearray(good)
    raw[28 + 12] = 11   # second N announces a third
    data = bytes(raw) + b"\x0b" * 40
    m = parse_message(data)
    assert m.payload_types == [11, 11]
    reasons = [r for r, _ in m.errors]
    assert any("after the IKE message" in r for r in reasons)
    assert any("does not end with NONE" in r for r in reasons)


def test_header_rejections():
    with pytest.raises(DissectError):
        parse_message(b"\0" * 20)
    bad = bytearray(mm1())
    bad[17] = 0xB0
    with pytest.raises(DissectError):
        parse_message(bytes(bad))


def test_scapy_built_isakmp_matches():
    from scapy.layers.isakmp import (ISAKMP, ISAKMP_payload_Nonce, ISAKMP_payload_Proposal,
                                     ISAKMP_payload_SA, ISAKMP_payload_Transform,
                                     ISAKMP_payload_VendorID)
    p = (ISAKMP(init_cookie=ICKY, exch_type=2)
         / ISAKMP_payload_SA(prop=ISAKMP_payload_Proposal(trans=ISAKMP_payload_Transform(
             transform_count=1, transforms=[("Encryption", "AES-CBC"), ("KeyLength", 256), ("Hash", "SHA"),
                                ("GroupDesc", "2048MODPgr"), ("Authentication", "PSK"),
                                ("LifeType", "Seconds"), ("LifeDuration", 86400)])))
         / ISAKMP_payload_VendorID(VendorID=b"v" * 16) / ISAKMP_payload_Nonce(nonce=b"n" * 20))
    m = parse_message(bytes(p))
    assert m.errors == [] and m.payload_types == [1, 13, 10]
    t = m.payloads[0].proposals[0].transforms[0]
    assert t.phase == 1 and t.key_length == 256 and t.attr(1) == 7 and t.attr(4) == 14
    assert t.attr(12) == 86400


def test_zero_padding_to_four_octets_is_not_an_error():
    """libreswan pads a cleartext IKEv1 message with zeros to a multiple of 4 octets after the
    last payload, its Length counting them (lab: libreswan_ikev1_aggressive_wrong_psk, AM2).
    Up to 3 zero octets are padding; anything else after the last payload stays an error."""
    vid = struct.pack(">BBH", 0, 0, 4 + 5) + b"VID01"          # a 9-octet Vendor ID payload

    def message(tail: bytes) -> bytes:
        body = vid + tail
        return struct.pack(">8s8sBBBBII", b"\x11" * 8, bytes(8), 13, 0x10, 4, 0, 0,
                           28 + len(body)) + body

    m = parse_message(message(b"\x00\x00\x00"))
    assert m.payload_types == [13] and not m.errors
    for tail in (b"\x00\x00\x01", b"\x00" * 4):
        m = parse_message(message(tail))
        assert m.payload_types == [13] and "after the last payload" in m.errors[0][0], tail


def test_snaplen_cut_notification_keeps_its_type():
    """pluto's NO-PROPOSAL-CHOSEN Informational is 56 bytes (a Notification with the two cookies
    as its 16-byte SPI); a snapshot length of 96 bytes leaves 54 of them.  The payload is cut 2
    bytes into its SPI: its type is still read (the SPI cut to what was captured, no bytes made
    up); cut inside the fixed part, nothing is recorded; never an error."""
    body = struct.pack(">IBBH", 1, 1, 16, 14) + ICKY + b"\x11" * 8
    data = msg([(11, body)], exch=5)
    assert len(data) == 56
    m = parse_message(data[:54])
    assert m.truncated and m.errors == [] and m.payload_types == [11]
    n = m.payloads[0]
    assert (n.notify_type, n.spi, n.data, n.length) == (14, ICKY + b"\x11" * 6, b"", 28)
    m = parse_message(data[:36])                     # cut before the notify type
    assert m.truncated and m.errors == [] and m.payloads == []
    # with data after the SPI, cut inside the data
    m = parse_message(msg([(11, body + b"DATA")], exch=5)[:58])
    assert m.payloads[0].spi == ICKY + b"\x11" * 8 and m.payloads[0].data == b"DA"
