"""Gateway evidence sources (``--log FILE``): read a log or status file, or follow a growing
one (``live --log``), and put its events' times on a clock.

The format is recognised by content, per file (:func:`dissect.vpn.logs.detect`).  Every line is
counted: ``events`` (lines the format understands), ``unrecognised`` (the rest; never dropped
silently) and ``classified`` (events the diagnosis uses, kept with their raw line for evidence;
other events are only counted, so a daemon's chatter at a high log level costs no memory).

Times as written lack parts: RFC 3164 syslog has no year (the capture's year is taken, and the
source says so), most formats name no zone (``--log-tz`` when the zone is known, else the time
is read as UTC and the alignment reports a whole-hour offset as a time-zone difference), status
output has no time at all (its counters are compared as of the end of the capture).
"""

from __future__ import annotations

import calendar
import datetime as _dt
import gzip
import os
import re

from dissect.vpn import logs as _logs
from dissect.vpn.logs.registry import line_event

#: lines read at most per file (a bound on memory and time; the rest is counted as skipped)
MAX_LINES = 5_000_000
#: classified events kept per file
MAX_KEPT = 200_000


class LogSourceError(Exception):
    """A log file that cannot be read (the message names the file and the reason)."""


class Entry:
    """A classified event with its times: ``log_ts`` on the log's own clock (epoch, read in
    the zone the source assumes), ``ts`` on the capture's clock (after alignment)."""

    __slots__ = ("ev", "src", "log_ts", "ts", "res")

    def __init__(self, ev, src: int, log_ts: float | None, res: float):
        self.ev = ev
        self.src = src
        self.log_ts = log_ts
        self.ts = log_ts
        self.res = res


def parse_tz(value: str | None):
    """``--log-tz``: ``UTC``, ``+09:00`` / ``-0500`` / ``+9``, or an IANA zone name (its DST
    rules apply per event).  Returns None, an offset in seconds, or a ``tzinfo``."""
    if value is None:
        return None
    v = value.strip()
    if v.upper() in ("UTC", "GMT", "Z"):
        return 0
    m = re.fullmatch(r"(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d\d))?", v)
    if m:
        off = int(m.group(2)) * 3600 + int(m.group(3) or 0) * 60
        if off > 14 * 3600:
            raise ValueError(f"{value!r}: a UTC offset is at most 14 hours")
        return -off if m.group(1) == "-" else off
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError:  # pragma: no cover - Python 3.10 has zoneinfo
        raise ValueError(f"{value!r}: time zone names need the zoneinfo module") from None
    try:
        return ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is neither a UTC offset (+09:00) nor a known time zone "
                         f"name (Asia/Tokyo)") from None


def zone_text(tz) -> str:
    if tz is None:
        return "UTC (assumed)"
    if isinstance(tz, int):
        sign = "-" if tz < 0 else "+"
        return f"UTC{sign}{abs(tz) // 3600:02d}:{abs(tz) % 3600 // 60:02d}"
    return str(tz)


