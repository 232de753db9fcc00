"""Where frames come from: capture files, gzip, standard input, several files merged by time.

``open_source(path, index)`` opens a path (``-`` is standard input), sees through gzip by its
magic (also on a pipe: nothing is ever seeked), and hands the stream to
:func:`dissect.vpn.capture.open_capture`.  ``Source.frames()`` yields::

    Frame = (file_idx, number, ts, linktype, data, wirelen, offset)

``number`` is 1-based over all pcapng sections, exactly Wireshark's frame number (pcapng blocks
that Wireshark numbers although they hold no packet - custom, systemd journal and sysdig blocks -
use up a number but are not yielded).  ``merge_frames`` merges several sources by
``(ts, file_idx, number)``.

A file that cannot be opened or is not a capture raises :class:`SourceError` (one line:
``path: reason``).  Damage later in the file (garbage, holes, impossible records: the reader
resynchronises on the next valid records; a truncated last record, a cut-short .gz, an I/O error
at the end) is listed in ``Source.damage`` and, one line each, in ``Source.warnings``.
"""

from __future__ import annotations

import heapq
import os
import sys
import zlib
from collections import Counter, deque
from operator import itemgetter
from typing import NamedTuple

from dissect.vpn.capture import CHUNK, NONPACKET, RECORD_HEAD, Damage, open_capture, record_data
from dissect.vpn.errors import DissectError

__all__ = ["Frame", "Source", "SourceError", "merge_frames", "open_source", "open_sources"]


def _read_error(exc: OSError) -> str:
    """The reason of a stream that a read error ended (the system's words in it)."""
    err = exc.strerror or exc
    return f"read error: {err}"


class Frame(NamedTuple):
    """The fields of a frame.  ``frames()`` yields plain tuples in this order (hot path); this
    class is for type hints, ``Frame._fields`` and building frames by hand in tests."""

    file_idx: int
    number: int
    ts: float
    linktype: int
    data: bytes
    wirelen: int
    offset: int


_GZIP_MAGIC = b"\x1f\x8b"


