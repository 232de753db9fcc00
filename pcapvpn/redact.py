"""``--redact``: consistent pseudonyms for addresses, MACs, identities and file names.

One :class:`Redactor` per run holds a random key and the mapping; it is applied to the report
model before any renderer sees it (:meth:`Redactor.report`) and, through
:func:`dissect.vpn.rewrite.rewrite_frame`, to the frames of ``--export-evidence``, so that the
pseudonyms in the report are those in the evidence.

IP addresses: a keyed prefix-preserving permutation (each bit is flipped or not by a keyed
function of the bits before it, the construction of Crypto-PAn, Xu et al. 2002), so the same
address always gets the same pseudonym and two addresses sharing an n-bit prefix share an n-bit
prefix afterwards (subnets stay subnets).  The bits that put an address in a special block are
never flipped, so private stays private, multicast stays multicast (a rule treats multicast
differently), loopback stays loopback; and no public address lands in such a block.

MAC addresses: keyed, locally administered (the group bit is kept; broadcast stays).
Identities (FQDN, e-mail, key ID) get same-length pseudonyms ``idN-...`` (same length so the
rewritten IKE payloads keep their lengths); DNs and certificates are zeroed in the evidence.
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

# blocks whose prefix is kept (RFC 6890 special-purpose registries, the ones that matter here)
_SPECIAL_V4 = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
               "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4"]
_SPECIAL_V6 = ["::/8", "fc00::/7", "fe80::/10", "ff00::/8"]

_V4_RE = re.compile(r"(?<![\w.:])(\d{1,3}(?:\.\d{1,3}){3})(?![\w]|\.\d)")
_V6_RE = re.compile(r"(?<![\w:.])((?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:|"
                    r"\d{1,3}(?:\.\d{1,3}){3})?)(?![\w:])")
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


class Redactor:
    """Pseudonyms for one run.  ``key``: fixed in tests, random otherwise."""

    def __init__(self, key: bytes | None = None):
        self.key = key if key is not None else os.urandom(32)
        self.ips: dict[bytes, bytes] = {}
        self.macs: dict[bytes, bytes] = {}
        self.idents: dict[bytes, bytes] = {}
        self.files: dict[str, str] = {}

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
                h = hashlib.blake2b(bytes([ver, i]) + prefix.to_bytes(16, "big"), key=self.key,
                                    digest_size=1).digest()[0]
                bit ^= h & 1
            out = (out << 1) | bit
        new = out.to_bytes(len(packed), "big")
        self.ips[packed] = new
        return new

    def mac(self, b: bytes) -> bytes:
        b = bytes(b)
        if b == b"\xff" * 6 or b == bytes(6):
            return b
        hit = self.macs.get(b)
        if hit is None:
            h = hashlib.blake2b(b"mac" + b, key=self.key, digest_size=6).digest()
            hit = bytes([(h[0] & 0xFC) | 0x02 | (b[0] & 0x01)]) + h[1:]
            self.macs[b] = hit
        return hit

    def ident(self, b: bytes) -> bytes:
        b = bytes(b)
        hit = self.idents.get(b)
        if hit is None:
            n = len(self.idents) + 1
            h = hashlib.blake2b(b"id" + b, key=self.key, digest_size=16).hexdigest()
            text = (f"id{n}-" + h + "x" * len(b))[:len(b)] if len(b) >= 4 else "x" * len(b)
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

    def text(self, s: str) -> str:
        """Every IPv4/IPv6 address in free text replaced (Wireshark byte strings such as SPIs
        ``2c:d6:79:...`` are not addresses: groups of exactly two hex digits without ``::``
        are left alone unless the address is a known one)."""
        if not s:
            return s

        def v4(m):
            return self.ip_text(m.group(1))

        def v6(m):
            t = m.group(1)
            try:
                a = ipaddress.IPv6Address(t)
            except ValueError:
                return t
            groups = t.split(":")
            if "::" not in t and all(len(g) == 2 for g in groups) and a.packed not in self.ips:
                return t
            return str(ipaddress.IPv6Address(self.ip(a.packed)))

        s = _V4_RE.sub(v4, s)
        if ":" in s:
            s = _V6_RE.sub(v6, s)
        for orig, new in self.files.items():
            if len(orig) >= 4 and orig in s:
                s = s.replace(orig, new)
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
        hit = self.files.get(name)
        if hit is None:
            if name == "-":
                hit = "stdin"
            else:
                base = os.path.basename(name)
                ext = ""
                for e in (".pcapng.gz", ".pcap.gz", ".pcapng", ".pcap", ".cap", ".log.gz",
                          ".log", ".txt", ".csv", ".json", ".gz"):
                    if base.endswith(e):
                        ext = e
                        break
                hit = f"{kind}{len(self.files) + 1}{ext}"
            self.files[name] = hit
        return hit

    # -- the model -----------------------------------------------------------------------------

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
            return self.text(obj)
        if isinstance(obj, list):
            if key == "identities":
                return [self.identity_text(x) if isinstance(x, str) else x for x in obj]
            return [self._walk(x, key) for x in obj]
        if isinstance(obj, tuple):
            return tuple(self._walk(x, key) for x in obj)
        if isinstance(obj, dict):
            return {k: self._walk(v, k) for k, v in obj.items()
                    if not (isinstance(k, str) and _SECRET_KEY.search(k))}
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for f in dataclasses.fields(obj):
                setattr(obj, f.name, self._walk(getattr(obj, f.name), f.name))
            return obj
        return obj

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
        }

    def write_mapping(self, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        from pcapvpn.report.escape import json_safe  # a file name that is not UTF-8: \xNN

        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(json_safe(self.mapping()), f, indent=2, ensure_ascii=False)
            f.write("\n")
