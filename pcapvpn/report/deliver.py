"""The end of ``analyze`` and ``live``: select, redact, render, export the evidence, write the
mapping and the report, and decide the exit status.  One piece of code for both commands, so
that the report ``live`` prints when it stops honours the same options as ``analyze``'s.

Renders and writes only; the diagnosis is the result's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from pcapvpn.findings import Term, msg, msg_join, severity_rank


class DeliveryError(Exception):
    """An output that cannot be written or a redaction key that cannot be read: one line for
    the user (exit status 2)."""


@dataclass
class ReportOptions:
    """The report options the two commands share (their command-line names)."""

    fmt: str = "text"
    #: ``-o FILE`` (None: standard output)
    output: str | None = None
    lang: str = "en"
    redact: bool = False
    #: ``--redact-key FILE`` (created when missing); None: ``$PCAPVPN_REDACT_KEY`` or random
    redact_key: str | None = None
    redact_map: str | None = None
    #: ``--export-evidence FILE.pcapng``
    evidence: str | None = None
    peers: list = field(default_factory=list)
    spis: list = field(default_factory=list)
    min_severity: str = "info"
    fail_on: str = "error"
    #: other paths named on the command line that redaction hides (``--keys``)
    private_paths: list = field(default_factory=list)


def redactor_for(ro: ReportOptions, environ=None):
    """The :class:`pcapvpn.redact.Redactor` of ``ro`` (None without ``--redact``)."""
    if not ro.redact:
        return None
    from pcapvpn.redact import Redactor, RedactKeyError, load_key

    try:
        key = load_key(ro.redact_key, environ)
    except RedactKeyError as e:
        raise DeliveryError(str(e)) from None
    return Redactor(key, paths=ro.private_paths)


def deliver(result, ro: ReportOptions, *, stdout=None, stderr=None, color: bool = False,
            before_report: str = "", redactor=None) -> int:
    """Write the report of ``result`` as ``ro`` asks; return the exit status (0, or 1 when a
    finding at or above ``fail_on`` is reported).  ``color``: the terminal takes colours (only
    used for standard output); ``before_report``: written to standard output before a report
    that goes there (live: a blank line after the events); ``redactor``: the one the events used
(live), else one is made for ``ro``.  Raises :class:`DeliveryError`."""
    from pcapvpn.i18n import Lang
    from pcapvpn.report import render, select
    from pcapvpn.report.escape import printable

    L = Lang(ro.lang)  # the lines on standard error are in the report's language too

    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    report = select(result.report, peers=ro.peers, spis=ro.spis, min_severity=ro.min_severity)
    if redactor is None:
        redactor = redactor_for(ro)
    shown = redactor.report(report) if redactor is not None else report
    from pcapvpn.report.summary import damage_lines

    for line in damage_lines(shown.capture):  # a damaged capture is said on stderr too
        stderr.write(printable(L.fmt("pcapvpn: warning: {line}", line=line)) + "\n")
    text = render(shown, ro.fmt, color=color and ro.output is None, lang=ro.lang,
                  redacted=ro.redact)
    wrote = []
    if ro.evidence:
        from pcapvpn.report.evidence import export_evidence

        try:
            stats = export_evidence(result, ro.evidence, report=report, redactor=redactor,
                                    shown=shown)
        except OSError as e:
            raise DeliveryError(f"cannot write {ro.evidence}: {e.strerror}") from None
        finally:
            for s in result.sources:
                if hasattr(s, "discard_spool"):
                    s.discard_spool()
        what = msg("{n} evidence frame(s)", n=stats.frames)
        if stats.missing:
            what += msg(", {n} no longer on disk", n=stats.missing)
        wrote.append(msg("{file} ({what})", file=ro.evidence, what=what))
    if ro.redact_map:
        try:
            redactor.write_mapping(ro.redact_map)
        except OSError as e:
            raise DeliveryError(f"cannot write {ro.redact_map}: {e.strerror}") from None
        wrote.append(msg("{file} (the redaction mapping: keep it private)", file=ro.redact_map))
    if ro.output:
        try:
            with open(ro.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise DeliveryError(f"cannot write {ro.output}: {e.strerror}") from None
        wrote.insert(0, msg("{file} ({fmt} report: {summary})", file=ro.output, fmt=ro.fmt,
                            summary=summary_line(report)))
    else:
        if before_report:
            stdout.write(before_report)
        stdout.write(text)
        stdout.flush()
    if wrote:
        stderr.write(printable(L.fmt("pcapvpn: wrote {files}", files=msg_join("; ", wrote)))
                     + "\n")
        stderr.flush()
    limit = severity_rank(ro.fail_on)
    failed = any(severity_rank(f.severity) <= limit for f in report.findings)
    return 1 if failed else 0


def summary_line(report) -> str:
    """``3 tunnel(s): 1 failing, 2 healthy; 5 finding(s): 2 error, 3 info``."""
    from collections import Counter

    from pcapvpn.findings import SEVERITIES
    from pcapvpn.report.summary import VERDICT_ORDER

    v = Counter(t["verdict"] for t in report.tunnels)
    s = Counter(f.severity for f in report.findings)
    verdicts = msg_join(", ", [msg("{n} {verdict}", n=v[k], verdict=Term(k))
                               for k in sorted(v, key=lambda k: VERDICT_ORDER.get(k, 9))])
    sev = msg_join(", ", [msg("{n} {severity}", n=s[k], severity=Term(k))
                          for k in SEVERITIES if s[k]])
    return (msg("{n} tunnel(s)", n=len(report.tunnels))
            + (msg(": {verdicts}", verdicts=verdicts) if verdicts else "")
            + msg("; {n} finding(s)", n=len(report.findings))
            + (msg(": {severities}", severities=sev) if sev else ""))
