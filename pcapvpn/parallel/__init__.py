"""One big capture file read by several worker processes (``analyze --jobs N``, issue 19).

The design (docs/internals.md, "Parallel analysis"): the file is cut into byte ranges at record
boundaries (:func:`cut_points`: :func:`dissect.vpn.chain.find`, the validator that
resynchronises damaged captures).  Each range (a *slice*) is read by a worker process with the
same reader and the same batched walk as a single pass (:meth:`dissect.vpn.capture.reader._Reader.walk`):
the per-record work — reading, the record walk, the numpy classification that recognises ESP of
the common shapes and decodes their headers into :class:`dissect.vpn.batch.EspBatch` columns —
runs there.  What the walk hands over is *recorded*, in order: ESP batches (arrays), single ESP
events, runs of plaintext TCP as the reader's lane decoded them (with only their TCP headers),
and the other frames (their bytes: IKE, fragments, TCP of the VPNs, keepalives, the other VPNs,
other plaintext).  The parent replays the slices' recordings in file order into the ordinary
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
follow each other (a rotated capture; :func:`check_order`).  Files whose times overlap,
``--keys``, the ``read`` stage and several inputs with a gzip file or standard input among them
run as a single pass (see docs/internals.md for what is left).  A gzip file or gzip on standard
input (one such input) is cut as the parent decompresses it and its slices travel to the workers
as bytes (:mod:`~pcapvpn.parallel.stream`; it cannot be read again, so the parent reads the rest
itself where a file would fall back; plain standard input is read by the parent alone).

The modules: :mod:`~pcapvpn.parallel.slicing` (which files, where to cut, the pre-scan),
:mod:`~pcapvpn.parallel.worker` (a slice read and recorded), :mod:`~pcapvpn.parallel.replay`
(the recordings replayed and merged in the parent), :mod:`~pcapvpn.parallel.stream` (a stream
cut as it is read), :mod:`~pcapvpn.parallel.daskpool` (a Dask
cluster as the workers); this one starts the workers and hands their parts to the replay.
"""

from __future__ import annotations

import math
import os

from pcapvpn.parallel.daskpool import DaskPool
from pcapvpn.parallel.replay import _Replay, _roundtrip, check_order
from pcapvpn.parallel.slicing import (CUT_RECORDS, CUT_WINDOW, CUT_WINDOW_MAX, FIXED_BYTES,
                                      MAX_SLICE, MIN_BYTES, MIN_SAMPLE, MIN_SHARE,
                                      SLICES_PER_JOB, Fallback, Slice, _first_time, _head,
                                      _options_ok,
                                      available_cores, cut_points, eligible, parent_share,
                                      plan, shares, slices)
from pcapvpn.parallel.stream import STREAM_SLICE, is_stream, stream_source
from pcapvpn.parallel.worker import Part, read_slice, walk_slice

#: slices per worker read ahead of the replay (memory: see MAX_SLICE)
AHEAD = 2

__all__ = ["AHEAD", "CUT_RECORDS", "CUT_WINDOW", "CUT_WINDOW_MAX", "DaskPool", "FIXED_BYTES",
           "Fallback", "MAX_SLICE", "MIN_BYTES", "MIN_SAMPLE", "MIN_SHARE", "Part",
           "SLICES_PER_JOB", "STREAM_SLICE", "Slice", "available_cores", "check_order", "cut_points", "eligible",
           "is_stream", "jobs_for", "parent_share", "plan", "read_slice", "shares", "sliced_sources", "slices",
           "stream_source", "walk_slice"]


def _serial(fn, items):
    """The workers' map run in this process (tests): each part pickled and unpickled as a
    worker's would be."""
    for it in items:
        yield _roundtrip(fn(it))


