"""The model: plain data, JSON-serialisable with a versioned schema (docs/schema.json).

The model is the contract between tracking, rules, reports and users' own scripts.  Conventions
(DESIGN.md): ``schema_version`` at the top; SPIs and cookies as zero-padded lowercase hex strings;
times as RFC 3339 UTC plus seconds from capture start; English keys.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import math
from dataclasses import dataclass, field, fields, is_dataclass
from functools import lru_cache

SCHEMA_VERSION = "0.2"
#: bytes of a decrypted notify's data / a configuration attribute's value shown (hex) in the report
NOTIFY_DATA_SHOWN = 64


_LEAVES = frozenset((str, int, float, bool, type(None)))
_FIELDS: dict = {}  # dataclass type -> its field names


def asdict(obj):
    """:func:`dataclasses.asdict` without its deep copy of every value: the model's leaves are
    numbers, strings and None, and a report of a big capture holds tens of thousands of them
    (returned at once: the final report of ``live`` is built while the operator waits)."""
    t = type(obj)
    if t in _LEAVES:
        return obj
    leaves = _LEAVES
    # plain dicts and lists first (most of a report: the lists' dicts), without asking each
    # whether it is a dataclass; a leaf inside is taken as it is, without a call for it
    if t is dict:
        return {(k if type(k) in leaves else asdict(k)): (v if type(v) in leaves else asdict(v))
                for k, v in obj.items()}
    if t is list:
        return [v if type(v) in leaves else asdict(v) for v in obj]
    names = _FIELDS.get(t)
    if names is None and is_dataclass(obj) and not isinstance(obj, type):
        names = _FIELDS[type(obj)] = tuple(f.name for f in fields(obj))
    if names is not None:
        out = {}
        for k in names:
            v = getattr(obj, k)
            out[k] = v if type(v) in leaves else asdict(v)
        return out
    if isinstance(obj, list):
        return [asdict(v) for v in obj]
    if isinstance(obj, tuple):
        if hasattr(obj, "_fields"):  # a named tuple
            return type(obj)(*[asdict(v) for v in obj])
        return tuple(asdict(v) for v in obj)
    if isinstance(obj, dict):
        return {asdict(k): asdict(v) for k, v in obj.items()}
    return obj


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def rfc3339(ts: float | None) -> str | None:
    """RFC 3339 UTC with microseconds, e.g. ``2026-11-26T17:33:23.123456Z``.  Total: a time no
    four-digit year can write (before year 1, after 9999, NaN, infinite) gives None (the JSON
    ``utc: null``), never an exception."""
    if ts is None:
        return None
    try:
        d = _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        # beyond what the platform's C library converts (e.g. before 1970 on some systems)
        try:
            d = _EPOCH + _dt.timedelta(seconds=ts)
        except (OverflowError, ValueError):
            return None
    return (f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:"
            f"{d.second:02d}.{d.microsecond:06d}Z")


def addr(packed: bytes) -> str:
    """Packed IPv4/IPv6 address → text."""
    return _addr(bytes(packed))


#: addresses whose text is cached (about 230 bytes each with the key: ~1 MB).  A capture names
#: a few gateways thousands of times; a live flood of mutated frames meets ~5,000 new addresses
#: per million frames, so a bigger cache (it was 65,536: ~15 MB, full after ~13M frames) kept
#: growing long after every container held had reached its bound (issue 20).
ADDR_CACHE = 1 << 12


@lru_cache(maxsize=ADDR_CACHE)
def _addr(packed: bytes) -> str:
    # cached: reports and rules name the same gateways thousands of times, and ipaddress
    # formatting costs about 10 µs
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
        rel = ts - start if start is not None else None
        return cls(rfc3339(ts), round(rel, 6) if rel is not None and math.isfinite(rel) else None)


@dataclass
class Interface:
    """A capture interface of a file: a pcapng IDB (``index`` counts them over all sections, as
    Wireshark's ``frame.interface_id`` does within a file) or the classic pcap header."""

    index: int
    linktype: int
    linktype_name: str
    snaplen: int
    name: str | None = None
    #: pcapng ISB counters (None when the capture has no statistics block)
    if_drop: int | None = None
    os_drop: int | None = None
    #: pcapng if_description
    description: str | None = None
    #: frames captured on it
    frames: int = 0
    #: pcapng section (0-based) and the IDB's index within it (what the section's packet
    #: blocks refer to; tshark 4.0's frame.interface_id); 0 and 0 for classic pcap
    section: int = 0
    idb: int = 0
    #: Linux cooked interfaces (LINUX_SLL / LINUX_SLL2, ``tcpdump -i any``): per interface index
    #: of the SLL2 header (None for SLL) ``{ifindex, frames, packet_types: {host, outgoing,
    #: ...: frames}}`` (omitted from the JSON for other link types)
    cooked: list | None = None


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
    #: frames of the VPNs beside IPsec, by protocol (not counted in other_ip_frames)
    openvpn_frames: int = 0
    wireguard_frames: int = 0
    l2tp_frames: int = 0
    pptp_frames: int = 0
    sslvpn_frames: int = 0


@dataclass
class Damage:
    """A damaged range of a capture file (``capture.damage``; see dissect.vpn.capture.Damage):
    bytes that held no record that could be analysed.  ``frames_skipped``: records known to lie
    in it (their headers were readable); ``frames_numbered``: they keep their Wireshark frame
    numbers (else the range uses none: Wireshark stops reading there); ``trailing``: nothing
    readable follows it in its file; ``before``/``after``: the times of the packets read just
    before and after it (the gap in time it leaves)."""

    file: str
    offset: int
    length: int
    frames_skipped: int
    frames_numbered: bool
    trailing: bool
    reason: str
    before: Time | None
    after: Time | None


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
    #: when the capture stopped, later than its last frame (pcapng isb_endtime), else None
    stopped: Time | None = None
    #: damaged ranges, file by file (omitted from the JSON when there are none)
    damage: list[Damage] = field(default_factory=list)
    #: with damage: what the readable part covers, ``{first, last, share, bytes_share}``
    #: (:func:`coverage`; omitted from the JSON without damage)
    coverage: dict | None = None
    #: the files not in time order (frames earlier than a frame before them), one dict each:
    #: ``{file, frames, largest_step_s, frame, from_frame, time_order, file_order_why}``
    #: (omitted from the JSON when every file is in time order)
    out_of_order: list = field(default_factory=list)


def coverage_share(first: float | None, last: float | None, gaps, extra: float = 0.0) -> float:
    """The share of the time from ``first`` to ``last`` that lies outside the ``gaps`` (``(t0,
    t1)`` intervals of unreadable capture, overlapping or not); ``extra`` seconds more are
    unreadable without a known place (damage beyond the ranges kept).  1.0 for an instant that
    no gap contains; 0.0 when ``first`` is None (nothing readable)."""
    if first is None or last is None:
        return 0.0
    span = last - first
    if span <= 0:
        return 0.0 if any(a < first < b for a, b in gaps) else 1.0
    lost = 0.0
    end = first
    for a, b in sorted((max(a, first), min(b, last)) for a, b in gaps):
        if b <= a or b <= end:
            continue
        lost += b - max(a, end)
        end = b
    lost += extra
    return round(max(0.0, 1.0 - lost / span), 6)


class Coverage(dict):
    """The capture's ``coverage`` (``{first, last, share, bytes_share}``, a plain dict in the
    JSON) that can also be asked about any span: ``cap.coverage(first, last)`` gives the share of
    that span the readable parts cover (the verdict asks it about each tunnel)."""

    def __init__(self, d, gaps, extra=0.0):
        super().__init__(d)
        self.gaps = gaps
        self.extra = extra

    def __call__(self, first, last) -> float:
        return coverage_share(first, last, self.gaps, self.extra)


def coverage(first: float | None, last: float | None, gaps, start, extra: float = 0.0) -> dict:
    """``{first, last, share}``: a span (of a capture, or of a tunnel's own evidence) and the
    share of its time the readable parts of a damaged capture cover (:func:`coverage_share`)."""
    return {"first": asdict(Time.of(first, start)), "last": asdict(Time.of(last, start)),
            "share": coverage_share(first, last, gaps, extra)}


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
    #: repeated findings (pcapvpn.findings.finding_groups): every finding stays in ``findings``
    groups: list = field(default_factory=list)
    #: what the report does not list in full (``Limits.report_max_items``), counted: list name
    #: -> number left out (``findings``: code -> number); empty (and absent from JSON) when the
    #: report lists everything
    omitted: dict = field(default_factory=dict)
    #: several vantage points (--vantage): ``[{name, files, iface, clock_offset_s,
    #: offset_uncertainty_s, drift_ppm, matched_packets, ...}]``; None: no JSON key
    vantage_points: list | None = None
    #: several vantage points: the plaintext seen at several points (``{"nat": [...],
    #: "losses": [...]}``, :func:`inside_dict`); None: no JSON key
    vantage_inside: dict | None = None

    def to_dict(self) -> dict:
        # the lists the report's builder (pcapvpn.analysis.lists) already made of plain dicts
        # (tunnels, SAs, keepalives: JSON values only) are taken as they are, not copied by
        # asdict's walk (their leaves are most of a big report: a third of the JSON's time at
        # live's stop of 20,000 SAs, issue 20); nothing here or in the renderers changes them
        d = {}
        for k in _report_fields():
            v = getattr(self, k)
            if k in _BUILT and type(v) is list and all(type(x) is dict for x in v):
                d[k] = list(v)
            else:
                d[k] = v if type(v) in _LEAVES else asdict(v)
        cap = d["capture"]
        if not cap["damage"]:  # optional fields: a report of an undamaged capture is unchanged
            del cap["damage"]
        if cap["coverage"] is None:
            del cap["coverage"]
        if not cap["out_of_order"]:
            del cap["out_of_order"]
        for f in cap["files"]:
            for itf in f["interfaces"]:
                if itf["cooked"] is None:
                    del itf["cooked"]
        for k in ("log_sources", "log_events", "vantage_points", "vantage_inside"):
            if d.get(k) is None:
                d.pop(k, None)
        if not d["omitted"]:
            del d["omitted"]
        for f in d.get("findings") or ():
            if not isinstance(f, dict):
                continue
            for k in ("logs", "location", "aliases"):
                if f.get(k, ()) is None:
                    del f[k]
            for fr in (f.get("evidence") or {}).get("frames") or ():
                if isinstance(fr, dict) and fr.get("point", ()) is None:
                    del fr["point"]
        # schema_version first, as the conventions ask
        return {"schema_version": d.pop("schema_version"), **d}


#: the report's lists the builder makes of plain dicts (:meth:`Report.to_dict` takes them as
#: they are)
_BUILT = frozenset(("tunnels", "ike_sas", "esp_sas", "nat_keepalives"))


def _report_fields() -> tuple:
    names = _FIELDS.get(Report)
    if names is None:
        names = _FIELDS[Report] = tuple(f.name for f in fields(Report))
    return names


def kept(items, limit: int | None, ends: bool = False):
    """``(the items listed in full, the number left out)``: the first ``limit`` of ``items``, or
    with ``ends`` the first and the last ``limit // 2`` (the end of a long series shows the
    state at the end of the capture)."""
    items = list(items) if not isinstance(items, list) else items
    if limit is None or len(items) <= limit:
        return items, 0
    if ends:
        half = max(1, limit // 2)
        return items[:half] + items[-half:], len(items) - 2 * half
    return items[:limit], len(items) - limit


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
        "notifies": [reg.notify_name(m.version, n.notify_type) for n in m.notifies],
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
    from dissect.vpn.ident import selector_text
    from pcapvpn.decrypt.payloads import SECRET_CONFIG_ATTRIBUTES

    v = m.version
    d = {"status": m.decrypt_status, "detail": m.decrypt_detail, "key": m.key_origin}
    inner = m.inner
    if inner is None:
        return d
    d["payloads"] = [reg.payload_name(v, t) for t in inner.payload_types]
    d["notifies"] = [{"type": reg.notify_name(v, n.notify_type), "code": n.notify_type,
                      "spi": bytes(n.spi).hex() if n.spi else None,
                      "data": bytes(n.data[:NOTIFY_DATA_SHOWN]).hex() if n.data else None}
                     for n in inner.notifies]
    proto = {reg.ProtocolId.IKE: "ike", reg.ProtocolId.AH: "ah", reg.ProtocolId.ESP: "esp"}
    d["deletes"] = [{"protocol": proto.get(x.protocol, str(x.protocol)),
                     "spis": [bytes(s).hex() for s in x.spis]}
                    for x in inner.deletes]
    d["child_spis"] = [{"protocol": proto.get(c.protocol, str(c.protocol)), "spi": bytes(c.spi).hex()}
                       for c in inner.child_spis]
    d["ids"] = [{"payload": reg.payload_name(v, pt), "type": it, "value": val}
                for pt, it, val in inner.ids]
    d["traffic_selectors"] = {"initiator": [selector_text(x) for x in inner.ts_initiator],
                              "responder": [selector_text(x) for x in inner.ts_responder]}
    certs = []
    for c in inner.certs:
        if "subject" in c:
            certs.append({"subject": c["subject"], "issuer": c["issuer"],
                          "not_before": asdict(Time.of(c["not_before"], start)),
                          "not_after": asdict(Time.of(c["not_after"], start)),
                          "subject_alt_names": list(c["subject_alt_names"])})
        else:
            certs.append({"encoding": c.get("encoding")})
    d["certificates"] = certs
    d["config"] = [{"type": ct, "name": reg.cfg_type_name(v, ct), "attributes": [
        {"type": at, "name": reg.cfg_attribute_name(v, at),
         "value": None if at in SECRET_CONFIG_ATTRIBUTES
         else (val if isinstance(val, int) else bytes(val[:NOTIFY_DATA_SHOWN]).hex()),
         "text": None if at in SECRET_CONFIG_ATTRIBUTES else cfg_value_text(val)}
        for at, val in attrs]}
        for ct, attrs in inner.config]
    d["eap"] = [{"code": c, "type": t} for c, t in inner.eap]
    d["auth_method"] = inner.auth_method
    return d


def cfg_value_text(val) -> str | None:
    """A configuration attribute's value as read: an address (``10.0.0.5``), an address with a
    mask or prefix (``10.1.0.0/16``), a number, printable text; None for other bytes."""
    if isinstance(val, int):
        return str(val)
    b = bytes(val)
    if len(b) in (4, 16):
        return addr(b)
    if len(b) == 8:  # IPv4 address + netmask (INTERNAL_IP4_SUBNET)
        mask = int.from_bytes(b[4:], "big")
        plen = bin(mask).count("1")
        if mask == ((1 << 32) - 1) ^ ((1 << (32 - plen)) - 1):
            return f"{addr(b[:4])}/{plen}"
    if len(b) == 17 and b[16] <= 128:  # IPv6 address + prefix length
        return f"{addr(b[:16])}/{b[16]}"
    if b and all(0x20 <= c < 0x7F for c in b):
        return b.decode("ascii")
    return None


def ike_sa_dict(sa, start, names, limit: int | None = None) -> dict:
    """An IKE SA for the report.  With ``limit`` (``Limits.report_max_items``) its messages and
    exchanges beyond that many are left out (the first and the last halves are listed) and
    counted in ``messages_omitted`` / ``exchanges_omitted``; an exchange lists at most that
    many message numbers (``messages_omitted`` in the exchange)."""
    from dissect.vpn import registry as reg

    def ep(e):
        if e is None:
            return None
        return {"address": addr(e[1]), "port": e[2]}

    xs, x_left = kept(sa.exchanges, limit, ends=True)
    exchanges = []
    for x in xs:
        nums, n_left = kept([m.n for m in x.msgs], limit)
        xd = {
            "index": x.index,
            "exchange": reg.exchange_name(x.exch, short=True),
            "message_id": x.msgid,
            "requester": x.requester,
            "answered": x.answered,
            "last_step": x.last_step if x.version == 1 else None,
            "messages": nums,
            "retransmissions": len(x.retransmissions()),
            "duplicates": len(x.duplicates()),
        }
        if n_left:
            xd["messages_omitted"] = n_left
        exchanges.append(xd)
    msgs, m_left = kept(sa.messages, limit, ends=True)
    extra = {}
    if m_left:
        extra["messages_omitted"] = m_left
    if x_left:
        extra["exchanges_omitted"] = x_left
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
        "messages": [ike_message_dict(m, start, names) for m in msgs],
        **extra,
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

    t = type(obj)
    if t in _LEAVES:
        return obj
    # a tracker's plain dicts and lists first (an ESP SA's dict: its bins, gaps, frames), a
    # leaf inside taken as it is without a call for it (what the walk below returns for it)
    if t is dict:
        return {str(k): (v if type(v) in _LEAVES else _plain(v)) for k, v in obj.items()}
    if t is list or t is tuple:
        return [v if type(v) in _LEAVES else _plain(v) for v in obj]
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
        # a leaf is kept as it is (a call for it would return it) unless it is a time
        return {k: v if type(v) in _LEAVES and (type(v) is not float or not _time_key(k))
                else _conventions(v, start, names, k) for k, v in obj.items()}
    if isinstance(obj, list):
        if (key.endswith("frame") and len(obj) == 2 and all(isinstance(x, int) for x in obj)):
            return frame_list([tuple(obj)], names)[0]
        if key.endswith("frames"):
            return [frame_list([tuple(x)], names)[0] if isinstance(x, (list, tuple)) and len(x) == 2
                    else _conventions(x, start, names) for x in obj]
        if not _time_key(key) and all(type(x) in _LEAVES for x in obj):
            return list(obj)  # numbers and texts under a key that is no time (bins' counts)
        return [_conventions(x, start, names, key) for x in obj]
    if isinstance(obj, float) and _time_key(key):
        return _time_dict(obj, start)
    return obj


def _time_dict(ts: float, start: float | None) -> dict:
    """``asdict(Time.of(ts, start))`` for a time ``ts`` (not None), without the record (the
    gaps and moves of the listed ESP SAs hold thousands)."""
    rel = ts - start if start is not None else None
    return {"utc": rfc3339(ts),
            "rel": round(rel, 6) if rel is not None and math.isfinite(rel) else None}


def _time_key(key: str) -> bool:
    """A key whose epoch floats :func:`_conventions` writes as ``{utc, rel}``."""
    return key == "ts" or key.endswith("_ts") or key == "start"


def _tunnel_inner(t, inner_model=None, names=None) -> dict:
    """``{"inner": {...}}``: what the tunnel carried (the one inner model: decrypted ESP with
    --keys, and the plaintext views tied to it), else ``{}``."""
    from pcapvpn.track.inner import model_dict, tunnel_inner_summary

    s = tunnel_inner_summary(t.esp_sas) if hasattr(t, "esp_sas") else None
    if inner_model is not None:
        s = model_dict(inner_model, names, s)
    return {"inner": s} if s is not None else {}


def esp_sa_dict(sa, start, names) -> dict:
    if hasattr(sa, "sequence_counts"):  # the tracker's EspSA: the same dict, in one step
        return _esp_sa_dict_direct(sa, start, names)
    return _esp_sa_dict_walked(sa, start, names)


def _esp_sa_dict_direct(sa, start, names) -> dict:
    """The report's dict of an ESP SA (:class:`pcapvpn.track.esp_sa.EspSA`) in one step: the
    same dict as its ``to_dict()`` made plain and given the JSON conventions
    (:func:`pcapvpn.model._conventions`: frame refs as ``{file, frame}``, epoch floats under
    time keys as ``{utc, rel}``), then ``first`` / ``last`` for ``first_ts`` / ``last_ts``,
    without walking the whole dict twice more (a flood's listed SAs hold thousands of gaps,
    source changes and bins: live's stop, issue 20).  Tests compare the two."""
    n_names = len(names)

    def frame(ref):  # a ``[file index, number]`` under a key ending in "frame"
        if len(ref) == 2 and isinstance(ref[0], int) and isinstance(ref[1], int):
            f = ref[0]
            return {"file": names[f] if 0 <= f < n_names else f"#{f}", "frame": ref[1]}
        return _conventions(_plain(list(ref)), start, names, "frame")

    def frames(refs):  # refs under a key ending in "frames"
        out = []
        for r in refs:
            if len(r) == 2:
                f = r[0]
                out.append({"file": names[f] if 0 <= f < n_names else f"#{f}",
                            "frame": r[1]})
            else:
                out.append(_conventions(_plain(list(r)), start, names))
        return out

    def when(v):  # a value under a time key
        return _time_dict(v, start) if isinstance(v, float) else v

    def ip(a):
        return _addr(a) if type(a) is bytes else str(ipaddress.ip_address(a))

    d = {
        "proto": sa.proto,
        "spi": hexid(sa.spi, 8),
        "ipver": sa.ipver,
        "src": ip(sa.src),
        "dst": ip(sa.dst),
        "sport": sa.sport if sa.sport >= 0 else None,
        "dport": sa.dport if sa.dport >= 0 else None,
        "encap": sa.encap,
        "packets": sa.packets,
        "bytes": sa.bytes,
        "first_frame": frame(sa.first_ref),
        "last_frame": frame(sa.last_ref),
        "sequence": {
            **sa.sequence_counts(),
            "gaps": [{"ts": _time_dict(float(ts), start), "frame": frame(ref),
                      "expected": e, "got": g, "missing": m}
                     for ts, ref, e, g, m in sa.lost_gaps()],
            "resets_at": [{"ts": _time_dict(float(ts), start), "frame": frame(ref),
                           "from": a, "to": b} for ts, ref, a, b in sa.reset_events],
        },
        "sizes": {
            "min": sa.min_len,
            "max": sa.max_len,
            "mean": round(sa.bytes / sa.packets, 1) if sa.packets else 0,
            "large": sa.large,
            "first_large_ts": when(sa.first_large_ts),
            "last_large_ts": when(sa.last_large_ts),
        },
        "bins": {"start": when(sa.bin_base), "width": sa.bin_width,
                 "packets": sa.bin_counts()},
        "sample_frames": frames(sa.first_refs),
        "source_changes": [{"ts": _time_dict(float(ts), start), "frame": frame(ref),
                            "src": ip(s), "sport": p if p >= 0 else None}
                           for ts, ref, s, p in sa.moves],
        "source_changes_total": sa.moves_total,
        "fragmented": sa.fragmented,
        "fragment_frames": frames(sa.frag_refs),
    }
    if sa.decrypt is not None:
        d["decryption"] = _conventions(_plain(sa.decrypt.to_dict()), start, names)
    d["first"] = asdict(Time.of(sa.first_ts, start))
    d["last"] = asdict(Time.of(sa.last_ts, start))
    return d


def _esp_sa_dict_walked(sa, start, names) -> dict:
    """:func:`esp_sa_dict` by walking ``sa.to_dict()`` (the tests compare it with
    :func:`_esp_sa_dict_direct`)."""
    d = sa.to_dict() if hasattr(sa, "to_dict") else {}
    d = _conventions(_plain(d), start, names)
    d["spi"] = hexid(sa.spi, 8)
    d["first"] = asdict(Time.of(sa.first_ts, start))
    d["last"] = asdict(Time.of(sa.last_ts, start))
    for k in ("first_ts", "last_ts"):
        d.pop(k, None)
    return d


def tunnel_dict(t, verdict, start, inner_model=None, names=None, esp_sas=None,
                pairs=None) -> dict:
    """An IPsec tunnel for the report; ``esp_sas`` / ``pairs``: its ESP SAs' names and child SA
    pairs when the caller made them (the report's builder lists only those of the SAs it
    lists: :func:`pcapvpn.analysis.lists._tunnel_esp`)."""
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
        "esp_sas": [f"{addr(e.dst)}/{hexid(e.spi, 8)}" for e in t.esp_sas] if esp_sas is None
        else esp_sas,
        "child_sa_pairs": [[f"{hexid(a.spi, 8)}" if a else None, f"{hexid(b.spi, 8)}" if b else None]
                           for a, b in t.pairs] if pairs is None else pairs,
        **_tunnel_inner(t, inner_model, names),
    }


def vpn_tunnel_dict(t, verdict, start, names, inner_model=None) -> dict:
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
        **_tunnel_inner(t, inner_model, names),
    }


