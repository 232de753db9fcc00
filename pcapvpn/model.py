"""The model: plain data, JSON-serialisable with a versioned schema (docs/schema.json).

The model is the contract between tracking, rules, reports and users' own scripts.  Conventions
(DESIGN.md): ``schema_version`` at the top; SPIs and cookies as zero-padded lowercase hex strings;
times as RFC 3339 UTC plus seconds from capture start; English keys.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from dataclasses import dataclass, field, fields, is_dataclass

SCHEMA_VERSION = "0.2"


def asdict(obj):
    """:func:`dataclasses.asdict` without its deep copy of every value: the model's leaves are
    numbers, strings and None, and a report of a big capture holds tens of thousands of them."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: asdict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, list):
        return [asdict(v) for v in obj]
    if isinstance(obj, tuple):
        if hasattr(obj, "_fields"):  # a named tuple
            return type(obj)(*[asdict(v) for v in obj])
        return tuple(asdict(v) for v in obj)
    if isinstance(obj, dict):
        return {asdict(k): asdict(v) for k, v in obj.items()}
    return obj


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
    #: TCP reassembly (pcapvpn.tcp_reassembly, all followed streams): segments whose bytes were
    #: seen before; holes the capture never filled (of which given up at the out-of-order bound);
    #: stream directions forgotten and captured bytes discarded because of a memory bound
    tcp_retransmissions: int = 0
    tcp_gaps: int = 0
    tcp_gaps_by_limit: int = 0
    tcp_streams_evicted: int = 0
    tcp_bytes_dropped: int = 0
    #: TCP stream directions on the IKE ports whose bytes are no IKE/ESP framing (RFC 9329,
    #: libreswan without espintcp, Check Point raw IKE): Cisco's cTCP, another protocol
    tcp_streams_unrecognised: int = 0
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
    tunnels: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    ike_sas: list = field(default_factory=list)
    esp_sas: list = field(default_factory=list)
    nat_keepalives: list = field(default_factory=list)
    thresholds: dict = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION
    #: --log: the gateway logs read (pcapvpn.rules.logs); None without --log (no JSON key)
    log_sources: list | None = None
    #: --log: their classified events on the capture's clock
    log_events: list | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("log_sources", "log_events"):
            if d.get(k) is None:
                d.pop(k, None)
        for f in d.get("findings") or ():
            if isinstance(f, dict) and f.get("logs", ()) is None:
                del f["logs"]
        # schema_version first, as the conventions ask
        return {"schema_version": d.pop("schema_version"), **d}


# -- the analysis model (tunnels, IKE SAs, ESP SAs, findings) ------------------------------------

def frame_list(refs, names) -> list[dict]:
    out = []
    for fidx, num in refs:
        out.append({"file": names[fidx] if 0 <= fidx < len(names) else f"#{fidx}", "frame": num})
    return out


def ike_message_dict(m, start, names) -> dict:
    from dissect.vpn import registry as reg

    d = {
        "n": m.n,
        "frames": frame_list(m.frames, names),
        "time": asdict(Time.of(m.ts, start)),
        "src": f"{addr(m.src)}:{m.sport}",
        "dst": f"{addr(m.dst)}:{m.dport}",
        "transport": m.transport,
        "exchange": reg.exchange_name(m.exch, short=True),
        "exchange_type": m.exch,
        "message_id": m.msgid,
        "flags": m.flags,
        "response": m.is_response,
        "step": m.step,
        "length": m.length,
        "size": m.size,
        "payloads": [reg.payload_name(m.version, t) for t in m.payload_types],
        "notifies": [reg.notify_name(m.version, t) for t, _s, _d in m.notifies],
        "encrypted": m.encrypted,
        "sk_first_payload": (reg.payload_name(m.version, m.sk_next) if m.sk_next else
                             ("none" if m.sk_next == 0 else None)),
        "skf": list(m.skf) if m.skf else None,
        "retransmission_of": m.retransmit_of,
        "duplicate_of": m.duplicate_of,
        "parse_error": m.error,
    }
    dec = getattr(m, "decrypt_status", None)
    if dec is not None:
        d["decryption"] = ike_decryption_dict(m, start)
    return d


