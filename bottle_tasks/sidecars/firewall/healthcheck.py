"""Exit 0 when the firewall accepts TCP connections on its port (docker HEALTHCHECK / docker exec)."""

import os
import socket
import sys


def main() -> int:
    port = int(os.environ.get("BOTTLE_FIREWALL_PORT", "3128"))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return 0
    except OSError as e:
        print(f"firewall not listening on 127.0.0.1:{port}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
