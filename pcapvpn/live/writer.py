"""What the report knows of the live capture's sources (:class:`LiveSource`: one written file,
or one interface without ``--write``) and ``--write DIR``'s rotating pcapng files
(:class:`RotatingWriter`), read back for ``--evidence`` by :func:`written_sources`."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass

from pcapvpn.live.capture import CaptureError

__all__ = ["LiveSource", "RotatingWriter", "written_sources"]

# -- what build_report needs from a source ---------------------------------------------------------

@dataclass
class _Itf:
    linktype: int
    snaplen: int
    name: str


class LiveSource:
    """A :class:`pcapvpn.sources.Source` look-alike for the report: one written file (or the
    whole capture without ``--write``); ``isb`` holds the drop counters of its span."""

    compressed = False

    def __init__(self, name, index, interfaces, fmt="pcapng"):
        self.name = name
        self.index = index
        self.format = fmt
        self.interfaces = interfaces
        self.isb = {}
        self.drops = {}
        self.linktypes = Counter()
        self.frame_count = 0
        self.byte_count = 0
        self.first_ts = None
        self.last_ts = None
        self.ended = None  # when this span of the capture ended (set at rotation and stop)
        self.interface_frames = {}  # frames per interface (index in ``interfaces``)
        self.warnings = []
        self.out_of_order = 0

    def close(self):
        pass


# -- rotating pcapng files -------------------------------------------------------------------------

class RotatingWriter:
    """``--write DIR``: pcapng files of at most ``size`` bytes (a batch may run past it), the
    oldest deleted beyond ``count`` files (0: keep all).  Each file starts with one interface
    description per captured interface and ends with interface statistics blocks whose counters
    cover that file's span (so that ``analyze`` over several of them adds them up right)."""

    def __init__(self, directory, interfaces, size, count, prefix="pcapvpn-live"):
        from dissect.vpn.capture import PcapngWriter

        self._Writer = PcapngWriter
        self.dir = directory
        self.interfaces = interfaces  # [(linktype, name)]
        self.size = size
        self.count = count
        self.prefix = prefix
        self.files = []  # paths still on disk, oldest first
        self.all_files = []  # every path ever written (frame refs name them)
        self.f = None
        self.w = None
        self.opened = None  # when the current file was opened
        self.written = 0
        self.deleted = 0
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise CaptureError(f"--write {directory}: {e.strerror}") from None

    def open(self, ts: float) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ts))
        path = os.path.join(self.dir, f"{self.prefix}-{stamp}-{len(self.all_files) + 1:05d}.pcapng")
        try:
            self.f = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed in close()
        except OSError as e:
            raise CaptureError(f"--write: cannot create {path}: {e.strerror}") from None
        self.w = self._Writer(self.f)
        self.opened = ts
        for lt, name in self.interfaces:
            self.w.add_interface(lt, name, tsresol=9)
        self.files.append(path)
        self.all_files.append(path)
        while self.count and len(self.files) > self.count:
            old = self.files.pop(0)
            try:
                os.unlink(old)
                self.deleted += 1
            except OSError:
                pass
        return path

    def write(self, iface: int, frames) -> None:
        wp = self.w.write_packet
        for f in frames:
            wp(iface, f[2], f[4], f[5])

    def full(self) -> bool:
        return self.f is not None and self.f.tell() >= self.size

    def flush(self) -> None:
        if self.f is not None:
            self.f.flush()

    def close(self, ts: float, stats: list) -> None:
        """``stats``: per interface, the counters of this file's span; ``ts``: when this file's
        span ends (its interface statistics say so: ``isb_endtime``, so that ``analyze`` judges
        absences up to the same moment as live)."""
        if self.f is None:
            return
        for i, st in enumerate(stats):
            self.w.write_stats(i, ts, starttime=self.opened, endtime=ts, **st)
        self.f.close()
        self.f = None
        self.w = None



def _ns(ts: float) -> float:
    """``ts`` rounded to the nanosecond as a pcapng file with ``if_tsresol`` 9 gives it back."""
    sec = int(ts // 1)
    return (sec * 1_000_000_000 + round((ts - sec) * 1_000_000_000)) / 1_000_000_000



def written_sources(sources) -> list:
    """:class:`pcapvpn.sources.Source` objects for the ``--write`` files still on disk (their
    ``fetch`` reads evidence frames again), numbered as the live sources."""
    from pcapvpn.sources import SourceError, open_source

    out = []
    for s in sources:
        if s.format == "pcapng" and os.path.exists(s.name):
            try:
                out.append(open_source(s.name, s.index))
            except SourceError:
                pass
    return out
