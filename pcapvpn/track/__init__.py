"""Tracking: per-SA state machines that turn decode events into the model.

:class:`Tracker` is the decoder's sink.  It hands each event to the tracker that owns it (IKE,
ESP/AH, NAT keepalives, ICMP errors, fragments) and, at the end (or at any ``now`` in live mode),
:meth:`Tracker.state` gives the :class:`State` the rules read.  The ESP path is bound straight to
:meth:`pcapvpn.track.esp.EspTracker.esp` (no extra call layer: it runs for millions of packets).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dissect.vpn.ip import NetTuple, TcpFlag
from dissect.vpn.udpencap import FragmentHead
from pcapvpn.limits import Limits
from pcapvpn.events import EncapFlows, NullSink
from pcapvpn.track.vpn import TcpConn
from pcapvpn.thresholds import DEFAULT, Thresholds


@dataclass
class IcmpError:
    ref: tuple
    ts: float
    ipver: int
    src: bytes  # the router / host that sent the ICMP error
    dst: bytes
    icmp_type: int
    icmp_code: int
    mtu: int
    #: the quoted datagram (:class:`dissect.vpn.ip.NetTuple`; None when too short to say)
    quoted: NetTuple | None


@dataclass
class IncompleteFragments:
    first_ts: float
    ipver: int
    src: bytes
    dst: bytes
    proto: int
    ident: int
    frames: tuple
    #: what the first fragment shows of the transport (ports, ESP SPI:
    #: :class:`dissect.vpn.udpencap.FragmentHead`), None when it was never seen
    head: FragmentHead | None
    #: "timeout", "evicted" or "end" (the capture ended before the set could time out)
    why: str = "timeout"


class IkeTcpConn(TcpConn):
    """One TCP connection of IKE over TCP (RFC 9329; the IKE TCP ports, or a stream the decoder
    recognised as IKE/ESP): handshake, resets and bytes each way (reachability evidence).
    ``client`` opened it (the IKE initiator); ``server`` listened on ``port``."""

    __slots__ = ("ipver", "client", "server", "port")

    def __init__(self, ipver, client, cport, server, port, ts, ref):
        super().__init__(cport, ts, ref)
        self.ipver = ipver
        self.client = client
        self.server = server
        self.port = port


class Tracker(NullSink):
    """The decoder's sink: owns the per-protocol trackers."""

    #: the ESP/AH tracker class (several vantage points: pcapvpn.track.vantage.PointEspTracker)
    esp_class = None
    #: live mode (:meth:`evict_least_recent`): at ``Limits.max_flows`` the least recently
    #: active TCP connection / NAT keepalive flow is forgotten to follow a new one (counted:
    #: ``tcp_evicted``, ``KeepaliveTracker.evicted``); offline the new one is counted and not
    #: followed, as before
    lru = False
    tcp_evicted = 0

    def __init__(self, thresholds: Thresholds = DEFAULT, names=None, keys=None, vpn_servers=(),
                 limits: Limits | None = None, interfaces=None):
        from pcapvpn.track.esp import EspTracker
        from pcapvpn.track.inner import PlainTracker
        from pcapvpn.track.ike import IkeTracker
        from pcapvpn.track.nat import KeepaliveTracker
        from pcapvpn.track.vpn import VpnTracker

        self.th = thresholds
        #: bounds of what is kept (pcapvpn.limits.Limits); drops are counted (``limits_hit``)
        self.limits = limits = limits or Limits()
        self.names = list(names or [])
        #: pcapvpn.decrypt.keys.KeyStore (--keys) or None
        self.keys = keys or None
        self.ike_tracker = IkeTracker(thresholds, self.names, self.keys, limits)
        self.esp_tracker = (self.esp_class or EspTracker)(thresholds, limits)
        self.keepalive_tracker = KeepaliveTracker(thresholds)
        self.keepalive_tracker.MAX_FLOWS = limits.max_flows
        #: ESP decryption (opt-in per SA): the decoder hands ``esp_payload`` the bytes of ESP
        #: packets whose SPI is in ``keyed_spis`` (None: no ESP keys, nothing extra per packet)
        self.inner_tracker = None
        self.keyed_spis = None
        #: plaintext views (tunnel interfaces, LAN sides, traffic beside a tunnel) and decrypted
        #: ESP: the one inner model (``interfaces``: file index -> the reader's interfaces)
        self.plain_tracker = PlainTracker(interfaces, self.names)
        self.plain_tracker.max_flows = limits.plain_max_flows
        self.plain_tracker.max_dns = limits.plain_max_dns
        # ARP targets per view: at most as many as the conversations followed (a target is a
        # host a conversation would reach): MAX_ARP offline, ``--max-sas`` live
        self.plain_tracker.max_arp = min(self.plain_tracker.max_arp, limits.plain_max_flows)
        self.plain = self.plain_tracker.plain
        self.plain_tcp = self.plain_tracker.plain_tcp
        self.link_other = self.plain_tracker.link_other
        if self.keys is not None and (self.keys.esp or self.keys.esp_all):
            from pcapvpn.track.inner import InnerTracker

            self.inner_tracker = InnerTracker(self.keys, self.esp_tracker)
            self.keyed_spis = self.inner_tracker.keyed_spis
            self.esp_payload = self.inner_tracker.esp_payload
            self.inner_tracker.plain = self.plain_tracker
        # hot paths bound directly
        self.esp = self.esp_tracker.esp
        self.esp_batch = self.esp_tracker.esp_batch
        self.ah = self.esp_tracker.ah
        self.keepalive = self.keepalive_tracker.keepalive
        # VPNs beside IPsec (OpenVPN, WireGuard, L2TP, PPTP, SSL-VPN): pcapvpn.track.vpn
        self.vpn_tracker = VpnTracker(thresholds, vpn_servers, limits.vpn_max_tunnels, limits)
        self.vpn_udp = self.vpn_tracker.udp
        self.vpn_tcp = self.vpn_tracker.tcp
        self.vpn_tcp_segment = self.vpn_tracker.tcp_segment
        self.gre = self.vpn_tracker.gre
        if self.inner_tracker is not None:  # L2TP/IPsec: decrypted UDP 1701 to the VPN tracker
            self.inner_tracker.vpn_udp = self.vpn_udp
        self.icmp_errors: list[IcmpError] = []
        self.icmp_dropped = 0
        self.incomplete: list[IncompleteFragments] = []
        self.incomplete_dropped = 0
        #: IKE-over-TCP connections by (client, client port, server, server port); live: least
        #: recently active first (a plain dict keeps insertion order: a connection is moved to
        #: the end by taking it out and putting it back; an OrderedDict's links and node table
        #: cost ~60 bytes a connection more, and a flood keeps ``max_flows`` of them)
        self.tcp: dict = {}
        self.tcp_dropped = 0
        #: (server address, port) of the last connection that did not share them
        self._tcp_server = (None, None)
        #: UDP flows framed as on port 4500 on other ports (custom NAT-T ports), learnt from IKE
        #: after a non-ESP marker; the decoder reads it (pcapvpn.events.EncapFlows)
        self.encap_flows = EncapFlows(limits.max_flows)
        self.decode_errors: list = []
        self.first_ts = None
        self.last_ts = None

    def ike_admit(self, ref, ts, transport, sport, dport, key, size) -> bool:
        return self.ike_tracker.ike_admit(ref, ts, transport, sport, dport, key, size)

    def ike(self, ref, ts, ipver, src, dst, sport, dport, transport, msg, frames):
        if msg.marker:
            self.encap_flows.learn(ref, ts, src, dst, sport, dport, transport, msg)
        self.ike_tracker.ike(ref, ts, ipver, src, dst, sport, dport, transport, msg, frames)

    def ike_rejected(self, ref, ts, ipver, src, dst, sport, dport, transport, data, reason,
                     frames):
        self.ike_tracker.ike_rejected(ref, ts, ipver, src, dst, sport, dport, transport, data,
                                  reason, frames)

    def esp_tcp(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, length):
        self.esp_tracker.esp(ref, ts, ipver, src, dst, sport, dport, spi, seq, length, "tcp")

    def icmp_error(self, ref, ts, ipver, src, dst, icmp_type, icmp_code, mtu, quoted):
        if len(self.icmp_errors) >= self.limits.max_flows:
            self.icmp_dropped += 1
            return
        self.icmp_errors.append(IcmpError(ref, ts, ipver, src, dst, icmp_type, icmp_code, mtu,
                                          quoted))

    def fragments_incomplete(self, first_ts, ipver, src, dst, proto, ident, frames, head, why):
        if len(self.incomplete) >= self.limits.max_flows:
            self.incomplete_dropped += 1
            return
        self.incomplete.append(IncompleteFragments(first_ts, ipver, src, dst, proto, ident,
                                                   frames, head, why))

    def esp_fragmented(self, ipver, src, dst, spi, frames, proto):
        self.esp_tracker.fragmented(ipver, src, dst, spi, frames, proto)

    def tcp_segment(self, ref, ts, ipver, src, dst, sport, dport, flags, length):
        tcp = self.tcp
        key = found = (src, sport, dst, dport)
        c = tcp.get(key)
        if c is None:
            found = (dst, dport, src, sport)
            c = tcp.get(found)
        syn_only = flags & (TcpFlag.SYN | TcpFlag.ACK) == TcpFlag.SYN
        if c is not None and syn_only and (c.closed or c.synack):
            c = None  # a new connection on the same ports
        if c is None:
            if len(tcp) >= self.limits.max_flows:
                if not self.lru:
                    self.tcp_dropped += 1
                    return
                del tcp[next(iter(tcp))]  # the least recently active connection
                self.tcp_evicted += 1
            if flags & (TcpFlag.SYN | TcpFlag.ACK) == TcpFlag.SYN | TcpFlag.ACK:  # SYN-ACK first: the sender is the server
                key = (dst, dport, src, sport)
            # the server's address and port shared with the previous connection's when the
            # same (most connections go to one server: 80 bytes a connection less)
            srv, port = key[2], key[3]
            last = self._tcp_server
            if srv == last[0] and port == last[1]:
                key = (key[0], key[1], last[0], last[1])
            else:
                self._tcp_server = (srv, port)
            if self.lru:
                tcp.pop(key, None)  # a new connection on the ports of a kept one: at the end
            c = tcp[key] = IkeTcpConn(ipver, key[0], key[1], key[2], key[3], ts, ref)
        elif self.lru:  # to the end, the most recently active, under a key of the
            # connection's own addresses (``found`` holds this segment's copies of them)
            del tcp[found]
            tcp[(c.client, c.cport, c.server, c.port)] = c
        c.record(ts, ref, flags, length, (src, sport) == (c.client, c.cport))

    def decode_error(self, ref, reason):
        if len(self.decode_errors) < self.limits.max_error_samples:
            self.decode_errors.append((ref, reason))

    def limits_hit(self) -> list[dict]:
        """What the bounds of :class:`pcapvpn.limits.Limits` dropped so far: one dict per bound
        that dropped anything (``bound``, ``limit``, ``dropped``, ``unit``, ``first_ref``,
        ``first_ts``), for the CAPTURE_LIMITS finding."""
        lim = self.limits
        it = self.ike_tracker
        out = []

        def add(bound, limit, n, unit, first_drop=(None, None)):
            if n:
                ref, ts = first_drop
                out.append({"bound": bound, "limit": limit, "dropped": n, "unit": unit,
                            "first_ref": ref, "first_ts": ts})

        for bound, unit in (("ike_max_sas", "IKE messages of further IKE SAs"),
                            ("ike_max_messages", "IKE messages"),
                            ("ike_max_bytes", "IKE messages"),
                            ("ike_max_messages_per_sa", "IKE messages of a full IKE SA")):
            add(bound, getattr(lim, bound), it.dropped.get(bound, 0), unit,
                it.first_drop.get(bound, (None, None)))
        add("ike_max_messages_per_sa", lim.ike_max_messages_per_sa,
            it.dropped.get("ike_trimmed", 0),
            "IKE messages of long-lived IKE SAs forgotten (live: older exchanges)")
        add("rekey_lookback", it.REKEY_LOOKBACK, it.dropped.get("rekey_lookback", 0),
            "IKE SA rekey look-ups cut short", it.first_drop.get("rekey_lookback", (None, None)))
        add("ike_responder_spis", it.MAX_ALIASES, it.dropped.get("ike_responder_spis", 0),
            "IKE_SA_INIT responses whose fresh responder SPI was not remembered",
            it.first_drop.get("ike_responder_spis", (None, None)))
        for (proto, encap), sa in sorted(self.esp_tracker.overflow.items()):
            what = "AH" if proto == "ah" else "ESP"
            what += {"udp": " in UDP", "tcp": " in TCP"}.get(encap, "")
            add("esp_max_sas", lim.esp_max_sas, sa.packets, f"{what} packets of further SAs",
                (sa.first_ref, sa.first_ts))
        add("vpn_max_tunnels", lim.vpn_max_tunnels, self.vpn_tracker.dropped,
            "packets of further OpenVPN / WireGuard / L2TP / PPTP / SSL-VPN tunnels")
        add("vpn_udp_flows", self.vpn_tracker.max_udp_flows, self.vpn_tracker.flows_evicted,
            "UDP flows of OpenVPN / WireGuard / L2TP / SSL-VPN tunnels forgotten (live: the "
            "least recently active, offline the oldest; followed again from their next packet)")
        sb = self.vpn_tracker.bounds
        for bound, limit, unit in (
                ("tcp_max_ooo", sb.max_ooo, "OpenVPN control packets not held out of order"),
                ("tcp_max_ooo_bytes", sb.max_ooo_bytes,
                 "OpenVPN control packets not held out of order"),
                ("tcp_max_buffer", sb.max_buffer,
                 "TLS streams cut (a record or handshake message beyond the buffer)")):
            add(bound, limit, sb.dropped.get(bound, 0), unit,
                sb.first_drop.get(bound, (None, None)))
        add("max_flows", lim.max_flows, self.keepalive_tracker.dropped,
            "NAT keepalives of further flows")
        ef = self.encap_flows
        add("max_flows", ef.max_flows, ef.evicted,
            "UDP flows with IKE after a non-ESP marker on ports other than 4500 forgotten (the "
            "oldest; their ESP is recognised again from their next such IKE message)",
            ef.first_evicted)
        add("max_flows", lim.max_flows, self.icmp_dropped, "ICMP errors")
        add("max_flows", lim.max_flows, self.incomplete_dropped, "incomplete fragment sets")
        add("max_flows", lim.max_flows, self.tcp_dropped, "TCP segments of further connections")
        add("max_flows", lim.max_flows, self.tcp_evicted,
            "TCP connections forgotten (live: the least recently active; followed again from "
            "their next segment)")
        add("max_flows", lim.max_flows, self.keepalive_tracker.evicted,
            "NAT keepalive flows forgotten (live: the least recently active; followed again "
            "from their next keepalive)")
        vt = self.vpn_tracker
        for bound, limit in (("vpn_max_sessions", vt.max_sessions),
                             ("vpn_max_session_bytes", vt.max_session_bytes)):
            add(bound, limit, vt.sessions_evicted[bound],
                "OpenVPN sessions forgotten (live: the least recently active that are not their "
                "tunnel's latest)")
        pt = self.plain_tracker
        add("plain_max_flows", pt.max_flows, pt.flows_dropped,
            "plaintext packets of further conversations (inner model)")
        add("plain_max_dns", pt.max_dns, pt.dns_dropped, "DNS queries (inner model)")
        add("plain_max_flows", pt.max_flows, pt.flows_evicted,
            "plaintext conversations forgotten (live: idle or least recently active)")
        add("plain_max_dns", pt.max_dns, pt.dns_evicted,
            "DNS queries forgotten (live: asked long ago or least recent)")
        add("plain_arp_targets", pt.max_arp, pt.arp_dropped,
            "ARP requests for further targets (inner model, per view)", pt.arp_first_drop)
        return out

    #: live: ``[(index in ike_tracker.sas, NatVerdict)]`` of the IKE SAs whose NAT verdict the
    #: last :meth:`state` worked out (a forked evaluation sends them back: :meth:`take_nat`)
    nat_worked: list = []

    def take_nat(self, sas: list, worked) -> None:
        """Live: the NAT verdicts a forked evaluation worked out (its :attr:`nat_worked`), put
        on this process' IKE SAs; ``sas``: ``ike_tracker.sas`` as it was at the fork (the
        indexes are into it).  Before, they never came back: the stop's state build worked out
        the NAT verdict of every IKE SA held again (1.0-1.5 s of CPU for 4,902 IKE SAs on the
        20,000-SA flood of bench/RESULTS.md, issue 20); now those changed since the last
        evaluation.  A verdict is kept as an in-process evaluation keeps it
        (:func:`pcapvpn.track.nat.ensure_verdict` works it out again when its SA has new
        messages or new keepalives)."""
        for i, v in worked or ():
            if 0 <= i < len(sas):
                sas[i].nat = v

    def state(self, now: float, capture=None) -> "State":
        """The model the rules read, as of ``now`` (end of capture offline, the clock live)."""
        from pcapvpn.track.nat import annotate
        from pcapvpn.track.tunnels import build_tunnels

        ike_sas = self.ike_tracker.sas
        before = [sa.nat for sa in ike_sas]
        annotate(ike_sas, self.keepalive_tracker._flows.values())
        self.nat_worked = [(i, sa.nat) for i, (sa, v) in enumerate(zip(ike_sas, before))
                           if sa.nat is not v]
        esp_sas = self.esp_tracker.all_sas()
        tunnels = build_tunnels(ike_sas, esp_sas, self.th, self.tcp.values())
        if self.inner_tracker is not None:
            self.inner_tracker.finish(now)
        from pcapvpn.track.inner import tie

        vpn_tunnels = self.vpn_tracker.all_tunnels()
        inner_models = tie(self.plain_tracker, tunnels, vpn_tunnels)
        return State(now=now, thresholds=self.th, names=self.names, ike_sas=ike_sas,
                     esp_sas=esp_sas, tunnels=tunnels,
                     keepalives=self.keepalive_tracker.flows(),
                     icmp_errors=self.icmp_errors, incomplete_fragments=self.incomplete,
                     tcp=list(self.tcp.values()), capture=capture, keys=self.keys,
                     inner=self.inner_tracker, vpn_tunnels=vpn_tunnels,
                     plain=self.plain_tracker, inner_models=inner_models,
                     limits=self.limits_hit())

    def finish(self):
        self.ike_tracker.finish()

    def evict_least_recent(self) -> None:
        """Live mode: at their bound, the least recently active TCP connection, NAT keepalive
        flow and VPN UDP flow make room for a new one (:attr:`lru`)."""
        self.lru = self.keepalive_tracker.lru = self.vpn_tracker.lru = True

    # -- bounded memory (live mode) --------------------------------------------------------------

    #: SAs forgotten by :meth:`expire` because they went quiet / because of ``max_sas``
    expired_sas = 0
    evicted_sas = 0

    def expire(self, now: float, idle: float, max_sas: int | None = None):
        """Live mode's memory bound (``pcapvpn.live``): forget what went quiet before ``now``.

        * an ESP/AH SA silent for ``idle`` seconds;
        * an IKE SA silent for ``idle`` seconds, unless it is the latest IKE SA of a gateway pair
          whose ESP/AH or NAT keepalives are still active (an IKE SA may stay silent for hours
          between rekeys while its child SAs carry the traffic);
        * NAT keepalive flows, ICMP errors, incomplete fragment sets and TCP connection facts
          older than ``idle`` seconds;
        * then, while more than ``max_sas`` IKE + ESP/AH SAs remain, the least recently active
          ones (counted in ``evicted_sas``; the others in ``expired_sas``);
        * an IKE SA holding more than half ``Limits.ike_max_messages_per_sa`` messages keeps its
          negotiation and its latest exchanges (``IkeTracker.trim``); when the IKE messages kept
          exceed 90 % of ``ike_max_messages`` / ``ike_max_bytes``, the least recently active
          IKE SAs go until 75 % (``evicted_sas``);
        * tunnels of the other VPNs (OpenVPN, WireGuard, ...) silent for ``idle`` seconds, and
          beyond ``max_sas`` of them the least recently active.

        Returns ``(removed IKE SAs, removed ESP/AH SAs)``.
        """
        limit = now - idle
        it = self.ike_tracker
        et = self.esp_tracker

        def pair(x, y):
            return (x, y) if x <= y else (y, x)

        active = {pair(e.src, e.dst) for e in et._sas if e.last_ts >= limit}
        active.update(pair(f.src, f.dst) for f in self.keepalive_tracker._flows.values()
                      if f.last_ts is not None and f.last_ts >= limit)
        latest = {}
        for sa in it.sas:
            if sa.initiator is None or sa.first_ts is None:
                continue
            k = pair(sa.initiator[1], sa.responder[1])
            if k not in latest or sa.first_ts >= latest[k].first_ts:
                latest[k] = sa

        def keep_ike(sa):
            if sa.last_ts is not None and sa.last_ts >= limit:
                return True
            if sa.initiator is None:
                return False
            k = pair(sa.initiator[1], sa.responder[1])
            return latest.get(k) is sa and k in active

        ike_old = [sa for sa in it.sas if not keep_ike(sa)]
        esp_old = [e for e in et._sas if e.last_ts < limit]
        ike_gone = set(map(id, ike_old))
        esp_gone = set(map(id, esp_old))
        self.expired_sas += len(ike_old) + len(esp_old)
        if max_sas is not None:
            excess = len(it.sas) - len(ike_old) + len(et._sas) - len(esp_old) - max_sas
            if excess > 0:
                rest = [(sa.last_ts or 0.0, 0, sa) for sa in it.sas if id(sa) not in ike_gone]
                rest += [(e.last_ts, 1, e) for e in et._sas if id(e) not in esp_gone]
                rest.sort(key=lambda r: r[0])
                for _ts, kind, x in rest[:excess]:
                    (esp_old if kind else ike_old).append(x)
                self.evicted_sas += excess
        # IKE messages (Limits): a long-lived SA keeps its negotiation and its latest
        # exchanges; beyond the budget of kept messages the least recently active SAs go
        lim = self.limits
        half = max(8, lim.ike_max_messages_per_sa // 2)
        for sa in it.sas:
            if len(sa.messages) > half:
                it.trim(sa, half // 2)
        gone = set(map(id, ike_old))
        if it.kept > 0.9 * lim.ike_max_messages or it.kept_bytes > 0.9 * lim.ike_max_bytes:
            kept, kept_bytes = it.kept, it.kept_bytes
            for sa in sorted((sa for sa in it.sas if id(sa) not in gone),
                             key=lambda sa: sa.last_ts or 0.0):
                if kept <= 0.75 * lim.ike_max_messages and \
                        kept_bytes <= 0.75 * lim.ike_max_bytes:
                    break
                kept -= len(sa.messages)
                kept_bytes -= sum(m.size for m in sa.messages)
                ike_old.append(sa)
                gone.add(id(sa))
                self.evicted_sas += 1
        it.remove(ike_old)
        et.remove(esp_old)
        self.keepalive_tracker.expire(now, idle)
        if self.icmp_errors and self.icmp_errors[0].ts < limit:
            self.icmp_errors = [e for e in self.icmp_errors if e.ts >= limit]
        if self.incomplete and self.incomplete[0].first_ts < limit:
            self.incomplete = [f for f in self.incomplete if f.first_ts >= limit]
        for k in [k for k, t in self.tcp.items() if t.last_ts < limit]:
            del self.tcp[k]
        # the other VPNs' tunnels under the same bound as the IPsec SAs, and their OpenVPN
        # sessions under theirs (Limits.vpn_max_sessions, vpn_max_session_bytes)
        self.vpn_tracker.expire(limit, max_sas)
        self.vpn_tracker.trim_sessions()
        # plaintext conversations and DNS queries (the inner model): idle, then beyond the bound
        self.plain_tracker.expire(limit)
        return ike_old, esp_old


@dataclass
class State:
    """What the rules see."""

    now: float
    thresholds: Thresholds
    names: list
    ike_sas: list
    esp_sas: list
    tunnels: list
    keepalives: list
    icmp_errors: list
    incomplete_fragments: list
    tcp: list
    capture: object = None
    #: gateways that should appear in the capture (--expect-peer), packed addresses
    expect_peers: list = field(default_factory=list)
    #: tunnels of the VPNs beside IPsec (pcapvpn.track.vpn.VpnTunnel)
    vpn_tunnels: list = field(default_factory=list)
    #: --keys: the pcapvpn.decrypt.keys.KeyStore (None without keys) and the inner-traffic tracker
    keys: object = None
    inner: object = None
    #: every view of plaintext (pcapvpn.track.inner.PlainTracker) and, per tunnel id, the one
    #: inner model of the views tied to it (pcapvpn.track.inner.InnerModel)
    plain: object = None
    inner_models: dict = field(default_factory=dict)
    #: what the bounds of pcapvpn.limits.Limits dropped (Tracker.limits_hit)
    limits: list = field(default_factory=list)
    #: several vantage points (--vantage): pcapvpn.track.vantage.Vantage, else None
    vantage: object = None
