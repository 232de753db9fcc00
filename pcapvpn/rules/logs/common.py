"""What the gateway-evidence rooms share: a log entry linked to its tunnel, IKE SA and packet
(:class:`_Linked`), log references on findings, the failure kinds, and small text helpers."""

from __future__ import annotations

from pcapvpn.findings import Evidence, LogRef
from pcapvpn.track.logs import _norm

#: kinds that report a failure (log-only findings are made of these)
FAILURE_KINDS = {"give_up", "no_proposal", "negotiation_failed", "invalid_ke", "auth_failed", "auth_suspected",
                 "ts_unacceptable", "child_failed", "dpd_timeout", "cert_failed", "tls_failed",
                 "tls_crypt_failed", "connect_failed", "invalid_spi", "esp_error",
                 "wg_handshake_invalid"}
#: the stage each failure kind speaks of (the text of a log-only finding)
KIND_STAGE = {"give_up": "reachability", "no_proposal": "negotiation",
              "negotiation_failed": "negotiation",
              "invalid_ke": "negotiation", "auth_failed": "authentication",
              "auth_suspected": "authentication", "cert_failed": "authentication",
              "ts_unacceptable": "child_sa", "child_failed": "child_sa",
              "dpd_timeout": "stability", "tls_failed": "authentication",
              "tls_crypt_failed": "negotiation", "connect_failed": "reachability",
              "invalid_spi": "dataplane", "esp_error": "dataplane",
              "wg_handshake_invalid": "authentication"}
#: log references per finding
MAX_REFS = 8


class _Linked:
    """Per entry: where it belongs."""

    __slots__ = ("ent", "src", "tunnel", "ike_sa", "anchor")

    def __init__(self, ent, src, tunnel, ike_sa, anchor):
        self.ent = ent
        self.src = src
        self.tunnel = tunnel
        self.ike_sa = ike_sa
        self.anchor = anchor


def ref(ctx, li: _Linked, agrees: bool = True, reason: str | None = None,
        nat: bool = False) -> LogRef:
    e = li.ent
    if reason is None and nat and _translated(li):
        a = li.anchor
        seen = a.src if e.ev.direction == "in" else a.dst
        reason = (f"the gateway sees its peer at {_norm(e.ev.peer)}; the capture shows "
                  f"{seen}: an address translation between them")
    return LogRef(file=li.src.name, line=e.ev.line, time=ctx.time(e.ts) if e.ts is not None
                  else None, text=e.ev.raw[:1000], agrees=agrees,
                  reason=reason if reason is not None else e.ev.reason)


def _add_ref(f, r: LogRef) -> None:
    if f.logs is None:
        f.logs = []
    if any(x.file == r.file and x.line == r.line for x in f.logs):
        for x in f.logs:
            if x.file == r.file and x.line == r.line and not r.agrees:
                x.agrees = False
        return
    f.logs.append(r)


def _translated(li) -> bool:
    a = li.anchor
    peer = _norm(li.ent.ev.peer)
    return a is not None and peer is not None and a.kind == "ike" and peer not in (a.src, a.dst)


def _count(c: dict, d: str):
    """Packets (else bytes) of direction ``d`` in a counters dict."""
    for k in (f"packets_{d}", f"pkts_{'decaps' if d == 'in' else 'encaps'}", f"bytes_{d}"):
        if k in c and isinstance(c[k], int):
            return c[k]
    return None


def _at(ctx, ts) -> str:
    return f"{ts - ctx.start:+.3f} s"


def _exch(x) -> str:
    from dissect.vpn import registry as reg

    return reg.exchange_name(x.exch, short=True)


def _ike_msg_filter(sa, msgid) -> str:
    from pcapvpn.rules.common import ike_filter

    return ike_filter(sa, [msgid])


def _copy_evidence(ev: Evidence) -> Evidence:
    return Evidence(frames=list(ev.frames), first=ev.first, last=ev.last,
                    ike_spis=list(ev.ike_spis), esp_spis=list(ev.esp_spis), peers=list(ev.peers))


def _clip(s: str, n: int = 200) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n - 1] + "…"


def _wire(ctx):
    """ESP SAs of the capture by SPI (8 hex digits)."""
    out = {}
    for e in ctx.state.esp_sas:
        if getattr(e, "proto", "esp") == "esp":
            out.setdefault(f"{e.spi:08x}", []).append(e)
    return out


def _host(al) -> str | None:
    """The gateway's own address as the capture shows it (from the packets its log matched:
    the source of what it sent, the destination of what it received)."""
    if al is None:
        return None
    votes: dict = {}
    for ent, a in al.pairs:
        addr = a.src if ent.ev.direction == "out" else a.dst if ent.ev.direction == "in" else None
        if addr:
            votes[addr] = votes.get(addr, 0) + 1
    return max(votes, key=votes.get) if votes else None
