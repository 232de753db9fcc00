"""Record chains: where valid capture records start, in a byte stream that may be damaged.

A reader that meets something that is not a record (an impossible length, a pcapng block whose
trailing length differs from its leading length) uses this module to *resynchronise*: it looks
for the next offset where a chain of ``SYNC_RECORDS`` consecutive plausible records starts and
goes on reading there.  The same validator finds record boundaries in the middle of a capture for
any other purpose (cutting a big capture into byte ranges for parallel workers).

The contract
------------
``find(rules, buf, start, end, eof, k=SYNC_RECORDS) -> (offset, resume)``

* ``rules`` describes the records: :class:`PcapRules` (classic pcap: byte order, time unit,
  snapshot length) or :class:`PcapngRules` (pcapng: byte order and, when known, the interfaces of
  the section the bytes belong to); readers give theirs with ``reader.chain_rules()``.
* ``buf[start:end]`` is searched (``buf`` any bytes-like object; offsets are positions in it).
* Returns ``(p, p)``: ``p`` is the *smallest* offset ``>= start`` where ``k`` consecutive valid
  records start, all wholly inside ``buf[:end]``.  With ``eof=True`` (``end`` is the end of the
  data) a shorter chain also counts when it runs to the end: two whole valid records (then
  nothing, or a record cut off by the end of the data), or one that ends exactly at the end.
* Returns ``(None, r)`` when no chain starts in ``[start, r)``: without ``eof``, ``r`` is the
  first offset that could not be decided with the bytes up to ``end`` (the caller keeps
  ``buf[r:]``, appends more data and calls again from ``r``); with ``eof``, ``r == end``.

Every offset is tried (damage does not respect alignment), first with array operations over the
whole range (numpy), then record by record for the few candidates left, so a long damaged range
costs a few milliseconds per megabyte.

What "valid" means (each test is cheap and true of every record of a sane capture):

* classic pcap record header: fraction of a second below one second (microseconds < 10**6,
  nanoseconds < 10**9), captured length at most :func:`PcapRules` ``sync_cap`` (the snapshot length,
  at least 65535, at most 262144), original length not zero, not smaller than the captured length,
  at most ``MAX_WIRE``;
* pcapng block: a known block type (``KNOWN_BLOCKS``), length a multiple of 4, at least the
  minimum of its type, at most ``max_block``, trailing length equal to the leading one; a section
  header's byte-order magic; an enhanced / obsolete packet block's captured length inside its
  block and, when the section's interfaces are known, its interface declared and its timestamp
  usable (``0 <= ts < TS_LIMIT``); a simple packet block only after an interface;
* neighbours: two consecutive packet records of a chain at most ``MAX_STEP`` seconds apart, and
  the first one's time within ``[lo - w - FIRST_SLACK, hi + w + FIRST_SLACK]`` where ``lo``,
  ``hi`` and ``w = hi - lo`` are the earliest and latest times of the next (at least two) ones.

Random bytes pass one classic-pcap header test with a probability of about 2**-30, so a chain of
four is never found in garbage; zero-filled ranges never pass (original length 0).  What a chain
cannot tell apart is a capture stored *inside* a record's payload: the validator may
synchronise on it, as any such heuristic would.

``resync(rules, head, read, k)`` drives :func:`find` over a stream: ``head`` holds the bytes from
the failing offset on, ``read(n)`` gives more.  It returns ``(skipped, rest, eof)``: the number of
bytes from the failing offset to the next chain, the bytes read from there on, and whether the
data ended without one (then ``skipped`` counts every byte to the end).  Memory is bounded by one
read chunk plus ``k`` records.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Iterable, Union

import numpy as np
from numpy.typing import NDArray

from dissect.vpn.capture.common import TS_LIMIT
from dissect.vpn.capture.pcapng import _BE, _LE, KNOWN_BLOCKS, PcapngReader
from dissect.vpn.capture.reader import CHUNK
from .types import Buffer

__all__ = ["KNOWN_BLOCKS", "MAX_STEP", "MAX_WIRE", "SYNC_RECORDS", "PcapRules", "PcapngRules",
           "find", "resync"]

#: consecutive valid records that make a synchronisation point
SYNC_RECORDS = 4
#: the largest step in time between two neighbouring packet records of a chain (seconds)
MAX_STEP = 86400.0
#: the first record of a chain lies within the spread of the next ones' times widened by their
#: spread and this many seconds (a record whose header the damage touched but left plausible,
#: e.g. the low bytes of its seconds zeroed, is not taken as the place to resume)
FIRST_SLACK = 60.0
#: the largest original length a record at a synchronisation point may claim
MAX_WIRE = 1 << 20
#: offsets examined per array operation (bounds the temporary arrays to a few MB)
WINDOW = 1 << 20

_SHB = 0x0A0D0D0A
_EPB = 6
_PB = 2
_SPB = 3
_IDB = 1
_MIN_LEN = {_SHB: 28, _IDB: 20, _PB: 32, _SPB: 16, 5: 24, _EPB: 32}
_KNOWN_ARR = np.array(sorted(KNOWN_BLOCKS), dtype=np.uint32)


def _short(whole: int, exact: bool, times: list[float]) -> bool:
    """A chain cut short by the end of the data counts with two whole records, or one that ends
    exactly at the end (one record and a few bytes after it is what a cut-off payload often looks
    like)."""
    return (whole >= 2 or (whole == 1 and exact)) and _fits(times)


def _fits(times: list[float]) -> bool:
    """The first of a chain's packet times is not an outlier (see the module docstring)."""
    if len(times) < 3:
        return True
    rest = times[1:]
    lo, hi = min(rest), max(rest)
    w = hi - lo + FIRST_SLACK
    return lo - w <= times[0] <= hi + w


