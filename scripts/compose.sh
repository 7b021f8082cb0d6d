#!/usr/bin/env bash
# Run compose with the files given before `--` and the arguments after it, through whichever compose
# this machine has: the `docker compose` plugin (v2) or the standalone `docker-compose` (v1.29+).
#   scripts/compose.sh compose.yaml [compose.host.yaml] -- up -d
# MICROSHOP_JWT_PRIVATE_KEY: when unset, the key in .dev/compose-jwt.pem (made on first use) is passed,
# so tokens outlive a restart of customers.
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=()
while (($#)) && [[ "$1" != "--" ]]; do FILES+=(-f "$1"); shift; done
[[ "${1:-}" == "--" ]] && shift
((${#FILES[@]})) || FILES=(-f compose.yaml)

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  echo "[compose] error: neither the 'docker compose' plugin nor 'docker-compose' is installed" >&2
  echo "[compose]   Debian/Ubuntu: apt-get install docker-compose (or docker-compose-plugin from Docker's repository)" >&2
  exit 1
fi

if [[ -z "${MICROSHOP_JWT_PRIVATE_KEY:-}" ]] && command -v openssl >/dev/null; then
  key=.dev/compose-jwt.pem
  if [[ ! -f "$key" ]]; then
    mkdir -p .dev && (umask 077 && openssl genpkey -algorithm ed25519 -out "$key")
  fi
  MICROSHOP_JWT_PRIVATE_KEY="$(cat "$key")"
  export MICROSHOP_JWT_PRIVATE_KEY
fi
exec "${COMPOSE[@]}" "${FILES[@]}" "$@"
