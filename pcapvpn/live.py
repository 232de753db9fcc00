"""``pcapvpn live``: watch interfaces and report tunnel failures as they happen.

The same pipeline as ``analyze`` (decode → track → rules), fed by a live capture
(:mod:`pcapvpn.live_capture`) instead of files, with the rules evaluated against the clock:

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
"""

from __future__ import annotations

import gc
import json
import os
import queue
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from pcapvpn.findings import SEVERITIES
from pcapvpn.live_capture import (AfPacketRing, CaptureError, PipeCapture, compile_filter,
                                  default_filter)
# events: vendor IDs, identities and other attacker-chosen strings reach the terminal and syslog
# as printable one-line text (the escaping of every report format)
from pcapvpn.report.escape import one_line as _clean
from pcapvpn.thresholds import DEFAULT, Thresholds

__all__ = ["CaptureError", "LiveOptions", "LiveSession", "build_filter", "event_sinks"]

#: findings that depend on something missing: when the capture dropped packets they say so
ABSENCE_CODES = frozenset((
    "IKE_NO_RESPONSE", "NAT_T_BLOCKED", "IKE_FRAGMENTATION_LOSS", "EXPECTED_PEER_ABSENT",
    "NAT_KEEPALIVE_MISSING", "CHILD_SA_FAILED", "ESP_ONE_WAY", "CAPTURE_ONE_DIRECTION",
    "ESP_SEQUENCE_GAP", "ESP_NO_TRAFFIC", "MTU_BLACK_HOLE", "DPD_TIMEOUT"))

#: findings the rules report with a "too soon" caveat at the end of a file; live holds them
#: until the capture has run this threshold (name in Thresholds) since their first evidence /
#: since the capture started (None)
HOLD = {
    # "never answered": analyze says it at the end of a file once a retransmission was seen;
    # a running capture says it once the request has waited the response timeout, as analyze
    # does for a request that was not retransmitted (an answer may still be on its way)
    "IKE_NO_RESPONSE": ("response_timeout", "evidence"),
    "NAT_T_BLOCKED": ("response_timeout", "evidence"),
    "IKE_FRAGMENTATION_LOSS": ("response_timeout", "evidence"),
    "OPENVPN_NO_RESPONSE": ("response_timeout", "evidence"),
    "WIREGUARD_NO_RESPONSE": ("response_timeout", "evidence"),
    "TCP_NO_ANSWER": ("response_timeout", "evidence"),
    # one direction only: wait the one-way window after the first packet (the rule's caveat)
    "CAPTURE_ONE_DIRECTION": ("one_way_window", "evidence"),
    # a gateway that talks at all shows up within a DPD interval (keepalives, DPD, ESP)
    "EXPECTED_PEER_ABSENT": ("dpd_timeout", "start"),
}

#: tunnels listed in a status event (the worst first; ``tunnels_total`` counts them all)
MAX_STATUS_TUNNELS = 200

#: why a raised finding was resolved (a resolved event's ``reason``; ``--lang`` translates it)
RESOLVED_RECOVERED = ("the tunnel recovered: a later IKE SA came up, or ESP flowed both ways "
                      "again")
RESOLVED_CLEARED = "the condition cleared"

#: evaluations in a row a finding must be present before it is raised / absent before it is
#: resolved: an evaluation may fall between a request and its answer (an IKE_SA_INIT whose
#: response arrives a millisecond later) and see a state that lasts only that long
RAISE_AFTER = 2
RESOLVE_AFTER = 2

_SEV_SYSLOG = {"critical": 2, "error": 3, "warning": 4, "info": 6}
_LOG_NOTICE = 5
_LOG_DAEMON = 3


