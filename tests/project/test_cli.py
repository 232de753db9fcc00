"""The command line: version/help, formats, -o, stdin, gzip, several files, exit statuses."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

from conftest import CAPTURES, REPO

PUBLIC = CAPTURES / "public" / "tcpdump" / "ikev2four.pcap"
LAB = CAPTURES / "lab"


def cli(*args, stdin=None, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "pcapvpn", *map(str, args)], input=stdin,
                          capture_output=True, cwd=REPO, env=e, timeout=300)


def test_version_and_help():
    from pcapvpn import __version__

    r = cli("--version")
    assert r.returncode == 0 and __version__ in r.stdout.decode()
    r = cli("--help")
    assert r.returncode == 0 and b"analyze" in r.stdout
    r = cli("analyze", "--help")
    assert r.returncode == 0 and b"--format" in r.stdout and b"--fail-on" in r.stdout


def test_missing_file_is_a_one_line_error():
    r = cli("analyze", "no-such.pcap")
    assert r.returncode == 2
    err = r.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "no-such.pcap" in err[0]
    assert b"Traceback" not in r.stderr


def test_not_a_capture(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello, this is not a capture\n")
    r = cli("analyze", p)
    assert r.returncode == 2 and b"notes.txt" in r.stderr and b"Traceback" not in r.stderr


def test_json_output_file_and_exit_status(tmp_path):
    out = tmp_path / "r.json"
    r = cli("analyze", PUBLIC, "--format", "json", "-o", out)
    doc = json.loads(out.read_text())
    assert doc["schema_version"] and doc["capture"]["frames"] == 21
    failing = any(f["severity"] in ("critical", "error") for f in doc["findings"])
    assert r.returncode == (1 if failing else 0)
    r = cli("analyze", PUBLIC, "--format", "json", "-o", out, "--fail-on", "critical")
    assert r.returncode == 0


def test_output_file_is_named_on_stderr(tmp_path):
    """-o FILE: one line on standard error naming the file, its format and what it holds
    (--export-evidence and --redact-map join that line); nothing on standard output."""
    out = tmp_path / "r.html"
    r = cli("analyze", LAB / "ikev2_esp_oneway" / "ikev2_esp_oneway.pcap", "--format", "html",
            "-o", out)
    err = r.stderr.decode().splitlines()
    assert len(err) == 1 and r.stdout == b"", err
    doc = json.loads(cli("analyze", LAB / "ikev2_esp_oneway" / "ikev2_esp_oneway.pcap",
                         "--format", "json").stdout)
    n_fail = sum(t["verdict"] == "failing" for t in doc["tunnels"])
    assert err[0].startswith(f"pcapvpn: wrote {out} (html report: ")
    assert f"{len(doc['tunnels'])} tunnel(s): {n_fail} failing" in err[0]
    assert f"{len(doc['findings'])} finding(s)" in err[0]
    ev = tmp_path / "ev.pcapng"
    r = cli("analyze", PUBLIC, "-o", tmp_path / "r.txt", "--export-evidence", ev)
    err = r.stderr.decode().splitlines()
    assert len(err) == 1 and f"{ev} (" in err[0] and "evidence frame(s)" in err[0]
    # to standard output: no such line
    r = cli("analyze", PUBLIC)
    assert r.stderr == b""


def test_markdown_and_text():
    r = cli("analyze", PUBLIC, "--format", "markdown")
    assert r.stdout.startswith(b"## pcapvpn") and b"| tunnel" in r.stdout
    r = cli("analyze", PUBLIC, env={"NO_COLOR": "1"})
    assert b"tunnel" in r.stdout and b"\x1b[" not in r.stdout


def test_stdin_and_gzip(tmp_path):
    data = PUBLIC.read_bytes()
    r = cli("analyze", "-", "--format", "json", stdin=data)
    assert json.loads(r.stdout)["capture"]["frames"] == 21
    gz = tmp_path / "c.pcap.gz"
    gz.write_bytes(gzip.compress(data))
    r = cli("analyze", gz, "--format", "json")
    doc = json.loads(r.stdout)
    assert doc["capture"]["frames"] == 21 and doc["capture"]["files"][0]["compressed"] is True
    r = cli("analyze", "-", "--format", "json", stdin=gzip.compress(data))
    assert json.loads(r.stdout)["capture"]["frames"] == 21


def test_several_files_merged(tmp_path):
    a = LAB / "ikev2_healthy" / "ikev2_healthy.pcap"
    b = LAB / "ikev2_no_proposal" / "ikev2_no_proposal.pcap"
    r = cli("analyze", a, b, "--format", "json")
    doc = json.loads(r.stdout)
    assert [f["name"] for f in doc["capture"]["files"]] == [str(a), str(b)]
    assert doc["capture"]["frames"] == sum(f["frames"] for f in doc["capture"]["files"])


def test_filters_peer_spi_min_severity():
    r = cli("analyze", PUBLIC, "--format", "json", "--peer", "203.0.113.99")
    assert json.loads(r.stdout)["tunnels"] == []
    r = cli("analyze", PUBLIC, "--format", "json", "--min-severity", "error")
    assert all(f["severity"] in ("critical", "error") for f in json.loads(r.stdout)["findings"])
    r = cli("analyze", PUBLIC, "--peer", "not-an-address")
    assert r.returncode == 2


def test_threshold_override_and_bad_threshold():
    r = cli("analyze", PUBLIC, "--format", "json", "--set", "response_timeout=99")
    assert json.loads(r.stdout)["thresholds"]["response_timeout"] == 99.0
    r = cli("analyze", PUBLIC, "--set", "no_such=1")
    assert r.returncode == 2 and b"no_such" in r.stderr


def test_expect_peer_absent():
    r = cli("analyze", PUBLIC, "--format", "json", "--expect-peer", "203.0.113.7")
    codes = [f["code"] for f in json.loads(r.stdout)["findings"]]
    assert "EXPECTED_PEER_ABSENT" in codes
    r = cli("analyze", PUBLIC, "--format", "json", "--expect-peer", "192.168.1.1")
    codes = [f["code"] for f in json.loads(r.stdout)["findings"]]
    assert "EXPECTED_PEER_ABSENT" not in codes


def test_internal_error_exit_3(tmp_path):
    # make the decoder blow up from the inside: a sitecustomize that breaks the analysis entry
    (tmp_path / "sitecustomize.py").write_text(
        "import pcapvpn.analysis as a\n"
        "def boom(*a_, **k):\n    raise RuntimeError('simulated bug')\n"
        "a.run = boom\n")
    r = cli("analyze", PUBLIC, env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 3
    assert b"internal error" in r.stderr and b"simulated bug" in r.stderr
    assert b"Traceback" not in r.stderr


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_truncated_capture_warns_and_analyses_the_rest(tmp_path, fmt):
    data = PUBLIC.read_bytes()
    p = tmp_path / "cut.pcap"
    p.write_bytes(data[:-30])
    r = cli("analyze", p, "--format", fmt)
    assert r.returncode in (0, 1)
    out = r.stdout.decode()
    assert "cut.pcap" in out and "offset" in out


def test_readme_first_example_ends_with_the_verdict():
    """The README's first example shows what the command prints: the verdict table at the top and
    the one-sentence verdict at the end (kept in step with the real output)."""
    import re

    readme = (REPO / "README.md").read_text()
    cmd = re.search(r"pcapvpn analyze (captures/\S+\.pcap)", readme)
    block = re.search(r"```text\n(.*?)\n```", readme, flags=re.S).group(1).splitlines()
    r = cli("analyze", cmd.group(1), env={"NO_COLOR": "1"})
    lines = r.stdout.decode().rstrip("\n").splitlines()
    assert r.returncode == 1
    assert block[:3] == lines[2:5]
    assert block[-1] == lines[-1] and lines[-1].startswith("Verdict: FAILING — ")


def test_analyze_ends_without_teardown_yet_complete(tmp_path):
    """The installed command ends ``analyze`` with ``os._exit`` once the report is delivered
    (pcapvpn.cli._end): the exit status is the report's, the report on standard output and in
    the file is whole, and the ``atexit`` handlers still ran."""
    mark = tmp_path / "atexit-ran"
    torn = tmp_path / "torn-down"
    out = tmp_path / "r.json"
    # a file left open with its text in the buffer: only the interpreter's teardown writes
    # it, and os._exit skips the teardown
    code = ("import atexit, sys\n"
            f"atexit.register(lambda: open({str(mark)!r}, 'w').write('yes'))\n"
            f"kept = open({str(torn)!r}, 'w')\n"
            "kept.write('yes')\n"
            "from pcapvpn.cli import main\n"
            "sys.argv = ['pcapvpn'] + sys.argv[1:]\n"
            "main()\n")
    r = subprocess.run([sys.executable, "-c", code, "analyze", str(PUBLIC), "--format", "json",
                        "-o", str(out)], capture_output=True, cwd=REPO, timeout=300)
    doc = json.loads(out.read_text())
    failing = any(f["severity"] in ("critical", "error") for f in doc["findings"])
    assert r.returncode == (1 if failing else 0) and mark.read_text() == "yes"
    assert torn.read_text() == ""  # no teardown: the process ended with os._exit
    r2 = subprocess.run([sys.executable, "-c", code, "analyze", str(PUBLIC), "--format", "json"],
                        capture_output=True, cwd=REPO, timeout=300)
    assert r2.returncode == r.returncode and json.loads(r2.stdout) == doc
    # the same through CliRunner-style callers of cli(): an ordinary SystemExit, no os._exit
    from click.testing import CliRunner

    from pcapvpn.cli import cli as group

    res = CliRunner().invoke(group, ["analyze", str(PUBLIC), "--format", "json"])
    assert res.exit_code == r.returncode and json.loads(res.output) == doc
