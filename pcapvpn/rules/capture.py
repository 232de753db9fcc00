"""Capture: can the capture itself be trusted?  (Outside the stage order.)"""

from __future__ import annotations

from pcapvpn.findings import Term, declare, make, msg, msg_join
from pcapvpn.rules import rule
from pcapvpn.rules.common import frames_filter

declare("CAPTURE_DROPS", "capture", "warning",
        "The capturing interface or kernel dropped packets (pcapng statistics): absences in this "
        "capture (no response, one-way, gaps) may be the capture's, not the network's.",
        ["Capture with a larger buffer (dumpcap -B, tcpdump -B) and a capture filter limited to "
         "the VPN traffic, or on a less loaded point."], failure=False)
declare("CAPTURE_DUPLICATES", "capture", "info",
        "The same packets appear twice within milliseconds: the mirror port copies both "
        "directions or two interfaces, or the capture merges overlapping files. They are not "
        "retransmissions and were not counted as such.",
        ["Harmless for the diagnosis; to avoid it, mirror one direction per port or capture one "
         "interface."], failure=False)
declare("CAPTURE_OUT_OF_ORDER", "capture", "warning",
        "The capture file is not in time order: some frames are earlier than a frame before "
        "them. Read in file order, answers would come before their requests, negotiations "
        "would be missed (an IKE SA taken for one negotiated before the capture) and intervals "
        "would be wrong. pcapvpn analyses such a file in time order, as reordercap would write "
        "it, each frame keeping its own frame number; standard input (it cannot be read a second "
        "time) and a file of more frames than reorder_max_records can index are analysed in "
        "file order, and the finding says so. Steps back of less than a second that reading "
        "in time order put right (several capture queues or interfaces merged) are reported as "
        "information.",
        ["Merged captures (mergecap -a, several interfaces or sensors written one after the "
         "other), some firewalls' capture exports and multi-queue network cards write frames "
         "out of time order.",
         "Put the file in time order with 'reordercap IN OUT' before analysing it elsewhere "
         "(frame numbers change: pcapvpn cites the frame numbers of the file as given); for a "
         "file pcapvpn analysed in file order, reorder it (or save standard input to a file) and "
         "analyse it again."], failure=False)
declare("CAPTURE_TRUNCATED", "capture", "warning",
        "Frames were cut by the capture's snapshot length: IKE payloads past the cut cannot be "
        "read.",
        ["Capture with a snapshot length of at least 1600 bytes (tcpdump -s 0 / dumpcap -s 0)."],
        failure=False)
declare("CAPTURE_DAMAGED", "capture", "error",
        "Part of the capture file is damaged (garbage or a zero-filled hole in the file, records "
        "with impossible lengths or timestamps, a file cut short): those bytes could not be read. "
        "Reading resumed at the next valid records, so the findings and verdicts cover the "
        "readable part only; what happened in the damaged part is not seen. Error when something "
        "was skipped before the end of a file (or nothing was readable), warning when only the "
        "end of a file was lost.",
        ["Get the capture again from where it was taken (a file copied while it was still being "
         "written, moved over a text-mode transfer or stored on a failing disk is damaged this "
         "way), or ask for the original.",
         "Wireshark stops reading at the first damaged range; the frame numbers pcapvpn gives "
         "after it are those of the same file with the listed byte ranges cut out (for example "
         "with 'head -c' / 'tail -c', or pcapfix).",
         "Judge the findings by the share of the capture's time the readable part covers "
         "(capture.coverage in the JSON report, coverage per tunnel)."], failure=False)
declare("DECODE_ERRORS", "capture", "info",
        "Some frames could not be decoded (malformed, cut, or not what their ports say); they are "
        "listed with their frame numbers and reasons and the rest of the capture was analysed.",
        ["Open the listed frames in Wireshark: fuzzed or corrupted packets, or a protocol on a VPN "
         "port that is not IKE/ESP."], failure=False)


