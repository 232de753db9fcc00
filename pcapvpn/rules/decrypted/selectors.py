"""SUBNET_OVERLAP read from decrypted traffic selectors (``basis: decrypted``; the former code
TS_OVERLAP is declared here for the catalog)."""

from __future__ import annotations

from dissect.vpn import registry as reg
from pcapvpn.findings import declare, make, msg
from pcapvpn.rules import routing as _routing  # noqa: F401  (declares SUBNET_OVERLAP)
from pcapvpn.rules import rule
from pcapvpn.rules.common import ike_filter, ike_spis, ip_text
from pcapvpn.rules.decrypted.common import _exchange, _key_note, _msgs, _tid, _ts_text

declare("TS_OVERLAP", "routing", "warning",
        "Former code of SUBNET_OVERLAP with basis decrypted (the traffic selectors overlap, e.g. "
        "the home LAN equals the office LAN, both 192.168.1.0/24). No longer emitted: "
        "SUBNET_OVERLAP findings read from decrypted selectors name it in `aliases` for one "
        "schema version.",
        ["Renumber one of the networks, or NAT the client side into a distinct range before it "
         "enters the tunnel (strongSwan: a virtual IP from a pool outside both LANs).",
         "Remote access: hand out a virtual IP and narrow the remote selectors to the networks "
         "actually needed."])


def _overlap(a, b):
    """Intersection size of two selectors of the same IP version (0 when disjoint)."""
    if a[0] != b[0]:
        return 0
    lo = max(a[1], b[1])
    hi = min(a[2], b[2])
    return hi - lo + 1 if hi >= lo else 0


def _is_any(sel) -> bool:
    ipver = sel[0]
    bits = 32 if ipver == 4 else 128
    return sel[1] == 0 and sel[2] == (1 << bits) - 1


@rule
def selectors_overlap(ctx):
    for sa in ctx.state.ike_sas:
        done = set()
        for m in _msgs(sa):
            tsi, tsr = m.inner.ts_initiator, m.inner.ts_responder
            if not tsi or not tsr:
                continue
            x = _exchange(sa, m)
            xkey = x.index if x is not None else m.n
            if xkey in done:
                continue
            for a in tsi:
                for b in tsr:
                    if _is_any(a) or _is_any(b):
                        continue
                    n = _overlap(a, b)
                    # a host address inside the other side (a virtual IP from the remote
                    # network) is no overlap of two networks
                    if n <= 1:
                        continue
                    done.add(xkey)
                    from dissect.vpn.ident import selector_text

                    yield make(
                        "SUBNET_OVERLAP", f"{sa.id}|dec|ts|{xkey}", severity="warning",
                        title=msg("Local and remote subnets overlap: {a} and {b}",
                                  a=selector_text(a), b=selector_text(b)),
                        detail=msg("The traffic selectors in {exchange} from {who} ({tsi} === "
                                   "{tsr}) share {n} addresses{note}: the initiator's side and the "
                                   "responder's side use the same address range (the 'home LAN "
                                   "equals office LAN' problem).",
                                   exchange=reg.exchange_name(m.exch, short=True),
                                   who=ip_text(m.src), tsi=_ts_text(tsi), tsr=_ts_text(tsr), n=n,
                                   note=_key_note(m)),
                        basis="decrypted",
                        evidence=ctx.evidence(m.frames, m.ts, None, ike_spis=ike_spis(sa)),
                        wireshark_filter=ike_filter(sa, msgids=[m.msgid]),
                        tunnel=_tid(ctx, sa))
                    break
                if xkey in done:
                    break
