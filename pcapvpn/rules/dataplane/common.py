"""What the data-plane rules share: SA names and filters, the pairing of a tunnel's SAs, and the
indexes built once per evaluation (who was heard, the reverse direction's SAs)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from dissect.vpn.ip import IpProto, Port, icmp_too_big
from dissect.vpn.registry import ExchangeType, PayloadV2
from pcapvpn.rules.common import (
    MAX_EVIDENCE_FRAMES, MaxTree, ip_text,
)


#: the reverse direction went quiet within this many seconds of the first large packet
MTU_SLACK = 1.0


#: large packets must keep coming at least this long after the reverse direction went quiet
MTU_PERSIST = 2.0


#: at least this many large packets in the direction that keeps sending
MTU_MIN_LARGE = 3


#: SAs listed by name in one detail (all are counted)
MAX_LISTED = 5


#: seconds: an answer to ESP comes within a round trip; when the silent peer is heard (IKE,
#: keepalive, other ESP) at least this long after the first unanswered packet, its direction
#: demonstrably reaches the capture point and the absence of its ESP is established even if the
#: capture is shorter than ``one_way_window`` (a candidate for thresholds.py)
ANSWER_WINDOW = 2.0


def _spi(sa) -> str:
    return f"{sa.spi:08x}"


def _what(sa) -> str:
    name = "AH" if sa.proto == "ah" else "ESP"
    if sa.encap == "udp":
        name += " in UDP"
    elif sa.encap == "tcp":
        name += " in TCP"
    return name


def _label(sa) -> str:
    return f"{_what(sa)} SPI 0x{_spi(sa)} {ip_text(sa.src)} -> {ip_text(sa.dst)}"


def _spi_set(field: str, spis) -> str:
    # tshark 4.0 wants set members separated by commas ("in {a b}" is rejected); at most
    # MAX_EVIDENCE_FRAMES SPIs (the lowest), as common.set_filter
    spis = sorted(set(spis))[:MAX_EVIDENCE_FRAMES]
    if len(spis) == 1:
        return f"{field} == 0x{spis[0]:08x}"
    return f"{field} in {{" + ", ".join(f"0x{x:08x}" for x in spis) + "}"


def sa_filter(sas) -> str:
    """A display filter for ESP and/or AH SAs by SPI."""
    sas = list(sas)
    esp = [s.spi for s in sas if s.proto != "ah"]
    ah = [s.spi for s in sas if s.proto == "ah"]
    parts = []
    if esp:
        parts.append(_spi_set("esp.spi", esp))
    if ah:
        parts.append(_spi_set("ah.spi", ah))
    return " || ".join(parts)


def _spis(sas) -> list[str]:
    return [_spi(s) for s in sas]


def _pairs(t) -> list:
    """The child SAs of a tunnel: its ESP and AH SAs paired by start time (tunnels.py)."""
    return t.pairs


def _partner_map(pairs) -> dict:
    m = {}
    for x, y in pairs:
        if x is not None:
            m[id(x)] = y
        if y is not None:
            m[id(y)] = x
    return m


def _srcs(sa) -> set:
    """Every source address an SA was seen from (NAT rebinding / MOBIKE move an SA; captures
    merged from both sides of a NAT show it with the inside and the outside address)."""
    return {sa.src} | {m[2] for m in sa.moves}


#: SAs looked at for one question before the answer is left open ("cannot tell"); a question
#: cut short is counted in the CAPTURE_LIMITS finding
LOOKUP_BUDGET = 64


_NEG = float("-inf")


def _ix(ctx) -> "_Index":
    return ctx.memo("dataplane", lambda: _Index(ctx))


def _by_dst(ctx) -> dict:
    return _ix(ctx).by_dst


class _Index:
    """Look-ups over all ESP/AH SAs, IKE messages and keepalives of one evaluation."""

    def __init__(self, ctx):
        # the state only (no reference back to ctx, which holds this index: no cycle)
        self.state = state = ctx.state
        self.by_dst: dict = {}
        for s in state.esp_sas:
            self.by_dst.setdefault(s.dst, []).append(s)
        self._partners: dict = {}
        self._tunnel_of: dict | None = None
        self._heard: dict | None = None
        self._tunnel_ike: dict = {}
        self._reverse: dict | None = None
        self._takeover: dict | None = None
        self._replaced: dict = {}
        self._by_pair: dict | None = None
        self._icmp: dict | None = None
        self._between: dict | None = None

    def partners(self, t) -> dict:
        m = self._partners.get(id(t))
        if m is None:
            m = self._partners[id(t)] = _partner_map(_pairs(t))
        return m

    def tunnel_of(self, sa):
        if self._tunnel_of is None:
            self._tunnel_of = {id(s): t for t in self.state.tunnels for s in t.esp_sas}
        return self._tunnel_of.get(id(sa))

    def tunnel_between(self, x, y):
        """The IPsec tunnel between two addresses, or None."""
        if self._by_pair is None:
            self._by_pair = {}
            for t in self.state.tunnels:
                self._by_pair.setdefault(frozenset((t.a, t.b)), t)
        return self._by_pair.get(frozenset((x, y)))

    # what the capture holds from a peer (_heard)
    def heard_all(self) -> dict:
        h = self._heard
        if h is None:
            # over the whole state (live's RuleCache runs the rules over the tunnels that
            # changed: what a peer sent elsewhere is read from all of them, each read noted)
            whole = getattr(self.state, "whole", None)
            shared = getattr(self.state, "shared", None)  # once per RuleCache run
            h = shared.get("heard_all") if shared is not None else None
            if h is None:
                h = heard_all(whole if whole is not None else self.state)
                if shared is not None:
                    shared["heard_all"] = h
            note = getattr(self.state, "facts", None)
            if note is not None:
                h = {k: note(f"heard.{k}", v) for k, v in h.items()}
            self._heard = h
        return h

    def tunnel_ike(self, t) -> dict:
        """src -> sorted times of the IKE messages it sent in tunnel ``t``."""
        d = self._tunnel_ike.get(id(t))
        if d is None:
            d = {}
            for sa in t.ike_sas:
                for m in sa.messages:
                    d.setdefault(m.src, []).append(m.ts)
            for v in d.values():
                v.sort()
            self._tunnel_ike[id(t)] = d
        return d

    def tunnel_esp(self, t) -> dict:
        """(src, dst) -> [packets, last_ts] of tunnel ``t``'s SAs."""
        key = ("esp", id(t))
        d = self._tunnel_ike.get(key)
        if d is None:
            d = {}
            for s in t.esp_sas:
                e = d.get((s.src, s.dst))
                if e is None:
                    d[(s.src, s.dst)] = [s.packets, s.last_ts]
                else:
                    e[0] += s.packets
                    e[1] = max(e[1], s.last_ts)
            self._tunnel_ike[key] = d
        return d

    # SAs of the opposite direction (_reverse_covers)
    def reverse_group(self, key):
        if self._reverse is None:
            groups: dict = {}
            for s in self.state.esp_sas:
                for a in _srcs(s):
                    groups.setdefault((s.dst, s.proto, a), []).append(s)
            self._reverse = groups
        g = self._reverse.get(key)
        if isinstance(g, list):
            g = self._reverse[key] = _ReverseGroup(self, g)
        return g

    # SAs of one direction sorted by start (_takeover)
    def same_direction(self, key):
        if self._takeover is None:
            groups: dict = {}
            for s in self.state.esp_sas:
                groups.setdefault((s.dst, s.src, s.proto), []).append(s)
            self._takeover = groups
        g = self._takeover.get(key)
        if isinstance(g, list):
            g.sort(key=lambda s: s.first_ts)
            g = self._takeover[key] = ([s.first_ts for s in g], MaxTree([s.last_ts for s in g]),
                                       g)
        return g

    def paired_direction(self, t, key):
        """Paired SAs of tunnel ``t`` with (src, dst, proto) ``key``: their starts in order and
        the running maximum of their ends (_replaced)."""
        groups = self._replaced.get(id(t))
        if groups is None:
            partners = self.partners(t)
            groups = {}
            for s in t.esp_sas:
                if partners.get(id(s)) is not None:
                    groups.setdefault((s.src, s.dst, s.proto), []).append(s)
            for k, g in groups.items():
                g.sort(key=lambda s: s.first_ts)
                groups[k] = ([s.first_ts for s in g], _running_max([s.last_ts for s in g]))
            self._replaced[id(t)] = groups
        return groups.get(key)

    def esp_between(self, src, dst) -> list:
        """The SAs from ``src`` to ``dst``, in the order of the state's list."""
        if self._between is None:
            self._between = {}
            for s in self.state.esp_sas:
                self._between.setdefault((s.src, s.dst), []).append(s)
        return self._between.get((src, dst), [])

    def child_times(self, t) -> list:
        """Sorted completion times of the child SA negotiations of tunnel ``t``."""
        key = ("children", id(t))
        got = self._tunnel_ike.get(key)
        if got is None:
            got = self._tunnel_ike[key] = _child_times(t)
        return got

    def direction_span(self, t, key):
        """(first start, last end) of tunnel ``t``'s SAs of (proto, src, dst) ``key``, or
        None."""
        spans = self._tunnel_ike.get(("spans", id(t)))
        if spans is None:
            spans = self._tunnel_ike[("spans", id(t))] = {}
            for s in t.esp_sas:
                k = (s.proto, s.src, s.dst)
                v = spans.get(k)
                spans[k] = (s.first_ts, s.last_ts) if v is None else \
                    (min(v[0], s.first_ts), max(v[1], s.last_ts))
        return spans.get(key)

    def icmp_about(self, src, dst) -> list:
        """ICMP 'too big' errors quoting a VPN datagram from ``src`` to ``dst`` (_icmp_for)."""
        if self._icmp is None:
            self._icmp = {}
            for e in self.state.icmp_errors:
                if not icmp_too_big(e.ipver, e.icmp_type, e.icmp_code) or e.quoted is None:
                    continue
                q = e.quoted
                if _quoted_vpn(q):
                    self._icmp.setdefault((q.src, q.dst), []).append(e)
        return self._icmp.get((src, dst), [])


