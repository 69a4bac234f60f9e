import ipaddress

import pytest
from firewall import ssrf
from fwtest import FakeDNS

ip = ipaddress.ip_address
INTERNAL = (ipaddress.ip_network("172.30.5.0/24"),)


@pytest.mark.parametrize(
    "addr, category",
    [
        ("127.0.0.1", "loopback"),
        ("127.5.5.5", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("169.254.0.1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.2.1", "private"),  # documentation range: not global either
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a9fe:a9fe", "reserved"),
        ("2002:7f00:1::", "private"),
        ("2001:db8::1", "private"),
    ],
)
def test_blocked_addresses(addr, category):
    why = ssrf.classify(ip(addr))
    assert why is not None and category in why, (addr, why)
    v = ssrf.check([ip(addr)], ())
    assert not v.ok and v.address is None and addr.split("::ffff:")[-1] in v.reason


@pytest.mark.parametrize("addr", ["93.184.216.34", "151.101.0.223", "2606:4700::1111", "1.1.1.1"])
def test_public_addresses_pass(addr):
    assert ssrf.classify(ip(addr)) is None
    v = ssrf.check([ip(addr)], ())
    assert v.ok and v.address == ip(addr)


def test_allowed_cidrs_let_internal_networks_through():
    assert ssrf.check([ip("172.30.5.20")], INTERNAL).ok
    assert ssrf.check([ip("::ffff:172.30.5.20")], INTERNAL).address == ip("172.30.5.20")
    assert not ssrf.check([ip("172.30.6.20")], INTERNAL).ok
    assert not ssrf.check([ip("169.254.169.254")], INTERNAL).ok


def test_every_resolved_address_must_pass():
    v = ssrf.check([ip("93.184.216.34"), ip("127.0.0.1")], ())
    assert not v.ok and v.blocked == ip("127.0.0.1")


def test_ipv4_preferred_for_dialling():
    v = ssrf.check([ip("2606:4700::1111"), ip("93.184.216.34")], ())
    assert v.address == ip("93.184.216.34")
    v = ssrf.check([ip("::ffff:93.184.216.34")], ())
    assert v.address == ip("93.184.216.34")


def test_empty_resolution_refused():
    assert not ssrf.check([], ()).ok


async def test_resolver_literal_skips_dns():
    dns = FakeDNS({})
    r = ssrf.Resolver(getaddrinfo=dns)
    assert await r.resolve("169.254.169.254", 80) == (ip("169.254.169.254"),)
    assert await r.resolve("[::1]", 80) == (ip("::1"),)
    assert dns.calls == []


async def test_resolver_caches_for_ttl():
    dns = FakeDNS({"a.example.com": ["93.184.216.34", "2606:4700::1111", "93.184.216.34"]})
    now = [0.0]
    r = ssrf.Resolver(getaddrinfo=dns, ttl=5, clock=lambda: now[0])
    assert await r.resolve("a.example.com") == (ip("93.184.216.34"), ip("2606:4700::1111"))
    await r.resolve("A.example.com.")
    assert dns.calls == ["a.example.com"]
    now[0] = 6
    dns.table["a.example.com"] = ["127.0.0.1"]
    assert await r.resolve("a.example.com") == (ip("127.0.0.1"),)
    assert len(dns.calls) == 2


async def test_resolver_errors():
    r = ssrf.Resolver(getaddrinfo=FakeDNS({}))
    with pytest.raises(ssrf.ResolveError, match="failed"):
        await r.resolve("nowhere.invalid")


def test_classify_cache_gives_the_uncached_answer():
    addrs = ["8.8.8.8", "10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "2606:4700::1111", "64:ff9b::a9fe:a9fe"]
    for _ in range(2):
        for a in addrs:
            assert ssrf.classify(ip(a)) == ssrf.classify.__wrapped__(ip(a))
    assert ssrf.classify.cache_info().maxsize == 4096
