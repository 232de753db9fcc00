"""NAT traversal: NAT keepalives and the NAT-D verdict of each IKE SA.

Two things live here:

* :class:`KeepaliveTracker` — the sink for RFC 3948 §2.3 NAT-keepalives (a one-byte 0xFF UDP
  payload on port 4500).  Per direction (src, sport → dst, dport) it keeps a count, first/last
  time, interval statistics in bounded memory (running min/max/sum and a log-scale histogram for
  the median), the longest gaps and a sample of frames.
* :func:`nat_verdict` — recomputes the NAT detection hashes of an IKE SA against the addresses
  and ports observed *at the capture point* and says who is behind a NAT, where the capture point
  sits, whether the NAT-D mismatch looks forced (no translation visible), whether and when IKE
  moved from UDP 500 to 4500, and whether a peer's source address/port changed during the SA.
  :func:`annotate` puts the verdict on ``sa.nat`` for every IKE SA.

NAT-D hashes
------------
IKEv2 (RFC 7296 §2.23): NAT_DETECTION_SOURCE_IP (16388) and NAT_DETECTION_DESTINATION_IP (16389)
notifies in IKE_SA_INIT carry SHA-1(SPIi | SPIr | IP address | port), the SPIs in the order they
appear in the header — so SPIr is zero in the request.  A sender may include several SOURCE_IP
notifies (multi-homed).

IKEv1 (RFC 3947 §3.2): NAT-D payloads (20; 130 in draft-ietf-ipsec-nat-t-ike-02/03) in Main
Mode messages 3 and 4, Aggressive Mode messages 2 and 3, carry HASH(CKY-I | CKY-R | IP | Port)
with the negotiated phase-1 hash algorithm.  The first NAT-D payload is the remote (destination)
hash, the following ones the local (source) hashes.  After NAT is detected both peers move to
port 4500 (RFC 3947 §4: from Main Mode message 5 / Aggressive Mode message 3 on).

Reading the four hashes from one vantage point
----------------------------------------------
Write P for the capture point.  For the initiator I and the responder R:

* I's source hash ≠ what P sees as I's source → a NAT translates I between I and P
  ("initiator behind NAT", P outside that NAT);
* R's destination hash ≠ what P sees as the response's destination → R saw I at another address:
  a NAT translates I between P and R, so P is *inside* I's NAT;
* symmetrically R's source hash (R behind NAT, P outside) and I's destination hash (P inside R's
  NAT, the initiator addressed R's public address).

A side whose source hash matches *no* address or port observed for the SA while no translation
is visible (standard ports 500/4500, the same 4-tuple both ways) is reported as *forced
encapsulation (inferred)*: strongSwan ``encap = yes`` and kernel-libipsec put a fake source hash
in NAT_DETECTION_SOURCE_IP to make the peers use UDP encapsulation (both peers then log "remote
host is behind NAT" although there is no NAT).  From one vantage point this cannot be told apart
from a 1:1 NAT that keeps the ports; it is marked inferred.  A side seen untranslated (the
capture point is inside its NAT: the peer's destination hash for it mismatches) whose source hash
still matches nothing fakes it as well (kernel-libipsec behind a real NAT).  Only when both sides
would be "inside" (all four hashes mismatch) is the SA ``inconsistent``: the capture point cannot
be inside both NATs.

Only plain data goes on ``sa.nat`` (:class:`NatVerdict`): it is serialised to JSON.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field

from dissect.vpn.ip import Port
from dissect.vpn.registry import ExchangeType, IkeAttrV1, NotifyV2

# IKEv1 hash algorithm attribute values (RFC 2409 Appendix A; SHA2: RFC 4868 §4 / IANA) as hashlib
# names
V1_HASH_ALGS = {1: "md5", 2: "sha1", 4: "sha256", 5: "sha384", 6: "sha512"}
V1_HASH_BY_LEN = {16: "md5", 20: "sha1", 32: "sha256", 48: "sha384", 64: "sha512"}
HASH_NAMES = {"md5": "MD5", "sha1": "SHA1", "sha256": "SHA2-256", "sha384": "SHA2-384",
              "sha512": "SHA2-512"}

STANDARD_PORTS = (Port.IKE, Port.NAT_T)
_ZERO_SPI = b"\x00" * 8

#: endpoint changes kept per IKE SA (all are counted)
MAX_CHANGES = 32
#: addresses tried as the origin of a mismatching NAT-D hash (per SA)
MAX_CANDIDATE_ADDRS = 64
#: ports tried per address (the standard ones, then those the SA was seen on)
MAX_CANDIDATE_PORTS = 8


# ----------------------------------------------------------------------------------------------
# NAT keepalives (RFC 3948 §2.3)
# ----------------------------------------------------------------------------------------------

#: histogram bins are 2 % wide: the median is the mean of the intervals in its bin
_BIN_BASE = math.log(1.02)


class KeepaliveFlow:
    """NAT-keepalives in one direction (src, sport → dst, dport).

    Memory is bounded whatever the capture length: running statistics, a histogram of at most a
    few hundred bins, at most ``MAX_LONG_GAPS`` long gaps and ``SAMPLE`` frames at each end.
    Copies closer than ``duplicate_window`` to the previous keepalive (a mirror port seeing the
    packet twice) are counted in ``duplicates`` and do not make an interval.
    """

    SAMPLE = 10
    MAX_LONG_GAPS = 32

    __slots__ = ("ipver", "src", "dst", "sport", "dport", "count", "duplicates", "first_ts",
                 "last_ts", "first_ref", "last_ref", "min_interval", "max_interval",
                 "_sum", "_n", "_bins", "max_gap", "long_gaps", "long_gaps_total",
                 "_first_refs", "_last_refs")

    def __init__(self, ipver, src, sport, dst, dport):
        self.ipver = ipver
        self.src = src
        self.sport = sport
        self.dst = dst
        self.dport = dport
        self.count = 0
        self.duplicates = 0
        self.first_ts = None
        self.last_ts = None
        self.first_ref = None
        self.last_ref = None
        self.min_interval = None
        self.max_interval = None
        self._sum = 0.0
        self._n = 0
        # what follows is made on first use (a flood keeps thousands of flows with one
        # keepalive each: an empty dict costs 64 bytes, a list 56, a deque 624)
        #: bin -> [count, sum] (None before the first interval)
        self._bins: dict | None = None
        #: the longest interval: (seconds, start ts, end ts, ref before, ref after)
        self.max_gap = None
        #: intervals longer than keepalive_max_interval: (start ts, end ts, ref before, ref
        #: after); the shared empty tuple until the first, then a list
        self.long_gaps: list | tuple = ()
        self.long_gaps_total = 0
        #: the first SAMPLE frames (a tuple: one keepalive costs 48 bytes, not 88), and the
        #: last SAMPLE after them (a deque made at the first one, None before)
        self._first_refs: tuple = ()
        self._last_refs: deque | None = None

    def add(self, ref, ts, duplicate_window, long_gap):
        last = self.last_ts
        if last is not None:
            d = ts - last
            if 0 <= d < duplicate_window:
                self.duplicates += 1
                return
            if d < 0:  # out of order in a merged capture: count, no interval
                d = None
            if d is not None:
                self._interval(d, last, ts, self.last_ref, ref, long_gap)
        else:
            self.first_ts = ts
            self.first_ref = ref
        self.count += 1
        if last is None or ts >= last:
            self.last_ts = ts
            self.last_ref = ref
        if len(self._first_refs) < self.SAMPLE:
            self._first_refs += (ref,)
        else:
            if self._last_refs is None:
                self._last_refs = deque(maxlen=self.SAMPLE)
            self._last_refs.append(ref)

    def _interval(self, d, start, end, ref0, ref1, long_gap):
        self._n += 1
        self._sum += d
        if self.min_interval is None or d < self.min_interval:
            self.min_interval = d
        if self.max_interval is None or d > self.max_interval:
            self.max_interval = d
            self.max_gap = (d, start, end, ref0, ref1)
        b = int(math.floor(math.log(d) / _BIN_BASE)) if d > 1e-6 else -10 ** 6
        if self._bins is None:
            self._bins = {}
        cell = self._bins.get(b)
        if cell is None:
            self._bins[b] = [1, d]
        else:
            cell[0] += 1
            cell[1] += d
        if d > long_gap:
            self.long_gaps_total += 1
            if len(self.long_gaps) < self.MAX_LONG_GAPS:
                if not self.long_gaps:
                    self.long_gaps = []
                self.long_gaps.append((start, end, ref0, ref1))

    # -- views ---------------------------------------------------------------------------------

    @property
    def intervals(self) -> int:
        return self._n

    @property
    def mean_interval(self):
        return self._sum / self._n if self._n else None

    @property
    def median_interval(self):
        """Median interval (exact when the middle intervals share a 2 %-wide bin, else within
        2 %)."""
        n = self._n
        if not n or self._bins is None:
            return None
        half = (n + 1) / 2
        seen = 0
        for b in sorted(self._bins):
            c, s = self._bins[b]
            seen += c
            if seen >= half:
                return s / c
        return None  # pragma: no cover

    @property
    def refs(self) -> list:
        """A sample of the frames: the first ``SAMPLE`` and the last ``SAMPLE``."""
        if self._last_refs is None:
            return list(self._first_refs)
        return list(self._first_refs) + [r for r in self._last_refs if r not in self._first_refs]

    def to_dict(self) -> dict:
        def r3(x):
            return None if x is None else round(x, 6)

        return {
            "src": _addr(self.src), "sport": self.sport, "dst": _addr(self.dst),
            "dport": self.dport, "count": self.count, "duplicates": self.duplicates,
            "first_ts": self.first_ts, "last_ts": self.last_ts,
            "interval_min": r3(self.min_interval), "interval_median": r3(self.median_interval),
            "interval_max": r3(self.max_interval), "interval_mean": r3(self.mean_interval),
            "long_gaps": [{"start": s, "end": e, "frames": [list(a), list(b)]}
                          for s, e, a, b in self.long_gaps],
            "long_gaps_total": self.long_gaps_total,
            "frames": [list(r) for r in self.refs],
        }

    def __repr__(self):
        return (f"KeepaliveFlow({_addr(self.src)}:{self.sport} -> {_addr(self.dst)}:{self.dport}, "
                f"count={self.count}, median={self.median_interval})")


class KeepaliveTracker:
    """Sink for ``keepalive`` events; one :class:`KeepaliveFlow` per direction."""

    MAX_FLOWS = 100000
    #: live (``Tracker.evict_least_recent``): at ``MAX_FLOWS`` the least recently active flow
    #: is forgotten for a new one (``evicted``) instead of the new one's keepalives counted
    #: in ``dropped``
    lru = False

    def __init__(self, thresholds):
        self.th = thresholds
        self._flows: OrderedDict = OrderedDict()  # live: least recently active first
        self.count = 0  # every keepalive seen (duplicates and dropped included)
        self.dropped = 0  # keepalives of flows beyond MAX_FLOWS
        self.evicted = 0  # flows forgotten at MAX_FLOWS (live)

    def keepalive(self, ref, ts, ipver, src, dst, sport, dport):
        self.count += 1
        key = (src, sport, dst, dport)
        flows = self._flows
        f = flows.get(key)
        if f is None:
            if len(flows) >= self.MAX_FLOWS:
                if not self.lru:
                    self.dropped += 1
                    return
                flows.popitem(last=False)
                self.evicted += 1
            f = flows[key] = KeepaliveFlow(ipver, src, sport, dst, dport)
        elif self.lru:
            flows.move_to_end(key)
        f.add(ref, ts, self.th.duplicate_window, self.th.keepalive_max_interval)

    def flows(self) -> list:
        return sorted(self._flows.values(), key=lambda f: (f.first_ts or 0.0))

    def expire(self, now: float, idle: float) -> int:
        """Forget keepalive flows silent for ``idle`` seconds before ``now`` (live mode:
        ``pcapvpn.live``).  Returns the number removed."""
        old = [k for k, f in self._flows.items() if f.last_ts is not None and f.last_ts < now - idle]
        for k in old:
            del self._flows[k]
        return len(old)


# ----------------------------------------------------------------------------------------------
# NAT-D verdict
# ----------------------------------------------------------------------------------------------


@dataclass
class NatVerdict:
    """What the NAT-D hashes and the ports of one IKE SA say (plain data, JSON-ready).

    ``kind``: ``none`` (hashes match: no NAT between the peers), ``initiator`` / ``responder`` /
    ``both`` (real NAT in front of that side: a translation is visible, or the capture point is
    inside the NAT), ``forced`` (a source hash matches no observed address/port while no
    translation is visible: forced UDP encapsulation, inferred), ``inconsistent`` (every
    hash mismatches: the hashes were not computed over the addresses seen here), ``unknown``
    (no NAT-D seen: NAT-T not offered, or the capture started later).

    ``initiator`` / ``responder``: per side ``none`` | ``nat`` (behind a NAT, capture point
    outside it) | ``inside`` (behind a NAT, capture point between it and the NAT) | ``forced``
    | ``inconsistent`` | None (not known).  ``inconsistent``: both sides would be ``inside``
    (every hash mismatches), which no placement of the capture point explains.

    ``capture_point``: ``outside`` (not inside any NAT seen) | ``inside_initiator_nat`` |
    ``inside_responder_nat`` | ``unknown``.

    ``hashes``: ``initiator_src``, ``initiator_dst`` (the request / the initiator's message),
    ``responder_src``, ``responder_dst`` → ``match`` | ``mismatch`` | ``other`` (matches another
    address/port seen for this SA: the translation is in the capture) | None (not seen).
    ``translated_from``: side → ``addr:port`` such an ``other`` hash matched.
    ``ports``: side → the UDP source port of that side's NAT-D message as seen here.
    ``fake_source``: sides the capture point sees untranslated (it is inside their NAT) whose
    source hash nevertheless matches nothing: they fake it (forced encapsulation, inferred) —
    kernel-libipsec does this behind a real NAT too.
    ``keepalive_sides``: sides whose hashes and ports alone would read as forced encapsulation
    but that send NAT keepalives (RFC 3948 §2.3): behind a NAT that keeps their ports.

    ``start_port``: the responder's port of the first message; ``floated``: IKE moved from 500
    to 4500 (``float_ts``, ``float_frame`` [file index, frame number], ``float_exchange``);
    ``transports``: ``udp`` / ``tcp`` (RFC 9329) seen.  ``after_natd_on_500``: messages after
    the NAT-D exchange that still use port 500 (``after_natd_on_500_frames``: a sample) and
    ``after_natd``: all messages after it.

    ``endpoint_changes``: a peer's source address/port changed within the SA (outside the
    500→4500 move): {ts, frame, side, transport, old, new, exchange}; ``endpoint_changes_total``
    counts all.  ``notes``: remarks (hash algorithm inferred from the hash length, ...).
    ``messages_seen``: the SA's message count when this was computed.
    """

    kind: str = "unknown"
    basis: str = "observed"
    initiator: str | None = None
    responder: str | None = None
    capture_point: str = "unknown"
    hash_alg: str | None = None
    hashes: dict = field(default_factory=lambda: {
        "initiator_src": None, "initiator_dst": None,
        "responder_src": None, "responder_dst": None})
    translated_from: dict = field(default_factory=dict)
    fake_source: list = field(default_factory=list)
    keepalive_sides: list = field(default_factory=list)
    ports: dict = field(default_factory=dict)
    nat_d_frames: list = field(default_factory=list)
    nat_d_ts: float | None = None
    start_port: int | None = None
    floated: bool = False
    float_ts: float | None = None
    float_frame: list | None = None
    float_exchange: int | None = None
    transports: list = field(default_factory=list)
    after_natd: int = 0
    after_natd_on_500: int = 0
    after_natd_on_500_frames: list = field(default_factory=list)
    endpoint_changes: list = field(default_factory=list)
    endpoint_changes_total: int = 0
    notes: list = field(default_factory=list)
    messages_seen: int = 0

    # -- convenience for rules -----------------------------------------------------------------

    @property
    def nat_sides(self) -> list[str]:
        """Sides behind a real NAT (``nat`` or ``inside``)."""
        return [s for s in ("initiator", "responder")
                if getattr(self, s) in ("nat", "inside")]

    @property
    def forced_sides(self) -> list[str]:
        """Sides that fake their source hash (forced encapsulation, inferred)."""
        return [s for s in ("initiator", "responder")
                if getattr(self, s) == "forced" or s in self.fake_source]

    @property
    def detected(self) -> bool:
        """The peers see a NAT-D mismatch (real NAT or forced): RFC 7296 §2.23 / RFC 3947 §4
        then require UDP encapsulation."""
        return bool(self.nat_sides or self.forced_sides)

    def to_dict(self) -> dict:
        return asdict(self)


def _addr(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def _ep_text(addr: bytes, port: int) -> str:
    a = _addr(addr)
    return f"[{a}]:{port}" if len(addr) == 16 else f"{a}:{port}"


def natd_hash(alg: str, ispi: bytes, rspi: bytes, addr: bytes, port: int) -> bytes:
    """HASH(SPIi | SPIr | IP | port): RFC 7296 §2.23 (SHA-1) / RFC 3947 §3.2 (negotiated)."""
    return hashlib.new(alg, bytes(ispi) + bytes(rspi) + bytes(addr)
                       + (port & 0xFFFF).to_bytes(2, "big")).digest()


def _v1_hash_alg(sa) -> tuple[str | None, str | None]:
    """The phase-1 hash algorithm: the responder's chosen transform (attribute 2), else the
    initiator's when all its transforms agree.  Returns (alg, note)."""
    resp = init = None
    for m in sa.messages:
        if m.exch not in (ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE) or not m.proposals:
            continue
        if m.is_response and resp is None:
            resp = m.proposals
        elif not m.is_response and init is None:
            init = m.proposals
    for props, who in ((resp, "responder's chosen"), (init, "initiator's")):
        if not props:
            continue
        values = set()
        for p in props:
            for t in p.transforms:
                values.add(t.attr(IkeAttrV1.HASH_ALGORITHM))
        values.discard(None)
        if len(values) == 1:
            v = values.pop()
            alg = V1_HASH_ALGS.get(v)
            if alg is None:
                return None, f"phase-1 hash algorithm {v} ({who} proposal) is not supported here"
            return alg, None
        if who.startswith("responder"):
            break  # a response with several transforms is malformed: fall back to the length
    return None, None