def sliced_sources(paths, jobs, batch=True, cuts=None, pool=None, esp=None, lane=None,
                   spool=False):
    """Ordinary :class:`pcapvpn.sources.Source` objects of ``paths`` (file indices 0, 1, ...)
    whose walks read each file's first slice in this process and replay the other slices, read
    by ``jobs - 1`` worker processes (``pool``: ``"serial"`` reads them in this process, for
    tests; a :class:`DaskPool`: the tasks of a Dask cluster).  ``cuts``: the record offsets to cut
    at, ``{file index: [offsets]}`` (tests; default: :func:`plan` and :func:`cut_points`).
    Several files are read one after the other in the order of their first packets (what a
    single pass's merge by time gives when their times do not overlap: :func:`in_order`).
    ``esp``: ``(thresholds, limits)`` to track the slices' ESP in the workers; ``lane``: the
    ports of the decoder's plaintext TCP lane (:func:`pcapvpn.decode.lane_ports`; None: none).
    A stream (standard input, a gzip file: :func:`is_stream`; ``spool``: standard input kept
    for ``--export-evidence``) is cut as it is read and its slices travel as bytes
    (:mod:`pcapvpn.parallel.stream`).
    Returns ``(sources, order, close)``; ``close()`` stops the workers."""
    from pcapvpn.sources import Source, _Prefixed

    if is_stream(paths):
        at = cuts.get(0, []) if isinstance(cuts, dict) else cuts
        src, close = stream_source(paths[0], 0, jobs, batch, at, pool, esp, lane, spool)
        return [src], [0], close

    heads = [_head(p) for p in paths]
    order = sorted(range(len(paths)), key=lambda i: (_first_time(paths[i]), i))
    todo = {}
    for k, i in enumerate(order):
        reader, prefix, nifs, first = heads[i]
        if cuts is not None:
            at = cuts.get(i, []) if isinstance(cuts, dict) else cuts
        else:
            # the first file's first slice also leaves room for this process's own work, and
            # for the plaintext bookkeeping of the workers' slices
            at = plan(os.path.getsize(paths[i]), jobs, FIXED_BYTES if k == 0 else 0,
                      parent_share(shares(paths[i], lane)) if esp is not None else 0.0)
            at, prefix, nifs = cut_points(paths[i], at, head=heads[i])
        todo[i] = slices(paths[i], i, at, prefix, nifs, batch)
        for sl in todo[i][1:]:
            sl.esp = esp
            sl.lane = lane
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


def _noop():
    return None


def _ahead(pool, fn, items, ahead):
    """``pool.imap(fn, items)`` with at most ``ahead`` results read ahead of the consumer (a
    plain imap would read every slice while the parent is still replaying the first)."""
    from collections import deque

    it = iter(items)
    pending: deque = deque()
    # submitted now, not at the consumer's first ``next``: the workers must read while this
    # process reads its own first slice (a generator body would only start after it)
    for x in it:
        pending.append(pool.apply_async(fn, (x,)))
        if len(pending) >= ahead:
            break

    def results():
        while pending:
            res = pending.popleft().get()
            for x in it:
                pending.append(pool.apply_async(fn, (x,)))
                break
            yield res

    return results()


def jobs_for(paths, options) -> int:
    """Workers worth starting for ``paths`` with ``options.jobs`` (1: a single pass): eligible
    files (:func:`eligible`) of at least ``MIN_BYTES`` in all, or any eligible files when the cuts
    are given (``options.slice_at``, tests)."""
    jobs = options.jobs if options.jobs and options.jobs > 0 else available_cores()
    if is_stream(paths):
        # cut as it is read (pcapvpn.parallel.stream): its size is known only at its end, and
        # a short one is read by this process alone; not on a Dask cluster (bytes, no path)
        if isinstance(options.workers, DaskPool) or not _options_ok(options) or (
                jobs <= 1 and not options.slice_at):
            return 1
        return max(2, jobs)
    if isinstance(options.workers, DaskPool):
        jobs = options.workers.workers() + 1
    if jobs <= 1 and not options.slice_at or not eligible(paths, options):
        return 1
    if options.slice_at is not None:
        return max(2, jobs)
    size = sum(os.path.getsize(p) for p in paths)
    if size < MIN_BYTES:
        return 1
    from pcapvpn.decode import lane_ports

    share = shares(paths[0], lane_ports(vpn_servers=options.vpn_servers))
    if share is not None and sum(share) < MIN_SHARE:
        # the workers hand every frame that is neither ESP nor plaintext TCP of the lane to
        # this process as its bytes: slices of a capture made mostly of those are slower
        return 1
    return max(1, min(jobs, math.ceil(size / (MIN_BYTES // 2))))
