"""The indexed look-ups give exactly what the scans they replaced gave (issue 20).

Random small captures (several gateways; ESP SAs of both directions starting and stopping at
random, some moving source, some on UDP 4500; keepalives; IKE_SA_INITs answered, refused with
COOKIE / INVALID_KE / NO_PROPOSAL_CHOSEN or not at all; mid-session INFORMATIONALs and
CREATE_CHILD_SAs) are analysed twice: with the code as it is, and with the straightforward
scans (kept here as the reference, as they were before the indexes) patched in.  Every finding
must be the same, field by field."""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "bench"))

import hostile as H  # noqa: E402

from dissect.vpn.registry import ExchangeType  # noqa: E402
from pcapvpn.analysis import run  # noqa: E402
from pcapvpn.findings import REGISTRY  # noqa: E402, F401
from pcapvpn.rules.dataplane import common as dp  # noqa: E402
from pcapvpn.rules.dataplane import fragments, mid_session, mtu, no_traffic, one_way  # noqa: E402
from pcapvpn.rules.dataplane import sequence  # noqa: E402
from pcapvpn.rules.dataplane.one_way import _answers  # noqa: E402
from pcapvpn.track import ike as ike_mod  # noqa: E402
from pcapvpn.track import tunnels as tun  # noqa: E402

#: the modules of rules/dataplane (a helper is patched wherever it was imported)
DATAPLANE_ROOMS = (dp, one_way, sequence, no_traffic, mtu, fragments, mid_session)

ADDRS = [bytes((192, 0, 2, 1)), bytes((198, 51, 100, 1)), bytes((203, 0, 113, 5)),
         bytes((192, 0, 2, 9))]


def random_capture(path: Path, seed: int) -> Path:
    rng = random.Random(seed)
    ev = []
    addrs = ADDRS[:rng.randint(2, 4)]
    span = rng.choice([5, 20, 60, 200])
    for k in range(rng.randint(0, 25)):
        a, b = rng.sample(addrs, 2)
        spi = rng.choice([0x1000 + k, 0x2000 + rng.randint(0, 5)])
        start, n = rng.uniform(0, span), rng.randint(1, 40)
        step = rng.choice([0.01, 0.3, 1, 3])
        udp = rng.random() < 0.3
        seq0 = rng.choice([1, 1, 1, 5000])
        moved = rng.random() < 0.1
        for i in range(n):
            src = a
            if moved and i > n // 2:
                src = rng.choice(addrs)
            if src == b:
                src = a
            body = struct.pack(">II", spi, seq0 + i) + bytes(rng.choice([40, 1300]))
            ev.append((start + i * step, H.udp(src, b, 4500, 4500, body) if udp
                       else H.ip4(src, b, 50, body)))
    for _k in range(rng.randint(0, 3)):
        a, b = rng.sample(addrs, 2)
        ev.append((rng.uniform(0, span), H.udp(a, b, 4500, 4500, b"\xff")))
    for _k in range(rng.randint(0, 12)):
        a, b = rng.sample(addrs[:3], 2)
        ispi = struct.pack(">II", 0xA0, rng.randint(0, 30))
        rspi = struct.pack(">II", 0xB0, rng.randint(1, 30))
        t = rng.uniform(0, span)
        kind = rng.random()
        if kind < 0.35:
            ev.append((t, H.udp(a, b, 500, 500, H.sa_init(ispi, bytes(8), False))))
            r = rng.random()
            if r < 0.3:
                ev.append((t + 0.01, H.udp(b, a, 500, 500, H.notify_only(
                    ispi, bytes(8), 34, rng.choice([16390, 17, 14]), 0x20))))
            elif r < 0.7:
                ev.append((t + 0.01, H.udp(b, a, 500, 500, H.sa_init(ispi, rspi, True))))
                ev.append((t + 0.05, H.udp(a, b, 4500, 4500, bytes(4) + H.encrypted(
                    ispi, rspi, 35, 0x08, 1, 35))))
                if rng.random() < 0.8:
                    ev.append((t + 0.08, H.udp(b, a, 4500, 4500, bytes(4) + H.encrypted(
                        ispi, rspi, 35, 0x20, 1, 36))))
        elif kind < 0.7:
            for j in range(rng.randint(1, 3)):
                ev.append((t + j, H.udp(a, b, 4500, 4500, bytes(4) + H.encrypted(
                    ispi, rspi, 37, 0x08, 2 + j))))
                if rng.random() < 0.7:
                    ev.append((t + j + 0.01, H.udp(b, a, 4500, 4500, bytes(4) + H.encrypted(
                        ispi, rspi, 37, 0x20, 2 + j))))
        else:
            ev.append((t, H.udp(a, b, 4500, 4500, bytes(4) + H.encrypted(
                ispi, rspi, 36, 0x08, 7, 33))))
            if rng.random() < 0.8:
                ev.append((t + 0.01, H.udp(b, a, 4500, 4500, bytes(4) + H.encrypted(
                    ispi, rspi, 36, 0x20, 7, 33))))
    ev.sort(key=lambda e: e[0])
    w = H.Wire(path)
    for t, frame in ev:
        w.frame(H.START_US + int(t * 1e6), frame)
    w.close()
    return path


# -- the scans, as they were ---------------------------------------------------------------------


def ref_pair_by_start(out, back, window):
    used = set()
    pairs = []
    for o in out:
        best = None
        for i, r in enumerate(back):
            if i in used:
                continue
            d = abs(r.first_ts - o.first_ts)
            if d <= window and (best is None or d < best[0]):
                best = (d, i)
        if best is not None:
            used.add(best[1])
            pairs.append((o, back[best[1]]))
        else:
            pairs.append((o, None))
    pairs += [(None, r) for i, r in enumerate(back) if i not in used]
    return pairs