class _Hashes:
    """The NAT-D payloads of one message, split into source and destination hashes."""

    __slots__ = ("msg", "src", "dst")

    def __init__(self, msg, version):
        self.msg = msg
        if version == 2:
            self.src = [d for t, d in msg.nat_d if t == NotifyV2.NAT_DETECTION_SOURCE_IP]
            self.dst = [d for t, d in msg.nat_d if t == NotifyV2.NAT_DETECTION_DESTINATION_IP]
        else:
            # RFC 3947 §3.2: the first NAT-D is the remote end's, the others the local ones
            self.dst = [msg.nat_d[0][1]] if msg.nat_d else []
            self.src = [d for _t, d in msg.nat_d[1:]]


def _pick_v2(sa):
    """(request, response) IKE_SA_INIT messages carrying NAT-D: the response with both SPIs and
    the request it answers (a COOKIE / INVALID_KE retry is a later exchange of the same SA)."""
    req = resp = None
    for x in sa.exchanges:
        if x.exch != ExchangeType.IKE_SA_INIT:
            continue
        rq = [m for m in x.msgs if not m.is_response and not m.copy and m.nat_d]
        rs = [m for m in x.msgs if m.is_response and not m.copy and m.nat_d
              and bytes(m.rspi) != _ZERO_SPI]
        if rs:
            resp = rs[0]
            # the request on the same path as the response (a capture merged from both sides of
            # a NAT holds the request twice, before and after the translation)
            back = (resp.dst, resp.dport, resp.src, resp.sport)
            same = [m for m in rq if (m.src, m.sport, m.dst, m.dport) == back]
            req = (same or rq or [req])[-1]
        elif rq and resp is None:
            req = rq[-1]
    if req is None and resp is None:
        # an IKE_SA_INIT first seen as a copy (e.g. the capture missed the original)
        for m in sa.messages:
            if m.exch == ExchangeType.IKE_SA_INIT and m.nat_d:
                if m.is_response and resp is None and bytes(m.rspi) != _ZERO_SPI:
                    resp = m
                elif not m.is_response and req is None:
                    req = m
    return req, resp


