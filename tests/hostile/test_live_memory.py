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


# -- what only the idle expiry emptied (issue 20, session 8, flat2): every container of the
# tracker that a flood fills has a bound that follows --max-sas, the least recently active entry
# makes room, what went is counted in CAPTURE_LIMITS, and an entry forgotten is followed again
# from its next packet.

import ipaddress  # noqa: E402
import struct  # noqa: E402

from pcapvpn.limits import Limits  # noqa: E402
from pcapvpn.thresholds import DEFAULT  # noqa: E402
from pcapvpn.track import Tracker  # noqa: E402

CLIENT = ipaddress.ip_address("192.0.2.1").packed
SERVER = ipaddress.ip_address("198.51.100.1").packed
P_DATA = bytes([0x48, 0, 0, 1]) + b"x" * 40  # OpenVPN P_DATA_V2, peer id 1


def _live_tracker(max_sas: int) -> Tracker:
    tr = Tracker(DEFAULT, [], None, [], Limits().for_live(max_sas))
    tr.evict_least_recent()  # as LiveSession does
    return tr


def _hit(tr, bound, unit_word):
    return sum(h["dropped"] for h in tr.limits_hit()
               if h["bound"] == bound and unit_word in h["unit"])


def _udp(vt, i, ts, src, sport, dst, dport):
    vt.udp((0, i), ts, 4, src, dst, sport, dport, "openvpn", P_DATA, 0, len(P_DATA))


def test_vpn_udp_flows_live_bound_reached_early_and_active_flows_stay():
    # a flood of client ports to one OpenVPN server while the real flow carries traffic the
    # other way only (server -> client): live keeps one flow per SA (Limits.vpn_max_udp_flows),
    # the least recently active goes first, so the real flow is never forgotten and bound again
    held, evicted = [], []
    for n in (600, 1200):
        tr = _live_tracker(300)
        vt = tr.vpn_tracker
        assert vt.max_udp_flows == tr.limits.vpn_max_udp_flows == 300
        _udp(vt, 1, 1000.0, CLIENT, 40000, SERVER, 1194)  # the real client's first packet
        real = (SERVER, 1194, CLIENT, 40000)
        frame = 2
        for i in range(n):
            _udp(vt, frame, 1000.0 + i, CLIENT, 1024 + i, SERVER, 1194)
            _udp(vt, frame + 1, 1000.0 + i, SERVER, 1194, CLIENT, 40000)
            frame += 2
            assert real in vt.udp_flows and real[2:] + real[:2] in vt.udp_flows
        (t,) = vt.tunnels.values()
        assert t.frames == 1 + 2 * n  # every packet reached the tunnel
        held.append(len(vt.udp_flows))
        evicted.append(vt.flows_evicted)
        assert _hit(tr, "vpn_udp_flows", "least recently active") == vt.flows_evicted
    assert held == [2 * 300, 2 * 300]
    # the real flow stayed: every flood flow beyond the other 299 places went
    assert evicted == [600 - 299, 1200 - 299]


def test_vpn_udp_flow_forgotten_is_bound_again_to_its_tunnel():
    tr = _live_tracker(64)
    vt = tr.vpn_tracker
    _udp(vt, 1, 1000.0, CLIENT, 40000, SERVER, 1194)
    for i in range(200):  # the real flow is now the least recently active: it goes
        _udp(vt, 2 + i, 1001.0 + i, CLIENT, 1024 + i, SERVER, 1194)
    assert (CLIENT, 40000, SERVER, 1194) not in vt.udp_flows
    (t,) = vt.tunnels.values()
    before = t.data[0]
    _udp(vt, 500, 2000.0, CLIENT, 40000, SERVER, 1194)  # seen again
    assert vt.udp_flows[(CLIENT, 40000, SERVER, 1194)][:2] == (t, True)
    assert t.data[0] == before + 1 and len(vt.tunnels) == 1


def _reset(sid: int, pid: int = 0) -> bytes:
    # P_CONTROL_HARD_RESET_CLIENT_V2, key id 0, no tls-auth: session ID, no ACKs, packet ID
    return bytes([7 << 3]) + struct.pack(">Q", sid) + b"\x00" + struct.pack(">I", pid)


def _control(sid: int, pid: int) -> bytes:
    # P_CONTROL_V1 with a byte of payload
    return bytes([4 << 3]) + struct.pack(">Q", sid) + b"\x00" + struct.pack(">I", pid) + b"\x16"


def _openvpn_flood(tr, tunnels: int, per_tunnel: int, pids: int = 0):
    vt = tr.vpn_tracker
    frame = 0
    ts = 1000.0
    for k in range(per_tunnel):
        for j in range(tunnels):
            client = struct.pack(">I", 0xC0000200 + j)
            sid = (j << 16) + k + 1
            for p in range(pids + 1):
                frame += 1
                ts += 0.01
                data = _reset(sid) if p == 0 else _control(sid, p)
                vt.udp((0, frame), ts, 4, client, SERVER, 40000, 1194, "openvpn", data, 0,
                       len(data))
    return ts


def _sessions(vt):
    return [s for t in vt.tunnels.values() if t.protocol == "openvpn" for s in t.st.sessions]


