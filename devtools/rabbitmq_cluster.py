"""A throw-away three-node RabbitMQ cluster on this machine, behind haproxy: the chart's cluster mode in small.

The chart's ``rabbitmq.replicas: 3`` runs three RabbitMQ pods that find each other (peer discovery) and a
Service in front of them. Here: three ``rabbitmq-server`` processes of the installed (Debian) RabbitMQ,
each with its own node name (``<prefix>-a@localhost`` ...), AMQP port, distribution port, data and log
directory, one shared Erlang cookie, forming the cluster at boot from a fixed list of peers
(``classic_config`` peer discovery, the static counterpart of ``rabbitmq_peer_discovery_k8s``); and
haproxy on one port as the Service, round-robin over the members it finds alive (TCP checks).

Nothing here touches the machine's own RabbitMQ (rabbit@localhost on 5672): other node names, other
ports, other directories, its own cookie and config files (``RABBITMQ_CONF_ENV_FILE`` and
``RABBITMQ_CONFIG_FILE`` replace /etc/rabbitmq's). The nodes share the machine's epmd (as every Erlang
node does). :meth:`RabbitCluster.close` stops every process and removes every directory it made.

The servers run as the current user: the CLI tools are called from /usr/lib/rabbitmq/bin (Debian's
wrappers in /usr/sbin switch to the ``rabbitmq`` user, whose cookie is not this cluster's).
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.procs import Proc, free_port, wait_until

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
HAPROXY = "haproxy"
LETTERS = ("a", "b", "c")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Node:
    """One member: ``name`` is its Erlang node name, ``amqp_port`` where clients connect directly."""

    name: str
    amqp_port: int
    dist_port: int
    base: Path
    proc: Proc | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running


@dataclass
class RabbitCluster:
    """Three RabbitMQ nodes and haproxy in ``base`` (a directory this object owns and deletes)."""

    base: Path
    prefix: str = field(default_factory=lambda: f"ms-rmq-{secrets.token_hex(3)}")
    size: int = 3
    cookie: str = field(default_factory=lambda: secrets.token_hex(16))
    proxy_port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)
    proxy: Proc | None = None

    @property
    def url(self) -> str:
        """The AMQP URL of the cluster through the proxy (as services reach the chart's Service)."""
        return f"amqp://guest:guest@127.0.0.1:{self.proxy_port}/"

    # -- files -------------------------------------------------------------------------------------------

    def _write_files(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        home = self.base / "home"
        home.mkdir(exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)
        (self.base / "rabbitmq-env.conf").write_text("# empty: nothing from /etc/rabbitmq/rabbitmq-env.conf\n")
        (self.base / "enabled_plugins").write_text("[].\n")
        self.nodes = [Node(f"{self.prefix}-{letter}@localhost", free_port(), free_port(), self.base / letter)
                      for letter in LETTERS[: self.size]]
        peers = "".join(f"cluster_formation.classic_config.nodes.{i} = {n.name}\n"
                        for i, n in enumerate(self.nodes, 1))
        for node in self.nodes:
            node.base.mkdir(exist_ok=True)
            (node.base / "rabbitmq.conf").write_text(
                f"listeners.tcp.1 = 127.0.0.1:{node.amqp_port}\n"
                "cluster_formation.peer_discovery_backend = classic_config\n"
                f"{peers}"
                # No disk alarm on a busy shared disk: the test is about failover, not flow control.
                "disk_free_limit.absolute = 1MB\n")
        server = "\n".join(f"    server {n.name.split('@')[0]} 127.0.0.1:{n.amqp_port} check inter 500 fall 1 rise 2"
                           for n in self.nodes)
        (self.base / "haproxy.cfg").write_text(
            "# The Kubernetes Service in front of the RabbitMQ pods (devtools/rabbitmq_cluster.py).\n"
            "global\n    maxconn 2000\n"
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 2h\n    timeout server 2h\n"
            f"frontend amqp\n    bind 127.0.0.1:{self.proxy_port}\n    default_backend members\n"
            "backend members\n    balance roundrobin\n    default-server on-marked-down shutdown-sessions\n"
            f"{server}\n")

    def env(self, node: Node | None = None) -> dict[str, str]:
        """The environment of this cluster's servers and CLI tools (one node's, with ``node``)."""
        env = {
            "HOME": str(self.base / "home"),  # the cookie
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        if node is not None:
            env |= {
                "RABBITMQ_NODENAME": node.name,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(node.amqp_port),
                "RABBITMQ_DIST_PORT": str(node.dist_port),
                "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq.conf"),
                "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
                "RABBITMQ_LOG_BASE": str(node.base / "log"),
                "RABBITMQ_PID_FILE": str(node.base / "rabbitmq.pid"),
                "RABBITMQ_LOGS": "-",  # to stdout, which Proc keeps
            }
        return env

    # -- processes ---------------------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> RabbitCluster:
        """Start every node (they cluster at boot) and the proxy; return once all are members and running."""
        for tool in (RABBITMQ_BIN / "rabbitmq-server", RABBITMQ_BIN / "rabbitmqctl"):
            if not tool.exists():
                raise RuntimeError(f"{tool} is missing: install Debian's rabbitmq-server")
        if shutil.which(HAPROXY) is None:
            raise RuntimeError("haproxy is missing (devtools.infra.install(devtools.infra.HAPROXY) installs it)")
        self._write_files()
        for node in self.nodes:
            self.start_node(node, wait=False)
        for node in self.nodes:
            self.wait_node(node, timeout)
        if not wait_until(lambda: sorted(self.running_nodes()) == sorted(n.name for n in self.nodes), timeout, 0.5):
            raise RuntimeError(f"the nodes did not form one cluster: {self.cluster_status()}")
        self.proxy = Proc("haproxy", [HAPROXY, "-db", "-f", str(self.base / "haproxy.cfg")]).start()
        if not wait_until(lambda: _port_open(self.proxy_port), 15):
            raise RuntimeError("haproxy did not listen:\n" + "\n".join(self.proxy.lines[-20:]))
        return self

    def start_node(self, node: Node, *, wait: bool = True, timeout: float = 90.0) -> None:
        node.proc = Proc(node.name.split("@")[0], [str(RABBITMQ_BIN / "rabbitmq-server")], env=self.env(node)).start()
        if wait:
            self.wait_node(node, timeout)

    def wait_node(self, node: Node, timeout: float = 90.0) -> None:
        """The node's app is running (``rabbitmqctl await_startup``) and it accepts AMQP connections."""
        assert node.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not node.proc.running:
                raise RuntimeError(f"{node.name} exited:\n" + "\n".join(node.proc.lines[-40:]))
            done = self.ctl("await_startup", "--timeout", "5", node=node, check=False)
            if done.returncode == 0 and _port_open(node.amqp_port):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{node.name} did not start in {timeout}s:\n" + "\n".join(node.proc.lines[-40:]))

    def kill_node(self, node: Node) -> None:
        """SIGKILL the node's processes: a pod whose machine vanished, no goodbye to its peers."""
        assert node.proc is not None
        node.proc.kill()

    def close(self) -> None:
        """Stop the proxy, kill every node, delete every directory; safe to call more than once."""
        if self.proxy is not None:
            self.proxy.stop()
        for node in self.nodes:
            if node.proc is not None:
                node.proc.kill()  # nothing to keep: its data directory goes next
        shutil.rmtree(self.base, ignore_errors=True)

    # -- the CLI -----------------------------------------------------------------------------------------

    def ctl(self, *args: str, node: Node | None = None, tool: str = "rabbitmqctl", check: bool = True,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a RabbitMQ CLI tool against ``node`` (default: the first running one)."""
        target = node or next(n for n in self.nodes if n.running)
        return subprocess.run([str(RABBITMQ_BIN / tool), "-n", target.name, *args], env={**self.env(), "PATH": (
            "/usr/lib/rabbitmq/bin:/usr/bin:/bin")}, capture_output=True, text=True, check=check, timeout=timeout)

    def ctl_json(self, *args: str, node: Node | None = None, tool: str = "rabbitmqctl") -> Any:
        return json.loads(self.ctl(*args, "--formatter", "json", node=node, tool=tool).stdout)

    def cluster_status(self) -> dict[str, Any]:
        try:
            status: dict[str, Any] = self.ctl_json("cluster_status")
        except (subprocess.SubprocessError, ValueError, StopIteration):
            return {}
        return status

    def running_nodes(self) -> list[str]:
        return list(self.cluster_status().get("running_nodes", []))

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def quorum_queues(self, prefix: str) -> list[dict[str, Any]]:
        """The quorum queues whose names start with ``prefix``: name, leader, members, online members."""
        rows: list[dict[str, Any]] = self.ctl_json("list_queues", "name", "type", "leader", "members", "online")
        return [r for r in rows if r["name"].startswith(prefix) and r["type"] == "quorum"]

    def quorum_status(self, queue: str) -> list[dict[str, Any]]:
        """Each member of ``queue`` as ``rabbitmq-queues quorum_status`` sees it (Raft state, indexes)."""
        rows: list[dict[str, Any]] = self.ctl_json("quorum_status", queue, tool="rabbitmq-queues")
        return rows
