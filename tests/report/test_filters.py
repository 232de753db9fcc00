"""Every Wireshark display filter pcapvpn emits is accepted by tshark and shows the finding's
evidence frames (DESIGN.md: "every emitted filter is checked with tshark -Y in the tests")."""

from __future__ import annotations

import subprocess

import pytest

from conftest import analysed, ipsec_captures, rel, tshark_path

#: filters that select by property of the whole capture rather than by the evidence frames
_GLOBAL = ("frame", "_ws.malformed", "frame.cap_len < frame.len", "esp")


def _matching(path, flt):
    res = subprocess.run([tshark_path(), "-n", "-r", str(path), "-Y", flt, "-T", "fields",
                          "-e", "frame.number"], capture_output=True, text=True, timeout=300)
    return res.returncode, res.stderr, {int(x) for x in res.stdout.split()}


@pytest.mark.oracle
@pytest.mark.parametrize("path", ipsec_captures(), ids=rel)
def test_filters_valid_and_show_the_evidence(path):
    result = analysed(path)
    problems = []
    for f in result.findings:
        flt = f.wireshark_filter
        assert flt, f"{f.code} has no Wireshark filter"
        rc, err, frames = _matching(path, flt)
        if rc not in (0, 2) or "was unexpected" in err or "isn't a valid" in err:
            problems.append(f"{f.code}: tshark rejects {flt!r}: {err.strip()[-200:]}")
            continue
        if flt.startswith(_GLOBAL):
            continue
        want = {e.frame for e in f.evidence.frames}
        missing = sorted(want - frames)
        if missing:
            problems.append(f"{f.code}: filter {flt!r} does not show evidence frames {missing[:10]}")
    assert not problems, "\n".join(problems)
