"""Two vantage points made from one real capture (issue 16 tests; synthetic by construction).

The capture is taken to be point ``a`` beside the client (``--client`` address), its times
unchanged.  Point ``b`` lies on the path towards the server: a packet from the client reaches
``b`` ``delay`` seconds after ``a``, a packet from the server passed ``b`` ``delay`` seconds
before ``a``, and ``b``'s clock is ``offset`` seconds ahead (keep ``delay`` below half the
round trips the capture shows, or ``b`` would see answers before their requests).  Frames listed in ``drop_b`` (client -> server) never reach
``b``: lost between ``a`` and ``b``; frames in ``drop_a`` (server -> client) never reach ``a``:
lost between ``b`` and ``a``.  With ``nat`` = (address, port) a NAT between the points rewrites
the client's IPv4 address and UDP/TCP port at ``b`` (IP header checksum recomputed, UDP checksum
zeroed, which IPv4 allows).  Classic pcap with Ethernet frames only.

    python bench/pointsplit.py SRC A.pcap B.pcap --client 192.0.2.2 --offset 2.5 \\
        --delay 0.004 --drop-b 21,23 --nat 203.0.113.9:40000
"""

from __future__ import annotations

import argparse
import ipaddress
import struct


def _read(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    header = data[:24]
    linktype = struct.unpack_from(e + "I", data, 20)[0]
    if linktype != 1:
        raise ValueError(f"{path}: linktype {linktype}, only Ethernet (1) is handled")
    recs = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from(e + "IIII", data, pos)
        ts = sec + frac / (1e9 if nano else 1e6)
        recs.append([ts, bytearray(data[pos + 16:pos + 16 + incl]), orig])
        pos += 16 + incl
    return header, e, nano, recs


def _checksum(b) -> int:
    if len(b) % 2:
        b = bytes(b) + b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", bytes(b)))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ipv4(frame):
    """(offset of the IPv4 header, header length) or None."""
    off = 12
    et = struct.unpack_from("!H", frame, off)[0]
    while et in (0x8100, 0x88A8):
        off += 4
        et = struct.unpack_from("!H", frame, off)[0]
    if et != 0x0800:
        return None
    ip = off + 2
    return ip, (frame[ip] & 0x0F) * 4


def _nat(frame, client, addr, port):
    v = _ipv4(frame)
    if v is None:
        return
    ip, hl = v
    proto = frame[ip + 9]
    l4 = ip + hl
    if frame[ip + 12:ip + 16] == client:
        frame[ip + 12:ip + 16] = addr
        if proto in (6, 17) and port:
            frame[l4:l4 + 2] = struct.pack("!H", port)
    elif frame[ip + 16:ip + 20] == client:
        frame[ip + 16:ip + 20] = addr
        if proto in (6, 17) and port:
            frame[l4 + 2:l4 + 4] = struct.pack("!H", port)
    else:
        return
    frame[ip + 10:ip + 12] = b"\0\0"
    frame[ip + 10:ip + 12] = struct.pack("!H", _checksum(frame[ip:ip + hl]))
    if proto == 17:
        frame[l4 + 6:l4 + 8] = b"\0\0"


def _from_client(frame, client) -> bool:
    v = _ipv4(frame)
    return v is not None and frame[v[0] + 12:v[0] + 16] == client


def _write(path, header, e, nano, recs):
    with open(path, "wb") as f:
        f.write(header)
        for ts, frame, orig in sorted(recs, key=lambda r: r[0]):
            sec = int(ts)
            frac = round((ts - sec) * (1e9 if nano else 1e6))
            if frac >= (1e9 if nano else 1e6):
                sec, frac = sec + 1, 0
            f.write(struct.pack(e + "IIII", sec, frac, len(frame), orig))
            f.write(bytes(frame))


def split_points(src, a_out, b_out, client, offset=0.0, delay=0.002, drop_a=(), drop_b=(),
                 nat=None) -> None:
    """Write points ``a`` and ``b`` of ``src`` (see the module docstring); frame numbers are
    1-based, as Wireshark counts them."""
    header, e, nano, recs = _read(src)
    c = ipaddress.ip_address(client).packed
    a_recs = []
    b_recs = []
    drop_a, drop_b = set(drop_a), set(drop_b)
    for n, (ts, frame, orig) in enumerate(recs, 1):
        fc = _from_client(frame, c)
        if n not in drop_a:
            a_recs.append([ts, bytearray(frame), orig])
        if n not in drop_b:
            g = bytearray(frame)
            if nat is not None:
                _nat(g, c, ipaddress.ip_address(nat[0]).packed, nat[1])
            b_recs.append([ts + offset + (delay if fc else -delay), g, orig])
    _write(a_out, header, e, nano, a_recs)
    _write(b_out, header, e, nano, b_recs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--client", required=True)
    ap.add_argument("--offset", type=float, default=0.0)
    ap.add_argument("--delay", type=float, default=0.002)
    ap.add_argument("--drop-a", default="")
    ap.add_argument("--drop-b", default="")
    ap.add_argument("--nat", help="ADDRESS:PORT of the client at b (PORT 0: ports kept)")
    args = ap.parse_args(argv)

    def nums(s):
        return [int(x) for x in s.split(",") if x]

    nat = None
    if args.nat:
        host, _, port = args.nat.rpartition(":")
        nat = (host, int(port))
    split_points(args.src, args.a, args.b, args.client, args.offset, args.delay,
                 nums(args.drop_a), nums(args.drop_b), nat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
