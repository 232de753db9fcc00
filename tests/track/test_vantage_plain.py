"""Plaintext between vantage points (issue 16 with the inner codes of issue 15): the inside
views matched by the IPv4 ID and a hash of the first bytes (what a NAT leaves alone), the NAT
translation learnt from the matches, a conversation direction seen at one point and never at
the next located with INNER_BLOCKED / INNER_NO_RETURN.

inner_healthy (lab): pings, a DNS query and an HTTP download from the client 10.10.1.1 to the
office host 10.20.5.10, all answered; captured on the client's ipsec0 (``client.pcapng``,
interface ipsec0) and on the responder's LAN side (``gw-lan.pcap``), both on the lab host's
clock.  The copies below drop packets as if lost between those two points (synthetic by
construction: editcap removes the frames a display filter selects).
"""

from __future__ import annotations

import json
import sys

import jsonschema

from conftest import REPO
from pcapvpn.analysis import Options, run
from pcapvpn.report import render
from vantage_util import without

LAB = REPO / "captures" / "lab" / "inner_healthy"
TUN = LAB / "inner_healthy-client.pcapng"
LAN = LAB / "inner_healthy-gw-lan.pcap"
sys.path.insert(0, str(REPO / "bench"))


def _without(tmp_path, src, flt, name):
    out, n = without(tmp_path, src, flt, name)
    assert n
    return out, n


def _run(tun, lan):
    return run([], Options(vantage=[("tun", [str(tun)], "ipsec0"), ("lan", [str(lan)], None)]))


def _inner(res):
    return [f for f in res.report.findings if f.code in ("INNER_NO_RETURN", "INNER_BLOCKED")]


def test_replies_lost_between_lan_and_tunnel(tmp_path):
    """The echo replies reach the LAN side and never the client's tunnel interface:
    INNER_NO_RETURN between lan and tun.  Four HTTP data segments lost the same way are a
    partial loss of a conversation that worked: no finding for it."""
    tun, n = _without(tmp_path, TUN, 'frame.interface_name == "ipsec0" && icmp.type == 0 || '
                      'frame.interface_name == "ipsec0" && tcp.srcport == 80 && tcp.len > 0 '
                      '&& tcp.seq < 3000', "tun.pcapng")
    res = _run(tun, LAN)
    fs = _inner(res)
    assert [(f.code, f.location["from"], f.location["to"]) for f in fs] == [
        ("INNER_NO_RETURN", "lan", "tun")], [(f.code, f.title) for f in fs]
    assert "ICMP 10.20.5.10 -> 10.10.1.1" in fs[0].title
    assert all(r.point == "lan" for r in fs[0].evidence.frames)
    v = res.state.vantage
    partial = [x for x in v.plain_losses if x.conv[0] == 6]
    # the server's segments at relative sequence numbers 1, 205, 1553 and 2901
    assert [(x.src, x.dst, x.lost) for x in partial] == [("lan", "tun", 4)]
    o = res.report.vantage_points[1]
    assert o["matched_packets"] > 100 and abs(o["clock_offset_s"]) < 0.005
    # the report: JSON (schema), and the lines of every format
    doc = json.loads(render(res.report, "json"))
    jsonschema.validate(doc, json.loads((REPO / "docs" / "schema.json").read_text()))
    assert sorted((x["conversation"].split()[0], x["lost"], x["judged"])
                  for x in doc["vantage_inside"]["losses"]) == [("ICMP", 5, 5), ("TCP", 4, 80)]
    for fmt in ("text", "markdown", "html"):
        assert "inside, lost between lan and tun: TCP 10.20.5.10:80" in render(res.report, fmt)


def test_requests_blocked_before_the_lan(tmp_path):
    """The echo requests leave the client's tunnel interface and never reach the LAN side:
    INNER_BLOCKED between tun and lan (the opener's direction)."""
    lan, _n = _without(tmp_path, LAN, "icmp.type == 8", "lan.pcap")
    fs = _inner(_run(TUN, lan))
    assert [(f.code, f.location["from"], f.location["to"]) for f in fs] == [
        ("INNER_BLOCKED", "tun", "lan")], [(f.code, f.title) for f in fs]


def test_nothing_lost_nothing_found():
    res = _run(TUN, LAN)
    assert not _inner(res)
    assert not res.state.vantage.plain_losses


