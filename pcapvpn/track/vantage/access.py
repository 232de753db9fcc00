"""What one point saw of one flow, whatever its protocol: ESP (key: the SPI), AH (``("ah",
spi)``: the ESP tracker's SAs) or another VPN's numbered flow (``(kind, key, epoch)``: a
:class:`pcapvpn.track.vantage.seqflows.SeqFlow`); and the first point's clock."""

from __future__ import annotations



def by_esp_tracker(key) -> bool:
    return isinstance(key, int) or key[0] == "ah"


def samples_of(p, key, flow):
    et = p.tracker.esp_tracker
    if isinstance(key, int):
        s = et.samples.get(key)
    elif key[0] == "ah":
        s = et.ah_samples.get(key[1])
    else:
        return flow.samples
    # the SPI's current numbering epoch only (a restart since: none)
    return s if s is not None and s.epoch == flow.resets else None


def seen_of(p, key, flow) -> list:
    return p.tracker.esp_tracker.seen(flow) if by_esp_tracker(key) else flow.seen()


def hole_refs_of(p, key, flow, ranges) -> list:
    if by_esp_tracker(key):
        return p.tracker.esp_tracker.hole_refs(flow, ranges)
    return flow.hole_refs(ranges)


def is_approximate(p, key, flow) -> bool:
    if by_esp_tracker(key):
        return flow in p.tracker.esp_tracker.holes_over
    return flow.holes_over or not flow.in_order


def epoch_of(key, flow) -> int:
    """How many restarts of its numbering the flow saw before its current epoch."""
    # the other VPNs' epochs are lined up by their keys (matching._align_epochs)
    return flow.resets if by_esp_tracker(key) else 0


def kind_of(key) -> str:
    return "esp" if isinstance(key, int) else key[0]


def flow_ids(key, flow) -> dict:
    """How the path facts name a flow: ``{"spi": hex}`` (ESP, AH) or ``{"kind", "flow"}``."""
    if isinstance(key, int):
        return {"spi": f"{key:08x}"}
    if key[0] == "ah":
        return {"kind": "ah", "spi": f"{key[1]:08x}"}
    return {"kind": key[0], "flow": flow.label}




def corrected(points, i, ts):
    off = points[i].offset
    if i == 0 or off is None:
        return ts
    return off.to_first(ts)




def window(p):
    """(start, end) of a point's capture on the first point's clock."""
    i_off = p.offset
    s, e = p.start, p.end
    if s is None or e is None:
        return None
    if i_off is not None:
        s, e = i_off.to_first(s), i_off.to_first(e)
    return s, e


def other_epoch(p, key) -> bool:
    """``p`` saw the numbered flow ``key`` only under another epoch (it began capturing after a
    restart another point saw, or the other way round): its epochs do not line up with the
    other points', so it cannot judge this one."""
    if by_esp_tracker(key):
        return False
    store = getattr(p.tracker, "seq_store", None)
    return store is not None and bool(store.flows.get((key[0], key[1])))