@rule
def capture_health(ctx):
    cap = ctx.state.capture
    if cap is None:
        return
    drops = sum(v for v in (cap.drops.get("if_drop"), cap.drops.get("os_drop")) if v)
    if drops:
        yield make("CAPTURE_DROPS", "drops",
                   title=msg("The capture dropped {drops} packet(s)", drops=drops),
                   detail=msg("pcapng interface statistics: if_drop {if_drop}, os_drop {os_drop}. "
                              "Findings about missing packets may be caused by these drops.",
                              if_drop=cap.drops.get('if_drop'), os_drop=cap.drops.get('os_drop')),
                   evidence=ctx.evidence([]), wireshark_filter="frame")
    c = cap.counts
    if c.truncated_frames:
        yield make("CAPTURE_TRUNCATED", "truncated",
                   title=msg("{n} frame(s) cut by the snapshot length", n=c.truncated_frames),
                   detail=msg("{n} of {frames} frames were captured shorter than they were on "
                              "the wire.", n=c.truncated_frames, frames=cap.frames),
                   evidence=ctx.evidence(getattr(cap, "truncated_refs", [])),
                   wireshark_filter="frame.cap_len < frame.len")
    if cap.decode_errors:
        refs = [(e.file_idx, e.frame) for e in cap.decode_error_samples if hasattr(e, "file_idx")]
        reasons = sorted(cap.decode_errors_by_reason.items(), key=lambda kv: -kv[1])[:5]
        yield make("DECODE_ERRORS", "decode-errors",
                   title=msg("{n} frame(s) could not be decoded", n=cap.decode_errors),
                   detail=msg_join("; ", [msg("{n} x {reason}", n=n, reason=Term(r))
                                          for r, n in reasons]) + ".",
                   evidence=ctx.evidence(refs),
                   wireshark_filter="_ws.malformed || _ws.expert.severity >= warning")


@rule
def out_of_order(ctx):
    """CAPTURE_OUT_OF_ORDER: files with frames earlier than a frame before them (the readers'
    count, ``capture.out_of_order``), the largest step back, and whether the analysis read them
    in time order."""
    cap = ctx.state.capture
    files = getattr(cap, "out_of_order", None) if cap is not None else None
    if not files:
        return
    n = sum(f["frames"] for f in files)
    top = max(files, key=lambda f: f["largest_step_s"])
    several = len(cap.files) > 1
    where = msg(" of {file}", file=top["file"]) if several else ""
    title = msg("The capture is not in time order: {n} frame(s) are earlier than a frame before "
                "them (largest step back {step:.6g} s, frame {frame}{where})", n=n,
                step=top["largest_step_s"], frame=top["frame"], where=where)
    parts = []
    for f in files:
        name = msg("{file}: ", file=f["file"]) if several else ""
        if f["from_frame"] is not None:
            parts.append(msg("{name}frame {frame} is {step:.6g} s earlier than frame {before} "
                             "before it", name=name, frame=f["frame"], step=f["largest_step_s"],
                             before=f["from_frame"]))
        if f["time_order"]:
            parts.append(msg("{name}analysed in time order, as reordercap would write it; frame "
                             "numbers are the file's own", name=name))
        else:
            parts.append(msg("{name}analysed in file order", name=name)
                         + _FILE_ORDER_WHY.get(f["file_order_why"], "")
                         + msg(": the intervals, and which message came first, may be "
                               "judged wrong"))
    detail = msg_join("; ", parts) + "."
    names = [fi.name for fi in cap.files]
    fidx = names.index(top["file"]) if top["file"] in names else 0
    refs = [(fidx, fr) for fr in (top["from_frame"], top["frame"]) if fr is not None]
    # steps back of less than a second, all put right by reading in time order: the usual
    # jitter of several capture queues or interfaces merged (tcpdump -i any, multi-queue
    # cards, our own --workers files), worth knowing, nothing to act on
    small = top["largest_step_s"] < JITTER_STEP and all(f["time_order"] for f in files)
    yield make("CAPTURE_OUT_OF_ORDER", "out-of-order", title=title, detail=detail,
               evidence=ctx.evidence(refs), wireshark_filter=frames_filter(refs) or "frame",
               severity="info" if small else None)


#: the largest step back (seconds) that is jitter when the file could be read in time order
JITTER_STEP = 1.0


