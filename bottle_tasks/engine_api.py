"""The docker commands a launch makes most, answered through the local engine's API socket.

Why: the docker CLI spends about 12 ms of CPU starting up (a Go binary) before it asks the
engine anything, and a launch makes some 25 calls on two busy cores. Inspecting, starting a
container, joining it to a network and copying the provisioning tar in are most of them, many
on the launch's critical path, and `down` removes containers and networks; asked over the
socket they cost about 0.2 ms each.

The CLI stays the reference: a dry run prints its command, a remote Docker host runs it, and
any command, format or engine this module does not know exactly runs it too (`answer` says
None). What is answered here prints what the CLI prints for the same command (the engine
tests run both and compare): the inspect formats are `docker.py`'s named ones, rendered as
Go's text/template renders them over the same JSON.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode

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


def _at(found: Any, *path: str) -> Any:
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


_API_VERSIONS: dict[str, str] = {}  # socket path -> the API version its engine answered


class Engine:
    """The local engine's API, one connection per request (starts run in threads of their own).
    Once its socket refused a connection it is not asked again: every command is the CLI's."""

    def __init__(self, path: str):
        self.path = path
        self.unreachable = False

    def api_version(self) -> str | None:
        """The engine's API version, asked once per process and socket (each step has an
        `Engine` of its own): the engine takes 5-7 ms to answer `/version` (it asks its
        runtime), and a launch creates two to five containers."""
        if self.path not in _API_VERSIONS:
            status, version = self.request("GET", "/version")
            found = (version or {}).get("ApiVersion") if status == 200 else None
            if not isinstance(found, str):
                return None  # asked again next time
            _API_VERSIONS[self.path] = found
        return _API_VERSIONS[self.path]

    def _connected(self) -> _UnixConnection:
        if self.unreachable:
            raise Unreachable(self.path)
        connection = _UnixConnection(self.path)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            self.unreachable = True
            raise Unreachable(str(exc)) from None
        return connection

    def request(self, method: str, path: str, body: dict | BinaryIO | None = None,
                content_type: str = "application/json") -> tuple[int, dict | None]:
        """(status, JSON answer) of one request; `body`: JSON, or a file sent as it is."""
        connection = self._connected()
        try:
            payload = json.dumps(body).encode() if isinstance(body, dict) else body
            headers = {"Content-Type": content_type} if payload is not None else {}
            if payload is not None and not isinstance(payload, bytes):  # a file: its size, not chunks
                headers["Content-Length"] = str(os.fstat(payload.fileno()).st_size)
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        return response.status, _json(data)

    # -- the commands --------------------------------------------------------
    def answer(self, argv: list[str], stdin_path: str | None = None) -> Result | None:
        """What the CLI would answer to `argv` (its stdin read from `stdin_path`); None when it is
        not one of ours to answer, or the socket cannot be reached."""
        try:
            return self._answer(argv) if stdin_path is None else self._answer_with_input(argv, stdin_path)
        except Unreachable:
            return None
        except (OSError, http.client.HTTPException) as exc:  # cut short, after the engine took it
            return Result("", f"error during connect: the engine's answer on {self.path} was cut short: {exc}\n", 1)
        except (KeyError, TypeError, AttributeError):  # JSON of another shape (another engine version)
            return None  # the CLI asks again (inspects read; a start or join done twice is refused or a no-op)

    def _answer(self, argv: list[str]) -> Result | None:
        match argv:
            case ["docker", kind, "inspect", "--format", fmt, *names] if (kind, fmt) in FORMATS and _operands(names):
                return self.inspect(INSPECTED[kind], FORMATS[kind, fmt], names)
            case ["docker", "start", name] if _operands([name]):
                return self.start(name)
            case ["docker", "network", "connect", *options, network, container] if (
                    (aliases := _aliases(options)) is not None):
                return self.connect(network, container, aliases)
            case ["docker", "rm", "-f", "-v", *names] if _operands(names):
                return self.remove_containers(names)
            case ["docker", "network", "rm", *names] if _operands(names):
                return self.remove_networks(names)
            case ["docker", "kill", "--signal", signal, name] if _operands([name]):
                return self.kill(name, signal)
            case ["docker", "logs", *options, name] if (query := _log_query(options)) is not None and _operands([name]):
                return self.logs(name, query)
            case ["docker", "network", "create", "--driver", "bridge", *options, name] if (
                    (bridge := _network_spec(options)) is not None and _operands([name])):
                return self.create_network(name, *bridge)
            case ["docker", "exec", *rest] if (spec := _exec_spec(rest)) is not None:
                return self.exec_(*spec)
            case ["sh", "-c", docker.BOUNDED, what, seconds, limit, "docker", "exec", *rest] if (
                    seconds.isdigit() and limit.isdigit() and (spec := _exec_spec(rest)) is not None):
                return self.exec_(*spec, bound=(what, int(seconds)), limit=int(limit))
            case ["docker", "create", *_]:
                return self.create(argv)
        return None

    def _answer_with_input(self, argv: list[str], stdin_path: str) -> Result | None:
        match argv:
            case ["docker", "cp", "-", destination] if destination.endswith(":/") and _operands([destination]):
                return self.put_archive(destination[:-2], stdin_path)
        return None

    def inspect(self, path: str, render: Callable[[dict], str], names: list[str]) -> Result:
        lines, errors = [], []
        for name in names:
            status, found = self.request("GET", path.format(_quoted(name)))
            if status == 200:
                if found is None:
                    raise TypeError("not a JSON object")  # another engine's answer: the CLI asks
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

    def put_archive(self, container: str, tar_path: str) -> Result:
        """`docker cp - CONTAINER:/`: the tar unpacked at the root, its owners kept (no -a), and
        a directory never replaced by a file of the same name (the CLI's default)."""
        with open(tar_path, "rb") as tar:
            status, found = self.request("PUT", f"/containers/{_quoted(container)}/archive?path=/&noOverwriteDirNonDir=true",
                                         tar, content_type="application/x-tar")
        return Result("", "", 0) if status == 200 else Result("", _error(found), 1)

    def remove_containers(self, names: list[str]) -> Result:
        """`docker rm -f -v NAME…`: removed side by side, as the CLI does; each name said once
        removed, in order; one that is not there is said on stderr, and is no failure (-f)."""
        def remove(name: str) -> tuple[int, dict | None]:
            return self.request("DELETE", f"/containers/{_quoted(name)}?force=1&v=1")

        with ThreadPoolExecutor(len(names)) as pool:
            answers = list(pool.map(remove, names))
        removed = [name + "\n" for name, (status, _) in zip(names, answers, strict=True) if status == 204]
        failed = [status not in (204, 404) for status, _ in answers]
        errors = [_error(found) for status, found in answers if status != 204]
        return Result("".join(removed), "".join(errors), 1 if any(failed) else 0)

    def remove_networks(self, names: list[str]) -> Result:
        """`docker network rm NAME…`: one after the other (the engine makes them wait anyway)."""
        removed, errors = [], []
        for name in names:
            status, found = self.request("DELETE", f"/networks/{_quoted(name)}")
            if status == 204:
                removed.append(name + "\n")
            else:
                errors.append(_error(found))
        return Result("".join(removed), "".join(errors), 1 if errors else 0)

    def kill(self, name: str, signal: str) -> Result:
        status, found = self.request("POST", f"/containers/{_quoted(name)}/kill?{urlencode({'signal': signal})}")
        return Result(name + "\n", "", 0) if status == 204 else Result("", _error(found), 1)

    def logs(self, name: str, query: dict[str, str]) -> Result | None:
        """`docker logs [--tail N] [--since T] NAME`: its stdout and stderr, each to its own."""
        status, found = self.request("GET", f"/containers/{_quoted(name)}/json")
        if status != 200:
            return Result("", _error(found), 1)
        if _at(found, "Config", "Tty"):  # one raw stream, not stdout and stderr framed apart
            return None
        out: dict[int, list[bytes]] = {STDOUT: [], STDERR: []}
        with self.streaming(f"/containers/{_quoted(name)}/logs?{urlencode(query)}") as (response, _):
            if response.status != 200:
                return Result("", _error(_json(response.read())), 1)
            for stream, payload in frames(response):
                out.get(stream, out[STDERR]).append(payload)
        return _decoded(out, 0)

    def follow_stdout(self, name: str, wait: float) -> Iterator[bytes] | None:
        """The container's stdout from its start on, as it comes, for at most `wait` seconds;
        it ends then, when the container stops, or when the connection breaks. None for a
        container with a terminal (one raw stream) or none at all, or an engine the socket does
        not reach (the CLI's follower, then)."""
        try:
            status, found = self.request("GET", f"/containers/{_quoted(name)}/json")
        except Unreachable:
            return None
        if status != 200 or _at(found, "Config", "Tty"):
            return None
        return self._followed(f"/containers/{_quoted(name)}/logs?follow=1&stdout=1", time.monotonic() + wait)

    def _followed(self, path: str, deadline: float) -> Iterator[bytes]:
        try:
            with self.streaming(path) as (response, sock):
                if response.status != 200:
                    return
                for _, payload in frames(response, sock, deadline):
                    yield payload
        except (OSError, http.client.HTTPException, Unreachable):  # the wait is over (TimeoutError), or broken
            return

    @contextlib.contextmanager
    def streaming(self, path: str, body: dict | None = None) -> Iterator[tuple[http.client.HTTPResponse, socket.socket]]:
        """A GET (a POST of `body`) whose answer is read as it comes: (the response, its socket)."""
        connection = self._connected()
        try:
            sock = connection.sock
            if body is None:
                connection.request("GET", path)
            else:
                connection.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
            yield connection.getresponse(), sock
        finally:
            connection.close()

    def create_network(self, name: str, internal: bool, options: dict[str, str], labels: dict[str, str]) -> Result:
        """`docker network create --driver bridge [--internal] [--opt K=V] [--label K=V] NAME`, with
        the body the CLI sends an engine of API 1.41 (CheckDuplicate: a name taken is refused)."""
        body = {"Name": name, "Driver": "bridge", "Internal": internal, "Options": options, "Labels": labels,
                "CheckDuplicate": True, "IPAM": {"Driver": "default", "Options": {}, "Config": []}}
        status, found = self.request("POST", "/networks/create", body)
        return Result(found["Id"] + "\n", "", 0) if status == 201 and found else Result("", _error(found), 1)

    def create(self, argv: list[str]) -> Result | None:
        """`docker create` as `docker.create` builds it (`engine_create` translates it, or says None),
        asked of an engine of the API whose request it is. An image that is not here is the CLI's to
        pull (the engine says 404 and made nothing): it runs then, as it would have."""
        from . import engine_create

        asked = engine_create.translate(argv)
        if asked is None or not engine_create.cli_adds_nothing(os.environ):
            return None
        if self.api_version() != engine_create.API_VERSION:
            return None
        name, body = asked
        status, found = self.request("POST", f"/containers/create?{urlencode({'name': name})}", body)
        if status == 404:
            return None
        made = (found or {}).get("Id")
        if status != 201 or not isinstance(made, str):
            return Result("", _error(found), 1)
        warnings = "".join(f"WARNING: {warning}\n" for warning in (found or {}).get("Warnings") or [])
        return Result(made + "\n", warnings, 0)  # as the CLI's, its warnings on stderr

    def exec_(self, container: str, command: list[str], user: str | None, workdir: str | None,
              env: list[str] | None = None, bound: tuple[str, int] | None = None,
              limit: int = docker.OUTPUT_LIMIT) -> Result:
        """`docker exec [--env K=V]… [--user U] [--workdir W] CONTAINER CMD…`: its stdout, stderr and exit code
        as the CLI gives them, each stream read up to `limit` bytes. `bound`: (what, seconds) of
        `docker.bounded`, which ends the wait (not the command, as `timeout` ending the CLI does
        not) with the same error and exit 124."""
        body: dict[str, Any] = {"AttachStdout": True, "AttachStderr": True, "Cmd": command}
        body.update({key: value for key, value in (("User", user), ("WorkingDir", workdir), ("Env", env)) if value})
        status, created = self.request("POST", f"/containers/{_quoted(container)}/exec", body)
        if status != 201 or created is None:
            return Result("", _error(created), 1)
        deadline = time.monotonic() + bound[1] if bound else None
        out: dict[int, list[bytes]] = {STDOUT: [], STDERR: []}
        try:
            with self.streaming(f"/exec/{created['Id']}/start", {"Detach": False, "Tty": False}) as (response, sock):
                if response.status != 200:
                    return Result("", _error(_json(response.read())), 1)
                # An exec that says more is cut off, the connection closed.
                if not _kept_within(frames(response, sock, deadline), out, limit):
                    what = bound[0] if bound else "the command"
                    said = docker.TOO_MUCH_OUTPUT.format(what=what, mib=limit >> 20)
                    out[STDERR].append((said + "\n").encode())
                    return _decoded(out, 1)
        except TimeoutError:
            if bound is None:
                raise
            what, seconds = bound
            out[STDERR].append((docker.NOT_ENDED.format(what=what, seconds=seconds) + "\n").encode())
            return _decoded(out, 124)
        return _decoded(out, self._exit_code(created["Id"]))

    def _exit_code(self, exec_id: str) -> int:
        """The exec's exit code once its output has ended (the engine may take a moment to say it)."""
        for _ in range(EXIT_CODE_POLLS):
            status, found = self.request("GET", f"/exec/{exec_id}/json")
            if status == 200 and found and not found.get("Running") and found.get("ExitCode") is not None:
                return int(found["ExitCode"])
            time.sleep(0.01)
        return 1

    def connect(self, network: str, container: str, aliases: list[str]) -> Result:
        body = {"Container": container, "EndpointConfig": {"Aliases": aliases} if aliases else {}}
        status, found = self.request("POST", f"/networks/{_quoted(network)}/connect", body)
        return Result("", "", 0) if status == 200 else Result("", _error(found), 1)


