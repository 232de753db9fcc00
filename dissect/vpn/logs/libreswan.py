"""libreswan: pluto's log (syslog, the journal, ``plutostderrlog`` with ``logtime``) and the
status output of ``ipsec trafficstatus`` / ``ipsec status`` (``whack --trafficstatus`` /
``--status``).

A pluto message about a connection starts ``"conn"[instance] [...peer] #serial: `` (the state
serial is the IKE SA's or the child SA's number); one about an unknown peer starts
``packet from ADDR:PORT: ``; debugging lines start ``| `` (never classified); an error with
its errno is prefixed ``ERROR: `` (before the connection part).  Phrases are libreswan 4.x's
(``ikev2.c``, ``ikev2_ike_sa_init.c``, ``ikev2_ike_auth.c``, ``timer.c``, ``ikev2_child.c``,
``iface_tcp.c``; the operator vocabulary of ../shared/docs/anchors.md §2.5), checked against
real logs (tests/data/logs/, captures/lab/), and libreswan 5.x's where they differ (checked
against its source, ``retransmit.c``, ``iface_tcp.c``, and its test suite's expected output):
endpoints written ``192.0.2.2:UDP/500`` / ``[2001:db8::2]:TCP/4500``, ``processing <exchange>
response from <endpoint> containing <payloads>``, IKE_INTERMEDIATE (RFC 9242: the additional
key exchanges of RFC 9370, ML-KEM), ``max number of retransmissions (N) reached``, ``TCP: socket
N: connecting to <endpoint>: <error>``, ``initiator rekeyed Child SA``, ``X509:`` / ``NSS:``
certificate errors.  ``Possible authentication failure`` is pluto's
*guess* after its first encrypted message got no acceptable answer: kind ``auth_suspected``,
not ``auth_failed``.
"""

from __future__ import annotations

import re

from .event import Document, LogEvent, Parsed

NAME = "libreswan"
TITLE = "libreswan pluto log"
PROGS = ("pluto", "ipsec_pluto", "libreswan")

# "conn"[1] 192.0.2.2 #3:   /  "conn" #3:  /  "conn":   /  packet from 192.0.2.2:500:
_HEAD = re.compile(r'(?:\d{3} )?(?:"([^"]+)"(?:\[(\d+)\])?(?: (?!#)(\S+?))?(?: #(\d+))?|packet from '
                   r'([0-9A-Fa-f.:]+?):(\d+)): ')
_SIGNATURE = re.compile(r'(?:\d{3} )?(?:ERROR: )?(?:"[^"]+"(?:\[\d+\])?(?: \S+)? #\d+: |'
                        r'packet from \S+: |'
                        r'\| |NSS |Starting Pluto|pluto |adding interface|listening for IKE|'
                        r'loading secrets|forgetting secrets|shutting down)')
_EXCH = {"IKE_SA_INIT": "IKE_SA_INIT", "IKE_AUTH": "IKE_AUTH", "IKE_INTERMEDIATE": "IKE_INTERMEDIATE",
         "CREATE_CHILD_SA": "CREATE_CHILD_SA", "INFORMATIONAL": "INFORMATIONAL",
         "Main Mode": "MAIN_MODE", "Aggressive Mode": "AGGRESSIVE", "Quick Mode": "QUICK_MODE"}
# an exchange's name as pluto writes it
_X2 = r"(IKE_SA_INIT|IKE_INTERMEDIATE|IKE_AUTH|CREATE_CHILD_SA|INFORMATIONAL)"
# an endpoint: 4.x ``192.0.2.2:500``; 5.x ``192.0.2.2:UDP/500``, ``[2001:db8::2]:TCP/4500``
_EP = r"(?:\[(?P<a6>[0-9A-Fa-f:.]+)\]|(?P<a4>[0-9A-Fa-f.:]+?)):(?:(?:UDP|TCP)/)?(?P<port>\d+)"
_SENT = re.compile(r"sent " + _X2 + r" (request|response|reply)(?: to " + _EP + ")?")
_DROPPING = re.compile(r"(?:dropping|ignoring) (?:unexpected )?" + _X2 +
                       r" (message|response|request) containing (\w+) notification")
_RESPONDING = re.compile(r"responding to " + _X2 + r" message \(ID (\d+)\) from " + _EP +
                         r" with (?:unencrypted |encrypted )?notification (?P<notify>\w+)")
