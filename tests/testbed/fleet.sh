#!/usr/bin/env bash
# Real OpenSSH hosts on this machine for tend's tests and benchmarks (root: network namespaces).
#
# Every host is one sshd in its own network namespace (its own address on a bridge) and its own
# mount namespace in which /srv is private: /srv is WORK/hosts/NAME/srv, so a test reads what the
# host holds from outside. The rest of the filesystem is the machine's own: manage files under
# /srv. Root logs in with one ed25519 client key; host keys are pinned in WORK/known_hosts.
#
# With FLEET_ROOTFS (a root filesystem, tests/testbed/rootfs.sh), every session of a host is
# chrooted into its own overlay of that tree instead: the host installs packages and creates
# accounts in its own /usr and /etc (what it changed is WORK/hosts/NAME/upper), with /proc,
# /dev and /srv (still WORK/hosts/NAME/srv) mounted in. sshd itself runs as the machine's.
#
#   fleet.sh up N          hosts h1..hN at NET.11 .. NET.(10+N)
#   fleet.sh add IP NAME   one more host (a VM that booted)
#   fleet.sh remove NAME   stop one host, delete its namespace (a VM that went away)
#   fleet.sh down          stop every host of this fleet; remove its namespaces, links, bridge
#
# Environment:
#   FLEET_WORK  directory for keys/, hosts/, ssh_config, known_hosts   (default /tmp/tend-fleet)
#   FLEET_ID    [a-z0-9]{1,4}, prefix of namespaces ID-NAME, links ID-vNAME, bridge ID-br (f0)
#   FLEET_NET   first three octets of the fleet's /24; the bridge is NET.1   (default 10.213.0)
#   FLEET_KEY   one more public key to authorize (optional; vm-boot.py passes a VM's key pair)
#   FLEET_ROOTFS  a root filesystem for every host's sessions (optional, see above)
# Concurrent fleets need distinct FLEET_WORK, FLEET_ID and FLEET_NET.
#
# Afterwards:  ssh -F WORK/ssh_config NAME
set -euo pipefail
W=${FLEET_WORK:-/tmp/tend-fleet}
ID=${FLEET_ID:-f0}
NET=${FLEET_NET:-10.213.0}
BR="$ID-br"

