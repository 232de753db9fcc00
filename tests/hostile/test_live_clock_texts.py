"""live's stop when only the clock moved (``pcapvpn.rules.incremental.RuleCache``, issue 20):
a kept finding whose text says how long before ``now`` something happened ("the capture ends
N s after the last copy") is written again for the new ``now`` -- its rule does not run again
for it, and its tunnel's verdict is kept -- and the kept verdicts of a forked evaluation come
back with its cache.  Counted, not timed: the rules' runs over groups and the verdicts computed;
and the findings (English and Japanese texts) and verdicts are those of the offline run at the
same ``now``."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_live_incremental_work import (  # noqa: E402
    T0,
    _evaluated,
    _tunnel,
    _tunnels_changed,
    _unanswered,
)


def _pairs_unanswered(pairs: int, n: int, t: float) -> list:
    """``pairs`` gateway pairs (a tunnel each), ``n`` unanswered IKE SAs each
    (``_unanswered``'s, on other addresses)."""
    out = []
    for p in range(pairs):
        for ts, fr in _unanswered(n, t, first=p * 1000):
            out.append((ts + p * 0.0001, fr.replace(bytes([10, 9, 8, 1]),
                                                    bytes([10, 9, 8, 10 + p]))))
    return sorted(out, key=lambda x: x[0])


def _offline(state) -> tuple:
    from pcapvpn.rules import run_rules
    from pcapvpn.rules.common import Context
    from pcapvpn.rules.verdict import tunnel_verdicts

    fs = run_rules(state)
    vs = tunnel_verdicts(Context(state), fs)
    return fs, vs


def _ja(findings) -> list:
    from pcapvpn.i18n import Lang

    ja = Lang("ja")
    return [(ja.msg(f.title), ja.msg(f.detail)) for f in findings]


def _clock_only(pairs: int, n: int, monkeypatch=None):
    """Unanswered IKE SAs evaluated until long after their answer time, then one more run and
    verdicts 3.7 s later with nothing new: ``(stats, verdict stats, findings, verdicts,
    offline findings, offline verdicts)``."""
    s, cap, clock, _first = _evaluated(_pairs_unanswered(pairs, n, T0), 10 * n * pairs)
    state, got, vs, want, want_vs = _run_again(s, cap, clock, T0 + 303.7)
    return (dict(s.rule_cache.stats), dict(s.rule_cache.stats_verdicts), got, vs, want,
            want_vs, state.now)


def _run_again(s, cap, clock, t) -> tuple:
    """One more evaluation's rules and verdicts at ``t`` (nothing new read), and the offline
    run's over the same state: ``(state, findings, verdicts, offline findings, offline
    verdicts)``."""
    from pcapvpn.rules.common import Context

    cap.now = clock[0] = t
    s._prepare()
    state = s._state(t)
    got = s.rule_cache.run(state)
    vs = s.rule_cache.verdicts(Context(state), got)
    want, want_vs = _offline(state)
    return state, got, vs, want, want_vs


def test_a_run_after_only_the_clock_moved_runs_no_rule_again_for_its_texts():
    """Unanswered IKE SAs of 3 and of 6 gateway pairs, a run 3.7 s after the previous one with
    nothing new: no rule runs again over any group (``unanswered_ike``'s texts follow the
    clock: they are written again, one per tunnel), no verdict is computed again, and the
    findings -- their texts now 3.7 s longer, in English and Japanese -- and verdicts are the
    offline run's."""
    for pairs in (3, 6):
        stats, vstats, got, vs, want, want_vs, now = _clock_only(pairs, 20)
        assert now > T0 + 302  # the previous run was at T0 + 300
        assert stats["dirty"] == 0, stats
        assert stats["timed"] == {}, stats["timed"]
        assert stats["group_runs"] == 0, stats
        assert stats["rendered"] == pairs, stats
        assert vstats["computed"] == 0 and vstats["kept"] == pairs, vstats
        lost = [f for f in got if f.code == "IKE_NO_RESPONSE"]
        assert len(lost) == 20 * pairs
        for f in lost:
            k = int(f.evidence.ike_spis[0], 16) - 0x5000
            ends = re.search(r"the capture ends ([0-9.]+) s after the last copy", f.detail)
            # the last copy of SA k went at T0 + 2 + k/1000 (+ p/10000 on pair p)
            assert ends and abs(float(ends.group(1)) - (now - T0 - 2 - k / 1000)) <= 0.052, \
                f.detail
        assert [dataclasses.asdict(f) for f in got] == [dataclasses.asdict(f) for f in want]
        assert _ja(got) == _ja(want)
        assert [dataclasses.asdict(v) for v in vs] == [dataclasses.asdict(v) for v in want_vs]


def test_a_text_copied_out_of_its_message_makes_its_rule_run_again(monkeypatch):
    """A rule that copies a text following the clock into a plain string (here
    ``unanswered_ike``'s detail through an f-string) cannot have it written again: after only
    the clock moved, that rule runs again over its groups, as before, and the findings are
    still the offline run's."""
    from pcapvpn.rules import reachability

    real = reachability._unanswered_finding

    def copied(ctx, d, t):
        f = real(ctx, d, t)
        f.detail = f"{f.detail}"
        return f

    monkeypatch.setattr(reachability, "_unanswered_finding", copied)
    stats, vstats, got, vs, want, want_vs, _now = _clock_only(3, 20)
    assert stats["rendered"] == 0, stats
    assert stats["timed"] == {"pcapvpn.rules.reachability.unanswered_ike": 3}, stats["timed"]
    assert [dataclasses.asdict(f) for f in got] == [dataclasses.asdict(f) for f in want]
    assert [dataclasses.asdict(v) for v in vs] == [dataclasses.asdict(v) for v in want_vs]


def test_the_verdicts_of_a_forked_evaluation_come_back_with_its_cache():
    """A forked evaluation (5 tunnels changed before the fork) merged at the stop (2 more
    changed after it): the stop judges again only the 2 tunnels changed after the fork, for 100
    and 200 held -- the forked evaluation's verdicts come back with its rules' cache
    (``RuleCache.export`` / ``merge``) -- and the verdicts are the offline run's."""
    for n in (100, 200):
        s, cap, clock, _first = _tunnels_changed(n)
        t = T0 + 301
        while s._feed(0, cap, []):
            pass
        s.child_seconds = 1e-3  # the previous forked evaluation's cost: merged at the stop
        s.STOP_WAIT = 60.0
        assert s._fork_evaluation(clock[0])
        for k in range(5, 7):
            cap.frames += _tunnel(k, t + 2.5, seq0=7, n=3)
        cap.now = clock[0] = t + 4
        res = s.finish()
        assert s.stop_child == "merged"
        v = s.rule_cache.stats_verdicts
        assert v["computed"] == 2, v
        assert v["kept"] == n - 2
        _fs, want = _offline(res.state)
        assert [dataclasses.asdict(x) for x in res.verdicts] == \
            [dataclasses.asdict(x) for x in want]


def test_a_verdicts_own_text_that_follows_the_clock_is_written_again():
    """A tunnel whose requests were sent once just before the previous run (their answer time
    not passed yet: its verdict lists them, "the capture ends N s after the request"), and a run
    3.7 s later with nothing new, still within the answer time: the verdict is kept, its list
    written for the new ``now`` -- the offline run's."""

    once = [(ts, fr) for ts, fr in _unanswered(3, T0 + 299) if ts < T0 + 300]  # no copy
    s, cap, clock, _first = _evaluated(once, 100)
    _state, got, vs, want, want_vs = _run_again(s, cap, clock, T0 + 303.7)
    assert s.rule_cache.stats_verdicts["computed"] == 0, s.rule_cache.stats_verdicts
    assert any("the capture ends" in x for v in vs for x in v.not_seen), vs
    assert [dataclasses.asdict(v) for v in vs] == [dataclasses.asdict(v) for v in want_vs]
    assert [dataclasses.asdict(f) for f in got] == [dataclasses.asdict(f) for f in want]
