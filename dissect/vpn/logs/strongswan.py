"""strongSwan: charon's log messages, ``swanctl --list-sas`` and ``ipsec statusall``.

A charon message (filelog, syslog or journal alike) is ``TT[GRP] <conn|N> text``: the thread
number, the subsystem (IKE, ENC, NET, CFG, CHD, KNL, MGR, ...), the IKE SA's connection name and
unique ID when ``ike_name = yes`` (the default of swanctl setups), then the text.  The phrases
classified here are those of strongSwan 5.9 (``src/libcharon/sa/ikev2/tasks/``, ``sa/ikev1/``,
``network/sender.c`` / ``receiver.c``; the operator vocabulary of ../shared/docs/anchors.md §2.5),
checked against the lab's real logs (captures/lab/*/left.log, right.log).

``sending packet: from A[p] to B[q] (N bytes)`` / ``received packet: ...`` carry the IKE message
length (without the non-ESP marker); the ENC line just before them on the same thread names the
exchange and Message ID (``generating IKE_AUTH request 1 [ ... ]``): :func:`merge` copies it over.
"""

from __future__ import annotations

import re

from typing import Any

from .event import Document, LogEvent, Parsed

NAME = "strongswan"
TITLE = "strongSwan charon log"
PROGS = ("charon", "charon-systemd", "charon-nm", "charon-cmd", "ipsec")

_HEAD = re.compile(r"(\d{1,3})\[([A-Z]{2,4})\] (?:<([^>\s]*)> )?")

# strongSwan's short notify names (payload lists of ENC lines) → RFC 7296 / RFC 2408 names
SHORT_NOTIFY = {
    "NO_PROP": "NO_PROPOSAL_CHOSEN", "INVAL_KE": "INVALID_KE_PAYLOAD",
    "AUTH_FAILED": "AUTHENTICATION_FAILED", "TS_UNACCEPT": "TS_UNACCEPTABLE",
    "COOKIE": "COOKIE", "INVAL_SPI": "INVALID_SPI", "INVAL_IKE_SPI": "INVALID_IKE_SPI",
    "INVAL_SYN": "INVALID_SYNTAX", "INVAL_MID": "INVALID_MESSAGE_ID",
    "INVAL_MAJOR": "INVALID_MAJOR_VERSION", "INIT_CONTACT": "INITIAL_CONTACT",
    "INITIAL_CONTACT": "INITIAL_CONTACT", "NO_ADD_SAS": "NO_ADDITIONAL_SAS",
    "INT_ADDR_FAIL": "INTERNAL_ADDRESS_FAILURE", "FAIL_CP_REQ": "FAILED_CP_REQUIRED",
    "TEMP_FAIL": "TEMPORARY_FAILURE", "NO_CHILD_SA": "CHILD_SA_NOT_FOUND",
    "PLD_MAL": "PAYLOAD-MALFORMED", "INVAL_ID": "INVALID-ID-INFORMATION",
    "INVAL_HASH": "INVALID-HASH-INFORMATION",
}
# notify → event kind (what a notify in a message means for the diagnosis)
NOTIFY_KIND = {
    "NO_PROPOSAL_CHOSEN": "no_proposal", "INVALID_KE_PAYLOAD": "invalid_ke",
    "AUTHENTICATION_FAILED": "auth_failed", "TS_UNACCEPTABLE": "ts_unacceptable",
    "COOKIE": "cookie", "INVALID_SPI": "invalid_spi", "INVALID_IKE_SPI": "invalid_spi",
    "INVALID-ID-INFORMATION": "ts_unacceptable", "FAILED_CP_REQUIRED": "child_failed",
    "INTERNAL_ADDRESS_FAILURE": "child_failed",
}
EXCHANGES = {"IKE_SA_INIT": "IKE_SA_INIT", "IKE_AUTH": "IKE_AUTH",
             "CREATE_CHILD_SA": "CREATE_CHILD_SA", "INFORMATIONAL": "INFORMATIONAL",
             "ID_PROT": "MAIN_MODE", "AGGRESSIVE": "AGGRESSIVE", "QUICK_MODE": "QUICK_MODE",
             "INFORMATIONAL_V1": "INFORMATIONAL_V1", "TRANSACTION": "TRANSACTION",
             "IKE_INTERMEDIATE": "IKE_INTERMEDIATE"}

