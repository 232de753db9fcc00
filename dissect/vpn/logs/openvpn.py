"""OpenVPN 2.x server and client logs (``--verb 3`` / ``4``; ``--log``, syslog or the journal).

A server prefixes messages about a client with the client's address (``192.0.2.2:39336``) or,
once its certificate is verified, ``common-name/address:port``; the prefix becomes the event's
context.  Phrases are those of OpenVPN 2.6 (``ssl.c``, ``ssl_pkt.c``, ``tls_crypt.c``,
``ssl_verify.c``, ``socket.c``, ``forward.c``) as the lab's real logs show them
(captures/lab/openvpn_*/left.log, right.log).  ``TLS: Initial packet from ..., sid=XXXXXXXX
XXXXXXXX`` names the 64-bit session ID of the peer's hard reset, which the capture carries
too: the best clock anchor.
"""

from __future__ import annotations

import re

from .event import Document, LogEvent, Parsed

NAME = "openvpn"
TITLE = "OpenVPN log"
PROGS = ("openvpn", "ovpn-server", "ovpn-client")

_PREFIX = re.compile(r"(?:([^\s/\[\]]+)/)?([0-9A-Fa-f.:]+):(\d+) (?=\S)")
_SIGNATURE = re.compile(
    r"(?:\S+ )?(?:TLS: |TLS Error|TLS_ERROR|Peer Connection Initiated|Initialization Sequence "
    r"Completed|OpenVPN \d|UDPv[46] link|TCPv[46]_(?:CLIENT|SERVER)|MULTI|VERIFY |Control "
    r"Channel|Data Channel|library versions|Outgoing |Incoming |TUN/TAP|net_|SIGTERM|SIGUSR|"
    r"event_wait|Socket Buffers|PUSH: |OPTIONS IMPORT|Current Parameter Settings|Connection "
    r"profiles|tls-crypt|Restart pause|Inactivity timeout|WARNING: |NOTE: |Note: |DCO )")
_AF = r"\[AF_INET6?\]([0-9A-Fa-f.:]+?):(\d+)"
_INITIAL = re.compile(rf"TLS: Initial packet from {_AF}, sid=([0-9a-f]{{1,8}}) ([0-9a-f]{{1,8}})")
_PEER_UP = re.compile(rf"(?:\[[^\]]*\] )?Peer Connection Initiated with {_AF}")
_UNWRAP = re.compile(rf"TLS Error: (tls-crypt unwrapping failed|cannot locate HMAC in incoming "
                     rf"packet|incoming packet authentication failed) from {_AF}")
_TCP_UP = re.compile(rf"TCP connection established with {_AF}")
_TCP_TRY = re.compile(rf"Attempting to establish TCP connection with {_AF}")
_LINK_REMOTE = re.compile(rf"UDPv[46] link remote: {_AF}")
_VERIFY = re.compile(r"VERIFY (?:KU |EKU |X509NAME |SCRIPT |PLUGIN |CRL )?ERROR:? ?(.*)")
_CONNECT_FAIL = re.compile(rf"(?:TCP: connect to {_AF} failed: (.*)|read UDPv[46] "
                           rf"\[(ECONNREFUSED|EHOSTUNREACH|ENETUNREACH)\]: ([^(]*))")


def match(msg: str, prog: str | None = None) -> bool:
    prefix = _PREFIX.match(msg)
    return _SIGNATURE.match(msg) is not None or prefix is not None and \
        _SIGNATURE.match(msg[prefix.end():]) is not None


def classify(ev: LogEvent) -> None:
    t = ev.text
    if t.startswith("Connection Attempt "):  # OpenVPN 2.6 prints this before MULTI: ...
        t = t[len("Connection Attempt "):]
    p = _PREFIX.match(t)
    if p:
        ev.ctx = f"{p.group(2)}:{p.group(3)}"
        ev.peer, ev.peer_port = p.group(2), int(p.group(3))
        if p.group(1):
            ev.ids = [p.group(1)]
        t = t[p.end():]
    m = _INITIAL.match(t)
    if m:
        ev.kind = "tls_initial"
        ev.direction = "in"
        ev.peer, ev.peer_port = m.group(1), int(m.group(2))
        ev.session = m.group(3).rjust(8, "0") + m.group(4).rjust(8, "0")
        return
    m = _UNWRAP.match(t)
    if m:
        ev.kind = "tls_crypt_failed"
        ev.direction = "in"
        ev.reason = m.group(1)
        ev.peer, ev.peer_port = m.group(2), int(m.group(3))
        return
    if t.startswith("tls-crypt unwrap error"):
        ev.kind = "tls_crypt_failed"
        ev.reason = t
        return
    m = _PEER_UP.match(t)
    if m:
        ev.kind = "tunnel_up"
        ev.peer, ev.peer_port = m.group(1), int(m.group(2))
        ev.reason = "TLS handshake complete (Peer Connection Initiated)"
        cn = re.match(r"\[([^\]]*)\]", t)
        if cn and cn.group(1) not in ev.ids:
            ev.ids.append(cn.group(1))
        return
    if t.startswith("Initialization Sequence Completed"):
        ev.kind = "tunnel_up"
        ev.reason = t
        return
    if t.startswith(("TLS Error: TLS key negotiation failed", "TLS Error: TLS handshake failed",
                     "TLS_ERROR: BIO read", "TLS Error: TLS object -> incoming plaintext read")):
        ev.kind = "tls_failed"
        ev.reason = t
        return
    m = _VERIFY.match(t)
    if m:
        ev.kind = "cert_failed"
        ev.reason = m.group(0)
        return
    if "certificate verify failed" in t or t.startswith("Sent fatal SSL alert"):
        ev.kind = "cert_failed"
        ev.reason = t
        return
    if t.startswith(("AUTH: Received control message: AUTH_FAILED", "AUTH_FAILED")):
        ev.kind = "auth_failed"
        ev.reason = t
        return
    if t.startswith(("Inactivity timeout (--ping-restart)", "[UNDEF] Inactivity timeout")) or \
            "SIGUSR1[soft,ping-restart]" in t:
        ev.kind = "dpd_timeout"
        ev.reason = t
        return
    if t.startswith("Authenticate/Decrypt packet error"):
        ev.kind = "esp_error"
        ev.reason = t
        return
    m = _CONNECT_FAIL.match(t)
    if m:
        ev.kind = "connect_failed"
        ev.reason = t
        if m.group(1):
            ev.peer, ev.peer_port = m.group(1), int(m.group(2))
        return
    m = _LINK_REMOTE.match(t)
    if m:  # a client about to send its first packet (hard reset) to the server
        ev.direction = "out"
        ev.peer, ev.peer_port = m.group(1), int(m.group(2))
        return
    if t.startswith("MULTI: multi_create_instance called"):
        # a UDP server: a new client's first packet arrived (its address is on the next line)
        ev.kind = "tls_initial"
        ev.direction = "in"
        return
    m = _TCP_UP.match(t) or _TCP_TRY.match(t)
    if m:
        ev.peer, ev.peer_port = m.group(1), int(m.group(2))
        ev.ctx = ev.ctx or f"{m.group(1)}:{m.group(2)}"
        return
    if t.startswith(("Connection reset, restarting", "SIGTERM[soft,", "SIGUSR1[soft,")):
        ev.kind = "tunnel_down"
        ev.reason = t