def _pick_v1(sa):
    """(initiator's, responder's) phase-1 messages carrying NAT-D (MM3/MM4, AM3/AM2)."""
    req = resp = None
    for m in sa.messages:
        if m.exch not in (ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE) or not m.nat_d or m.copy:
            continue
        if m.is_response:
            resp = resp or m
        else:
            req = req or m
    return req, resp


def _sender_is_initiator(sa, m) -> bool | None:
    if m.version == 2:
        return bool(m.from_initiator)
    ini = sa.initiator[1] if sa.initiator else None
    rsp = sa.responder[1] if sa.responder else None
    if ini is not None and (m.src, m.sport) == (ini, sa.initiator[2]):
        return True
    if rsp is not None and (m.src, m.sport) == (rsp, sa.responder[2]):
        return False
    if rsp is not None and m.dst == rsp and m.src != rsp:
        return True
    if ini is not None and m.dst == ini and m.src != ini:
        return False
    if rsp is not None and m.src == rsp:
        return False
    if ini is not None and m.src == ini:
        return True
    return None


def _server_port(m, from_initiator) -> int:
    """The responder's port of a message: UDP 500 or 4500 normally."""
    if from_initiator is None:
        return Port.NAT_T if Port.NAT_T in (m.sport, m.dport) else m.dport
    return m.dport if from_initiator else m.sport


