"""The ``pcapvpn live`` session: capture → decode → track (:class:`LiveSession`), the loop
that reads the rings and runs the evaluations against the clock, and the status it shows.  The
evaluation is :mod:`pcapvpn.live.evaluate`, the stop and final report :mod:`pcapvpn.live.finish`."""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter

from pcapvpn.findings import Term, msg, msg_join
from pcapvpn.live.bpf import build_filter, compile_filter
from pcapvpn.live.capture import AfPacketRing, CaptureError, PipeCapture
from pcapvpn.live.evaluate import Evaluation
from pcapvpn.live.events import StatusView, _hms
from pcapvpn.live.finish import Finish
from pcapvpn.live.options import LiveOptions
from pcapvpn.live.writer import LiveSource, RotatingWriter, _Itf, _ns

__all__ = ["LiveSession", "MAX_STATUS_TUNNELS"]

#: tunnels listed in a status event (the worst first; ``tunnels_total`` counts them all)
MAX_STATUS_TUNNELS = 200


class LiveSession(Evaluation, Finish):
    """Capture → decode → track; rules against the clock; events; the final report."""

    def __init__(self, opts: LiveOptions, sinks=(), view: StatusView | None = None,
                 clock=time.time, captures=None):
        from pcapvpn.analysis import Options
        from pcapvpn.decode import Decoder
        from pcapvpn.track import Tracker

        from pcapvpn.limits import Limits

        self.opts = opts
        #: the bounds of what is kept, lowered to what ``max_sas`` SAs need (Limits.for_live)
        self.limits = (opts.limits or Limits()).for_live(opts.max_sas)
        self.sinks = list(sinks)
        self.view = view
        self.clock = clock
        self.stopping = False
        self.filter = build_filter(opts)
        self.captures = []
        self.started = clock()
        if captures is not None:
            # already open capture objects (tests and simulations: see ``_open`` for the
            # interface they provide)
            self.captures = list(captures)
        else:
            try:
                for name in opts.interfaces:
                    self.captures.append(self._open(name))
            except BaseException:
                self.close_captures()
                raise
        self.itfs = [_Itf(c.linktype, 262144, c.name) for c in self.captures]
        #: per capture, its ring read a block at a time into the batched ESP classification
        #: (pcapvpn.live.batch), or None: frame by frame (pipe backends, raw-IP rings, --keys)
        from pcapvpn.live.batch import BlockReader, batchable

        self._blocks = [BlockReader(c) if opts.batch and opts.keys is None and batchable(c)
                        else None for c in self.captures]
        self.sources: list = []
        self.writer = None
        self.totals = [{} for _ in self.captures]  # per interface: counters so far
        if opts.write_dir:
            self.writer = RotatingWriter(opts.write_dir, [(c.linktype, c.name) for c in
                                                          self.captures],
                                         opts.write_size, opts.write_files)
            first = self.writer.open(self.started)
        # the tracker's file-name list (shared with its IKE tracker) grows with the rotation
        if opts.points:
            from pcapvpn.track.vantage import PointTracker as Tracker  # noqa: F811
        self.tracker = Tracker(opts.thresholds, [], opts.keys, list(opts.vpn_servers),
                               self.limits)
        # at their bounds, the least recently active connections and flows make room
        self.tracker.evict_least_recent()
        self.names = self.tracker.names
        self.names.clear()
        if self.writer is not None:
            # frames are numbered as Wireshark numbers the written file (all interfaces)
            self._new_source(first, "pcapng")
        else:
            # nothing written: each interface is a source of its own, ``live:IFACE``, its
            # frames numbered from 1 since the capture started
            for i in range(len(self.captures)):
                name = (opts.interfaces[i] if len(opts.interfaces) == len(self.captures)
                        else self.captures[i].name)
                self._new_source(f"live:{name}", "live", [i])
        self.decoder = Decoder(self.tracker, self.limits, vpn_servers=list(opts.vpn_servers))
        #: --vantage: the points (pcapvpn.track.vantage.Point), each with its own tracker and
        #: decoder; ``_point_of[i]``: the point of capture ``i``
        self.points = []
        self._point_of = [0] * len(self.captures)
        if opts.points:
            self._make_points(opts)
        self.analysis_options = Options(thresholds=opts.thresholds,
                                        expect_peers=list(opts.expect_peers), keys=opts.keys,
                                        vpn_servers=list(opts.vpn_servers), limits=self.limits)
        from pcapvpn.logsrc import follow_logs

        self.log_followers = follow_logs(opts.logs, opts.log_tz)
        self.analysis_options.logs = [f.source for f in self.log_followers]
        self.active: dict = {}
        self.archived: list = []  # findings whose SAs expired before they cleared
        self.archived_dropped = 0  # ... beyond Limits.report_max_items of them: counted
        self.raised = 0
        self.resolved = 0
        self.evaluations = 0
        self.eval_seconds = 0.0
        self.eval_max = 0.0
        self._expired_spis = set()
        self._pending = {}
        self._child = None  # (pid, fd, chunks, t0) of a forked evaluation
        from pcapvpn.rules.incremental import RuleCache

        #: the rules' findings kept between evaluations, per tunnel (only what changed runs)
        self.rule_cache = RuleCache()
        self.last_cost = 0.0
        self.last_eval = None  # the last _compute() result applied
        self._pps_mark = (self.started, 0)
        self.pps = 0.0
        self.frames = 0

    #: the cyclic collector's policy in the capture loop (:class:`pcapvpn.live.collector.
    #: Collector`, installed by ``pcapvpn live``), told after each evaluation; None: Python's
    #: default (tests and simulations in a shared process)
    collector = None

    def _evaluate(self, now, final: bool = False) -> None:
        super()._evaluate(now, final)
        if self.collector is not None and not final and not self.stopping:
            self.collector.evaluated()

    def _poll_child(self, block: bool = False) -> bool:
        done = super()._poll_child(block)
        if done and self.collector is not None and not self.stopping:
            self.collector.evaluated()
        return done

    def _make_points(self, opts) -> None:
        """One tracker and decoder per capture point; the first point's are the session's."""
        from pcapvpn.decode import Decoder
        from pcapvpn.track.vantage import Point, PointTracker

        order = list(dict.fromkeys(opts.points))
        for k, name in enumerate(order):
            idx = [i for i, p in enumerate(opts.points) if p == name]
            for i in idx:
                self._point_of[i] = k
            if k == 0:
                tracker, decoder = self.tracker, self.decoder
            else:
                tracker = PointTracker(opts.thresholds, [], opts.keys, list(opts.vpn_servers),
                                       self.limits)
                tracker.evict_least_recent()
                # the file names (live:IFACE or the written files) are the session's
                tracker.names = tracker.ike_tracker.names = self.names
                decoder = Decoder(tracker, self.limits, vpn_servers=list(opts.vpn_servers))
            pt = Point(name, [opts.interfaces[i] for i in idx], tracker=tracker,
                       decoder=decoder, start=self.started, end=self.started)
            pt.capture_indices = idx
            self.points.append(pt)

    def _points_now(self, now):
        """The points with their capture windows up to ``now`` (and what they were given:
        the sources of their interfaces)."""
        for pt in self.points:
            pt.end = now
            pt.sources = ([self._source_of(i) for i in pt.capture_indices]
                          if self.writer is None else list(self.sources))
            pt.drops = sum(self.totals[i].get("osdrop", 0) + self.totals[i].get("ifdrop", 0)
                           for i in pt.capture_indices) or None
        return self.points

    # -- capture -------------------------------------------------------------------------------

    def _open(self, name):
        o = self.opts
        if o.backend == "afpacket":
            from pcapvpn.live.capture import interface_info

            _idx, lt = interface_info(name)
            bpf = compile_filter(build_filter(o, lt), lt)
            nblocks = max(4, o.buffer_mb)  # 1 MiB blocks
            return AfPacketRing(name, bpf, block_size=1 << 20, block_nr=nblocks,
                                promisc=o.promisc)
        if o.backend in ("tcpdump", "dumpcap"):
            compile_filter(self.filter)  # a clear error before the child starts
            return PipeCapture(name, self.filter, tool=o.backend, buffer_mb=o.buffer_mb,
                               promisc=o.promisc)
        raise CaptureError(f"unknown capture backend {o.backend!r}")

    def close_captures(self):
        for b in getattr(self, "_blocks", ()):
            if b is not None:
                b.close()
        for c in self.captures:
            c.close()

    def _new_source(self, name, fmt="pcapng", ifaces=None):
        """A source for the report: a written file holding every interface (``ifaces`` None) or
        one interface's frames (``ifaces`` [index], without ``--write``)."""
        ifaces = list(range(len(self.captures))) if ifaces is None else list(ifaces)
        src = LiveSource(name, len(self.sources), [self.itfs[i] for i in ifaces], fmt)
        src._ifaces = ifaces
        src._base = [dict(t) for t in self.totals]
        src.numbered = 0  # frames numbered so far (the last frame's number)
        self.names.append(name)
        self.sources.append(src)
        return src

    def _source_of(self, idx):
        """The source the frames of capture ``idx`` belong to now."""
        return self.sources[-1] if self.writer is not None else self.sources[idx]

    def _current_sources(self) -> list:
        """The sources frames still go to (the file being written, or every interface)."""
        return self.sources[-1:] if self.writer is not None else self.sources

    def _span_stats(self, src) -> list:
        """Per interface of ``src``, the counters of its span (pcapng ISB names)."""
        out = []
        for i in src._ifaces:
            t = self.totals[i]
            b = src._base[i] if i < len(src._base) else {}
            # counters only grow; an interface re-created meanwhile restarts its own
            out.append({k: max(0, t.get(k, 0) - b.get(k, 0)) for k in t})
        return out

    def _rotate(self, ts):
        ts = _ns(ts)
        if self.writer.f is not None:
            self._refresh_totals()
            self.writer.close(ts, self._span_stats(self.sources[-1]))
            self.sources[-1].ended = ts
        path = self.writer.open(ts)
        self._new_source(path)

    def _refresh_totals(self):
        rx_dropped = 0
        for i, c in enumerate(self.captures):
            st = c.stats()
            itf = st["interface"]
            self.totals[i] = {
                "ifrecv": itf.get("rx_packets", 0),
                "filteraccept": st["received"],
                "osdrop": st["drops"],
                "ifdrop": itf.get("rx_missed_errors", 0) + itf.get("rx_fifo_errors", 0),
            }
            # the stack's rx_dropped also counts frames nobody wanted (unknown protocols,
            # VLANs without a device): shown in the status, not counted as capture drops
            rx_dropped += itf.get("rx_dropped", 0)
        self._rx_dropped = rx_dropped
        self._refresh_isb()

    def drops(self) -> int:
        return sum(t.get("osdrop", 0) + t.get("ifdrop", 0) for t in self.totals)

    def _feed(self, idx, cap, batch):
        """Read what ``cap`` has (into the list ``batch``), write it, decode it."""
        src = self._source_of(idx)
        b0 = cap.bytes
        decoder = self.points[self._point_of[idx]].decoder if self.points else self.decoder
        blocks = self._blocks[idx] if idx < len(self._blocks) else None
        if blocks is not None:  # a ring block at a time into the numpy classification
            write = None
            if self.writer is not None:
                def write(frames, w=self.writer.write):
                    w(idx, frames)
            n, t0, t1 = blocks.feed(decoder, src.index, src.numbered, 4, write)
            if n:
                self._count(idx, cap, src, n, b0, t0, t1)
            return n
        # a few ring blocks at a time: a backlog never becomes one huge list
        n = cap.read(batch, src.index, src.numbered, max_blocks=4)
        if not n:
            return 0
        self._count(idx, cap, src, n, b0, batch[0][2], batch[-1][2])
        if self.writer is not None:
            self.writer.write(idx, batch)
        decoder.run(batch)
        return n

    def _count(self, idx, cap, src, n, b0, t0, t1):
        """``n`` frames of capture ``idx`` read into ``src`` (``t0``, ``t1``: the first's and the
        last's time; ``b0``: the capture's byte count before them)."""
        src.numbered += n
        src.frame_count += n
        k = src._ifaces.index(idx)
        src.interface_frames[k] = src.interface_frames.get(k, 0) + n
        src.byte_count += cap.bytes - b0
        src.linktypes[cap.linktype] += n
        if src.first_ts is None or t0 < src.first_ts:
            src.first_ts = t0
        if src.last_ts is None or t1 > src.last_ts:
            src.last_ts = t1
        self.frames += n

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        """Capture until :meth:`stop` (signal handlers call it) or ``duration`` runs out."""
        caps = self.captures
        batch: list = []
        clock = self.clock
        now = clock()
        next_eval = now + self.opts.eval_interval
        deadline = None if self.opts.duration is None else self.started + self.opts.duration
        next_status = now + self.opts.status_interval if self.opts.status_interval else None
        next_view = now
        poller = None
        if len(caps) > 1 and all(isinstance(c, AfPacketRing) for c in caps):
            import select

            poller = select.poll()
            for c in caps:
                poller.register(c.fileno(), select.POLLIN)
        self._evaluate(now)
        while not self.stopping:
            got = 0
            for i, c in enumerate(caps):
                batch.clear()
                got += self._feed(i, c, batch)
                if self.writer is not None and self.writer.full():
                    self._rotate(clock())
            batch.clear()
            now = clock()
            if self._child is not None:
                if self._poll_child():
                    next_eval = now + self.opts.eval_interval
            elif now >= next_eval:
                if self.last_cost > self.FORK_ABOVE and self._fork_evaluation(now):
                    pass  # the result comes back through _poll_child
                else:
                    self._evaluate(now)
                    next_eval = now + max(self.opts.eval_interval, 10 * self.last_cost)
                if self.writer is not None:
                    self.writer.flush()
            if next_status is not None and now >= next_status:
                self._emit({"event": "status", "ts": now, "status": self.status(now)})
                next_status = now + self.opts.status_interval
            if self.view is not None and now >= next_view:
                self.view.update(self.status_lines(now))
                next_view = now + 1.0
            if deadline is not None and now >= deadline:
                break
            if not got:
                wait = 0.05 if self._child is not None else max(0.0, min(next_eval - now, 0.2))
                if poller is not None:
                    poller.poll(int(wait * 1000))
                elif len(caps) == 1:
                    caps[0].wait(wait)
                else:  # several pipe children: their reader threads fill queues
                    time.sleep(min(wait, 0.02))

    def stop(self, *_args) -> None:
        if not self.stopping:  # (when: the final report's bound counts from it)
            self.stop_asked = time.monotonic()
        self.stopping = True

    def _emit(self, ev: dict) -> None:
        for s in self.sinks:
            try:
                s.emit(ev)
            except BrokenPipeError:
                raise
            except OSError as e:  # a sink that fails must not stop the capture
                sys.stderr.write(f"pcapvpn: event output failed: {e}\n")

    # -- status ---------------------------------------------------------------------------------

    def status(self, now) -> dict:
        mark_ts, mark_n = self._pps_mark
        if now - mark_ts >= 1.0:
            self.pps = (self.frames - mark_n) / (now - mark_ts)
            self._pps_mark = (now, self.frames)
        res = self.last_eval or {}
        verdicts = res.get("verdicts", [])
        n_ike, n_esp = res.get("counts", (0, 0))
        order = {"failing": 0, "degraded": 1, "unknown": 2, "healthy": 3}
        tunnels = [{"id": v.tunnel, "verdict": v.verdict, "stage_reached": v.stage_reached,
                    "primary_code": v.primary_code}
                   for v in sorted(verdicts, key=lambda v: (order.get(v.verdict, 4), v.tunnel))]
        return {
            "interfaces": list(self.opts.interfaces),
            "running": round(now - self.started, 1),
            "frames": self.frames,
            "pps": round(self.pps, 1),
            "drops": {"ring": sum(t.get("osdrop", 0) for t in self.totals),
                      "interface": sum(t.get("ifdrop", 0) for t in self.totals),
                      "interface_rx_dropped": getattr(self, "_rx_dropped", 0)},
            "ike_sas": n_ike,
            "esp_sas": n_esp,
            "expired_sas": self.tracker.expired_sas,
            "evicted_sas": self.tracker.evicted_sas,
            "active_findings": len(self.active),
            "raised": self.raised,
            "resolved": self.resolved,
            "tunnels_total": len(tunnels),
            "verdicts": dict(Counter(v.verdict for v in verdicts)),
            "tunnels": tunnels[:MAX_STATUS_TUNNELS],  # the worst first
            "files": list(self.writer.files) if self.writer else [],
            "evaluation_ms": round(1000 * getattr(self, "last_cost", 0.0), 1),
        }

    def status_lines(self, now) -> list[str]:
        st = self.status(now)
        d = st["drops"]
        # messages: the view shows them in the report's language (StatusView)
        verdicts = msg_join(", ", [msg("{n} {verdict}", n=n, verdict=Term(str(v)))
                                   for v, n in sorted(st["verdicts"].items())])
        head = msg("── pcapvpn live {interfaces}  {clock}  {pps:,.0f} pps  {frames:,} frames  "
                   "drops {ring} ring {iface} iface  SAs {ike_sas} IKE {esp_sas} ESP  findings "
                   "{active} active", interfaces=",".join(st["interfaces"]), clock=_hms(now),
                   pps=st["pps"], frames=st["frames"], ring=d["ring"], iface=d["interface"],
                   ike_sas=st["ike_sas"], esp_sas=st["esp_sas"], active=st["active_findings"])
        lines = [head, msg("   tunnels: {n}", n=st["tunnels_total"])
                 + (msg(" ({verdicts})", verdicts=verdicts) if verdicts else "")]
        rows = st["tunnels"]
        rows_max = max(1, shutil.get_terminal_size((100, 24)).lines // 3)
        for t in rows[:rows_max]:
            lines.append(msg("   {verdict:<8} {tunnel:<40} {stage:<14} {code}",
                             verdict=Term(str(t["verdict"])), tunnel=t["id"],
                             stage=Term(str(t["stage_reached"])), code=t["primary_code"] or ""))
        if st["tunnels_total"] > rows_max:
            lines.append(msg("   ... {n} more", n=st["tunnels_total"] - rows_max))
        return lines
