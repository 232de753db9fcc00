"""The stop of ``pcapvpn live`` with a forked evaluation still running (issue 20: SIGTERM answered
within a second or two).  The child is not thrown away when it is about to end: its rules' cache
is merged and the final rules do only what changed since its fork; one expected to run long, or
late, is killed as before.  In every case the final report is the one of a stop with no child
(the same document), and the wait is bounded."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_live import FileCapture, Recorder, _lab  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")


def _held(path, tail=3.0):
    """A session fed all of ``path`` with one in-process evaluation per 0.5 s, then 4 more s of
    frames (there are none: the clock moves) unevaluated."""
    from pcapvpn.live import LiveOptions, LiveSession
    from pcapvpn.sources import open_source

    src = open_source(str(path))
    t0 = next(iter(src.frames()))[2]
    src.close()
    cap = FileCapture(path)
    clock = [t0]
    s = LiveSession(LiveOptions(interfaces=["sim"]), [Recorder()], clock=lambda: clock[0],
                    captures=[cap])
    t = t0
    while not cap.done:
        cap.now = clock[0] = t
        s._feed(0, cap, [])
        if not cap.done:
            s._evaluate(t)
        t += 0.5
    clock[0] = t + tail
    return s, clock


def _doc(result) -> str:
    from pcapvpn.report.json import render_json

    return render_json(result.report)


@pytest.mark.parametrize("name", ["ikev2_dpd_dead_peer", "ikev2_peer_restart"])
def test_child_about_to_end_is_merged(name):
    """A forked evaluation expected to end soon is waited for at the stop and its cache merged:
    the final rules then run over fewer groups, and the report is the one without a child."""
    path = _lab(name)
    s, clock = _held(path)
    base = _doc(s.finish())
    plain_stats = dict(s.rule_cache.stats)
    s, clock = _held(path)
    s.child_seconds = 0.01  # the previous forked evaluation's cost: this one ends soon
    s.STOP_WAIT = 0.6
    assert s._fork_evaluation(clock[0])
    t0 = time.perf_counter()
    res = s.finish()
    assert s.stop_child == "merged"
    assert s._child is None
    assert _doc(res) == base
    assert time.perf_counter() - t0 < 10
    # the merged cache: the child's run made its groups clean, the final one reran none of them
    # (nothing arrived after the fork; only deadlines or the clock's texts may call a rule again)
    assert s.rule_cache.stats["dirty"] <= plain_stats["dirty"]
    assert s.rule_cache.stats["dirty"] == 0


def test_child_expected_late_is_killed():
    """A forked evaluation whose expected end is beyond ``STOP_WAIT`` is killed at once."""
    path = _lab("ikev2_dpd_dead_peer")
    s, clock = _held(path)
    base = _doc(s.finish())
    s, clock = _held(path)
    s.child_seconds = 1000.0
    assert s._fork_evaluation(clock[0])
    pid = s._child[0]
    res = s.finish()
    assert s.stop_child == "killed"
    assert _doc(res) == base
    with pytest.raises(ChildProcessError):
        __import__("os").waitpid(pid, 0)  # reaped


def test_child_killed_at_the_stop_is_reaped_after_the_rules(monkeypatch):
    """The forked evaluation killed at the stop is not waited for before the final report's
    rules (its copy of a big state takes tens of milliseconds to tear down, on the other core
    meanwhile); it is reaped before ``finish`` returns (no zombie), and the report is the same."""
    import os

    from pcapvpn.live import evaluate

    path = _lab("ikev2_dpd_dead_peer")
    s, clock = _held(path)
    base = _doc(s.finish())
    s, clock = _held(path)
    s.child_seconds = 1000.0
    assert s._fork_evaluation(clock[0])
    pid = s._child[0]
    order = []
    real_wait = os.waitpid

    def waitpid(p, flags):
        if p == pid:
            order.append(("reap", flags))
        return real_wait(p, flags)

    monkeypatch.setattr(evaluate.os, "waitpid", waitpid)
    run = s.rule_cache.run_split

    def rules(state):
        order.append(("rules", None))
        return run(state)

    monkeypatch.setattr(s.rule_cache, "run_split", rules)
    res = s.finish()
    assert s.stop_child == "killed"
    assert order == [("rules", None), ("reap", 0)]
    assert _doc(res) == base
    with pytest.raises(ChildProcessError):
        real_wait(pid, 0)  # reaped


def test_child_later_than_expected_is_killed_within_the_bound(monkeypatch):
    """A forked evaluation expected soon that does not end: the wait ends at ``STOP_WAIT`` and
    the child is killed (never an unbounded wait); the report is the same."""
    path = _lab("ikev2_dpd_dead_peer")
    s, clock = _held(path)
    base = _doc(s.finish())
    s, clock = _held(path)
    real = s._compute

    def slow(now, final=False, **kw):
        time.sleep(60)  # the child only: the parent's final run below does not call _compute
        return real(now, final, **kw)

    monkeypatch.setattr(s, "_compute", slow)
    s.child_seconds = 0.01
    s.STOP_WAIT = 0.3
    assert s._fork_evaluation(clock[0])
    t0 = time.perf_counter()
    res = s.finish()
    waited = time.perf_counter() - t0
    assert s.stop_child == "late"
    assert waited < 30  # bounded: not the child's 60 s
    assert _doc(res) == base


def test_child_killed_by_default():
    """``STOP_WAIT`` is 0 (measured: on the bench's flood taking the cache in costs more than it
    saves): a child about to end is killed too."""
    path = _lab("ikev2_dpd_dead_peer")
    s, clock = _held(path)
    s.child_seconds = 0.01
    assert s._fork_evaluation(clock[0])
    s.finish()
    assert s.stop_child in ("killed", "late")


def test_no_child_no_wait():
    path = _lab("ikev2_dpd_dead_peer")
    s, clock = _held(path)
    s.finish()
    assert s.stop_child is None


ROOT = Path(__file__).resolve().parents[2]
EXTS = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")
CAPTURES = sorted(p for p in (ROOT / "captures").rglob("*")
                  if p.is_file() and p.name.endswith(EXTS))


def _stop_with_child(path, merge: bool, split: bool = False):
    """``path`` replayed with an evaluation every 0.5 s over its first half, an evaluation
    forked at the half, the rest fed while it runs, and the stop 40 s after the end when the
    child has ended: merged or killed.  Returns the report's JSON and what the stop did."""
    from pcapvpn.live import LiveOptions, LiveSession
    from pcapvpn.sources import open_source

    src = open_source(str(path))
    ts = [f[2] for f in src.frames()]
    src.close()
    if not ts:
        pytest.skip("no frames")
    t0, t1 = min(ts), max(ts)
    cap = FileCapture(path)
    clock = [t0]
    s = LiveSession(LiveOptions(interfaces=["sim"]), [Recorder()], clock=lambda: clock[0],
                    captures=[cap])
    t = t0
    half = (t0 + t1) / 2
    while t < half:
        cap.now = clock[0] = t
        s._feed(0, cap, [])
        s._evaluate(t)
        t += 0.5
    cap.now = clock[0] = half
    s._feed(0, cap, [])
    assert s._fork_evaluation(half)
    cap.now = clock[0] = t1 + 40.0
    while s._feed(0, cap, []):
        pass
    s.child_seconds = 1e-3 if merge else 1e9
    s.STOP_WAIT = 120.0
    # the final rules shared with a forked process whatever the size (RuleCache.run_split)
    s.rule_cache.SPLIT_ABOVE = 0 if split else 10**9
    res = s.finish()
    return _doc(res), s.stop_child


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(ROOT / "captures")))
def test_stop_with_a_merged_child_is_the_stop_without(path):
    """Every capture of captures/: the final report with the forked evaluation's cache merged
    at the stop and the final rules shared with a forked process (``run_split``) is the one
    with the child killed and the rules run here alone (byte for byte)."""
    merged, how_m = _stop_with_child(path, True, split=True)
    killed, how_k = _stop_with_child(path, False)
    assert (how_m, how_k) == ("merged", "killed")
    assert merged == killed


