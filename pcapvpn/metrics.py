"""``pcapvpn live --metrics ADDR:PORT``: the live state of every tunnel for Prometheus.

A custom collector (:class:`LiveCollector`) reads the running session when Prometheus scrapes
it; nothing is counted per packet for it (the capture loop does not know the exporter exists):

* the counters the trackers keep anyway (packets and bytes of each ESP/AH SA and of each
  OpenVPN/WireGuard/L2TP/PPTP/SSL-VPN tunnel, ESP sequence loss, IKE messages and their
  retransmissions, capture drops, undecodable frames) are read as they are at the scrape;
* what the rules decide (each tunnel's verdict, the stage it reached, its primary finding, the
  active findings) is that of the last rule evaluation, at most ``eval_interval`` (1 s) old;
* the process (CPU, resident memory, open files: ``process_*``) and Python (``python_*``)
  come from prometheus-client's own collectors.

The scrape runs in the exporter's thread while the capture thread changes the trackers: the
collector only copies their lists and dicts (one C-level copy each, atomic under the GIL: no
"changed size during iteration") and reads plain integers and times; it calls no tracker method
that changes anything (``Tracker.state`` annotates and rebuilds) and none that costs more than a
copy (``EspTracker.all_sas`` sorts).  A scrape therefore sees each counter as it was at some
moment of the scrape, not all of them at one instant, as with any exporter.

Counters stay monotonic when SAs go: an SA expired (``--idle-expiry``) or evicted
(``--max-sas``) hands its last counts to its tunnel's total.  Label values are bounded: one
series set per tunnel, and the tunnels are bounded by ``--max-sas`` (every tunnel holds at least
one SA) and ``Limits.vpn_max_tunnels``; finding codes and severities are fixed catalogues.

``docs/metrics.md`` lists the metrics; ``docs/grafana-dashboard.json`` and
``docs/prometheus-alerts.yml`` use them.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter, defaultdict

__all__ = ["MetricsError", "LiveCollector", "Exporter", "parse_listen", "require",
           "start_exporter"]

INSTALL_HINT = "pip install 'pcapvpn[metrics]'"

#: the verdicts every tunnel gets a 0/1 series of (docs/verdicts.md)
VERDICTS = ("healthy", "degraded", "failing", "unknown")



def _handshakes() -> frozenset:
    """IKE exchanges that create or rekey SAs: their last answer is a tunnel's "last
    handshake" (RFC 7296 §1.2-1.3; RFC 2409 §5: Main, Aggressive and Quick Mode)."""
    from dissect.vpn.registry import ExchangeType as X

    return frozenset(int(x) for x in (X.IKE_SA_INIT, X.IKE_AUTH, X.CREATE_CHILD_SA,
                                      X.MAIN_MODE, X.AGGRESSIVE, X.QUICK_MODE))


def _esp_sas(s) -> list:
    """The session's ESP SAs, a copy (``all_sas()`` would sort them); ``live --workers``: with
    the workers' latest snapshots (``esp_sas_now``)."""
    now = getattr(s, "esp_sas_now", None)
    return now() if now is not None else list(s.tracker.esp_tracker._sas)


class MetricsError(Exception):
    """A --metrics address that cannot be used, or the extra not installed."""


