"""The rules' results kept between evaluations, per tunnel (``pcapvpn live``, issue 20).

:func:`pcapvpn.rules.run_rules` runs every rule over every SA.  Live mode evaluates the same
growing state again and again, and most tunnels did not change since the previous evaluation;
:class:`RuleCache` re-runs the rules only for the *dirty* tunnels and reuses the findings of the
others, so that an evaluation (and the stop's final report) costs what changed, not what is held.
The findings are exactly those of :func:`run_rules` on the same state, in the same order (the
tests replay every capture and compare at several points).

Groups.  A *group* is what a finding is cached under: an IPsec tunnel (its IKE SAs, ESP/AH SAs
and IKE-over-TCP connections), an IKE SA outside any tunnel, or a tunnel of another VPN.  A group
is dirty when

* its content changed (a fingerprint of its SAs: messages, packets, last times, links);
* a NAT keepalive flow, ICMP error or incomplete fragment set of its address pair changed;
* ``now`` reached a deadline one of its rules compared with (a request that was "too recent to
  call unanswered" last time), or a rule used ``now`` in a value it kept that cannot be
  written again (rounded, in a field other than a text): ``now`` is handed to the rules as
  :class:`_Dep`, a float that records every comparison and every other use, attributed to the
  group the rule is looking at;
* it is linked to a dirty group (a REDIRECT and the client's later IKE SAs elsewhere; an end
  that moved, MOBIKE, to an address pair that is a tunnel of its own).

Attribution.  The state lists the rules walk (IKE SAs, ESP SAs, tunnels, other VPN tunnels) are
:class:`_Seq`: their outermost iteration records the element it is at, so a finding yielded (or a
``now`` compared) inside ``for t in ctx.state.tunnels`` belongs to ``t``'s group, and is ordered
by ``t``'s position.  A rule whose findings cannot be attributed so (yielded after its loop, or
over a list that is not followed: capture-level facts, ICMP errors, plaintext, vantage points),
whose findings do not come in the order of the list it walks, or that raised, is *global*: it runs
over the whole state at every evaluation (such rules are cheap: they read bounded lists).
Learned at run time; a rule found global while running over the dirty part is run again over
the whole state in the same evaluation.

Texts that follow the clock.  A text "the capture ends N s after the last copy" is a message
(:class:`pcapvpn.findings.Msg`) with ``now - ts`` among its facts: made while the rules run, it
keeps how that value is made from ``now`` (:func:`_msg_made`), and a group whose findings of a
rule hold such texts is not run again when only the clock moved: its kept findings' titles and
details are written again for the new ``now`` (:func:`_render`, the very floats the rule's
arithmetic gives, so English and every language read as offline).  Only when every such message
the rule made for the group is within those titles and details (:func:`_placed`): a text copied
into a plain string, or a use of ``now`` that is not ``now`` moved by constants, makes the
group run again as before.

Units smaller than a group.  A rule whose result for one SA depends on that SA alone (and on
``now`` only through comparisons -- deadlines -- and texts written again) computes it through
:func:`per_sa`; the cache keeps that result per rule and SA, keyed by the SA and its change
counter (a fingerprint the rule gives), and a dirty group's run reuses it for the SAs that did
not change (the big tunnel of a flood gets new SAs at every interval: its old SAs are not
computed again; their findings' texts that follow the clock are written again).  A body that
used ``now`` otherwise (a text that is not in its findings' texts), read an aggregate or cut a
look-up short is not kept: it runs again every time, as its group would.  Offline
(:func:`pcapvpn.rules.run_rules`) the body simply runs.

Verdicts.  :meth:`RuleCache.verdicts` judges the tunnels of the findings the last run handed
out as :func:`pcapvpn.rules.verdict.tunnel_verdicts` does, keeping each tunnel's verdict (and
what it changed in the tunnel's findings) while the tunnel and the kept findings its findings
were copied from stay the same (a global rule's findings: by value); ``now`` is a :class:`_Dep`
there too, and the verdict's own texts that follow the clock (what could not be judged yet,
"the capture ends N s after the request") are written again for a kept verdict as the
findings' are.  A forked evaluation's verdicts come back with its cache (:meth:`RuleCache.
export`).

Whole evaluations.  The first one, a change of the capture's start, ``--vantage`` (the points'
matching reads every tunnel) and inner models (decrypted or plaintext traffic tied to tunnels)
of a group make everything (or that group) dirty.  Offline ``analyze`` never uses this module.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time

from pcapvpn.rules import _drop_superseded, _ordered, _rule_error, _show_fragments, load_all
from pcapvpn.findings import _JOIN, MAX_DETAIL, MAX_TITLE
from pcapvpn.findings import Msg as _Msg

__all__ = ["RuleCache", "ike_unit_fp", "per_sa"]

#: the outermost iteration of a followed state list in progress: ``[kind, element]`` or empty
_CUR: list = []
#: the recorder of the run in progress (None: no incremental run)
_REC: list = [None]
#: elements handed out by the outermost iterations of the last run, per list (the rules' work)
WALKED: dict = {}

KINDS = ("tunnels", "ike_sas", "esp_sas", "vpn_tunnels")


class _Seq(list):
    """A state list whose outermost iteration (a rule's ``for x in ctx.state.tunnels``) tells
    which element the rule is at (builtins such as ``len``, ``sorted``, ``list`` read it as a
    plain list)."""

    __slots__ = ("kind", "whole")

    def __bool__(self):
        # "any at all?" is asked of the whole state (no_traffic: "no ESP between any hosts");
        # a change of that answer makes every group dirty (RuleCache.run)
        return self.whole

    def __iter__(self):
        if _CUR:
            return list.__iter__(self)
        return self._outer()

    def _outer(self):
        entry = [self.kind, None]
        _CUR.append(entry)
        kind = self.kind
        try:
            for x in list.__iter__(self):
                entry[1] = x
                WALKED[kind] = WALKED.get(kind, 0) + 1
                yield x
        finally:
            if entry in _CUR:
                _CUR.remove(entry)


def _flip(a: float, sa: float, b: float, sb: float):
    """When ``a + sa·dt`` and ``b + sb·dt`` cross (``dt`` ≥ 0 from now), or None."""
    ds = sa - sb
    if ds == 0:
        return None
    dt = (b - a) / ds
    return dt if dt >= 0 else None


class _Dep(float):
    """A value that moves with the clock: ``float(self) + s·(t − now)`` at time ``t``.

    ``ctx.now`` is one (``s`` 1); ``now - x`` and ``x - now`` stay one.  A comparison answers as
    a float does and records when its answer would change (a deadline of the group the rule is
    at); any other use (text, rounding, a product) records that the group's results follow the
    clock (it is evaluated every time) -- except a fact of a message (:func:`_msg_follow`):
    ``ops``, the steps that made the value from ``now`` (``(("-", x),)`` for ``now - x``; None
    when two clock values were combined), lets the message be written again for a later
    ``now`` with the very float the rule would compute then."""

    __slots__ = ("s", "ops")

    def __new__(cls, value, s=1.0, ops=()):
        self = float.__new__(cls, value)
        self.s = s
        self.ops = ops
        return self

    def _v(self):
        return float.__float__(self)

    # -- moving with the clock -------------------------------------------------------------
    def __sub__(self, o):
        if isinstance(o, _Dep):
            s = self.s - o.s
            v = self._v() - o._v()
            return _Dep(v, s, None) if s else v
        if isinstance(o, (int, float)):
            ops = self.ops
            return _Dep(self._v() - o, self.s, ops + (("-", o),) if ops is not None else None)
        return NotImplemented

    def __rsub__(self, o):
        if isinstance(o, (int, float)):
            ops = self.ops
            return _Dep(o - self._v(), -self.s, ops + (("r-", o),) if ops is not None else None)
        return NotImplemented

    def __add__(self, o):
        if isinstance(o, _Dep):
            s = self.s + o.s
            v = self._v() + o._v()
            return _Dep(v, s, None) if s else v
        if isinstance(o, (int, float)):
            ops = self.ops
            return _Dep(self._v() + o, self.s, ops + (("+", o),) if ops is not None else None)
        return NotImplemented

    __radd__ = __add__

    def __neg__(self):
        ops = self.ops
        return _Dep(-self._v(), -self.s, ops + (("neg", 0),) if ops is not None else None)

    def __pos__(self):
        return self

    # -- comparisons: a deadline -----------------------------------------------------------
    def _cmp(self, o, op):
        if isinstance(o, _Dep):
            b, sb = o._v(), o.s
        elif isinstance(o, (int, float)) and not isinstance(o, bool):
            b, sb = float(o), 0.0
        else:
            return NotImplemented
        a = self._v()
        dt = _flip(a, self.s, b, sb)
        if dt is not None:
            _note(dt)
        return op(a, b)

    # __lt__, __le__, __gt__, __ge__, __eq__, __ne__: _comparing below

    # -- any other use: the value is kept or shown ------------------------------------------
    def __hash__(self):
        _note(None)
        return float.__hash__(self)

    def __float__(self):
        _note(None)
        return self._v()

    def __reduce__(self):  # a pickled copy (a forked evaluation's result) is a plain float
        _note(None)
        return (float, (self._v(),))


def _escaping(name):
    base = getattr(float, name)

    def use(self, *a):
        _note(None)
        a = tuple(float.__float__(x) if isinstance(x, _Dep) else x for x in a)
        return base(float.__float__(self), *a)

    use.__name__ = name
    return use


def _comparing(name):
    op = getattr(float, name)

    def compare(self, o):
        return self._cmp(o, op)

    compare.__name__ = name
    return compare


for _name in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
    setattr(_Dep, _name, _comparing(_name))

for _name in ("__format__", "__str__", "__repr__", "__round__", "__int__", "__trunc__",
              "__floor__", "__ceil__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
              "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__divmod__",
              "__rdivmod__", "__pow__", "__rpow__", "__abs__", "__bool__", "as_integer_ratio",
              "hex", "is_integer", "conjugate"):
    setattr(_Dep, _name, _escaping(_name))


class _FactDict(dict):
    """An aggregate over the whole state (what an address sent in all tunnels) whose reads
    are noted for the group the rule is at: the group is dirty when a value it read changes."""

    __slots__ = ("name",)

    def _read(self, key) -> None:
        rec = _REC[0]
        if rec is not None:
            rec.fact(self.name, key, dict.get(self, key, MISSING))

    def get(self, key, default=None):
        self._read(key)
        return dict.get(self, key, default)

    def __getitem__(self, key):
        self._read(key)
        return dict.__getitem__(self, key)

    def __contains__(self, key):
        self._read(key)
        return dict.__contains__(self, key)


#: the value noted for a key an aggregate does not hold (compared by equality: it survives
#: the pickling of a forked evaluation's cache)
MISSING = ("<missing>",)


def _facts(name, d) -> _FactDict:
    out = _FactDict(d)
    out.name = name
    return out


def _snap(v):
    """A copy of an aggregate's value (numbers, or lists and dicts of them) as it was read."""
    if isinstance(v, list):
        return [_snap(x) for x in v]
    if isinstance(v, dict):
        return {k: _snap(x) for k, x in v.items()}
    return v


def _note(dt) -> None:
    """A use of ``now`` by the rule running: a comparison whose answer changes ``dt`` seconds
    from now, or (``dt`` None) a value that follows the clock."""
    rec = _REC[0]
    if rec is not None:
        rec.note(dt)


# -- texts that follow the clock ---------------------------------------------------------------


def _msg_made(cls, template, facts):
    """:class:`~pcapvpn.findings.Msg` while a recorder runs: a message one of whose facts is
    ``now`` moved by constants (``now - m.ts``: a :class:`_Dep` with ``ops``) is written with
    the plain value and keeps in ``follows`` how to make it from ``now``; a message with such a
    message among its facts keeps that too.  It is noted for the group the rule is at
    (:meth:`_Recorder.made`), not as a use of ``now``: the group's findings are written again
    for a later ``now`` (:func:`_render`) instead of the rule running again -- when every such
    message the rule made for the group ends up in its findings' titles and details
    (:meth:`RuleCache._run_local`).  Any other clock value (rounded, multiplied, two of them
    combined, in a per-SA body) is formatted as before: a use of ``now`` (its group re-runs)."""
    follow = None
    for k, v in facts.items():
        t = type(v)
        if t is _Dep:
            if v.ops is None:
                follow = None
                break
            if follow is None:
                follow = {}
            follow[k] = v.ops
        elif t is _Msg and v.follows is not None:
            if follow is None:
                follow = {}
            follow[k] = None
    rec = _REC[0]
    if follow is None or rec is None:
        self = str.__new__(cls, template.format_map(facts))
        self.template = template
        self.facts = facts
        return self
    plain = {k: (float.__float__(v) if follow.get(k) else v) for k, v in facts.items()}
    self = str.__new__(cls, template.format_map(plain))
    self.template = template
    self.facts = plain
    self.follows = follow
    rec.made(self)
    return self


def _msg_joined(m) -> None:
    """``a + b`` of messages while a recorder runs: it follows the clock when a part does."""
    f = m.facts
    a, b = f["a"], f["b"]
    fa = type(a) is _Msg and a.follows is not None
    fb = type(b) is _Msg and b.follows is not None
    if fa or fb:
        follow = {}
        if fa:
            follow["a"] = None
        if fb:
            follow["b"] = None
        m.follows = follow
        rec = _REC[0]
        if rec is not None:
            rec.made(m)


def _replay(ops, now: float) -> float:
    """The value ``ops`` make from ``now`` (the same float the rule's arithmetic gives)."""
    x = now
    for op, c in ops:
        if op == "-":
            x = x - c
        elif op == "+":
            x = x + c
        elif op == "r-":
            x = c - x
        else:
            x = -x
    return x


def _render(m, now: float):
    """Message ``m`` (its ``follows`` set) written again for ``now``."""
    facts = dict(m.facts)
    for k, how in m.follows.items():
        facts[k] = _render(facts[k], now) if how is None else _replay(how, now)
    template = m.template
    if template == _JOIN and type(facts["a"]) in _STRS and type(facts["b"]) in _STRS:
        text = str.__add__(facts["a"], facts["b"])
    else:
        text = template.format_map(facts)
    out = str.__new__(m.__class__, text)
    out.template = template
    out.facts = facts
    out.follows = m.follows
    return out


_STRS = (str, _Msg)


def _reach(m, out: set) -> None:
    """The messages that follow the clock within ``m`` (ids into ``out``)."""
    if type(m) is not _Msg or m.follows is None or id(m) in out:
        return
    out.add(id(m))
    facts = m.facts
    for k, how in m.follows.items():
        if how is None:
            _reach(facts[k], out)


def _hooks(on: bool) -> None:
    from pcapvpn import findings

    findings._FOLLOW[0] = _msg_made if on else None
    findings._FOLLOW[1] = _msg_joined if on else None


# -- the cache ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Group:
    """What the rules left for one group, per rule: findings as ``(rank, element key, kind,
    seq, finding)``, look-up budget notes, the deadline of a comparison with ``now``, whether
    a value followed the clock, the aggregates read; and the group's fingerprint."""

    fp: object = None
    found: dict = dataclasses.field(default_factory=dict)
    cuts: dict = dataclasses.field(default_factory=dict)
    deadlines: dict = dataclasses.field(default_factory=dict)
    clock: set = dataclasses.field(default_factory=set)
    facts: dict = dataclasses.field(default_factory=dict)
    #: rule name -> the ``now`` its findings' texts that follow the clock are written for
    #: (:func:`_msg_made`: they are written again for a later ``now``, the rule does not run)
    rendered: dict = dataclasses.field(default_factory=dict)
    #: a run of some rules only (a clean group whose deadline of those rules passed)
    partial: bool = False
    ran: set = dataclasses.field(default_factory=set)


class _Recorder:
    """One run over the dirty part: where each rule's findings and uses of ``now`` belong."""

    def __init__(self, cache, maps, now):
        self.cache = cache
        self.maps = maps
        self.now = now
        self.rule = None
        #: per rule: group -> the earliest deadline it compared with; the groups whose values
        #: followed the clock; the aggregates' values each group read
        self.deadlines: dict = {}
        self.clock: dict = {}
        self.unplaced = False  # a use of now outside any followed iteration
        self.facts: dict = {}
        #: the per-SA body running (:func:`per_sa`): [not to be kept, earliest deadline, the
        #: messages it made that follow the clock]
        self.watch: list | None = None
        #: per rule: group -> the messages made that follow the clock (:func:`_msg_made`)
        self.follow: dict = {}

    def made(self, m) -> None:
        if self.watch is not None:  # a per-SA body: kept when it is in the body's findings
            self.watch[2].append(m)
        g = self.group()
        if g is None:
            self.unplaced = True
            return
        self.follow.setdefault(self.rule, {}).setdefault(g, []).append(m)

    def group(self):
        if not _CUR:
            return None
        kind, elem = _CUR[0]
        if elem is None:
            return None
        return self.maps[kind].get(_key(kind, elem))

    def fact(self, name, key, value) -> None:
        if self.watch is not None:
            self.watch[0] = True
        g = self.group()
        if g is None:
            self.unplaced = True
            return
        self.facts.setdefault(self.rule, {}).setdefault(g, []).append((name, key, _snap(value)))

    def note(self, dt) -> None:
        watch = self.watch
        if dt is None and watch is not None:
            watch[0] = True
        g = self.group()
        if g is None:
            self.unplaced = True
            return
        if dt is None:
            self.clock.setdefault(self.rule, set()).add(g)
        else:
            at = self.now + dt - 1e-6
            if watch is not None and at < watch[1]:
                watch[1] = at
            self.deadline(g, at)

    def deadline(self, g, at) -> None:
        """The rule running compared ``now`` for group ``g`` with a value it reaches at
        ``at``: the group's results of that rule are computed again from then on."""
        mine = self.deadlines.setdefault(self.rule, {})
        if at < mine.get(g, float("inf")):
            mine[g] = at


def _key(kind, elem):
    return elem.id if kind == "tunnels" else id(elem)


def _pair(x, y):
    return (x, y) if x <= y else (y, x)


class RuleCache:
    """Run the rules over a state as :func:`pcapvpn.rules.run_rules` does, re-running them
    only for the groups that changed since the previous :meth:`run` (see the module's
    docstring).  ``stats`` counts the work of the last run (tests count it)."""

    def __init__(self):
        self.groups: dict = {}
        self.global_rules: set = set()  # rule names run over the whole state every time
        self.ranks: dict = {}  # rule name -> [kind, ...] in the order its findings come
        self.start = None
        self.facts = None  # whether each followed list of the whole state is empty
        self.redirect_memo: dict = {}  # id(IKE SA) -> (messages seen, REDIRECT response client)
        #: the per-SA results (:func:`per_sa`): rule name -> id(SA) -> (fingerprint, findings,
        #: the earliest deadline the body compared ``now`` with)
        self.units: dict = {}
        self._units_fresh: set = set()  # (rule name, id(SA)) computed by the last run
        self.stats: dict = {}
        self._side: dict = {}
        self._fresh: set = set()  # the groups the last run computed
        self.stats_units: dict = {}
        self._held: set = set()  # the groups of the last run's state
        self._units_dropped: set = set()  # (rule name, id(SA)) whose kept result was dropped
        #: rule name -> CPU seconds of its last local run (how :meth:`run_split` shares them)
        self.rule_seconds: dict = {}
        #: the last run's groups and fingerprints, and for each finding it handed out the kept
        #: one it copied: ``id(copy) -> (copy, kept)`` (what :meth:`verdicts` reuses by)
        self._maps: dict = {}
        self._fps: dict = {}
        self._origin: dict = {}
        #: the verdicts kept per group (:meth:`verdicts`): group -> (key, verdict, what the
        #: verdict changed in its findings, deadline, follows the clock)
        self.kept_verdicts: dict = {}
        self._verdicts_fresh: set = set()  # the groups whose verdict the last one computed
        self.stats_verdicts: dict = {}

    # -- a forked evaluation's cache, back in the parent ---------------------------------------

    def export(self) -> dict:
        """What the last :meth:`run` learnt, to be :meth:`merge`d into the cache of the process
        that forked the one that ran it (live's forked evaluation: pickled with its result)."""
        return {"groups": {g: self.groups[g] for g in self._fresh if g in self.groups},
                "held": self._held, "global_rules": set(self.global_rules),
                "ranks": {k: list(v) for k, v in self.ranks.items()}, "start": self.start,
                "facts": self.facts, "side": self._side, "rule_seconds": dict(self.rule_seconds),
                "units": [(name, k, self.units[name][k]) for name, k in self._units_fresh
                          if k in self.units.get(name, ())],
                "verdicts": self._export_verdicts()}

    def _export_verdicts(self) -> tuple:
        """The verdicts the last :meth:`verdicts` kept: the groups kept, and those it computed
        with the kept findings of their keys as places (rule, index) in their group (the
        parent's copies of the findings are other objects)."""
        out = {}
        for g in self._verdicts_fresh:
            entry = self.kept_verdicts.get(g)
            grp = self.groups.get(g)
            if entry is None or grp is None:
                continue
            place = {id(r[4]): (name, i) for name, rows in grp.found.items()
                     for i, r in enumerate(rows)}
            key = entry[0]
            where = tuple(f if type(f) is _Global else place.get(id(f)) for f in key[2])
            if None in where:
                continue
            out[g] = ((key[0], key[1], where),) + tuple(entry[1:])
        return set(self.kept_verdicts), out

    def merge(self, data: dict) -> None:
        for g in [g for g in self.groups if g not in data["held"]]:
            del self.groups[g]
        self.groups.update(data["groups"])
        self.global_rules |= data["global_rules"]
        for k, v in data["ranks"].items():
            mine = self.ranks.setdefault(k, [])
            mine.extend(x for x in v if x not in mine)
        if data["start"] != self.start:
            self.units.clear()
        self.start = data["start"]
        self.facts = data["facts"]
        self._side = data["side"]
        for name, k, entry in data["units"]:
            self.units.setdefault(name, {})[k] = entry
        self.rule_seconds.update(data.get("rule_seconds", {}))
        kept, computed = data["verdicts"]
        mine = {g: v for g, v in self.kept_verdicts.items() if g in kept}
        for g, entry in computed.items():
            grp = self.groups.get(g)
            if grp is None:
                continue
            fp, start, where = entry[0]
            try:
                kf = tuple(w if type(w) is _Global else grp.found[w[0]][w[1]][4]
                           for w in where)
            except (KeyError, IndexError):
                continue
            mine[g] = ((fp, start, kf),) + tuple(entry[1:])
        self.kept_verdicts = mine

    # -- the groups of a state ---------------------------------------------------------------

    def _groups(self, state):
        """``maps[kind][element key] -> group``, each group's members and address pairs."""
        maps = {k: {} for k in KINDS}
        members: dict = {}
        pairs: dict = {}
        for t in state.tunnels:
            g = ("t", t.id)
            maps["tunnels"][t.id] = g
            for sa in t.ike_sas:
                maps["ike_sas"][id(sa)] = g
            for e in t.esp_sas:
                maps["esp_sas"][id(e)] = g
            members[g] = t
            ps = [_pair(t.a, t.b)] + [_pair(new, t.b if old == t.a else t.a)
                                      for new, old in t.moved.items()]
            for p in ps:
                pairs.setdefault(p, []).append(g)
        for sa in state.ike_sas:
            if id(sa) not in maps["ike_sas"]:
                g = ("s", id(sa))
                maps["ike_sas"][id(sa)] = g
                members[g] = sa
        for e in state.esp_sas:  # every ESP SA is in a tunnel; one outside is its own group
            if id(e) not in maps["esp_sas"]:
                g = ("e", id(e))
                maps["esp_sas"][id(e)] = g
                members[g] = e
        for t in state.vpn_tunnels:
            g = ("v", id(t))
            maps["vpn_tunnels"][id(t)] = g
            members[g] = t
            pairs.setdefault(_pair(t.client, t.server), []).append(g)
        return maps, members, pairs

    @staticmethod
    def _fingerprint(g, obj):
        kind = g[0]
        if kind == "t":
            return (tuple(_ike_fp(sa) for sa in obj.ike_sas),
                    tuple((id(e), e.packets, e.last_ts) for e in obj.esp_sas),
                    tuple((id(c), c.last_ts, len(c.syn), c.synack, c.rst_client, c.rst_server,
                           tuple(c.bytes)) for c in obj.tcp_conns),
                    tuple(obj.moved.items()))
        if kind == "s":
            return _ike_fp(obj)
        if kind == "e":
            return (obj.packets, obj.last_ts)
        return (obj.last_ts, tuple(obj.pkts), obj.errors, len(obj.conns), obj.named,
                obj.identified if hasattr(obj, "identified") else None)

    @staticmethod
    def _side_facts(state) -> dict:
        """Per address pair, the NAT keepalive flows, ICMP errors and incomplete fragment
        sets the rules may tie to a tunnel of that pair."""
        out: dict = {}
        for k in state.keepalives:
            out.setdefault(_pair(k.src, k.dst), []).append(
                ("k", id(k), k.count, k.last_ts))
        for e in state.icmp_errors:
            for p in _icmp_pairs(e):
                out.setdefault(p, []).append(("i", id(e)))
        for fs in state.incomplete_fragments:
            out.setdefault(_pair(fs.src, fs.dst), []).append(("f", id(fs), _fs_fp(fs)))
        return out

    def _links(self, state, maps) -> list:
        """Groups whose findings read each other: ``[(group, group)]``."""
        from dissect.vpn.registry import NotifyV2

        links = []
        memo = self.redirect_memo
        fresh = {}
        by_initiator: dict = {}
        redirected = []
        for sa in state.ike_sas:
            if sa.initiator:
                by_initiator.setdefault(sa.initiator[1], []).append(sa)
            if sa.version != 2:
                continue
            m = memo.get(id(sa))
            if m is None or m[0] != len(sa.messages) or m[2] is not sa:
                clients = tuple({x.dst for x in sa.messages
                                 if x.is_response and x.has_notify(NotifyV2.REDIRECT)})
                m = (len(sa.messages), clients, sa)
            fresh[id(sa)] = m
            if m[1]:
                redirected.append((sa, m[1]))
        self.redirect_memo = fresh
        for sa, clients in redirected:
            g = maps["ike_sas"][id(sa)]
            for c in clients:
                for o in by_initiator.get(c, ()):
                    links.append((g, maps["ike_sas"][id(o)]))
        return links

    # -- a run -------------------------------------------------------------------------------

    #: :meth:`run_split`: the rules are shared with a forked process when the dirty part holds
    #: at least this many SAs (below, the fork costs more than it saves)
    SPLIT_ABOVE = 2000

    def run_split(self, state) -> list:
        """:meth:`run` with the dirty part's local rules shared between this process and a
        forked one (the other core: live's stop, where the report waits for the rules); the
        result is :meth:`run`'s."""
        self._split = True
        try:
            return self.run(state)
        finally:
            self._split = False

    def _halves(self, local) -> tuple:
        """``local`` in two lists of about equal cost (each rule's CPU time in the last run
        that timed it; the order of ``local`` kept in each)."""
        cost = self.rule_seconds
        order = sorted(range(len(local)), key=lambda i: -cost.get(local[i][1], 0.01))
        load = [0.0, 0.0]
        side = {}
        for i in order:
            k = 0 if load[0] <= load[1] else 1
            side[i] = k
            load[k] += cost.get(local[i][1], 0.01)
        return ([x for i, x in enumerate(local) if side[i] == 0],
                [x for i, x in enumerate(local) if side[i] == 1])

    _split = False  # run_split's run in progress
    _running = None  # run_split's forked half (_RulesChild) while it runs

    def abandon(self) -> list:
        """A :meth:`run` or :meth:`verdicts` left in the middle (live's stop past its bound:
        :mod:`pcapvpn.live.finish`): the hooks on the findings' messages are taken off and the
        forked half of the rules, if running, is killed; returns the pids to reap.  The cache
        is not to be used after."""
        import signal

        _REC[0] = None
        _hooks(False)
        _CUR.clear()
        child, self._running = self._running, None
        if child is None or child.pid is None:
            return []
        try:
            os.kill(child.pid, signal.SIGKILL)
        except OSError:
            pass
        if child.fd is not None:
            try:
                os.close(child.fd)
            except OSError:
                pass
        return [child.pid]

    def run(self, state) -> list:
        from pcapvpn.rules.common import Context

        load_all()
        rules = _ordered()
        names = [f"{fn.__module__}.{fn.__qualname__}" for fn in rules]
        full_ctx = Context(state)
        maps, members, pairs = self._groups(state)
        now = state.now
        facts = tuple(bool(getattr(state, k)) for k in KINDS)
        everything = (self.start != full_ctx.start or facts != self.facts
                      or getattr(state, "vantage", None) is not None)
        if self.start != full_ctx.start or getattr(state, "vantage", None) is not None:
            self.units.clear()  # the bodies' texts are relative to the start
        self.start = full_ctx.start
        self.facts = facts
        self._prune_units(maps)
        self._units_fresh = set()
        self._units_dropped = set()
        fps = {g: self._fingerprint(g, obj) for g, obj in members.items()}
        shared: dict = {}  # computed once over the whole state, for every sub-state of the run
        side = self._side_facts(state)
        adj: dict = {}
        if everything:
            dirty = set(members)
        else:
            dirty = self._changed(state, members, fps, side, pairs, shared)
            # links: a dirty group makes the groups it reads (and that read it) dirty
            for a, b in self._links(state, maps):
                if a != b:
                    adj.setdefault(a, set()).add(b)
                    adj.setdefault(b, set()).add(a)
            _close(dirty, adj)
        # the groups no longer held are forgotten
        for g in list(self.groups):
            if g not in members:
                del self.groups[g]
        # per rule, the clean groups whose results of that rule follow the clock or reached a
        # deadline: that rule alone runs again for them
        timed: dict = {}
        rendered = 0
        for g, grp in self.groups.items():
            if g in dirty:
                continue
            for name in grp.clock:
                timed.setdefault(name, set()).add(g)
            for name, at in grp.deadlines.items():
                if now >= at:
                    timed.setdefault(name, set()).add(g)
            if grp.rendered:  # the texts that follow the clock, written for this ``now``
                for name, at in grp.rendered.items():
                    if at == now or name in self.global_rules or (
                            name in timed and g in timed[name]):
                        continue
                    if _render_rows(grp.found.get(name, ()), now):
                        grp.rendered[name] = now
                        rendered += 1
                    else:
                        timed.setdefault(name, set()).add(g)
        for name, gs in timed.items():
            _close(gs, adj)
            gs -= dirty  # those run anyway
        self._side = side
        self._held = set(members)
        rec = _Recorder(self, maps, now)
        self.stats_units = {}  # rule name -> [per-SA bodies run, asked]
        owners = _owners(state, maps)
        base = _SubContext(_sub(state, owners, dirty, now, shared), rec)
        touched = set(dirty)
        new = {g: _Group(fp=fps[g]) for g in dirty}
        out_by_rule: dict = {}
        again = []
        runs = {}
        _REC[0] = rec
        _hooks(True)
        WALKED.clear()

        def run_locals(items) -> None:
            for fn, name in items:
                c0 = time.process_time()
                rec.rule = name
                runs[name] = len(dirty)
                ok = self._run_local(fn, name, base, rec, new, dirty)
                extra = timed.get(name)
                if ok and extra:
                    # the clean groups whose results of this rule follow the clock: this rule
                    # alone, over them alone (the dirty part's context and indexes are kept)
                    for g in extra:
                        if g not in new:
                            new[g] = _Group(fp=self.groups[g].fp, partial=True)
                    touched.update(extra)
                    ctx = _SubContext(_sub(state, owners, extra, now, shared), rec)
                    runs[name] += len(extra)
                    ok = self._run_local(fn, name, ctx, rec, new, extra)
                if not ok:
                    self.global_rules.add(name)
                    again.append(name)
                self.rule_seconds[name] = time.process_time() - c0

        try:
            local = [(fn, name) for fn, name in zip(rules, names)
                     if name not in self.global_rules]
            forked = None
            if self._split and len(base.state.ike_sas) + len(base.state.esp_sas) >= self.SPLIT_ABOVE:
                mine, theirs = self._halves(local)
                forked = self._running = _RulesChild(self, theirs, run_locals, new, runs,
                                                     touched, again)
                local = mine
            run_locals(local)
            if forked is not None:
                forked.join(run_locals)
                self._running = None
        finally:
            _REC[0] = None
            _hooks(False)
            _CUR.clear()
        for g, grp in new.items():
            if grp.partial:  # only some rules ran for it: the others' results stay
                old = self.groups[g]
                for name in grp.ran:
                    for part in ("found", "cuts", "deadlines", "facts"):
                        getattr(old, part).pop(name, None)
                        v = getattr(grp, part).get(name)
                        if v is not None:
                            getattr(old, part)[name] = v
                    old.clock.discard(name)
                    old.rendered.pop(name, None)
                old.clock |= grp.clock
                old.rendered.update(grp.rendered)
            else:
                self.groups[g] = grp
        self._fresh = touched
        gl = set(self.global_rules)
        # the cuts of every group, in the order a full run would have made them
        pos = _positions(state)
        cuts = [c for grp in self.groups.values() for name, cs in grp.cuts.items()
                if name not in gl for c in cs]
        cuts.sort(key=lambda c: (c[0], c[1], _pos(pos, c[3], c[2]), c[4]))
        for _ri, _rank, _k, _kind, _seq, what, ref, ts in cuts:
            full_ctx.cut_short(what, ref, ts)
        # the global rules, over the whole state
        for fn, name in zip(rules, names):
            if name in gl:
                out_by_rule[name] = _collect(fn, full_ctx)
        # the local rules' findings: every group's, in the order of the lists they walked
        merged: dict = {}
        for grp in self.groups.values():
            for name, rows in grp.found.items():
                if name not in gl:
                    merged.setdefault(name, []).extend(rows)
        out = []
        seen = set()
        origin: dict = {}
        for name in names:
            if name in out_by_rule:
                found = out_by_rule[name]
            else:
                rows = merged.get(name, [])
                rows.sort(key=lambda r: (r[0], _pos(pos, r[2], r[1]), r[3]))
                found = []
                for r in rows:
                    c = _copy(r[4])
                    origin[id(c)] = (c, r[4])
                    found.append(c)
            for f in found:
                if f.id in seen:
                    continue
                seen.add(f.id)
                out.append(f)
        out = _drop_superseded(out)
        _show_fragments(full_ctx, out)
        self._maps, self._fps, self._origin = maps, fps, origin
        sub = base.state
        self.stats = {"groups": len(members), "dirty": len(dirty),
                      "ike_sas": len(sub.ike_sas), "esp_sas": len(sub.esp_sas),
                      "tunnels": len(sub.tunnels), "vpn_tunnels": len(sub.vpn_tunnels),
                      "timed": {k: len(v) for k, v in timed.items() if k not in gl},
                      "group_runs": sum(runs.values()), "rendered": rendered,
                      "global_rules": sorted(gl), "again": len(again),
                      "walked": dict(WALKED),
                      "units": {k.rsplit(".", 1)[-1]: {"computed": v[0], "asked": v[1]}
                                for k, v in self.stats_units.items()}}
        return out

    # -- the verdicts -------------------------------------------------------------------------

    def verdicts(self, ctx, findings) -> list:
        """:func:`pcapvpn.rules.verdict.tunnel_verdicts` of the findings the last :meth:`run`
        handed out, computed again only for the tunnels whose verdict may have changed: a
        tunnel's verdict is kept, with what it changed in the tunnel's findings (a recovery's
        severity and note, a consequence's note), while the tunnel's fingerprint and the kept
        findings its findings were copied from are the same, no deadline its verdict compared
        ``now`` with has passed and no text of it follows the clock (``now`` is a
        :class:`_Dep` there, as in the rules).  Everything is computed when a finding of the
        state is a redirect (a verdict then reads another tunnel's), with ``--vantage`` and
        on a damaged capture (the coverage of each tunnel's span)."""
        from pcapvpn.rules.common import Context
        from pcapvpn.rules.verdict import tunnel_verdicts

        state = ctx.state
        cap = state.capture
        maps, fps, origin = self._maps, self._fps, self._origin
        if (getattr(state, "vantage", None) is not None or not maps
                or (cap is not None and getattr(cap, "damage", None))
                or any(f.code == "IKE_REDIRECT" for f in findings)):
            self.kept_verdicts = {}
            self._verdicts_fresh = set()
            self.stats_verdicts = {"computed": len(state.tunnels) + len(state.vpn_tunnels),
                                   "kept": 0}
            return tunnel_verdicts(ctx, findings)
        now = state.now
        by_group: dict = {}
        tmap, vmap = maps["tunnels"], maps["vpn_tunnels"]
        # (tunnel, its id, its group) in the order of the verdicts (a VPN tunnel's id is made
        # at each read: read once)
        ipsec = [(t, t.id) for t in state.tunnels]
        ipsec = [(t, tid, tmap[tid]) for t, tid in ipsec]
        vpn = [(t, t.id, vmap[id(t)]) for t in state.vpn_tunnels]
        gid = {tid: g for _t, tid, g in ipsec}
        gid.update((tid, g) for _t, tid, g in vpn)
        for f in findings:
            g = gid.get(f.tunnel)
            if g is not None:
                by_group.setdefault(g, []).append(f)
        inner = getattr(state, "inner_models", None) or {}
        kept = self.kept_verdicts
        fresh: dict = {}
        todo_t, todo_v = [], []
        keys = {}
        reuse = {}
        reasons: dict = {}  # why a verdict was computed: how many
        for lst, todo in ((ipsec, todo_t), (vpn, todo_v)):
            for item in lst:
                t, tid, g = item
                fs = by_group.get(g, ())
                kf = []
                for f in fs:
                    o = origin.get(id(f))
                    if o is None or o[0] is not f:
                        # a finding of a global rule, made anew every run: by its value
                        kf.append(_Global(_copy(f)))
                    else:
                        kf.append(o[1])
                key = (fps.get(g), ctx.start, tuple(kf))
                keys[g] = key
                old = kept.get(g)
                if tid in inner:
                    why = "inner"
                elif old is None:
                    why = "new"
                elif old[4]:
                    why = "clock"
                elif now >= old[3]:
                    why = "deadline"
                elif old[0][0] != key[0] or old[0][1] != key[1]:
                    why = "changed"
                elif len(old[0][2]) != len(kf) or not all(
                        a is b or (type(a) is _Global and type(b) is _Global and a == b)
                        for a, b in zip(old[0][2], kf)):
                    why = "findings"
                else:
                    got = _rendered_verdict(old, now) if old[5] else (old[1].not_seen, old[2])
                    if got is not None:
                        reuse[g] = (old, got)
                        continue
                    why = "clock"
                todo.append(item)
                reasons[why] = reasons.get(why, 0) + 1
        computed = {}
        if todo_t or todo_v:
            sub = copy.copy(state)
            sub.now = _Dep(now)
            for kind, todo in (("tunnels", todo_t), ("vpn_tunnels", todo_v)):
                lst = _Seq(t for t, _tid, _g in todo)
                lst.kind = kind
                lst.whole = bool(getattr(state, kind))
                setattr(sub, kind, lst)
            rec = _Recorder(self, maps, now)
            rec.rule = "verdict"
            sub_fs = [f for g in keys if g not in reuse for f in by_group.get(g, ())]
            before = {id(f): f.detail for f in sub_fs}
            vctx = Context(sub)
            _REC[0] = rec
            _hooks(True)
            _CUR.clear()
            try:
                got = tunnel_verdicts(vctx, sub_fs)
            finally:
                _REC[0] = None
                _hooks(False)
                _CUR.clear()
            for v in got:
                computed[v.tunnel] = v
            unplaced = rec.unplaced
            deadlines = rec.deadlines.get("verdict", {})
            clock = rec.clock.get("verdict", set())
            made = rec.follow.get("verdict", {})
            for _t, tid, g in todo_t + todo_v:
                key = keys[g]
                if unplaced or tid in inner:
                    continue
                fs = by_group.get(g, ())
                changes = []
                for f in fs:
                    notes = _notes(f.detail, before[id(f)])
                    if notes is None:  # the detail replaced, not added to: not kept
                        break
                    changes.append((f.severity, notes, f.recovered))
                else:
                    v = computed[tid]
                    follows = False
                    if g in made and g not in clock:
                        # its texts that follow the clock (what could not be judged yet, the
                        # notes it added): written again for a later now when they are all
                        # in the verdict's list and notes, else it is computed again
                        reach: set = set()
                        for x in getattr(v, "not_seen_all", v.not_seen):
                            _reach(x, reach)
                        for _sev, notes, _r in changes:
                            for n in notes:
                                _reach(n, reach)
                        for f in fs:  # (the joins of its notes to the details)
                            _reach(f.detail, reach)
                        follows = all(id(m) in reach for m in made[g])
                    fresh[g] = (key, v, changes, deadlines.get(g, _INF),
                                g in clock or (g in made and not follows), follows)
        out = []
        for lst in (ipsec, vpn):
            for _t, tid, g in lst:
                got = reuse.get(g)
                if got is None:
                    out.append(computed[tid])
                    continue
                old, (not_seen, changes) = got
                for f, (sev, notes, rec_) in zip(by_group.get(g, ()), changes):
                    f.severity = sev
                    for n in notes:  # the notes the verdict added, after the text as it is now
                        f.detail += n
                    f.recovered = dict(rec_) if rec_ is not None else None
                fresh[g] = old
                out.append(dataclasses.replace(old[1], findings=list(old[1].findings),
                                               not_seen=list(not_seen)))
        self.kept_verdicts = fresh
        self._verdicts_fresh = {g for _t, _tid, g in todo_t + todo_v}
        self.stats_verdicts = {"computed": len(todo_t) + len(todo_v), "kept": len(reuse),
                               "why": reasons}
        return out

    def _prune_units(self, maps) -> None:
        """The per-SA results of SAs no longer held are forgotten."""
        held = maps["esp_sas"].keys() | maps["ike_sas"].keys()
        for name, mine in self.units.items():
            gone = mine.keys() - held
            for k in gone:
                del mine[k]

    def unit(self, rec, sa, fp, body, valid=None) -> list:
        """:func:`per_sa` under this cache: the kept result of the rule running for ``sa``
        when its fingerprint is ``fp``, no deadline it compared with has passed and
        ``valid(result)`` holds, else ``body()`` (kept when it used ``now`` only in
        comparisons)."""
        name = rec.rule
        mine = self.units.setdefault(name, {})
        k = id(sa)
        got = mine.get(k)
        now = rec.now
        counts = self.stats_units.setdefault(name, [0, 0])
        counts[1] += 1
        if got is not None and got[0] == fp and now < got[2] and (
                valid is None or valid(got[1])) and (
                not got[3] or _render_rows([(0, 0, 0, 0, f) for f in got[1] if _texts(f)], now)):
            # (its findings' texts that follow the clock written for this now, in place)
            g = rec.group()
            if g is not None:
                if got[2] != _INF:
                    rec.deadline(g, got[2])
                if got[3]:  # the group's findings of this rule follow the clock
                    rec.follow.setdefault(name, {}).setdefault(g, [])
            if got[3] and rec.watch is not None:
                rec.watch[0] = True  # (a body around this one: not kept)
            return list(got[1])
        counts[0] += 1
        outer = rec.watch
        watch = rec.watch = [False, _INF, []]
        try:
            found = list(body())
        finally:
            rec.watch = outer
        made = watch[2]
        if outer is not None:
            outer[2].extend(made)
        if watch[0] or (made and not _placed(made, [f for f in found if _texts(f)])):
            if mine.pop(k, None) is not None:
                self._units_dropped.add((name, k))
        else:
            mine[k] = (fp, tuple(found), watch[1], bool(made))
            self._units_fresh.add((name, k))
        return found

    def _changed(self, state, members, fps, side, pairs, shared) -> set:
        """The groups whose content changed since the previous run (new SAs, packets,
        messages; a keepalive, ICMP error or fragment set of their addresses; an aggregate they
        read), or that hold inner traffic."""
        dirty = set()
        for g, fp in fps.items():
            old = self.groups.get(g)
            if old is None or old.fp != fp:
                dirty.add(g)
        old_side = self._side
        for p in set(side) | set(old_side):
            if side.get(p) != old_side.get(p):
                dirty.update(pairs.get(p, ()))
        # a value of a whole-state aggregate a clean group read has changed
        agg = None
        for g, grp in self.groups.items():
            if not grp.facts or g in dirty or g not in members:
                continue
            if agg is None:
                agg = _aggregates(state, shared)
            if any(agg[n].get(k, MISSING) != v for rows in grp.facts.values()
                   for n, k, v in rows):
                dirty.add(g)
        for tid in getattr(state, "inner_models", None) or {}:
            g = ("t", tid)
            if g in members:
                dirty.add(g)
        return dirty

    def _global_fns(self, rules) -> set:
        return {fn for fn in rules if f"{fn.__module__}.{fn.__qualname__}" in self.global_rules}

    def _run_local(self, fn, name, ctx, rec, new, gs) -> bool:
        """Run one rule over the groups ``gs`` (the state of ``ctx``), its findings kept by
        group; False when it turns out global (a finding not placed, out of order, an
        exception, a use of ``now`` or of an aggregate outside its loops)."""
        kinds = self.ranks.setdefault(name, [])
        rows = []
        last = None
        _CUR.clear()
        rec.unplaced = False
        ctx.rule_name = name
        ctx.pending_cuts = []
        try:
            seq = 0
            for f in fn(ctx) or ():
                g = rec.group()
                if g is None:
                    return False
                kind, elem = _CUR[0]
                if kind not in kinds:
                    kinds.append(kind)
                rank = kinds.index(kind)
                k = _key(kind, elem)
                here = (rank, k)
                if last is not None and here != last and (
                        rank < last[0] or (rank == last[0] and not _after(ctx, kind, elem, last))):
                    return False
                last = here
                rows.append((g, (rank, k, kind, seq, f)))
                seq += 1
        except Exception:  # noqa: BLE001 - run over the whole state, where it is reported
            return False
        finally:
            _CUR.clear()
        if rec.unplaced:
            return False
        for g in gs:
            grp = new[g]
            if grp.partial:
                grp.ran.add(name)
        for g, at in rec.deadlines.get(name, {}).items():
            if g in gs:
                new[g].deadlines[name] = at
        for g in rec.clock.get(name, ()):
            if g in gs:
                new[g].clock.add(name)
        made = rec.follow.get(name)
        if made:
            by_g: dict = {}
            for g, row in rows:
                by_g.setdefault(g, []).append(row[4])
            for g, ms in made.items():
                if g not in gs:
                    continue
                grp = new[g]
                if name in grp.clock or not _placed(ms, by_g.get(g, ())):
                    grp.clock.add(name)  # a text copied elsewhere: the rule runs again
                else:
                    grp.rendered[name] = rec.now
        for g, fs in rec.facts.get(name, {}).items():
            if g in gs:
                new[g].facts[name] = fs
        for g, row in rows:
            new[g].found.setdefault(name, []).append(row)
        for c in ctx.pending_cuts:
            new[c[0]].cuts.setdefault(name, []).append(c[1])
        return True


_INF = float("inf")


def _rendered_verdict(kept, now):
    """A kept verdict's texts that follow the clock written for ``now``: ``(not_seen, changes
    to its findings)`` -- its items listed once, as :func:`pcapvpn.rules.verdict.decide` does
    (from all of them when it left some out) -- or None when two of them would now read the
    same and it did not list them all."""
    from pcapvpn.rules.verdict import _unique

    v = kept[1]
    every = getattr(v, "not_seen_all", None)
    not_seen = [_render(x, now) if type(x) is _Msg and x.follows is not None else x
                for x in (every if every is not None else v.not_seen)]
    if every is not None:
        not_seen = _unique(not_seen)
    elif len(set(not_seen)) != len(not_seen):
        return None
    changes = [(sev, tuple(_render(n, now) if type(n) is _Msg and n.follows is not None else n
                           for n in notes), r) for sev, notes, r in kept[2]]
    return not_seen, changes


class _Global:
    """A finding of a global rule in a kept verdict's key (:meth:`RuleCache.verdicts`): a
    copy of it as the verdict found it, equal to another when every field is."""

    __slots__ = ("f",)

    def __init__(self, f):
        self.f = f

    def __eq__(self, o):
        return type(o) is _Global and self.f == o.f

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self):
        return (_Global, (self.f,))