def test_openvpn_sessions_bounded_by_count_when_the_sessions_double():
    # 32 tunnels of a flood, each starting ever new sessions: the tunnels stay (32 < --max-sas
    # 64) but their sessions are bounded over all tunnels (Limits.vpn_max_sessions), each
    # tunnel keeping its latest, the least recently active others forgotten and counted
    from pcapvpn.track.openvpn import MAX_SESSIONS

    held, evicted = [], []
    for per_tunnel in (4, 8):
        tr = _live_tracker(64)
        vt = tr.vpn_tracker
        assert vt.max_sessions == 64 and per_tunnel < MAX_SESSIONS
        now = _openvpn_flood(tr, 32, per_tunnel)
        assert len(_sessions(vt)) == 32 * per_tunnel  # nothing dropped before the expiry
        tr.expire(now, 1800.0, 64)
        sessions = _sessions(vt)
        held.append(len(sessions))
        evicted.append(_hit(tr, "vpn_max_sessions", "OpenVPN sessions"))
        # the sessions started round by round over the tunnels: the 64 kept are each tunnel's
        # latest and, of the others, the most recent (the round before)
        for t in vt.tunnels.values():
            assert [s.client_sid & 0xFFFF for s in t.st.sessions] == [per_tunnel - 1, per_tunnel]
            assert [s.index for s in t.st.sessions] == [per_tunnel - 2, per_tunnel - 1]
            assert t.st.dropped_sessions == per_tunnel - 2
    assert held == [64, 64]
    assert evicted == [32 * 4 - 64, 32 * 8 - 64]


def test_openvpn_sessions_bounded_by_bytes_when_their_control_state_doubles():
    # few sessions, each with many control packets (packet-ID sets): the byte bound
    # (Limits.vpn_max_session_bytes, session_bytes' estimate) holds whatever each one weighs
    from pcapvpn.track.openvpn import session_bytes

    held_bytes, evicted = [], []
    for pids in (200, 400):
        tr = _live_tracker(64)
        vt = tr.vpn_tracker
        now = _openvpn_flood(tr, 8, 4, pids)
        tr.expire(now, 1800.0, 64)
        sessions = _sessions(vt)
        nbytes = sum(session_bytes(s) for s in sessions)
        held_bytes.append(nbytes)
        evicted.append(_hit(tr, "vpn_max_session_bytes", "OpenVPN sessions"))
        assert evicted[-1] == 32 - len(sessions) > 0
        # one session more would not fit: the bound is what stopped the eviction
        assert vt.max_session_bytes - session_bytes(sessions[0]) < nbytes <= vt.max_session_bytes
    assert max(held_bytes) <= Limits().for_live(64).vpn_max_session_bytes == 128 * 1024
    # twice the weight per session: about half as many kept (the latest of a tunnel too)
    assert 32 - evicted[1] < 32 - evicted[0] and 32 - evicted[1] < 8


def _syn(tr, i, ts, sport, flags=0x02):
    tr.tcp_segment((0, i), ts, 4, CLIENT, SERVER, sport, 4500, flags, 0)


def test_ike_tcp_connections_live_least_recent_evicted_when_the_syns_double():
    held, evicted = [], []
    for n in (256, 512):
        tr = _live_tracker(64)
        _syn(tr, 1, 1000.0, 40000)  # the real connection, active throughout
        for i in range(n):
            _syn(tr, 2 + 2 * i, 1000.0 + i, 1024 + i)
            _syn(tr, 3 + 2 * i, 1000.0 + i, 40000, 0x10)  # ACK on the real one
            assert (CLIENT, 40000, SERVER, 4500) in tr.tcp
        held.append(len(tr.tcp))
        evicted.append(tr.tcp_evicted)
        assert _hit(tr, "max_flows", "TCP connections forgotten") == tr.tcp_evicted
        assert tr.tcp_dropped == 0
    assert held == [64, 64]
    assert evicted == [256 - 63, 512 - 63]
    # offline: the new connections are counted and not followed, as before
    off = Tracker()
    off.limits.max_flows = 64
    for i in range(256):
        _syn(off, i, 1000.0 + i, 1024 + i)
    assert len(off.tcp) == 64 and off.tcp_dropped == 256 - 64 and off.tcp_evicted == 0


def test_tcp_connection_forgotten_is_followed_again():
    tr = _live_tracker(64)
    _syn(tr, 1, 1000.0, 40000)
    for i in range(100):
        _syn(tr, 2 + i, 1001.0 + i, 1024 + i)
    assert (CLIENT, 40000, SERVER, 4500) not in tr.tcp
    _syn(tr, 200, 2000.0, 40000, 0x10)
    c = tr.tcp[(CLIENT, 40000, SERVER, 4500)]
    assert c.last_ts == 2000.0 and len(tr.tcp) == 64


def test_nat_keepalive_flows_live_least_recent_evicted_when_the_flows_double():
    held, evicted = [], []
    for n in (256, 512):
        tr = _live_tracker(64)
        kt = tr.keepalive_tracker
        assert kt.MAX_FLOWS == 64
        tr.keepalive((0, 1), 1000.0, 4, CLIENT, SERVER, 4500, 4500)
        frame = 2
        for i in range(n):
            tr.keepalive((0, frame), 1000.0 + i, 4, CLIENT, SERVER, 1024 + i, 4500)
            tr.keepalive((0, frame + 1), 1000.0 + i, 4, CLIENT, SERVER, 4500, 4500)
            frame += 2
            assert (CLIENT, 4500, SERVER, 4500) in kt._flows
        held.append(len(kt._flows))
        evicted.append(kt.evicted)
        assert kt.dropped == 0
        assert _hit(tr, "max_flows", "NAT keepalive flows forgotten") == kt.evicted
    assert held == [64, 64]
    assert evicted == [256 - 63, 512 - 63]
    # forgotten, then seen again: followed again
    tr.keepalive((0, 9999), 5000.0, 4, CLIENT, SERVER, 1024, 4500)
    f = kt._flows[(CLIENT, 1024, SERVER, 4500)]
    assert f.last_ts == 5000.0 and len(kt._flows) == 64


