"""IKEv2 header and payload records, on messages built here (struct) and by scapy."""

import struct

import pytest

from dissect.vpn.ike import v2 as ikev2
from dissect.vpn.errors import DissectError
from dissect.vpn.ike import RawPayload, parse_header, parse_message

ISPI = bytes.fromhex("0011223344556677")
RSPI = bytes.fromhex("8899aabbccddeeff")


def chain(items, crit=()):
    """items: [(type, body)] → (first type, bytes) with generic headers chained."""
    out = b""
    for i, (t, body) in enumerate(items):
        nxt = items[i + 1][0] if i + 1 < len(items) else 0
        out += struct.pack(">BBH", nxt, 0x80 if i in crit else 0, 4 + len(body)) + body
    return (items[0][0] if items else 0), out


def msg(items, exch=34, flags=0x08, msgid=0, rspi=b"\0" * 8, crit=(), length=None, np=None,
        ver=0x20, tail=b""):
    first, body = chain(items, crit)
    if np is not None:
        first = np
    ln = 28 + len(body) if length is None else length
    return ISPI + rspi + bytes((first, ver, exch, flags)) + struct.pack(">II", msgid, ln) + body \
        + tail


def transform(ttype, tid, keylen=None, last=False, extra=b""):
    attrs = struct.pack(">HH", 0x8000 | 14, keylen) if keylen is not None else b""
    attrs += extra
    return struct.pack(">BBHBBH", 0 if last else 3, 0, 8 + len(attrs), ttype, 0, tid) + attrs


def proposal(num, proto, transforms, spi=b"", last=False):
    body = b"".join(transform(*t[:3], last=(i == len(transforms) - 1))
                    for i, t in enumerate(transforms))
    return struct.pack(">BBHBBBB", 0 if last else 2, 0, 8 + len(spi) + len(body), num, proto,
                       len(spi), len(transforms)) + spi + body


def notify(ntype, data=b"", proto=0, spi=b""):
    return struct.pack(">BBH", proto, len(spi), ntype) + spi + data


def sa_init():
    sa = (proposal(1, 1, [(1, 12, 256), (1, 20, 128), (2, 5), (3, 12), (4, 19), (4, 14)])
          + proposal(2, 1, [(1, 28, 256), (2, 7), (4, 31), (6, 37), (12, 36)], last=True))
    return msg([
        (33, sa),
        (34, struct.pack(">HH", 19, 0) + b"K" * 64),
        (40, b"N" * 32),
        (41, notify(16388, b"S" * 20)),
        (41, notify(16389, b"D" * 20)),
        (41, notify(16431, struct.pack(">4H", 1, 2, 3, 4))),
        (41, notify(16430)),
        (43, b"V" * 16),
    ])


def test_header_fields_and_flags():
    data = sa_init()
    h = parse_header(data)
    assert (h.ispi, h.rspi, h.next_payload, h.major, h.minor, h.exch, h.flags, h.msgid,
            h.length) == (ISPI, b"\0" * 8, 33, 2, 0, 34, 0x08, 0, len(data))
    assert h.is_v2 and h.initiator is True and h.response is False and not h.encrypted
    resp = parse_header(msg([], flags=0x20 | 0x10, np=0))
    assert resp.initiator is False and resp.response is True and resp.version_flag
    with pytest.raises(DissectError):
        parse_header(data[:27])
    with pytest.raises(DissectError):
        parse_header(data, len(data) - 10)


