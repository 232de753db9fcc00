"""The synthetic inner captures (captures/inner_synthetic, issue 15): ICMP fragmentation-needed /
packet-too-big inside the tunnel (INNER_MTU), an overlapping home LAN seen only through DHCP
(SUBNET_OVERLAP), Windows adapter names as tunnel interfaces.  Each capture reaches the truth
its expected.json states, and the committed files are what the generator writes."""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import CAPTURES
from pcapvpn.analysis import run

DIR = CAPTURES / "inner_synthetic"
EXP = json.loads((DIR / "expected.json").read_text())
ENTRIES = {c["file"]: c for c in EXP["captures"]}


def _make():
    spec = importlib.util.spec_from_file_location("inner_synthetic_make", DIR / "make.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generator_writes_the_committed_captures(tmp_path):
    _make().main(["--out", str(tmp_path)])
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(ENTRIES)
    for name in written:
        assert (tmp_path / name).read_bytes() == (DIR / name).read_bytes(), name


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_synthetic_capture_truth(name):
    c = ENTRIES[name]
    res = run([str(DIR / name)])
    codes = {f.code for f in res.findings}
    for want in c["verdicts"]:
        (got,) = [v for v in res.verdicts if v.tunnel == want["tunnel"]]
        assert (got.verdict, got.primary_code) == (want["verdict"], want["primary"]), \
            (got, sorted(codes))
        if want["verdict"] == "failing":
            assert got.failed_stage == want["stage"]
    assert set(c["expected_findings"]) <= codes, sorted(codes)
    assert not set(c["forbidden_findings"]) & codes, sorted(codes)
    (t,) = res.report.tunnels
    views = t["inner"]["views"]
    assert len(views) == len(c["views"]), views
    for want, got in zip(c["views"], views):
        assert {k: got.get(k) for k in want} == want, got
    for code, words in c.get("facts", {}).items():
        (f,) = [f for f in res.findings if f.code == code]
        for w in words:
            assert w in f.detail or w in f.title, (code, w, f.detail)


def test_windows_descriptions_are_tunnels():
    """The descriptions decide, not the link type: the same names with an Ethernet adapter's
    description are physical."""
    from pcapvpn.track.inner import _tunnel_name

    for desc in ("WAN Miniport (IKEv2)", "TAP-Windows Adapter V9", "Wintun Userspace Tunnel",
                 "WAN Miniport (L2TP)", "WAN Miniport (SSTP)"):
        assert _tunnel_name(r"\Device\NPF_{7C9E6679-7425-40DE-944B-E07FC1F90AE7}", desc), desc
    for desc in ("Intel(R) Ethernet Connection I219-V", "Realtek PCIe GbE Family Controller",
                 "WAN Miniport (Network Monitor)"):
        assert not _tunnel_name(r"\Device\NPF_{3F2504E0-4F89-11D3-9A0C-0305E82C3301}", desc)
