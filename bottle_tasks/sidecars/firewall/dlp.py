"""DLP: recognise secrets in outgoing requests, and redact them from anything we print.

Rules are regular expressions anchored on the well-known shapes of credentials
(provider prefixes, fixed lengths, checksummed markers), so ordinary traffic is
not flagged. A finding names the rule and where it was seen (``query``,
``header x-foo``, ``body``), never the matched text.

Speed: a pattern that opens with a look-behind gets no help from the regex engine's
literal-prefix search and costs ~20 ms per MB of body, per rule, per pass. So each
built-in rule also lists the literal strings ("needles") one of which every match of
it contains; where none of them is in the text, the rule cannot match and its
regex is not run. A plain substring search is some 30 times faster than the regex.
A needle that ordinary text often holds ("sk-") does not help, so that rule puts its
look-behind after the literal instead, which matches the same and lets the engine
search for the literal.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote_plus

from .prefilter import Prefilter, re2_form

REDACTED = "[REDACTED]"
# Up to this many characters (URLs, headers) the rules' regexes run directly; on longer
# texts (bodies) a rule's regex runs only where one of its needles is present.
SHORT_TEXT = 512


class Matcher(Protocol):
    """What a rule matches with: a compiled `re` or RE2 pattern, or the seed-phrase matcher."""

    @property
    def flags(self) -> int: ...

    def search(self, text: str, /) -> Any: ...

    def sub(self, repl: str, text: str, /) -> str: ...


@dataclass(frozen=True)
class Rule:
    name: str
    regex: Matcher
    what: str  # human description: "an AWS access key id"
    # Literals of which every match of ``regex`` contains at least one (lower-case, and looked
    # for case-insensitively, if the regex is case-insensitive). Empty (policy patterns): no
    # shortcut, the regex always runs.
    needles: tuple[str, ...] = ()
    _has_needle: Callable[[str], object] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        needles = self.needles
        check: Callable[[str], object] | None
        if not needles:  # a matcher that is no regex may say cheaply where it cannot match
            check = getattr(self.regex, "may_match", None)
        elif self.regex.flags & re.IGNORECASE:
            if not all(n.isascii() and n == n.lower() for n in needles):
                raise ValueError(f"rule {self.name}: the needles of a case-insensitive rule must be lower-case ASCII")
            check = functools.partial(_has_folded_needle, needles)
        elif len(needles) == 1:
            needle = needles[0]
            check = lambda text: needle in text
        else:  # one pass for all: an alternation of literals finds any of them
            check = re.compile("|".join(map(re.escape, needles))).search
        object.__setattr__(self, "_has_needle", check)

    def may_match(self, text: str) -> bool:
        """False only when the regex cannot match ``text`` (none of the needles is in it)."""
        return self._has_needle is None or bool(self._has_needle(text))

    def search(self, text: str) -> re.Match | None:
        """``regex.search(text)``, skipped when no needle is in ``text``."""
        return self.regex.search(text) if self.may_match(text) else None


def _has_folded_needle(needles: tuple[str, ...], text: str) -> bool:
    """The needle test of a case-insensitive rule. Within Latin-1 only the two ASCII cases of
    a letter match it case-insensitively, so the needles are looked for in the lower-cased
    text. Beyond Latin-1 other characters fold onto ASCII letters (U+017F is an s): True,
    so the regex itself decides."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return True
    low = text.lower()
    return any(n in low for n in needles)


def _rule(name: str, pattern: str, what: str, flags: int = 0, needles: tuple[str, ...] = ()) -> Rule:
    return Rule(name, re.compile(pattern, flags), what, needles)