def parse_listen(spec: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``[IPv6]:PORT``, ``:PORT`` (every address) or ``PORT`` → (addr, port)."""
    s = spec.strip()
    host, port = "", s
    if s.startswith("["):
        end = s.find("]")
        if end < 0 or not s[end + 1:].startswith(":"):
            raise MetricsError(f"--metrics {spec}: expected [IPv6]:PORT")
        host, port = s[1:end], s[end + 2:]
    elif ":" in s:
        host, _, port = s.rpartition(":")
        if ":" in host:
            raise MetricsError(f"--metrics {spec}: write an IPv6 address as [ADDR]:PORT")
    try:
        n = int(port)
    except ValueError:
        raise MetricsError(f"--metrics {spec}: the port {port!r} is not a number") from None
    if not 0 <= n < 65536:  # 0: a free port the system picks (tests)
        raise MetricsError(f"--metrics {spec}: the port must be 1-65535")
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost":
                raise MetricsError(f"--metrics {spec}: {host!r} is not an IP address") from None
    return host or "0.0.0.0", n


def require():
    """prometheus_client, or :class:`MetricsError` saying which extra to install."""
    try:
        import prometheus_client
    except ImportError:
        raise MetricsError(f"--metrics needs the prometheus-client package: {INSTALL_HINT}") \
            from None
    return prometheus_client


def _pair(x: bytes, y: bytes) -> tuple:
    return (x, y) if x <= y else (y, x)


class LiveCollector:
    """A prometheus-client collector over a :class:`pcapvpn.live.session.LiveSession` (read only).

    ``label``: maps a tunnel id to its label value (``--redact``: the pseudonymised id).
    ``clock``: the session's clock (ages and ``now``)."""

    def __init__(self, session, label=None, clock=None):
        self.s = session
        self.label = label or (lambda tid: tid)
        self.clock = clock or getattr(session, "clock", time.time)
        self._lock = threading.Lock()
        self._ids: dict = {}  # tunnel id -> (packed a, packed b) or None (not IPsec)
        # counters kept monotonic across expiry: per SA the counts of the last scrape, per
        # (tunnel, protocol, direction) the counts of the SAs gone since
        self._esp_last: dict = {}  # id(sa) -> (sa, key, packets, bytes)
        self._esp_gone: dict = defaultdict(lambda: [0, 0])
        self._ike_seen: dict = {}  # id(sa) -> (sa, highest message number counted, tunnel)
        self._retx: Counter = Counter()  # tunnel id -> IKE retransmissions counted
        self._ike_msgs: Counter = Counter()  # tunnel id -> IKE messages counted

    def describe(self):
        return []  # the families depend on the state: nothing to collect at registration

    # -- the families ------------------------------------------------------------------------

    def collect(self):
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            InfoMetricFamily)

        with self._lock:
            yield from self._collect(CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily)

    def _collect(self, C, G, Info):
        from pcapvpn import __version__

        s = self.s
        now = self.clock()
        info = Info("pcapvpn", "pcapvpn version and the interfaces live captures on")
        info.add_metric([], {"version": __version__,
                             "interfaces": ",".join(map(str, s.opts.interfaces))})
        yield info
        yield G("pcapvpn_live_start_time_seconds", "When the live capture started (Unix time)",
                value=s.started)
        yield G("pcapvpn_live_last_evaluation_timestamp_seconds",
                "When the verdicts and findings below were last evaluated (Unix time)",
                value=(s.last_eval or {}).get("now", 0.0))
        active = list(s.active.values())  # the findings raised and not resolved
        yield from self._capture(C, G)
        yield from self._engine(C, G, active)
        yield from self._tunnels(C, G, now, active)

    def _capture(self, C, G):
        s = self.s
        frames = C("pcapvpn_live_frames", "Frames read from the capture rings / pipes",
                   labels=["interface"])
        byts = C("pcapvpn_live_captured_bytes", "Bytes of the frames read", labels=["interface"])
        drops = C("pcapvpn_live_capture_drops",
                  "Packets the capture lost: 'ring' = the socket's ring buffer was full "
                  "(the kernel's tp_drops), 'interface' = the NIC missed them "
                  "(rx_missed_errors + rx_fifo_errors); refreshed at each evaluation",
                  labels=["interface", "where"])
        seen = C("pcapvpn_live_filter_accepted_packets",
                 "Packets the capture filter accepted (the kernel's tp_packets); refreshed at "
                 "each evaluation", labels=["interface"])
        per_iface: Counter = Counter()
        for src in list(s.sources):  # frames of the spans still counted (rotated files too)
            for k, n in list(src.interface_frames.items()):
                per_iface[src._ifaces[k]] += n  # k: the index among the source's interfaces
        caps = list(s.captures)
        names = list(s.opts.interfaces)
        # one series per interface: with --workers several captures (a ring per worker and
        # interface) share an interface's name, and a scrape must not repeat a label set
        per_name: dict = {}
        for i, c in enumerate(caps):
            name = str(names[i] if len(names) == len(caps) else c.name)
            t = s.totals[i] if i < len(s.totals) else {}
            acc = per_name.setdefault(name, Counter())
            acc["frames"] += per_iface.get(i, 0)
            acc["bytes"] += getattr(c, "bytes", 0)
            acc["osdrop"] += t.get("osdrop", 0)
            acc["ifdrop"] += t.get("ifdrop", 0)
            acc["filteraccept"] += t.get("filteraccept", 0)
        for name, acc in per_name.items():
            frames.add_metric([name], acc["frames"])
            byts.add_metric([name], acc["bytes"])
            drops.add_metric([name, "ring"], acc["osdrop"])
            drops.add_metric([name, "interface"], acc["ifdrop"])
            seen.add_metric([name], acc["filteraccept"])
        yield from (frames, byts, drops, seen)
        decoders = [s.decoder] + [pt.decoder for pt in list(getattr(s, "points", []))[1:]]
        trackers = [s.tracker] + [pt.tracker for pt in list(getattr(s, "points", []))[1:]]
        bad = sum(d.decode_errors for d in decoders) + sum(
            t.ike_tracker.parse_error_count for t in trackers)
        yield C("pcapvpn_live_undecodable_frames",
                "Frames (and IKE messages) that could not be decoded, as the report's "
                "capture.decode_errors", value=bad)
        yield C("pcapvpn_live_truncated_frames",
                "Frames captured shorter than they were on the wire (snap length)",
                value=sum(d.truncated for d in decoders))

    def _engine(self, C, G, active):
        s = self.s
        sas = G("pcapvpn_live_sas", "SAs tracked (bounded by --max-sas)", labels=["kind"])
        sas.add_metric(["ike"], len(s.tracker.ike_tracker.sas))
        sas.add_metric(["esp"], len(_esp_sas(s)))
        sas.add_metric(["vpn"], len(s.tracker.vpn_tracker.tunnels))
        yield sas
        yield G("pcapvpn_live_max_sas", "The --max-sas bound", value=s.opts.max_sas)
        gone = C("pcapvpn_live_sas_forgotten",
                 "SAs forgotten: 'expired' after --idle-expiry of silence, 'evicted' beyond "
                 "--max-sas", labels=["reason"])
        gone.add_metric(["expired"], s.tracker.expired_sas)
        gone.add_metric(["evicted"], s.tracker.evicted_sas)
        yield gone
        yield C("pcapvpn_live_evaluations", "Rule evaluations run", value=s.evaluations)
        yield C("pcapvpn_live_evaluation_seconds", "Time spent evaluating the rules",
                value=s.eval_seconds)
        yield G("pcapvpn_live_last_evaluation_duration_seconds",
                "Duration of the last rule evaluation", value=s.last_cost)
        ev = C("pcapvpn_live_events", "Findings raised / resolved (the event stream's events)",
               labels=["event"])
        ev.add_metric(["raised"], s.raised)
        ev.add_metric(["resolved"], s.resolved)
        yield ev
        yield C("pcapvpn_live_events_dropped",
                "Events dropped because their reader (stdout, --exec) did not keep up",
                value=sum(getattr(x, "dropped", 0) for x in list(s.sinks)))
        by_code = G("pcapvpn_findings_active",
                    "Findings raised and not resolved, by code, severity and stage",
                    labels=["code", "severity", "stage"])
        for (code, sev, stage), n in sorted(Counter(
                (a.finding.code, str(a.finding.severity), str(a.finding.stage))
                for a in active).items()):
            by_code.add_metric([code, sev, stage], n)
        yield by_code

    def _tunnels(self, C, G, now, active):
        s = self.s
        res = s.last_eval or {}
        verdicts = list(res.get("verdicts", ()))
        label = self.label
        ids = {v.tunnel for v in verdicts}
        vfam = G("pcapvpn_tunnel_verdict",
                 "1 for the tunnel's verdict (healthy, degraded, failing, unknown), 0 for the "
                 "others", labels=["tunnel", "verdict"])
        stage = G("pcapvpn_tunnel_stage",
                  "The stage the tunnel reached (value: its position in the troubleshooting "
                  "order, reachability = 1 ... stability = 9; label: its name)",
                  labels=["tunnel", "stage"])
        failed = G("pcapvpn_tunnel_failed_stage",
                   "1 for the stage that failed (the report's failed_stage: a failing tunnel's, "
                   "or the stage of what degraded it)", labels=["tunnel", "stage"])
        primary = G("pcapvpn_tunnel_primary_finding",
                    "1 for the code of the finding that explains the verdict",
                    labels=["tunnel", "code"])
        count = G("pcapvpn_live_tunnels", "Tunnels by verdict (all of them, whatever their "
                  "number: the sensor's summary)", labels=["verdict"])
        by_verdict = Counter(v.verdict for v in verdicts)
        for name in VERDICTS:
            count.add_metric([name], by_verdict.get(name, 0))
        yield count
        order = _stage_order()
        for v in verdicts:
            t = label(v.tunnel)
            for name in VERDICTS:
                vfam.add_metric([t, name], 1.0 if v.verdict == name else 0.0)
            stage.add_metric([t, str(v.stage_reached)], order.get(str(v.stage_reached), 0))
            if v.failed_stage:
                failed.add_metric([t, str(v.failed_stage)], 1.0)
            if v.primary_code:
                primary.add_metric([t, v.primary_code], 1.0)
        yield from (vfam, stage, failed, primary)
        # active findings per tunnel and severity
        fin = G("pcapvpn_tunnel_findings_active", "Findings raised and not resolved, per tunnel "
                "and severity", labels=["tunnel", "severity"])
        per = Counter((a.finding.tunnel, str(a.finding.severity))
                      for a in active if a.finding.tunnel)
        for (tid, sev), n in sorted(per.items()):
            fin.add_metric([label(tid), sev], n)
        yield fin
        index = self._ipsec_index(ids)
        handshakes: dict = {}  # tunnel id -> last handshake (Unix time)
        yield from self._dataplane(C, G, ids, index, handshakes)
        yield from self._ike(C, G, ids, index, handshakes, now)

    def _ipsec_index(self, ids) -> dict:
        """(lower, higher packed address) -> (tunnel id, packed a) for the IPsec tunnels (ids
        ``A<->B``; the other VPNs' ids name a port and transport)."""
        known = self._ids
        self._ids = {}
        out = {}
        for tid in ids:
            ab = known[tid] if tid in known else _addresses(tid)
            self._ids[tid] = ab
            if ab is not None:
                out[_pair(*ab)] = (tid, ab[0])
        return out

    def _dataplane(self, C, G, ids, index, handshakes):
        s = self.s
        pk = C("pcapvpn_tunnel_packets", "Packets of the tunnel's data plane per direction "
               "(a_to_b: from the first address of the tunnel id, the IKE initiator / the VPN "
               "client): ESP and AH SAs, or the whole OpenVPN / WireGuard / L2TP / PPTP / "
               "SSL-VPN conversation", labels=["tunnel", "protocol", "direction"])
        by = C("pcapvpn_tunnel_bytes", "Bytes of those packets (as the report's esp_sas[].bytes"
               " / vpn tunnels' bytes)", labels=["tunnel", "protocol", "direction"])
        lost = G("pcapvpn_tunnel_esp_lost_packets",
                 "ESP/AH sequence numbers skipped and never seen in the replay window, over the "
                 "SAs tracked now (as esp_sas[].sequence.lost)", labels=["tunnel", "direction"])
        ratio = G("pcapvpn_tunnel_esp_loss_ratio",
                  "Lost / expected sequence numbers over the SAs tracked now (0..1)",
                  labels=["tunnel", "direction"])
        last = G("pcapvpn_tunnel_last_packet_timestamp_seconds",
                 "When the tunnel last carried a data-plane packet (Unix time)", labels=["tunnel"])
        totals: dict = defaultdict(lambda: [0, 0])
        loss: dict = defaultdict(lambda: [0, 0])
        latest: dict = {}
        now_sas: dict = {}
        last_seen = self._esp_last
        for e in _esp_sas(s):
            hit = index.get(_pair(e.src, e.dst))
            if hit is None:  # its tunnel comes with the next evaluation
                old = last_seen.get(id(e))
                if old is not None:  # still there, not gone: its counts of the last scrape
                    now_sas[id(e)] = old
                    tot = totals[old[1]]
                    tot[0] += old[2]
                    tot[1] += old[3]
                continue
            tid, a = hit
            d = "a_to_b" if e.src == a else "b_to_a"
            key = (tid, e.proto, d)
            p, b = e.packets, e.bytes
            now_sas[id(e)] = (e, key, p, b)
            tot = totals[key]
            tot[0] += p
            tot[1] += b
            lo = loss[(tid, d)]
            lo[0] += e.lost
            lo[1] += e.expected
            if e.last_ts is not None and e.last_ts > latest.get(tid, float("-inf")):
                latest[tid] = e.last_ts
        for k, (_e, key, p, b) in last_seen.items():
            if k not in now_sas:  # expired or evicted since the last scrape
                g = self._esp_gone[key]
                g[0] += p
                g[1] += b
        self._esp_last = now_sas
        for key in list(self._esp_gone):
            if key[0] not in ids and key not in totals:
                del self._esp_gone[key]  # the tunnel itself is gone
        for key, g in self._esp_gone.items():
            tot = totals[key]
            tot[0] += g[0]
            tot[1] += g[1]
        for (tid, proto, d), (p, b) in sorted(totals.items()):
            pk.add_metric([self.label(tid), proto, d], p)
            by.add_metric([self.label(tid), proto, d], b)
        for (tid, d), (n, exp) in sorted(loss.items()):
            lost.add_metric([self.label(tid), d], n)
            ratio.add_metric([self.label(tid), d], n / exp if exp > 0 else 0.0)
        # the other VPNs: their tunnels count per direction (0: client -> server)
        for t in list(s.tracker.vpn_tracker.tunnels.values()):
            tid = t.id
            if tid not in ids:
                continue
            for i, d in enumerate(("a_to_b", "b_to_a")):
                pk.add_metric([self.label(tid), t.protocol, d], t.pkts[i])
                by.add_metric([self.label(tid), t.protocol, d], t.bytes[i])
            if t.last_ts is not None:
                latest[tid] = max(latest.get(tid, float("-inf")), t.last_ts)
            if t.protocol == "wireguard":
                ts = _wg_handshake(t)
                if ts is not None:
                    handshakes[tid] = ts
        for tid, ts in sorted(latest.items()):
            last.add_metric([self.label(tid)], ts)
        yield from (pk, by, lost, ratio, last)

    def _ike(self, C, G, ids, index, handshakes, now):
        s = self.s
        hs_kinds = _handshakes()
        msgs = C("pcapvpn_tunnel_ike_messages", "IKE messages seen (retransmissions included)",
                 labels=["tunnel"])
        retx = C("pcapvpn_tunnel_ike_retransmissions",
                 "IKE messages that were retransmissions of an earlier request or response "
                 "(RFC 7296 §2.1)", labels=["tunnel"])
        n_sas = G("pcapvpn_tunnel_ike_sas", "IKE SAs tracked for the tunnel (all generations)",
                  labels=["tunnel"])
        age = G("pcapvpn_tunnel_ike_sa_age_seconds",
                "Age of the tunnel's newest established IKE SA not deleted (since its first "
                "message)", labels=["tunnel"])
        hs = G("pcapvpn_tunnel_last_handshake_timestamp_seconds",
               "When the last SA-creating exchange was answered (IKE_SA_INIT, IKE_AUTH, "
               "CREATE_CHILD_SA; IKEv1 Main / Aggressive / Quick Mode; a WireGuard handshake "
               "response) (Unix time)", labels=["tunnel"])
        seen_now: dict = {}  # id(sa) -> (sa, highest message number counted, tunnel id)
        carried = set()  # tunnels of SAs still there but missing from this evaluation
        count: Counter = Counter()
        newest: dict = {}
        last_hs = handshakes
        for sa in list(s.tracker.ike_tracker.sas):
            if sa.initiator is None or sa.responder is None:
                continue
            k = id(sa)
            hit = index.get(_pair(sa.initiator[1], sa.responder[1]))
            if hit is None:  # its tunnel comes with the next evaluation
                old = self._ike_seen.get(k)
                if old is not None:  # counted so far; not gone
                    seen_now[k] = old
                    carried.add(old[2])
                continue
            tid = hit[0]
            count[tid] += 1
            top = self._ike_seen.get(k, (sa, -1, tid))[1]
            messages = list(sa.messages)
            new_top = top
            for m in reversed(messages):  # the messages since the last scrape (trimming
                if m.n <= top:            # forgets old ones only: counted already)
                    break
                self._ike_msgs[tid] += 1
                if m.retransmit_of is not None:
                    self._retx[tid] += 1
                new_top = max(new_top, m.n)
            seen_now[k] = (sa, new_top, tid)
            if sa.deleted_ts is None and sa.first_ts is not None and sa.established:
                if sa.first_ts > newest.get(tid, float("-inf")):
                    newest[tid] = sa.first_ts
            for x in reversed(list(sa.exchanges)):
                if int(x.exch) in hs_kinds and x.answered and x.msgs:
                    ts = x.msgs[-1].ts
                    if ts > last_hs.get(tid, float("-inf")):
                        last_hs[tid] = ts
                    break
        self._ike_seen = seen_now
        for counter in (self._retx, self._ike_msgs):
            for tid in list(counter):
                if tid not in ids and tid not in carried:  # the tunnel is gone
                    del counter[tid]
        for tid in sorted(self._ike_msgs):
            msgs.add_metric([self.label(tid)], self._ike_msgs[tid])
            retx.add_metric([self.label(tid)], self._retx.get(tid, 0))
        for tid, n in sorted(count.items()):
            n_sas.add_metric([self.label(tid)], n)
        for tid, t0 in sorted(newest.items()):
            age.add_metric([self.label(tid)], max(0.0, now - t0))
        for tid, ts in sorted(last_hs.items()):
            hs.add_metric([self.label(tid)], ts)
        yield from (msgs, retx, n_sas, age, hs)