def _port_class(sa, m, from_initiator):
    """The role of a UDP message's ports: ``Port.NAT_T`` (where IKE goes once NAT traversal
    starts, RFC 3948 framing) or ``Port.IKE``.  The responder's port tells on 500/4500.  On
    other ports (strongSwan ``port``/``port_nat_t``, libreswan ``ikeport``, a FortiGate's
    ``ike-port``) the non-ESP marker does, except in the exchange that carries NAT-D: strongSwan
    puts the marker on every message sent from a port other than 500, IKE_SA_INIT included,
    and then moves to its ``port_nat_t`` as on 4500 (RFC 7296 §2.23)."""
    port = _server_port(m, from_initiator)
    if port in STANDARD_PORTS:
        return port
    return _custom_role(sa, m)


def _custom_role(sa, m):
    """The role of custom UDP ports for ``m``: ``Port.NAT_T`` after a non-ESP marker outside
    the NAT-D exchange, else ``Port.IKE`` (see :func:`_port_class`)."""
    return Port.NAT_T if m.encap and not _is_natd_phase(sa, m) else Port.IKE


def on_custom_ports(m) -> bool:
    """``m`` is UDP with neither 500 nor 4500 on either side (custom IKE / NAT-T ports; a NAT's
    remapped port meets 500/4500 on the other side)."""
    return m.transport == "udp" and m.sport not in STANDARD_PORTS and \
        m.dport not in STANDARD_PORTS


