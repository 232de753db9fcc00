"""Rules: small functions over the tracked state, each yielding findings.

A rule never parses bytes.  Rules take the state (with its ``now``: the end of the capture
offline, the clock live), so offline and live share them.  Each rule module declares its codes
with :func:`pcapvpn.findings.declare` at import and registers its rules with :func:`rule`.
"""

from __future__ import annotations

import importlib

RULES: list = []

#: rule modules, one per stage (import order = report order for equal severities)
MODULES = ("reachability", "negotiation", "nat", "authentication", "child_sa", "dataplane",
           "stability", "capture")


def rule(fn):
    """Register a rule: ``fn(ctx) -> iterable of Finding``."""
    RULES.append(fn)
    return fn


def load_all() -> None:
    for name in MODULES:
        try:
            importlib.import_module(f"pcapvpn.rules.{name}")
        except ModuleNotFoundError as e:  # a stage without rules yet
            if e.name != f"pcapvpn.rules.{name}":
                raise


def run_rules(state) -> list:
    """Run every rule over ``state``; findings deduplicated by id, in rule order."""
    from pcapvpn.rules.common import Context

    load_all()
    ctx = Context(state)
    out = []
    seen = set()
    for fn in RULES:
        for f in fn(ctx) or ():
            if f.id in seen:
                continue
            seen.add(f.id)
            out.append(f)
    return out
