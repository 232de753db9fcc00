"""pcapvpn.tcp_reassembly: the one TCP reassembly policy (gaps, retransmissions, overlaps,
out-of-order data, FIN/RST) and its memory bounds."""

from __future__ import annotations

import random

import pytest

from pcapvpn.limits import Limits
from pcapvpn.tcp_reassembly import ACK, FIN, RST, SYN, TcpReassembler

A = (b"\xc0\x00\x02\x01", 40000, b"\xc6\x33\x64\x01", 4500)
B = (A[2], A[3], A[0], A[1])
ISN = 0xFFFFFF00  # wraps around 2^32 inside the tests


class Stream:
    """Feeds segments to a reassembler and collects what the framing would read."""

    def __init__(self, limits=None):
        self.r = TcpReassembler(limits or Limits())
        self.got = {A: bytearray(), B: bytearray()}
        self.gaps = {A: 0, B: 0}
        self.n = 0

    def dir(self, key):
        d = self.r.get(key)
        return d if d is not None else self.r.open(key, None, None)

    def seg(self, key, seq, data=b"", flags=ACK, ack=0):
        self.n += 1
        d = self.dir(key)
        for x in self.r.segment(d, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, data, 0,
                                len(data), (0, self.n)):
            if x.gap:
                self.gaps[x.key] += 1
                x.gap = False
            self.got[x.key] += x.buf
            self.r.consume(x, len(x.buf))


def test_in_order_out_of_order_and_retransmissions():
    s = Stream()
    s.seg(A, ISN, flags=SYN)
    s.seg(A, ISN + 1, b"hello ")
    s.seg(A, ISN + 12, b"world")           # after a hole: held
    assert s.got[A] == b"hello "
    s.seg(A, ISN + 7, b"there")            # fills it
    assert s.got[A] == b"hello thereworld"
    s.seg(A, ISN + 1, b"hello ")           # a whole retransmission
    s.seg(A, ISN + 12, b"worldwide")       # a partial one: the first copy wins, the rest is new
    assert s.got[A] == b"hello thereworldwide"
    assert s.r.retransmissions == 2 and s.r.gaps == 0 and s.r.bytes == 0


def test_overlapping_held_segments_first_copy_wins():
    s = Stream()
    s.seg(A, ISN, flags=SYN)
    s.seg(A, ISN + 5, b"EFGH")
    s.seg(A, ISN + 7, b"ghij")             # overlaps the held one
    s.seg(A, ISN + 5, b"EF")               # a shorter second copy of a held segment: kept longer
    s.seg(A, ISN + 1, b"abcd")
    assert s.got[A] == b"abcdEFGHij"
    assert s.r.retransmissions == 2


def test_joined_mid_stream_starts_at_the_first_data():
    s = Stream()
    s.seg(A, 5000, b"xyz")
    d = s.r.get(A)
    assert s.got[A] == b"xyz" and not d.synced
    s.seg(A, ISN, flags=SYN)               # a new connection on the same ports starts over
    assert d.synced and d.next_seq == (ISN + 1) & 0xFFFFFFFF


def test_gap_when_the_peer_acknowledged_what_the_capture_missed():
    s = Stream()
    s.seg(A, ISN, flags=SYN)
    s.seg(B, 7000, flags=SYN | ACK, ack=ISN + 1)
    s.seg(A, ISN + 1, b"one ")
    s.seg(A, ISN + 15, b"three")           # "two " (ISN+5..ISN+14) never captured
    s.seg(B, 7001, b"ok", ack=ISN + 5)     # acknowledges only what was seen: nothing given up
    assert s.got[A] == b"one " and s.r.gaps == 0
    s.seg(B, 7003, b"", ack=ISN + 20)      # the peer got it all: the hole is lost to the capture
    assert s.got[A] == b"one three" and s.gaps[A] == 1 and s.r.gaps == 1
    s.seg(B, 7003, b"", ack=ISN + 25)      # acknowledged bytes not seen yet: skipped at once
    s.seg(A, ISN + 25, b"four")
    assert s.got[A] == b"one threefour" and s.r.gaps == 2


def test_a_fin_is_not_a_gap():
    s = Stream()
    s.seg(A, ISN, flags=SYN)
    s.seg(A, ISN + 1, b"bye", flags=ACK | FIN)
    s.seg(B, 7001, b"", ack=ISN + 5)       # acknowledges the FIN
    assert s.r.gaps == 0 and s.got[A] == b"bye"


def test_rst_gives_up_a_hole():
    s = Stream()
    s.seg(A, ISN, flags=SYN)
    s.seg(A, ISN + 1, b"ab")
    s.seg(A, ISN + 10, b"late")
    s.seg(A, ISN + 14, b"", flags=RST)
    assert s.got[A] == b"ablate" and s.r.gaps == 1


