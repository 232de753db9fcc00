"""Rules: small functions over the tracked state, each yielding findings.

A rule never parses bytes.  Rules take the state (with its ``now``: the end of the capture
offline, the clock live), so offline and live share them.  Each rule module declares its codes
with :func:`pcapvpn.findings.declare` at import and registers its rules with :func:`rule`.
"""

from __future__ import annotations

import importlib
import os

from pcapvpn.findings import declare

RULES: list = []

declare("RULE_ERROR", "capture", "warning",
        "One of pcapvpn's rules failed on this capture (a bug in pcapvpn, named in the detail "
        "with the exception type). The other rules' findings are reported as usual, but what "
        "this rule looks for was not checked, so a problem it would have found may be missing "
        "from the report.",
        ["Report it to the pcapvpn project with the command line and, if you can, the capture; "
         "run with PCAPVPN_DEBUG=1 to get the traceback on standard error."], failure=False)

#: rule modules, one per stage (import order = report order for equal severities)
MODULES = ("reachability", "negotiation", "nat", "authentication", "child_sa", "dataplane",
           "routing", "inner", "stability", "decrypted", "vpn", "path", "capture", "logs", "limits")


def rule(fn):
    """Register a rule: ``fn(ctx) -> iterable of Finding``."""
    RULES.append(fn)
    return fn


def supersede(finding, codes, frames=(), esp_spis=()):
    """Mark ``finding`` (e.g. one read from decrypted payloads) as describing the same thing as
    the *inferred* findings of ``codes`` whose evidence shares a frame (``FrameRef``s or
    ``(file, frame)``) or an ESP SPI with it: :func:`run_rules` drops those.  Returns
    ``finding``."""
    refs = {(getattr(r, "file", None), getattr(r, "frame", None)) if not isinstance(r, tuple)
            else r for r in frames}
    finding.supersedes = (frozenset(codes), refs, frozenset(esp_spis))
    return finding


def _drop_superseded(out) -> list:
    sups = [(f, sup) for f in out for sup in (getattr(f, "supersedes", None),) if sup]
    if not sups:
        return out
    # the inferred findings of the codes superseded, by code (one pass: a live stop hands out
    # tens of thousands of findings, a few of which supersede others)
    wanted = set().union(*(sup[0] for _f, sup in sups))
    by_code: dict = {}
    for g in out:
        if g.code in wanted and g.basis == "inferred":
            by_code.setdefault(g.code, []).append(g)
    drop = set()
    for f, (codes, refs, spis) in sups:
        for code in codes:
            for g in by_code.get(code, ()):
                if g is f:
                    continue
                if any((r.file, r.frame) in refs for r in g.evidence.frames) or \
                        spis.intersection(g.evidence.esp_spis):
                    drop.add(g.id)
    return [g for g in out if g.id not in drop] if drop else out


def load_all() -> None:
    for name in MODULES:
        try:
            importlib.import_module(f"pcapvpn.rules.{name}")
        except ModuleNotFoundError as e:  # a stage without rules yet
            if e.name != f"pcapvpn.rules.{name}":
                raise


_ORDER: list = []


def _ordered() -> list:
    """The rules in :data:`MODULES` order (the order of registration within a module): a rule
    module imported early by another room (a tracker, the verdict, a test) must not move its
    findings ahead — the report's order is the same in every process."""
    if len(_ORDER) != len(RULES):
        rank = {name: i for i, name in enumerate(MODULES)}

        def key(fn):
            parts = fn.__module__.split(".")
            return rank.get(parts[2] if len(parts) > 2 else "", len(MODULES))

        _ORDER[:] = sorted(RULES, key=key)
    return _ORDER


def run_rules(state) -> list:
    """Run every rule over ``state``; findings deduplicated by id, in rule order.

    One rule never loses the whole report: a rule that raises becomes a ``RULE_ERROR`` finding
    (capture stage, warning, not a failure: the exit status stays as the other findings decide)
    naming the rule and the exception type; the findings it yielded before are kept, and every
    other rule runs.  The traceback goes to standard error only with ``PCAPVPN_DEBUG=1``."""
    from pcapvpn.rules.common import Context

    load_all()
    ctx = Context(state)
    out = []
    seen = set()
    for fn in _ordered():
        try:
            for f in fn(ctx) or ():
                if f.id in seen:
                    continue
                seen.add(f.id)
                out.append(f)
        except Exception as e:  # noqa: BLE001 - a bug in one rule is reported, not fatal
            f = _rule_error(fn, e)
            if f.id not in seen:
                seen.add(f.id)
                out.append(f)
    out = _drop_superseded(out)
    _show_fragments(ctx, out)
    return out


def _rule_error(fn, e: Exception):
    """The ``RULE_ERROR`` finding of rule ``fn`` that raised ``e``: the rule, the exception type
    and where in pcapvpn it was raised (the message is not shown: it may hold capture data or
    keys)."""
    import traceback

    from pcapvpn.findings import make, msg

    name = f"{fn.__module__}.{fn.__qualname__}"
    frames = traceback.extract_tb(e.__traceback__)[1:]  # [0] is run_rules
    ours = [fr for fr in frames if {"pcapvpn", "dissect"} & set(fr.filename.split(os.sep))]
    where = ""
    if frames:  # the innermost place in pcapvpn (else the innermost at all), path from the package
        fr = (ours or frames)[-1]
        parts = fr.filename.split(os.sep)
        top = max((i for i, p in enumerate(parts) if p in ("pcapvpn", "dissect")),
                  default=len(parts) - 1)
        where = msg(" at {file}:{line} in {function}", file='/'.join(parts[top:]),
                    line=fr.lineno, function=fr.name)
    if os.environ.get("PCAPVPN_DEBUG"):
        import sys

        print(f"pcapvpn: rule {name} failed:", file=sys.stderr)
        traceback.print_exception(e)
    return make("RULE_ERROR", f"rule-error|{name}",
                title=msg("Rule {rule} failed ({error}): its checks are missing from this "
                          "report", rule=fn.__name__, error=type(e).__name__),
                detail=msg("The rule {rule} raised {error}{where}; the findings of every other "
                           "rule are reported. This is a bug in pcapvpn.", rule=name,
                           error=type(e).__name__, where=where))


def _show_fragments(ctx, findings) -> None:
    """IP fragments that carried an IKE message match no IKE field in Wireshark (only the frame
    that completes the datagram does), nor do the TCP segments of IKE over TCP (Wireshark does
    not dissect RFC 9329 streams): add them to the filter by frame number."""
    from pcapvpn.rules.common import set_filter

    frag = set()
    for sa in ctx.state.ike_sas:
        for m in sa.messages:
            for r in (m.frames if m.transport == "tcp" else m.frames[:-1]):
                frag.add((ctx.file(r[0]), r[1]))
    if not frag:
        return
    for f in findings:
        extra = sorted({fr.frame for fr in f.evidence.frames if (fr.file, fr.frame) in frag})
        if extra and f.wireshark_filter:
            f.wireshark_filter = f"({f.wireshark_filter}) || {set_filter('frame.number', extra)}"
