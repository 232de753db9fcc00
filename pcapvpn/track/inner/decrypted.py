"""ESP decryption per keyed SA and what the decrypted traffic shows (the "inner" stage).

Opt-in and per SA: the decoder hands the ESP bytes of a packet to :meth:`InnerTracker.esp_payload`
only when its SPI has a key (``keyed_spis``); every other ESP packet costs nothing more.  Each
keyed :class:`pcapvpn.track.esp.EspSA` gets an :class:`EspCrypto` (its ``decrypt`` attribute):
packets opened / integrity failures (the keys do not match this SA) / unsupported, and a summary of
the inner traffic: the inner IP header (addresses, protocol, ports) of tunnel mode (Next Header
4/41) or the transport header of transport mode (L2TP/IPsec: UDP 1701), the top inner flows,
ICMP echo requests answered or not, DNS queries answered or not.  Echo requests and DNS queries
are paired with their answers across the two SAs of a tunnel by the inner addresses, identifiers
and sequence numbers.

Memory is bounded: ``MAX_FLOWS`` flows per SA, ``MAX_PENDING`` open echo requests / DNS queries
overall (the oldest are given up), ``MAX_EVIDENCE`` unanswered ones kept as evidence.
"""

from __future__ import annotations

from collections import OrderedDict

from dissect.vpn import dns as _dns
from dissect.vpn import esp as _esp
from dissect.vpn import ip as _ip
from dissect.vpn.errors import DissectError
from pcapvpn.decrypt.esp import EspDecryptor
from pcapvpn.decrypt.primitives import ICV_FAILED, MALFORMED, OK, TRUNCATED, UNVERIFIED
from pcapvpn.track.inner.consts import (
    _DNS_HEADER, _DNS_PORT, _ECHO4, _ECHO6, _ESP, _ESP_HEADER, _ICMP, _ICMP_HEADER, _ICMPV6,
    _IPIP, _IPV6, _L2TP_PORT, _PORTS_LEN, _TCP, _UDP, _UDP_HEADER, MAX_NESTED, _decode_ipv4, _txt,
)

MAX_FLOWS = 64
MAX_PENDING = 20000
MAX_EVIDENCE = 20
#: an echo request / DNS query without an answer after this many seconds is unanswered
ANSWER_TIMEOUT = 5.0



class _All:
    """``keyed_spis`` when a key has no SPI (tcpdump ``-E algo:secret``): every SPI."""

    def __contains__(self, spi):
        return True

    def __bool__(self):
        return True


class EspCrypto:
    """Decryption results of one ESP SA."""

    __slots__ = ("dec", "key_origin", "ok", "unverified", "icv_failed", "malformed", "truncated",
                 "unsupported", "first_ok", "first_fail", "last_fail", "inner_ipver",
                 "flows", "flows_other", "next_headers", "reason", "inner_bytes",
                 "echo", "dns", "echo_unanswered", "dns_unanswered")

    def __init__(self, dec, reason=None):
        self.dec = dec
        self.key_origin = dec.key.origin if dec is not None and dec.key is not None else None
        self.reason = reason
        self.ok = 0
        self.unverified = 0
        self.icv_failed = 0
        self.malformed = 0
        self.truncated = 0
        self.unsupported = 0
        self.first_ok = None      # (ts, ref)
        self.first_fail = None    # (ts, ref, status)
        self.last_fail = None
        self.inner_ipver = None
        #: (ipver, src, dst, proto, sport, dport) -> [packets, bytes, first ts, last ts, first ref]
        self.flows: dict = {}
        self.flows_other = 0
        self.next_headers: dict = {}
        self.inner_bytes = 0
        #: [requests sent in this SA, of them answered] (answers travel in the reverse SA)
        self.echo = [0, 0]
        self.dns = [0, 0]
        #: unanswered requests: ((ipver, src, dst, id, seq | sport, id), ts, ref), first ones
        self.echo_unanswered: list = []
        self.dns_unanswered: list = []

    @property
    def opened(self) -> int:
        return self.ok + self.unverified

    @property
    def failed(self) -> int:
        return self.icv_failed + self.malformed

    @property
    def status(self) -> str:
        """``decrypted`` (every packet opened), ``partial``, ``key_mismatch`` (none opened, the
        integrity check or trailer says the key is wrong), ``unsupported``, ``truncated``."""
        if self.dec is None or not self.dec.supported:
            return "unsupported"
        if self.opened and not self.failed:
            return "decrypted"
        if self.opened:
            return "partial"
        if self.failed:
            return "key_mismatch"
        return "truncated" if self.truncated else "unsupported"

    def top_flows(self, n=10) -> list:
        items = sorted(self.flows.items(), key=lambda kv: (-kv[1][0], kv[1][2]))
        return items[:n]

    def to_dict(self) -> dict:
        flows = []
        for (ipver, s, d, proto, sp, dp), (p, b, t0, t1, ref) in self.top_flows():
            flows.append({"ipver": ipver, "src": _txt(s), "dst": _txt(d), "proto": proto,
                          "sport": sp if sp >= 0 else None, "dport": dp if dp >= 0 else None,
                          "packets": p, "bytes": b, "first_ts": t0, "last_ts": t1,
                          "first_frame": list(ref)})
        return {
            "status": self.status,
            "detail": self.reason,
            "key": self.key_origin,
            "integrity_checked": bool(self.dec is not None and self.dec.locked is not None
                                      and self.dec.locked.check),
            "opened": self.opened,
            "verified": self.ok,
            "icv_failed": self.icv_failed,
            "malformed": self.malformed,
            "truncated": self.truncated,
            "first_failure_frame": list(self.first_fail[1]) if self.first_fail else None,
            "next_headers": {str(k): v for k, v in sorted(self.next_headers.items())},
            "inner_bytes": self.inner_bytes,
            "inner_flows": flows,
            "inner_flows_other_packets": self.flows_other,
            "icmp_echo": {"requests": self.echo[0], "answered": self.echo[1],
                          "unanswered": len(self.echo_unanswered)},
            "dns": {"queries": self.dns[0], "answered": self.dns[1],
                    "unanswered": len(self.dns_unanswered)},
        }


