"""The cyclic garbage collector in ``pcapvpn live``'s capture loop (issue 20).

Python's collector examines, at each full pass, every container object the process holds: at
20,000 SAs about 1.6 million, 0.3-3.3 s a pass, one every few seconds under a flood, and a stop
signal waits for the pass in progress.  Those passes find nothing to free: what the session
holds stays alive until expiry or eviction forgets it, and what is forgotten is freed by
reference counting (the one reference cycle of the tracker, an IKE SA and its exchanges, is
broken when the SA is removed: :meth:`pcapvpn.track.ike.IkeTracker.remove`).

:class:`Collector` (installed by :func:`pcapvpn.live.command.run_command`) therefore freezes
(:func:`gc.freeze`) what is alive after each evaluation, once a pass over the objects made
since the last one has freed their garbage cycles: the collector's passes then examine
only what was made since the last evaluation, and a full pass costs what one interval
allocated, not what is held.  An object frozen is never examined again, so a reference cycle
that becomes garbage after it was frozen would stay: as a safeguard, when the frozen objects
have grown by :attr:`Collector.GROWTH` since the last full pass over all of them, everything
is unfrozen, collected once and frozen again.  While the state fills up to its bounds this
happens a few times (each step a factor ``GROWTH``); once it is at its bounds (the count of
live objects stays level: ``tests/hostile/test_live_memory.py``) never, unless something
frozen leaks, which it then bounds to ``GROWTH`` times what is held.

After each evaluation, where the C library is glibc, :func:`malloc_trim` gives the free memory
of the C heap back to the system (an evaluation frees much: the rules' results of the last
interval, the SAs forgotten; glibc keeps what it freed inside its heap otherwise).
"""

from __future__ import annotations

import gc
import time

__all__ = ["Collector", "malloc_trim"]


def _glibc_trim():
    """glibc's ``malloc_trim`` (a function of one ``size_t``), or None (another C library)."""
    import os

    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):  # not a POSIX system, or not glibc
        return None
    if not libc or not libc.startswith("glibc"):
        return None
    try:
        import ctypes

        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - glibc without it
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_TRIM = _glibc_trim()


def malloc_trim() -> bool:
    """Give the C heap's free memory back to the system (glibc ``malloc_trim(0)``: the top of
    the heap and the free pages inside it).  False where the C library has no such call."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


class Collector:
    """The collector policy of the capture loop; :meth:`start` before it, :meth:`evaluated`
    after each evaluation applied, :meth:`stop` after the loop."""

    #: a full pass over the frozen objects when they have grown by this factor since the last
    GROWTH = 2.0
    #: ... and by at least this many objects (a small process grows by large factors)
    MIN_GROWTH = 200_000

    def __init__(self):
        self.base = 0  # frozen objects after the last full pass
        self.full_passes = 0  # full passes over the frozen objects (the safeguard)
        self.full_seconds = 0.0
        #: malloc_trim after each evaluation: calls and seconds in all
        self.trims = 0
        self.trim_seconds = 0.0
        self.active = False

    def start(self) -> None:
        """Freeze what exists (the modules, the session): the loop's passes never see it."""
        gc.collect()
        gc.freeze()
        self.base = gc.get_freeze_count()
        self.active = True

    def evaluated(self) -> None:
        """After an evaluation: freeze what is alive; now and then (see the module) a full
        pass over everything first."""
        if not self.active:
            return
        # what the interval made and dropped in cycles is freed before the rest is frozen (this
        # pass examines only what is not frozen: the interval's objects, not what is held)
        gc.collect()
        gc.freeze()
        n = gc.get_freeze_count()
        if n > self.GROWTH * self.base and n - self.base > self.MIN_GROWTH:
            t0 = time.perf_counter()
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self.full_seconds += time.perf_counter() - t0
            self.full_passes += 1
            self.base = gc.get_freeze_count()
        t0 = time.perf_counter()
        if malloc_trim():
            self.trims += 1
            self.trim_seconds += time.perf_counter() - t0

    def stop(self) -> None:
        """Back to Python's default (everything frozen is examined again)."""
        if self.active:
            self.active = False
            gc.unfreeze()
