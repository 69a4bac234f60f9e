"""Runs inside the agent, with the agent's own python3, as an attacker would: COUNT connections
through the bottle's proxy ($HTTPS_PROXY), each a TLS tunnel to HOST:443 carrying a POST of
SIZE bytes of which all but the last are sent, so the proxy must hold each body to scan it.
Then it holds them all for HOLD seconds and prints one JSON object: how many were held, how
many the proxy refused (and with what status), how many never got a tunnel.

    python3 flood.py HOST COUNT SIZE HOLD
"""

import json
import ssl
import sys
import time

from agent_tunnel import open_tunnel  # copied beside this script

host, count, size, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
context = ssl.create_default_context()  # the system bundle, which trusts the bottle's CA
result = {"held": 0, "no_tunnel": 0, "answered": {}}
held = []
block = b"a" * 65536


def answered(tls) -> str | None:
    """The status line the proxy answered with already, if any."""
    tls.settimeout(0.01)
    try:
        data = tls.recv(4096)
    except (TimeoutError, ssl.SSLWantReadError):
        return None
    except OSError:
        return "closed"
    return data.split(b"\r\n", 1)[0].decode(errors="replace") if data else "closed"


for _ in range(count):
    try:
        tls = open_tunnel(host, context)
    except OSError:
        result["no_tunnel"] += 1
        continue
    try:
        tls.sendall(f"POST /flood HTTP/1.1\r\nHost: {host}\r\nContent-Length: {size}\r\n\r\n".encode())
    except OSError:
        result["no_tunnel"] += 1
        tls.close()
        continue
    sent = 0
    try:
        while sent < size - 1:
            sent += tls.send(block[: size - 1 - sent])
    except OSError:
        pass
    held.append(tls)

time.sleep(hold)
for tls in held:
    status = answered(tls)
    if status is None:
        result["held"] += 1
    else:
        result["answered"][status] = result["answered"].get(status, 0) + 1
    tls.close()
print(json.dumps(result))
