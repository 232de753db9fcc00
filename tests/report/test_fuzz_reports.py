"""Fuzz targets, one per report format (issue 20): random strings in every string field of a
report model (findings, tunnels, IKE and ESP SAs, the capture summary, file names, warnings,
decode errors) must render with no raw control character and valid UTF-8, Markdown keeps the
structure the same model has with benign strings, HTML parses strictly with html5lib into the
same element skeleton, JSON stays valid and keeps every string.

Each target runs a bounded number of examples (``FUZZ_EXAMPLES``; CI keeps the default).  Inputs
that once broke a renderer are kept in ``tests/corpus/report_strings.json`` and replayed first by
``test_corpus``: add a failing example there (hypothesis prints it) before fixing the renderer.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
from pathlib import Path

import html5lib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile_text as hostile
from conftest import CAPTURES
from pcapvpn.analysis import Options, run
from pcapvpn.model import DecodeError
from pcapvpn.report import render

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "report_strings.json"
SETTINGS = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: fields that hold a value of a closed set the renderers look up (never capture text)
FIXED = {"severity", "stage"}
#: dicts whose keys are text (reasons, link type names); every other dict's keys are the model's
TEXT_KEYS = {"linktypes", "decode_errors_by_reason"}
#: keeps the mapped strings distinct (never drawn): equal model strings stay equal, different
#: ones stay different, so ids and references keep their meaning
SEP = "\ue000"

#: characters that have broken or could break one of the formats, drawn often
NASTY = ["\x00", "\x07", "\x08", "\t", "\n", "\r", "\x1b", "\x1b[2J", "\x1b]0;t\x07", "\x7f",
         "\x85", "\x9b", "\x9d", "\u061c", "\u200e", "\u202e", "\u2066", "\u2028", "\u2029",
         "\ufdd0", "\ufeff", "\ufffe", "\uffff", "\U0001fffe", "\udcff", "\ud800", "`", "```",
         "~~~", "|", "\\", "\\|", "#", "# ", "*", "_", "__", "[", "]", "](x)", "<", ">", "<b>",
         "</td>", "<!--", "&", "&#27;", "&lt;", "&#x9b;", "-", "- ", "+ ", "1. ", "1) ", "=",
         "---", "===", "    ", " ", "  ", "'", '"', "http://x.example", "\u00e9", "\u65e5",
         "\U0001f600", "{", "}", "%s", "{0}", "\\x1b"]


#: the characters of every format's syntax, drawn as text of their own
SYNTAX = "|`*_[]#<>&\\~-=+!()'\" .:/;\n\r\t\x1b\x9b\u202e"


def _text():
    piece = st.one_of(st.sampled_from(NASTY), st.text(st.sampled_from(SYNTAX), max_size=5),
                      st.text(st.characters(exclude_characters=SEP), max_size=6),
                      st.text(st.characters(codec="utf-8", exclude_characters=SEP,
                                            categories=["Cc", "Cf", "Zl", "Zp", "Co"]),
                              max_size=3))
    return st.lists(piece, max_size=6).map("".join)


def _walk(obj, f, key=None):
    """``obj`` with every string replaced by ``f(string)`` (in place where mutable)."""
    if isinstance(obj, str):
        return f(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for fld in dataclasses.fields(obj):
            if fld.name not in FIXED:
                object.__setattr__(obj, fld.name, _walk(getattr(obj, fld.name), f, fld.name))
        return obj
    if isinstance(obj, dict):
        if key in TEXT_KEYS:
            return {_walk(k, f): _walk(v, f) for k, v in obj.items()}
        for k in list(obj):
            if k not in FIXED:
                obj[k] = _walk(obj[k], f, k)
        return obj
    if isinstance(obj, list):
        return [_walk(v, f, key) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_walk(v, f, key) for v in obj)
    return obj


def _strings(report) -> list[str]:
    seen: dict = {}
    _walk(copy.deepcopy(report), lambda s: seen.setdefault(s, s))
    return sorted(seen)


@functools.lru_cache(maxsize=None)
def _bases(tmp: str):
    """Report models to fuzz: a lab IKEv2 capture with ESP loss (ladders, ESP tables,
    sequence gaps) and the scapy capture of tests/report/hostile_text.py with benign text (SSL-VPN, L2TP,
    PPTP, IKEv1), each with a warning, a decode error and a not-visible note added so that
    every list of text is populated."""
    import ipaddress

    out = []
    lab = run([str(next((CAPTURES / "lab" / "ikev2_esp_loss").glob("*.pcap")))]).report
    path = hostile.write_hostile(Path(tmp) / "benign.pcap", hostile.BENIGN)
    vpn = run([str(path)], Options(vpn_servers=[
        (ipaddress.ip_address(hostile.VPN_SERVER).packed, None)])).report
    for rep in (lab, vpn):
        cap = rep.capture
        cap.warnings = list(cap.warnings) + ["a warning"]
        cap.decode_errors += 1
        cap.decode_errors_by_reason = {**cap.decode_errors_by_reason, "a reason": 1}
        cap.decode_error_samples = list(cap.decode_error_samples) + [
            DecodeError(cap.files[0].name, 1, "a reason")]
        if rep.tunnels:
            rep.tunnels[0] = {**rep.tunnels[0],
                              "not_seen": list(rep.tunnels[0]["not_seen"]) + ["a note"]}
        out.append(rep)
    return out


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return _bases(str(tmp_path_factory.mktemp("fuzzbase")))


def _mapped(report, texts: list[str]):
    """Two copies of ``report``: every distinct string replaced by ``texts`` (cycled, made
    distinct) and by benign ``s<n>``."""
    order = {s: i for i, s in enumerate(_strings(report))}
    hostile_ = _walk(copy.deepcopy(report),
                     lambda s: f"{texts[order[s] % len(texts)]}{SEP}{order[s]}")
    benign = _walk(copy.deepcopy(report), lambda s: f"s{order[s]}")
    return hostile_, benign


def _html_skeleton(text: str):
    tree = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(text)
    return [(el.tag, tuple(sorted(el.keys()))) for el in tree.iter()]


# -- the checks, one per format --------------------------------------------------------------------

def check_text(h, b, texts):
    for lang in ("en", "ja"):
        out = render(h, "text", lang=lang)
        assert hostile.raw_controls(out) == [] and hostile.utf8_ok(out)
    out = render(h, "text", color=True)
    assert hostile.raw_controls(out, colours=True) == []


def check_markdown(h, b, texts):
    for lang in ("en", "ja"):
        out = render(h, "markdown", lang=lang)
        assert hostile.raw_controls(out) == [] and hostile.utf8_ok(out)
        assert hostile.md_shape(out) == hostile.md_shape(render(b, "markdown", lang=lang))


def check_html(h, b, texts):
    for lang in ("en", "ja"):
        out = render(h, "html", lang=lang)
        assert hostile.raw_controls(out) == [] and hostile.utf8_ok(out)
        assert _html_skeleton(out) == _html_skeleton(render(b, "html", lang=lang))


def check_json(h, b, texts):
    out = render(h, "json")
    assert hostile.utf8_ok(out) and out.isascii()
    doc = json.loads(out)
    want = [s for s in _strings(h) if not any(0xD800 <= ord(c) <= 0xDFFF for c in s)]
    got = set()
    _walk(doc, lambda s: got.add(s) or s)
    assert not [s for s in want if s not in got]


CHECKS = {"text": check_text, "markdown": check_markdown, "html": check_html, "json": check_json}


@pytest.mark.parametrize("fmt", list(CHECKS))
def test_fuzz_report_format(bases, fmt):
    @SETTINGS
    @given(st.sampled_from(range(len(bases))), st.lists(_text(), min_size=1, max_size=5))
    def one(which, texts):
        h, b = _mapped(bases[which], texts)
        CHECKS[fmt](h, b, texts)

    one()


def test_corpus(bases):
    """Every input kept in the corpus, through every format, on every base."""
    cases = json.loads(CORPUS.read_text(encoding="utf-8"))
    assert cases, "the corpus is empty"
    for texts in cases:
        # JSON cannot hold lone surrogates: the corpus writes them as {"surrogate": code point}
        texts = ["".join(chr(p["surrogate"]) if isinstance(p, dict) else p for p in t)
                 if isinstance(t, list) else t for t in texts]
        for base in bases:
            h, b = _mapped(base, texts)
            for fmt, check in CHECKS.items():
                check(h, b, texts)