class InnerTracker:
    """Decrypts the ESP packets of keyed SAs and summarises what is inside."""

    def __init__(self, keys, esp_tracker):
        self.keys = keys
        self.esp_tracker = esp_tracker
        self.keyed_spis = _All() if keys.esp_all else keys.esp_spis
        self.packets = 0
        # ICMP echo / DNS pairing across the SAs of a tunnel
        self._echo: OrderedDict = OrderedDict()  # (ipver, src, dst, id, seq) -> (ts, ref, sa)
        self._dns: OrderedDict = OrderedDict()   # (ipver, client, server, cport, id) -> (...)
        self.echo_requests = 0
        self.echo_answered = 0
        self.dns_queries = 0
        self.dns_answered = 0
        self.given_up = 0
        self._inner_sas: dict = {}  # (dst, spi) -> EspDecryptor of ESP nested in a tunnel
        #: L2TP/IPsec (RFC 3193): decrypted UDP 1701 is handed to the VPN tracker through this
        #: sink event (set by pcapvpn.track.Tracker), so L2TP control errors are found with keys
        self.vpn_udp = None
        #: the PlainTracker that also gets every decrypted packet (the one inner model)
        self.plain = None

    # -- the event -------------------------------------------------------------------------

    def esp_payload(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, data, off, end):
        """``data[off:end]``: the ESP packet from its SPI on (after :meth:`EspTracker.esp`
        created / updated its SA)."""
        sa = self.esp_tracker._esp.get(spi)
        if sa is None or sa.dst != dst:
            sa = self._sa(src, dst, spi)
            if sa is None:
                return
        st = sa.decrypt
        if st is None:
            st = sa.decrypt = self._new_state(sa)
        self.packets += 1
        dec = st.dec
        if dec is None or not dec.supported:
            st.unsupported += 1
            return
        lk = dec.locked
        status, nh, pt = (lk or dec).open(data, off, end)
        if status == "ok":
            st.ok += 1
        elif status == "unverified":
            st.unverified += 1
        else:
            self._failed(st, ts, ref, status)
            return
        if st.first_ok is None:
            st.first_ok = (ts, ref)
            st.key_origin = dec.key.origin
        nhs = st.next_headers
        nhs[nh] = nhs.get(nh, 0) + 1
        st.inner_bytes += len(pt)
        self._inner(sa, st, ts, ref, src, dst, nh, pt)

    @staticmethod
    def _failed(st, ts, ref, status):
        if status == TRUNCATED:
            st.truncated += 1
            return
        if status == ICV_FAILED:
            st.icv_failed += 1
        elif status == MALFORMED:
            st.malformed += 1
        else:
            st.unsupported += 1
            return
        if st.first_fail is None:
            st.first_fail = (ts, ref, status)
        st.last_fail = (ts, ref, status)

    def _sa(self, src, dst, spi):
        et = self.esp_tracker
        sa = et._esp.get(spi)
        if sa is not None and sa.dst == dst:
            return sa
        from pcapvpn.track.esp import is_multicast

        return et._esp2.get((dst, spi, src) if is_multicast(dst) else (dst, spi))

    def _new_state(self, sa) -> EspCrypto:
        keys = self.keys.esp_for(sa.spi, _txt(sa.src), _txt(sa.dst))
        if not keys:
            return EspCrypto(None, "no key for this SPI")
        dec = EspDecryptor(keys)
        if not dec.supported:
            k = keys[0]
            return EspCrypto(dec, f"algorithm not supported ({k.encr_name} / {k.auth_name})")
        return EspCrypto(dec)

    # -- inner traffic ---------------------------------------------------------------------

    def _nested(self, sa, st, ts, ref, src, dst, pt, off, end, depth):
        spi = _esp.esp_spi(pt, off)
        if spi not in self.keyed_spis:
            return
        dec = self._inner_sas.get((dst, spi))
        if dec is None:
            keys = self.keys.esp_for(spi, _txt(src), _txt(dst))
            dec = self._inner_sas[(dst, spi)] = EspDecryptor(keys) if keys else None
        if dec is None or not dec.supported:
            return
        status, nh, inner = dec.open(pt, off, end)
        if status == OK or status == UNVERIFIED:
            self._inner(sa, st, ts, ref, src, dst, nh, inner, depth + 1)

    def _inner(self, sa, st, ts, ref, osrc, odst, nh, pt, depth=0):
        n = len(pt)
        try:
            if nh == _IPIP:
                t = _decode_ipv4(pt, 0, n)
                ipver, src, dst, proto, sport, dport, l4off, end = t[:8]
                if t[8] or t[9]:  # an inner fragment: no transport header to read
                    l4off = -1
            elif nh == _IPV6:
                t = _ip.decode_ip(pt, 0, 6)
                ipver, src, dst, proto, sport, dport, l4off, end = t[:8]
                if t[8] or t[9]:  # an inner fragment: no transport header to read
                    l4off = -1
            elif nh in (_ICMP, _TCP, _UDP, _ICMPV6):
                # transport mode (e.g. L2TP/IPsec, RFC 3193): the outer addresses are the inner
                ipver, src, dst, proto, l4off, end = sa.ipver, osrc, odst, nh, 0, n
                sport = dport = -1
                if nh in (_TCP, _UDP) and n >= _PORTS_LEN:
                    sport, dport = _ip.ports(pt, 0)
                t = (ipver, src, dst, proto, sport, dport, 0, n, 0, False, 0, -1)
            else:
                return
        except DissectError:
            return
        st.inner_ipver = ipver
        if self.plain is not None and depth == 0:
            self.plain.decrypted(sa.src, sa.dst, ts, ref, t, pt)
        key = (ipver, src, dst, proto, sport, dport)
        fl = st.flows.get(key)
        if fl is None:
            if len(st.flows) >= MAX_FLOWS:
                st.flows_other += 1
            else:
                st.flows[key] = [1, n, ts, ts, ref]
        else:
            fl[0] += 1
            fl[1] += n
            fl[3] = ts
        if l4off < 0:
            return
        if proto == _ESP and depth < MAX_NESTED and end - l4off >= _ESP_HEADER:
            # ESP inside the tunnel (nested SAs): opened too when its SPI has a key
            self._nested(sa, st, ts, ref, src, dst, pt, l4off, end, depth)
            return
        if proto == _ICMP or proto == _ICMPV6:
            self._icmp(sa, ts, ref, ipver, src, dst, proto, pt, l4off, end)
        elif proto == _UDP and (sport == _DNS_PORT or dport == _DNS_PORT):
            self._dns_msg(sa, ts, ref, ipver, src, dst, sport, dport, pt, l4off + _UDP_HEADER,
                          end)
        elif proto == _UDP and (sport == _L2TP_PORT or dport == _L2TP_PORT) and \
                self.vpn_udp is not None and end - l4off > _UDP_HEADER:
            self.vpn_udp(ref, ts, ipver, src, dst, sport, dport, "l2tp", pt, l4off + _UDP_HEADER,
                         end)

    @staticmethod
    def _count(sa, kind, i):
        st = sa.decrypt
        if st is not None:
            getattr(st, kind)[i] += 1

    def _icmp(self, sa, ts, ref, ipver, src, dst, proto, pt, off, end):
        # ICMP echo (RFC 792) / ICMPv6 echo (RFC 4443 §4): type, code, checksum, id, seq
        if end - off < _ICMP_HEADER:
            return
        itype, ident, seq = _ip.icmp_echo(pt, off)
        req, rep = _ECHO4 if proto == _ICMP else _ECHO6
        if itype == req:
            self.echo_requests += 1
            self._count(sa, "echo", 0)
            self._pend(self._echo, (ipver, src, dst, ident, seq), (ts, ref, sa), "echo")
        elif itype == rep:
            hit = self._echo.pop((ipver, dst, src, ident, seq), None)
            if hit is not None:
                self.echo_answered += 1
                self._count(hit[2], "echo", 1)

    def _dns_msg(self, sa, ts, ref, ipver, src, dst, sport, dport, pt, off, end):
        # DNS header (RFC 1035 §4.1.1): ID, then QR in the top bit of the flags
        if end - off < _DNS_HEADER:
            return
        ident, qr = _dns.message_id(pt, off)
        if not qr and dport == _DNS_PORT:
            self.dns_queries += 1
            self._count(sa, "dns", 0)
            self._pend(self._dns, (ipver, src, dst, sport, ident), (ts, ref, sa), "dns")
        elif qr and sport == _DNS_PORT:
            hit = self._dns.pop((ipver, dst, src, dport, ident), None)
            if hit is not None:
                self.dns_answered += 1
                self._count(hit[2], "dns", 1)

    def _pend(self, table, key, val, kind):
        if key in table:
            return  # a repeated request: the first one is what waits
        table[key] = val
        while len(table) > MAX_PENDING:
            k, v = table.popitem(last=False)
            self.given_up += 1
            self._unanswered(kind, k, v)

    @staticmethod
    def _unanswered(kind, key, val):
        st = val[2].decrypt
        if st is None:
            return
        lst = getattr(st, kind + "_unanswered")
        if len(lst) < MAX_EVIDENCE:
            lst.append((key, val[0], val[1]))

    def finish(self, now: float) -> None:
        """Requests still waiting at ``now``: unanswered when older than ``ANSWER_TIMEOUT``."""
        for kind, table in (("echo", self._echo), ("dns", self._dns)):
            for key, val in list(table.items()):
                if now - val[0] >= ANSWER_TIMEOUT:
                    self._unanswered(kind, key, val)
                    del table[key]

    def summary(self) -> dict:
        return {"packets": self.packets, "echo_requests": self.echo_requests,
                "echo_answered": self.echo_answered, "dns_queries": self.dns_queries,
                "dns_answered": self.dns_answered}


