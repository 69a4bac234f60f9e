"""SSRF guard: which upstream addresses the firewall may dial.

Only globally routable unicast addresses are dialled, unless the address lies in
one of the policy's ``allowed_cidrs`` (the bottle's own networks). Addresses that
embed an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
6to4 ``2002::/16``) are judged by the embedded IPv4 address as well.

The firewall resolves names itself (``Resolver``), checks *every* address the name
resolves to, and then dials exactly the checked address, so a DNS answer that
changes between check and connect (rebinding) cannot move the connection.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from .hosts import ip_literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_BENCHMARK = ipaddress.ip_network("198.18.0.0/15")


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _category(ip: IPAddress) -> str | None:
    """Why this single address (no embedding) is not dialable, or None if it is."""
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata lives here)" if str(ip).startswith("169.254.") else "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "carrier-grade NAT (100.64.0.0/10)"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _BENCHMARK:
        return "benchmarking (198.18.0.0/15)"
    if isinstance(ip, ipaddress.IPv4Address) and int(ip) == 0xFFFFFFFF:
        return "broadcast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if not ip.is_global:
        return "not globally routable"
    return None


@functools.lru_cache(maxsize=4096)  # a pure function of the address; ipaddress's is_* are slow
def classify(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be dialled (a short phrase), or None if it is a public unicast address."""
    why = _category(ip)
    if why is not None:
        return why
    inner = _embedded_v4(ip)
    if inner is not None:
        inner_why = _category(inner)
        if inner_why is not None:
            return f"{inner_why}, embedded as {inner}"
    return None


def refusal(what: str) -> str:
    """The one wording of an SSRF refusal (host gate for literals, SSRF guard after resolving)."""
    return f"{what}; the firewall does not connect to internal addresses"


class CidrError(ValueError):
    """An address range that cannot be an exemption: the message says why, `fix` what to write."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.fix = fix


def guarded_network(text: str) -> IPNetwork:
    """An `allowed_cidrs` entry (also the networks a policy names as sources): written exactly,
    and wholly inside what the guard refuses, so it can only let through private upstreams,
    never switch the guard off for public addresses. The one rule for the controller's
    manifest and the firewall's policy."""
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise CidrError(f"invalid CIDR {text!r} ({e})", "write an address range such as 10.20.0.0/16") from None
    if "/" in text and str(network) != text:
        raise CidrError(f"{text!r} has host bits set", f"write the range as {network}")
    guarded = (network.is_private or network.is_loopback or network.is_link_local
               or (isinstance(network, ipaddress.IPv4Network) and network.subnet_of(_CGNAT)))
    if not guarded or network.prefixlen < (8 if network.version == 4 else 7):
        raise CidrError(f"{text!r} is not a private range (or is wider than /8)",
                        "list only the private, loopback, link-local or CGNAT ranges of your private "
                        "upstreams; public addresses need no entry here")
    return network


def _unwrap(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def in_cidrs(ip: IPAddress, cidrs: Iterable[IPNetwork]) -> bool:
    """True if ``ip`` (or the IPv4 address an IPv4-mapped IPv6 address carries) is in ``cidrs``."""
    plain = _unwrap(ip)
    return any(plain.version == net.version and plain in net for net in cidrs)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    address: IPAddress | None  # the address to dial when ok
    reason: str  # why not, when not ok ("" when ok)
    blocked: IPAddress | None = None  # the first offending address


def check(addresses: Iterable[IPAddress], allowed_cidrs: Iterable[IPNetwork]) -> Verdict:
    """Judge all addresses a host resolved to. All must pass; IPv4 is preferred for dialling."""
    addrs = list(dict.fromkeys(addresses))
    cidrs = tuple(allowed_cidrs)
    if not addrs:
        return Verdict(False, None, "resolved to no address")
    for a in addrs:
        if in_cidrs(a, cidrs):
            continue
        why = classify(a)
        if why is not None:
            return Verdict(False, None, f"{a} is {why}", blocked=a)
    v4 = [a for a in addrs if _unwrap(a).version == 4]
    pick = _unwrap(v4[0]) if v4 else addrs[0]
    return Verdict(True, pick, "")


class ResolveError(Exception):
    """The host name could not be resolved."""


GetAddrInfo = Callable[..., Awaitable[list]]


class Resolver:
    """Resolves names with the event loop's getaddrinfo; a short cache keeps the answer
    used by the early (request-time) check and the connect-time check identical."""

    def __init__(
        self,
        getaddrinfo: GetAddrInfo | None = None,
        ttl: float = 10.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 1024,
    ):
        self._getaddrinfo = getaddrinfo
        self.ttl = ttl
        self.timeout = timeout
        self._clock = clock
        self._max = max_entries
        self._cache: dict[str, tuple[float, tuple[IPAddress, ...]]] = {}

    async def resolve(self, host: str, port: int = 443) -> tuple[IPAddress, ...]:
        literal = ip_literal(host)
        if literal is not None:
            return (literal,)
        key = host.lower().rstrip(".")
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        gai = self._getaddrinfo or asyncio.get_running_loop().getaddrinfo
        try:
            infos = await asyncio.wait_for(
                gai(key, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP),
                timeout=self.timeout,
            )
        except asyncio.TimeoutError:
            raise ResolveError(f"DNS lookup for {host} timed out") from None
        except (OSError, UnicodeError) as e:
            raise ResolveError(f"DNS lookup for {host} failed: {e}") from None
        addrs: list[IPAddress] = []
        for family, _type, _proto, _canon, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            ip = ip_literal(str(sockaddr[0]))
            if ip is not None and ip not in addrs:
                addrs.append(ip)
        if not addrs:
            raise ResolveError(f"DNS lookup for {host} returned no address")
        result = tuple(addrs)
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[key] = (now + self.ttl, result)
        return result

    def clear(self) -> None:
        self._cache.clear()
