#!/usr/bin/env python3
"""Generate the synthetic inner captures of this directory (issue 15) from real lab captures.

Each capture starts from a real lab capture (captures/lab/inner_*: strongSwan with
kernel-libipsec in network namespaces, ESP aes128-sha256 in UDP 4500) and changes only what its
entry in ``expected.json`` says.  Packets added here are built field by field from the RFC
layouts (IPv4 RFC 791, IPv6 RFC 8200, TCP RFC 9293, ICMP RFC 792 / RFC 1191, ICMPv6 RFC 4443,
DHCP RFC 2131/2132); addresses are documentation or private ranges, MAC addresses locally
administered.  Deterministic: running it again writes the same bytes.

    python captures/inner_synthetic/make.py            # rewrite the captures here
    python captures/inner_synthetic/make.py --out DIR  # elsewhere (the tests compare)
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LAB = ROOT / "captures" / "lab"
sys.path.insert(0, str(ROOT))

from dissect.vpn.capture import PcapngWriter, open_capture  # noqa: E402
from dissect.vpn.link import decode_frame  # noqa: E402
from dissect.vpn.rewrite import checksum as _sum16  # noqa: E402  (RFC 1071)

CLIENT4, HOST4, GW4 = bytes([10, 10, 1, 1]), bytes([10, 20, 5, 10]), bytes([10, 20, 1, 1])
CLIENT6 = bytes.fromhex("20010db8001000000000000000000001")  # 2001:db8:10::1
HOST6 = bytes.fromhex("20010db8002000000000000000000010")    # 2001:db8:20::10
GW6 = bytes.fromhex("20010db8002000000000000000000001")      # 2001:db8:20::1
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
HOME_ROUTER, HOME_LEASE = bytes([10, 20, 5, 1]), bytes([10, 20, 5, 100])


# -- packets --------------------------------------------------------------------------------

def ip4(proto: int, payload: bytes, src: bytes, dst: bytes, ident: int = 0, df: bool = True) -> bytes:
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000 if df else 0, 64,
                    proto, 0, src, dst)
    return h[:10] + struct.pack("!H", _sum16(h)) + h[12:] + payload


def ip6(nh: int, payload: bytes, src: bytes, dst: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nh, 64, src, dst) + payload


def _pseudo(src: bytes, dst: bytes, proto: int, n: int) -> bytes:
    if len(src) == 4:
        return struct.pack("!4s4sBBH", src, dst, 0, proto, n)
    return struct.pack("!16s16sIxxxB", src, dst, n, proto)


def tcp(src, dst, sport, dport, seq, ack, flags, payload=b"", mss=None) -> bytes:
    opts = struct.pack("!BBH", 2, 4, mss) if mss else b""
    hl = 20 + len(opts)
    h = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (hl // 4) << 4, flags, 64240, 0, 0)
    seg = h + opts + payload
    c = _sum16(_pseudo(src, dst, 6, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp(src, dst, sport, dport, payload) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = _sum16(_pseudo(src, dst, 17, len(seg)) + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def icmp4_frag_needed(src, quoted: bytes, mtu: int) -> bytes:
    """ICMP type 3 code 4 (RFC 1191: next-hop MTU in the second word), quoting the IP header
    and the first 8 bytes of the datagram that did not fit."""
    body = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + quoted[:28]
    body = body[:2] + struct.pack("!H", _sum16(body)) + body[4:]
    return ip4(1, body, src, quoted[12:16])


def icmp6_too_big(src, quoted: bytes, mtu: int) -> bytes:
    """ICMPv6 type 2 (RFC 4443 §3.2: MTU, then as much of the packet as fits in 1280)."""
    dst = quoted[8:24]
    body = struct.pack("!BBHI", 2, 0, 0, mtu) + quoted[:1280 - 48]
    c = _sum16(_pseudo(src, dst, 58, len(body)) + body)
    return ip6(58, body[:2] + struct.pack("!H", c) + body[4:], src, dst)


def dhcp(op, mtype, xid, yiaddr, server=None) -> bytes:
    """A BOOTP/DHCP message (RFC 2131 §2) with options 53, 54, 1, 3, 6, 51 (RFC 2132)."""
    m = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, 6, 0, xid, 0, 0x8000, bytes(4), yiaddr,
                    bytes(4), bytes(4), MAC_A + bytes(10), bytes(64), bytes(128))
    m += bytes([99, 130, 83, 99]) + bytes([53, 1, mtype])
    if server is not None:
        m += bytes([54, 4]) + server + bytes([1, 4, 255, 255, 255, 0, 3, 4]) + server + \
            bytes([6, 4]) + server + bytes([51, 4]) + struct.pack("!I", 86400)
    return m + bytes([255])


def sll2(ifindex: int, pkttype: int, ethertype: int, packet: bytes) -> bytes:
    """A Linux cooked v2 header (LINKTYPE_LINUX_SLL2: protocol, reserved, interface index,
    ARPHRD type, packet type, address length, address)."""
    return struct.pack("!HHIHBB8s", ethertype, 0, ifindex, 1, pkttype, 6, MAC_A + bytes(2)) + packet


# -- reading and writing --------------------------------------------------------------------

def read(path):
    with open(path, "rb") as f:
        r = open_capture(f)
        recs = [(ts, lt, bytes(data), iface) for ts, lt, data, _w, _o, iface in r.records()]
        ifs = [(i.linktype, i.name, getattr(i, "description", None)) for i in r.interfaces]
    return recs, ifs


def write_pcapng(path, ifaces, packets):
    """``ifaces``: [(linktype, name, description)]; ``packets``: [(ts, iface, data)], written
    in time order (ties keep their order)."""
    with open(path, "wb") as f:
        w = PcapngWriter(f)
        for lt, name, desc in ifaces:
            w.add_interface(lt, name=name, description=desc)
        for ts, i, data in sorted(packets, key=lambda p: p[0]):
            w.write_packet(i, ts, data)


def write_pcap(path, linktype, packets):
    """Classic pcap, microseconds, in time order."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for ts, data in sorted(packets, key=lambda p: p[0]):
        us = round(ts * 1e6)
        out.append(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(data), len(data)))
        out.append(data)
    Path(path).write_bytes(b"".join(out))


