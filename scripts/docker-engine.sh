#!/usr/bin/env bash
# Make a Docker engine answer, for the image tests (.ci/run) and `make images` on a fresh Debian machine.
#
#   scripts/docker-engine.sh start   an engine answers afterwards (exit 0), or it says why not (exit 1)
#   scripts/docker-engine.sh stop    stops the dockerd that `start` started (and nothing else)
#
# `start` does nothing when an engine already answers. Otherwise, as root: installs Debian's docker.io
# (20.10, whose client builds with DOCKER_BUILDKIT=1), debootstrap (for the base-image stand-in) and
# docker-compose when they are missing, then starts dockerd in the background with its pid in
# .dev/dockerd.pid. That dockerd uses overlay2 and sets up no bridge network and no iptables rules:
# containers run with host networking only (tests/images, compose.host.yaml), and scripts/build-images.sh
# builds with --network host when the engine has no bridge. DOCKERD_ARGS replaces those options.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/need.sh
source scripts/need.sh
PIDFILE=.dev/dockerd.pid
LOG=.dev/dockerd.log
DOCKERD_ARGS="${DOCKERD_ARGS:---storage-driver overlay2 --bridge=none --iptables=false --ip-masq=false}"

say() { echo "[docker-engine] $*" >&2; }

answers() {
  local c
  for c in $(type -a -P docker 2>/dev/null) /usr/bin/docker; do
    [[ -x "$c" ]] && "$c" version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
  done
  return 1
}

install_missing() {
  # debootstrap too: scripts/base-image.sh needs it for the base-image stand-in (it also installs it itself).
  local want=(dockerd=docker.io debootstrap=debootstrap)
  docker compose version >/dev/null 2>&1 || want+=(docker-compose=docker-compose)
  need_packages docker-engine "${want[@]}"
}

start() {
  if answers; then
    say "a Docker engine answers: $(docker version --format '{{.Server.Version}}' 2>/dev/null || /usr/bin/docker version --format '{{.Server.Version}}')"
    return 0
  fi
  if [[ $EUID -ne 0 ]]; then
    say "no Docker engine answers and starting one needs root: the image tests will be skipped"
    return 1
  fi
  install_missing || { say "no Docker engine: the image tests will be skipped"; return 1; }
  mkdir -p .dev
  say "starting dockerd $DOCKERD_ARGS (log: $LOG)"
  # shellcheck disable=SC2086 # DOCKERD_ARGS is a list of options
  setsid dockerd $DOCKERD_ARGS >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 60); do
    if answers; then say "dockerd $(cat "$PIDFILE") answers"; return 0; fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then break; fi
    sleep 0.5
  done
  say "dockerd did not come up (last lines of $LOG below): the image tests will be skipped"
  tail -n 15 "$LOG" >&2 || true
  stop >/dev/null 2>&1 || true
  return 1
}

stop() {
  [[ -f "$PIDFILE" ]] || return 0
  local pid
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping dockerd $pid"
    kill -TERM "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$PIDFILE"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
