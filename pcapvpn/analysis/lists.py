"""The report's lists from the rules' results: findings, tunnels, IKE SAs (with their messages'
texts and exchange statuses), ESP SAs and NAT keepalives, at most ``Limits.report_max_items`` of
each in full; and the gateway evidence (``--log``) added after the verdicts."""

from __future__ import annotations

from collections import Counter

from pcapvpn import model as m

#: findings listed, and IKE messages listed over all IKE SAs, at most this many times
#: ``Limits.report_max_items``
TOTAL_ITEMS = 5


def _exchange_status(ctx, sas, dicts, limits) -> None:
    """Each listed exchange's ``status`` as the rules judge it: ``answered``, ``unanswered``, or
    ``pending`` (the capture ended before an answer was due: not visible, never a failure)."""
    from pcapvpn.rules.common import exchange_status

    for sa, d, limit in zip(sas, dicts, limits):
        for x, xd in zip(m.kept(sa.exchanges, limit, ends=True)[0], d["exchanges"]):
            xd["status"] = exchange_status(ctx, x)


def _build_lists(report, state, findings, vmap, start, names, limit, ctx) -> None:
    """The report's lists: at most ``limit`` objects of each in full (``Limits.report_max_items``:
    a flood of a million SAs gives a report of bounded size), the rest counted in
    ``report.omitted``; findings, and the messages of all listed IKE SAs, at most
    ``TOTAL_ITEMS`` times that many.  A tunnel names only SAs and findings the report lists
    (its own ``omitted`` counts the others); the primary finding of a listed tunnel is always
    listed, and so is the first finding of each code and severity (the exit status stays that
    of the whole analysis)."""
    from pcapvpn.findings import finding_groups

    omitted = report.omitted
    tunnels = [(True, t) for t in state.tunnels] + [(False, t) for t in state.vpn_tunnels]
    tunnels, n = m.kept(tunnels, limit)
    gone_tunnels = set()
    if n:
        omitted["tunnels"] = n
        rest = [t for t in state.tunnels] + [t for t in state.vpn_tunnels]
        rest = rest[len(tunnels):]
        gone_tunnels = {t.id for t in rest}
        omitted["tunnel_verdicts"] = dict(Counter(vmap[t.id].verdict for t in rest))
    ike_sas, n = m.kept(state.ike_sas, limit)
    if n:
        omitted["ike_sas"] = n
    esp_sas, n = m.kept(state.esp_sas, limit)
    if n:
        omitted["esp_sas"] = n
    keepalives, n = m.kept(state.keepalives, limit)
    if n:
        omitted["nat_keepalives"] = n
    primaries = {vmap[t.id].primary for _ipsec, t in tunnels}
    listed = []
    per_kind: Counter = Counter()
    left: Counter = Counter()
    budget = TOTAL_ITEMS * limit
    for f in findings:
        kind = (f.code, f.severity)
        if f.id not in primaries and per_kind[kind] and (
                f.tunnel in gone_tunnels or per_kind[kind] >= limit or len(listed) >= budget):
            left[f.code] += 1
            continue
        per_kind[kind] += 1
        listed.append(f)
    if left:
        omitted["findings"] = dict(left)
    report.findings = listed
    report.groups = finding_groups(listed)
    # the messages of all listed IKE SAs together: at most TOTAL_ITEMS * limit (each SA shows
    # at least its first and last message)
    report.ike_sas = []
    shown = []
    budget = TOTAL_ITEMS * limit
    for sa in ike_sas:
        allow = max(2, min(limit, budget))
        budget -= min(len(sa.messages), allow)
        report.ike_sas.append(m.ike_sa_dict(sa, start, names, allow))
        shown.append(allow)
    _message_texts(ike_sas, report.ike_sas, shown)
    _exchange_status(ctx, ike_sas, report.ike_sas, shown)
    report.esp_sas = [m.esp_sa_dict(sa, start, names) for sa in esp_sas]
    report.nat_keepalives = [m._conventions(m._plain(k), start, names) for k in keepalives]
    im = state.inner_models
    # a tunnel's ESP SAs and child SA pairs: only those of the listed SAs are named (a flood's
    # big tunnel holds thousands), the others counted as _trim_tunnels counts them
    shown = {(bytes(e.dst), e.spi) for e in esp_sas}
    cut = []
    report.tunnels = []
    for ipsec, t in tunnels:
        if ipsec:
            esp, pairs, gone = _tunnel_esp(t, shown, limit)
            cut.append(gone)
            report.tunnels.append(m.tunnel_dict(t, vmap[t.id], start, im.get(t.id), names,
                                                esp, pairs))
        else:
            cut.append(None)
            report.tunnels.append(m.vpn_tunnel_dict(t, vmap[t.id], start, names, im.get(t.id)))
    cap = report.capture
    if cap.damage:
        # what of each tunnel's own span the readable parts of the damaged capture cover
        for (_ipsec, t), d in zip(tunnels, report.tunnels):
            d["coverage"] = m.coverage(t.first_ts, t.last_ts, cap.gaps, start, cap.gap_extra)
    _trim_tunnels(report, limit, cut)
    if omitted:
        files, n = m.kept(cap.files, limit)
        if n:
            cap.files = files
            omitted["files"] = n
        warnings, n = m.kept(cap.warnings, limit)
        if n:
            cap.warnings = warnings
            omitted["warnings"] = n
        what = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in omitted.items()
                         if isinstance(v, int))
        nf = sum(omitted.get("findings", {}).values())
        if nf:
            what += (", " if what else "") + f"{nf:,} findings"
        cap.warnings.append(f"report: not listed in full (at most {limit:,} of each kind): "
                            f"{what}; JSON counts them under 'omitted'")


