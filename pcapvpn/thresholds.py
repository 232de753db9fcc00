"""Every threshold of the diagnosis, in one table.

They are options of both ``analyze`` and ``live`` (``--set NAME=VALUE``), so the two always agree.
README "Thresholds" and docs/findings.md list them (generated from this table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

#: the valid values of the integer thresholds, ``(lowest, highest or None)``; every float
#: threshold is a time or a size that must be finite and greater than 0
INT_RANGES = {
    "one_way_min_packets": (1, None),
    # the sequence analysis keeps a bitmask this wide per SA: far above any implementation's
    # window (RFC 4303 §3.4.3: 32 at least, 64 preferred)
    "replay_window": (1, 1 << 16),
    "seq_gap_min": (1, None),
    # an ESP payload in an IP packet (jumbograms aside) is shorter than 64 KiB
    "large_packet": (1, 65535),
    "flap_count": (1, None),
}


@dataclass(frozen=True)
class Thresholds:
    #: seconds after an IKE request without a response before "no response" may be said (when no
    #: retransmission was seen).  strongSwan's first retransmit comes after 4 s, libreswan's after
    #: 0.5 s; 10 s covers both with room (anchors.md §2.5).
    response_timeout: float = 10.0
    #: copies of the same IKE message closer than this are capture duplicates (mirror / two
    #: interfaces), never retransmissions (seconds).
    duplicate_window: float = 0.005
    #: ESP seen in one direction only for at least this long (seconds) while the other
    #: direction is silent → one-way.
    one_way_window: float = 10.0
    #: minimum packets in the flowing direction before one-way is said.
    one_way_min_packets: int = 5
    #: a liveness/DPD request unanswered this long (seconds) counts as a failed check.
    dpd_timeout: float = 30.0
    #: anti-replay window used for the sequence analysis (RFC 4303 §3.4.3: 64 is the default).
    replay_window: int = 64
    #: at least this many missing sequence numbers on an SA before ESP_SEQUENCE_GAP is raised.
    seq_gap_min: int = 1
    #: a NAT keepalive interval longer than this (seconds) is "missing" (strongSwan default 20 s;
    #: common NAT UDP timeouts are 30-60 s).
    keepalive_max_interval: float = 60.0
    #: an ESP packet at least this large (bytes, ESP payload) is "large" for the MTU analysis.
    large_packet: int = 1300
    #: IKE SAs re-created more often than this many times in the capture → flapping.
    flap_count: int = 3
    #: how long after an SA's DELETE (seconds) ESP on its SPI is still tolerated in flight.
    delete_grace: float = 2.0
    #: how long after a rekey (seconds) the old SPI may still carry ESP before it is stale.
    rekey_drain: float = 30.0
    #: a sender clock (OpenVPN tls-auth / tls-crypt net time of a hard reset) this far from the
    #: capture's clock (seconds) is reported; it is never used to recognise a packet.
    clock_skew: float = 300.0
    #: several vantage points (--vantage): the longest one-way delay (seconds) expected between
    #: two points; a packet not seen downstream within this time after it passed upstream is
    #: lost, and a point whose capture did not run that long before / after a packet cannot judge it.
    path_delay_max: float = 2.0
    #: several vantage points: a clock offset estimated over matched packets spanning longer
    #: than this (seconds) gets a drift term (a shorter span only when a constant offset
    #: contradicts the delays each way).
    clock_drift_span: float = 600.0

    def __post_init__(self):
        for f in fields(self):
            why = _invalid(f.name, getattr(self, f.name))
            if why:
                raise ValueError(f"threshold {f.name}={getattr(self, f.name)!r}: {why}")

    def with_overrides(self, items: dict[str, str]) -> "Thresholds":
        """A copy with ``{name: text}`` applied (``--set NAME=VALUE`` of analyze and live).
        ValueError (one line naming the threshold and its valid range) for an unknown name, a
        value of the wrong type, out of range, zero or negative, NaN or infinite."""
        known = {f.name for f in fields(self)}
        values = {}
        for k, v in items.items():
            if k not in known:
                raise ValueError(f"{k}={v}: unknown threshold (known: {', '.join(sorted(known))})")
            try:
                values[k] = type(getattr(self, k))(v.strip())
            except ValueError:
                values[k] = None
            why = _invalid(k, values[k])
            if why:
                raise ValueError(f"{k}={v}: {why}")
        return replace(self, **values)


def valid_range(name: str) -> str:
    """The valid values of threshold ``name``, in words."""
    if name in INT_RANGES:
        lo, hi = INT_RANGES[name]
        return f"an integer from {lo} to {hi}" if hi is not None else f"an integer >= {lo}"
    return "a finite number > 0"


def _invalid(name: str, value) -> str | None:
    """Why ``value`` is no valid value of threshold ``name`` (None when it is one)."""
    if name in INT_RANGES:
        lo, hi = INT_RANGES[name]
        ok = (isinstance(value, int) and not isinstance(value, bool) and value >= lo
              and (hi is None or value <= hi))
    else:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value) and value > 0)
    return None if ok else f"must be {valid_range(name)}"


DEFAULT = Thresholds()


def describe(cls=Thresholds) -> list[tuple[str, object, str]]:
    """(name, default, documentation) for every field of the dataclass ``cls`` (the thresholds
    above; ``pcapvpn.limits.Limits``), from the ``#:`` comments above each field."""
    import inspect

    src = inspect.getsource(cls).splitlines()
    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in src:
        s = line.strip()
        if s.startswith("#:"):
            pending.append(s[2:].strip())
        elif ":" in s and "=" in s and not s.startswith(("def", "@", "class", "#")) and pending:
            docs[s.split(":")[0].strip()] = " ".join(pending)
            pending = []
        elif not s.startswith("#"):
            pending = []
    return [(f.name, f.default, docs.get(f.name, "")) for f in fields(cls)]
