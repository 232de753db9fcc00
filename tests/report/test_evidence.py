"""--export-evidence: the cited frames (plus their IKE exchanges) in a pcapng that tshark opens,
each with a comment naming the finding; frames fetched back by offset; stdin spooled."""

from __future__ import annotations

import random
import subprocess
import sys

import synth
from conftest import CAPTURES, tshark_fields
from pcapvpn.analysis import run
from pcapvpn.report.evidence import export_evidence
from pcapvpn.sources import INDEX_EVERY, open_source

LAB = CAPTURES / "lab"


def _lab(name):
    return next((LAB / name).glob("*.pcap"))


def test_evidence_opens_in_tshark_with_comments(tmp_path):
    res = run([str(_lab("ikev2_nat_4500_blocked"))])
    ev = tmp_path / "ev.pcapng"
    st = export_evidence(res, str(ev))
    rows = tshark_fields(ev, ["frame.number", "frame.comment", "isakmp.messageid"])
    assert len(rows) == st.frames == 6
    assert all(r[1].startswith("pcapvpn: ") for r in rows)
    f = next(x for x in res.report.findings if x.code == "NAT_T_BLOCKED")
    cited = {fr.frame for fr in f.evidence.frames}
    for r in rows:
        orig = int(r[1].rsplit("frame ", 1)[1].rstrip("]"))
        if orig in cited:
            assert "NAT_T_BLOCKED" in r[1] and int(r[2], 0) == 1
    # the IKE_SA_INIT exchange of the affected SA comes along as context
    assert sum(1 for r in rows if int(r[2], 0) == 0) == 2


def test_fetch_by_offset_index(tmp_path):
    frames = [(100.0 + i * 0.001, synth.esp_frame("192.0.2.1", "198.51.100.1", 0x1000, i + 1))
              for i in range(3 * INDEX_EVERY + 17)]
    path = synth.write_pcap(tmp_path / "many.pcap", frames)
    src = open_source(str(path))
    seen = {fr[1]: fr[4] for fr in src.frames()}
    assert len(src.checkpoints) == 3
    want = random.Random(1).sample(sorted(seen), 25) + [1, len(seen), INDEX_EVERY]
    got = list(src.fetch(want))
    assert [g[1] for g in got] == sorted(set(want))
    assert all(g[4] == seen[g[1]] for g in got)


def test_stdin_is_spooled_for_export(tmp_path):
    path = _lab("ikev2_no_response")
    ev = tmp_path / "ev.pcapng"
    with open(path, "rb") as f:
        p = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", "-", "--export-evidence",
                            str(ev)], stdin=f, capture_output=True, timeout=120)
    assert p.returncode == 1, p.stderr
    rows = tshark_fields(ev, ["frame.comment"])
    assert len(rows) == 4 and all("IKE_NO_RESPONSE" in r[0] for r in rows)


def test_one_way_evidence_shows_the_direction_that_kept_sending(tmp_path):
    """ESP both ways, then one direction stops while the other goes on: the evidence holds the
    continuing direction's packets after the stop (one packet each way would look two-way in
    Wireshark), labelled by what they are; nothing of the stopped SA after its last packet."""
    frames = []
    t0 = 1_700_000_000.0
    sa, sb = 0, 0
    for i in range(300):  # 10 packets/s for 30 s; the reverse stops after 5 s
        ts = t0 + i * 0.1
        sa += 1
        frames.append((ts, synth.esp_frame("192.0.2.1", "198.51.100.2", 0x1000, sa)))
        if i < 50:
            sb += 1
            frames.append((ts + 0.01, synth.esp_frame("198.51.100.2", "192.0.2.1", 0x2000, sb)))
    path = synth.write_pcap(tmp_path / "stop.pcap", frames)
    res = run([str(path)])
    f = next(x for x in res.report.findings if x.code == "ESP_ONE_WAY")
    ev = tmp_path / "ev.pcapng"
    export_evidence(res, str(ev))
    rows = tshark_fields(ev, ["frame.comment", "esp.spi"])
    last_back = max(n for n, (_ts, fr) in enumerate(frames, 1)
                    if fr[-72:-68] == (0x2000).to_bytes(4, "big"))
    after = [r for r in rows if int(r[0].rsplit("frame ", 1)[1].rstrip("]")) > last_back]
    kept = [r for r in after if int(r[1], 0) == 0x1000]
    assert len(kept) >= 10, rows
    assert not [r for r in after if int(r[1], 0) == 0x2000]
    cited = {fr.frame for fr in f.evidence.frames}
    for r in kept:
        n = int(r[0].rsplit("frame ", 1)[1].rstrip("]"))
        if n not in cited:
            assert "kept sending" in r[0] and "ESP SPI 0x00001000" in r[0]


def test_context_frames_say_what_they_are(tmp_path):
    """IKE frames added as context are labelled with their exchange (a liveness check is said
    to be one), not as 'context for' a finding they do not show."""
    res = run([str(_lab("ikev2_nat"))])
    ev = tmp_path / "ev.pcapng"
    export_evidence(res, str(ev))
    rows = tshark_fields(ev, ["frame.comment"])
    cited = {(fr.file, fr.frame) for f in res.report.findings for fr in f.evidence.frames}
    context = [r[0] for r in rows
               if (str(_lab("ikev2_nat")), int(r[0].rsplit("frame ", 1)[1].rstrip("]")))
               not in cited]
    assert context
    codes = {f.code for f in res.report.findings}
    for c in context:
        assert c.startswith("pcapvpn: IKE SA ") and not any(code in c for code in codes), c
        assert any(x in c for x in ("IKE_AUTH #", "INFORMATIONAL #", "IKE_SA_INIT #")), c
