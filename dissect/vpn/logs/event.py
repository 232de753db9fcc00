"""The records every log format produces (see the package docstring)."""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Iterator, NamedTuple


class LogTime(NamedTuple):
    """A time stamp as written: ``year`` None when the format has none (RFC 3164),
    ``utcoffset`` (seconds east of UTC) None when it names no zone; ``resolution`` in seconds
    (1.0 for whole seconds: the stamp is the true time truncated)."""

    year: int | None
    month: int
    day: int
    hour: int
    minute: int
    second: int
    usec: int = 0
    utcoffset: int | None = None
    resolution: float = 1.0


#: Event kinds (the vocabulary shared by every dialect) and what each means.
KINDS = {
    # packets the daemon says it sent or received (clock alignment)
    "ike_send": "an IKE message sent (peer, ports, size; exchange and Message ID when known)",
    "ike_recv": "an IKE message received",
    "ike_init": "the daemon starts an IKE SA towards a peer (its first request leaves now)",
    "ike_peer_init": "a peer starts an IKE SA (its first request arrived)",
    "ike_retransmit": "a request sent again (no answer yet); count = retransmission number",
    "ike_established": "an IKE SA is up",
    "child_established": "a child SA (ESP/AH SAs) is up; esp_spis = inbound, outbound",
    "delete_sent": "a DELETE sent (IKE SA or child SA)",
    "delete_recv": "a DELETE received",
    "ike_rekey": "an IKE SA or child SA rekeyed",
    "dpd_request": "a liveness check (DPD R-U-THERE / empty INFORMATIONAL) sent",
    "keepalive": "a NAT-T keepalive sent",
    # failures and facts the diagnosis uses
    "give_up": "the daemon gave up: no response to a request (peer not responding)",
    "no_proposal": "NO_PROPOSAL_CHOSEN sent or received; reason names the proposals",
    "negotiation_failed": "a negotiation failed; the message does not say why",
    "invalid_ke": "INVALID_KE_PAYLOAD: the DH group was refused; reason names the groups",
    "auth_failed": "authentication failed; reason names how (PSK, certificate, identity, EAP)",
    "auth_suspected": "the daemon *guesses* authentication failed (libreswan 'Possible "
                      "authentication failure')",
    "ts_unacceptable": "traffic selectors refused (TS_UNACCEPTABLE / INVALID_ID_INFORMATION)",
    "child_failed": "a child SA / Quick Mode could not be established",
    "cookie": "a COOKIE notify (the responder asks for a cookie: half-open SA limit)",
    "nat_detected": "NAT detected between the peers (reason: which side)",
    "nat_faked": "UDP encapsulation forced by faking NAT detection",
    "fragment": "IKE fragments (RFC 7383 / IKEv1) received or sent",
    "dpd_timeout": "the peer did not answer liveness checks (DPD timeout)",
    "peer_restart": "the peer restarted (INITIAL_CONTACT, duplicate SA replaced)",
    "duplicate_sa": "a second IKE SA with the same peer is deleted (uniqueness policy)",
    "invalid_spi": "a packet for an unknown SPI (INVALID_SPI, 'invalid SPI')",
    "esp_error": "ESP dropped by the gateway (replay, integrity, decryption failure)",
    "aggressive_mode": "IKEv1 Aggressive Mode in use",
    "proposal_selected": "the proposal agreed (reason: the algorithms)",
    "proposals": "proposals offered (direction out) or received (in); reason: the list",
    "sa_state": "an IKE SA's state from status output (state: e.g. QM_IDLE, MM_WAIT_MSG2)",
    "sa_counters": "an IPsec SA's counters from status output (counters: packets/bytes/errors)",
    "tunnel_down": "a tunnel / connection went down (reason when given)",
    "tunnel_up": "a tunnel / connection came up",
    # OpenVPN, WireGuard, client logs
    "tls_initial": "OpenVPN: the first packet of a session from a peer (session ID)",
    "tls_failed": "OpenVPN: the TLS handshake failed or did not finish in time",
    "tls_crypt_failed": "OpenVPN: a packet failed tls-auth / tls-crypt authentication",
    "cert_failed": "a certificate check failed (reason: expired, unknown CA, name)",
    "connect_failed": "a client could not connect (reason: the error the client shows)",
    "wg_peer": "WireGuard: a peer's endpoint, latest handshake and transfer counters",
    "wg_handshake": "WireGuard: a handshake message sent (out) or received (in); response "
                    "True: the handshake completed (the responder accepted the initiation)",
    "wg_handshake_invalid": "WireGuard: a handshake message the receiver could not "
                            "authenticate (unknown or wrong public key); dropped silently",
    "wg_retry": "WireGuard: a handshake initiation not answered in time, sent again "
                "(count = the try)",
}

