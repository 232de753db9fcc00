"""The activity of a tunnel in both directions (IKE messages, ESP time bins, NAT keepalive flows),
the silences in it, and the source changes of its peers: what NAT_KEEPALIVE_MISSING and
NAT_MAPPING_CHANGED read."""

from __future__ import annotations

from operator import itemgetter

from dissect.vpn.ip import Port
from dissect.vpn.registry import ExchangeType, PayloadV2
from pcapvpn.rules.common import endpoint_text
from pcapvpn.rules.nat.common import _esp_moves
from pcapvpn.track.nat import STANDARD_PORTS

#: seconds: a source change this soon after a long silence is blamed on the silence
_AFTER_GAP = 30.0


def _esp_intervals(e):
    """Active periods of an ESP SA from its time bins (a whole bin counts as active: the gaps
    found between them are never longer than the real ones)."""
    try:
        counts = e.bin_counts()
        base, width = e.bin_base, e.bin_width
    except AttributeError:
        return [(e.first_ts, e.last_ts, e.first_ref, e.last_ref)]
    first_ts, last_ts = e.first_ts, e.last_ts
    if 0 not in counts:  # one run of active bins, the whole SA (most SAs of a flood)
        return [(max(base, first_ts), min(base + len(counts) * width, last_ts),
                 e.first_ref, e.last_ref)]
    out = []
    run = None  # the first bin of the run of active bins in progress
    for i, c in enumerate(counts):
        if c:
            if run is None:
                run = i
        elif run is not None:  # a run of bins run..i-1: from its first bin's start to the end
            out.append([max(base + run * width, first_ts), min(base + i * width, last_ts),
                        None, None])
            run = None
    if run is not None:
        out.append([max(base + run * width, first_ts),
                    min(base + len(counts) * width, last_ts), None, None])
    if not out:
        return [(e.first_ts, e.last_ts, e.first_ref, e.last_ref)]
    out[0][2] = e.first_ref
    out[-1][3] = e.last_ref
    return [tuple(x) for x in out]


def _keepalive_intervals(f):
    """A keepalive flow is active from its first to its last keepalive except in its long gaps."""
    out = []
    s, r0 = f.first_ts, f.first_ref
    for gs, ge, ra, rb in sorted(f.long_gaps):
        out.append((s, gs, r0, ra))
        s, r0 = ge, rb
    out.append((s, f.last_ts, r0, f.last_ref))
    return out


def _timeline(ctx, t, flows):
    """Activity of the tunnel in both directions: (start, end, ref at start, ref at end, what
    starts it).  ``what`` is "init" for a message that starts a new IKE SA (then a silence
    before it is between SAs, not inside one), "delete" for a message that ends one.  Built
    once per tunnel and evaluation (``flows``: its keepalive flows, ``_flows_between``):
    NAT_MAPPING_CHANGED and NAT_KEEPALIVE_MISSING both read it."""
    return ctx.memo(f"nat|timeline|{id(t)}", lambda: _build_timeline(t, flows))


def _build_timeline(t, flows):
    iv = []
    for sa in t.ike_sas:
        for m in sa.messages:
            if m.exch == ExchangeType.IKE_SA_INIT or (m.version == 1 and m.step == 1 and m.exch in (
                    ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE)):
                what = "init"
            elif m.deletes or (m.version == 2 and m.exch == ExchangeType.INFORMATIONAL
                               and m.sk_next == PayloadV2.D):
                what = "delete"
            else:
                what = "ike"
            iv.append((m.ts, m.ts, m.ref, m.ref, what))
    for e in t.esp_sas:
        for s, end, r0, r1 in _esp_intervals(e):
            iv.append((s, end, r0, r1, "esp"))
    for f in flows:
        for s, end, r0, r1 in _keepalive_intervals(f):
            iv.append((s, end, r0, r1, "keepalive"))
    iv.sort(key=itemgetter(0, 1))
    return iv


