"""ESP and AH security associations, with the receiver's view of their sequence numbers.

An SA is identified by its destination and SPI (RFC 4301 §4.1; RFC 4303 §2.1): the source
address and UDP port are attributes, because NAT rebinding (RFC 3948) or MOBIKE (RFC 4555) moves
an SA without creating a new one.  Such moves are recorded (bounded) as evidence.

Per packet (the hot path, millions of calls) the tracker does one dict lookup and a handful of
integer operations; nothing per packet is kept.  Memory grows with the number of SAs only.  The
hot handlers are closures built once per tracker (``self.esp``/``self.ah``): no attribute lookups
on the tracker per packet, and an SA whose sequence is in order and without an open hole only
compares the number with ``sa.nxt``.

Sequence analysis: a real anti-replay window (RFC 4303 §3.4.3) of ``replay_window`` bits held in
a Python int.  ``max_seq`` is the highest (extended) sequence number seen; bit *i* of the window
says whether ``max_seq - i`` arrived.  Numbers before the SA's first packet count as seen (the
capture cannot know them).  Outcomes:

* in order (``max_seq + 1``, no hole pending): nothing but ``max_seq += 1``;
* a jump forward: the skipped numbers become holes; a hole that leaves the window unfilled is
  lost (a receiver with that window would drop the late packet anyway);
* a late arrival inside the window fills its hole (``reordered``; depth = ``max_seq - seq``);
  outside the window it is ``too_old`` (the hole stays lost: the receiver drops it);
* the same number again inside the window: ``capture_duplicates`` when it follows the previous
  packet of the SA within ``duplicate_window`` and is that packet's number or one of the last
  ``COPY_DEPTH`` (the mirror copied it, a burst's copies interleaved), else ``duplicates``
  (a replay, RFC 4303 §3.4.3);
* a restart at a low number far below the window: ``resets`` (a peer restarted and reused the
  SPI, or a new SA collides on it);
* low 32 bits wrapping from near 2**32 to a small number: ESN (RFC 4303 §2.2.1; only the low half
  is on the wire), counted in ``wraps``; without ESN a sender must rekey before that, so
  ``near_wrap`` (max > 2**32 - 2**24) is reported.

At the end the holes still in the window count as lost too (:attr:`EspSA.lost`).
"""

from __future__ import annotations

from dissect.vpn.ip import is_multicast
from pcapvpn.track.esp_sa import (ESN_LOW, MAX_BINS, MAX_EVENTS, MAX_GAPS, MAX_LAST_GAPS,
                                  MAX_MOVES, NEAR_WRAP, REPLAY_WINDOW_DEFAULT, REPLAY_WINDOW_MIN,
                                  RESET_WINDOWS, SAMPLE_REFS, U32, EspSA)

#: a number this close below the highest, seen again within ``duplicate_window`` of the SA's
#: previous packet, is a capture copy (a burst's copies interleaved by the mirror), not a replay
COPY_DEPTH = 4


#: a batch with more than one SA per this many packets is applied packet by packet (esp_batch)
SPARSE = 8


#: fewer packets than this (a chunk, or one SA's share of it) go through the per-packet path
BATCH_MIN = 16


def _numpy():
    from dissect.vpn.batch import np

    return np


def _src_at(src, i, ipver):
    """The packed source address of packet ``i`` of a batch's ``src`` column."""
    if ipver == 4:
        return int(src[i]).to_bytes(4, "big")
    return src[i].tobytes()


def _apply_run(sa, last_seq, count, nbytes, hi, lo, nbig, first_big_ts, last_big_ts, last_ts,
               last_ref):
    """``count`` packets in order from ``sa.nxt`` to ``last_seq``, from the SA's current source
    (their time bins already rolled): what the per-packet handler's in-order path does, at once.
    ``hi``/``lo``: their largest and smallest length; ``nbig``: how many are large, the first and
    last of those at ``first_big_ts``/``last_big_ts``."""
    sa.nxt = last_seq + 1
    sa.packets += count
    sa.bytes += nbytes
    if hi > sa.max_len:
        sa.max_len = hi
    if lo < sa.min_len:
        sa.min_len = lo
    if nbig:
        if not sa.large:
            sa.first_large_ts = first_big_ts
        sa.large += nbig
        sa.last_large_ts = last_big_ts
    sa.last_ts = last_ts
    sa.last_ref = last_ref


