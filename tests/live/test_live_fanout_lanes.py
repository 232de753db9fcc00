"""``pcapvpn live --workers N`` beyond one interface (issue 19): several interfaces (one ring per
worker and interface, one fanout group per interface), ``--vantage`` (each worker tracks the ESP
of every capture point apart) and ``--keys`` (the ESP of keyed SPIs is decrypted in the parent).
Each check runs the same replay into ``--workers 1`` and ``--workers 2``.  Root: network
namespaces made by the tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_live import (LAB, Live, Netns, _analyze_json, _cited, _codes,  # noqa: E402
                       need_root, paced, replay)


def _analyze_written(*paths, extra=()) -> dict:
    """analyze of the workers' written files.  A worker writes its interfaces' ring blocks as it
    reads them, so a file of several interfaces can step back in time by up to a block's span:
    analyze reads it in time order and says so (CAPTURE_OUT_OF_ORDER, information), where live
    merged the lanes by time and has nothing to say.  That finding, and only at information, is
    left out of the comparison."""
    ana = _analyze_json(*paths, extra=extra)
    order = [f for f in ana["findings"] if f["code"] == "CAPTURE_OUT_OF_ORDER"]
    assert all(f["severity"] == "info" for f in order), order
    return dict(ana, findings=[f for f in ana["findings"] if f not in order])


class Netns2(Netns):
    """A namespace with two veth pairs: ``va`` <-> ``vb`` and ``vc`` <-> ``vd``."""

    def __enter__(self):
        super().__enter__()
        self.run("link", "add", "vc", "type", "veth", "peer", "name", "vd")
        self.run("link", "set", "vc", "up")
        self.run("link", "set", "vd", "up")
        return self


def _lab(name, file=None) -> Path:
    p = LAB / name / (file or f"{name}.pcap")
    if not p.exists():
        pytest.fail(f"lab capture {p} missing")
    return p


def _replay_main(argv):
    """``IFACE PATH IFACE PATH ...``: the captures' frames, merged by their time stamps (one
    clock: the lab captures of one run were taken on one host), each sent into its interface at
    the original timing: the capture points see them as they saw them."""
    import heapq
    import socket

    from pcapvpn.sources import open_source

    def feed(k, iface, path):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((iface, 0))
        for n, f in enumerate(open_source(path).frames()):
            yield f[2], k, n, bytes(f[4]), s

    feeds = [feed(k, argv[k], argv[k + 1]) for k in range(0, len(argv), 2)]
    for _ts, _k, _n, data, s in paced(heapq.merge(*feeds)):
        s.send(data)


def _replay_merged(ns, feeds):
    args = [a for path, iface in feeds for a in (iface, str(path))]
    cp = subprocess.run(ns.cmd(sys.executable, str(Path(__file__).resolve()), "replay", *args),
                        capture_output=True, text=True, timeout=600)
    assert cp.returncode == 0, cp.stderr


def _run(tmp_path, workers, args, feeds, write=True):
    """live ``args`` --workers N (--write), ``feeds`` [(path, iface)] replayed at the same time
    (merged by time: :func:`_replay_main`); returns (report, written files)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    report = tmp_path / "live.json"
    out = tmp_path / "w"
    more = ("--write", str(out)) if write else ()
    with Netns2() as ns:
        live = Live(ns, *args, "--workers", str(workers), *more, "--events", "none",
                    "--format", "json", "-o", str(report), "--quiet", iface=None)
        _replay_merged(ns, feeds)
        time.sleep(0.5)
        rc = live.stop(sig=signal.SIGINT)
    assert rc in (0, 1), "".join(live.err)
    return json.loads(report.read_text()), sorted(out.glob("*.pcapng")) if write else []


def _both(tmp_path, args, feeds, write=True):
    """The same run with --workers 1 and --workers 2, side by side (each in its namespace)."""
    with ThreadPoolExecutor(2) as ex:
        futs = {w: ex.submit(_run, tmp_path / f"w{w}", w, args, feeds, write) for w in (1, 2)}
        return {w: f.result() for w, f in futs.items()}


def _verdicts(r) -> list:
    return sorted((t["id"], t["verdict"], t.get("primary_code")) for t in r["tunnels"])


_TIMED = {"first", "last", "first_ts", "last_ts", "first_frame", "last_frame",
          "first_failure_frame", "frame", "frames", "file"}


def _untimed(x):
    """``x`` without what differs between two replays (times, files, frame numbers)."""
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items() if k not in _TIMED}
    if isinstance(x, list):
        return [_untimed(v) for v in x]
    return x