def _notes(detail, base):
    """What the verdict added to a finding's detail ``base`` (``detail`` is ``base + n1 +
    n2 ...``): ``(n1, n2, ...)``, or None when the detail is not made so."""
    out = []
    while detail is not base:
        if type(detail) is not _Msg or detail.template != _JOIN or "b" not in detail.facts:
            return None
        out.append(detail.facts["b"])
        detail = detail.facts["a"]
    return tuple(reversed(out))


def _texts(f) -> bool:
    return hasattr(f, "title") and hasattr(f, "detail")


def _placed(made, found) -> bool:
    """Whether every message ``made`` that follows the clock is within the titles and details
    of ``found`` (followed from them through the messages' facts), and nothing else holds the
    clock: a text copied into a plain string, a field other than those, is not written again."""
    reach: set = set()
    for f in found:
        _reach(f.title, reach)
        _reach(f.detail, reach)
    return all(id(m) in reach for m in made)


def _render_rows(rows, now) -> bool:
    """The kept findings ``rows`` of a rule, their texts that follow the clock written for
    ``now`` (in place: the verdicts kept for them stay); False when one would no longer be
    what the rule writes (a text past its bound, :func:`pcapvpn.findings.make`)."""
    for row in rows:
        f = row[4]
        t, d = f.title, f.detail
        if type(t) is _Msg and t.follows is not None:
            t = _render(t, now)
            if len(t) > MAX_TITLE:
                return False
            f.title = t
        if type(d) is _Msg and d.follows is not None:
            d = _render(d, now)
            if len(d) > MAX_DETAIL:
                return False
            f.detail = d
    return True


