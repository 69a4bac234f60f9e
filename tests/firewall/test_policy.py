import ipaddress
import json

import pytest
from firewall import policy as P
from fwtest import BASE_POLICY, policy_doc


def problems(doc) -> list[str]:
    with pytest.raises(P.PolicyError) as ei:
        P.parse(doc)
    return ei.value.problems


def test_example_policy_parses():
    doc = {
        "bottle": "demo",
        "allow": ["registry.npmjs.org", "*.pypi.org"],
        "passthrough": [],
        "allowed_cidrs": ["172.30.5.0/24"],
        "idle_timeout": 900,
        "dlp": {
            "action": "block",
            "hosts": {"api.anthropic.com": "warn"},
            "patterns": [{"name": "internal-token", "regex": "itk_[A-Za-z0-9]{32}"}],
            "max_body_bytes": 1048576,
            "exempt_headers": {"api.anthropic.com": ["x-api-key"]},
            "exempt_sources": ["172.30.5.0/24"],
        },
    }
    pol = P.parse(doc)
    assert pol.bottle == "demo"
    assert [p.text for p in pol.allow] == ["registry.npmjs.org", "*.pypi.org"]
    assert pol.allowed_cidrs == (ipaddress.ip_network("172.30.5.0/24"),)
    assert pol.idle_timeout == 900
    assert pol.dlp.action_for("api.anthropic.com") == "warn"
    assert pol.dlp.action_for("registry.npmjs.org") == "block"
    assert pol.dlp.exempt_for("api.anthropic.com", "172.30.5.9") == frozenset({"x-api-key"})
    assert pol.dlp.exempt_for("registry.npmjs.org", "172.30.5.9") == frozenset()
    # only requests from the egress proxy's network are exempt, never the agent's own
    assert pol.dlp.exempt_for("api.anthropic.com", "172.30.9.9") == frozenset()
    assert pol.dlp.exempt_for("api.anthropic.com", None) == frozenset()
    assert pol.dlp.max_body_bytes == 1048576
    assert "internal-token" in [r.name for r in pol.dlp.rules]


def test_minimal_policy_gets_defaults():
    pol = P.parse({"bottle": "b", "allow": []})
    assert len(pol.allow) == 0 and len(pol.passthrough) == 0
    assert pol.allowed_cidrs == ()
    assert pol.idle_timeout == P.DEFAULT_IDLE_TIMEOUT
    assert pol.dlp.action == "block"
    assert pol.dlp.max_body_bytes == P.DEFAULT_MAX_BODY_BYTES


@pytest.mark.parametrize(
    "doc, where",
    [
        ({**BASE_POLICY, "alow": []}, "alow"),
        (policy_doc(dlp={"acton": "warn"}), "dlp.acton"),
        (policy_doc(dlp={"patterns": [{"name": "x", "regex": "abc", "flags": "i"}]}), "dlp.patterns[0].flags"),
    ],
)
def test_unknown_keys_are_errors(doc, where):
    ps = problems(doc)
    assert any(p.startswith(where + ":") and "unknown key" in p for p in ps), ps


def test_required_keys():
    ps = problems({"allow": []})
    assert any(p.startswith("bottle:") for p in ps)
    ps = problems({"bottle": "x"})
    assert any(p.startswith("allow:") for p in ps)


@pytest.mark.parametrize(
    "entry, hint",
    [
        ("https://example.com/x", "write 'example.com'"),
        ("example.com:99999", "bad port"),
        ("example.com:x", "bad port"),
        ("*", "every host"),
        ("*.com", "top-level"),
        ("a.*.example.com", "leading"),
        ("exa mple.com", "not a valid host"),
        ("-bad.example.com", "not a valid host"),
        ("", "empty"),
        (42, "string"),
    ],
)
def test_bad_allow_entries(entry, hint):
    ps = problems(policy_doc(allow=[entry]))
    assert any(p.startswith("allow[0]:") and hint in p for p in ps), ps


def test_host_entries_are_normalised():
    pol = P.parse(policy_doc(allow=["Registry.NPMJS.org.", "*.PyPI.org", "10.0.0.1"], passthrough=[]))
    assert [p.text for p in pol.allow] == ["registry.npmjs.org", "*.pypi.org", "10.0.0.1"]


def test_duplicate_allow_entry():
    ps = problems(policy_doc(allow=["a.example.com", "A.example.com"], passthrough=[]))
    assert any("duplicate" in p for p in ps)


