"""``--export-evidence FILE.pcapng``: the frames the findings cite, with a comment on each.

Which frames: every frame in a finding's evidence, plus every message of the IKE SAs the finding
names (its IKE SPIs; for a finding that names only ESP SPIs, the IKE SAs of its tunnel that were
alive at the time of the evidence), so that the small capture shows the exchange around the
problem; for ESP_ONE_WAY also the packets of the direction that kept sending between the first
and the last cited frame (the first :data:`MAX_FLOW_FRAMES`): one packet each way would look
two-way in Wireshark.  Each frame carries a pcapng comment (``opt_comment``, Wireshark:
``frame.comment``, Statistics > Capture File Properties, the Expert Info "Comment" entries): a
cited frame names the findings that cite it; a context frame says what it is (``IKE SA 3:
INFORMATIONAL #5 req 80 B, SK{none} (empty: a liveness check)``, ``ESP SPI 0x...: this
direction kept sending while the other was silent``), never as context for a finding it does
not show.

Frames are read again through ``Source.fetch`` (a sparse offset index recorded during the
analysis: seek, then walk at most 1023 records).  With a :class:`pcapvpn.redact.Redactor` every
frame is rewritten by :func:`dissect.vpn.rewrite.rewrite_frame` with the pseudonyms of the
report.  This module only selects and writes: the diagnosis is the findings'.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from dissect.vpn.link import frame_esp_spi

#: an IKE SA adds at most this many context frames (its first and last messages)
MAX_CONTEXT_PER_SA = 2000
#: ESP_ONE_WAY: packets of the direction that kept sending added after the first cited frame,
#: found among at most MAX_FLOW_SCAN frames read after it
MAX_FLOW_FRAMES = 20
MAX_FLOW_SCAN = 200_000
#: the findings whose continuing ESP direction is exported
FLOW_CODES = ("ESP_ONE_WAY",)


@dataclass
class ExportStats:
    frames: int = 0
    cited: int = 0
    context: int = 0
    findings: int = 0
    bytes: int = 0
    missing: int = 0


def _message_labels(sa) -> dict:
    """{(file, frame): what the message is} for the messages of one IKE SA of the model (the
    ladder's words: exchange, message ID, request/response, copy, size, key payloads)."""
    from pcapvpn.report import ladder

    lad = ladder.layout(sa, max_rows=len(sa.get("messages") or ()) + 10)
    out = {}
    rows = [r for r in lad.rows if r.kind == "msg"]
    for r, m in zip(rows, sa.get("messages") or ()):
        text = f"IKE SA {sa['id']}: {r.label}"
        if r.details:
            text += f", {r.details}"
        if m.get("exchange") == "INFORMATIONAL" and m.get("sk_first_payload") == "none":
            text += " (empty answer)" if m.get("response") else " (empty: a liveness check)"
        for fr in m.get("frames") or ():
            out[(fr["file"], fr["frame"])] = text
    return out


def _select(report):
    """{(file name, frame): [comment parts]} (cited frames first), the set of cited keys, and
    the ESP flows to add: ``[(file, first frame, last frame, {SPI}, finding)]``."""
    comments: dict = {}
    cited = set()
    flows = []
    by_spi: dict = {}
    for sa in report.ike_sas:
        by_spi.setdefault(sa["ispi"], []).append(sa)
    tunnels = {t["id"]: t for t in report.tunnels}
    sas_by_id = {sa["id"]: sa for sa in report.ike_sas}
    labels: dict = {}
    for f in report.findings:
        for fr in f.evidence.frames:
            key = (fr.file, fr.frame)
            cited.add(key)
            part = f"{f.code} ({f.id}): {f.title}"
            lst = comments.setdefault(key, [])
            if part not in lst:
                lst.append(part)
        if f.code in FLOW_CODES and f.evidence.frames and f.evidence.esp_spis:
            for name in {fr.file for fr in f.evidence.frames}:
                nums = [fr.frame for fr in f.evidence.frames if fr.file == name]
                flows.append((name, min(nums), max(nums),
                              {int(x, 16) for x in f.evidence.esp_spis}, f))
        sas = []
        for spi in f.evidence.ike_spis:
            sas += [sa for sa in by_spi.get(spi, ()) if sa not in sas]
        if not sas and f.evidence.esp_spis and f.tunnel in tunnels:
            first = (f.evidence.first or {}).get("rel")
            last = (f.evidence.last or {}).get("rel")
            cands = [sas_by_id[i] for i in tunnels[f.tunnel]["ike_sas"] if i in sas_by_id]
            if first is not None:
                alive = [sa for sa in cands
                         if (sa["first"]["rel"] or 0) <= (last if last is not None else first)
                         and (sa["last"]["rel"] or 0) >= first]
                before = [sa for sa in cands if (sa["first"]["rel"] or 0) <= first]
                sas = alive or before[-1:]
        for sa in sas:
            if sa["id"] not in labels:
                labels[sa["id"]] = _message_labels(sa)
            frames = [fr for m in sa["messages"] for fr in m["frames"]]
            if len(frames) > MAX_CONTEXT_PER_SA:
                half = MAX_CONTEXT_PER_SA // 2
                frames = frames[:half] + frames[-half:]
            for fr in frames:
                key = (fr["file"], fr["frame"])
                if key in cited:
                    continue
                comments.setdefault(key, [labels[sa["id"]].get(key, f"IKE SA {sa['id']}")])
    for key in cited:  # a cited frame says why it is cited, not that it is context
        comments[key] = [p for p in comments[key] if not p.startswith("IKE SA ")]
    return comments, cited, flows


def _flow_frames(sources, flows, comments) -> None:
    """Add the frames of each flow's SAs between its first and last cited frame (at most
    MAX_FLOW_FRAMES per flow) to ``comments``."""
    names = {s.name: s for s in sources}
    for name, lo, hi, spis, f in flows:
        src = names.get(name)
        if src is None or hi - lo < 2:
            continue
        added = 0
        for _fi, number, _ts, lt, data, _wl, _off in src.fetch(
                range(lo + 1, min(hi, lo + 1 + MAX_FLOW_SCAN))):
            try:
                # any UDP port: ESP on custom NAT-T ports too (only the flow's SPIs count)
                spi = frame_esp_spi(lt, data, any_udp=True)
            except Exception:  # noqa: BLE001 - a frame that does not decode is simply not ESP
                spi = None
            if spi is None or spi not in spis or (name, number) in comments:
                continue
            comments[(name, number)] = [
                f"ESP SPI 0x{spi:08x}: this direction kept sending while the other was silent "
                f"(shown for {f.code} {f.id})"]
            added += 1
            if added >= MAX_FLOW_FRAMES:
                break


def export_evidence(result, path: str, report=None, redactor=None, shown=None) -> ExportStats:
    """Write the evidence of ``report`` (default ``result.report``) to ``path`` (pcapng).

    ``shown``: the report as printed (redacted): its findings' titles go into the comments, so
    that the pcapng says what the report says.  ``redactor`` rewrites every frame."""
    from dissect.vpn.capture import PcapngWriter
    from dissect.vpn.link import linktype_name
    from dissect.vpn.rewrite import rewrite_frame

    from pcapvpn.report.escape import printable  # names and comments: UTF-8, controls shown

    report = report or result.report
    comments, cited, flows = _select(report)
    _flow_frames(result.sources, flows, comments)
    if shown is not None and shown is not report:
        # same finding ids, redacted titles: rebuild the comments from the shown report
        titles = {f.id: f"{f.code} ({f.id}): {f.title}" for f in shown.findings}
        sa_names = {a["id"]: b["id"] for a, b in zip(report.ike_sas, shown.ike_sas)}
        for key, parts in comments.items():
            new = []
            for p in parts:
                fid = p.split("(", 1)[1].split(")", 1)[0] if "(" in p else ""
                if p.startswith("IKE SA "):
                    sa_id = p[7:].split(":", 1)[0].split(" ", 1)[0]
                    p = p.replace(sa_id, sa_names.get(sa_id, sa_id), 1)
                    if redactor is not None:  # identities and addresses in the label
                        p = redactor.text(p)
                elif fid in titles:
                    p = titles[fid]
                new.append(p)
            comments[key] = new
    names = {s.name: s for s in result.sources}
    by_index = {s.index: s for s in result.sources}
    # several vantage points: the point each file belongs to names its interfaces and frames
    point_of = {f: p["name"] for p in getattr(report, "vantage_points", None) or ()
                for f in p["files"]}
    wanted: dict = {}
    for name, frame in comments:
        src = names.get(name)
        if src is not None:
            wanted.setdefault(src.index, []).append(frame)
    stats = ExportStats(findings=len(report.findings))
    stats.missing = len(comments) - sum(len(v) for v in wanted.values())
    streams = [s.fetch(wanted[s.index]) for s in result.sources if s.index in wanted]
    merged = heapq.merge(*streams, key=lambda fr: (fr[2], fr[0], fr[1]))
    with open(path, "wb") as out:
        w = PcapngWriter(out)
        ifaces: dict = {}
        for file_idx, number, ts, lt, data, wirelen, _off in merged:
            src = by_index[file_idx]
            key = (src.name, number)
            if redactor is not None:
                lt2, data2 = rewrite_frame(lt, data, redactor)
                wirelen = max(len(data2), wirelen - (len(data) - len(data2)))
                data, lt = data2, lt2
            iid = ifaces.get((file_idx, lt))
            point = point_of.get(src.name)
            if iid is None:
                fname = redactor.file(src.name) if redactor is not None else src.name
                label = f"{fname} ({linktype_name(lt)})"
                iid = w.add_interface(lt, name=printable(f"{point}: {label}" if point else label))
                ifaces[(file_idx, lt)] = iid
            parts = comments.get(key, [])
            fname = redactor.file(src.name) if redactor is not None else src.name
            where = f"point {point}, " if point else ""
            comment = printable(f"pcapvpn: {'; '.join(parts)} [{where}original: {fname} frame "
                                f"{number}]")
            w.write_packet(iid, ts, data, wirelen, comment=comment)
            stats.frames += 1
            stats.bytes += len(data)
            if key in cited:
                stats.cited += 1
            else:
                stats.context += 1
    return stats
