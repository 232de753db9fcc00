"""The model: plain data, JSON-serialisable with a versioned schema (docs/schema.json).

The model is the contract between tracking, rules, reports and users' own scripts.  Conventions
(DESIGN.md): ``schema_version`` at the top; SPIs and cookies as zero-padded lowercase hex strings;
times as RFC 3339 UTC plus seconds from capture start; English keys.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from dataclasses import asdict, dataclass, field

SCHEMA_VERSION = "0.1"


def rfc3339(ts: float | None) -> str | None:
    """RFC 3339 UTC with microseconds, e.g. ``2026-11-26T17:33:23.123456Z``."""
    if ts is None:
        return None
    d = _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def addr(packed: bytes) -> str:
    """Packed IPv4/IPv6 address → text."""
    return str(ipaddress.ip_address(packed))


def hexid(value: int | bytes, width: int) -> str:
    """SPIs / cookies: zero-padded lowercase hex (``width`` hex digits)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex().rjust(width, "0")
    return format(value, "0%dx" % width)


@dataclass
class Time:
    """A point in time: RFC 3339 UTC and seconds from the start of the capture."""

    utc: str | None
    rel: float | None

    @classmethod
    def of(cls, ts: float | None, start: float | None) -> "Time":
        if ts is None:
            return cls(None, None)
        return cls(rfc3339(ts), round(ts - start, 6) if start is not None else None)


@dataclass
class Interface:
    index: int
    linktype: int
    linktype_name: str
    snaplen: int
    name: str | None = None
    #: pcapng ISB counters (None when the capture has no statistics block)
    if_drop: int | None = None
    os_drop: int | None = None


@dataclass
class FileInfo:
    name: str
    format: str
    compressed: bool
    frames: int
    bytes: int
    start: Time
    end: Time
    interfaces: list[Interface] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class DecodeError:
    file: str
    frame: int
    reason: str


@dataclass
class Counts:
    """What the frames carried (the classification the later stages build on)."""

    ike: int = 0
    ike_udp_500: int = 0
    ike_udp_4500: int = 0
    ike_tcp: int = 0
    esp: int = 0
    esp_ip: int = 0
    esp_udp: int = 0
    esp_tcp: int = 0
    ah: int = 0
    nat_keepalives: int = 0
    icmp_errors: int = 0
    ip_fragment_frames: int = 0
    reassembled_datagrams: int = 0
    incomplete_fragment_sets: int = 0
    tcp_segments_on_vpn_ports: int = 0
    non_ip_frames: int = 0
    other_ip_frames: int = 0
    truncated_frames: int = 0


@dataclass
class CaptureSummary:
    files: list[FileInfo]
    frames: int
    start: Time
    end: Time
    duration: float
    linktypes: dict[str, int]
    drops: dict[str, int | None]
    counts: Counts
    decode_errors: int
    decode_errors_by_reason: dict[str, int]
    decode_error_samples: list[DecodeError]
    warnings: list[str]


@dataclass
class Report:
    """Top-level document (``--format json``)."""

    tool: str
    version: str
    capture: CaptureSummary
    schema_version: str = SCHEMA_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        # schema_version first, as the conventions ask
        return {"schema_version": d.pop("schema_version"), **d}
