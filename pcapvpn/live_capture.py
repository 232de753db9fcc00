"""Live capture backends for ``pcapvpn live``: raw frames from network interfaces.

Two backends deliver frames to :mod:`pcapvpn.live` (bench/live_bench.py measured them; see
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

The capture filter is compiled with libpcap (``pcap_compile`` through ctypes on a "dead" handle;
``tcpdump -dd`` when the library cannot be loaded), so the expressions are tcpdump's.
:func:`default_filter` builds the filter from what pcapvpn analyses.

Frames are handed on in :mod:`pcapvpn.sources`' layout, numbered by the caller (live mode numbers
them per written file, as Wireshark will).
"""

from __future__ import annotations

import ctypes
import ctypes.util
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

from dissect.vpn.link import LINKTYPE_DLT_RAW_12, LINKTYPE_ETHERNET, LINKTYPE_RAW, VXLAN_PORT

__all__ = ["AfPacketRing", "CaptureError", "PipeCapture", "compile_filter", "default_filter",
           "interface_info", "list_interfaces"]

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
# pcap LINKTYPE -> the DLT libpcap compiles a filter for (DLT_RAW is 12 on Linux)
_DLT = {LINKTYPE_ETHERNET: 1, LINKTYPE_RAW: LINKTYPE_DLT_RAW_12}

SNAPLEN = 262144


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


# -- capture filter -------------------------------------------------------------------------------

#: ICMP error types decode.py looks into (dissect.vpn.ip.ICMP4_ERRORS): unreachable, source quench,
#: redirect, time exceeded, parameter problem (RFC 792); ICMPv6 errors are types 1-4 (< 128,
#: RFC 4443 §2.1)
_ICMP4_ERRORS = (3, 4, 5, 11, 12)
#: inner Ethernet header offsets after a 20-byte outer IPv4 header + GRE: GRE without options (4:
#: ERSPAN I, TEB), with one of key/sequence (8: TEB), key+sequence (12), ERSPAN II (8 + 8 = 16),
#: ERSPAN III (8 + 12 = 20; with the O flag's platform subheader 8 + 20 = 28)
#: (RFC 2784, RFC 2890, draft-foschiano-erspan-03)
_GRE_INNER = (4, 8, 12, 16, 20, 28)


def _ports(lo: str, hi: str, ports) -> str:
    return " or ".join(f"{lo} = {p} or {hi} = {p}" for p in ports)


def _inner(acc: str, e: int, ports) -> str:
    """Match a VPN packet in an Ethernet frame starting at ``acc[e]`` (IPv4 without options or
    IPv6 with the upper layer right after its fixed header): the mirrored copy inside ERSPAN,
    GRE or VXLAN, where libpcap's primitives cannot look."""
    def a(o, n=1):
        return f"{acc}[{e + o}{':2' if n == 2 else ''}]"
    v4 = (f"({a(12, 2)} = 0x0800 and {a(14)} = 0x45 and ("
          f"{a(23)} = 50 or {a(23)} = 51 or {a(20, 2)} & 0x1fff != 0"
          f" or (({a(23)} = 17 or {a(23)} = 6) and ({_ports(a(34, 2), a(36, 2), ports)}))"
          f" or ({a(23)} = 1 and ({' or '.join(f'{a(34)} = {t}' for t in _ICMP4_ERRORS)}))))")
    v6 = (f"({a(12, 2)} = 0x86dd and ({a(20)} = 50 or {a(20)} = 51 or {a(20)} = 44"
          f" or (({a(20)} = 17 or {a(20)} = 6) and ({_ports(a(54, 2), a(56, 2), ports)}))"
          f" or ({a(20)} = 58 and {a(54)} < 128)))")
    return f"({v4} or {v6})"


#: the VPNs beside IPsec, by their ports (pcapvpn.decode): OpenVPN (IANA 1194, UDP and TCP),
#: L2TP (RFC 2661 §8.1, UDP 1701), PPTP control (RFC 2637, TCP 1723)
_VPN_UDP_PORTS = (1194, 1701)
_VPN_TCP_PORTS = (1194, 1723)
#: SSL-VPN TLS/DTLS ports (decode.VPN_TCP_SERVICES); TCP on them is all HTTPS on a mirror port,
#: so only DTLS records (content type 20..25, version major 0xfe: RFC 6347 §4.1) by default and
#: TCP for the gateways named with --vpn-server
_TLS_PORTS = (443, 4433, 10443)


