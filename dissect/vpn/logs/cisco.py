"""Cisco IOS / IOS-XE and ASA (FTD): syslog messages, ``debug crypto isakmp|ikev2`` output and
the ``show crypto`` status commands.

Formats (built from Cisco's documentation; samples in tests/data/logs/vendor/ cite the section):

* IOS system messages ``%FACILITY-SEVERITY-MNEMONIC: text`` (Cisco IOS System Message Guide,
  "Message Format"): ``%CRYPTO-4-IKMP_NO_RESPONSE``, ``%CRYPTO-6-IKMP_MODE_FAILURE``,
  ``%CRYPTO-6-IKMP_AUTH_FAIL``, ``%CRYPTO-4-RECVD_PKT_INV_SPI``, ``%CRYPTO-5-SESSION_STATUS``,
  ``%CRYPTO-4-IKMP_BAD_MESSAGE``, ``%CRYPTO-6-IKMP_NOT_ENCRYPTED``, ``%CRYPTO-4-IKEV2_...``;
  a timestamp ``*Mar  1 00:01:02.123:`` (``service timestamps log datetime msec``) and the
  ``000123:`` sequence number before it are framing;
* ASA syslog ``%ASA-SEVERITY-NNNNNN: text`` (Cisco ASA Series Syslog Messages): IKEv1 713xxx
  (``Group = g, IP = a, ...``), IKEv2 750xxx/751xxx (``Local:a:500 Remote:b:500 Username:u
  ...``), Tunnel Manager 752xxx, IPsec 402xxx (invalid SPI, anti-replay, authentication) and
  702xxx (SA rekeying/expiry); ``%FTD-`` is the same family;
* ``debug crypto isakmp`` / ``debug crypto ikev2`` (Cisco "IPsec Troubleshooting:
  Understanding and Using debug Commands", Document ID 5409): ``ISAKMP:(0):...``,
  ``IKEv2:(SESSION ID = n,SA ID = m):...`` lines;
* ``show crypto isakmp sa`` (states MM_NO_STATE, MM_SA_SETUP, MM_KEY_EXCH, MM_WAIT_MSG2..6,
  QM_IDLE, AG_*, and ASA's MM_ACTIVE), ``show crypto ikev2 sa`` (READY / IN-NEG / DELETE),
  ``show crypto ipsec sa`` (``#pkts encaps/decaps``, ``#send errors``, ``#recv errors``, the
  ``detail`` drop counters, current outbound SPI, inbound/outbound ESP SAs): documents.

The phrases the field guide quotes are recognised: ``%CRYPTO-4-IKMP_NO_RESPONSE: IKE message
from A no response``, ``State: QM_IDLE`` / ``MM_NO_STATE`` against ``NO_PROPOSAL_CHOSEN``,
``pkts encaps = 0, pkts decaps = 0`` (``#pkts encaps: 0``), ``Received packet with invalid
SPI`` (``rec'd IPSEC packet has invalid spi``).
"""

from __future__ import annotations

import re

from .event import Document, LogEvent, Parsed, first_kind

NAME = "cisco"
TITLE = "Cisco IOS / ASA log"
PROGS = ()

_IP = r"(\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})"
_MNEMONIC = re.compile(r"(?:\d{1,10}: )?[*.]?(?:[A-Z][a-z]{2} +\d+(?: \d{4})? [\d:.]+(?: [A-Z]{3,4})?:"
                       r" )?%(\w+)-(\d)-(\w+):\s*(.*)")
_DEBUG = re.compile(r"(ISAKMP|IKEv2|IPSEC|CRYPTO_PKI|IKEv1)\s*(?:\(\d+:?\d*\)|:\([^)]*\))?[: ]"
                    r"\s*(.*)")
_LEVEL = {0: "error", 1: "error", 2: "error", 3: "error", 4: "warning", 5: "info", 6: "info",
          7: "debug"}

