"""The findings model (DESIGN.md "Findings") and the registry of finding codes.

A finding: ``code`` (stable UPPER_SNAKE), ``stage``, ``severity``, ``title`` (one line),
``detail`` (what was seen, in numbers), ``basis`` (observed | inferred | decrypted | log),
``evidence`` (frames with file and number, times, SPIs, peers), ``wireshark_filter`` and ``advice``
(ordered next steps in the operator's words); with ``--log``, ``logs``: the gateway log lines
that confirm (or contradict: ``agrees`` false) it.  Every code is declared once, here, through :func:`declare`
(called by the rule modules); docs/findings.md is generated from this registry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pcapvpn.names import Basis, Severity, Stage

#: The troubleshooting order: a failure is reported at the first stage that broke.
STAGES = tuple(s for s in Stage if s is not Stage.CAPTURE)
#: Outside the order: can the capture itself be trusted?
CAPTURE_STAGE = Stage.CAPTURE
ALL_STAGES = STAGES + (CAPTURE_STAGE,)
SEVERITIES = tuple(Severity)
BASES = tuple(Basis)


def severity_rank(sev: str) -> int:
    """critical 0 ... info 3 (lower is worse)."""
    return SEVERITIES.index(sev)


def stage_rank(stage: str) -> int:
    return ALL_STAGES.index(stage)


@dataclass(frozen=True)
class Spec:
    code: str
    stage: Stage
    severity: Severity
    meaning: str
    advice: tuple[str, ...]
    #: posture findings (weak crypto ...) are reported beside the verdict and never change it
    posture: bool = False
    #: informational findings about the capture or a recovered problem do not fail a tunnel
    failure: bool = True
    #: per advice line, the conditions under which it applies (``when``): ``((key, values),
    #: ...)``; ``()`` for a line that always applies
    advice_when: tuple = ()


@dataclass(frozen=True)
class When:
    """An advice line with the conditions under which it applies (see :func:`when`)."""

    text: str
    conditions: tuple


def when(text: str, **conditions) -> When:
    """An advice line for :func:`declare` that applies only to findings whose facts match, e.g.
    ``when("libreswan logs '... to our first IKEv2 message'", version=2,
    exchange="IKE_SA_INIT", impl="libreswan")``.  A condition's value is one value or a tuple of
    values; a finding keeps the line when, for every condition, its fact (``make(facts=...)``)
    is unknown (absent, None or empty) or one of its values is allowed.  The text may carry
    ``{name}`` placeholders, filled from the finding's facts (the line is left out when a fact
    it names is unknown); the registry, docs/findings.md and the message catalogs keep the
    placeholders."""
    conds = []
    for k, v in sorted(conditions.items()):
        vals = tuple(v) if isinstance(v, (tuple, list, set, frozenset)) else (v,)
        conds.append((k, vals))
    return When(text, tuple(conds))


def _holds(fact, allowed) -> bool:
    if fact is None:
        return True
    vals = fact if isinstance(fact, (tuple, list, set, frozenset)) else (fact,)
    return not vals or any(v in allowed for v in vals)


def advice_for(code: str, facts: dict | None = None) -> list[str]:
    """The advice of ``code`` that applies to a finding with ``facts`` (IKE version, exchange,
    side, implementations, ...): the declared lines whose conditions hold, placeholders filled,
    each line once."""
    spec = REGISTRY[code]
    facts = facts or {}
    conds = spec.advice_when or ((),) * len(spec.advice)
    out = []
    for text, cond in zip(spec.advice, conds):
        if not all(_holds(facts.get(k), allowed) for k, allowed in cond):
            continue
        if "{" in text:
            values = {k: v for k, v in facts.items() if isinstance(v, (str, int, float))}
            try:
                text = text.format_map(values)
            except (KeyError, IndexError, ValueError):
                continue  # a fact the line names is unknown
        out.append(text)
    return list(dict.fromkeys(out))


REGISTRY: dict[str, Spec] = {}


def declare(code: str, stage: str, severity: str, meaning: str, advice=(), *, posture=False,
            failure=True) -> Spec:
    """Declare a finding code.  ``advice``: ordered lines in the operator's words; a line that
    applies only to some findings of the code (one IKE version, one implementation's log, one
    side) is a :func:`when`."""
    if stage not in ALL_STAGES:
        raise ValueError(f"{code}: unknown stage {stage}")
    if severity not in SEVERITIES:
        raise ValueError(f"{code}: unknown severity {severity}")
    stage, severity = Stage(stage), Severity(severity)
    old = REGISTRY.get(code)
    texts = tuple(a.text if isinstance(a, When) else a for a in advice)
    conds = tuple(a.conditions if isinstance(a, When) else () for a in advice)
    spec = Spec(code, stage, severity, meaning, texts, posture, failure,
                conds if any(conds) else ())
    if old is not None and old != spec:
        raise ValueError(f"finding code {code} declared twice, differently")
    REGISTRY[code] = spec
    return spec


class Msg(str):
    """A finding's title or detail as a template and its facts (issue 18, item 5): the string
    itself is the English text, so every renderer and the JSON use it as they would any string;
    ``template`` (``{name}`` placeholders, format specs allowed) and ``facts`` let a language
    render the same facts in its own words (:meth:`pcapvpn.i18n.Lang.msg`).  Facts are values
    (numbers, addresses, codes, names, capture strings) or nested messages; a value is never
    template text.  ``a + b`` of messages is a message whose parts are translated one by one."""

    template: str
    facts: dict
    #: live's rule cache (:mod:`pcapvpn.rules.incremental`): the facts whose values follow the
    #: clock (name -> how the value is made from ``now``; None: a message that has such facts),
    #: so that a kept finding's text is written again for a later ``now`` instead of its rule
    #: running again; None: none (always, offline)
    follows: dict | None = None

    def __new__(cls, template: str, facts: dict | None = None) -> Msg:
        facts = facts or {}
        if facts and _FOLLOW[0] is not None:
            return _FOLLOW[0](cls, template, facts)
        self = super().__new__(cls, template.format_map(facts) if facts else template)
        self.template = template
        self.facts = facts
        return self

    def __reduce__(self):
        if self.follows is not None:  # a forked evaluation's kept findings come back so
            return (_loaded, (self.template, self.facts, self.follows))
        return (Msg, (self.template, self.facts))

    def __add__(self, other):  # type: ignore[override]
        if not isinstance(other, str):
            return NotImplemented
        if not other:
            return self
        return _joined(self, other)

    def __radd__(self, other):
        if not isinstance(other, str):
            return NotImplemented
        if not other:
            return self
        return _joined(other, self)


_str_add = str.__add__
_JOIN = "{a}{b}"
#: live's rule cache, while its recorder runs (:mod:`pcapvpn.rules.incremental`): ``[made,
#: joined]``: ``made(cls, template, facts) -> Msg`` makes every message with facts (those whose
#: facts follow the clock get ``follows``), ``joined(m)`` notes a join of two messages
_FOLLOW: list = [None, None]


def _joined(a: str, b: str) -> Msg:
    """``Msg("{a}{b}", {"a": a, "b": b})`` without formatting the template: its text is the two
    texts one after the other (a live stop joins tens of thousands of sentences)."""
    out = str.__new__(Msg, _str_add(a, b))
    out.template = _JOIN
    out.facts = {"a": a, "b": b}
    if _FOLLOW[0] is not None:
        _FOLLOW[1](out)
    return out


def _loaded(template: str, facts: dict, follows: dict) -> Msg:
    """A pickled message whose facts follow the clock (their values are plain)."""
    out = str.__new__(Msg, template.format_map(facts))
    out.template = template
    out.facts = facts
    out.follows = follows
    return out


class Term(str):
    """The tool's own words used as a fact — a word of its vocabulary (a verdict, a side) or a
    sentence a lower layer wrote (a tracker's note): translated by the catalog (the exact text,
    else a catalog template it matches), like the :mod:`pcapvpn.names` enums; a plain ``str``
    fact is a value (an address, capture text) and stays as it is."""


def msg(template: str, /, **facts) -> Msg:
    """A message: ``msg("TS_UNACCEPTABLE from {peer}", peer=ip_text(m.src))``.  The English
    text is ``template.format(**facts)``; the catalogs translate ``template``
    (:mod:`pcapvpn.i18n`), and ``tests/report/test_i18n.py`` finds every template by walking the
    rules."""
    return Msg(template, facts)


def msg_join(sep: str, parts) -> str:
    """``sep.join(parts)`` that stays a message when the parts are messages (each translated)."""
    parts = list(parts)
    if not any(isinstance(p, (Msg, Term)) for p in parts):
        return sep.join(parts)
    names = [f"p{i}" for i in range(len(parts))]
    facts = dict(zip(names, parts))
    if any(c.isalpha() for c in sep):  # words (" and "): translated as a Term
        facts["sep"] = Term(sep)
        return Msg("{sep}".join("{" + n + "}" for n in names), facts)
    return Msg(sep.replace("{", "{{").replace("}", "}}").join("{" + n + "}" for n in names),
               facts)


@dataclass
class FrameRef:
    file: str
    frame: int
    #: several vantage points (--vantage): the point that saw it (None: the JSON has no key)
    point: str | None = None


@dataclass
class Evidence:
    frames: list[FrameRef] = field(default_factory=list)
    #: RFC 3339 UTC and relative seconds of the first and last evidence frame
    first: dict | None = None
    last: dict | None = None
    ike_spis: list[str] = field(default_factory=list)
    esp_spis: list[str] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)


@dataclass
class LogRef:
    """A gateway log line cited by a finding (``--log``): ``time`` on the capture's clock
    (``{utc, rel}``; None for status output), ``agrees`` false where the line contradicts the
    finding, ``reason`` the exact reason the line gives (None if it gives none)."""

    file: str
    line: int
    time: dict | None
    text: str
    agrees: bool = True
    reason: str | None = None


@dataclass
class Finding:
    id: str
    code: str
    stage: Stage
    severity: Severity
    title: str
    detail: str
    basis: Basis
    evidence: Evidence
    wireshark_filter: str
    advice: list[str]
    tunnel: str | None = None
    posture: bool = False
    failure: bool = True
    #: a failure the tunnel recovered from (set by the verdict, :mod:`pcapvpn.rules.verdict`):
    #: ``{"at": time, "by": "how"}``; its severity is then at most warning
    recovered: dict | None = None
    #: gateway log lines (--log; None without logs: the JSON then has no "logs" key)
    logs: list[LogRef] | None = None
    #: former codes of the same finding, kept for one schema version (:data:`ALIASES`; None:
    #: the JSON has no "aliases" key)
    aliases: list[str] | None = None
    #: several vantage points (--vantage): where it happened, ``{"from": point or None,
    #: "to": point or None}``: seen at ``from`` and never at ``to`` (``from`` None: before the
    #: first point; ``to`` None: after the last), plus ``"why"`` in words; None: no JSON key
    location: dict | None = None


#: codes folded into another, still named beside it for one schema version:
#: (code, basis) -> the former codes (TS_OVERLAP became SUBNET_OVERLAP with basis decrypted)
ALIASES = {("SUBNET_OVERLAP", "decrypted"): ("TS_OVERLAP",)}


def finding_id(code: str, key: str) -> str:
    """A stable id: the same condition on the same subject gets the same id (live mode's
    "resolved" events refer to it)."""
    return "F" + hashlib.sha1(f"{code}|{key}".encode()).hexdigest()[:12]


#: characters of a finding's title and detail (a rule listing what a flood made — thousands of
#: addresses, SPIs — stays bounded; the rest is counted in the text)
MAX_TITLE = 500
MAX_DETAIL = 8000


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:  # a Msg stays one (its translation is bounded by the same facts)
        return text
    return text[:limit] + f" … ({len(text) - limit:,} more characters)"


def make(code: str, key: str, *, title: str, detail: str, basis: str = "observed",
         evidence: Evidence | None = None, wireshark_filter: str = "", advice=None,
         severity: str | None = None, tunnel: str | None = None,
         facts: dict | None = None) -> Finding:
    """Build a finding of a declared code (stage, default severity and advice from the spec).

    ``facts`` choose the declared advice lines that apply (:func:`advice_for`); ``advice``
    replaces them (lines specific to this finding).  Either way each line appears once."""
    spec = REGISTRY[code]
    if basis not in BASES:
        raise ValueError(f"{code}: unknown basis {basis}")
    title = _bounded(title, MAX_TITLE)
    detail = _bounded(detail, MAX_DETAIL)
    adv = list(dict.fromkeys(advice)) if advice is not None else advice_for(code, facts)
    return Finding(
        id=finding_id(code, key), code=code, stage=spec.stage,
        severity=Severity(severity) if severity else spec.severity, title=title, detail=detail,
        basis=Basis(basis),
        evidence=evidence or Evidence(), wireshark_filter=wireshark_filter, advice=adv,
        tunnel=tunnel, posture=spec.posture, failure=spec.failure and not spec.posture,
        aliases=list(ALIASES[(code, basis)]) if (code, basis) in ALIASES else None,
    )


#: a code found (at one severity) on at least this many tunnels is shown once, as a group
GROUP_MIN_TUNNELS = 3


def finding_groups(findings) -> list[dict]:
    """Repeated findings (the same code and severity on at least :data:`GROUP_MIN_TUNNELS`
    tunnels, a remote-access head-end's many clients): ``[{code, severity, count, tunnels,
    findings}]`` (``findings``: their ids, in report order), the worst and largest first.
    Every finding stays in the report; the renderers show a group once."""
    by: dict = {}
    for f in findings:
        by.setdefault((f.code, f.severity), []).append(f)
    out = []
    for (code, sev), fs in by.items():
        tunnels = sorted({f.tunnel for f in fs if f.tunnel})
        if len(tunnels) < GROUP_MIN_TUNNELS:
            continue
        out.append({"code": code, "severity": sev, "count": len(fs), "tunnels": tunnels,
                    "findings": [f.id for f in fs]})
    out.sort(key=lambda g: (severity_rank(g["severity"]), -g["count"], g["code"]))
    return out
