"""--redact: prefix-preserving, consistent pseudonyms; no original address, MAC or identity left
in any output or in the exported evidence; the redacted evidence gives the same diagnosis."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import pytest

from dissect.vpn.link import decode_frame
from pcapvpn.analysis import run
from pcapvpn.redact import Redactor
from pcapvpn.report import render
from pcapvpn.report.evidence import export_evidence
from pcapvpn.sources import open_source
from conftest import CAPTURES, tshark_fields

LAB = CAPTURES / "lab"
KEY = b"pcapvpn-test-key" * 2
CASES = ["ikev2_nat_4500_blocked", "ikev1_aggressive_healthy", "ikev2_esp_oneway",
         "ikev2_no_response", "ikev2_nat", "ikev2_cert_ipfrag_dropped"]


def _lab(name):
    return next((LAB / name).glob("*.pcap"))


def _ip(s):
    return ipaddress.ip_address(s).packed


def test_prefix_preserving_and_consistent():
    r = Redactor(KEY)
    a, b, c = _ip("198.51.100.7"), _ip("198.51.100.9"), _ip("203.0.113.9")
    ma, mb, mc = r.ip(a), r.ip(b), r.ip(c)
    assert r.ip(a) == ma and Redactor(KEY).ip(a) == ma  # consistent, keyed
    assert ma != a and mc != c

    def common(x, y):
        return 32 - (int.from_bytes(x, "big") ^ int.from_bytes(y, "big")).bit_length()

    assert common(ma, mb) == common(a, b)
    assert common(ma, mc) == common(a, c)
    # classes kept: private stays in its block, multicast stays multicast, public stays public
    for addr, net in (("10.1.2.3", "10.0.0.0/8"), ("192.168.7.1", "192.168.0.0/16"),
                      ("239.1.2.3", "224.0.0.0/4"), ("fe80::1", "fe80::/10"),
                      ("ff02::5", "ff00::/8")):
        assert ipaddress.ip_address(r.ip(_ip(addr))) in ipaddress.ip_network(net)
    for i in range(300):
        pub = ipaddress.ip_address(r.ip((0x08000000 + i * 7919).to_bytes(4, "big")))
        assert pub.is_global and not pub.is_multicast
    # a bijection on a sample
    sample = [(0xC6336400 + i).to_bytes(4, "big") for i in range(256)]
    assert len({r.ip(x) for x in sample}) == 256
    # the model's text: addresses replaced, SPIs in Wireshark filters are not addresses
    t = r.text("isakmp.ispi == 2c:d6:79:71:3e:21:25:77 && ip.addr == 198.51.100.7 [2001:db8::1]")
    assert "2c:d6:79:71:3e:21:25:77" in t and "198.51.100.7" not in t and "2001:db8::1" not in t


def _originals(path):
    """Every IP address and MAC in the capture's frames (outer headers)."""
    addrs, macs = set(), set()
    src = open_source(str(path))
    for fr in src.frames():
        data = fr[4]
        if fr[3] == 1 and len(data) >= 12:
            macs |= {data[0:6], data[6:12]}
        d = decode_frame(fr[3], data)
        if d is not None:
            addrs |= {d[1], d[2]}
    macs.discard(b"\xff" * 6)
    return addrs, macs


@pytest.mark.parametrize("name", CASES)
def test_no_original_address_in_any_output(name, tmp_path):
    path = _lab(name)
    res = run([str(path)])
    red = Redactor(KEY)
    shown = red.report(res.report)
    outs = {fmt: render(shown, fmt, lang=lang).encode()
            for fmt, lang in (("text", "en"), ("json", "en"), ("markdown", "en"), ("html", "en"),
                              ("html", "ja"), ("text", "ja"))}
    ev = tmp_path / "ev.pcapng"
    export_evidence(res, str(ev), report=res.report, redactor=red, shown=shown)
    outs["evidence"] = ev.read_bytes()
    addrs, macs = _originals(path)
    assert addrs
    idents = [i.split(" ", 2)[2] for sa in res.report.ike_sas for m in sa["messages"]
              for i in m.get("identities", ())]
    for what, blob in outs.items():
        for a in addrs:
            txt = str(ipaddress.ip_address(a)).encode()
            assert txt not in blob, (name, what, txt)
            if what == "evidence":
                assert a not in blob, (name, what, txt)
        for mac in macs:
            assert mac not in blob or what != "evidence", (name, mac.hex())
            assert ":".join(f"{x:02x}" for x in mac).encode() not in blob
        for ident in idents:
            assert ident.encode() not in blob, (what, ident)
        assert str(path).encode() not in blob and path.name.encode() not in blob
    # the pseudonyms are the same in the report and the evidence
    rows = tshark_fields(ev, ["ip.src", "ip.dst"])
    seen = {x for r in rows for x in r if x}
    assert seen <= set(red.mapping()["ip"].values())


