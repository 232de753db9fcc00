"""Gateway evidence against the packets: confirmation, contradiction, counters, log-only facts.

Runs after the packet rules and the verdicts (:func:`apply_logs`, called by
:func:`pcapvpn.analysis.diagnose` when ``--log`` is given): a log never changes a verdict.

* **Confirmation**: each finding lists the log lines that say the same thing (``logs: [{file,
  line, time, text, agrees}]``): an event of a kind that confirms the finding's code
  (:data:`CONFIRMS`), tied to the same tunnel (by daemon context, SPIs or peer address: see
  :mod:`pcapvpn.track.logs`), near the finding's evidence in time.  Where the log names the
  exact reason behind an encrypted or inferred error (the PSK mismatch, the untrusted
  certificate, the refused DH group), the finding's detail gains it.
* **Contradiction** (``LOG_CONTRADICTION``, info, basis log): the log's claim and the packets
  disagree — libreswan's "Possible authentication failure" while the IKE_AUTH request was never
  answered at all (UDP 4500 dropped: NAT_T_BLOCKED); a daemon retransmitting (or giving up) while
  the capture shows the answers reaching the capture point on their way to it (they are dropped
  on the host).  The affected finding's log reference carries ``agrees: false``.
* **Counters vs. packets**: status output's per-SA counters (``swanctl --list-sas``, ``ipsec
  statusall``, Cisco ``show crypto ipsec sa``, ...) against the ESP counted on the wire for the
  same SPI: nothing encapsulated (nothing routed into the tunnel), decapsulated but nothing sent
  back (routing behind the gateway), counted by the gateway but missing on the wire (lost
  between the gateway and the capture point).
* **Log-only failures** (``LOG_ONLY_FAILURE``): a failure the log reports inside the capture's
  time span that no packet finding explains; listed beside the verdict, never in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dissect.vpn.registry import ExchangeType
from pcapvpn.findings import Evidence, LogRef, Term, declare, make, msg, msg_join
from pcapvpn.track.logs import _norm, _txt, align, associate, capture_anchors

declare(
    "LOG_CONTRADICTION", "capture", "info",
    "A gateway log and the packets disagree about what happened: the log names a cause the "
    "capture rules out (a suspected authentication failure while the request was never "
    "answered at all), or the daemon says it got no answer while the capture shows the answers "
    "reaching the capture point on their way to it.",
    ["Trust the packets for where traffic went: the capture shows what crossed the wire.",
     "Answers that reach the capture point but never the daemon are dropped on the gateway "
     "itself: its host firewall (input rules for UDP 500/4500), a wrong interface or source "
     "address, conntrack/NAT on the host.",
     "A daemon that *suspects* authentication (libreswan 'Possible authentication failure') "
     "while nothing ever came back: check the path for UDP 4500 (NAT-T) first."],
    failure=False)
declare(
    "LOG_ONLY_FAILURE", "capture", "warning",
    "A gateway log reports a failure, inside the capture's time span, that no finding from the "
    "packets explains: it happened on a tunnel or a path this capture does not show, or inside "
    "encrypted messages.  Listed beside the verdict; it never changes it.",
    ["Capture where the failing tunnel's packets pass (both gateways' outside interfaces), at "
     "the time the log names.",
     "Read the log line: it names the peer and the reason."],
    failure=False)
declare(
    "LOG_SA_NOTHING_SENT", "dataplane", "warning",
    "The gateway's status output shows an installed IPsec SA that encapsulated no packet "
    "(pkts encaps 0 / out 0 packets), and the capture shows no ESP on its outbound SPI: nothing "
    "is routed into the tunnel on this side.",
    ["Check that traffic for the remote subnets reaches this gateway and matches the crypto ACL "
     "/ traffic selectors (mask, both directions, typos).",
     "Check the routes towards the tunnel and NAT exemption (traffic NATed before it reaches "
     "the policy no longer matches it)."],
    failure=False)
declare(
    "LOG_SA_NO_REPLIES", "inner", "warning",
    "The gateway decapsulated packets from the peer (pkts decaps / in rising) but sent none "
    "back into the tunnel: the hosts behind it do not answer, or their replies are routed "
    "elsewhere (no route back to the remote subnet through this gateway).",
    ["Check routing behind the gateway: the reply path to the remote subnet must lead back to "
     "this gateway (default route, asymmetric routing, a second router).",
     "Check a firewall on the inside hosts and on the gateway's inside interface."],
    failure=False)
declare(
    "LOG_SA_ESP_LOST", "dataplane", "warning",
    "The gateway counted ESP packets on an SA that the capture does not show: they were lost "
    "between the gateway and the capture point (or, counted as received, between the capture "
    "point and the gateway).",
    ["Compare with a capture on the gateway's own outside interface to find the hop that drops "
     "ESP (firewalls, NAT devices without ESP/NAT-T support, ACLs).",
     "If the capture point sees only part of the traffic (mirror port, filter), the difference "
     "may be the capture's: check it first."],
    failure=False)

#: finding code → log event kinds that confirm it
CONFIRMS = {
    "IKE_NO_RESPONSE": {"give_up", "ike_retransmit", "connect_failed"},
    "IKE_RETRANSMISSION": {"ike_retransmit"},
    "NAT_T_BLOCKED": {"give_up", "ike_retransmit", "nat_detected"},
    "IKE_NO_PROPOSAL_CHOSEN": {"no_proposal", "negotiation_failed"},
    "IKE_INVALID_KE": {"invalid_ke", "negotiation_failed"},
    "IKE_ERROR_NOTIFY": {"negotiation_failed", "no_proposal", "invalid_ke", "auth_failed",
                         "ts_unacceptable", "child_failed", "invalid_spi"},
    "IKE_AUTH_FAILED": {"auth_failed", "cert_failed", "auth_suspected", "negotiation_failed"},
    "CERT_EXPIRED": {"cert_failed"},
    "CERT_NOT_YET_VALID": {"cert_failed"},
    "IKE_TS_UNACCEPTABLE": {"ts_unacceptable", "child_failed"},
    "CHILD_SA_FAILED": {"child_failed", "no_proposal", "ts_unacceptable", "ike_retransmit"},
    "CP_FAILED": {"child_failed"},
    "IKE_COOKIE": {"cookie"},
    "IKE_SIMULTANEOUS_INIT": {"ike_init", "ike_peer_init", "duplicate_sa"},
    "NAT_DETECTED": {"nat_detected"},
    "NAT_ENCAPSULATION_FORCED": {"nat_faked", "nat_detected"},
    "IKE_FRAGMENTATION_LOSS": {"ike_retransmit", "give_up", "fragment"},
    "DPD_TIMEOUT": {"dpd_timeout", "dpd_request", "give_up", "ike_retransmit"},
    "IKE_PEER_RESTART": {"peer_restart", "ike_init", "ike_established"},
    "IKE_REKEY_COLLISION": {"ike_rekey"},
    "IKE_SA_FLAPPING": {"ike_init", "ike_established", "give_up", "tunnel_down"},
    "ICMP_UNREACHABLE": {"ike_retransmit", "give_up", "dpd_timeout", "connect_failed"},
    "ESP_ONE_WAY": {"sa_counters"},
    "ESP_NO_TRAFFIC": {"sa_counters"},
    "ESP_SA_UNUSED": {"sa_counters"},
    "ESP_SEQUENCE_GAP": {"sa_counters", "esp_error"},
    "MTU_BLACK_HOLE": {"sa_counters"},
    "ESP_REPLAY": {"esp_error"},
    "ESP_SPI_MISMATCH": {"invalid_spi"},
    "IKE_AGGRESSIVE_MODE_PSK": {"aggressive_mode"},
    "IKE_WEAK_CRYPTO": {"proposal_selected", "proposals"},
    "OPENVPN_HANDSHAKE_STALLED": {"tls_failed", "cert_failed"},
    "OPENVPN_NO_RESPONSE": {"tls_crypt_failed", "tls_failed", "connect_failed"},
    "VPN_DATA_ONE_WAY": {"wg_peer", "esp_error"},
    "WIREGUARD_NO_RESPONSE": {"wg_peer", "wg_retry", "wg_handshake_invalid", "give_up"},
    "WIREGUARD_COOKIE": {"cookie"},
    "TLS_ALERT": {"cert_failed", "tls_failed"},
    "TLS_CERT_INVALID": {"cert_failed"},
    "TCP_NO_ANSWER": {"connect_failed"},
    "TCP_RESET": {"connect_failed"},
}

#: kinds that report a failure (log-only findings are made of these)
FAILURE_KINDS = {"give_up", "no_proposal", "negotiation_failed", "invalid_ke", "auth_failed", "auth_suspected",
                 "ts_unacceptable", "child_failed", "dpd_timeout", "cert_failed", "tls_failed",
                 "tls_crypt_failed", "connect_failed", "invalid_spi", "esp_error",
                 "wg_handshake_invalid"}
#: the stage each failure kind speaks of (the text of a log-only finding)
KIND_STAGE = {"give_up": "reachability", "no_proposal": "negotiation",
              "negotiation_failed": "negotiation",
              "invalid_ke": "negotiation", "auth_failed": "authentication",
              "auth_suspected": "authentication", "cert_failed": "authentication",
              "ts_unacceptable": "child_sa", "child_failed": "child_sa",
              "dpd_timeout": "stability", "tls_failed": "authentication",
              "tls_crypt_failed": "negotiation", "connect_failed": "reachability",
              "invalid_spi": "dataplane", "esp_error": "dataplane",
              "wg_handshake_invalid": "authentication"}
#: weak algorithms as strongSwan / libreswan / vendors name them in a selected proposal
_WEAK = re.compile(r"(?<![A-Z0-9])(3DES|DES|MD5|SHA1|HMAC_SHA1|HMAC_MD5|MODP_768|MODP_1024|"
                   r"MODP_1536|DH1|DH2|DH5|BLOWFISH|CAST)(?![A-Z0-9_])", re.I)
#: the reason a log gives → advice that follows from it
REASON_ADVICE = [
    (re.compile(r"pre-shared key|MAC mismatched|PSK", re.I),
     "The gateway log says the pre-shared keys differ: set the same PSK on both sides (and the "
     "identities it is configured for)."),
    (re.compile(r"not trusted|issuer|unknown CA|unable to get local issuer", re.I),
     "The gateway log says the peer's certificate is not trusted: install the CA that issued it "
     "(and any intermediate) on this side, or have the peer send the chain."),
    (re.compile(r"expired|not valid", re.I),
     "The gateway log says a certificate is expired or not yet valid: renew it, and check both "
     "gateways' clocks (NTP)."),
    (re.compile(r"DH group|key exchange method", re.I),
     "The gateway log names the DH groups: configure the group the responder asks for first in "
     "the initiator's proposal."),
    (re.compile(r"XAuth user|EAP user|EAP-MS-CHAP|password did not verify", re.I),
     "The gateway log says the user's credentials were refused (XAuth / EAP): check the user "
     "name and password on the client against the gateway's user database or RADIUS server."),
    (re.compile(r"responder could not authenticate the handshake initiation", re.I),
     "The WireGuard responder's log says it could not authenticate the initiations: add the "
     "initiator's public key as a peer on the responder, and check that the initiator uses "
     "the responder's current public key."),
    (re.compile(r"traffic selectors", re.I),
     "The gateway log names the refused traffic selectors: make both sides' local/remote "
     "subnets mirror each other."),
]
#: link window around a finding's evidence (seconds), before and after
WINDOW = 30.0
#: after the capture ends, log events still confirm a finding for this long
AFTER_END = 600.0
#: log references per finding, and per log file within it
MAX_REFS = 8
MAX_REFS_PER_FILE = 4
#: log lines of one kind per file referenced by a finding
MAX_REFS_PER_KIND = 2
#: IKEv2 Message IDs count up from 0: a daemon's log naming a larger one is an IKEv1 Quick Mode's
#: (random, RFC 2409 §5.5)
COUNTED_MSGIDS = 255
#: log events listed in the report (JSON log_events; HTML ladder/timeline; text section)
MAX_EVENTS = 1000


@dataclass
class LogOutcome:
    findings: list = field(default_factory=list)
    sources: list = field(default_factory=list)
    events: list = field(default_factory=list)
    #: per tunnel id: facts the verdict may use (see docs/logs.md "Verdict hook")
    tunnel_facts: dict = field(default_factory=dict)


class _Linked:
    """Per entry: where it belongs."""

    __slots__ = ("ent", "src", "tunnel", "ike_sa", "anchor")

    def __init__(self, ent, src, tunnel, ike_sa, anchor):
        self.ent = ent
        self.src = src
        self.tunnel = tunnel
        self.ike_sa = ike_sa
        self.anchor = anchor


def apply_logs(ctx, findings: list, sources: list) -> LogOutcome:
    """Align ``sources`` (pcapvpn.logsrc.LogSource) to the capture, link their events to
    ``findings`` (in place: ``finding.logs``), and return the findings the logs add, the
    ``log_sources`` / ``log_events`` of the report and the per-tunnel log facts."""
    state = ctx.state
    start = ctx.start
    end = state.now
    anchors = capture_anchors(state)
    out = LogOutcome()
    linked: list[_Linked] = []
    for src in sources:
        if src._ref is None:
            src.resolve(start)
        al = align(src, state, anchors)
        src.alignment = al
        for e in src.entries:
            # the stamp is the true time truncated to its resolution: the middle of that span
            e.ts = e.log_ts + e.res / 2 + al.offset if e.log_ts is not None else None
        assoc = associate(src, state, al)
        for e in src.entries:
            linked.append(_Linked(e, src, assoc.tunnel.get(id(e)), assoc.ike_sa.get(id(e)),
                                  assoc.matched.get(id(e))))
    by_tunnel: dict = {}
    for li in linked:
        by_tunnel.setdefault(li.tunnel, []).append(li)
    used: set = set()
    for f in findings:
        _confirm(ctx, f, by_tunnel.get(f.tunnel, ()), used, end)
    out.findings += _contradictions(ctx, findings, linked, used)
    out.findings += _counters(ctx, findings, linked, used)
    out.findings += _log_only(ctx, linked, used, start, end)
    out.sources = [_source_dict(s) for s in sources]
    contra = {(r.file, r.line) for f in findings + out.findings for r in f.logs or ()
              if not r.agrees}
    out.events = _events(ctx, linked, start, end, contra)
    out.tunnel_facts = _tunnel_facts(linked, findings + out.findings)
    return out


# -- references ------------------------------------------------------------------------------

def ref(ctx, li: _Linked, agrees: bool = True, reason: str | None = None,
        nat: bool = False) -> LogRef:
    e = li.ent
    if reason is None and nat and _translated(li):
        a = li.anchor
        seen = a.src if e.ev.direction == "in" else a.dst
        reason = (f"the gateway sees its peer at {_norm(e.ev.peer)}; the capture shows "
                  f"{seen}: an address translation between them")
    return LogRef(file=li.src.name, line=e.ev.line, time=ctx.time(e.ts) if e.ts is not None
                  else None, text=e.ev.raw[:1000], agrees=agrees,
                  reason=reason if reason is not None else e.ev.reason)


def _add_ref(f, r: LogRef) -> None:
    if f.logs is None:
        f.logs = []
    if any(x.file == r.file and x.line == r.line for x in f.logs):
        for x in f.logs:
            if x.file == r.file and x.line == r.line and not r.agrees:
                x.agrees = False
        return
    f.logs.append(r)


def _window(ctx, f, end):
    ev = f.evidence
    first = ev.first["rel"] + ctx.start if ev.first and ev.first.get("rel") is not None else None
    last = ev.last["rel"] + ctx.start if ev.last and ev.last.get("rel") is not None else first
    if first is None:
        return None
    hi = last + WINDOW
    if end is not None and end - last < 60.0:
        hi = max(hi, end + AFTER_END)
    return first - WINDOW, hi


def _fits_code(code: str, li: _Linked, f) -> bool:
    ev = li.ent.ev
    k = ev.kind
    if code == "IKE_NO_PROPOSAL_CHOSEN" and ev.child and f.stage != "child_sa":
        return False
    if code == "CHILD_SA_FAILED" and k == "ike_retransmit":
        a = li.anchor
        if a is not None and a.kind == "ike":
            return a.exch in (ExchangeType.QUICK_MODE, ExchangeType.CREATE_CHILD_SA)
        return (ev.msgid or 0) > COUNTED_MSGIDS  # an IKEv1 Quick Mode's random Message ID
    if code == "CHILD_SA_FAILED" and k != "child_failed" and not ev.child:
        return False
    if code == "NAT_ENCAPSULATION_FORCED" and k == "nat_detected":
        return "remote host" in (ev.reason or "")
    if code == "IKE_WEAK_CRYPTO":
        return bool(_WEAK.search(ev.reason or ""))
    if code in ("ESP_SEQUENCE_GAP", "MTU_BLACK_HOLE") and k == "sa_counters":
        return bool(set(ev.esp_spis) & {s.rjust(8, "0") for s in f.evidence.esp_spis})
    if code == "ESP_SA_UNUSED" and k == "sa_counters":
        c = ev.counters or {}
        return bool(set(ev.esp_spis) & {s.rjust(8, "0") for s in f.evidence.esp_spis}) and \
            _count(c, "in") == 0 and _count(c, "out") == 0
    if code == "WIREGUARD_NO_RESPONSE" and k == "wg_peer":
        return (ev.counters or {}).get("handshake_epoch") == 0
    if code == "WIREGUARD_NO_RESPONSE" and k == "wg_handshake_invalid":
        return not ev.response  # the responder dropped the initiation it could not authenticate
    if code in ("ESP_ONE_WAY", "ESP_NO_TRAFFIC"):
        c = ev.counters or {}
        pin, pout = _count(c, "in"), _count(c, "out")
        if pin is None or pout is None:
            return False
        if code == "ESP_ONE_WAY":
            return (pin == 0) != (pout == 0)
        return pin == 0 and pout == 0
    if code == "DPD_TIMEOUT" and k == "ike_retransmit":
        return ev.exchange in (None, "INFORMATIONAL", "INFORMATIONAL_V1") and (ev.msgid or 0) > 0
    if code == "IKE_PEER_RESTART" and k in ("ike_init", "ike_established"):
        return True
    return True


def _translated(li) -> bool:
    a = li.anchor
    peer = _norm(li.ent.ev.peer)
    return a is not None and peer is not None and a.kind == "ike" and peer not in (a.src, a.dst)


def _count(c: dict, d: str):
    """Packets (else bytes) of direction ``d`` in a counters dict."""
    for k in (f"packets_{d}", f"pkts_{'decaps' if d == 'in' else 'encaps'}", f"bytes_{d}"):
        if k in c and isinstance(c[k], int):
            return c[k]
    return None


def _confirm(ctx, f, cands, used: set, end) -> None:
    kinds = CONFIRMS.get(f.code)
    if not kinds:
        return
    win = _window(ctx, f, end)
    frames = {(fr.file, fr.frame) for fr in f.evidence.frames}
    hits = []
    for li in cands:
        e = li.ent
        if f.code == "NAT_DETECTED" and _translated(li):
            pass  # the gateway names its peer by another address than the capture shows
        elif e.ev.kind not in kinds or not _fits_code(f.code, li, f):
            continue
        t = e.ts if e.ts is not None else end
        if win is not None and t is not None and not (win[0] <= t <= win[1]):
            continue
        centre = (win[0] + win[1]) / 2 if win else 0.0
        dist = abs((t or 0.0) - centre)
        if li.anchor is not None and frames and any(
                (ctx.file(r[0]), r[1]) in frames for r in li.anchor.refs):
            dist = -1.0  # the line stands for a packet this finding cites
        hits.append((dist, li))
    if not hits:
        return
    hits.sort(key=lambda h: (h[0], h[1].ent.ev.line))
    seen: dict = {}
    per_src: dict = {}
    chosen = []
    for _d, li in hits:  # per log file: at most two lines of each kind, nearest first
        used.add(id(li.ent))
        k = (li.src.index, li.ent.ev.kind)
        if seen.get(k, 0) >= MAX_REFS_PER_KIND or per_src.get(li.src.index, 0) >= MAX_REFS_PER_FILE or \
                len(chosen) >= MAX_REFS:
            continue
        seen[k] = seen.get(k, 0) + 1
        per_src[li.src.index] = per_src.get(li.src.index, 0) + 1
        chosen.append(li)
    chosen.sort(key=lambda li: (li.src.index, li.ent.ev.line))
    reasons = []
    for li in chosen:
        _add_ref(f, ref(ctx, li, nat=f.code == "NAT_DETECTED"))
        r = li.ent.ev.reason
        if r and li.ent.ev.kind in ("auth_failed", "cert_failed", "invalid_ke",
                                     "ts_unacceptable", "no_proposal", "tls_failed",
                                     "tls_crypt_failed", "wg_handshake_invalid") and r not in [x[0] for x in reasons]:
            reasons.append((r, li))
    if f.code in ("ESP_ONE_WAY", "ESP_NO_TRAFFIC"):
        for li in chosen:
            counters_note = _counters_text(ctx, li)
            if counters_note:
                f.detail += msg(" Gateway status ({log}): {note}.", log=li.src.name,
                                note=counters_note)
                break
    for r, li in reasons[:2]:
        f.detail += msg(" Gateway log ({log}:{line}): {reason}.", log=li.src.name,
                        line=li.ent.ev.line, reason=r)
        for rx, advice in REASON_ADVICE:
            if rx.search(r) and advice not in f.advice:
                f.advice.insert(0, advice)
                break


# -- contradictions --------------------------------------------------------------------------

def _contradictions(ctx, findings, linked, used) -> list:
    out = []
    by_tunnel: dict = {}
    for f in findings:
        by_tunnel.setdefault(f.tunnel, []).append(f)
    sas = {sa.id: sa for sa in ctx.state.ike_sas}
    done = set()
    for li in linked:
        ev = li.ent.ev
        if ev.kind == "auth_suspected" and li.tunnel is not None:
            f = _auth_suspected(ctx, li, by_tunnel.get(li.tunnel, ()), done)
            if f is not None:
                used.add(id(li.ent))
                out.append(f)
        elif ev.kind in ("ike_retransmit", "give_up", "dpd_timeout") and li.ike_sa in sas:
            f = _answers_dropped(ctx, li, sas[li.ike_sa], linked,
                                 by_tunnel.get(li.tunnel, ()), done, used)
            if f is not None:
                used.add(id(li.ent))
                out.append(f)
    return out


def _auth_suspected(ctx, li, tfindings, done):
    """libreswan guesses authentication; the capture shows the IKE_AUTH never answered."""
    key = ("auth", li.src.index, li.ent.ev.ctx)
    if key in done:
        return None
    hit = [f for f in tfindings if f.code in ("NAT_T_BLOCKED", "IKE_NO_RESPONSE")]
    if not hit:
        return None
    done.add(key)
    f0 = hit[0]
    r = ref(ctx, li, agrees=False)
    for f in hit:
        _add_ref(f, r)
    what = (msg("UDP 4500 (NAT-T) is dropped on the path") if f0.code == "NAT_T_BLOCKED"
            else msg("nothing came back from the peer"))
    g = make("LOG_CONTRADICTION", f"auth|{li.src.name}|{li.ent.ev.line}",
             title=msg("{log} suspects an authentication failure, but the capture shows the "
                       "request was never answered", log=li.src.name),
             detail=msg("{log}:{line} says '{text}' — a guess: the daemon got no acceptable "
                        "answer to its first encrypted message.  The packets show no answer at "
                        "all ({code}: {title}): {what}, so authentication was never tried by the "
                        "peer.", log=li.src.name, line=li.ent.ev.line,
                        text=_clip(li.ent.ev.reason or li.ent.ev.text), code=f0.code,
                        title=f0.title, what=what),
             basis="log", evidence=_copy_evidence(f0.evidence), tunnel=li.tunnel,
             wireshark_filter=f0.wireshark_filter)
    g.logs = [r]
    return g


def _answers_dropped(ctx, li, sa, linked, tfindings, done, used):
    """The daemon retransmits / gives up while the answers reach the capture point."""
    ev = li.ent.ev
    t = li.ent.ts
    if t is None:
        return None
    msgid = ev.msgid
    if msgid is None:  # give_up / DPD timeout: the last request retransmitted in this context
        for other in linked:
            oe = other.ent.ev
            if other.src is li.src and oe.ctx == ev.ctx and oe.kind == "ike_retransmit" and \
                    oe.msgid is not None and other.ent.ts is not None and other.ent.ts <= t:
                msgid = oe.msgid
    if msgid is None:
        return None
    key = ("answers", li.src.index, ev.ctx, msgid)
    if key in done:
        return None
    host = _host(li.src.alignment)
    if host is None:
        return None  # which side the daemon is on must be known before it is contradicted
    slack = (li.src.alignment.uncertainty or 0.0) + li.ent.res + 0.5
    for x in sa.exchanges:
        if x.msgid != msgid or sa.version != 2:
            continue
        reqs = [m for m in x.msgs if not m.is_response]
        resps = [m for m in x.msgs if m.is_response]
        if not reqs or not resps:
            continue
        # the daemon is the requester: it logs the retransmission; the responses go to it (each
        # side numbers its own requests: the Message ID alone does not name the exchange)
        requester = reqs[0].src
        if _txt(requester) != host:
            continue
        before = [m for m in resps if m.ts < t - slack and m.dst == requester]
        if not before:
            continue
        # the daemon says it received something of this exchange (and ignored it): no claim
        heard = [o for o in linked if o.src is li.src and o.ent.ev.ctx == ev.ctx and
                 o.ent.ev.direction == "in" and o.ent.ts is not None and
                 before[0].ts - slack <= o.ent.ts <= t + slack and
                 o.ent.ev.exchange == _exch(x) and o.ent.ev.response is not False]
        if heard:
            continue
        done.add(key)
        claims = [o for o in linked if o.src is li.src and o.ent.ev.ctx == ev.ctx and (
            (o.ent.ev.kind == "ike_retransmit" and o.ent.ev.msgid == msgid) or
            o.ent.ev.kind in ("give_up", "dpd_timeout"))]
        n_retx = sum(1 for o in claims if o.ent.ev.kind == "ike_retransmit")
        gave_up = any(o.ent.ev.kind == "give_up" for o in claims)
        claimed = {(o.src.name, o.ent.ev.line) for o in claims}
        for o in claims:
            used.add(id(o.ent))
        refs = [m.frames[-1] for m in resps]
        affected = [f for f in tfindings if any(
            (fr.file, fr.frame) in {(ctx.file(r[0]), r[1]) for r in refs}
            for fr in f.evidence.frames)]
        r = ref(ctx, li, agrees=False)
        for f in affected:
            _add_ref(f, r)
            for lr in f.logs:  # the same claim on other lines disagrees as well
                if (lr.file, lr.line) in claimed:
                    lr.agrees = False
        first = before[0]
        g = make("LOG_CONTRADICTION", f"answers|{li.src.name}|{ev.ctx}|{msgid}",
                 title=msg("{log}: the daemon got no answer to Message ID {msgid}, but {n} "
                           "answer(s) reached the capture point", log=li.src.name, msgid=msgid,
                           n=len(resps)),
                 detail=msg("{log}:{line} says '{text}'", log=li.src.name, line=ev.line,
                            text=_clip(ev.text))
                        + ((msg(" ({n} retransmission(s) logged, then it gave up)", n=n_retx)
                            if gave_up else msg(" ({n} retransmission(s) logged)", n=n_retx))
                           if n_retx else "")
                        + msg("; the capture shows {n} response(s) to {exchange} Message ID "
                              "{msgid} from {src} to {dst}, the first at {t}, before the daemon's "
                              "line ({t_log}).  The answers are dropped between the capture "
                              "point and the daemon: on the gateway itself (host firewall, "
                              "interface, conntrack/NAT).", n=len(resps), exchange=_exch(x),
                              msgid=msgid, src=_txt(first.src), dst=_txt(requester),
                              t=_at(ctx, first.ts), t_log=_at(ctx, t)),
                 basis="log",
                 evidence=ctx.evidence(refs, first.ts, resps[-1].ts,
                                       ike_spis=[bytes(sa.ispi).hex()],
                                       peers=[_txt(requester), _txt(first.src)]),
                 wireshark_filter=_ike_msg_filter(sa, msgid), tunnel=li.tunnel)
        g.logs = [r] + [ref(ctx, o, agrees=False) for o in claims if o is not li][:MAX_REFS - 1]
        for f in affected[:1]:
            g.detail += msg("  Affected finding: {code} ({title}).", code=f.code, title=f.title)
        return g
    return None


def _at(ctx, ts) -> str:
    return f"{ts - ctx.start:+.3f} s"


def _exch(x) -> str:
    from dissect.vpn import registry as reg

    return reg.exchange_name(x.exch, short=True)


def _ike_msg_filter(sa, msgid) -> str:
    from pcapvpn.rules.common import ike_filter

    return ike_filter(sa, [msgid])


def _copy_evidence(ev: Evidence) -> Evidence:
    return Evidence(frames=list(ev.frames), first=ev.first, last=ev.last,
                    ike_spis=list(ev.ike_spis), esp_spis=list(ev.esp_spis), peers=list(ev.peers))


def _clip(s: str, n: int = 200) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n - 1] + "…"


# -- counters vs packets ---------------------------------------------------------------------

def _wire(ctx):
    """ESP SAs of the capture by SPI (8 hex digits)."""
    out = {}
    for e in ctx.state.esp_sas:
        if getattr(e, "proto", "esp") == "esp":
            out.setdefault(f"{e.spi:08x}", []).append(e)
    return out


def _counters_text(ctx, li) -> str:
    c = li.ent.ev.counters or {}
    wire = _wire(ctx)
    parts = []
    for d, label in (("out", Term("sent")), ("in", Term("received"))):
        spi = c.get(f"spi_{d}")
        n = _count(c, d)
        if spi is None or n is None:
            continue
        unit = Term("packets" if (f"packets_{d}" in c or f"pkts_{'decaps' if d == 'in' else 'encaps'}"
                                  in c) else "bytes")
        seen = sum(x.packets for x in wire.get(spi, ()))
        parts.append(msg("{label} {n} {unit} on SPI {spi}, {seen} ESP packet(s) with that SPI in "
                         "the capture", label=label, n=n, unit=unit, spi=spi, seen=seen))
    return msg_join("; ", parts)


def _sends_elsewhere(li, linked) -> bool:
    """Another SA of the same gateway towards the same peer (or tunnel) sent packets: this one
    is idle (a duplicate or replaced child SA), not the tunnel's only way out."""
    me = li.ent.ev
    key = li.tunnel or _norm(me.peer)
    for o in linked:
        ev = o.ent.ev
        if o is li or o.src is not li.src or ev.kind != "sa_counters" or not ev.counters:
            continue
        if (o.tunnel or _norm(ev.peer)) == key and (_count(ev.counters, "out") or 0) > 0:
            return True
    return False


