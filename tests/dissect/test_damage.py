"""Damaged captures (issue 13 §2, issue 20 "Crash"): the readers resynchronise on the next valid
chain of records, report each damaged range, keep Wireshark's frame numbering, and the analysis
covers what comes after the damage.  Real lab captures with garbage inserted, records overwritten,
zero-filled holes, cut ends; pcapng timestamps out of range; against tshark."""

from __future__ import annotations

import gzip
import io
import json
import random
import struct
import subprocess
import sys

import jsonschema
import pytest

from conftest import CAPTURES, REPO, tshark_path
from dissect.vpn import chain
from dissect.vpn.capture import NONPACKET, TS_LIMIT, PcapngWriter, open_capture
from pcapvpn import model
from pcapvpn.analysis import run
from pcapvpn.report import render
from pcapvpn.sources import open_source

LAB = CAPTURES / "lab"
ESP_LOSS = LAB / "ikev2_esp_loss" / "ikev2_esp_loss.pcap"
HEALTHY = LAB / "ikev2_healthy" / "ikev2_healthy.pcap"
REKEY = LAB / "ikev2_rekey" / "ikev2_rekey.pcap"
SCHEMA = json.loads((REPO / "docs" / "schema.json").read_text())


# -- building damaged captures (an independent reading of the formats) -----------------------


def pcap_records(data: bytes):
    """[(offset, ts, caplen)] of a little-endian microsecond pcap, parsed here."""
    out = []
    pos = 24
    while pos + 16 <= len(data):
        sec, usec, cap, _wire = struct.unpack_from("<IIII", data, pos)
        out.append((pos, sec + usec / 1e6, cap))
        pos += 16 + cap
    return out


def garbage(n: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.getrandbits(8) for _ in range(n))


def to_pcapng(data: bytes) -> bytes:
    """The same packets as pcapng (one section, one interface, microseconds)."""
    f = io.BytesIO()
    w = PcapngWriter(f)
    src = open_capture(io.BytesIO(data))
    iface = None
    for ts, lt, pkt, wirelen, _off, _i in src.records():
        if iface is None:
            iface = w.add_interface(lt, tsresol=6)
        w.write_packet(iface, ts, pkt, wirelen)
    return f.getvalue()


def epb_offsets(data: bytes):
    """[(offset, length)] of the enhanced packet blocks of a little-endian pcapng."""
    out = []
    pos = 0
    while pos + 8 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        if btype == 6:
            out.append((pos, blen))
        pos += blen
    return out


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def codes(report):
    return sorted(f.code for f in report.findings if f.code != "CAPTURE_DAMAGED")


def damaged_finding(report):
    (f,) = [f for f in report.findings if f.code == "CAPTURE_DAMAGED"]
    return f


# -- garbage in the middle (the case) -------------------------------------------------


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_garbage_in_the_middle_is_skipped_and_the_rest_analysed(tmp_path, fmt):
    orig = ESP_LOSS.read_bytes()
    if fmt == "pcap":
        recs = pcap_records(orig)
        k = len(recs) // 2
        at = recs[k][0]
    else:
        orig = to_pcapng(orig)
        blocks = epb_offsets(orig)
        k = len(blocks) // 2
        at = blocks[k][0]
    bad = orig[:at] + garbage(1200) + orig[at:]
    base = run([str(write(tmp_path, "orig." + fmt, orig))]).report
    res = run([str(write(tmp_path, "bad." + fmt, bad))])
    rep = res.report
    # everything after the damage is read and analysed: same frames, same diagnosis
    assert rep.capture.frames == base.capture.frames == len(pcap_records(ESP_LOSS.read_bytes()))
    assert codes(rep) == codes(base)
    assert [(t["id"], t["verdict"]) for t in rep.tunnels] == \
        [(t["id"], t["verdict"]) for t in base.tunnels]
    (d,) = rep.capture.damage
    assert (d.offset, d.length, d.frames_skipped, d.trailing) == (at, 1200, 0, False)
    assert not d.frames_numbered
    f = damaged_finding(rep)
    assert f.severity == "error" and f.stage == "capture"
    assert "1200 bytes" in f.title and "offset %d" % at in f.detail
    # the gap in time is the one between the packets before and after the garbage
    times = [fr[2] for fr in open_source(str(write(tmp_path, "o2." + fmt, orig))).frames()]
    start, end = min(times), max(times)
    gap = times[k] - times[k - 1]
    assert d.before.rel == round(times[k - 1] - start, 6)
    assert d.after.rel == round(times[k] - start, 6)
    share = round(1 - gap / (end - start), 6)
    assert rep.capture.coverage["share"] == share
    assert 0 < rep.capture.coverage["bytes_share"] < 1
    (t,) = rep.tunnels
    assert t["coverage"]["share"] < 1 and t["coverage"]["first"] == t["first"]
    doc = rep.to_dict()
    jsonschema.validate(doc, SCHEMA)
    assert doc["capture"]["damage"][0]["offset"] == at
    # the undamaged capture's report has neither field (optional fields, unchanged reports)
    base_doc = base.to_dict()
    assert "damage" not in base_doc["capture"] and "coverage" not in base_doc["capture"]
    assert all("coverage" not in t for t in base_doc["tunnels"])


