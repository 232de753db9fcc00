"""Write docs/grafana-dashboard.json, the sample Grafana dashboard over ``pcapvpn live
--metrics`` (docs/metrics.md).

    python docs/make_dashboard.py      # rewrites docs/grafana-dashboard.json

Edit the panels here, not in the JSON: tests/live/test_metrics_prometheus.py checks that the JSON is
this script's output, that every metric it names is exported, and (as root, CI) runs every
expression against a real Prometheus scraping a live capture.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "grafana-dashboard.json"

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'
TSEL = 'instance=~"$instance", tunnel=~"$tunnel"'


def build() -> dict:
    """The dashboard as Grafana's JSON model."""
    panels = []
    y = [0]

    def panel(kind, title, exprs, w=12, h=8, x=0, unit=None, desc="", legend=None, extra=None):
        p = {"type": kind, "title": title, "description": desc, "datasource": DS,
             "gridPos": {"h": h, "w": w, "x": x, "y": y[0]},
             "targets": [{"datasource": DS, "refId": chr(65 + i), "expr": e,
                          "legendFormat": (legend[i] if legend else "__auto")}
                         for i, e in enumerate(exprs)],
             "fieldConfig": {"defaults": {}, "overrides": []}, "options": {}}
        if kind in ("table", "stat", "bargauge"):  # the value now, not a time series
            for t in p["targets"]:
                t["instant"] = True
                t["range"] = False
                if kind == "table":
                    t["format"] = "table"
        if unit:
            p["fieldConfig"]["defaults"]["unit"] = unit
        if extra:
            for k, v in extra.items():
                if k == "defaults":
                    p["fieldConfig"]["defaults"].update(v)
                else:
                    p[k] = v
        panels.append(p)
        return p

    def row(title):
        panels.append({"type": "row", "title": title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y[0]}, "panels": []})
        y[0] += 1

    VERDICT_MAP = [{"type": "value", "options": {
        "0": {"text": "healthy", "color": "green", "index": 0},
        "1": {"text": "degraded", "color": "orange", "index": 1},
        "2": {"text": "failing", "color": "red", "index": 2},
        "3": {"text": "unknown", "color": "text", "index": 3}}}]
    verdict_code = (f'max by (instance, tunnel) (pcapvpn_tunnel_verdict{{{TSEL}, verdict="degraded"}})'
                    f' + 2 * max by (instance, tunnel) (pcapvpn_tunnel_verdict{{{TSEL}, verdict="failing"}})'
                    f' + 3 * max by (instance, tunnel) (pcapvpn_tunnel_verdict{{{TSEL}, verdict="unknown"}})')

    row("Tunnels")
    panel("stat", "Tunnels by verdict", [f'sum by (verdict) (pcapvpn_tunnel_verdict{{{SEL}}})'],
          w=8, h=6, legend=["{{verdict}}"],
          desc="How many tunnels each verdict has now (docs/verdicts.md).",
          extra={"options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background",
                             "textMode": "value_and_name"},
                 "defaults": {"color": {"mode": "thresholds"},
                              "thresholds": {"mode": "absolute", "steps": [{"color": "blue", "value": None}]}}})
    panel("table", "Tunnels that are not healthy",
          [f'pcapvpn_tunnel_verdict{{{TSEL}, verdict!="healthy"}} == 1',
           f'pcapvpn_tunnel_primary_finding{{{TSEL}}}',
           f'pcapvpn_tunnel_stage{{{TSEL}}}'],
          w=16, h=6, x=8, legend=["verdict", "primary", "stage"],
          desc="Each failing / degraded / unknown tunnel, the finding that explains it and the stage "
               "it reached; the sensor's event stream has the evidence frames and advice.",
          extra={"options": {"showHeader": True},
                 "transformations": [
                     {"id": "merge", "options": {}},
                     {"id": "filterByValue", "options": {"type": "include", "match": "any",
                                                         "filters": [{"fieldName": "verdict",
                                                                      "config": {"id": "isNotNull", "options": {}}}]}},
                     {"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True, "job": True},
                                                    "renameByName": {"Value #A": "is", "Value #B": "primary",
                                                                     "Value #C": "stage #"}}}]})
    y[0] += 6
    panel("state-timeline", "Verdict over time", [verdict_code], w=24, h=8,
          legend=["{{tunnel}} ({{instance}})"],
          desc="0 healthy, 1 degraded, 2 failing, 3 unknown.",
          extra={"defaults": {"mappings": VERDICT_MAP, "color": {"mode": "thresholds"},
                              "thresholds": {"mode": "absolute", "steps": [
                                  {"color": "green", "value": None}, {"color": "orange", "value": 1},
                                  {"color": "red", "value": 2}, {"color": "text", "value": 3}]}},
                 "options": {"showValue": "never", "mergeValues": True}})
    y[0] += 8
    row("Data plane")
    panel("timeseries", "ESP/VPN packets per second",
          [f'sum by (instance, tunnel, direction) (rate(pcapvpn_tunnel_packets_total{{{TSEL}}}[$__rate_interval]))'],
          unit="pps", legend=["{{tunnel}} {{direction}}"],
          desc="a_to_b: from the first address of the tunnel id (the IKE initiator / the VPN client).")
    panel("timeseries", "ESP/VPN throughput",
          [f'8 * sum by (instance, tunnel, direction) (rate(pcapvpn_tunnel_bytes_total{{{TSEL}}}[$__rate_interval]))'],
          x=12, unit="bps", legend=["{{tunnel}} {{direction}}"])
    y[0] += 8
    panel("timeseries", "ESP loss (over the SAs tracked)",
          [f'pcapvpn_tunnel_esp_loss_ratio{{{TSEL}}}'], unit="percentunit",
          legend=["{{tunnel}} {{direction}}"],
          desc="Sequence numbers skipped and never seen / sequence numbers used, over the SAs the "
               "sensor tracks now (as esp_sas[].sequence.loss_pct).")
    panel("timeseries", "ESP sequence numbers lost per minute",
          [f'clamp_min(delta(pcapvpn_tunnel_esp_lost_packets{{{TSEL}}}[5m]), 0) / 5'], x=12,
          legend=["{{tunnel}} {{direction}}"])
    y[0] += 8
    row("IKE")
    panel("timeseries", "IKE retransmissions", [
        f'increase(pcapvpn_tunnel_ike_retransmissions_total{{{TSEL}}}[$__rate_interval])'],
          w=8, legend=["{{tunnel}}"])
    panel("timeseries", "IKE SA age", [f'pcapvpn_tunnel_ike_sa_age_seconds{{{TSEL}}}'], w=8, x=8,
          unit="s", legend=["{{tunnel}}"],
          desc="Age of the newest established IKE SA: it drops at each IKE SA rekey.")
    panel("timeseries", "Time since the last handshake",
          [f'time() - pcapvpn_tunnel_last_handshake_timestamp_seconds{{{TSEL}}}'], w=8, x=16,
          unit="s", legend=["{{tunnel}}"],
          desc="Since the last answered IKE_SA_INIT / IKE_AUTH / CREATE_CHILD_SA (IKEv1 Main, "
               "Aggressive, Quick Mode) or WireGuard handshake.")
    y[0] += 8
    row("Findings")
    panel("bargauge", "Active findings by code", [
        f'sum by (code, severity) (pcapvpn_findings_active{{{SEL}}})'], w=12,
          legend=["{{code}} ({{severity}})"],
          extra={"options": {"displayMode": "basic", "orientation": "horizontal",
                             "reduceOptions": {"calcs": ["lastNotNull"]}}})
    panel("timeseries", "Findings raised / resolved per minute", [
        f'sum by (instance, event) (rate(pcapvpn_live_events_total{{{SEL}}}[$__rate_interval])) * 60'],
          x=12, legend=["{{instance}} {{event}}"])
    y[0] += 8
    row("Sensors")
    panel("timeseries", "Frames captured per second", [
        f'sum by (instance) (rate(pcapvpn_live_frames_total{{{SEL}}}[$__rate_interval]))'],
          w=8, unit="pps", legend=["{{instance}}"])
    panel("timeseries", "Capture drops and undecodable frames", [
        f'sum by (instance, where) (increase(pcapvpn_live_capture_drops_total{{{SEL}}}[$__rate_interval]))',
        f'increase(pcapvpn_live_undecodable_frames_total{{{SEL}}}[$__rate_interval])'],
          w=8, x=8, legend=["{{instance}} dropped ({{where}})", "{{instance}} undecodable"])
    panel("timeseries", "SAs tracked", [
        f'sum by (instance, kind) (pcapvpn_live_sas{{{SEL}}})',
        f'max by (instance) (pcapvpn_live_max_sas{{{SEL}}})'],
          w=8, x=16, legend=["{{instance}} {{kind}}", "{{instance}} --max-sas"])
    y[0] += 8
    panel("timeseries", "Sensor CPU", [
        f'rate(process_cpu_seconds_total{{job="pcapvpn", {SEL}}}[$__rate_interval])'],
          w=8, unit="percentunit", legend=["{{instance}}"],
          desc="CPU seconds per second of the live process (1 = one core).")
    panel("timeseries", "Sensor memory (RSS)", [
        f'process_resident_memory_bytes{{job="pcapvpn", {SEL}}}'], w=8, x=8, unit="bytes",
          legend=["{{instance}}"])
    panel("timeseries", "Rule evaluation time", [
        f'pcapvpn_live_last_evaluation_duration_seconds{{{SEL}}}'], w=8, x=16, unit="s",
          legend=["{{instance}}"])
    y[0] += 8

    dash = {
        "description": "pcapvpn live --metrics: sample Grafana dashboard (docs/metrics.md). Import it "
                     "in Grafana (Dashboards > New > Import) and pick your Prometheus data source.",
        "title": "pcapvpn: VPN tunnels",
        "uid": "pcapvpn-tunnels",
        "tags": ["pcapvpn", "vpn", "ipsec"],
        "timezone": "utc",
        "schemaVersion": 38,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"type": "datasource", "name": "datasource", "label": "Prometheus", "query": "prometheus",
             "current": {}, "hide": 0},
            {"type": "query", "name": "instance", "label": "Sensor", "datasource": DS,
             "query": {"query": "label_values(pcapvpn_info, instance)", "refId": "instance"},
             "definition": "label_values(pcapvpn_info, instance)",
             "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "current": {}},
            {"type": "query", "name": "tunnel", "label": "Tunnel", "datasource": DS,
             "query": {"query": 'label_values(pcapvpn_tunnel_verdict{instance=~"$instance"}, tunnel)',
                       "refId": "tunnel"},
             "definition": 'label_values(pcapvpn_tunnel_verdict{instance=~"$instance"}, tunnel)',
             "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "current": {}},
        ]},
        "annotations": {"list": []},
        "panels": [],
    }
    for i, p in enumerate(panels):
        p["id"] = i + 1
    dash["panels"] = panels
    return dash


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
