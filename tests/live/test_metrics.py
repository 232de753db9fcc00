"""``pcapvpn live --metrics``: the Prometheus collector without a server.

Lab captures are fed to a ``LiveSession`` with a simulated clock (``test_live.simulate``: the
same code path as live); the registry's exposition text is parsed back with prometheus-client's
own parser and compared with what the session's final report says: tunnels, verdicts, stage,
ESP packets/bytes per direction, loss, IKE retransmissions, findings.  Counters stay where they
were when the SAs behind them expire.  The exporter itself is scraped over loopback.

The real Prometheus server scraping a live capture in a network namespace is
``tests/live/test_metrics_prometheus.py``.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections import defaultdict

import pytest

from test_live import _lab, simulate

CI = os.environ.get("CI", "").lower() == "true"


def _pc():
    try:
        import prometheus_client
    except ImportError:
        (pytest.fail if CI else pytest.skip)(
            "prometheus-client not installed (pip install -e '.[metrics]'); CI installs it")
    return prometheus_client


def scrape(session, label=None) -> dict:
    """{metric sample name: {frozenset(labels): value}} of one scrape."""
    pc = _pc()
    from prometheus_client.parser import text_string_to_metric_families

    from pcapvpn.metrics import make_registry

    reg, _c = make_registry(session, label)
    return parse(pc.generate_latest(reg).decode(), text_string_to_metric_families)


def parse(text, families) -> dict:
    out: dict = defaultdict(dict)
    for fam in families(text):
        for s in fam.samples:
            out[s.name][frozenset(s.labels.items())] = s.value
    return out


def series(m, name, **labels) -> dict:
    """The samples of ``name`` whose labels include ``labels``, keyed by their other labels."""
    out = {}
    for k, v in m.get(name, {}).items():
        d = dict(k)
        if all(d.get(a) == b for a, b in labels.items()):
            out[tuple(sorted((a, b) for a, b in d.items() if a not in labels))] = v
    return out


def _esp_by_direction(report, tunnel):
    a = tunnel.split("<->")[0]
    out = defaultdict(lambda: [0, 0])
    for e in report["esp_sas"]:
        if {e["src"], e["dst"]} != set(tunnel.split("<->")):
            continue
        d = "a_to_b" if e["src"] == a else "b_to_a"
        out[d][0] += e["packets"]
        out[d][1] += e["bytes"]
    return dict(out)


def _ts(t: dict) -> float:
    """A report time (``{"utc": RFC 3339, "rel": ...}``) as Unix time."""
    from datetime import datetime

    return datetime.fromisoformat(t["utc"].replace("Z", "+00:00")).timestamp()


def _report(result) -> dict:
    import json

    from pcapvpn.report.json import render_json as render

    return json.loads(render(result.report))


def test_collector_matches_final_report():
    _pc()
    events, result, _t0, s = simulate(_lab("ikev2_esp_loss"))
    rep = _report(result)
    m = scrape(s)
    [t] = rep["tunnels"]
    tid = t["id"]
    assert tid == "192.0.2.2<->198.51.100.2"
    verdict = series(m, "pcapvpn_tunnel_verdict", tunnel=tid)
    assert verdict == {(("verdict", "degraded"),): 1.0, (("verdict", "failing"),): 0.0,
                       (("verdict", "healthy"),): 0.0, (("verdict", "unknown"),): 0.0}
    assert t["verdict"] == "degraded"
    assert series(m, "pcapvpn_tunnel_stage", tunnel=tid) == \
        {(("stage", t["stage_reached"]),): 6.0}  # dataplane: the 6th stage
    assert series(m, "pcapvpn_tunnel_primary_finding", tunnel=tid) == \
        {(("code", "ESP_SEQUENCE_GAP"),): 1.0}
    # ESP per direction: the report's esp_sas added up
    want = _esp_by_direction(rep, tid)
    assert want["a_to_b"][0] > 100 and want["b_to_a"][0] > 100
    pk = series(m, "pcapvpn_tunnel_packets_total", tunnel=tid, protocol="esp")
    by = series(m, "pcapvpn_tunnel_bytes_total", tunnel=tid, protocol="esp")
    for d, (p, b) in want.items():
        assert pk[(("direction", d),)] == p
        assert by[(("direction", d),)] == b
    lost = series(m, "pcapvpn_tunnel_esp_lost_packets", tunnel=tid)
    want_lost = {d: sum(e["sequence"]["lost"] for e in rep["esp_sas"]
                        if (e["src"] == "192.0.2.2") == (d == "a_to_b")) for d in want}
    assert lost == {(("direction", d),): float(n) for d, n in want_lost.items()}
    assert want_lost["a_to_b"] > 0  # the router dropped 5 % of the initiator's ESP
    ratio = series(m, "pcapvpn_tunnel_esp_loss_ratio", tunnel=tid)
    assert 0.01 < ratio[(("direction", "a_to_b"),)] < 0.2
    # IKE: messages of the report's IKE SAs, the newest SA's age, the last handshake
    n_msgs = sum(len(sa["messages"]) for sa in rep["ike_sas"])
    assert series(m, "pcapvpn_tunnel_ike_messages_total", tunnel=tid) == {(): n_msgs}
    assert series(m, "pcapvpn_tunnel_ike_retransmissions_total", tunnel=tid) == {(): 0.0}
    first = _ts(rep["ike_sas"][0]["first"])
    age = series(m, "pcapvpn_tunnel_ike_sa_age_seconds", tunnel=tid)[()]
    assert age == pytest.approx(s.clock() - first, abs=1e-5)
    hs = series(m, "pcapvpn_tunnel_last_handshake_timestamp_seconds", tunnel=tid)[()]
    auth = [x for x in rep["ike_sas"][0]["messages"] if x["exchange"] == "IKE_AUTH"]
    assert hs == pytest.approx(_ts(auth[-1]["time"]), abs=1e-5)
    # findings: the active ones, by code / severity, and per tunnel
    active = defaultdict(int)
    for a in s.active.values():
        active[(a.finding.code, str(a.finding.severity), str(a.finding.stage))] += 1
    got = {tuple(v for _k, v in k): n  # labels in name order: code, severity, stage
           for k, n in series(m, "pcapvpn_findings_active").items()}
    assert got == dict(active)
    assert ("ESP_SEQUENCE_GAP", "warning", "dataplane") in got
    # the capture: every frame read, none undecodable, no drops
    assert series(m, "pcapvpn_live_frames_total") == \
        {(("interface", "sim"),): rep["capture"]["frames"]}
    assert series(m, "pcapvpn_live_undecodable_frames_total") == \
        {(): rep["capture"]["decode_errors"]}
    assert all(v == 0 for v in series(m, "pcapvpn_live_capture_drops_total").values())
    assert series(m, "pcapvpn_live_events_total", event="raised")[()] == \
        sum(e["event"] == "raised" for e in events)
    # the process
    assert m["process_resident_memory_bytes"][frozenset()] > 0
    assert series(m, "pcapvpn_info", version=__import__("pcapvpn").__version__)


def test_collector_ike_retransmissions_and_failing():
    _pc()
    _events, result, _t0, s = simulate(_lab("ikev2_no_response"))
    rep = _report(result)
    [t] = rep["tunnels"]
    m = scrape(s)
    assert t["verdict"] == "failing"
    assert series(m, "pcapvpn_tunnel_verdict", tunnel=t["id"], verdict="failing") == {(): 1.0}
    assert series(m, "pcapvpn_tunnel_failed_stage", tunnel=t["id"]) == \
        {(("stage", t["failed_stage"]),): 1.0}
    retx = sum(1 for sa in rep["ike_sas"] for msg in sa["messages"]
               if msg.get("retransmission_of") is not None)
    assert retx >= 2
    assert series(m, "pcapvpn_tunnel_ike_retransmissions_total", tunnel=t["id"]) == {(): retx}
    # nothing established: no SA age, no handshake, no ESP
    assert not series(m, "pcapvpn_tunnel_ike_sa_age_seconds", tunnel=t["id"])
    assert not series(m, "pcapvpn_tunnel_last_handshake_timestamp_seconds", tunnel=t["id"])
    assert not series(m, "pcapvpn_tunnel_packets_total", tunnel=t["id"])


def test_counters_survive_expiry():
    """SAs forgotten (idle expiry / --max-sas) hand their counts to the tunnel: the counters do
    not go down (Prometheus would read a reset)."""
    pc = _pc()
    from prometheus_client.parser import text_string_to_metric_families

    from pcapvpn.metrics import make_registry

    _events, _result, _t0, s = simulate(_lab("ikev2_esp_loss"))
    reg, _c = make_registry(s)
    before = parse(pc.generate_latest(reg).decode(), text_string_to_metric_families)
    ike_old, esp_old = s.tracker.expire(s.clock() + 10_000, 60.0)
    assert esp_old and not s.tracker.esp_tracker._sas
    after = parse(pc.generate_latest(reg).decode(), text_string_to_metric_families)
    for name in ("pcapvpn_tunnel_packets_total", "pcapvpn_tunnel_bytes_total",
                 "pcapvpn_tunnel_ike_messages_total"):
        assert before[name] and after[name] == before[name], name
    assert series(after, "pcapvpn_live_sas", kind="esp") == {(): 0.0}
    assert series(after, "pcapvpn_live_sas_forgotten_total", reason="expired")[()] >= \
        len(esp_old) + len(ike_old)


def test_scrape_while_running_and_redacted_labels():
    """A scrape in the middle of the capture sees what has been read so far; with --redact the
    tunnel label is the report's pseudonym."""
    pc = _pc()
    from prometheus_client.parser import text_string_to_metric_families

    from pcapvpn.live import LiveOptions, LiveSession
    from pcapvpn.metrics import make_registry
    from pcapvpn.redact import Redactor
    from test_live import FileCapture

    path = _lab("ikev2_esp_loss")
    t0 = next(iter(FileCapture(path).it))[2]
    cap = FileCapture(path)
    clock = [t0]
    s = LiveSession(LiveOptions(interfaces=["sim"]), [], clock=lambda: clock[0], captures=[cap])
    red = Redactor(b"k" * 32, hosts=[])
    reg, _c = make_registry(s, red.text)
    seen = []
    t = t0
    while not cap.done:
        cap.now = clock[0] = t
        s._feed(0, cap, [])
        s._evaluate(t)
        m = parse(pc.generate_latest(reg).decode(), text_string_to_metric_families)
        seen.append(sum(m.get("pcapvpn_tunnel_packets_total", {}).values()))
        t += 1.0
    assert seen == sorted(seen) and 0 < seen[len(seen) // 2] < seen[-1]
    labels = {dict(k)["tunnel"] for k in m["pcapvpn_tunnel_verdict"]}
    assert labels == {red.text("192.0.2.2<->198.51.100.2")}
    assert "192.0.2.2" not in pc.generate_latest(reg).decode()
    s.finish()


def test_exporter_serves_http_and_closes():
    _pc()
    from pcapvpn.metrics import start_exporter

    _events, _result, _t0, s = simulate(_lab("ikev2_esp_loss"))
    ex = start_exporter(s, "127.0.0.1:0")
    host, port = ex.address
    try:
        body = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10).read()
    finally:
        ex.close()
    assert b'pcapvpn_tunnel_verdict{tunnel="192.0.2.2<->198.51.100.2",verdict="degraded"} 1.0' \
        in body
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2)


