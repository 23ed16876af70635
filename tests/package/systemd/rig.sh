#!/usr/bin/env bash
# A throw-away Debian 12 machine with a real systemd as PID 1, booted with systemd-nspawn, to test
# the pvsim .deb and its units (see tests/test_deb_systemd.py). Needs root, systemd-container and
# debootstrap (the Makefile's TEST_DEPS install them).
#
#   rig.sh probe             can this host start a container at all? exit status 4 with
#                            systemd-nspawn's own words when it cannot (run it first: a fraction
#                            of a second, where `prepare` and `up` take a minute to fail)
#   rig.sh prepare           debootstrap the cached root once (~1 min), later calls return at once
#   rig.sh up RUNDIR         boot a container on a copy-on-write overlay of the cached root;
#                            exit status 3: the host cannot give it a working loopback interface
#   rig.sh exec RUNDIR CMD…  run a command inside (as root, clean environment)
#   rig.sh copy-in RUNDIR FILE DIR   copy a host file into a directory inside the container
#   rig.sh down RUNDIR       power off, kill what is left, unmount, remove RUNDIR
#
# The container has a private network (loopback only): it runs its own RabbitMQ and cannot clash
# with a broker on the host; hence every package the test needs is included at debootstrap time.
# The cached root is never booted itself; each run writes to an overlay that `down` throws away.
set -euo pipefail

CACHE=${PVSIM_RIG_CACHE:-/var/cache/pvsim-test-rig}
SUITE=bookworm
MACHINE=deb12-rig  # no "pvsim" in it: the test looks for anything named pvsim left behind
# Everything the test needs inside: systemd, the broker, and the .deb's dependencies (Depends only;
# its Recommends are rabbitmq-server, already here). Changing this list rebuilds the cache.
INCLUDE=systemd,systemd-sysv,dbus,libnss-myhostname,rabbitmq-server,python3,python3-pika,python3-yaml,python3-tenacity,python3-prometheus-client,python3-waitress,procps
ENVIRON=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
         DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 HOME=/root TERM=dumb)

# Inside the container: can a TCP client reach a listener on 127.0.0.1?
LOOPBACK_PROBE='import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
socket.create_connection(s.getsockname(), timeout=3).close()'

log() { printf 'rig: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"

mirror() {
    # The Debian mirror the host's apt sources name (deb822 or one-line format), else the CDN.
    local m
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -v "^[[:space:]]*#" | grep -Eo "https?://[^ ]+/debian/?( |$)" | grep -v security | head -n1 | tr -d ' ' || true)
    echo "${PVSIM_RIG_MIRROR:-${m:-http://deb.debian.org/debian}}"
}

root_dir() {
    local key
    key=$(printf '%s %s %s\n' "$SUITE" "$INCLUDE" "$MACHINE" | sha256sum | cut -c1-12)
    echo "$CACHE/root-$key"
}

prepare() {
    local root tmp
    root=$(root_dir)
    if [ -f "$root/.rig-complete" ]; then
        echo "$root"
        return 0
    fi
    command -v debootstrap >/dev/null || die "debootstrap is not installed"
    mkdir -p "$CACHE"
    # One debootstrap at a time; a concurrent run waits and then finds the root ready.
    exec 9>"$CACHE/.lock"
    flock 9
    if [ -f "$root/.rig-complete" ]; then
        echo "$root"
        return 0
    fi
    rm -rf "$root"
    tmp="$root.tmp.$$"
    rm -rf "$tmp"
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    log "debootstrap $SUITE into $root (first run only, about a minute)"
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp" "$(mirror)" >"$CACHE/debootstrap.log" 2>&1 ||
        { tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
    # RabbitMQ (Erlang) must resolve its own host name; nspawn sets it to the machine name.
    echo "$MACHINE" >"$tmp/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$MACHINE" >"$tmp/etc/hosts"
    # Nothing in a test machine needs these, and they slow the boot or fail without a network.
    for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
                fstrim.timer systemd-networkd-wait-online.service; do
        ln -sf /dev/null "$tmp/etc/systemd/system/$unit"
    done
    rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"* 2>/dev/null || true
    touch "$tmp/.rig-complete"
    mv "$tmp" "$root"
    trap - EXIT
    # Drop roots cached for an older package list.
    for old in "$CACHE"/root-*; do
        [ "$old" = "$root" ] || [ ! -d "$old" ] || case "$old" in *.tmp.*) ;; *) rm -rf "$old" ;; esac
    done
    echo "$root"
}

probe() {
    # A runner that is itself a container often cannot nest one: nspawn stops at once with, e.g.,
    # "Failed to create /../payload subcgroup" (our cgroup lies outside our cgroup namespace), or
    # cannot set up the private network. Start a container with the flags `up` uses that runs
    # /usr/bin/true on the host's own /usr: the same cgroup, namespace and network set-up, with
    # no root file system to build.
    local dir out entry
    local -a binds
    command -v systemd-nspawn >/dev/null || { log "systemd-nspawn is not installed (Debian package systemd-container)"; exit 4; }
    dir=$(mktemp -d /var/tmp/rig-probe.XXXXXX)
    # shellcheck disable=SC2064
    trap "rm -rf '$dir'" EXIT
    mkdir "$dir/usr"
    binds=(--bind-ro=/usr)
    for entry in bin sbin lib lib32 lib64 libx32; do
        if [ -L "/$entry" ]; then
            ln -s "$(readlink "/$entry")" "$dir/$entry"
        elif [ -d "/$entry" ]; then  # a host without merged /usr
            mkdir "$dir/$entry"
            binds+=("--bind-ro=/$entry")
        fi
    done
    if ! out=$(timeout 60 systemd-nspawn --quiet -D "$dir" --register=no --keep-unit --private-network \
                   "${binds[@]}" /usr/bin/true </dev/null 2>&1); then
        # Its last word, not the harmless "Attempted to remove disk file system..." at exit.
        log "systemd-nspawn cannot start a container on this host: $(printf '%s\n' "$out" |
            grep -v '^Attempted to remove disk file system' | grep . | tail -n 1)"
        exit 4
    fi
}

