"""``pcapvpn live``: watch interfaces and report tunnel failures as they happen.

The same pipeline as ``analyze`` (decode → track → rules), fed by a live capture
(:mod:`pcapvpn.live.capture`) instead of files, with the rules evaluated against the clock:

* about once a second the rules run over ``Tracker.state(now)``; a finding id that appears is
  **raised** (once), one that is gone in two evaluations in a row is **resolved** — the
  condition cleared (an answer came, ESP returned) or the tunnel recovered (a newer IKE SA came
  up and carried ESP both ways after the failure: ``rules.verdict``'s recovery).  A finding that
  disappears because its SAs were expired (memory bound) is not "resolved": it is kept for the
  final report;
* findings the rules emit before they can be certain of them in a running capture are held back
  (:data:`HOLD`);
* events go to stdout (``text`` or ``jsonl``: ``{"event": "raised"|"resolved"|"status",
  "finding": <analyze's finding schema>, ...}``), optionally to the local syslog socket and to
  a command (``--exec``: the event as JSON on its stdin and in ``PCAPVPN_*`` environment
  variables, never on its command line);
* a status view (tunnels, verdicts, pps, drops) is redrawn at the bottom of the terminal;
* memory is bounded: idle SAs expire, at most ``max_sas`` SAs are tracked
  (:meth:`pcapvpn.track.Tracker.expire`); nothing is kept per packet;
* ``--write DIR`` keeps the captured packets in rotating pcapng files (frame numbers in the
  findings are those of these files, so ``analyze`` on them shows the same evidence);
* on stop, the full report in any ``analyze`` format, built by :func:`pcapvpn.analysis.diagnose`.

The package's rooms: :mod:`~pcapvpn.live.capture` (AF_PACKET ring, tcpdump/dumpcap pipe),
:mod:`~pcapvpn.live.bpf` (the capture filter), :mod:`~pcapvpn.live.options`,
:mod:`~pcapvpn.live.session` (the loop and status), :mod:`~pcapvpn.live.evaluate` (one evaluation,
raised/resolved), :mod:`~pcapvpn.live.policy` (hold, raise and resolve rules),
:mod:`~pcapvpn.live.events` (stdout, jsonl, syslog, ``--exec``, the status view),
:mod:`~pcapvpn.live.writer` (``--write`` files and the report's sources),
:mod:`~pcapvpn.live.finish` (stop and final report), :mod:`~pcapvpn.live.command` (the command).
"""

from __future__ import annotations

from pcapvpn.live.bpf import build_filter, filter_text
from pcapvpn.live.capture import CaptureError
from pcapvpn.live.command import _start_metrics, install_signals, run_command
from pcapvpn.live.events import (ExecHook, JsonlEvents, QueuedStream, StatusView, SyslogEvents,
                                 TextEvents, _event_json, _finding_dict, event_environment,
                                 event_sinks)
from pcapvpn.live.options import LiveOptions
from pcapvpn.live.policy import (ABSENCE_CODES, HOLD, RAISE_AFTER, RESOLVE_AFTER, RESOLVED_CLEARED,
                                 RESOLVED_RECOVERED, annotate_drops)
from pcapvpn.live.session import LiveSession
from pcapvpn.live.writer import LiveSource, RotatingWriter, written_sources

__all__ = ["ABSENCE_CODES", "HOLD", "RAISE_AFTER", "RESOLVED_CLEARED", "RESOLVED_RECOVERED",
           "RESOLVE_AFTER", "CaptureError", "ExecHook", "JsonlEvents", "LiveOptions",
           "LiveSession", "LiveSource", "QueuedStream", "RotatingWriter", "StatusView",
           "SyslogEvents", "TextEvents", "_event_json", "_finding_dict", "_start_metrics",
           "annotate_drops", "build_filter", "event_environment", "event_sinks", "filter_text",
           "install_signals", "run_command", "written_sources"]