class LogSource:
    """One ``--log`` file: its format, counts and the classified events."""

    def __init__(self, name: str, index: int, tz=None):
        self.name = name
        self.index = index
        self.tz = tz
        self.fmt = None
        self.lines = 0
        self.events = 0
        self.unrecognised = 0
        self.skipped = 0
        self.entries: list[Entry] = []
        self.dropped = 0
        self.notes: list[str] = []
        self.first_log_ts = None
        self.last_log_ts = None
        self.year_from_capture = False
        self.zone_in_log = False
        self.document = False
        # alignment (pcapvpn.track.logs.align)
        self.alignment = None
        self._pending: list = []  # (LogEvent, LogTime) before the capture's year is known
        self._ref = None

    @property
    def format(self) -> str | None:
        return self.fmt.name if self.fmt is not None else None

    @property
    def title(self) -> str:
        return self.fmt.title if self.fmt is not None else "not recognised"

    # -- reading ---------------------------------------------------------------------------------

    def feed(self, lines: list[str], first_number: int = 1) -> None:
        """Parse ``lines`` (the whole file, or the next lines of a followed one)."""
        if self.fmt is None:
            self.fmt = _logs.detect(lines)
            if self.fmt is not None and self.fmt.document is not None:
                self.document = True
        if self.fmt is None:
            n = sum(1 for ln in lines if ln.strip())
            self.lines += n
            self.unrecognised += n
            return
        if self.document:
            items = list(_logs.parse(lines, self.fmt))
        else:
            framer = _logs.framing.FRAMINGS[self.fmt.framing]
            items = ((first_number + i, line_event(ln, framer, self.fmt.dialect,
                                                   first_number + i))
                     for i, ln in enumerate(lines) if ln.strip())
        kept = []
        for number, ev in items:
            self.lines += 1
            if self.lines > MAX_LINES:
                self.skipped += 1
                continue
            if ev is None:
                self.unrecognised += 1
                continue
            self.events += 1
            if self.document and number != ev.line:
                ev.line = number
            kept.append(ev)
        merge = getattr(self.fmt.dialect, "merge", None)
        if merge is not None:
            merge(kept)
        for ev in kept:
            if ev.kind is None and not self._anchorable(ev):
                continue
            if len(self.entries) + len(self._pending) >= MAX_KEPT:
                self.dropped += 1
                continue
            self._pending.append(ev)
        if self._ref is not None:
            self._resolve_pending()

    @staticmethod
    def _anchorable(ev) -> bool:
        """Unclassified events that still help align the clock (OpenVPN's link lines)."""
        return ev.direction is not None and ev.peer is not None

    def resolve(self, ref_ts: float | None) -> None:
        """Put times on the events: ``ref_ts`` (the capture's start, epoch) supplies the year
        RFC 3164 lacks and the date of time-only stamps."""
        self._ref = ref_ts if ref_ts is not None else 0.0
        self._resolve_pending()

    def _resolve_pending(self) -> None:
        for ev in self._pending:
            ts = self.epoch(ev.time) if ev.time is not None else None
            res = ev.time.resolution if ev.time is not None else 0.0
            e = Entry(ev, self.index, ts, res)
            self.entries.append(e)
            if ts is not None:
                if self.first_log_ts is None or ts < self.first_log_ts:
                    self.first_log_ts = ts
                if self.last_log_ts is None or ts > self.last_log_ts:
                    self.last_log_ts = ts
        self._pending = []
        self._notes()

    def epoch(self, lt) -> float | None:
        ref = _dt.datetime.fromtimestamp(self._ref or 0.0, _dt.timezone.utc)
        year, month, day = lt.year, lt.month, lt.day
        if month == 0:  # a time-only stamp: the capture's date
            year, month, day = ref.year, ref.month, ref.day
        elif year is None:
            self.year_from_capture = True
            year = ref.year
            if month - ref.month > 6:
                year -= 1
            elif ref.month - month > 6:
                year += 1
        try:
            base = calendar.timegm((year, month, day, lt.hour, lt.minute, min(lt.second, 59),
                                    0, 0, 0))
        except (ValueError, OverflowError):
            return None
        if lt.utcoffset is not None:
            self.zone_in_log = True
            off = lt.utcoffset
        elif isinstance(self.tz, int):
            off = self.tz
        elif self.tz is not None:
            try:
                naive = _dt.datetime(year, month, day, lt.hour, lt.minute, min(lt.second, 59))
                off = int(self.tz.utcoffset(naive).total_seconds())
            except (ValueError, OverflowError):
                off = 0
        else:
            off = 0
        return base - off + lt.usec / 1e6

    def _notes(self) -> None:
        notes = []
        if self.fmt is None:
            notes.append("no known log or status format recognised: its lines are only counted")
        if self.year_from_capture:
            notes.append("the log's time stamps have no year (RFC 3164): the capture's year is "
                         "used")
        if self.document:
            notes.append("status output has no time: its counters are compared as of the end "
                         "of the capture")
        elif self.fmt is not None and not self.zone_in_log:
            notes.append(f"the log's time stamps name no zone: read as {zone_text(self.tz)}"
                         + ("" if self.tz is not None else " (--log-tz when known)"))
        if self.skipped:
            notes.append(f"{self.skipped} line(s) beyond the first {MAX_LINES} not read")
        if self.dropped:
            notes.append(f"{self.dropped} classified event(s) beyond {MAX_KEPT} not kept")
        self.notes = notes

    def counts(self) -> dict:
        return {"lines": self.lines, "events": self.events, "unrecognised": self.unrecognised,
                "classified": len(self.entries)}


