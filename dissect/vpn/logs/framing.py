"""The framing of a log line: its time stamp and, where the transport adds them, host,
program and PID.  The message after it is the dialect's business.

Time stamps (:func:`take_time`), tried at the start of a line:

* ISO 8601 / RFC 3339 (``2026-11-26T18:07:44.123+09:00``, ``2026-11-26 18:07:44``; rsyslog,
  journalctl ``short-iso``/``short-iso-precise``, strongSwan filelog ``time_format = "%F %T"``,
  Palo Alto ikemgr ``2019-08-26 09:42:26.226 -0700``), optionally followed by OpenVPN's
  ``us=NNNNNN`` (microseconds, not zero-padded);
* BSD / RFC 3164 (``Nov 26 18:07:44``, with ``.123456`` as journalctl ``short-precise`` writes
  it, a year as Cisco ASA writes it: ``Nov 26 2026 18:07:44``, a zone name as Cisco IOS
  ``service timestamps ... show-timezone`` writes it, and IOS's ``*`` / ``.`` clock-status mark
  and ``000123:`` sequence number before it);
* ctime (``Wed Nov 26 18:07:44 2026``: OpenVPN before 2.5);
* ``2026/11/26 18:07:44`` (YAMAHA RTX ``show log``, Palo Alto ``show log``);
* ``11/26/2026 6:07:44 PM`` (Windows Event Viewer, en-US);
* ``nov/26/2026 18:07:44`` and a bare ``18:07:44`` (MikroTik RouterOS ``/log print``: entries
  of the current day carry the time only).

Framings (:data:`FRAMINGS`): ``syslog`` (time, host, ``prog[pid]:``), ``rfc5424``,
``wireguard-go`` (``DEBUG: (wg0) 2026/11/26 18:07:44 ...``: the stamp after level and
interface), ``plain``
(time then message: daemons' own log files), ``bare`` (no time: strongSwan filelog without
``time_format``, captured console output), ``kv`` (FortiGate ``date=... time=... key=value``).
journalctl ``-o json`` lines are framed by :func:`frame_journal_json`.
"""

from __future__ import annotations

import json
import re
from typing import Iterator, NamedTuple

from .event import LogTime

MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
#: zone names whose offset is unambiguous (others are left unknown: --log-tz says it)
ZONES = {"UTC": 0, "GMT": 0, "Z": 0, "JST": 9 * 3600}


class Frame(NamedTuple):
    time: LogTime | None
    host: str | None
    prog: str | None
    pid: str | None
    msg: str


def _frac(s: str | None) -> tuple[int, float]:
    """Fraction digits → (microseconds, resolution)."""
    if not s:
        return 0, 1.0
    s = s[:9]
    return int(s[:6].ljust(6, "0")), 10.0 ** -len(s)


def _offset(z: str | None) -> int | None:
    if not z:
        return None
    if z in ZONES:
        return ZONES[z]
    m = re.fullmatch(r"([+-])(\d\d):?(\d\d)?", z)
    if not m:
        return None
    v = int(m.group(2)) * 3600 + int(m.group(3) or 0) * 60
    return -v if m.group(1) == "-" else v


def _valid(mo: int, d: int, h: int, mi: int, s: int) -> bool:
    return 1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61


_ISO = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?"
                  r"(?: ?(Z|[+-]\d\d(?::?\d\d)?)(?![\d:]))?(?: us=(\d{1,6}))?:?(?:\s+|$)")
_BSD = re.compile(r"(?:\d{1,10}: )?[*.]?([A-Z][a-z]{2}) {1,2}(\d{1,2})(?: (\d{4}))? "
                  r"(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?: ([A-Z]{1,5}))?:?(?:\s+|$)")
_CTIME = re.compile(r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) {1,2}(\d{1,2}) "
                    r"(\d\d):(\d\d):(\d\d) (\d{4})(?:\s+|$)")