def _u32s(buf: Buffer, a: int, end: int, order: str) -> NDArray[Any]:
    """Every unsigned 32-bit value of ``buf[a:end]``, one per byte offset (a strided view)."""
    count = end - a - 3
    if count <= 0:
        return np.zeros(0, dtype=np.uint32)
    view: NDArray[Any] = np.ndarray((count,), dtype=order + "u4", buffer=buf, offset=a,
                                    strides=(1,))
    return view


class PcapRules:
    """Classic pcap records (16-byte header: seconds, fraction, captured and original length)."""

    kind = "pcap"
    header = 16

    def __init__(self, order: str, nanosecond: bool, snaplen: int) -> None:
        self.order = order
        self.units = 1000000000 if nanosecond else 1000000
        self.sync_cap = 262144 if not snaplen else min(max(snaplen, 65535), 262144)
        self._hdr = struct.Struct(order + "IIII").unpack_from

    def candidates(self, buf: Buffer, a: int, b: int, end: int) -> NDArray[Any]:
        """Offsets in ``[a, b)`` whose header passes the single-record tests (array operations),
        and whose next header, when it lies before ``end``, does too."""
        v = _u32s(buf, a, end, self.order)
        n = b - a
        frac, cap, wire = v[4:4 + n], v[8:8 + n], v[12:12 + n]
        ok = (frac < self.units) & (cap <= self.sync_cap) & (wire >= cap) & (wire != 0) \
            & (wire <= MAX_WIRE)
        cand = np.flatnonzero(ok)
        if not len(cand):
            return cand
        # the next record's header must pass too, where it is inside the examined range
        nxt = cand + 16 + cap[cand].astype(np.int64)
        inside = nxt < n
        keep = ~inside
        keep[inside] = ok[nxt[inside]]
        return cand[keep] + a

    def chain(self, buf: Buffer, p: int, end: int, eof: bool, k: int) -> bool | None:
        """True / False: a chain of ``k`` valid records starts at ``p``; None: undecided (the
        bytes end first and ``eof`` is false)."""
        hdr = self._hdr
        units = self.units
        cap_max = self.sync_cap
        times: list[float] = []
        while len(times) < k:
            if p + 16 > end:
                return _short(len(times), p == end, times) if eof else None
            sec, frac, cap, wire = hdr(buf, p)
            if frac >= units or cap > cap_max or wire < cap or not wire or wire > MAX_WIRE:
                return False
            ts = sec + frac / units
            if times and abs(ts - times[-1]) > MAX_STEP:
                return False
            p += 16 + cap
            if p > end:
                return _short(len(times), False, times) if eof else None
            times.append(ts)
        return _fits(times)

    def times(self, buf: Buffer, p: int, end: int, k: int = SYNC_RECORDS) -> list[float]:
        """The timestamps of the packet records of the chain at ``p`` (up to ``k`` records,
        those wholly in ``buf[:end]``)."""
        out: list[float] = []
        units = self.units
        while len(out) < k and p + 16 <= end:
            sec, frac, cap, _wire = self._hdr(buf, p)
            out.append((sec * units + frac) / units)
            p += 16 + cap
        return out


_ORDERS = {"<": _LE, ">": _BE}
#: the byte order a section header's byte-order magic names (None: not a magic; typed loosely so
#: that the walk below can rebind its ``o``)
_bom: Callable[[bytes], Any] = PcapngReader._bom


