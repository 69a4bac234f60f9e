"""The firewall policy (``/etc/bottle/policy.json``): one strict schema.

Unknown keys are errors, at every level; every problem is reported at once, each
with the path of the offending field (``dlp.patterns[1].regex: ...``).

    {
      "bottle": "demo",                         required, the bottle's slug
      "allow": ["registry.npmjs.org", "*.pypi.org", "git.example.com:8443"],
                                                required, exact hosts / "*.suffix" / IP literals,
                                                on ports 443 and 80, or on the one port given
      "passthrough": [],                        hosts tunnelled without TLS interception; must be allowed
      "allowed_cidrs": ["172.30.5.0/24"],       networks the SSRF guard lets through
      "idle_timeout": 900,                      seconds a connection may sit idle (long polls, streams)
      "allow_for": {"172.30.7.0/24": ["git.example.com"]},
                                                hosts allowed only for clients in that network
                                                (the git gate's), same grammar as "allow"
      "dlp": {
        "action": "block",                      default action: block | warn | off
        "hosts": {"api.anthropic.com": "warn"}, per-host action (exact or "*.suffix")
        "patterns": [{"name": "internal-token", "regex": "itk_[A-Za-z0-9]{32}"}],   RE2 syntax
        "max_body_bytes": 1048576,              larger request bodies are refused unless action is off
        "exempt_headers": {"api.anthropic.com": ["x-api-key"]},  not scanned, on that host only,
        "exempt_sources": ["172.30.6.0/24"],    and only on requests from there (the egress proxy)
        "rules_off": {"api.anthropic.com": ["seed-phrase"]},  rules not applied on that host
        "delegated": {"172.30.7.0/24": ["authorization"]}   a sidecar's own requests (from that
                                                network, to the hosts allow_for gives it): those
                                                headers (its credential) and the body are not
                                                scanned here; the sidecar scans what it sends

      }
    }
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import dlp
from .capacity import MAX_HELD_ITEM
from .hosts import HostError, HostMap, HostPattern, HostSet, parse_pattern
from .patterns import PatternError, compile_pattern
from .ssrf import CidrError, guarded_network

ACTIONS = ("block", "warn", "off")
DEFAULT_IDLE_TIMEOUT = 900
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
MAX_POLICY_BYTES = 4 * 1024 * 1024
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
PATTERN_NAME = _NAME  # a DLP pattern's name (the manifest checks names with it too)
MAX_BODY_LIMIT = MAX_HELD_ITEM  # the largest dlp.max_body_bytes: a body is held whole to be scanned
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")

TOP_KEYS = {"bottle", "allow", "passthrough", "allowed_cidrs", "idle_timeout", "allow_for", "dlp"}
TOP_REQUIRED = {"bottle", "allow"}
DLP_KEYS = {"action", "hosts", "patterns", "max_body_bytes", "exempt_headers", "exempt_sources", "rules_off",
            "delegated"}
PATTERN_KEYS = {"name", "regex"}


class PolicyError(ValueError):
    """The policy is invalid; ``problems`` lists every issue found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class DlpPolicy:
    action: str = "block"
    hosts: HostMap = field(default_factory=HostMap)
    rules: tuple[dlp.Rule, ...] = dlp.BUILTIN_RULES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    exempt_headers: HostMap = field(default_factory=HostMap)
    exempt_sources: tuple = ()
    rules_off: HostMap = field(default_factory=HostMap)
    delegated: tuple = ()  # (network, frozenset of header names)

    def delegated_for(self, client: str | None) -> frozenset[str] | None:
        """The headers a delegated sidecar at `client` sends its credential in; None: not one."""
        for net, headers in self.delegated:
            if client is not None and _in_networks(client, (net,)):
                return headers
        return None

    def rules_off_for(self, host: str) -> frozenset[str]:
        """Rules that do not apply on ``host`` (the seed-phrase rule on the model's API host)."""
        return self.rules_off.get(host, frozenset())

    def action_for(self, host: str) -> str:
        return self.hosts.get(host, self.action)

    def exempt_for(self, host: str, client: str | None) -> frozenset[str]:
        """Headers not scanned on a request to ``host`` from ``client``: the ones the egress
        proxy injects, on that route's host, and only when the egress proxy sent it."""
        if client is None or not _in_networks(client, self.exempt_sources):
            return frozenset()
        return self.exempt_headers.get(host, frozenset())


