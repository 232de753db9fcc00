"""The IKE <-> ESP cross-check: every ESP SA tied to the child SA that announced its SPI in
decrypted IKE (ESP after its DELETE, ESP on an SPI nobody announced: ESP_SPI_MISMATCH; a child SA
that never carried ESP: ESP_SA_UNUSED)."""

from __future__ import annotations

from dissect.vpn import registry as reg
from dissect.vpn.registry import ExchangeType, ProtocolId
from pcapvpn.findings import declare, make, msg
from pcapvpn.rules import rule, supersede
from pcapvpn.rules.common import esp_filter, ike_filter, ike_spis, ip_text
from pcapvpn.rules.decrypted.common import OPENED, _msgs, _request_of

declare("ESP_SA_UNUSED", "dataplane", "warning",
        "A child SA was negotiated (its SPIs announced in IKE) but neither of its ESP SAs ever "
        "carried a packet in the capture.",
        ["Check that traffic matching the traffic selectors is sent at all (routing / policy on "
         "the gateways: strongSwan installs policies only for the negotiated selectors).",
         "Check for a filter dropping ESP (IP protocol 50) or UDP 4500 on the path."])


class Child:
    """A child SA announced in decrypted IKE: the SPIs each side receives on."""

    __slots__ = ("sa", "x", "ts", "proto", "spis", "deleted", "msgs")

    def __init__(self, sa, x, ts, proto, spis, msgs):
        self.sa = sa
        self.x = x
        self.ts = ts
        self.proto = proto
        self.spis = spis          # {int spi: packed address of the peer receiving on it}
        self.deleted = None       # (ts, IkeMsg) of the first DELETE naming it
        self.msgs = msgs


def children(sa) -> list:
    """Child SAs of an IKE SA from its decrypted exchanges (IKEv2 IKE_AUTH / CREATE_CHILD_SA,
    IKEv1 Quick Mode) and the DELETEs naming them (RFC 7296 §3.11 / RFC 2408 §3.15: a Delete
    lists the sender's inbound SPIs)."""
    out = []
    for x in sa.exchanges:
        if sa.version == 2 and x.exch in (ExchangeType.IKE_AUTH, ExchangeType.CREATE_CHILD_SA):
            req = _request_of(x)
            resp = next((m for m in x.msgs if m.is_response and m.inner is not None
                         and m.decrypt_status in OPENED), None)
        elif sa.version == 1 and x.exch == ExchangeType.QUICK_MODE:
            req = next((m for m in x.msgs if m.step == 1 and m.inner is not None
                        and m.decrypt_status in OPENED), None)
            resp = next((m for m in x.msgs if m.step == 2 and m.inner is not None
                         and m.decrypt_status in OPENED), None)
        else:
            continue
        if req is None or resp is None:
            continue
        rs = resp.inner.child_spis
        qs = req.inner.child_spis
        if not rs or not qs:
            continue
        proto = rs[0].protocol
        q = next((c for c in qs if c.protocol == proto), None)
        if q is None:
            continue
        spis = {q.value: req.src, rs[0].value: resp.src}
        out.append(Child(sa, x, resp.ts, proto, spis, [req, resp]))
    by_spi = {}
    for c in out:
        for s in c.spis:
            by_spi.setdefault(s, []).append(c)
    for m in _msgs(sa):
        for dl in m.inner.deletes:
            proto = dl.protocol
            if proto == ProtocolId.IKE:
                # deleting an IKEv2 SA deletes its child SAs (RFC 7296 §1.4.1) — unless it was
                # rekeyed: the new IKE SA inherits them (§2.18).  IKEv1 phase 2 SAs outlive
                # their phase 1.
                hit = out if sa.version == 2 and sa.rekeyed_by is None else []
            elif proto in (ProtocolId.AH, ProtocolId.ESP):
                hit = [c for s in dl.spi_values for c in by_spi.get(s, ())]
            else:
                continue
            for c in hit:
                if c.deleted is None and m.ts >= c.ts:
                    c.deleted = (m.ts, m)
    return out


def _fully_decrypted(sa) -> bool:
    enc = [m for m in sa.messages if m.encrypted and not m.copy]
    return bool(enc) and all(m.decrypt_status in OPENED or m.decrypt_detail
                             and m.decrypt_detail.startswith("fragment") for m in enc)


