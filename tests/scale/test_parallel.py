"""``analyze --jobs N`` (pcapvpn.parallel, issue 19): a capture cut into slices at record
boundaries, read by workers and replayed in file order, gives the single pass's report byte for
byte.

Every capture of ``captures/`` and ``../shared/corpus`` is cut once inside each boundary class it
holds — inside an ESP SA, between an IKE request and its answer, inside an IP fragment set,
inside a TCP stream — and at random record boundaries chosen by hypothesis; the JSON and text
reports are compared with the single pass's.  These runs read the slices in this process (each
slice's recording pickled and unpickled as a worker's is); the end-to-end tests start real worker
processes through the CLI and the analysis API.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import IN_CI, REPO, corpus_captures, corpus_dir, project_captures, rel
from dissect.vpn import link
from pcapvpn import parallel
from pcapvpn.analysis import Options, run
from pcapvpn.report import render
from pcapvpn.sources import open_source

_FRAG, _TCP, _SA, _EXCHANGE = "mid-fragment-set", "inside a TCP stream", "mid-SA", "mid-exchange"


def _captures() -> list[Path]:
    return project_captures() + corpus_captures()


def _reports(result) -> tuple[str, str]:
    return render(result.report, "json"), render(result.report, "text")


@lru_cache(maxsize=None)
def _one_pass(path: str):
    return _reports(run([path]))


@lru_cache(maxsize=None)
def _records(path: str) -> tuple:
    """``(number, offset, decoded network tuple or None)`` of every frame of ``path``."""
    out = []
    with open_source(path) as src:
        for f in src.frames():
            try:
                net = link.decode_frame(f[3], f[4])
            except Exception:  # noqa: BLE001 - a frame the dissector rejects: no class
                net = None
            out.append((f[1], f[6], net))
    return tuple(out)


def _middle(frames: list, by_number: dict):
    """The record offset of a frame strictly inside ``frames`` (numbers, in order)."""
    inner = [n for n in frames[1:] if n in by_number and n != frames[0]]
    return by_number[inner[len(inner) // 2]] if inner else None


def boundary_cuts(path: str) -> dict:
    """One cut (a record offset) inside each boundary class the capture holds."""
    recs = _records(path)
    by_number = {n: off for n, off, _net in recs}
    cuts: dict = {}
    frags: dict = {}
    tcp: dict = {}
    for n, _off, net in recs:
        if net is None:
            continue
        ipver, src, dst, proto, sport, dport, _l4, _end, frag_off, mf, ident, _h = net
        if frag_off or mf:
            frags.setdefault((ipver, src, dst, ident), []).append(n)
        elif proto == 6 and sport >= 0:
            tcp.setdefault(tuple(sorted(((src, sport), (dst, dport)))), []).append(n)
    for group, name in ((frags, _FRAG), (tcp, _TCP)):
        for frames in group.values():
            if len(frames) >= 2:
                off = _middle(frames, by_number)
                if off is not None:
                    cuts[name] = off
                    break
    report = json.loads(_one_pass(path)[0])
    for e in report["esp_sas"]:
        a, b = e["first_frame"]["frame"], e["last_frame"]["frame"]
        if b - a >= 2:
            cuts[_SA] = by_number[(a + b) // 2]
            break
    for sa in report["ike_sas"]:
        msgs = sa["messages"]
        for req, rsp in zip(msgs, msgs[1:]):
            if rsp.get("response") and not req.get("response"):
                n = rsp["frames"][0]["frame"]
                if n in by_number and n > req["frames"][-1]["frame"]:
                    cuts[_EXCHANGE] = by_number[n]
                    break
        if _EXCHANGE in cuts:
            break
    return cuts


def _sliced(path: str, cuts) -> tuple:
    result = run([path], Options(jobs=2, slice_at=sorted(set(cuts)), workers="serial"))
    return result, _reports(result)


def _sliceable(path: Path) -> bool:
    return parallel.eligible([str(path)], Options(jobs=2))


#: why a slice may not line up with the single pass (then the file is analysed in one pass)
_FALLBACKS = ("damage", "a section or interface block", "a block that takes the time",
              "interface notes", "read to ", "not in time order")


def _check(path: str, cuts, what: str) -> None:
    result, got = _sliced(path, cuts)
    want = _one_pass(path)
    assert got[0] == want[0], f"{rel(Path(path))}: JSON differs when cut {what} at {cuts}"
    assert got[1] == want[1], f"{rel(Path(path))}: text differs when cut {what} at {cuts}"
    par = result.parallel
    assert par is not None, f"{rel(Path(path))}: not sliced"
    if "fallback" in par:
        assert par["fallback"].startswith(_FALLBACKS), par
    else:
        assert par["slices"] == len(set(cuts)) + 1


@pytest.mark.parametrize("path", _captures(), ids=rel)
def test_cut_in_each_boundary_class(path):
    p = str(path)
    if not _sliceable(path):
        result = run([p], Options(jobs=2, slice_at=[0]))
        assert _reports(result) == _one_pass(p)  # gzip: test_parallel_stream.py
        return
    cuts = boundary_cuts(p)
    for what, off in sorted(cuts.items()):
        _check(p, [off], what)
    if len(cuts) > 1:
        _check(p, list(cuts.values()), "in every class at once")


def test_every_boundary_class_is_exercised():
    """The captures hold every class: the test above cuts inside each of them somewhere."""
    corpus_dir()
    seen: set = set()
    for path in _captures():
        if _sliceable(path):
            seen.update(boundary_cuts(str(path)))
        if len(seen) == 4:
            break
    assert seen == {_FRAG, _TCP, _SA, _EXCHANGE}


@lru_cache(maxsize=None)
def _random_pool() -> tuple:
    """Sliceable captures with enough records for random cuts."""
    return tuple(str(p) for p in _captures() if _sliceable(p) and len(_records(str(p))) >= 8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_cuts(data):
    corpus_dir()
    pool = _random_pool()
    path = data.draw(st.sampled_from(pool), label="capture")
    recs = _records(path)
    k = data.draw(st.integers(1, min(4, len(recs) - 1)), label="cuts")
    picks = data.draw(st.lists(st.integers(1, len(recs) - 1), min_size=k, max_size=k,
                               unique=True), label="records")
    _check(path, [recs[i][1] for i in picks], f"at records {sorted(picks)}")


# -- cutting and the workers for real --------------------------------------------------------


@pytest.fixture(scope="module")
def big_capture(tmp_path_factory) -> Path:
    """A generated ESP/IKE mix above ``parallel.MIN_BYTES`` (bench/gen.py)."""
    out = tmp_path_factory.mktemp("jobs") / "mix.pcap"
    subprocess.run([sys.executable, str(REPO / "bench" / "gen.py"), "--packets", "60000",
                    "--out", str(out)], check=True, cwd=REPO)
    assert out.stat().st_size >= parallel.MIN_BYTES
    return out


def test_cut_points_are_record_boundaries(big_capture):
    size = big_capture.stat().st_size
    cuts, prefix, nifs = parallel.cut_points(str(big_capture), parallel.plan(size, 4))
    assert len(cuts) == 1 + 3 * parallel.SLICES_PER_JOB - 1 and len(prefix) == 24 and nifs == 1
    assert cuts == sorted(cuts) and 0 < cuts[0] < 70000  # a small file: the parent's is small
    offsets = {off for _n, off, _net in _records(str(big_capture))}
    assert set(cuts) <= offsets


def test_cli_jobs_2_same_report(big_capture, tmp_path):
    outs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"r{jobs}.json"
        res = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", str(big_capture),
                              "--format", "json", "-o", str(out), "--jobs", jobs],
                             cwd=REPO, capture_output=True, text=True)
        assert res.returncode in (0, 1), res.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_worker_processes_merge_to_the_single_pass(big_capture):
    p = str(big_capture)
    result = run([p], Options(jobs=2))
    assert result.parallel == {"slices": 1 + parallel.SLICES_PER_JOB}
    assert _reports(result) == _reports(run([p], Options(jobs=1)))


def test_pcapng_slices(big_capture, tmp_path):
    """A pcapng file: each slice read with the section's header and interface blocks in front."""
    ng = tmp_path / "mix.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(big_capture), str(ng)], check=True)
    p = str(ng)
    result = run([p], Options(jobs=2))
    assert result.parallel == {"slices": 1 + parallel.SLICES_PER_JOB}
    assert _reports(result) == _reports(run([p], Options(jobs=1)))


