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


def _cooked_box(out, files, ifindexes, hatypes=(1, 1)):
    """One Linux cooked v2 capture (``tcpdump -i any``, LINKTYPE_LINUX_SLL2) holding the
    Ethernet frames of ``files`` as seen on interfaces ``ifindexes`` (ARPHRD ``hatypes``)."""
    import struct

    from dissect.vpn.capture import open_capture

    recs = []
    for k, path in enumerate(files):
        with open(path, "rb") as f:
            for ts, _lt, data, _wl, _off, _if in open_capture(f).records():
                data = bytes(data)
                # SLL2 (20 bytes): protocol, reserved, ifindex, ARPHRD type, packet type,
                # address length, address (8)
                head = struct.pack("!HHIHBB8s", struct.unpack_from("!H", data, 12)[0], 0,
                                   ifindexes[k], hatypes[k], 0, 6, data[6:12] + b"\0\0")
                recs.append((ts, k, head + data[14:]))
    recs.sort(key=lambda r: (r[0], r[1]))
    body = b"".join(struct.pack("<IIII", int(ts), round((ts % 1) * 1e6), len(d), len(d)) + d
                    for ts, _k, d in recs)
    out.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 276) + body)
    return out


def test_any_capture_ifindexes_suggest_vantage(tmp_path):
    """A Linux ``-i any`` capture of a box whose two interfaces (ifindex 3 and 4) carry the
    same IKE at a steady delay: the hint names them ``FILE#ifindex=N``, and that works."""
    d = LAB / "ikev2_path_esp_oneway"
    out = _cooked_box(tmp_path / "any.pcap", [d / f"ikev2_path_esp_oneway-{n}.pcap"
                                              for n in ("router-in", "router-out")], (3, 4))
    hs = _hints(run([str(out)]))
    assert len(hs) == 1
    assert f"--vantage in={out}#ifindex=3 --vantage out={out}#ifindex=4" in hs[0].detail
    res = run([], Options(vantage=[("in", [str(out)], "ifindex=3"),
                                   ("out", [str(out)], "ifindex=4")]))
    assert res.report.tunnels[0]["path"]["order"] == ["in", "out"]


def test_any_capture_tunnel_ifindex_no_hint(tmp_path):
    """The same with the second interface a tunnel device (ARPHRD NONE, as ipsec0 / tun0):
    never a second point."""
    d = LAB / "ikev2_path_esp_oneway"
    files = [d / f"ikev2_path_esp_oneway-{n}.pcap" for n in ("router-in", "router-out")]
    out = _cooked_box(tmp_path / "any.pcap", files, (3, 4), hatypes=(1, 0xFFFE))
    assert not _hints(run([str(out)]))