def _addresses(tid: str):
    """(packed A, packed B) of an IPsec tunnel id ``A<->B``; None for another VPN's id."""
    a, sep, b = tid.partition("<->")
    if not sep or "/" in b:
        return None
    try:
        return ipaddress.ip_address(a).packed, ipaddress.ip_address(b).packed
    except ValueError:
        return None


def _wg_handshake(t):
    hss = getattr(t.st, "handshakes", None) or []
    for h in reversed(list(hss)):
        if h.response_ts is not None:
            return h.response_ts
    return None


def _stage_order() -> dict:
    from pcapvpn.names import Stage

    return {str(st.value): i + 1 for i, st in enumerate(Stage) if st is not Stage.CAPTURE}


class Exporter:
    """The HTTP endpoint (prometheus-client's WSGI server in a daemon thread)."""

    def __init__(self, server, thread, registry, collector, address):
        self.server = server
        self.thread = thread
        self.registry = registry
        self.collector = collector
        self.address = address  # (host, port) bound

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def make_registry(session, label=None):
    """A registry with the session's collector and the process / Python collectors (not the
    global default registry: two sessions in one process stay apart)."""
    pc = require()
    reg = pc.CollectorRegistry(auto_describe=False)
    collector = LiveCollector(session, label)
    reg.register(collector)
    pc.ProcessCollector(registry=reg)
    pc.PlatformCollector(registry=reg)
    pc.GCCollector(registry=reg)
    return reg, collector


def start_exporter(session, spec: str, label=None) -> Exporter:
    """Serve ``/metrics`` on ``spec`` (:func:`parse_listen`); raises :class:`MetricsError`."""
    host, port = parse_listen(spec)
    pc = require()
    reg, collector = make_registry(session, label)
    try:
        server, thread = pc.start_http_server(port, addr=host, registry=reg)
    except OSError as e:
        raise MetricsError(f"--metrics {spec}: cannot listen: {e.strerror or e}") from None
    return Exporter(server, thread, reg, collector, server.server_address[:2])
