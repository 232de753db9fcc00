"""pcapvpn.sources: opening files, gzip, stdin, frame numbering, merging; corpus frame counts."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from dissect.vpn.capture import PcapngWriter, PcapWriter
from pcapvpn import sources
from pcapvpn.sources import SourceError, merge_frames, open_source, open_sources

REPO = Path(__file__).parents[2]
CORPUS = REPO / ".." / "shared" / "corpus"
TSHARK = shutil.which("tshark")
CAPINFOS = shutil.which("capinfos")
PY = sys.executable

P = [bytes([i]) * (40 + i) for i in range(10)]


def write_pcap(path, items, linktype=1, nanosecond=False):
    with open(path, "wb") as f:
        w = PcapWriter(f, linktype, nanosecond=nanosecond)
        for ts, data in items:
            w.write_packet(ts, data)
    return path


def pcap_bytes(items, linktype=1):
    f = io.BytesIO()
    w = PcapWriter(f, linktype)
    for ts, data in items:
        w.write_packet(ts, data)
    return f.getvalue()


def blk(btype, body):
    body += b"\0" * (-len(body) & 3)
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def multi_section_pcapng():
    """Two sections (LE via the writer, then a second writer section) plus a custom block."""
    f = io.BytesIO()
    w = PcapngWriter(f)
    a = w.add_interface(1, "eth0")
    w.write_packet(a, 10.0, P[0])
    f.write(blk(0xBAD, struct.pack("<I", 32473) + b"a custom block Wireshark numbers"))
    w.write_packet(a, 11.0, P[1])
    w.write_stats(a, 12.0, ifrecv=5, ifdrop=2)
    w2 = PcapngWriter(f)  # a second SHB: new section, interfaces start again
    b = w2.add_interface(101, "tun0", tsresol=6)
    w2.write_packet(b, 12.5, P[2])
    return f.getvalue()


def test_plain_pcap_frames_and_counters(tmp_path):
    path = write_pcap(tmp_path / "a.pcap", [(5.0, P[0]), (4.0, P[1]), (6.5, P[2])])
    with open_source(str(path), index=3) as src:
        assert (src.name, src.index, src.format, src.compressed) == (str(path), 3, "pcap", False)
        frames = list(src.frames())
        assert frames == [
            (3, 1, 5.0, 1, P[0], 40, 24),
            (3, 2, 4.0, 1, P[1], 41, 24 + 16 + 40),
            (3, 3, 6.5, 1, P[2], 42, 24 + 16 + 40 + 16 + 41),
        ]
        assert (src.frame_count, src.byte_count, src.first_ts, src.last_ts) == (3, 123, 4.0, 6.5)
        assert src.out_of_order == 1
        assert src.linktypes == {1: 3}
        assert src.warnings == [] and src.isb == {}
        assert src.interfaces[0].linktype == 1
        with pytest.raises(RuntimeError):
            src.frames()


def test_pcapng_numbering_over_sections(tmp_path):
    path = tmp_path / "multi.pcapng"
    path.write_bytes(multi_section_pcapng())
    src = open_source(str(path))
    frames = list(src.frames())
    # the custom block uses up number 2, as in Wireshark, but is not a frame we hand out
    assert [(f[1], f[2], f[3], f[4]) for f in frames] == [
        (1, 10.0, 1, P[0]), (3, 11.0, 1, P[1]), (4, 12.5, 101, P[2])]
    assert src.format == "pcapng"
    assert [(i.linktype, i.name) for i in src.interfaces] == [(1, "eth0"), (101, "tun0")]
    assert src.isb == {0: {"ifrecv": 5, "ifdrop": 2}}
    assert src.linktypes == {1: 2, 101: 1} and src.frame_count == 3
    if TSHARK:
        out = subprocess.run([TSHARK, "-r", str(path), "-T", "fields", "-e", "frame.number",
                              "-e", "frame.len"], capture_output=True, text=True).stdout
        shown = [line.split("\t") for line in out.splitlines()]
        packets = [int(n) for n, length in shown if int(length) in (40, 41, 42)]
        assert packets == [f[1] for f in frames]


def test_gzip_file(tmp_path, inflate):
    raw = pcap_bytes([(1.0, P[0]), (2.0, P[1])])
    path = tmp_path / "a.pcap.gz"
    path.write_bytes(gzip.compress(raw))
    with open_source(str(path)) as src:
        assert src.compressed and src.format == "pcap"
        assert [f[4] for f in src.frames()] == [P[0], P[1]]
        assert src.warnings == []


def test_gzip_multi_member_and_zero_padding(tmp_path, inflate):
    raw = pcap_bytes([(float(i), P[i]) for i in range(6)])
    cut = 24 + 16 + 40 + 7
    path = tmp_path / "m.pcap.gz"
    path.write_bytes(gzip.compress(raw[:cut]) + gzip.compress(raw[cut:]) + b"\0" * 16)
    with open_source(str(path)) as src:
        assert [f[4] for f in src.frames()] == P[:6] and src.warnings == []


def test_gzip_cut_short_keeps_what_was_decompressed(tmp_path, inflate):
    raw = pcap_bytes([(float(i), os.urandom(900)) for i in range(50)])
    comp = gzip.compress(raw, compresslevel=1)
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(comp[:len(comp) * 2 // 3])
    src = open_source(str(path))
    frames = list(src.frames())
    assert 10 < len(frames) < 50
    assert frames == [(0, i + 1, float(i), 1, raw[24 + i * 916 + 16:24 + (i + 1) * 916], 900,
                       24 + i * 916) for i in range(len(frames))]
    warnings = src.warnings
    assert warnings[0].startswith(f"{path}: gzip: gzip data ends before") and len(warnings) == 2
    assert warnings[1].startswith(f"{path}: offset ") and "truncated record" in warnings[1]
    assert all("\n" not in w for w in warnings)


def test_gzip_corrupt_data(tmp_path, inflate):
    raw = pcap_bytes([(float(i), bytes(range(256)) * 4) for i in range(30)])
    comp = bytearray(gzip.compress(raw))
    comp[len(comp) // 2] ^= 0xFF
    path = tmp_path / "bad.pcap.gz"
    path.write_bytes(bytes(comp))
    src = open_source(str(path))
    frames = list(src.frames())
    assert len(frames) < 30 and any("gzip" in w for w in src.warnings)


def test_stdin_plain_and_gzip_in_a_subprocess(tmp_path):
    raw = pcap_bytes([(1.5, P[0]), (2.5, P[1]), (3.5, P[2])])
    code = ("import sys; from pcapvpn.sources import open_source\n"
            "s = open_source('-')\n"
            "print(s.name, s.format, s.compressed, [f[1] for f in s.frames()], s.warnings)")
    for data, gz in ((raw, False), (gzip.compress(raw), True)):
        out = subprocess.run([PY, "-c", code], input=data, capture_output=True, check=True,
                             timeout=60).stdout.decode()
        assert out.strip() == f"- pcap {gz} [1, 2, 3] []"
    res = subprocess.run([PY, "-c", code], input=b"not a capture at all", capture_output=True,
                         timeout=60)
    assert res.returncode != 0 and b"SourceError: -: not a pcap or pcapng capture" in res.stderr


def test_stdin_pipe_in_process(monkeypatch):
    raw = pcap_bytes([(1.0, P[0]), (2.0, P[1])])
    r, w = os.pipe()

    class FakeStdin:
        buffer = os.fdopen(r, "rb")

    os.write(w, gzip.compress(raw))
    os.close(w)
    monkeypatch.setattr(sys, "stdin", FakeStdin)
    src = open_source("-")
    assert src.compressed and [f[4] for f in src.frames()] == [P[0], P[1]]
    FakeStdin.buffer.close()


@pytest.mark.parametrize("make, words", [
    (lambda d: d / "missing.pcap", "no such file or directory"),
    (lambda d: d, "is a directory"),
    (lambda d: (d / "t.txt").write_text("hello, not a capture") and d / "t.txt",
     "not a pcap or pcapng capture (magic 68656c6c)"),
    (lambda d: (d / "e.pcap").write_bytes(b"") or d / "e.pcap", "empty file"),
    (lambda d: (d / "t.gz").write_bytes(gzip.compress(b"some text here")) and d / "t.gz",
     "gzip-compressed, but inside: not a pcap or pcapng capture"),
    (lambda d: (d / "g.gz").write_bytes(b"\x1f\x8b\x08\x00garbagegarbage") and d / "g.gz",
     "gzip data corrupt"),
    (lambda d: (d / "m.pcap").write_bytes(struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 96, 1))
     and d / "m.pcap", "modified"),
])
def test_unusable_inputs_raise_one_line_source_error(tmp_path, inflate, make, words):
    path = make(tmp_path)
    with pytest.raises(SourceError) as ei:
        open_source(str(path))
    msg = str(ei.value)
    assert msg.startswith(f"{path}: ") and words in msg and "\n" not in msg
    assert ei.value.path == str(path)


def test_open_sources_closes_opened_ones_on_error(tmp_path):
    good = write_pcap(tmp_path / "g.pcap", [(1.0, P[0])])
    opened = []
    real = sources.open_source

    def spy(path, index=0):
        s = real(path, index)
        opened.append(s)
        return s

    sources.open_source = spy
    try:
        with pytest.raises(SourceError):
            open_sources([str(good), str(tmp_path / "nope.pcap")])
    finally:
        sources.open_source = real
    assert opened and all(s._raw is None for s in opened)


def test_merge_two_files_by_time_keeps_per_file_numbers(tmp_path):
    a = write_pcap(tmp_path / "a.pcap", [(1.0, P[0]), (3.0, P[1]), (5.0, P[2]), (5.0, P[3])])
    b = write_pcap(tmp_path / "b.pcapng", [])  # replaced below by a pcapng file
    with open(b, "wb") as f:
        w = PcapngWriter(f)
        i = w.add_interface(101)
        for ts, d in ((2.0, P[4]), (3.0, P[5]), (5.0, P[6]), (7.0, P[7])):
            w.write_packet(i, ts, d)
    srcs = open_sources([str(a), str(b)])
    merged = [(f[0], f[1], f[2]) for f in merge_frames(srcs)]
    assert merged == [
        (0, 1, 1.0), (1, 1, 2.0), (0, 2, 3.0), (1, 2, 3.0),  # tie: file 0 first
        (0, 3, 5.0), (0, 4, 5.0), (1, 3, 5.0), (1, 4, 7.0)]
    assert [s.frame_count for s in srcs] == [4, 4]
    assert all(s._raw is None for s in srcs)  # closed once exhausted


def test_merge_single_source_is_its_frames(tmp_path):
    a = write_pcap(tmp_path / "a.pcap", [(3.0, P[0]), (1.0, P[1])])
    src = open_source(str(a))
    frames = merge_frames([src])
    assert type(frames).__name__ == "generator"
    assert [f[1:3] for f in frames] == [(1, 3.0), (2, 1.0)]  # file order, untouched


def test_truncated_file_warning_names_file_and_offset(tmp_path):
    raw = pcap_bytes([(1.0, P[0]), (2.0, P[1])])
    path = tmp_path / "t.pcap"
    path.write_bytes(raw[:-5])
    src = open_source(str(path))
    assert [f[1] for f in src.frames()] == [1]
    assert src.warnings == [f"{path}: offset 80: truncated record at end of file "
                            f"(36 of 41 captured bytes)"]


def test_close_is_idempotent_and_context_manager(tmp_path):
    a = write_pcap(tmp_path / "a.pcap", [(1.0, P[0])])
    with open_source(str(a)) as src:
        raw = src._raw
    assert raw.closed
    src.close()


# --- corpus: frame counts equal Wireshark's -------------------------------------------------


def corpus_files():
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))


@pytest.fixture(scope="module")
def capinfos_counts():
    """{path: (count, cut_short)} from one capinfos run over the whole corpus."""
    if not CORPUS.is_dir():
        msg = f"public corpus not found at {CORPUS.resolve()}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    if not CAPINFOS:
        pytest.skip("capinfos (Wireshark) not installed: no oracle for frame counts")
    files = corpus_files()
    res = subprocess.run([CAPINFOS, "-c", "-T", "-r", "-B", *map(str, files)],
                         capture_output=True, text=True, timeout=120)
    counts = {}
    for line in res.stdout.splitlines():
        name, _, n = line.rpartition("\t")
        counts[name] = (int(n), f'"{name}" appears to have been cut short' in res.stderr)
    return counts


def test_corpus_present_or_skipped():
    if not CORPUS.is_dir():
        msg = f"public corpus not found at {CORPUS.resolve()}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    assert len(corpus_files()) >= 100


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_frame_count_matches_wireshark(path, capinfos_counts):
    expected, cut_short = capinfos_counts[str(path)]
    with open_source(str(path)) as src:
        frames = list(src.frames())
    if cut_short:
        # Wireshark read up to the cut: compare the frames both read
        n = min(expected, len(frames))
        assert n == expected and src.warnings
    else:
        assert len(frames) == expected, src.warnings
        assert src.warnings == []
    assert [f[1] for f in frames] == list(range(1, len(frames) + 1))
