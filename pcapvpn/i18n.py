"""Report languages (``--lang en|ja``): gettext message catalogs, stdlib only.

Catalogs live in ``pcapvpn/locale/<lang>/LC_MESSAGES/pcapvpn.po``.  The ``.po`` is the source of
truth and is compiled in memory when first used (a few milliseconds, so there is no ``.mo`` that
could drift from it); a ``pcapvpn.mo`` beside it that is newer than the ``.po`` is used instead
(packagers may build one with ``python -m pcapvpn.i18n`` or GNU ``msgfmt``).

What is translated, and how it is keyed:

- report headings and labels: ``msgid`` = the English text;
- each finding code's one-line title: ``msgctxt "title"``, ``msgid`` = the code (the English
  report shows the finding's own title, which carries numbers and addresses; the Japanese one
  shows the translated title and keeps those specifics in the detail);
- each code's meaning (the explanation) and advice: ``msgid`` = the English text of the registry
  (``pcapvpn.findings.REGISTRY``), so a reworded English text shows up as untranslated;
- a finding's title and detail are :class:`pcapvpn.findings.Msg`: a template and its facts.
  ``msgid`` = the English template (``{name}`` placeholders, with the same names and format
  specs in the ``msgstr``); the facts are filled in after translation (a nested message is
  translated in turn, a value stays as it is). ``tests/report/test_i18n.py`` finds every template in
  the code and fails on one without a translation or with other placeholders;
- text built with values elsewhere (advice naming a peer, ...): a ``msgid`` with ``{name}``
  placeholders is a template: the English text is matched against it and the values are carried
  over (each value itself translated when the catalog knows it, e.g. "initiator");
- a placeholder the translation writes between single quotes (``'{exc}'``) holds text that is
  not the tool's — an exception's message, zlib's or the system's words — and is shown as it is,
  quoted (a matched reason's value is then not translated in turn).

Finding codes, JSON keys and Wireshark filters are never translated; JSON output stays English.
"""

from __future__ import annotations

import ast
import gettext
import io
import re
import struct
from functools import lru_cache
from pathlib import Path

LANGS = ("en", "ja")
DOMAIN = "pcapvpn"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
_CTX = "\x04"  # gettext's msgctxt separator
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


# -- .po → .mo (a small msgfmt: msgctxt, msgid, msgstr, continued strings; no plurals) ----------

def parse_po(text: str) -> list[tuple[str | None, str, str, bool]]:
    """Entries ``(msgctxt, msgid, msgstr, fuzzy)`` of a .po file (header entry included)."""
    entries = []
    cur: dict = {}
    key = None
    fuzzy = False

    def flush():
        nonlocal cur, fuzzy
        if "msgid" in cur:
            entries.append((cur.get("msgctxt"), cur["msgid"], cur.get("msgstr", ""), fuzzy))
        cur = {}
        fuzzy = False

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                if "msgid" in cur:
                    flush()
                fuzzy = True
            continue
        m = re.match(r"(msgctxt|msgid|msgstr)\s+(\".*\")$", line)
        if m:
            kw = m.group(1)
            if kw in ("msgctxt", "msgid") and "msgstr" in cur:
                keep_fuzzy = fuzzy
                flush()
                fuzzy = keep_fuzzy
            key = kw
            cur[key] = _unquote(m.group(2), lineno)
        elif line.startswith('"') and key is not None:
            cur[key] += _unquote(line, lineno)
        else:
            raise ValueError(f"line {lineno}: cannot parse {raw!r}")
    flush()
    return entries


def _unquote(s: str, lineno: int) -> str:
    try:
        v = ast.literal_eval(s)
    except (ValueError, SyntaxError):
        raise ValueError(f"line {lineno}: bad string {s!r}") from None
    if not isinstance(v, str):
        raise ValueError(f"line {lineno}: bad string {s!r}")
    return v


def compile_po(text: str) -> bytes:
    """The GNU .mo bytes of a .po text (fuzzy and untranslated entries are left out)."""
    cat = {}
    for ctx, msgid, msgstr, fuzzy in parse_po(text):
        if (fuzzy and msgid) or not msgstr:
            continue
        key = (ctx + _CTX + msgid) if ctx is not None else msgid
        cat[key.encode()] = msgstr.encode()
    keys = sorted(cat)
    n = len(keys)
    ids = b""
    strs = b""
    offs = []
    for k in keys:
        offs.append((len(ids), len(k), len(strs), len(cat[k])))
        ids += k + b"\0"
        strs += cat[k] + b"\0"
    start_ids = 7 * 4 + 16 * n
    start_strs = start_ids + len(ids)
    out = struct.pack("<7I", 0x950412DE, 0, n, 7 * 4, 7 * 4 + 8 * n, 0, 0)
    out += b"".join(struct.pack("<2I", ln, start_ids + o) for o, ln, _s, _l in offs)
    out += b"".join(struct.pack("<2I", sl, start_strs + so) for _o, _ln, so, sl in offs)
    return out + ids + strs