_EP = r"([0-9A-Fa-f.:%]+)\[(\d+)\]"
_PACKET = re.compile(rf"(sending|received) packet: from {_EP} to {_EP} \((\d+) bytes\)")
_ENC = re.compile(r"(generating|parsed) (\w+) (request|response) (\d+) \[ ?(.*?) ?\]$")
_NOTIFY_IN = re.compile(r"N\(([A-Z0-9_]+)\)")
_RETRANSMIT = re.compile(r"(?:sending )?retransmit (\d+) of request (?:with )?message ID (\d+)")
_GIVE_UP = re.compile(r"giving up after (\d+) retransmits")
_INITIATING = re.compile(r"initiating (?:(Main|Aggressive) Mode )?IKE_SA \S+ to (\S+)$")
_PEER_INIT = re.compile(r"(\S+) is initiating an? (?:(Main|Aggressive) Mode )?IKE_SA")
_ESTABLISHED = re.compile(r"IKE_SA \S+ (established|rekeyed) between ([^\[\s]+)\[([^\]]*)\]"
                          r"\.\.\.([^\[\s]+)\[([^\]]*)\]")
_CHILD_UP = re.compile(r"(?:inbound |outbound )?CHILD_SA \S+ established with SPIs "
                       r"([0-9a-f]+)_i(?: \(\d+ bytes\))? ([0-9a-f]+)_o")
_CHILD_CLOSE = re.compile(r"closing CHILD_SA \S+ with SPIs ([0-9a-f]+)_i \((\d+) bytes\) "
                          r"([0-9a-f]+)_o \((\d+) bytes\)")
_RECV_NOTIFY = re.compile(r"received ([A-Z0-9_]+) (?:notify error|error notify|notify)")
_MAC = re.compile(r"tried (\d+) shared keys? for '([^']*)' - '([^']*)', but MAC mismatched")
_NO_PSK = re.compile(r"no shared key found for '([^']*)' - '([^']*)'")
_NO_TRUST = re.compile(r"no trusted (\w+) public key found for '([^']*)'")
# remote-access user authentication (xauth-generic, eap-mschapv2: the lab's
# ikev1_xauth_failed and ikev2_eap_wrong_password logs)
_XAUTH = re.compile(r"XAuth authentication of '([^']*)' (?:\(myself\) )?failed")
_XAUTH_END = re.compile(r"destroying IKE_SA after failed XAuth authentication")
_EAP_VERIFY = re.compile(r"(EAP-[\w-]+) verification failed, retry \((\d+)\)")
_EAP_ERROR = re.compile(r"(EAP-[\w-]+) failed with error (\w+)")
_EAP_METHOD = re.compile(r"(EAP_\w+) method failed")
#: authentication failures: (pattern, the reason, the groups naming identities)
_AUTH = ((_MAC, "pre-shared key mismatch (MAC mismatched)", (2, 3)),
         (_NO_PSK, "no pre-shared key configured for these identities", (1, 2)),
         (_NO_TRUST, "certificate not trusted: no trusted {0} public key", (2,)),
         (_XAUTH, "XAuth user authentication of '{0}' failed (user name or password)", (1,)),
         (_XAUTH_END, "XAuth user authentication failed: the IKE SA is deleted", ()),
         (_EAP_VERIFY, "{0}: the user's password did not verify (retry {1})", ()),
         (_EAP_ERROR, "{0} user authentication failed: {1}", ()),
         (_EAP_METHOD, "EAP user authentication failed ({0})", ()))
_KE_PEER = re.compile(r"peer didn't accept (?:DH group|key exchange method) (\S+), "
                      r"it requested (\S+)")
_KE_US = re.compile(r"(?:DH group|key exchange method) (\S+) unacceptable, requesting (\S+)")
_TS = re.compile(r"traffic selectors (.+) unacceptable")
_DELETE = re.compile(r"(sending|received) DELETE for (IKE_SA \S+|(ESP|AH) CHILD_SA with SPI "
                     r"([0-9a-f]+))")
_PROPOSAL = re.compile(r"(selected|received|configured) proposals?: (.+)")
_KEEPALIVE = re.compile(rf"sending keep alive to {_EP}")
_FRAGMENT = re.compile(r"(received fragment #\d+ of \d+, waiting for complete IKE message|"
                       r"splitting IKE message \(\d+ bytes\) into \d+ fragments)")