# IKE over TCP (RFC 9329): pluto's connect() to the peer's TCP port failed (libreswan 4.x
# iface_tcp.c logs "TCP: connect(<fd>) failed" with strerror and errno: "Connection refused
# (errno 111)" for a RST, "Connection timed out (errno 110)" for SYNs never answered)
# (5.x iface_tcp.c: "TCP: socket <fd>: connecting to 192.0.2.2:4500: Connection refused (errno 111)")
_TCP_CONNECT = re.compile(r"TCP: connect\(\d+\) failed|TCP: socket \S+: connecting to " + _EP + ": ")
_CERT_FAILED = ("X509: certificate rejected", "X509: certificate payload rejected",
                "X509: CERT payload bogus or revoked", "X509: authentication failed")
# "ESP traffic information: in=84B out=31KiB" (jam_humber: integer, binary prefixes, truncated)
_TRAFFIC_INFO = re.compile(r"ESP traffic information: in=(\d+)([KMGTPE]i)?B out=(\d+)"
                           r"([KMGTPE]i)?B")
_PROPOSAL_LIST = re.compile(r"\s*\d+:((?:IKE|ESP|AH)=\S+)")
_SELECTED = re.compile(r"proposal (\S+) chosen from remote proposals")
# 5.x: "processing IKE_AUTH response from 192.0.2.2:UDP/500 containing SK{IDr,AUTH,SA,TSi,TSr}"
_PROCESSED = re.compile(r"process(?:ed|ing) " + _X2 + r" (request|response) from " + _EP +
                        r"(?: containing (?P<payloads>\S+))?")
_INITIATING = re.compile(r"initiating (IKEv2|IKEv1 Main Mode|IKEv1 Aggressive Mode)"
                         r"(?: connection)?(?: to ([0-9A-Fa-f.:]+))?")
_RETRANS = re.compile(r"(?:(\w+): )?retransmission; will wait ([\d.]+) seconds? for response|"
                      r"retransmitting (\S+) (request|response|message)")
# 4.x/5.x "<state>: 10 second timeout exceeded after 5 retransmits.  No response ...";
# 5.x also "<state>: max number of retransmissions (12) reached after 60 seconds.  No response ..."
_TIMEOUT = re.compile(r"(?:(\w+): )?(?:[\d.]+ second timeout exceeded after (\d+) retransmits?|"
                      r"max number of retransmissions \((\d+)\) reached after [\d.]+ seconds?)"
                      r"\.\s+(.*)")
_ESTABLISHED = re.compile(r"(?:initiator|responder) (?:established|rekeyed) (IKE|Child) SA|"
                          r"(IKE SA established|IPsec SA established|ISAKMP SA established)")
_SPIS = re.compile(r"\{ESP(?:/ESPinUDP)?[^=]*=>0x([0-9a-f]{8}) <0x([0-9a-f]{8})")
_NOTIFY = re.compile(r"\b(NO_PROPOSAL_CHOSEN|INVALID_KE_PAYLOAD|AUTHENTICATION_FAILED|"
                     r"TS_UNACCEPTABLE|INVALID_SPI|INVALID_IKE_SPI|COOKIE|INTERNAL_ADDRESS_FAILURE|"
                     r"FAILED_CP_REQUIRED|INVALID_ID_INFORMATION|INVALID_HASH_INFORMATION|"
                     r"v2N_\w+|v1N_\w+)\b")
_NOTIFY_TO = re.compile(r"notification \w+ to ([0-9A-Fa-f.:]+?):(\d+)$")
# IKEv1 (libreswan 4.10 ikev1_main.c / ikev1_aggr.c / ikev1_quick.c): "sent Main Mode request",
# "sent Main Mode R1" ... "I3", "sent Aggressive Mode response, expecting confirmation"
_SENT_V1 = re.compile(r"sent (Main Mode|Aggressive Mode|Quick Mode) (request|response|reply|"
                      r"[IR]\d)")
_KIND = {"NO_PROPOSAL_CHOSEN": "no_proposal", "INVALID_KE_PAYLOAD": "invalid_ke",
         "AUTHENTICATION_FAILED": "auth_failed", "TS_UNACCEPTABLE": "ts_unacceptable",
         "INVALID_SPI": "invalid_spi", "INVALID_IKE_SPI": "invalid_spi", "COOKIE": "cookie",
         "INTERNAL_ADDRESS_FAILURE": "child_failed", "FAILED_CP_REQUIRED": "child_failed",
         "INVALID_ID_INFORMATION": "ts_unacceptable", "INVALID_HASH_INFORMATION": "auth_failed"}


