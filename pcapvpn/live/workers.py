"""``pcapvpn live --workers N``: the capture spread over N processes with ``PACKET_FANOUT``.

One process tops out near what one core can classify (bench/RESULTS.md, "Live capture").  With
``--workers N`` (N >= 2) the session forks N worker processes; each opens its own ``TPACKET_V3``
ring on the interface and joins one ``PACKET_FANOUT`` group (packet(7)) in ``PACKET_FANOUT_HASH``
mode: the kernel hands every packet to one member, chosen by the packet's flow hash modulo the
number of members.  That hash (``__skb_get_hash_symmetric``: the flow dissector's addresses and
"ports", sorted so that both directions hash alike) reads the first four bytes after the IP header
of ESP as its ports — the SPI (``proto_ports_offset()`` counts ESP among the protocols with ports
at offset 0) — so every packet of one ESP SA (same addresses, same SPI) goes to one worker, while
the other SA of the same child SA, and IKE on UDP 500 between the same gateways, may go to
another.  ESP in UDP 4500 hashes by the UDP ports: all of a NAT-T peer pair's traffic, IKE on 4500
included, goes to one worker.  ``tests/live/test_live_fanout.py`` checks on this kernel that each SA
stays whole in one worker and that both workers get SAs.

**What runs where.**  A worker reads its ring a block at a time into the batched classification
(:mod:`pcapvpn.live.batch`) and tracks the ESP of the common shapes itself (an
:class:`pcapvpn.track.esp.EspTracker`); every other frame (IKE, NAT-T control, ICMP errors, IP
fragments, TCP, the other VPNs: little volume next to ESP) goes, numbered, through a pipe to the
parent, whose ordinary decoder and trackers handle it exactly as in one process.  IKE state is
order-dependent and spans both hash members (UDP 500 and the ESP of its child SAs), so it lives in
one place, the parent, which takes the frames of all workers in time order
(:meth:`FanoutSession._deliver`: a merge of the workers' queues, each frame handed on once every
worker's *horizon* — it has handed over every packet older than that: the wall clock when it
read its rings, less a ring block's retire timeout and a margin, or the last packet read when its
ring holds a backlog — has passed it; at most ``_HOLD_MAX`` seconds); ESP SAs are independent of each other, so they can live where their packets
arrive.  Workers send a snapshot of their ESP SAs (pickled) every ``eval_interval / 2`` seconds and
at stop; at each evaluation the parent builds the ESP view the rules read from its own ESP SAs
(ESP that took the general path: fragments, ESP over TCP, IP options, AH) and the workers' latest
snapshots (:meth:`FanoutSession._view`).  The memory bound is decided on that view, as in one
process, and the SAs it forgets are removed where they live (a ``remove`` message to their worker).
An SA with packets on both sides (ESP fragmented on the way for some of its packets: the fragments
take the general path in the parent) cannot be merged exactly: the view keeps the larger share and
the report's capture warnings say how many SAs that concerned.

**Several interfaces** (``-i A -i B``, or the interfaces of ``--vantage``).  Each worker opens
a ring on every interface and joins one fanout group per interface (a group id names one set of
sockets: the ids are distinct, consecutive from a random start), and polls all its rings.  The
workers join one after the other (each waits for the previous one's ``ready``), so every group
lists them in the same order; a packet's hash is the same on every interface (the same
addresses and ports or SPI), so an SA mirrored on two ports goes to the same worker on both
and is never split between workers.  The parent sees one *lane* per worker and interface (:class:`_Lane`), which stands in for a capture
of the single-process session: its counters, drops and errors are the ring's.  An interface
whose frames are not Ethernet (a tunnel interface: raw IP) is read frame by frame and every
frame goes to the parent, whose decoder takes them as one process does (one process also
decodes them frame by frame); ``any`` cannot join a fanout group and is refused.

**Frame numbers.**  Each worker numbers the packets it receives; its frames form sources of their
own: without ``--write`` one per worker and interface, ``live:IFACE:workerK``; with ``--write``
each worker writes its own rotating pcapng files (``pcapvpn-live-wK-...``, ``--write-size`` and
``--write-files`` per worker), each holding all its interfaces (as one process's files hold all
of its interfaces), numbered across them in the order written, and the frame numbers cited are
those of these files, so ``analyze`` of all the written files shows the same evidence (a
multi-file analysis: its frames are merged by time).  The parent maps a worker's file ordinal to
the session's file index (``map_refs``).

**--vantage.**  One process gives each capture point its own tracker and decoder
(:mod:`pcapvpn.track.vantage`); so does a worker: one ESP tracker per point
(:class:`pcapvpn.track.vantage.points.PointEspTracker`), each ring's ESP to its interface's
point, each forwarded frame to that point's decoder in the parent.  A snapshot carries, per
point, the SAs and what the matching across points reads besides them: each SA's sequence-number
holes and numbering epoch (they belong to the SA: taken from where it lives) and the sampled
numbers per SPI.  Samples of one SPI held in several places (SAs of one SPI between other
addresses, hashed to other workers) are merged exactly (:func:`_merge_samples`: a sample set is
every number seen that its stride divides, at the smallest stride of the doubling chain that
keeps at most ``MAX_SAMPLES``); sets of different numbering epochs (a restart) cannot be, and are
counted with the split SAs in the report's warnings.

**--keys.**  Decryption needs the ESP bytes where the keys are: in the parent, which decodes
every forwarded frame as one process does (``esp_payload``).  The ESP keys are a fixed set,
read before the capture starts (:class:`pcapvpn.decrypt.keys.KeyStore`: ``esp_sa`` files and
tcpdump ``-E`` secrets; IKE keys decrypt IKE only, which the parent handles anyway, and derive no
ESP keys), so the set of SPIs to decrypt is known from the start and no SA ever has to move: the
workers hand the ESP of these SPIs, as frames in ring order, to the parent
(:func:`pcapvpn.live.batch.reroute`) and track only the others.  A key without an SPI (``-E``
without ``spi``) makes every SPI keyed: then all ESP goes to the parent (exact; no gain from
the workers for ESP).

**Stopping.**  SIGINT/SIGTERM stop the parent, which sends each worker SIGTERM (a signal needs no
room in a pipe); a worker reads what its ring still holds for at most
``LiveSession.DRAIN_SECONDS``, closes its file and sends its last snapshot, with the count of
what it left in the ring (reported as one process reports it).  Workers ignore SIGINT
(the terminal sends Ctrl-C to the whole process group: the parent coordinates), and stop the same
way on a service manager's SIGTERM to every process, or when the parent goes away
(``PR_SET_PDEATHSIG``, and the end of the control pipe).  Messages to a worker (``remove``) are
written without blocking (``_Worker.pump``): the parent never waits on a worker that waits on it.

Limits (exit status 2, :func:`check_options`): the ``afpacket`` backend only (PACKET_FANOUT), named
interfaces only (not ``any``), each interface once.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import select
import signal
import struct
import time
from collections import deque

from pcapvpn.live.bpf import build_filter, compile_filter
from pcapvpn.live.capture import (SOL_PACKET, AfPacketRing, CaptureError,
                                  interface_info)
from pcapvpn.live.finish import drain_until
from pcapvpn.live.session import LiveSession

__all__ = ["FanoutRing", "FanoutSession", "PACKET_FANOUT", "PACKET_FANOUT_HASH"]

#: linux/if_packet.h
PACKET_FANOUT = 18
PACKET_FANOUT_HASH = 0
#: a classic BPF program that accepts nothing (``ret #0``): in place while a member joins
_DROP_ALL = struct.pack("=HBBI", 0x06, 0, 0, 0)
_LEN = struct.Struct("=I")
#: seconds by which a worker's horizon trails the wall clock when it reads its rings: a packet
#: waits in the ring's open block for at most its retire timeout (AfPacketRing: 50 ms), plus room
#: for the way from the wire to the ring
_HORIZON_LAG = 0.1
#: seconds a frame forwarded by a worker is held at most for the time-ordered merge (a clock
#: that jumps back must not hold frames for long)
_HOLD_MAX = 1.0
_F_SETPIPE_SZ = 1031


class FanoutRing(AfPacketRing):
    """An :class:`AfPacketRing` that joins fanout group ``group`` (``PACKET_FANOUT_HASH``).

    A packet socket receives everything once bound, and joining a group needs a bound socket:
    in between it would get copies of packets that the other members also get.  So the socket
    is bound with a filter that accepts nothing, joins, and only then gets its real filter."""

    def __init__(self, name: str, bpf: bytes, group: int, **kw):
        self._group = group
        self._real_bpf = bpf
        super().__init__(name, _DROP_ALL, **kw)

    def _setup(self, bpf, block_size, block_nr, promisc, timeout_ms):
        super()._setup(bpf, block_size, block_nr, promisc, timeout_ms)
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_FANOUT,
                                 self._group | PACKET_FANOUT_HASH << 16)
        except OSError as exc:
            raise CaptureError(f"cannot join packet fanout group {self._group} on {self.name}: "
                               f"{exc.strerror}") from None
        self._attach(self._real_bpf)


# -- messages: a length, then a pickle ------------------------------------------------------------

def _send(fd: int, msg) -> None:
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_LEN.pack(len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _messages(buf: bytearray):
    """Take the complete messages off the front of ``buf``."""
    out = []
    pos = 0
    n = len(buf)
    while n - pos >= 4:
        size = _LEN.unpack_from(buf, pos)[0]
        if n - pos - 4 < size:
            break
        out.append(pickle.loads(buf[pos + 4:pos + 4 + size]))
        pos += 4 + size
    if pos:
        del buf[:pos]
    return out


# -- the worker process ---------------------------------------------------------------------------

class _Sink:
    """What :class:`pcapvpn.live.batch.BlockReader` needs of a decoder: ESP batches to the ESP
    tracker of the ring's capture point, every other frame to ``forward``."""

    def __init__(self, esp, forward):
        self.sink = esp
        self._general = forward
        self._clock = float("-inf")
        self.frames = 0
        self.truncated = 0