def port_role(sa, m):
    """``Port.NAT_T`` or ``Port.IKE``: the role of the ports ``m`` used (4500 or 500 on either
    side; on custom UDP ports :func:`_custom_role`); None for TCP on other ports."""
    if Port.NAT_T in (m.sport, m.dport):
        return Port.NAT_T
    if Port.IKE in (m.sport, m.dport):
        return Port.IKE
    if m.transport != "udp":
        return None
    return _custom_role(sa, m)


def on_nat_t(sa, m) -> bool:
    """``m`` went where IKE goes once NAT traversal starts (RFC 7296 §2.23, RFC 3948): UDP 4500,
    or on custom ports a message after a non-ESP marker outside the NAT-D exchange."""
    return m.transport == "udp" and port_role(sa, m) == Port.NAT_T


def nat_verdict(sa, extra_addrs=(), keepalives=frozenset()) -> NatVerdict:
    """Recompute the NAT-D hashes of ``sa`` (an :class:`pcapvpn.track.ike_sa.IkeSA`) against the
    observed addresses and ports, and follow its ports over time.  ``extra_addrs``: more packed
    addresses seen in the capture (other SAs) tried as the source of a mismatching hash, so a
    capture holding both sides of a NAT shows the translation.  ``keepalives``: the (src, dst)
    address pairs that carried NAT keepalives (a side whose hashes alone cannot tell a NAT from
    forced encapsulation but that sends them is behind a NAT)."""
    v = NatVerdict(messages_seen=len(sa.messages))
    _ports_over_time(sa, v)
    if sa.version == 2:
        req, resp = _pick_v2(sa)
        alg = "sha1"
    else:
        req, resp = _pick_v1(sa)
        alg, note = _v1_hash_alg(sa)
        if note:
            v.notes.append(note)
        if alg is None:
            sample = next((d for m in (req, resp) if m is not None for _t, d in m.nat_d), None)
            if sample is not None:
                alg = V1_HASH_BY_LEN.get(len(sample))
                if alg is not None:
                    v.notes.append(f"phase-1 hash algorithm not seen: {HASH_NAMES[alg]} inferred "
                                   f"from the {len(sample)}-byte NAT-D hash")
        else:
            sample = next((d for m in (req, resp) if m is not None for _t, d in m.nat_d), None)
            if sample is not None and len(sample) != hashlib.new(alg).digest_size:
                alt = V1_HASH_BY_LEN.get(len(sample))
                v.notes.append(f"NAT-D hash is {len(sample)} bytes, not {HASH_NAMES[alg]}"
                               + (f": {HASH_NAMES[alt]} used instead" if alt else ""))
                alg = alt
    if req is None and resp is None:
        return v
    if alg is None:
        v.notes.append("NAT-D hash algorithm unknown: hashes not recomputed")
        return v
    v.hash_alg = alg
    cands = _candidates(sa, extra_addrs)
    i_src = i_dst = r_src = r_dst = None
    last = None
    port0 = set()  # sides whose source hash is over their own address and port 0
    for m, is_req in ((req, True), (resp, False)):
        if m is None:
            continue
        h = _Hashes(m, sa.version)
        v.nat_d_frames.extend([list(r) for r in m.frames])
        last = m.ts if last is None or m.ts > last else last
        src_state, src_other = _check(alg, m, h.src, m.src, m.sport, cands)
        dst_state, dst_other = _check(alg, m, h.dst, m.dst, m.dport, cands)
        side = "initiator" if is_req else "responder"
        peer = "responder" if is_req else "initiator"
        if src_state == "mismatch" and natd_hash(alg, m.ispi, m.rspi, m.src, 0) in h.src:
            # libreswan encapsulation=yes hashes its address with port 0 (it also sends NAT
            # keepalives then, NAT or not)
            port0.add(side)
            if dst_state == "mismatch" and natd_hash(alg, m.ispi, m.rspi, m.dst, 0) in h.dst:
                dst_state = "match"  # IKEv1: the peer's hash with port 0 too (same option)
        v.ports[side] = m.sport
        if src_other:
            v.translated_from[side] = src_other
        if dst_other:
            v.translated_from[peer] = dst_other
        if is_req:
            i_src, i_dst = src_state, dst_state
        else:
            r_src, r_dst = src_state, dst_state
    v.nat_d_ts = last
    v.hashes = {"initiator_src": i_src, "initiator_dst": i_dst,
                "responder_src": r_src, "responder_dst": r_dst}
    # the observed 4-tuple must be the same both ways for "no translation visible"
    same_tuple = True
    if req is not None and resp is not None:
        same_tuple = (resp.dst, resp.dport, resp.src, resp.sport) == \
            (req.src, req.sport, req.dst, req.dport)
    ends = {"initiator": req.src if req is not None else resp.dst,
            "responder": resp.src if resp is not None else req.dst}
    v.initiator = _side_state(sa, v, "initiator", i_src, r_dst, same_tuple,
                              (ends["initiator"], ends["responder"]) in keepalives,
                              "initiator" in port0)
    v.responder = _side_state(sa, v, "responder", r_src, i_dst, same_tuple,
                              (ends["responder"], ends["initiator"]) in keepalives,
                              "responder" in port0)
    _summarise(v)
    return v