def _gaps(iv, start, limit):
    """Silences longer than ``limit`` after ``start``: (gap start, gap end, ref before, ref after,
    what resumed, what ended before)."""
    out = []
    end = None
    ref_end = None
    what_end = None
    for s, e, r0, r1, what in iv:
        if e < start:
            continue
        if end is not None and s - end > limit:
            out.append((end, s, ref_end, r0, what, what_end))
        if end is None or e >= end:
            end, ref_end, what_end = e, r1, what
    return out


def _points(t, flows):
    """(ts, ref) of the frames whose time is known: IKE messages, first/last packets and source
    changes of ESP SAs, first/last keepalives and those around their long gaps."""
    pts = []
    for sa in t.ike_sas:
        pts += [(m.ts, m.ref) for m in sa.messages]
    for e in t.esp_sas:
        pts += [(e.first_ts, e.first_ref), (e.last_ts, e.last_ref)]
        pts += [(ts, ref) for ts, ref, _s, _p in _esp_moves(e)]
    for f in flows:
        pts += [(f.first_ts, f.first_ref), (f.last_ts, f.last_ref)]
        pts += [(a, ra) for a, _b, ra, _rb in f.long_gaps]
        pts += [(b, rb) for _a, b, _ra, rb in f.long_gaps]
    return sorted((p for p in pts if p[1] is not None), key=itemgetter(0))


def _around(pts, gs, ge):
    """The last known frame at or before ``gs`` and the first at or after ``ge``."""
    before = [p for p in pts if p[0] <= gs + 1e-6]
    after = [p for p in pts if p[0] >= ge - 1e-6]
    return (before[-1] if before else None), (after[0] if after else None)


def _nat_t_start(verdicts, t):
    ts = [v.float_ts for _sa, v in verdicts if v.float_ts is not None]
    ts += [v.nat_d_ts for _sa, v in verdicts
           if v.nat_d_ts is not None and v.start_port == Port.NAT_T]
    ts += [e.first_ts for e in t.esp_sas if e.encap == "udp"]
    return min(ts) if ts else None


def _flows_between(ctx, t):
    ends = (t.a, t.b)
    return [f for f in ctx.state.keepalives
            if f.src in ends and f.dst in ends and f.src != f.dst]


def _tunnel_changes(ctx, t, verdicts, sides):
    """:func:`_changes` of tunnel ``t`` (``verdicts`` and ``sides`` its own, as
    :func:`pcapvpn.rules.nat.common._tunnel_verdicts` and ``_tunnel_nat_sides`` give them),
    once per tunnel and context: NAT_MAPPING_CHANGED and NAT_KEEPALIVE_MISSING both read it
    (read only)."""
    return ctx.memo(f"nat|changes|{id(t)}", lambda: _changes(ctx, t, verdicts, sides))


def _changes(ctx, t, verdicts, sides):
    """(side, ts, ref, old, new, what, sa or esp) of sources that moved during an SA, for sides
    behind a NAT (or, without NAT-D, when a port other than 500/4500 is involved)."""
    out = []
    for sa, v in verdicts:
        for c in v.endpoint_changes:
            side = c["side"]
            if side in sides or c["old_port"] not in STANDARD_PORTS \
                    or c["new_port"] not in STANDARD_PORTS:
                out.append((side, c["ts"], tuple(c["frame"]), c["old"], c["new"], "IKE", sa))
    ini = {sa.initiator[1] for sa, _v in verdicts}
    rsp = {sa.responder[1] for sa, _v in verdicts}
    for e in t.esp_sas:
        moves = _esp_moves(e)
        if not moves:
            continue
        side = "initiator" if e.src in ini else ("responder" if e.src in rsp else None)
        prev = (e.src, e.sport)
        for ts, ref, src, sport in moves:
            old = endpoint_text((e.ipver, prev[0], prev[1]))
            new = endpoint_text((e.ipver, src, sport))
            nat_side = side in sides if side else False
            if nat_side or (sport >= 0 and (sport not in STANDARD_PORTS
                                             or prev[1] not in STANDARD_PORTS)):
                out.append((side or "peer", ts, tuple(ref), old, new,
                            f"ESP SPI 0x{e.spi:08x}", e))
            prev = (src, sport)
    out.sort(key=lambda c: c[1])
    return out
