"""What vanished between two points of a path, and the path facts (issue 16): ESP, AH and the
other VPNs' numbered flows by their numbers, IKE messages copy by copy, reordering and size
changes, NAT translations, the ladder's rows."""

from __future__ import annotations

import bisect

from dissect.vpn.registry import exchange_name

from pcapvpn.track.vantage import FILTER_RANGES, MAX_LADDER, SegmentLoss
from pcapvpn.track.vantage.access import (
    by_esp_tracker, corrected, epoch_of, flow_ids, hole_refs_of, is_approximate, kind_of,
    other_epoch, samples_of, seen_of, window)
from pcapvpn.track.vantage.ranges import r_clip, r_count, r_diff, r_union

def ladder(view, points, flows_ike, slack):
    """Rows of the path ladder: one per copy of each IKE message at the most upstream point
    that saw it, followed downstream copy by copy (a copy lost on the way ends its row)."""
    rows = []
    pos = {i: k for k, i in enumerate(view.placed)}
    for _dg, fwd, per in flows_ike:
        idx = sorted((i for i in per if i in pos), key=lambda i: pos[i] if fwd else -pos[i])
        if not idx:
            continue
        m = per[idx[0]][0]
        label = f"{exchange_name(m.exch)} #{m.msgid} {_ike_label(m)}"
        copies = [{points[idx[0]].name: corrected(points, idx[0], x.ts)}
                  for x in per[idx[0]]]
        for i in idx[1:]:
            p = points[i]
            unc = (p.offset.uncertainty or 0.0) if p.offset is not None else 0.0
            down = [corrected(points, i, x.ts) for x in per[i]]
            ups = [max(c.values()) if c else None for c in copies]
            hits = _match_copies([u if u is not None else float("inf") for u in ups], down,
                                 unc, slack)
            for c, h in zip(copies, hits):
                if h is not None:
                    c[p.name] = down[h]
        for n, c in enumerate(copies):
            rows.append((min(c.values()), {
                "label": label + (f" (copy {n + 1})" if len(copies) > 1 else ""),
                "forward": fwd, "seen": {k: (t, 1) for k, t in c.items()}}))
    rows.sort(key=lambda r: r[0])
    view.messages = [r[1] for r in rows[:MAX_LADDER]]


def esp_losses(view, points, order, spi, fwd, per, slack, tid):
    """Walk the points in the flow's direction: what each one misses of what the points before
    it saw (within its capture window)."""
    if not by_esp_tracker(spi) and not all(x.in_order for x in per.values()):
        return  # numbers that do not run in order (not a sequence): losses cannot be told
    alive = None  # sequence ranges still travelling
    upstream = None  # index of the last point that saw the SA
    union_up: list = []
    up_first = up_last = None
    for i in order:
        p = points[i]
        sa = per.get(i)
        win = window(p)
        if sa is not None and upstream is not None and epoch_of(spi, sa) != \
                epoch_of(spi, per[upstream]):
            continue  # another epoch of the numbering here (a restart one point missed)
        if sa is not None:
            seen = seen_of(p, spi, sa)
            first = corrected(points, i, sa.first_ts)
            last = corrected(points, i, sa.last_ts)
        if alive is None:
            if sa is None:
                continue
            alive, upstream, union_up = seen, i, list(seen)
            up_first, up_last = first, last
            continue
        if win is None:
            continue
        lo = alive[0][0] if alive else None
        hi = alive[-1][1] if alive else None
        if lo is None:
            break
        approx = is_approximate(p, spi, sa) if sa is not None else False
        if sa is not None:
            # numbers the point could not judge: before its capture began / after it ended
            if win[0] > up_first:
                lo = max(lo, seen[0][0]) if seen else lo
            if win[1] < up_last + slack:
                hi = min(hi, seen[-1][1]) if seen else hi
            lost = r_diff(r_clip(alive, lo, hi), seen)
            appeared = r_diff(r_clip(seen, union_up[0][0], union_up[-1][1]), union_up) \
                if union_up else []
        else:
            if not (win[0] <= up_first and win[1] >= up_last + slack):
                continue  # the point did not capture the whole time the SA flowed: not judged
            if other_epoch(p, spi):
                continue  # it saw the flow under another epoch of its numbering: not judged
            lost = list(alive)
            appeared = []
        if lost:
            n = r_count(lost)
            up = points[upstream]
            frames = [(up.name, up.file(r[0]), r[1])
                      for r in _around(up, spi, per[upstream], lost)]
            if sa is not None:
                frames += [(p.name, p.file(r[0]), r[1])
                           for r in hole_refs_of(p, spi, sa, lost[:FILTER_RANGES])[:10]]
            ufl = per[upstream]
            view.losses.append(SegmentLoss(
                kind_of(spi), up.name, p.name, tid,
                spi=spi if isinstance(spi, int) else ufl.spi if spi[0] == "ah" else None,
                lost=n, ranges=lost[:50], approximate=approx, frames=frames,
                first_ts=up_first, last_ts=up_last, forward=fwd,
                flow=getattr(ufl, "label", None), width=getattr(ufl, "width", 32),
                key=None if by_esp_tracker(spi) else ufl.key))
            alive = r_diff(alive, lost)
        if appeared and upstream is not None:
            up = points[upstream]
            view.appeared.append({"from": up.name, "to": p.name,
                                  **flow_ids(spi, per[upstream]),
                                  "packets": r_count(appeared), "ranges": appeared[:20],
                                  "why": _appeared_why(up)})
        if sa is not None:
            union_up = r_union(union_up, seen)
            upstream = i
    # a last point that saw it: nothing after it to compare with


