"""Counting work instead of timing it: every line of pcapvpn/dissect code executed, per function.

``with WorkCounter() as w: ...`` installs a line tracer (``sys.settrace``) for the code of the
``pcapvpn`` and ``dissect`` packages; ``w.counts`` maps ``"module.py:line:function"`` to the number of
lines executed there, ``w.total`` sums them.  Loops count once per iteration (a loop body line
runs again; a comprehension's line event fires for each item), so an algorithm that is quadratic
in the number of SAs shows up as a function whose count grows four-fold when the input doubles —
whatever the machine's speed or load.  Work done inside C (``sorted``, ``set`` operations) counts
as the one line that called it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter

_ROOTS = tuple(os.sep + p + os.sep for p in ("pcapvpn", os.path.join("dissect", "vpn")))


class WorkCounter:
    def __init__(self):
        self.counts: Counter = Counter()
        self._want: dict = {}

    def _key(self, code):
        k = self._want.get(code)
        if k is None:
            fn = code.co_filename
            if any(r in fn for r in _ROOTS):
                k = f"{os.path.basename(fn)}:{code.co_firstlineno}:{code.co_name}"
            else:
                k = ""
            self._want[code] = k
        return k

    def _global(self, frame, event, arg):
        k = self._key(frame.f_code)
        if not k:
            return None
        counts = self.counts

        def local(frame, event, arg):
            if event == "line":
                counts[k] += 1
            return local

        return local

    def __enter__(self):
        self._old = sys.gettrace()
        sys.settrace(self._global)
        threading.settrace(self._global)
        return self

    def __exit__(self, *exc):
        sys.settrace(self._old)
        threading.settrace(None)
        return False

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def growth(small: Counter, big: Counter, floor: int) -> list[tuple[str, int, int, float]]:
    """Functions whose count grew by more than the input: ``(name, small, big, ratio)`` for
    each function with at least ``floor`` lines in the big run, the worst first."""
    out = []
    for k, b in big.items():
        if b < floor:
            continue
        s = small.get(k, 0)
        out.append((k, s, b, b / s if s else float("inf")))
    out.sort(key=lambda r: -r[3])
    return out