container_pid() {
    # PID (on the host) of the container's PID 1, recorded by `up`.
    cat "$1/leader" 2>/dev/null || die "no container running for $1"
}

do_exec() {
    local rundir=$1; shift
    local pid
    pid=$(container_pid "$rundir")
    exec nsenter -t "$pid" -a "${ENVIRON[@]}" "$@"
}

up() {
    local rundir=$1 root nspawn_pid leader="" state="" i
    root=$(prepare)
    mkdir -p "$rundir"/{upper,work,merged}
    # Any failure from here on leaves nothing behind.
    # shellcheck disable=SC2064
    trap "down '$rundir' || true" EXIT
    if ! mount -t overlay overlay -o "lowerdir=$root,upperdir=$rundir/upper,workdir=$rundir/work" "$rundir/merged" 2>/dev/null; then
        log "overlayfs unavailable, copying the root instead"
        cp -a "$root/." "$rundir/merged/"
    fi
    log "booting $MACHINE from $rundir/merged"
    setsid systemd-nspawn -D "$rundir/merged" --boot --machine="$MACHINE" --register=no --keep-unit \
        --private-network --console=read-only >"$rundir/console.log" 2>&1 </dev/null &
    nspawn_pid=$!
    echo "$nspawn_pid" >"$rundir/nspawn"
    for i in $(seq 1 100); do
        kill -0 "$nspawn_pid" 2>/dev/null || { tail -n 30 "$rundir/console.log" >&2; die "systemd-nspawn exited"; }
        leader=$(cat "/proc/$nspawn_pid/task/$nspawn_pid/children" 2>/dev/null | awk '{print $1}')
        if [ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ]; then break; fi
        leader=""
        sleep 0.1
    done
    [ -n "$leader" ] || die "no container init appeared"
    echo "$leader" >"$rundir/leader"
    for i in $(seq 1 120); do
        state=$(nsenter -t "$leader" -a "${ENVIRON[@]}" systemctl is-system-running 2>/dev/null || true)
        case "$state" in running|degraded) break ;; esac
        sleep 0.5
    done
    case "$state" in
        running) ;;
        degraded) log "system degraded: $(nsenter -t "$leader" -a "${ENVIRON[@]}" systemctl --failed --no-legend --plain | tr '\n' ' ')" ;;
        *) tail -n 30 "$rundir/console.log" >&2; die "container did not finish booting (state: ${state:-none})" ;;
    esac
    # RabbitMQ and the daemons inside talk over loopback; some hosts cannot give a private network
    # namespace a working lo (RabbitMQ then hangs in "activating"). Say so, with exit status 3.
    if ! nsenter -t "$leader" -a "${ENVIRON[@]}" python3 -c "$LOOPBACK_PROBE" >"$rundir/loopback.log" 2>&1; then
        log "no loopback: the container's 127.0.0.1 does not accept connections ($(tail -n 1 "$rundir/loopback.log"))"
        exit 3
    fi
    trap - EXIT
    log "up: container PID 1 is host PID $leader (state $state)"
}

copy_in() {
    local rundir=$1 file=$2 dir=$3 pid
    pid=$(container_pid "$rundir")
    mkdir -p "/proc/$pid/root$dir"
    cp "$file" "/proc/$pid/root$dir/"
}

down() {
    local rundir=$1 nspawn_pid="" leader="" i
    [ -d "$rundir" ] || return 0
    nspawn_pid=$(cat "$rundir/nspawn" 2>/dev/null || true)
    leader=$(cat "$rundir/leader" 2>/dev/null || true)
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        if [ -n "$leader" ]; then
            nsenter -t "$leader" -a "${ENVIRON[@]}" systemctl poweroff --no-block >/dev/null 2>&1 || true
        else
            kill -TERM "$nspawn_pid" 2>/dev/null || true
        fi
        for i in $(seq 1 150); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$nspawn_pid" 2>/dev/null && { log "container did not power off, killing it"; kill -KILL "$nspawn_pid" 2>/dev/null || true; sleep 0.5; }
    fi
    if mountpoint -q "$rundir/merged"; then
        umount "$rundir/merged" 2>/dev/null || umount -l "$rundir/merged"
    fi
    rm -rf "$rundir"
}

cmd=${1:-}; shift || true
case "$cmd" in
    probe)   probe ;;
    prepare) prepare ;;
    up)      [ $# -eq 1 ] || die "usage: rig.sh up RUNDIR"; up "$1" ;;
    exec)    [ $# -ge 2 ] || die "usage: rig.sh exec RUNDIR CMD..."; do_exec "$@" ;;
    copy-in) [ $# -eq 3 ] || die "usage: rig.sh copy-in RUNDIR FILE DIR"; copy_in "$@" ;;
    down)    [ $# -eq 1 ] || die "usage: rig.sh down RUNDIR"; down "$1" ;;
    *) die "usage: rig.sh probe | prepare | up RUNDIR | exec RUNDIR CMD... | copy-in RUNDIR FILE DIR | down RUNDIR" ;;
esac
