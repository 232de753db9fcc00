"""Gzip captures decompressed by ISA-L (the ``fast`` extra) or by zlib (the fallback): the same
bytes, so the same report (pcapvpn.sources.inflater, issue 19).

Every capture of ``captures/`` and ``../shared/corpus`` is compressed with gzip and analysed once
with each inflate, as a file and on standard input; the damaged and cut-short gzip files are the
tests of tests/decode/test_sources.py and tests/scale/test_parallel_stream.py, run with both
(the ``inflate`` fixture of conftest).
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys

import pytest

from conftest import IN_CI, REPO, corpus_captures, project_captures, rel
from pcapvpn import sources
from pcapvpn.analysis import Options, run
from test_parallel import _reports


def _isal():
    try:
        from isal import isal_zlib
    except ImportError:
        if IN_CI:
            pytest.fail("isal (the fast extra) is not installed: .ci/run installs it")
        pytest.skip("isal (the fast extra, pip install -e '.[fast]') is not installed")
    return isal_zlib


class _Stdin:
    def __init__(self, data: bytes):
        self.buffer = io.BytesIO(data)


def test_the_inflate_is_chosen_by_the_switch(monkeypatch):
    """ISA-L when it is installed and not switched off; zlib when forced or missing."""
    import zlib

    isal_zlib = _isal()
    monkeypatch.setattr(sources, "INFLATE", "isal")
    assert sources.inflater() == (isal_zlib.decompressobj, isal_zlib.error)
    monkeypatch.setattr(sources, "INFLATE", "zlib")
    assert sources.inflater() == (zlib.decompressobj, zlib.error)
    monkeypatch.setattr(sources, "INFLATE", "isal")
    monkeypatch.setitem(sys.modules, "isal", None)  # not installed: import fails
    assert sources.inflater() == (zlib.decompressobj, zlib.error)


@pytest.mark.parametrize("path", project_captures() + corpus_captures(), ids=rel)
def test_every_capture_the_same_with_isal_and_zlib(path, tmp_path, monkeypatch):
    _isal()
    raw = path.read_bytes()
    gz = tmp_path / (path.name + ".gz")
    data = gzip.compress(raw, 1)
    gz.write_bytes(data)
    got = {}
    for lib in ("isal", "zlib"):
        monkeypatch.setattr(sources, "INFLATE", lib)
        got[lib, "file"] = _reports(run([str(gz)], Options()))
        monkeypatch.setattr(sys, "stdin", _Stdin(data))
        got[lib, "stdin"] = _reports(run(["-"], Options()))
    for how in ("file", "stdin"):
        assert got["isal", how][0] == got["zlib", how][0], f"{rel(path)} as a gzip {how}: JSON"
        assert got["isal", how][1] == got["zlib", how][1], f"{rel(path)} as a gzip {how}: text"


def test_cli_env_forces_zlib(tmp_path):
    """``PCAPVPN_INFLATE=zlib`` (bench/run.py's comparison) gives the report ISA-L gives."""
    _isal()
    src = REPO / "captures" / "lab" / "ikev2_nat_4500_blocked" / "ikev2_nat_4500_blocked.pcap"
    gz = tmp_path / "c.pcap.gz"
    gz.write_bytes(gzip.compress(src.read_bytes(), 6))
    out = {}
    for lib in ("isal", "zlib"):
        env = dict(os.environ, PCAPVPN_INFLATE=lib)
        code = ("import sys; from pcapvpn import sources; from pcapvpn.cli import main; "
                "print(sources.inflater()[0].__module__, file=sys.stderr); main()")
        res = subprocess.run([sys.executable, "-c", code, "analyze", str(gz), "--format", "json",
                              "--jobs", "1"], env=env, capture_output=True, timeout=120)
        assert res.returncode in (0, 1, 2), res.stderr
        out[lib] = res.stdout
        assert res.stderr.decode().splitlines()[0] == ("isal.isal_zlib" if lib == "isal" else "zlib")
    assert out["isal"] == out["zlib"] and out["isal"]


def _gunzip(data: bytes, lib: str, sizes) -> tuple:
    """What :class:`pcapvpn.sources._Gunzip` hands out of ``data`` read in pieces of ``sizes``
    (in turn), and its error up to the inflate's own words."""
    sources.INFLATE = lib
    g = sources._Gunzip(data[:2], io.BytesIO(data[2:]))
    out = []
    k = 0
    while True:
        piece = g.read(sizes[k % len(sizes)])
        k += 1
        if not piece:
            break
        out.append(piece)
    return b"".join(out), g.error and g.error.split(" (")[0]


def _damaged_gzips() -> dict:
    import random

    rng = random.Random(19)
    src = REPO / "captures" / "lab" / "ikev2_nat_4500_blocked" / "ikev2_nat_4500_blocked.pcap"
    raw = src.read_bytes() * 40 + bytes(rng.getrandbits(8) for _ in range(300_000))
    whole = gzip.compress(raw, 6)
    out = {"whole": whole, "members and padding": gzip.compress(raw[:70_000], 1) +
           gzip.compress(raw[70_000:], 9) + bytes(32) + gzip.compress(b"", 6)}
    for w in (0.05, 0.3, 0.6, 0.97):
        at = int(len(whole) * w)
        out[f"cut short at {w}"] = whole[:at]
        bad = bytearray(whole)
        bad[at:at + 64] = bytes(64)
        out[f"zeros at {w}"] = bytes(bad)
        bad = bytearray(whole)
        bad[at] ^= 0x5A
        out[f"a flipped byte at {w}"] = bytes(bad)
    out["a wrong CRC"] = whole[:-8] + bytes(4) + whole[-4:]
    out["a wrong length"] = whole[:-4] + bytes(4)
    out["a second member that is not gzip"] = whole + b"not a gzip member at all"
    return out


@pytest.mark.parametrize("sizes", [(1 << 20,), (24, 16, 1500, 65536), (7, 100_000, 1)],
                         ids=["MiB", "records", "odd"])
@pytest.mark.parametrize("name", list(_damaged_gzips()))
def test_damaged_gzip_the_same_bytes_and_error(name, sizes, monkeypatch):
    """Damaged and cut-short gzip: every byte before the damage, the same with ISA-L and zlib,
    whatever the reads' sizes (ISA-L keeps output of a call that filled its buffer inside the
    inflate, zlib leaves the input unconsumed: both are drained), and the same error, but for
    the inflate's own words in brackets."""
    _isal()
    monkeypatch.setattr(sources, "INFLATE", sources.INFLATE)  # restored after the test
    data = _damaged_gzips()[name]
    got = _gunzip(data, "zlib", sizes)
    assert _gunzip(data, "isal", sizes) == got, name
    if name in ("whole", "members and padding"):
        assert got[1] is None and len(got[0]) > 400_000
    else:
        assert got[1] is not None