# -- the OpenVPN control channel's packet-ID sets, compacted (session 9) -----------------------

def test_packet_ids_are_exactly_a_set_at_the_run_edges():
    # PacketIds holds a run [lo, hi) and the IDs outside it: compared with a set on sequences
    # that start the run anywhere, extend it, fall just below/above it, repeat, jump far off
    import random

    from pcapvpn.track.openvpn import PacketIds

    rng = random.Random(9)
    for trial in range(400):
        base = rng.choice([0, 1, 7, 2 ** 32 - 40])
        ref: set = set()
        ids = PacketIds()
        assert not ids and len(ids) == 0 and list(ids) == []
        for _ in range(rng.randint(1, 80)):
            r = rng.random()
            if r < 0.5 and ids:  # the next ID of the run (the usual case)
                p = ids.hi if ids.hi > ids.lo else base
            elif r < 0.7 and ids.hi > ids.lo:  # at the edges: just below the run, its last, past it
                p = rng.choice([ids.lo - 1, ids.lo, ids.hi - 1, ids.hi + 1])
            elif r < 0.9:
                p = base + rng.randint(0, 20)
            else:
                p = base + rng.randint(0, 1 << 24)
            if p < 0:
                continue
            ref.add(p)
            ids.add(p)
            assert len(ids) == len(ref) and bool(ids) == bool(ref)
            assert list(ids) == sorted(ref) and ids.max() == max(ref)
            for q in (p - 1, p, p + 1, ids.lo - 1, ids.lo, ids.hi - 1, ids.hi):
                assert (q in ids) == (q in ref)
            for last in (p - 1, p, ids.lo - 1, ids.hi - 1, ids.hi, max(ref), min(ref) - 1):
                assert ids.above(last) == sorted(x for x in ref if x > last)
        ids2 = PacketIds()
        ids2.update(sorted(ref, reverse=True))  # in any order: the same set
        assert list(ids2) == sorted(ref)
    # the IDs outside the run: a tuple up to PacketIds.SMALL of them, then a set
    ids = PacketIds()
    scattered = list(range(100, 100 + 2 * (PacketIds.SMALL + 3), 2))
    ids.update([0, 1, 2])
    assert (ids.lo, ids.hi, ids.more) == (0, 3, None)
    for k, p in enumerate(scattered):
        ids.add(p)
        n_out = k + 1
        assert type(ids.more) is (tuple if n_out <= PacketIds.SMALL else set)
        assert list(ids) == [0, 1, 2] + scattered[:n_out] and len(ids) == 3 + n_out
        assert 101 not in ids and (p in ids) and ids.above(99) == scattered[:n_out]


def _ack(sid: int, pid: int, acks, remote: int) -> bytes:
    # P_CONTROL_V1 from the server, no tls-auth: session ID, its ACK array (packet IDs of the
    # client's packets, then the client's session ID), packet ID, a byte of payload
    return (bytes([4 << 3]) + struct.pack(">Q", sid) + bytes([len(acks)])
            + b"".join(struct.pack(">I", a) for a in acks) + struct.pack(">Q", remote)
            + struct.pack(">I", pid) + b"\x16")


def test_openvpn_unacked_flight_and_retransmissions_at_the_window_edges():
    # the client's packets 0..N-1, the server acknowledging up to K: unacked() is the flight
    # after K; a packet ID sent again is a retransmission only while it is in the kept IDs
    # (the first 4,096 of a direction, as before)
    vt = _live_tracker(64).vpn_tracker
    client, sid, ssid = struct.pack(">I", 0xC0000201), 0x1111, 0x2222
    frame = [0]

    def send(data, from_client=True):
        frame[0] += 1
        src, dst, sp, dp = (client, SERVER, 40000, 1194) if from_client else \
            (SERVER, client, 1194, 40000)
        vt.udp((0, frame[0]), 1000.0 + frame[0] * 0.01, 4, src, dst, sp, dp, "openvpn", data, 0,
               len(data))

    send(_reset(sid))
    for p in range(1, 5000):
        send(_control(sid, p))
    (t,) = vt.tunnels.values()
    (s,) = t.st.sessions
    cd = s.ctl[0]
    assert len(cd.pids) == 4096 and cd.pids.more is None  # one run: two ints
    assert s.unacked(0) == []  # nothing acknowledged yet: no flight to name
    send(_ack(ssid, 0, [0, 1, 2, 3], sid), from_client=False)
    assert s.ctl[0].acked.max() == 3
    assert s.unacked(0) == list(range(4, 4096))
    send(_ack(ssid, 1, [4095], sid), from_client=False)  # the last kept ID acknowledged
    assert s.unacked(0) == [] and len(s.ctl[0].acked) == 5 and set(s.ctl[0].acked.more) == {4095}
    before = cd.retrans
    send(_control(sid, 4095))  # the last kept ID again: a retransmission
    send(_control(sid, 4096))  # the first ID past the kept ones: not known, not one
    send(_control(sid, 0))     # the hard reset's ID (the run's start) again
    assert cd.retrans == before + 2
    assert s.to_dict()["key_ids"] == [0]


# -- the cyclic collector in the capture loop (session 9) --------------------------------------

#: the modules whose classes the tracker holds (SAs, messages, parsed payloads, flows, sessions)
_TRACKED = ("pcapvpn.track", "dissect.vpn", "pcapvpn.tcp_reassembly", "pcapvpn.decode")


