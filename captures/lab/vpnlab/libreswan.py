"""libreswan's pluto in the lab: one per namespace, from Debian's .deb unpacked with dpkg-deb.

Debian 12's ``libreswan`` package conflicts with strongSwan's (``Provides/Conflicts:
ike-server``), so it is not installed: :func:`ensure` fetches the .deb with ``apt-get
download`` into ``captures/lab/.build/libreswan/`` (git-ignored) and unpacks it with
``dpkg-deb -x``; its shared-library dependencies are ordinary packages (``packages.txt``).

pluto insists on ``/usr/libexec/ipsec/addconn`` (a compiled-in path), so each pluto runs in
its own mount namespace: ``unshare -m --propagation private``, a tmpfs on ``/run`` and a
read-only overlay of the unpacked ``usr/libexec`` over ``/usr/libexec``.  ``--rundir`` lies
on the host file system so that ``whack --ctlsocket`` / ``addconn --ctlsocket`` reach it.

There is no kernel ESP on these machines (no XFRM): pluto negotiates IKE but every child SA
fails to install, so the lab uses libreswan for IKE-level behaviour and childless IKE SAs.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from . import LAB_DIR
from .daemon import Daemon
from .net import Topology
from .proc import LabError, ProcTable, log, run, wait_for

BUILD = LAB_DIR / ".build" / "libreswan"
PACKAGE = "libreswan"


def _installed_candidate() -> str:
    cp = run(["apt-cache", "policy", PACKAGE], check=False)
    for line in cp.stdout.splitlines():
        if line.strip().startswith("Candidate:"):
            return line.split(":", 1)[1].strip()
    return ""


def ensure() -> Path:
    """The root of the unpacked libreswan package (fetched and unpacked on first use)."""
    roots = sorted(p for p in BUILD.glob("*/root") if (p / "usr/libexec/ipsec/pluto").exists())
    if roots:
        return roots[-1]
    version = _installed_candidate()
    if not version or version == "(none)":
        raise LabError("apt knows no libreswan package (run apt-get update)")
    vdir = BUILD / version.replace(":", "_")
    vdir.mkdir(parents=True, exist_ok=True)
    log(f"libreswan: apt-get download {PACKAGE}={version}")
    run(["apt-get", "download", f"{PACKAGE}={version}"], cwd=vdir, timeout=300)
    debs = sorted(vdir.glob("libreswan_*.deb"))
    if not debs:
        raise LabError(f"apt-get download left no libreswan .deb in {vdir}")
    root = vdir / "root"
    run(["dpkg-deb", "-x", str(debs[-1]), str(root)])
    missing = missing_libraries(root)
    if missing:
        raise LabError("libreswan's libraries are missing (packages.txt): " + ", ".join(missing))
    return root


def missing_libraries(root: Path) -> list[str]:
    out: list[str] = []
    for prog in ("pluto", "whack", "addconn"):
        cp = run(["ldd", str(root / "usr/libexec/ipsec" / prog)], check=False)
        out += [line.split()[0] for line in cp.stdout.splitlines() if "not found" in line]
    return sorted(set(out))


def render(setup: dict, conns: dict[str, dict]) -> str:
    """ipsec.conf text: a ``config setup`` section and one ``conn`` per entry."""
    lines = ["# pcapvpn lab: libreswan ipsec.conf", "config setup"]
    lines += [f"\t{k}={v}" for k, v in setup.items() if v is not None]
    for name, c in conns.items():
        lines += ["", f"conn {name}"]
        lines += [f"\t{k}={v}" for k, v in c.items() if v is not None]
    return "\n".join(lines) + "\n"


class Pluto(Daemon):
    """A pluto instance in namespace ``ns`` with all its files under ``workdir/side``."""

    logname = "pluto.log"

    def __init__(self, topo: Topology, procs: ProcTable, side: str, ns: str, workdir: Path, *,
                 root: Path, conns: dict[str, dict], secrets: str, setup: dict | None = None,
                 impair: tuple[str, ...] = ()):
        super().__init__(topo, procs, side, ns, workdir)
        self.root = root
        self.rundir = self.dir / "run"
        self.nss = self.dir / "nss"
        self.conf = self.dir / "ipsec.conf"
        self.secrets = self.dir / "ipsec.secrets"
        self.ctl = self.rundir / "pluto.ctl"
        self.impair = impair
        for d in (self.rundir, self.nss, self.dir / "ipsec.d"):
            d.mkdir(parents=True, exist_ok=True)
        base = {"logfile": str(self.logfile), "logtime": "yes", "logappend": "yes",
                "plutodebug": "none", "dnssec-enable": "no", "uniqueids": "yes"}
        base.update(setup or {})
        self.setup = base
        self.conns = conns
        self.conf.write_text(render(base, conns))
        self.secrets.write_text(secrets)
        self.secrets.chmod(0o600)

    def _bin(self, prog: str) -> str:
        return str(self.root / "usr/libexec/ipsec" / prog)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if not (self.nss / "cert9.db").exists():
            run(["certutil", "-N", "-d", f"sql:{self.nss}", "--empty-password"])
        if self.ctl.exists():
            self.ctl.unlink()
        libexec = self.root / "usr/libexec"
        pluto = [self._bin("pluto"), "--nofork", "--config", str(self.conf),
                 "--rundir", str(self.rundir), "--nssdir", str(self.nss),
                 "--secretsfile", str(self.secrets), "--ipsecdir", str(self.dir / "ipsec.d")]
        inner = ("mount -t tmpfs vpnlab-run /run && mount -t overlay vpnlab-libexec -o "
                 f"lowerdir={shlex.quote(str(libexec))}:/usr/libexec /usr/libexec && exec "
                 + shlex.join(pluto))
        cmd = self.topo.ns_cmd(self.ns, "unshare", "-m", "--propagation", "private",
                               "sh", "-c", inner)
        self.proc = self.procs.start(f"pluto-{self.side}", cmd, logfile=self.dir / "pluto.out")
        wait_for(lambda: self.ctl.exists() or not self.proc.alive(), 15,
                 what=f"pluto-{self.side} control socket")
        if not self.proc.alive():
            raise LabError(f"pluto-{self.side} exited: "
                           + (self.dir / "pluto.out").read_text(errors="replace")[-1000:])
        time.sleep(0.3)
        for imp in self.impair:
            self.whack("--impair", imp)

    def load(self) -> None:
        run(self.topo.ns_cmd(self.ns, self._bin("addconn"), "--ctlsocket", str(self.ctl),
                             "--config", str(self.conf), "--autoall"), timeout=30)
        self.whack("--listen")
        self.whack("--rereadsecrets")

    # ------------------------------------------------------------------ control
    def whack(self, *args: str, check: bool = True, timeout: float = 30):
        return run(self.topo.ns_cmd(self.ns, self._bin("whack"), "--ctlsocket", str(self.ctl),
                                    *args), check=check, timeout=timeout)

    def initiate(self, name: str, until: str | None = None, timeout: float = 30) -> bool:
        """Start ``name`` (``whack --initiate --asynchronous``); with ``until``, wait up to
        ``timeout`` s for that text in pluto's log and return whether it appeared."""
        self.whack("--initiate", "--asynchronous", "--name", name)
        return self.wait_log(until, timeout) if until else True

    def status(self) -> str:
        """``ipsec status`` and ``ipsec trafficstatus`` (whack --status / --trafficstatus)."""
        parts = []
        for what in ("--status", "--trafficstatus"):
            cp = self.whack(what, check=False, timeout=15)
            parts.append(f"$ ipsec {what[2:]}   (whack {what})\n{cp.stdout}{cp.stderr}")
        return "\n".join(parts)