STDOUT, STDERR = 1, 2
EXIT_CODE_POLLS = 200  # of 10 ms: an exec whose output ended is said to have ended well before


def _kept_within(framed: Iterator[tuple[int, bytes]], out: dict[int, list[bytes]], limit: int) -> bool:
    """Each frame's payload kept in `out` by its stream (an unknown one as stderr) while each
    stream holds at most `limit` bytes; False, and nothing more read, once one would hold more."""
    held = dict.fromkeys(out, 0)
    for stream, payload in framed:
        stream = stream if stream in out else STDERR
        if held[stream] + len(payload) > limit:
            return False
        held[stream] += len(payload)
        out[stream].append(payload)
    return True


def _decoded(out: dict[int, list[bytes]], code: int) -> Result:
    stdout, stderr = (b"".join(out[stream]).decode(errors="replace") for stream in (STDOUT, STDERR))
    return Result(stdout, stderr, code)


def frames(response: http.client.HTTPResponse, sock: socket.socket | None = None,
           deadline: float | None = None) -> Iterator[tuple[int, bytes]]:
    """(stream, payload) of a container's framed output (no terminal): each frame is 8 bytes,
    the stream's number and the payload's size, then the payload. With `deadline`, a
    `TimeoutError` once it has passed."""
    while True:
        if sock is not None and deadline is not None:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
        header = response.read(8)
        if len(header) < 8:
            return
        yield header[0], response.read(int.from_bytes(header[4:8], "big"))