def ike_decryption_dict(m, start) -> dict:
    """What decrypting an IKE message gave (--keys): status, the key line used and, when the
    payloads could be read, what they say.  Secrets (AUTH data, XAUTH passwords, keys) are never
    included."""
    from dissect.vpn import registry as reg
    from pcapvpn.decrypt import SECRET_CONFIG_ATTRIBUTES, selector_text

    v = m.version
    d = {"status": m.decrypt_status, "detail": m.decrypt_detail, "key": m.key_origin}
    inner = m.inner
    if inner is None:
        return d
    d["payloads"] = [reg.payload_name(v, t) for t in inner["payload_types"]]
    d["notifies"] = [{"type": reg.notify_name(v, t), "code": t,
                      "spi": bytes(spi).hex() if spi else None,
                      "data": bytes(data[:64]).hex() if data else None}
                     for t, spi, data in inner["notifies"]]
    proto = {1: "ike", 2: "ah", 3: "esp"}
    d["deletes"] = [{"protocol": proto.get(p, str(p)), "spis": [bytes(s).hex() for s in spis]}
                    for p, spis in inner["deletes"]]
    d["child_spis"] = [{"protocol": proto.get(p, str(p)), "spi": bytes(s).hex()}
                       for p, s in inner["child_spis"]]
    d["ids"] = [{"payload": reg.payload_name(v, pt), "type": it, "value": val}
                for pt, it, val in inner["ids"]]
    d["traffic_selectors"] = {"initiator": [selector_text(x) for x in inner["ts"]["i"]],
                              "responder": [selector_text(x) for x in inner["ts"]["r"]]}
    certs = []
    for c in inner["certs"]:
        if "subject" in c:
            certs.append({"subject": c["subject"], "issuer": c["issuer"],
                          "not_before": asdict(Time.of(c["not_before"], start)),
                          "not_after": asdict(Time.of(c["not_after"], start)),
                          "subject_alt_names": list(c["subject_alt_names"])})
        else:
            certs.append({"encoding": c.get("encoding")})
    d["certificates"] = certs
    d["config"] = [{"type": ct, "attributes": [
        {"type": at, "value": None if at in SECRET_CONFIG_ATTRIBUTES
         else (val if isinstance(val, int) else bytes(val[:64]).hex())} for at, val in attrs]}
        for ct, attrs in inner["config"]]
    d["eap"] = [{"code": c, "type": t} for c, t in inner["eap"]]
    d["auth_method"] = inner["auth_method"]
    return d


def ike_sa_dict(sa, start, names) -> dict:
    from dissect.vpn import registry as reg

    def ep(e):
        if e is None:
            return None
        return {"address": addr(e[1]), "port": e[2]}

    exchanges = []
    for x in sa.exchanges:
        exchanges.append({
            "index": x.index,
            "exchange": reg.exchange_name(x.exch, short=True),
            "message_id": x.msgid,
            "requester": x.requester,
            "answered": x.answered,
            "last_step": x.last_step if x.version == 1 else None,
            "messages": [m.n for m in x.msgs],
            "retransmissions": len(x.retransmissions()),
            "duplicates": len(x.duplicates()),
        })
    return {
        "id": sa.id,
        "version": sa.version,
        "ispi": hexid(sa.ispi, 16),
        "rspi": hexid(sa.rspi, 16),
        "initiator": ep(sa.initiator),
        "responder": ep(sa.responder),
        "initiator_known": sa.initiator_known,
        "first": asdict(Time.of(sa.first_ts, start)),
        "last": asdict(Time.of(sa.last_ts, start)),
        "established": sa.established,
        "mid_session": sa.mid_session,
        "retry_of": sa.retry_of,
        "rekey_of": sa.rekey_of,
        "nat": _conventions(_plain(sa.nat), start, names),
        "exchanges": exchanges,
        "messages": [ike_message_dict(m, start, names) for m in sa.messages],
        **ike_sa_decryption(sa),
    }


def ike_sa_decryption(sa) -> dict:
    """``{"decryption": {...}}`` for an IKE SA with encrypted messages when keys were given
    (status over its messages, the key lines used); ``{}`` otherwise (keyless reports are
    unchanged)."""
    enc = [m for m in sa.messages if m.encrypted and m.duplicate_of is None
           and m.retransmit_of is None]
    tried = [m for m in enc if getattr(m, "decrypt_status", None) is not None]
    if not tried:
        return {}
    opened = [m for m in tried if m.decrypt_status in ("ok", "unverified")]
    bad = [m for m in tried if m.decrypt_status in ("icv_failed", "malformed")]
    if all(m.decrypt_status == "no_keys" for m in tried):
        status = "no_keys"
    elif len(opened) == len(enc):
        status = "decrypted"
    elif opened:
        status = "partial"
    elif bad:
        status = "key_mismatch"
    else:
        status = "not_decrypted"
    other = next((m for m in tried if m.decrypt_status not in ("ok", "unverified")), None)
    return {"decryption": {
        "status": status,
        "messages_encrypted": len(enc),
        "messages_opened": len(opened),
        "integrity_verified": bool(opened) and all(m.decrypt_status == "ok" for m in opened),
        "keys": sorted({m.key_origin for m in opened if m.key_origin}),
        "peers_keys_differ": bool(getattr(sa.crypto, "keys_differ", False)),
        "detail": (other.decrypt_detail or other.decrypt_status) if other is not None else None,
    }}


