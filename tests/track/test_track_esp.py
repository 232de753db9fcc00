"""EspTracker: SA keying, the anti-replay window analysis (RFC 4303 §3.4.3), sizes, time bins,
NAT source changes — driven by synthetic esp()/ah() calls."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pcapvpn.thresholds import DEFAULT
from pcapvpn.track.esp import MAX_BINS, MAX_GAPS, MAX_MOVES, NEAR_WRAP, EspTracker

A = bytes([192, 0, 2, 1])
B = bytes([192, 0, 2, 2])
C = bytes([198, 51, 100, 7])
A6 = bytes.fromhex("20010db8000000000000000000000001")
B6 = bytes.fromhex("20010db8000000000000000000000002")
SPI = 0xC0FFEE01


def feed(seqs, spi=SPI, src=A, dst=B, t0=1000.0, step=0.1, length=100, tracker=None,
         sport=-1, dport=-1, th=DEFAULT):
    t = tracker or EspTracker(th)
    for i, s in enumerate(seqs):
        t.esp((0, i + 1), t0 + i * step, 4 if len(src) == 4 else 6, src, dst, sport, dport, spi,
              s, length)
    return t


def one(t):
    sas = t.all_sas()
    assert len(sas) == 1
    return sas[0]


def test_in_order_sequence():
    sa = one(feed(range(1, 1001)))
    assert (sa.packets, sa.first_seq, sa.max_seq) == (1000, 1, 1000)
    assert sa.starts_at_one and not sa.mid_session()
    assert (sa.lost, sa.duplicates, sa.reordered, sa.resets) == (0, 0, 0, 0)
    assert sa.expected == 1000 and sa.loss_pct == 0.0
    assert sa.encap == "ip" and sa.proto == "esp"
    assert sa.first_ref == (0, 1) and sa.last_ref == (0, 1000)
    assert sa.first_refs == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)]


def test_gap_never_filled_is_lost_with_evidence():
    sa = one(feed([1, 2, 3, 7, 8, 9]))
    assert sa.lost == 3  # 4, 5, 6
    assert sa.reordered == 0
    assert sa.lost_gaps() == [(1000.3, (0, 4), 4, 7, 3)]
    assert sa.max_gap == 3
    assert round(sa.loss_pct, 3) == round(100 * 3 / 9, 3)


def test_late_arrival_inside_window_fills_its_hole():
    sa = one(feed([1, 2, 4, 5, 3, 6]))
    assert sa.lost == 0
    assert sa.reordered == 1 and sa.max_reorder == 2
    assert sa.lost_gaps() == []
    assert sa.gaps == []  # the filled gap freed its evidence slot
    assert sa.nxt == 7  # back on the fast path


def test_hole_leaving_window_is_lost_even_if_the_packet_comes_later():
    seqs = [1, 2] + list(range(4, 80)) + [3]  # 3 arrives 76 deep: beyond a 64 window
    sa = one(feed(seqs))
    assert sa.lost == 1
    assert sa.too_old == 1 and sa.reordered == 1
    assert sa.beyond64 == 1 and sa.beyond32 == 1 and sa.max_reorder == 76


def test_reorder_depth_32_and_64_windows():
    # 2 arrives 40 deep (accepted by 64, dropped by 32); 50 arrives 10 deep
    seqs = [1] + list(range(3, 43)) + [2] + list(range(43, 50)) + list(range(51, 61)) + [50]
    sa = one(feed(seqs))
    assert sa.lost == 0
    assert sa.reordered == 2
    assert sa.beyond32 == 1 and sa.beyond64 == 0
    assert sa.max_reorder == 40


def test_window_size_follows_threshold():
    th = replace(DEFAULT, replay_window=32)
    seqs = [1] + list(range(3, 43)) + [2]  # 40 deep: outside a 32 window
    sa = one(feed(seqs, th=th))
    assert sa.lost == 1 and sa.too_old == 1


def test_duplicate_is_replay_unless_a_capture_copy():
    sa = one(feed([1, 2, 3, 2, 4]))  # 0.1 s apart: a replayed/duplicated packet
    assert sa.duplicates == 1 and sa.capture_duplicates == 0 and sa.lost == 0
    t = EspTracker(DEFAULT)
    for i, (ts, s) in enumerate([(1.0, 1), (1.0001, 1), (1.1, 2), (1.1002, 2), (1.2, 3)]):
        t.esp((0, i + 1), ts, 4, A, B, -1, -1, SPI, s, 100)
    sa = one(t)
    assert sa.capture_duplicates == 2 and sa.duplicates == 0 and sa.lost == 0
    assert sa.expected == 3


def test_reset_to_low_number_far_below_window():
    sa = one(feed(list(range(1, 501)) + list(range(1, 11))))
    assert sa.resets == 1
    assert sa.lost == 0 and sa.duplicates == 0
    assert sa.reset_events[0][2:] == (500, 1)
    assert sa.max_seq == 10


def test_starts_not_at_one_means_capture_started_late():
    sa = one(feed(range(5000, 5100)))
    assert not sa.starts_at_one and sa.mid_session()
    assert sa.lost == 0  # numbers before the first packet are not counted lost
    sa = one(feed(range(3, 10)))
    assert not sa.starts_at_one and not sa.mid_session()  # close to 1: not far


def test_late_packet_from_before_the_first_is_reorder_not_replay():
    sa = one(feed([3, 4, 1, 2, 5]))
    assert sa.duplicates == 0 and sa.reordered == 2
    assert sa.min_seq == 1 and sa.starts_at_one


def test_esn_wrap_and_near_wrap():
    hi = (1 << 32) - 3
    sa = one(feed([hi, hi + 1, hi + 2, 0, 1, 2]))
    assert sa.wraps == 1 and sa.resets == 0
    assert sa.max_seq == (1 << 32) + 2
    assert sa.lost == 0 and not sa.near_wrap
    sa = one(feed([NEAR_WRAP + 10, NEAR_WRAP + 11]))
    assert sa.near_wrap


def test_esn_late_packet_from_before_the_wrap():
    # RFC 4303 Appendix A2.2: a number above the window's low half after a wrap belongs to the
    # previous epoch (a late packet), not to the next one (a jump of 2**32)
    late = (1 << 32) - 10
    seqs = [x for x in range((1 << 32) - 20, 1 << 32) if x != late] + [0, 1, 2, late, 3]
    sa = one(feed(seqs))
    assert sa.wraps == 1 and sa.resets == 0
    assert sa.max_seq == (1 << 32) + 3
    assert sa.lost == 0 and sa.reordered == 1 and sa.max_reorder == 12
    assert sa.duplicates == 0 and sa.too_old == 0
    # the same number again right after: a capture duplicate of the late packet, not a jump
    sa = one(feed(seqs + [late], step=0.0001))
    assert sa.max_seq == (1 << 32) + 3 and sa.lost == 0 and sa.wraps == 1


def test_sizes_and_large_packets():
    t = EspTracker(DEFAULT)
    for i, ln in enumerate([100, 1400, 60, 1500, 200]):
        t.esp((0, i + 1), 10.0 + i, 4, A, B, -1, -1, SPI, i + 1, ln)
    sa = one(t)
    assert (sa.min_len, sa.max_len, sa.bytes) == (60, 1500, 3260)
    assert sa.large == 2 and sa.first_large_ts == 11.0 and sa.last_large_ts == 13.0


def test_time_bins_one_second_then_coarsened():
    t = feed(range(1, 101), t0=100.0, step=0.5)  # 50 s
    sa = one(t)
    assert sa.bin_width == 1.0 and sa.bin_base == 100.0
    assert sum(sa.bin_counts()) == 100
    assert sa.bin_counts()[:3] == [2, 2, 2]
    # 3000 s at 2 packets/s: more than MAX_BINS one-second bins -> width doubles until it fits
    t = feed(range(1, 6001), t0=100.0, step=0.5)
    sa = one(t)
    assert len(sa.bin_counts()) <= MAX_BINS
    assert sa.bin_width == 8.0
    assert sum(sa.bin_counts()) == 6000
    assert sa.bin_counts()[0] == 16
    assert sa.packets_between(100.0 + 8 * 10) == 6000 - 160


def test_time_bins_idle_gap():
    t = EspTracker(DEFAULT)
    for i, ts in enumerate([0.2, 0.7, 5000.5, 5000.6]):
        t.esp((0, i + 1), ts, 4, A, B, -1, -1, SPI, i + 1, 100)
    sa = one(t)
    counts = sa.bin_counts()
    assert len(counts) <= MAX_BINS and sum(counts) == 4
    assert counts[0] == 2 and counts[-1] == 2


def test_keyed_by_destination_and_spi():
    t = EspTracker(DEFAULT)
    feed([1, 2, 3], spi=SPI, dst=B, tracker=t)
    feed([1, 2], spi=SPI, dst=C, tracker=t)  # same SPI, other destination: another SA
    feed([4, 5], spi=SPI, dst=B, tracker=t, t0=2000.0)
    sas = t.all_sas()
    assert len(sas) == 2
    by_dst = {sa.dst: sa for sa in sas}
    assert by_dst[B].packets == 5 and by_dst[B].lost == 0
    assert by_dst[C].packets == 2


def test_nat_source_change_recorded_not_a_new_sa():
    t = EspTracker(DEFAULT)
    feed([1, 2, 3], src=A, sport=4500, dport=4500, tracker=t)
    feed([4, 5], src=A, sport=61000, dport=4500, tracker=t, t0=1010.0)
    feed([6], src=C, sport=61000, dport=4500, tracker=t, t0=1020.0)
    sa = one(t)
    assert sa.encap == "udp" and sa.sport == 4500 and sa.src == A
    assert [(m[2], m[3]) for m in sa.moves] == [(A, 61000), (C, 61000)]
    assert sa.moves_total == 2
    assert sa.lost == 0
    d = sa.to_dict()
    assert d["source_changes"][1] == {"ts": 1020.0, "frame": [0, 1], "src": "198.51.100.7",
                                      "sport": 61000}


def test_moves_bounded():
    t = EspTracker(DEFAULT)
    for i in range(200):
        t.esp((0, i + 1), float(i), 4, A, B, 4500 + (i % 2), 4500, SPI, i + 1, 100)
    sa = one(t)
    assert len(sa.moves) == MAX_MOVES and sa.moves_total == 199


def test_gap_evidence_bounded():
    seqs = []
    s = 1
    for _ in range(100):
        seqs += [s, s + 1]
        s += 3  # one lost every 3
    sa = one(feed(seqs))
    assert sa.lost == 99
    gaps = sa.lost_gaps()
    assert len(sa.gaps) == MAX_GAPS and len(gaps) == MAX_GAPS + 5
    assert gaps[-1][2:] == (297, 298, 1)


def test_tcp_and_ipv6_and_ah():
    t = EspTracker(DEFAULT)
    t.esp((0, 1), 1.0, 6, A6, B6, 40000, 4500, SPI, 1, 100, "tcp")
    t.ah((0, 2), 1.5, 4, A, B, SPI, 1, 80)  # same SPI and destination value, other protocol
    t.ah((0, 3), 2.0, 4, A, B, SPI, 2, 80)
    sas = t.all_sas()
    assert [(s.proto, s.encap, s.packets) for s in sas] == [("esp", "tcp", 1), ("ah", "ip", 2)]
    d = sas[0].to_dict()
    assert d["spi"] == "c0ffee01" and d["src"] == "2001:db8::1" and d["sport"] == 40000
    assert sas[1].to_dict()["sport"] is None


def test_fragmented_hook():
    t = feed([1, 2])
    t.fragmented(4, A, B, SPI, ((0, 7), (0, 8)))
    sa = one(t)
    assert sa.fragmented == 1 and sa.frag_refs == [(0, 7), (0, 8)]
    t.fragmented(4, A, C, SPI, ((0, 9),))  # unknown SA: ignored
    assert sa.fragmented == 1


def test_all_sas_ordered_by_first_packet():
    t = EspTracker(DEFAULT)
    feed([1], spi=2, tracker=t, t0=50.0)
    feed([1], spi=1, tracker=t, t0=10.0)
    assert [s.spi for s in t.all_sas()] == [1, 2]


def test_to_dict_is_json_ready():
    import json

    sa = one(feed([1, 2, 5, 3]))
    d = json.loads(json.dumps(sa.to_dict()))
    assert d["spi"] == "c0ffee01" and d["src"] == "192.0.2.1" and d["dst"] == "192.0.2.2"
    assert d["sequence"]["lost"] == 1 and d["sequence"]["reordered"] == 1
    assert d["sequence"]["gaps"] == [{"ts": 1000.2, "frame": [0, 3], "expected": 3, "got": 5,
                                      "missing": 1}]
    assert d["bins"]["width"] == 1.0 and sum(d["bins"]["packets"]) == 4


@pytest.mark.parametrize("reorder_every", [0, 17])
def test_random_stream_accounting(reorder_every):
    """Lost = sent - received, whatever the order inside the window."""
    import random

    rnd = random.Random(7)
    sent = list(range(1, 5001))
    recv = [s for s in sent if rnd.random() > 0.02]
    if reorder_every:
        for i in range(0, len(recv) - 3, reorder_every):
            recv[i], recv[i + 2] = recv[i + 2], recv[i]
    sa = one(feed(recv))
    missing = len(set(sent[: max(recv)]) - set(recv))
    assert sa.lost == missing
    assert sa.packets == len(recv) and sa.duplicates == 0


def test_multicast_sa_keyed_with_source():
    """RFC 4301 §4.1: a multicast SA is SPI + destination + source (several senders)."""
    group = bytes.fromhex("ff020000000000000000000000000005")
    t = EspTracker(DEFAULT)
    for i in range(5):
        t.ah((0, 2 * i + 1), float(i), 6, A6, group, 0x100, 19 + i, 80)
        t.ah((0, 2 * i + 2), i + 0.5, 6, B6, group, 0x100, 13 + i, 80)
    sas = t.all_sas()
    assert [(s.src, s.packets, s.lost, s.moves_total) for s in sas] == [(A6, 5, 0, 0),
                                                                        (B6, 5, 0, 0)]


def test_interleaved_copies_of_a_burst_are_capture_copies():
    """A mirror copying both ways of a port interleaves the copies of a burst: 1 2 1' 2' 3 3'
    within microseconds.  The copies of 1 and 2 follow another number, yet they are copies,
    not replays; the same number a second later still is a replay."""
    t = EspTracker(DEFAULT)
    rows = [(1.0, 1), (1.00001, 2), (1.00002, 1), (1.00003, 2), (1.1, 3), (1.10002, 3),
            (2.5, 2), (2.6, 4)]
    for i, (ts, s) in enumerate(rows):
        t.esp((0, i + 1), ts, 4, A, B, -1, -1, SPI, s, 100)
    sa = one(t)
    assert sa.capture_duplicates == 3 and sa.duplicates == 1 and sa.lost == 0
