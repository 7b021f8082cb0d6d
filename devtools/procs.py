"""Child processes with prefixed logs, readiness waits and clean stops (used by ``make dev`` and tests)."""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
COLOURS = ["36", "33", "35", "32", "34", "31", "96", "93"]


def free_port() -> int:
    """A free port below the kernel's ephemeral range.

    Ports the kernel hands out for ``bind(0)`` are also what it gives outgoing connections; a
    readiness poll against such a port before its server listens can connect the socket to itself.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(max(1024, low - 12000), low)  # noqa: S311 - not a secret
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local URLs only
            return bool(200 <= resp.status < 300)
    except (OSError, http.client.HTTPException):
        # HTTPException too: polling a port nobody listens on yet can connect the socket to itself
        # (TCP self-connect within the ephemeral range) and read our own request back.
        return False


def die_with_parent() -> None:
    """Get SIGTERM when the parent process dies, however it dies (Linux PR_SET_PDEATHSIG)."""
    if sys.platform == "linux":
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def _detach_and_die_with_parent() -> None:
    """In the child: its own process group (a stop reaches its children too), and SIGTERM when the
    runner dies, so no process outlives ``make dev``."""
    os.setsid()
    die_with_parent()


@dataclass
class Proc:
    """One child process; its output is copied line by line with a coloured ``name |`` prefix."""

    name: str
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    out: IO[str] | None = None
    colour: str = "0"
    popen: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    keep_lines: int = 2000

    def start(self) -> Proc:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self.popen = subprocess.Popen(
            self.argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=_detach_and_die_with_parent,
        )
        threading.Thread(target=self._pump, daemon=True, name=f"log-{self.name}").start()
        return self

    def _pump(self) -> None:
        assert self.popen and self.popen.stdout
        use_colour = self.out is not None and getattr(self.out, "isatty", lambda: False)()
        prefix = f"\x1b[{self.colour}m{self.name:>10} |\x1b[0m " if use_colour else f"{self.name:>10} | "
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))
            if len(self.lines) > self.keep_lines:
                del self.lines[: self.keep_lines // 2]
            if self.out is not None:
                self.out.write(prefix + line)
                self.out.flush()

    @property
    def pid(self) -> int | None:
        """The pid of the program itself, in this machine's pid namespace (None before it started)."""
        return self.popen.pid if self.popen else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> None:
        url = self.ready_url
        ok = wait_until(lambda: not self.running or (url is None or http_ok(url)), timeout, 0.1)
        if not self.running:
            raise RuntimeError(f"{self.name} exited with {self.popen and self.popen.returncode}:\n"
                               + "\n".join(self.lines[-40:]))
        if not ok:
            raise RuntimeError(f"{self.name} not ready at {url} after {timeout}s:\n" + "\n".join(self.lines[-40:]))

    def signal(self, sig: int) -> None:
        if self.popen and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        if not self.popen:
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(5)

    def kill(self) -> None:
        """SIGKILL, no goodbye: for crash tests."""
        if self.popen:
            self.signal(signal.SIGKILL)
            self.popen.wait(5)


@dataclass
class ProcGroup:
    out: IO[str] | None = sys.stdout
    procs: list[Proc] = field(default_factory=list)

    def add(self, proc: Proc) -> Proc:
        proc.out = self.out
        proc.colour = COLOURS[len(self.procs) % len(COLOURS)]
        self.procs.append(proc)
        return proc

    def stop_all(self, last: Collection[Proc] = ()) -> None:
        """SIGTERM every process (SIGKILL after 10 s); those in ``last`` once the others have exited, as a
        cluster stops its services before the database they finish their work with."""
        later = {id(p) for p in last}
        for wave in ([p for p in self.procs if id(p) not in later], [p for p in self.procs if id(p) in later]):
            for proc in reversed(wave):
                proc.signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            for proc in reversed(wave):
                if proc.popen:
                    try:
                        proc.popen.wait(max(0.1, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        proc.signal(signal.SIGKILL)
                        proc.popen.wait(5)