def _plain(obj):
    """dataclasses / slotted records / bytes → JSON-friendly values."""
    import dataclasses

    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (bytes, bytearray)):
        if len(obj) in (4, 16):
            try:
                return addr(bytes(obj))
            except ValueError:
                pass
        return bytes(obj).hex()
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return _plain(obj.to_dict())
    return str(obj)


def _conventions(obj, start, names, key=""):
    """Apply the JSON conventions to a tracker's plain dict: frame refs ``[file_idx, number]``
    → ``{file, frame}``; epoch floats under ``ts`` / ``*_ts`` / ``start`` → ``{utc, rel}``."""
    if isinstance(obj, dict):
        return {k: _conventions(v, start, names, k) for k, v in obj.items()}
    if isinstance(obj, list):
        if (key.endswith("frame") and len(obj) == 2 and all(isinstance(x, int) for x in obj)):
            return frame_list([tuple(obj)], names)[0]
        if key.endswith("frames"):
            return [frame_list([tuple(x)], names)[0] if isinstance(x, (list, tuple)) and len(x) == 2
                    else _conventions(x, start, names) for x in obj]
        return [_conventions(x, start, names, key) for x in obj]
    if isinstance(obj, float) and (key == "ts" or key.endswith("_ts") or key == "start"):
        return asdict(Time.of(obj, start))
    return obj


def _tunnel_inner(t) -> dict:
    """``{"inner": {...}}``: the decrypted inner traffic of a tunnel (--keys), else ``{}``."""
    from pcapvpn.track.inner import tunnel_inner_summary

    s = tunnel_inner_summary(t.esp_sas)
    return {"inner": s} if s is not None else {}


def esp_sa_dict(sa, start, names) -> dict:
    d = sa.to_dict() if hasattr(sa, "to_dict") else {}
    d = _conventions(_plain(d), start, names)
    d["spi"] = hexid(sa.spi, 8)
    d["first"] = asdict(Time.of(sa.first_ts, start))
    d["last"] = asdict(Time.of(sa.last_ts, start))
    for k in ("first_ts", "last_ts"):
        d.pop(k, None)
    return d


def tunnel_dict(t, verdict, start) -> dict:
    return {
        "id": t.id,
        "protocol": "ipsec",
        "a": addr(t.a),
        "b": addr(t.b),
        "ike_version": t.version,
        "verdict": verdict.verdict,
        "stage_reached": verdict.stage_reached,
        "failed_stage": verdict.failed_stage,
        "primary_finding": verdict.primary,
        "primary_code": verdict.primary_code,
        "findings": verdict.findings,
        "not_seen": verdict.not_seen,
        "first": asdict(Time.of(t.first_ts, start)),
        "last": asdict(Time.of(t.last_ts, start)),
        "ike_sas": [sa.id for sa in t.ike_sas],
        "esp_sas": [f"{addr(e.dst)}/{hexid(e.spi, 8)}" for e in t.esp_sas],
        "child_sa_pairs": [[f"{hexid(a.spi, 8)}" if a else None, f"{hexid(b.spi, 8)}" if b else None]
                           for a, b in t.pairs],
        **_tunnel_inner(t),
    }


def vpn_tunnel_dict(t, verdict, start, names) -> dict:
    """A tunnel of a VPN beside IPsec (pcapvpn.track.vpn.VpnTunnel): the IPsec tunnel's keys
    (``a`` the client, ``b`` the server, no IKE/ESP) plus ``protocol``, ``transport``,
    ``server_port`` and ``vpn`` (the protocol's sessions and counters)."""
    return {
        "id": t.id,
        "protocol": t.protocol,
        "transport": t.transport,
        "server_port": t.port,
        "a": addr(t.client),
        "b": addr(t.server),
        "ike_version": None,
        "verdict": verdict.verdict,
        "stage_reached": verdict.stage_reached,
        "failed_stage": verdict.failed_stage,
        "primary_finding": verdict.primary,
        "primary_code": verdict.primary_code,
        "findings": verdict.findings,
        "not_seen": verdict.not_seen,
        "first": asdict(Time.of(t.first_ts, start)),
        "last": asdict(Time.of(t.last_ts, start)),
        "ike_sas": [],
        "esp_sas": [],
        "child_sa_pairs": [],
        "vpn": _conventions(_plain(t.to_dict()), start, names),
    }
