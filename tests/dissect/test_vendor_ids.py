"""dissect.vpn.vendor_ids: the table is verifiable (MD5 entries recompute), lookups handle
prefixes and versions, and the corpus's Vendor IDs are named consistently with tshark and with
the Zeek (zeek-spicy-ipsec) baselines -- differences are listed with their reason."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections import Counter

import pytest

from conftest import REPO, corpus_captures, corpus_dir, tshark_fields
from dissect.vpn import vendor_ids as v

# ----------------------------------------------------------------------------- the table


def test_md5_entries_recompute():
    derived = [e for e in v.VENDOR_IDS if e.string is not None]
    assert len(derived) >= 20
    for e in derived:
        s = e.string.encode() if isinstance(e.string, str) else e.string
        assert e.vid == hashlib.md5(s).digest()[: len(e.vid)], e.name


# Values written down independently of the code: RFC 3706 prints the DPD bytes, the rest are
# what the corpus captures carry (tshark 4.0 output).
KNOWN_HEX = {
    "RFC 3947 NAT-T": "4a131c81070358455c5728f20e95452f",
    "draft-ietf-ipsec-nat-t-ike-00": "4485152d18b6bbcd0be8a8469579ddcc",
    "draft-ietf-ipsec-nat-t-ike-02": "cd60464335df21f87cfdb2fc68b6a448",
    "draft-ietf-ipsec-nat-t-ike-02\\n": "90cb80913ebb696e086381b5ec427b1f",
    "draft-ietf-ipsec-nat-t-ike-03": "7d9419a65310ca6f2c179d9215529d56",
    "draft-ietf-ipsec-nat-t-ike-07": "439b59f8ba676c4c7737ae22eab8f582",
    "draft-stenberg-ipsec-nat-traversal-01": "27bab5dc01ea0760ea4e3190ac27c0d0",
    "draft-stenberg-ipsec-nat-traversal-02": "6105c422e76847e43f9684801292aecd",
    "Dead Peer Detection": "afcad71368a1f1c96b8696fc7757",
    "XAUTH": "09002689dfd6b712",
    "Cisco Unity": "12f5f28c457168a9702d9fe274cc",
    "FRAGMENTATION": "4048b7d56ebce88525e7de7f00d6c2d3",
    "strongSwan": "882fe56d6fd20dbc2251613b2ebe5beb",
    "MS NT5 ISAKMPOAKLEY": "1e2b516905991c7d7c96fcbfb587e461",
    "MS-Negotiation Discovery Capable": "fb1de3cdf341b7ea16b7e5be0855f120",
    "Microsoft Vid-Initial-Contact": "26244d38eddb61b3172a36e3d0cfb819",
    "IKE CGA version 1": "e3a5966a76379fe707228231e5ce8652",
    "Cisco Delete Reason Supported": "434953434f2d44454c4554452d524541534f4e",
    "Cisco FlexVPN Supported": "464c455856504e2d535550504f52544544",
}


@pytest.mark.parametrize("name, hexvid", sorted(KNOWN_HEX.items()))
def test_known_values(name, hexvid):
    e = v.by_name(name)
    assert e is not None, name
    assert e.hex == hexvid


def test_every_entry_has_a_source_and_a_valid_mode():
    names = [e.name for e in v.VENDOR_IDS]
    assert len(names) == len(set(names))
    for e in v.VENDOR_IDS:
        assert e.source and e.vid, e
        assert e.match in ("exact", "prefix"), e
        assert e.version in ("none", "hex", "major.minor", "ascii", "windows"), e
        assert e.match == "prefix" or e.version == "none", e
    vids = [e.vid for e in v.VENDOR_IDS]
    assert len(vids) == len(set(vids))


def test_no_pcapvpn_import():
    text = (REPO / "dissect" / "vpn" / "vendor_ids.py").read_text()
    assert "pcapvpn" not in re.sub(r'""".*?"""', "", text, flags=re.S)


# ----------------------------------------------------------------------------- lookup


MS = bytes.fromhex(KNOWN_HEX["MS NT5 ISAKMPOAKLEY"])


@pytest.mark.parametrize("number, expected", [
    (2, "Windows 2000"),
    (3, "Windows XP"),
    (4, "Windows Server 2003 / XP SP2"),
    (5, "Windows Vista"),
    (6, "Windows Server 2008"),
    (7, "Windows 7"),
    (8, "Windows Server 2008 R2"),
    (9, "Windows 8 / Server 2012 or later"),
    (10, "version 10"),
])
def test_windows_versions(number, expected):
    assert v.lookup(MS + number.to_bytes(4, "big")) == ("MS NT5 ISAKMPOAKLEY", expected)


def test_lookup_exact_prefix_and_versions():
    assert v.lookup(hashlib.md5(b"RFC 3947").digest()) == ("RFC 3947 NAT-T", None)
    assert v.lookup(bytes.fromhex("afcad71368a1f1c96b8696fc77570100")) == ("Dead Peer Detection", "1.0")
    assert v.lookup(bytes.fromhex("12f5f28c457168a9702d9fe274cc0100")) == ("Cisco Unity", "1.0")
    assert v.lookup(hashlib.md5(b"CISCO-UNITY").digest()[:14] + b"\x01\x02") == ("Cisco Unity", "1.2")
    assert v.lookup(MS) == ("MS NT5 ISAKMPOAKLEY", None)
    assert v.lookup(bytes.fromhex("4048b7d56ebce88525e7de7f00d6c2d3")) == ("FRAGMENTATION", None)
    assert v.lookup(bytes.fromhex("4048b7d56ebce88525e7de7f00d6c2d3c0000000")) == ("FRAGMENTATION", "c0000000")
    assert v.lookup(b"OE-Libreswan-4.12") == ("libreswan", "4.12")
    assert v.lookup(b"OEhyLdACecfa") == ("Openswan/FreeS/WAN", None)
    assert v.lookup(b"CISCO-DELETE-REASON") == ("Cisco Delete Reason Supported", None)
    assert v.lookup(bytearray(hashlib.md5(b"strongSwan").digest())) == ("strongSwan", None)
    # as a FortiGate and a Palo Alto firewall sent them (arkime tests/pcap/IKEv1.pcap)
    assert v.lookup(bytes.fromhex("8299031757a36082c6a621de00000000")) == ("FortiGate",
                                                                           "00000000")
    assert v.lookup(bytes.fromhex("a9b9b1034f7e50a2513b47b100bb85a9")) == \
        ("Palo Alto Networks", None)


def test_lookup_misses():
    assert v.lookup(b"") is None
    assert v.lookup(b"\x00" * 16) is None
    assert v.lookup(bytes.fromhex("afcad71368a1f1")) is None  # shorter than the DPD prefix
    assert v.lookup(hashlib.md5(b"RFC 3947").digest() + b"\x00") is None  # exact means exact
    assert v.lookup(b"OE\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09") is None  # not printable
    assert v.lookup(b"OEshort") is None  # the pluto IDs are 12 bytes
    assert v.lookup(bytes.fromhex("01528bbbc00696121849ab9a1c5b2a5100000002")) is None


def test_describe():
    assert v.describe(bytes.fromhex("12f5f28c457168a9702d9fe274cc0100")) == "Cisco Unity 1.0"
    assert v.describe(hashlib.md5(b"strongSwan").digest()) == "strongSwan"
    assert v.describe(b"\xde\xad") == "UNKNOWN:dead"


# ----------------------------------------------------------------------------- corpus vs tshark

# tshark name → our name where the two spell the same ID differently.
TSHARK_ALIASES = {
    "RFC 3947 Negotiation of NAT-Traversal in the IKE": "RFC 3947 NAT-T",
    "RFC 3706 DPD (Dead Peer Detection)": "Dead Peer Detection",
    "CISCO-UNITY": "Cisco Unity",
}
# IDs tshark names that we deliberately do not (no public specification of the bytes).
TSHARK_ONLY = {
    "Netscreen-6": "Juniper/NetScreen ID: opaque bytes, no vendor documentation found",
}


def _corpus_vid_pairs(tmp_path) -> Counter:
    """(vid hex, tshark's name) over every corpus capture.

    tshark costs ~1.3 s to start here, so the readable captures are first concatenated with
    mergecap into one pcapng and dissected in one run; captures mergecap rejects (fuzzed,
    truncated) and machines without mergecap fall back to one tshark run per file.
    """
    corpus_dir()
    caps = corpus_captures()
    mergecap = shutil.which("mergecap")
    inputs = caps
    if mergecap:
        good = [c for c in caps
                if subprocess.run([mergecap, "-w", os.devnull, str(c)], capture_output=True).returncode == 0]
        merged = tmp_path / "corpus.pcapng"
        if good and subprocess.run([mergecap, "-a", "-w", str(merged)] + [str(c) for c in good],
                                   capture_output=True).returncode == 0:
            inputs = [merged] + [c for c in caps if c not in good]
    pairs: Counter = Counter()
    for cap in inputs:
        for hexes, names in tshark_fields(cap, ["isakmp.vid_bytes", "isakmp.vid_string"],
                                          display_filter="isakmp.vid_bytes", occurrence="a"):
            for h, n in zip(hexes.split(","), names.split(",")):
                if h:
                    pairs[(h, n)] += 1
    return pairs


@pytest.mark.oracle
def test_corpus_vendor_ids_against_tshark(tmp_path):
    pairs = _corpus_vid_pairs(tmp_path)
    assert pairs, "no Vendor IDs found in the corpus"
    problems, ours_only, both_unknown = [], set(), set()
    for (h, tshark_name) in pairs:
        found = v.lookup(bytes.fromhex(h))
        ours = found[0] if found else None
        if tshark_name == "Unknown Vendor ID":
            (ours_only if ours else both_unknown).add((h, ours))
            continue
        if ours is None:
            if tshark_name not in TSHARK_ONLY:
                problems.append(f"{h}: tshark {tshark_name!r}, unknown to us")
            continue
        if TSHARK_ALIASES.get(tshark_name, tshark_name) != ours:
            problems.append(f"{h}: tshark {tshark_name!r}, ours {ours!r}")
    for h, ours in sorted(ours_only):
        print(f"we name, tshark does not: {h} -> {ours}")
    for h, _ in sorted(both_unknown):
        print(f"unknown to both: {h}")
    assert not problems, "\n".join(problems)
    # the Openswan pluto IDs are the ones we add over tshark
    assert {o for _, o in ours_only} <= {"Openswan/FreeS/WAN", "Openswan", "libreswan"}


# ----------------------------------------------------------------------------- corpus vs Zeek

ZEEK_TRACES = {
    "analyzer.basic": "ipsec_client.pcap",
    "analyzer.ikev1-a": "ikev1-certs.pcap",
    "analyzer.ikev1-b": "ipsec-ikev1-isakmp-aggressive-mode.pcap",
    "analyzer.ikev1-c": "ipsec-ikev1-isakmp-main-mode.pcap",
    "analyzer.ipsec_esp": "ipsec.cap",
}

# (Zeek's label, our name) → why they differ.
ZEEK_DISAGREEMENTS = {
    ("Windows-8", "MS NT5 ISAKMPOAKLEY"):
        "Zeek labels the ID by the Windows version only; we return it as the version field",
    ("Microsoft Initial-Contact", "Microsoft Vid-Initial-Contact"):
        "naming only: the hashed string is \"Vid-Initial-Contact\"",
    ("Openswan 2.6.32", "Openswan/FreeS/WAN"):
        "Zeek maps this build's hashed pluto ID to a version; the hash cannot be inverted",
    ("draft-ietf-ipsec-nat-t-ike-02", "draft-ietf-ipsec-nat-t-ike-02\\n"):
        "Zeek does not tell the newline variant MD5(\"...-02\\n\") from MD5(\"...-02\")",
    ("strongSwan 4.3.6", "strongSwan"):
        "the payload is MD5(\"strongSwan\"), which carries no version",
    ("Netscreen-06", None):
        "opaque Juniper/NetScreen ID: no vendor documentation of the bytes found",
}


def _zeek_vendor_rows(path):
    cols, rows = None, []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            cols = line.split("\t")[1:]
        elif not line.startswith("#") and cols:
            rec = dict(zip(cols, line.split("\t")))
            if rec["vendor_ids"] not in ("-", "(empty)"):
                rows.append(rec["vendor_ids"].split(","))
    return rows


@pytest.mark.oracle
def test_corpus_vendor_ids_against_zeek_baselines():
    root = corpus_dir() / "zeek-spicy-ipsec"
    agree, differ = 0, Counter()
    problems = []
    for baseline, trace in ZEEK_TRACES.items():
        zeek = _zeek_vendor_rows(root / "baseline" / baseline / "ipsec.log")
        ours = [[h for h in row[0].split(",") if h]
                for row in tshark_fields(root / "traces" / trace, ["isakmp.vid_bytes"],
                                         display_filter="isakmp.vid_bytes", occurrence="a")]
        assert len(zeek) == len(ours), (baseline, len(zeek), len(ours))
        for zrow, hrow in zip(zeek, ours):
            assert len(zrow) == len(hrow), (baseline, zrow, hrow)
            for zname, h in zip(zrow, hrow):
                found = v.lookup(bytes.fromhex(h))
                name = found[0] if found else None
                if zname == name or (name is None and zname == f"UNKNOWN:{h}"):
                    agree += 1
                elif (zname, name) in ZEEK_DISAGREEMENTS:
                    differ[(zname, name)] += 1
                else:
                    problems.append(f"{trace}: {h} Zeek {zname!r}, ours {name!r}")
    for key, count in sorted(differ.items(), key=str):
        print(f"Zeek {key[0]!r} vs ours {key[1]!r} x{count}: {ZEEK_DISAGREEMENTS[key]}")
    assert agree >= 30
    assert not problems, "\n".join(problems)
    # Windows 8 seen by Zeek: our version field says the same
    assert v.lookup(MS + (9).to_bytes(4, "big"))[1].startswith("Windows 8")
