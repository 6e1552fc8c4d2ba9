#!/usr/bin/env bash
# A Debian root filesystem of tend's own for test hosts that install real packages, built once.
#
#   tests/testbed/rootfs.sh          build it where missing (root, debootstrap, network); print its path
#   tests/testbed/rootfs.sh --print  print its path
#
# debootstrap (minbase, Debian 12 "bookworm", with openssh-server) into
# $TEND_TESTBED/rootfs/bookworm (default ~/.cache/tend-testbed). The packages the tests install
# (hello, jq and jq's libraries) are downloaded into its apt cache while building, so a host made
# from it installs them with apt and no network. Hosts never write it: fleet.sh mounts it as
# the lower layer of an overlay per host (FLEET_ROOTFS). Mirror: TEND_DEBIAN_MIRROR.
set -euo pipefail
ROOT=${TEND_TESTBED:-$HOME/.cache/tend-testbed}
DEST=$ROOT/rootfs/bookworm
# Bump when what is built changes; an older build is rebuilt.
VERSION=1
if [ "${1:-}" = --print ]; then echo "$DEST"; exit 0; fi
if [ "$(cat "$DEST/.tend-rootfs" 2>/dev/null)" = "$VERSION" ]; then echo "$DEST"; exit 0; fi

[ "$(id -u)" = 0 ] || { echo "rootfs: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "rootfs: debootstrap is not installed" >&2; exit 1; }
mkdir -p "$ROOT/rootfs"
tmp=$(mktemp -d "$ROOT/rootfs/.bookworm.XXXXXX")
# --one-file-system: never into a /proc or /sys a failed debootstrap left mounted inside.
trap 'rm -rf --one-file-system "$tmp"' EXIT
echo "rootfs: debootstrap bookworm into $DEST (about a minute, once)" >&2
debootstrap --variant=minbase --include=openssh-server bookworm "$tmp" "${TEND_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$tmp.log" 2>&1 \
  || { tail -n 20 "$tmp.log" >&2; rm -f "$tmp.log"; exit 1; }
rm -f "$tmp.log"
# sshd's ChrootDirectory wants a root-owned directory nobody else may write; apt's sandbox user
# must reach its cache.
chmod 0755 "$tmp"
chroot "$tmp" apt-get clean
chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install --download-only -y -q hello jq >/dev/null
echo "$VERSION" > "$tmp/.tend-rootfs"
rm -rf --one-file-system "$DEST"
mv "$tmp" "$DEST"
trap - EXIT
echo "$DEST"
