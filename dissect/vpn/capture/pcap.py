"""Classic libpcap files: both byte orders, micro- and nanosecond timestamps."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Iterator

from dissect.vpn import fast as _fast
from dissect.vpn.capture.common import (
    MAX_RECORD,
    NONPACKET,
    Bytes,
    Callback,
    Interface,
    Record,
    Stream,
    _read_exact,
    _walk_stats,
)
from dissect.vpn.capture.damage import _EMPTY, _UNKNOWN, Peeked, _pcap_tail
from dissect.vpn.capture.reader import _Reader
from dissect.vpn.capture.walk import walk_pcap
from dissect.vpn.errors import DissectError
from dissect.vpn.link import COOKED_LINKTYPES

if TYPE_CHECKING:
    from dissect.vpn.chain import PcapRules

#: link types of classic pcap files read a chunk at a time (dissect.vpn.batch.LINKTYPES)
_BATCH_LINKTYPES = frozenset((1, 113, 276))


class PcapReader(_Reader):
    """Classic libpcap format: both byte orders, micro- and nanosecond timestamps."""

    __slots__ = ("nanosecond", "snaplen", "linktype", "fcslen")

    nanosecond: bool
    snaplen: int
    #: the link type of every record (the file header's)
    linktype: int
    fcslen: int | None

    def __init__(self, stream: Stream, head: bytes, order: str, nanosecond: bool) -> None:
        self._stream = stream
        self._started = False
        self.format = "pcap"
        self.byteorder = order
        self.nanosecond = nanosecond
        self.isb = {}
        self.drops = {}
        #: pcapng ``isb_endtime``: when the capture stopped (the latest given), else None
        self.ended = None
        self._init_damage()
        rest = _read_exact(stream, 20)
        if len(rest) < 20:
            raise DissectError(f"truncated pcap file header ({4 + len(rest)} of 24 bytes)", 0)
        major, minor, _zone, _sigfigs, snaplen, network = struct.unpack(order + "HHiIII", rest)
        if major != 2:
            raise DissectError(f"unsupported pcap version {major}.{minor}", 4)
        self.version = (major, minor)
        self.snaplen = snaplen
        self.linktype = network & 0xFFFF
        self.fcslen = ((network >> 28) & 0xF) * 2 if network & 0x04000000 else None
        self.interfaces = [Interface(self.linktype, snaplen, 9 if nanosecond else 6, 0, None,
                                     self.fcslen)]
        self._buf = b""
        self._base = 24

    def chain_rules(self) -> PcapRules:
        from dissect.vpn.chain import PcapRules

        return PcapRules(self.byteorder, self.nanosecond, self.snaplen)

    def _maxcap(self) -> int:
        """Captured lengths above this are not records (damage)."""
        snap = self.snaplen
        return MAX_RECORD if not snap else min(MAX_RECORD, max(2 * snap, 262144))

    def _corrupt(self, caplen: int) -> str:
        return f"corrupt record: captured length {caplen} (snaplen {self.snaplen})"

    def _implausible(self, frac: int, caplen: int) -> str:
        return (f"corrupt record: fraction of a second {frac} (captured length {caplen}), and "
                f"no record header after it")

    def _leads(self, buf: Bytes, end: int, n: int, eof: bool, maxcap: int) -> bool | None:
        """A record whose header is implausible (fraction of a second >= 1 s: what almost any
        garbage has) is one only when a record header follows it: True / False, or None when
        the bytes that tell are not read yet."""
        if end + 16 <= n:
            caplen: int = struct.unpack_from(self.byteorder + "8xI", buf, end)[0]
            return caplen <= maxcap
        return True if eof else None

    def _check(self, buf: Bytes, pos: int, n: int, base: int, eof: bool, before: float | None,
               maxcap: int, div: int) -> tuple[str, Any]:
        """The record header at ``pos`` that the walks' cheap test stopped at (its end past the
        data, an impossible captured length, a fraction of a second past one second):
        ``("ok", None)`` a record after all; ``("need", bytes)`` read on first; ``("bad",
        reason)`` not a record: resynchronise; ``("end", position or None)`` the data ends inside
        it: go on at the position :meth:`_end` found (None: nothing more)."""
        _sec, frac, caplen, _wire = struct.unpack_from(self.byteorder + "IIII", buf, pos)
        end = pos + 16 + caplen
        if caplen > maxcap:
            return "bad", self._corrupt(caplen)
        if frac >= div and not self._leads(buf, end, n, eof, maxcap):
            if not eof and end + 16 > n:
                return "need", end + 16 - n  # the next header tells
            return "bad", self._implausible(frac, caplen)
        if end > n:
            if not eof:
                return "need", end - n
            return "end", self._end(buf, pos, n, base, before)
        return "ok", None

    def _empty(self, offset: int, before: float | None, buf: Bytes, end: int, n: int,
               count: int = 1) -> None:
        """``count`` records from ``offset`` of time 0 with no byte captured (Wireshark shows them
        as empty frames of 1970; they come from zero-filled holes, not from a capture): noted as
        damage."""
        self._note(offset, 16 * count, count, True, _EMPTY, before, self._peek(buf, end, n),
                   "records")

    def _peek(self, buf: Bytes, p: int, n: int) -> Peeked:
        """The timestamp of the packet record at ``p`` (None: not a packet record; _UNKNOWN:
        its header is not read yet)."""
        if p + 16 > n:
            return _UNKNOWN
        sec, frac, cap, wire = struct.unpack_from(self.byteorder + "IIII", buf, p)
        if not (sec or frac or cap) or cap > self._maxcap():
            return None
        div = 1000000000 if self.nanosecond else 1000000
        ts: float = (sec * div + frac) / div
        return ts

    _HEADER = 16

    def _runs_past(self, buf: Bytes, pos: int) -> str:
        caplen = struct.unpack_from(self.byteorder + "8xI", buf, pos)[0]
        return f"corrupt record: captured length {caplen} runs past the end of the data"

    def _cut_off(self, buf: Bytes, pos: int, n: int) -> tuple[int, str]:
        """``(records lost, reason)`` for the data ending inside the record at ``pos``."""
        left = n - pos
        if left < 16:
            return 0, _pcap_tail(left, 0)
        return 1, _pcap_tail(left, struct.unpack_from(self.byteorder + "8xI", buf, pos)[0])

    def records(self) -> Iterator[Record]:
        self._begin()
        if self.linktype in COOKED_LINKTYPES:
            return self._cooked_records(self._records())
        return self._records()

    def _cooked_records(self, records: Iterator[Record]) -> Iterator[Record]:
        """records(), counting the Linux cooked headers (only such files pay for it)."""
        for rec in records:
            if rec[1] != NONPACKET:
                self._cook(0, rec[1], rec[2], 0, None)
            yield rec

    def _records(self) -> Iterator[Record]:
        unpack = struct.Struct(self.byteorder + "IIII").unpack_from
        lt = self.linktype
        div = 1000000000 if self.nanosecond else 1000000
        maxcap = self._maxcap()
        buf = self._buf
        base = self._base
        pos = 0
        n = len(buf)
        need = 0  # bytes wanted beyond the buffer (at least a CHUNK is read)
        self._buf = b""
        ts = None
        eof = False
        while True:
            while pos + 16 <= n:
                sec, frac, caplen, wirelen = unpack(buf, pos)
                end = pos + 16 + caplen
                if end > n or caplen > maxcap or frac >= div:
                    what, val = self._check(buf, pos, n, base, eof, ts, maxcap, div)
                    if what == "need":
                        need = val
                        break
                    if what == "end":
                        if val is None:
                            pos = n
                            break
                        pos = val
                        continue
                    if what == "bad":  # not a record: skip to the next valid chain of records
                        skipped, buf, eof = self._recover(buf[pos:], base + pos, val, ts)
                        base += pos + skipped
                        pos = 0
                        n = len(buf)
                        if eof:
                            break
                        continue
                if caplen == 0 and sec == 0 and frac == 0:
                    self._empty(base + pos, ts, buf, end, n)
                    yield (ts or 0.0), NONPACKET, b"", 0, base + pos, -1
                    pos = end
                    continue
                ts = (sec * div + frac) / div
                yield ts, lt, buf[pos + 16:end], wirelen, base + pos, 0
                pos = end
            else:
                need = 16 - (n - pos)
            if eof:
                if pos < n:
                    self._end(buf, pos, n, base, ts)
                self._eof(base + n)
                return
            more = self._more(buf, pos, n, need)
            if more is None:
                eof = True
                continue
            buf = more
            base += pos
            pos = 0
            n = len(buf)

    def walk(self, tag: Any, on_esp: Callback, on_frame: Callback,
             on_checkpoint: Callback | None = None, every: int = 1024,
             on_batch: Callback | None = None, on_tcp: Any = None) -> None:
        """Copy-free :meth:`_Reader.walk`: ESP of the common shape is recognised where it lies
        in the read buffer, so no bytes object or tuple is made for it.

        With ``on_batch`` (Ethernet and Linux cooked captures): a chunk of records at a time, ESP
        of the common shapes recognised with array operations (:mod:`dissect.vpn.batch`) and
        handed over as :class:`~dissect.vpn.batch.EspBatch` objects — ``on_batch(tag, batch)`` —
        instead of one ``on_esp`` call per packet.  Every other record goes to ``on_frame`` as
        without it, in file order; ESP pending from the same chunk is delivered first unless the
        record is inert for ESP (:func:`dissect.vpn.batch.classify`), so each SA sees its packets
        in order.  With ``on_tcp = (ports, fn)`` too, runs of records that are IPv4 TCP of the
        common shape (:func:`dissect.vpn.batch.plain_tcp`) on none of ``ports`` and whose
        payload cannot start a VPN stream go to ``fn(tag, linktype, ifaces, buf, run)``
        instead, their TCP headers decoded: ``run`` maps ``number``, ``ts``, ``src``, ``dst``,
        ``seq``, ``ack``, ``flags``, ``frame``, ``poff`` (the last two offsets: the frame in
        ``buf``, the payload in the frame; the TCP header is at frame + the int ``l4``) each to
        a list, and ``arrays`` to numpy arrays of ``src``, ``dst`` (``uint32``), ``sport``,
        ``dport``, ``poff``, ``end`` (the IP payload's end in the frame) and for Linux cooked
        frames ``ifindex``, ``hatype``, ``pkttype`` (``buf`` is only valid during the call).  ``fn``
        returns True when it took the run as plaintext (no ESP event can come of it: ESP
        pending from the chunk may wait), False to have its records go to ``on_frame``.
        """
        if on_batch is not None and self.linktype in _BATCH_LINKTYPES:
            walk_pcap(self, tag, on_batch, on_frame, on_checkpoint, every, on_tcp)
            return
        self._begin()
        mask = every - 1 if on_checkpoint is not None else -1
        checkpoint: Any = on_checkpoint  # None only with mask -1: never called then
        unpack = struct.Struct(self.byteorder + "IIII").unpack_from
        esp_at = _fast.esp_at
        esp_cooked = _fast.esp_cooked_at
        lt = self.linktype
        eth = lt == 1
        div = 1000000000 if self.nanosecond else 1000000
        maxcap = self._maxcap()
        buf = self._buf
        base = self._base
        pos = 0
        n = len(buf)
        need = 0  # bytes wanted beyond the buffer (at least a CHUNK is read)
        self._buf = b""
        number = 0
        empties = 0
        nbytes = 0
        trunc = 0
        tmax = self._floor()
        tmin = float("inf")
        disorder = 0
        first = None
        first_n = 0
        back = 0.0  # the largest step back in time, its frame, the time it steps back from
        back_n = back_from = tmin_n = None
        ts = None
        eof = False
        cooked = lt in COOKED_LINKTYPES
        try:
            while True:
                while pos + 16 <= n:
                    sec, frac, caplen, wirelen = unpack(buf, pos)
                    end = pos + 16 + caplen
                    if end > n or caplen > maxcap or frac >= div:
                        what, val = self._check(buf, pos, n, base, eof, ts, maxcap, div)
                        if what == "need":
                            need = val
                            break
                        if what == "end":
                            if val is None:
                                pos = n
                                break
                            pos = val
                            continue
                        if what == "bad":
                            skipped, buf, eof = self._recover(buf[pos:], base + pos, val, ts)
                            base += pos + skipped
                            pos = 0
                            n = len(buf)
                            if eof:
                                break
                            continue
                    number += 1
                    if not number & mask:
                        checkpoint(number, base + pos)
                    if caplen == 0 and sec == 0 and frac == 0:
                        self._empty(base + pos, ts, buf, end, n)
                        empties += 1
                        pos = end
                        continue
                    nbytes += caplen
                    ts = (sec * div + frac) / div
                    if first is None:
                        first = ts
                        first_n = number
                    if ts >= tmax:
                        tmax = ts
                    else:
                        disorder += 1
                        if tmax - ts > back:
                            back = tmax - ts
                            back_n = number
                            back_from = tmax
                        if ts < tmin:
                            tmin = ts
                            tmin_n = number
                    if wirelen > caplen:
                        trunc += 1
                    if eth:
                        r = esp_at(buf, pos + 16, end)
                        if r is not None:
                            on_esp((tag, number), ts, 4, r[0], r[1], r[2], r[3], r[4], r[5],
                                   r[6] + wirelen - caplen if wirelen > caplen else r[6])
                            pos = end
                            continue
                    elif cooked:
                        self._cook(0, lt, buf, pos + 16, end)
                        r = esp_cooked(buf, pos + 16, end, lt)
                        if r is not None:
                            on_esp((tag, number), ts, 4, r[0], r[1], r[2], r[3], r[4], r[5],
                                   r[6] + wirelen - caplen if wirelen > caplen else r[6])
                            pos = end
                            continue
                    on_frame(tag, number, ts, lt, buf[pos + 16:end], wirelen, base + pos, 0)
                    pos = end
                else:
                    need = 16 - (n - pos)
                if eof:
                    if pos < n:
                        self._end(buf, pos, n, base, ts)
                    self._eof(base + n)
                    return
                more = self._more(buf, pos, n, need)
                if more is None:
                    eof = True
                    continue
                buf = more
                base += pos
                pos = 0
                n = len(buf)
        finally:
            frames = number - empties
            self.walk_stats = _walk_stats(
                number, nbytes, trunc, first, tmin, tmax, disorder, {lt: frames} if frames else {},
                (back, back_n, back_from, tmin_n if first is not None and tmin < first else first_n))
