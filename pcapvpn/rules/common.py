"""Helpers shared by the rules: evidence, times, Wireshark display filters, peer names."""

from __future__ import annotations

from functools import cached_property

from dissect.vpn.registry import (
    ExchangeType, IkeAttrV1, IpsecAttrV1, PayloadV2, ProtocolId, TransformType,
)
from pcapvpn.findings import Evidence, FrameRef, msg
from pcapvpn.model import Time, addr

#: evidence frames listed per finding (all are counted in the detail)
MAX_EVIDENCE_FRAMES = 200


def ip_text(packed: bytes) -> str:
    return addr(packed)


def endpoint_text(ep) -> str:
    """(ipver, addr, port) → ``192.0.2.1:500`` / ``[2001:db8::1]:500``."""
    if ep is None:
        return "?"
    ipver, a, port = ep
    s = ip_text(a)
    if ipver == 6:
        s = f"[{s}]"
    return f"{s}:{port}" if port is not None and port >= 0 else s


def ike_spis(sa) -> list[str]:
    """The initiator's and the responder's SPI of an IKE SA in hex (a finding's ``ike_spis``)."""
    return [bytes(sa.ispi).hex(), bytes(sa.rspi).hex()]


def set_filter(field: str, values) -> str:
    """``field == v`` or ``field in {a, b}`` (tshark 4.0 wants commas between set members); at
    most ``MAX_EVIDENCE_FRAMES`` values (the first ones: a filter stays pasteable)."""
    values = list(dict.fromkeys(values))[:MAX_EVIDENCE_FRAMES]
    if len(values) == 1:
        return f"{field} == {values[0]}"
    return f"{field} in {{" + ", ".join(str(v) for v in values) + "}"


def colon_hex(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in bytes(b))


def ike_filter(sa, msgids=None, exch=None) -> str:
    """Wireshark filter for the messages of an IKE SA (optionally some Message IDs)."""
    f = f"isakmp.ispi == {colon_hex(sa.ispi)}"
    if sa.rspi and any(sa.rspi) and not msgids:
        f += f" && (isakmp.rspi == {colon_hex(sa.rspi)} || isakmp.rspi == 00:00:00:00:00:00:00:00)"
    if msgids:
        f += " && " + set_filter("isakmp.messageid", sorted(set(msgids)))
    if exch is not None:
        f += f" && isakmp.exchangetype == {exch}"
    return f


def esp_filter(spis) -> str:
    return set_filter("esp.spi", [f"0x{s:08x}" for s in sorted(set(spis))])


def frames_filter(refs) -> str:
    """``frame.number in {...}`` (frame numbers of one file; several files: by each file's
    numbers, which Wireshark shows per file)."""
    nums = sorted({r[1] for r in refs})
    if not nums:
        return ""
    return set_filter("frame.number", nums[:MAX_EVIDENCE_FRAMES])


def time_filter(ctx, lo: float, hi: float, slack: float = 0.001) -> str:
    """Frames from capture time ``lo`` to ``hi`` (``slack`` seconds wider): by
    ``frame.time_relative``, which Wireshark counts from a file's first frame; by
    ``frame.time_epoch`` when a file is not in time order (its first frame need not be its
    earliest: CAPTURE_OUT_OF_ORDER)."""
    cap = ctx.state.capture
    if cap is not None and getattr(cap, "out_of_order", None):
        return f"frame.time_epoch >= {lo - slack:.3f} && frame.time_epoch <= {hi + slack:.3f}"
    return (f"frame.time_relative >= {max(0.0, ctx.rel(lo) - slack):.3f} && "
            f"frame.time_relative <= {ctx.rel(hi) + slack:.3f}")


def host_filter(ipver: int, a: bytes, b: bytes | None = None) -> str:
    fld = "ip" if ipver == 4 else "ipv6"
    if b is None:
        return f"{fld}.addr == {ip_text(a)}"
    return f"{fld}.addr == {ip_text(a)} && {fld}.addr == {ip_text(b)}"


def starts_and_latest(sas) -> tuple[list, list]:
    """SAs (IKE or ESP) in order of their first packet: their starts, and the running maximum
    of their last packets (a bisection on the starts answers "the latest packet of the SAs
    that started before t")."""
    sas = sorted(sas, key=lambda x: x.first_ts)
    latest = []
    m = float("-inf")
    for x in sas:
        m = max(m, x.last_ts)
        latest.append(m)
    return [x.first_ts for x in sas], latest