def _roll_run(sa, t, np):
    """Time bins for a run of packets with timestamps ``t`` (before ``sa.packets`` counts them):
    what :meth:`EspTracker._roll` does packet by packet.  A packet counts in the bin of the
    latest timestamp seen so far (an earlier one stays in the open bin), so the bins are a
    histogram of the running maximum; widths double (pairs merged) while the last bin would be
    beyond ``MAX_BINS``."""
    cm = np.maximum.accumulate(t)
    end = sa.bin_end
    k0 = int(np.searchsorted(cm, end, "left"))  # these stay in the open bin
    bins = sa.bins
    bins[sa._bin_i] += sa.packets - sa._bin_p0 + k0
    rest = cm[k0:]
    base = sa.bin_base
    w = sa.bin_width
    ii = np.floor_divide(rest - base, w).astype(np.int64)
    top = int(ii[-1])
    while top >= MAX_BINS:
        bins[:] = [bins[k] + (bins[k + 1] if k + 1 < len(bins) else 0)
                   for k in range(0, len(bins), 2)]
        w *= 2.0
        ii = np.floor_divide(rest - base, w).astype(np.int64)
        top = int(ii[-1])
    lo = int(ii[0])
    if top >= len(bins):
        bins.extend([0] * (top + 1 - len(bins)))
    counts = np.bincount(ii - lo).tolist()
    for k, v in enumerate(counts[:-1]):
        if v:
            bins[lo + k] += v
    sa.bin_width = w
    sa._bin_i = top
    sa.bin_end = base + (top + 1) * w
    # as _roll leaves it: the open bin's packets are counted by packets - _bin_p0
    sa._bin_p0 = sa.packets + len(t) - counts[-1]


