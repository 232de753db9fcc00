"""Several vantage points of the same traffic (issue 16): the same packet matched at each point,
the clock offset of each point against the first, the order of the points along each tunnel's
path, and what vanished between two of them.

Each point is analysed by its own :class:`PointTracker` (a :class:`pcapvpn.track.Tracker` whose
ESP tracker is a :class:`PointEspTracker`), so the ESP fast path of every point stays what it
is for one capture.  Besides the usual per-SA counters a point keeps, per SA and bounded:

* the **holes** of its sequence numbers: ranges between the lowest and the highest number seen
  that never arrived (late arrivals fill them), at most :data:`MAX_HOLES` per SA; with the
  lowest and highest number they give the set of numbers the point saw;
* a **sample** ``sequence number -> (time, frame, length)`` of the numbers divisible by the SA's
  stride; the stride doubles (keeping only its multiples) when :data:`MAX_SAMPLES` are held.
  Every point samples the same numbers, so samples match without any coordination.

IKE messages are matched by their bytes (the IKE tracker's ``digest``: header and payloads, never
the IP/UDP headers a NAT rewrites); ESP by (SPI, sequence number), which survive NAT and UDP
encapsulation.  Capture duplicates at one point are folded first (the IKE tracker marks them; the
ESP tracker counts them apart), so a copy is never taken for a second point.

Clock offset of point *k* against point 0 (the NTP way, RFC 5905 §8): for matched packets
``d = t_k - t_0``.  Packets that travel from point 0's side to point *k*'s have ``d = θ + δ``,
those the other way ``d = θ - δ'``, so θ lies between the largest ``d`` of one direction and the
smallest of the other; the estimate is the middle and the uncertainty half the width (half the
smallest round trip).  Directions are told by the packet's addresses at point 0 (a pair of
directions ``a -> b`` / ``b -> a``).  With a span longer than ``clock_drift_span``, or when a
constant offset contradicts the bounds, the offset gets a drift term fitted over time windows.

Nothing here judges: :mod:`pcapvpn.rules.path` turns the facts into findings and locations.
"""

from __future__ import annotations

import bisect
import statistics
from dataclasses import dataclass, field

from dissect.vpn.registry import exchange_name

from pcapvpn.track import Tracker
from pcapvpn.track.esp import EspTracker

#: sequence-number holes kept per SA and point (beyond them the SA's comparison is approximate)
MAX_HOLES = 4096
#: matched-packet samples kept per SA and point
MAX_SAMPLES = 512
#: time windows for the drift fit
DRIFT_WINDOWS = 8
#: IKE messages kept per tunnel for the path ladder
MAX_LADDER = 200
#: lost ESP ranges named by a finding's display filter and evidence
FILTER_RANGES = 5


def _numpy():
    from dissect.vpn.batch import np

    return np


class SampleSet:
    """Sampled sequence numbers of one SPI (one epoch of its numbering) at one point:
    ``{extended seq: (ts, ref, length)}``; ``base`` is the ESN high half added to the numbers,
    ``epoch`` counts the restarts of the numbering before this set (sets of two epochs are never
    matched)."""

    __slots__ = ("mask", "d", "base", "epoch", "since", "wrap_ts", "prev_base")

    def __init__(self, epoch=0, since=float("-inf")):
        self.mask = 0  # stride - 1 (a power of two)
        self.d: dict = {}
        self.base = 0
        self.epoch = epoch
        #: packets before this time belong to the previous epoch (a batch is sampled after
        #: the tracker saw it, restarts and ESN wraps included)
        self.since = since
        #: the ESN base before the latest wrap, for packets before it
        self.wrap_ts = float("-inf")
        self.prev_base = 0

    def wrapped(self, base, ts):
        self.prev_base = self.base
        self.base = base
        self.wrap_ts = ts

    def add(self, seq, ts, ref, length):
        if ts < self.since:
            return
        seq += self.base if ts >= self.wrap_ts else self.prev_base
        if seq & self.mask or seq in self.d:
            return
        d = self.d
        d[seq] = (ts, ref, length)
        if len(d) > MAX_SAMPLES:
            self.mask = m = self.mask * 2 + 1
            self.d = {k: v for k, v in d.items() if not k & m}


