"""Fuzzing: mutated IKEv1/IKEv2 messages and random bytes through classify_udp, parse_message,
the payload walkers, the TCP framing and the ESP/AH parsers.  Only records or DissectError may
come out; every record property must be readable."""

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissect.vpn.errors import DissectError
from dissect.vpn.esp import parse_ah, parse_esp
from dissect.vpn.ike import parse_header, parse_message
from dissect.vpn.ike import v1 as ikev1
from dissect.vpn.ike import v2 as ikev2
from dissect.vpn import tcpencap
from dissect.vpn.tcpencap import split_tcp_stream
from dissect.vpn.udpencap import IKE, classify_udp
from test_ikev1 import mm1
from test_ikev1 import msg as v1msg
from test_ikev2 import ISPI, chain, notify, sa_init
from test_ikev2 import msg as v2msg

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _v1_seeds():
    spi16 = ISPI * 2
    tv = lambda t, v: struct.pack(">HH", 0x8000 | t, v)  # noqa: E731
    qm_sa = (struct.pack(">II", 1, 1)
             + struct.pack(">BBHBBBB", 0, 0, 8 + 4 + 16, 1, 3, 4, 1) + b"\xca\xfe\0\1"
             + struct.pack(">BBHBBH", 0, 0, 16, 1, 12, 0) + tv(4, 3) + tv(6, 128))
    return [
        mm1(),
        v1msg([(8, b"h" * 20), (1, qm_sa), (10, b"n" * 16),
               (5, struct.pack(">BBH", 4, 17, 0) + bytes(8)),
               (5, struct.pack(">BBH", 8, 0, 0) + bytes(32))], exch=32, msgid=9),
        v1msg([(8, b"h" * 20), (11, struct.pack(">IBBH", 1, 1, 16, 36136) + spi16 + b"\0\0\0\5"),
               (12, struct.pack(">IBBH", 1, 3, 4, 1) + b"\1\2\3\4")], exch=5),
        v1msg([(14, struct.pack(">BBH", 1, 0, 1) + tv(16520, 0) + struct.pack(">HH", 16521, 2)
                + b"ab"), (132, struct.pack(">HBB", 1, 1, 1) + b"xyz"),
               (21, struct.pack(">B3x", 1) + bytes(4)), (20, b"d" * 20)], exch=6),
    ]


def _v2_seeds():
    ts4 = struct.pack(">BBHHH", 7, 6, 16, 0, 65535) + bytes(8)
    ts6 = struct.pack(">BBHHH", 8, 0, 40, 0, 65535) + bytes(32)
    auth = v2msg([(46, b"\0" * 64)], exch=35, msgid=1)
    auth = auth[:28] + b"\x23" + auth[29:]
    return [
        sa_init(),
        auth,
        v2msg([(53, struct.pack(">HH", 2, 3) + b"e" * 30)], exch=35),
        v2msg([(35, bytes((2, 0, 0, 0)) + b"id.example"), (39, bytes((1, 0, 0, 0)) + b"a" * 20),
               (44, struct.pack(">B3x", 2) + ts4 + ts6), (45, struct.pack(">B3x", 1) + ts4),
               (47, struct.pack(">B3x", 1) + struct.pack(">HH", 1, 0)),
               (48, struct.pack(">BBHB", 1, 1, 6, 1) + b"x"),
               (42, struct.pack(">BBH", 3, 4, 1) + b"\1\2\3\4"),
               (41, notify(16407, bytes((1, 4)) + bytes(4) + b"nn")),
               (41, notify(17, b"\0\x0e")), (41, notify(16393, proto=3, spi=b"\1\2\3\4")),
               (41, notify(16431, b"\0\1\0\2"))], exch=35, flags=0x20),
    ]


SEEDS = _v1_seeds() + _v2_seeds()


_NAMES = {}


def _names(cls):
    names = _NAMES.get(cls)
    if names is None:
        names = []
        for c in cls.__mro__:
            for name, attr in vars(c).items():
                if isinstance(attr, property) or name in getattr(c, "__slots__", ()):
                    names.append(name)
        _NAMES[cls] = names
    return names


def touch(obj, deep=False):
    """Read every slot and property of a record (and of records in its lists)."""
    if deep:
        repr(obj)
    for name in _names(type(obj)):
        val = getattr(obj, name)
        if isinstance(val, list):
            for v in val:
                if hasattr(v, "__slots__"):
                    touch(v, deep)


def check(data, off=0, end=None, deep=False):
    try:
        m = parse_message(data, off, end)
    except DissectError as e:
        assert isinstance(e.reason, str) and isinstance(e.offset, int)
        return None
    touch(m, deep)
    for reason, offset in m.errors:
        assert isinstance(reason, str) and isinstance(offset, int)
    return m


def test_seeds_are_clean():
    for s in SEEDS:
        m = check(s, deep=True)
        assert m is not None and m.errors == [], m.errors