def test_a_cut_inside_a_record_falls_back(big_capture):
    """A cut that is no record boundary: the slice before it runs past it; the analysis is
    done in one pass instead (never a merged guess)."""
    p = str(big_capture)
    recs = _records(p)
    off = recs[len(recs) // 2][1] + 7
    result = run([p], Options(jobs=2, slice_at=[off], workers="serial"))
    assert result.parallel["fallback"].startswith(("damage", "read to "))
    assert _reports(result) == _reports(run([p]))


def test_small_files_and_jobs_1_stay_single_pass(tmp_path):
    small = str(project_captures()[0])
    assert run([small], Options(jobs=2)).parallel is None
    assert parallel.jobs_for([small], Options(jobs=1)) == 1
    assert parallel.available_cores() >= 1


# -- damaged captures and bounds ---------------------------------------------------------------

_DAMAGE_BASE = REPO / "captures" / "lab" / "inner_healthy" / "inner_healthy-gw-any.pcap"


def _damaged(tmp_path, kind: str, where: float, length: int, base: Path = _DAMAGE_BASE,
             fmt: str = "pcap") -> str:
    """``base`` with ``length`` bytes at ``where`` (a share of its records) replaced by garbage,
    zeros (a zero-filled hole) or inserted garbage."""
    import random

    src = base
    if fmt == "pcapng":
        src = tmp_path / f"{base.stem}.pcapng"
        if not src.exists():
            subprocess.run(["editcap", "-F", "pcapng", str(base), str(src)], check=True)
    data = bytearray(Path(src).read_bytes())
    recs = _records(str(src))
    at = recs[int(where * (len(recs) - 1))][1] + 3
    junk = bytes(random.Random(length).randrange(256) for _ in range(length))
    if kind == "zeros":
        data[at:at + length] = bytes(length)
    elif kind == "insert":
        data[at:at] = junk
    else:
        data[at:at + length] = junk
    out = tmp_path / f"damaged-{base.stem}-{kind}-{where}-{length}.{fmt}"
    out.write_bytes(bytes(data))
    return str(out)


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("kind", ["garbage", "zeros", "insert"])
def test_damage_inside_a_slice(tmp_path, big_capture, kind, fmt):
    """Damage well inside the first or the second slice of a big capture: the damaged ranges,
    their times, Wireshark's numbering after them and the damage finding come out as in one
    pass, and the slices are used (no fallback)."""
    p = _damaged(tmp_path, kind, 0.3, 700, big_capture, fmt)
    recs = _records(p)
    one = _reports(run([p]))
    assert '"damage"' in one[0]
    # damage that leaves a record with a wrong, earlier time puts the file out of time order:
    # then it is analysed in time order in one pass (CAPTURE_OUT_OF_ORDER), as without --jobs
    disordered = '"out_of_order"' in one[0]
    for cut in (recs[int(len(recs) * 0.7)][1], recs[int(len(recs) * 0.1)][1]):
        result = run([p], Options(jobs=2, slice_at=[cut], workers="serial"))
        if disordered:
            assert result.parallel["fallback"].startswith("not in time order"), result.parallel
        else:
            assert result.parallel == {"slices": 2}, result.parallel
        assert _reports(result) == one


@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["garbage", "zeros", "insert"]), where=st.floats(0.05, 0.95),
       length=st.integers(1, 3000), cuts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3))
