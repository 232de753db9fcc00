"""Live capture backends for ``pcapvpn live``: raw frames from network interfaces.

Two backends deliver frames to :mod:`pcapvpn.live` (:mod:`pcapvpn.live.session`) (bench/live_bench.py measured them; see
bench/RESULTS.md "Live capture"):

* :class:`AfPacketRing` (the default) — a Linux ``AF_PACKET`` socket with a ``TPACKET_V3``
  memory-mapped ring (packet(7), Documentation/networking/packet_mmap.rst) and a kernel BPF
  filter (``SO_ATTACH_FILTER``).  The kernel copies only the packets the filter accepts into
  blocks of the ring; Python walks a whole block per wake-up, without a system call per packet.
  Drops are read from ``PACKET_STATISTICS`` (packets the filter accepted that found no room in
  the ring) and from the interface counters in ``/sys/class/net/IFACE/statistics``.
* :class:`PipeCapture` — a ``tcpdump`` or ``dumpcap`` child writing pcap/pcapng to a pipe that
  :func:`dissect.vpn.capture.open_capture` reads.  Slower (every packet is written, read and
  parsed once more) but it works where dumpcap is installed with capabilities for an unprivileged
  group.


The capture filter they are given is built and compiled in :mod:`pcapvpn.live.bpf`.

Frames are handed on in :mod:`pcapvpn.sources`' layout, numbered by the caller (live mode numbers
them per written file, as Wireshark will).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections import deque

from dissect.vpn.link import LINKTYPE_ETHERNET, LINKTYPE_RAW

__all__ = ["AfPacketRing", "CaptureError", "PipeCapture", "interface_info", "list_interfaces"]

# -- linux/if_packet.h, linux/if_ether.h, asm-generic/socket.h --------------------------------
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
SO_ATTACH_FILTER = 26
ETH_P_ALL = 0x0003
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_COPY = 1 << 1  # truncated: the frame did not fit the ring's frame size
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6

#: struct tpacket3_hdr: tp_next_offset, tp_sec, tp_nsec, tp_snaplen, tp_len, tp_status, tp_mac,
#: tp_net, hv1.tp_rxhash, hv1.tp_vlan_tci, hv1.tp_vlan_tpid
_HDR3 = struct.Struct("=IIIIIIHHIIH")
#: struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1: block_status,
#: num_pkts, offset_to_first_pkt
_BLOCK = struct.Struct("=IIIII")
_U32 = struct.Struct("=I")

# ARPHRD_* (linux/if_arp.h) whose frames start with an Ethernet header
_ARPHRD_ETHER = (1, 772)  # ETHER, LOOPBACK


class CaptureError(Exception):
    """A capture that cannot start; ``str()`` is a one-line message for the operator."""


# -- interfaces ---------------------------------------------------------------------------------

def list_interfaces() -> list[str]:
    try:
        return sorted(os.listdir("/sys/class/net"))
    except OSError:
        return [name for _i, name in socket.if_nameindex()]


def interface_info(name: str) -> tuple[int, int]:
    """``(ifindex, linktype)`` of interface ``name`` (``any``: all interfaces, raw IP)."""
    if name == "any":
        return 0, LINKTYPE_RAW
    try:
        ifindex = socket.if_nametoindex(name)
    except OSError:
        avail = ", ".join(list_interfaces()) or "none"
        raise CaptureError(f"interface {name!r} does not exist (interfaces here: {avail})") \
            from None
    try:
        with open(f"/sys/class/net/{name}/type") as f:
            arphrd = int(f.read().strip())
    except (OSError, ValueError):
        arphrd = 1
    return ifindex, (LINKTYPE_ETHERNET if arphrd in _ARPHRD_ETHER else LINKTYPE_RAW)


def interface_counters(name: str) -> dict:
    """The interface's receive counters (``rx_packets``, ``rx_dropped``, ``rx_missed_errors``,
    ``rx_fifo_errors``) from sysfs; missing ones are absent."""
    out = {}
    if name == "any":
        return out
    base = f"/sys/class/net/{name}/statistics/"
    for key in ("rx_packets", "rx_dropped", "rx_missed_errors", "rx_fifo_errors"):
        try:
            with open(base + key) as f:
                out[key] = int(f.read().strip())
        except (OSError, ValueError):
            pass
    return out



def _permission_error(exc: OSError, what: str) -> CaptureError:
    return CaptureError(
        f"{what}: {os.strerror(exc.errno)}: capturing needs the CAP_NET_RAW capability (run as "
        f"root or with that capability, e.g. systemd AmbientCapabilities=CAP_NET_RAW), or use "
        f"--backend dumpcap where dumpcap is installed with capture capabilities (Debian: "
        f"members of the 'wireshark' group)")


# -- AF_PACKET + TPACKET_V3 ring ------------------------------------------------------------------

class AfPacketRing:
    """One interface captured through a ``TPACKET_V3`` ring (packet(7)).

    ``read(out, fidx, num)`` appends a frame for every packet of every block the kernel handed
    over (without waiting) and returns their number; ``wait(timeout)`` sleeps in
    ``poll()`` until a block is ready.  Blocks are retired by the kernel when full or
    ``timeout_ms`` after their first packet, so a lone IKE packet is seen within that time.
    """

    def __init__(self, name: str, bpf: bytes | None, *, block_size: int = 1 << 20,
                 block_nr: int = 64, promisc: bool = True, timeout_ms: int = 50):
        self.name = name
        self.ifindex, self.linktype = interface_info(name)
        self.sock = None
        self.mm = None
        try:
            # protocol 0 receives nothing until bind() names the interface, so no packet
            # arrives before the filter and the ring are in place ("any" cannot be bound)
            self.sock = socket.socket(socket.AF_PACKET,
                                      socket.SOCK_RAW if self.linktype == LINKTYPE_ETHERNET
                                      else socket.SOCK_DGRAM,
                                      0 if self.ifindex else socket.htons(ETH_P_ALL))
        except PermissionError as exc:
            raise _permission_error(exc, f"cannot capture on {name}") from None
        except OSError as exc:
            raise CaptureError(f"cannot open a packet socket for {name}: {exc.strerror}") from None
        try:
            self._setup(bpf, block_size, block_nr, promisc, timeout_ms)
        except BaseException:
            self.close()
            raise
        self.block = 0
        self.drops = 0  # ring drops (PACKET_STATISTICS tp_drops), cumulative
        self.received = 0  # packets the filter accepted (tp_packets), cumulative
        self.packets = 0  # packets handed on
        self.bytes = 0
        self.truncated = 0
        self.errors = []  # (time, reason) the socket reported (interface down ...)
        self.if_start = interface_counters(name)
        self.poller = select.poll()
        self.poller.register(self.sock.fileno(), select.POLLIN | select.POLLERR)

    def _setup(self, bpf, block_size, block_nr, promisc, timeout_ms):
        s = self.sock
        if bpf is not None:
            self._attach(bpf)
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        frame_size = 2048
        # struct tpacket_req3: block_size, block_nr, frame_size, frame_nr, retire_blk_tov,
        # sizeof_priv, feature_req_word
        req = struct.pack("=IIIIIII", block_size, block_nr, frame_size,
                          block_size * block_nr // frame_size, timeout_ms, 0, 0)
        try:
            s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        except OSError as exc:
            raise CaptureError(f"cannot set up a {block_size * block_nr >> 20} MiB capture ring "
                               f"on {self.name}: {exc.strerror}") from None
        self.block_size = block_size
        self.block_nr = block_nr
        self.mm = mmap.mmap(s.fileno(), block_size * block_nr, mmap.MAP_SHARED,
                            mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            if self.ifindex:
                s.bind((self.name, ETH_P_ALL))
        except OSError as exc:
            if exc.errno == errno.ENETDOWN:
                raise CaptureError(f"interface {self.name} is down (ip link set {self.name} up)") \
                    from None
            raise CaptureError(f"cannot bind to {self.name}: {exc.strerror}") from None
        if promisc and self.ifindex:
            mreq = struct.pack("=iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
            try:
                s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            except PermissionError as exc:
                raise _permission_error(exc, f"cannot put {self.name} in promiscuous mode") \
                    from None

    def _attach(self, bpf: bytes) -> None:
        n = len(bpf) // 8
        buf = ctypes.create_string_buffer(bpf, len(bpf))
        fprog = struct.pack("HL", n, ctypes.addressof(buf))  # struct sock_fprog (native layout)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        except OSError as exc:
            raise CaptureError(f"the kernel refused the capture filter ({n} instructions): "
                               f"{exc.strerror}") from None

    def fileno(self) -> int:
        return self.sock.fileno()

    def ready(self) -> bool:
        """Whether the ring's next block is ready (the kernel handed it over)."""
        return bool(_U32.unpack_from(self.mm, self.block * self.block_size + 8)[0]
                    & TP_STATUS_USER)

    def wait(self, timeout: float) -> bool:
        """Sleep until a block is ready or ``timeout`` seconds passed; True when one is ready."""
        if self.ready():
            return True
        ev = self.poller.poll(max(0, int(timeout * 1000)))
        if ev and ev[0][1] & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
            # e.g. ENETDOWN when the interface went down: note it, clear it, do not spin
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.errors.append((time.time(), os.strerror(err)))
                del self.errors[:-10]
            time.sleep(timeout)
            return False
        return bool(ev)

    def read(self, out: list, fidx: int, num: int, max_blocks: int | None = None) -> int:
        """Append the packets of the ready blocks to ``out`` as frames (``pcapvpn.sources``
        layout: ``(fidx, number, ts, linktype, data, wirelen, 0)``, numbered from ``num + 1``);
        return how many."""
        mm = self.mm
        lt = self.linktype
        nbytes = 0
        bs = self.block_size
        nr = self.block_nr
        hdr = _HDR3.unpack_from
        blk = _BLOCK.unpack_from
        append = out.append
        vlan_frames = self.linktype == LINKTYPE_ETHERNET
        n = 0
        done = 0
        while True:
            base = self.block * bs
            _v, _p, status, npkts, off = blk(mm, base)
            if not status & TP_STATUS_USER:
                break
            p = base + off
            for _ in range(npkts):
                (nxt, sec, nsec, snap, wirelen, st, mac, _net, _h, tci, tpid) = hdr(mm, p)
                a = p + mac
                data = mm[a:a + snap]
                if st & (TP_STATUS_VLAN_VALID | TP_STATUS_COPY):
                    if st & TP_STATUS_COPY:
                        self.truncated += 1
                    if st & TP_STATUS_VLAN_VALID and vlan_frames:
                        # the NIC/driver took the 802.1Q tag out of the frame: put it back, as
                        # libpcap does, so frames and written files show it
                        t = tpid if st & TP_STATUS_VLAN_TPID_VALID and tpid else 0x8100
                        data = data[:12] + struct.pack("!HH", t, tci & 0xFFFF) + data[12:]
                        wirelen += 4
                n += 1
                append((fidx, num + n, sec + nsec * 1e-9, lt, data, wirelen, 0))
                nbytes += snap
                p += nxt
            _U32.pack_into(mm, base + 8, TP_STATUS_KERNEL)  # hand the block back
            self.block = (self.block + 1) % nr
            done += 1
            if max_blocks is not None and done >= max_blocks:
                break
        self.packets += n
        self.bytes += nbytes
        return n

    def stats(self) -> dict:
        """Cumulative ``received`` (accepted by the filter), ``drops`` (no room in the ring) and
        the interface counters' increase since the capture started."""
        if self.sock is not None:
            try:
                raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
                pk, dr, _fq = struct.unpack("=III", raw)  # reading resets the kernel's counters
                self.received += pk
                self.drops += dr
            except OSError:
                pass
        now = interface_counters(self.name)
        iface = {k: v - self.if_start.get(k, 0) for k, v in now.items()}
        return {"received": self.received, "drops": self.drops, "packets": self.packets,
                "truncated": self.truncated, "interface": iface}

    def unread(self) -> int:
        """Packets the ring took in that were not handed on yet: those of the ready blocks and
        of the block the kernel is filling (the kernel's count of packets put in the ring,
        ``PACKET_STATISTICS`` ``tp_packets``, which for ``TPACKET_V3`` includes ``tp_drops``,
        less the drops and less what :meth:`read` / a block reader handed on).  Nothing is
        decoded or copied.  The block headers' ``num_pkts`` would tell only the ready blocks
        (the one being filled is the kernel's, and a block handed back keeps its old count
        until the kernel opens it again)."""
        self.stats()
        return max(0, self.received - self.drops - self.packets)

    def close(self) -> None:
        if self.mm is not None:
            try:
                self.mm.close()
            except BufferError:
                pass
            self.mm = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# -- tcpdump / dumpcap child writing to a pipe ----------------------------------------------------