# (pattern, kind, child) on the message text; the first address named is the peer
_IOS = [
    (r"IKMP_NO_RESPONSE|no response|not responding|Retransmission retry count reached|"
     r"retransmit.*(?:phase|MM_|QM_|AG_).*max|retransmission count exceeded", "give_up", None),
    (r"retransmitting phase|retransmitting due to retransmit phase|retransmitting request|"
     r"Retransmitting packet", "ike_retransmit", None),
    (r"IKMP_AUTH_FAIL|Authentication method \d+ failed|AUTHENTICATION_FAILED|"
     r"pre-shared key|preshared key|SA authentication status:\s*not authenticated|"
     r"reason: ?pre-shared key", "auth_failed", None),
    (r"IKMP_MODE_FAILURE.*Quick mode", "child_failed", True),
    (r"IKMP_MODE_FAILURE", "negotiation_failed", None),
    (r"NO_PROPOSAL_CHOSEN|phase 1 SA policy not acceptable|atts are not acceptable|"
     r"proposal.*not acceptable|All .*proposals found unacceptable|"
     r"IKEV2_PROPOSAL|Failed to find a matching policy|No proposal chosen", "no_proposal", None),
    (r"RECVD_PKT_INV_SPI|invalid spi|INVALID_SPI|with no matching SA", "invalid_spi", None),
    (r"INVALID_KE|DH group.*(?:mismatch|not acceptable)|Mismatched attribute types for class "
     r"Group", "invalid_ke", None),
    (r"INVALID_ID_INFORMATION|TS_UNACCEPTABLE|proxy identities not supported|"
     r"IPSec SA proposal.*unacceptable|Quick Mode.*failed|QM FSM error", "ts_unacceptable", True),
    (r"IKMP_NOT_ENCRYPTED", "ts_unacceptable", True),
    (r"DPD|keepalive type: DPD|lost contact with remote peer|peer is dead|dead peer",
     "dpd_timeout", None),
    (r"certificate.*(?:expired|not valid|revoked|invalid)|CRYPTO_PKI.*(?:fail|invalid)|"
     r"IKMP_NO_PEER_CERT|no trusted", "cert_failed", None),
    (r"anti-replay|replay check|failed authentication|HMAC.*fail|decrypt.*fail",
     "esp_error", None),
    (r"NAT[- ]?T|behind a NAT|NAT detected|NAT-Traversal", "nat_detected", None),
    (r"Crypto tunnel is DOWN|IKEv2 SA DOWN|SA DOWN|tunnel.*down|Session disconnected|"
     r"was unsuccessful at setting up a tunnel|failed to establish an L2L SA", "tunnel_down", None),
    (r"Crypto tunnel is UP|IKEv2 SA UP|PHASE 2 COMPLETED|was successful at setting up a tunnel",
     "tunnel_up", None),
    (r"PHASE 1 COMPLETED|SA is authenticated|SA authentication status:\s*authenticated|"
     r"IKEV2 SA.*established|Old State = \S+\s+New State = (?:IKE_P1_COMPLETE|QM_IDLE)",
     "ike_established", None),
    (r"rekeying due to|IPSEC SA (?:lifetime|expired)|Rekey", "ike_rekey", None),
]
_COMPILED = [(re.compile(p, re.I), k) for p, k, _c in _IOS]
#: the phrases that speak of a child SA / Quick Mode
_CHILD_PATTERNS = {p for p, _k, c in _IOS if c}
_CHILD_KINDS = {k for _p, k, c in _IOS if c}
_ADDR = re.compile(rf"(?<![\w.:]){_IP}(?![\w.:]*\w)")
_PEER_HINT = re.compile(rf"(?:IP = |peer |Peer |from |Remote:|remote |dst |srcaddr=|with host "
                        rf"|to |IKE Peer: ){_IP}")
_SPI = re.compile(r"spi=0x([0-9A-Fa-f]{1,8})|SPI[ =:]+0x([0-9A-Fa-f]{1,8})")
_STATE = re.compile(r"\b((?:MM|QM|AG|AM)_[A-Z0-9_]+)\b")


def match(msg: str, prog: str | None = None) -> bool:
    if _MNEMONIC.match(msg):
        return True
    m = _DEBUG.match(msg)
    return bool(m) and ("(" in msg[:16] or msg.startswith(("ISAKMP:", "IKEv2:")))


def classify(ev: LogEvent) -> None:
    t = ev.text
    m = _MNEMONIC.match(t)
    if m:
        fac, sev, mnem, body = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        ev.level = _LEVEL.get(sev)
        ev.state = f"%{fac}-{sev}-{mnem}"
        if fac in ("ASA", "FTD", "PIX"):
            _asa(ev, mnem, body)
        else:
            _phrase(ev, f"{mnem} {body}")
        return
    d = _DEBUG.match(t)
    if d:
        ev.level = "debug"
        _phrase(ev, d.group(2), debug=True)


