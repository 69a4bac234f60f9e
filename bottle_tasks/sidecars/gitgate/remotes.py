"""The git remotes a bottle's gate serves, and their push policies: one model for the
controller (manifest validation, the gate's config file) and the gate. Pure Python."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# A remote's name is a path segment of the gate's URLs and a file name in the gate.
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
DEFAULT_USERNAME = "x-access-token"  # GitHub's; any user name works for token auth there
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?(?P<host>[^/:]+):(?P<path>.+)$")
_PATH = re.compile(r"^/[A-Za-z0-9._~/-]+$")


class RemoteError(ValueError):
    """What is wrong with a remote, and (after ' — ') how to fix it."""


@dataclass(frozen=True)
class PushPolicy:
    # Glob patterns of what may be updated: "feature/*" names branches, "refs/..." full refs.
    # Empty: every branch except the upstream's default branch.
    refs: tuple[str, ...] = ()
    force: bool = False
    delete: bool = False
    tags: bool = False
    max_bytes: int = 50 * 1024 * 1024

    def to_json(self) -> dict:
        return {"refs": list(self.refs), "force": self.force, "delete": self.delete, "tags": self.tags,
                "max_bytes": self.max_bytes}

    @classmethod
    def from_json(cls, doc: dict) -> "PushPolicy":
        return cls(tuple(doc["refs"]), bool(doc["force"]), bool(doc["delete"]), bool(doc["tags"]),
                   int(doc["max_bytes"]))


@dataclass(frozen=True)
class Remote:
    name: str
    url: str                      # https://host[:port]/path
    secret: str | None = None     # the controller variable holding the token
    username: str = DEFAULT_USERNAME
    push: PushPolicy = field(default_factory=PushPolicy)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 443

    @property
    def allow_entry(self) -> str:
        """The firewall allowlist entry that lets the gate reach this remote."""
        return self.host if self.port == 443 else f"{self.host}:{self.port}"

    def to_json(self) -> dict:
        return {"name": self.name, "url": self.url, "secret": self.secret, "username": self.username,
                "push": self.push.to_json()}

    @classmethod
    def from_json(cls, doc: dict) -> "Remote":
        return cls(doc["name"], doc["url"], doc["secret"], doc["username"], PushPolicy.from_json(doc["push"]))


def https_form(url: str) -> str | None:
    """The HTTPS URL an ssh:// or scp-like (git@host:org/repo.git) URL stands for."""
    if url.startswith("ssh://"):
        parts = urlsplit(url)
        return f"https://{parts.hostname}{parts.path}" if parts.hostname else None
    m = _SCP_LIKE.match(url)
    if m and "://" not in url:
        return f"https://{m['host']}/{m['path'].lstrip('/')}"
    return None


def check_url(url: object) -> str:
    """The URL, normalised; RemoteError when the gate cannot serve it."""
    if not isinstance(url, str) or not url:
        raise RemoteError("a remote needs a URL — write https://host/org/repo.git")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise RemoteError("the URL contains a space or a control character — write it on one line, without spaces")
    if not url.startswith("https://"):
        https = https_form(url)
        if https:
            raise RemoteError(f"'{url}' is an SSH remote; the git gate serves HTTPS remotes only — "
                              f"write {https} (the token in `secret` authenticates it)")
        raise RemoteError(f"'{url}' is not an https:// URL — write https://host/org/repo.git")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RemoteError(f"'{url}' is not a valid URL ({exc}) — write https://host/org/repo.git") from None
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise RemoteError("the URL holds a user name or token — remove it from the URL; name the token's "
                          "variable in `secret` instead")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise RemoteError("the URL has a query or fragment — write just https://host/org/repo.git")
    if not parts.hostname:
        raise RemoteError(f"'{url}' names no host — write https://host/org/repo.git")
    if ":" in parts.hostname:  # the brackets of an IPv6 literal were dropped below
        raise RemoteError(f"'{url}' names an IPv6 address — write the host's name")
    if port is not None and not 0 < port < 65536:
        raise RemoteError(f"'{url}' has no valid port — a port is a number from 1 to 65535")
    if not _PATH.match(parts.path or "") or ".." in parts.path.split("/") or "//" in parts.path:
        raise RemoteError(f"'{url}' has no usable repository path — write https://host/org/repo.git")
    netloc = parts.hostname.lower() + (f":{port}" if port and port != 443 else "")
    return f"https://{netloc}{parts.path}"


def rewrites(remote: Remote, gate_url: str) -> list[tuple[str, str]]:
    """(gate URL, upstream URL) pairs for the agent's `url.<gate>.insteadOf <upstream>`: both
    spellings of the URL, with and without `.git` (git picks the longest matching prefix, so
    `repo.git` never becomes `origin.git.git`)."""
    base = remote.url[:-4] if remote.url.endswith(".git") else remote.url
    gate = f"{gate_url.rstrip('/')}/{remote.name}"
    return [(gate + ".git", base + ".git"), (gate, base)]