@lru_cache(maxsize=None)
def translations(lang: str) -> gettext.NullTranslations:
    if lang == "en":
        return gettext.NullTranslations()
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r} (known: {', '.join(LANGS)})")
    po = po_path(lang)
    mo = po.with_suffix(".mo")
    if mo.is_file() and (not po.is_file() or mo.stat().st_mtime >= po.stat().st_mtime):
        with open(mo, "rb") as f:
            return gettext.GNUTranslations(f)
    return gettext.GNUTranslations(io.BytesIO(compile_po(po.read_text(encoding="utf-8"))))


# -- the interface the renderers use ---------------------------------------------------------

#: tests only: every value a translated message carries (a fact: an address, a name, a capture
#: string) is written between these two characters, so that a test can tell the values from the
#: words of the template (``tests/report/test_i18n_complete.py``)
MARK = ("\ue000", "\ue001")
mark_values = False
_AFTER_STOP = re.compile(r"([。、]) +")
#: a placeholder quoted in a translation: verbatim text ("デコーダ内部のエラー ({name}: '{e}')")
_QUOTED_FIELD = re.compile(r"'\{([a-z_][a-z0-9_]*)\}'")
_PURE = re.compile(r"(?:\{[a-z_][a-z0-9_]*(?::[^{}]*)?\}|[\s,;:.()/—–-])*\Z")


def close_marks(cut: str) -> str:
    """A text cut short (a clipped table cell or label) whose last value lost its closing
    :data:`MARK`: closed again, so that the test still sees a value (tests only; otherwise the
    text as it is)."""
    if MARK[0] in cut and cut.count(MARK[0]) > cut.count(MARK[1]):
        return cut + MARK[1]
    return cut