def _vpn_servers_filter(vpn_servers) -> list[str]:
    import ipaddress

    out = []
    for addr, port in vpn_servers:
        host = ipaddress.ip_address(addr)
        ports = (port,) if port else _TLS_PORTS
        pp = " or ".join(f"tcp port {p} or udp port {p}" for p in ports)
        out.append(f"(host {host} and ({pp}))")
    return out


def linktype_label(linktype: int) -> str:
    return {LINKTYPE_ETHERNET: "Ethernet", LINKTYPE_RAW: "raw IP ('any', tunnels)"}.get(
        linktype, f"LINKTYPE {linktype}")


def filter_groups(ike_ports=(), mirror: bool = True, vpn_servers=()) -> list[tuple[str, str]]:
    """The clauses of the default capture filter, by what they catch: ``[(what, clause)]``
    (:func:`default_filter` joins them with ``or``; ``live --print-filter`` shows them one per
    line with ``what`` as a comment)."""
    ports = [500, 4500] + [p for p in ike_ports if p not in (500, 4500)]
    tls = " or ".join(f"udp port {p}" for p in _TLS_PORTS)
    icmp4 = " or ".join(f"icmp[0] = {t}" for t in _ICMP4_ERRORS)
    groups = [
        (f"IKE and NAT-T: UDP {', '.join(map(str, ports))}",
         " or ".join(f"udp port {p}" for p in ports)),
        ("IKE and ESP over TCP (RFC 9329): TCP 500, 4500", "tcp port 500 or tcp port 4500"),
        ("ESP and AH (IP protocols 50 and 51), IPv4 and IPv6",
         "ip proto 50 or ip proto 51 or ip6 proto 50 or ip6 proto 51"),
        (f"ICMP errors (types {', '.join(map(str, _ICMP4_ERRORS))}) and ICMPv6 errors: they "
         f"quote the packet that caused them",
         f"(icmp and ({icmp4})) or (icmp6 and ip6[40] < 128)"),
        ("IP fragments: IPv4 fragments after the first (no ports), IPv6 Fragment header",
         "(ip[6:2] & 0x1fff != 0) or ip6 proto 44"),
        ("OpenVPN (UDP/TCP 1194), L2TP (UDP 1701), PPTP control (TCP 1723)",
         " or ".join([f"udp port {p}" for p in _VPN_UDP_PORTS]
                     + [f"tcp port {p}" for p in _VPN_TCP_PORTS])),
        ("WireGuard on any UDP port: message type 1..4, three zero bytes, 32 bytes or more",
         "(udp and udp[8] >= 1 and udp[8] <= 4 and udp[9:2] = 0 and udp[11] = 0 "
         "and udp[4:2] >= 40)"),
        (f"DTLS records on the SSL-VPN ports (UDP {', '.join(map(str, _TLS_PORTS))})",
         f"(({tls}) and udp[8] >= 20 and udp[8] <= 25 and udp[9] = 0xfe)"),
        ("PPTP data: enhanced GRE (version 1) carrying PPP",
         "(ip proto 47 and ip[0] = 0x45 and ip[21] & 7 = 1 and ip[22:2] = 0x880b)"),
    ]
    for (addr, port), clause in zip(vpn_servers, _vpn_servers_filter(vpn_servers)):
        import ipaddress

        groups.append((f"SSL-VPN gateway {ipaddress.ip_address(addr)} (--vpn-server): TCP/UDP "
                       f"{port or ', '.join(map(str, _TLS_PORTS))}", clause))
    if mirror:
        inner_ports = ports + list(_VPN_UDP_PORTS) + [1723]
        names = {4: "ERSPAN type I, GRE bridging", 8: "GRE bridging with key or sequence",
                 12: "GRE bridging with key and sequence", 16: "ERSPAN type II",
                 20: "ERSPAN type III", 28: "ERSPAN type III with platform subheader"}
        for g in _GRE_INNER:
            e = 20 + g
            groups.append((f"mirrored copies: {names[g]} (inner Ethernet {g} bytes into GRE), "
                           f"untagged or VLAN-tagged",
                           f"(ip proto 47 and ip[0] = 0x45 and ({_inner('ip', e, inner_ports)} "
                           f"or (ip[{e + 12}:2] = 0x8100 and {_inner('ip', e + 4, inner_ports)}"
                           f")))"))
        groups.append((f"mirrored copies: VXLAN (UDP {VXLAN_PORT}), untagged or VLAN-tagged",
                       f"(udp dst port {VXLAN_PORT} and ({_inner('udp', 16, inner_ports)}"
                       f" or (udp[28:2] = 0x8100 and {_inner('udp', 20, inner_ports)})))"))
    return groups