class PipeCapture:
    """``tcpdump -w -`` or ``dumpcap -w -`` on one interface, its output read by
    :func:`dissect.vpn.capture.open_capture` in a thread.

    ``read(out, fidx, num)`` moves the frames read so far into ``out``; ``stats()`` reports
    drops the child printed when it stopped (tcpdump: "dropped by kernel"; dumpcap: its
    statistics line).
    """

    def __init__(self, name: str, expr: str, *, tool: str = "tcpdump", buffer_mb: int = 64,
                 promisc: bool = True):
        from dissect.vpn.capture import open_capture

        self.name = name
        self.ifindex, self.linktype = interface_info(name)
        path = shutil.which(tool)
        if not path:
            raise CaptureError(f"--backend {tool}: {tool} is not installed")
        if tool == "tcpdump":
            cmd = [path, "-i", name, "-w", "-", "-U", "--immediate-mode", "-s", "0", "-n",
                   "-B", str(buffer_mb * 1024)]
            if not promisc:
                cmd.append("-p")
            cmd.append(expr)
        else:
            cmd = [path, "-i", name, "-w", "-", "-s", "0", "-B", str(buffer_mb), "-f", expr, "-q"]
            if not promisc:
                cmd.append("-p")
        self.tool = tool
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, bufsize=0)
        self.frames = deque()
        self.packets = 0
        self.bytes = 0
        self.drops = 0
        self.received = 0
        self.error = None
        self._stderr = b""
        self._event = threading.Event()
        first = self.proc.stdout.read(4)  # a capture header, or the child failed
        if len(first) < 4:
            err = self.proc.stderr.read().decode(errors="replace").strip()
            self.proc.wait()
            raise CaptureError(f"{tool} on {name} failed: {err.splitlines()[-1] if err else '?'}")
        self._reader = open_capture(_Prepend(first, self.proc.stdout))
        self._thread = threading.Thread(target=self._run, name=f"{tool}-{name}", daemon=True)
        self._thread.start()
        self._errthread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._errthread.start()

    def _run(self):
        append = self.frames.append
        ev = self._event
        try:
            for ts, lt, data, wirelen, _off, _iface in self._reader.records():
                if lt >= 0:
                    append((ts, data, wirelen))
                    if not ev.is_set():
                        ev.set()
        except Exception as exc:  # noqa: BLE001 - reported as the capture's error
            self.error = f"{type(exc).__name__}: {exc}"
        ev.set()

    def _drain_stderr(self):
        while True:
            chunk = self.proc.stderr.read(4096)
            if not chunk:
                return
            self._stderr = (self._stderr + chunk)[-8192:]

    def wait(self, timeout: float) -> bool:
        if self.frames:
            return True
        self._event.wait(timeout)
        self._event.clear()
        return bool(self.frames)

    def read(self, out: list, fidx: int, num: int, max_blocks: int | None = None) -> int:
        q = self.frames
        n = len(q)
        if max_blocks is not None:
            n = min(n, 5000 * max_blocks)  # about what a ring block holds
        pop = q.popleft
        append = out.append
        lt = self.linktype
        nbytes = 0
        for i in range(1, n + 1):
            ts, data, wirelen = pop()
            nbytes += len(data)
            append((fidx, num + i, ts, lt, data, wirelen, 0))
        self.packets += n
        self.bytes += nbytes
        return n

    def stats(self) -> dict:
        return {"received": self.received, "drops": self.drops, "packets": self.packets,
                "truncated": 0, "interface": {}}

    def close(self) -> None:
        import re
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(5)
        self._errthread.join(2)
        text = self._stderr.decode(errors="replace")
        m = re.search(r"(\d+) packets? dropped by kernel", text)
        if m:
            self.drops = int(m.group(1))
        m = re.search(r"(\d+) packets? received by filter", text)
        if m:
            self.received = int(m.group(1))
        m = re.search(r"received/dropped on interface '[^']*': (\d+)/(\d+)", text)
        if m:
            self.received, self.drops = int(m.group(1)), int(m.group(2))


class _Prepend:
    """A raw stream with bytes already read put back in front (read1 semantics)."""

    def __init__(self, head: bytes, raw):
        self._head = head
        self._read = getattr(raw, "read1", raw.read)

    def read(self, n: int = -1) -> bytes:
        if self._head:
            h = self._head
            if 0 <= n < len(h):
                self._head = h[n:]
                return h[:n]
            self._head = b""
            return h
        return self._read(n) or b""
