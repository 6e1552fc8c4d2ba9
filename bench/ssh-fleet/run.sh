#!/usr/bin/env bash
# tend against raw ssh, pyinfra and Ansible: the same fleet, the same work, the same run.
#
#   bench/ssh-fleet/run.sh [N ...]          (default: 10 30)
#
# Everything it uses is in the repository: the fleet of real sshd hosts (tests/testbed/fleet.sh),
# the peers' work (playbook.yml, deploy_pyinfra.py) and their runner (peers.sh, which installs
# hyperfine, ansible-core and pyinfra). tend runs on the same hosts doing the same work: per host a
# directory and a directory tree, 50 files from templates/small.conf.j2 with per-host variables,
# one line max_conn=<per-host> in app.conf, and a command that appends to restarted.log only when
# something of those changed. Scenarios: first (managed dirs wiped, state reset), noop,
# onefile (file07.conf drifted on every host).
#
# Env: RUNS (3), RAW_RUNS (10), TOOLS (default "raw pyinfra"; add "ansible" for the same-run
#      Ansible figures: about 3 minutes per run at N=10 and 8 at N=30), SB_WORK (/tmp/sshbench).
# Prints a table per N: min and median seconds, and ratios to pyinfra and to the raw floor.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
FLEET="$REPO/tests/testbed/fleet.sh"
export SB_WORK=${SB_WORK:-/tmp/sshbench}
W=$SB_WORK
RUNS=${RUNS:-3}
export RUNS RAW_RUNS=${RAW_RUNS:-10} ANSIBLE_RUNS=${ANSIBLE_RUNS:-1}

bash "$REPO/tests/testbed/install.sh" >/dev/null
bash "$HERE/peers.sh" install
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
(cd "$REPO" && cargo build --release -q -p tend)
TEND="$CARGO_TARGET_DIR/release/tend"

export FLEET_WORK=$W FLEET_ID=${FLEET_ID:-sb} FLEET_NET=${FLEET_NET:-10.213.0}
trap 'bash "$FLEET" down >/dev/null 2>&1 || true' EXIT

# The tend config for N hosts, mirroring the inventory of gen_inventory.sh.
gen_config() { # N DIR
  local n=$1 d=$2 k role
  mkdir -p "$d/templates"
  cp "$HERE/templates/small.conf.j2" "$d/templates/"
  {
    echo '[project]'
    echo 'name = "ssh-fleet-bench"'
    echo "parallelism = $((n * 4))"
    echo
    for k in $(seq 1 "$n"); do
      role=web; [ $((k % 3)) -eq 0 ] && role=db
      echo "[host.ssh.h$k]"
      echo "address = \"$(awk -v h="h$k" '$1=="Host"{c=($2==h)} c&&$1=="HostName"{print $2}' "$W/ssh_config")\""
      echo 'user = "root"'
      echo "identity = \"$W/keys/id_ed25519\""
      echo "known_hosts = \"$W/known_hosts\""
      echo "vars = { host_id = $k, max_conn = $((100 + k)), role = \"$role\" }"
      echo
    done
    echo '[host.directory.files]'
    echo "path = \"$W/hosts/\${each.key}/managed/files\""
    echo 'mode = "0755"'
    echo 'on = { }'
    echo
    echo '[host.directory.tree]'
    echo "path = \"$W/hosts/\${each.key}/managed/tree/a/b/c\""
    echo 'mode = "0755"'
    echo 'on = { }'
    echo
    local changers=""
    for i in $(seq 1 50); do
      printf -v idx '%02d' "$i"
      echo "[host.template.file$idx]"
      echo "path = \"$W/hosts/\${each.key}/managed/files/file$idx.conf\""
      echo 'source = "templates/small.conf.j2"'
      echo "vars = { idx = $i }"
      echo 'mode = "0644"'
      echo 'on = { }'
      echo 'depends_on = ["host.directory.files"]'
      echo
      changers="$changers\"host.template.file$idx\", "
    done
    echo '[host.line.max_conn]'
    echo "path = \"$W/hosts/\${each.key}/managed/app.conf\""
    echo 'line = "max_conn={{ max_conn }}"'
    echo 'regexp = "^max_conn="'
    echo 'mode = "0644"'
    echo 'on = { }'
    echo
    echo '[host.command.restart]'
    echo "run = \"echo restarted \$(date +%s%N) >> $W/hosts/\${each.key}/managed/restarted.log\""
    echo "on_change = [${changers}\"host.line.max_conn\"]"
    echo 'on = { }'
  } > "$d/tend.toml"
}

for N in ${@:-10 30}; do
  bash "$FLEET" up "$N" >/dev/null
  bash "$HERE/peers.sh" inventories
  R="$W/results/N$N"; mkdir -p "$R/logs"
  CFG="$W/tend-config"; rm -rf "$CFG"; gen_config "$N" "$CFG"
  STATE="$W/tend-state/state.db"
  TC="$TEND -C $CFG --state $STATE apply --auto-approve"
  P="bash $HERE/peers.sh prep"
  HF="hyperfine --style basic --runs $RUNS"
  $HF --prepare "$P wipe; rm -rf $W/tend-state" --export-json "$R/tend-first.json" -n "tend first" "$TC >> $R/logs/tend-first.log 2>&1"
  $HF --prepare "$P none" --export-json "$R/tend-noop.json" -n "tend noop" "$TC >> $R/logs/tend-noop.log 2>&1"
  $HF --prepare "$P drift" --export-json "$R/tend-onefile.json" -n "tend onefile" "$TC >> $R/logs/tend-onefile.log 2>&1"
  # What the runs changed, from tend's own summary lines.
  for s in first noop onefile; do
    grep -E '^(Apply complete|No changes)' "$R/logs/tend-$s.log" | sort | uniq -c | sed "s/^/  tend $s: /" || true
  done
  # shellcheck disable=SC2086
  bash "$HERE/peers.sh" time ${TOOLS:-raw pyinfra} >/dev/null
  bash "$FLEET" down >/dev/null
  python3 "$HERE/table.py" "$R" "$N"
done
