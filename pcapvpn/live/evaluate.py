"""One evaluation of ``pcapvpn live``: the rules over the tracker's state as of now (in this
process, or in a forked child on a copy-on-write snapshot when an evaluation costs more than
:attr:`Evaluation.FORK_ABOVE`), then what changed since the previous one emitted as raised and
resolved events (:mod:`pcapvpn.live.policy`), then the memory bound (expiry and eviction).

:class:`Evaluation` is a part of :class:`pcapvpn.live.session.LiveSession` (its state is the
session's)."""

from __future__ import annotations

import gc
import io
import os
import signal
import time

from pcapvpn.live.events import _finding_dict, _hms
from pcapvpn.live.policy import (RAISE_AFTER, RESOLVE_AFTER, RESOLVED_CLEARED, RESOLVED_RECOVERED,
                                 _Active, _held, _superseded, annotate_drops)

__all__ = ["Evaluation", "Judged"]


class Judged:
    """The last forked evaluation's report (:meth:`Evaluation._judged`, pickled) with its
    result (what was raised from it) and the frames read when it was forked: what the stop
    reports when the final rules are not done within ``--report-within``."""

    __slots__ = ("res", "report", "frames")

    def __init__(self, res: dict, report: bytes, frames: int):
        self.res, self.report, self.frames = res, report, frames


