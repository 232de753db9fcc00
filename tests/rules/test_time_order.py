"""Captures that are not in time order (CAPTURE_OUT_OF_ORDER): the finding, and the analysis in
time order (as ``reordercap`` would write the file) with every frame keeping its own number.

A lab capture cut in two by direction and written one half after the other (what ``mergecap -a``
of two sensors gives) is analysed exactly as the original, frame numbers mapped; also as two
files each out of order, and sliced by ``--jobs`` at the step back.  nDPI's
``ipsec_isakmp_esp.pcap`` (frames grouped per UDP flow, steps back of up to ~50,000 s: the vendor
review's case) gives the verdicts and mid-session IKE SAs of its ``reordercap`` copy."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import CAPTURES, tshark_fields
from pcapvpn.analysis import Options, _run_once, run
from pcapvpn.limits import Limits
from pcapvpn.report import render
from pcapvpn.sources import open_source

LAB = CAPTURES / "lab" / "ikev2_esp_loss" / "ikev2_esp_loss.pcap"
NDPI = CAPTURES / "public" / "ndpi"
CODE = "CAPTURE_OUT_OF_ORDER"


def _records(path) -> list:
    """``(number, ts, data, raw record bytes, offset)`` of every record of a classic pcap."""
    raw = Path(path).read_bytes()
    with open_source(str(path)) as src:
        frames = list(src.frames())
    offs = [f[6] for f in frames] + [len(raw)]
    return [(f[1], f[2], bytes(f[4]), raw[offs[i]:offs[i + 1]], f[6])
            for i, f in enumerate(frames)]


def _write(path, raw_header: bytes, recs) -> Path:
    path.write_bytes(raw_header + b"".join(r[3] for r in recs))
    return path


def _by_direction(path):
    """The records split by their first IPv4 source address: (first half, second half) in file
    order; the initiator's frames and the responder's."""
    recs = _records(path)
    first_src = recs[0][2][26:30]
    a = [r for r in recs if r[2][26:30] == first_src]
    b = [r for r in recs if r[2][26:30] != first_src]
    # the test needs no tie between the halves (the time order of a tie is the file's order)
    assert not {r[1] for r in a} & {r[1] for r in b}
    return a, b


def _report(paths, options=None) -> dict:
    return json.loads(render(run([str(p) for p in paths], options).report, "json"))


_FILTER_NUM = re.compile(r"(frame\.number (?:==|in) \{?)([0-9, ]+)")
#: frame numbers in the text of a detail ("(frame 7)", "frames 3-5")
_TEXT_NUM = re.compile(r"(\bframes? )(\d+)")


def _mapped(report: dict, maps: dict, names: dict) -> dict:
    """``report`` with the frame numbers of each file mapped (``maps``: file name -> {number:
    number}), the file names renamed (``names``), and CAPTURE_OUT_OF_ORDER left out."""
    def num_map(file):
        return maps.get(file, {})

    def fix(o, file=None):
        if isinstance(o, dict):
            f = o.get("file", file)
            out = {}
            for k, v in o.items():
                if k == "frame" and isinstance(v, int) and "file" in o:
                    v = num_map(o["file"]).get(v, v)
                out[k] = fix(v, f)
            if "file" in out and isinstance(out["file"], str):
                out["file"] = names.get(out["file"], out["file"])
            return out
        if isinstance(o, list):
            return [fix(v, file) for v in o]
        if isinstance(o, str):
            for old, new in names.items():
                o = o.replace(old, new)
            if "frame.number" in o and len(maps) == 1:
                m = next(iter(maps.values()))

                def sub(mt):
                    nums = sorted(m.get(int(x), int(x)) for x in mt.group(2).split(","))
                    return mt.group(1) + ", ".join(map(str, nums))

                o = _FILTER_NUM.sub(sub, o)
            if len(maps) == 1:
                m = next(iter(maps.values()))
                o = _TEXT_NUM.sub(lambda mt: mt.group(1) + str(m.get(int(mt.group(2)),
                                                                     int(mt.group(2)))), o)
            return o
        return o

    rep = fix(report)
    rep["findings"] = [f for f in rep["findings"] if f["code"] != CODE]
    for g in rep.get("groups", []):
        g.pop("count", None)
    rep["groups"] = [g for g in rep.get("groups", []) if g.get("code") != CODE]
    rep["capture"].pop("out_of_order", None)
    for t in rep["tunnels"]:
        t["findings"] = [f for f in t.get("findings", []) if f != CODE]
    return rep


def _strip_frames(o):
    """The report without frame numbers at all (several files: the numbers are per file)."""
    if isinstance(o, dict):
        return {k: _strip_frames(v) for k, v in o.items() if k != "frame"}
    if isinstance(o, list):
        return [_strip_frames(v) for v in o]
    if isinstance(o, str):
        return _FILTER_NUM.sub(r"\1#", _TEXT_NUM.sub(r"\1#", o))
    return o


def _one(rep) -> dict:
    found = [f for f in rep["findings"] if f["code"] == CODE]
    assert len(found) == 1, [f["code"] for f in rep["findings"]]
    return found[0]


def test_in_order_capture_has_no_finding_nor_field():
    rep = _report([LAB])
    assert "out_of_order" not in rep["capture"]
    assert CODE not in {f["code"] for f in rep["findings"]}


def test_halves_one_after_the_other_read_in_time_order(tmp_path):
    """The initiator's frames, then the responder's (two sensors appended): the report is the
    original's, frame numbers mapped, with CAPTURE_OUT_OF_ORDER (warning, the largest step
    back and its frames) besides."""
    a, b = _by_direction(LAB)
    head = LAB.read_bytes()[:24]
    shuffled = _write(tmp_path / "appended.pcap", head, a + b)
    new_of = {r[0]: i + 1 for i, r in enumerate(a + b)}  # original number -> number in shuffled
    old_of = {v: k for k, v in new_of.items()}
    want = _report([LAB])
    got = _report([shuffled])
    f = _one(got)
    assert f["severity"] == "warning" and f["stage"] == "capture"
    ooo = got["capture"]["out_of_order"]
    ts = [r[1] for r in a + b]
    late = sum(1 for i in range(1, len(ts)) if ts[i] < max(ts[:i]))
    step = max(max(ts[:i]) - ts[i] for i in range(1, len(ts)))
    frame = next(i + 1 for i in range(1, len(ts)) if max(ts[:i]) - ts[i] == step)
    before = max(range(frame - 1), key=lambda i: (ts[i], i)) + 1
    assert ooo == [{"file": str(shuffled), "frames": late, "largest_step_s": round(step, 6),
                    "frame": frame, "from_frame": before, "time_order": True,
                    "file_order_why": None}]
    assert f"frame {frame}" in f["title"] and "analysed in time order" in f["detail"]
    assert f["wireshark_filter"] == f"frame.number in {{{before}, {frame}}}"
    assert [e["frame"] for e in f["evidence"]["frames"]] == [before, frame]
    assert _mapped(got, {str(shuffled): old_of}, {str(shuffled): str(LAB)}) == \
        _mapped(want, {}, {})
    text = render(run([str(shuffled)]).report, "text")
    assert "frames out of time order" in text and "analysed in time order" in text


def test_kept_in_file_order_beyond_the_limit(tmp_path):
    """Above ``reorder_max_records`` the file is analysed in file order, and the finding says
    so (and why)."""
    a, b = _by_direction(LAB)
    shuffled = _write(tmp_path / "appended.pcap", LAB.read_bytes()[:24], a + b)
    lim = Limits(reorder_max_records=len(a))
    rep = _report([shuffled], Options(limits=lim))
    f = _one(rep)
    entry = rep["capture"]["out_of_order"][0]
    assert entry["time_order"] is False and entry["file_order_why"] == "limit"
    assert entry["from_frame"] is None
    assert "analysed in file order" in f["detail"] and "reorder_max_records" in f["detail"]
    assert f["wireshark_filter"] == f"frame.number == {entry['frame']}"


def test_gzip_read_in_time_order(tmp_path, monkeypatch):
    """A gzip file is read back in time order from a decompressed temporary copy, removed
    after: the findings and tunnels are those of the same file uncompressed."""
    import gzip
    import tempfile

    a, b = _by_direction(LAB)
    plain = _write(tmp_path / "appended.pcap", LAB.read_bytes()[:24], a + b)
    gz = tmp_path / "appended.pcap.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    got = _report([gz])
    want = _report([plain])
    assert got["capture"]["out_of_order"][0]["time_order"] is True
    names = {str(gz): str(plain)}
    for key in ("findings", "tunnels", "ike_sas", "esp_sas"):
        assert _mapped(got, {}, names)[key] == _mapped(want, {}, {})[key], key
    assert list(spool.iterdir()) == []


def test_stdin_kept_in_file_order(tmp_path, monkeypatch):
    import io
    import sys

    a, b = _by_direction(LAB)
    data = LAB.read_bytes()[:24] + b"".join(r[3] for r in a + b)

    class In:
        buffer = io.BytesIO(data)

    monkeypatch.setattr(sys, "stdin", In)
    rep = _report(["-"])
    entry = rep["capture"]["out_of_order"][0]
    assert entry["file"] == "-" and entry["file_order_why"] == "stdin"
    assert "standard input" in _one(rep)["detail"]


def test_two_files_each_out_of_order(tmp_path):
    """Two files (the two directions), each written with its second half first: merged by time
    with each file read in time order, the report is that of the two files in order."""
    a, b = _by_direction(LAB)
    head = LAB.read_bytes()[:24]
    fa, fb = _write(tmp_path / "a.pcap", head, a), _write(tmp_path / "b.pcap", head, b)
    want = _report([fa, fb])
    assert "out_of_order" not in want["capture"]
    maps, names = {}, {}
    paths = []
    for name, part in (("a2.pcap", a), ("b2.pcap", b)):
        k = len(part) // 2
        swapped = part[k:] + part[:k]
        p = _write(tmp_path / name, head, swapped)
        paths.append(p)
        in_part = {r[0]: i + 1 for i, r in enumerate(part)}
        maps[str(p)] = {j + 1: in_part[r[0]] for j, r in enumerate(swapped)}
    names = {str(paths[0]): str(fa), str(paths[1]): str(fb)}
    got = _report(paths)
    ooo = got["capture"]["out_of_order"]
    assert [e["file"] for e in ooo] == [str(p) for p in paths]
    assert all(e["time_order"] for e in ooo)
    assert "of " in _one(got)["title"]  # several files: which one has the largest step
    # frame numbers per file: compare without them (the filters of several files are per file)
    assert _strip_frames(_mapped(got, maps, names)) == _strip_frames(_mapped(want, {}, {}))


def test_jobs_cut_at_the_step_back(tmp_path):
    """--jobs: slices that each start no earlier than the slices before them end merge to the
    single pass's statistic exactly (a step back inside a slice); a cut at the step back (the
    second slice starts earlier than the first ends) cannot be merged exactly and falls back.
    Either way the file is then analysed in one pass in time order, the report without --jobs."""
    from pcapvpn import parallel

    a, b = _by_direction(LAB)
    recs = a + b
    path = _write(tmp_path / "appended.pcap", LAB.read_bytes()[:24], recs)
    single = open_source(str(path))
    for _f in single.frames():
        pass
    want = (single.out_of_order, single.step_back, single.step_frame, single.step_from_ts)
    assert single.step_frame == len(a) + 1
    # slice 1: the capture's first frame alone; slice 2, with the step back, starts after it
    inside = 24 + len(a[0][3])
    first = _run_once([str(path)], Options(jobs=2, slice_at=[inside], workers="serial"), 2)
    assert first.parallel == {"slices": 2}
    src = first.sources[0]
    assert (src.out_of_order, src.step_back, src.step_frame, src.step_from_ts) == want
    at_step = 24 + sum(len(r[3]) for r in a)
    opts = Options(jobs=2, slice_at=[at_step], workers="serial")
    with pytest.raises(parallel.Fallback, match="not in time order: slice 1 starts earlier"):
        _run_once([str(path)], opts, 2)
    one = render(run([str(path)]).report, "json")
    for cut in (inside, at_step):
        res = run([str(path)], Options(jobs=2, slice_at=[cut], workers="serial"))
        assert res.parallel["slices"] == 0 and "not in time order" in res.parallel["fallback"]
        assert render(res.report, "json") == one


def test_jobs_on_stdin_counts_as_one_pass(tmp_path, monkeypatch):
    """--jobs on standard input (a stream, not read again): a slice that starts earlier than
    the slices before it end makes the rest be read in the parent, counted against them
    (time_floor), so the count and the step are the single pass's, and so is the report."""
    import io
    import sys

    a, b = _by_direction(LAB)
    data = LAB.read_bytes()[:24] + b"".join(r[3] for r in a + b)
    at_step = 24 + sum(len(r[3]) for r in a)

    class In:
        buffer = io.BytesIO(data)

    monkeypatch.setattr(sys, "stdin", In)
    one = _report(["-"])
    for cut in (at_step, 24 + sum(len(r[3]) for r in a[:len(a) // 2])):
        In.buffer = io.BytesIO(data)
        got = run(["-"], Options(jobs=2, slice_at=[cut], workers="serial"))
        assert json.loads(render(got.report, "json")) == one, cut
    assert one["capture"]["out_of_order"][0]["file_order_why"] == "stdin"


# -- nDPI's ipsec_isakmp_esp.pcap: the vendor review's case ------------------------------------------


def _reordercap(path, tmp_path) -> Path:
    exe = shutil.which("reordercap")
    if exe is None:
        pytest.fail("reordercap (wireshark-common) is needed to check the time order")
    out = tmp_path / ("ordered-" + path.name)
    subprocess.run([exe, "-n", str(path), str(out)], check=True, capture_output=True)
    return out


def _number_map(src_path, dst_path) -> dict:
    """Frame numbers of ``src_path`` -> those of the same frames in ``dst_path``, matched by
    (time, bytes) (copies taken in order)."""
    where = defaultdict(list)
    with open_source(str(dst_path)) as d:
        for f in d.frames():
            where[(f[2], bytes(f[4]))].append(f[1])
    out = {}
    with open_source(str(src_path)) as s:
        for f in s.frames():
            out[f[1]] = where[(f[2], bytes(f[4]))].pop(0)
    return out


def _mid_session(rep) -> set:
    return {(sa["ispi"], sa["rspi"]) for sa in rep["ike_sas"] if sa["mid_session"]}


def _verdicts(rep) -> dict:
    return {t["id"]: (t["verdict"], t["failed_stage"], t["primary_code"]) for t in rep["tunnels"]}


@pytest.mark.parametrize("name", ["ipsec_isakmp_esp.orig.pcap", "ipsec_isakmp_esp.pcap"])
def test_ndpi_capture_analysed_as_reordercap_would(tmp_path, name):
    """The frames are grouped per UDP flow (IKE_AUTH before its IKE_SA_INIT): read in time order,
    only the IKE SAs whose IKE_SA_INIT is not in the file are mid-session, and every tunnel's
    verdict and primary finding are those of the reordercap copy; in file order (the limit) the
    review's 15 mid-session IKE SAs come back."""
    path = NDPI / name
    ordered = _reordercap(path, tmp_path)
    rep = _report([path])
    want = _report([ordered])
    f = _one(rep)
    entry = rep["capture"]["out_of_order"][0]
    assert entry["time_order"] is True and entry["largest_step_s"] > 40_000
    assert "analysed in time order" in f["detail"]
    assert "out_of_order" not in want["capture"]
    assert _verdicts(rep) == _verdicts(want)
    mid = _mid_session(rep)
    assert mid == _mid_session(want)
    # ... and those are the IKE SAs without an IKE_SA_INIT in the file
    inits = {r[0] for r in tshark_fields(path, ["isakmp.ispi"], "isakmp.exchtype == 34")}
    assert all(ispi.replace("0x", "") not in {i.replace("0x", "") for i in inits}
               for ispi, _r in mid)
    assert len(mid) <= 2
    # the same IKE SAs, frame numbers mapped from the reordercap copy
    back = {v: k for k, v in _number_map(path, ordered).items()}
    firsts = {(sa["ispi"], sa["rspi"]): sa["messages"][0]["frames"][0]["frame"]
              for sa in rep["ike_sas"]}
    want_firsts = {(sa["ispi"], sa["rspi"]): back[sa["messages"][0]["frames"][0]["frame"]]
                   for sa in want["ike_sas"]}
    assert firsts == want_firsts
    # in file order: what the review found
    lim = _report([path], Options(limits=Limits(reorder_max_records=100)))
    assert lim["capture"]["out_of_order"][0]["file_order_why"] == "limit"
    assert len(_mid_session(lim)) > len(mid)


def test_vantage_point_file_read_in_time_order(tmp_path):
    """--vantage: a point's file that is not in time order is read in time order as well (its
    entry in capture.out_of_order says so), and the first point's tunnels are those of the
    original file."""
    a, b = _by_direction(LAB)
    shuffled = _write(tmp_path / "appended.pcap", LAB.read_bytes()[:24], a + b)
    other = tmp_path / "other.pcap"
    other.write_bytes(LAB.read_bytes())
    opts = Options(vantage=[("here", [str(shuffled)], None), ("there", [str(other)], None)])
    got = _report([], opts)
    assert [(e["file"], e["time_order"]) for e in got["capture"]["out_of_order"]] == \
        [(str(shuffled), True)]
    want = _report([LAB])
    assert _verdicts(got) == _verdicts(want)