def heard_all(state) -> dict:
    """What the capture holds from each address (all tunnels): IKE messages and ESP/AH packets
    it sent, ESP/AH to each destination from it, NAT keepalives (_heard)."""
    ike_from: dict = {}
    for sa in state.ike_sas:
        for m in sa.messages:
            ike_from[m.src] = ike_from.get(m.src, 0) + 1
    esp_from: dict = {}
    esp_to: dict = {}  # (dst, one of the SA's sources) -> [packets, last_ts]
    for s in state.esp_sas:
        esp_from[s.src] = esp_from.get(s.src, 0) + s.packets
        for a in _srcs(s):
            e = esp_to.get((s.dst, a))
            if e is None:
                esp_to[(s.dst, a)] = [s.packets, s.last_ts]
            else:
                e[0] += s.packets
                e[1] = max(e[1], s.last_ts)
    ka: dict = {}  # src -> [count, {dst: last_ts}]
    for f in state.keepalives:
        src = getattr(f, "src", None)
        n = getattr(f, "count", 0)
        if not n:
            continue
        e = ka.setdefault(src, [0, {}])
        e[0] += n
        dst = getattr(f, "dst", None)
        if f.last_ts is not None:
            old = e[1].get(dst)
            e[1][dst] = f.last_ts if old is None else max(old, f.last_ts)
    return {"ike": ike_from, "esp": esp_from, "esp_to": esp_to, "ka": ka}