_DUPLICATE = re.compile(r"destroying duplicate IKE_SA for peer '([^']*)', received INITIAL_CONTACT")
_UNIQUE = re.compile(r"(?:schedule delete of|deleting) duplicate IKE_SA for peer '([^']*)' due to "
                     r"uniqueness policy")
_CERT = re.compile(r"(no issuer certificate found for \"[^\"]*\"|certificate \"[^\"]*\" "
                   r"(?:has expired|is not valid)[^,]*|constraint check failed: .*|"
                   r"certificate was revoked.*|no private key found for '[^']*')")
_V1_DECRYPT = re.compile(r"invalid (?:HASH|ID)_V1 payload length, decryption failed\?")

#: subsystems whose lines can carry something classified
_GROUPS = frozenset({"NET", "ENC", "IKE", "CFG", "CHD"})


def match(msg: str, prog: str | None = None) -> bool:
    return _HEAD.match(msg) is not None


def _endpoint(ev: LogEvent, m: re.Match[str], first: int, out: bool) -> None:
    a, pa, b, pb = m.group(first), int(m.group(first + 1)), m.group(first + 2), \
        int(m.group(first + 3))
    if out:
        ev.local, ev.local_port, ev.peer, ev.peer_port = a, pa, b, pb
    else:
        ev.peer, ev.peer_port, ev.local, ev.local_port = a, pa, b, pb


def classify(ev: LogEvent) -> None:
    m = _HEAD.match(ev.text)
    if m is None:
        return
    ev.count = None
    ev.state = None
    ev.ctx = m.group(3) or None
    group = m.group(2)
    ev.prog = ev.prog or "charon"
    ev.thread = m.group(1)
    if group not in _GROUPS:
        return
    t = ev.text[m.end():]
    if group == "NET":
        p = _PACKET.match(t)
        if p:
            out = p.group(1) == "sending"
            ev.kind = "ike_send" if out else "ike_recv"
            ev.direction = "out" if out else "in"
            _endpoint(ev, p, 2, out)
            ev.size = int(p.group(6))
        return
    if group == "ENC":
        e = _ENC.match(t)
        if e:
            ev.direction = "out" if e.group(1) == "generating" else "in"
            ev.exchange = EXCHANGES.get(e.group(2), e.group(2))
            ev.response = e.group(3) == "response"
            ev.msgid = int(e.group(4))
            for short in _NOTIFY_IN.findall(e.group(5)):
                name = SHORT_NOTIFY.get(short)
                kind = NOTIFY_KIND.get(name) if name is not None else None
                if kind:
                    ev.notify = name
                    ev.kind = kind
                    ev.child = ev.exchange in ("CREATE_CHILD_SA", "QUICK_MODE") or (
                        ev.exchange == "IKE_AUTH" and "AUTH" in e.group(5).split())
                    break
            if ev.exchange == "AGGRESSIVE" and ev.kind is None and not ev.response \
                    and ev.msgid == 0:
                ev.kind = "aggressive_mode"
            if "EF(" in e.group(5) or "SKF" in e.group(5):
                ev.reason = "IKE fragments"
            return
        if _FRAGMENT.match(t):
            ev.kind = "fragment"
            ev.direction = "in" if t.startswith("received") else "out"
            return
        if _V1_DECRYPT.match(t):
            ev.kind = "auth_failed"
            ev.reason = ("IKEv1: the peer's encrypted message decrypts to garbage "
                         "(different pre-shared keys derive different keys)")
        return
    if group == "CFG":
        p = _PROPOSAL.match(t)
        if p:
            ev.kind = "proposal_selected" if p.group(1) == "selected" else "proposals"
            ev.direction = {"received": "in", "configured": "out"}.get(p.group(1))
            ev.reason = p.group(2)
            ev.child = not p.group(2).startswith("IKE:")
            return
        c = _CERT.match(t)
        if c:
            ev.kind = "cert_failed"
            ev.reason = c.group(1)
            ev.ids = _quoted(t)
        return
    if group == "CHD":
        return
    _classify_ike(ev, t)


