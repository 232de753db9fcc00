"""``pcapvpn live --metrics`` scraped by a real Prometheus server (Debian's ``prometheus``).

As root (CI): in a network namespace made by the test, ``pcapvpn live --metrics
127.0.0.1:PORT`` captures on one end of a veth pair while a lab capture is replayed into the
other end; a Prometheus server in the same namespace scrapes it every second.  Through
Prometheus' HTTP query API the test reads the tunnel, its verdict and its ESP counters and
compares them with the final report live prints when stopped.  Every PromQL expression of
``docs/grafana-dashboard.json`` and ``docs/prometheus-alerts.yml`` is run against the same
server (a syntax error or a metric name that does not exist fails).

Without root: ``promtool check rules`` and ``promtool test rules`` on the alert rules (the
second with series written for it in ``tests/data/prometheus-alerts-test.yml``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_live import Live, Netns, _lab, need_root, replay

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CI = os.environ.get("CI", "").lower() == "true"

EXPORTER = "127.0.0.1:9464"
PROMETHEUS = "127.0.0.1:9090"

_QUERY = ("import sys, urllib.parse, urllib.request\n"
          "u = 'http://%s/api/v1/query?query=' + urllib.parse.quote(sys.argv[1])\n"
          "sys.stdout.write(urllib.request.urlopen(u, timeout=10).read().decode())\n")


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        msg = f"{tool} is not installed (Debian package 'prometheus'; .ci/run installs it)"
        print(msg)
        (pytest.fail if CI else pytest.skip)(msg)
    return path


def query(ns, expr: str) -> list:
    """The result vector of an instant query (Prometheus inside ``ns``)."""
    cp = subprocess.run(ns.cmd(sys.executable, "-c", _QUERY % PROMETHEUS, expr),
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, f"query {expr!r}: {cp.stderr}"
    body = json.loads(cp.stdout)
    assert body["status"] == "success", body
    return body["data"]["result"]


def _value(ns, expr: str):
    r = query(ns, expr)
    return float(r[0]["value"][1]) if r else None


def _wait(what, fn, timeout=60.0, step=0.5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = fn()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def dashboard_exprs() -> list[str]:
    """The PromQL of every panel target of the Grafana dashboard, its variables filled in."""
    dash = json.loads((DOCS / "grafana-dashboard.json").read_text())
    out = []
    for panel in dash["panels"]:
        for t in panel.get("targets", ()):
            out.append(t["expr"])
    for v in dash.get("templating", {}).get("list", ()):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q or "")
        if m:
            out.append(m.group(1))
    return [re.sub(r"\$\{?(\w+)\}?", lambda m: {"__rate_interval": "1m",
                                                 "__range": "5m"}.get(m.group(1), ".*"), e)
            for e in out]


def _alert_exprs() -> list[str]:
    """``expr:`` of each rule in the alert rules file (one line each, as written there)."""
    text = (DOCS / "prometheus-alerts.yml").read_text()
    exprs = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*expr:\s*(\|?-?)\s*(.*)$", line)
        if not m:
            continue
        if m.group(1):  # a block scalar: the indented lines below
            ind = None
            body = []
            for nxt in lines[i + 1:]:
                if not nxt.strip():
                    continue
                cur = len(nxt) - len(nxt.lstrip())
                ind = cur if ind is None else ind
                if cur < ind:
                    break
                body.append(nxt.strip())
            exprs.append(" ".join(body))
        else:
            exprs.append(m.group(2).strip().strip("'\""))
    return exprs


def test_promtool_checks_alert_rules():
    promtool = _need("promtool")
    rules = DOCS / "prometheus-alerts.yml"
    cp = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True,
                        timeout=60)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert re.search(r"SUCCESS: \d+ rules found", cp.stdout + cp.stderr)


def test_promtool_alert_rules_fire_on_series():
    """``promtool test rules``: the alerts fire (and only they) on series shaped as the
    exporter writes them."""
    promtool = _need("promtool")
    cp = subprocess.run([promtool, "test", "rules",
                         str(ROOT / "tests" / "data" / "prometheus-alerts-test.yml")],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "SUCCESS" in cp.stdout + cp.stderr


def test_dashboard_is_generated():
    """docs/grafana-dashboard.json is what docs/make_dashboard.py writes (edit the script)."""
    import runpy

    render = runpy.run_path(str(DOCS / "make_dashboard.py"))["render"]
    assert (DOCS / "grafana-dashboard.json").read_text() == render()
    dash = json.loads(render())
    assert dash["uid"] == "pcapvpn-tunnels" and len(dash["panels"]) >= 15
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_dashboard_and_alerts_use_exported_metrics():
    """Every metric name in the dashboard and the alert rules is one the collector exports
    (``pcapvpn_*``) or Prometheus / the process collector provides."""
    from test_metrics import scrape, simulate

    _events, _result, _t0, s = simulate(_lab("ikev2_esp_loss"))
    exported = set(scrape(s))
    exported |= {n.removesuffix("_total") for n in exported}
    exprs = dashboard_exprs() + _alert_exprs()
    assert len(exprs) >= 10
    names = set()
    for e in exprs:
        names.update(n for n in re.findall(r"\b((?:pcapvpn|process)_[a-z_]+)\b", e))
    assert names and names <= exported | {"pcapvpn_tunnel_verdict"}, names - exported


#: what the test reads through Prometheus' query API (in this order)
SCRAPED = {
    "verdicts": "pcapvpn_tunnel_verdict == 1",
    "packets": 'pcapvpn_tunnel_packets_total{protocol="esp"}',
    "bytes": 'pcapvpn_tunnel_bytes_total{protocol="esp"}',
    "lost": "pcapvpn_tunnel_esp_lost_packets",
    "stages": "pcapvpn_tunnel_stage",
    "primary": "pcapvpn_tunnel_primary_finding == 1",
    "failed": "pcapvpn_tunnel_failed_stage == 1",
    "active": "pcapvpn_findings_active",
    "age": "pcapvpn_tunnel_ike_sa_age_seconds",
}


@pytest.mark.root
def test_prometheus_scrapes_live_capture(tmp_path):
    need_root()
    prometheus = _need("prometheus")
    path = _lab("ikev2_esp_loss")
    report = tmp_path / "live.json"
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                   "  evaluation_interval: 1s\n"
                   "rule_files:\n"
                   f"  - {DOCS / 'prometheus-alerts.yml'}\n"
                   "scrape_configs:\n  - job_name: pcapvpn\n    static_configs:\n"
                   f"      - targets: ['{EXPORTER}']\n"
                   "        labels: {sensor: 'test-sensor'}\n")
    with Netns() as ns:
        live = Live(ns, "--events", "jsonl", "--format", "json", "-o", str(report), "--quiet",
                    "--metrics", EXPORTER)
        log = open(tmp_path / "prometheus.log", "w")  # noqa: SIM115 - closed below
        prom = subprocess.Popen(ns.cmd(prometheus, f"--config.file={cfg}",
                                       f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                       f"--web.listen-address={PROMETHEUS}"),
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait("Prometheus to scrape pcapvpn (up == 1)",
                  lambda: _ready(ns) and _value(ns, 'up{job="pcapvpn"}') == 1.0)
            replay(ns, path)
            done = time.time()
            # the ring hands over a partly filled block 50 ms after its first packet; then one
            # evaluation (1 s) gives the verdicts, one scrape (1 s) takes them
            _wait("a scrape of an evaluation after the replay",
                  lambda: (_value(ns, "pcapvpn_live_last_evaluation_timestamp_seconds") or 0)
                  > done + 1.0, timeout=30)
            time.sleep(1.5)  # and one more scrape, so that all series are of that state
            got = {name: query(ns, expr) for name, expr in SCRAPED.items()}
            frames = _value(ns, "sum(pcapvpn_live_frames_total)")
            accepted = _value(ns, "sum(pcapvpn_live_filter_accepted_packets_total)")
            rss = _value(ns, 'process_resident_memory_bytes{job="pcapvpn"}')
            for expr in dashboard_exprs() + _alert_exprs():
                query(ns, expr)  # a syntax error or an unknown function fails here
        finally:
            rc = live.stop()
            prom.terminate()
            try:
                prom.wait(30)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait(10)
            log.close()
    assert rc in (0, 1), "".join(live.err)
    rep = json.loads(report.read_text())
    verdicts, packets, nbytes, lost, stages, primary, failed, active, age = got.values()
    # the tunnel and its verdict, as the final report says
    got = {(r["metric"]["tunnel"], r["metric"]["verdict"]) for r in verdicts}
    assert got == {(t["id"], t["verdict"]) for t in rep["tunnels"]}
    assert got == {("192.0.2.2<->198.51.100.2", "degraded")}
    assert all(r["metric"]["sensor"] == "test-sensor" for r in verdicts)
    # stage, failed stage, primary finding: as the report's tunnel says
    [t] = rep["tunnels"]
    assert [(r["metric"]["stage"], r["value"][1]) for r in stages] == \
        [(t["stage_reached"], "6")]  # dataplane: the 6th stage
    assert [r["metric"]["stage"] for r in failed] == [t["failed_stage"]]
    assert [r["metric"]["code"] for r in primary] == [t["primary_code"]] == ["ESP_SEQUENCE_GAP"]
    # the findings active at the last scrape are the report's (both raised by then)
    assert sorted(r["metric"]["code"] for r in active) == \
        sorted(f["code"] for f in rep["findings"])
    assert age and 0 < float(age[0]["value"][1]) < 3600
    # ESP packets and bytes per direction: the report's esp_sas added up
    a = t["id"].split("<->")[0]
    want: dict = {}
    for e in rep["esp_sas"]:
        d = "a_to_b" if e["src"] == a else "b_to_a"
        p, b, n = want.get(d, (0, 0, 0))
        want[d] = (p + e["packets"], b + e["bytes"], n + e["sequence"]["lost"])
    assert set(want) == {"a_to_b", "b_to_a"}

    def by_dir(res):
        return {r["metric"]["direction"]: float(r["value"][1]) for r in res
                if r["metric"]["tunnel"] == t["id"]}

    assert by_dir(packets) == {d: float(v[0]) for d, v in want.items()}
    assert by_dir(nbytes) == {d: float(v[1]) for d, v in want.items()}
    assert by_dir(lost) == {d: float(v[2]) for d, v in want.items()}
    assert want["a_to_b"][2] > 0  # the lab router dropped some of the initiator's ESP
    # every frame the kernel's filter accepted was read: the 570 VPN frames of the capture
    # (its 2 ARP frames are not captured)
    assert frames == accepted == rep["capture"]["frames"] == 570
    assert rss and rss > 10e6


def _ready(ns) -> bool:
    cp = subprocess.run(ns.cmd(sys.executable, "-c",
                               "import urllib.request;urllib.request.urlopen("
                               f"'http://{PROMETHEUS}/-/ready', timeout=2)"),
                        capture_output=True, timeout=30)
    return cp.returncode == 0
