"""The worker of :mod:`pcapvpn.parallel`: one slice read with the single pass's walk, what it
hands over recorded in order (:func:`read_slice`), the slice's ESP tracked from a fresh state
when nothing else in it can carry ESP, and the checks that the slice's reading is the single
pass's over the same bytes (:func:`_misfit`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from dissect.vpn.chain import SYNC_RECORDS

from pcapvpn.parallel.slicing import Slice, _esp_frame


@dataclass
class Part:
    """What a worker read from one slice: the recording and the reader's counters."""

    number: int
    ops: list = field(default_factory=list)
    checkpoints: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    damage: list = field(default_factory=list)
    damage_more: list = field(default_factory=list)
    size: int | None = None
    isb: dict = field(default_factory=dict)
    drops: dict = field(default_factory=dict)
    ended: float | None = None
    cooked: dict = field(default_factory=dict)
    iface_frames: dict | None = None
    notes: list = field(default_factory=list)
    #: why this slice does not line up with a single pass (None: it does)
    bad: str | None = None
    #: its start does (whatever ``bad`` says of the rest): a fresh reader of the header and the
    #: bytes from the slice's start reads on as the single pass does
    start_ok: bool = True
    #: the slice's ESP SAs tracked from a fresh state and the gaps each opened
    #: (:meth:`pcapvpn.track.esp.SliceEspTracker.summary`), or None; with it, the recording's ESP
    #: ops are only their latest times, ``(3, ts)``
    esp: tuple | None = None
    #: the slice read (to read it again when its ESP packets are needed after all)
    slice: Slice | None = None
    #: a stream's slice with plaintext runs: the (src, sport, dst, dport) of the IPv4 TCP frames
    #: of its general path, which may make the decoder follow a TCP stream and refuse a later run
    #: (None: not known — too many, or IP fragments that may reassemble into TCP)
    general_tcp: frozenset | None = None


class _Bounded:
    """The bytes ``[start, end)`` of an open file as a raw stream."""

    __slots__ = ("_f", "_left")

    def __init__(self, f, left):
        self._f = f
        self._left = left

    def read(self, n=-1):
        if self._left <= 0:
            return b""
        if n < 0 or n > self._left:
            n = self._left
        data = self._f.read(n)
        self._left -= len(data)
        return data

    def readinto(self, b):
        if self._left <= 0:
            return 0
        mv = memoryview(b)
        if len(mv) > self._left:
            mv = mv[:self._left]
        got = self._f.readinto(mv) or 0
        self._left -= got
        return got


def read_slice(sl: Slice) -> Part:
    """Read one slice with the single pass's walk and record what it hands over (the worker)."""
    ops: list = []
    app = ops.append

    def on_esp(ref, ts, *rest):
        app((1, ref[1], ts, rest))

    def on_frame(tag, number, ts, lt, data, wirelen, offset, iface):
        app((2, number, ts, lt, bytes(data), wirelen, offset, iface))

    def on_batch(tag, b):
        app((0, b))

    def on_tcp(tag, linktype, ifaces, buf, run):
        app(_lane_op(linktype, ifaces, buf, run))
        return True  # the parent hands it to the decoder's lane (a refusal: Fallback)

    lane = (sl.lane, on_tcp) if sl.batch and sl.lane is not None else None
    part = walk_slice(sl, on_esp, on_frame, on_batch if sl.batch else None, lane)
    # a stream's slice travels back without its bytes (the parent keeps them)
    part.slice = sl if sl.data is None or isinstance(sl.data, str) else dataclasses.replace(
        sl, data=None)
    if part.bad is None:
        part.ops = ops  # not shipped when it is not replayed
        if sl.data is not None and any(op[0] == 4 for op in ops):
            part.general_tcp = _general_tcp(ops)
        if sl.esp is not None and sl.batch and _esp_only_here(ops):
            part.esp = _track_esp(sl, ops)
            if part.esp is not None:
                # the ESP travels as SA states: in the recording only the latest time of each
                # batch stays (the decoder's clock); the parent reads the slice again in the
                # rare case that it needs the packets (parallel._Replay._merge_esp)
                part.ops = [(3, float(op[1].ts.max())) if op[0] == 0 else
                            (3, op[2]) if op[0] == 1 else op for op in ops]
    return part


