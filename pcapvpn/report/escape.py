"""Text from a capture made safe to show: one function for every output that a person reads.

Strings that come from the wire (TLS SNI and certificate names, L2TP and PPTP host names and
messages, IKE identities and vendor IDs) and file names reach the reader's terminal, a ticket and a
browser.  :func:`printable` writes every character that would act instead of being read as a
visible escape, so that a capture can neither move the cursor, clear the screen, set the window
title, colour the text, start a new line, reverse the reading order, nor leave invalid UTF-8:

- C0 controls (newline and tab included), DEL and the C1 controls (U+0080..U+009F, U+009B is a
  terminal's CSI) → ``\\x1b``, ``\\x0a``, ``\\x9b``;
- bidirectional controls (U+061C, U+200E/F, U+202A..U+202E, U+2066..U+2069) and the line and
  paragraph separators (U+2028/9) → ``\\u202e``;
- Unicode noncharacters (U+FDD0..U+FDEF, U+xFFFE/F: parse errors in HTML) → ``\\ufffe``;
- a byte of a file name that is not UTF-8 (Python hands it over as a lone surrogate U+DC80..U+DCFF,
  PEP 383) → ``\\xff``, the byte itself; any other lone surrogate → ``\\udxxx``.

Every renderer applies it to each value it inserts (text, Markdown and HTML add their own syntax
escaping on top); the tool's own colours are added after it.  JSON escapes control characters
itself; :func:`json_safe` gives its strings the same ``\\xNN`` for the bytes of a file name that are
not UTF-8, so the document is valid UTF-8 (and valid for strict JSON parsers) and the name reads
the same as in the other formats.  A backslash is left as it is: the notation is for reading, not
for parsing back.
"""

from __future__ import annotations

import html as _html
import re

_NONCHARS = "".join(f"\\U{p << 16 | 0xFFFE:08x}\\U{p << 16 | 0xFFFF:08x}" for p in range(1, 17))
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
    r"\ufdd0-\ufdef\ufffe\uffff" + _NONCHARS + "]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _visible(m: re.Match) -> str:
    c = ord(m.group())
    if c < 0x100:
        return f"\\x{c:02x}"
    if 0xDC80 <= c <= 0xDCFF:  # surrogateescape: the byte that was not UTF-8
        return f"\\x{c - 0xDC00:02x}"
    if c <= 0xFFFF:
        return f"\\u{c:04x}"
    return f"\\U{c:08x}"


def printable(s) -> str:
    """``s`` as one line of text that only shows: see the module docstring for what is escaped
    and how."""
    s = str(s)
    if s.isascii() and s.isprintable():  # the usual case: nothing to do
        return s
    return _UNSAFE.sub(_visible, s)


def one_line(s, limit: int = 4000) -> str:
    """:func:`printable`, clipped to ``limit`` characters (an ellipsis marks the cut)."""
    s = printable(s)
    return s if len(s) <= limit else s[:limit - 1] + "…"


def json_safe(obj):
    """A copy of a JSON-able value whose strings hold no lone surrogate (the bytes of a file name
    that are not UTF-8 become ``\\xNN``, as :func:`printable` writes them)."""
    if isinstance(obj, str):
        return _SURROGATE.sub(_visible, obj) if _SURROGATE.search(obj) else obj
    if isinstance(obj, dict):
        return {json_safe(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def esc(s) -> str:
    """Escape any value for HTML text and attribute values (quotes included), its control
    characters, bidirectional controls, noncharacters and non-UTF-8 bytes of file names made
    visible first (:func:`pcapvpn.report.escape.printable`): the page is valid UTF-8 and holds
    no character HTML calls a parse error."""
    return _html.escape("" if s is None else printable(s), quote=True)