def test_every_byte_and_every_truncation():
    """Exhaustive single-byte mutations and all truncations of every seed."""
    for s in SEEDS:
        for i in range(len(s)):
            for v in (0x00, 0xFF, s[i] ^ 0x01, s[i] ^ 0x80):
                b = bytearray(s)
                b[i] = v
                check(bytes(b))
            check(s[:i])
            check(s, i)


@SETTINGS
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)),
                                        min_size=1, max_size=8),
       st.integers(0, 3000))
def test_mutated_messages(seed, changes, cut):
    b = bytearray(seed)
    for pos, val in changes:
        b[pos % len(b)] = val
    check(bytes(b), deep=True)
    check(bytes(b[:cut % (len(b) + 1)]), deep=True)


@SETTINGS
@given(st.sampled_from(SEEDS), st.integers(0, 400), st.binary(max_size=40))
def test_inserted_bytes(seed, pos, junk):
    pos %= len(seed) + 1
    check(seed[:pos] + junk + seed[pos:])


@SETTINGS
@given(st.sampled_from([500, 4500, 1701, 33000]), st.sampled_from([500, 4500, 1234]),
       st.binary(max_size=300), st.integers(0, 4))
def test_random_udp_payloads(sport, dport, payload, pad):
    data = b"\x00" * pad + payload
    kind, a, b = classify_udp(sport, dport, data, pad, len(data))
    assert isinstance(kind, int) and isinstance(a, int) and isinstance(b, int)
    if kind == IKE:
        check(data, a, len(data))


@SETTINGS
@given(st.sampled_from([500, 4500, 7]), st.binary(max_size=64), st.integers(-4, 80),
       st.integers(-4, 80))
def test_classifier_any_bounds(port, data, off, end):
    kind, a, b = classify_udp(port, 1, data, off, end)
    assert isinstance(kind, int)


@SETTINGS
@given(st.sampled_from(SEEDS), st.sampled_from([500, 4500, 9999]), st.binary(max_size=4))
def test_seeds_through_classifier(seed, port, prefix):
    data = prefix + b"\0\0\0\0" + seed
    kind, a, _ = classify_udp(port, port, data, len(prefix), len(data))
    if kind == IKE:
        check(data, a, len(data))


@SETTINGS
@given(st.binary(min_size=28, max_size=200), st.sampled_from([0x10, 0x20]))
def test_random_bodies_after_valid_header(body, ver):
    np = body[0]
    data = ISPI + bytes(8) + bytes((np, ver, 34, 0)) + struct.pack(">II", 0, 28 + len(body)) \
        + body
    check(data)
    parse_header(data)


@SETTINGS
@given(st.binary(max_size=200), st.integers(0, 255), st.integers(-2, 10), st.integers(-2, 300))
def test_payload_walkers_random(data, first, off, end):
    for mod in (ikev1, ikev2):
        try:
            payloads, errors = mod.parse_payloads(data, off, end, first)
        except DissectError:
            continue
        for p in payloads:
            touch(p)
        assert all(isinstance(r, str) for r, _ in errors)


@SETTINGS
@given(st.sampled_from(sorted(ikev2.PARSERS) + sorted(ikev1.PARSERS)), st.binary(max_size=120))
def test_each_body_parser(ptype, body):
    for mod in (ikev1, ikev2):
        first, raw = chain([(ptype, body)])
        payloads, _ = mod.parse_payloads(raw, 0, len(raw), first)
        for p in payloads:
            touch(p)


@SETTINGS
@given(st.binary(max_size=300), st.integers(0, 10))
def test_tcp_framing_random(buf, start):
    try:
        msgs, consumed = split_tcp_stream(buf, start)
    except DissectError:
        return
    assert 0 <= consumed <= max(0, len(buf) - start)
    for kind, off, end, spi, seq in msgs:
        assert start <= off <= end <= len(buf)


@SETTINGS
@given(st.binary(max_size=300), st.integers(0, 10), st.booleans(),
       st.sampled_from([tcpencap.FRAMED, tcpencap.MARKER, tcpencap.RAW]))
def test_tcp_probe_and_split_random(buf, start, strict, framing):
    assert tcpencap.probe(buf, start, strict) in (tcpencap.NONE, tcpencap.FRAMED, tcpencap.MARKER,
                                                  tcpencap.RAW, tcpencap.NEED)
    tcpencap.cisco_trailer(buf, start, len(buf))
    try:
        msgs, consumed = tcpencap.split(buf, start, framing)
    except DissectError:
        return
    assert 0 <= consumed <= max(0, len(buf) - start)
    for kind, off, end, spi, seq in msgs:
        assert start <= off <= end <= len(buf)


@SETTINGS
@given(st.binary(max_size=40), st.integers(0, 8), st.integers(0, 60))
def test_esp_ah_random(data, off, end):
    for fn in (parse_esp, parse_ah):
        try:
            r = fn(data, off, end)
        except DissectError:
            continue
        assert isinstance(r, tuple)
