"""One big capture file read by several worker processes (``analyze --jobs N``, issue 19).

The design (docs/internals.md, "Parallel analysis"): the file is cut into byte ranges at record
boundaries (:func:`cut_points`: :func:`dissect.vpn.chain.find`, the validator that
resynchronises damaged captures).  Each range (a *slice*) is read by a worker process with the
same reader and the same batched walk as a single pass (:meth:`dissect.vpn.capture.reader._Reader.walk`):
the per-record work — reading, the record walk, the numpy classification that recognises ESP of
the common shapes and decodes their headers into :class:`dissect.vpn.batch.EspBatch` columns —
runs there.  What the walk hands over is *recorded*, in order: ESP batches (arrays), single ESP
events, and the other frames (their bytes: IKE, fragments, TCP, keepalives, the other VPNs,
plaintext).  The parent replays the slices' recordings in file order into the ordinary
:class:`pcapvpn.decode.Decoder` and trackers (:class:`_Replay` stands in for the capture reader
behind an ordinary :class:`pcapvpn.sources.Source`), so every order-dependent piece of state —
IKE exchanges, fragment sets, TCP streams — sees exactly the events of a single pass in exactly
its order.  The ESP, the bulk of a mirror-port capture, is tracked by the workers too: a slice
whose other frames cannot carry ESP sends its SAs' states instead of its packets, and the parent
merges them (:func:`pcapvpn.track.esp.merge_slice`) where that gives exactly the state one pass
builds — anti-replay window edges, gaps, time bins — and applies the packets of the other SAs one
by one.  The report is the single pass's, byte for byte.

Frame numbers stay Wireshark's: a worker numbers its records from 1 and the parent adds the
records of the slices before it (two-phase numbering: the counts are known once the earlier
slices are read, which the replay waits for anyway).  A pcapng slice is read with its section's
header and interface blocks put in front of it (a pre-scan of the file's head).

A slice that does not line up with the single pass — its last record runs past its end (a cut
that was not a record boundary), damage touching its end, a pcapng section or interface block
inside it, a read error — makes the analysis start again as a single pass (:class:`Fallback`):
the result is never a guess.  Several files are read one after the other when their times
follow each other (a rotated capture; :func:`check_order`).  Gzip files, standard input, files
whose times overlap, ``--keys`` and the ``read`` stage run as a single pass (see
docs/internals.md for what is left).
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass, field

from dissect.vpn.chain import SYNC_RECORDS

#: files smaller than this are read by one process (starting workers costs more than it saves)
MIN_BYTES = 32 << 20
#: slices per worker: more than one, so that the parent replays the first slices while the
#: workers read the others
SLICES_PER_JOB = 2
#: the largest slice (more slices than SLICES_PER_JOB per worker in a bigger file): what a slice's
#: recording may hold (the frames that are no ESP of the common shapes) stays bounded, and so
#: does memory, with ``AHEAD`` slices per worker read ahead of the replay (plus, while this
#: process reads its own first slice, as many as that slice is long)
MAX_SLICE = 32 << 20
AHEAD = 2
#: the main process's own work (interpreter, imports, merging, rules, report) in bytes of
#: capture a worker reads and tracks in the same time (measured on the bench's 1M mix: about
#: 0.29 s beside 0.75 s for its 693 MB): see :func:`plan`
FIXED_BYTES = 256 << 20
#: bytes read at a cut's nominal offset to find the record boundary after it (then this much
#: more when the records there are too large for a chain to fit)
CUT_WINDOW = 256 << 10
CUT_WINDOW_MAX = 8 << 20
#: records a cut's chain must hold (more than the resynchronisation's 4: a cut is not a guess)
CUT_RECORDS = 16

__all__ = ["DaskPool", "Fallback", "MIN_BYTES", "Slice", "available_cores", "check_order",
           "cut_points", "eligible", "read_slice", "sliced_sources"]


#: the parent's first slice decides whether slices pay: at least this share of its frames ESP
#: (the part the workers track themselves), judged on at least MIN_SAMPLE frames
MIN_ESP_SHARE = 0.5
MIN_SAMPLE = 200


class Fallback(Exception):  # noqa: N818 - a control-flow signal, not an error shown to users
    """A slice does not line up with the single pass: analyse the file in one pass instead."""


def available_cores() -> int:
    """The cores this process may run on (``os.sched_getaffinity``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Slice:
    """Bytes ``[start, end)`` of ``path``; ``prefix``: the header bytes a reader needs in front
    of them (empty for the first slice, which starts at the file header)."""

    path: str
    index: int
    number: int
    start: int
    end: int
    prefix: bytes = b""
    nifs: int = 0
    last: bool = False
    batch: bool = True
    #: ``(thresholds, limits)``: track the slice's ESP in the worker too (a full analysis), so
    #: that the parent can merge SA states instead of applying every packet
    esp: tuple | None = None


@dataclass
class Part:
    """What a worker read from one slice: the recording and the reader's counters."""

    number: int
    ops: list = field(default_factory=list)
    checkpoints: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    damage: list = field(default_factory=list)
    damage_more: list = field(default_factory=list)
    size: int | None = None
    isb: dict = field(default_factory=dict)
    drops: dict = field(default_factory=dict)
    ended: float | None = None
    cooked: dict = field(default_factory=dict)
    iface_frames: dict | None = None
    notes: list = field(default_factory=list)
    #: why this slice does not line up with a single pass (None: it does)
    bad: str | None = None
    #: the slice's ESP SAs tracked from a fresh state and the gaps each opened
    #: (:meth:`pcapvpn.track.esp.SliceEspTracker.summary`), or None; with it, the recording's ESP
    #: ops are only their latest times, ``(3, ts)``
    esp: tuple | None = None
    #: the slice read (to read it again when its ESP packets are needed after all)
    slice: Slice | None = None


# -- cutting ---------------------------------------------------------------------------------


def eligible(paths, options) -> bool:
    """Regular, uncompressed capture files (each given once), analysed in full or to a stage the
    walk serves (``decode``, ``dissect``), without ``--keys`` or ``--vantage``."""
    if not paths or "-" in paths or len(set(paths)) != len(paths) or options.vantage \
            or options.keys is not None or options.stop_after == "read":
        return False
    for path in paths:
        try:
            with open(path, "rb") as f:
                if f.read(2) == b"\x1f\x8b" or not os.path.isfile(path):
                    return False
        except OSError:
            return False
    return True


def _head(path):
    """``(reader, prefix, nifs, first)``: the file's reader after its first record, the header
    bytes before that record (pcap: the file header; pcapng: the section header and interface
    blocks), the interfaces they declare, and the first record's offset (None: no record)."""
    from dissect.vpn.capture import open_capture
    from pcapvpn.sources import _Prefixed, _read_upto

    with open(path, "rb", buffering=0) as f:
        reader = open_capture(_Prefixed(b"", f))
        first = None
        for rec in reader.records():
            first = rec[4]
            break
        if first is None:
            return reader, b"", 0, None
        f.seek(0)
        prefix = _read_upto(f, first)
    return reader, prefix, len(reader.interfaces), first


def cut_points(path, targets, size: int | None = None, head=None
               ) -> tuple[list[int], bytes, int]:
    """Offsets where ``path`` can be cut: the record boundary found by
    :func:`dissect.vpn.chain.find` (``CUT_RECORDS`` valid records in a row) after each nominal
    offset of ``targets`` (increasing); plus the header prefix and interface count for the
    slices (see :func:`_head`).  Fewer cuts when no boundary is found."""
    from dissect.vpn import chain
    from pcapvpn.sources import _read_upto

    reader, prefix, nifs, first = head or _head(path)
    if first is None:
        return [], prefix, nifs
    if size is None:
        size = os.path.getsize(path)
    rules = reader.chain_rules()
    cuts: list[int] = []
    with open(path, "rb", buffering=0) as f:
        for nominal in targets:
            target = max(nominal, first + 1, cuts[-1] + 1 if cuts else 0)
            if target >= size:
                break
            window = CUT_WINDOW
            while True:
                f.seek(target)
                buf = _read_upto(f, window)
                found, _r = chain.find(rules, buf, 0, len(buf), target + len(buf) >= size,
                                       CUT_RECORDS)
                if found is not None or window >= CUT_WINDOW_MAX or target + len(buf) >= size:
                    break
                window *= 4
            if found is not None and target + found < size:
                cuts.append(target + found)
    return cuts, prefix, nifs


def slices(path, index, cuts, prefix, nifs, batch=True) -> list[Slice]:
    """The slices of ``path`` between the ``cuts`` (record boundaries, increasing)."""
    size = os.path.getsize(path)
    edges = [0] + list(cuts) + [size]
    out = []
    for k in range(len(edges) - 1):
        out.append(Slice(path, index, k, edges[k], edges[k + 1], prefix if k else b"", nifs,
                         k == len(edges) - 2, batch))
    return out


# -- the worker ------------------------------------------------------------------------------


class _Bounded:
    """The bytes ``[start, end)`` of an open file as a raw stream."""

    __slots__ = ("_f", "_left")

    def __init__(self, f, left):
        self._f = f
        self._left = left

    def read(self, n=-1):
        if self._left <= 0:
            return b""
        if n < 0 or n > self._left:
            n = self._left
        data = self._f.read(n)
        self._left -= len(data)
        return data

    def readinto(self, b):
        if self._left <= 0:
            return 0
        mv = memoryview(b)
        if len(mv) > self._left:
            mv = mv[:self._left]
        got = self._f.readinto(mv) or 0
        self._left -= got
        return got


def read_slice(sl: Slice) -> Part:
    """Read one slice with the single pass's walk and record what it hands over (the worker)."""
    ops: list = []
    app = ops.append

    def on_esp(ref, ts, *rest):
        app((1, ref[1], ts, rest))

    def on_frame(tag, number, ts, lt, data, wirelen, offset, iface):
        app((2, number, ts, lt, bytes(data), wirelen, offset, iface))

    def on_batch(tag, b):
        app((0, b))

    part = walk_slice(sl, on_esp, on_frame, on_batch if sl.batch else None)
    part.slice = sl
    if part.bad is None:
        part.ops = ops  # not shipped when it is not replayed
        if sl.esp is not None and sl.batch and _esp_only_here(ops):
            part.esp = _track_esp(sl, ops)
            if part.esp is not None:
                # the ESP travels as SA states: in the recording only the latest time of each
                # batch stays (the decoder's clock); the parent reads the slice again in the
                # rare case that it needs the packets (parallel._Replay._merge_esp)
                part.ops = [(3, float(op[1].ts.max())) if op[0] == 0 else
                            (3, op[2]) if op[0] == 1 else op for op in ops]
    return part


def _esp_frame(linktype, data):
    """``link.decode_frame``'s tuple of a frame and whether it carries ESP or AH (over IP, or
    ESP in UDP: what the ESP tracker sees); ``(None, False)`` for a frame without IP.  Raises
    what the decoders raise."""
    from dissect.vpn import link, udpencap
    from dissect.vpn.ip import IpProto

    r = link.decode_frame(linktype, data)
    if r is None:
        return None, False
    proto, sport, dport, l4off, end = r[3], r[4], r[5], r[6], r[7]
    if proto in (IpProto.ESP, IpProto.AH):
        return r, True
    return r, (proto == IpProto.UDP and sport >= 0 and
               udpencap.classify_udp(sport, dport, data, l4off + 8, end)[0] == udpencap.ESP)


def _esp_only_here(ops) -> bool:
    """No frame of the general path can give an ESP or AH event (ESP/AH over IP, fragments,
    TCP, ESP in UDP of another shape): all the slice's ESP is in the recording's ESP ops, so an
    ESP tracker fed with those alone sees every packet of its SAs."""
    from dissect.vpn.errors import DissectError
    from dissect.vpn.ip import IpProto

    for op in ops:
        if op[0] != 2:
            continue
        try:
            r, esp = _esp_frame(op[3], op[4])
        except DissectError:
            continue  # the general path counts a decode error: no event
        except Exception:  # noqa: BLE001 - whatever the general path would make of it
            return False
        if r is None:
            continue
        frag_off, mf = r[8], r[9]
        if esp or frag_off or mf or r[3] == IpProto.TCP:
            return False
    return True


def _track_esp(sl, ops):
    """The slice's ESP through a fresh tracker, in order (refs numbered from the slice's start)."""
    from pcapvpn.limits import Limits
    from pcapvpn.track.esp import SliceEspTracker

    thresholds, limits = sl.esp
    et = SliceEspTracker(thresholds, limits or Limits())
    tag = sl.index
    for op in ops:
        if op[0] == 0:
            et.esp_batch(tag, op[1])
        elif op[0] == 1:
            et.esp((tag, op[1]), op[2], *op[3])
    return et.summary()


def walk_slice(sl: Slice, on_esp, on_frame, on_batch=None, on_tcp=None, on_checkpoint=None
               ) -> Part:
    """Walk one slice (:meth:`dissect.vpn.capture.reader._Reader.walk`, the callbacks as there; frame
    numbers counted from the slice's first record) and return its counters; ``on_checkpoint``
    None: the checkpoints are kept in the part."""
    from dissect.vpn.capture import open_capture
    from pcapvpn.sources import INDEX_EVERY, _checkpoint, _Prefixed

    part = Part(sl.number)
    with open(sl.path, "rb", buffering=0) as f:
        f.seek(sl.start)
        stream = _Prefixed(sl.prefix, _Bounded(f, sl.end - sl.start))
        reader = open_capture(stream)
        if sl.number:
            # offsets in the file: the prefix stands in for the bytes before the slice
            reader._base += sl.start - len(sl.prefix)
            if reader.format == "pcapng":
                reader._last_ts = float("nan")  # a block taking the time before: not first

        if on_checkpoint is None:
            def on_checkpoint(number, offset):
                part.checkpoints.append(_checkpoint(reader, number, offset))

        reader.walk(sl.index, on_esp, on_frame, on_checkpoint, INDEX_EVERY, on_batch, on_tcp)
        part.stats = reader.walk_stats
        part.damage = list(reader.damage)
        part.damage_more = list(reader.damage_more)
        part.size = reader.size
        part.isb = reader.isb
        part.drops = reader.drops
        part.ended = reader.ended
        part.cooked = reader.cooked
        part.iface_frames = getattr(reader, "iface_frames", None)
        part.notes = list(getattr(reader, "notes", ()))
        part.bad = _misfit(sl, reader, stream, part)
    return part


def _max_record(reader) -> int:
    """The largest record the reader takes for one (bigger: damage)."""
    maxcap = getattr(reader, "_maxcap", None)
    if maxcap is not None:
        return int(maxcap())
    from dissect.vpn.chain import PcapngRules

    return PcapngRules(reader.byteorder).max_block


def _misfit(sl, reader, stream, part) -> str | None:
    """Why the slice's reading is not the single pass's over the same bytes, or None."""
    if stream.error:
        return stream.error
    if not sl.last:
        if reader.size != sl.end:
            return f"read to {reader.size}, not to the cut at {sl.end}"
        # how damage is told apart and resynchronised depends on the bytes up to a few records
        # after it (dissect.vpn.chain: SYNC_RECORDS records; fewer at the end of the data):
        # damage that close to the cut may have been judged differently by the single pass
        guard = (SYNC_RECORDS + 1) * (_max_record(reader) + 16)
        for d in reader.damage:
            if d.offset + d.length + guard >= sl.end or d.trailing:
                return f"damage near the cut at {sl.end}"
        if reader.damage_more[0]:
            return f"damage near the cut at {sl.end}"
    if reader.format == "pcapng":
        if len(getattr(reader, "sections", ())) != 1 or len(reader.interfaces) != sl.nifs:
            return "a section or interface block inside the slice"
        if sl.number and part.notes:
            return "interface notes in a slice"
    if sl.number:
        for d in reader.damage:
            if d.before is None or d.before != d.before:
                return "damage before the slice's first packet"
        if getattr(reader, "_last_ts", 0.0) != getattr(reader, "_last_ts", 0.0) or (
                part.stats.get("first_ts") != part.stats.get("first_ts")):
            return "a block that takes the time of the block before the slice"
    return None


# -- the parent: merge and replay ------------------------------------------------------------


def _roundtrip(part):
    return pickle.loads(pickle.dumps(part, pickle.HIGHEST_PROTOCOL))


def _tick(ts):
    """An ESP batch of no packet whose latest time is ``ts``: handed to the decoder where a
    merged slice had ESP, it advances the decoder's clock (the fragment timeout) as the
    packets would, and gives the tracker nothing."""
    from dissect.vpn.batch import EspBatch, np

    none = np.zeros(0, dtype=np.int64)
    return EspBatch(4, none, np.array([ts]), none.astype(np.uint32), none.astype(np.uint32),
                    none, none, none, none, none)


def _sa_rows(b, key):
    """The rows of batch ``b`` that belong to the SA ``key`` ((dst, spi) or, multicast,
    (dst, spi, src); packed addresses)."""
    from dissect.vpn.batch import np

    dst, spi = key[0], key[1]
    if b.ipver == 4:
        if len(dst) != 4:
            return None
        m = (b.dst == int.from_bytes(dst, "big")) & (b.spi == spi)
        if len(key) == 3:
            m &= b.src == int.from_bytes(key[2], "big")
    else:
        if len(dst) != 16:
            return None
        m = (b.dst == np.frombuffer(dst, dtype=np.uint8)).all(axis=1) & (b.spi == spi)
        if len(key) == 3:
            m &= (b.src == np.frombuffer(key[2], dtype=np.uint8)).all(axis=1)
    return m


def _of_sas(b, keys):
    """The packets of batch ``b`` of the SAs ``keys``, in order (None: none)."""
    m = None
    for key in keys:
        r = _sa_rows(b, key)
        if r is not None:
            m = r if m is None else (m | r)
    if m is None or not m.any():
        return None
    return b.take(m.nonzero()[0])


def _esp_key_in(args, keys) -> bool:
    """Whether the ESP event ``(ipver, src, dst, sport, dport, spi, ...)`` is of one of ``keys``."""
    src, dst, spi = args[1], args[2], args[5]
    return (dst, spi) in keys or (dst, spi, src) in keys


def _again(part):
    """The full recording of a slice whose ESP came as SA states: read again here."""
    import dataclasses

    again = read_slice(dataclasses.replace(part.slice, esp=None))
    if again.bad is not None or again.stats != part.stats:
        raise Fallback(f"slice {part.number} read again differs")
    return again.ops


def _guarded(parts):
    """The parts; a worker that failed (a bug, memory, a lost Dask worker) makes the analysis
    one pass instead of ending it."""
    it = iter(parts)
    while True:
        try:
            part = next(it)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - whatever a worker raised: one pass instead
            raise Fallback(f"a worker failed ({type(exc).__name__}: {exc})") from exc
        yield part


class _Replay:
    """Stands in for the capture reader behind a :class:`pcapvpn.sources.Source`: its
    :meth:`walk` replays the slices' recordings in file order (frame numbers made global), and
    the reader's counters are the slices' merged once the walk is over."""

    def __init__(self, head, first, parts, judge=True):
        self._judge = judge  # False: the cuts were given (tests): never fall back on ESP share
        self._head = head
        self._first = first  # the first Slice, read in this process (None: a worker read it)
        self._parts = parts  # an iterator of Part, in slice order
        self.format = head.format
        self.interfaces = head.interfaces
        self.byteorder = head.byteorder
        self.version = head.version
        self.sections = getattr(head, "sections", None)
        self.isb: dict = {}
        self.drops: dict = {}
        self.ended = None
        self.cooked: dict = {}
        self.damage: list = []
        self.damage_more = [0, 0, 0, 0.0]
        self.size = None
        self.walk_stats = None
        #: the analysis's pcapvpn.track.esp.EspTracker (set once it exists): slices whose ESP the
        #: workers tracked are merged into it as SA states; None: every packet replayed
        self.esp_tracker = None
        self.notes: list = []
        self._ifn: dict = {}
        self.iface_frames = {} if head.format == "pcapng" else None
        #: slices replayed so far
        self.slices = 0

    @property
    def warnings(self) -> list:
        from dissect.vpn.capture.reader import _Reader

        out = _Reader.warnings.fget(self)
        if self.format == "pcapng":
            out = sorted(out + self.notes, key=lambda w: w[0])
        return out

    def walk(self, tag, on_esp, on_frame, on_checkpoint=None, every=1024, on_batch=None,
             on_tcp=None):
        before = 0  # records of the slices before this one
        stats = {"frames": 0, "numbered": 0, "bytes": 0, "truncated": 0, "first_ts": None,
                 "last_ts": None, "out_of_order": 0, "linktypes": {}}
        if self._first is not None:
            # the first slice: read here, straight into the decoder as a single pass does,
            # while the workers read the others
            esp = [0]

            def on_esp_counted(*args):
                esp[0] += 1
                on_esp(*args)

            def on_batch_counted(t, b):
                esp[0] += len(b.ts)
                on_batch(t, b)

            part = walk_slice(self._first, on_esp_counted, on_frame,
                              on_batch_counted if on_batch is not None else None, on_tcp,
                              on_checkpoint)
            if part.bad is not None:
                raise Fallback(part.bad)
            frames = part.stats["frames"]
            if self._judge and frames >= MIN_SAMPLE and esp[0] < MIN_ESP_SHARE * frames:
                # the workers hand every frame that is not ESP to this process as bytes (the
                # batched plaintext lane stays in a single pass): on such a capture the
                # replay is slower than one pass, so one pass it is
                raise Fallback(f"{esp[0]} of the first {frames} frames are ESP: the slices "
                               f"would hand most frames to one process")
            self._merge(part, stats)
            self.slices += 1
            before = part.stats["numbered"]
        for part in _guarded(self._parts):
            if part.bad is not None:
                raise Fallback(part.bad)
            if self._judge and self.slices <= 1 and part.ops is not None:
                # the first worker's slice too (the parent's may be small or unlike the rest)
                shipped = sum(1 for op in part.ops if op[0] == 2)
                frames = part.stats["frames"]
                if frames >= MIN_SAMPLE and frames - shipped < MIN_ESP_SHARE * frames:
                    raise Fallback(f"{frames - shipped} of {frames} frames of slice "
                                   f"{part.number} are ESP: the slices would hand most frames "
                                   f"to one process")
            if self._merge_esp(part, tag, on_esp, on_frame, on_batch, before):
                pass
            else:
                self._apply(part.ops, tag, on_esp, on_frame, on_batch, before)
            if on_checkpoint is not None:
                for ck in part.checkpoints:
                    on_checkpoint(ck[0] + before, ck[1])
            self._merge(part, stats)
            self.slices += 1
            before += part.stats["numbered"]
        self.walk_stats = stats

    @staticmethod
    def _apply(ops, tag, on_esp, on_frame, on_batch, before, keys=None) -> None:
        """Replay a recording (``keys``: only the ESP of these SAs, nothing else)."""
        for op in ops:
            kind = op[0]
            if kind == 0:
                b = op[1]
                if keys is not None:
                    b = _of_sas(b, keys)
                    if b is None:
                        continue
                if before:
                    b.num += before
                if on_batch is not None:
                    on_batch(tag, b)
                else:
                    for ev in b.events(tag):
                        on_esp(*ev)
            elif kind == 1:
                if keys is not None and not _esp_key_in(op[3], keys):
                    continue
                on_esp((tag, op[1] + before), op[2], *op[3])
            elif keys is None:
                _k, num, ts, lt, data, wirelen, offset, iface = op
                on_frame(tag, num + before, ts, lt, data, wirelen, offset, iface)

    def _merge_esp(self, part, tag, on_esp, on_frame, on_batch, before) -> bool:
        """The slice's ESP merged as SA states (the worker tracked them): the other frames
        replayed, the decoder's clock advanced at each ESP batch's place, then the SAs merged;
        those that cannot be continued exactly get their packets one by one.  False when the
        slice must be replayed packet by packet (no summary, no tracker, no room)."""
        et = self.esp_tracker
        summ = part.esp
        if summ is None:
            return False
        sas, opened = summ
        if et is None or on_batch is None or (
                et.max_sas is not None and len(et._sas) + len(sas) >= et.max_sas):
            self._apply(_again(part), tag, on_esp, on_frame, on_batch, before)
            return True
        from pcapvpn.track.esp import merge_slice

        for op in part.ops:
            if op[0] == 3:
                on_batch(tag, _tick(op[1]))
            else:
                _k, num, ts, lt, data, wirelen, offset, iface = op
                on_frame(tag, num + before, ts, lt, data, wirelen, offset, iface)
        todo = merge_slice(et, sas, opened, before)
        if todo:
            self._apply(_again(part), tag, on_esp, on_frame, on_batch, before, set(todo))
        return True

    def _merge(self, part, stats) -> None:
        from dissect.vpn.capture import DAMAGE_KEEP

        st = part.stats
        for k in ("frames", "numbered", "bytes", "truncated", "out_of_order"):
            stats[k] += st[k]
        for k, pick in (("first_ts", min), ("last_ts", max)):
            if st[k] is not None:
                stats[k] = st[k] if stats[k] is None else pick(stats[k], st[k])
        lts = stats["linktypes"]
        for lt, c in st["linktypes"].items():
            lts[lt] = lts.get(lt, 0) + c
        for d in part.damage:
            if len(self.damage) < DAMAGE_KEEP:
                self.damage.append(d)
                continue
            more = self.damage_more
            more[0] += 1
            more[1] += d.length
            more[2] += d.frames
            if d.before is not None and d.after is not None and d.after > d.before:
                more[3] += d.after - d.before
        for i, v in enumerate(part.damage_more):
            self.damage_more[i] += v
        self.size = part.size
        for gi, counters in part.isb.items():
            self.isb.setdefault(gi, {}).update(counters)
        for gi, n in part.drops.items():
            self.drops[gi] = self.drops.get(gi, 0) + n
        if part.ended is not None and (self.ended is None or part.ended > self.ended):
            self.ended = part.ended
        for key, n in part.cooked.items():
            self.cooked[key] = self.cooked.get(key, 0) + n
        if part.iface_frames is not None and self.iface_frames is not None:
            for gi, n in part.iface_frames.items():
                self.iface_frames[gi] = self.iface_frames.get(gi, 0) + n
        self.notes.extend(part.notes)


def _serial(fn, items):
    """The workers' map run in this process (tests): each part pickled and unpickled as a
    worker's would be."""
    for it in items:
        yield _roundtrip(fn(it))


def plan(size: int, jobs: int, fixed: int = FIXED_BYTES) -> list[int]:
    """Nominal cut offsets for a file of ``size`` bytes and ``jobs`` processes: a first slice
    read by this process, then ``SLICES_PER_JOB`` slices for each of the ``jobs - 1`` workers.
    The first slice is what balances the processes: this one also starts the interpreter,
    imports, merges the workers' states and runs the rules and the report (``FIXED_BYTES``: as
    long as reading that much of a capture takes), so it reads less than an equal share."""
    w = jobs - 1
    share = max(0.0, (1.0 / w - fixed / size) / (1.0 + 1.0 / w)) if size else 0.0
    first = int(size * share)
    n = max(w * SLICES_PER_JOB, math.ceil((size - first) / MAX_SLICE))
    return [first] + [first + (size - first) * i // n for i in range(1, n)]


def sliced_sources(paths, jobs, batch=True, cuts=None, pool=None, esp=None):
    """Ordinary :class:`pcapvpn.sources.Source` objects of ``paths`` (file indices 0, 1, ...)
    whose walks read each file's first slice in this process and replay the other slices, read
    by ``jobs - 1`` worker processes (``pool``: ``"serial"`` reads them in this process, for
    tests; a :class:`DaskPool`: the tasks of a Dask cluster).  ``cuts``: the record offsets to cut
    at, ``{file index: [offsets]}`` (tests; default: :func:`plan` and :func:`cut_points`).
    Several files are read one after the other in the order of their first packets (what a
    single pass's merge by time gives when their times do not overlap: :func:`in_order`).
    Returns ``(sources, order, close)``; ``close()`` stops the workers."""
    from pcapvpn.sources import Source, _Prefixed

    heads = [_head(p) for p in paths]
    order = sorted(range(len(paths)), key=lambda i: (_first_time(paths[i]), i))
    todo = {}
    for k, i in enumerate(order):
        reader, prefix, nifs, first = heads[i]
        if cuts is not None:
            at = cuts.get(i, []) if isinstance(cuts, dict) else cuts
        else:
            # the first file's first slice also leaves room for this process's own work
            at = plan(os.path.getsize(paths[i]), jobs, FIXED_BYTES if k == 0 else 0)
            at, prefix, nifs = cut_points(paths[i], at, head=heads[i])
        todo[i] = slices(paths[i], i, at, prefix, nifs, batch)
        for sl in todo[i][1:]:
            sl.esp = esp
    work = [sl for i in order for sl in todo[i][1:]]
    close = _noop
    if pool == "serial":
        parts = _serial(read_slice, work)
    elif pool is not None:
        parts = pool.imap(read_slice, work)
        close = pool.terminate
    elif work:
        import multiprocessing

        n = max(1, min(jobs - 1, len(work)))
        workers = multiprocessing.get_context("fork").Pool(n)
        close = workers.terminate
        # while this process reads its own first slice the workers read on: as many slices as
        # that takes, beyond the AHEAD per worker
        first = todo[order[0]][0]
        ahead = AHEAD * n + math.ceil((first.end - first.start) / MAX_SLICE)
        parts = _ahead(workers, read_slice, work, ahead)
    else:
        parts = iter(())
    parts = iter(parts)
    sources = []
    for i, path in enumerate(paths):
        # the header as a single pass reads it (its interfaces, sections, byte order)
        replay = _Replay(heads[i][0], todo[i][0], _take(parts, len(todo[i]) - 1),
                         judge=cuts is None)
        replay.first_time = _first_time(path)
        raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by Source
        sources.append(Source(path, i, replay, raw, _Prefixed(b"", raw), True, False))
    return sources, order, close


def _take(it, n):
    """The next ``n`` items of ``it`` (lazily: when this file's turn comes)."""
    for _ in range(n):
        yield next(it)


def _first_time(path):
    """The time of the first packet of ``path`` in file order (None: no packet)."""
    from dissect.vpn.capture import NONPACKET, open_capture
    from pcapvpn.sources import _Prefixed

    with open(path, "rb", buffering=0) as f:
        for rec in open_capture(_Prefixed(b"", f)).records():
            if rec[1] != NONPACKET:
                return rec[0]
    return None


def check_order(sources, order, k) -> None:
    """Before the ``k``-th file of ``order`` is read: every frame of the files read before it
    comes before its first frame in a single pass's merge by time (``heapq.merge`` on (time,
    file, number)), so reading the files one after the other gives the same frames in the same
    order; else :class:`Fallback` (overlapping files are merged frame by frame in one pass)."""
    q = order[k]
    t = sources[q].reader.first_time
    if t is None:
        return
    for p in order[:k]:
        last = sources[p].last_ts
        if last is not None and (last > t or (last == t and p > q)):
            raise Fallback(f"the times of {sources[p].name} and {sources[q].name} overlap")


def _noop():
    return None


def _ahead(pool, fn, items, ahead):
    """``pool.imap(fn, items)`` with at most ``ahead`` results read ahead of the consumer (a
    plain imap would read every slice while the parent is still replaying the first)."""
    from collections import deque

    it = iter(items)
    pending: deque = deque()
    for x in it:
        pending.append(pool.apply_async(fn, (x,)))
        if len(pending) >= ahead:
            break
    while pending:
        res = pending.popleft().get()
        for x in it:
            pending.append(pool.apply_async(fn, (x,)))
            break
        yield res


class DaskPool:
    """The workers of a Dask distributed cluster (``analyze --dask SCHEDULER``; the optional
    ``dask`` extra) in place of local worker processes: each slice is read by a Dask task
    (:func:`read_slice`, so the capture file must be readable at the same path on the workers:
    a shared filesystem), the parts come back in slice order and are replayed by the same merge
    as local workers'.  ``scheduler``: an address (``tcp://host:8786``), a
    ``distributed.Client`` or anything ``Client`` accepts (a ``LocalCluster``)."""

    def __init__(self, scheduler):
        try:
            from distributed import Client
        except ImportError:
            raise RuntimeError("--dask needs the dask extra: pip install 'pcapvpn[dask]'") from None
        self._own = not isinstance(scheduler, Client)
        self.client = Client(scheduler) if self._own else scheduler
        self._futures: list = []

    def workers(self) -> int:
        """Threads of the cluster's workers (at least 1)."""
        return max(1, sum(self.client.nthreads().values()))

    def imap(self, fn, items):
        self._futures = self.client.map(fn, list(items), pure=False)
        for i, f in enumerate(self._futures):
            yield f.result()
            self._futures[i] = None  # the part is the replay's now
            f.release()

    def terminate(self) -> None:
        for f in self._futures:
            if f is not None:
                f.cancel()
        self._futures = []
        if self._own:
            self.client.close()


def esp_share(path: str, sample: int = 2000) -> float | None:
    """The share of ESP (ESP/AH over IP or in UDP, the packets a worker tracks itself) among
    the first ``sample`` packets of ``path``; None: fewer than MIN_SAMPLE packets or unreadable.
    Costs a few milliseconds: it decides whether slices pay before any worker starts."""
    from dissect.vpn.capture import NONPACKET, open_capture
    from dissect.vpn.errors import DissectError
    from pcapvpn.sources import _Prefixed

    esp = n = 0
    try:
        with open(path, "rb", buffering=0) as f:
            for rec in open_capture(_Prefixed(b"", f)).records():
                if rec[1] == NONPACKET:
                    continue
                n += 1
                try:
                    esp += _esp_frame(rec[1], rec[2])[1]
                except (DissectError, ValueError, IndexError):
                    pass
                if n >= sample:
                    break
    except (OSError, DissectError, ValueError):
        return None
    return esp / n if n >= MIN_SAMPLE else None


def jobs_for(paths, options) -> int:
    """Workers worth starting for ``paths`` with ``options.jobs`` (1: a single pass): eligible
    files (:func:`eligible`) of at least ``MIN_BYTES`` in all, or any eligible files when the cuts
    are given (``options.slice_at``, tests)."""
    jobs = options.jobs if options.jobs and options.jobs > 0 else available_cores()
    if isinstance(options.workers, DaskPool):
        jobs = options.workers.workers() + 1
    if jobs <= 1 and not options.slice_at or not eligible(paths, options):
        return 1
    if options.slice_at is not None:
        return max(2, jobs)
    size = sum(os.path.getsize(p) for p in paths)
    if size < MIN_BYTES:
        return 1
    share = esp_share(paths[0])
    if share is not None and share < MIN_ESP_SHARE:
        # the workers hand every frame that is not ESP to this process as bytes: slices of a
        # capture that is mostly not ESP are slower than one pass
        return 1
    return max(1, min(jobs, math.ceil(size / (MIN_BYTES // 2))))