def _esp(r) -> list:
    """The ESP SAs: addresses, counts and (--keys) decryption results."""
    keep = ("proto", "spi", "src", "dst", "encap", "packets", "bytes", "decryption")
    return sorted(json.dumps(_untimed({k: s.get(k) for k in keep}), sort_keys=True)
                  for s in r["esp_sas"])


TWO_IFACES = [("ikev2_esp_loss", "vb"), ("ikev2_nat", "vd")]  # two tunnels


@pytest.mark.root
def test_workers_two_interfaces(tmp_path):
    """Two captures replayed into two interfaces at once: --workers 2 (a ring per worker and
    interface, two fanout groups) gives the findings, verdicts, counts and ESP SAs of
    --workers 1, and the frames it cites are those of analyze of its own files (one per
    worker, each holding both interfaces)."""
    need_root()
    feeds = [(_lab(n), i) for n, i in TWO_IFACES]
    got = _both(tmp_path, ["-i", "va", "-i", "vc"], feeds)
    (one, _f1), (two, files2) = got[1], got[2]
    assert one["findings"] and one["esp_sas"]
    assert _codes(two["findings"]) == _codes(one["findings"])
    assert _verdicts(two) == _verdicts(one)
    assert two["capture"]["frames"] == one["capture"]["frames"]
    assert _esp(two) == _esp(one)
    assert len(files2) == 2  # one per worker
    ana = _analyze_written(*files2)
    assert _cited(two) == _cited(ana)
    assert _verdicts(two) == _verdicts(ana)
    # both interfaces are in each worker's file (pcapng interface blocks named after them)
    from dissect.vpn.capture import open_capture

    for f in files2:
        with open(f, "rb") as fh:
            r = open_capture(fh)
            list(r.records())
            assert [i.name for i in r.interfaces] == ["va", "vc"]


@pytest.mark.root
def test_workers_two_interfaces_without_write(tmp_path):
    """Without --write: one source per worker and interface, ``live:IFACE:workerK``; the same
    findings, verdicts and counts as one process."""
    need_root()
    feeds = [(_lab(n), i) for n, i in TWO_IFACES]
    got = _both(tmp_path, ["-i", "va", "-i", "vc"], feeds, write=False)
    one, two = got[1][0], got[2][0]
    assert _codes(two["findings"]) == _codes(one["findings"])
    assert _verdicts(two) == _verdicts(one)
    assert two["capture"]["frames"] == one["capture"]["frames"]
    assert _esp(two) == _esp(one)
    files = {f["file"] for x in two["findings"] for f in x["evidence"]["frames"]}
    assert files and files <= {f"live:{i}:worker{k}" for i in ("va", "vc") for k in (0, 1)}


def _spis_by_iface(path) -> dict:
    """``{interface name: {SPI hex}}`` of the ESP (IP protocol 50) in a written pcapng file."""
    from dissect.vpn.capture import open_capture

    out: dict = {}
    with open(path, "rb") as fh:
        r = open_capture(fh)
        recs = list(r.records())
        names = [i.name for i in r.interfaces]
    for _ts, _lt, data, _w, _off, itf in recs:
        if data[12:14] == b"\x08\x00" and data[23] == 50:
            out.setdefault(names[itf], set()).add(bytes(data[34:38]).hex())
    return out


@pytest.mark.root
def test_workers_same_sas_on_two_interfaces(tmp_path):
    """The same 16 ESP SAs sent into two interfaces (a mirror of two ports both carrying
    them): the workers join the interfaces' fanout groups one after the other, so both groups
    list them in one order and an SA's packets go to the same worker on both interfaces (its
    state is never split between workers); the SAs' statistics and the frames they cite are
    those of analyze of the written files."""
    need_root()
    import os

    bench = Path(__file__).resolve().parents[2] / "bench" / "live_bench.py"
    out = tmp_path / "w"
    report = tmp_path / "live.json"
    n = 16 * 300
    with Netns2() as ns:
        live = Live(ns, "-i", "vc", "--workers", "2", "--write", str(out), "--events", "none",
                    "--format", "json", "-o", str(report), "--quiet")
        env = dict(os.environ, LIVE_BENCH_FRAMES=str(n))
        for itf in ("vb", "vd"):
            cp = subprocess.run(ns.cmd(sys.executable, str(bench), "send", itf, "20000", "2"),
                                capture_output=True, text=True, timeout=120, env=env)
            assert cp.returncode == 0, cp.stderr
        time.sleep(1.5)
        rc = live.stop()
    assert rc in (0, 1), "".join(live.err)
    files = sorted(out.glob("*.pcapng"))
    assert len(files) == 2
    per = [_spis_by_iface(f) for f in files]
    for k in (0, 1):  # each worker got the same SAs on both interfaces
        assert per[k].get("va", set()) == per[k].get("vc", set()), per
    got = [per[k].get("va", set()) for k in (0, 1)]
    assert all(got) and not got[0] & got[1] and len(got[0] | got[1]) == 16, got
    r = json.loads(report.read_text())
    assert r["capture"]["frames"] == 2 * n
    assert not [w for w in r["capture"]["warnings"] if "both on a worker" in w]
    ana = _analyze_written(*files)
    assert sorted(json.dumps(s, sort_keys=True) for s in r["esp_sas"]) == \
        sorted(json.dumps(s, sort_keys=True) for s in ana["esp_sas"])
    assert _cited(r) == _cited(ana)


