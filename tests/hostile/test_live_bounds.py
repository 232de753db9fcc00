"""``pcapvpn live`` under hostile input (issue 20): what it holds stays under ``--max-sas`` and
the Limits (eviction by age and size, long-lived IKE SAs trimmed), and a stop (SIGTERM) builds
the final report at once from the state held: a forked evaluation still running is abandoned,
the rings are drained for a bounded time, the rules run once."""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import pytest

from pcapvpn.decode import Limits
from pcapvpn.live import LiveOptions, LiveSession

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from mutated import LAB, MutatedCapture, lab_frames  # noqa: E402


def _held(s):
    tr = s.tracker
    it = tr.ike_tracker
    return {"sas": len(it.sas) + len(tr.esp_tracker._sas), "vpn": len(tr.vpn_tracker.tunnels),
            "messages": it.kept, "bytes": it.kept_bytes,
            "per_sa": max((len(sa.messages) for sa in it.sas), default=0)}


def test_memory_held_stays_under_max_sas_and_the_limits():
    max_sas = 80
    lim = Limits(ike_max_messages=1500, ike_max_messages_per_sa=200)
    cap = MutatedCapture(lab_frames())
    clock = [cap.t]
    s = LiveSession(LiveOptions(interfaces=["sim"], max_sas=max_sas, limits=lim), [],
                    clock=lambda: clock[0], captures=[cap])
    seen = []
    for rnd in range(40):  # 40 x 500 frames, an evaluation after each 2,000
        s._feed(0, cap, [])
        clock[0] = cap.t
        if rnd % 4 == 3:
            s._evaluate(clock[0])
            seen.append(_held(s))
    # after each evaluation: under --max-sas and the message budget, per-SA trimmed
    for h in seen:
        assert h["sas"] <= max_sas and h["vpn"] <= max_sas
        assert h["messages"] <= 0.9 * lim.ike_max_messages
        assert h["per_sa"] <= lim.ike_max_messages_per_sa // 2
    # flat: the bounds were reached early and held from then on (eviction did the work)
    assert max(h["sas"] for h in seen[:len(seen) // 2]) >= 0.8 * max_sas
    assert s.tracker.evicted_sas > 0
    res = s.finish()
    assert res.report.capture.frames == cap.i


def test_other_vpn_tunnels_beyond_the_bound_go_least_recently_active_first():
    from pcapvpn.track.vpn import VpnTracker

    vt = VpnTracker()

    class T:
        def __init__(self, ts):
            self.last_ts = ts
            self.client = self.server = None

    for i in range(10):
        vt.tunnels[("k", i)] = T(100.0 + i)
    gone = vt.expire(limit=0.0, keep=4)
    assert len(gone) == 6 and sorted(vt.tunnels) == [("k", i) for i in range(6, 10)]


def test_stop_abandons_a_running_evaluation_and_runs_the_rules_once(monkeypatch):
    import pcapvpn.rules as rules

    path = LAB / "ikev2_healthy" / "ikev2_healthy.pcap"
    frames = lab_frames([path])
    cap = MutatedCapture(frames)
    cap.rng = random.Random(0)
    cap.read = _plain_read(cap, frames)
    clock = [cap.t]
    s = LiveSession(LiveOptions(interfaces=["sim"]), [], clock=lambda: clock[0],
                    captures=[cap])
    s._feed(0, cap, [])
    # a forked evaluation that would take a minute
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        time.sleep(60)
        os._exit(0)
    os.close(w)
    s._child = (pid, r, [], time.perf_counter())
    calls = []
    real = rules.run_rules

    def counting(state):
        calls.append(state)
        return real(state)

    monkeypatch.setattr(rules, "run_rules", counting)
    res = s.finish()
    assert len(calls) == 1  # the report's analysis is also the last evaluation
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # killed and reaped
    assert s._child is None
    assert {f.code for f in res.findings} == {f.code for f in s.last_eval["current"].values()}


def _plain_read(cap, frames):
    def read(out, fidx, num, max_blocks=None):
        if cap.i >= len(frames):
            return 0
        n = 0
        for lt, data in frames:
            cap.t += 0.001
            n += 1
            out.append((fidx, num + n, cap.t, lt, data, len(data), 0))
        cap.i = len(frames)
        return n
    return read


def test_stop_drains_an_endless_ring_for_a_bounded_time(monkeypatch):
    cap = MutatedCapture(lab_frames())
    clock = [cap.t]
    s = LiveSession(LiveOptions(interfaces=["sim"]), [], clock=lambda: clock[0],
                    captures=[cap])
    monkeypatch.setattr(LiveSession, "DRAIN_SECONDS", 0.2)
    res = s.finish()  # the capture never runs dry: the drain must still end
    assert 0 < res.report.capture.frames == cap.i
