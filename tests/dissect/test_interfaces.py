"""Interface identity per frame (issue 15, the readers' part): pcapng interfaces (IDB index over
all sections, if_name, if_description), Linux cooked captures (SLL2 interface index, SLL / SLL2
packet type), counts of frames per interface in the report; against tshark, on built captures and
on real ones taken here (tcpdump -i any, dumpcap on two interfaces) in network namespaces."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import time
from collections import Counter
from itertools import count

import jsonschema
import pytest

from conftest import CAPTURES, IN_CI, REPO, tshark_path
from dissect.vpn.capture import PcapngWriter, PcapWriter
from dissect.vpn.link import PACKET_TYPES, cooked_info
from pcapvpn.analysis import Options, run
from pcapvpn.report import render
from pcapvpn.sources import open_source

SCHEMA = json.loads((REPO / "docs" / "schema.json").read_text())
ESP_LOSS = CAPTURES / "lab" / "ikev2_esp_loss" / "ikev2_esp_loss.pcap"


def tshark_rows(path, *fields):
    r = subprocess.run([tshark_path(), "-n", "-r", str(path), "-T", "fields", "-E",
                        "separator=\t", *sum((["-e", f] for f in fields), [])],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return [line.split("\t") for line in r.stdout.splitlines()]


def lab_frames(n=None):
    src = open_source(str(ESP_LOSS))
    out = [(f[2], f[4]) for f in src.frames()]
    return out[:n] if n else out


def two_sections(path):
    """Section 1: eth0 (Ethernet, "uplink") and tun0 (raw IP, "VPN tunnel"), packets alternating
    in runs; section 2: wg0 (raw IP).  Returns the interface (global index) of every frame."""
    f = io.BytesIO()
    w = PcapngWriter(f)
    eth0 = w.add_interface(1, "eth0", tsresol=6, description="uplink")
    tun0 = w.add_interface(101, "tun0", tsresol=6, description="VPN tunnel")
    want = []
    for i, (ts, data) in enumerate(lab_frames(300)):
        if (i // 7) % 3 == 2:
            w.write_packet(tun0, ts, data[14:])  # the IP packet without its Ethernet header
            want.append(1)
        else:
            w.write_packet(eth0, ts, data)
            want.append(0)
    w2 = PcapngWriter(f)
    wg0 = w2.add_interface(101, "wg0", tsresol=9)
    for ts, data in lab_frames()[300:400]:
        w2.write_packet(wg0, ts, data[14:])
        want.append(2)
    path.write_bytes(f.getvalue())
    return want


@pytest.mark.parametrize("batch", [True, False])
def test_pcapng_interface_per_frame_and_counts(tmp_path, batch):
    path = tmp_path / "ifaces.pcapng"
    want = two_sections(path)
    src = open_source(str(path))
    got = [f[7] for f in src.frames(interfaces=True)]
    assert got == want
    assert src.interface_frames == dict(Counter(want))
    names = [i.name for i in src.interfaces]
    assert names == ["eth0", "tun0", "wg0"]
    assert [i.description for i in src.interfaces] == ["uplink", "VPN tunnel", None]
    # Wireshark's frame.interface_id / _name / _description, frame by frame, in the first
    # section; in the second one tshark 4.0 gives the section's own IDB index (0) and the first
    # section's interface 0 names ("eth0", "uplink"): its interface numbering is per section
    rows = tshark_rows(path, "frame.interface_id", "frame.interface_name",
                       "frame.interface_description")
    first = want.index(2)
    assert [(int(a), b, c or None) for a, b, c in rows[:first]] == \
        [(g, names[g], src.interfaces[g].description) for g in got[:first]]
    assert {int(r[0]) for r in rows[first:]} == {0}
    assert src.interfaces[2].section == 1
    rep = run([str(path)], Options(batch=batch)).report
    itfs = rep.capture.files[0].interfaces
    assert [(i.index, i.name, i.description, i.frames, i.section, i.idb) for i in itfs] == \
        [(0, "eth0", "uplink", want.count(0), 0, 0),
         (1, "tun0", "VPN tunnel", want.count(1), 0, 1),
         (2, "wg0", None, want.count(2), 1, 0)]
    doc = rep.to_dict()
    jsonschema.validate(doc, SCHEMA)
    assert all("cooked" not in i for i in doc["capture"]["files"][0]["interfaces"])
    text = render(rep, "text")
    assert (f"eth0 (ETHERNET, uplink): {want.count(0)} frames; tun0 (RAW, VPN tunnel): "
            f"{want.count(1)} frames; wg0 (RAW): 100 frames") in text


def cooked_pcap(path, linktype):
    """A Linux cooked capture made from the lab's Ethernet frames: SLL2 with interface indexes
    2 and 5, packet types host / outgoing / broadcast; SLL with packet types only."""
    f = io.BytesIO()
    w = PcapWriter(f, linktype)
    want = []
    for i, (ts, data) in enumerate(lab_frames(200)):
        eth_type = data[12:14]
        ptype = (0, 4, 1)[i % 3]
        ifindex = 2 if (i // 10) % 2 else 5
        if linktype == 276:
            hdr = eth_type + b"\0\0" + struct.pack("!IHBB", ifindex, 1, ptype, 6) + \
                data[6:12] + b"\0\0"
            want.append((ifindex, ptype))
        else:
            hdr = struct.pack("!HHH", ptype, 1, 6) + data[6:12] + b"\0\0" + eth_type
            want.append((None, ptype))
        w.write_packet(ts, hdr + data[14:])
    path.write_bytes(f.getvalue())
    return want


@pytest.mark.parametrize("linktype", [276, 113])
def test_cooked_interface_index_and_packet_type(tmp_path, linktype):
    path = tmp_path / f"cooked{linktype}.pcap"
    want = cooked_pcap(path, linktype)
    src = open_source(str(path))
    frames = list(src.frames(interfaces=True))
    assert [cooked_info(f[3], f[4]) for f in frames] == want
    assert src.cooked == {(0, k, t): n for (k, t), n in Counter(want).items()}
    rows = tshark_rows(path, "sll.ifindex", "sll.pkttype")
    assert [(int(a) if a else None, int(b)) for a, b in rows] == want
    for batch in (True, False):
        rep = run([str(path)], Options(batch=batch)).report
        (itf,) = rep.capture.files[0].interfaces
        assert itf.frames == 200
        per = Counter(k for k, _t in want)
        assert [(c["ifindex"], c["frames"]) for c in itf.cooked] == sorted(
            per.items(), key=lambda kv: (kv[0] is not None, kv[0] or 0))
        for c in itf.cooked:
            assert c["packet_types"] == dict(sorted(Counter(
                PACKET_TYPES[t] for k, t in want if k == c["ifindex"]).items()))
        jsonschema.validate(rep.to_dict(), SCHEMA)
    # the analysis of the cooked frames is that of the Ethernet frames they were made from
    f = io.BytesIO()
    w = PcapWriter(f, 1)
    for ts, data in lab_frames(200):
        w.write_packet(ts, data)
    eth = tmp_path / "eth.pcap"
    eth.write_bytes(f.getvalue())
    base = run([str(eth)]).report
    assert sorted((f.code, f.title) for f in rep.findings) == \
        sorted((f.code, f.title) for f in base.findings)
    assert [(t["id"], t["verdict"]) for t in rep.tunnels] == \
        [(t["id"], t["verdict"]) for t in base.tunnels]


# -- real captures taken here (root: network namespaces) --------------------------------------

_ns = count(1)


def _need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, capturing); CI runs it")
    for tool in ("ip", "tcpdump", "dumpcap", "ping"):
        if not shutil.which(tool):
            (pytest.fail if IN_CI else pytest.skip)(f"{tool} is not installed")


class _Pair:
    """Two network namespaces joined by a veth pair: a (10.77.0.1, va) <-> b (10.77.0.2, vb)."""

    def __init__(self):
        base = f"pvi{os.getpid() % 100000}n{next(_ns)}"
        self.a, self.b = base + "a", base + "b"

    def ns(self, name, *cmd):
        return ["ip", "netns", "exec", name, *cmd]

    def __enter__(self):
        for n in (self.a, self.b):
            subprocess.run(["ip", "netns", "add", n], check=True, capture_output=True)
            subprocess.run(["ip", "-n", n, "link", "set", "lo", "up"], check=True)
            subprocess.run(self.ns(n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"),
                           capture_output=True)
        subprocess.run(["ip", "-n", self.a, "link", "add", "va", "type", "veth", "peer", "name",
                        "vb", "netns", self.b], check=True)
        for n, dev, addr in ((self.a, "va", "10.77.0.1/24"), (self.b, "vb", "10.77.0.2/24")):
            subprocess.run(["ip", "-n", n, "addr", "add", addr, "dev", dev], check=True)
            subprocess.run(["ip", "-n", n, "link", "set", dev, "up"], check=True)
        return self

    def __exit__(self, *exc):
        for n in (self.a, self.b):
            for pid in subprocess.run(["ip", "netns", "pids", n], capture_output=True,
                                      text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)  # processes in our namespaces only
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        return False

    def capture(self, cmd, ready, traffic):
        """Run the capture ``cmd`` in namespace a until it says ``ready``, run ``traffic``,
        stop it (SIGINT) and wait."""
        p = subprocess.Popen(self.ns(self.a, *cmd), stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True)
        t0 = time.monotonic()
        err = ""
        while ready not in err and time.monotonic() - t0 < 20:
            err += p.stderr.readline()
        assert ready in err, err
        for c in traffic:
            subprocess.run(self.ns(self.a, *c), capture_output=True, timeout=30)
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=20)


def _traffic():
    return [["ping", "-c", "3", "-i", "0.2", "10.77.0.2"],
            ["ping", "-c", "2", "-i", "0.2", "127.0.0.1"]]


def test_real_tcpdump_any_sll2_and_sll(tmp_path):
    _need_root()
    for linktype, name in ((276, "LINUX_SLL2"), (113, "LINUX_SLL")):
        path = tmp_path / f"any-{linktype}.pcap"
        with _Pair() as pair:
            # -Z root: tcpdump keeps root to write into the (root-only) test directory;
            # --immediate-mode: each packet when it arrives (not when a ring block is full)
            pair.capture(["tcpdump", "-i", "any", "-y", name, "--immediate-mode", "-U", "-n",
                          "-Z", "root", "-w", str(path)], "listening on", _traffic())
        src = open_source(str(path))
        frames = list(src.frames(interfaces=True))
        assert len(frames) >= 10
        ours = [cooked_info(f[3], f[4]) for f in frames]
        rows = tshark_rows(path, "sll.ifindex", "sll.pkttype")
        assert [(int(a) if a else None, int(b)) for a, b in rows] == ours
        types = {PACKET_TYPES[t] for _k, t in ours}
        assert {"host", "outgoing"} <= types
        if linktype == 276:
            assert len({k for k, _t in ours}) >= 2  # lo and va
        rep = run([str(path)]).report
        (itf,) = rep.capture.files[0].interfaces
        assert sum(c["frames"] for c in itf.cooked) == itf.frames == len(frames)
        assert "interfaces" in render(rep, "text")


def test_real_dumpcap_two_interfaces(tmp_path):
    _need_root()
    path = tmp_path / "two.pcapng"
    with _Pair() as pair:
        pair.capture(["dumpcap", "-q", "-i", "va", "-i", "lo", "-w", str(path)],
                     "Capturing on", _traffic())
    src = open_source(str(path))
    got = [f[7] for f in src.frames(interfaces=True)]
    rows = tshark_rows(path, "frame.interface_id", "frame.interface_name")
    names = [i.name for i in src.interfaces]
    assert [(int(a), b) for a, b in rows] == [(g, names[g]) for g in got]
    assert set(names) == {"va", "lo"} and len(set(got)) == 2
    for batch in (True, False):
        rep = run([str(path)], Options(batch=batch)).report
        itfs = rep.capture.files[0].interfaces
        assert {i.name: i.frames for i in itfs} == {names[g]: n for g, n in
                                                     Counter(got).items()}