def _appeared_why(up) -> str:
    if up.drops:
        return "capture_drops"
    return "other_path"


def _around(point, key, flow, ranges, limit=10):
    """Sampled frames of the flow at ``point`` inside the lost ranges (lost packets themselves;
    the first :data:`FILTER_RANGES` ranges, those the finding's display filter names)."""
    s = samples_of(point, key, flow)
    if s is None or not s.d:
        return []
    seqs = sorted(s.d)
    out = []
    for a, b in ranges[:FILTER_RANGES]:
        k = bisect.bisect_left(seqs, a)
        e = bisect.bisect_left(seqs, b)
        for q in seqs[k:e][:2]:
            ref = s.d[q][1]
            if ref not in out:
                out.append(ref)
    return out[:limit]


def esp_facts(view, points, order, spi, per):
    """Reordering introduced and sizes changed between consecutive points that saw the SA."""
    prev = None
    for i in order:
        sa = per.get(i)
        if sa is None:
            continue
        if prev is not None:
            pi, psa = prev
            if sa.reordered > psa.reordered:
                view.reordering.append({"from": points[pi].name, "to": points[i].name,
                                        **flow_ids(spi, sa), "reordered_from": psa.reordered,
                                        "reordered_to": sa.reordered})
            sp = samples_of(points[pi], spi, psa)
            sq = samples_of(points[i], spi, sa)
            changed = 0
            example = None
            if sp is not None and sq is not None:
                for seq in sp.d.keys() & sq.d.keys():
                    la, lb = sp.d[seq][2], sq.d[seq][2]
                    if la != lb:
                        changed += 1
                        example = example or (seq, la, lb)
            if changed or sa.fragmented > psa.fragmented:
                view.mtu.append({"from": points[pi].name, "to": points[i].name,
                                 **flow_ids(spi, sa), "resized_samples": changed,
                                 "example": {"seq": example[0], "from_length": example[1],
                                             "to_length": example[2]} if example else None,
                                 "fragmented_from": psa.fragmented,
                                 "fragmented_to": sa.fragmented})
        prev = (i, sa)


def _ike_label(m) -> str:
    if m.version == 2:
        kind = "response" if m.is_response else "request"
    else:
        kind = f"message {m.step}" if m.step else "message"
    if m.skf is not None:
        kind += f" fragment {m.skf[0]}/{m.skf[1]}" if isinstance(m.skf, tuple) else " fragment"
    return kind


def _match_copies(up, down, unc, slack) -> list:
    """For each upstream time, the index of the downstream copy it became (None: none): pairs
    no earlier than the upstream copy (less the clock uncertainty) and at most ``slack``
    later, the shortest delays first."""
    pairs = sorted((td - t, u, k) for u, t in enumerate(up) for k, td in enumerate(down)
                   if t - unc - 1e-3 <= td <= t + slack)
    out = [None] * len(up)
    used = set()
    for _d, u, k in pairs:
        if out[u] is None and k not in used:
            out[u] = k
            used.add(k)
    return out