def _endpoint(m: re.Match[str]) -> tuple[str, int]:
    """The address and port of an :data:`_EP` match."""
    return m.group("a6") or m.group("a4"), int(m.group("port"))


def _humber(n: str, prefix: str | None) -> int:
    """A number pluto wrote with :c:func:`jam_humber` (``31Ki`` = 31 x 1024, truncated)."""
    power = " KMGTPE".index(prefix[0]) if prefix else 0
    return int(n) << (10 * power)


def merge(events: list[LogEvent]) -> None:
    """Give each child SA's ``ESP traffic information`` counters the SPIs its state was
    established with (the latest ``established/rekeyed Child SA`` line of the same ``#N``)."""
    spis: dict[str | None, list[str]] = {}
    for ev in events:
        if ev is None or ev.ctx is None:
            continue
        if ev.kind == "child_established" and len(ev.esp_spis) == 2:
            spis[ev.ctx] = ev.esp_spis
        elif ev.kind == "sa_counters" and ev.counters is not None and \
                "spi_in" not in ev.counters and ev.ctx in spis:
            ev.esp_spis = list(spis[ev.ctx])
            ev.counters["spi_in"], ev.counters["spi_out"] = ev.esp_spis


def match(msg: str, prog: str | None = None) -> bool:
    return _SIGNATURE.match(msg) is not None


def classify(ev: LogEvent) -> None:
    t = ev.text
    if t.startswith("| "):
        ev.level = "debug"
        return
    if t.startswith("ERROR: "):  # an error with its errno: the prefix precedes the connection
        ev.level = "error"
        t = t[7:]
    m = _HEAD.match(t)
    if m:
        if m.group(1) is not None:
            ev.ctx = f'"{m.group(1)}"' + (f"[{m.group(2)}]" if m.group(2) else "") + \
                (f" #{m.group(4)}" if m.group(4) else "")
            if m.group(3) and re.fullmatch(r"[0-9A-Fa-f.:]+", m.group(3).lstrip(".")):
                ev.peer = m.group(3).lstrip(".")  # an instance's peer: "conn"[1] 192.0.2.2
        else:
            ev.peer, ev.peer_port = m.group(5), int(m.group(6))
        t = t[m.end():]
        if t.startswith("ERROR: "):  # the prefix after the connection part
            ev.level = "error"
            t = t[7:]
    _classify(ev, t)


