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
            tf.extractall(BUILD_DIR / "src", filter="data")
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

def fix_esp_sa(path: Path, icv_octets: int = 16) -> bool:
    """Rewrite AEAD ESP lines that Wireshark 4.0 rejects; keep the original as esp_sa.orig.

    The plugin writes ``"AES-GCM [RFC4106]"`` + ``"ANY 128 bit authentication [no checking]"``;
    Wireshark 4.0 needs ``"AES-GCM with 16 octet ICV [RFC4106]"`` + ``"NULL"``.
    """
    if not path.exists():
        return False
    text = path.read_text()
    if "AES-GCM [RFC4106]" not in text:
        return False
    shutil.copy(path, path.with_name("esp_sa.orig"))
    out = []
    for line in text.splitlines():
        if '"AES-GCM [RFC4106]"' in line:
            fields = line.split(",")
            fields[4] = f'"AES-GCM with {icv_octets} octet ICV [RFC4106]"'
            fields[6] = '"NULL"'
            fields[7] = '""'
            line = ",".join(fields)
        out.append(line)
    path.write_text("\n".join(out) + "\n")
    return True


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
}
_IKEV2_INTEG = {
    "HMAC_SHA1_96": "HMAC_SHA1_96 [RFC2404]", "HMAC_MD5_96": "HMAC_MD5_96 [RFC2403]",
    "HMAC_SHA2_256_128": "HMAC_SHA2_256_128 [RFC4868]",
    "HMAC_SHA2_384_192": "HMAC_SHA2_384_192 [RFC4868]",
    "HMAC_SHA2_512_256": "HMAC_SHA2_512_256 [RFC4868]", None: "NONE [RFC4306]",
}
_ESP_ENCR = {"AES_CBC": "AES-CBC [RFC3602]", "3DES_CBC": "TripleDES-CBC [RFC2451]",
             "AES_CTR": "AES-CTR [RFC3686]", "AES_GCM_16": "AES-GCM with 16 octet ICV [RFC4106]"}
_ESP_INTEG = {"HMAC_SHA1_96": "HMAC-SHA-1-96 [RFC2404]", "HMAC_MD5_96": "HMAC-MD5-96 [RFC2403]",
              "HMAC_SHA2_256_128": "HMAC-SHA-256-128 [RFC4868]",
              "HMAC_SHA2_384_192": "HMAC-SHA-384-192 [RFC4868]",
              "HMAC_SHA2_512_256": "HMAC-SHA-512-256 [RFC4868]", None: "NULL"}

_HEXLINE = re.compile(r"^\s*[0-9a-f]{4}: ((?:[0-9A-F]{2} ){1,16})", re.M)


def _hexdump_after(lines: list[str], i: int, nbytes: int) -> str:
    """Collect ``nbytes`` of hex from the chunk dump lines following line ``i``."""
    out = ""
    j = i + 1
    while j < len(lines) and len(out) < 2 * nbytes:
        m = re.search(r"\b[0-9]{4}: ((?:[0-9A-F]{2} ?){1,16})", lines[j])
        if not m:
            break
        out += m.group(1).replace(" ", "")
        j += 1
    return out[: 2 * nbytes].lower()


def _parse_alg(proposal: str) -> tuple[str, int, str | None]:
    parts = proposal.split("/")
    encr = parts[0]
    m = re.match(r"([A-Z0-9_]+?)(?:_(\d+))?$", encr)
    name, klen = (m.group(1), int(m.group(2) or 0)) if m else (encr, 0)
    if name == "3DES_CBC":
        klen = 0
    integ = next((p for p in parts[1:] if p.startswith("HMAC_")), None)
    return name, klen, integ


