"""``pcapvpn live``: capture filter, event engine, event outputs, and end to end in namespaces.

Without root:

* the default capture filter, compiled by libpcap, is run (libpcap's ``bpf_filter``) over
  crafted frames: VPN traffic plain, behind VLAN tags and inside ERSPAN/GRE/VXLAN passes, other
  traffic does not;
* the event engine (raised / resolved / held / expired) is driven over lab captures with a
  simulated clock (``LiveSession`` with a capture object that hands out a file's frames as the
  clock passes them): the same code path as live, deterministic and fast;
* jsonl / text / syslog / --exec outputs; --exec never interpolates event data into a command.

As root (CI): a veth pair inside a network namespace made by the test, ``pcapvpn live --write
DIR`` on one end, captures replayed into the other end at their original timing (lab captures
as they are; other captures re-wrapped as Ethernet with addresses rewritten into 10.77.0.0/24 /
fd00:77::/64), stopped with SIGINT; the live events and final report must match ``pcapvpn
analyze`` on the files live wrote.  Plus: jsonl events arrive while the capture still runs, a
real strongSwan scenario from the lab captured live, kernel drops reported, a clear error
without CAP_NET_RAW.

This file is also the replayer: ``python tests/live/test_live.py replay IFACE FILE [--rewrap]``.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from itertools import count
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "captures" / "lab"
sys.path.insert(0, str(ROOT / "bench"))

from mutated import SimCapture  # noqa: E402  (bench/mutated.py: a capture object's defaults)
CI = os.environ.get("CI", "").lower() == "true"

# ------------------------------------------------------------------------------------------------
# capture filter (libpcap's own BPF interpreter over crafted frames)
# ------------------------------------------------------------------------------------------------


def _bpf_run():
    from pcapvpn.live.bpf import _load_libpcap

    lib = _load_libpcap()
    if not lib:
        (pytest.fail if CI else pytest.skip)("libpcap not installed (Debian: libpcap0.8)")
    lib.bpf_filter.restype = ctypes.c_uint
    lib.bpf_filter.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint]

    def run(prog: bytes, frame: bytes) -> bool:
        buf = ctypes.create_string_buffer(prog, len(prog))
        return lib.bpf_filter(buf, frame, len(frame), len(frame)) != 0

    return run


def _frames():
    from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP, IPerror, UDPerror
    from scapy.layers.inet6 import IPv6, ICMPv6EchoRequest, ICMPv6PacketTooBig, \
        IPv6ExtHdrFragment
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import Raw

    def eth(p):
        return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p

    esp = IP(src="192.0.2.1", dst="198.51.100.2", proto=50) / Raw(b"\x00\x00\x10\x01" + bytes(28))
    ike = IP(src="192.0.2.1", dst="198.51.100.2") / UDP(sport=500, dport=500) / Raw(b"\x11" * 28)
    dns = IP(src="192.0.2.1", dst="198.51.100.2") / UDP(sport=3333, dport=53) / Raw(b"q" * 20)
    web = IP(src="192.0.2.1", dst="198.51.100.2") / TCP(sport=3333, dport=80)

    def erspan2(inner):  # GRE with sequence number, 0x88BE, 8-byte ERSPAN II header
        return eth(IP(src="10.9.9.1", dst="10.9.9.2") / GRE(seqnum_present=1, sequence_number=7,
                                                             proto=0x88BE)
                   / Raw(b"\x10\x00\x00\x01\x00\x00\x00\x00") / bytes(eth(inner)))

    def erspan3(inner):  # GRE with sequence number, 0x22EB, 12-byte ERSPAN III header
        return eth(IP(src="10.9.9.1", dst="10.9.9.2") / GRE(seqnum_present=1, sequence_number=7,
                                                             proto=0x22EB)
                   / Raw(b"\x20\x00\x00\x01" + b"\x00" * 8) / bytes(eth(inner)))

    def teb_key(inner):
        return eth(IP(src="10.9.9.1", dst="10.9.9.2") / GRE(key_present=1, key=5, proto=0x6558)
                   / bytes(eth(inner)))

    def vxlan(inner, vlan=False):
        e = eth(Dot1Q(vlan=30) / inner) if vlan else eth(inner)
        return eth(IP(src="10.9.9.1", dst="10.9.9.2") / UDP(sport=40000, dport=4789)
                   / VXLAN(vni=100, flags=0x08) / bytes(e))

    frag2 = IP(src="192.0.2.1", dst="198.51.100.2", proto=17, frag=185) / Raw(b"z" * 100)
    icmp_err = (IP(src="203.0.113.1", dst="192.0.2.1") / ICMP(type=3, code=4, nexthopmtu=1400)
                / IPerror(src="192.0.2.1", dst="198.51.100.2") / UDPerror(sport=4500, dport=4500))
    ping = IP(src="192.0.2.1", dst="198.51.100.2") / ICMP(type=8)
    v6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    v6ike = v6 / UDP(sport=4500, dport=4500) / Raw(b"\0" * 4 + b"x" * 30)
    v6frag = v6 / IPv6ExtHdrFragment(offset=100, nh=17) / Raw(b"y" * 64)
    v6ptb = (IPv6(src="2001:db8::9", dst="2001:db8::1") / ICMPv6PacketTooBig(mtu=1280)
             / bytes(v6ike)[:60])
    v6ping = IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest()
    port7000 = (IP(src="192.0.2.1", dst="198.51.100.2") / UDP(sport=7000, dport=7000)
                / Raw(b"\x11" * 28))
    udp = IP(src="192.0.2.1", dst="198.51.100.2")
    wg = udp / UDP(sport=41000, dport=51999) / Raw(b"\x04\x00\x00\x00" + b"k" * 44)
    ovpn = udp / UDP(sport=41000, dport=1194) / Raw(b"\x38" + b"s" * 20)
    l2tp = udp / UDP(sport=1701, dport=1701) / Raw(b"\xc8\x02" + b"\x00" * 18)
    pptp_gre = IP(src="192.0.2.1", dst="198.51.100.2", proto=47) / Raw(
        b"\x30\x81\x88\x0b\x00\x10\x00\x01" + b"p" * 16)
    dtls = udp / UDP(sport=41000, dport=443) / Raw(b"\x16\xfe\xfd" + b"d" * 30)
    quic = udp / UDP(sport=41000, dport=443) / Raw(b"\xc3\x00\x00\x00\x01" + b"q" * 40)
    https = IP(src="192.0.2.1", dst="198.51.100.9") / TCP(sport=41000, dport=443)
    yes = {
        "esp": eth(esp), "ike": eth(ike), "ah": eth(IP(proto=51) / Raw(b"\x32\x04" + b"\0" * 22)),
        "ike-tcp": eth(IP() / TCP(sport=4500, dport=40000)),
        "ipv4-nonfirst-fragment": eth(frag2), "icmp-frag-needed": eth(icmp_err),
        "ipv6-nat-t": eth(v6ike), "ipv6-fragment": eth(v6frag), "icmpv6-too-big": eth(v6ptb),
        "vlan-esp": eth(Dot1Q(vlan=10) / esp), "vlan-ike": eth(Dot1Q(vlan=10) / ike),
        "erspan2-esp": erspan2(esp), "erspan2-ike": erspan2(ike), "erspan3-esp": erspan3(esp),
        "gre-teb-key-ike": teb_key(ike), "vxlan-esp": vxlan(esp),
        "vxlan-vlan-ike": vxlan(ike, True),
        "vlan-erspan2-esp": eth(Dot1Q(vlan=10, type=0x0800) / bytes(erspan2(esp))[14:]),
        "wireguard-any-port": eth(wg), "openvpn-udp": eth(ovpn), "l2tp": eth(l2tp),
        "pptp-gre": eth(pptp_gre), "dtls-443": eth(dtls), "erspan2-openvpn": erspan2(ovpn),
    }
    no = {
        "dns": eth(dns), "web": eth(web), "ping": eth(ping), "ipv6-ping": eth(v6ping),
        "vlan-dns": eth(Dot1Q(vlan=10) / dns), "erspan2-dns": erspan2(dns),
        "erspan3-web": erspan3(web), "vxlan-dns": vxlan(dns), "udp-7000": eth(port7000),
        "quic-443": eth(quic), "https": eth(https),
    }
    return ({k: bytes(v) for k, v in yes.items()}, {k: bytes(v) for k, v in no.items()},
            bytes(eth(port7000)), bytes(eth(https)))


def test_default_filter_selects_vpn_traffic():
    from pcapvpn.live.bpf import compile_filter, default_filter

    run = _bpf_run()
    prog = compile_filter(default_filter())
    assert 0 < len(prog) // 8 <= 4096  # BPF_MAXINSNS
    yes, no, port7000, https = _frames()
    missed = [k for k, f in yes.items() if not run(prog, f)]
    taken = [k for k, f in no.items() if run(prog, f)]
    assert not missed, f"VPN frames the filter drops: {missed}"
    assert not taken, f"other frames the filter keeps: {taken}"
    # --ike-port adds a port; --vpn-server names an SSL-VPN gateway (its TCP 443 is captured)
    assert run(compile_filter(default_filter(ike_ports=(7000,))), port7000)
    gw = compile_filter(default_filter(vpn_servers=[(socket.inet_aton("198.51.100.9"), None)]))
    assert run(gw, https) and not run(gw, port7000)


def test_print_filter_one_group_per_line(tmp_path):
    """--print-filter: one clause group per line under a comment naming what it catches, headed
    by libpcap's instruction count; tcpdump -F reads the text as printed and compiles the very
    program live attaches."""
    from pcapvpn.live.bpf import compile_filter, default_filter

    out = subprocess.run([sys.executable, "-m", "pcapvpn", "live", "-i", "lo", "--print-filter"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    prog = compile_filter(default_filter())
    assert f": {len(prog) // 8} BPF instructions" in lines[0]
    clauses = [i for i, x in enumerate(lines)
               if not x.lstrip().startswith("#") and x.strip() not in ("( (", ") )", "(", ")",
                                                                       "or ( vlan and (")]
    assert len(clauses) >= 30  # every group, untagged and behind a VLAN tag
    for i in clauses:
        assert lines[i - 1].lstrip().startswith("# "), lines[i]
    comments = {x.strip() for x in lines if x.lstrip().startswith("# ")}
    for what in ("IKE and NAT-T", "ESP and AH", "WireGuard", "ERSPAN type II", "VXLAN",
                 "802.1Q"):
        assert any(what in c for c in comments), what
    # the groups that are not mirror encapsulations read as short lines
    assert all(len(lines[i]) < 200 for i in clauses if "mirrored" not in lines[i - 1])
    if shutil.which("tcpdump"):
        f = tmp_path / "filter.txt"
        f.write_text(out.stdout)
        cp = subprocess.run(["tcpdump", "-ddd", "-y", "EN10MB", "-F", str(f)],
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stderr
        got = [tuple(map(int, x.split())) for x in cp.stdout.splitlines()[1:]]
        want = [struct.unpack("=HBBI", prog[k:k + 8]) for k in range(0, len(prog), 8)]
        assert got == want
    extra = subprocess.run([sys.executable, "-m", "pcapvpn", "live", "-i", "any",
                            "--print-filter", "-f", "udp port 9999"],
                           capture_output=True, text=True, timeout=60).stdout
    assert "raw IP" in extra.splitlines()[0] and "vlan" not in extra
    assert extra.rstrip().endswith("or (\nudp port 9999\n)")


def test_filter_options():
    from pcapvpn.live import LiveOptions, build_filter
    from pcapvpn.live.bpf import compile_filter, default_filter
    from pcapvpn.live.capture import CaptureError

    base = default_filter()
    assert build_filter(LiveOptions(["x"])) == base
    assert build_filter(LiveOptions(["x"], filter_expr="udp port 1701")) == \
        f"({base}) or (udp port 1701)"
    assert build_filter(LiveOptions(["x"], filter_expr="udp port 1701", replace_filter=True)) == \
        "udp port 1701"
    with pytest.raises(CaptureError, match="capture filter"):
        compile_filter("udp port nonsense-word")
    out = subprocess.run([sys.executable, "-m", "pcapvpn", "live", "-i", "lo", "--print-filter",
                          "--ike-port", "7000"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "udp port 7000" in out.stdout


# ------------------------------------------------------------------------------------------------
# the event engine over a simulated clock
# ------------------------------------------------------------------------------------------------


class FileCapture(SimCapture):
    """A capture object (see ``LiveSession._open``) handing out a file's frames up to ``now``."""

    def __init__(self, path, shift=0.0):
        from pcapvpn.sources import open_source

        self.shift = shift  # seconds added to every timestamp
        self.name = str(path)
        self.src = open_source(str(path))
        self.it = iter(self.src.frames())
        self.pending = None
        self.now = 0.0
        self.done = False

    def read(self, out, fidx, num, max_blocks=None):
        n = 0
        while True:
            if self.pending is None:
                try:
                    self.pending = next(self.it)
                except StopIteration:
                    self.done = True
                    return n
            f = self.pending
            if f[2] + self.shift > self.now:
                return n
            n += 1
            out.append((fidx, num + n, f[2] + self.shift, f[3], f[4], f[5], 0))
            self.bytes += len(f[4])
            self.pending = None