def _classify(ev: LogEvent, t: str) -> None:
    m = _SENT.match(t)
    if m:
        ev.kind = "ike_send"
        ev.direction = "out"
        ev.exchange = _EXCH[m.group(1)]
        ev.response = m.group(2) in ("response", "reply")
        if m.group("port"):
            ev.peer, ev.peer_port = _endpoint(m)
        return
    m = _SENT_V1.match(t)
    if m:
        ev.kind = "ike_send"
        ev.direction = "out"
        ev.exchange = _EXCH[m.group(1)]
        ev.response = m.group(2) in ("response", "reply") or m.group(2).startswith("R")
        return
    if t.startswith("received Hash Payload does not match computed value"):
        # IKEv1 (Aggressive Mode initiator, Main Mode): the peer's HASH does not verify with our
        # key -- the pre-shared keys differ (or the identities they are bound to)
        ev.kind = "auth_failed"
        ev.direction = "in"
        ev.reason = t
        return
    if t.startswith("Informational Exchange message must be encrypted"):
        # IKEv1: a cleartext Informational after phase 1 started (the peer's error notification)
        # is dropped unread
        ev.direction = "in"
        ev.exchange = "INFORMATIONAL"
        ev.reason = t
        return
    m = _DROPPING.match(t)
    if m:  # an answer received and ignored (unauthenticated): pluto keeps retransmitting
        ev.direction = "in"
        ev.exchange = _EXCH[m.group(1)]
        ev.response = m.group(2) in ("message", "response") and ev.exchange == "IKE_SA_INIT" \
            or m.group(2) == "response"
        ev.notify = m.group(3)
        ev.kind = _KIND.get(m.group(3), "ike_recv")
        ev.reason = t
        return
    m = _RESPONDING.match(t)
    if m:  # an error notification sent as the answer to a request
        ev.direction = "out"
        ev.exchange = _EXCH[m.group(1)]
        ev.response, ev.msgid = True, int(m.group(2))
        ev.peer, ev.peer_port = _endpoint(m)
        ev.notify = m.group("notify")
        ev.kind = _KIND.get(ev.notify)
        ev.reason = t
        return
    m = _TCP_CONNECT.match(t)
    if m:  # the TCP connection for IKE over TCP could not be opened: no IKE message leaves
        ev.kind = "connect_failed"
        ev.direction = "out"
        ev.reason = t
        if m.group("port"):
            ev.peer, ev.peer_port = _endpoint(m)
        return
    m = _PROPOSAL_LIST.match(t)
    if m:  # the connection's configured proposals ("conn":   1:IKE=AES_CBC_128-...)
        ev.kind = "proposals"
        ev.direction = "out"
        ev.reason = m.group(1)
        ev.child = not m.group(1).startswith("IKE=")
        return
    m = _SELECTED.match(t)
    if m:
        ev.kind = "proposal_selected"
        ev.reason = m.group(1)
        ev.child = "ESP=" in m.group(1) or "AH=" in m.group(1)
        return
    m = _PROCESSED.match(t)
    if m:
        ev.kind = "ike_recv"
        ev.direction = "in"
        ev.exchange = _EXCH[m.group(1)]
        ev.response = m.group(2) == "response"
        ev.peer, ev.peer_port = _endpoint(m)
        # 5.x lists the payloads: an error notify among them is the answer's meaning
        # ("containing SK{IDr,AUTH,N(TS_UNACCEPTABLE)}": the child SA refused, the IKE SA up)
        for name in re.findall(r"N\((\w+)\)", m.group("payloads") or ""):
            kind = _KIND.get(name)
            if kind:
                ev.kind, ev.notify, ev.reason = kind, name, t
                ev.child = ev.exchange in ("IKE_AUTH", "CREATE_CHILD_SA") and kind in (
                    "no_proposal", "ts_unacceptable", "child_failed")
                break
        return
    m = _INITIATING.match(t)
    if m:
        ev.kind = "aggressive_mode" if "Aggressive" in m.group(1) else "ike_init"
        ev.direction = "out"
        ev.exchange = {"IKEv2": "IKE_SA_INIT", "IKEv1 Main Mode": "MAIN_MODE"}.get(
            m.group(1), "AGGRESSIVE")
        ev.msgid, ev.response = 0, False
        if m.group(2):
            ev.peer = m.group(2)
        return
    m = _TIMEOUT.match(t)
    if m:
        rest = m.group(4)
        ev.count = int(m.group(2) or m.group(3))
        ev.state = m.group(1)
        ev.reason = rest.strip()
        if "Possible authentication failure" in rest:
            ev.kind = "auth_suspected"
            ev.exchange = "IKE_AUTH"
        else:
            ev.kind = "give_up"
            if "first IKEv2 message" in rest or (m.group(1) or "").startswith("IKE_SA_INIT"):
                ev.exchange = "IKE_SA_INIT"
            elif "Quick Mode" in rest:
                ev.exchange = "QUICK_MODE"
                ev.child = True
        return
    m = _RETRANS.match(t)
    if m:
        ev.kind = "ike_retransmit"
        ev.direction = "out"
        ev.state = m.group(1)
        ev.response = False
        st = (m.group(1) or m.group(3) or "")
        for k, v in (("IKE_SA_INIT", "IKE_SA_INIT"), ("PARENT_I1", "IKE_SA_INIT"),
                     ("IKE_INTERMEDIATE", "IKE_INTERMEDIATE"),
                     ("IKE_AUTH", "IKE_AUTH"), ("PARENT_I2", "IKE_AUTH"),
                     ("MAIN", "MAIN_MODE"), ("QUICK", "QUICK_MODE"), ("AGGR", "AGGRESSIVE")):
            if k in st:
                ev.exchange = v
                break
        return
    if "Possible authentication failure" in t:
        ev.kind = "auth_suspected"
        ev.reason = t
        return
    m = _ESTABLISHED.search(t)
    if m:
        sa = m.group(1) or m.group(2)
        child = sa.startswith(("Child", "IPsec"))
        ev.kind = "child_established" if child else "ike_established"
        ev.child = child
        ev.ids = [x.lstrip("@") for x in re.findall(r"ID_\w+ '([^']+)'", t)]
        s = _SPIS.search(t)
        if s:
            # {ESP=>0xOUTBOUND <0xINBOUND}: the SPI we send to, the SPI we receive on
            ev.esp_spis = [s.group(2), s.group(1)]
        return
    if t.startswith(_CERT_FAILED) or (t.startswith("NSS: ERROR: IPsec certificate ")
                                      and " invalid: " in t):
        # the peer's certificate refused: NSS's verdict (revoked, expired, unknown issuer) or
        # the connection's (5.x "X509: certificate rejected for this connection")
        ev.kind = "cert_failed"
        ev.direction = "in"
        ev.reason = t
        return
    if "authentication request rejected by peer" in t or "authentication failed" in t.lower():
        ev.kind = "auth_failed"
        ev.notify = "AUTHENTICATION_FAILED" if "AUTHENTICATION_FAILED" in t else None
        ev.reason = t
        return
    if "initiator guessed wrong keying material group" in t or "INVALID_KE_PAYLOAD" in t:
        ev.kind = "invalid_ke"
        ev.notify = "INVALID_KE_PAYLOAD"
        ev.reason = t
        if "INVALID_KE_PAYLOAD response" in t:
            ev.direction, ev.exchange, ev.response = "in", "IKE_SA_INIT", True
        return
    if "NAT-Traversal" in t and "NAT detected" in t or "NAT detected" in t:
        ev.kind = "nat_detected"
        ev.reason = t
        return
    if "liveness" in t and ("timeout" in t or "action" in t) or "DPD action" in t or \
            t.startswith("DPD: No response"):
        ev.kind = "dpd_timeout"
        ev.reason = t
        return
    if "sending 1 byte NAT-T keep-alive" in t or "NAT-T keep-alive" in t:
        ev.kind = "keepalive"
        return
    if t.startswith(("deleting state", "deleting IKE SA", "deleting other state",
                     "deleting ISAKMP SA", "deleting IPsec SA", "deleting Child SA")):
        # "... and sending notification" (a DELETE leaves) / "... and NOT sending notification"
        if "and sending notification" in t:
            ev.kind = "delete_sent"
        ev.reason = t
        return
    m = _TRAFFIC_INFO.match(t)
    if m:
        # a child SA's byte counters as pluto deletes it (state.c): the SPIs are those of its
        # "established Child SA" line (the same state), given by :func:`merge`
        ev.kind, ev.child = "sa_counters", True
        ev.counters = {"bytes_in": _humber(m.group(1), m.group(2)),
                       "bytes_out": _humber(m.group(3), m.group(4))}
        return
    if t.startswith("initiating rekey to replace "):  # 5.x: "... Child SA #2 using IKE SA #1"
        ev.kind = "ike_rekey"
        ev.direction = "out"
        ev.child = t.startswith("initiating rekey to replace Child SA")
        return
    if "received Delete SA payload" in t or "received v2 Delete" in t:
        ev.kind = "delete_recv"
        return
    m = _NOTIFY.search(t)
    if m:
        name = m.group(1)
        name = name[4:] if name.startswith(("v2N_", "v1N_")) else name
        kind = _KIND.get(name)
        if kind:
            ev.kind = kind
            ev.notify = name
            ev.reason = t
            # an encrypted NO_PROPOSAL_CHOSEN is about a child SA: IKEv1 refuses phase 1 in
            # the clear, and IKEv2's IKE SA proposals are refused in IKE_SA_INIT, unencrypted
            ev.child = "Child SA" in t or "CREATE_CHILD_SA" in t or "Quick Mode" in t or (
                name == "NO_PROPOSAL_CHOSEN" and "encrypted notification" in t
                and "unencrypted" not in t)
            to = _NOTIFY_TO.search(t)
            if to and ev.peer is None:  # "sending ... notification X to 192.0.2.2:500"
                ev.direction, ev.peer, ev.peer_port = "out", to.group(1), int(to.group(2))
        return
    if "no acceptable response to our first Quick Mode message" in t or \
            "perhaps peer likes no proposal" in t:
        ev.kind = "child_failed"
        ev.child = True
        ev.reason = t


