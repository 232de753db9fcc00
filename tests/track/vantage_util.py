"""Helpers of the vantage tests (issue 16): copies of captures without some frames, pcapng
files with several interfaces, the check of findings' display filters against each point's
file."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from conftest import tshark_path


def without(tmp_path, src, display_filter, name, fmt=None, shift=None):
    """A copy of ``src`` without the frames ``display_filter`` selects (editcap), as if they had
    never been sent past that point; ``fmt`` an editcap output format, ``shift`` seconds added
    to every time.  Returns the path and the number of frames left out."""
    tshark = tshark_path()
    cp = subprocess.run([tshark, "-r", str(src), "-Y", display_filter, "-T", "fields", "-e",
                         "frame.number"], capture_output=True, text=True, check=True)
    nums = cp.stdout.split()
    out = tmp_path / name
    editcap = shutil.which("editcap") or pytest.fail("editcap (Wireshark) is not installed")
    opts = (["-F", fmt] if fmt else []) + (["-t", str(shift)] if shift is not None else [])
    subprocess.run([editcap, *opts, str(src), str(out), *nums], check=True, capture_output=True)
    return out, len(nums)


def box(out, files, names):
    """One pcapng file ``out`` holding the classic pcap ``files`` as interfaces ``names``
    (inside and outside of one box), merged by time."""
    from dissect.vpn.capture import PcapngWriter, open_capture

    recs = []
    for k, path in enumerate(files):
        with open(path, "rb") as f:
            r = open_capture(f)
            for ts, lt, data, wl, _off, _if in r.records():
                recs.append((ts, k, lt, bytes(data), wl))
    recs.sort(key=lambda r: (r[0], r[1]))
    with open(out, "wb") as f:
        w = PcapngWriter(f)
        ids = [w.add_interface(recs[0][2], name=n) for n in names]
        for ts, k, _lt, data, wl in recs:
            w.write_packet(ids[k], ts, data, wl)
    return out


def check_filters(findings):
    """Every filter of a several-point report is valid for tshark and shows, in each point's
    file, the evidence frames cited from it."""
    tshark = tshark_path()
    for f in findings:
        if not f.wireshark_filter:
            continue
        by_file: dict = {}
        for r in f.evidence.frames:
            by_file.setdefault(r.file, set()).add(r.frame)
        for file, frames in by_file.items():
            cp = subprocess.run([tshark, "-r", file, "-Y", f.wireshark_filter, "-T", "fields",
                                 "-e", "frame.number"], capture_output=True, text=True)
            assert cp.returncode == 0, (f.code, f.wireshark_filter, cp.stderr)
            shown = {int(x) for x in cp.stdout.split()}
            assert frames <= shown, (f.code, file, sorted(frames - shown), f.wireshark_filter)


def split_halves(src, dst1, dst2):
    """A classic pcap cut in two pieces of one capture point (first and second half)."""
    with open(src, "rb") as f:
        data = f.read()
    recs = []
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        recs.append(data[off:off + 16 + incl])
        off += 16 + incl
    half = len(recs) // 2
    for dst, part in ((dst1, recs[:half]), (dst2, recs[half:])):
        with open(dst, "wb") as f:
            f.write(data[:24] + b"".join(part))
