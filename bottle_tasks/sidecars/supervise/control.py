"""The operator's side of the sidecar: a Unix socket in the container's private /tmp.

Only ``docker exec`` reaches it (``python -m supervise.control list|decide ...`` runs in
the container and talks to the socket), so the controller works the same against a
remote Docker host, and nothing on the agent's network, which only sees port 9100, can
list or decide requests. One JSON object per line each way.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys

from .board import Board

SOCKET = "/tmp/bottle-supervise/control.sock"
MAX_LINE = 64 * 1024


async def serve(board: Board, on_decision, path: str = SOCKET) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            writer.write((json.dumps(answer(board, line, on_decision)) + "\n").encode())
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_unix_server(handle, path=path, limit=MAX_LINE)


def answer(board: Board, line: bytes, on_decision) -> dict:
    try:
        command = json.loads(line)
        if command.get("op") == "list":
            return {"ok": True, "requests": [r.public() for r in board.requests.values()]}
        if command.get("op") == "decide":
            request = board.decide(str(command["id"]), str(command["verdict"]), str(command.get("note", "")))
            on_decision(request)
            return {"ok": True, "request": request.public()}
        return {"ok": False, "error": "op is list or decide"}
    except (ValueError, KeyError, TypeError) as e:
        return {"ok": False, "error": str(e).strip("'\"")}


def call(command: dict, path: str = SOCKET) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall((json.dumps(command) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def main(argv: list[str]) -> int:
    """`list`, or `decide ID approved|rejected [NOTE]`: prints the sidecar's JSON answer."""
    if argv[:1] == ["list"]:
        reply = call({"op": "list"})
    elif argv[:1] == ["decide"] and len(argv) in (3, 4):
        reply = call({"op": "decide", "id": argv[1], "verdict": argv[2], "note": argv[3] if len(argv) == 4 else ""})
    else:
        print("usage: python -m supervise.control list | decide ID approved|rejected [NOTE]", file=sys.stderr)
        return 2
    print(json.dumps(reply))
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
