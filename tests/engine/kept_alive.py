"""Runs inside the agent, with the agent's own python3: COUNT connections through the bottle's
proxy ($HTTPS_PROXY), each a TLS tunnel to HOST:443 carrying one POST of SIZE bytes that the
upstream takes and answers; every connection is then kept open. Prints one JSON object as soon
as all are answered (how many, with what status), keeps them open until its stdin ends (at
most HOLD seconds), then closes them and exits.

    python3 kept_alive.py HOST COUNT SIZE HOLD
"""

import json
import select
import ssl
import sys

from agent_tunnel import open_tunnel  # copied beside this script

host, count, size, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
context = ssl.create_default_context()  # the system bundle, which trusts the bottle's CA
body = b"an ordinary sentence, " * (size // 22) + b"." * (size % 22)
answered: dict[str, int] = {}
kept = []

for _ in range(count):
    try:
        tls = open_tunnel(host, context, timeout=30)
    except OSError:
        answered["no tunnel"] = answered.get("no tunnel", 0) + 1
        continue
    tls.sendall(f"POST /kept HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    reply = b""
    while b"\r\n\r\n" not in reply:  # the head; the answer's small body may come with it
        chunk = tls.recv(65536)
        if not chunk:
            break
        reply += chunk
    status = reply.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
    answered[status] = answered.get(status, 0) + 1
    kept.append(tls)

print(json.dumps({"answered": answered}), flush=True)
select.select([sys.stdin], [], [], hold)
for tls in kept:
    tls.close()
