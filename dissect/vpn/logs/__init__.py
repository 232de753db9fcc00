"""Gateway evidence: VPN daemons' logs and status output, line by line, as typed events.

Text in, :class:`LogEvent` records out.  Like the rest of ``dissect.vpn`` these are formats only:
nothing here opens a path, follows a file, knows the capture, resolves a time zone or imports
pcapvpn.  A line is split in two layers:

* the **framing** (:mod:`.framing`): the time stamp and, where the transport adds them, host,
  program and PID — RFC 3164 and RFC 5424 syslog, ISO 8601 / journalctl ``short-iso`` /
  ``short-precise``, journalctl ``-o json`` and ``-o export``, strongSwan's filelog with or
  without ``time_format``, OpenVPN's ``us=`` stamps, the vendors' own stamps;
* the **dialect**: what a daemon or device says in the message, classified into a small
  vocabulary of event kinds (:data:`KINDS`) with the facts a message carries (peer address and
  port, packet size, exchange, Message ID, IKE/ESP SPIs, notify, the exact reason, counters).

Status output (``swanctl --list-sas``, ``ipsec statusall``, libreswan ``ipsec trafficstatus`` /
``ipsec status``, Cisco ``show crypto ... sa``, YAMAHA ``show ipsec sa``, ``wg show``) and event
exports (Windows CSV / text) are *documents*: several lines make one record; their parsers take
the whole list of lines.

:func:`detect` names the format of a file from a sample of its lines; :func:`parse` turns all its
lines into ``(line_number, event or None)`` — ``None`` is a line the format does not understand
(counted by the caller, never dropped silently).  An event whose ``kind`` is ``None`` is a line
of the format that says nothing the diagnosis uses (most of a daemon's chatter).

Parsers never raise on bad input: any text gives events or ``None`` (the fuzz tests check it).
Times are :class:`LogTime` tuples as written (no year in RFC 3164, no zone in most formats):
the caller resolves them.  Secrets a daemon prints at high log levels (key dumps) are never
classified, so they never reach a report.
"""

from __future__ import annotations

from .event import KINDS, PACKET_KINDS, LogEvent, LogTime
from .registry import FORMATS, Format, detect, parse, parse_all

__all__ = ["LogTime", "LogEvent", "KINDS", "PACKET_KINDS", "FORMATS", "Format", "detect",
           "parse", "parse_all"]
