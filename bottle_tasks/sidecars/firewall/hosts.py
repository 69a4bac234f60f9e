"""Host names: normalisation, allowlist patterns and matching.

A pattern is either an exact host (``registry.npmjs.org``, or an IP literal) or a
wildcard ``*.example.com``, which matches every name *below* example.com at any
depth (``a.example.com``, ``a.b.example.com``) but not ``example.com`` itself.

Matching is done on the normalised request host (``request.host``, never the
client-controlled ``pretty_host``): lower case, no trailing dot, IDNA (punycode)
for non-ASCII names, canonical text for IP literals.

Ports: a plain entry allows its hosts on the web ports only (443, and 80 for plain
HTTP). Any other port must be listed on its own, ``host:port`` (``[v6]:port``), so
that allowing a web API does not also open its SSH, database or admin ports.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_IPV4_CHARS = frozenset("0123456789.")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
# What a plain allowlist entry (no port) allows.
WEB_PORTS = frozenset({80, 443})


class HostError(ValueError):
    """A host name or host pattern that cannot be used."""


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address if ``host`` is an IP literal (``[v6]`` brackets allowed), else None."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:  # zone ids (fe80::1%eth0) are never valid upstream hosts
        if ":" not in text:
            return None  # IPv4 has none: `1.2.3.4%@evil.example` is no address (and no name)
        text = text.split("%", 1)[0]
    if ":" not in text and not _IPV4_CHARS.issuperset(text):
        # Neither IPv6 (always has a colon) nor IPv4 (only ASCII digits and dots): a name.
        # Saves ipaddress two raised-and-caught ValueErrors per call, on every request.
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def normalize_host(host: str) -> str:
    """Canonical form of a request host; raises HostError if it is not a usable name.

    Case and a trailing dot are folded; non-ASCII names become punycode; IP literals
    become their canonical text (``[2001:DB8:0::1]`` -> ``2001:db8::1``).
    """
    if not isinstance(host, str):
        raise HostError(f"host must be a string, got {type(host).__name__}")
    if len(host) > MAX_HOST_TEXT:
        raise HostError(too_long(host))
    return _normalize(host)


# The longest host text looked at. A name is at most 253 characters once encoded, and Unicode
# is no longer than its punycode but for what nameprep deletes (soft hyphens, zero-width
# spaces). Checked first: IDNA encoding is quadratic in a label's length (a 60 KB Host header
# took 0.27 s of the proxy's one event loop), and each distinct text is a key of the cache below.
MAX_HOST_TEXT = 320


def too_long(host: str) -> str:
    return f"{repr(host[:60])[:60]}… is longer than {MAX_HOST_TEXT} characters ({len(host)}): no host name is"


# Every request normalises its host several times (allowlist, Host header, DLP action,
# audit); the answer only depends on the string. Invalid names raise and are not cached.
@functools.lru_cache(maxsize=4096)
def _normalize(host: str) -> str:
    text = host.strip()
    ip = ip_literal(text)
    if ip is not None:
        return str(ip)
    text = text.lower()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise HostError("empty host name")
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError as e:
            raise HostError(f"{host!r} is not a valid international host name ({e})") from None
    if len(text) > 253:
        raise HostError(f"{host!r} is longer than 253 characters")
    labels = text.split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise HostError(f"{host!r} is not a valid host name")
    if _NUMERIC_LABEL.match(labels[-1]):
        # No top-level domain is a number. The resolver reads `127.1`, `2130706433` and
        # `0x5d.0xb8.0xd8.0x22` as addresses (inet_aton): as names they would slip past
        # `never` and an operator's reading of the allowlist.
        raise HostError(f"{host!r} is an IP address in a form the firewall does not take; write it as a.b.c.d")
    return text


@dataclass(frozen=True)
class HostPattern:
    """One allowlist entry: an exact host or a ``*.suffix`` wildcard, on the web ports or on
    the one port it names."""

    text: str  # the normalised host pattern, without the port (``*.pypi.org``)
    suffix: str | None = None  # set for wildcards: ``pypi.org``
    port: int | None = None  # ``host:port`` entries; None: the web ports

    @property
    def ports(self) -> frozenset[int]:
        return WEB_PORTS if self.port is None else frozenset({self.port})

    @property
    def entry(self) -> str:
        """The entry as it is written in a policy (``host`` or ``host:port``)."""
        if self.port is None:
            return self.text
        return f"[{self.text}]:{self.port}" if ":" in self.text else f"{self.text}:{self.port}"

    @property
    def is_wildcard(self) -> bool:
        return self.suffix is not None

    def matches(self, host: str) -> bool:
        """Match an already normalised host."""
        if self.suffix is None:
            return host == self.text
        return host.endswith("." + self.suffix)

    def __str__(self) -> str:
        return self.entry


def parse_pattern(raw: object, with_port: bool = False) -> HostPattern:
    """Validate one allowlist entry; raises HostError with a hint on what to write instead.
    ``with_port``: the entry may name one port (``host:port``); elsewhere a port is an error."""
    if not isinstance(raw, str):
        raise HostError(f"expected a host name string, got {type(raw).__name__}")
    if len(raw) > MAX_HOST_TEXT + 8:  # with a port
        raise HostError(too_long(raw))
    text = raw.strip()
    if not text:
        raise HostError("empty host name")
    if with_port and "://" not in text and "/" not in text and (text.startswith("[") or text.count(":") == 1):
        host, port = split_authority(text)
        if port is not None:
            pattern = parse_pattern(host)
            return HostPattern(text=pattern.text, suffix=pattern.suffix, port=port)
        text = host
    if "://" in text or "/" in text:
        guess = text.split("://", 1)[-1].split("/", 1)[0]
        raise HostError(f"{raw!r} is a URL, not a host name; write {guess!r}")
    if text == "*" or text == "*.":
        raise HostError("'*' would allow every host; list the hosts instead")
    if text.startswith("*."):
        suffix = text[2:]
        if "*" in suffix:
            raise HostError(f"{raw!r}: only one leading '*.' wildcard is supported")
        if ip_literal(suffix) is not None:
            raise HostError(f"{raw!r}: a wildcard cannot cover an IP address")
        suffix = normalize_host(suffix)
        if "." not in suffix:
            raise HostError(f"{raw!r} would allow a whole top-level domain; be more specific")
        return HostPattern(text="*." + suffix, suffix=suffix)
    if "*" in text:
        raise HostError(f"{raw!r}: wildcards are only supported as a leading '*.' (e.g. '*.example.com')")
    ip = ip_literal(text)
    if ip is None and ":" in text:
        raise HostError(f"{raw!r} has a port; a port can only be given in the allowlist ('host:port')")
    return HostPattern(text=normalize_host(text))


class HostSet:
    """An ordered set of patterns with exact-before-wildcard, longest-suffix-first lookup."""

    def __init__(self, patterns: list[HostPattern] | tuple[HostPattern, ...] = ()):
        self.patterns: tuple[HostPattern, ...] = tuple(patterns)
        self._exact: dict[str, list[HostPattern]] = {}
        for p in self.patterns:
            if not p.is_wildcard:
                self._exact.setdefault(p.text, []).append(p)
        self._wild = sorted(
            (p for p in self.patterns if p.is_wildcard), key=lambda p: -len(p.suffix or "")
        )

    def match(self, host: str, port: int | None = None) -> HostPattern | None:
        """The most specific pattern matching ``host`` (raw or normalised), or None.
        With ``port``: only a pattern that also allows that port."""
        try:
            norm = normalize_host(host)
        except HostError:
            return None
        for p in self._exact.get(norm, ()):
            if port is None or port in p.ports:
                return p
        for p in self._wild:
            if p.matches(norm) and (port is None or port in p.ports):
                return p
        return None

    def __contains__(self, host: str) -> bool:
        return self.match(host) is not None

    def __iter__(self):
        return iter(self.patterns)

    def __len__(self) -> int:
        return len(self.patterns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostSet) and self.patterns == other.patterns

    def __repr__(self) -> str:
        return f"HostSet({[p.text for p in self.patterns]!r})"


class HostMap:
    """Patterns mapped to values (per-host DLP action, exempt headers); most specific wins."""

    def __init__(self, items: Sequence[tuple[HostPattern, Any]] = ()):
        self.items = tuple(items)
        self._set = HostSet([p for p, _ in self.items])
        self._values = {p.text: v for p, v in self.items}

    def get(self, host: str, default=None):
        p = self._set.match(host)
        if p is None:
            return default
        return self._values[p.text]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostMap) and self.items == other.items

    def __repr__(self) -> str:
        return f"HostMap({[(p.text, v) for p, v in self.items]!r})"


def split_authority(authority: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` / ``[v6]:port`` into (host, port); raises HostError if malformed."""
    text = authority.strip()
    if not text:
        raise HostError("empty authority")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise HostError(f"malformed authority {authority!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise HostError(f"malformed authority {authority!r}")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":", 1)
    elif ":" in text:  # bare IPv6 without brackets
        host, port_text = text, ""
    else:
        host, port_text = text, ""
    port: int | None = None
    if port_text:
        # ASCII digits only: str.isdigit() also takes '²' (which int() then refuses, an exception
        # no caller expects) and other scripts' digits, which no upstream reads as a port.
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise HostError(f"bad port in authority {authority!r}")
        port = int(port_text)
    return host, port