class Recorder:
    def __init__(self):
        self.events = []

    def emit(self, ev):
        self.events.append(ev)


def simulate(path, tail=5.0, step=0.5, **opts):
    """Feed ``path`` to a LiveSession with a clock that advances ``step`` seconds per
    evaluation; stop ``tail`` seconds after the last frame.  Returns (events, result, t0)."""
    from pcapvpn.live import LiveOptions, LiveSession
    from pcapvpn.sources import open_source

    src = open_source(str(path))
    t0 = next(iter(src.frames()))[2]
    src.close()
    cap = FileCapture(path)
    clock = [t0]
    rec = Recorder()
    s = LiveSession(LiveOptions(interfaces=["sim"], **opts), [rec], clock=lambda: clock[0],
                    captures=[cap])
    t = t0
    end = None
    while True:
        cap.now = clock[0] = t
        s._feed(0, cap, [])
        s._evaluate(t)
        if cap.done and end is None:
            end = s.sources[-1].last_ts
        if end is not None and t >= end + tail:
            break
        t += step
    return rec.events, s.finish(), t0, s


def _analyze_json(*paths, extra=()) -> dict:
    cp = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", "--format", "json",
                         *extra, *map(str, paths)], capture_output=True, text=True, timeout=300)
    assert cp.returncode in (0, 1), cp.stderr
    return json.loads(cp.stdout)


def _codes(findings) -> list:
    return sorted(f["code"] if isinstance(f, dict) else f.code for f in findings)


