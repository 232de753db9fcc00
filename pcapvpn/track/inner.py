"""ESP decryption per keyed SA and what the decrypted traffic shows (the "inner" stage).

Opt-in and per SA: the decoder hands the ESP bytes of a packet to :meth:`InnerTracker.esp_payload`
only when its SPI has a key (``keyed_spis``); every other ESP packet costs nothing more.  Each
keyed :class:`pcapvpn.track.esp.EspSA` gets an :class:`EspCrypto` (its ``decrypt`` attribute):
packets opened / integrity failures (the keys do not match this SA) / unsupported, and a summary of
the inner traffic: the inner IP header (addresses, protocol, ports) of tunnel mode (Next Header
4/41) or the transport header of transport mode (L2TP/IPsec: UDP 1701), the top inner flows,
ICMP echo requests answered or not, DNS queries answered or not.  Echo requests and DNS queries
are paired with their answers across the two SAs of a tunnel by the inner addresses, identifiers
and sequence numbers.

Memory is bounded: ``MAX_FLOWS`` flows per SA, ``MAX_PENDING`` open echo requests / DNS queries
overall (the oldest are given up), ``MAX_EVIDENCE`` unanswered ones kept as evidence.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

from dissect.vpn import esp as _esp
from dissect.vpn import ip as _ip
from dissect.vpn.errors import DissectError
from pcapvpn import decrypt as _dec

_decode_ipv4 = _ip.decode_ipv4
# protocol numbers bound once (dissect.vpn.ip names them)
_ICMP, _IPIP, _TCP, _UDP = int(_ip.IpProto.ICMP), int(_ip.IpProto.IPIP), int(_ip.IpProto.TCP), \
    int(_ip.IpProto.UDP)
_IPV6, _ESP, _ICMPV6 = int(_ip.IpProto.IPV6), int(_ip.IpProto.ESP), int(_ip.IpProto.ICMPV6)
_DNS_PORT, _L2TP_PORT = int(_ip.Port.DNS), int(_ip.Port.L2TP)
_DHCP_PORTS = ((int(_ip.Port.DHCP_SERVER), int(_ip.Port.DHCP_CLIENT)),
               (int(_ip.Port.DHCP_CLIENT), int(_ip.Port.DHCP_SERVER)))
#: header sizes: UDP (RFC 768), ICMP (RFC 792: type, code, checksum, identifier, sequence), ESP's
#: SPI and sequence number (RFC 4303), the DNS header (RFC 1035 §4.1.1), the two ports
_UDP_HEADER = _ICMP_HEADER = _ESP_HEADER = 8
_DNS_HEADER = 12
_PORTS_LEN = 4
#: ESP inside ESP opened this many levels deep at most
MAX_NESTED = 2
#: ICMP / ICMPv6 echo request and reply types
_ECHO4 = (int(_ip.Icmp4Type.ECHO_REQUEST), int(_ip.Icmp4Type.ECHO_REPLY))
_ECHO6 = (int(_ip.Icmp6Type.ECHO_REQUEST), int(_ip.Icmp6Type.ECHO_REPLY))

MAX_FLOWS = 64
MAX_PENDING = 20000
MAX_EVIDENCE = 20
#: an echo request / DNS query without an answer after this many seconds is unanswered
ANSWER_TIMEOUT = 5.0



class _All:
    """``keyed_spis`` when a key has no SPI (tcpdump ``-E algo:secret``): every SPI."""

    def __contains__(self, spi):
        return True

    def __bool__(self):
        return True


def _txt(a: bytes) -> str:
    return str(ipaddress.ip_address(a))


class EspCrypto:
    """Decryption results of one ESP SA."""

    __slots__ = ("dec", "key_origin", "ok", "unverified", "icv_failed", "malformed", "truncated",
                 "unsupported", "first_ok", "first_fail", "last_fail", "inner_ipver",
                 "flows", "flows_other", "next_headers", "reason", "inner_bytes",
                 "echo", "dns", "echo_unanswered", "dns_unanswered")

    def __init__(self, dec, reason=None):
        self.dec = dec
        self.key_origin = dec.key.origin if dec is not None and dec.key is not None else None
        self.reason = reason
        self.ok = 0
        self.unverified = 0
        self.icv_failed = 0
        self.malformed = 0
        self.truncated = 0
        self.unsupported = 0
        self.first_ok = None      # (ts, ref)
        self.first_fail = None    # (ts, ref, status)
        self.last_fail = None
        self.inner_ipver = None
        #: (ipver, src, dst, proto, sport, dport) -> [packets, bytes, first ts, last ts, first ref]
        self.flows: dict = {}
        self.flows_other = 0
        self.next_headers: dict = {}
        self.inner_bytes = 0
        #: [requests sent in this SA, of them answered] (answers travel in the reverse SA)
        self.echo = [0, 0]
        self.dns = [0, 0]
        #: unanswered requests: ((ipver, src, dst, id, seq | sport, id), ts, ref), first ones
        self.echo_unanswered: list = []
        self.dns_unanswered: list = []

    @property
    def opened(self) -> int:
        return self.ok + self.unverified

    @property
    def failed(self) -> int:
        return self.icv_failed + self.malformed

    @property
    def status(self) -> str:
        """``decrypted`` (every packet opened), ``partial``, ``key_mismatch`` (none opened, the
        integrity check or trailer says the key is wrong), ``unsupported``, ``truncated``."""
        if self.dec is None or not self.dec.supported:
            return "unsupported"
        if self.opened and not self.failed:
            return "decrypted"
        if self.opened:
            return "partial"
        if self.failed:
            return "key_mismatch"
        return "truncated" if self.truncated else "unsupported"

    def top_flows(self, n=10) -> list:
        items = sorted(self.flows.items(), key=lambda kv: (-kv[1][0], kv[1][2]))
        return items[:n]

    def to_dict(self) -> dict:
        flows = []
        for (ipver, s, d, proto, sp, dp), (p, b, t0, t1, ref) in self.top_flows():
            flows.append({"ipver": ipver, "src": _txt(s), "dst": _txt(d), "proto": proto,
                          "sport": sp if sp >= 0 else None, "dport": dp if dp >= 0 else None,
                          "packets": p, "bytes": b, "first_ts": t0, "last_ts": t1,
                          "first_frame": list(ref)})
        return {
            "status": self.status,
            "detail": self.reason,
            "key": self.key_origin,
            "integrity_checked": bool(self.dec is not None and self.dec.locked is not None
                                      and self.dec.locked.check),
            "opened": self.opened,
            "verified": self.ok,
            "icv_failed": self.icv_failed,
            "malformed": self.malformed,
            "truncated": self.truncated,
            "first_failure_frame": list(self.first_fail[1]) if self.first_fail else None,
            "next_headers": {str(k): v for k, v in sorted(self.next_headers.items())},
            "inner_bytes": self.inner_bytes,
            "inner_flows": flows,
            "inner_flows_other_packets": self.flows_other,
            "icmp_echo": {"requests": self.echo[0], "answered": self.echo[1],
                          "unanswered": len(self.echo_unanswered)},
            "dns": {"queries": self.dns[0], "answered": self.dns[1],
                    "unanswered": len(self.dns_unanswered)},
        }


class InnerTracker:
    """Decrypts the ESP packets of keyed SAs and summarises what is inside."""

    def __init__(self, keys, esp_tracker):
        self.keys = keys
        self.esp_tracker = esp_tracker
        self.keyed_spis = _All() if keys.esp_all else keys.esp_spis
        self.packets = 0
        # ICMP echo / DNS pairing across the SAs of a tunnel
        self._echo: OrderedDict = OrderedDict()  # (ipver, src, dst, id, seq) -> (ts, ref, sa)
        self._dns: OrderedDict = OrderedDict()   # (ipver, client, server, cport, id) -> (...)
        self.echo_requests = 0
        self.echo_answered = 0
        self.dns_queries = 0
        self.dns_answered = 0
        self.given_up = 0
        self._inner_sas: dict = {}  # (dst, spi) -> EspDecryptor of ESP nested in a tunnel
        #: L2TP/IPsec (RFC 3193): decrypted UDP 1701 is handed to the VPN tracker through this
        #: sink event (set by pcapvpn.track.Tracker), so L2TP control errors are found with keys
        self.vpn_udp = None
        #: the PlainTracker that also gets every decrypted packet (the one inner model)
        self.plain = None

    # -- the event -------------------------------------------------------------------------

    def esp_payload(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, data, off, end):
        """``data[off:end]``: the ESP packet from its SPI on (after :meth:`EspTracker.esp`
        created / updated its SA)."""
        sa = self.esp_tracker._esp.get(spi)
        if sa is None or sa.dst != dst:
            sa = self._sa(src, dst, spi)
            if sa is None:
                return
        st = sa.decrypt
        if st is None:
            st = sa.decrypt = self._new_state(sa)
        self.packets += 1
        dec = st.dec
        if dec is None or not dec.supported:
            st.unsupported += 1
            return
        lk = dec.locked
        status, nh, pt = (lk or dec).open(data, off, end)
        if status == "ok":
            st.ok += 1
        elif status == "unverified":
            st.unverified += 1
        else:
            self._failed(st, ts, ref, status)
            return
        if st.first_ok is None:
            st.first_ok = (ts, ref)
            st.key_origin = dec.key.origin
        nhs = st.next_headers
        nhs[nh] = nhs.get(nh, 0) + 1
        st.inner_bytes += len(pt)
        self._inner(sa, st, ts, ref, src, dst, nh, pt)

    @staticmethod
    def _failed(st, ts, ref, status):
        if status == _dec.TRUNCATED:
            st.truncated += 1
            return
        if status == _dec.ICV_FAILED:
            st.icv_failed += 1
        elif status == _dec.MALFORMED:
            st.malformed += 1
        else:
            st.unsupported += 1
            return
        if st.first_fail is None:
            st.first_fail = (ts, ref, status)
        st.last_fail = (ts, ref, status)

    def _sa(self, src, dst, spi):
        et = self.esp_tracker
        sa = et._esp.get(spi)
        if sa is not None and sa.dst == dst:
            return sa
        from pcapvpn.track.esp import is_multicast

        return et._esp2.get((dst, spi, src) if is_multicast(dst) else (dst, spi))

    def _new_state(self, sa) -> EspCrypto:
        keys = self.keys.esp_for(sa.spi, _txt(sa.src), _txt(sa.dst))
        if not keys:
            return EspCrypto(None, "no key for this SPI")
        dec = _dec.EspDecryptor(keys)
        if not dec.supported:
            k = keys[0]
            return EspCrypto(dec, f"algorithm not supported ({k.encr_name} / {k.auth_name})")
        return EspCrypto(dec)

    # -- inner traffic ---------------------------------------------------------------------

    def _nested(self, sa, st, ts, ref, src, dst, pt, off, end, depth):
        spi = _esp.esp_spi(pt, off)
        if spi not in self.keyed_spis:
            return
        dec = self._inner_sas.get((dst, spi))
        if dec is None:
            keys = self.keys.esp_for(spi, _txt(src), _txt(dst))
            dec = self._inner_sas[(dst, spi)] = _dec.EspDecryptor(keys) if keys else None
        if dec is None or not dec.supported:
            return
        status, nh, inner = dec.open(pt, off, end)
        if status == _dec.OK or status == _dec.UNVERIFIED:
            self._inner(sa, st, ts, ref, src, dst, nh, inner, depth + 1)

    def _inner(self, sa, st, ts, ref, osrc, odst, nh, pt, depth=0):
        n = len(pt)
        try:
            if nh == _IPIP:
                t = _decode_ipv4(pt, 0, n)
                ipver, src, dst, proto, sport, dport, l4off, end = t[:8]
                if t[8] or t[9]:  # an inner fragment: no transport header to read
                    l4off = -1
            elif nh == _IPV6:
                t = _ip.decode_ip(pt, 0, 6)
                ipver, src, dst, proto, sport, dport, l4off, end = t[:8]
                if t[8] or t[9]:  # an inner fragment: no transport header to read
                    l4off = -1
            elif nh in (_ICMP, _TCP, _UDP, _ICMPV6):
                # transport mode (e.g. L2TP/IPsec, RFC 3193): the outer addresses are the inner
                ipver, src, dst, proto, l4off, end = sa.ipver, osrc, odst, nh, 0, n
                sport = dport = -1
                if nh in (_TCP, _UDP) and n >= _PORTS_LEN:
                    sport, dport = _ip.ports(pt, 0)
                t = (ipver, src, dst, proto, sport, dport, 0, n, 0, False, 0, -1)
            else:
                return
        except DissectError:
            return
        st.inner_ipver = ipver
        if self.plain is not None and depth == 0:
            self.plain.decrypted(sa.src, sa.dst, ts, ref, t, pt)
        key = (ipver, src, dst, proto, sport, dport)
        fl = st.flows.get(key)
        if fl is None:
            if len(st.flows) >= MAX_FLOWS:
                st.flows_other += 1
            else:
                st.flows[key] = [1, n, ts, ts, ref]
        else:
            fl[0] += 1
            fl[1] += n
            fl[3] = ts
        if l4off < 0:
            return
        if proto == _ESP and depth < MAX_NESTED and end - l4off >= _ESP_HEADER:
            # ESP inside the tunnel (nested SAs): opened too when its SPI has a key
            self._nested(sa, st, ts, ref, src, dst, pt, l4off, end, depth)
            return
        if proto == _ICMP or proto == _ICMPV6:
            self._icmp(sa, ts, ref, ipver, src, dst, proto, pt, l4off, end)
        elif proto == _UDP and (sport == _DNS_PORT or dport == _DNS_PORT):
            self._dns_msg(sa, ts, ref, ipver, src, dst, sport, dport, pt, l4off + _UDP_HEADER,
                          end)
        elif proto == _UDP and (sport == _L2TP_PORT or dport == _L2TP_PORT) and \
                self.vpn_udp is not None and end - l4off > _UDP_HEADER:
            self.vpn_udp(ref, ts, ipver, src, dst, sport, dport, "l2tp", pt, l4off + _UDP_HEADER,
                         end)

    @staticmethod
    def _count(sa, kind, i):
        st = sa.decrypt
        if st is not None:
            getattr(st, kind)[i] += 1

    def _icmp(self, sa, ts, ref, ipver, src, dst, proto, pt, off, end):
        # ICMP echo (RFC 792) / ICMPv6 echo (RFC 4443 §4): type, code, checksum, id, seq
        if end - off < _ICMP_HEADER:
            return
        itype, ident, seq = _ip.icmp_echo(pt, off)
        req, rep = _ECHO4 if proto == _ICMP else _ECHO6
        if itype == req:
            self.echo_requests += 1
            self._count(sa, "echo", 0)
            self._pend(self._echo, (ipver, src, dst, ident, seq), (ts, ref, sa), "echo")
        elif itype == rep:
            hit = self._echo.pop((ipver, dst, src, ident, seq), None)
            if hit is not None:
                self.echo_answered += 1
                self._count(hit[2], "echo", 1)

    def _dns_msg(self, sa, ts, ref, ipver, src, dst, sport, dport, pt, off, end):
        # DNS header (RFC 1035 §4.1.1): ID, then QR in the top bit of the flags
        if end - off < _DNS_HEADER:
            return
        ident, qr = _dns.message_id(pt, off)
        if not qr and dport == _DNS_PORT:
            self.dns_queries += 1
            self._count(sa, "dns", 0)
            self._pend(self._dns, (ipver, src, dst, sport, ident), (ts, ref, sa), "dns")
        elif qr and sport == _DNS_PORT:
            hit = self._dns.pop((ipver, dst, src, dport, ident), None)
            if hit is not None:
                self.dns_answered += 1
                self._count(hit[2], "dns", 1)

    def _pend(self, table, key, val, kind):
        if key in table:
            return  # a repeated request: the first one is what waits
        table[key] = val
        while len(table) > MAX_PENDING:
            k, v = table.popitem(last=False)
            self.given_up += 1
            self._unanswered(kind, k, v)

    @staticmethod
    def _unanswered(kind, key, val):
        st = val[2].decrypt
        if st is None:
            return
        lst = getattr(st, kind + "_unanswered")
        if len(lst) < MAX_EVIDENCE:
            lst.append((key, val[0], val[1]))

    def finish(self, now: float) -> None:
        """Requests still waiting at ``now``: unanswered when older than ``ANSWER_TIMEOUT``."""
        for kind, table in (("echo", self._echo), ("dns", self._dns)):
            for key, val in list(table.items()):
                if now - val[0] >= ANSWER_TIMEOUT:
                    self._unanswered(kind, key, val)
                    del table[key]

    def summary(self) -> dict:
        return {"packets": self.packets, "echo_requests": self.echo_requests,
                "echo_answered": self.echo_answered, "dns_queries": self.dns_queries,
                "dns_answered": self.dns_answered}


def tunnel_inner_summary(esp_sas) -> dict | None:
    """The inner traffic of a tunnel's decrypted ESP SAs: top flows over all of them, ICMP echo
    and DNS answered or not; None when none of them was decrypted."""
    dec = [e for e in esp_sas if e.decrypt is not None]
    if not dec:
        return None
    flows = {}
    for e in dec:
        for k, v in e.decrypt.flows.items():
            f = flows.get(k)
            if f is None:
                flows[k] = list(v)
            else:
                f[0] += v[0]
                f[1] += v[1]
                f[2] = min(f[2], v[2])
                f[3] = max(f[3], v[3])
    top = sorted(flows.items(), key=lambda kv: (-kv[1][0], kv[1][2]))[:10]
    return {
        "esp_sas_decrypted": sum(1 for e in dec if e.decrypt.opened),
        "esp_sas_keyed": len(dec),
        "packets_decrypted": sum(e.decrypt.opened for e in dec),
        "packets_failed": sum(e.decrypt.failed for e in dec),
        "top_flows": [{"ipver": k[0], "src": _txt(k[1]), "dst": _txt(k[2]), "proto": k[3],
                       "sport": k[4] if k[4] >= 0 else None,
                       "dport": k[5] if k[5] >= 0 else None, "packets": v[0], "bytes": v[1]}
                      for k, v in top],
        "icmp_echo": {"requests": sum(e.decrypt.echo[0] for e in dec),
                      "answered": sum(e.decrypt.echo[1] for e in dec),
                      "unanswered": sum(len(e.decrypt.echo_unanswered) for e in dec)},
        "dns": {"queries": sum(e.decrypt.dns[0] for e in dec),
                "answered": sum(e.decrypt.dns[1] for e in dec),
                "unanswered": sum(len(e.decrypt.dns_unanswered) for e in dec)},
    }


# == the one inner model: plaintext views and decrypted ESP ====================================
#
# Every IP packet that is no VPN traffic (``Decoder`` sink event ``plain``) is seen on a *view*:
# one interface of one capture file (a pcapng IDB; for Linux cooked captures also the SLL2
# interface index and the ARPHRD type of the frame).  Decrypted ESP (--keys) is a view too (kind
# ``keys``).  Per view the tracker keeps flows (both directions, TCP handshake, resets, ICMP
# errors about them, segment sizes delivered and retransmitted), DNS queries with their answers,
# DHCP leases and ARP requests.  At the end :func:`tie` ties views to tunnels and says how
# (``tied_by``); :class:`InnerModel` is what the rules and the report read.

from dissect.vpn import arp as _arp  # noqa: E402
from dissect.vpn import dhcp as _dhcp  # noqa: E402
from dissect.vpn import dns as _dns  # noqa: E402
from dissect.vpn.link import (  # noqa: E402
    ARPHRD_ETHER, ARPHRD_LOOPBACK, LINKTYPE_LOOP, LINKTYPE_NULL, PACKET_TYPES, TUNNEL_HATYPES,
)

#: interface names of tunnel devices (Linux tun/tap/ipsec/xfrm/vti/wg/ppp, macOS utun, BSD gif)
_TUNNEL_NAMES = ("tun", "tap", "ipsec", "xfrm", "vti", "ip_vti", "wg", "ppp", "utun", "gif",
                 "gre", "ipip", "sit", "nordlynx", "tailscale", "zt")
#: words in a Windows adapter description / name that mark a VPN adapter
_TUNNEL_WORDS = ("vpn", "tap-windows", "wintun", "wireguard", "anyconnect", "pangp",
                 "fortinet", "globalprotect", "virtual adapter", "openvpn", "tunnel",
                 # Windows' built-in VPN adapters (RAS): IKEv2, L2TP, SSTP, PPTP
                 "wan miniport (ikev2)", "wan miniport (l2tp)", "wan miniport (sstp)",
                 "wan miniport (pptp)")
#: link types that carry IP with no link header (raw IP, PPP): tunnel devices
_RAW_LINKTYPES = frozenset((101, 12, 14, 228, 229, 9, 50))

#: bounds (per tracker): views, flows, DNS queries, ARP targets (per view), evidence frames
#: per flow direction; a flow costs about 1 kB
MAX_VIEWS = 256
MAX_PLAIN_FLOWS = 20000
MAX_DNS = 20000
MAX_ARP = 4096
MAX_REFS = 8
#: segments a TCP direction keeps unacknowledged for the delivered-size bookkeeping
MAX_OUTSTANDING = 64
#: per-packet ties: the first packets of each view kept as a sample ``(frame, ts, IP length,
#: src, dst)``, the frames within ``PAIR_FRAMES`` of them read again (``pair``) for the outer
#: packets within ``PAIR_WINDOW`` seconds
PAIR_SAMPLE = 64
PAIR_FRAMES = 256
PAIR_WINDOW = 0.010

VIEW_KINDS = ("tunnel", "physical", "loopback", "keys")
#: ARPHRD_* names (linux/if_arp.h) shown in view labels
_HATYPE_NAMES = {1: "Ethernet", 772: "loopback", 0xFFFE: "TUN", 512: "PPP", 768: "IPIP",
                 776: "SIT", 778: "GRE", 823: "IP6GRE", 769: "IP6IP6"}
TIED_BY = ("interface", "address", "xfrm", "timing", "keys")

_SYN, _RST, _ACK = int(_ip.TcpFlag.SYN), int(_ip.TcpFlag.RST), int(_ip.TcpFlag.ACK)
#: Linux cooked packet type (linux/if_packet.h PACKET_OUTGOING): sent by this host
_OUTGOING = next(k for k, v in PACKET_TYPES.items() if v == "outgoing")
#: TCP sequence numbers compare in serial number arithmetic (RFC 1982): half the space
_SEQ_MASK, _SEQ_HALF = 0xFFFFFFFF, 0x80000000
#: ports below this are a server's (the opener of a conversation seen mid-stream is the other)
_WELL_KNOWN = 1024
#: a DNS message over TCP: its 2-byte length, then the header (RFC 1035 §4.2.2)
_DNS_TCP_MIN = 2 + _DNS_HEADER


def _tunnel_name(name: str | None, desc: str | None) -> bool:
    n = (name or "").lower()
    for p in _TUNNEL_NAMES:
        if n.startswith(p) and (len(n) == len(p) or n[len(p)].isdigit() or n[len(p)] in "-_."):
            return True
    text = f"{n} {(desc or '').lower()}"
    return any(w in text for w in _TUNNEL_WORDS)


class View:
    """Where plaintext was seen: one interface of one file (or decrypted ESP: ``keys``)."""

    __slots__ = ("key", "file", "iface", "name", "description", "linktype", "ifindex", "hatype",
                 "kind", "packets", "first_ts", "last_ts", "flows", "dns", "arp", "leases",
                 "outgoing", "incoming", "gateways", "sample", "near")

    def __init__(self, key, file, iface, linktype, ifindex=-1, hatype=-1, name=None,
                 description=None, kind=None):
        self.key = key
        self.file = file
        self.iface = iface
        self.linktype = linktype
        self.ifindex = ifindex
        self.hatype = hatype
        self.name = name
        self.description = description
        self.kind = kind or self._kind()
        self.packets = 0
        self.first_ts = None
        self.last_ts = None
        #: (proto, a, aport, b, bport) both ways -> Flow
        self.flows: dict = {}
        #: DNS queries in arrival order
        self.dns: list = []
        #: ARP: target address -> [requests, first ts, first ref, sender address, answered]
        self.arp: dict = {}
        #: DHCP ACKs: (address, mask, routers, dns servers, domain, ref)
        self.leases: list = []
        #: Linux cooked packet types seen: sent by this host / addressed to it
        self.outgoing = 0
        self.incoming = 0
        #: --keys views: the two gateways whose ESP was opened
        self.gateways = None
        #: the first PAIR_SAMPLE packets: (frame number, ts, IP length, src, dst)
        self.sample: list = []
        #: outer packets of the same file near the sample (``pair``): None until read
        self.near = None

    def conversations(self) -> list:
        """Each flow once, in the order the flows were first seen (``flows`` maps both
        directions)."""
        return list(dict.fromkeys(self.flows.values()))

    def _kind(self) -> str:
        if self.hatype in TUNNEL_HATYPES:
            return "tunnel"
        if self.hatype == ARPHRD_LOOPBACK:
            return "loopback"
        if _tunnel_name(self.name, self.description):
            return "tunnel"
        if (self.name or "").lower() in ("lo", "lo0", "loopback") or \
                (self.linktype in (LINKTYPE_NULL, LINKTYPE_LOOP) and (self.name or "").lower().startswith("lo")):
            return "loopback"
        if self.hatype == ARPHRD_ETHER:
            return "physical"
        if self.linktype in _RAW_LINKTYPES:
            return "tunnel"
        return "physical"

    def label(self, file_names=None) -> str:
        """How the report names it: ``ipsec0 (file.pcapng, interface 2)``, ``SLL2 ifindex 5``."""
        if self.kind == "keys":
            return "decrypted ESP"
        what = self.name or (f"ifindex {self.ifindex}" if self.ifindex >= 0 else None)
        if self.hatype >= 0:
            what = f"{what or 'cooked'} [{_HATYPE_NAMES.get(self.hatype, f'ARPHRD {self.hatype}')}]"
        where = []
        if file_names is not None and 0 <= self.file < len(file_names):
            where.append(file_names[self.file])
        if self.name is None and self.ifindex < 0:
            where.append(f"interface {self.iface}")
        elif self.name is not None:
            where.append(f"interface {self.iface}")
        text = what or "capture interface"
        return f"{text} ({', '.join(where)})" if where else text

    def to_dict(self, file_names=None) -> dict:
        d = {"kind": self.kind, "label": self.label(file_names), "packets": self.packets,
             "flows": len(self.conversations())}
        if self.kind != "keys":
            d["file"] = file_names[self.file] if file_names and self.file < len(file_names) \
                else self.file
            d["interface"] = self.iface
            if self.name is not None:
                d["name"] = self.name
            if self.description is not None:
                d["description"] = self.description
            if self.ifindex >= 0:
                d["ifindex"] = self.ifindex
            if self.hatype >= 0:
                d["arphrd"] = self.hatype
        return d


class Flow:
    """One conversation on one view: ``cli`` opened it (SYN, query, echo request, first
    packet), ``srv`` answered.  Index 0 of the pairs is cli -> srv, 1 the way back."""

    __slots__ = ("view", "ipver", "proto", "cli", "cport", "srv", "sport", "first_ts",
                 "last_ts", "refs", "pkts", "bytes", "last", "syn", "synack", "rst", "icmp",
                 "mss", "hi", "out", "maxlen", "acked", "retx", "retx_refs", "echo", "pkttype",
                 "hole", "hole_refs", "data_ts")

    def __init__(self, view, ipver, proto, cli, cport, srv, sport, ts, ref):
        self.view = view
        self.ipver = ipver
        self.proto = proto
        self.cli = cli
        self.cport = cport
        self.srv = srv
        self.sport = sport
        self.first_ts = ts
        self.last_ts = ts
        self.refs = [[], []]
        self.pkts = [0, 0]
        self.bytes = [0, 0]
        self.last = [None, None]
        self.syn = 0        # SYNs from cli (retransmissions included)
        self.synack = 0
        self.rst = None     # (direction it came from, ts, ref)
        self.icmp = None    # (type, code, mtu, sender, ts, ref)
        self.mss = [None, None]     # MSS option of cli's SYN, of srv's SYN-ACK
        self.hi = [None, None]      # highest sequence end sent per direction
        self.out = [[], []]         # (end, length) sent, not yet acknowledged
        self.maxlen = [0, 0]        # largest TCP payload sent per direction
        self.acked = [0, 0]         # largest TCP payload acknowledged per direction
        self.retx = [0, 0]          # retransmitted segments larger than anything acknowledged
        self.retx_refs = [[], []]
        self.echo = None    # ICMP echo: [requests, replies]
        self.pkttype = -1
        self.hole = [0, 0]          # bytes a direction skipped: sent, never seen here
        self.hole_refs = [[], []]
        self.data_ts = [None, None]  # last segment with payload per direction

    @property
    def answered(self) -> bool:
        return self.pkts[1] > 0

    def service(self) -> str:
        if self.proto == _TCP:
            return f"TCP {self.sport}"
        if self.proto == _UDP:
            return f"UDP {self.sport}"
        if self.proto in (_ICMP, _ICMPV6):
            return "ICMP echo" if self.echo else "ICMP"
        return f"IP protocol {self.proto}"


class DnsQuery:
    __slots__ = ("view", "ts", "ref", "client", "cport", "server", "ident", "name", "qtype",
                 "tcp", "tries", "rcode", "answers", "rts", "rref")

    def __init__(self, view, ts, ref, client, cport, server, ident, name, qtype, tcp):
        self.view = view
        self.ts = ts
        self.ref = ref
        self.client = client
        self.cport = cport
        self.server = server
        self.ident = ident
        self.name = name
        self.qtype = qtype
        self.tcp = tcp
        self.tries = 1
        self.rcode = None
        self.answers = 0
        self.rts = None
        self.rref = None


class PlainTracker:
    """The decoder's ``plain`` / ``link_other`` events (and decrypted ESP, through
    :meth:`decrypted`) turned into views, flows, DNS, DHCP and ARP facts."""

    def __init__(self, interfaces=None):
        #: per file index: the reader's interface list (``Interface``: name, description ...)
        self.interfaces = interfaces if interfaces is not None else {}
        self.views: dict = {}
        self.max_flows = MAX_PLAIN_FLOWS
        self.max_dns = MAX_DNS
        self.nflows = 0
        self.flows_dropped = 0
        self.dns_dropped = 0
        self.malformed = 0
        self._dns_open: dict = {}
        #: files whose frames could not be read again for the per-packet ties (``pair``)
        self.pair_errors: list = []

    # -- views ---------------------------------------------------------------------------------

    def _view(self, ref, iface, linktype, cooked):
        if cooked is None:
            key = (ref[0], iface, -1, -1)
        else:
            key = (ref[0], iface, cooked[0], cooked[1])
        v = self.views.get(key)
        if v is None:
            if len(self.views) >= MAX_VIEWS:  # hostile SLL2 indexes: one view for the rest
                key = (ref[0], -1, -1, -1)
                v = self.views.get(key)
                if v is None:
                    v = self.views[key] = View(key, ref[0], -1, linktype, kind="physical",
                                               name="(further interfaces)")
                return v
            name = desc = None
            ifs = self.interfaces.get(ref[0])
            if ifs is not None and 0 <= iface < len(ifs):
                name = getattr(ifs[iface], "name", None)
                desc = getattr(ifs[iface], "description", None)
            if cooked is not None:  # tcpdump -i any: the IDB is "any", the frame says more
                name = desc = None
            v = self.views[key] = View(key, ref[0], iface, linktype, key[2], key[3], name, desc)
        return v

    def keys_view(self, a, b):
        """The view of decrypted ESP between gateways ``a`` and ``b``."""
        key = ("keys", min(a, b), max(a, b))
        v = self.views.get(key)
        if v is None:
            v = self.views[key] = View(key, -1, -1, -1, kind="keys")
            v.gateways = (key[1], key[2])
        return v

    # -- events --------------------------------------------------------------------------------

    def plain(self, ref, ts, iface, linktype, cooked, net, data):
        if cooked is None:
            v = self.views.get((ref[0], iface, -1, -1))
            pkt = -1
        else:
            v = self.views.get((ref[0], iface, cooked[0], cooked[1]))
            pkt = cooked[2]
        if v is None:
            v = self._view(ref, iface, linktype, cooked)
        if pkt == _OUTGOING:
            v.outgoing += 1
        elif pkt == 0:
            v.incoming += 1
        if len(v.sample) < PAIR_SAMPLE:
            v.sample.append((ref[1], ts, net[7] - net[11], net[1], net[2]))
        if net[3] == _TCP and not (net[8] or net[9]):
            # the common case, as packet() does it
            v.packets += 1
            if v.first_ts is None:
                v.first_ts = ts
            v.last_ts = ts
            try:
                self._tcp(v, ts, ref, net[0], net[1], net[2], data, net[6], net[7], pkt)
            except DissectError:
                self.malformed += 1
            return
        self.packet(v, ts, ref, net, data, pkt)

    def plain_tcp(self, fidx, linktype, ifaces, data, run):
        """:meth:`plain` for a run of IPv4 TCP segments of file ``fidx`` whose headers the reader
        decoded already (:meth:`dissect.vpn.capture.PcapReader.walk`'s ``on_tcp``): the same
        facts, without decoding them again.  The packets of one direction of a conversation on
        one view are counted together (views and flows are made in the order their first
        packets came, as one packet at a time would); the sequence bookkeeping
        (:meth:`_seqs`) goes packet by packet, in capture order.  A run that may reach the
        bound on views (several interfaces would share the last view) goes packet by packet
        through :meth:`plain`."""
        import numpy as np

        a = run["arrays"]
        n = len(run["ts"])
        cooked = "ifindex" in a
        ifx = np.asarray(ifaces, dtype=np.int64)
        # one group per view and direction: (iface, SLL2 index, ARPHRD, addresses, ports);
        # stable sort, so each group lists its packets in capture order
        u64 = np.uint64
        src64, dst64 = a["src"].astype(u64), a["dst"].astype(u64)
        sport64, dport64 = a["sport"].astype(u64), a["dport"].astype(u64)
        k1 = src64 << u64(32) | dst64
        k2 = (sport64 << u64(16) | dport64
              | (ifx.astype(np.uint64) << np.uint64(32)))
        keys = [k1, k2]
        if cooked:
            ifindex64 = a["ifindex"].astype(u64)
            keys.append(ifindex64 << u64(16)
                        | a["hatype"].astype(np.uint64))
        order = np.lexsort(keys[::-1])
        new = np.ones(n, dtype=bool)
        diff = np.zeros(n - 1, dtype=bool)
        for k in keys:
            sk = k[order]
            diff |= sk[1:] != sk[:-1]
        new[1:] = diff
        starts = np.flatnonzero(new)
        gid = np.cumsum(new) - 1
        inv = np.empty(n, dtype=np.int64)
        inv[order] = gid
        first = order[starts]                       # each group's first packet
        bounds = np.append(starts, n).tolist()
        plen = np.maximum(a["end"] - a["poff"], 0)
        nbytes = np.bincount(inv, weights=plen, minlength=len(starts)).astype(np.int64).tolist()
        orderl = order.tolist()
        tsl = run["ts"]
        nums = run["number"]
        flagsl = run["flags"]
        # per group only (its first packet): addresses, ports, cooked header
        firstl = first.tolist()
        gsrc = a["src"][first].tolist()
        gdst = a["dst"][first].tolist()
        gsport = a["sport"][first].tolist()
        gdport = a["dport"][first].tolist()
        views = self.views
        if cooked:
            cks = list(zip(a["ifindex"][first].tolist(), a["hatype"][first].tolist(),
                           a["pkttype"][first].tolist()))
            vkeys = {(fidx, ifaces[i], c[0], c[1]) for i, c in zip(firstl, cks)}
            # packets sent / received per group (linux/if_packet.h PACKET_OUTGOING, _HOST)
            pk = a["pkttype"]
            gout = np.bincount(inv, weights=pk == _OUTGOING, minlength=len(starts)).tolist()
            gin = np.bincount(inv, weights=pk == 0, minlength=len(starts)).tolist()
        else:
            vkeys = {(fidx, ifaces[i], -1, -1) for i in firstl}
        if len(views) + len(vkeys - views.keys()) > MAX_VIEWS:
            self._plain_tcp_each(fidx, linktype, ifaces, data, run)
            return
        gplen = plen[first].tolist()
        flows_of = [None] * len(starts)
        dirs = [0] * len(starts)
        last_of = []  # (last position, view, flow) per group
        gviews = [None] * len(starts)
        for g in np.argsort(first, kind="stable").tolist():
            i = firstl[g]
            lo, hi = bounds[g], bounds[g + 1]
            m = hi - lo
            iface = ifaces[i]
            ck = cks[g] if cooked else None
            key = (fidx, iface, ck[0], ck[1]) if cooked else (fidx, iface, -1, -1)
            v = views.get(key)
            if v is None:
                v = self._view((fidx, nums[i]), iface, linktype, ck)
            pkt = ck[2] if cooked else -1
            if cooked:
                v.outgoing += int(gout[g])
                v.incoming += int(gin[g])
            v.packets += m
            gviews[g] = v
            if v.first_ts is None:
                v.first_ts = tsl[i]
            fl = flagsl[i]
            # the group's first packet goes through _flow (which may open the flow), the
            # others are counted with it
            f, d = self._flow(v, tsl[i], (fidx, nums[i]), 4, 6, gsrc[g].to_bytes(4, "big"),
                              gsport[g], gdst[g].to_bytes(4, "big"), gdport[g], gplen[g], pkt,
                              (not fl & _ACK) if fl & _SYN else None)
            last_of.append((orderl[hi - 1], v, f))
            if f is None:
                self.flows_dropped += m - 1
                continue
            flows_of[g] = f
            dirs[g] = d
            if m > 1:
                pos = orderl[lo + 1:hi]
                f.pkts[d] += m - 1
                f.bytes[d] += nbytes[g] - gplen[g]
                f.last[d] = tsl[pos[-1]]
                refs = f.refs[d]
                for p in pos[:MAX_REFS - len(refs)]:
                    refs.append((fidx, nums[p]))
        # the last packet of each view and flow in the run sets their last-seen times
        last_of.sort(key=lambda x: x[0])
        for p, v, f in last_of:
            v.last_ts = tsl[p]
            if f is not None:
                f.last_ts = tsl[p]
        # the views' samples (the first packets of a view, in capture order)
        need = [v for v in dict.fromkeys(gviews) if len(v.sample) < PAIR_SAMPLE]
        if need:
            vid = {id(v): k for k, v in enumerate(need)}
            pv = np.asarray([vid.get(id(v), -1) for v in gviews], dtype=np.int64)[inv]
            iplen = a["end"] - (run["l4"] - 20)
            for k, v in enumerate(need):
                for p in np.flatnonzero(pv == k)[:PAIR_SAMPLE - len(v.sample)].tolist():
                    v.sample.append((nums[p], tsl[p], int(iplen[p]),
                                     int(a["src"][p]).to_bytes(4, "big"),
                                     int(a["dst"][p]).to_bytes(4, "big")))
        # (no DNS here: the reader leaves port 53 to the general path)
        invl = inv.tolist()
        self._seqs(fidx, data, run["l4"], flows_of, dirs, zip(
            invl, tsl, nums, run["seq"], run["ack"], flagsl, run["frame"], run["poff"],
            plen.tolist()))

    def _plain_tcp_each(self, fidx, linktype, ifaces, data, run):
        """:meth:`plain_tcp` one packet at a time (:meth:`plain`)."""
        a = run["arrays"]
        cooked = "ifindex" in a
        cks = (zip(a["ifindex"].tolist(), a["hatype"].tolist(), a["pkttype"].tolist())
               if cooked else [None] * len(ifaces))
        l4 = run["l4"]
        for num, ts, iface, ck, src, dst, sport, dport, fo, end in zip(
                run["number"], run["ts"], ifaces, cks, a["src"].tolist(), a["dst"].tolist(),
                a["sport"].tolist(), a["dport"].tolist(), run["frame"], a["end"].tolist()):
            self.plain((fidx, num), ts, iface, linktype, ck,
                       (4, src.to_bytes(4, "big"), dst.to_bytes(4, "big"), 6, sport, dport,
                        fo + l4, fo + end, 0, False, 0, fo + l4 - 20), data)

    def link_other(self, ref, ts, iface, linktype, cooked, data):
        lp = _arp.link_payload(linktype, data)
        if lp is None or lp[0] != _arp.ETHERTYPE_ARP:
            return
        try:
            a = _arp.parse_arp(data, lp[1])
        except DissectError:
            self.malformed += 1
            return
        if a is None:
            return
        v = self._view(ref, iface, linktype, cooked)
        v.packets += 1
        op, _sha, spa, _tha, tpa = a
        if op == _arp.ARP_REQUEST and spa != tpa:  # a gratuitous ARP asks for nobody
            e = v.arp.get(tpa)
            if e is None:
                if len(v.arp) >= MAX_ARP:
                    return
                e = v.arp[tpa] = [0, ts, ref, spa, False]
            e[0] += 1
        elif op == _arp.ARP_REPLY:
            e = v.arp.get(spa)
            if e is not None:
                e[4] = True

    def decrypted(self, a, b, ts, ref, net, pt):
        """A decrypted ESP packet between gateways ``a`` and ``b``: its inner packet (``net``
        the network tuple of ``pt``)."""
        self.packet(self.keys_view(a, b), ts, ref, net, pt, -1)

    def packet(self, v, ts, ref, net, data, pkttype):
        v.packets += 1
        if v.first_ts is None:
            v.first_ts = ts
        v.last_ts = ts
        ipver, src, dst, proto, sport, dport, l4off, end, frag, mf = net[:10]
        if frag or mf:
            l4off = -1
        try:
            if proto == _TCP and l4off >= 0:
                self._tcp(v, ts, ref, ipver, src, dst, data, l4off, end, pkttype)
            elif proto == _UDP and l4off >= 0 and sport >= 0:
                f, d = self._flow(v, ts, ref, ipver, _UDP, src, sport, dst, dport, end - l4off,
                                  pkttype)
                if sport == _DNS_PORT or dport == _DNS_PORT:
                    self._dns(v, ts, ref, src, sport, dst, dport, data, l4off + _UDP_HEADER, end,
                              False)
                elif (sport, dport) in _DHCP_PORTS and \
                        end - l4off > _UDP_HEADER + _dhcp.HEADER_LEN:
                    self._dhcp(v, ref, data, l4off + _UDP_HEADER, end)
            elif (proto == _ICMP or proto == _ICMPV6) and l4off >= 0 and \
                    end - l4off >= _ICMP_HEADER:
                self._icmp(v, ts, ref, ipver, src, dst, proto, data, l4off, end, pkttype)
            else:
                self._flow(v, ts, ref, ipver, proto, src, -1, dst, -1, end - max(l4off, 0),
                           pkttype)
        except DissectError:
            self.malformed += 1

    # -- flows ---------------------------------------------------------------------------------

    def _flow(self, v, ts, ref, ipver, proto, src, sport, dst, dport, length, pkttype,
              opener=None):
        """The flow of a packet and its direction (0: from the opener).  ``opener``: True
        when this packet opens the conversation (SYN, request), False when it answers one."""
        flows = v.flows
        f = flows.get((proto, src, sport, dst, dport))
        if f is not None:
            d = 0 if f.cli == src and f.cport == sport else 1
        else:
            if opener is None:
                # mid-stream: the well-known (lower) port is the server's
                opener = not (0 <= sport < dport and sport < _WELL_KNOWN)
            if self.nflows >= self.max_flows:
                self.flows_dropped += 1
                return None, 0
            self.nflows += 1
            if opener:
                f = Flow(v, ipver, proto, src, sport, dst, dport, ts, ref)
                d = 0
            else:
                f = Flow(v, ipver, proto, dst, dport, src, sport, ts, ref)
                d = 1
            f.pkttype = pkttype if d == 0 else -1
            flows[(proto, src, sport, dst, dport)] = f
            flows[(proto, dst, dport, src, sport)] = f
        f.last_ts = ts
        f.pkts[d] += 1
        f.bytes[d] += length
        f.last[d] = ts
        if len(f.refs[d]) < MAX_REFS:
            f.refs[d].append(ref)
        return f, d

    def _tcp(self, v, ts, ref, ipver, src, dst, data, l4off, end, pkttype):
        sport, dport, seq, ack, flags, poff = _ip.decode_tcp(data, l4off, end)
        self._segment(v, ts, ref, ipver, src, dst, sport, dport, seq, ack, flags, data, l4off,
                      poff, end, pkttype)

    def _segment(self, v, ts, ref, ipver, src, dst, sport, dport, seq, ack, flags, data, l4off,
                 poff, end, pkttype):
        """A TCP segment, its header decoded (:func:`dissect.vpn.ip.decode_tcp`)."""
        plen = end - poff if end > poff else 0
        f, d = self._flow(v, ts, ref, ipver, 6, src, sport, dst, dport, plen, pkttype,
                          (not flags & _ACK) if flags & _SYN else None)
        if f is None:
            return
        self._seqs(ref[0], data, l4off, (f,), (d,), ((0, ts, ref[1], seq, ack, flags, 0, poff,
                                                     plen),))
        if (sport == _DNS_PORT or dport == _DNS_PORT) and plen > _DNS_TCP_MIN:
            self._dns(v, ts, ref, src, sport, dst, dport, data, poff + 2, end, True)

    @staticmethod
    def _seqs(fidx, data, l4, flows, dirs, segs):
        """The sequence bookkeeping of TCP segments of file ``fidx``, in capture order: ``segs``
        yields ``(k, ts, frame number, seq, ack, flags, frame offset, payload offset, payload
        length)``, the segment's flow ``flows[k]`` and direction ``dirs[k]`` (counted already by
        :meth:`_flow`; flow None: not followed), the TCP header at frame offset + ``l4`` in
        ``data``, the payload at frame offset + payload offset.  SYN (and its MSS option), holes,
        resets, delivered and retransmitted sizes."""
        tcp_mss = _ip.tcp_mss
        for k, ts, num, seq, ack, flags, fo, poff, plen in segs:
            f = flows[k]
            if f is None:
                continue
            d = dirs[k]
            hi = f.hi
            h = hi[d]  # the highest sequence end this direction sent so far
            if flags & _SYN:
                if d == 0 and not flags & _ACK:
                    f.syn += 1
                elif d == 1 and flags & _ACK:
                    f.synack += 1
                if f.mss[d] is None:
                    f.mss[d] = tcp_mss(data, fo + l4, fo + poff)
                h = hi[d] = (seq + 1) & 0xFFFFFFFF
            elif h is not None and 0 < ((seq - h) & _SEQ_MASK) < _SEQ_HALF:
                # the sender is past bytes this view never saw (lost before it, or not captured)
                f.hole[d] += (seq - h) & _SEQ_MASK
                if len(f.hole_refs[d]) < MAX_REFS:
                    f.hole_refs[d].append((fidx, num))
                h = hi[d] = seq
            if flags & _RST and f.rst is None:
                f.rst = (d, ts, (fidx, num))
            if plen:
                f.data_ts[d] = ts
                e = (seq + plen) & 0xFFFFFFFF
                if plen > f.maxlen[d]:
                    f.maxlen[d] = plen
                if h is not None and ((h - e) & _SEQ_MASK) < _SEQ_HALF:
                    # at or below what was already sent: a retransmission
                    if plen > f.acked[d]:
                        f.retx[d] += 1
                        if len(f.retx_refs[d]) < MAX_REFS:
                            f.retx_refs[d].append(((fidx, num), plen))
                else:
                    hi[d] = e
                    out = f.out[d]
                    out.append((e, plen))
                    if len(out) > MAX_OUTSTANDING:
                        del out[0]
            if flags & _ACK:
                out = f.out[1 - d]
                if out:
                    o = 1 - d
                    best = f.acked[o]
                    i = 0
                    for e, ln in out:
                        if ((ack - e) & _SEQ_MASK) >= _SEQ_HALF:
                            break
                        if ln > best:
                            best = ln
                        i += 1
                    if i:
                        del out[:i]
                        f.acked[o] = best

    def _icmp(self, v, ts, ref, ipver, src, dst, proto, data, off, end, pkttype):
        itype, ident, _seq = _ip.icmp_echo(data, off)
        req, rep = _ECHO4 if proto == _ICMP else _ECHO6
        if itype == req or itype == rep:
            f, d = self._flow(v, ts, ref, ipver, proto, src, ident, dst, -1, end - off, pkttype,
                              itype == req) if itype == req else \
                self._flow(v, ts, ref, ipver, proto, src, -1, dst, ident, end - off, pkttype,
                           False)
            if f is not None:
                if f.echo is None:
                    f.echo = [0, 0]
                f.echo[0 if itype == req else 1] += 1
            return
        r = _ip.decode_icmp_error(data, off, end, ipver)
        if r is None:
            self._flow(v, ts, ref, ipver, proto, src, -1, dst, -1, end - off, pkttype)
            return
        icmp_type, icmp_code, mtu, q = r
        if q is None:
            return
        qver, qsrc, qdst, qproto, qsport, qdport = q[:6]
        if qproto in (_ICMP, _ICMPV6):
            qsport, qdport = -1, -1
            if q[6] >= 0 and q[6] + 8 <= len(data):
                qsport = _ip.icmp_echo(data, q[6])[1]
        f = v.flows.get((qproto, qsrc, qsport, qdst, qdport))
        if f is None:
            return
        if f.icmp is None or (f.icmp[0], f.icmp[1]) != (icmp_type, icmp_code):
            f.icmp = (icmp_type, icmp_code, mtu, src, ts, ref)

    # -- DNS, DHCP -----------------------------------------------------------------------------

    def _dns(self, v, ts, ref, src, sport, dst, dport, data, off, end, tcp):
        ident, resp, rcode, _qd, an, qname, qtype = _dns.parse_dns(data, off, end)
        if not resp and dport == _DNS_PORT:
            key = (v.key, src, sport, dst, ident)
            q = self._dns_open.get(key)
            if q is not None:
                q.tries += 1
                return
            if len(self._dns_open) >= self.max_dns:
                self.dns_dropped += 1
                return
            q = DnsQuery(v, ts, ref, src, sport, dst, ident, qname, qtype, tcp)
            self._dns_open[key] = q
            v.dns.append(q)
        elif resp and sport == _DNS_PORT:
            q = self._dns_open.get((v.key, dst, dport, src, ident))
            if q is not None and q.rcode is None:
                q.rcode = rcode
                q.answers = an
                q.rts = ts
                q.rref = ref

    def _dhcp(self, v, ref, data, off, end):
        m = _dhcp.parse_dhcp(data, off, end)
        if m["type"] == _dhcp.DHCPACK and any(m["yiaddr"]):
            v.leases.append((m["yiaddr"], m["mask"], m["routers"], m["dns"], m["domain"], ref))

    # -- the end ---------------------------------------------------------------------------------

    def summary(self) -> dict:
        return {"views": len(self.views), "flows": self.nflows,
                "flows_dropped": self.flows_dropped, "dns_dropped": self.dns_dropped,
                "malformed": self.malformed}


# -- tying views to tunnels ------------------------------------------------------------------------

class InnerModel:
    """What one tunnel carried, from every view tied to it (the JSON ``tunnel.inner``)."""

    __slots__ = ("tunnel", "outer", "views", "clients", "servers", "files")

    def __init__(self, tunnel, outer, files):
        self.tunnel = tunnel          # the tunnel's id
        self.outer = outer            # the two outer (gateway / client-server) addresses
        self.files = files            # capture files the tunnel's outer packets are in
        #: [(View, tied_by)]
        self.views: list = []
        #: inner addresses on the client side (opened conversations into the tunnel) and the
        #: hosts they reached
        self.clients: set = set()
        self.servers: set = set()

    def tied_by(self, view):
        for v, how in self.views:
            if v is view:
                return how
        return None

    def flows(self):
        """``(view, tied_by, flow)`` of every conversation of this tunnel, each flow once per
        view: all flows of tunnel-interface and decrypted views, the flows of the tunnel's inner
        addresses on other views (a gateway's LAN side, XFRM re-injected packets)."""
        for v, how in self.views:
            seen = set()
            whole = v.kind in ("tunnel", "keys")
            for f in v.flows.values():
                if id(f) in seen:
                    continue
                seen.add(id(f))
                if whole or f.cli in self.clients or f.srv in self.clients:
                    yield v, how, f

    def dns(self):
        for v, how in self.views:
            whole = v.kind in ("tunnel", "keys")
            for q in v.dns:
                if whole or q.client in self.clients:
                    yield v, how, q


def _files_of(t) -> set:
    files = set()
    for sa in getattr(t, "ike_sas", ()):
        for m in sa.messages[:1]:
            files.add(m.ref[0])
    for e in getattr(t, "esp_sas", ()):
        if e.first_ref is not None:
            files.add(e.first_ref[0])
    ref = getattr(t, "first_ref", None)
    if ref is not None:
        files.add(ref[0])
    return files


def _outer(t):
    if hasattr(t, "ike_sas"):
        return (t.a, t.b)
    return (t.client, t.server)


def _active(t):
    return getattr(t, "first_ts", None), getattr(t, "last_ts", None)


def _overlaps(a0, a1, b0, b1) -> bool:
    return None not in (a0, a1, b0, b1) and a0 <= b1 and b0 <= a1


#: ESP transforms as (IV, block, ICV) bytes: AES-CBC (RFC 3602) with HMAC-SHA2-256/384/512
#: (RFC 4868) or HMAC-SHA1-96 (RFC 2404), AES-GCM with 16/12/8-byte ICVs (RFC 4106) and
#: ChaCha20-Poly1305 (RFC 7634; 4-byte alignment), 3DES-CBC (RFC 2451), NULL (RFC 2410)
ESP_SUITES = ((16, 16, 16), (16, 16, 12), (16, 16, 24), (16, 16, 32), (8, 4, 16), (8, 4, 12),
              (8, 4, 8), (8, 8, 12), (8, 8, 16), (0, 4, 12), (0, 4, 16))
#: UDP/TCP VPNs beside IPsec: bytes a data packet adds to the inner packet at most
#: (OpenVPN: opcode, peer id, packet id, tag or HMAC, IV; WireGuard: 32 and padding to 16)
VPN_OVERHEAD = (16, 112)
#: per-packet ties need this many sampled packets paired with one tunnel's outer packets
PAIR_MIN = 3


def esp_fits(esp_len: int, inner_len: int) -> bool:
    """Can an ESP packet of ``esp_len`` bytes (SPI to the end) carry an inner packet of
    ``inner_len`` bytes with one of :data:`ESP_SUITES` (RFC 4303 §2: SPI, sequence number, IV,
    the payload padded with its pad length and next header to the block, ICV)?  The padding
    makes it a range of up to a block."""
    for iv, blk, icv in ESP_SUITES:
        body = esp_len - 8 - iv - icv
        if body % blk == 0 and 0 <= body - inner_len - 2 < blk:
            return True
    return False


def pair(plain: PlainTracker, sources) -> None:
    """Read again (``Source.fetch``) the frames around each view's sample (within
    :data:`PAIR_FRAMES` frame numbers: dumpcap writes each interface's packets in blocks) and
    keep, per view, the outer packets of the same file within :data:`PAIR_WINDOW` of a sampled
    packet: ``v.near = [(ts, length, spi or -1, src, dst, sport, dport)]`` (ESP: its length from
    the SPI; UDP/TCP: the payload).  :func:`tie` pairs them packet by packet.  Nothing is read
    for a file that cannot be read again (standard input not spooled): ``near`` stays None."""
    from dissect.vpn.fast import esp_frame
    from dissect.vpn.link import decode_frame

    by_file: dict = {}
    for v in plain.views.values():
        if v.kind in ("tunnel", "physical") and v.sample:
            by_file.setdefault(v.file, []).append(v)
    srcs = {s.index: s for s in sources}
    for fidx, views in by_file.items():
        src = srcs.get(fidx)
        if src is None or (src.name == "-" and getattr(src, "spool_path", None) is None):
            continue  # standard input not kept: its frames cannot be read again
        mine = {n for v in views for n, *_ in v.sample}
        top = getattr(src, "frame_count", None) or max(mine) + PAIR_FRAMES
        want = set()
        for n in mine:
            want.update(range(max(1, n - PAIR_FRAMES), min(top, n + PAIR_FRAMES) + 1))
        want -= mine
        outer = []
        try:
            for _fi, _num, ts, lt, data, _wl, _off in src.fetch(sorted(want)):
                e = esp_frame(lt, data)
                if e is not None:
                    outer.append((ts, e[6], e[4], bytes(e[0]), bytes(e[1]), e[2], e[3]))
                    continue
                try:
                    net = decode_frame(lt, data)
                except DissectError:
                    continue
                if net is None or net[8] or net[9] or net[6] < 0:
                    continue
                if net[3] == _ESP:
                    outer.append((ts, net[7] - net[6], _esp.esp_spi(data, net[6]), net[1],
                                  net[2], -1, -1))
                elif net[3] == _UDP:
                    outer.append((ts, net[7] - net[6] - 8, -1, net[1], net[2], net[4], net[5]))
        except (OSError, EOFError, ValueError, DissectError, RuntimeError) as e:
            # a file that cannot be read again (gone, damaged since) pairs nothing
            plain.pair_errors.append(f"{getattr(src, 'name', fidx)}: {e}")
            continue
        outer.sort(key=lambda x: x[0])
        times = [x[0] for x in outer]
        import bisect

        for v in views:
            near: dict = {}
            for _n, ts, *_ in v.sample:
                lo = bisect.bisect_left(times, ts - PAIR_WINDOW)
                hi = bisect.bisect_right(times, ts + PAIR_WINDOW)
                for k in range(lo, hi):
                    near[k] = outer[k]
            v.near = [near[k] for k in sorted(near)]


def _pairs(v, index, inbound_only=False) -> dict:
    """The view's sampled packets paired one by one with outer packets near them (each outer
    packet used once, the nearest in time first): ``{tunnel id: [(plaintext src, dst, delay,
    inbound)]}``.  ``index``: ``spi -> tunnel`` for ESP, ``(a, b) -> tunnel`` for other
    VPNs; ``inbound_only``: the plaintext follows its outer packet (decrypted, then
    re-injected)."""
    if not v.near:
        return {}
    cands = []
    for si, (_n, ts, ln, src, dst) in enumerate(v.sample):
        for oi, (ots, olen, spi, osrc, odst, _sp, _dp) in enumerate(v.near):
            dt = ts - ots
            if abs(dt) > PAIR_WINDOW or (inbound_only and dt < 0):
                continue
            if spi >= 0:
                t = index.get(spi)
                if t is None or not esp_fits(olen, ln):
                    continue
            else:
                t = index.get((osrc, odst)) or index.get((odst, osrc))
                if t is None or not VPN_OVERHEAD[0] <= olen - ln <= VPN_OVERHEAD[1]:
                    continue
            cands.append((abs(dt), si, oi, t, src, dst, dt))
    cands.sort(key=lambda c: (c[0], c[1], c[2]))
    used_s, used_o = set(), set()
    out: dict = {}
    for _a, si, oi, t, src, dst, dt in cands:
        if si in used_s or oi in used_o:
            continue
        used_s.add(si)
        used_o.add(oi)
        out.setdefault(t, []).append((src, dst, dt, dt >= 0))
    return out


def _pick(v, pairs: dict, whole: bool):
    """The one tunnel most sampled packets paired with, or None: at least :data:`PAIR_MIN`
    pairs, four in five of all pairs, and half the sampled packets (``whole``: of the view; else
    of the conversations, by address pair, that paired at all: a physical interface carries
    other traffic too, and bulk traffic pairs now and then by chance)."""
    if not pairs:
        return None
    best = max(pairs, key=lambda t: len(pairs[t]))
    n = len(pairs[best])
    total = sum(len(x) for x in pairs.values())
    if n < PAIR_MIN or n * 5 < total * 4:
        return None
    if whole:
        base = len(v.sample)
    else:
        addrs = {(a, b) for a, b, _dt, _i in pairs[best]}
        base = sum(1 for x in v.sample if (x[3], x[4]) in addrs)
    return best if n * 2 >= base else None


def tie(plain: PlainTracker, tunnels, vpn_tunnels) -> dict:
    """Tie the views of ``plain`` to tunnels: ``{tunnel id: InnerModel}``.  How each view was
    tied (``tied_by``):

    * ``keys``: decrypted ESP of the tunnel's gateways;
    * ``interface``: a tunnel interface (name, ARPHRD type, raw-IP link type) in a capture file
      that holds the outer traffic of exactly one tunnel;
    * ``timing``: a tunnel interface in a file with several tunnels whose sampled packets pair,
      packet by packet, with one tunnel's outer packets (``pair``: within ``PAIR_WINDOW``, sizes
      that fit the encapsulation); where its file holds no outer traffic (or its frames cannot
      be read again) the one tunnel active while the interface carried traffic;
    * ``address``: another interface (a gateway's LAN side, a tunnel interface captured alone)
      whose conversations involve the tunnel's inner addresses (seen through a tunnel interface
      or decrypted);
    * ``xfrm``: the tunnel's own outer interface where inbound plaintext follows the ESP packets
      that carried it, packet by packet (Linux XFRM re-injects inbound packets after decryption
      on the same interface; outbound plaintext is not captured); without frames to pair, one-way
      plaintext beside as much inbound ESP.

    A view that fits no tunnel, or several, is tied to none (nothing is guessed)."""
    every = list(tunnels) + list(vpn_tunnels)
    models = {}
    for t in every:
        models[t.id] = InnerModel(t.id, _outer(t), _files_of(t))
    if not plain.views:
        return {}
    outer_all = set()
    for m in models.values():
        outer_all.update(m.outer)
    views = list(plain.views.values())
    # 1. decrypted ESP
    for v in views:
        if v.kind == "keys":
            for t in tunnels:
                if {t.a, t.b} == set(v.gateways):
                    models[t.id].views.append((v, "keys"))
                    break
    for t in tunnels:  # addresses the gateway assigned (decrypted configuration payloads)
        models[t.id].clients.update(_assigned(t))
    for m in models.values():
        _learn(m)
    index: dict = {}
    for t in tunnels:
        for e in t.esp_sas:
            index[e.spi] = t
    for t in vpn_tunnels:
        index[(t.client, t.server)] = t
    # 2. tunnel interfaces
    for v in views:
        if v.kind != "tunnel":
            continue
        same = [t for t in every if v.file in models[t.id].files]
        how = None
        if len(same) == 1:
            pick, how = same[0], "interface"
        elif same and v.near is not None:
            # several tunnels in the file: the one whose outer packets match the interface's,
            # packet by packet (size and time)
            pick = _pick(v, _pairs(v, index), True)
            how = "timing" if pick is not None else None
        else:
            # the outer traffic is in another file (no frames to pair), or the frames could
            # not be read again: the one tunnel active while the interface carried traffic
            live = [t for t in (same or every)
                    if _overlaps(*_active(t), v.first_ts, v.last_ts)]
            pick, how = (live[0], "timing") if len(live) == 1 else (None, None)
        if pick is None:
            hit = [t for t in every if _shares_inner(models[t.id], v)]
            pick, how = (hit[0], "address") if len(hit) == 1 else (None, None)
        if pick is not None:
            models[pick.id].views.append((v, how))
    # inner addresses: who opened conversations through the tunnel views, and whom they reached
    for m in models.values():
        _learn(m)
    # 3. other interfaces: by the inner addresses, or XFRM re-injection on the outer interface
    for v in views:
        if v.kind not in ("physical",):
            continue
        flows = [f for f in v.conversations()
                 if f.cli not in outer_all and f.srv not in outer_all
                 and ordinary(f.cli) and ordinary(f.srv)]
        if not flows:
            continue
        hit = [m for m in models.values() if m.clients and any(
            f.cli in m.clients or f.srv in m.clients for f in flows)]
        if len(hit) >= 1:
            for m in hit:
                m.views.append((v, "address"))
            continue
        ipsec = {t.id: t for t in tunnels}
        same = [m for m in models.values() if v.file in m.files and m.tunnel in ipsec]
        if len(same) == 1 and v.near is not None:
            # re-injected inbound packets, each right after the ESP packet that carried it
            # (its length: the ESP's minus the SA's overhead)
            t = ipsec[same[0].tunnel]
            got = _pairs(v, index, inbound_only=True)
            if _pick(v, got, False) is t:
                m = same[0]
                m.views.append((v, "xfrm"))
                for src, dst, _dt, _inb in got[t]:
                    m.clients.add(dst)
                    m.servers.add(src)
            continue
        if len(same) == 1:
            # the frames could not be read again: one-way plaintext beside as much ESP
            m = same[0]
            one_way = sum(1 for f in flows if not (f.pkts[0] and f.pkts[1]))
            plain_pkts = sum(f.pkts[0] + f.pkts[1] for f in flows)
            # re-injected inbound packets: one ESP packet arrived for each of them
            inbound = max((sum(e.packets for e in ipsec[m.tunnel].esp_sas if e.dst == gw)
                           for gw in m.outer), default=0)
            if one_way * 10 >= len(flows) * 9 and PAIR_MIN <= plain_pkts <= inbound:
                m.views.append((v, "xfrm"))
                for f in flows:
                    m.clients.add(f.srv if f.pkts[1] and not f.pkts[0] else f.cli)
                    m.servers.add(f.cli if f.pkts[1] and not f.pkts[0] else f.srv)
            continue
        if not same and not any(v.file in m.files for m in models.values()):
            # a capture of its own (a gateway's LAN side): the one tunnel active meanwhile
            live = [m for t in every for m in (models[t.id],)
                    if _overlaps(*_active(t), v.first_ts, v.last_ts)]
            if len(live) == 1:
                m = live[0]
                m.views.append((v, "timing"))
                for f in flows:
                    m.clients.add(f.cli)
                    m.servers.add(f.srv)
    for m in models.values():
        m.clients = {a for a in m.clients if ordinary(a)}
        m.servers = {a for a in m.servers if ordinary(a)}
    return {k: m for k, m in models.items() if m.views}


#: a unicast address that can stand for a host beyond a link (not multicast, broadcast,
#: link-local, unspecified or loopback): only such addresses tie flows to tunnels
ordinary = _ip.is_ordinary_unicast


#: configuration attributes that assign the client's inner address: IKEv2
#: INTERNAL_IP4_ADDRESS / INTERNAL_IP6_ADDRESS (RFC 7296 §3.15.1), IKEv1 mode-config
#: INTERNAL_IP4_ADDRESS (draft-dukes-ike-mode-cfg)
_ADDRESS_ATTRS = {1: 4, 8: 16}


def _assigned(t) -> set:
    out = set()
    for sa in t.ike_sas:
        for msg in sa.messages:
            inner = getattr(msg, "inner", None)
            if not inner or not getattr(msg, "is_response", True):
                continue
            for _cfg, attrs in inner.config:
                for attr, value in attrs:
                    n = _ADDRESS_ATTRS.get(attr)
                    if n and value and len(value) >= n and any(value[:n]):
                        out.add(bytes(value[:n]))
    return out


def _learn(m) -> None:
    """The inner addresses of a model from its views so far."""
    for v, _how in m.views:
        for f in v.flows.values():
            if f.cli in m.outer or f.srv in m.outer or not (ordinary(f.cli) and ordinary(f.srv)):
                continue
            m.clients.add(f.cli)
            m.servers.add(f.srv)


def _shares_inner(m, v) -> bool:
    """A view whose conversations involve the inner addresses known for ``m`` (decrypted)."""
    known = m.clients | m.servers
    return bool(known) and any(f.cli in known or f.srv in known for f in v.flows.values())


def _flow_dict(f) -> dict:
    d = {"ipver": f.ipver, "src": _txt(f.cli), "dst": _txt(f.srv), "proto": f.proto,
         "sport": f.cport if f.cport >= 0 and f.proto in (_TCP, _UDP) else None,
         "dport": f.sport if f.sport >= 0 and f.proto in (_TCP, _UDP) else None,
         "packets": f.pkts[0] + f.pkts[1], "bytes": f.bytes[0] + f.bytes[1],
         "replies": f.pkts[1]}
    return d


def model_dict(m: InnerModel, file_names=None, keyed: dict | None = None) -> dict:
    """The JSON ``tunnel.inner``: the decrypted summary (``keyed``, --keys) when there is one,
    plus the views and what they showed."""
    out = dict(keyed or {})
    flows = list(m.flows())
    views = []
    for v, how in m.views:
        d = v.to_dict(file_names)
        d["tied_by"] = how
        views.append(d)
    out["views"] = views
    out["tied_by"] = sorted({how for _v, how in m.views}, key=TIED_BY.index)
    if "top_flows" not in out:
        top = sorted({id(f): f for _v, _h, f in flows}.values(),
                     key=lambda f: (-(f.pkts[0] + f.pkts[1]), f.first_ts))[:10]
        out["top_flows"] = [_flow_dict(f) for f in top]
    echo = [f.echo for _v, _h, f in flows if f.echo]
    if "icmp_echo" not in out:
        out["icmp_echo"] = {"requests": sum(e[0] for e in echo),
                            "answered": sum(min(e) for e in echo),
                            "unanswered": sum(max(e[0] - e[1], 0) for e in echo)}
    qs = [q for _v, _h, q in m.dns()]
    if "dns" not in out:
        out["dns"] = {"queries": len(qs), "answered": sum(q.rcode is not None for q in qs),
                      "unanswered": sum(q.rcode is None for q in qs)}
    out["clients"] = sorted(_txt(a) for a in m.clients)
    out["conversations"] = len({id(f) for _v, _h, f in flows})
    return out


# -- the same conversation at other vantage points (--vantage) -----------------------------------

class Seen:
    """One conversation at one vantage point: packets and the largest payload each way (index
    0 from the conversation's opener), the first time it was seen and the last time of each
    direction (the point's own clock).  A packet a point saw on several of its views (a
    gateway's tunnel interface and LAN side) counts once: the view that saw most."""

    __slots__ = ("pkts", "maxlen", "first_ts", "last")

    def __init__(self):
        self.pkts = [0, 0]
        self.maxlen = [0, 0]
        self.first_ts = None
        self.last = [None, None]


def seen_at(plain: PlainTracker, flows) -> Seen | None:
    """The conversations ``flows`` (of another point's views) on the views of ``plain``: matched
    by protocol, addresses and ports (ICMP echo: identifier) as the other point saw them, each
    way; summed over ``flows``.  None when no view of ``plain`` saw any of them."""
    out = None
    views = [v for v in plain.views.values() if v.flows]
    for f in flows:
        key = (f.proto, f.cli, f.cport, f.srv, f.sport)
        best = [0, 0]
        for v in views:
            g = v.flows.get(key)
            if g is None:
                continue
            d = 0 if g.cli == f.cli and g.cport == f.cport else 1
            if out is None:
                out = Seen()
            for k, gk in ((0, d), (1, 1 - d)):
                if g.pkts[gk] > best[k]:
                    best[k] = g.pkts[gk]
                if g.maxlen[gk] > out.maxlen[k]:
                    out.maxlen[k] = g.maxlen[gk]
                t = g.last[gk]
                if t is not None and (out.last[k] is None or t > out.last[k]):
                    out.last[k] = t
            if out.first_ts is None or g.first_ts < out.first_ts:
                out.first_ts = g.first_ts
        if out is not None:
            out.pkts[0] += best[0]
            out.pkts[1] += best[1]
    return out


def watches(plain: PlainTracker, addrs) -> bool:
    """Does a view of ``plain`` carry any conversation of the inner addresses ``addrs``?"""
    for v in plain.views.values():
        for key in v.flows:
            if key[1] in addrs or key[3] in addrs:
                return True
    return False
