"""Tunnels of the VPNs beside IPsec: OpenVPN, WireGuard, L2TP, PPTP and SSL-VPN (TLS/DTLS).

For these protocols a *tunnel* is a client and a server(:port, transport): everything between
them over time — TCP connections (SYN, SYN-ACK, RST), sessions (OpenVPN session IDs, WireGuard
handshakes, L2TP/PPTP control connections, TLS connections and DTLS flows) and the data plane
counted per direction.  :class:`VpnTracker` receives the decoder's ``vpn_udp``, ``vpn_tcp``,
``vpn_tcp_segment`` and ``gre`` events (docs/internals.md) and keeps the tunnels; the rules
read :attr:`VpnTracker.tunnels` through ``State.vpn_tunnels``.

Recognition is conservative (false alarms are bugs): an OpenVPN flow on a port other than 1194
needs a hard reset that is self-consistent under one control-channel layout; WireGuard transport
data on an unknown flow needs consecutive packets to the same receiver index; DTLS counts only
towards an SSL-VPN server; a TLS server is an SSL-VPN only when named with ``--vpn-server``,
when it also carries a DTLS data channel, on the SSL-VPN ports of :data:`SSLVPN_PORTS`, or when
its certificate shows a documented SSL-VPN product (FortiGate's factory certificate).

Memory: per tunnel, bounded lists of evidence; the number of tunnels is bounded and the least
recently used unidentified TLS tunnels (ordinary web servers) are evicted first.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque

from dissect.vpn import l2tp as _l2tp
from dissect.vpn import openvpn as _ov
from dissect.vpn import pptp as _pptp
from dissect.vpn import tls as _tls
from dissect.vpn import wireguard as _wg
from dissect.vpn.errors import DissectError
from dissect.vpn.ip import Port, TcpFlag
from pcapvpn.model import _addr
from pcapvpn.track import openvpn as _tovpn
from pcapvpn.track import wireguard as _twg
from pcapvpn.track.tlsvpn import StreamBounds, TlsConversation

#: TLS ports that are SSL-VPN by themselves
SSLVPN_PORTS = frozenset((Port.FORTIGATE_SSLVPN, Port.SONICWALL_SSLVPN))
#: UDP ports where DTLS is an SSL-VPN data channel (AnyConnect / ocserv / FortiGate DTLS: the TLS
#: port of the gateway)
DTLS_PORTS = frozenset((Port.HTTPS, *SSLVPN_PORTS))

#: tunnels kept at once (unidentified TLS tunnels are evicted first)
MAX_TUNNELS = 20000
#: TLS tunnels not (yet) known to be SSL-VPNs kept at once: the least recently active are
#: forgotten (web traffic on a mirror port; about 8 KB each)
MAX_UNIDENTIFIED_TLS = 4096
#: UDP flows kept per tunnel on average (``VpnTracker.udp_flows``: a few hundred bytes each)
FLOWS_PER_TUNNEL = 4
#: TCP connections kept per tunnel (later ones are counted only)
MAX_CONNS = 256
#: evidence refs kept per list
MAX_REFS = 20
#: data packets of each direction whose frames are kept as evidence
DATA_REFS = 5
#: transport-data packets needed before a WireGuard flow seen without a handshake is accepted
WG_MIN_DATA = 2


#: decoder TCP service → tunnel protocol
_TCP_PROTOCOL = {"tls": "sslvpn", "openvpn": "openvpn", "pptp": "pptp"}


def _txt(a: bytes) -> str:
    # the model's cached text of a packed address (a tunnel's id is written again at every
    # state build and every look-up of it)
    return _addr(a) if type(a) is bytes else str(ipaddress.ip_address(a))


def _ep(ipver, a, port) -> str:
    s = _txt(a)
    if ipver == 6:
        s = f"[{s}]"
    return f"{s}:{port}"


class TcpConn:
    """One TCP connection of a tunnel."""

    __slots__ = ("cport", "first_ts", "last_ts", "syn", "synack", "rst_client", "rst_server",
                 "fin_client", "fin_server", "bytes_c", "bytes_s", "tls", "first_ref", "proto",
                 "msgs_c", "msgs_s")

    def __init__(self, cport, ts, ref):
        self.cport = cport
        self.first_ts = ts
        self.last_ts = ts
        # (ts, ref) of SYNs from the client, of SYN-ACKs, of resets from each side (at most
        # MAX_REFS each): tuples, empty in most connections (the empty tuple costs nothing, an
        # empty list 56 bytes; a flood keeps thousands of connections)
        self.syn = ()
        self.synack = ()
        self.rst_client = ()
        self.rst_server = ()
        self.fin_client = None
        self.fin_server = None
        # payload bytes and framed messages from the client and from the server: ints (two
        # lists cost ~160 bytes a connection); ``bytes`` and ``msgs`` read them as pairs
        self.bytes_c = self.bytes_s = 0
        self.tls = None
        self.first_ref = ref
        self.proto = None
        self.msgs_c = self.msgs_s = 0

    @property
    def bytes(self) -> tuple:
        """Payload bytes (client to server, server to client)."""
        return (self.bytes_c, self.bytes_s)

    @property
    def msgs(self) -> tuple:
        """Messages framed (client to server, server to client)."""
        return (self.msgs_c, self.msgs_s)

    def message(self, from_client: bool) -> None:
        """One message framed in this connection."""
        if from_client:
            self.msgs_c += 1
        else:
            self.msgs_s += 1

    @property
    def established(self) -> bool:
        return bool(self.synack) or self.bytes_s > 0

    def record(self, ts, ref, flags, length, from_client) -> None:
        """One segment's flags and payload length."""
        self.last_ts = ts
        if flags & TcpFlag.SYN:
            if flags & TcpFlag.ACK:
                if len(self.synack) < MAX_REFS:
                    self.synack += ((ts, ref),)
            elif from_client and len(self.syn) < MAX_REFS:
                self.syn += ((ts, ref),)
        if flags & TcpFlag.RST:
            if from_client:
                if len(self.rst_client) < MAX_REFS:
                    self.rst_client += ((ts, ref),)
            elif len(self.rst_server) < MAX_REFS:
                self.rst_server += ((ts, ref),)
        if flags & TcpFlag.FIN:
            if from_client:
                if self.fin_client is None:
                    self.fin_client = (ts, ref)
            elif self.fin_server is None:
                self.fin_server = (ts, ref)
        if length > 0:
            if from_client:
                self.bytes_c += length
            else:
                self.bytes_s += length

    @property
    def closed(self) -> bool:
        return bool(self.rst_client or self.rst_server) or (
            self.fin_client is not None and self.fin_server is not None)

    def to_dict(self):
        return {"client_port": self.cport, "first_ts": self.first_ts, "last_ts": self.last_ts,
                "syn": len(self.syn), "syn_ack": len(self.synack),
                "rst_from_client": len(self.rst_client), "rst_from_server": len(self.rst_server),
                "fin_from_client": self.fin_client is not None,
                "fin_from_server": self.fin_server is not None,
                "bytes": {"client_to_server": self.bytes_c, "server_to_client": self.bytes_s},
                "first_frame": list(self.first_ref),
                "tls": self.tls.to_dict() if self.tls is not None else None}


