"""live's stop re-runs the rules only for the tunnels that changed since the last evaluation
(``pcapvpn.rules.incremental.RuleCache``, issue 20): the rules' work at the stop follows the
dirty tunnels, not the SAs held.  Counted, not timed: the tunnels, SAs and rule-loop iterations
of the run over the dirty part (``RuleCache.stats``), for the same few changed tunnels among
N and 2N held; and inside one changed tunnel of N and 2N SAs, the per-SA results computed
again (``per_sa``: ``sequence`` per ESP SA, ``unanswered_ike`` per IKE SA) for the same few
changed SAs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from mutated import SimCapture  # noqa: E402
from synth import esp_frame, ike_frame, ike_sa_init  # noqa: E402

T0 = 1_700_000_000.0


class ListCapture(SimCapture):
    """A capture object handing out ``(ts, frame)`` pairs up to ``now``."""

    name = "list"

    def __init__(self):
        self.frames: list = []
        self.now = T0
        self.i = 0

    def read(self, out, fidx, num, max_blocks=None):
        n = 0
        while self.i < len(self.frames) and self.frames[self.i][0] <= self.now:
            ts, data = self.frames[self.i]
            self.i += 1
            n += 1
            out.append((fidx, num + n, ts, 1, data, len(data), 0))
            self.bytes += len(data)
        return n


def _tunnel(k: int, t: float, seq0: int = 1, n: int = 6) -> list:
    """Tunnel ``k``: an answered IKE_SA_INIT and ESP both ways from ``t``."""
    a, b = f"10.{k // 250}.{k % 250}.1", f"172.16.{k // 250}.{k % 250 + 1}"
    ispi, rspi = k.to_bytes(4, "big") * 2, (k + 7).to_bytes(4, "big") * 2
    out = []
    if seq0 == 1:
        out += [(t, ike_frame(a, b, ike_sa_init(ispi, bytes(8), False))),
                (t + 0.01, ike_frame(b, a, ike_sa_init(ispi, rspi, True)))]
    for i in range(n):
        out.append((t + 0.1 + i * 0.2, esp_frame(a, b, 0x1000 + k, seq0 + i)))
        out.append((t + 0.15 + i * 0.2, esp_frame(b, a, 0x900000 + k, seq0 + i)))
    return out


def _evaluated(frames: list, max_sas: int):
    """A live session fed ``frames`` and evaluated as the capture goes, the last evaluation long
    after every deadline: ``(session, capture, clock, the first evaluation's stats)``."""
    from pcapvpn.live import LiveOptions, LiveSession

    cap = ListCapture()
    cap.frames += frames
    clock = [T0]
    s = LiveSession(LiveOptions(interfaces=["sim"], max_sas=max_sas), [],
                    clock=lambda: clock[0], captures=[cap])
    first = None
    for t in (T0 + 5, T0 + 120, T0 + 300):
        cap.now = clock[0] = t
        while s._feed(0, cap, []):
            pass
        s._evaluate(t)
        first = first or dict(s.rule_cache.stats)
    return s, cap, clock, first


def _tunnels_evaluated(n_tunnels: int):
    """:func:`_evaluated` over ``n_tunnels`` tunnels (:func:`_tunnel`)."""
    frames = []
    for k in range(n_tunnels):
        frames += _tunnel(k, T0 + k * 0.001)
    return _evaluated(frames, 10 * n_tunnels)


def _tunnels_changed(n_tunnels: int, changed: int = 5):
    """:func:`_tunnels_evaluated`, then the first ``changed`` tunnels carry more ESP at
    ``T0 + 301`` and the clock is 2 s later (those frames not read yet)."""
    s, cap, clock, first = _tunnels_evaluated(n_tunnels)
    t = T0 + 301
    for k in range(changed):
        cap.frames += _tunnel(k, t, seq0=7, n=3)
    cap.now = clock[0] = t + 2
    return s, cap, clock, first


def _stop_work(n_tunnels: int, changed: int = 5) -> dict:
    # a few tunnels carry more ESP, and the capture stops
    s, cap, clock, first = _tunnels_changed(n_tunnels, changed)
    res = s.finish()
    return {"first": first, "stop": dict(s.rule_cache.stats), "findings": len(res.findings)}


def test_stop_rule_work_follows_the_changed_tunnels_not_the_held_ones():
    small, big = _stop_work(100), _stop_work(200)
    for r, n in ((small, 100), (big, 200)):
        assert r["first"]["groups"] == n  # every tunnel held
        assert r["stop"]["groups"] == n
        # the stop ran the rules over the 5 tunnels that changed (and nothing else)
        assert r["stop"]["dirty"] == 5, r["stop"]
        assert r["stop"]["tunnels"] == 5
        assert r["stop"]["esp_sas"] == 10
        assert r["stop"]["ike_sas"] == 5
    # the rule loops' iterations at the stop: the same for 100 and 200 tunnels held ...
    assert small["stop"]["walked"] == big["stop"]["walked"]
    # ... while the evaluation that had to look at every tunnel walked twice as much
    for kind in ("tunnels", "esp_sas", "ike_sas"):
        assert big["first"]["walked"].get(kind, 0) >= 2 * small["stop"]["walked"].get(kind, 0)
        assert big["first"]["walked"][kind] >= 1.9 * small["first"]["walked"][kind]


def _many_sas(n_pairs: int, t: float, seq0: int = 1, first: int = 0) -> list:
    """One tunnel (one gateway pair, one IKE SA): ``n_pairs`` child SA pairs from ``first``,
    each with ESP both ways and a hole in its sequence numbers (a gap finding each)."""
    a, b = "10.9.9.1", "172.16.9.2"
    out = []
    if seq0 == 1:
        ispi, rspi = b"\x01" * 8, b"\x02" * 8
        out += [(t, ike_frame(a, b, ike_sa_init(ispi, bytes(8), False))),
                (t + 0.01, ike_frame(b, a, ike_sa_init(ispi, rspi, True)))]
    for k in range(first, first + n_pairs):
        for i in (0, 1, 3, 4):  # sequence number seq0 + 2 never arrives
            ts = t + 0.1 + k * 0.001 + i * 0.2
            out.append((ts, esp_frame(a, b, 0x1000 + k, seq0 + i)))
            out.append((ts + 0.05, esp_frame(b, a, 0x900000 + k, seq0 + i)))
    return out


def _stop_unit_work(n_pairs: int, changed: int = 3) -> dict:
    s, cap, clock, first = _evaluated(_many_sas(n_pairs, T0), 10 * n_pairs)
    # a few of the tunnel's SAs carry more ESP (with another hole), and the capture stops
    cap.frames += _many_sas(changed, T0 + 301, seq0=20)
    cap.now = clock[0] = T0 + 303
    res = s.finish()
    gaps = [f for f in res.findings if f.code == "ESP_SEQUENCE_GAP"]
    return {"first": first, "stop": dict(s.rule_cache.stats), "gaps": len(gaps)}


def test_stop_per_sa_work_follows_the_changed_sas_of_a_changed_tunnel():
    """One tunnel holding many SAs, few of which change: the tunnel is dirty at the stop, but
    the sequence rule computes only the SAs that changed (its results of the others are kept
    per SA, ``per_sa``) and still reports every SA's gap."""
    small, big = _stop_unit_work(50), _stop_unit_work(100)
    for r, n in ((small, 50), (big, 100)):
        assert r["stop"]["groups"] == 1 and r["stop"]["dirty"] == 1, r["stop"]
        assert r["stop"]["esp_sas"] == 2 * n  # the whole tunnel is walked ...
        seq = r["stop"]["units"]["sequence"]
        assert seq["asked"] == 2 * n
        assert seq["computed"] == 2 * 3  # ... but only the 3 changed SA pairs are computed
        first = r["first"]["units"]["sequence"]
        assert first["computed"] == first["asked"] == 2 * n  # the first evaluation: all of them
        assert r["gaps"] == 2 * n  # every SA's gap is reported (the kept ones too)
    assert small["stop"]["units"]["sequence"]["computed"] == \
        big["stop"]["units"]["sequence"]["computed"]


def _unanswered(n: int, t: float, first: int = 0) -> list:
    """One gateway pair: ``n`` IKE SAs from ``first``, each an IKE_SA_INIT request sent twice
    and never answered (an IKE_NO_RESPONSE each once the answer time has passed)."""
    a, b = "10.9.8.1", "172.16.8.2"
    out = []
    for k in range(first, first + n):
        ispi = (0x5000 + k).to_bytes(8, "big")
        req = ike_frame(a, b, ike_sa_init(ispi, bytes(8), False))
        out += [(t + k * 0.001, req), (t + 2 + k * 0.001, req)]
    return sorted(out)  # the capture hands frames out in time order


def _stop_unanswered_work(n: int, new: int = 3) -> dict:
    s, cap, clock, first = _evaluated(_unanswered(n, T0), 10 * n)
    # a few more requests (too recent to judge at the stop), and the capture stops
    cap.frames += _unanswered(new, T0 + 301, first=n)
    cap.now = clock[0] = T0 + 303
    res = s.finish()
    lost = sorted((f for f in res.findings if f.code == "IKE_NO_RESPONSE"), key=lambda f: f.id)
    return {"first": first, "stop": dict(s.rule_cache.stats), "lost": lost}


def test_stop_unanswered_work_follows_the_new_ike_sas_and_its_text_follows_the_clock():
    """Many unanswered IKE SAs of one gateway pair, a few new ones at the stop: the stop makes
    the drafts of the new ones only (``unanswered_ike``'s per-SA unit), and every kept one's
    text still says how long before the stop the last copy was sent."""
    small, big = _stop_unanswered_work(40), _stop_unanswered_work(80)
    for r, n in ((small, 40), (big, 80)):
        u = r["stop"]["units"]["unanswered_ike"]
        assert u["asked"] >= n + 3
        assert u["computed"] == 3, u  # the new ones
        assert len(r["lost"]) == n
        # the last copy of SA k went at T0 + 2 + k/1000; the stop is at T0 + 303
        for f in r["lost"]:
            k = int(f.evidence.ike_spis[0], 16) - 0x5000
            ends = re.search(r"the capture ends ([0-9.]+) s after the last copy", f.detail)
            assert ends and abs(float(ends.group(1)) - (301 - k / 1000)) <= 0.051, f.detail
    assert small["stop"]["units"]["unanswered_ike"]["computed"] == \
        big["stop"]["units"]["unanswered_ike"]["computed"]


def _stop_after_fork_work(n_tunnels: int, before: int = 5, after: int = 2,
                          merge: bool = True) -> dict:
    """N tunnels evaluated; ``before`` of them change, an evaluation is forked (as live does
    above ``FORK_ABOVE``) and ``after`` others change while it runs; the stop comes when the
    child is about to end: merged (``merge``) or killed."""
    s, cap, clock, _first = _tunnels_evaluated(n_tunnels)
    t = T0 + 301
    for k in range(before):
        cap.frames += _tunnel(k, t, seq0=7, n=3)
    cap.now = clock[0] = t + 2
    while s._feed(0, cap, []):
        pass
    s.child_seconds = 1e-3 if merge else 1e9  # the previous forked evaluation's cost
    s.STOP_WAIT = 60.0
    assert s._fork_evaluation(clock[0])
    for k in range(before, before + after):
        cap.frames += _tunnel(k, t + 2.5, seq0=7, n=3)
    cap.now = clock[0] = t + 4
    res = s.finish()
    return {"stop": dict(s.rule_cache.stats), "how": s.stop_child,
            "findings": sorted(f.id for f in res.findings)}


def test_stop_after_a_forked_evaluation_follows_what_changed_since_its_fork():
    """A forked evaluation about to end at the stop is merged (``_child_at_stop``): the stop's
    rules run over the tunnels that changed after the fork only, for 100 and 200 held; killed,
    they run over every tunnel changed since the last completed evaluation.  The findings are
    the same either way."""
    for n in (100, 200):
        merged = _stop_after_fork_work(n)
        killed = _stop_after_fork_work(n, merge=False)
        assert merged["how"] == "merged" and killed["how"] == "killed"
        assert merged["stop"]["groups"] == killed["stop"]["groups"] == n
        assert merged["stop"]["dirty"] == 2, merged["stop"]  # changed after the fork
        assert merged["stop"]["tunnels"] == 2 and merged["stop"]["esp_sas"] == 4
        assert killed["stop"]["dirty"] == 7, killed["stop"]  # since the last evaluation
        assert merged["findings"] == killed["findings"]


def test_stop_with_the_rules_shared_with_a_forked_process_counts_the_same_work(monkeypatch):
    """``RuleCache.run_split`` (live's stop: the rules shared with a forked process): the same
    work counted as a run in one process — the groups, SAs and per-SA results computed and
    asked; the rule-loop iterations too, except that a look-up one rule builds over the dirty
    part and another reuses is built in each process (at most once more per list) — and the
    same findings."""
    from pcapvpn.rules.incremental import RuleCache

    monkeypatch.setattr(RuleCache, "SPLIT_ABOVE", 10**9)
    alone = (_stop_work(100), _stop_unit_work(50), _stop_unanswered_work(40))
    monkeypatch.setattr(RuleCache, "SPLIT_ABOVE", 0)
    shared = (_stop_work(100), _stop_unit_work(50), _stop_unanswered_work(40))
    for a, b in zip(alone, shared):
        wa, wb = a["stop"].pop("walked"), b["stop"].pop("walked")
        assert b["stop"] == a["stop"]
        for kind, n in wa.items():
            assert n <= wb[kind] <= 2 * n, (kind, wa, wb)
    assert shared[0]["findings"] == alone[0]["findings"]
    assert shared[1]["gaps"] == alone[1]["gaps"]
    assert [(f.id, f.detail) for f in shared[2]["lost"]] == \
        [(f.id, f.detail) for f in alone[2]["lost"]]


def test_stop_verdict_work_follows_the_changed_tunnels():
    """The stop judges again only the tunnels that changed since the last evaluation (the
    verdicts of the others are kept with their findings, ``RuleCache.verdicts``): the same
    number among 100 or 200 held tunnels, and the verdicts are tunnel_verdicts' over all."""
    import dataclasses

    from pcapvpn.rules import run_rules
    from pcapvpn.rules.common import Context
    from pcapvpn.rules.verdict import tunnel_verdicts

    work = {}
    for n in (100, 200):
        s, cap, clock, _first = _tunnels_changed(n)
        res = s.finish()
        v = s.rule_cache.stats_verdicts
        work[n] = v
        assert v["computed"] + v["kept"] == n
        assert v["kept"] == n - v["computed"]
        want = tunnel_verdicts(Context(res.state), run_rules(res.state))
        assert [dataclasses.asdict(x) for x in res.verdicts] == \
            [dataclasses.asdict(x) for x in want]
    assert work[100]["computed"] == work[200]["computed"] == 5, work  # the changed ones


def test_sub_states_take_their_groups_elements_not_a_pass_over_everything_held():
    """A run builds a sub-state for the dirty part and one more for each rule whose results of
    clean groups follow the clock (``RuleCache.run``'s timed groups): each takes its groups'
    elements from an index built in one pass per run over the held lists, in the lists' order —
    not one filtering pass over everything held per sub-state (counted: the elements read)."""
    import types

    from pcapvpn.rules import incremental as inc

    class Counted(list):
        reads = 0

        def __iter__(self):
            for x in list.__iter__(self):
                Counted.reads += 1
                yield x

    def owners_of(n_groups: int, per_group: int) -> tuple:
        state = types.SimpleNamespace()
        owners = {}
        for kind in inc.KINDS:
            # interleaved: group g's elements are scattered over the list
            rows = [(f"{kind}{i}", i % n_groups) for i in range(n_groups * per_group)]
            setattr(state, kind, [x for x, _g in rows])
            owners[kind] = Counted(rows)
        return state, owners

    for n_groups in (50, 100):
        state, owners = owners_of(n_groups, 4)
        Counted.reads = 0
        dirty = set(range(0, n_groups, 2))
        timed = [{1}, {3, 5}, {n_groups - 1}] * 5
        for gs in [dirty] + timed:
            sub = inc._sub(state, owners, gs, 0.0, {})
            for kind in inc.KINDS:
                want = [x for x, g in list.__iter__(owners[kind]) if g in gs]
                assert list(list.__iter__(getattr(sub, kind))) == want
        held = sum(len(v) for k, v in owners.items() if k in inc.KINDS)
        assert Counted.reads == held  # one pass for the run, whatever the sub-states
