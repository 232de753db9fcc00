"""Tracking: per-SA state machines that turn decode events into the model.

:class:`Tracker` is the decoder's sink.  It hands each event to the tracker that owns it (IKE,
ESP/AH, NAT keepalives, ICMP errors, fragments) and, at the end (or at any ``now`` in live mode),
:meth:`Tracker.state` gives the :class:`State` the rules read.  The ESP path is bound straight to
:meth:`pcapvpn.track.esp.EspTracker.esp` (no extra call layer: it runs for millions of packets).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pcapvpn.decode import NullSink
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
    #: the quoted datagram as decode_frame's tuple (or None when too short to say)
    quoted: tuple | None


@dataclass
class IncompleteFragments:
    first_ts: float
    ipver: int
    src: bytes
    dst: bytes
    proto: int
    ident: int
    frames: tuple
    #: transport header + data of the first fragment when it was seen (ports, IKE header)
    first: bytes | None
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

    MAX_ICMP = 10000
    MAX_FRAGSETS = 10000
    MAX_TCP = 10000
    #: the ESP/AH tracker class (several vantage points: pcapvpn.track.vantage.PointEspTracker)
    esp_class = None

    def __init__(self, thresholds: Thresholds = DEFAULT, names=None, keys=None, vpn_servers=()):
        from pcapvpn.track.esp import EspTracker
        from pcapvpn.track.ike import IkeTracker
        from pcapvpn.track.nat import KeepaliveTracker
        from pcapvpn.track.vpn import VpnTracker

        self.th = thresholds
        self.names = list(names or [])
        #: pcapvpn.keys.KeyStore (--keys) or None
        self.keys = keys or None
        self.ike_tracker = IkeTracker(thresholds, self.names, self.keys)
        self.esp_tracker = (self.esp_class or EspTracker)(thresholds)
        self.keepalive_tracker = KeepaliveTracker(thresholds)
        #: ESP decryption (opt-in per SA): the decoder hands ``esp_payload`` the bytes of ESP
        #: packets whose SPI is in ``keyed_spis`` (None: no ESP keys, nothing extra per packet)
        self.inner_tracker = None
        self.keyed_spis = None
        if self.keys is not None and (self.keys.esp or self.keys.esp_all):
            from pcapvpn.track.inner import InnerTracker

            self.inner_tracker = InnerTracker(self.keys, self.esp_tracker)
            self.keyed_spis = self.inner_tracker.keyed_spis
            self.esp_payload = self.inner_tracker.esp_payload
        # hot paths bound directly
        self.esp = self.esp_tracker.esp
        self.esp_batch = self.esp_tracker.esp_batch
        self.ah = self.esp_tracker.ah
        self.keepalive = self.keepalive_tracker.keepalive
        # VPNs beside IPsec (OpenVPN, WireGuard, L2TP, PPTP, SSL-VPN): pcapvpn.track.vpn
        self.vpn_tracker = VpnTracker(thresholds, vpn_servers)
        self.vpn_udp = self.vpn_tracker.udp
        self.vpn_tcp = self.vpn_tracker.tcp
        self.vpn_tcp_segment = self.vpn_tracker.tcp_segment
        self.gre = self.vpn_tracker.gre
        if self.inner_tracker is not None:  # L2TP/IPsec: decrypted UDP 1701 to the VPN tracker
            self.inner_tracker.vpn_udp = self.vpn_udp
        self.icmp_errors: list[IcmpError] = []
        self.icmp_dropped = 0
        self.incomplete: list[IncompleteFragments] = []
        #: IKE-over-TCP connections by (client, client port, server, server port)
        self.tcp: dict = {}
        self.tcp_dropped = 0
        self.decode_errors: list = []
        self.first_ts = None
        self.last_ts = None

    def ike(self, ref, ts, ipver, src, dst, sport, dport, transport, msg, frames):
        self.ike_tracker.ike(ref, ts, ipver, src, dst, sport, dport, transport, msg, frames)

    def esp_tcp(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, length):
        self.esp_tracker.esp(ref, ts, ipver, src, dst, sport, dport, spi, seq, length, "tcp")

    def icmp_error(self, ref, ts, ipver, src, dst, icmp_type, icmp_code, mtu, quoted):
        if len(self.icmp_errors) >= self.MAX_ICMP:
            self.icmp_dropped += 1
            return
        self.icmp_errors.append(IcmpError(ref, ts, ipver, src, dst, icmp_type, icmp_code, mtu,
                                          quoted))

    def fragments_incomplete(self, first_ts, ipver, src, dst, proto, ident, frames, first, why):
        if len(self.incomplete) < self.MAX_FRAGSETS:
            self.incomplete.append(IncompleteFragments(first_ts, ipver, src, dst, proto, ident,
                                                       frames, first, why))

    def esp_fragmented(self, ipver, src, dst, spi, frames, proto):
        self.esp_tracker.fragmented(ipver, src, dst, spi, frames, proto)

    def tcp_segment(self, ref, ts, ipver, src, dst, sport, dport, flags, length):
        key = (src, sport, dst, dport)
        c = self.tcp.get(key)
        if c is None:
            c = self.tcp.get((dst, dport, src, sport))
        syn_only = flags & 0x12 == 0x02
        if c is not None and syn_only and (c.closed or c.synack):
            c = None  # a new connection on the same ports
        if c is None:
            if len(self.tcp) >= self.MAX_TCP:
                self.tcp_dropped += 1
                return
            if flags & 0x12 == 0x12:  # SYN-ACK first: the sender is the server
                key = (dst, dport, src, sport)
            c = self.tcp[key] = IkeTcpConn(ipver, key[0], key[1], key[2], key[3], ts, ref)
        c.record(ts, ref, flags, length, (src, sport) == (c.client, c.cport))

    def decode_error(self, ref, reason):
        if len(self.decode_errors) < 1000:
            self.decode_errors.append((ref, reason))

    def state(self, now: float, capture=None) -> "State":
        """The model the rules read, as of ``now`` (end of capture offline, the clock live)."""
        from pcapvpn.track.nat import annotate
        from pcapvpn.track.tunnels import build_tunnels

        ike_sas = self.ike_tracker.sas
        annotate(ike_sas)
        esp_sas = self.esp_tracker.all_sas()
        tunnels = build_tunnels(ike_sas, esp_sas, self.th, self.tcp.values())
        if self.inner_tracker is not None:
            self.inner_tracker.finish(now)
        return State(now=now, thresholds=self.th, names=self.names, ike_sas=ike_sas,
                     esp_sas=esp_sas, tunnels=tunnels,
                     keepalives=self.keepalive_tracker.flows(),
                     icmp_errors=self.icmp_errors, incomplete_fragments=self.incomplete,
                     tcp=list(self.tcp.values()), capture=capture, keys=self.keys,
                     inner=self.inner_tracker, vpn_tunnels=self.vpn_tracker.all_tunnels())

    def finish(self):
        self.ike_tracker.finish()

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
          ones (counted in ``evicted_sas``; the others in ``expired_sas``).

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
        it.remove(ike_old)
        et.remove(esp_old)
        self.keepalive_tracker.expire(now, idle)
        if self.icmp_errors and self.icmp_errors[0].ts < limit:
            self.icmp_errors = [e for e in self.icmp_errors if e.ts >= limit]
        if self.incomplete and self.incomplete[0].first_ts < limit:
            self.incomplete = [f for f in self.incomplete if f.first_ts >= limit]
        for k in [k for k, t in self.tcp.items() if t.last_ts < limit]:
            del self.tcp[k]
        self.vpn_tracker.expire(limit)
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
    #: --keys: the pcapvpn.keys.KeyStore (None without keys) and the inner-traffic tracker
    keys: object = None
    inner: object = None
    #: several vantage points (--vantage): pcapvpn.track.vantage.Vantage, else None
    vantage: object = None