#: why a file that is not in time order was analysed in file order (sources.file_order_why)
_FILE_ORDER_WHY = {
    "stdin": msg(" (standard input cannot be read a second time)"),
    "limit": msg(" (more frames than reorder_max_records can index)"),
}


@rule
def damage(ctx):
    """CAPTURE_DAMAGED: damaged ranges of the capture files (the readers resynchronised after
    each), with what the readable part covers."""
    cap = ctx.state.capture
    ranges = getattr(cap, "damage", None) if cap is not None else None
    if not ranges:
        return
    nbytes = sum(d.length for d in ranges)
    records = sum(d.frames_skipped for d in ranges)
    empty_files = {f.name for f in cap.files if not f.frames}
    middle = [d for d in ranges if not d.trailing]
    hopeless = [d for d in ranges if d.file in empty_files]
    severity = "error" if middle or hopeless else "warning"
    files = sorted({d.file for d in ranges})
    where = msg(" of {n} files", n=len(files)) if len(files) > 1 else ""
    cov = cap.coverage or {}
    share = cov.get("share")
    if middle or hopeless:
        title = (msg("Damaged capture: {nbytes} bytes in {places} place(s){where} could not "
                     "be read", nbytes=nbytes, places=len(ranges), where=where)
                 + (msg(" ({records} record(s) lost)", records=records) if records else "")
                 + (msg("; the readable part covers {share:.1%} of the capture's time",
                        share=share)
                    if share is not None and cap.frames else msg("; nothing could be read")))
    else:
        title = msg("The capture ends in damage: the last {nbytes} bytes{where} could not be "
                    "read", nbytes=nbytes, where=where)
        if records:
            title += msg(" ({records} record(s) lost)", records=records)
    parts = []
    for d in ranges[:5]:
        lost = msg(", {n} record(s)", n=d.frames_skipped) if d.frames_skipped else ""
        name = msg("{file}: ", file=d.file) if len(files) > 1 else ""
        parts.append(msg("{name}offset {offset}, {length} bytes{lost}: {reason}", name=name,
                         offset=d.offset, length=d.length, lost=lost, reason=Term(d.reason))
                     + (msg(" (at the end of the file)") if d.trailing else ""))
    if len(ranges) > 5:
        parts.append(msg("... {n} more range(s)", n=len(ranges) - 5))
    detail = msg_join("; ", parts) + "."
    if share is not None and cap.frames:
        detail += msg(" The readable part covers {share:.1%} of the capture's time and "
                      "{bytes_share:.1%} of its bytes; time before the first or after the last "
                      "readable packet cannot be measured.", share=share,
                      bytes_share=cov.get('bytes_share', 0.0))
    yield make("CAPTURE_DAMAGED", "damaged", title=title, detail=detail, severity=severity,
               evidence=ctx.evidence([]), wireshark_filter="frame")


#: packets of one SA that all carry the same timestamp: a capture written without a clock
CLOCKLESS_PACKETS = 3


@rule
def duplicates(ctx):
    dups = []
    # (all of an SA's packets stamped with one time — a capture written without a clock: a copy
    # "within the window" may be a retransmission; verdict.unusable_time says so per tunnel)
    for sa in ctx.state.ike_sas:
        if len(sa.messages) >= CLOCKLESS_PACKETS and sa.first_ts == sa.last_ts:
            continue
        dups.extend(m for m in sa.messages if m.duplicate_of is not None)
    esp_dups = sum(getattr(e, "capture_duplicates", 0) for e in ctx.state.esp_sas
                   if e.packets < CLOCKLESS_PACKETS or e.first_ts != e.last_ts)
    if not dups and not esp_dups:
        return
    refs = []
    for m in dups:
        refs.extend(m.frames)
    yield make("CAPTURE_DUPLICATES", "dups",
               title=msg("{n} packet(s) captured twice", n=len(dups) + esp_dups),
               detail=msg("{ike} IKE message copies and {esp} ESP packet copies arrived within "
                          "{ms:g} ms of their original.", ike=len(dups), esp=esp_dups,
                          ms=ctx.th.duplicate_window * 1000),
               evidence=ctx.evidence(refs, dups[0].ts if dups else None, None),
               wireshark_filter=frames_filter(refs) if refs else "esp")