def _span(ring, base: dict, with_iface: bool) -> tuple:
    """The ring's (and, for worker 0, the interface's) counters since ``base`` (pcapng ISB
    names), as ``LiveSession._span_stats``; and the counters now."""
    st = ring.stats()
    itf = st["interface"] if with_iface else {}
    now = {"ifrecv": itf.get("rx_packets", 0), "filteraccept": st["received"],
           "osdrop": st["drops"],
           "ifdrop": itf.get("rx_missed_errors", 0) + itf.get("rx_fifo_errors", 0)}
    return {k: max(0, v - base.get(k, 0)) for k, v in now.items()}, now


def _esp_class(opts):
    """The ESP tracker of a capture point: with ``--vantage`` the points' own (holes and
    samples of the sequence numbers, for matching across points)."""
    if opts.points:
        from pcapvpn.track.vantage.points import PointEspTracker

        return PointEspTracker
    from pcapvpn.track.esp import EspTracker

    return EspTracker


def _extra(esp) -> dict | None:
    """What a vantage point's ESP tracker keeps besides its SAs (None: a plain tracker)."""
    if not hasattr(esp, "holes"):
        return None
    return {"holes": esp.holes, "holes_over": esp.holes_over, "samples": esp.samples,
            "ah_samples": esp.ah_samples, "epoch_lo": esp.epoch_lo}