def _lane_op(linktype, ifaces, buf, run) -> tuple:
    """A run of the reader's plaintext TCP lane (``on_tcp`` of
    :meth:`dissect.vpn.capture.pcap.PcapReader.walk`) as it travels: ``(4, linktype, ifaces,
    headers, run)``.  ``headers`` holds each frame's TCP header with its options (all the
    plaintext tracker reads of a lane frame's bytes: the MSS option of a SYN, and the header
    when it takes the frames one at a time) in rows of one width, and the run's ``frame``
    offsets are made theirs (``frame + l4`` is a row's start).  A few dozen bytes per frame
    instead of the frame."""
    from dissect.vpn.batch import np

    l4 = run["l4"]
    at = np.asarray(run["frame"], dtype=np.int64) + l4
    hl = np.asarray(run["poff"], dtype=np.int64) - l4
    n = len(at)
    width = int(hl.max()) if n else 0
    b = np.frombuffer(buf, dtype=np.uint8)
    rows = np.zeros((n, width), dtype=np.uint8)
    fits = at + width <= len(b)
    if width and fits.any():
        rows[fits] = np.lib.stride_tricks.sliding_window_view(b, width)[at[fits]]
    for i in np.flatnonzero(~fits).tolist():  # near the buffer's end: the header only
        rows[i, :hl[i]] = b[at[i]:at[i] + hl[i]]
    out = dict(run)
    out["frame"] = (np.arange(n, dtype=np.int64) * width - l4).tolist()
    return (4, linktype, ifaces, rows.tobytes(), out)


class _Unknown(Exception):  # noqa: N818 - a control-flow signal
    """A general-path frame whose decoding raised what the decoders do not raise for bad
    input: what the general path makes of it is not known here."""


def _general(ops, decode):
    """``decode(linktype, bytes)`` of each frame of the recording's general path, in order
    (those it rejects as bad input, :class:`DissectError`, left out: the general path counts a
    decode error, no event); raises :class:`_Unknown` for anything else it raises."""
    from dissect.vpn.errors import DissectError

    for op in ops:
        if op[0] != 2:
            continue
        try:
            yield decode(op[3], op[4])
        except DissectError:
            continue
        except Exception as exc:  # noqa: BLE001 - whatever the general path would make of it
            raise _Unknown from exc


def _esp_or_encap(linktype, data):
    """:func:`_esp_frame`, and True as well for IKE after a non-ESP marker on UDP ports other
    than 4500: it makes the decoder take the ESP of its flow from then on
    (:meth:`pcapvpn.decode.Decoder._classify_udp`), which this slice's ESP ops do not hold."""
    from dissect.vpn import udpencap
    from dissect.vpn.ip import IpProto

    r, esp = _esp_frame(linktype, data)
    if esp or r is None or r[3] != IpProto.UDP or r[4] < 0 or r[8] or r[9] or \
            udpencap.NAT_T_PORT in (r[4], r[5]):
        return r, esp
    poff = r[6] + 8
    kind, off, _b = udpencap.classify_udp(r[4], r[5], data, poff, r[7])
    return r, kind == udpencap.IKE and off != poff


def _esp_only_here(ops) -> bool:
    """No frame of the general path can give an ESP or AH event (ESP/AH over IP, fragments,
    TCP, ESP in UDP of another shape, IKE that opens ESP on custom ports): all the slice's ESP
    is in the recording's ESP ops, so an ESP tracker fed with those alone sees every packet of
    its SAs.  (The parent also replays packet by packet once such ports are known from an
    earlier slice: :meth:`pcapvpn.parallel.replay._Replay._merge_esp`.)"""
    from dissect.vpn.ip import IpProto

    try:
        for r, esp in _general(ops, _esp_or_encap):
            if r is None:
                continue
            frag_off, mf = r[8], r[9]
            if esp or frag_off or mf or r[3] == IpProto.TCP:
                return False
    except _Unknown:
        return False
    return True


#: the most general-path TCP 4-tuples a part lists (more: not known)
MAX_TCP_KEYS = 256
#: IP protocols that carry IP packets the decoder may open (IP in IP, IPv6 in IPv4, GRE)
_INNER = frozenset((4, 41, 47))


def _general_tcp(ops) -> frozenset | None:
    """The (src, sport, dst, dport) of the IPv4 TCP frames of the recording's general path (the
    frames that may open a TCP stream the decoder follows); None: more than MAX_TCP_KEYS, or an
    IP fragment of TCP or a tunnel (what they carry may be TCP)."""
    from dissect.vpn import link
    from dissect.vpn.ip import IpProto

    keys = set()
    try:
        for r in _general(ops, link.decode_frame):
            if r is None:
                continue
            proto = r[3]
            if ((r[8] or r[9]) and proto == IpProto.TCP) or proto in _INNER or (
                    proto == IpProto.UDP and 1701 in (r[4], r[5])):
                return None  # a fragment of TCP, or a tunnel whose inner packets may be TCP
            if r[8] or r[9]:
                continue
            if proto == IpProto.TCP and r[0] == 4 and r[4] >= 0:
                keys.add((r[1], r[4], r[2], r[5]))
                if len(keys) > MAX_TCP_KEYS:
                    return None
    except _Unknown:
        return None
    return frozenset(keys)


def _track_esp(sl, ops):
    """The slice's ESP through a fresh tracker, in order (refs numbered from the slice's start)."""
    from pcapvpn.limits import Limits
    from pcapvpn.track.esp import SliceEspTracker

    thresholds, limits = sl.esp
    et = SliceEspTracker(thresholds, limits or Limits())
    tag = sl.index
    for op in ops:
        if op[0] == 0:
            et.esp_batch(tag, op[1])
        elif op[0] == 1:
            et.esp((tag, op[1]), op[2], *op[3])
    return et.summary()


