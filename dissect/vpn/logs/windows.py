"""Windows VPN client events (RasClient, IKEEXT / Security auditing) exported as text or CSV.

Exports read (documents; samples in tests/data/logs/vendor/ cite their source):

* Event Viewer "Save Selected Events..." as CSV: a header ``Level,Date and Time,Source,Event
  ID,Task Category`` then one row per event, the description quoted and spanning lines; and
  "Save as Text" (the same columns separated by tabs);
* ``wevtutil qe <log> /f:text``: ``Event[N]:`` blocks of ``Name: value`` lines (``Date``,
  ``Event ID``, ``Computer``, ``Description:`` followed by the description lines);
* PowerShell ``Get-WinEvent ... | Format-List``: blocks of ``TimeCreated :``, ``ProviderName :``,
  ``Id :``, ``Message :`` lines.

Events classified (Microsoft documentation): RasClient 20227 ("The user ... dialed a
connection named ... which has failed. The error code returned on failure is N."), 20226,
20225/20224 (connected); the error codes of "Routing and Remote Access error codes" (691 and
13801 credentials, 789/809/13868 reachability and NAT-T, 812 policy, 13806/13825 certificates,
13843 ..); Security audit 4653 "An IPsec main mode negotiation failed." and 4654 "An IPsec quick
mode negotiation failed." (Network Address, Keying Module Port, Failure Reason, Initiator /
Responder Cookie = the IKE SPIs), 5451/5452 (quick mode established / ended).  The client's
own phrasing ("The user credentials were incorrect", "certificate expired") is recognised in
any description.  Times are the export's local time (``--log-tz``).
"""

from __future__ import annotations

import csv
import io
import re

from .event import Document, LogEvent, Parsed, first_kind
from .framing import take_time

NAME = "windows"
TITLE = "Windows event export"
PROGS = ()

#: Routing and Remote Access / IKE error codes → (kind, meaning)
ERRORS = {
    "691": ("auth_failed", "the user name or password is not accepted (691)"),
    "703": ("auth_failed", "the connection needs credentials the user did not give (703)"),
    "718": ("give_up", "the server did not answer in time (718)"),
    "720": ("child_failed", "no PPP control protocol was agreed (720)"),
    "734": ("no_proposal", "the PPP link control protocol was terminated (734)"),
    "741": ("no_proposal", "the local computer does not support the required encryption (741)"),
    "742": ("no_proposal", "the server does not support the required encryption (742)"),
    "789": ("no_proposal", "the L2TP attempt failed in the security layer's initial "
                           "negotiation (789: IPsec / PSK / certificate)"),
    "800": ("connect_failed", "the VPN connection could not be established (800)"),
    "806": ("connect_failed", "a connection was made but GRE (protocol 47) is blocked (806)"),
    "809": ("give_up", "the VPN server is not responding: a NAT or firewall blocks the "
                       "traffic (809: UDP 500/4500, NAT-T)"),
    "812": ("auth_failed", "the connection was refused by a policy on the server (812)"),
    "13801": ("auth_failed", "IKE authentication credentials are unacceptable (13801)"),
    "13806": ("cert_failed", "IKE failed to find a valid machine certificate (13806)"),
    "13817": ("ts_unacceptable", "the traffic selectors were not accepted (13817)"),
    "13825": ("cert_failed", "no certificate / the certificate could not be used (13825)"),
    "13843": ("cert_failed", "the certificate is not valid for the server (13843)"),
    "13868": ("no_proposal", "the policy match error: proposals do not match (13868)"),
}
_PHRASES = [
    (re.compile(r"certificate (?:has )?expired|certificate.*not valid|untrusted root|"
                r"certificate chain", re.I), "cert_failed"),
    (re.compile(r"user credentials were incorrect|user name or password|credentials are "
                r"unacceptable|authentication failed", re.I), "auth_failed"),
    (re.compile(r"no policy configured|no matching policy|proposal", re.I), "no_proposal"),
    (re.compile(r"not responding|timed out|timeout|no response", re.I), "give_up"),
]
_ERRCODE = re.compile(r"error code returned on failure is (\d+)|error (\d{3,5})\b", re.I)
_FIELD = re.compile(r"\s*([A-Za-z][\w ()]*?):\s*(.*)")


def match(msg: str, prog: str | None = None) -> bool:
    return False  # documents only


def classify(ev: LogEvent) -> None:
    _describe(ev, ev.text)


