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
``tests/test_i18n_reasons.py``), code (HTML ``<code>``, Markdown code spans and fences,
backquoted commands, the text report's filter lines and ladders), daemon log phrases quoted in
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


def _md_text(md: str) -> str:
    md = re.sub(r"(`{3,})text\n.*?\n\1", " ", md, flags=re.S)  # ladders: drawings
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