class PointEspTracker(EspTracker):
    """The ESP tracker of one vantage point: the usual one plus per-SA holes and samples."""

    def __init__(self, thresholds, limits=None):
        super().__init__(thresholds, limits)
        #: EspSA -> [[first missing, end (exclusive), ref of the packet after the hole], ...]
        #: in extended sequence numbers, sorted
        self.holes: dict = {}
        #: SAs whose holes went beyond MAX_HOLES (their seen set is approximate)
        self.holes_over: set = set()
        #: SPI -> SampleSet (ESP; AH in ``ah_samples``), the current epoch of its numbering
        self.samples: dict = {}
        self.ah_samples: dict = {}
        #: EspSA -> extended number where its current epoch (after a restart) began
        self.epoch_lo: dict = {}
        plain = self.esp
        samples = self.samples
        plain_ah = self.ah
        ah_samples = self.ah_samples

        def ah(ref, ts, ipver, src, dst, spi, seq, length):
            plain_ah(ref, ts, ipver, src, dst, spi, seq, length)
            s = ah_samples.get(spi)
            if s is None:
                s = ah_samples[spi] = SampleSet()
            if not seq & s.mask:
                s.add(seq, ts, ref, length)

        self.ah = ah

        def esp(ref, ts, ipver, src, dst, sport, dport, spi, seq, length, transport=None):
            plain(ref, ts, ipver, src, dst, sport, dport, spi, seq, length, transport)
            s = samples.get(spi)
            if s is None:
                s = samples[spi] = SampleSet()
            if not seq & s.mask:
                s.add(seq, ts, ref, length)

        self._plain_esp = plain
        self._sampling_esp = esp
        self.esp = esp

    def esp_batch(self, tag, batch):
        self.esp = self._plain_esp  # the batch's packets are sampled below, once tracked
        try:
            super().esp_batch(tag, batch)
        finally:
            self.esp = self._sampling_esp
        self._sample_batch(tag, batch)

    def _sample_batch(self, tag, batch):
        np = _numpy()
        spi = batch.spi
        seq = batch.seq
        uniq, inv = np.unique(spi, return_inverse=True)
        samples = self.samples
        masks = []
        for u in uniq.tolist():
            s = samples.get(u)
            if s is None:
                s = samples[u] = SampleSet()
            masks.append(s.mask)
        sel = np.flatnonzero((seq.astype(np.int64) & np.array(masks, dtype=np.int64)[inv]) == 0)
        if not len(sel):
            return
        ts = batch.ts
        num = batch.num
        ln = batch.length
        for i in sel.tolist():
            samples[int(spi[i])].add(int(seq[i]), float(ts[i]), (tag, int(num[i])), int(ln[i]))

    def _seq(self, sa, ts, ref, seq):
        resets, wraps = sa.resets, sa.wraps
        super()._seq(sa, ts, ref, seq)
        if sa.resets != resets:
            self._restart(sa, ts, seq)
        elif sa.wraps != wraps:
            s = self._sample_sets(sa).get(sa.spi)
            if s is not None:
                s.wrapped(sa.base, ts)  # ESN: the numbers after the wrap go on from 2**32

    def _sample_sets(self, sa) -> dict:
        return self.ah_samples if sa.proto == "ah" else self.samples

    def _restart(self, sa, ts, seq):
        """The SA's numbering restarted (a peer restart reusing the SPI): a new epoch.  Its
        holes and samples start afresh, so numbers of two epochs are never compared."""
        self.holes.pop(sa, None)
        self.holes_over.discard(sa)
        self.epoch_lo[sa] = seq + sa.base
        sets = self._sample_sets(sa)
        new = sets[sa.spi] = SampleSet(sa.resets, ts)
        new.base = new.prev_base = sa.base

    def _jump(self, sa, ts, ref, top, s):
        super()._jump(sa, ts, ref, top, s)
        if s - top > 1:
            h = self.holes.setdefault(sa, [])
            if len(h) < MAX_HOLES:
                h.append([top + 1, s, ref])
            else:
                self.holes_over.add(sa)

    def _late(self, sa, seq, depth):
        super()._late(sa, seq, depth)
        h = self.holes.get(sa)
        if not h:
            return
        s = seq + sa.base
        i = bisect.bisect_right(h, [s, float("inf")]) - 1
        if i < 0:
            return
        a, b, ref = h[i]
        if not a <= s < b:
            return
        parts = [p for p in ([a, s, ref], [s + 1, b, ref]) if p[0] < p[1]]
        h[i:i + 1] = parts

    def remove(self, sas) -> int:
        """Forget SAs (live mode's expiry): their holes, and the samples of SPIs no SA has."""
        n = super().remove(sas)
        for sa in sas:
            self.holes.pop(sa, None)
            self.holes_over.discard(sa)
            self.epoch_lo.pop(sa, None)
        live = {sa.spi for sa in self._sas}
        for d in (self.samples, self.ah_samples):
            for spi in [k for k in d if k not in live]:
                del d[spi]
        return n

    def seen(self, sa) -> list:
        """The sequence numbers ``sa`` saw at this point, as ranges ``[(a, b), ...]`` (b
        exclusive, extended numbers)."""
        lo = self.epoch_lo.get(sa, sa.min_seq)
        hi = sa.max_seq + 1
        out = []
        cur = lo
        for a, b, _ref in self.holes.get(sa, ()):
            if a > cur:
                out.append((cur, min(a, hi)))
            cur = max(cur, b)
        if cur < hi:
            out.append((cur, hi))
        return [r for r in out if r[0] < r[1]]

    def hole_refs(self, sa, ranges) -> list:
        """Refs of the packets right after the holes that overlap ``ranges``."""
        out = []
        for a, b, ref in self.holes.get(sa, ()):
            if any(a < y and x < b for x, y in ranges):
                out.append(ref)
        return out


