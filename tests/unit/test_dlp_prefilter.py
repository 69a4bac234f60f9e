"""The DLP's RE2 prefilter (sidecars/firewall/prefilter.py) must never hide a match: for
any text, every rule whose Python regex matches is among the candidates, so the scanner's
answer with the prefilter equals its answer without. Property-tested over texts made of
the pieces the rules care about (needles, token characters, boundaries, Unicode spaces
and the letters that fold onto ASCII under IGNORECASE)."""
from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bottle_tasks" / "sidecars"))
from firewall import dlp
from firewall.patterns import compile_pattern
from firewall.prefilter import Prefilter, re2_form

REGEX_RULES = [r for r in dlp.BUILTIN_RULES if isinstance(r.regex, re.Pattern)]
POLICY_RULE = dlp.Rule("internal-token", compile_pattern(r"itk_[A-Za-z0-9]{32}"), "a policy pattern")
RULES = (*dlp.BUILTIN_RULES, POLICY_RULE)
SECRETS = [
    "sk-ant-api03-" + "A" * 40, "sk-proj-" + "b" * 40, "sk-" + "c" * 48, "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key = " + "d" * 40, 'secret-access-key\\":\\"' + "e/" * 20, "ghp_" + "f" * 36,
    "github_pat_" + "g" * 60, "glpat-" + "h" * 20, "xoxb-" + "1" * 10, "hooks.slack.com/services/T123456/B123456/"
    + "i" * 20, "AIza" + "j" * 35, "sk_live_" + "k" * 24, "npm_" + "l" * 36, "pypi-AgEIcHlwaS5vcmc" + "m" * 50,
    "-----BEGIN RSA PRIVATE KEY-----", "itk_" + "n" * 32,
]
PIECES = ["sk-", "sk-ant-", "api03-", "proj-", "T3BlbkFJ", "AKIA", "ASIA", "secret", "_access", "-key", "access",
          "key", "ghp_", "github_pat_", "glpat-", "xoxb-", "hooks.slack.com/services/T", "AIza", "_live_", "sk",
          "npm_", "pypi-AgEIcHlwaS5vcmc", "-----BEGIN ", "PRIVATE KEY", "-----", "itk_", "A" * 16, "a" * 20,
          "0" * 12, "Z" * 36, "/", "+", "=", ":", '"', "'", "\\", "_", "-", ".", " ", "\n", "\t", "\u00a0",
          "\u2028", "\x1c", "\x85", "\u017f", "\u212a", "\u0131", "\u0130", "é", "\ud800", "x"]


@functools.cache
def rules_prefilter() -> Prefilter:
    """One for the whole module: with the seed-phrase rule's runs in it, it takes ~25 ms to build."""
    return Prefilter([dlp._re2_source(r) for r in RULES])


@pytest.fixture(scope="module")
def prefilter():
    return rules_prefilter()


def test_every_builtin_regex_has_an_re2_form():
    assert all(re2_form(r.regex.pattern, r.regex.flags) is not None for r in REGEX_RULES)


@pytest.mark.parametrize("secret", SECRETS)
def test_each_secret_is_a_candidate_and_found(prefilter, secret):
    text = ("prose " * 200) + secret + (" prose" * 200)
    matching = {i for i, r in enumerate(RULES) if r.regex.search(text)}
    assert matching, secret
    assert matching <= prefilter.candidates(text)
    assert [r.name for r in dlp.Scanner(RULES).scan_text(text)]


ODD = ["\u00a0", "\u2028", "\x1c", "\x85", "\u3000", "\u017f", "\u212a", "\u0131", "\u0130", "\ud800",
       " ", "\t", "\n", "=", ":", '"', "'", "\\", "_", "-", "/", "+", ".", "é"]


@st.composite
def near_secrets(draw):
    """A secret with some characters swapped for the ones the two engines read differently,
    between random pieces: matches and near-misses both."""
    chars = list(draw(st.sampled_from(SECRETS)))
    for _ in range(draw(st.integers(0, 3))):
        chars[draw(st.integers(0, len(chars) - 1))] = draw(st.sampled_from(ODD))
    before = draw(st.lists(st.sampled_from(PIECES), max_size=4))
    after = draw(st.lists(st.sampled_from(PIECES), max_size=4))
    return "".join(before) + "".join(chars) + "".join(after)


