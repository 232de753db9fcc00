"""What the analysis keeps is bounded (pcapvpn.limits.Limits), what a bound drops is counted and said
(CAPTURE_LIMITS), and the report lists at most ``report_max_items`` of each kind (the rest
counted under ``omitted``) — issue 20, at sizes that run in seconds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "bench"))

import hostile  # noqa: E402

from pcapvpn.analysis import Options, run  # noqa: E402
from pcapvpn.limits import Limits  # noqa: E402
from pcapvpn.findings import MAX_DETAIL, MAX_TITLE, make  # noqa: E402
from pcapvpn.report import render  # noqa: E402

SCHEMA = json.loads((REPO / "docs" / "schema.json").read_text())


def _json(res) -> dict:
    doc = json.loads(render(res.report, "json"))
    jsonschema.validate(doc, SCHEMA)
    return doc


def _limits_finding(res):
    got = [f for f in res.findings if f.code == "CAPTURE_LIMITS"]
    assert len(got) == 1, [f.code for f in res.findings]
    return got[0]


def test_ike_sas_beyond_the_bound_are_counted_not_kept(tmp_path):
    path = hostile.ike_inits(tmp_path / "f.pcap", 400)  # 400 requests, every 4th answered
    res = run([str(path)], Options(limits=Limits(ike_max_sas=100)))
    assert len(res.state.ike_sas) == 100
    f = _limits_finding(res)
    # every message is still counted in the capture summary
    assert res.report.capture.counts.ike == 500
    kept = sum(len(sa.messages) for sa in res.state.ike_sas)
    assert f"{500 - kept:,} IKE messages of further IKE SAs (ike_max_sas = 100)" in f.detail
    # the evidence names the first dropped frame (the 101st request; responses interleave)
    assert f.evidence.frames and f.evidence.frames[0].frame > 100
    assert f.stage == "capture" and not f.failure


@pytest.mark.parametrize("batch", [True, False])
def test_esp_sas_beyond_the_bound_are_counted_in_capture_order(tmp_path, batch):
    path = hostile.esp_spis(tmp_path / "e.pcap", 400, per_spi=3)
    res = run([str(path)], Options(limits=Limits(esp_max_sas=100), batch=batch))
    sas = res.state.esp_sas
    assert len(sas) == 100
    # the SAs tracked are the first 100 to appear, whichever way the packets were handed over
    assert sorted(s.spi for s in sas) == [0x10000000 + i for i in range(100)]
    assert res.report.capture.counts.esp == 1200
    f = _limits_finding(res)
    assert "900 ESP packets of further SAs (esp_max_sas = 100)" in f.detail


def test_messages_of_one_sa_and_bytes_are_bounded(tmp_path):
    path = hostile.skf(tmp_path / "s.pcap", 600)  # 602 messages in one IKE SA
    res = run([str(path)], Options(limits=Limits(ike_max_messages_per_sa=100)))
    sa, = res.state.ike_sas
    assert len(sa.messages) == 100
    assert "502 IKE messages of a full IKE SA (ike_max_messages_per_sa = 100)" in \
        _limits_finding(res).detail
    res = run([str(path)], Options(limits=Limits(ike_max_bytes=20_000)))
    kept = sum(m.size for sa in res.state.ike_sas for m in sa.messages)
    assert kept <= 20_000
    assert "(ike_max_bytes = 20,000)" in _limits_finding(res).detail


def test_report_lists_are_bounded_and_the_rest_counted(tmp_path):
    path = hostile.ike_inits(tmp_path / "f.pcap", 400, sources=400)  # 400 tunnels
    res = run([str(path)], Options(limits=Limits(report_max_items=50)))
    doc = _json(res)
    om = doc["omitted"]
    assert len(doc["tunnels"]) == 50 and om["tunnels"] == len(res.state.tunnels) - 50
    assert sum(om["tunnel_verdicts"].values()) == om["tunnels"]
    assert len(doc["ike_sas"]) == 50 and om["ike_sas"] == len(res.state.ike_sas) - 50
    listed = {f["id"] for f in doc["findings"]}
    assert len(listed) + sum(om.get("findings", {}).values()) == len(res.findings)
    for t in doc["tunnels"]:
        assert set(t["findings"]) <= listed
        assert t["primary_finding"] is None or t["primary_finding"] in listed
        assert set(t["ike_sas"]) <= {sa["id"] for sa in doc["ike_sas"]}
    assert any("not listed in full" in w for w in doc["capture"]["warnings"])
    # the whole analysis decides the exit status: every code and severity is represented
    assert {(f.code, f.severity) for f in res.findings} == \
        {(f["code"], f["severity"]) for f in doc["findings"]}


def test_messages_of_a_long_sa_listed_first_and_last(tmp_path):
    path = hostile.one_sa_exchanges(tmp_path / "x.pcap", 300)
    res = run([str(path)], Options(limits=Limits(report_max_items=40)))
    doc = _json(res)
    sa, = doc["ike_sas"]
    n = len(res.state.ike_sas[0].messages)
    assert len(sa["messages"]) == 40 and sa["messages_omitted"] == n - 40
    nums = [m["n"] for m in sa["messages"]]
    last = res.state.ike_sas[0].messages[-1].n
    assert nums[0] == 1 and nums[-1] == last  # the end state stays visible
    assert len(sa["exchanges"]) == 40 and sa["exchanges_omitted"] > 0


def test_report_within_the_bounds_has_no_omitted_field(tmp_path):
    path = hostile.ike_inits(tmp_path / "f.pcap", 40)
    doc = _json(run([str(path)]))
    assert "omitted" not in doc
    assert all("omitted" not in t for t in doc["tunnels"])


def test_a_findings_text_is_bounded():
    from pcapvpn.rules import load_all

    load_all()
    f = make("CAPTURE_LIMITS", "x", title="t" * 10_000, detail="d" * 100_000)
    assert len(f.title) < MAX_TITLE + 50 and "9,500 more characters" in f.title
    assert len(f.detail) < MAX_DETAIL + 50


def test_trim_keeps_the_negotiation_and_the_latest_exchanges(tmp_path):
    from pcapvpn.decode import Decoder
    from pcapvpn.sources import open_source
    from pcapvpn.track import Tracker

    path = hostile.one_sa_exchanges(tmp_path / "x.pcap", 200)
    tr = Tracker(names=[str(path)])
    Decoder(tr).run_source(open_source(str(path)))
    it = tr.ike_tracker
    sa, = it.sas
    before = len(sa.messages)
    last = sa.messages[-1]
    gone = it.trim(sa, 50)
    assert gone == before - len(sa.messages) and len(sa.messages) <= 50
    assert sa.messages[-1] is last and sa.exchanges[0].exch == 34  # IKE_SA_INIT kept
    assert it.kept == len(sa.messages)
    for i, x in enumerate(sa.exchanges):
        assert x.index == i and all(m.exchange == i for m in x.msgs)
    assert it.dropped["ike_trimmed"] == gone


@pytest.mark.parametrize("item", ["ike_max_sas=0", "esp_max_sas=-3", "report_max_items=x",
                                  "no_such_bound=5", "ike_max_bytes"])
def test_cli_limit_rejects_bad_values(item):
    from click.testing import CliRunner

    from pcapvpn.cli import cli

    r = CliRunner().invoke(cli, ["analyze", "--limit", item, "nofile.pcap"])
    assert r.exit_code == 2 and "--limit" in r.output


def test_tcp_segments_cut_by_the_snapshot_length_hold_no_more_than_one(tmp_path):
    """A stream of segments each cut from 60,000 bytes to 46: every segment's ESP packet is
    read (its SPI and sequence number were captured), and what the reassembly holds at most is
    one segment's worth, however many come."""
    from pcapvpn.decode import Decoder, NullSink
    from pcapvpn.sources import open_source

    class Esp(NullSink):
        def __init__(self):
            self.n = 0

        def esp_tcp(self, *a):
            self.n += 1

    peaks = []
    for n in (200, 400):
        sink = Esp()
        d = Decoder(sink)
        d.run(open_source(str(hostile.tcp_cut_segments(tmp_path / f"cut{n}.pcap", n))).frames())
        d.finish()
        assert sink.n == n and d.decode_errors == 0
        peaks.append(d.tcp.peak_bytes)
    assert peaks[0] == peaks[1] <= 2 * 60000
