"""Two replicas of every service behind a load balancer, as a Kubernetes Service puts them.

:class:`ReplicatedShop` runs each service of a :class:`LocalShop` as two processes on ports of their
own, with one haproxy in front: the service's own port (what the other services and the clients are
given) is haproxy's frontend, which balances over the replicas and health-checks each with
``GET /health/ready`` as a readiness probe does; a replica whose readiness fails gets no new requests.
No retries: like a Service's virtual IP, haproxy sends a request once, so a replica that stopped
listening too early would show as a 5xx.
"""

from __future__ import annotations

import csv
import io
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devtools.procs import Proc, free_port, wait_until
from devtools.shop import SERVICES, LocalShop

REPLICAS = 2
CHECK_INTERVAL_MS = 250  # two failed checks in a row take a replica out, two good ones put it back
CHECK_TIMEOUT_S = 3  # a slow answer (a loaded machine) is not a failure; a draining replica answers 503 at once


@dataclass
class ReplicatedShop:
    shop: LocalShop
    config_dir: Path
    replica_ports: dict[str, list[int]] = field(default_factory=dict)
    replicas: dict[str, list[Proc]] = field(default_factory=dict)
    retired: list[Proc] = field(default_factory=list)  # stopped replicas, kept for their output
    stats_port: int = 0
    haproxy: Proc | None = None

    def haproxy_config(self) -> str:
        lines = [
            "global", "    maxconn 4096",
            "defaults", "    mode http", "    timeout connect 2s", "    timeout client 60s",
            "    timeout server 60s", f"    timeout check {CHECK_TIMEOUT_S}s", "    retries 0",
            "listen stats", f"    bind 127.0.0.1:{self.stats_port}", "    stats enable", "    stats uri /stats",
        ]
        for spec in self.shop.specs:
            lines += [f"frontend fe_{spec.name}", f"    bind 127.0.0.1:{self.shop.port(spec.name)}",
                      f"    default_backend be_{spec.name}",
                      f"backend be_{spec.name}", "    balance roundrobin", "    option httpchk GET /health/ready",
                      f"    default-server inter {CHECK_INTERVAL_MS}ms fall 2 rise 2"]
            lines += [f"    server r{i} 127.0.0.1:{port} check" for i, port in enumerate(self.replica_ports[spec.name])]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 120.0) -> ReplicatedShop:
        shop = self.shop
        for spec in SERVICES:
            shop.ports.setdefault(spec.name, free_port())
        for spec in shop.specs:
            self.replica_ports[spec.name] = [free_port() for _ in range(REPLICAS)]
        self.stats_port = free_port()
        config = self.config_dir / "haproxy.cfg"
        config.write_text(self.haproxy_config())
        self.haproxy = shop.group.add(Proc("haproxy", ["haproxy", "-db", "-f", str(config)])).start()
        shop.start_database()
        for wave in sorted({spec.wave for spec in shop.specs}):
            names = [spec.name for spec in shop.specs if spec.wave == wave]
            for name in names:
                self.replicas[name] = [self._start(name, i) for i in range(REPLICAS)]
            for name in names:
                for proc in self.replicas[name]:
                    proc.wait_ready(timeout)
                assert wait_until(lambda n=name: self.up(n) == REPLICAS, 10), f"haproxy does not see {name} up"
        return self

    def _start(self, name: str, index: int) -> Proc:
        proc = self.shop.proc_for(name, port=self.replica_ports[name][index], label=f"{name}-{index}")
        return self.shop.group.add(proc).start()

    def restart(self, name: str, index: int, timeout: float = 60.0) -> None:
        """SIGTERM the replica, wait until it exited, start it again, and wait until haproxy sends it requests."""
        old = self.replicas[name][index]
        old.stop(timeout=30)
        self.retired.append(old)
        new = self.replicas[name][index] = self._start(name, index)
        new.wait_ready(timeout)
        assert wait_until(lambda: self.up(name) == REPLICAS, 10), f"haproxy does not see {name}-{index} up again"

    def server_states(self) -> dict[tuple[str, str], str]:
        """(backend, server) → haproxy's status of it (``UP``, ``DOWN``, ...), from its stats page."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2) as resp:
            rows = csv.DictReader(io.StringIO(resp.read().decode().lstrip("# ")))
            return {(row["pxname"], row["svname"]): row["status"] for row in rows}

    def up(self, name: str) -> int:
        states = self.server_states()
        return sum(1 for i in range(REPLICAS) if states.get((f"be_{name}", f"r{i}")) == "UP")

    def running(self) -> list[tuple[str, Proc]]:
        return [(name, proc) for name, procs in self.replicas.items() for proc in procs]

    def url(self, name: str, index: int) -> str:
        return f"http://127.0.0.1:{self.replica_ports[name][index]}"

    def stop(self) -> None:
        self.shop.stop()
