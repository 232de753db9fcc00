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

from pcapvpn.limits import Limits
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
    from pcapvpn.rules.incremental import RuleCache

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
    real = RuleCache.run

    def counting(self, state):
        calls.append(state)
        return real(self, state)

    monkeypatch.setattr(RuleCache, "run", counting)
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


# -- flat memory and a stop bounded by what is held (counted, not timed) ---------------------------

#: small bounds (live takes the lower of these and those of --max-sas), reached within a few
#: thousand flood frames
SMALL = Limits(max_flows=16, plain_max_flows=32, plain_max_dns=32, frag_max_sets=16,
               tcp_max_streams=16, ike_max_messages=200, ike_max_messages_per_sa=32,
               report_max_items=20)


def _flood(frames, max_sas, rounds, limits=SMALL, seed=20):
    """A session fed ``rounds`` x 500 mutated frames, evaluated (expiry, eviction) after each
    2,000; returns it with what it held after each evaluation."""
    cap = MutatedCapture(frames, seed=seed)
    clock = [cap.t]
    s = LiveSession(LiveOptions(interfaces=["sim"], max_sas=max_sas, limits=limits), [],
                    clock=lambda: clock[0], captures=[cap])
    seen = []
    for rnd in range(1, rounds + 1):
        s._feed(0, cap, [])
        clock[0] = cap.t
        if rnd % 4 == 0:
            s._evaluate(clock[0])
            seen.append((cap.i, _containers(s)))
    cap.dry = True
    return s, cap, seen


def _containers(s) -> dict:
    """What the session holds that the flood makes grow: entries (and bytes) per container."""
    tr = s.tracker
    it = tr.ike_tracker
    pt = tr.plain_tracker
    d = s.decoder
    return {
        "ike+esp sas": len(it.sas) + len(tr.esp_tracker._sas),
        "vpn tunnels": len(tr.vpn_tracker.tunnels),
        "ike messages": it.kept, "ike bytes": it.kept_bytes,
        "plain flows": len({id(f) for v in pt.views.values() for f in v.flows.values()}),
        "dns queries": len(pt._dns_open),
        "incomplete fragment sets": len(tr.incomplete), "icmp errors": len(tr.icmp_errors),
        "tcp connections": len(tr.tcp), "keepalive flows": len(tr.keepalive_tracker._flows),
        "fragment sets": len(d._frags), "fragment bytes": d._frag_bytes,
        "tcp directions": len(d.tcp.dirs), "tcp bytes": d.tcp.bytes,
    }


def _bounds(s, max_sas) -> dict:
    lim = s.limits
    return {
        "ike+esp sas": max_sas, "vpn tunnels": max_sas,
        "ike messages": lim.ike_max_messages, "ike bytes": lim.ike_max_bytes,
        "plain flows": lim.plain_max_flows, "dns queries": lim.plain_max_dns,
        "incomplete fragment sets": lim.max_flows, "icmp errors": lim.max_flows,
        "tcp connections": lim.max_flows, "keepalive flows": lim.max_flows,
        "fragment sets": lim.frag_max_sets, "fragment bytes": lim.frag_max_bytes,
        "tcp directions": lim.tcp_max_streams, "tcp bytes": lim.tcp_max_bytes,
    }


def test_live_bounds_follow_max_sas():
    lim = Limits().for_live(2000)
    assert lim.ike_max_sas == lim.esp_max_sas == lim.vpn_max_tunnels == lim.max_flows == 2000
    assert lim.ike_max_messages == 16_000 and lim.ike_max_bytes == 16_000 * 1024
    assert lim.plain_max_flows == lim.plain_max_dns == 2000
    assert lim.ike_max_messages_per_sa == 64 and lim.report_max_items == 200
    big = Limits().for_live(10**6)  # never above the limits given (the defaults here)
    for name in Limits.LIVE:
        assert getattr(big, name) <= getattr(Limits(), name)
    # a lower limit given by the operator stays
    assert Limits(max_flows=5).for_live(2000).max_flows == 5


def test_memory_flat_at_max_sas_under_a_flood():
    """Every container the flood makes grow stays under its bound after each evaluation, and
    once the bounds are reached the objects held stop growing: at n and 2n flood frames the
    same (within the churn of eviction)."""
    import gc

    max_sas = 24

    def objects(s):
        gc.collect()
        # (a type's __module__ is not always a str: numpy's Cython types left by earlier tests)
        return sum(1 for o in gc.get_objects()
                   if isinstance(m := getattr(type(o), "__module__", None), str)
                   and m.startswith(("pcapvpn", "dissect")))

    s1, _cap, _seen = _flood(_frames_cached(), max_sas, 80)
    n1 = objects(s1)
    del s1, _cap, _seen
    s, cap, seen = _flood(_frames_cached(), max_sas, 160)
    n2 = objects(s)
    bounds = _bounds(s, max_sas)
    for frames, held in seen:
        over = {k: (v, bounds[k]) for k, v in held.items() if v > bounds[k]}
        assert not over, f"after {frames} frames: {over}"
    # the bounds were reached (eviction did the work), not merely never approached
    full = seen[len(seen) // 4][1]
    for k in ("ike+esp sas", "plain flows", "incomplete fragment sets", "fragment sets",
              "tcp directions"):
        assert full[k] >= 0.7 * bounds[k], (k, full[k], bounds[k])
    assert s.tracker.evicted_sas > 0 and s.tracker.plain_tracker.flows_evicted > 0
    # flat: twice the frames, the same objects held (a growth with the input would double)
    assert n2 <= 1.15 * n1, (n1, n2)
    res = s.finish()
    # what the bounds dropped is counted in the report
    assert any(f.code == "CAPTURE_LIMITS" for f in res.findings)
    assert any(w.startswith("live: ") for w in res.report.capture.warnings)


_FRAMES: list = []


def _frames_cached():
    if not _FRAMES:
        _FRAMES.extend(lab_frames())
    return _FRAMES


def test_stop_work_bounded_by_the_state_held_not_by_the_frames_seen():
    """The stop (finish: the rules once over the held state, the report's lists) does the same
    work after n and after 2n flood frames: it depends on what the bounds let the session hold,
    and the report lists at most ``report_max_items`` of each kind."""
    import json

    from workcount import WorkCounter

    from pcapvpn.report import render

    max_sas = 24
    work = []
    for rounds in (160, 320):
        s, cap, _seen = _flood(_frames_cached(), max_sas, rounds)
        with WorkCounter() as w:
            res = s.finish()
            text = render(res.report, "json")
        work.append(sum(w.counts.values()))
        d = json.loads(text)
        for k in ("tunnels", "ike_sas", "esp_sas"):
            assert len(d[k]) <= s.limits.report_max_items
        assert d["capture"]["frames"] == cap.i
    assert work[1] <= 1.3 * work[0], work
