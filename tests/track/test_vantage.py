"""Several vantage points of the same traffic (issue 16, ``--vantage``).

The lab's ``ikev2_path_*`` scenarios were captured at the same time at four points (both
gateways, the router's inside and outside) with a loss injected in the router; their
expected.json ``vantage`` says, from the scenario's design, where each loss must be placed.
Clock offsets are checked on copies of those captures whose clock was shifted (``editcap -t``,
positive and negative, odd amounts) or drifted by 100 ppm (``bench/retime.py``): the estimate
must be within 5 ms of the truth, at both ends of the 60 s capture for the drifted one.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys

import jsonschema
import pytest

from conftest import REPO
from pcapvpn.analysis import Options, run
from pcapvpn.report import render

LAB = REPO / "captures" / "lab"
SCHEMA = json.loads((REPO / "docs" / "schema.json").read_text())
SCENARIOS = sorted(p.parent.name for p in LAB.glob("*/expected.json")
                   if "vantage" in json.loads(p.read_text()))

sys.path.insert(0, str(REPO / "bench"))
from retime import retime  # noqa: E402
from vantage_util import box, check_filters, split_halves, without  # noqa: E402

#: the truth of an offset estimate (issue 16)
TOLERANCE = 0.005


def _expected(name):
    return json.loads((LAB / name / "expected.json").read_text())["vantage"]


def _points(name, first=None, replace=None):
    """``Options.vantage`` for a scenario's points (``first``: that point first; ``replace``:
    {point: another file})."""
    exp = _expected(name)
    pts = [(p["name"], [str((replace or {}).get(p["name"], LAB / name / p["file"]))], None)
           for p in exp["points"]]
    if first:
        pts.sort(key=lambda p: p[0] != first)
    return pts


def _analyse(points, **kw):
    return run([], Options(vantage=points, **kw))


def _path(result, tunnel=None):
    ts = [t for t in result.report.tunnels if tunnel is None or t["id"] == tunnel]
    assert ts, [t["id"] for t in result.report.tunnels]
    return ts[0]["path"]


def _shift(src, dst, seconds):
    """A copy with the clock shifted: editcap -t where Wireshark is installed, else retime."""
    editcap = shutil.which("editcap")
    if editcap:
        subprocess.run([editcap, "-t", f"{seconds}", str(src), str(dst)], check=True,
                       capture_output=True)
    else:
        retime(str(src), str(dst), seconds)


def test_lab_has_path_scenarios():
    assert {"ikev2_path_esp_loss", "ikev2_path_esp_oneway", "ikev2_path_ike_response_lost",
            "ikev2_path_ikefrag_loss", "ikev2_path_nat"} <= set(SCENARIOS)


@pytest.mark.parametrize("name", SCENARIOS)
def test_losses_located(name):
    """Every injected loss is placed on the right segment, and nothing else is lost."""
    exp = _expected(name)
    res = _analyse(_points(name))
    path = _path(res)
    assert path["order"] == [p["name"] for p in exp["points"]]
    got = {(x["kind"], x["direction"], x["from"], x["to"]) for x in path["losses"]}
    want = {(x["kind"], x["direction"], x["from"], x["to"]) for x in exp["losses"]}
    assert want <= got, (want, path["losses"])
    if exp.get("no_losses_elsewhere"):
        assert got == want, path["losses"]
    for x in exp["losses"]:
        if "exchange" in x:
            assert any(y["kind"] == "ike" and y["exchange"] == x["exchange"]
                       for y in path["losses"])
    # each loss is a PATH_LOSS finding with that location and evidence from the upstream file
    pl = [f for f in res.report.findings if f.code == "PATH_LOSS"]
    assert {(f.location["from"], f.location["to"]) for f in pl} == {
        (x["from"], x["to"]) for x in exp["losses"]}
    for f in pl:
        assert any(r.point == f.location["from"] for r in f.evidence.frames), f.evidence


@pytest.mark.parametrize("name", SCENARIOS)
def test_findings_get_locations(name):
    """The report's own findings (ESP_SEQUENCE_GAP, ESP_ONE_WAY, IKE_RETRANSMISSION...) carry
    the location the points show."""
    exp = _expected(name)
    res = _analyse(_points(name, first=exp.get("analyse_from")))
    for code, loc in (exp.get("locations") or {}).items():
        fs = [f for f in res.report.findings if f.code == code]
        assert fs, f"no {code}: {[f.code for f in res.report.findings]}"
        for f in fs:
            assert f.location is not None, f
            assert (f.location["from"], f.location["to"]) == (loc["from"], loc["to"]), f.location


@pytest.mark.parametrize("name", SCENARIOS)
def test_verdict_from_all_points(name):
    exp = _expected(name)
    v = exp["verdict"]
    res = _analyse(_points(name, first=exp.get("analyse_from")))
    t = next(t for t in res.report.tunnels if t["id"] == v["tunnel"])
    assert t["verdict"] == v["verdict"], t
    assert t["primary_code"] in v["primary"], t


@pytest.mark.parametrize("name", SCENARIOS)
def test_report_validates_and_renders(name):
    res = _analyse(_points(name))
    doc = json.loads(render(res.report, "json"))
    jsonschema.validate(doc, SCHEMA)
    assert [p["name"] for p in doc["vantage_points"]] == [p["name"] for p in
                                                          _expected(name)["points"]]
    for p in doc["vantage_points"][1:]:
        assert p["matched_packets"] > 0
        assert abs(p["clock_offset_s"]) < TOLERANCE  # one machine's clock
    for fmt in ("text", "markdown", "html"):
        out = render(res.report, fmt)
        assert "router-in" in out and "router-out" in out
        for x in _expected(name)["losses"]:
            assert f"between {x['from']} and {x['to']}" in out, fmt


@pytest.mark.parametrize("shift", [12.345678, -7.891011])
@pytest.mark.parametrize("name", ["ikev2_path_esp_loss", "ikev2_path_ike_response_lost"])
def test_shifted_clock_offset(tmp_path, name, shift):
    """router-out's and gw-right's clocks shifted by an odd amount (editcap -t): the offsets
    are found within 5 ms and the losses are still placed where they were."""
    exp = _expected(name)
    files = {p["name"]: LAB / name / p["file"] for p in exp["points"]}
    rep = {}
    for k, p in enumerate(("router-out", "gw-right")):
        rep[p] = tmp_path / f"{p}.pcap"
        _shift(files[p], rep[p], shift * (1 if k == 0 else -0.5))
    res = _analyse(_points(name, replace=rep))
    vp = {p["name"]: p for p in res.report.vantage_points}
    assert abs(vp["router-out"]["clock_offset_s"] - shift) < TOLERANCE, vp["router-out"]
    assert abs(vp["gw-right"]["clock_offset_s"] + shift / 2) < TOLERANCE, vp["gw-right"]
    assert abs(vp["router-in"]["clock_offset_s"]) < TOLERANCE
    assert vp["router-out"]["offset_uncertainty_s"] < TOLERANCE
    # times of the report are on the first point's clock
    assert abs(vp["router-out"]["first"]["rel"]) < 0.1
    got = {(x["kind"], x["from"], x["to"]) for x in _path(res)["losses"]}
    assert got == {(x["kind"], x["from"], x["to"]) for x in exp["losses"]}


def _span(path):
    with open(path, "rb") as f:
        data = f.read()
    off = 24
    first = last = None
    while off + 16 <= len(data):
        sec, us, incl, _ = struct.unpack_from("<IIII", data, off)
        t = sec + us / 1e6
        first = t if first is None else first
        last = t
        off += 16 + incl
    return first, last


@pytest.mark.parametrize("ppm", [100.0, -100.0])
def test_drifted_clock_both_ends(tmp_path, ppm):
    """router-out's clock shifted and drifting by 100 ppm (6 ms over the 60 s capture): the
    offset is within 5 ms of the truth at both ends, and the drift is found."""
    name = "ikev2_path_esp_loss"
    exp = _expected(name)
    src = LAB / name / next(p["file"] for p in exp["points"] if p["name"] == "router-out")
    first, last = _span(src)
    assert last - first >= 60
    out = tmp_path / "ro.pcap"
    retime(str(src), str(out), -3.210987, ppm)
    res = _analyse(_points(name, replace={"router-out": out}))
    vp = {p["name"]: p for p in res.report.vantage_points}["router-out"]
    start = res.report.capture.start_ts
    for t in (first, last):
        truth = -3.210987 + ppm * 1e-6 * (t - first)
        est = vp["clock_offset_s"] + vp["drift_ppm"] * 1e-6 * (t - start)
        assert abs(est - truth) < TOLERANCE, (t - first, est, truth)
    assert abs(vp["drift_ppm"] - ppm) < 20
    got = {(x["kind"], x["from"], x["to"]) for x in _path(res)["losses"]}
    assert got == {("esp", "router-in", "router-out")}


@pytest.mark.parametrize("name", ["ikev2_path_nat", "ikev2_path_nat_remap"])
def test_nat_between_points(name):
    """The NAT's translations are seen between router-in and router-out, inside tuple at the
    inside points and outside tuple outside; a mapping change only outside."""
    res = _analyse(_points(name))
    nat = _path(res)["nat"]
    assert nat
    remap = [n for n in nat if n["what"] == "ike_mapping"]
    if name.endswith("remap"):
        assert remap and remap[0]["source_changes"] == {"gw-left": 0, "router-in": 0,
                                                        "router-out": 1, "gw-right": 1}
    else:
        assert not remap
    for n in nat:
        if n["what"] == "ike_mapping":
            continue
        assert n["between"] == [["router-in", "router-out"]], n
        assert n["points"]["gw-left"] == n["points"]["router-in"]
        assert n["points"]["router-out"] == n["points"]["gw-right"]
        assert "10.99.0.2" in n["points"]["router-in"]
        assert "198.51.100.1" in n["points"]["router-out"]
    assert not _path(res)["losses"]


def test_nat_two_points_real_capture():
    """The older two-point NAT scenario (inside and outside the NAT): matched through the
    translation, offset near zero, no loss."""
    d = LAB / "ikev2_nat"
    res = _analyse([("inside", [str(d / "ikev2_nat-inside.pcap")], None),
                    ("outside", [str(d / "ikev2_nat.pcap")], None)])
    vp = res.report.vantage_points[1]
    assert vp["matched_packets"] >= 10 and abs(vp["clock_offset_s"]) < TOLERANCE
    path = res.report.tunnels[0]["path"]
    assert path["order"] == ["inside", "outside"] and not path["losses"]


def test_several_plain_files_suggest_vantage(tmp_path):
    """Two plain inputs that hold the same IKE messages at a steady difference: the hint."""
    exp = _expected("ikev2_path_ike_response_lost")
    a = LAB / "ikev2_path_ike_response_lost" / exp["points"][0]["file"]
    b = tmp_path / "b.pcap"
    _shift(LAB / "ikev2_path_ike_response_lost" / exp["points"][3]["file"], b, 3.5)
    res = run([str(a), str(b)])
    hints = [f for f in res.report.findings if f.code == "SEVERAL_CAPTURE_POINTS"]
    assert len(hints) == 1 and "--vantage" in hints[0].detail
    assert "3.5" in hints[0].detail


def test_pieces_of_one_point_no_hint(tmp_path):
    src = LAB / "ikev2_path_ike_response_lost" / "ikev2_path_ike_response_lost.pcap"
    split_halves(src, tmp_path / "1.pcap", tmp_path / "2.pcap")
    res = run([str(tmp_path / "1.pcap"), str(tmp_path / "2.pcap")])
    assert not [f for f in res.report.findings if f.code == "SEVERAL_CAPTURE_POINTS"]


def test_interfaces_of_one_pcapng_as_points(tmp_path):
    """``NAME=FILE#IFACE``: the interfaces of one pcapng file (inside and outside of one box)
    as two points, by interface name and by number."""
    d = LAB / "ikev2_path_esp_oneway"
    out = box(tmp_path / "box.pcapng", [d / f"ikev2_path_esp_oneway-{n}.pcap"
                                        for n in ("router-in", "router-out")], ("m-l", "m-r"))
    for spec in (("m-l", "m-r"), ("0", "1")):
        res = _analyse([("in", [str(out)], spec[0]), ("out", [str(out)], spec[1])])
        path = _path(res)
        assert path["order"] == ["in", "out"]
        assert {(x["kind"], x["direction"], x["from"], x["to"]) for x in path["losses"]} == {
            ("esp", "b_to_a", "out", "in")}


def test_batched_and_per_packet_agree():
    """The ESP samples and holes of the batched fast path equal those of one event per
    packet."""
    pts = _points("ikev2_path_esp_loss")
    a = json.loads(render(_analyse(pts).report, "json"))
    b = json.loads(render(_analyse(pts, batch=False).report, "json"))
    assert a["vantage_points"] == b["vantage_points"]
    assert a["tunnels"][0]["path"] == b["tunnels"][0]["path"]


def test_samples_and_holes_are_bounded():
    """Per SA and point: at most MAX_SAMPLES samples however many packets; holes bounded."""
    from pcapvpn.thresholds import DEFAULT
    from pcapvpn.track import vantage as v

    et = v.PointEspTracker(DEFAULT)
    src, dst = b"\xc0\x00\x02\x02", b"\xc6\x33\x64\x02"
    for seq in range(1, 200_000):
        if seq % 3:  # every third number lost: many holes
            et.esp((0, seq), seq * 1e-3, 4, src, dst, -1, -1, 0x1234, seq, 100)
    s = et.samples[0x1234]
    assert len(s.d) <= v.MAX_SAMPLES
    assert all(not q & s.mask for q in s.d)
    sa = et.all_sas()[0]
    assert len(et.holes[sa]) <= v.MAX_HOLES and sa in et.holes_over


def test_offset_estimate_ntp_way():
    from pcapvpn.track.vantage import estimate_offset

    a, b = b"a", b"b"
    # offset 1.5 s; 10 ms one way, 30 ms back: estimate (10 - 30) / 2 off, uncertainty 20 ms
    pairs = [(t, 1.5 + 0.010 + 0.001 * (t % 3), (a, b)) for t in range(20)]
    pairs += [(t + 0.5, 1.5 - 0.030 - 0.001 * (t % 2), (b, a)) for t in range(20)]
    o = estimate_offset(pairs, 600.0)
    assert abs(o.offset - (1.5 - 0.010)) < 1e-9 and abs(o.uncertainty - 0.020) < 1e-9
    assert o.matched == 40 and not o.one_way
    one = estimate_offset(pairs[:20], 600.0)
    assert one.one_way and one.uncertainty is None


def test_cli_vantage(tmp_path):
    exp = _expected("ikev2_path_esp_oneway")
    args = [f"--vantage={p['name']}={LAB / 'ikev2_path_esp_oneway' / p['file']}"
            for p in exp["points"]]
    cp = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", *args, "--format",
                         "json"], capture_output=True, text=True, cwd=REPO)
    assert cp.returncode == 1, cp.stderr  # ESP_ONE_WAY is an error
    doc = json.loads(cp.stdout)
    assert len(doc["vantage_points"]) == 4
    one_way = [f for f in doc["findings"] if f["code"] == "ESP_ONE_WAY"]
    assert one_way[0]["location"]["from"] == "router-out"
    assert all(fr["point"] == "gw-left" for fr in one_way[0]["evidence"]["frames"])
    bad = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", args[0]],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "at least two points" in bad.stderr
    mixed = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", *args[:2],
                            str(LAB / "ikev2_path_esp_oneway" / "ikev2_path_esp_oneway.pcap")],
                           capture_output=True, text=True, cwd=REPO)
    assert mixed.returncode == 2


def test_evidence_export_from_every_point(tmp_path):
    """--export-evidence takes frames from every point's file, one interface per point and
    original interface, comments naming the point."""
    from pcapvpn.report.evidence import export_evidence
    from dissect.vpn.capture import open_capture

    res = _analyse(_points("ikev2_path_ike_response_lost"))
    out = tmp_path / "ev.pcapng"
    stats = export_evidence(res, str(out))
    assert stats.frames > 0 and stats.missing == 0
    with open(out, "rb") as f:
        r = open_capture(f)
        list(r.records())
        names = [i.name for i in r.interfaces]
    assert any(n.startswith("router-out:") for n in names), names
    assert any(n.startswith("gw-left:") for n in names), names


@pytest.mark.parametrize("name", SCENARIOS)
def test_filters_show_the_evidence_in_each_file(name):
    """Every filter of a several-point report is valid for tshark and shows, in each point's
    file, the evidence frames cited from it."""
    check_filters(_analyse(_points(name)).report.findings)


def test_live_named_points():
    """``live --vantage NAME=IFACE``: interfaces as separate points; the events are the first
    point's, PATH_LOSS is raised live with its location, the final report has the points."""
    from pcapvpn.live import LiveOptions, LiveSession
    from pcapvpn.sources import open_source
    from test_live import FileCapture, Recorder

    name = "ikev2_path_esp_oneway"
    files = [LAB / name / f"{name}-{p}.pcap" for p in ("router-in", "router-out")]
    src = open_source(str(files[0]))
    t0 = next(iter(src.frames()))[2]
    src.close()
    # the second interface's clock 2.5 s ahead (another capture host)
    caps = [FileCapture(files[0]), FileCapture(files[1], shift=2.5)]
    clock = [t0]
    rec = Recorder()
    s = LiveSession(LiveOptions(interfaces=["m-l", "m-r"], points=["router-in", "router-out"]),
                    [rec], clock=lambda: clock[0], captures=caps)
    t = t0
    while not all(c.done for c in caps) or t < t0 + 25:
        for c in caps:
            c.now = t + (2.5 if c is caps[1] else 0.0)
        clock[0] = t
        for i, c in enumerate(caps):
            s._feed(i, c, [])
        s._evaluate(t)
        t += 0.5
    result = s.finish()
    vp = result.report.vantage_points
    assert [p["name"] for p in vp] == ["router-in", "router-out"]
    assert abs(vp[1]["clock_offset_s"] - 2.5) < TOLERANCE
    raised = [e for e in rec.events if e["event"] == "raised"
              and e["finding"]["code"] == "PATH_LOSS"]
    assert raised and raised[0]["finding"]["location"]["from"] == "router-out"
    assert raised[0]["finding"]["location"]["to"] == "router-in"
    one_way = [f for f in result.report.findings if f.code == "ESP_ONE_WAY"]
    assert one_way and one_way[0].location["from"] == "router-out"
    doc = json.loads(render(result.report, "json"))
    jsonschema.validate(doc, SCHEMA)