def test_sa_init_payloads():
    data = sa_init()
    m = parse_message(data)
    assert m.errors == [] and not m.truncated
    assert m.payload_types == [33, 34, 40, 41, 41, 41, 41, 43]
    assert m.raw == data
    sa = m.payloads[0]
    assert isinstance(sa, ikev2.SA) and sa.offset == 28 and sa.next_payload == 34
    p1, p2 = sa.proposals
    assert (p1.number, p1.protocol, p1.spi, p1.num_transforms) == (1, 1, b"", 6)
    assert [(t.transform_type, t.transform_id, t.key_length) for t in p1.transforms] == [
        (1, 12, 256), (1, 20, 128), (2, 5, None), (3, 12, None), (4, 19, None), (4, 14, None)]
    assert p1.ids(4) == [19, 14]
    # RFC 9370 ADDKE transform types (6..12)
    assert [(t.transform_type, t.transform_id) for t in p2.transforms][-2:] == [(6, 37), (12, 36)]
    ke = m.payloads[1]
    assert (ke.group, ke.data) == (19, b"K" * 64)
    assert m.payloads[2].data == b"N" * 32
    src, dst, sha, frag = m.payloads[3:7]
    assert (src.notify_type, src.nat_hash, dst.nat_hash) == (16388, b"S" * 20, b"D" * 20)
    assert sha.signature_hash_algorithms == [1, 2, 3, 4]
    assert frag.notify_type == 16430 and frag.data == b"" and frag.nat_hash is None
    assert not src.is_error
    assert m.payloads[7].data == b"V" * 16
    assert m.find(43) is m.payloads[7] and len(m.find_all(41)) == 4 and m.find(99) is None
    repr(m)


def test_offset_and_end():
    data = b"\xee" * 7 + sa_init() + b"\xdd" * 5
    m = parse_message(data, 7, len(data) - 5)
    assert m.errors == [] and m.raw == sa_init()
    m = parse_message(data, 7)
    assert m.errors and "after the IKE message" in m.errors[0][0]
    assert m.payload_types == [33, 34, 40, 41, 41, 41, 41, 43]


def test_notify_accessors():
    m = parse_message(msg([
        (41, notify(17, struct.pack(">H", 14))),
        (41, notify(16393, proto=3, spi=b"\x01\x02\x03\x04")),
        (41, notify(16390, b"cookie-bytes")),
        (41, notify(16407, bytes((1, 4)) + b"\x0a\x00\x00\x01" + b"nonce")),
        (41, notify(16408, bytes((3, 7)) + b"gw.test")),
        (41, notify(24)),
        (41, notify(16407, b"\x01\x09\x00")),   # GW length beyond data → None
        (41, notify(16431, b"\x00\x01\x00")),   # odd length → None
    ], exch=34, flags=0x20))
    n = m.payloads
    assert n[0].invalid_ke_group == 14 and n[0].is_error
    assert n[1].rekey_spi == b"\x01\x02\x03\x04" and n[1].protocol == 3 and n[0].rekey_spi is None
    assert n[2].cookie == b"cookie-bytes"
    assert n[3].redirect == (1, b"\x0a\x00\x00\x01", b"nonce")
    assert n[4].redirect == (3, b"gw.test", b"")
    assert n[5].notify_type == 24 and n[5].is_error and n[5].invalid_ke_group is None
    assert n[6].redirect is None and n[7].signature_hash_algorithms is None


