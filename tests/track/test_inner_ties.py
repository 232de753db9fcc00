"""Per-packet ties of plaintext to tunnels (issue 15): Linux XFRM re-injection (an inbound
packet right after the ESP that carried it, its length the ESP's minus the SA's overhead) and
tunnel-interface timing (each plaintext packet beside an outer ESP packet of matching size).

All captures here are *synthetic*, built from real lab packets (captures/lab/inner_*: strongSwan
with kernel-libipsec, ESP aes128-sha256 in UDP 4500): there is no kernel ESP on these machines,
so the XFRM view is the client's l-eth0 with its ipsec0 inbound packets re-injected at the times
they were captured; the second tunnel is another lab run's outer packets with the responder's
address rewritten."""

from __future__ import annotations

import pytest

from conftest import CAPTURES
from dissect.vpn.capture import PcapngWriter, open_capture
from pcapvpn.analysis import run

LAB = CAPTURES / "lab"
CLIENT = bytes([10, 10, 1, 1])
RESPONDER, OTHER = bytes([198, 51, 100, 2]), bytes([203, 0, 113, 2])
MAC = bytes.fromhex("020000000001020000000002")  # locally administered MACs


def _read(name):
    src = LAB / name / f"{name}-client.pcapng"
    if not src.exists():
        pytest.fail(f"{src} missing: regenerate with captures/lab/run {name}")
    with open(src, "rb") as f:
        r = open_capture(f)
        recs = [(ts, bytes(data), iface) for ts, _lt, data, _w, _o, iface in r.records()]
        names = [i.name for i in r.interfaces]
    return recs, names.index("l-eth0"), names.index("ipsec0")


def _write(path, ifaces, packets):
    """``ifaces``: [(linktype, name)]; ``packets``: (ts, iface, data), written in time order."""
    with open(path, "wb") as f:
        w = PcapngWriter(f)
        for lt, name in ifaces:
            w.add_interface(lt, name=name)
        for ts, i, data in sorted(packets, key=lambda p: p[0]):
            w.write_packet(i, ts, data)
    return path


def _xfrm(tmp_path, shift=0.0):
    recs, eth, tun = _read("inner_healthy")
    pkts = [(ts, 0, d) for ts, d, i in recs if i == eth]
    pkts += [(ts + shift, 0, MAC + b"\x08\x00" + d) for ts, d, i in recs
             if i == tun and d[16:20] == CLIENT]  # inbound: to the client
    return _write(tmp_path / "xfrm.pcapng", [(1, "eth0")], pkts)


def _model(res):
    (t,) = [t for t in res.report.tunnels if t["id"] == "192.0.2.2<->198.51.100.2"]
    return t, res.state.inner_models.get(t["id"])


def test_xfrm_tied_packet_by_packet(tmp_path):
    """Synthetic XFRM view: every re-injected packet follows its ESP by well under the window
    and fits its length (aes128-cbc + hmac-sha256-128: 8 + 16 IV + padding + 16 ICV)."""
    from pcapvpn.track.inner import ESP_SUITES, PAIR_WINDOW, _pairs, esp_fits

    res = run([str(_xfrm(tmp_path))])
    t, m = _model(res)
    assert [v["tied_by"] for v in t["inner"]["views"]] == ["xfrm"]
    assert t["inner"]["clients"] == ["10.10.1.1"]
    ((v, _how),) = m.views
    index = {e.spi: tt for tt in res.state.tunnels for e in tt.esp_sas}
    (pairs,) = _pairs(v, index, inbound_only=True).values()
    assert len(pairs) >= 10 and all(0 <= dt <= PAIR_WINDOW for _s, _d, dt, _i in pairs)
    assert {d for _s, d, _dt, _i in pairs} == {CLIENT}
    # the lab's suite: an 84-byte ping in 136 bytes of ESP, a 1400-byte segment in 1448
    assert (16, 16, 16) in ESP_SUITES and esp_fits(136, 84) and esp_fits(1448, 1400)
    assert not esp_fits(136, 120) and not esp_fits(200, 84)


def test_xfrm_not_tied_when_times_do_not_match(tmp_path):
    """The same packets 50 ms after their ESP (beyond the window): no per-packet tie, so the
    view is not taken for XFRM re-injection (the activity-based guess would have tied it)."""
    res = run([str(_xfrm(tmp_path, shift=0.05))])
    t, _m = _model(res)
    assert "xfrm" not in {v["tied_by"] for v in (t.get("inner") or {}).get("views", [])}