def vantage_points(points, start) -> list:
    """The report's ``vantage_points``: each point's files, clock against the first point
    (``clock_offset_s`` = its clock minus the first's, at the first point's capture start),
    the offset's uncertainty (None: only one direction matched, the offset includes the
    one-way delay), drift and the matched packets it rests on."""
    out = []
    for p in points:
        o = p.offset
        t0 = start if start is not None else (o.t_ref if o is not None else 0.0)
        out.append({
            "name": p.name,
            "files": [s.name for s in p.sources],
            "iface": p.iface,
            "clock_offset_s": round(o.at(t0), 6) if o is not None else None,
            "offset_uncertainty_s": (round(o.uncertainty, 6) if o is not None
                                     and o.uncertainty is not None else None),
            "drift_ppm": round(o.drift * 1e6, 3) if o is not None else None,
            "matched_packets": o.matched if o is not None else 0,
            "first": asdict(Time.of(o.to_first(p.start) if o is not None and p.start is not None
                                    else p.start, start)),
            "last": asdict(Time.of(o.to_first(p.end) if o is not None and p.end is not None
                                   else p.end, start)),
            "frames": (p.decoder.frames if getattr(p.decoder, "frames", None) is not None
                       else sum(s.frame_count for s in p.sources)),
            "capture_drops": p.drops,
            **_point_capture(p),
        })
    return out