def _tunnel_esp(t, shown: set, limit) -> tuple:
    """``(ESP SA names, child SA pairs, (ESP SAs left out, pairs left out))`` of an IPsec
    tunnel ``t`` as the report lists them: the names of its SAs whose ``(dst, spi)`` is in
    ``shown`` (the report's listed SAs: the same name), at most ``limit``; the pairs whose SAs
    are all among those named, at most ``limit``.  Only what is listed is written (a flood's
    big tunnel holds thousands of SAs; the report lists at most ``limit``)."""
    from pcapvpn.model import addr, hexid

    esp = []
    spis = set()
    for e in t.esp_sas:
        if (bytes(e.dst), e.spi) in shown:
            if limit is None or len(esp) < limit:
                esp.append(f"{addr(e.dst)}/{hexid(e.spi, 8)}")
                spis.add(e.spi)
    kept_pairs = []
    for a, b in t.pairs:
        if (a is None or a.spi in spis) and (b is None or b.spi in spis):
            if limit is None or len(kept_pairs) < limit:
                kept_pairs.append([f"{hexid(a.spi, 8)}" if a else None,
                                   f"{hexid(b.spi, 8)}" if b else None])
    return esp, kept_pairs, (len(t.esp_sas) - len(esp), len(t.pairs) - len(kept_pairs))


def _trim_tunnels(report, limit, cut=None) -> None:
    """A listed tunnel names only the IKE SAs, ESP SAs and findings the report lists, at most
    ``limit`` of each and of its "not seen" notes (the others counted in its own
    ``omitted``); nothing changes for a tunnel within the bounds.  ``cut``: per tunnel, the
    ESP SAs and child SA pairs :func:`_tunnel_esp` already left out (None: not done)."""
    ike = {d["id"] for d in report.ike_sas}
    esp = {f"{d.get('dst')}/{d.get('spi')}" for d in report.esp_sas}
    fids = {f.id for f in report.findings}
    for i, t in enumerate(report.tunnels):
        done = cut[i] if cut is not None else None
        om = {}
        for key, have in (("ike_sas", ike), ("esp_sas", esp), ("findings", fids),
                          ("not_seen", None)):
            if key == "esp_sas" and done is not None:
                if done[0]:
                    om[key] = done[0]
                continue
            lst = t[key]
            names, _n = m.kept([x for x in lst if have is None or x in have], limit)
            gone = len(lst) - len(names)
            if gone:
                t[key] = names
                om[key] = gone
        if done is not None:
            if done[1]:
                om["child_sa_pairs"] = done[1]
        else:
            pairs = t["child_sa_pairs"]
            spis = {e.split("/")[-1] for e in t["esp_sas"]}
            keep = [p for p in pairs if all(x is None or x in spis for x in p)]
            keep, _n = m.kept(keep, limit)
            if len(keep) != len(pairs):
                t["child_sa_pairs"] = keep
                om["child_sa_pairs"] = len(pairs) - len(keep)
        if om:
            t["omitted"] = om


def _apply_logs(report, state, findings, sources) -> list:
    """Gateway evidence (--log): aligned, linked to the findings, contradictions and counter
    comparisons added after the verdicts (a log never changes a verdict)."""
    from pcapvpn.rules.common import Context
    from pcapvpn.rules.logs import apply_logs

    outcome = apply_logs(Context(state), findings, sources)
    report.findings = findings + outcome.findings
    report.log_sources = outcome.sources
    report.log_events = outcome.events
    report.log_tunnel_facts = outcome.tunnel_facts  # not serialised: for a verdict hook
    return report.findings


def _message_texts(sas, dicts, limits=None) -> None:
    """Add the texts of each listed IKE message to its dict: ``proposals`` (its SA payload,
    cleartext or decrypted, as strongSwan writes proposals), ``vendor_ids`` (known name, or the
    text of a printable unknown one, else ``UNKNOWN:<hex>``) and ``identities`` (ID payloads sent
    in the clear: IKEv1 Aggressive Mode, anything unencrypted).  Capture text: renderers escape it,
    --redact replaces identities.  (Belongs in model.ike_message_dict; kept here for now.)"""
    from dissect.vpn import registry as reg
    from dissect.vpn import vendor_ids as vid
    from dissect.vpn.ident import id_value_text
    from pcapvpn.rules.common import proposal_texts

    for i, (sa, d) in enumerate(zip(sas, dicts)):
        limit = limits[i] if limits is not None else None
        for msg, md in zip(m.kept(sa.messages, limit, ends=True)[0], d["messages"]):
            names = []
            for v in msg.vendor_ids or ():
                v = bytes(v)
                if vid.lookup(v) is None and v and all(0x20 <= b < 0x7F for b in v):
                    names.append(repr(v.decode("ascii"))[1:-1])
                else:
                    names.append(vid.describe(v))
            ids = [f"{reg.payload_name(msg.version, p.type)} "
                   f"{reg.id_type_name(msg.version, p.id_type)} {id_value_text(p)}"
                   for p in msg.ids]
            md["vendor_ids"] = names
            md["identities"] = ids
            # the SA payload as an operator writes proposals (a response holds the chosen one)
            if msg.proposals:
                md["proposals"] = proposal_texts(msg.version, msg.proposals)
            inner = getattr(msg, "inner", None)
            if md.get("decryption") is not None and inner and inner.proposals:
                md["decryption"]["proposals"] = proposal_texts(msg.version, inner.proposals)