def _without(tmp_path, src, display_filter, name):
    """A copy of ``src`` without the frames ``display_filter`` selects (none may be left)."""
    out, n = without(tmp_path, src, display_filter, name)
    assert n
    return out


def test_one_way_never_left_the_far_gateway(tmp_path):
    """The responder's ESP seen at no point at all: it never left the far gateway (location
    from None: before the first point of that direction)."""
    name = "ikev2_path_esp_oneway"
    d = LAB / name
    rep = {p: _without(tmp_path, d / f"{name}-{p}.pcap", "esp && ip.src == 198.51.100.2",
                       f"{p}.pcap") for p in ("router-out", "gw-right")}
    res = _analyse(_points(name, replace=rep))
    f = next(f for f in res.report.findings if f.code == "ESP_ONE_WAY")
    assert (f.location["from"], f.location["to"]) == (None, "gw-right"), f.location
    assert not [x for x in _path(res)["losses"] if x["kind"] == "esp"]


def test_request_reached_the_last_point_unanswered(tmp_path):
    """An IKE_AUTH request seen at every point and no response anywhere: the responder (or
    what lies past the last point) did not answer (location to None).  The initiator's later
    requests go too: a request with a higher Message ID would show the IKE_AUTH answered (the
    window is one request until IKE_AUTH completes, RFC 7296 §2.3)."""
    name = "ikev2_path_ike_response_lost"
    d = LAB / name
    flt = "(isakmp.exchangetype == 35 && isakmp.flag_r == 1) || isakmp.messageid >= 2"
    rep = {p: _without(tmp_path, d / f"{name}-{p}.pcap", flt, f"{p}.pcap")
           for p in ("gw-left", "router-in", "router-out", "gw-right")}
    res = _analyse(_points(name, replace=rep))
    fs = [f for f in res.report.findings
          if f.code in ("IKE_NO_RESPONSE", "IKE_RETRANSMISSION", "NAT_T_BLOCKED")]
    assert fs
    for f in fs:
        assert (f.location["from"], f.location["to"]) == ("gw-right", None), f.location
