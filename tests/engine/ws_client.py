"""Runs inside the agent, with the agent's own Python: a WebSocket through the bottle's proxy
($HTTPS_PROXY), trusting what the agent trusts. Prints one JSON object.

    python3 ws_client.py HOST PATH MESSAGE

Scripts of other exchanges import `handshake` or `tunnel` from it (copied next to them in the agent)."""
import base64
import json
import os
import socket
import ssl
import sys
from urllib.parse import urlsplit


def tunnel(host: str) -> ssl.SSLSocket:
    """A TLS connection to HOST:443 through the proxy's CONNECT."""
    proxy = urlsplit(os.environ["HTTPS_PROXY"])
    raw = socket.create_connection((proxy.hostname, proxy.port), timeout=20)
    raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += raw.recv(4096)
    return ssl.create_default_context().wrap_socket(raw, server_hostname=host)


def handshake(host: str, path: str, headers: str = ""):
    """A WebSocket to https://HOST/PATH through the proxy: (the TLS socket, the response head).
    `headers`: extra request header lines, each ending in CRLF."""
    conn = tunnel(host)
    key = base64.b64encode(os.urandom(16)).decode()
    conn.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += conn.recv(1)
    return conn, head


def echo(host: str, path: str, message: str) -> dict:
    """Send MESSAGE, read the echo: what the agent sees."""
    conn, head = handshake(host, path, "x-api-key: agent-value\r\n")
    out = {"status": head.split(b" ", 2)[1].decode()}
    if out["status"] == "101":
        payload, mask = message.encode(), os.urandom(4)
        conn.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        frame = conn.recv(2)
        out["echo"] = conn.recv(frame[1] & 0x7F).decode()
        conn.sendall(bytes([0x88, 0x80]) + os.urandom(4))
    return out


if __name__ == "__main__":
    print(json.dumps(echo(*sys.argv[1:4])))
