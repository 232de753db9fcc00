"""Hostile text for the report tests: captures whose every string field that reaches a report
carries it (built with scapy), and the checks every rendered report must pass.

Used by tests/report/test_hostile_reports.py (captures, key files) and tests/report/test_fuzz_reports.py
(hypothesis over the report model)."""

from __future__ import annotations

import re
import struct
from pathlib import Path

#: terminal escapes (clear screen, window title, colour, CSI as one C1 byte), a line break that
#: would start a heading, a code fence and a table row in Markdown, HTML, a link, emphasis, an
#: entity, a bidi override, a line separator, a noncharacter, NUL
HOSTILE = ("\x1b[2J\x1b]0;pwned\x07\x1b[31mRED\x9b1m\u202eevil\u2028"
           "\n# heading\n```\n| a | b |\n<script>alert(1)</script> [x](http://e.example) "
           "*em* _u_ `c` ~~s~~ &#27; \\ \r\x00\ufffe-end")
#: the part that survives an ASCII-only field (TLS SNI, PPTP host/vendor: decoded as ASCII)
HOSTILE_ASCII = "".join(c for c in HOSTILE if ord(c) < 0x80)
#: a benign string of the same role: the same capture with it gives the same report structure
BENIGN = "benign"

#: what no rendered report may hold: C0 controls but newline, DEL, C1, bidi controls, line and
#: paragraph separators, noncharacters, lone surrogates
_RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
                  "\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")
#: the tool's own colours (text report on a terminal)
SGR = re.compile(r"\x1b\[[0-9;]*m")


def raw_controls(text: str, colours: bool = False) -> list[str]:
    """The characters of ``text`` that must not be in a report (its own SGR colours allowed
    when ``colours``)."""
    if colours:
        text = SGR.sub("", text)
    return sorted(set(_RAW.findall(text)))


def utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8", "strict")
    except UnicodeEncodeError:
        return False
    return True


# -- Markdown structure ---------------------------------------------------------------------------