class Evaluation:
    """The evaluation half of :class:`pcapvpn.live.session.LiveSession`."""

    judged: Judged | None = None  # the last forked evaluation's report (Judged)

    def _state(self, now, keep: dict | None = None):
        """The tracker's state as of ``now``; ``keep``: given the report it is of
        (``report``, :func:`pcapvpn.analysis.build_report`'s) and the vantage points."""
        from pcapvpn.analysis import build_report

        report = build_report(self.sources, self.decoder, self.tracker)
        state = self.tracker.state(now, capture=report.capture)
        state.expect_peers = list(self.opts.expect_peers)
        points = None
        if self.points:
            from pcapvpn.track.vantage import match

            points = self._points_now(now)
            state.vantage = match(points, self.opts.thresholds, state.tunnels,
                                  state.vpn_tunnels)
        if keep is not None:
            keep.update(report=report, points=points)
        return state

    def _prepare(self) -> None:
        """What an evaluation changes in the tracker, done before it (in this process)."""
        for f in self.log_followers:  # --log: the lines appended since the last evaluation
            f.poll()
        self._refresh_totals()
        self.tracker.ike_tracker.link_rekeys()

    def _compute(self, now, final: bool = False, keep: dict | None = None) -> dict:
        """The rules as of ``now``: the findings, which of them count now (not held back, not
        superseded by a recovery), the verdicts.  Reads the tracker only (it may run in a forked
        child, see :meth:`_fork_evaluation`).  ``keep``: given what the report of this
        evaluation is made of (:meth:`_judged`)."""
        from pcapvpn.rules.common import Context

        state = self._state(now, keep)
        findings = self.rule_cache.run(state)
        ctx = Context(state)
        if self.points:
            from pcapvpn.rules.path import locate

            locate(ctx, findings)
        verdicts = self.rule_cache.verdicts(ctx, findings)
        annotate_drops(findings, self.drops(), getattr(self, "_rx_dropped", 0))
        if keep is not None:
            keep.update(state=state, ctx=ctx, findings=findings, verdicts=verdicts)
        return self._classify(ctx, state, findings, verdicts, now, final)

    def _judged(self, keep: dict) -> bytes:
        """The report of an evaluation (:meth:`_compute`'s ``keep``), pickled: the final
        report's content as of that evaluation (:func:`pcapvpn.analysis.judged_report`, the
        stop's when its own rules are late: :meth:`pcapvpn.live.finish.Finish.finish`)."""
        import pickle

        from pcapvpn.analysis import judged_report
        from pcapvpn.analysis.summary import stopped_time

        report = keep["report"]
        result = judged_report(report, keep["state"], keep["findings"], keep["verdicts"],
                               keep["ctx"], self.tracker.names, self.analysis_options,
                               keep["points"])
        # judged as if the capture stopped now (as the final report's capture: live.finish)
        report.capture.stopped = stopped_time(self.sources, report.capture.start_ts,
                                              float(keep["state"].now))
        return pickle.dumps(result.report, protocol=pickle.HIGHEST_PROTOCOL)

    def _classify(self, ctx, state, findings, verdicts, now, final: bool = False) -> dict:
        """An evaluation's result from its findings: which count now (not held back, not
        superseded by a recovery), with the verdicts."""
        tunnels = {t.id: t for t in state.tunnels}
        current = {}
        superseded = set()
        for f in findings:
            if not final and _held(ctx, f):
                continue
            if _superseded(ctx, tunnels, f):
                superseded.add(f.id)
                continue
            current[f.id] = f
        return {"now": now, "current": current, "superseded": superseded,
                "tunnels": set(tunnels), "verdicts": verdicts,
                "counts": (len(state.ike_sas), len(state.esp_sas))}

    def _apply(self, res: dict, final: bool = False) -> None:
        """Emit what changed since the previous evaluation; then the memory bound."""
        now = res["now"]
        current = res["current"]
        pending = {}
        for fid, f in current.items():
            a = self.active.get(fid)
            if a is None:
                seen = self._pending.get(fid, 0) + 1
                if seen < RAISE_AFTER and not final:
                    pending[fid] = seen
                    continue
                self._raise(fid, f, now)
            else:
                a.finding = f
                a.missing = 0
        self._pending = pending
        for fid in list(self.active):
            if fid in current:
                continue
            a = self.active[fid]
            a.missing += 1
            if a.missing < RESOLVE_AFTER:
                continue
            del self.active[fid]
            f = a.finding
            if (f.tunnel is not None and f.tunnel not in res["tunnels"]) or self._expired(f):
                self.archived.append(f)  # its SAs were forgotten: not a resolution
                # the latest of them, as many as the report lists of a kind (the others counted)
                keep = self.limits.report_max_items
                if len(self.archived) > keep:
                    self.archived_dropped += len(self.archived) - keep
                    del self.archived[:-keep]
                continue
            self.resolved += 1
            if not self.sinks:
                continue
            reason = RESOLVED_RECOVERED if fid in res["superseded"] else RESOLVED_CLEARED
            self._emit({"event": "resolved", "ts": now, "reason": reason,
                        "raised": _hms(a.raised_ts), "lasted": round(now - a.raised_ts, 3),
                        "finding": _finding_dict(f)})
        self.last_eval = res
        if not final:
            # memory bound; what is forgotten now cannot "resolve" at the next evaluation
            ike_old, esp_old = self.tracker.expire(self.clock(), self.opts.idle_expiry,
                                                   self.opts.max_sas)
            for pt in self.points[1:]:
                pt.tracker.expire(self.clock(), self.opts.idle_expiry, self.opts.max_sas)
            self._expired_spis = ({sa.ispi.hex() for sa in ike_old}
                                  | {sa.rspi.hex() for sa in ike_old}
                                  | {f"{e.spi:08x}" for e in esp_old})

    def _raise(self, fid, f, now) -> None:
        self.active[fid] = _Active(f, now)
        self.raised += 1
        if self.sinks:
            self._emit({"event": "raised", "ts": now, "finding": _finding_dict(f)})

    def _account(self, cost: float) -> None:
        self.last_cost = cost
        self.evaluations += 1
        self.eval_seconds += cost
        self.eval_max = max(self.eval_max, cost)

    def _evaluate(self, now, final: bool = False) -> None:
        """Run the rules as of ``now`` in this process and emit what changed (``final``: the
        last evaluation, at stop: what is present is raised without waiting for a second
        look)."""
        from pcapvpn.analysis import no_gc

        t0 = time.perf_counter()
        with no_gc():
            self._prepare()
            self._apply(self._compute(now, final), final)
        self._account(time.perf_counter() - t0)
        self.judged = None  # (an evaluation here is cheap: so is the stop's)

    # -- evaluation in a forked child -----------------------------------------------------------
    #
    # With thousands of SAs an evaluation takes seconds.  In this process it would stop the
    # capture that long (the ring has to hold what arrives meanwhile) and on a 2-core machine
    # leave the other core idle.  Above FORK_ABOVE seconds per evaluation, the rules run in a
    # fork()ed child on a copy-on-write snapshot of the tracker while the capture goes on; the
    # child sends its result back through a pipe (pickle) and exits.

    FORK_ABOVE = 0.1

    def _fork_evaluation(self, now) -> bool:
        import pickle

        if not hasattr(os, "fork"):
            return False
        self._prepare()
        r, w = os.pipe()
        t0 = time.perf_counter()
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            return False
        if pid == 0:  # the child: compute, send, leave without running any cleanup
            code = 0
            gc.disable()  # its passes would touch (and copy) every page of the snapshot
            try:
                os.close(r)
                keep: dict = {}
                res = self._compute(now, keep=keep)
                res["child_seconds"] = time.perf_counter() - t0
                res["nat"] = self.tracker.nat_worked  # back to this process (Tracker.take_nat)
                # what the rules' cache learnt goes back first (RuleCache.merge; the stop reads
                # only that, see _child_at_stop), then the result, then the report of this
                # evaluation (pickled after the result: the log lines tied to the findings
                # there are not the events'; kept as bytes, read only by a late stop)
                data = (pickle.dumps(self.rule_cache.export(), protocol=pickle.HIGHEST_PROTOCOL)
                        + pickle.dumps(res, protocol=pickle.HIGHEST_PROTOCOL))
                try:
                    data += self._judged(keep)
                except Exception:  # noqa: BLE001 - no report: the stop then waits for its own
                    pass
                with os.fdopen(w, "wb") as out:
                    out.write(data)
            except BaseException:  # noqa: BLE001 - the parent evaluates in-process instead
                code = 1
            os._exit(code)
        os.close(w)
        os.set_blocking(r, False)
        self._child = (pid, r, [], t0)
        self._forked_sas = list(self.tracker.ike_tracker.sas)  # what res["nat"] indexes
        self._forked_frames = self.frames
        return True

    def _read_child(self, block: bool = False, until: float | None = None) -> bool:
        """Read what the forked evaluation sent so far; True once all of it is read (its pipe
        closed: the child is reaped and ``_child`` is None).  ``block``: wait as long as it
        takes; ``until``: wait up to that ``time.perf_counter()``."""
        import select

        pid, r, chunks, _t0 = self._child
        while True:
            if until is not None:
                left = until - time.perf_counter()
                if left <= 0:
                    return False
                if not select.select([r], [], [], left)[0]:
                    continue
            try:
                if block:
                    os.set_blocking(r, True)
                chunk = os.read(r, 1 << 20)
            except BlockingIOError:
                if until is None:
                    return False
                continue
            if not chunk:
                break
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        self._child = None
        return True

    def _poll_child(self, block: bool = False) -> bool:
        """Collect the forked evaluation's result when it is complete; True when applied."""
        _pid, _r, chunks, t0 = self._child
        if not self._read_child(block):
            return False
        from pcapvpn.analysis import no_gc

        # as _evaluate: the result and the cache taken in are hundreds of thousands of objects
        # that all stay alive; collector passes meanwhile (each a walk of the whole heap: up to
        # a second at 20,000 SAs, three of them seen in one collection) find nothing, and a
        # stop signal waits for them
        with no_gc():
            if not self._take_child(chunks):  # the child failed: do it here
                if not self._stopping():  # (at a stop, the final report's rules do it)
                    self._evaluate(self.clock())
                return True
        self._account(time.perf_counter() - t0)
        return True

    def _take_child(self, chunks) -> bool:
        """Merge the forked evaluation's rules' cache and apply its result; False when it sent
        nothing usable.  A stop signal that came meanwhile (while the cache was read, or the
        result): the cache is taken in (the final rules then do only what changed since the
        fork), the result is neither read nor applied — as for a child still running at the
        stop (:meth:`_child_at_stop`), the final report follows and raises what is present;
        reading and applying it would only delay the report."""
        import pickle

        try:
            data = io.BytesIO(b"".join(chunks))
            cache = pickle.load(data)
            res = None if self._stopping() else pickle.load(data)
        except Exception:  # noqa: BLE001 - nothing, or not all of it: the child failed
            return False
        self.rule_cache.merge(cache)
        if res is None or self._stopping():
            return True
        self.child_seconds = res.pop("child_seconds", 0.0)
        self.tracker.take_nat(getattr(self, "_forked_sas", []), res.pop("nat", ()))
        self._apply(res)
        report = data.read()
        self.judged = Judged(res, report, getattr(self, "_forked_frames", 0)) if report else None
        return True

    def _stopping(self) -> bool:
        """A stop was asked for (a signal handler sets ``stopping``: the session's)."""
        return bool(getattr(self, "stopping", False))

    #: at the stop, a forked evaluation expected to end within this many seconds is waited for
    #: (beside the ring drain) and what its rules' cache learnt is kept for the final report; one
    #: expected later, or still running this long after the wait began, is killed (its work is
    #: then done again by the final report's rules).  0: always killed — measured cheaper on the
    #: flood of bench/RESULTS.md (issue 20, session 8: at 20,000 SAs taking the cache in costs
    #: 0.28 s of CPU for 15.8 MB and saves 0.17 s of the final rules, whose big tunnel is dirty
    #: either way); where many small tunnels change between evaluations it saves their rules
    STOP_WAIT = 0.0

    def _child_at_stop(self, waited_from: float) -> str:
        """The forked evaluation still running at the stop: wait for it when its expected end
        (the previous forked evaluation's cost, or the last evaluation's) is within
        :attr:`STOP_WAIT` of ``waited_from`` (``perf_counter`` when the stop began) and merge
        its rules' cache (its findings and events are not applied: the final report follows and
        an evaluation's memory bound must not run at the stop); else, or when it is late, kill
        it.  Returns what happened (``merged``, ``killed``, ``late``, ``failed``)."""
        import pickle

        _pid, _r, chunks, t0 = self._child
        expect = getattr(self, "child_seconds", 0.0) or self.last_cost
        end = waited_from + self.STOP_WAIT
        if not expect or t0 + expect > end:
            self._abandon_child(reap=False)
            return "killed"
        if not self._read_child(until=end):
            self._abandon_child(reap=False)
            return "late"
        try:  # the rules' cache only (the child wrote it first)
            cache = pickle.loads(b"".join(chunks))
        except Exception:  # noqa: BLE001 - the final report's rules do it all
            return "failed"
        self.rule_cache.merge(cache)
        return "merged"

    def _abandon_child(self, reap: bool = True) -> None:
        """Stop a forked evaluation that is still running (the process is ours) and reap it;
        ``reap`` False (the stop): not waited for — a killed child of a big state takes tens of
        milliseconds to tear down its copy of the address space, which it does on the other
        core while the final report is built — it is reaped by :meth:`_reap_killed`."""
        pid, r, _chunks, _t0 = self._child
        self._child = None
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        if reap:
            try:
                os.waitpid(pid, 0)
            except OSError:
                pass
        else:
            self._killed_children = getattr(self, "_killed_children", []) + [pid]
        os.close(r)

    def _reap_killed(self) -> None:
        """Reap the forked evaluations killed without waiting (:meth:`_abandon_child`)."""
        for pid in getattr(self, "_killed_children", ()):
            try:
                os.waitpid(pid, 0)
            except OSError:
                pass
        self._killed_children = []

    def _expired(self, f) -> bool:
        ev = f.evidence
        return bool(self._expired_spis & (set(ev.ike_spis) | set(ev.esp_spis)))
