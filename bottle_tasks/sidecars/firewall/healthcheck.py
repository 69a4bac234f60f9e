"""Exit 0 when the firewall (or the egress proxy) answers a request through its event loop
(docker HEALTHCHECK, and the controller's readiness probe through ``docker exec``).

A TCP accept only proves the kernel's listen queue: a firewall whose event loop is
stuck still accepts. So this sends a real proxy request for ``HEALTH_HOST``, which the
firewall answers itself (``host_gate``) without resolving or forwarding anything.
Standard library only: it runs every 30 s and must start fast.
"""

import os
import socket
import sys
import time

# Never a real host (RFC 6761 reserves .invalid); the firewall answers it locally.
HEALTH_HOST = "health.bottle-firewall.invalid"
HEALTH_PATH = "/healthz"
TIMEOUT = 3.0


def probe(port: int, host: str = "127.0.0.1") -> str | None:
    """None when the firewall answered 200, else what went wrong."""
    request = (
        f"GET http://{HEALTH_HOST}{HEALTH_PATH} HTTP/1.1\r\nHost: {HEALTH_HOST}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
            sock.sendall(request)
            head = sock.recv(64)
    except OSError as e:
        return f"no answer from 127.0.0.1:{port}: {e}"
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    if not status.startswith("HTTP/1.1 200"):
        return f"unexpected answer from 127.0.0.1:{port}: {status!r}"
    return None


def main() -> int:
    """``healthcheck.py [PORT] [--wait SECONDS]``. The port: the egress proxy's 8080, else the
    firewall's. ``--wait``: a proxy still starting is asked again every 10 ms, so the controller
    hears of its readiness at once, from one ``docker exec`` (if the proxy dies, the container
    stops and the exec with it)."""
    args = sys.argv[1:]
    wait = 0.0
    if "--wait" in args:
        at = args.index("--wait")
        wait = float(args[at + 1])
        del args[at : at + 2]
    port = int(args[0] if args else os.environ.get("BOTTLE_FIREWALL_PORT", "3128"))
    deadline = time.monotonic() + wait
    while (problem := probe(port)) and time.monotonic() < deadline:
        time.sleep(0.01)
    if problem:
        print(f"firewall unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