def per_sa(ctx, sa, fp, body, valid=None) -> list:
    """The findings of ``body()`` (or what a rule makes them from): a rule's work for one SA
    ``sa`` that reads that SA alone (its tunnel's id at most, which ``fp`` then holds) and
    ``now`` only in comparisons.  ``fp`` is the SA's change counter: whatever the body reads of
    it that can change.  ``valid(result)``, when given, tells whether what a kept result read
    of other SAs is still so (a look-up in the tunnel, made again: cheaper than the body).
    Under live's :class:`RuleCache` the result is kept and reused while ``fp`` stays the same,
    ``valid`` holds and no deadline the body compared ``now`` with has passed; otherwise
    (offline) ``body()`` runs."""
    unit = getattr(ctx, "unit", None)
    if unit is None:
        return list(body())
    return unit(sa, fp, body, valid)


def ike_unit_fp(sa) -> tuple:
    """What changes of an IKE SA as its messages arrive (the ``fp`` of a rule's :func:`per_sa`
    body that reads the SA and its messages)."""
    return (sa.ispi, sa.rspi, len(sa.messages), sa.last_ts, sa.initiator, sa.responder)


def _close(gs: set, adj: dict) -> None:
    """Add to ``gs`` every group linked to one of them (transitively)."""
    todo = [g for g in gs if g in adj]
    while todo:
        g = todo.pop()
        for h in adj.get(g, ()):
            if h not in gs:
                gs.add(h)
                todo.append(h)