def test_delete_ts_id_auth_cert_cp_eap():
    ts4 = struct.pack(">BBHHH", 7, 6, 16, 0, 65535) + bytes((10, 0, 0, 0)) + bytes((10, 0, 0, 255))
    ts6 = struct.pack(">BBHHH", 8, 0, 40, 500, 500) + b"\x20" + b"\0" * 15 + b"\x20" + b"\xff" * 15
    tsx = struct.pack(">BBH", 10, 0, 8) + b"lbl!"
    cp = struct.pack(">B3x", 1) + struct.pack(">HH", 1, 0) + struct.pack(">HH", 3, 4) + b"\x08\x08\x08\x08"
    m = parse_message(msg([
        (35, bytes((2, 0, 0, 0)) + b"vpn.example"),
        (36, bytes((1, 0, 0, 0)) + b"\xc0\x00\x02\x01"),
        (37, b"\x04" + b"CERTDER"),
        (38, b"\x04" + b"H" * 20),
        (39, bytes((2, 0, 0, 0)) + b"A" * 32),
        (42, struct.pack(">BBH", 3, 4, 2) + b"\x00\x00\x00\x01\x00\x00\x00\x02"),
        (42, struct.pack(">BBH", 1, 0, 0)),
        (44, struct.pack(">B3x", 3) + ts4 + ts6 + tsx),
        (45, struct.pack(">B3x", 1) + ts4),
        (47, cp),
        (48, struct.pack(">BBHB", 1, 7, 10, 1) + b"alice"),
        (48, struct.pack(">BBH", 3, 7, 4)),
    ], exch=35))
    assert m.errors == []
    idi, idr, cert, creq, auth, d1, d2, tsi, tsr, cpp, eap1, eap2 = m.payloads
    assert (idi.id_type, idi.value) == (2, "vpn.example")
    assert (idr.id_type, idr.value) == (1, b"\xc0\x00\x02\x01")
    assert (cert.encoding, cert.data) == (4, b"CERTDER")
    assert (creq.encoding, creq.authority) == (4, b"H" * 20)
    assert (auth.method, auth.data) == (2, b"A" * 32)
    assert (d1.protocol, d1.spi_size, d1.spis) == (3, 4, [b"\0\0\0\1", b"\0\0\0\2"])
    assert (d2.protocol, d2.spis) == (1, [])
    assert tsi.num_ts == 3
    s4, s6, sx = tsi.selectors
    assert (s4.ts_type, s4.protocol, s4.start_port, s4.end_port, s4.start_addr, s4.end_addr) == (
        7, 6, 0, 65535, b"\x0a\0\0\0", b"\x0a\0\0\xff")
    assert (s6.ts_type, s6.start_port, len(s6.start_addr), s6.end_addr[0]) == (8, 500, 16, 0x20)
    assert (sx.ts_type, sx.start_addr, sx.data) == (10, None, b"lbl!")
    assert tsr.selectors[0].end_addr == b"\x0a\0\0\xff"
    repr(s4), repr(sx)
    assert (cpp.cfg_type, cpp.attributes) == (1, [(1, b""), (3, b"\x08\x08\x08\x08")])
    assert (eap1.code, eap1.identifier, eap1.eap_length, eap1.eap_type, eap1.data) == (
        1, 7, 10, 1, b"alice")
    assert (eap2.code, eap2.eap_type, eap2.data) == (3, None, b"")


def test_sk_is_last_and_names_first_inner():
    enc = b"I" * 16 + b"C" * 48 + b"T" * 16
    data = msg([(46, enc)], exch=35, msgid=1, rspi=RSPI)
    # first inner payload IDi (35) goes into SK's next-payload field
    data = data[:28] + bytes((35,)) + data[29:]
    m = parse_message(data)
    assert m.errors == [] and m.encrypted and m.payload_types == [46]
    sk = m.payloads[0]
    assert isinstance(sk, ikev2.Encrypted)
    assert sk.next_payload == sk.first_inner == 35
    assert (sk.data_off, sk.data_end) == (32, len(data)) and m.raw[sk.data_off:sk.data_end] == enc
    assert parse_header(data).encrypted
    # a payload after SK is reported, not walked
    bad = msg([(46, enc), (41, notify(24))], exch=35)
    m = parse_message(bad)
    assert m.payload_types == [46] and "after the encrypted payload" in m.errors[0][0]


def test_skf_fragments():
    body1 = struct.pack(">HH", 1, 3) + b"E" * 40
    m = parse_message(msg([(53, body1)], exch=35))
    f = m.payloads[0]
    assert isinstance(f, ikev2.EncryptedFragment) and m.encrypted
    assert (f.fragment_number, f.total_fragments, f.data_off, f.data_end) == (1, 3, 36, 76)
    assert f.next_payload == 0 and m.errors == []