class EspTracker:
    """Sink for ESP/AH events: one :class:`EspSA` per (protocol, destination, SPI)."""

    def __init__(self, thresholds, limits=None):
        self.th = thresholds
        #: ``Limits.esp_max_sas``: SAs tracked; packets of further SAs go to an untracked
        #: overflow SA per (protocol, encapsulation) (``overflow``), which only counts them
        self.max_sas = limits.esp_max_sas if limits is not None else None
        self.overflow: dict = {}
        self.window = max(1, int(thresholds.replay_window))
        self.mask = (1 << self.window) - 1
        self.large_packet = int(thresholds.large_packet)
        self.dup_window = float(thresholds.duplicate_window)
        self._sas: list[EspSA] = []
        self._esp: dict = {}  # spi -> first SA with that SPI
        self._esp2: dict = {}  # (dst, spi) -> SA
        self._ah: dict = {}
        self._ah2: dict = {}
        # the hot paths: closures over locals (see the methods of the same names for the contract)
        self.esp = self._handler(self._esp, self._esp2, "esp")
        _ah = self._handler(self._ah, self._ah2, "ah")

        def ah(ref, ts, ipver, src, dst, spi, seq, length):
            _ah(ref, ts, ipver, src, dst, -1, -1, spi, seq, length)

        self.ah = ah

    # -- the contract of the hot paths (replaced per instance by the closures) ----------------

    def esp(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, length, transport=None):
        """One ESP packet.  ``sport``/``dport`` -1: IP protocol 50; else UDP (RFC 3948), or TCP
        (RFC 9329) when ``transport`` is ``"tcp"``.  ``ref`` = (file_idx, frame_number)."""
        raise NotImplementedError  # pragma: no cover (bound per instance in __init__)

    def ah(self, ref, ts, ipver, src, dst, spi, seq, length):
        """One AH packet (RFC 4302): tracked like ESP with ``proto="ah"``."""
        raise NotImplementedError  # pragma: no cover

    def _handler(self, d, d2, proto):
        get = d.get
        lookup = self._lookup
        moved = self._moved
        seqslow = self._seq
        roll = self._roll
        large = self.large_packet
        sample = SAMPLE_REFS

        def handler(ref, ts, ipver, src, dst, sport, dport, spi, seq, length, transport=None):
            sa = get(spi)
            if sa is None or sa.dst != dst:
                sa = lookup(d, d2, proto, ipver, src, dst, sport, dport, spi, seq, length, ts,
                            ref, transport)
            if sport != sa._csport or src != sa._csrc:
                moved(sa, ts, ref, src, sport)
            if seq == sa.nxt:
                sa.nxt = seq + 1
            else:
                seqslow(sa, ts, ref, seq)
            if ts >= sa.bin_end:
                roll(sa, ts)
            n = sa.packets + 1
            sa.packets = n
            sa.bytes += length
            sa.last_ts = ts
            sa.last_ref = ref
            if length > sa.max_len:
                sa.max_len = length
            elif length < sa.min_len:
                sa.min_len = length
            if length >= large:  # inline: bulk traffic is mostly large packets
                k = sa.large
                if not k:
                    sa.first_large_ts = ts
                sa.large = k + 1
                sa.last_large_ts = ts
            if n <= sample:
                sa.first_refs.append(ref)

        return handler

    def esp_batch(self, tag, batch):
        """ESP packets of file ``tag`` a chunk at a time (:class:`dissect.vpn.batch.EspBatch`, as
        the reader's batched walk hands them over): the same result as one :meth:`esp` call per
        packet in capture order.  Each SA's share of the chunk is taken apart into runs of
        in-order packets from an unchanged source, which are applied at once (counters, sizes,
        time bins, the next expected number), and single packets — an SA's first ones, a gap, a
        late or repeated number, a source change — which go through :meth:`esp` itself."""
        n = len(batch)
        if n < BATCH_MIN:
            for ev in batch.events(tag):
                self.esp(*ev)
            return
        np = _numpy()
        spi_a = batch.spi
        if batch.ipver == 4:
            key = (batch.dst.astype(np.uint64) << np.uint64(32)) | spi_a.astype(np.uint64)
        else:
            # the low half of the address mixed with the SPI; a group is checked to hold one
            # address before it is trusted
            low = batch.dst[:, 8:].copy().view(">u8").ravel().astype(np.uint64)
            key = low ^ (spi_a.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        order = np.argsort(key, kind="stable")
        sk = key[order]
        cuts = (np.flatnonzero(sk[1:] != sk[:-1]) + 1).tolist()
        if len(cuts) * SPARSE > n or (self.max_sas is not None
                                      and len(self._sas) + len(cuts) >= self.max_sas):
            # many SAs with a few packets each (a flood of SPIs): taking each SA's share apart
            # costs more than it saves; near ``esp_max_sas`` the SAs must also be created in
            # capture order (which ones are tracked then does not depend on the batching)
            for ev in batch.events(tag):
                self.esp(*ev)
            return
        starts = [0] + cuts
        ends = cuts + [n]
        if batch.ipver != 4:
            for s, e in zip(starts, ends):
                self._esp_group(tag, batch, order[s:e], np)
            return
        # IPv4: an SA whose whole share of the chunk is one run (the common case) is applied
        # from per-group sums made for all groups at once; the others take _esp_group
        ss = np.array(starts)
        last = np.array(ends) - 1
        seq = batch.seq[order]
        src = batch.src[order]
        sport = batch.sport[order]
        ts = batch.ts[order]
        ln = batch.length[order]
        r = seq - np.arange(n)
        brk = np.zeros(n, dtype=np.int64)
        brk[1:] = (r[1:] != r[:-1]) | (src[1:] != src[:-1]) | (sport[1:] != sport[:-1])
        brk[ss] = 0  # a group's first packet is not a break
        pos = np.arange(n)
        big = ln >= self.large_packet
        whole = (np.add.reduceat(brk, ss) == 0).tolist()
        tmax = np.maximum.reduceat(ts, ss).tolist()
        lsum = np.add.reduceat(ln, ss).tolist()
        lmax = np.maximum.reduceat(ln, ss).tolist()
        lmin = np.minimum.reduceat(ln, ss).tolist()
        nbig = np.add.reduceat(big.astype(np.int64), ss).tolist()
        fbig = ts[np.minimum(np.minimum.reduceat(np.where(big, pos, n), ss), n - 1)].tolist()
        lbig = ts[np.maximum.reduceat(np.where(big, pos, 0), ss)].tolist()
        first_seq = seq[ss].tolist()
        last_seq = seq[last].tolist()
        first_src = src[ss].tolist()
        first_sport = sport[ss].tolist()
        last_ts = ts[last].tolist()
        last_num = batch.num[order[last]].tolist()
        dsts = batch.dst[order[ss]].tolist()
        spis = spi_a[order[ss]].tolist()
        get = self._esp2.get
        for g, (s, e) in enumerate(zip(starts, ends)):
            if whole[g]:
                sa = get((dsts[g].to_bytes(4, "big"), spis[g]))
                if (sa is not None and sa.packets >= SAMPLE_REFS and sa.nxt == first_seq[g]
                        and first_sport[g] == sa._csport
                        and first_src[g].to_bytes(4, "big") == sa._csrc):
                    if tmax[g] >= sa.bin_end:
                        _roll_run(sa, ts[s:e], np)
                    _apply_run(sa, last_seq[g], e - s, lsum[g], lmax[g], lmin[g], nbig[g],
                               fbig[g], lbig[g], last_ts[g], (tag, last_num[g]))
                    continue
            self._esp_group(tag, batch, order[s:e], np)

    def _esp_group(self, tag, b, ix, np):
        """The packets ``ix`` (indices into ``b``, in capture order) of one (dst, SPI)."""
        m = len(ix)
        handler = self.esp
        ipver = b.ipver
        spi = int(b.spi[ix[0]])
        if ipver == 4:
            dst = int(b.dst[ix[0]]).to_bytes(4, "big")
            same_dst = True
        else:
            rows = b.dst[ix]
            dst = rows[0].tobytes()
            same_dst = bool((rows == rows[0]).all())
        if m < BATCH_MIN or not same_dst or is_multicast(dst):
            for ev in b.take(ix).events(tag):
                handler(*ev)
            return
        seq = b.seq[ix]
        src = b.src[ix]
        sport = b.sport[ix]
        ts = b.ts[ix]
        length = b.length[ix]
        if ipver == 4:
            moved = src[1:] != src[:-1]
        else:
            moved = (src[1:] != src[:-1]).any(axis=1)
        moved |= sport[1:] != sport[:-1]
        r = seq - np.arange(m)
        brk = (np.flatnonzero((r[1:] != r[:-1]) | moved) + 1).tolist()
        brk.append(m)
        num = b.num[ix]
        lists = None  # per-packet values, made when a packet needs the per-packet path
        sa = self._esp2.get((dst, spi))
        i = 0
        k = 0  # brk[k]: the first break after i
        large = self.large_packet
        while i < m:
            while brk[k] <= i:
                k += 1
            if (sa is None or sa.packets < SAMPLE_REFS or sa.nxt != int(seq[i])
                    or int(sport[i]) != sa._csport or _src_at(src, i, ipver) != sa._csrc):
                if lists is None:
                    lists = (num.tolist(), ts.tolist(), sport.tolist(), b.dport[ix].tolist(),
                             seq.tolist(), length.tolist())
                handler((tag, lists[0][i]), lists[1][i], ipver, _src_at(src, i, ipver), dst,
                        lists[2][i], lists[3][i], spi, lists[4][i], lists[5][i])
                if sa is None:
                    sa = self._esp2.get((dst, spi))
                i += 1
                continue
            j = brk[k]  # packets i .. j-1: in order from the number expected, same source
            t = ts[i:j]
            last = float(t[-1])
            if last >= sa.bin_end or float(t.max()) >= sa.bin_end:
                _roll_run(sa, t, np)
            ln = length[i:j]
            hi = int(ln.max())
            nbig = fbig = lbig = 0
            if hi >= large:
                big = ln >= large
                nbig = int(np.count_nonzero(big))
                fbig = float(t[int(big.argmax())])
                lbig = float(t[len(big) - 1 - int(big[::-1].argmax())])
            _apply_run(sa, int(seq[j - 1]), j - i, int(ln.sum()), hi, int(ln.min()), nbig, fbig,
                       lbig, last, (tag, int(num[j - 1])))
            i = j

    def fragmented(self, ipver, src, dst, spi, frames, proto="esp"):
        """An ESP (AH) packet of this SA arrived in IP fragments (``frames``: the fragments'
        refs).  Call it after :meth:`esp` for the reassembled packet."""
        d, d2 = (self._esp, self._esp2) if proto == "esp" else (self._ah, self._ah2)
        sa = d.get(spi)
        if sa is None or sa.dst != dst:
            sa = d2.get((dst, spi, src) if is_multicast(dst) else (dst, spi))
        if sa is None:
            return
        sa.fragmented += 1
        room = MAX_EVENTS * 4 - len(sa.frag_refs)
        if room > 0:
            sa.frag_refs.extend(tuple(frames)[:room])

    def all_sas(self) -> list[EspSA]:
        """Every SA (ESP and AH), ordered by first packet."""
        return sorted(self._sas, key=lambda s: (s.first_ts, s.first_ref))

    def remove(self, sas) -> int:
        """Forget the SAs ``sas`` (live mode's expiry and eviction: ``pcapvpn.live``).  A later
        packet on a removed SA starts a new one.  Returns the number removed."""
        gone = {id(sa) for sa in sas}
        if not gone:
            return 0
        before = len(self._sas)
        self._sas = [sa for sa in self._sas if id(sa) not in gone]
        for d, d2 in ((self._esp, self._esp2), (self._ah, self._ah2)):
            for key in [k for k, sa in d2.items() if id(sa) in gone]:
                del d2[key]
            stale = [spi for spi, sa in d.items() if id(sa) in gone]
            if stale:
                # the fast path's SPI index names the first SA of an SPI: hand it to a remaining
                # unicast SA with that SPI, if any
                heirs = {}
                for key, sa in d2.items():
                    if len(key) == 2:
                        heirs.setdefault(key[1], sa)
                for spi in stale:
                    if spi in heirs:
                        d[spi] = heirs[spi]
                    else:
                        del d[spi]
        return before - len(self._sas)

    # -- slow paths ----------------------------------------------------------------------------

    def _lookup(self, d, d2, proto, ipver, src, dst, sport, dport, spi, seq, length, ts, ref,
                transport):
        mcast = is_multicast(dst)
        # a multicast SA is identified by SPI, destination and source (RFC 4301 §4.1): several
        # senders share the group address and the SPI (e.g. OSPFv3 with AH, RFC 4552)
        key = (dst, spi, src) if mcast else (dst, spi)
        sa = d2.get(key)
        if sa is not None:
            return sa
        encap = "ip" if sport < 0 else ("tcp" if transport == "tcp" else "udp")
        if self.max_sas is not None and len(self._sas) >= self.max_sas:
            sa = self.overflow.get((proto, encap))
            if sa is None:
                sa = self.overflow[(proto, encap)] = EspSA(proto, ipver, src, dst, spi, sport,
                                                           dport, encap, ts, ref, seq, length,
                                                           self.window)
            return sa
        sa = EspSA(proto, ipver, src, dst, spi, sport, dport, encap, ts, ref, seq, length,
                   self.window)
        d2[key] = sa
        if spi not in d and not mcast:
            d[spi] = sa
        self._sas.append(sa)
        return sa

    @staticmethod
    def _moved(sa, ts, ref, src, sport):
        sa._csrc = src
        sa._csport = sport
        sa.moves_total += 1
        if len(sa.moves) < MAX_MOVES:
            sa.moves.append((ts, ref, src, sport))

    @staticmethod
    def _roll(sa, ts):
        """Close the open time bin and open the one holding ``ts`` (called before the packet is
        counted; bins double in width, merging pairs, when there would be more than MAX_BINS)."""
        bins = sa.bins
        bins[sa._bin_i] += sa.packets - sa._bin_p0
        sa._bin_p0 = sa.packets
        base = sa.bin_base
        w = sa.bin_width
        i = int((ts - base) // w)
        while i >= MAX_BINS:
            merged = [bins[k] + (bins[k + 1] if k + 1 < len(bins) else 0)
                      for k in range(0, len(bins), 2)]
            bins[:] = merged
            w *= 2.0
            i = int((ts - base) // w)
        sa.bin_width = w
        if i >= len(bins):
            bins.extend([0] * (i + 1 - len(bins)))
        sa._bin_i = i
        sa.bin_end = base + (i + 1) * w

    def _seq(self, sa, ts, ref, seq):
        """Everything but the in-order arrival: jumps, late arrivals, duplicates, resets, ESN.
        Works on extended numbers (``base`` = the ESN high half seen so far)."""
        base = sa.base
        top = sa.nxt - 1 + base if sa.nxt >= 0 else sa._top
        s = seq + base
        W = self.window
        if s > top and base and s - top > U32 // 2:
            # after an ESN wrap, the low half of a number from before it: the previous epoch
            # (RFC 4303 Appendix A2.2) — a late or repeated packet, not a jump of ~2**32
            s -= U32
        if s > top:
            self._jump(sa, ts, ref, top, s)
        else:
            depth = top - s
            if (top - base) > NEAR_WRAP and seq < ESN_LOW and depth > U32 // 2:
                # ESN: the low half restarted after running close to 2**32
                sa.base = base = base + U32
                sa.wraps += 1
                if len(sa.reset_events) < MAX_EVENTS:
                    sa.reset_events.append((ts, ref, top, s + U32))
                self._jump(sa, ts, ref, top, s + U32)
            elif depth >= RESET_WINDOWS * W and seq <= W:
                # restart: the holes of the old run stay lost; the new run starts here
                sa.resets += 1
                if len(sa.reset_events) < MAX_EVENTS:
                    sa.reset_events.append((ts, ref, top, s))
                sa._lost += sa.missing
                sa.missing = 0
                sa.win = self.mask
                sa._top = s
                sa._floor = s
                if seq < sa.min_seq:
                    sa.min_seq = seq
                sa._last_slow = s
            elif depth < W:
                bit = 1 << depth
                if sa.win & bit:
                    if s < sa._floor:
                        # before the first packet seen (assumed seen): late, not a replay
                        self._late(sa, seq, depth)
                    elif ts - sa.last_ts <= self.dup_window and (s == sa._last_slow
                                                                 or depth < COPY_DEPTH):
                        # a mirror that copies both ways of a port interleaves the copies of a
                        # burst (p1 p2 p1' p2'): a number of the last few, again within the
                        # window, is a copy too
                        sa.capture_duplicates += 1
                    else:
                        sa.duplicates += 1
                else:
                    sa.win |= bit
                    sa.missing -= 1
                    self._late(sa, seq, depth)
                    self._filled(sa, seq)
                sa._last_slow = s
                sa._top = top
            else:
                sa.too_old += 1
                self._late(sa, seq, depth)
                sa._last_slow = s
                sa._top = top
        # back to the fast path when nothing is pending
        if sa.missing:
            sa.nxt = -1
        else:
            sa.nxt = sa._top + 1 - sa.base

    @staticmethod
    def _late(sa, seq, depth):
        sa.reordered += 1
        if depth > sa.max_reorder:
            sa.max_reorder = depth
        if depth >= REPLAY_WINDOW_MIN:
            sa.beyond32 += 1
            if depth >= REPLAY_WINDOW_DEFAULT:
                sa.beyond64 += 1
        if seq < sa.min_seq:
            sa.min_seq = seq

    def _jump(self, sa, ts, ref, top, s):
        """``s`` is above the highest number so far: holes top+1 .. s-1 open."""
        W = self.window
        d = s - top
        holes = d - 1
        if d >= W:
            # the whole old window leaves: its holes are lost, and so are the new holes that
            # do not fit in the window
            sa._lost += sa.missing + (holes - (W - 1))
            sa.win = 1
            sa.missing = W - 1
        else:
            shifted = (sa.win << d) | 1
            # the d bits that left the window: zeros among them were holes never filled
            sa._lost += d - (shifted >> W).bit_count()
            sa.win = shifted & self.mask
            sa.missing = W - sa.win.bit_count()
        sa._top = s
        sa._last_slow = s
        if holes:
            if holes > sa.max_gap:
                sa.max_gap = holes
            g = [ts, ref, (top + 1) & 0xFFFFFFFF, s & 0xFFFFFFFF, holes]
            if len(sa.gaps) < MAX_GAPS:
                sa.gaps.append(g)
            lg = sa.last_gaps
            lg.append(g)
            if len(lg) > MAX_LAST_GAPS:
                del lg[0]

    @staticmethod
    def _filled(sa, seq):
        """A late arrival filled a hole: the gap evidence that holds it has one less missing."""
        for lst in (sa.gaps, sa.last_gaps):
            for g in lst:
                if g[2] <= seq < g[3]:
                    g[4] -= 1
                    if g[4] <= 0 and lst is sa.gaps:
                        lst.remove(g)
                    return


# -- slices of one capture (pcapvpn.parallel): an SA tracked from a fresh state over a slice, merged
# into the state the packets before the slice left -----------------------------------------------


class SliceEspTracker(EspTracker):
    """The ESP tracker of one slice of a capture (a worker of :mod:`pcapvpn.parallel`): an
    ordinary tracker that also counts the gaps each SA opened (:meth:`EspTracker.merge_slice`
    needs the count: filled gaps leave the bounded gap list and let later ones in)."""

    def __init__(self, thresholds, limits=None):
        super().__init__(thresholds, limits)
        self._opened: dict = {}

    def _jump(self, sa, ts, ref, top, s):
        if s - top > 1:
            self._opened[id(sa)] = self._opened.get(id(sa), 0) + 1
        super()._jump(sa, ts, ref, top, s)

    def summary(self):
        """``(sas, opened)``: the SAs in creation order and the gaps each opened; None when a
        bound (``esp_max_sas``) was reached in the slice (then it cannot be merged)."""
        if self.overflow:
            return None
        return self._sas, [self._opened.get(id(sa), 0) for sa in self._sas]


def _key(sa):
    return (sa.dst, sa.spi, sa.src) if is_multicast(sa.dst) else (sa.dst, sa.spi)


def _renumber(sa, before):
    """The refs of an SA tracked over a slice whose records were numbered from 1: made the
    capture's (``before`` records came before the slice)."""
    map_refs(sa, lambda r: (r[0], r[1] + before))


def map_refs(sa, ref) -> None:
    """Replace every frame ref ``(file, number)`` ``sa`` holds by ``ref(old)`` (a slice's
    numbers made the capture's; ``live --workers``: a worker's file indices made the
    session's)."""
    sa.first_ref = ref(sa.first_ref)
    sa.last_ref = ref(sa.last_ref)
    sa.first_refs = [ref(r) for r in sa.first_refs]
    seen = set()
    for g in sa.gaps + sa.last_gaps:  # the same lists may sit in both
        if id(g) not in seen:
            seen.add(id(g))
            g[1] = ref(g[1])
    sa.reset_events = [(t, ref(r), a, b) for t, r, a, b in sa.reset_events]
    sa.moves = [(t, ref(r), s, p) for t, r, s, p in sa.moves]
    sa.frag_refs = [ref(r) for r in sa.frag_refs]


def _whole_seconds(x) -> bool:
    return x >= 0 and x == int(x)


def _mergeable(s, f, opened) -> bool:
    """Whether the slice's SA ``f`` (tracked from a fresh state) continues ``s`` exactly: see
    docs/internals.md, "Parallel analysis"."""
    return (s.nxt >= 0 and s.nxt == f.first_seq and f.min_seq == f.first_seq
            and s.base == 0 and f.base == 0 and not f.wraps and s.decrypt is None
            and s.proto == f.proto and not f.fragmented
            and f.bin_width == 1.0 and _whole_seconds(f.bin_base)
            and _whole_seconds(s.bin_base) and _whole_seconds(s.bin_end)
            and (len(s.gaps) >= MAX_GAPS or len(s.gaps) + opened <= MAX_GAPS))


def _merge_bins(s, f, packets) -> None:
    """``s``'s time bins with ``f``'s (width 1 s: the running maximum of the slice's times per
    second) added as one packet at a time would (``packets``: ``s.packets`` after the merge)."""
    counts = s.bin_counts()
    base, w, end = s.bin_base, s.bin_width, s.bin_end
    top = s._bin_i
    later = []
    for i, c in enumerate(f.bin_counts()):
        if not c:
            continue
        t = f.bin_base + i
        if t < end:
            counts[top] += c  # inside the open bin: its running maximum is s's
        else:
            later.append((t, c))
    if later:
        top = int((later[-1][0] - base) // w)
        while top >= MAX_BINS:
            counts = [counts[k] + (counts[k + 1] if k + 1 < len(counts) else 0)
                      for k in range(0, len(counts), 2)]
            w *= 2.0
            top = int((later[-1][0] - base) // w)
        if top >= len(counts):
            counts.extend([0] * (top + 1 - len(counts)))
        for t, c in later:
            counts[int((t - base) // w)] += c
    s.bins = counts
    s.bin_width = w
    s._bin_i = top
    s.bin_end = base + (top + 1) * w
    s._bin_p0 = packets


def _merge_sa(s, f, opened) -> None:
    """Merge the slice's SA ``f`` into ``s`` (:func:`_mergeable` holds)."""
    if f.src != s._csrc or f.sport != s._csport:
        # the slice's first packet came from elsewhere: the move the packet-by-packet path records
        s.moves_total += 1
        if len(s.moves) < MAX_MOVES:
            s.moves.append((f.first_ts, f.first_ref, f.src, f.sport))
    s.moves.extend(f.moves[:MAX_MOVES - len(s.moves)])
    s.moves_total += f.moves_total
    s._csrc, s._csport = f._csrc, f._csport
    packets = s.packets + f.packets
    _merge_bins(s, f, packets)
    if s.packets < SAMPLE_REFS:
        s.first_refs.extend(f.first_refs[:SAMPLE_REFS - len(s.first_refs)])
    if f.large:
        if not s.large:
            s.first_large_ts = f.first_large_ts
        s.last_large_ts = f.last_large_ts
    s.large += f.large
    s.packets = packets
    s.bytes += f.bytes
    s.min_len = min(s.min_len, f.min_len)
    s.max_len = max(s.max_len, f.max_len)
    s.last_ts, s.last_ref = f.last_ts, f.last_ref
    # the sequence window: the slice's (at the cut both were all-ones with the same top)
    s.nxt, s._top, s.win, s.missing = f.nxt, f._top, f.win, f.missing
    s._lost += f._lost
    if f.resets:
        s._floor = f._floor
    if f._last_slow >= 0:
        s._last_slow = f._last_slow
    for k in ("duplicates", "capture_duplicates", "reordered", "beyond32", "beyond64", "too_old",
              "resets"):
        setattr(s, k, getattr(s, k) + getattr(f, k))
    s.max_reorder = max(s.max_reorder, f.max_reorder)
    s.max_gap = max(s.max_gap, f.max_gap)
    if len(s.gaps) < MAX_GAPS:
        s.gaps.extend(f.gaps)  # all the slice opened fit (_mergeable)
    lg = s.last_gaps + f.last_gaps
    s.last_gaps = lg[-MAX_LAST_GAPS:]
    s.reset_events.extend(f.reset_events[:MAX_EVENTS - len(s.reset_events)])


def merge_slice(tracker: EspTracker, sas, opened, before) -> list:
    """Merge the SAs of a slice (:meth:`SliceEspTracker.summary`; their records numbered from 1,
    ``before`` records before the slice) into ``tracker``: an SA new to it is taken as it is, one
    it holds is continued when that is exact (:func:`_mergeable`).  Returns the keys of the SAs
    that could not be merged: their packets of the slice must go through the tracker one by
    one.  The caller checks there is room for every SA of the slice (``esp_max_sas``)."""
    todo = []
    for f, n in zip(sas, opened):
        d, d2 = (tracker._esp, tracker._esp2) if f.proto == "esp" else (tracker._ah, tracker._ah2)
        key = _key(f)
        s = d2.get(key)
        if s is None:
            _renumber(f, before)
            d2[key] = f
            if f.spi not in d and not is_multicast(f.dst):
                d[f.spi] = f
            tracker._sas.append(f)
        elif _mergeable(s, f, n):
            _renumber(f, before)
            _merge_sa(s, f, n)
        else:
            todo.append(key)
    return todo