def _mutated_session(max_sas: int):
    from mutated import MutatedCapture, lab_frames

    from pcapvpn.live import LiveOptions, LiveSession

    cap = MutatedCapture(lab_frames(), seed=20, per_read=2000, step=0.0005)
    clock = [cap.t]
    s = LiveSession(LiveOptions(interfaces=["sim"], max_sas=max_sas), [],
                    clock=lambda: clock[0], captures=[cap])
    return s, cap, clock


def _flood(s, cap, clock, frames: int, after_eval=None) -> None:
    """``frames`` mutated frames, an evaluation (rules, expiry, eviction) after each 10,000."""
    done = 0
    while done < frames:
        done += s._feed(0, cap, [])
        clock[0] = cap.t
        if done % 10_000 < 2000:
            s._evaluate(clock[0])
            if after_eval is not None:
                after_eval()


def _tracker_class(o) -> bool:
    # a type's __module__ is not always a string (Cython's function type, loaded by other tests
    # in the same process, has a descriptor there)
    m = getattr(type(o), "__module__", None)
    return isinstance(m, str) and m.startswith(_TRACKED)


def test_evicted_sas_and_flows_leave_no_cyclic_garbage():
    # what expiry and eviction forget must be freed by reference counting: after each
    # evaluation a full collection finds no object of the tracker's classes (before session 9:
    # every evicted IKE SA with its exchanges, messages and parsed payloads, ~90 objects each)
    import gc

    s, cap, clock = _mutated_session(200)
    found: list = []

    def collect():
        gc.collect()
        found.extend(type(o).__qualname__ for o in gc.garbage if _tracker_class(o))
        gc.garbage.clear()

    was = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        _flood(s, cap, clock, 100_000, collect)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()
    tr = s.tracker
    assert tr.evicted_sas > 500  # the flood did go through many SAs
    assert found == []


def _live_objects() -> dict:
    import collections
    import gc

    return collections.Counter(type(o).__qualname__ for o in gc.get_objects()
                               if _tracker_class(o))


def test_collector_policy_objects_held_bounded_when_the_frames_double():
    # with live's collector policy (what is alive frozen after each evaluation, no full pass
    # while the frozen objects stay level) the objects of the tracker's classes that exist —
    # held or garbage not collected — stay bounded while the input doubles, and none of them
    # is garbage (a collection then frees none of them)
    import gc

    from pcapvpn.live.collector import Collector

    counts, held = [], []
    # objects of these classes other tests of the same process left alive (caches of their
    # results): counted before, not charged to this session
    gc.collect()
    before = _live_objects()
    for frames in (60_000, 120_000):
        s, cap, clock = _mutated_session(200)
        pol = s.collector = Collector()
        was = gc.isenabled()
        pol.start()
        try:
            _flood(s, cap, clock, frames, None)
        finally:
            pol.stop()  # everything is examined again: counted below
            if was:
                gc.enable()
        live = _live_objects() - before
        gc.collect()
        assert _live_objects() - before == live
        # the IKE SAs alive: those held, and those the last evaluation's rules walked
        # (pcapvpn.rules.incremental.WALKED, until the next one) before its eviction
        assert len(s.tracker.ike_tracker.sas) <= live["IkeSA"] <= 2 * 200
        counts.append(sum(live.values()))
        held.append(len(s.tracker.ike_tracker.sas) + len(s.tracker.esp_tracker._sas))
        assert s.tracker.evicted_sas > frames // 200
        del s, cap, clock
        gc.collect()
    assert held[0] <= 200 and held[1] <= 200
    assert counts[1] < 1.25 * counts[0], counts


# -- smaller entries of the containers a flood fills at --max-sas (session 10, flat4) ----------
# A flood keeps --max-sas OpenVPN sessions, TLS conversations, TCP connections and NAT keepalive
# flows, most with a packet or two: their lists, sets, dicts and deques are made at the first
# element (empty ones shared), bounded lists are tuples, counter pairs ints.  What the trackers
# keep, and what the rules and the report read, is the same at each bound's edge.

def _ovpn_send(vt, frame, data, from_client=True, client=CLIENT, ts=None):
    src, dst, sp, dp = (client, SERVER, 40000, 1194) if from_client else \
        (SERVER, client, 1194, 40000)
    vt.udp((0, frame), 1000.0 + frame * 0.01 if ts is None else ts, 4, src, dst, sp, dp,
           "openvpn", data, 0, len(data))