class Lang:
    """Translations for one language; English returns its input."""

    def __init__(self, lang: str = "en"):
        self.code = lang
        self.t = translations(lang)
        self._templates = None
        self._ctx_templates: dict[str, list] = {}
        self.mark = mark_values and lang != "en"

    def value(self, v):
        """A value shown as it is (an address, a name, capture text): marked in tests."""
        if self.mark and isinstance(v, str) and v:
            return f"{MARK[0]}{v}{MARK[1]}"
        return v

    def known(self, template: str) -> bool:
        """Whether the catalog has ``template`` (its translation may read the same: ``IKE SA``),
        or it is made of placeholders and punctuation only (``{a}{b}``: its parts are)."""
        return (self.english or template in getattr(self.t, "_catalog", {})
                or bool(_PURE.match(template)))

    def has_msg(self, m) -> bool:
        """Whether the message (a :class:`~pcapvpn.findings.Msg`) renders fully translated."""
        from pcapvpn.findings import Msg

        if self.english:
            return True
        if not isinstance(m, Msg):
            return not m
        if not self.known(m.template):
            return False
        return all(self.has_msg(v) for v in m.facts.values() if isinstance(v, Msg))

    def _fact(self, v):
        from enum import Enum

        from pcapvpn.findings import Msg, Term

        if isinstance(v, Msg):
            return self.msg(v)
        if isinstance(v, (Term, Enum)):
            return self.text(str(v))
        if v == ".":  # the full stop a rule appends to a sentence
            return self.t.gettext(".")
        return self.value(v)

    def fmt(self, template: str, /, **facts) -> str:
        """A sentence of a renderer: ``template`` translated, ``facts`` filled in (as a
        :class:`~pcapvpn.findings.Msg`'s)."""
        from pcapvpn.findings import Msg

        return self.msg(Msg(template, facts))

    def msg(self, m) -> str:
        """A finding's title or detail in this language: its template translated, its facts
        filled in (nested messages translated too).  A plain string or a template the catalog
        lacks falls back to :meth:`text` (matching the English against catalog templates)."""
        from pcapvpn.findings import Msg

        if self.english or not m or not isinstance(m, str):
            return m
        if not isinstance(m, Msg):
            return self.text(m)
        if not self.known(m.template):
            return self.text(str(m))
        tmpl = self.t.gettext(m.template)
        facts = {k: self._fact(v) for k, v in m.facts.items()}
        try:
            out = tmpl.format_map(facts)
        except (KeyError, IndexError, ValueError):
            return str(m)
        # English sentences joined with a space: Japanese needs none after 。 and 、
        return _AFTER_STOP.sub(r"\1", out) if self.code == "ja" else out

    @property
    def english(self) -> bool:
        return self.code == "en"

    def event_line(self, ev: dict, finding: dict, clock: str) -> str:
        """A line of ``pcapvpn live``'s text events (``live.TextEvents``: ``ev`` a "raised" or
        "resolved" event, ``finding`` its finding with the title already in this language) in
        this language; the English line is the one TextEvents writes itself."""
        from pcapvpn.findings import Term

        facts = dict(clock=clock, severity=Term(finding["severity"]), code=finding["code"],
                     tunnel=finding.get("tunnel") or "-")
        if ev["event"] == "raised":  # the title as it is (already in this language)
            return self.fmt("{clock} RAISED   {severity:<8} {code} [{tunnel}]", **facts) + \
                " " + finding["title"]
        return self.fmt("{clock} RESOLVED {severity:<8} {code} [{tunnel}] {why} (raised {raised}, "
                        "{lasted:.0f} s)", why=Term(ev.get("reason", "")),
                        raised=ev.get("raised", ""), lasted=ev.get("lasted", 0), **facts)

    def _(self, text: str) -> str:
        """A heading or label."""
        return self.t.gettext(text)

    def headers(self, names) -> list[str]:
        """Table headers."""
        return [self.t.gettext(h) for h in names]

    def upper(self, word: str) -> str:
        """A verdict or severity as a tag: ``FAILING`` in English, the translated word else."""
        return word.upper() if self.english else self.t.gettext(word)

    def has(self, text: str) -> bool:
        return self.english or self.t.gettext(text) != text

    def title(self, code: str, english: str) -> str:
        """The finding's title: English keeps the finding's own (specific) title."""
        if self.english:
            return english
        tr = self.t.pgettext("title", code)
        return tr if tr != code else english

    def finding_title(self, f) -> str:
        """A finding's own title in this language (:meth:`title_of`)."""
        return self.title_of(f.code, f.title)

    def title_of(self, code: str, title) -> str:
        """A finding's own title: its template translated; else the code's translated title with
        the English one after a colon."""
        if self.english or self.has_msg(title):
            return self.msg(title)
        t = self.title(code, title)
        return f"{t}: {title}" if t != title else title

    def has_title(self, code: str) -> bool:
        return self.english or self.t.pgettext("title", code) != code

    def text(self, english: str) -> str:
        """A meaning / advice / explanation sentence: exact entry, else a template, else as is."""
        if self.english or not english:
            return english
        tr = self.t.gettext(english)
        if tr != english:
            return tr
        return (self._template(english) or self._composed("reason", english, 0)
                or self._composed("label", english, 0) or english)

    def label(self, english: str) -> str:
        """A label the tool composes of names and words (a path message "IKE_AUTH #1 request
        fragment 2/3 (copy 2)", a log format "strongSwan charon log (syslog)"): the catalog's
        ``msgctxt "label"`` entry, exact or a template it matches, as :meth:`reason`."""
        if self.english or not english:
            return english
        return self._composed("label", english, 0) or english

    def reason(self, english: str) -> str:
        """A parser's reason for an undecodable frame or a damaged range (the English sentence of
        :class:`dissect.vpn.errors.DissectError` and the capture readers, which import nothing from
        pcapvpn): the catalog's ``msgctxt "reason"`` entry, exact or a template it matches (its
        values translated in turn: "{what} truncated" with "proposal header"); else as is."""
        if self.english or not english:
            return english
        return self._composed("reason", english, 0) or english

    def _composed(self, ctx: str, text: str, depth: int) -> str | None:
        """``text`` translated by the ``msgctxt ctx`` entries: exact, else the most specific
        template it matches with its values translated in turn; None when none matches."""
        tr = self.t.pgettext(ctx, text)
        if tr != text:
            return tr
        if depth > 3:
            return None
        templates = self._ctx_templates.get(ctx)
        if templates is None:
            templates = self._ctx_templates[ctx] = []
            cat = getattr(self.t, "_catalog", {})
            prefix = ctx + _CTX
            for key, msgstr in cat.items():
                if isinstance(key, str) and key.startswith(prefix) and "{" in key:
                    msgid = key[len(prefix):]
                    templates.append((len(_PLACEHOLDER.sub("", msgid)),
                                      _pattern(msgid, tokens=True), msgstr,
                                      frozenset(_QUOTED_FIELD.findall(msgstr))))
            # the most specific template first ("{n} bytes after the SPIs" before "{what}...")
            templates.sort(key=lambda t: -t[0])
        for _n, rx, msgstr, verbatim in templates:
            m = rx.match(text)
            if m:
                # a placeholder the translation quotes ('{exc}') holds text that is not the
                # tool's (an exception's message): shown as it is, a value
                vals = {k: self.value(v) if k in verbatim else
                        (self._composed(ctx, v, depth + 1) or v)
                        for k, v in m.groupdict().items()}
                try:
                    return _AFTER_STOP.sub(r"\1", msgstr.format(**vals))
                except (KeyError, IndexError, ValueError):
                    continue
        return None

    def _template(self, english: str) -> str | None:
        if self._templates is None:
            self._templates = []
            cat = getattr(self.t, "_catalog", {})
            for msgid, msgstr in cat.items():
                if not isinstance(msgid, str) or _CTX in msgid or "{" not in msgid:
                    continue
                if not _PLACEHOLDER.search(msgid):
                    continue
                self._templates.append((_pattern(msgid), msgstr))
            # the most specific template first ("... {zone} (--log-tz when known)" before
            # "... {zone}")
            self._templates.sort(key=lambda t: -len(_PLACEHOLDER.sub("", t[0].pattern)))
        for rx, msgstr in self._templates:
            m = rx.match(english)
            # a short or generic template ("{a} on {b}") matches any sentence: the template's own
            # words must be most of the text
            if m and len(english) - sum(len(v) for v in m.groupdict().values()) >= max(
                    12, len(english) // 2):
                vals = {k: self.t.gettext(v) for k, v in m.groupdict().items()}
                try:
                    return msgstr.format(**vals)
                except (KeyError, IndexError, ValueError):
                    return None
        return None


#: the placeholders of a parser's reason or a composed label that hold text (a nested reason, a
#: header's name, an exception's message, an exchange's name); the others hold one token (a
#: number, ``0x22``, ``P_ACK_V1``), so that "{reason}: {length} bytes ..." splits
#: "f: offset 8: bad: 108 bytes ..." after the last reason
_TEXT_FIELDS = frozenset(("reason", "what", "exc", "err", "e", "hint", "name", "where", "proto",
                          "file", "message_names", "exchange", "kind", "label", "title"))


def _pattern(msgid: str, tokens: bool = False) -> re.Pattern:
    """The regular expression matching the English text of a ``{name}`` template (``tokens``:
    a placeholder not in :data:`_TEXT_FIELDS` matches one token)."""
    pat = ""
    seen = set()
    for i, p in enumerate(_PLACEHOLDER.split(msgid)):
        if not i % 2:
            pat += re.escape(p.replace("{{", "{").replace("}}", "}"))
        elif p in seen:
            pat += f"(?P={p})"  # a value named twice is the same value
        else:
            seen.add(p)
            text = not tokens or p in _TEXT_FIELDS
            pat += f"(?P<{p}>.+?)" if text else f"(?P<{p}>[^\\s,;:()]+?)"
    return re.compile(pat + r"\Z", re.S)


def localize(report, lang: str):
    """A copy of ``report`` whose findings' titles, advice and tunnels' notes are in ``lang``
    (for the text and Markdown renderers, which print the model as it is).  The translated title
    keeps the English one, which names the exchange, peer and numbers, after a colon."""
    import copy
    import dataclasses

    tr = Lang(lang)
    if tr.english:
        return report
    r = copy.copy(report)
    out = []
    for f in report.findings:
        out.append(dataclasses.replace(
            f, title=tr.finding_title(f), detail=tr.msg(f.detail),
            advice=[tr.msg(a) for a in f.advice]))
    r.findings = out
    r.tunnels = [{**t, "not_seen": [tr.msg(n) for n in t.get("not_seen") or ()]}
                 for t in report.tunnels]
    return r


def missing(lang: str) -> list[str]:
    """What the catalog of ``lang`` lacks for the registered finding codes (title, meaning,
    every default advice): one line per gap."""
    from pcapvpn.findings import REGISTRY
    from pcapvpn.rules import load_all

    load_all()
    tr = Lang(lang)
    out = []
    for code, spec in sorted(REGISTRY.items()):
        if not tr.has_title(code):
            out.append(f"{code}: title")
        if not tr.has(spec.meaning):
            out.append(f"{code}: meaning: {spec.meaning[:60]}")
        for a in spec.advice:
            if not tr.has(a):
                out.append(f"{code}: advice: {a[:60]}")
    return out


def main(argv=None) -> int:
    """``python -m pcapvpn.i18n``: write pcapvpn.mo beside every catalog; list gaps."""
    import sys

    rc = 0
    for lang in LANGS[1:]:
        po = po_path(lang)
        po.with_suffix(".mo").write_bytes(compile_po(po.read_text(encoding="utf-8")))
        translations.cache_clear()
        gaps = missing(lang)
        for g in gaps:
            print(f"{lang}: missing {g}", file=sys.stderr)
        rc |= bool(gaps)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