def test_nat_between_points_learnt(tmp_path):
    """A NAT between the points (the LAN side sees the client as 10.20.5.1), the LAN clock
    1.3371 s ahead: packets still match, the translation is learnt, the offset estimated."""
    from pointsplit import split_points

    a = tmp_path / "a.pcap"
    b = tmp_path / "b.pcap"
    split_points(str(LAN), str(a), str(b), "10.10.1.1", 1.3371, 0.0, nat=("10.20.5.1", None))
    res = _run(TUN, b)
    v = res.state.vantage
    assert abs(res.report.vantage_points[1]["clock_offset_s"] - 1.3371) < 0.005
    assert any("10.10.1.1" in n["points"]["tun"] and "10.20.5.1" in n["points"]["lan"]
               for n in v.plain_nat), v.plain_nat
    assert not v.plain_losses


def test_live_expiry_forgets_quiet_flows():
    """Live mode's memory bound: numbered flows and plaintext packets silent for ``idle``
    seconds are forgotten at a point (and plaintext recording resumes after the bound)."""
    from pcapvpn.thresholds import DEFAULT
    from pcapvpn.track.vantage import PointTracker

    t = PointTracker(DEFAULT, ["x"])
    t.seq_store._packet("l2tp", (1, None), 16, 4, b"a", b"b", 1701, 1701, 10.0, (0, 1), 5, 60,
                        "x")
    t.seq_store._packet("l2tp", (2, None), 16, 4, b"a", b"b", 1701, 1701, 100.0, (0, 2), 5, 60,
                        "y")
    t.plain_rec.d.update({1: (10.0, (0, 1), (6, b"a", 1, b"b", 2), 0),
                          2: (100.0, (0, 2), (6, b"a", 1, b"b", 2), 0)})
    t.plain_rec.until = 50.0
    t.expire(120.0, 60.0)
    assert list(t.seq_store.flows) == [("l2tp", (2, None))]
    assert list(t.plain_rec.d) == [2] and t.plain_rec.until is None


def test_no_return_located_past_the_lan():
    """inner_no_return (lab): the office host has no route back; the client's requests reach
    the responder's LAN side and nothing ever answers.  The first point's INNER_NO_RETURN and
    DNS_NO_ANSWER get the location: from the LAN point, past the last point."""
    d = REPO / "captures" / "lab" / "inner_no_return"
    res = run([], Options(vantage=[("client", [str(d / "inner_no_return-client.pcapng")], None),
                                   ("lan", [str(d / "inner_no_return-gw-lan.pcap")], None)]))
    got = {f.code: (f.location or {}).get("from", "-") for f in res.report.findings
           if f.code in ("INNER_NO_RETURN", "DNS_NO_ANSWER")}
    assert got == {"INNER_NO_RETURN": "lan", "DNS_NO_ANSWER": "lan"}, got
    assert all(f.location["to"] is None for f in res.report.findings
               if f.code in ("INNER_NO_RETURN", "DNS_NO_ANSWER"))


def test_traffic_beside_any_tunnel_is_a_path_fact_only(tmp_path):
    """Two copies of the office LAN capture as two points (a physical view, no tunnel at either
    point), the echo replies lost between them: listed in ``vantage_inside``, but no inner code
    (those are for the inside of a tunnel)."""
    import subprocess

    from conftest import tshark_path
    from pointsplit import split_points

    cp = subprocess.run([tshark_path(), "-r", str(LAN), "-Y", "icmp.type == 0", "-T", "fields",
                         "-e", "frame.number"], capture_output=True, text=True, check=True)
    replies = [int(x) for x in cp.stdout.split()]
    assert replies
    a = tmp_path / "a.pcap"
    b = tmp_path / "b.pcap"
    split_points(str(LAN), str(a), str(b), "10.10.1.1", 0.25, 0.0, drop_a=replies)
    res = run([], Options(vantage=[("near", [str(a)], None), ("far", [str(b)], None)]))
    assert not _inner(res)
    lost = res.report.vantage_inside["losses"]
    # every reply near could have seen is lost (one came after near's last packet: not judged)
    assert [(x["from"], x["to"]) for x in lost] == [("far", "near")]
    assert lost[0]["lost"] == lost[0]["judged"] >= len(replies) - 1
