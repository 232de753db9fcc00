"""Issue 13 §2: one rule never loses the whole report (a rule that raises becomes RULE_ERROR and
every other rule is reported), a request retransmitted thousands of times does not crash the
retransmission-pattern hint (and costs bounded work), and every threshold refuses values that are
not positive and finite (and wrong types), in analyze and live alike."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import fields

import pytest

from conftest import CAPTURES, REPO
from synth import ike_frame, ike_sa_init, write_pcap
from pcapvpn import rules
from pcapvpn.analysis import run
from pcapvpn.findings import make
from pcapvpn.rules.common import HINT_INTERVALS, implementation_hint
from pcapvpn.thresholds import DEFAULT, INT_RANGES, Thresholds, valid_range

LAB = CAPTURES / "lab" / "ikev2_no_response" / "ikev2_no_response.pcap"


def _cli(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "pcapvpn", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env=e, timeout=300)


# -- a rule that raises ----------------------------------------------------------------------------

def _broken(ctx):
    """Yields one real finding, then fails as a buggy rule would."""
    yield make("RULE_ERROR", "not-this-one", title="placeholder", detail="kept")
    raise ZeroDivisionError("secret 5ec7e7 in the message")


@pytest.fixture
def broken_rule():
    rules.load_all()
    rules.RULES.insert(3, _broken)
    try:
        yield
    finally:
        rules.RULES.remove(_broken)


def test_a_failing_rule_becomes_rule_error(broken_rule, monkeypatch):
    monkeypatch.delenv("PCAPVPN_DEBUG", raising=False)
    with_bug = run([str(LAB)]).report
    rules.RULES.remove(_broken)
    try:
        clean = run([str(LAB)]).report
    finally:
        rules.RULES.insert(3, _broken)
    errs = [f for f in with_bug.findings if f.code == "RULE_ERROR" and f.title != "placeholder"]
    assert len(errs) == 1
    f = errs[0]
    assert (f.stage, f.severity, f.failure, f.tunnel) == ("capture", "warning", False, None)
    assert "test_rule_safety._broken" in f.detail and "ZeroDivisionError" in f.detail
    assert "test_rule_safety.py:" in f.detail  # where it was raised
    assert "5ec7e7" not in f.detail + f.title  # the message is not shown (capture data, keys)
    # every other rule's findings are there, and what the rule yielded before failing
    others = [(g.code, g.id) for g in with_bug.findings if g.code != "RULE_ERROR"]
    assert others == [(g.code, g.id) for g in clean.findings]
    assert any(g.title == "placeholder" for g in with_bug.findings)
    # and the verdicts are the ones the findings decide
    assert [t["verdict"] for t in with_bug.tunnels] == [t["verdict"] for t in clean.tunnels]


def test_rule_error_through_the_cli(tmp_path):
    """Exit status as the findings decide (RULE_ERROR is a warning, not a failure), the report in
    every format, a traceback only with PCAPVPN_DEBUG=1."""
    (tmp_path / "sitecustomize.py").write_text(
        "import pcapvpn.rules as r\n"
        "r.load_all()\n"
        "def broken_rule(ctx):\n"
        "    raise KeyError('x')\n"
        "    yield\n"
        "r.RULES.insert(0, broken_rule)\n")
    env = {"PYTHONPATH": str(tmp_path), "PCAPVPN_DEBUG": ""}
    base = _cli("analyze", LAB, "--format", "json")
    for fmt in ("text", "json", "markdown", "html"):
        r = _cli("analyze", LAB, "--format", fmt, env=env)
        assert r.returncode == base.returncode, r.stderr
        assert "RULE_ERROR" in r.stdout and "broken_rule" in r.stdout
        assert "Traceback" not in r.stdout + r.stderr
    r = _cli("analyze", LAB, "--fail-on", "warning", env=env)
    assert r.returncode == 1
    r = _cli("analyze", LAB, env={**env, "PCAPVPN_DEBUG": "1"})
    assert "Traceback" in r.stderr and "KeyError" in r.stderr and "Traceback" not in r.stdout


# -- retransmission hint ---------------------------------------------------------------------------

class _Whole(list):
    """A list whose whole length may not be walked: the hint must look at a bounded prefix."""

    def __iter__(self):
        raise AssertionError("implementation_hint read every interval")


def test_hint_on_thousands_of_intervals():
    assert implementation_hint(_Whole([1.0] * 100000)).startswith("constant 1.0 s")
    assert implementation_hint(_Whole([4.0 * 1.8 ** i for i in range(HINT_INTERVALS)]
                                      + [60.0] * 5000)).startswith("strongSwan-like")
    # thousands of doublings: no OverflowError
    assert implementation_hint([0.5 * 2.0 ** min(i, 1000) for i in range(5000)]) is not None
    assert implementation_hint([0.0] * 10) is None  # all timestamps equal: nothing to name


def test_request_sent_thousands_of_times(tmp_path):
    """A long capture of a peer that never answers: one IKE_SA_INIT every second, 3000 times
    (the hint's geometric series overflowed: exit 3, no report)."""
    ispi = bytes.fromhex("c3c3c3c3c3c3c3c3")
    msg = ike_sa_init(ispi, bytes(8), False)
    frames = [(1000.0 + i, ike_frame("192.0.2.10", "198.51.100.20", msg)) for i in range(3000)]
    p = write_pcap(tmp_path / "never.pcap", frames)
    r = _cli("analyze", p, "--format", "json")
    assert r.returncode == 1, r.stderr
    assert "IKE_NO_RESPONSE" in r.stdout and "RULE_ERROR" not in r.stdout
    assert "constant 1.0 s retransmission interval" in r.stdout


# -- thresholds ------------------------------------------------------------------------------------

BAD_VALUES = ["0", "-5", "-0", "nan", "NaN", "inf", "-inf", "1e999", "abc", "", "True", "0x10"]


@pytest.mark.parametrize("name", [f.name for f in fields(Thresholds)])
def test_every_threshold_refuses_bad_values(name):
    for v in BAD_VALUES + (["1.5", "70000000"] if name in INT_RANGES else []):
        if v == "70000000" and INT_RANGES[name][1] is None:
            continue
        with pytest.raises(ValueError) as ei:
            DEFAULT.with_overrides({name: v})
        msg = str(ei.value)
        assert "\n" not in msg and msg.startswith(f"{name}={v}: ") and valid_range(name) in msg
    good = "3" if name in INT_RANGES else "2.5"
    assert getattr(DEFAULT.with_overrides({name: good}), name) == type(getattr(DEFAULT, name))(good)
    # the dataclass itself refuses them (a Thresholds is never built with a bad value)
    for bad in (0, -1, math.nan, math.inf, "3", True, None):
        with pytest.raises(ValueError):
            Thresholds(**{name: bad})


def test_ranges_are_documented():
    for f in fields(Thresholds):
        assert valid_range(f.name)
    assert valid_range("response_timeout") == "a finite number > 0"
    assert valid_range("replay_window") == "an integer from 1 to 65536"
    from pcapvpn.rules.catalog import render as catalog

    assert "| `response_timeout` | 10.0 | a finite number > 0 |" in catalog()


@pytest.mark.parametrize("command", ["analyze", "live"])
@pytest.mark.parametrize("setting", ["response_timeout=-5", "response_timeout=nan",
                                     "dpd_timeout=inf", "replay_window=0", "large_packet=1.5",
                                     "flap_count=many", "no_such=1", "response_timeout"])
def test_cli_refuses_bad_thresholds(command, setting):
    target = [LAB] if command == "analyze" else ["-i", "lo", "--duration", "1"]
    r = _cli(command, *target, "--set", setting)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pcapvpn: error: --set {setting}"), r.stderr
    name = setting.split("=")[0]
    if "=" in setting and name != "no_such":
        assert valid_range(name) in lines[0]
    assert r.stdout == ""