def _worker(k: int, opts, limits, groups: list, point_of: list, keyed, out_fd: int,
            ctl_fd: int, started: float) -> int:
    """A worker's life (in the forked child); returns its exit status.  ``groups``: the
    fanout group of each interface of ``opts.interfaces``; ``point_of``: each interface's
    capture point (an index); ``keyed``: SPIs whose ESP goes to the parent (``--keys``)."""
    from pcapvpn.live.writer import RotatingWriter
    from pcapvpn.live.batch import BlockReader, batchable

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = [False]

    def on_term(*_a):
        stop[0] = True

    signal.signal(signal.SIGTERM, on_term)
    _die_with_parent()
    rings: list = []
    try:
        for iface, group in zip(opts.interfaces, groups):
            _idx, lt = interface_info(iface)
            rings.append(FanoutRing(iface, compile_filter(build_filter(opts, lt), lt), group,
                                    block_size=1 << 20, block_nr=max(4, opts.buffer_mb),
                                    promisc=opts.promisc))
    except CaptureError as e:
        for ring in rings:
            ring.close()
        _send(out_fd, ("error", str(e)))
        return 2
    cls = _esp_class(opts)
    trackers = [cls(opts.thresholds, limits) for _ in range(max(point_of) + 1)]
    pending: list = [[] for _ in rings]  # per ring: frames for the parent
    sinks = []
    for j in range(len(rings)):
        def forward(fidx, num, ts, lt, data, wirelen, off, iface=0, _fwd=pending[j].append):
            _fwd((fidx, num, ts, lt, data, wirelen, off, iface))

        sinks.append(_Sink(trackers[point_of[j]], forward))
    readers = [BlockReader(ring, keyed) if batchable(ring) else None for ring in rings]
    writer = None
    r = 0  # this worker's file ordinal (the parent maps it to a file index)
    numbered: dict = {}  # tag -> frames numbered in it so far
    bases: list = [{} for _ in rings]
    write = [None] * len(rings)
    if opts.write_dir:
        writer = RotatingWriter(opts.write_dir, [(ring.linktype, ring.name) for ring in rings],
                                opts.write_size, opts.write_files, prefix=f"pcapvpn-live-w{k}")
        _send(out_fd, ("file", 0, writer.open(started), started))
        for j in range(len(rings)):
            def wr(frames, j=j):
                writer.write(j, frames)

            write[j] = wr
    _send(out_fd, ("ready", [ring.linktype for ring in rings]))
    # per ring: frames numbered, bytes, first ts, last ts, truncated
    acc = [[0, 0, None, None, 0] for _ in rings]
    #: every packet this worker has not yet handed over is later than this (see _HORIZON_LAG)
    horizon = [float("-inf")]
    last = [float("-inf")] * len(rings)  # per ring: the time stamp of the last packet read

    def tag_of(j):
        # with --write every ring's frames go to the worker's current file (numbered across
        # its interfaces, as Wireshark numbers it); without, each ring is a source of its own
        return r if writer is not None else j

    def flush():
        out = []
        for j, a in enumerate(acc):
            if a[0] or pending[j]:
                out.append((j, tag_of(j), a[0], a[1], a[2], a[3], a[4], list(pending[j])))
                pending[j].clear()
                a[:] = [0, 0, None, None, 0]
        if out:
            _send(out_fd, ("frames", out, horizon[0]))

    def snapshot(kind):
        flush()
        stats = []
        for j, ring in enumerate(rings):
            # the last one: what the drain left in the ring, counted (LiveSession.DRAIN_SECONDS)
            left = ring.unread() if kind == "final" else 0
            st = ring.stats()
            if left:
                st = dict(st, unread=left)
            if k:  # the interface's own counters once, with worker 0's
                st = dict(st, interface={})
            stats.append(st)
        _send(out_fd, (kind, [(esp._sas, esp.overflow, _extra(esp)) for esp in trackers],
                       stats, [list(ring.errors) for ring in rings],
                       writer.deleted if writer is not None else 0))

    def read_once(j):
        ring = rings[j]
        sink = sinks[j]
        tag = tag_of(j)
        num = numbered.get(tag, 0)
        b0, t0 = ring.bytes, sink.truncated
        if readers[j] is not None:
            n, first, last_ts = readers[j].feed(sink, tag, num, 4, write[j])
        else:  # not Ethernet: every frame to the parent (as one process decodes them all)
            batch: list = []
            n = ring.read(batch, tag, num, max_blocks=4)
            if n:
                first, last_ts = batch[0][2], batch[-1][2]
                if write[j] is not None:
                    write[j](batch)
                fwd = pending[j].append
                for f in batch:
                    fwd(f + (0,))
                    if f[5] > len(f[4]):
                        sink.truncated += 1
        if n:
            numbered[tag] = num + n
            last[j] = last_ts
            a = acc[j]
            a[0] += n
            a[1] += ring.bytes - b0
            a[4] += sink.truncated - t0
            if a[2] is None:
                a[2] = first
            a[3] = last_ts
        return n

    def rotate():
        nonlocal r
        flush()
        now = time.time()
        spans = []
        for j, ring in enumerate(rings):
            span, bases[j] = _span(ring, bases[j], k == 0)
            spans.append(span)
        writer.close(now, spans)
        r += 1
        numbered.clear()
        _send(out_fd, ("file", r, writer.open(now), now))

    poller = select.poll()
    for ring in rings:
        poller.register(ring.fileno(), select.POLLIN | select.POLLERR)
    poller.register(ctl_fd, select.POLLIN)
    ctl_buf = bytearray()
    interval = max(0.05, opts.eval_interval / 2)
    next_snap = time.monotonic() + interval
    next_horizon = 0.0
    try:
        while not stop[0]:
            n = 0
            h = time.time() - _HORIZON_LAG
            for j in range(len(rings)):
                n += read_once(j)
                if writer is not None and writer.full():
                    rotate()
                if rings[j].ready():  # a backlog: what is left came after what was read
                    h = min(h, last[j])
            mono = time.monotonic()
            horizon[0] = max(horizon[0], h)
            if n:
                flush()
            elif mono >= next_horizon:  # idle: the parent may hand on the other workers' frames
                _send(out_fd, ("horizon", horizon[0]))
                next_horizon = mono + _HORIZON_LAG / 2
            if mono >= next_snap:
                snapshot("snap")
                next_snap = mono + interval
            for fd, ev in poller.poll(0 if n else 50):
                if fd != ctl_fd:
                    continue
                chunk = os.read(ctl_fd, 65536) if ev & select.POLLIN else b""
                if not chunk:  # the parent is gone
                    stop[0] = True
                    break
                ctl_buf += chunk
                for msg in _messages(ctl_buf):
                    if msg[0] == "remove":
                        keys = set(msg[1])
                        for p, esp in enumerate(trackers):
                            esp.remove([sa for sa in esp._sas if (p,) + _sa_key(sa) in keys])
        deadline = time.monotonic() + LiveSession.DRAIN_SECONDS
        for j in range(len(rings)):
            drain_until(deadline, lambda j=j: read_once(j))
        flush()
        if writer is not None:
            writer.close(time.time(), [_span(ring, bases[j], k == 0)[0]
                                       for j, ring in enumerate(rings)])
        for reader in readers:
            if reader is not None:
                reader.close()
        snapshot("final")
        for ring in rings:
            ring.close()
    except BrokenPipeError:
        return 1
    return 0