class SeedPhraseMatcher:
    """Finds BIP-39 seed phrases: 12, 15, 18, 21 or 24 consecutive words of the English list
    (separated by whitespace) whose checksum is valid. The checksum is what tells a wallet
    phrase from prose that happens to use list words: a random run passes it 1 time in 16
    (12 words) to 1 in 256 (24 words).

    Speed: one RE2 pass (linear time, C) finds the runs of 12 or more list words; only those
    are split and checksummed in Python. Ordinary text and JSON have next to none (16 MiB of
    prose: ~0.03 s). On a body that pass is the scanner's prefilter's (``pattern`` joins its
    RE2 Set): this matcher runs only where that pass found a run. Text made of list words
    could make the checksums cost seconds, so they are bounded: past MAX_CHECKS in one text,
    the rest of the run counts as a finding (fail closed) rather than being checked.

    Duck-types the two methods of a compiled regex the scanner uses (``search``, ``sub``)."""

    LENGTHS = (24, 21, 18, 15, 12)
    MAX_CHECKS = 20_000  # ~70 ms of checksums; natural text never comes near

    @functools.cached_property
    def _mnemonic(self):
        from mnemonic import Mnemonic  # the BIP-39 English list and checksum

        return Mnemonic("english")

    @functools.cached_property
    def pattern(self) -> str:
        """The RE2 pattern of a run of 12 or more list words: every phrase matches it."""
        from mnemonic import Mnemonic

        words = "|".join(sorted(Mnemonic("english").wordlist, key=len, reverse=True))
        return rf"\b(?:(?:{words})\s+){{11,}}(?:{words})\b"

    @functools.cached_property
    def _runs(self):
        """Built on first use: every controller command imports this module, few scan text."""
        import re2

        options = re2.Options()
        options.max_mem = 64 << 20  # the 2048-word alternation needs more than RE2's default
        options.log_errors = False
        return re2.compile(self.pattern, options=options)

    @staticmethod
    def may_match(text: str) -> bool:
        """False for a text of fewer than 12 words, which holds no phrase: most URL parts and
        headers. Python's whitespace includes RE2's, so a run RE2 finds is never missed."""
        return len(text.split(None, 11)) == 12

    def _phrases(self, text: str) -> Iterator[tuple[int, int]]:
        """(start, end) offsets of each valid phrase (or of a run too long to check)."""
        if not self.may_match(text):  # cheaper than the RE2 pass on the short texts of a request's head
            return
        budget = [self.MAX_CHECKS]
        for run in self._runs.finditer(text):
            words = [(m.start() + run.start(), m.end() + run.start(), m.group())
                     for m in re.finditer(r"\S+", run.group())]
            yield from self._check(words, budget)

    def _check(self, words: list, budget: list[int]) -> Iterator[tuple[int, int]]:
        i = 0
        while i + 12 <= len(words):
            for n in self.LENGTHS:
                if i + n > len(words):
                    continue
                budget[0] -= 1
                if budget[0] < 0:
                    yield words[i][0], words[-1][1]  # too many candidates to check: refuse the rest
                    return
                if self._mnemonic.check(" ".join(w for _, _, w in words[i : i + n])):
                    yield words[i][0], words[i + n - 1][1]
                    i += n - 1
                    break
            i += 1

    flags = 0  # no regex flags: Rule checks them for case-insensitive needles

    def search(self, text: str, /) -> tuple[int, int] | None:
        return next(self._phrases(text), None)

    def sub(self, replacement: str, text: str, /) -> str:
        out: list[str] = []
        last = 0
        for start, end in self._phrases(text):
            out += [text[last:start], replacement]
            last = end
        return "".join(out) + text[last:]


SEED_PHRASE = "seed-phrase"


