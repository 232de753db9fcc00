"""Which format a file is in, and its lines turned into events.

A *line format* is a framing (:mod:`.framing`) plus a dialect (one module per daemon or device:
``match(msg, prog)`` says whether a message is plausibly its own, ``classify(event)`` fills the
event's kind and facts).  A *document* is status output or an event export whose records span
several lines; a dialect lists its documents in ``DOCUMENTS``.

:func:`detect` scores every document and every framing × dialect on a sample of the file and
keeps the best (documents first on a tie, then the framings in :data:`.framing.FRAMINGS` order);
:func:`parse` yields ``(line_number, event or None)`` for every line.
"""

from __future__ import annotations

from types import ModuleType
from typing import Callable, NamedTuple

from . import (cisco, fortigate, juniper, libreswan, mikrotik, openvpn, paloalto, strongswan,
               windows, wglog, wireguard)
from .event import Document, LogEvent, Parsed
from .framing import FRAMINGS, Frame, journal_export_entries, sniff_journal_export

#: dialects, in the order detection prefers them on a tie
DIALECTS = (strongswan, libreswan, openvpn, cisco, fortigate, paloalto, juniper, mikrotik,
            windows, wireguard, wglog)
#: syslog program names → dialect (a mixed syslog file is read line by line by program)
PROGS = {p: d for d in DIALECTS for p in getattr(d, "PROGS", ())}
#: lines of a file looked at by detect()
SAMPLE = 400


class Format(NamedTuple):
    name: str            # e.g. "strongswan", "swanctl-list-sas"
    title: str           # e.g. "strongSwan charon log (syslog)"
    framing: str | None  # the line framing; None for a document
    dialect: ModuleType  # the dialect module
    document: Document | None = None


FORMATS = {d.NAME: d for d in DIALECTS}


def _frame(framing: str, line: str) -> Frame | None:
    try:
        return FRAMINGS[framing](line)
    except (ValueError, IndexError, OverflowError):
        return None


def _export_dialect(sample: list[str]) -> ModuleType | None:
    """The dialect most messages of a ``journalctl -o export`` sample belong to."""
    score: dict[ModuleType, int] = {}
    for _i, f in journal_export_entries(sample):
        d = PROGS.get(f.prog) or next((d for d in DIALECTS if d.match(f.msg, f.prog)), None)
        if d is not None:
            score[d] = score.get(d, 0) + 1
    return max(score, key=score.__getitem__) if score else None


def _export_parse(dialect: ModuleType) -> Callable[[list[str]], Parsed]:
    def parse_export(lines: list[str]) -> Parsed:
        done = set()
        for i, f in journal_export_entries(lines):
            d = PROGS.get(f.prog, dialect) if f.prog else dialect
            ev = LogEvent(f.msg, f.msg, f.time, f.host, f.prog)
            try:
                d.classify(ev)
            except (ValueError, IndexError, KeyError, TypeError, AttributeError):
                ev.kind = None
            done.add(i)
            yield i, ev
        for i, ln in enumerate(lines):  # the other fields of each entry: part of it
            if i not in done and ln.strip():
                ev = LogEvent(ln, ln)
                yield i, ev
    return parse_export


def detect(lines: list[str]) -> Format | None:
    """The format of a file from its first lines (None: no format recognised)."""
    sample = [ln for ln in lines[:SAMPLE * 4] if ln.strip()][:SAMPLE]
    if not sample:
        return None
    best = None
    best_score = 0
    if sniff_journal_export(sample):
        d = _export_dialect(lines[:SAMPLE * 20])
        if d is not None:
            doc = Document("journal-export", f"{d.TITLE} (journalctl -o export)",
                           sniff_journal_export, _export_parse(d))
            return Format(d.NAME, doc.title, None, d, doc)
    for d in DIALECTS:
        for doc in getattr(d, "DOCUMENTS", ()):
            try:
                score = doc.sniff(sample)
            except (ValueError, IndexError):
                score = 0
            if score > best_score:
                best, best_score = Format(doc.name, doc.title, None, d, doc), score
    for framing in FRAMINGS:
        frames = [_frame(framing, ln) for ln in sample]
        if not any(frames):
            continue
        for d in DIALECTS:
            score = 0
            for f in frames:
                if f is None:
                    continue
                dd = PROGS.get(f.prog) if f.prog else None
                if dd is d or (dd is None and d.match(f.msg, f.prog)):
                    score += 1
            if score > best_score:
                best, best_score = Format(d.NAME, f"{d.TITLE} ({framing})", framing, d), score
    return best


def parse(lines: list[str], fmt: Format | None = None) -> Parsed:
    """``(line_number, LogEvent or None)`` for every line (numbers from 1; blank lines are
    skipped).  ``fmt`` None: :func:`detect` first (nothing recognised: every line is None)."""
    if fmt is None:
        fmt = detect(lines)
    if fmt is None:
        for i, ln in enumerate(lines):
            if ln.strip():
                yield i + 1, None
        return
    if fmt.document is not None:
        try:
            for i, ev in fmt.document.parse(lines):
                if ev is not None:
                    ev.line = i + 1
                yield i + 1, ev
        except (ValueError, IndexError, KeyError, TypeError):  # never: a parser bug
            return
        return
    assert fmt.framing is not None  # a line format (a document has none)
    framer = FRAMINGS[fmt.framing]
    own = fmt.dialect
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        yield i + 1, line_event(ln, framer, own, i + 1)


def line_event(line: str, framer: Callable[[str], Frame | None], dialect: ModuleType,
               number: int = 0) -> LogEvent | None:
    """One line of a line format → an event (None: the framing does not fit)."""
    line = line.rstrip("\r\n")
    try:
        f = framer(line)
    except (ValueError, IndexError, OverflowError):
        f = None
    if f is None:
        return None
    d = PROGS.get(f.prog, dialect) if f.prog else dialect
    ev = LogEvent(f.msg, line, f.time, f.host, f.prog)
    ev.line = number
    try:
        d.classify(ev)
    except (ValueError, IndexError, KeyError, TypeError, AttributeError):
        ev.kind = None  # a message the dialect half understood: kept as an unclassified event
    return ev


def parse_all(lines: list[str], fmt: Format | None = None) -> list[tuple[int, LogEvent | None]]:
    """:func:`parse` as a list, with the dialect's ``merge`` applied (events that complete
    each other across lines: strongSwan's packet and ENC lines, OpenVPN's MULTI line)."""
    if fmt is None:
        fmt = detect(lines)
    items = list(parse(lines, fmt))
    merge = getattr(fmt.dialect, "merge", None) if fmt is not None else None
    if merge is not None:
        merge([ev for _n, ev in items if ev is not None])
    return items
