"""ESP/AH headers, and every UDP 500/4500, ESP and AH packet of the public corpus through the
dissectors (only records or DissectError may come out)."""

import struct
from collections import Counter

import pytest

from conftest import corpus_captures, corpus_dir, rel
from dissect.vpn.errors import DissectError
from dissect.vpn.esp import parse_ah, parse_esp
from dissect.vpn.ike import parse_message
from dissect.vpn.udpencap import ESP, IKE, KEEPALIVE, classify_udp


def test_parse_esp():
    data = b"\xaa\xbb" + struct.pack(">II", 0x12345678, 42) + b"payload"
    assert parse_esp(data, 2, len(data)) == (0x12345678, 42)
    with pytest.raises(DissectError) as ei:
        parse_esp(data, 2, 9)
    assert ei.value.offset == 2
    with pytest.raises(DissectError):
        parse_esp(struct.pack(">II", 0, 1), 0, 8)
    with pytest.raises(DissectError):
        parse_esp(b"\x01" * 7, 0, 100)   # end beyond the buffer


def test_parse_ah():
    # RFC 4302 §2.2: Payload Len 4 → (4+2)*4 = 24 bytes: 12 fixed + 12 ICV (HMAC-SHA1-96)
    ah = struct.pack(">BBHII", 50, 4, 0, 0x1000, 7) + b"I" * 12
    assert parse_ah(ah + b"esp", 0, len(ah) + 3) == (50, 4, 0x1000, 7, 12)
    zero_icv = struct.pack(">BBHII", 4, 1, 0, 1, 1)
    assert parse_ah(zero_icv, 0, 12) == (4, 1, 1, 1, 0)
    with pytest.raises(DissectError):
        parse_ah(ah, 0, 11)
    with pytest.raises(DissectError):
        parse_ah(struct.pack(">BBHII", 50, 0, 0, 1, 1), 0, 12)   # length 8 < 12
    with pytest.raises(DissectError):
        parse_ah(ah, 0, 20)                                       # ICV cut


# ---------------------------------------------------------------- corpus sweep

def _records(path):
    """(linktype, data) for every record; scapy's raw readers (pcap and pcapng)."""
    from scapy.utils import RawPcapReader
    with RawPcapReader(str(path)) as rdr:
        default = getattr(rdr, "linktype", None)
        for data, meta in rdr:
            yield getattr(meta, "linktype", default), data


def _l3(linktype, data):
    """Offset of the IP header for the link types in the corpus, else None."""
    if linktype == 1:                       # Ethernet (+ VLAN tags)
        off = 12
        while off + 2 <= len(data):
            et = struct.unpack_from(">H", data, off)[0]
            if et in (0x8100, 0x88A8):
                off += 4
                continue
            return off + 2 if et in (0x0800, 0x86DD) else None
        return None
    if linktype in (0, 108):                # NULL / LOOP
        return 4
    if linktype in (101, 228, 229, 12, 14):  # raw IP
        return 0
    if linktype == 113:                     # Linux SLL
        return 16
    if linktype == 276:                     # Linux SLL2
        return 20
    return None


def _ip(data, off, frags):
    """Yield (proto, payload_off, end, buf) for an IP packet, reassembling IPv4 fragments."""
    if off is None or off >= len(data):
        return
    v = data[off] >> 4
    if v == 4 and off + 20 <= len(data):
        ihl = (data[off] & 15) * 4
        tot, ident, fo = struct.unpack_from(">HHH", data, off + 2)
        proto = data[off + 9]
        end = min(len(data), off + tot)
        mf, fo = fo & 0x2000, (fo & 0x1FFF) * 8
        if mf or fo:
            key = (data[off + 12:off + 20], ident, proto)
            parts = frags.setdefault(key, {})
            parts[fo] = (data[off + ihl:end], bool(mf))
            buf, pos = b"", 0
            while pos in parts:
                chunk, more = parts[pos]
                buf += chunk
                pos += len(chunk)
                if not more:
                    del frags[key]
                    yield proto, 0, len(buf), buf
                    return
                if not chunk:
                    return
            return
        yield proto, off + ihl, end, data
    elif v == 6 and off + 40 <= len(data):
        plen = struct.unpack_from(">H", data, off + 4)[0]
        yield data[off + 6], off + 40, min(len(data), off + 40 + plen), data