@dataclass
class LiveOptions:
    interfaces: list
    #: ``-f``: a tcpdump expression added to (or, with ``replace_filter``, replacing) the default
    filter_expr: str | None = None
    replace_filter: bool = False
    ike_ports: tuple = ()
    thresholds: Thresholds = DEFAULT
    expect_peers: list = field(default_factory=list)
    backend: str = "afpacket"
    buffer_mb: int = 64
    promisc: bool = True
    #: --write DIR: rotating pcapng files of ``write_size`` bytes, at most ``write_files`` kept
    write_dir: str | None = None
    write_size: int = 100 * 1024 * 1024
    write_files: int = 10
    #: SAs (and keepalive flows, ICMP errors ...) silent this long are forgotten (seconds)
    idle_expiry: float = 1800.0
    max_sas: int = 20000
    #: seconds between rule evaluations (longer when an evaluation costs more than 10 % of it)
    eval_interval: float = 1.0
    #: seconds between status events in the jsonl stream (0: none)
    status_interval: float = 60.0
    #: stop by itself after this many seconds (None: until SIGINT/SIGTERM)
    duration: float | None = None
    #: SSL-VPN gateways (``analyze --vpn-server``): ``(packed address, port or None)``
    vpn_servers: list = field(default_factory=list)
    #: decryption keys (``analyze --keys``): a pcapvpn.keys.KeyStore or None
    keys: object = None
    #: --log FILE: gateway logs followed as they grow (pcapvpn.logsrc), and --log-tz
    logs: list = field(default_factory=list)
    log_tz: object = None
    #: bounds of what is kept (pcapvpn.decode.Limits; None: the defaults)
    limits: object = None
    #: --vantage NAME=IFACE: the point each interface of ``interfaces`` is (same length; None:
    #: every interface is one capture point, as without --vantage).  The first point's
    #: interfaces are the one the events and the report are of; the others are matched with it
    #: (pcapvpn.track.vantage): clock offsets, PATH_LOSS and locations
    points: list | None = None


def build_filter(opts: LiveOptions, linktype: int = 1) -> str:
    """The capture filter: the default one (:func:`live_capture.default_filter`), or it and
    ``-f``, or ``-f`` alone with ``replace_filter``."""
    if opts.filter_expr and opts.replace_filter:
        return opts.filter_expr
    base = default_filter(opts.ike_ports, vpn_servers=opts.vpn_servers, linktype=linktype)
    if opts.filter_expr:
        return f"({base}) or ({opts.filter_expr})"
    return base


def filter_text(opts: LiveOptions, linktype: int = 1) -> str:
    """``--print-filter``: the capture filter of :func:`build_filter`, one clause group per line
    under a comment saying what it catches, headed by the number of BPF instructions libpcap
    compiles it to.  ``tcpdump -F FILE`` reads it as printed (lines starting with ``#`` are
    comments there)."""
    from pcapvpn.live_capture import filter_groups, linktype_label

    expr = build_filter(opts, linktype)
    try:
        count = f"{len(compile_filter(expr, linktype)) // 8} BPF instructions"
    except CaptureError as e:
        count = f"not compiled: {e}"
    out = [f"# pcapvpn live capture filter for {linktype_label(linktype)} interfaces: {count}",
           "# (tcpdump -F FILE reads this file as it is: lines starting with # are comments)"]
    if opts.filter_expr and opts.replace_filter:
        out += ["# -f (--replace-filter): your expression instead of the default", expr]
        return "\n".join(out) + "\n"
    groups = filter_groups(opts.ike_ports, vpn_servers=opts.vpn_servers)

    def block(indent):
        lines = []
        for i, (what, clause) in enumerate(groups):
            lines.append(f"{indent}# {what}")
            lines.append(f"{indent}{'or ' if i else ''}{clause}")
        return lines

    if linktype == 1:
        out.append("( (")
        out += block("  ")
        out += [") )", "# the same behind an 802.1Q / 802.1ad VLAN tag", "or ( vlan and ("]
        out += block("  ")
        out.append(") )")
    else:
        out.append("(")
        out += block("  ")
        out.append(")")
    if opts.filter_expr:
        out = out[:2] + ["("] + out[2:] + [")", "# -f: your expression, added", "or (",
                                           opts.filter_expr, ")"]
    return "\n".join(out) + "\n"


# -- what build_report needs from a source ---------------------------------------------------------

@dataclass
class _Itf:
    linktype: int
    snaplen: int
    name: str


class LiveSource:
    """A :class:`pcapvpn.sources.Source` look-alike for the report: one written file (or the
    whole capture without ``--write``); ``isb`` holds the drop counters of its span."""

    compressed = False

    def __init__(self, name, index, interfaces, fmt="pcapng"):
        self.name = name
        self.index = index
        self.format = fmt
        self.interfaces = interfaces
        self.isb = {}
        self.drops = {}
        self.linktypes = Counter()
        self.frame_count = 0
        self.byte_count = 0
        self.first_ts = None
        self.last_ts = None
        self.ended = None  # when this span of the capture ended (set at rotation and stop)
        self.interface_frames = {}  # frames per interface (index in ``interfaces``)
        self.warnings = []
        self.out_of_order = 0

    def close(self):
        pass


# -- rotating pcapng files -------------------------------------------------------------------------

