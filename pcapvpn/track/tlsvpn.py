"""TLS/DTLS handshakes as the VPN trackers see them (SSL-VPN, OpenVPN's control channel).

A :class:`TlsSide` follows one direction of a TLS conversation: the records (from the decoder's
TCP reassembly, or the byte stream of OpenVPN P_CONTROL payloads), the handshake messages while
they are in the clear (TLS <= 1.2 until ChangeCipherSpec; TLS 1.3 until the ServerHello), plaintext
alerts, and the certificates (DER bytes, parsed with :mod:`cryptography` for their validity and
names).  A :class:`TlsConversation` pairs the client and server sides and says which handshake
stage was reached.  Bytes are parsed by :mod:`dissect.vpn.tls` only.
"""

from __future__ import annotations

import datetime as _dt

from dissect.vpn import tls as _tls
from dissect.vpn.errors import DissectError

#: bytes buffered per direction waiting for a complete record / handshake message (the
#: default of ``Limits.tcp_max_buffer``; :class:`StreamBounds` takes the analysis' limits)
MAX_BUFFER = 256 * 1024
#: certificates kept per side (the end-entity one first)
MAX_CERTS = 4
#: alerts / handshake events kept per side
MAX_EVENTS = 32

# Handshake stages, in order (``TlsConversation.stage``)
STAGES = ("none", "client_hello", "server_hello", "server_flight", "client_flight", "complete")


class Alert:
    __slots__ = ("level", "description", "ts", "ref", "encrypted")

    def __init__(self, level, description, ts, ref, encrypted=False):
        self.level = level
        self.description = description
        self.ts = ts
        self.ref = ref
        self.encrypted = encrypted

    @property
    def name(self) -> str:
        return "encrypted" if self.encrypted else _tls.alert_name(self.description)

    @property
    def fatal(self) -> bool:
        return self.level == _tls.AlertLevel.FATAL

    def to_dict(self):
        return {"level": "fatal" if self.fatal else
                ("warning" if self.level == _tls.AlertLevel.WARNING else None),
                "description": None if self.encrypted else self.description,
                "name": self.name, "ts": self.ts, "frame": list(self.ref)}


class CertInfo:
    """What a capture shows about a certificate (parsed with ``cryptography`` when installed)."""

    __slots__ = ("subject", "issuer", "not_before", "not_after", "names", "error", "sha1")

    def __init__(self):
        self.subject = self.issuer = None
        self.not_before = self.not_after = None  # epoch seconds
        self.names = []
        self.error = None
        self.sha1 = None

    def valid_at(self, ts) -> str | None:
        """None when valid at ``ts`` (or unknown), else "expired" / "not yet valid"."""
        if self.not_after is not None and ts > self.not_after:
            return "expired"
        if self.not_before is not None and ts < self.not_before:
            return "not yet valid"
        return None

    def matches(self, name: str) -> bool:
        """RFC 6125 §6.4 host name matching (DNS names of the SAN, else the CN; one leftmost
        wildcard label)."""
        name = name.lower().rstrip(".")
        for pat in self.names:
            pat = pat.lower().rstrip(".")
            if pat == name:
                return True
            if pat.startswith("*.") and "." in name:
                if name.split(".", 1)[1] == pat[2:]:
                    return True
        return False

    def to_dict(self):
        return {"subject": self.subject, "issuer": self.issuer, "not_before_ts": self.not_before,
                "not_after_ts": self.not_after, "names": list(self.names), "sha1": self.sha1,
                "error": self.error}


_CERT_CACHE: dict = {}
_CERT_CACHE_MAX = 512


def cert_info(der: bytes) -> CertInfo:
    """Parse a certificate (cached by its SHA-1: a server sends the same one on every
    connection).  A CertInfo is read-only once made."""
    import hashlib

    sha1 = hashlib.sha1(der).hexdigest()
    hit = _CERT_CACHE.get(sha1)
    if hit is not None:
        return hit
    info = _parse_cert(der)
    info.sha1 = sha1
    if len(_CERT_CACHE) >= _CERT_CACHE_MAX:
        _CERT_CACHE.clear()
    _CERT_CACHE[sha1] = info
    return info


