"""Render the HTML report of a lab failure capture and screenshot it with headless Chromium.

    python docs/make_screenshot.py            # writes docs/report-screenshot.png

Needs Debian's ``chromium`` (apt-get install chromium fonts-noto-cjk).  Re-run it when the HTML
report changes, and commit the PNG.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO / "captures/lab/ikev2_nat_4500_blocked/ikev2_nat_4500_blocked.pcap"
OUT = REPO / "docs/report-screenshot.png"


def main() -> int:
    import os

    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    from pcapvpn.analysis import run
    from pcapvpn.report import render

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium not found: apt-get install chromium fonts-noto-cjk", file=sys.stderr)
        return 2
    report = run([str(CAPTURE.relative_to(REPO))]).report
    with tempfile.TemporaryDirectory() as d:
        page = Path(d) / "report.html"
        page.write_text(render(report, "html"), encoding="utf-8")
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--window-size=900,2600",
                        f"--screenshot={OUT}", page.as_uri()],
                       check=True, capture_output=True, timeout=120, cwd=d)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
