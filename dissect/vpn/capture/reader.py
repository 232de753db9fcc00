"""The base of both readers: damage bookkeeping, resynchronisation after a damaged range
(:mod:`dissect.vpn.chain`), and the generic push walk over :meth:`records`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Iterator

from dissect.vpn import fast as _fast
from dissect.vpn.capture.common import (
    NONPACKET,
    Bytes,
    Callback,
    Interface,
    Record,
    Stream,
    WalkStats,
    _walk_stats,
)
from dissect.vpn.capture.damage import _UNKNOWN, DAMAGE_KEEP, Damage, Peeked
from dissect.vpn.link import cooked_info
from dissect.vpn.types import Buffer

if TYPE_CHECKING:
    from dissect.vpn.chain import Rules

#: bytes read from the stream at a time; memory is bounded by one chunk plus the largest record
CHUNK = 1 << 20


class _Reader:
    __slots__ = ("_stream", "_buf", "_base", "_started", "format", "interfaces", "isb",
                 "drops", "byteorder", "version", "walk_stats", "damage", "damage_more", "size",
                 "_pending", "cooked", "ended", "time_floor")

    _stream: Stream
    #: bytes read past the file header, not walked yet
    _buf: bytes | bytearray
    _base: int
    _started: bool
    #: "pcap" or "pcapng"
    format: str
    interfaces: list[Interface]
    #: interface statistics (pcapng ISB counters) per global interface index
    isb: dict[int, dict[str, int]]
    #: packets the capture reports lost, per global interface index
    drops: dict[int, int]
    #: "<" or ">"
    byteorder: str
    version: tuple[int, int]
    walk_stats: WalkStats
    damage: list[Damage]
    damage_more: list[Any]
    size: int | None
    _pending: Damage | None
    cooked: dict[tuple[int, int | None, int], int]
    ended: float | None
    #: bytes of a record (block) header: less left at the end of the data is a cut-off header
    _HEADER: ClassVar[int]

    def _init_damage(self) -> None:
        #: damaged ranges, in file order (see :class:`Damage`)
        self.damage = []
        #: beyond DAMAGE_KEEP ranges: [ranges, bytes, frames, seconds between their neighbours]
        self.damage_more = [0, 0, 0, 0.0]
        #: bytes of the stream once it has been read to its end (None before)
        self.size = None
        #: the damaged range whose ``after`` waits for the next bytes to be read
        self._pending = None
        #: Linux cooked frames (``tcpdump -i any``): ``{(interface, SLL2 interface index or None,
        #: packet type): frames}`` (dissect.vpn.link.cooked_info, PACKET_TYPES)
        self.cooked = {}

    def _floor(self) -> float:
        """The latest time before the first record the walk reads (``time_floor``, set by whoever
        walks a later part of a capture: its records are counted late against what came before;
        ``walk_stats``' ``last_ts`` is then at least it); -inf when unset."""
        floor: float | None = getattr(self, "time_floor", None)
        return float("-inf") if floor is None else floor

    def _cook(self, iface: int, linktype: int, data: Buffer, off: int, end: int | None) -> None:
        info = cooked_info(linktype, data, off, end)
        if info is not None:
            key = (iface, info[0], info[1])
            self.cooked[key] = self.cooked.get(key, 0) + 1

    def _begin(self) -> None:
        if self._started:
            raise RuntimeError("records() can be iterated only once (the stream is consumed)")
        self._started = True

    @property
    def warnings(self) -> list[tuple[int, str]]:
        """``(offset, reason)`` of every damaged range (and a count of those not kept)."""
        out = [(d.offset, d.text()) for d in self.damage]
        more = self.damage_more
        if more[0]:
            out.append((self.damage[-1].offset + self.damage[-1].length,
                        f"{more[0]} more damaged range(s): {more[1]} bytes, {more[2]} record(s)"))
        return out

    def _note(self, offset: int, length: int, frames: int, numbered: bool, reason: str,
              before: float | None, after: Peeked, kind: str) -> None:
        """Record a damaged range (merged with the previous one when it continues it).
        ``after`` may be ``_UNKNOWN``: the record after the range is not read yet; the walk
        settles it (:meth:`_settle`) when it has read more."""
        pending = after is _UNKNOWN
        if after is _UNKNOWN:
            after = None
        self._pending = None
        d = self.damage
        if d:
            last = d[-1]
            if (last.offset + last.length == offset and last.kind == kind
                    and last.numbered == numbered and last.reason == reason):
                last.length += length
                last.frames += frames
                last.after = after
                if pending:
                    self._pending = last
                return
        if len(d) >= DAMAGE_KEEP:
            more = self.damage_more
            more[0] += 1
            more[1] += length
            more[2] += frames
            if before is not None and after is not None and after > before:
                more[3] += after - before
            return
        e = Damage(offset, length, frames, numbered, reason, before, after, kind)
        d.append(e)
        if pending:
            self._pending = e

    def _peek(self, buf: Bytes, p: int, n: int) -> Peeked:
        """The timestamp of the packet record at ``p`` (None: not a packet record; _UNKNOWN:
        its header is not read yet)."""
        raise NotImplementedError

    def _runs_past(self, buf: Bytes, pos: int) -> str:
        """The reason for a record at ``pos`` whose length runs past the end of the data."""
        raise NotImplementedError

    def _cut_off(self, buf: Bytes, pos: int, n: int) -> tuple[int, str]:
        """``(records lost, reason)`` for the data ending inside the record at ``pos``."""
        raise NotImplementedError

    def records(self) -> Iterator[Record]:
        """One record tuple per record, in file order (see the package docstring)."""
        raise NotImplementedError

    def _settle(self, buf: Bytes, pos: int, n: int) -> None:
        """More bytes were read: the time after the pending damaged range, from the record at
        ``pos`` (the first one after it)."""
        v = self._peek(buf, pos, n)
        if v is not _UNKNOWN and self._pending is not None:
            self._pending.after = v
            self._pending = None

    def _eof(self, end: int) -> None:
        """The data ended at ``end``: mark the damage that runs up to it as trailing."""
        self.size = end
        self._pending = None
        cursor = end
        for d in reversed(self.damage):
            if d.offset + d.length != cursor:
                break
            d.trailing = True
            cursor = d.offset

    def _recover(self, head: Buffer, offset: int, reason: str,
                 before: float | None) -> tuple[int, bytes, bool]:
        """Reading failed at ``offset`` (``head``: the bytes from there that are already read):
        skip to the next valid chain of records (:func:`dissect.vpn.chain.resync`, reading on),
        and note the skipped range.  Returns ``(skipped, rest, eof)``."""
        from dissect.vpn import chain

        rules = self.chain_rules()
        skipped, rest, eof = chain.resync(rules, head, self._read)
        times = [] if eof else rules.times(rest, 0, len(rest), 1)
        after = times[0] if times else None
        self._note(offset, skipped, 0, False, reason, before, after, "unreadable")
        return skipped, rest, eof

    def _end(self, buf: Bytes, pos: int, n: int, base: int, before: float | None) -> int | None:
        """The data ends inside the record (or block) at ``pos``: one cut off, or a header whose
        length is garbage with valid records after it (:func:`dissect.vpn.chain.find` on what is
        left, at the end of the data).  Returns the position in ``buf`` where reading goes on, or
        None (damage at the end)."""
        left = n - pos
        if left > self._HEADER:
            from dissect.vpn import chain

            rules = self.chain_rules()
            found, _r = chain.find(rules, buf, pos + 1, n, True)
            if found is not None:
                times = rules.times(buf, found, n, 1)
                self._note(base + pos, found - pos, 0, False, self._runs_past(buf, pos), before,
                           times[0] if times else None, "unreadable")
                return found
        frames, reason = self._cut_off(buf, pos, n)
        self._note(base + pos, left, frames, False, reason, before, None, "tail")
        return None

    def _read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the stream (empty at its end)."""
        return bytes(self._stream.read(size) or b"")

    def _more(self, buf: bytes | bytearray, pos: int, n: int,
              need: int) -> bytes | bytearray | None:
        """Read on, at least ``need`` bytes and a ``CHUNK`` at a time: the bytes of ``buf`` from
        ``pos`` (to its end ``n``) followed by the new ones, or None at the end of the stream.
        A damaged range waiting for the time after it (:meth:`_note`) is settled on them."""
        chunk = self._stream.read(need if need > CHUNK else CHUNK)
        if not chunk:
            return None
        buf = buf[pos:] + chunk if pos < n else chunk
        if self._pending is not None:
            self._settle(buf, 0, len(buf))
        return buf

    def chain_rules(self) -> Rules:
        """The rules of a valid record chain for this capture (:mod:`dissect.vpn.chain`): what a
        resynchronisation after damage looks for, and what a reader of a slice of the same
        capture needs to find record boundaries."""
        raise NotImplementedError

    def walk(self, tag: Any, on_esp: Callback, on_frame: Callback,
             on_checkpoint: Callback | None = None, every: int = 1024,
             on_batch: Callback | None = None, on_tcp: Any = None) -> None:
        """Push every record instead of yielding it (the analysis hot path).

        Ethernet frames carrying ESP or UDP-4500 ESP of the common shape
        (:func:`dissect.vpn.fast.esp_at`) go to ``on_esp((tag, number), ts, 4, src, dst, sport,
        dport, spi, seq, esp_len)`` — the argument list of the ESP event of docs/internals.md —
        without a record tuple; every other record to ``on_frame(tag, number, ts, linktype, data,
        wirelen, offset, iface)`` (``iface``: the global interface index, as in :meth:`records`).  Numbers are 1-based as Wireshark's; non-packet records (and damaged
        records Wireshark numbers) use up their number.  Counters are left in ``walk_stats``:
        ``frames``, ``bytes`` (captured), ``first_ts``/``last_ts`` (earliest/latest),
        ``out_of_order``, ``step_back``/``step_frame``/``step_from_ts`` (the largest step back in time,
        the frame that makes it, the time it steps back from), ``first_frame`` (the earliest
        frame), ``truncated`` (captured < original length), ``linktypes`` (dict
        linktype -> frames).  ``on_checkpoint(number, offset)`` is called for every
        ``every``-th record (``every`` a power of two) so that frames can be found again later.

        This generic version rides on :meth:`records` and ignores ``on_batch`` and ``on_tcp``;
        :class:`PcapReader` has a copy-free one, and a batched one for ``on_batch``.
        """
        mask = every - 1 if on_checkpoint is not None else -1
        checkpoint: Any = on_checkpoint  # None only with mask -1: never called then
        esp_at = _fast.esp_at
        esp_cooked = _fast.esp_cooked_at
        number = 0
        nbytes = 0
        trunc = 0
        tmax = self._floor()
        tmin = float("inf")
        disorder = 0
        lts: dict[int, int] = {}
        cur = NONPACKET  # no run yet (lt is never NONPACKET where it is compared)
        run = 0
        first: float | None = None
        first_n = 0
        back = 0.0  # the largest step back in time, its frame, the time it steps back from
        back_n: int | None = None
        back_from: float | None = None
        tmin_n: int | None = None
        try:
            for ts, lt, data, wirelen, offset, iface in self.records():
                number += 1
                if not number & mask:
                    checkpoint(number, offset)
                if lt == NONPACKET:
                    continue
                if lt != cur:
                    if run:
                        lts[cur] = lts.get(cur, 0) + run
                    cur = lt
                    run = 0
                    if first is None:
                        first = ts
                        first_n = number
                run += 1
                caplen = len(data)
                nbytes += caplen
                if wirelen > caplen:
                    trunc += 1
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
                if lt == 1:
                    r = esp_at(data, 0, caplen)
                    if r is not None:
                        on_esp((tag, number), ts, 4, r[0], r[1], r[2], r[3], r[4], r[5],
                               r[6] + wirelen - caplen if wirelen > caplen else r[6])
                        continue
                elif lt == 276 or lt == 113:
                    r = esp_cooked(data, 0, caplen, lt)
                    if r is not None:
                        on_esp((tag, number), ts, 4, r[0], r[1], r[2], r[3], r[4], r[5],
                               r[6] + wirelen - caplen if wirelen > caplen else r[6])
                        continue
                on_frame(tag, number, ts, lt, data, wirelen, offset, iface)
        finally:
            if run:
                lts[cur] = lts.get(cur, 0) + run
            self.walk_stats = _walk_stats(
                number, nbytes, trunc, first, tmin, tmax, disorder, lts,
                (back, back_n, back_from, tmin_n if first is not None and tmin < first else first_n))