#: message starts that say it all: (start, kind, reason: "text" = the message, or fixed, or None,
#: further facts)
_STARTS: tuple[tuple[str, str, str | None, dict[str, Any]], ...] = (
    ("establishing IKE_SA failed, peer not responding", "give_up", "text", {}),
    ("received proposals unacceptable", "no_proposal", "text", {}),
    ("no acceptable proposal found", "no_proposal", "text", {}),
    ("no proposal found", "no_proposal", "text", {}),
    ("no matching proposal found", "no_proposal", "text", {}),
    ("failed to establish CHILD_SA", "child_failed", "text", {"child": True}),
    ("local host is behind NAT", "nat_detected", "local host is behind NAT", {}),
    ("remote host is behind NAT", "nat_detected", "remote host is behind NAT", {}),
    ("faking NAT situation", "nat_faked", "text", {}),
    ("sending DPD request", "dpd_request", None, {"direction": "out"}),
    ("DPD check timed out", "dpd_timeout", "text", {}),
    ("received COOKIE", "cookie", None, {"notify": "COOKIE"}),
)


def _classify_ike(ev: LogEvent, t: str) -> None:
    for start, kind, reason, facts in _STARTS:
        if t.startswith(start):
            ev.kind = kind
            ev.reason = t if reason == "text" else reason
            for k, v in facts.items():
                setattr(ev, k, v)
            return
    m = _RETRANSMIT.match(t)
    if m:
        ev.kind = "ike_retransmit"
        ev.direction = "out"
        ev.count, ev.msgid = int(m.group(1)), int(m.group(2))
        ev.response = False
        return
    m = _GIVE_UP.match(t)
    if m:
        ev.kind = "give_up"
        ev.count = int(m.group(1))
        ev.reason = t
        return
    m = _INITIATING.match(t)
    if m:
        _initiating(ev, m.group(1), m.group(2), "out", "ike_init")
        return
    m = _PEER_INIT.match(t)
    if m:
        _initiating(ev, m.group(2), m.group(1), "in", "ike_peer_init")
        return
    m = _ESTABLISHED.match(t)
    if m:
        ev.kind = "ike_established" if m.group(1) == "established" else "ike_rekey"
        ev.local, ev.peer = m.group(2), m.group(4)
        ev.ids = [x for x in (m.group(3), m.group(5)) if x and x != "%any"]
        return
    m = _CHILD_UP.match(t)
    if m:
        ev.kind = "child_established"
        ev.esp_spis = [m.group(1).rjust(8, "0"), m.group(2).rjust(8, "0")]
        ev.child = True
        return
    m = _CHILD_CLOSE.match(t)
    if m:
        ev.kind = "sa_counters"
        ev.esp_spis = [m.group(1).rjust(8, "0"), m.group(3).rjust(8, "0")]
        ev.counters = {"bytes_in": int(m.group(2)), "bytes_out": int(m.group(4)),
                       "at": "close"}
        ev.child = True
        return
    for rx, reason, ids in _AUTH:
        m = rx.match(t)
        if m:
            ev.kind = "auth_failed"
            ev.reason = reason.format(*m.groups())
            ev.ids = [m.group(i) for i in ids]
            return
    m = _KE_PEER.match(t) or _KE_US.match(t)
    if m:
        ev.kind = "invalid_ke"
        ev.reason = f"DH group {m.group(1)} refused, {m.group(2)} requested"
        ev.notify = "INVALID_KE_PAYLOAD"
        return
    m = _TS.match(t)
    if m:
        ev.kind = "ts_unacceptable"
        ev.reason = f"traffic selectors {m.group(1)} unacceptable"
        ev.child = True
        return
    m = _RECV_NOTIFY.match(t)
    if m:
        name = m.group(1)
        nkind = NOTIFY_KIND.get(name)
        if nkind:
            ev.kind = nkind
            ev.notify = name
            ev.direction = "in"
            ev.child = "no CHILD_SA built" in t
        elif name == "INITIAL_CONTACT":
            ev.notify = name
        return
    m = _KEEPALIVE.match(t)
    if m:
        ev.kind = "keepalive"
        ev.direction = "out"
        ev.peer, ev.peer_port = m.group(1), int(m.group(2))
        return
    m = _DELETE.match(t)
    if m:
        ev.kind = "delete_sent" if m.group(1) == "sending" else "delete_recv"
        ev.direction = "out" if m.group(1) == "sending" else "in"
        if m.group(4):
            ev.esp_spis = [m.group(4).rjust(8, "0")]
            ev.child = True
        return
    m = _DUPLICATE.match(t)
    if m:
        ev.kind = "peer_restart"
        ev.reason = t
        ev.ids = [m.group(1)]
        return
    m = _UNIQUE.match(t)
    if m:
        ev.kind = "duplicate_sa"
        ev.reason = t
        ev.ids = [m.group(1)]
        return
    c = _CERT.match(t)
    if c:
        ev.kind = "cert_failed"
        ev.reason = c.group(1)
        ev.ids = _quoted(t)


