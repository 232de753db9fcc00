"""The stop's drain (issue 20): the rings are read for at most ``DRAIN_SECONDS``; what is still
in a ring after that is counted, not decoded, and said in the report (capture warnings, the
findings about an absence) — nothing silently dropped."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_live import Live, Netns, Recorder, _lab, need_root  # noqa: E402

from mutated import SimCapture  # noqa: E402  (bench/mutated.py, on the path test_live set)


class Backlog(SimCapture):
    """A ring holding a file's frames: those up to ``now`` are read as they come; once
    ``stopping``, every frame left is the ring's backlog, read one per ``delay`` seconds (a
    decoder that cannot keep up).  ``unread()`` is what it still holds, as a ring's."""

    def __init__(self, path, delay=0.03):
        from pcapvpn.sources import open_source

        src = open_source(str(path))
        self.frames = list(src.frames())
        src.close()
        self.name = "sim0"
        self.delay = delay
        self.i = 0
        self.now = 0.0
        self.stopping = False
        self.reads_at_stop = 0

    def read(self, out, fidx, num, max_blocks=None):
        if self.stopping:
            if self.i >= len(self.frames):
                return 0
            self.reads_at_stop += 1
            time.sleep(self.delay)
            todo = self.frames[self.i:self.i + 1]
        else:
            j = self.i
            while j < len(self.frames) and self.frames[j][2] <= self.now:
                j += 1
            todo = self.frames[self.i:j]
        for n, f in enumerate(todo, 1):
            out.append((fidx, num + n, f[2], f[3], f[4], f[5], 0))
            self.bytes += len(f[4])
        self.i += len(todo)
        return len(todo)

    def unread(self):
        return len(self.frames) - self.i


def _stop_with_backlog(name, share=0.5, delay=0.03):
    """A session fed the first ``share`` of capture ``name``'s frames, then stopped with the
    rest in its ring.  Returns (session, capture, result, seconds the drain and stop took)."""
    from pcapvpn.live import LiveOptions, LiveSession

    cap = Backlog(_lab(name), delay)
    cut = cap.frames[int(len(cap.frames) * share)][2]
    clock = [cap.frames[0][2]]
    s = LiveSession(LiveOptions(interfaces=["sim0"]), [Recorder()], clock=lambda: clock[0],
                    captures=[cap])
    t = clock[0]
    while t < cut:
        cap.now = clock[0] = t
        s._feed(0, cap, [])
        s._evaluate(t)
        t += 0.5
    cap.stopping = True
    clock[0] = t
    t0 = time.monotonic()
    result = s.finish()
    return s, cap, result, time.monotonic() - t0


def test_stop_counts_what_the_drain_left():
    """The drain ends at its bound; the frames still in the ring are counted in the capture
    warnings, and read + counted is every frame the ring took in."""
    from pcapvpn.live import LiveSession

    s, cap, result, _took = _stop_with_backlog("ikev2_esp_oneway")
    left = cap.unread()
    assert left > 0
    # the drain read at most what its bound allows (the first read's cost decides the rest)
    assert cap.reads_at_stop <= LiveSession.DRAIN_SECONDS / cap.delay + 1
    assert s.frames + left == len(cap.frames)
    assert s.unread == {"sim0": left}
    warn = [w for w in result.report.capture.warnings if "not analysed" in w]
    assert warn == [f"live: sim0: {left} frame(s) captured before the stop were still in the "
                    f"capture ring and were not analysed (the stop reads the ring for at most "
                    f"{LiveSession.DRAIN_SECONDS:g} s)"]


def test_stop_left_frames_noted_on_absence_findings():
    """An absence finding at the stop says the capture left packets unread."""
    from pcapvpn.live.policy import ABSENCE_CODES

    _s, cap, result, _took = _stop_with_backlog("ikev2_esp_loss")
    left = cap.unread()
    assert left > 0
    absent = [f for f in result.findings if f.code in ABSENCE_CODES]
    assert absent, [f.code for f in result.findings]
    for f in absent:
        assert f"left {left} captured packet(s) unread in its ring at the stop" in str(f.detail)


def test_stop_without_backlog_says_nothing():
    """A ring emptied by the drain: no warning, no note (the report of before)."""
    s, cap, result, _took = _stop_with_backlog("ikev2_esp_oneway", share=0.999, delay=0.0)
    assert cap.unread() == 0
    assert s.unread == {}
    assert not [w for w in result.report.capture.warnings if "not analysed" in w]
    assert not [f for f in result.findings if "unread in its ring" in str(f.detail)]