def test_parse_payloads_on_inner_chain():
    first, inner = chain([(35, bytes((1, 0, 0, 0)) + b"\x0a\0\0\1"), (39, bytes((1, 0, 0, 0)) + b"x"),
                          (41, notify(16384))])
    pl, err = ikev2.parse_payloads(b"\xff" * 3 + inner + b"\0" * 4, 3, 3 + len(inner), first)
    assert err == [] and [p.type for p in pl] == [35, 39, 41] and pl[0].offset == 3


def test_critical_bit_and_unknown_payload():
    m = parse_message(msg([(49, b"gspm"), (200, b"xyz")], crit=(1,)))
    gspm, unk = m.payloads
    assert isinstance(unk, RawPayload) and unk.data == b"xyz" and unk.critical
    assert not gspm.critical and gspm.data == b"gspm"


def test_chain_errors_keep_previous_payloads():
    good = (40, b"N" * 16)
    # payload length below 4
    data = msg([good]) + b""
    raw = bytearray(msg([good, (41, notify(24))]))
    raw[28 + 20 + 2:28 + 20 + 4] = b"\x00\x02"
    m = parse_message(bytes(raw))
    assert m.payload_types == [40] and "below 4" in m.errors[0][0]
    # length running past the message
    raw[28 + 20 + 2:28 + 20 + 4] = b"\x00\xff"
    m = parse_message(bytes(raw))
    assert m.payload_types == [40] and "past the end" in m.errors[0][0]
    # next payload says another follows, none does
    raw = bytearray(msg([good]))
    raw[28] = 41
    m = parse_message(bytes(raw))
    assert m.payload_types == [40] and "does not end with NONE" in m.errors[0][0]
    # bytes after the last payload inside Length
    m = parse_message(msg([good], length=28 + 20 + 3, tail=b"abc"))
    assert m.payload_types == [40] and "after the last payload" in m.errors[0][0]
    # header space left but not a whole generic header
    m = parse_message(msg([good], np=40, length=28 + 20 + 2, tail=b"ab")[:28] +
                      bytes((41,)) + msg([good], length=28 + 22, tail=b"ab")[29:])
    assert m.payload_types == [40] and "runs past" in m.errors[0][0]
    assert data


def test_body_error_is_recorded_and_walk_continues():
    m = parse_message(msg([(36, bytes((1, 0, 0, 0)) + b"\x01"), (40, b"N" * 8)]))
    assert m.payload_types == [36, 40]
    assert isinstance(m.payloads[0], RawPayload) and "ID type 1" in m.errors[0][0]
    assert m.payloads[1].data == b"N" * 8


def test_length_field_cases():
    full = sa_init()
    # captured bytes end before Length says: truncated, no error for the cut payload
    m = parse_message(full[:200])
    assert m.truncated and m.errors == [] and m.payload_types == [33] and len(m.raw) == 200
    assert m.type_past_cut == 34  # the SA payload names the KE payload the cut removed
    m = parse_message(full[:100])
    assert m.truncated and m.errors == [] and m.payload_types == []
    assert m.type_past_cut == 33  # the header names the SA payload (an answer, not an error)
    assert parse_message(full).type_past_cut == 0
    # Length below the header size
    m = parse_message(msg([(40, b"N" * 8)], length=0))
    assert "below the header size" in m.errors[0][0] and m.payload_types == [40]
    # header errors raise
    with pytest.raises(DissectError):
        parse_message(full[:27])
    with pytest.raises(DissectError) as ei:
        parse_message(msg([], ver=0x30, np=0))
    assert ei.value.offset == 17