def _quoted(t: str) -> list[str]:
    """Names in quotes: identities ('left.example') and certificate DNs ("C=.., CN=..")."""
    return [x for x in re.findall(r"'([^']{3,})'|\"([^\"]{3,})\"", t) for x in x if x]


def _initiating(ev: LogEvent, mode: str | None, peer: str, direction: str, kind: str) -> None:
    """The first request of an IKE SA leaves (``out``) or arrives (``in``)."""
    ev.kind = "aggressive_mode" if mode == "Aggressive" else kind
    ev.direction = direction
    ev.peer = peer
    ev.exchange = {"Main": "MAIN_MODE", "Aggressive": "AGGRESSIVE"}.get(mode or "", "IKE_SA_INIT")
    ev.msgid, ev.response = 0, False


def merge(events: list[LogEvent]) -> None:
    """Give each ``sending/received packet`` event the exchange, Message ID and direction of
    the ENC line (``generating``/``parsed``) next to it on the same thread and IKE SA: charon
    logs ``generating`` just before sending and ``parsed`` just after receiving."""
    last_gen: dict[tuple[str, str | None], LogEvent] = {}
    pending_recv: dict[tuple[str, str | None], LogEvent] = {}
    established: set[str | None] = set()
    for ev in events:
        if ev is None or ev.thread is None:
            continue
        # once the IKE SA is up, a refused proposal / selector is about a child SA
        if ev.kind == "ike_established":
            established.add(ev.ctx)
        elif ev.kind in ("no_proposal", "ts_unacceptable", "invalid_ke") and \
                ev.ctx in established:
            ev.child = True
        key = (ev.thread, ev.ctx)
        if ev.exchange is not None and ev.kind not in ("ike_init", "ike_peer_init",
                                                        "aggressive_mode", "ike_retransmit"):
            if ev.direction == "out":
                last_gen[key] = ev
            elif ev.direction == "in":
                r = pending_recv.pop(key, None)
                if r is not None and r.exchange is None:
                    _copy(ev, r)
            continue
        if ev.kind == "ike_send":
            g = last_gen.pop(key, None)
            if g is not None:
                _copy(g, ev)
        elif ev.kind == "ike_recv":
            pending_recv[key] = ev


def _copy(src: LogEvent, dst: LogEvent) -> None:
    dst.exchange, dst.msgid, dst.response = src.exchange, src.msgid, src.response


# -- swanctl --list-sas ----------------------------------------------------------------------

_LS_IKE = re.compile(r"([^\s:][^:]*): #(\d+), (\w+), IKEv(\d), ([0-9a-f]{16})_i(\*?) "
                     r"([0-9a-f]{16})_r(\*?)")
_LS_EP = re.compile(r"\s+(local|remote)\s+'([^']*)' @ ([0-9A-Fa-f.:%]+)\[(\d+)\]")
_LS_CHILD = re.compile(r"\s+([^\s:]+): #(\d+), reqid \d+, (\w+), ([\w-]+), (\S+)")
_LS_COUNT = re.compile(r"\s+(in|out)\s+([0-9a-f]{8})(?:\s*\(-\|0x[0-9a-f]+\))?,\s+(\d+) bytes,"
                       r"\s+(\d+) packets(?:,\s+(\d+)s ago)?")
_LS_INSTALLED = re.compile(r"\s+installed (\d+)s ago")
_LS_ESTAB = re.compile(r"\s+established (\d+)s ago")


def sniff_list_sas(lines: list[str]) -> int:
    n = 0
    for ln in lines:
        if _LS_IKE.match(ln) or _LS_COUNT.match(ln) or _LS_EP.match(ln):
            n += 2
        elif ln.startswith(("$ swanctl --list-sas", "$ swanctl -l")):  # an echoed command
            n += 1
    return n