def _parse_cert(der: bytes) -> CertInfo:
    info = CertInfo()
    try:
        from cryptography import x509
        from cryptography.x509.oid import ExtensionOID, NameOID
    except ImportError:  # pragma: no cover - cryptography is a dependency
        info.error = "cryptography is not installed: certificate not parsed"
        return info
    try:
        c = x509.load_der_x509_certificate(der)
        info.subject = c.subject.rfc4514_string()
        info.issuer = c.issuer.rfc4514_string()
        nb = getattr(c, "not_valid_before_utc", None) or c.not_valid_before.replace(
            tzinfo=_dt.timezone.utc)
        na = getattr(c, "not_valid_after_utc", None) or c.not_valid_after.replace(
            tzinfo=_dt.timezone.utc)
        info.not_before = nb.timestamp()
        info.not_after = na.timestamp()
        names = []
        try:
            san = c.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
            names = list(san.value.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            pass
        if not names:
            names = [a.value for a in c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                     if isinstance(a.value, str)]
        info.names = names
    except Exception as e:  # noqa: BLE001 - a malformed certificate is a fact, not a crash
        info.error = f"certificate not parsed: {type(e).__name__}: {e}"[:200]
    return info


class StreamBounds:
    """The bounds (issue 20) of the message streams the VPN tracker puts in order itself: the
    OpenVPN control channel (control packets held out of order until the missing packet ID
    comes, :mod:`pcapvpn.track.openvpn`) and the TLS records and handshake messages of a
    :class:`TlsSide`.  They are the decoder's TCP bounds (``Limits.tcp_max_ooo``,
    ``tcp_max_ooo_bytes``, ``tcp_max_buffer``; the TCP streams themselves are reassembled once,
    by :class:`pcapvpn.tcp_reassembly.TcpReassembler`), and what they drop is counted by bound
    name (``Tracker.limits_hit``).  One per :class:`pcapvpn.track.vpn.VpnTracker`."""

    __slots__ = ("max_ooo", "max_ooo_bytes", "max_buffer", "dropped", "first_drop",
                 "copy_window")

    def __init__(self, limits=None, copy_window: float = 0.005):
        #: a packet the same as the one just before from the same sender, within this many
        #: seconds, is a capture copy (a mirror's), not a retransmission
        #: (``Thresholds.duplicate_window``)
        self.copy_window = copy_window
        self.max_ooo = limits.tcp_max_ooo if limits is not None else 64
        self.max_ooo_bytes = limits.tcp_max_ooo_bytes if limits is not None else 256 * 1024
        self.max_buffer = limits.tcp_max_buffer if limits is not None else MAX_BUFFER
        #: bound name -> items dropped; bound name -> (ref, ts) of the first
        self.dropped: dict = {}
        self.first_drop: dict = {}

    def drop(self, bound: str, ref, ts) -> None:
        self.dropped[bound] = self.dropped.get(bound, 0) + 1
        if bound not in self.first_drop:
            self.first_drop[bound] = (ref, ts)


class TlsSide:
    """One direction of a TLS (or DTLS) conversation."""

    __slots__ = ("dtls", "buf", "hs", "records", "handshakes", "alerts", "ccs_ts",
                 "appdata", "first_appdata_ts", "first_appdata_ref", "client_hello", "server_hello",
                 "certs", "cert_ts", "cert_ref", "errors", "encrypted_hs", "last_ts", "last_ref",
                 "broken", "hs_types", "order", "last_order", "first_appdata_order", "bounds")

    def __init__(self, dtls=False, order=None, bounds=None):
        self.dtls = dtls
        #: StreamBounds (shared with the tracker): the buffers' size, drops counted
        self.bounds = bounds if bounds is not None else StreamBounds()
        #: records of both sides counted in arrival order (shared with the other side), so
        #: that "after" does not depend on timestamps that may be equal
        self.order = order if order is not None else [0]
        self.last_order = 0
        self.first_appdata_order = None
        # what a side holds is made on first use and empty values are shared (issue 20: a
        # flood keeps thousands of conversations, most with a record or two; empty, a
        # bytearray costs 56 bytes, a list 56, a set 216)
        #: TLS byte stream not yet split into records, and handshake bytes not yet split into
        #: messages: a bytearray while bytes wait, else the shared ``b""``
        self.buf = b""
        self.hs = b""
        self.records = 0
        self.handshakes = ()        # (type, ts, ref), at most MAX_EVENTS: a tuple
        #: the handshake types seen, one bit each (``has``)
        self.hs_types = 0
        self.alerts = ()            # Alert, at most MAX_EVENTS: a tuple
        self.ccs_ts = None
        self.appdata = 0
        self.first_appdata_ts = None
        self.first_appdata_ref = None
        self.client_hello = None
        self.server_hello = None
        self.certs = ()             # CertInfo, end-entity first (a list once there are any)
        self.cert_ts = None
        self.cert_ref = None
        self.errors = 0
        self.encrypted_hs = 0
        self.last_ts = None
        self.last_ref = None
        self.broken = False         # framing lost: stop parsing

    # -- input ---------------------------------------------------------------------------------

    def feed(self, chunk, ts, ref):
        """Bytes of the TLS stream in order (OpenVPN control channel payloads)."""
        if self.broken:
            return
        if self.buf:
            self.buf += chunk
        else:
            self.buf = bytearray(chunk)
        try:
            recs, used = _tls.split_records(self.buf, 0)
        except DissectError:
            self.errors += 1
            self.broken = True
            self.buf = b""
            return
        for ctype, ver, a, b in recs:
            self.record(ctype, ver, self.buf, a, b, ts, ref)
        if used:
            if used >= len(self.buf):
                self.buf = b""
            else:
                del self.buf[:used]
        if len(self.buf) > self.bounds.max_buffer:
            self.bounds.drop("tcp_max_buffer", ref, ts)
            self.broken = True
            self.buf = b""

    def record(self, ctype, ver, data, a, b, ts, ref, epoch=0):
        """One record (body ``data[a:b]``)."""
        self.records += 1
        self.last_ts = ts
        self.last_ref = ref
        self.order[0] += 1
        self.last_order = self.order[0]
        if ctype == _tls.HANDSHAKE:
            if self.ccs_ts is not None or epoch:
                self.encrypted_hs += 1  # Finished (TLS <= 1.2) after ChangeCipherSpec
                return
            if self.dtls:
                try:
                    msgs, _u = _tls.split_handshakes(data, a, b, dtls=True)
                except DissectError:
                    self.errors += 1
                    return
                for t, ma, mb in msgs:
                    self._handshake(t, data, ma, mb, ts, ref)
                return
            if self.hs:
                self.hs += data[a:b]
            else:
                self.hs = bytearray(data[a:b])
            try:
                msgs, used = _tls.split_handshakes(self.hs, 0)
            except DissectError:
                self.errors += 1
                self.hs = b""
                return
            for t, ma, mb in msgs:
                self._handshake(t, self.hs, ma, mb, ts, ref)
            if used:
                if used >= len(self.hs):
                    self.hs = b""
                else:
                    del self.hs[:used]
            if len(self.hs) > self.bounds.max_buffer:
                self.bounds.drop("tcp_max_buffer", ref, ts)
                self.hs = b""
        elif ctype == _tls.ALERT:
            if len(self.alerts) < MAX_EVENTS:
                if b - a == _tls.ALERT_LENGTH and self.ccs_ts is None and not epoch:
                    lvl, desc = _tls.parse_alert(data, a, b)
                    self.alerts += (Alert(lvl, desc, ts, ref),)
                else:
                    self.alerts += (Alert(None, None, ts, ref, encrypted=True),)
        elif ctype == _tls.CHANGE_CIPHER_SPEC:
            if self.ccs_ts is None:
                self.ccs_ts = ts
        elif ctype == _tls.APPLICATION_DATA or ctype == _tls.TLS12_CID:
            self.appdata += 1
            if self.first_appdata_ts is None:
                self.first_appdata_ts = ts
                self.first_appdata_ref = ref
                self.first_appdata_order = self.last_order

    def _handshake(self, t, data, a, b, ts, ref):
        self.hs_types |= 1 << t
        if len(self.handshakes) < MAX_EVENTS:
            self.handshakes += ((t, ts, ref),)
        if a < 0:
            return  # DTLS fragment
        try:
            if t == _tls.CLIENT_HELLO and self.client_hello is None:
                self.client_hello = _tls.parse_client_hello(data, a, b, dtls=self.dtls)
            elif t == _tls.SERVER_HELLO and self.server_hello is None:
                self.server_hello = _tls.parse_server_hello(data, a, b, dtls=self.dtls)
            elif t == _tls.CERTIFICATE and not self.certs:
                tls13 = self.server_hello is not None and self.server_hello.version == 0x0304
                self.certs = [cert_info(bytes(data[da:db]))
                              for da, db in _tls.parse_certificate(data, a, b, tls13=tls13)[:MAX_CERTS]]
                self.cert_ts = ts
                self.cert_ref = ref
        except DissectError:
            self.errors += 1

    # -- views ---------------------------------------------------------------------------------

    def has(self, t) -> bool:
        return bool(self.hs_types >> t & 1)

    def to_dict(self) -> dict:
        ch = self.client_hello
        sh = self.server_hello
        return {
            "records": self.records,
            "handshake": [_tls.handshake_name(t) for t, _ts, _r in self.handshakes],
            "change_cipher_spec": self.ccs_ts is not None,
            "application_data_records": self.appdata,
            "alerts": [a.to_dict() for a in self.alerts],
            "sni": ch.sni if ch else None,
            "offered_versions": [_tls.version_name(v) for v in ch.versions] if ch else None,
            "version": _tls.version_name(sh.version) if sh else None,
            "cipher_suite": f"0x{sh.cipher_suite:04x}" if sh else None,
            "certificates": [c.to_dict() for c in self.certs],
            "parse_errors": self.errors,
        }


class _NoSide(TlsSide):
    """A side that sent nothing: the one empty :class:`TlsSide` a conversation starts with on
    the side not fed yet (issue 20: a flood keeps thousands of OpenVPN sessions whose control
    channel carried TLS one way only; a side costs 240 bytes), replaced by one of its own at
    its first bytes (:meth:`TlsConversation.side`).  It reads as a fresh side and cannot
    change."""

    __slots__ = ()

    def feed(self, chunk, ts, ref):
        raise TypeError("the shared empty TLS side cannot change")

    record = feed

    def __reduce__(self):  # pickled and copied as the one shared object
        return "NO_SIDE"


#: see :class:`_NoSide`
NO_SIDE = _NoSide()


class TlsConversation:
    """Client and server sides of one TLS (TCP) or DTLS (UDP) conversation (a side that sent
    nothing yet is the shared :data:`NO_SIDE`; :meth:`side` gives the one to feed)."""

    __slots__ = ("client", "server", "dtls", "bounds")

    def __init__(self, dtls=False, bounds=None):
        self.dtls = dtls
        self.bounds = bounds
        self.client = self.server = NO_SIDE

    def side(self, from_client: bool) -> TlsSide:
        """The side to feed (made at its first use; the two share the records' order)."""
        s = self.client if from_client else self.server
        if s is NO_SIDE:
            other = self.server if from_client else self.client
            s = TlsSide(self.dtls, other.order if other is not NO_SIDE else None, self.bounds)
            if from_client:
                self.client = s
            else:
                self.server = s
        return s

    @property
    def version(self):
        sh = self.server.server_hello
        return sh.version if sh else None

    @property
    def tls13(self) -> bool:
        return self.version == 0x0304

    @property
    def stage(self) -> str:
        """How far the handshake visibly got (see :data:`STAGES`)."""
        c, s = self.client, self.server
        if s.server_hello is None:
            if c.client_hello is not None or c.has(_tls.CLIENT_HELLO):
                return "client_hello"
            if c.appdata and s.appdata:
                return "complete"  # joined mid-session
            return "none"
        if self.tls13 or (self.dtls and self.version == 0xFEFC):
            # TLS 1.3: the server's encrypted flight (EncryptedExtensions .. Finished) is
            # application_data after the ServerHello; the client's Finished likewise.
            if not s.appdata:
                return "server_hello"
            if not c.appdata:
                return "server_flight"
            # the client's first protected record starts its last flight (Certificate ..
            # Finished); the server sending protected records after it (tickets, data) shows
            # it accepted the flight: records of its own first flight do not
            if s.appdata > 1 and c.appdata > 1 and \
                    s.last_order > (c.first_appdata_order or 0):
                return "complete"
            return "client_flight"
        # TLS <= 1.2 (and DTLS 1.0/1.2)
        server_done = s.has(_tls.SERVER_HELLO_DONE) or s.ccs_ts is not None
        if not server_done:
            return "server_hello"
        if c.ccs_ts is None:
            return "server_flight"
        # full handshake: the server's ChangeCipherSpec + Finished answer the client's; in an
        # abbreviated one (resumption) the server's come first and the client's complete it
        if s.ccs_ts is None and not s.appdata:
            return "client_flight"
        return "complete"

    @property
    def complete(self) -> bool:
        return self.stage == "complete"

    def alerts(self):
        for a in self.client.alerts:
            yield True, a
        for a in self.server.alerts:
            yield False, a

    def to_dict(self) -> dict:
        return {"stage": self.stage, "version": _tls.version_name(self.version)
                if self.version else None,
                "client": self.client.to_dict(), "server": self.server.to_dict()}