def merge(events: list[LogEvent]) -> None:
    """A UDP server's ``MULTI: multi_create_instance called`` names no peer: the next line
    about a client (``192.0.2.2:44035 ...``) does."""
    waiting = None
    for ev in events:
        if ev is None:
            continue
        if ev.kind == "tls_initial" and ev.peer is None:
            waiting = ev
        elif waiting is not None and ev.ctx is not None:
            waiting.peer, waiting.peer_port, waiting.ctx = ev.peer, ev.peer_port, ev.ctx
            waiting = None


# -- the status file (--status FILE, status-version 1) ---------------------------------------

_STATUS_HEAD = ("OpenVPN CLIENT LIST", "OpenVPN STATISTICS")


def sniff_status(lines: list[str]) -> int:
    return sum(5 for ln in lines if ln.strip() in _STATUS_HEAD)


def parse_status(lines: list[str]) -> Parsed:
    """OpenVPN's ``--status`` file, version 1 (the OpenVPN manual, ``--status``): a server's
    ``OpenVPN CLIENT LIST`` (``Updated,TIME``; ``Common Name,Real Address,Bytes Received,Bytes
    Sent,Connected Since``; ``ROUTING TABLE``; ``GLOBAL STATS``; ``END``) or a client's
    ``OpenVPN STATISTICS`` (``TCP/UDP read bytes,N`` ...).  An ``sa_counters`` event per client
    (bytes from / to it, its real address) and one for a client's statistics, timed by the
    ``Updated`` line (the snapshot's own time)."""
    from .framing import take_time

    section = None
    when = None
    stats = None
    for i, ln in enumerate(lines):
        s = ln.strip()
        if not s:
            continue
        if s in _STATUS_HEAD:
            section = "clients" if s == _STATUS_HEAD[0] else "stats"
            stats = None
            yield i, _status_line(ln)
            continue
        if section is None:
            yield i, None
            continue
        if s.startswith("Updated,"):
            t = take_time(s[len("Updated,"):] + " ")
            when = t[0] if t else None
            yield i, _status_line(ln)
            continue
        if s in ("ROUTING TABLE", "GLOBAL STATS", "END") or s.startswith(
                ("Common Name,", "Virtual Address,", "Max bcast")):
            if s != "GLOBAL STATS" and s != "END" and s.startswith("Virtual Address"):
                section = "routes"
            yield i, _status_line(ln)
            continue
        cols = s.split(",")
        if section == "clients" and len(cols) >= 5 and cols[2].isdigit() and cols[3].isdigit():
            ev = _status_line(ln)
            ev.kind, ev.time, ev.ctx = "sa_counters", when, cols[1]
            m = re.fullmatch(r"([0-9A-Fa-f.:]+?):(\d+)", cols[1])
            if m:
                ev.peer, ev.peer_port = m.group(1), int(m.group(2))
            ev.ids = [cols[0]]
            ev.counters = {"bytes_in": int(cols[2]), "bytes_out": int(cols[3])}
            yield i, ev
            continue
        if section == "stats" and len(cols) == 2 and cols[1].lstrip("-").isdigit():
            if stats is None:
                stats = _status_line(ln)
                stats.kind, stats.time, stats.counters = "sa_counters", when, {}
                yield i, stats
            else:
                stats.raw += "\n" + ln
                yield i, _status_line(ln)
            key = {"TCP/UDP read bytes": "bytes_in", "TCP/UDP write bytes": "bytes_out"}.get(
                cols[0], re.sub(r"[^a-z0-9]+", "_", cols[0].lower()).strip("_"))
            assert stats.counters is not None
            stats.counters[key] = int(cols[1])
            continue
        yield i, _status_line(ln)


def _status_line(ln: str) -> LogEvent:
    ev = LogEvent(ln.strip(), ln)
    ev.prog = "openvpn"
    return ev


DOCUMENTS = (Document("openvpn-status", "OpenVPN status file", sniff_status, parse_status),)