def tunnel_inner_summary(esp_sas) -> dict | None:
    """The inner traffic of a tunnel's decrypted ESP SAs: top flows over all of them, ICMP echo
    and DNS answered or not; None when none of them was decrypted."""
    dec = [e for e in esp_sas if e.decrypt is not None]
    if not dec:
        return None
    flows = {}
    for e in dec:
        for k, v in e.decrypt.flows.items():
            f = flows.get(k)
            if f is None:
                flows[k] = list(v)
            else:
                f[0] += v[0]
                f[1] += v[1]
                f[2] = min(f[2], v[2])
                f[3] = max(f[3], v[3])
    top = sorted(flows.items(), key=lambda kv: (-kv[1][0], kv[1][2]))[:10]
    return {
        "esp_sas_decrypted": sum(1 for e in dec if e.decrypt.opened),
        "esp_sas_keyed": len(dec),
        "packets_decrypted": sum(e.decrypt.opened for e in dec),
        "packets_failed": sum(e.decrypt.failed for e in dec),
        "top_flows": [{"ipver": k[0], "src": _txt(k[1]), "dst": _txt(k[2]), "proto": k[3],
                       "sport": k[4] if k[4] >= 0 else None,
                       "dport": k[5] if k[5] >= 0 else None, "packets": v[0], "bytes": v[1]}
                      for k, v in top],
        "icmp_echo": {"requests": sum(e.decrypt.echo[0] for e in dec),
                      "answered": sum(e.decrypt.echo[1] for e in dec),
                      "unanswered": sum(len(e.decrypt.echo_unanswered) for e in dec)},
        "dns": {"queries": sum(e.decrypt.dns[0] for e in dec),
                "answered": sum(e.decrypt.dns[1] for e in dec),
                "unanswered": sum(len(e.decrypt.dns_unanswered) for e in dec)},
    }