class PcapngRules:
    """pcapng blocks of one section: its byte order and, when known, its interfaces as
    ``(ticks per second, offset in ticks)`` per interface id (None: framing only, any interface
    id).  A section header block inside a chain switches the byte order; interfaces declared
    after it are counted, their timestamps not checked."""

    kind = "pcapng"
    header = 12

    def __init__(self, order: str, interfaces: Iterable[tuple[float, int]] | None = None,
                 max_block: int = 262144 + 65536 + 64) -> None:
        self.order = order
        self.interfaces = None if interfaces is None else list(interfaces)
        self.max_block = max_block

    def candidates(self, buf: Buffer, a: int, b: int, end: int) -> NDArray[Any]:
        v = _u32s(buf, a, end, self.order)
        n = b - a
        btype, blen = v[:n], v[4:4 + n]
        ok = np.isin(btype, _KNOWN_ARR) & ((blen & 3) == 0) & (blen >= 12) \
            & (blen <= self.max_block)
        cand = np.flatnonzero(ok)
        shb = np.flatnonzero(btype == _SHB)  # its length is in its own byte order: look later
        if len(cand):
            tail = cand + blen[cand].astype(np.int64) - 4
            inside = tail < len(v)
            keep = ~inside | (btype[cand] == _SHB)
            keep[inside] |= v[tail[inside]] == blen[cand[inside]]
            cand = cand[keep]
        if len(shb):
            cand = np.union1d(cand, shb)
        return cand + a

    def chain(self, buf: Buffer, p: int, end: int, eof: bool, k: int) -> bool | None:
        o = _ORDERS[self.order]
        ifaces = self.interfaces
        nifs = None if ifaces is None else len(ifaces)
        times: list[float] = []
        got = 0
        while got < k:
            if p + 12 > end:
                return _short(got, p == end, times) if eof else None
            btype, blen = o.hdr(buf, p)
            if btype == _SHB:
                o = _bom(bytes(buf[p + 8:p + 12]))
                if o is None:
                    return False
                blen = o.u32(buf, p + 4)[0]
                ifaces = None
                nifs = 0
            elif btype not in KNOWN_BLOCKS:
                return False
            if blen & 3 or blen < _MIN_LEN.get(btype, 12) or blen > self.max_block:
                return False
            q = p + blen
            if q > end:
                return _short(got, False, times) if eof else None
            if o.u32(buf, q - 4)[0] != blen:
                return False
            if btype == _EPB or btype == _PB:
                if btype == _EPB:
                    iid, hi, lo, cap, _wire = o.epb(buf, p + 8)
                else:
                    iid, _drops, hi, lo, cap, _wire = o.pb(buf, p + 8)
                if cap > blen - 32 or (nifs is not None and iid >= nifs):
                    return False
                if ifaces is not None and iid < len(ifaces):
                    units, offt = ifaces[iid]
                    ts = (((hi << 32) | lo) + offt) / units
                    if not 0.0 <= ts < TS_LIMIT:
                        return False
                    if times and abs(ts - times[-1]) > MAX_STEP:
                        return False
                    times.append(ts)
            elif btype == _IDB:
                if nifs is not None:
                    nifs += 1
            elif btype == _SPB and nifs == 0:
                return False
            got += 1
            p = q
        return _fits(times)

    def times(self, buf: Buffer, p: int, end: int, k: int = SYNC_RECORDS) -> list[float]:
        """The usable timestamps of the packet blocks among the ``k`` blocks at ``p`` (interfaces
        known, blocks wholly in ``buf[:end]``; a section header block ends the list)."""
        o = _ORDERS[self.order]
        ifaces = self.interfaces or []
        out: list[float] = []
        for _ in range(k):
            if p + 12 > end:
                break
            btype, blen = o.hdr(buf, p)
            if btype == _SHB or blen < 12 or p + blen > end:
                break
            if (btype == _EPB or btype == _PB) and blen >= 32:
                if btype == _EPB:
                    iid, hi, lo, _cap, _wire = o.epb(buf, p + 8)
                else:
                    iid, _d, hi, lo, _cap, _wire = o.pb(buf, p + 8)
                if iid < len(ifaces):
                    units, offt = ifaces[iid]
                    ts = (((hi << 32) | lo) + offt) / units
                    if 0.0 <= ts < TS_LIMIT:
                        out.append(ts)
            p += blen
        return out


#: the record rules :func:`find` and :func:`resync` take
Rules = Union[PcapRules, PcapngRules]


def find(rules: Rules, buf: Buffer, start: int, end: int, eof: bool,
         k: int = SYNC_RECORDS) -> tuple[int | None, int]:
    """The first offset in ``buf[start:end]`` where a chain of ``k`` valid records starts: see
    the module docstring for the contract."""
    hdr = rules.header
    last = end - hdr  # the last offset whose header is wholly in the data
    a = start
    while a <= last:
        b = min(a + WINDOW, last + 1)
        for p in rules.candidates(buf, a, b, end).tolist():
            ok = rules.chain(buf, p, end, eof, k)
            if ok:
                return p, p
            if ok is None:
                return None, p
        a = b
    if eof:
        return None, end
    return None, max(start, last + 1)


def resync(rules: Rules, head: Buffer, read: Callable[[int], bytes],
           k: int = SYNC_RECORDS) -> tuple[int, bytes, bool]:
    """Skip damaged bytes: ``head`` starts at the offset where reading failed (that offset is
    not a record start), ``read(n)`` returns more bytes (empty at the end).  Returns ``(skipped,
    rest, eof)``: bytes from the failing offset to the next chain of ``k`` valid records, the
    bytes from there on that were read, and True when the data ended first (``rest`` empty)."""
    buf = bytes(head)
    dropped = 0
    start = 1
    eof = False
    while True:
        found, resume = find(rules, buf, start, len(buf), eof, k)
        if found is not None:
            return dropped + found, buf[found:], False
        if eof:
            return dropped + len(buf), b"", True
        more = read(CHUNK)
        if not more:
            eof = True
        buf = buf[resume:] + bytes(more)
        dropped += resume
        start = 0
