"""The ``--vantage`` hint (issue 16, SEVERAL_CAPTURE_POINTS) beyond two files sharing IKE:
two plain files whose ESP (SPI, sequence number) coincide at a steady offset with no IKE in
common, and two interfaces of one file (pcapng IDBs) seeing the same packets at a steady delay.
A tunnel interface is an inside view of its tunnel: never hinted."""

from __future__ import annotations

from conftest import REPO
from pcapvpn.analysis import Options, run
from vantage_util import box, split_halves, without

LAB = REPO / "captures" / "lab"


def _hints(res):
    return [f for f in res.report.findings if f.code == "SEVERAL_CAPTURE_POINTS"]


def _without_ike(tmp_path, src, name, shift=0.0):
    """A classic pcap copy of ``src`` without its IKE (as if the capture began after the IKE SA
    was up), its clock shifted by ``shift`` seconds."""
    return without(tmp_path, src, "isakmp || udp.port == 500", name, "pcap", shift)[0]


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
    src = _without_ike(tmp_path, LAB / "ikev2_path_esp_loss" / "ikev2_path_esp_loss-gw-left.pcap",
                       "x.pcap")
    split_halves(src, tmp_path / "1.pcap", tmp_path / "2.pcap")
    res = run([str(tmp_path / "1.pcap"), str(tmp_path / "2.pcap")])
    assert not _hints(res)


def _box(tmp_path, names):
    """One pcapng file with the router's inside and outside captures of ikev2_path_esp_oneway
    as two interfaces named ``names``."""
    d = LAB / "ikev2_path_esp_oneway"
    return box(tmp_path / "box.pcapng", [d / f"ikev2_path_esp_oneway-{n}.pcap"
                                         for n in ("router-in", "router-out")], names)


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