def _counters(ctx, findings, linked, used) -> list:
    out = []
    wire = _wire(ctx)
    for li in linked:
        ev = li.ent.ev
        if ev.kind != "sa_counters" or not ev.counters:
            continue
        c = ev.counters
        spi_out, spi_in = c.get("spi_out"), c.get("spi_in")
        n_out, n_in = _count(c, "out"), _count(c, "in")
        if spi_out is None or spi_in is None or n_out is None or n_in is None:
            continue
        w_out = sum(x.packets for x in wire.get(spi_out, ()))
        w_in = sum(x.packets for x in wire.get(spi_in, ()))
        unit = Term("packets" if "packets_out" in c or "pkts_encaps" in c else "bytes")
        where = f"{li.src.name}:{ev.line}"
        r = ref(ctx, li)
        base = msg("{where}: the SA with SPIs {spi_in} (in) / {spi_out} (out) counts {n_out} "
                   "{unit} sent and {n_in} {unit} received; the capture shows {w_out} ESP "
                   "packet(s) on SPI {spi_out} and {w_in} on SPI {spi_in}.", where=where,
                   spi_in=spi_in, spi_out=spi_out, n_out=n_out, unit=unit, n_in=n_in,
                   w_out=w_out, w_in=w_in)
        refs = _esp_refs(list(wire.get(spi_out, ())) + list(wire.get(spi_in, ())))
        ev_ = ctx.evidence(refs, esp_spis=[s for s in (spi_in, spi_out)
                                           if wire.get(s)], peers=[p for p in (
                                               _norm(ev.local), _norm(ev.peer)) if p])
        tunnel = li.tunnel
        if n_out == 0 and w_out == 0:
            if _sends_elsewhere(li, linked):
                continue
            if n_in > 0:
                f = make("LOG_SA_NO_REPLIES", f"noreply|{where}|{spi_out}",
                         title=msg("{log}: ESP received on SPI {spi_in} but nothing sent back "
                                   "on SPI {spi_out}", log=li.src.name, spi_in=spi_in,
                                   spi_out=spi_out),
                         detail=base + msg(" Packets from the peer arrive and are decapsulated, "
                                           "but no reply enters the tunnel: routing behind the "
                                           "gateway."),
                         basis="log", evidence=ev_, tunnel=tunnel,
                         wireshark_filter=_esp_filter([spi_in, spi_out]))
            else:
                f = make("LOG_SA_NOTHING_SENT", f"nothing|{where}|{spi_out}",
                         title=msg("{log}: no packet entered the tunnel (SPI {spi_out}: 0 "
                                   "{unit})", log=li.src.name, spi_out=spi_out, unit=unit),
                         detail=base + msg(" Nothing is routed into the tunnel (crypto ACL / "
                                           "traffic selectors, routes)."),
                         basis="log", evidence=ev_, tunnel=tunnel,
                         wireshark_filter=_esp_filter([spi_in, spi_out]))
            f.logs = [r]
            used.add(id(li.ent))
            out.append(f)
            continue
        if unit != "packets":
            continue
        lost_out = n_out - w_out if n_out > w_out and _covers(ctx, wire.get(spi_out, ())) else 0
        if n_out > 0 and w_out == 0:
            lost_out = n_out
        lost_in = w_in - n_in if w_in > n_in else 0
        if lost_out > 0 or lost_in > 0:
            parts = []
            if lost_out:
                parts.append(msg("{n} of the {total} packets the gateway sent on SPI {spi} are "
                                 "not in the capture: lost between the gateway and the capture "
                                 "point", n=lost_out, total=n_out, spi=spi_out))
            if lost_in:
                parts.append(msg("{n} of the {total} packets the capture shows on SPI {spi} were "
                                 "not counted by the gateway: lost between the capture point and "
                                 "the gateway (or dropped by it)", n=lost_in, total=w_in,
                                 spi=spi_in))
            f = make("LOG_SA_ESP_LOST", f"lost|{where}|{spi_out}",
                     title=msg("{log}: ESP counted by the gateway but missing on the wire (SPI "
                               "{spi})", log=li.src.name, spi=spi_out if lost_out else spi_in),
                     detail=base + " " + msg_join("; ", parts) + ".",
                     basis="log", evidence=ev_, tunnel=tunnel,
                     wireshark_filter=_esp_filter([spi_in, spi_out]))
            f.logs = [r]
            used.add(id(li.ent))
            out.append(f)
    return out