def _lab(name):
    p = LAB / name / f"{name}.pcap"
    if not p.exists():
        pytest.skip(f"lab capture {p} missing")
    return p


@pytest.mark.parametrize("timeout", [None, 5.0, 20.0])
def test_events_no_response_raised_once_when_certain(timeout):
    """"Never answered" is said once the request has waited ``response_timeout`` (the one
    threshold table of analyze and live, ``--set`` included), not at its first retransmission:
    an answer may still come."""
    from pcapvpn.thresholds import DEFAULT

    path = _lab("ikev2_no_response")
    th = DEFAULT if timeout is None else DEFAULT.with_overrides(
        {"response_timeout": str(timeout)})
    wait = th.response_timeout
    events, result, t0, _s = simulate(path, thresholds=th, tail=max(5.0, wait - 4.0))
    raised = [e for e in events if e["event"] == "raised"]
    nr = [e for e in raised if e["finding"]["code"] == "IKE_NO_RESPONSE"]
    assert len(nr) == 1, events
    # the first request is the capture's first frame; a second evaluation confirms it (0.5 s
    # steps here); the 20 s case is raised only by the final evaluation, at the stop
    assert wait <= nr[0]["ts"] - t0 <= wait + 1.5
    assert not [e for e in events if e["event"] == "resolved"]
    extra = () if timeout is None else ("--set", f"response_timeout={timeout:g}")
    assert _codes(result.findings) == _codes(_analyze_json(path, extra=extra)["findings"])


@pytest.mark.parametrize("name", ["ikev2_dpd_dead_peer", "ikev2_esp_oneway", "ikev2_healthy",
                                  "ikev1_wrong_psk", "ikev2_esp_loss", "ikev2_rekey",
                                  "ikev2_cert_ipfrag_dropped"])
def test_events_match_final_report(name):
    path = _lab(name)
    events, result, t0, _s = simulate(path)
    final = _codes(result.findings)
    assert final == _codes(_analyze_json(path)["findings"])
    raised = {e["finding"]["id"] for e in events if e["event"] == "raised"}
    resolved = {e["finding"]["id"] for e in events if e["event"] == "resolved"}
    assert resolved <= raised
    open_ids = raised - resolved
    for f in result.findings:
        assert f.id in open_ids, f"{f.code} in the report but never raised"
    assert {e["finding"]["code"] for e in events if e["event"] == "raised"} <= set(final)


def test_events_peer_restart_resolved_when_tunnel_recovers():
    events, result, t0, _s = simulate(_lab("ikev2_peer_restart"))
    by = {}
    for e in events:
        by.setdefault(e["finding"]["code"], []).append((e["event"], round(e["ts"] - t0, 1)))
    assert by["DPD_TIMEOUT"][0][0] == "raised"
    assert by["DPD_TIMEOUT"][-1][0] == "resolved"
    res = [e for e in events if e["event"] == "resolved" and e["finding"]["code"] == "DPD_TIMEOUT"]
    assert "recovered" in res[0]["reason"]
    assert res[0]["ts"] > by["DPD_TIMEOUT"][0][1] + t0
    assert [k for k, _t in by["IKE_PEER_RESTART"]] == ["raised"]


def _synthetic_oneway_then_back(path):
    """ESP both ways for 5 s, the reverse direction silent for 15 s, then back for 10 s."""
    from dissect.vpn.capture import PcapWriter

    def frame(src, dst, spi, seq):
        payload = struct.pack("!II", spi, seq) + b"\x00" * 60
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, 50, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
        return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + payload

    t0 = 1_700_000_000.0
    with open(path, "wb") as f:
        w = PcapWriter(f, 1)
        sa, sb = 1, 1
        for i in range(300):  # 10 packets/s for 30 s
            ts = t0 + i * 0.1
            w.write_packet(ts, frame("192.0.2.1", "198.51.100.2", 0x1000, sa))
            sa += 1
            if not (50 <= i < 200):
                w.write_packet(ts + 0.01, frame("198.51.100.2", "192.0.2.1", 0x2000, sb))
                sb += 1


def test_events_resolved_when_esp_returns(tmp_path):
    path = tmp_path / "oneway.pcap"
    _synthetic_oneway_then_back(path)
    events, result, t0, _s = simulate(path, tail=2.0)
    ow = [(e["event"], e["ts"] - t0, e.get("reason")) for e in events
          if e["finding"]["code"] == "ESP_ONE_WAY"]
    assert [k for k, _t, _r in ow] == ["raised", "resolved"], events
    # raised once the reverse has been silent for the one-way window (10 s after it stopped at
    # 5 s), resolved once it is back (at 20 s)
    assert 15.0 <= ow[0][1] <= 17.0
    assert 20.0 <= ow[1][1] <= 22.0
    assert ow[1][2] == "the condition cleared"


def test_events_hold_one_direction_until_window():
    """Only one gateway's ESP and no IKE: CAPTURE_ONE_DIRECTION is said at the end of a file
    with a "too soon" caveat; live waits for the one-way window."""
    import tempfile

    from dissect.vpn.capture import PcapWriter

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "one.pcap"
        with open(path, "wb") as f:
            w = PcapWriter(f, 1)
            for i in range(150):
                payload = struct.pack("!II", 0x3000, i + 1) + b"\x00" * 40
                ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, 50, 0,
                                 socket.inet_aton("192.0.2.1"), socket.inet_aton("198.51.100.2"))
                w.write_packet(1_700_000_000.0 + i * 0.1, b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
                               + ip + payload)
        events, result, t0, _s = simulate(path, tail=1.0)
    one = [e for e in events if e["finding"]["code"] == "CAPTURE_ONE_DIRECTION"]
    assert len(one) == 1 and one[0]["event"] == "raised"
    assert one[0]["ts"] - t0 >= 10.0  # one_way_window


def test_live_without_write_numbers_frames_per_interface():
    """Without --write the evidence names ``live:IFACE`` and numbers each interface's frames
    from 1 since the start: here the numbers each file has on its own (two files handed out as
    two interfaces at the same time)."""
    import jsonschema

    from pcapvpn.live import LiveOptions, LiveSession
    from pcapvpn.report import render
    from pcapvpn.sources import open_source

    p1, p2 = _lab("ikev2_esp_oneway"), _lab("ikev2_no_response")
    starts = []
    for p in (p1, p2):
        src = open_source(str(p))
        starts.append(next(iter(src.frames()))[2])
        src.close()
    t0 = starts[0]
    caps = [FileCapture(p1), FileCapture(p2, shift=t0 - starts[1])]
    clock = [t0]
    s = LiveSession(LiveOptions(interfaces=["ethA", "ethB"]), [Recorder()],
                    clock=lambda: clock[0], captures=caps)
    t = t0
    while not all(c.done for c in caps) or t < t0 + 25:
        for c in caps:
            c.now = t
        clock[0] = t
        for i, c in enumerate(caps):
            s._feed(i, c, [])
        s._evaluate(t)
        t += 0.5
    result = s.finish()
    doc = json.loads(render(result.report, "json"))
    jsonschema.validate(doc, _schema())
    assert [(f["name"], f["format"]) for f in doc["capture"]["files"]] == \
        [("live:ethA", "live"), ("live:ethB", "live")]
    for f, p in zip(doc["capture"]["files"], (p1, p2)):
        assert f["frames"] == _analyze_json(p)["capture"]["frames"]
    by_file = {"live:ethA": _analyze_json(p1), "live:ethB": _analyze_json(p2)}
    seen = set()
    for f in doc["findings"]:
        files = {x["file"] for x in f["evidence"]["frames"]}
        assert files <= set(by_file), files
        for name in files:
            want = [x["evidence"]["frames"] for x in by_file[name]["findings"]
                    if x["code"] == f["code"]]
            got = [x for x in f["evidence"]["frames"] if x["file"] == name]
            assert [{"file": x["file"].split("/")[-1], "frame": x["frame"]} for w in want
                    for x in w] == [{"file": Path(p1 if name.endswith("A") else p2).name,
                                     "frame": x["frame"]} for x in got], f["code"]
            seen.add((name, f["code"]))
    assert ("live:ethA", "ESP_ONE_WAY") in seen and ("live:ethB", "IKE_NO_RESPONSE") in seen


