"""The batched walks (:mod:`dissect.vpn.batch`): the records of a chunk classified with array
operations, ESP handed over as :class:`~dissect.vpn.batch.EspBatch` runs (the ESP hot path).
numpy is imported only when a batched walk runs (:class:`~dissect.vpn.capture.batcher._Batcher`)."""

from __future__ import annotations

import struct
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dissect.vpn.capture.batcher import _Batcher, _part
from dissect.vpn.capture.common import BATCH_RECORDS, TS_LIMIT, Bytes, Callback
from dissect.vpn.capture.damage import _Corrupt
from dissect.vpn.link import COOKED_LINKTYPES

if TYPE_CHECKING:
    from dissect.vpn.batch import Array, Classified
    from dissect.vpn.capture.pcap import PcapReader
    from dissect.vpn.capture.pcapng import PcapngReader

_COOKED_ARR = sorted(COOKED_LINKTYPES)


def walk_pcap(r: PcapReader, tag: Any, on_batch: Callback, on_frame: Callback,
              on_checkpoint: Callback | None, every: int, on_tcp: Any = None) -> None:
    """:meth:`PcapReader.walk` with ``on_batch``: a chunk of records at a time."""
    r._begin()
    bt = _Batcher(r, tag, on_batch, on_frame, on_checkpoint, every)
    lt = r.linktype
    bt.on_tcp = on_tcp
    bt.tcp_lt = lt
    cooked = lt in COOKED_LINKTYPES
    np = bt.np
    classify = bt.vec.classify
    caplen_at = struct.Struct(r.byteorder + "8xI").unpack_from
    order = r.byteorder
    nanosecond = r.nanosecond
    div = 1000000000 if nanosecond else 1000000
    maxcap = r._maxcap()
    limit = BATCH_RECORDS
    window = 16 * limit  # the smallest record is a header
    try:
        while True:
            bt.fill()
            buf = bt.buf
            n = bt.n
            pos = bt.pos
            eof = bt.eof
            if r._pending is not None:
                r._settle(buf, pos, n)
            corrupt: tuple[int, str] | None = None
            need: int | None = None
            while True:
                offs: list[int] = []
                app = offs.append
                full = False
                # the record walk: nothing but lengths (the slack after n makes the read
                # safe), a window at a time (a window holds at most `limit` records)
                while True:
                    wn = pos + window
                    if wn > n:
                        wn = n
                    p0 = pos
                    while True:
                        end = pos + 16 + caplen_at(buf, pos)[0]
                        if end > wn:
                            break
                        app(pos)
                        pos = end
                    if len(offs) >= limit:
                        full = True
                        break
                    if end > n:
                        break
                    if pos == p0:  # a record longer than the window
                        app(pos)
                        pos = end
                if not offs:
                    break
                got: dict[str, Any] = {}
                res = classify(buf, offs, order, nanosecond, bt.number, fields=got,
                               linktype=lt)
                cap = res[1]
                frac = got["frac"]
                k = len(offs)
                bad = cap > maxcap
                sus = (frac >= div) & ~bad
                if sus.any():
                    # an implausible header is a record only when a header follows it
                    nxt = np.empty(k, dtype=np.int64)
                    nxt[:-1] = cap[1:]
                    lead = r._leads(buf, pos, n, eof, maxcap)  # after the last one
                    nxt[-1] = -1 if lead is None else (0 if lead else maxcap + 1)
                    bad |= sus & (nxt > maxcap)
                    und = sus & (nxt < 0)
                else:
                    und = None
                if bad.any() or (und is not None and und.any()):
                    j = int((bad | und).argmax()) if und is not None else int(bad.argmax())
                    if bad[j]:
                        c = int(cap[j])
                        corrupt = (offs[j], r._corrupt(c) if c > maxcap else
                                   r._implausible(int(frac[j]), c))
                    else:
                        need = 32 + int(cap[j])  # read on: the header after it tells
                    pos = offs[j]
                    k = j
                bt.words = got.get("words")
                if cooked and k:
                    _cook_batch(r, buf, offs[:k] if k < len(offs) else offs, cap[:k], np)
                empty = np.flatnonzero((cap[:k] == 0) & (res[0][:k] == 0))
                if len(empty):
                    _with_empty(r, bt, offs, k, res, empty, buf, n)
                elif k:
                    bt.push(offs if k == len(offs) else offs[:k], 16,
                            res if k == len(offs) else _part(res, 0, k, np), lt)
                if corrupt is not None or need is not None or not full:
                    break
            if corrupt is None and need is None and pos + 16 <= n:
                c = caplen_at(buf, pos)[0]
                if c > maxcap:
                    corrupt = (pos, r._corrupt(c))
            bt.pos = pos
            if corrupt is not None:
                off, reason = corrupt
                skipped, rest, eof = r._recover(bytes(bt.mv[off:n]), bt.base + off,
                                                   reason, bt.last)
                if eof:
                    r._eof(bt.base + off + skipped)
                    return
                bt.reset(rest, bt.base + off + skipped)
                continue
            if eof:
                if pos < n:
                    found = r._end(buf, pos, n, bt.base, bt.last)
                    if found is not None:
                        bt.pos = found
                        continue
                r._eof(bt.base + n)
                return
            bt.slide(need or (16 + caplen_at(buf, pos)[0] if n - pos >= 16 else 16))
    finally:
        r.walk_stats = bt.stats()