def _slice_raw(sl: Slice, stack):
    """The slice's bytes as a raw stream: ``[start, end)`` of its file, or its own bytes (held,
    or in a file of their own)."""
    import io

    if sl.data is None or isinstance(sl.data, str):
        # its file, or a file that holds exactly its bytes (a stream's slice in shared memory)
        f = stack.enter_context(open(sl.path if sl.data is None else sl.data, "rb",
                                     buffering=0))
        f.seek(sl.start if sl.data is None else 0)
        return _Bounded(f, sl.end - sl.start)
    if isinstance(sl.data, (bytes, bytearray, memoryview)):
        return io.BytesIO(sl.data)
    return sl.data


def walk_slice(sl: Slice, on_esp, on_frame, on_batch=None, on_tcp=None, on_checkpoint=None,
               on_open=None) -> Part:
    """Walk one slice (:meth:`dissect.vpn.capture.reader._Reader.walk`, the callbacks as there; frame
    numbers counted from the slice's first record) and return its counters; ``on_checkpoint``
    None: the checkpoints are kept in the part; ``on_open(reader)``: called before the walk."""
    from contextlib import ExitStack

    from dissect.vpn.capture import open_capture
    from pcapvpn.sources import INDEX_EVERY, _checkpoint, _Prefixed

    part = Part(sl.number)
    with ExitStack() as stack:
        stream = _Prefixed(sl.prefix, _slice_raw(sl, stack))
        reader = open_capture(stream)
        if on_open is not None:
            on_open(reader)
        if sl.number:
            # offsets in the file: the prefix stands in for the bytes before the slice
            reader._base += sl.start - len(sl.prefix)
            if reader.format == "pcapng":
                reader._last_ts = float("nan")  # a block taking the time before: not first

        if on_checkpoint is None:
            def on_checkpoint(number, offset):
                part.checkpoints.append(_checkpoint(reader, number, offset))

        reader.walk(sl.index, on_esp, on_frame, on_checkpoint, INDEX_EVERY, on_batch, on_tcp)
        part.stats = reader.walk_stats
        part.damage = list(reader.damage)
        part.damage_more = list(reader.damage_more)
        part.size = reader.size
        part.isb = reader.isb
        part.drops = reader.drops
        part.ended = reader.ended
        part.cooked = reader.cooked
        part.iface_frames = getattr(reader, "iface_frames", None)
        part.notes = list(getattr(reader, "notes", ()))
        if sl.tail and sl.number:  # the prefix's interface blocks were noted before it
            part.notes = [w for w in part.notes if w[0] >= sl.start]
        part.bad = _misfit(sl, reader, stream, part)
        part.start_ok = part.bad is None or _start_misfit(sl, reader, part) is None
    return part


def _max_record(reader) -> int:
    """The largest record the reader takes for one (bigger: damage)."""
    maxcap = getattr(reader, "_maxcap", None)
    if maxcap is not None:
        return int(maxcap())
    from dissect.vpn.chain import PcapngRules

    return PcapngRules(reader.byteorder).max_block


def _misfit(sl, reader, stream, part) -> str | None:
    """Why the slice's reading is not the single pass's over the same bytes, or None."""
    if stream.error:
        return stream.error
    if not sl.last:
        if reader.size != sl.end:
            return f"read to {reader.size}, not to the cut at {sl.end}"
        # how damage is told apart and resynchronised depends on the bytes up to a few records
        # after it (dissect.vpn.chain: SYNC_RECORDS records; fewer at the end of the data):
        # damage that close to the cut may have been judged differently by the single pass
        guard = (SYNC_RECORDS + 1) * (_max_record(reader) + 16)
        for d in reader.damage:
            if d.offset + d.length + guard >= sl.end or d.trailing:
                return f"damage near the cut at {sl.end}"
        if reader.damage_more[0]:
            return f"damage near the cut at {sl.end}"
    if reader.format == "pcapng" and not sl.tail:
        if len(getattr(reader, "sections", ())) != 1 or len(reader.interfaces) != sl.nifs:
            return "a section or interface block inside the slice"
        if sl.number and part.notes:
            return "interface notes in a slice"
    return _start_misfit(sl, reader, part)


def _start_misfit(sl, reader, part) -> str | None:
    """Why the slice's reading depends on the slice before it (what its reader cannot know at
    its start), or None."""
    if sl.number:
        for d in reader.damage:
            if d.before is None or d.before != d.before:
                return "damage before the slice's first packet"
        if getattr(reader, "_last_ts", 0.0) != getattr(reader, "_last_ts", 0.0) or (
                part.stats.get("first_ts") != part.stats.get("first_ts")):
            return "a block that takes the time of the block before the slice"
    return None
