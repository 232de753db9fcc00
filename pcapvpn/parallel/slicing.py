"""Cutting a capture file into slices for :mod:`pcapvpn.parallel`: which files may be cut, the
nominal offsets (:func:`plan`), the record boundaries after them (:func:`cut_points`, with the
pre-scan of the file's head that every slice is read with), and the quick look at the file's
first packets that decides whether slices pay (:func:`shares`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

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
#: the main process's own work *while the workers read* (the rule modules' imports, replaying
#: their parts, merging their states), beyond the share ``parent`` of :func:`plan`, in bytes of
#: capture a worker reads in the same time: see :func:`plan`.  The interpreter, the first
#: imports, the rules and the report are not in it: they come before the workers start or after
#: they finished, whatever the cut.  Measured on the bench's 1M mix (693 MB; 6 runs each, quiet
#: machine, median wall): 32 MB 0.73 s, 64 MB 0.69 s, 96 MB 0.75 s; one process 0.94 s
FIXED_BYTES = 64 << 20
#: bytes read at a cut's nominal offset to find the record boundary after it (then this much
#: more when the records there are too large for a chain to fit)
CUT_WINDOW = 256 << 10
CUT_WINDOW_MAX = 8 << 20
#: records a cut's chain must hold (more than the resynchronisation's 4: a cut is not a guess)
CUT_RECORDS = 16

#: slices pay when at least this share of the frames is handled in the workers: ESP (tracked
#: there) and plaintext TCP of the reader's lane (travels as its headers, decoded); every other
#: frame travels to the parent as its bytes.  Judged on at least MIN_SAMPLE frames: the file's
#: first packets before any worker starts (:func:`shares`), then the first slices
MIN_SHARE = 0.5
MIN_SAMPLE = 200
#: the part of a plaintext TCP frame's work that stays in the parent (its flow and sequence
#: bookkeeping, pcapvpn.track.inner): measured on the 1M-packet client capture of
#: bench/plain_bench.py (2/3 plaintext TCP), the parent's replay of the workers' slices took
#: 0.41 of the single pass's per-byte work and the workers' reading 0.67 (0.41 / 0.67); ESP
#: merged as SA states leaves the parent next to nothing
PLAIN_PARENT = 0.6


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
    #: the ports of the plaintext TCP lane (the decoder's ``Decoder.lane_ports``): runs of
    #: plaintext TCP travel as their headers, decoded (:func:`pcapvpn.parallel.worker._lane_op`);
    #: None: no lane (every such frame travels as its bytes)
    lane: frozenset | None = None
    #: the slice's bytes, when it is a piece of a stream (gzip, standard input: no offset to
    #: read at; :mod:`pcapvpn.parallel.stream`): held (``bytes``; a list of its pieces before it
    #: is handed out), or the path (``str``) of a file in shared memory that holds exactly them,
    #: or, for the rest of a stream that the parent reads itself, a raw stream of them; None:
    #: ``[start, end)`` of the file ``path``
    data: object = None
    #: the rest of a stream, read by the parent itself (:mod:`pcapvpn.parallel.stream`): the
    #: section and interface blocks in it are carried into the replay, not a misfit
    tail: bool = False


def eligible(paths, options) -> bool:
    """Regular, uncompressed capture files (each given once), analysed in full or to a stage the
    walk serves (``decode``, ``dissect``), without ``--keys`` or ``--vantage``."""
    if not paths or "-" in paths or len(set(paths)) != len(paths) or not _options_ok(options):
        return False
    for path in paths:
        if not os.path.isfile(path):  # (before reading: a named pipe is read once)
            return False
        try:
            with open(path, "rb") as f:
                if f.read(2) == b"\x1f\x8b":
                    return False
        except OSError:
            return False
    return True


def _options_ok(options) -> bool:
    """An analysis that slices can serve: in full or to a stage the walk serves (``decode``,
    ``dissect``), without ``--keys`` or ``--vantage``."""
    return not (options.vantage or options.keys is not None or options.stop_after == "read")


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


def plan(size: int, jobs: int, fixed: int = FIXED_BYTES, parent: float = 0.0) -> list[int]:
    """Nominal cut offsets for a file of ``size`` bytes and ``jobs`` processes: a first slice
    read by this process, then ``SLICES_PER_JOB`` slices for each of the ``jobs - 1`` workers.
    The first slice is what balances the processes: this one also starts the interpreter,
    imports, merges the workers' states and runs the rules and the report (``FIXED_BYTES``: as
    long as reading that much of a capture takes), and does ``parent`` of the work of each byte
    a worker reads (the plaintext bookkeeping: :func:`parent_share`; the worker the rest), so it
    reads less than an equal share: ``f + x + p (1 - x) = (1 - x) (1 - p) / w`` (``x`` its
    share of the file, ``f`` the fixed work, ``p`` the parent's part, ``w`` workers)."""
    w = jobs - 1
    f = fixed / size if size else 0.0
    p = parent
    share = max(0.0, ((1.0 - p) / w - p - f) / ((1.0 - p) * (1.0 + 1.0 / w))) if size else 0.0
    first = int(size * share)
    n = max(w * SLICES_PER_JOB, math.ceil((size - first) / MAX_SLICE))
    return [first] + [first + (size - first) * i // n for i in range(1, n)]


def _first_time(path):
    """The time of the first packet of ``path`` in file order (None: no packet)."""
    from dissect.vpn.capture import NONPACKET, open_capture
    from pcapvpn.sources import _Prefixed

    with open(path, "rb", buffering=0) as f:
        for rec in open_capture(_Prefixed(b"", f)).records():
            if rec[1] != NONPACKET:
                return rec[0]
    return None


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


def shares(path: str, lane=None, sample: int = 2000, data: bytes | None = None
           ) -> tuple[float, float] | None:
    """``(esp, plain)``: the shares of ESP (ESP/AH over IP or in UDP, the packets a worker
    tracks itself) and of plaintext IPv4 TCP on none of the ``lane`` ports (the reader's lane:
    a worker decodes it and hands over its headers; None: no lane) among the first ``sample``
    packets of ``path`` (``data``: of these bytes, a stream's head, instead); None: fewer than
    MIN_SAMPLE packets or unreadable.  Costs a few milliseconds: it decides whether slices pay,
    and how big the parent's slice is, before any worker starts."""
    if data is None:  # asked twice for one file: by jobs_for, then by sliced_sources
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (path, st.st_size, st.st_mtime_ns, st.st_ino,
               None if lane is None else tuple(sorted(lane)), sample)
        if key not in _SHARES:
            if len(_SHARES) >= 16:
                _SHARES.clear()
            _SHARES[key] = _shares(path, lane, sample, None)
        return _SHARES[key]
    return _shares(path, lane, sample, data)


#: :func:`shares` of files already looked at: ``{(path, size, mtime, inode, lane, sample): share}``
_SHARES: dict = {}


def _shares(path: str, lane, sample: int, data: bytes | None) -> tuple[float, float] | None:
    import io

    from dissect.vpn.capture import NONPACKET, open_capture
    from dissect.vpn.errors import DissectError
    from dissect.vpn.ip import IpProto
    from pcapvpn.sources import _Prefixed

    esp = plain = n = 0
    try:
        with (open(path, "rb", buffering=0) if data is None else io.BytesIO(data)) as f:
            for rec in open_capture(_Prefixed(b"", f)).records():
                if rec[1] == NONPACKET:
                    continue
                n += 1
                try:
                    r, is_esp = _esp_frame(rec[1], rec[2])
                except (DissectError, ValueError, IndexError):
                    r, is_esp = None, False
                if is_esp:
                    esp += 1
                elif (lane is not None and r is not None and r[0] == 4 and r[3] == IpProto.TCP
                      and not (r[8] or r[9]) and r[4] not in lane and r[5] not in lane):
                    plain += 1
                if n >= sample:
                    break
    except (OSError, DissectError, ValueError):
        return None
    return (esp / n, plain / n) if n >= MIN_SAMPLE else None


def parent_share(share: tuple[float, float] | None) -> float:
    """The part of the work of each byte a worker reads that stays in the parent, for a file of
    :func:`shares` ``share`` (see :func:`plan`)."""
    return PLAIN_PARENT * share[1] if share is not None else 0.0