_SLASH = re.compile(r"(\d{4})/(\d\d)/(\d\d)[ ,](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?:?(?:\s+|$)")
_US = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}),? (\d{1,2}):(\d\d):(\d\d)(?: ?([AP]M))?"
                 r"(?:\s+|$)")
_MIKROTIK = re.compile(r"([a-z]{3})/(\d\d)/(\d{4}) (\d\d):(\d\d):(\d\d)(?:\s+|$)")
_CLOCK = re.compile(r"(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:\s+|$)")


def take_time(s: str, clock_only: bool = False) -> tuple[LogTime, str] | None:
    """``(LogTime, rest)`` for a time stamp at the start of ``s``, else None.  ``clock_only``
    also accepts a bare ``HH:MM:SS`` (the date then reads 0-0: the caller supplies it)."""
    m = _ISO.match(s)
    if m:
        y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
        if not _valid(mo, d, h, mi, sec):
            return None
        usec, res = _frac(m.group(7))
        if m.group(9):
            usec, res = int(m.group(9)), 1e-6
        return LogTime(y, mo, d, h, mi, sec, usec, _offset(m.group(8)), res), s[m.end():]
    m = _BSD.match(s)
    if m and m.group(1).lower() in MONTHS:
        mo = MONTHS[m.group(1).lower()]
        d, h, mi, sec = int(m.group(2)), int(m.group(4)), int(m.group(5)), int(m.group(6))
        if not _valid(mo, d, h, mi, sec):
            return None
        usec, res = _frac(m.group(7))
        zone = m.group(8)
        off = _offset(zone) if zone else None
        rest = s[m.end():]
        if zone and off is None and zone not in ("AM", "PM"):
            # an unknown zone name: keep it in front of the message rather than guess
            rest = s[m.start(8):]
        year = int(m.group(3)) if m.group(3) else None
        return LogTime(year, mo, d, h, mi, sec, usec, off, res), rest
    m = _CTIME.match(s)
    if m and m.group(1).lower() in MONTHS:
        mo = MONTHS[m.group(1).lower()]
        d, h, mi, sec, y = (int(m.group(i)) for i in range(2, 7))
        if not _valid(mo, d, h, mi, sec):
            return None
        return LogTime(y, mo, d, h, mi, sec), s[m.end():]
    m = _SLASH.match(s)
    if m:
        y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
        if not _valid(mo, d, h, mi, sec):
            return None
        usec, res = _frac(m.group(7))
        return LogTime(y, mo, d, h, mi, sec, usec, None, res), s[m.end():]
    m = _US.match(s)
    if m:
        mo, d, y, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
        ampm = m.group(7)
        if ampm:
            if not 1 <= h <= 12:
                return None
            h = (h % 12) + (12 if ampm == "PM" else 0)
        if not _valid(mo, d, h, mi, sec):
            return None
        return LogTime(y, mo, d, h, mi, sec), s[m.end():]
    m = _MIKROTIK.match(s)
    if m and m.group(1) in MONTHS:
        mo = MONTHS[m.group(1)]
        d, y, h, mi, sec = (int(m.group(i)) for i in range(2, 7))
        if not _valid(mo, d, h, mi, sec):
            return None
        return LogTime(y, mo, d, h, mi, sec), s[m.end():]
    if clock_only:
        m = _CLOCK.match(s)
        if m:
            h, mi, sec = int(m.group(1)), int(m.group(2)), int(m.group(3))
            if h < 24 and mi < 60 and sec < 61:
                usec, res = _frac(m.group(4))
                return LogTime(None, 0, 0, h, mi, sec, usec, None, res), s[m.end():]
    return None


_PRI = re.compile(r"<\d{1,3}>")
# host, then program[pid]: (host without ':' so that "peer:port text" is never a host)
_HOST_PROG = re.compile(r"([^\s:\[\]]+) ([A-Za-z%][\w.\-/%]*)(?:\[(\d+)\])?: ?")
_HOST_SEQ = re.compile(r"([^\s:\[\]]+) (\d{1,10}): (?=[*.%A-Z])")
_RFC5424 = re.compile(r"<\d{1,3}>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+)"
                      r" ?")


