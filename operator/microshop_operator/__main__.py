"""``python -m microshop_operator [kopf run options]``: the operator process.

Every option of ``kopf run`` passes through (``--namespace``, ``--all-namespaces``, ``--peering``,
``--standalone``, ``--liveness``, ``--verbose`` ...). Defaults added when the option is absent:
JSON logs (``--log-format=json``), all namespaces when no namespace is given, and the liveness
endpoint from ``MICROSHOP_OPERATOR_LIVENESS`` (``http://0.0.0.0:8080/healthz``; empty disables).
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
    liveness = env.get("MICROSHOP_OPERATOR_LIVENESS", DEFAULT_LIVENESS).strip()
    if liveness and not _given(args, "-L", "--liveness"):
        extra.append(f"--liveness={liveness}")
    return ["run", "-m", HANDLERS_MODULE, *extra, *args]


def main(argv: Sequence[str] | None = None) -> None:
    from kopf.cli import main as kopf_main

    kopf_main(args=kopf_args(sys.argv[1:] if argv is None else argv), prog_name="microshop_operator")


if __name__ == "__main__":
    main()
