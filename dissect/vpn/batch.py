"""The ESP fast path for a whole chunk of classic-pcap records at once (numpy).

:func:`dissect.vpn.fast.esp_at` recognises one frame per call; on a mirror-port capture, where
nearly every frame is ESP, the per-frame Python call is what limits the speed.  Here the reader
hands over a chunk of records (the buffer and the record offsets its walk found) and the common
shapes are recognised for all of them with array operations:

* Ethernet II + IPv4 without options, not fragmented, carrying ESP (IP protocol 50, RFC 4303)
  or ESP in UDP with port 4500 on either side (RFC 3948) — as :func:`~dissect.vpn.fast.esp_at`;
* Ethernet II + IPv6 whose first next header is ESP or UDP (no extension header), payload length
  set — what :func:`dissect.vpn.link.decode_frame` and the general decoder make of such a frame
  (``ipv6=False`` leaves IPv6 to the general path).  That such frames no longer pass the general
  decoder changes nothing there: its IP-fragment clock is the latest timestamp of any frame, ESP
  batches included (:class:`pcapvpn.decode.Decoder`).

SPI 0 (reserved, RFC 4303 §2.1; on UDP 4500 the non-ESP marker of IKE) never qualifies, nor does
an ESP header with fewer than 8 bytes captured.  Every other frame is left to the general path.

:func:`classify` also says which of the other frames are *inert* for ESP: frames the general
decoder cannot turn into an ESP or AH event of an SA whose packets the batches carry (ARP; IPv4
without fragmentation carrying ICMP, or UDP that is not VXLAN and not ESP-in-UDP; without
``ipv6``, IPv6 without extension headers carrying ESP, UDP that is not VXLAN, or ICMPv6: their
events belong to IPv6 SAs).  The reader may hand those to the general path while ESP of the same
chunk is still pending; before any other frame the pending ESP must be delivered, so that every SA
sees its packets in capture order.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Collection, Iterator, Union

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no linear algebra here: skip the thread pool

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view as windows  # noqa: E402

from .openvpn import CLIENT_RESETS  # noqa: E402
from .tcpencap import IKETCP_PREFIX  # noqa: E402

if TYPE_CHECKING:  # annotations only: nothing more is imported or built at run time
    from numpy.typing import NDArray

    from .types import Buffer

    #: an array of any shape and type (numpy's shape typing is not tracked here)
    Array = NDArray[Any]
    #: the ESP records of one IP version in a classified chunk: the batch, and the records'
    #: positions in the chunk's offsets
    Lane = tuple["EspBatch", Array]
    #: :func:`classify`'s result: ``(ts, caplen, wirelen, other, inert, v4, v6)``
    Classified = tuple[Array, Array, Array, Array, Array, Union[Lane, None], Union[Lane, None]]

__all__ = ["EspBatch", "LINKTYPES", "WINDOW", "classify", "plain_tcp"]

#: bytes read per record, from 2 bytes before the 16-byte pcap record header: so that the IP
#: header (frame offset 14) starts 8-byte aligned in the row; up to IP offset 56 (IPv6 40 + UDP 8
#: + SPI and sequence number 8)
WINDOW = 88
#: bytes the buffer must hold before the first record, and after the last one
LEAD = 2
SLACK = WINDOW + 8  # a window read past up to two VLAN tags

_H = 18  # frame offset 0 in the window

#: link types :func:`classify` reads, and how many bytes their link header is longer than
#: Ethernet's 14: the window is read that much further on, so that the IP header sits where
#: Ethernet's does (Linux cooked SLL: 16 bytes, protocol at 14; SLL2: 20 bytes, protocol at 0;
#: as :func:`dissect.vpn.fast.esp_cooked_at`)
_SHIFT = {1: 0, 113: 2, 276: 6}
LINKTYPES = frozenset(_SHIFT)


class EspBatch:
    """ESP packets of one IP version, in capture order, as parallel arrays.

    ``num``: frame numbers; ``ts``: float seconds; ``src``/``dst``: ``uint32`` (IPv4, the address
    as a big-endian integer) or ``(n, 16) uint8`` rows (IPv6); ``sport``/``dport``: -1 for IP
    protocol 50; ``spi``, ``seq``, ``length`` (ESP bytes from the SPI to the end of the IP payload,
    capped by the captured bytes) as ``int64``.
    """

    __slots__ = ("ipver", "num", "ts", "src", "dst", "sport", "dport", "spi", "seq", "length")

    def __init__(self, ipver: int, num: Array, ts: Array, src: Array, dst: Array, sport: Array,
                 dport: Array, spi: Array, seq: Array, length: Array) -> None:
        self.ipver = ipver
        self.num = num
        self.ts = ts
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.spi = spi
        self.seq = seq
        self.length = length

    def __len__(self) -> int:
        return len(self.num)

    def take(self, sel: Array | slice) -> EspBatch:
        """The packets ``sel`` (an index array or a slice), in that order."""
        return EspBatch(self.ipver, self.num[sel], self.ts[sel], self.src[sel], self.dst[sel],
                        self.sport[sel], self.dport[sel], self.spi[sel], self.seq[sel],
                        self.length[sel])

    def addresses(self) -> tuple[list[bytes], list[bytes]]:
        """``(src, dst)`` as lists of packed ``bytes`` (4 or 16), as the per-frame path gives."""
        if self.ipver == 4:
            return ([a.to_bytes(4, "big") for a in self.src.tolist()],
                    [a.to_bytes(4, "big") for a in self.dst.tolist()])
        return ([r.tobytes() for r in self.src], [r.tobytes() for r in self.dst])

    def events(self, tag: object) -> Iterator[tuple[Any, ...]]:
        """The per-frame ESP events ``(ref, ts, ipver, src, dst, sport, dport, spi, seq, length)``
        of these packets (the argument list of ``sink.esp``)."""
        srcs, dsts = self.addresses()
        v = self.ipver
        for num, ts, s, d, sp, dp, spi, seq, ln in zip(
                self.num.tolist(), self.ts.tolist(), srcs, dsts, self.sport.tolist(),
                self.dport.tolist(), self.spi.tolist(), self.seq.tolist(),
                self.length.tolist()):
            yield ((tag, num), ts, v, s, d, sp, dp, spi, seq, ln)


def field(block: Array, off: int, dtype: str) -> Array:
    """A view of the ``dtype`` field at window offset ``off`` of every row (no copy)."""
    view: Array = np.ndarray((block.shape[0],), dtype=dtype, buffer=block, offset=off,
                             strides=(block.strides[0],))
    return view


def classify(buf: Buffer, offsets: Collection[int] | Array, order: str, nanosecond: bool,
             number0: int = 0, ipv6: bool = True, ts: Array | None = None,
             eth: Array | None = None, fields: dict[str, Any] | None = None,
             linktype: int = 1) -> Classified:
    """Classify the classic-pcap records starting at ``offsets`` in ``buf`` (a buffer holding
    ``LEAD`` bytes before the first offset and ``SLACK`` bytes after the last; bytes after a
    record's end are read but never trusted).

    pcapng enhanced packet blocks have the same 16 bytes before the frame (timestamp high and low,
    captured and original length): pass their positions + 12, the timestamps ``ts`` (float64,
    computed per interface) and ``eth`` (bool per record: the interface is Ethernet; None: all).

    Returns ``(ts, caplen, wirelen, other, inert, v4, v6)``: per record the timestamp (float64,
    correctly rounded from the integer tick count as :meth:`PcapReader.records` computes it) and
    the captured and original lengths (int64); the positions in ``offsets`` of the records that
    are not ESP of a common shape (int64, ascending) and for each of them whether it is inert
    for ESP (bool, see the module docstring); then for the IPv4 and the IPv6 ESP records
    ``(batch, index)`` — the :class:`EspBatch` (frame numbers ``number0 + index + 1``) and the
    records' positions in ``offsets`` — or None when there are none (``v6`` always None unless
    ``ipv6``: see the module docstring).

    ``fields``: a dict that receives header fields read on the way - ``frac`` (int64, the
    fraction of a second of each classic pcap record; not with ``ts``) - so that a caller checking
    them reads no record twice - and ``words``, the rows as read, for :func:`plain_tcp`.

    ``linktype``: of every record (:data:`LINKTYPES`): Ethernet, or Linux cooked SLL / SLL2
    (``tcpdump -i any``), whose ESP is recognised in the same shapes behind its longer header
    (VLAN tags only behind Ethernet).
    """
    o = np.array(offsets, dtype=np.int64)
    o -= LEAD
    count = len(o)
    block = windows(np.frombuffer(buf, dtype=np.uint8), WINDOW)[o]
    bo = "<" if order == "<" else ">"
    cap = field(block, LEAD + 8, bo + "u4").astype(np.int64)
    wire = field(block, LEAD + 12, bo + "u4").astype(np.int64)
    frac = None
    if ts is not None:
        pass
    elif nanosecond:
        sec = field(block, LEAD, bo + "u4").astype(np.int64)
        frac = field(block, LEAD + 4, bo + "u4").astype(np.int64)
        # (sec * 10**9 + frac) exceeds 2**53: divide exactly in Python, as records() does
        ts = np.array([(s * 1000000000 + f) / 1000000000
                       for s, f in zip(sec.tolist(), frac.tolist())], dtype=np.float64)
    else:
        # exact: sec * 10**6 + frac < 2**53, and int / int of such values is a float division
        sec = field(block, LEAD, bo + "u4").astype(np.int64)
        frac = field(block, LEAD + 4, bo + "u4").astype(np.int64)
        ts = (sec * 1000000 + frac).astype(np.float64) / 1000000.0
    if fields is not None and frac is not None:
        fields["frac"] = frac
    arr = np.frombuffer(buf, dtype=np.uint8)
    shift = _SHIFT[linktype]
    if shift:
        # the IP header where Ethernet's is: the window ``shift`` bytes on
        blk = windows(arr, WINDOW)[o + shift]
        w = _words(blk)
        # the protocol field: SLL2 frame bytes 0-1 (word 3, high half), SLL 14-15 (word 7)
        et = w[3] >> 16 if linktype == 276 else w[7] & 0xFFFF
        r = _shapes(w, blk, cap - shift, et, ipv6)
        tagged = None
    else:
        blk = block
        w = _words(block)
        et = w[7] & 0xFFFF  # frame bytes 12-13
        if eth is not None:
            et[~eth] = 0  # not Ethernet: neither ESP of a common shape nor inert
        r = _shapes(w, block, cap, et, ipv6)
        # 802.1Q / 802.1ad tags (one or two): the same shapes 4 or 8 bytes on (mirror ports
        # are often trunks); the general decoder peels them and makes the same events
        tagged = np.isin(et, _TAGS)
    if fields is not None:
        fields["words"] = (w, blk)  # for plain_tcp: the same rows, read once
    sel: Array | slice
    if tagged is not None and tagged.any():
        inner = np.where(np.isin(w[8] & 0xFFFF, _TAGS), 8, 4)
        inner[np.isin(w[8] & 0xFFFF, _TAGS) & np.isin(w[9] & 0xFFFF, _TAGS)] = 0  # 3 tags: no
        for shift in (4, 8):
            sel = np.flatnonzero(tagged & (inner == shift))
            if not len(sel):
                continue
            blk = windows(arr, WINDOW)[o[sel] + shift]
            w2 = _words(blk)
            _merge(r, sel, _shapes(w2, blk, cap[sel] - shift, w2[7] & 0xFFFF, ipv6))
    fast4, fast6 = r["fast4"], r["fast6"]
    if (wire > cap).any():
        # the snapshot length cut some records: an ESP event's length is the size on the wire
        cut = np.maximum(wire - cap, 0)
        r["length"] = r["length"] + cut
        if r["length6"] is not None:
            r["length6"] = r["length6"] + cut
    fast = fast4 | fast6 if fast6 is not None else fast4
    other = np.flatnonzero(~fast)
    inert = r["inert"][other]

    out4: Lane | None = None
    out6: Lane | None = None
    if fast4.all():
        idx4 = np.arange(count)
        sel = slice(None)
    else:
        idx4 = sel = np.flatnonzero(fast4)
    if len(idx4):
        out4 = (EspBatch(4, idx4 + (number0 + 1), ts[sel], r["src"][sel], r["dst"][sel],
                         r["sport"][sel], r["dport"][sel], r["spi"][sel], r["seq"][sel],
                         r["length"][sel]), idx4)
    if fast6 is not None:
        idx6 = np.flatnonzero(fast6)
        if len(idx6):
            out6 = (EspBatch(6, idx6 + (number0 + 1), ts[idx6], r["src6"][idx6], r["dst6"][idx6],
                             r["sport6"][idx6], r["dport6"][idx6], r["spi6"][idx6],
                             r["seq6"][idx6], r["length6"][idx6]), idx6)
    return ts, cap, wire, other, inert, out4, out6


#: Ethernet types of VLAN tags (dissect.vpn.link.ETH_VLAN)
_TAGS = np.array([0x8100, 0x88A8, 0x9100, 0x9200], dtype=np.uint32)


def _words(block: Array) -> Array:
    """The rows of ``block`` as 22 big-endian words, made native, one contiguous array per word
    (word ``k`` holds frame bytes ``4k - 18`` .. ``4k - 15``)."""
    return np.ascontiguousarray(block.view(">u4").T, dtype=np.uint32)


def _merge(r: dict[str, Any], sel: Array, r2: dict[str, Any]) -> None:
    """Put the results ``r2`` for the records ``sel`` into ``r``."""
    for key, val in r2.items():
        if val is None:
            continue
        cur = r[key]
        if cur is None:
            cur = r[key] = np.zeros((len(r["fast4"]),) + val.shape[1:], dtype=val.dtype)
        cur[sel] = val


def _shapes(w: Array, block: Array, cap: Array, et: Array, ipv6: bool) -> dict[str, Any]:
    """Classify frames whose Ethernet type is ``et`` and whose IP header starts at word 8 of
    ``w`` (``cap``: captured bytes from the start of the 14-byte Ethernet header before it).
    Returns per record ``fast4``, ``fast6`` (None: no IPv6 ESP looked for or found), ``inert``,
    and the ESP event's fields (IPv4: ``src``, ``dst``, ``sport``, ``dport``, ``spi``, ``seq``,
    ``length``; IPv6 the same with a 6 appended; meaningful only where fast)."""
    ip0 = w[8]  # IP bytes 0-3
    ip1 = w[9]  # IPv4: identification, flags + fragment offset; IPv6: payload length, next header
    # IPv4 (as dissect.vpn.fast.esp_at): no options, not a fragment
    unfrag = (ip1 & 0x3FFF) == 0
    v4 = (et == 0x0800) & ((ip0 >> 24) == 0x45) & unfrag & (cap >= 42)
    proto = (w[10] >> 16) & 0xFF
    ipend = np.minimum((ip0 & 0xFFFF).astype(np.int64) + 14, cap)
    w1 = w[13]  # ESP: SPI; UDP: ports
    sport = w1 >> 16
    dport = w1 & 0xFFFF
    nat4 = (sport == 4500) | (dport == 4500)
    udp4 = v4 & (proto == 17) & nat4 & (ipend >= 50) & (w[15] != 0)
    fast4 = udp4 | (v4 & (proto == 50) & (w1 != 0) & (ipend >= 42))
    r: dict[str, Any] = {"fast4": fast4, "fast6": None,
         "src": w[11].astype(np.int64), "dst": w[12].astype(np.int64),
         "sport": np.where(udp4, sport.astype(np.int64), -1),
         "dport": np.where(udp4, dport.astype(np.int64), -1),
         "spi": np.where(udp4, w[15], w1).astype(np.int64),
         "seq": np.where(udp4, w[16], w[14]).astype(np.int64),
         "length": ipend - np.where(udp4, 42, 34)}
    # inert when left to the general path: no ESP/AH event can come of it
    ip4 = (et == 0x0800) & ((ip0 >> 28) == 4) & (cap >= 42) & unfrag
    # UDP only without IPv4 options (they move the ports) and with a sane total length
    udp = ((ip0 >> 24) == 0x45) & (proto == 17) & (ipend >= 42)
    # a NAT-T port and no ESP header: IKE behind the non-ESP marker, a keepalive, or junk
    udp_ike = nat4 & ((ipend < 50) | (w[15] == 0))
    udp_plain = ~nat4 & (dport != 4789)
    inert = (et == 0x0806) | (ip4 & ((proto == 1) | (udp & (udp_ike | udp_plain))))
    # IPv6 without extension headers (dissect.vpn.link.decode_frame's fast shape)
    is6 = et == 0x86DD
    if is6.any():
        plen = (ip1 >> 16).astype(np.int64)
        v6 = is6 & ((ip0 >> 28) == 6) & (cap >= 58) & (plen >= 4)
        nh = (ip1 >> 8) & 0xFF
        sport6 = w[18] >> 16
        dport6 = w[18] & 0xFFFF
        if ipv6:
            end6 = np.minimum(plen + 54, cap)
            udp6 = (v6 & (nh == 17) & ((sport6 == 4500) | (dport6 == 4500)) & (dport6 != 4789)
                    & (end6 >= 70) & (w[20] != 0))
            fast6 = udp6 | (v6 & (nh == 50) & (end6 >= 62) & (w[18] != 0))
            if fast6.any():
                i6 = np.flatnonzero(fast6)
                src6 = np.zeros((len(cap), 16), dtype=np.uint8)
                dst6 = np.zeros((len(cap), 16), dtype=np.uint8)
                src6[i6] = block[i6, _H + 22:_H + 38]
                dst6[i6] = block[i6, _H + 38:_H + 54]
                r.update({
                    "fast6": fast6, "src6": src6, "dst6": dst6,
                    "sport6": np.where(udp6, sport6.astype(np.int64), -1),
                    "dport6": np.where(udp6, dport6.astype(np.int64), -1),
                    "spi6": np.where(udp6, w[20], w[18]).astype(np.int64),
                    "seq6": np.where(udp6, w[21], w[19]).astype(np.int64),
                    "length6": end6 - np.where(udp6, 62, 54)})
        # ESP, UDP (not VXLAN) and ICMPv6 right after the IPv6 header make no event of an IPv4
        # SA; and with ``ipv6`` none of an IPv6 SA either (what is not in the batches is ESP too
        # short or with SPI 0, IKE, a keepalive, junk)
        inert |= v6 & ((nh == 50) | (nh == 58) | ((nh == 17) & (dport6 != 4789)))
    r["inert"] = inert & ~fast4 if r["fast6"] is None else inert & ~(fast4 | r["fast6"])
    for key in ("src6", "dst6", "sport6", "dport6", "spi6", "seq6", "length6"):
        r.setdefault(key, None)
    return r


#: ARPHRD_NETLINK (linux/if_arp.h): cooked frames of it carry no IP (dissect.vpn.link)
_NETLINK = 824
_IKETCP = np.frombuffer(IKETCP_PREFIX, dtype=np.uint8)
_RESETS = np.array(sorted(CLIENT_RESETS), dtype=np.uint8)


def _stream_start(blk: Array | tuple[Array, Array], hlen: Array, plen: Array) -> Array:
    """Per row (of ``blk``, or ``blk = (block, rows)``): the TCP payload may start a VPN stream on any port - the IKETCP prefix or an
    RFC 9329 frame (a Length of 34 or more, bytes 2-5 zero: :func:`dissect.vpn.tcpencap.probe`
    decides), or an OpenVPN client hard reset (:func:`dissect.vpn.openvpn.tcp_stream_start`'s
    length and opcode) - or the payload is shorter than 6 bytes or its first 6 lie beyond the
    window.  A superset: False means neither can be."""
    p = 52 + hlen  # the payload in the window (the IP header at 32)
    inwin = p + 6 <= WINDOW
    idx = np.minimum(p, WINDOW - 6)[:, None] + np.arange(6)
    if isinstance(blk, tuple):  # (the chunk's rows, which of them)
        b = blk[0][blk[1][:, None], idx]
    else:
        b = np.take_along_axis(blk, idx, axis=1)
    ln = b[:, 0].astype(np.int64) << 8 | b[:, 1]
    # an RFC 9329 frame of IKE: Length >= 6 + the 28-byte IKE header, then the non-ESP marker
    iketcp = (b == _IKETCP).all(axis=1) | ((b[:, 2:6] == 0).all(axis=1) & (plen >= 34)
                                          & (ln >= 34))
    ovpn = ((plen >= 16) & (ln >= 14) & (ln <= 1600) & ((b[:, 2] & 7) == 0)
            & np.isin(b[:, 2] >> 3, _RESETS))
    start: Array = (plen > 0) & (~inwin | (plen < 6) | iketcp | ovpn)
    return start


def plain_tcp(buf: Buffer, offsets: Collection[int] | Array, linktype: int, cap: Array,
              ports: Collection[int] = (), words: tuple[Array, Array] | None = None,
              rows: Array | None = None) -> dict[str, Any]:
    """The TCP headers of records that are not ESP (``offsets`` and ``cap`` as for
    :func:`classify`: record positions in ``buf``, captured lengths), read for all of them at
    once - so that plaintext TCP (a tunnel interface, web traffic beside a tunnel) is decoded
    once, here, and not frame by frame.

    The shape: ``linktype`` Ethernet II (no VLAN tag) or Linux cooked SLL / SLL2 (not netlink),
    IPv4 without options, not a fragment, protocol TCP with its whole header (options included)
    inside the IP total length and the captured bytes - what
    :func:`dissect.vpn.link.decode_frame` and :func:`dissect.vpn.ip.decode_tcp` decode without
    error, on none of ``ports`` (either side).  Returns a dict of arrays, one entry per
    record: ``ok`` (the shape), ``src``/``dst``
    (``uint32``, the address as a big-endian integer), ``sport``, ``dport``, ``seq``, ``ack``,
    ``flags`` (the 12 bits after the data offset), ``l4``, ``poff`` and ``end`` (frame offsets
    of the TCP header, the payload and the end of the IP payload), ``start`` (the payload may
    start IKE/ESP or OpenVPN over TCP: the caller checks it), and for cooked frames
    ``ifindex`` (-1 for SLL), ``hatype`` and ``pkttype`` (as
    :func:`dissect.vpn.link.cooked_header`).  Meaningful only where ``ok``.

    ``words``, ``rows``: :func:`classify`'s ``fields["words"]`` of the chunk these records are
    rows ``rows`` of (nothing is read again), or None (read them at ``offsets``)."""
    shift = _SHIFT[linktype]
    blk: Array | tuple[Array, Array]
    if words is not None and rows is not None:
        w = words[0][:, rows]
        blk = (words[1], rows)
        n = len(rows)
    else:
        o = np.array(offsets, dtype=np.int64)
        o += shift - LEAD
        blk = windows(np.frombuffer(buf, dtype=np.uint8), WINDOW)[o]
        w = _words(blk)
        n = len(o)
    cap = np.asarray(cap, dtype=np.int64)
    ip0, ip1 = w[8], w[9]
    hdr = 14 + shift
    endf = np.minimum((ip0 & 0xFFFF).astype(np.int64) + hdr, cap)
    tcp12 = w[16] >> 16  # TCP bytes 12-13: data offset, flags
    hlen = ((tcp12 >> 12) << 2).astype(np.int64)
    l4 = hdr + 20
    et = w[3] >> 16 if linktype == 276 else w[7] & 0xFFFF
    ok = ((et == 0x0800) & ((ip0 >> 24) == 0x45) & ((ip1 & 0x3FFF) == 0)
          & (((w[10] >> 16) & 0xFF) == 6) & (cap >= l4 + 20) & (hlen >= 20)
          & (l4 + hlen <= endf))
    r: dict[str, Any] = {"ok": ok, "src": w[11], "dst": w[12], "sport": w[13] >> 16, "dport": w[13] & 0xFFFF,
         "seq": w[14], "ack": w[15], "flags": tcp12 & 0x0FFF, "l4": l4, "poff": l4 + hlen,
         "end": endf, "start": _stream_start(blk, hlen, endf - l4 - hlen)}
    if linktype == 276:
        r["ifindex"] = w[4]
        r["hatype"] = w[5] >> 16
        r["pkttype"] = (w[5] >> 8) & 0xFF
    elif linktype == 113:
        r["ifindex"] = np.full(n, -1, dtype=np.int64)
        r["hatype"] = w[4] & 0xFFFF
        r["pkttype"] = w[4] >> 16
    if shift:
        ok &= r["hatype"] != _NETLINK
    if len(ports):
        pa = np.array(sorted(ports), dtype=np.uint32)
        ok &= ~(np.isin(r["sport"], pa) | np.isin(r["dport"], pa))
    return r
