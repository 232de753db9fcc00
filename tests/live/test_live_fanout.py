"""``pcapvpn live``: ring blocks as batches (pcapvpn.live.batch) and ``--workers N``
(pcapvpn.live.workers: PACKET_FANOUT).  Root: network namespaces made by the tests."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_live import (LAB, ROOT, Live, Netns, _analyze_json, _cited, _codes,  # noqa: E402
                       _compare, need_root, replay)

BENCH = ROOT / "bench" / "live_bench.py"


def _verdicts(r) -> list:
    return sorted((t["id"], t["verdict"]) for t in r["tunnels"])


# -- the block reader gives what the frame-by-frame reader gives -----------------------------------

def _frames_of(path):
    from pcapvpn.sources import open_source

    return [bytes(f[4]) for f in open_source(str(path)).frames()]


def _vlan(frame: bytes, vid: int) -> bytes:
    return frame[:12] + struct.pack("!HH", 0x8100, vid) + frame[12:]


_BLOCKS_CHILD = r"""
import json, os, socket, sys, time
sys.path.insert(0, sys.argv[1])
from pcapvpn.decode import Decoder
from pcapvpn.live.batch import BlockReader
from pcapvpn.live.bpf import compile_filter, default_filter
from pcapvpn.live.capture import AfPacketRing
from pcapvpn.thresholds import DEFAULT
from pcapvpn.track import Tracker

frames = [bytes.fromhex(h) for h in json.load(open(sys.argv[2]))]
bpf = compile_filter(default_filter())
one = AfPacketRing("va", bpf, block_size=1 << 16, block_nr=64)
two = AfPacketRing("va", bpf, block_size=1 << 16, block_nr=64)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("vb", 0))
for f in frames:
    s.send(f)
time.sleep(0.5)  # the rings retire their last block 50 ms after its first packet
out = {}
for mode, ring in (("frames", one), ("blocks", two)):
    tr = Tracker(DEFAULT, ["live"], None, [], None)
    dec = Decoder(tr)
    n = vlan = 0
    reader = BlockReader(ring) if mode == "blocks" else None
    while True:
        if reader is not None:
            k = reader.feed(dec, 0, n, 4)[0]
        else:
            batch = []
            k = ring.read(batch, 0, n, max_blocks=4)
            vlan += sum(1 for f in batch if f[4][12:14] == b"\x81\x00")
            dec.run(batch)
        if not k:
            break
        n += k
    tr.finish()
    st = tr.state(1e10)
    out[mode] = {"n": n, "vlan": vlan,
                 "esp": [json.dumps(e.to_dict(), sort_keys=True, default=str)
                         for e in sorted(st.esp_sas, key=lambda e: (e.spi, e.dst))],
                 "ike": sorted(json.dumps([sa.ispi.hex(), [list(m.ref) for m in sa.messages]])
                               for sa in st.ike_sas),
                 "counters": dec.counters(), "truncated": ring.truncated}