def tunnel_filter(t) -> str:
    """The packets between a tunnel's two ends, with the addresses an end moved to while keeping
    its IKE SA (MOBIKE, RFC 4555; a NAT rebinding: ``t.moved``) on its side."""
    moved = getattr(t, "moved", None)
    if not moved:
        return host_filter(t.ipver, t.a, t.b)
    fld = "ip" if t.ipver == 4 else "ipv6"
    sides = []
    for end in (t.a, t.b):
        addrs = [end] + sorted(new for new, old in moved.items() if old == end)
        sides.append(set_filter(f"{fld}.addr", [ip_text(x) for x in addrs]))
    return f"({sides[0]}) && ({sides[1]})"


class Context:
    """What a rule is handed: the state, thresholds, ``now`` and the helpers above."""

    def __init__(self, state):
        self.state = state
        #: questions a rule left open because answering them would cost more than its budget
        #: (a flood of SAs): name -> [count, first ref, first ts], for CAPTURE_LIMITS
        self.cut: dict = {}
        #: what rules build once per evaluation and share (indexes, annotations): see memo()
        self._memo: dict = {}
        self.th = state.thresholds
        self.now = state.now
        self.names = state.names
        cap = state.capture
        self.start = getattr(cap, "start_ts", None)
        if self.start is None:
            firsts = [sa.first_ts for sa in state.ike_sas if sa.first_ts is not None]
            firsts += [sa.first_ts for sa in state.esp_sas if sa.first_ts is not None]
            self.start = min(firsts) if firsts else state.now

    def cut_short(self, what: str, ref=None, ts=None) -> None:
        """A rule left the question ``what`` open (its look-up budget was spent)."""
        e = self.cut.get(what)
        if e is None:
            self.cut[what] = [1, ref, ts]
        else:
            e[0] += 1

    def memo(self, key: str, build):
        """The value ``build()`` made the first time ``key`` was asked in this evaluation: the
        indexes and annotations several rules share (``dataplane``, ``nat``, ...), built once."""
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = build()
            return value

    @cached_property
    def tunnel_of_sa(self) -> dict:
        """``id(IKE SA)`` -> its tunnel (rules ask per SA)."""
        return {id(s): t for t in self.state.tunnels for s in t.ike_sas}

    @cached_property
    def ike_sa_by_id(self) -> dict:
        """An IKE SA's ``id`` (``ikev2:<ispi>:<rspi>``) -> the SA (log lines name SAs by id)."""
        return {sa.id: sa for sa in self.state.ike_sas}

    @cached_property
    def ike_by_peers(self) -> dict:
        """``(version, initiator address, responder address)`` -> IKE SAs in capture order."""
        m = {}
        for sa in sorted(self.state.ike_sas, key=lambda s: s.first_ts or 0.0):
            if sa.initiator and sa.responder:
                m.setdefault((sa.version, sa.initiator[1], sa.responder[1]), []).append(sa)
        return m

    def working_sas(self, t) -> list:
        """``[(established_ts, sa)]`` of tunnel ``t``'s IKE SAs seen working
        (:func:`seen_working`), in the order they started; built once per tunnel and
        evaluation (the verdict asks it for every failure of the tunnel)."""
        def build():
            rows = []
            for sa in sorted(t.ike_sas, key=lambda s: s.first_ts or 0):
                est = established_ts(sa)
                if est is not None and seen_working(sa):
                    rows.append((est, sa))
            return rows
        return self.memo(f"working_sas|{id(t)}", build)

    def tcp_sas(self, t) -> list:
        """Tunnel ``t``'s IKE SAs whose first message came over TCP (RFC 9329), built once per
        tunnel and evaluation (few: a UDP -> TCP fallback is looked up among them)."""
        return self.memo(f"tcp_sas|{id(t)}", lambda: [
            sa for sa in t.ike_sas if sa.messages and sa.messages[0].transport == "tcp"])

    def file(self, idx: int) -> str:
        return self.names[idx] if 0 <= idx < len(self.names) else f"#{idx}"

    def frame_refs(self, refs) -> list[FrameRef]:
        seen = set()
        out = []
        for r in refs:
            if r in seen:
                continue
            seen.add(r)
            out.append(FrameRef(self.file(r[0]), r[1]))
            if len(out) >= MAX_EVIDENCE_FRAMES:
                break
        return out

    def time(self, ts) -> dict | None:
        if ts is None:
            return None
        t = Time.of(ts, self.start)
        return {"utc": t.utc, "rel": t.rel}

    def rel(self, ts) -> float:
        return round(ts - self.start, 3)

    def evidence(self, refs, first_ts=None, last_ts=None, ike_spis=(), esp_spis=(), peers=()):
        """Evidence of a finding: frames, times, SPIs and peers (at most
        ``MAX_EVIDENCE_FRAMES`` of each list: a finding about a flood stays bounded)."""
        n = MAX_EVIDENCE_FRAMES
        return Evidence(frames=self.frame_refs(refs), first=self.time(first_ts),
                        last=self.time(last_ts if last_ts is not None else first_ts),
                        ike_spis=list(ike_spis)[:n], esp_spis=list(esp_spis)[:n],
                        peers=list(peers)[:n])

    @staticmethod
    def msg_refs(msgs) -> list:
        """All frames of IKE messages (IP fragments included)."""
        out = []
        for m in msgs:
            out.extend(m.frames)
        return out