prepare() {
  mkdir -p "$W/keys" "$W/hosts" /run/sshd /srv
  chmod 0755 /run/sshd
  [ -f "$W/keys/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C tend-test -f "$W/keys/id_ed25519"
  [ -f "$W/keys/authorized_keys" ] || cp "$W/keys/id_ed25519.pub" "$W/keys/authorized_keys"
  if [ -n "${FLEET_KEY:-}" ] && ! grep -qxF "$FLEET_KEY" "$W/keys/authorized_keys"; then
    printf '%s\n' "$FLEET_KEY" >> "$W/keys/authorized_keys"
  fi
  touch "$W/known_hosts"
  if [ ! -f "$W/ssh_config" ]; then
    printf '%s\n' "Host *" "  User root" "  IdentityFile $W/keys/id_ed25519" "  IdentitiesOnly yes" \
      "  UserKnownHostsFile $W/known_hosts" "  GlobalKnownHostsFile /dev/null" \
      "  StrictHostKeyChecking yes" "  BatchMode yes" > "$W/ssh_config"
  fi
  if ! ip link show "$BR" >/dev/null 2>&1; then
    ip link add "$BR" type bridge
    ip addr add "$NET.1/24" dev "$BR"
    ip link set "$BR" up
  fi
}

# Link names are at most 15 bytes: ID (≤4) + "-v"/"-p" + NAME without its leading "h" (≤9).
link() { printf '%s-%s%s' "$ID" "$1" "${2#h}"; }

start() { # NAME IP
  local name=$1 ip=$2 d="$W/hosts/$1"
  local ns="$ID-$name" outer inner
  outer=$(link v "$name"); inner=$(link p "$name")
  mkdir -p "$d/srv"
  [ -f "$d/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$d/ssh_host_ed25519_key"
  cat > "$d/sshd_config" <<CFG
ListenAddress $ip:22
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
PermitRootLogin prohibit-password
AuthorizedKeysFile $W/keys/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
SetEnv SHLVL=1
MaxStartups 200:30:400
MaxSessions 200
Subsystem sftp /usr/lib/openssh/sftp-server
CFG
  ip netns add "$ns"
  ip link add "$outer" type veth peer name "$inner"
  ip link set "$inner" netns "$ns"
  ip link set "$outer" master "$BR" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$ip/24" dev "$inner"
  ip -n "$ns" link set "$inner" up
  ip -n "$ns" route add default via "$NET.1"
  # The mount namespace lives as long as this sshd; /srv inside it is the host's own.
  if [ -n "${FLEET_ROOTFS:-}" ]; then
    # Sessions are chrooted into /mnt of this namespace only: an overlay of the root filesystem.
    mkdir -p "$d/upper" "$d/overlay-work"
    echo "ChrootDirectory /mnt" >> "$d/sshd_config"
    ip netns exec "$ns" unshare --mount --propagation private sh -c "
      mount -t overlay overlay -o 'lowerdir=$FLEET_ROOTFS,upperdir=$d/upper,workdir=$d/overlay-work' /mnt &&
      mount --bind '$d/srv' /mnt/srv && mount -t proc proc /mnt/proc && mount --rbind /dev /mnt/dev &&
      exec /usr/sbin/sshd -f '$d/sshd_config'"
  else
    ip netns exec "$ns" unshare --mount --propagation private \
      sh -c "mount --bind '$d/srv' /srv && exec /usr/sbin/sshd -f '$d/sshd_config'"
  fi
  printf '%s %s\n' "$ip" "$(cut -d' ' -f1,2 "$d/ssh_host_ed25519_key.pub")" >> "$W/known_hosts"
  printf 'Host %s\n  HostName %s\n' "$name" "$ip" >> "$W/ssh_config"
  local _
  for _ in $(seq 1 100); do
    ssh -F "$W/ssh_config" -o ConnectTimeout=2 "$name" true 2>/dev/null && return 0
    sleep 0.1
  done
  echo "fleet: $name ($ip) is not reachable over ssh" >&2
  return 1
}

stop_sshd() { # PIDFILE
  local pid
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  fi
  rm -f "$1"
}

case "${1:-}" in
  up)
    n=${2:?usage: fleet.sh up N}
    [ -f "$W/fleet.env" ] && { echo "fleet: $ID is already up in $W (run down first)" >&2; exit 1; }
    prepare
    echo "ID=$ID NET=$NET N=$n" > "$W/fleet.env"
    for k in $(seq 1 "$n"); do start "h$k" "$NET.$((10 + k))"; done
    echo "fleet $ID: $n hosts, $NET.11 .. $NET.$((10 + n)); ssh -F $W/ssh_config hK" ;;
  add)
    ip=${2:?usage: fleet.sh add IP NAME}; name=${3:?usage: fleet.sh add IP NAME}
    prepare
    [ -f "$W/fleet.env" ] || echo "ID=$ID NET=$NET N=0" > "$W/fleet.env"
    start "$name" "$ip"
    echo "fleet $ID: $name up at $ip" ;;
  remove)
    name=${2:?usage: fleet.sh remove NAME}
    stop_sshd "$W/hosts/$name/sshd.pid"
    ip netns del "$ID-$name" 2>/dev/null || true
    ip link del "$(link v "$name")" 2>/dev/null || true
    echo "fleet $ID: $name removed" ;;
  down)
    for pf in "$W"/hosts/*/sshd.pid; do stop_sshd "$pf"; done
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^$ID-" || true); do ip netns del "$ns"; done
    for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^$ID-v" || true); do
      ip link del "$l" 2>/dev/null || true
    done
    if ip link show "$BR" >/dev/null 2>&1; then ip link del "$BR"; fi
    rm -f "$W/fleet.env" "$W/ssh_config" "$W/keys/authorized_keys"
    if [ -d "$W" ]; then : > "$W/known_hosts"; fi
    echo "fleet $ID: down" ;;
  *) sed -n '2,28p' "$0"; exit 2 ;;
esac