def _phrase(ev: LogEvent, t: str, debug: bool = False) -> None:
    kind, m = first_kind(_COMPILED, t)
    if kind is not None and not (debug and kind in ("nat_detected", "tunnel_up", "tunnel_down")
                                 and "NAT" not in t and "tunnel" not in t.lower()):
        ev.kind = kind
        ev.child = True if kind in _CHILD_KINDS and m is not None and \
            m.re.pattern in _CHILD_PATTERNS else None
        ev.reason = t.strip()[:300]
    _facts(ev, t)


def _facts(ev: LogEvent, t: str) -> None:
    p = _PEER_HINT.search(t)
    if p:
        ev.peer = p.group(1)
    elif ev.kind is not None:
        a = _ADDR.search(t)
        if a and "." in a.group(1) or (a and a.group(1).count(":") >= 2):
            ev.peer = a.group(1)
    s = _SPI.search(t)
    if s:
        ev.esp_spis = [(s.group(1) or s.group(2)).lower().rjust(8, "0")]
    st = _STATE.search(t)
    if st:
        ev.state = st.group(1)
    if ev.kind == "ike_retransmit":
        ev.direction = "out"
        ev.response = False
    g = re.search(r"Group = ([^,]+),", t)
    if g:
        ev.ids = [g.group(1).strip()]
    u = re.search(r"Username[:=] ?([^,\s]+)", t)
    if u and u.group(1) not in ("Not-Applicable", "N/A"):
        ev.ids.append(u.group(1))


_ASA_KIND = {
    "713119": "ike_established", "713120": "tunnel_up", "713123": "dpd_timeout",
    "713201": "ike_retransmit", "713257": "no_proposal", "713904": "invalid_spi",
    "750006": "ike_established", "750007": "tunnel_down", "752012": "tunnel_down",
    "752015": "give_up", "752016": "tunnel_up", "402114": "invalid_spi",
    "402116": "ts_unacceptable", "402119": "esp_error", "402120": "esp_error",
    "402123": "esp_error", "702305": "ike_rekey", "702307": "ike_rekey", "113019": "tunnel_down",
}


def _asa(ev: LogEvent, msgid: str, body: str) -> None:
    _phrase(ev, body)
    kind = _ASA_KIND.get(msgid)
    if kind is not None and ev.kind not in ("auth_failed", "no_proposal", "invalid_ke",
                                            "cert_failed", "ts_unacceptable"):
        ev.kind = kind
        ev.reason = body.strip()[:300]
    if msgid == "750003" and ev.kind is None:
        ev.kind = "child_failed" if "traffic selector" in body.lower() else "give_up"
        ev.reason = body.strip()[:300]
    r = re.search(r"Local:([0-9A-Fa-f.:]+?):(\d+) Remote:([0-9A-Fa-f.:]+?):(\d+)", body)
    if r:
        ev.local, ev.local_port = r.group(1), int(r.group(2))
        ev.peer, ev.peer_port = r.group(3), int(r.group(4))
    if ev.kind == "ike_retransmit":  # 713201: "Duplicate Phase 1 packet detected. Retransmitting"
        ev.direction, ev.response = "out", True


# -- show crypto isakmp sa / show crypto ikev2 sa / show crypto ipsec sa ----------------------

_ISAKMP_ROW = re.compile(rf"\s*{_IP}\s+{_IP}\s+((?:MM|QM|AG|AM)_[A-Z0-9_]+)\s+(\d+)\s+(\w+)")
_ASA_ISAKMP = re.compile(rf"\s*\d+\s+IKE Peer: {_IP}")
_ASA_STATE = re.compile(r".*\bState\s*:\s*(\S+)")
_IKEV2_ROW = re.compile(rf"\s*(\d+)\s+{_IP}/(\d+)\s+{_IP}/(\d+)\s+\S+\s+(READY|IN-NEG|DELETE|"
                        rf"UNKNOWN)\b")
_IPSEC_IF = re.compile(r"\s*interface: (\S+)")
_IPSEC_PEER = re.compile(rf"\s*current_peer:? {_IP}(?: port (\d+))?")
_IPSEC_ENDPT = re.compile(rf"\s*local crypto endpt\.: ?{_IP}(?:/(\d+))?, remote crypto endpt\.: ?"
                          rf"{_IP}(?:/(\d+))?")
_COUNTER = re.compile(r"#([A-Za-z][\w .\-()/]*?)[:= ]\s*(\d+)|(?<![\w#])(pkts [a-z ().]+?)\s*[:=]\s*"
                      r"(\d+)")
