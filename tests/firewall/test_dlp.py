import gzip
import json
import random
import re
import string
import urllib.parse
import zlib

import pytest
from firewall import dlp
from firewall.dlp import BUILTIN_RULES, REGEX_RULES, BodyError, Scanner, decode_body
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


def test_scan_head_locations_in_the_url():
    f = scanner.scan_head("GET", "api.example.com", "/v1/x?token=" + SAMPLES["github-token"], "", [])
    assert [(x.rule, x.where) for x in f] == [("github-token", "query")]
    f = scanner.scan_head("GET", "api.example.com", "/keys/" + SAMPLES["aws-access-key-id"] + "/x", "", [])
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
        for f in scanner.scan_head("GET", "h.example.com", "/p?x=" + secret, "", []) + scanner.scan_body(secret.encode()):
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


def test_a_body_in_more_codings_than_clients_use_is_refused_unopened():
    """Each coding is undone in full, up to the body limit: `gzip, gzip, …` a few hundred times
    blocked the firewall's one event loop for 30 s."""
    payload = b"hello"
    twice = gzip.compress(gzip.compress(payload))
    assert decode_body(twice, "gzip, identity, gzip", 1000) == payload
    with pytest.raises(BodyError) as ei:
        decode_body(gzip.compress(twice), "gzip, gzip, gzip", 1000)
    assert ei.value.rule == "undecodable-body" and "3 content codings" in str(ei.value)


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


def zstd_module():
    try:
        from compression import zstd
    except ImportError:
        from backports import zstd
    return zstd



def zlib_and_raw_deflate(secret: bytes) -> bytes:
    """A body valid as zlib and as raw deflate, with different contents: as raw deflate its
    first block is stored and holds the zlib header's bytes, then comes `secret` compressed;
    as zlib all of that is the data of one stored block, and the secret is not in it."""
    flg, first_block = 0x01, 0x08  # 0x7801: zlib's header check; 0x08: a stored, not final, block
    raw_stored = flg | first_block << 8  # what raw deflate reads as its stored block's length
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw_tail = compressor.compress(secret) + compressor.flush()
    body = bytes([0x78, flg, first_block]) + (0xFFFF ^ raw_stored).to_bytes(2, "little")
    body += bytes([flg, first_block]) + b"\0" * (raw_stored - 2) + raw_tail
    body += b"\0" * (7 + (0xFFFF ^ raw_stored) - len(body))  # the rest of zlib's stored block
    body += bytes([0x01, 0x00, 0x00, 0xFF, 0xFF])  # zlib's final, empty block
    return body + zlib.adler32(zlib.decompressobj(15).decompress(body)).to_bytes(4, "big")


def test_deflate_valid_both_ways_is_read_both_ways():
    secret = ('{"key": "' + SAMPLES["github-token"] + '"}').encode()
    body = zlib_and_raw_deflate(secret)
    assert secret not in zlib.decompress(body) and secret in zlib.decompressobj(-15).decompress(body)
    assert secret in decode_body(body, "deflate", 1 << 20)
    assert decode_body(zlib.compress(secret), "deflate", 1000) == secret  # the usual forms, once
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    assert decode_body(raw.compress(secret) + raw.flush(), "deflate", 1000) == secret

def test_every_zstd_frame_is_read_as_decoders_do():
    zstd = zstd_module()
    payload = SAMPLES["github-token"].encode()
    two_frames = zstd.compress(b'{"note": "hello"}') + zstd.compress(payload)
    assert decode_body(two_frames, "zstd", 1000) == zstd.decompress(two_frames)
    skippable = (0x184D2A50).to_bytes(4, "little") + (4).to_bytes(4, "little") + b"skip"
    assert decode_body(skippable + zstd.compress(payload), "zstd", 1000) == payload
    with pytest.raises(BodyError, match="truncated"):
        decode_body(zstd.compress(b"a") + zstd.compress(payload)[:-3], "zstd", 1000)
    with pytest.raises(BodyError, match="larger"):  # the limit counts every frame
        decode_body(zstd.compress(b"a" * 600) + zstd.compress(b"b" * 600), "zstd", 1000)


# -- the speed-ups (needles, SHORT_TEXT, openai's literal-first form) change no result -----------

