"""A gzip file or standard input read by worker processes (``analyze --jobs N``, issue 19).

A stream has no byte offsets to hand out: the parent reads it (decompressing a gzip file, or gzip
on standard input, as a single pass does: :func:`pcapvpn.sources.open_stream`) and cuts what it
read at record boundaries (:class:`_Cutter`: :func:`dissect.vpn.chain.find` with ``CUT_RECORDS``
valid records in a row, as :func:`~pcapvpn.parallel.slicing.cut_points` cuts a file), both in a
thread of its own (:class:`_Reading`: zlib releases the GIL, so the decompression runs beside the
replay), and hands each worker a slice as its **bytes** (:attr:`Slice.data`: a file of their own
in shared memory, ``SPOOL_DIR``, not the pool's pipe).  The worker reads them with the same
reader, walk and recording as a file's slice (:func:`~pcapvpn.parallel.worker.read_slice`); the
parent replays the recordings in order (:class:`_StreamReplay`, the file's
:class:`~pcapvpn.parallel.replay._Replay` with another walk), with Wireshark's frame numbers (the
two-phase numbering) and, in front of every slice but the first, the stream's header (the pcap
file header, or the pcapng section header and the interface blocks before the first record: the
pre-scan of the stream's head).

Memory is bounded: at most ``AHEAD`` slices per worker are in flight, two more are read ahead by
the reading thread, and the parent holds two (the next to replay and the one after it); a slice
is ``STREAM_SLICE`` bytes plus the records up to the next boundary.  The parent's main thread
waits only for the oldest result (the pool's own threads send the tasks and take the results),
so the parent never waits on a worker that waits on it.

A stream cannot be read again, so a slice that does not line up with the single pass (a misfit
of :func:`~pcapvpn.parallel.worker._misfit`, a failed worker, a pcapng section or interface block
inside a slice, a plaintext run the decoder might refuse, a capture whose frames would mostly
travel as bytes) cannot make the analysis start again as one pass.  Instead the parent reads *the
rest of the stream itself* (:meth:`_StreamReplay._tail`), from the start of the first slice it
cannot replay.  A slice is replayed only once the slice after it has come back with a start that
does not depend on the slice before (:attr:`pcapvpn.parallel.worker.Part.start_ok`: no damage
before its first packet, no block taking the time of the block before; a look-ahead of one
slice).  So when slice ``k`` is odd (or the start of ``k + 1`` is, or ``k + 1`` is unknown: a
failed worker, the rest of the stream), the slices before ``k`` were replayed whole, the cut
before ``k`` is a good one from both sides, and the single pass's reader stands at the start of
``k`` exactly as a fresh reader of the stream's header followed by the bytes from ``k`` on (the
premise of every cut, :mod:`pcapvpn.parallel`).  The plaintext runs are judged before a slice is
replayed too (:func:`_may_refuse`): a run the decoder refused half-way through a slice would need
the frames' bytes there.  The parent's reader of the rest reads the bytes it still holds (the
slices from ``k`` on, the cut-off remainder) and then the stream, to its end, straight into the
decoder (numbers offset by the records before ``k``); the section and interface blocks it meets
are carried into the replay's interface and section lists, the very lists the trackers hold
(:attr:`Slice.tail`).  The report is the single pass's, byte for byte, either way;
``Result.parallel["tail"]`` says from which slice and why the parent read on alone.

Plain (uncompressed) standard input on a pipe is cut with its bytes spliced from the pipe into the
slices' files by the reading thread (:meth:`_Cutter._next_spliced`: the parent never reads them
itself, only the window after each nominal cut where the boundary is sought) — when cuts are
given: without, it is read by the parent alone (``PLAIN_WHY``, ``PLAIN_CUT``: measured, the
worker alone costs what one pass costs).  A stream shorter than ``MIN_BYTES``, plain standard
input not on a pipe or without given cuts, one without a record boundary within
``CUT_WINDOW_MAX`` after a nominal cut, or one whose first frames are mostly neither ESP nor
plaintext TCP of the lane (``MIN_SHARE``) is read the same way from its start (or from that cut):
one pass in the parent.

Not here: Dask (``--dask``) reads files at a shared path; a stream's slices would travel to the
cluster as bytes, which this module does not do (a gzip file or standard input with ``--dask``
runs as one pass).  Several inputs of which one is a stream run as one pass too.
"""

