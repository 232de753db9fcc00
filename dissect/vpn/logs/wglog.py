"""WireGuard's own log: wireguard-go's verbose log and the Linux kernel module's debug messages.

**wireguard-go** (``wireguard-go -f wg0``, log level verbose: ``LOG_LEVEL=verbose``) writes to
standard output ``LEVEL: (IFACE) YYYY/MM/DD HH:MM:SS message``: ``DEBUG`` (verbose) or
``ERROR``, the interface name in parentheses, then Go's ``log.Ldate|log.Ltime`` stamp (the
machine's local time, whole seconds, no zone) — ``device/logger.go``.  Messages about a peer
start ``peer(ABCD…WXYZ) - `` (the first four and last four base64 characters of its public key,
``device/peer.go``).  On Linux it starts by printing an ASCII-box banner (the kernel module is
preferred): those lines carry no time and say nothing; they are kept as events of the format.

**The kernel module** logs the same facts with ``net_dbg_ratelimited`` (visible with dynamic
debug: ``echo module wireguard +p > /sys/kernel/debug/dynamic_debug/control``), through dmesg,
syslog or the journal: ``wireguard: IFACE: message``, a peer named by its internal number and
endpoint (``peer 1 (192.0.2.2:51820)``) — ``drivers/net/wireguard/send.c``, ``receive.c``,
``timers.c``.  The framing (syslog, journal, dmesg's ``[ 1234.567890]``) is :mod:`.framing`'s.

Phrases (wireguard-go 0.0.20220316 as the lab's real logs show it, ``captures/lab/wireguard_*``,
``inner_wireguard_no_return``; wireguard-go ``device/send.go``, ``receive.go``, ``timers.go``;
the kernel's format strings) and their events:

===================================================  =============================================
``Sending handshake initiation`` (kernel: ``... to   ``wg_handshake`` out, request (an anchor)
peer N (ADDR)``)
``Received handshake initiation`` (kernel:           ``wg_handshake`` in, request
``Receiving handshake initiation from peer N
(ADDR)``)
``Sending handshake response`` / ``Received          ``wg_handshake`` out / in, response: the
handshake response`` (kernel: ``Sending`` /          handshake completed (session keys exist)
``Receiving handshake response ...``)
``Received invalid initiation message from ADDR``    ``wg_handshake_invalid`` in: the responder could
(kernel: ``Invalid handshake initiation from         not authenticate it (unknown or wrong public
ADDR``); ``... invalid response message ...``        key) and drops it silently
``Handshake did not complete after 5 seconds,        ``wg_retry`` (count = the try): no answer to the
retrying (try N)`` (kernel: ``Handshake for peer N   initiation within REKEY_TIMEOUT
(ADDR) did not complete after ...``)
``Handshake did not complete after N attempts,       ``give_up``
giving up``
``Sending cookie response for denied handshake       ``cookie`` (out / in): the responder is under
message for ADDR`` / ``Receiving cookie response     load
from ADDR``
``Failed to send handshake initiation: ERR``         ``connect_failed`` (the socket error)
===================================================  =============================================

Everything else (``Routine: ... started``, ``UAPI: ...``, keepalives, ``Interface state was Down,
requested Up, now Up``) is an event of the format with no kind.  Keys are never logged by either
implementation; the abbreviated public key is kept as an identity (for ``--redact``).
"""

from __future__ import annotations

import re

from .event import LogEvent
from .framing import WG_BANNER, WG_GO_PREFIX

NAME = "wireguard-log"
TITLE = "WireGuard log (wireguard-go / Linux kernel)"
PROGS = ("wireguard-go",)

_KERNEL = re.compile(r"(?:\[ *\d+\.\d+\] )?wireguard: ([^:\s]{1,64}): ")
_GO_PEER = re.compile(r"(peer\([A-Za-z0-9+/]{4}…[A-Za-z0-9+/]{4}\)) - ")
_EP = r"(\[[0-9A-Fa-f:.%]+\]|[0-9.]+):(\d+)"  # 192.0.2.2:51820, [2001:db8::2]:51820
_K_PEER = re.compile(rf"peer (\d+) \({_EP}\)")
_LEVELS = {"DEBUG": "debug", "ERROR": "error", "INFO": "info"}

