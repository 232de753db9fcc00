"""``--format json``: the model as JSON (schema in docs/schema.json).

Control characters in capture text are JSON escapes (``\\u001b``); a file name that is not UTF-8
has each such byte written as the four characters ``\\xNN``
(:func:`pcapvpn.report.escape.json_safe`), so the document is always valid UTF-8 and valid for
strict parsers."""

from __future__ import annotations

import json

from pcapvpn.report.escape import json_safe


def render_json(report) -> str:
    doc = report.to_dict()
    text = json.dumps(doc, indent=2, sort_keys=False)
    if "\\ud" in text:  # a surrogate escape: a lone one (a non-UTF-8 file name) makes it invalid
        text = json.dumps(json_safe(doc), indent=2, sort_keys=False)
    return text + "\n"
