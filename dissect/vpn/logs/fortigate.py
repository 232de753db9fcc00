"""FortiGate (FortiOS): VPN event logs and ``diagnose debug application ike -1`` output.

* Event logs (FortiOS Log Reference, "Event log > VPN" messages: ``progress IPsec phase 1``,
  ``IPsec phase 1 error``, ``IPsec phase 2 error``, ``negotiate IPsec phase 2``, ``IPsec
  connection status changed``, ``IPsec DPD failed``; fields ``logid``, ``type="event"``,
  ``subtype="vpn"``, ``action``, ``remip``/``locip``, ``remport``/``locport``, ``cookies`` (the
  IKE SPIs), ``vpntunnel``, ``status``, ``reason``, ``msg``): ``date=... time=... key=value``
  lines, as the syslog / FortiAnalyzer export writes them (framing ``kv``).
* IKE debug (Fortinet Technical Tip "Troubleshooting IPsec VPN tunnels", ``diagnose debug
  application ike -1``): ``ike 0:TUNNEL:SERIAL: text`` lines (newer FortiOS: ``ike
  VDOM:ISPI/RSPI:SERIAL: text``): ``sent IKE msg (ident_i1send):
  A:500->B:500, len=.., id=ISPI/RSPI``, ``negotiation timeout, deleting``, ``no SA proposal
  chosen``, ``probable pre-shared secret mismatch``, ``DPD ... dead``, ``IPsec SA connect``.
"""

from __future__ import annotations

import re

from .event import LogEvent, first_kind
from .framing import kv_fields

NAME = "fortigate"
TITLE = "FortiGate log"
PROGS = ()

_IKE = re.compile(r"ike (\d+):(?:([^:\s]+):(?:(\d+):)?)? ?(.*)")
_SENT = re.compile(r"(sent|recv) IKE msg \((\w+)\): ([0-9A-Fa-f.:]+?):(\d+)->([0-9A-Fa-f.:]+?):"
                   r"(\d+), len=(\d+)(?:, (?:vrf=\d+, )?id=([0-9a-f]{16})/([0-9a-f]{16}))?")
_CTX_SPIS = re.compile(r"([0-9a-f]{16})/([0-9a-f]{16})")
_COMES = re.compile(r"comes ([0-9A-Fa-f.:]+?):(\d+)->([0-9A-Fa-f.:]+?):(\d+),ifindex=\d+.*?len=(\d+)")
_PHRASES = [
    (re.compile(r"no SA proposal chosen|peer SA proposal not match|proposal.*not match", re.I),
     "no_proposal"),
    (re.compile(r"pre-shared secret mismatch|probable pre-shared|authentication failed|"
                r"auth(?:entication)? fail|psk mismatch", re.I), "auth_failed"),
    (re.compile(r"negotiation timeout|negotiate timeout|no response", re.I), "give_up"),
    (re.compile(r"retransmit", re.I), "ike_retransmit"),
    (re.compile(r"DPD.*(?:fail|dead|timeout)|dpd_failure|peer is dead", re.I), "dpd_timeout"),
    (re.compile(r"invalid (?:SPI|cookie)|unknown SPI", re.I), "invalid_spi"),
    (re.compile(r"DH group.*(?:mismatch|not match)|INVALID_KE", re.I), "invalid_ke"),
    (re.compile(r"TS_UNACCEPTABLE|selectors? (?:mismatch|not match)|no matching phase2", re.I),
     "ts_unacceptable"),
    (re.compile(r"certificate.*(?:expired|invalid|not valid|fail)|peer cert.*fail", re.I),
     "cert_failed"),
    (re.compile(r"NAT detected|NAT-T", re.I), "nat_detected"),
    (re.compile(r"tunnel-down|tunnel down|phase2-down", re.I), "tunnel_down"),
    (re.compile(r"tunnel-up|phase2-up|IPsec SA connect|established IKE SA|ISAKMP SA .* "
                r"established", re.I), "tunnel_up"),
]
_EXCH = {"ident": "MAIN_MODE", "aggr": "AGGRESSIVE", "quick": "QUICK_MODE",
         "SA_INIT": "IKE_SA_INIT", "AUTH": "IKE_AUTH", "info": "INFORMATIONAL"}


def match(msg: str, prog: str | None = None) -> bool:
    if msg.startswith("ike ") and _IKE.match(msg):
        return True
    return 'subtype="vpn"' in msg or "subtype=vpn" in msg


def classify(ev: LogEvent) -> None:
    t = ev.text
    m = _IKE.match(t)
    if m and t.startswith("ike "):
        ev.ctx = f"{m.group(2)}:{m.group(3)}" if m.group(2) else None
        body = m.group(4)
        # newer FortiOS names the IKE SA by its SPIs instead of the tunnel:
        # "ike 5:d1ae31d584881057/0000000000000000:2086423: ..."
        spis = _CTX_SPIS.fullmatch(m.group(2) or "")
        if spis:
            ev.ike_spis = [x for x in spis.groups() if int(x, 16)]
        s = _SENT.search(body)
        if s:
            out = s.group(1) == "sent"
            ev.kind = "ike_send" if out else "ike_recv"
            ev.direction = "out" if out else "in"
            a, pa, b, pb = s.group(3), int(s.group(4)), s.group(5), int(s.group(6))
            if out:
                ev.local, ev.local_port, ev.peer, ev.peer_port = a, pa, b, pb
            else:
                ev.peer, ev.peer_port, ev.local, ev.local_port = a, pa, b, pb
            ev.size = int(s.group(7))
            if s.group(8):
                ev.ike_spis = [x for x in (s.group(8), s.group(9)) if int(x, 16)]
            st = s.group(2)
            for k, v in _EXCH.items():
                if k in st:
                    ev.exchange = v
                    break
            return
        c = _COMES.search(body)
        if c:
            ev.kind, ev.direction = "ike_recv", "in"
            ev.peer, ev.peer_port = c.group(1), int(c.group(2))
            ev.local, ev.local_port = c.group(3), int(c.group(4))
            return
        _phrase(ev, body)
        return
    if "subtype" in t:
        f = kv_fields(t)
        ev.ctx = f.get("vpntunnel") or f.get("tunnelid")
        ev.peer = f.get("remip")
        ev.local = f.get("locip")
        if f.get("remport", "").isdigit():
            ev.peer_port = int(f["remport"])
        ck = f.get("cookies", "")
        ev.ike_spis = [x for x in re.findall(r"[0-9a-f]{16}", ck) if int(x, 16)]
        for u in (f.get("user"), f.get("xauthuser")):
            if u and u not in ("N/A", "n/a"):
                ev.ids.append(u)
        ev.level = f.get("level")
        msg = f.get("msg", "")
        status = f.get("status", "")
        action = f.get("action", "")
        reason = f.get("reason", "")
        _phrase(ev, " ".join(x for x in (action, reason, msg) if x))
        if ev.kind is None and status in ("negotiate_error", "failure", "failed"):
            ev.kind = "no_proposal" if "phase 1" in msg.lower() and "proposal" in reason.lower() \
                else ("child_failed" if "phase 2" in msg.lower() else "give_up")
        if ev.kind is not None:
            ev.reason = "; ".join(x for x in (msg, reason) if x and x != "N/A") or ev.reason
        if "phase 2" in msg.lower():
            ev.child = True


def _phrase(ev: LogEvent, text: str) -> None:
    kind, _m = first_kind(_PHRASES, text)
    if kind is not None:
        ev.kind = kind
        ev.reason = text.strip()[:300]
        if kind == "ike_retransmit":
            ev.direction, ev.response = "out", False