def _in_networks(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


@dataclass(frozen=True)
class Policy:
    bottle: str
    allow: HostSet
    passthrough: HostSet = field(default_factory=HostSet)
    allowed_cidrs: tuple = ()
    idle_timeout: int = DEFAULT_IDLE_TIMEOUT
    dlp: DlpPolicy = field(default_factory=DlpPolicy)
    allow_for: tuple = ()  # (network, HostSet): allowed for clients in that network only

    def allow_for_client(self, host: str, port: int, client: str | None):
        """The allow_for entry that lets `client` reach host:port; None when there is none."""
        if client is None:
            return None
        for net, hosts in self.allow_for:
            if _in_networks(client, (net,)):
                found = hosts.match(host, port)
                if found is not None:
                    return found
        return None


class _Problems:
    def __init__(self):
        self.items: list[str] = []

    def add(self, where: str, msg: str) -> None:
        self.items.append(f"{where}: {msg}" if where else msg)


def _keys(obj: dict, allowed: set[str], required: set[str], where: str, p: _Problems) -> None:
    for k in sorted(set(obj) - allowed, key=str):
        p.add(f"{where}{k}" if where else str(k), f"unknown key (allowed: {', '.join(sorted(allowed))})")
    for k in sorted(required - set(obj)):
        p.add(f"{where}{k}", "is required")


def _int(value: object, where: str, lo: int, hi: int, p: _Problems) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        p.add(where, f"must be an integer, got {type(value).__name__}")
        return None
    if not lo <= value <= hi:
        p.add(where, f"must be between {lo} and {hi}, got {value}")
        return None
    return value


def _str_list(value: object, where: str, p: _Problems) -> list | None:
    if not isinstance(value, list):
        p.add(where, f"must be a list, got {type(value).__name__}")
        return None
    return value


def _patterns(value: object, where: str, p: _Problems, with_port: bool = False) -> list[HostPattern]:
    items = _str_list(value, where, p)
    out: list[HostPattern] = []
    for i, raw in enumerate(items or []):
        try:
            pat = parse_pattern(raw, with_port)
        except HostError as e:
            p.add(f"{where}[{i}]", str(e))
            continue
        if pat in out:
            p.add(f"{where}[{i}]", f"duplicate entry {pat.entry!r}")
            continue
        out.append(pat)
    return out


def _action(value: object, where: str, p: _Problems) -> str | None:
    if value not in ACTIONS:
        p.add(where, f"must be one of {', '.join(ACTIONS)}, got {value!r}")
        return None
    return value


def _host_keyed(value: object, where: str, p: _Problems) -> list[tuple[HostPattern, object, str]]:
    if not isinstance(value, dict):
        p.add(where, f"must be an object mapping hosts to values, got {type(value).__name__}")
        return []
    out = []
    seen: set[str] = set()
    for raw, v in value.items():
        here = f"{where}.{raw}"
        try:
            pat = parse_pattern(raw)
        except HostError as e:
            p.add(here, str(e))
            continue
        if pat.text in seen:
            p.add(here, f"duplicate host {pat.text!r}")
            continue
        seen.add(pat.text)
        out.append((pat, v, here))
    return out


def _dlp(obj: object, p: _Problems) -> DlpPolicy:
    if not isinstance(obj, dict):
        p.add("dlp", f"must be an object, got {type(obj).__name__}")
        return DlpPolicy()
    _keys(obj, DLP_KEYS, set(), "dlp.", p)
    action = _action(obj.get("action", "block"), "dlp.action", p) or "block"

    hosts = []
    for pat, v, here in _host_keyed(obj.get("hosts", {}), "dlp.hosts", p):
        a = _action(v, here, p)
        if a is not None:
            hosts.append((pat, a))

    rules = list(dlp.BUILTIN_RULES)
    names = set(dlp.BUILTIN_NAMES)
    for i, item in enumerate(_str_list(obj.get("patterns", []), "dlp.patterns", p) or []):
        here = f"dlp.patterns[{i}]"
        if not isinstance(item, dict):
            p.add(here, 'must be an object {"name": ..., "regex": ...}')
            continue
        _keys(item, PATTERN_KEYS, PATTERN_KEYS, here + ".", p)
        name, regex = item.get("name"), item.get("regex")
        if not isinstance(name, str) or not _NAME.match(name):
            if "name" in item:
                p.add(here + ".name", "must be lower-case letters, digits, '-', '_' or '.', at most 63 characters")
            continue
        if name in names:
            p.add(here + ".name", f"{name!r} is already used by another rule")
            continue
        if not isinstance(regex, str) or not regex:
            if "regex" in item:
                p.add(here + ".regex", "must be a non-empty string")
            continue
        try:
            compiled = compile_pattern(regex)
        except PatternError as e:
            p.add(here + ".regex", str(e))
            continue
        names.add(name)
        rules.append(dlp.Rule(name, compiled, f"a match for the policy pattern {name!r}"))

    max_body = _int(obj.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES), "dlp.max_body_bytes", 1, MAX_BODY_LIMIT, p)

    exempt = []
    for pat, v, here in _host_keyed(obj.get("exempt_headers", {}), "dlp.exempt_headers", p):
        names_ = _str_list(v, here, p)
        if names_ is None:
            continue
        hdrs = set()
        for j, h in enumerate(names_):
            if not isinstance(h, str) or not _HEADER.match(h.lower()):
                p.add(f"{here}[{j}]", f"{h!r} is not a header name")
                continue
            hdrs.add(h.lower())
        exempt.append((pat, frozenset(hdrs)))

    sources = tuple(_cidrs(obj.get("exempt_sources", []), "dlp.exempt_sources", p))
    rules_off = []
    for pat, v, here in _host_keyed(obj.get("rules_off", {}), "dlp.rules_off", p):
        off = _str_list(v, here, p) or []
        unknown = [name for name in off if name not in names]
        if unknown:
            p.add(here, f"unknown rule(s) {unknown!r} (rules: {', '.join(sorted(names))})")
            continue
        rules_off.append((pat, frozenset(off)))
    delegated = []
    raw_delegated = obj.get("delegated", {})
    if not isinstance(raw_delegated, dict):
        p.add("dlp.delegated", f"must be an object mapping networks to header lists, got {type(raw_delegated).__name__}")
        raw_delegated = {}
    for raw, value in raw_delegated.items():
        here = f"dlp.delegated.{raw}"
        nets = _cidrs([raw], here, p)
        names_ = _str_list(value, here, p) or []
        bad = [h for h in names_ if not isinstance(h, str) or not _HEADER.match(h.lower())]
        if bad:
            p.add(here, f"{bad!r}: not header names")
        elif nets:
            delegated.append((nets[0], frozenset(h.lower() for h in names_)))
    return DlpPolicy(
        delegated=tuple(delegated),
        exempt_sources=sources,
        rules_off=HostMap(rules_off),
        action=action,
        hosts=HostMap(hosts),
        rules=tuple(rules),
        max_body_bytes=max_body or DEFAULT_MAX_BODY_BYTES,
        exempt_headers=HostMap(exempt),
    )