def _cook_batch(r: PcapReader, buf: Bytes, offs: list[int], cap: Array, np: ModuleType) -> None:
    """:meth:`_Reader._cook` for the records at ``offs`` (``cap``: their captured lengths),
    counted in the order their keys are first seen, as one record at a time would."""
    if r.linktype == 276:
        a = np.frombuffer(buf, dtype=np.uint8)
        o = np.asarray(offs, dtype=np.int64)
        sel = o[cap >= 20] + 16
        ifx = (a[sel + 4].astype(np.int64) << 24 | a[sel + 5].astype(np.int64) << 16
               | a[sel + 6].astype(np.int64) << 8 | a[sel + 7])
        key = ifx << 8 | a[sel + 10]
    else:
        a = np.frombuffer(buf, dtype=np.uint8)
        o = np.asarray(offs, dtype=np.int64)
        sel = o[cap >= 16] + 16
        key = a[sel].astype(np.int64) << 8 | a[sel + 1]
    if not len(key):
        return
    vals, first, counts = np.unique(key, return_index=True, return_counts=True)
    ck = r.cooked
    for i in np.argsort(first, kind="stable").tolist():
        v = int(vals[i])
        k = (0, v >> 8, v & 0xFF) if r.linktype == 276 else (0, None, v)
        ck[k] = ck.get(k, 0) + int(counts[i])


def _with_empty(r: PcapReader, bt: _Batcher, offs: list[int], k: int, res: Classified,
                empty: Array, buf: Bytes, n: int) -> None:
    """Hand over the first ``k`` records at ``offs``, some of them empty (positions
    ``empty``): the others in runs, the empty ones noted as damage (numbered)."""
    np = bt.np
    i = 0
    starts = np.flatnonzero(np.diff(empty) != 1) + 1  # where a new run of empties begins
    for run in np.split(empty, starts):
        a, b = int(run[0]), int(run[-1]) + 1
        if a > i:
            bt.push(offs[i:a], 16, _part(res, i, a, np), r.linktype, row0=i)
        end = offs[b - 1] + 16
        r._empty(bt.base + offs[a], bt.last, buf, end, n, b - a)
        bt.skip(b - a, bt.base + offs[a], 16)
        i = b
    if i < k:
        bt.push(offs[i:k], 16, _part(res, i, k, np), r.linktype, row0=i)