@pytest.mark.parametrize("spec,want", [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:9464", ("::1", 9464)),
    (":9464", ("0.0.0.0", 9464)), ("9464", ("0.0.0.0", 9464)),
    ("localhost:80", ("localhost", 80)),
])
def test_parse_listen(spec, want):
    from pcapvpn.metrics import parse_listen

    assert parse_listen(spec) == want


@pytest.mark.parametrize("spec,why", [
    ("127.0.0.1:http", "not a number"), ("1.2.3.4:70000", "1-65535"),
    ("::1:9464", "[ADDR]:PORT"), ("[::1]9464", "[IPv6]:PORT"), ("host.example:9", "not an IP"),
])
def test_parse_listen_errors(spec, why):
    from pcapvpn.metrics import MetricsError, parse_listen

    with pytest.raises(MetricsError, match=why.replace("[", r"\[").replace("]", r"\]")):
        parse_listen(spec)


def test_missing_extra_is_a_clear_error(monkeypatch):
    """Without prometheus-client, --metrics says which extra to install (exit 2 from live)."""
    from pcapvpn.live import CaptureError, _start_metrics

    class Session:
        closed = False

        def close_captures(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    s = Session()
    with pytest.raises(CaptureError, match=r"pip install 'pcapvpn\[metrics\]'"):
        _start_metrics("127.0.0.1:9464", s, None)
    assert s.closed
    assert _start_metrics(None, s, None) is None


def test_events_doc_names_every_field():
    """docs/events.md, the shippers' field mapping, names every field the jsonl events carry
    (top level, the finding, its evidence), as the running code writes them."""
    import json
    import re
    from pathlib import Path

    from pcapvpn.live import _event_json

    doc = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    rows = "\n".join(line for line in doc.splitlines() if line.startswith("| `"))
    documented = set(re.findall(r"`([a-z_.]+)`", rows))
    events, _result, _t0, s = simulate(_lab("ikev2_esp_loss"))
    events.append({"event": "status", "ts": s.clock(), "status": s.status(s.clock())})
    kinds = {e["event"] for e in events}
    assert {"raised", "status"} <= kinds
    _ev, _r, _t, s2 = simulate(_lab("ikev2_peer_restart_recovery"))
    resolved = [e for e in _ev if e["event"] == "resolved"]
    assert resolved
    missing = set()
    for e in events + resolved:
        j = json.loads(json.dumps(_event_json(e)))
        missing |= {k for k in j if k not in documented}
        f = j.get("finding") or {}
        missing |= {f"finding.{k}" for k in f if f"finding.{k}" not in documented}
        for k in (f.get("evidence") or {}):
            if f"finding.evidence.{k}" not in documented:
                missing.add(f"finding.evidence.{k}")
    assert not missing, f"docs/events.md does not name {sorted(missing)}"


def test_scrapes_in_a_thread_while_capturing_change_nothing():
    """Scrapes run in the exporter's thread while the capture thread feeds packets, evaluates
    and expires SAs: no scrape fails, the counters it reads never go down while the tunnel is
    there (its SAs expire after 3 s of silence: its series go), and the session's final report
    is the one a session without an exporter gives (a scrape only reads)."""
    import threading
    import time

    pc = _pc()
    from prometheus_client.parser import text_string_to_metric_families

    from pcapvpn.live import LiveOptions, LiveSession
    from pcapvpn.metrics import make_registry
    from test_live import FileCapture

    path = _lab("ikev2_esp_loss")

    def run(scrape: bool):
        t0 = next(iter(FileCapture(path).it))[2]
        cap = FileCapture(path)
        clock = [t0]
        s = LiveSession(LiveOptions(interfaces=["sim"], idle_expiry=3.0), [],
                        clock=lambda: clock[0], captures=[cap])
        reg, _c = make_registry(s)
        stop = threading.Event()
        errors, totals = [], []

        def scraper():
            while not stop.is_set():
                try:
                    m = parse(pc.generate_latest(reg).decode(), text_string_to_metric_families)
                    if m.get("pcapvpn_tunnel_packets_total"):  # absent once the tunnel
                        totals.append(sum(m["pcapvpn_tunnel_packets_total"].values()))  # went
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(repr(e))

        th = threading.Thread(target=scraper)
        if scrape:
            th.start()
        t = t0
        while not cap.done or t < t0 + 15:
            cap.now = clock[0] = t
            s._feed(0, cap, [])
            s._evaluate(t)  # also expires SAs silent for 3 s
            t += 0.25
            if scrape:
                time.sleep(0.01)  # let the scraper in between the steps too
        stop.set()
        if scrape:
            th.join(30)
        return _report(s.finish()), errors, totals

    plain, _e, _t = run(False)
    scraped, errors, totals = run(True)
    assert not errors, errors[:3]
    assert len(totals) > 10 and totals == sorted(totals) and totals[-1] > 0
    for r in (plain, scraped):
        r["capture"].pop("stopped", None)
    assert scraped == plain


@pytest.mark.parametrize("spec,hide,why", [
    ("127.0.0.1:http", False, "--metrics 127.0.0.1:http: the port 'http' is not a number"),
    ("127.0.0.1:9464", True, "--metrics needs the prometheus-client package: "
                             "pip install 'pcapvpn[metrics]'"),
])
def test_cli_metrics_errors_before_capturing(spec, hide, why):
    """A bad --metrics address, or the extra missing: one line, exit status 2, before any
    capture is opened (no root needed to be told)."""
    import subprocess

    code = ("import sys\n"
            + ("sys.modules['prometheus_client'] = None\n" if hide else "")
            + "from pcapvpn.cli import main\n"
            "sys.argv = ['pcapvpn', 'live', '-i', 'nonexistent0', '--metrics', sys.argv[1]]\n"
            "main()\n")
    cp = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True,
                        timeout=120)
    assert cp.returncode == 2
    assert cp.stderr.strip() == f"pcapvpn: error: {why}"


def test_counters_of_a_tunnel_missing_from_one_evaluation():
    """An SA whose tunnel is missing from one evaluation (its id changed, the evaluation came
    before it) is not taken for gone: no counter (ESP packets, IKE messages) goes down or
    counts twice."""
    pc = _pc()
    from prometheus_client.parser import text_string_to_metric_families

    from pcapvpn.metrics import make_registry

    _events, _result, _t0, s = simulate(_lab("ikev2_esp_loss"))
    reg, _c = make_registry(s)

    def packets():
        m = parse(pc.generate_latest(reg).decode(), text_string_to_metric_families)
        return (m.get("pcapvpn_tunnel_packets_total", {}),
                m.get("pcapvpn_tunnel_ike_messages_total", {}))

    before = packets()
    assert all(before)
    saved = s.last_eval
    s.last_eval = dict(saved, verdicts=[])
    assert packets() == before  # unmapped this scrape: its last counts stand
    s.last_eval = saved
    assert packets() == before  # mapped again: counted once
