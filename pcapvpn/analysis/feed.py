"""The sources' frames handed to the decoder: one file pushed through the copy-free ESP fast path,
several merged by time (or, with ``--jobs``, read one after the other), one interface of a
vantage point's files (``#IFACE``), and progress by file offset.  A file the analysis reads in
time order (``Source.reorder``: it is not in time order) is read through
:meth:`pcapvpn.sources.Source.time_ordered`, alone or within the merge."""

from __future__ import annotations


from pcapvpn.sources import merge_frames


def _point_frames(sources, iface):
    """The frames of one interface (``#IFACE``: an interface name or description, or the
    global interface number) of a point's files, merged by time."""
    import heapq

    def one(src):
        memo: dict = {}
        if iface.startswith("ifindex="):  # a Linux -i any capture: the SLL2 interface index
            from dissect.vpn.link import cooked_header

            want = int(iface[8:]) if iface[8:].isdigit() else -2
            for f in src.analysis_frames(interfaces=True):
                ck = cooked_header(f[3], f[4])
                if ck is not None and ck[0] == want:
                    yield f
            return
        for f in src.analysis_frames(interfaces=True):
            i = f[7]
            ok = memo.get(i)
            if ok is None:
                ok = memo[i] = _iface_matches(src, i, iface)
            if ok:
                yield f

    streams = [one(s) for s in sources]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda f: (f[2], f[0], f[1]))


def _iface_matches(src, i, want) -> bool:
    if want.isdigit():
        return i == int(want)
    ifs = src.interfaces
    if i >= len(ifs):
        return False
    itf = ifs[i]
    return want in (getattr(itf, "name", None), getattr(itf, "description", None))


def _frames(sources, options, interfaces=False):
    frames = merge_frames(sources, interfaces)
    if options.progress is not None:
        frames = _with_progress(frames, sources, options.progress)
    return frames


def _decode(decoder, sources, options, order=None) -> None:
    """One file: push its frames (the copy-free ESP fast path); several, or one to be read in
    time order: merge them by time (``order``, --jobs: one file after the other in that order,
    when that is the same)."""
    if order is not None and len(sources) > 1:
        from pcapvpn.parallel import check_order

        import os

        total = sum(os.path.getsize(s.name) for s in sources)
        done = 0
        for k, i in enumerate(order):
            check_order(sources, order, k)
            hook = None
            if options.progress is not None:
                def hook(offset, _p=options.progress, _d=done):
                    _p(f"{len(sources)} files", _d + offset, total)
            decoder.run_source(sources[i], hook, batch=options.batch)
            done += os.path.getsize(sources[i].name)
        if options.progress is not None:
            options.progress(f"{len(sources)} files", total, total)
        return
    if len(sources) == 1 and not sources[0].reorder:
        src = sources[0]
        hook = None
        if options.progress is not None:
            import os

            try:
                total = os.path.getsize(src.name) if src.name != "-" and not src.compressed else 0
            except OSError:
                total = 0
            if total:
                def hook(offset, _p=options.progress, _n=src.name, _t=total):
                    _p(_n, offset, _t)
        decoder.run_source(src, hook, batch=options.batch)
        if hook is not None:
            options.progress(src.name, 1, 1)
        return
    decoder.run(_frames(sources, options, True), interfaces=True)


def _with_progress(frames, sources, progress):
    """Report progress by file offset (regular files only; stdin and gzip have no known size)."""
    import os

    sizes = {}
    for s in sources:
        try:
            sizes[s.index] = os.path.getsize(s.name) if not s.compressed and s.name != "-" else 0
        except OSError:
            sizes[s.index] = 0
    total = sum(sizes.values())
    if not total:
        yield from frames
        return
    done_before = {}
    acc = 0
    for s in sources:
        done_before[s.index] = acc
        acc += sizes[s.index]
    n = 0
    label = sources[0].name if len(sources) == 1 else f"{len(sources)} files"
    for f in frames:
        n += 1
        if not n & 0xFFFF:
            progress(label, done_before[f[0]] + f[6], total)
        yield f
    progress(label, total, total)
