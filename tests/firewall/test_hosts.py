import ipaddress

import pytest
from firewall import hosts
from firewall.hosts import HostError, HostSet, ip_literal, normalize_host, parse_pattern, split_authority


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
    for bad in ("", "example.com:x", "example.com:70000", "[::1", "example.com:\u00b2", "example.com:\u0664\u0664\u0663"):
        with pytest.raises(HostError):
            split_authority(bad)


def _ip_literal_reference(host: str):
    """ip_literal without its shortcut: ipaddress decides every string."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:  # a zone: IPv6 only
        if ":" not in text:
            return None
        text = text.split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


IP_LIKE = [
    "", " ", ".", "..", "1", "1.2", "1.2.3", "1.2.3.4", " 1.2.3.4 ", "1.2.3.4.", "1.2.3.4.5", "01.2.3.4",
    "001.002.003.004", "256.1.1.1", "1..2.3", "1.2.3.4:80", "0x7f.0.0.1", "0177.0.0.1", "2130706433",
    "\u0661.\u0662.\u0663.\u0664", "\uff11.\uff12.\uff13.\uff14", "1.2.3.\u0664", "::", "::1", "[::1]", "[::1", "::1]",
    "fe80::1%eth0", "[fe80::1%25eth0]", "::ffff:1.2.3.4", "64:ff9b::a9fe:a9fe", "2001:db8::1", "2001:DB8:0::1",
    "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", ":::", "gggg::1", "example.com", "EXAMPLE.com.", "a.b", "1.2.3.a",
    "a1.2.3.4", "localhost", "xn--bcher-kva.example", "bücher.example", "1.2.3.4%eth0", "%", "[]", "1e3.0.0.1",
]  # fmt: skip


@pytest.mark.parametrize("text", IP_LIKE)
def test_ip_literal_shortcut_agrees_with_ipaddress(text):
    assert ip_literal(text) == _ip_literal_reference(text)


def test_normalize_host_is_cached_but_still_refuses():
    assert normalize_host("Api.Example.COM.") == normalize_host("api.example.com") == "api.example.com"
    for _ in range(2):  # an invalid name is refused every time, never remembered as valid
        with pytest.raises(HostError):
            normalize_host("a..b")
    for bad in (None, 42, ["x"], b"example.com"):  # not a string, even unhashable: HostError, not TypeError
        with pytest.raises(HostError):
            normalize_host(bad)
    assert hosts._normalize.cache_info().maxsize == 4096  # attacker-chosen Host headers: bounded


@pytest.mark.parametrize("host", ["ǅ." * 30000, "\u00ad" * 60000 + "allowed.com", "a" * 400])
def test_a_host_text_past_any_name_is_refused_before_it_is_encoded(host):
    """IDNA encoding is quadratic in a label: a 60 KB Host header took 0.27 s of the firewall's
    event loop, and each distinct text stayed in the normaliser's cache (soft hyphens, which
    nameprep deletes, made 4096 texts of 62 KB that all normalise to an allowed name)."""
    hosts._normalize.cache_clear()
    with pytest.raises(HostError, match="longer than 320 characters") as refused:
        normalize_host(host)
    assert len(str(refused.value)) < 200  # quoted short: refusals are logged and shown
    with pytest.raises(HostError, match="longer than 320 characters"):
        parse_pattern(host)
    assert hosts._normalize.cache_info().currsize == 0


def test_a_name_under_the_bound_with_deleted_characters_still_normalises():
    assert normalize_host("a\u00adllowed.com") == "allowed.com"


@pytest.mark.parametrize("host", ["93.184.216.34%@evil.example", "10.0.0.1%25", "1.2.3.4%eth0"])
def test_an_ipv4_address_with_a_zone_is_no_address_and_no_name(host):
    assert ip_literal(host) is None
    with pytest.raises(HostError):
        normalize_host(host)


def test_an_ipv6_zone_is_still_dropped_for_the_address_check():
    assert ip_literal("fe80::1%eth0") == ipaddress.ip_address("fe80::1")


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x5d.0xb8.0xd8.0x22", "1.2.3.4.5", "0177.0.0.1", "a.0x7f"])
def test_an_address_in_a_form_the_resolver_reads_is_no_name(host):
    """getaddrinfo reads these as addresses (inet_aton): as names they would match no `never`
    entry and no wildcard the operator meant for names."""
    with pytest.raises(HostError, match="IP address in a form"):
        normalize_host(host)


def test_a_wildcard_over_numbers_is_refused():
    with pytest.raises(HostError):
        parse_pattern("*.8.8")


@pytest.mark.parametrize("host", ["x0.example.com", "0x.example.org", "example.com", "123.example.io", "a-1.b2"])
def test_names_with_digits_stay_names(host):
    assert normalize_host(host) == host
