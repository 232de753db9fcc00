"""--lang ja translates everything a person reads (issue 14, "Correct and complete rendering";
issue 18 item 5: findings are templates plus facts).

Two checks:

- the catalog: every message template the code builds (``msg("...")`` in ``pcapvpn/``, found by an
  AST walk) has a Japanese entry using only its placeholders and format specs (it may leave out a
  grammatical one, such as an English plural ending);
- the reports: every capture in ``captures/`` and the corpus, rendered with ``--lang ja`` as text,
  Markdown and HTML (lab captures also with their keys and with their gateway logs, a path
  scenario with its vantage points),
  holds no English prose.

English prose, precisely: two or more English words in a row (a word: letters only, lower case
or capitalised — ``the``, ``Capture``; not ``IKE``, ``NAT-T``, ``strongSwan``, ``0x1f``,
``ip.addr``), separated by single spaces, outside what is not prose in any language: the values
a message carries (addresses, names, capture strings, gateway log lines — the renderers mark them
in this test, :data:`pcapvpn.i18n.MARK`; the parser's reasons for undecodable frames and damaged
ranges, the labels of path messages and the names of log formats are translated, not marked:
``tests/report/test_i18n_reasons.py``), code (HTML ``<code>``, Markdown code spans, backquoted
commands, the text report's filter lines; of a ladder drawing in a Markdown fence, its arrows and
lifelines: the words around them are read), daemon log phrases and other verbatim text quoted in
'single quotes' (what to grep for stays verbatim), finding codes and file names.
"""

from __future__ import annotations

import ast
import re
import string
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import CAPTURES, REPO, corpus_captures, corpus_dir, project_captures
from pcapvpn import i18n
from pcapvpn.analysis import Options, run
from pcapvpn.report import render

LAB = CAPTURES / "lab"
_WORD = r"[A-Z]?[a-z]+"
#: two or more English words in a row (trailing punctuation allowed between them)
_PROSE = re.compile(rf"(?<![\w.\-/=:@'\"]){_WORD}[,;:]? {_WORD}(?![\w.\-/=@(])")
#: terms an engineer writes in English whatever the language
TERMS = ("Quick Mode", "Main Mode", "Aggressive Mode", "Informational exchange", "Mode Config",
         "Palo Alto")
#: the ladder's notation (``IKE_AUTH #1 req retx 1 964 B``): abbreviations, not words
NOTATION = re.compile(r"\b(?:req|resp|retx|dup|msg)\b")
#: a daemon's log line quoted in advice ('received NO_PROPOSAL_CHOSEN notify'): what to grep
#: for stays verbatim
_QUOTED = re.compile(r"(?<![A-Za-z])'(?:[^']|(?<=[A-Za-z])'(?=[A-Za-z])){1,300}'(?![A-Za-z])")
#: a placeholder quoted inside a quoted log phrase ('XAuth authentication of 'USER' failed')
_INNER = re.compile(r"'([A-Z]{1,20})'")
#: a command or configuration line the advice quotes as code (``ip xfrm state``)
_CODE = re.compile(r"`[^`]{1,300}`")
_MARKED = re.compile(re.escape(i18n.MARK[0]) + ".*?" + re.escape(i18n.MARK[1]), re.S)


def english_runs(text: str) -> list[str]:
    """The English prose left in ``text`` (see the module docstring)."""
    text = _QUOTED.sub(" ", _INNER.sub(r"\1", _CODE.sub(" ", NOTATION.sub(
        " ", _MARKED.sub(" ", text)))))
    for t in TERMS:
        text = text.replace(t, " ")
    return [m.group() for m in _PROSE.finditer(text)]


