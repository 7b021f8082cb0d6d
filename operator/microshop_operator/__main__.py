"""``python -m microshop_operator [kopf run options]``: the operator process.

Every option of ``kopf run`` passes through (``--namespace``, ``--all-namespaces``, ``--liveness``,
``--verbose`` ...). Defaults added when the option is absent: JSON logs (``--log-format=json``), all
namespaces when no namespace is given, ``--standalone`` (replicas coordinate through a Lease, see
:mod:`microshop_operator.leader`, not through kopf's peering) unless ``--peering`` is given, and the
liveness endpoint from ``MICROSHOP_OPERATOR_LIVENESS`` (``http://0.0.0.0:8080/healthz``; empty disables).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

HANDLERS_MODULE = "microshop_operator.handlers"
DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"


def _given(args: Sequence[str], *names: str) -> bool:
    return any(arg == name or arg.startswith(f"{name}=") for arg in args for name in names)


def kopf_args(argv: Sequence[str], environ: dict[str, str] | None = None) -> list[str]:
    """The ``kopf run`` command line for our options: ours first, the caller's pass through unchanged."""
    env = os.environ if environ is None else environ
    args = list(argv)
    if args and args[0] == "run":  # tolerate `python -m microshop_operator run ...`
        args = args[1:]
    extra: list[str] = []
    if not _given(args, "--log-format"):
        extra.append("--log-format=json")
    if not _given(args, "-n", "--namespace", "-A", "--all-namespaces"):
        extra.append("--all-namespaces")
    if not _given(args, "--peering", "-P", "--standalone"):
        extra.append("--standalone")
    liveness = env.get("MICROSHOP_OPERATOR_LIVENESS", DEFAULT_LIVENESS).strip()
    if liveness and not _given(args, "-L", "--liveness"):
        extra.append(f"--liveness={liveness}")
    return ["run", "-m", HANDLERS_MODULE, *extra, *args]


def liveness_of(args: Sequence[str]) -> str | None:
    """The ``--liveness``/``-L`` endpoint of a kopf command line (the last one wins, as in click)."""
    found: str | None = None
    for index, arg in enumerate(args):
        if arg.startswith("--liveness="):
            found = arg.split("=", 1)[1]
        elif arg in ("--liveness", "-L") and index + 1 < len(args):
            found = args[index + 1]
    return found or None


SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path


def cluster_config_problem(environ: Mapping[str, str] | None = None,
                           token_file: str = SERVICE_ACCOUNT_TOKEN) -> str | None:
    """Why no cluster can be reached (no in-cluster config and no kubeconfig), or None when one can.

    Without this, kopf retries its login forever and never serves the liveness endpoint.
    """
    env = os.environ if environ is None else environ
    if env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT") and os.path.isfile(token_file):
        return None
    if env.get("KUBECONFIG"):
        paths = [p for p in env["KUBECONFIG"].split(os.pathsep) if p]
        if any(os.path.isfile(p) for p in paths):
            return None
        return f"KUBECONFIG={env['KUBECONFIG']} names no existing file"
    home = env.get("HOME") or os.path.expanduser("~")
    default = os.path.join(home, ".kube", "config")
    if os.path.isfile(default):
        return None
    return (f"no in-cluster configuration (KUBERNETES_SERVICE_HOST/PORT and {token_file}) "
            f"and no kubeconfig (KUBECONFIG unset, {default} missing)")


def main(argv: Sequence[str] | None = None) -> None:
    problem = cluster_config_problem()
    if problem:
        print(f"microshop_operator: cannot reach a Kubernetes cluster: {problem}. Run it in a pod with a "
              "ServiceAccount, or point KUBECONFIG at a kubeconfig.", file=sys.stderr, flush=True)
        raise SystemExit(2)
    from kopf.cli import main as kopf_main

    from microshop_operator import leader

    args = kopf_args(sys.argv[1:] if argv is None else argv)
    leader.standby_endpoint = liveness_of(args)
    kopf_main(args=args, prog_name="microshop_operator")


if __name__ == "__main__":
    main()
