"""Hostile input grows the analysis linearly (issue 20), checked by counting work, not time.

Each adversarial capture of ``bench/hostile.py`` is analysed at two sizes, n and 2n, under a
line counter (``workcount.WorkCounter``: every line of pcapvpn/dissect code executed, per
function).  Doubling the input must at most about double the work of every function that does
a noticeable share of it: a function that scans all SAs for each SA shows up four-fold.  The
big sizes (10k and 1M objects) are in ``bench/hostile_bench.py`` with their time and memory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "bench"))

import hostile  # noqa: E402
from workcount import WorkCounter, growth  # noqa: E402

from pcapvpn.analysis import run  # noqa: E402
from pcapvpn.report import render  # noqa: E402

#: a function counts when it runs at least this many lines in the bigger run
FLOOR = 3000
#: work of one function when the input doubles (2 for linear; log factors and fixed costs
#: stay well below this, a quadratic loop gives about 4)
MAX_RATIO = 2.6

CASES = [
    # (generator, n, keyword arguments): n small enough for a traced run in seconds
    ("esp_spis", 300, {}),
    ("esp_spis", 300, {"per_spi": 6}),
    ("ike_inits", 300, {}),
    ("ike_inits", 300, {"sources": "n"}),
    # 0.1 s apart: the capture outlasts response_timeout, so the unanswered requests become
    # findings and the verdict asks, for each, whether the tunnel recovered (at 1 ms apart
    # every request is still pending and the rules have nothing to judge: a scan of all SAs per
    # failure in the verdict and in the TCP-fallback look-up went unseen until 20k requests)
    ("ike_inits", 300, {"gap_us": 100_000}),
    ("cookie_inits", 200, {}),
    ("mid_session", 300, {}),
    ("v1_main_mode", 300, {}),
    ("one_sa_exchanges", 400, {}),
    ("skf", 600, {}),
    ("ike_endpoints", 300, {}),
    # first IP fragments of IKE only (a port capture filter), hundreds pending at once
    ("ike_fragment_heads", 400, {}),
    # TCP segments the snapshot length cut, each standing in for 60,000 bytes
    ("tcp_cut_segments", 300, {}),
]


def _work(tmp_path, kind, n, kw, options=None):
    path = tmp_path / f"{kind}-{n}.pcap"
    args = {k: (n if v == "n" else v) for k, v in kw.items()}
    getattr(hostile, kind)(path, n, **args)
    with WorkCounter() as w:
        res = run([str(path)], options)
        render(res.report, "json")
    return w, res


@pytest.mark.parametrize("kind,n,kw", CASES,
                         ids=[f"{k}-{n}" + "".join(f"-{a}" for a in kw) for k, n, kw in CASES])
def test_work_grows_linearly(tmp_path, kind, n, kw):
    small, _ = _work(tmp_path, kind, n, kw)
    big, res = _work(tmp_path, kind, 2 * n, kw)
    # the analysis really did something with all of it
    assert res.report.capture.frames > 0
    assert big.total <= MAX_RATIO * small.total, (small.total, big.total)
    worst = [g for g in growth(small.counts, big.counts, FLOOR) if g[3] > MAX_RATIO]
    assert not worst, "\n".join(f"{name}: {a} -> {b} lines ({r:.2f}x)" for name, a, b, r in worst)


def test_counter_sees_a_quadratic_loop():
    """The instrument itself: a function that loops over all items per item is caught."""
    import types

    src = "def quad(n):\n    t = 0\n    for i in range(n):\n        for j in range(n):\n" \
          "            t += 1\n    return t\n"
    mod = types.ModuleType("quad")
    code = compile(src, str(HERE.parents[1] / "pcapvpn" / "quad_probe.py"), "exec")
    exec(code, mod.__dict__)
    runs = []
    for n in (50, 100):
        with WorkCounter() as w:
            mod.quad(n)
        runs.append(w.counts)
    rows = growth(runs[0], runs[1], 1000)
    assert rows and rows[0][0].endswith(":quad") and rows[0][3] > 3.5
