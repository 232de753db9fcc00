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
           "stability", "decrypted", "vpn", "capture", "limits")


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
    drop = set()
    for f in out:
        sup = getattr(f, "supersedes", None)
        if not sup:
            continue
        codes, refs, spis = sup
        for g in out:
            if g is f or g.basis != "inferred" or g.code not in codes:
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
    out = _drop_superseded(out)
    _show_fragments(ctx, out)
    return out


def _show_fragments(ctx, findings) -> None:
    """IP fragments that carried an IKE message match no IKE field in Wireshark (only the frame
    that completes the datagram does): add them to the filter by frame number."""
    from pcapvpn.rules.common import set_filter

    frag = set()
    for sa in ctx.state.ike_sas:
        for m in sa.messages:
            for r in m.frames[:-1]:
                frag.add((ctx.file(r[0]), r[1]))
    if not frag:
        return
    for f in findings:
        extra = sorted({fr.frame for fr in f.evidence.frames if (fr.file, fr.frame) in frag})
        if extra and f.wireshark_filter:
            f.wireshark_filter = f"({f.wireshark_filter}) || {set_filter('frame.number', extra)}"