KEYED = [("ikev2_healthy", None), ("ikev2_esp_loss", None), ("ikev2_esp_loss", 1)]


@pytest.mark.root
@pytest.mark.parametrize("name,lines", KEYED)
def test_workers_decrypt_keyed_esp(tmp_path, name, lines):
    """A lab capture with its esp_sa keys replayed into live --keys --workers 2: the keyed SAs
    are decrypted in the parent exactly as with one process (the same decryption counts, inner
    flows, findings and verdicts), and as analyze --keys of the written files shows.  With
    ``lines``: a key table of that many of its SAs only, so that the other SAs are tracked in
    the workers beside the keyed ones decrypted in the parent."""
    need_root()
    keys = LAB / name / "keys"
    if not keys.exists():
        pytest.fail(f"keys of {name} missing")
    if lines is not None:
        table = (keys / "esp_sa").read_text().splitlines(keepends=True)
        keys = tmp_path / "esp_sa"
        keys.write_text("".join(table[:lines]))
    got = _both(tmp_path, ["-i", "va", "--keys", str(keys)], [(_lab(name), "vb")])
    (one, _f1), (two, files2) = got[1], got[2]
    dec1 = [s for s in one["esp_sas"] if s.get("decryption")]
    assert dec1, "no SA decrypted with one process"
    assert all(s["decryption"]["opened"] > 0 for s in dec1), dec1
    if lines is not None:
        assert len(dec1) == lines < len(one["esp_sas"])
    assert _esp(two) == _esp(one)
    assert _codes(two["findings"]) == _codes(one["findings"])
    assert _verdicts(two) == _verdicts(one)
    ana = _analyze_written(*files2, extra=("--keys", str(keys)))
    assert _esp(two) == _esp(ana)
    assert _cited(two) == _cited(ana)


VANTAGE = "ikev2_path_esp_oneway"


@pytest.mark.root
def test_workers_vantage_points(tmp_path):
    """Two capture points (--vantage NAME=IFACE), each fed its own lab capture of one tunnel:
    --workers 2 gives the findings (PATH_LOSS with its location), verdicts, points and paths
    of --workers 1 (each worker tracks the ESP of each point apart; the samples and holes
    of the points' SAs are merged into each point's view)."""
    need_root()
    feeds = [(_lab(VANTAGE, f"{VANTAGE}-router-in.pcap"), "vb"),
             (_lab(VANTAGE, f"{VANTAGE}-router-out.pcap"), "vd")]
    args = ["--vantage", "router-in=va", "--vantage", "router-out=vc"]
    got = _both(tmp_path, args, feeds)
    (one, _f1), (two, files2) = got[1], got[2]
    assert _codes(two["findings"]) == _codes(one["findings"])
    assert "PATH_LOSS" in _codes(one["findings"]) or "ESP_ONE_WAY" in _codes(one["findings"])
    assert _verdicts(two) == _verdicts(one)
    assert two["capture"]["frames"] == one["capture"]["frames"]
    assert [p["name"] for p in two["vantage_points"]] == ["router-in", "router-out"]
    assert _locations(two) == _locations(one)
    assert any(t.get("path") for t in one["tunnels"])
    assert _paths(two) == _paths(one)
    # the written files (one per worker, both interfaces in each) analysed
    # with the same points: the same findings, locations and cited frames
    ana = _analyze_written(extra=_vantage_of(files2))
    assert _codes(two["findings"]) == _codes(ana["findings"])
    assert _locations(two) == _locations(ana)
    assert _cited(two) == _cited(ana)