def default_filter(ike_ports=(), mirror: bool = True, vpn_servers=(),
                   linktype: int = LINKTYPE_ETHERNET) -> str:
    """The capture filter for what pcapvpn analyses (tcpdump syntax):

    * IKE and NAT-T: UDP 500 and 4500 (RFC 7296 §2, RFC 3948) and ``ike_ports``; IKE/ESP over
      TCP (RFC 9329) on TCP 500/4500;
    * ESP (IP protocol 50, RFC 4303) and AH (51, RFC 4302), IPv4 and IPv6;
    * ICMP errors (they quote the IKE/ESP packet that caused them) and ICMPv6 errors;
    * IP fragments: IPv4 fragments after the first (they carry no ports: their datagram cannot
      be told from the fragment) and IPv6 packets with a Fragment header (next header 44);
    * the VPNs beside IPsec: OpenVPN (UDP/TCP 1194), L2TP (UDP 1701), PPTP (TCP 1723 and
      enhanced GRE, RFC 2637 §4.1: GRE version 1 carrying PPP 0x880B), WireGuard on any UDP
      port by its message header (type 1..4 and three zero bytes, at least 32 bytes), DTLS
      records on the SSL-VPN ports, and TCP/UDP to the SSL-VPN gateways in ``vpn_servers``
      (``(packed address, port or None)``, as ``analyze --vpn-server``);
    * each of these also behind a VLAN tag (802.1Q/802.1ad; Ethernet ``linktype`` only) and,
      when ``mirror`` is set, inside
      the mirror encapsulations decode.py peels: ERSPAN I/II/III and GRE bridging (IPv4 outer
      header without options) and VXLAN (UDP 4789), with or without an inner VLAN tag (there the
      IPsec, OpenVPN, L2TP and PPTP ports, ESP/AH, ICMP errors and fragments).
    """
    x = "(" + " or ".join(c for _w, c in filter_groups(ike_ports, mirror, vpn_servers)) + ")"
    if linktype != LINKTYPE_ETHERNET:
        return x
    return f"({x}) or (vlan and ({x}))"


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


_libpcap = None


def _load_libpcap():
    global _libpcap
    if _libpcap is None:
        name = ctypes.util.find_library("pcap")
        if not name:
            _libpcap = False
            return False
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            _libpcap = False
            return False
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        _libpcap = lib
    return _libpcap


def compile_filter(expr: str, linktype: int = LINKTYPE_ETHERNET, snaplen: int = SNAPLEN) -> bytes:
    """Compile a tcpdump filter expression into a classic BPF program: the ``struct sock_filter``
    array (8 bytes per instruction) for ``SO_ATTACH_FILTER``.  Raises :class:`CaptureError`."""
    dlt = _DLT.get(linktype, 1)
    lib = _load_libpcap()
    if lib:
        handle = lib.pcap_open_dead(dlt, snaplen)
        if not handle:
            raise CaptureError("libpcap could not open a handle to compile the filter")
        prog = _BpfProgram()
        try:
            if lib.pcap_compile(handle, ctypes.byref(prog), expr.encode(), 1, 0xFFFFFFFF) != 0:
                err = (lib.pcap_geterr(handle) or b"?").decode(errors="replace")
                raise CaptureError(f"capture filter: {err}")
            try:
                return ctypes.string_at(prog.bf_insns, prog.bf_len * 8)
            finally:
                lib.pcap_freecode(ctypes.byref(prog))
        finally:
            lib.pcap_close(handle)
    tcpdump = shutil.which("tcpdump")
    if not tcpdump:
        raise CaptureError("compiling the capture filter needs libpcap (Debian: libpcap0.8) or "
                           "tcpdump")
    lt = "EN10MB" if linktype == LINKTYPE_ETHERNET else "RAW"
    cp = subprocess.run([tcpdump, "-dd", "-y", lt, expr], capture_output=True, text=True)
    if cp.returncode:
        raise CaptureError(f"capture filter: {cp.stderr.strip().splitlines()[-1:] or '?'}")
    out = bytearray()
    for line in cp.stdout.splitlines():
        line = line.strip().strip("{},")
        if not line:
            continue
        code, jt, jf, k = (int(v.strip(), 0) for v in line.split(","))
        out += struct.pack("=HBBI", code, jt, jf, k)
    return bytes(out)


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

    def wait(self, timeout: float) -> bool:
        """Sleep until a block is ready or ``timeout`` seconds passed; True when one is ready."""
        if _U32.unpack_from(self.mm, self.block * self.block_size + 8)[0] & TP_STATUS_USER:
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

