"""Inner findings at several vantage points (issue 15 with issue 16's ``--vantage``): where on
the path the inner requests or their answers were lost, as ``location {from, to, why}``.

The lab scenarios' captures (captures/lab/inner_*) are real: the client's dumpcap (l-eth0 +
ipsec0), the responder's ``tcpdump -i any`` (r-eth0 + ipsec0 + r-lan) and its LAN side alone.
Captures marked *synthetic* are copies of them with packets removed (what a loss between the
points would leave)."""

from __future__ import annotations

import struct

import pytest

from conftest import CAPTURES
from dissect.vpn.link import decode_frame
from pcapvpn.analysis import Options, run

LAB = CAPTURES / "lab"
TUNNEL = "192.0.2.2<->198.51.100.2"
CLIENT, HOST = bytes([10, 10, 1, 1]), bytes([10, 20, 5, 10])


def _need(name):
    if not (LAB / name / "expected.json").exists():
        pytest.fail(f"captures/lab/{name} missing: regenerate with captures/lab/run {name}")


def _points(name, *pts):
    return [(p, [str(f if "/" in str(f) else LAB / name / f)], None) for p, f in pts]


def _found(res, code):
    fs = [f for f in res.findings if f.code == code and f.tunnel == TUNNEL]
    assert fs, sorted({f.code for f in res.findings})
    return fs[0]


def _drop(src, dst, unwanted):
    """A copy of classic pcap ``src`` without the frames whose IP header ``unwanted(net)``
    picks (``net``: :func:`dissect.vpn.link.decode_frame`'s tuple)."""
    raw = src.read_bytes()
    magic = raw[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(order + "I", raw[20:24])[0] & 0x0FFFFFFF
    out = [raw[:24]]
    off = 24
    dropped = 0
    while off + 16 <= len(raw):
        incl = struct.unpack(order + "I", raw[off + 8:off + 12])[0]
        data = raw[off + 16:off + 16 + incl]
        net = decode_frame(linktype, data)
        if net is not None and unwanted(net):
            dropped += 1
        else:
            out.append(raw[off:off + 16 + incl])
        off += 16 + incl
    dst.write_bytes(b"".join(out))
    assert dropped
    return dst


def test_no_return_reached_the_lan_side():
    """inner_no_return: the requests reach the office LAN (the responder's LAN side and its
    -i any see them) and nothing answers: the location ends at the last point."""
    name = "inner_no_return"
    _need(name)
    for far, f in (("gw-lan", f"{name}-gw-lan.pcap"), ("gw", f"{name}-gw-any.pcap")):
        res = run([], Options(vantage=_points(name, ("client", f"{name}-client.pcapng"),
                                              (far, f))))
        loc = _found(res, "INNER_NO_RETURN").location
        assert loc is not None and (loc["from"], loc["to"]) == (far, None), loc
        assert "no answer" in loc["why"]
        assert _found(res, "DNS_NO_ANSWER").location["from"] == far


def test_mtu_segments_lost_between_gateway_and_client():
    """inner_mtu: the server's full-size segments are seen on the responder (LAN side) and
    never on the client (the responder drops them): lost between those two points."""
    name = "inner_mtu"
    _need(name)
    res = run([], Options(vantage=_points(name, ("client", f"{name}-client.pcapng"),
                                          ("gw", f"{name}-gw-any.pcap"))))
    loc = _found(res, "INNER_MTU").location
    assert (loc["from"], loc["to"]) == ("gw", "client"), loc
    assert "full-size segments" in loc["why"]
    # the gateway first: the segments leave it retransmitted, the client never sees them
    res = run([], Options(vantage=_points(name, ("gw", f"{name}-gw-any.pcap"),
                                          ("client", f"{name}-client.pcapng"))))
    loc = _found(res, "INNER_MTU").location
    assert (loc["from"], loc["to"]) == ("gw", "client"), loc


def test_answers_lost_between_gateway_and_client_synthetic(tmp_path):
    """Synthetic: inner_dns_error's client -i any without anything the internal host sent (its
    answers lost after the responder): the client sees no reply (INNER_NO_RETURN), the
    responder saw them leave: lost between the responder and the client."""
    name = "inner_dns_error"
    _need(name)
    client = _drop(LAB / name / f"{name}-client-any.pcap", tmp_path / "client.pcap",
                   lambda net: net[1] == HOST)
    res = run([], Options(vantage=_points(name, ("client", client),
                                          ("gw", f"{name}-gw-any.pcap"))))
    for code in ("INNER_NO_RETURN", "DNS_NO_ANSWER"):
        loc = _found(res, code).location
        assert (loc["from"], loc["to"]) == ("gw", "client"), (code, loc)
        assert loc["why"].startswith("answers seen at gw"), loc
    # one point: no location
    res = run([str(client)])
    assert _found(res, "INNER_NO_RETURN").location is None


def test_requests_lost_before_the_lan_side_synthetic(tmp_path):
    """Synthetic: inner_no_return's LAN-side capture without the client's requests to the web
    server (lost inside the gateway): it still shows the host's other conversations, so the
    requests were lost between the client and it."""
    name = "inner_no_return"
    _need(name)
    lan = _drop(LAB / name / f"{name}-gw-lan.pcap", tmp_path / "lan.pcap",
                lambda net: net[1] == CLIENT and net[3] == 6)
    res = run([], Options(vantage=_points(name, ("client", f"{name}-client.pcapng"),
                                          ("gw-lan", lan))))
    f = _found(res, "INNER_NO_RETURN")
    assert f.location is not None and f.location["from"] == "client", f.location
    assert f.location["to"] == "gw-lan"
