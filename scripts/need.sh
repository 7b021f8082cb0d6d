#!/usr/bin/env bash
# Sourced by the scripts that need a tool a fresh Debian machine lacks (docker-engine.sh, base-image.sh):
#
#   need_packages TAG COMMAND=PACKAGE ...   installs, with a message, the Debian PACKAGE of every COMMAND
#                                            that is not on PATH; returns 1 (and says why) when it cannot.
#
# As `make infra` does for RabbitMQ and Redis (devtools/infra.py): apt-get as root (or through sudo),
# `apt-get update` only when the first attempt fails on stale package lists.
need_packages() {
  local tag="$1" pair cmd pkg want=()
  shift
  for pair in "$@"; do
    cmd="${pair%%=*}"; pkg="${pair#*=}"
    command -v "$cmd" >/dev/null 2>&1 || want+=("$pkg")
  done
  ((${#want[@]})) || return 0
  mapfile -t want < <(printf '%s\n' "${want[@]}" | sort -u)
  local sudo=()
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "[$tag] ${want[*]} missing: as root, apt-get install -y ${want[*]}" >&2; return 1; }
    sudo=(sudo)
  fi
  command -v apt-get >/dev/null 2>&1 || {
    echo "[$tag] ${want[*]} missing and this is not a Debian/Ubuntu machine: install them by hand" >&2; return 1; }
  echo "[$tag] installing ${want[*]} (Debian packages, apt-get; once per machine)" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${want[@]}" >/dev/null 2>&1 \
    || { "${sudo[@]}" apt-get update -q >/dev/null 2>&1 \
         && "${sudo[@]}" apt-get install -y -q --no-install-recommends "${want[@]}" >/dev/null; } \
    || { echo "[$tag] apt-get install ${want[*]} failed: install them by hand" >&2; return 1; }
}