def _describe(ev: LogEvent, desc: str, event_id: str | None = None) -> None:
    m = _ERRCODE.search(desc)
    code = (m.group(1) or m.group(2)) if m else None
    if code in ERRORS:
        ev.kind, ev.reason = ERRORS[code]
    if event_id in ("4653", "4654"):
        ev.kind = ev.kind or ("no_proposal" if event_id == "4653" else "child_failed")
        ev.child = event_id == "4654"
        fr = re.search(r"Failure Reason:\s*(.+)", desc)
        if fr:
            ev.reason = fr.group(1).strip()
            ev.kind = first_kind(_PHRASES, ev.reason)[0] or ev.kind
        addrs = re.findall(r"Network Address:\s*([0-9A-Fa-f.:]+)", desc)
        if len(addrs) >= 2:
            ev.local, ev.peer = addrs[0], addrs[1]
        ports = re.findall(r"Keying Module Port:\s*(\d+)", desc)
        if len(ports) >= 2:
            ev.local_port, ev.peer_port = int(ports[0]), int(ports[1])
        cookies = re.findall(r"(?:Initiator|Responder) Cookie:\s*([0-9a-fA-F]{16})", desc)
        ev.ike_spis = [c.lower() for c in cookies if int(c, 16)]
    elif event_id in ("20225", "20224", "5451"):
        ev.kind = "tunnel_up"
    elif event_id in ("20226", "5452"):
        ev.kind = "tunnel_down"
    if ev.kind is None:
        ev.kind, m = first_kind(_PHRASES, desc)
        if m is not None:
            ev.reason = m.group(0)
    if ev.kind is not None and ev.reason is None:
        ev.reason = " ".join(desc.split())[:300]
    u = re.search(r"The user (\S+) (?:dialed|has)", desc)
    if u:
        ev.ids.append(u.group(1))
    c = re.search(r"connection named (.+?) (?:which|that|has)", desc)
    if c:
        ev.ctx = c.group(1)


def _event(number_line: int, raw: str, when: str | None, source: str | None,
           event_id: str | None, desc: str, host: str | None = None) -> LogEvent:
    ev = LogEvent(" ".join(desc.split()), raw)
    ev.prog = source
    ev.host = host
    if when:
        t = take_time(when.strip() + " ")
        if t is not None:
            ev.time = t[0]
    ev.state = f"Event {event_id}" if event_id else None
    _describe(ev, desc, event_id)
    if host:
        ev.ids.append(host)
    return ev


# -- CSV / tab-separated (Event Viewer) ---------------------------------------------------------

_HEADER = re.compile(r"\ufeff?Level[,\t]Date and Time[,\t]Source[,\t]Event ID[,\t]Task Category")


def sniff_csv(lines: list[str]) -> int:
    return 10 if lines and _HEADER.match(lines[0]) else 0


def parse_csv(lines: list[str]) -> Parsed:
    if not lines:
        return
    delim = "\t" if "\t" in lines[0] else ","
    text = "\n".join(lines[1:])
    # the line each record starts on (csv joins quoted multi-line descriptions)
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    yield 0, _plain(lines[0], "windows")
    line = 1
    used = {0}
    while True:
        start = line
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            break
        line = 1 + reader.line_num
        if not row or not any(c.strip() for c in row):
            continue
        used.update(range(start, line))
        if len(row) < 4:
            yield start, None
            continue
        level, when, source, event_id = row[0], row[1], row[2], row[3].strip()
        desc = row[5] if len(row) > 5 else (row[4] if len(row) > 4 else "")
        ev = _event(start + 1, delim.join(row), when, source, event_id, desc)
        ev.level = level.lower() if level else None
        yield start, ev
    for i in range(len(lines)):
        if i not in used and lines[i].strip():
            yield i, _plain(lines[i], "windows")


def _plain(ln: str, prog: str | None) -> LogEvent:
    ev = LogEvent(ln.strip(), ln)
    ev.prog = prog
    return ev


# -- wevtutil /f:text and Format-List ------------------------------------------------------------

_WEVT_START = re.compile(r"Event\[\d+\]:\s*$")
_FL_START = re.compile(r"TimeCreated\s*:")


def sniff_blocks(lines: list[str]) -> int:
    n = 0
    for ln in lines:
        if _WEVT_START.match(ln) or _FL_START.match(ln):
            n += 5
    return n


def parse_blocks(lines: list[str]) -> Parsed:
    block: list[tuple[int, str]] = []
    start = 0

    def flush() -> list[tuple[int, LogEvent | None]]:
        if not block:
            return []
        fields: dict[str, str] = {}
        desc: list[str] = []
        in_desc = False
        for _i, ln in block:
            if in_desc:
                desc.append(ln)
                continue
            m = _FIELD.match(ln)
            if m:
                k, v = m.group(1).strip(), m.group(2)
                if k in ("Description", "Message"):
                    in_desc = True
                    if v.strip():
                        desc.append(v)
                    continue
                fields.setdefault(k, v.strip())
        ev = _event(start, "\n".join(ln for _i, ln in block),
                    fields.get("Date") or fields.get("TimeCreated"),
                    fields.get("Source") or fields.get("ProviderName"),
                    fields.get("Event ID") or fields.get("Id"), "\n".join(desc),
                    fields.get("Computer") or fields.get("MachineName"))
        ev.level = (fields.get("Level") or fields.get("LevelDisplayName") or "").lower() or None
        out: list[tuple[int, LogEvent | None]] = [(start, ev)]
        out += [(i, _plain(ln, ev.prog)) for i, ln in block[1:] if ln.strip()]
        return out

    for i, ln in enumerate(lines):
        if _WEVT_START.match(ln) or _FL_START.match(ln):
            yield from flush()
            block = []
            start = i
            if _WEVT_START.match(ln):
                continue
        if not ln.strip() and not block:
            continue
        block.append((i, ln))
    yield from flush()


DOCUMENTS = (Document("windows-csv", "Windows Event Viewer export (CSV / text)", sniff_csv,
                      parse_csv),
             Document("windows-events", "Windows events (wevtutil /f:text, Format-List)",
                      sniff_blocks, parse_blocks))
