"""git's credential helper in the gate: `python -m gitgate.credential REMOTE get`.

Answers only for the remote's own protocol, host, port and path (credential.useHttpPath),
so the token goes to that URL and nowhere else, whatever a redirect or a
configuration names. The token is read from the 0600 secrets file: never argv, never
environment."""
from __future__ import annotations

import sys
from urllib.parse import urlsplit

from . import config

MAX_INPUT = 64 * 1024


def answer(remote_name: str, request: dict[str, str]) -> str:
    remote = config.remotes().get(remote_name)
    if remote is None or not remote.secret:
        return ""
    url = urlsplit(remote.url)
    host = (url.hostname or "") + (f":{url.port}" if url.port else "")
    if request.get("protocol") != "https" or request.get("host", "").lower() != host:
        return ""
    if request.get("path", "").strip("/") != url.path.strip("/"):
        return ""
    token = config.secret(remote.secret)
    if not token:
        return ""
    return f"username={remote.username}\npassword={token}\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] != "get":
        return 0  # store / erase: the gate keeps nothing
    raw = sys.stdin.read(MAX_INPUT)
    request = dict(line.partition("=")[::2] for line in raw.splitlines() if "=" in line)
    sys.stdout.write(answer(argv[0], request))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