def _covers(ctx, sas) -> bool:
    """The capture saw the SA from its first packet (sequence number 1)."""
    return any(getattr(x, "starts_at_one", False) for x in sas)


def _esp_refs(sas) -> list:
    refs = []
    for x in sas:
        refs.extend(getattr(x, "first_refs", ())[:5])
    return refs


def _peer_filter(peer: str | None) -> str:
    """The traffic to and from the peer a log line names (what to look at in the capture)."""
    if not peer:
        return ""
    return f"ipv6.addr == {peer}" if ":" in peer else f"ip.addr == {peer}"


def _esp_filter(spis) -> str:
    from pcapvpn.rules.common import esp_filter

    return esp_filter([int(s, 16) for s in spis])


# -- log-only failures -----------------------------------------------------------------------

def _log_only(ctx, linked, used, start, end) -> list:
    groups: dict = {}
    for li in linked:
        e = li.ent
        if id(e) in used or e.ev.kind not in FAILURE_KINDS or e.ts is None:
            continue
        if start is not None and end is not None and not (start - 1.0 <= e.ts <= end + 1.0):
            continue
        key = (li.src.index, e.ev.kind, e.ev.ctx, li.tunnel)
        groups.setdefault(key, []).append(li)
    out = []
    for (_i, kind, _ctxkey, tunnel), lis in groups.items():
        li = lis[0]
        ev = li.ent.ev
        peer = _norm(ev.peer)
        where = f"{li.src.name}:{ev.line}"
        f = make("LOG_ONLY_FAILURE", f"{li.src.name}|{kind}|{ev.ctx}|{ev.line}",
                 title=msg("{log} reports {kind}{peer} (not seen in the packets)",
                           log=li.src.name, kind=Term(kind.replace('_', ' ')),
                           peer=msg(" with {peer}", peer=peer) if peer else ""),
                 detail=msg("{where} at {t}: '{text}'", where=where, t=_at(ctx, li.ent.ts),
                            text=_clip(ev.text))
                        + (msg(" ({n} such line(s))", n=len(lis)) if len(lis) > 1 else "")
                        + msg(".  The log speaks of the {stage} stage; no finding from the "
                              "packets covers it.", stage=Term(KIND_STAGE.get(kind, 'unknown'))),
                 basis="log", evidence=Evidence(first=ctx.time(li.ent.ts),
                                                last=ctx.time(lis[-1].ent.ts),
                                                peers=[peer] if peer else []),
                 wireshark_filter=_peer_filter(peer), tunnel=tunnel)
        f.logs = [ref(ctx, x) for x in lis[:MAX_REFS]]
        out.append(f)
    return out