def note_endpoint(sa, ep, n) -> None:
    """Keep endpoint ``ep`` ``(src, sport, dst, dport, transport)``, first met in message ``n``,
    in ``sa.endpoints`` if the NAT verdict can read it: :func:`_candidates` and :func:`annotate`
    read the first ``MAX_CANDIDATE_ADDRS`` addresses and the first ports beside the standard
    ones (``MAX_CANDIDATE_PORTS`` in all) in the order met, so an endpoint that brings neither a
    new address nor a new port while there is room changes nothing and is not kept.  An IKE SA
    flooded from thousands of ports (mutated packets, live) then holds at most
    ``MAX_CANDIDATE_ADDRS + MAX_CANDIDATE_PORTS`` endpoints; the verdict is the same."""
    seen = sa._ep_seen
    if seen is None:
        seen = sa._ep_seen = (set(), set())
    addrs, ports = seen
    src, sport, dst, dport, _tr = ep
    keep = False
    for a in (src, dst):
        if a not in addrs and len(addrs) < MAX_CANDIDATE_ADDRS:
            addrs.add(a)
            keep = True
    for p in (sport, dport):
        if p not in ports and p >= 0 and p not in STANDARD_PORTS and \
                len(ports) < MAX_CANDIDATE_PORTS - len(STANDARD_PORTS):
            ports.add(p)
            keep = True
    if keep:
        sa.endpoints[ep] = n