class RotatingWriter:
    """``--write DIR``: pcapng files of at most ``size`` bytes (a batch may run past it), the
    oldest deleted beyond ``count`` files (0: keep all).  Each file starts with one interface
    description per captured interface and ends with interface statistics blocks whose counters
    cover that file's span (so that ``analyze`` over several of them adds them up right)."""

    def __init__(self, directory, interfaces, size, count, prefix="pcapvpn-live"):
        from dissect.vpn.capture import PcapngWriter

        self._Writer = PcapngWriter
        self.dir = directory
        self.interfaces = interfaces  # [(linktype, name)]
        self.size = size
        self.count = count
        self.prefix = prefix
        self.files = []  # paths still on disk, oldest first
        self.all_files = []  # every path ever written (frame refs name them)
        self.f = None
        self.w = None
        self.opened = None  # when the current file was opened
        self.written = 0
        self.deleted = 0
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise CaptureError(f"--write {directory}: {e.strerror}") from None

    def open(self, ts: float) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ts))
        path = os.path.join(self.dir, f"{self.prefix}-{stamp}-{len(self.all_files) + 1:05d}.pcapng")
        try:
            self.f = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed in close()
        except OSError as e:
            raise CaptureError(f"--write: cannot create {path}: {e.strerror}") from None
        self.w = self._Writer(self.f)
        self.opened = ts
        for lt, name in self.interfaces:
            self.w.add_interface(lt, name, tsresol=9)
        self.files.append(path)
        self.all_files.append(path)
        while self.count and len(self.files) > self.count:
            old = self.files.pop(0)
            try:
                os.unlink(old)
                self.deleted += 1
            except OSError:
                pass
        return path

    def write(self, iface: int, frames) -> None:
        wp = self.w.write_packet
        for f in frames:
            wp(iface, f[2], f[4], f[5])

    def full(self) -> bool:
        return self.f is not None and self.f.tell() >= self.size

    def flush(self) -> None:
        if self.f is not None:
            self.f.flush()

    def close(self, ts: float, stats: list) -> None:
        """``stats``: per interface, the counters of this file's span; ``ts``: when this file's
        span ends (its interface statistics say so: ``isb_endtime``, so that ``analyze`` judges
        absences up to the same moment as live)."""
        if self.f is None:
            return
        for i, st in enumerate(stats):
            self.w.write_stats(i, ts, starttime=self.opened, endtime=ts, **st)
        self.f.close()
        self.f = None
        self.w = None


# -- event sinks -----------------------------------------------------------------------------------


def _finding_dict(f) -> dict:
    from pcapvpn.model import asdict

    d = asdict(f)  # as dataclasses.asdict, without its deep copy of every leaf
    # optional fields of several vantage points: absent when unset, as in the JSON report
    if d.get("location", ()) is None:
        del d["location"]
    for fr in d["evidence"]["frames"]:
        if fr.get("point", ()) is None:
            del fr["point"]
    return d


class TextEvents:
    """One line per event on ``stream``; status events are the status view's business."""

    @property
    def dropped(self) -> int:
        return getattr(self.stream, "dropped", 0)

    def close(self):
        if isinstance(self.stream, QueuedStream):
            self.stream.close()

    COLORS = {"critical": "\x1b[1;35m", "error": "\x1b[1;31m", "warning": "\x1b[33m",
              "info": "\x1b[36m", "resolved": "\x1b[32m"}

    def __init__(self, stream, color=False, view=None, lang="en"):
        self.stream = stream
        self.color = color
        self.view = view
        self.lang = None
        if lang != "en":
            from pcapvpn.i18n import Lang

            self.lang = Lang(lang)

    def emit(self, ev: dict) -> None:
        kind = ev["event"]
        if kind == "status":
            return
        f = ev["finding"]
        clock = time.strftime("%H:%M:%S", time.localtime(ev["ts"]))
        tunnel = f.get("tunnel") or "-"
        sev = f["severity"]
        if self.lang is not None:
            f = dict(f, title=self.lang.title_of(f["code"], f["title"]))
        if kind == "raised":
            label = "RAISED  "
            tag = sev
            text = f"{clock} {label} {sev:<8} {f['code']} [{tunnel}] {f['title']}"
        else:
            label = "RESOLVED"
            tag = "resolved"
            why = ev.get("reason", "")
            if self.lang is not None:
                why = self.lang.text(why)
            text = (f"{clock} {label} {sev:<8} {f['code']} [{tunnel}] {why} "
                    f"(raised {ev.get('raised', '')}, {ev.get('lasted', 0):.0f} s)")
        if self.lang is not None:  # the line's words in the report's language (i18n)
            text = self.lang.event_line(ev, f, clock)
        text = _clean(text)
        if self.color:
            text = f"{self.COLORS.get(tag, '')}{text}\x1b[0m"
        if self.view is not None:
            self.view.clear()
        self.stream.write(text + "\n")
        self.stream.flush()
        if self.view is not None:
            self.view.redraw()


