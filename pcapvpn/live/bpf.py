"""The capture filter of ``pcapvpn live``: what pcapvpn analyses as a tcpdump expression
(:func:`default_filter`, :func:`filter_groups`; ``-f`` added or instead: :func:`build_filter`;
``--print-filter``: :func:`filter_text`), compiled into a classic BPF program for the kernel
(:func:`compile_filter`).

The filter is compiled with libpcap (``pcap_compile`` through ctypes on a "dead" handle;
``tcpdump -dd`` when the library cannot be loaded), so the expressions are tcpdump's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import struct
import subprocess

from dissect.vpn.link import LINKTYPE_DLT_RAW_12, LINKTYPE_ETHERNET, LINKTYPE_RAW, VXLAN_PORT
from pcapvpn.live.capture import CaptureError
from pcapvpn.live.options import LiveOptions

__all__ = ["build_filter", "compile_filter", "default_filter", "filter_groups", "filter_text",
           "linktype_label"]

# pcap LINKTYPE -> the DLT libpcap compiles a filter for (DLT_RAW is 12 on Linux)
_DLT = {LINKTYPE_ETHERNET: 1, LINKTYPE_RAW: LINKTYPE_DLT_RAW_12}

SNAPLEN = 262144



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


def build_filter(opts: LiveOptions, linktype: int = 1) -> str:
    """The capture filter: the default one (:func:`default_filter`), or it and
    ``-f``, or ``-f`` alone with ``replace_filter``."""
    if opts.filter_expr and opts.replace_filter:
        return opts.filter_expr
    base = default_filter(opts.ike_ports, vpn_servers=opts.vpn_servers, linktype=linktype)
    if opts.filter_expr:
        return f"({base}) or ({opts.filter_expr})"
    return base


def filter_text(opts: LiveOptions, linktype: int = 1) -> str:
    """``--print-filter``: the capture filter of :func:`build_filter`, one clause group per line
    under a comment saying what it catches, headed by the number of BPF instructions libpcap
    compiles it to.  ``tcpdump -F FILE`` reads it as printed (lines starting with ``#`` are
    comments there)."""
    expr = build_filter(opts, linktype)
    try:
        count = f"{len(compile_filter(expr, linktype)) // 8} BPF instructions"
    except CaptureError as e:
        count = f"not compiled: {e}"
    out = [f"# pcapvpn live capture filter for {linktype_label(linktype)} interfaces: {count}",
           "# (tcpdump -F FILE reads this file as it is: lines starting with # are comments)"]
    if opts.filter_expr and opts.replace_filter:
        out += ["# -f (--replace-filter): your expression instead of the default", expr]
        return "\n".join(out) + "\n"
    groups = filter_groups(opts.ike_ports, vpn_servers=opts.vpn_servers)

    def block(indent):
        lines = []
        for i, (what, clause) in enumerate(groups):
            lines.append(f"{indent}# {what}")
            lines.append(f"{indent}{'or ' if i else ''}{clause}")
        return lines

    if linktype == 1:
        out.append("( (")
        out += block("  ")
        out += [") )", "# the same behind an 802.1Q / 802.1ad VLAN tag", "or ( vlan and ("]
        out += block("  ")
        out.append(") )")
    else:
        out.append("(")
        out += block("  ")
        out.append(")")
    if opts.filter_expr:
        out = out[:2] + ["("] + out[2:] + [")", "# -f: your expression, added", "or (",
                                           opts.filter_expr, ")"]
    return "\n".join(out) + "\n"