def test_openvpn_session_refs_are_the_first_max_refs_and_empty_values_shared():
    import pickle

    from pcapvpn.track.openvpn import MAX_REFS, NO_IDS, PacketIds, Session

    fresh = Session(0, 1.0)
    for cd in fresh.ctl:  # nothing of its own before the first packet
        assert cd.pids is NO_IDS and cd.acked is NO_IDS and cd.refs == () and cd.ooo is None
        assert cd.retrans_refs == () and not cd.pids and len(cd.acked) == 0
    assert fresh.client_resets == () and fresh.data == (0, 0) and not fresh.answered
    vt = _live_tracker(64).vpn_tracker
    sid = 0x4242
    frame = 0
    for n in range(MAX_REFS + 5):  # the hard reset sent again and again (its packet ID 0)
        frame += 1
        _ovpn_send(vt, frame, _reset(sid))
    for p in range(1, MAX_REFS + 4):  # control packets 1.. each once, then 1 again 24 times
        frame += 1
        _ovpn_send(vt, frame, _control(sid, p))
    for _ in range(MAX_REFS + 4):
        frame += 1
        _ovpn_send(vt, frame, _control(sid, 1))
    (t,) = vt.tunnels.values()
    (s,) = t.st.sessions
    c, srv = s.ctl
    # the first MAX_REFS of each, in order, as the lists kept them
    assert s.client_resets == tuple((1000.0 + i * 0.01, (0, i)) for i in range(1, MAX_REFS + 1))
    assert c.refs == tuple((0, i) for i in range(1, MAX_REFS + 1))
    retx = [(0, i) for i in range(2, MAX_REFS + 6)] + \
        [(0, i) for i in range(MAX_REFS + 28, 2 * MAX_REFS + 32)]
    assert c.retrans == len(retx) and c.retrans_refs == tuple(retx[:MAX_REFS])
    assert list(c.pids) == list(range(MAX_REFS + 4)) and type(c.pids) is PacketIds
    # the server sent nothing: its direction still shares the empty values
    assert srv.pids is NO_IDS and srv.refs == () and c.acked is NO_IDS and s.server_resets == ()
    assert len(NO_IDS) == 0 and NO_IDS.more is None  # never changed
    d = s.to_dict()
    assert d["client_resets"] == MAX_REFS and d["server_resets"] == 0
    assert d["client_control"]["retransmission_frames"] == [list(r) for r in retx[:MAX_REFS]]
    # the server's acknowledgement gives the client's direction its own acked set
    frame += 1
    _ovpn_send(vt, frame, _ack(0x5151, 0, [0, 1, 2], sid), from_client=False)
    assert type(c.acked) is PacketIds and list(c.acked) == [0, 1, 2] and len(NO_IDS) == 0
    assert s.unacked(0) == list(range(3, MAX_REFS + 4))
    # data packets: the counts and each side's first time
    frame += 1
    _ovpn_send(vt, frame, P_DATA, ts=2000.0)
    frame += 1
    _ovpn_send(vt, frame, P_DATA, ts=2001.0)
    assert s.data == (2, 0) and s.first_data_ts == (2000.0, None) and not s.established
    frame += 1
    _ovpn_send(vt, frame, P_DATA, from_client=False, ts=2002.0)
    assert s.data == (2, 1) and s.first_data_ts == (2000.0, 2002.0) and s.established
    # a session pickled (a forked evaluation, --jobs) keeps the one shared empty set
    s2 = pickle.loads(pickle.dumps(Session(1, 2.0)))
    assert s2.ctl[1].pids is NO_IDS
    try:
        NO_IDS.add(1)
    except TypeError:
        pass
    else:
        raise AssertionError("the shared empty PacketIds changed")


def _rec(ctype: int, body: bytes) -> bytes:
    return bytes([ctype, 3, 3]) + len(body).to_bytes(2, "big") + body


def _hs(t: int, body: bytes = b"") -> bytes:
    return bytes([t]) + len(body).to_bytes(3, "big") + body


def _tls_view(side) -> tuple:
    return (side.records, side.handshakes, side.hs_types, [a.to_dict() for a in side.alerts],
            side.errors, side.broken, bytes(side.buf), bytes(side.hs), side.appdata,
            side.ccs_ts, side.first_appdata_ref, side.last_ref)


def test_tls_side_same_whatever_the_chunks_and_buffers_shared_when_empty():
    # a TLS byte stream (OpenVPN's control channel) fed whole, byte by byte, and cut at every
    # record boundary and inside records: the same records, handshake types, alerts; between
    # records nothing is buffered (the shared b""), a partial record is a bytearray of it
    from pcapvpn.track.tlsvpn import MAX_EVENTS, TlsSide

    types = [12, 13, 14, 15, 16, 254] + [14] * (MAX_EVENTS + 3)
    # a handshake message split over two records, then one record of several messages
    split = _hs(11, b"\x00" * 30)
    stream = (_rec(22, _hs(types[0], b"a" * 7)) + _rec(22, split[:10]) + _rec(22, split[10:])
              + _rec(22, b"".join(_hs(t) for t in types[1:]))
              + b"".join(_rec(21, b"\x02\x28") for _ in range(MAX_EVENTS + 2))
              + _rec(20, b"\x01") + _rec(23, b"x" * 50))
    whole = TlsSide()
    whole.feed(stream, 1.0, (0, 1))
    assert whole.records == 4 + (MAX_EVENTS + 2) + 2 and not whole.broken
    assert len(whole.handshakes) == MAX_EVENTS and len(whole.alerts) == MAX_EVENTS
    assert type(whole.handshakes) is tuple and type(whole.alerts) is tuple
    assert all(whole.has(t) for t in set(types) | {11}) and not whole.has(1) and not whole.has(255)
    assert whole.buf == b"" and whole.hs == b"" and type(whole.buf) is bytes
    for cut in (1, 3, 5, 9, 64):
        side = TlsSide()
        for i in range(0, len(stream), cut):
            side.feed(stream[i:i + cut], 1.0, (0, 1))
            held = stream[:i + cut]
            # what is buffered is the partial record at the end of what was fed
            pos = 0
            while pos + 5 <= len(held) and pos + 5 + int.from_bytes(held[pos + 3:pos + 5], "big") <= len(held):
                pos += 5 + int.from_bytes(held[pos + 3:pos + 5], "big")
            assert bytes(side.buf) == held[pos:]
            assert type(side.buf) is (bytearray if held[pos:] else bytes)
        assert _tls_view(side) == _tls_view(whole)
    # the buffer's bound, at its edge: a partial record of max_buffer bytes is kept, one more
    # byte breaks the side (counted)
    from pcapvpn.track.tlsvpn import StreamBounds

    for extra, broken in ((0, False), (1, True)):
        b = StreamBounds()
        b.max_buffer = 100
        side = TlsSide(bounds=b)
        side.feed(_rec(23, b"y" * 200)[:100 + extra], 1.0, (0, 7))
        assert side.broken is broken and b.dropped.get("tcp_max_buffer", 0) == int(broken)
        assert bytes(side.buf) == (b"" if broken else _rec(23, b"y" * 200)[:100])