class QueuedStream:
    """Lines written to ``stream`` by a thread: a reader of the event stream that is slow or
    stops reading (a full pipe) must not stop the capture.  At most ``max_lines`` wait; beyond
    that lines are dropped and counted in ``dropped`` (the report says so)."""

    def __init__(self, stream, max_lines: int = 10000):
        self.stream = stream
        self.q = queue.Queue(max_lines)
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="pcapvpn-events", daemon=True)
        self.thread.start()

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> None:
        try:
            self.q.put_nowait(text)
        except queue.Full:
            self.dropped += 1

    def flush(self) -> None:
        pass

    def _run(self):
        while True:
            text = self.q.get()
            if text is None:
                return
            try:
                self.stream.write(text)
                if self.q.empty():
                    self.stream.flush()
            except (OSError, ValueError):
                self.dropped += 1

    def close(self, wait: float = 30.0) -> None:
        """Write what is queued (up to ``wait`` seconds), then stop."""
        try:
            self.q.put(None, timeout=wait)
        except queue.Full:
            return
        self.thread.join(wait)
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass


class JsonlEvents:
    def __init__(self, stream):
        self.stream = stream

    @property
    def dropped(self) -> int:
        return getattr(self.stream, "dropped", 0)

    def close(self):
        if isinstance(self.stream, QueuedStream):
            self.stream.close()

    def emit(self, ev: dict) -> None:
        self.stream.write(json.dumps(_event_json(ev), separators=(",", ":")) + "\n")
        self.stream.flush()


def _event_json(ev: dict) -> dict:
    from pcapvpn.model import rfc3339

    out = {"event": ev["event"], "time": rfc3339(ev["ts"])}
    for k, v in ev.items():
        if k not in ("event", "ts"):
            out[k] = v
    return out


class SyslogEvents:
    """RFC 3164 lines (as glibc's syslog() writes them) to the local syslog socket."""

    def __init__(self, path="/dev/log", facility=_LOG_DAEMON):
        self.path = path
        self.facility = facility
        self.sock = None
        self.failures = 0
        self._connect()

    def _connect(self):
        last = None
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            s = socket.socket(socket.AF_UNIX, kind)
            try:
                s.connect(self.path)
                self.sock = s
                self.kind = kind
                return
            except OSError as e:
                s.close()
                last = e
        raise CaptureError(f"--syslog: cannot connect to {self.path}: "
                           f"{last.strerror if last else '?'}")

    def emit(self, ev: dict) -> None:
        if ev["event"] == "status":
            return
        f = ev["finding"]
        prio = _SEV_SYSLOG.get(f["severity"], 6) if ev["event"] == "raised" else _LOG_NOTICE
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(ev["ts"]))
        msg = (f"{ev['event']} {f['code']} severity={f['severity']} "
               f"tunnel={f.get('tunnel') or '-'} id={f['id']} {f['title']}")
        line = f"<{self.facility * 8 + prio}>{stamp} pcapvpn[{os.getpid()}]: {_clean(msg, 1800)}"
        data = line.encode("utf-8", "replace")
        if self.kind == socket.SOCK_STREAM:
            data += b"\0"
        for _ in range(2):
            try:
                self.sock.send(data)
                return
            except OSError:
                try:
                    self.sock.close()
                    self._connect()
                except CaptureError:
                    break
        self.failures += 1

    def close(self):
        if self.sock is not None:
            self.sock.close()


def event_environment(ev: dict) -> dict:
    """``PCAPVPN_*`` variables describing an event for ``--exec`` (values are data: the command
    line never holds them)."""
    f = ev.get("finding") or {}
    j = json.dumps(_event_json(ev), separators=(",", ":"))
    env = {
        "PCAPVPN_EVENT": ev["event"],
        "PCAPVPN_TIME": _event_json(ev)["time"] or "",
        "PCAPVPN_FINDING_ID": f.get("id", ""),
        "PCAPVPN_CODE": f.get("code", ""),
        "PCAPVPN_SEVERITY": f.get("severity", ""),
        "PCAPVPN_STAGE": f.get("stage", ""),
        "PCAPVPN_TUNNEL": f.get("tunnel") or "",
        "PCAPVPN_TITLE": f.get("title", ""),
        "PCAPVPN_PEERS": ",".join((f.get("evidence") or {}).get("peers") or []),
        "PCAPVPN_JSON": j if len(j) <= 65536 else "",
    }
    # the environment cannot carry NUL bytes; everything else is passed as it is
    return {k: str(v).replace("\0", "?") for k, v in env.items()}


