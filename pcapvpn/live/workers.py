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
one place, the parent; ESP SAs are independent of each other, so they can live where their packets
arrive.  Workers send a snapshot of their ESP SAs (pickled) every ``eval_interval / 2`` seconds and
at stop; at each evaluation the parent builds the ESP view the rules read from its own ESP SAs
(ESP that took the general path: fragments, ESP over TCP, IP options, AH) and the workers' latest
snapshots (:meth:`FanoutSession._view`).  The memory bound is decided on that view, as in one
process, and the SAs it forgets are removed where they live (a ``remove`` message to their worker).
An SA with packets on both sides (ESP fragmented on the way for some of its packets: the fragments
take the general path in the parent) cannot be merged exactly: the view keeps the larger share and
the report's capture warnings say how many SAs that concerned.

**Frame numbers.**  Each worker numbers the packets it receives; its frames form sources of their
own: without ``--write`` one per worker, ``live:IFACE:workerK``; with ``--write`` each worker writes
its own rotating pcapng files (``pcapvpn-live-wK-...``, ``--write-size`` and ``--write-files`` per
worker) and the frame numbers cited are those of these files, so ``analyze`` of all the written
files shows the same evidence (a multi-file analysis: its frames are merged by time).  The parent
maps a worker's file ordinal to the session's file index (``map_refs``).

**Stopping.**  SIGINT/SIGTERM stop the parent, which sends each worker SIGTERM (a signal needs no
room in a pipe); a worker reads what its ring still holds for at most
``LiveSession.DRAIN_SECONDS``, closes its file and sends its last snapshot.  Workers ignore SIGINT
(the terminal sends Ctrl-C to the whole process group: the parent coordinates), and stop the same
way on a service manager's SIGTERM to every process, or when the parent goes away
(``PR_SET_PDEATHSIG``, and the end of the control pipe).  Messages to a worker (``remove``) are
written without blocking (``_Worker.pump``): the parent never waits on a worker that waits on it.

Limits: one Ethernet interface, the ``afpacket`` backend, no ``--vantage``, no ``--keys``.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import select
import signal
import struct
import time

from pcapvpn.live.bpf import build_filter, compile_filter
from pcapvpn.live.capture import SOL_PACKET, AfPacketRing, CaptureError, interface_info
from pcapvpn.live.session import LiveSession

__all__ = ["FanoutRing", "FanoutSession", "PACKET_FANOUT", "PACKET_FANOUT_HASH"]

#: linux/if_packet.h
PACKET_FANOUT = 18
PACKET_FANOUT_HASH = 0
#: a classic BPF program that accepts nothing (``ret #0``): in place while a member joins
_DROP_ALL = struct.pack("=HBBI", 0x06, 0, 0, 0)
_LEN = struct.Struct("=I")
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
    """What :class:`pcapvpn.live.batch.BlockReader` needs of a decoder: ESP batches to the
    worker's ESP tracker, every other frame to ``forward``."""

    def __init__(self, esp, forward):
        self.sink = esp
        self._general = forward
        self._clock = float("-inf")
        self.frames = 0
        self.truncated = 0


def _span(ring, base: dict, with_iface: bool) -> dict:
    """The ring's (and, for worker 0, the interface's) counters since ``base`` (pcapng ISB
    names), as ``LiveSession._span_stats``."""
    st = ring.stats()
    itf = st["interface"] if with_iface else {}
    now = {"ifrecv": itf.get("rx_packets", 0), "filteraccept": st["received"],
           "osdrop": st["drops"],
           "ifdrop": itf.get("rx_missed_errors", 0) + itf.get("rx_fifo_errors", 0)}
    return {k: max(0, v - base.get(k, 0)) for k, v in now.items()}, now