def test_annotate_drops_unread():
    from pcapvpn.live.policy import annotate_drops

    class F:
        def __init__(self, code):
            self.code = code
            self.detail = "d."

    fs = [F("ESP_ONE_WAY"), F("IKE_AUTH_FAILED")]
    annotate_drops(fs, 0, unread=7)
    assert fs[0].detail.endswith("dropped 0 packet(s) itself (capture ring / interface) and left "
                                 "7 captured packet(s) unread in its ring at the stop, so this "
                                 "absence may be the capture's, not the network's.")
    assert fs[1].detail == "d."
    annotate_drops(fs, 0)  # nothing lost: nothing said
    fs2 = [F("ESP_ONE_WAY")]
    annotate_drops(fs2, 3)
    assert fs2[0].detail == ("d. Note: the capture dropped 3 packet(s) itself (capture ring / "
                             "interface), so this absence may be the capture's, not the "
                             "network's.")


def test_drain_warning_translated():
    from pcapvpn.i18n import Lang

    ja = Lang("ja")
    w = ("live: eth0: 12 frame(s) captured before the stop were still in the capture ring and "
         "were not analysed (the stop reads the ring for at most 0.1 s)")
    out = ja.msg(w)
    assert out != w and "12" in out and "eth0" in out and "0.1" in out


def test_ring_unread_counts_without_reading():
    """``AfPacketRing.unread``: the packets the kernel put in the ring less those handed on,
    the block being filled included, nothing decoded (UDP to a port of our own on loopback)."""
    need_root()
    from pcapvpn.live.bpf import compile_filter
    from pcapvpn.live.capture import AfPacketRing

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    ring = AfPacketRing("lo", compile_filter(f"udp dst port {port}"), block_size=1 << 16,
                        block_nr=16, timeout_ms=10)
    try:
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(300):
            tx.sendto(b"x" * 100, ("127.0.0.1", port))
        time.sleep(0.2)
        st = ring.stats()
        taken = st["received"] - st["drops"]
        # loopback: each packet is seen leaving and arriving
        assert taken == 600 and st["drops"] == 0
        assert ring.unread() == 600
        out: list = []
        n = ring.read(out, 0, 0, max_blocks=1)
        assert 0 < n < 600
        assert ring.unread() == 600 - n
        while ring.read(out, 0, 0):
            pass
        assert ring.unread() == 0
    finally:
        ring.close()
        rx.close()


def _flood_script(tmp_path, total: int) -> Path:
    """A sender of ``total`` ESP frames into ``vb``, each with an IP option (NOPs), so that
    they take the general path, not the batched one: reading them all takes far longer than
    the drain's bound."""
    sender = tmp_path / "flood.py"
    sender.write_text(
        "import socket, struct\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('vb', 0))\n"
        f"for i in range({total}):\n"
        "    p = struct.pack('!II', 0x4000, i + 1) + bytes(64)\n"
        "    ip = struct.pack('!BBHHHBBH4s4s4s', 0x46, 0, 24 + len(p), 0, 0, 64, 50, 0,\n"
        "                     bytes([192, 0, 2, 1]), bytes([198, 51, 100, 2]), b'\\x01' * 4)\n"
        "    s.send(b'\\x02' * 6 + b'\\x04' * 6 + b'\\x08\\x00' + ip + p)\n")
    return sender


def _left_in_report(r) -> int:
    left = 0
    for w in r["capture"]["warnings"]:
        m = re.match(r"live: va: (\d+) frame\(s\) captured before the stop were still", w)
        if m:
            left += int(m.group(1))
    return left


@pytest.mark.root
@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "workers-2"])
def test_live_stop_backlog_counted(tmp_path, workers):
    """``pcapvpn live`` (and ``--workers 2``) held back (SIGSTOP) while 150,000 ESP frames fill
    its 64 MiB ring(s), then stopped: the drain reads for at most ``DRAIN_SECONDS`` (each worker
    its own ring) and counts what it left; every frame is analysed, dropped by the kernel, or
    counted as left in the ring."""
    need_root()
    total = 150000
    sender = _flood_script(tmp_path, total)
    report = tmp_path / "r.json"
    extra = ("--workers", str(workers), "--events", "none") if workers else ()
    with Netns() as ns:
        live = Live(ns, "--buffer", "64", "--quiet", "--format", "json", "-o", str(report),
                    *extra)
        kids = subprocess.run(["pgrep", "-P", str(live.proc.pid)], capture_output=True,
                              text=True).stdout.split() if workers else []
        assert len(kids) == workers
        pids = [live.proc.pid] + [int(k) for k in kids]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            subprocess.run(ns.cmd(sys.executable, str(sender)), check=True, timeout=300)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        live.stop(sig=signal.SIGTERM)
    r = json.loads(report.read_text())
    left = _left_in_report(r)
    drops = r["capture"]["drops"]["os_drop"] or 0
    assert r["capture"]["frames"] + drops + left == total, (r["capture"]["frames"], drops, left)
    assert left > 0, "the drain read the whole backlog: nothing left to count"
