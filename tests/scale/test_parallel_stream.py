"""``analyze --jobs N`` on a gzip file and on standard input (pcapvpn.parallel.stream, issue 19):
the parent reads the stream, cuts it at record boundaries and hands the slices to the workers as
bytes; the report is the single pass's, byte for byte.

Every capture of ``captures/`` and ``../shared/corpus`` is compressed with gzip here and read as a
file, as gzip on standard input and as plain standard input, cut inside each boundary class it
holds (mid-SA, mid-exchange, mid-fragment-set, inside a TCP stream) and at a few more record
boundaries, so that every capture is really split; the slices are read in this process (each
part pickled as a worker's).  Then the odd streams (a damaged gzip tail, a stream that ends inside
a record, a cut inside a record, a pcapng section or interface block later in the stream, a failed
worker), the bound on slices in flight, and real worker processes through the API and the CLI.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, corpus_captures, corpus_dir, project_captures, rel
from pcapvpn import parallel
from pcapvpn.analysis import Options, run
from pcapvpn.parallel import stream as pstream
from pcapvpn.sources import open_source
from test_parallel import _DAMAGE_BASE, _damaged, _random_pool, _records, _reports, boundary_cuts

#: why the parent may read the rest of a stream itself (still the single pass's report)
_TAILS = ("damage", "a section or interface block", "a block that takes the time",
          "interface notes", "read to ", "slice ", "not in time order")


def _captures() -> list[Path]:
    return project_captures() + corpus_captures()


class _Stdin:
    """Standard input holding ``data`` (what ``open_source('-')`` reads: ``sys.stdin.buffer``):
    a real pipe, as ``cat FILE |`` gives it (plain standard input on a pipe is spliced into the
    slices' files), fed by ``cat`` (a process of its own: a worker forked by this one must not
    hold the pipe's write end, or the reader would never see its end), or (``pipe=False``) a
    stream that is no file at all."""

    def __init__(self, data: bytes, pipe: bool = True):
        self._proc = None
        if not pipe:
            self.buffer = io.BytesIO(data)
            return
        import tempfile

        fd, self._tmp = tempfile.mkstemp(prefix="pcapvpn-test-stdin-")
        with open(fd, "wb") as f:
            f.write(data)
        self._proc = subprocess.Popen(["cat", self._tmp], stdout=subprocess.PIPE)
        self.buffer = self._proc.stdout

    def close(self) -> None:
        """What a worker process does first (multiprocessing closes standard input)."""

    def done(self) -> None:
        self.buffer.close()
        if self._proc is not None:
            self._proc.wait()
            os.unlink(self._tmp)
            self._proc = None


def _run_on(monkeypatch, data: bytes | None, path: str, **kw):
    stdin = None
    if data is not None:
        stdin = _Stdin(data)
        monkeypatch.setattr(sys, "stdin", stdin)
    try:
        return run([path], Options(**kw))
    finally:
        if stdin is not None:
            stdin.done()


def _cuts(path: str) -> list[int]:
    """The boundary-class cuts and cuts at a quarter, half and three quarters of the records."""
    recs = _records(path)
    cuts = set(boundary_cuts(path).values())
    if len(recs) >= 4:
        cuts.update(recs[len(recs) * k // 4][1] for k in (1, 2, 3))
    elif len(recs) >= 2:
        cuts.add(recs[1][1])
    return sorted(cuts)


def _same(monkeypatch, path: str, data: bytes | None, cuts, what: str, jobs: int = 2, **kw):
    """The stream ``path`` (``-``: ``data`` on standard input) cut at ``cuts`` and in one pass."""
    one = _reports(_run_on(monkeypatch, data, path, **kw))
    result = _run_on(monkeypatch, data, path, jobs=jobs, slice_at=cuts, workers="serial", **kw)
    got = _reports(result)
    assert got[0] == one[0], f"{what}: JSON differs when cut at {cuts}"
    assert got[1] == one[1], f"{what}: text differs when cut at {cuts}"
    return result


def _split(result, cuts, what: str) -> None:
    """Every slice replayed, or the rest read by the parent for an allowed reason."""
    par = result.parallel
    assert par is not None, f"{what}: not sliced"
    if "tail" in par:
        assert par["tail"]["why"].startswith(_TAILS) and "bad" not in par["tail"], (what, par)
    else:
        assert par["slices"] == len(cuts) + 1, (what, par)


def _count_spliced(monkeypatch) -> list:
    """A list that :meth:`pstream._Cutter._next_spliced` appends to from now on: True for a
    slice spliced from the pipe into its file, False where it gave up."""
    spliced: list = []
    real = pstream._Cutter._next_spliced

    def counted(self):
        sl = real(self)
        spliced.append(sl is not None)
        return sl

    monkeypatch.setattr(pstream._Cutter, "_next_spliced", counted)
    return spliced


@pytest.mark.parametrize("path", _captures(), ids=rel)
def test_every_capture_as_gzip_and_on_stdin(path, tmp_path, monkeypatch):
    p = str(path)
    cuts = _cuts(p)
    if path.suffix == ".gz":
        raw = gzip.decompress(path.read_bytes())
    else:
        raw = path.read_bytes()
    gz = tmp_path / (path.name + ".gz")
    gz.write_bytes(gzip.compress(raw, 1))
    spliced = _count_spliced(monkeypatch)  # plain standard input is a pipe: spliced slices
    for name, src, data in (("gzip file", str(gz), None),
                            ("gzip on stdin", "-", gzip.compress(raw, 1)),
                            ("stdin", "-", raw)):
        what = f"{rel(path)} as {name}"
        result = _same(monkeypatch, src, data, cuts, what)
        if name == "stdin" and cuts:
            assert spliced and all(spliced), (what, spliced)
        if cuts and result.report.capture.out_of_order:
            # not in time order: a gzip file is analysed again in time order in one pass; on
            # standard input a slice that starts earlier than the slices before it end makes
            # the parent read the rest (CAPTURE_OUT_OF_ORDER)
            assert "not in time order" in str(result.parallel) or \
                result.parallel == {"slices": len(cuts) + 1}, (what, result.parallel)
        elif cuts:  # every slice replayed: none of these captures needs the parent's own reading
            assert result.parallel == {"slices": len(cuts) + 1}, (what, result.parallel)


@settings(max_examples=30, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_cuts_on_gzip_stdin(monkeypatch, data):
    """Random record boundaries of random captures, gzip on standard input."""
    corpus_dir()
    path = data.draw(st.sampled_from(_random_pool()), label="capture")
    recs = _records(path)
    k = data.draw(st.integers(1, min(5, len(recs) - 1)), label="cuts")
    picks = data.draw(st.lists(st.integers(1, len(recs) - 1), min_size=k, max_size=k,
                               unique=True), label="records")
    cuts = sorted(recs[i][1] for i in picks)
    result = _same(monkeypatch, "-", gzip.compress(Path(path).read_bytes(), 1), cuts,
                   f"{path} at records {sorted(picks)}")
    _split(result, cuts, path)


@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["garbage", "zeros", "insert"]), where=st.floats(0.05, 0.95),
       length=st.integers(1, 3000), cuts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4))
def test_damage_and_random_cuts_on_a_stream(tmp_path, monkeypatch, kind, where, length, cuts):
    """Damage anywhere and cuts anywhere, near the damage too: where a slice cannot be replayed
    the parent reads the rest itself, and the report is the single pass's."""
    p = _damaged(tmp_path, kind, where, length)
    recs = _records(p)
    offs = sorted({recs[min(len(recs) - 1, max(1, int(c * len(recs))))][1] for c in cuts})
    result = _same(monkeypatch, "-", gzip.compress(Path(p).read_bytes(), 1), offs,
                   f"{kind} {length} bytes at {where:.2f}")
    _split(result, offs, "damaged")


# -- odd streams -----------------------------------------------------------------------------------


def _gz_of(tmp_path, data: bytes, name: str) -> str:
    out = tmp_path / name
    out.write_bytes(gzip.compress(data, 1))
    return str(out)


@pytest.mark.parametrize("where", [0.3, 0.6, 0.97])
def test_a_damaged_gzip_tail(tmp_path, monkeypatch, inflate, where):
    """A gzip file cut short (still being written when copied) and one corrupt after a point:
    every byte decompressed before it is analysed, the gzip damage reported as in one pass."""
    p = str(_DAMAGE_BASE)
    recs = _records(p)
    cuts = [recs[len(recs) // 5][1], recs[len(recs) // 2][1]]
    whole = gzip.compress(Path(p).read_bytes(), 1)
    short = tmp_path / "short.pcap.gz"
    short.write_bytes(whole[:int(len(whole) * where)])
    corrupt = bytearray(whole)
    at = int(len(whole) * where)
    corrupt[at:at + 64] = bytes(64)
    bad = tmp_path / "corrupt.pcap.gz"
    bad.write_bytes(bytes(corrupt))
    for f in (short, bad):
        result = _same(monkeypatch, str(f), None, cuts, f.name)
        assert "gzip" in _reports(result)[1]
        result = _same(monkeypatch, "-", f.read_bytes(), cuts, f"{f.name} on stdin")


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_a_stream_that_ends_inside_a_record(tmp_path, monkeypatch, inflate, fmt):
    src = _DAMAGE_BASE
    if fmt == "pcapng":
        src = tmp_path / "base.pcapng"
        subprocess.run(["editcap", "-F", "pcapng", str(_DAMAGE_BASE), str(src)], check=True)
    data = Path(src).read_bytes()
    recs = _records(str(src))
    cut_short = data[:recs[-3][1] + 21]  # inside the third record from the end
    cuts = [recs[len(recs) // 3][1], recs[-5][1]]
    gz = _gz_of(tmp_path, cut_short, f"short.{fmt}.gz")
    result = _same(monkeypatch, gz, None, cuts, "a gzip file that ends inside a record")
    _split(result, cuts, "ends inside a record")
    assert "tail" not in result.parallel  # the last slice holds the damage at the end
    _same(monkeypatch, "-", cut_short, cuts, "stdin that ends inside a record")


def test_a_cut_inside_a_record_reads_on_in_the_parent(tmp_path, monkeypatch):
    """A cut that is no record boundary: the slice before it does not end there; the parent
    reads the stream itself from that slice on (it cannot read it again from its start)."""
    p = str(_DAMAGE_BASE)
    recs = _records(p)
    data = Path(p).read_bytes()
    cuts = [recs[len(recs) // 4][1], recs[len(recs) // 2][1] + 7, recs[3 * len(recs) // 4][1]]
    result = _same(monkeypatch, "-", data, cuts, "a cut inside a record")
    tail = result.parallel["tail"]
    assert tail["slice"] == 1 and tail["why"].startswith(("damage", "read to ")), tail
    assert result.parallel["slices"] == 2  # the first slice replayed, then the rest read here


def _times(path) -> list:
    with open_source(str(path)) as src:
        return [(f[2],) for f in src.frames()]


def test_pcapng_blocks_later_in_the_stream_are_carried(tmp_path, monkeypatch):
    """Two pcapng sections one after the other (a second section header and its interface
    blocks in the middle of the stream): the slice holding them is read by the parent with the
    rest, its sections and interfaces carried into the source; frame numbers, interfaces and
    the report as in one pass."""
    a = tmp_path / "a.pcapng"
    b = tmp_path / "b.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(_DAMAGE_BASE), str(a)], check=True)
    other = REPO / "captures" / "lab" / "ikev2_rekey" / "ikev2_rekey.pcap"
    subprocess.run(["editcap", "-F", "pcapng", str(other), str(b)], check=True)
    # the second section later than the first (else the stream is not in time order and the
    # gzip file is analysed again in time order in one pass: CAPTURE_OUT_OF_ORDER)
    shift = max(r[0] for r in _times(a)) - min(r[0] for r in _times(b)) + 1.0
    if shift > 0:
        subprocess.run(["editcap", "-t", f"{shift:.6f}", str(b), str(tmp_path / "b2.pcapng")],
                       check=True)
        b = tmp_path / "b2.pcapng"
    data = a.read_bytes() + b.read_bytes()
    both = tmp_path / "both.pcapng"
    both.write_bytes(data)
    recs = _records(str(both))
    n_a = len(_records(str(a)))
    cuts = [recs[n_a // 2][1], recs[n_a - 2][1], recs[n_a + 3][1]]
    gz = _gz_of(tmp_path, data, "both.pcapng.gz")
    result = _same(monkeypatch, gz, None, cuts, "two sections")
    tail = result.parallel["tail"]
    assert tail["why"] == "a section or interface block inside the slice", tail
    assert tail["slice"] == 2  # the slices before it replayed, then the rest read here
    src = result.sources[0]
    assert len(src.reader.sections) == 2 and len(src.interfaces) == 2


def test_a_failing_worker_reads_on_in_the_parent(monkeypatch):
    p = str(_DAMAGE_BASE)
    recs = _records(p)
    data = gzip.compress(Path(p).read_bytes(), 1)
    calls = []

    def broken(sl):
        calls.append(sl.number)
        if sl.number == 2:
            raise MemoryError("no room")
        return real(sl)

    real = pstream.read_slice
    monkeypatch.setattr(pstream, "read_slice", broken)
    cuts = [recs[len(recs) * k // 4][1] for k in (1, 2, 3)]
    result = _same(monkeypatch, "-", data, cuts, "a failed worker")
    assert result.parallel["tail"] == {"slice": 1, "why": "a worker failed (MemoryError: no room)"}


@pytest.mark.parametrize("gz", [False, True])
def test_frames_fetched_again_from_spooled_stdin(monkeypatch, gz):
    """--export-evidence keeps standard input (spool_stdin) and reads frames again by number:
    the stream's source finds the same frames as the single pass's (its checkpoints made global
    across the slices)."""
    p = str(_DAMAGE_BASE)
    recs = _records(p)
    data = Path(p).read_bytes()
    data = gzip.compress(data, 1) if gz else data
    cuts = [recs[len(recs) // 3][1], recs[2 * len(recs) // 3][1]]
    want = [1, 2, len(recs) // 3, len(recs) // 3 + 1, 2 * len(recs) // 3 + 1, len(recs)]
    got = []
    for kw in ({}, {"jobs": 2, "slice_at": cuts, "workers": "serial"}):
        result = _run_on(monkeypatch, data, "-", spool_stdin=True, **kw)
        src = result.sources[0]
        try:
            got.append([f[:4] + (bytes(f[4]),) for f in src.fetch(want)])
        finally:
            src.discard_spool()
    assert result.parallel == {"slices": 3}
    assert got[0] == got[1] and len(got[0]) == len(want)


@pytest.mark.parametrize("kw", [{"stop_after": "decode"}, {"stop_after": "dissect"},
                                {"batch": False}], ids=["decode", "dissect", "no-batch"])
def test_stages_and_unbatched_streams(monkeypatch, kw):
    """The benchmark stages and the frame-by-frame walk (no ESP batches, no plaintext lane) on
    a stream cut in slices: the single pass's report."""
    p = str(_DAMAGE_BASE)
    recs = _records(p)
    cuts = [recs[len(recs) // 3][1], recs[2 * len(recs) // 3][1]]
    replayed = []
    real = pstream._StreamReplay._replay

    def counting(self, part, *a):
        replayed.append(part.number)
        return real(self, part, *a)

    monkeypatch.setattr(pstream._StreamReplay, "_replay", counting)
    _same(monkeypatch, "-", gzip.compress(Path(p).read_bytes(), 1), cuts, str(kw), **kw)
    assert replayed == [0, 1, 2]  # (the stages' results carry no Result.parallel)


def test_shared_memory_full_sends_the_bytes(monkeypatch, tmp_path):
    """No room in /dev/shm (or none): the slices travel through the pool as bytes, the same."""
    p = str(_DAMAGE_BASE)
    recs = _records(p)
    monkeypatch.setattr(pstream, "SPOOL_DIR", str(tmp_path / "none"))
    cuts = [recs[len(recs) // 2][1]]
    result = _same(monkeypatch, "-", gzip.compress(Path(p).read_bytes(), 1), cuts, "no shm")
    assert result.parallel == {"slices": 2}


def test_slices_in_flight_are_bounded(monkeypatch):
    """At most AHEAD slices per worker are handed out ahead of the replay (memory: never the
    whole stream), and the stream is read as the replay goes."""
    p = str(_DAMAGE_BASE)
    recs = _records(p)
    data = Path(p).read_bytes()
    cuts = [recs[len(recs) * k // 20][1] for k in range(1, 20)]
    live = {"now": 0, "most": 0}
    real_submit = pstream._StreamReplay._submit
    real_merge = pstream._StreamReplay._merge

    def submit(self, sl):
        live["now"] += 1
        live["most"] = max(live["most"], live["now"])
        return real_submit(self, sl)

    def merge(self, part, stats):
        live["now"] -= 1
        return real_merge(self, part, stats)

    monkeypatch.setattr(pstream._StreamReplay, "_submit", submit)
    monkeypatch.setattr(pstream._StreamReplay, "_merge", merge)
    result = _same(monkeypatch, "-", data, cuts, "twenty slices", jobs=3)
    assert result.parallel == {"slices": 20}
    # in flight: AHEAD per worker (2 workers), plus the slice replayed and the one after it
    assert live["most"] <= parallel.AHEAD * 2 + 2, live


def test_a_short_stream_is_read_by_the_parent(tmp_path, monkeypatch):
    """Without given cuts a stream under MIN_BYTES is read by this process alone (no worker
    started): one pass, as before."""
    p = str(_DAMAGE_BASE)
    data = Path(p).read_bytes()
    result = _run_on(monkeypatch, data, "-", jobs=2)
    assert result.parallel["tail"]["slice"] == 0
    assert result.parallel["tail"]["why"].startswith("a stream of under")
    assert parallel.jobs_for(["-"], Options(jobs=1)) == 1
    assert parallel.jobs_for(["-"], Options(jobs=2, keys=object())) == 1


# -- real worker processes -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_gzip(tmp_path_factory) -> Path:
    """The generated ESP/IKE mix above ``parallel.MIN_BYTES`` (bench/gen.py), gzip-compressed."""
    d = tmp_path_factory.mktemp("jobs-stream")
    out = d / "mix.pcap"
    subprocess.run([sys.executable, str(REPO / "bench" / "gen.py"), "--packets", "60000",
                    "--out", str(out)], check=True, cwd=REPO)
    assert out.stat().st_size >= parallel.MIN_BYTES
    gz = d / "mix.pcap.gz"
    gz.write_bytes(gzip.compress(out.read_bytes(), 1))
    out.unlink()
    return gz


def test_plain_stdin_on_a_pipe_is_cut(big_gzip, monkeypatch):
    """Plain standard input on a pipe, cuts switched on (``PLAIN_CUT``): spliced into the
    slices' files by the reading thread and cut at record boundaries found on a window after
    each nominal cut, in worker processes; the same report.  Switched off (the default: on 2
    CPUs it costs more than it gains, measured) or not on a pipe (nothing to splice from): the
    parent reads it alone."""
    data = gzip.decompress(big_gzip.read_bytes())
    one = _reports(_run_on(monkeypatch, data, "-"))
    result = _run_on(monkeypatch, data, "-", jobs=2)
    assert result.parallel["tail"] == {"slice": 0, "why": pstream.PLAIN_WHY}
    assert _reports(result) == one
    monkeypatch.setattr(pstream, "PLAIN_CUT", True)
    spliced = _count_spliced(monkeypatch)
    result = _run_on(monkeypatch, data, "-", jobs=2)
    assert spliced and all(spliced), spliced
    assert "tail" not in result.parallel, result.parallel
    assert result.parallel["slices"] >= len(data) // (pstream.STREAM_SLICE +
                                                      parallel.CUT_WINDOW_MAX)
    assert result.parallel["slices"] >= 2
    assert _reports(result) == one
    monkeypatch.setattr(sys, "stdin", _Stdin(data, pipe=False))
    result = run(["-"], Options(jobs=2))
    assert result.parallel["tail"] == {"slice": 0, "why": pstream.PLAIN_WHY}
    assert _reports(result) == one


def test_spliced_slices_when_shared_memory_fills(big_gzip, monkeypatch):
    """Shared memory full while a slice is spliced: the slice's bytes are read back and the
    rest of the stream goes through memory (and the pool), the same report."""
    data = gzip.decompress(big_gzip.read_bytes())
    one = _reports(_run_on(monkeypatch, data, "-"))
    real = pstream._Cutter._move
    calls = {"n": 0}

    def move(self, f, n):
        calls["n"] += 1
        if calls["n"] == 3:  # the second slice
            raise OSError(28, "No space left on device")
        return real(self, f, n)

    monkeypatch.setattr(pstream._Cutter, "_move", move)
    monkeypatch.setattr(pstream, "PLAIN_CUT", True)
    result = _run_on(monkeypatch, data, "-", jobs=2, workers="serial")
    assert "tail" not in result.parallel and result.parallel["slices"] >= 2, result.parallel
    assert _reports(result) == one and calls["n"] == 3


def test_worker_processes_on_a_gzip_file(big_gzip):
    p = str(big_gzip)
    result = run([p], Options(jobs=2))
    size = len(gzip.decompress(big_gzip.read_bytes()))
    assert "tail" not in result.parallel, result.parallel
    assert result.parallel["slices"] >= size // (pstream.STREAM_SLICE + parallel.CUT_WINDOW_MAX)
    assert result.parallel["slices"] >= 2
    assert _reports(result) == _reports(run([p], Options(jobs=1)))


def test_cli_gzip_on_stdin_jobs_2_same_report(big_gzip, tmp_path):
    outs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"r{jobs}.json"
        with open(big_gzip, "rb") as f:
            res = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", "-", "--format",
                                  "json", "-o", str(out), "--jobs", jobs], stdin=f, cwd=REPO,
                                 capture_output=True, text=True)
        assert res.returncode in (0, 1), res.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_a_named_pipe_is_not_sniffed(tmp_path):
    """A named pipe given as a path: --jobs must not read its first bytes to look for gzip
    (they would be gone); it is read once, as one pass."""
    import os
    import threading

    src = REPO / "captures" / "lab" / "ikev2_rekey" / "ikev2_rekey.pcap"
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            f.write(src.read_bytes())

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    assert not parallel.is_stream([str(fifo)]) and not parallel.eligible([str(fifo)], Options())
    result = run([str(fifo)], Options(jobs=2))
    t.join(timeout=30)
    assert result.parallel is None
    assert result.report.capture.frames == len(_records(str(src)))