def ike_losses(view, points, order, dg, fwd, per, slack, tid, last_dir):
    """Copies of one IKE message seen at a point and never at the next point of their
    direction: each copy is matched to a copy downstream no earlier than it (less the clock
    uncertainty) and at most ``slack`` later.  A point judges a copy only when it captured
    from before it and either ran ``slack`` beyond it or saw later packets of the same
    direction (``last_dir``)."""
    alive = None  # (point index, [IkeMsg]) still travelling
    for i in order:
        p = points[i]
        ms = per.get(i, [])
        if alive is None:
            if ms:
                alive = (i, list(ms))
            continue
        win = window(p)
        if win is None:
            continue
        pi, pms = alive
        unc = (p.offset.uncertainty or 0.0) if p.offset is not None else 0.0
        gone = []
        later = last_dir.get((i, fwd), float("-inf"))
        up_t = [corrected(points, pi, m.ts) for m in pms]
        hits = _match_copies(up_t, [corrected(points, i, m.ts) for m in ms], unc, slack)
        for m, t, hit in zip(pms, up_t, hits):
            if hit is None and win[0] <= t and (t + slack <= win[1] or later > t + 1e-3):
                gone.append(m)
        if gone:
            up = points[pi]
            m0 = gone[0]
            frames = [(up.name, up.file(r[0]), r[1]) for m in gone
                      for r in (m.frames or (m.ref,))]
            view.losses.append(SegmentLoss(
                "ike", up.name, p.name, tid, ike=(bytes(m0.ispi), m0.exch, m0.msgid,
                                                  bool(m0.is_response) if m0.version == 2
                                                  else None),
                lost=len(gone), frames=frames, messages=[_ike_label(m0)] * len(gone),
                first_ts=corrected(points, pi, gone[0].ts),
                last_ts=corrected(points, pi, gone[-1].ts), exch=m0.exch,
                version=m0.version, forward=fwd))
        # what travels on: the copies seen here (or, where this point saw none, those it
        # could not judge)
        if ms:
            alive = (i, list(ms))
        else:
            rest = [m for m in pms if m not in gone]
            if not rest:
                break
            alive = (pi, rest)


def merge_ike_losses(view):
    """One loss per IKE exchange and segment (its messages listed)."""
    out = []
    by: dict = {}
    for x in view.losses:
        if x.kind != "ike":
            out.append(x)
            continue
        key = (x.ike[0], x.ike[1], x.ike[2], x.src, x.dst)
        y = by.get(key)
        if y is None:
            by[key] = x
            out.append(x)
            continue
        y.lost += x.lost
        y.messages += x.messages
        y.frames += [f for f in x.frames if f not in y.frames]
        y.first_ts = min(y.first_ts, x.first_ts)
        y.last_ts = max(y.last_ts, x.last_ts)
    view.losses = out


def _ep(m_or_sa):
    from pcapvpn.model import addr

    x = m_or_sa
    s = addr(x.src) + (f":{x.sport}" if x.sport is not None and x.sport >= 0 else "")
    d = addr(x.dst) + (f":{x.dport}" if x.dport is not None and x.dport >= 0 else "")
    return f"{s} -> {d}"


def nat_facts(view, points, placed, flows_ike, flows_esp):
    """Inside <-> outside tuples: the same packet with other addresses or ports at two
    neighbouring points (``between``: the pairs of points where the tuple changes); an ESP
    SA whose source moved at one point and not at another (a NAT mapping change)."""
    order = [points[i].name for i in placed]
    seen = set()

    def between(tuples):
        names = [n for n in order if n in tuples]
        return [[a, b] for a, b in zip(names, names[1:]) if tuples[a] != tuples[b]]

    for _dg, fwd, per in flows_ike:
        if not fwd:
            continue  # the same translation as the other way
        tuples = {points[i].name: _ep(ms[0]) for i, ms in per.items()}
        if len(set(tuples.values())) > 1:
            key = tuple(sorted(tuples.items()))
            if key not in seen:
                seen.add(key)
                view.nat.append({"what": "ike", "points": tuples, "between": between(tuples)})
    # a mapping change: the messages of one IKE SA from one side reach one destination port
    # from several source tuples at some points and from one at others
    by_sa: dict = {}
    for _dg, fwd, per in flows_ike:
        for i, ms in per.items():
            for m in ms:
                key = (bytes(m.ispi), fwd)
                by_sa.setdefault(key, {}).setdefault(points[i].name, {}).setdefault(
                    m.dport, set()).add((m.src, m.sport))
    for (ispi, fwd), per_point in by_sa.items():
        changes = {n: sum(len(v) - 1 for v in d.values()) for n, d in per_point.items()}
        if len(set(changes.values())) > 1:
            view.nat.append({"what": "ike_mapping", "ike_spi": ispi.hex(),
                             "direction": "a_to_b" if fwd else "b_to_a",
                             "points": {n: f"{sum(len(v) for v in d.values())} source tuple(s)"
                                        for n, d in per_point.items()},
                             "between": [], "source_changes": changes})
    for spi, _fwd, per in flows_esp:
        tuples = {points[i].name: _ep(sa) for i, sa in per.items()}
        moves = {points[i].name: sa.moves_total for i, sa in per.items()}
        if len(set(tuples.values())) > 1 or len(set(moves.values())) > 1:
            key = tuple(sorted(tuples.items()))
            if not any(moves.values()) and not isinstance(spi, int):
                if key in seen:
                    continue  # the same translation, listed for another flow already
                seen.add(key)
            ids = flow_ids(spi, next(iter(per.values())))
            view.nat.append({"what": ids.pop("kind", "esp"), **ids, "points": tuples,
                             "between": between(tuples), "source_changes": moves})