# -- the captures ---------------------------------------------------------------------------

def mtu_icmp(out: Path):
    """inner_healthy's client dumpcap (l-eth0 + ipsec0) with two uploads added on ipsec0 whose
    full-size segments an inner hop refuses with ICMP fragmentation needed / packet too big,
    and that the client keeps sending at full size (never acknowledged)."""
    recs, ifs = read(LAB / "inner_healthy" / "inner_healthy-client.pcapng")
    tun = [n for _lt, n, _d in ifs].index("ipsec0")
    pkts = [(ts, i, d) for ts, _lt, d, i in recs]
    t = max(ts for ts, _lt, _d, _i in recs) - 3.0
    big = bytes(1360)
    for k, (cli, srv, gw, ipf, too_big, mtu) in enumerate((
            (CLIENT4, HOST4, GW4, ip4, icmp4_frag_needed, 1300),
            (CLIENT6, HOST6, GW6, ip6, icmp6_too_big, 1280))):
        t0 = t + k * 0.5
        c, s = 40000 + k, 445
        syn = ipf(6, tcp(cli, srv, c, s, 1000, 0, 0x02, mss=1360), cli, srv)
        synack = ipf(6, tcp(srv, cli, s, c, 5000, 1001, 0x12, mss=1360), srv, cli)
        ack = ipf(6, tcp(cli, srv, c, s, 1001, 5001, 0x10), cli, srv)
        pkts += [(t0, tun, syn), (t0 + 0.002, tun, synack), (t0 + 0.003, tun, ack)]
        seg = ipf(6, tcp(cli, srv, c, s, 1001, 5001, 0x18, big), cli, srv)
        for r, dt in enumerate((0.004, 0.21, 0.62, 1.44)):  # RTO doubling
            pkts.append((t0 + dt, tun, seg))
            pkts.append((t0 + dt + 0.001, tun, too_big(gw, seg, mtu)))
    write_pcapng(out / "inner_mtu_icmp.pcapng", [(lt, n, d) for lt, n, d in ifs], pkts)


