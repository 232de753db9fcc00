"""Decryption keys engineers already have: Wireshark's key tables (and tcpdump's ``-E`` syntax).

``--keys PATH`` (repeatable) names a file or a directory; every file is recognised by its
content, line by line, so one directory may hold all the tables (as strongSwan's save-keys plugin
writes them: ``ikev1_decryption_table``, ``ikev2_decryption_table``, ``esp_sa``):

* ``ikev1_decryption_table`` (Wireshark UAT, 2 fields)::

      <initiator cookie, 16 hex>,<phase-1 encryption key, hex>

* ``ikev2_decryption_table`` (Wireshark UAT, 8 fields)::

      <SPIi>,<SPIr>,<SK_ei>,<SK_er>,"<encryption>",<SK_ai>,<SK_ar>,"<integrity>"

* ``esp_sa`` (Wireshark UAT, 8 fields; 10 with the sequence-number fields of newer Wireshark)::

      "IPv4","<src>","<dst>","<SPI>","<encryption>","<key>","<authentication>","<key>"

* tcpdump ``-E`` lines (``[0xSPI@dst] algo[-hmac96]:secret`` and ``ikev2 I|R 0xSPIi 0xSPIr
  integ:key encr:key``): the tcpdump test suite ships its keys that way.

Algorithm names are matched loosely (case, punctuation and the ``[RFC...]`` tag ignored): the
names Wireshark 4.0 offers, the names strongSwan's save-keys plugin writes (``TripleDes-CBC``,
``AES-GCM [RFC4106]`` + ``ANY 128 bit authentication``), and for the algorithms Wireshark 4.0
lacks: ``CHACHA20-POLY1305 [RFC7634]`` (IKEv2 and ESP) and ``AES-CCM with 8|12|16 octet ICV
[RFC4309]`` (ESP).  An unsupported algorithm is not an error: the SA is listed as not decrypted.

A malformed line raises :class:`KeyFileError` with the file and line number.  No message, report
or ``repr`` ever contains key material: a value read from a key file is shown only once it has
been recognised as a non-secret field — an algorithm name found in the tables below, written with
nothing but the name's own characters and an ``[RFC nnnn]`` tag (otherwise the table's name for
it) — and anything else is named by where it is: "field 5 of esp_sa:3" (an unsupported
algorithm among them: the SA is then listed as not decrypted with that label).

Files are read whole, line by line (no size limit; a line longer than 64 KiB is refused), as
UTF-8 with or without a byte-order mark (Windows editors write one), with LF, CRLF or CR line ends.
"""

from __future__ import annotations

import ipaddress
import os
import re

from pcapvpn.decrypt.keys import EspKey, IkeV1Key, IkeV2Key, KeyStore

__all__ = ["KeyFileError", "load_keys", "load_file", "normalise_name", "IKEV2_ENCR",
           "IKEV2_INTEG", "ESP_ENCR", "ESP_AUTH"]


class KeyFileError(ValueError):
    """A key file that cannot be used: ``path``, ``line`` (1-based, 0 for the whole file) and
    ``reason`` (never containing key material)."""

    def __init__(self, path: str, line: int, reason: str):
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {reason}")


def normalise_name(name: str) -> str:
    """``"AES-CBC-128 [RFC3602]"`` → ``"aescbc128"``: lowercase, the bracketed tag and every
    non-alphanumeric character removed."""
    name = re.sub(r"\[[^\]]*\]", "", name.lower())
    return re.sub(r"[^a-z0-9]", "", name)


# -- algorithm tables: normalised name -> (canonical cipher, key bytes or None, ICV bytes) ---------
# Canonical ciphers (implemented in pcapvpn.decrypt): null, des-cbc, 3des-cbc, aes-cbc, aes-ctr,
# aes-gcm, aes-ccm, chacha20-poly1305.  Key bytes include the salt/nonce of CTR (4, RFC 5930 /
# RFC 3686), GCM (4, RFC 5282 / RFC 4106), CCM (3, RFC 5282 / RFC 4309) and ChaCha20-Poly1305
# (4, RFC 7634); None = any length the cipher accepts.

IKEV2_ENCR: dict = {"null": ("null", 0, 0), "3des": ("3des-cbc", 24, 0),
                    "des": ("des-cbc", 8, 0),
                    "chacha20poly1305": ("chacha20-poly1305", 36, 16),
                    "chacha20withpoly1305": ("chacha20-poly1305", 36, 16)}