class PointTracker(Tracker):
    """The tracker of one vantage point: ESP/AH through :class:`PointEspTracker`, the numbered
    flows of the other VPNs (:mod:`pcapvpn.track.vantage.seqflows`) after the VPN tracker."""

    esp_class = PointEspTracker

    def __init__(self, *args, **kw):
        from pcapvpn.track.vantage.seqflows import SeqStore

        super().__init__(*args, **kw)
        self.seq_store = SeqStore(self.vpn_tracker)
        vpn_udp = self.vpn_udp
        seq_udp = self.seq_store.udp

        def udp(ref, ts, ipver, src, dst, sport, dport, proto, data, off, end):
            vpn_udp(ref, ts, ipver, src, dst, sport, dport, proto, data, off, end)
            seq_udp(ref, ts, ipver, src, dst, sport, dport, proto, data, off, end)

        self.vpn_udp = udp
        if self.inner_tracker is not None:
            self.inner_tracker.vpn_udp = udp


# -- range sets --------------------------------------------------------------------------------

def r_count(rs) -> int:
    return sum(b - a for a, b in rs)


def r_diff(xs, ys) -> list:
    """Ranges of ``xs`` not in ``ys`` (both sorted, disjoint, b exclusive)."""
    out = []
    j = 0
    for a, b in xs:
        cur = a
        while j < len(ys) and ys[j][1] <= cur:
            j += 1
        k = j
        while k < len(ys) and ys[k][0] < b:
            ya, yb = ys[k]
            if ya > cur:
                out.append((cur, ya))
            cur = max(cur, yb)
            k += 1
        if cur < b:
            out.append((cur, b))
    return out


def r_clip(xs, lo, hi) -> list:
    return [(max(a, lo), min(b, hi)) for a, b in xs if min(b, hi) > max(a, lo)]


def r_union(xs, ys) -> list:
    out = []
    for a, b in sorted(list(xs) + list(ys)):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


# -- the model ----------------------------------------------------------------------------------

@dataclass
class Point:
    """One vantage point: a name, its files (pieces of one capture), optionally one interface."""

    name: str
    files: list
    iface: str | None = None
    tracker: object = None
    decoder: object = None
    sources: list = field(default_factory=list)
    start: float | None = None
    end: float | None = None
    #: capture drops the files report (pcapng ISB / packet block drop counts), None if unknown
    drops: int | None = None
    #: clock relative to point 0 (filled by :func:`match`)
    offset: "Offset | None" = None

    def file(self, idx: int) -> str:
        """The name of file ``idx`` (file indices run over every point's files)."""
        names = self.tracker.names
        return names[idx] if 0 <= idx < len(names) else f"#{idx}"


@dataclass
class Offset:
    """Clock of a point minus the first point's clock, at time ``t`` of the first point's
    clock: ``offset + drift * (t - t_ref)``."""

    offset: float = 0.0
    uncertainty: float | None = 0.0
    drift: float = 0.0
    t_ref: float = 0.0
    matched: int = 0
    #: matched packets in one direction only: the offset includes the one-way delay
    one_way: bool = False

    def at(self, t: float) -> float:
        return self.offset + self.drift * (t - self.t_ref)

    def to_first(self, t: float) -> float:
        """A time of this point's clock on the first point's clock."""
        return t - self.at(t - self.offset)


def estimate_offset(pairs, drift_span: float) -> Offset | None:
    """``pairs``: ``(t0, d, label)`` with ``d = t_k - t_0`` of one matched packet and ``label``
    its direction (``(src, dst)`` at point 0).  None without pairs."""
    if not pairs:
        return None
    t0s = [p[0] for p in pairs]
    span = max(t0s) - min(t0s)
    const = _bounds(pairs)
    if const is None:
        ds = sorted(p[1] for p in pairs)
        # one direction only: the offset plus the one-way delay (the smallest d bounds it)
        return Offset(ds[0], None, 0.0, min(t0s), len(pairs), one_way=True)
    lo, hi = const
    if span > 0 and (span > drift_span or lo > hi):
        fit = _drift_fit(pairs, min(t0s), span)
        if fit is not None:
            return fit
    return Offset((lo + hi) / 2, abs(hi - lo) / 2, 0.0, min(t0s), len(pairs))


