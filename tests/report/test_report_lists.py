"""The report's lists and its JSON do per listed item what they show, not per held item (issue
20: live's stop at 20,000 SAs lists at most ``Limits.report_max_items`` of each kind).

* an ESP SA's report dict is made in one step (``model._esp_sa_dict_direct``): the same dict, key for key
  and in the same order, as ``to_dict`` walked by ``_plain`` and ``_conventions``;
* a tunnel names only the ESP SAs and child SA pairs the report lists (a big tunnel's thousands
  are counted, not written and then trimmed): the same lists and counts as before;
* ``Report.to_dict`` takes the builder's plain-dict lists as they are (no copy).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "bench"))

import hostile  # noqa: E402

from pcapvpn import model as m  # noqa: E402
from pcapvpn.analysis import Options, lists, run  # noqa: E402
from pcapvpn.limits import Limits  # noqa: E402

LAB = REPO / "captures" / "lab"
# ESP with gaps, moves, decryption (keys), rekeys, NAT, one way, several SAs
CAPTURES = ["ikev2_esp_loss", "ikev2_esp_loss_teardown", "ikev2_mobike_roam", "ikev2_nat",
            "ikev2_esp_oneway", "ikev2_healthy", "ikev1_main_healthy", "ikev2_mtu_black_hole"]


def _lab(name: str, keys: bool = False):
    from pcapvpn.decrypt.keyfile import load_keys

    d = LAB / name
    path = next(p for p in sorted(d.iterdir()) if p.name.endswith((".pcap", ".pcapng")))
    opts = Options(keys=load_keys([str(d / "keys")]) if keys and (d / "keys").exists()
                   else None)
    return path, opts


def _dumps(d) -> str:
    return json.dumps(d)  # key order kept: the JSON renderer writes the dict's order


def _all_esp(res):
    start = res.report.capture.start_ts
    names = res.state.names
    return [(sa, start, names) for sa in res.state.esp_sas]


@pytest.mark.parametrize("keys", [False, True])
@pytest.mark.parametrize("name", CAPTURES)
def test_esp_sa_report_dict_is_the_walked_dict(name, keys):
    path, opts = _lab(name, keys)
    res = run([str(path)], opts)
    sas = _all_esp(res)
    assert sas
    for sa, start, names in sas:
        assert _dumps(m._esp_sa_dict_direct(sa, start, names)) == \
            _dumps(m._esp_sa_dict_walked(sa, start, names))
    # and what the report lists is that dict
    assert [_dumps(d) for d in res.report.esp_sas] == \
        [_dumps(m._esp_sa_dict_walked(*x)) for x in sas[:len(res.report.esp_sas)]]


def test_esp_sa_report_dict_with_gaps_moves_and_odd_refs(tmp_path):
    """Gaps, resets, moves, sample and fragment refs, a frame ref of an unknown file: the same
    dict both ways."""
    path = hostile.esp_spis(tmp_path / "e.pcap", 40, per_spi=3)
    res = run([str(path)])
    for sa, start, names in _all_esp(res):
        sa.gaps.append([start + 1.5, (0, 7), 3, 9, 6])
        sa.last_gaps.append([start + 2.25, (5, 8), 11, 12, 1])  # file 5: not a file of ours
        sa.reset_events.append((start + 3.0, (0, 9), 900, 1))
        sa.moves.append((start + 4.0, (0, 10), b"\x0a\x00\x00\x09", 4500))
        sa.frag_refs.append((0, 11))
        sa.first_large_ts = start + 0.5
        assert _dumps(m._esp_sa_dict_direct(sa, start, names)) == \
            _dumps(m._esp_sa_dict_walked(sa, start, names))
        assert _dumps(m._esp_sa_dict_direct(sa, None, [])) == _dumps(m._esp_sa_dict_walked(sa, None, []))


def test_an_esp_sa_dict_walks_nothing(tmp_path, monkeypatch):
    """Counted: building the listed ESP SAs' dicts calls no generic walk (``_conventions``);
    before, each SA's dict was walked by ``_plain`` and ``_conventions``."""
    path = hostile.esp_spis(tmp_path / "e.pcap", 30)
    res = run([str(path)])
    calls = []
    real = m._conventions
    monkeypatch.setattr(m, "_conventions", lambda *a, **k: calls.append(1) or real(*a, **k))
    start = res.report.capture.start_ts
    out = [m.esp_sa_dict(sa, start, res.state.names) for sa in res.state.esp_sas]
    assert len(out) == 30 and calls == []