def test_keepalive_flow_sample_and_gaps_same_as_lists_and_deque():
    # the first SAMPLE frames (a tuple) and the last SAMPLE after them (a deque made at the
    # first one): the frames reported are those of a list and a deque(maxlen=SAMPLE) at every
    # count around the edges
    from collections import deque

    from pcapvpn.track.nat import KeepaliveFlow

    n_max = 3 * KeepaliveFlow.SAMPLE + 2
    for n in range(1, n_max + 1):
        f = KeepaliveFlow(4, CLIENT, 4500, SERVER, 4500)
        first: list = []
        last: deque = deque(maxlen=KeepaliveFlow.SAMPLE)
        for i in range(n):
            ref = (0, i + 1)
            f.add(ref, 100.0 + 20.0 * i, 0.5, 60.0)
            (first if len(first) < KeepaliveFlow.SAMPLE else last).append(ref)
        assert f.refs == first + [r for r in last if r not in first]
        assert (f._last_refs is None) == (n <= KeepaliveFlow.SAMPLE)
        assert f.intervals == n - 1 and (f._bins is None) == (n == 1)
        assert f.median_interval == (None if n == 1 else 20.0)
        assert f.long_gaps == () and f.long_gaps_total == 0
    f.add((0, 999), 100.0 + 20.0 * n_max + 100.0, 0.5, 60.0)  # one long gap: now a list
    assert f.long_gaps == [(100.0 + 20.0 * (n_max - 1), 100.0 + 20.0 * n_max + 100.0,
                            (0, n_max), (0, 999))] and f.long_gaps_total == 1
    assert f.to_dict()["long_gaps"][0]["frames"] == [[0, n_max], [0, 999]]


def test_tcp_connection_bytes_and_messages_as_pairs():
    import pickle

    tr = _live_tracker(64)
    _syn(tr, 1, 1000.0, 40000)
    c = tr.tcp[(CLIENT, 40000, SERVER, 4500)]
    assert c.bytes == (0, 0) and c.msgs == (0, 0) and not c.established
    c.record(1001.0, (0, 2), 0x18, 100, True)
    assert c.bytes == (100, 0) and not c.established
    c.record(1002.0, (0, 3), 0x18, 7, False)
    c.message(True)
    c.message(False)
    c.message(False)
    assert c.bytes == (100, 7) and c.msgs == (1, 2) and c.established
    assert c.to_dict()["bytes"] == {"client_to_server": 100, "server_to_client": 7}
    c2 = pickle.loads(pickle.dumps(c))
    assert c2.bytes == (100, 7) and c2.msgs == (1, 2) and c2.syn == c.syn


def test_collector_trims_the_c_heap_after_each_evaluation_where_glibc():
    # glibc keeps what it freed inside its heap: live gives it back after each evaluation
    # (malloc_trim); another C library has no such call and nothing is done
    import gc
    import os

    from pcapvpn.live import collector
    from pcapvpn.live.collector import Collector

    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        libc = ""
    glibc = libc.startswith("glibc")
    assert (collector._TRIM is not None) == glibc
    assert collector.malloc_trim() is glibc
    pol = Collector()
    was = gc.isenabled()
    pol.start()
    try:
        for _ in range(3):
            pol.evaluated()
    finally:
        pol.stop()
        if was:
            gc.enable()
    assert pol.trims == (3 if glibc else 0) and pol.full_passes == 0
    pol.evaluated()  # stopped: nothing more
    assert pol.trims == (3 if glibc else 0)


def _arp_reply(sender: int) -> bytes:
    eth = b"\x02\x00\x00\x00\x00\x09" + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x06"
    return eth + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, b"\x02\x00\x00\x00\x00\x02",
                             struct.pack(">I", sender), b"\x02\x00\x00\x00\x00\x09",
                             bytes([192, 168, 0, 1]))


def test_arp_targets_as_tuples_count_requests_and_replies_as_the_lists_did():
    # an ARP target is a tuple replaced when it changes: the requests counted, the first
    # request's time, frame and sender kept, answered once a reply from the target came
    tr = Tracker(limits=Limits().for_live(300))
    for k in range(3):  # three requests for each of 5 targets, interleaved
        for i in range(5):
            tr.link_other((0, 10 * k + i + 1), 1000.0 + 10 * k + i, 0, 1, None,
                          _arp_request(0x0A000000 + i))
    tr.link_other((0, 99), 1100.0, 0, 1, None, _arp_reply(0x0A000002))
    tr.link_other((0, 100), 1101.0, 0, 1, None, _arp_reply(0x0A000002))  # again: no change
    tr.link_other((0, 101), 1102.0, 0, 1, None, _arp_reply(0x0A0000FF))  # asked by nobody
    (view,) = tr.plain_tracker.views.values()
    sender = bytes([192, 168, 0, 1])
    assert view.arp == {struct.pack(">I", 0x0A000000 + i): (3, 1000.0 + i, (0, i + 1), sender,
                                                             i == 2) for i in range(5)}
    # one sender address object for the targets one host asked for
    assert len({id(e[3]) for e in view.arp.values()}) == 1


