"""The stop of ``pcapvpn live`` within ``--report-within`` (issue 20: SIGTERM answered within a
second or two at the default ``--max-sas``).  When the final rules over everything held are not
done by the bound, the report is the last forked evaluation's (the process holds it), with its
time and what came after it said; when they are, it is the exact one.  Nothing here measures
time: the bound is made to pass (0, or a rule that never ends) and what the stop gave is checked."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_live_stop import _doc, _held_forked  # noqa: E402
from test_live import _lab  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def _late_doc(s) -> dict:
    doc = json.loads(_doc(s.finish()))
    assert s.late is not None
    return doc


@pytest.mark.parametrize("name", ["ikev2_dpd_dead_peer", "ikev2_peer_restart", "ikev2_nat",
                                  "ikev1_main_healthy"])
def test_late_stop_reports_the_last_evaluation(name):
    """The bound already passed at the stop: the report is the exact report of the state as the
    last (forked) evaluation held it — the same document as a stop at that evaluation's time —
    with one capture warning naming that time."""
    s, _clock = _held_forked(_lab(name), fork=True)
    assert s.judged is not None
    at = s.judged.res["now"]
    s.opts.report_within = 1e-9
    late = _late_doc(s)
    exact, clock = _held_forked(_lab(name), fork=True)
    clock[0] = at  # the stop at the last evaluation's time, with no bound
    exact.opts.report_within = 0
    want = json.loads(_doc(exact.finish()))
    assert exact.late is None
    warnings = late["capture"].pop("warnings")
    assert want["capture"].pop("warnings") == []
    assert len(warnings) == 1 and "--report-within" in warnings[0]
    assert "the 0 frame(s) read after it are not in it" in warnings[0]
    assert late == want  # (nothing was read after it: no finding is annotated)


def test_late_stop_says_what_came_after():
    """Frames read after the last evaluation are counted in the warning, and the findings about
    an absence say they were not judged (they may hold what was missing), with those the stop
    left in the ring; both read in the report's language."""
    from test_live import FileCapture, Recorder
    from pcapvpn.live import LiveOptions, LiveSession
    from pcapvpn.sources import open_source

    path = _lab("ikev2_dpd_dead_peer")
    src = open_source(str(path))
    ts = [f[2] for f in src.frames()]
    src.close()
    t0, t1 = min(ts), max(ts)
    cap = FileCapture(path)
    clock = [t0]
    s = LiveSession(LiveOptions(interfaces=["sim"], report_within=1e-9), [Recorder()],
                    clock=lambda: clock[0], captures=[cap])
    t = t0
    cut = t0 + (t1 - t0) * 0.8
    while t < cut:
        cap.now = clock[0] = t
        s._feed(0, cap, [])
        assert s._fork_evaluation(t)
        assert s._poll_child(block=True)
        t += 0.5
    before = s.frames
    cap.now = clock[0] = t1 + 5.0
    while s._feed(0, cap, []):
        pass
    after = s.frames - before
    assert after > 0
    cap.unread = lambda: 5  # what the stop leaves in the ring: not read, not judged either
    result = s.finish()
    doc = json.loads(_doc(result))
    assert s.late[2] == after
    warning = [w for w in doc["capture"]["warnings"] if "--report-within" in w]
    assert len(warning) == 1 and f"the {after} frame(s) read after it" in warning[0]
    absent = [f for f in doc["findings"] if f["code"] in ("IKE_NO_RESPONSE", "DPD_TIMEOUT",
                                                          "ESP_ONE_WAY")]
    assert absent
    for f in absent:
        assert f"{after + 5} packet(s) captured after it were not judged" in f["detail"]
    # in the report's language
    from pcapvpn.report import render

    text = render(result.report, "text", lang="ja")
    assert "このレポートは最後の評価のもの" in text and f"{after} フレーム" in text
    assert text.count("注: 停止前の最後の評価") >= len(absent)
    assert "captured after it" not in text


def test_stop_in_time_is_the_exact_report():
    """A bound the final rules meet: the exact report, as with no bound, and no warning."""
    name = "ikev2_peer_restart"
    s, _clock = _held_forked(_lab(name), fork=True)
    s.opts.report_within = 1e6
    doc = _doc(s.finish())
    assert s.late is None
    s2, _clock = _held_forked(_lab(name), fork=True)
    s2.opts.report_within = 0
    assert doc == _doc(s2.finish())


def test_no_bound_without_a_held_report():
    """Evaluations in this process (a state whose rules are cheap) leave no report to answer
    with: the stop runs its rules to their end whatever the bound."""
    s, _clock = _held_forked(_lab("ikev2_peer_restart"), fork=False)
    assert s.judged is None
    s.opts.report_within = 1e-9
    s.finish()
    assert s.late is None


def test_the_timer_stops_rules_that_do_not_end(monkeypatch):
    """The bound's timer interrupts the final rules wherever they are (here a rule that would
    run for a minute): the stop gives the held report and the session's state is left usable
    for its end (no hook left on the findings' messages)."""
    import pcapvpn.rules.incremental as inc

    s, _clock = _held_forked(_lab("ikev2_dpd_dead_peer"), fork=True)
    s.opts.report_within = 0.3
    s.REPORT_RESERVE = 0.0
    spun = []

    def spin(state):
        spun.append(1)
        end = time.monotonic() + 60.0
        while time.monotonic() < end:
            pass
        return []

    monkeypatch.setattr(s.rule_cache, "run_split", spin)
    t0 = time.monotonic()
    doc = _late_doc(s)
    assert spun and time.monotonic() - t0 < 60.0  # interrupted, not run out
    assert inc._REC[0] is None
    assert doc["findings"]


def test_abandon_kills_the_forked_half_of_the_rules():
    """A run interrupted while its forked half runs (``run_split``): :meth:`RuleCache.abandon`
    kills it and hands its pid back to be reaped."""
    from pcapvpn.rules.incremental import RuleCache, _RulesChild

    def run_locals(items):
        end = time.monotonic() + 60.0
        while time.monotonic() < end:
            pass

    cache = RuleCache()
    child = _RulesChild(cache, [(None, "x")], run_locals, {}, {}, set(), [])
    assert child.pid is not None
    cache._running = child
    pids = cache.abandon()
    assert pids == [child.pid]
    pid, status = os.waitpid(child.pid, 0)
    assert pid == child.pid and os.WIFSIGNALED(status)
    assert cache._running is None


def test_workers_evaluations_send_their_report():
    """``--workers``: the session's evaluation reads the workers' ESP views; its forked
    evaluation's report is made under the same views (a signature that dropped ``keep`` would
    make every forked evaluation fail and run in the capture process instead)."""
    from pcapvpn.live.evaluate import Evaluation
    from pcapvpn.live.workers import FanoutSession

    s = object.__new__(FanoutSession)
    s._with_view = lambda fn, *a: (fn.__func__, a)
    keep: dict = {}
    assert FanoutSession._compute(s, 5.0, keep=keep) == (Evaluation._compute, (5.0, False, keep))
    assert FanoutSession._judged(s, keep) == (Evaluation._judged, (keep,))