def test_passthrough_must_be_allowed():
    ps = problems(policy_doc(allow=["a.example.com"], passthrough=["b.example.com"]))
    assert any(p.startswith("passthrough[0]:") and "not in 'allow'" in p for p in ps), ps
    # covered by a wildcard: fine
    P.parse(policy_doc(allow=["*.example.com"], passthrough=["b.example.com", "*.x.example.com"]))
    # a wildcard passthrough needs a wildcard allow covering it
    ps = problems(policy_doc(allow=["b.example.com"], passthrough=["*.example.com"]))
    assert any(p.startswith("passthrough[0]:") for p in ps)


@pytest.mark.parametrize(
    "cidr, hint",
    [
        ("172.30.5.1/24", "host bits"),
        ("not-a-net", "invalid CIDR"),
        ("0.0.0.0/0", "not a private range"),   # the manifest's rule, one implementation (ssrf.py)
        ("8.8.8.0/24", "public addresses need no entry"),
        (5, "CIDR string"),
    ],
)
def test_bad_cidrs(cidr, hint):
    ps = problems(policy_doc(allowed_cidrs=[cidr]))
    assert any(p.startswith("allowed_cidrs[0]:") and hint in p for p in ps), ps


@pytest.mark.parametrize("value", [True, "900", 0, -1, 10**9, 1.5])
def test_bad_idle_timeout(value):
    ps = problems(policy_doc(idle_timeout=value))
    assert any(p.startswith("idle_timeout:") for p in ps), ps


def test_dlp_validation():
    ps = problems(policy_doc(dlp={"action": "maybe"}))
    assert any(p.startswith("dlp.action:") for p in ps)
    ps = problems(policy_doc(dlp={"hosts": {"api.anthropic.com": "loud"}}))
    assert any(p.startswith("dlp.hosts.api.anthropic.com:") for p in ps)
    ps = problems(policy_doc(dlp={"patterns": [{"name": "x", "regex": "("}]}))
    assert any(p.startswith("dlp.patterns[0].regex:") and "RE2 cannot compile it" in p for p in ps)
    # look-around has no linear-time implementation: refused with RE2's reason
    ps = problems(policy_doc(dlp={"patterns": [{"name": "x", "regex": "(?<!a)b"}]}))
    assert any(p.startswith("dlp.patterns[0].regex:") and "invalid perl operator" in p for p in ps), ps
    ps = problems(policy_doc(dlp={"patterns": [{"name": "x", "regex": "a*"}]}))
    assert any("empty string" in p for p in ps)
    ps = problems(policy_doc(dlp={"patterns": [{"name": "aws-access-key-id", "regex": "abc"}]}))
    assert any("already used" in p for p in ps)
    ps = problems(policy_doc(dlp={"patterns": [{"name": "Bad Name", "regex": "abc"}]}))
    assert any(p.startswith("dlp.patterns[0].name:") for p in ps)
    ps = problems(policy_doc(dlp={"patterns": [{"regex": "abc"}]}))
    assert any(p.startswith("dlp.patterns[0].name:") and "required" in p for p in ps)
    ps = problems(policy_doc(dlp={"max_body_bytes": 0}))
    assert any(p.startswith("dlp.max_body_bytes:") for p in ps)
    ps = problems(policy_doc(dlp={"exempt_headers": {"api.anthropic.com": "x-api-key"}}))
    assert any(p.startswith("dlp.exempt_headers.api.anthropic.com:") for p in ps)
    ps = problems(policy_doc(dlp={"exempt_headers": {"api.anthropic.com": ["bad header"]}}))
    assert any("not a header name" in p for p in ps)


def test_all_problems_reported_at_once():
    ps = problems({"bottle": "Demo!", "allow": ["https://x"], "idle_timeout": "x", "extra": 1})
    assert len(ps) >= 4


def test_dlp_host_lookup_most_specific_wins():
    pol = P.parse(
        policy_doc(
            allow=["*.example.com"],
            passthrough=[],
            dlp={"hosts": {"*.example.com": "warn", "*.api.example.com": "off", "x.api.example.com": "block"}},
        )
    )
    assert pol.dlp.action_for("a.example.com") == "warn"
    assert pol.dlp.action_for("b.api.example.com") == "off"
    assert pol.dlp.action_for("x.api.example.com") == "block"
    assert pol.dlp.action_for("other.org") == "block"


def test_load_file(tmp_path):
    p = tmp_path / "policy.json"
    p.write_text(json.dumps(BASE_POLICY))
    assert P.load(p).bottle == "demo"
    p.write_text("{not json")
    with pytest.raises(P.PolicyError, match="not valid JSON"):
        P.load(p)
    with pytest.raises(P.PolicyError, match="cannot read"):
        P.load(tmp_path / "missing.json")
    with pytest.raises(P.PolicyError, match="JSON object"):
        P.loads("[]")