# Boundaries: a token must not be glued to more token characters on either side,
# so that e.g. a longer random identifier that merely contains "AKIA" is not flagged.
REGEX_RULES: tuple[Rule, ...] = (
    _rule(
        "anthropic-api-key",
        r"(?<![A-Za-z0-9_-])sk-ant-[a-z]{2,8}[0-9]{2}-[A-Za-z0-9_-]{32,}",
        "an Anthropic API key or OAuth token",
        needles=("sk-ant-",),
    ),
    _rule(
        "openai-api-key",
        # The look-behind comes after the literal: the same matches as ``(?<![A-Za-z0-9_-])sk-(...)``,
        # but the engine can then scan for "sk-", which ordinary text (task-, disk-) holds often.
        r"sk-(?<![A-Za-z0-9_-]sk-)(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{32,}"
        r"|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}(?![A-Za-z0-9])"
        r"|[A-Za-z0-9]{48}(?![A-Za-z0-9]))",
        "an OpenAI API key",
        needles=("sk-",),
    ),
    _rule(
        "aws-access-key-id",
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])",
        "an AWS access key id",
        needles=("AKIA", "ASIA"),
    ),
    _rule(
        "aws-secret-access-key",
        r"secret[_-]?access[_-]?key(?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
        "an AWS secret access key assignment",
        re.IGNORECASE,
        needles=("secret",),
    ),
    _rule(
        "github-token",
        r"(?<![A-Za-z0-9_])(?:(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{60,251})"
        r"(?![A-Za-z0-9])",
        "a GitHub token",
        needles=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    _rule(
        "gitlab-token",
        r"(?<![A-Za-z0-9_-])gl(?:pat|dt|rt|ptt|oas)-[A-Za-z0-9_.-]{20,}",
        "a GitLab token",
        needles=("glpat-", "gldt-", "glrt-", "glptt-", "gloas-"),
    ),
    _rule(
        "slack-token",
        r"(?<![A-Za-z0-9])xox[baprs]-[A-Za-z0-9-]{10,}",
        "a Slack token",
        needles=("xox",),
    ),
    _rule(
        "slack-webhook",
        r"hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,}",
        "a Slack webhook URL",
        needles=("hooks.slack.com/services/T",),
    ),
    _rule(
        "google-api-key",
        r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])",
        "a Google API key",
        needles=("AIza",),
    ),
    _rule(
        "stripe-secret-key",
        r"(?<![A-Za-z0-9])(?:sk|rk)_live_[A-Za-z0-9]{24,}",
        "a Stripe live secret key",
        needles=("_live_",),
    ),
    _rule(
        "npm-token",
        r"(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])",
        "an npm access token",
        needles=("npm_",),
    ),
    _rule(
        "pypi-token",
        r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}",
        "a PyPI API token",
        needles=("pypi-AgEIcHlwaS5vcmc",),
    ),
    _rule(
        "private-key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
        "a PEM private key",
        needles=("-----BEGIN ",),
    ),
)
BUILTIN_RULES: tuple[Rule, ...] = (
    *REGEX_RULES,
    # A crypto wallet's recovery words: not a regex; the matcher looks for runs of list words.
    Rule(SEED_PHRASE, SeedPhraseMatcher(), "a BIP-39 seed phrase (wallet recovery words)"),
)

BUILTIN_NAMES = frozenset(r.name for r in BUILTIN_RULES)


@dataclass(frozen=True)
class Finding:
    rule: str
    where: str  # "host", "path", "query", "header <name>", "body"
    what: str

    def describe(self) -> str:
        return f"{self.what} in the request {self.where}"


