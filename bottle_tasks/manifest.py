"""Load and validate a bottle manifest: YAML, or Markdown whose YAML front matter
holds one agent and whose body is its prompt. The contract is docs/manifest-model.md.

Strict on purpose: the manifest is a security policy, so an unknown key, a wrong
type or a host that does not parse is an error that names the field and says how
to fix it, never a silently weaker bottle.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import urlsplit

import yaml

from .errors import BottleError
from .plan import SLUG_RE
from .schema import (
    MAX_MANIFEST_BYTES,
    Invalid,
    boolean,
    freeze,
    has_control,
    index_path,
    integer,
    items,
    key_path,
    mapping,
    number,
    one_of,
    optional_string,
    parse_yaml,
    string,
    string_list,
    thaw,
    unknown_key,
)
from .sidecars.egress.routes import HTTP_METHODS as ROUTE_METHODS
from .sidecars.egress.routes import WEB_PORTS as ROUTE_WEB_PORTS
from .sidecars.egress.routes import Injection, Route  # one model of a route, for manifest and proxy
from .sidecars.firewall.dlp import BUILTIN_NAMES
from .sidecars.firewall.hosts import HostError, normalize_host
from .sidecars.firewall.patterns import PatternError, compile_pattern
from .sidecars.firewall.policy import ACTIONS as FIREWALL_DLP_ACTIONS
from .sidecars.firewall.policy import MAX_BODY_LIMIT, PATTERN_NAME
from .sidecars.firewall.ssrf import CidrError, guarded_network
from .sidecars.gitgate import remotes as gitgate_remotes  # one model of a gated remote, for manifest and gate
from .sidecars.gitgate.remotes import PushPolicy, Remote

__all__ = ["Agent", "Claude", "Dlp", "DlpPattern", "Git", "Images", "Injection", "Manifest",
           "ManifestError", "Network", "Resources", "Route", "Trust", "Workspace",
           "covers", "load", "thaw"]


class ManifestError(BottleError):
    """A manifest the user must fix. `str()` is "<path>: <field>: <what is wrong> — <how to fix>"."""

    def __init__(self, path: str, field: str, message: str):
        super().__init__(f"{path}: {field}: {message}")
        self.path = path
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.message}"


# --- the model (docs/manifest-model.md) ---------------------------------------

def _empty() -> Mapping:
    return MappingProxyType({})


@dataclass(frozen=True)
class DlpPattern:
    name: str
    regex: str


@dataclass(frozen=True)
class Dlp:
    action: str = "block"
    hosts: Mapping[str, str] = field(default_factory=_empty)
    patterns: tuple[DlpPattern, ...] = ()
    max_body_bytes: int = 1048576


@dataclass(frozen=True)
class Network:
    allow: tuple[str, ...] = ()
    passthrough: tuple[str, ...] = ()
    allowed_cidrs: tuple[str, ...] = ()
    idle_timeout: int = 900
    dlp: Dlp = field(default_factory=Dlp)
    never: tuple[str, ...] = ()   # hosts no `allow`, approval or route may ever open


@dataclass(frozen=True)
class Supervise:
    timeout: int = 600   # seconds a request waits for the operator before it times out


@dataclass(frozen=True)
class Resources:
    memory: str = "4g"
    cpus: float = 2.0
    pids: int = 512


@dataclass(frozen=True)
class Git:
    user_name: str = "bottle agent"
    user_email: str = "agent@bottle.invalid"
    remotes: Mapping[str, Remote] = field(default_factory=_empty)  # name -> remote, served by the git gate


@dataclass(frozen=True)
class Claude:
    permissions_allow: tuple[str, ...] = ()
    permissions_deny: tuple[str, ...] = ()
    mcp_servers: Mapping[str, Mapping] = field(default_factory=_empty)
    model: str | None = None


@dataclass(frozen=True)
class Workspace:
    path: str          # absolute
    copy: bool = True
    include: tuple[str, ...] = ()   # gitignore-style patterns brought back in (bottle_tasks/workspace/)


@dataclass(frozen=True)
class Agent:
    name: str
    prompt: str = ""
    workspace: Workspace | None = None
    runtime: str = "runc"
    resources: Resources = field(default_factory=Resources)
    env: Mapping[str, str] = field(default_factory=_empty)
    secrets: tuple[str, ...] = ()
    git: Git = field(default_factory=Git)
    claude: Claude = field(default_factory=Claude)
    network: Network = field(default_factory=Network)
    routes: tuple[Route, ...] = ()
    supervise: Supervise | None = None   # None: no supervise sidecar

    @property
    def gated_remotes(self) -> tuple[Remote, ...]:
        """The remotes the git gate serves (every one the manifest declares)."""
        return tuple(self.git.remotes.values())


@dataclass(frozen=True)
class Trust:
    extra_ca_bundle: str | None = None   # absolute path, file exists


@dataclass(frozen=True)
class Images:
    base: str = "debian:bookworm-slim"
    proxy_base: str = "debian:trixie-slim"
    packages: tuple[str, ...] = ()  # Debian packages added to the agent image (a cached derived image)


@dataclass(frozen=True)
class Manifest:
    path: str
    trust: Trust
    images: Images
    agents: Mapping[str, Agent]


# --- public entry points ----------------------------------------------------

MISSING_HINT = ("point at another manifest with INVOKE_BOTTLE_MANIFEST=FILE "
                "or `inv use NAME --manifest FILE`; `bottle init` writes one for your project")


def load(path: str | Path) -> Manifest:
    """Read and validate a manifest file; every problem is a ManifestError."""
    path = Path(path).expanduser().absolute()
    try:
        return _load(path)
    except Invalid as e:
        raise ManifestError(str(path), e.field, e.message) from None
    except OSError as e:  # unreadable, a name too long, a link loop: of the manifest or a file it names
        raise ManifestError(str(path), "(file)", f"{e.filename or path}: {e.strerror or e} — fix that file's "
                            "permissions or path") from None
    except RuntimeError as e:  # Path.resolve() of a link loop
        raise ManifestError(str(path), "(file)", f"{e} — fix the link") from None


def _load(path: Path) -> Manifest:
    if not path.is_file():
        problem = "is a directory, not a manifest file" if path.is_dir() else "manifest file not found"
        raise Invalid("(file)", problem, MISSING_HINT)
    if path.suffix not in (".yaml", ".yml", ".md"):
        raise Invalid("(file)", f"unsupported manifest type '{path.suffix}'",
                      "use a .yaml/.yml manifest or a .md file with YAML front matter")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise Invalid("(file)", f"larger than {MAX_MANIFEST_BYTES // 1024} KiB",
                      "a manifest is a few KiB of settings; keep prompts and data in files of their own")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise Invalid("(file)", f"not UTF-8 text ({e.reason} at byte {e.start})", "save the file as UTF-8") from None
    if path.suffix == ".md":
        return _markdown(path, text)
    doc = mapping(parse_yaml(text), "(top level)")
    if "cred_proxy" in doc:
        raise _cred_proxy_error("cred_proxy", doc["cred_proxy"], "agents.NAME.")
    _known_keys(doc, "", TOP_KEYS)
    _version(doc)
    agents = mapping(doc.get("agents"), "agents")
    if not agents:
        raise Invalid("agents", "no agents declared",
                      "add at least one agent, e.g.\n  agents:\n    demo:\n      prompt: ...")
    base = path.parent
    parsed = {name: _agent(_agent_name(name, key_path("agents", name)), spec, key_path("agents", name), base,
                           _default_workspace(path))
              for name, spec in agents.items()}
    return Manifest(str(path), _trust(doc.get("trust"), base), _images(doc.get("images")),
                    MappingProxyType(parsed))


# A Markdown manifest is one agent: its fields plus these document-level keys.
FRONT_MATTER_EXTRA = ("name", "version", "trust", "images")


def _markdown(path: Path, text: str) -> Manifest:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise Invalid("(front matter)", "a Markdown manifest must start with a '---' line",
                      "put the agent's YAML fields between two '---' lines at the top; the text below is the prompt")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        raise Invalid("(front matter)", "the front matter has no closing '---' line",
                      "close the YAML fields with a '---' line; the text below it is the prompt")
    front = mapping(parse_yaml("".join(lines[1:end]), line_offset=1), "(front matter)")
    if "cred_proxy" in front:
        raise _cred_proxy_error("cred_proxy", front["cred_proxy"], "")
    if "prompt" in front:
        raise Invalid("prompt", "a Markdown manifest's prompt is its body",
                      "remove `prompt:` from the front matter and write the prompt below the closing '---'")
    if "agents" in front:
        raise Invalid("agents", "a Markdown manifest holds one agent, so its fields go at the top level",
                      "move the agent's fields up to the front matter's top level (add `name:` if needed), "
                      "or use a .yaml manifest for several agents")
    _known_keys(front, "", FRONT_MATTER_EXTRA + tuple(k for k in AGENT_KEYS if k != "prompt"))
    _version(front)
    name = _agent_name(front.get("name", path.stem), "name",
                       "" if "name" in front else "the name defaults to the file's; add `name:` to the front matter or "
                       "rename the file: ")
    agent_fields = {k: v for k, v in front.items() if k not in FRONT_MATTER_EXTRA}
    agent_fields["prompt"] = "".join(lines[end + 1:]).strip()
    agent = _agent(name, agent_fields, "", path.parent, _default_workspace(path))
    return Manifest(str(path), _trust(front.get("trust"), path.parent), _images(front.get("images")),
                    MappingProxyType({name: agent}))


# --- document level -----------------------------------------------------------

def _known_keys(doc: dict, at: str, allowed: tuple[str, ...]) -> None:
    """Unknown-key check done after the legacy keys had their own, better message."""
    for key in doc:
        if key not in allowed:
            raise unknown_key(at, key, allowed)


TOP_KEYS = ("version", "trust", "images", "agents")


def _version(doc: dict) -> None:
    if doc.get("version", 1) != 1 or isinstance(doc.get("version"), bool):
        raise Invalid("version", f"unsupported manifest version {doc['version']!r}",
                      "write `version: 1` (the only version this bottle understands)")


def _trust(value: Any, base: Path) -> Trust:
    doc = mapping(value, "trust", ("extra_ca_bundle",))
    bundle = optional_string(doc.get("extra_ca_bundle"), "trust.extra_ca_bundle")
    if bundle is None:
        return Trust()
    file = (base / Path(bundle).expanduser()).resolve()
    if not file.is_file():
        raise Invalid("trust.extra_ca_bundle", f"{'not a plain file' if file.exists() else 'file not found'}: {file}",
                      "give the path of a PEM CA bundle (relative to the manifest's folder), or null for none")
    if file.stat().st_size > MAX_CA_BUNDLE_BYTES:
        raise Invalid("trust.extra_ca_bundle", f"{file} is larger than {MAX_CA_BUNDLE_BYTES >> 20} MiB",
                      "point at the PEM certificates to trust (a system bundle is a few hundred KiB)")
    pem = file.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise Invalid("trust.extra_ca_bundle", f"{file} does not look like PEM certificates",
                      "point at a PEM file with '-----BEGIN CERTIFICATE-----' blocks (convert DER with "
                      "`openssl x509 -inform der -in CA.cer -out CA.pem`)")
    if b"PRIVATE KEY-----" in pem:  # the bundle is copied into every image the bottle builds
        raise Invalid("trust.extra_ca_bundle", f"{file} holds a private key as well as certificates",
                      "point at a file of the certificates alone: it is copied into the agent's image")
    return Trust(str(file))


MAX_CA_BUNDLE_BYTES = 16 << 20


_IMAGE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*")


# Debian policy's package name: lower case, digits, + - . ; at least two characters.
_DEB_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
MAX_PACKAGES = 100


def _packages(value: Any) -> tuple[str, ...]:
    names = string_list(value, "images.packages")
    for i, name in enumerate(names):
        if not _DEB_PACKAGE.fullmatch(name):
            raise Invalid(index_path("images.packages", i), f"'{name}' is not a Debian package name",
                          "write the bare package name as `apt-get install` takes it, e.g. "
                          "openjdk-17-jdk-headless (lower case, no version or release)")
    if len(names) > MAX_PACKAGES:
        raise Invalid("images.packages", f"{len(names)} packages, more than {MAX_PACKAGES}",
                      "install fewer, or build an image of your own and name it in images.base")
    return tuple(dict.fromkeys(names))


def _images(value: Any) -> Images:
    doc = mapping(value, "images", ("base", "proxy_base", "packages"))
    refs: dict[str, Any] = {"packages": _packages(doc.get("packages"))}
    for key in ("base", "proxy_base"):
        if key in doc:
            ref = string(doc[key], f"images.{key}")
            if not _IMAGE_REF.fullmatch(ref):
                raise Invalid(f"images.{key}", f"'{ref}' is not an image reference",
                              "write an image like debian:bookworm-slim")
            refs[key] = ref
    return Images(**refs)


# --- one agent ---------------------------------------------------------------

AGENT_KEYS = ("prompt", "workspace", "runtime", "resources", "env", "secrets", "git",
              "claude", "network", "egress_proxy", "supervise")
# An agent's name is its bottle's default name: the same rule as every bottle name.
AGENT_NAME = SLUG_RE
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _agent_name(name: Any, at: str, fix: str = "") -> str:
    if not isinstance(name, str) or not AGENT_NAME.fullmatch(name):
        raise Invalid(at, f"invalid agent name {name!r}",
                      fix + "use 1-31 lower-case letters, digits and '-', starting with a letter or digit (e.g. demo)")
    return name


def _default_workspace(path: Path) -> dict | None:
    """A project's own manifest (bottle.yaml / bottle.md, found by the `bottle` command)
    works on its folder unless it says otherwise; other manifests start empty."""
    return {"path": "."} if path.name in ("bottle.yaml", "bottle.md") else None


def _agent(name: str, value: Any, at: str, base: Path, default_workspace: dict | None = None) -> Agent:
    def sub(key: str) -> str:
        return key_path(at, key)

    doc = mapping(value, at)
    if "cred_proxy" in doc:
        raise _cred_proxy_error(sub("cred_proxy"), doc["cred_proxy"], "")
    _known_keys(doc, at, AGENT_KEYS)
    secrets = _secrets(doc.get("secrets"), sub("secrets"))
    env = _env(doc.get("env"), sub("env"), secrets)
    network = _network(doc.get("network"), sub("network"))
    return Agent(
        name=name,
        prompt=string(doc.get("prompt", ""), sub("prompt"), empty_ok=True),
        workspace=_workspace(doc.get("workspace", default_workspace), sub("workspace"), base),
        runtime=one_of(doc.get("runtime", "runc"), sub("runtime"), ("runc", "runsc")),
        resources=_resources(doc.get("resources"), sub("resources")),
        env=MappingProxyType(env),
        secrets=secrets,
        git=_git(doc.get("git"), sub("git"), secrets, network.never),
        claude=_claude(doc.get("claude"), sub("claude")),
        network=network,
        routes=_routes(doc.get("egress_proxy"), sub("egress_proxy"), secrets, network),
        supervise=_supervise(doc.get("supervise"), sub("supervise")),
    )


def _supervise(value: Any, at: str) -> Supervise | None:
    doc = mapping(value, at, ("enabled", "timeout"))
    if not boolean(doc.get("enabled", False), key_path(at, "enabled")):
        if "timeout" in doc and "enabled" not in doc:  # settings of a sidecar that will not run
            raise Invalid(key_path(at, "enabled"), "supervise has settings but is not enabled",
                          "add `enabled: true`, or drop the supervise section")
        return None
    timeout = integer(doc.get("timeout", 600), key_path(at, "timeout"), 5)
    if timeout > 3600:
        raise Invalid(key_path(at, "timeout"), f"at most 3600 seconds, got {timeout}",
                      "a request holds the agent's tool call open: minutes, not hours")
    return Supervise(timeout=timeout)


def _workspace(value: Any, at: str, base: Path) -> Workspace | None:
    if value is None:
        return None
    doc = mapping(value, at, ("path", "copy", "include"))
    if "path" not in doc:
        raise Invalid(key_path(at, "path"), "missing", "write `path: .` (relative to the manifest's folder), "
                      "or `workspace: null` for no workspace")
    folder = (base / Path(string(doc["path"], key_path(at, "path"))).expanduser()).resolve()
    if not folder.is_dir():
        raise Invalid(key_path(at, "path"), f"not an existing directory: {folder}",
                      "give a folder relative to the manifest's folder, or `workspace: null`")
    return Workspace(str(folder), boolean(doc.get("copy", True), key_path(at, "copy")),
                     _include(doc.get("include"), key_path(at, "include")))


def _include(value: Any, at: str) -> tuple[str, ...]:
    """Patterns in .gitignore syntax, relative to the workspace, naming files to copy even
    though git, .bottleignore or the credential rules leave them out."""
    import pathspec  # only for a manifest with include patterns: most have none

    patterns = string_list(value, at)
    for i, pattern in enumerate(patterns):
        where = index_path(at, i)
        if pattern.startswith(("!", "#")):
            raise Invalid(where, f"'{pattern}' starts with '{pattern[0]}', which means nothing here",
                          "list only what to bring in, e.g. dist/ or config/dev.pem")
        if ".." in pattern.split("/") or pattern.startswith("~"):
            raise Invalid(where, f"'{pattern}' points outside the workspace",
                          "write a pattern relative to the workspace folder, e.g. assets/**/*.png")
        try:
            pathspec.GitIgnoreSpec.from_lines([pattern])
        except (ValueError, TypeError) as exc:
            raise Invalid(where, f"'{pattern}' is not a gitignore-style pattern ({exc})",
                          "write a pattern as in .gitignore, e.g. dist/ or *.pem") from None
    return patterns


_MEMORY = re.compile(r"[1-9][0-9]*[kmg]")


def _resources(value: Any, at: str) -> Resources:
    doc = mapping(value, at, ("memory", "cpus", "pids"))
    out: dict[str, Any] = {}
    if "memory" in doc:
        memory = doc["memory"]
        if not isinstance(memory, str) or not _MEMORY.fullmatch(memory.lower()):
            raise Invalid(key_path(at, "memory"), f"invalid memory size {memory!r}",
                          "write a whole number with a unit k, m or g, e.g. 512m or 2g")
        out["memory"] = memory.lower()
    if "cpus" in doc:
        out["cpus"] = number(doc["cpus"], key_path(at, "cpus"), maximum=1024)
    if "pids" in doc:
        # Below a handful of processes not even the shell, git and node start.
        out["pids"] = integer(doc["pids"], key_path(at, "pids"), 16)
    return Resources(**out)


def _secrets(value: Any, at: str) -> tuple[str, ...]:
    names = string_list(value, at)
    for i, name in enumerate(names):
        if not ENV_NAME.fullmatch(name):
            raise Invalid(index_path(at, i), f"'{name}' is not an environment variable name",
                          "list the NAME of a controller environment variable (e.g. ANTHROPIC_API_KEY), "
                          "never its value")
        if name in names[:i]:
            raise Invalid(index_path(at, i), f"'{name}' is listed twice", "remove the duplicate")
    return names


def _env(value: Any, at: str, secrets: tuple[str, ...]) -> dict[str, str]:
    env = mapping(value, at)
    for key, val in env.items():
        if not ENV_NAME.fullmatch(key):
            raise Invalid(key_path(at, key), f"'{key}' is not a valid environment variable name",
                          "use letters, digits and '_', not starting with a digit")
        if key in secrets:
            raise Invalid(key_path(at, key), f"'{key}' is also listed in secrets",
                          "keep secret values out of the manifest: remove it from env")
        if not isinstance(val, str):
            raise Invalid(key_path(at, key), f"value must be a string, got {type(val).__name__} {val!r}",
                          f'quote it: {key}: "{val}"')
        if has_control(val, allowed="\t"):
            raise Invalid(key_path(at, key), "contains a line break or another control character",
                          "write it on one line: the agent's environment is handed over line by line")
    return dict(env)


def _one_line(value: str, at: str) -> str:
    """A value written into a config file line (.gitconfig): no line breaks or control characters."""
    if has_control(value):
        raise Invalid(at, "contains a line break or another control character",
                      "write it on one line (it goes into a config file line by line)")
    return value


def _git(value: Any, at: str, secrets: tuple[str, ...] = (), never: tuple[str, ...] = ()) -> Git:
    doc = mapping(value, at, ("user_name", "user_email", "remotes"))
    out: dict[str, Any] = {}
    if "user_name" in doc:
        out["user_name"] = _one_line(string(doc["user_name"], key_path(at, "user_name")), key_path(at, "user_name"))
    if "user_email" in doc:
        email = _one_line(string(doc["user_email"], key_path(at, "user_email")), key_path(at, "user_email"))
        if "@" not in email:
            raise Invalid(key_path(at, "user_email"), f"'{email}' is not an e-mail address",
                          "write an address such as agent@bottle.invalid")
        out["user_email"] = email
    remotes = mapping(doc.get("remotes"), key_path(at, "remotes"))
    out["remotes"] = MappingProxyType({name: _remote(name, spec, key_path(key_path(at, "remotes"), name), secrets)
                                       for name, spec in remotes.items()})
    for name, remote in out["remotes"].items():  # the gate's own allowlist: network.never rules it too
        banned = never_hit(remote.allow_entry, never)
        if banned:
            raise Invalid(key_path(key_path(at, "remotes"), name), f"its host '{remote.host}' is under '{banned}', "
                          "which network.never forbids", "take one of them out")
    return Git(**out)


REMOTE_KEYS = ("url", "secret", "username", "push")
PUSH_KEYS = ("refs", "force", "delete", "tags", "max_bytes")
_REF_PATTERN = re.compile(r"[A-Za-z0-9._/*?\[\]+=,-]+")


def _remote(name: str, value: Any, at: str, secrets: tuple[str, ...]) -> Remote:
    """`origin: https://...` or `origin: {url, secret, username, push}` (docs/manifest-model.md)."""
    if not gitgate_remotes.NAME.fullmatch(name):
        raise Invalid(at, f"invalid remote name {name!r}",
                      "use 1-40 lower-case letters, digits, '-' or '_', starting with a letter or digit (e.g. origin)")
    doc = mapping({"url": value} if isinstance(value, str) else value, at, REMOTE_KEYS)
    try:
        url = gitgate_remotes.check_url(doc.get("url"))
    except gitgate_remotes.RemoteError as exc:
        problem, _, fix = str(exc).partition(" — ")
        raise Invalid(key_path(at, "url"), problem, fix) from None
    _host(urlsplit(url).hostname, key_path(at, "url"), wildcard=False)  # a name as network.allow takes it
    secret = optional_string(doc.get("secret"), key_path(at, "secret"))
    if secret is not None and secret not in secrets:
        raise Invalid(key_path(at, "secret"), f"secret '{secret}' is not in this agent's secrets",
                      f"add '{secret}' to the agent's `secrets:` list (the token stays in the git gate)")
    username = _one_line(string(doc.get("username", gitgate_remotes.DEFAULT_USERNAME), key_path(at, "username")),
                         key_path(at, "username"))
    if ":" in username or " " in username:
        raise Invalid(key_path(at, "username"), "a user name cannot contain ':' or spaces",
                      "write the account's user name, or leave it out (x-access-token)")
    return Remote(name, url, secret, username, _push(doc.get("push"), key_path(at, "push")))


def _push(value: Any, at: str) -> PushPolicy:
    doc = mapping(value, at, PUSH_KEYS)
    refs = string_list(doc.get("refs"), key_path(at, "refs"))
    for i, pattern in enumerate(refs):
        if not _REF_PATTERN.fullmatch(pattern) or ".." in pattern or pattern.startswith(("/", "-")):
            raise Invalid(index_path(key_path(at, "refs"), i), f"'{pattern}' is not a ref pattern",
                          "write a branch glob such as review/* or agent-*, or a full ref such as refs/heads/dev")
        if pattern.startswith("refs/") and not pattern.startswith(("refs/heads/", "refs/tags/")):
            raise Invalid(index_path(key_path(at, "refs"), i), f"'{pattern}' is neither a branch nor a tag",
                          "the gate pushes refs/heads/... and refs/tags/... only")
    out: dict[str, Any] = {"refs": refs}
    for key in ("force", "delete", "tags"):
        if key in doc:
            out[key] = boolean(doc[key], key_path(at, key))
    if "max_bytes" in doc:
        out["max_bytes"] = integer(doc["max_bytes"], key_path(at, "max_bytes"), 1024)
        if out["max_bytes"] > 1 << 31:
            raise Invalid(key_path(at, "max_bytes"), "at most 2 GiB", "write a smaller size in bytes")
    return PushPolicy(**out)


def _json_only(value: Any, at: str) -> None:
    """`value` holds only what JSON can write: YAML reads `2024-01-01` as a date, which failed
    the launch at its last step, and `.nan` would have been written as invalid JSON."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise Invalid(at, f"key {key!r} is not text", f'quote it: "{key}"')
            _json_only(item, key_path(at, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _json_only(item, index_path(at, i))
    elif isinstance(value, float) and not math.isfinite(value):
        raise Invalid(at, f"{value} is not a number JSON can hold", "write a finite number, or quote it")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise Invalid(at, f"YAML read this as a {type(value).__name__}, which Claude's settings cannot hold",
                      f'quote it: "{value}"')


def _claude(value: Any, at: str) -> Claude:
    doc = mapping(value, at, ("permissions", "mcp_servers", "model"))
    perms_at = key_path(at, "permissions")
    perms = mapping(doc.get("permissions"), perms_at, ("allow", "deny"))
    servers_at = key_path(at, "mcp_servers")
    servers = mapping(doc.get("mcp_servers"), servers_at)
    for name, spec in servers.items():
        mapping(spec, key_path(servers_at, name))  # contents pass through to Claude's settings
        _json_only(spec, key_path(servers_at, name))
    return Claude(
        permissions_allow=string_list(perms.get("allow"), key_path(perms_at, "allow")),
        permissions_deny=string_list(perms.get("deny"), key_path(perms_at, "deny")),
        mcp_servers=freeze(servers),
        model=optional_string(doc.get("model"), key_path(at, "model")),
    )


# --- network policy -------------------------------------------------------------



# ASCII digits ([0-9], not \d: that takes other scripts' digits too), to the very end (\Z: `$`
# would also match before a trailing newline)
_PORT_SUFFIX = re.compile(r"^(?P<host>[^:]+):(?P<port>[0-9]{1,5})\Z")


def _host(value: Any, at: str, wildcard: bool = True, port: bool = False) -> str:
    """A host pattern as it may stand in the manifest; with `port`, also `host:port` (allowlist)."""
    host = string(value, at).strip().lower().rstrip(".")
    with_port = _PORT_SUFFIX.match(host) if port and "://" not in host else None
    if with_port:
        number = int(with_port["port"])
        if not 0 < number < 65536:
            raise Invalid(at, f"'{value}' has no valid port", "a port is a number from 1 to 65535")
        return f"{_host(with_port['host'], at, wildcard)}:{number}"
    if "://" in host or "/" in host or ":" in host:
        how = ("write only the host name, without scheme or path (e.g. pypi.org); "
               "host:port for a port other than 443 and 80" if port
               else "write only the host name, without scheme, port or path (e.g. pypi.org)")
        raise Invalid(at, f"'{value}' is not a bare host name", how)
    name = host[2:] if host.startswith("*.") else host
    if name != host and not wildcard:
        raise Invalid(at, f"'{value}': a wildcard is not allowed here", "write one exact host name")
    try:  # the firewall's own grammar: what validates here is what the firewall will match
        valid = "*" not in name and normalize_host(name) == name
    except HostError:
        valid = False
    if not valid:
        raise Invalid(at, f"'{value}' is not a valid host name",
                      "write an exact host (pypi.org) or a wildcard only as a leading '*.' (*.pypi.org)")
    if name != host and "." not in name:
        raise Invalid(at, f"'{value}' would allow a whole top-level domain",
                      "narrow the wildcard to a domain, e.g. *.example.com")
    if "." not in name:
        raise Invalid(at, f"'{value}' is a single-label name: inside a bottle that names one of its own "
                      "containers (firewall, egress) or the machine itself (localhost)",
                      "write the host's full name, e.g. api.example.com")
    return host


def allowlist_entry(value: str) -> str:
    """`value` as an allowlist entry (`host` or `host:port`) is written in the manifest, the
    form every comparison with `network.never` and the allowlist is made in (`METADATA.x.` is
    `metadata.x`); Invalid, saying what is wrong and how to fix it, when it may not be one."""
    return _host(value, "host", port=True)


def split_port(entry: str) -> tuple[str, int | None]:
    """An allowlist entry as (host pattern, port); no port: the web ports (443, 80)."""
    with_port = _PORT_SUFFIX.match(entry)
    return (with_port["host"], int(with_port["port"])) if with_port else (entry, None)


def covers(pattern: str, host: str) -> bool:
    """Does allow entry `pattern` (exact or `*.suffix`, maybe `:port`) cover `host` (which may
    itself be a wildcard, maybe with a port) on the same ports?"""
    (p_host, p_port), (h_host, h_port) = split_port(pattern), split_port(host)
    return p_port == h_port and (h_host == p_host or (p_host.startswith("*.") and h_host.endswith(p_host[1:])))


def never_hit(entry: str, never) -> str | None:
    """The `network.never` host that allow entry `entry` (maybe `*.suffix`, maybe `:port`)
    would reach, on any port; None when it reaches none."""
    host = split_port(entry)[0]
    for banned in never:
        if covers(banned, host) or covers(host, banned):
            return banned
        if banned.startswith("*.") and host.startswith("*.") and (host.endswith(banned[1:]) or banned.endswith(host[1:])):
            return banned
    return None


def allowed_on_some_port(host: str, allow) -> bool:
    """Is `host` allowed on some port (passthrough, DLP overrides)?"""
    return any(covers(split_port(pattern)[0], host) for pattern in allow)


NETWORK_KEYS = ("allow", "passthrough", "allowed_cidrs", "idle_timeout", "dlp", "never")


def _network(value: Any, at: str) -> Network:
    doc = mapping(value, at, NETWORK_KEYS)
    allow = _once([(p, _host(h, p, port=True)) for p, h in items(doc.get("allow"), key_path(at, "allow"))])
    listed = []
    for p, h in items(doc.get("passthrough"), key_path(at, "passthrough")):
        host = _host(h, p)
        if not allowed_on_some_port(host, allow):
            raise Invalid(p, f"'{host}' is not in network.allow",
                          f"passthrough only exempts allowed hosts from inspection: add '{host}' to network.allow")
        listed.append((p, host))
    passthrough = _once(listed)
    cidrs = [_guarded_cidr(c, p) for p, c in items(doc.get("allowed_cidrs"), key_path(at, "allowed_cidrs"))]
    never = tuple(_host(h, p) for p, h in items(doc.get("never"), key_path(at, "never")))
    for i, entry in enumerate(allow):
        banned = never_hit(entry, never)
        if banned:
            raise Invalid(key_path(at, "allow") + f"[{i}]", f"'{entry}' reaches '{banned}', which network.never forbids",
                          "take one of them out")
    out: dict[str, Any] = {"never": never}
    if "idle_timeout" in doc:
        out["idle_timeout"] = integer(doc["idle_timeout"], key_path(at, "idle_timeout"), 1, MAX_IDLE_TIMEOUT)
    return Network(allow=allow, passthrough=passthrough, allowed_cidrs=tuple(cidrs),
                   dlp=_dlp(doc.get("dlp"), key_path(at, "dlp"), allow), **out)


MAX_IDLE_TIMEOUT = 7 * 24 * 3600  # the firewall's own bound


def _once(entries: list[tuple[str, str]]) -> tuple[str, ...]:
    """Host entries (field path, as normalised), each at most once: `PyPI.org` is `pypi.org`."""
    seen: dict[str, str] = {}
    for at, entry in entries:
        if entry in seen:
            raise Invalid(at, f"'{entry}' is listed already, at {seen[entry]}", "keep one of the two")
        seen[entry] = at
    return tuple(seen)


def _guarded_cidr(value: Any, at: str) -> str:
    """An address range the SSRF guard would refuse, written exactly (the firewall's rule).

    Strict on purpose: `10.0.0.1/8` (host bits set) is a typo for something, and a
    range with public addresses (`0.0.0.0/1`) would switch the guard off."""
    try:
        return str(guarded_network(string(value, at).strip()))
    except CidrError as e:
        raise Invalid(at, str(e), e.fix) from None


DLP_ACTIONS = FIREWALL_DLP_ACTIONS  # one list of action names, the firewall's


def _dlp(value: Any, at: str, allow: tuple[str, ...]) -> Dlp:
    doc = mapping(value, at, ("action", "hosts", "patterns", "max_body_bytes"))
    hosts_at = key_path(at, "hosts")
    hosts = {}
    for raw, action in mapping(doc.get("hosts"), hosts_at).items():
        p = key_path(hosts_at, raw)
        host = _host(raw, p)
        if not allowed_on_some_port(host, allow):
            raise Invalid(p, f"'{host}' is not in network.allow",
                          f"a DLP override for a host the firewall blocks anyway is likely a typo: "
                          f"fix the name or add '{host}' to network.allow")
        if host in hosts:
            raise Invalid(p, f"'{host}' has a DLP override already (names are compared in lower case)",
                          "keep one of the two")
        hosts[host] = one_of(action, p, DLP_ACTIONS)
    patterns: list[DlpPattern] = []
    for p, item in items(doc.get("patterns"), key_path(at, "patterns")):
        spec = mapping(item, p, ("name", "regex"))
        for key in ("name", "regex"):
            if key not in spec:
                raise Invalid(key_path(p, key), "missing", "each pattern needs a name and a regex")
        regex = string(spec["regex"], key_path(p, "regex"))
        try:
            compile_pattern(regex)
        except PatternError as e:
            raise Invalid(key_path(p, "regex"), str(e),
                          "write an RE2 regular expression (https://github.com/google/re2/wiki/Syntax); "
                          "quote it in single quotes to keep backslashes") from None
        name = string(spec["name"], key_path(p, "name"))
        if not PATTERN_NAME.match(name):
            raise Invalid(key_path(p, "name"), f"'{name}' is not a rule name",
                          "use lower-case letters, digits, '-', '_' or '.', at most 63 characters")
        if name in BUILTIN_NAMES or any(name == other.name for other in patterns):
            raise Invalid(key_path(p, "name"), f"'{name}' is already the name of another rule",
                          f"pick another name (built-in rules: {', '.join(sorted(BUILTIN_NAMES))})")
        patterns.append(DlpPattern(name, regex))
    out: dict[str, Any] = {}
    if "max_body_bytes" in doc:
        size = integer(doc["max_body_bytes"], key_path(at, "max_body_bytes"), 1)
        if size > MAX_BODY_LIMIT:
            raise Invalid(key_path(at, "max_body_bytes"),
                          f"{size} is more than {MAX_BODY_LIMIT} (32 MiB, the largest body the firewall holds whole to scan)",
                          "bodies this size cannot be scanned; set the host's DLP action to off instead")
        out["max_body_bytes"] = size
    return Dlp(action=one_of(doc.get("action", "block"), key_path(at, "action"), DLP_ACTIONS),
               hosts=MappingProxyType(hosts), patterns=tuple(patterns), **out)


# --- egress proxy routes -----------------------------------------------------------

# The methods a route may name: the egress proxy's list (CONNECT and TRACE never carry an API call).
HTTP_METHODS = ROUTE_METHODS
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")   # RFC 9110 header field name


def _routes(value: Any, at: str, secrets: tuple[str, ...], network: Network) -> tuple[Route, ...]:
    doc = mapping(value, at, ("routes",))
    allow = network.allow
    routes = []
    for p, item in items(doc.get("routes"), key_path(at, "routes")):
        spec = mapping(item, p, ("host", "paths", "methods", "inject"))
        if "host" not in spec:
            raise Invalid(key_path(p, "host"), "missing", "name the exact host this route serves, e.g. host: api.example.com")
        # Credentials go to one exact host, never to every host under a wildcard; and to one
        # port (`host:port`), or to the web ports the plain host name stands for.
        host, port = split_port(_host(spec["host"], key_path(p, "host"), wildcard=False, port=True))
        if not route_allowed(host, port, allow):
            entry = allow_entry(host, port)
            raise Invalid(key_path(p, "host"), f"'{entry}' is not in network.allow",
                          f"the firewall would block this route: add '{entry}' to network.allow")
        unopened = passthrough_covering(host, network.passthrough)
        if unopened:
            raise Invalid(key_path(p, "host"), f"'{host}' is also covered by network.passthrough ('{unopened}')",
                          PASSTHROUGH_ROUTE_FIX)
        paths = string_list(spec.get("paths", ["/"]), key_path(p, "paths"))
        for i, path in enumerate(paths):
            if not path.startswith("/"):
                raise Invalid(index_path(key_path(p, "paths"), i), f"path prefix '{path}' does not start with '/'",
                              f"write it as '/{path}'")
        methods = []
        for i, method in enumerate(string_list(spec.get("methods"), key_path(p, "methods"))):
            if method.upper() not in HTTP_METHODS:
                raise Invalid(index_path(key_path(p, "methods"), i), f"'{method}' is not an HTTP method",
                              f"use one of: {', '.join(HTTP_METHODS)}")
            methods.append(method.upper())
        inject = tuple(_injection(q, x, secrets) for q, x in items(spec.get("inject"), key_path(p, "inject")))
        routes.append(Route(host, paths or ("/",), tuple(methods), inject, port))
    return tuple(routes)


PASSTHROUGH_ROUTE_FIX = ("a route's host is opened, to inject and to scrub what comes back, and passthrough "
                         "hosts are not: take the host out of network.passthrough, or drop the route")


def passthrough_covering(host: str, passthrough: tuple[str, ...]) -> str | None:
    """The network.passthrough entry that covers `host`, if any."""
    return next((entry for entry in passthrough if covers(entry, host)), None)


def allow_entry(host: str, port: int | None) -> str:
    """The allowlist entry a route on `port` of `host` needs: the plain host on the web ports."""
    return host if port is None or port in ROUTE_WEB_PORTS else f"{host}:{port}"


def route_allowed(host: str, port: int | None, allow) -> bool:
    """Does the allowlist let the firewall pass what a route on `port` of `host` sends?"""
    return any(covers(pattern, allow_entry(host, port)) for pattern in allow)


def _injection(at: str, value: Any, secrets: tuple[str, ...]) -> Injection:
    spec = mapping(value, at, ("header", "secret", "format"))
    for key in ("header", "secret"):
        if key not in spec:
            raise Invalid(key_path(at, key), "missing", "an injection needs a header and a secret, "
                          "e.g. {header: x-api-key, secret: ANTHROPIC_API_KEY}")
    header = string(spec["header"], key_path(at, "header"))
    if not _TOKEN.fullmatch(header):
        raise Invalid(key_path(at, "header"), f"'{header}' is not a valid header name",
                      "use letters, digits and '-' only, e.g. x-api-key or Authorization")
    secret = string(spec["secret"], key_path(at, "secret"))
    if secret not in secrets:
        raise Invalid(key_path(at, "secret"), f"secret '{secret}' is not in this agent's secrets",
                      f"add '{secret}' to the agent's `secrets:` list")
    fmt = string(spec.get("format", "{secret}"), key_path(at, "format"))
    if "{secret}" not in fmt:
        raise Invalid(key_path(at, "format"), f"format '{fmt}' does not contain {{secret}}",
                      "write where the value goes, e.g. \"Bearer {secret}\"")
    return Injection(header, secret, fmt)


# --- legacy -----------------------------------------------------------------------

def _cred_proxy_error(at: str, value: Any, prefix: str) -> Invalid:
    """`cred_proxy` was the old name; show the `egress_proxy.routes` the user should write instead."""
    entries = value if isinstance(value, list) else [value]
    routes: list[dict] = []
    for entry in entries:
        if not isinstance(entry, dict) or "host" not in entry:
            routes = []
            break
        route = {"host": entry["host"]}
        if "header" in entry or "secret" in entry:
            inj = {"header": entry.get("header", "HEADER"), "secret": entry.get("secret", "SECRET_NAME")}
            if entry.get("format", "{secret}") != "{secret}":
                inj["format"] = entry["format"]
            route["inject"] = [inj]
        routes.append(route)
    if not routes:
        routes = [{"host": "HOST", "inject": [{"header": "HEADER", "secret": "SECRET_NAME"}]}]
    snippet = yaml.safe_dump({"egress_proxy": {"routes": routes}}, sort_keys=False, default_flow_style=None)
    snippet = "\n".join("    " + line for line in snippet.rstrip().splitlines())
    where = f" (under {prefix.rstrip('.')})" if prefix else ""
    return Invalid(at, "`cred_proxy` is no longer supported",
                   f"rewrite it as egress_proxy.routes{where}; the secrets must also be listed in `secrets:`:\n{snippet}")
