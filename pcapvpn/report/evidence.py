"""``--export-evidence FILE.pcapng``: the frames the findings cite, with a comment on each.

Which frames: every frame in a finding's evidence, plus every message of the IKE SAs the finding
names (its IKE SPIs; for a finding that names only ESP SPIs, the IKE SAs of its tunnel that were
alive at the time of the evidence), so that the small capture shows the exchange around the
problem.  Each frame carries a pcapng comment (``opt_comment``) naming the finding codes that
cite it (Wireshark: ``frame.comment``, Statistics > Capture File Properties, the Expert Info
"Comment" entries), or the IKE SA it gives context for.

Frames are read again through ``Source.fetch`` (a sparse offset index recorded during the
analysis: seek, then walk at most 1023 records).  With a :class:`pcapvpn.redact.Redactor` every
frame is rewritten by :func:`dissect.vpn.rewrite.rewrite_frame` with the pseudonyms of the
report.  This module only selects and writes: the diagnosis is the findings'.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

#: an IKE SA adds at most this many context frames (its first and last messages)
MAX_CONTEXT_PER_SA = 2000


@dataclass
class ExportStats:
    frames: int = 0
    cited: int = 0
    context: int = 0
    findings: int = 0
    bytes: int = 0
    missing: int = 0


def _select(report):
    """{(file name, frame): [comment parts]} (cited frames first) and the set of cited keys."""
    comments: dict = {}
    cited = set()
    by_spi: dict = {}
    for sa in report.ike_sas:
        by_spi.setdefault(sa["ispi"], []).append(sa)
    tunnels = {t["id"]: t for t in report.tunnels}
    sas_by_id = {sa["id"]: sa for sa in report.ike_sas}
    for f in report.findings:
        for fr in f.evidence.frames:
            key = (fr.file, fr.frame)
            cited.add(key)
            part = f"{f.code} ({f.id}): {f.title}"
            lst = comments.setdefault(key, [])
            if part not in lst:
                lst.append(part)
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
            frames = [fr for m in sa["messages"] for fr in m["frames"]]
            if len(frames) > MAX_CONTEXT_PER_SA:
                half = MAX_CONTEXT_PER_SA // 2
                frames = frames[:half] + frames[-half:]
            for fr in frames:
                key = (fr["file"], fr["frame"])
                if key in cited:
                    continue
                part = f"IKE SA {sa['id']} (context for {f.code})"
                lst = comments.setdefault(key, [])
                if not any(p.startswith(f"IKE SA {sa['id']} ") for p in lst):
                    lst.append(part)
    for key in cited:  # a cited frame says why it is cited, not that it is context
        comments[key] = [p for p in comments[key] if not p.startswith("IKE SA ")]
    return comments, cited


def export_evidence(result, path: str, report=None, redactor=None, shown=None) -> ExportStats:
    """Write the evidence of ``report`` (default ``result.report``) to ``path`` (pcapng).

    ``shown``: the report as printed (redacted): its findings' titles go into the comments, so
    that the pcapng says what the report says.  ``redactor`` rewrites every frame."""
    from dissect.vpn.capture import PcapngWriter
    from dissect.vpn.link import linktype_name
    from dissect.vpn.rewrite import rewrite_frame

    from pcapvpn.report.escape import printable  # names and comments: UTF-8, controls shown

    report = report or result.report
    comments, cited = _select(report)
    if shown is not None and shown is not report:
        # same finding ids, redacted titles: rebuild the comments from the shown report
        titles = {f.id: f"{f.code} ({f.id}): {f.title}" for f in shown.findings}
        sa_names = {a["id"]: b["id"] for a, b in zip(report.ike_sas, shown.ike_sas)}
        for key, parts in comments.items():
            new = []
            for p in parts:
                fid = p.split("(", 1)[1].split(")", 1)[0] if "(" in p else ""
                if p.startswith("IKE SA "):
                    sa_id = p[7:].split(" ", 1)[0]
                    p = p.replace(sa_id, sa_names.get(sa_id, sa_id), 1)
                elif fid in titles:
                    p = titles[fid]
                new.append(p)
            comments[key] = new
    names = {s.name: s for s in result.sources}
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
            src = result.sources[file_idx]
            key = (src.name, number)
            if redactor is not None:
                lt2, data2 = rewrite_frame(lt, data, redactor)
                wirelen = max(len(data2), wirelen - (len(data) - len(data2)))
                data, lt = data2, lt2
            iid = ifaces.get((file_idx, lt))
            if iid is None:
                fname = redactor.file(src.name) if redactor is not None else src.name
                iid = w.add_interface(lt, name=printable(f"{fname} ({linktype_name(lt)})"))
                ifaces[(file_idx, lt)] = iid
            parts = comments.get(key, [])
            fname = redactor.file(src.name) if redactor is not None else src.name
            comment = printable(f"pcapvpn: {'; '.join(parts)} [original: {fname} frame {number}]")
            w.write_packet(iid, ts, data, wirelen, comment=comment)
            stats.frames += 1
            stats.bytes += len(data)
            if key in cited:
                stats.cited += 1
            else:
                stats.context += 1
    return stats
