"""IKE and ESP-in-UDP on ports other than 500/4500 (strongSwan ``charon.port`` /
``port_nat_t``, libreswan ``ikeport=``, a FortiGate's ``ike-port``): IKE after a non-ESP marker
on a UDP flow makes the flow's ESP and keepalives count as on 4500 (RFC 3948 §2), and the port
moves of NAT traversal on those ports are not NAT remappings.  The real-daemon capture is
``captures/lab/ikev2_custom_ports`` (its expected findings and verdict are checked by
tests/project/test_lab.py and the golden verdicts)."""

from __future__ import annotations

import pytest

from synth import esp_frame, ike_encrypted, ike_sa_init, ip_frame, keepalive_frame, udp
from test_verdicts import T0, A, B, ISPI, RSPI, ZERO, Cap, the

from conftest import REPO
from pcapvpn.analysis import Options, run
from pcapvpn.decode import Decoder
from pcapvpn.limits import Limits
from pcapvpn.track import Tracker

IKE_P, NATT_P = 2400, 2500


def _custom_tunnel(c: Cap, marker_on_init: bool = True, esp: bool = True, t0: float = 0.0):
    """strongSwan with ``port = 2400``, ``port_nat_t = 2500`` on both sides: IKE_SA_INIT
    2400 <-> 2400, then the initiator moves to 2500 (the responder stays on 2400)."""
    init = ike_sa_init(ISPI, ZERO, False)
    resp = ike_sa_init(ISPI, RSPI, True)
    if marker_on_init:  # charon marks every message sent from a port other than 500
        c.ike(t0, A, B, init, IKE_P, IKE_P)
        c.ike(t0 + 0.01, B, A, resp, IKE_P, IKE_P)
    else:
        c.frames.append((t0, ip_frame(A, B, 17, udp(IKE_P, IKE_P, init))))
        c.frames.append((t0 + 0.01, ip_frame(B, A, 17, udp(IKE_P, IKE_P, resp))))
    c.ike(t0 + 0.02, A, B, ike_encrypted(ISPI, RSPI, 35, 1, 35, False, True), NATT_P, IKE_P)
    c.ike(t0 + 0.03, B, A, ike_encrypted(ISPI, RSPI, 35, 1, 36, True, False), IKE_P, NATT_P)
    if esp:
        for i in range(20):
            t = t0 + 1 + i
            c.frames.append((t, esp_frame(A, B, 0xA1, i + 1, udp_ports=(NATT_P, IKE_P))))
            c.frames.append((t + 0.01, esp_frame(B, A, 0xB1, i + 1, udp_ports=(IKE_P, NATT_P))))
        c.frames.append((t0 + 25, keepalive_frame(A, B, NATT_P, IKE_P)))


def test_esp_and_keepalives_on_custom_nat_t_ports(tmp_path):
    c = Cap()
    _custom_tunnel(c)
    res = c.analyse(tmp_path)
    esp = sorted((e.spi, e.packets, e.encap) for e in res.state.esp_sas)
    assert esp == [(0xA1, 20, "udp"), (0xB1, 20, "udp")]
    assert res.report.capture.counts.nat_keepalives == 1
    v = the(res)
    assert v.verdict == "healthy", [f.code for f in res.findings]
    codes = {f.code for f in res.findings}
    assert "NAT_MAPPING_CHANGED" not in codes and "NAT_DETECTED" not in codes
    # the engineer is told how to make Wireshark show what the filters cite
    assert any("udp.port==2400 as UDPENCAP" in w for w in res.report.capture.warnings)


def test_the_move_to_the_nat_t_port_is_the_float_not_a_remapping(tmp_path):
    """The initiator's port change at IKE_AUTH is NAT traversal's move (RFC 7296 §2.23), with
    or without the marker on IKE_SA_INIT."""
    from pcapvpn.track.nat import nat_verdict

    for marker in (True, False):
        c = Cap()
        _custom_tunnel(c, marker_on_init=marker)
        res = c.analyse(tmp_path, name=f"m{marker}.pcap")
        sa, = res.state.ike_sas
        v = nat_verdict(sa)
        assert v.floated and v.float_frame[1] == 3, marker
        assert v.endpoint_changes_total == 0, (marker, v.endpoint_changes)
        assert "NAT_MAPPING_CHANGED" not in {f.code for f in res.findings}


