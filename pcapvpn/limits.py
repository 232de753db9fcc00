"""The bounds of what an analysis keeps (:class:`Limits`): the decoder's fragment and TCP state,
the trackers' SAs, messages and flows, the report's lists.  A hostile capture (a flood of SPIs or
of IKE_SA_INITs, garbage) gives a bounded analysis; whatever a bound drops is counted, never
silent (the decoder's counters, ``Tracker.limits_hit``, the CAPTURE_LIMITS finding).

``analyze --limit NAME=VALUE`` overrides a bound (:meth:`Limits.with_overrides`); ``pcapvpn
live`` lowers them to what its ``--max-sas`` needs (:meth:`Limits.for_live`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = ["Limits"]


@dataclass
class Limits:
    """Memory and time bounds of the decoder's state.  Whatever a bound drops is counted
    (:meth:`pcapvpn.decode.Decoder.counters`, the capture summary's counts)."""

    #: seconds a fragment set may wait for its missing pieces (Linux ``ipfrag_time`` is 30 s).
    frag_timeout: float = 30.0
    #: concurrent fragment sets; the oldest is given up when a new one would exceed it.
    frag_max_sets: int = 4096
    #: bytes buffered over all fragment sets.
    frag_max_bytes: int = 32 * 1024 * 1024
    #: TCP stream directions followed (the least recently active is forgotten beyond it).
    tcp_max_streams: int = 4096
    #: bytes buffered per TCP direction awaiting a complete message (the largest RFC 9329 or
    #: OpenVPN message is 64 KiB; a TLS record 16 KiB + 2 KiB); also per direction of a TLS
    #: conversation for its records and handshake messages (pcapvpn.track.tlsvpn).
    tcp_max_buffer: int = 256 * 1024
    #: out-of-order segments held per TCP direction, and their bytes: beyond either, the first
    #: hole is given up (pcapvpn.tcp_reassembly); also OpenVPN control packets held per
    #: direction until a missing packet ID comes (pcapvpn.track.openvpn).
    tcp_max_ooo: int = 64
    tcp_max_ooo_bytes: int = 256 * 1024
    #: bytes held over all TCP directions (buffered + out of order): beyond it the least recently
    #: active directions holding bytes are forgotten.  With the per-direction bounds above, TCP
    #: reassembly never holds more than this, whatever the number of streams.
    tcp_max_bytes: int = 32 * 1024 * 1024

    # -- what the trackers keep (pcapvpn.track) and the report lists.  A hostile capture (a
    # flood of SPIs or of IKE_SA_INITs, garbage) must not make an analysis grow without bound:
    # each container that grows with the input has a count bound, and a byte bound where its
    # elements vary in size (else the count times the element's own bound).  What a bound
    # drops is counted and reported by the CAPTURE_LIMITS finding, so the verdict can say what
    # it could not see.
    #: IKE SAs tracked (about 5 KB each with their first messages); messages of further IKE
    #: SAs are counted from their 28-byte header only, not parsed nor kept.
    ike_max_sas: int = 10_000
    #: IKE messages kept over all IKE SAs (parsed: 2-5 KB each).
    ike_max_messages: int = 40_000
    #: bytes of IKE messages kept (their size on the wire) over all IKE SAs.
    ike_max_bytes: int = 32 * 1024 * 1024
    #: IKE messages kept per IKE SA (copies, SKF fragments, a long series of exchanges).
    ike_max_messages_per_sa: int = 4_000
    #: ESP/AH SAs tracked (1.5-6 KB each: their gaps, moves and time bins are bounded);
    #: packets of further SAs are counted only.
    esp_max_sas: int = 50_000
    #: tunnels of the VPNs beside IPsec (OpenVPN, WireGuard, L2TP, PPTP, SSL-VPN) tracked (a
    #: few KB each: their connections and evidence lists are bounded); events of further ones
    #: are counted only.
    vpn_max_tunnels: int = 20_000
    #: NAT keepalive flows, TCP connections on VPN ports, ICMP errors and incomplete fragment
    #: sets kept, each (a few hundred bytes each; frame references per flow bounded: at most
    #: this × 1 KB each).  Beyond it further ones are counted only; live forgets the least
    #: recently active TCP connection and keepalive flow instead (``Tracker.evict_least_recent``,
    #: counted), so that what carries traffic stays followed.
    max_flows: int = 10_000
    #: conversations of plaintext followed for the inner model (pcapvpn.track.inner: about
    #: 2 KB each, frame references per conversation bounded); packets of further ones are
    #: counted only.
    plain_max_flows: int = 20_000
    #: DNS queries of plaintext kept for the inner model (a few hundred bytes each).
    plain_max_dns: int = 20_000
    #: decode / IKE parse errors listed with their frame (all are counted).
    max_error_samples: int = 1_000
    #: distinct decode / IKE parse error reasons counted by name (further ones are counted
    #: together as "other reasons").
    max_error_reasons: int = 200
    #: objects listed in full per list of the report (tunnels, IKE SAs, ESP SAs, NAT keepalive
    #: flows, files, the messages and exchanges of one IKE SA, the findings of one code and
    #: severity, the SAs, findings and notes of one tunnel); the others are counted under
    #: "omitted" in JSON.
    report_max_items: int = 1_000
    #: packet records of a capture file that is not in time order indexed to analyse it in time
    #: order (pcapvpn.sources.Source.time_ordered: 44 bytes each); a bigger file is analysed in
    #: file order and CAPTURE_OUT_OF_ORDER says so.
    reorder_max_records: int = 5_000_000
    #: UDP flows of the VPNs beside IPsec bound to their tunnel (pcapvpn.track.vpn: two dict
    #: entries each, about 0.5 KB, so at most this × 512 bytes: 40 MB offline): beyond it a
    #: flow is forgotten and bound again at its next packet (CAPTURE_LIMITS ``vpn_udp_flows``):
    #: live the least recently active (either direction), offline the first bound, as before.  Offline also at most ``FLOWS_PER_TUNNEL``
    #: (4) × ``vpn_max_tunnels``, as before.
    vpn_max_udp_flows: int = 80_000
    #: OpenVPN sessions kept over all tunnels and the bytes of their state (the sessions, their
    #: control channels' packet-ID sets, held packets and TLS buffers, as
    #: :func:`pcapvpn.track.openvpn.session_bytes` estimates them: 1-2 KB for a session of a
    #: flood, up to ~2 MB for one whose every bound is full).  Enforced by live's expiry
    #: (``Tracker.expire``): beyond either, the least recently active sessions that are not
    #: their tunnel's latest are forgotten (CAPTURE_LIMITS ``vpn_max_sessions`` /
    #: ``vpn_max_session_bytes``); offline each tunnel keeps at most
    #: ``pcapvpn.track.openvpn.MAX_SESSIONS`` (64), as before, and these are that × the
    #: tunnels.
    vpn_max_sessions: int = 64 * 20_000
    vpn_max_session_bytes: int = 64 * 20_000 * 2048

    #: ``pcapvpn live`` (:meth:`for_live`): the bounds that follow ``--max-sas`` S, as
    #: ``name: (per SA, floor)``: the bound becomes ``min(value, max(floor, per SA × S))``.  A
    #: running capture keeps only what S SAs need (their negotiation and latest exchanges, 8
    #: IKE messages and 8 KiB of them per SA on average, one flow / fragment set / TCP
    #: direction / plaintext conversation per SA, 8 KiB of reassembly per SA), so that its
    #: memory levels off at a size set by S; idle and least recently active entries are
    #: evicted to make room (``Tracker.expire``) and what was evicted is counted in the report.
    #: The final report lists at most 200 objects of each kind (a stop answers at once).
    LIVE: ClassVar[dict[str, tuple[int, int]]] = {
        "frag_max_sets": (1, 64), "frag_max_bytes": (8192, 1 << 20),
        "tcp_max_streams": (1, 64), "tcp_max_bytes": (8192, 1 << 20),
        "ike_max_sas": (1, 64), "ike_max_messages": (8, 1_000),
        "ike_max_bytes": (8192, 1 << 20), "ike_max_messages_per_sa": (0, 64),
        "esp_max_sas": (1, 64), "vpn_max_tunnels": (1, 64), "max_flows": (1, 64),
        "plain_max_flows": (1, 256), "plain_max_dns": (1, 256),
        # the VPNs beside IPsec: one UDP flow and one OpenVPN session per SA on average, 2 KiB
        # of session state per SA (a session of a flood holds 1-2 KB)
        "vpn_max_udp_flows": (1, 64), "vpn_max_sessions": (1, 64),
        "vpn_max_session_bytes": (2048, 128 * 1024),
        # the final report, built at the stop: its lists at most 200 long (the stop's time)
        "report_max_items": (0, 200),
    }

    def for_live(self, max_sas: int) -> "Limits":
        """The bounds of ``pcapvpn live --max-sas max_sas`` (:data:`LIVE`): never above these."""
        import dataclasses

        return dataclasses.replace(self, **{
            name: min(getattr(self, name), max(floor, per_sa * max_sas))
            for name, (per_sa, floor) in self.LIVE.items()})

    def with_overrides(self, items: dict) -> "Limits":
        """A copy with ``{name: text}`` applied (``analyze --limit NAME=VALUE``); ValueError
        names the bad item and the valid range."""
        import dataclasses

        known = {f.name for f in dataclasses.fields(self)}
        values = {}
        for k, v in items.items():
            if k not in known:
                raise ValueError(f"unknown limit {k!r} (known: {', '.join(sorted(known))})")
            cur = getattr(self, k)
            try:
                x = type(cur)(v)
            except ValueError:
                raise ValueError(f"limit {k} needs a {type(cur).__name__}, got {v!r}") from None
            if not x > 0 or x != x or x == float("inf"):
                raise ValueError(f"limit {k} must be a positive finite number, got {v!r}")
            values[k] = x
        return dataclasses.replace(self, **values)
