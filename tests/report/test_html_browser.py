"""The HTML report in a real browser (issue 14): Debian's headless Chromium, driven over the
DevTools protocol (docs/chromium.py), measures the page: at phone width (400 px) nothing scrolls
sideways (the verdict table included) and the ladder's labels are at least 10 px (the ladder is
laid out vertically there); at desktop width the SVG ladder's labels are too.  The screenshot in
docs/ is the phone view."""

from __future__ import annotations

import importlib.util
import io
import os
import struct

import pytest

from conftest import CAPTURES, REPO
from pcapvpn.analysis import Options, run
from pcapvpn.decrypt.keyfile import load_keys
from pcapvpn.report import render

CI = os.environ.get("CI", "").lower() == "true"
LAB = CAPTURES / "lab"

spec = importlib.util.spec_from_file_location("pcapvpn_chromium", REPO / "docs" / "chromium.py")
chromium = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chromium)

LABEL_SIZES = """(() => {
  const out = [];
  for (const el of document.querySelectorAll('.ladder-label')) {
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height) continue;  // not rendered at this width
    let px = parseFloat(getComputedStyle(el).fontSize);
    const svg = el.ownerSVGElement;
    if (svg) px *= svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
    out.push(px);
  }
  return out;
})()"""

WIDTHS = """(() => {
  const t = document.querySelector('table.verdicts');
  return {page: document.documentElement.scrollWidth, body: document.body.scrollWidth,
          inner: window.innerWidth,
          table: t ? [t.getBoundingClientRect().right, t.scrollWidth, t.clientWidth] : null};
})()"""


@pytest.fixture(scope="module")
def browser():
    if chromium.find() is None:
        msg = "chromium is not installed (Debian: apt-get install chromium; .ci/run does)"
        (pytest.fail if CI else pytest.skip)(msg)
    with chromium.Chromium() as c:
        yield c


def _pages(tmp_path):
    gen_spec = importlib.util.spec_from_file_location("bench_gen", REPO / "bench" / "gen.py")
    gen = importlib.util.module_from_spec(gen_spec)
    gen_spec.loader.exec_module(gen)
    many = tmp_path / "many.pcap"
    with open(many, "wb") as f:
        gen.generate_many_clients(f, 70)
    scen = LAB / "ikev2_cert_untrusted"
    keyed = run([str(scen / "ikev2_cert_untrusted.pcap")],
                Options(keys=load_keys([scen / "keys"]))).report
    nat = run([str(LAB / "ikev2_nat_4500_blocked" / "ikev2_nat_4500_blocked.pcap")]).report
    pages = {"many-clients": render(run([str(many)]).report, "html"),
             "nat-4500-blocked": render(nat, "html"),
             "nat-4500-blocked-ja": render(nat, "html", lang="ja"),
             "cert-untrusted-keys": render(keyed, "html")}
    out = {}
    for name, html in pages.items():
        p = tmp_path / f"{name}.html"
        p.write_text(html, encoding="utf-8")
        out[name] = p
    return out


def test_phone_width_no_sideways_scroll_and_readable_ladder(browser, tmp_path):
    for name, path in _pages(tmp_path).items():
        page = browser.open(path.as_uri(), width=400, height=800, mobile=True)
        w = page.evaluate(WIDTHS)
        assert w["page"] <= 400 and w["body"] <= 400 and w["inner"] == 400, (name, w)
        if w["table"] is not None:
            right, sw, cw = w["table"]
            assert right <= 400 and sw <= cw + 1, (name, w)
        sizes = page.evaluate(LABEL_SIZES)
        if name != "many-clients" or sizes:
            assert sizes, f"{name}: no ladder label visible at 400 px"
            assert min(sizes) >= 10, (name, min(sizes))
        shot = tmp_path / f"{name}.png"
        page.screenshot(shot, full_page=False)
        assert _png_size(shot)[0] == 400


def test_desktop_width_svg_ladder_labels(browser, tmp_path):
    path = _pages(tmp_path)["nat-4500-blocked"]
    page = browser.open(path.as_uri(), width=1000, height=900)
    assert page.evaluate("getComputedStyle(document.querySelector('svg.ladder')).display") \
        != "none"
    sizes = page.evaluate(LABEL_SIZES)
    assert sizes and min(sizes) >= 10
    assert page.evaluate(WIDTHS)["page"] <= 1000


def _png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_phone_screenshot_is_kept_in_docs():
    shot = REPO / "docs" / "report-phone.png"
    assert shot.exists(), "run: python docs/make_screenshot.py"
    assert _png_size(shot)[0] == 400
    _ = io
