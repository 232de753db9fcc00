"""Shared test helpers: where the corpus is, and tshark as the oracle."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO / "captures"
CORPUS = (REPO / ".." / "shared" / "corpus").resolve()
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")

IN_CI = os.environ.get("CI", "").lower() == "true"

# The rules run, and their findings are listed, in the order their modules registered them
# (pcapvpn.rules.RULES).  A fresh pcapvpn process registers them all at once in
# pcapvpn.rules.MODULES' order (load_all, at the first analysis); a test module that imports one
# rule module at collection (tests/hostile/test_index_equivalence.py imports the dataplane
# rules) would register that one first for the whole test session, and every in-process report
# would list its findings first: in a whole-suite run the Dask test's in-process single pass put
# ESP_SEQUENCE_GAP first where the CLI put it last.  Registered here, before any test module is
# imported, the order is the one every pcapvpn process has.
from pcapvpn.rules import load_all  # noqa: E402

load_all()


def corpus_dir() -> Path:
    """The public corpus; in CI its absence is a failure, elsewhere a skip with the reason."""
    if not CORPUS.is_dir():
        msg = f"public corpus not found at {CORPUS} (expected ../shared/corpus beside the checkout)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return CORPUS


def tshark_path() -> str:
    path = shutil.which("tshark")
    if path is None:
        msg = "tshark is not installed (apt-get install tshark): the oracle tests need it"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def capture_files(root: Path) -> list[Path]:
    files = [p for p in root.rglob("*") if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES)]
    return sorted(files)


def corpus_captures() -> list[Path]:
    """Every capture under ../shared/corpus (empty list when absent: tests then call corpus_dir())."""
    if not CORPUS.is_dir():
        return []
    return capture_files(CORPUS)


def project_captures() -> list[Path]:
    return capture_files(CAPTURES)


def tshark_fields(path: Path, fields: list[str], display_filter: str | None = None,
                  extra: list[str] | None = None, occurrence: str = "f") -> list[list[str]]:
    """Run ``tshark -T fields`` and return one list of field strings per frame."""
    cmd = [tshark_path(), "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t",
           "-E", f"occurrence={occurrence}"]
    for f in fields:
        cmd += ["-e", f]
    if display_filter:
        cmd += ["-Y", display_filter]
    cmd += extra or []
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if res.returncode not in (0, 2):  # 2: tshark read a cut-short file; what it read is valid
        raise AssertionError(f"tshark failed on {path}: {res.stderr.strip()}")
    rows = []
    for line in res.stdout.splitlines():
        cols = line.split("\t")
        cols += [""] * (len(fields) - len(cols))
        rows.append(cols)
    return rows


def lab_esp_sas(scenario: str) -> list[tuple[str, str, str]]:
    """``(source, destination, SPI)`` of every line of a lab scenario's ``keys/esp_sa`` (the
    ESP SA table the lab saved from its daemons; SPI as 8 lowercase hex digits, as reports
    write it).  SPIs are random per run: tests read them here, never from a pasted value."""
    out = []
    path = CAPTURES / "lab" / scenario / "keys" / "esp_sa"
    for row in csv.reader(path.read_text().splitlines()):
        if len(row) >= 4 and row[3].lower().startswith("0x"):
            out.append((row[1], row[2], f"{int(row[3], 16):08x}"))
    assert out, f"{path}: no ESP SA"
    return out


def rel(path: Path) -> str:
    for base in (CORPUS, REPO):
        try:
            return str(path.relative_to(base))
        except ValueError:
            pass
    return str(path)


_ANALYSED: dict = {}


def analysed(path: Path):
    """pcapvpn.analysis.run() of one capture, cached for the session (several tests read it)."""
    from pcapvpn.analysis import run

    key = str(path)
    if key not in _ANALYSED:
        _ANALYSED[key] = run([key])
    return _ANALYSED[key]


def ipsec_captures() -> list[Path]:
    """Corpus and project captures that carry IKE, ESP or AH (for the diagnosis-level tests)."""
    keep = ("zeek-spicy-ipsec", "tcpdump", "openswan", "arkime", "suricata-verify/ikev",
            "suricata-verify/eve-flow-esp", "nDPI/pcap/esp", "nDPI/pcap/ah")
    out = [p for p in corpus_captures() if any(k in str(p) for k in keep)]
    out += [p for p in project_captures() if "openvpn" not in p.name]
    return out


def bench_gen():
    """``bench/gen.py`` as a module (the generated captures: many clients, ...)."""
    import importlib.util
    import sys

    mod = sys.modules.get("bench_gen")
    if mod is None:
        spec = importlib.util.spec_from_file_location("bench_gen", REPO / "bench" / "gen.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules["bench_gen"] = mod
    return mod


#: the inflates a gzip capture can be decompressed with (pcapvpn.sources.inflater): ISA-L (the
#: ``fast`` extra, which .ci/run installs) and zlib, the fallback without it
INFLATES = ("isal", "zlib")


@pytest.fixture(params=INFLATES)
def inflate(request, monkeypatch):
    """Runs the test once with each inflate (``pcapvpn.sources.INFLATE`` set); ISA-L is skipped
    with the reason printed where the ``fast`` extra is not installed, and fails in CI."""
    from pcapvpn import sources

    if request.param == "isal":
        try:
            import isal  # noqa: F401
        except ImportError:
            if IN_CI:
                pytest.fail("isal (the fast extra) is not installed: .ci/run installs it")
            pytest.skip("isal (the fast extra, pip install -e '.[fast]') is not installed")
    monkeypatch.setattr(sources, "INFLATE", request.param)
    return request.param