for _bits in (128, 192, 256):
    _k = _bits // 8
    IKEV2_ENCR[f"aescbc{_bits}"] = ("aes-cbc", _k, 0)
    IKEV2_ENCR[f"aesctr{_bits}"] = ("aes-ctr", _k + 4, 0)
    for _icv in (8, 12, 16):
        IKEV2_ENCR[f"aesgcm{_bits}with{_icv}octeticv"] = ("aes-gcm", _k + 4, _icv)
        IKEV2_ENCR[f"aesccm{_bits}with{_icv}octeticv"] = ("aes-ccm", _k + 3, _icv)

# integrity: normalised name -> (canonical, ICV bytes); "any" = length known, not checked
IKEV2_INTEG: dict = {
    "none": ("none", 0),
    "hmacmd596": ("hmac-md5", 12), "hmacsha196": ("hmac-sha1", 12),
    "hmacmd5128": ("hmac-md5", 16), "hmacsha1160": ("hmac-sha1", 20),
    "hmacsha225696": ("hmac-sha256", 12), "hmacsha2256128": ("hmac-sha256", 16),
    "hmacsha2384192": ("hmac-sha384", 24), "hmacsha2512256": ("hmac-sha512", 32),
}
for _bits in (64, 96, 128, 160, 192, 256):
    IKEV2_INTEG[f"any{_bits}bitsofauthentication"] = ("any", _bits // 8)

ESP_ENCR: dict = {
    "null": ("null", 0, 0), "tripledescbc": ("3des-cbc", 24, 0), "descbc": ("des-cbc", 8, 0),
    "aescbc": ("aes-cbc", None, 0), "aesctr": ("aes-ctr", None, 0),
    # strongSwan's save-keys name: the ICV length comes from the "ANY n bit" authentication
    "aesgcm": ("aes-gcm", None, None),
    "chacha20poly1305": ("chacha20-poly1305", 36, 16),
    "chacha20withpoly1305": ("chacha20-poly1305", 36, 16),
}
for _icv in (8, 12, 16):
    ESP_ENCR[f"aesgcmwith{_icv}octeticv"] = ("aes-gcm", None, _icv)
    ESP_ENCR[f"aesccmwith{_icv}octeticv"] = ("aes-ccm", None, _icv)

ESP_AUTH: dict = {
    "null": ("none", 0),
    "hmacsha196": ("hmac-sha1", 12), "hmacmd596": ("hmac-md5", 12),
    "hmacsha25696": ("hmac-sha256", 12), "hmacsha256128": ("hmac-sha256", 16),
    "hmacsha384192": ("hmac-sha384", 24), "hmacsha512256": ("hmac-sha512", 32),
}
for _bits in (64, 96, 128, 192, 256):
    ESP_AUTH[f"any{_bits}bitauthentication"] = ("any", _bits // 8)
    ESP_AUTH[f"any{_bits}bitauthenticationnochecking"] = ("any", _bits // 8)

#: tcpdump -E ESP algorithms (print-esp.c names; ``-hmac96`` adds an unchecked 12-byte ICV)
_TCPDUMP_ESP = {"none": ("null", 0), "des-cbc": ("des-cbc", 8), "3des-cbc": ("3des-cbc", 24),
                "aes128-cbc": ("aes-cbc", 16), "aes192-cbc": ("aes-cbc", 24),
                "aes256-cbc": ("aes-cbc", 32)}
#: tcpdump -E ikev2 algorithms
_TCPDUMP_V2_INTEG = {"md5": ("hmac-md5", 12), "sha1": ("hmac-sha1", 12),
                     "sha256": ("hmac-sha256", 16), "sha384": ("hmac-sha384", 24),
                     "sha512": ("hmac-sha512", 32), "none": ("none", 0)}
_TCPDUMP_V2_ENCR = {"aes128": ("aes-cbc", 16), "aes192": ("aes-cbc", 24),
                    "aes256": ("aes-cbc", 32), "3des": ("3des-cbc", 24), "null": ("null", 0)}

#: key sizes (bytes) each cipher accepts, salt included (for the ESP names without a size)
_KEY_SIZES = {"aes-cbc": (16, 24, 32), "aes-ctr": (20, 28, 36), "aes-gcm": (20, 28, 36),
              "aes-ccm": (19, 27, 35), "chacha20-poly1305": (36,), "3des-cbc": (24,),
              "des-cbc": (8,), "null": (0,)}


#: a bracketed tag allowed in a shown algorithm name (Wireshark's and save-keys' names carry them)
_NAME_TAG = re.compile(r"\[(?:RFC ?\d{1,5}|no checking)\]", re.I)
#: the characters of an algorithm name as Wireshark and strongSwan write them
_NAME_TEXT = re.compile(r"[A-Za-z0-9 ._/()+-]{1,64}")


def _algorithm(value: str, table: dict, ln: "_Line", n: int):
    """(table entry or None, the name to show): a recognised name as written when it holds only
    the name itself (and an RFC tag), else the table's name for it; an unrecognised value is
    never shown (it may be a key in the wrong column): "field ``n`` of file:line"."""
    key = normalise_name(value)
    entry = table.get(key)
    if entry is None:
        return None, ln.field(n)
    bare = _NAME_TAG.sub("", value).strip()
    return entry, value.strip() if _NAME_TEXT.fullmatch(bare) else key


_HEX = re.compile(r"[0-9a-fA-F]*")


def _split_uat(line: str):
    """Split a Wireshark UAT line: comma-separated fields, each bare or a double-quoted string
    with ``\\xNN`` / ``\\\\`` / ``\\"`` escapes.  Returns the fields, or None when the line does
    not follow that syntax."""
    out = []
    i = 0
    n = len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i < n and line[i] == '"':
            i += 1
            buf = []
            while i < n and line[i] != '"':
                c = line[i]
                if c == "\\" and i + 1 < n:
                    nxt = line[i + 1]
                    if nxt == "x" and i + 3 < n + 1:
                        try:
                            buf.append(chr(int(line[i + 2:i + 4], 16)))
                            i += 4
                            continue
                        except ValueError:
                            return None
                    buf.append(nxt)
                    i += 2
                    continue
                buf.append(c)
                i += 1
            if i >= n:
                return None  # unterminated string
            i += 1
            out.append("".join(buf))
            while i < n and line[i] in " \t":
                i += 1
        else:
            j = line.find(",", i)
            j = n if j < 0 else j
            out.append(line[i:j].strip())
            i = j
        if i >= n:
            return out
        if line[i] != ",":
            return None
        i += 1


class _Line:
    def __init__(self, path, number):
        self.path = path
        self.number = number

    def fail(self, reason):
        raise KeyFileError(self.path, self.number, reason)

    def field(self, n: int) -> str:
        """How a value that is not shown is named."""
        return f"field {n} of {self.path}:{self.number}"

    def hexbytes(self, value: str, what: str, allow_empty=True) -> bytes:
        v = value.strip()
        if v[:2] in ("0x", "0X"):
            v = v[2:]
        if not v:
            if allow_empty:
                return b""
            self.fail(f"{what} is empty")
        if not _HEX.fullmatch(v):
            self.fail(f"{what} is not hexadecimal")
        if len(v) % 2:
            self.fail(f"{what} has an odd number of hex digits")
        return bytes.fromhex(v)


def _kind_of(line: str):
    """Which table a (non-comment) line belongs to: "ikev1", "ikev2", "esp", "tcpdump" or
    None."""
    s = line.strip()
    if s.startswith("ikev2 ") or re.match(r"^(0x[0-9a-fA-F]+@\S+\s+)?[a-z0-9-]+:\S+$", s):
        return "tcpdump"
    f = _split_uat(s)
    if f is None:
        return None
    if len(f) == 2 and re.fullmatch(r"(0x)?[0-9a-fA-F]{16}", f[0]):
        return "ikev1"
    if len(f) == 8 and re.fullmatch(r"(0x)?[0-9a-fA-F]{16}", f[0]):
        return "ikev2"
    if len(f) in (8, 10) and f[0].lower().replace(" ", "") in ("ipv4", "ipv6", "any",
                                                                "anyipv4", "anyipv6", "*"):
        return "esp"
    return None


def _parse_ikev1(f, ln: _Line) -> IkeV1Key:
    ic = ln.hexbytes(f[0], "field 1 (initiator cookie)", False)
    key = ln.hexbytes(f[1], "field 2 (encryption key)", False)
    if len(key) not in (8, 16, 24, 32):
        ln.fail(f"field 2 (encryption key) is {len(key)} bytes: DES 8, AES 16/24/32 or "
                f"3DES 24 expected")
    return IkeV1Key(ic, key, f"{ln.path}:{ln.number}")


def _parse_ikev2(f, ln: _Line) -> IkeV2Key:
    ispi = ln.hexbytes(f[0], "field 1 (initiator SPI)", False)
    rspi = ln.hexbytes(f[1], "field 2 (responder SPI)", False)
    if len(rspi) != 8:
        ln.fail("field 2 (responder SPI) is not 16 hex digits")
    sk_ei = ln.hexbytes(f[2], "field 3 (SK_ei)")
    sk_er = ln.hexbytes(f[3], "field 4 (SK_er)")
    sk_ai = ln.hexbytes(f[5], "field 6 (SK_ai)")
    sk_ar = ln.hexbytes(f[6], "field 7 (SK_ar)")
    enc, encr_name = _algorithm(f[4], IKEV2_ENCR, ln, 5)
    integ, integ_name = _algorithm(f[7], IKEV2_INTEG, ln, 8)
    origin = f"{ln.path}:{ln.number}"
    if enc is None or integ is None:
        return IkeV2Key(ispi, rspi, "unsupported" if enc is None else enc[0], encr_name, 0,
                        sk_ei, sk_er, "unsupported" if integ is None else integ[0], integ_name, 0,
                        sk_ai, sk_ar, origin)
    cipher, klen, icv = enc
    for name, k in (("field 3 (SK_ei)", sk_ei), ("field 4 (SK_er)", sk_er)):
        if len(k) != klen:
            ln.fail(f"{name} is {len(k)} bytes; {encr_name} needs {klen}")
    ialg, ilen = integ
    if icv and ialg not in ("none", "any"):
        ln.fail(f"{encr_name} is an AEAD cipher: the integrity algorithm must be NONE, not "
                f"{integ_name}")
    if not icv and cipher != "null" and ialg == "none":
        pass  # encryption without integrity: allowed (checked by padding and payload sanity)
    if ialg not in ("none", "any"):
        for name, k in (("field 6 (SK_ai)", sk_ai), ("field 7 (SK_ar)", sk_ar)):
            if not k:
                ln.fail(f"{name} is empty but {integ_name} needs a key")
    return IkeV2Key(ispi, rspi, cipher, encr_name, icv, sk_ei, sk_er, ialg, integ_name, ilen,
                    sk_ai, sk_ar, origin)


def _parse_spi(value: str, ln: _Line, what: str):
    v = value.strip().lower()
    if v in ("*", ""):
        return None
    try:
        spi = int(v, 16) if v.startswith("0x") else int(v, 16 if re.search("[a-f]", v) else 10)
    except ValueError:
        ln.fail(f"{what} is not a number")
    if not 0 < spi < 1 << 32:
        ln.fail(f"{what} is outside 1..0xffffffff")
    return spi


def _parse_addr_field(value: str):
    v = value.strip()
    return None if v in ("", "*") else v


def _parse_esp(f, ln: _Line) -> EspKey:
    proto = f[0].lower().replace(" ", "")
    ipver = 4 if proto.endswith("ipv4") else 6 if proto.endswith("ipv6") else None
    spi = _parse_spi(f[3], ln, "field 4 (SPI)")
    ekey = ln.hexbytes(f[5], "field 6 (encryption key)")
    akey = ln.hexbytes(f[7], "field 8 (authentication key)")
    origin = f"{ln.path}:{ln.number}"
    enc, encr_name = _algorithm(f[4], ESP_ENCR, ln, 5)
    auth, auth_name = _algorithm(f[6], ESP_AUTH, ln, 7)
    src, dst = _parse_addr_field(f[1]), _parse_addr_field(f[2])
    if enc is None or auth is None:
        return EspKey(spi, ipver, src, dst, "unsupported" if enc is None else enc[0], encr_name,
                      0, ekey, "unsupported" if auth is None else auth[0], auth_name, akey, origin)
    cipher, klen, icv = enc
    sizes = (klen,) if klen is not None else _KEY_SIZES[cipher]
    if len(ekey) not in sizes:
        ln.fail(f"field 6 (encryption key) is {len(ekey)} bytes; {encr_name} needs "
                + " or ".join(str(s) for s in sizes))
    aalg, alen = auth
    aead = cipher in ("aes-gcm", "aes-ccm", "chacha20-poly1305")
    if aead:
        if icv is None:
            # strongSwan writes "AES-GCM [RFC4106]" with "ANY n bit authentication": n is the
            # ICV (it writes 64 for the 12-octet ICV too: then every ICV length is tried)
            icv = alen if alen in (12, 16) else None
        if aalg not in ("none", "any"):
            ln.fail(f"{encr_name} is an AEAD cipher: the authentication must be NULL, not "
                    f"{auth_name}")
        aalg, alen = "none", 0
    else:
        icv = alen
        if aalg not in ("none", "any") and not akey:
            ln.fail(f"field 8 (authentication key) is empty but {auth_name} needs a key")
    return EspKey(spi, ipver, src, dst, cipher, encr_name, icv, ekey, aalg, auth_name, akey,
                  origin)


def _tcpdump_secret(value: str, ln: _Line, what: str) -> bytes:
    if value[:2].lower() == "0x":
        return ln.hexbytes(value, what, False)
    return value.encode()


def _parse_tcpdump(line: str, ln: _Line, pending: dict):
    s = line.strip()
    parts = s.split()
    if parts[0] == "ikev2":
        if len(parts) != 6 or parts[1] not in ("I", "R"):
            ln.fail("tcpdump ikev2 line: expected 'ikev2 I|R 0xSPIi 0xSPIr integ:key encr:key'")
        ispi = ln.hexbytes(parts[2], "initiator SPI", False)
        rspi = ln.hexbytes(parts[3], "responder SPI", False)
        if len(ispi) != 8 or len(rspi) != 8:
            ln.fail("tcpdump ikev2 line: SPIs must be 8 bytes")
        ia, _, ik = parts[4].partition(":")
        ea, _, ek = parts[5].partition(":")
        ia, ea = ia.lower(), ea.lower()
        integ = _TCPDUMP_V2_INTEG.get(ia)
        enc = _TCPDUMP_V2_ENCR.get(ea)
        # the token before ':' is shown only when it is a known name: a key pasted without
        # its 'algorithm:' prefix must not be echoed
        if integ is None:
            ln.fail("tcpdump ikev2 line: field 5 is not integrity:key with a known integrity "
                    f"algorithm ({', '.join(_TCPDUMP_V2_INTEG)})")
        if enc is None:
            ln.fail("tcpdump ikev2 line: field 6 is not encryption:key with a known encryption "
                    f"algorithm ({', '.join(_TCPDUMP_V2_ENCR)})")
        akey = _tcpdump_secret(ik, ln, "integrity key")
        ekey = _tcpdump_secret(ek, ln, "encryption key")
        if len(ekey) != enc[1]:
            ln.fail(f"tcpdump ikev2 line: encryption key is {len(ekey)} bytes; {ea} needs "
                    f"{enc[1]}")
        key = (ispi, rspi)
        half = pending.setdefault(key, {})
        half[parts[1]] = (integ, ia, akey, enc, ea, ekey, ln.number)
        if "I" in half and "R" in half:
            i, r = half["I"], half["R"]
            if i[0] != r[0] or i[3] != r[3]:
                ln.fail("tcpdump ikev2 lines I and R name different algorithms")
            del pending[key]
            return IkeV2Key(ispi, rspi, i[3][0], i[4], 0, i[5], r[5], i[0][0], i[1], i[0][1],
                            i[2], r[2], f"{ln.path}:{i[6]},{r[6]}")
        return None
    if len(parts) > 2:
        ln.fail("tcpdump -E line: expected '[0xSPI@address] algorithm:secret'")
    spi = None
    dst = None
    if len(parts) == 2:
        sa, _, dst = parts[0].partition("@")
        if not dst:
            ln.fail("tcpdump -E line: expected 0xSPI@address before the algorithm")
        spi = _parse_spi(sa, ln, "SPI")
    algo, _, secret = parts[-1].partition(":")
    algo = algo.lower()
    icv = 0
    auth = "none"
    if algo.endswith("-hmac96"):
        algo = algo[:-7]
        icv, auth = 12, "any"
    enc = _TCPDUMP_ESP.get(algo)
    if enc is None:  # not shown: it may be the secret itself
        return EspKey(spi, None, None, dst, "unsupported", ln.field(len(parts)), 0, b"",
                      "none", "", b"", f"{ln.path}:{ln.number}")
    ekey = _tcpdump_secret(secret, ln, "secret")
    if len(ekey) != enc[1]:
        ln.fail(f"tcpdump -E line: the secret is {len(ekey)} bytes; {algo} needs {enc[1]}")
    ipver = None
    if dst is not None:
        try:
            ipver = ipaddress.ip_address(dst).version
        except ValueError:
            ln.fail("tcpdump -E line: the address after @ is not an IP address")
    return EspKey(spi, ipver, None, dst, enc[0], algo, icv, ekey, auth,
                  "hmac96" if icv else "", b"", f"{ln.path}:{ln.number}")


#: longest line of a key file (bytes): a key table's lines are a few hundred bytes
MAX_LINE = 1 << 16


class _NotText(Exception):
    """A line that is not UTF-8 text or is too long for a key table (``line``, ``reason``)."""

    def __init__(self, line: int, reason: str):
        self.line = line
        self.reason = reason


def _lines(fh):
    """``(number, line)`` of a binary stream read to its end, one line at a time: UTF-8, an
    optional byte-order mark, LF / CRLF / CR (numbered as :meth:`str.splitlines` splits).
    Raises :class:`_NotText` at the first line that is not UTF-8 or is longer than
    :data:`MAX_LINE` (a capture or archive beside the tables: nothing more is read)."""
    number = 0
    while True:
        raw = fh.readline(MAX_LINE + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            raise _NotText(number + 1, f"line longer than {MAX_LINE} bytes: not a key table")
        if number == 0:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            utf16 = number == 0 and raw[:2] in (b"\xff\xfe", b"\xfe\xff")
            raise _NotText(number + 1, "UTF-16 text: save the file as UTF-8" if utf16
                           else "not UTF-8 text") from None
        for line in text.splitlines() or [""]:
            number += 1
            yield number, line


def load_file(path: str, store: KeyStore, in_directory: bool = False) -> int:
    """Add the keys of one file to ``store``; returns the number of key lines.  In a directory
    a file whose first meaningful line is no key table (or no text) is skipped (README,
    SOURCE, a capture ...)."""
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise KeyFileError(path, 0, f"cannot read: {e.strerror}") from None
    with fh:
        try:
            return _load_lines(path, _lines(fh), store, in_directory)
        except OSError as e:
            raise KeyFileError(path, 0, f"cannot read: {e.strerror}") from None


def _load_lines(path: str, lines, store: KeyStore, in_directory: bool) -> int:
    pending: dict = {}
    count = 0
    first = True
    try:
        for number, line in lines:
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            kind = _kind_of(s)
            ln = _Line(path, number)
            if kind is None:
                if first and in_directory:
                    store.skipped.append(path)
                    return 0
                fields = _split_uat(s)
                n = len(fields) if fields is not None else 0
                ln.fail(f"not a line of ikev1_decryption_table (2 fields), "
                        f"ikev2_decryption_table (8 fields), esp_sa (8 fields) or tcpdump -E "
                        f"syntax ({n} fields)")
            first = False
            if kind == "tcpdump":
                rec = _parse_tcpdump(s, ln, pending)
            else:
                fields = _split_uat(s)
                rec = {"ikev1": _parse_ikev1, "ikev2": _parse_ikev2, "esp": _parse_esp}[kind](
                    fields, ln)
            if rec is not None:
                store.add(rec)
                count += 1
    except _NotText as e:
        if first and in_directory:
            store.skipped.append(path)
            return 0
        raise KeyFileError(path, e.line, e.reason) from None
    if pending:
        (ispi, rspi), half = next(iter(pending.items()))
        missing = "R" if "I" in half else "I"
        raise KeyFileError(path, next(iter(half.values()))[6],
                           f"tcpdump ikev2 line without its '{missing}' line for the same SPIs")
    store.files.append(path)
    return count


def load_keys(paths) -> KeyStore:
    """Load every file (directories: their regular, non-hidden files, sorted) into one store."""
    store = KeyStore()
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            for name in sorted(os.listdir(p)):
                fp = os.path.join(p, name)
                if name.startswith(".") or not os.path.isfile(fp):
                    continue
                load_file(fp, store, in_directory=True)
        elif os.path.exists(p):
            load_file(p, store)
        else:
            raise KeyFileError(p, 0, "no such file or directory")
    return store
