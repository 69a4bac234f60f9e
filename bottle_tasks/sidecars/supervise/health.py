"""Health check (the image's HEALTHCHECK and the controller's readiness probe): the MCP
server's event loop answers /health, and the operator's control socket answers `list`."""

from __future__ import annotations

import http.client
import sys

from .control import call
from .main import PORT


def main() -> int:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=4)
        conn.request("GET", "/health")
        if conn.getresponse().status != 200:
            return 1
        return 0 if call({"op": "list"}).get("ok") else 1
    except (OSError, ValueError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
