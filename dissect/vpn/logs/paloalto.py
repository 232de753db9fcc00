"""Palo Alto Networks PAN-OS: system logs (syslog CSV and ``show log system``) and the IKE
daemon's own log (``less mp-log ikemgr.log``).

* System log, syslog CSV (PAN-OS Administrator's Guide, "Syslog Field Descriptions > System
  Log Fields"): ``FUTURE_USE, Receive Time, Serial Number, Type (SYSTEM), Content/Threat Type
  (vpn), FUTURE_USE, Generated Time, Virtual System, Event ID, Object, FUTURE_USE, FUTURE_USE,
  Module, Severity, Description, ...``; VPN event IDs ``ike-nego-p1-fail``,
  ``ike-nego-p2-fail``, ``ike-nego-p1-succ``, ``ike-nego-p2-succ``, ``ike-send-p1-delete``,
  ``ike-dpd-peer-down``, ``ipsec-key-install``, ``tunnel-status-down`` ...
* ``show log system`` lines: ``2026/11/26 18:07:44 info vpn GATEWAY ike-nego-p1-fail 0 IKE
  phase-1 negotiation is failed as initiator, main mode. Failed SA: A[500]-B[500] cookie:... Due
  to timeout.``
* ikemgr.log (Palo Alto Knowledge Base, "How to Interpret IKE Phase 1 / Phase 2 Errors"):
  ``2026-11-26 18:07:44.123 +0900  [PERR]: { 1: }: ... no suitable proposal found``,
  ``[PNTF]: ... IKE phase-1 negotiation is failed ...``.
"""

from __future__ import annotations

import csv
import re

from .event import LogEvent, first_kind

NAME = "paloalto"
TITLE = "Palo Alto PAN-OS log"
PROGS = ("ikemgr",)

_EVENTS = {
    "ike-nego-p1-fail": ("give_up", False), "ike-nego-p2-fail": ("child_failed", True),
    "ike-nego-p1-succ": ("ike_established", False), "ike-nego-p2-succ": ("child_established",
                                                                          True),
    "ike-dpd-peer-down": ("dpd_timeout", False), "tunnel-status-down": ("tunnel_down", None),
    "tunnel-status-up": ("tunnel_up", None), "ike-send-p1-delete": ("delete_sent", False),
    "ike-recv-p1-delete": ("delete_recv", False), "ike-send-p2-delete": ("delete_sent", True),
    "ike-recv-p2-delete": ("delete_recv", True), "ipsec-key-install": ("child_established", True),
    "ike-nego-p1-start": ("ike_init", False), "ike-nego-p2-start": (None, True),
    "ikev2-nego-ike-fail": ("give_up", False), "ikev2-nego-child-fail": ("child_failed", True),
    "ikev2-nego-ike-succ": ("ike_established", False),
    "ikev2-nego-child-succ": ("child_established", True),
}
_REASONS = [
    (re.compile(r"no suitable proposal|proposal.*mismatch|NO_PROPOSAL_CHOSEN|"
                r"no proposal chosen", re.I), "no_proposal"),
    (re.compile(r"authentication fail|pre-shared key|AUTHENTICATION_FAILED|invalid id|"
                r"ID mismatch|peer.s id", re.I), "auth_failed"),
    (re.compile(r"Due to timeout|timeout|no response", re.I), "give_up"),
    (re.compile(r"TS_UNACCEPTABLE|proxy.?id", re.I), "ts_unacceptable"),
    (re.compile(r"INVALID_KE|DH group", re.I), "invalid_ke"),
    (re.compile(r"certificate", re.I), "cert_failed"),
    (re.compile(r"retransmit", re.I), "ike_retransmit"),
]
_SA = re.compile(r"([0-9A-Fa-f.:]+?)\[(\d+)\] ?- ?([0-9A-Fa-f.:]+?)\[(\d+)\]")
_COOKIE = re.compile(r"cookie:([0-9a-f]{16}):([0-9a-f]{16})")
_IKEMGR = re.compile(r"\[(PERR|PNTF|PWRN|INFO|DEBG|PDBG)\]:?\s*(.*)")
_SHOWLOG = re.compile(r"(\w+)\s+vpn\s+(\S+)\s+([a-z0-9-]+)\s+\d+\s+(.*)")


def match(msg: str, prog: str | None = None) -> bool:
    if _IKEMGR.match(msg):
        return True
    if ",SYSTEM,vpn," in msg:
        return True
    m = _SHOWLOG.match(msg)
    return m is not None and m.group(3) in _EVENTS


def classify(ev: LogEvent) -> None:
    t = ev.text
    if ",SYSTEM," in t:
        try:
            row = next(csv.reader([t]))
        except (csv.Error, StopIteration):
            return
        if len(row) >= 15:
            _event(ev, row[8], row[9], row[14])
            ev.level = row[13] or None
        return
    m = _SHOWLOG.match(t)
    if m and m.group(3) in _EVENTS:
        ev.level = m.group(1)
        _event(ev, m.group(3), m.group(2), m.group(4))
        return
    m = _IKEMGR.match(t)
    if m:
        ev.level = {"PERR": "error", "PWRN": "warning"}.get(m.group(1), "info")
        _describe(ev, m.group(2))


def _event(ev: LogEvent, event_id: str, obj: str, desc: str) -> None:
    kind, child = _EVENTS.get(event_id, (None, None))
    ev.ctx = obj or None
    ev.state = event_id
    ev.kind = kind
    ev.child = child
    _describe(ev, desc)
    if kind is not None and ev.kind in ("give_up", "child_failed"):
        why, _m = first_kind(_REASONS, desc)  # the description says why
        if why is not None and why != "give_up":
            ev.kind = why
    ev.reason = desc.strip()[:300] or ev.reason


def _describe(ev: LogEvent, desc: str) -> None:
    s = _SA.search(desc)
    if s:  # "Failed SA: LOCAL[500]-PEER[500]"; ikemgr's "PEER[500] - LOCAL[500]:..."
        a, b = (s.group(1), int(s.group(2))), (s.group(3), int(s.group(4)))
        if " - " in s.group(0):
            a, b = b, a
        (ev.local, ev.local_port), (ev.peer, ev.peer_port) = a, b
    c = _COOKIE.search(desc)
    if c:
        ev.ike_spis = [x for x in c.groups() if int(x, 16)]
    if ev.kind is None:
        ev.kind, m = first_kind(_REASONS, desc)
        if m is not None:
            ev.reason = desc.strip()[:300]
    if ev.kind is None and "negotiation is failed" in desc:
        ev.kind = "child_failed" if "phase-2" in desc else "give_up"
        ev.reason = desc.strip()[:300]
    if ev.kind is None and "negotiation is succeeded" in desc:
        ev.kind = "child_established" if "phase-2" in desc else "ike_established"
    if "phase-2" in desc:
        ev.child = True
