"""Every Wireshark display filter pcapvpn emits is accepted by tshark and shows the finding's
evidence frames (DESIGN.md: "every emitted filter is checked with tshark -Y in the tests")."""

from __future__ import annotations

import subprocess

import pytest

from conftest import analysed, ipsec_captures, rel, tshark_path
from oracle_util import decode_as_of

#: filters that select by property of the whole capture rather than by the evidence frames
_GLOBAL = ("frame", "_ws.malformed", "frame.cap_len < frame.len", "esp")


def _matching(path, flt, decode_as=()):
    res = subprocess.run([tshark_path(), "-n", "-r", str(path), "-Y", flt, "-T", "fields",
                          "-e", "frame.number"] + [a for d in decode_as for a in ("-d", d)],
                         capture_output=True, text=True, timeout=300)
    return res.returncode, res.stderr, {int(x) for x in res.stdout.split()}


@pytest.mark.oracle
@pytest.mark.parametrize("path", ipsec_captures(), ids=rel)
def test_filters_valid_and_show_the_evidence(path):
    result = analysed(path)
    problems = []
    # custom ports: the Decode As the report itself names (the lab records the same)
    decode_as = decode_as_of(path)
    for d in decode_as:
        port, proto = d.split(",")
        assert any(f"{port} as {proto.upper()}" in w for w in result.report.capture.warnings), d
    for f in result.findings:
        flt = f.wireshark_filter
        assert flt, f"{f.code} has no Wireshark filter"
        rc, err, frames = _matching(path, flt, decode_as)
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


def test_tunnel_filter_follows_moved_ends(tmp_path):
    """A tunnel whose end moved (MOBIKE, RFC 4555) is filtered with the new address on its
    side: the packets after the move match too."""
    import ipaddress
    from types import SimpleNamespace

    from synth import esp_frame, write_pcap
    from pcapvpn.rules.common import tunnel_filter

    a, b, a2 = (ipaddress.ip_address(x).packed for x in ("192.0.2.1", "198.51.100.2",
                                                          "203.0.113.7"))
    t = SimpleNamespace(ipver=4, a=a, b=b, moved={a2: a})
    flt = tunnel_filter(t)
    p = write_pcap(tmp_path / "m.pcap", [
        (1.0, esp_frame("192.0.2.1", "198.51.100.2", 1, 1)),
        (2.0, esp_frame("203.0.113.7", "198.51.100.2", 1, 2)),
        (3.0, esp_frame("203.0.113.7", "192.0.2.99", 1, 3))])
    rc, err, frames = _matching(p, flt)
    assert rc == 0, err
    assert frames == {1, 2}
    assert tunnel_filter(SimpleNamespace(ipver=4, a=a, b=b, moved={})) == \
        "ip.addr == 192.0.2.1 && ip.addr == 198.51.100.2"
