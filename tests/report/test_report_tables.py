"""Tables and headers of the text, Markdown and HTML reports (issue 14): IPv6 endpoints in
brackets, exchanges in time order, cut cells ending in an ellipsis, a capture clock that was
never set or jumped flagged in the header, and the ladder's "capture ended" for requests the
capture could not judge."""

from __future__ import annotations

import re

import synth
from conftest import CAPTURES
from pcapvpn.analysis import run
from pcapvpn.report import render
from pcapvpn.report.summary import clock_note, ike_rows

A, B = bytes.fromhex("0102030405060708"), bytes.fromhex("1112131415161718")
C, D = bytes.fromhex("2122232425262728"), bytes.fromhex("3132333435363738")


def _init_pair(t, ispi, rspi, src, dst):
    return [(t, synth.ike_frame(src, dst, synth.ike_sa_init(ispi, bytes(8), False))),
            (t + 0.01, synth.ike_frame(dst, src, synth.ike_sa_init(ispi, rspi, True)))]


def _auth_pair(t, ispi, rspi, src, dst):
    req = synth.ike_encrypted(ispi, rspi, 35, 1, 35, False, True)
    resp = synth.ike_encrypted(ispi, rspi, 35, 1, 36, True, False)
    return [(t, synth.ike_frame(src, dst, req)), (t + 0.01, synth.ike_frame(dst, src, resp))]


def test_ipv6_endpoints_in_brackets_and_exchanges_in_time_order(tmp_path):
    t = 1_700_000_000.0
    frames = (_init_pair(t + 1, A, B, "2001:db8:1::2", "2001:db8:2::2")
              + _init_pair(t + 2, C, D, "192.0.2.1", "198.51.100.1")
              + _auth_pair(t + 3, A, B, "2001:db8:1::2", "2001:db8:2::2"))
    path = synth.write_pcap(tmp_path / "v6.pcap", sorted(frames))
    report = run([str(path)]).report
    head, rows = ike_rows(report)
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), key=float)
    assert [r[2] for r in rows] == ["IKE_SA_INIT", "IKE_SA_INIT", "IKE_AUTH"]
    assert rows[0][4] == "[2001:db8:1::2]:500 -> [2001:db8:2::2]:500"
    assert rows[1][4] == "192.0.2.1:500 -> 198.51.100.1:500"
    for fmt in ("text", "markdown", "html"):
        out = render(report, fmt).replace("\\[", "[").replace("\\]", "]")  # Markdown escapes
        assert "[2001:db8:1::2]:500" in out, fmt
        assert not re.search(r"(?<!\[)2001:db8:1::2:500", out), fmt


def test_cut_cells_end_with_an_ellipsis():
    from types import SimpleNamespace

    notifies = [f"NOTIFY_NUMBER_{i}" for i in range(10)]
    msg = {"n": 1, "time": {"rel": 0.5, "utc": None}, "src": "192.0.2.1:500",
           "dst": "198.51.100.1:500", "notifies": notifies, "sk_first_payload": None,
           "frames": [{"file": "x", "frame": 1000 + i} for i in range(20)]}
    sa = {"version": 2, "ispi": "0102030405060708", "messages": [msg],
          "exchanges": [{"exchange": "IKE_SA_INIT", "message_id": 0, "answered": False,
                         "status": "unanswered", "messages": [1], "retransmissions": 0}]}
    _head, rows = ike_rows(SimpleNamespace(ike_sas=[sa]))
    assert len(rows[0][8]) == 60 and rows[0][8].endswith("…")
    assert len(rows[0][9]) == 40 and rows[0][9].endswith("…")
    assert rows[0][5] == "NO"
    sa["exchanges"][0]["status"] = "pending"
    assert ike_rows(SimpleNamespace(ike_sas=[sa]))[1][0][5] == "too soon"


def _esp(ts_list):
    return [(t, synth.esp_frame("192.0.2.1", "198.51.100.1", 0x1000, i + 1))
            for i, t in enumerate(ts_list)]


def test_capture_clock_flagged_in_the_header(tmp_path):
    cases = {
        "epoch": ([1.0, 2.0, 3.5], "dated 1970-01-01"),
        "jumped": ([1.0, 2.0, 1_690_392_259.0], "years apart"),
        "future": ([4_102_444_800.0 + i for i in range(3)], "years after"),  # 2100-01-01
        "fine": ([1_700_000_000.0 + i for i in range(3)], None),
    }
    now = 1_717_000_000.0  # 2024-05-29: the clock is frozen, the test does not read it
    for name, (times, want) in cases.items():
        path = synth.write_pcap(tmp_path / f"{name}.pcap", _esp(times))
        report = run([str(path)]).report
        note = clock_note(report.capture, now=now)
        if want is None:
            assert note is None, (name, note)
            continue
        assert want in note, (name, note)
    # the renderers put it in the header, and no duration of 1690392258 s
    report = run([str(tmp_path / "jumped.pcap")]).report
    for fmt in ("text", "markdown", "html"):
        out = render(report, fmt)
        head = (out[out.index("<header>"):out.index("</header>")] if fmt == "html"
                else "\n".join(out.splitlines()[:12]))
        assert "years apart" in head and "1690392258.0 s" not in head, (fmt, head)
    text = render(run([str(tmp_path / "epoch.pcap")]).report, "text")
    assert "Capture clock: dated 1970-01-01" in text.splitlines()[1]


def test_ladder_capture_ended_is_grey_not_a_cross():
    """A request the capture ended too soon to judge (here a DELETE in the capture's last
    frame) is drawn ending in a grey bar labelled "capture ended", not as a red "no response"
    cross; the text says the same."""
    from pcapvpn.report.html_figures import COLORS

    report = run([str(CAPTURES / "public" / "tcpdump" / "ikev2four.pcap")]).report
    sa = next(s for s in report.ike_sas if any(x.get("status") == "pending"
                                               for x in s["exchanges"]))
    html = render(report, "html")
    fig = html[html.index(f'id="sa-{sa["id"]}"'):]
    svg = fig[fig.index("<svg"):fig.index("</svg>")]
    assert "capture ended" in svg
    assert f'stroke="{COLORS["lost"]}"' not in svg and "no response" not in svg
    assert f'stroke="{COLORS["ended"]}"' in svg
    md = render(report, "markdown")
    assert "capture ended" in md and "NO RESPONSE" not in md
