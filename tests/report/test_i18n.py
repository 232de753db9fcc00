"""--lang ja: every finding code has a Japanese title, meaning and advice in the catalog; the
catalog compiles like GNU msgfmt; codes, filters and JSON stay English."""

from __future__ import annotations

import gettext
import json
import shutil
import subprocess

import pytest

from conftest import CAPTURES
from pcapvpn import i18n
from pcapvpn.analysis import run
from pcapvpn.report import render


def test_every_finding_code_is_translated():
    gaps = i18n.missing("ja")
    assert gaps == [], "untranslated (edit pcapvpn/locale/ja/LC_MESSAGES/pcapvpn.po):\n" + \
        "\n".join(gaps)


def test_catalog_compiles_like_msgfmt(tmp_path):
    po = i18n.po_path("ja")
    ours = gettext.GNUTranslations(__import__("io").BytesIO(i18n.compile_po(po.read_text("utf-8"))))
    assert ours.pgettext("title", "IKE_NO_RESPONSE") != "IKE_NO_RESPONSE"
    msgfmt = shutil.which("msgfmt")
    if msgfmt is None:
        pytest.skip("GNU msgfmt not installed (apt-get install gettext): cross-check skipped")
    mo = tmp_path / "x.mo"
    subprocess.run([msgfmt, "-c", "-o", str(mo), str(po)], check=True, capture_output=True)
    with open(mo, "rb") as f:
        theirs = gettext.GNUTranslations(f)
    assert ours._catalog == theirs._catalog


def test_japanese_report_keeps_codes_and_filters():
    res = run([str(next((CAPTURES / "lab" / "ikev2_nat_4500_blocked").glob("*.pcap")))])
    html = render(res.report, "html", lang="ja")
    text = render(res.report, "text", lang="ja")
    md = render(res.report, "markdown", lang="ja")
    L = i18n.Lang("ja")
    for f in res.report.findings:
        for out in (html, text, md):
            assert f.code in out
        assert L.finding_title(f) in text
        assert (L.msg(f.title) if L.has_msg(f.title) else L.title(f.code, f.title)) in html
        assert f.wireshark_filter.replace("&", "&amp;") in html
        assert f.wireshark_filter in text and f.wireshark_filter in md
    assert "トンネルごとの判定" in html and 'lang="ja"' in html
    assert "UDP 4500 を双方向に許可" in text
    # JSON stays English whatever the language
    assert render(res.report, "json", lang="ja") == render(res.report, "json")
    assert all(ord(c) < 0x3000 for c in json.dumps(res.report.to_dict(), ensure_ascii=False))


def test_templates_carry_values():
    L = i18n.Lang("ja")
    s = ("strongSwan on the initiator (192.0.2.1) logs 'local host is behind NAT, sending keep "
         "alives'; on the responder (198.51.100.1) 'remote host is behind NAT'.")
    t = L.text(s)
    assert t != s and "192.0.2.1" in t and "198.51.100.1" in t and "イニシエータ" in t
    assert L.text("no such sentence") == "no such sentence"
    assert i18n.Lang("en").text(s) == s

