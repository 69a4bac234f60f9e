"""The docker commands a launch makes most, answered through the local engine's API socket.

Why: the docker CLI spends about 12 ms of CPU starting up (a Go binary) before it asks the
engine anything, and a launch makes some 25 calls on two busy cores. Inspecting, starting a
container and joining it to a network are most of them, many on the launch's critical path;
asked over the socket they cost about 0.2 ms each.

The CLI stays the reference: a dry run prints its command, a remote Docker host runs it, and
any command, format or engine this module does not know exactly runs it too (`answer` says
None). What is answered here prints what the CLI prints for the same command (the engine
tests run both and compare): the inspect formats are `docker.py`'s named ones, rendered as
Go's text/template renders them over the same JSON.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import docker
from .target import Result

DEFAULT_SOCKET = "/var/run/docker.sock"
# An engine that accepts the connection but never answers: the CLI would wait for ever;
# this gives up, and the command then fails as the CLI's would with an error.
ANSWER_TIMEOUT = 300.0


def local_socket(environ=os.environ) -> str | None:
    """The engine's socket path when the CLI would talk to a local socket; None when it would
    go elsewhere (a tcp:// or ssh:// DOCKER_HOST, a docker context other than the default)."""
    if environ.get("DOCKER_CONTEXT", "default") != "default":
        return None
    host = environ.get("DOCKER_HOST", "")
    if host:
        return host.removeprefix("unix://") if host.startswith("unix://") else None
    config = Path(environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        current = json.loads(config.read_text()).get("currentContext") or "default"
    except (OSError, ValueError, AttributeError):
        current = "default"  # no config (the CLI's default), or one the CLI would complain of
    return DEFAULT_SOCKET if current == "default" else None


# -- rendering, as Go's text/template over the engine's JSON ------------------
def go_json(value) -> str:
    """`{{json X}}` as the CLI's template function prints it: Go's encoding/json with keys
    sorted, no spaces and no HTML escaping (<, >, & as they are), U+2028/9 escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def go_text(value) -> str:
    """`{{X}}` of a string or a bool."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _at(found: dict, *path: str) -> Any:
    """`.A.B` of the JSON; None where a level is missing or null (Go's nil map)."""
    value: Any = found
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _running_config_networks(found: dict) -> str:
    networks = "".join(f"{name} " for name in sorted(_at(found, "NetworkSettings", "Networks") or {}))
    config = (_at(found, "Config", "Labels") or {}).get(docker.LABEL_CONFIG, "")  # index of a nil map: ""
    return f"{go_text(_at(found, 'State', 'Running'))}|{config}|{networks}"


def _in_key_order(mapping: dict | None, field: str) -> str:
    """`{{range .Map}}{{.Field}} {{end}}`: Go ranges over a map in the order of its keys."""
    mapping = mapping or {}
    return "".join(f"{mapping[key][field]} " for key in sorted(mapping))


FORMATS: dict[tuple[str, str], Callable[[dict], str]] = {  # (kind, format): its rendering
    ("image", docker.ID): lambda found: found["Id"],
    ("image", docker.CONFIG_LABELS): lambda found: go_json(_at(found, "Config", "Labels")),
    ("image", docker.REPO_TAGS): lambda found: go_json(found.get("RepoTags")),
    ("container", docker.ID): lambda found: found["Id"],
    ("container", docker.CONFIG_LABELS): lambda found: go_json(_at(found, "Config", "Labels")),
    ("container", docker.NAME_AND_CONFIG_LABELS): lambda found: f"{found['Name']} {go_json(_at(found, 'Config', 'Labels'))}",
    ("container", docker.NAME_AND_RUNNING): lambda found: f"{found['Name']} {go_text(_at(found, 'State', 'Running'))}",
    ("container", docker.RUNNING_CONFIG_NETWORKS): _running_config_networks,
    ("network", docker.LABELS): lambda found: go_json(found.get("Labels")),
    ("network", docker.NAME_AND_LABELS): lambda found: f"{found['Name']} {go_json(found.get('Labels'))}",
    ("network", docker.NAME_AND_SUBNETS): lambda found: found["Name"] + " " + "".join(
        f"{config.get('Subnet', '')} " for config in _at(found, "IPAM", "Config") or []),
    ("network", docker.ATTACHED_NAMES): lambda found: _in_key_order(found.get("Containers"), "Name"),
    ("volume", docker.LABELS): lambda found: go_json(found.get("Labels")),
}

INSPECTED = {"container": "/containers/{}/json", "network": "/networks/{}", "image": "/images/{}/json",
             "volume": "/volumes/{}"}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=ANSWER_TIMEOUT)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Unreachable(Exception):  # not an OSError: `answer` reports those
    """The socket does not take the request: the CLI, run instead, says why in its words."""


class Engine:
    """The local engine's API, one connection per request (starts run in threads of their own)."""

    def __init__(self, path: str):
        self.path = path

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
        connection = _UnixConnection(self.path)
        try:
            try:
                connection.connect()
            except OSError as exc:
                raise Unreachable(str(exc)) from None
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(data) if data else None
        except ValueError:
            return response.status, {"message": data.decode(errors="replace").strip()}

    # -- the commands --------------------------------------------------------
    def answer(self, argv: list[str]) -> Result | None:
        """What the CLI would answer to `argv`; None when it is not one of ours to answer."""
        try:
            return self._answer(argv)
        except (OSError, http.client.HTTPException) as exc:  # cut short, after the engine took it
            return Result("", f"error during connect: the engine's answer on {self.path} was cut short: {exc}\n", 1)
        except (KeyError, TypeError, AttributeError):  # JSON of another shape (another engine version)
            return None  # the CLI asks again (inspects read; a start or join done twice is refused or a no-op)

    def _answer(self, argv: list[str]) -> Result | None:
        match argv:
            case ["docker", kind, "inspect", "--format", fmt, *names] if (
                    (kind, fmt) in FORMATS and names and not any(name.startswith("-") for name in names)):
                return self.inspect(INSPECTED[kind], FORMATS[kind, fmt], names)
            case ["docker", "start", name] if not name.startswith("-"):
                return self.start(name)
            case ["docker", "network", "connect", *options, network, container] if _aliases(options) is not None:
                return self.connect(network, container, _aliases(options) or [])
        return None

    def inspect(self, path: str, render: Callable[[dict], str], names: list[str]) -> Result:
        lines, errors = [], []
        for name in names:
            status, found = self.request("GET", path.format(_quoted(name)))
            if status == 200 and isinstance(found, dict):
                lines.append(render(found) + "\n")
            else:
                errors.append(_error(found))
        # As the CLI's: an empty line when nothing was found at all.
        return Result("".join(lines) or "\n", "".join(errors), 1 if errors else 0)

    def start(self, name: str) -> Result:
        status, found = self.request("POST", f"/containers/{_quoted(name)}/start")
        if status in (204, 304):  # 304: running already, which the CLI takes as started
            return Result(name + "\n", "", 0)
        return Result("", _error(found) + f"Error: failed to start containers: {name}\n", 1)

    def connect(self, network: str, container: str, aliases: list[str]) -> Result:
        body = {"Container": container, "EndpointConfig": {"Aliases": aliases} if aliases else {}}
        status, found = self.request("POST", f"/networks/{_quoted(network)}/connect", body)
        return Result("", "", 0) if status == 200 else Result("", _error(found), 1)


def _aliases(options: list[str]) -> list[str] | None:
    """The aliases of `--alias A --alias B ...`; None for any other option."""
    if len(options) % 2 or any(flag != "--alias" for flag in options[::2]):
        return None
    return options[1::2]


def _quoted(name: str) -> str:
    return quote(name, safe="/:@")  # an image reference keeps its registry path and tag


def _error(found: dict | None) -> str:
    message = (found or {}).get("message") or "the engine refused the request"
    return f"Error response from daemon: {message}\n"