def _bounds(pairs):
    """(largest d of the directions towards point 0, smallest d of the directions away from
    it), or None when no direction has its reverse among the pairs."""
    by: dict = {}
    for _t, d, label in pairs:
        by.setdefault(label, []).append(d)
    lows = []
    highs = []
    for (a, b), ds in by.items():
        if (a, b) > (b, a) or (b, a) not in by:
            continue
        rs = by[(b, a)]
        if statistics.median(ds) >= statistics.median(rs):
            up, down = ds, rs
        else:
            up, down = rs, ds
        highs.append(min(up))
        lows.append(max(down))
    if not lows:
        return None
    return max(lows), min(highs)


def _drift_fit(pairs, t_first, span) -> Offset | None:
    w = span / DRIFT_WINDOWS
    bins: dict = {}
    for p in pairs:
        bins.setdefault(min(int((p[0] - t_first) / w), DRIFT_WINDOWS - 1), []).append(p)
    pts = []
    widths = []
    for k in sorted(bins):
        b = _bounds(bins[k])
        if b is None:
            continue
        lo, hi = b
        pts.append((statistics.fmean(p[0] for p in bins[k]) - t_first, (lo + hi) / 2))
        widths.append(abs(hi - lo) / 2)
    if len(pts) < 3:
        return None
    mx = statistics.fmean(x for x, _ in pts)
    my = statistics.fmean(y for _, y in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx <= 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx
    off = my - slope * mx
    resid = max(abs(y - (off + slope * x)) for x, y in pts)
    return Offset(off, max(widths) + resid, slope, t_first, len(pairs))


class _Classes:
    """Union-find over ``(point, address)``: the same host seen at several points (NAT changes
    its address between points; matched packets tie the addresses together)."""

    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        p = self.parent
        root = x
        while p.get(root, root) != root:
            root = p[root]
        while p.get(x, x) != root:
            p[x], x = root, p[x]
        return root

    def union(self, x, y):
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            # the first point's address names the class
            if ry < rx:
                rx, ry = ry, rx
            self.parent[ry] = rx


@dataclass
class SegmentLoss:
    """Packets of one flow seen at ``src`` (a point name, or None: before the first point) and
    never at ``dst`` (None: after the last point)."""

    kind: str  # "esp" | "ike" | "ah" | "wireguard" | "openvpn" | "l2tp"
    src: str | None
    dst: str | None
    tunnel: str
    #: ESP: the SPI; IKE: the IKE SA (initiator SPI bytes), exchange type, Message ID
    spi: int | None = None
    ike: tuple | None = None
    lost: int = 0
    ranges: list = field(default_factory=list)
    approximate: bool = False
    #: evidence: [(point, file, frame)]
    frames: list = field(default_factory=list)
    #: IKE: descriptions of the lost messages (``request``, ``response``, ``fragment 2/3`` ...)
    messages: list = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None
    #: IKEv2 exchange type / IKEv1 exchange type (for the stage), and the version
    exch: int | None = None
    version: int | None = None
    #: the direction: True when it flows from the tunnel's side ``a`` to ``b``
    forward: bool = True
    #: the other VPNs' flows: the words naming it, and the width of its numbers in bits
    flow: str | None = None
    width: int = 32
    #: the other VPNs' flows: the flow's key (:class:`seqflows.SeqFlow`)
    key: object = None


@dataclass
class PathView:
    """One tunnel (of the first point) seen from every point."""

    tunnel: str
    #: point names from the tunnel's ``a`` side to its ``b`` side (those that saw it)
    order: list = field(default_factory=list)
    #: points whose place could not be told (nothing of the tunnel matched)
    unplaced: list = field(default_factory=list)
    #: {point: {"a_to_b": packets, "b_to_a": packets}} (IKE + ESP)
    packets: dict = field(default_factory=dict)
    #: [{"from", "to", "direction", "delay_s", "delay_min_s", "delay_max_s", "samples"}]
    delays: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    #: [{"from", "to", "direction", "spi", "packets", "why"}]: seen downstream, never upstream
    appeared: list = field(default_factory=list)
    #: [{"from", "to", "spi", "reordered_from", "reordered_to"}]
    reordering: list = field(default_factory=list)
    #: [{"points": {name: "addr:port -> addr:port"}, "what"}]
    nat: list = field(default_factory=list)
    #: [{"from", "to", "spi", "what", ...}]
    mtu: list = field(default_factory=list)
    #: the tunnel's flows (for the rules' locations; not in the JSON): ESP ``[(spi, a->b,
    #: {point index: EspSA})]``, IKE ``[(digest, a->b, {point index: [IkeMsg]})]``
    esp_flows: list = field(default_factory=list)
    ike_flows: list = field(default_factory=list)
    #: AH and the other VPNs' numbered flows: ``[(key, a->b, {point index: EspSA or
    #: SeqFlow})]`` (keys: ``("ah", spi)``, ``(kind, key, epoch)``)
    seq_flows: list = field(default_factory=list)
    #: point indices in ``order``
    placed: list = field(default_factory=list)
    #: the IKE messages for the path ladder (one column per point), in time order, at most
    #: MAX_LADDER: ``{"label", "forward", "seen": {point name: (time on the first point's
    #: clock, copies)}}``
    messages: list = field(default_factory=list)


@dataclass
class Vantage:
    points: list
    paths: dict = field(default_factory=dict)  # tunnel id -> PathView
    #: IKE message digest -> {point name: [IkeMsg, ...]} (copies at one point folded)
    ike_seen: dict = field(default_factory=dict)
    #: ESP SPI -> {point name: EspSA}
    esp_seen: dict = field(default_factory=dict)
    classes: object = None

    def point(self, name):
        for p in self.points:
            if p.name == name:
                return p
        return None


# -- matching -----------------------------------------------------------------------------------

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
    """The numbered flows beside ESP: ``("ah", spi)`` -> {point index: EspSA}, and ``(kind,
    key, epoch)`` -> {point index: SeqFlow} (:mod:`pcapvpn.track.vantage.seqflows`)."""
    seen: dict = {("ah", spi): per for spi, per in _sa_index(points, "ah").items()}
    for i, p in enumerate(points):
        store = getattr(p.tracker, "seq_store", None)
        if store is None:
            continue
        for f in store.all_flows():
            seen.setdefault((f.kind, f.key, f.epoch), {})[i] = f
    return seen


# -- what a point saw of one flow: ESP (key: the SPI), AH (``("ah", spi)``: the ESP tracker's
# SAs) or another VPN's numbered flow (``(kind, key, epoch)``: a SeqFlow)

def _by_esp_tracker(key) -> bool:
    return isinstance(key, int) or key[0] == "ah"


def _samples(p, key, flow):
    et = p.tracker.esp_tracker
    if isinstance(key, int):
        s = et.samples.get(key)
    elif key[0] == "ah":
        s = et.ah_samples.get(key[1])
    else:
        return flow.samples
    # the SPI's current numbering epoch only (a restart since: none)
    return s if s is not None and s.epoch == flow.resets else None


def _seen(p, key, flow) -> list:
    return p.tracker.esp_tracker.seen(flow) if _by_esp_tracker(key) else flow.seen()


def _hole_refs(p, key, flow, ranges) -> list:
    if _by_esp_tracker(key):
        return p.tracker.esp_tracker.hole_refs(flow, ranges)
    return flow.hole_refs(ranges)


def _approx(p, key, flow) -> bool:
    if _by_esp_tracker(key):
        return flow in p.tracker.esp_tracker.holes_over
    return flow.holes_over or not flow.in_order


def _epoch(key, flow) -> int:
    """How many restarts of its numbering the flow saw before its current epoch."""
    return flow.resets if _by_esp_tracker(key) else flow.epoch


def _kind(key) -> str:
    return "esp" if isinstance(key, int) else key[0]


def _flow_ids(key, flow) -> dict:
    """How the path facts name a flow: ``{"spi": hex}`` (ESP, AH) or ``{"kind", "flow"}``."""
    if isinstance(key, int):
        return {"spi": f"{key:08x}"}
    if key[0] == "ah":
        return {"kind": "ah", "spi": f"{key[1]:08x}"}
    return {"kind": key[0], "flow": flow.label}


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


def match(points, thresholds, tunnels, vpn_tunnels=()) -> Vantage:
    """Match the points' packets; ``tunnels`` (IPsec) and ``vpn_tunnels`` (the other VPNs) are
    the first point's."""
    v = Vantage(points)
    ike = _ike_index(points)
    esp = _esp_index(points)
    seqs = _seq_index(points)
    # -- clock offsets against point 0
    points[0].offset = Offset(0.0, 0.0, 0.0, points[0].start or 0.0, 0)
    for k in range(1, len(points)):
        pairs = []
        for per in ike.values():
            a, b = per.get(0), per.get(k)
            if a and b and len(a) == 1 and len(b) == 1:
                pairs.append((a[0].ts, b[0].ts - a[0].ts, (a[0].src, a[0].dst)))
        pairs += _pairs_of(points, k, esp, _samples)
        pairs += _pairs_of(points, k, seqs, _samples)
        off = estimate_offset(pairs, thresholds.clock_drift_span)
        points[k].offset = off
    # -- the same hosts across points
    cls = _Classes()
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
    return v


def _corrected(points, i, ts):
    off = points[i].offset
    if i == 0 or off is None:
        return ts
    return off.to_first(ts)


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
        times = {i: _corrected(points, i, ms[0].ts) for i, ms in per.items() if len(ms) == 1}
        if len(times) > 1:
            vote(times, fwd)
    for spi, fwd, per in flows_esp + flows_seq:
        if len(per) < 2:
            continue
        sets = {i: _samples(points[i], spi, x) for i, x in per.items()}
        common = None
        for s in sets.values():
            if s is None:
                common = set()
                break
            common = set(s.d) if common is None else common & set(s.d)
        for seq in sorted(common or ())[:MAX_SAMPLES]:
            vote({i: _corrected(points, i, sets[i].d[seq][0]) for i in per}, fwd)
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
            tl = _corrected(points, i, ms[-1].ts)
            if tl > last_dir.get((i, fwd), float("-inf")):
                last_dir[(i, fwd)] = tl
    for _spi, fwd, per in flows_esp + flows_seq:
        for i, sa in per.items():
            tl = _corrected(points, i, sa.last_ts)
            if tl > last_dir.get((i, fwd), float("-inf")):
                last_dir[(i, fwd)] = tl
    for spi, fwd, per in flows_esp + flows_seq:
        _esp_losses(view, points, placed if fwd else placed[::-1], spi, fwd, per, slack, t.id)
        _esp_facts(view, points, placed if fwd else placed[::-1], spi, per)
    for dg, fwd, per in flows_ike:
        _ike_losses(view, points, placed if fwd else placed[::-1], dg, fwd, per, slack, t.id,
                    last_dir)
    _merge_ike_losses(view)
    _nat_facts(view, points, placed, flows_ike, flows_esp + flows_seq)
    _ladder(view, points, flows_ike, slack)
    return view


def _ladder(view, points, flows_ike, slack):
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
        copies = [{points[idx[0]].name: _corrected(points, idx[0], x.ts)}
                  for x in per[idx[0]]]
        for i in idx[1:]:
            p = points[i]
            unc = (p.offset.uncertainty or 0.0) if p.offset is not None else 0.0
            down = [_corrected(points, i, x.ts) for x in per[i]]
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


def _window(p):
    """(start, end) of a point's capture on the first point's clock."""
    i_off = p.offset
    s, e = p.start, p.end
    if s is None or e is None:
        return None
    if i_off is not None:
        s, e = i_off.to_first(s), i_off.to_first(e)
    return s, e


def _esp_losses(view, points, order, spi, fwd, per, slack, tid):
    """Walk the points in the flow's direction: what each one misses of what the points before
    it saw (within its capture window)."""
    if not _by_esp_tracker(spi) and not all(x.in_order for x in per.values()):
        return  # numbers that do not run in order (not a sequence): losses cannot be told
    alive = None  # sequence ranges still travelling
    upstream = None  # index of the last point that saw the SA
    union_up: list = []
    up_first = up_last = None
    for i in order:
        p = points[i]
        sa = per.get(i)
        win = _window(p)
        if sa is not None and upstream is not None and _epoch(spi, sa) != \
                _epoch(spi, per[upstream]):
            continue  # another epoch of the numbering here (a restart one point missed)
        if sa is not None:
            seen = _seen(p, spi, sa)
            first = _corrected(points, i, sa.first_ts)
            last = _corrected(points, i, sa.last_ts)
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
        approx = _approx(p, spi, sa) if sa is not None else False
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
            lost = list(alive)
            appeared = []
        if lost:
            n = r_count(lost)
            up = points[upstream]
            frames = [(up.name, up.file(r[0]), r[1])
                      for r in _around(up, spi, per[upstream], lost)]
            if sa is not None:
                frames += [(p.name, p.file(r[0]), r[1])
                           for r in _hole_refs(p, spi, sa, lost[:FILTER_RANGES])[:10]]
            ufl = per[upstream]
            view.losses.append(SegmentLoss(
                _kind(spi), up.name, p.name, tid,
                spi=spi if isinstance(spi, int) else ufl.spi if spi[0] == "ah" else None,
                lost=n, ranges=lost[:50], approximate=approx, frames=frames,
                first_ts=up_first, last_ts=up_last, forward=fwd,
                flow=getattr(ufl, "label", None), width=getattr(ufl, "width", 32),
                key=None if _by_esp_tracker(spi) else ufl.key))
            alive = r_diff(alive, lost)
        if appeared and upstream is not None:
            up = points[upstream]
            view.appeared.append({"from": up.name, "to": p.name,
                                  **_flow_ids(spi, per[upstream]),
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
    s = _samples(point, key, flow)
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


def _esp_facts(view, points, order, spi, per):
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
                                        **_flow_ids(spi, sa), "reordered_from": psa.reordered,
                                        "reordered_to": sa.reordered})
            sp = _samples(points[pi], spi, psa)
            sq = _samples(points[i], spi, sa)
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
                                 **_flow_ids(spi, sa), "resized_samples": changed,
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


def _ike_losses(view, points, order, dg, fwd, per, slack, tid, last_dir):
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
        win = _window(p)
        if win is None:
            continue
        pi, pms = alive
        unc = (p.offset.uncertainty or 0.0) if p.offset is not None else 0.0
        gone = []
        later = last_dir.get((i, fwd), float("-inf"))
        up_t = [_corrected(points, pi, m.ts) for m in pms]
        hits = _match_copies(up_t, [_corrected(points, i, m.ts) for m in ms], unc, slack)
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
                first_ts=_corrected(points, pi, gone[0].ts),
                last_ts=_corrected(points, pi, gone[-1].ts), exch=m0.exch,
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


def _merge_ike_losses(view):
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


def _nat_facts(view, points, placed, flows_ike, flows_esp):
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
            ids = _flow_ids(spi, next(iter(per.values())))
            view.nat.append({"what": ids.pop("kind", "esp"), **ids, "points": tuples,
                             "between": between(tuples), "source_changes": moves})


# -- the --vantage hint: two plain inputs of one point that see the same packets -----------------

#: ESP samples per SPI and file kept for the hint (sequence numbers divisible by HINT_STRIDE)
HINT_SAMPLES = 64
HINT_STRIDE = 16


class EspPairSampler:
    """Plain inputs read as one point: a few ESP packets per SPI and file (sequence numbers
    divisible by :data:`HINT_STRIDE`, at most :data:`HINT_SAMPLES` each), so that two files
    whose ESP (SPI, sequence number) coincide at a steady time difference are told apart from
    pieces of one capture without any IKE.  ``wrap`` the sink's ``esp``."""

    def __init__(self):
        #: (spi, file) -> {seq: ts}
        self.d: dict = {}

    def wrap(self, esp):
        d = self.d
        mask = HINT_STRIDE - 1
        limit = HINT_SAMPLES

        def sampled(ref, ts, ipver, src, dst, sport, dport, spi, seq, length,
                    transport=None):
            esp(ref, ts, ipver, src, dst, sport, dport, spi, seq, length, transport)
            if not seq & mask:
                k = (spi, ref[0])
                x = d.get(k)
                if x is None:
                    if len(d) >= 4096:
                        return
                    x = d[k] = {}
                if len(x) < limit and seq not in x:
                    x[seq] = ts

        return sampled

    def pairs(self) -> dict:
        """(file a, file b) -> [time differences of the same (SPI, seq)], and per file the
        samples held."""
        by_spi: dict = {}
        for (spi, f), x in self.d.items():
            by_spi.setdefault(spi, {})[f] = x
        out: dict = {}
        for files in by_spi.values():
            fs = sorted(files)
            for i, fa in enumerate(fs):
                for fb in fs[i + 1:]:
                    xa, xb = files[fa], files[fb]
                    for seq in xa.keys() & xb.keys():
                        out.setdefault((fa, fb), []).append(xb[seq] - xa[seq])
        return out

    def counts(self) -> dict:
        n: dict = {}
        for (_spi, f), x in self.d.items():
            n[f] = n.get(f, 0) + len(x)
        return n


def _steady(pairs, per_file, names, what) -> dict | None:
    best = None
    for (fa, fb), ds in pairs.items():
        if len(ds) < 2 or max(ds) - min(ds) > 0.05:
            continue
        if 2 * len(ds) < min(per_file.get(fa, 0), per_file.get(fb, 0)):
            continue
        cand = {"files": [names[fa], names[fb]], "offset_s": round(statistics.median(ds), 6),
                "matched": len(ds), "what": what}
        if best is None or cand["matched"] > best["matched"]:
            best = cand
    return best


def same_packets_hint(tracker, names, esp_sampler=None) -> dict | None:
    """Two files given as pieces of one point that hold the same IKE messages at a steady time
    difference (two capture points of the same traffic, not pieces of one):
    ``{files: [a, b], offset_s, matched}`` for the hint, else None.  An IKE message that is
    once in each file pairs them; at least two such pairs, their time differences within
    50 ms of each other, covering at least half the messages of the smaller side."""
    pairs: dict = {}
    per_file: dict = {}
    for sa in tracker.ike_tracker.sas:
        by: dict = {}
        for m in sa.messages:
            if m.duplicate_of is None:
                by.setdefault(m.digest, []).append(m)
        for ms in by.values():
            files: dict = {}
            for m in ms:
                files.setdefault(m.ref[0], []).append(m)
            for f in files:
                per_file[f] = per_file.get(f, 0) + 1
            for fa in files:
                for fb in files:
                    if fa < fb and len(files[fa]) == 1 and len(files[fb]) == 1:
                        pairs.setdefault((fa, fb), []).append(files[fb][0].ts - files[fa][0].ts)
    best = _steady(pairs, per_file, names, "ike")
    if best is None and esp_sampler is not None:
        # no IKE in common (an ESP-only capture, or IKE before the capture began)
        best = _steady(esp_sampler.pairs(), esp_sampler.counts(), names, "esp")
    return best


# -- the --vantage hint for the interfaces of one file ------------------------------------------

#: IKE messages read back per file to tell their interfaces
HINT_FETCH = 256


def same_interfaces_hint(tracker, sources) -> dict | None:
    """One file whose interfaces (pcapng IDBs, or the interface indexes of a Linux ``-i any``
    capture) hold the same IKE messages at a steady delay: two capture points in one file, for
    ``--vantage NAME=FILE#IFACE``.  ``{files: [FILE#IFACE, FILE#IFACE], offset_s, matched,
    what: "interfaces"}`` or None.  A tunnel interface is an inside view of its tunnel, never a
    second point: it is left out."""
    from dissect.vpn.link import TUNNEL_HATYPES, cooked_header

    from pcapvpn.track.inner import _tunnel_name

    several = set()
    for src in sources:
        ifaces = [i for i, n in (getattr(src, "interface_frames", None) or {}).items() if n]
        cooked = {k[:2] for k, n in (getattr(src, "cooked", None) or {}).items() if n}
        if len(ifaces) > 1 or len(cooked) > 1:
            several.add(src.index)
    if not several:
        return None  # no file with two interfaces: nothing to look for
    groups: dict = {}
    for sa in tracker.ike_tracker.sas:
        by: dict = {}
        for m in sa.messages:
            by.setdefault(m.digest, []).append(m)
        for ms in by.values():
            if len(ms) == 2 and ms[0].ref[0] == ms[1].ref[0] and ms[0].ref[0] in several:
                lst = groups.setdefault(ms[0].ref[0], [])
                if len(lst) < HINT_FETCH // 2:
                    lst.append(ms)
    best = None
    for fidx, gs in groups.items():
        src = next((s for s in sources if s.index == fidx), None)
        if src is None or len(gs) < 2:
            continue
        ifs = src.interfaces
        nums = {(m.frames or (m.ref,))[0][1] for ms in gs for m in ms}
        where: dict = {}
        try:
            frames = list(src.fetch(nums, interfaces=True))
        except Exception:  # noqa: BLE001 - a hint only: a file that cannot be read again
            continue
        for fr in frames:
            iface = fr[7]
            ck = cooked_header(fr[3], fr[4])
            itf = ifs[iface] if 0 <= iface < len(ifs) else None
            name = getattr(itf, "name", None)
            desc = getattr(itf, "description", None)
            if (ck is not None and ck[1] in TUNNEL_HATYPES) or _tunnel_name(name, desc):
                continue  # an inside view of a tunnel
            if ck is not None and ck[0] >= 0:
                where[fr[1]] = (iface, ck[0], f"ifindex={ck[0]}")
            else:
                where[fr[1]] = (iface, None, name or desc or str(iface))
        pairs: dict = {}
        for ms in gs:
            a, b = sorted(ms, key=lambda m: m.ts)
            wa = where.get((a.frames or (a.ref,))[0][1])
            wb = where.get((b.frames or (b.ref,))[0][1])
            if wa is None or wb is None or wa[:2] == wb[:2]:
                continue
            if wa[:2] <= wb[:2]:
                pairs.setdefault((wa, wb), []).append(b.ts - a.ts)
            else:
                pairs.setdefault((wb, wa), []).append(a.ts - b.ts)
        for (wa, wb), ds in pairs.items():
            # the later copy can be either way round (both directions cross the box)
            ds = [abs(d) for d in ds]
            if len(ds) < 2 or max(ds) - min(ds) > 0.05:
                continue
            cand = {"files": [f"{src.name}#{wa[2]}", f"{src.name}#{wb[2]}"],
                    "offset_s": round(statistics.median(ds), 6), "matched": len(ds),
                    "what": "interfaces"}
            if best is None or cand["matched"] > best["matched"]:
                best = cand
    return best
