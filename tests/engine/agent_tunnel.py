"""Shared by the scripts the engine tests run inside the agent with its own python3 (flood.py,
h2_flood.py, kept_alive.py), and copied beside them by their tests: a TLS tunnel to
HOST:443 through the bottle's proxy ($HTTPS_PROXY), as an attacker in the agent would open one."""

import os
import socket
import ssl
from urllib.parse import urlsplit

PROXY = urlsplit(os.environ.get("HTTPS_PROXY", ""))


def open_tunnel(host: str, context: ssl.SSLContext, timeout: float = 10) -> ssl.SSLSocket:
    """CONNECT host:443, then TLS over it; OSError (the socket closed) when the proxy refuses."""
    raw = socket.create_connection((PROXY.hostname, PROXY.port), timeout=timeout)
    try:
        raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        if not raw.recv(4096).startswith(b"HTTP/1.1 200"):
            raise OSError("tunnel refused")
        return context.wrap_socket(raw, server_hostname=host)
    except OSError:
        raw.close()
        raise
