"""The buffer, counters and hand-over the batched walks of both formats share."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

from dissect.vpn.capture.common import NONPACKET, Callback, Record, Stream, WalkStats, _walk_stats

if TYPE_CHECKING:
    from dissect.vpn.batch import Array, Classified, Lane
    from dissect.vpn.capture.reader import _Reader

    #: record positions in the buffer: a list, or an int64 array
    Offsets = Union[Sequence[int], Array]

#: bytes per chunk of the batched walk (PcapReader.walk with ``on_batch``)
BATCH_CHUNK = 8 << 20


def _readinto_of(stream: Stream) -> Callable[[memoryview], int]:
    """``stream.readinto``, or an equivalent made from ``read`` for streams without it."""
    into: Callable[[memoryview], int] | None = getattr(stream, "readinto", None)
    if into is not None:
        return into
    read = stream.read

    def readinto(b: memoryview) -> int:
        data = read(len(b))
        if data is None:  # a non-blocking stream with nothing to read now: not its end
            raise BlockingIOError("the capture stream returned no data (it must be blocking)")
        b[:len(data)] = data
        return len(data)

    return readinto


class _Batcher:
    """What the batched walks of both formats share: one reused buffer (``LEAD`` free bytes, then
    the data ``buf[pos:n]``, then ``SLACK`` bytes of slack so that windows past a short last
    record stay inside it), the counters of ``walk_stats``, and the hand-over of a classified run
    of records in file order."""

    LEAD = 8  # >= dissect.vpn.batch.LEAD

    def __init__(self, reader: _Reader, tag: Any, on_batch: Callback, on_frame: Callback,
                 on_checkpoint: Callback | None, every: int) -> None:
        self._hand_over(tag, on_batch, on_frame, on_checkpoint, every)
        self.tmax = reader._floor()
        vec = self.vec
        self.readinto = _readinto_of(reader._stream)
        head = reader._buf
        reader._buf = b""
        self.size = max(BATCH_CHUNK, len(head))
        self.buf = bytearray(self.LEAD + self.size + vec.SLACK)
        self.n = self.LEAD + len(head)
        self.buf[self.LEAD:self.n] = head
        self.mv = memoryview(self.buf)
        self.base = reader._base - self.LEAD  # file offset of buf[0]
        self.pos = self.LEAD
        self.eof = False

    def _hand_over(self, tag: Any, on_batch: Callback, on_frame: Callback,
                   on_checkpoint: Callback | None, every: int) -> None:
        """What :meth:`push` needs besides the buffer: the callbacks and the walk's counters
        (``pcapvpn.live.batch`` hands ring blocks over with it)."""
        import numpy as np

        from dissect.vpn import batch as vec

        self.vec: ModuleType = vec
        self.np: ModuleType = np
        self.tag = tag
        self.on_batch = on_batch
        self.on_frame = on_frame
        self.on_checkpoint = on_checkpoint
        self.every = every
        #: IPv4 TCP of the common shape with its header decoded (PcapReader.walk's ``on_tcp``),
        #: and the link type of the records (one for the file); None: on_frame only
        self.on_tcp: tuple[Any, Callback] | None = None
        self.tcp_lt: int | None = None
        #: the rows of the chunk being handed over, as classify read them (fields["words"])
        self.words: tuple[Array, Array] | None = None
        self.number = 0
        self.nbytes = 0
        self.trunc = 0
        self.tmax = float("-inf")
        self.tmin = float("inf")
        self.disorder = 0
        self.first: float | None = None
        #: the frame number of the first packet record, of the earliest one counted late
        self.first_n = 0
        self.tmin_n: int | None = None
        #: the largest step back in time (a record earlier than the latest before it), its
        #: record's frame number, and that latest time
        self.back = 0.0
        self.back_n: int | None = None
        self.back_from: float | None = None
        #: the timestamp of the last packet record handed over, in file order (None: none yet)
        self.last: float | None = None
        self.lts: dict[int, int] = {}

    def fill(self) -> None:
        """Read until the buffer is full or the stream ends."""
        top = self.LEAD + self.size
        readinto = self.readinto
        mv = self.mv
        n = self.n
        while not self.eof and n < top:
            got = readinto(mv[n:top])
            if not got:
                self.eof = True
            n += got
        self.n = n

    def slide(self, need: int) -> None:
        """Keep ``buf[pos:n]`` at the front, with room for ``need`` bytes from there."""
        pos, n, lead = self.pos, self.n, self.LEAD
        left = n - pos
        rest = bytes(self.mv[pos:n])
        if need > self.size:
            # one record larger than the buffer: grow it to hold that record
            self.size = need
            self.mv.release()
            self.buf = bytearray(lead + need + self.vec.SLACK)
            self.mv = memoryview(self.buf)
        self.buf[lead:lead + left] = rest
        self.base += pos - lead
        self.n = lead + left
        self.pos = lead

    def reset(self, rest: bytes, base: int) -> None:
        """Go on with ``rest`` (bytes that start at file offset ``base``) after a damaged
        range; the stream continues after them."""
        lead = self.LEAD
        if len(rest) > self.size:
            self.size = len(rest)
            self.mv.release()
            self.buf = bytearray(lead + self.size + self.vec.SLACK)
            self.mv = memoryview(self.buf)
        self.buf[lead:lead + len(rest)] = rest
        self.n = lead + len(rest)
        self.pos = lead
        self.base = base - lead
        self.eof = False

    def last_or(self, default: float) -> float:
        return self.last if self.last is not None else default

    def skip(self, count: int, first: int, step: int) -> None:
        """``count`` records that use up frame numbers but are not handed over (damaged records
        Wireshark shows), the first at file offset ``first``, each ``step`` bytes long."""
        number = self.number
        if self.on_checkpoint is not None:
            every = self.every
            for num in range(number + every - (number & (every - 1)), number + count + 1, every):
                self.on_checkpoint(num, first + (num - number - 1) * step)
        self.number = number + count

    def push(self, offs: Offsets, skip: int, res: Classified, lt: int | Array,
             ifs: int | Array = 0, row0: int = 0) -> None:
        """Hand over the records at ``offs`` (positions in ``buf``; the frame ``skip`` bytes on),
        classified (``res``: :func:`dissect.vpn.batch.classify`); ``lt`` their linktype (an int,
        or an array per record); ``ifs`` their global interface index (the same: an int or an
        array); ``row0``: the first record's row in the classification of its chunk
        (``words``, read again by the TCP lane)."""
        np = self.np
        ts, cap, wire, other, inert, b4, b6 = res
        k = len(offs)
        number = self.number
        base = self.base
        self.nbytes += int(cap.sum())
        self.trunc += int(np.count_nonzero(wire > cap))
        if self.first is None:
            self.first = float(ts[0])
            self.first_n = number + 1
        self.last = float(ts[-1])
        tmax = self.tmax
        cm = np.maximum.accumulate(ts)
        if cm[0] < tmax:
            cm = np.maximum(cm, tmax)
        late = ts[1:] < cm[:-1]
        first_late = bool(ts[0] < tmax)
        nlate = int(np.count_nonzero(late)) + first_late
        if nlate:
            self.disorder += nlate
            # how far each record is behind the latest before it (> 0 exactly where it is late)
            step = np.empty_like(ts)
            step[0] = tmax - ts[0]
            np.subtract(cm[:-1], ts[1:], out=step[1:])
            j = int(step.argmax())
            if step[j] > self.back:
                self.back = float(step[j])
                self.back_n = number + j + 1
                self.back_from = float(cm[j - 1]) if j else tmax
            lates = np.flatnonzero(step > 0)
            j = int(lates[ts[lates].argmin()])
            if ts[j] < self.tmin:
                self.tmin = float(ts[j])
                self.tmin_n = number + j + 1
        self.tmax = max(tmax, float(cm[-1]))
        lts = self.lts
        if isinstance(lt, int):
            lts[lt] = lts.get(lt, 0) + k
        else:
            for v, c in zip(*np.unique(lt, return_counts=True)):
                lts[int(v)] = lts.get(int(v), 0) + int(c)
        every = self.every
        if self.on_checkpoint is not None:
            for num in range(number + every - (number & (every - 1)), number + k + 1, every):
                self.on_checkpoint(num, base + offs[num - number - 1])
        tag = self.tag
        on_batch = self.on_batch
        if not len(other):
            for b in (b4, b6):
                if b is not None:
                    on_batch(tag, b[0])
        else:
            done = [0, 0]
            pend = (b4, b6)

            def flush(r: int) -> None:
                for j in (0, 1):
                    b = pend[j]
                    if b is not None:
                        stop = int(np.searchsorted(b[1], r)) if r >= 0 else len(b[1])
                        if stop > done[j]:
                            on_batch(tag, b[0].take(slice(done[j], stop)))
                            done[j] = stop

            on_frame = self.on_frame
            mv = self.mv
            lts_o = [lt] * len(other) if isinstance(lt, int) else lt[other].tolist()
            ifs_o = [ifs] * len(other) if isinstance(ifs, int) else ifs[other].tolist()
            # an inert record earlier than something before it: ESP pending before it may carry
            # the latest time so far, which the decoder's fragment clock must have seen first
            inert = inert & (ts[other] >= cm[other])
            on_tcp = self.on_tcp
            if on_tcp is not None and skip == 16 and isinstance(lt, int):
                self._push_tcp(on_tcp, offs, other, inert, ts, cap, wire, lts_o, ifs_o, flush,
                               row0)
            else:
                for r, t, c, w, quiet, ltr, ifr in zip(other.tolist(), ts[other].tolist(),
                                                       cap[other].tolist(), wire[other].tolist(),
                                                       inert.tolist(), lts_o, ifs_o):
                    if not quiet:
                        flush(r)
                    o = offs[r] + skip
                    on_frame(tag, number + r + 1, t, ltr, bytes(mv[o:o + c]), w,
                             base + offs[r], ifr)
            flush(-1)
        self.number = number + k

    def _push_tcp(self, on_tcp: tuple[Any, Callback], offs: Offsets, other: Array,
                  inert: Array, ts: Array, cap: Array, wire: Array, lts_o: list[int],
                  ifs_o: list[int], flush: Callable[[int], None], row0: int = 0) -> None:
        """The loop of :meth:`push` over the records ``other`` that are not ESP: runs of IPv4
        TCP segments of the common shape (:func:`dissect.vpn.batch.plain_tcp`) on none of the
        ports of ``on_tcp`` and whose payload cannot start a VPN stream go to ``on_tcp`` a run at
        a time; the rest, and runs ``on_tcp`` declines, to ``on_frame``.  A run ``on_tcp`` takes
        is plaintext, which makes no ESP event (inert: pending ESP may wait).  ``on_tcp``: the
        walk's ``(ports, fn)``."""
        np = self.np
        tag, number, base, mv = self.tag, self.number, self.base, self.mv
        on_frame = self.on_frame
        ports, run_tcp = on_tcp
        oo = offs[other] if isinstance(offs, np.ndarray) else [offs[r] for r in other.tolist()]
        caps = cap[other]
        f = self.vec.plain_tcp(self.buf, oo, self.tcp_lt, caps, ports, self.words,
                               other + row0 if self.words is not None else None)
        lane = f["ok"] & ~f["start"]
        others = other.tolist()
        tso = ts[other].tolist()
        capo = caps.tolist()
        wireo = wire[other].tolist()
        quiet = inert.tolist()
        oo = list(oo) if not isinstance(oo, list) else oo
        # runs of lane records: [a, b) positions in ``other``
        edges = np.flatnonzero(np.diff(np.concatenate(([False], lane, [False])).astype(np.int8)))
        starts, stops = edges[0::2].tolist(), edges[1::2].tolist()
        fr: dict[str, Any] = {}
        if starts:
            fr = {k: f[k].tolist() for k in ("seq", "ack", "flags", "poff")}
            fr["frame"] = (np.asarray(oo, dtype=np.int64) + 16).tolist()
            arrays = [k for k in ("src", "dst", "sport", "dport", "poff", "end", "ifindex",
                                  "hatype", "pkttype") if k in f]
            fr["number"] = (other + (number + 1)).tolist()
            l4 = f["l4"]
        i = 0
        starts.append(len(others))
        stops.append(len(others))
        for a, b in zip(starts, stops):
            for x in range(i, a):  # records between the runs: one at a time
                r = others[x]
                if not quiet[x]:
                    flush(r)
                o = oo[x] + 16
                on_frame(tag, number + r + 1, tso[x], lts_o[x], bytes(mv[o:o + capo[x]]),
                         wireo[x], base + oo[x], ifs_o[x])
            if a >= b:
                break
            run = {k: v[a:b] for k, v in fr.items()}
            run["l4"] = l4
            run["ts"] = tso[a:b]
            run["arrays"] = {k: f[k][a:b] for k in arrays}
            if not run_tcp(tag, self.tcp_lt, ifs_o[a:b], self.buf, run):
                for x in range(a, b):
                    r = others[x]
                    flush(r)
                    o = oo[x] + 16
                    on_frame(tag, number + r + 1, tso[x], lts_o[x], bytes(mv[o:o + capo[x]]),
                             wireo[x], base + oo[x], ifs_o[x])
            i = b

    def one(self, rec: Record) -> None:
        """A record read one at a time (a ``records()`` tuple)."""
        ts, lt, data, wirelen, offset, iface = rec
        self.number += 1
        number = self.number
        if self.on_checkpoint is not None and not number & (self.every - 1):
            self.on_checkpoint(number, offset)
        if lt == NONPACKET:
            return
        self.lts[lt] = self.lts.get(lt, 0) + 1
        if self.first is None:
            self.first = ts
            self.first_n = number
        self.last = ts
        self.nbytes += len(data)
        if wirelen > len(data):
            self.trunc += 1
        if ts >= self.tmax:
            self.tmax = ts
        else:
            self.disorder += 1
            if self.tmax - ts > self.back:
                self.back = self.tmax - ts
                self.back_n = number
                self.back_from = self.tmax
            if ts < self.tmin:
                self.tmin = ts
                self.tmin_n = number
        self.on_frame(self.tag, number, ts, lt, data, wirelen, offset, iface)

    def stats(self) -> WalkStats:
        first = self.first
        earliest = self.tmin_n if first is not None and self.tmin < first else self.first_n
        return _walk_stats(self.number, self.nbytes, self.trunc, first, self.tmin, self.tmax,
                           self.disorder, self.lts,
                           (self.back, self.back_n, self.back_from, earliest))


def _part(res: Classified, i: int, j: int, np: ModuleType) -> Classified:
    """:func:`dissect.vpn.batch.classify`'s result for records ``i`` to ``j`` (exclusive) only,
    positions counted from ``i`` (the batches' frame numbers are absolute and stay)."""
    ts, cap, wire, other, inert, b4, b6 = res
    lo, hi = int(np.searchsorted(other, i)), int(np.searchsorted(other, j))

    def batch(b: Lane | None) -> Lane | None:
        if b is None:
            return None
        a, z = int(np.searchsorted(b[1], i)), int(np.searchsorted(b[1], j))
        return (b[0].take(slice(a, z)), b[1][a:z] - i) if z > a else None

    return (ts[i:j], cap[i:j], wire[i:j], other[lo:hi] - i, inert[lo:hi], batch(b4),
            batch(b6))
