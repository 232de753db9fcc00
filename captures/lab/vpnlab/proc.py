"""Process helpers: run commands, start background processes, stop them by PID."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

VERBOSE = False


class LabError(RuntimeError):
    """A lab step failed (setup, daemon start, tunnel establishment...)."""


def log(msg: str) -> None:
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str] | str, *, check: bool = True, timeout: float = 60,
        env: dict[str, str] | None = None, input: str | None = None,
        cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run a command to completion and return its CompletedProcess (text mode)."""
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    if VERBOSE:
        log("$ " + shlex.join(cmd))
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                            env=full_env, input=input, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timeout after {timeout}s: {shlex.join(cmd)}") from exc
    if check and cp.returncode != 0:
        raise LabError(f"command failed rc={cp.returncode}: {shlex.join(cmd)}\n"
                       f"{cp.stdout[-2000:]}{cp.stderr[-2000:]}")
    return cp


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    logfile: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class ProcTable:
    """Every background process the lab started, so that all can be stopped by PID."""

    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, cmd: list[str], *, logfile: Path | None = None,
              env: dict[str, str] | None = None) -> Proc:
        if VERBOSE:
            log(f"start {name}: " + shlex.join(cmd))
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        out = open(logfile, "ab") if logfile else subprocess.DEVNULL
        try:
            p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=full_env,
                                 start_new_session=True)
        finally:
            if logfile:
                out.close()
        proc = Proc(name, p, logfile)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, sig: int = signal.SIGTERM, timeout: float = 5) -> int | None:
        """Send ``sig`` to the process (by PID), wait, escalate to SIGKILL."""
        if proc.alive():
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.popen.wait(5)
        return proc.popen.returncode

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                self.stop(proc)
            except Exception as exc:  # keep cleaning up
                log(f"could not stop {proc.name} (pid {proc.pid}): {exc}")


def wait_for(pred, timeout: float, interval: float = 0.2, what: str = "condition") -> None:
    """Poll ``pred()`` until true, raise LabError on timeout."""
    end = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() > end:
            raise LabError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