@pytest.mark.parametrize("at", [1, 2])
def test_stop_while_a_result_is_taken_in(monkeypatch, at):
    """A stop signal that arrives while a forked evaluation's result is being taken in (its
    rules' cache unpickled: ``at`` 1; its result: 2): the cache is merged, the result is not
    read further nor applied (no events of it; the final report raises what is present), and
    the report is the one of a stop with no child."""
    import pickle

    path = _lab("ikev2_dpd_dead_peer")
    s, clock = _held(path)
    base = _doc(s.finish())
    s, clock = _held(path)
    assert s._fork_evaluation(clock[0])
    loads = []
    real_load = pickle.load

    def load(f):  # the signal comes while this part is read (the handler: session.stop)
        loads.append(1)
        out = real_load(f)
        if len(loads) == at:
            s.stop()
        return out

    monkeypatch.setattr(pickle, "load", load)
    applied = []
    real_apply = s._apply
    s._apply = lambda *a, **kw: applied.append(a) or real_apply(*a, **kw)
    evaluated = []
    s._evaluate = lambda *a, **kw: evaluated.append(a)
    last = s.last_eval
    assert s._poll_child(block=True)
    monkeypatch.setattr(pickle, "load", real_load)
    del s._apply, s._evaluate
    assert len(loads) == at  # after the cache, the result is not read
    assert applied == [] and evaluated == [] and s.last_eval is last
    assert s._child is None
    assert _doc(s.finish()) == base
    # the merged cache: the final rules reran nothing the child had done
    assert s.rule_cache.stats["dirty"] == 0


