"""The shop's services as containers of the shop image, run the way the chart runs them.

:class:`ContainerShop` is :class:`~devtools.shop.LocalShop` with each service started as
``docker run <image> <service>`` instead of ``python -m <service>``: same ports, environment,
readiness waits, log capture, stop/kill/restart. The integration suite switches to it when
``MICROSHOP_TEST_IMAGE`` names an image (tests/conftest.py); tests/images runs the chart's own env.

Containers run as the chart runs its pods (charts/microshop: podSecurityContext and
microshop.containerSecurityContext): uid/gid 10001, read-only root filesystem with a tmpfs /tmp,
every capability dropped, no privilege escalation. They share the host's network namespace and
bind 127.0.0.1 only (``MICROSHOP_HOST``): no container network, no traffic to a bridge's addresses.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from devtools.procs import Proc
from devtools.shop import LocalShop

RUN_AS = "10001:10001"
JWT_KEY_PATH = "/var/run/secrets/microshop/jwt/private.pem"  # where the chart mounts the signing key
# `docker run` options equivalent to the chart's security contexts and /tmp emptyDir (sizeLimit 64Mi).
SECURITY_FLAGS: tuple[str, ...] = (
    "--user", RUN_AS,
    "--read-only",
    "--tmpfs", "/tmp:rw,nosuid,nodev,size=64m",  # noqa: S108 - the container's own tmpfs
    "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
)
LABEL = "dev.microshop.containershop"


def docker_client() -> tuple[str | None, str]:
    """(a docker client whose engine answers, "") or (None, why not): ``$DOCKER``, then every ``docker``."""
    candidates = [os.environ["DOCKER"]] if os.environ.get("DOCKER") else []
    for directory in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]:
        path = os.path.join(directory, "docker")
        if os.access(path, os.X_OK) and path not in candidates:
            candidates.append(path)
    if not candidates:
        return None, "no docker client is installed (Debian: apt-get install docker.io)"
    errors = []
    for client in candidates:
        try:
            out = subprocess.run([client, "version", "--format", "{{.Server.Version}}"],
                                 capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{client}: {exc}")
            continue
        if out.returncode == 0 and out.stdout.strip():
            return client, ""
        errors.append(f"{client}: {(out.stderr.strip().splitlines() or ['no answer'])[-1]}")
    return None, "no Docker engine answers (" + "; ".join(errors) + ")"


@dataclass
class ContainerProc(Proc):
    """A service in a container; signals go to the container (``docker kill``), not to the client.

    ``argv`` is ``docker run`` up to the image; every ``MICROSHOP_*`` name of ``env`` at ``start()`` is
    passed with ``--env NAME`` (its value travels in the client's environment, never on a command line),
    so a copy made with a changed env (``dataclasses.replace``) runs with that env.
    """

    docker: str = "docker"
    container: str = ""
    command: tuple[str, ...] = ()  # the image and its arguments

    def start(self) -> Proc:
        run = [*self.argv]
        self.argv = [*run, *[arg for key in sorted(self.env) if key.startswith("MICROSHOP_")
                             for arg in ("--env", key)], *self.command]
        try:
            return super().start()
        finally:
            self.argv = run

    @property
    def pid(self) -> int | None:
        """The containerised program's pid on this machine (it shares the host's network namespace)."""
        out = subprocess.run([self.docker, "inspect", "--format", "{{.State.Pid}}", self.container],
                             capture_output=True, text=True, timeout=30, check=False)
        value = out.stdout.strip()
        return int(value) if out.returncode == 0 and value.isdigit() and value != "0" else None

    def signal(self, sig: int) -> None:
        if self.popen and self.popen.poll() is None:
            subprocess.run([self.docker, "kill", "--signal", signal.Signals(sig).name, self.container],
                           capture_output=True, timeout=30, check=False)


@dataclass
class ContainerShop(LocalShop):
    """LocalShop whose services are containers of ``image`` (SecantusDB, if started, stays a process)."""

    image: str = "microshop:0.1.0"
    docker: str = "docker"
    # True: each service gets exactly its ``service_env`` (e.g. the chart's env, rewritten for this
    # host), not the developer defaults LocalShop adds for every service.
    exact_env: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _keydir: Path | None = field(default=None, init=False, repr=False)

    def container_name(self, service: str) -> str:
        return f"microshop-{self.run_id}-{service}-{uuid.uuid4().hex[:4]}"

    def readable_key(self) -> Path:
        """A copy of the signing key that uid 10001 can read (the chart mounts it 0440, group 10001)."""
        if self._keydir is None:
            self._keydir = Path(tempfile.mkdtemp(prefix="microshop-key-"))
            os.chmod(self._keydir, 0o755)  # noqa: S103 - the directory only; the key itself is 0440
            key = self._keydir / "private.pem"
            shutil.copyfile(self.key_file, key)
            if os.geteuid() == 0:
                os.chown(key, 10001, 10001)
                os.chmod(key, 0o440)
            else:  # an unprivileged runner cannot hand the file to uid 10001: a throwaway test key only
                os.chmod(key, 0o444)
        return self._keydir / "private.pem"

    def proc_for(self, name: str, *, port: int | None = None, label: str | None = None) -> Proc:
        local = super().proc_for(name, port=port, label=label)
        source = self.service_env.get(name, {}) if self.exact_env else local.env
        env = {k: v for k, v in source.items() if k.startswith("MICROSHOP_")}
        env["MICROSHOP_PORT"] = str(port or self.ports[name])  # the shop's port, not the chart's
        env["MICROSHOP_HOST"] = "127.0.0.1"  # host networking: bind loopback only, as the tests do
        mounts: list[str] = []
        env.pop("MICROSHOP_JWT_PRIVATE_KEY_FILE", None)
        if name == "customers":  # the only service the chart gives the key
            env["MICROSHOP_JWT_PRIVATE_KEY_FILE"] = JWT_KEY_PATH
            mounts = ["--volume", f"{self.readable_key()}:{JWT_KEY_PATH}:ro"]
        container = self.container_name(name)
        argv = [self.docker, "run", "--rm", "--name", container, "--label", f"{LABEL}={self.run_id}",
                "--network", "host", *SECURITY_FLAGS, *mounts]
        return ContainerProc(name=local.name, argv=argv, env=env, ready_url=local.ready_url,
                             docker=self.docker, container=container, command=(self.image, name))

    def containers(self) -> list[str]:
        out = subprocess.run([self.docker, "ps", "-aq", "--filter", f"label={LABEL}={self.run_id}"],
                             capture_output=True, text=True, timeout=30, check=False)
        return out.stdout.split()

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            leftovers = self.containers()
            if leftovers:
                subprocess.run([self.docker, "rm", "-f", *leftovers], capture_output=True, timeout=60, check=False)
            if self._keydir is not None:
                shutil.rmtree(self._keydir, ignore_errors=True)
                self._keydir = None
