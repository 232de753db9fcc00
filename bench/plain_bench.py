"""The plaintext path (issue 15), measured side by side.

1. A client capture of ``--packets`` packets that is mostly plaintext web traffic, as
   ``tcpdump -i any`` writes it (Linux cooked v2): HTTP downloads through a TUN device
   (ifindex 3, ARPHRD_NONE) with the ESP-in-UDP packets that carry them on the physical
   interface (ifindex 2), and direct web traffic beside the tunnel (split tunnel).  pcapvpn's
   full analysis against ``tshark -q -Y frame`` (target: at least 2x faster).
2. The ESP-only capture of ``bench/gen.py`` analysed by this tree and by another one
   (``--base``: a checkout of main without the plaintext path): the cost of the plaintext path
   where there is no plaintext (target: at most 5 %).

    python bench/plain_bench.py --packets 1000000 --base /tmp/main-src --results bench/RESULTS.md

Deterministic generator (fixed seed, integer-microsecond clock); captures go to bench/out/.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

from run import measure  # noqa: E402

BEGIN = "<!-- BEGIN bench/plain_bench.py -->"
END = "<!-- END bench/plain_bench.py -->"

CLIENT_OUT, CLIENT_IN = bytes([192, 0, 2, 2]), bytes([198, 51, 100, 2])
INNER = bytes([10, 10, 1, 1])
ESP_OVERHEAD = 8 + 8 + 16 + 2 + 16 + 8  # UDP, SPI/seq, IV, pad/next header, ICV, pad (approx)


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def _ipv4(src, dst, proto, payload, ident):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, 64,
                    proto, 0, src, dst)
    return h[:10] + struct.pack("!H", _csum(h)) + h[12:] + payload


def _tcp(sport, dport, seq, ack, flags, data=b""):
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4,
                       flags, 65535, 0, 0) + data


def _sll2(ifindex, hatype, pkttype, ip):
    return struct.pack("!HHIHBB8s", 0x0800, 0, ifindex, hatype, pkttype, 6 if hatype == 1 else 0,
                       b"\x02\x00\x00\x00\x00\x01\0\0" if hatype == 1 else bytes(8)) + ip


def generate(path: Path, packets: int, seed: int = 20261206) -> dict:
    """Write the client capture; return its composition."""
    from dissect.vpn.capture import PcapWriter

    rnd = random.Random(seed)
    t = 1_800_000_000_000_000  # microseconds
    counts = {"tun": 0, "esp": 0, "direct": 0}
    seq_out = seq_in = 0
    spi_out, spi_in = 0xC1000001, 0xC2000002
    ident = 0
    n = 0
    with open(path, "wb") as f:
        w = PcapWriter(f, 276)

        def put(data):
            nonlocal n, t
            t += rnd.randint(20, 400)
            w.write_packet(t * 1000, data)
            n += 1

        def esp(outbound, size):
            nonlocal seq_out, seq_in, ident
            ident += 1
            if outbound:
                seq_out += 1
                spi, sq, src, dst, pkt = spi_out, seq_out, CLIENT_OUT, CLIENT_IN, 4
            else:
                seq_in += 1
                spi, sq, src, dst, pkt = spi_in, seq_in, CLIENT_IN, CLIENT_OUT, 0
            body = struct.pack("!II", spi, sq) + bytes(size + ESP_OVERHEAD - 16)
            udp = struct.pack("!HHHH", 4500, 4500, 8 + len(body), 0) + body
            put(_sll2(2, 1, pkt, _ipv4(src, dst, 17, udp, ident)))
            counts["esp"] += 1

        conn = 0
        while n < packets:
            conn += 1
            direct = rnd.random() < 0.5
            srv = bytes([203, 0, 113, rnd.randint(1, 254)]) if direct else \
                bytes([10, 20, rnd.randint(1, 9), rnd.randint(1, 254)])
            cli = CLIENT_OUT if direct else INNER
            cport = 20000 + conn % 40000
            segs = rnd.randint(4, 60)
            ifx, hat = (2, 1) if direct else (3, 0xFFFE)
            kind = "direct" if direct else "tun"
            c_isn, s_isn = rnd.getrandbits(32), rnd.getrandbits(32)

            def send(outbound, ip):
                nonlocal ident
                ident += 1
                put(_sll2(ifx, hat, 4 if outbound else 0, ip))
                counts[kind] += 1
                if not direct:
                    esp(outbound, len(ip))

            send(True, _ipv4(cli, srv, 6, _tcp(cport, 80, c_isn, 0, 0x02), ident))
            send(False, _ipv4(srv, cli, 6, _tcp(80, cport, s_isn, c_isn + 1, 0x12), ident))
            req = b"GET /file HTTP/1.1\r\nHost: intranet\r\n\r\n"
            send(True, _ipv4(cli, srv, 6, _tcp(cport, 80, c_isn + 1, s_isn + 1, 0x18, req),
                             ident))
            off = 1
            for i in range(segs):
                data = bytes(1348 if i < segs - 1 else rnd.randint(100, 1348))
                send(False, _ipv4(srv, cli, 6, _tcp(80, cport, s_isn + off, c_isn + 1 + len(req),
                                                    0x10, data), ident))
                off += len(data)
                if i % 2:
                    send(True, _ipv4(cli, srv, 6, _tcp(cport, 80, c_isn + 1 + len(req),
                                                       s_isn + off, 0x10), ident))
            send(True, _ipv4(cli, srv, 6, _tcp(cport, 80, c_isn + 1 + len(req), s_isn + off,
                                               0x11), ident))
            send(False, _ipv4(srv, cli, 6, _tcp(80, cport, s_isn + off, c_isn + 2 + len(req),
                                                0x11), ident))
    counts["packets"] = n
    counts["connections"] = conn
    return counts


def analyze(src: Path) -> list[str]:
    """``pcapvpn analyze`` from the source tree ``src``, whatever the working directory and the
    installed (editable) package: the tree is put first on sys.path before the import."""
    code = (f"import runpy, sys; sys.path.insert(0, {str(src)!r}); sys.argv[0] = 'pcapvpn'; "
            f"runpy.run_module('pcapvpn', run_name='__main__')")
    return [sys.executable, "-c", code, "analyze", "--format", "json", "-o", "/dev/null"]


def best(cmd, repeat):
    runs = []
    for _ in range(repeat):
        runs.append(measure(cmd))
    ok = [r for r in runs if r["rc"] in (0, 1)]
    if not ok:
        raise SystemExit(f"{cmd}: failed: {runs[-1]}")
    return {"wall": min(r["wall"] for r in ok), "cpu": min(r["cpu"] for r in ok),
            "rss_mb": max(r["rss_mb"] or 0 for r in ok), "load1": runs[0]["load1"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--base", help="another source tree (e.g. main) for the ESP-only comparison")
    ap.add_argument("--base-label", default="base tree (no plaintext path)",
                    help="what the --base tree is, as the tables name it")
    ap.add_argument("--esp-capture", default=str(BENCH / "out" / "vpn.pcap"),
                    help="the ESP-only capture (python bench/gen.py --packets N --out ...)")
    ap.add_argument("--out-dir", default=str(BENCH / "out"))
    ap.add_argument("--results", help="write a section into this RESULTS.md")
    args = ap.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cap = out / f"client-plain-{args.packets}.pcap"
    if not cap.exists():
        print(f"generating {cap}", flush=True)
        comp = generate(cap, args.packets)
        cap.with_suffix(".json").write_text(json.dumps(comp))
    comp = json.loads(cap.with_suffix(".json").read_text())
    res = {"composition": comp}
    print("pcapvpn on the client capture", flush=True)
    res["pcapvpn_client"] = best(analyze(REPO) + [str(cap)], args.repeat)
    if args.base:
        print("pcapvpn (base tree) on the client capture", flush=True)
        res["base_client"] = best(analyze(Path(args.base)) + [str(cap)], args.repeat)
    print("tshark on the client capture", flush=True)
    res["tshark_client"] = best(["tshark", "-q", "-Y", "frame", "-r", str(cap)], args.repeat)
    esp = Path(args.esp_capture)
    if args.base and esp.exists():
        for label, src in (("esp_here", REPO), ("esp_base", Path(args.base))):
            print(f"pcapvpn ({label}) on {esp.name}", flush=True)
            res[label] = best(analyze(src) + [str(esp)], args.repeat)
    text = render(res, cap, esp if args.base else None, args.base_label)
    print(text)
    if args.results:
        path = Path(args.results)
        old = path.read_text() if path.exists() else ""
        block = f"{BEGIN}\n{text.rstrip()}\n{END}\n"
        if BEGIN in old:
            head, rest = old.split(BEGIN, 1)
            old = head + block + rest.split(END, 1)[1].lstrip("\n")
        else:
            old = old.rstrip("\n") + "\n\n" + block
        path.write_text(old)
    return 0


def render(res, cap, esp, base_label="base tree (no plaintext path)") -> str:
    c = res["composition"]
    p, t = res["pcapvpn_client"], res["tshark_client"]
    lines = ["## The plaintext path (issue 15): `bench/plain_bench.py`", "",
             f"Client capture `{cap.name}` ({c['packets']:,} packets, Linux cooked v2: "
             f"{c['tun']:,} plaintext on the TUN device, {c['esp']:,} ESP-in-UDP carrying them, "
             f"{c['direct']:,} direct web packets beside the tunnel; {c['connections']:,} HTTP "
             f"connections). Best of the runs; cpu = user + sys.", "",
             "| tool | seconds | cpu s | peak RSS MB | ratio (wall) | ratio (cpu) |",
             "|---|---:|---:|---:|---:|---:|",
             f"| pcapvpn analyze (full, json) | {p['wall']:.1f} | {p['cpu']:.1f} | "
             f"{p['rss_mb']:.0f} | {t['wall'] / p['wall']:.2f}x | {t['cpu'] / p['cpu']:.2f}x |",
             *([f"| pcapvpn analyze, {base_label} | {res['base_client']['wall']:.1f}"
                f" | {res['base_client']['cpu']:.1f} | {res['base_client']['rss_mb']:.0f} | "
                f"{t['wall'] / res['base_client']['wall']:.2f}x | "
                f"{t['cpu'] / res['base_client']['cpu']:.2f}x |"] if "base_client" in res else []),
             f"| tshark -q -Y frame | {t['wall']:.1f} | {t['cpu']:.1f} | {t['rss_mb']:.0f} | 1 | 1 |",
             "", f"Target: pcapvpn at least 2x faster than tshark: "
             f"{'met' if t['wall'] / p['wall'] >= 2 else 'NOT met'} "
             f"({t['wall'] / p['wall']:.2f}x wall, {t['cpu'] / p['cpu']:.2f}x cpu)."]
    if esp is not None and "esp_base" in res:
        h, b = res["esp_here"], res["esp_base"]
        lines += ["", f"ESP-only capture `{esp.name}` (bench/gen.py), this tree vs "
                      f"{base_label}:", "",
                  "| tree | seconds | cpu s | peak RSS MB |", "|---|---:|---:|---:|",
                  f"| this tree | {h['wall']:.2f} | {h['cpu']:.2f} | {h['rss_mb']:.0f} |",
                  f"| {base_label} | {b['wall']:.2f} | {b['cpu']:.2f} | {b['rss_mb']:.0f} |",
                  "", f"This tree vs {base_label}: "
                      f"{100 * (h['cpu'] / b['cpu'] - 1):+.1f} % cpu, "
                      f"{100 * (h['wall'] / b['wall'] - 1):+.1f} % wall (target at most +5 %)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
