"""--lang ja: the command's own lines on standard error are Japanese too (issue 14, "Correct and
complete rendering"): the ``-o FILE`` line naming what was written, the damaged-capture
warnings, the one-line errors of exit status 2 and the report of an internal error (exit 3),
whose exception text is shown as it is, quoted.  English stays as it was."""

from __future__ import annotations

import gzip

from test_cli import LAB, cli
from test_i18n_complete import english_runs


def _lines(r) -> list[str]:
    return r.stderr.decode().splitlines()


def _damaged_gz(tmp_path):
    src = LAB / "ikev2_esp_oneway" / "ikev2_esp_oneway.pcap"
    data = gzip.compress(src.read_bytes())
    p = tmp_path / "cut.pcap.gz"
    p.write_bytes(data[:len(data) * 2 // 3])  # the gzip stream ends early: damage at the end
    return p


def test_output_and_warning_lines_are_japanese(tmp_path):
    cap = _damaged_gz(tmp_path)
    out = tmp_path / "r.html"
    ev = tmp_path / "ev.pcapng"
    r = cli("analyze", cap, "--format", "html", "-o", out, "--export-evidence", ev,
            "--lang", "ja")
    err = _lines(r)
    assert err and r.stdout == b""
    assert any(line.startswith("pcapvpn: 警告: ") for line in err), err
    assert err[-1].startswith(f"pcapvpn: 書き出しました: {out} (html レポート: "), err
    assert "証拠フレーム" in err[-1]
    assert [line for line in err if english_runs(line)] == []
    # English: the lines it always wrote
    r = cli("analyze", cap, "--format", "html", "-o", out, "--export-evidence", ev)
    err = _lines(r)
    assert err[0].startswith("pcapvpn: warning: DAMAGED CAPTURE: ")
    assert any("gzip: gzip data ends before its end-of-stream marker" in line for line in err)
    assert err[-1].startswith(f"pcapvpn: wrote {out} (html report: 1 tunnel(s): ")
    assert f"; {ev} (" in err[-1] and "evidence frame(s))" in err[-1]


def test_errors_are_japanese(tmp_path):
    missing = tmp_path / "missing.pcap"
    r = cli("analyze", missing, "--lang", "ja")
    assert r.returncode == 2
    assert _lines(r) == [f"pcapvpn: エラー: {missing}: そのようなファイルやディレクトリはない"]
    r = cli("analyze", missing)
    assert _lines(r) == [f"pcapvpn: error: {missing}: no such file or directory"]
    # the inputs beside the capture: a key file, a log, a log's time zone
    cap = LAB / "ikev2_healthy" / "ikev2_healthy.pcap"
    for extra in (("--keys", missing), ("--log", missing),
                  ("--log", LAB / "ikev2_healthy" / "left.log", "--log-tz", "Foo/Bar")):
        r = cli("analyze", cap, *extra, "--lang", "ja")
        err = _lines(r)
        assert r.returncode == 2 and len(err) == 1 and err[0].startswith("pcapvpn: エラー: ")
        assert english_runs(err[0]) == [], err
        assert cli("analyze", cap, *extra).stderr.decode().startswith("pcapvpn: error: ")


def test_internal_error_is_japanese_with_the_exception_quoted(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(
        "import pcapvpn.analysis as a\n"
        "def boom(*a_, **k):\n    raise RuntimeError('simulated bug in the decoder')\n"
        "a.run = boom\n")
    env = {"PYTHONPATH": str(tmp_path)}
    pub = LAB / "ikev2_healthy" / "ikev2_healthy.pcap"
    r = cli("analyze", pub, "--lang", "ja", env=env)
    assert r.returncode == 3
    err = _lines(r)
    assert err[0] == "pcapvpn: 内部エラー: RuntimeError: 'simulated bug in the decoder'"
    assert err[1].startswith("  発生箇所: ") and "boom" in err[1]
    assert "バグ" in err[2]
    assert [line for line in err if english_runs(line)] == []
    r = cli("analyze", pub, env=env)
    err = _lines(r)
    assert err[0] == "pcapvpn: internal error: RuntimeError: simulated bug in the decoder"
    assert err[1].startswith("  at ") and err[1].endswith(" in boom")
    assert err[2].startswith("  This is a bug in pcapvpn.")


def test_usage_errors_are_japanese():
    """A usage error (exit 2): click's usage line and help hint and the command's own message
    in Japanese; the usage line's names and the options as they are."""
    r = cli("analyze", "--lang", "ja")
    assert r.returncode == 2
    err = [line for line in _lines(r) if line]
    assert err == ["使い方: pcapvpn analyze [OPTIONS] FILE...",
                   "'pcapvpn analyze --help' でヘルプを表示します。",
                   "エラー: キャプチャファイルがない (FILE... または --vantage NAME=FILE)"]
    r = cli("live", "--lang", "ja", "-i", "lo", "--export-evidence", "x.pcapng")
    said = [line for line in _lines(r) if line.startswith("エラー: ")]
    assert r.returncode == 2 and len(said) == 1 and english_runs(said[0]) == [], said
    r = cli("analyze")
    assert [line for line in _lines(r) if line] == [
        "Usage: pcapvpn analyze [OPTIONS] FILE...", "Try 'pcapvpn analyze --help' for help.",
        "Error: missing capture files (FILE... or --vantage NAME=FILE)"]


def test_live_errors_are_japanese():
    """``pcapvpn live --lang ja`` that cannot capture says why in Japanese (the interface's
    name and the ones there as they are)."""
    r = cli("live", "-i", "nonexist0", "--duration", "1", "--lang", "ja")
    assert r.returncode == 2
    err = _lines(r)
    assert len(err) == 1 and err[0].startswith("pcapvpn: エラー: インタフェース 'nonexist0' は"), err
    assert english_runs(err[0]) == []
    r = cli("live", "-i", "nonexist0", "--duration", "1")
    assert _lines(r)[0].startswith("pcapvpn: error: interface 'nonexist0' does not exist")
