import pytest
from firewall.hosts import HostError, HostSet, normalize_host, parse_pattern, split_authority


def hostset(*entries):
    return HostSet([parse_pattern(e) for e in entries])


def test_exact_match():
    s = hostset("registry.npmjs.org")
    assert s.match("registry.npmjs.org").text == "registry.npmjs.org"
    assert s.match("REGISTRY.npmjs.org.") is not None
    assert s.match("npmjs.org") is None
    assert s.match("evil-registry.npmjs.org") is None
    assert s.match("registry.npmjs.org.evil.com") is None


def test_wildcard_matches_subdomains_not_apex():
    s = hostset("*.example.com")
    assert s.match("a.example.com").text == "*.example.com"
    assert s.match("a.b.example.com") is not None
    assert s.match("example.com") is None
    assert s.match("badexample.com") is None
    assert s.match("a.example.com.evil.org") is None


def test_exact_before_wildcard_and_longest_suffix():
    s = hostset("*.example.com", "*.api.example.com", "x.api.example.com")
    assert s.match("x.api.example.com").text == "x.api.example.com"
    assert s.match("y.api.example.com").text == "*.api.example.com"
    assert s.match("z.example.com").text == "*.example.com"


def test_ip_literals():
    s = hostset("10.0.0.1", "2001:db8::1")
    assert s.match("10.0.0.1") is not None
    assert s.match("[2001:db8::1]") is not None
    assert s.match("2001:0db8:0:0::1") is not None
    assert s.match("10.0.0.2") is None


def test_normalize():
    assert normalize_host("Example.COM.") == "example.com"
    assert normalize_host("bücher.example") == "xn--bcher-kva.example"
    assert normalize_host("::FFFF:1.2.3.4") == "::ffff:1.2.3.4"
    assert normalize_host("[2001:DB8:0::1]") == "2001:db8::1"
    for bad in ("", "a..b", "a b", "x" * 64 + ".com", "under/score"):
        with pytest.raises(HostError):
            normalize_host(bad)
    # garbage never matches rather than raising
    assert hostset("*.example.com").match("a b.example.com") is None


def test_split_authority():
    assert split_authority("example.com") == ("example.com", None)
    assert split_authority("example.com:8443") == ("example.com", 8443)
    assert split_authority("[::1]:443") == ("::1", 443)
    assert split_authority("::1") == ("::1", None)
    for bad in ("", "example.com:x", "example.com:70000", "[::1"):
        with pytest.raises(HostError):
            split_authority(bad)
