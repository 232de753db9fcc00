"""What the lab's IKE daemons (strongSwan's charon, libreswan's pluto) have in common: one
process in one namespace, its files under ``<work>/<side>/``, a log file to wait on."""

from __future__ import annotations

import signal
from pathlib import Path

from .net import Topology
from .proc import LabError, Proc, ProcTable, wait_for


class Daemon:
    logname = "daemon.log"

    def __init__(self, topo: Topology, procs: ProcTable, side: str, ns: str, workdir: Path):
        self.topo = topo
        self.procs = procs
        self.side = side
        self.ns = ns
        self.dir = workdir / side
        self.logfile = self.dir / self.logname
        self.proc: Proc | None = None

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (the daemon sends its DELETEs and exits) or SIGKILL (a crash)."""
        if self.proc and self.proc.alive():
            self.procs.stop(self.proc, signal.SIGKILL if kill else signal.SIGTERM, timeout=8)

    def alive(self) -> bool:
        return bool(self.proc and self.proc.alive())

    def log_text(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_log(self, needle: str, timeout: float) -> bool:
        try:
            wait_for(lambda: needle in self.log_text(), timeout, what=needle)
            return True
        except LabError:
            return False