@pytest.mark.parametrize("name", CASES)
def test_redacted_evidence_gives_the_same_diagnosis(name, tmp_path):
    res = run([str(_lab(name))])
    plain, redacted = tmp_path / "plain.pcapng", tmp_path / "red.pcapng"
    export_evidence(res, str(plain))
    red = Redactor(KEY)
    shown = red.report(res.report)
    export_evidence(res, str(redacted), report=res.report, redactor=red, shown=shown)
    a = run([str(plain)]).report
    b = run([str(redacted)]).report
    assert sorted(f.code for f in a.findings) == sorted(f.code for f in b.findings)
    assert [t["verdict"] for t in a.tunnels] == [t["verdict"] for t in b.tunnels]
    # the original's failure is still diagnosed from the evidence alone
    primary = {t["primary_code"] for t in res.report.tunnels if t["verdict"] == "failing"}
    assert primary <= {f.code for f in b.findings}


def test_checksums_stay_valid(tmp_path):
    res = run([str(_lab("ikev2_nat_4500_blocked"))])
    red = Redactor(KEY)
    ev = tmp_path / "red.pcapng"
    export_evidence(res, str(ev), redactor=red, shown=red.report(res.report))
    rows = tshark_fields(ev, ["ip.checksum.status", "udp.checksum.status"],
                         extra=["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"])
    assert rows and all(r == ["1", "1"] for r in rows), rows  # 1 = Good


def test_cli_redact_map(tmp_path):
    path = _lab("ikev1_aggressive_healthy")
    out, mp = tmp_path / "r.md", tmp_path / "map.json"
    p = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", str(path), "--format",
                        "markdown", "--redact", "--redact-map", str(mp), "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode in (0, 1), p.stderr
    m = json.loads(mp.read_text())
    assert oct(os.stat(mp).st_mode & 0o777) == "0o600"
    assert "192.0.2.2" in m["ip"] and "left.lab.example" in m["identity"]
    text = out.read_text()
    assert m["ip"]["192.0.2.2"] in text and "192.0.2.2" not in text
    p = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", str(path), "--redact-map",
                        str(mp)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "--redact" in p.stderr


def test_redaction_covers_decrypted_identities_and_certificates():
    """With --keys, decrypted IDs, certificate subjects/issuers/SANs and the addresses in every
    format are pseudonymised too (they are not in the cleartext identities list)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    scen = repo / "captures" / "lab" / "ikev2_cert_untrusted"
    secrets = ["left.lab.example", "right.lab.example", "rogue lab CA", "198.51.100.2",
               "192.0.2.2"]
    for fmt in ("json", "text", "markdown", "html"):
        out = subprocess.run(
            [sys.executable, "-m", "pcapvpn", "analyze", str(scen / "ikev2_cert_untrusted.pcap"),
             "--keys", str(scen / "keys"), "--redact", "--format", fmt],
            capture_output=True, text=True, cwd=repo, timeout=300).stdout
        assert out, fmt
        for s in secrets:
            assert s not in out, f"{s!r} leaks in --redact --format {fmt}"
    # and without --redact they are there (the test can fail)
    out = subprocess.run(
        [sys.executable, "-m", "pcapvpn", "analyze", str(scen / "ikev2_cert_untrusted.pcap"),
         "--keys", str(scen / "keys"), "--format", "json"],
        capture_output=True, text=True, cwd=repo, timeout=300).stdout
    assert "left.lab.example" in out and "rogue lab CA" in out