def test_analyze_judges_absence_up_to_the_recorded_stop(tmp_path):
    """A file whose capture ran on after its last frame says so (pcapng isb_endtime, as live
    --write and dumpcap write it): a request the capture waited response_timeout for is
    unanswered; without that record the same frame is only "not visible"."""
    from dissect.vpn.capture import PcapngWriter
    from pcapvpn.sources import open_source

    src = open_source(str(_lab("ikev2_healthy")))
    first = next(iter(src.frames()))
    src.close()
    paths = {}
    for name, ran in (("stopped", 15.0), ("plain", None)):
        p = tmp_path / f"{name}.pcapng"
        with open(p, "wb") as f:
            w = PcapngWriter(f)
            w.add_interface(first[3], "eth0", tsresol=9)
            w.write_packet(0, first[2], first[4], first[5])
            if ran is not None:
                w.write_stats(0, first[2] + ran, starttime=first[2], endtime=first[2] + ran)
        paths[name] = p
    stopped = _analyze_json(paths["stopped"])
    plain = _analyze_json(paths["plain"])
    assert "IKE_NO_RESPONSE" in _codes(stopped["findings"])
    assert stopped["capture"]["stopped"]["rel"] == 15.0
    assert "IKE_NO_RESPONSE" not in _codes(plain["findings"])
    assert plain["capture"]["stopped"] is None


def test_expiry_forgets_idle_sas_without_resolving(tmp_path):
    """Two tunnels one after the other; with a 5 s idle expiry the first one's SAs are forgotten
    while the second runs: no "resolved" for its finding, the memory bound is counted."""
    events, result, t0, s = simulate(_lab("ikev2_no_response"), tail=12.0, idle_expiry=5.0)
    assert s.tracker.expired_sas >= 1
    assert not s.tracker.ike_tracker.sas
    assert not [e for e in events if e["event"] == "resolved"]
    # the finding stays in the final report (archived) and the report says SAs were expired
    assert "IKE_NO_RESPONSE" in _codes(result.report.findings)
    assert any("expired" in w for w in result.report.capture.warnings)


def test_forked_evaluation_matches_in_process():
    """Costly evaluations run in a fork()ed child while the capture goes on: same events."""
    path = _lab("ikev2_dpd_dead_peer")
    ev_in, res_in, t0, _s = simulate(path)
    from pcapvpn.live import LiveOptions, LiveSession

    cap = FileCapture(path)
    clock = [t0]
    rec = Recorder()
    s = LiveSession(LiveOptions(interfaces=["sim"]), [rec], clock=lambda: clock[0],
                    captures=[cap])
    t = t0
    while not cap.done or t < s.sources[-1].last_ts + 5.0:
        cap.now = clock[0] = t
        s._feed(0, cap, [])
        assert s._fork_evaluation(t)
        assert s._poll_child(block=True)
        t += 0.5
    s.finish()
    strip = [(e["event"], e["finding"]["id"], round(e["ts"] - t0, 1)) for e in ev_in]
    assert [(e["event"], e["finding"]["id"], round(e["ts"] - t0, 1)) for e in rec.events] == strip
    assert s.evaluations > 10


def test_final_report_json_is_the_document():
    """The stop's JSON (issue 20: the json module's C encoder, one line per top-level field and
    per element of a top-level list, instead of the pure-Python ``indent=2``) holds exactly the
    report's document."""
    from pcapvpn.report.json import render_json

    _events, result, _t0, _s = simulate(_lab("ikev2_peer_restart"))
    doc = result.report.to_dict()
    text = render_json(result.report)
    assert json.loads(text) == json.loads(json.dumps(doc, indent=2))
    lines = text.splitlines()
    assert lines[0] == "{" and lines[-1] == "}"
    lists = [v for v in doc.values() if isinstance(v, list) and v]
    assert doc["findings"] and doc["tunnels"]
    assert len(lines) == 2 + len(doc) + sum(len(v) + 1 for v in lists)
    for f in doc["findings"]:
        assert "    " + json.dumps(f) in lines or "    " + json.dumps(f) + "," in lines


def test_vpn_udp_flows_bounded():
    """A flood of client ports to one OpenVPN server (issue 20: live memory flat under a flood):
    the tracker keeps at most ``FLOWS_PER_TUNNEL`` UDP flows per tunnel it may keep, forgets the
    oldest beyond, counts them for CAPTURE_LIMITS, and still gives every packet to its tunnel."""
    import ipaddress

    from pcapvpn.limits import Limits
    from pcapvpn.track import Tracker
    from pcapvpn.track.vpn import FLOWS_PER_TUNNEL

    from pcapvpn.thresholds import DEFAULT

    tr = Tracker(DEFAULT, [], None, [], Limits().for_live(64))
    vt = tr.vpn_tracker
    client = ipaddress.ip_address("192.0.2.1").packed
    server = ipaddress.ip_address("198.51.100.1").packed
    data = bytes([0x48, 0, 0, 1]) + b"x" * 40  # P_DATA_V2, peer id 1
    n = max(3 * FLOWS_PER_TUNNEL * vt.max_tunnels, 1100)
    for i in range(n):
        vt.udp((0, i + 1), 1000.0 + i, 4, client, server, 1024 + i, 1194, "openvpn", data, 0,
               len(data))
    (t,) = vt.tunnels.values()
    assert t.frames == n
    # live: one flow per SA it may keep (Limits.vpn_max_udp_flows), offline FLOWS_PER_TUNNEL
    assert len(vt.udp_flows) == 2 * vt.max_udp_flows == 2 * tr.limits.vpn_max_udp_flows
    assert vt.max_udp_flows <= FLOWS_PER_TUNNEL * vt.max_tunnels
    assert vt.flows_evicted == n - vt.max_udp_flows
    assert len(t.client_ports) == 1024
    hit = [h for h in tr.limits_hit() if h["bound"] == "vpn_udp_flows"]
    assert hit and hit[0]["dropped"] == vt.flows_evicted and hit[0]["limit"] == vt.max_udp_flows


def test_max_sas_evicts_least_recent():
    from pcapvpn.track import Tracker

    tr = Tracker()
    for i in range(30):
        tr.esp(("r", i), 1000.0 + i, 4, b"\xc0\x00\x02\x01", b"\xc6\x33\x64\x02", -1, -1,
               0x100 + i, 1, 100)
    ike, esp = tr.expire(1030.0, 3600.0, max_sas=20)
    assert len(esp) == 10 and tr.evicted_sas == 10 and not ike
    left = sorted(sa.spi for sa in tr.esp_tracker.all_sas())
    assert left == list(range(0x100 + 10, 0x100 + 30))
    # a packet on a removed SA starts a new SA; one on a kept SA still finds it (fast path)
    tr.esp(("r", 99), 1031.0, 4, b"\xc0\x00\x02\x01", b"\xc6\x33\x64\x02", -1, -1, 0x100 + 29, 2,
           100)
    assert len(tr.esp_tracker.all_sas()) == 20
    tr.esp(("r", 98), 1031.0, 4, b"\xc0\x00\x02\x01", b"\xc6\x33\x64\x02", -1, -1, 0x100, 5, 100)
    assert len(tr.esp_tracker.all_sas()) == 21


