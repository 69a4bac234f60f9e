"""Egress routes: which requests to a host get which credentials. Pure Python (no mitmproxy),
shared by the egress sidecar and the controller's `inv route` validation.

``routes.json`` (stage file, 0600; never holds a secret value)::

    {"bottle": "demo",
     "routes": [{"host": "api.anthropic.com", "paths": ["/v1/", "/api/claude_code/"],
                 "methods": ["GET", "POST"],
                 "inject": [{"header": "x-api-key", "secret": "ANTHROPIC_API_KEY", "format": "{secret}"}]}]}

A request matches a route when its host is the route's host (the tunnel's real host,
never a client-chosen name), its port is the route's ``port`` (none given: the web ports,
443 and 80, as a plain allowlist entry covers them), its normalised path starts with one
of the route's path prefixes (a prefix ``/v1`` covers ``/v1`` and ``/v1/...``, not
``/v10``), and its method is one of the route's methods (none listed: any).

Paths are normalised before matching, and the normalised path is what is forwarded, so
the upstream sees exactly the path that was matched: ``%2e`` becomes ``.``, ``//``
collapses, ``.`` and ``..`` segments are resolved. A path the upstream could read
differently from us is refused instead: encoded slashes or backslashes (``%2f``,
``%5c``), a backslash, ``;`` path parameters, NUL, or ``..`` above the root.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SECRET = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HOST = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))*")
MAX_ROUTES_BYTES = 1024 * 1024
WEB_PORTS = (443, 80)  # a route without a port serves these, as a plain allowlist entry allows them
_AMBIGUOUS = re.compile(r"%(?:2f|5c|00)|[\\;\x00]", re.IGNORECASE)


class RouteError(ValueError):
    """The routes file or a route is invalid; ``problems`` lists every issue found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class PathError(ValueError):
    """A request path that cannot be matched unambiguously."""


@dataclass(frozen=True)
class Injection:
    header: str
    secret: str
    format: str = "{secret}"

    def value(self, secret_value: str) -> str:
        return self.format.replace("{secret}", secret_value)


@dataclass(frozen=True)
class Route:
    host: str
    paths: tuple[str, ...] = ("/",)
    methods: tuple[str, ...] = ()
    inject: tuple[Injection, ...] = ()
    port: int | None = None  # None: the web ports

    def serves(self, port: int) -> bool:
        return port == self.port if self.port is not None else port in WEB_PORTS

    def matches(self, method: str, path: str) -> bool:
        """``path`` already normalised (the port is checked apart: `serves`)."""
        if self.methods and method not in self.methods:
            return False
        return any(path_has_prefix(path, prefix) for prefix in self.paths)

    def to_json(self) -> dict:
        """The route as routes.json holds it (secret names, never values)."""
        return {
            "host": self.host,
            **({} if self.port is None else {"port": self.port}),
            "paths": list(self.paths),
            "methods": list(self.methods),
            "inject": [{"header": i.header.lower(), "secret": i.secret, "format": i.format} for i in self.inject],
        }


def path_has_prefix(path: str, prefix: str) -> bool:
    if prefix.endswith("/"):
        return path.startswith(prefix) or path == prefix[:-1]
    return path == prefix or path.startswith(prefix + "/")


def normalize_path(target: str) -> str:
    """The request target's path, normalised, with its query; raises PathError when ambiguous."""
    path, sep, query = target.partition("?")
    if not path.startswith("/"):
        raise PathError("the request path does not start with '/'")
    if _AMBIGUOUS.search(path):
        raise PathError("the path holds an encoded slash or backslash, a backslash, ';' or NUL")
    path = re.sub("%2e", ".", path, flags=re.IGNORECASE)
    segments: list[str] = []
    for segment in path.split("/")[1:]:
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise PathError("the path climbs above the root ('..')")
            segments.pop()
            continue
        segments.append(segment)
    trailing = "/" if path.endswith(("/", "/.", "/..")) and segments else ""
    normal = "/" + "/".join(segments) + trailing
    return normal + sep + query


