"""EspTracker.esp_batch against the per-packet EspTracker.esp (the reference).

The same packets go (a) one ``esp`` call each, in capture order, to one tracker and (b) in
EspBatch chunks cut at arbitrary places to ``esp_batch`` of another tracker; afterwards every SA
must hold exactly the same state (every slot of EspSA, with its Python types), ``all_sas()`` must
list them in the same order, and the SA indexes must agree.  Explicit scenarios first (each also
checks that it produced what it is named after and that the batch path applied runs at once),
then hypothesis-generated captures.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dissect.vpn.batch import EspBatch
from pcapvpn.thresholds import DEFAULT
from pcapvpn.track.esp import (BATCH_MIN, MAX_BINS, MAX_GAPS, MAX_MOVES, NEAR_WRAP, SAMPLE_REFS,
                               EspSA, EspTracker, is_multicast)

TAG = 3  # the file index of the refs: batches carry it separately from the frame numbers
U32 = 1 << 32

A = bytes([192, 0, 2, 1])
A2 = bytes([203, 0, 113, 9])
B = bytes([192, 0, 2, 2])
C = bytes([198, 51, 100, 7])
M4 = bytes([239, 1, 1, 1])
A6 = bytes.fromhex("20010db8000000000000000000000001")
A62 = bytes.fromhex("20010db8000000000000000000000011")
B6 = bytes.fromhex("20010db8000000010000000000000002")
B6_SAME_LOW = bytes.fromhex("20010db8000000020000000000000002")  # B6's low 64 bits
M6 = bytes.fromhex("ff020000000000000000000000000005")
SPI = 0xC0FFEE01
SPI2 = 0x1000


def _collider(dst, spi, other_spi):
    """An IPv6 address whose batch grouping key with ``other_spi`` equals that of (dst, spi)
    (dissect: low 64 bits xor SPI * 0x9E3779B97F4A7C15): another SA in the same group."""
    mul = 0x9E3779B97F4A7C15
    low = int.from_bytes(dst[8:], "big")
    low2 = low ^ ((spi * mul) % (1 << 64)) ^ ((other_spi * mul) % (1 << 64))
    return dst[:8] + low2.to_bytes(8, "big")


B6_COLLIDER = _collider(B6, SPI, SPI2)

# -- building and feeding ------------------------------------------------------------------------


def pkt(ts, src, dst, seq, spi=SPI, sport=-1, dport=-1, length=100):
    """One packet: (ts, src, dst, sport, dport, spi, seq, length); ``seq`` as on the wire."""
    return (float(ts), src, dst, sport, dport, spi, seq & 0xFFFFFFFF, length)


def stream(seqs, src=A, dst=B, spi=SPI, t0=1000.0, step=0.01, sport=-1, dport=-1, length=100):
    return [pkt(t0 + i * step, src, dst, s, spi, sport, dport, length)
            for i, s in enumerate(seqs)]


def _addr_col(addrs, ipver):
    if ipver == 4:
        return np.array([int.from_bytes(a, "big") for a in addrs], dtype=np.int64)
    return np.frombuffer(b"".join(addrs), dtype=np.uint8).reshape(-1, 16).copy()


def make_batch(ipver, items):
    """An EspBatch as dissect.vpn.batch.classify makes it; ``items``: (num, packet)."""
    i64 = np.int64
    return EspBatch(
        ipver,
        np.array([n for n, _ in items], dtype=i64),
        np.array([p[0] for _, p in items], dtype=np.float64),
        _addr_col([p[1] for _, p in items], ipver),
        _addr_col([p[2] for _, p in items], ipver),
        np.array([p[3] for _, p in items], dtype=i64),
        np.array([p[4] for _, p in items], dtype=i64),
        np.array([p[5] for _, p in items], dtype=i64),
        np.array([p[6] for _, p in items], dtype=i64),
        np.array([p[7] for _, p in items], dtype=i64),
    )


def per_packet(packets, th=DEFAULT):
    t = EspTracker(th)
    for num, (ts, src, dst, sport, dport, spi, seq, ln) in enumerate(packets, 1):
        t.esp((TAG, num), ts, 4 if len(dst) == 4 else 6, src, dst, sport, dport, spi, seq, ln)
    return t


def batched(packets, sizes, th=DEFAULT, v6_first=False):
    """``packets`` cut into chunks of ``sizes`` (cycled); each chunk handed over as one batch per
    IP version, as the reader does.  Returns the tracker and how many packets went through the
    per-packet handler (the rest were applied as runs)."""
    t = EspTracker(th)
    inner = t.esp
    calls = [0]

    def counting(*a):
        calls[0] += 1
        inner(*a)

    t.esp = counting  # esp_batch and _esp_group reach the per-packet path through self.esp
    items = list(enumerate(packets, 1))
    i = k = 0
    while i < len(items):
        n = max(1, sizes[k % len(sizes)])
        k += 1
        chunk = items[i:i + n]
        i += n
        by_ver = {4: [], 6: []}
        for it in chunk:
            by_ver[4 if len(it[1][2]) == 4 else 6].append(it)
        for v in ((6, 4) if v6_first else (4, 6)):
            if by_ver[v]:
                t.esp_batch(TAG, make_batch(v, by_ver[v]))
    return t, calls[0]


SLOTS = [s for s in EspSA.__slots__ if s != "decrypt"]


def _typed(v):
    """``v`` with the type of every scalar spelled out (numpy scalars must not leak into SAs)."""
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, [_typed(x) for x in v])
    return (type(v).__name__, v)


def sa_state(sa):
    return {s: getattr(sa, s) for s in SLOTS}


def assert_same(ta, tb):
    sa_a, sa_b = ta.all_sas(), tb.all_sas()
    keys = [(s.proto, s.dst, s.spi, s.src if is_multicast(s.dst) else None) for s in sa_a]
    assert keys == [(s.proto, s.dst, s.spi, s.src if is_multicast(s.dst) else None)
                    for s in sa_b]
    assert len(ta._sas) == len(tb._sas) == len(sa_a)
    for x, y in zip(sa_a, sa_b):
        sx, sy = sa_state(x), sa_state(y)
        assert sx == sy, f"state of {x!r} differs"
        assert {k: _typed(v) for k, v in sx.items()} == {k: _typed(v) for k, v in sy.items()}
        assert x.bin_counts() == y.bin_counts()
        dx = x.to_dict()
        assert dx == y.to_dict()
        assert json.dumps(dx) == json.dumps(y.to_dict())
    # the indexes: same keys, the same SAs behind them
    pos_a = {id(s): i for i, s in enumerate(sa_a)}
    pos_b = {id(s): i for i, s in enumerate(sa_b)}
    assert {k: pos_a[id(v)] for k, v in ta._esp2.items()} == {
        k: pos_b[id(v)] for k, v in tb._esp2.items()}
    assert sorted(pos_b[id(s)] for s in tb._sas) == list(range(len(sa_b)))
    # the SPI index (the handler's shortcut) names one unicast SA of each SPI; which one, when
    # several SAs share an SPI, may differ: a chunk creates its SAs group by group, not in
    # capture order.  Every use of it checks the destination.
    assert ta._esp.keys() == tb._esp.keys()
    for spi, sa in tb._esp.items():
        assert sa.spi == spi and not is_multicast(sa.dst) and tb._esp2[(sa.dst, spi)] is sa


def check(packets, sizes=(1000,), th=DEFAULT, v6_first=False):
    """Both ways, compared; returns (per-packet tracker, per-packet calls of the batched one)."""
    ta = per_packet(packets, th)
    tb, calls = batched(packets, list(sizes), th, v6_first)
    assert_same(ta, tb)
    return ta, calls


CUTS = [(1000,), (1,), (BATCH_MIN,), (BATCH_MIN - 1,), (BATCH_MIN + 1, 5, 64), (7, 100, 33, 1)]


def only(t):
    sas = t.all_sas()
    assert len(sas) == 1
    return sas[0]


# -- explicit scenarios --------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", CUTS)
def test_long_in_order_run(sizes):
    packets = stream(range(1, 2001), length=1400)
    ta, calls = check(packets, sizes)
    sa = only(ta)
    assert sa.packets == 2000 and sa.lost == 0 and sa.large == 2000
    if sizes[0] >= BATCH_MIN:
        assert calls < 200  # the runs were applied at once, not packet by packet


def test_in_order_run_mid_session_and_cut_everywhere():
    packets = stream(range(70000, 70300), step=0.003)
    for n in range(1, 40):
        check(packets, (n,))


@pytest.mark.parametrize("sizes", CUTS)
def test_gaps_small_and_beyond_window(sizes):
    seqs = list(range(1, 101)) + list(range(103, 200)) + list(range(300, 400))
    seqs += list(range(401, 420)) + list(range(1000, 1100))
    ta, calls = check(stream(seqs), sizes)
    sa = only(ta)
    assert sa.lost == 2 + 100 + 1 + 580 and sa.max_gap == 580
    assert len(sa.gaps) == 4


def test_many_gaps_bound_the_evidence():
    seqs = []
    s = 1
    for _ in range(30):
        seqs += list(range(s, s + 300))  # a hole leaves the window long before the next one
        s += 301
    ta, calls = check(stream(seqs), (50,))
    sa = only(ta)
    assert sa.lost == 29 and len(sa.gaps) == MAX_GAPS and len(sa.last_gaps) == 5
    # per gap: the packets while its hole is in the window go one by one (nxt is -1)
    assert calls < len(seqs) // 3
    # holes closer than one window: the SA never gets back to the in-order state
    seqs = [s for s in range(1, 1300) if s % 21]
    check(stream(seqs), (50,))


@pytest.mark.parametrize("sizes", CUTS)
def test_duplicates_capture_copy_and_replay(sizes):
    packets = stream(range(1, 41), step=0.01)
    # a mirror copy right after packet 40, then more in order, then a replay of 20 later on
    packets.append(pkt(packets[-1][0] + 0.0001, A, B, 40))
    packets += stream(range(41, 80), t0=packets[-1][0] + 0.01)
    packets.append(pkt(packets[-1][0] + 1.0, A, B, 60))
    packets += stream(range(80, 120), t0=packets[-1][0] + 0.01)
    ta, _ = check(packets, sizes)
    sa = only(ta)
    assert sa.capture_duplicates == 1 and sa.duplicates == 1 and sa.lost == 0


@pytest.mark.parametrize("sizes", CUTS)
def test_late_arrivals_inside_and_beyond_window(sizes):
    seqs = list(range(1, 30)) + list(range(31, 60)) + [30]  # 29 deep: inside
    seqs += list(range(60, 70)) + list(range(71, 160)) + [70]  # 89 deep: too old
    seqs += list(range(160, 200))
    ta, _ = check(stream(seqs), sizes)
    sa = only(ta)
    assert sa.reordered == 2 and sa.too_old == 1 and sa.lost == 1 and sa.beyond64 == 1


@pytest.mark.parametrize("sizes", CUTS)
def test_sequence_reset(sizes):
    seqs = list(range(1, 501)) + list(range(1, 200)) + list(range(5, 60))
    ta, _ = check(stream(seqs), sizes)
    sa = only(ta)
    assert sa.resets == 2 and len(sa.reset_events) == 2


@pytest.mark.parametrize("sizes", CUTS)
def test_esn_wrap_near_2_32(sizes):
    seqs = list(range(U32 - 40, U32 + 60))  # wire numbers wrap to 0
    ta, calls = check(stream(seqs), sizes)
    sa = only(ta)
    assert sa.wraps == 1 and sa.max_seq == U32 + 59 and sa.lost == 0
    # a late one just before the wrap, a hole and a late one after it
    seqs = list(range(U32 - 40, U32 - 9)) + list(range(U32 - 8, U32 - 2)) + [U32 - 9]
    seqs += list(range(U32 - 2, U32 + 4)) + list(range(U32 + 5, U32 + 40)) + [U32 + 4]
    seqs += list(range(U32 + 40, U32 + 80))
    ta, _ = check(stream(seqs), sizes)
    sa = only(ta)
    assert sa.wraps == 1 and sa.lost == 0 and sa.reordered == 2
    # a number from before the wrap arriving after it (whatever the reference makes of it)
    seqs = list(range(U32 - 40, U32 + 3)) + [U32 - 10] + list(range(U32 + 3, U32 + 80))
    ta, _ = check(stream(seqs), sizes)
    assert only(ta).wraps >= 1


def test_near_wrap_without_wrap():
    ta, _ = check(stream(range(NEAR_WRAP + 1, NEAR_WRAP + 100)), (33,))
    assert only(ta).near_wrap


@pytest.mark.parametrize("ipver", [4, 6])
@pytest.mark.parametrize("sizes", CUTS)
def test_nat_rebinding_and_back(sizes, ipver):
    src, src2, dst = (A, A2, B) if ipver == 4 else (A6, A62, B6)  # A62: one byte from A6
    kw = dict(dst=dst, dport=4500, step=0.01)
    packets = stream(range(1, 50), src=src, sport=4500, **kw)
    packets += stream(range(50, 90), src=src, sport=61000, t0=packets[-1][0] + 0.01, **kw)
    packets += stream(range(90, 130), src=src2, sport=61000, t0=packets[-1][0] + 0.01, **kw)
    packets += stream(range(130, 170), src=src, sport=4500, t0=packets[-1][0] + 0.01, **kw)
    # a single stray packet from the old binding in the middle of a run
    packets += stream(range(170, 200), src=src, sport=4500, t0=packets[-1][0] + 0.01, **kw)
    packets[180] = pkt(packets[180][0], src2, dst, packets[180][6], sport=61000, dport=4500)
    # and the address alone changing, the port staying
    packets += stream(range(200, 240), src=src2, sport=4500, t0=packets[-1][0] + 0.01, **kw)
    ta, calls = check(packets, sizes)
    sa = only(ta)
    assert sa.moves_total == 6 and sa.lost == 0
    assert [(m[2], m[3]) for m in sa.moves] == [(src, 61000), (src2, 61000), (src, 4500),
                                                (src2, 61000), (src, 4500), (src2, 4500)]
    if sizes[0] >= 64:
        assert calls < len(packets) // 2


def test_moves_bounded_in_batches():
    packets = [pkt(1.0 + i * 0.01, A, B, i + 1, sport=4500 + (i // 20) % 2, dport=4500)
               for i in range(2000)]
    ta, calls = check(packets, (128,))
    sa = only(ta)
    assert len(sa.moves) == MAX_MOVES and sa.moves_total == 99
    assert calls < 400


@pytest.mark.parametrize("sizes", CUTS)
def test_several_sas_interleaved(sizes):
    a = stream(range(1, 301), spi=1, step=0.01)
    b = stream(range(500, 800), src=B, dst=A, spi=2, step=0.01, t0=1000.001)
    c = stream(list(range(7, 100)) + list(range(105, 312)), src=C, dst=B, spi=3, step=0.01,
               t0=1000.002, length=1500)
    packets = [p for trio in zip(a, b, c) for p in trio]
    ta, calls = check(packets, sizes)
    assert [s.spi for s in ta.all_sas()] == [1, 2, 3]
    if sizes[0] >= 3 * BATCH_MIN:
        assert calls < len(packets) // 2


@pytest.mark.parametrize("v6_first", [False, True])
@pytest.mark.parametrize("sizes", CUTS)
def test_same_spi_two_destinations_and_ipv6(sizes, v6_first):
    a = stream(range(1, 201), dst=C, step=0.01)
    b = stream(range(1, 201), dst=B, step=0.01, t0=1000.004)  # B's SA created after C's
    c = stream(range(1, 201), src=A6, dst=B6, step=0.01, t0=1000.001)
    d = stream(range(1, 201), src=A6, dst=B6_SAME_LOW, step=0.01, t0=1000.002)
    e = stream(range(9, 209), src=A62, dst=B6_COLLIDER, spi=SPI2, step=0.01, t0=1000.003)
    packets = [p for five in zip(a, b, c, d, e) for p in five]
    ta, _ = check(packets, sizes, v6_first=v6_first)
    assert len(ta.all_sas()) == 5 and all(s.lost == 0 for s in ta.all_sas())


def test_ipv6_runs_use_the_batch_path():
    packets = stream(range(1, 400), src=A6, dst=B6, step=0.01, sport=4500, dport=4500)
    packets[200:200] = stream(range(1, 30), src=A62, dst=B6, spi=SPI2, t0=packets[199][0])
    _, calls = check(packets, (64,))
    assert calls < 100


@pytest.mark.parametrize("sizes", CUTS)
def test_multicast_destinations(sizes):
    a = stream(range(1, 101), src=A, dst=M4, step=0.01)
    b = stream(range(40, 140), src=C, dst=M4, step=0.01, t0=1000.005)
    c = stream(range(1, 101), src=A6, dst=M6, step=0.01)
    d = stream(range(1, 101), src=A62, dst=M6, step=0.01, t0=1000.003)
    packets = [p for four in zip(a, b, c, d) for p in four]
    ta, _ = check(packets, sizes)
    assert len(ta.all_sas()) == 4


@pytest.mark.parametrize("sizes", CUTS)
def test_timestamps_out_of_order(sizes):
    packets = stream(range(1, 200), step=0.05, t0=100.0)
    for i in range(10, 190, 13):  # some packets stamped before their predecessors
        ts, *rest = packets[i]
        packets[i] = (ts - 0.7 * (i % 3 + 1), *rest)
    packets[150] = (packets[150][0] + 3.0, *packets[150][1:])  # one stamped far ahead
    packets[0] = (packets[0][0] - 5.0,) + packets[0][1:]
    check(packets, sizes)


@pytest.mark.parametrize("sizes", CUTS)
def test_time_bins_double(sizes):
    # one packet every 7 s for more than MAX_BINS * 8 s, with idle stretches and a burst
    packets = stream(range(1, 700), step=7.0, t0=1_700_000_000.25)
    packets += stream(range(700, 800), step=0.001, t0=packets[-1][0] + 9000.0)
    packets += stream(range(800, 900), step=300.0, t0=packets[-1][0] + 1.0)
    ta, _ = check(packets, sizes)
    sa = only(ta)
    assert sa.bin_width >= 16.0 and len(sa.bin_counts()) <= MAX_BINS
    assert sum(sa.bin_counts()) == sa.packets


def test_time_bins_double_inside_one_run():
    # the run crosses MAX_BINS seconds several times over within a single batch
    packets = stream(range(1, 3001), step=1.5, t0=0.5)
    ta, calls = check(packets, (3000,))
    assert only(ta).bin_width == 16.0 and calls <= SAMPLE_REFS + 1


@pytest.mark.parametrize("last", [MAX_BINS - 0.5, float(MAX_BINS), MAX_BINS + 0.5])
@pytest.mark.parametrize("sizes", [(1000,), (BATCH_MIN,), (1,)])
def test_time_bins_boundary(last, sizes):
    # the last packet in the last one-second bin that fits, or in the first one that does not
    ts = [0.25 + 0.5 * i for i in range(2 * MAX_BINS - 2)] + [last]
    packets = [pkt(t, A, B, i + 1) for i, t in enumerate(ts)]
    ta, _ = check(packets, sizes)
    assert only(ta).bin_width == (1.0 if last < MAX_BINS else 2.0)


@pytest.mark.parametrize("sizes", CUTS)
def test_lengths_around_large_threshold(sizes):
    lim = DEFAULT.large_packet
    lens = [lim - 1, lim, lim + 1, 60, 1500, lim - 1]
    packets = [pkt(10.0 + i * 0.01, A, B, i + 1, length=lens[(i * 7) % 5 if i > 40 else 0])
               for i in range(300)]
    ta, _ = check(packets, sizes)
    sa = only(ta)
    assert sa.large > 0 and sa.first_large_ts > 10.4 and sa.min_len == 60
    # none large at all, and large only at the very end of a run
    packets = [pkt(10.0 + i * 0.01, A, B, i + 1, length=lim - 1 + (i == 99)) for i in range(100)]
    ta, _ = check(packets, sizes)
    sa = only(ta)
    assert sa.large == 1 and sa.first_large_ts == sa.last_large_ts == packets[99][0]


@pytest.mark.parametrize("n", [1, SAMPLE_REFS - 1, SAMPLE_REFS, SAMPLE_REFS + 1,
                               BATCH_MIN - 1, BATCH_MIN, BATCH_MIN + 1])
def test_small_sas(n):
    packets = []
    for k in range(8):  # eight SAs of n packets each, interleaved
        packets += stream(range(1, n + 1), spi=100 + k, t0=1000.0 + k * 0.001, step=0.01)
    packets.sort(key=lambda p: p[0])
    for sizes in CUTS:
        ta, _ = check(packets, sizes)
        assert all(s.packets == n for s in ta.all_sas())


def test_replay_window_thresholds():
    seqs = list(range(1, 50)) + list(range(52, 150)) + [50] + list(range(150, 300)) + [51]
    for w in (1, 32, 64, 128):
        check(stream(seqs), (40,), th=replace(DEFAULT, replay_window=w))


def test_batches_of_one_packet():
    seqs = list(range(1, 60)) + [58, 63, 61, 62, 60] + list(range(64, 100))
    check(stream(seqs), (1,))


# -- generated captures ----------------------------------------------------------------------

DSTS4 = [B, C, A, M4]
DSTS6 = [B6, B6_SAME_LOW, B6_COLLIDER, M6]
SRCS = {4: [A, A2, C], 6: [A6, A62]}
SPIS = [SPI, SPI2, 0x1001]
LENS = [60, 100, DEFAULT.large_packet - 1, DEFAULT.large_packet, DEFAULT.large_packet + 1, 1500]

sender = st.fixed_dictionaries({
    "ipver": st.sampled_from([4, 6]),
    "dst": st.integers(0, 3),
    "src": st.integers(0, 2),
    "spi": st.sampled_from(SPIS),
    "udp": st.booleans(),
    "seq0": st.sampled_from([1, 2, 1000, U32 - 70, NEAR_WRAP + 5]),
    "lens": st.lists(st.sampled_from(LENS), min_size=1, max_size=3),
})

op = st.one_of(
    st.tuples(st.just("run"), st.integers(0, 3), st.integers(1, 80)),
    st.tuples(st.just("mix"), st.integers(0, 3), st.integers(1, 120)),
    st.tuples(st.just("gap"), st.integers(0, 3), st.sampled_from([1, 2, 5, 31, 63, 64, 65, 200])),
    st.tuples(st.just("dup"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("replay"), st.integers(0, 3), st.integers(0, 100)),
    st.tuples(st.just("late"), st.integers(0, 3), st.sampled_from([1, 2, 10, 40, 63, 64, 100])),
    st.tuples(st.just("reset"), st.integers(0, 3), st.sampled_from([1, 2, 64, 65])),
    st.tuples(st.just("wrap"), st.integers(0, 3), st.integers(1, 40)),
    st.tuples(st.just("move"), st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.just("tsback"), st.just(0), st.sampled_from([0.0001, 0.5, 3.0])),
    st.tuples(st.just("tsjump"), st.just(0), st.sampled_from([2.0, 100.0, 600.0, 5000.0])),
    st.tuples(st.just("step"), st.just(0), st.sampled_from([0.0, 0.00001, 0.002, 0.3, 1.7])),
)


def build(senders, ops, t0):
    """Packets of ``senders`` driven by ``ops`` (a small traffic model: the capture's clock,
    every sender's next extended sequence number, source address and port)."""
    out = []
    clock = [t0, 0.002]  # time, step
    state = []
    for s in senders:
        v = s["ipver"]
        state.append({
            "v": v, "dst": (DSTS4 if v == 4 else DSTS6)[s["dst"]], "spi": s["spi"],
            "src0": SRCS[v][s["src"] % len(SRCS[v])], "src": SRCS[v][s["src"] % len(SRCS[v])],
            "sport0": 4500 if s["udp"] else -1, "sport": 4500 if s["udp"] else -1,
            "udp": s["udp"], "seq": s["seq0"], "lens": s["lens"], "n": 0,
        })

    def emit(x, seq):
        ts = clock[0]
        clock[0] += clock[1]
        ln = x["lens"][x["n"] % len(x["lens"])]
        x["n"] += 1
        out.append(pkt(ts, x["src"], x["dst"], seq, x["spi"], x["sport"],
                       4500 if x["udp"] else -1, ln))

    def nxt(x):
        emit(x, x["seq"])
        x["seq"] += 1

    for kind, who, arg in ops:
        x = state[who % len(state)]
        if kind == "run":
            for _ in range(arg):
                nxt(x)
        elif kind == "mix":
            for k in range(arg):
                nxt(state[(who + k) % len(state)])
        elif kind == "gap":
            x["seq"] += arg
            nxt(x)
        elif kind == "dup":
            clock[0] -= clock[1]  # the copy has (nearly) the same timestamp
            emit(x, x["seq"] - 1)
        elif kind == "replay":
            emit(x, max(0, x["seq"] - 1 - arg))
        elif kind == "late":
            s = x["seq"]
            x["seq"] += 1
            for _ in range(arg):
                nxt(x)
            emit(x, s)
        elif kind == "reset":
            x["seq"] = arg
            nxt(x)
        elif kind == "wrap":
            x["seq"] = (x["seq"] // U32 + 1) * U32 - arg
            nxt(x)
        elif kind == "move":
            if arg == 0:
                x["src"], x["sport"] = x["src0"], x["sport0"]
            elif arg == 1 and x["udp"]:
                x["sport"] = 61000 if x["sport"] != 61000 else 4500
            else:
                alts = SRCS[x["v"]]
                x["src"] = alts[(alts.index(x["src"]) + 1) % len(alts)]
        elif kind == "tsback":
            clock[0] = max(0.0, clock[0] - arg)
        elif kind == "tsjump":
            clock[0] += arg
        else:
            clock[1] = arg
    return out


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(senders=st.lists(sender, min_size=1, max_size=4),
       ops=st.lists(op, min_size=1, max_size=40),
       t0=st.sampled_from([0.0, 0.25, 1000.0, 1_700_000_000.123456]),
       sizes=st.lists(st.integers(1, 90), min_size=1, max_size=6),
       window=st.sampled_from([64, 64, 32, 128, 3]),
       v6_first=st.booleans())
def test_generated_captures(senders, ops, t0, sizes, window, v6_first):
    packets = build(senders, ops, t0)
    if not packets:
        return
    check(packets, sizes, replace(DEFAULT, replay_window=window), v6_first)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed_ops=st.lists(st.tuples(st.integers(1, 300), st.sampled_from(
    ["ok", "gap", "late", "dup", "move", "tsjump"])), min_size=1, max_size=12),
       sizes=st.lists(st.integers(BATCH_MIN, 400), min_size=1, max_size=4))
def test_generated_long_runs(seed_ops, sizes):
    """Fewer, longer runs of one SA: what the batch path applies at once."""
    packets = []
    seq = 1
    ts = 5000.0
    sport = 4500
    for n, kind in seed_ops:
        if kind == "gap":
            seq += n
        elif kind == "tsjump":
            ts += 50.0 * n
        elif kind == "move":
            sport = 4501 if sport == 4500 else 4500
        for k in range(n):
            packets.append(pkt(ts, A, B, seq, sport=sport, dport=4500, length=1290 + k % 20))
            seq += 1
            ts += 0.37
        if kind == "late":
            packets.insert(len(packets) - min(n, 70), pkt(ts, A, B, seq, sport=sport, dport=4500))
            seq += 1
        elif kind == "dup":
            packets.append(pkt(ts, A, B, seq - 1, sport=sport, dport=4500))
    check(packets, sizes)
