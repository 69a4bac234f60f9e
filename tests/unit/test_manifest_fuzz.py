"""Property: for any document, loading a manifest gives a Manifest or a ManifestError that
names a field, never another exception, and within a bounded time."""
from __future__ import annotations

import time

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bottle_tasks.manifest import Manifest, ManifestError, load

# Real field names, so the documents reach deep into the validation, mixed with noise.
FIELDS = ["version", "agents", "trust", "images", "extra_ca_bundle", "base", "proxy_base", "prompt",
          "workspace", "path", "copy", "resources", "memory", "cpus", "pids", "runtime", "env", "secrets",
          "git", "user_name", "user_email", "remotes", "claude", "permissions", "allow", "deny", "mcp_servers",
          "model", "network", "passthrough", "allowed_cidrs", "idle_timeout", "dlp", "action", "hosts",
          "patterns", "name", "regex", "max_body_bytes", "egress_proxy", "routes", "host", "paths", "methods",
          "inject", "header", "secret", "format", "supervise", "enabled", "cred_proxy", "demo"]
VALUES = ["api.anthropic.com", "*.pypi.org", "10.0.0.0/8", "block", "warn", "off", "/v1/", "GET", "x-api-key",
          "ANTHROPIC_API_KEY", "{secret}", "2g", "runc", ".", "(a+)+$", "itk_[a-z]{4}", "localhost:99999"]

scalars = (st.none() | st.booleans() | st.integers(-10, 10**12) | st.floats(allow_nan=True)
           | st.sampled_from(VALUES) | st.text(max_size=20))
keys = st.sampled_from(FIELDS) | st.text(max_size=8)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
                         max_leaves=60)
manifests = st.fixed_dictionaries({"version": st.just(1) | scalars,
                                   "agents": st.dictionaries(st.sampled_from(["demo", "x", "Bad Name"]), documents,
                                                             max_size=2)}) | documents

SLOWEST = [0.0]


def check(path) -> None:
    started = time.monotonic()
    try:
        result = load(path)
        assert isinstance(result, Manifest)
    except ManifestError as e:
        assert e.field, str(e)
    elapsed = time.monotonic() - started
    SLOWEST[0] = max(SLOWEST[0], elapsed)
    assert elapsed < 2.0, f"load took {elapsed:.1f}s"


@given(doc=manifests)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
def test_any_document_loads_or_names_a_field(tmp_path, doc):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    check(path)


@given(text=st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_text_loads_or_names_a_field(tmp_path, text):
    for name in ("m.yaml", "m.md"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        check(path)


def test_report_the_slowest_load():
    print(f"slowest manifest load while fuzzing: {SLOWEST[0] * 1000:.1f} ms")
