#!/usr/bin/env bash
# The peers of the ssh-fleet benchmark: installs them, writes their inventories, times them.
#
#   peers.sh install                 hyperfine (apt, root) and, each in its own venv under
#                                    $SB_WORK, ansible-core 2.19.14 and pyinfra 3.10.0 (PyPI)
#   peers.sh inventories             Ansible and pyinfra inventories for the fleet in $SB_WORK
#   peers.sh time TOOL...            time raw ssh, ansible, pyinfra (hyperfine) on that fleet
#   peers.sh prep ACTION...          hyperfine --prepare: close (ControlMasters), wipe, drift, none
#
# Env: SB_WORK (/tmp/sshbench; the fleet's FLEET_WORK), RUNS (3), RAW_RUNS (10), ANSIBLE_RUNS.
# Scenarios: first (managed dirs wiped), noop, onefile (file07.conf drifted on every host).
# Results: $SB_WORK/results/N<N>/<tool>-<scenario>.json (hyperfine --export-json).
set -euo pipefail
W=${SB_WORK:-/tmp/sshbench}
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${RUNS:-3}
RAW_RUNS=${RAW_RUNS:-10}
ANSIBLE_RUNS=${ANSIBLE_RUNS:-$RUNS}

role() { if [ $(($1 % 3)) -eq 0 ]; then echo db; else echo web; fi; }
address() { awk -v h="$1" '$1=="Host"{c=($2==h)} c&&$1=="HostName"{print $2}' "$W/ssh_config"; }

install() {
  if ! command -v hyperfine >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "peers.sh: hyperfine is missing and only root can apt-get it" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
  fi
  mkdir -p "$W"
  [ -x "$W/venv-ansible/bin/ansible-playbook" ] || { python3 -m venv "$W/venv-ansible"; "$W/venv-ansible/bin/pip" install -q 'ansible-core==2.19.14'; }
  [ -x "$W/venv-pyinfra/bin/pyinfra" ] || { python3 -m venv "$W/venv-pyinfra"; "$W/venv-pyinfra/bin/pip" install -q 'pyinfra==3.10.0'; }
}

inventories() {
  . "$W/fleet.env"
  local k
  mkdir -p "$W/cp" "$W/group_data"
  {
    echo "[fleet]"
    for k in $(seq 1 "$N"); do echo "h$k host_id=$k max_conn=$((100 + k)) role=$(role "$k")"; done
    printf '\n[fleet:vars]\nansible_user=root\nansible_python_interpreter=/usr/bin/python3\nbench_work=%s\n' "$W"
  } > "$W/inventory.ini"
  cat > "$W/ansible.cfg" <<CFG
[defaults]
inventory = $W/inventory.ini
forks = $N
gathering = explicit
host_key_checking = True
retry_files_enabled = False
interpreter_python = /usr/bin/python3
[ssh_connection]
pipelining = True
ssh_args = -F $W/ssh_config -o ControlMaster=auto -o ControlPersist=60s
control_path_dir = $W/cp
control_path = %(directory)s/%%C
CFG
  {
    echo "fleet = ["
    for k in $(seq 1 "$N"); do
      echo "    (\"h$k\", {\"ssh_hostname\": \"$(address "h$k")\", \"host_id\": $k, \"max_conn\": $((100 + k)), \"role\": \"$(role "$k")\"}),"
    done
    echo "]"
  } > "$W/inventory_pyinfra.py"
  cat > "$W/group_data/all.py" <<PY
ssh_user = "root"
ssh_key = "$W/keys/id_ed25519"
ssh_known_hosts_file = "$W/known_hosts"
ssh_strict_host_key_checking = "yes"
ssh_allow_agent = False
ssh_look_for_keys = False
bench_work = "$W"
bench_dir = "$HERE"
PY
}

prep() {
  local a s f
  for a in "$@"; do
    case $a in
      close) for s in "$W"/cp/* "$W"/cp-raw/*; do [ -S "$s" ] && ssh -o ControlPath="$s" -O exit x >/dev/null 2>&1 || true; done ;;
      wipe) rm -rf "$W"/hosts/h*/managed ;;
      drift) for f in "$W"/hosts/h*/managed/files/file07.conf; do echo "# drift $RANDOM" >> "$f"; done ;;
      none) ;;
    esac
  done
}

time_tools() {
  . "$W/fleet.env"
  local R="$W/results/N$N" P="bash $HERE/peers.sh prep" SSH="ssh -F $W/ssh_config -o BatchMode=yes" t k
  mkdir -p "$R/logs" "$W/cp" "$W/cp-raw"
  for t in "$@"; do
    case $t in
      raw)
        prep close
        hyperfine --style basic --runs "$RAW_RUNS" --warmup 1 --export-json "$R/raw-ssh-true.json" \
          -n "raw ssh true (new connections)" "seq 1 $N | xargs -P $N -I{} $SSH h{} true" ;;
      ansible)
        export ANSIBLE_CONFIG="$W/ansible.cfg"
        local AP="$W/venv-ansible/bin/ansible-playbook -f $N $HERE/playbook.yml"
        for s in first noop onefile; do : > "$R/logs/ansible-$s.log"; done
        hyperfine --style basic --runs "$ANSIBLE_RUNS" --prepare "$P close wipe" --export-json "$R/ansible-first.json" -n "ansible first" "$AP >> $R/logs/ansible-first.log 2>&1"
        hyperfine --style basic --runs "$ANSIBLE_RUNS" --prepare "$P close" --export-json "$R/ansible-noop.json" -n "ansible noop" "$AP >> $R/logs/ansible-noop.log 2>&1"
        hyperfine --style basic --runs "$ANSIBLE_RUNS" --prepare "$P close drift" --export-json "$R/ansible-onefile.json" -n "ansible onefile" "$AP >> $R/logs/ansible-onefile.log 2>&1"
        prep close ;;
      pyinfra)
        local PY="$W/venv-pyinfra/bin/pyinfra -y --parallel $N --group-data $W/group_data $W/inventory_pyinfra.py $HERE/deploy_pyinfra.py"
        for s in first noop onefile; do : > "$R/logs/pyinfra-$s.log"; done
        hyperfine --style basic --runs "$RUNS" --prepare "$P wipe" --export-json "$R/pyinfra-first.json" -n "pyinfra first" "$PY >> $R/logs/pyinfra-first.log 2>&1"
        hyperfine --style basic --runs "$RUNS" --prepare "$P none" --export-json "$R/pyinfra-noop.json" -n "pyinfra noop" "$PY >> $R/logs/pyinfra-noop.log 2>&1"
        hyperfine --style basic --runs "$RUNS" --prepare "$P drift" --export-json "$R/pyinfra-onefile.json" -n "pyinfra onefile" "$PY >> $R/logs/pyinfra-onefile.log 2>&1" ;;
      *) echo "peers.sh: unknown tool $t" >&2; exit 2 ;;
    esac
  done
}

case "${1:-}" in
  install) install ;;
  inventories) inventories ;;
  time) shift; time_tools "$@" ;;
  prep) shift; prep "$@" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
