"""The ``--vantage`` hint (issue 16, SEVERAL_CAPTURE_POINTS) beyond two files sharing IKE:
two plain files whose ESP (SPI, sequence number) coincide at a steady offset with no IKE in
common, and two interfaces of one file (pcapng IDBs) seeing the same packets at a steady delay.
A tunnel interface is an inside view of its tunnel: never hinted."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import REPO, tshark_path
from pcapvpn.analysis import Options, run

LAB = REPO / "captures" / "lab"


def _hints(res):
    return [f for f in res.report.findings if f.code == "SEVERAL_CAPTURE_POINTS"]


def _without_ike(tmp_path, src, name, shift=0.0):
    """A copy of ``src`` without its IKE (as if the capture began after the IKE SA was up),
    its clock shifted by ``shift`` seconds (editcap)."""
    tshark = tshark_path()
    cp = subprocess.run([tshark, "-r", str(src), "-Y", "isakmp || udp.port == 500", "-T",
                         "fields", "-e", "frame.number"], capture_output=True, text=True,
                        check=True)
    out = tmp_path / name
    editcap = shutil.which("editcap") or pytest.fail("editcap (Wireshark) is not installed")
    subprocess.run([editcap, "-F", "pcap", "-t", str(shift), str(src), str(out), *cp.stdout.split()],
                   check=True, capture_output=True)
    return out


def test_esp_only_files_suggest_vantage(tmp_path):
    """ikev2_path_esp_loss, both gateways' captures without any IKE, one clock 2.75 s ahead:
    the same ESP (SPI, sequence number) in both files at a steady offset."""
    d = LAB / "ikev2_path_esp_loss"
    a = _without_ike(tmp_path, d / "ikev2_path_esp_loss-gw-left.pcap", "a.pcap")
    b = _without_ike(tmp_path, d / "ikev2_path_esp_loss-gw-right.pcap", "b.pcap", 2.75)
    res = run([str(a), str(b)])
    hs = _hints(res)
    assert len(hs) == 1, [f.code for f in res.report.findings]
    assert "ESP packets" in hs[0].detail and "+2.75" in hs[0].detail
    assert hs[0].wireshark_filter == "esp"


def test_esp_pieces_of_one_point_no_hint(tmp_path):
    """The same capture cut in two pieces (no packet in both): no hint."""
    import struct

    src = _without_ike(tmp_path, LAB / "ikev2_path_esp_loss" / "ikev2_path_esp_loss-gw-left.pcap",
                       "x.pcap")
    data = src.read_bytes()
    recs = []
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        recs.append(data[off:off + 16 + incl])
        off += 16 + incl
    half = len(recs) // 2
    (tmp_path / "1.pcap").write_bytes(data[:24] + b"".join(recs[:half]))
    (tmp_path / "2.pcap").write_bytes(data[:24] + b"".join(recs[half:]))
    res = run([str(tmp_path / "1.pcap"), str(tmp_path / "2.pcap")])
    assert not _hints(res)


def _box(tmp_path, names):
    """One pcapng file with the router's inside and outside captures of ikev2_path_esp_oneway
    as two interfaces named ``names``."""
    from dissect.vpn.capture import PcapngWriter, open_capture

    d = LAB / "ikev2_path_esp_oneway"
    recs = []
    for k, name in enumerate(("router-in", "router-out")):
        with open(d / f"ikev2_path_esp_oneway-{name}.pcap", "rb") as f:
            r = open_capture(f)
            for ts, lt, data, wl, _off, _if in r.records():
                recs.append((ts, k, lt, bytes(data), wl))
    recs.sort(key=lambda r: (r[0], r[1]))
    out = tmp_path / "box.pcapng"
    with open(out, "wb") as f:
        w = PcapngWriter(f)
        ids = [w.add_interface(recs[0][2], name=n) for n in names]
        for ts, k, _lt, data, wl in recs:
            w.write_packet(ids[k], ts, data, wl)
    return out


def test_two_interfaces_of_one_file_suggest_vantage(tmp_path):
    box = _box(tmp_path, ("eth-in", "eth-out"))
    res = run([str(box)])
    hs = _hints(res)
    assert len(hs) == 1, [f.code for f in res.report.findings]
    assert f"--vantage in={box}#eth-in --vantage out={box}#eth-out" in hs[0].detail
    # the suggestion works as given
    res2 = run([], Options(vantage=[("in", [str(box)], "eth-in"),
                                    ("out", [str(box)], "eth-out")]))
    assert res2.report.tunnels[0]["path"]["order"] == ["in", "out"]


def test_tunnel_interface_is_no_second_point(tmp_path):
    """The same file with the second interface named like a tunnel device (ipsec0): an inside
    view of the tunnel, never a second capture point."""
    box = _box(tmp_path, ("eth0", "ipsec0"))
    assert not _hints(run([str(box)]))
