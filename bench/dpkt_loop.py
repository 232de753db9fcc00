#!/usr/bin/env python3
"""Anchor for bench/run.py: the least a dpkt user writes to count ESP per SA.

Reads a classic pcap with ``dpkt.pcap.Reader``, decodes Ethernet / IPv4 / IPv6 / UDP, takes ESP
(IP protocol 50 — for IPv6 dpkt parses it as an extension header — or UDP 4500 without the
Non-ESP marker), keeps per-SPI packet count and last
sequence number.  Prints one summary line (packets, esp, spis) to stdout.
"""

import struct
import sys

import dpkt


def main(path: str) -> int:
    unpack_ii = struct.Struct("!II").unpack_from
    per_spi = {}
    n = n_esp = 0
    ip6 = dpkt.ip6.IP6
    ip_types = (dpkt.ip.IP, ip6)
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            n += 1
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, ip_types):
                continue
            l4 = ip.data
            if isinstance(l4, dpkt.esp.ESP):
                spi, seq = l4.spi, l4.seq
            elif ip.__class__ is ip6 and 50 in ip.extension_hdrs:
                esp = ip.extension_hdrs[50]           # dpkt treats IPv6 ESP as an extension
                spi, seq = esp.spi, esp.seq
            elif isinstance(l4, dpkt.udp.UDP) and (l4.sport == 4500 or l4.dport == 4500):
                pl = l4.data
                if len(pl) < 8 or pl[:4] == b"\x00\x00\x00\x00":
                    continue                      # NAT keepalive or IKE behind the marker
                spi, seq = unpack_ii(pl)
            else:
                continue
            n_esp += 1
            st = per_spi.get(spi)
            if st is None:
                per_spi[spi] = [1, seq]
            else:
                st[0] += 1
                st[1] = seq
    print(f"packets={n} esp={n_esp} spis={len(per_spi)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
