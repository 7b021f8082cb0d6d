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
from collections.abc import Sequence

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


def main(argv: Sequence[str] | None = None) -> None:
    from kopf.cli import main as kopf_main

    from microshop_operator import leader

    args = kopf_args(sys.argv[1:] if argv is None else argv)
    leader.standby_endpoint = liveness_of(args)
    kopf_main(args=args, prog_name="microshop_operator")


if __name__ == "__main__":
    main()
