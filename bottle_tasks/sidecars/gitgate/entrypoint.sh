#!/bin/sh
# Entrypoint of the bottle git gate sidecar. /etc/bottle (the stage dir's gitgate/,
# read-only) holds gitgate.json (remotes and push policies), secrets.json (tokens, read only
# by the credential helper), policy.json (the firewall's, for its DLP rules) and
# firewall-ca.pem (the only CA the gate trusts: it reaches upstreams through the firewall).
# Mirrors live on the /tmp tmpfs.
set -eu
CONF_DIR=${BOTTLE_GITGATE_CONF:-/etc/bottle}
die() { printf 'bottle-gitgate: error: %s\n' "$*" >&2; exit 78; }
umask 077
for f in gitgate.json secrets.json policy.json firewall-ca.pem; do
    [ -r "$CONF_DIR/$f" ] || die "$CONF_DIR/$f is missing or not readable by uid $(id -u)"
done
mkdir -p /tmp/gitgate/mirrors /tmp/gitgate/home || die "cannot create /tmp/gitgate; run with --tmpfs /tmp"
export HOME=/tmp/gitgate/home
exec /opt/bottle/venv/bin/python -m gitgate.server "$@"
