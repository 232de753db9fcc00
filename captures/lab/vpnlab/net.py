"""Topology: initiator and responder namespaces joined through a router namespace.

```
[<p>-left] l-eth0 ---- m-l [<p>-mid] m-r ---- r-eth0 [<p>-right]
 192.0.2.2 (NAT: 10.99.0.2)  router, nftables        198.51.100.2
 lo: 10.10.1.1/24             table inet lab          lo: 10.20.1.1/24
```

All links are created inside the lab's own namespaces (nothing is added to the host
namespace), IPv6 is disabled, offloads are off so that captured checksums are valid.
Failures are injected with nftables rules in the router (:meth:`Topology.rule`).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from .proc import LabError, Proc, ProcTable, log, run, wait_for

LEFT_OUT = "192.0.2.2"
LEFT_GW = "192.0.2.1"
LEFT_NAT = "10.99.0.2"
LEFT_NAT_GW = "10.99.0.1"
RIGHT_OUT = "198.51.100.2"
RIGHT_GW = "198.51.100.1"
LEFT_NET = "10.10.1.0/24"
LEFT_HOST = "10.10.1.1"
RIGHT_NET = "10.20.1.0/24"
RIGHT_HOST = "10.20.1.1"

_BASE_RULESET = """
table inet lab {
    chain labpre {
        type filter hook prerouting priority -450; policy accept;
    }
    chain labfwd {
        type filter hook forward priority 0; policy accept;
    }
}
"""

_NAT_RULESET = """
table ip labnat {
    chain post {
        type nat hook postrouting priority 100; policy accept;
        oifname "m-r" ip saddr 10.99.0.0/24 udp dport { 500, 4500 } masquerade to :40000-49999 random
        oifname "m-r" ip saddr 10.99.0.0/24 masquerade
    }
}
"""


@dataclass
class Topology:
    prefix: str
    procs: ProcTable
    nat: bool = False
    mtu: int = 1500
    namespaces: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    @property
    def left(self) -> str:
        return f"{self.prefix}-left"

    @property
    def mid(self) -> str:
        return f"{self.prefix}-mid"

    @property
    def right(self) -> str:
        return f"{self.prefix}-right"

    @property
    def left_addr(self) -> str:
        return LEFT_NAT if self.nat else LEFT_OUT

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def ns_cmd(ns: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def sh(self, ns: str, *cmd: str, check: bool = True, timeout: float = 30, **kw):
        return run(self.ns_cmd(ns, *cmd), check=check, timeout=timeout, **kw)

    # ------------------------------------------------------------------ build
    def up(self) -> None:
        existing = run(["ip", "netns", "list"]).stdout
        for ns in (self.left, self.mid, self.right):
            if ns in existing.split():
                raise LabError(f"namespace {ns} already exists (another lab run?)")
        for ns in (self.left, self.mid, self.right):
            run(["ip", "netns", "add", ns])
            self.namespaces.append(ns)
            self.sh(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1", "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0")
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", self.left, "link", "add", "l-eth0", "mtu", str(self.mtu), "type", "veth",
             "peer", "name", "m-l", "mtu", str(self.mtu), "netns", self.mid])
        run(["ip", "-n", self.right, "link", "add", "r-eth0", "mtu", str(self.mtu), "type", "veth",
             "peer", "name", "m-r", "mtu", str(self.mtu), "netns", self.mid])
        left_gw = LEFT_NAT_GW if self.nat else LEFT_GW
        for ns, dev, addr in ((self.left, "l-eth0", f"{self.left_addr}/24"),
                              (self.mid, "m-l", f"{left_gw}/24"),
                              (self.mid, "m-r", f"{RIGHT_GW}/24"),
                              (self.right, "r-eth0", f"{RIGHT_OUT}/24")):
            for flag in ("tx", "rx", "tso", "gso", "gro"):
                self.sh(ns, "ethtool", "-K", dev, flag, "off", check=False)
            run(["ip", "-n", ns, "addr", "add", addr, "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["ip", "-n", self.left, "addr", "add", f"{LEFT_HOST}/24", "dev", "lo"])
        run(["ip", "-n", self.right, "addr", "add", f"{RIGHT_HOST}/24", "dev", "lo"])
        run(["ip", "-n", self.left, "route", "add", "default", "via", left_gw])
        run(["ip", "-n", self.right, "route", "add", "default", "via", RIGHT_GW])
        self.sh(self.mid, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        ruleset = _BASE_RULESET + (_NAT_RULESET if self.nat else "")
        self.sh(self.mid, "nft", "-f", "-", input=ruleset)
        # the router must not answer on the peers' behalf: no ICMP redirects
        self.sh(self.mid, "sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.m-l.send_redirects=0", "net.ipv4.conf.m-r.send_redirects=0")
        # reachability check (the only traffic before the daemons start; not captured)
        self.sh(self.left, "ping", "-c", "1", "-W", "2", RIGHT_OUT, timeout=10)

    def rule(self, rule: str, chain: str = "labfwd") -> None:
        """Add an nftables rule to the router (``table inet lab``, chain labfwd or labpre)."""
        self.sh(self.mid, "nft", "add", "rule", "inet", "lab", chain, *rule.split())
        self.rules.append(f"{chain}: {rule}")

    def flush_rules(self) -> None:
        for chain in ("labpre", "labfwd"):
            self.sh(self.mid, "nft", "flush", "chain", "inet", "lab", chain)
        self.rules.append("(flushed)")

    def ruleset(self) -> str:
        return self.sh(self.mid, "nft", "list", "ruleset").stdout

    def set_rate(self, dev: str, rate: str = "1mbit") -> None:
        """Rate-limit the router's egress on ``dev`` (tbf; netem is not available)."""
        self.sh(self.mid, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate,
                "burst", "32kbit", "latency", "400ms")

    # ------------------------------------------------------------------ capture
    def capture(self, dev: str, path: Path, ns: str | None = None, buffer_kib: int = 0) -> Proc:
        """tcpdump on ``dev``; ``buffer_kib``: a larger kernel buffer and no immediate mode (busy
        views such as ``-i any`` during a download drop packets otherwise)."""
        ns = ns or self.mid
        errlog = path.with_suffix(".tcpdump.log")
        extra = ["-B", str(buffer_kib)] if buffer_kib else ["--immediate-mode"]
        proc = self.procs.start(f"tcpdump-{dev}",
                                self.ns_cmd(ns, "tcpdump", "-i", dev, "-n", "-s", "0", "-U",
                                            *extra, "-w", str(path)),
                                logfile=errlog)
        wait_for(lambda: errlog.exists() and "listening on" in errlog.read_text(), 10,
                 what=f"tcpdump on {dev}")
        return proc

    def stop_capture(self, proc: Proc) -> None:
        time.sleep(0.3)
        self.procs.stop(proc, signal.SIGINT)

    # ------------------------------------------------------------------ teardown
    def down(self) -> None:
        for ns in reversed(self.namespaces):
            # anything still running in our namespaces is ours: stop it by PID
            pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            if pids:
                log(f"killed leftover pids in {ns}: {' '.join(pids)}")
            cp = run(["ip", "netns", "del", ns], check=False)
            if cp.returncode:
                log(f"could not delete namespace {ns}: {cp.stderr.strip()}")
        self.namespaces.clear()