def test_damage_is_said_at_the_top_of_every_format_and_on_stderr(tmp_path):
    orig = HEALTHY.read_bytes()
    at = pcap_records(orig)[5][0]
    p = write(tmp_path, "bad.pcap", orig[:at] + garbage(700, 3) + orig[at:])
    rep = run([str(p)]).report
    text = render(rep, "text")
    assert text.splitlines()[1].startswith("DAMAGED CAPTURE: 700 bytes in 1 place(s)")
    md = render(rep, "markdown")
    assert md.splitlines()[2].startswith("> **DAMAGED CAPTURE: 700 bytes")
    html = render(rep, "html")
    assert html.index("DAMAGED CAPTURE") < html.index('id="verdicts"')
    assert json.loads(render(rep, "json"))["capture"]["damage"][0]["length"] == 700
    r = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", str(p), "--format", "json"],
                       capture_output=True, cwd=REPO, timeout=300)
    err = r.stderr.decode()
    assert "pcapvpn: warning: DAMAGED CAPTURE: 700 bytes" in err
    assert f"bad.pcap: offset {at}, 700 bytes" in err
    # records were skipped before the end of the file: error, so the default --fail-on exits 1
    assert r.returncode == 1
    # the same capture undamaged exits 0
    r = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", str(HEALTHY)],
                       capture_output=True, cwd=REPO, timeout=300)
    assert r.returncode == 0 and b"DAMAGED" not in r.stderr + r.stdout


def test_only_the_end_lost_is_a_warning(tmp_path):
    orig = HEALTHY.read_bytes()
    p = write(tmp_path, "cut.pcap", orig[:-25])
    rep = run([str(p)]).report
    f = damaged_finding(rep)
    assert f.severity == "warning" and "ends in damage" in f.title
    (d,) = rep.capture.damage
    assert d.trailing and d.offset + d.length == len(orig) - 25
    assert d.frames_skipped == 1  # the record whose header was read
    r = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", str(p)],
                       capture_output=True, cwd=REPO, timeout=300)
    assert r.returncode == 0 and b"DAMAGED CAPTURE" in r.stderr


def test_garbage_at_the_end_and_nothing_readable(tmp_path):
    orig = HEALTHY.read_bytes()
    rep = run([str(write(tmp_path, "tail.pcap", orig + garbage(3000, 5)))]).report
    (d,) = rep.capture.damage
    assert d.trailing and d.length == 3000 and damaged_finding(rep).severity == "warning"
    # a file whose every byte after the header is garbage: nothing readable is an error
    rep = run([str(write(tmp_path, "junk.pcap", orig[:24] + garbage(5000, 6)))]).report
    assert rep.capture.frames == 0 and damaged_finding(rep).severity == "error"
    assert rep.capture.coverage["share"] == 0.0


def test_zero_filled_hole_keeps_wireshark_numbers(tmp_path):
    """A 4 KiB hole of zeros over records (a crash while the file was written): the zero record
    headers are numbered as Wireshark numbers them but not analysed; the record whose header the
    hole cut is skipped to the next valid chain."""
    orig = REKEY.read_bytes()
    recs = pcap_records(orig)
    at = recs[40][0] + 30
    bad = orig[:at] + bytes(4096) + orig[at + 4096:]
    p = write(tmp_path, "hole.pcap", bad)
    src = open_source(str(p))
    frames = list(src.frames())
    kinds = [(d.numbered, d.frames > 0) for d in src.damage]
    assert kinds[0] == (True, True) and "empty record at time 0" in src.damage[0].reason
    assert all(fr[2] > 1e9 for fr in frames)  # no frame of 1970 from the hole
    _same_numbers_as_tshark(p, src, frames)


