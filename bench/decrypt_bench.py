"""ESP decryption throughput (AES-GCM, RFC 4106), and what --keys costs an analysis.

    python bench/decrypt_bench.py                      # 200,000 packets, prints a Markdown section
    python bench/decrypt_bench.py --packets 50000 --repeat 1

1. ``pcapvpn.decrypt.esp.EspDecryptor.open`` alone over in-memory ESP packets: AES-GCM-128 and
   AES-GCM-256 with a 16-octet ICV, and AES-CBC-128 + HMAC-SHA-256-128 for comparison (plaintext
   sizes like bench/gen.py: 40 % small, 20 % medium, 40 % 1000-1300 bytes).
2. End to end: a capture of ESP-in-UDP AES-GCM-128 packets (two SAs, one tunnel, ICMP echo
   requests one way and their replies the other)
   analysed by ``python -m pcapvpn analyze`` without keys and with ``--keys`` (every SA keyed):
   the difference is the cost of decrypting, per packet.

The packets are built here with ``cryptography`` (RFC 4106: nonce = salt | IV, AAD = SPI | seq).
Timings are the best of ``--repeat`` runs (wall clock).
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from dissect.vpn.capture import PcapWriter  # noqa: E402
from pcapvpn.decrypt.esp import EspDecryptor  # noqa: E402
from pcapvpn.decrypt.keyfile import load_keys  # noqa: E402


def sizes(n, rnd):
    out = []
    for _ in range(n):
        r = rnd.random()
        out.append(rnd.randint(40, 120) if r < 0.4 else rnd.randint(121, 999) if r < 0.6
                   else rnd.randint(1000, 1300))
    return out


def inner_packet(n, seq, rnd, reply=False):
    """An IPv4/ICMP echo request (or its reply) of n bytes (checksums not needed)."""
    n = max(n, 28)
    a, b = bytes([10, 1, 0, 1]), bytes([10, 2, 0, 1])
    if reply:
        a, b = b, a
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, n, seq & 0xFFFF, 0, 64, 1, 0, a, b)
    icmp = struct.pack(">BBHHH", 0 if reply else 8, 0, 0, 7, seq & 0xFFFF)
    return ip + icmp + rnd.randbytes(n - 28)


def esp_gcm(spi, seq, key_material, inner, rnd):
    key, salt = key_material[:-4], key_material[-4:]
    pad = (-(len(inner) + 2)) % 4
    pt = inner + bytes(range(1, pad + 1)) + bytes([pad, 4])
    hdr = struct.pack(">II", spi, seq)
    iv = rnd.randbytes(8)
    return hdr + iv + AESGCM(key).encrypt(salt + iv, pt, hdr)


def esp_cbc(spi, seq, ekey, akey, inner, rnd):
    import hmac

    pad = (-(len(inner) + 2)) % 16
    pt = inner + bytes(range(1, pad + 1)) + bytes([pad, 4])
    iv = rnd.randbytes(16)
    e = Cipher(algorithms.AES(ekey), modes.CBC(iv)).encryptor()
    body = struct.pack(">II", spi, seq) + iv + e.update(pt) + e.finalize()
    return body + hmac.new(akey, body, "sha256").digest()[:16]


def bench_open(label, keyline, packets, repeat):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "esp_sa"
        p.write_text(keyline + "\n")
        keys = load_keys([p]).esp_for(0xC0000001)
    best = None
    nbytes = sum(len(x) for x in packets)
    for _ in range(repeat):
        dec = EspDecryptor(keys)
        open_ = dec.open
        t = time.perf_counter()
        ok = 0
        for pkt in packets:
            if open_(pkt, 0, len(pkt))[0] == "ok":
                ok += 1
        dt = time.perf_counter() - t
        assert ok == len(packets), (label, ok)
        best = dt if best is None else min(best, dt)
    return {"label": label, "packets": len(packets), "seconds": best,
            "pps": len(packets) / best, "mbit": nbytes * 8 / best / 1e6,
            "us_per_packet": best / len(packets) * 1e6}


def write_capture(path, n, key_a, key_b, rnd):
    """Ethernet / IPv4 / UDP 4500 / ESP (AES-GCM-128), 192.0.2.10 <-> 198.51.100.10."""
    eth = bytes.fromhex("00005e005301" "00005e005302" "0800")
    with open(path, "wb") as f:
        w = PcapWriter(f, 1)
        ts = 1_700_000_000.0
        seqs = {0xC0000001: 0, 0xC0000002: 0}
        for i, size in enumerate(sizes(n, rnd)):
            fwd = i % 2 == 0
            spi = 0xC0000001 if fwd else 0xC0000002
            seqs[spi] += 1
            # requests one way, their replies the other way
            esp = esp_gcm(spi, seqs[spi], key_a if fwd else key_b,
                          inner_packet(size, seqs[spi], rnd, reply=not fwd), rnd)
            src, dst = (bytes([192, 0, 2, 10]), bytes([198, 51, 100, 10]))
            if not fwd:
                src, dst = dst, src
            udp = struct.pack(">HHHH", 4500, 4500, 8 + len(esp), 0)
            ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(esp), i & 0xFFFF,
                             0x4000, 64, 17, 0, src, dst)
            w.write_packet(ts + i * 1e-4, eth + ip + udp + esp)


def run_analyze(cap, keys, repeat):
    cmd = [sys.executable, "-m", "pcapvpn", "analyze", str(cap), "--format", "json", "-o",
           os.devnull]
    if keys:
        cmd += ["--keys", str(keys)]
    best = None
    for _ in range(repeat):
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        dt = time.perf_counter() - t
        assert r.returncode in (0, 1), r.stderr
        best = dt if best is None else min(best, dt)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=20240611)
    args = ap.parse_args(argv)
    rnd = random.Random(args.seed)
    n = args.packets
    k128, k256 = rnd.randbytes(20), rnd.randbytes(36)
    ek, ak = rnd.randbytes(16), rnd.randbytes(32)
    plain = [inner_packet(s, i, rnd) for i, s in enumerate(sizes(n, rnd))]
    rows = []
    gcm = '"IPv4","*","*","0xc0000001","AES-GCM with 16 octet ICV [RFC4106]","0x{}","NULL",""'
    rows.append(bench_open("AES-GCM-128 (ICV 16)", gcm.format(k128.hex()),
                           [esp_gcm(0xC0000001, i + 1, k128, p, rnd)
                            for i, p in enumerate(plain)], args.repeat))
    rows.append(bench_open("AES-GCM-256 (ICV 16)", gcm.format(k256.hex()),
                           [esp_gcm(0xC0000001, i + 1, k256, p, rnd)
                            for i, p in enumerate(plain)], args.repeat))
    rows.append(bench_open(
        "AES-CBC-128 + HMAC-SHA-256-128",
        f'"IPv4","*","*","0xc0000001","AES-CBC [RFC3602]","0x{ek.hex()}",'
        f'"HMAC-SHA-256-128 [RFC4868]","0x{ak.hex()}"',
        [esp_cbc(0xC0000001, i + 1, ek, ak, p, rnd) for i, p in enumerate(plain)], args.repeat))
    del plain

    with tempfile.TemporaryDirectory() as d:
        cap = Path(d) / "gcm.pcap"
        ka, kb = rnd.randbytes(20), rnd.randbytes(20)
        write_capture(cap, n, ka, kb, rnd)
        keys = Path(d) / "esp_sa"
        keys.write_text(gcm.format(ka.hex()) + "\n"
                        + gcm.format(kb.hex()).replace("0xc0000001", "0xc0000002") + "\n")
        t_plain = run_analyze(cap, None, args.repeat)
        t_keys = run_analyze(cap, keys, args.repeat)
        out = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", str(cap), "--keys",
                              str(keys), "--format", "json"], cwd=ROOT, capture_output=True,
                             text=True)
        import json

        doc = json.loads(out.stdout)
        opened = sum(e["decryption"]["verified"] for e in doc["esp_sas"])
        assert opened == n, opened

    print(f"## ESP decryption throughput (`bench/decrypt_bench.py --packets {n}`)\n")
    import platform

    import cryptography

    print(f"Python {platform.python_version()}, cryptography {cryptography.__version__} "
          f"(OpenSSL), {platform.machine()}; best of {args.repeat}.\n")
    print("| ESP SA | packets | seconds | packets/s | Mbit/s (ESP bytes) | µs/packet |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['label']} | {r['packets']:,} | {r['seconds']:.2f} | {r['pps']:,.0f} | "
              f"{r['mbit']:,.0f} | {r['us_per_packet']:.2f} |")
    print()
    print(f"End to end, `pcapvpn analyze` of {n:,} ESP-in-UDP AES-GCM-128 packets (2 SAs):\n")
    print("| run | seconds | packets/s |")
    print("|---|---:|---:|")
    print(f"| without keys | {t_plain:.2f} | {n / t_plain:,.0f} |")
    print(f"| `--keys` (both SAs keyed, {opened:,} packets verified) | {t_keys:.2f} | "
          f"{n / t_keys:,.0f} |")
    print(f"\nCost of decryption: {(t_keys - t_plain) / n * 1e6:.2f} µs per keyed packet "
          f"(ICV verified, inner IP header and ICMP read).")


if __name__ == "__main__":
    main()