from __future__ import annotations

import io
import os
from collections import deque

from pcapvpn.parallel.replay import _Replay, _roundtrip, _starts_earlier
from pcapvpn.parallel.slicing import (CUT_RECORDS, CUT_WINDOW, CUT_WINDOW_MAX, MIN_BYTES,
                                      MIN_SAMPLE, MIN_SHARE, Slice, shares)
from pcapvpn.parallel.worker import read_slice, walk_slice

#: where a stream's slices are put for the workers: shared memory (tmpfs) when there is one
#: (else, or when it is full, through the pool's pipe).  Measured with the bench mix's 693 MB in
#: 16 MiB slices: through the pipe the bytes cost the parent 0.39 and the worker 1.07 CPU seconds
#: (pickling, 64 KiB pipe writes and reads, unpickling), more than reading them; files in shared
#: memory 0.16 (one write, one read)
SPOOL_DIR = "/dev/shm"

#: why plain (uncompressed) standard input is read by the parent alone unless cuts are given:
#: moving its bytes to the workers costs more than analysing them.  Measured (bench/RESULTS.md,
#: issue 19, `bench/run.py --jobs-bench --stdin`): `cat` of the bench mix into `analyze -`, one
#: pass 0.65 CPU s in pcapvpn (standard input's pipe widened to 1 MiB); cut, with the pipe spliced
#: into the slices' files, the parent 0.78 (0.36 of it the reading thread) and the one worker
#: 0.67: the worker alone costs what one pass does, so `--jobs 2` on 2 CPUs is slower (0.59x the
#: wall time at load 7.5).  A gzip stream pays: its decompression, most of a single pass, runs
#: in the reading thread beside the rest.
PLAIN_WHY = "plain standard input: handing its bytes out costs more than one pass"

#: cut plain standard input on a pipe without given cuts (:meth:`_Cutter._next_spliced`): off,
#: as measured above on 2 CPUs (PLAIN_WHY); the tests switch it on to cover the automatic cuts
PLAIN_CUT = False

#: the nominal size of a stream's slice (below MAX_SLICE: the parent keeps the bytes of every
#: slice in flight until it is replayed, for the rest it may have to read itself)
STREAM_SLICE = 16 << 20


