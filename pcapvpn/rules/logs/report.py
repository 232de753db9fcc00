"""The report's parts from the logs: ``log_sources`` (per file: format, alignment to the
capture, the gateway's address, identities), ``log_events`` and the per-tunnel log facts."""

from __future__ import annotations

from pcapvpn.findings import Term, msg
from pcapvpn.rules.logs.common import FAILURE_KINDS, _host

#: log events listed in the report (JSON log_events; HTML ladder/timeline; text section)
MAX_EVENTS = 1000


def _source_dict(src) -> dict:
    al = src.alignment
    d = {"file": src.name, "format": src.format, "title": src.title, **src.counts(),
         "clock_offset_s": round(al.offset, 3) if al is not None else None,
         "clock_offset_uncertainty_s": (round(al.uncertainty, 3)
                                        if al is not None and al.uncertainty is not None
                                        else None),
         "time_zone_offset_s": round(al.zone_offset, 1) if al is not None else None,
         "clock_error_s": round(al.clock_error, 3) if al is not None else None,
         "aligned_events": al.matched if al is not None else 0,
         "host": _host(al),
         "ids": _identities(src),
         "notes": [Term(n) for n in src.notes]}
    if al is not None:
        if al.method == "none" and not src.document:
            d["notes"].append(msg("no event of this log matches a packet of the capture: its "
                                  "times are the log's own clock"))
        elif al.zone_offset:
            h = al.zone_offset / 3600
            d["notes"].append((msg("the log's clock reads {h:g} hour(s) behind the capture's: a "
                                   "time-zone difference (use --log-tz), plus a clock error of "
                                   "{err:+.3f} s", h=abs(h), err=al.clock_error) if h > 0 else
                               msg("the log's clock reads {h:g} hour(s) ahead of the capture's: "
                                   "a time-zone difference (use --log-tz), plus a clock error of "
                                   "{err:+.3f} s", h=abs(h), err=al.clock_error)))
    return d


def _identities(src) -> list:
    """Identities and host names the kept events name (for --redact, which replaces them
    wherever they appear)."""
    out = []
    for e in src.entries:
        for x in list(e.ev.ids) + ([e.ev.host] if e.ev.host else []):
            x = x.lstrip("@") if x.startswith("@") and len(x) > 4 else x
            if x and x not in out:
                out.append(x)
    return out[:500]


def _events(ctx, linked, start, end, contra=frozenset()) -> list:
    refs = {}
    out = []
    for li in linked:
        e = li.ent
        if e.ev.kind is None:
            continue
        if e.ts is not None and start is not None and end is not None and \
                not (start - 60.0 <= e.ts <= end + 60.0):
            continue
        out.append((e.ts if e.ts is not None else float("inf"), li.src.index, e.ev.line, li))
    out.sort(key=lambda x: (x[0], x[1], x[2]))
    res = []
    for _t, _i, _l, li in out[:MAX_EVENTS]:
        e = li.ent
        d = {"file": li.src.name, "line": e.ev.line,
             "time": ctx.time(e.ts) if e.ts is not None else None,
             "kind": e.ev.kind, "text": e.ev.raw[:1000], "message": e.ev.text[:1000],
             "tunnel": li.tunnel,
             "ike_sa": li.ike_sa, "direction": e.ev.direction,
             "contradicts": (li.src.name, e.ev.line) in contra}
        refs[id(e)] = d
        res.append(d)
    return res


def _tunnel_facts(linked, findings) -> dict:
    """What the logs say per tunnel, for a verdict that wants it (not used by the verdict
    today): the failure kinds logged, whether the daemon gave up, and contradictions."""
    out: dict = {}
    for li in linked:
        if li.tunnel is None or li.ent.ev.kind is None:
            continue
        t = out.setdefault(li.tunnel, {"failures": [], "gave_up": False, "established": False})
        k = li.ent.ev.kind
        if k in FAILURE_KINDS and k not in t["failures"]:
            t["failures"].append(k)
        if k == "give_up":
            t["gave_up"] = True
        if k in ("ike_established", "child_established", "tunnel_up") or (
                k == "wg_handshake" and li.ent.ev.response):  # a WireGuard handshake completed
            t["established"] = True
    for f in findings:
        if f.code == "LOG_CONTRADICTION" and f.tunnel in out:
            out[f.tunnel].setdefault("contradictions", []).append(f.id)
    return out