def _sub(state, owners, gs, now, shared):
    """The part of ``state`` of the groups ``gs``: its followed lists filtered (in order),
    ``now`` a :class:`_Dep`; ``whole`` the whole state, ``facts`` the aggregates' wrapper,
    ``shared`` what the run computes once over the whole state (:func:`_owners`: each followed
    list's elements with their groups)."""
    sub = copy.copy(state)
    sub.now = _Dep(now)
    by_group = owners.get("by_group")
    if by_group is None:  # each group's elements with their positions (once per run)
        by_group = owners["by_group"] = {}
        for kind in KINDS:
            mine = by_group[kind] = {}
            for i, (x, g) in enumerate(owners[kind]):
                mine.setdefault(g, []).append((i, x))
    for kind in KINDS:
        mine = by_group[kind]
        rows = [r for g in gs for r in mine.get(g, ())]
        if len(gs) > 1:
            rows.sort(key=_first)  # in the list's order (the positions are distinct)
        lst = _Seq(x for _i, x in rows)
        lst.kind = kind
        lst.whole = bool(owners[kind])
        setattr(sub, kind, lst)
    sub.whole = state
    sub.facts = _facts
    sub.shared = shared
    return sub


def _first(row):
    return row[0]


def _owners(state, maps) -> dict:
    """Per followed list, ``[(element, its group)]`` in the list's order (once per run: every
    sub-state of the run takes its groups' elements from these; :func:`_sub` adds
    ``"by_group"``, each list's elements by group with their positions)."""
    out = {}
    for kind in KINDS:
        m = maps[kind]
        if kind == "tunnels":
            out[kind] = [(x, m[x.id]) for x in state.tunnels]
        else:
            out[kind] = [(x, m[id(x)]) for x in getattr(state, kind)]
    return out


