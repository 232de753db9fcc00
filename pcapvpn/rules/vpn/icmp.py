"""ICMP errors about the flows of these VPNs."""

from __future__ import annotations

from dissect.vpn.ip import IpProto, icmp_error_text
from pcapvpn.findings import Term, make, msg
from pcapvpn.rules import rule
from pcapvpn.rules import reachability as _reach  # noqa: F401 - declares ICMP_UNREACHABLE
from pcapvpn.rules.common import ip_text, unreachable_errors
from pcapvpn.rules.vpn.common import _NAMES, _ev, _healthy_evidence


@rule
def vpn_icmp(ctx):
    tunnels = list(ctx.state.vpn_tunnels)
    if not tunnels or not ctx.state.icmp_errors:
        return
    # the tunnels between two addresses, in order (an ICMP error looks up its pair, not every
    # tunnel: thousands of errors and tunnels on a busy mirror port)
    by_pair: dict = {}
    for t in tunnels:
        by_pair.setdefault(frozenset((t.client, t.server)), []).append(t)
    groups = {}
    for e, q in unreachable_errors(ctx):
        qsrc, qdst, qproto, qsport, qdport = q.src, q.dst, q.proto, q.sport, q.dport
        for t in by_pair.get(frozenset((qsrc, qdst)), ()):
            if qdst == t.client and _healthy_evidence(t) and t.data_last_ts[1] is not None \
                    and e.ts >= t.data_last_ts[1] - 1.0:
                break  # the server's packets to a client that has gone: the end of a session
            if qproto == IpProto.GRE and t.protocol == "pptp":
                what = "GRE"
            elif qproto == IpProto.UDP and t.transport == "udp" and t.port in (qsport, qdport):
                what = f"UDP {t.port}"
            elif qproto == IpProto.TCP and t.transport == "tcp" and t.port in (qsport, qdport):
                what = f"TCP {t.port}"
            elif qproto == IpProto.UDP and t.protocol == "sslvpn" and any(
                    f.sport in (qsport, qdport) for f in t.st.dtls.values()):
                what = f"UDP {qdport} (DTLS)"
            else:
                continue
            groups.setdefault((t.id, what, e.icmp_type, e.icmp_code, qsrc, qdst), (t, []))[1] \
                .append(e)
            break
    for (tid, what, itype, icode, qsrc, qdst), (t, errs) in groups.items():
        e0 = errs[0]
        meaning = icmp_error_text(e0.ipver, itype, icode)
        reporter = ip_text(e0.src)
        detail = (msg("{n} ICMP error(s) '{meaning}' from {reporter} about {what} {src} -> "
                      "{dst}", n=len(errs), meaning=Term(meaning), reporter=reporter, what=what,
                      src=ip_text(qsrc), dst=ip_text(qdst))
                  + f" ({_NAMES[t.protocol]})"
                  + (msg(" (sent by the peer itself)") if e0.src == qdst else
                     msg(" (sent by a device on the path)")) + ".")
        fld = "icmp" if e0.ipver == 4 else "icmpv6"
        yield make("ICMP_UNREACHABLE", f"vpnicmp|{tid}|{what}|{itype}|{icode}",
                   title=msg("{what} to {peer}: {meaning}", what=what, peer=ip_text(qdst),
                             meaning=Term(meaning)) + f" ({_NAMES[t.protocol]})",
                   detail=detail, basis="observed",
                   evidence=_ev(ctx, [x.ref for x in errs], e0.ts, errs[-1].ts,
                                         peers=[ip_text(qsrc), ip_text(qdst), reporter]),
                   wireshark_filter=f"{fld}.type == {itype} && {fld}.code == {icode}",
                   advice=[f"Port/protocol unreachable: the {_NAMES[t.protocol]} service does "
                           f"not listen there (check the port and UDP/TCP in both "
                           f"configurations).",
                           "Administratively prohibited: find the filter that sent it — the "
                           "ICMP source address names the device.",
                           "Net/host unreachable: check the routing towards the server."],
                   tunnel=t.id)