# -- report parts ----------------------------------------------------------------------------

def _source_dict(src) -> dict:
    al = src.alignment
    d = {"file": src.name, "format": src.format, "title": src.title, **src.counts(),
         "clock_offset_s": round(al.offset, 3) if al is not None else None,
         "clock_offset_uncertainty_s": (round(al.uncertainty, 3)
                                        if al is not None and al.uncertainty is not None
                                        else None),
         "time_zone_offset_s": round(al.zone_offset, 1) if al is not None else None,
         "clock_error_s": round(al.clock_error, 3) if al is not None else None,
         "aligned_events": al.matched if al is not None else 0,
         "host": _host(al),
         "ids": _identities(src),
         "notes": [Term(n) for n in src.notes]}
    if al is not None:
        if al.method == "none" and not src.document:
            d["notes"].append(msg("no event of this log matches a packet of the capture: its "
                                  "times are the log's own clock"))
        elif al.zone_offset:
            h = al.zone_offset / 3600
            d["notes"].append((msg("the log's clock reads {h:g} hour(s) behind the capture's: a "
                                   "time-zone difference (use --log-tz), plus a clock error of "
                                   "{err:+.3f} s", h=abs(h), err=al.clock_error) if h > 0 else
                               msg("the log's clock reads {h:g} hour(s) ahead of the capture's: "
                                   "a time-zone difference (use --log-tz), plus a clock error of "
                                   "{err:+.3f} s", h=abs(h), err=al.clock_error)))
    return d


