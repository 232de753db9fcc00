"""The readers' measure of a capture that is not in time order: beside ``out_of_order`` (frames
earlier than a frame before them) the largest step back in time, the frame that makes it and the
time it steps back from (``walk_stats``: ``step_back``, ``step_frame``, ``step_from_ts``;
``first_frame``: the earliest frame).  Every record loop gives the same: the copy-free pcap walk,
the generic walk over ``records()``, the batched walk (array operations per chunk, and its
one-record-at-a-time hand-over for pcapng blocks other than EPBs), and ``Source.frames``."""

from __future__ import annotations

import random
import struct

import pytest

import dissect.vpn.capture as capture
from dissect.vpn.capture.reader import _Reader
from pcapvpn.sources import open_source
from test_batch_walk import SHAPES, pcap_bytes, v4esp, v4nat, write

T0 = 1_600_000_000_000_000  # microseconds


def _frame(rng, i):
    pick = rng.randrange(4)
    if pick == 0:
        return v4esp(i + 1, body=rng.randrange(8, 300))
    if pick == 1:
        return v4nat(i + 1)
    if pick == 2:
        return SHAPES["ike_500"][0](i + 1)
    return SHAPES["arp"][0](i + 1)


def _ticks(rng, n, steps):
    """``n`` microsecond times rising, with backward steps at the indexes ``steps`` (index ->
    microseconds back)."""
    t = T0
    out = []
    for i in range(n):
        t += rng.randrange(0, 3000)
        if i in steps:
            t -= steps[i]
        out.append(t)
    return out


def expected(ts, numbers):
    """``(late, step, step_frame, step_from, earliest frame)`` by definition."""
    late = 0
    step, frame, frm = 0.0, None, None
    top = float("-inf")
    for t, n in zip(ts, numbers):
        if t >= top:
            top = t
            continue
        late += 1
        if top - t > step:
            step, frame, frm = top - t, n, top
    low = min(ts)
    earliest = next(n for t, n in zip(ts, numbers) if t == low)
    return late, step, frame, frm, earliest


def _stats(st):
    return (st["out_of_order"], st["step_back"], st["step_frame"], st["step_from_ts"],
            st["first_frame"])


def _nothing(*_a):
    return None


def loops(path, monkeypatch, chunk):
    """The statistic from every record loop of ``path``: name -> (late, step, frame, from,
    earliest)."""
    out = {}
    src = open_source(str(path))
    src.walk(_nothing, _nothing)  # PcapReader.walk (copy-free) / PcapngReader.walk
    out["walk"] = _stats(src.reader.walk_stats)
    assert (src.out_of_order, src.step_back, src.step_frame, src.step_from_ts) == \
        out["walk"][:4]
    src = open_source(str(path))
    _Reader.walk(src.reader, 0, _nothing, _nothing)  # the generic walk over records()
    out["generic"] = _stats(src.reader.walk_stats)
    with monkeypatch.context() as m:
        m.setattr(capture.batcher, "BATCH_CHUNK", chunk)
        src = open_source(str(path))
        src.walk(_nothing, _nothing, on_batch=_nothing)  # the batched walk
        out["batched"] = _stats(src.reader.walk_stats)
    src = open_source(str(path))
    for _f in src.frames():
        pass
    out["frames"] = (src.out_of_order, src.step_back, src.step_frame, src.step_from_ts)
    return out


def _check(got, want):
    for name, v in got.items():
        assert v == want[:len(v)], name


@pytest.mark.parametrize("chunk", [300, 2000, 1 << 20])
def test_pcap_steps_every_loop(tmp_path, monkeypatch, chunk):
    """A pcap with known steps back (the largest in the middle of a chunk and one at a chunk's
    first record) and a record of time 0 with no byte (a numbered non-packet): every loop gives
    the definition's count, largest step, frame and time."""
    rng = random.Random(chunk)
    n = 400
    ticks = _ticks(rng, n, {50: 9000, 120: 400_000, 121: 5, 300: 123_456, 399: 1})
    frames = [(t, _frame(rng, i)) for i, t in enumerate(ticks)]
    data = pcap_bytes(frames[:10]) + struct.pack("<IIII", 0, 0, 0, 0) + \
        pcap_bytes(frames[10:])[24:]
    path = write(tmp_path, "steps.pcap", data)
    ts = [t / 10**6 for t in ticks]
    numbers = list(range(1, 11)) + list(range(12, n + 2))  # record 11 is the empty one
    want = expected(ts, numbers)
    assert want[0] >= 5 and want[2] == 122  # index 120: frame 122 (after the empty record)
    _check(loops(path, monkeypatch, chunk), want)


def test_in_order_measures_nothing(tmp_path, monkeypatch):
    rng = random.Random(3)
    ticks = _ticks(rng, 300, {})
    path = write(tmp_path, "inorder.pcap", pcap_bytes([(t, _frame(rng, i))
                                                       for i, t in enumerate(ticks)]))
    for name, v in loops(path, monkeypatch, 500).items():
        assert v[:4] == (0, 0.0, None, None), name


def _pcapng(frames, pb_every=0):
    """A pcapng of ``frames`` (microsecond ticks, data): EPBs, every ``pb_every``-th an obsolete
    packet block (read one at a time by the batched walk)."""
    def block(btype, body):
        body += b"\0" * (-len(body) & 3)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           block(1, struct.pack("<HHI", 1, 0, 65535))]
    for i, (t, data) in enumerate(frames):
        hi, lo = t >> 32, t & 0xFFFFFFFF
        if pb_every and i % pb_every == pb_every - 1:
            out.append(block(2, struct.pack("<HHIIII", 0, 0, hi, lo, len(data), len(data))
                             + data))
        else:
            out.append(block(6, struct.pack("<IIIII", 0, hi, lo, len(data), len(data)) + data))
    return b"".join(out)


@pytest.mark.parametrize("pb_every", [0, 7])
def test_pcapng_steps_every_loop(tmp_path, monkeypatch, pb_every):
    """The same in pcapng, with and without packet blocks the batched walk hands over one at a
    time; the steps of both files agree with the definition."""
    rng = random.Random(pb_every)
    ticks = _ticks(rng, 500, {13: 77, 200: 2_000_000, 202: 1_999_000, 201: 3, 480: 50})
    frames = [(t, _frame(rng, i)) for i, t in enumerate(ticks)]
    path = write(tmp_path, "steps.pcapng", _pcapng(frames, pb_every))
    want = expected([t / 10**6 for t in ticks], list(range(1, 501)))
    assert want[2] == 203  # index 202 steps back twice as far (the steps add up)
    got = loops(path, monkeypatch, 700)
    _check(got, want)
    # the pcap of the same frames measures the same
    ppath = write(tmp_path, "steps.pcap", pcap_bytes(frames))
    assert loops(ppath, monkeypatch, 700) == got


def test_earliest_frame_first_or_late(tmp_path, monkeypatch):
    """``first_frame``: the first record when nothing is earlier, else the earliest late one."""
    rng = random.Random(9)
    ticks = _ticks(rng, 100, {60: 10**7})
    frames = [(t, _frame(rng, i)) for i, t in enumerate(ticks)]
    path = write(tmp_path, "early.pcap", pcap_bytes(frames))
    got = loops(path, monkeypatch, 400)
    assert {v[4] for k, v in got.items() if k != "frames"} == {61}
    path = write(tmp_path, "early2.pcap", pcap_bytes(frames[:50]))
    got = loops(path, monkeypatch, 400)
    assert {v[4] for k, v in got.items() if k != "frames"} == {1}