print(json.dumps(out))
"""


def _same(x, y) -> bool:
    """Equal, floats within a millisecond."""
    if isinstance(x, float) or isinstance(y, float):
        return isinstance(x, (int, float)) and isinstance(y, (int, float)) and abs(x - y) < 1e-3
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, list):
        return isinstance(y, list) and len(x) == len(y) and all(map(_same, x, y))
    return x == y


@pytest.mark.root
def test_block_reader_matches_frame_reader(tmp_path):
    """The same packets through two rings of one interface: one read frame by frame
    (AfPacketRing.read + Decoder.run), one a block at a time (BlockReader): the same ESP SAs
    (every counter, gap, frame reference), IKE SAs with the same messages, the same decoder
    counters; VLAN-tagged copies (the veth takes the tag out: TP_STATUS_VLAN_VALID) included."""
    need_root()
    frames = []
    for name in ("ikev2_esp_loss", "ikev2_cert_ipfrag_ok", "ikev2_three_sessions"):
        p = LAB / name / f"{name}.pcap"
        if not p.exists():
            pytest.fail(f"lab capture {name} missing")
        frames += _frames_of(p)
    frames += [_vlan(f, 7) for f in frames[:400]]
    data = tmp_path / "frames.json"
    data.write_text(json.dumps([f.hex() for f in frames]))
    with Netns() as ns:
        cp = subprocess.run(ns.cmd(sys.executable, "-c", _BLOCKS_CHILD, str(ROOT), str(data)),
                            capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)
    a, b = out["frames"], out["blocks"]
    assert a["n"] == b["n"] > 0.9 * len(frames)  # the capture filter leaves out a few (ARP)
    assert a["esp"] and a["ike"]
    assert a["vlan"] > 350  # the tags the NIC (veth) took out, put back by the ring reader
    # each packet socket stamps its copy itself (the veth leaves the time to them): the times
    # differ by microseconds, everything else is the same
    assert _same([json.loads(x) for x in a["esp"]], [json.loads(x) for x in b["esp"]])
    assert a["ike"] == b["ike"]
    assert a["counters"] == b["counters"]


# -- --workers N ----------------------------------------------------------------------------------

def _run_live(tmp_path, path, workers, tag):
    """live --workers N --write on one end of a namespace's veth, ``path`` replayed into the
    other; returns (live report, analyze of the written files, events, files)."""
    out = tmp_path / f"w{tag}"
    report = tmp_path / f"live{tag}.json"
    with Netns() as ns:
        live = Live(ns, "--workers", str(workers), "--write", str(out), "--events", "jsonl",
                    "--format", "json", "-o", str(report), "--quiet")
        replay(ns, path)
        time.sleep(0.5)
        rc = live.stop()
    assert rc in (0, 1), "".join(live.err)
    files = sorted(out.glob("*.pcapng"))
    assert files
    return json.loads(report.read_text()), _analyze_json(*files), live.events(), files


FANOUT_REPLAY = ["ikev2_esp_loss", "ikev2_esp_oneway", "ikev2_cert_ipfrag_ok",
                 "ikev2_three_sessions"]


@pytest.fixture(scope="module")
def fanout_replays(tmp_path_factory):
    need_root()

    def one(job):
        name, workers = job
        path = LAB / name / f"{name}.pcap"
        if not path.exists():
            return job, None
        try:
            return job, _run_live(tmp_path_factory.mktemp(f"{name}{workers}"), path, workers,
                                  workers)
        except BaseException as e:  # noqa: BLE001 - reported by the scenario's test
            return job, e

    jobs = [(n, w) for n in FANOUT_REPLAY for w in (1, 2)]
    with ThreadPoolExecutor(len(jobs)) as ex:
        return dict(ex.map(one, jobs))


@pytest.mark.root
@pytest.mark.parametrize("name", FANOUT_REPLAY)
def test_workers_2_match_workers_1_and_analyze(fanout_replays, name):
    """A lab capture replayed into live --workers 2: the same findings and verdicts as
    --workers 1 and as analyze of its own written files (one per worker), the frame numbers
    cited being those of these files; every finding was raised as an event."""
    got = {w: fanout_replays[(name, w)] for w in (1, 2)}
    for w, g in got.items():
        if g is None:
            pytest.fail(f"lab capture {name} missing")
        if isinstance(g, BaseException):
            raise g
    one, _ana1, _ev1, _f1 = got[1]
    two, ana2, ev2, files2 = got[2]
    assert len(files2) == 2  # one file per worker
    _compare(two, ana2, ev2)
    assert _codes(two["findings"]) == _codes(one["findings"])
    assert _verdicts(two) == _verdicts(one)
    assert two["capture"]["frames"] == one["capture"]["frames"]
    names = {f["file"] for x in two["findings"] for f in x["evidence"]["frames"]}
    assert names <= {str(p) for p in files2}
    assert _cited(two) == _cited(ana2)


_SCRAPE = ("import urllib.request; "
           "print(urllib.request.urlopen('http://127.0.0.1:9477/metrics', timeout=30)"
           ".read().decode())")


def _spis(path) -> set:
    from pcapvpn.sources import open_source

    out = set()
    for f in open_source(str(path)).frames():
        data = f[4]
        if data[12:14] == b"\x08\x00" and data[23] == 50:
            out.add(data[34:38].hex())
    return out


@pytest.mark.root
@pytest.mark.parametrize("rotate", [False, True])
def test_workers_keep_each_sa_in_one_worker(tmp_path, rotate):
    """16 ESP SAs (IP protocol 50, the bench's stream) into live --workers 2: the kernel's flow
    hash (addresses and SPI) puts each SA whole in one worker and both workers get SAs; the
    SAs' statistics, and the frames they cite, are those of analyze of the written files (with
    ``rotate``: many small files per worker, each SA's frames spread over several)."""
    need_root()
    more = ("--write-size", "0.05", "--write-files", "0") if rotate else ()
    out = tmp_path / "w"
    report = tmp_path / "live.json"
    n = 16 * 500
    with Netns() as ns:
        live = Live(ns, "--workers", "2", "--write", str(out), "--events", "none", "--format",
                    "json", "-o", str(report), "--quiet", "--metrics", "127.0.0.1:9477", *more)
        cp = subprocess.run(ns.cmd(sys.executable, str(BENCH), "send", "vb", "20000", "2"),
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, LIVE_BENCH_FRAMES=str(n)))
        assert cp.returncode == 0, cp.stderr
        time.sleep(1.5)  # the workers' snapshots come every half second
        # --metrics counts the workers' SAs too
        scraped = subprocess.run(ns.cmd(sys.executable, "-c", _SCRAPE), capture_output=True,
                                 text=True, timeout=60)
        rc = live.stop()
    assert 'pcapvpn_live_sas{kind="esp"} 16.0' in scraped.stdout, scraped.stdout[-2000:]
    assert rc in (0, 1), "".join(live.err)
    files = sorted(out.glob("*.pcapng"))
    assert len(files) > 10 if rotate else len(files) == 2
    per = [set().union(*(_spis(f) for f in files if f"-w{k}-" in f.name)) for k in (0, 1)]
    assert all(per), per  # both workers got SAs
    assert not per[0] & per[1]  # no SA in both
    assert len(per[0] | per[1]) == 16
    r = json.loads(report.read_text())
    assert r["capture"]["frames"] == n
    sas = {s["spi"]: s for s in r["esp_sas"]}
    assert len(sas) == 16
    assert {s["packets"] for s in sas.values()} == {500}
    assert not [f for f in r["findings"] if f["code"].startswith("ESP_SEQUENCE")]
    ana = _analyze_json(*files)
    assert sorted(json.dumps(s, sort_keys=True) for s in r["esp_sas"]) == \
        sorted(json.dumps(s, sort_keys=True) for s in ana["esp_sas"])
    assert _cited(r) == _cited(ana)


@pytest.mark.root
def test_workers_stop_on_sigterm(tmp_path):
    """SIGTERM to the parent (as a service manager's stop): the workers end, the report is
    written, within the stop budget; a worker killed on its own is reported."""
    need_root()
    report = tmp_path / "live.json"
    with Netns() as ns:
        live = Live(ns, "--workers", "2", "--events", "none", "--format", "json", "-o",
                    str(report), "--quiet")
        kids = subprocess.run(["pgrep", "-P", str(live.proc.pid)], capture_output=True,
                              text=True).stdout.split()
        assert len(kids) == 2
        os.kill(int(kids[1]), signal.SIGKILL)
        time.sleep(0.5)
        t0 = time.monotonic()
        rc = live.stop(sig=signal.SIGTERM, timeout=30)
        took = time.monotonic() - t0
        left = subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True,
                              text=True).stdout.split()
    assert rc in (0, 1), "".join(live.err)
    assert took < 10
    assert not left
    r = json.loads(report.read_text())
    assert any("worker 1" in w and "ended" in w for w in r["capture"]["warnings"]), \
        r["capture"]["warnings"]

