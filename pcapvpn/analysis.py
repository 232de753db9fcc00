"""Run the pipeline over capture files and build the report model.

sources → decode → track → (rules) → model.  The CLI and the tests call :func:`analyze`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pcapvpn import __version__
from pcapvpn import model as m
from pcapvpn.decode import Decoder, Limits, NullSink
from pcapvpn.sources import merge_frames, open_source
from pcapvpn.track.counts import CountingSink

STAGES = ("read", "decode", "full")


def linktype_name(lt: int) -> str:
    try:
        from dissect.vpn.link import linktype_name as _name
    except ImportError:  # pragma: no cover
        return str(lt)
    return _name(lt)


@dataclass
class Options:
    limits: Limits | None = None
    #: stop after a pipeline stage (benchmarks): "read", "decode" or "full"
    stop_after: str = "full"


def analyze(paths, options: Options | None = None) -> m.Report:
    """Analyse the capture files ``paths`` (``-`` = stdin); raises SourceError for bad inputs."""
    options = options or Options()
    sources = []
    try:
        for i, p in enumerate(paths):
            sources.append(open_source(p, i))
        frames = merge_frames(sources)
        if options.stop_after == "read":
            n = 0
            for _ in frames:
                n += 1
            sink = CountingSink()
            decoder = Decoder(NullSink(), options.limits)
            decoder.frames = n
        else:
            sink = CountingSink() if options.stop_after == "full" else NullSink()
            decoder = Decoder(sink, options.limits)
            decoder.run(frames)
            decoder.finish()
            if not isinstance(sink, CountingSink):
                sink = CountingSink()
        return build_report(sources, decoder, sink)
    finally:
        for s in sources:
            s.close()


def build_report(sources, decoder: Decoder, sink: CountingSink) -> m.Report:
    starts = [s.first_ts for s in sources if s.first_ts is not None]
    ends = [s.last_ts for s in sources if s.last_ts is not None]
    start = min(starts) if starts else None
    end = max(ends) if ends else None
    names = [s.name for s in sources]

    files = []
    linktypes: Counter = Counter()
    if_drop_total = None
    os_drop_total = None
    warnings = []
    for s in sources:
        ifaces = []
        for idx, itf in enumerate(s.interfaces):
            isb = s.isb.get(idx, {}) if isinstance(s.isb, dict) else {}
            if_drop = isb.get("ifdrop")
            os_drop = isb.get("osdrop")
            if if_drop is not None:
                if_drop_total = (if_drop_total or 0) + if_drop
            if os_drop is not None:
                os_drop_total = (os_drop_total or 0) + os_drop
            ifaces.append(m.Interface(idx, itf.linktype, linktype_name(itf.linktype), itf.snaplen,
                                      getattr(itf, "name", None), if_drop, os_drop))
        for lt, c in s.linktypes.items():
            linktypes[linktype_name(lt)] += c
        files.append(m.FileInfo(s.name, s.format, s.compressed, s.frames, s.bytes,
                                m.Time.of(s.first_ts, start), m.Time.of(s.last_ts, start),
                                ifaces, list(s.warnings)))
        warnings.extend(s.warnings)

    dc = decoder.counters()
    counts = m.Counts(
        ike=sink.ike_udp + sink.ike_tcp,
        ike_udp_500=sink.ike_udp - sink.ike_on_4500,
        ike_udp_4500=sink.ike_on_4500,
        ike_tcp=sink.ike_tcp,
        esp=sink.esp_ip + sink.esp_udp + sink.esp_in_tcp,
        esp_ip=sink.esp_ip,
        esp_udp=sink.esp_udp,
        esp_tcp=sink.esp_in_tcp,
        ah=sink.ah,
        nat_keepalives=sink.keepalives,
        icmp_errors=sink.icmp_errors,
        ip_fragment_frames=dc["ip_fragment_frames"],
        reassembled_datagrams=dc["reassembled_datagrams"],
        incomplete_fragment_sets=dc["incomplete_fragment_sets"],
        tcp_segments_on_vpn_ports=dc["tcp_segments"],
        non_ip_frames=dc["non_ip"],
        other_ip_frames=dc["other"],
        truncated_frames=dc["truncated"],
    )
    samples = [m.DecodeError(names[ref[0]], ref[1], reason) for ref, reason in sink.error_samples]
    summary = m.CaptureSummary(
        files=files,
        frames=dc["frames"],
        start=m.Time.of(start, start),
        end=m.Time.of(end, start),
        duration=round(end - start, 6) if start is not None else 0.0,
        linktypes=dict(linktypes),
        drops={"if_drop": if_drop_total, "os_drop": os_drop_total},
        counts=counts,
        decode_errors=dc["decode_errors"],
        decode_errors_by_reason=dict(decoder.errors_by_reason),
        decode_error_samples=samples,
        warnings=warnings,
    )
    return m.Report(tool="pcapvpn", version=__version__, capture=summary)