def read_lines(path: str) -> list[str]:
    """All lines of a (possibly gzip-compressed) text file; undecodable bytes replaced."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            raw = gzip.GzipFile(fileobj=f).read() if head == b"\x1f\x8b" else f.read()
    except OSError as e:
        raise LogSourceError(f"cannot read log {path}: {e.strerror or e}") from None
    except (EOFError, gzip.BadGzipFile) as e:
        raise LogSourceError(f"cannot read log {path}: damaged gzip data ({e})") from None
    if b"\x00" in raw[:4096] and raw[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        raise LogSourceError(f"log {path} is not a text file (binary data at the start)")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = raw.decode("utf-16", "replace")  # Windows exports
    else:
        text = raw.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.splitlines()


def open_logs(paths, tz=None) -> list[LogSource]:
    """Read every ``--log`` file (times are resolved later, once the capture is known)."""
    out = []
    for i, p in enumerate(paths):
        src = LogSource(p, i, tz)
        src.feed(read_lines(p))
        out.append(src)
    return out


class LogFollower:
    """``live --log FILE``: the lines appended to a growing file since the last poll.  A file
    that is replaced (new inode) or truncated (log rotation) is read again from its start; a
    partial last line waits for its end."""

    def __init__(self, path: str, source: LogSource):
        self.path = path
        self.source = source
        self.pos = 0
        self.inode = None
        self.partial = b""
        self.number = 1
        self.mtime = None

    def poll(self) -> int:
        """Read what was appended; returns the number of new complete lines."""
        try:
            st = os.stat(self.path)
        except OSError:
            return 0
        if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.pos):
            self.pos = 0
            self.partial = b""
            if self.source.document:
                self._reset()
        self.inode = st.st_ino
        if self.source.document:
            # status output is rewritten as a whole: read it again when it changes
            if st.st_mtime == self.mtime:
                return 0
            self.mtime = st.st_mtime
            self._reset()
            try:
                lines = read_lines(self.path)
            except LogSourceError:
                return 0
            self.source.feed(lines)
            return len(lines)
        if st.st_size == self.pos:
            return 0
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read(64 << 20)
        except OSError:
            return 0
        self.pos += len(data)
        data = self.partial + data
        cut = data.rfind(b"\n")
        if cut < 0:
            self.partial = data
            return 0
        self.partial = data[cut + 1:]
        lines = data[:cut].decode("utf-8", "replace").splitlines()
        self.source.feed(lines, self.number)
        self.number += len(lines)
        return len(lines)

    def _reset(self) -> None:
        s = self.source
        fresh = LogSource(s.name, s.index, s.tz)
        fresh._ref = s._ref
        fresh.fmt = s.fmt
        fresh.document = s.document
        self.source.__dict__.update(fresh.__dict__)
        self.number = 1


def follow_logs(paths, tz=None) -> list[LogFollower]:
    """``live --log``: one follower per file (read from its start; missing files are waited
    for)."""
    return [LogFollower(p, LogSource(p, i, tz)) for i, p in enumerate(paths)]