def _copy(f):
    """A finding kept by the cache, handed out: what comes after the rules (the verdict's
    recovery and redirect notes, fragments in the filter, capture drops, vantage locations, log
    lines) changes the copy, never the kept one (its dicts and lists are copied too)."""
    g = object.__new__(f.__class__)  # as copy.copy of a plain dataclass, without its detour
    d = dict(f.__dict__)
    for k, v in d.items():
        t = type(v)
        if t is list or t is dict:
            d[k] = v.copy()
        elif isinstance(v, (dict, list)):
            d[k] = copy.copy(v)
    g.__dict__ = d
    return g


def _after(ctx, kind, elem, last) -> bool:
    """Is ``elem`` at or after the element of ``last`` in the list ``kind`` of the dirty part?"""
    pos = ctx.positions()
    return pos[kind].get(_key(kind, elem), -1) >= pos[kind].get(last[1], -1)


def _positions(state) -> dict:
    return {"tunnels": {t.id: i for i, t in enumerate(state.tunnels)},
            "ike_sas": {id(x): i for i, x in enumerate(state.ike_sas)},
            "esp_sas": {id(x): i for i, x in enumerate(state.esp_sas)},
            "vpn_tunnels": {id(x): i for i, x in enumerate(state.vpn_tunnels)}}