# message (after the interface / peer prefix) → (kind, direction, response); the kernel says
# "to / from peer N (ADDR)" after the same words
_HANDSHAKE = (
    ("Sending handshake initiation", "out", False),
    ("Received handshake initiation", "in", False),
    ("Receiving handshake initiation", "in", False),
    ("Sending handshake response", "out", True),
    ("Received handshake response", "in", True),
    ("Receiving handshake response", "in", True),
)
_INVALID = re.compile(rf"(?:Received invalid (initiation|response) message from|"
                      rf"Invalid handshake (initiation|response) from) {_EP}")
#: no answer in time: "... after 5 seconds, retrying (try N)" or "... after N attempts, giving up"
_NO_ANSWER = re.compile(r"Handshake(?: for peer \d+ \([^)]*\))? did not complete after (\d+) "
                        r"(?:seconds, retrying \(try (\d+)\)|attempts, giving up)")
_COOKIE = re.compile(rf"(Sending cookie response for denied handshake message for|"
                     rf"Receiving cookie response from) {_EP}")
_SEND_FAIL = re.compile(r"Failed to send handshake (initiation|response): (.+)")


def match(msg: str, prog: str | None = None) -> bool:
    """A message of wireguard-go (its level and interface prefix, or a banner line) or of
    the kernel module (``wireguard: IFACE: ``)."""
    return (WG_GO_PREFIX.match(msg) is not None or WG_BANNER.match(msg) is not None or
            _KERNEL.match(msg) is not None)


def classify(ev: LogEvent) -> None:
    t = ev.text
    iface = None
    m = WG_GO_PREFIX.match(t)
    if m is not None:  # wireguard-go: the framing left the level and interface in front
        ev.level = _LEVELS.get(m.group(2))
        iface = m.group(3)
        t = t[m.end():]
        ev.prog = ev.prog or "wireguard-go"
        p = _GO_PEER.match(t)
        if p is not None:
            ev.ctx = f"{iface} {p.group(1)}"
            ev.ids = [p.group(1)[5:-1]]
            t = t[p.end():]
    else:
        k = _KERNEL.match(t)
        if k is None:
            return
        iface = k.group(1)
        t = t[k.end():]
        kp = _K_PEER.search(t)
        if kp is not None:
            ev.ctx = f"{iface} peer {kp.group(1)}"
            ev.peer, ev.peer_port = kp.group(2).strip("[]"), int(kp.group(3))
    ev.thread = iface
    _classify_message(ev, t)


def _classify_message(ev: LogEvent, t: str) -> None:
    for start, direction, response in _HANDSHAKE:
        if t.startswith(start):
            rest = t[len(start):]
            if rest and not rest.startswith((" to peer ", " from peer ")):
                return  # another message that starts with the same words
            ev.kind = "wg_handshake"
            ev.direction, ev.response = direction, response
            return
    m = _INVALID.match(t)
    if m is not None:
        ev.kind = "wg_handshake_invalid"
        ev.direction = "in"
        ev.response = (m.group(1) or m.group(2)) == "response"
        ev.peer, ev.peer_port = m.group(3).strip("[]"), int(m.group(4))
        ev.reason = ("the " + ("initiator could not authenticate the handshake response"
                               if ev.response else
                               "responder could not authenticate the handshake initiation: the "
                               "sender's public key is not one of its peers (or a replayed "
                               "initiation)"))
        return
    r = _NO_ANSWER.match(t)
    if r is not None:
        retry = r.group(2) is not None
        ev.kind = "wg_retry" if retry else "give_up"
        ev.count = int(r.group(2) if retry else r.group(1))  # the try / the attempts made
        ev.reason = t
        return
    c = _COOKIE.match(t)
    if c is not None:
        ev.kind = "cookie"
        ev.direction = "out" if c.group(1).startswith("Sending") else "in"
        ev.peer, ev.peer_port = c.group(2).strip("[]"), int(c.group(3))
        ev.reason = t
        return
    f = _SEND_FAIL.match(t)
    if f is not None:
        ev.kind = "connect_failed"
        ev.reason = t
