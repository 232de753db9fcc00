"""Lab PKI made with strongSwan's ``pki`` tool, cached under .build/pki."""

from __future__ import annotations

from pathlib import Path

from . import BUILD_DIR
from .proc import log, run

DN = "C=ZZ, O=pcapvpn lab"

# name: (key type, size, issuer, CN/SAN, flags)
_CERTS = {
    "left": ("rsa", 2048, "ca", "left.lab.example", ["clientAuth", "serverAuth"]),
    "right": ("rsa", 2048, "ca", "right.lab.example", ["serverAuth", "clientAuth"]),
    "left-big": ("rsa", 4096, "ca", "left-big.lab.example", ["clientAuth", "serverAuth"]),
    "right-big": ("rsa", 4096, "ca", "right-big.lab.example", ["serverAuth", "clientAuth"]),
    "left-rogue": ("rsa", 2048, "rogue-ca", "left.lab.example", ["clientAuth", "serverAuth"]),
    "ovpn-server": ("ecdsa", 256, "ca", "vpn.lab.example", ["serverAuth"]),
    "ovpn-client": ("ecdsa", 256, "ca", "client1.lab.example", ["clientAuth"]),
    "ovpn-rogue": ("ecdsa", 256, "rogue-ca", "client1.lab.example", ["clientAuth"]),
}
_CAS = {"ca": ("rsa", 3072, "pcapvpn lab CA"), "rogue-ca": ("ecdsa", 384, "rogue lab CA")}


def _pki(*args: str, out: Path, stdin: str | None = None) -> None:
    cp = run(["pki", *args], input=stdin, timeout=120)
    out.write_text(cp.stdout)


def ensure(pki_dir: Path | None = None) -> Path:
    """Create the CAs, certificates and keys if missing; return the directory.

    Files: ``<name>.key`` / ``<name>.crt`` (PEM) for every CA and end entity.
    """
    d = pki_dir or BUILD_DIR / "pki"
    d.mkdir(parents=True, exist_ok=True)
    if all((d / f"{n}.crt").exists() for n in [*_CAS, *_CERTS]):
        return d
    log(f"generating lab PKI in {d}")
    for name, (ktype, size, cn) in _CAS.items():
        _pki("--gen", "--type", ktype, "--size", str(size), "--outform", "pem",
             out=d / f"{name}.key")
        _pki("--self", "--ca", "--lifetime", "3650", "--in", str(d / f"{name}.key"),
             "--type", ktype, "--dn", f"{DN}, CN={cn}", "--outform", "pem",
             out=d / f"{name}.crt")
    for name, (ktype, size, issuer, cn, flags) in _CERTS.items():
        _pki("--gen", "--type", ktype, "--size", str(size), "--outform", "pem",
             out=d / f"{name}.key")
        pub = run(["pki", "--pub", "--in", str(d / f"{name}.key"), "--type", ktype,
                   "--outform", "pem"]).stdout
        args = ["--issue", "--lifetime", "1825", "--cacert", str(d / f"{issuer}.crt"),
                "--cakey", str(d / f"{issuer}.key"), "--type", "pub",
                "--dn", f"{DN}, CN={cn}", "--san", cn, "--outform", "pem"]
        for f in flags:
            args += ["--flag", f]
        _pki(*args, out=d / f"{name}.crt", stdin=pub)
    return d