def _sweep(path):
    counts = Counter()
    frags = {}
    for linktype, data in _records(path):
        for proto, l4, end, buf in _ip(data, _l3(linktype, data), frags):
            if proto == 50:
                counts["esp"] += 1
                try:
                    parse_esp(buf, l4, end)
                except DissectError:
                    counts["esp_error"] += 1
            elif proto == 51:
                counts["ah"] += 1
                try:
                    parse_ah(buf, l4, end)
                except DissectError:
                    counts["ah_error"] += 1
            elif proto == 17 and l4 + 8 <= end:
                sport, dport = struct.unpack_from(">HH", buf, l4)
                if not {sport, dport} & {500, 4500}:
                    continue
                kind, a, b = classify_udp(sport, dport, buf, l4 + 8, end)
                if kind == IKE:
                    counts["ike"] += 1
                    try:
                        m = parse_message(buf, a, end)
                    except DissectError:
                        counts["ike_error"] += 1
                        continue
                    repr(m)
                    counts["ike_payloads"] += len(m.payloads)
                    if m.errors:
                        counts["ike_with_errors"] += 1
                elif kind == ESP:
                    counts["udp_esp"] += 1
                    assert parse_esp(buf, l4 + 8, end) == (a, b)
                elif kind == KEEPALIVE:
                    counts["keepalive"] += 1
                else:
                    counts["udp_other"] += 1
    return counts


CAPTURES = corpus_captures()


@pytest.mark.parametrize("path", CAPTURES, ids=[rel(p) for p in CAPTURES])
def test_corpus_capture_parses(path):
    corpus_dir()
    _sweep(path)   # any exception other than DissectError fails


def test_corpus_totals():
    root = corpus_dir()
    total = Counter()
    for p in CAPTURES:
        total.update(_sweep(p))
    # tshark facts from MANIFEST.md / spot checks: the corpus has well over 100 IKE messages,
    # ESP over UDP 4500 and raw ESP/AH; the openswan pcaps (NULL link type) are included.
    assert total["ike"] >= 150, total
    assert total["ike_payloads"] >= 400, total
    assert total["esp"] >= 240 and total["udp_esp"] > 0 and total["ah"] > 0, total
    # malformed corpus entries exist and are reported, not crashed on
    assert total["ike_with_errors"] >= 5, total
    assert root


def test_corpus_known_messages():
    root = corpus_dir()
    path = root / "zeek-spicy-ipsec" / "traces" / "ipsec_client.pcap"
    msgs = []
    frags = {}
    for linktype, data in _records(path):
        for proto, l4, end, buf in _ip(data, _l3(linktype, data), frags):
            if proto != 17:
                continue
            sport, dport = struct.unpack_from(">HH", buf, l4)
            kind, a, _ = classify_udp(sport, dport, buf, l4 + 8, end)
            if kind == IKE:
                msgs.append(parse_message(buf, a, end))
    # IKE_SA_INIT request/response, then IKE_AUTH (IP-fragmented, on 4500) sent 3 times
    assert [(m.exch, m.response) for m in msgs] == [(34, False), (34, True)] + [(35, False)] * 3
    assert msgs[0].payload_types == [33, 34, 40, 41, 41, 43, 43, 43, 43]
    nat = [p.notify_type for p in msgs[0].payloads if p.type == 41]
    assert nat == [16388, 16389]
    auth = msgs[2]
    assert auth.errors == [] and not auth.truncated and auth.payload_types == [46]
    assert auth.payloads[0].next_payload == 35   # SK names IDi