def test_out_of_order_bound_by_count_and_bytes():
    lim = Limits(tcp_max_ooo=4, tcp_max_ooo_bytes=100)
    s = Stream(lim)
    s.seg(A, ISN, flags=SYN)
    for i in range(4):                     # four held segments after a hole at ISN+1
        s.seg(A, ISN + 11 + 10 * i, b"x" * 10)
    assert s.got[A] == b"" and s.r.get(A).held_bytes == 40
    s.seg(A, ISN + 51, b"y" * 10)          # a fifth: the hole is given up
    assert s.got[A] == b"x" * 40 + b"y" * 10 and s.r.gaps_by_limit == 1
    s.seg(A, ISN + 200, b"z" * 60)
    s.seg(A, ISN + 300, b"w" * 60)         # 120 bytes > 100: the hole before z is given up,
    assert s.r.gaps_by_limit == 2          # w waits after the next one
    assert s.got[A].endswith(b"z" * 60) and s.r.get(A).held_bytes == 60


def test_buffer_bound_drops_a_partial_message():
    s = Stream(Limits(tcp_max_buffer=50))
    d = s.dir(A)
    s.r.segment(d, ISN, 0, SYN, b"", 0, 0, (0, 1))
    s.r.segment(d, ISN + 1, 0, ACK, b"a" * 60, 0, 60, (0, 2))
    s.r.consume(d, 0)                      # the framing could not use any of it
    assert d.gap and s.r.bytes_dropped == 60 and s.r.bytes == 0


def test_stream_count_bound_evicts_the_least_recently_active():
    s = Stream(Limits(tcp_max_streams=3))
    keys = [(b"\x0a\x00\x00\x01", p, b"\x0a\x00\x00\x02", 4500) for p in range(1000, 1005)]
    for i, k in enumerate(keys):
        d = s.dir(k)
        s.r.segment(d, 100, 0, ACK, b"h", 0, 1, (0, i))  # buffered: 1 byte
        s.r.segment(d, 150, 0, ACK, b"held", 0, 4, (0, i))  # held: 4 bytes
    assert len(s.r.dirs) == 3 and s.r.streams_evicted == 2
    assert s.r.bytes_dropped == 10 and s.r.bytes == 15
    assert s.r.get(keys[0]) is None and s.r.get(keys[4]) is not None


def test_finish_counts_holes_left_open():
    s = Stream()
    s.seg(A, ISN, flags=SYN)
    s.seg(A, ISN + 10, b"never")
    s.r.finish()
    assert s.r.gaps == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_order_with_retransmissions_gives_the_stream(seed):
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(5000))
    cuts = sorted(rng.sample(range(1, len(data)), 60))
    segs = [(a, data[a:b]) for a, b in zip([0] + cuts, cuts + [len(data)])]
    segs += rng.sample(segs, 20)           # retransmissions
    rng.shuffle(segs)
    s = Stream()
    s.seg(A, ISN, flags=SYN)
    for off, chunk in segs:
        s.seg(A, ISN + 1 + off, chunk)
    assert bytes(s.got[A]) == data and s.r.gaps == 0 and s.r.bytes == 0


def _flood(streams: int, per_stream: int, size: int, lim: Limits) -> TcpReassembler:
    """Every stream sends ``per_stream`` segments of ``size`` bytes after a hole that never
    fills, none of them a complete message (the hostile case of issue 20)."""
    r = TcpReassembler(lim)
    chunk = b"\xaa" * size
    for i in range(streams):
        key = (b"\x0a\x00" + i.to_bytes(2, "big"), 40000, b"\xc6\x33\x64\x01", 4500)
        d = r.open(key, None, None)
        r.segment(d, 1000, 0, SYN, b"", 0, 0, (0, 0))
        for k in range(per_stream):
            for x in r.segment(d, 1001 + size * (k + 1), 0, ACK, chunk, 0, size, (0, k)):
                r.consume(x, 0)  # a framing that finds no complete message
    return r


def test_held_bytes_stay_bounded_as_streams_and_segments_grow():
    """Issue 20: out-of-order data used to be bounded by count only (64 segments x 4,096
    directions, ~16 GB for 64 KB segments).  The bytes held now stop growing at the per-direction
    and overall bounds, whatever the number of streams and segments, and what was dropped is
    counted."""
    lim = Limits(tcp_max_streams=4096, tcp_max_ooo=64, tcp_max_ooo_bytes=64 * 1024,
                 tcp_max_bytes=1024 * 1024)
    peaks = {}
    for streams, per_stream in [(4, 8), (8, 16), (16, 32), (64, 64), (128, 64)]:
        r = _flood(streams, per_stream, 4096, lim)
        peaks[(streams, per_stream)] = r.peak_bytes
        assert r.peak_bytes <= lim.tcp_max_bytes
        for d in r.dirs.values():
            assert d.held_bytes <= lim.tcp_max_ooo_bytes and len(d.held) <= lim.tcp_max_ooo
        sent = streams * per_stream * 4096
        # nothing vanishes: every byte is held, was delivered after a given-up hole, or dropped
        assert r.bytes + r.bytes_dropped <= sent
    assert peaks[(4, 8)] == 4 * 8 * 4096                     # below every bound: all held
    assert peaks[(8, 16)] == 8 * 16 * 4096
    assert peaks[(16, 32)] == lim.tcp_max_bytes              # the overall bound
    assert peaks[(64, 64)] == peaks[(128, 64)] == lim.tcp_max_bytes
    r = _flood(128, 64, 4096, lim)
    assert r.streams_evicted > 0 and r.bytes_dropped > 0 and r.gaps_by_limit > 0