def _locations(r) -> list:
    """The findings' codes with their locations (a vantage point's loss: between which points)."""
    return sorted((f["code"], json.dumps(f.get("location"), sort_keys=True))
                  for f in r["findings"])


def _paths(r) -> list:
    """The tunnels' paths over the vantage points: order, packets per point, losses."""
    out = []
    for t in r["tunnels"]:
        p = t.get("path") or {}
        out.append(json.dumps([t["id"], p.get("order"), p.get("packets")], sort_keys=True))
        out += sorted(json.dumps([t["id"]] + [x.get(k) for k in
                                              ("kind", "from", "to", "direction", "lost")])
                      for x in p.get("losses", []))
    return sorted(out)


def _vantage_of(files) -> list:
    """analyze's --vantage options for the written files: each point is its interface in every
    worker's file."""
    return [a for point, itf in (("router-in", "va"), ("router-out", "vc")) for f in files
            for a in ("--vantage", f"{point}={f}#{itf}")]


VANTAGE_KEYED = "ikev2_path_esp_loss"


@pytest.mark.root
def test_workers_vantage_points_with_keys(tmp_path):
    """--vantage and --keys together: two capture points of one tunnel whose ESP keys are
    given (the keyed SAs decrypted in the parent, each point's ESP tracked apart, the points
    merged into the path): --workers 2 gives the decryption results, findings, locations,
    verdicts and paths of --workers 1, and both match analyze --keys of the written files
    with the same points."""
    need_root()
    keys = LAB / VANTAGE_KEYED / "keys"
    if not keys.exists():
        pytest.fail(f"keys of {VANTAGE_KEYED} missing")
    feeds = [(_lab(VANTAGE_KEYED, f"{VANTAGE_KEYED}-router-in.pcap"), "vb"),
             (_lab(VANTAGE_KEYED, f"{VANTAGE_KEYED}-router-out.pcap"), "vd")]
    args = ["--vantage", "router-in=va", "--vantage", "router-out=vc", "--keys", str(keys)]
    got = _both(tmp_path, args, feeds)
    (one, files1), (two, files2) = got[1], got[2]
    dec1 = [s for s in one["esp_sas"] if s.get("decryption")]
    assert dec1 and all(s["decryption"]["opened"] > 0 for s in dec1), one["esp_sas"]
    assert "PATH_LOSS" in _codes(one["findings"]), _codes(one["findings"])
    assert any(t.get("path") for t in one["tunnels"])
    assert [p["name"] for p in two["vantage_points"]] == ["router-in", "router-out"]
    assert two["capture"]["frames"] == one["capture"]["frames"]
    assert _esp(two) == _esp(one)
    assert _codes(two["findings"]) == _codes(one["findings"])
    assert _locations(two) == _locations(one)
    assert _verdicts(two) == _verdicts(one)
    assert _paths(two) == _paths(one)
    for r, files in ((one, files1), (two, files2)):
        ana = _analyze_written(extra=_vantage_of(files) + ["--keys", str(keys)])
        assert _esp(r) == _esp(ana)
        assert _codes(r["findings"]) == _codes(ana["findings"])
        assert _locations(r) == _locations(ana)
        assert _verdicts(r) == _verdicts(ana)
        assert _paths(r) == _paths(ana)
        assert _cited(r) == _cited(ana)


@pytest.mark.parametrize("seed", range(6))
def test_sample_sets_merge_as_one_pass(seed):
    """A vantage point's samples of one SPI taken in parts (the SPI's packets split over
    workers, in any order and any proportion) and merged give the set one pass makes: the
    same stride and the same numbers with the first packet's time; sets of two epochs of the
    numbering are not merged."""
    import random

    from pcapvpn.live.workers import _merge_samples
    from pcapvpn.track.vantage.points import SampleSet

    rnd = random.Random(seed)
    n = rnd.choice([100, 600, 3000, 20000])
    pkts = [(rnd.randrange(1, 4 * n), 1000.0 + i * 0.001, ("f", i), 100) for i in range(n)]
    pkts += [pkts[rnd.randrange(n)] for _ in range(20)]  # duplicates (a copy at one point)
    one = SampleSet()
    for q, t, ref, ln in pkts:
        one.add(q, t, ref, ln)
    parts = [SampleSet() for _ in range(rnd.choice([2, 3]))]
    for q, t, ref, ln in pkts:
        rnd.choice(parts).add(q, t, ref, ln)
    merged = _merge_samples(parts)
    assert merged is not None
    assert merged.mask == one.mask and merged.mask > 0 or n <= 512
    assert merged.d == one.d
    other = SampleSet(epoch=1, since=1005.0)
    assert _merge_samples([parts[0], other]) is None