# -- frame numbers: tshark's, and tshark's on the file with the unreadable ranges cut out ----


def _same_numbers_as_tshark(path, src, frames):
    """Our frames are tshark's where tshark reads the damaged file (it stops at the first
    unreadable range, exit status 2); all of them are tshark's on the same file with the
    unreadable ranges (those that use no frame number) cut out, and the damaged records that keep
    their numbers are there too."""
    tshark = tshark_path()
    ours = [(n, "%.6f" % ts) for _i, n, ts, *_rest in frames]

    def theirs(p):
        r = subprocess.run([tshark, "-n", "-r", str(p), "-T", "fields", "-e", "frame.number",
                            "-e", "frame.time_epoch"], capture_output=True, text=True, timeout=300)
        assert r.returncode in (0, 2), r.stderr
        return [(int(a), "%.6f" % float(b)) for a, b in
                (line.split("\t") for line in r.stdout.splitlines())], r

    on_damaged, r = theirs(path)
    numbered = {n for n, _t in ours}
    assert [x for x in on_damaged if x[0] in numbered] == ours[:len(
        [x for x in on_damaged if x[0] in numbered])]
    if any(not d.numbered for d in src.damage):
        assert r.returncode == 2 and "damaged or corrupt" in r.stderr
    data = open(path, "rb").read()
    cut = bytearray()
    last = 0
    for d in src.damage:
        if not d.numbered:
            cut += data[last:d.offset]
            last = d.offset + d.length
    cut += data[last:]
    cut_path = path.with_suffix(".cut" + path.suffix)
    cut_path.write_bytes(bytes(cut))
    on_cut, r = theirs(cut_path)
    assert [x for x in on_cut if x[0] in numbered] == ours
    skipped = sum(d.frames for d in src.damage if d.numbered)
    assert len(on_cut) == len(ours) + skipped


DAMAGES = ["insert", "overwrite", "zeros", "header", "two"]


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_frame_numbers_agree_with_tshark(tmp_path, damage, fmt):
    orig = REKEY.read_bytes()
    if fmt == "pcapng":
        orig = to_pcapng(orig)
        starts = [o for o, _l in epb_offsets(orig)]
    else:
        starts = [o for o, _t, _c in pcap_records(orig)]
    a, b = starts[50], starts[120]
    if damage == "insert":
        bad = orig[:a] + garbage(999, 7) + orig[a:]
    elif damage == "overwrite":
        bad = orig[:a + 20] + garbage(600, 8) + orig[a + 620:]
    elif damage == "zeros":
        bad = orig[:a + 20] + bytes(600) + orig[a + 620:]
    elif damage == "header":  # one record header destroyed
        bad = orig[:a] + garbage(16, 9) + orig[a + 16:]
    else:  # two damaged places
        bad = orig[:a] + garbage(300, 10) + orig[a:b] + garbage(50, 11) + orig[b:]
    p = write(tmp_path, "d." + fmt, bad)
    src = open_source(str(p))
    frames = list(src.frames())
    assert src.damage and len(frames) > 150
    _same_numbers_as_tshark(p, src, frames)
    # the analysis (batched walk) and records() see the same damage and the same frames
    rep = run([str(p)]).report
    assert rep.capture.frames == len(frames)
    assert [(d.offset, d.length) for d in rep.capture.damage] == \
        [(d.offset, d.length) for d in src.damage]


# -- timestamps out of range (issue 20 "Crash") ----------------------------------------------


