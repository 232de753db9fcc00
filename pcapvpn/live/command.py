"""``pcapvpn live`` as a command (:func:`run_command`, called by :mod:`pcapvpn.cli`): the options
gathered, the event outputs and the session made, signals, the metrics endpoint, the capture run
and the final report delivered as ``analyze`` delivers it."""

from __future__ import annotations

import gc
import os
import signal
import sys

from pcapvpn.findings import Term
from pcapvpn.i18n import Lang
from pcapvpn.live.bpf import filter_text
from pcapvpn.live.capture import CaptureError
from pcapvpn.live.events import StatusView, _Filtered, event_sinks
from pcapvpn.live.options import LiveOptions
from pcapvpn.live.session import LiveSession
from pcapvpn.live.writer import written_sources
from pcapvpn.report.escape import one_line as _clean

__all__ = ["install_signals", "run_command"]


def install_signals(session) -> None:
    """SIGINT/SIGTERM stop the capture cleanly (the report follows); a second one aborts."""
    def handler(signum, frame):
        if session.stopping:
            raise KeyboardInterrupt
        # no collector pass from here to the report (run_command): one that began in the rest
        # of the loop's iteration would hold the stop up to a second or more at 20,000 SAs
        gc.disable()
        session.stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)




def run_command(*, interfaces, filter_expr, replace_filter, ike_ports, print_filter, events,
                syslog, syslog_socket, exec_cmd, quiet, write_dir, write_size_mb, write_files,
                idle_expiry, max_sas, buffer_mb, promisc, backend, duration, status_interval,
                expect_peers, thresholds, report=None, vpn_servers=(), keys=None, stdout=None,
                stderr=None, logs=(), log_tz=None, points=None, metrics=None,
                workers=1, report_within=2.0) -> int:
    """``pcapvpn live``; returns the exit status (as ``analyze``: 0, 1 findings at or above
    ``report.fail_on``, 2 usage or capture error).  ``report``: the report options
    (:class:`pcapvpn.report.deliver.ReportOptions`) of the final report; ``metrics``:
    ``ADDR:PORT`` of a Prometheus endpoint over the session (:mod:`pcapvpn.metrics`)."""
    from pcapvpn.report.deliver import DeliveryError, ReportOptions, deliver, redactor_for

    ro = report or ReportOptions()
    L = Lang(ro.lang)  # the lines on standard error in the report's language
    peers, min_severity = ro.peers, ro.min_severity
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    opts = LiveOptions(
        interfaces=list(interfaces), filter_expr=filter_expr, replace_filter=replace_filter,
        ike_ports=tuple(ike_ports), thresholds=thresholds, expect_peers=list(expect_peers),
        backend=backend, buffer_mb=buffer_mb, promisc=promisc, write_dir=write_dir,
        write_size=int(write_size_mb * 1024 * 1024), write_files=write_files,
        idle_expiry=idle_expiry, max_sas=max_sas, duration=duration,
        status_interval=status_interval if events == "jsonl" else 0,
        vpn_servers=list(vpn_servers), keys=keys, logs=list(logs), log_tz=log_tz,
        points=list(points) if points else None, workers=workers,
        report_within=report_within)
    if print_filter:
        from pcapvpn.live.capture import interface_info

        try:  # the filter of the first interface's link type (a raw-IP 'any' has no VLAN part)
            lt = interface_info(opts.interfaces[0])[1] if opts.interfaces else 1
        except CaptureError:
            lt = 1
        stdout.write(filter_text(opts, lt))
        return 0
    try:  # a redaction key that cannot be read or made: said before capturing
        redactor = redactor_for(ro)
    except DeliveryError as e:
        stderr.write(L.fmt("pcapvpn: error: {message}", message=Term(_clean(e))) + "\n")
        return 2
    view = None
    if not quiet and stderr.isatty():
        view = StatusView(stderr, lang=ro.lang)
    color = events == "text" and stdout.isatty() and not os.environ.get("NO_COLOR")
    sinks = []
    try:
        raw = event_sinks(events, stdout, color=color,
                          view=view if (stdout.isatty() and view is not None) else None,
                          syslog_path=(syslog_socket or "/dev/log") if syslog else None,
                          exec_cmd=exec_cmd, lang=ro.lang)
        sinks = [_Filtered(s, peers, min_severity, redactor) for s in raw]
        session = session_class(opts)(opts, sinks, view)
        exporter = _start_metrics(metrics, session, redactor)
    except CaptureError as e:
        for s in sinks:
            if hasattr(s, "close"):
                s.close()
        stderr.write(L.fmt("pcapvpn: error: {message}", message=Term(str(e))) + "\n")
        return 2
    install_signals(session)
    if view is None:
        stderr.write(L.fmt("pcapvpn: capturing on {interfaces} (Ctrl-C or SIGTERM stops and "
                           "prints the report)", interfaces=", ".join(opts.interfaces)) + "\n")
        stderr.flush()
    gc_was = gc.isenabled()
    from pcapvpn.live.collector import Collector

    session.collector = Collector()
    session.collector.start()
    try:
        try:
            session.run()
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            # from the stop to the report no collector pass runs: a pass over the state held
            # costs more than the report's rendering (the process ends after it)
            gc.disable()
            result = session.finish()
            if exporter is not None:
                exporter.close()
            for s in sinks:
                if hasattr(s, "close"):
                    s.close()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if ro.evidence:
            # the written files, read again (rotation may have deleted the oldest)
            result.sources = written_sources(session.sources)
        color = stdout.isatty() and not os.environ.get("NO_COLOR")
        try:
            return deliver(result, ro, stdout=stdout, stderr=stderr, color=color,
                           before_report="\n" if events != "none" else "", redactor=redactor)
        except DeliveryError as e:
            stderr.write(L.fmt("pcapvpn: error: {message}", message=Term(_clean(e))) + "\n")
            return 2
    finally:
        session.collector.stop()
        if gc_was:
            gc.enable()


def session_class(opts):
    """The session for ``opts``: :class:`LiveSession`, or over several capture processes
    (``--workers``) :class:`pcapvpn.live.workers.FanoutSession`."""
    if opts.workers > 1:
        from pcapvpn.live.workers import FanoutSession

        return FanoutSession
    return LiveSession


def _start_metrics(spec, session, redactor):
    """``--metrics ADDR:PORT``: a read-only Prometheus view of ``session`` (tunnel labels
    pseudonymised as the report with ``--redact``), or None."""
    if not spec:
        return None
    from pcapvpn.metrics import MetricsError, start_exporter

    try:
        return start_exporter(session, spec, redactor.text if redactor is not None else None)
    except MetricsError as e:
        session.close_captures()
        raise CaptureError(str(e)) from None