def _running_max(values) -> list:
    out = []
    m = _NEG
    for v in values:
        if v > m:
            m = v
        out.append(m)
    return out


class _ReverseGroup:
    """SAs to one address from one source (all tunnels): sorted by start, with the running
    maximum of the end of those that have no partner in their tunnel, and of the paired ones
    split by tunnel (the two tunnels with the latest end), so that "an SA without a partner in
    tunnel t overlapping [x, y]" is a bisection; the paired SAs of each tunnel for the rest."""

    __slots__ = ("firsts", "unpaired", "top", "paired")

    def __init__(self, ix: _Index, sas: list):
        sas.sort(key=lambda s: s.first_ts)
        self.firsts = [s.first_ts for s in sas]
        self.unpaired = []
        self.top = []  # per prefix: ((last, tunnel id), (last, other tunnel id)) of paired SAs
        self.paired: dict = {}  # tunnel id -> (starts, SAs) of its paired SAs
        u = _NEG
        best = (_NEG, None)
        second = (_NEG, None)
        for s in sas:
            t = ix.tunnel_of(s)
            p = ix.partners(t).get(id(s)) if t is not None else None
            if p is None:
                if s.last_ts > u:
                    u = s.last_ts
            else:
                tid = id(t)
                lst = self.paired.setdefault(tid, ([], []))
                lst[0].append(s.first_ts)
                lst[1].append(s)
                v = s.last_ts
                if tid == best[1]:
                    if v > best[0]:
                        best = (v, tid)
                elif v > best[0]:
                    second = best
                    best = (v, tid)
                elif v > second[0]:
                    second = (v, tid)
            self.unpaired.append(u)
            self.top.append((best, second))

    def any_without_partner(self, t, x: float, y: float) -> bool:
        """An SA starting at or before ``x`` and ending at or after ``y`` that has no partner in
        tunnel ``t`` (unpaired, or paired in another tunnel)."""
        i = bisect_right(self.firsts, x) - 1
        if i < 0:
            return False
        if self.unpaired[i] >= y:
            return True
        best, second = self.top[i]
        v = best[0] if best[1] != id(t) else second[0]
        return v >= y


