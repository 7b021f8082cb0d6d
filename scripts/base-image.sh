#!/usr/bin/env bash
# Build a local stand-in for PYTHON_IMAGE (python:3.11-slim-bookworm) from Debian packages, for
# machines that reach no container registry (air-gapped builds): debootstrap a minimal Debian with
# its python3 (3.11 on bookworm) and CA certificates, then `docker import` it. Only the Debian
# mirror (or a local copy of it) is needed; ~40 s and ~120 MB.
#
#   scripts/base-image.sh [TAG]          default TAG: microshop-base/python:3.11-bookworm
#
# Environment: DEBIAN_MIRROR (default: the first mirror this machine's apt uses, else
# http://deb.debian.org/debian), DEBIAN_SUITE (bookworm), DOCKER (the docker client to use).
# scripts/build-images.sh calls this only when the real PYTHON_IMAGE cannot be pulled.
set -euo pipefail
TAG="${1:-microshop-base/python:3.11-bookworm}"
SUITE="${DEBIAN_SUITE:-bookworm}"
DOCKER="${DOCKER:-docker}"

say() { echo "[base-image] $*" >&2; }

apt_mirror() {
  # deb822 sources (URIs: ...) first, then one-line sources (deb URL suite ...); first Debian one wins.
  local uri
  uri="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | awk '{print $2}' | grep -vE 'security' | head -n1 || true)"
  if [[ -z "$uri" ]]; then
    uri="$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | grep -vE 'security' | grep -E '/debian/?( |$)' | awk '{print $2}' | head -n1 || true)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR="${DEBIAN_MIRROR:-$(apt_mirror)}"

[[ $EUID -eq 0 ]] || { say "debootstrap needs root (it creates device nodes and chroots)"; exit 1; }
# shellcheck source=scripts/need.sh
source "$(dirname "$0")/need.sh"
need_packages base-image debootstrap=debootstrap || exit 1
"$DOCKER" info >/dev/null 2>&1 || { say "no Docker engine answers to '$DOCKER'"; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/microshop-base.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"
say "debootstrap $SUITE from $MIRROR (python3, ca-certificates) into $ROOTFS"
# minbase: essential packages + apt; passwd brings useradd/groupadd (the Dockerfile adds a user).
debootstrap --variant=minbase --include=python3,ca-certificates,passwd \
  "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
  tail -n 30 "$WORK/debootstrap.log" >&2; say "debootstrap failed (log above)"; exit 1; }

# Look like the official image where the Dockerfile relies on it: python and python3 in
# /usr/local/bin (the official image's prefix), a sane PATH, no caches, docs or apt lists.
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python3"
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/*
# The chroot's own /proc, /sys and /dev/pts mounts (if debootstrap left any) must not be imported.
for m in proc sys dev/pts; do mountpoint -q "$ROOTFS/$m" && umount -l "$ROOTFS/$m"; done

tar -C "$ROOTFS" --numeric-owner -c . | "$DOCKER" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "microshop: Debian $SUITE + python3 from $MIRROR (scripts/base-image.sh)" \
  - "$TAG" >/dev/null
say "built $TAG ($("$DOCKER" run --rm --network none "$TAG" python3 -c 'import sys; print(sys.version.split()[0])' \
  2>/dev/null || echo '?'), $("$DOCKER" image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%d MB", $1/1e6}'))"
echo "$TAG"
