"""Helpers of the IKE/ESP oracle tests: our dissection and tshark's, both as plain records.

A message record is a dict with the same keys on both sides (see :data:`MESSAGE_FIELDS`), so the
tests compare field by field and report ``(capture, frame, field, ours, tshark)``.

* Ours: :func:`our_events` runs the product's decoder (``pcapvpn.decode.Decoder``) with a
  recording sink; IP-fragmented IKE is reported at the frame of its last fragment, as tshark
  does.  ICMP errors that quote an IKE/ESP datagram are decoded with the same dissectors
  (:func:`our_quoted`).
* tshark: :func:`tshark_pdml` runs ``tshark -T pdml`` once over a file and keeps, per frame, every
  ``isakmp`` and ``esp`` layer with its tree (proposals and transforms stay nested, which flat
  ``-T fields`` output would lose).  Personal preferences / decryption tables are kept out by
  pointing ``WIRESHARK_CONFIG_DIR`` at an empty directory; IP reassembly stays on (default).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import xml.etree.ElementTree as ET

from dissect.vpn import esp as _esp
from dissect.vpn import ike as _ike
from dissect.vpn import ip as _ip
from dissect.vpn import udpencap as _udpencap
from dissect.vpn.errors import DissectError
from dissect.vpn.link import decode_frame
from pcapvpn.decode import Decoder, NullSink
from pcapvpn.events import EncapFlows
from pcapvpn.limits import Limits
from pcapvpn.sources import open_source

MESSAGE_FIELDS = ("ispi", "rspi", "major", "exch", "flags", "msgid", "length", "payloads",
                  "notify_types", "nat_hashes", "vendor_ids", "proposals", "ke_groups", "sk")

# payload numbers (RFC 2408 §3.1 + RFC 3947 §3.2 + drafts; RFC 7296 §3.2 + RFC 7383 §2.5)
V1_SA, V1_N, V1_VID, V1_NATD, V1_NATD_DRAFT = 1, 11, 13, 20, 130
V2_SA, V2_KE, V2_N, V2_V, V2_SK, V2_SKF = 33, 34, 41, 43, 46, 53
NAT_DETECTION = (16388, 16389)  # RFC 7296 §2.23 / §3.10.1
UNPARSED = "unparsed"  # our record of a payload body the dissector rejected


# ----------------------------------------------------------------------------------------- ours

class RecordingSink(NullSink):
    """Keeps every IKE message and ESP packet keyed by the frame number the decoder reports."""

    def __init__(self):
        self.ike_events = []     # (frame, ipver, src, dst, sport, dport, transport, bytes, frames)
        self.esp_events = []     # (frame, spi, seq)
        self.esp_packets = []    # (frame, src, dst, sport, dport, spi, seq, length)
        self.ah_events = []      # (frame, src, dst, spi, seq, length)
        self.datagrams = []      # (frame, src, sport, dst, dport): IKE, ESP and keepalives on UDP
        self.icmp_frames = []    # frames carrying an ICMP error
        self.incomplete = set()  # frames of fragment sets never completed
        self.errors = []         # (frame, reason)
        self.encap_flows = EncapFlows(Limits().max_flows)

    def ike(self, ref, ts, ipver, src, dst, sport, dport, transport, msg, frames):
        # custom NAT-T ports: the flow's ESP is then the decoder's, as with the product's sink
        self.encap_flows.learn(ref, ts, src, dst, sport, dport, transport, msg)
        # the bytes the decoder parsed ``msg`` from: compared with the stream, and parsed again
        # by our_message like any datagram
        self.ike_rejected(ref, ts, ipver, src, dst, sport, dport, transport, msg.raw + msg.trailer,
                          None, frames)

    def ike_rejected(self, ref, ts, ipver, src, dst, sport, dport, transport, data, reason,
                     frames):
        self.ike_events.append((ref[1], ipver, src, dst, sport, dport, transport, data,
                                tuple(f[1] for f in frames)))
        if transport == "udp":
            self.datagrams.append((ref[1], src, sport, dst, dport))

    def esp(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, length):
        self.esp_events.append((ref[1], spi, seq))
        self.esp_packets.append((ref[1], src, dst, sport, dport, spi, seq, length))
        if sport >= 0:
            self.datagrams.append((ref[1], src, sport, dst, dport))

    def esp_tcp(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, length):
        self.esp_events.append((ref[1], spi, seq))
        self.esp_packets.append((ref[1], src, dst, sport, dport, spi, seq, length))

    def ah(self, ref, ts, ipver, src, dst, spi, seq, length):
        self.ah_events.append((ref[1], src, dst, spi, seq, length))

    def keepalive(self, ref, ts, ipver, src, dst, sport, dport):
        self.datagrams.append((ref[1], src, sport, dst, dport))

    def icmp_error(self, ref, ts, ipver, src, dst, icmp_type, icmp_code, mtu, quoted):
        self.icmp_frames.append(ref[1])

    def fragments_incomplete(self, first_ts, ipver, src, dst, proto, ident, frames, *rest):
        self.incomplete.update(f[1] for f in frames)

    def decode_error(self, ref, reason):
        self.errors.append((ref[1], reason))


def our_events(path) -> tuple[RecordingSink, int, frozenset]:
    """Decode a capture with the product's decoder: ``(sink, frame count, state keys)``.

    ``state keys`` name what makes a dissection depend on other packets, as the keys a
    reassembler would file it under: ``("ip", ipver, src, dst, ident)`` per IP fragment,
    ``("tcp", endpoints)`` per TCP flow on 500/4500, ``("ike", ispi, rspi)`` per IKE SA carrying
    RFC 7383 SKF / IKEv1 fragment payloads; empty when nothing does."""
    sink = RecordingSink()
    dec = Decoder(sink)
    src = open_source(str(path))
    try:
        dec.run(src.frames())
        dec.finish()
    finally:
        src.close()
    keys = set()
    if dec.fragment_frames or dec.tcp_segments:
        src = open_source(str(path))
        try:
            for _f, _n, _ts, lt, data, _wl, _o in src.frames():
                try:
                    r = decode_frame(lt, data)
                except DissectError:
                    continue
                if r is None:
                    continue
                if r[8] or r[9]:
                    keys.add(("ip", r[0], r[1], r[2], r[10]))
                elif r[3] == 6 and r[4] >= 0:
                    keys.add(("tcp",) + tuple(sorted(((r[1], r[4]), (r[2], r[5])))))
        finally:
            src.close()
    for ev in sink.ike_events:
        if _has_ike_fragment(ev[7]):
            keys.add(("ike", ev[7][:8], ev[7][8:16]))
    return sink, dec.frames, frozenset(keys)


def _has_ike_fragment(msg) -> bool:
    """RFC 7383 SKF (53) or the IKEv1 fragment payload (132)."""
    try:
        m = _ike.parse_message(msg)
    except DissectError:
        return False
    return any(p.type == (V2_SKF if m.major == 2 else 132) for p in m.payloads)


def our_quoted(path, frames) -> dict:
    """IKE/ESP inside the ICMP errors of ``frames``: ``{frame: [("ike", record) | ("esp", spi,
    seq)]}`` decoded with the product's dissectors from the quoted datagram."""
    out: dict = {}
    wanted = set(frames)
    if not wanted:
        return out
    src = open_source(str(path))
    try:
        for _fidx, num, _ts, lt, data, _wl, _off in src.frames():
            if num not in wanted:
                continue
            r = decode_frame(lt, data)
            res = out.setdefault(num, [])
            if r is None or r[3] not in (1, 58):
                continue
            icmp = _ip.decode_icmp_error(data, r[6], r[7], r[0])
            if icmp is None or icmp[3] is None:
                continue
            q = icmp[3]
            proto, sport, dport, l4off, end = q[3], q[4], q[5], q[6], q[7]
            try:
                if proto == 50:
                    spi, seq = _esp.parse_esp(data, l4off, end)
                    res.append(("esp", spi, seq))
                elif proto == 17 and sport >= 0:
                    kind, a, b = _udpencap.classify_udp(sport, dport, data, l4off + 8, end)
                    if kind == _udpencap.ESP:
                        res.append(("esp", a, b))
                    elif kind == _udpencap.IKE:
                        res.append(("ike", our_message(bytes(data[a:end]))))
            except DissectError:
                pass
    finally:
        src.close()
    return out