def _heard(ctx, t, peer) -> tuple[dict, float | None]:
    """What the capture holds from ``peer`` (in this tunnel, and anywhere), and the time it was
    last heard in this tunnel."""
    ix = _ix(ctx)
    h = ix.heard_all()
    last = None
    msgs = ix.tunnel_ike(t).get(peer)
    ike_t = len(msgs) if msgs else 0
    if msgs:
        last = msgs[-1]
    others = {t.a, t.b} - {peer}
    esp_t = 0
    # SAs to the other end from the peer (any of their sources) ...
    for d in others:
        e = h["esp_to"].get((d, peer))
        if e is not None:
            esp_t += e[0]
            last = e[1] if last is None else max(last, e[1])
    # ... and the tunnel's SAs from the peer to anywhere else (a moved end's new address:
    # Tunnel.moved)
    for (src, d), e in ix.tunnel_esp(t).items():
        if src == peer and d not in others:
            esp_t += e[0]
            last = e[1] if last is None else max(last, e[1])
    ka = 0
    k = h["ka"].get(peer)
    if k is not None:
        ka = k[0]
        for d in (t.a, t.b):
            v = k[1].get(d)
            if v is not None:
                last = v if last is None else max(last, v)
    ike_all = h["ike"].get(peer, 0)
    esp_all = h["esp"].get(peer, 0)
    return ({"ike": ike_t, "esp": esp_t, "keepalives": ka,
             "ike_elsewhere": ike_all - ike_t, "esp_elsewhere": esp_all - esp_t}, last)


def _heard_text(h) -> str:
    from pcapvpn.findings import msg, msg_join

    parts = []
    if h["ike"]:
        parts.append(msg("{n} IKE message(s)", n=h['ike']))
    if h["esp"]:
        parts.append(msg("{n} ESP/AH packet(s) on other SAs", n=h['esp']))
    if h["keepalives"]:
        parts.append(msg("{n} NAT keepalive(s)", n=h['keepalives']))
    if h["ike_elsewhere"] or h["esp_elsewhere"]:
        parts.append(msg("{n} IKE/ESP packet(s) to other peers",
                         n=h['ike_elsewhere'] + h['esp_elsewhere']))
    return msg_join(", ", parts)


def _established_ts(sa):
    """When an IKE SA became established (keyless view), or None."""

    if not sa.established:
        return None
    if sa.version == 2:
        for x in sa.exchanges:
            if x.exch == ExchangeType.IKE_AUTH and x.responses:
                return x.responses[0].ts
        return sa.first_ts
    for x in sa.exchanges:
        if x.exch == ExchangeType.QUICK_MODE and x.last_step >= 2:
            # the child SA exists once the Quick Mode is through
            return max(m.ts for m in x.msgs)
    for x in sa.exchanges:
        if x.exch in (ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE):
            return max(m.ts for m in x.msgs)
    return sa.first_ts


