"""Matching the points' packets (issue 16): indexes of what each point saw, clock offsets, the
same hosts across points, and each tunnel's path view."""

from __future__ import annotations

import statistics

from pcapvpn.track.vantage import MAX_SAMPLES, PathView, Vantage, HostClasses
from pcapvpn.track.vantage.access import corrected, samples_of, window
from pcapvpn.track.vantage.clock import Offset, estimate_offset
from pcapvpn.track.vantage.plain import match_plain, offset_pairs
from pcapvpn.track.vantage.segments import (
    esp_facts, esp_losses, ike_losses, ladder, merge_ike_losses, nat_facts)

def _ike_index(points):
    """digest -> {point index: [IkeMsg not a capture duplicate]}"""
    seen: dict = {}
    for i, p in enumerate(points):
        for sa in p.tracker.ike_tracker.sas:
            for m in sa.messages:
                if m.duplicate_of is not None:
                    continue
                seen.setdefault(m.digest, {}).setdefault(i, []).append(m)
    return seen


def _esp_index(points):
    """SPI -> {point index: EspSA} (an SPI on several SAs at one point is left out there)."""
    return _sa_index(points, "esp")


def _sa_index(points, proto):
    seen: dict = {}
    dup = set()
    for i, p in enumerate(points):
        for sa in p.tracker.esp_tracker.all_sas():
            if sa.proto != proto:
                continue
            per = seen.setdefault(sa.spi, {})
            if i in per:
                dup.add((sa.spi, i))
            per[i] = sa
    for spi, i in dup:
        del seen[spi][i]
    return seen


def _seq_index(points):
    """The numbered flows beside ESP: ``("ah", spi)`` -> {point index: EspSA}, and for the other
    VPNs ``(kind, key, epoch)`` -> {point index: SeqFlow} where every point saw one epoch of
    the numbering; the keys whose numbering restarted somewhere (``(kind, key)`` -> {point
    index: [SeqFlow epochs]}) are returned apart, for :func:`_align_epochs` once the clocks are
    known."""
    seen: dict = {("ah", spi): per for spi, per in _sa_index(points, "ah").items()}
    restarted: dict = {}
    by: dict = {}
    for i, p in enumerate(points):
        store = getattr(p.tracker, "seq_store", None)
        if store is None:
            continue
        for k, eps in store.flows.items():
            by.setdefault(k, {})[i] = eps
    for (kind, key), per in by.items():
        if all(len(eps) == 1 for eps in per.values()):
            seen[(kind, key, 0)] = {i: eps[0] for i, eps in per.items()}
        else:
            restarted[(kind, key)] = per
    return seen, restarted


def _align_epochs(points, seqs, restarted) -> None:
    """Epochs of a restarted numbering at several points are the same epoch when they overlap
    in time (on the first point's clock): each point's epoch goes with the epoch of the point
    that saw the most epochs that it overlaps most, under the key ``(kind, key, (ref, n))``.
    An epoch overlapping none stays alone (``other_epoch`` keeps it unjudged elsewhere)."""
    for (kind, key), per in restarted.items():
        ref = max(per, key=lambda i: (len(per[i]), -i))
        spans = [(corrected(points, ref, f.first_ts), corrected(points, ref, f.last_ts))
                 for f in per[ref]]
        for n, f in enumerate(per[ref]):
            seqs.setdefault((kind, key, (ref, n)), {})[ref] = f
        for i, eps in per.items():
            if i == ref:
                continue
            for f in eps:
                a, b = corrected(points, i, f.first_ts), corrected(points, i, f.last_ts)
                best = max(range(len(spans)), key=lambda n: min(b, spans[n][1]) -
                           max(a, spans[n][0]))
                if min(b, spans[best][1]) - max(a, spans[best][0]) < 0:
                    seqs[(kind, key, (i, f.epoch))] = {i: f}
                else:
                    seqs.setdefault((kind, key, (ref, best)), {})[i] = f


def _pairs_of(points, k, index, samples_fn):
    """Matched samples of points 0 and ``k``: ``(t0, t_k - t0, (src, dst) at point 0)``."""
    pairs = []
    for key, per in index.items():
        a, b = per.get(0), per.get(k)
        if a is None or b is None:
            continue
        sa_ = samples_fn(points[0], key, a)
        sb_ = samples_fn(points[k], key, b)
        if sa_ is None or sb_ is None:
            continue
        label = (a.src, a.dst)
        for seq in sa_.d.keys() & sb_.d.keys():
            t0 = sa_.d[seq][0]
            pairs.append((t0, sb_.d[seq][0] - t0, label))
    return pairs


