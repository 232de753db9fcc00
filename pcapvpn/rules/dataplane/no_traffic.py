"""No ESP after the IKE SA came up."""

from __future__ import annotations


from dissect.vpn.ip import Port, is_multicast
from pcapvpn.findings import declare, make, msg
from pcapvpn.rules import rule
from pcapvpn.rules.common import (
    ike_filter, ip_text, seen_working,
)
from pcapvpn.rules.dataplane.common import _child_expected, _established_ts
from pcapvpn.track.nat import on_nat_t


# an IKE SA alone where no traffic was sent is healthy (docs/verdicts.md): the absence of ESP
# is reported for what it may mean, never as a failure of the tunnel
declare("ESP_NO_TRAFFIC", "dataplane", "info",
        "The IKE SA was established but the tunnel carried no ESP at all afterwards: the child "
        "SA is unused, its traffic is not routed into the tunnel, or the capture does not see "
        "the ESP (capture filter, other path).",
        ["Send traffic that matches the traffic selectors (ping a host behind the peer from a host "
         "behind this gateway) and check it enters the tunnel (routing, policy, NAT exemption).",
         "Check the capture filter: 'udp port 500 or udp port 4500' misses native ESP (IP "
         "protocol 50); use 'udp port 500 or udp port 4500 or esp'.",
         "An idle child SA (no traffic to send) is normal: nothing can be concluded without "
         "traffic."], failure=False)


@rule
def no_traffic(ctx):
    W = ctx.th.one_way_window
    for t in ctx.state.tunnels:
        if is_multicast(t.a) or is_multicast(t.b):
            continue
        ests = []
        for sa in t.ike_sas:
            ts = _established_ts(sa)
            if ts is not None and _child_expected(sa) and seen_working(sa):
                ests.append((ts, sa))
        if not ests:
            continue
        ests.sort(key=lambda e: e[0])
        est_ts, sa = ests[0]
        if any(s.last_ts >= est_ts for s in t.esp_sas):
            continue
        if ctx.now - est_ts < W:
            continue  # absence needs time
        # NAT traversal's port: 4500, or the custom port IKE moved to (track.nat.on_nat_t)
        natt = next((m for m in sa.messages if on_nat_t(sa, m)), None)
        if natt is None:
            where = msg("IP protocol 50 or UDP 4500")
        elif Port.NAT_T in (natt.sport, natt.dport):
            where = msg("UDP 4500, NAT traversal being in use")
        else:
            where = msg("UDP {a}/{b} (the IKE SA's NAT traversal ports), NAT traversal being in "
                        "use", a=min(natt.sport, natt.dport), b=max(natt.sport, natt.dport))
        detail = msg("IKE SA {sa} between {a} and {b} was established at +{t} s; the capture "
                     "runs {longer:.1f} s longer and holds no ESP/AH between them after that "
                     "(expected on {where}).", sa=sa.id, a=ip_text(t.a), b=ip_text(t.b),
                     t=ctx.rel(est_ts), longer=ctx.now - est_ts, where=where)
        if len(ests) > 1:
            detail += msg(" {n} established IKE SAs in this tunnel, none followed by ESP.",
                          n=len(ests))
        if not ctx.state.esp_sas:
            detail += msg(" The capture holds no ESP/AH at all (between any hosts).")
        detail += msg(" An idle child SA (nothing to send) cannot be excluded, nor a capture "
                      "filter that leaves ESP out.")
        refs = []
        for m in sa.messages:
            if m.ts >= est_ts:
                refs.extend(m.frames)
                break
        yield make(
            "ESP_NO_TRAFFIC", f"{t.id}|no-esp|{sa.id}",
            title=msg("No ESP after the IKE SA between {a} and {b} was established",
                      a=ip_text(t.a), b=ip_text(t.b)),
            detail=detail, basis="observed",
            evidence=ctx.evidence(refs, est_ts, None, ike_spis=[sa.ispi.hex(), sa.rspi.hex()],
                                  peers=[ip_text(t.a), ip_text(t.b)]),
            wireshark_filter=ike_filter(sa), tunnel=t.id)
