#!/usr/bin/env python3
"""Anchor for bench/run.py: the same per-SPI ESP count with scapy's ``PcapReader``.

scapy dissects every layer of every packet; ESP on UDP 4500 is bound by scapy's ipsec layer
(IKE behind the Non-ESP marker then shows up as SPI 0 and is skipped).  The import of
``scapy.all`` is part of the measured time, as it is for anyone who runs such a script.
Prints one summary line (packets, esp, spis) to stdout.
"""

import sys

from scapy.all import ESP, PcapReader


def main(path: str) -> int:
    per_spi = {}
    n = n_esp = 0
    with PcapReader(path) as reader:
        for pkt in reader:
            n += 1
            esp = pkt.getlayer(ESP)
            if esp is None or not esp.spi:
                continue
            n_esp += 1
            st = per_spi.get(esp.spi)
            if st is None:
                per_spi[esp.spi] = [1, esp.seq]
            else:
                st[0] += 1
                st[1] = esp.seq
    print(f"packets={n} esp={n_esp} spis={len(per_spi)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