class _Ends:
    """A tunnel's two ends for :func:`_path`: an IPsec tunnel's gateways, or a VPN tunnel's
    client and server (``kinds``: which numbered flows belong to it)."""

    def __init__(self, tid, a, b, kinds):
        self.id = tid
        self.a = a
        self.b = b
        self.kinds = kinds


def _offsets(points, ike, esp, seqs, thresholds) -> None:
    """Each point's clock against point 0 from every matched packet."""
    points[0].offset = Offset(0.0, 0.0, 0.0, points[0].start or 0.0, 0)
    for k in range(1, len(points)):
        pairs = []
        for per in ike.values():
            a, b = per.get(0), per.get(k)
            if a and b and len(a) == 1 and len(b) == 1:
                pairs.append((a[0].ts, b[0].ts - a[0].ts, (a[0].src, a[0].dst)))
        pairs += _pairs_of(points, k, esp, samples_of)
        pairs += _pairs_of(points, k, seqs, samples_of)
        pairs += offset_pairs(points, k)
        points[k].offset = estimate_offset(pairs, thresholds.clock_drift_span)


def match(points, thresholds, tunnels, vpn_tunnels=()) -> Vantage:
    """Match the points' packets; ``tunnels`` (IPsec) and ``vpn_tunnels`` (the other VPNs) are
    the first point's."""
    v = Vantage(points)
    ike = _ike_index(points)
    esp = _esp_index(points)
    seqs, restarted = _seq_index(points)
    # -- clock offsets against point 0
    _offsets(points, ike, esp, seqs, thresholds)
    if restarted:
        # numberings that restarted: their epochs lined up by time, now that the clocks are
        # known (roughly: on the raw clocks where nothing else matched), then the clocks again
        _align_epochs(points, seqs, restarted)
        _offsets(points, ike, esp, seqs, thresholds)
    # -- the same hosts across points
    cls = HostClasses()
    for per in ike.values():
        items = [(i, ms[0]) for i, ms in per.items()]
        for (i, m), (j, n) in zip(items, items[1:]):
            cls.union((i, m.src), (j, n.src))
            cls.union((i, m.dst), (j, n.dst))
    for index in (esp, seqs):
        for per in index.values():
            items = list(per.items())
            for (i, a), (j, b) in zip(items, items[1:]):
                cls.union((i, a.src), (j, b.src))
                cls.union((i, a.dst), (j, b.dst))
    v.classes = cls
    v.ike_seen = {dg: {points[i].name: ms for i, ms in per.items()} for dg, per in ike.items()}
    v.esp_seen = {spi: {points[i].name: sa for i, sa in per.items()} for spi, per in esp.items()}
    ends = [_Ends(t.id, getattr(t, "a", None), getattr(t, "b", None), ("ah",))
            for t in tunnels]
    ends += [_Ends(t.id, t.client, t.server, (t.protocol,)) for t in vpn_tunnels
             if getattr(t, "identified", True)]
    for t in ends:
        if not t.a or not t.b:
            continue
        mine = {key: per for key, per in seqs.items() if key[0] in t.kinds}
        if t.kinds != ("ah",):
            v.paths[t.id] = _path(points, t, cls, {}, {}, thresholds, mine)
        else:
            v.paths[t.id] = _path(points, t, cls, ike, esp, thresholds, mine)
    v.plain_losses, v.plain_nat = match_plain(
        points, lambda i, ts: corrected(points, i, ts), window, thresholds.path_delay_max)
    return v


def _direction(cls, i, src, dst, A, B):
    """True: a -> b; False: b -> a; None: not this tunnel."""
    s, d = cls.find((i, src)), cls.find((i, dst))
    if (s, d) == (A, B):
        return True
    if (s, d) == (B, A):
        return False
    return None


