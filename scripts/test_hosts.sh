#!/usr/bin/env bash
# Throwaway "machines" on this one, for testing Ray's on-premise launcher (ray_cluster.local.yaml):
# each host is an SSH server in its own network namespace (a veth on a test bridge), PID namespace
# (`ray stop` there sees only that host's processes; Ray's start commands and `ray down` run it on
# every node) and mount namespace (its own /tmp, /run, /dev/shm and $HOME, so Ray's /tmp/ray, the
# launcher's files in $HOME and the token stay inside). The repo, the venv and DIR keep their paths.
# Hosts have no default route: they reach each other and the bridge address, nothing else.
#
#   scripts/test_hosts.sh check                 exit 0, or print why hosts cannot be made here (exit 1)
#   scripts/test_hosts.sh up DIR [NAME ...]     start hosts (default: head worker); DIR/hosts.env says
#                                               what was made, DIR/id_ed25519 logs in as this user
#   scripts/test_hosts.sh down DIR              remove exactly what `up DIR` made (safe to repeat)
#
# $TEST_HOSTS_KEEP: folders under $HOME or /tmp that the hosts still see (space-separated; for example the pyenv
# Python a venv points at), everything else in $HOME is the host's own (DIR/NAME/home).
# Needs root, iproute2, util-linux unshare, openssh-server, rsync. Addresses: 10.213.NET.0/24 with NET
# random among the /24s this machine does not route yet (or $TEST_HOSTS_NET); .1 is the bridge here,
# hosts get .2, .3, ... in the order named.
set -euo pipefail

SSH_OPTS=(-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=2
          -o LogLevel=ERROR)