# ------------------------------------------------------------------------------------------------
# event outputs
# ------------------------------------------------------------------------------------------------

HOSTILE = "vid $(touch {p}) `touch {p}`; touch {p} \x1b[2J\nnext line"


def _event(title="IKE_SA_INIT to 203.0.113.10 never answered"):
    from pcapvpn.findings import Evidence, make
    from pcapvpn.live import _finding_dict
    from pcapvpn.rules import load_all

    load_all()
    f = make("IKE_NO_RESPONSE", "k", title=title, detail="d", evidence=Evidence(
        peers=["192.0.2.1:500", "203.0.113.10:500"]), tunnel="192.0.2.1<->203.0.113.10")
    return {"event": "raised", "ts": 1_700_000_000.5, "finding": _finding_dict(f)}


def test_jsonl_event_schema():
    import io

    from pcapvpn.live import JsonlEvents

    buf = io.StringIO()
    JsonlEvents(buf).emit(_event())
    JsonlEvents(buf).emit({"event": "status", "ts": 1_700_000_001.0, "status": {"pps": 1.0}})
    lines = buf.getvalue().splitlines()
    a, b = (json.loads(x) for x in lines)
    assert a["event"] == "raised" and a["time"] == "2023-11-14T22:13:20.500000Z"
    assert set(a["finding"]) >= {"id", "code", "stage", "severity", "title", "detail", "basis",
                                 "evidence", "wireshark_filter", "advice", "tunnel"}
    assert b == {"event": "status", "time": "2023-11-14T22:13:21.000000Z", "status": {"pps": 1.0}}


def test_text_events_strip_control_characters(tmp_path):
    import io

    from pcapvpn.live import TextEvents

    buf = io.StringIO()
    TextEvents(buf).emit(_event(HOSTILE.format(p=tmp_path / "x")))
    out = buf.getvalue()
    assert out.count("\n") == 1 and "\x1b" not in out and "IKE_NO_RESPONSE" in out


def test_syslog_events(tmp_path):
    from pcapvpn.live import SyslogEvents

    path = str(tmp_path / "log")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(5)
    s = SyslogEvents(path)
    s.emit(_event(HOSTILE.format(p=tmp_path / "x")))
    s.emit({"event": "status", "ts": 1.0, "status": {}})  # not copied to syslog
    line = srv.recv(4096).decode()
    s.close()
    srv.close()
    # facility daemon (3), severity err (3): <27>
    assert line.startswith("<27>") and f"pcapvpn[{os.getpid()}]: raised IKE_NO_RESPONSE" in line
    assert "\n" not in line and "\x1b" not in line


def test_exec_hook_passes_event_as_data(tmp_path):
    from pcapvpn.live import ExecHook

    marker = tmp_path / "pwned"
    out = tmp_path / "out.json"
    script = tmp_path / "hook.py"
    script.write_text(
        "import json, os, sys\n"
        "data = sys.stdin.read()\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('PCAPVPN_')}\n"
        f"open({str(out)!r}, 'w').write(json.dumps({{'stdin': data, 'env': env, "
        "'argv': sys.argv[1:]}))\n")
    title = HOSTILE.format(p=marker)
    hook = ExecHook(f"{sys.executable} {script} --fixed 'two words'")
    hook.emit(_event(title))
    hook.emit({"event": "status", "ts": 1.0, "status": {}})  # not run for status
    hook.close()
    got = json.loads(out.read_text())
    assert got["argv"] == ["--fixed", "two words"]  # split once, nothing added
    assert not marker.exists()
    assert got["env"]["PCAPVPN_TITLE"] == title
    assert got["env"]["PCAPVPN_CODE"] == "IKE_NO_RESPONSE"
    assert got["env"]["PCAPVPN_EVENT"] == "raised"
    assert got["env"]["PCAPVPN_TUNNEL"] == "192.0.2.1<->203.0.113.10"
    assert json.loads(got["stdin"])["finding"]["title"] == title
    assert json.loads(got["env"]["PCAPVPN_JSON"])["finding"]["title"] == title
    assert hook.runs == 1 and hook.failures == 0


def test_exec_hook_missing_command():
    from pcapvpn.live import CaptureError, ExecHook

    with pytest.raises(CaptureError, match="not found"):
        ExecHook("no-such-command-pcapvpn --x")
    with pytest.raises(CaptureError, match="empty"):
        ExecHook("  ")


