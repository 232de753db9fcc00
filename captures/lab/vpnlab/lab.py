"""Scenario execution: topology up, daemons, capture, traffic, teardown, artefacts."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import savekeys
from .net import LEFT_HOST, RIGHT_HOST, Topology
from .libreswan import Pluto
from .proc import LabError, Proc, ProcTable, log
from .strongswan import Charon


@dataclass
class Scenario:
    name: str
    title: str
    protocol: str                      # ikev2 | ikev1 | openvpn | wireguard
    configured: str                    # README: algorithms, auth, timers
    fault: str                         # README: injected fault ("none")
    shows: str                         # README: what the capture shows (prose)
    body: Callable[["Ctx"], None]
    capture: str = "m-r"               # router interface recorded
    inside: bool = False               # also record m-l as <name>-inside.pcap
    # several vantage points of the same traffic (issue 16): (name, interface, namespace
    # "left" | "mid" | "right"), each recorded as <name>-<point>.pcap at the same time, in
    # path order from the initiator; expected.json "vantage" lists them with the expected
    # losses and locations
    points: tuple = ()
    vantage: dict = field(default_factory=dict)
    nat: bool = False
    mtu: int = 1500
    timeout: int = 120
    fast: bool = False                 # part of the CI live subset
    keyless: list[dict] = field(default_factory=list)    # expected findings without keys
    with_keys: list[dict] = field(default_factory=list)  # expected findings with keys
    forbidden: list[str] = field(default_factory=list)
    facts: list[dict] = field(default_factory=list)
    notes: str = ""
    decode_as: list[str] = field(default_factory=list)  # tshark -d for non-default ports
    # keys from charon's log even when the save-keys plugin is available (5.9.8's plugin
    # writes no line for ChaCha20-Poly1305 or AES-CCM)
    log_keys: bool = False
    # expected verdict per tunnel (the truth, from the daemons' logs and the design), per
    # capture file ("main" = the main capture): [{"tunnel", "verdict", "primary", "why"}];
    # ``verdicts_with_keys`` only where decrypting changes it
    verdicts: dict[str, list[dict]] = field(default_factory=dict)
    verdicts_with_keys: dict[str, list[dict]] = field(default_factory=dict)
    # how the daemons are stopped: "initiator" (swanctl --terminate on the initiator, then
    # SIGTERM), "both" (SIGTERM to both daemons at the same moment: both send DELETEs)
    teardown: str = "initiator"
    implementations: tuple[str, ...] = ("strongswan",)   # README / generated versions
    # what pcapvpn said of the capture when the scenario was added, where it disagrees with
    # the expected verdicts (README "pcapvpn today"; the lead's work list, not a test)
    pcapvpn_today: str = ""
    # further captures the body records itself (client and gateway-LAN views, issue 15):
    # [{"file", "interface", "view"}]; they share the main capture's keys; verdicts for them
    # are looked up by their ``interface`` label, then under "all"
    views: list[dict] = field(default_factory=list)


class Ctx:
    """What a scenario body works with."""

    def __init__(self, sc: Scenario, workdir: Path, savekeys_so: Path | None, pki_dir: Path):
        self.sc = sc
        self.work = workdir
        self.procs = ProcTable()
        self.topo = Topology(prefix=f"vl{os.getpid() % 100000}", procs=self.procs, nat=sc.nat,
                             mtu=sc.mtu)
        self.savekeys_so = savekeys_so
        self.pki = pki_dir
        self.left: Charon | None = None
        self.right: Charon | None = None
        self.plutos: dict[str, Pluto] = {}
        self.libreswan_root: Path | None = None
        self.status: dict[str, str] = {}    # side -> gateway status text at the end
        self.ovpn: dict[str, Proc] = {}
        self.ovpn_dirs: dict[str, Path] = {}
        self.captures: list[tuple[str, Proc, Path]] = []
        self.events: list[str] = []
        self.t0 = time.monotonic()

    # ---------------------------------------------------------------- helpers
    def note(self, msg: str) -> None:
        self.events.append(f"{time.monotonic() - self.t0:6.1f}s {msg}")

    def sleep(self, sec: float) -> None:
        time.sleep(sec)

    def ping(self, count: int = 3, interval: float = 0.2, size: int = 56, wait: float = 1,
             ns: str | None = None, src: str | None = LEFT_HOST, dst: str = RIGHT_HOST,
             check: bool = False):
        ns = ns or self.topo.left
        srcarg = ["-I", src] if src else []
        cp = self.topo.sh(ns, "ping", "-n", "-q", "-c", str(count), "-i", str(interval),
                          "-W", str(wait), "-s", str(size), *srcarg, dst, check=False,
                          timeout=count * interval + wait + 15)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", cp.stdout)
        res = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        self.note(f"ping {src}->{dst}: {res[0]} sent, {res[1]} received")
        if check and res[1] == 0:
            raise LabError(f"no ping reply through the tunnel ({cp.stdout.strip()[-300:]})")
        return res

    def ping_bg(self, count: int, interval: float = 0.5, ns: str | None = None,
                src: str = LEFT_HOST, dst: str = RIGHT_HOST) -> Proc:
        ns = ns or self.topo.left
        return self.procs.start("ping", self.topo.ns_cmd(
            ns, "ping", "-n", "-c", str(count), "-i", str(interval), "-W", "1", "-I", src, dst),
            logfile=self.work / "ping-bg.out")

    def strongswan(self, left: tuple[dict, dict], right: tuple[dict, dict],
                   left_files: dict[str, str] | None = None,
                   right_files: dict[str, str] | None = None) -> tuple[Charon, Charon]:
        """Start charon on both sides: each tuple is (strongswan.conf overrides, swanctl.conf)."""
        self.left = Charon(self.topo, self.procs, "left", self.topo.left, self.work,
                           settings=left[0], swanctl=left[1], savekeys_so=self.savekeys_so,
                           files=left_files)
        self.right = Charon(self.topo, self.procs, "right", self.topo.right, self.work,
                            settings=right[0], swanctl=right[1], savekeys_so=self.savekeys_so,
                            files=right_files)
        self.right.start()
        self.left.start()
        self.right.load()
        self.left.load()
        return self.left, self.right

    def charon(self, side: str, settings: dict, swanctl: dict,
               files: dict[str, str] | None = None) -> Charon:
        """Start and load one charon (the other side may run libreswan)."""
        ch = Charon(self.topo, self.procs, side, getattr(self.topo, side), self.work,
                    settings=settings, swanctl=swanctl, savekeys_so=self.savekeys_so, files=files)
        setattr(self, side, ch)
        ch.start()
        ch.load()
        return ch

    def pluto(self, side: str, conns: dict[str, dict], secrets: str, setup: dict | None = None,
              impair: tuple[str, ...] = ()) -> Pluto:
        """Start and load one libreswan pluto in ``side``'s namespace."""
        from . import libreswan
        if self.libreswan_root is None:
            self.libreswan_root = libreswan.ensure()
        pl = Pluto(self.topo, self.procs, side, getattr(self.topo, side), self.work,
                   root=self.libreswan_root, conns=conns, secrets=secrets, setup=setup,
                   impair=impair)
        self.plutos[side] = pl
        pl.start()
        pl.load()
        return pl

    def charons(self) -> list[Charon]:
        return [ch for ch in (self.left, self.right) if ch is not None]

    def save_status(self) -> None:
        """Gateway status output before the daemons stop (swanctl --list-sas, ipsec
        status/trafficstatus, OpenVPN's status file)."""
        for ch in self.charons():
            if ch.alive():
                cp = ch.swanctl("--list-sas", check=False, timeout=15)
                self.status[ch.side] = f"$ swanctl --list-sas\n{cp.stdout}{cp.stderr}"
            else:
                self.status[ch.side] = "(charon not running at the end of the scenario)\n"
        for side, pl in self.plutos.items():
            self.status[side] = (pl.status() if pl.alive() else
                                 "(pluto not running at the end of the scenario)\n")
        for side, d in self.ovpn_dirs.items():
            f = d / "status.txt"
            if f.exists() and (d / "wg.conf").exists():
                self.status[side] = f.read_text()  # `wg show` (vpnlab.wireguard.save_status)
            elif f.exists():
                self.status[side] = f"OpenVPN status file (status.txt):\n{f.read_text()}"

    def cert_files(self, name: str, cas: tuple[str, ...] = ("ca",)) -> dict[str, str]:
        files = {f"x509/{name}.crt": (self.pki / f"{name}.crt").read_text(),
                 f"private/{name}.key": (self.pki / f"{name}.key").read_text()}
        for ca in cas:
            files[f"x509ca/{ca}.crt"] = (self.pki / f"{ca}.crt").read_text()
        return files

    def start_capture(self) -> None:
        main = self.work / f"{self.sc.name}.pcap"
        self.captures.append((self.sc.capture, self.topo.capture(self.sc.capture, main), main))
        if self.sc.inside:
            other = "m-l" if self.sc.capture == "m-r" else "m-r"
            p = self.work / f"{self.sc.name}-inside.pcap"
            self.captures.append((other, self.topo.capture(other, p), p))
        for point, dev, ns in self.sc.points:
            p = self.work / f"{self.sc.name}-{point}.pcap"
            self.captures.append((dev, self.topo.capture(dev, p, getattr(self.topo, ns)), p))

    def stop_daemons(self) -> None:
        if self.sc.teardown == "both":
            # both gateways go down at the same moment, each sending its DELETEs.  A SIGTERM
            # to both is not enough on its own: the first DELETE reaches the other charon
            # before its own shutdown starts, and it answers.  So each gateway's input of IKE
            # on 4500 (non-ESP marker) is dropped first, inside the peers: both DELETEs cross
            # on the wire and neither is answered, as when two gateways shut down together.
            for ns in (self.topo.left, self.topo.right):
                self.topo.sh(ns, "nft", "-f", "-", input=(
                    "table inet teardown {\n chain input {\n"
                    "  type filter hook input priority 0; policy accept;\n"
                    "  udp dport 4500 @th,64,32 0 drop\n  udp dport 500 drop\n }\n}\n"))
            self.note("teardown: both gateways stop accepting IKE (input drop in each peer)")
            daemons = [d for d in (*self.charons(), *self.plutos.values()) if d.alive()]
            for d in daemons:
                os.kill(d.proc.pid, 15)
            for d in daemons:
                d.stop()
            time.sleep(0.5)
            self.note("daemons stopped (SIGTERM to both at once)")
            return
        for side in ("left", "right"):   # the initiator first: its DELETE is answered
            pl = self.plutos.get(side)
            if pl and pl.alive():
                # delete the connections' states first so that the peer's answer to the
                # DELETE reaches a live pluto (a SIGTERM alone exits before it arrives)
                for name in pl.conns:
                    pl.whack("--delete", "--name", name, check=False, timeout=10)
                time.sleep(0.5)
                pl.stop()
                time.sleep(0.5)
        # close the IKE SAs from the initiator first and wait for the DELETE exchange to
        # complete (a SIGTERM alone lets charon exit before the peer's response arrives,
        # which then draws an ICMP port unreachable), then stop both daemons
        if self.left and self.left.alive() and (self.right is None or self.right.alive()):
            for name in self.left.swanctl_conf.get("connections", {}):
                self.left.swanctl("--terminate", "--ike", name, "--timeout", "4", check=False,
                                  timeout=15)
        for ch in (self.left, self.right):
            if ch and ch.alive():
                ch.stop()
                time.sleep(0.5)
        # OpenVPN: the client first (its exit notification reaches a live server), then the server
        for side in ("left", "right"):
            if side in self.ovpn and self.ovpn[side].alive():
                self.procs.stop(self.ovpn[side])
                time.sleep(1)
        self.note("daemons stopped")