def _pos(pos, kind, k) -> int:
    return pos[kind].get(k, -1)


def _collect(fn, ctx) -> list:
    out = []
    try:
        for f in fn(ctx) or ():
            out.append(f)
    except Exception as e:  # noqa: BLE001 - as run_rules: a bug in one rule is reported
        out.append(_rule_error(fn, e))
    return out


def _aggregates(state, shared) -> dict:
    """The whole-state aggregates rules read through :func:`_facts`, by name."""
    from pcapvpn.rules.dataplane.common import heard_all

    from pcapvpn.rules.dataplane.sequence import _shared_counters

    h = shared.get("heard_all")
    if h is None:
        h = shared["heard_all"] = heard_all(state)
    out = {f"heard.{k}": v for k, v in h.items()}
    sc = shared.get("sequence.shared")
    if sc is None:  # the sequence rule reads the same set (once per run)
        sc = shared["sequence.shared"] = _shared_counters(state.esp_sas)
    out["sequence.shared"] = dict.fromkeys(sc, True)
    return out


def _ike_fp(sa):
    return (id(sa), len(sa.messages), sa.last_ts, sa.rspi, sa.initiator, sa.responder,
            id(sa.retry_of), id(sa.retried_by), id(sa.rekey_of), id(sa.rekeyed_by),
            sa.mid_session, sa.deleted_ts)


