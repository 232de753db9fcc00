"""The ESP/AH SA record of :mod:`pcapvpn.track.esp` (:class:`EspSA`: identity, counters, the
sequence analysis' state and evidence, time bins) and the bounds of what one SA keeps.  The
tracker's hot handlers fill it; rules and the report read it.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left

from pcapvpn.model import _addr

#: first gaps kept as evidence per SA (ts, ref, expected, got, still missing)
MAX_GAPS = 20
#: last gaps kept as evidence per SA
MAX_LAST_GAPS = 5
#: NAT/MOBIKE source changes kept per SA
MAX_MOVES = 32
#: refs of the first packets kept per SA
SAMPLE_REFS = 5
#: time bins per SA (packets per bin); bins start at 1 s and double when exceeded
MAX_BINS = 512
#: resets / wraps / fragment refs kept as evidence per SA
MAX_EVENTS = 10
#: an arrival this many windows below the highest number, at a number no larger than one window,
#: is a sequence restart rather than a late packet
RESET_WINDOWS = 2
#: max_seq above this without wrapping: the 32-bit counter is close to cycling (RFC 4303 §3.3.3)
NEAR_WRAP = (1 << 32) - (1 << 24)
#: ESN: low 32 bits restart below this after being above NEAR_WRAP → the high half incremented
ESN_LOW = 1 << 24

U32 = 1 << 32
#: RFC 4303 §3.4.3: receivers MUST support a replay window of 32 packets and SHOULD default to 64;
#: a packet later than these depths is dropped by a receiver with that window
REPLAY_WINDOW_MIN = 32
REPLAY_WINDOW_DEFAULT = 64


class EspSA:
    """One ESP (or AH) SA: destination + SPI (+ protocol)."""

    __slots__ = (
        "proto", "ipver", "src", "dst", "spi", "sport", "dport", "encap",
        "packets", "bytes", "first_ts", "last_ts", "first_ref", "last_ref",
        # sequence analysis (``nxt``: the next number expected while nothing is pending, else -1)
        "first_seq", "min_seq", "nxt", "_top", "base", "win", "missing", "_lost", "_floor",
        "_last_slow", "duplicates", "capture_duplicates", "reordered", "max_reorder",
        "beyond32", "beyond64", "too_old", "resets", "wraps", "max_gap",
        "gaps", "last_gaps", "reset_events",
        # sizes
        "min_len", "max_len", "large", "first_large_ts", "last_large_ts",
        # time bins (counts of closed bins; the open one is packets - _bin_p0)
        "bin_base", "bin_width", "bin_end", "bins", "_bin_i", "_bin_p0",
        # evidence
        "first_refs", "moves", "moves_total", "_csrc", "_csport",
        "fragmented", "frag_refs",
        # with --keys: pcapvpn.track.inner.EspCrypto of a keyed SA (None otherwise)
        "decrypt",
    )

    def __init__(self, proto, ipver, src, dst, spi, sport, dport, encap, ts, ref, seq, length,
                 window=64):
        self.proto = proto
        self.ipver = ipver
        self.src = src
        self.dst = dst
        self.spi = spi
        self.sport = sport
        self.dport = dport
        self.encap = encap
        self.packets = 0
        self.bytes = 0
        self.first_ts = ts
        self.last_ts = ts
        self.first_ref = ref
        self.last_ref = ref
        self.first_seq = seq
        self.min_seq = seq
        self.nxt = seq  # the first packet takes the in-order path
        self._top = seq - 1
        self.base = 0
        self.win = (1 << window) - 1  # numbers before the first packet count as seen
        self.missing = 0
        self._lost = 0
        self._floor = seq
        self._last_slow = -1
        self.duplicates = 0
        self.capture_duplicates = 0
        self.reordered = 0
        self.max_reorder = 0
        self.beyond32 = 0
        self.beyond64 = 0
        self.too_old = 0
        self.resets = 0
        self.wraps = 0
        self.max_gap = 0
        self.gaps: list = []
        self.last_gaps: list = []
        self.reset_events: list = []
        self.min_len = length
        self.max_len = length
        self.large = 0
        self.first_large_ts = None
        self.last_large_ts = None
        self.bin_base = float(int(ts)) if ts >= 0 else float(ts)
        self.bin_width = 1.0
        self.bin_end = self.bin_base + 1.0
        self.bins = [0]
        self._bin_i = 0
        self._bin_p0 = 0
        self.first_refs: list = []
        self.moves: list = []
        self.moves_total = 0
        self._csrc = src
        self._csport = sport
        self.fragmented = 0
        self.frag_refs: list = []
        self.decrypt = None

    # -- derived views -------------------------------------------------------------------------

    @property
    def max_seq(self) -> int:
        """The highest sequence number seen (extended: ESN high half included)."""
        return self.nxt - 1 + self.base if self.nxt >= 0 else self._top

    @property
    def lost(self) -> int:
        """Sequence numbers skipped and never seen inside the window, the holes still open at the
        end included (a late arrival beyond the window does not fill its hole: the receiver would
        drop it as too old)."""
        return self._lost + self.missing

    @property
    def expected(self) -> int:
        """Sequence numbers the sender used between the first seen and the highest."""
        return self.packets - self.capture_duplicates - self.duplicates - self.too_old + self.lost

    @property
    def loss_pct(self) -> float:
        exp = self.expected
        return 100.0 * self.lost / exp if exp > 0 else 0.0

    @property
    def starts_at_one(self) -> bool:
        return self.min_seq == 1

    @property
    def near_wrap(self) -> bool:
        """32-bit counter close to cycling without an observed ESN wrap (RFC 4303 §3.3.3)."""
        return self.wraps == 0 and self.max_seq > NEAR_WRAP

    def mid_session(self, window: int = 64) -> bool:
        """The SA's first packets are not in the capture: its lowest sequence number is far from 1
        (beyond one replay window), so it was created before the capture started."""
        return self.min_seq > window

    def lost_gaps(self) -> list:
        """Evidence gaps still (partly) missing, as ``(ts, ref, expected, got, missing)``: the
        first ones then the last ones, without repeats."""
        out = []
        seen = set()
        for g in self.gaps + self.last_gaps:
            if g[4] > 0 and id(g) not in seen:
                seen.add(id(g))
                out.append(tuple(g))
        return out

    def bin_counts(self) -> list[int]:
        """Packets per time bin of ``bin_width`` seconds from ``bin_base``."""
        b = self.bins[: self._bin_i]
        b.append(self.bins[self._bin_i] + self.packets - self._bin_p0)
        return b

    def packets_between(self, t0: float, t1: float | None = None) -> int:
        """Packets in the time bins lying entirely in [t0, t1) (an undercount at the edges)."""
        w = self.bin_width
        base = self.bin_base
        counts = self.bin_counts()
        idx = range(len(counts))
        # a bin's start ``base + i * w`` never decreases with i: the bins from t0 on are a
        # suffix, those ending by t1 a prefix (found by bisection, the same comparisons)
        lo = bisect_left(idx, True, key=lambda i: base + i * w >= t0)
        hi = len(counts) if t1 is None else bisect_left(
            idx, True, key=lambda i: not (base + i * w + w <= t1))
        return sum(counts[lo:hi]) if lo < hi else 0

    def sequence_counts(self) -> dict:
        """The sequence counters of the report's ``sequence`` (before its gaps and resets): of
        :meth:`to_dict` and of the report's dict (:func:`pcapvpn.model.esp_sa_dict`)."""
        return {
            "first": self.first_seq,
            "min": self.min_seq,
            "max": self.max_seq,
            "starts_at_one": self.starts_at_one,
            "lost": self.lost,
            "loss_pct": round(self.loss_pct, 3),
            "duplicates": self.duplicates,
            "capture_duplicates": self.capture_duplicates,
            "reordered": self.reordered,
            "max_reorder_depth": self.max_reorder,
            "beyond_window_32": self.beyond32,
            "beyond_window_64": self.beyond64,
            "too_old": self.too_old,
            "resets": self.resets,
            "esn_wraps": self.wraps,
            "near_wrap": self.near_wrap,
            "largest_gap": self.max_gap,
        }

    def to_dict(self) -> dict:
        def ip(a):  # the model's cached text (a flood's SA lists hundreds of source changes)
            return _addr(a) if type(a) is bytes else str(ipaddress.ip_address(a))

        d = self._to_dict(ip)
        if self.decrypt is not None:
            d["decryption"] = self.decrypt.to_dict()
        return d

    def _to_dict(self, ip) -> dict:
        return {
            "proto": self.proto,
            "spi": f"{self.spi:08x}",
            "ipver": self.ipver,
            "src": ip(self.src),
            "dst": ip(self.dst),
            "sport": self.sport if self.sport >= 0 else None,
            "dport": self.dport if self.dport >= 0 else None,
            "encap": self.encap,
            "packets": self.packets,
            "bytes": self.bytes,
            "first_ts": float(self.first_ts),
            "last_ts": float(self.last_ts),
            "first_frame": list(self.first_ref),
            "last_frame": list(self.last_ref),
            "sequence": {
                **self.sequence_counts(),
                "gaps": [{"ts": float(ts), "frame": list(ref), "expected": e, "got": g,
                          "missing": m} for ts, ref, e, g, m in self.lost_gaps()],
                "resets_at": [{"ts": float(ts), "frame": list(ref), "from": a, "to": b}
                              for ts, ref, a, b in self.reset_events],
            },
            "sizes": {
                "min": self.min_len,
                "max": self.max_len,
                "mean": round(self.bytes / self.packets, 1) if self.packets else 0,
                "large": self.large,
                "first_large_ts": self.first_large_ts,
                "last_large_ts": self.last_large_ts,
            },
            "bins": {"start": self.bin_base, "width": self.bin_width,
                     "packets": self.bin_counts()},
            "sample_frames": [list(r) for r in self.first_refs],
            "source_changes": [{"ts": float(ts), "frame": list(ref), "src": ip(s),
                                "sport": p if p >= 0 else None}
                               for ts, ref, s, p in self.moves],
            "source_changes_total": self.moves_total,
            "fragmented": self.fragmented,
            "fragment_frames": [list(r) for r in self.frag_refs],
        }

    def __repr__(self) -> str:
        return (f"EspSA({self.proto} {self.spi:08x} {ipaddress.ip_address(self.src)}->"
                f"{ipaddress.ip_address(self.dst)} pkts={self.packets} lost={self.lost})")