# -- IKE views shared by the IKE rules ---------------------------------------------------------

ANSWERED = "answered"
UNANSWERED = "unanswered"
PENDING = "pending"  # absence needs time: the capture ended too soon after the request


def ike_tunnel_of(ctx, sa):
    """The tunnel an IKE SA belongs to (:attr:`Context.tunnel_of_sa`)."""
    return ctx.tunnel_of_sa.get(id(sa))


def deleted_ts(sa):
    """When an IKE SA was deleted, keyless: an INFORMATIONAL request whose first encrypted
    payload is a Delete (IKEv2, RFC 7296 §3.14), or a cleartext Delete (IKEv1); None."""

    found = None
    for x in sa.exchanges:
        if found is not None and x.msgs and x.msgs[0].ts > found and not _has_delete(sa, x):
            # the IKE SA was used after that Delete: it deleted a child SA (keyless, a Delete
            # names no protocol), not the IKE SA
            found = None
        if found is None:
            found = _has_delete(sa, x)
    return found


def _has_delete(sa, x):
    """When exchange ``x`` carried a Delete (its time), or None."""
    if sa.version == 2 and x.exch == ExchangeType.INFORMATIONAL:
        for m in x.requests:
            if m.sk_next == PayloadV2.D:
                return m.ts
    for m in x.msgs:
        if m.deletes:
            return m.ts
    return None


def answers_mm5(m, mm5) -> bool:
    """``m`` is the peer's Informational after ``mm5``, the fifth message of an IKEv1 Main Mode:
    how a responder that cannot read MM5 answers it (an error notification, in the clear or
    encrypted).  IKE_AUTH_FAILED (inferred, rules/authentication.py) reports it; so
    rules/reachability.py raises no IKE_NO_RESPONSE for that MM5 and rules/negotiation.py no
    IKE_ERROR_NOTIFY for the notification."""
    return (m.exch == ExchangeType.INFORMATIONAL_V1 and m.ts > mm5.ts and m.src != mm5.src
            and not m.copy)


def mm5_answers(sa, mm5) -> list:
    """The messages of ``sa`` that answer ``mm5`` (:func:`answers_mm5`)."""
    return [m for m in sa.messages if answers_mm5(m, mm5)]


def exchange_status(ctx, x):
    """answered / unanswered / pending for an IKE exchange (IKEv2: request↔response; IKEv1: the
    exchange did not go past the last message and its sender got nothing back)."""
    from pcapvpn.track.ike_sa import V1_STEPS

    if x.version == 2:
        if x.answered:
            return ANSWERED
        reqs = x.requests
        if reqs and _went_on(ctx, x, reqs[0].src):
            return ANSWERED
    else:
        if x.exch == ExchangeType.INFORMATIONAL_V1:
            return ANSWERED
        need = V1_STEPS.get(x.exch)
        last = x.last_step
        if need is None:
            # an exchange type without known steps (private use: AuthIP's 243 ...): answered
            # when the other side spoke in it, else not judged
            senders = {m.src for m in x.msgs}
            return ANSWERED if len(senders) >= 2 else PENDING
        if last >= need:
            return ANSWERED
        reqs = [m for m in x.msgs if m.step == last]
        sender = reqs[0].src if reqs else None
        # anything from the other side later in this IKE SA counts as an answer of sorts, but
        # its re-sends of an earlier step of this exchange (MM4 again after MM5: an IKEv1 peer
        # retransmits its last message on its own timer until the next one arrives) do not
        later = [m for m in x.sa.messages if m.ts >= reqs[-1].ts and m.src != sender
                 and not (m.exch == x.exch and m.msgid == x.msgid and m.step is not None
                          and m.step < last)]
        if later:
            return ANSWERED
    if not reqs:
        return ANSWERED
    if any(m.retransmit_of is not None for m in reqs):
        return UNANSWERED
    if ctx.now - max(m.ts for m in reqs) >= ctx.th.response_timeout:
        return UNANSWERED
    return PENDING


