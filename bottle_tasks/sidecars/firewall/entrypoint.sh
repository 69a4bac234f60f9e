#!/bin/sh
# Entrypoint of the bottle firewall sidecar.
#
# /etc/bottle is mounted read-only and mitmproxy wants to write next to its CA
# (it creates mitmproxy-dhparam.pem in its confdir), so the CA is copied to a
# private confdir on the /tmp tmpfs. Upstream certificates are verified against
# the system roots PLUS the bottle's extra CA bundle: mitmproxy's
# ssl_verify_upstream_trusted_ca replaces the default roots rather than adding to
# them (mitmproxy#7096), so the two are concatenated here.
set -eu

CONF_DIR=${BOTTLE_FIREWALL_CONF:-/etc/bottle}
RUN_DIR=${BOTTLE_FIREWALL_RUN:-/tmp/bottle-firewall}
PORT=${BOTTLE_FIREWALL_PORT:-3128}
SYSTEM_BUNDLE=/etc/ssl/certs/ca-certificates.crt

die() {
    printf 'bottle-firewall: error: %s\n' "$*" >&2
    exit 78
}

umask 077
for f in policy.json mitmproxy-ca.pem; do
    [ -r "$CONF_DIR/$f" ] || die "$CONF_DIR/$f is missing or not readable by uid $(id -u); mount the stage dir with -v <stage>/firewall:$CONF_DIR:ro and run with --user <owner uid>:<gid>"
done
[ -r "$SYSTEM_BUNDLE" ] || die "$SYSTEM_BUNDLE is missing from the image"

rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR/confdir" || die "cannot create $RUN_DIR; run with --tmpfs /tmp"
cp "$CONF_DIR/mitmproxy-ca.pem" "$RUN_DIR/confdir/mitmproxy-ca.pem"
{
    cat "$SYSTEM_BUNDLE"
    echo
    if [ -r "$CONF_DIR/extra-ca.pem" ]; then cat "$CONF_DIR/extra-ca.pem"; fi
} >"$RUN_DIR/upstream-ca.pem"

export HOME="$RUN_DIR"
exec /opt/bottle/venv/bin/python -m firewall.main \
    --policy "$CONF_DIR/policy.json" \
    --confdir "$RUN_DIR/confdir" \
    --upstream-ca "$RUN_DIR/upstream-ca.pem" \
    --listen-port "$PORT" \
    "$@"