class L2tpState:
    __slots__ = ("version", "messages", "dropped", "counts", "errors", "client_tid", "server_tid",
                 "zlb")

    def __init__(self):
        self.version = None
        self.messages = []   # (ts, ref, d, msg_type, result, error, message, tunnel_id, sid)
        self.dropped = 0
        self.counts = {}
        self.errors = 0
        self.client_tid = None
        self.server_tid = None
        self.zlb = [0, 0]

    def of_type(self, t):
        return [m for m in self.messages if m[3] == t]

    def to_dict(self):
        return {"version": self.version,
                "messages": {_l2tp.message_name(k): v for k, v in sorted(self.counts.items())},
                "zlb_acks": {"client_to_server": self.zlb[0], "server_to_client": self.zlb[1]},
                "control": [{"ts": m[0], "frame": list(m[1]),
                             "from": "client" if m[2] == 0 else "server",
                             "message": _l2tp.message_name(m[3]), "result": m[4], "error": m[5],
                             "error_message": m[6]} for m in self.messages[:200]]}


class PptpState:
    __slots__ = ("messages", "dropped", "counts")

    def __init__(self):
        self.messages = []   # (ts, ref, d, Message)
        self.dropped = 0
        self.counts = {}

    def of_type(self, t):
        return [m for m in self.messages if m[3].type == t]

    def to_dict(self):
        return {"messages": {_pptp.message_name(k): v for k, v in sorted(self.counts.items())},
                "control": [{"ts": m[0], "frame": list(m[1]),
                             "from": "client" if m[2] == 0 else "server",
                             "message": _pptp.message_name(m[3].type), "result": m[3].result,
                             "error": m[3].error, "call_id": m[3].call_id,
                             "peer_call_id": m[3].peer_call_id} for m in self.messages[:200]]}


