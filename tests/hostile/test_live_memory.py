"""What grows with the frames of a long flood and not with what is held (issue 20, live memory
flat at ``--max-sas``): each such container is bounded by a count that the flood reaches early,
checked by counting entries while the input doubles (never by RSS or time)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "bench"))

import hostile  # noqa: E402

from pcapvpn.analysis import run  # noqa: E402
from pcapvpn.track.nat import (MAX_CANDIDATE_ADDRS, MAX_CANDIDATE_PORTS,  # noqa: E402
                               _candidates)


class _AllEndpoints:
    """An IKE SA's endpoints as they were before the bound: every one met, in order."""

    def __init__(self, sa):
        self.endpoints = {}
        for m in sorted(sa.messages, key=lambda m: m.n):
            self.endpoints.setdefault((m.src, m.sport, m.dst, m.dport, m.transport), m.n)


def _one_sa(tmp_path, n):
    path = hostile.ike_endpoints(tmp_path / f"ep-{n}.pcap", n)
    res = run([str(path)])
    (sa,) = res.state.ike_sas
    return sa


def test_ike_sa_endpoints_stay_bounded_when_the_frames_double(tmp_path):
    # one IKE SA, each message from another source port (every eighth from another address):
    # before, one endpoint per message (2,402 at n=2,400)
    sizes = {}
    for n in (1200, 2400):
        sa = _one_sa(tmp_path, n)
        full = _AllEndpoints(sa)
        assert len(full.endpoints) >= n  # the input does have that many
        sizes[n] = len(sa.endpoints)
        assert len(sa.endpoints) <= MAX_CANDIDATE_ADDRS + MAX_CANDIDATE_PORTS
        # what the NAT verdict reads is what it read when every endpoint was kept
        assert _candidates(sa) == _candidates(full)
        assert _candidates(sa, [b"\xc0\x00\x02\x63"]) == _candidates(full, [b"\xc0\x00\x02\x63"])
    assert sizes[1200] == sizes[2400]


def test_address_text_cache_stays_at_its_bound_when_the_addresses_double():
    # a live flood meets ~5,000 new addresses per million frames: the cache of their text must
    # stop at a size the flood reaches early, not grow for ten million frames
    import struct

    from pcapvpn import model

    model._addr.cache_clear()
    sizes = []
    for n in (2 * model.ADDR_CACHE, 4 * model.ADDR_CACHE):
        for i in range(n):
            assert model.addr(struct.pack(">I", 0x0A000000 + i)) == \
                f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        sizes.append(model._addr.cache_info().currsize)
    assert sizes == [model.ADDR_CACHE, model.ADDR_CACHE]
    assert model.ADDR_CACHE <= 4096  # about 1 MB (230 bytes an entry with its key)
    model._addr.cache_clear()


def _arp_request(target: int) -> bytes:
    import struct

    eth = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x06"
    return eth + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, b"\x02\x00\x00\x00\x00\x01",
                             bytes([192, 168, 0, 1]), bytes(6), struct.pack(">I", target))


def test_arp_targets_per_view_bounded_and_counted_when_the_requests_double():
    # a LAN view of a flood asks for ever new hosts: live keeps at most one target per
    # conversation it follows (Limits.plain_max_flows, --max-sas), the rest counted
    from pcapvpn.limits import Limits
    from pcapvpn.track import Tracker

    lim = Limits().for_live(300)
    assert lim.plain_max_flows == 300
    held, dropped = [], []
    for n in (600, 1200):
        tr = Tracker(limits=lim)
        for i in range(n):
            tr.link_other((0, i + 1), 1000.0 + i, 0, 1, None, _arp_request(0x0A000000 + i))
        (view,) = tr.plain_tracker.views.values()
        held.append(len(view.arp))
        hit = [h for h in tr.limits_hit() if h["bound"] == "plain_arp_targets"]
        dropped.append(hit[0]["dropped"] if hit else 0)
        assert hit and hit[0]["first_ref"] == (0, 301)
    assert held == [300, 300]
    assert dropped == [300, 900]
    # offline the bound stays MAX_ARP
    from pcapvpn.track.inner import MAX_ARP

    assert Tracker().plain_tracker.max_arp == MAX_ARP