#: Kinds that stand for a packet on the wire (usable for clock alignment).
PACKET_KINDS = frozenset({"ike_send", "ike_recv", "ike_init", "ike_peer_init", "ike_retransmit",
                          "tls_initial", "tls_crypt_failed", "wg_handshake",
                          "wg_handshake_invalid"})


class LogEvent:
    """One line (or record) of a log or status output."""

    __slots__ = (
        "line", "time", "host", "prog", "ctx", "kind", "level", "text", "raw",
        # facts (None / empty when the message does not say)
        "direction", "peer", "peer_port", "local", "local_port", "size", "exchange", "msgid",
        "response", "notify", "ike_spis", "esp_spis", "reason", "ids", "counters", "state",
        "count", "child", "session", "thread",
    )

    def __init__(self, text: str = "", raw: str = "", time: LogTime | None = None,
                 host: str | None = None, prog: str | None = None) -> None:
        self.line = 0
        self.time = time
        self.host = host
        self.prog = prog
        self.ctx: str | None = None        # the daemon's context key: strongSwan "<conn|N>", pluto "#N" ...
        self.kind: str | None = None
        self.level: str | None = None      # "error" | "warning" | "info" | "debug" when the format says
        self.text = text       # the message (after the framing)
        self.raw = raw         # the whole line(s), kept for evidence
        self.direction: str | None = None  # "out" (the daemon sent) | "in" (it received)
        self.peer: str | None = None       # remote address (text as written)
        self.peer_port: int | None = None
        self.local: str | None = None
        self.local_port: int | None = None
        self.size: int | None = None       # IKE message length (bytes) when the daemon logs it
        self.exchange: str | None = None   # IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL,
        #                        MAIN_MODE, AGGRESSIVE, QUICK_MODE, INFORMATIONAL_V1
        self.msgid: int | None = None
        self.response: bool | None = None   # True: a response; False: a request
        self.notify: str | None = None     # notify name (RFC 7296 spelling)
        self.ike_spis: list[str] = []     # 16 hex digits each
        self.esp_spis: list[str] = []     # 8 hex digits each
        self.reason: str | None = None     # the exact reason the daemon gives
        self.ids: list[str] = []          # identities named (for --redact)
        self.counters: dict[str, Any] | None = None   # dict (status output, wg show)
        self.state: str | None = None
        self.count: int | None = None      # retransmission number, ...
        self.child: bool | None = None      # True: about a child SA (Quick Mode, CREATE_CHILD_SA, IKE_AUTH child)
        self.session: str | None = None    # OpenVPN session ID (16 hex digits)
        self.thread: str | None = None     # the daemon's thread / worker (strongSwan ``11[IKE]``)

    def __repr__(self) -> str:
        return f"LogEvent({self.line}, {self.kind}, {self.text[:60]!r})"

    def facts(self) -> dict[str, object]:
        """The facts that are set (for reports and tests)."""
        out: dict[str, object] = {}
        for k in ("direction", "peer", "peer_port", "local", "local_port", "size", "exchange",
                  "msgid", "response", "notify", "reason", "state", "count", "child",
                  "session", "counters"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        if self.ike_spis:
            out["ike_spis"] = list(self.ike_spis)
        if self.esp_spis:
            out["esp_spis"] = list(self.esp_spis)
        return out



#: what a document parser yields: ``(index into the lines, LogEvent or None)``
Parsed = Iterator[tuple[int, "LogEvent | None"]]


class Document(NamedTuple):
    """A multi-line format (status output, event exports): ``sniff(lines) -> score``,
    ``parse(lines) -> iterator of (index, LogEvent or None)`` (index into ``lines``)."""

    name: str
    title: str
    sniff: Callable[[list[str]], float]
    parse: Callable[[list[str]], Parsed]


def first_kind(table: Iterable[tuple[re.Pattern[str], str]],
               text: str) -> tuple[str, re.Match[str]] | tuple[None, None]:
    """``(kind, match)`` of the first ``(compiled regex, kind)`` of ``table`` that ``text``
    matches (searched anywhere), else ``(None, None)``: the phrase tables of the vendor
    dialects."""
    for rx, kind in table:
        m = rx.search(text)
        if m:
            return kind, m
    return None, None