def test_live_unknown_interface():
    cp = subprocess.run([sys.executable, "-m", "pcapvpn", "live", "-i", "nonexistent0"],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 2
    assert "interface 'nonexistent0' does not exist" in cp.stderr


# ------------------------------------------------------------------------------------------------
# end to end in a network namespace (root)
# ------------------------------------------------------------------------------------------------

_ns_counter = count(1)


def need_root():
    if os.geteuid() != 0:
        pytest.skip("live capture tests need root (network namespaces, AF_PACKET); CI runs them")
    if not shutil.which("ip"):
        (pytest.fail if CI else pytest.skip)("iproute2 (ip) is not installed")


class Netns:
    """A network namespace holding a veth pair ``va`` <-> ``vb`` (IPv6 off: no ND/MLD)."""

    def __init__(self):
        self.name = f"pvl{os.getpid() % 100000}n{next(_ns_counter)}"

    def run(self, *cmd, check=True):
        return subprocess.run(["ip", "-n", self.name, *cmd], check=check, capture_output=True,
                              text=True)

    def cmd(self, *cmd) -> list:
        return ["ip", "netns", "exec", self.name, *cmd]

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        subprocess.run(self.cmd("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                                "net.ipv6.conf.default.disable_ipv6=1"), capture_output=True)
        self.run("link", "set", "lo", "up")
        self.run("link", "add", "va", "type", "veth", "peer", "name", "vb")
        self.run("link", "set", "va", "up")
        self.run("link", "set", "vb", "up")
        return self

    def __exit__(self, *exc):
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:  # only processes inside our namespace: ours
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        return False


class Live:
    """``pcapvpn live`` running in a namespace; stdout lines are collected with arrival times."""

    def __init__(self, ns, *args, iface="va"):
        """``iface`` None: no ``-i`` (``args`` name the interfaces, e.g. with --vantage)."""
        itf = ("-i", iface) if iface is not None else ()
        self.proc = subprocess.Popen(ns.cmd(sys.executable, "-m", "pcapvpn", "live", *itf,
                                            *args),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []  # (monotonic time, line)
        self.err = []
        self._ready = threading.Event()
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._errs, daemon=True).start()
        if not self._ready.wait(30):
            self.proc.kill()
            raise AssertionError(f"live did not start: {''.join(self.err)}")

    def _out(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line))

    def _errs(self):
        for line in self.proc.stderr:
            self.err.append(line)
            if "capturing on" in line or "でキャプチャ中" in line or "error" in line:
                self._ready.set()
        self._ready.set()

    def stop(self, timeout=120, sig=signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        time.sleep(0.1)
        return rc

    def events(self) -> list:
        out = []
        for t, line in self.lines:
            line = line.strip()
            if line.startswith("{"):
                out.append((t, json.loads(line)))
        return out


def replay(ns, path, rewrap=False, iface="vb") -> float:
    """Replay ``path`` into ``iface`` of ``ns`` at its original timing; returns the monotonic
    time it finished."""
    args = [sys.executable, str(Path(__file__).resolve()), "replay", iface, str(path)]
    if rewrap:
        args.append("--rewrap")
    cp = subprocess.run(ns.cmd(*args), capture_output=True, text=True, timeout=600)
    assert cp.returncode == 0, cp.stderr
    return time.monotonic()


def _live_vs_analyze(tmp_path, path, rewrap=False, extra=(), analyze_extra=(),
                     sig=signal.SIGINT):
    """Run live --write on one end, replay ``path`` into the other, stop; return (live report,
    analyze report on the written files, jsonl events, written files)."""
    need_root()
    out = tmp_path / "w"
    report = tmp_path / "live.json"
    with Netns() as ns:
        live = Live(ns, "--write", str(out), "--events", "jsonl", "--format", "json", "-o",
                    str(report), "--quiet", *extra)
        replay(ns, path, rewrap)
        time.sleep(0.5)  # the ring hands over a partly filled block 50 ms after its first packet
        rc = live.stop(sig=sig)
    assert rc in (0, 1), "".join(live.err)
    files = sorted(out.glob("*.pcapng"))
    assert files
    return (json.loads(report.read_text()), _analyze_json(*files, extra=analyze_extra),
            live.events(), files)


LAB_REPLAY = ["ikev2_no_response", "ikev2_dpd_dead_peer", "ikev2_esp_oneway", "ikev2_healthy",
              "ikev1_wrong_psk", "ikev2_esp_loss", "ikev2_cert_ipfrag_ok", "ikev2_cookie",
              "ikev2_nat", "openvpn_udp_healthy", "openvpn_udp_bad_client_cert",
              "openvpn_udp_tlscrypt_mismatch", "openvpn_tcp_tlscrypt_healthy"]
#: extra options per scenario (live and analyze): OpenVPN on TCP 443 is captured for a named
#: gateway only (a mirror port's HTTPS is not captured by default)
LAB_EXTRA = {"openvpn_tcp_tlscrypt_healthy": ("--vpn-server", "198.51.100.2")}


def _cited(report) -> list:
    """Each finding's code and evidence frames (file, number), in a stable order."""
    return sorted((f["code"], f["id"], [(x["file"], x["frame"]) for x in f["evidence"]["frames"]])
                  for f in report["findings"])


def _compare(live_r, ana, events, original=None):
    assert _codes(live_r["findings"]) == _codes(ana["findings"])
    # the frame numbers live cites are those of its --write files (Wireshark's numbering)
    assert _cited(live_r) == _cited(ana)
    assert sorted((t["id"], t["verdict"]) for t in live_r["tunnels"]) == \
        sorted((t["id"], t["verdict"]) for t in ana["tunnels"])
    if original is not None:
        # a replay re-times the packets: the senders' own clocks (OpenVPN net time) then differ
        # from the capture's by the time since the lab run, which the replay rightly reports
        replayed = {"OPENVPN_CLOCK_SKEW"}
        assert [c for c in _codes(live_r["findings"]) if c not in replayed] == \
            [c for c in _codes(original["findings"]) if c not in replayed]
        assert sorted(t["id"] for t in live_r["tunnels"]) == \
            sorted(t["id"] for t in original["tunnels"])
    raised = {e["finding"]["id"] for _t, e in events if e["event"] == "raised"}
    resolved = {e["finding"]["id"] for _t, e in events if e["event"] == "resolved"}
    for f in live_r["findings"]:
        recovered = bool(f.get("recovered"))
        assert (f["id"] in raised - resolved) or recovered, f"{f['code']} never raised"


@pytest.fixture(scope="module")
def lab_replays(tmp_path_factory):
    """All LAB_REPLAY scenarios, each in its own namespace, replayed at the same time (their
    original timing takes about a minute in all; run one after the other it would be that sum)."""
    from concurrent.futures import ThreadPoolExecutor

    need_root()

    def one(name):
        path = LAB / name / f"{name}.pcap"
        if not path.exists():
            return name, None
        extra = LAB_EXTRA.get(name, ())
        try:
            return name, (_live_vs_analyze(tmp_path_factory.mktemp(name), path, extra=extra,
                                           analyze_extra=extra),
                          _analyze_json(path, extra=extra))
        except BaseException as e:  # noqa: BLE001 - reported by the scenario's test
            return name, e

    with ThreadPoolExecutor(len(LAB_REPLAY)) as ex:
        return dict(ex.map(one, LAB_REPLAY))


def _schema():
    return json.loads((ROOT / "docs" / "schema.json").read_text())


def _validate_events(events):
    import jsonschema

    schema = _schema()
    finding = {"$ref": "#/$defs/finding", "$defs": schema["$defs"]}
    for _t, e in events:
        assert e["event"] in ("raised", "resolved", "status")
        if e["event"] != "status":
            jsonschema.validate(e["finding"], finding)


@pytest.mark.root
@pytest.mark.parametrize("name", LAB_REPLAY)
def test_live_replay_lab_matches_analyze(lab_replays, name):
    import jsonschema

    got = lab_replays[name]
    if got is None:
        pytest.skip(f"lab capture {name} missing")
    if isinstance(got, BaseException):
        raise got
    (live_r, ana, events, files), original = got
    _compare(live_r, ana, events, original)
    jsonschema.validate(live_r, _schema())  # the final report is analyze's JSON
    _validate_events(events)
    # the evidence frames name the written files
    names = {f["file"] for x in live_r["findings"] for f in x["evidence"]["frames"]}
    assert names <= {str(p) for p in files}
    assert live_r["capture"]["drops"] == {"if_drop": 0, "os_drop": 0}


#: report options given to both live and analyze of its written files: each set gives the same
#: report, byte for byte, and the same exported evidence
REPORT_OPTIONS = {
    "text-ja-threshold": ("--format", "text", "--lang", "ja", "--set", "response_timeout=7",
                          "--set", "one_way_window=6"),
    "html-redacted": ("--format", "html", "--redact", "--redact-key", "{key}"),
    "markdown-redacted-ja": ("--format", "markdown", "--lang", "ja", "--redact", "--redact-key",
                             "{key}", "--min-severity", "warning"),
    "json-evidence": ("--format", "json", "--export-evidence", "{ev}", "--fail-on", "warning"),
    "text-redacted-evidence": ("--format", "text", "--redact", "--redact-key", "{key}",
                               "--export-evidence", "{ev}", "--peer", "{peer}"),
}


@pytest.mark.root
@pytest.mark.parametrize("opts", sorted(REPORT_OPTIONS))
def test_live_report_options_match_analyze(tmp_path, opts):
    """live's final report honours every report option as analyze does: the same bytes as
    analyze of the written files with the same options, the same exported evidence frames
    (with their comments), the same exit status."""
    need_root()
    path = _lab("ikev2_esp_oneway")
    key = tmp_path / "redact.key"
    key.write_text("5f" * 32 + "\n")  # one key for both runs: the same pseudonyms
    sub = {"key": str(key), "peer": "192.0.2.2"}
    w = tmp_path / "w"

    def args(kind):
        return [a.format(ev=str(tmp_path / f"{kind}.pcapng"), **sub)
                for a in REPORT_OPTIONS[opts]]

    live_out = tmp_path / "live.out"
    with Netns() as ns:
        live = Live(ns, "--write", str(w), "--events", "none", "--quiet", "-o", str(live_out),
                    *args("live"))
        replay(ns, path)
        time.sleep(0.5)
        rc_live = live.stop()
    files = sorted(w.glob("*.pcapng"))
    assert files and rc_live in (0, 1), "".join(live.err)
    assert "".join(live.err).count("pcapvpn: wrote" if "ja" not in opts
                                   else "pcapvpn: 書き出しました") == 1
    ana_out = tmp_path / "analyze.out"
    cp = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", *map(str, files), "-o",
                         str(ana_out), *args("analyze")], capture_output=True, text=True,
                        timeout=300)
    assert cp.returncode == rc_live, cp.stderr
    assert live_out.read_text() == ana_out.read_text()
    if "--redact" in REPORT_OPTIONS[opts]:
        import re

        from pcapvpn.redact import Redactor, load_key

        pseudo = Redactor(load_key(str(key)), hosts=[]).ip_text("192.0.2.2")
        assert pseudo != "192.0.2.2" and pseudo in live_out.read_text()
        assert not re.search(r"(?<![\d.])192\.0\.2\.2(?!\d)", live_out.read_text())
    if "--export-evidence" in REPORT_OPTIONS[opts]:
        from conftest import tshark_fields

        cols = ["frame.comment", "ip.src", "ip.dst", "frame.len"]
        got = tshark_fields(tmp_path / "live.pcapng", cols)
        assert got and got == tshark_fields(tmp_path / "analyze.pcapng", cols)


@pytest.mark.root
def test_live_replay_rewrapped_capture(tmp_path):
    """A BSD-loopback capture (tcpdump's ikev2four.pcap) re-wrapped as Ethernet with its
    addresses rewritten into 10.77.0.0/24."""
    path = ROOT / "captures" / "public" / "tcpdump" / "ikev2four.pcap"
    live_r, ana, events, files = _live_vs_analyze(tmp_path, path, rewrap=True)
    _compare(live_r, ana, events)
    assert live_r["capture"]["frames"] == 21
    assert all(t["a"].startswith("10.77.0.") for t in live_r["tunnels"])
    orig = _analyze_json(path)
    assert _codes(live_r["findings"]) == _codes(orig["findings"])


@pytest.mark.root
def test_live_replay_corpus_esp(tmp_path):
    from conftest import corpus_dir

    path = corpus_dir() / "tcpdump" / "08-sunrise-sunset-esp2.pcap"
    if not path.exists():
        pytest.skip(f"{path} not in the corpus")
    live_r, ana, events, files = _live_vs_analyze(tmp_path, path, rewrap=True)
    _compare(live_r, ana, events)
    assert live_r["capture"]["counts"]["esp"] == _analyze_json(path)["capture"]["counts"]["esp"]


@pytest.mark.root
def test_live_jsonl_events_arrive_while_capturing(tmp_path):
    need_root()
    path = _lab("ikev2_no_response")
    with Netns() as ns:
        live = Live(ns, "--events", "jsonl", "--format", "json", "-o", str(tmp_path / "r.json"),
                    "--status-interval", "1", "--set", "response_timeout=4")
        start = time.monotonic()
        end = replay(ns, path)
        seen_before_end = [e for t, e in live.events() if t < end]
        live.stop()
    kinds = [e["event"] for e in seen_before_end]
    assert "status" in kinds
    nr = [(t, e) for t, e in live.events() if e["event"] == "raised"
          and e["finding"]["code"] == "IKE_NO_RESPONSE"]
    assert nr and nr[0][0] < end, "IKE_NO_RESPONSE arrived only after the replay ended"
    # said once the request waited the response timeout (--set: 4 s), not at its first
    # retransmission (+2 s) and not only at the end (9.5 s)
    assert 4.0 <= nr[0][0] - start < 8.0
    status = [e for e in seen_before_end if e["event"] == "status"][-1]["status"]
    assert status["interfaces"] == ["va"] and status["drops"]["ring"] == 0


@pytest.mark.root
def test_live_event_reader_that_stops_reading(tmp_path):
    """Nobody reads the jsonl stream (a full pipe): the capture goes on, the events wait in a
    queue and come out when the reader comes back."""
    need_root()
    path = _lab("ikev2_esp_loss")
    report = tmp_path / "r.json"
    with Netns() as ns:
        proc = subprocess.Popen(ns.cmd(sys.executable, "-m", "pcapvpn", "live", "-i", "va",
                                       "--events", "jsonl", "--status-interval", "0.02",
                                       "--format", "json", "-o", str(report)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(4)  # started; status events (about 1 KB, 50/s) fill the 64 KiB pipe
        replay(ns, path)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 1), err.decode()[-2000:]
    lines = out.decode().splitlines()
    assert len(out) > 65536  # more than a pipe holds (64 KiB): the writer had to wait
    assert all(json.loads(x)["event"] for x in lines)
    r = json.loads(report.read_text())
    orig = _analyze_json(path)["capture"]
    assert r["capture"]["frames"] == orig["frames"] - orig["counts"]["non_ip_frames"]


@pytest.mark.root
def test_live_write_rotation(tmp_path):
    need_root()
    path = _lab("ikev2_esp_loss")  # 588 frames, ~100 KB
    live_r, ana, events, files = _live_vs_analyze(
        tmp_path, path, extra=("--write-size", "0.02", "--write-files", "3"),
        sig=signal.SIGTERM)  # SIGTERM stops as cleanly as SIGINT
    assert len(files) == 3  # rotated, the oldest deleted
    assert any("deleted by rotation" in w for w in live_r["capture"]["warnings"])
    orig = _analyze_json(path)["capture"]
    vpn_frames = orig["frames"] - orig["counts"]["non_ip_frames"]  # the lab's ARP is filtered
    assert sum(f["frames"] for f in ana["capture"]["files"]) < vpn_frames
    assert live_r["capture"]["frames"] == vpn_frames


@pytest.mark.root
def test_live_reports_kernel_drops(tmp_path):
    """A stopped consumer (SIGSTOP) and a 4 MiB ring: the kernel drops; the report says so and
    the absence findings mention it."""
    need_root()
    sender = tmp_path / "flood.py"
    sender.write_text(
        "import socket, struct\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('vb', 0))\n"
        "for i in range(20000):\n"
        "    p = struct.pack('!II', 0x4000, i + 1) + bytes(1000)\n"
        "    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(p), 0, 0, 64, 50, 0,\n"
        "                     bytes([192, 0, 2, 1]), bytes([198, 51, 100, 2]))\n"
        "    s.send(b'\\x02' * 6 + b'\\x04' * 6 + b'\\x08\\x00' + ip + p)\n")
    report = tmp_path / "r.json"
    with Netns() as ns:
        live = Live(ns, "--buffer", "4", "--quiet", "--events", "jsonl", "--format", "json",
                    "-o", str(report))
        os.kill(live.proc.pid, signal.SIGSTOP)  # ip netns exec execs: this is the python
        try:
            subprocess.run(ns.cmd(sys.executable, str(sender)), check=True, timeout=120)
        finally:
            os.kill(live.proc.pid, signal.SIGCONT)
        time.sleep(1.5)
        live.stop()
    r = json.loads(report.read_text())
    assert r["capture"]["drops"]["os_drop"] > 0
    assert r["capture"]["frames"] + r["capture"]["drops"]["os_drop"] == 20000
    codes = _codes(r["findings"])
    assert "CAPTURE_DROPS" in codes
    for f in r["findings"]:
        if f["code"] in ("ESP_ONE_WAY", "CAPTURE_ONE_DIRECTION", "ESP_SEQUENCE_GAP"):
            assert "dropped" in f["detail"]


@pytest.mark.root
def test_live_without_cap_net_raw():
    need_root()
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) missing")
    cp = subprocess.run(["setpriv", "--bounding-set", "-net_raw,-net_admin", "--inh-caps",
                         "-all", sys.executable, "-m", "pcapvpn", "live", "-i", "lo"],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 2, cp.stderr
    assert "CAP_NET_RAW" in cp.stderr and "Traceback" not in cp.stderr


# ------------------------------------------------------------------------------------------------
# real strongSwan from the lab, captured live
# ------------------------------------------------------------------------------------------------

_LAB_HOOK = r"""
import signal, subprocess, sys, time
from pathlib import Path
import vpnlab.net as net
from vpnlab.__main__ import main

out = Path(sys.argv[1]); scenario = sys.argv[2]
orig_capture, orig_stop = net.Topology.capture, net.Topology.stop_capture
lives = {}

def capture(self, dev, path, ns=None):
    proc = orig_capture(self, dev, path, ns)
    d = out / f"live-{dev}"
    d.mkdir(parents=True, exist_ok=True)
    err = open(d / "stderr", "w")
    p = subprocess.Popen(self.ns_cmd(ns or self.mid, sys.executable, "-m", "pcapvpn", "live",
                                     "-i", dev, "--write", str(d / "pcap"), "--events", "jsonl",
                                     "--format", "json", "-o", str(d / "report.json")),
                         stdout=open(d / "events.jsonl", "w"), stderr=err)
    for _ in range(300):
        if "capturing on" in (d / "stderr").read_text():
            break
        time.sleep(0.1)
    lives[id(proc)] = p
    return proc

def stop_capture(self, proc):
    orig_stop(self, proc)
    p = lives.pop(id(proc), None)
    if p is not None:
        p.send_signal(signal.SIGINT)
        p.wait(60)

net.Topology.capture = capture
net.Topology.stop_capture = stop_capture
sys.exit(main([scenario, "--out", str(out / "lab"), "--no-verify"]))
"""


@pytest.mark.root
def test_live_strongswan_lab(tmp_path):
    """The lab's ikev2_dpd_dead_peer with real charon daemons; pcapvpn live runs beside the
    lab's tcpdump on the router: DPD_TIMEOUT is raised while the lab still runs, and live's
    report matches analyze on live's files and on the lab's own capture."""
    need_root()
    sys.path.insert(0, str(LAB))
    try:
        from vpnlab.__main__ import DEBIAN_PACKAGES, missing_dependencies
    finally:
        sys.path.remove(str(LAB))
    miss = missing_dependencies()
    if miss:
        msg = (f"lab dependencies missing: {', '.join(miss)} (apt-get install -y "
               f"--no-install-recommends {DEBIAN_PACKAGES})")
        (pytest.fail if CI else pytest.skip)(msg)
    if not Path("/dev/net/tun").exists():
        (pytest.fail if CI else pytest.skip)("/dev/net/tun missing (kernel-libipsec needs it)")
    scenario = "ikev2_dpd_dead_peer"
    env = dict(os.environ, PYTHONPATH=str(LAB), VPNLAB_NO_SAVE_KEYS="1")
    cp = subprocess.run([sys.executable, "-c", _LAB_HOOK, str(tmp_path), scenario],
                        capture_output=True, text=True, timeout=600, env=env)
    assert cp.returncode == 0, cp.stderr[-4000:]
    d = tmp_path / "live-m-l"  # this scenario records on m-l (the router drops on the path)
    if not d.exists():
        d = tmp_path / "live-m-r"
    live_r = json.loads((d / "report.json").read_text())
    files = sorted((d / "pcap").glob("*.pcapng"))
    lab_cap = next((tmp_path / "lab" / scenario).glob(f"{scenario}.pcap"))
    events = [json.loads(x) for x in (d / "events.jsonl").read_text().splitlines()
              if x.startswith("{")]
    ana = _analyze_json(*files)
    assert _codes(live_r["findings"]) == _codes(ana["findings"])
    assert "DPD_TIMEOUT" in _codes(live_r["findings"])
    assert _codes(live_r["findings"]) == _codes(_analyze_json(lab_cap)["findings"])
    raised = [e for e in events if e["event"] == "raised"
              and e["finding"]["code"] == "DPD_TIMEOUT"]
    assert raised, events
    assert live_r["capture"]["drops"]["os_drop"] == 0


# ------------------------------------------------------------------------------------------------
# the replayer (run inside the namespace: python tests/live/test_live.py replay IFACE FILE [--rewrap])
# ------------------------------------------------------------------------------------------------

def _checksum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _rewrap(linktype, data, addrs):
    """Ethernet + the frame's IP packet with addresses mapped into 10.77.0.0/24 / fd00:77::/64
    (first seen, first numbered); None for frames without IP."""
    from dissect.vpn.link import decode_frame

    r = decode_frame(linktype, data)
    if r is None:
        return None
    ipver, src, dst = r[0], r[1], r[2]
    hdr = r[11]
    pkt = bytearray(data[hdr:])

    def mapped(a):
        if a not in addrs:
            n = sum(1 for k in addrs if len(k) == len(a)) + 1
            addrs[a] = bytes([10, 77, 0, n]) if len(a) == 4 else \
                bytes.fromhex("fd000077000000000000000000000000")[:14] + struct.pack("!H", n)
        return addrs[a]

    if ipver == 4:
        ihl = (pkt[0] & 0x0F) * 4
        pkt[12:16] = mapped(src)
        pkt[16:20] = mapped(dst)
        pkt[10:12] = b"\0\0"
        pkt[10:12] = struct.pack("!H", _checksum(bytes(pkt[:ihl])))
        et = b"\x08\x00"
    else:
        pkt[8:24] = mapped(src)
        pkt[24:40] = mapped(dst)
        et = b"\x86\xdd"
    return b"\x02\x00\x00\x77\x00\x02\x02\x00\x00\x77\x00\x01" + et + bytes(pkt)


def paced(items):
    """``items`` (tuples whose first field is a capture time stamp) yielded at the original
    timing, from the first one on."""
    t0 = w0 = None
    for it in items:
        if t0 is None:
            t0, w0 = it[0], time.monotonic()
        d = w0 + (it[0] - t0) - time.monotonic()
        if d > 0:
            time.sleep(d)
        yield it


def _replay_main(argv):
    from pcapvpn.sources import open_source

    iface, path = argv[0], argv[1]
    rewrap = "--rewrap" in argv
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    src = open_source(path)
    addrs = {}

    def frames():
        for f in src.frames():
            data = f[4]
            if rewrap:
                data = _rewrap(f[3], data, addrs)
                if data is None:
                    continue
            yield f[2], data

    sent = 0
    for _ts, data in paced(frames()):
        s.send(data)
        sent += 1
    print(f"replayed {sent} frames", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "replay":
        _replay_main(sys.argv[2:])
