"""Several vantage points of the same traffic (issue 16): the same packet matched at each point,
the clock offset of each point against the first, the order of the points along each tunnel's
path, and what vanished between two of them.

Each point is analysed by its own :class:`PointTracker` (a :class:`pcapvpn.track.Tracker` whose
ESP tracker is a :class:`PointEspTracker`), so the ESP fast path of every point stays what it
is for one capture.  Besides the usual per-SA counters a point keeps, per SA and bounded:

* the **holes** of its sequence numbers: ranges between the lowest and the highest number seen
  that never arrived (late arrivals fill them), at most :data:`MAX_HOLES` per SA; with the
  lowest and highest number they give the set of numbers the point saw;
* a **sample** ``sequence number -> (time, frame, length)`` of the numbers divisible by the SA's
  stride; the stride doubles (keeping only its multiples) when :data:`MAX_SAMPLES` are held.
  Every point samples the same numbers, so samples match without any coordination.

IKE messages are matched by their bytes (the IKE tracker's ``digest``: header and payloads, never
the IP/UDP headers a NAT rewrites); ESP by (SPI, sequence number), which survive NAT and UDP
encapsulation; a numbering that restarts (same SPI) or wraps (ESN) is never paired across the
restart.  The other VPNs by their own numbers (:mod:`.seqflows`: AH, WireGuard, OpenVPN, L2TP,
DTLS, PPTP GRE) and plaintext by what a NAT leaves alone (:mod:`.plain`).  Capture duplicates at
one point are folded first (the IKE tracker marks them; the ESP tracker counts them apart), so a
copy is never taken for a second point.

Clock offset of point *k* against point 0 (the NTP way, RFC 5905 §8): for matched packets
``d = t_k - t_0``.  Packets that travel from point 0's side to point *k*'s have ``d = θ + δ``,
those the other way ``d = θ - δ'``, so θ lies between the largest ``d`` of one direction and the
smallest of the other; the estimate is the middle and the uncertainty half the width (half the
smallest round trip).  Directions are told by the packet's addresses at point 0 (a pair of
directions ``a -> b`` / ``b -> a``).  With a span longer than ``clock_drift_span``, or when a
constant offset contradicts the bounds, the offset gets a drift term fitted over time windows.

Nothing here judges: :mod:`pcapvpn.rules.path` turns the facts into findings and locations.

Modules: :mod:`.points` (the per-point trackers), :mod:`.seqflows`, :mod:`.plain`,
:mod:`.clock` (offsets), :mod:`.matching` (:func:`match`, each tunnel's path view),
:mod:`.segments` (losses, path facts, the ladder), :mod:`.access` (what a point saw of one
flow, whatever its protocol), :mod:`.ranges`, :mod:`.hints` (the ``--vantage`` hint).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: sequence-number holes kept per SA and point (beyond them the SA's comparison is approximate)
MAX_HOLES = 4096
#: matched-packet samples kept per SA and point
MAX_SAMPLES = 512
#: time windows for the drift fit
DRIFT_WINDOWS = 8
#: IKE messages kept per tunnel for the path ladder
MAX_LADDER = 200
#: lost ESP ranges named by a finding's display filter and evidence
FILTER_RANGES = 5


# -- the model ----------------------------------------------------------------------------------

@dataclass
class Point:
    """One vantage point: a name, its files (pieces of one capture), optionally one interface."""

    name: str
    files: list
    iface: str | None = None
    tracker: object = None
    decoder: object = None
    sources: list = field(default_factory=list)
    start: float | None = None
    end: float | None = None
    #: capture drops the files report (pcapng ISB / packet block drop counts), None if unknown
    drops: int | None = None
    #: clock relative to point 0 (filled by :func:`match`)
    offset: "Offset | None" = None

    def file(self, idx: int) -> str:
        """The name of file ``idx`` (file indices run over every point's files)."""
        names = self.tracker.names
        return names[idx] if 0 <= idx < len(names) else f"#{idx}"


class HostClasses:
    """Union-find over ``(point, address)``: the same host seen at several points (NAT changes
    its address between points; matched packets tie the addresses together)."""

    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        p = self.parent
        root = x
        while p.get(root, root) != root:
            root = p[root]
        while p.get(x, x) != root:
            p[x], x = root, p[x]
        return root

    def union(self, x, y):
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            # the first point's address names the class
            if ry < rx:
                rx, ry = ry, rx
            self.parent[ry] = rx


@dataclass
class SegmentLoss:
    """Packets of one flow seen at ``src`` (a point name, or None: before the first point) and
    never at ``dst`` (None: after the last point)."""

    kind: str  # "esp" | "ike" | "ah" | "wireguard" | "openvpn" | "l2tp"
    src: str | None
    dst: str | None
    tunnel: str
    #: ESP: the SPI; IKE: the IKE SA (initiator SPI bytes), exchange type, Message ID
    spi: int | None = None
    ike: tuple | None = None
    lost: int = 0
    ranges: list = field(default_factory=list)
    approximate: bool = False
    #: evidence: [(point, file, frame)]
    frames: list = field(default_factory=list)
    #: IKE: descriptions of the lost messages (``request``, ``response``, ``fragment 2/3`` ...)
    messages: list = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None
    #: IKEv2 exchange type / IKEv1 exchange type (for the stage), and the version
    exch: int | None = None
    version: int | None = None
    #: the direction: True when it flows from the tunnel's side ``a`` to ``b``
    forward: bool = True
    #: the other VPNs' flows: the words naming it, and the width of its numbers in bits
    flow: str | None = None
    width: int = 32
    #: the other VPNs' flows: the flow's key (:class:`seqflows.SeqFlow`)
    key: object = None


@dataclass
class PathView:
    """One tunnel (of the first point) seen from every point."""

    tunnel: str
    #: point names from the tunnel's ``a`` side to its ``b`` side (those that saw it)
    order: list = field(default_factory=list)
    #: points whose place could not be told (nothing of the tunnel matched)
    unplaced: list = field(default_factory=list)
    #: {point: {"a_to_b": packets, "b_to_a": packets}} (IKE + ESP)
    packets: dict = field(default_factory=dict)
    #: [{"from", "to", "direction", "delay_s", "delay_min_s", "delay_max_s", "samples"}]
    delays: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    #: [{"from", "to", "direction", "spi", "packets", "why"}]: seen downstream, never upstream
    appeared: list = field(default_factory=list)
    #: [{"from", "to", "spi", "reordered_from", "reordered_to"}]
    reordering: list = field(default_factory=list)
    #: [{"points": {name: "addr:port -> addr:port"}, "what"}]
    nat: list = field(default_factory=list)
    #: [{"from", "to", "spi", "what", ...}]
    mtu: list = field(default_factory=list)
    #: the tunnel's flows (for the rules' locations; not in the JSON): ESP ``[(spi, a->b,
    #: {point index: EspSA})]``, IKE ``[(digest, a->b, {point index: [IkeMsg]})]``
    esp_flows: list = field(default_factory=list)
    ike_flows: list = field(default_factory=list)
    #: AH and the other VPNs' numbered flows: ``[(key, a->b, {point index: EspSA or
    #: SeqFlow})]`` (keys: ``("ah", spi)``, ``(kind, key, epoch)``)
    seq_flows: list = field(default_factory=list)
    #: point indices in ``order``
    placed: list = field(default_factory=list)
    #: the IKE messages for the path ladder (one column per point), in time order, at most
    #: MAX_LADDER: ``{"label", "forward", "seen": {point name: (time on the first point's
    #: clock, copies)}}``
    messages: list = field(default_factory=list)


@dataclass
class Vantage:
    points: list
    paths: dict = field(default_factory=dict)  # tunnel id -> PathView
    #: IKE message digest -> {point name: [IkeMsg, ...]} (copies at one point folded)
    ike_seen: dict = field(default_factory=dict)
    #: ESP SPI -> {point name: EspSA}
    esp_seen: dict = field(default_factory=dict)
    classes: object = None
    #: plaintext packets of a conversation direction seen at one point and never at the next
    #: (:class:`pcapvpn.track.vantage.plain.PlainLoss`), and the NAT translations they showed
    plain_losses: list = field(default_factory=list)
    plain_nat: list = field(default_factory=list)
    #: finding id -> PlainLoss of the inner findings the path rule made (pcapvpn.rules.path)
    plain_findings: dict = field(default_factory=dict)

    def point(self, name):
        for p in self.points:
            if p.name == name:
                return p
        return None


# the package's modules (they use the model above)
from pcapvpn.track.vantage.clock import Offset, estimate_offset  # noqa: E402
from pcapvpn.track.vantage.hints import (  # noqa: E402
    EspPairSampler, same_interfaces_hint, same_packets_hint)
from pcapvpn.track.vantage.matching import match  # noqa: E402
from pcapvpn.track.vantage.points import (  # noqa: E402
    PointEspTracker, PointTracker, SampleSet)
from pcapvpn.track.vantage.ranges import r_clip, r_count, r_diff, r_union  # noqa: E402

__all__ = [
    "MAX_HOLES", "MAX_SAMPLES", "DRIFT_WINDOWS", "MAX_LADDER", "FILTER_RANGES", "Point",
    "SegmentLoss", "PathView", "Vantage", "Offset", "estimate_offset", "EspPairSampler",
    "same_interfaces_hint", "same_packets_hint", "match", "PointEspTracker", "PointTracker",
    "SampleSet", "r_clip", "r_count", "r_diff", "r_union",
]