def _die_with_parent() -> None:
    """SIGTERM when the parent process ends (Linux ``PR_SET_PDEATHSIG``)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _sa_key(sa):
    from pcapvpn.track.esp import _key

    return (sa.proto,) + _key(sa)


# -- the parent's side ----------------------------------------------------------------------------

class _Worker:
    """The parent's handle on one worker process."""

    def __init__(self, k, pid, out_fd, ctl_fd):
        self.k = k
        self.pid = pid
        self.out_fd = out_fd
        self.ctl_fd = ctl_fd
        self.buf = bytearray()
        self.outq = bytearray()  # messages to the worker not yet written
        #: per capture point: the latest snapshot's ESP SAs (refs made the session's), its
        #: overflow SAs and (--vantage) the point's holes and samples
        self.pts: list = []
        self.done = False  # its final snapshot arrived
        self.exited = False
        self.files: dict = {}  # the worker's file tag -> the session's file index
        self.deleted = 0  # its --write files deleted by rotation
        self.lanes: list = []  # its _Lane per interface
        self.early: list = []  # its messages up to its "ready" (handled once the session is)
        #: it has handed over every packet older than this (wall clock, see _HORIZON_LAG)
        self.horizon = float("-inf")

    def fileno(self) -> int:
        return self.out_fd

    def read(self) -> list:
        """The complete messages the worker sent so far (without waiting)."""
        if self.pid is None:
            return []
        while True:
            try:
                chunk = os.read(self.out_fd, 1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                self.exited = True
                break
            self.buf += chunk
        return _messages(self.buf)

    def tell(self, msg) -> None:
        """Queue ``msg`` for the worker and write what the pipe takes now: the parent never
        blocks on a worker that is itself blocked writing to a full pipe."""
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        self.outq += _LEN.pack(len(data)) + data
        self.pump()

    def stop(self) -> None:
        """Ask the worker to stop (SIGTERM: it drains its rings, sends its last snapshot and
        ends; a signal needs no room in a pipe)."""
        if self.pid is not None and not self.exited:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except OSError:
                pass

    def pump(self) -> None:
        while self.outq and self.pid is not None:
            try:
                n = os.write(self.ctl_fd, self.outq)
            except BlockingIOError:
                return
            except OSError:  # the worker is gone
                self.outq.clear()
                return
            del self.outq[:n]

    def close(self) -> None:
        """End the process (asked to stop first; killed when it does not)."""
        if self.pid is None:
            return
        self.stop()
        for _ in range(100):
            pid, _st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        else:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
            os.waitpid(self.pid, 0)
        self.pid = None
        for fd in (self.out_fd, self.ctl_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class _Lane:
    """One interface's ring in one worker; stands in for a capture in :class:`LiveSession`
    (``name``, ``linktype``, ``bytes``, ``packets``, ``errors``, ``stats()``, ``close()``)."""

    def __init__(self, worker, j, name, index, linktype):
        self.worker = worker
        self.j = j  # the interface (index in opts.interfaces)
        self.index = index  # the capture index in the session
        self.name = name
        self.linktype = linktype
        self.bytes = 0
        self.packets = 0
        self.errors: list = []
        self.last = {"received": 0, "drops": 0, "packets": 0, "truncated": 0, "interface": {}}
        #: forwarded frames not yet handed to the decoder: (ts, monotonic time received, file
        #: index, frame), in ring order (FanoutSession._deliver)
        self.queue: deque = deque()
        self.clock = float("-inf")  # the last time stamp read from the ring

    def stats(self) -> dict:
        return self.last

    def unread(self) -> int:
        """What the worker's drain left in its ring at the stop (its last snapshot's count)."""
        return self.last.get("unread", 0)

    def close(self) -> None:
        """The worker's process is ended by :meth:`FanoutSession.stop_workers`."""


class FanoutSession(LiveSession):
    """:class:`pcapvpn.live.LiveSession` over N worker processes (see the module docstring)."""

    #: seconds a worker has to start (open its rings, join the groups) and to stop
    START_SECONDS = 30.0
    STOP_SECONDS = 10.0

    def __init__(self, opts, sinks=(), view=None, clock=time.time):
        from pcapvpn.decode import Limits

        check_options(opts)
        started = clock()
        limits = (opts.limits or Limits()).for_live(opts.max_sas)
        ifaces = list(opts.interfaces)
        names = list(dict.fromkeys(opts.points)) if opts.points else []
        point_of = [names.index(p) for p in opts.points] if opts.points else [0] * len(ifaces)
        workers = self._start(opts, limits, point_of, _keyed(opts.keys), started)
        lts = [interface_info(iface)[1] for iface in ifaces]
        lanes = []
        for w in workers:
            for j, iface in enumerate(ifaces):
                lane = _Lane(w, j, iface, len(lanes), lts[j])
                w.lanes.append(lane)
                lanes.append(lane)
        try:
            super().__init__(dataclasses.replace(opts, write_dir=None), sinks, view, clock,
                             captures=lanes)
            self.opts = opts
            self.started = started
            self._pps_mark = (started, 0)
            self.workers = workers
            self.lanes = lanes
            self._split = 0  # SAs seen both in a worker and in this process (last view)
            self._removed: dict = {}  # (point,) + SA key -> last_ts when the bound removed it
            self._origin: dict = {}  # id(SA) of the last view -> worker (None: this process)
            self._cur: list = [None] * len(lanes)  # per lane: the source its frames go to
            if self.points:  # the points' capture indices: the lanes of their interfaces
                self._point_of = [point_of[lane.j] for lane in lanes]
                for k, pt in enumerate(self.points):
                    pt.capture_indices = [i for i, p in enumerate(self._point_of) if p == k]
            trackers = [pt.tracker for pt in self.points] if self.points else [self.tracker]
            self._trackers = trackers
            self._own = [tr.esp_tracker for tr in trackers]  # this process's ESP trackers
            self.sources.clear()
            self.names.clear()
            if not opts.write_dir:
                for lane in lanes:
                    src = self._new_source(f"live:{lane.name}:worker{lane.worker.k}", "live",
                                           [lane.index])
                    lane.worker.files[lane.j] = src.index
                    self._cur[lane.index] = src
            self._wait_ready(workers)
        except BaseException:
            for w in workers:
                w.close()
            raise

    # -- start --------------------------------------------------------------------------------

    def _start(self, opts, limits, point_of, keyed, started) -> list:
        # one fanout group per interface (a group id is per network namespace and may not be
        # in use by sockets of other settings): distinct ids, from a random start
        g0 = int.from_bytes(os.urandom(2), "big")
        groups = [(g0 + j) & 0xFFFF for j in range(len(opts.interfaces))]
        workers: list = []
        for k in range(opts.workers):
            out_r, out_w = os.pipe()
            ctl_r, ctl_w = os.pipe()
            try:
                import fcntl

                fcntl.fcntl(out_w, _F_SETPIPE_SZ, 1 << 20)
            except OSError:
                pass
            pid = os.fork()
            if pid == 0:  # the worker
                code = 1
                try:
                    os.close(out_r)
                    os.close(ctl_w)
                    for w in workers:  # the other workers' pipes are not this one's
                        os.close(w.out_fd)
                        os.close(w.ctl_fd)
                    code = _worker(k, opts, limits, groups, point_of, keyed, out_w, ctl_r,
                                   started)
                except BaseException:  # noqa: BLE001 - reported through the exit status
                    import traceback

                    traceback.print_exc()
                    code = 1
                finally:
                    os._exit(code)
            os.close(out_w)
            os.close(ctl_r)
            os.set_blocking(out_r, False)
            os.set_blocking(ctl_w, False)
            w = _Worker(k, pid, out_r, ctl_w)
            workers.append(w)
            try:
                self._joined(w)
            except BaseException:
                for x in workers:
                    x.close()
                raise
        return workers

    def _joined(self, w) -> None:
        """Wait until worker ``w`` has joined every group (its ``ready``), keeping what it sent
        before for :meth:`_wait_ready`.  The workers join one after the other, so each group
        lists them in the same order, and a flow (the same addresses and ports or SPI, hence
        the same hash) seen on several interfaces goes to the same worker on each: an SA
        mirrored on two ports stays whole in one worker, as it is in one process."""
        deadline = time.monotonic() + self.START_SECONDS
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or w.exited:
                raise CaptureError(f"capture worker {w.k} did not start")
            select.select([w.out_fd], [], [], min(left, 0.5))
            msgs = w.read()
            for msg in msgs:
                if msg[0] == "error":
                    raise CaptureError(msg[1])
            w.early += msgs
            if any(msg[0] == "ready" for msg in msgs):
                return

    def _wait_ready(self, workers) -> None:
        """Each worker's first messages, in worker order (so the file indices are too)."""
        for w in workers:
            for msg in w.early:
                if msg[0] != "ready":
                    self._handle(w, msg)
            w.early = []

    # -- what the workers send ----------------------------------------------------------------

    def _handle(self, w, msg) -> int:
        kind = msg[0]
        if kind == "frames":
            got = 0
            mono = time.monotonic()
            for j, tag, n, nbytes, t0, t1, trunc, frames in msg[1]:
                lane = w.lanes[j]
                src = self.sources[w.files[tag]]
                fidx = src.index
                if n:
                    b0 = lane.bytes
                    lane.bytes += nbytes
                    lane.packets += n
                    self._count(lane.index, lane, src, n, b0, t0, t1)
                dec = self._decoder_of(lane)
                dec.frames += n
                dec.truncated += trunc
                q = lane.queue
                for f in frames:
                    q.append((f[2], mono, fidx, f))
                if t1 is not None:
                    lane.clock = max(lane.clock, t1)
                got += n
            w.horizon = max(w.horizon, msg[2])
            return got
        if kind == "horizon":
            w.horizon = max(w.horizon, msg[1])
            return 0
        if kind == "file":
            _k, r, path, ts = msg
            old = self._cur[w.lanes[0].index]
            if old is not None:
                self._refresh_totals()
                old.ended = ts
            src = self._new_source(path, "pcapng", [lane.index for lane in w.lanes])
            w.files[r] = src.index
            for lane in w.lanes:
                self._cur[lane.index] = src
            return 0
        if kind in ("snap", "final"):
            _k, pts, stats, errors, deleted = msg
            self._adopt(w, pts)
            for lane, st, err in zip(w.lanes, stats, errors):
                lane.last = st
                lane.errors = err
            w.deleted = deleted
            if kind == "final":
                w.done = True
            return 0
        if kind == "error":
            w.lanes[0].errors.append((time.time(), msg[1]))
        return 0

    def _adopt(self, w, pts) -> None:
        """A worker's snapshot: its refs made the session's; SAs the memory bound removed
        (and that the worker had not yet removed when it took the snapshot) left out."""
        from pcapvpn.track.esp import map_refs

        files = w.files

        def ref(rf):
            return (files[rf[0]], rf[1])

        out = []
        for p, (sas, overflow, extra) in enumerate(pts):
            keep = []
            seen = set()
            for sa in sas:
                key = (p,) + _sa_key(sa)
                seen.add(key)
                gone = self._removed.get(key)
                if gone is not None and sa.last_ts <= gone:
                    continue
                map_refs(sa, ref)
                keep.append(sa)
            for sa in overflow.values():
                map_refs(sa, ref)
            if extra is not None:
                _map_extra(extra, ref)
            for key in [key for key in self._removed if key[0] == p and key not in seen]:
                del self._removed[key]
            out.append((keep, overflow, extra))
        w.pts = out

    def _feed(self, idx, cap, batch):
        """Take what the worker of lane ``idx`` sent (once per worker: at its first lane) and
        hand on what the time-ordered merge allows (:meth:`_deliver`); returns how many frames
        (0: nothing new)."""
        w = cap.worker
        if cap.j:
            return 0
        w.pump()
        got = 0
        msgs = w.read()
        for msg in msgs:
            got += self._handle(w, msg)
        if msgs:
            self._deliver()
        return got or len(msgs)

    def _decoder_of(self, lane):
        return self.points[self._point_of[lane.index]].decoder if self.points else self.decoder

    def _deliver(self, final: bool = False) -> None:
        """The forwarded frames of every lane to the decoders in time order (a merge of the
        lanes' queues, each in its ring's order): a frame goes on once every worker has handed
        over everything older (its ``horizon``; a worker that ended has nothing more), or after
        ``_HOLD_MAX`` seconds held, or at the end (``final``).  IKE is order-dependent and its
        messages of one exchange may be hashed to different workers (UDP 500 and 4500): the
        parent takes them in the capture's order, as one process reading one interface does."""
        lanes = [lane for lane in self.lanes if lane.queue]
        if not lanes:
            return
        if final:
            horizon = float("inf")
        else:
            horizon = min((float("inf") if w.done or w.exited else w.horizon)
                          for w in self.workers)
        late = time.monotonic() - _HOLD_MAX
        while lanes:
            lane = min(lanes, key=lambda x: x.queue[0][0])
            ts, got, fidx, f = lane.queue[0]
            if ts > horizon and got > late:
                break
            lane.queue.popleft()
            dec = self._decoder_of(lane)
            dec._general(fidx, *f[1:])
            if ts > dec._clock:
                dec._clock = ts
            if not lane.queue:
                lanes.remove(lane)
        for lane in self.lanes:
            if not lane.queue:  # everything read from it is handed on: its clock too
                dec = self._decoder_of(lane)
                if lane.clock > dec._clock:
                    dec._clock = lane.clock

    # -- the ESP view the rules read ----------------------------------------------------------

    def _parts(self, p) -> list:
        """Point ``p``'s ESP state in this process and in each worker's latest snapshot:
        ``[(worker or None, SAs, overflow, extra)]``."""
        own = self._own[p]
        out = [(None, own._sas, own.overflow, _extra(own))]
        for w in self.workers:
            if p < len(w.pts):
                sas, overflow, extra = w.pts[p]
                out.append((w, sas, overflow, extra))
        return out

    def _view(self, p: int = 0):
        """An ESP tracker holding point ``p``'s ESP SAs of this process and of the workers'
        latest snapshots."""
        from pcapvpn.track.esp import _key

        own = self._own[p]
        view = type(own)(self.opts.thresholds, self.limits)
        origin = self._origin
        split = 0
        parts = self._parts(p)
        extra_of = {}
        for who, sas, overflow, extra in parts:
            for sa in sas:
                d, d2 = (view._esp, view._esp2) if sa.proto == "esp" else (view._ah, view._ah2)
                key = _key(sa)
                old = d2.get(key)
                if old is not None:
                    split += 1
                    if old.packets >= sa.packets:
                        continue
                    view._sas.remove(old)
                    origin.pop(id(old), None)
                    extra_of.pop(id(old), None)
                d2[key] = sa
                if sa.spi not in d or d[sa.spi] is old:
                    d[sa.spi] = sa
                view._sas.append(sa)
                origin[id(sa)] = who
                extra_of[id(sa)] = extra
            for key, sa in overflow.items():
                cur = view.overflow.get(key)
                if cur is None or cur.packets < sa.packets:
                    view.overflow[key] = sa
        if hasattr(view, "holes"):
            split += _merge_points(view, parts, extra_of)
        self._split += split
        return view

    def esp_sas_now(self) -> list:
        """The first point's ESP SAs, of this process and the workers' latest snapshots
        (``live --metrics``; read from the exporter's thread: list copies only)."""
        out = list(self._own[0]._sas)
        for w in self.workers:
            if w.pts:
                out += list(w.pts[0][0])
        return out

    def _views(self) -> list:
        self._split = 0
        self._origin = {}
        return [self._view(p) for p in range(len(self._trackers))]

    def _with_view(self, fn, *args):
        """``fn(*args)`` with the views in the trackers' place (events that arrive meanwhile
        still go to this process's own ESP trackers: the decoders hold their bound methods)."""
        trs = self._trackers
        if trs[0].esp_tracker is not self._own[0]:  # finish(): the views are there for good
            return fn(*args)
        for tr, v in zip(trs, self._views()):
            tr.esp_tracker = v
        try:
            return fn(*args)
        finally:
            for tr, own in zip(trs, self._own):
                tr.esp_tracker = own

    def _compute(self, now, final: bool = False, keep: dict | None = None) -> dict:
        return self._with_view(super()._compute, now, final, keep)

    def _judged(self, keep: dict) -> bytes:
        return self._with_view(super()._judged, keep)

    def _apply(self, res, final: bool = False) -> None:
        self._with_view(self._apply_in_view, res, final)

    def _apply_in_view(self, res, final):
        """:meth:`LiveSession._apply` over the views; what its memory bound removed from a
        view is removed where it lives (here, or in its worker)."""
        trs = self._trackers
        views = [tr.esp_tracker for tr in trs]
        before = [list(v._sas) for v in views]
        LiveSession._apply(self, res, final)
        if views[0] is self._own[0]:
            return
        by_worker: dict = {}
        for p, (v, old) in enumerate(zip(views, before)):
            kept = set(map(id, v._sas))
            gone = [sa for sa in old if id(sa) not in kept]
            if not gone:
                continue
            self._own[p].remove([sa for sa in gone if self._origin.get(id(sa)) is None])
            for sa in gone:
                w = self._origin.get(id(sa))
                if w is not None:
                    key = (p,) + _sa_key(sa)
                    self._removed[key] = sa.last_ts
                    by_worker.setdefault(w.k, []).append(key)
                    sas, overflow, extra = w.pts[p]
                    w.pts[p] = ([x for x in sas if x is not sa], overflow, extra)
        for k, keys in by_worker.items():
            self.workers[k].tell(("remove", keys))

    # -- the end ------------------------------------------------------------------------------

    def _current_sources(self) -> list:
        return list({id(s): s for s in self._cur if s is not None}.values())

    def _source_of(self, idx):
        return self._cur[idx]

    def _points_now(self, now):
        pts = super()._points_now(now)
        if self.opts.write_dir:  # as one process: every written file holds every interface
            for pt in pts:
                pt.sources = list(self.sources)
        return pts

    def stop_workers(self) -> None:
        """Ask every worker to stop and take what they send until their last snapshot (at most
        ``STOP_SECONDS``)."""
        for w in self.workers:
            w.stop()
        deadline = time.monotonic() + self.STOP_SECONDS
        for w in self.workers:
            while not w.done and not w.exited and time.monotonic() < deadline:
                select.select([w.out_fd], [], [], 0.1)
                for msg in w.read():
                    self._handle(w, msg)
            for msg in w.read():
                self._handle(w, msg)
            w.close()
        self._deliver(final=True)

    def finish(self):
        if self._child is not None:
            self._abandon_child()
        self.stop_workers()
        # from here on the views are the state: the report and the last evaluation read them
        for tr, view in zip(self._trackers, self._views()):
            tr.esp_tracker = view
            tr.esp = view.esp
            tr.esp_batch = view.esp_batch
            tr.ah = view.ah
        return super().finish()

    def warnings(self) -> list[str]:
        out = super().warnings()
        deleted = sum(w.deleted for w in self.workers)
        if deleted:
            out.append(f"live: {deleted} older capture file(s) were deleted by rotation "
                       f"(--write-files {self.opts.write_files} per worker); evidence frames in "
                       f"them are gone")
        for w in self.workers:
            if w.exited and not w.done:
                out.append(f"live --workers: capture worker {w.k} ended before the capture "
                           f"stopped: the kernel gave its share of the packets to the other "
                           f"workers from then on; its ESP SAs are those of its last snapshot")
        if self._split:
            out.append(f"live --workers: {self._split} ESP SA(s) had packets both on a worker's "
                       f"fast path and on the general path (IP fragments, IP options, ESP over "
                       f"TCP): their statistics here are those of the larger share only")
        return out

    def close_captures(self):
        for w in getattr(self, "workers", None) or ():
            w.close()


def check_options(opts) -> None:
    """What ``--workers`` cannot do, as a :class:`CaptureError` (exit status 2) naming it."""
    if opts.backend != "afpacket":
        raise CaptureError("--workers needs the afpacket backend (PACKET_FANOUT)")
    for iface in opts.interfaces:
        if interface_info(iface)[0] == 0:
            raise CaptureError(f"--workers needs named interfaces: {iface!r} (all interfaces) "
                               f"cannot join a PACKET_FANOUT group; give each interface with -i")
    if len(set(opts.interfaces)) != len(opts.interfaces):
        dup = next(i for i in opts.interfaces if opts.interfaces.count(i) > 1)
        raise CaptureError(f"--workers: interface {dup} is given twice")


def _keyed(keys):
    """The SPIs whose ESP the workers hand to the parent (``--keys``): those with an ESP key,
    every SPI when a key names none, or None."""
    from pcapvpn.live.batch import ALL_SPIS

    if keys is None:
        return None
    if keys.esp_all:
        return ALL_SPIS
    return frozenset(keys.esp_spis) or None


def _map_extra(extra: dict, ref) -> None:
    """A vantage point's holes and samples with their refs made the session's."""
    for holes in extra["holes"].values():
        for h in holes:
            h[2] = ref(h[2])
    for sets in (extra["samples"], extra["ah_samples"]):
        for s in sets.values():
            s.d = {q: (t, ref(rf), ln) for q, (t, rf, ln) in s.d.items()}


def _merge_points(view, parts, extra_of) -> int:
    """A vantage point's view (:class:`pcapvpn.track.vantage.points.PointEspTracker`) given each
    SA's holes and numbering epoch from where the SA lives, and the samples of every SPI from
    every part (:func:`_merge_samples`).  Returns how many SPIs' samples could not be merged
    exactly (told in the warnings as split SAs)."""
    for sa in view._sas:
        extra = extra_of.get(id(sa))
        if extra is None:
            continue
        if sa in extra["holes"]:
            view.holes[sa] = extra["holes"][sa]
        if sa in extra["holes_over"]:
            view.holes_over.add(sa)
        if sa in extra["epoch_lo"]:
            view.epoch_lo[sa] = extra["epoch_lo"][sa]
    bad = 0
    for name in ("samples", "ah_samples"):
        by_spi: dict = {}
        for _who, _sas, _ov, extra in parts:
            if extra is not None:
                for spi, s in extra[name].items():
                    by_spi.setdefault(spi, []).append(s)
        out = getattr(view, name)
        for spi, sets in by_spi.items():
            merged = _merge_samples(sets)
            if merged is None:
                bad += 1
                merged = max(sets, key=lambda s: len(s.d))
            out[spi] = merged
    return bad


def _merge_samples(sets):
    """One SPI's sample sets from several parts of the capture as one pass would have made it,
    or None when they are of different epochs of its numbering.  A set holds every number seen
    that its stride divides, and its stride is the smallest of the doubling chain that keeps
    at most ``MAX_SAMPLES`` of them (the stride doubles only when the numbers it divides grew
    past that); so the union at the largest stride, doubled while too many, is exactly it."""
    from pcapvpn.track.vantage import MAX_SAMPLES
    from pcapvpn.track.vantage.points import SampleSet

    if len(sets) == 1:
        return sets[0]
    a = sets[0]
    if any((s.epoch, s.base, s.since, s.wrap_ts, s.prev_base)
           != (a.epoch, a.base, a.since, a.wrap_ts, a.prev_base) for s in sets[1:]):
        return None
    out = SampleSet(a.epoch, a.since)
    out.base, out.wrap_ts, out.prev_base = a.base, a.wrap_ts, a.prev_base
    m = max(s.mask for s in sets)
    d: dict = {}
    for s in sets:
        for q, v in s.d.items():
            if not q & m and (q not in d or v[0] < d[q][0]):
                d[q] = v
    while len(d) > MAX_SAMPLES:
        m = m * 2 + 1
        d = {q: v for q, v in d.items() if not q & m}
    out.mask = m
    out.d = d
    return out
