"""``--redact``: consistent pseudonyms for addresses, MACs, identities and file names.

One :class:`Redactor` per run holds a key and the mapping; it is applied to the report model
before any renderer sees it (:meth:`Redactor.report`) and, through
:func:`dissect.vpn.rewrite.rewrite_frame`, to the frames of ``--export-evidence``, so that the
pseudonyms in the report are those in the evidence.

The key decides every pseudonym and nothing else does (not the order things are met in, not the
run): with the same key (``--redact-key FILE``, ``PCAPVPN_REDACT_KEY``; :func:`load_key`) a
capture redacted today and its follow-up tomorrow use the same pseudonyms and can be compared;
without one, a random key serves one run.

IP addresses: a keyed prefix-preserving permutation (each bit is flipped or not by a keyed
function of the bits before it, the construction of Crypto-PAn, Xu et al. 2002), so the same
address always gets the same pseudonym and two addresses sharing an n-bit prefix share an n-bit
prefix afterwards (subnets stay subnets); no address is its own pseudonym.  The bits that put an address in a special block are
never flipped, so private stays private (RFC 1918), loopback, link-local and multicast keep
their class (a rule treats multicast differently), the documentation blocks (RFC 5737, RFC 3849)
stay documentation; and no public address lands in such a block.  A network written with a
prefix length (``10.10.1.0/24``) or as a range (``10.10.1.0-10.10.1.127``) has only its network
bits mapped: the host bits stay as written (``.0`` stays ``.0``).

MAC addresses: keyed, locally administered (the group bit is kept; broadcast stays).
Identities (FQDN, e-mail, key ID) get same-length keyed pseudonyms ``id-...`` (same length so the
rewritten IKE payloads keep their lengths); DNs and certificates are zeroed in the evidence.
File names (captures, ``--keys`` files and directories) and the host names of the machine that
runs pcapvpn are replaced wherever they appear.
Keys, nonces and secrets are never printed: the model holds none, and any such key is dropped.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import ipaddress
import json
import os
import re
import socket

# blocks whose prefix is kept (RFC 6890 special-purpose registries, the ones that matter here)
_SPECIAL_V4 = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
               "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
               # documentation (RFC 5737)
               "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
_SPECIAL_V6 = ["::/8", "fc00::/7", "fe80::/10", "ff00::/8", "2001:db8::/32"]

#: an IPv4 address, optionally with a prefix length or as the start of a range (``A-B``)
_V4_RE = re.compile(r"(?<![\w.:])(\d{1,3}(?:\.\d{1,3}){3})"
                    r"(?:/(\d{1,2})(?!\d)|-(\d{1,3}(?:\.\d{1,3}){3}))?(?![\w]|\.\d)")
_V6_RE = re.compile(r"(?<![\w:.])((?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:|"
                    r"\d{1,3}(?:\.\d{1,3}){3})?)(?:/(\d{1,3})(?!\d))?(?![\w:])")
#: the names Wireshark and strongSwan's save-keys give key tables: shown as they are
_KEY_TABLE_NAMES = ("ikev1_decryption_table", "ikev2_decryption_table", "esp_sa")
#: words of pcapvpn's own sentences that are not replaced when a machine is named so
_GENERIC_WORDS = frozenset(("gateway", "router", "server", "client", "host", "peer", "vpn",
                            "firewall", "tunnel", "ipsec", "initiator", "responder", "capture"))
#: the environment variable holding a redaction key (hex)
KEY_ENV = "PCAPVPN_REDACT_KEY"
_SECRET_KEY = re.compile(r"(^|_)(nonce|nonces|ke_data|key_data|keys|secret|psk|sk_[a-z]+)$")


def _prefixes(blocks, bits):
    out = set()
    for b in blocks:
        n = ipaddress.ip_network(b)
        v = int(n.network_address)
        for k in range(n.prefixlen):  # every proper prefix of the block (length k)
            out.add((k, v >> (bits - k)))
    return out


_KEEP = {4: _prefixes(_SPECIAL_V4, 32), 6: _prefixes(_SPECIAL_V6, 128)}


class RedactKeyError(Exception):
    """A redaction key that cannot be read or made (the message names the file or variable)."""


def load_key(path: str | None = None, environ=None) -> bytes | None:
    """The redaction key: ``--redact-key FILE`` (created with mode 0600 holding a new random key
    when it does not exist), else ``$PCAPVPN_REDACT_KEY`` (hex), else None (a random key for this
    run only).  A key file holds the key as hexadecimal digits (at least 32, i.e. 16 bytes) on
    one line."""
    environ = os.environ if environ is None else environ
    if path:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as e:
            raise RedactKeyError(f"--redact-key {path}: cannot create it: {e.strerror}") from None
        else:
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(os.urandom(32).hex() + "\n")
        try:
            with open(path, "rb") as f:
                raw = f.read(4096)
        except OSError as e:
            raise RedactKeyError(f"--redact-key {path}: cannot read it: {e.strerror}") from None
        key = _hex_key(raw)
        if key is None:
            raise RedactKeyError(f"--redact-key {path}: not a redaction key (expected one line "
                                 f"of at least 32 hexadecimal digits)")
        return key
    value = environ.get(KEY_ENV)
    if value:
        key = _hex_key(value.encode("ascii", "replace"))
        if key is None:
            raise RedactKeyError(f"{KEY_ENV}: not a redaction key (expected at least 32 "
                                 f"hexadecimal digits)")
        return key
    return None


def _hex_key(raw: bytes) -> bytes | None:
    text = raw.strip()
    if len(text) < 32 or len(text) % 2 or not re.fullmatch(rb"[0-9A-Fa-f]+", text):
        return None
    return bytes.fromhex(text.decode("ascii"))


def machine_names() -> list[str]:
    """The host names of the machine that runs pcapvpn (as they may appear in paths and
    identities): its host name and the first label of it."""
    names = set()
    for n in (socket.gethostname(), os.uname().nodename):
        if n:
            names.add(n)
            names.add(n.split(".")[0])
    return sorted(n for n in names if n and n not in ("localhost", "localhost.localdomain"))


class Redactor:
    """Pseudonyms for one run, all decided by ``key`` (random when None).  ``paths``: files and
    directories named on the command line besides the captures (``--keys``); ``hosts``: the
    machine's host names (default :func:`machine_names`)."""

    def __init__(self, key: bytes | None = None, paths=(), hosts=None):
        key = key if key is not None else os.urandom(32)
        # BLAKE2b takes keys up to 64 bytes: a longer one is condensed
        self.key = key if len(key) <= 64 else hashlib.blake2b(key).digest()
        self.ips: dict[bytes, bytes] = {}
        self.macs: dict[bytes, bytes] = {}
        self.idents: dict[bytes, bytes] = {}
        self.files: dict[str, str] = {}
        self.hosts: dict[str, str] = {}
        for p in paths:
            self.path(p)
        for h in (machine_names() if hosts is None else hosts):
            self.host(h)

    def _h(self, tag: bytes, value: bytes, size: int = 8) -> str:
        return hashlib.blake2b(tag + b"\0" + value, key=self.key, digest_size=size).hexdigest()

    # -- the mapper interface of dissect.vpn.rewrite --------------------------------------------

    def ip(self, packed: bytes) -> bytes:
        packed = bytes(packed)
        hit = self.ips.get(packed)
        if hit is not None:
            return hit
        bits = 8 * len(packed)
        if bits not in (32, 128):
            return packed
        ver = 4 if bits == 32 else 6
        keep = _KEEP[ver]
        x = int.from_bytes(packed, "big")
        out = 0
        for i in range(bits):
            prefix = x >> (bits - i)
            bit = (x >> (bits - 1 - i)) & 1
            if (i, prefix) not in keep:
                if i == bits - 1 and out == prefix:
                    # every bit before the last came out unchanged: the last one flips, so no
                    # address is its own pseudonym (still a function of the prefix alone, so
                    # still a prefix-preserving permutation)
                    bit ^= 1
                else:
                    h = hashlib.blake2b(bytes([ver, i]) + prefix.to_bytes(16, "big"),
                                        key=self.key, digest_size=1).digest()[0]
                    bit ^= h & 1
            out = (out << 1) | bit
        new = out.to_bytes(len(packed), "big")
        self.ips[packed] = new
        return new

    def network(self, packed: bytes, prefixlen: int) -> bytes:
        """``packed`` with its first ``prefixlen`` bits mapped as :meth:`ip` maps them and the
        host bits kept as written (``10.10.1.0/24`` keeps ``.0``)."""
        packed = bytes(packed)
        bits = 8 * len(packed)
        if bits not in (32, 128):
            return packed
        n = max(0, min(prefixlen, bits))
        host = (1 << (bits - n)) - 1
        x = int.from_bytes(packed, "big")
        mapped = int.from_bytes(self.ip(packed), "big")
        return ((mapped & ~host) | (x & host)).to_bytes(len(packed), "big")

    def mac(self, b: bytes) -> bytes:
        b = bytes(b)
        if b == b"\xff" * 6 or b == bytes(6):
            return b
        hit = self.macs.get(b)
        if hit is None:
            h = bytes.fromhex(self._h(b"mac", b, 6))
            hit = bytes([(h[0] & 0xFC) | 0x02 | (b[0] & 0x01)]) + h[1:]
            self.macs[b] = hit
        return hit

    def ident(self, b: bytes) -> bytes:
        b = bytes(b)
        hit = self.idents.get(b)
        if hit is None:
            h = self._h(b"id", b, 16)
            text = ("id-" + h + "x" * len(b))[:len(b)] if len(b) >= 4 else "x" * len(b)
            hit = text.encode()
            self.idents[b] = hit
        return hit

    def addresses(self):
        return list(self.ips)

    # -- text ----------------------------------------------------------------------------------

    def ip_text(self, s: str) -> str:
        try:
            a = ipaddress.ip_address(s)
        except ValueError:
            return s
        return str(ipaddress.ip_address(self.ip(a.packed)))

    def _net_text(self, a, prefixlen: int) -> str:
        return str(ipaddress.ip_address(self.network(a.packed, prefixlen)))

    def text(self, s: str) -> str:
        """Every IPv4/IPv6 address in free text replaced (a network ``A/n`` or range ``A-B``:
        its network bits only), then file names, host names of this machine and identities
        (Wireshark byte strings such as SPIs ``2c:d6:79:...`` are not addresses: groups of
        exactly two hex digits without ``::`` are left alone unless the address is a known
        one)."""
        if not s:
            return s

        def v4(m):
            a = m.group(1)
            if m.group(2) is not None:
                try:
                    net = ipaddress.IPv4Address(a)
                except ValueError:
                    return m.group(0)
                return f"{self._net_text(net, int(m.group(2)))}/{m.group(2)}"
            if m.group(3) is not None:
                try:
                    lo, hi = ipaddress.IPv4Address(a), ipaddress.IPv4Address(m.group(3))
                except ValueError:
                    return f"{self.ip_text(a)}-{self.ip_text(m.group(3))}"
                n = 32 - (int(lo) ^ int(hi)).bit_length()
                return f"{self._net_text(lo, n)}-{self._net_text(hi, n)}"
            return self.ip_text(a)

        def v6(m):
            t = m.group(1)
            try:
                a = ipaddress.IPv6Address(t)
            except ValueError:
                return m.group(0)
            if m.group(2) is not None:
                return f"{self._net_text(a, int(m.group(2)))}/{m.group(2)}"
            groups = t.split(":")
            if "::" not in t and all(len(g) == 2 for g in groups) and a.packed not in self.ips:
                return t
            return str(ipaddress.IPv6Address(self.ip(a.packed)))

        s = _V4_RE.sub(v4, s)
        if ":" in s:
            s = _V6_RE.sub(v6, s)
        # the longest name first: a directory is part of the paths of the files in it
        for orig, new in sorted(self.files.items(), key=lambda kv: -len(kv[0])):
            if len(orig) >= 4 and orig in s:
                s = s.replace(orig, new)
        for orig, new in self.hosts.items():
            if orig.lower() in s.lower():
                s = re.sub(rf"(?<![\w-]){re.escape(orig)}(?![\w-])", new, s, flags=re.I)
        if self.idents:
            # identities and certificate names seen anywhere (decrypted IDs, subjects, SANs) are
            # replaced wherever they appear in free text too, longest first (a DN holds its CN)
            for orig, new in sorted(self.idents.items(), key=lambda kv: -len(kv[0])):
                o = orig.decode("utf-8", "replace")
                if len(o) >= 4 and o in s:
                    s = s.replace(o, new.decode("ascii", "replace"))
        return s

    def _remember(self, value) -> None:
        if not isinstance(value, str) or len(value) < 4:
            return
        try:
            ipaddress.ip_address(value.split("/")[0])
            return  # addresses are handled by the address mapping
        except ValueError:
            pass
        self.ident(value.encode("utf-8", "surrogateescape"))

    def _collect(self, obj, key="") -> None:
        """First pass over the model: every identity-bearing field (cleartext and decrypted
        IDs, certificate subjects, issuers and subjectAltNames) is given its pseudonym before
        any text is rewritten, so the same name is replaced everywhere it appears."""
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k == "ids" and isinstance(v, list):
                    for e in v:
                        if isinstance(e, dict):
                            self._remember(e.get("value"))
                        elif isinstance(e, str):  # --log: identities and host names a log names
                            self._remember(e)
                elif k in ("subject", "issuer", "identity", "id_value", "sni", "server_name"):
                    self._remember(v)
                elif k in ("subject_alt_names", "sans", "names") and isinstance(v, list):
                    for x in v:
                        self._remember(x)
                elif k == "identities" and isinstance(v, list):
                    for x in v:
                        if isinstance(x, str):
                            parts = x.split(" ", 2)
                            if len(parts) == 3 and not parts[2].startswith("<"):
                                self._remember(parts[2])
                else:
                    self._collect(v, k)
        elif isinstance(obj, (list, tuple)):
            for x in obj:
                self._collect(x, key)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for f in dataclasses.fields(obj):
                self._collect(getattr(obj, f.name), f.name)

    def identity_text(self, s: str) -> str:
        """``"IDi ID_FQDN vpn.example"`` → the value pseudonymised like in the evidence."""
        parts = s.split(" ", 2)
        if len(parts) < 3:
            return self.text(s)
        head, value = " ".join(parts[:2]), parts[2]
        if value.startswith("<"):
            return f"{head} {value.split('>')[0]}>"
        try:
            ipaddress.ip_address(value.split("/")[0])
            return f"{head} {self.text(value)}"
        except ValueError:
            pass
        raw = value.encode("utf-8", "surrogateescape")
        return f"{head} {self.ident(raw).decode('ascii', 'replace')}"

    def file(self, name: str, kind: str = "capture") -> str:
        """A file's pseudonym: ``<kind>-<keyed hash><extension>`` (``kind``: capture, log ...;
        ``-`` is ``stdin``; ``live:IFACE``, an interface, is kept)."""
        hit = self.files.get(name)
        if hit is None:
            if name == "-":
                hit = "stdin"
            elif name.startswith("live:"):
                hit = name
            else:
                base = os.path.basename(name)
                ext = ""
                for e in (".pcapng.gz", ".pcap.gz", ".pcapng", ".pcap", ".cap", ".log.gz",
                          ".log", ".txt", ".csv", ".json", ".gz"):
                    if base.endswith(e):
                        ext = e
                        break
                hit = (f"{kind}-{self._h(b'file', name.encode('utf-8', 'surrogateescape'))}"
                       f"{ext}")
            self.files[name] = hit
        return hit

    def path(self, name: str) -> str:
        """Another file or directory named on the command line (``--keys``): ``keys-<keyed
        hash>``; a key table keeps its standard name under its directory's pseudonym
        (``keys-3fa2.../esp_sa``)."""
        name = os.fspath(name)
        hit = self.files.get(name)
        if hit is None:
            stripped = name.rstrip(os.sep) or name
            head, base = os.path.split(stripped)
            hit = f"{self._dir(head)}/{base}" if base in _KEY_TABLE_NAMES else self._dir(stripped)
            self.files[name] = hit
            self.files.setdefault(stripped, hit)
        return hit

    def _dir(self, d: str) -> str:
        return f"keys-{self._h(b'path', d.encode('utf-8', 'surrogateescape'))}"

    def host(self, name: str) -> str:
        """A host name of this machine: ``host-<keyed hash>`` wherever it stands as a word (a
        generic word such as "gateway" is not taken for the machine's name in the report's own
        sentences)."""
        hit = self.hosts.get(name)
        if hit is None:
            hit = f"host-{self._h(b'host', name.lower().encode('utf-8', 'surrogateescape'), 4)}"
            if name.lower() not in _GENERIC_WORDS and len(name) >= 2:
                self.hosts[name] = hit
        return hit

    # -- the model -----------------------------------------------------------------------------

    def _msg(self, m):
        """A finding message (:class:`pcapvpn.findings.Msg`) redacted fact by fact, so that it
        stays translatable; the whole text redacted when that reads differently."""
        from pcapvpn.findings import Msg, Term

        def fact(k, v):
            if isinstance(v, Term):
                return Term(self.text(v))
            return self._walk(v, k) if isinstance(v, str) else v

        whole = self.text(m)
        part = Msg(m.template, {k: fact(k, v) for k, v in m.facts.items()})
        return part if part == whole else whole

    def report(self, report):
        """A redacted deep copy of a :class:`pcapvpn.model.Report` (findings included)."""
        for f in report.capture.files:
            self.file(f.name)
        for s in getattr(report, "log_sources", None) or ():
            self.file(s["file"], kind="log")
        self._collect(report)
        return self._walk(copy.deepcopy(report), "")

    def _walk(self, obj, key):
        if isinstance(obj, str):
            if key in ("file", "name") and obj in self.files:
                return self.files[obj]
            return self._msg(obj) if hasattr(obj, "template") else self.text(obj)
        if isinstance(obj, list):
            if key == "identities":
                return [self.identity_text(x) if isinstance(x, str) else x for x in obj]
            return [self._walk(x, key) for x in obj]
        if isinstance(obj, tuple):
            return tuple(self._walk(x, key) for x in obj)
        if isinstance(obj, dict):
            out = {k: self._walk(v, k) for k, v in obj.items()
                   if not (isinstance(k, str) and _SECRET_KEY.search(k))}
            if out.get("text") is not None and isinstance(out.get("value"), str):
                # a configuration attribute: its text is redacted, its raw bytes (hex) would
                # give the address away
                out["value"] = None
            return out
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for f in dataclasses.fields(obj):
                setattr(obj, f.name, self._walk(getattr(obj, f.name), f.name))
            return obj
        return obj

    def finding(self, d: dict) -> dict:
        """A redacted copy of one finding as a dict (live events): the files its evidence
        frames name get their pseudonyms as in the report."""
        for fr in (d.get("evidence") or {}).get("frames") or ():
            if isinstance(fr, dict) and isinstance(fr.get("file"), str):
                self.file(fr["file"])
        return self._walk(copy.deepcopy(d), "")

    # -- the mapping file ----------------------------------------------------------------------

    def mapping(self) -> dict:
        def a(b):
            return str(ipaddress.ip_address(b))

        return {
            "note": "pcapvpn --redact mapping: original -> pseudonym. For the author only; "
                    "do not attach it to the ticket.",
            "ip": {a(k): a(v) for k, v in sorted(self.ips.items())},
            "mac": {":".join(f"{x:02x}" for x in k): ":".join(f"{x:02x}" for x in v)
                    for k, v in sorted(self.macs.items())},
            "identity": {k.decode("utf-8", "replace"): v.decode("ascii", "replace")
                         for k, v in self.idents.items()},
            "file": dict(self.files),
            "host": dict(self.hosts),
        }

    def write_mapping(self, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        from pcapvpn.report.escape import json_safe  # a file name that is not UTF-8: \xNN

        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(json_safe(self.mapping()), f, indent=2, ensure_ascii=False)
            f.write("\n")
