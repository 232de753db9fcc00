"""One charon per namespace, each with its own strongswan.conf, swanctl.conf and /run."""

from __future__ import annotations

import copy
import shlex
import time
from pathlib import Path

from .daemon import Daemon
from .net import Topology
from .proc import LabError, Proc, ProcTable, run, wait_for

CHARON = "/usr/lib/ipsec/charon"

PLUGINS = ("random nonce openssl aes sha1 sha2 md5 hmac kdf drbg gcm ctr ccm chapoly curve25519 pem pkcs1 "
           "pkcs8 x509 revocation constraints pubkey kernel-libipsec kernel-netlink "
           "socket-default vici")


def plugin_load(*extra: str, savekeys: bool = False) -> str:
    """charon's ``load`` list: the lab's plugins, ``extra`` ones (xauth-generic, eap-*), and
    save-keys when the keys are saved (a scenario that adds plugins must keep it)."""
    return " ".join((PLUGINS, *extra) + (("save-keys",) if savekeys else ()))


def render(obj: dict, indent: int = 0) -> str:
    """Render a nested dict in strongSwan's settings syntax."""
    pad = "    " * indent
    out = []
    for key, val in obj.items():
        if isinstance(val, dict):
            out.append(f"{pad}{key} {{")
            out.append(render(val, indent + 1))
            out.append(f"{pad}}}")
        elif val is None:
            continue
        else:
            if isinstance(val, bool):
                val = "yes" if val else "no"
            out.append(f"{pad}{key} = {val}")
    return "\n".join(line for line in out if line != "")


def merge(base: dict, over: dict) -> dict:
    """Deep-merge ``over`` into a copy of ``base``; a value None deletes the key."""
    res = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            res.pop(k, None)
        elif isinstance(v, dict) and isinstance(res.get(k), dict):
            res[k] = merge(res[k], v)
        else:
            res[k] = copy.deepcopy(v)
    return res


class Charon(Daemon):
    """A charon instance in namespace ``ns`` with all files under ``workdir``."""

    logname = "charon.log"

    def __init__(self, topo: Topology, procs: ProcTable, side: str, ns: str, workdir: Path, *,
                 settings: dict, swanctl: dict, savekeys_so: Path | None,
                 files: dict[str, str] | None = None):
        super().__init__(topo, procs, side, ns, workdir)
        self.swanctl_dir = self.dir / "swanctl"
        self.keys_dir = self.dir / "keys"
        self.vici = self.dir / "charon.vici"
        self.conf = self.dir / "strongswan.conf"
        self.savekeys_so = savekeys_so
        for d in (self.swanctl_dir, self.keys_dir, self.swanctl_dir / "x509",
                  self.swanctl_dir / "x509ca", self.swanctl_dir / "private"):
            d.mkdir(parents=True, exist_ok=True)
        for rel, content in (files or {}).items():
            (self.swanctl_dir / rel).write_text(content)
        load = plugin_load(savekeys=bool(savekeys_so))
        base = {
            "charon": {
                "load": load,
                "port": 500,
                "port_nat_t": 4500,
                "retransmit_timeout": 2,
                "retransmit_base": 1.5,
                "retransmit_tries": 3,
                "retransmit_jitter": 0,
                "install_virtual_ip": "no",
                "filelog": {
                    "lab": {
                        "path": str(self.logfile),
                        "time_format": "%Y-%m-%d %H:%M:%S",
                        "ike_name": "yes",
                        "append": "yes",
                        "flush_line": "yes",
                        "default": 1,
                        "ike": 2, "cfg": 2, "knl": 1, "net": 1, "enc": 1, "chd": 2,
                        "esp": 1,
                    }
                },
                "plugins": {
                    "vici": {"socket": f"unix://{self.vici}"},
                    "socket-default": {"use_ipv6": "no"},
                    "kernel-netlink": {"port_bypass": "yes"},
                },
            },
            "swanctl": {"socket": f"unix://{self.vici}"},
        }
        if savekeys_so:
            base["charon"]["plugins"]["save-keys"] = {
                "load": "yes", "ike": "yes", "esp": "yes", "wireshark_keys": str(self.keys_dir)}
        else:
            # log-derived keys need the key material and SPIs in the log
            base["charon"]["filelog"]["lab"].update({"ike": 4, "chd": 4, "mgr": 2})
        self.settings = merge(base, settings)
        self.swanctl_conf = swanctl
        self.conf.write_text(render(self.settings) + "\n")
        (self.swanctl_dir / "swanctl.conf").write_text(render(swanctl) + "\n")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.vici.exists():
            self.vici.unlink()  # stale socket from a killed instance
        env = {"STRONGSWAN_CONF": str(self.conf)}
        # LD_PRELOAD only for charon itself (ip/unshare/sh must not load the plugin)
        preload = f"LD_PRELOAD={shlex.quote(str(self.savekeys_so))} " if self.savekeys_so else ""
        inner = f"mount -t tmpfs vpnlab-run /run && exec env {preload}{shlex.quote(CHARON)}"
        cmd = self.topo.ns_cmd(self.ns, "unshare", "-m", "--propagation", "private",
                               "sh", "-c", inner)
        self.proc = self.procs.start(f"charon-{self.side}", cmd, logfile=self.dir / "charon.out",
                                     env=env)
        wait_for(lambda: self.vici.exists() or not self.proc.alive(), 15,
                 what=f"charon-{self.side} vici socket")
        if not self.proc.alive():
            raise LabError(f"charon-{self.side} exited: "
                           + (self.dir / "charon.out").read_text()[-1000:])
        time.sleep(0.2)

    # ------------------------------------------------------------------ control
    def swanctl(self, *args: str, check: bool = True, timeout: float = 30):
        return run(self.topo.ns_cmd(self.ns, "swanctl", *args), check=check, timeout=timeout,
                   env={"STRONGSWAN_CONF": str(self.conf)})

    def load(self) -> None:
        self.swanctl("--load-all", "--noprompt", "--file", str(self.swanctl_dir / "swanctl.conf"))

    def initiate(self, child: str = "net", ike: str | None = None, timeout: int = 20,
                 check: bool = True):
        args = ["--initiate", "--child", child, "--timeout", str(timeout)]
        if ike:
            args += ["--ike", ike]
        cp = self.swanctl(*args, check=False, timeout=timeout + 10)
        if check and cp.returncode != 0:
            raise LabError(f"initiate {child} failed on {self.side}:\n{cp.stdout[-1500:]}")
        return cp

    def initiate_bg(self, child: str = "net", ike: str | None = None, timeout: int = 30) -> Proc:
        args = ["--initiate", "--child", child, "--timeout", str(timeout)]
        if ike:
            args += ["--ike", ike]
        return self.procs.start(f"swanctl-initiate-{self.side}",
                                self.topo.ns_cmd(self.ns, "swanctl", *args),
                                logfile=self.dir / "initiate.out",
                                env={"STRONGSWAN_CONF": str(self.conf)})

    def list_sas(self) -> str:
        return self.swanctl("--list-sas", check=False).stdout