#: the initial exchanges of IKEv2: the window is one request until they complete (RFC 7296
#: §2.3; SET_WINDOW_SIZE, sent in IKE_AUTH, can widen it only afterwards)
_INITIAL_V2 = frozenset((ExchangeType.IKE_SA_INIT, ExchangeType.IKE_INTERMEDIATE,
                         ExchangeType.IKE_AUTH))


def _went_on(ctx, x, src) -> bool:
    """IKEv2: ``src`` sent a request with a higher Message ID in the same IKE SA after its
    request of the initial exchange ``x``: the window being one request then (RFC 7296 §2.3),
    it had the answer to ``x`` (the IKE_AUTH after an IKE_SA_INIT even carries the responder SPI
    only that answer gave): ``x`` was answered where the capture does not show it (one
    direction captured, a copy dropped at the capture point).  The highest Message ID of each
    sender's requests is computed once per IKE SA and evaluation."""
    if x.exch not in _INITIAL_V2:
        return False

    def build():
        top: dict = {}
        for y in x.sa.exchanges:
            if y.version != 2 or not y.requests:
                continue
            a = y.requests[0].src
            if y.msgid > top.get(a, -1):
                top[a] = y.msgid
        return top
    top = ctx.memo(f"v2_top_request|{id(x.sa)}", build)
    return top.get(src, -1) > x.msgid


def last_requests(x):
    """The messages of the step that went unanswered (IKEv2: the requests)."""
    if x.version == 2:
        return x.requests
    last = x.last_step
    return [m for m in x.msgs if m.step == last]


def established_ts(sa):
    """When an IKE SA became established (keyless view), or None."""

    if not sa.established:
        return None
    if sa.version == 2:
        auths = [x for x in sa.exchanges if x.exch == ExchangeType.IKE_AUTH and x.responses]
        return auths[-1].responses[0].ts if auths else sa.first_ts
    for x in sa.exchanges:
        if x.exch in (ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE) and x.last_step >= (6 if x.exch == ExchangeType.MAIN_MODE else 3):
            return max(m.ts for m in x.msgs)
    for x in sa.exchanges:
        if x.exch == ExchangeType.QUICK_MODE:
            return min(m.ts for m in x.msgs)
    return sa.first_ts


#: IKEv1 phase 1 (RFC 2409 §5): Main Mode and Aggressive Mode
PHASE1 = frozenset((ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE))
#: the exchanges that open an IKE SA (their request carries a zero responder SPI; an answer to
#: one shows the responder reachable)
OPENING = frozenset((ExchangeType.IKE_SA_INIT,)) | PHASE1


def seen_working(sa) -> bool:
    """An IKE SA whose establishment the capture shows from both sides: established, with an
    exchange that carries messages from both peers (a request and its answer).  A lone message
    of an SA negotiated before the capture started is not enough."""
    if established_ts(sa) is None:
        return False
    for x in sa.exchanges:
        if len({m.src for m in x.msgs}) >= 2:
            return True
    # IKEv1: an Informational is an exchange of one message (a DPD R-U-THERE and its ACK are
    # two, RFC 3706 §5): both peers sending messages protected by this ISAKMP SA show it working
    # on both sides (a peer that lost the SA answers in the clear: INVALID_COOKIE, RFC 2408 §5)
    # Encrypted Main / Aggressive Mode messages (MM5, MM6, AM3) are phase 1 itself, not yet
    # complete: an initiator re-sending MM5 to a peer that answers each copy with an error
    # (a PSK mismatch seen from mid-negotiation) shows no working SA
    return sa.version == 1 and len({m.src for m in sa.messages if m.encrypted
                                    and m.exch not in PHASE1}) >= 2