def _fs_fp(fs):
    return (fs.first_ts, len(fs.frames), fs.why)


def _icmp_pairs(e) -> list:
    """The address pairs an ICMP error may be tied to: the datagram it quotes, and the host
    it was sent to with the router that sent it."""
    out = [_pair(e.src, e.dst)]
    if e.quoted is not None:
        out.append(_pair(e.quoted.src, e.quoted.dst))
    return out


def _context_class():
    from pcapvpn.rules.common import Context

    class SubContext(Context):
        """The dirty part's context: notes which group each look-up budget cut belongs to."""

        def __init__(self, state, rec):
            super().__init__(state)
            self.rec = rec
            self.rule_name = None
            self.pending_cuts: list = []
            self._pos = None

        def unit(self, sa, fp, body, valid=None) -> list:
            return self.rec.cache.unit(self.rec, sa, fp, body, valid)

        def positions(self):
            if self._pos is None:
                self._pos = _positions(self.state)
            return self._pos

        def cut_short(self, what, ref=None, ts=None):
            super().cut_short(what, ref, ts)
            if self.rec.watch is not None:
                self.rec.watch[0] = True
            g = self.rec.group()
            kind, elem = _CUR[0] if _CUR else (None, None)
            kinds = self.rec.cache.ranks.get(self.rule_name, [])
            rank = kinds.index(kind) if kind in kinds else len(kinds)
            ri = _rule_index(self.rule_name)
            self.pending_cuts.append((g, (ri, rank, _key(kind, elem) if kind else None, kind,
                                          len(self.pending_cuts), what, ref, ts)))
            if g is None:
                self.rec.unplaced = True

    return SubContext