def test_esp_on_ports_no_ike_marked_stays_plaintext(tmp_path):
    """Without IKE after a marker on the flow, UDP between the same hosts on other ports is not
    taken for ESP (nothing says it is): the learnt flows are exactly the marked ones."""
    c = Cap()
    _custom_tunnel(c)
    for i in range(5):  # same hosts, other ports: not the tunnel's flow
        c.frames.append((30 + i, esp_frame(A, B, 0xC1, i + 1, udp_ports=(3000, 3001))))
    res = c.analyse(tmp_path)
    assert 0xC1 not in {e.spi for e in res.state.esp_sas}


def test_standard_ports_unchanged(tmp_path):
    """On 500/4500 nothing is learnt (the framing is the port's) and the float reads as before."""
    c = Cap()
    c.ike(0, A, B, ike_sa_init(ISPI, ZERO, False))
    c.ike(0.01, B, A, ike_sa_init(ISPI, RSPI, True))
    c.ike(0.02, A, B, ike_encrypted(ISPI, RSPI, 35, 1, 35, False, True), 4500, 4500)
    c.ike(0.03, B, A, ike_encrypted(ISPI, RSPI, 35, 1, 36, True, False), 4500, 4500)
    res = c.analyse(tmp_path)
    from pcapvpn.track.nat import nat_verdict

    v = nat_verdict(res.state.ike_sas[0])
    assert v.floated and v.start_port == 500
    assert not res.report.capture.warnings


def test_learnt_flows_are_bounded_and_counted():
    """A flood of marked IKE from ever new ports: at most ``Limits.max_flows`` flows kept, the
    oldest forgotten first and counted for CAPTURE_LIMITS; a forgotten flow is learnt again from
    its next marked IKE message."""
    from dissect.vpn.ike import parse_message

    lim = Limits()
    lim.max_flows = 8
    tr = Tracker(limits=lim)
    raw = ike_sa_init(ISPI, ZERO, False)
    msg = parse_message(raw)
    msg.marker = True
    a, b = bytes([192, 0, 2, 2]), bytes([198, 51, 100, 2])
    for n in (8, 16, 32):
        tr.encap_flows.clear()
        tr.encap_flows.evicted = 0
        for p in range(n):
            tr.ike((0, p + 1), float(p), 4, a, b, 10000 + p, IKE_P, "udp", msg, ((0, p + 1),))
        assert len(tr.encap_flows) == 2 * min(n, 8)  # both directions of each flow
        assert tr.encap_flows.evicted == max(0, n - 8)
    hit = [h for h in tr.limits_hit() if "non-ESP marker" in h["unit"]]
    assert hit and hit[0]["dropped"] == 24 and hit[0]["limit"] == 8
    # the oldest went first: the latest 8 are held, an evicted one comes back with its next IKE
    assert (a, 10000 + 31, b, IKE_P) in tr.encap_flows
    assert (a, 10000, b, IKE_P) not in tr.encap_flows
    tr.ike((0, 99), 99.0, 4, a, b, 10000, IKE_P, "udp", msg, ((0, 99),))
    assert (a, 10000, b, IKE_P) in tr.encap_flows and (b, IKE_P, a, 10000) in tr.encap_flows


def test_decoder_reads_the_sinks_flows():
    """The decoder takes the learnt flows from its sink (one dict, no copy): a sink without them
    (a benchmark's NullSink) learns nothing and classifies by port alone."""
    from pcapvpn.events import NullSink

    tr = Tracker()
    assert Decoder(tr)._encap_flows is tr.encap_flows
    assert Decoder(NullSink())._encap_flows is None


