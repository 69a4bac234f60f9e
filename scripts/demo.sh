#!/usr/bin/env bash
# `make demo`: launch the demo bottle, show one allowed and one refused request from
# inside it, then say how to get in and how to tear it down.
set -euo pipefail
cd "$(dirname "$0")/.."
INV=.venv/bin/inv

hints() {
    cat <<'TEXT'

The demo bottle is running.
  get in:      .venv/bin/inv use demo shell      (or: claude, exec "CMD")
  live change: .venv/bin/inv use demo allow example.com
  audit log:   .venv/bin/inv use demo logs --follow
  tear down:   .venv/bin/inv use demo down
TEXT
}

$INV use demo launch
trap hints EXIT  # from here on the bottle exists: always say how to get in and out

echo
echo "── from inside the agent: an allowlisted public registry (through the firewall)"
$INV use demo exec "curl -sS -o /dev/null -w 'registry.npmjs.org answered HTTP %{http_code}\n' https://registry.npmjs.org/is-number"

echo
echo "── from inside the agent: a host that is not on the allowlist"
# The firewall refuses the tunnel itself: curl sees the 403 of the CONNECT.
status=$($INV use demo exec "curl -sS -o /dev/null -w '%{http_connect}' https://example.com/ 2>/dev/null; true")
if [ "$status" = 403 ]; then
    echo "example.com: refused by the firewall (HTTP 403)"
else
    echo "example.com: expected a 403 from the firewall, got '$status'" >&2
    exit 1
fi

echo
echo "── the firewall's audit log"
$INV use demo logs
