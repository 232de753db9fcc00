"""Juniper SRX (Junos): the key management daemon's syslog (``kmd``, ``iked``).

Junos System Log Explorer / "System Log Messages Reference", KMD messages:
``KMD_VPN_UP_ALARM_USER`` / ``KMD_VPN_DOWN_ALARM_USER`` ("VPN NAME from A is up/down.
Local-ip: ..., gateway name: ..., vpn name: ..., tunnel-id: ..., ..."), ``KMD_PM_SA_ESTABLISHED``
("Local gateway: A, Remote gateway: B, ... Direction: inbound, SPI: 0x..."), ``KMD_DPD_PEER_DOWN``,
and the IKE failure line "IKE negotiation failed with error: REASON. IKE Version: N, VPN: ...
Gateway: ..., Local: A/500, Remote: B/500, Local IKE-ID: ..., Remote IKE-ID: ..., VR-ID: 0"
(KB "IKE Phase 1 / Phase 2 negotiation failure messages").  Lines come through syslog
(``kmd[1234]:`` / ``iked[...]:``), optionally in Junos structured format.
"""

from __future__ import annotations

import re

from .event import LogEvent, first_kind

NAME = "juniper"
TITLE = "Juniper SRX kmd log"
PROGS = ("kmd", "iked", "kmd_ha")

_TAG = re.compile(r"(KMD_\w+|IKED_\w+):?\s*(.*)")
_FAILED = re.compile(r"IKE negotiation failed with error: ([^.]+)\.")
_KIND = {"KMD_VPN_DOWN_ALARM_USER": "tunnel_down", "KMD_VPN_UP_ALARM_USER": "tunnel_up",
         "KMD_PM_SA_ESTABLISHED": "child_established", "KMD_DPD_PEER_DOWN": "dpd_timeout",
         "KMD_PM_P1_NEGOTIATION_FAILURE": "give_up", "KMD_PM_P2_NEGOTIATION_FAILURE":
         "child_failed", "KMD_VPN_TS_MISMATCH": "ts_unacceptable"}
_ERR = [
    (re.compile(r"No proposal chosen", re.I), "no_proposal"),
    (re.compile(r"Authentication failed|pre-shared|Invalid ID|Peer.s IKE-ID", re.I),
     "auth_failed"),
    (re.compile(r"Timed out|timeout|No response", re.I), "give_up"),
    (re.compile(r"TS unacceptable|Traffic selector|proxy", re.I), "ts_unacceptable"),
    (re.compile(r"Invalid KE|DH group", re.I), "invalid_ke"),
    (re.compile(r"certificate", re.I), "cert_failed"),
]


def match(msg: str, prog: str | None = None) -> bool:
    return bool(_TAG.match(msg)) or "IKE negotiation failed with error" in msg or \
        "IKE Phase-1 Failure" in msg or "IKE Phase-2 Failure" in msg


def classify(ev: LogEvent) -> None:
    t = ev.text
    m = _TAG.match(t)
    body = t
    if m:
        ev.state = m.group(1)
        ev.kind = _KIND.get(m.group(1))
        body = m.group(2)
    f = _FAILED.search(body)
    if f or "Phase-1 Failure" in body or "Phase-2 Failure" in body:
        why = f.group(1) if f else body
        ev.kind = first_kind(_ERR, why)[0] or "give_up"
        ev.reason = why.strip()[:300]
        ev.child = "Phase-2" in body or "IPSec" in body
    r = re.search(r"Local: ?([0-9A-Fa-f.:]+?)/(\d+), Remote: ?([0-9A-Fa-f.:]+?)/(\d+)", body)
    if r:
        ev.local, ev.local_port = r.group(1), int(r.group(2))
        ev.peer, ev.peer_port = r.group(3), int(r.group(4))
    r = re.search(r"Local gateway: ?([0-9A-Fa-f.:]+), Remote gateway: ?([0-9A-Fa-f.:]+)", body)
    if r:
        ev.local, ev.peer = r.group(1), r.group(2)
    r = re.search(r"VPN \S+ from ([0-9A-Fa-f.:]+) is (up|down)", body)
    if r:
        ev.peer = r.group(1)
    s = re.search(r"SPI: ?0x([0-9a-f]{1,8})", body)
    if s:
        ev.esp_spis = [s.group(1).rjust(8, "0")]
    v = re.search(r"vpn name: ?([^,]+)|VPN: ?(\S+?)[, ]", body)
    if v:
        ev.ctx = (v.group(1) or v.group(2)).strip()
    for idm in re.findall(r"(?:Local|Remote) IKE-ID: ?([^,]+)", body):
        if idm.strip() and idm.strip() not in ("Not-Available", "N/A"):
            ev.ids.append(idm.strip())
    if ev.kind is not None and ev.reason is None:
        ev.reason = body.strip()[:300]