def parse(doc: object) -> tuple[str, tuple[Route, ...]]:
    """(bottle, routes) from a decoded routes document; raises RouteError listing every problem."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        raise RouteError([f"the routes file must be a JSON object, got {type(doc).__name__}"])
    for key in sorted(set(doc) - {"bottle", "routes"}):
        problems.append(f"{key}: unknown key (allowed: bottle, routes)")
    bottle = doc.get("bottle", "")
    if not isinstance(bottle, str):
        problems.append("bottle: must be a string")
    routes: list[Route] = []
    items = doc.get("routes", [])
    if not isinstance(items, list):
        raise RouteError(problems + ["routes: must be a list"])
    for i, item in enumerate(items):
        try:
            routes.append(parse_route(item, f"routes[{i}]"))
        except RouteError as e:
            problems += e.problems
    if problems:
        raise RouteError(problems)
    return bottle, tuple(routes)


def parse_route(item: object, where: str = "route") -> Route:
    problems: list[str] = []
    if not isinstance(item, dict):
        raise RouteError([f"{where}: must be an object with host, port, paths, methods, inject"])
    for key in sorted(set(item) - {"host", "port", "paths", "methods", "inject"}):
        problems.append(f"{where}.{key}: unknown key (allowed: host, inject, methods, paths, port)")
    host = item.get("host")
    if not isinstance(host, str) or not _HOST.fullmatch(host):
        problems.append(f"{where}.host: must be one exact lower-case host name, got {host!r}")
    port = item.get("port")
    if port is not None and (type(port) is not int or not 0 < port < 65536):
        problems.append(f"{where}.port: must be a port number from 1 to 65535 (none: 443 and 80), got {port!r}")
    paths = item.get("paths", ["/"])
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p.startswith("/") for p in paths):
        problems.append(f"{where}.paths: must be a non-empty list of path prefixes starting with '/'")
        paths = ["/"]
    methods = item.get("methods", [])
    if not isinstance(methods, list) or not all(m in HTTP_METHODS for m in methods):
        problems.append(f"{where}.methods: must be a list of {', '.join(HTTP_METHODS)}")
        methods = []
    injections: list[Injection] = []
    for j, spec in enumerate(item.get("inject", []) if isinstance(item.get("inject", []), list) else [None]):
        here = f"{where}.inject[{j}]"
        if not isinstance(spec, dict) or set(spec) - {"header", "secret", "format"}:
            problems.append(f"{here}: must be {{header, secret, format}}")
            continue
        header, secret, fmt = spec.get("header"), spec.get("secret"), spec.get("format", "{secret}")
        if not isinstance(header, str) or not _HEADER.fullmatch(header):
            problems.append(f"{here}.header: not a header name: {header!r}")
        elif not isinstance(secret, str) or not _SECRET.fullmatch(secret):
            problems.append(f"{here}.secret: not a variable name: {secret!r}")
        elif not isinstance(fmt, str) or "{secret}" not in fmt or "\n" in fmt or "\r" in fmt:
            problems.append(f"{here}.format: must contain {{secret}} and no line break")
        else:
            injections.append(Injection(header.lower(), secret, fmt))
    if problems:
        raise RouteError(problems)
    assert isinstance(host, str)  # checked above: a bad host is a problem raised just now
    return Route(host, tuple(paths), tuple(methods), tuple(injections), port)


def load(path: str | Path) -> tuple[str, tuple[Route, ...]]:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_ROUTES_BYTES + 1)
    except OSError as e:
        raise RouteError([f"cannot read {path}: {e.strerror or e}"]) from None
    if len(raw) > MAX_ROUTES_BYTES:
        raise RouteError([f"{path} is larger than {MAX_ROUTES_BYTES} bytes"])
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise RouteError([f"not valid JSON: {e}"]) from None
    return parse(doc)


def load_secrets(path: str | Path, routes: tuple[Route, ...]) -> dict[str, str]:
    """The secret values the routes inject (a JSON object name -> value); every one must be there."""
    try:
        doc = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as e:
        raise RouteError([f"cannot read the secrets file {path}: {e}"]) from None
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise RouteError([f"{path}: must be a JSON object of strings"])
    missing = sorted({i.secret for r in routes for i in r.inject} - set(doc))
    if missing:
        raise RouteError([f"no value for the secret(s) {', '.join(missing)}"])
    bad = sorted(k for k, v in doc.items() if "\n" in v or "\r" in v or "\x00" in v)
    if bad:
        raise RouteError([f"the secret(s) {', '.join(bad)} hold a line break or NUL"])
    return doc