@pytest.mark.parametrize("body", [
    b"\x00\x00\x00\x09\x01\x01\x00\x01",                    # proposal length 9 > payload
    proposal(1, 1, [(1, 12)])[:-1],                         # transform truncated
    proposal(1, 1, [(1, 12)]),                              # Last Substruc 2, nothing follows
    proposal(1, 1, [(1, 12), (2, 5)], last=True)[:8] + transform(1, 12, last=True)
    + transform(2, 5, last=True),                           # bytes after the last transform
    b"\x00\x00\x00\x14\x01\x01\x00\x01" + transform(1, 12, last=True, extra=b"\x00\x0e\x00\x09"),
    b"\x00\x00\x00\x14\x01\x01\x00\x01" + b"\x00\x00\x00\x0c\x01\x00\x00\x0c\x00\x0e\x00\x09",
])
def test_malformed_sa_bodies(body):
    m = parse_message(msg([(33, body)]))
    assert isinstance(m.payloads[0], RawPayload) and m.errors


def test_scapy_built_message_matches():
    from scapy.contrib.ikev2 import (IKEv2, IKEv2_KE, IKEv2_Nonce, IKEv2_Notify, IKEv2_Proposal,
                                     IKEv2_SA, IKEv2_Transform, IKEv2_VendorID)
    p = (IKEv2(init_SPI=ISPI, exch_type=34, flags="Initiator")
         / IKEv2_SA(prop=IKEv2_Proposal(proposal=1, proto=1, trans=(
             IKEv2_Transform(transform_type=1, transform_id=12)
             / IKEv2_Transform(transform_type=2, transform_id=5)
             / IKEv2_Transform(transform_type=3, transform_id=12)
             / IKEv2_Transform(transform_type=4, transform_id=19))))
         / IKEv2_KE(group=19, ke=b"k" * 64) / IKEv2_Nonce(nonce=b"n" * 32)
         / IKEv2_Notify(type=16388, notify=b"h" * 20) / IKEv2_VendorID(vendorID=b"v" * 16))
    data = bytes(p)
    m = parse_message(data)
    assert m.errors == [] and m.payload_types == [33, 34, 40, 41, 43]
    assert [(t.transform_type, t.transform_id) for t in m.payloads[0].proposals[0].transforms] == [
        (1, 12), (2, 5), (3, 12), (4, 19)]
    assert m.payloads[1].group == 19 and m.payloads[3].nat_hash == b"h" * 20


def test_truncated_sk_keeps_first_inner():
    enc = b"E" * 200
    data = msg([(46, enc)], exch=35, flags=0x20, msgid=1)
    data = data[:28] + bytes((41,)) + data[29:]     # SK announces a Notify first (auth failure)
    m = parse_message(data[:96])                    # snaplen cut
    assert m.truncated and m.errors == [] and m.payload_types == [46]
    sk = m.payloads[0]
    assert sk.first_inner == 41 and sk.length == 204 and sk.data_end == 96
    assert m.type_past_cut == 0  # SK's Next Payload names an inner payload
    # SKF cut before its fragment numbers: dropped silently
    f = msg([(53, struct.pack(">HH", 1, 2) + enc)], exch=35)
    m = parse_message(f[:30])
    assert m.truncated and m.payloads == [] and m.errors == []


def test_buffer_types():
    data = sa_init()
    ref = parse_message(data)
    for buf in (bytearray(data), memoryview(data)):
        m = parse_message(buf)
        assert isinstance(m.raw, bytes) and m.raw == data and m.errors == []
        assert m.payload_types == ref.payload_types
        assert m.payloads[3].nat_hash == ref.payloads[3].nat_hash
        assert isinstance(m.payloads[1].data, bytes)


def test_snaplen_cut_notify_keeps_its_type():
    """An IKE_SA_INIT answer with INVALID_KE_PAYLOAD (data: the accepted group) cut one byte
    short: the Notify is kept with its type and the data captured."""
    data = msg([(41, struct.pack(">BBHH", 0, 0, 17, 19))], flags=0x20)
    m = parse_message(data[:-1])
    assert m.truncated and m.errors == [] and m.payload_types == [41]
    assert (m.payloads[0].notify_type, m.payloads[0].data) == (17, b"\x00")