# -- ipsec trafficstatus / ipsec status ------------------------------------------------------

_TRAFFIC = re.compile(r'(?:\d{3} )?#(\d+): "([^"]+)"(?:\[\d+\])?(?: ([0-9A-Fa-f.:]+))?, '
                      r"(?:type=(\w+), )?add_time=(\d+), inBytes=(\d+), outBytes=(\d+)"
                      r"(?:, maxBytes=\S+)?(?:, id='([^']*)')?")
_STATUS_STATE = re.compile(r'(?:\d{3} )?#(\d+): "([^"]+)"(?:\[\d+\])?(?: ([0-9A-Fa-f.:]+))?'
                           r"(?::(\d+))? (STATE_\w+|[A-Z_]+_[IR]\d?|ESTABLISHED_\w+|\w+_SA)"
                           r" \(([^)]*)\)")
_STATUS_SPIS = re.compile(r'(?:\d{3} )?#(\d+): "([^"]+)"[^ ]*(?: \S+)? (?:used|esp\.)'
                          r".*?esp\.([0-9a-f]+)@([0-9A-Fa-f.:]+)")


_STATUS_TRAFFIC = {d: re.compile(r"\bESP" + d + r"=(\d+)(K|M)?B\b") for d in ("in", "out")}


def _status_bytes(ln: str, d: str) -> int | None:
    """The ESP bytes of direction ``d`` of an ``ipsec status`` SA line (None: not shown)."""
    m = _STATUS_TRAFFIC[d].search(ln)
    if m is None:
        return None
    return int(m.group(1)) * {None: 1, "K": 1024, "M": 1024 * 1024}[m.group(2)]