def md_shape(md: str) -> list:
    """The structure of a Markdown document as a CommonMark + GFM-tables parser sees it: every
    block token (type, tag, nesting) and, inside each inline run, the inline token types (plain
    text merged).  Two reports of the same model with different strings must have equal shapes:
    capture text then made no heading, row, cell, list, quote, code, link, emphasis, HTML or
    line break."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark").enable("table").enable("strikethrough")
    lines = md.split("\n")
    shape = []
    for tok in parser.parse(md):
        if tok.type == "tr_open" and tok.map:
            # GFM drops the cells past the header's count: count the row's cell separators
            shape.append((tok.type, _pipes(lines[tok.map[0]])))
        elif tok.type != "inline":
            shape.append((tok.type, tok.tag, tok.level))
        if tok.type != "inline":
            continue
        kids = []
        for c in tok.children or ():
            kind = (c.type, c.tag)
            if kind == ("text", "") and kids and kids[-1] == kind:
                continue
            kids.append(kind)
        shape.append(("inline", tuple(kids)))
    return shape


def _pipes(line: str) -> int:
    """Unescaped ``|`` in a table row (a backslash escapes the next character)."""
    n = 0
    i = 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        n += line[i] == "|"
        i += 1
    return n


# -- captures (scapy) -----------------------------------------------------------------------------

CLIENT, GW = "192.0.2.10", "198.51.100.20"        # IKEv1 Aggressive Mode
CLIENT2, GW2 = "192.0.2.11", "198.51.100.21"      # IKEv2
TLS_C, TLS_S = "192.0.2.30", "198.51.100.30"      # SSL-VPN (--vpn-server TLS_S)
L2TP_C, L2TP_S = "192.0.2.40", "198.51.100.40"
PPTP_C, PPTP_S = "192.0.2.50", "198.51.100.50"
T0 = 1_700_000_000.0
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def _l2tp_avp(atype: int, value: bytes) -> bytes:
    return struct.pack(">HHH", 0x8000 | (6 + len(value)), 0, atype) + value


def _l2tp_ctl(msg_type: int, avps: bytes, tid=0, ns=0, nr=0) -> bytes:
    """L2TPv2 control message (RFC 2661 §3.1): T, L, S set; Message Type AVP first."""
    body = _l2tp_avp(0, struct.pack(">H", msg_type)) + avps
    return struct.pack(">HHHHHH", 0xC802, 12 + len(body), tid, 0, ns, nr) + body


def _cut(text: str, n: int, tail: bool = False) -> str:
    """The longest head (tail) of ``text`` that is at most ``n`` bytes of UTF-8."""
    while len(text.encode()) > n:
        text = text[1:] if tail else text[:-1]
    return text or "x"


def _cert(cn: str, expired: bool) -> bytes:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    # X.520 upper bound: 64 (cryptography counts UTF-8 bytes): the head and the tail of the text
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _cut(cn, 64)),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, _cut(cn, 64, tail=True))])
    end = T0 - 86400 if expired else T0 + 86400 * 365
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(key.public_key()).serial_number(7)
         .not_valid_before(dt.datetime.fromtimestamp(T0 - 400 * 86400, dt.timezone.utc))
         .not_valid_after(dt.datetime.fromtimestamp(end, dt.timezone.utc)))
    return b.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


class _Tcp:
    """One TCP connection built with scapy, sequence numbers kept."""

    def __init__(self, frames, client, server, cport, sport):
        self.frames, self.c, self.s, self.cp, self.sp = frames, client, server, cport, sport
        self.seq = {True: 1000, False: 5000}

    def pkt(self, ts, from_client, flags, payload=b""):
        from scapy.layers.inet import IP, TCP
        from scapy.layers.l2 import Ether

        src, dst, sp, dp = ((self.c, self.s, self.cp, self.sp) if from_client
                            else (self.s, self.c, self.sp, self.cp))
        p = (Ether(src=MAC_A, dst=MAC_B) / IP(src=src, dst=dst) /
             TCP(sport=sp, dport=dp, flags=flags, seq=self.seq[from_client],
                 ack=self.seq[not from_client] if "A" in flags else 0) / payload)
        self.frames.append((ts, bytes(p)))
        self.seq[from_client] += len(payload) + (1 if "S" in flags or "F" in flags else 0)

    def handshake(self, ts):
        self.pkt(ts, True, "S")
        self.seq[False] -= 0
        self.pkt(ts + 0.01, False, "SA")
        self.pkt(ts + 0.02, True, "A")


def hostile_frames(text: str) -> list[tuple[float, bytes]]:
    """Frames whose every string that pcapvpn reports carries ``text`` (the ASCII part where the
    protocol field is decoded as ASCII): IKEv1 Aggressive Mode identity and vendor ID (sent four
    times, never answered), an IKEv2 vendor ID, a TLS ClientHello SNI and an expired server
    certificate's subject and issuer on an SSL-VPN, L2TP host names and a StopCCN message with an
    error result, PPTP host names and vendor strings with a refused control connection."""
    from scapy.contrib.ikev2 import (IKEv2, IKEv2_KE, IKEv2_Nonce, IKEv2_Proposal, IKEv2_SA,
                                     IKEv2_Transform, IKEv2_VendorID)
    from scapy.layers.inet import IP, UDP
    from scapy.layers.isakmp import (ISAKMP, ISAKMP_payload_ID, ISAKMP_payload_KE,
                                     ISAKMP_payload_Nonce, ISAKMP_payload_Proposal,
                                     ISAKMP_payload_SA, ISAKMP_payload_Transform,
                                     ISAKMP_payload_VendorID)
    from scapy.layers.l2 import Ether
    from scapy.layers.pptp import (PPTPStartControlConnectionReply,
                                   PPTPStartControlConnectionRequest)
    from scapy.layers.tls.all import (TLS, Cert, ServerName, TLSCertificate, TLSClientHello,
                                      TLS_Ext_ServerName, TLSServerHello, TLSServerHelloDone)

    raw = text.encode("utf-8")
    ascii_ = "".join(c for c in text if ord(c) < 0x80).encode()
    frames: list = []

    def udp(ts, src, dst, sport, dport, payload):
        frames.append((ts, bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src=src, dst=dst) /
                                 UDP(sport=sport, dport=dport) / payload)))

    # IKEv1 Aggressive Mode message 1 (RFC 2409 §5.4), retransmitted, never answered
    tr = ISAKMP_payload_Transform(transform_count=1, transform_id=1, transforms=[
        ("Encryption", "AES-CBC"), ("KeyLength", 128), ("Hash", "SHA"),
        ("Authentication", "PSK"), ("GroupDesc", "2048MODPgr"), ("LifeType", "Seconds"),
        ("LifeDuration", 28800)])
    am = (ISAKMP(init_cookie=b"\x11" * 8, exch_type="aggressive", next_payload="SA") /
          ISAKMP_payload_SA(prop=ISAKMP_payload_Proposal(trans=tr)) /
          ISAKMP_payload_KE(ke=bytes(256)) / ISAKMP_payload_Nonce(nonce=bytes(16)) /
          ISAKMP_payload_ID(IDtype=2, IdentData=raw) / ISAKMP_payload_VendorID(VendorID=raw))
    for i, dt in enumerate((0.0, 4.0, 11.2, 24.2)):
        udp(T0 + dt, CLIENT, GW, 500, 500, am)
    # IKEv2 IKE_SA_INIT with a vendor ID, answered by nothing either
    v2 = (IKEv2(init_SPI=b"\x22" * 8, exch_type=34, flags="Initiator") /
          IKEv2_SA(prop=IKEv2_Proposal(proposal=1, proto=1, trans=(
              IKEv2_Transform(transform_type=1, transform_id=12, key_length=128) /
              IKEv2_Transform(transform_type=2, transform_id=5) /
              IKEv2_Transform(transform_type=3, transform_id=12) /
              IKEv2_Transform(transform_type=4, transform_id=14)))) /
          IKEv2_KE(group=14, ke=bytes(256)) / IKEv2_Nonce(nonce=bytes(32)) /
          IKEv2_VendorID(vendorID=raw))
    for dt in (1.0, 5.0, 12.2):
        udp(T0 + dt, CLIENT2, GW2, 500, 500, v2)
    # SSL-VPN: SNI, then an expired certificate whose subject and issuer are the text
    k = _Tcp(frames, TLS_C, TLS_S, 43000, 443)
    k.handshake(T0 + 2.0)
    hello = TLS(msg=[TLSClientHello(ext=[TLS_Ext_ServerName(
        servernames=[ServerName(servername=b"sni-" + ascii_)])])])
    k.pkt(T0 + 2.1, True, "PA", bytes(hello))
    cert = Cert(_cert(text, expired=True))
    flight = TLS(msg=[TLSServerHello(cipher=0xC02F), TLSCertificate(certs=[cert]),
                      TLSServerHelloDone()])
    k.pkt(T0 + 2.15, False, "PA", bytes(flight))
    # L2TP: SCCRQ / SCCRP with host names, then a StopCCN with result 2 (general error) + message
    host = _l2tp_avp(7, raw)
    udp(T0 + 3.0, L2TP_C, L2TP_S, 1701, 1701,
        _l2tp_ctl(1, _l2tp_avp(2, b"\x01\x00") + host + _l2tp_avp(9, b"\x00\x01")))
    udp(T0 + 3.1, L2TP_S, L2TP_C, 1701, 1701,
        _l2tp_ctl(2, _l2tp_avp(2, b"\x01\x00") + host + _l2tp_avp(9, b"\x00\x02"), tid=1,
                  nr=1))
    udp(T0 + 3.2, L2TP_S, L2TP_C, 1701, 1701,
        _l2tp_ctl(4, _l2tp_avp(9, b"\x00\x02") + _l2tp_avp(1, b"\x00\x02\x00\x06" + raw),
                  tid=1, ns=1, nr=1))
    # PPTP: SCCRQ / SCCRP (result 2: general error) with host names and vendor strings
    p = _Tcp(frames, PPTP_C, PPTP_S, 40000, 1723)
    p.handshake(T0 + 4.0)
    p.pkt(T0 + 4.1, True, "PA", bytes(PPTPStartControlConnectionRequest(
        host_name=ascii_[:64], vendor_string=ascii_[:64])))
    p.pkt(T0 + 4.2, False, "PA", bytes(PPTPStartControlConnectionReply(
        result_code=2, error_code=0, host_name=ascii_[:64], vendor_string=ascii_[:64])))
    frames.sort(key=lambda f: f[0])
    return frames


def write_hostile(path: Path, text: str) -> Path:
    from scapy.utils import PcapWriter

    with PcapWriter(str(path), linktype=1, sync=True) as w:
        for ts, data in hostile_frames(text):
            from scapy.layers.l2 import Ether

            pkt = Ether(data)
            pkt.time = ts
            w.write(pkt)
    return path


#: --vpn-server for the SSL-VPN of the hostile capture
VPN_SERVER = TLS_S
