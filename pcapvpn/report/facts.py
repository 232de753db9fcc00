"""What a tunnel's section says beside its findings, as short lines for the text, Markdown and
HTML reports (layout only: the facts are the model's, nothing is judged here).

- :func:`learnt`: an IPsec tunnel analysed with ``--keys``: how much was decrypted (IKE messages,
  ESP packets, integrity), the identities and certificates, the proposals chosen, the traffic
  selectors, the configuration payload, and the traffic inside (top flows, pings and DNS
  answered);
- :func:`vpn_facts`: a tunnel of OpenVPN, WireGuard, L2TP, PPTP or SSL-VPN: client and server,
  packets per direction, and the protocol's handshakes, sessions, control messages or TLS stage.
"""

from __future__ import annotations

from pcapvpn.findings import Term, msg, msg_join
from pcapvpn.report.summary import endpoint

#: flows and sessions listed at most per tunnel
MAX_LISTED = 5
_IP_PROTO = {1: "ICMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 58: "ICMPv6"}


def tunnel_facts(report, t) -> list[str]:
    """The lines for tunnel ``t`` (a ``report.tunnels`` dict)."""
    if t.get("protocol", "ipsec") == "ipsec":
        return learnt(report, t)
    return vpn_facts(t)


def _uniq(items) -> list:
    out = []
    for x in items:
        if x and x not in out:
            out.append(x)
    return out


def _responder_msgs(sa) -> list:
    """The IKE SA's responses (IKEv2) / the responder's messages (IKEv1)."""
    resp = (sa.get("responder") or {}).get("address")
    out = []
    for m in sa.get("messages") or ():
        if m.get("duplicate_of") is not None or m.get("retransmission_of") is not None:
            continue
        if sa.get("version") == 2:
            if m.get("response"):
                out.append(m)
        elif resp and m.get("src", "").rpartition(":")[0] == resp:
            out.append(m)
    return out


def learnt(report, t) -> list[str]:
    """What the keys showed about IPsec tunnel ``t`` (empty without keys)."""
    ids = set(t.get("ike_sas") or ())
    sas = [sa for sa in report.ike_sas if sa["id"] in ids]
    spis = set(t.get("esp_sas") or ())
    esps = [e for e in report.esp_sas if f"{e.get('dst')}/{e.get('spi')}" in spis]
    ike_dec = [sa["decryption"] for sa in sas if sa.get("decryption")]
    esp_dec = [e.get("decryption") for e in esps if e.get("decryption")]
    inner = t.get("inner")
    if not ike_dec and not esp_dec and not (inner and "packets_decrypted" in inner):
        return []  # plaintext views alone: the findings name them (this is what keys showed)
    out = []
    parts = []
    if ike_dec:
        opened = sum(d.get("messages_opened", 0) for d in ike_dec)
        total = sum(d.get("messages_encrypted", 0) for d in ike_dec)
        ok = opened and all(d.get("integrity_verified") for d in ike_dec
                            if d.get("messages_opened"))
        parts.append(msg("{opened}/{total} IKE messages", opened=opened, total=total)
                     + (msg(" (integrity verified)") if ok else ""))
    if esp_dec:
        opened = sum(d.get("opened", 0) for d in esp_dec)
        total = sum(e.get("packets", 0) for e in esps)
        verified = sum(d.get("verified", 0) for d in esp_dec)
        failed = sum(d.get("icv_failed", 0) for d in esp_dec)
        what = msg("{opened}/{total} ESP packets", opened=opened, total=total)
        if failed:
            what += msg(" ({n} ICV failure(s))", n=failed)
        elif opened and verified == opened:
            what += msg(" (ICV ok)")
        parts.append(what)
    if parts:
        out.append(msg("decrypted {parts}", parts=msg_join(", ", parts)))
    decs = [(sa, m, m.get("decryption")) for sa in sas for m in sa.get("messages") or ()
            if m.get("decryption") and m["decryption"].get("status") in ("ok", "unverified")]
    idents = _uniq([f"{i.get('payload')} {i.get('value')}" for _sa, _m, d in decs
                    for i in d.get("ids") or ()]
                   + [x.split(" ", 1)[1] if x.count(" ") >= 2 else x
                      for sa in sas for m in sa.get("messages") or ()
                      for x in m.get("identities") or ()])
    if idents:
        out.append(msg("identities: {ids}", ids="; ".join(idents)))
    certs = _uniq([msg("{subject} (issuer {issuer}, valid {start} to {end})",
                       subject=c['subject'], issuer=c.get('issuer'),
                       start=(c.get('not_before') or {}).get('utc', '?')[:10],
                       end=(c.get('not_after') or {}).get('utc', '?')[:10])
                   for _sa, _m, d in decs for c in d.get("certificates") or ()
                   if c.get("subject")])
    if certs:
        out.append(msg("certificates: {certs}", certs=msg_join("; ", certs)))
    chosen = []
    for sa in sas:
        for m in _responder_msgs(sa):
            props = (m.get("decryption") or {}).get("proposals") or m.get("proposals") or ()
            if len(props) == 1:
                chosen.append(f"{m.get('exchange')}: {props[0].split(' ', 1)[-1]}")
    chosen = _uniq(chosen)
    if chosen:
        out.append(msg("proposals chosen: {chosen}", chosen="; ".join(chosen)))
    ts = []
    for sa in sas:
        for m in _responder_msgs(sa):
            sel = (m.get("decryption") or {}).get("traffic_selectors") or {}
            if sel.get("initiator") or sel.get("responder"):
                ts.append(f"{', '.join(sel.get('initiator') or ['-'])} <=> "
                          f"{', '.join(sel.get('responder') or ['-'])}")
    ts = _uniq(ts)
    if ts:
        out.append(msg("traffic selectors: {ts}", ts="; ".join(ts)))
    cfg = _uniq([f"{c.get('name') or c.get('type')} "
                 + ", ".join(f"{a.get('name') or a.get('type')}"
                             + (f"={a['text']}" if a.get("text") is not None else "")
                             for a in c.get("attributes") or ())
                 for _sa, _m, d in decs for c in d.get("config") or ()])
    if cfg:
        out.append(msg("configuration: {cfg}", cfg="; ".join(cfg)))
    if inner:
        flows = []
        for f in (inner.get("top_flows") or ())[:MAX_LISTED]:
            proto = _IP_PROTO.get(f.get("proto"), f"proto {f.get('proto')}")
            ports = (f" {f['sport']} -> {f['dport']}" if f.get("sport") is not None
                     and f.get("dport") is not None else "")
            flows.append(msg("{src} -> {dst} {proto}{ports} ({n} packets)", src=f.get('src'),
                             dst=f.get('dst'), proto=proto, ports=ports, n=f.get('packets')))
        parts = []
        if "packets_decrypted" in inner:
            parts.append(msg("{n} packet(s) decrypted", n=inner['packets_decrypted']))
        views = [msg("{label} (tied by {tied_by})", label=v.get('label'),
                     tied_by=Term(v.get('tied_by')))
                 for v in inner.get("views") or () if v.get("kind") != "keys"]
        if views:
            parts.append(msg("seen on {views}", views=msg_join("; ", views[:MAX_LISTED])))
        line = msg("inside the tunnel: {what}", what=msg_join(", ", parts) or msg("no packet"))
        if flows:
            line += msg("; top flows: {flows}", flows=msg_join("; ", flows))
        out.append(line)
        echo = inner.get("icmp_echo") or {}
        dns = inner.get("dns") or {}
        if echo.get("requests") or dns.get("queries"):
            out.append(msg("pings answered: {echo}/{requests}; DNS queries answered: "
                           "{dns}/{queries}", echo=echo.get('answered', 0),
                           requests=echo.get('requests', 0), dns=dns.get('answered', 0),
                           queries=dns.get('queries', 0)))
    return out


def _dirs(d: dict | None) -> tuple:
    d = d or {}
    return d.get("client_to_server", 0), d.get("server_to_client", 0)


def vpn_facts(t) -> list[str]:
    """The handshakes, sessions and per-direction counts of a VPN beside IPsec."""
    v = t.get("vpn") or {}
    proto = v.get("protocol") or t.get("protocol")
    out = []
    ports = v.get("client_ports") or []
    srv = endpoint(f"{v.get('server', t.get('b'))}:{v.get('server_port', t.get('server_port'))}")
    plist = ", ".join(map(str, ports[:MAX_LISTED])) + (", …" if len(ports) > MAX_LISTED else "")
    out.append(msg("client {client}", client=v.get('client', t.get('a')))
               + ((msg(" (ports {ports})", ports=plist) if len(ports) > 1
                   else msg(" (port {ports})", ports=plist)) if ports else "")
               + msg(" -> server {srv}/{transport}, +{first:.3f} s to +{last:.3f} s", srv=srv,
                     transport=v.get('transport', t.get('transport')),
                     first=(t.get('first') or {}).get('rel') or 0,
                     last=(t.get('last') or {}).get('rel') or 0))
    p, d = _dirs(v.get("packets")), _dirs(v.get("data_packets"))
    b = _dirs(v.get("bytes"))
    out.append(msg("packets: {p0} client -> server ({d0} data), {p1} server -> client "
                   "({d1} data); bytes {b0} / {b1}", p0=p[0], d0=d[0], p1=p[1], d1=d[1],
                   b0=b[0], b1=b[1]))
    conns = v.get("tcp_connections") or []
    if conns:
        syn = sum(c.get("syn", 0) for c in conns)
        synack = sum(c.get("syn_ack", 0) for c in conns)
        rst = sum(c.get("rst_from_client", 0) + c.get("rst_from_server", 0) for c in conns)
        out.append(msg("TCP connections: {n} (SYN {syn}, SYN-ACK {synack}, RST {rst})",
                       n=len(conns), syn=syn, synack=synack, rst=rst))
    st = v.get(proto) or {}
    if proto == "openvpn":
        prot = st.get("control_protection") or "?"
        prot = Term("plain (no tls-auth / tls-crypt)") if prot == "none" else prot
        out.append(msg("control channel: {prot}", prot=prot)
                   + (" (tls-crypt-v2)" if st.get("tls_crypt_v2") else ""))
        sessions = st.get("sessions") or []
        for s in sessions[:MAX_LISTED]:
            cc, sc = s.get("client_control") or {}, s.get("server_control") or {}
            tls = s.get("tls") or {}
            line = msg("session {n}: {state}{mid}, resets {cr} client / {sr} server, control "
                       "packets {cp} / {sp} ({cx} / {sx} retransmitted)",
                       n=s.get('index', 0) + 1,
                       state=Term('established' if s.get('established') else 'not established'),
                       mid=msg(" (joined mid-session)") if s.get('mid_session') else "",
                       cr=s.get('client_resets', 0), sr=s.get('server_resets', 0),
                       cp=cc.get('packets', 0), sp=sc.get('packets', 0),
                       cx=cc.get('retransmissions', 0), sx=sc.get('retransmissions', 0))
            if tls:
                line += msg(", TLS {stage}", stage=Term(tls.get('stage'))) + (
                    f" ({tls['version']})" if tls.get("version") else "")
            elif s.get("control_encrypted"):
                line += msg(", TLS not visible (control channel encrypted)")
            out.append(line)
        if len(sessions) > MAX_LISTED:
            out.append(msg("... {n} more session(s)", n=len(sessions) - MAX_LISTED))
    elif proto == "wireguard":
        idx = st.get("receiver_indexes") or []
        missing = sum(i.get("missing", 0) for i in idx)
        out.append(msg("handshakes: {n} initiation(s), {answered} answered, {cookies} cookie "
                       "repl(ies); {idx} receiver index(es), {missing} counter value(s) missing",
                       n=st.get('handshakes', 0), answered=st.get('handshakes_answered', 0),
                       cookies=st.get('cookie_replies', 0), idx=len(idx), missing=missing))
    elif proto in ("l2tp", "pptp"):
        msgs = st.get("messages") or {}
        if msgs:
            out.append(msg("control messages: {msgs}",
                           msgs=", ".join(f"{k} x{n}" for k, n in msgs.items())))
        errs = _uniq([msg("{message} from the {side}: result {result}", message=c.get('message'),
                          side=Term(c.get('from')), result=c.get('result'))
                      + (msg(", error {error}", error=c.get('error')) if c.get("error") else "")
                      + (f" ({c['error_message']})" if c.get("error_message") else "")
                      for c in st.get("control") or ()
                      if c.get("result") is not None or c.get("error")])
        for e in errs[:MAX_LISTED]:
            out.append(e)
    elif proto == "sslvpn":
        if st.get("recognised_by"):
            out.append(msg("recognised as an SSL-VPN by: {why}",
                           why=msg_join("; ", [Term(x) for x in st["recognised_by"]])))
        stages = _uniq([msg("{stage}{version}", stage=Term(f"{(c.get('tls') or {}).get('stage')}"),
                            version=(f" ({c['tls']['version']})"
                                     if (c.get("tls") or {}).get("version") else ""))
                        for c in conns if c.get("tls")])
        if stages:
            out.append(msg("TLS stage: {stages}", stages=msg_join(", ", stages)))
        for f in (st.get("dtls_flows") or ())[:MAX_LISTED]:
            dt = f.get("dtls") or {}
            fp = _dirs(f.get("packets"))
            out.append(msg("DTLS channel {cport} -> {sport}: {stage}, packets {p0} / {p1}",
                           cport=f.get('client_port'), sport=f.get('server_port'),
                           stage=Term(dt.get('stage')), p0=fp[0], p1=fp[1]))
    return out