def _worker(k: int, opts, limits, iface: str, group: int, out_fd: int, ctl_fd: int,
            started: float) -> int:
    """A worker's life (in the forked child); returns its exit status."""
    from pcapvpn.live.writer import RotatingWriter
    from pcapvpn.live.batch import BlockReader
    from pcapvpn.track.esp import EspTracker

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = [False]

    def on_term(*_a):
        stop[0] = True

    signal.signal(signal.SIGTERM, on_term)
    _die_with_parent()
    try:
        _idx, lt = interface_info(iface)
        ring = FanoutRing(iface, compile_filter(build_filter(opts, lt), lt), group,
                          block_size=1 << 20, block_nr=max(4, opts.buffer_mb),
                          promisc=opts.promisc)
    except CaptureError as e:
        _send(out_fd, ("error", str(e)))
        return 2
    esp = EspTracker(opts.thresholds, limits)
    pending: list = []
    fwd = pending.append

    def forward(fidx, num, ts, lt, data, wirelen, off, iface=0):
        fwd((fidx, num, ts, lt, data, wirelen, off, iface))

    sink = _Sink(esp, forward)
    reader = BlockReader(ring)
    writer = None
    r = 0  # this worker's file ordinal (the parent maps it to a file index)
    numbered = 0
    base: dict = {}
    write = None
    if opts.write_dir:
        writer = RotatingWriter(opts.write_dir, [(ring.linktype, ring.name)], opts.write_size,
                                opts.write_files, prefix=f"pcapvpn-live-w{k}")
        _send(out_fd, ("file", 0, writer.open(started), started))

        def write(frames):
            writer.write(0, frames)
    _send(out_fd, ("ready", ring.linktype))
    acc = [0, 0, None, None, 0]  # frames numbered, bytes, first ts, last ts, truncated

    def flush():
        if acc[0] or pending:
            _send(out_fd, ("frames", r, acc[0], acc[1], acc[2], acc[3], acc[4], list(pending)))
            pending.clear()
            acc[:] = [0, 0, None, None, 0]

    def snapshot(kind):
        flush()
        st = ring.stats()
        if k:  # the interface's own counters once, with worker 0's
            st = dict(st, interface={})
        _send(out_fd, (kind, esp._sas, esp.overflow, st, list(ring.errors),
                       writer.deleted if writer is not None else 0))

    def read_once():
        nonlocal numbered
        b0, t0 = ring.bytes, sink.truncated
        n, first, last = reader.feed(sink, r, numbered, 4, write)
        if n:
            numbered += n
            acc[0] += n
            acc[1] += ring.bytes - b0
            acc[4] += sink.truncated - t0
            if acc[2] is None:
                acc[2] = first
            acc[3] = last
        return n

    poller = select.poll()
    poller.register(ring.fileno(), select.POLLIN | select.POLLERR)
    poller.register(ctl_fd, select.POLLIN)
    ctl_buf = bytearray()
    interval = max(0.05, opts.eval_interval / 2)
    next_snap = time.monotonic() + interval
    try:
        while not stop[0]:
            n = read_once()
            if writer is not None and writer.full():
                flush()
                now = time.time()
                span, base_new = _span(ring, base, k == 0)
                writer.close(now, [span])
                base = base_new
                r += 1
                numbered = 0
                _send(out_fd, ("file", r, writer.open(now), now))
            mono = time.monotonic()
            if n:
                flush()
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
                        esp.remove([sa for sa in esp._sas if _sa_key(sa) in keys])
        deadline = time.monotonic() + LiveSession.DRAIN_SECONDS
        while time.monotonic() < deadline and read_once():
            pass
        flush()
        if writer is not None:
            writer.close(time.time(), [_span(ring, base, k == 0)[0]])
        reader.close()
        snapshot("final")
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
    """The parent's handle on one worker; stands in for a capture in :class:`LiveSession`
    (``name``, ``linktype``, ``bytes``, ``packets``, ``errors``, ``stats()``, ``close()``)."""

    def __init__(self, k, pid, out_fd, ctl_fd, name):
        self.k = k
        self.pid = pid
        self.out_fd = out_fd
        self.ctl_fd = ctl_fd
        self.name = name
        self.linktype = 1
        self.bytes = 0
        self.packets = 0
        self.truncated = 0
        self.errors: list = []
        self.buf = bytearray()
        self.outq = bytearray()  # messages to the worker not yet written
        self.last = {"received": 0, "drops": 0, "packets": 0, "truncated": 0, "interface": {}}
        self.sas: list = []  # the latest snapshot's ESP SAs (refs made the session's)
        self.overflow: dict = {}
        self.done = False  # its final snapshot arrived
        self.exited = False
        self.files: dict = {}  # the worker's file ordinal -> the session's file index
        self.deleted = 0  # its --write files deleted by rotation

    def fileno(self) -> int:
        return self.out_fd

    def stats(self) -> dict:
        return self.last

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
        """Ask the worker to stop (SIGTERM: it drains its ring, sends its last snapshot and
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


class FanoutSession(LiveSession):
    """:class:`pcapvpn.live.LiveSession` over N worker processes (see the module docstring)."""

    #: seconds a worker has to start (open its ring, join the group) and to stop
    START_SECONDS = 30.0
    STOP_SECONDS = 10.0

    def __init__(self, opts, sinks=(), view=None, clock=time.time):
        from pcapvpn.decode import Limits

        if opts.backend != "afpacket":
            raise CaptureError("--workers needs the afpacket backend")
        if len(opts.interfaces) != 1:
            raise CaptureError("--workers captures one interface (give one -i)")
        if opts.points:
            raise CaptureError("--workers and --vantage cannot be combined")
        if opts.keys is not None:
            raise CaptureError("--workers and --keys cannot be combined (decryption needs "
                               "every ESP packet's bytes in one process)")
        iface = opts.interfaces[0]
        if interface_info(iface)[0] == 0:
            raise CaptureError("--workers needs a named interface (not 'any')")
        started = clock()
        limits = (opts.limits or Limits()).for_live(opts.max_sas)
        workers = self._start(opts, limits, iface, started)
        try:
            super().__init__(dataclasses.replace(opts, write_dir=None), sinks, view, clock,
                             captures=workers)
            self.opts = opts
            self.started = started
            self._pps_mark = (started, 0)
            self.workers = workers
            self._split = 0  # SAs seen both in a worker and in this process (last view)
            self._removed: dict = {}  # SA key -> last_ts when the memory bound removed it
            self._origin: dict = {}  # id(SA) of the last view -> worker (None: this process)
            self._cur = [None] * len(workers)
            self._own_esp = self.tracker.esp_tracker
            self.sources.clear()
            self.names.clear()
            if not opts.write_dir:
                for w in workers:
                    w.files[0] = self._open_source(w, f"live:{iface}:worker{w.k}", "live")
            self._wait_ready(workers)
        except BaseException:
            for w in workers:
                w.close()
            raise

    # -- start --------------------------------------------------------------------------------

    def _start(self, opts, limits, iface, started) -> list:
        group = int.from_bytes(os.urandom(2), "big")
        workers = []
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
                    code = _worker(k, opts, limits, iface, group, out_w, ctl_r, started)
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
            workers.append(_Worker(k, pid, out_r, ctl_w, iface))
        return workers

    def _wait_ready(self, workers) -> None:
        """Each worker's first messages, in worker order (so the file indices are too)."""
        for w in workers:
            deadline = time.monotonic() + self.START_SECONDS
            ready = False
            while not ready:
                left = deadline - time.monotonic()
                if left <= 0 or w.exited:
                    raise CaptureError(f"capture worker {w.k} did not start")
                select.select([w.out_fd], [], [], min(left, 0.5))
                for msg in w.read():
                    if msg[0] == "error":
                        raise CaptureError(msg[1])
                    if msg[0] == "ready":
                        w.linktype = msg[1]
                        ready = True
                    else:
                        self._handle(w, msg)

    def _open_source(self, w, name, fmt):
        src = self._new_source(name, fmt, [w.k])
        self._cur[w.k] = src
        return src.index

    # -- what the workers send ----------------------------------------------------------------

    def _handle(self, w, msg) -> int:
        kind = msg[0]
        if kind == "frames":
            _k, r, n, nbytes, t0, t1, trunc, frames = msg
            src = self.sources[w.files[r]]
            fidx = src.index
            if n:
                b0 = w.bytes
                w.bytes += nbytes
                w.packets += n
                self._count(w.k, w, src, n, b0, t0, t1)
            dec = self.decoder
            general = dec._general
            for f in frames:
                general(fidx, *f[1:])
            dec.frames += n
            dec.truncated += trunc
            if t1 is not None and t1 > dec._clock:
                dec._clock = t1
            return n
        if kind == "file":
            _k, r, path, ts = msg
            old = self._cur[w.k]
            if old is not None:
                self._refresh_totals()
                old.ended = ts
            w.files[r] = self._open_source(w, path, "pcapng")
            return 0
        if kind in ("snap", "final"):
            _k, sas, overflow, st, errors, deleted = msg
            self._adopt(w, sas, overflow)
            w.last = st
            w.errors = errors
            w.deleted = deleted
            if kind == "final":
                w.done = True
            return 0
        if kind == "error":
            w.errors.append((time.time(), msg[1]))
        return 0

    def _adopt(self, w, sas, overflow) -> None:
        """A worker's snapshot: its refs made the session's; SAs the memory bound removed
        (and that the worker had not yet removed when it took the snapshot) left out."""
        from pcapvpn.track.esp import map_refs

        files = w.files

        def ref(rf):
            return (files[rf[0]], rf[1])

        keep = []
        seen = set()
        for sa in sas:
            key = _sa_key(sa)
            seen.add(key)
            gone = self._removed.get(key)
            if gone is not None and sa.last_ts <= gone:
                continue
            map_refs(sa, ref)
            keep.append(sa)
        for sa in overflow.values():
            map_refs(sa, ref)
        for key in [key for key in self._removed if key not in seen]:
            del self._removed[key]
        w.sas = keep
        w.overflow = overflow

    def _feed(self, idx, cap, batch):
        """Take what worker ``idx`` sent; returns how many messages (0: nothing new)."""
        w = self.workers[idx]
        w.pump()
        msgs = w.read()
        for msg in msgs:
            self._handle(w, msg)
        return len(msgs)

    # -- the ESP view the rules read ----------------------------------------------------------

    def _view(self):
        """An ESP tracker holding this process's ESP SAs and the workers' latest snapshots."""
        from pcapvpn.track.esp import _key

        own = self._own_esp
        view = type(own)(self.opts.thresholds, self.limits)
        origin = {}
        split = 0
        for who, sas, overflow in [(None, own._sas, own.overflow)] + [
                (w, w.sas, w.overflow) for w in self.workers]:
            for sa in sas:
                d, d2 = (view._esp, view._esp2) if sa.proto == "esp" else (view._ah, view._ah2)
                key = _key(sa)
                old = d2.get(key)
                if old is not None:
                    split += 1
                    if old.packets >= sa.packets:
                        continue
                    view._sas.remove(old)
                    del origin[id(old)]
                d2[key] = sa
                if sa.spi not in d or d[sa.spi] is old:
                    d[sa.spi] = sa
                view._sas.append(sa)
                origin[id(sa)] = who
            for key, sa in overflow.items():
                cur = view.overflow.get(key)
                if cur is None or cur.packets < sa.packets:
                    view.overflow[key] = sa
        self._split = split
        self._origin = origin
        return view

    def esp_sas_now(self) -> list:
        """This process's ESP SAs and the workers' latest snapshots (``live --metrics``; read
        from the exporter's thread: list copies only)."""
        out = list(self._own_esp._sas)
        for w in self.workers:
            out += list(w.sas)
        return out

    def _with_view(self, fn, *args):
        """``fn(*args)`` with the view in the tracker's place (events that arrive meanwhile
        still go to this process's own ESP tracker: the decoder holds its bound methods)."""
        tr = self.tracker
        if tr.esp_tracker is not self._own_esp:  # finish(): the view is there for good
            return fn(*args)
        tr.esp_tracker = self._view()
        try:
            return fn(*args)
        finally:
            tr.esp_tracker = self._own_esp

    def _compute(self, now, final: bool = False) -> dict:
        return self._with_view(super()._compute, now, final)

    def _apply(self, res, final: bool = False) -> None:
        self._with_view(self._apply_in_view, res, final)

    def _apply_in_view(self, res, final):
        """:meth:`LiveSession._apply` over the view; what its memory bound removed from the
        view is removed where it lives (here, or in its worker)."""
        view = self.tracker.esp_tracker
        before = list(view._sas)
        LiveSession._apply(self, res, final)
        if view is self._own_esp:
            return
        kept = set(map(id, view._sas))
        gone = [sa for sa in before if id(sa) not in kept]
        if not gone:
            return
        self._own_esp.remove([sa for sa in gone if self._origin.get(id(sa)) is None])
        by_worker: dict = {}
        for sa in gone:
            w = self._origin.get(id(sa))
            if w is not None:
                key = _sa_key(sa)
                self._removed[key] = sa.last_ts
                by_worker.setdefault(w.k, []).append(key)
                w.sas = [x for x in w.sas if x is not sa]
        for k, keys in by_worker.items():
            self.workers[k].tell(("remove", keys))

    # -- the end ------------------------------------------------------------------------------

    def _current_sources(self) -> list:
        return [s for s in self._cur if s is not None]

    def _source_of(self, idx):
        return self._cur[idx]

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

    def finish(self):
        if self._child is not None:
            self._abandon_child()
        self.stop_workers()
        # from here on the view is the state: the report and the last evaluation read it
        view = self._view()
        tr = self.tracker
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
        for w in getattr(self, "workers", None) or self.captures:
            w.close()