def _covered(pat: HostPattern, allow: HostSet) -> bool:
    """Is every host ``pat`` matches also matched by the allowlist?"""
    if not pat.is_wildcard:
        return allow.match(pat.text) is not None
    suffix = pat.suffix or ""
    return any(
        a.is_wildcard and (suffix == a.suffix or suffix.endswith("." + (a.suffix or ""))) for a in allow
    )


def _cidrs(value: object, where: str, p: _Problems) -> list:
    out = []
    for i, raw in enumerate(_str_list(value, where, p) or []):
        if not isinstance(raw, str):
            p.add(f"{where}[{i}]", f"must be a CIDR string like '172.30.5.0/24', got {type(raw).__name__}")
            continue
        try:
            out.append(guarded_network(raw.strip()))
        except CidrError as e:
            p.add(f"{where}[{i}]", f"{e}: {e.fix}")
    return out


def parse(doc: object) -> Policy:
    """Validate a decoded policy document; raises PolicyError listing every problem."""
    p = _Problems()
    if not isinstance(doc, dict):
        raise PolicyError([f"the policy must be a JSON object, got {type(doc).__name__}"])
    _keys(doc, TOP_KEYS, TOP_REQUIRED, "", p)

    bottle = doc.get("bottle", "")
    if "bottle" in doc and (not isinstance(bottle, str) or not _NAME.match(bottle)):
        p.add("bottle", "must be the bottle's slug (lower-case letters, digits, '-', '_', '.')")
        bottle = ""

    allow = _patterns(doc.get("allow", []), "allow", p, with_port=True)
    passthrough = _patterns(doc.get("passthrough", []), "passthrough", p)
    allow_set = HostSet(allow)
    for i, pat in enumerate(passthrough):
        if not _covered(pat, allow_set):
            p.add(f"passthrough[{i}]", f"{pat.text!r} is not in 'allow'; passthrough hosts must be allowed too")

    cidrs = _cidrs(doc.get("allowed_cidrs", []), "allowed_cidrs", p)

    idle = _int(doc.get("idle_timeout", DEFAULT_IDLE_TIMEOUT), "idle_timeout", 1, 7 * 24 * 3600, p)
    allow_for = _allow_for(doc.get("allow_for", {}), p)
    dlp_policy = _dlp(doc.get("dlp", {}), p)
    for net, _ in dlp_policy.delegated:
        if net not in [n for n, _ in allow_for]:
            p.add(f"dlp.delegated.{net}", "has no allow_for entry: a delegated sidecar's own hosts are its allow_for hosts")

    if p.items:
        raise PolicyError(p.items)
    return Policy(
        bottle=bottle,
        allow=allow_set,
        passthrough=HostSet(passthrough),
        allowed_cidrs=tuple(cidrs),
        idle_timeout=idle or DEFAULT_IDLE_TIMEOUT,
        dlp=dlp_policy,
        allow_for=tuple(allow_for),
    )


def _allow_for(value: object, p: _Problems) -> list:
    """{"<cidr>": [host entries]}: hosts allowed only for clients in that network."""
    if not isinstance(value, dict):
        p.add("allow_for", f"must be an object mapping networks to host lists, got {type(value).__name__}")
        return []
    out = []
    for raw, hosts in value.items():
        nets = _cidrs([raw], f"allow_for.{raw}", p)
        patterns = _patterns(hosts, f"allow_for.{raw}", p, with_port=True)
        if nets:
            out.append((nets[0], HostSet(patterns)))
    return out


def loads(text: str | bytes) -> Policy:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise PolicyError([f"not valid JSON: {e}"]) from None
    return parse(doc)


def load(path: str | Path) -> Policy:
    """Read and validate the policy file; raises PolicyError (also for I/O problems)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_POLICY_BYTES + 1)
    except OSError as e:
        raise PolicyError([f"cannot read {path}: {e.strerror or e}"]) from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError([f"{path} is larger than {MAX_POLICY_BYTES} bytes"])
    return loads(raw)