def _child_expected(sa) -> bool:
    """An established IKE SA whose negotiation created a child SA (IKEv2 IKE_AUTH; IKEv1 a
    Quick Mode past its first message), or one first seen mid-session."""

    if sa.version == 2:
        return True
    if sa.mid_session:
        return True
    return any(x.exch == ExchangeType.QUICK_MODE and x.last_step >= 2 for x in sa.exchanges)


def _takeover(ctx, t, silent, after_ts, window, drain, flow=None) -> bool:
    """Another SA of the silent direction carries on after ``after_ts``: a rekey took over, or
    the peer it sends to moved (NAT rebinding, MOBIKE: same direction, new destination)."""
    ix = _ix(ctx)
    dsts = {silent.dst} | (_srcs(flow) if flow is not None else set())
    lo_ts, hi_ts = after_ts - drain, after_ts + window
    for d in dsts:
        g = ix.same_direction((d, silent.src, silent.proto))
        if g is None:
            continue
        firsts, tree, sas = g
        lo = bisect_left(firsts, lo_ts)
        hi = bisect_right(firsts, hi_ts)
        if lo >= hi or tree.max(lo, hi) <= after_ts:
            continue
        if silent.last_ts <= after_ts:
            return True  # ``silent`` itself cannot be the one that carries on
        for s in sas[lo:hi]:
            if s is not silent and s.last_ts > after_ts:
                return True
    return False


def _child_times(t) -> list:

    out = []
    for sa in t.ike_sas:
        for x in sa.exchanges:
            if x.exch == ExchangeType.QUICK_MODE:
                done = x.last_step >= 2 and len({m.src for m in x.msgs}) >= 2
            elif x.exch == ExchangeType.IKE_AUTH:
                done = sa.established and bool(x.responses)
            elif x.exch == ExchangeType.CREATE_CHILD_SA:
                done = any(m.sk_next not in (None, PayloadV2.N) for m in x.responses)
            else:
                continue
            if done:
                out.append(x.msgs[-1].ts)
    out.sort()
    return out


def _mtu_pattern(ctx, t, big, back) -> str | None:
    """``back`` answered before the first large packet of ``big`` and then sent nothing while
    ``big`` kept sending large packets (retransmissions) for a while: ``"silent"`` when ``back``
    never spoke again, ``"stalled"`` when it stayed silent through the retransmissions and small
    packets resumed afterwards (pings pass, bulk transfers die), else None."""
    th = ctx.th
    fl = big.first_large_ts
    if fl is None or big.large < MTU_MIN_LARGE:
        return None
    if back.packets <= 1 or back.first_ts >= fl:
        return None  # the reverse direction never answered anything before
    if ctx.now - fl < th.one_way_window:
        return None  # absence needs time
    if back.last_ts <= fl + MTU_SLACK:
        if big.last_large_ts - back.last_ts < MTU_PERSIST:
            return None
        if _takeover(ctx, t, back, back.last_ts, th.one_way_window, th.rekey_drain, big):
            return None
        return "silent"
    # small packets came back later: was the reverse direction silent all through the large
    # packets' retransmissions?  Only whole time bins of ``back`` can tell (at least two).
    t0, t1 = fl + MTU_SLACK, big.last_large_ts
    if t1 - t0 < th.one_way_window / 2 or t1 - t0 < 2 * back.bin_width:
        return None
    if back.packets_between(t0, t1):
        return None
    if _takeover(ctx, t, back, t0, th.one_way_window, th.rekey_drain, big):
        return None
    return "stalled"


def _quoted_vpn(q):
    """'ESP' / 'UDP 4500' / 'UDP 500' / 'AH' for a quoted datagram of the VPN, else None."""
    if q is None:
        return None
    proto, sport, dport = q.proto, q.sport, q.dport
    if proto == IpProto.ESP:
        return "ESP"
    if proto == IpProto.AH:
        return "AH"
    if proto == IpProto.UDP and Port.NAT_T in (sport, dport):
        return "UDP 4500"
    if proto == IpProto.UDP and Port.IKE in (sport, dport):
        return "UDP 500"
    return None