def frame_syslog(line: str) -> Frame | None:
    """RFC 3164 ``[<PRI>]TIME HOST PROG[PID]: MSG`` (any time style of :func:`take_time`;
    rsyslog's RFC 3339 stamps and journalctl's short formats included)."""
    s = line
    m = _PRI.match(s)
    if m:
        s = s[m.end():]
    t = take_time(s)
    if t is None:
        return None
    time, rest = t
    m = _HOST_PROG.match(rest)
    if m is None:
        # a Cisco device: "HOST SEQ: ..." (its message sequence number where the tag would be)
        c = _HOST_SEQ.match(rest)
        if c is None:
            return None
        return Frame(time, c.group(1), None, None, rest[c.end():])
    host, prog, pid = m.group(1), m.group(2), m.group(3)
    msg = rest[m.end():]
    if prog.startswith("%"):  # Cisco sends its mnemonic where the tag would be
        msg = f"{prog}: {msg}"
        prog = None
    return Frame(time, host, prog, pid, msg)


def frame_rfc5424(line: str) -> Frame | None:
    m = _RFC5424.match(line)
    if m is None:
        return None
    t = take_time(m.group(1) + " ")
    if t is None:
        return None
    host, app, pid = (None if v == "-" else v for v in (m.group(2), m.group(3), m.group(4)))
    msg = line[m.end():]
    if msg.startswith("\ufeff"):
        msg = msg[1:]
    return Frame(t[0], host, app, pid, msg)


def frame_plain(line: str) -> Frame | None:
    """A time stamp, then the message (a daemon's own log file)."""
    t = take_time(line, clock_only=True)
    if t is None:
        return None
    return Frame(t[0], None, None, None, t[1])


#: wireguard-go's prefix (level, interface) and the frame lines of its start-up banner
WG_GO_PREFIX = re.compile(r"((DEBUG|ERROR|INFO): \(([^()\s]{1,64})\) )")
WG_BANNER = re.compile(r"[\u250c\u2502\u2514][^\n]*[\u2510\u2502\u2518]\s*$")


def frame_wireguard_go(line: str) -> Frame | None:
    """wireguard-go's ``LEVEL: (IFACE) YYYY/MM/DD HH:MM:SS message`` (Go's log stamp after the
    level and interface): the message keeps the level and interface in front; the lines of the
    ASCII-box banner it prints first (no time) are messages of their own."""
    m = WG_GO_PREFIX.match(line)
    if m is None:
        if WG_BANNER.match(line):
            return Frame(None, None, "wireguard-go", None, line)
        return None
    t = take_time(line[m.end():])
    if t is None:
        return None
    return Frame(t[0], None, "wireguard-go", None, m.group(1) + t[1])


def frame_bare(line: str) -> Frame | None:
    """No time stamp at all."""
    return Frame(None, None, None, None, line)


_KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def kv_fields(s: str) -> dict[str, str]:
    """``key=value key="quoted value"`` → dict (FortiGate, Palo Alto, Juniper structured)."""
    out = {}
    for m in _KV.finditer(s):
        v = m.group(2)
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            v = v[1:-1].replace('\\"', '"')
        out[m.group(1)] = v
    return out


_KV_HEAD = re.compile(r"(?:<\d{1,3}>)?(?:\S+ +\d+ [\d:]+ \S+ )?date=(\d{4})-(\d\d)-(\d\d) "
                      r"time=(\d\d):(\d\d):(\d\d) ")