class ExecHook:
    """``--exec CMD``: CMD is split once (shlex) and run without a shell per raised/resolved
    event, in a worker thread (the capture never waits for it), with the event as JSON on stdin
    and in ``PCAPVPN_*`` environment variables.  Its output goes to stderr."""

    def __init__(self, cmd: str, timeout: float = 30.0, max_queue: int = 1000):
        try:
            self.argv = shlex.split(cmd)
        except ValueError as e:
            raise CaptureError(f"--exec: {e}") from None
        if not self.argv:
            raise CaptureError("--exec: empty command")
        exe = self.argv[0]
        if os.sep not in exe and shutil.which(exe) is None:
            raise CaptureError(f"--exec: {exe}: command not found")
        self.timeout = timeout
        self.q = queue.Queue(max_queue)
        self.dropped = 0
        self.failures = 0
        self.runs = 0
        self.thread = threading.Thread(target=self._run, name="pcapvpn-exec", daemon=True)
        self.thread.start()

    def emit(self, ev: dict) -> None:
        if ev["event"] == "status":
            return
        try:
            self.q.put_nowait(ev)
        except queue.Full:
            self.dropped += 1

    def _run(self):
        while True:
            ev = self.q.get()
            if ev is None:
                return
            env = dict(os.environ)
            env.update(event_environment(ev))
            data = json.dumps(_event_json(ev)).encode() + b"\n"
            try:
                cp = subprocess.run(self.argv, input=data, env=env, timeout=self.timeout,
                                    stdout=sys.stderr.fileno(), stderr=sys.stderr.fileno(),
                                    close_fds=True)
                self.runs += 1
                if cp.returncode:
                    self.failures += 1
            except (OSError, subprocess.TimeoutExpired) as e:
                self.failures += 1
                sys.stderr.write(f"pcapvpn: --exec {self.argv[0]}: {e}\n")

    def close(self, wait: float = 10.0):
        try:
            self.q.put(None, timeout=wait)
        except queue.Full:
            return
        self.thread.join(wait)


# -- status view -----------------------------------------------------------------------------------

class StatusView:
    """A few lines at the bottom of the terminal, redrawn in place; event lines printed above
    it scroll normally (the view is cleared before and redrawn after each event)."""

    def __init__(self, stream):
        self.stream = stream
        self.lines = []
        self.drawn = 0

    def update(self, lines):
        self.clear()
        self.lines = lines
        self.redraw()

    def clear(self):
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.stream.flush()
            self.drawn = 0

    def redraw(self):
        if not self.lines:
            return
        cols = shutil.get_terminal_size((100, 24)).columns
        out = [_clean(line)[:max(10, cols - 1)] for line in self.lines]
        self.stream.write("\n".join(out) + "\n")
        self.stream.flush()
        self.drawn = len(out)


# -- the session -----------------------------------------------------------------------------------

@dataclass
class _Active:
    finding: object
    raised_ts: float
    missing: int = 0


