"""Gateway evidence against the packets: confirmation, contradiction, counters, log-only facts.

Runs after the packet rules and the verdicts (:func:`apply_logs`, called by
:func:`pcapvpn.analysis.diagnose` when ``--log`` is given): a log never changes a verdict.

* **Confirmation**: each finding lists the log lines that say the same thing (``logs: [{file,
  line, time, text, agrees}]``): an event of a kind that confirms the finding's code
  (:data:`.confirm.CONFIRMS`), tied to the same tunnel (by daemon context, SPIs or peer address: see
  :mod:`pcapvpn.track.logs`), near the finding's evidence in time.  Where the log names the
  exact reason behind an encrypted or inferred error (the PSK mismatch, the untrusted
  certificate, the refused DH group), the finding's detail gains it.
* **Contradiction** (``LOG_CONTRADICTION``, info, basis log): the log's claim and the packets
  disagree — libreswan's "Possible authentication failure" while the IKE_AUTH request was never
  answered at all (UDP 4500 dropped: NAT_T_BLOCKED); a daemon retransmitting (or giving up) while
  the capture shows the answers reaching the capture point on their way to it (they are dropped
  on the host).  The affected finding's log reference carries ``agrees: false``.
* **Counters vs. packets**: status output's per-SA counters (``swanctl --list-sas``, ``ipsec
  statusall``, Cisco ``show crypto ipsec sa``, ...) against the ESP counted on the wire for the
  same SPI: nothing encapsulated (nothing routed into the tunnel), decapsulated but nothing sent
  back (routing behind the gateway), counted by the gateway but missing on the wire (lost
  between the gateway and the capture point).
* **Log-only failures** (``LOG_ONLY_FAILURE``): a failure the log reports inside the capture's
  time span that no packet finding explains; listed beside the verdict, never in it.

The rooms: :mod:`.confirm` (a finding's log lines and the reasons they add), :mod:`.contradict`
(LOG_CONTRADICTION), :mod:`.counters` (LOG_SA_*: status counters against the ESP on the wire),
:mod:`.log_only` (LOG_ONLY_FAILURE), :mod:`.report` (``log_sources``, ``log_events``, per-tunnel
facts); :mod:`.common` holds the linked log entries, log references and the failure kinds they
share.  The per-daemon alignment and association of the lines is :mod:`pcapvpn.track.logs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pcapvpn.rules.logs.common import _Linked
from pcapvpn.rules.logs.confirm import _confirm
from pcapvpn.rules.logs.contradict import _contradictions
from pcapvpn.rules.logs.log_only import _log_only
from pcapvpn.rules.logs.counters import _counters
from pcapvpn.rules.logs.report import _events, _source_dict, _tunnel_facts
from pcapvpn.track.logs import align, associate, capture_anchors


@dataclass
class LogOutcome:
    findings: list = field(default_factory=list)
    sources: list = field(default_factory=list)
    events: list = field(default_factory=list)
    #: per tunnel id: facts the verdict may use (see docs/logs.md "Verdict hook")
    tunnel_facts: dict = field(default_factory=dict)


def apply_logs(ctx, findings: list, sources: list) -> LogOutcome:
    """Align ``sources`` (pcapvpn.logsrc.LogSource) to the capture, link their events to
    ``findings`` (in place: ``finding.logs``), and return the findings the logs add, the
    ``log_sources`` / ``log_events`` of the report and the per-tunnel log facts."""
    state = ctx.state
    start = ctx.start
    end = state.now
    anchors = capture_anchors(state)
    out = LogOutcome()
    linked: list[_Linked] = []
    for src in sources:
        if src._ref is None:
            src.resolve(start)
        al = align(src, state, anchors)
        src.alignment = al
        for e in src.entries:
            # the stamp is the true time truncated to its resolution: the middle of that span
            e.ts = e.log_ts + e.res / 2 + al.offset if e.log_ts is not None else None
        assoc = associate(src, state, al)
        for e in src.entries:
            linked.append(_Linked(e, src, assoc.tunnel.get(id(e)), assoc.ike_sa.get(id(e)),
                                  assoc.matched.get(id(e))))
    by_tunnel: dict = {}
    for li in linked:
        by_tunnel.setdefault(li.tunnel, []).append(li)
    used: set = set()
    for f in findings:
        _confirm(ctx, f, by_tunnel.get(f.tunnel, ()), used, end)
    out.findings += _contradictions(ctx, findings, linked, used)
    out.findings += _counters(ctx, findings, linked, used)
    out.findings += _log_only(ctx, linked, used, start, end)
    out.sources = [_source_dict(s) for s in sources]
    contra = {(r.file, r.line) for f in findings + out.findings for r in f.logs or ()
              if not r.agrees}
    out.events = _events(ctx, linked, start, end, contra)
    out.tunnel_facts = _tunnel_facts(linked, findings + out.findings)
    return out
