"""Fuzz targets for the capture readers (issue 20 "a fuzz target per reader", issue 13 damaged
captures): real captures from ``captures/`` and ``../shared/corpus`` mutated by hypothesis (bit
flips, inserted / deleted garbage, zero-filled holes, cut ends, length fields overwritten).

Properties:

* no exception but the documented one, :class:`DissectError`, and only from ``open_capture`` for
  a file whose header is not a capture's (everything after the header is damage, never an error);
* every record yielded is a record the report can place in time, offsets increase, the damaged
  ranges are in order, inside the data and between the records;
* garbage inserted at a record boundary: every original record after it is read again, with its
  bytes and time, and the garbage is reported as damage covering exactly it;
* the batched walk (the analysis hot path) and ``records()`` give the same frames, numbers and
  damage;
* the whole analysis of a mutated capture ends in a report (JSON valid against the schema, every
  format renders) that says CAPTURE_DAMAGED whenever a reader found damage.

Bounded run time in CI: ``FUZZ_EXAMPLES`` examples per target (default 40, derandomized, a few
seconds each); ``PCAPVPN_FUZZ_EXAMPLES=5000 PCAPVPN_FUZZ_RANDOM=1`` runs a longer campaign with new
examples each time.  Inputs that once
failed are kept in ``tests/data/fuzz/`` and replayed by :func:`test_crash_corpus` (name them
``<what>-<n>.pcap`` / ``.pcapng``; README there).
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CAPTURES, REPO, corpus_captures, corpus_dir
from dissect.vpn import chain
from dissect.vpn.capture import NONPACKET, TS_LIMIT, open_capture
from dissect.vpn.errors import DissectError
from pcapvpn import model
from pcapvpn.analysis import run
from pcapvpn.report import render

FUZZ_EXAMPLES = int(os.environ.get("PCAPVPN_FUZZ_EXAMPLES", "40"))
#: PCAPVPN_FUZZ_RANDOM=1: new random examples on each run (a campaign), else the same ones (CI)
DERANDOMIZE = not os.environ.get("PCAPVPN_FUZZ_RANDOM")
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SCHEMA = json.loads((REPO / "docs" / "schema.json").read_text())
CRASHES = Path(__file__).resolve().parents[1] / "data" / "fuzz"
MAX_SIZE = 200_000  # seeds larger than this are left out (speed)


def _seeds():
    files = sorted(p for p in (CAPTURES.rglob("*") if CAPTURES.is_dir() else [])
                   if p.suffix in (".pcap", ".pcapng", ".cap") and p.is_file())
    files += corpus_captures()
    out = []
    for p in files:
        if p.stat().st_size > MAX_SIZE or p.name.endswith(".gz"):
            continue
        data = p.read_bytes()
        try:
            r = open_capture(io.BytesIO(data))
            recs = list(r.records())
        except DissectError:
            continue
        if r.damage or len(recs) < 2:
            continue
        out.append((p, data))
    return out


def _sane(data):
    """Every record of ``data`` starts a valid chain (dissect.vpn.chain): a resynchronisation
    lands on the first record after any damage."""
    r = open_capture(io.BytesIO(data))
    starts = [rec[4] for rec in r.records()]
    rules = r.chain_rules()
    return len(starts) >= 8 and all(chain.find(rules, data, s, len(data), True)[0] == s
                                    for s in starts)


def _as_pcapng(data, tsresol):
    """A pcap seed written again as pcapng (the writer: one section, one interface)."""
    from dissect.vpn.capture import PcapngWriter

    f = io.BytesIO()
    w = PcapngWriter(f)
    r = open_capture(io.BytesIO(data))
    iface = w.add_interface(r.interfaces[0].linktype, name="eth0", tsresol=tsresol)
    for ts, _lt, pkt, wirelen, _off, _i in r.records():
        w.write_packet(iface, ts, pkt, wirelen)
    return f.getvalue()


SEEDS = _seeds()
# more pcapng: the lab captures as pcapng (micro- and nanoseconds), and two of them as two sections
_LAB = [(p, d) for p, d in SEEDS if "lab" in p.parts and d[:4] != b"\x0a\x0d\x0d\x0a"]
SEEDS += [(p.with_suffix(".pcapng"), _as_pcapng(d, (6, 9)[i % 2])) for i, (p, d) in
          enumerate(_LAB)]
if len(_LAB) >= 2:
    SEEDS.append((Path("two-sections.pcapng"), _as_pcapng(_LAB[0][1], 9)
                  + _as_pcapng(_LAB[1][1], 6)))
SANE = [(p, d) for p, d in SEEDS if _sane(d)]


def test_seeds_present():
    corpus_dir()
    assert len(SEEDS) > 50 and len(SANE) > 20
    assert any(d[:4] == b"\x0a\x0d\x0d\x0a" for _p, d in SANE)  # pcapng among them


# -- mutations ---------------------------------------------------------------------------------


def _starts(data):
    """Offsets of the records (pcap) / blocks (pcapng) of an undamaged seed."""
    r = open_capture(io.BytesIO(data))
    return [rec[4] for rec in r.records()]


@st.composite
def mutated(draw, pool=None):
    p, data = draw(st.sampled_from(pool or SEEDS))
    buf = bytearray(data)
    starts = _starts(data)
    hdr = 24 if data[:4] != b"\x0a\x0d\x0d\x0a" else 0
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "zeros", "length", "cut",
                                     "dup"]))
        if len(buf) <= hdr + 1:
            break
        at = draw(st.integers(hdr, len(buf) - 1))
        if kind == "flip":
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            n = draw(st.integers(1, 3000))
            buf[at:at] = random.Random(draw(st.integers(0, 2**32))).randbytes(n)
        elif kind == "delete":
            del buf[at:at + draw(st.integers(1, 2000))]
        elif kind == "zeros":
            n = draw(st.integers(1, 4096))
            buf[at:at + n] = bytes(min(n, len(buf) - at))
        elif kind == "length" and starts:
            s = draw(st.sampled_from(starts))
            field = s + (8 if hdr else 4)  # pcap captured length, pcapng block length
            if field + 4 <= len(buf):
                buf[field:field + 4] = struct.pack("<I", draw(st.integers(0, 2**32 - 1)))
        elif kind == "cut":
            del buf[at:]
        else:  # a piece of the file again (a second header, overlapping copies)
            n = draw(st.integers(1, 2000))
            buf[at:at] = buf[max(0, at - n):at]
    return p, bytes(buf)


def _read(data):
    """records() of ``data``: (reader, records), or None when the header is not a capture's."""
    try:
        r = open_capture(io.BytesIO(data))
    except DissectError:
        return None
    return r, list(r.records())