@rule
def cross_check(ctx):
    th = ctx.th
    for t in ctx.state.tunnels:
        kids = []
        for sa in t.ike_sas:
            kids.extend(children(sa))
        if not kids:
            continue
        by_spi = {}
        for c in kids:
            for s in c.spis:
                by_spi.setdefault(s, []).append(c)
        complete = bool(t.ike_sas) and all(
            _fully_decrypted(sa) and not sa.mid_session for sa in t.ike_sas)
        ike_start = min(sa.first_ts for sa in t.ike_sas)
        used = set()
        for e in t.esp_sas:
            if e.proto not in ("esp", "ah"):
                continue
            cs = [c for c in by_spi.get(e.spi, ()) if c.spis.get(e.spi) == e.dst] or \
                by_spi.get(e.spi, [])
            spi = f"{e.spi:08x}"
            if cs:
                c = max((c for c in cs if c.ts <= e.first_ts + 1.0), key=lambda c: c.ts,
                        default=cs[0])
                used.add(id(c))
                if c.deleted is not None and e.last_ts > c.deleted[0] + th.delete_grace:
                    dts, dm = c.deleted
                    after = e.packets_between(dts + th.delete_grace)
                    refs = list(dm.frames) + [e.last_ref]
                    f = make("ESP_SPI_MISMATCH", f"{t.id}|dec|after-delete|{spi}",
                             title=msg("ESP on SPI 0x{spi} after its SA was deleted (decrypted "
                                       "DELETE)", spi=spi),
                             detail=msg("{who} deleted the child SA with SPIs {spis} at +{t} s "
                                        "(DELETE in {exchange}, decrypted), but {src} kept sending "
                                        "ESP on 0x{spi} until +{t1} s", who=ip_text(dm.src),
                                        spis=_spi_list(c), t=ctx.rel(dts),
                                        exchange=reg.exchange_name(dm.exch, short=True),
                                        src=ip_text(e.src), spi=spi, t1=ctx.rel(e.last_ts))
                                    + (msg(" (at least {n} packets more than {grace:g} s after "
                                           "the DELETE)", n=after, grace=th.delete_grace)
                                       if after else "")
                                    + msg(": the receiver drops them (and may answer "
                                          "INVALID_SPI)."),
                             basis="decrypted",
                             evidence=ctx.evidence(refs, dts, e.last_ts,
                                                   ike_spis=ike_spis(c.sa), esp_spis=[spi]),
                             wireshark_filter=f"({esp_filter([e.spi])}) || "
                                              f"({ike_filter(c.sa, msgids=[dm.msgid])})",
                             tunnel=t.id)
                    yield supersede(f, ("ESP_SPI_MISMATCH",), esp_spis=[spi])
                continue
            # no child SA announced this SPI
            if not complete or e.first_ts < ike_start or e.mid_session(th.replay_window):
                continue
            f = make("ESP_SPI_MISMATCH", f"{t.id}|dec|unannounced|{spi}",
                     title=msg("ESP on SPI 0x{spi} that no IKE exchange announced", spi=spi),
                     detail=msg("{src} sent {n} ESP packet(s) to {dst} on SPI 0x{spi} from +{t} s, "
                                "but no child SA negotiated in the capture (all {msgs} IKE "
                                "messages decrypted; SPIs announced: {spis}) uses it: an SA from "
                                "an earlier IKE SA or a peer that lost its state.",
                                src=ip_text(e.src), n=e.packets, dst=ip_text(e.dst), spi=spi,
                                t=ctx.rel(e.first_ts),
                                msgs=sum(len(sa.messages) for sa in t.ike_sas),
                                spis=', '.join('0x%08x' % s for s in sorted(by_spi))),
                     basis="decrypted",
                     evidence=ctx.evidence([e.first_ref, e.last_ref], e.first_ts, e.last_ts,
                                           esp_spis=[spi],
                                           peers=[ip_text(e.src), ip_text(e.dst)]),
                     wireshark_filter=esp_filter([e.spi]), tunnel=t.id)
            yield supersede(f, ("ESP_SPI_MISMATCH",), esp_spis=[spi])
        seen_spis = {e.spi for e in t.esp_sas}
        for c in kids:
            if id(c) in used or any(s in seen_spis for s in c.spis):
                continue
            if ctx.now - c.ts < th.one_way_window:
                continue
            if c.deleted is not None and c.deleted[0] - c.ts < th.one_way_window:
                continue  # torn down (or rekeyed) before it could carry traffic
            refs = ctx.msg_refs(c.msgs)
            yield make("ESP_SA_UNUSED", f"{t.id}|dec|unused|{c.sa.id}|{c.x.index}",
                       title=msg("Child SA {spis} never carried ESP", spis=_spi_list(c)),
                       detail=msg("The child SA negotiated in {exchange} at +{t} s (SPIs {spis}, "
                                  "decrypted) carried no ESP in either direction during the "
                                  "{span:.1f} s until {end}",
                                  exchange=reg.exchange_name(c.x.exch, short=True),
                                  t=ctx.rel(c.ts), spis=_spi_list(c), span=ctx.now - c.ts,
                                  end=msg("its DELETE.") if c.deleted
                                  else msg("the capture ends.")),
                       basis="decrypted",
                       evidence=ctx.evidence(refs, c.msgs[0].ts, c.ts, ike_spis=ike_spis(c.sa),
                                             esp_spis=[f"{s:08x}" for s in c.spis]),
                       wireshark_filter=ike_filter(c.sa, msgids=[c.x.msgid]), tunnel=t.id)


def _spi_list(c) -> str:
    return "/".join(f"0x{s:08x}" for s in c.spis)