UNIX_TIME = re.compile(r"[0-9]+(\.[0-9]{1,9})?")


def _log_query(options: list[str]) -> dict[str, str] | None:
    """The API query of `--tail N` and `--since T`, T a unix time (which the CLI sends as it is;
    a duration or a date it converts first); None for any other option (`--follow`, ...)."""
    pairs = _pairs(options, ("--tail", "--since"))
    if pairs is None:
        return None
    query = {"stdout": "1", "stderr": "1", "tail": "all"}
    for flag, value in pairs:
        if flag == "--since" and not UNIX_TIME.fullmatch(value):
            return None
        query[flag[2:]] = value
    return query


def _json(data: bytes) -> dict | None:
    try:
        found = json.loads(data) if data else None
    except ValueError:
        return {"message": data.decode(errors="replace").strip()}
    return found if isinstance(found, dict) else None


def _operands(names: list[str]) -> bool:
    """At least one name, and none the CLI would read as an option: anything else is the CLI's."""
    return bool(names) and not any(name.startswith("-") for name in names)


def _pairs(options: list[str], flags: tuple[str, ...]) -> list[tuple[str, str]] | None:
    """`--flag value` pairs, each flag one of `flags`; None for anything else."""
    if len(options) % 2 or any(flag not in flags for flag in options[::2]):
        return None
    return list(zip(options[::2], options[1::2], strict=True))


