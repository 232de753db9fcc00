"""pcapng: sections, interface description blocks, packet blocks and statistics, read one
block at a time by the general rules (the batched walk over runs of enhanced packet blocks is
:mod:`dissect.vpn.capture.walk`)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Iterator

from dissect.vpn.capture.common import (
    _B_DSB,
    _B_EPB,
    _B_IDB,
    _B_ISB,
    _B_NRB,
    _B_PB,
    _B_SPB,
    _ISB_COUNTERS,
    _NUMBERED,
    _SHB,
    _UNUSABLE,
    MAX_RECORD,
    NONPACKET,
    TS_LIMIT,
    Bytes,
    Callback,
    Interface,
    Record,
    Stream,
    _read_exact,
)
from dissect.vpn.capture.damage import _UNKNOWN, DAMAGE_KEEP, Peeked, _Corrupt, _pcapng_tail
from dissect.vpn.capture.reader import _Reader
from dissect.vpn.capture.walk import walk_pcapng
from dissect.vpn.errors import DissectError
from dissect.vpn.link import COOKED_LINKTYPES

if TYPE_CHECKING:
    from dissect.vpn.chain import PcapngRules

#: an interface of the current section as the walks use it: ``(global index, link type, ticks
#: per second, offset in ticks, snaplen)``
SectionIface = tuple[int, int, int, int, int]


class _Order:
    """Precompiled structs for one byte order."""

    __slots__ = ("char", "hdr", "head7", "head8", "u32", "epb", "pb", "opt", "idb", "u64", "i64",
                 "u16", "isb", "shb")

    def __init__(self, char: str) -> None:
        self.char = char
        self.hdr = struct.Struct(char + "II").unpack_from
        self.head7 = struct.Struct(char + "7I").unpack_from
        self.head8 = struct.Struct(char + "8I").unpack_from
        self.u32 = struct.Struct(char + "I").unpack_from
        self.epb = struct.Struct(char + "IIIII").unpack_from
        self.pb = struct.Struct(char + "HHIIII").unpack_from
        self.opt = struct.Struct(char + "HH").unpack_from
        self.idb = struct.Struct(char + "HHI").unpack_from
        self.u64 = struct.Struct(char + "Q").unpack_from
        self.i64 = struct.Struct(char + "q").unpack_from
        self.u16 = struct.Struct(char + "H").unpack_from
        self.isb = struct.Struct(char + "III").unpack_from
        self.shb = struct.Struct(char + "IIHH").unpack_from


_LE = _Order("<")
_BE = _Order(">")
# the block types a reader knows (those that may also start a chain: dissect.vpn.chain); a block
# of another type is skipped only when a block follows it, at most this long
KNOWN_BLOCKS = frozenset((_SHB, _B_IDB, _B_PB, _B_SPB, _B_NRB, _B_ISB, _B_EPB, _B_DSB)) | \
    _NUMBERED
_FOLLOW_MAX = 1 << 20


def ok_need(buf: Bytes, end: int, n: int, o: _Order) -> int:
    """Bytes needed after ``end`` to see the block that starts there whole (at least its
    header)."""
    if end + 12 > n:
        return 12
    blen: int = o.u32(buf, end + 4)[0]
    return max(12, min(blen, _FOLLOW_MAX))


def _tsresol_ok(tsresol: int) -> bool:
    return (tsresol & 0x7F) <= (63 if tsresol & 0x80 else 18)


class PcapngReader(_Reader):
    """pcapng: every section (each SHB resets byte order and interfaces), EPB, SPB, PB, ISB.

    Damage (see the module docstring): a block whose length or trailer is impossible starts an
    unreadable range, skipped to the next valid chain of blocks; a block whose framing is right
    but whose content is not (an undeclared interface, a captured length past its block, an SPB
    before any IDB, malformed options) is skipped alone; a packet block whose timestamp lies
    outside [0, TS_LIMIT) (a 64-bit tick count, an extreme ``if_tsresol`` or ``if_tsoffset``) is
    a damaged record that keeps its frame number."""

    __slots__ = ("sections", "_order", "_secifs", "_last_ts", "notes", "_ifn")

    #: per section: ``byteorder``, ``version``, ``offset``, ``hardware``, ``os``, ``userappl``
    sections: list[dict[str, Any]]
    _order: _Order
    _secifs: list[SectionIface]
    _last_ts: float
    notes: list[tuple[int, str]]
    _ifn: list[int]

    def __init__(self, stream: Stream, head: bytes) -> None:
        self._stream = stream
        self._started = False
        self.format = "pcapng"
        self.interfaces = []
        self.isb = {}
        self.drops = {}
        #: pcapng ``isb_endtime``: when the capture stopped (the latest given), else None
        self.ended = None
        self._init_damage()
        #: problems that lost no record (malformed options of an interface description block)
        self.notes = []
        self._ifn = []  # packet records per global interface index
        self.sections = []
        self._secifs = []
        self._last_ts = 0.0
        rest = _read_exact(stream, 8)
        if len(rest) < 8:
            raise DissectError("truncated pcapng section header block", 0)
        order = self._bom(rest[4:8])
        if order is None:
            raise DissectError(f"pcapng section header with a bad byte-order magic "
                               f"{rest[4:8].hex()}", 8)
        blen = order.u32(rest, 0)[0]
        if blen < 28 or blen & 3 or blen > MAX_RECORD:
            raise DissectError(f"pcapng section header block with a bad length {blen}", 4)
        body = _read_exact(stream, blen - 12)
        if len(body) < blen - 12:
            raise DissectError("truncated pcapng section header block", 0)
        block = head + rest + body
        try:
            self._section(block, 0, blen, order, 0)
        except _Corrupt as exc:
            raise DissectError(str(exc), 0) from None
        self.byteorder = order.char
        self.version = self.sections[0]["version"]
        self._buf = b""
        self._base = blen

    @property
    def warnings(self) -> list[tuple[int, str]]:
        return sorted(super().warnings + self.notes, key=lambda w: w[0])

    @property
    def iface_frames(self) -> dict[int, int]:
        """Packet records read so far per global interface index (interfaces without any
        left out)."""
        return {i: c for i, c in enumerate(self._ifn) if c}

    def _counted(self, rec: Record) -> Record:
        """A packet record of the general rules: counted for its interface (and its Linux
        cooked header)."""
        gi = rec[5]
        self._ifn[gi] += 1
        if rec[1] in COOKED_LINKTYPES:
            self._cook(gi, rec[1], rec[2], 0, None)
        return rec

    def chain_rules(self) -> PcapngRules:
        from dissect.vpn.chain import PcapngRules

        return PcapngRules(self._order.char, [(u, off) for _gi, _lt, u, off, _s in self._secifs])

    @staticmethod
    def _bom(b4: Bytes) -> _Order | None:
        if b4 == b"\x4d\x3c\x2b\x1a":
            return _LE
        if b4 == b"\x1a\x2b\x3c\x4d":
            return _BE
        return None

    # -- block handlers (not the hot path) -------------------------------------------------

    def _options(self, buf: Bytes, start: int, end: int,
                 o: _Order) -> Iterator[tuple[int, Bytes]]:
        """Yield (code, value bytes) of an options area; raise _Corrupt if malformed."""
        opt = o.opt
        p = start
        while p + 4 <= end:
            code, olen = opt(buf, p)
            if code == 0:
                return
            q = p + 4 + olen
            if q > end:
                raise _Corrupt(f"option {code} length {olen} runs past the end of its block")
            yield code, buf[p + 4:q]
            p = q + (-olen & 3)

    def _section(self, buf: Bytes, pos: int, blen: int, o: _Order, base: int) -> None:
        _blen, _bom, major, minor = o.shb(buf, pos + 4)
        if major != 1:
            raise _Corrupt(f"unsupported pcapng version {major}.{minor}")
        info = {"byteorder": o.char, "version": (major, minor), "offset": base + pos,
                "hardware": None, "os": None, "userappl": None}
        names = {2: "hardware", 3: "os", 4: "userappl"}
        for code, val in self._options(buf, pos + 24, pos + blen - 4, o):
            if code in names:
                info[names[code]] = val.decode("utf-8", "replace").rstrip("\x00")
        self.sections.append(info)
        self._order = o
        self._secifs = []

    def _interface(self, buf: Bytes, pos: int, blen: int, o: _Order, base: int) -> None:
        if blen < 20:
            raise _Corrupt(f"interface description block too short ({blen} bytes)")
        linktype, _res, snaplen = o.idb(buf, pos + 8)
        tsresol = 6
        tsoffset = 0
        name = descr = None
        fcslen = None
        try:
            for code, val in self._options(buf, pos + 16, pos + blen - 4, o):
                if code == 9 and len(val) >= 1:
                    tsresol = val[0]
                elif code == 14 and len(val) >= 8:
                    tsoffset = o.i64(val, 0)[0]
                elif code == 2:
                    name = val.decode("utf-8", "replace").rstrip("\x00")
                elif code == 3:
                    descr = val.decode("utf-8", "replace").rstrip("\x00")
                elif code == 13 and len(val) >= 1:
                    fcslen = val[0]
        except _Corrupt as exc:
            # the interface is still declared (the ids of later ones must not shift)
            if len(self.notes) < DAMAGE_KEEP:
                self.notes.append((base + pos, f"interface description block: {exc}; the "
                                               f"options after it are ignored"))
        iface = Interface(linktype, snaplen, tsresol, tsoffset, name, fcslen,
                          len(self.sections) - 1, descr)
        gi = len(self.interfaces)
        self.interfaces.append(iface)
        self._ifn.append(0)
        units = iface.units
        offt = tsoffset * units
        if not _tsresol_ok(tsresol):
            units, offt = 1, _UNUSABLE  # every timestamp of it is out of range: damaged records
        self._secifs.append((gi, linktype, units, offt, snaplen))

    def _stats(self, buf: Bytes, pos: int, blen: int, o: _Order) -> None:
        if blen < 24:
            raise _Corrupt(f"interface statistics block too short ({blen} bytes)")
        iid = o.u32(buf, pos + 8)[0]
        counters = {}
        for code, val in self._options(buf, pos + 20, pos + blen - 4, o):
            name = _ISB_COUNTERS.get(code)
            if name is not None and len(val) >= 8:
                counters[name] = o.u64(val, 0)[0]
            elif code == 3 and len(val) >= 8 and iid < len(self._secifs):
                # isb_endtime: high and low 32 bits in the interface's units (RFC draft
                # pcapng §4.6)
                _gi, _lt, units, offt, _snap = self._secifs[iid]
                hi, lo = o.u32(val, 0)[0], o.u32(val, 4)[0]
                end = (((hi << 32) | lo) + offt) / units
                if self.ended is None or end > self.ended:
                    self.ended = end
        if iid < len(self._secifs) and counters:
            self.isb.setdefault(self._secifs[iid][0], {}).update(counters)

    def _epb_options(self, buf: Bytes, start: int, end: int, gi: int, o: _Order) -> None:
        # read them all before counting: malformed options count nothing (raise _Corrupt)
        dropped = [o.u64(val, 0)[0] for code, val in self._options(buf, start, end, o)
                   if code == 4 and len(val) >= 8]  # epb_dropcount
        if dropped:
            self.drops[gi] = self.drops.get(gi, 0) + sum(dropped)

    _HEADER = 12

    def _runs_past(self, buf: Bytes, pos: int) -> str:
        btype, blen = self._order.hdr(buf, pos)
        return f"corrupt block length {blen} (block type {btype:#x}) runs past the end of the data"

    def _cut_off(self, buf: Bytes, pos: int, n: int) -> tuple[int, str]:
        """``(records lost, reason)`` for the data ending inside the block at ``pos``."""
        left = n - pos
        if left < 12:
            return 0, _pcapng_tail(left, 0)
        btype, blen = self._order.hdr(buf, pos)
        return (1 if btype in (_B_EPB, _B_PB, _B_SPB) else 0), _pcapng_tail(left, blen)

    def _followed(self, buf: Bytes, end: int, n: int, eof: bool) -> bool | None:
        """A block (framing only: length, trailer) or the end of the data at ``end``: True /
        False / None (not read yet)."""
        if end + 12 > n:
            return end == n if eof else None
        o = self._order
        btype: int
        blen: int
        btype, blen = o.hdr(buf, end)
        if btype == _SHB:
            so = self._bom(bytes(buf[end + 8:end + 12]))
            if so is None:
                return False
            o = so
            blen = o.u32(buf, end + 4)[0]
        if blen & 3 or blen < 12 or blen > _FOLLOW_MAX:
            return False
        if end + blen > n:
            return False if eof else None
        trailer: int = o.u32(buf, end + blen - 4)[0]
        return trailer == blen

    def _ts_reason(self, gi: int, ts: float) -> str:
        tsresol = self.interfaces[gi].tsresol
        if not _tsresol_ok(tsresol):
            return (f"timestamp unusable: interface {gi} has an out-of-range time resolution "
                    f"(if_tsresol {tsresol:#x})")
        if ts < 0:
            return "timestamp before 1970 (tick count or if_tsoffset out of range)"
        return "timestamp after 2106 (tick count, if_tsresol or if_tsoffset out of range)"

    def _peek(self, buf: Bytes, p: int, n: int) -> Peeked:
        """The timestamp of the block at ``p`` when it is an enhanced / obsolete packet block of
        a declared interface with a usable timestamp (else None; _UNKNOWN: not read yet)."""
        o = self._order
        if p + 8 > n:
            return _UNKNOWN
        btype, blen = o.hdr(buf, p)
        if btype not in (_B_EPB, _B_PB) or blen < 32:
            return None
        if p + 28 > n:
            return _UNKNOWN
        if btype == _B_EPB:
            iid, hi, lo, _c, _w = o.epb(buf, p + 8)
        else:
            iid, _d, hi, lo, _c, _w = o.pb(buf, p + 8)
        if iid >= len(self._secifs):
            return None
        _gi, _lt, units, offt, _snap = self._secifs[iid]
        ts = (((hi << 32) | lo) + offt) / units
        return ts if 0.0 <= ts < TS_LIMIT else None

    def _bad_ts(self, buf: Bytes, pos: int, blen: int, base: int, n: int, gi: int,
                ts: float) -> Record:
        """A packet block whose timestamp is out of range: a damaged record that keeps its frame
        number (Wireshark shows it)."""
        self._note(base + pos, blen, 1, True, self._ts_reason(gi, ts), self._ts_or_none(),
                   self._peek(buf, pos + blen, n), "records")
        return (self._last_ts, NONPACKET, b"", 0, base + pos, -1)

    def _ts_or_none(self) -> float | None:
        return self._last_ts if self._last_ts else None

    def _epb(self, buf: Bytes, pos: int, blen: int, base: int, n: int) -> Record:
        o = self._order
        if blen < 32:
            raise _Corrupt(f"enhanced packet block too short ({blen} bytes)")
        iid, hi, lo, caplen, wirelen = o.epb(buf, pos + 8)
        if caplen > blen - 32:
            raise _Corrupt(f"enhanced packet block captured length {caplen} exceeds its block "
                           f"length {blen}")
        if iid >= len(self._secifs):
            raise _Corrupt(f"enhanced packet block for undeclared interface {iid}")
        gi, lt, units, offt, _snap = self._secifs[iid]
        ts = (((hi << 32) | lo) + offt) / units
        if not 0.0 <= ts < TS_LIMIT:
            return self._bad_ts(buf, pos, blen, base, n, gi, ts)
        if blen != 32 + ((caplen + 3) & -4):
            self._epb_options(buf, pos + 28 + ((caplen + 3) & -4), pos + blen - 4, gi, o)
        return self._counted((ts, lt, buf[pos + 28:pos + 28 + caplen], wirelen, base + pos, gi))

    def _other(self, btype: int, buf: Bytes, pos: int, blen: int, base: int,
               n: int) -> Record | None:
        """Handle a block other than an EPB; return a record tuple or None."""
        o = self._order
        if btype == _B_IDB:
            self._interface(buf, pos, blen, o, base)
        elif btype == _B_SPB:
            if blen < 16:
                raise _Corrupt(f"simple packet block too short ({blen} bytes)")
            if not self._secifs:
                raise _Corrupt("simple packet block before any interface description block")
            gi, lt, _u, _off, snap = self._secifs[0]
            wirelen = o.u32(buf, pos + 8)[0]
            caplen = wirelen if not snap or wirelen <= snap else snap
            if caplen > blen - 16:
                caplen = blen - 16
            return self._counted((self._last_ts, lt, buf[pos + 12:pos + 12 + caplen], wirelen,
                                  base + pos, gi))
        elif btype == _B_PB:
            if blen < 32:
                raise _Corrupt(f"packet block too short ({blen} bytes)")
            iid, dropped, hi, lo, caplen, wirelen = o.pb(buf, pos + 8)
            if caplen > blen - 32:
                raise _Corrupt(f"packet block captured length {caplen} exceeds its block "
                               f"length {blen}")
            try:
                gi, lt, units, offt, _snap = self._secifs[iid]
            except IndexError:
                raise _Corrupt(f"packet block for undeclared interface {iid}") from None
            ts = (((hi << 32) | lo) + offt) / units
            if not 0.0 <= ts < TS_LIMIT:
                return self._bad_ts(buf, pos, blen, base, n, gi, ts)
            if dropped != 0xFFFF and dropped:
                self.drops[gi] = self.drops.get(gi, 0) + dropped
            return self._counted((ts, lt, buf[pos + 28:pos + 28 + caplen], wirelen, base + pos,
                                  gi))
        elif btype == _B_ISB:
            self._stats(buf, pos, blen, o)
        elif btype in _NUMBERED:
            body = buf[pos + 8:pos + blen - 4]
            return (self._last_ts, NONPACKET, body, len(body), base + pos, -1)
        # NRB, DSB, unknown and local blocks: skipped
        return None

    def walk(self, tag: Any, on_esp: Callback, on_frame: Callback,
             on_checkpoint: Callback | None = None, every: int = 1024,
             on_batch: Callback | None = None, on_tcp: Any = None) -> None:
        """:meth:`_Reader.walk`; with ``on_batch``, runs of enhanced packet blocks are read and
        classified a chunk at a time as :class:`PcapReader` does (every other block one at a
        time by the rules of :meth:`records`)."""
        if on_batch is None:
            _Reader.walk(self, tag, on_esp, on_frame, on_checkpoint, every)
            return
        walk_pcapng(self, tag, on_batch, on_frame, on_checkpoint, every)

    def _block(self, buf: Bytes, pos: int, n: int, base: int, last_ts: float,
               eof: bool = False) -> tuple[int | None, Any]:
        """The block at ``buf[pos:]`` by the general rules: ``(end, record or None)``; or
        ``(None, bytes needed from pos)`` when it is not wholly in ``buf[:n]``.  A section
        header switches byte order and interfaces.  Raises :class:`_Corrupt` when the block's
        framing is wrong (bad length, trailer or byte-order magic: no block boundary is known
        after it); a block framed right whose content is unusable is noted as damage and
        skipped (``rec`` None, or a numbered damaged record).  A block of a type this reader
        does not know is skipped, as Wireshark does, but only when a block follows it
        (:meth:`_followed`): damage can look like one (``eof``: the data ends at ``n``)."""
        o = self._order
        btype, blen = o.hdr(buf, pos)
        if btype == _SHB:
            so = self._bom(buf[pos + 8:pos + 12])
            if so is None:
                raise _Corrupt(f"section header block with a bad byte-order magic "
                               f"{bytes(buf[pos + 8:pos + 12]).hex()}")
            o = so
            blen = o.u32(buf, pos + 4)[0]
        if blen & 3 or blen < 12 or blen > MAX_RECORD:
            raise _Corrupt(f"corrupt block length {blen} (block type {btype:#x})")
        end = pos + blen
        if end > n:
            return None, blen
        trailer = o.u32(buf, end - 4)[0]
        if trailer != blen:
            raise _Corrupt(f"block trailer length {trailer} differs from "
                           f"block length {blen} (block type {btype:#x})")
        if btype not in KNOWN_BLOCKS:
            ok = self._followed(buf, end, n, eof)
            if ok is None:
                return None, blen + ok_need(buf, end, n, o)
            if not ok:
                raise _Corrupt(f"block of unknown type {btype:#x} ({blen} bytes) not followed "
                               f"by a block")
        self._last_ts = last_ts
        try:
            if btype == _SHB:
                if blen < 28:
                    raise _Corrupt(f"section header block too short ({blen} bytes)")
                self._section(buf, pos, blen, o, base)
                return end, None
            if btype == _B_EPB:
                return end, self._epb(buf, pos, blen, base, n)
            return end, self._other(btype, buf, pos, blen, base, n)
        except (_Corrupt, struct.error, IndexError, ValueError, OverflowError) as exc:
            reason = str(exc) if isinstance(exc, _Corrupt) else \
                f"malformed block type {btype:#x} ({exc})"
            packet = btype in (_B_EPB, _B_PB, _B_SPB)
            self._note(base + pos, blen, 1 if packet else 0, False, reason, self._ts_or_none(),
                       self._peek(buf, end, n), "records")
            return end, None

    # -- the walk ---------------------------------------------------------------------------

    def records(self) -> Iterator[Record]:
        self._begin()
        buf = self._buf
        self._buf = b""
        base = self._base
        pos = 0
        n = len(buf)
        o = self._order
        secifs = self._secifs
        last_ts = 0.0
        blen = 0
        ifn = self._ifn
        eof = False
        while True:
            head7, head8, u32 = o.head7, o.head8, o.u32
            cur = -1  # interface id cached in gi/lt/units/offt/ck
            gi = lt = units = offt = 0
            ck = False
            try:
                while True:
                    # fast path: enhanced packet blocks wholly inside the buffer, of a declared
                    # interface, with a usable timestamp.  The trailer of a block is read together
                    # with the header of the next one (one unpack).
                    if pos + 28 <= n:
                        btype, blen, iid, hi, lo, caplen, wirelen = head7(buf, pos)
                        while btype == 6:
                            end = pos + blen
                            if end > n or blen & 3 or caplen > blen - 32:
                                break
                            if iid != cur:
                                if iid >= len(secifs):
                                    break
                                gi, lt, units, offt, _snap = secifs[iid]
                                ck = lt in COOKED_LINKTYPES
                                cur = iid
                            ts = (((hi << 32) | lo) + offt) / units
                            if not 0.0 <= ts < TS_LIMIT:
                                break
                            if blen - caplen > 35:  # more than the padding: options follow
                                try:
                                    self._epb_options(buf, pos + 28 + ((caplen + 3) & -4),
                                                      end - 4, gi, o)
                                except _Corrupt:
                                    break  # the general rules skip the block (and say why)
                            rec = (ts, lt, buf[pos + 28:pos + 28 + caplen], wirelen, base + pos,
                                   gi)
                            if end + 28 <= n:
                                trailer, btype, nblen, iid, hi, lo, caplen, wirelen = head8(
                                    buf, end - 4)
                                if trailer != blen:
                                    raise _Corrupt(f"block trailer length {trailer} differs from "
                                                   f"block length {blen} (block type 0x6)")
                                ifn[gi] += 1
                                if ck:
                                    self._cook(gi, lt, rec[2], 0, None)
                                last_ts = ts
                                yield rec
                                pos = end
                                blen = nblen
                            else:
                                trailer = u32(buf, end - 4)[0]
                                if trailer != blen:
                                    raise _Corrupt(f"block trailer length {trailer} differs from "
                                                   f"block length {blen} (block type 0x6)")
                                ifn[gi] += 1
                                if ck:
                                    self._cook(gi, lt, rec[2], 0, None)
                                last_ts = ts
                                yield rec
                                pos = end
                                break
                    # slow path: one block of any other kind, or more data needed
                    if pos + 12 <= n:
                        end, rec = self._block(buf, pos, n, base, last_ts, eof)
                        if end is not None:
                            o = self._order
                            head7, head8, u32 = o.head7, o.head8, o.u32
                            secifs = self._secifs
                            cur = -1
                            if rec is not None:
                                last_ts = rec[0]
                                yield rec
                            pos = end
                            continue
                        blen = rec
                        need = pos + blen - n
                    else:
                        need = 12 - (n - pos)
                    more = self._more(buf, pos, n, need)
                    if more is None:
                        if pos < n and not eof:
                            eof = True  # once more, knowing that the data ends here
                            continue
                        if pos < n:
                            found = self._end(buf, pos, n, base, last_ts or None)
                            if found is not None:
                                pos = found
                                continue
                        self._eof(base + n)
                        return
                    buf = more
                    base += pos
                    pos = 0
                    n = len(buf)
            except _Corrupt as exc:
                reason = str(exc)
            except (struct.error, IndexError, ValueError, OverflowError) as exc:
                reason = f"malformed block ({exc})"
            # framing broken at pos: skip to the next valid chain of blocks
            skipped, buf, eof = self._recover(buf[pos:], base + pos, reason, last_ts or None)
            base += pos + skipped
            pos = 0
            n = len(buf)
            if eof:
                self._eof(base)
                return
            o = self._order
            secifs = self._secifs