def _old_tunnel_lists(monkeypatch):
    """The tunnels' lists as before: every ESP SA and pair of a tunnel named, then trimmed."""
    real_dict = m.tunnel_dict
    real_trim = lists._trim_tunnels
    monkeypatch.setattr(m, "tunnel_dict", lambda t, v, s, im=None, names=None, esp=None,
                        pairs=None: real_dict(t, v, s, im, names))
    monkeypatch.setattr(lists, "_trim_tunnels", lambda rep, limit, cut=None: real_trim(rep, limit))


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 50, 1000])
def test_tunnel_lists_as_before(tmp_path, monkeypatch, limit):
    path = hostile.esp_spis(tmp_path / "e.pcap", 120, per_spi=2)
    paths = [str(path)] + [str(_lab(n)[0]) for n in ("ikev2_mobike_roam", "ikev2_nat")]
    opts = Options(limits=Limits(report_max_items=limit))
    new = [_dumps(run([p], opts).report.to_dict()) for p in paths]
    with monkeypatch.context() as mp:
        _old_tunnel_lists(mp)
        old = [_dumps(run([p], opts).report.to_dict()) for p in paths]
    assert new == old
    if limit < 120:
        doc = json.loads(new[0])
        t, = doc["tunnels"]
        assert len(t["esp_sas"]) == min(limit, len(doc["esp_sas"]))
        assert t["omitted"]["esp_sas"] == 120 - len(t["esp_sas"])


def test_a_big_tunnel_names_only_the_listed_sas(tmp_path, monkeypatch):
    """Counted: a tunnel of 400 ESP SAs in a report listing 5 writes the names of 5 of them
    (and of their pairs), not 400 then trimmed."""
    path = hostile.esp_spis(tmp_path / "e.pcap", 400, per_spi=1)
    res = run([str(path)], Options(limits=Limits(report_max_items=5)))
    t, = res.state.tunnels
    assert len(t.esp_sas) == 400
    written = []
    real = m.hexid
    monkeypatch.setattr(m, "hexid", lambda v, w: written.append(v) or real(v, w))
    report = res.report
    vmap = {v.tunnel: v for v in res.verdicts}
    from pcapvpn.rules.common import Context

    lists._build_lists(report, res.state, res.findings, vmap, report.capture.start_ts,
                       res.state.names, 5, Context(res.state))
    d, = report.tunnels
    assert len(d["esp_sas"]) == 5 and d["omitted"]["esp_sas"] == 395
    # 5 listed SAs' dicts (their SPI), 5 names, at most 2 SPIs for each of at most 5 pairs
    assert len(written) <= 5 + 5 + 10, len(written)


def test_to_dict_takes_the_built_lists_as_they_are(tmp_path):
    """Counted: the listed tunnels' and SAs' dicts are not copied (asdict's walk of them was a
    third of the JSON's time at live's stop); the document is the same."""
    path = hostile.esp_spis(tmp_path / "e.pcap", 4)
    report = run([str(path)]).report
    doc = report.to_dict()
    for key in ("tunnels", "esp_sas"):
        built = getattr(report, key)
        assert built and len(doc[key]) == len(built)
        assert all(a is b for a, b in zip(doc[key], built))
        assert doc[key] == m.asdict(built)
