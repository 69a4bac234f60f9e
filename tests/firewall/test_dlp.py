import gzip
import json
import string
import zlib

import pytest
from firewall import dlp
from firewall.dlp import BUILTIN_RULES, BodyError, Scanner, decode_body
from fwtest import ALNUM, SAMPLES, rnd

EXTRA = [
    ("openai-api-key", "sk-" + rnd(48)),
    ("openai-api-key", "sk-" + rnd(20) + "T3BlbkFJ" + rnd(20)),
    ("github-token", "github_pat_" + rnd(22) + "_" + rnd(59)),
    ("github-token", "gho_" + rnd(36)),
    ("aws-access-key-id", "ASIA" + rnd(16, string.ascii_uppercase + string.digits)),
    ("aws-secret-access-key", '"SecretAccessKey": "' + rnd(40, ALNUM + "/+") + '"'),
    ("private-key", "-----BEGIN OPENSSH PRIVATE KEY-----"),
    ("private-key", "-----BEGIN PRIVATE KEY-----"),
    ("slack-token", "xoxp-" + rnd(30, ALNUM + "-")),
]

scanner = Scanner(BUILTIN_RULES)


def names(text):
    return [r.name for r in scanner.scan_text(text)]


@pytest.mark.parametrize("rule, secret", sorted(SAMPLES.items()) + EXTRA)
def test_builtin_rules_find_their_secret(rule, secret):
    assert rule in names(f"prefix {secret} suffix")
    assert rule in names(json.dumps({"k": secret}))


def test_required_builtin_rules_exist():
    have = {r.name for r in BUILTIN_RULES}
    for needed in (
        "anthropic-api-key",
        "openai-api-key",
        "aws-access-key-id",
        "aws-secret-access-key",
        "github-token",
        "gitlab-token",
        "slack-token",
        "google-api-key",
        "private-key",
    ):
        assert needed in have


