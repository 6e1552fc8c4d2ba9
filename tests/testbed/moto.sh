#!/usr/bin/env bash
# The moto EC2 API server on loopback (installed by tests/testbed/install.sh), for benchmarks and
# trying things by hand; the Rust tests start moto_server themselves (tests/it/support/moto.rs).
#
#   moto.sh start DIR [PORT]   start it (PORT 0 or absent: a free port); print its URL;
#                              pid in DIR/moto.pid, request log in DIR/moto.log
#   moto.sh stop DIR           stop the server started with DIR, by its pid
#
# Clients: AWS_ENDPOINT_URL=URL AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
# AWS_REGION=us-east-1. Wipe its state: curl -X POST URL/moto-api/reset
set -euo pipefail
BIN="$(bash "$(dirname "$0")/install.sh" --print)/bin"
case "${1:-}" in
  start)
    dir=${2:?usage: moto.sh start DIR [PORT]}; port=${3:-0}
    mkdir -p "$dir"
    if [ "$port" = 0 ]; then
      port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    fi
    MOTO_ENABLE_AMI_VALIDATION=1 MOTO_ENABLE_KEYPAIR_VALIDATION=1 \
      "$BIN/moto_server" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
    echo $! > "$dir/moto.pid"
    for _ in $(seq 1 200); do
      curl -sf -o /dev/null "http://127.0.0.1:$port/moto-api/" && { echo "http://127.0.0.1:$port"; exit 0; }
      sleep 0.05
    done
    echo "moto.sh: the server did not start; see $dir/moto.log" >&2
    exit 1 ;;
  stop)
    dir=${2:?usage: moto.sh stop DIR}
    if [ -f "$dir/moto.pid" ]; then kill "$(cat "$dir/moto.pid")" 2>/dev/null || true; rm -f "$dir/moto.pid"; fi ;;
  *) sed -n '2,11p' "$0"; exit 2 ;;
esac