# DIR/hosts.env is data, never code (`down DIR` runs as root): each line is NAME=VALUE, NAME one of those `up`
# writes and VALUE from a small alphabet, read into shell variables without sourcing the file; then every value
# must be the one `up` would have written (the bridge, namespaces and veths named from ID, the addresses from
# NET), so a crafted file can name nothing `down` did not make.
read_env() {
    local file=$1 line host
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ $line =~ ^(ID|NET|BRIDGE|HOSTS|(NS|IP|VETH|PID)_[a-z0-9_]+)=(\"([a-z0-9_\ ]*)\"|([A-Za-z0-9_.-]*))$ ]]; then
            printf -v "${BASH_REMATCH[1]}" '%s' "${BASH_REMATCH[4]}${BASH_REMATCH[5]}"
        else
            echo "$file: line '$line' is not what 'up' writes (NAME=VALUE); nothing done" >&2
            return 1
        fi
    done < "$file"
    local ok=1
    [[ ${ID:-} =~ ^[0-9a-f]{4}$ && ${NET:-} =~ ^[0-9]{1,3}$ && ${BRIDGE:-} == "crl${ID}br" ]] || ok=0
    for host in ${HOSTS:-}; do
        local ns veth ip pid
        ns=$(eval echo "\${NS_$host:-}"); veth=$(eval echo "\${VETH_$host:-}")
        ip=$(eval echo "\${IP_$host:-}"); pid=$(eval echo "\${PID_$host:-}")
        [[ $host =~ ^[a-z0-9_]+$ && ( -z $ns || $ns == "crl-$ID-$host" ) && ( -z $veth || $veth =~ ^crl${ID}v[0-9]+$ )
           && ( -z $ip || $ip =~ ^10\.213\.${NET}\.[0-9]+$ ) && ( -z $pid || $pid =~ ^[0-9]+$ ) ]] || ok=0
    done
    [ "$ok" = 1 ] || { echo "$file: its names are not the ones 'up' makes (crl<ID>br, crl-<ID>-<host>, ...); nothing done" >&2; return 1; }
}

check() {
    [ "$(id -u)" = 0 ] || { echo "not root (network namespaces need CAP_NET_ADMIN)"; return 1; }
    local tool
    for tool in /usr/sbin/sshd ssh ssh-keygen rsync ip unshare; do
        command -v "$tool" >/dev/null || { echo "$tool not installed (apt-get install openssh-server rsync)"; return 1; }
    done
    local probe="crl-probe-$$" out
    out=$(ip netns add "$probe" 2>&1) || { echo "ip netns add fails: $out"; return 1; }
    out=$(ip netns exec "$probe" unshare --pid --fork --mount-proc sh -c 'test $$ = 1' 2>&1) \
        || { ip netns del "$probe"; echo "unshare --pid --fork --mount-proc fails: ${out:-PID is not 1}"; return 1; }
    ip netns del "$probe"
}

free_net() {
    local net
    if [ -n "${TEST_HOSTS_NET:-}" ]; then echo "$TEST_HOSTS_NET"; return; fi
    for _ in $(seq 50); do
        net=$((RANDOM % 254 + 1))
        if ! ip -4 route show | grep -q "^10\.213\.$net\."; then echo "$net"; return; fi
    done
    echo "no free 10.213.x.0/24" >&2; return 1
}

write_sshd_config() {  # DIR HOST IP
    cat > "$1/$2/sshd_config" <<EOF
ListenAddress $3:22
HostKey $1/$2/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile .ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
PrintMotd no
Subsystem sftp internal-sftp
EOF
}

up() {
    local dir id net bridge i=2 host ns ip
    mkdir -p "$1"; dir=$(cd "$1" && pwd); shift
    [ $# -gt 0 ] || set -- head worker
    for host in "$@"; do
        [[ $host =~ ^[a-z0-9_]+$ ]] || { echo "host name '$host': expected lower-case letters, digits and _" >&2; return 2; }
    done
    [ ! -e "$dir/hosts.env" ] || { echo "$dir/hosts.env exists: run down first" >&2; return 1; }
    id=$(printf '%04x' $((RANDOM * 2 % 65536 + RANDOM % 2))); net=$(free_net); bridge="crl${id}br"
    ssh-keygen -q -t ed25519 -N '' -C test-hosts -f "$dir/id_ed25519"
    # Record each thing before making it, so that `down` removes it even if `up` fails half-way.
    printf 'ID=%s\nNET=%s\nBRIDGE=%s\nHOSTS="%s"\n' "$id" "$net" "$bridge" "$*" > "$dir/hosts.env"
    ip link add "$bridge" type bridge
    ip addr add "10.213.$net.1/24" dev "$bridge"
    ip link set "$bridge" up
    for host in "$@"; do
        ns="crl-$id-$host"; ip="10.213.$net.$i"
        printf 'NS_%s=%s\nIP_%s=%s\nVETH_%s=crl%sv%s\n' "$host" "$ns" "$host" "$ip" "$host" "$id" "$i" >> "$dir/hosts.env"
        ip netns add "$ns"
        ip link add "crl${id}v$i" type veth peer name eth0 netns "$ns"
        ip link set "crl${id}v$i" master "$bridge" up
        ip -n "$ns" addr add "$ip/24" dev eth0
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
        mkdir -p "$dir/$host/home/.ssh" "$dir/$host/tmp"
        chmod 700 "$dir/$host/home" "$dir/$host/home/.ssh"; chmod 1777 "$dir/$host/tmp"
        cp "$dir/id_ed25519.pub" "$dir/$host/home/.ssh/authorized_keys"
        echo "# test host $host" > "$dir/$host/home/.bashrc"  # the launcher sources it; a real machine has one
        ssh-keygen -q -t ed25519 -N '' -f "$dir/$host/ssh_host_ed25519_key"
        write_sshd_config "$dir" "$host" "$ip"
        # --kill-child: when this unshare dies, PID 1 inside gets SIGKILL, and with it every process there.
        ip netns exec "$ns" unshare --pid --fork --mount-proc --kill-child bash "$0" init "$dir" "$host" \
            < /dev/null > "$dir/$host/init.log" 2>&1 &
        echo "PID_$host=$!" >> "$dir/hosts.env"
        i=$((i + 1))
    done
    for host in "$@"; do
        ip=$(read_env "$dir/hosts.env"; eval echo "\$IP_$host")
        for _ in $(seq 60); do
            ssh "${SSH_OPTS[@]}" -i "$dir/id_ed25519" "$(id -un)@$ip" true 2>/dev/null && continue 2
            sleep 0.5
        done
        echo "host $host ($ip) never answered on SSH; $dir/$host/init.log:" >&2; cat "$dir/$host/init.log" >&2
        return 1
    done
    (read_env "$dir/hosts.env"; for host in $HOSTS; do eval echo "$host \$IP_$host"; done)
}

init() {  # PID 1 of one host: private mounts, then sshd; exits (killing the host) when sshd does
    local dir=$1 host=$2 home
    home=$(getent passwd "$(id -un)" | cut -d: -f6)
    mount --make-rprivate /
    mount -t tmpfs -o mode=755 tmpfs /run  # sshd's privilege-separation dir, without touching the machine's /run
    mkdir -p /run/sshd
    # DIR usually lives under /tmp, and so may a KEEP path (a CI clone and its venv): keep them visible at
    # their paths across the host's private /tmp
    local under_tmp=("$dir") path n=0
    for path in ${TEST_HOSTS_KEEP:-}; do case "$path" in /tmp/?*) under_tmp+=("$path") ;; esac; done
    for path in "${under_tmp[@]}"; do mkdir -p "/run/stash/$n"; mount --bind "$path" "/run/stash/$n"; n=$((n + 1)); done
    mount --bind "$dir/$host/tmp" /tmp
    n=0
    for path in "${under_tmp[@]}"; do
        mkdir -p "$path"; mount --bind "/run/stash/$n" "$path"; umount "/run/stash/$n"; n=$((n + 1))
    done
    mkdir -p /run/realhome
    mount --bind "$home" /run/realhome
    mount --bind "$dir/$host/home" "$home"
    local keep rel
    for keep in ${TEST_HOSTS_KEEP:-}; do   # e.g. a pyenv Python under $HOME that the venv links to
        case "$keep" in "$home"/?*) rel=${keep#"$home"/}; mkdir -p "$home/$rel"; mount --bind "/run/realhome/$rel" "$home/$rel" ;; esac
    done
    umount /run/realhome
    mount -t tmpfs tmpfs /dev/shm          # Ray's object store
    /usr/sbin/sshd -D -e -f "$dir/$host/sshd_config" &
    local sshd=$!
    while kill -0 "$sshd" 2>/dev/null; do wait -n || true; done  # also reaps orphans (we are PID 1)
}

down() {
    local dir host pid ns veth
    dir=$(cd "$1" 2>/dev/null && pwd) || return 0
    [ -f "$dir/hosts.env" ] || return 0
    read_env "$dir/hosts.env"
    for host in $HOSTS; do
        pid=$(eval echo "\${PID_$host:-}")
        # Only our own unshare: its command line names this DIR (a reused PID would not).
        if [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "init $dir $host"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for host in $HOSTS; do
        ns=$(eval echo "\${NS_$host:-}"); veth=$(eval echo "\${VETH_$host:-}")
        if [ -n "$ns" ] && ip netns list | grep -qw "$ns"; then
            for _ in $(seq 50); do [ -z "$(ip netns pids "$ns")" ] && break; sleep 0.2; done
            ip netns del "$ns"
        fi
        [ -z "$veth" ] || ! ip link show "$veth" >/dev/null 2>&1 || ip link del "$veth"
    done
    ! ip link show "$BRIDGE" >/dev/null 2>&1 || ip link del "$BRIDGE"
    mv "$dir/hosts.env" "$dir/hosts.env.down"
}

cmd=${1:-}; shift || true
case "$cmd" in
    check) check ;;
    up) [ $# -ge 1 ] || { echo "usage: $0 up DIR [NAME ...]" >&2; exit 2; }; up "$@" ;;
    down) [ $# -eq 1 ] || { echo "usage: $0 down DIR" >&2; exit 2; }; down "$1" ;;
    init) init "$@" ;;
    *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