class SourceError(Exception):
    """A capture source that cannot be used; ``str()`` is one line ``path: reason``."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class _Prefixed:
    """A raw stream with already-read bytes put back in front; read errors end the stream."""

    __slots__ = ("_head", "_read", "_readinto", "error")

    def __init__(self, head: bytes, raw):
        self._head = head
        # read1: on a pipe, hand out what has arrived instead of waiting for a full chunk
        self._read = getattr(raw, "read1", raw.read)
        # readinto: the chunked reader fills one buffer again and again instead of allocating
        # (and page-faulting) a new one per chunk
        self._readinto = getattr(raw, "readinto1", None) or getattr(raw, "readinto", None)
        self.error = None

    def readinto(self, b) -> int:
        """Fill the writable buffer ``b`` as far as one read goes; 0 at the end."""
        head = self._head
        if head or self._readinto is None:
            data = self.read(len(b))
            b[:len(data)] = data
            return len(data)
        if self.error is not None:
            return 0
        try:
            return self._readinto(b) or 0
        except OSError as exc:
            self.error = _read_error(exc)
            return 0

    def read(self, n: int = -1) -> bytes:
        head = self._head
        if head:
            if 0 <= n < len(head):
                self._head = head[n:]
                return head[:n]
            self._head = b""
            return head
        if self.error is not None:
            return b""
        try:
            data = self._read(n)
        except OSError as exc:
            self.error = _read_error(exc)
            return b""
        return data or b""


#: which inflate decompresses gzip captures: ``"isal"`` (Intel's ISA-L through python-isal, the
#: ``fast`` extra: 1.6x zlib's speed on the bench mix, bench/RESULTS.md, issue 19) when it is
#: installed, else ``"zlib"``; the environment variable ``PCAPVPN_INFLATE=zlib`` (or a test
#: setting this) forces zlib.  Both give the same bytes, so the same report.
INFLATE = os.environ.get("PCAPVPN_INFLATE", "isal")


def inflater() -> tuple:
    """``(decompressobj, error)`` of the inflate :data:`INFLATE` names (zlib when ISA-L is not
    installed): ``decompressobj(16 + 15)`` reads one gzip member, ``error`` is what it raises on
    corrupt data.  The one place that picks how gzip captures are decompressed."""
    if INFLATE == "isal":
        try:
            from isal import isal_zlib
        except ImportError:
            pass
        else:
            return isal_zlib.decompressobj, isal_zlib.error
    return zlib.decompressobj, zlib.error


#: how a gzip stream is fed to the inflate, so that what a corrupt or cut-short one yields (an
#: inflate loses the output of the call that fails) and the offset its error names do not depend
#: on how the reads happened to arrive (a pipe's vary) or what the reader asked for: compressed
#: bytes in steps at fixed offsets of the stream (256 KiB: 64 KiB cost ISA-L about 10 % more on
#: the bench mix), decompressed in calls whose output doubles from ``INFLATE_FIRST`` bytes at
#: the start of each member to ``CHUNK`` (a small capture cut short or corrupt still shows its
#: first records; a big one loses at most a chunk before the damage)
INFLATE_STEP = 1 << 18
INFLATE_FIRST = 1 << 10


class _Gunzip:
    """Streaming gzip decompression (multi-member, zero padding allowed) over a raw stream.

    Unlike ``gzip.GzipFile`` it hands out the bytes decompressed before a cut-short or corrupt
    point (all but the output of the inflate call that met it: see ``INFLATE_STEP``), and
    reports the problem in ``error`` instead of raising, so a capture that was still being
    written when it was copied is read as far as it goes.  The inflate is :func:`inflater`'s.
    """

    __slots__ = ("_read", "_src", "_d", "_between", "_eof", "error", "compressed_read",
                 "_new", "_bad", "_fed", "_out", "_have", "_max", "_full")

    def __init__(self, head: bytes, raw):
        self._read = getattr(raw, "read1", raw.read)
        self._src = head  # compressed bytes read and not fed yet
        self._new, self._bad = inflater()
        self._d = self._new(16 + zlib.MAX_WBITS)
        self._between = False  # True after a member ended: only padding or a new member may follow
        self._eof = False
        self.error = None
        self.compressed_read = len(head)
        self._fed = 0  # compressed bytes fed to the inflate (what it left unconsumed included)
        self._out: deque = deque()  # decompressed, not handed out yet
        self._have = 0
        self._max = INFLATE_FIRST  # the output of the next call, at most
        self._full = False  # the last call gave all it was allowed: it may hold more (ISA-L)

    def _more(self) -> bytes:
        try:
            data = self._read(CHUNK)
        except OSError as exc:
            self.error = _read_error(exc)
            return b""
        if data:
            self.compressed_read += len(data)
        return data or b""

    def _step(self) -> None:
        """One inflate call: on what it left unconsumed, on nothing (to drain what it holds),
        or on the compressed bytes up to the next multiple of ``INFLATE_STEP``."""
        d = self._d
        src = d.unconsumed_tail
        if not src and not self._full:
            src = self._src
            if not src:
                src = self._more()
                if not src:
                    self._eof = True
                    if not self._between and self.error is None:
                        self.error = ("gzip data ends before its end-of-stream marker "
                                      "(file cut short?)")
                    return
            if self._between:
                kept = src.lstrip(b"\x00")
                self._fed += len(src) - len(kept)
                src = kept
                if not src:
                    self._src = b""
                    return
                self._between = False
            k = INFLATE_STEP - self._fed % INFLATE_STEP
            if len(src) < k:  # the whole step (a pipe's reads are shorter, and vary)
                parts = [src]
                have = len(src)
                while have < k:
                    more = self._more()
                    if not more:
                        break
                    parts.append(more)
                    have += len(more)
                src = b"".join(parts)
            src, self._src = src[:k], src[k:]
            self._fed += len(src)
        try:
            data = d.decompress(src, self._max)
        except self._bad as exc:
            self._eof = True
            compressed_read = self._fed - len(src)
            self.error = f"gzip data corrupt after {compressed_read} bytes ({exc})"
            return
        self._full = len(data) == self._max
        if self._max < CHUNK:
            self._max <<= 1
        if data:
            self._out.append(data)
            self._have += len(data)
        if d.eof and not self._full:
            rest = d.unused_data
            self._fed -= len(rest)
            self._src = rest + self._src
            self._d = self._new(16 + zlib.MAX_WBITS)
            self._max = INFLATE_FIRST
            self._between = True

    def read(self, n: int = -1) -> bytes:
        while (n is None or n < 0 or self._have < n) and not self._eof:
            self._step()
        out = self._out
        if n is None or n < 0 or n >= self._have:
            data = b"".join(out)
            out.clear()
            self._have = 0
            return data
        parts = []
        left = n
        while left:
            p = out.popleft()
            if len(p) > left:
                parts.append(p[:left])
                out.appendleft(p[left:])
                break
            parts.append(p)
            left -= len(p)
        self._have -= n
        return b"".join(parts)


def _read_upto(raw, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = raw.read(n - len(data))
        if not more:
            break
        data += more
    return data


class Source:
    """One opened capture.

    Attributes: ``name`` (the path as given), ``index`` (file index in frames), ``format``
    ('pcap' / 'pcapng'), ``compressed`` (gzip), ``interfaces`` and ``isb`` (per global interface
    index, the last Interface Statistics Block counters), ``drops`` (per interface, packets the
    capture reported lost in PB drop counts / ``epb_dropcount``), ``warnings`` (one-line strings).

    Counters, final once ``frames()`` is exhausted or closed: ``frame_count``, ``byte_count``
    (captured bytes), ``first_ts`` / ``last_ts`` (earliest / latest timestamp, ``None`` without
    frames), ``out_of_order`` (frames earlier than a frame before them), ``step_back`` (seconds:
    the largest step back in time, how much earlier a frame is than the latest frame before it;
    0.0 in time order), ``step_frame`` (the frame number of that frame), ``step_from_ts`` (the
    latest time before it), ``step_from_frame`` (the frame of that time, when known: the frame
    number of the latest frame before it; found when the file is read in time order),
    ``linktypes`` (Counter),
    ``damage`` (:class:`dissect.vpn.capture.Damage` list, file order), ``damage_more`` (ranges
    beyond those kept: count, bytes, records, seconds), ``size`` (bytes of the capture data read,
    after decompression).
    """

    __slots__ = ("name", "index", "format", "compressed", "_reader", "_raw", "_stream",
                 "_close_raw", "_started", "frame_count", "byte_count", "first_ts", "last_ts",
                 "out_of_order", "linktypes", "checkpoints", "spool_path", "damage",
                 "step_back", "step_frame", "step_from_ts", "step_from_frame", "reorder",
                 "reordered")

    def __init__(self, name, index, reader, raw, stream, close_raw, compressed):
        self.name = name
        self.index = index
        self.format = reader.format
        self.compressed = compressed
        self._reader = reader
        self._raw = raw
        self._stream = stream
        self._close_raw = close_raw
        self._started = False
        self.frame_count = 0
        self.byte_count = 0
        self.first_ts = None
        self.last_ts = None
        self.out_of_order = 0
        self.step_back = 0.0
        self.step_frame = None
        self.step_from_ts = None
        self.step_from_frame = None
        #: read in time order (:meth:`time_ordered`) by the analysis: at most this many records
        #: indexed (0: file order; the analysis sets it)
        self.reorder = 0
        #: True once the frames were handed over in time order
        self.reordered = False
        self.linktypes = Counter()
        #: sparse offset index for :meth:`fetch`: ``(number, offset, section, interfaces of
        #: that section declared so far)`` of every INDEX_EVERY-th record
        self.checkpoints = []
        #: standard input copied to a temporary file (open_source(..., spool=True)), else None
        self.spool_path = None
        #: damaged ranges (final once the frames have been read)
        self.damage = []

    def __repr__(self):
        gz = " gzip" if self.compressed else ""
        return f"<Source {self.index} {self.name!r} {self.format}{gz}>"

    @property
    def interfaces(self):
        return self._reader.interfaces

    @property
    def isb(self):
        return self._reader.isb

    @property
    def drops(self):
        return self._reader.drops

    @property
    def ended(self):
        """When the capture stopped, as the file says (pcapng ``isb_endtime``), else None."""
        return getattr(self._reader, "ended", None)

    @property
    def reader(self):
        """The underlying :mod:`dissect.vpn.capture` reader."""
        return self._reader

    @property
    def damage_more(self):
        return self._reader.damage_more

    @property
    def interface_frames(self) -> dict:
        """Frames per interface (global index into ``interfaces``), final once the frames have
        been read; classic pcap has one interface."""
        counts = getattr(self._reader, "iface_frames", None)
        if counts is None:
            return {0: self.frame_count} if self.frame_count else {}
        return counts

    @property
    def cooked(self) -> dict:
        """Frames of Linux cooked interfaces (``tcpdump -i any``: LINUX_SLL / LINUX_SLL2) by
        ``(interface, SLL2 interface index or None, packet type)``; see
        :func:`dissect.vpn.link.cooked_info` and ``PACKET_TYPES``."""
        return self._reader.cooked

    @property
    def size(self):
        return self._reader.size

    def _finish_damage(self):
        """The reader's damage, and a gzip stream cut short / a read error as damage at the end
        (length 0: how much is missing cannot be known)."""
        rd = self._reader
        out = list(rd.damage)
        err = self._stream.error
        if err:
            where = "gzip" if self.compressed else "input"
            end = rd.size
            if end is None:
                end = out[-1].offset + out[-1].length if out else 0
            d = Damage(end, 0, 0, False, f"{where}: {err}", self.last_ts, None, "tail")
            d.trailing = True
            out.append(d)
        self.damage = out

    @property
    def warnings(self) -> list[str]:
        out = []
        err = self._stream.error
        if err:
            where = "gzip" if self.compressed else "input"
            out.append(f"{self.name}: {where}: {err}")
        out.extend(f"{self.name}: offset {off}: {reason}" for off, reason in self._reader.warnings)
        return out

    def frames(self, interfaces: bool = False):
        """Yield ``(file_idx, number, ts, linktype, data, wirelen, offset)`` in file order.
        ``interfaces``: with the frame's interface appended, ``(..., offset, iface)``: the global
        index into ``Source.interfaces`` (a pcapng IDB, counted over all sections; 0 for classic
        pcap); a Linux cooked frame's own interface index and packet type are in its header
        (:func:`dissect.vpn.link.cooked_info`)."""
        if self._started:
            raise RuntimeError(f"{self.name}: frames() can be iterated only once")
        self._started = True
        return self._frames(interfaces)

    def _frames(self, interfaces=False):
        idx = self.index
        number = 0
        nbytes = 0
        cur_lt = None
        run = 0
        counts = self.linktypes
        first = None
        tmax = float("-inf")
        tmin = float("inf")
        disorder = 0
        back = 0.0
        back_n = back_from = None
        ckpts = self.checkpoints
        reader = self._reader
        try:
            for ts, lt, data, wirelen, offset, iface in reader.records():
                number += 1
                if not number & INDEX_MASK:
                    ckpts.append(_checkpoint(reader, number, offset))
                if lt == cur_lt:
                    run += 1
                else:
                    if lt == NONPACKET:
                        continue
                    if run:
                        counts[cur_lt] += run
                    cur_lt = lt
                    run = 1
                    if first is None:
                        first = ts
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
                nbytes += len(data)
                if interfaces:
                    yield idx, number, ts, lt, data, wirelen, offset, iface
                else:
                    yield idx, number, ts, lt, data, wirelen, offset
        finally:
            if run:
                counts[cur_lt] += run
            self.frame_count = sum(counts.values())
            self.byte_count = nbytes
            self.out_of_order = disorder
            self.step_back, self.step_frame, self.step_from_ts = back, back_n, back_from
            if first is not None:
                self.first_ts = min(first, tmin)
                self.last_ts = tmax
            self._finish_damage()
            self.close()

    def analysis_frames(self, interfaces: bool = False):
        """:meth:`frames`, or :meth:`time_ordered` when the analysis asked for time order
        (``reorder``)."""
        if self.reorder:
            return self.time_ordered(interfaces)
        return self.frames(interfaces)

    def time_ordered(self, interfaces: bool = False):
        """The frames as :meth:`frames` yields them, but in time order, ``(ts, number)``: what
        ``reordercap`` writes, each frame keeping its own number in the file.  The file is read
        once in file order (every counter as with :meth:`frames`; ``step_from_frame`` found),
        an index of its packet records (time, number, offset, link type, interface, lengths: 44
        bytes each) is sorted, and the records are read again at their offsets (a gzip file: in a
        decompressed temporary copy, removed after).  A file on disk only, not standard input
        (:func:`file_order_why`)."""
        from array import array

        import numpy as np

        if self.name == "-":
            raise SourceError(self.name, "only a capture file on disk can be read in time order")
        t, num, off, itf, cap, wire, lts = (array("d"), array("q"), array("q"), array("i"),
                                            array("q"), array("q"), array("i"))
        for _i, n, ts, lt, data, wirelen, offset, iface in self.frames(interfaces=True):
            t.append(ts)
            lts.append(lt)
            num.append(n)
            off.append(offset)
            itf.append(iface)
            cap.append(len(data))
            wire.append(wirelen)
        ts_a, num_a = np.frombuffer(t, dtype=np.float64), np.frombuffer(num, dtype=np.int64)
        if self.step_frame is not None:
            # the latest frame before the one that steps back furthest: the frame it steps
            # back from (the nearest one of that time)
            at = np.flatnonzero((num_a < self.step_frame) & (ts_a == self.step_from_ts))
            self.step_from_frame = int(num_a[at[-1]]) if len(at) else None
        order = np.lexsort((num_a, ts_a)).tolist()
        self.reordered = True
        path = _gunzipped(self.name) if self.compressed else self.name
        try:
            yield from self._records_at(path, order, t, num, off, itf, cap, wire, lts,
                                        interfaces)
        finally:
            if path != self.name:
                import os

                os.unlink(path)

    def _records_at(self, path, order, t, num, off, itf, cap, wire, lts, interfaces):
        """The records of the index (``order``: positions in its arrays) read at their offsets in
        ``path``, as frame tuples."""
        fmt = self.format
        head = RECORD_HEAD[fmt]
        idx = self.index
        with open(path, "rb", buffering=1 << 16) as f:
            seek, read = f.seek, f.read
            for i in order:
                offset, caplen, gi = off[i], cap[i], itf[i]
                seek(offset)
                data = record_data(fmt, read(head + caplen), caplen)
                if len(data) != caplen:
                    raise SourceError(self.name, f"offset {offset}: the file changed while it "
                                                 f"was read")
                if interfaces:
                    yield idx, num[i], t[i], lts[i], data, wire[i], offset, gi
                else:
                    yield idx, num[i], t[i], lts[i], data, wire[i], offset

    def walk(self, on_esp, on_frame, on_progress=None, on_batch=None, on_tcp=None):
        """Push this file's frames (the single-file analysis hot path): ESP of the common shape to
        ``on_esp(ref, ts, 4, src, dst, sport, dport, spi, seq, esp_len)`` with no frame tuple
        (:meth:`dissect.vpn.capture.reader._Reader.walk`), every other frame to ``on_frame(file_idx,
        number, ts, linktype, data, wirelen, offset, iface)`` (``iface``: the global interface
        index into :attr:`interfaces`).  Counters and checkpoints as with
        :meth:`frames`; ``on_progress(offset)`` is called at every checkpoint.  With ``on_batch``
        the reader may hand ESP over a chunk at a time instead (``on_batch(file_idx, batch)``,
        :class:`dissect.vpn.batch.EspBatch`), and IPv4 TCP with its header decoded to ``on_tcp``
        (:meth:`dissect.vpn.capture.PcapReader.walk`)."""
        if self._started:
            raise RuntimeError(f"{self.name}: frames can be read only once")
        self._started = True
        reader = self._reader
        ckpts = self.checkpoints

        def checkpoint(number, offset):
            ckpts.append(_checkpoint(reader, number, offset))
            if on_progress is not None:
                on_progress(offset)

        try:
            reader.walk(self.index, on_esp, on_frame, checkpoint, INDEX_EVERY, on_batch, on_tcp)
        finally:
            st = getattr(reader, "walk_stats", None)
            if st is not None:
                for lt, c in st["linktypes"].items():
                    self.linktypes[lt] += c
                self.frame_count = st["frames"]
                self.byte_count = st["bytes"]
                self.out_of_order = st["out_of_order"]
                self.step_back = st.get("step_back", 0.0)
                self.step_frame = st.get("step_frame")
                self.step_from_ts = st.get("step_from_ts")
                self.first_ts = st["first_ts"]
                self.last_ts = st["last_ts"]
            self._finish_damage()
            self.close()

    def fetch(self, numbers, interfaces=False):
        """Yield the frames ``numbers`` (Wireshark numbers of this file) again, in file order, as
        ``(file_idx, number, ts, linktype, data, wirelen, offset)``, once ``frames()`` has run:
        seek to the nearest checkpoint and walk from there (a gzip file is read again from its
        start; standard input only when it was spooled)."""
        # ``interfaces``: each frame with its global interface index appended
        want = sorted(set(numbers))
        if not want:
            return
        path = self.name
        if path == "-":
            if self.spool_path is None:
                raise SourceError(path, "standard input was not kept: frames cannot be read again")
            path = self.spool_path
        if self.compressed:
            src = open_source(path, self.index)
            yield from _pick(src.frames(interfaces=interfaces), want)
            return
        groups: dict = {}
        cks = self.checkpoints
        import bisect

        keys = [c[0] for c in cks]
        for n in want:
            i = bisect.bisect_right(keys, n) - 1
            groups.setdefault(i, []).append(n)
        with open(path, "rb") as f:
            for i, ns in sorted(groups.items()):
                yield from self._walk(f, cks[i] if i >= 0 else None, ns, interfaces)

    def _walk(self, f, ck, want, interfaces=False):
        """Frames ``want`` read from checkpoint ``ck`` (None: from the start of the file)."""
        prefix = None
        if ck is not None:
            first, offset, section, nifs = ck
            prefix = self._prefix(f, section, nifs)
        if prefix is None:  # before the first checkpoint, or interfaces declared late: from 0
            f.seek(0)
            reader = open_capture(_Prefixed(b"", f))
            first = 1
        else:
            f.seek(offset)
            reader = open_capture(_Prefixed(prefix, f))
        idx = self.index
        last = want[-1]
        wanted = set(want)
        number = first - 1
        # a reader started at a checkpoint numbers its section's interfaces from 0
        base = 0 if prefix is None or ck is None else sum(
            1 for itf in self.interfaces if getattr(itf, "section", 0) < ck[2])
        for ts, lt, data, wirelen, off, iface in reader.records():
            number += 1
            if number in wanted and lt != NONPACKET:
                if interfaces:
                    yield idx, number, ts, lt, data, wirelen, off, iface + base
                else:
                    yield idx, number, ts, lt, data, wirelen, off
            if number >= last:
                return

    def _prefix(self, f, section, nifs):
        """The header bytes to put in front of a checkpoint's record: the pcap file header, or the
        pcapng section's SHB and IDBs when they all precede its first record."""
        rd = self._reader
        if rd.format == "pcap":
            f.seek(0)
            return f.read(24)
        start = rd.sections[section]["offset"]
        f.seek(start)
        probe = open_capture(_Prefixed(b"", f))
        first_off = None
        for rec in probe.records():
            first_off = rec[4]
            break
        if first_off is None or len(probe.interfaces) < nifs:
            return None
        f.seek(start)
        return _read_upto(f, first_off)

    def discard_spool(self):
        import os

        if self.spool_path:
            try:
                os.unlink(self.spool_path)
            except OSError:
                pass
            self.spool_path = None

    def close(self):
        if self._close_raw and self._raw is not None:
            self._raw.close()
        self._raw = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_source(path: str, index: int = 0, spool: bool = False) -> Source:
    """Open a capture path (``-`` = standard input), gzip or not; raise :class:`SourceError`.

    ``spool``: copy standard input to a temporary file as it is read, so that frames can be
    fetched again (``Source.spool_path``; ``Source.discard_spool()`` removes it)."""
    raw, stream, close_raw, compressed, spool_path = open_stream(path, spool)
    try:
        reader = open_reader(path, stream, compressed)
    except BaseException:
        if close_raw:
            raw.close()
        raise
    src = Source(path, index, reader, raw, stream, close_raw, compressed)
    src.spool_path = spool_path
    return src