def exchange_label(x) -> str:
    """``IKE_AUTH (Message ID 1)`` / ``Main Mode MM3`` / ``Quick Mode QM1 (Message ID 0x1a2b3c4d)``."""
    from dissect.vpn import registry as reg
    from pcapvpn.track.ike_sa import V1_STEP_PREFIX

    name = reg.exchange_name(x.exch, short=True)
    if x.version == 2:
        return f"{name} (Message ID {x.msgid})"
    prefix = V1_STEP_PREFIX.get(x.exch)
    step = f" {prefix}{x.last_step}" if prefix and x.last_step else ""
    mid = f" (Message ID 0x{x.msgid:08x})" if x.msgid else ""
    return f"{name}{step}{mid}"


def backoff(msgs) -> list[float]:
    """Intervals between successive sends of the same message (retransmission backoff)."""
    ts = sorted(m.ts for m in msgs if m.duplicate_of is None)
    return [round(b - a, 3) for a, b in zip(ts, ts[1:])]


#: retransmission intervals compared with an implementation's timers: more than any of them
#: sends before giving up (strongSwan retransmit_tries 5), so a peer that never answers a long
#: capture costs no more work than one that stopped early
HINT_INTERVALS = 12


def implementation_hint(intervals) -> str | None:
    """Name the implementation whose documented retransmission timers fit the intervals
    (anchors.md §2.5: strongSwan 4 s x 1.8^n, IKEv1 and IKEv2 alike; libreswan doubling from
    0.5 s).  A constant interval names no implementation: no documented default was found for
    one.  Only the first :data:`HINT_INTERVALS` intervals are compared (bounded work; a
    geometric series over thousands of copies would overflow)."""
    intervals = list(intervals[:HINT_INTERVALS])
    if len(intervals) < 2 or intervals[0] <= 0:
        return None

    def fits(base, factor):
        exp = [base * factor ** i for i in range(len(intervals))]
        return all(abs(a - e) <= max(0.25, 0.15 * e) for a, e in zip(intervals, exp))
    if fits(intervals[0], 1.8) and 3.0 <= intervals[0] <= 5.0:
        return "strongSwan-like backoff (4 s x 1.8^n: retransmit_timeout 4.0, retransmit_base 1.8)"
    if fits(intervals[0], 1.8):
        return f"strongSwan-like backoff (base {intervals[0]:.1f} s x 1.8^n)"
    if fits(intervals[0], 2.0):
        return f"doubling backoff from {intervals[0]:.1f} s (libreswan-like)"
    if fits(intervals[0], 1.5):
        return f"backoff x1.5 from {intervals[0]:.1f} s"
    if all(abs(a - intervals[0]) <= 0.2 * intervals[0] + 0.05 for a in intervals):
        return f"constant {intervals[0]:.1f} s retransmission interval"
    return None


def vendor_names(sa) -> list[str]:
    from dissect.vpn import vendor_ids

    out = []
    for m in sa.messages:
        for v in m.vendor_ids:
            hit = vendor_ids.lookup(v)
            if hit:
                name, ver = hit
                label = f"{name} {ver}" if ver else name
                if label not in out:
                    out.append(label)
    return out


def _family(name: str) -> str | None:
    """The implementation a Vendor ID name (dissect.vpn.vendor_ids) stands for, as the advice
    lines name it (``findings.when(..., impl=...)``).  Capability IDs that several
    implementations send (NAT-T, DPD, XAUTH, FRAGMENTATION, Cisco Unity: strongSwan's unity
    plugin sends it too) name none."""
    low = name.lower()
    if low.startswith("strongswan"):
        return "strongSwan"
    if "libreswan" in low:
        return "libreswan"
    if low.startswith(("openswan", "frees/wan")):
        return "Openswan"
    if low.startswith("cisco") and not low.startswith("cisco unity"):
        return "Cisco"
    if low.startswith(("windows", "ms nt5", "ms-", "microsoft")):
        return "Windows"
    return None


