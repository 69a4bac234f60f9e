#!/bin/sh
# Entrypoint of the bottle egress proxy sidecar. /etc/bottle (the stage dir's egress/,
# read-only) holds routes.json, secrets.json, policy.json (a copy of the firewall's) and
# the egress CA; mitmproxy writes next to its CA, so the CA is copied to a private confdir
# on the /tmp tmpfs first.
set -eu
CONF_DIR=${BOTTLE_EGRESS_CONF:-/etc/bottle}
RUN_DIR=/tmp/bottle-egress
die() { printf 'bottle-egress: error: %s\n' "$*" >&2; exit 78; }
umask 077
for f in routes.json secrets.json policy.json mitmproxy-ca.pem; do
    [ -r "$CONF_DIR/$f" ] || die "$CONF_DIR/$f is missing or not readable by uid $(id -u)"
done
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR/confdir" || die "cannot create $RUN_DIR; run with --tmpfs /tmp"
cp "$CONF_DIR/mitmproxy-ca.pem" "$RUN_DIR/confdir/mitmproxy-ca.pem"
export HOME="$RUN_DIR"
exec /opt/bottle/venv/bin/python -m egress.main \
    --routes "$CONF_DIR/routes.json" --secrets "$CONF_DIR/secrets.json" --policy "$CONF_DIR/policy.json" \
    --confdir "$RUN_DIR/confdir" "$@"