def open_stream(path: str, spool: bool = False) -> tuple:
    """The capture data of ``path`` (``-`` = standard input) as a stream that is never seeked:
    ``(raw, stream, close_raw, compressed, spool_path)``; ``stream`` sees through gzip (by its
    magic) and keeps a read error in ``stream.error``.  Raises :class:`SourceError`."""
    spool_path = None
    if path == "-":
        raw = getattr(sys.stdin, "buffer", None)
        if raw is None:
            raise SourceError(path, "no standard input to read")
        try:
            if raw.isatty():
                raise SourceError(path, "standard input is a terminal; pipe a capture into it")
        except (AttributeError, ValueError):
            pass
        close_raw = False
        _widen_pipe(raw)
        if spool:
            import tempfile

            fd, spool_path = tempfile.mkstemp(prefix="pcapvpn-stdin-", suffix=".cap")
            raw = _Tee(raw, open(fd, "wb"))  # noqa: SIM115 - closed with the source
            close_raw = True
    else:
        try:
            raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by Source
        except OSError as exc:
            raise SourceError(path, (exc.strerror or str(exc)).lower()) from None
        close_raw = True
    try:
        try:
            head = _read_upto(raw, 2)
        except OSError as exc:
            raise SourceError(path, f"read error: {(exc.strerror or str(exc)).lower()}") from None
    except BaseException:
        if close_raw:
            raw.close()
        raise
    compressed = head == _GZIP_MAGIC
    stream = _Gunzip(head, raw) if compressed else _Prefixed(head, raw)
    return raw, stream, close_raw, compressed, spool_path


