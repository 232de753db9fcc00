"""live's rule results kept between evaluations (``pcapvpn.rules.incremental.RuleCache``, issue
20): at every evaluation the incremental result is the full one.

Every capture of ``captures/`` and ``../shared/corpus`` is replayed into a ``LiveSession``
(``tests/live/test_live.py``'s ``FileCapture``: a file's frames handed out as a simulated clock
passes them) and evaluated at several points, and after its end while only the clock moves
(deadlines of absence judgements pass); at each point the cache's findings are compared with
:func:`pcapvpn.rules.run_rules` on the same state: the same findings (ids, order, every field)
and the same verdicts, the cache's kept per tunnel (``RuleCache.verdicts``, with what they
change in the findings) against :func:`pcapvpn.rules.verdict.tunnel_verdicts` over all.  Alone, with the lab's keys, and in pairs (each capture with the next,
one after the other and overlapping, on two interfaces): tunnels that stay still while others
change are what the cache reuses.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import corpus_dir  # noqa: E402
from test_live import FileCapture  # noqa: E402

EXTS = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")


def _files(top: Path) -> list[Path]:
    return sorted(p for p in top.rglob("*") if p.is_file() and p.name.endswith(EXTS))


def _span(path):
    from pcapvpn.sources import open_source

    src = open_source(str(path))
    ts = [f[2] for f in src.frames()]
    src.close()
    return (min(ts), max(ts)) if ts else None


def _dump(findings) -> list:
    return [dataclasses.asdict(f) for f in findings]


def _verdicts(state, findings, cache=None) -> list:
    """The verdicts of ``findings`` (``cache``: by its :meth:`RuleCache.verdicts`)."""
    from pcapvpn.rules.common import Context
    from pcapvpn.rules.verdict import tunnel_verdicts

    judge = cache.verdicts if cache is not None else tunnel_verdicts
    return [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else vars(v)
            for v in judge(Context(state), findings)]


def replay_compare(paths, shifts, points=10, keys=None) -> list:
    """Replay ``paths`` (one interface each, ``shifts`` seconds added to each one's times);
    at ``points`` moments over the span and 5, 40 and 200 s after it, compare the cache with
    run_rules.  Returns ``[(dirty groups, groups, per-SA results asked, computed)]`` per
    evaluation (asserts on a mismatch)."""
    from pcapvpn.live import LiveOptions, LiveSession
    from pcapvpn.rules import run_rules

    spans = [_span(p) for p in paths]
    caps = [FileCapture(p, shift=sh) for p, sh in zip(paths, shifts)]
    t0 = min(s[0] + sh for s, sh in zip(spans, shifts))
    t1 = max(s[1] + sh for s, sh in zip(spans, shifts))
    clock = [t0]
    s = LiveSession(LiveOptions(interfaces=[f"if{i}" for i in range(len(caps))], keys=keys), [],
                    clock=lambda: clock[0], captures=caps)
    total = max(t1 - t0, 1.0)
    moments = sorted({t0 + total * k / points for k in range(1, points + 1)}
                     | {t1 + 5, t1 + 40, t1 + 200}
                     | {s_[1] + sh + d for s_, sh in zip(spans, shifts) for d in (1, 12, 35)})
    work = []
    for t in moments:
        clock[0] = t
        for i, c in enumerate(caps):
            c.now = t
            while s._feed(i, c, []):
                pass
        s._prepare()
        state = s._state(t)
        got = s.rule_cache.run(state)
        units = s.rule_cache.stats["units"].values()
        work.append((s.rule_cache.stats["dirty"], s.rule_cache.stats["groups"],
                     sum(u["asked"] for u in units), sum(u["computed"] for u in units)))
        want = run_rules(state)
        a, b = _dump(got), _dump(want)
        where = f"{[str(p) for p in paths]} at +{t - t0:.1f} s"
        assert [x["id"] for x in a] == [x["id"] for x in b], where
        for x, y in zip(a, b):
            assert x == y, where
        # the verdicts kept per tunnel (RuleCache.verdicts) against tunnel_verdicts over all
        kept = _verdicts(state, got, s.rule_cache)
        assert kept == _verdicts(state, want), where
        # the verdict changes findings (recovery, redirect notes): the kept ones must not, and
        # a kept verdict gives the findings of its tunnel what it gave them when computed
        assert _dump(got) == _dump(want), where
        # the findings kept by the rules are not changed by the verdicts given them
        again = s.rule_cache.run(state)
        want2 = run_rules(state)
        assert _verdicts(state, again, s.rule_cache) == _verdicts(state, want2), where
        assert _dump(again) == _dump(want2), where
        v = s.rule_cache.stats_verdicts
        assert v["computed"] + v["kept"] == len(state.tunnels) + len(state.vpn_tunnels), where
    return work


def _captures() -> list[Path]:
    return [p for p in _files(ROOT / "captures") if _span(p) is not None]


CAPTURES = _captures()


def _id(p: Path) -> str:
    return str(p.relative_to(ROOT))


@pytest.mark.parametrize("path", CAPTURES, ids=_id)
def test_incremental_matches_full_captures(path):
    replay_compare([path], [0.0])


def test_incremental_matches_full_corpus():
    for path in _files(corpus_dir()):
        if _span(path) is not None:
            replay_compare([path], [0.0])


@pytest.mark.parametrize("path", [p for p in CAPTURES if (p.parent / "keys").is_dir()], ids=_id)
def test_incremental_matches_full_with_keys(path):
    from pcapvpn.decrypt.keyfile import load_keys

    replay_compare([path], [0.0], keys=load_keys([path.parent / "keys"]))


def _pairs(files):
    for i, a in enumerate(files):
        yield a, files[(i + 1) % len(files)]


def _pair_shifts(a, b, overlap: bool):
    sa, sb = _span(a), _span(b)
    start = (sa[0] + sa[1]) / 2 if overlap else sa[1] + 3.0
    return [0.0, start - sb[0]]


@pytest.mark.parametrize("overlap", [False, True], ids=["after", "overlapping"])
def test_incremental_matches_full_pairs(overlap):
    """Each capture with the next (captures/ then the corpus): the first one's tunnels stay
    still (and their deadlines pass) while the second one's change; some of the lab's share
    addresses, so a tunnel also gains SAs long after its last change."""
    files = CAPTURES + [p for p in _files(corpus_dir()) if _span(p) is not None]
    partial = 0
    reused = 0
    for a, b in _pairs(files):
        work = replay_compare([a, b], _pair_shifts(a, b, overlap), points=12)
        partial += sum(1 for d, g, _a, _c in work if 0 < d < g)
        reused += sum(a_ - c for _d, _g, a_, c in work)
    assert partial > 100  # the reuse of some tunnels beside changed ones is what is checked
    # ... and of the per-SA results of SAs that did not change inside a changed tunnel
    assert reused > 100