def overlap_dhcp(out: Path):
    """inner_subnet_overlap's client -i any (SLL2) without the ARP requests on the home LAN and
    the local host-unreachable errors that follow them, with a DHCP exchange on the home LAN
    interface (ifindex 3) before the tunnel: the lease 10.20.5.100/24 from the home router."""
    recs, _ifs = read(LAB / "inner_subnet_overlap" / "inner_subnet_overlap-client-any.pcap")
    keep = []
    for ts, lt, d, _i in recs:
        et = struct.unpack("!H", d[:2])[0]
        if et == 0x0806 and HOME_LEASE in d[20:]:  # the client's ARP for 10.20.5.10
            continue
        net = decode_frame(lt, d)
        if net is not None and net[3] == 1 and d[20 + 20] == 3 and net[2] == net[1]:
            continue  # the local "host unreachable" the failed ARP produced (on lo)
        keep.append((ts, d))
    t = recs[0][0] - 0.5
    bc, zero = bytes([255] * 4), bytes(4)
    xid = 0x5EED1234
    msgs = [(0, 4, zero, bc, 68, 67, dhcp(1, 1, xid, zero)),
            (1, 0, HOME_ROUTER, bc, 67, 68, dhcp(2, 2, xid, HOME_LEASE, HOME_ROUTER)),
            (2, 4, zero, bc, 68, 67, dhcp(1, 3, xid, zero)),
            (3, 0, HOME_ROUTER, bc, 67, 68, dhcp(2, 5, xid, HOME_LEASE, HOME_ROUTER))]
    for k, pkttype, src, dst, sp, dp, body in msgs:
        keep.append((t + k * 0.01, sll2(3, pkttype, 0x0800, ip4(17, udp(src, dst, sp, dp, body),
                                                                src, dst, df=False))))
    write_pcap(out / "inner_overlap_dhcp.pcap", 276, keep)


#: Windows adapters as Npcap names them: (file, if_description of the tunnel adapter)
WINDOWS = (("inner_windows_ikev2.pcapng", "WAN Miniport (IKEv2)"),
           ("inner_windows_tap.pcapng", "TAP-Windows Adapter V9"),
           ("inner_windows_wintun.pcapng", "Wintun Userspace Tunnel"))
PHYS_GUID = r"\Device\NPF_{3F2504E0-4F89-11D3-9A0C-0305E82C3301}"
TUN_GUID = r"\Device\NPF_{7C9E6679-7425-40DE-944B-E07FC1F90AE7}"


def windows(out: Path):
    """inner_healthy's client dumpcap with the interfaces named as Npcap names them on Windows
    (``\\Device\\NPF_{GUID}``; the kind only in if_description) and the tunnel adapter's packets
    in Ethernet frames (Npcap shows NDIS adapters as Ethernet), so only the description tells a
    tunnel adapter from the physical one."""
    recs, ifs = read(LAB / "inner_healthy" / "inner_healthy-client.pcapng")
    names = [n for _lt, n, _d in ifs]
    eth, tun = names.index("l-eth0"), names.index("ipsec0")
    for fname, desc in WINDOWS:
        pkts = []
        for ts, _lt, d, i in recs:
            if i == eth:
                pkts.append((ts, 0, d))
            elif i == tun:
                v6 = d[0] >> 4 == 6
                mac = (MAC_B + MAC_A) if d[16:20] == CLIENT4 else (MAC_A + MAC_B)
                pkts.append((ts, 1, mac + (b"\x86\xdd" if v6 else b"\x08\x00") + d))
        write_pcapng(out / fname, [(1, PHYS_GUID, "Intel(R) Ethernet Connection I219-V"),
                                   (1, TUN_GUID, desc)], pkts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE))
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    mtu_icmp(out)
    overlap_dhcp(out)
    windows(out)


if __name__ == "__main__":
    main()
