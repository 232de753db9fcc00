"""Render the HTML report of a lab failure capture and screenshot it with headless Chromium.

    python docs/make_screenshot.py     # writes docs/report-screenshot.png and docs/report-phone.png

``report-screenshot.png`` is the page at 900 px, ``report-phone.png`` at a phone's 400 px (the
verdict table as cards, the ladder laid out vertically).  Needs Debian's ``chromium`` (apt-get
install chromium fonts-noto-cjk); driven through docs/chromium.py.  Re-run it when the HTML
report changes, and commit the PNGs (tests/report/test_html_browser.py checks the phone one).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO / "captures/lab/ikev2_nat_4500_blocked/ikev2_nat_4500_blocked.pcap"
SHOTS = ((REPO / "docs/report-screenshot.png", 900), (REPO / "docs/report-phone.png", 400))


def main() -> int:
    import os

    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "docs"))
    from chromium import Chromium, find

    from pcapvpn.analysis import run
    from pcapvpn.report import render

    if find() is None:
        print("chromium not found: apt-get install chromium fonts-noto-cjk", file=sys.stderr)
        return 2
    report = run([str(CAPTURE.relative_to(REPO))]).report
    with tempfile.TemporaryDirectory() as d:
        page = Path(d) / "report.html"
        page.write_text(render(report, "html"), encoding="utf-8")
        with Chromium() as browser:
            for out, width in SHOTS:
                view = browser.open(page.as_uri(), width=width, height=900, mobile=width < 600)
                view.screenshot(out)
                print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
