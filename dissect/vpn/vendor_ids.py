"""IKE Vendor ID payloads → (name, version).

A table built for this project from RFCs, Internet-Drafts and vendor documentation -- not from
ike-scan's vendor-id database nor Wireshark's table.  Most Vendor IDs are the MD5 hash of a
documented string; those entries keep the *string* and the hash is computed here with
:mod:`hashlib`, so anyone can verify the data.  The others state where their bytes come from.

Each entry is ``(name, bytes, match, version, source)``:

* ``match`` -- ``"exact"`` (the payload equals the bytes) or ``"prefix"`` (the payload starts
  with the bytes; what follows is a version / capability field, rendered by ``version``);
* ``version`` -- how to render the bytes after a prefix: ``"none"``, ``"hex"``,
  ``"major.minor"`` (two bytes), ``"ascii"``, ``"windows"`` ([MS-IKEE] version number);
* ``min_len`` / ``max_len`` -- optional bounds on the whole payload length (for the short
  printable Openswan IDs).

Deliberately absent (no public specification of the bytes could be found, and the GPL/third-party
tables may not be copied): Juniper/NetScreen, Check Point, SonicWall, the Cisco VPN 3000
concentrator, the Microsoft ID starting ``01528bbbc00696121849ab9a1c5b2a51``.  Payloads from
those vendors look up as None.  FortiGate and Palo Alto Networks are named from what their
boxes were seen to send in a public capture (the sender identified by its Ethernet OUI).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def md5(text: str | bytes) -> bytes:
    """MD5 digest of ``text`` (UTF-8 if str) -- how most Vendor IDs are defined."""
    if isinstance(text, str):
        text = text.encode()
    return hashlib.md5(text).digest()


@dataclass(frozen=True, slots=True)
class VendorId:
    name: str
    vid: bytes
    match: str  # "exact" | "prefix"
    version: str  # "none" | "hex" | "major.minor" | "ascii" | "windows"
    source: str
    string: str | bytes | None = None  # the documented string, for MD5-derived entries
    min_len: int = 0
    max_len: int = 0

    @property
    def hex(self) -> str:
        return self.vid.hex()


def _md5_entry(name: str, string: str | bytes, source: str, *, match: str = "exact",
               version: str = "none", length: int = 16) -> VendorId:
    return VendorId(name, md5(string)[:length], match, version, source, string=string)


def _ascii_entry(name: str, text: str, source: str) -> VendorId:
    return VendorId(name, text.encode(), "exact", "none", source)


_NATT_DRAFT = (
    "MD5 of the draft name, as draft-ietf-ipsec-nat-t-ike-0x §3.1 (\"Detecting support of "
    "NAT-Traversal\") specifies for each revision"
)
_MS_IKEE = "MD5 of the string, [MS-IKEE] (Microsoft IKE Protocol Extensions) §2.2 Vendor ID payloads"

VENDOR_IDS: tuple[VendorId, ...] = (
    # --- NAT traversal ---------------------------------------------------------------------
    _md5_entry("RFC 3947 NAT-T", "RFC 3947", "RFC 3947 §3.1: MD5(\"RFC 3947\")"),
    _md5_entry("draft-ietf-ipsec-nat-t-ike-00", "draft-ietf-ipsec-nat-t-ike-00", _NATT_DRAFT),
    _md5_entry("draft-ietf-ipsec-nat-t-ike-01", "draft-ietf-ipsec-nat-t-ike-01", _NATT_DRAFT),
    _md5_entry("draft-ietf-ipsec-nat-t-ike-02", "draft-ietf-ipsec-nat-t-ike-02", _NATT_DRAFT),
    # Several implementations (FreeS/WAN heritage) hashed the string with a trailing newline.
    _md5_entry("draft-ietf-ipsec-nat-t-ike-02\\n", "draft-ietf-ipsec-nat-t-ike-02\n",
               "MD5 of \"draft-ietf-ipsec-nat-t-ike-02\\n\" (with newline), as sent by "
               "FreeS/WAN-derived daemons"),
    _md5_entry("draft-ietf-ipsec-nat-t-ike-03", "draft-ietf-ipsec-nat-t-ike-03", _NATT_DRAFT),
    _md5_entry("draft-ietf-ipsec-nat-t-ike-04", "draft-ietf-ipsec-nat-t-ike-04", _NATT_DRAFT),
    _md5_entry("draft-ietf-ipsec-nat-t-ike-05", "draft-ietf-ipsec-nat-t-ike-05", _NATT_DRAFT),
    _md5_entry("draft-ietf-ipsec-nat-t-ike-06", "draft-ietf-ipsec-nat-t-ike-06", _NATT_DRAFT),
    _md5_entry("draft-ietf-ipsec-nat-t-ike-07", "draft-ietf-ipsec-nat-t-ike-07", _NATT_DRAFT),
    _md5_entry("draft-ietf-ipsec-nat-t-ike-08", "draft-ietf-ipsec-nat-t-ike-08", _NATT_DRAFT),
    _md5_entry("draft-stenberg-ipsec-nat-traversal-01", "draft-stenberg-ipsec-nat-traversal-01",
               "MD5 of the draft name (draft-stenberg-ipsec-nat-traversal-01)"),
    _md5_entry("draft-stenberg-ipsec-nat-traversal-02", "draft-stenberg-ipsec-nat-traversal-02",
               "MD5 of the draft name (draft-stenberg-ipsec-nat-traversal-02)"),
    _md5_entry("draft-huttunen-ipsec-esp-in-udp-00", "draft-huttunen-ipsec-esp-in-udp-00.txt",
               "MD5 of the draft file name (draft-huttunen-ipsec-esp-in-udp-00.txt)"),
    _md5_entry("draft-huttunen-ipsec-esp-in-udp-01", "draft-huttunen-ipsec-esp-in-udp-01.txt",
               "MD5 of the draft file name (draft-huttunen-ipsec-esp-in-udp-01.txt)"),
    # --- Liveness, XAUTH, Unity, fragmentation ---------------------------------------------
    VendorId("Dead Peer Detection", bytes.fromhex("afcad71368a1f1c96b8696fc7757"), "prefix",
             "major.minor", "RFC 3706 §3: afcad713 68a1f1c9 6b8696fc 7757 + major 01, minor 00"),
    _md5_entry("XAUTH", "draft-ietf-ipsra-isakmp-xauth-06.txt",
               "first 8 bytes of MD5(\"draft-ietf-ipsra-isakmp-xauth-06.txt\") "
               "(09002689dfd6b712, the XAUTH capability ID)", length=8),
    _md5_entry("Cisco Unity", "CISCO-UNITY",
               "first 14 bytes of MD5(\"CISCO-UNITY\") + major/minor version bytes (Cisco Unity "
               "client protocol; strongSwan's unity plugin sends 1.0)",
               match="prefix", version="major.minor", length=14),
    _md5_entry("FRAGMENTATION", "FRAGMENTATION",
               "MD5(\"FRAGMENTATION\"), optionally followed by 4 capability bytes (80000000 / "
               "c0000000): IKEv1 fragmentation (Cisco, strongSwan, Windows), payload 132",
               match="prefix", version="hex"),
    # --- Open-source daemons ---------------------------------------------------------------
    _md5_entry("strongSwan", "strongSwan",
               "MD5(\"strongSwan\"): sent by charon (IKEv1 and IKEv2) with "
               "charon.send_vendor_id=yes; carries no version"),
    VendorId("libreswan", b"OE-Libreswan-", "prefix", "ascii",
             "libreswan's pluto_vendorid: ASCII \"OE-Libreswan-<version>\" (ipsec status prints it)"),
    VendorId("Openswan/FreeS/WAN", b"OE", "prefix", "none",
             "FreeS/WAN and Openswan pluto: 12 printable bytes, \"OE\" + 10 characters derived "
             "from an MD5 of the version string (version not recoverable)",
             min_len=12, max_len=12),
    VendorId("Openswan", b"OSW", "prefix", "none",
             "Openswan pluto builds whose 12-byte vendor ID starts \"OSW\" + 9 hashed characters",
             min_len=12, max_len=12),
    # --- Firewall vendors, as observed: arkime/arkime tests/pcap/IKEv1.pcap (Apache-2.0; a
    #     Palo Alto <-> FortiGate IKEv1 tunnel over IPv6 published by weberblog.net), each
    #     sender identified by its Ethernet OUI (08:5b:0e Fortinet, b4:0c:25 Palo Alto) ---------
    VendorId("FortiGate", bytes.fromhex("8299031757a36082c6a621de"), "prefix", "hex",
             "observed: a FortiGate's Main Mode 2 (OUI 08:5b:0e, Fortinet) carries these 12 "
             "bytes followed by 4 more (00000000 in that capture)"),
    VendorId("Palo Alto Networks", bytes.fromhex("a9b9b1034f7e50a2513b47b100bb85a9"), "exact",
             "none", "observed: a Palo Alto Networks firewall's Main Mode 1 and 3 (OUI "
             "b4:0c:25, Palo Alto Networks)"),
    # --- Microsoft ([MS-IKEE]) -------------------------------------------------------------
    _md5_entry("MS NT5 ISAKMPOAKLEY", "MS NT5 ISAKMPOAKLEY",
               _MS_IKEE + "; followed by a 4-byte Windows version number",
               match="prefix", version="windows"),
    _md5_entry("MS-Negotiation Discovery Capable", "MS-Negotiation Discovery Capable", _MS_IKEE),
    _md5_entry("IKE CGA version 1", "IKE CGA version 1", _MS_IKEE),
    _md5_entry("Microsoft Vid-Initial-Contact", "Vid-Initial-Contact", _MS_IKEE),
    _md5_entry("MS-MamieExists", "MS-MamieExists", _MS_IKEE),
    # --- Cisco IKEv2: the payload is the ASCII capability string itself (as seen in
    #     corpus/nDPI/pcap/ah.pcapng from a Cisco IOS IKEv2 peer) ----------------------------
    _ascii_entry("Cisco Delete Reason Supported", "CISCO-DELETE-REASON",
                 "ASCII \"CISCO-DELETE-REASON\" (Cisco IOS/ASA IKEv2)"),
    _ascii_entry("Cisco Dynamic Route Supported", "CISCO-DYNAMIC-ROUTE",
                 "ASCII \"CISCO-DYNAMIC-ROUTE\" (Cisco IOS IKEv2)"),
    _ascii_entry("Cisco VPN Revision 2", "CISCOVPN-REV-02", "ASCII \"CISCOVPN-REV-02\" (Cisco IOS IKEv2)"),
    _ascii_entry("Cisco FlexVPN Supported", "FLEXVPN-SUPPORTED",
                 "ASCII \"FLEXVPN-SUPPORTED\" (Cisco IOS FlexVPN)"),
    _ascii_entry("Cisco GRE Mode Supported", "CISCO-GRE-MODE",
                 "ASCII \"CISCO-GRE-MODE\" (Cisco IOS IKEv2 GRE tunnel mode; same ASCII "
                 "convention as the IDs above, not yet seen in the corpus)"),
)

# [MS-IKEE]: the 4 bytes after MD5("MS NT5 ISAKMPOAKLEY") give the Windows version.
# XP SP2 sends the Windows Server 2003 value.
WINDOWS_VERSIONS: dict[int, str] = {
    2: "Windows 2000",
    3: "Windows XP",
    4: "Windows Server 2003 / XP SP2",
    5: "Windows Vista",
    6: "Windows Server 2008",
    7: "Windows 7",
    8: "Windows Server 2008 R2",
    9: "Windows 8 / Server 2012 or later",
}

# Longest byte strings first so a specific prefix ("OE-Libreswan-") wins over a generic one ("OE").
_BY_LENGTH: tuple[VendorId, ...] = tuple(sorted(VENDOR_IDS, key=lambda e: -len(e.vid)))
_EXACT: dict[bytes, VendorId] = {e.vid: e for e in VENDOR_IDS if e.match == "exact"}


def _version(entry: VendorId, rest: bytes) -> str | None:
    if not rest or entry.version == "none":
        return None
    if entry.version == "major.minor" and len(rest) == 2:
        return f"{rest[0]}.{rest[1]}"
    if entry.version == "windows" and len(rest) == 4:
        n = int.from_bytes(rest, "big")
        return WINDOWS_VERSIONS.get(n, f"version {n}")
    if entry.version == "ascii":
        try:
            text = rest.decode("ascii")
        except UnicodeDecodeError:
            return rest.hex()
        return text if text.isprintable() else rest.hex()
    return rest.hex()


def lookup(vid: bytes) -> tuple[str, str | None] | None:
    """Identify a Vendor ID payload body: ``(name, version or None)``, or None if unknown."""
    vid = bytes(vid)
    entry = _EXACT.get(vid)
    if entry is not None:
        return entry.name, None
    for entry in _BY_LENGTH:
        if entry.match != "prefix" or not vid.startswith(entry.vid):
            continue
        if entry.min_len and len(vid) < entry.min_len or entry.max_len and len(vid) > entry.max_len:
            continue
        if entry.min_len and not all(0x21 <= b < 0x7F for b in vid):
            continue  # the 12-byte pluto IDs are printable ASCII
        return entry.name, _version(entry, vid[len(entry.vid):])
    return None


def describe(vid: bytes) -> str:
    """One display string: ``"Cisco Unity 1.0"``, ``"strongSwan"``, or ``"UNKNOWN:<hex>"``
    (the unknown form matches Zeek's ipsec.log ``vendor_ids`` column)."""
    found = lookup(vid)
    if found is None:
        return f"UNKNOWN:{bytes(vid).hex()}"
    name, version = found
    return f"{name} {version}" if version else name


def by_name(name: str) -> VendorId | None:
    """The table entry called ``name`` (first match)."""
    for entry in VENDOR_IDS:
        if entry.name == name:
            return entry
    return None