def test_empty_buffers_and_held_segments_are_shared_until_used():
    # issue 20 (live memory at --max-sas): a direction's buffer, frames and held segments are
    # made at the first bytes / the first out-of-order segment and given back when empty;
    # what the framing reads is unchanged (the random test above compares the bytes)
    from pcapvpn.tcp_reassembly import _NO_HELD

    s = Stream()
    s.seg(A, ISN, flags=SYN)
    d = s.r.get(A)
    assert d.buf == b"" and type(d.buf) is bytes and d.frames == () and d.held is _NO_HELD
    s.seg(A, ISN + 1, b"abc")  # read and consumed at once by Stream
    assert d.buf == b"" and type(d.buf) is bytes and d.frames == ()
    s.seg(A, ISN + 10, b"held")  # after a hole: a dict of its own
    assert type(d.held) is dict and list(d.held) == [(ISN + 10) & 0xFFFFFFFF]
    s.seg(A, ISN + 4, b"defghi")  # fills it: the held segment drained, the shared one back
    assert s.got[A] == b"abcdefghiheld" and d.held is _NO_HELD and d.held_bytes == 0
    # a partial message left by the framing: a bytearray and the frame that carried its end
    r = s.r
    r.segment(d, (ISN + 14) & 0xFFFFFFFF, 0, ACK, b"12345", 0, 5, (0, 99))
    assert type(d.buf) is bytearray and d.frames == [(0, 99)]
    r.consume(d, 2)
    assert bytes(d.buf) == b"345" and d.frames == [(0, 99)] and r.bytes == 3
    r.consume(d, 3)
    assert d.buf == b"" and d.frames == () and r.bytes == 0
    assert len(_NO_HELD) == 0
    with pytest.raises(TypeError):
        _NO_HELD[1] = (b"x", (0, 1))


def test_a_segment_the_snapshot_length_cut_keeps_its_place_in_the_stream():
    """A segment captured shorter than on the wire: its captured bytes, then zeros standing in for
    the cut ones at their place, so the next segment follows without a hole; ``cut_in`` and
    ``captured_end`` tell the framing which bytes were not captured (across the 2^32 wrap), and
    the ranges are forgotten once consumed."""
    r = TcpReassembler(Limits())
    d = r.open(A, None, None)
    r.segment(d, ISN, 0, SYN, b"", 0, 0, (0, 1))
    r.segment(d, ISN + 1, 0, ACK, b"abcdef", 0, 6, (0, 2), 250)   # 256 on the wire, ISN wraps
    assert not r.segment(d, ISN + 1 + 300, 0, ACK, b"later", 0, 5, (0, 3))  # after a hole: held
    ready = r.segment(d, ISN + 257, 0, ACK, b"x" * 44, 0, 44, (0, 4))
    assert ready == [d] and not d.gap and r.gaps == 0
    assert bytes(d.buf) == b"abcdef" + bytes(250) + b"x" * 44 + b"later"
    assert r.cut_in(d, 0, 6) == -1 and r.cut_in(d, 5, 7) == 256 and r.cut_in(d, 256, 300) == -1
    assert r.captured_end(d, 2, 100) == 6 and r.captured_end(d, 256, 300) == 300
    assert r.captured_end(d, 10, 20) == 10  # a message wholly in the cut: nothing captured
    r.consume(d, 100)
    assert d.cuts and r.cut_in(d, 0, 2) == 156
    r.consume(d, 160)
    assert d.cuts == () and r.cut_in(d, 0, len(d.buf)) == -1
    # a cut segment held after a hole keeps its range until it is appended
    r.segment(d, ISN + 1 + 400, 0, ACK, b"yz", 0, 2, (0, 5), 8)
    r.segment(d, ISN + 1 + 305, 0, ACK, b"q" * 95, 0, 95, (0, 6))
    start = len(d.buf) - 10
    assert bytes(d.buf[start:]) == b"yz" + bytes(8) and r.cut_in(d, start, start + 3) == start + 10