ORDINARY = [
    "GET /simple/rich/ HTTP/1.1",
    '{"name":"left-pad","version":"1.3.0","dist":{"shasum":"5b8a3a7765dfe001261dde915589e782f8c94d1e",'
    '"integrity":"sha512-XI5MPzVNApjAyhQzphX8BkmKsKUxD4LdyK24iZeQC5n4LURBRN6YKH4aGT4qMDWfa5qsvb+YK/tw1SYlYaZCw=="}}',
    "task-sk-management and risk-assessment notes",
    "user_id=AKIAN&next=/home",
    "The AKIA prefix marks AWS access key ids.",
    "aws_secret_access_key = <your secret here>",
    "ghp_ tokens are GitHub personal access tokens",
    "sk-ant-... is how Anthropic keys start",
    "-----BEGIN CERTIFICATE-----\nMIIB" + "A" * 60 + "\n-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "Authorization: Bearer placeholder",
    "https://hooks.slack.com/services/",
    "AIzaShort",
    "sk_test_" + rnd(24),
    "x-request-id: " + rnd(64, string.hexdigits.lower()),
    "data=" + rnd(200, string.ascii_lowercase),
    "BASE64BLOB" + rnd(200, ALNUM) + "==",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_traffic_not_flagged(text):
    assert names(text) == []


def test_glued_tokens_not_flagged():
    # a longer identifier that merely contains a key shape
    assert "aws-access-key-id" not in names("XAKIAIOSFODNN7EXAMPLEX")
    assert "google-api-key" not in names("AIza" + rnd(50))


def test_url_encoded_secret_found_in_query():
    key = SAMPLES["aws-access-key-id"]
    encoded = "".join(f"%{ord(c):02X}" for c in key)
    assert "aws-access-key-id" in names(f"token={encoded}")


def test_scan_url_locations():
    f = scanner.scan_url("api.example.com", "/v1/x?token=" + SAMPLES["github-token"])
    assert [(x.rule, x.where) for x in f] == [("github-token", "query")]
    f = scanner.scan_url("api.example.com", "/keys/" + SAMPLES["aws-access-key-id"] + "/x")
    assert [(x.rule, x.where) for x in f] == [("aws-access-key-id", "path")]


def test_scan_headers_and_exemptions():
    hdrs = [("X-Api-Key", SAMPLES["anthropic-api-key"]), ("Accept", "*/*")]
    f = scanner.scan_headers(hdrs)
    assert [(x.rule, x.where) for x in f] == [("anthropic-api-key", "header x-api-key")]
    assert scanner.scan_headers(hdrs, exempt=frozenset({"x-api-key"})) == []


def test_basic_auth_is_decoded():
    import base64

    cred = base64.b64encode(f"user:{SAMPLES['github-token']}".encode()).decode()
    f = scanner.scan_headers([("Authorization", f"Basic {cred}")])
    assert [x.rule for x in f] == ["github-token"]


def test_scan_body_json_escapes():
    pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE" + rnd(30) + "\n-----END EC PRIVATE KEY-----"
    body = json.dumps({"file": pem}).encode()
    assert [x.rule for x in scanner.scan_body(body, "application/json")] == ["private-key"]
    secret = rnd(20, ALNUM) + "/" + rnd(19, ALNUM)
    body = ('{"aws_secret_access_key": "' + secret.replace("/", "\\/") + '"}').encode()
    assert "aws-secret-access-key" in [x.rule for x in scanner.scan_body(body, "application/json")]


def test_findings_never_contain_the_secret():
    for secret in SAMPLES.values():
        for f in scanner.scan_url("h.example.com", "/p?x=" + secret) + scanner.scan_body(secret.encode()):
            assert secret not in f.describe()
            assert secret not in f.where


def test_redact():
    key = SAMPLES["aws-access-key-id"]
    assert scanner.redact(f"/keys/{key}/x") == "/keys/[REDACTED:aws-access-key-id]/x"
    encoded = "".join(f"%{ord(c):02X}" for c in key)
    assert scanner.redact(f"/keys/{encoded}") == dlp.REDACTED
    assert scanner.redact("/simple/rich/") == "/simple/rich/"


def test_decode_body_gzip_deflate_and_limits():
    payload = b"hello " + SAMPLES["github-token"].encode()
    assert decode_body(gzip.compress(payload), "gzip", 1000) == payload
    assert decode_body(zlib.compress(payload), "deflate", 1000) == payload
    raw_deflate = zlib.compressobj(wbits=-15)
    assert decode_body(raw_deflate.compress(payload) + raw_deflate.flush(), "deflate", 1000) == payload
    # concatenated gzip members: the second one is read too
    assert decode_body(gzip.compress(b"a") + gzip.compress(payload), "gzip", 1000) == b"a" + payload
    bomb = gzip.compress(b"\0" * 5_000_000)
    with pytest.raises(BodyError) as ei:
        decode_body(bomb, "gzip", 1_000_000)
    assert ei.value.rule == "body-too-large"
    with pytest.raises(BodyError) as ei:
        decode_body(b"not gzip", "gzip", 1000)
    assert ei.value.rule == "undecodable-body"
    with pytest.raises(BodyError) as ei:
        decode_body(b"x", "compress", 1000)
    assert ei.value.rule == "undecodable-body"
    assert decode_body(b"plain", "identity", 1000) == b"plain"


def test_decode_body_brotli_and_zstd():
    import brotli

    payload = b"x" * 10 + SAMPLES["npm-token"].encode()
    assert decode_body(brotli.compress(payload), "br", 1000) == payload
    with pytest.raises(BodyError):
        decode_body(brotli.compress(b"\0" * 100_000), "br", 1000)
    try:
        from compression import zstd
    except ImportError:
        from backports import zstd
    assert decode_body(zstd.compress(payload), "zstd", 1000) == payload
    with pytest.raises(BodyError):
        decode_body(zstd.compress(b"\0" * 100_000), "zstd", 1000)