def is_stream(paths) -> bool:
    """One input that cannot be cut by offset: standard input, or a gzip file."""
    if len(paths) != 1:
        return False
    if paths[0] == "-":
        return True
    if not os.path.isfile(paths[0]):  # (before reading: a named pipe is read once)
        return False
    try:
        with open(paths[0], "rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


class _Keep:
    """A stream whose bytes read are kept (the capture header ``open_capture`` reads)."""

    __slots__ = ("_s", "kept")

    def __init__(self, s):
        self._s = s
        self.kept: list = []

    @property
    def error(self):
        return self._s.error

    def read(self, n=-1):
        data = self._s.read(n)
        self.kept.append(data)
        return data


class _Rest:
    """Bytes already read (``pieces``), then the rest of ``stream``, as one raw stream: what the
    parent reads itself when it reads on alone."""

    __slots__ = ("_pieces", "_at", "_stream")

    def __init__(self, pieces, stream):
        self._pieces = deque(p for p in pieces if p)
        self._at = 0
        self._stream = stream

    def read(self, n=-1):
        pieces = self._pieces
        if not pieces:
            return self._stream.read(n)
        if n is None or n < 0:
            out = b"".join([bytes(pieces.popleft())[self._at:]] + [bytes(p) for p in pieces])
            pieces.clear()
            self._at = 0
            return out + self._stream.read()
        p, at = pieces[0], self._at
        if at + n >= len(p):
            pieces.popleft()
            self._at = 0
            return bytes(p[at:])
        self._at = at + n
        return bytes(p[at:at + n])

    read1 = read


class _Unspool(Exception):
    """A spliced slice given up (:meth:`_Cutter._next_spliced`)."""


#: errors of a slice's file (not of the pipe) that ``os.splice`` may raise
_FILE_ERRORS = frozenset({28, 27, 122})  # ENOSPC, EFBIG, EDQUOT


def _spliceable(raw) -> int | None:
    """The descriptor of ``raw`` (standard input) when its bytes can be spliced into files in
    ``SPOOL_DIR``: a pipe, and Linux's ``os.splice``.  Nothing of the pipe is left in
    ``raw``'s buffer by the time the first slice is spliced: the head (``MIN_BYTES``) is read
    with ``read1`` of ``CHUNK`` bytes, which hands out what the buffer held first (the few KiB
    the two-byte sniff of :func:`pcapvpn.sources.open_stream` buffered) and then reads past it."""
    import stat

    if raw is None or not hasattr(os, "splice") or not os.path.isdir(SPOOL_DIR):
        return None
    try:
        fd = raw.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
    except (OSError, AttributeError, ValueError):
        return None
    return fd


class _Cutter:
    """The stream read on and cut at record boundaries (:meth:`next`: the slices in order).

    Built on the stream's first bytes (``MIN_BYTES`` of them, or all of a shorter stream): the
    pre-scan of the head (the reader up to its first record, its header bytes as the prefix of
    the slices after the first) and the decision to cut at all (``why``: the reason the parent
    reads the stream alone, None: cut it)."""

    def __init__(self, path, index, stream, head, batch=True, esp=None, lane=None, cuts=None,
                 compressed=True, raw=None):
        from dissect.vpn.capture import open_capture
        from dissect.vpn.errors import DissectError

        self.path = path
        self.index = index
        self.stream = stream
        #: what is read and not handed out yet: pieces as the stream gave them (joined once,
        #: into a slice's bytes)
        self._chunks: deque = deque([head] if head else [])
        self._len = len(head)
        self.eof = False
        self.at = 0  # the stream offset of buf[0]
        self.number = 0  # the next slice's number
        self.done = False
        self.batch = batch
        self.esp = esp
        self.lane = lane if batch else None  # (the walk has no lane without batches)
        self.cuts = None if cuts is None else sorted(cuts)
        self.why: str | None = None
        #: the files holding slices handed out and not yet dropped (:meth:`drop`)
        self.spools: set = set()
        #: plain standard input on a pipe: the descriptor its bytes are spliced from straight
        #: into the slices' files (:meth:`_next_spliced`), None: read into memory
        self._fd = None if compressed else _spliceable(raw)
        self._fill(MIN_BYTES)
        data = self._span(0, self._len)
        # the head: the reader after its first record, the header bytes before it
        self.head = open_capture(io.BytesIO(data))
        self.first = None
        try:
            for rec in self.head.records():
                self.first = rec[4]
                break
        except DissectError:  # pragma: no cover - the readers do not raise after the header
            self.first = None
        self.prefix = data[:self.first] if self.first is not None else b""
        self.nifs = len(self.head.interfaces)
        self.rules = self.head.chain_rules()
        if self.first is None:
            self.why = "no record in the stream's head"
        elif cuts is None:
            if self.eof:
                self.why = f"a stream of under {MIN_BYTES >> 20} MiB"
            elif not compressed and (self._fd is None or not PLAIN_CUT):
                self.why = PLAIN_WHY
            else:
                share = shares("-", lane, data=data)
                if share is not None and sum(share) < MIN_SHARE:
                    self.why = (f"{sum(share):.0%} of the first frames are ESP or plaintext TCP: "
                                f"the slices would hand most frames to one process")

    def _fill(self, n: int) -> None:
        """Read on until ``n`` bytes are held (or the stream ends)."""
        from dissect.vpn.capture import CHUNK

        chunks = self._chunks
        while self._len < n and not self.eof:
            more = self.stream.read(CHUNK)
            if not more:
                self.eof = True
            else:
                chunks.append(more)
                self._len += len(more)

    def _span(self, a: int, b: int) -> bytes:
        """The held bytes ``[a, b)`` (offsets from the first held byte), joined."""
        out = []
        pos = 0
        for c in self._chunks:
            end = pos + len(c)
            if end > a:
                out.append(c[max(0, a - pos):b - pos] if a > pos or end > b else c)
            pos = end
            if pos >= b:
                break
        return out[0] if len(out) == 1 else b"".join(out)

    def _take(self, n: int) -> list:
        """The first ``n`` held bytes, no longer held, as the pieces that hold them (joined by
        whoever needs them whole: the reading thread only decompresses and cuts)."""
        out = []
        chunks = self._chunks
        left = n
        while left and chunks:
            c = chunks.popleft()
            if len(c) > left:
                out.append(c[:left])
                chunks.appendleft(c[left:])
                break
            out.append(c)
            left -= len(c)
        self._len -= n
        return out

    def _cut(self) -> int | None:
        """Where the buffer is cut (an offset in it), None: what is left of the stream is the
        last slice (read to its end); sets ``why`` when no cut can be made."""
        if self.cuts is not None:  # given (tests): stream offsets
            while self.cuts and self.cuts[0] <= max(self.at, self.first or 0):
                self.cuts.pop(0)
            if not self.cuts:
                self._fill(1 << 62)
                return None
            c = self.cuts.pop(0) - self.at
            self._fill(c + 1)
            return c if c < self._len else None
        from dissect.vpn import chain

        target = max(STREAM_SLICE, self.first + 1 - self.at)
        window = CUT_WINDOW // 4  # (16 records of 1.5 kB fit many times: cheaper to search)
        while True:
            self._fill(target + window)
            if self._len <= target:
                return None  # the end of the stream: the last slice
            win = self._span(target, self._len)
            found, _r = chain.find(self.rules, win, 0, len(win), self.eof, CUT_RECORDS)
            if found is not None:
                return target + found
            if self.eof:
                return None
            if window >= CUT_WINDOW_MAX:
                self.why = (f"no record boundary within {CUT_WINDOW_MAX >> 20} MiB after "
                            f"offset {self.at + target}")
                return None
            window *= 4

    def next(self) -> Slice | None:
        """The next slice, with its bytes; a slice with :attr:`Slice.tail` set and no bytes:
        the rest of the stream from there, for the parent to read; None: no more."""
        if self.done:
            return None
        if self._fd is not None and self.why is None:
            sl = self._next_spliced()
            if sl is not None:
                return sl
        k = self.number
        cut = self._cut() if self.why is None else None
        if self.why is not None:
            self.done = True
            return Slice(self.path, self.index, k, self.at, 0, self.prefix if k else b"",
                         self.nifs, True, self.batch, tail=True)
        last = cut is None
        size = self._len if last else cut
        sl = Slice(self.path, self.index, k, self.at, self.at + size,
                   self.prefix if k else b"", self.nifs, last, self.batch, self.esp, self.lane,
                   data=self._take(size))
        self.at += size
        self.number += 1
        self.done = last
        return sl

    def _next_spliced(self) -> Slice | None:
        """The next slice of plain standard input on a pipe, in a file of its own in shared
        memory, filled in this (the reading) thread: the bytes held, then ``os.splice`` from the
        pipe (the kernel copies them: no read into this process, no write out of it), then the
        window after the nominal cut read into memory to find the record boundary there (the
        same chain validation as :meth:`_cut`), the part before it written to the file and the
        rest held for the next slice.  None: it cannot be (shared memory full, the pipe not
        spliced after all): the bytes are held again and :meth:`next` reads on in memory."""
        import tempfile

        from dissect.vpn import chain

        try:
            fd, path = tempfile.mkstemp(prefix="pcapvpn-slice-", dir=SPOOL_DIR)
        except OSError:
            self._fd = None
            return None
        self.spools.add(path)
        try:
            with open(fd, "wb", buffering=0) as f:
                if self.cuts is not None:  # given (tests): stream offsets
                    while self.cuts and self.cuts[0] <= max(self.at, self.first or 0):
                        self.cuts.pop(0)
                    size = self._move(f, self.cuts.pop(0) - self.at if self.cuts else 1 << 62)
                    self._fill(1)
                    last = self._len == 0
                else:
                    size = self._move(f, max(STREAM_SLICE, self.first + 1 - self.at))
                    window = CUT_WINDOW // 4
                    while True:
                        self._fill(window)
                        if self._len == 0:
                            last = True
                            break
                        win = self._span(0, self._len)
                        found, _r = chain.find(self.rules, win, 0, len(win), self.eof, CUT_RECORDS)
                        if found is not None or self.eof:
                            last = found is None
                            size += self._move(f, self._len if last else found)
                            break
                        if window >= CUT_WINDOW_MAX:
                            self.why = (f"no record boundary within {CUT_WINDOW_MAX >> 20} MiB "
                                        f"after offset {self.at + size}")
                            raise _Unspool
                        window *= 4
        except (_Unspool, OSError):  # (OSError: writing the file; a read error ends the stream)
            with open(path, "rb") as f:
                data = f.read()
            self.spools.discard(path)
            os.unlink(path)
            self._chunks.appendleft(data)
            self._len += len(data)
            self._fd = None
            return None
        k = self.number
        sl = Slice(self.path, self.index, k, self.at, self.at + size,
                   self.prefix if k else b"", self.nifs, last, self.batch, self.esp, self.lane,
                   data=path)
        self.at += size
        self.number += 1
        self.done = last
        return sl

    def _move(self, f, n: int) -> int:
        """Up to ``n`` bytes of the stream written to the file ``f``: the held bytes first, then
        spliced from the pipe; how many (fewer: the stream ended).  A read error ends the stream
        with ``stream.error`` set, as a read would; an error of the file raises OSError."""
        from pcapvpn.sources import _read_error

        moved = 0
        pieces = deque(self._take(min(n, self._len)))
        while pieces:
            view = memoryview(pieces[0])
            try:
                while view:
                    view = view[f.write(view):]
            except OSError:  # the file is full: what is not written is held again
                pieces[0] = view
                for piece in reversed(pieces):
                    self._chunks.appendleft(bytes(piece))
                    self._len += len(piece)
                raise
            moved += len(pieces.popleft())
        out = f.fileno()
        while moved < n and not self.eof:
            try:
                m = os.splice(self._fd, out, min(n - moved, 1 << 30))
            except OSError as exc:
                if exc.errno in _FILE_ERRORS:
                    raise
                self.stream.error = _read_error(exc)
                m = 0
            if not m:
                self.eof = True
            moved += m
        return moved

    def spool(self, pieces):
        """The path of a file in shared memory holding the ``pieces`` of a slice (their bytes
        joined when there is no shared memory to put them in; a path: already in one).  In the
        main thread (the reading thread, the critical path of a gzip stream, only decompresses
        and cuts)."""
        import tempfile

        if isinstance(pieces, str):
            return pieces
        if not os.path.isdir(SPOOL_DIR):
            return b"".join(pieces)
        try:
            fd, path = tempfile.mkstemp(prefix="pcapvpn-slice-", dir=SPOOL_DIR)
        except OSError:
            return b"".join(pieces)
        self.spools.add(path)
        try:
            with open(fd, "wb", buffering=0) as f:
                for piece in pieces:
                    view = memoryview(piece)
                    while view:
                        view = view[f.write(view):]
        except OSError:  # shared memory full: through the pool's pipe instead
            self.spools.discard(path)
            os.unlink(path)
            return b"".join(pieces)
        return path

    def drop(self, sl, keep: bool = False) -> bytes | None:
        """The slice's file (if any) removed; ``keep``: its bytes returned."""
        data = sl.data
        sl.data = None
        if isinstance(data, str):
            held = None
            if keep:
                with open(data, "rb") as f:
                    held = f.read()
            self.spools.discard(data)
            os.unlink(data)
            return held
        if isinstance(data, list):  # not handed out yet: its pieces
            data = b"".join(data)
        return data if keep else None

    def clean(self) -> None:
        """Remove the files of the slices still handed out (the walk ended early)."""
        for path in list(self.spools):
            self.spools.discard(path)
            try:
                os.unlink(path)
            except OSError:
                pass

    def rest(self) -> bytes:
        """What is read and not handed out (the pieces of the rest end with it)."""
        out = b"".join(self._take(self._len))
        self.done = True
        return out


class _Reading:
    """The cutter run in a thread of its own, at most ``ahead`` slices ahead of the replay: the
    decompression (zlib releases the GIL) and the reading of a pipe go on while the main thread
    replays and hands slices out.  :meth:`next` as the cutter's; :meth:`stop` ends the thread and
    gives back the slices it read and did not hand out, in order."""

    def __init__(self, cutter, ahead: int):
        import queue
        import threading

        self._cutter = cutter
        self._q: queue.Queue = queue.Queue(maxsize=max(1, ahead))
        self._stop = threading.Event()
        self._held: list = []
        self.done = False
        #: the thread's CPU seconds once it ended (bench/run.py: the critical path of a gzip)
        self.cpu: float | None = None
        self._t = threading.Thread(target=self._run, name="pcapvpn-stream", daemon=True)
        self._t.start()

    def _run(self) -> None:
        import time

        try:
            while not self._stop.is_set():
                sl = self._cutter.next()
                self._put(sl)
                if sl is None or sl.tail:
                    return
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
            self._put(exc)
        finally:
            self.cpu = time.thread_time()

    def _put(self, item) -> None:
        import queue

        while True:
            try:
                self._q.put(item, timeout=0.05)
                return
            except queue.Full:
                if self._stop.is_set():
                    self._held.append(item)
                    return

    def next(self):
        if self.done:
            return None
        item = self._q.get()
        if isinstance(item, BaseException):
            self.done = True
            raise item
        if item is None or item.tail:
            self.done = True
        return item

    def stop(self) -> list:
        import queue

        self._stop.set()
        out = []
        while self._t.is_alive() or not self._q.empty():
            try:
                out.append(self._q.get(timeout=0.05))
            except queue.Empty:
                continue
        self._t.join()
        out += self._held
        self._held = []
        self.done = True
        for item in out:
            if isinstance(item, BaseException):
                raise item
        return [x for x in out if x is not None]


class _Done:
    """A slice read in this process (``workers="serial"``, tests), as a pool's result: its part,
    or what reading it raised."""

    __slots__ = ("_part", "_exc")

    def __init__(self, sl):
        self._part = self._exc = None
        try:
            self._part = _roundtrip(read_slice(sl))
        except Exception as exc:  # noqa: BLE001 - raised by get(), as a pool's result does
            self._exc = exc

    def get(self):
        if self._exc is not None:
            raise self._exc
        return self._part


def _shifted(before, on_esp, on_frame, on_batch, on_tcp, on_checkpoint):
    """The walk's callbacks with frame numbers made global (``before`` records ahead)."""
    if not before:
        return on_esp, on_frame, on_batch, on_tcp, on_checkpoint

    def esp(ref, ts, *rest):
        on_esp((ref[0], ref[1] + before), ts, *rest)

    def frame(tag, number, *rest):
        on_frame(tag, number + before, *rest)

    def batch(tag, b):
        b.num += before
        on_batch(tag, b)

    def tcp(tag, lt, ifaces, buf, run):
        run["number"] = [n + before for n in run["number"]]
        return on_tcp[1](tag, lt, ifaces, buf, run)

    def checkpoint(number, offset):
        on_checkpoint(number + before, offset)

    return (esp, frame, batch if on_batch is not None else None,
            (on_tcp[0], tcp) if on_tcp is not None else None,
            checkpoint if on_checkpoint is not None else None)


def _may_refuse(part, on_tcp) -> bool:
    """Whether the decoder might refuse one of the part's plaintext runs (a frame of a TCP stream
    it follows: :meth:`pcapvpn.decode.Decoder._plain_tcp`).  A file's slice then starts the
    analysis again as one pass; a stream's cannot, and a run refused half-way through a replayed
    slice would need the frames' bytes in the middle of it.  So it is judged before the slice is
    replayed, on a superset of what the decoder can follow by then: the streams it follows now
    and those the slice's own general-path frames open (:attr:`Part.general_tcp` finds the
    candidates; the decoder's own ``_tcp_app``, which only reads, says whether such a frame
    opens its stream).  True also when that cannot be known."""
    runs = [op[4]["arrays"] for op in part.ops if op[0] == 4]
    if not runs:
        return False
    decoder = getattr(on_tcp[1], "__self__", None) if on_tcp is not None else None
    tcp = getattr(decoder, "tcp", None)
    if tcp is None or getattr(decoder, "_named_tcp", True) or part.general_tcp is None:
        return True
    dirs = [k for k in tcp.dirs if len(k[0]) == 4]
    cand = set(part.general_tcp).union(dirs)
    if not cand:
        return False
    import numpy as np

    def ends(a):
        src = (np.asarray(a["src"], dtype=np.uint64) << np.uint64(16)) | np.asarray(
            a["sport"], dtype=np.uint64)
        dst = (np.asarray(a["dst"], dtype=np.uint64) << np.uint64(16)) | np.asarray(
            a["dport"], dtype=np.uint64)
        return src, dst

    def end(addr, port):
        return (int.from_bytes(addr, "big") << 16) | port

    want = np.array(sorted({end(s, sp) for s, sp, _d, _dp in cand} |
                           {end(d, dp) for _s, _sp, d, dp in cand}), dtype=np.uint64)
    pairs = set()  # the run frames' (end, end) whose two ends are among the candidates'
    for a in runs:
        src, dst = ends(a)
        hit = np.isin(src, want) & np.isin(dst, want)
        if hit.any():
            pairs.update(zip(src[hit].tolist(), dst[hit].tolist()))
            if len(pairs) > 4096:
                return True
    if not pairs:
        return False
    pairs |= {(b, a) for a, b in pairs}
    if any((end(s, sp), end(d, dp)) in pairs for s, sp, d, dp in dirs):
        return True  # followed now
    from dissect.vpn import ip, link

    for op in part.ops:  # does one of its general-path frames open such a stream?
        if op[0] != 2:
            continue
        try:
            r = link.decode_frame(op[3], op[4])
        except Exception:  # noqa: BLE001 - the general path's decode error: nothing opened
            continue
        if r is None or r[0] != 4 or r[3] != 6 or r[4] < 0 or r[8] or r[9]:
            continue
        key = (end(r[1], r[4]), end(r[2], r[5]))
        if key not in pairs:
            continue
        try:
            poff = ip.decode_tcp(op[4], r[6], r[7])[5]
            if decoder._tcp_app(r[1], r[4], r[2], r[5], op[4], poff, r[7]) is not None:
                return True
        except Exception:  # noqa: BLE001 - cannot tell: as if it opened one
            return True
    return False


class _StreamReplay(_Replay):
    """The reader behind a stream's :class:`pcapvpn.sources.Source`: the slices cut by
    ``cutter`` are read by ``jobs - 1`` worker processes (``pool="serial"``: in this process)
    and replayed in order, or the rest read here (see the module docstring)."""

    def __init__(self, cutter: _Cutter, jobs: int, pool=None):
        super().__init__(cutter.head, None, iter(()), judge=cutter.cuts is None)
        self._cutter = cutter
        self._n = max(1, jobs - 1)
        self._pool = pool
        self._workers = None
        self._reading: _Reading | None = None
        #: ``{"slice": k, "why": ...}``: the parent read the stream itself from slice k on
        self.tail: dict | None = None
        #: CPU seconds of the thread that read and cut the stream (once the walk is over)
        self.reading_cpu: float | None = None

    def close(self) -> None:
        if self._workers is not None:
            self._workers.terminate()
            self._workers = None
        if self._reading is not None:
            reading, self._reading = self._reading, None
            try:
                reading.stop()
            except Exception:  # noqa: BLE001,S110 - closing: the walk reported what it met
                pass
            self.reading_cpu = reading.cpu
        self._cutter.clean()

    def _start(self) -> None:
        """The worker processes, forked before the reading thread starts (a fork copies only
        the thread that calls it: no lock the reading thread holds is left locked in them)."""
        if self._pool != "serial" and self._workers is None and self._cutter.why is None:
            import multiprocessing

            self._workers = multiprocessing.get_context("fork").Pool(self._n)

    def _submit(self, sl):
        sl.data = self._cutter.spool(sl.data)
        if self._pool == "serial":
            return _Done(sl)
        return self._workers.apply_async(read_slice, (sl,))

    def _odd(self, sl, res, on_tcp) -> tuple:
        """``(part, why)``: the slice's part, and why it cannot be replayed (None: it can)."""
        if sl.tail:
            return None, self._cutter.why
        try:
            part = res.get()
        except Exception as exc:  # noqa: BLE001 - whatever a worker raised: read on here
            return None, f"a worker failed ({type(exc).__name__}: {exc})"
        if part.bad is not None:
            return part, part.bad
        lane = sl.lane
        if lane is not None and (on_tcp is None or on_tcp[0] != lane):
            return part, "the slices' plaintext lane is not the decoder's"
        if self._judge and self.slices <= 1 and part.ops is not None:
            shipped = sum(1 for op in part.ops if op[0] == 2)
            frames = part.stats["frames"]
            if frames >= MIN_SAMPLE and frames - shipped < MIN_SHARE * frames:
                return part, (f"{frames - shipped} of {frames} frames of slice {sl.number} are "
                              f"ESP or plaintext TCP: the slices would hand most frames to one "
                              f"process")
        return part, None

    def walk(self, tag, on_esp, on_frame, on_checkpoint=None, every=1024, on_batch=None,
             on_tcp=None):
        from pcapvpn.parallel import AHEAD

        calls = (on_esp, on_frame, on_batch, on_tcp)
        pending: deque = deque()
        limit = AHEAD * self._n
        self._start()
        cutter = self._reading = _Reading(self._cutter, 2)

        def fetch():
            """The next slice, its part and why it cannot be replayed; the workers kept busy."""
            while len(pending) < limit and not cutter.done:
                sl = cutter.next()
                if sl is None:
                    break
                pending.append((sl, None if sl.tail else self._submit(sl)))
            if not pending:
                return None
            sl, res = pending.popleft()
            part, why = self._odd(sl, res, on_tcp)
            return sl, part, why

        stats = self._totals()
        before = 0
        cur = fetch()
        while cur is not None:
            sl, part, why = cur
            nxt = fetch() if why is None else None
            if why is None and nxt is not None and nxt[2] is not None and (
                    nxt[1] is None or not nxt[1].start_ok):
                why = nxt[2]  # the cut before the next slice may not be the single pass's
            if why is None and part is not None and _starts_earlier(part, stats):
                # its count of frames out of time order would not be the single pass's: the
                # rest is read here, counted against the slices before it (time_floor)
                why = f"not in time order: slice {sl.number} starts earlier than the slices " \
                      f"before it end"
            if why is None and _may_refuse(part, on_tcp):  # (the decoder as it is now)
                why = (f"slice {sl.number}: a plaintext run may be of a TCP stream the decoder "
                       f"follows")
            if why is not None:
                later = ([nxt[0]] if nxt is not None else []) + [p[0] for p in pending]
                self._tail(sl, later, why, tag, calls, on_checkpoint, stats, before)
                break
            part.slice = sl  # with its bytes, should they be read again
            before = self._replay(part, tag, calls, on_checkpoint, stats, before)
            part.slice = None
            self._cutter.drop(sl)  # replayed: its bytes are not needed any more
            cur = nxt
        self.walk_stats = stats
        self.close()

    def _tail(self, sl, later, why, tag, calls, on_checkpoint, stats, before) -> None:
        """The rest of the stream from slice ``sl`` on, read here straight into the decoder."""
        reading, self._reading = self._reading, None
        later = later + (reading.stop() if reading is not None else [])
        self.reading_cpu = reading.cpu if reading is not None else None
        cutter = self._cutter
        pieces = [cutter.drop(x, keep=True) for x in [sl] + later] + [cutter.rest()]
        self.close()  # the workers' slices after sl are not needed
        rest = Slice(sl.path, sl.index, sl.number, sl.start, 0, sl.prefix, sl.nifs, True,
                     sl.batch, data=_Rest(pieces, cutter.stream), tail=True)
        del pieces
        self.tail = {"slice": sl.number, "why": why}
        on_esp, on_frame, on_batch, on_tcp = calls

        def on_open(reader):
            # frames of the rest earlier than the slices before it are late, as in one pass
            reader.time_floor = stats["last_ts"]
            # the trackers hold the replay's interface list: the reader of the rest fills it,
            # as the single pass's reader fills its own (the header's blocks again, then any
            # later ones, each before the first packet that names it)
            self.interfaces[:] = reader.interfaces
            reader.interfaces = self.interfaces
            if self.sections is not None:
                self.sections[:] = reader.sections
                reader.sections = self.sections

        part = walk_slice(rest, *_shifted(before, on_esp, on_frame, on_batch, on_tcp,
                                          on_checkpoint), on_open=on_open)
        if part.bad is not None:  # (cannot be: the worker read the same start, see above)
            self.tail["bad"] = part.bad
        self._merge(part, stats)
        self.slices += 1


def stream_source(path, index, jobs, batch=True, cuts=None, pool=None, esp=None, lane=None,
                  spool=False):
    """The :class:`pcapvpn.sources.Source` of a stream (``path``: ``-`` or a gzip file) whose
    walk is :meth:`_StreamReplay.walk`; raises :class:`pcapvpn.sources.SourceError` as
    :func:`pcapvpn.sources.open_source` does.  Returns ``(source, close)``."""
    from pcapvpn.sources import Source, open_reader, open_stream

    raw, stream, close_raw, compressed, spool_path = open_stream(path, spool)
    try:
        keep = _Keep(stream)
        open_reader(path, keep, compressed)
        cutter = _Cutter(path, index, stream, b"".join(keep.kept), batch, esp, lane, cuts,
                         compressed, raw if path == "-" else None)
    except BaseException:
        if close_raw:
            raw.close()
        raise
    replay = _StreamReplay(cutter, jobs, pool)
    src = Source(path, index, replay, raw, stream, close_raw, compressed)
    src.spool_path = spool_path
    return src, replay.close
