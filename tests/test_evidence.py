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