class DtlsFlow:
    __slots__ = ("cport", "sport", "conv", "first_ts", "last_ts", "first_ref", "pkts")

    def __init__(self, cport, sport, ts, ref, bounds=None):
        self.cport = cport
        self.sport = sport
        self.conv = TlsConversation(dtls=True, bounds=bounds)
        self.first_ts = ts
        self.last_ts = ts
        self.first_ref = ref
        self.pkts = [0, 0]

    def to_dict(self):
        return {"client_port": self.cport, "server_port": self.sport, "first_ts": self.first_ts,
                "last_ts": self.last_ts, "first_frame": list(self.first_ref),
                "packets": {"client_to_server": self.pkts[0], "server_to_client": self.pkts[1]},
                "dtls": self.conv.to_dict()}


class SslVpnState:
    __slots__ = ("dtls", "signatures")

    def __init__(self):
        self.dtls = {}
        self.signatures = []

    def sign(self, why: str):
        if why not in self.signatures:
            self.signatures.append(why)

    def to_dict(self):
        return {"recognised_by": list(self.signatures),
                "dtls_flows": [f.to_dict() for f in list(self.dtls.values())[:32]]}


class VpnTunnel:
    """Client <-> server:port/transport of one non-IPsec VPN protocol."""

    __slots__ = ("protocol", "transport", "ipver", "client", "server", "port", "client_ports",
                 "first_ts", "last_ts", "pkts", "bytes", "ctl", "data", "data_bytes",
                 "data_first_ts", "data_last_ts", "since_other", "since_other_ts", "data_refs",
                 "data_tail", "first_ref", "st", "conns", "conns_dropped", "named", "errors",
                 "last_ref", "first_from", "frames")

    def __init__(self, protocol, transport, ipver, client, server, port, ts, ref, bounds=None):
        self.protocol = protocol
        self.transport = transport
        self.ipver = ipver
        self.client = client
        self.server = server
        self.port = port
        self.client_ports = set()
        self.first_ts = ts
        self.last_ts = ts
        self.first_ref = ref
        self.last_ref = ref
        self.first_from = None
        self.pkts = [0, 0]
        self.bytes = [0, 0]
        self.ctl = [0, 0]
        self.data = [0, 0]
        self.data_bytes = [0, 0]
        self.data_first_ts = [None, None]
        self.data_last_ts = [None, None]
        # one-way accounting: data packets of a direction since the other direction's last one
        self.since_other = [0, 0]
        self.since_other_ts = [None, None]
        self.data_refs = ([], [])
        self.data_tail = (deque(maxlen=5), deque(maxlen=5))
        self.st = _state_for(protocol, bounds)
        self.conns = OrderedDict()
        self.conns_dropped = 0
        self.named = False
        self.errors = 0
        #: frames (datagrams, TCP segments, GRE packets) of this tunnel: the capture summary
        #: counts them under the protocol
        self.frames = 0

    # -- identity --------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return f"{_txt(self.client)}<->{_ep(self.ipver, self.server, self.port)}/{self.transport}"

    @property
    def identified(self) -> bool:
        """Reported as a VPN tunnel (always, except TLS servers without an SSL-VPN sign)."""
        if self.protocol != "sslvpn":
            return True
        return self.named or bool(self.st.signatures)

    # -- accounting ------------------------------------------------------------------------------

    def _packet(self, d, ts, ref, length):
        self.pkts[d] += 1
        self.bytes[d] += length
        if ts > self.last_ts:
            self.last_ts = ts
        self.last_ref = ref
        if self.first_from is None:
            self.first_from = d

    def control_packet(self, d, ts, ref, length=0):
        self.ctl[d] += 1
        self._packet(d, ts, ref, length)

    def data_packet(self, d, ts, ref, length):
        """The data-plane hot path (every P_DATA / transport data / GRE / DTLS record)."""
        self.pkts[d] += 1
        self.bytes[d] += length
        if ts > self.last_ts:
            self.last_ts = ts
        self.last_ref = ref
        count = self.data
        count[d] += 1
        self.data_bytes[d] += length
        if count[d] <= DATA_REFS:
            if count[d] == 1:
                self.data_first_ts[d] = ts
                if self.first_from is None:
                    self.first_from = d
            self.data_refs[d].append(ref)
        self.data_last_ts[d] = ts
        so = self.since_other
        if so[d] == 0:
            self.since_other_ts[d] = ts
        so[d] += 1
        so[1 - d] = 0
        self.data_tail[d].append(ref)

    def conn(self, cport, ts, ref, new=False) -> TcpConn | None:
        c = self.conns.get(cport)
        if c is None or new:
            if c is not None:
                self.conns.pop(cport)
            if len(self.conns) >= MAX_CONNS:
                self.conns_dropped += 1
                self.conns.popitem(last=False)
            c = self.conns[cport] = TcpConn(cport, ts, ref)
        return c

    def to_dict(self) -> dict:
        d = {
            "protocol": self.protocol, "transport": self.transport,
            "client": _txt(self.client), "server": _txt(self.server), "server_port": self.port,
            "client_ports": sorted(self.client_ports)[:32],
            "first_ts": self.first_ts, "last_ts": self.last_ts,
            "packets": {"client_to_server": self.pkts[0], "server_to_client": self.pkts[1]},
            "bytes": {"client_to_server": self.bytes[0], "server_to_client": self.bytes[1]},
            "data_packets": {"client_to_server": self.data[0], "server_to_client": self.data[1]},
            "data_bytes": {"client_to_server": self.data_bytes[0],
                           "server_to_client": self.data_bytes[1]},
            "tcp_connections": [c.to_dict() for c in list(self.conns.values())[:64]],
            "tcp_connections_not_kept": self.conns_dropped,
            "named_with_vpn_server": self.named,
        }
        if self.st is not None:
            d[self.protocol] = self.st.to_dict()
        return d