def walk_pcapng(r: PcapngReader, tag: Any, on_batch: Callback, on_frame: Callback,
                on_checkpoint: Callback | None, every: int) -> None:
    """:meth:`PcapngReader.walk` with ``on_batch``: runs of enhanced packet blocks a chunk at a
    time, every other block one at a time by the rules of :meth:`PcapngReader.records`."""
    r._begin()
    bt = _Batcher(r, tag, on_batch, on_frame, on_checkpoint, every)
    limit = BATCH_RECORDS
    window = 32 * limit  # the smallest enhanced packet block
    try:
        while True:
            bt.fill()
            buf = bt.buf
            n = bt.n
            pos = bt.pos
            if r._pending is not None:
                r._settle(buf, pos, n)
            try:
                while True:
                    hdr = r._order.hdr
                    offs: list[int] = []
                    app = offs.append
                    full = False
                    # a run of enhanced packet blocks: nothing but lengths (slack after n:
                    # safe), a window at a time (a window holds at most `limit` blocks)
                    while True:
                        wn = pos + window
                        if wn > n:
                            wn = n
                        p0 = pos
                        while True:
                            btype, blen = hdr(buf, pos)
                            if btype != 6 or blen < 32:
                                end = -1
                                break
                            end = pos + blen
                            if end > wn:
                                break
                            app(pos)
                            pos = end
                        if len(offs) >= limit:
                            full = True
                            break
                        if end < 0 or end > n:
                            break
                        if pos == p0:  # a block longer than the window
                            app(pos)
                            pos = end
                    if offs:
                        k = _epb_run(r, bt, offs)
                        if k < len(offs):
                            pos = offs[k]  # a block whose framing the general rules reject
                        elif full:
                            continue
                    bt.pos = pos
                    if pos + 12 > n:
                        need = 12
                        break
                    bend, rec = r._block(buf, pos, n, bt.base, bt.last_or(r._last_ts),
                                         bt.eof)
                    if bend is None:
                        need = rec
                        break
                    bt.pos = pos = bend
                    if rec is not None:
                        bt.one(rec)
            except _Corrupt as exc:
                reason = str(exc)
            except (struct.error, IndexError, ValueError, OverflowError) as exc:
                reason = f"malformed block ({exc})"
            else:
                if bt.eof:
                    if pos < n:
                        found = r._end(buf, pos, n, bt.base, bt.last)
                        if found is not None:
                            bt.pos = found
                            continue
                    r._eof(bt.base + n)
                    return
                bt.slide(need)
                continue
            # framing is broken at bt.pos: skip to the next valid chain of blocks
            off = bt.pos
            skipped, rest, eof = r._recover(bytes(bt.mv[off:n]), bt.base + off, reason,
                                               bt.last)
            if eof:
                r._eof(bt.base + off + skipped)
                return
            bt.reset(rest, bt.base + off + skipped)
    finally:
        r._last_ts = bt.last_or(r._last_ts)
        r.walk_stats = bt.stats()


