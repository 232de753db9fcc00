#!/usr/bin/env python3
"""Adversarial captures (issue 20): what a mirror port on an internet-facing gateway, or a
capture attached to a ticket by anyone, can hold.  Each generator writes a classic pcap
(Ethernet, microsecond timestamps) of ``n`` objects, deterministically (integer-microsecond
clock, no randomness), fast enough for a million packets:

* ``esp_spis``: one gateway pair, ``n`` distinct ESP SPIs (three quarters one way, one quarter
  the other), ``per_spi`` packets each;
* ``ike_inits``: an IKE_SA_INIT flood, ``n`` requests with distinct initiator SPIs between one
  pair (``sources`` > 1 spreads them over that many spoofed source addresses), every fourth
  answered, every eighth sent by the other side (both peers initiating);
* ``mid_session``: ``n`` IKEv2 SAs first seen mid-session (no IKE_SA_INIT) between one pair:
  chains of IKE SA rekeys (CREATE_CHILD_SA on the old SA, the new SPI pair talking right after)
  and liveness checks;
* ``skf``: one IKE SA whose IKE_AUTH request comes in ``n`` SKF fragments (RFC 7383) with
  distinct fragment numbers;
* ``ike_endpoints``: one IKE SA whose messages come from ``n`` source ports (and addresses);
* ``one_packet_files``: ``n`` files of one ESP packet each (merged by ``analyze``);
* ``mixed_garbage``: frames for ``live`` mutated from a small healthy capture (bit flips,
  truncation), in a loop.

The tests (``tests/hostile/``) run them at small sizes and count work; ``bench/hostile_bench.py``
runs them at the sizes of the issue and measures time and memory.
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

from dissect.vpn.capture import PcapWriter

START_US = 1_700_000_000_000_000
A = bytes((192, 0, 2, 1))
B = bytes((198, 51, 100, 1))
MAC_A = bytes.fromhex("00005e005301")
MAC_B = bytes.fromhex("00005e005302")

IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL = 34, 35, 36, 37
F_I, F_R = 0x08, 0x20
PL_SA, PL_KE, PL_NONCE, PL_NOTIFY, PL_SK, PL_SKF = 33, 34, 40, 41, 46, 53


class Wire:
    """Ethernet + IPv4 + UDP/ESP frames with a writer; ``t`` in microseconds."""

    def __init__(self, path: Path):
        self.f = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.w = PcapWriter(self.f, 1)
        self.rec = struct.Struct("<IIII").pack
        self.write = self.f.write

    def frame(self, t_us: int, data: bytes) -> None:
        sec, usec = divmod(t_us, 1_000_000)
        self.write(self.rec(sec, usec, len(data), len(data)) + data)

    def close(self):
        self.f.close()


def _eth(src: bytes, dst: bytes) -> bytes:
    return (MAC_B + MAC_A if src < dst else MAC_A + MAC_B) + b"\x08\x00"


def ip4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    return _eth(src, dst) + struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000,
                                        64, proto, 0, src, dst) + payload


def udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    return ip4(src, dst, 17, struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload)


def gpl(np: int, body: bytes) -> bytes:
    return struct.pack(">BBH", np, 0, 4 + len(body)) + body


def ike(ispi: bytes, rspi: bytes, np: int, exch: int, flags: int, msgid: int, body: bytes) -> bytes:
    return ispi + rspi + struct.pack(">BBBBII", np, 0x20, exch, flags, msgid, 28 + len(body)) \
        + body


def _sa_init_body() -> tuple[int, bytes]:
    tr = [(1, 12, 256), (3, 12, 0), (2, 5, 0), (4, 14, 0)]
    trs = b""
    for i, (tt, tid, kl) in enumerate(tr):
        attrs = struct.pack(">HH", 0x800E, kl) if kl else b""
        trs += struct.pack(">BBHBBH", 0 if i == len(tr) - 1 else 3, 0, 8 + len(attrs), tt, 0,
                           tid) + attrs
    prop = struct.pack(">BBHBBBB", 0, 0, 8 + len(trs), 1, 1, 0, len(tr)) + trs
    body = gpl(PL_KE, prop) + gpl(PL_NONCE, struct.pack(">HH", 14, 0) + bytes(256)) \
        + gpl(0, bytes(32))
    return PL_SA, body


_INIT_REQ = _INIT_RESP = _sa_init_body()


def sa_init(ispi: bytes, rspi: bytes, response: bool) -> bytes:
    np, body = _INIT_RESP if response else _INIT_REQ
    return ike(ispi, rspi, np, IKE_SA_INIT, F_R if response else F_I, 0, body)


def notify_only(ispi: bytes, rspi: bytes, exch: int, ntype: int, flags: int, msgid: int = 0,
                data: bytes = b"") -> bytes:
    return ike(ispi, rspi, PL_NOTIFY, exch, flags, msgid,
               gpl(0, struct.pack(">BBH", 0, 0, ntype) + data))


def encrypted(ispi: bytes, rspi: bytes, exch: int, flags: int, msgid: int, inner: int = 0,
              ct: int = 64) -> bytes:
    return ike(ispi, rspi, PL_SK, exch, flags, msgid, gpl(inner, bytes(ct)))


def spi8(prefix: int, i: int) -> bytes:
    return struct.pack(">II", prefix, i + 1)


# -- generators ---------------------------------------------------------------------------------


def esp_spis(path: Path, n: int, per_spi: int = 2, gap_us: int = 100) -> Path:
    """``n`` distinct SPIs between A and B; SPI i starts at ``i * gap_us``; SPIs with i % 4 == 3
    flow B -> A, the others A -> B; ``per_spi`` packets each (sequence 1..per_spi), 1 ms apart."""
    w = Wire(path)
    body = bytes(48)
    pre_ab = _eth(A, B) + struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(body), 0, 0x4000,
                                      64, 50, 0, A, B)
    pre_ba = _eth(B, A) + struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(body), 0, 0x4000,
                                      64, 50, 0, B, A)
    pk = struct.Struct(">II").pack
    # packets of overlapping SPIs interleave by time: emit in time order with a small heap-free
    # schedule (packet k of SPI i at i*gap + k*1000 us)
    events = []
    for i in range(n):
        t0 = START_US + i * gap_us
        pre = pre_ba if i % 4 == 3 else pre_ab
        spi = 0x10000000 + i
        for k in range(per_spi):
            events.append((t0 + k * 1000, i, k, pre, spi))
    if per_spi > 1:
        events.sort()
    for t, _i, k, pre, spi in events:
        w.frame(t, pre + pk(spi, k + 1) + body)
    w.close()
    return path


def ike_inits(path: Path, n: int, sources: int = 1, gap_us: int = 1000,
              answer_every: int = 4, reverse_every: int = 8) -> Path:
    """An IKE_SA_INIT flood: ``n`` requests with distinct initiator SPIs, ``gap_us`` apart."""
    w = Wire(path)
    req = _INIT_REQ
    resp = _INIT_RESP
    for i in range(n):
        t = START_US + i * gap_us
        ispi = spi8(0xA0000000, i)
        src = A if sources <= 1 else struct.pack(">I", 0xCB007100 + (i % sources))  # 203.0.113.x
        if sources > 65536:
            src = struct.pack(">I", 0x0A000000 + (i % sources))  # 10.x.y.z
        a, b = (src, B)
        if reverse_every and i % reverse_every == reverse_every - 1:
            a, b = b, a
        w.frame(t, udp(a, b, 500, 500, ike(ispi, bytes(8), req[0], IKE_SA_INIT, F_I, 0, req[1])))
        if answer_every and i % answer_every == 0:
            rspi = spi8(0xB0000000, i)
            w.frame(t + 300, udp(b, a, 500, 500,
                                 ike(ispi, rspi, resp[0], IKE_SA_INIT, F_R, 0, resp[1])))
    w.close()
    return path


def cookie_inits(path: Path, n: int, gap_us: int = 1000) -> Path:
    """``n`` IKE_SA_INITs between one pair, each answered with a COOKIE and retried under a new
    initiator SPI (answered or not): the retry linking of a responder under DoS protection."""
    w = Wire(path)
    req = _INIT_REQ
    for i in range(n):
        t = START_US + i * gap_us
        ispi = spi8(0xA1000000, i)
        w.frame(t, udp(A, B, 500, 500, ike(ispi, bytes(8), req[0], IKE_SA_INIT, F_I, 0, req[1])))
        w.frame(t + 100, udp(B, A, 500, 500, notify_only(ispi, bytes(8), IKE_SA_INIT, 16390, F_R,
                                                          data=bytes(16))))
        retry = spi8(0xA2000000, i)
        w.frame(t + 300, udp(A, B, 500, 500, ike(retry, bytes(8), req[0], IKE_SA_INIT, F_I, 0,
                                                 req[1])))
        if i % 2 == 0:
            w.frame(t + 400, udp(B, A, 500, 500, sa_init(retry, spi8(0xB2000000, i), True)))
    w.close()
    return path


def v1_main_mode(path: Path, n: int, gap_us: int = 1000) -> Path:
    """``n`` IKEv1 Main Mode first messages (MM1) with distinct initiator cookies from one
    source, every fourth answered (MM2)."""
    w = Wire(path)
    tr = struct.pack(">BBHBBH", 0, 0, 8 + 4, 1, 1, 0) + struct.pack(">HH", 0x8001, 7)
    prop = struct.pack(">BBHBBBB", 0, 0, 8 + len(tr), 1, 1, 0, 1) + tr
    sa_body = struct.pack(">II", 1, 1) + prop  # DOI IPsec, SIT_IDENTITY_ONLY
    for i in range(n):
        t = START_US + i * gap_us
        icookie = spi8(0xC1000000, i)
        body = gpl(0, sa_body)
        msg = icookie + bytes(8) + struct.pack(">BBBBII", 1, 0x10, 2, 0, 0, 28 + len(body)) + body
        w.frame(t, udp(A, B, 500, 500, msg))
        if i % 4 == 0:
            rc = spi8(0xC2000000, i)
            msg = icookie + rc + struct.pack(">BBBBII", 1, 0x10, 2, 0, 0, 28 + len(body)) + body
            w.frame(t + 200, udp(B, A, 500, 500, msg))
    w.close()
    return path


def one_sa_exchanges(path: Path, n: int, gap_us: int = 1000) -> Path:
    """One IKEv2 SA (IKE_SA_INIT, IKE_AUTH) then ``n`` INFORMATIONAL exchanges (Message IDs
    2..n+1), every other one unanswered; requests from both sides."""
    w = Wire(path)
    ispi, rspi = spi8(0xD1000000, 0), spi8(0xD2000000, 0)
    t = START_US
    w.frame(t, udp(A, B, 500, 500, sa_init(ispi, bytes(8), False)))
    w.frame(t + 100, udp(B, A, 500, 500, sa_init(ispi, rspi, True)))
    w.frame(t + 200, udp(A, B, 4500, 4500, bytes(4) + encrypted(ispi, rspi, IKE_AUTH, F_I, 1, 35)))
    w.frame(t + 300, udp(B, A, 4500, 4500, bytes(4) + encrypted(ispi, rspi, IKE_AUTH, F_R, 1, 36)))
    for i in range(n):
        t = START_US + 1000 + i * gap_us
        a, b, f = (A, B, F_I) if i % 3 else (B, A, 0)
        w.frame(t, udp(a, b, 4500, 4500, bytes(4) + encrypted(ispi, rspi, INFORMATIONAL, f,
                                                               2 + i)))
        if i % 2 == 0:
            w.frame(t + 100, udp(b, a, 4500, 4500,
                                 bytes(4) + encrypted(ispi, rspi, INFORMATIONAL,
                                                      F_R | (F_I if f == 0 else 0), 2 + i)))
    w.close()
    return path


def mid_session(path: Path, n: int, gap_us: int = 2000) -> Path:
    """``n`` IKEv2 SAs between A and B first seen mid-session: groups of four form a rekey chain
    (CREATE_CHILD_SA on the old SA, answered; the new SPI pair talks right after); every SA
    also has one liveness check (INFORMATIONAL request/response)."""
    w = Wire(path)
    for i in range(n):
        t = START_US + i * gap_us
        ispi, rspi = spi8(0xC0000000, i), spi8(0xD0000000, i)
        w.frame(t, udp(A, B, 4500, 4500, bytes(4) + encrypted(ispi, rspi, INFORMATIONAL, F_I, 1)))
        w.frame(t + 200, udp(B, A, 4500, 4500,
                             bytes(4) + encrypted(ispi, rspi, INFORMATIONAL, F_R, 1)))
        if i % 4 != 3:  # rekeyed by SA i+1
            w.frame(t + 500, udp(A, B, 4500, 4500,
                                 bytes(4) + encrypted(ispi, rspi, CREATE_CHILD_SA, F_I, 2, 33)))
            w.frame(t + 700, udp(B, A, 4500, 4500,
                                 bytes(4) + encrypted(ispi, rspi, CREATE_CHILD_SA, F_R, 2, 33)))
    w.close()
    return path


def ike_endpoints(path: Path, n: int, gap_us: int = 1000) -> Path:
    """One IKE SA (IKE_SA_INIT with NAT-D notifies, answered), then ``n`` INFORMATIONAL requests
    each from another source port (every eighth from another source address too): the endpoints
    of one SA, which the NAT-D recomputation tries as origins of a mismatching hash."""
    w = Wire(path)
    ispi, rspi = spi8(0xE1000000, 0), spi8(0xE2000000, 0)
    natd = gpl(PL_NOTIFY, struct.pack(">BBH", 0, 0, 16388) + bytes(20)) + \
        gpl(0, struct.pack(">BBH", 0, 0, 16389) + bytes(20))
    np_, body = _INIT_REQ
    body = body[:-36] + gpl(PL_NOTIFY, bytes(32)) + natd  # the Nonce now names the notifies
    w.frame(START_US, udp(A, B, 500, 500, ike(ispi, bytes(8), np_, IKE_SA_INIT, F_I, 0, body)))
    w.frame(START_US + 200, udp(B, A, 500, 500, ike(ispi, rspi, np_, IKE_SA_INIT, F_R, 0, body)))
    for i in range(n):
        src = A if i % 8 else struct.pack(">I", 0x0A000000 + i)  # 10.0.0.0/8: new ones
        msg = encrypted(ispi, rspi, INFORMATIONAL, F_I, 2 + i)
        w.frame(START_US + 1000 + i * gap_us, udp(src, B, 20000 + i % 40000, 4500,
                                                  bytes(4) + msg))
    w.close()
    return path


def skf(path: Path, n: int, gap_us: int = 50) -> Path:
    """One IKE SA: IKE_SA_INIT answered, then an IKE_AUTH request in ``n`` SKF fragments with
    fragment numbers 1..n (Total Fragments n, at most 65535), never answered."""
    n = min(n, 65535)
    w = Wire(path)
    ispi, rspi = spi8(0xE0000000, 0), spi8(0xF0000000, 0)
    t = START_US
    w.frame(t, udp(A, B, 500, 500, sa_init(ispi, bytes(8), False)))
    w.frame(t + 500, udp(B, A, 500, 500, sa_init(ispi, rspi, True)))
    for k in range(1, n + 1):
        body = gpl(0, struct.pack(">HH", k, n) + bytes(64))  # SKF: number, total, data
        # the first fragment names the first inner payload (IDi)
        body = struct.pack(">B", 35 if k == 1 else 0) + body[1:]
        msg = ike(ispi, rspi, PL_SKF, IKE_AUTH, F_I, 1, body)
        w.frame(t + 1000 + k * gap_us, udp(A, B, 4500, 4500, bytes(4) + msg))
    w.close()
    return path


def ike_fragment_heads(path: Path, n: int, gap_us: int = 1, group: int = 0) -> Path:
    """``n`` first IP fragments of IKE_AUTH datagrams (UDP 4500, 1,400 of 2,000 bytes: what a
    port capture filter keeps) between one pair, ``gap_us`` apart (within the 5 ms a datagram's
    fragments may take), and after each ``group`` of them (0: all ``n``) an IKE message of the
    pair 10 ms later, which gives them up: the pending heads must not all be looked at for each
    new one."""
    group = group or n
    w = Wire(path)
    ispi, rspi = spi8(0xE1000000, 0), spi8(0xF1000000, 0)
    t = START_US
    msg = encrypted(ispi, rspi, IKE_AUTH, F_I, 1, ct=2000 - 8 - 4 - 28 - 4)  # UDP, marker, IKE
    dgram = struct.pack(">HHHH", 4500, 4500, 8 + 4 + len(msg), 0) + bytes(4) + msg
    for k in range(n):
        head = dgram[:1400]
        hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(head), k & 0xFFFF, 0x2000, 64, 17,
                          0, A, B)
        w.frame(t, _eth(A, B) + hdr + head)
        t += gap_us
        if k % group == group - 1:
            t += 10_000
            w.frame(t, udp(B, A, 4500, 4500, bytes(4) + encrypted(ispi, rspi, INFORMATIONAL,
                                                                   F_R, k)))
    w.close()
    return path


def tcp_cut_segments(path: Path, n: int, size: int = 60000, gap_us: int = 10) -> Path:
    """An RFC 9329 stream (SYN, the IKETCP prefix) whose ``n`` segments each carry one framed
    ESP packet of ``size`` bytes, captured as 46 bytes (the records' original lengths say
    ``size`` more): every segment keeps its place in the stream with zeros standing in for what
    was cut, so each costs that much work and none may accumulate."""
    w = Wire(path)

    def seg(t, seq, flags, payload, cut=0):
        tcp = struct.pack(">HHIIBBHHH", 40000, 4500, seq, 0, 5 << 4, flags, 65535, 0, 0)
        hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload) + cut, 0,
                          0x4000, 64, 6, 0, A, B)
        data = _eth(A, B) + hdr + tcp + payload
        sec, usec = divmod(t, 1_000_000)
        w.write(w.rec(sec, usec, len(data), len(data) + cut) + data)

    t = START_US
    seg(t, 999, 0x02, b"")
    seg(t + 1, 1000, 0x18, b"IKETCP")
    seq = 1006
    for k in range(n):
        t += gap_us
        payload = struct.pack(">HII", size, 0xC1000001, k + 1) + bytes(36)
        seg(t, seq, 0x18, payload, size - len(payload))
        seq = (seq + size) & 0xFFFFFFFF
    w.close()
    return path


def one_packet_files(directory: Path, n: int) -> list[Path]:
    """``n`` pcap files holding one ESP packet each (SPI i, sequence 1), 1 ms apart."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    pre = _eth(A, B) + struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + 56, 0, 0x4000, 64, 50, 0, A, B)
    for i in range(n):
        p = directory / f"one-{i:07d}.pcap"
        w = Wire(p)
        w.frame(START_US + i * 1000, pre + struct.pack(">II", 0x20000000 + i, 1) + bytes(48))
        w.close()
        out.append(p)
    return out


GENERATORS = {"esp_spis": esp_spis, "ike_inits": ike_inits, "mid_session": mid_session,
              "skf": skf, "cookie_inits": cookie_inits, "ike_endpoints": ike_endpoints, "v1_main_mode": v1_main_mode,
              "one_sa_exchanges": one_sa_exchanges, "ike_fragment_heads": ike_fragment_heads}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=sorted(GENERATORS) + ["one_packet_files"])
    ap.add_argument("n", type=int)
    ap.add_argument("out", type=Path)
    a = ap.parse_args(argv)
    if a.kind == "one_packet_files":
        one_packet_files(a.out, a.n)
    else:
        GENERATORS[a.kind](a.out, a.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