def implementations(sa, side: str | None = None) -> set[str]:
    """Implementations named by the Vendor IDs of an IKE SA (of one side: "initiator" /
    "responder"; both when None).  Empty when unknown: most daemons send no Vendor ID naming
    themselves by default."""
    from dissect.vpn import vendor_ids

    addr = None
    if side is not None:
        ep = sa.initiator if side == "initiator" else sa.responder
        if ep is None:
            return set()
        addr = ep[1]
    out = set()
    for m in sa.messages:
        if addr is not None and m.src != addr:
            continue
        for v in m.vendor_ids:
            hit = vendor_ids.lookup(v)
            fam = _family(hit[0]) if hit else None
            if fam:
                out.add(fam)
    return out


def side_of(sa, addr) -> str | None:
    """"initiator" / "responder": which peer of the IKE SA the address is."""
    if sa.initiator is not None and addr == sa.initiator[1]:
        return "initiator"
    if sa.responder is not None and addr == sa.responder[1]:
        return "responder"
    return None


def step_label(x) -> str:
    """What an exchange is called in the advice conditions: the IKEv2 exchange name
    (``IKE_SA_INIT``), or the IKEv1 step that went unanswered (``MM1``, ``AM1``, ``QM1``)."""
    from dissect.vpn import registry as reg
    from pcapvpn.track.ike_sa import V1_STEP_PREFIX

    if x.version == 2:
        return reg.exchange_name(x.exch, short=True)
    prefix = V1_STEP_PREFIX.get(x.exch)
    if prefix and x.last_step:
        return f"{prefix}{x.last_step}"
    return reg.exchange_name(x.exch, short=True)


def credentials_of(sa) -> str:
    """Whose credentials an IKE SA's authentication checks beyond the gateways' own: "user"
    when the user authenticates too (IKEv2 IKE_AUTH answered with EAP, RFC 7296 §2.16; IKEv1
    Transaction exchanges, XAUTH), else "gateway" (PSK, certificates).  A fact for
    :func:`pcapvpn.findings.when`."""
    from dissect.vpn.registry import PayloadV2

    for x in sa.exchanges:
        if sa.version == 1 and x.exch == ExchangeType.TRANSACTION:
            return "user"
        if sa.version == 2 and x.exch == ExchangeType.IKE_AUTH and any(
                r.sk_next == PayloadV2.EAP for r in x.responses):
            return "user"
    return "gateway"


def ike_facts(sa, x=None, side: str | None = None, **more) -> dict:
    """The facts that choose an IKE finding's advice lines (``findings.when``): ``version``,
    ``exchange`` (:func:`step_label` of ``x``), ``msgid``, ``side`` (the peer the finding is
    about: whose request went unanswered, whose log is quoted) and ``impl`` (the
    implementations that side's Vendor IDs name; both sides' when no side is given)."""
    facts = {"version": sa.version, "side": side, "impl": implementations(sa, side),
             "credentials": credentials_of(sa)}
    if x is not None:
        facts["exchange"] = step_label(x)
        facts["msgid"] = x.msgid
    facts.update(more)
    return facts


# -- proposals in configuration vocabulary -------------------------------------------------------

_V2_KIND = {TransformType.ENCR: "encr", TransformType.PRF: "prf", TransformType.INTEG: "integ",
            TransformType.KE: "ke",
            **{t: "ke" for t in TransformType if t >= TransformType.ADDKE1}}


def _v1_attrs(tr) -> dict:
    return {t: v for t, v in tr.attributes if isinstance(v, int)}