#: the pipe buffer asked for on standard input (Linux F_SETPIPE_SZ; 1 MiB is what an unprivileged
#: process may ask, /proc/sys/fs/pipe-max-size): a read takes up to this much at once instead of
#: the default 64 KiB.  Measured (`cat` of the bench mix's 693 MB into a 1 MiB read loop, load 3):
#: 0.29 CPU s with 64 KiB, 0.14 with 1 MiB
PIPE_SIZE = 1 << 20


def _widen_pipe(raw) -> None:
    """Standard input, when it is a pipe, given a buffer of ``PIPE_SIZE`` (as far as allowed)."""
    import fcntl
    import stat

    try:
        fd = raw.fileno()
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except (OSError, AttributeError, ValueError):  # not a pipe of this kernel's, or not a file
        pass


def open_reader(path: str, stream, compressed: bool):
    """:func:`dissect.vpn.capture.open_capture` of ``stream`` (from :func:`open_stream`), its
    errors as :class:`SourceError`."""
    try:
        return open_capture(stream)
    except DissectError as exc:
        if stream.error:
            raise SourceError(path, stream.error) from None
        reason = exc.reason
        if compressed:
            reason = f"gzip-compressed, but inside: {reason}"
        raise SourceError(path, reason) from None


INDEX_EVERY = 1024
INDEX_MASK = INDEX_EVERY - 1