class BodyError(Exception):
    """The body could not be scanned (too large once decoded, or an unknown encoding)."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule


def _re2_source(rule: Rule) -> str | None:
    """The RE2 form of a rule for the prefilter: built from a Python regex, the pattern itself
    for a policy pattern (RE2 already) or for the seed-phrase matcher (the runs it checks)."""
    if isinstance(rule.regex, re.Pattern):
        return re2_form(rule.regex.pattern, rule.regex.flags)
    source = getattr(rule.regex, "pattern", None)
    return source if isinstance(source, str) else None


class Scanner:
    def __init__(self, rules: Iterable[Rule]):
        self.rules: tuple[Rule, ...] = tuple(rules)

    @functools.cached_property
    def _prefilter(self) -> Prefilter:
        """Built on first use: with the seed-phrase rule's runs in it, it takes ~25 ms."""
        return Prefilter([_re2_source(r) for r in self.rules])

    def prepare(self) -> None:
        """Build now what the first scan would otherwise wait for (the firewall, once ready)."""
        self._prefilter  # noqa: B018 - built and kept by the cached property

    def _matching(self, text: str, skip: Iterable[Rule] = (), among: Sequence[Rule] | None = None,
                  utf8: bytes | None = None) -> list[Rule]:
        """The rules that match ``text``: of all, or of ``among`` (the candidates of a request's head).
        ``utf8``: the text's UTF-8, when the caller holds it already."""
        if len(text) <= SHORT_TEXT:  # a needle test would cost more than the regex saves
            return [r for r in (self.rules if among is None else among) if r not in skip and r.regex.search(text)]
        # long texts (bodies): one RE2 pass says which rules may match; only those run
        candidates = self._prefilter.candidates(text if utf8 is None else utf8)
        return [r for i, r in enumerate(self.rules)
                if i in candidates and (among is None or r in among) and r not in skip and r.search(text)]

    def scan_text(self, text: str, among: Sequence[Rule] | None = None, utf8: bytes | None = None) -> list[Rule]:
        """Rules that match ``text`` (and its URL-decoded form), in rule order."""
        hits = self._matching(text, among=among, utf8=utf8)
        if "%" in text or "+" in text:
            decoded = unquote_plus(text, encoding="latin-1")
            if decoded != text:
                hits += self._matching(decoded, skip=hits, among=among)
        return hits

    def redact(self, text: str) -> str:
        """``text`` with every match replaced by ``[REDACTED:<rule>]``; if a secret only shows
        once URL-decoded, the whole text is replaced, since it cannot be cut out in place."""
        out = re2_safe(text)
        for r in self.rules:
            if len(out) <= SHORT_TEXT or r.may_match(out):
                out = r.regex.sub(f"[REDACTED:{r.name}]", out)
        if "%" in out or "+" in out:
            decoded = unquote_plus(out, encoding="latin-1")
            if any(r.search(decoded) for r in self.rules):
                return REDACTED
        return out

    # -- request parts -------------------------------------------------------------

    def _findings(self, text: str, where: str, seen: set[str], among: Sequence[Rule] | None = None,
                  utf8: bytes | None = None) -> Iterator[Finding]:
        for r in self.scan_text(text, among, utf8):
            if r.name not in seen:
                seen.add(r.name)
                yield Finding(r.name, where, r.what)

    def _scan_parts(self, parts: list[tuple[str, str]], seen: set[str] | None) -> list[Finding]:
        """Findings in the short texts of a request's head, ``(text, where)`` each.

        Each header gives two or three texts (its name, upper-cased, and "name: value"), and
        running every rule on each cost ~150 us for a head of nineteen headers (measured in the
        firewall image; the rest of a proxied request costs under 1 ms). Instead one RE2 pass over all of them and their
        URL-decoded forms, joined by newlines (the prefilter's ^ and $ hold at each one's edges),
        says which rules may match any of them; only those then run, on each text. Findings and
        their order are those of running every rule on every text."""
        seen = set() if seen is None else seen
        parts = [(re2_safe(text), where) for text, where in parts]  # short texts: a head's
        texts = [text for text, _ in parts]
        texts += [unquote_plus(t, encoding="latin-1") for t in texts if "%" in t or "+" in t]
        candidates = self._prefilter.candidates("\n".join(texts))
        among = [r for i, r in enumerate(self.rules) if i in candidates and any(map(r.may_match, texts))]
        if not among:  # the usual head: nothing to run
            return []
        out: list[Finding] = []
        for text, where in parts:
            out += self._findings(text, where, seen, among)
        return out

    @staticmethod
    def _url_parts(host: str, path: str) -> list[tuple[str, str]]:
        path_part, _, query = path.partition("?")
        parts = [(host, "host"), (path_part, "path")]
        return parts + [(query, "query")] if query else parts

    def scan_head(self, method: str, host: str, path: str, authority: str, headers: Iterable[tuple[str, str]],
                  exempt: frozenset[str] = frozenset(), seen: set[str] | None = None) -> list[Finding]:
        """A request's method, target (host, path, query, authority) and headers, in one pass."""
        parts = [(method, "method"), *self._url_parts(host, path)]
        if authority:
            parts.append((authority, "host"))
        return self._scan_parts(parts + self._header_parts(headers, exempt, "header"), seen)

    def scan_headers(
        self,
        headers: Iterable[tuple[str, str]],
        exempt: frozenset[str] = frozenset(),
        seen: set[str] | None = None,
        where: str = "header",
    ) -> list[Finding]:
        return self._scan_parts(self._header_parts(headers, exempt, where), seen)

    @staticmethod
    def _header_parts(headers: Iterable[tuple[str, str]], exempt: frozenset[str], where: str) -> list[tuple[str, str]]:
        """Names (as sent, and upper-cased: header names are case-insensitive, so a client
        may lower-case a secret it puts there), values, and the values of a repeated header
        joined as the upstream may join them."""
        parts: list[tuple[str, str]] = []
        repeated: dict[str, list[str]] = {}
        for name, value in headers:
            lname = name.lower()
            parts.append((name, f"{where} name"))
            if name.upper() != name:
                parts.append((name.upper(), f"{where} name"))
            if lname in exempt:
                continue
            repeated.setdefault(lname, []).append(value)
            here = f"{where} {lname}"
            parts.append((f"{name}: {value}", here))
            basic = _basic_credentials(value) if lname in ("authorization", "proxy-authorization") else None
            if basic is not None:
                parts.append((basic, here))
        for lname, values in repeated.items():
            if len(values) > 1:
                parts += [(", ".join(values), f"{where} {lname}"), ("".join(values), f"{where} {lname}")]
        return parts

    def scan_body(self, body: bytes, content_type: str = "", seen: set[str] | None = None) -> list[Finding]:
        seen = set() if seen is None else seen
        if not body:
            return []
        text = body.decode("latin-1")
        # An ASCII body is its own UTF-8: the prefilter reads it as it is, not a 16 MiB copy.
        out = list(self._findings(text, "body", seen, utf8=body if body.isascii() else None))
        for unescaped in _unescaped(text):
            out += self._findings(unescaped, "body", seen)
        return out