SECRETS += ["aws_secret_access_key:\u00a0" + "q" * 40, "SECRET-ACCESS-KEY=\u2028" + "r" * 39 + "\u0131",
            "\u017fecret_acce\u017f\u017f_key = " + "\u212a" * 40]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(near_secrets(), st.lists(st.sampled_from(PIECES + SECRETS), min_size=1, max_size=40).map("".join)))
def test_the_prefilter_never_hides_a_match(text):
    candidates = rules_prefilter().candidates(text)
    for i, rule in enumerate(RULES):
        try:
            matches = rule.regex.search(text)
        except UnicodeEncodeError:  # an RE2 policy pattern refuses a lone surrogate: the firewall fails closed
            continue
        if matches:
            assert i in candidates, (rule.name, text)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(near_secrets(), st.lists(st.sampled_from(PIECES + SECRETS), max_size=12).map("".join)),
                min_size=1, max_size=8))
def test_one_pass_over_texts_joined_by_newlines_never_hides_a_match_in_one_of_them(texts):
    """A request's head is checked in one pass over its texts joined by newlines: a rule that
    matches any one text alone (its edges being the text's) is a candidate of the whole."""
    candidates = rules_prefilter().candidates("\n".join(texts))
    for text in texts:
        for i, rule in enumerate(RULES):
            try:
                matches = rule.regex.search(text)
            except UnicodeEncodeError:
                continue
            if matches:
                assert i in candidates, (rule.name, text)


def test_a_policy_pattern_anchored_at_a_text_edge_is_a_candidate_mid_head():
    anchored = dlp.Rule("anchored", compile_pattern(r"^itk_[a-z]{8}$"), "a policy pattern")
    candidates = Prefilter([dlp._re2_source(anchored)]).candidates("GET\nitk_abcdefgh\n/path")
    assert candidates == {0}


SEED = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
SEED_RULE = next(i for i, r in enumerate(RULES) if r.name == dlp.SEED_PHRASE)


def test_the_seed_phrase_rule_is_in_the_one_pass_and_runs_only_where_it_found_a_run(prefilter):
    """A body's seed-phrase check is the prefilter's pass: no second pass of its own over text
    without a run of twelve list words, and still found in a long body that holds a phrase."""
    assert dlp._re2_source(RULES[SEED_RULE]) is not None
    prose = "The quick brown fox jumps over the lazy dog; a line of ordinary prose. " * 400
    assert SEED_RULE not in prefilter.candidates(prose)
    held = prose + SEED + " " + prose
    assert SEED_RULE in prefilter.candidates(held)
    assert [f.rule for f in dlp.Scanner(RULES).scan_body(held.encode())] == [dlp.SEED_PHRASE]
    # twelve list words whose checksum fails: a candidate, then no finding
    unchecked = prose + SEED.replace("about", "abandon") + " " + prose
    assert SEED_RULE in prefilter.candidates(unchecked)
    assert dlp.Scanner(RULES).scan_body(unchecked.encode()) == []


def test_a_search_the_engine_gave_up_on_makes_every_rule_a_candidate():
    """RE2 answers a Set's search with nothing when its DFA runs out of memory: read as "no rule
    may match", a secret would pass unscanned. Without the end-of-text pattern's match, every
    rule is a candidate."""
    prefilter = Prefilter([dlp._re2_source(r) for r in RULES])
    text = "prose " * 200 + SECRETS[0]
    assert prefilter.candidates(text) != prefilter.every  # the real answer: a few rules

    class GaveUp:
        def Match(self, text):
            return None

    prefilter.set = GaveUp()
    assert prefilter.candidates(text) == prefilter.every


def test_a_scanner_builds_its_prefilter_on_first_use_or_when_prepared():
    scanner = dlp.Scanner(RULES)
    assert "_prefilter" not in vars(scanner)  # not when built: the firewall's start does not wait for it
    scanner.prepare()
    built = vars(scanner)["_prefilter"]
    scanner.scan_body(("prose " * 200).encode())
    assert vars(scanner)["_prefilter"] is built


@pytest.mark.parametrize("filler", ["plain ASCII prose ", "prose with an accent, café "])
def test_a_long_body_is_scanned_alike_whether_ascii_or_not(filler):
    """An ASCII body goes to the prefilter as it came (its own UTF-8); any other is encoded."""
    scanner = dlp.Scanner(RULES)
    for secret in SECRETS[:6]:
        body = (filler * 300 + secret + " " + filler * 300).encode("latin-1")
        assert body.isascii() == filler.isascii()
        assert [f.rule for f in scanner.scan_body(body)] == [r.name for r in scanner.scan_text(body.decode("latin-1"))]
        assert scanner.scan_body(body), secret