class LiveSession:
    """Capture → decode → track; rules against the clock; events; the final report."""

    def __init__(self, opts: LiveOptions, sinks=(), view: StatusView | None = None,
                 clock=time.time, captures=None):
        from pcapvpn.analysis import Options
        from pcapvpn.decode import Decoder
        from pcapvpn.track import Tracker

        from pcapvpn.decode import Limits

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
        self.last_cost = 0.0
        self.last_eval = None  # the last _compute() result applied
        self._pps_mark = (self.started, 0)
        self.pps = 0.0
        self.frames = 0

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
            from pcapvpn.live_capture import interface_info

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
        # a few ring blocks at a time: a backlog never becomes one huge list
        n = cap.read(batch, src.index, src.numbered, max_blocks=4)
        if not n:
            return 0
        src.numbered += n
        src.frame_count += n
        k = src._ifaces.index(idx)
        src.interface_frames[k] = src.interface_frames.get(k, 0) + n
        src.byte_count += cap.bytes - b0
        src.linktypes[cap.linktype] += n
        t0 = batch[0][2]
        t1 = batch[-1][2]
        if src.first_ts is None or t0 < src.first_ts:
            src.first_ts = t0
        if src.last_ts is None or t1 > src.last_ts:
            src.last_ts = t1
        if self.writer is not None:
            self.writer.write(idx, batch)
        if self.points:
            self.points[self._point_of[idx]].decoder.run(batch)
        else:
            self.decoder.run(batch)
        self.frames += n
        return n

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
        self.stopping = True

    # -- evaluation -----------------------------------------------------------------------------

    def _state(self, now):
        from pcapvpn.analysis import build_report

        cap = build_report(self.sources, self.decoder, self.tracker).capture
        state = self.tracker.state(now, capture=cap)
        state.expect_peers = list(self.opts.expect_peers)
        if self.points:
            from pcapvpn.track.vantage import match

            state.vantage = match(self._points_now(now), self.opts.thresholds, state.tunnels,
                                  state.vpn_tunnels)
        return state

    def _prepare(self) -> None:
        """What an evaluation changes in the tracker, done before it (in this process)."""
        for f in self.log_followers:  # --log: the lines appended since the last evaluation
            f.poll()
        self._refresh_totals()
        self.tracker.ike_tracker.link_rekeys()

    def _compute(self, now, final: bool = False) -> dict:
        """The rules as of ``now``: the findings, which of them count now (not held back, not
        superseded by a recovery), the verdicts.  Reads the tracker only (it may run in a forked
        child, see :meth:`_fork_evaluation`)."""
        from pcapvpn.rules import run_rules
        from pcapvpn.rules.common import Context
        from pcapvpn.rules.verdict import tunnel_verdicts

        state = self._state(now)
        findings = run_rules(state)
        ctx = Context(state)
        if self.points:
            from pcapvpn.rules.path import locate

            locate(ctx, findings)
        verdicts = tunnel_verdicts(ctx, findings)
        annotate_drops(findings, self.drops(), getattr(self, "_rx_dropped", 0))
        return self._classify(ctx, state, findings, verdicts, now, final)

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
                self.active[fid] = _Active(f, now)
                self.raised += 1
                if self.sinks:
                    self._emit({"event": "raised", "ts": now, "finding": _finding_dict(f)})
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
                data = pickle.dumps(self._compute(now), protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(w, "wb") as out:
                    out.write(data)
            except BaseException:  # noqa: BLE001 - the parent evaluates in-process instead
                code = 1
            os._exit(code)
        os.close(w)
        os.set_blocking(r, False)
        self._child = (pid, r, [], t0)
        return True

    def _poll_child(self, block: bool = False) -> bool:
        """Collect the forked evaluation's result when it is complete; True when applied."""
        import pickle

        pid, r, chunks, t0 = self._child
        while True:
            try:
                if block:
                    os.set_blocking(r, True)
                chunk = os.read(r, 1 << 20)
            except BlockingIOError:
                return False
            if not chunk:
                break
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        self._child = None
        try:
            res = pickle.loads(b"".join(chunks)) if chunks else None
        except Exception:  # noqa: BLE001
            res = None
        if res is None:  # the child failed: do it here
            self._evaluate(self.clock())
            return True
        self._apply(res)
        self._account(time.perf_counter() - t0)
        return True

    def _abandon_child(self) -> None:
        """Stop a forked evaluation that is still running (the process is ours) and reap it."""
        pid, r, _chunks, _t0 = self._child
        self._child = None
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(pid, 0)
        except OSError:
            pass
        os.close(r)

    def _expired(self, f) -> bool:
        ev = f.evidence
        return bool(self._expired_spis & (set(ev.ike_spis) | set(ev.esp_spis)))

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
        verdicts = ", ".join(f"{n} {v}" for v, n in sorted(st["verdicts"].items()))
        head = (f"── pcapvpn live {','.join(st['interfaces'])}  {_hms(now)}  "
                f"{st['pps']:,.0f} pps  {st['frames']:,} frames  drops {d['ring']} ring "
                f"{d['interface']} iface  SAs {st['ike_sas']} IKE {st['esp_sas']} ESP  "
                f"findings {st['active_findings']} active")
        lines = [head, f"   tunnels: {st['tunnels_total']}"
                 + (f" ({verdicts})" if verdicts else "")]
        rows = st["tunnels"]
        rows_max = max(1, shutil.get_terminal_size((100, 24)).lines // 3)
        for t in rows[:rows_max]:
            lines.append(f"   {t['verdict']:<8} {t['id']:<40} {t['stage_reached']:<14} "
                         f"{t['primary_code'] or ''}")
        if st["tunnels_total"] > rows_max:
            lines.append(f"   ... {st['tunnels_total'] - rows_max} more")
        return lines

    # -- the end ----------------------------------------------------------------------------------

    #: seconds spent at most reading what the rings still hold when the capture stops (packets
    #: keep arriving on a busy link: the drain must end; a stop answers within a second or two)
    DRAIN_SECONDS = 0.5

    def finish(self):
        """Stop capturing and build the full report (an :class:`pcapvpn.analysis.Result`) from
        the state held: a forked evaluation still running is abandoned (its answer would be
        stale), the rings are drained for at most ``DRAIN_SECONDS``, and the rules run once —
        the report's analysis is also the last evaluation (its events are emitted)."""
        from pcapvpn.analysis import diagnose, no_gc
        from pcapvpn.rules.common import Context

        # the stop, as the written files record it (nanoseconds): analyze of them judges
        # absences up to the same moment
        now = _ns(self.clock())
        if self._child is not None:
            self._abandon_child()
        # what is still in the rings (a pipe child flushes its last packets when it stops)
        self._refresh_totals()
        deadline = time.monotonic() + self.DRAIN_SECONDS
        for i, c in enumerate(self.captures):
            if isinstance(c, PipeCapture):
                # the child has stopped: what it wrote is read in full (it is finite)
                c.close()
                while self._feed(i, c, []):
                    pass
            while time.monotonic() < deadline and self._feed(i, c, []):
                pass
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
        t0 = time.perf_counter()
        with no_gc():
            for pt in self.points[1:]:
                pt.decoder.finish()
                pt.tracker.finish()
            self.decoder.finish()
            self.tracker.finish()
            points = self._points_now(now) if self.points else None
            result = diagnose(self.sources if not points else self._point_sources(),
                              self.decoder, self.tracker, self.analysis_options, now=now,
                              points=points)
            if points:
                result.points = points
            annotate_drops(result.findings, self.drops(), getattr(self, "_rx_dropped", 0))
            # the last evaluation: what is present now is raised without a second look
            self._apply(self._classify(Context(result.state), result.state, result.findings,
                                       result.verdicts, now, final=True), final=True)
        self._account(time.perf_counter() - t0)
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


def _ns(ts: float) -> float:
    """``ts`` rounded to the nanosecond as a pcapng file with ``if_tsresol`` 9 gives it back."""
    sec = int(ts // 1)
    return (sec * 1_000_000_000 + round((ts - sec) * 1_000_000_000)) / 1_000_000_000


def _hms(ts) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def _held(ctx, f) -> bool:
    hold = HOLD.get(f.code)
    if hold is None:
        return False
    name, since = hold
    wait = getattr(ctx.th, name)
    if since == "start":
        t0 = ctx.start
    else:
        ev = f.evidence.first
        t0 = ctx.start + ev["rel"] if ev and ev.get("rel") is not None else ctx.start
    return ctx.now - t0 < wait


def _superseded(ctx, tunnels, f) -> bool:
    """A failure that happened before the tunnel's latest IKE SA came up and carried ESP both
    ways (the verdict's "recovered"): in live mode it is over."""
    # the verdicts of this evaluation (computed first) marked the recovered failures
    return bool(f.failure and not f.posture and f.recovered)


def annotate_drops(findings, drops: int, rx_dropped: int = 0) -> None:
    """Findings about something missing say that the capture itself lost packets."""
    if not drops:
        return
    note = (f" Note: the capture dropped {drops} packet(s) itself (capture ring / interface), so "
            f"this absence may be the capture's, not the network's.")
    for f in findings:
        if f.code in ABSENCE_CODES and note not in f.detail:
            f.detail += note


def event_sinks(events: str, stream, *, color=False, view=None, syslog_path=None, exec_cmd=None,
                lang="en"):
    sinks = []
    if events == "jsonl":
        # on a terminal lines go straight out; into a pipe or file through a queue
        sinks.append(JsonlEvents(stream if stream.isatty() else QueuedStream(stream)))
    elif events == "text":
        sinks.append(TextEvents(stream if stream.isatty() else QueuedStream(stream),
                                color=color, view=view, lang=lang))
    if syslog_path:
        sinks.append(SyslogEvents(syslog_path))
    if exec_cmd:
        sinks.append(ExecHook(exec_cmd))
    return sinks


def install_signals(session) -> None:
    """SIGINT/SIGTERM stop the capture cleanly (the report follows); a second one aborts."""
    def handler(signum, frame):
        if session.stopping:
            raise KeyboardInterrupt
        session.stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


# -- the command -----------------------------------------------------------------------------------

class _Filtered:
    """Events for the operator's selection (--peer, --min-severity), as in the report, redacted
    as the report is (--redact: the same pseudonyms)."""

    def __init__(self, sink, peers=(), min_severity="info", redactor=None):
        import ipaddress

        self.sink = sink
        self.redactor = redactor
        self.peers = {str(ipaddress.ip_address(p)) for p in peers}
        self.limit = SEVERITIES.index(min_severity)

    @property
    def dropped(self) -> int:
        return getattr(self.sink, "dropped", 0)

    def emit(self, ev):
        f = ev.get("finding")
        if f is not None:
            if SEVERITIES.index(f["severity"]) > self.limit:
                return
            if self.peers and not (f.get("tunnel") and
                                   set(f["tunnel"].split("<->")) & self.peers):
                return
            if self.redactor is not None:
                ev = dict(ev, finding=self.redactor.finding(f))
        self.sink.emit(ev)

    def close(self):
        if hasattr(self.sink, "close"):
            self.sink.close()


def run_command(*, interfaces, filter_expr, replace_filter, ike_ports, print_filter, events,
                syslog, syslog_socket, exec_cmd, quiet, write_dir, write_size_mb, write_files,
                idle_expiry, max_sas, buffer_mb, promisc, backend, duration, status_interval,
                expect_peers, thresholds, report=None, vpn_servers=(), keys=None, stdout=None,
                stderr=None, logs=(), log_tz=None, points=None, metrics=None) -> int:
    """``pcapvpn live``; returns the exit status (as ``analyze``: 0, 1 findings at or above
    ``report.fail_on``, 2 usage or capture error).  ``report``: the report options
    (:class:`pcapvpn.report.deliver.ReportOptions`) of the final report; ``metrics``:
    ``ADDR:PORT`` of a Prometheus endpoint over the session (:mod:`pcapvpn.metrics`)."""
    from pcapvpn.report.deliver import DeliveryError, ReportOptions, deliver, redactor_for

    ro = report or ReportOptions()
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
        points=list(points) if points else None)
    if print_filter:
        from pcapvpn.live_capture import interface_info

        try:  # the filter of the first interface's link type (a raw-IP 'any' has no VLAN part)
            lt = interface_info(opts.interfaces[0])[1] if opts.interfaces else 1
        except CaptureError:
            lt = 1
        stdout.write(filter_text(opts, lt))
        return 0
    try:  # a redaction key that cannot be read or made: said before capturing
        redactor = redactor_for(ro)
    except DeliveryError as e:
        stderr.write(f"pcapvpn: error: {_clean(e)}\n")
        return 2
    view = None
    if not quiet and stderr.isatty():
        view = StatusView(stderr)
    color = events == "text" and stdout.isatty() and not os.environ.get("NO_COLOR")
    sinks = []
    try:
        raw = event_sinks(events, stdout, color=color,
                          view=view if (stdout.isatty() and view is not None) else None,
                          syslog_path=(syslog_socket or "/dev/log") if syslog else None,
                          exec_cmd=exec_cmd, lang=ro.lang)
        sinks = [_Filtered(s, peers, min_severity, redactor) for s in raw]
        session = LiveSession(opts, sinks, view)
        exporter = _start_metrics(metrics, session, redactor)
    except CaptureError as e:
        for s in sinks:
            if hasattr(s, "close"):
                s.close()
        stderr.write(f"pcapvpn: error: {e}\n")
        return 2
    install_signals(session)
    if view is None:
        from pcapvpn.i18n import Lang

        stderr.write(Lang(ro.lang).fmt("pcapvpn: capturing on {interfaces} (Ctrl-C or SIGTERM "
                                       "stops and prints the report)",
                                       interfaces=", ".join(opts.interfaces)) + "\n")
        stderr.flush()
    try:
        session.run()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
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
    from pcapvpn.analysis import no_gc

    try:
        # no collector passes over the held state while the report is rendered (they cost
        # more than the rendering of a report of thousands of SAs)
        with no_gc():
            return deliver(result, ro, stdout=stdout, stderr=stderr, color=color,
                           before_report="\n" if events != "none" else "", redactor=redactor)
    except DeliveryError as e:
        stderr.write(f"pcapvpn: error: {_clean(e)}\n")
        return 2


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


def written_sources(sources) -> list:
    """:class:`pcapvpn.sources.Source` objects for the ``--write`` files still on disk (their
    ``fetch`` reads evidence frames again), numbered as the live sources."""
    from pcapvpn.sources import SourceError, open_source

    out = []
    for s in sources:
        if s.format == "pcapng" and os.path.exists(s.name):
            try:
                out.append(open_source(s.name, s.index))
            except SourceError:
                pass
    return out