def parse_list_sas(lines: list[str]) -> Parsed:
    """``swanctl --list-sas``: an ``sa_state`` event per IKE SA (state, SPIs, endpoints,
    identities, ``established Ns ago``) and an ``sa_counters`` event per child SA (both SPIs,
    bytes and packets in and out, seconds since the last packet each way, age)."""
    ike = None
    child = None
    for i, ln in enumerate(lines):
        if not ln.strip():
            yield i, None if ln.strip() else None
            continue
        if ln.startswith("$ "):  # the command, echoed before its output
            ev = LogEvent(ln.strip(), ln)
            ev.prog = "swanctl"
            yield i, ev
            continue
        m = _LS_IKE.match(ln)
        if m:
            ike = LogEvent(ln.strip(), ln)
            ike.kind = "sa_state"
            ike.prog = "swanctl"
            ike.ctx = f"{m.group(1)}|{m.group(2)}"
            ike.state = m.group(3)
            ike.exchange = f"IKEv{m.group(4)}"
            ike.ike_spis = [m.group(5), m.group(7)]
            ike.counters = {"local_is_initiator": bool(m.group(6))}
            child = None
            yield i, ike
            continue
        if ike is None:
            yield i, None
            continue
        m = _LS_EP.match(ln)
        if m:
            if m.group(1) == "local":
                ike.local, ike.local_port = m.group(3), int(m.group(4))
            else:
                ike.peer, ike.peer_port = m.group(3), int(m.group(4))
            if m.group(2) and m.group(2) != "%any":
                ike.ids.append(m.group(2))
            yield i, _detail(ln, ike)
            continue
        m = _LS_ESTAB.match(ln)
        if m:
            assert ike.counters is not None
            ike.counters["established_s_ago"] = int(m.group(1))
            yield i, _detail(ln, ike)
            continue
        m = _LS_CHILD.match(ln)
        if m:
            child = LogEvent(ln.strip(), ln)
            child.kind = "sa_counters"
            child.prog = "swanctl"
            child.ctx = ike.ctx
            child.state = m.group(3)
            child.reason = f"{m.group(4)}, {m.group(5)}"
            child.child = True
            child.peer, child.local = ike.peer, ike.local
            child.ike_spis = list(ike.ike_spis)
            child.counters = {}
            yield i, child
            continue
        if child is not None:
            m = _LS_COUNT.match(ln)
            if m:
                d = m.group(1)
                assert child.counters is not None
                child.esp_spis.append(m.group(2))
                child.counters[f"spi_{d}"] = m.group(2)
                child.counters[f"bytes_{d}"] = int(m.group(3))
                child.counters[f"packets_{d}"] = int(m.group(4))
                if m.group(5) is not None:
                    child.counters[f"last_{d}_s_ago"] = int(m.group(5))
                child.raw += "\n" + ln
                yield i, _detail(ln, child)
                continue
            m = _LS_INSTALLED.match(ln)
            if m:
                assert child.counters is not None
                child.counters["installed_s_ago"] = int(m.group(1))
                child.raw += "\n" + ln
                yield i, _detail(ln, child)
                continue
        yield i, _detail(ln, ike)


def _detail(ln: str, parent: LogEvent) -> LogEvent:
    """A continuation line of a status block: an unclassified event of the same context."""
    ev = LogEvent(ln.strip(), ln)
    ev.prog = parent.prog
    ev.ctx = parent.ctx
    return ev


# -- ipsec statusall (stroke) ----------------------------------------------------------------

_SA_IKE = re.compile(r"\s*([^\s\[]+)\[(\d+)\]: (ESTABLISHED|CONNECTING|CREATED|REKEYING|DELETING)"
                     r"(?: (\d+) \w+ ago)?, ([0-9A-Fa-f.:%]+)\[([^\]]*)\]\.\.\.([0-9A-Fa-f.:%]+)"
                     r"\[([^\]]*)\]")
_SA_SPIS = re.compile(r"\s*([^\s\[]+)\[(\d+)\]: IKEv(\d) SPIs: ([0-9a-f]{16})_i\*? "
                      r"([0-9a-f]{16})_r")