def _held_forked(path, fork: bool):
    """``_held``, each evaluation forked (``fork``: as at thousands of SAs) or in process, and
    one more after the last frame (nothing changes after it but the clock)."""
    from pcapvpn.live import LiveOptions, LiveSession
    from pcapvpn.sources import open_source

    src = open_source(str(path))
    t0 = next(iter(src.frames()))[2]
    src.close()
    cap = FileCapture(path)
    clock = [t0]
    s = LiveSession(LiveOptions(interfaces=["sim"]), [Recorder()], clock=lambda: clock[0],
                    captures=[cap])

    def evaluate(t):
        if fork:
            assert s._fork_evaluation(t)
            assert s._poll_child(block=True)
        else:
            s._evaluate(t)

    t = t0
    while not cap.done:
        cap.now = clock[0] = t
        s._feed(0, cap, [])
        evaluate(t)
        t += 0.5
    clock[0] = t + 3.0
    return s, clock


@pytest.mark.parametrize("name", ["ikev2_nat", "ikev2_peer_restart", "ikev1_main_healthy"])
def test_stop_after_forked_evaluations_works_out_only_what_changed(name, monkeypatch):
    """Counted: every evaluation forked (as at thousands of SAs), nothing new since the last
    one: the stop's state build works out no IKE SA's NAT verdict again (before: every one,
    the children's never came back to this process); the report is the one of a session that
    evaluated in process."""
    import pcapvpn.track.nat as nat

    path = _lab(name)
    s, _clock = _held_forked(path, fork=False)
    base = _doc(s.finish())
    s, _clock = _held_forked(path, fork=True)
    assert s.tracker.ike_tracker.sas
    worked = []
    real = nat.nat_verdict
    monkeypatch.setattr(nat, "nat_verdict", lambda sa, *a: worked.append(sa) or real(sa, *a))
    doc = _doc(s.finish())
    assert worked == []
    assert doc == base
