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
        parts.append(f"{opened}/{total} IKE messages" + (" (integrity verified)" if ok else ""))
    if esp_dec:
        opened = sum(d.get("opened", 0) for d in esp_dec)
        total = sum(e.get("packets", 0) for e in esps)
        verified = sum(d.get("verified", 0) for d in esp_dec)
        failed = sum(d.get("icv_failed", 0) for d in esp_dec)
        what = f"{opened}/{total} ESP packets"
        if failed:
            what += f" ({failed} ICV failure(s))"
        elif opened and verified == opened:
            what += " (ICV ok)"
        parts.append(what)
    if parts:
        out.append("decrypted " + ", ".join(parts))
    decs = [(sa, m, m.get("decryption")) for sa in sas for m in sa.get("messages") or ()
            if m.get("decryption") and m["decryption"].get("status") in ("ok", "unverified")]
    idents = _uniq([f"{i.get('payload')} {i.get('value')}" for _sa, _m, d in decs
                    for i in d.get("ids") or ()]
                   + [x.split(" ", 1)[1] if x.count(" ") >= 2 else x
                      for sa in sas for m in sa.get("messages") or ()
                      for x in m.get("identities") or ()])
    if idents:
        out.append("identities: " + "; ".join(idents))
    certs = _uniq([f"{c['subject']} (issuer {c.get('issuer')}, valid "
                   f"{(c.get('not_before') or {}).get('utc', '?')[:10]} to "
                   f"{(c.get('not_after') or {}).get('utc', '?')[:10]})"
                   for _sa, _m, d in decs for c in d.get("certificates") or ()
                   if c.get("subject")])
    if certs:
        out.append("certificates: " + "; ".join(certs))
    chosen = []
    for sa in sas:
        for m in _responder_msgs(sa):
            props = (m.get("decryption") or {}).get("proposals") or m.get("proposals") or ()
            if len(props) == 1:
                chosen.append(f"{m.get('exchange')}: {props[0].split(' ', 1)[-1]}")
    chosen = _uniq(chosen)
    if chosen:
        out.append("proposals chosen: " + "; ".join(chosen))
    ts = []
    for sa in sas:
        for m in _responder_msgs(sa):
            sel = (m.get("decryption") or {}).get("traffic_selectors") or {}
            if sel.get("initiator") or sel.get("responder"):
                ts.append(f"{', '.join(sel.get('initiator') or ['-'])} <=> "
                          f"{', '.join(sel.get('responder') or ['-'])}")
    ts = _uniq(ts)
    if ts:
        out.append("traffic selectors: " + "; ".join(ts))
    cfg = _uniq([f"{c.get('name') or c.get('type')} "
                 + ", ".join(f"{a.get('name') or a.get('type')}"
                             + (f"={a['text']}" if a.get("text") is not None else "")
                             for a in c.get("attributes") or ())
                 for _sa, _m, d in decs for c in d.get("config") or ()])
    if cfg:
        out.append("configuration: " + "; ".join(cfg))
    if inner:
        flows = []
        for f in (inner.get("top_flows") or ())[:MAX_LISTED]:
            proto = _IP_PROTO.get(f.get("proto"), f"proto {f.get('proto')}")
            ports = (f" {f['sport']} -> {f['dport']}" if f.get("sport") is not None
                     and f.get("dport") is not None else "")
            flows.append(f"{f.get('src')} -> {f.get('dst')} {proto}{ports} "
                         f"({f.get('packets')} packets)")
        parts = []
        if "packets_decrypted" in inner:
            parts.append(f"{inner['packets_decrypted']} packet(s) decrypted")
        views = [f"{v.get('label')} (tied by {v.get('tied_by')})"
                 for v in inner.get("views") or () if v.get("kind") != "keys"]
        if views:
            parts.append("seen on " + "; ".join(views[:MAX_LISTED]))
        line = "inside the tunnel: " + (", ".join(parts) or "no packet")
        if flows:
            line += "; top flows: " + "; ".join(flows)
        out.append(line)
        echo = inner.get("icmp_echo") or {}
        dns = inner.get("dns") or {}
        if echo.get("requests") or dns.get("queries"):
            out.append(f"pings answered: {echo.get('answered', 0)}/{echo.get('requests', 0)}; "
                       f"DNS queries answered: {dns.get('answered', 0)}/{dns.get('queries', 0)}")
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
    out.append(f"client {v.get('client', t.get('a'))}"
               + (f" (port{'s' if len(ports) > 1 else ''} "
                  f"{', '.join(map(str, ports[:MAX_LISTED]))}"
                  + (", …" if len(ports) > MAX_LISTED else "") + ")" if ports else "")
               + f" -> server {srv}/{v.get('transport', t.get('transport'))}"
               + f", +{(t.get('first') or {}).get('rel') or 0:.3f} s to "
                 f"+{(t.get('last') or {}).get('rel') or 0:.3f} s")
    p, d = _dirs(v.get("packets")), _dirs(v.get("data_packets"))
    b = _dirs(v.get("bytes"))
    out.append(f"packets: {p[0]} client -> server ({d[0]} data), {p[1]} server -> client "
               f"({d[1]} data); bytes {b[0]} / {b[1]}")
    conns = v.get("tcp_connections") or []
    if conns:
        syn = sum(c.get("syn", 0) for c in conns)
        synack = sum(c.get("syn_ack", 0) for c in conns)
        rst = sum(c.get("rst_from_client", 0) + c.get("rst_from_server", 0) for c in conns)
        out.append(f"TCP connections: {len(conns)} (SYN {syn}, SYN-ACK {synack}, RST {rst})")
    st = v.get(proto) or {}
    if proto == "openvpn":
        prot = st.get("control_protection") or "?"
        prot = "plain (no tls-auth / tls-crypt)" if prot == "none" else prot
        out.append(f"control channel: {prot}"
                   + (" (tls-crypt-v2)" if st.get("tls_crypt_v2") else ""))
        sessions = st.get("sessions") or []
        for s in sessions[:MAX_LISTED]:
            cc, sc = s.get("client_control") or {}, s.get("server_control") or {}
            tls = s.get("tls") or {}
            line = (f"session {s.get('index', 0) + 1}: "
                    f"{'established' if s.get('established') else 'not established'}"
                    f"{' (joined mid-session)' if s.get('mid_session') else ''}, resets "
                    f"{s.get('client_resets', 0)} client / {s.get('server_resets', 0)} server, "
                    f"control packets {cc.get('packets', 0)} / {sc.get('packets', 0)} "
                    f"({cc.get('retransmissions', 0)} / {sc.get('retransmissions', 0)} "
                    f"retransmitted)")
            if tls:
                line += f", TLS {tls.get('stage')}" + (f" ({tls['version']})"
                                                      if tls.get("version") else "")
            elif s.get("control_encrypted"):
                line += ", TLS not visible (control channel encrypted)"
            out.append(line)
        if len(sessions) > MAX_LISTED:
            out.append(f"... {len(sessions) - MAX_LISTED} more session(s)")
    elif proto == "wireguard":
        idx = st.get("receiver_indexes") or []
        missing = sum(i.get("missing", 0) for i in idx)
        out.append(f"handshakes: {st.get('handshakes', 0)} initiation(s), "
                   f"{st.get('handshakes_answered', 0)} answered, "
                   f"{st.get('cookie_replies', 0)} cookie repl(ies); {len(idx)} receiver "
                   f"index(es), {missing} counter value(s) missing")
    elif proto in ("l2tp", "pptp"):
        msgs = st.get("messages") or {}
        if msgs:
            out.append("control messages: " + ", ".join(f"{k} x{n}" for k, n in msgs.items()))
        errs = _uniq([f"{c.get('message')} from the {c.get('from')}: result {c.get('result')}"
                      + (f", error {c.get('error')}" if c.get("error") else "")
                      + (f" ({c['error_message']})" if c.get("error_message") else "")
                      for c in st.get("control") or ()
                      if c.get("result") is not None or c.get("error")])
        for e in errs[:MAX_LISTED]:
            out.append(e)
    elif proto == "sslvpn":
        if st.get("recognised_by"):
            out.append("recognised as an SSL-VPN by: " + "; ".join(st["recognised_by"]))
        stages = _uniq([f"{(c.get('tls') or {}).get('stage')}"
                        + (f" ({c['tls']['version']})" if (c.get("tls") or {}).get("version")
                           else "")
                        for c in conns if c.get("tls")])
        if stages:
            out.append("TLS stage: " + ", ".join(stages))
        for f in (st.get("dtls_flows") or ())[:MAX_LISTED]:
            dt = f.get("dtls") or {}
            fp = _dirs(f.get("packets"))
            out.append(f"DTLS channel {f.get('client_port')} -> {f.get('server_port')}: "
                       f"{dt.get('stage')}, packets {fp[0]} / {fp[1]}")
    return out