def sniff_status(lines: list[str]) -> int:
    n = 0
    for ln in lines:
        if _TRAFFIC.match(ln) or _STATUS_STATE.match(ln):
            n += 2
        elif "Total IPsec connections" in ln or ln.startswith("000 Connection list"):
            n += 1
    return n


def parse_status(lines: list[str]) -> Parsed:
    """``ipsec trafficstatus``: an ``sa_counters`` event per IPsec SA (inBytes/outBytes since
    ``add_time``, the peer's ID); ``ipsec status``: an ``sa_state`` event per state (its state
    name and what pluto says about it) and the ESP SPIs it lists."""
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        m = _TRAFFIC.match(ln)
        if m:
            ev = LogEvent(ln.strip(), ln)
            ev.kind, ev.prog, ev.child = "sa_counters", "ipsec", True
            ev.ctx = f'"{m.group(2)}" #{m.group(1)}'
            if m.group(3):
                ev.peer = m.group(3)
            ev.counters = {"bytes_in": int(m.group(6)), "bytes_out": int(m.group(7)),
                           "add_time": int(m.group(5))}
            if m.group(8):
                ev.ids = [m.group(8)]
            yield i, ev
            continue
        m = _STATUS_STATE.match(ln)
        if m:
            ev = LogEvent(ln.strip(), ln)
            ev.kind, ev.prog = "sa_state", "ipsec"
            ev.ctx = f'"{m.group(2)}" #{m.group(1)}'
            if m.group(3):
                ev.peer = m.group(3)
            ev.state = m.group(5)
            ev.reason = m.group(6)
            yield i, ev
            continue
        ev = LogEvent(ln.strip(), ln)
        ev.prog = "ipsec"
        m = _STATUS_SPIS.match(ln)
        if m:
            ev.ctx = f'"{m.group(2)}" #{m.group(1)}'
            ev.esp_spis = said = re.findall(r"esp\.([0-9a-f]+)@", ln)
            n_in, n_out = _status_bytes(ln, "in"), _status_bytes(ln, "out")
            if len(said) >= 2 and n_in is not None and n_out is not None:
                # whack_showstates.c: the outbound SA (the peer's SPI, @ the peer) comes first,
                # then the inbound one; "Traffic: ESPin=84B ESPout=0B" counts bytes, 1024-based
                # and truncated (KB, MB): exact only when 0
                ev.kind, ev.child = "sa_counters", True
                ev.counters = {"spi_out": said[0].rjust(8, "0"), "spi_in": said[1].rjust(8, "0"),
                               "bytes_in": n_in, "bytes_out": n_out}
        yield i, ev


DOCUMENTS = (Document("libreswan-status", "libreswan ipsec trafficstatus / status", sniff_status,
                      parse_status),)
