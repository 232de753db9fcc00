"""--format html: valid HTML5, self-contained, ladders that show every exchange, retransmission and
unanswered request of lab failure captures, and escaping of capture text."""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
from collections import Counter

import html5lib
import pytest

from pcapvpn.analysis import run
from pcapvpn.report import ladder as ladder_mod
from pcapvpn.report import render
from conftest import CAPTURES, lab_esp_sas, tshark_fields
import synth

LAB = CAPTURES / "lab"
FAILURES = ["ikev2_no_response", "ikev2_nat_4500_blocked", "ikev2_esp_oneway", "ikev2_rekey",
            "ikev2_auth_failed", "ikev1_aggressive_healthy"]
SVG = "{http://www.w3.org/2000/svg}"
XHTML = "{http://www.w3.org/1999/xhtml}"


def _lab(name):
    return next((LAB / name).glob("*.pcap"))


def _parse(text: str):
    """Strict HTML5 parse (raises on any parse error); the element tree."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=True).parse(text)


@pytest.fixture(scope="module", params=FAILURES)
def lab_result(request):
    return request.param, run([str(_lab(request.param))])


def test_html_is_valid_and_self_contained(lab_result):
    name, res = lab_result
    for lang in ("en", "ja"):
        text = render(res.report, "html", lang=lang)
        tree = _parse(text)
        assert tree.tag == XHTML + "html" and tree.get("lang") == lang
        # no script, no external resource of any kind
        assert not list(tree.iter(XHTML + "script"))
        assert not list(tree.iter(XHTML + "link"))
        assert not list(tree.iter(XHTML + "img"))
        for el in tree.iter():
            for attr in ("src", "href"):
                v = el.get(attr)
                assert v is None or v.startswith("#"), (name, el.tag, v)
        css = "".join(s.text or "" for s in tree.iter(XHTML + "style"))
        assert "@import" not in css and not re.search(r"url\((?!#)", css)
        assert "@media print" in css and "max-width" in css
        assert tree.find(f".//{XHTML}meta[@name='viewport']") is not None
        # every finding is there with its code, filter and advice count
        for f in res.report.findings:
            art = tree.find(f".//{XHTML}article[@id='{f.id}']")
            assert art is not None, f.code
            assert f.code in "".join(art.itertext())
            if f.wireshark_filter:
                assert f.wireshark_filter in "".join(art.itertext())
            assert len(art.findall(f".//{XHTML}ol/{XHTML}li")) == len(f.advice)


def _arrows(svg):
    """Message groups of a ladder SVG: (label text, has cross, dashed)."""
    out = []
    for g in svg.iter(SVG + "g"):
        texts = ["".join(t.itertext()) for t in g.findall(SVG + "text")]
        lines = g.findall(SVG + "line")
        if not lines or not any(" B" in t for t in texts):
            continue
        cross = any(p.get("d", "").count("M") == 2 for p in g.findall(SVG + "path"))
        dashed = any(ln.get("stroke-dasharray") == "7 4" for ln in lines)
        out.append((next(t for t in texts if " B" in t), cross, dashed))
    return out


def test_ladder_shows_every_exchange_retransmission_and_unanswered(lab_result):
    name, res = lab_result
    report = res.report
    tree = _parse(render(report, "html"))
    svgs = [s for s in tree.iter(SVG + "svg") if s.get("class") == "ladder"]
    assert len(svgs) == len(report.ike_sas)
    md = render(report, "markdown")
    for sa, svg in zip(report.ike_sas, svgs):
        arrows = _arrows(svg)
        assert len(arrows) == len(sa["messages"]), name
        byn = {m["n"]: m for m in sa["messages"]}
        for x in sa["exchanges"]:
            label = f"{x['exchange']} #{x['message_id']} "
            assert any(a[0].startswith(label) for a in arrows), (name, label)
        retx = sum(x["retransmissions"] for x in sa["exchanges"])
        assert sum(1 for a in arrows if " retx " in a[0]) == retx
        assert sum(1 for a in arrows if a[2]) == retx  # drawn dashed
        unanswered = [x for x in sa["exchanges"] if not x["answered"]]
        n_cross = sum(1 for a in arrows if a[1])
        if sa["version"] == 2:
            want = sum(1 for x in unanswered for n in x["messages"] if not byn[n]["response"])
            assert n_cross == want
        else:
            assert (n_cross > 0) == bool(unanswered)
        # the Markdown ladder draws the same
        lad = ladder_mod.layout(sa, ladder_mod.finding_marks(report.findings))
        body = ladder_mod.text(lad)
        assert body in md
        assert body.count("X  |") == n_cross
        assert body.count("~~ ") == retx
        if sa["nat"].get("floated"):
            assert "NAT-T 500 -> 4500" in body
            assert "NAT-T" in "".join(svg.itertext())


def test_lab_failures_have_the_marks_they_need():
    """The captures the issue names really exercise crosses, retransmissions and the float."""
    res = run([str(_lab("ikev2_nat_4500_blocked"))])
    sa = res.report.ike_sas[0]
    lad = ladder_mod.layout(sa, ladder_mod.finding_marks(res.report.findings))
    msgs = [r for r in lad.rows if r.kind == "msg"]
    assert sum(r.unanswered for r in msgs) == 4
    assert sum(r.copy == "retransmission" for r in msgs) == 3
    assert any(r.kind == "float" for r in lad.rows)
    assert all("NAT_T_BLOCKED" in r.codes for r in msgs if r.unanswered)
    assert msgs[0].t == 0.0 and msgs[-1].t > 9


def test_esp_timeline_marks_the_silent_direction():
    cap = _lab("ikev2_esp_oneway")
    # the run's SPIs (random per run) from the lab's SA table; which one carried ESP, from tshark
    seen = Counter(int(r[0], 16) for r in tshark_fields(cap, ["esp.spi"], "esp && !icmp"))
    sas = lab_esp_sas("ikev2_esp_oneway")
    sent = [(s, d, spi) for s, d, spi in sas if seen[int(spi, 16)]]
    silent = [(s, d, spi) for s, d, spi in sas if not seen[int(spi, 16)]]
    assert len(sent) == 1 and len(silent) == 1, (sas, seen)
    res = run([str(cap)])
    tree = _parse(render(res.report, "html"))
    tl = [s for s in tree.iter(SVG + "svg") if s.get("class") == "timeline"]
    assert len(tl) == 1
    text = "".join(tl[0].itertext())
    src, dst, spi = sent[0]
    n = seen[int(spi, 16)]
    assert re.search(rf"{re.escape(src)} → {re.escape(dst)}\s+SPI {spi}\s+{n} packets", text), text
    src, dst, spi = silent[0]
    assert re.search(rf"{re.escape(src)} → {re.escape(dst)}\s+no ESP seen in this direction",
                     text), text
    bars = [r for r in tl[0].iter(SVG + "rect") if r.find(SVG + "title") is not None
            and "packets/s" in "".join(r.find(SVG + "title").itertext())]
    assert bars


def test_esp_timeline_marks_rekeys():
    res = run([str(_lab("ikev2_rekey"))])
    tree = _parse(render(res.report, "html"))
    tl = [s for s in tree.iter(SVG + "svg") if s.get("class") == "timeline"][0]
    rekeys = [t for t in tl.iter(SVG + "text") if "".join(t.itertext()) == "rekey"]
    assert len(rekeys) >= 3
    spis = {e["spi"] for e in res.report.esp_sas}
    text = "".join(tl.itertext())
    assert all(s in text for s in spis)


# -- escaping -----------------------------------------------------------------------------------

EVIL_VID = b"<script>alert('vid')</script>"
EVIL_ID = b"<script>alert(1)</script>@x.example"


def _v1_aggressive(ispi: bytes, evil_vid: bytes, evil_id: bytes) -> bytes:
    """IKEv1 Aggressive Mode message 1 (RFC 2409 §5.4): SA, KE, Nonce, ID (FQDN), VID."""
    tr = struct.pack(">BBHBBH", 0, 0, 8 + 16, 1, 1, 0) + struct.pack(
        ">HHHHHHHH", 0x8001, 7, 0x8002, 2, 0x8003, 1, 0x8004, 14)
    prop = struct.pack(">BBHBBBB", 0, 0, 8 + len(tr), 1, 1, 0, 1) + tr
    sa = struct.pack(">II", 1, 1) + prop
    ident = struct.pack(">BBH", 2, 17, 500) + evil_id
    items = [(1, sa), (4, bytes(128)), (10, bytes(16)), (5, ident), (13, evil_vid)]
    np, body = synth.chain(*items)
    return synth.ike_header(ispi, bytes(8), np, 4, 0, 0, body, version=0x10)


def _evil_capture(tmp_path):
    ispi = bytes.fromhex("1122334455667788")
    m1 = _v1_aggressive(ispi, EVIL_VID, EVIL_ID)
    v2 = synth.ike_sa_init(bytes.fromhex("99aabbccddeeff00"), bytes(8), False,
                           extra=[(43, EVIL_VID)])
    frames = [(1000.0, synth.ike_frame("192.0.2.10", "198.51.100.20", m1)),
              (1001.0, synth.ike_frame("192.0.2.11", "198.51.100.21", v2))]
    return synth.write_pcap(tmp_path / "evil<script>.pcap", frames)


def test_capture_text_is_escaped(tmp_path):
    path = _evil_capture(tmp_path)
    res = run([str(path)])
    msgs = [m for sa in res.report.ike_sas for m in sa["messages"]]
    # the model carries the attacker-controlled text (so the test means something)
    assert any(EVIL_VID.decode() in v for m in msgs for v in m.get("vendor_ids", ()))
    assert any(EVIL_ID.decode() in i for m in msgs for i in m.get("identities", ()))
    for lang in ("en", "ja"):
        text = render(res.report, "html", lang=lang)
        assert "<script" not in text.lower()
        tree = _parse(text)
        assert not list(tree.iter(XHTML + "script"))
        alltext = "".join(tree.itertext())
        assert EVIL_VID.decode() in alltext and EVIL_ID.decode() in alltext
        assert "evil<script>.pcap" in alltext
        # SVG titles and texts hold it as text, never as elements
        assert not [el for el in tree.iter() if "script" in str(el.tag).lower()]
    md = render(res.report, "markdown")
    outside = re.sub(r"(`{3,})text\n.*?\n\1", "", md, flags=re.S)
    assert "<script" not in outside


def test_markdown_fence_cannot_be_closed_by_capture_text(tmp_path):
    ispi = bytes.fromhex("0102030405060708")
    m1 = _v1_aggressive(ispi, b"```\n<b>x</b>", b"a````b\n@x")
    path = synth.write_pcap(tmp_path / "fence.pcap",
                            [(5.0, synth.ike_frame("192.0.2.1", "198.51.100.1", m1))])
    md = render(run([str(path)]).report, "markdown")
    m = re.search(r"\n(`{3,})text\n(.*?)\n\1\n", md, flags=re.S)
    assert m and len(m.group(1)) >= 5
    assert "````" in m.group(2)  # the identity is in the block, the fence is longer
    assert max(len(r) for r in re.findall(r"`+", m.group(2))) < len(m.group(1))
    assert all("\n" not in line for line in m.group(2).split("\n"))


def test_svg_is_well_formed_xml(lab_result):
    """Each inline SVG is also well-formed XML (so it can be cut out and opened on its own)."""
    _name, res = lab_result
    text = render(res.report, "html")
    for svg in re.findall(r"<svg .*?</svg>", text, flags=re.S):
        ET.fromstring(svg)