def test_lab_capture_cut_between_ike_and_esp():
    """``--jobs``: the lab capture cut where the marked IKE that opens the custom ports is in one
    slice and their ESP in the next (the parent replays that ESP packet by packet), and where
    both are in the second slice (its worker does not merge ESP as SA states): the single
    pass's report each time."""
    from pcapvpn.report import render
    from pcapvpn.sources import open_source

    path = str(REPO / "captures" / "lab" / "ikev2_custom_ports" / "ikev2_custom_ports.pcap")
    one = run([path])
    assert sorted(e.encap for e in one.state.esp_sas) == ["udp", "udp"]
    assert the(one).verdict == "healthy"
    with open_source(path) as src:
        offsets = {f[1]: f[6] for f in src.frames()}
    for frame in (3, 5, 9):  # before IKE_AUTH, before the first ESP, mid-ESP
        res = run([path], Options(jobs=2, slice_at=[offsets[frame]]))
        assert res.parallel and res.parallel.get("slices") == 2, res.parallel
        assert render(res.report, "json") == render(one.report, "json"), frame
        assert render(res.report, "text") == render(one.report, "text"), frame


@pytest.mark.parametrize("late", [False, True])
def test_cut_with_standard_esp_beside(tmp_path, monkeypatch, late):
    """A second tunnel with ESP on 4500 beside the custom-port one: the custom ports' ESP is
    known only to the parent, which learnt the ports, so no slice's ESP is merged as SA states
    and every ESP packet is replayed in order; the report is the single pass's.  ``late``: the
    custom tunnel starts in the second slice, whose worker sees the marked IKE beside its own
    ESP of 4500 and sends no SA states (worker side); else it starts in the first, and the
    parent knows the flows before the second slice (parent side)."""
    from synth import ike_frame
    from pcapvpn.report import render
    from pcapvpn.sources import open_source
    from pcapvpn.track import esp as esp_mod

    start = 10.0 if late else 0.0
    c = Cap()
    _custom_tunnel(c, t0=start)
    c2, d2 = "192.0.2.9", "198.51.100.9"
    i2, r2 = bytes.fromhex("1111111111111111"), bytes.fromhex("2222222222222222")
    c.frames.append((0.1, ike_frame(c2, d2, ike_sa_init(i2, ZERO, False))))
    c.frames.append((0.11, ike_frame(d2, c2, ike_sa_init(i2, r2, True))))
    c.frames.append((0.12, ike_frame(c2, d2, ike_encrypted(i2, r2, 35, 1, 35, False, True),
                                     4500, 4500)))
    c.frames.append((0.13, ike_frame(d2, c2, ike_encrypted(i2, r2, 35, 1, 36, True, False),
                                     4500, 4500)))
    for i in range(60):
        t = 1.005 + i / 2
        c.frames.append((t, esp_frame(c2, d2, 0xD1, i + 1, udp_ports=(4500, 4500))))
        c.frames.append((t + 0.002, esp_frame(d2, c2, 0xE1, i + 1, udp_ports=(4500, 4500))))
    c.analyse(tmp_path)
    path = str(tmp_path / "cap.pcap")
    one = run([path])
    assert {e.spi for e in one.state.esp_sas} == {0xA1, 0xB1, 0xD1, 0xE1}
    with open_source(path) as src:
        frames = list(src.frames())
    if late:  # cut right before the custom tunnel's IKE_SA_INIT
        cuts = [next(i for i, f in enumerate(frames) if f[2] >= T0 + start - 1e-6)]
    else:
        cuts = [len(frames) // 3, len(frames) // 2]
    merged = []
    real = esp_mod.merge_slice

    def counted(*a, **kw):
        merged.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(esp_mod, "merge_slice", counted)
    for k in cuts:
        res = run([path], Options(jobs=2, slice_at=[frames[k][6]]))
        assert not merged, k  # no SA states merged once custom ports are in play
        assert res.parallel and res.parallel.get("slices") == 2, res.parallel
        assert render(res.report, "json") == render(one.report, "json"), k


def test_redaction_rewrites_ike_on_custom_ports():
    """``--redact``: IKE on a custom port, after a non-ESP marker or not, is rewritten like IKE
    on 500/4500: its NAT-D hashes are recomputed for the pseudonymous addresses (RFC 7296
    §2.23: SHA-1 of SPIi | SPIr | address | port)."""
    import hashlib
    import struct

    from dissect.vpn.link import LINKTYPE_ETHERNET, decode_frame
    from dissect.vpn.rewrite import rewrite_frame
    from synth import ike_frame, ip, v2_notify
    from pcapvpn.redact import Redactor

    def natd(addr: bytes, port: int) -> bytes:
        return hashlib.sha1(ISPI + ZERO + addr + struct.pack(">H", port)).digest()

    red = Redactor(b"k" * 32)
    for marker in (True, False):
        raw = ike_sa_init(ISPI, ZERO, False, extra=[(41, v2_notify(16388, natd(ip(A), IKE_P))),
                                                    (41, v2_notify(16389, natd(ip(B), IKE_P)))])
        frame = ike_frame(A, B, raw, IKE_P, IKE_P) if marker else \
            ip_frame(A, B, 17, udp(IKE_P, IKE_P, raw))
        _lt, out = rewrite_frame(LINKTYPE_ETHERNET, frame, red)
        d = decode_frame(LINKTYPE_ETHERNET, out)
        assert d[1] == red.ip(ip(A)) and d[2] == red.ip(ip(B))
        assert natd(red.ip(ip(A)), IKE_P) in out and natd(red.ip(ip(B)), IKE_P) in out, marker
        assert natd(ip(A), IKE_P) not in out and natd(ip(B), IKE_P) not in out, marker


def test_nat_t_port_blocked_on_custom_ports(tmp_path):
    """IKE_SA_INIT answered on the custom IKE port, IKE_AUTH to the custom NAT-T port never
    answered: the NAT-T port is blocked (NAT_T_BLOCKED, stage nat_traversal), as with 4500."""
    c = Cap()
    c.frames.append((0.0, ip_frame(A, B, 17, udp(IKE_P, IKE_P, ike_sa_init(ISPI, ZERO, False)))))
    c.frames.append((0.01, ip_frame(B, A, 17, udp(IKE_P, IKE_P,
                                                    ike_sa_init(ISPI, RSPI, True)))))
    for k, t in enumerate((0.02, 2.0, 6.0, 14.0, 30.0)):
        c.ike(t, A, B, ike_encrypted(ISPI, RSPI, 35, 1, 35, False, True), NATT_P, NATT_P)
    res = c.analyse(tmp_path)
    v = the(res)
    assert (v.verdict, v.failed_stage, v.primary_code) == \
        ("failing", "nat_traversal", "NAT_T_BLOCKED"), [f.code for f in res.findings]
    f, = [f for f in res.findings if f.code == "NAT_T_BLOCKED"]
    assert "UDP 2400 (its IKE port)" in f.detail and "UDP 2500" in f.detail, f.detail
    assert "UDP 500 " not in f.detail and "4500" not in f.detail, f.detail


def test_no_esp_names_the_custom_nat_t_ports(tmp_path):
    """An IKE SA up on custom ports with no ESP after it: ESP_NO_TRAFFIC says where the ESP was
    expected (the IKE SA's NAT traversal ports), not UDP 4500."""
    c = Cap()
    _custom_tunnel(c, esp=False)
    c.ike(60, A, B, ike_encrypted(ISPI, RSPI, 37, 2, 0, False, True), NATT_P, IKE_P)
    c.ike(60.01, B, A, ike_encrypted(ISPI, RSPI, 37, 2, 0, True, False), IKE_P, NATT_P)
    res = c.analyse(tmp_path)
    f, = [f for f in res.findings if f.code == "ESP_NO_TRAFFIC"]
    assert "UDP 2400/2500" in f.detail and "4500" not in f.detail, f.detail