def _candidates(sa, extra_addrs=()) -> list[tuple[bytes, int]]:
    """Every (address, port) combination seen for the SA (addresses: plus ``extra_addrs``),
    with the ports seen for it and the standard ports: at most ``MAX_CANDIDATE_ADDRS``
    addresses and ``MAX_CANDIDATE_PORTS`` ports, in the order met (each is hashed against the
    NAT-D payloads: an SA whose messages come from thousands of endpoints — a flood of mutated
    packets — must not cost millions of hashes)."""
    addrs = []
    seen_a = set()
    ports = list(STANDARD_PORTS)
    seen_p = set(ports)
    for (src, sport, dst, dport, _tr) in sa.endpoints:
        for a in (src, dst):
            if a not in seen_a and len(addrs) < MAX_CANDIDATE_ADDRS:
                seen_a.add(a)
                addrs.append(a)
        for p in (sport, dport):
            if p not in seen_p and p >= 0 and len(ports) < MAX_CANDIDATE_PORTS:
                seen_p.add(p)
                ports.append(p)
    for a in extra_addrs:
        if a not in seen_a and len(addrs) < MAX_CANDIDATE_ADDRS:
            seen_a.add(a)
            addrs.append(a)
    return [(a, p) for a in addrs for p in ports]


def _check(alg, m, hashes, addr, port, cands):
    """("match" | "mismatch" | "other" | None, the other endpoint text)."""
    if not hashes:
        return None, None
    want = natd_hash(alg, m.ispi, m.rspi, addr, port)
    if want in hashes:
        return "match", None
    for a, p in cands:
        if (a, p) == (addr, port):
            continue
        if natd_hash(alg, m.ispi, m.rspi, a, p) in hashes:
            return "other", _ep_text(a, p)
    return "mismatch", None


def _side_state(sa, v, side, own_src, peer_dst, same_tuple, keepalives=False, port0=False):
    """One side's state from its own source hash and the peer's destination hash for it
    (``keepalives``: the side sent NAT keepalives to its peer; ``port0``: its source hash is
    over the address seen here and port 0, libreswan's ``encapsulation=yes``)."""
    if own_src is None and peer_dst is None:
        return None
    src_bad = own_src in ("mismatch", "other")
    dst_bad = peer_dst in ("mismatch", "other")
    if dst_bad:
        if src_bad and own_src == "mismatch":
            # the capture point sees the side's own address (it is inside the side's NAT), yet
            # the side's source hash matches nothing: the side fakes it (forced encapsulation)
            v.fake_source.append(side)
        return "inside"
    if not src_bad:
        return "none"
    if port0:
        # the address is the one seen here: nothing translated it; libreswan forces NAT-T
        v.notes.append(f"the {side}'s source hash is over its address as seen here and port 0: "
                       f"libreswan's encapsulation=yes (forced encapsulation, not a NAT; "
                       f"libreswan then sends NAT keepalives too)")
        return "forced"
    # the side's own address/port differs from what the capture point sees
    if own_src == "other":
        return "nat"  # the translation itself is in the capture
    if port_translated(v, side):
        return "nat"  # NAPT: the port was translated
    if not same_tuple:
        return "nat"
    if _nonstandard_after_float(sa, side):
        return "nat"
    if keepalives:
        # RFC 3948 §2.3: a host sends NAT keepalives when it finds itself behind a NAT (its
        # peer's destination hash for it does not match its own address): a NAT that keeps the
        # ports looks like forced encapsulation from outside it, but the side knows better
        v.keepalive_sides.append(side)
        return "nat"
    return "forced"


def port_translated(v, side) -> bool:
    """The side's source port in the NAT-D exchange reads as translated: neither 500/4500 nor
    the peer's own port (two gateways configured with the same custom IKE port use it on both
    sides)."""
    port = v.ports.get(side)
    return port is not None and port not in STANDARD_PORTS and \
        port != v.ports.get("responder" if side == "initiator" else "initiator")


def _nonstandard_after_float(sa, side) -> bool:
    """After the move to 4500 the side's source port is not 4500 (the NAT mapped it)."""
    for m in sa.messages:
        ini = _sender_is_initiator(sa, m)
        if ini is None or (side == "initiator") != ini or m.transport != "udp":
            continue
        if _server_port(m, ini) == Port.NAT_T and m.sport != Port.NAT_T:
            return True
    return False


def _summarise(v: NatVerdict) -> None:
    sides = {"initiator": v.initiator, "responder": v.responder}
    if sides["initiator"] == "inside" and sides["responder"] == "inside":
        # the capture point cannot be inside both NATs: every hash mismatches
        v.initiator = v.responder = "inconsistent"
        v.fake_source = []
        sides = {"initiator": "inconsistent", "responder": "inconsistent"}
    if "inconsistent" in sides.values():
        v.kind = "inconsistent"
        v.basis = "observed"
        v.capture_point = "unknown"
        v.notes.append("NAT-D hashes match none of the addresses seen here in a way no NAT "
                       "placement explains (rewritten capture, or an implementation hashing "
                       "something else)")
        return
    real = [s for s, st in sides.items() if st in ("nat", "inside")]
    forced = v.forced_sides
    if sides["initiator"] == "inside":
        v.capture_point = "inside_initiator_nat"
    elif sides["responder"] == "inside":
        v.capture_point = "inside_responder_nat"
    elif any(st is not None for st in sides.values()):
        v.capture_point = "outside"
    if real:
        v.kind = "both" if len(real) == 2 else real[0]
        v.basis = "observed"
        for side in forced:
            v.notes.append(f"the {side}'s source hash matches no address or port seen and "
                           f"nothing between it and the capture point translates it: forced "
                           f"encapsulation (inferred)")
    elif forced:
        v.kind = "forced"
        v.basis = "inferred"
    elif any(st == "none" for st in sides.values()):
        v.kind = "none"
        v.basis = "observed"