def _basic_credentials(value: str) -> str | None:
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        return base64.b64decode(token.strip(), validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        return None


# JSON string escapes (``\u0041``, ``\/``, ``\n``): JSON, NDJSON, or JSON inside anything
# else. One left-to-right pass reads ``\\u0041`` as an escaped backslash, as JSON does.
_JSON_ESCAPE = re.compile(r'\\(?:u([0-9a-fA-F]{4})|(["\\/bfnrt]))')
_JSON_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# A string escaped again inside another JSON string needs a second pass; a few are enough.
JSON_UNESCAPE_ROUNDS = 3


def _json_unescape(text: str) -> str:
    return _JSON_ESCAPE.sub(lambda m: _code_point(int(m.group(1), 16)) if m.group(1) else _JSON_SIMPLE[m.group(2)],
                            text)


def _code_point(code: int) -> str:
    """A `\\uXXXX` escape's character; U+FFFD for a surrogate (`re2_safe`)."""
    return "\ufffd" if 0xD800 <= code <= 0xDFFF else chr(code)


def re2_safe(text: str) -> str:
    """`text` as RE2 can take it. RE2 reads text as UTF-8, and a lone surrogate has none: a
    header byte mitmproxy could not decode (surrogateescape), or JSON's `\\ud800` undone. Such
    a text made the policy's own patterns and the seed-phrase rule raise (a request refused as
    a failure, a workspace or history scan ended in an internal error). U+FFFD stands in for
    each: one character for one, so offsets hold, and no secret's shape has either."""
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


_SURROGATES = re.compile("[\ud800-\udfff]")


def _unescaped(text: str) -> Iterator[str]:
    """The text with JSON escapes undone, once per round while that changes anything."""
    for _ in range(JSON_UNESCAPE_ROUNDS):
        if "\\" not in text:
            return
        decoded = _json_unescape(text)
        if decoded == text:
            return
        yield decoded
        text = decoded


# Content codings a body may have: clients send one. Each is undone in full, up to the body
# limit, so their number bounds the work (`gzip, gzip, …` six thousand times fits in a head).
MAX_CODINGS = 2


def decode_body(raw: bytes, content_encoding: str, limit: int) -> bytes:
    """Undo Content-Encoding with a hard cap on the decoded size (no decompression bombs).

    Raises BodyError("body-too-large") past ``limit`` bytes, BodyError("undecodable-body")
    for an encoding we cannot open (the body could then hide anything)."""
    encodings = [e.strip().lower() for e in content_encoding.split(",") if e.strip()]
    encodings = [e for e in encodings if e != "identity"]
    if len(encodings) > MAX_CODINGS:  # each undone in turn, up to the limit: a few hundred blocked the loop for 30 s
        raise BodyError("undecodable-body", f"request body has {len(encodings)} content codings; "
                        f"at most {MAX_CODINGS} are undone")
    data = raw
    for enc in reversed(encodings):  # the last applied encoding is listed last
        if enc in ("identity", ""):
            continue
        if enc in ("gzip", "x-gzip", "deflate"):
            data = _zlib_decode(data, enc, limit)
        elif enc == "br":
            data = _brotli_decode(data, limit)
        elif enc == "zstd":
            data = _zstd_decode(data, limit)
        else:
            raise BodyError("undecodable-body", f"request body has an unsupported Content-Encoding {enc!r}")
    if len(data) > limit:
        raise BodyError("body-too-large", f"decoded request body is larger than {limit} bytes")
    return data


def _zlib_decode(data: bytes, enc: str, limit: int) -> bytes:
    if enc != "deflate":
        try:
            return _zlib_members(data, 47, limit)  # wbits 47: a gzip or zlib header
        except zlib.error:
            raise BodyError("undecodable-body", f"request body is not valid {enc}") from None
    # "deflate" is meant to be zlib but is often raw deflate, and one body can be valid as both
    # with different contents (zlib's stored blocks hold a raw stream): a server may read it
    # either way, so every reading that works is scanned.
    readings = []
    for decode in (lambda: _zlib_members(data, 15, limit), lambda: _raw_deflate(data, limit)):
        try:
            readings.append(decode())
        except zlib.error:
            continue
    if not readings:
        raise BodyError("undecodable-body", f"request body is not valid {enc}")
    return b"\n".join(readings)


def _raw_deflate(data: bytes, limit: int) -> bytes:
    """As lenient decoders read it: up to the final block, whatever follows ignored (the bytes
    that leave are scanned as they are too)."""
    d = zlib.decompressobj(-15)
    out = d.decompress(data, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise BodyError("body-too-large", f"decoded request body is larger than {limit} bytes")
    if not d.eof:
        raise zlib.error("truncated stream")
    return out


def _zlib_members(data: bytes, wbits: int, limit: int) -> bytes:
    out = bytearray()
    rest = data
    while rest:  # concatenated gzip members must all be read: a later one could hide a secret
        d = zlib.decompressobj(wbits)
        out += d.decompress(rest, limit + 1 - len(out))
        if len(out) > limit or d.unconsumed_tail:
            raise BodyError("body-too-large", f"decoded request body is larger than {limit} bytes")
        if not d.eof:
            raise zlib.error("truncated stream")
        rest = d.unused_data
        if wbits == 15:
            if rest:
                raise zlib.error("trailing data")
            break
    return bytes(out)


def _brotli_decode(data: bytes, limit: int) -> bytes:
    try:
        import brotli  # shipped with mitmproxy
    except ImportError:  # pragma: no cover
        raise BodyError("undecodable-body", "brotli is not available") from None
    d = brotli.Decompressor()
    try:
        out = d.process(data, output_buffer_limit=limit + 1)
    except TypeError:  # older brotli without output limits: bound the input instead
        if len(data) * 64 > limit:
            raise BodyError("body-too-large", "brotli request body too large to decode safely") from None
        out = d.process(data)
    except brotli.error:
        raise BodyError("undecodable-body", "request body is not valid brotli") from None
    if len(out) > limit:
        raise BodyError("body-too-large", f"decoded request body is larger than {limit} bytes")
    return out


def _zstd_decode(data: bytes, limit: int) -> bytes:
    try:
        from compression import zstd  # Python >= 3.14
    except ImportError:
        try:
            from backports import zstd  # shipped with mitmproxy on older Pythons
        except ImportError:  # pragma: no cover
            raise BodyError("undecodable-body", "zstd is not available") from None
    out = bytearray()
    rest = data
    try:
        while rest:  # every frame: decoders read them all, and a later one could hide a secret
            d = zstd.ZstdDecompressor()
            out += d.decompress(rest, max_length=limit + 1 - len(out))
            if len(out) > limit:
                raise BodyError("body-too-large", f"decoded request body is larger than {limit} bytes")
            if not d.eof:
                raise BodyError("undecodable-body", "request body is a truncated zstd stream")
            rest = d.unused_data
    except zstd.ZstdError:
        raise BodyError("undecodable-body", "request body is not valid zstd") from None
    return bytes(out)