def keys_from_log(logfile: Path, outdir: Path, spis: dict | None = None) -> dict:
    """Derive the three Wireshark tables from a charon debug log.

    Expects the log levels set by :func:`strongswan.log_levels_for_keys`.  ``spis`` may
    supply IKE SPIs ({ike_sa_unique_id: (spii, spir)}) when the log lacks them.
    Returns counters of what was written.
    """
    text = logfile.read_text(errors="replace")
    lines = text.splitlines()
    ike2: list[str] = []
    ike1: list[str] = []
    esp: list[str] = []
    ike_prop = None
    secrets: dict[str, str] = {}
    cur_spis = None
    for i, line in enumerate(lines):
        m = re.search(r"selected proposal: IKE:(\S+)", line)
        if m:
            ike_prop = m.group(1)
        m = re.search(r"IKE_SA \S+ established .*?|", line)
        m = re.search(r"ike_sa_id ([0-9a-f]{16})_i\S* ([0-9a-f]{16})_r", line)
        if m:
            cur_spis = (m.group(1), m.group(2))
        m = re.search(r"(Sk_ei|Sk_er|Sk_ai|Sk_ar|Sk_e|Sk_a) secret => (\d+) bytes", line)
        if m:
            secrets[m.group(1)] = _hexdump_after(lines, i, int(m.group(2)))
            if all(k in secrets for k in ("Sk_ei", "Sk_er", "Sk_ai", "Sk_ar")) and cur_spis \
                    and ike_prop:
                name, klen, integ = _parse_alg(ike_prop)
                encr_name = _IKEV2_ENCR.get((name, klen))
                if encr_name:
                    if name.startswith("AES_GCM"):
                        integ = None
                    ike2.append(",".join([cur_spis[0], cur_spis[1], secrets["Sk_ei"],
                                          secrets["Sk_er"], f'"{encr_name}"',
                                          secrets["Sk_ai"] if integ else "",
                                          secrets["Sk_ar"] if integ else "",
                                          f'"{_IKEV2_INTEG.get(integ, "NONE [RFC4306]")}"']))
                secrets.clear()
        m = re.search(r"encryption key Ka => (\d+) bytes", line)
        if m and cur_spis:
            ike1.append(f"{cur_spis[0]},{_hexdump_after(lines, i, int(m.group(1)))}")
    # CHILD_SA keys: "... CHILD_SA ... {1} established with SPIs c1234567_i c7654321_o ..."
    # The child key hexdumps ("encryption initiator key", ...) precede the establishment line.
    pending: dict[str, str] = {}
    child_prop = None
    for i, line in enumerate(lines):
        m = re.search(r"selected proposal: ESP:(\S+)", line)
        if m:
            child_prop = m.group(1)
        m = re.search(r"(encryption|integrity) (initiator|responder) key => (\d+) bytes", line)
        if m:
            pending[f"{m.group(1)}_{m.group(2)}"] = _hexdump_after(lines, i, int(m.group(3)))
        m = re.search(r"CHILD_SA \S+ established with SPIs ([0-9a-f]{8})_i ([0-9a-f]{8})_o "
                      r"and TS (\S+) === (\S+)", line)
        if m and child_prop and "encryption_initiator" in pending:
            spi_in, spi_out = m.group(1), m.group(2)
            name, _klen, integ = _parse_alg(child_prop)
            addrs = re.findall(r"between (\S+?)\[.*?\]\.\.\.(\S+?)\[", text[: text.find(line)])
            if not addrs:
                continue
            local, remote = addrs[-1]
            local = local.split("[")[0]
            remote = remote.split("[")[0]
            enc = _ESP_ENCR.get(name)
            integ_name = _ESP_INTEG.get(None if name.startswith("AES_GCM") else integ)
            if not enc:
                continue
            initiator = "initiator" in line or True
            del initiator
            # which direction is "initiator" depends on the role; record both with SPIs
            role_i = pending.get("role") != "responder"
            out_key = "initiator" if role_i else "responder"
            in_key = "responder" if role_i else "initiator"
            esp.append(f'"IPv4","{local}","{remote}","0x{spi_out}","{enc}",'
                       f'"0x{pending[f"encryption_{out_key}"]}","{integ_name}",'
                       f'"0x{pending.get(f"integrity_{out_key}", "")}"')
            esp.append(f'"IPv4","{remote}","{local}","0x{spi_in}","{enc}",'
                       f'"0x{pending[f"encryption_{in_key}"]}","{integ_name}",'
                       f'"0x{pending.get(f"integrity_{in_key}", "")}"')
            pending.clear()
    outdir.mkdir(parents=True, exist_ok=True)
    for name, rows in (("ikev2_decryption_table", ike2), ("ikev1_decryption_table", ike1),
                       ("esp_sa", esp)):
        (outdir / name).write_text("".join(r + "\n" for r in rows))
    return {"ikev2": len(ike2), "ikev1": len(ike1), "esp": len(esp)}