# -- an interface that is not Ethernet ------------------------------------------------------------

class NetnsTun(Netns):
    """A namespace with the veth pair ``va`` <-> ``vb`` and a TUN interface ``t0`` (raw IP:
    ARPHRD_NONE), fed by :func:`_tun_main`."""

    def __enter__(self):
        super().__enter__()
        self.run("tuntap", "add", "dev", "t0", "mode", "tun")
        self.run("link", "set", "t0", "up")
        return self


def _tun_main(argv):
    """Write the IP packets of capture ``argv[1]`` into TUN interface ``argv[0]`` at their
    original timing (they arrive on it as received packets)."""
    import fcntl
    import os
    import struct

    from pcapvpn.sources import open_source

    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", argv[0].encode(), 0x0001 | 0x1000))
    ip = ((f[2], bytes(f[4])) for f in open_source(argv[1]).frames()
          if bytes(f[4][12:14]) in (b"\x08\x00", b"\x86\xdd"))
    for _ts, data in paced(ip):
        os.write(fd, data[14:])
    time.sleep(0.3)
    os.close(fd)


def _run_tun(tmp_path, workers, eth, raw):
    report = tmp_path / "live.json"
    out = tmp_path / "w"
    with NetnsTun() as ns:
        live = Live(ns, "-i", "t0", "--workers", str(workers), "--write", str(out), "--events",
                    "none", "--format", "json", "-o", str(report), "--quiet")

        def tun():
            cp = subprocess.run(ns.cmd(sys.executable, str(Path(__file__).resolve()), "tun",
                                       "t0", str(raw)), capture_output=True, text=True,
                                timeout=600)
            assert cp.returncode == 0, cp.stderr

        with ThreadPoolExecutor(2) as ex:
            futs = [ex.submit(replay, ns, eth, iface="vb"), ex.submit(tun)]
            for f in futs:
                f.result()
        time.sleep(0.5)
        rc = live.stop(sig=signal.SIGINT)
    assert rc in (0, 1), "".join(live.err)
    return json.loads(report.read_text()), sorted(out.glob("*.pcapng"))


@pytest.mark.root
def test_workers_raw_ip_interface(tmp_path):
    """An Ethernet interface and a TUN interface (raw IP frames): the workers hand every frame
    of the raw-IP ring to the parent, which decodes them as one process does: the same
    findings, verdicts, counts and ESP SAs as --workers 1; analyze of the written files cites
    the same frames."""
    need_root()
    eth, raw = _lab("ikev2_esp_loss"), _lab("ikev2_nat")
    with ThreadPoolExecutor(2) as ex:
        futs = {w: ex.submit(_run_tun, tmp_path / f"w{w}", w, eth, raw) for w in (1, 2)}
        got = {w: f.result() for w, f in futs.items()}
    (one, _f1), (two, files2) = got[1], got[2]
    ids = {t["id"] for t in one["tunnels"]}
    assert len(ids) >= 2, ids  # both captures' tunnels
    assert _codes(two["findings"]) == _codes(one["findings"])
    assert _verdicts(two) == _verdicts(one)
    assert two["capture"]["frames"] == one["capture"]["frames"]
    assert _esp(two) == _esp(one)
    ana = _analyze_written(*files2)
    assert _cited(two) == _cited(ana)


# -- what --workers still refuses -----------------------------------------------------------------

@pytest.mark.parametrize("args,words", [
    (["-i", "lo", "--backend", "tcpdump"], "afpacket"),
    (["-i", "any"], "'any'"),
    (["-i", "lo", "-i", "lo"], "lo is given twice"),
])
def test_workers_limits_exit_2(args, words):
    """The limits left: exit status 2 and a message naming the option and the cause (no
    capture is started for them: they are checked first)."""
    cp = subprocess.run([sys.executable, "-m", "pcapvpn", "live", "--workers", "2", "--quiet",
                         "--events", "none", *args],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 2, cp.stderr
    assert "--workers" in cp.stderr and words in cp.stderr, cp.stderr


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "tun":
        _tun_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "replay":
        _replay_main(sys.argv[2:])