# ------------------------------------------------------------------- artefacts

def _merge_lines(*files: Path) -> str:
    seen: list[str] = []
    for f in files:
        if f.exists():
            for line in f.read_text().splitlines():
                if line.strip() and line not in seen:
                    seen.append(line)
    return "".join(line + "\n" for line in seen)


def _sanitize(text: str, work: Path) -> str:
    return text.replace(str(work), "$LAB")


def collect(ctx: Ctx, out: Path) -> dict:
    """Copy captures, keys, logs and configs from the work dir to ``out``."""
    sc = ctx.sc
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    meta: dict = {"captures": [], "keys_source": None}
    for dev, _proc, path in ctx.captures:
        if path.exists():
            shutil.copy(path, out / path.name)
    # keys
    charons = ctx.charons()
    if charons:
        if ctx.savekeys_so:
            meta["keys_source"] = "save-keys plugin"
        else:
            meta["keys_source"] = "log-derived"
            for ch in charons:
                savekeys.keys_from_log(ch.logfile, ch.keys_dir, initiator=ch.side == "left")
        views = [("keys", "right" if sc.nat else None)]
        if sc.inside:
            views.append(("keys-inside", "left"))
        for dirname, esp_side in views:
            kd = out / dirname
            kd.mkdir()
            for table in ("ikev2_decryption_table", "ikev1_decryption_table"):
                (kd / table).write_text(_merge_lines(*(ch.keys_dir / table for ch in charons)))
            esp_src = ([getattr(ctx, esp_side).keys_dir / "esp_sa"]
                       if esp_side and getattr(ctx, esp_side) is not None else
                       [ch.keys_dir / "esp_sa" for ch in charons])
            (kd / "esp_sa").write_text(_merge_lines(*esp_src))
            fixes = savekeys.fix_esp_sa(kd / "esp_sa")
            if not any((kd / t).read_text().strip() for t in
                       ("ikev2_decryption_table", "ikev1_decryption_table", "esp_sa")):
                shutil.rmtree(kd)  # no SA was ever keyed: nothing to decrypt
                continue
            (kd / "SOURCE").write_text(
                f"{meta['keys_source']}; ESP SA addresses as seen by "
                f"{esp_side or 'both peers (identical without NAT)'}\n"
                + (f"esp_sa rewritten for Wireshark 4.0 ({', '.join(fixes)}); the plugin's "
                   "original is esp_sa.orig\n" if fixes else ""))
        # logs and configs
        for ch in charons:
            if ch.logfile.exists():
                (out / f"{ch.side}.log").write_text(_sanitize(ch.logfile.read_text(errors="replace"), ctx.work))
            cdir = out / "config" / ch.side
            cdir.mkdir(parents=True)
            (cdir / "strongswan.conf").write_text(_sanitize(ch.conf.read_text(), ctx.work))
            shutil.copytree(ch.swanctl_dir, cdir / "swanctl", dirs_exist_ok=True)
    for side, pl in ctx.plutos.items():
        if pl.logfile.exists():
            (out / f"{side}.log").write_text(_sanitize(pl.log_text(), ctx.work))
        cdir = out / "config" / side
        cdir.mkdir(parents=True, exist_ok=True)
        (cdir / "ipsec.conf").write_text(_sanitize(pl.conf.read_text(), ctx.work))
        (cdir / "ipsec.secrets").write_text(pl.secrets.read_text())
        if pl.impair:
            (cdir / "impair.txt").write_text(
                "# whack --impair applied after start\n" + "\n".join(pl.impair) + "\n")
    for side, text in ctx.status.items():
        (out / f"{side}-status.txt").write_text(_sanitize(text, ctx.work))
    for side, d in ctx.ovpn_dirs.items():
        for f in d.iterdir():
            if f.name == "status.txt":
                continue  # saved as <side>-status.txt
            if f.name.endswith(".log"):
                (out / f"{side}.log").write_text(_sanitize(f.read_text(errors="replace"), ctx.work))
            elif f.is_file():
                cdir = out / "config" / side
                cdir.mkdir(parents=True, exist_ok=True)
                (cdir / f.name).write_text(_sanitize(f.read_text(errors="replace"), ctx.work))
    (out / "router.nft").write_text(
        "# router rules added by the scenario (chain: rule)\n"
        + "".join(f"# {r}\n" for r in ctx.topo.rules) + ctx.ruleset_text)
    (out / "events.txt").write_text("\n".join(ctx.events) + "\n")
    return meta


