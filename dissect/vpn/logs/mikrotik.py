"""MikroTik RouterOS: ``/log print`` (and remote syslog) lines of the ``ipsec`` topics.

RouterOS manual, "IPsec > Troubleshooting / logging" (``/system logging add
topics=ipsec,!debug``): ``TIME ipsec,error text`` / ``ipsec,info`` / ``ipsec`` lines, e.g.
``phase1 negotiation failed due to time up A[500]<=>B[500]``, ``parsing packet failed, possible
cause: wrong password``, ``no suitable proposal found``, ``ISAKMP-SA established A[500]-B[500]
spi:...``, ``IPsec-SA established: ESP/Tunnel A[4500]->B[4500] spi=0x...``, IKEv2 ``ike2
request, exchange: SA_INIT:0 B[500]``, ``peer ... does not match ID``.  ``/log print`` prints
the time only for today's entries (``18:07:44``), ``nov/26 18:07:44`` otherwise; remote
syslog adds the usual header.
"""

from __future__ import annotations

import re

from .event import LogEvent, first_kind

NAME = "mikrotik"
TITLE = "MikroTik RouterOS log"
PROGS = ()

_TOPIC = re.compile(r"(ipsec(?:,[a-z!]+)*)\s+(.*)")
_EP = r"([0-9A-Fa-f.:]+?)\[(\d+)\]"
_PHRASES = [
    (re.compile(r"wrong password|pre-shared|authentication fail|AUTHENTICATION_FAILED", re.I),
     "auth_failed"),
    (re.compile(r"no suitable proposal|failed to get valid proposal|NO_PROPOSAL_CHOSEN|"
                r"no proposal", re.I), "no_proposal"),
    (re.compile(r"time up|timeout|timed out|no response", re.I), "give_up"),
    (re.compile(r"does not match (?:ID|certificate)|ID mismatch|certificate", re.I),
     "cert_failed"),
    (re.compile(r"TS_UNACCEPTABLE|no policy found|policy.*not found", re.I), "ts_unacceptable"),
    (re.compile(r"INVALID_KE|DH group", re.I), "invalid_ke"),
    (re.compile(r"ISAKMP-SA established|IKE SA established|ike2 .*established", re.I),
     "ike_established"),
    (re.compile(r"IPsec-SA established|child SA established", re.I), "child_established"),
    (re.compile(r"dpd|peer is dead|killing ike2 SA", re.I), "dpd_timeout"),
    (re.compile(r"NAT detected|NAT-T", re.I), "nat_detected"),
    (re.compile(r"invalid spi|unknown spi", re.I), "invalid_spi"),
]


def match(msg: str, prog: str | None = None) -> bool:
    return _TOPIC.match(msg) is not None


def classify(ev: LogEvent) -> None:
    m = _TOPIC.match(ev.text)
    if m is None:
        return
    topics, body = m.group(1), m.group(2)
    ev.level = "error" if ",error" in topics else "debug" if ",debug" in topics else "info"
    if ev.level == "debug":
        return
    ev.kind, m = first_kind(_PHRASES, body)
    if m is not None:
        ev.reason = body.strip()[:300]
    eps = re.findall(_EP, body)
    if eps:
        # "A[500]<=>B[500]" / "A[500]-B[500]": the router's own end first
        if len(eps) >= 2:
            ev.local, ev.local_port = eps[0][0], int(eps[0][1])
            ev.peer, ev.peer_port = eps[1][0], int(eps[1][1])
        else:
            ev.peer, ev.peer_port = eps[0][0], int(eps[0][1])
    else:
        a = re.match(r"([0-9]{1,3}(?:\.[0-9]{1,3}){3}) ", body)
        if a:
            ev.peer = a.group(1)
    s = re.search(r"spi[=:]0x([0-9a-f]{1,8})\b", body)
    if s and ev.kind == "child_established":
        ev.esp_spis = [s.group(1).rjust(8, "0")]
    x = re.search(r"exchange: (SA_INIT|AUTH|CREATE_CHILD_SA|INFORMATIONAL):(\d+)", body)
    if x:
        ev.exchange = {"SA_INIT": "IKE_SA_INIT", "AUTH": "IKE_AUTH"}.get(x.group(1), x.group(1))
        ev.msgid = int(x.group(2))
        ev.direction = "out" if "request" in body else "in"
        ev.response = False
