"""Decryption keys for strongSwan captures, in Wireshark's UAT format.

Path 1 (preferred): strongSwan's ``save-keys`` plugin.  Debian does not ship it, so
it is compiled at lab setup time from Debian's own ``strongswan`` source package
(same upstream version as the installed charon) into ``.build/save-keys/<ver>/`` and
loaded with LD_PRELOAD (the plugin loader finds ``save_keys_plugin_create`` with
dlsym(RTLD_DEFAULT) before it searches the plugin directory).

Path 2 (fallback): charon's own debug log (``ike = 4``, ``chd = 4``, ``cfg = 2``,
``enc = 2``) is turned into the same three tables (``ikev2_decryption_table``,
``ikev1_decryption_table``, ``esp_sa``), so decryption always has one input format.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tarfile
from pathlib import Path

from . import BUILD_DIR
from .proc import LabError, log, run

PLUGIN_NAME = "libstrongswan-save-keys.so"


# --------------------------------------------------------------------------- build

def installed_version() -> str:
    cp = run(["dpkg-query", "-W", "-f", "${Version}", "strongswan-charon"])
    return cp.stdout.strip()


def upstream_version(debver: str) -> str:
    v = debver.split(":", 1)[-1]
    return v.rsplit("-", 1)[0]


def _private_apt(root: Path) -> list[str]:
    """apt options for a private deb-src configuration derived from the system's
    configured mirrors; nothing under /etc or /var/lib/apt is changed."""
    parts = root / "sources.list.d"
    lists = root / "lists"
    cache = root / "cache"
    for d in (parts, lists / "partial", cache / "archives" / "partial"):
        d.mkdir(parents=True, exist_ok=True)
    n = 0
    one_line: list[str] = []
    if Path("/etc/apt/sources.list").exists():
        for line in Path("/etc/apt/sources.list").read_text().splitlines():
            if line.strip().startswith("deb "):
                one_line.append("deb-src " + line.strip()[4:])
    for f in sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        for line in Path(f).read_text().splitlines():
            if line.strip().startswith("deb "):
                one_line.append("deb-src " + line.strip()[4:])
    if one_line:
        (parts / "lab-src.list").write_text("\n".join(one_line) + "\n")
        n += 1
    for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        text = Path(f).read_text()
        text = re.sub(r"(?mi)^Types:\s*deb\s*$", "Types: deb-src", text)
        (parts / Path(f).name).write_text(text)
        n += 1
    if not n:
        raise LabError("no apt sources configured; cannot fetch strongswan source")
    (root / "empty.list").write_text("")
    return ["-o", f"Dir::Etc::SourceList={root / 'empty.list'}",
            "-o", f"Dir::Etc::SourceParts={parts}",
            "-o", f"Dir::State::Lists={lists}",
            "-o", f"Dir::Cache={cache}",
            "-o", "APT::Sandbox::User=root",
            "-q"]


def fetch_source(upver: str, debver: str, srcdir: Path) -> Path:
    """Return the path of strongswan_<upver>.orig.tar.*, downloading it if needed."""
    srcdir.mkdir(parents=True, exist_ok=True)
    found = sorted(srcdir.glob(f"strongswan_{upver}.orig.tar.*"))
    if found:
        return found[0]
    opts = _private_apt(BUILD_DIR / "apt")
    log("fetching the strongswan source package (apt-get source --download-only)")
    run(["apt-get", *opts, "update"], timeout=300)
    for spec in (f"strongswan={debver}", "strongswan"):
        cp = run(["apt-get", *opts, "source", "--download-only", spec], check=False,
                 timeout=600, cwd=srcdir)
        found = sorted(srcdir.glob(f"strongswan_{upver}.orig.tar.*"))
        if found:
            # the orig tarball is all that is needed (a missing .dsc is harmless)
            return found[0]
        log(f"apt-get source {spec}: rc={cp.returncode} {cp.stderr.strip()[-300:]}")
    raise LabError(f"could not download strongswan_{upver}.orig.tar.* with apt-get source")


def build_plugin(force: bool = False) -> Path:
    """Build (or reuse) the save-keys plugin matching the installed charon."""
    debver = installed_version()
    upver = upstream_version(debver)
    out_dir = BUILD_DIR / "save-keys" / debver
    so = out_dir / PLUGIN_NAME
    if so.exists() and not force:
        return so
    if not shutil.which("gcc") or not shutil.which("make"):
        raise LabError("gcc/make missing (apt-get install gcc make libc6-dev)")
    tarball = fetch_source(upver, debver, BUILD_DIR / "src")
    tree = BUILD_DIR / "src" / f"strongswan-{upver}"
    if not (tree / "configure").exists():
        log(f"unpacking {tarball.name}")
        with tarfile.open(tarball) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(BUILD_DIR / "src", filter="data")
            else:  # Python without the extraction filters (older 3.11 builds)
                tf.extractall(BUILD_DIR / "src")
    if not (tree / "config.h").exists():
        log("configure (only to obtain config.h)")
        run(["./configure", "--disable-defaults", "--enable-charon", "--enable-ikev1",
             "--enable-ikev2", "--enable-save-keys", "--disable-gmp"],
            cwd=tree, timeout=600)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p) for p in (tree / "src/libcharon/plugins/save_keys").glob("*.c"))
    if not sources:
        raise LabError("save_keys plugin sources not found in the strongswan tree")
    log("compiling the save-keys plugin")
    run(["gcc", "-shared", "-fPIC", "-O2", "-DHAVE_CONFIG_H", "-include", str(tree / "config.h"),
         f"-I{tree / 'src/libstrongswan'}", f"-I{tree / 'src/libcharon'}",
         "-o", str(so), *sources], timeout=300)
    (out_dir / "BUILD_INFO").write_text(
        f"strongswan source {tarball.name} for installed strongswan-charon {debver}\n")
    return so


def plugin_or_none() -> tuple[Path | None, str]:
    """Return (path, note); path is None when the plugin cannot be built."""
    if os.environ.get("VPNLAB_NO_SAVE_KEYS") == "1":
        return None, "save-keys disabled by VPNLAB_NO_SAVE_KEYS=1"
    try:
        return build_plugin(), "save-keys plugin"
    except Exception as exc:  # fall back to log-derived keys
        log(f"save-keys plugin unavailable ({exc}); using log-derived keys")
        return None, f"save-keys plugin unavailable: {str(exc).splitlines()[0]}"


# ---------------------------------------------------------------------- fix-ups

def fix_esp_sa(path: Path, icv_octets: int = 16) -> list[str]:
    """Rewrite ESP lines that Wireshark 4.0 rejects; keep the original as esp_sa.orig.

    Quirks of the 5.9.8 plugin's names (Wireshark matches UAT values exactly):
    * AEAD SAs are written as ``"AES-GCM [RFC4106]"`` + ``"ANY 128 bit authentication [no
      checking]"``; Wireshark 4.0 needs ``"AES-GCM with 16 octet ICV [RFC4106]"`` + ``"NULL"``
      (the lab only uses 16-octet ICVs);
    * 3DES is written as ``"TripleDes-CBC [RFC2451]"``; Wireshark's value is
      ``"TripleDES-CBC [RFC2451]"``.
    Returns the list of fixes applied.
    """
    if not path.exists():
        return []
    text = path.read_text()
    fixes: list[str] = []
    out = []
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) == 8 and fields[4] == '"AES-GCM [RFC4106]"':
            fields[4] = f'"AES-GCM with {icv_octets} octet ICV [RFC4106]"'
            fields[6] = '"NULL"'
            fields[7] = '""'
            fixes.append("AES-GCM name/ICV")
        if len(fields) == 8 and fields[4] == '"TripleDes-CBC [RFC2451]"':
            fields[4] = '"TripleDES-CBC [RFC2451]"'
            fixes.append("TripleDES name")
        out.append(",".join(fields))
    if fixes:
        shutil.copy(path, path.with_name("esp_sa.orig"))
        path.write_text("\n".join(out) + "\n")
    return sorted(set(fixes))


# ------------------------------------------------------------- log-derived keys

# IKEv2 / ESP algorithm names: strongSwan proposal token -> Wireshark UAT value string
_IKEV2_ENCR = {
    ("AES_CBC", 128): "AES-CBC-128 [RFC3602]", ("AES_CBC", 192): "AES-CBC-192 [RFC3602]",
    ("AES_CBC", 256): "AES-CBC-256 [RFC3602]", ("3DES_CBC", 0): "3DES [RFC2451]",
    ("AES_CTR", 128): "AES-CTR-128 [RFC5930]", ("AES_CTR", 192): "AES-CTR-192 [RFC5930]",
    ("AES_CTR", 256): "AES-CTR-256 [RFC5930]",
    ("AES_GCM_16", 128): "AES-GCM-128 with 16 octet ICV [RFC5282]",
    ("AES_GCM_16", 192): "AES-GCM-192 with 16 octet ICV [RFC5282]",
    ("AES_GCM_16", 256): "AES-GCM-256 with 16 octet ICV [RFC5282]",
    ("AES_CCM_16", 128): "AES-CCM-128 with 16 octet ICV [RFC5282]",
    ("AES_CCM_16", 192): "AES-CCM-192 with 16 octet ICV [RFC5282]",
    ("AES_CCM_16", 256): "AES-CCM-256 with 16 octet ICV [RFC5282]",
    # not in Wireshark 4.0's list; pcapvpn reads it (the save-keys plugin writes no line)
    ("CHACHA20_POLY1305", 0): "CHACHA20-POLY1305 [RFC7634]",
    ("CHACHA20_POLY1305", 256): "CHACHA20-POLY1305 [RFC7634]",
}
# AEAD ciphers: no separate integrity key; the logged key includes the salt (RFC 5282 /
# RFC 4106: 4 bytes for GCM, RFC 4309: 3 for CCM, RFC 7634: 4 for ChaCha20-Poly1305)
_AEAD = ("AES_GCM_16", "AES_CCM_16", "CHACHA20_POLY1305")
_IKEV2_INTEG = {
    "HMAC_SHA1_96": "HMAC_SHA1_96 [RFC2404]", "HMAC_MD5_96": "HMAC_MD5_96 [RFC2403]",
    "HMAC_SHA2_256_128": "HMAC_SHA2_256_128 [RFC4868]",
    "HMAC_SHA2_384_192": "HMAC_SHA2_384_192 [RFC4868]",
    "HMAC_SHA2_512_256": "HMAC_SHA2_512_256 [RFC4868]", None: "NONE [RFC4306]",
}
_ESP_ENCR = {"AES_CBC": "AES-CBC [RFC3602]", "3DES_CBC": "TripleDES-CBC [RFC2451]",
             "AES_CTR": "AES-CTR [RFC3686]", "AES_GCM_16": "AES-GCM with 16 octet ICV [RFC4106]",
             # the next two are not in Wireshark 4.0's ESP list; pcapvpn reads them
             "AES_CCM_16": "AES-CCM with 16 octet ICV [RFC4309]",
             "CHACHA20_POLY1305": "CHACHA20-POLY1305 [RFC7634]"}
_ESP_INTEG = {"HMAC_SHA1_96": "HMAC-SHA-1-96 [RFC2404]", "HMAC_MD5_96": "HMAC-MD5-96 [RFC2403]",
              "HMAC_SHA2_256_128": "HMAC-SHA-256-128 [RFC4868]",
              "HMAC_SHA2_384_192": "HMAC-SHA-384-192 [RFC4868]",
              "HMAC_SHA2_512_256": "HMAC-SHA-512-256 [RFC4868]", None: "NULL"}

_TAG = re.compile(r"<(?:[^|>]*\|)?(\d+)>")
_DUMP = re.compile(r"^\S+ \S+ \d+\[\w+\] (?:<[^>]*> )?\s*\d+: ((?:[0-9A-F]{2} ){1,16})")
_MGR = re.compile(r"check(?:in|out) IKEv([12]) SA \S+\[(\d+)\] with SPIs ([0-9a-f]{16})_i "
                  r"([0-9a-f]{16})_r")


def _hexdump_after(lines: list[str], i: int, nbytes: int) -> str:
    """Collect ``nbytes`` of hex from the chunk dump lines following line ``i``."""
    out = ""
    j = i + 1
    while j < len(lines) and len(out) < 2 * nbytes:
        m = _DUMP.match(lines[j])
        if not m:
            break
        out += m.group(1).replace(" ", "")
        j += 1
    return out[: 2 * nbytes].lower()


def _parse_alg(proposal: str) -> tuple[str, int, str | None]:
    """'AES_CBC_128/HMAC_SHA2_256_128/...' -> ('AES_CBC', 128, 'HMAC_SHA2_256_128')."""
    parts = proposal.split("/")
    m = re.match(r"(AES_GCM_16|AES_CCM_16|CHACHA20_POLY1305|AES_CBC|AES_CTR|3DES_CBC)"
                 r"(?:_(\d+))?$", parts[0])
    name, klen = (m.group(1), int(m.group(2) or 0)) if m else (parts[0], 0)
    integ = next((p for p in parts[1:] if p.startswith("HMAC_")), None)
    return name, klen, integ


def keys_from_log(logfile: Path, outdir: Path, initiator: bool) -> dict:
    """Derive the three Wireshark tables from a charon debug log.

    Needs the fallback log levels (``ike = 4``, ``chd = 4``, ``mgr = 2``, ``cfg = 2``).
    IKE SPIs come from the manager's check-in lines (``<name|N>`` tags), algorithms from
    ``selected proposal``, keys from the hex dumps of ``Sk_e*``/``Sk_a*`` (IKEv2),
    ``encryption key Ka`` (IKEv1) and ``encryption/integrity initiator/responder key``
    (CHILD SAs, paired with the ``adding inbound/outbound ESP SA`` lines).  ``initiator``
    says whether this peer initiated the CHILD SAs (the lab's left side always does).
    Returns counters of what was written.
    """
    lines = logfile.read_text(errors="replace").splitlines()
    spis: dict[int, tuple[str, str, str]] = {}      # ike id -> (version, spii, spir)
    ike_prop: dict[int, str] = {}
    ike_keys: dict[int, dict[str, str]] = {}
    ike1_ka: dict[int, str] = {}
    esp: list[str] = []
    child_prop = None
    ck: dict[str, str] = {}
    pending_sa: dict[str, tuple[str, str, str]] = {}
    for i, line in enumerate(lines):
        tag = _TAG.search(line)
        sa = int(tag.group(1)) if tag else 0
        m = _MGR.search(line)
        if m and m.group(4) != "0" * 16:
            spis[int(m.group(2))] = (m.group(1), m.group(3), m.group(4))
            continue
        m = re.search(r"selected proposal: (IKE|ESP):(\S+)", line)
        if m:
            if m.group(1) == "IKE":
                ike_prop.setdefault(sa, m.group(2))
                if "Sk_er" in ike_keys.get(sa, {}):
                    # a rekeyed IKE SA's proposal logged in the old SA's context
                    ike_prop[max(ike_prop) + 1 if ike_prop else sa] = m.group(2)
            else:
                child_prop = m.group(2)
            continue
        m = re.search(r"(Sk_ei|Sk_er|Sk_ai|Sk_ar) secret => (\d+) bytes", line)
        if m:
            target = sa
            # keys of a new IKE SA (IKE rekey) are derived in the old SA's context
            while m.group(1) in ike_keys.get(target, {}):
                target += 1
            ike_keys.setdefault(target, {})[m.group(1)] = _hexdump_after(lines, i,
                                                                          int(m.group(2)))
            continue
        m = re.search(r"encryption key Ka => (\d+) bytes", line)
        if m:
            ike1_ka.setdefault(sa, _hexdump_after(lines, i, int(m.group(1))))
            continue
        m = re.search(r"(encryption|integrity) (initiator|responder) key => (\d+) bytes", line)
        if m:
            ck[f"{m.group(1)}_{m.group(2)}"] = _hexdump_after(lines, i, int(m.group(3)))
            continue
        m = re.search(r"adding (inbound|outbound) ESP SA", line)
        if m and i + 1 < len(lines):
            m2 = re.search(r"SPI 0x([0-9a-f]{8}), src (\S+) dst (\S+)", lines[i + 1])
            if m2 and child_prop and "encryption_initiator" in ck:
                name, _klen, integ = _parse_alg(child_prop)
                gcm = name in _AEAD  # AEAD
                enc = _ESP_ENCR.get(name)
                iname = _ESP_INTEG.get(None if gcm else integ)
                # outbound uses the initiator's keys when we initiated the CHILD SA
                mine = "initiator" if initiator else "responder"
                other = "responder" if initiator else "initiator"
                who = mine if m.group(1) == "outbound" else other
                if enc and iname:
                    esp.append(f'"IPv4","{m2.group(2)}","{m2.group(3)}","0x{m2.group(1)}",'
                               f'"{enc}","0x{ck[f"encryption_{who}"]}","{iname}",'
                               f'"{("0x" + ck[f"integrity_{who}"]) if not gcm else ""}"')
                pending_sa[m.group(1)] = (m2.group(1), m2.group(2), m2.group(3))
                if len(pending_sa) == 2:
                    pending_sa.clear()
                    ck.clear()
    ike2: list[str] = []
    for sa, keys in sorted(ike_keys.items()):
        if sa not in spis or sa not in ike_prop:
            continue
        name, klen, integ = _parse_alg(ike_prop[sa])
        gcm = name in _AEAD  # AEAD
        if not {"Sk_ei", "Sk_er"} <= set(keys) or (not gcm and len(keys) < 4):
            continue
        encr_name = _IKEV2_ENCR.get((name, klen))
        if not encr_name:
            continue
        ike2.append(",".join([spis[sa][1], spis[sa][2], keys["Sk_ei"], keys["Sk_er"],
                              f'"{encr_name}"', "" if gcm else keys["Sk_ai"],
                              "" if gcm else keys["Sk_ar"],
                              f'"{_IKEV2_INTEG[None if gcm else integ]}"']))
    ike1 = [f"{spis[sa][1]},{ka}" for sa, ka in sorted(ike1_ka.items()) if sa in spis]
    outdir.mkdir(parents=True, exist_ok=True)
    for name, rows in (("ikev2_decryption_table", ike2), ("ikev1_decryption_table", ike1),
                       ("esp_sa", esp)):
        (outdir / name).write_text("".join(r + "\n" for r in rows))
    return {"ikev2": len(ike2), "ikev1": len(ike1), "esp": len(esp)}
