#!/usr/bin/env bash
# `make demo`: launch the demo bottle, show one allowed and one refused request from
# inside it, then say how to get in and how to tear it down.
set -euo pipefail
cd "$(dirname "$0")/.."
INV=.venv/bin/inv

$INV use demo launch

echo
echo "── from inside the agent: an allowlisted public registry (through the firewall)"
$INV use demo exec "curl -sS -o /dev/null -w 'registry.npmjs.org answered HTTP %{http_code}\n' https://registry.npmjs.org/is-number"

echo
echo "── from inside the agent: a host that is not on the allowlist"
$INV use demo exec "curl -sS https://example.com/" || echo "(refused, as it should be)"

echo
echo "── the firewall's audit log"
$INV use demo logs

cat <<'TEXT'

The demo bottle is running.
  get in:      .venv/bin/inv use demo shell      (or: claude, exec "CMD")
  live change: .venv/bin/inv use demo allow example.com
  audit log:   .venv/bin/inv use demo logs --follow
  tear down:   .venv/bin/inv use demo down
TEXT