def proposal_texts(version: int, proposals) -> list[str]:
    """Each proposal as an operator writes it (strongSwan ``proposals =`` syntax)."""
    from dissect.vpn import registry as reg

    out = []
    for p in proposals or ():
        proto = {ProtocolId.IKE: "IKE", ProtocolId.AH: "AH",
                 ProtocolId.ESP: "ESP"}.get(p.protocol, f"proto{p.protocol}")
        if version == 2:
            txt = reg.proposal_string([(t.transform_type, t.transform_id, t.key_length)
                                       for t in p.transforms])
            out.append(f"#{p.number} {proto}:{txt}")
            continue
        alts = []
        for tr in p.transforms:
            a = _v1_attrs(tr)
            if p.protocol == ProtocolId.IKE:
                txt = reg.v1_proposal_string(a.get(IkeAttrV1.ENCRYPTION_ALGORITHM),
                                             a.get(IkeAttrV1.HASH_ALGORITHM),
                                             a.get(IkeAttrV1.GROUP_DESCRIPTION),
                                             a.get(IkeAttrV1.KEY_LENGTH))
                auth = a.get(IkeAttrV1.AUTHENTICATION_METHOD)
                if auth is not None:
                    txt += f" ({reg.V1_AUTH.get(auth, f'auth method {auth}')})"
            elif p.protocol == ProtocolId.ESP:
                txt = reg.v1_esp_proposal_string(tr.transform_id,
                                                 a.get(IpsecAttrV1.AUTHENTICATION_ALGORITHM),
                                                 a.get(IpsecAttrV1.GROUP_DESCRIPTION),
                                                 a.get(IpsecAttrV1.KEY_LENGTH),
                                                 IpsecAttrV1.ESN in a)
            else:
                txt = reg.v1_transform_name(p.protocol, tr.transform_id)
            alts.append(txt)
        out.append(f"#{p.number} {proto}:" + " | ".join(alts))
    return out


def weak_transforms(version: int, proposals) -> list[tuple[str, str]]:
    """(algorithm name, reason) for every weak algorithm in the proposals (posture)."""
    from dissect.vpn import registry as reg

    seen = {}
    for p in proposals or ():
        for tr in p.transforms:
            if version == 2:
                kind = _V2_KIND.get(tr.transform_type)
                if kind is None:
                    continue
                why = reg.weak_reason(kind, tr.transform_id)
                if why:
                    seen.setdefault(reg.transform_name(tr.transform_type, tr.transform_id), why)
                continue
            a = _v1_attrs(tr)
            if p.protocol == ProtocolId.IKE:
                checks = (("v1_encr", IkeAttrV1.ENCRYPTION_ALGORITHM),
                          ("v1_hash", IkeAttrV1.HASH_ALGORITHM),
                          ("v1_group", IkeAttrV1.GROUP_DESCRIPTION))
                for kind, attr in checks:
                    v = a.get(attr)
                    if v is None:
                        continue
                    why = reg.weak_reason(kind, v)
                    if why:
                        label = {"v1_encr": "encryption", "v1_hash": "hash",
                                 "v1_group": "group"}[kind]
                        name = reg.group_name(v) if kind == "v1_group" else f"{label} {v}"
                        if kind == "v1_encr":
                            name = reg.v1_proposal_string(v, None)
                        elif kind == "v1_hash":
                            name = reg.v1_proposal_string(None, v)
                        seen.setdefault(name, why)
            elif p.protocol == ProtocolId.ESP:
                why = reg.weak_reason("v1_esp", tr.transform_id)
                if why:
                    seen.setdefault(reg.v1_transform_name(ProtocolId.ESP, tr.transform_id), why)
    return list(seen.items())