def _transform_v1(t):
    return (t.number, t.transform_id, t.key_length)


def _transform_v2(t):
    return (t.transform_type, t.transform_id, t.key_length)


def our_message(msg: bytes) -> dict:
    """The comparison record of one IKE message from the decoder.  A message our dissector
    rejects (DissectError: header cut short, major version neither 1 nor 2) keeps the header
    fields :func:`dissect.vpn.ike.parse_header` reads and ``"rejected"`` in every payload field."""
    try:
        return message_record(_ike.parse_message(msg))
    except DissectError as e:
        rec = {k: "rejected: " + e.reason for k in MESSAGE_FIELDS}
        try:
            h = _ike.parse_header(msg)
        except DissectError:
            return rec
        rec.update(ispi=h.ispi.hex(), rspi=h.rspi.hex(), major=h.major, exch=h.exch,
                   flags=h.flags, msgid=h.msgid, length=h.length)
        return rec


def message_record(m) -> dict:
    """Our :class:`dissect.vpn.ike.IkeMessage` as the comparison record."""
    v2 = m.major == 2
    rec = {
        "ispi": m.ispi.hex(), "rspi": m.rspi.hex(), "major": m.major, "exch": m.exch,
        "flags": m.flags, "msgid": m.msgid, "length": m.length,
        "payloads": [p.type for p in m.payloads],
        "notify_types": [], "nat_hashes": [], "vendor_ids": [], "proposals": [],
        "ke_groups": [], "sk": [],
    }
    for p in m.payloads:
        t = p.type
        raw = isinstance(p, _ike.RawPayload)  # a body our dissector rejected (error recorded)
        if t == (V2_N if v2 else V1_N):
            rec["notify_types"].append(UNPARSED if raw else p.notify_type)
            if v2 and not raw and p.notify_type in NAT_DETECTION:
                rec["nat_hashes"].append(p.data.hex())
        elif not v2 and t in (V1_NATD, V1_NATD_DRAFT):
            rec["nat_hashes"].append(p.data.hex())
        elif t == (V2_V if v2 else V1_VID):
            rec["vendor_ids"].append(p.data.hex())
        elif t == (V2_SA if v2 else V1_SA):
            if raw:
                rec["proposals"].append(UNPARSED)
                continue
            tf = _transform_v2 if v2 else _transform_v1
            rec["proposals"].append([(pr.number, pr.protocol, pr.spi.hex(),
                                      [tf(x) for x in pr.transforms]) for pr in p.proposals])
        elif v2 and t == V2_KE:
            rec["ke_groups"].append(UNPARSED if raw else p.group)
        elif v2 and t == V2_SK:
            rec["sk"].append((t, p.next_payload))
        elif v2 and t == V2_SKF and hasattr(p, "fragment_number"):
            rec["sk"].append((t, p.next_payload, p.fragment_number, p.total_fragments))
    return rec