def _key_values(values: list[str]) -> dict[str, str] | None:
    """K=V of `--opt`/`--label` as the CLI splits them (at the first =); None if one has no =."""
    if any("=" not in value for value in values):
        return None
    return dict(value.split("=", 1) for value in values)


def _network_spec(options: list[str]) -> tuple[bool, dict[str, str], dict[str, str]] | None:
    """(internal, options, labels) of `docker.network_create`'s options; None for any other."""
    internal = options[:1] == ["--internal"]
    pairs = _pairs(options[1:] if internal else options, ("--opt", "--label"))
    if pairs is None:
        return None
    opts = _key_values([value for flag, value in pairs if flag == "--opt"])
    labels = _key_values([value for flag, value in pairs if flag == "--label"])
    return None if opts is None or labels is None else (internal, opts, labels)


def _exec_spec(rest: list[str]) -> tuple[str, list[str], str | None, str | None, list[str]] | None:
    """(container, command, user, workdir, env) of `docker exec [--env K=V]… [--user U]
    [--workdir W] C CMD…`; None for any other option (a terminal, stdin: the CLI's)."""
    options: list[str] = []
    while rest[:1] and rest[0].startswith("-"):
        options, rest = options + rest[:2], rest[2:]
    pairs = _pairs(options, ("--user", "--workdir", "--env"))
    if pairs is None or len(rest) < 2 or not _operands(rest[:1]):
        return None
    env = [value for flag, value in pairs if flag == "--env"]
    if _key_values(env) is None:  # `--env NAME` alone takes the CLI's own value: the CLI's
        return None
    given = dict(pairs)
    return rest[0], rest[1:], given.get("--user"), given.get("--workdir"), env


def _aliases(options: list[str]) -> list[str] | None:
    """The aliases of `--alias A --alias B ...`; None for any other option."""
    pairs = _pairs(options, ("--alias",))
    return None if pairs is None else [alias for _, alias in pairs]


def _quoted(name: str) -> str:
    return quote(name, safe="/:@")  # an image reference keeps its registry path and tag


def _error(found: dict | None) -> str:
    message = (found or {}).get("message") or "the engine refused the request"
    return f"Error response from daemon: {message}\n"