def inside_dict(v, start) -> dict | None:
    """The report's ``vantage_inside``: plaintext (inside views) between points — the NAT
    translations learnt from matched packets, and every conversation direction with packets
    seen at one point and never at the next (whole or partial)."""
    from pcapvpn.track.vantage.plain import tuple_text

    if v is None or not (v.plain_losses or v.plain_nat):
        return None
    return {
        "nat": [{"points": n["points"], "between": n["between"]} for n in v.plain_nat],
        "losses": [{"from": x.src, "to": x.dst, "conversation": tuple_text(x.conv),
                    "at_to": tuple_text(x.conv_dst) if x.conv_dst else None,
                    "lost": x.lost, "judged": x.sent, "opener": x.opener,
                    "first": asdict(Time.of(x.first_ts, start)),
                    "last": asdict(Time.of(x.last_ts, start))} for x in v.plain_losses],
    }


def _point_capture(p) -> dict:
    """A point's capture summary: frames and span per file, frames it could not decode (by
    reason), damaged ranges."""
    files = []
    for s in p.sources:
        files.append({"name": s.name, "frames": s.frame_count,
                      "first_ts": s.first_ts, "last_ts": s.last_ts,
                      "damaged_ranges": len(getattr(s, "damage", None) or ())})
    by_reason: dict = {}
    n = 0
    dec = p.decoder
    if dec is not None and hasattr(dec, "counters"):
        n = dec.counters().get("decode_errors", 0)
        by_reason.update(getattr(dec, "errors_by_reason", {}) or {})
    it = getattr(p.tracker, "ike_tracker", None)
    if it is not None:
        n += it.parse_error_count
        for k, v in it.parse_error_reasons.items():
            by_reason[k] = by_reason.get(k, 0) + v
    return {"file_summary": files, "undecodable": n,
            "undecodable_by_reason": dict(sorted(by_reason.items()))}