def _epb_run(r: PcapngReader, bt: _Batcher, offs: list[int]) -> int:
    """Classify and hand over the enhanced packet blocks at ``offs`` (whole, in the buffer),
    in runs; a block whose content is unusable (captured length past its block, undeclared
    interface, timestamp out of range) goes through the general rules (:meth:`_block`) in
    its place.  Stops before the first block whose framing is wrong (length not a multiple
    of 4, trailer different from the length).  Returns the number of blocks done."""
    np = bt.np
    vec = bt.vec
    o = r._order
    u4 = o.char + "u4"
    buf = bt.buf
    arr = np.frombuffer(buf, dtype=np.uint8)
    p = np.array(offs, dtype=np.int64)
    head = vec.windows(arr, 28)[p]
    blen = vec.field(head, 4, u4).astype(np.int64)
    iid = vec.field(head, 8, u4).astype(np.int64)
    cap = vec.field(head, 20, u4).astype(np.int64)
    trailer = vec.windows(arr, 4)[p + blen - 4].view(u4).ravel()
    frame = ((blen & 3) != 0) | (trailer != blen)
    stop = int(frame.argmax()) if frame.any() else len(offs)
    secifs = r._secifs
    bad = (cap > blen - 32) | (iid >= len(secifs))
    ticks = (vec.field(head, 12, u4).astype(np.uint64) << np.uint64(32)) | \
        vec.field(head, 16, u4).astype(np.uint64)
    lt = np.zeros(len(offs), dtype=np.int64)
    ts = np.full(len(offs), np.nan)
    anybad = bool(bad.any())
    ids = np.unique(iid[~bad] if anybad else iid).tolist()
    for i in ids:
        gi, ltype, units, offt, _snap = secifs[i]
        # the usual run: one interface, nothing bad - no masks
        sel = slice(None) if len(ids) == 1 and not anybad else (iid == i) & ~bad
        lt[sel] = ltype
        t = ticks[sel]
        if int(t.max()) + max(offt, 0) < 1 << 53 and offt >= 0 and units < 1 << 53:
            # exact: both below 2**53, where int / int is one float division
            ts[sel] = (t.astype(np.float64) + float(offt)) / float(units)
        else:
            ts[sel] = [(x + offt) / units for x in t.tolist()]
    bad |= ~((ts >= 0.0) & (ts < TS_LIMIT))  # NaN (bad already) compares False
    bad[stop:] = False
    # options (epb_dropcount) after the padded data; malformed ones make the block bad
    for j in np.flatnonzero((blen - cap > 35) & ~bad).tolist():
        if j >= stop:
            break
        start = offs[j] + 28 + ((int(cap[j]) + 3) & -4)
        try:
            r._epb_options(buf, start, offs[j] + int(blen[j]) - 4,
                              secifs[int(iid[j])][0], o)
        except _Corrupt:
            bad[j] = True
    badi = np.flatnonzero(bad[:stop]).tolist()
    i = 0
    for j in badi + [stop]:
        if j == len(offs) and not i:
            _epb_push(r, bt, offs, p, lt, ts, iid)  # the usual run: whole
        elif j > i:
            _epb_push(r, bt, offs[i:j], p[i:j], lt[i:j], ts[i:j], iid[i:j])
        if j < stop:
            # the general rules note the damage (and give a numbered record when Wireshark
            # would show one)
            end, rec = r._block(buf, offs[j], bt.n, bt.base, bt.last_or(r._last_ts))
            if rec is not None:
                bt.one(rec)
        i = j + 1
    return stop


def _epb_push(r: PcapngReader, bt: _Batcher, offs: list[int], p: Array, lt: Array, ts: Array,
              iid: Array) -> None:
    """Hand over good enhanced packet blocks (classified a run at a time), counted per
    interface."""
    np = bt.np
    secifs = r._secifs
    for i, c in enumerate(np.bincount(iid).tolist()):  # ids are declared: small
        if c:
            r._ifn[secifs[i][0]] += c
    cooked = np.flatnonzero(np.isin(lt, _COOKED_ARR)) if lt.max() >= 113 else ()
    for j in cooked:
        gi = secifs[int(iid[j])][0]
        start = offs[j] + 28
        cap = struct.unpack_from(r._order.char + "I", bt.buf, offs[j] + 20)[0]
        r._cook(gi, int(lt[j]), bt.buf, start, start + cap)
    eth = lt == 1
    res = bt.vec.classify(bt.buf, p + 12, r._order.char, False, bt.number, ts=ts,
                          eth=None if eth.all() else eth)
    first = int(lt[0])
    gif = [g[0] for g in secifs]
    ids = int(iid[0])
    bt.push(offs, 28, res, first if (lt == first).all() else lt,
            gif[ids] if (iid == ids).all() else np.take(gif, iid))