def execute(sc: Scenario, out_root: Path, savekeys_so: Path | None, pki_dir: Path,
            keep_work: bool = False) -> dict:
    """Run one scenario; always tear down.  Returns a result dict."""
    workdir = Path(tempfile.mkdtemp(prefix=f"vpnlab-{sc.name}-"))
    os.chmod(workdir, 0o755)
    ctx = Ctx(sc, workdir, None if sc.log_keys else savekeys_so, pki_dir)
    ctx.ruleset_text = ""
    t0 = time.monotonic()
    result = {"scenario": sc.name, "ok": False, "error": None}
    if sc.log_keys and savekeys_so:
        result["keys_note"] = "the save-keys plugin writes no line for this scenario's algorithms"
    import signal as _signal

    def _alarm(_sig, _frm):
        raise LabError(f"scenario timeout ({sc.timeout}s)")

    old = _signal.signal(_signal.SIGALRM, _alarm)
    _signal.alarm(sc.timeout)
    try:
        ctx.topo.up()
        ctx.note("topology up")
        sc.body(ctx)
        ctx.save_status()
        ctx.stop_daemons()
        time.sleep(0.5)
        ctx.ruleset_text = ctx.topo.ruleset()
        for _dev, proc, _p in ctx.captures:
            ctx.topo.stop_capture(proc)
        _signal.alarm(0)
        meta = collect(ctx, out_root / sc.name)
        result.update(meta)
        result["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - report and clean up
        result["error"] = f"{type(exc).__name__}: {exc}"
        log(f"{sc.name}: FAILED: {result['error']}")
        for ch in (*ctx.charons(), *ctx.plutos.values()):
            if ch.logfile.exists():
                log(f"--- {ch.side} log tail ---\n" + ch.log_text()[-1500:])
        if isinstance(exc, KeyboardInterrupt):
            raise
    finally:
        _signal.alarm(0)
        _signal.signal(_signal.SIGALRM, old)
        ctx.procs.stop_all()
        ctx.topo.down()
        if keep_work:
            log(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result
