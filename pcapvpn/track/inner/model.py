"""Tying plaintext views to tunnels (issue 15): :func:`pair` (frames read again for the
per-packet ties), :func:`tie` (``tied_by``), the :class:`InnerModel` the rules and the report
read, and what other vantage points saw of a conversation (:func:`seen_at`)."""

from __future__ import annotations

import bisect

from dissect.vpn import esp as _esp
from dissect.vpn import ip as _ip
from dissect.vpn.errors import DissectError
from pcapvpn.track.inner.consts import _ESP, _TCP, _UDP, _txt
from pcapvpn.track.inner.plain import PAIR_FRAMES, PAIR_WINDOW, TIED_BY, PlainTracker

class InnerModel:
    """What one tunnel carried, from every view tied to it (the JSON ``tunnel.inner``)."""

    __slots__ = ("tunnel", "outer", "views", "clients", "servers", "files")

    def __init__(self, tunnel, outer, files):
        self.tunnel = tunnel          # the tunnel's id
        self.outer = outer            # the two outer (gateway / client-server) addresses
        self.files = files            # capture files of its outer packets (first pieces)
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


def _files_of(t, piece) -> set:
    """The capture files of ``t``'s outer packets, each as the first piece of its capture
    (``piece``: :meth:`PlainTracker.piece`; a view's ``group`` is compared with them)."""
    files = set()
    for sa in getattr(t, "ike_sas", ()):
        for m in sa.messages[:1]:
            files.add(piece(m.ref[0]))
    for e in getattr(t, "esp_sas", ()):
        if e.first_ref is not None:
            files.add(piece(e.first_ref[0]))
    ref = getattr(t, "first_ref", None)
    if ref is not None:
        files.add(piece(ref[0]))
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
#: a compressed capture is paired only for views whose sample lies in its first frames (its
#: frames are read again by decompressing from the start)
PAIR_GZ_FRAMES = 200_000


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
    for a file that cannot be read again (standard input not spooled, a live capture), nor for
    views first seen after :data:`PAIR_GZ_FRAMES` frames of a compressed file: ``near`` stays
    None."""
    from dissect.vpn.fast import esp_frame
    from dissect.vpn.link import decode_frame

    by_file: dict = {}
    for v in plain.views.values():
        if v.kind in ("tunnel", "physical") and v.sample:
            by_file.setdefault(v.file, []).append(v)
    # sources that can read their frames again (live capture sources cannot)
    srcs = {s.index: s for s in sources if callable(getattr(s, "fetch", None))}
    for fidx, views in by_file.items():
        src = srcs.get(fidx)
        if src is None or (getattr(src, "name", None) == "-"
                           and getattr(src, "spool_path", None) is None):
            continue  # standard input not kept: its frames cannot be read again
        if getattr(src, "compressed", False):
            # a compressed file is read again from its start: only views seen early enough
            views = [v for v in views if v.sample[-1][0] <= PAIR_GZ_FRAMES]
            if not views:
                continue
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
    if not plain.views:  # no plaintext view: no model (none would be returned)
        return {}
    every = list(tunnels) + list(vpn_tunnels)
    models = {}
    for t in every:
        models[t.id] = InnerModel(t.id, _outer(t), _files_of(t, plain.piece))
    # each tunnel's span, asked of thousands of tunnels for each view: worked out once
    spans: dict = {}

    def active(t):
        s = spans.get(id(t))
        if s is None:
            s = spans[id(t)] = _active(t)
        return s
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
    # each tunnel with its model, looked up once (a tunnel of another VPN writes its id anew
    # at each ask; thousands of tunnels are asked for each view)
    every_m = [(t, models[t.id]) for t in every] if any(
        v.kind == "tunnel" for v in views) else []
    for v in views:
        if v.kind != "tunnel":
            continue
        same = [t for t, m in every_m if v.group in m.files]
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
                    if _overlaps(*active(t), v.first_ts, v.last_ts)]
            pick, how = (live[0], "timing") if len(live) == 1 else (None, None)
        if pick is None:
            hit = [t for t, m in every_m if _shares_inner(m, v)]
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
        same = [m for m in models.values() if v.group in m.files and m.tunnel in ipsec]
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
        if not same and not any(v.group in m.files for m in models.values()):
            # a capture of its own (a gateway's LAN side): the one tunnel active meanwhile
            live = [m for t in every for m in (models[t.id],)
                    if _overlaps(*active(t), v.first_ts, v.last_ts)]
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
    if not m.clients and not m.servers:
        return False  # nothing known (most tunnels): no set made
    known = m.clients | m.servers
    return any(f.cli in known or f.srv in known for f in v.flows.values())


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
