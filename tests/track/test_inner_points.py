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
    picks (``net``: :func:`dissect.vpn.link.decode_frame`'s tuple, ``data`` the frame)."""
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
        if net is not None and unwanted(net, data):
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
                   lambda net, _d: net[1] == HOST)
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
                lambda net, _d: net[1] == CLIENT and net[3] == 6)
    res = run([], Options(vantage=_points(name, ("client", f"{name}-client.pcapng"),
                                          ("gw-lan", lan))))
    f = _found(res, "INNER_NO_RETURN")
    assert f.location is not None and f.location["from"] == "client", f.location
    assert f.location["to"] == "gw-lan"


def _late_echo_replies(net, data):
    """The internal host's ICMP echo replies with sequence number 2 or 3 (RFC 792: type 0,
    sequence number in bytes 6-7)."""
    off = net[6]
    return net[1] == HOST and net[3] == 1 and data[off] == 0 and \
        int.from_bytes(data[off + 6:off + 8], "big") in (2, 3)


def test_inner_no_answer_from_plaintext_views_synthetic(tmp_path):
    """Synthetic: inner_dns_error's captures without the internal host's replies to the 2nd and
    3rd ping (the host answers the first ping and DNS; answers keep coming through the tunnel):
    INNER_NO_ANSWER from the client's view and from the responder's, the same judgement as with
    keys (one code, one model); with both as vantage points, the answers that exist at the
    responder were lost between it and the client."""
    name = "inner_dns_error"
    _need(name)
    d = LAB / name
    client = _drop(d / f"{name}-client-any.pcap", tmp_path / "client.pcap", _late_echo_replies)
    gw = _drop(d / f"{name}-gw-any.pcap", tmp_path / "gw.pcap", _late_echo_replies)
    for cap in (client, gw):
        res = run([str(cap)])
        f = _found(res, "INNER_NO_ANSWER")
        assert f.basis == "observed" and f.title.startswith("2 ICMP echo request(s)"), f.title
        assert "10.10.1.1 -> 10.20.5.10 (ICMP echo): 2 without an answer" in f.detail
        assert f.location is None
        assert not {"INNER_NO_RETURN", "INNER_BLOCKED"} & {x.code for x in res.findings}
    # the untouched captures: every ping answered, nothing to say
    res = run([str(d / f"{name}-client-any.pcap")])
    assert "INNER_NO_ANSWER" not in {x.code for x in res.findings}
    res = run([], Options(vantage=_points(name, ("client", client),
                                          ("gw", f"{name}-gw-any.pcap"))))
    loc = _found(res, "INNER_NO_ANSWER").location
    assert (loc["from"], loc["to"]) == ("gw", "client"), loc