def _ports_over_time(sa, v: NatVerdict) -> None:
    """The 500→4500 float, messages left on 500 after NAT-D, and source changes per side."""
    prev_port = None
    prev_ports: set = set()
    transports = []
    last_src: dict = {}  # (side, transport, port class) -> (addr, port)
    natd_done = None  # n of the last message of the NAT-D exchange
    for m in sa.messages:
        if m.nat_d and (m.exch in (ExchangeType.IKE_SA_INIT, ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE)):
            natd_done = m.n if natd_done is None or m.n > natd_done else natd_done
    for m in sa.messages:
        if m.transport not in transports:
            transports.append(m.transport)
        ini = _sender_is_initiator(sa, m)
        port = _server_port(m, ini) if m.transport == "udp" else None
        if v.start_port is None:
            v.start_port = port if port is not None else m.dport
        role = _port_class(sa, m, ini) if port is not None else None
        # on custom ports the move is a change of ports (on 500/4500: of the port's role)
        moved = port in STANDARD_PORTS or prev_ports != {m.sport, m.dport}
        if role == Port.NAT_T and prev_port == Port.IKE and moved and not v.floated:
            v.floated = True
            v.float_ts = m.ts
            v.float_frame = list(m.ref)
            v.float_exchange = m.exch
        if role is not None:
            prev_port = role
            prev_ports = {m.sport, m.dport}
        if natd_done is not None and m.n > natd_done and not _is_natd_phase(sa, m):
            v.after_natd += 1
            if port == Port.IKE:
                v.after_natd_on_500 += 1
                if len(v.after_natd_on_500_frames) < 20:
                    v.after_natd_on_500_frames.append(list(m.ref))
        if ini is None or m.duplicate_of is not None:
            continue
        side = "initiator" if ini else "responder"
        pclass = role if role is not None else "other"
        key = (side, m.transport, pclass)
        cur = (m.src, m.sport)
        old = last_src.get(key)
        last_src[key] = cur
        if old is not None and old != cur:
            v.endpoint_changes_total += 1
            if len(v.endpoint_changes) < MAX_CHANGES:
                v.endpoint_changes.append({
                    "ts": m.ts, "frame": list(m.ref), "side": side, "transport": m.transport,
                    "old": _ep_text(*old), "new": _ep_text(*cur), "exchange": m.exch,
                    "old_addr": _addr(old[0]), "new_addr": _addr(cur[0]),
                    "old_port": old[1], "new_port": cur[1]})
    v.transports = transports


def _is_natd_phase(sa, m) -> bool:
    """Messages of the exchange that carries NAT-D (IKE_SA_INIT; IKEv1 MM1-4, AM1-2)."""
    if m.exch == ExchangeType.IKE_SA_INIT:
        return True
    if m.exch == ExchangeType.MAIN_MODE:
        return isinstance(m.step, int) and m.step <= 4
    if m.exch == ExchangeType.AGGRESSIVE:
        return isinstance(m.step, int) and m.step <= 2
    return False


def ensure_verdict(sa, extra_addrs=(), keepalives=None) -> NatVerdict:
    """``sa.nat``, computed now when missing or stale (new messages since, or NAT keepalives
    between its peers first seen since; ``keepalives`` None: those it was computed with)."""
    v = sa.nat
    if keepalives is None:
        ka = getattr(v, "_keepalives", frozenset())
    else:
        ka = _keepalives_of(sa, keepalives)
    if v is None or v.messages_seen != len(sa.messages) or getattr(v, "_keepalives", None) != ka:
        v = sa.nat = nat_verdict(sa, extra_addrs, ka)
        v._keepalives = ka  # not a field: not in the report
    return v


def _keepalives_of(sa, pairs) -> frozenset:
    """The pairs of ``pairs`` between the SA's two peers."""
    if not pairs or sa.initiator is None or sa.responder is None:
        return frozenset()
    a, b = sa.initiator[1], sa.responder[1]
    return frozenset(p for p in ((a, b), (b, a)) if p in pairs)


def annotate(ike_sas, keepalives=()) -> None:
    """Put a :class:`NatVerdict` on ``sa.nat`` for every IKE SA (end of capture / each live
    state).  The IKE addresses of all SAs are tried as origins of mismatching hashes;
    ``keepalives``: the NAT keepalive flows (their senders know they are behind a NAT)."""
    pairs = frozenset((f.src, f.dst) for f in keepalives)
    addrs: list = []
    seen = set()
    for sa in ike_sas:
        for (src, _sp, dst, _dp, _tr) in sa.endpoints:
            for a in (src, dst):
                if a not in seen and len(addrs) < MAX_CANDIDATE_ADDRS:
                    seen.add(a)
                    addrs.append(a)
    for sa in ike_sas:
        ensure_verdict(sa, addrs, pairs)
