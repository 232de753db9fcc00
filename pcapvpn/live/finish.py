"""The stop of ``pcapvpn live``: the rings drained, the written files closed, and the final
report (an :class:`pcapvpn.analysis.Result`) built from the state the session holds, with the
warnings about what it could not keep.

:class:`Finish` is a part of :class:`pcapvpn.live.session.LiveSession` (its state is the
session's)."""

from __future__ import annotations

import time

from pcapvpn.live.capture import PipeCapture
from pcapvpn.live.events import ExecHook, _hms
from pcapvpn.live.policy import annotate_drops
from pcapvpn.live.writer import _ns

__all__ = ["Finish", "Late", "drain_until"]


class Late(BaseException):
    """The stop's bound (``--report-within``) came while the final rules ran: raised by a
    timer's signal wherever they are (a BaseException: no ``except Exception`` of a rule takes
    it for the rule's own failure)."""


def drain_until(deadline: float, feed) -> None:
    """Call ``feed()`` (a read of a few ring blocks, decoded; returns how many frames) until it
    returns 0 or ``deadline`` (``time.monotonic()``) comes; a read is not begun when the last
    one took longer than what is left (a read of a few ring blocks of a flood can take as long
    as the whole bound: the bound is kept, not overrun by a read)."""
    while True:
        t0 = time.monotonic()
        if t0 >= deadline:
            return
        if not feed():
            return
        t1 = time.monotonic()
        if t1 + (t1 - t0) > deadline:
            return


def _left_unread(cap) -> int:
    """Frames the capture ``cap`` captured that were not handed on (its ``unread()``, 0 for a
    capture that cannot say)."""
    unread = getattr(cap, "unread", None)
    return unread() if unread is not None else 0


