"""The gate's health check (image HEALTHCHECK and the controller's readiness probe): a
request its server answers, not just a TCP accept."""
from __future__ import annotations

import sys
import urllib.request

from .server import HEALTH_PATH


def main() -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:8080{HEALTH_PATH}", timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
