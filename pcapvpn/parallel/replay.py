"""The parent's side of :mod:`pcapvpn.parallel`: the slices' recordings replayed in file order
behind an ordinary :class:`pcapvpn.sources.Source` (:class:`_Replay`), the ESP SA states of the
workers merged, the readers' counters added up, and the order check of several files."""

from __future__ import annotations

import pickle

from pcapvpn.parallel.slicing import MIN_SAMPLE, MIN_SHARE, Fallback
from pcapvpn.parallel.worker import read_slice, walk_slice


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


def _lane(op, tag, on_tcp, before) -> None:
    """A run of the plaintext TCP lane (:func:`pcapvpn.parallel.worker._lane_op`) to the decoder's
    lane, as the reader hands it over in one pass; :class:`Fallback` when the decoder has no lane
    or another one, or refuses the run (a TCP stream it follows: the single pass hands such a
    run's frames to the general path, whose bytes the slice did not keep)."""
    _k, lt, ifaces, headers, run = op
    if before:
        run["number"] = [n + before for n in run["number"]]
    if on_tcp is None:
        raise Fallback("plaintext runs without the decoder's TCP lane")
    if not on_tcp[1](tag, lt, ifaces, headers, run):
        raise Fallback(f"plaintext run at frame {run['number'][0]} on a TCP stream the decoder "
                       f"follows")


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
        #: the analysis's UDP flows framed as on 4500 on other ports (Tracker.encap_flows): once
        #: any is known, a slice's general-path UDP may be ESP its worker did not see as such,
        #: so its ESP is replayed packet by packet, never merged as SA states
        self.encap_flows: dict = {}
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
        stats = self._totals()
        if self._first is not None:
            # the first slice: read here, straight into the decoder as a single pass does,
            # while the workers read the others; what the workers would handle themselves
            # (ESP, plaintext TCP of the lane) counted
            kept = [0]

            def on_esp_counted(*args):
                kept[0] += 1
                on_esp(*args)

            def on_batch_counted(t, b):
                kept[0] += len(b.ts)
                on_batch(t, b)

            def on_tcp_counted(t, lt, ifaces, buf, run):
                took = on_tcp[1](t, lt, ifaces, buf, run)
                if took:
                    kept[0] += len(run["ts"])
                return took

            part = walk_slice(self._first, on_esp_counted, on_frame,
                              on_batch_counted if on_batch is not None else None,
                              (on_tcp[0], on_tcp_counted) if on_tcp is not None else None,
                              on_checkpoint)
            if part.bad is not None:
                raise Fallback(part.bad)
            frames = part.stats["frames"]
            if self._judge and frames >= MIN_SAMPLE and kept[0] < MIN_SHARE * frames:
                # the workers hand every other frame to this process as its bytes: on such a
                # capture the replay is slower than one pass, so one pass it is
                raise Fallback(f"{kept[0]} of the first {frames} frames are ESP or plaintext "
                               f"TCP: the slices would hand most frames to one process")
            self._merge(part, stats)
            self.slices += 1
            before = part.stats["numbered"]
        for part in _guarded(self._parts):
            if part.bad is not None:
                raise Fallback(part.bad)
            if _starts_earlier(part, stats):
                raise Fallback(f"not in time order: slice {part.number} starts earlier than the "
                               f"slices before it end")
            lane = part.slice.lane if part.slice is not None else None
            if lane is not None and (on_tcp is None or on_tcp[0] != lane):
                raise Fallback("the slices' plaintext lane is not the decoder's")
            if self._judge and self.slices <= 1 and part.ops is not None:
                # the first worker's slice too (the parent's may be small or unlike the rest)
                shipped = sum(1 for op in part.ops if op[0] == 2)
                frames = part.stats["frames"]
                if frames >= MIN_SAMPLE and frames - shipped < MIN_SHARE * frames:
                    raise Fallback(f"{frames - shipped} of {frames} frames of slice "
                                   f"{part.number} are ESP or plaintext TCP: the slices would "
                                   f"hand most frames to one process")
            before = self._replay(part, tag, (on_esp, on_frame, on_batch, on_tcp),
                                  on_checkpoint, stats, before)
        self.walk_stats = stats

    def _replay(self, part, tag, calls, on_checkpoint, stats, before) -> int:
        """One worker's part replayed (its ESP merged as SA states where it can be) and its
        counters merged; returns the records before the next slice."""
        if not self._merge_esp(part, tag, calls, before):
            self._apply(part.ops, tag, calls, before)
        if on_checkpoint is not None:
            for ck in part.checkpoints:
                on_checkpoint(ck[0] + before, ck[1])
        self._merge(part, stats)
        self.slices += 1
        return before + part.stats["numbered"]

    @staticmethod
    def _totals() -> dict:
        """The walk's counters before any slice (:meth:`_merge` adds the slices' up)."""
        return {"frames": 0, "numbered": 0, "bytes": 0, "truncated": 0, "first_ts": None,
                "last_ts": None, "out_of_order": 0, "linktypes": {}, "step_back": 0.0,
                "step_frame": None, "step_from_ts": None, "first_frame": None}

    @staticmethod
    def _apply(ops, tag, calls, before, keys=None) -> None:
        """Replay a recording (``keys``: only the ESP of these SAs, nothing else) to ``calls``,
        the walk's ``(on_esp, on_frame, on_batch, on_tcp)``."""
        on_esp, on_frame, on_batch, on_tcp = calls
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
            elif keys is not None:
                continue
            elif kind == 2:
                _k, num, ts, lt, data, wirelen, offset, iface = op
                on_frame(tag, num + before, ts, lt, data, wirelen, offset, iface)
            else:
                _lane(op, tag, on_tcp, before)

    def _merge_esp(self, part, tag, calls, before) -> bool:
        """The slice's ESP merged as SA states (the worker tracked them): the other frames
        replayed, the decoder's clock advanced at each ESP batch's place, then the SAs merged;
        those that cannot be continued exactly get their packets one by one.  False when the
        slice must be replayed packet by packet (no summary, no tracker, no room)."""
        et = self.esp_tracker
        summ = part.esp
        if summ is None:
            return False
        sas, opened = summ
        on_batch = calls[2]
        if et is None or on_batch is None or self.encap_flows or (
                et.max_sas is not None and len(et._sas) + len(sas) >= et.max_sas):
            self._apply(_again(part), tag, calls, before)
            return True
        from pcapvpn.track.esp import merge_slice

        # the recording without its ESP: each (3, ts) an empty batch at the ESP's place
        self._apply([(0, _tick(op[1])) if op[0] == 3 else op for op in part.ops], tag, calls,
                    before)
        todo = merge_slice(et, sas, opened, before)
        if todo:
            self._apply(_again(part), tag, calls, before, set(todo))
        return True

    def _merge(self, part, stats) -> None:
        from dissect.vpn.capture import DAMAGE_KEEP

        st = part.stats
        _merge_steps(stats, st)
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