def path_dict(view, start) -> dict:
    """A tunnel's ``path``: the points in order from its side ``a`` to ``b``, packets per
    direction per point, losses per segment, path facts."""
    losses = []
    for x in view.losses:
        d = {"kind": x.kind, "from": x.src, "to": x.dst, "direction":
             "a_to_b" if x.forward else "b_to_a", "lost": x.lost}
        if x.kind != "ike":
            mask = (1 << getattr(x, "width", 32)) - 1
            if x.spi is not None:
                d["spi"] = hexid(x.spi, 8)
            if getattr(x, "flow", None):
                d["flow"] = x.flow
            d["ranges"] = [[a & mask, (b - 1) & mask] for a, b in x.ranges]
            d["approximate"] = x.approximate
        else:
            d["ike_spi"] = bytes(x.ike[0]).hex()
            d["exchange"] = x.exch
            d["message_id"] = x.ike[2]
            d["messages"] = list(x.messages)
        d["first"] = asdict(Time.of(x.first_ts, start))
        d["last"] = asdict(Time.of(x.last_ts, start))
        losses.append(d)
    return {
        "order": list(view.order),
        "unplaced": list(view.unplaced),
        "packets": view.packets,
        "delays": view.delays,
        "losses": losses,
        "appeared": [{**a, "ranges": [[x & 0xFFFFFFFF, (y - 1) & 0xFFFFFFFF]
                                      for x, y in a["ranges"]]} for a in view.appeared],
        "reordering": view.reordering,
        "nat": view.nat,
        "mtu": view.mtu,
        "messages": [{"label": r["label"], "direction": "a_to_b" if r["forward"] else "b_to_a",
                      "seen": {n: {"rel": round(t - start, 6) if start is not None else None,
                                   "copies": c} for n, (t, c) in r["seen"].items()}}
                     for r in view.messages],
    }
