"""The one inner model's plaintext side (issue 15): views, flows, DNS, DHCP and ARP.

Every IP packet that is no VPN traffic (``Decoder`` sink event ``plain``) is seen on a *view*:
one interface of one capture file (a pcapng IDB; for Linux cooked captures also the SLL2
interface index and the ARPHRD type of the frame).  Decrypted ESP (--keys) is a view too (kind
``keys``).  Per view the tracker keeps flows (both directions, TCP handshake, resets, ICMP
errors about them, segment sizes delivered and retransmitted), DNS queries with their answers,
DHCP leases and ARP requests.  At the end :func:`tie` ties views to tunnels and says how
(``tied_by``); :class:`InnerModel` is what the rules and the report read.
"""

from __future__ import annotations

import os
import re

from dissect.vpn import ip as _ip
from dissect.vpn.errors import DissectError
from pcapvpn.track.inner.consts import (
    _DHCP_PORTS, _DNS_HEADER, _DNS_PORT, _ECHO4, _ECHO6, _ICMP, _ICMP_HEADER, _ICMPV6, _TCP,
    _UDP, _UDP_HEADER,
)

from dissect.vpn import arp as _arp
from dissect.vpn import dhcp as _dhcp
from dissect.vpn import dns as _dns
from dissect.vpn.link import (
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

    __slots__ = ("key", "file", "group", "iface", "name", "description", "linktype", "ifindex",
                 "hatype", "kind", "packets", "first_ts", "last_ts", "flows", "dns", "arp", "leases",
                 "outgoing", "incoming", "gateways", "sample", "near")

    def __init__(self, key, file, iface, linktype, ifindex=-1, hatype=-1, name=None,
                 description=None, kind=None, group=None):
        self.key = key
        #: the file of its first packet, and the first piece of the capture that file is a piece
        #: of (:meth:`PlainTracker.piece`: the file itself unless it is a later piece)
        self.file = file
        self.group = file if group is None else group
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
        #: ARP: target address -> (requests, first ts, first ref, sender address, answered):
        #: a tuple, replaced when it changes (a list costs 32 bytes more; a flood's LAN view
        #: keeps thousands)
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


_DIGITS = re.compile(r"\d+")


def _stem(name: str) -> str:
    """A capture file's name without its directory and digit runs (pieces of one capture)."""
    return _DIGITS.sub("", os.path.basename(name))


def _iface_sig(ifaces) -> tuple:
    """What tells a capture's interfaces: link type, name and description of each, in order."""
    return tuple((getattr(i, "linktype", None), getattr(i, "name", None),
                  getattr(i, "description", None)) for i in (ifaces or ()))


class PlainTracker:
    """The decoder's ``plain`` / ``link_other`` events (and decrypted ESP, through
    :meth:`decrypted`) turned into views, flows, DNS, DHCP and ARP facts."""

    def __init__(self, interfaces=None, names=None):
        #: per file index: the reader's interface list (``Interface``: name, description ...)
        self.interfaces = interfaces if interfaces is not None else {}
        #: the capture files' names (file index order): pieces of one capture are told by them
        self.names = list(names or ())
        self.views: dict = {}
        #: a view key of a file that is a later piece of a capture -> the view of the same
        #: interface in its first piece (:meth:`_piece_of`); file index -> that first piece;
        #: (name stem, interfaces) -> the first file seen with them; (first piece, interface,
        #: ifindex, ARPHRD type) -> the view of that interface in the capture's pieces
        self._alias: dict = {}
        self._pieces: dict = {}
        self._firsts: dict = {}
        self._group_views: dict = {}
        self.max_flows = MAX_PLAIN_FLOWS
        self.max_dns = MAX_DNS
        #: ARP targets kept per view (MAX_ARP, live: at most ``Limits.plain_max_flows``);
        #: requests for further targets are counted in ``arp_dropped`` (the first one's frame
        #: and time in ``arp_first_drop``)
        self.max_arp = MAX_ARP
        self.arp_dropped = 0
        self.arp_first_drop = (None, None)
        #: the sender address of the last ARP target added: the next one from the same host
        #: shares it (one host asks for most targets of a view)
        self._arp_sender = None
        self.nflows = 0
        self.flows_dropped = 0
        self.dns_dropped = 0
        self.malformed = 0
        self._dns_open: dict = {}
        #: conversations / DNS queries forgotten by :meth:`expire` (live mode)
        self.flows_evicted = 0
        self.dns_evicted = 0
        #: files whose frames could not be read again for the per-packet ties (``pair``)
        self.pair_errors: list = []

    # -- views ---------------------------------------------------------------------------------

    def piece(self, fidx) -> int:
        """The first piece of the capture file ``fidx`` belongs to (:meth:`_piece_of`)."""
        return self._piece_of(fidx) if fidx >= 0 else fidx

    def _piece_of(self, fidx) -> int:
        """The first file of the capture that file ``fidx`` is a later piece of (a ring buffer
        or size limit's rotation: tcpdump -C / -G / -W, dumpcap -b, editcap -c), else
        ``fidx``.  Pieces have the same name once its digit runs are taken out (``cap.pcap1``,
        ``x_00002_20261206141712.pcapng``) and the same interfaces (link type, name and
        description of each, in order): the same interface in them is one view, its
        conversations followed across the files as in one capture (a flow begun in one piece
        and answered in the next is one conversation).  Decided at the file's first plaintext
        packet (its interfaces are known by then: they come before it)."""
        first = self._pieces.get(fidx)
        if first is not None:
            return first
        first = fidx
        names = self.names
        if 0 <= fidx < len(names) and names[fidx] != "-":
            # one look-up a file (thousands of files merged must not compare each with all)
            first = self._firsts.setdefault(
                (_stem(names[fidx]), _iface_sig(self.interfaces.get(fidx))), fidx)
        self._pieces[fidx] = first
        return first

    def _view(self, ref, iface, linktype, cooked):
        if cooked is None:
            key = (ref[0], iface, -1, -1)
        else:
            key = (ref[0], iface, cooked[0], cooked[1])
        v = self.views.get(key)
        if v is None:
            v = self._alias.get(key)
            if v is not None:
                return v
            # a piece of a capture: its interface's view, in whichever piece it was first seen
            w = self._group_views.get((self._piece_of(ref[0]),) + key[1:])
            if w is not None:
                self._alias[key] = w
                return w
            if len(self.views) >= MAX_VIEWS:  # hostile SLL2 indexes: one view for the rest
                key = (ref[0], -1, -1, -1)
                v = self.views.get(key)
                if v is None:
                    v = self.views[key] = View(key, ref[0], -1, linktype, kind="physical",
                                               name="(further interfaces)",
                                               group=self._piece_of(ref[0]))
                return v
            name = desc = None
            ifs = self.interfaces.get(ref[0])
            if ifs is not None and 0 <= iface < len(ifs):
                name = getattr(ifs[iface], "name", None)
                desc = getattr(ifs[iface], "description", None)
            if cooked is not None:  # tcpdump -i any: the IDB is "any", the frame says more
                name = desc = None
            v = self.views[key] = View(key, ref[0], iface, linktype, key[2], key[3], name, desc,
                                       group=self._piece_of(ref[0]))
            self._group_views[(v.group,) + key[1:]] = v
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
        if len(v.sample) < PAIR_SAMPLE and ref[0] == v.file:  # (frames of the file pair reads)
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
        need = [v for v in dict.fromkeys(gviews) if len(v.sample) < PAIR_SAMPLE
                and v.file == fidx]
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
                if len(v.arp) >= self.max_arp:
                    if not self.arp_dropped:
                        self.arp_first_drop = (ref, ts)
                    self.arp_dropped += 1
                    return
                if spa == self._arp_sender:
                    spa = self._arp_sender
                else:
                    self._arp_sender = spa
                v.arp[tpa] = (1, ts, ref, spa, False)
            else:
                v.arp[tpa] = (e[0] + 1, e[1], e[2], e[3], e[4])
        elif op == _arp.ARP_REPLY:
            e = v.arp.get(spa)
            if e is not None and not e[4]:
                v.arp[spa] = (e[0], e[1], e[2], e[3], True)

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
            if self.nflows - self.flows_evicted >= self.max_flows:
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

    # -- bounded memory (live mode) --------------------------------------------------------------

    def expire(self, limit: float) -> int:
        """Live mode's bound (``pcapvpn.track.Tracker.expire``): forget the conversations silent
        since before ``limit`` and the DNS queries asked before it; beyond 90 % of
        ``max_flows`` / ``max_dns`` held, the least recently active ones until 75 %, so that
        new conversations are still followed.  Returns the conversations forgotten (counted in
        ``flows_evicted``, the queries in ``dns_evicted``)."""
        flows = [f for v in self.views.values() for f in v.conversations()]
        old = [f for f in flows if f.last_ts < limit]
        excess = len(flows) - len(old) - int(0.75 * self.max_flows)
        if len(flows) - len(old) > 0.9 * self.max_flows and excess > 0:
            gone = set(map(id, old))
            old += sorted((f for f in flows if id(f) not in gone),
                          key=lambda f: f.last_ts)[:excess]
        for f in old:
            fl = f.view.flows
            fl.pop((f.proto, f.cli, f.cport, f.srv, f.sport), None)
            fl.pop((f.proto, f.srv, f.sport, f.cli, f.cport), None)
        self.flows_evicted += len(old)
        held = self._dns_open
        cut = limit
        if len(held) > 0.9 * self.max_dns:
            times = sorted(q.ts for q in held.values())
            cut = max(limit, times[len(held) - int(0.75 * self.max_dns)])
        if held and min(q.ts for q in held.values()) < cut:
            n = len(held)
            self._dns_open = {k: q for k, q in held.items() if q.ts >= cut}
            for v in self.views.values():
                if v.dns and v.dns[0].ts < cut:
                    v.dns = [q for q in v.dns if q.ts >= cut]
            self.dns_evicted += n - len(self._dns_open)
        return len(old)

    # -- the end ---------------------------------------------------------------------------------

    def summary(self) -> dict:
        return {"views": len(self.views), "flows": self.nflows,
                "flows_dropped": self.flows_dropped, "dns_dropped": self.dns_dropped,
                "malformed": self.malformed}