def _starts_earlier(part, stats) -> bool:
    """Whether a frame of the slice is earlier than the latest frame of the slices before it:
    then its own count of frames out of time order is not the single pass's (those earlier than
    the slices before it but in order within the slice are not counted), so the slice cannot be
    merged as it is."""
    first, last = part.stats["first_ts"], stats["last_ts"]
    return first is not None and last is not None and first < last


def _merge_steps(stats, st) -> None:
    """The largest step back in time of the slices so far (``stats``) and of the next one
    (``st``, its frames numbered from 1): the slice's own, or the one its earliest frame makes
    from the latest frame of the slices before it (a cut may lie inside a step back); called
    before the counts are added (``stats["numbered"]``: the frames before the slice).  A slice
    that starts earlier than the slices before it end (:func:`_starts_earlier`) is not merged
    (files: ``Fallback``) or was walked with ``time_floor`` set to their latest time (the rest
    of a stream read here: its counts are then the single pass's); otherwise a slice that
    counted no frame late but starts earlier adds one to ``out_of_order``, a lower bound."""
    before = stats["numbered"]
    if st.get("first_frame") is not None and (stats["first_ts"] is None
                                              or st["first_ts"] < stats["first_ts"]):
        stats["first_frame"] = st["first_frame"] + before
    if st.get("step_frame") is not None and st["step_back"] > stats["step_back"]:
        stats["step_back"] = st["step_back"]
        stats["step_frame"] = st["step_frame"] + before
        stats["step_from_ts"] = st["step_from_ts"]
    last, first = stats["last_ts"], st["first_ts"]
    if last is None or first is None or first >= last:
        return
    if not st["out_of_order"]:
        stats["out_of_order"] += 1
    if last - first > stats["step_back"]:
        stats["step_back"] = last - first
        stats["step_frame"] = st["first_frame"] + before
        stats["step_from_ts"] = last


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