def _epb(iface, ticks, data):
    body = struct.pack("<IIIII", iface, (ticks >> 32) & 0xFFFFFFFF, ticks & 0xFFFFFFFF,
                       len(data), len(data)) + data + b"\0" * (-len(data) & 3)
    return struct.pack("<II", 6, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def _idb(linktype=1, tsresol=None, tsoffset=None):
    opts = b""
    if tsresol is not None:
        opts += struct.pack("<HH", 9, 1) + bytes([tsresol]) + b"\0\0\0"
    if tsoffset is not None:
        opts += struct.pack("<HHq", 14, 8, tsoffset)
    if opts:
        opts += struct.pack("<HH", 0, 0)
    body = struct.pack("<HHI", linktype, 0, 65535) + opts
    return struct.pack("<II", 1, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def _shb():
    body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    return struct.pack("<II", 0x0A0D0D0A, 12 + len(body)) + body + \
        struct.pack("<I", 12 + len(body))


def _lab_packets(n=30):
    src = open_source(str(ESP_LOSS))
    return [(fr[2], fr[4]) for fr in src.frames()][:n]


@pytest.mark.parametrize("case", ["epb64", "tsresol0", "tsresol_bin0", "tsresol_invalid",
                                  "tsresol_bin_invalid", "tsoffset_huge", "tsoffset_negative",
                                  "other_section_idb"])
def test_pcapng_timestamps_out_of_range_are_damaged_records(tmp_path, case):
    pkts = _lab_packets()
    us = [round(ts * 1e6) for ts, _d in pkts]
    if case == "other_section_idb":
        # section 2's header block type is destroyed: its IDB (seconds) is read as a second
        # interface of section 1 and its EPBs (interface 0) under section 1's IDB (ns)
        shb2 = bytearray(_shb())
        shb2[0:4] = b"\x0b\x0d\x0d\x0a"
        data = (_shb() + _idb(tsresol=9) + b"".join(_epb(0, u * 1000, d) for u, (_t, d) in
                                                   zip(us[:10], pkts[:10]))
                + bytes(shb2) + _idb(tsresol=0)
                + b"".join(_epb(0, 1 << 63 | u, d) for u, (_t, d) in zip(us[10:], pkts[10:])))
        bad = set(range(10, 30))
    else:
        bad = {5, 6, 20}
        # the damaged packets are on a second interface: its time resolution (0: seconds,
        # 0x80: 2^-0 seconds, or one out of range), a 64-bit tick count, a huge or negative
        # if_tsoffset
        second = {"tsresol0": _idb(tsresol=0), "tsresol_bin0": _idb(tsresol=0x80),
                  "tsresol_invalid": _idb(tsresol=0x7F),
                  "tsresol_bin_invalid": _idb(tsresol=0xFF),
                  "tsoffset_huge": _idb(tsresol=6, tsoffset=1 << 62),
                  "tsoffset_negative": _idb(tsresol=6, tsoffset=-(1 << 40)),
                  "epb64": _idb(tsresol=6)}[case]
        idbs = _idb(tsresol=6) + second
        blocks = []
        for i, (u, (_t, d)) in enumerate(zip(us, pkts)):
            if i not in bad:
                blocks.append(_epb(0, u, d))
            elif case in ("tsresol0", "tsresol_bin0", "epb64"):
                blocks.append(_epb(1, (1 << 64) - 1 - i, d))
            else:
                blocks.append(_epb(1, u, d))
        data = _shb() + idbs + b"".join(blocks)
    p = write(tmp_path, f"{case}.pcapng", data)
    src = open_source(str(p))
    frames = list(src.frames())
    assert [fr[1] for fr in frames] == [i + 1 for i in range(30) if i not in bad]
    assert all(0 <= fr[2] < TS_LIMIT for fr in frames)
    assert sum(d.frames for d in src.damage) == len(bad)
    assert all(d.numbered for d in src.damage)
    # the whole analysis: no exception, reported, every format renders
    res = run([str(p)])
    rep = res.report
    f = damaged_finding(rep)
    assert f.severity == ("error" if case != "other_section_idb" else "warning")
    assert rep.capture.frames == 30 - len(bad)
    for fmt in ("json", "text", "markdown", "html"):
        render(rep, fmt)
    jsonschema.validate(rep.to_dict(), SCHEMA)
    _same_numbers_as_tshark(p, src, frames)


def test_rfc3339_is_total():
    assert model.rfc3339(0.0) == "1970-01-01T00:00:00.000000Z"
    assert model.rfc3339(1700000000.5) == "2023-11-14T22:13:20.500000Z"
    for bad in (1e20, -1e20, float("inf"), float("-inf"), float("nan"), 2.0 ** 63):
        assert model.rfc3339(bad) is None
    assert model.rfc3339(-86400.0) == "1969-12-31T00:00:00.000000Z"
    assert model.rfc3339(-62135596800.0) == "0001-01-01T00:00:00.000000Z"
    t = model.Time.of(float("inf"), 0.0)
    assert t.utc is None and t.rel is None


def test_pcap_timestamps_cannot_leave_the_range():
    """Classic pcap: 32-bit seconds, a fraction past one second (read as given, as tshark's
    numbers go): always inside what a report can write."""
    recs = [(0xFFFFFFFF, 0xFFFFFFFF), (0, 0xFFFFFFFF), (0xFFFFFFFF, 999999)]
    for nsec in (False, True):
        data = struct.pack("<IHHiIII", 0xA1B23C4D if nsec else 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
        for sec, frac in recs:
            data += struct.pack("<IIII", sec, frac, 4, 4) + b"abcd"
        for ts, *_r in open_capture(io.BytesIO(data)).records():
            assert model.rfc3339(ts) is not None


# -- gzip, standard input, several files -----------------------------------------------------


def test_gzip_and_stdin_report_the_same_damage(tmp_path):
    orig = ESP_LOSS.read_bytes()
    at = pcap_records(orig)[100][0]
    bad = orig[:at] + garbage(1200) + orig[at:]
    plain = write(tmp_path, "bad.pcap", bad)
    gz = write(tmp_path, "bad.pcap.gz", gzip.compress(bad))
    want = [(d.offset, d.length, d.frames_skipped) for d in run([str(plain)]).report.capture.damage]
    got = [(d.offset, d.length, d.frames_skipped) for d in run([str(gz)]).report.capture.damage]
    assert got == want == [(at, 1200, 0)]
    r = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", "-", "--format", "json"],
                       input=gzip.compress(bad), capture_output=True, cwd=REPO, timeout=300)
    doc = json.loads(r.stdout)
    assert [(d["offset"], d["length"]) for d in doc["capture"]["damage"]] == [(at, 1200)]
    assert doc["capture"]["frames"] == len(pcap_records(orig)) and r.returncode == 1


def test_gzip_cut_short_is_damage_at_the_end(tmp_path):
    data = gzip.compress(ESP_LOSS.read_bytes())
    p = write(tmp_path, "cut.pcap.gz", data[:len(data) // 2])
    rep = run([str(p)]).report
    assert rep.capture.damage[-1].trailing and "gzip" in rep.capture.damage[-1].reason
    assert damaged_finding(rep).severity == "warning"


def test_several_files_each_with_its_damage(tmp_path):
    orig = ESP_LOSS.read_bytes()
    recs = pcap_records(orig)
    half = recs[300][0]
    a = orig[:half]
    b = orig[:24] + orig[half:]
    at = recs[100][0]
    a_bad = a[:at] + garbage(500, 12) + a[at:]
    pa, pb = write(tmp_path, "a.pcap", a_bad), write(tmp_path, "b.pcap", b)
    rep = run([str(pa), str(pb)]).report
    assert rep.capture.frames == len(recs)
    assert [(d.file, d.offset, d.length) for d in rep.capture.damage] == [(str(pa), at, 500)]
    assert "of 2 files" not in damaged_finding(rep).title


# -- the validator's contract (dissect.vpn.chain) ---------------------------------------------


def test_find_contract_on_a_real_capture():
    data = REKEY.read_bytes()
    starts = [o for o, _t, _c in pcap_records(data)]
    rules = open_capture(io.BytesIO(data)).chain_rules()
    # from any offset, the next record start (every record begins a valid chain)
    for p in (24, 25, starts[7] - 1, starts[7], starts[7] + 1, starts[100] + 3):
        found, resume = chain.find(rules, data, p, len(data), True)
        assert found == resume == min(s for s in starts if s >= p)
    # without the end of the data: undecided near the end, never a wrong answer
    cut = starts[10] + 20
    found, resume = chain.find(rules, data, starts[7] + 1, cut, False)
    assert found is None and starts[7] < resume <= starts[8]
    found, _r = chain.find(rules, data, starts[7] + 1, starts[12] + 40, False)
    assert found == starts[8]
    # at the end of the data: a shorter chain counts
    found, _r = chain.find(rules, data, starts[-2] + 1, len(data), True)
    assert found == starts[-1]
    found, resume = chain.find(rules, data, starts[-1] + 1, len(data), True)
    assert found is None and resume == len(data)


def test_find_on_pcapng_framing_only_and_with_interfaces():
    data = to_pcapng(REKEY.read_bytes())
    blocks = [o for o, _l in epb_offsets(data)]
    rd = open_capture(io.BytesIO(data))
    list(rd.records())
    for rules in (rd.chain_rules(), chain.PcapngRules("<")):
        found, _r = chain.find(rules, data, blocks[20] + 1, len(data), True)
        assert found == blocks[21]


def test_resync_reads_on_from_a_stream():
    data = REKEY.read_bytes()
    starts = [o for o, _t, _c in pcap_records(data)]
    rules = open_capture(io.BytesIO(data)).chain_rules()
    junk = garbage(5000, 13)
    stream = io.BytesIO(junk[100:] + data[starts[30]:])
    skipped, rest, eof = chain.resync(rules, junk[:100], stream.read)
    assert (skipped, eof) == (5000, False) and rest.startswith(data[starts[30]:starts[31]])
    skipped, rest, eof = chain.resync(rules, junk[:100], io.BytesIO(junk[100:]).read)
    assert (skipped, rest, eof) == (5000, b"", True)


def test_nonpacket_records_of_damage_in_records():
    """records() yields the numbered damaged records as NONPACKET, so that any consumer counting
    records keeps Wireshark's numbers."""
    orig = HEALTHY.read_bytes()
    at = pcap_records(orig)[3][0]
    bad = orig[:at] + bytes(16 * 5) + orig[at:]
    recs = list(open_capture(io.BytesIO(bad)).records())
    assert [r[1] for r in recs[3:8]] == [NONPACKET] * 5 and len(recs) == 16 + 5


def test_unknown_blocks_are_skipped_when_a_block_follows(tmp_path):
    """Wireshark skips blocks of types it does not know; so does the reader, when a block (or the
    end of the data) follows one - a misread length in damage can look like such a block."""
    pkts = _lab_packets(6)
    unknown = struct.pack("<II", 0x12345, 24) + b"vendor!!" + b"\0" * 4 + struct.pack("<I", 24)
    data = _shb() + _idb(tsresol=6) + _epb(0, round(pkts[0][0] * 1e6), pkts[0][1]) + unknown \
        + b"".join(_epb(0, round(t * 1e6), d) for t, d in pkts[1:]) + unknown
    p = write(tmp_path, "unknown.pcapng", data)
    for walk in ("records", "batch"):
        src = open_source(str(p))
        if walk == "records":
            frames = [f[1] for f in src.frames()]
        else:
            from pcapvpn.decode import Decoder, NullSink

            Decoder(NullSink()).run_source(src)
            frames = list(range(1, src.frame_count + 1))
        assert frames == [1, 2, 3, 4, 5, 6] and src.damage == [], walk
    assert [int(r) for r in subprocess.run(
        [tshark_path(), "-r", str(p), "-T", "fields", "-e", "frame.number"],
        capture_output=True, text=True).stdout.split()] == [1, 2, 3, 4, 5, 6]


def test_little_coverage_makes_the_verdict_unknown(tmp_path):
    """The verdict's rule (issue 13): a damaged capture whose readable part spans less than half
    of a tunnel's time is unknown for it; the tunnel's coverage and the capture's say why."""
    orig = REKEY.read_bytes()
    recs = pcap_records(orig)
    t0, t1 = recs[0][1], recs[-1][1]
    # overwrite every record from 20 % to 75 % of the capture's time with garbage
    a = next(o for o, t, _c in recs if t >= t0 + 0.20 * (t1 - t0))
    b = next(o for o, t, _c in recs if t >= t0 + 0.75 * (t1 - t0))
    bad = orig[:a] + garbage(b - a, 21) + orig[b:]
    rep = run([str(write(tmp_path, "holed.pcap", bad))]).report
    (t,) = rep.tunnels
    assert t["coverage"]["share"] < 0.5
    assert rep.capture.coverage["share"] < 0.5
    assert t["verdict"] == "unknown"
    assert any("the capture is damaged" in n for n in t["not_seen"])
    # the same damage over a tenth of the time leaves the verdict to the evidence
    c = next(o for o, t, _c in recs if t >= t0 + 0.45 * (t1 - t0))
    d = next(o for o, t, _c in recs if t >= t0 + 0.50 * (t1 - t0))
    small = orig[:c] + garbage(d - c, 22) + orig[d:]
    rep2 = run([str(write(tmp_path, "small.pcap", small))]).report
    (t2,) = rep2.tunnels
    assert t2["coverage"]["share"] > 0.8 and t2["verdict"] != "unknown"
