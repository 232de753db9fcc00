"""The event outputs of ``pcapvpn live``: one line per raised/resolved finding on stdout
(``text``, ``jsonl``: :class:`TextEvents`, :class:`JsonlEvents`, through a
:class:`QueuedStream` into a pipe), the local syslog socket (:class:`SyslogEvents`), a command per
event (``--exec``: :class:`ExecHook`), the operator's selection and redaction of them
(:class:`_Filtered`), and the status view at the bottom of the terminal (:class:`StatusView`)."""

from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time

from pcapvpn.findings import SEVERITIES
from pcapvpn.live.capture import CaptureError
# events: vendor IDs, identities and other attacker-chosen strings reach the terminal and syslog
# as printable one-line text (the escaping of every report format)
from pcapvpn.report.escape import one_line as _clean

__all__ = ["ExecHook", "JsonlEvents", "QueuedStream", "StatusView", "SyslogEvents", "TextEvents",
           "event_environment", "event_sinks"]

_SEV_SYSLOG = {"critical": 2, "error": 3, "warning": 4, "info": 6}
_LOG_NOTICE = 5
_LOG_DAEMON = 3


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

    def __init__(self, stream, lang="en"):
        from pcapvpn.i18n import Lang

        self.stream = stream
        self.lines = []
        self.drawn = 0
        self.L = Lang(lang)  # the lines are messages (LiveSession.status_lines)

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
        out = [_clean(self.L.msg(line))[:max(10, cols - 1)] for line in self.lines]
        self.stream.write("\n".join(out) + "\n")
        self.stream.flush()
        self.drawn = len(out)



def _hms(ts) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))



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