def test_damage_and_random_cuts(tmp_path, kind, where, length, cuts):
    """Damage anywhere, cuts anywhere (on record boundaries of the damaged file as a single pass
    reads it, the damage's own neighbourhood included): the report is the single pass's (a
    slice whose damage lies within a few largest records before its end makes the analysis one
    pass: how damage is resynchronised depends on the bytes after it)."""
    p = _damaged(tmp_path, kind, where, length)
    recs = _records(p)
    offs = sorted({recs[min(len(recs) - 1, max(1, int(c * len(recs))))][1] for c in cuts})
    _check(p, offs, f"near damage ({kind} {length} bytes at {where:.2f})")


def test_bounds_come_out_the_same():
    """CAPTURE_LIMITS: what a bound drops is counted the same when the capture is sliced."""
    from pcapvpn.limits import Limits

    lim = Limits(esp_max_sas=2, ike_max_sas=1, ike_max_messages=4, max_error_samples=1,
                 max_flows=1, vpn_max_tunnels=1, report_max_items=2)
    for path in (REPO / "captures" / "lab" / "ikev2_rekey" / "ikev2_rekey.pcap",
                 REPO / "captures" / "lab" / "ikev2_three_sessions" / "ikev2_three_sessions.pcap",
                 _DAMAGE_BASE):
        p = str(path)
        one = _reports(run([p], Options(limits=lim)))
        assert "CAPTURE_LIMITS" in one[0]
        recs = _records(p)
        cuts = [recs[len(recs) // 3][1], recs[2 * len(recs) // 3][1]]
        result = run([p], Options(limits=lim, jobs=2, slice_at=cuts, workers="serial"))
        assert result.parallel == {"slices": 3}
        assert _reports(result) == one, p


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_frames_fetched_again_from_a_sliced_source(big_capture, tmp_path, fmt):
    """--export-evidence reads frames again by number from the checkpoints: the sliced source's
    checkpoints (numbers made global) find the same frames as the single pass's."""
    p = str(big_capture)
    if fmt == "pcapng":
        p = str(tmp_path / "mix.pcapng")
        subprocess.run(["editcap", "-F", "pcapng", str(big_capture), p], check=True)
    recs = _records(p)
    cuts = [recs[len(recs) // 3][1], recs[2 * len(recs) // 3][1]]
    want = [1, 1024, 1025, len(recs) // 3, len(recs) // 3 + 1, 2 * len(recs) // 3 + 5,
            len(recs)]
    one = run([p])
    sliced = run([p], Options(jobs=2, slice_at=cuts, workers="serial"))
    assert sliced.parallel == {"slices": 3}
    a = [f[:6] for f in one.sources[0].fetch(want)]
    b = [f[:6] for f in sliced.sources[0].fetch(want)]
    assert [f[1] for f in a] == want and a == b


# -- a Dask distributed cluster (the dask extra; .ci/run installs it) ----------------------------


def _distributed():
    try:
        import distributed
    except ImportError:
        msg = "the dask extra is not installed (pip install -e '.[dask]'): --dask untested"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return distributed


def test_dask_local_cluster_same_report(big_capture):
    """``--dask``: the slices read by the worker processes of a real
    ``dask.distributed.LocalCluster`` and merged by the same replay give the local report."""
    distributed = _distributed()
    p = str(big_capture)
    want = _reports(run([p], Options(jobs=1)))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        result = run([p], Options(workers=parallel.DaskPool(cluster.scheduler_address)))
        assert result.parallel == {"slices": 1 + 2 * parallel.SLICES_PER_JOB}
        assert _reports(result) == want
        # the CLI, the same cluster by its address
        res = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", p, "--format", "json",
                              "--dask", cluster.scheduler_address], cwd=REPO,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode in (0, 1), res.stderr
        assert res.stdout == want[0]


def test_report_order_does_not_depend_on_which_rule_module_came_first(big_capture):
    """Found by the whole-suite run of the Dask test above: the same findings, another order."""
    def findings(first_import: str) -> list:
        code = (f"import sys, json; {first_import}; from pcapvpn.analysis import run; "
                "print(json.dumps([f.code for f in run([sys.argv[1]]).findings]))")
        res = subprocess.run([sys.executable, "-c", code, str(big_capture)], cwd=REPO,
                             capture_output=True, text=True, timeout=600, check=True)
        return json.loads(res.stdout)

    assert findings("from pcapvpn.rules.dataplane import sequence") == findings("pass")


def test_dask_without_a_scheduler_is_a_usage_error(big_capture):
    _distributed()
    import os

    env = dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")
    res = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", str(big_capture),
                          "--dask", "tcp://127.0.0.1:9"], cwd=REPO, capture_output=True,
                         text=True, timeout=600, env=env)
    assert res.returncode == 2 and "--dask tcp://127.0.0.1:9" in res.stderr


@pytest.mark.parametrize("stage", ["decode", "dissect"])
def test_benchmark_stages_sliced(big_capture, stage):
    """``--stop-after decode`` / ``dissect`` (the benchmarks' stages) read the slices too."""
    p = str(big_capture)
    recs = _records(p)
    cuts = [recs[len(recs) // 2][1]]
    one = run([p], Options(stop_after=stage))
    sliced = run([p], Options(stop_after=stage, jobs=2, slice_at=cuts, workers="serial"))
    assert render(sliced.report, "json") == render(one.report, "json")
    assert sliced.report.capture.frames == len(recs)


def test_a_failing_worker_falls_back(big_capture, monkeypatch):
    """A worker that raises (a bug, memory): the analysis is done in one pass, same report."""
    p = str(big_capture)
    recs = _records(p)

    def broken(sl):
        raise MemoryError("no room")

    monkeypatch.setattr(parallel, "read_slice", broken)
    result = run([p], Options(jobs=2, slice_at=[recs[len(recs) // 2][1]], workers="serial"))
    assert result.parallel["fallback"] == "a worker failed (MemoryError: no room)"
    assert _reports(result) == _reports(run([p]))


# -- ESP SA states tracked by the workers and merged (pcapvpn.track.esp.merge_slice) ---------------


def _esp_gap_cuts(path: str) -> list:
    """Record offsets at and right after each ESP sequence gap (a hole open at the cut, or the
    slice starting with the jump): where a slice's SA cannot simply continue the state before."""
    by_number = {n: off for n, off, _net in _records(path)}
    cuts = []
    for e in json.loads(_one_pass(path)[0])["esp_sas"]:
        for g in e["sequence"]["gaps"]:
            n = g["frame"]["frame"]
            cuts += [by_number[k] for k in (n, n + 1) if k in by_number and k > 1]
    return sorted(set(cuts))


@pytest.mark.parametrize("scenario", ["ikev2_esp_loss", "ikev2_esp_loss_teardown",
                                      "ikev2_path_esp_loss", "ikev2_rekey"])
def test_esp_states_merge_or_replay_exactly(scenario, monkeypatch):
    """Slices cut at ESP gaps: each SA of a slice is either merged as a state (it continues the
    state before exactly) or its packets are applied one by one; the report is the single
    pass's, and both ways are taken."""
    from pcapvpn.track import esp

    counts = {"merged": 0, "one by one": 0}
    real = esp.merge_slice

    def counting(tracker, sas, opened, before):
        todo = real(tracker, sas, opened, before)
        counts["one by one"] += len(todo)
        counts["merged"] += len(sas) - len(todo)
        return todo

    monkeypatch.setattr(esp, "merge_slice", counting)
    path = str(REPO / "captures" / "lab" / scenario / f"{scenario}.pcap")
    cuts = _esp_gap_cuts(path)
    if not cuts:  # no loss: cut inside the SAs
        recs = _records(path)
        cuts = [recs[len(recs) * k // 5][1] for k in range(1, 5)]
    for group in (cuts[::2], cuts[1::2], cuts[:3]):
        if group:
            _check(path, group, "at ESP gaps")
    assert counts["merged"] > 0
    if scenario != "ikev2_rekey":
        assert counts["one by one"] > 0


def test_esp_merge_across_many_slices(big_capture):
    """The generated mix cut into 12 slices: every worker's SA states merge (bins, gaps, window
    edges), the report is the single pass's."""
    p = str(big_capture)
    size = big_capture.stat().st_size
    cuts, _prefix, _nifs = parallel.cut_points(p, [size * i // 13 for i in range(1, 13)])
    assert len(cuts) == 12
    _check(p, cuts, "in 13 slices")


def test_gzip_and_stdin_are_not_cut_by_offset(tmp_path):
    """A gzip file cannot be cut by offset (nor standard input): the parent reads the stream
    and hands slices of it to the workers as bytes (tests/scale/test_parallel_stream.py)."""
    import gzip

    src = REPO / "captures" / "lab" / "ikev2_rekey" / "ikev2_rekey.pcap"
    gz = tmp_path / "rekey.pcap.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    assert not parallel.eligible([str(gz)], Options(jobs=2))
    assert not parallel.eligible(["-"], Options(jobs=2))
    assert parallel.is_stream([str(gz)]) and parallel.is_stream(["-"])
    assert not parallel.is_stream([str(src)]) and not parallel.is_stream([str(gz), str(gz)])
    recs = _records(str(gz))
    result = run([str(gz)], Options(jobs=2, slice_at=[recs[len(recs) // 2][1]],
                                    workers="serial"))
    assert result.parallel == {"slices": 2}
    assert _reports(result) == _reports(run([str(gz)]))


# -- several files ---------------------------------------------------------------------------------


def _split_by_count(path: Path, tmp_path, count: int) -> list[str]:
    """``path`` cut into files of ``count`` packets (editcap -c): rotated captures."""
    subprocess.run(["editcap", "-c", str(count), str(path), str(tmp_path / "part.pcap")],
                   check=True)
    return sorted(str(p) for p in tmp_path.glob("part*.pcap"))


def test_rotated_files_read_in_parallel(tmp_path):
    """Pieces of one capture point whose times follow each other (a rotated capture): each is
    read as slices, one file after the other, with the same report as the single pass's merge
    by time; given in any order."""
    src = REPO / "captures" / "lab" / "ikev2_esp_loss" / "ikev2_esp_loss.pcap"
    files = _split_by_count(src, tmp_path, 150)
    assert len(files) >= 3
    for paths in (files, files[::-1]):
        one = _reports(run(paths))
        cuts = {i: [_records(p)[len(_records(p)) // 2][1]] for i, p in enumerate(paths)}
        result = run(paths, Options(jobs=2, slice_at=cuts, workers="serial"))
        assert result.parallel == {"slices": 2 * len(paths)}
        assert _reports(result) == one


def test_overlapping_files_fall_back(tmp_path):
    """Two files whose times overlap (two interfaces, two directions) are merged frame by frame:
    one pass."""
    a = REPO / "captures" / "lab" / "inner_healthy" / "inner_healthy-gw-any.pcap"
    b = REPO / "captures" / "lab" / "inner_healthy" / "inner_healthy-client-any.pcap"
    paths = [str(a), str(b)]
    result = run(paths, Options(jobs=2, slice_at={}, workers="serial"))
    assert result.parallel["fallback"].startswith("the times of")
    assert _reports(result) == _reports(run(paths))


def test_rotated_big_files_with_workers(big_capture, tmp_path):
    """The generated mix rotated into two files, read by real worker processes."""
    files = _split_by_count(big_capture, tmp_path, 30000)
    assert len(files) == 2
    result = run(files, Options(jobs=2))
    assert result.parallel is not None and "fallback" not in result.parallel
    assert _reports(result) == _reports(run(files, Options(jobs=1)))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_several_files_random_cuts(data):
    """Two or three captures of the corpus together (mostly from different days: one after the
    other; sometimes overlapping: one pass), each cut at a random record."""
    corpus_dir()
    pool = _random_pool()
    paths = data.draw(st.lists(st.sampled_from(pool), min_size=2, max_size=3, unique=True),
                      label="captures")
    cuts = {}
    for i, p in enumerate(paths):
        recs = _records(p)
        cuts[i] = [recs[data.draw(st.integers(1, len(recs) - 1), label=f"record of {i}")][1]]
    result = run(paths, Options(jobs=2, slice_at=cuts, workers="serial"))
    assert _reports(result) == _reports(run(paths)), (paths, cuts)
    if "fallback" in result.parallel:
        assert result.parallel["fallback"].startswith(_FALLBACKS + ("the times of",))
    else:
        assert result.parallel["slices"] == 2 * len(paths)


def test_progress_of_rotated_files(tmp_path):
    """The progress shown on a terminal goes forward over the files read one after the other."""
    src = REPO / "captures" / "lab" / "ikev2_esp_loss" / "ikev2_esp_loss.pcap"
    files = _split_by_count(src, tmp_path, 150)
    seen = []
    cuts = {i: [_records(p)[len(_records(p)) // 2][1]] for i, p in enumerate(files)}
    result = run(files, Options(jobs=2, slice_at=cuts, workers="serial",
                                progress=lambda name, done, total: seen.append((done, total))))
    assert "fallback" not in result.parallel
    assert seen and seen[-1][0] == seen[-1][1] == sum(Path(p).stat().st_size for p in files)
    assert [d for d, _t in seen] == sorted(d for d, _t in seen)


@pytest.fixture(scope="module")
def client_capture(tmp_path_factory) -> Path:
    """A client capture of mostly plaintext web traffic beside its ESP (bench/plain_bench.py),
    above ``parallel.MIN_BYTES``."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import plain_bench
    finally:
        sys.path.pop(0)
    p = tmp_path_factory.mktemp("plain") / "client.pcap"
    plain_bench.generate(p, 60000)
    assert p.stat().st_size >= parallel.MIN_BYTES
    return p


def test_plaintext_tcp_travels_as_headers(client_capture):
    """The workers read plaintext TCP with the reader's lane, as one pass does, and hand over
    its decoded headers instead of the frames (the parent does only the flows' bookkeeping): a
    client capture of mostly plaintext is sliced, by real worker processes, and gives the
    single pass's report; a slice's recording holds its plaintext as lane runs."""
    from pcapvpn.decode import lane_ports

    p = str(client_capture)
    want = _one_pass(p)
    esp, plain = parallel.shares(p, lane_ports())
    assert plain > 0.5 and esp + plain >= parallel.MIN_SHARE
    assert 0 < parallel.parent_share((esp, plain)) < 1
    assert parallel.jobs_for([p], Options(jobs=2)) == 2
    result = run([p], Options(jobs=2))
    assert result.parallel["slices"] > 1 and "fallback" not in result.parallel, result.parallel
    assert _reports(result) == want
    recs = _records(p)
    cuts = [recs[len(recs) * k // 4][1] for k in (1, 2, 3)]
    _reader, prefix, nifs, _first = parallel._head(p)
    sl = parallel.slices(p, 0, cuts, prefix, nifs)[1]
    sl.lane = lane_ports()
    part = parallel.read_slice(sl)
    lane = sum(len(op[4]["ts"]) for op in part.ops if op[0] == 4)
    frames = sum(1 for op in part.ops if op[0] == 2)
    assert lane > 0.5 * part.stats["frames"] and frames < 0.1 * part.stats["frames"]
    # the parent's first slice with given cuts is never judged; with --vpn-server ADDR:PORT
    # the decoder takes no lane run, and neither do the workers
    sliced = run([p], Options(jobs=2, slice_at=cuts[1:2], workers="serial"))
    assert sliced.parallel == {"slices": 2} and _reports(sliced) == want
    server = [(bytes([198, 51, 100, 2]), 443)]
    assert lane_ports(vpn_servers=server) is None
    one = _reports(run([p], Options(vpn_servers=server)))
    sliced = run([p], Options(jobs=2, slice_at=cuts, workers="serial", vpn_servers=server))
    assert sliced.parallel == {"slices": 4} and _reports(sliced) == one


def test_a_refused_plaintext_run_falls_back(client_capture, monkeypatch):
    """A lane run the parent's decoder refuses (a segment of a TCP stream it follows: the single
    pass hands such a run's frames to the general path, whose bytes a slice did not keep) makes
    the analysis one pass, with the reason, and the same report."""
    from pcapvpn.decode import Decoder

    p = str(client_capture)
    recs = _records(p)
    real = Decoder._plain_tcp
    seen = []

    def refuse_one(self, tag, linktype, ifaces, buf, run):
        if run["number"][0] > recs[len(recs) // 2][0] and not seen:
            seen.append(run["number"][0])
            return False
        return real(self, tag, linktype, ifaces, buf, run)

    monkeypatch.setattr(Decoder, "_plain_tcp", refuse_one)
    result = run([p], Options(jobs=2, slice_at=[recs[len(recs) // 3][1]], workers="serial"))
    assert result.parallel["fallback"].startswith("plaintext run at frame"), result.parallel
    monkeypatch.undo()
    assert _reports(result) == _one_pass(p)


def test_a_capture_of_frames_handed_over_as_bytes_runs_as_one_pass(tmp_path, monkeypatch):
    """Frames that are neither ESP nor plaintext TCP of the lane (here plaintext UDP) travel
    from the workers to the parent as their bytes, which is slower than one pass: a capture made
    mostly of them runs as one pass, decided on its first packets before any worker starts."""
    from dissect.vpn.capture import PcapWriter

    p = tmp_path / "udp.pcap"
    with open(p, "wb") as f:
        w = PcapWriter(f, 1)
        for i in range(600):
            udp = struct.pack("!HHHH", 40000 + i % 50, 5000, 8 + 100, 0) + bytes(100)
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                             bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
            w.write_packet(1_700_000_000 + i * 0.01, bytes(12) + b"\x08\x00" + ip)
    share = parallel.shares(str(p), None)
    assert share == (0.0, 0.0)
    monkeypatch.setattr(parallel, "MIN_BYTES", 0)
    assert parallel.jobs_for([str(p)], Options(jobs=2)) == 1
    assert parallel.jobs_for([str(p)], Options(jobs=2, slice_at=[])) == 2  # given cuts


def test_shares_are_looked_at_once_per_file(tmp_path, monkeypatch):
    """``jobs_for`` and ``sliced_sources`` both ask for a file's shares: the file's first
    packets are read once, and again only when the file changed (its size, time or inode)."""
    from pcapvpn.parallel import slicing

    src = sorted(Path(__file__).resolve().parents[2].glob("captures/**/*.pcap"))[0]
    p = tmp_path / "c.pcap"
    p.write_bytes(src.read_bytes())
    reads = []
    real = slicing._shares
    monkeypatch.setattr(slicing, "_shares", lambda *a: reads.append(a[0]) or real(*a))
    monkeypatch.setattr(slicing, "MIN_SAMPLE", 1)
    first = parallel.shares(str(p), None)
    assert first is not None and parallel.shares(str(p), None) == first and len(reads) == 1
    parallel.shares(str(p), frozenset({443}))  # another lane: another answer
    assert len(reads) == 2
    p.write_bytes(src.read_bytes()[:24])  # the same name, other bytes: read again
    assert parallel.shares(str(p), None) is None and len(reads) == 3
