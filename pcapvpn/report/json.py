"""``--format json``: the model as JSON (schema in docs/schema.json).

Control characters in capture text are JSON escapes (``\\u001b``); a file name that is not UTF-8
has each such byte written as the four characters ``\\xNN``
(:func:`pcapvpn.report.escape.json_safe`), so the document is always valid UTF-8 and valid for
strict parsers.

Layout: one line per top-level field, and one line per element of a top-level list (a finding,
a tunnel, an SA ...), each written by the json module's C encoder.  ``json.dumps(indent=2)``
goes through the pure-Python encoder, about 3x slower: on a report of thousands of SAs (live's
stop, issue 20) that was a third of a second.  The document's content is the same; only the
whitespace inside an element differs (none of the tests, the schema or the docs rely on it)."""

from __future__ import annotations

import json

from pcapvpn.report.escape import json_safe

_encode = json.JSONEncoder().encode  # no indent: the C encoder


def render_json(report) -> str:
    doc = report.to_dict()
    text = _dumps(doc)
    if "\\ud" in text:  # a surrogate escape: a lone one (a non-UTF-8 file name) makes it invalid
        text = _dumps(json_safe(doc))
    return text + "\n"


def _dumps(doc: dict) -> str:
    lines = []
    for key, value in doc.items():
        if isinstance(value, list) and value:
            items = ",\n    ".join(map(_encode, value))
            lines.append(f"  {_encode(key)}: [\n    {items}\n  ]")
        else:
            lines.append(f"  {_encode(key)}: {_encode(value)}")
    return "{\n" + ",\n".join(lines) + "\n}" if lines else "{}"