class Finish:
    """The stop path of :class:`pcapvpn.live.session.LiveSession`."""

    #: seconds spent at most reading what the rings still hold when the capture stops.  The
    #: report is of the state held at the signal: on a busy link the ring always holds a backlog
    #: (the process reads what one core decodes), and reading it would delay the answer without
    #: end; what is left in a ring after this is counted, not decoded (:func:`_left_unread`),
    #: and said in the report's capture warnings and on the findings about an absence
    #: (:func:`pcapvpn.live.policy.annotate_drops`).  A pipe backend's child has stopped and
    #: wrote a finite stream: it is read in full.
    DRAIN_SECONDS = 0.1

    def finish(self):
        """Stop capturing and build the full report (an :class:`pcapvpn.analysis.Result`) from
        the state held: the rings are drained for at most ``DRAIN_SECONDS`` while a forked
        evaluation still running goes on; that one is then waited for when it is about to end
        within ``STOP_WAIT`` (its rules' cache is kept: the final rules do only what changed
        since its fork) or killed (:meth:`_child_at_stop`; ``STOP_WAIT`` 0: killed); and the rules run once — the report's analysis is also
        the last evaluation (its events are emitted)."""
        from pcapvpn.analysis import diagnose, no_gc
        from pcapvpn.rules.common import Context

        # the stop, as the written files record it (nanoseconds): analyze of them judges
        # absences up to the same moment
        now = _ns(self.clock())
        stop_t0 = time.perf_counter()
        self._finish_began = time.monotonic()
        # a forked evaluation still running goes on beside the drain (the other core); it is
        # collected (or killed) after it, before the final rules
        # what is still in the rings (a pipe child flushes its last packets when it stops)
        self._refresh_totals()
        deadline = time.monotonic() + self.DRAIN_SECONDS
        self.unread = {}
        for i, c in enumerate(self.captures):
            if isinstance(c, PipeCapture):
                # the child has stopped: what it wrote is read in full (it is finite)
                c.close()
                while self._feed(i, c, []):
                    pass
            drain_until(deadline, lambda i=i, c=c: self._feed(i, c, []))
            left = _left_unread(c)
            if left:
                name = getattr(c, "name", f"capture {i}")
                self.unread[name] = self.unread.get(name, 0) + left
            if self._blocks[i] is not None:
                self._blocks[i].close()
            c.close()
            if isinstance(c, PipeCapture):  # pipe backends know their drops only now
                self.totals[i]["osdrop"] = c.drops
                self.totals[i]["filteraccept"] = c.received
        if self.writer is not None:
            self.writer.close(now, self._span_stats(self.sources[-1]))
        for src in self._current_sources():
            src.ended = now
        self._refresh_isb()
        for f in self.log_followers:
            f.poll()
        self.stop_child = self._child_at_stop(stop_t0) if self._child is not None else None
        t0 = time.perf_counter()

        def final():
            for pt in self.points[1:]:
                pt.decoder.finish()
                pt.tracker.finish()
            self.decoder.finish()
            self.tracker.finish()
            points = self._points_now(now) if self.points else None
            result = diagnose(self.sources if not points else self._point_sources(),
                              self.decoder, self.tracker, self.analysis_options, now=now,
                              points=points, rules=self.rule_cache.run_split,
                              verdicts=self.rule_cache.verdicts)
            if points:
                result.points = points
            return result

        self.late = None
        with no_gc():
            result = self._within_bound(final)
            if result is not None:
                annotate_drops(result.findings, self.drops(), getattr(self, "_rx_dropped", 0),
                               unread=sum(self.unread.values()))
                # the last evaluation: what is present now is raised without a second look
                self._apply(self._classify(Context(result.state), result.state,
                                           result.findings, result.verdicts, now, final=True),
                            final=True)
            else:
                result = self._judged_result(now)
        self._account(time.perf_counter() - t0)
        self._reap_killed()  # a forked evaluation killed at the stop (long gone by now)
        if self.view is not None:
            self.view.clear()
            self.view = None
        have = {f.id for f in result.findings}
        extra = [f for f in self.archived if f.id not in have]
        if extra:
            from pcapvpn.findings import finding_groups

            result.report.findings = list(result.report.findings) + extra
            result.findings = result.report.findings
            result.report.groups = finding_groups(result.findings)
        result.report.capture.warnings.extend(self.warnings())
        return result

    #: seconds of ``--report-within`` kept for what follows the final rules: the report's
    #: rendering and write (0.15-0.27 s measured at 20,000 SAs, bench/RESULTS.md) and, when
    #: they were late, reading the last evaluation's report back
    REPORT_RESERVE = 0.5

    def _within_bound(self, final):
        """``final()`` (the final report's rules), or None when it is not done by the bound:
        ``--report-within`` seconds after the stop began (:meth:`stop`), less
        :attr:`REPORT_RESERVE`.  Bounded only when the last evaluation's report is held to
        answer with instead (:attr:`judged`, from a forked evaluation: a state whose rules
        cost more than an evaluation in this process), and in the main thread (a timer's
        signal interrupts the rules, :class:`Late`)."""
        import signal
        import threading

        bound = getattr(self.opts, "report_within", 0) or 0
        if (not bound or self.judged is None
                or threading.current_thread() is not threading.main_thread()):
            return final()
        began = getattr(self, "stop_asked", None) or self._finish_began
        left = began + bound - self.REPORT_RESERVE - time.monotonic()
        armed = [True]

        def late(_signum, _frame):
            if armed[0]:
                raise Late

        old = None
        installed = False
        try:
            if left <= 0:
                raise Late
            old = signal.signal(signal.SIGALRM, late)
            installed = True
            signal.setitimer(signal.ITIMER_REAL, left)
            result = final()
            armed[0] = False
            return result
        except Late:
            armed[0] = False
            self._killed_children = (getattr(self, "_killed_children", [])
                                     + self.rule_cache.abandon())
            return None
        finally:
            armed[0] = False
            if installed:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old if old is not None else signal.SIG_DFL)

    def _judged_result(self, now):
        """The stop's report when its rules were late: the last forked evaluation's
        (:class:`pcapvpn.live.evaluate.Judged`), what it raised then raised now if still
        pending, and its time and what came after it said (:meth:`warnings`)."""
        import pickle

        from pcapvpn.analysis import Result
        from pcapvpn.live.policy import annotate_late

        judged = self.judged
        report = pickle.loads(judged.report)
        res = judged.res
        for fid, f in res["current"].items():  # (what a final evaluation raises at once)
            if fid not in self.active:
                self._raise(fid, f, now)
        after = max(0, self.frames - judged.frames)
        self.late = (res["now"], now, after)
        # (on the findings: those read after it and those the stop left in the ring)
        annotate_late(report.findings, res["now"], after + sum(self.unread.values()))
        return Result(report, None, report.findings, [])

    def _point_sources(self) -> list:
        """The first point's sources (the report's capture summary is of the first point)."""
        return self.points[0].sources

    def _refresh_isb(self):
        for src in self._current_sources():
            src.isb = {i: {"ifdrop": s.get("ifdrop", 0), "osdrop": s.get("osdrop", 0)}
                       for i, s in enumerate(self._span_stats(src))}

    def warnings(self) -> list[str]:
        out = []
        if self.tracker.expired_sas or self.tracker.evicted_sas:
            out.append(f"live: {self.tracker.expired_sas} SA(s) expired after "
                       f"{self.opts.idle_expiry:g} s of silence and {self.tracker.evicted_sas} "
                       f"evicted (more than {self.opts.max_sas} SAs): they are not in this report")
        if self.archived_dropped:
            out.append(f"live: {self.archived_dropped} older finding(s) of expired or evicted "
                       f"SAs not listed (at most {self.limits.report_max_items} kept)")
        if self.writer is not None and self.writer.deleted:
            out.append(f"live: {self.writer.deleted} older capture file(s) were deleted by "
                       f"rotation (--write-files {self.writer.count}); evidence frames in them "
                       f"are gone")
        late = getattr(self, "late", None)
        if late is not None:
            at, stop, after = late
            out.append(f"live: the final rules were not done within --report-within "
                       f"{self.opts.report_within:g} s of the stop: this report is the last "
                       f"evaluation's, of what was held at {_hms(at)} ({stop - at:.1f} s before "
                       f"the stop); the {after} frame(s) read after it are not in it")
        for name, n in getattr(self, "unread", {}).items():
            out.append(f"live: {name}: {n} frame(s) captured before the stop were still in the "
                       f"capture ring and were not analysed (the stop reads the ring for at "
                       f"most {self.DRAIN_SECONDS:g} s)")
        for c in self.captures:
            for ts, reason in getattr(c, "errors", []):
                out.append(f"live: {c.name}: {reason} at {_hms(ts)}")
        for s in self.sinks:
            if getattr(s, "dropped", 0):
                inner = getattr(s, "sink", s)
                what = "--exec" if isinstance(inner, ExecHook) else "event output"
                out.append(f"live: {what}: {s.dropped} event(s) dropped (its reader did not "
                           f"keep up; queue full)")
        return out
