"""The trackers of one vantage point (issue 16): the usual ones, plus per ESP/AH SA and
bounded the holes of its sequence numbers and a sample of them (see the package docstring)."""

from __future__ import annotations

from pcapvpn.track import Tracker
from pcapvpn.track.esp import EspTracker
from pcapvpn.track.vantage import MAX_HOLES, MAX_SAMPLES
from pcapvpn.track.vantage.ranges import fill_hole, hole_refs, seen_ranges

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
        if h:
            fill_hole(h, seq + sa.base)

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
        return seen_ranges(self.epoch_lo.get(sa, sa.min_seq), sa.max_seq + 1,
                           self.holes.get(sa, ()))

    def hole_refs(self, sa, ranges) -> list:
        """Refs of the packets right after the holes that overlap ``ranges``."""
        return hole_refs(self.holes.get(sa, ()), ranges)


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
        vpn_tcp = self.vpn_tcp
        seq_tcp = self.seq_store.tcp

        def tcp(ref, ts, ipver, src, dst, sport, dport, proto, msg, frames, from_client):
            vpn_tcp(ref, ts, ipver, src, dst, sport, dport, proto, msg, frames, from_client)
            seq_tcp(ref, ts, ipver, src, dst, sport, dport, proto, msg, frames, from_client)

        self.vpn_tcp = tcp
        vpn_gre = self.gre
        seq_gre = self.seq_store.gre

        def gre(ref, ts, ipver, src, dst, call_id, length, seq, ack):
            vpn_gre(ref, ts, ipver, src, dst, call_id, length, seq, ack)
            seq_gre(ref, ts, ipver, src, dst, call_id, length, seq, ack)

        self.gre = gre
        # plaintext: every packet recorded (pcapvpn.track.vantage.plain), so the reader's
        # batched TCP lane is off at a vantage point (plain() gets every segment)
        from pcapvpn.track.vantage.plain import PlainRecorder

        self.plain_rec = PlainRecorder(self.th.duplicate_window)
        self.plain = self.plain_rec.wrap(self.plain, self.plain_tracker.views)
        self.plain_tcp = None

    def expire(self, now: float, idle: float, max_sas: int | None = None):
        """Live mode: as :meth:`Tracker.expire`, and the numbered flows and plaintext packets
        silent for ``idle`` seconds are forgotten too."""
        out = super().expire(now, idle, max_sas)
        self.seq_store.expire(now - idle)
        self.plain_rec.expire(now - idle)
        return out