def _path(points, t, cls, ike, esp, th, seqs=None) -> PathView:
    A, B = cls.find((0, t.a)), cls.find((0, t.b))
    view = PathView(t.id)
    n = len(points)
    votes = [[0] * n for _ in range(n)]
    seen_pts: set = set()
    packets = {p.name: {"a_to_b": 0, "b_to_a": 0} for p in points}
    # which flows belong to the tunnel, and their direction: IKE ``(digest, forward, {i:
    # [IkeMsg]})``, ESP ``(spi, forward, {i: EspSA})``

    def flows(index, first, count):
        out = []
        for key, per in index.items():
            fwd = None
            for i, x in per.items():
                a = first(x)
                fwd = _direction(cls, i, a.src, a.dst, A, B)
                if fwd is not None:
                    break
            if fwd is None:
                continue
            out.append((key, fwd, per))
            for i, x in per.items():
                seen_pts.add(i)
                packets[points[i].name]["a_to_b" if fwd else "b_to_a"] += count(x)
        return out

    flows_ike = flows(ike, lambda ms: ms[0], len)
    flows_esp = flows(esp, lambda sa: sa, lambda sa: sa.packets)
    flows_seq = flows(seqs or {}, lambda f: f, lambda f: f.packets)
    # order of the points from a to b: votes of matched packets (corrected times)
    delays: dict = {}  # (i, j, fwd) -> [corrected t_j - t_i]

    def vote(times, fwd):
        travel = sorted(times.items(), key=lambda kv: kv[1])
        for (i, ti), (j, tj) in zip(travel, travel[1:]):
            delays.setdefault((i, j, fwd), []).append(tj - ti)
        items = travel if fwd else travel[::-1]  # votes are for the a -> b order
        for x in range(len(items)):
            for y in range(x + 1, len(items)):
                votes[items[x][0]][items[y][0]] += 1

    for _dg, fwd, per in flows_ike:
        times = {i: corrected(points, i, ms[0].ts) for i, ms in per.items() if len(ms) == 1}
        if len(times) > 1:
            vote(times, fwd)
    for spi, fwd, per in flows_esp + flows_seq:
        if len(per) < 2:
            continue
        sets = {i: samples_of(points[i], spi, x) for i, x in per.items()}
        common = None
        for s in sets.values():
            if s is None:
                common = set()
                break
            common = set(s.d) if common is None else common & set(s.d)
        for seq in sorted(common or ())[:MAX_SAMPLES]:
            vote({i: corrected(points, i, sets[i].d[seq][0]) for i in per}, fwd)
    placed = [i for i in sorted(seen_pts) if any(votes[i]) or any(r[i] for r in votes)]
    placed.sort(key=lambda i: (-sum(votes[i]), sum(r[i] for r in votes), i))
    view.order = [points[i].name for i in placed]
    view.placed = placed
    view.esp_flows = flows_esp
    view.seq_flows = flows_seq
    view.ike_flows = flows_ike
    view.unplaced = [points[i].name for i in sorted(seen_pts) if i not in placed]
    view.packets = {points[i].name: packets[points[i].name] for i in placed + sorted(
        set(seen_pts) - set(placed))}
    pos = {i: k for k, i in enumerate(placed)}
    for (i, j, fwd), ds in sorted(delays.items(),
                                  key=lambda kv: (not kv[0][2], pos.get(kv[0][0], 0))):
        if i not in pos or j not in pos or pos[j] != pos[i] + (1 if fwd else -1):
            continue
        view.delays.append({"from": points[i].name, "to": points[j].name,
                            "direction": "a_to_b" if fwd else "b_to_a",
                            "delay_s": round(statistics.median(ds), 6),
                            "delay_min_s": round(min(ds), 6), "delay_max_s": round(max(ds), 6),
                            "samples": len(ds)})
    if len(placed) < 2:
        return view
    slack = th.path_delay_max
    # the latest packet of each direction at each point (first point's clock)
    last_dir: dict = {}
    for _dg, fwd, per in flows_ike:
        for i, ms in per.items():
            tl = corrected(points, i, ms[-1].ts)
            if tl > last_dir.get((i, fwd), float("-inf")):
                last_dir[(i, fwd)] = tl
    for _spi, fwd, per in flows_esp + flows_seq:
        for i, sa in per.items():
            tl = corrected(points, i, sa.last_ts)
            if tl > last_dir.get((i, fwd), float("-inf")):
                last_dir[(i, fwd)] = tl
    for spi, fwd, per in flows_esp + flows_seq:
        esp_losses(view, points, placed if fwd else placed[::-1], spi, fwd, per, slack, t.id)
        esp_facts(view, points, placed if fwd else placed[::-1], spi, per)
    for dg, fwd, per in flows_ike:
        ike_losses(view, points, placed if fwd else placed[::-1], dg, fwd, per, slack, t.id,
                    last_dir)
    merge_ike_losses(view)
    nat_facts(view, points, placed, flows_ike, flows_esp + flows_seq)
    ladder(view, points, flows_ike, slack)
    return view