def _checkpoint(reader, number, offset):
    sections = getattr(reader, "sections", None)
    if not sections:
        return (number, offset, 0, len(reader.interfaces))
    sec = len(sections) - 1
    return (number, offset, sec, sum(1 for i in reader.interfaces if i.section == sec))


def file_order_why(src, limit: int) -> str | None:
    """Why a source that is not in time order cannot be read in time order
    (:meth:`Source.time_ordered`) with at most ``limit`` packet records indexed
    (``Limits.reorder_max_records``): ``"stdin"`` (standard input cannot be read again),
    ``"limit"`` (more frames than ``limit``); None: it can."""
    if src.name == "-":
        return "stdin"
    if src.frame_count > limit:
        return "limit"
    return None


def _gunzipped(path: str) -> str:
    """A temporary file holding the decompressed bytes of the gzip file ``path`` (as far as they
    decompress: what the reader read); the caller removes it."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="pcapvpn-ordered-", suffix=".cap")
    try:
        with open(path, "rb") as raw, os.fdopen(fd, "wb") as out:
            g = _Gunzip(b"", raw)
            while True:
                piece = g.read(CHUNK)
                if not piece:
                    break
                out.write(piece)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _pick(frames, want):
    wanted = set(want)
    last = want[-1]
    for fr in frames:
        if fr[1] in wanted:
            yield fr
        if fr[1] >= last:
            break


class _Tee:
    """Standard input copied to a spool file as it is read."""

    __slots__ = ("_raw", "_out")

    def __init__(self, raw, out):
        self._raw = raw
        self._out = out

    def read(self, n=-1):
        data = self._raw.read(n)
        if data:
            self._out.write(data)
        return data

    def read1(self, n=-1):
        read1 = getattr(self._raw, "read1", self._raw.read)
        data = read1(n)
        if data:
            self._out.write(data)
        return data

    def close(self):
        self._out.close()


def open_sources(paths) -> list[Source]:
    """Open several paths with indices 0, 1, ...; on an error close those already opened."""
    out = []
    try:
        for i, path in enumerate(paths):
            out.append(open_source(path, i))
    except BaseException:
        for src in out:
            src.close()
        raise
    return out


_MERGE_KEY = itemgetter(2, 0, 1)


def merge_frames(sources, interfaces: bool = False):
    """Frames of several sources merged by (ts, file_idx, number); one source: its frames as is.
    ``interfaces``: each frame with its interface appended (:meth:`Source.frames`)."""
    sources = list(sources)
    if len(sources) == 1:
        return sources[0].analysis_frames(interfaces)
    return heapq.merge(*(s.analysis_frames(interfaces) for s in sources), key=_MERGE_KEY)