def _check_records(data, r, recs):
    last = -1
    for ts, lt, pkt, wirelen, off, _iface in recs:
        assert isinstance(pkt, bytes) and isinstance(ts, float) and off > last
        last = off
        if lt != NONPACKET:
            assert model.rfc3339(ts) is not None and ts >= 0
            if r.format == "pcapng":
                assert ts < TS_LIMIT
    end = -1
    for d in r.damage:
        assert d.offset >= end and d.length >= 0
        end = d.offset + d.length
        assert end <= len(data)
        assert not any(d.offset <= rec[4] < end for rec in recs if rec[1] != NONPACKET)
    assert r.size == len(data)
    assert all(isinstance(w, tuple) and isinstance(w[1], str) for w in r.warnings)


# -- the targets -------------------------------------------------------------------------------


@FUZZ
@given(mutated())
def test_fuzz_records(case):
    """records() of both formats on mutated real captures."""
    _p, data = case
    got = _read(data)
    if got is None:
        return
    _check_records(data, *got)


@FUZZ
@given(st.data())
def test_fuzz_garbage_at_a_record_boundary(data):
    """Random garbage inserted between two records: everything after it is read again."""
    p, orig = data.draw(st.sampled_from(SANE))
    r0 = open_capture(io.BytesIO(orig))
    recs0 = [x for x in r0.records()]
    i = data.draw(st.integers(1, len(recs0) - 1))
    at = recs0[i][4]
    n = data.draw(st.integers(1, 5000))
    junk = random.Random(data.draw(st.integers(0, 2**32))).randbytes(n)
    if orig[:4] != b"\x0a\x0d\x0d\x0a":
        # a random header that passes every test of a record header (about 2**-26) is read as
        # one, as tshark would: leave those out
        order = "<" if orig[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        frac, cap, wire = struct.unpack_from(order + "III", junk + bytes(16), 4)
        units = 10**9 if orig[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 10**6
        if cap <= 262144 and frac < units and wire >= cap:
            return
    bad = orig[:at] + junk + orig[at:]
    r, recs = _read(bad)
    _check_records(bad, r, recs)
    after = [(x[0], x[2]) for x in recs0[i:] if x[1] != NONPACKET]
    got = [(x[0], x[2]) for x in recs if x[4] >= at + n and x[1] != NONPACKET]
    assert got == after, p
    first = r.damage[0]
    assert first.offset == at and first.offset + first.length == at + n, (p, r.damage)
    assert not first.numbered


@FUZZ
@given(mutated())
def test_fuzz_batched_walk_equals_records(case):
    """The batched walk (numpy, a chunk at a time) and records() agree on every mutated input:
    frame numbers, times, offsets of the records on the general path, the damage."""
    _p, data = case
    got = _read(data)
    if got is None:
        return
    r0, recs = got
    want = {}
    number = 0
    for ts, lt, _pkt, _w, off, _i in recs:
        number += 1
        if lt != NONPACKET:
            want[number] = ts
    r = open_capture(io.BytesIO(data))
    seen = {}

    def on_frame(_tag, num, ts, *_rest):
        seen[num] = ts

    def on_esp(ref, ts, *_rest):
        seen[ref[1]] = ts

    def on_batch(_tag, b):
        for num, ts in zip(b.num.tolist(), b.ts.tolist()):
            seen[num] = ts

    r.walk(0, on_esp, on_frame, None, 1024, on_batch)
    assert seen == want
    assert [(d.offset, d.length, d.frames, d.numbered, d.kind, d.reason, d.trailing)
            for d in r.damage] == [(d.offset, d.length, d.frames, d.numbered, d.kind, d.reason,
                                    d.trailing) for d in r0.damage]
    assert r.walk_stats["numbered"] == number
    assert r.cooked == r0.cooked
    if r.format == "pcapng":
        assert r.iface_frames == r0.iface_frames
        assert sum(r.iface_frames.values()) == len(want)


@settings(max_examples=max(10, FUZZ_EXAMPLES // 2), deadline=None, derandomize=DERANDOMIZE,
          database=None, suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.data_too_large])
@given(mutated())
def test_fuzz_whole_analysis(tmp_path_factory, case):
    """analyze on a mutated capture: a report, never an exception (exit 3)."""
    _p, data = case
    if _read(data) is None:
        return
    path = tmp_path_factory.mktemp("fuzz") / ("x.pcapng" if data[:4] == b"\x0a\x0d\x0d\x0a"
                                              else "x.pcap")
    path.write_bytes(data)
    _analyse(path)


def _analyse(path):
    res = run([str(path)])
    rep = res.report
    doc = rep.to_dict()
    jsonschema.validate(doc, SCHEMA)
    for fmt in ("text", "markdown", "html"):
        render(rep, fmt)
    damaged = [s for s in res.sources if s.damage]
    assert bool(damaged) == any(f.code == "CAPTURE_DAMAGED" for f in rep.findings)
    assert bool(damaged) == ("damage" in doc["capture"])
    return rep


def _crash_files():
    return sorted(p for p in CRASHES.glob("*") if p.suffix in (".pcap", ".pcapng"))


#: what each file of the crash corpus gives: frames, then per damaged range (kind, offset,
#: length, records, numbered) - see tests/data/fuzz/README.md for what each once did
CRASH_EXPECT = {
    "cut-payload-false-chain.pcap": (11, [("tail", 860, 30, 1, False)]),
    "pcap-implausible-header.pcap": (16, [("unreadable", 1906, 316, 0, False)]),
    "pcapng-length-past-the-end.pcapng": (16, [("unreadable", 2248, 108, 0, False)]),
    "pcapng-periodic-unknown-block.pcapng": (300, [("unreadable", 1440, 1, 0, False)]),
    "pcapng-timestamp-64bit.pcapng": (15, [("records", 1520, 304, 1, True)]),
    "pcapng-tsresol-tsoffset.pcapng": (4, [("records", o, n, 1, True) for o, n in (
        (484, 356), (840, 368), (1512, 196), (1708, 196), (2100, 196), (2296, 196),
        (2688, 196), (2884, 196))]),
    "zero-hole-partial-header.pcap": (160, [("records", 8618, 3936, 246, True),
                                            ("unreadable", 12554, 148, 0, False)]),
}


def test_crash_corpus_is_described():
    assert sorted(p.name for p in _crash_files()) == sorted(CRASH_EXPECT)
    readme = (CRASHES / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in CRASH_EXPECT)


@pytest.mark.parametrize("path", _crash_files(), ids=lambda p: p.name)
def test_crash_corpus(path):
    """Inputs that once broke a reader or the analysis: read, walk and analyse them again."""
    data = path.read_bytes()
    got = _read(data)
    assert got is not None
    r, recs = got
    _check_records(data, r, recs)
    frames, damage = CRASH_EXPECT[path.name]
    assert len([x for x in recs if x[1] != NONPACKET]) == frames
    assert [(d.kind, d.offset, d.length, d.frames, d.numbered) for d in r.damage] == damage
    rep = _analyse(path)
    assert rep.capture.frames == frames