# -- session 11 (flat5): the sessions' control directions in the session's slots, the
# IKE-over-TCP connections and the TCP reassembly directions in plain dicts

def _tcp_reference(ops, bound: int, lru: bool):
    """The IKE-over-TCP connections as ``Tracker.tcp_segment`` kept them in an OrderedDict
    (before session 11): the keys in order, the connections' records, what was evicted and
    dropped."""
    from collections import OrderedDict

    from dissect.vpn.ip import TcpFlag
    from pcapvpn.track import IkeTcpConn

    tcp: OrderedDict = OrderedDict()
    evicted = dropped = 0
    for ref, ts, src, sport, dst, dport, flags in ops:
        key = found = (src, sport, dst, dport)
        c = tcp.get(key)
        if c is None:
            found = (dst, dport, src, sport)
            c = tcp.get(found)
        syn_only = flags & (TcpFlag.SYN | TcpFlag.ACK) == TcpFlag.SYN
        if c is not None and syn_only and (c.closed or c.synack):
            c = None
        if c is None:
            if len(tcp) >= bound:
                if not lru:
                    dropped += 1
                    continue
                tcp.popitem(last=False)
                evicted += 1
            if flags & (TcpFlag.SYN | TcpFlag.ACK) == TcpFlag.SYN | TcpFlag.ACK:
                key = (dst, dport, src, sport)
            c = tcp[key] = IkeTcpConn(4, key[0], key[1], key[2], key[3], ts, ref)
            if lru:
                tcp.move_to_end(key)
        elif lru:
            tcp.move_to_end(found)
        c.record(ts, ref, flags, 0, (src, sport) == (c.client, c.cport))
    return tcp, evicted, dropped


def _conn_view(c) -> tuple:
    return (c.client, c.cport, c.server, c.port, c.first_ts, c.last_ts, c.syn, c.synack,
            c.rst_client, c.rst_server, c.fin_client, c.fin_server, c.first_ref)


