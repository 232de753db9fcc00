"""Rewrite the timestamps of a classic pcap: a constant shift plus a clock drift.

    python bench/retime.py IN.pcap OUT.pcap [--shift SECONDS] [--drift-ppm PPM]

Every record's time ``t`` becomes ``t + shift + drift_ppm * 1e-6 * (t - t_first)``, where
``t_first`` is the first record's time: the clock of a second capture point that runs
``drift_ppm`` parts per million fast (negative: slow) and was ``shift`` seconds ahead at the
first packet.  ``editcap -t`` shifts but has no drift; the vantage-point tests
(``tests/track/test_vantage.py``) and the lab use this for the drifted copies.  The output keeps the
input's byte order, link type and snap length and is written with nanosecond resolution, so
the rewritten times lose nothing; records are copied byte for byte otherwise (frame numbers
unchanged).  Classic pcap only (the lab writes pcap).
"""

from __future__ import annotations

import argparse
import struct
import sys

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D


def retime(src: str, dst: str, shift: float = 0.0, drift_ppm: float = 0.0) -> int:
    """Write ``dst`` from ``src`` with shifted and drifted times; returns the record count."""
    with open(src, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError(f"{src}: too short for a pcap header")
    for order in ("<", ">"):
        (magic,) = struct.unpack(order + "I", data[:4])
        if magic in (MAGIC_US, MAGIC_NS):
            break
    else:
        raise ValueError(f"{src}: not a classic pcap file")
    div = 1_000_000_000 if magic == MAGIC_NS else 1_000_000
    hdr = order + "IIII"
    out = bytearray(struct.pack(order + "I", MAGIC_NS) + data[4:24])
    off = 24
    n = 0
    first = None
    rate = drift_ppm * 1e-6
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from(hdr, data, off)
        t_ns = sec * 1_000_000_000 + frac * (1_000_000_000 // div)
        if first is None:
            first = t_ns
        new = t_ns + round(shift * 1e9) + round(rate * (t_ns - first))
        if new < 0:
            raise ValueError(f"{src}: record {n + 1} would be before 1970")
        out += struct.pack(hdr, new // 1_000_000_000, new % 1_000_000_000, incl, orig)
        out += data[off + 16:off + 16 + incl]
        off += 16 + incl
        n += 1
    with open(dst, "wb") as f:
        f.write(out)
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--shift", type=float, default=0.0, help="seconds added to every time")
    ap.add_argument("--drift-ppm", type=float, default=0.0,
                    help="clock drift in parts per million (positive: the clock runs fast)")
    a = ap.parse_args(argv)
    n = retime(a.src, a.dst, a.shift, a.drift_ppm)
    print(f"{a.dst}: {n} records", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