_ANY_STATE = re.compile(r".*\bState\s*:\s*((?:MM|QM|AG|AM)_[A-Z0-9_]+)")
_OUT_SPI = re.compile(r"\s*current outbound spi ?: ?(?:0x)?([0-9A-Fa-f]{1,8})")
_SA_SPI = re.compile(r"\s*spi: 0x([0-9A-Fa-f]{1,8})")
_SECTION = re.compile(r"\s*(inbound|outbound) (esp|ah|pcp) sas:")


def sniff_show(lines: list[str]) -> int:
    n = 0
    for ln in lines:
        if _ANY_STATE.match(ln):
            n += 2
        if ln.strip().startswith(("#pkts encaps", "#pkts decaps", "current outbound spi",
                                  "pkts encaps",
                                  "IPv4 Crypto ISAKMP SA", "IPv4 Crypto IKEv2", "inbound esp sas",
                                  "current_peer", "local crypto endpt")) or \
                _ISAKMP_ROW.match(ln) or _IKEV2_ROW.match(ln) or _ASA_ISAKMP.match(ln):
            n += 2
    return n


def _counter_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def parse_show(lines: list[str]) -> Parsed:
    """The ``show crypto`` documents: an ``sa_state`` event per IKE SA row (its state), an
    ``sa_counters`` event per ``show crypto ipsec sa`` block (peer, SPIs, every ``#...``
    counter: ``pkts_encaps``, ``pkts_decaps``, ``send_errors``, ``recv_errors``,
    ``pkts_invalid_sa_rcv`` ...)."""
    block = None
    section = None
    asa_peer = None
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        ev = LogEvent(ln.strip(), ln)
        ev.prog = "cisco"
        m = _ISAKMP_ROW.match(ln)
        if m:
            ev.kind, ev.state = "sa_state", m.group(3)
            ev.peer, ev.local = m.group(1), m.group(2)
            ev.reason = f"{m.group(3)} {m.group(5)}"
            yield i, ev
            continue
        m = _ASA_ISAKMP.match(ln)
        if m:
            asa_peer = m.group(1)
            yield i, ev
            continue
        m = _ASA_STATE.match(ln) if asa_peer else _ANY_STATE.match(ln)
        if m and "State" in ln:
            ev.kind, ev.state, ev.peer = "sa_state", m.group(1), asa_peer
            yield i, ev
            continue
        m = _IKEV2_ROW.match(ln)
        if m:
            ev.kind, ev.state = "sa_state", m.group(6)
            ev.local, ev.local_port = m.group(2), int(m.group(3))
            ev.peer, ev.peer_port = m.group(4), int(m.group(5))
            yield i, ev
            continue
        m = _IPSEC_IF.match(ln)
        if m:
            block = LogEvent(ln.strip(), ln)
            block.kind, block.prog, block.child = "sa_counters", "cisco", True
            block.ctx = m.group(1)
            block.counters = {}
            section = None
            yield i, block
            continue
        if block is None:
            if not _COUNTER.search(ln):
                yield i, ev
                continue
            block = ev  # counters without an "interface:" line: a block of their own
            block.kind, block.child, block.counters = "sa_counters", True, {}
        else:
            block.raw += "\n" + ln
        m = _IPSEC_PEER.match(ln)
        if m:
            block.peer = m.group(1)
            if m.group(2):
                block.peer_port = int(m.group(2))
        m = _IPSEC_ENDPT.match(ln)
        if m:
            block.local, block.peer = m.group(1), m.group(3)
        assert block.counters is not None
        for name, val, name2, val2 in _COUNTER.findall(ln):
            name, val = (name, val) if name else (name2, val2)
            key = _counter_name(name)
            block.counters[key] = int(val)
            if key == "pkts_encaps":
                block.counters["packets_out"] = int(val)
            elif key == "pkts_decaps":
                block.counters["packets_in"] = int(val)
        m = _OUT_SPI.match(ln)
        if m and int(m.group(1), 16):
            block.counters["spi_out"] = m.group(1).lower().rjust(8, "0")
        m = _SECTION.match(ln)
        if m:
            section = (m.group(1), m.group(2))
        m = _SA_SPI.match(ln)
        if m and section is not None and section[1] == "esp":
            spi = m.group(1).lower().rjust(8, "0")
            block.counters.setdefault(f"spi_{'in' if section[0] == 'inbound' else 'out'}", spi)
            if spi not in block.esp_spis:
                block.esp_spis.append(spi)
        yield i, (ev if ev is not block else block)


DOCUMENTS = (Document("cisco-show-crypto", "Cisco show crypto isakmp/ikev2/ipsec sa", sniff_show,
                      parse_show),)