def _rule_index(name) -> int:
    for i, fn in enumerate(_ordered()):
        if f"{fn.__module__}.{fn.__qualname__}" == name:
            return i
    return -1


class _SubContext:
    """Made on first use (the rules' Context is imported late)."""

    _cls = None

    def __new__(cls, state, rec):
        if cls._cls is None:
            cls._cls = _context_class()
        return cls._cls(state, rec)


class _RulesChild:
    """Some of a run's local rules in a forked process (:meth:`RuleCache.run_split`): it runs
    ``items`` as the run would (``run_locals``) on its copy of the state and sends back what
    they left (per group and rule, the per-SA results, the rules found global, the counts);
    :meth:`join` takes that into the run (``new``, ``runs``, ``touched``, ``again``) — or, when
    the child failed, runs them here."""

    def __init__(self, cache, items, run_locals, new, runs, touched, again):
        import pickle

        self.cache, self.items = cache, items
        self.new, self.runs, self.touched, self.again = new, runs, touched, again
        self.pid = None
        if not hasattr(os, "fork") or not items:
            return
        r, w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            return
        if pid == 0:  # the child: run, send, leave without running any cleanup
            code = 0
            try:
                os.close(r)
                cache._units_fresh = set()
                cache._units_dropped = set()
                gl0 = set(cache.global_rules)
                WALKED.clear()
                run_locals(items)
                data = pickle.dumps(self._result(gl0), protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(w, "wb") as out:
                    out.write(data)
            except BaseException:  # noqa: BLE001 - the parent runs them instead
                code = 1
            os._exit(code)
        os.close(w)
        self.pid, self.fd = pid, r

    def _result(self, gl0) -> dict:
        cache = self.cache
        mine = {name for _fn, name in self.items}
        parts = {}
        for g, grp in self.new.items():
            p = {part: {n: v for n, v in getattr(grp, part).items() if n in mine}
                 for part in ("found", "cuts", "deadlines", "facts")}
            p.update(clock=grp.clock & mine, ran=grp.ran & mine, partial=grp.partial, fp=grp.fp,
                     rendered={n: v for n, v in grp.rendered.items() if n in mine})
            parts[g] = p
        return {"parts": parts, "global": cache.global_rules - gl0,
                "ranks": {n: cache.ranks[n] for n in mine if n in cache.ranks},
                "units": [(n, k, cache.units[n][k]) for n, k in cache._units_fresh
                          if k in cache.units.get(n, ())],
                "dropped": list(cache._units_dropped),
                "stats_units": {n: v for n, v in cache.stats_units.items() if n in mine},
                "seconds": {n: v for n, v in cache.rule_seconds.items() if n in mine},
                "runs": {n: v for n, v in self.runs.items() if n in mine},
                "touched": set(self.touched), "again": [n for n in self.again if n in mine],
                "walked": dict(WALKED)}

    def join(self, run_locals) -> None:
        import pickle

        data = None
        if self.pid is not None:
            chunks = []
            fd, self.fd = self.fd, None  # (closed by the file object, whatever happens)
            with os.fdopen(fd, "rb") as f:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    chunks.append(chunk)
            os.waitpid(self.pid, 0)
            _hooks(False)  # (its messages come back as they were made)
            try:
                data = pickle.loads(b"".join(chunks))
            except Exception:  # noqa: BLE001 - the child failed: run them here
                data = None
            finally:
                _hooks(True)
        if data is None:
            run_locals(self.items)
            return
        cache, new = self.cache, self.new
        for g, p in data["parts"].items():
            grp = new.get(g)
            if grp is None:
                grp = new[g] = _Group(fp=p["fp"], partial=p["partial"])
            for part in ("found", "cuts", "deadlines", "facts"):
                getattr(grp, part).update(p[part])
            grp.clock |= p["clock"]
            grp.ran |= p["ran"]
            grp.rendered.update(p["rendered"])
        cache.global_rules |= data["global"]
        cache.ranks.update(data["ranks"])
        for n, k, entry in data["units"]:
            cache.units.setdefault(n, {})[k] = entry
            cache._units_fresh.add((n, k))
        for n, k in data["dropped"]:
            cache.units.get(n, {}).pop(k, None)
        cache.stats_units.update(data["stats_units"])
        cache.rule_seconds.update(data["seconds"])
        self.runs.update(data["runs"])
        self.touched |= data["touched"]
        self.again.extend(data["again"])
        for k, v in data["walked"].items():
            WALKED[k] = WALKED.get(k, 0) + v
