"""``--format json``: the model as JSON (schema in docs/schema.json)."""

from __future__ import annotations

import json


def render_json(report) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n"