def ref_heard(ctx, t, peer):
    last = None
    ike_t = 0
    for sa in t.ike_sas:
        for m in sa.messages:
            if m.src == peer:
                ike_t += 1
                last = m.ts if last is None else max(last, m.ts)
    esp_t = 0
    others = {t.a, t.b} - {peer}
    seen = set()
    for s in t.esp_sas + [x for d in others for x in dp._by_dst(ctx).get(d, ())]:
        if id(s) in seen:
            continue
        seen.add(id(s))
        if s.src == peer or (s.dst in others and peer in dp._srcs(s)):
            esp_t += s.packets
            last = s.last_ts if last is None else max(last, s.last_ts)
    ka = 0
    for f in ctx.state.keepalives:
        if getattr(f, "src", None) == peer and getattr(f, "count", 0):
            ka += f.count
            if getattr(f, "dst", None) in (t.a, t.b) and f.last_ts is not None:
                last = f.last_ts if last is None else max(last, f.last_ts)
    ike_all = sum(1 for sa in ctx.state.ike_sas for m in sa.messages if m.src == peer)
    esp_all = sum(s.packets for s in ctx.state.esp_sas if s.src == peer)
    return ({"ike": ike_t, "esp": esp_t, "keepalives": ka,
             "ike_elsewhere": ike_all - ike_t, "esp_elsewhere": esp_all - esp_t}, last)


def ref_takeover(ctx, t, silent, after_ts, window, drain, flow=None):
    dsts = {silent.dst} | (dp._srcs(flow) if flow is not None else set())
    for d in dsts:
        for s in dp._by_dst(ctx).get(d, ()):
            if s is silent or s.src != silent.src or s.proto != silent.proto:
                continue
            if s.last_ts > after_ts and after_ts - drain <= s.first_ts <= after_ts + window:
                return True
    return False


def ref_replaced(ctx, t, flow, window, drain):
    partners = dp._partner_map(t.pairs)
    if flow.last_ts - flow.first_ts > drain:
        return False
    for s in t.esp_sas:
        if s is flow or s.src != flow.src or s.dst != flow.dst or s.proto != flow.proto:
            continue
        if partners.get(id(s)) is None:
            continue
        if s.first_ts <= flow.last_ts + window and s.last_ts >= flow.last_ts + window:
            return True
    return False


def ref_reverse_covers(ctx, t, flow, partners, window):
    for d in dp._srcs(flow):
        for s in dp._by_dst(ctx).get(d, ()):
            if s.proto == flow.proto and flow.dst in dp._srcs(s) and \
                    _answers(s, flow, partners, window):
                return True
    return False


def ref_link_retry(self, sa, m):
    for old in reversed(self.sas):
        if old is sa or old.version != 2 or old.retried_by is not None:
            continue
        if old.initiator[1] != m.src or old.responder[1] != m.dst:
            continue
        if m.ts - (old.last_ts or m.ts) > 60:
            break
        for x in old.exchanges:
            if x.exch == ExchangeType.IKE_SA_INIT and any(
                    r.has_notify(16390) or r.has_notify(17) for r in x.responses):
                old.retried_by = sa.id
                sa.retry_of = old.id
                return


def ref_link_rekeys(self):
    for new in self.sas:
        if new.version != 2 or not new.messages or new.rekey_of is not None:
            continue
        if new.messages[0].exch == ExchangeType.IKE_SA_INIT:
            continue
        t0 = new.first_ts
        peers = {new.initiator[1], new.responder[1]}
        best = None
        for old in self.sas:
            if old is new or old.version != 2 or old.rekeyed_by is not None:
                continue
            if {old.initiator[1], old.responder[1]} != peers:
                continue
            if old.last_ts is not None and old.last_ts > t0 + 1.0:
                continue
            for x in old.exchanges:
                if x.exch != ExchangeType.CREATE_CHILD_SA or not x.answered:
                    continue
                resp_ts = x.responses[0].ts
                if resp_ts <= t0 + 0.001 and t0 - resp_ts <= 3600.0:
                    if best is None or resp_ts > best[0]:
                        best = (resp_ts, old)
        if best is not None:
            old = best[1]
            new.rekey_of = old.id
            old.rekeyed_by = new.id
            new.mid_session = False


def _findings(path):
    res = run([str(path)])
    return [(f.id, f.code, f.severity, f.title, f.detail, f.wireshark_filter,
             [(r.file, r.frame) for r in f.evidence.frames], f.evidence.esp_spis, f.tunnel)
            for f in res.findings], res


@pytest.mark.parametrize("seed", range(100))
def test_indexes_equal_the_scans(tmp_path, monkeypatch, seed):
    path = random_capture(tmp_path / f"r{seed}.pcap", seed)
    fast, res = _findings(path)
    assert "CAPTURE_LIMITS" not in {f[1] for f in fast}  # no budget was hit at these sizes
    with monkeypatch.context() as mp:
        mp.setattr(tun, "pair_by_start", ref_pair_by_start)
        for name, ref in (("_heard", ref_heard), ("_takeover", ref_takeover),
                          ("_replaced", ref_replaced), ("_reverse_covers", ref_reverse_covers)):
            # every room of rules/dataplane that calls it (each imported it by name)
            mods = [m for m in DATAPLANE_ROOMS if hasattr(m, name)]
            assert mods, name
            for m in mods:
                mp.setattr(m, name, ref)
        mp.setattr(ike_mod.IkeTracker, "_link_retry", ref_link_retry)
        mp.setattr(ike_mod.IkeTracker, "link_rekeys", ref_link_rekeys)
        slow, _ = _findings(path)
    assert fast == slow
