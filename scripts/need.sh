#!/usr/bin/env bash
# need.sh COMMAND PACKAGE...: install Debian PACKAGEs when COMMAND is not found.
# Also sourced by engine.sh for its apt_install function.
set -euo pipefail

apt_install() {
    [ "$(id -u)" = 0 ] || { echo "need: installing $* needs root (apt-get)" >&2; exit 1; }
    # A fresh machine has no package lists yet; an old list may name gone versions.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; } \
        || { echo "need: apt-get install $* failed" >&2; exit 1; }
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    command=$1; shift
    command -v "$command" >/dev/null 2>&1 || [ -x "/usr/sbin/$command" ] || apt_install "$@"
fi