def _state_for(protocol, bounds=None):
    if protocol == "openvpn":
        return _tovpn.OpenVpnState(bounds)
    if protocol == "wireguard":
        return _twg.WgState()
    if protocol == "l2tp":
        return L2tpState()
    if protocol == "pptp":
        return PptpState()
    if protocol == "sslvpn":
        return SslVpnState()
    return None


class VpnTracker:
    """Sink for the non-IPsec VPN events of :class:`pcapvpn.decode.Decoder`."""

    def __init__(self, thresholds=None, vpn_servers=(), max_tunnels: int = MAX_TUNNELS,
                 limits=None):
        self.th = thresholds
        #: the bounds of the streams put in order here (OpenVPN control channel, TLS), from
        #: ``limits`` (pcapvpn.limits.Limits); their drops are counted there
        self.bounds = StreamBounds(limits) if thresholds is None else \
            StreamBounds(limits, thresholds.duplicate_window)
        #: tunnels kept (``Limits.vpn_max_tunnels``); events of further ones are counted in
        #: ``dropped``
        self.max_tunnels = max_tunnels
        #: (packed address, port or None) named with --vpn-server
        self.servers = [(a, p) for a, p in vpn_servers]
        self.tunnels: OrderedDict = OrderedDict()
        self._tls_lru: OrderedDict = OrderedDict()
        #: UDP flows (client address and port, server address and port) bound to a tunnel, two
        #: entries each (one per direction: ``(tunnel, from_client, the other direction's
        #: key)``), in live least recently active first (each packet moves both to the end); at
        #: most ``Limits.vpn_max_udp_flows`` and ``FLOWS_PER_TUNNEL`` per tunnel kept on average:
        #: beyond, the least recently active flow is forgotten (``flows_evicted``) and bound
        #: again at its next packet (a flood of client ports to one gateway pair must not grow
        #: it, nor push out the flows that carry traffic)
        self.udp_flows: OrderedDict = OrderedDict()
        self.max_udp_flows = FLOWS_PER_TUNNEL * max_tunnels
        if limits is not None:
            self.max_udp_flows = min(self.max_udp_flows, limits.vpn_max_udp_flows)
        self.flows_evicted = 0
        #: live (``Tracker.evict_least_recent``): each packet moves its flow to the end, so the
        #: least recently active flow is the one forgotten; offline the first bound is (as before)
        self.lru = False
        #: OpenVPN sessions kept over all tunnels and their bytes (live: ``trim_sessions``)
        self.max_sessions = limits.vpn_max_sessions if limits is not None else None
        self.max_session_bytes = limits.vpn_max_session_bytes if limits is not None else None
        self.sessions_evicted = {"vpn_max_sessions": 0, "vpn_max_session_bytes": 0}
        self.ssl_pairs: dict = {}
        self.gre_pairs: dict = {}
        self.wg_pending: dict = {}
        self.rejected = 0
        self.evicted = 0
        self.dropped = 0

    # -- helpers ---------------------------------------------------------------------------------

    def _named(self, server, port) -> bool:
        for a, p in self.servers:
            if a == server and (p is None or p == port):
                return True
        return False

    def _tunnel(self, key, protocol, transport, ipver, client, server, port, ts, ref):
        t = self.tunnels.get(key)
        if t is not None:
            return t
        if len(self.tunnels) >= self.max_tunnels and not self._evict():
            self.dropped += 1
            return None
        t = self.tunnels[key] = VpnTunnel(protocol, transport, ipver, client, server, port, ts,
                                          ref, self.bounds)
        t.named = self._named(server, port)
        if protocol == "sslvpn":
            self._ssl_signs(t)
            self.ssl_pairs.setdefault((client, server), t)
            if not t.identified:
                lru = self._tls_lru
                lru[key] = t
                while len(lru) > MAX_UNIDENTIFIED_TLS:
                    k, old = lru.popitem(last=False)
                    if not old.identified and old.protocol == "sslvpn":
                        self._forget(k, old)
        return t

    def _forget(self, key, t):
        if self.tunnels.get(key) is t:
            del self.tunnels[key]
            self.evicted += 1
        if self.ssl_pairs.get((t.client, t.server)) is t:
            del self.ssl_pairs[(t.client, t.server)]

    def _evict(self) -> bool:
        lru = self._tls_lru
        while lru:
            k, t = lru.popitem(last=False)
            if t.protocol == "sslvpn" and not t.identified:
                self._forget(k, t)
                return True
        return False

    def _ssl_signs(self, t):
        if t.named:
            t.st.sign("named with --vpn-server")
        if t.port in SSLVPN_PORTS and t.transport == "tcp":
            t.st.sign(f"TLS on TCP {t.port}, an SSL-VPN port (FortiGate 10443, SonicWall 4433)")

    # -- UDP -------------------------------------------------------------------------------------

    def udp(self, ref, ts, ipver, src, dst, sport, dport, proto, data, off, end):
        flows = self.udp_flows
        key = (src, sport, dst, dport)
        ent = flows.get(key)
        if ent is None:
            ent = self._new_udp(ref, ts, ipver, src, dst, sport, dport, proto, data, off, end)
            if ent is None:
                self.rejected += 1
                return
        elif self.lru:  # the flow's two entries to the end: the least recently active goes first
            flows.move_to_end(key)
            flows.move_to_end(ent[2])
        t, fc, _rkey = ent
        if t.protocol == "sslvpn" and proto != "dtls":
            return
        t.frames += 1
        if t.protocol == "openvpn":
            if proto != "openvpn":
                t.errors += 1
                return
            _tovpn.handle(t, t.st, fc, ts, ref, data, off, end)
        elif t.protocol == "wireguard":
            if proto != "wireguard":
                t.errors += 1
                return
            _twg.handle(t, t.st, fc, ts, ref, data, off, end)
        elif t.protocol == "l2tp":
            self._l2tp(t, fc, ts, ref, data, off, end)
        elif t.protocol == "sslvpn":
            self._dtls(t, fc, ts, ref, src if fc else dst, sport if fc else dport,
                       dport if fc else sport, data, off, end)

    def _bind(self, t, client, cport, server, sport):
        flows = self.udp_flows
        while len(flows) >= 2 * self.max_udp_flows and flows:
            _k, (_t, _fc, rk) = flows.popitem(last=False)  # the least recently active flow
            flows.pop(rk, None)
            self.flows_evicted += 1
        ck = (client, cport, server, sport)
        sk = (server, sport, client, cport)
        flows[ck] = ent = (t, True, sk)
        flows[sk] = (t, False, ck)
        if len(t.client_ports) < 1024:  # as for TCP connections
            t.client_ports.add(cport)
        return ent

    def _new_udp(self, ref, ts, ipver, src, dst, sport, dport, proto, data, off, end):
        if proto == "openvpn":
            op, kid = _ov.opcode(data, off)
            client = None
            if op in _ov.CLIENT_RESETS and kid == 0 and \
                    _ov.detect_layout(data, off, end) is not None:
                client = True
            elif op in _ov.SERVER_RESETS and kid == 0 and \
                    _ov.detect_layout(data, off, end) is not None:
                client = False
            elif dport == Port.OPENVPN and sport != Port.OPENVPN:
                client = True
            elif sport == Port.OPENVPN and dport != Port.OPENVPN:
                client = False
            elif sport == dport == Port.OPENVPN:
                client = True
            if client is None:
                return None
            return self._udp_tunnel("openvpn", ipver, src, sport, dst, dport, client, ts, ref)
        if proto == "wireguard":
            return self._new_wireguard(ref, ts, ipver, src, dst, sport, dport, data, off, end)
        if proto == "l2tp":
            # UDP 1701 is L2TP's (RFC 2661 §8.1): a malformed first message is a decode error
            # (raised), and no tunnel is made of it
            h = _l2tp.parse_header(data, off, end)
            if h.control:
                c = _l2tp.parse_control(data, off, end)
                client = c.msg_type != _l2tp.SCCRP if sport == dport else dport == Port.L2TP
            else:
                client = dport == Port.L2TP
            return self._udp_tunnel("l2tp", ipver, src, sport, dst, dport, client, ts, ref)
        if proto == "dtls":
            ver = _tls.dtls_version(data, off)
            for client, server, cport, sport_ in ((src, dst, sport, dport),
                                                  (dst, src, dport, sport)):
                t = self.ssl_pairs.get((client, server))
                if t is not None:
                    return self._bind(t, client, cport, server, sport_)
            if dport in DTLS_PORTS or self._named(dst, dport) or ver == _tls.DTLS_PRE_RFC:
                client = sport not in DTLS_PORTS or dport in DTLS_PORTS
            elif sport in DTLS_PORTS or self._named(src, sport):
                client = False
            else:
                return None
            return self._udp_tunnel("sslvpn", ipver, src, sport, dst, dport, client, ts, ref)
        return None

    def _new_wireguard(self, ref, ts, ipver, src, dst, sport, dport, data, off, end):
        """A WireGuard flow starts with a standard-size handshake message, a non-standard one
        confirmed by its answer (the response naming the initiation's sender index), or
        ``WG_MIN_DATA`` transport messages to one receiver index with increasing counters.
        Messages held while waiting are replayed into the tunnel."""
        try:
            m = _wg.parse(data, off, end)
        except DissectError:
            return None
        key = (src, sport, dst, dport)
        rev = (dst, dport, src, sport)
        pend = self.wg_pending
        item = (ts, ref, m, end - off)
        kind = m[0]
        mine = pend.get(key)
        if kind == _wg.DATA:
            last = mine[-1][2] if mine else None
            if last is None or last[0] != _wg.DATA or last[1] != m[1] or m[2] <= last[2]:
                self._wg_hold(key, [item])
                return None
            if len(mine) + 1 < WG_MIN_DATA:
                mine.append(item)
                return None
            client = not (sport == Port.WIREGUARD and dport != Port.WIREGUARD)
        elif kind == _wg.INITIATION:
            if not m[3]:
                self._wg_hold(key, (mine or [])[-7:] + [item])
                return None
            client = True
        else:  # response / cookie reply: names the initiation's sender index
            other = pend.get(rev) or ()
            recv = m[2] if kind == _wg.RESPONSE else m[1]
            if not m[-1] and not any(x[2][0] == _wg.INITIATION and x[2][1] == recv
                                     for x in other):
                return None
            client = False
        ent = self._udp_tunnel("wireguard", ipver, src, sport, dst, dport, client, ts, ref)
        if ent is None:
            return None
        t = ent[0]
        held = [(x, True) for x in pend.pop(key, ())] + [(x, False) for x in pend.pop(rev, ())]
        held.sort(key=lambda e: e[0][0])
        for (hts, href, hm, hlen), same in held:
            fc = client if same else not client
            _twg.handle_message(t, t.st, fc, hts, href, hm, hlen)
        t.frames += len(held)
        return ent

    def _wg_hold(self, key, items):
        if len(self.wg_pending) > 65536:
            self.wg_pending.clear()
        self.wg_pending[key] = items

    def _udp_tunnel(self, protocol, ipver, src, sport, dst, dport, from_client, ts, ref):
        if from_client:
            client, cport, server, port = src, sport, dst, dport
        else:
            client, cport, server, port = dst, dport, src, sport
        key = ("udp", client, server, port, protocol)
        t = self._tunnel(key, protocol, "udp", ipver, client, server, port, ts, ref)
        if t is None:
            return None
        self._bind(t, client, cport, server, port)
        return self.udp_flows[(src, sport, dst, dport)]  # this packet's direction

    # -- L2TP ------------------------------------------------------------------------------------

    def _l2tp(self, t, fc, ts, ref, data, off, end):
        st = t.st
        d = 0 if fc else 1
        h = _l2tp.parse_header(data, off, end)
        st.version = h.version
        if not h.control:
            t.data_packet(d, ts, ref, end - h.payload_off)
            return
        c = _l2tp.parse_control(data, off, end)
        t.control_packet(d, ts, ref, end - off)
        if c.msg_type is None:
            st.zlb[d] += 1
            return
        st.counts[c.msg_type] = st.counts.get(c.msg_type, 0) + 1
        if c.msg_type == _l2tp.SCCRQ and c.assigned_tunnel_id is not None:
            st.client_tid = c.assigned_tunnel_id
        elif c.msg_type == _l2tp.SCCRP and c.assigned_tunnel_id is not None:
            st.server_tid = c.assigned_tunnel_id
        if len(st.messages) < 2000:
            st.messages.append((ts, ref, d, c.msg_type, c.result, c.error, c.error_message,
                                h.tunnel_id, h.session_id))
        else:
            st.dropped += 1

    # -- DTLS ------------------------------------------------------------------------------------

    def _dtls(self, t, fc, ts, ref, client_addr, cport, sport, data, off, end):
        st = t.st
        d = 0 if fc else 1
        f = st.dtls.get((cport, sport))
        if f is None:
            if len(st.dtls) >= 64:
                return
            f = st.dtls[(cport, sport)] = DtlsFlow(cport, sport, ts, ref, self.bounds)
            st.sign("DTLS data channel beside the TLS session")
        f.pkts[d] += 1
        f.last_ts = ts
        recs = _tls.parse_dtls_records(data, off, end)
        side = f.conv.side(fc)
        app = False
        for ctype, ver, epoch, _seq, a, b in recs:
            side.record(ctype, ver, data, a, b, ts, ref, epoch)
            if ctype == _tls.APPLICATION_DATA:
                app = True
        if app:
            t.data_packet(d, ts, ref, end - off)
        else:
            t.control_packet(d, ts, ref, end - off)

    # -- TCP -------------------------------------------------------------------------------------

    def _tcp_tunnel(self, ipver, src, dst, sport, dport, proto, from_client, ts, ref):
        if from_client:
            client, cport, server, port = src, sport, dst, dport
        else:
            client, cport, server, port = dst, dport, src, sport
        key = ("tcp", client, server, port)
        t = self.tunnels.get(key)
        if t is not None:
            if key in self._tls_lru:
                self._tls_lru.move_to_end(key)
        else:
            t = self._tunnel(key, _TCP_PROTOCOL.get(proto, proto), "tcp", ipver, client, server,
                             port, ts, ref)
        return t, cport

    def tcp_segment(self, ref, ts, ipver, src, dst, sport, dport, flags, length, proto,
                    from_client, segments=1):
        t, cport = self._tcp_tunnel(ipver, src, dst, sport, dport, proto, from_client, ts, ref)
        if t is None:
            return
        syn = flags & TcpFlag.SYN
        ack = flags & TcpFlag.ACK
        c = t.conns.get(cport)
        if c is None or (syn and not ack and from_client and (c.closed or c.synack)):
            c = t.conn(cport, ts, ref, new=True)
            if len(t.client_ports) < 1024:
                t.client_ports.add(cport)
        if ts > t.last_ts:
            t.last_ts = ts
        t.last_ref = ref
        t.frames += segments
        c.record(ts, ref, flags, length, from_client)

    def tcp(self, ref, ts, ipver, src, dst, sport, dport, proto, msg, frames, from_client):
        t, cport = self._tcp_tunnel(ipver, src, dst, sport, dport, proto, from_client, ts, ref)
        if t is None:
            return
        c = t.conn(cport, ts, ref)
        d = 0 if from_client else 1
        c.message(from_client)
        if proto == "openvpn":
            if t.protocol == "sslvpn" and not any(x.tls for x in t.conns.values()):
                t.protocol = "openvpn"
                t.st = _tovpn.OpenVpnState(self.bounds)
            if t.protocol != "openvpn":
                t.errors += 1
                return
            c.proto = "openvpn"
            if len(msg):
                _tovpn.handle(t, t.st, from_client, ts, ref, msg, 0, len(msg))
        elif proto == "pptp":
            if t.protocol != "pptp":
                t.errors += 1
                return
            c.proto = "pptp"
            m = _pptp.parse_message(msg, 0, len(msg))
            st = t.st
            st.counts[m.type] = st.counts.get(m.type, 0) + 1
            t.control_packet(d, ts, ref, len(msg))
            if len(st.messages) < 2000:
                st.messages.append((ts, ref, d, m))
            else:
                st.dropped += 1
            self.gre_pairs.setdefault(_pair(t.client, t.server), t)
        elif proto == "tls":
            if t.protocol != "sslvpn":
                t.errors += 1
                return
            c.proto = "tls"
            if c.tls is None:
                c.tls = TlsConversation(bounds=self.bounds)
            if len(msg) < _tls.RECORD_HEADER_LEN:
                return
            side = c.tls.side(from_client)
            had_cert = bool(side.certs)
            ctype, version = _tls.record_header(msg, 0)
            side.record(ctype, version, msg, _tls.RECORD_HEADER_LEN, len(msg), ts, ref)
            if ctype == _tls.APPLICATION_DATA:
                t._packet(d, ts, ref, len(msg))
            else:
                t.control_packet(d, ts, ref, len(msg))
            if not had_cert and side.certs and not from_client:
                ee = side.certs[0]
                text = " ".join(x for x in (ee.issuer, ee.subject) if x)
                if "Fortinet" in text or "FortiGate" in text:
                    t.st.sign("certificate of a FortiGate (Fortinet factory certificate)")

    # -- GRE (PPTP data) -------------------------------------------------------------------------

    def gre(self, ref, ts, ipver, src, dst, call_id, length, seq, ack):
        t = self.gre_pairs.get(_pair(src, dst))
        if t is None:
            port = int(Port.PPTP)  # stored in the tunnel: a plain int
            key = ("tcp", src, dst, port)
            t = self.tunnels.get(key) or self.tunnels.get(("tcp", dst, src, port))
            if t is None:
                t = self._tunnel(key, "pptp", "tcp", ipver, src, dst, port, ts, ref)
                if t is None:
                    return
            self.gre_pairs[_pair(src, dst)] = t
        d = 0 if src == t.client else 1
        t.frames += 1
        t.data_packet(d, ts, ref, length)

    # -- bounded memory (live mode) --------------------------------------------------------------

    def expire(self, limit: float, keep: int | None = None) -> list:
        """Forget the tunnels silent since before ``limit`` (epoch seconds) and, beyond ``keep``
        tunnels, the least recently active ones (live mode's bounds); returns them."""
        old = [k for k, t in self.tunnels.items() if t.last_ts < limit]
        if keep is not None and len(self.tunnels) - len(old) > keep:
            rest = sorted((t.last_ts, i, k) for i, (k, t) in enumerate(self.tunnels.items())
                          if t.last_ts >= limit)
            old += [k for _ts, _i, k in rest[:len(self.tunnels) - len(old) - keep]]
        gone = []
        for k in old:
            gone.append(self.tunnels.pop(k))
            self._tls_lru.pop(k, None)
        if gone:
            ids = set(map(id, gone))
            for m in (self.udp_flows, self.ssl_pairs, self.gre_pairs):
                for k in [k for k, v in m.items() if id(v[0] if isinstance(v, tuple) else v)
                          in ids]:
                    del m[k]
            self.evicted += len(gone)
        self.wg_pending.clear()
        return gone

    def trim_sessions(self) -> int:
        """Live mode's bound of the OpenVPN sessions over all tunnels (``Limits.vpn_max_sessions``
        and ``vpn_max_session_bytes``): beyond either, sessions are forgotten, the least recently
        active first among those that are not their tunnel's latest (where its data packets
        count), then among the latest ones (a tunnel whose session went starts a session again
        at its next control packet).  Counted by bound in ``sessions_evicted`` (the tunnel's
        ``sessions_not_kept`` counts them too).  Returns how many went."""
        if self.max_sessions is None or self.max_session_bytes is None:
            return 0
        states = [t.st for t in self.tunnels.values()
                  if t.protocol == "openvpn" and t.st is not None and t.st.sessions]
        total = sum(len(st.sessions) for st in states)
        n_excess = total - self.max_sessions
        size = {id(s): _tovpn.session_bytes(s) for st in states for s in st.sessions}
        nbytes = sum(size.values())
        if n_excess <= 0 and nbytes <= self.max_session_bytes:
            return 0
        order = sorted(((s is st.sessions[-1], s.last_ts, k, s, st)
                        for k, st in enumerate(states) for s in st.sessions),
                       key=lambda x: x[:3])
        gone = 0
        for _latest, _ts, _k, s, st in order:
            if n_excess > 0:
                bound = "vpn_max_sessions"
            elif nbytes > self.max_session_bytes:
                bound = "vpn_max_session_bytes"
            else:
                break
            st.sessions.remove(s)
            st.dropped_sessions += 1
            n_excess -= 1
            nbytes -= size[id(s)]
            self.sessions_evicted[bound] += 1
            gone += 1
        return gone

    # -- the model -------------------------------------------------------------------------------

    def all_tunnels(self) -> list:
        """Tunnels that are VPNs (unidentified TLS servers left out), in order of appearance."""
        return sorted((t for t in self.tunnels.values() if t.identified),
                      key=lambda t: t.first_ts)


def _pair(a, b):
    return (a, b) if a <= b else (b, a)