_SA_CHILD = re.compile(r"\s*([^\s{]+)\{(\d+)\}:\s+(INSTALLED|REKEYED|ROUTED)[^,]*, (\w+), "
                       r"reqid \d+, ESP(?: in UDP)? SPIs: ([0-9a-f]+)_i ([0-9a-f]+)_o")
_SA_BYTES = re.compile(r"\s*([^\s{]+)\{(\d+)\}:\s+\S+, (\d+) bytes_i(?: \((\d+) pkts?[^)]*\))?"
                       r", (\d+) bytes_o(?: \((\d+) pkts?[^)]*\))?")


def sniff_statusall(lines: list[str]) -> int:
    n = 0
    for ln in lines:
        if ln.startswith(("Status of IKE charon daemon", "Security Associations (")):
            n += 5
        elif _SA_IKE.match(ln) or _SA_CHILD.match(ln) or _SA_BYTES.match(ln):
            n += 2
    return n


def parse_statusall(lines: list[str]) -> Parsed:
    """``ipsec statusall`` (stroke): the ``Security Associations`` part — IKE SAs (state,
    endpoints, identities, SPIs) and child SAs (SPIs, bytes and packets each way)."""
    ikes: dict[str, LogEvent] = {}
    children: dict[str, LogEvent] = {}
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        m = _SA_IKE.match(ln)
        if m:
            ev = LogEvent(ln.strip(), ln)
            ev.kind, ev.prog = "sa_state", "ipsec"
            ev.ctx = f"{m.group(1)}|{m.group(2)}"
            ev.state = m.group(3)
            ev.local, ev.peer = m.group(5), m.group(7)
            ev.ids = [x for x in (m.group(6), m.group(8)) if x and x != "%any"]
            ev.counters = {}
            if m.group(4):
                ev.counters["established_ago"] = ln[m.start(4):].split(",")[0].strip()
            ikes[ev.ctx] = ev
            yield i, ev
            continue
        m = _SA_SPIS.match(ln)
        if m:
            ike = ikes.get(f"{m.group(1)}|{m.group(2)}")
            if ike is not None:
                ike.ike_spis = [m.group(4), m.group(5)]
                ike.exchange = f"IKEv{m.group(3)}"
            ev = LogEvent(ln.strip(), ln)
            ev.prog, ev.ctx = "ipsec", f"{m.group(1)}|{m.group(2)}"
            yield i, ev
            continue
        m = _SA_CHILD.match(ln)
        if m:
            ev = LogEvent(ln.strip(), ln)
            ev.kind, ev.prog, ev.child = "sa_counters", "ipsec", True
            ev.ctx = f"{m.group(1)}{{{m.group(2)}}}"
            ev.state = m.group(3)
            ev.esp_spis = [m.group(5).rjust(8, "0"), m.group(6).rjust(8, "0")]
            ev.counters = {"spi_in": ev.esp_spis[0], "spi_out": ev.esp_spis[1]}
            children[ev.ctx] = ev
            yield i, ev
            continue
        m = _SA_BYTES.match(ln)
        if m:
            ch = children.get(f"{m.group(1)}{{{m.group(2)}}}")
            if ch is not None:
                assert ch.counters is not None
                ch.counters["bytes_in"] = int(m.group(3))
                ch.counters["bytes_out"] = int(m.group(5))
                if m.group(4) is not None:
                    ch.counters["packets_in"] = int(m.group(4))
                if m.group(6) is not None:
                    ch.counters["packets_out"] = int(m.group(6))
                ch.raw += "\n" + ln
            ev = LogEvent(ln.strip(), ln)
            ev.prog = "ipsec"
            yield i, ev
            continue
        if ln.startswith(("Status of IKE", "  uptime", "  worker", "  loaded", "Listening",
                          "Connections:", "Security Associations", "  malloc", "  job")) or \
                ln.startswith(" "):
            ev = LogEvent(ln.strip(), ln)
            ev.prog = "ipsec"
            yield i, ev
            continue
        yield i, None


DOCUMENTS = (
    Document("swanctl-list-sas", "strongSwan swanctl --list-sas", sniff_list_sas,
             parse_list_sas),
    Document("ipsec-statusall", "strongSwan ipsec statusall", sniff_statusall, parse_statusall),
)