class _Visible(HTMLParser):
    """The text of an HTML page a reader sees, without code, scripts and styles."""

    SKIP = {"code", "script", "style", "pre"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        for k, v in attrs:
            if k in ("title", "aria-label", "alt") and v and not self.skip:
                self.out.append(v + "\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skip:
            self.skip -= 1
        self.out.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(data)


def _html_text(html: str) -> str:
    p = _Visible()
    p.feed(html)
    return "".join(p.out)


#: a ladder drawing's lines (``ladder.text``): the lifelines and arrows (``|~~ ... ~~X  |``),
#: read for the words around them
_DRAWING = re.compile(r"\|[^|\n]*\|")


def _drawings(body: str) -> str:
    """The words of a ladder drawing (a fenced ``text`` block): its header, the words after
    each arrow (what became of a message, its payloads and notifies, a log line, the NAT-T
    move) and the legend; the arrows' notation and lifelines are left out."""
    return _DRAWING.sub(" ", body.replace("-->", " ").replace("~~>", " ").replace("..>", " ")
                        .replace("--X", " ").replace("--|", " ").replace("===", " "))


def _md_text(md: str) -> str:
    md = re.sub(r"(`{3,})text\n(.*?)\n\1", lambda m: _drawings(m.group(2)), md, flags=re.S)
    return re.sub(r"(`+).*?\1", " ", md)


def _text_text(text: str) -> str:
    out = []
    for line in text.splitlines():
        if re.match(r"\s+(フィルタ|filter): ", line):
            continue
        out.append(line)
    return "\n".join(out)


def _runs(path: Path, keys: Path | None):
    from pcapvpn.decrypt.keyfile import load_keys

    return run([str(path)], Options(keys=load_keys([str(keys)])) if keys else None)


def _lab_keys(path: Path) -> Path | None:
    import json

    exp = path.parent / "expected.json"
    if not exp.is_file():
        return None
    for cap in json.loads(exp.read_text()).get("captures", []):
        if cap.get("file") == path.name and cap.get("keys"):
            return path.parent / cap["keys"]
    return None


def _vantage(name: str):
    import json

    exp = json.loads((LAB / name / "expected.json").read_text())["vantage"]
    return run([], Options(vantage=[(p["name"], [str(LAB / name / p["file"])], None)
                                    for p in exp["points"]]))


def _with_logs():
    """(name, result) of the first capture of every lab scenario that has gateway logs,
    analysed with them (``--log``)."""
    from pcapvpn.logsrc import open_logs

    for d in sorted(p for p in LAB.iterdir() if p.is_dir()):
        logs = sorted(str(p) for p in d.glob("*.log")) + \
            sorted(str(p) for p in d.glob("*-status.txt"))
        caps = sorted(p for p in d.iterdir() if p.suffix in (".pcap", ".pcapng"))
        if logs and caps:
            yield (f"{d.name} (--log)",
                   run([str(caps[0])], Options(logs=open_logs(logs, None))))


def _cases():
    caps = project_captures() + corpus_captures()
    out = [(str(p.relative_to(REPO) if p.is_relative_to(REPO) else p.name), p, None) for p in caps]
    out += [(str(p.relative_to(REPO)) + "+keys", p, k) for p in project_captures()
            for k in [_lab_keys(p)] if k]
    return out


_VALUE = re.compile(re.escape(i18n.MARK[0]) + "(.*?)" + re.escape(i18n.MARK[1]), re.S)


def _untranslated(result, name: str) -> list[str]:
    """English runs, and the tool's own words passed as a value (a fact the catalog would
    translate, shown as it is: it should be a Term or a message)."""
    found = []
    tr = i18n.translations("ja")
    for fmt, view in (("text", _text_text), ("markdown", _md_text), ("html", _html_text)):
        out = view(render(result.report, fmt, lang="ja"))
        for run_ in english_runs(out):
            found.append(f"{name} [{fmt}]: {run_}")
        for v in {m.group(1) for m in _VALUE.finditer(out)}:
            if " " in v and tr.gettext(v) != v:
                found.append(f"{name} [{fmt}]: a value the catalog translates: {v!r}")
    return found


@pytest.fixture()
def marked(monkeypatch):
    monkeypatch.setattr(i18n, "mark_values", True)


def test_detector_finds_english_and_spares_values():
    assert english_runs("IKE SA は確立 (no response)") == ["no response"]
    assert english_runs("フィルタ ip.addr == 192.0.2.1 && udp.port == 500") == []
    assert english_runs(f"{i18n.MARK[0]}moon says hello{i18n.MARK[1]} を受信") == []
    assert english_runs("ESP_ONE_WAY: NAT-T, IKE_SA_INIT, strongSwan 5.9") == []
    assert english_runs("Capture clock: 1970") == ["Capture clock"]
    assert english_runs("IKE_AUTH #1 req retx 1 964 B · 応答なし") == []
    assert english_runs("strongSwan のログ: 'giving up after N retransmits'。") == []
    assert english_runs("ログ: 'peer didn't accept key exchange method X'。") == []
    assert english_runs("`ip xfrm state` を確認") == []
    assert english_runs("'XAuth authentication of 'USER' failed' をログに出します") == []
    assert english_runs("the peer's answer") == ["the peer"]


def test_every_report_is_japanese(marked):
    corpus_dir()
    problems = []
    for name, path, keys in _cases():
        problems += _untranslated(_runs(path, keys), name)
    for scen in sorted(p.parent.name for p in LAB.glob("*/expected.json")
                       if '"vantage"' in p.read_text()):
        problems += _untranslated(_vantage(scen), scen + " (vantage)")
    for name, result in _with_logs():
        problems += _untranslated(result, name)
    assert not problems, f"{len(problems)} English run(s) in --lang ja reports:\n" + \
        "\n".join(problems[:200])


# -- the catalog -----------------------------------------------------------------------------

@lru_cache(maxsize=None)
def templates() -> list[tuple[str, int, str]]:
    """Every message the code writes for a reader, (file, line, template): ``msg("template",
    ...)`` (findings, report sentences), ``L.fmt("template", ...)`` and ``_("label")`` /
    ``L._("label")`` in pcapvpn.  A ``msg``/``fmt`` template that is not a literal string is
    reported as ``None``; a ``_()`` of a variable (a stage, a table header) is checked where the
    value is rendered."""
    out = []
    for f in sorted((REPO / "pcapvpn").rglob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else (
                fn.attr if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name)
                and fn.value.id == "L" and fn.attr in ("fmt", "_") else None)
            if name not in ("msg", "fmt", "_"):
                continue
            arg = node.args[0] if node.args else None
            tmpl = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                else None
            if tmpl is None and name == "_":
                continue
            out.append((str(f.relative_to(REPO)), node.lineno, tmpl))
    return out


def _fields(t: str) -> set[tuple[str, str]]:
    """The placeholders of a template with their format specs."""
    return {(name, spec or "") for _lit, name, spec, _conv in string.Formatter().parse(t)
            if name is not None}


def test_every_template_has_a_japanese_entry():
    tr = i18n.translations("ja")
    L = i18n.Lang("ja")
    found = templates()
    assert len(found) > 50
    bad = []
    for file, line, tmpl in found:
        if tmpl is None:
            bad.append(f"{file}:{line}: the template is not a literal string")
            continue
        ja = tr.gettext(tmpl)
        if not L.known(tmpl):
            bad.append(f"{file}:{line}: no Japanese entry for {tmpl!r}")
        elif not _fields(ja) <= _fields(tmpl) or not _fields(ja) and _fields(tmpl):
            # a language may leave out a grammatical fact (an English plural ending), never use
            # one the code does not supply, nor drop every value
            bad.append(f"{file}:{line}: placeholders differ: {tmpl!r} / {ja!r}")
    assert not bad, "\n".join(bad)


def test_facts_fill_the_japanese_template():
    from pcapvpn.findings import msg

    m = msg("{n} frame(s) could not be decoded", n=3) + msg(" (at the end of the file)")
    assert m == "3 frame(s) could not be decoded (at the end of the file)"
    assert i18n.Lang("ja").msg(m) == "3 フレームをデコードできなかった (ファイル末尾)"
    assert i18n.Lang("en").msg(m) is m


def test_live_text_events_are_japanese(marked):
    """``pcapvpn live --lang ja``: a raised event's line carries the finding's own title in
    Japanese (its facts filled in), not the English one."""
    import io

    from pcapvpn.live import TextEvents, _finding_dict

    res = _runs(next((LAB / "ikev2_nat_4500_blocked").glob("*.pcap")), None)
    out = io.StringIO()
    sink = TextEvents(out, lang="ja")
    for f in res.report.findings:
        sink.emit({"event": "raised", "ts": 0.0, "finding": _finding_dict(f)})
    text = out.getvalue()
    assert text.count("\n") == len(res.report.findings)
    for f in res.report.findings:
        assert f.code in text
    titles = [line.split("] ", 1)[1] for line in text.splitlines()]
    assert all(not english_runs(t) for t in titles), titles


def test_redacted_report_stays_translatable(marked):
    """``--redact --lang ja``: findings are redacted fact by fact, so their titles and details
    are still translated (the English text is the same as redacting the whole sentence)."""
    from pcapvpn.redact import Redactor

    res = _runs(next((LAB / "ikev2_nat").glob("*.pcap")), None)
    shown = Redactor(b"k" * 32).report(res.report)
    whole = Redactor(b"k" * 32)
    for f, g in zip(res.report.findings, shown.findings):
        assert g.title == whole.text(f.title) and g.detail == whole.text(f.detail)
    for fmt, view in (("text", _text_text), ("html", _html_text)):
        assert english_runs(view(render(shown, fmt, lang="ja"))) == []


def test_compact_report_of_many_tunnels_is_japanese(marked, tmp_path):
    """A head-end with many clients (bench/gen.py --many-clients): the compact first screen
    (gateways, grouped verdict rows, errors by code, repeated findings) is Japanese too."""
    from conftest import bench_gen

    path = tmp_path / "headend.pcap"
    with open(path, "wb") as f:
        bench_gen().generate_many_clients(f, 20)
    result = run([str(path)])
    assert len(result.report.tunnels) > 12  # the compact form
    assert _untranslated(result, "many clients") == []


def test_log_reason_advice_has_japanese():
    """The advice a gateway log's reason adds
    (:data:`pcapvpn.rules.logs.confirm.REASON_ADVICE`) is in the catalog (the reports show it
    translated)."""
    from pcapvpn.rules.logs.confirm import REASON_ADVICE

    L = i18n.Lang("ja")
    assert [a for _rx, a in REASON_ADVICE if not L.known(a)] == []


def test_ladder_rows_are_japanese(marked):
    """A ladder row's second line (payloads, notifies, identities, vendor IDs) is a message:
    the protocol's names and the capture's values stay as they are (values), the tool's own
    words ("(encrypted)") are translated; the text drawing's words (what became of a message,
    the legend) and the HTML figure, list and table read the same row in Japanese; the English
    text is the one the ladder always wrote."""
    from pcapvpn.report import html, ladder
    from pcapvpn.report.html_figures import ladder_svg

    v, w = i18n.MARK
    row = ladder.Row("msg", exchange="Main Mode", msgid=0, size=92, response=False,
                     payloads=ladder._payload_text({"payloads": ["HASH", "N"], "encrypted": True,
                                                    "version": 1}),
                     notifies=["NO_PROPOSAL_CHOSEN"], identities=["moon.example"],
                     vendor_ids=["Dead Peer Detection 1.0"], unanswered=True, frames=[7])
    english = "HASH (encrypted) N(NO_PROPOSAL_CHOSEN) ID: moon.example V: Dead Peer Detection 1.0"
    assert row.details == english
    assert i18n.Lang("en").msg(row.details) == english
    ja = i18n.Lang("ja").msg(row.details)
    assert ja == (f"{v}HASH{w} (暗号化) N({v}NO_PROPOSAL_CHOSEN{w}) ID: {v}moon.example{w} "
                  f"V: {v}Dead Peer Detection 1.0{w}")
    assert i18n.Lang("ja").msg(ladder.Row("msg", payloads=ladder._payload_text(
        {"payloads": [], "encrypted": True, "version": 1})).details) == "(暗号化)"

    lad = ladder.Ladder("ikev1:x", 1, ladder.Peer("192.0.2.1", [500]),
                        ladder.Peer("192.0.2.2", [500]), [row])
    L = i18n.Lang("ja")
    drawing = ladder.text(lad, L=L)
    assert "応答なし" in drawing and "(暗号化)" in drawing and "HASH" in drawing
    assert english_runs(_drawings(drawing)) == [], drawing
    assert "(encrypted)" in ladder.text(lad) and "NO RESPONSE" in ladder.text(lad)
    page = html._ladder_list(lad, L) + html._ladder_table(lad, L) + ladder_svg(lad, L)
    shown = _html_text(page)
    assert "(暗号化)" in shown and "(encrypted)" not in shown
    assert english_runs(shown) == [], shown


def test_live_event_lines_have_no_english_word(marked):
    """``pcapvpn live --lang ja``: the words of a raised and a resolved event's line ("RAISED",
    "(raised 12:00:01, 3 s)") are Japanese too: nothing but the values (code, tunnel, times)
    is an English word; English keeps live's own line (``Lang("en").event_line`` is that line)."""
    import io

    from pcapvpn.findings import msg
    from pcapvpn.live import RESOLVED_RECOVERED, TextEvents

    finding = {"code": "ESP_ONE_WAY", "severity": "error", "tunnel": "192.0.2.1<->192.0.2.2",
               "title": msg("ESP on SPI 0x{spi} that no IKE exchange announced",
                            spi="c0ffee01")}
    assert i18n.Lang("ja").has_msg(finding["title"])
    events = [{"event": "raised", "ts": 0.0, "finding": finding},
              {"event": "resolved", "ts": 0.0, "reason": RESOLVED_RECOVERED,
               "raised": "00:00:01", "lasted": 3.0, "finding": finding}]
    for ev in events:
        ja, en = io.StringIO(), io.StringIO()
        TextEvents(ja, lang="ja").emit(ev)
        TextEvents(en).emit(ev)
        line = ja.getvalue()
        assert "ESP_ONE_WAY" in line and "192.0.2.1<->192.0.2.2" in line
        # an English word, or live's tags (protocol names such as "IKE SA" are no words)
        words = re.findall(r"\b(?:[A-Z]?[a-z]{2,}|RAISED|RESOLVED)\b",
                           _MARKED.sub(" ", line).replace("ESP_ONE_WAY", " "))
        assert words == [], line
        clock = en.getvalue().split(" ", 1)[0]
        assert i18n.Lang("en").event_line(ev, finding, clock) + "\n" == en.getvalue()


def test_single_words_in_composed_values_are_japanese(marked):
    """Single English words the two-word check cannot see, found by reading Japanese reports:
    a peer's role in advice ("responder (198.51.100.2)"), an interface's label ("..., interface
    1"), the assumed zone of a log ("UTC (assumed)"), the time of a status file's line
    ("(status)")."""
    from pcapvpn.logsrc import open_logs

    cases = [(LAB / "ikev1_aggressive_healthy" / "ikev1_aggressive_healthy.pcap", None,
              ("responder (", "initiator (")),
             (LAB / "inner_blocked" / "inner_blocked-client.pcapng", None, ("interface 1",)),
             (LAB / "ikev1_main_healthy" / "ikev1_main_healthy.pcap",
              [str(LAB / "ikev1_main_healthy" / "left.log")], ("(assumed)",)),
             (LAB / "ikev1_aggressive_healthy" / "ikev1_aggressive_healthy.pcap",
              [str(LAB / "ikev1_aggressive_healthy" / "left-status.txt")], ("(status)",))]
    for path, logs, words in cases:
        result = run([str(path)], Options(logs=open_logs(logs, None)) if logs else None)
        en = " ".join(render(result.report, "text").split())  # lines joined again
        assert any(w in en for w in words), (path, words)
        for fmt in ("text", "markdown", "html"):
            ja = " ".join(render(result.report, fmt, lang="ja").split())
            assert [w for w in words if w in ja] == [], (path, fmt)


def test_live_status_view_is_japanese(marked):
    """``pcapvpn live --lang ja`` on a terminal: the status view's lines (capture counters,
    tunnels with their verdict and stage) are Japanese; English keeps its words."""
    import io
    from types import SimpleNamespace

    from pcapvpn.live.events import StatusView
    from pcapvpn.live.session import LiveSession

    st = {"interfaces": ["eth1"], "pps": 1234.5, "frames": 56789,
          "drops": {"ring": 0, "interface": 2}, "ike_sas": 3, "esp_sas": 4,
          "active_findings": 1, "tunnels_total": 1, "verdicts": {"failing": 1},
          "tunnels": [{"verdict": "failing", "id": "192.0.2.1<->192.0.2.2",
                       "stage_reached": "negotiation", "primary_code": "IKE_NO_RESPONSE"}]}
    lines = LiveSession.status_lines(SimpleNamespace(status=lambda _now: st), 0.0)
    shown = {}
    for lang in ("en", "ja"):
        out = io.StringIO()
        view = StatusView(out, lang=lang)
        view.lines = lines
        view.redraw()
        shown[lang] = out.getvalue()
    assert "frames  drops 0 ring 2 iface" in shown["en"] and "1 failing" in shown["en"]
    assert "   failing  192.0.2.1<->192.0.2.2" in shown["en"]
    ja = _MARKED.sub(" ", shown["ja"]).replace("IKE_NO_RESPONSE", " ")
    assert re.findall(r"\b[A-Z]?[a-z]{2,}\b", ja) == ["pcapvpn", "live", "pps"], shown["ja"]


def test_log_failure_kinds_have_japanese():
    """The kind of failure a gateway log reports, named in LOG_ONLY_FAILURE's title ("left.log
    reports no proposal"), is in the catalog (:data:`pcapvpn.rules.logs.common.FAILURE_KINDS`)."""
    from pcapvpn.rules.logs.common import FAILURE_KINDS

    L = i18n.Lang("ja")
    assert [k for k in sorted(FAILURE_KINDS) if not L.has(k.replace("_", " "))] == []