def test_ike_tcp_connections_in_a_dict_keep_the_ordered_dicts_order_and_counts():
    import random

    rng = random.Random(11)
    flags = (0x02, 0x12, 0x10, 0x04, 0x11, 0x18)  # SYN, SYN-ACK, ACK, RST, FIN-ACK, PSH-ACK
    ops = []
    for i in range(4000):
        port = 1024 + rng.randrange(40)
        # each segment's own address objects, as the decoder's
        cli, srv = CLIENT[:2] + CLIENT[2:], SERVER[:2] + SERVER[2:]
        if rng.random() < 0.5:
            ops.append(((0, i), 1000.0 + i, cli, port, srv, 4500, rng.choice(flags)))
        else:
            ops.append(((0, i), 1000.0 + i, srv, 4500, cli, port, rng.choice(flags)))
    for lru in (True, False):
        for n in (len(ops) // 2, len(ops)):
            ref, ev, dr = _tcp_reference(ops[:n], 16, lru)
            tr = Tracker(DEFAULT, [], None, [], Limits().for_live(16) if lru else Limits())
            tr.limits.max_flows = 16
            if lru:
                tr.evict_least_recent()
            for r, ts, src, sport, dst, dport, f in ops[:n]:
                tr.tcp_segment(r, ts, 4, src, dst, sport, dport, f, 0)
            assert type(tr.tcp) is dict
            assert list(tr.tcp) == list(ref)  # the same connections, least recently active first
            assert [_conn_view(c) for c in tr.tcp.values()] == \
                [_conn_view(c) for c in ref.values()]
            assert (tr.tcp_evicted, tr.tcp_dropped) == (ev, dr) and len(tr.tcp) == 16
            assert (ev > 0) == lru and (dr > 0) == (not lru)
            # the key of a connection moved to the end holds the connection's own addresses,
            # not the copies of the segment that moved it
            assert all(k[0] is c.client and k[2] is c.server for k, c in tr.tcp.items())


def test_tcp_reassembly_directions_in_a_dict_least_recent_evicted_first():
    import random

    from pcapvpn.tcp_reassembly import ACK, TcpReassembler

    rng = random.Random(5)
    keys = [(CLIENT, 1024 + i, SERVER, 1194) for i in range(24)]
    for max_streams, max_bytes in ((8, 1 << 20), (8, 40)):
        r = TcpReassembler(Limits(tcp_max_streams=max_streams, tcp_max_bytes=max_bytes))
        order: list = []  # the model: every key followed, least recently active first
        seqs = {}
        gone_by_count = 0
        for i in range(3000):
            k = rng.choice(keys)
            d = r.get(k)
            if d is None:
                before = set(r.dirs)
                full = len(r.dirs) >= max_streams
                d = r.open(k, (4, k[0], k[2], k[1], k[3]), None)
                gone = before - set(r.dirs)
                if full:  # the count bound: the least recently active direction went
                    assert gone == {order[0]}
                    gone_by_count += 1
                order = [x for x in order if x not in gone]
                order.append(k)
                seqs[k] = 1000
            else:
                order.remove(k)
                order.append(k)
            if rng.random() < 0.2:
                r.touch(d)
            else:  # in order, or after a hole (held), a byte or a few
                n = rng.randrange(1, 4)
                seq = seqs[k] + (50 if rng.random() < 0.3 else 0)
                r.segment(d, seq, 0, ACK, b"x" * n, 0, n, (0, i))
                if seq == seqs[k]:
                    seqs[k] += n
            # directions the byte bound forgot leave the model too
            order = [x for x in order if x in r.dirs]
            assert list(r.dirs) == order and len(r.dirs) <= max_streams
            assert all(r.dirs[x].key is x or r.dirs[x].key == x for x in order)
        assert r.streams_evicted >= gone_by_count > 0
        d = r.dirs[order[-1]]
        assert d.rkey == (d.key[2], d.key[3], d.key[0], d.key[1])
        assert d.addr == (4, d.key[0], d.key[2], d.key[1], d.key[3])


def test_openvpn_control_directions_are_the_sessions_own_slots():
    import pickle

    from pcapvpn.track.openvpn import CTL_FIELDS, CtlDir, Session, session_bytes

    s = Session(0, 1.0)
    assert not hasattr(s, "__dict__") and CtlDir.__slots__ == ("_s",)
    c, srv = s.ctl
    c.packets += 3
    srv.refs += ((0, 9),)
    c.ooo = {5: b"abc", 7: b"", 9: b"de"}
    assert (s.packets_c, s.packets_s, s.refs_s, s.refs_c) == (3, 0, ((0, 9),), ())
    assert c.ooo_bytes == 5 and srv.ooo_bytes == 0 and s.dir(0).packets == 3
    assert s.dir(1).d == 1 and s.ctl[0].d == 0
    # the estimate of the session bound counts the held bytes as before
    assert session_bytes(s) == 1400 + 5
    for name in CTL_FIELDS:  # every field reads and writes its own slot of its own direction
        for d, sfx in ((0, "_c"), (1, "_s")):
            setattr(s.dir(d), name, (name, d))
            assert getattr(s, name + sfx) == (name, d) and getattr(s.ctl[d], name) == (name, d)
    # pickled (a forked evaluation, --jobs): the values come back in the slots
    s2 = pickle.loads(pickle.dumps(s))
    assert [getattr(s2, n + sfx) for n in CTL_FIELDS for sfx in ("_c", "_s")] == \
        [(n, d) for n in CTL_FIELDS for d in (0, 1)]


def test_tls_conversation_side_made_at_its_first_bytes_reads_as_a_fresh_one():
    # a conversation's side that sent nothing is the one shared empty side; fed, it is a side
    # of its own sharing the records' order with the other: the stages, views and dicts are
    # those of a conversation whose two sides were made at once (as before)
    import pickle

    from pcapvpn.track.tlsvpn import NO_SIDE, StreamBounds, TlsConversation, TlsSide

    b = StreamBounds()
    lazy = TlsConversation(bounds=b)
    eager = TlsConversation(bounds=b)
    eager.side(True), eager.side(False)  # both sides made before any byte: the old layout
    assert lazy.client is NO_SIDE and lazy.server is NO_SIDE
    assert lazy.to_dict() == eager.to_dict() and lazy.stage == eager.stage == "none"
    flights = [(True, _rec(22, _hs(1, b"\x03\x03" + b"\x00" * 40))),   # ClientHello
               (False, _rec(22, _hs(2, b"\x03\x03" + b"\x00" * 40)) + _rec(22, _hs(14))),
               (True, _rec(20, b"\x01") + _rec(22, b"f" * 40)),
               (False, _rec(20, b"\x01") + _rec(22, b"f" * 40)),
               (True, _rec(23, b"x" * 30)), (False, _rec(23, b"y" * 30))]
    for i, (fc, data) in enumerate(flights):
        for conv in (lazy, eager):
            conv.side(fc).feed(data, 1.0 + i, (0, i))
        if i == 0:  # the server sent nothing yet: still the shared side
            assert lazy.server is NO_SIDE and type(lazy.client) is TlsSide
        assert lazy.to_dict() == eager.to_dict() and lazy.stage == eager.stage
        assert [_tls_view(x) for x in (lazy.client, lazy.server)] == \
            [_tls_view(x) for x in (eager.client, eager.server)]
    assert lazy.client.order is lazy.server.order and lazy.client.bounds is b
    assert lazy.stage == "complete"
    # pickled and copied as itself, never changed
    assert pickle.loads(pickle.dumps(TlsConversation())).server is NO_SIDE
    assert NO_SIDE.records == 0 and NO_SIDE.order == [0] and NO_SIDE.buf == b""
    try:
        NO_SIDE.feed(b"\x16\x03\x03\x00\x01\x01", 1.0, (0, 1))
    except TypeError:
        pass
    else:
        raise AssertionError("the shared empty TLS side changed")


def test_ike_tcp_connections_share_the_servers_address_and_port():
    tr = _live_tracker(64)
    for i in range(10):  # each segment's own copies of the addresses, as the decoder's
        tr.tcp_segment((0, i), 1000.0 + i, 4, CLIENT[:2] + CLIENT[2:], SERVER[:2] + SERVER[2:],
                       2000 + i, int("4500"), 0x02, 0)
    other = ipaddress.ip_address("198.51.100.2").packed
    tr.tcp_segment((0, 10), 1010.0, 4, CLIENT, other, 3000, 4500, 0x02, 0)
    conns = list(tr.tcp.values())
    assert len({id(c.server) for c in conns[:10]}) == 1 and len({id(c.port) for c in conns[:10]}) == 1
    assert len({id(c.client) for c in conns[:10]}) == 10
    assert conns[10].server == other and [c.server for c in conns[:10]] == [SERVER] * 10
    assert list(tr.tcp) == [(c.client, c.cport, c.server, c.port) for c in conns]