def frame_kv(line: str) -> Frame | None:
    """FortiGate log format: ``date=2019-05-10 time=11:50:27 devname=... tz="+0900" ...``
    (optionally behind a syslog header); the zone from ``tz=`` when present."""
    m = _KV_HEAD.match(line)
    if m is None:
        return None
    y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
    if not _valid(mo, d, h, mi, sec):
        return None
    msg = line[m.end():]
    tz = re.search(r'\btz="?([+-]\d{4})"?', msg)
    off = _offset(tz.group(1)) if tz else None
    dev = re.search(r'\bdevname="?([^"\s]+)', msg)
    return Frame(LogTime(y, mo, d, h, mi, sec, 0, off, 1.0), dev.group(1) if dev else None,
                 None, None, msg)


def frame_journal_json(line: str) -> Frame | None:
    """One line of ``journalctl -o json``: ``__REALTIME_TIMESTAMP`` (µs since the epoch, UTC),
    ``MESSAGE``, ``_HOSTNAME``, ``SYSLOG_IDENTIFIER``, ``_PID``."""
    s = line.strip()
    if not (s.startswith("{") and "MESSAGE" in s):
        return None
    try:
        d = json.loads(s)
    except ValueError:
        return None
    if not isinstance(d, dict):
        return None
    msg = d.get("MESSAGE")
    if isinstance(msg, list):  # binary-safe form: a list of byte values
        try:
            msg = bytes(int(x) & 0xFF for x in msg).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return None
    if not isinstance(msg, str):
        return None
    time = epoch_usec_time(d.get("__REALTIME_TIMESTAMP"))
    return Frame(time, _str(d.get("_HOSTNAME")), _str(d.get("SYSLOG_IDENTIFIER")),
                 _str(d.get("_PID")), msg)


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def epoch_usec_time(v: str | None) -> LogTime | None:
    """Microseconds since the epoch (text) → a UTC :class:`LogTime` (journald)."""
    import datetime as _dt

    if v is None:
        return None
    try:
        us = int(v)
        d = _dt.datetime(1970, 1, 1) + _dt.timedelta(microseconds=us)
    except (TypeError, ValueError, OverflowError):
        return None
    return LogTime(d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond, 0, 1e-6)


#: the line framings, in the order detection prefers them on a tie
FRAMINGS = {
    "rfc5424": frame_rfc5424,
    "syslog": frame_syslog,
    "journal-json": frame_journal_json,
    "kv": frame_kv,
    "wireguard-go": frame_wireguard_go,
    "plain": frame_plain,
    "bare": frame_bare,
}


_EXPORT_FIELD = re.compile(r"([A-Z0-9_]+)=(.*)")


def journal_export_entries(lines: list[str]) -> Iterator[tuple[int, Frame]]:
    """``journalctl -o export``: entries of ``FIELD=value`` lines separated by an empty line
    (systemd "Journal Export Format").  Yields ``(index of the MESSAGE line, Frame)`` per
    entry with a text MESSAGE; binary fields (a field name alone on its line, then a 64-bit
    length and the data) cannot be read from decoded text and end the entry's parsing."""
    fields: dict[str, str] = {}
    at = None
    binary = False
    for i, ln in enumerate(lines + [""]):
        if not ln.strip():
            if fields.get("MESSAGE") is not None and at is not None:
                yield at, Frame(epoch_usec_time(fields.get("__REALTIME_TIMESTAMP")),
                                fields.get("_HOSTNAME"), fields.get("SYSLOG_IDENTIFIER"),
                                fields.get("_PID"), fields["MESSAGE"])
            fields, at, binary = {}, None, False
            continue
        if binary:
            continue
        m = _EXPORT_FIELD.fullmatch(ln)
        if m is None:
            binary = True  # a binary field: its raw length and data follow
            continue
        fields[m.group(1)] = m.group(2)
        if m.group(1) == "MESSAGE":
            at = i


def sniff_journal_export(lines: list[str]) -> int:
    n = sum(1 for ln in lines if ln.startswith(("__CURSOR=", "__REALTIME_TIMESTAMP=",
                                                "_BOOT_ID=", "SYSLOG_IDENTIFIER=")))
    return 3 * n if any(ln.startswith("MESSAGE=") for ln in lines) else 0