# The openai rule as first written, look-behind first: the reference for its literal-first form.
OPENAI_LOOKBEHIND_FIRST = re.compile(
    r"(?<![A-Za-z0-9_-])sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{32,}"
    r"|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}(?![A-Za-z0-9])"
    r"|[A-Za-z0-9]{48}(?![A-Za-z0-9]))"
)
CUSTOM = dlp.Rule("internal-token", re.compile(r"itk_[A-Za-z0-9]{32}"), "a policy pattern")  # no needles


def _corpus() -> list[str]:
    """Every sample secret glued on either side, cut short, case-flipped, URL-encoded, alone
    and inside long texts (ASCII, Latin-1, beyond Latin-1), plus near-misses built from the
    rules' needles."""
    r = random.Random(11)
    secrets = [*SAMPLES.values(), *(s for _, s in EXTRA), "itk_" + rnd(32)]
    out = list(ORDINARY)
    glue = ["", " ", "x", "Z9", "_", "-", "/", "=", "+", "\n", '"', "é", "\u017f"]
    for s in secrets:
        out += [a + s + b for a in glue for b in glue]
        out += [s[:-1], s[1:], s[: len(s) // 2], s.swapcase(), s.lower(), s.upper(), s.replace("_", "+")]
        out += ["".join(f"%{ord(c):02X}" for c in s), "k=" + s.replace("-", "%2D"), "\u017f" + s[1:]]
    pieces = sorted({n for rule in REGEX_RULES for n in rule.needles})
    pieces += ["sk-", "SECRET", "Secret_Access-Key", "\u017fecret", " = ", ": '", "task-", "%2D", "+", "itk_"]
    for _ in range(600):
        parts = [r.choice(pieces) if r.random() < 0.5 else "".join(r.choices(ALNUM + "-_/+", k=r.randint(1, 64)))
                 for _ in range(r.randint(1, 8))]  # fmt: skip
        out.append("".join(parts))
    filler = " ".join(ORDINARY) * 3  # well past SHORT_TEXT
    assert len(filler) > 4 * dlp.SHORT_TEXT
    for s in secrets[:: 3]:
        for tail in ("", " café ß", " \u2192 done", " \u017f"):
            out += [s + filler + tail, filler + s + tail, filler[:700] + s + filler[700:] + tail]
    out += [filler, filler + " caf\u00e9", filler + " \u2192", filler.upper(), filler.replace(" ", "+")]
    return out


CORPUS = _corpus()


def _reference_scan_text(rules, text):
    """scan_text as it was before the speed-ups: every regex, always."""
    hits = [r for r in rules if r.regex.search(text)]
    if "%" in text or "+" in text:
        decoded = urllib.parse.unquote_plus(text, encoding="latin-1")
        if decoded != text:
            hits += [r for r in rules if r not in hits and r.regex.search(decoded)]
    return hits


def _reference_redact(rules, text):
    out = text
    for r in rules:
        out = r.regex.sub(f"[REDACTED:{r.name}]", out)
    if "%" in out or "+" in out:
        if any(r.regex.search(urllib.parse.unquote_plus(out, encoding="latin-1")) for r in rules):
            return dlp.REDACTED
    return out


def _span(m):
    return None if m is None else m.span()


def test_every_builtin_rule_has_needles():
    # a regex rule without them is scanned at regex speed over every body: add them with the rule
    assert all(rule.needles for rule in REGEX_RULES)


@pytest.mark.parametrize("rule", REGEX_RULES, ids=lambda r: r.name)
def test_every_match_holds_one_of_its_needles(rule):
    fold = bool(rule.regex.flags & re.IGNORECASE)
    matches = [m.group() for text in CORPUS for m in rule.regex.finditer(text)]
    assert matches, "the corpus must exercise every rule"
    for found in matches:
        hay = found.lower() if fold else found
        assert any(n in hay for n in rule.needles), (rule.name, found)


@pytest.mark.parametrize("rule", REGEX_RULES, ids=lambda r: r.name)
def test_rule_search_finds_what_its_regex_finds(rule):
    for text in CORPUS:
        assert _span(rule.search(text)) == _span(rule.regex.search(text)), (rule.name, text[:120])


def test_scanner_finds_and_redacts_exactly_like_the_plain_regexes():
    rules = (*REGEX_RULES, CUSTOM)
    sc = Scanner(rules)
    flagged = 0
    for text in CORPUS:
        want = _reference_scan_text(rules, text)
        assert sc.scan_text(text) == want, text[:120]
        assert sc.redact(text) == _reference_redact(rules, text), text[:120]
        flagged += bool(want)
    assert flagged > 100


def test_openai_literal_first_form_matches_like_the_look_behind_form():
    rule = next(r for r in REGEX_RULES if r.name == "openai-api-key")
    hits = 0
    for text in CORPUS:
        got = [m.span() for m in rule.regex.finditer(text)]
        assert got == [m.span() for m in OPENAI_LOOKBEHIND_FIRST.finditer(text)], text[:120]
        assert rule.regex.sub("#", text) == OPENAI_LOOKBEHIND_FIRST.sub("#", text)
        hits += len(got)
    assert hits > 20
    # the glued cases the look-behind exists for, at the start of a text and after each boundary
    key = "sk-" + rnd(48)
    for before, flagged in (("", True), (" ", True), ("x", False), ("_", False), ("-", False), ("/", True)):
        assert bool(rule.regex.search(before + key)) is flagged, before


def test_case_insensitive_needles_hold_within_latin1():
    """The lower-cased text stands in for the case-insensitive regex only on Latin-1 text:
    there, exactly the two ASCII cases of a letter match it, and lower() keeps the rest non-ASCII."""
    latin1 = [chr(i) for i in range(256)]
    for rule in REGEX_RULES:
        if not rule.regex.flags & re.IGNORECASE:
            continue
        for letter in set("".join(rule.needles)):
            same = {c for c in latin1 if re.fullmatch(re.escape(letter), c, re.IGNORECASE)}
            assert same == {letter, letter.upper()}, letter
    for c in latin1:
        assert len(c.lower()) == 1 and (c.lower().isascii() == c.isascii())


def test_case_insensitive_rule_beyond_latin1_still_runs_its_regex():
    rule = next(r for r in BUILTIN_RULES if r.name == "aws-secret-access-key")
    text = "\u017fecret_access_key = " + rnd(40, ALNUM + "/+")  # U+017F, a long s, folds to s
    assert rule.regex.search(text), "precondition: the regex itself flags it"
    assert rule.search(text) and "aws-secret-access-key" in names(text)
    assert "aws-secret-access-key" in names(text + " " + " ".join(ORDINARY) * 3)


def test_needles_of_a_case_insensitive_rule_must_be_lower_case():
    with pytest.raises(ValueError, match="lower-case"):
        dlp.Rule("x", re.compile("secret", re.IGNORECASE), "x", ("Secret",))


class _Spy:
    """A stand-in regex that counts its searches."""

    def __init__(self, pattern: str):
        self._re = re.compile(pattern)
        self.flags = self._re.flags
        self.calls = 0

    def search(self, text, *a):
        self.calls += 1
        return self._re.search(text, *a)

    def sub(self, *a):
        self.calls += 1
        return self._re.sub(*a)


def test_long_text_without_a_needle_skips_the_regex():
    spy = _Spy(r"(?<![A-Za-z0-9])tok_[A-Za-z0-9]{20}")
    sc = Scanner([dlp.Rule("tok", spy, "a token", ("tok_",))])
    body = ("lorem ipsum " * 200).encode()
    assert sc.scan_body(body, "text/plain") == [] and spy.calls == 0
    assert sc.redact(body.decode()) == body.decode() and spy.calls == 0
    secret = "tok_" + rnd(20)
    assert [f.rule for f in sc.scan_body(body + secret.encode(), "text/plain")] == ["tok"]
    assert spy.calls == 1
    # short texts (URLs, headers) go straight to the regex, and policy patterns (no needles) always do
    assert sc.scan_text("/x") == [] and spy.calls == 2
    custom = _Spy(r"itk_[A-Za-z0-9]{32}")
    Scanner([dlp.Rule("itk", custom, "x")]).scan_body(body, "text/plain")
    assert custom.calls == 1



def _reference_head(rules, parts):
    """A head's findings as before the one-pass check: every rule on every part, first of each rule."""
    seen, out = set(), []
    for text, where in parts:
        for r in _reference_scan_text(rules, text):
            if r.name not in seen:
                seen.add(r.name)
                out.append(dlp.Finding(r.name, where, r.what))
    return out


HEADER_NAMES = ["Host", "Accept", "x-api-key", "Authorization", "X-Token", "cookie", "X-Token"]  # X-Token repeats


def test_head_in_one_pass_finds_exactly_what_every_rule_on_every_part_finds():
    """scan_head runs only the rules one RE2 pass over the whole head allows: the findings,
    their places and their order must be those of every rule run on every part."""
    import base64

    rules = (*BUILTIN_RULES, CUSTOM)
    sc = Scanner(rules)
    r = random.Random(11)
    phrase = _phrase(bytes(range(16)))
    values = [*CORPUS, phrase, f"note: {phrase}.", "Basic " + base64.b64encode(f"u:{SAMPLES['npm-token']}".encode()).decode()]
    flagged = 0
    for _ in range(1500):
        headers = [(r.choice(HEADER_NAMES), r.choice(values)) for _ in range(r.randint(0, 7))]
        path = r.choice(["/", "/v1/messages", "/p/" + r.choice(CORPUS)[:80]]) + r.choice(["", "?q=" + r.choice(values)[:200]])
        host, authority = r.choice(["api.example.com", r.choice(CORPUS)[:60]]), r.choice(["", "api.example.com:443"])
        exempt = r.choice([frozenset(), frozenset({"x-api-key"})])
        parts = [("GET", "method"), *Scanner._url_parts(host, path)]
        if authority:
            parts.append((authority, "host"))
        parts += Scanner._header_parts(headers, exempt, "header")
        want = _reference_head(rules, parts)
        assert sc.scan_head("GET", host, path, authority, headers, exempt) == want, (host, path, headers)
        flagged += bool(want)
    assert 200 < flagged < 1400  # both kinds of head are exercised


# -- seed phrases (BIP-39) ----------------------------------------------------------------------


def _phrase(entropy: bytes) -> str:
    from mnemonic import Mnemonic

    return Mnemonic("english").to_mnemonic(entropy)


@pytest.mark.parametrize("size", [16, 20, 24, 28, 32])  # 12, 15, 18, 21, 24 words
def test_seed_phrases_of_every_length_are_found(size):
    phrase = _phrase(bytes(range(size)))
    assert "seed-phrase" in names(f"restore with: {phrase}.")
    assert "seed-phrase" in [f.rule for f in scanner.scan_body(json.dumps({"words": phrase}).encode())]
    assert phrase not in scanner.redact(f"x {phrase} y")


def test_seed_phrase_needs_a_valid_checksum_and_whole_words():
    words = _phrase(bytes(range(16))).split()
    assert "seed-phrase" not in names(" ".join(words[:-1] + ["zoo" if words[-1] != "zoo" else "wrong"]))
    assert "seed-phrase" not in names(" ".join(words[:11]))  # 11 words
    assert "seed-phrase" not in names("x".join(words))  # not separated by whitespace
    prose = "the abandon ability able about above absent absorb abstract absurd abuse access accident of it"
    assert "seed-phrase" not in names(prose)


def test_seed_phrase_checks_are_bounded_and_fail_closed():
    """Text made only of list words would need millions of checksums: past the budget the
    rest counts as a finding, so the work per body stays bounded."""
    import types

    from firewall.dlp import SeedPhraseMatcher
    from mnemonic import Mnemonic

    words = Mnemonic("english").wordlist
    flood = " ".join(words[(i * 7) % 2048] for i in range(SeedPhraseMatcher.MAX_CHECKS))
    matcher = SeedPhraseMatcher()
    calls = []
    matcher._mnemonic = types.SimpleNamespace(check=lambda phrase: calls.append(1) and False)  # never valid
    assert matcher.search(flood) is not None, "an unchecked run must count as a finding"
    assert len(calls) == SeedPhraseMatcher.MAX_CHECKS
    # ordinary prose with a few list words costs no checksum at all
    calls.clear()
    prose = "The agent read the file, found the bug in the parser and wrote a test for it. " * 5000
    assert matcher.search(prose) is None and calls == []
