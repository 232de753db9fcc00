"""The ``--vantage`` hint (issue 16, SEVERAL_CAPTURE_POINTS): inputs read as one point that are
two points of the same traffic."""

from __future__ import annotations

import statistics

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