def test_tunnel_interface_timing_among_two_tunnels(tmp_path):
    """Synthetic: the client's l-eth0 + ipsec0 of inner_healthy with a second tunnel's outer
    packets (inner_blocked's l-eth0, responder rewritten to 203.0.113.2, moved to the same
    time) on l-eth0: both tunnels are active while ipsec0 carries traffic, so activity windows
    cannot tell; the ipsec0 packets pair with the first tunnel's ESP, packet by packet."""
    recs, eth, tun = _read("inner_healthy")
    other, oeth, _otun = _read("inner_blocked")
    t0 = min(ts for ts, _d, _i in recs)
    o0 = min(ts for ts, _d, _i in other)
    pkts = [(ts, 0 if i == eth else 1, d) for ts, d, i in recs]
    for ts, d, i in other:
        if i != oeth:
            continue
        d = bytearray(d)
        for off in (26, 30):  # IPv4 source / destination after the Ethernet header
            if d[off:off + 4] == RESPONDER:
                d[off:off + 4] = OTHER
        pkts.append((ts - o0 + t0 + 0.0005, 0, bytes(d)))
    path = _write(tmp_path / "two.pcapng", [(1, "l-eth0"), (101, "ipsec0")], pkts)
    res = run([str(path)])
    ids = sorted(t["id"] for t in res.report.tunnels)
    assert ids == ["192.0.2.2<->198.51.100.2", "192.0.2.2<->203.0.113.2"], ids
    t, _m = _model(res)
    assert [(v["name"], v["tied_by"]) for v in t["inner"]["views"]] == [("ipsec0", "timing")]
    (o,) = [t for t in res.report.tunnels if t["id"] != "192.0.2.2<->198.51.100.2"]
    assert not o.get("inner")


def _cooked(name):
    src = LAB / name / f"{name}-client-any.pcap"
    if not src.exists():
        pytest.fail(f"{src} missing: regenerate with captures/lab/run {name}")
    with open(src, "rb") as f:
        return [(ts, bytes(d)) for ts, _lt, d, _w, _o, _i in open_capture(f).records()]


def test_openvpn_tun_timing_beside_ipsec(tmp_path):
    """Synthetic: the client's -i any of inner_openvpn_no_return (tun0 and OpenVPN over UDP
    1194) with the outer packets (IKE, ESP on the physical interface) of inner_healthy's
    client moved to the same time: two tunnels in one file, both active while tun0 carries
    traffic.  tun0's packets pair with the OpenVPN datagrams (24 bytes of data-channel
    overhead, within microseconds), not with the ESP: tied to the OpenVPN tunnel by timing."""
    ovpn = _cooked("inner_openvpn_no_return")
    ipsec = _cooked("inner_healthy")
    o0, i0 = ovpn[0][0], ipsec[0][0]
    pkts = [(ts, 0, d) for ts, d in ovpn]
    # the IPsec client's physical interface only (SLL2 interface index 2): IKE and ESP
    pkts += [(ts - i0 + o0 + 0.15, 0, d) for ts, d in ipsec
             if int.from_bytes(d[4:8], "big") == 2]
    path = _write(tmp_path / "two.pcapng", [(276, "any")], pkts)
    res = run([str(path)])
    by_id = {t["id"]: t for t in res.report.tunnels}
    assert "192.0.2.2<->198.51.100.2" in by_id and len(by_id) == 2, sorted(by_id)
    (ov,) = [t for i, t in by_id.items() if i != "192.0.2.2<->198.51.100.2"]
    assert [v["tied_by"] for v in ov["inner"]["views"]] == ["timing"]
    assert ov["inner"]["clients"] == ["10.8.0.2"]
    assert not by_id["192.0.2.2<->198.51.100.2"].get("inner")


def test_no_frames_to_read_again_keeps_activity_windows():
    """A source that cannot read its frames again (a live capture): nothing is paired, the
    view keeps ``near`` None and the ties fall back to what they were."""
    from types import SimpleNamespace as NS

    from pcapvpn.track.inner import PlainTracker, pair

    pt = PlainTracker({0: [NS(name="tun0", description=None)]})
    net = (4, bytes([10, 0, 0, 1]), bytes([10, 1, 0, 1]), 17, 1000, 2000, 20, 40, 0, False, 0, 0)
    pt.plain((0, 1), 100.0, 0, 101, None, net, bytes(40))
    (v,) = pt.views.values()
    assert len(v.sample) == 1
    pair(pt, [NS(index=0, name="eth0")])  # no fetch()
    pair(pt, [NS(index=0, name="-", spool_path=None, fetch=lambda n: iter(()))])
    assert v.near is None


def test_xfrm_tied_in_a_gzip_capture(tmp_path):
    """A gzip-compressed capture is read again from its start: the pairs are the same."""
    import gzip

    path = _xfrm(tmp_path)
    gz = tmp_path / "xfrm.pcapng.gz"
    gz.write_bytes(gzip.compress(path.read_bytes(), mtime=0))
    t, _m = _model(run([str(gz)]))
    assert [v["tied_by"] for v in t["inner"]["views"]] == ["xfrm"]
