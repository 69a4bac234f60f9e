#!/usr/bin/env bash
# Make a Docker Engine answer on this machine and make sure the base images exist.
#
# Idempotent: each part checks first and does nothing when already done.
#   1. install Debian's docker.io when no engine answers and no dockerd is installed
#   2. start dockerd in the background when it is not running; wait for `docker info`
#   3. for each base image: keep it if present, pull it if a registry answers,
#      else debootstrap it from the Debian mirror and `docker import` it.
#
# Environment: BOTTLE_BASE_IMAGES (space-separated image:tag list, default
# "debian:bookworm-slim debian:trixie-slim"; an entry image:tag=SUITE is always built
# from that Debian suite, never pulled: the tests build one under a throwaway tag so
# that CI runs this path), DEBIAN_MIRROR, DOCKERD_WAIT (seconds).
set -euo pipefail

BASE_IMAGES=${BOTTLE_BASE_IMAGES:-"debian:bookworm-slim debian:trixie-slim"}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WAIT=${DOCKERD_WAIT:-60}
LOG=${DOCKERD_LOG:-/var/log/bottle-dockerd.log}

say() { printf 'engine: %s\n' "$*" >&2; }
die() { printf 'engine: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=need.sh
. "$(dirname "$0")/need.sh"

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

if ! engine_answers; then
    if ! command -v dockerd >/dev/null 2>&1; then
        say "installing docker.io (Debian's engine)"
        apt_install docker.io iptables
    fi
    if ! pgrep -x dockerd >/dev/null 2>&1; then
        say "starting dockerd (log: $LOG)"
        # No systemd on these machines: run it detached so it outlives this script.
        setsid nohup dockerd >"$LOG" 2>&1 </dev/null &
    fi
    for _ in $(seq "$WAIT"); do
        engine_answers && break
        sleep 1
    done
    engine_answers || die "dockerd did not answer 'docker info' within ${WAIT}s; see $LOG"
fi
say "engine up: $(docker version --format 'server {{.Server.Version}}, client {{.Client.Version}}')"

debootstrap_pid=  # global for the EXIT trap, like rootfs

progress() {  # $1 = what, $2 = pid, $3 = its log: elapsed time and debootstrap's phase until it ends
    # On a terminal one line that updates; otherwise a plain line each time the phase changes.
    local started=$SECONDS phase last=
    while kill -0 "$2" 2>/dev/null; do
        sleep 1
        phase=$(grep '^I: ' "$3" 2>/dev/null | tail -n 1 | awk '{print $2}')
        if [ -t 2 ]; then
            printf '\rengine: %s: %4ss %-20s' "$1" $((SECONDS - started)) "$phase" >&2
        elif [ -n "$phase" ] && [ "$phase" != "$last" ]; then
            say "$1: $((SECONDS - started))s ${phase,,}"
        fi
        last=$phase
    done
    if [ -t 2 ]; then printf '\n' >&2; fi
}

build_base() {  # $1 = image:tag (debian:bookworm-slim), $2 = Debian suite (default: from the tag)
    # rootfs is global on purpose: the EXIT trap below runs after this function has
    # returned, and under `set -u` a local would be unbound by then.
    local image=$1 suite=${2:-}
    if [ -z "$suite" ]; then
        case $image in
            debian:*) ;;
            *) die "no registry answers and only debian:<suite>[-slim] can be built here; import $image yourself (docker import)";;
        esac
        suite=${image#*:}; suite=${suite%-slim}
    fi
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    rootfs=$(mktemp -d /tmp/bottle-rootfs.XXXXXX)
    # EXIT, not RETURN: `die` exits the script, and the rootfs must go then too.
    trap 'kill "$debootstrap_pid" 2>/dev/null; rm -rf "$rootfs" "$rootfs.log"' EXIT
    say "building $image with debootstrap --variant=minbase $suite from $MIRROR"
    debootstrap --variant=minbase "$suite" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 &
    debootstrap_pid=$!
    progress "$image" "$debootstrap_pid" "$rootfs.log"
    wait "$debootstrap_pid" \
        || { tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap $suite failed"; }
    debootstrap_pid=
    rm -f "$rootfs.log"
    # Slim it the way the official -slim images are: no apt lists, docs or caches.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
           "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    tar -C "$rootfs" -c . | docker import \
        --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$image" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    say "imported $image"
}

for spec in $BASE_IMAGES; do
    image=${spec%%=*}
    if [ "$image" != "$spec" ]; then  # image:tag=SUITE: built, never pulled
        docker image inspect "$image" >/dev/null 2>&1 || build_base "$image" "${spec#*=}"
        continue
    fi
    if docker image inspect "$image" >/dev/null 2>&1; then
        continue
    fi
    if timeout 60 docker pull -q "$image" >/dev/null 2>&1; then
        say "pulled $image"
        continue
    fi
    build_base "$image"
done
say "base images ready: $BASE_IMAGES"