def _identities(src) -> list:
    """Identities and host names the kept events name (for --redact, which replaces them
    wherever they appear)."""
    out = []
    for e in src.entries:
        for x in list(e.ev.ids) + ([e.ev.host] if e.ev.host else []):
            x = x.lstrip("@") if x.startswith("@") and len(x) > 4 else x
            if x and x not in out:
                out.append(x)
    return out[:500]


def _host(al) -> str | None:
    """The gateway's own address as the capture shows it (from the packets its log matched:
    the source of what it sent, the destination of what it received)."""
    if al is None:
        return None
    votes: dict = {}
    for ent, a in al.pairs:
        addr = a.src if ent.ev.direction == "out" else a.dst if ent.ev.direction == "in" else None
        if addr:
            votes[addr] = votes.get(addr, 0) + 1
    return max(votes, key=votes.get) if votes else None


def _events(ctx, linked, start, end, contra=frozenset()) -> list:
    refs = {}
    out = []
    for li in linked:
        e = li.ent
        if e.ev.kind is None:
            continue
        if e.ts is not None and start is not None and end is not None and \
                not (start - 60.0 <= e.ts <= end + 60.0):
            continue
        out.append((e.ts if e.ts is not None else float("inf"), li.src.index, e.ev.line, li))
    out.sort(key=lambda x: (x[0], x[1], x[2]))
    res = []
    for _t, _i, _l, li in out[:MAX_EVENTS]:
        e = li.ent
        d = {"file": li.src.name, "line": e.ev.line,
             "time": ctx.time(e.ts) if e.ts is not None else None,
             "kind": e.ev.kind, "text": e.ev.raw[:1000], "message": e.ev.text[:1000],
             "tunnel": li.tunnel,
             "ike_sa": li.ike_sa, "direction": e.ev.direction,
             "contradicts": (li.src.name, e.ev.line) in contra}
        refs[id(e)] = d
        res.append(d)
    return res


def _tunnel_facts(linked, findings) -> dict:
    """What the logs say per tunnel, for a verdict that wants it (not used by the verdict
    today): the failure kinds logged, whether the daemon gave up, and contradictions."""
    out: dict = {}
    for li in linked:
        if li.tunnel is None or li.ent.ev.kind is None:
            continue
        t = out.setdefault(li.tunnel, {"failures": [], "gave_up": False, "established": False})
        k = li.ent.ev.kind
        if k in FAILURE_KINDS and k not in t["failures"]:
            t["failures"].append(k)
        if k == "give_up":
            t["gave_up"] = True
        if k in ("ike_established", "child_established", "tunnel_up") or (
                k == "wg_handshake" and li.ent.ev.response):  # a WireGuard handshake completed
            t["established"] = True
    for f in findings:
        if f.code == "LOG_CONTRADICTION" and f.tunnel in out:
            out[f.tunnel].setdefault("contradictions", []).append(f.id)
    return out