# --------------------------------------------------------------------------------------- tshark

_EMPTY_CONFIG = tempfile.mkdtemp(prefix="pcapvpn-wireshark-config-")


def tshark_command(tshark: str, path, display_filter="isakmp or esp",
                   decode_as=()) -> list[str]:
    return [tshark, "-n", "-r", str(path), "-T", "pdml", "-J", "isakmp esp icmp icmpv6",
            "-Y", display_filter] + [a for d in decode_as for a in ("-d", d)]


def start_tshark(tshark: str, path, display_filter="isakmp or esp",
                 decode_as=()) -> subprocess.Popen:
    """Start one tshark run (PDML on stdout); :func:`parse_pdml` reads it."""
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=_EMPTY_CONFIG)
    return subprocess.Popen(tshark_command(tshark, path, display_filter, decode_as),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def decode_as_of(capture) -> list[str]:
    """The tshark ``-d`` options a lab capture needs (its ``expected.json``'s ``decode_as``:
    custom ports), else []."""
    import json
    from pathlib import Path

    exp = Path(capture).parent / "expected.json"
    if not exp.is_file():
        return []
    for c in json.loads(exp.read_text()).get("captures", []):
        if c.get("file") == Path(capture).name:
            return list(c.get("decode_as") or [])
    return []


def _fields(el, name):
    return [c for c in el if c.tag == "field" and c.get("name") == name]


def _first(el, name, attr="show"):
    for c in el:
        if c.tag == "field" and c.get("name") == name:
            return c.get(attr)
    return None


def _int(s):
    if s is None:
        return None
    return int(s, 16) if s.startswith("0x") else int(s)


def _tshark_transform(t, v2):
    if v2:
        ttype = _int(_first(t, "isakmp.tf.type"))
        tid = None
        for c in t:
            if c.tag == "field" and (c.get("name") or "").startswith("isakmp.tf.id"):
                tid = _int(c.get("show"))
                break
        key = "isakmp.ike2.attr.key_length"
    else:
        ttype = _int(_first(t, "isakmp.trans.number"))
        tid = _int(_first(t, "isakmp.trans.id"))
        key = None
    keys = (key,) if v2 else ("isakmp.ike.attr.key_length", "isakmp.ipsec.attr.key_length")
    kl = None
    for c in t.iter("field"):
        if c.get("name") in keys:
            kl = _int(c.get("show"))
            break
    return (ttype, tid, kl)


def _tshark_sa(p, v2):
    props = []
    for pr in _fields(p, "isakmp.typepayload"):
        if pr.get("show") != "2":
            continue
        spi = _first(pr, "isakmp.spi", "value") or ""
        transforms = [_tshark_transform(t, v2) for t in _fields(pr, "isakmp.typepayload")
                      if t.get("show") == "3"]
        props.append((_int(_first(pr, "isakmp.prop.number")),
                      _int(_first(pr, "isakmp.prop.protoid")), spi, transforms))
    return props


def tshark_message(el) -> dict:
    """An ``isakmp`` PDML layer as the comparison record."""
    major = _int(_first(_fields(el, "isakmp.version")[0], "isakmp.mjver")) \
        if _fields(el, "isakmp.version") else None
    v2 = major == 2
    rec = {
        "ispi": _first(el, "isakmp.ispi", "value"), "rspi": _first(el, "isakmp.rspi", "value"),
        "major": major, "exch": _int(_first(el, "isakmp.exchangetype")),
        "flags": _int(_first(el, "isakmp.flags")), "msgid": _int(_first(el, "isakmp.messageid")),
        "length": _int(_first(el, "isakmp.length")),
        "payloads": [], "notify_types": [], "nat_hashes": [], "vendor_ids": [], "proposals": [],
        "ke_groups": [], "sk": [],
    }
    for p in _fields(el, "isakmp.typepayload"):
        t = int(p.get("show"))
        rec["payloads"].append(t)
        if t == (V2_N if v2 else V1_N):
            nt = _int(_first(p, "isakmp.notify.msgtype"))
            if nt is not None:
                rec["notify_types"].append(nt)
            if v2 and nt in NAT_DETECTION:
                rec["nat_hashes"].append(_first(p, "isakmp.notify.data", "value") or "")
        elif not v2 and t in (V1_NATD, V1_NATD_DRAFT):
            rec["nat_hashes"].append(_first(p, "isakmp.ike.nat_hash", "value") or "")
        elif t == (V2_V if v2 else V1_VID):
            vid = _first(p, "isakmp.vid_bytes", "value")
            if vid is not None:
                rec["vendor_ids"].append(vid)
        elif t == (V2_SA if v2 else V1_SA):
            rec["proposals"].append(_tshark_sa(p, v2))
        elif v2 and t == V2_KE:
            g = _int(_first(p, "isakmp.key_exchange.dh_group"))
            if g is not None:
                rec["ke_groups"].append(g)
        elif v2 and t == V2_SK:
            rec["sk"].append((t, _int(_first(p, "isakmp.nextpayload"))))
        elif v2 and t == V2_SKF:
            rec["sk"].append((t, _int(_first(p, "isakmp.nextpayload")),
                              _int(_first(p, "isakmp.frag.number")),
                              _int(_first(p, "isakmp.frag.total"))))
    return rec


def parse_pdml(proc: subprocess.Popen, timeout=120) -> dict:
    """``{frame: [(kind, quoted, record)]}`` from a tshark PDML run; kind ``"ike"`` (record a
    message dict) or ``"esp"`` (record ``(spi, seq)``); ``quoted`` when the layer follows an ICMP
    layer (the datagram quoted by an ICMP error)."""
    out, _err = proc.communicate(timeout=timeout)
    if proc.returncode not in (0, 2):
        raise AssertionError(f"tshark failed ({proc.returncode}): {_err.decode(errors='replace')}")
    frames: dict = {}
    if not out.strip():
        return frames
    root = ET.fromstring(out)
    for pkt in root.iter("packet"):
        num = None
        for geninfo in pkt.iter("proto"):
            if geninfo.get("name") == "geninfo":
                num = int(_first(geninfo, "num"))
                break
        layers = frames.setdefault(num, [])
        quoted = False
        for proto in pkt.iter("proto"):
            name = proto.get("name")
            if name in ("icmp", "icmpv6"):
                quoted = True
            elif name == "isakmp":
                layers.append(("ike", quoted, tshark_message(proto)))
            elif name == "esp":
                spi = _first(proto, "esp.spi", "value")
                seq = _first(proto, "esp.sequence")
                layers.append(("esp", quoted, (int(spi, 16) if spi else None, _int(seq))))
    return frames


# ------------------------------------------------------------------------------ batched tshark

def _frame_signatures(path) -> list:
    src = open_source(str(path))
    try:
        return [(wl, bytes(data)) for _f, _n, _ts, _lt, data, wl, _o in src.frames()]
    finally:
        src.close()


def tshark_batch(tshark: str, state_keys: dict, workdir, chunks: int = 2,
                 parallel: int = 4) -> dict:
    """tshark's IKE/ESP layers for every capture: ``{capture: {frame: layers}}``.

    ``state_keys`` maps each capture to the keys of its reassembly state (:func:`our_events`).
    tshark costs ~0.3 s of CPU just to start, so captures are concatenated with
    ``mergecap -a`` into ``chunks`` files (more when needed) and dissected in one run each, and
    every frame number is mapped back to its own file (checked frame by frame: captured bytes
    and original length).  Two captures whose state keys intersect (same IP fragment id between
    the same hosts, same TCP flow, same fragmented IKE SA) never share a file, so tshark cannot
    pair pieces of different captures.  Without mergecap every capture gets a run of its own.
    """
    import shutil
    from pathlib import Path

    mergecap = shutil.which("mergecap")
    # a capture that needs Decode As (custom ports) gets a run of its own with its -d options
    decode = {c: decode_as_of(c) for c in state_keys}
    captures = [c for c in state_keys if not decode[c]]
    jobs = [(c, [(c, 0, None)], decode[c]) for c in state_keys if decode[c]]
    if not mergecap:
        jobs += [(c, [(c, 0, None)], ()) for c in captures]
    else:
        groups: list = [[] for _ in range(max(1, chunks))]
        gkeys: list = [set() for _ in groups]
        sizes = [0] * len(groups)
        for c in sorted(captures, key=lambda c: (not state_keys[c], -Path(c).stat().st_size)):
            keys = state_keys[c]
            fits = [i for i in range(len(groups)) if not (gkeys[i] & keys)]
            if not fits:
                groups.append([])
                gkeys.append(set())
                sizes.append(0)
                fits = [len(groups) - 1]
            i = min(fits, key=lambda i: sizes[i])
            groups[i].append(c)
            gkeys[i] |= keys
            sizes[i] += Path(c).stat().st_size
        for i, grp in enumerate(g for g in groups if g):
            merged = Path(workdir) / f"oracle-chunk{i}.pcapng"
            res = subprocess.run([mergecap, "-a", "-F", "pcapng", "-w", str(merged)]
                                 + [str(c) for c in grp], capture_output=True, text=True)
            if res.returncode != 0:
                raise AssertionError(f"mergecap failed: {res.stderr.strip()}")
            got = _frame_signatures(merged)
            spans, pos = [], 0
            for c in grp:
                want = _frame_signatures(c)
                if got[pos:pos + len(want)] != want:
                    raise AssertionError(f"mergecap did not copy {c} frame for frame")
                spans.append((c, pos, len(want)))
                pos += len(want)
            if pos != len(got):
                raise AssertionError(f"{merged}: {len(got) - pos} frames beyond the inputs")
            jobs.append((merged, spans, ()))
    results: dict = {c: {} for c in state_keys}
    running: list = []
    queue = list(jobs)
    while queue or running:
        while queue and len(running) < parallel:
            path, spans, decode_as = queue.pop(0)
            running.append((start_tshark(tshark, path, decode_as=decode_as), spans))
        proc, spans = running.pop(0)
        frames = parse_pdml(proc)
        for num, layers in frames.items():
            for c, first, count in spans:
                if count is None or first < num <= first + count:
                    results[c][num - first] = layers
                    break
    return results
