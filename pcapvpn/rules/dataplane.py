"""Dataplane: does ESP flow both ways, in order, on the agreed SPIs?

The facts come from :mod:`pcapvpn.track.esp` (per-SA sequence analysis with a real anti-replay
window, sizes, time bins, fragments) and from the tunnels (:mod:`pcapvpn.track.tunnels`: the two
SAs of a child SA paired).  No bytes are parsed here.

Protocol background: RFC 4303 §2.2 (the first packet of an SA carries sequence number 1; the
counter never cycles without ESN), §3.4.3 (the receiver's anti-replay window: 32 packets minimum,
64 the default; packets below the window or seen before are dropped), §2.2.1 (ESN);
RFC 4302 (AH: the same sequence rules); RFC 1191 / RFC 8201 (path MTU discovery with ICMP
"fragmentation needed" / ICMPv6 "packet too big"); RFC 4459 (MTU and fragmentation issues with
tunnels).

What a capture can and cannot say: a packet missing at the capture point was lost between the
sender and the capture point, or by the capture itself; loss after the capture point is
invisible.  Absence (one-way, no traffic) needs time: nothing is said when the capture ends less
than ``one_way_window`` after the flowing side started.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from dissect.vpn.ip import IpProto, Port, icmp_too_big, is_multicast
from dissect.vpn.registry import ExchangeType, PayloadV2
from pcapvpn.findings import declare, make
from pcapvpn.rules import rule
from pcapvpn.rules.common import (
    MAX_EVIDENCE_FRAMES, MaxTree, host_filter, ike_filter, ip_text, seen_working,
)
from pcapvpn.track.tunnels import PAIR_WINDOW

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

declare("ESP_ONE_WAY", "dataplane", "error",
        "ESP flows in one direction of a child SA and nothing comes back on the other (no SA at "
        "all, or the reverse SA stopped while this one continued): the receiving peer drops the "
        "packets (SPI unknown to it, wrong keys, policy mismatch) or its answers take another "
        "path.",
        ["Look at the receiving peer first: does it have the SA (ip xfrm state / 'ipsec statusall' "
         "/ 'show crypto ipsec sa')? Are its decrypt counters rising (Cisco '#pkts decaps', Linux "
         "XfrmInNoStates / XfrmInStateProtoError in /proc/net/xfrm_stat)?",
         "If it decrypts but does not answer: check routing and firewall rules for the inner "
         "traffic on the receiving side, and that the traffic selectors (leftsubnet/rightsubnet, "
         "crypto ACL) match on both peers.",
         "If its answers leave by another path (asymmetric routing, another uplink), they never "
         "cross this capture point: capture on the peer itself.",
         "One-way by nature (syslog, NetFlow/SNMP traps inside the tunnel) is normal: check what "
         "the flowing side sends."])
declare("CAPTURE_ONE_DIRECTION", "capture", "warning",
        "The capture holds traffic from one gateway of a pair only: nothing at all (no IKE, no "
        "ESP, no NAT keepalive) from the other.  Either the capture sees one direction only "
        "(a mirror/SPAN of one direction, asymmetric routing around the capture point) or the "
        "other gateway never sends; the capture alone cannot tell.",
        ["Mirror both directions (SPAN 'both', or capture on the gateway itself) and capture "
         "again.",
         "If the capture point does see both directions, treat it as one-way ESP: check that the "
         "silent gateway has the SA and answers."],
        failure=False)
declare("ESP_SEQUENCE_GAP", "dataplane", "warning",
        "ESP sequence numbers were skipped and never arrived (inside the anti-replay window): "
        "packets were lost between the sender and the capture point, or by the capture itself.",
        ["Check the capture for drops first (pcapng interface statistics, tcpdump's 'dropped by "
         "kernel'); a capture on a busy mirror port loses packets itself.",
         "Compare with the sender's and receiver's counters (Linux 'ip -s xfrm state', Cisco "
         "'show crypto ipsec sa' #pkts encaps/decaps) to locate the loss.",
         "Loss in bursts points to congestion or policing on the path (check interface drops and "
         "QoS/policers on the WAN link); loss of large packets only points to MTU."])
declare("ESP_REPLAY", "dataplane", "warning",
        "The same ESP sequence number arrived twice (not a capture copy), or the sequence "
        "restarted at a low number on the same SPI: the receiver's anti-replay check drops these "
        "packets (RFC 4303 §3.4.3).",
        ["Duplicates on the network: look for a layer-2 loop, a duplicating load balancer or "
         "WAN optimiser, or redundant links both delivering the packet.",
         "A sequence restart on the same SPI: the sender restarted (or a cluster failed over "
         "without SA sync) and reuses the SPI; the receiver rejects the new packets as replays "
         "until the SA is renegotiated: clear the SA on both peers, and enable SA sync / DPD.",
         "strongSwan/Linux count these in XfrmInStateSeqError (/proc/net/xfrm_stat); Cisco "
         "'show crypto ipsec sa' shows 'replay failed'."])
declare("ESP_REORDER", "dataplane", "warning",
        "ESP packets arrived out of order by more than a receiver's anti-replay window accepts "
        "(32 is the minimum, 64 the default): a receiver drops them as too old although they are "
        "valid.  Reordering inside the window is harmless (info).",
        ["Find the cause of reordering: load balancing of the ESP flow over parallel links "
         "(ECMP/LACP per packet), QoS queues treating packets of one SA differently.",
         "Enlarge the replay window on the receiver (strongSwan replay_window, Linux 'ip xfrm "
         "state ... replay-window', Cisco 'crypto ipsec security-association replay "
         "window-size 1024') or use separate SAs per QoS class."])
# an IKE SA alone where no traffic was sent is healthy (docs/verdicts.md): the absence of ESP
# is reported for what it may mean, never as a failure of the tunnel
declare("ESP_NO_TRAFFIC", "dataplane", "info",
        "The IKE SA was established but the tunnel carried no ESP at all afterwards: the child "
        "SA is unused, its traffic is not routed into the tunnel, or the capture does not see "
        "the ESP (capture filter, other path).",
        ["Send traffic that matches the traffic selectors (ping a host behind the peer from a host "
         "behind this gateway) and check it enters the tunnel (routing, policy, NAT exemption).",
         "Check the capture filter: 'udp port 500 or udp port 4500' misses native ESP (IP "
         "protocol 50); use 'udp port 500 or udp port 4500 or esp'.",
         "An idle child SA (no traffic to send) is normal: nothing can be concluded without "
         "traffic."], failure=False)
declare("MTU_BLACK_HOLE", "dataplane", "warning",
        "Inferred: large ESP packets were sent again and again (retransmitted) while the reverse "
        "direction sent nothing back — it went silent right after the first large packet, or "
        "stayed silent until small packets resumed — the pattern of a path MTU black hole (large "
        "packets dropped on the path, the ICMP that would say so never arriving; small packets "
        "such as pings still pass).",
        ["Test with pings of growing size and DF set through the tunnel (ping -M do -s 1400 / "
         "ping -f -l 1400) to find the largest size that passes.",
         "Clamp TCP MSS on the tunnel (Linux iptables/nft TCPMSS --clamp-mss-to-pmtu or "
         "--set-mss 1360; Cisco 'ip tcp adjust-mss 1360') or lower the tunnel MTU.",
         "Allow ICMP 'fragmentation needed' (type 3 code 4) and ICMPv6 'packet too big' through "
         "the firewalls on the path so path MTU discovery works."])
declare("PATH_MTU_ICMP", "dataplane", "warning",
        "A router reported that ESP / UDP 4500 packets of the tunnel are too big for the next "
        "link (ICMP fragmentation needed / ICMPv6 packet too big, with the MTU): the encapsulated "
        "packets exceed the path MTU.",
        ["Make sure the gateway that sent the big packets receives these ICMP messages and lowers "
         "its packet size (path MTU discovery); if it keeps sending the same sizes, clamp the "
         "TCP MSS inside the tunnel or lower the tunnel MTU to the reported MTU minus the ESP "
         "overhead (about 60-80 bytes).",
         "Cisco: 'crypto ipsec df-bit clear' / 'ip tcp adjust-mss'; Linux: TCPMSS clamping."])
declare("ESP_FRAGMENTED", "dataplane", "warning",
        "ESP packets were carried in IP fragments (or only fragments of them arrived): after "
        "encapsulation the packets exceed the path MTU.  Fragments cost reassembly at the "
        "receiver and are dropped by many NATs and firewalls.",
        ["Clamp the TCP MSS inside the tunnel (e.g. 1360) or lower the tunnel MTU so that ESP "
         "packets fit the path MTU.",
         "Prefer fragmentation before encryption (Cisco 'crypto ipsec fragmentation "
         "before-encryption'), so that each fragment is a whole ESP packet.",
         "If fragments are incomplete at the capture point, a device on the path drops "
         "fragments: find it, or avoid fragmentation as above."])
declare("ESP_SEQUENCE_NEAR_WRAP", "dataplane", "warning",
        "An SA's 32-bit sequence counter is close to 2^32 and no extended sequence number wrap "
        "was seen: without ESN the sender must rekey before the counter cycles (RFC 4303 "
        "§3.3.3), otherwise the SA stops.",
        ["Check the SA lifetime in packets/bytes (strongSwan lifepackets/lifebytes, Cisco "
         "'lifetime kilobytes') or negotiate ESN (strongSwan esp=...-esn, Cisco 'esn')."])
declare("CAPTURE_MID_SESSION", "capture", "info",
        "ESP SAs were already running when the capture started (their first sequence numbers "
        "are far from 1): their negotiation and first packets are not in the capture.",
        ["To see the negotiation, start the capture first, then bring the tunnel up (or clear the "
         "SAs: 'swanctl --terminate', 'clear crypto sa')."],
        failure=False)


# -- helpers -----------------------------------------------------------------------------------


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


# -- indexes (built once per evaluation: a rule never scans all SAs for each SA) ---------------

#: SAs looked at for one question before the answer is left open ("cannot tell"); a question
#: cut short is counted in the CAPTURE_LIMITS finding
LOOKUP_BUDGET = 64
_NEG = float("-inf")


def _ix(ctx) -> "_Index":
    ix = getattr(ctx, "_dataplane_ix", None)
    if ix is None:
        ix = ctx._dataplane_ix = _Index(ctx)
    return ix


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
            state = self.state
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
            h = self._heard = {"ike": ike_from, "esp": esp_from, "esp_to": esp_to, "ka": ka}
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
    # ... and the tunnel's SAs from the peer to anywhere else
    tesp = ix.tunnel_esp(t)
    for d in {t.a, t.b} - others:
        e = tesp.get((peer, d))
        if e is not None:
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
    parts = []
    if h["ike"]:
        parts.append(f"{h['ike']} IKE message(s)")
    if h["esp"]:
        parts.append(f"{h['esp']} ESP/AH packet(s) on other SAs")
    if h["keepalives"]:
        parts.append(f"{h['keepalives']} NAT keepalive(s)")
    if h["ike_elsewhere"] or h["esp_elsewhere"]:
        parts.append(f"{h['ike_elsewhere'] + h['esp_elsewhere']} IKE/ESP packet(s) to other "
                     f"peers")
    return ", ".join(parts)


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


# -- one-way ESP -------------------------------------------------------------------------------


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


def _replaced(ctx, t, flow, window, drain) -> bool:
    """``flow`` is an old generation draining: it ran briefly, and a newer SA of the same
    direction that has a partner took over and kept going."""
    if flow.last_ts - flow.first_ts > drain:
        return False
    g = _ix(ctx).paired_direction(t, (flow.src, flow.dst, flow.proto))
    if g is None:
        return False
    firsts, ends = g
    i = bisect_right(firsts, flow.last_ts + window) - 1
    # (``flow`` is unpaired wherever this is asked: it is not among the paired SAs)
    return i >= 0 and ends[i] >= flow.last_ts + window


def _reverse_covers(ctx, t, flow, partners, window) -> bool:
    """An SA of the opposite direction answers ``flow`` although the pairing did not put them
    together: it overlaps ``flow`` in time and is unpaired (or in another tunnel, its source
    having moved), or its partner stopped early (a rekey generation paired by start time with
    the wrong SA).

    Unpaired candidates are one bisection; paired ones of this tunnel are looked at one by one,
    all of them when they are few, else the ``LOOKUP_BUDGET`` nearest the two ends of the
    window: beyond that the question is left open (counted; no one-way finding is made)."""
    ix = _ix(ctx)
    x, y = flow.last_ts + window, flow.first_ts - window
    groups = []
    for d in _srcs(flow):
        g = ix.reverse_group((d, flow.proto, flow.dst))
        if g is None:
            continue
        if g.any_without_partner(t, x, y):
            return True
        mine = g.paired.get(id(t))
        if mine is not None:
            groups.append(mine)
    cut = False
    for starts, sas in groups:
        hi = bisect_right(starts, x)
        if hi <= LOOKUP_BUDGET:
            todo = sas[:hi]
        else:
            lo = bisect_left(starts, y, 0, hi)
            half = LOOKUP_BUDGET // 2
            todo = sas[lo:min(hi, lo + half)] + sas[max(lo + half, hi - half):hi]
            cut = True
        for s in todo:
            if _answers(s, flow, partners, window):
                return True
    if cut:
        ctx.cut_short("one_way_reverse", flow.first_ref, flow.first_ts)
        return True
    return False


def _parallel_children(ctx, t, ts) -> int:
    """Child SAs negotiated in this tunnel within ``PAIR_WINDOW`` of ``ts``: completed IKEv1
    Quick Modes, established IKE_AUTH exchanges, answered CREATE_CHILD_SA (keyless view).  The
    completion times of a tunnel are sorted once per evaluation: a count is two bisections."""
    times = _ix(ctx).child_times(t)
    return bisect_right(times, PAIR_WINDOW, key=lambda x: x - ts) - \
        bisect_left(times, -PAIR_WINDOW, key=lambda x: x - ts)


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


def _direction_answers(ctx, t, flow, window) -> bool:
    """With parallel child SAs negotiated together (two Quick Modes, both peers initiating)
    the pairing of ESP SAs by start time is a guess, and one direction may spread over more SAs
    than the other: the tunnel direction as a whole answers ``flow`` when ESP of its protocol
    comes back from its destination over its whole span."""
    span = _ix(ctx).direction_span(t, (flow.proto, flow.dst, flow.src))
    if span is None:
        return False
    return span[0] <= flow.first_ts + window and span[1] >= flow.last_ts - window


def _answers(s, flow, partners, window) -> bool:
    if s.first_ts > flow.last_ts + window or s.last_ts < flow.first_ts - window:
        return False
    p = partners.get(id(s))
    if p is None or p.last_ts < min(flow.last_ts, s.last_ts) - window:
        return True
    # its partner is an older SA that ``flow`` replaced (rekey)
    return p.first_ts <= flow.first_ts and p.last_ts < flow.last_ts - ANSWER_WINDOW


@rule
def one_way(ctx):
    th = ctx.th
    W = th.one_way_window
    for t in ctx.state.tunnels:
        if is_multicast(t.a) or is_multicast(t.b):
            continue  # multicast SAs are one-way by nature
        pairs = _pairs(t)
        partners = _ix(ctx).partners(t)
        capture_only = []  # (flow SA) nothing at all from the silent side, no IKE in the tunnel
        for x, y in pairs:
            if (x is None) != (y is None):
                flow = x if x is not None else y
                if _reverse_covers(ctx, t, flow, partners, W):
                    continue
                if _parallel_children(ctx, t, flow.first_ts) > 1 and \
                        _direction_answers(ctx, t, flow, W):
                    continue
                silent = flow.dst
                h, last_heard = _heard(ctx, t, silent)
                nothing = not any(h.values())
                if nothing and not t.ike_sas:
                    capture_only.append(flow)
                    continue
                if flow.packets < th.one_way_min_packets:
                    continue
                # absence needs time: the capture runs long enough after the first packet, or
                # the silent peer was heard (other traffic) well after it
                long_enough = ctx.now - flow.first_ts >= W
                heard_after = last_heard is not None and \
                    last_heard - flow.first_ts >= ANSWER_WINDOW
                if not (long_enough or heard_after):
                    continue
                if _replaced(ctx, t, flow, W, th.rekey_drain):
                    continue
                yield _one_way_never(ctx, t, flow, h, nothing, last_heard)
            elif x is not None:
                for flow, back in ((x, y), (y, x)):
                    f = _one_way_stopped(ctx, t, flow, back)
                    if f is not None:
                        yield f
        if capture_only:
            yield _capture_one_direction(ctx, t, capture_only)


def _one_way_never(ctx, t, flow, h, nothing, last_heard):
    silent = ip_text(flow.dst)
    span = flow.last_ts - flow.first_ts
    detail = (f"{flow.packets} {_what(flow)} packet(s) on SPI 0x{_spi(flow)} from "
              f"{ip_text(flow.src)} to {silent} between +{ctx.rel(flow.first_ts)} s and "
              f"+{ctx.rel(flow.last_ts)} s ({span:.1f} s); 0 packets on any SA from {silent} "
              f"back to {ip_text(flow.src)} for this child SA (the capture runs "
              f"{ctx.now - flow.first_ts:.1f} s after the first packet).")
    basis = "observed"
    if nothing:
        basis = "inferred"
        detail += (f" Nothing at all from {silent} is in the capture (only IKE from "
                   f"{ip_text(flow.src)}): the capture may see one direction only — check that "
                   f"it mirrors both directions before blaming {silent}.")
    else:
        detail += f" {silent} is otherwise heard ({_heard_text(h)}"
        if last_heard is not None:
            detail += f", last at +{ctx.rel(last_heard)} s"
        detail += "), so the capture sees that direction: its ESP for this child SA is missing."
    if flow.large and flow.first_large_ts is not None:
        detail += f" {flow.large} of the packets were large (>= {ctx.th.large_packet} bytes)."
    return make(
        "ESP_ONE_WAY", f"{t.id}|never|{flow.proto}|{_spi(flow)}|{flow.dst.hex()}",
        title=f"{_what(flow)} from {ip_text(flow.src)} to {silent} is never answered "
              f"(SPI 0x{_spi(flow)})",
        detail=detail, basis=basis,
        evidence=ctx.evidence(list(flow.first_refs) + [flow.last_ref], flow.first_ts,
                              flow.last_ts, esp_spis=[_spi(flow)],
                              peers=[ip_text(flow.src), silent]),
        wireshark_filter=sa_filter([flow]),
        tunnel=t.id)


def _one_way_stopped(ctx, t, flow, back):
    th = ctx.th
    W = th.one_way_window
    T = back.last_ts
    if flow.last_ts - T < W:
        return None
    after = flow.packets_between(T)
    if after < th.one_way_min_packets:
        return None
    if _takeover(ctx, t, back, T, W, th.rekey_drain, flow):
        return None
    silent = ip_text(back.src)
    detail = (f"{ip_text(back.src)} sent {back.packets} packet(s) on SPI 0x{_spi(back)} until "
              f"+{ctx.rel(T)} s and then stopped, while {ip_text(flow.src)} kept sending on SPI "
              f"0x{_spi(flow)} until +{ctx.rel(flow.last_ts)} s ({flow.last_ts - T:.1f} s longer, "
              f"at least {after} more packet(s)); no other SA from {silent} took over.")
    sent = _ix(ctx).tunnel_ike(t)
    asked = _count_between(sent.get(flow.src), T, flow.last_ts)
    told = _count_between(sent.get(back.src), T, flow.last_ts) if back.src != flow.src else asked
    if asked and not told:
        detail += (f" {silent} also stopped answering IKE ({asked} IKE message(s) from "
                   f"{ip_text(flow.src)} after +{ctx.rel(T)} s got no reply): the peer itself "
                   f"went away (restart, crash, path down), not only its ESP — see the stability "
                   f"findings.")
    elif told:
        detail += f" {silent} still talks IKE ({told} message(s) after +{ctx.rel(T)} s)."
    if _mtu_pattern(ctx, t, flow, back):
        detail += " Large packets were being sent when the answers stopped: see MTU_BLACK_HOLE."
    return make(
        "ESP_ONE_WAY", f"{t.id}|stopped|{back.proto}|{_spi(back)}|{back.dst.hex()}",
        title=f"{_what(back)} from {silent} stopped at +{ctx.rel(T)} s while "
              f"{ip_text(flow.src)} kept sending",
        detail=detail, basis="observed",
        evidence=ctx.evidence([back.last_ref, flow.last_ref], T, flow.last_ts,
                              esp_spis=[_spi(back), _spi(flow)],
                              peers=[ip_text(flow.src), silent]),
        wireshark_filter=sa_filter([back, flow]),
        tunnel=t.id)


def _count_between(times, lo, hi) -> int:
    """How many of the sorted ``times`` are in (lo, hi]."""
    if not times:
        return 0
    return max(0, bisect_right(times, hi) - bisect_right(times, lo))


def _capture_one_direction(ctx, t, flows):
    src = {f.src for f in flows}
    dst = {f.dst for f in flows}
    pk = sum(f.packets for f in flows)
    first = min(f.first_ts for f in flows)
    last = max(f.last_ts for f in flows)
    sender = ", ".join(sorted(ip_text(a) for a in src))
    silent = ", ".join(sorted(ip_text(a) for a in dst))
    listed = ", ".join(f"0x{_spi(f)} ({f.packets} pkts)" for f in flows[:MAX_LISTED])
    more = f" and {len(flows) - MAX_LISTED} more" if len(flows) > MAX_LISTED else ""
    detail = (f"{pk} ESP/AH packet(s) from {sender} to {silent} on {len(flows)} SA(s) "
              f"[{listed}{more}] between +{ctx.rel(first)} s and +{ctx.rel(last)} s; nothing at "
              f"all from {silent} in the capture: no IKE, no ESP/AH, no NAT keepalive, and no IKE "
              f"for this gateway pair either.")
    if ctx.now - first < ctx.th.one_way_window:
        detail += (f" The capture also ends {ctx.now - first:.1f} s after the first packet "
                   f"(less than {ctx.th.one_way_window:g} s), too soon to call the tunnel one-way.")
    refs = []
    for f in flows:
        refs.extend(f.first_refs[:2])
    f0 = flows[0]
    return make(
        "CAPTURE_ONE_DIRECTION", f"{t.id}|one-direction",
        title=f"Only {sender} -> {silent} is in the capture",
        detail=detail, basis="inferred",
        evidence=ctx.evidence(refs, first, last, esp_spis=_spis(flows),
                              peers=[sender, silent]),
        wireshark_filter=host_filter(f0.ipver, t.a, t.b),
        tunnel=t.id)


# -- sequence numbers --------------------------------------------------------------------------


def _all_sas(ctx):
    return [(t, s) for t in ctx.state.tunnels for s in t.esp_sas]


def _shared_counters(sas) -> set:
    """ids of SAs whose sender uses one SPI towards several destinations (manually keyed SAs,
    e.g. OSPFv3 with AH to ff02::5 and to its neighbour, RFC 4552): one sequence counter spread
    over several destinations, so a per-destination sequence analysis means nothing."""
    by = {}
    for s in sas:
        by.setdefault((s.proto, s.src, s.spi), []).append(s)
    out = set()
    for group in by.values():
        if len({s.dst for s in group}) > 1:
            out.update(id(s) for s in group)
    return out


@rule
def sequence(ctx):
    th = ctx.th
    shared = _shared_counters(ctx.state.esp_sas)
    for t, sa in _all_sas(ctx):
        if id(sa) in shared:
            continue
        spi = _spi(sa)
        peers = [ip_text(sa.src), ip_text(sa.dst)]
        lost = sa.lost
        if lost >= max(1, th.seq_gap_min):
            gaps = sa.lost_gaps()
            pct = sa.loss_pct
            shown = "; ".join(f"{m} before seq {g} at +{ctx.rel(ts)} s (frame {ref[1]})"
                              for ts, ref, _e, g, m in gaps[:MAX_LISTED])
            detail = (f"{lost} of {sa.expected} sequence numbers ({pct:.3g} %) between "
                      f"{sa.min_seq} and {sa.max_seq} never arrived on {_label(sa)} "
                      f"({sa.packets} packets seen). Largest gap: {sa.max_gap}. First gaps: "
                      f"{shown}.")
            if sa.too_old:
                detail += (f" {sa.too_old} of them arrived later, beyond the "
                           f"{th.replay_window}-packet window (a receiver drops them as too old).")
            if sa.capture_duplicates:
                detail += f" {sa.capture_duplicates} capture copies were not counted."
            detail += (" The loss happened between the sender and the capture point, or in the "
                       "capture itself.")
            yield make(
                "ESP_SEQUENCE_GAP", f"{sa.proto}|{spi}|{sa.dst.hex()}|gap",
                title=f"{lost} packet(s) lost on {_what(sa)} SPI 0x{spi} "
                      f"({ip_text(sa.src)} -> {ip_text(sa.dst)}, {pct:.3g} %)",
                detail=detail, basis="observed",
                evidence=ctx.evidence([g[1] for g in gaps], gaps[0][0] if gaps else sa.first_ts,
                                      gaps[-1][0] if gaps else sa.last_ts, esp_spis=[spi],
                                      peers=peers),
                wireshark_filter=sa_filter([sa]), tunnel=t.id)
        if sa.duplicates or sa.resets:
            parts = []
            if sa.duplicates:
                parts.append(f"{sa.duplicates} sequence number(s) arrived twice (not capture "
                             f"copies: more than {th.duplicate_window * 1000:g} ms after the "
                             f"previous packet)")
            if sa.resets:
                r = sa.reset_events[0]
                parts.append(f"the sequence restarted {sa.resets} time(s) on the same SPI (first "
                             f"at +{ctx.rel(r[0])} s, frame {r[1][1]}: from {r[2]} to {r[3]}); "
                             f"a receiver that kept the SA drops the new packets as replays")
            detail = f"On {_label(sa)}: " + "; ".join(parts) + "."
            if sa.capture_duplicates:
                detail += (f" Besides, {sa.capture_duplicates} capture copies (within "
                           f"{th.duplicate_window * 1000:g} ms) were counted apart "
                           f"(CAPTURE_DUPLICATES).")
            refs = [e[1] for e in sa.reset_events] or [sa.last_ref]
            yield make(
                "ESP_REPLAY", f"{sa.proto}|{spi}|{sa.dst.hex()}|replay",
                title=(f"Replayed/restarted sequence numbers on {_what(sa)} SPI 0x{spi} "
                       f"({ip_text(sa.src)} -> {ip_text(sa.dst)})"),
                detail=detail, basis="observed",
                evidence=ctx.evidence(refs, sa.first_ts, sa.last_ts, esp_spis=[spi],
                                      peers=peers),
                wireshark_filter=sa_filter([sa]), tunnel=t.id)
        if sa.reordered:
            # late packets from before the first one seen are reordering too
            beyond = sa.beyond32
            detail = (f"{sa.reordered} packet(s) arrived below the highest sequence number "
                      f"already seen on {_label(sa)}; deepest {sa.max_reorder} packets. "
                      f"{sa.beyond64} would be dropped by a receiver with a 64-packet window, "
                      f"{sa.beyond32} by one with a 32-packet window.")
            sev = None if beyond else "info"
            title = (f"ESP reordering beyond the replay window on SPI 0x{spi}" if beyond
                     else f"ESP reordering within the replay window on SPI 0x{spi}")
            if not beyond:
                detail += " Within every window: harmless."
            yield make(
                "ESP_REORDER", f"{sa.proto}|{spi}|{sa.dst.hex()}|reorder",
                title=title + f" ({ip_text(sa.src)} -> {ip_text(sa.dst)})",
                detail=detail, basis="observed", severity=sev,
                evidence=ctx.evidence([sa.first_ref, sa.last_ref], sa.first_ts, sa.last_ts,
                                      esp_spis=[spi], peers=peers),
                wireshark_filter=sa_filter([sa]), tunnel=t.id)
        if sa.near_wrap:
            yield make(
                "ESP_SEQUENCE_NEAR_WRAP", f"{sa.proto}|{spi}|{sa.dst.hex()}|wrap",
                title=f"Sequence counter of SPI 0x{spi} close to 2^32 ({sa.max_seq})",
                detail=(f"{_label(sa)} reached sequence number {sa.max_seq} "
                        f"({(1 << 32) - 1 - sa.max_seq} left before the 32-bit counter cycles) "
                        f"and no ESN wrap was seen."),
                basis="observed",
                evidence=ctx.evidence([sa.last_ref], sa.last_ts, None, esp_spis=[spi],
                                      peers=peers),
                wireshark_filter=sa_filter([sa]), tunnel=t.id)


# -- no ESP after the IKE SA -------------------------------------------------------------------


@rule
def no_traffic(ctx):
    W = ctx.th.one_way_window
    for t in ctx.state.tunnels:
        if is_multicast(t.a) or is_multicast(t.b):
            continue
        ests = []
        for sa in t.ike_sas:
            ts = _established_ts(sa)
            if ts is not None and _child_expected(sa) and seen_working(sa):
                ests.append((ts, sa))
        if not ests:
            continue
        ests.sort(key=lambda e: e[0])
        est_ts, sa = ests[0]
        if any(s.last_ts >= est_ts for s in t.esp_sas):
            continue
        if ctx.now - est_ts < W:
            continue  # absence needs time
        natt = any(Port.NAT_T in (m.sport, m.dport) for m in sa.messages)
        where = ("UDP 4500, NAT traversal being in use" if natt
                 else "IP protocol 50 or UDP 4500")
        detail = (f"IKE SA {sa.id} between {ip_text(t.a)} and {ip_text(t.b)} was established at "
                  f"+{ctx.rel(est_ts)} s; the capture runs {ctx.now - est_ts:.1f} s longer and "
                  f"holds no ESP/AH between them after that (expected on {where}).")
        if len(ests) > 1:
            detail += f" {len(ests)} established IKE SAs in this tunnel, none followed by ESP."
        if not ctx.state.esp_sas:
            detail += " The capture holds no ESP/AH at all (between any hosts)."
        detail += (" An idle child SA (nothing to send) cannot be excluded, nor a capture filter "
                   "that leaves ESP out.")
        refs = []
        for m in sa.messages:
            if m.ts >= est_ts:
                refs.extend(m.frames)
                break
        yield make(
            "ESP_NO_TRAFFIC", f"{t.id}|no-esp|{sa.id}",
            title=f"No ESP after the IKE SA between {ip_text(t.a)} and {ip_text(t.b)} was "
                  f"established",
            detail=detail, basis="observed",
            evidence=ctx.evidence(refs, est_ts, None, ike_spis=[sa.ispi.hex(), sa.rspi.hex()],
                                  peers=[ip_text(t.a), ip_text(t.b)]),
            wireshark_filter=ike_filter(sa), tunnel=t.id)


# -- MTU ---------------------------------------------------------------------------------------


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


@rule
def mtu_black_hole(ctx):
    th = ctx.th
    for t in ctx.state.tunnels:
        if is_multicast(t.a) or is_multicast(t.b):
            continue
        for x, y in _pairs(t):
            if x is None or y is None:
                continue
            for big, back in ((x, y), (y, x)):
                kind = _mtu_pattern(ctx, t, big, back)
                if kind is None:
                    continue
                fl = big.first_large_ts
                icmp = _icmp_for(ctx, big)
                if kind == "silent":
                    detail = (f"{ip_text(back.src)} answered on SPI 0x{_spi(back)} "
                              f"({back.packets} packets) until +{ctx.rel(back.last_ts)} s; from "
                              f"+{ctx.rel(fl)} s {ip_text(big.src)} sent large packets (>= "
                              f"{th.large_packet} bytes of ESP, up to {big.max_len}) on SPI "
                              f"0x{_spi(big)} — {big.large} of them, the last at "
                              f"+{ctx.rel(big.last_large_ts)} s — and nothing came back after "
                              f"the first one.")
                else:
                    detail = (f"From +{ctx.rel(fl)} s {ip_text(big.src)} sent large packets (>= "
                              f"{th.large_packet} bytes of ESP, up to {big.max_len}) on SPI "
                              f"0x{_spi(big)} — {big.large} of them, the last at "
                              f"+{ctx.rel(big.last_large_ts)} s, spaced like retransmissions — "
                              f"and {ip_text(back.src)} sent nothing on SPI 0x{_spi(back)} in "
                              f"all that time, although it had answered small packets before "
                              f"and small packets passed both ways again afterwards (until "
                              f"+{ctx.rel(back.last_ts)} s): small packets get through, large "
                              f"ones do not (a bulk transfer stalls while pings work).")
                if icmp:
                    detail += (f" {len(icmp)} ICMP 'too big' error(s) about this path were seen "
                               f"(MTU {sorted({e.mtu for e in icmp})}): see PATH_MTU_ICMP.")
                else:
                    detail += " No ICMP 'fragmentation needed' / 'packet too big' reached the " \
                              "capture point."
                detail += " Inferred from sizes and timing only (the inner traffic is encrypted)."
                # the stalled form is the state at the end: large packets do not pass while
                # small ones do (the tunnel is failing for any bulk transfer)
                yield make(
                    "MTU_BLACK_HOLE", f"{t.id}|mtu|{big.proto}|{_spi(big)}|{big.dst.hex()}",
                    severity="error" if kind == "stalled" else None,
                    title=f"Possible MTU black hole: large ESP from {ip_text(big.src)} to "
                          f"{ip_text(big.dst)} never answered",
                    detail=detail, basis="inferred",
                    evidence=ctx.evidence([back.last_ref, big.last_ref], fl, big.last_large_ts,
                                          esp_spis=[_spi(big), _spi(back)],
                                          peers=[ip_text(big.src), ip_text(big.dst)]),
                    # both SAs whole: the large packets and the silence of the other way
                    wireshark_filter=sa_filter([big, back]),
                    tunnel=t.id)


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


def _icmp_for(ctx, sa):
    return _ix(ctx).icmp_about(sa.src, sa.dst)


@rule
def path_mtu_icmp(ctx):
    groups: dict = {}
    for e in ctx.state.icmp_errors:
        if not icmp_too_big(e.ipver, e.icmp_type, e.icmp_code):
            continue
        what = _quoted_vpn(e.quoted)
        if what is None:
            continue
        q = e.quoted
        groups.setdefault((q.src, q.dst, what), []).append(e)
    for (qsrc, qdst, what), errs in groups.items():
        t = _ix(ctx).tunnel_between(qsrc, qdst)
        e0 = errs[0]
        mtus = sorted({e.mtu for e in errs if e.mtu})
        reporters = sorted({ip_text(e.src) for e in errs})
        sas = _ix(ctx).esp_between(qsrc, qdst)
        if what == "UDP 4500":
            q = e0.quoted
            sas = [s for s in sas if s.encap == "udp" and s.sport in (q[4], -1)] or sas
        detail = (f"{len(errs)} ICMP{'v6' if e0.ipver == 6 else ''} "
                  f"{'packet too big' if e0.ipver == 6 else 'fragmentation needed'} error(s) "
                  f"from {', '.join(reporters)} about {what} {ip_text(qsrc)} -> {ip_text(qdst)}, "
                  f"between +{ctx.rel(e0.ts)} s and +{ctx.rel(errs[-1].ts)} s; next-hop MTU "
                  f"{', '.join(str(m) for m in mtus) if mtus else 'not given'}.")
        if sas:
            big = max(s.max_len for s in sas)
            detail += (f" The largest ESP packet of {ip_text(qsrc)} to {ip_text(qdst)} carried "
                       f"{big} bytes of {'UDP payload' if sas[0].encap == 'udp' else 'ESP'} "
                       f"(plus IP{'/UDP' if sas[0].encap == 'udp' else ''} headers).")
            later = [s for s in sas if s.last_large_ts is not None
                     and s.last_large_ts > errs[-1].ts]
            if later:
                detail += (" Large packets were still sent after the last error: the sender "
                           "does not adapt (ICMP filtered before it, or DF forced).")
        fld = "icmpv6" if e0.ipver == 6 else "icmp"
        cond = f"{fld}.type == 2" if e0.ipver == 6 else "icmp.type == 3 && icmp.code == 4"
        yield make(
            "PATH_MTU_ICMP", f"pmtu|{qsrc.hex()}|{qdst.hex()}|{what}",
            title=f"{what} from {ip_text(qsrc)} to {ip_text(qdst)} too big for the path "
                  f"(MTU {mtus[0] if mtus else '?'})",
            detail=detail, basis="observed",
            evidence=ctx.evidence([e.ref for e in errs], e0.ts, errs[-1].ts,
                                  esp_spis=_spis(sas),
                                  peers=[ip_text(qsrc), ip_text(qdst)] + reporters),
            wireshark_filter=f"{cond} && {'ipv6' if e0.ipver == 6 else 'ip'}.addr == "
                             f"{ip_text(qdst)}",
            tunnel=t.id if t else None)


# -- fragments ---------------------------------------------------------------------------------


def _incomplete_esp(fs):
    """(what, spi) when an incomplete fragment set is ESP (protocol 50 or UDP 4500), else None."""
    head = fs.head
    if fs.proto == IpProto.ESP:
        return "ESP", head.spi if head is not None else None
    if fs.proto == IpProto.UDP and head is not None and head.spi:
        # spi zero: the non-ESP marker of IKE (the reachability rules' case)
        return "ESP in UDP", head.spi
    return None


@rule
def fragmented(ctx):
    for t in ctx.state.tunnels:
        for sa in t.esp_sas:
            n = getattr(sa, "fragmented", 0)
            if not n:
                continue
            spi = _spi(sa)
            refs = list(getattr(sa, "frag_refs", ()))
            yield make(
                "ESP_FRAGMENTED", f"{sa.proto}|{spi}|{sa.dst.hex()}|frag",
                title=f"{n} {_what(sa)} packet(s) on SPI 0x{spi} arrived in IP fragments",
                detail=(f"{n} of {sa.packets} packets of {_label(sa)} were reassembled from IP "
                        f"fragments (largest ESP packet {sa.max_len} bytes): after encapsulation "
                        f"they exceed the path MTU."),
                basis="observed",
                evidence=ctx.evidence(refs, sa.first_ts, sa.last_ts, esp_spis=[spi],
                                      peers=[ip_text(sa.src), ip_text(sa.dst)]),
                wireshark_filter=f"({sa_filter([sa])}) || ({host_filter(sa.ipver, sa.src, sa.dst)}"
                                 + (" && (ip.flags.mf == 1 || ip.frag_offset > 0))"
                                    if sa.ipver == 4 else " && ipv6.fragment)"),
                tunnel=t.id)
    groups: dict = {}
    for fs in ctx.state.incomplete_fragments:
        r = _incomplete_esp(fs)
        if r is None:
            continue
        groups.setdefault((fs.src, fs.dst, r[0]), []).append((fs, r[1]))
    for (src, dst, what), items in groups.items():
        t = _ix(ctx).tunnel_between(src, dst)
        refs = []
        for fs, _spi_ in items:
            refs.extend(fs.frames)
        spis = sorted({s for _f, s in items if s})
        fs0 = items[0][0]
        yield make(
            "ESP_FRAGMENTED", f"incomplete|{src.hex()}|{dst.hex()}|{what}",
            title=f"{len(items)} fragmented {what} packet(s) from {ip_text(src)} to "
                  f"{ip_text(dst)} arrived incomplete",
            detail=(f"{len(items)} {what} datagram(s) from {ip_text(src)} to {ip_text(dst)} "
                    f"(first at +{ctx.rel(fs0.first_ts)} s) were IP-fragmented and at least one "
                    f"fragment of each never reached the capture point: these ESP packets are "
                    f"lost (dropped fragments, or the capture missed them)."),
            basis="observed",
            evidence=ctx.evidence(refs, fs0.first_ts, items[-1][0].first_ts,
                                  esp_spis=[f"{s:08x}" for s in spis],
                                  peers=[ip_text(src), ip_text(dst)]),
            wireshark_filter=(f"{host_filter(fs0.ipver, src, dst)} && "
                              + ("(ip.flags.mf == 1 || ip.frag_offset > 0)" if fs0.ipver == 4
                                 else "ipv6.fragment")),
            tunnel=t.id if t else None)


# -- capture started mid-session ---------------------------------------------------------------


@rule
def mid_session(ctx):
    W = ctx.th.replay_window
    for t in ctx.state.tunnels:
        late = [s for s in t.esp_sas if s.mid_session(W)]
        if not late:
            continue
        listed = ", ".join(f"0x{_spi(s)} from seq {s.min_seq}" for s in late[:MAX_LISTED])
        more = f" and {len(late) - MAX_LISTED} more" if len(late) > MAX_LISTED else ""
        yield make(
            "CAPTURE_MID_SESSION", f"{t.id}|mid-session",
            title=f"{len(late)} ESP/AH SA(s) between {ip_text(t.a)} and {ip_text(t.b)} were "
                  f"already running when the capture started",
            detail=(f"Their first sequence numbers are far from 1 ({listed}{more}): the SAs were "
                    f"created before the capture, so their negotiation and first packets are not "
                    f"in it, and loss before the first captured packet cannot be measured."),
            basis="observed",
            evidence=ctx.evidence([s.first_ref for s in late], min(s.first_ts for s in late),
                                  None, esp_spis=_spis(late),
                                  peers=[ip_text(t.a), ip_text(t.b)]),
            wireshark_filter=sa_filter(late), tunnel=t.id)