def tcp_connection_findings(ctx, conns, *, ipver, client, server, port, name, tunnel, key, up,
                            advice=None):
    """TCP_NO_ANSWER and TCP_RESET for the connections ``conns`` (pcapvpn.track.vpn.TcpConn) of
    ``client`` to ``server``:``port``: SYNs that got no SYN-ACK (retransmitted, or older than the
    response timeout), and resets from the server side before the protocol came up (``up(c)``),
    unless a later connection worked.  ``name`` says what runs on the port; ``key`` makes the
    findings' ids."""
    from pcapvpn.findings import make

    th = ctx.th
    server_txt = (f"[{ip_text(server)}]" if ipver == 6 else ip_text(server)) + f":{port}/tcp"
    peers = [ip_text(client), server_txt]
    fl = "ip" if ipver == 4 else "ipv6"
    ok_after = None
    for c in conns:
        if c.established:
            ok_after = c.first_ts if ok_after is None else max(ok_after, c.first_ts)
    failed = []
    for c in conns:
        if not c.syn or c.synack or c.rst_server or c.bytes[1]:
            continue
        if ok_after is not None and ok_after > c.first_ts:
            continue  # a later connection worked
        if len(c.syn) < 2 and ctx.now - c.syn[0][0] < th.response_timeout:
            continue  # pending
        failed.append(c)
    if failed:
        refs = [r for c in failed for _ts, r in c.syn]
        nsyn = sum(len(c.syn) for c in failed)
        first = min(c.syn[0][0] for c in failed)
        last = max(c.syn[-1][0] for c in failed)
        ts = sorted(ts for c in failed[:1] for ts, _r in c.syn)
        iv = [round(b - a, 1) for a, b in zip(ts, ts[1:])]
        detail = msg("{n} connection attempt(s) from {client} to {server}: {syns} SYN(s) over "
                     "{span:.1f} s, no SYN-ACK and no RST (the capture ends {after:.1f} s after "
                     "the last SYN).", n=len(failed), client=ip_text(client), server=server_txt,
                     syns=nsyn, span=last - first, after=ctx.now - last)
        if iv:
            detail += msg(" SYN retransmission intervals: {iv} s.",
                          iv=', '.join(f'{x:g}' for x in iv))
        yield make("TCP_NO_ANSWER", f"tcpna|{key}",
                   title=msg("TCP {port} to {server} never answered ({name})", port=port,
                             server=ip_text(server), name=name),
                   detail=detail, basis="observed",
                   evidence=ctx.evidence(sorted(set(refs)), first, last, peers=peers),
                   wireshark_filter=(f"{fl}.dst == {ip_text(server)} && tcp.dstport == "
                                     f"{port} && tcp.flags.syn == 1 && tcp.flags.ack == 0"),
                   advice=advice, tunnel=tunnel)
    resets = []
    for c in conns:
        if not c.rst_server or up(c):
            continue
        if ok_after is not None and ok_after > c.first_ts:
            continue
        resets.append(c)
    if resets:
        refs = [r for c in resets for _ts, r in c.rst_server]
        refused = [c for c in resets if not c.synack]
        first = min(c.rst_server[0][0] for c in resets)
        last = max(c.rst_server[-1][0] for c in resets)
        detail = msg("{n} connection(s) from {client} to {server} reset by the server side "
                     "before the VPN came up", n=len(resets), client=ip_text(client),
                     server=server_txt)
        if refused:
            detail += msg(" ({n} refused: RST answering the SYN)", n=len(refused))
        tls_stage = [c.tls.stage for c in resets if c.tls is not None]
        if tls_stage:
            detail += msg("; TLS stage reached: {stages}",
                          stages=', '.join(sorted(set(tls_stage))))
        detail += "."
        yield make("TCP_RESET", f"tcprst|{key}",
                   title=(msg("TCP {port} to {server} refused (RST)", port=port,
                              server=ip_text(server)) if refused and
                          len(refused) == len(resets) else
                          msg("TCP connection to {server} reset before the VPN came up",
                              server=server_txt)),
                   detail=detail, basis="observed",
                   evidence=ctx.evidence(sorted(set(refs)), first, last, peers=peers),
                   wireshark_filter=(f"{fl}.src == {ip_text(server)} && tcp.srcport == "
                                     f"{port} && tcp.flags.reset == 1"),
                   advice=advice, tunnel=tunnel)


class MaxTree:
    """Maximum over any range of a fixed list of numbers in O(log n) (a segment tree)."""

    __slots__ = ("n", "t")

    def __init__(self, values):
        n = self.n = len(values)
        t = self.t = [float("-inf")] * n + list(values)
        for i in range(n - 1, 0, -1):
            t[i] = t[2 * i] if t[2 * i] > t[2 * i + 1] else t[2 * i + 1]

    def max(self, lo: int, hi: int) -> float:
        """max(values[lo:hi]) (-inf for an empty range)."""
        t = self.t
        m = float("-inf")
        lo += self.n
        hi += self.n
        while lo < hi:
            if lo & 1:
                if t[lo] > m:
                    m = t[lo]
                lo += 1
            if hi & 1:
                hi -= 1
                if t[hi] > m:
                    m = t[hi]
            lo >>= 1
            hi >>= 1
        return m


def unreachable_errors(ctx):
    """The ICMP / ICMPv6 errors that say a flow did not get through (destination unreachable,
    time exceeded) and quote its datagram: ``(error, quoted NetTuple)``.  Fragmentation-needed /
    packet-too-big are the path-MTU rules' (dataplane)."""
    from dissect.vpn.ip import icmp_too_big, icmp_unreachable_or_expired

    for e in ctx.state.icmp_errors:
        q = e.quoted
        if q is None or icmp_too_big(e.ipver, e.icmp_type, e.icmp_code) or \
                not icmp_unreachable_or_expired(e.ipver, e.icmp_type):
            continue
        yield e, q
