"""One RE2 pass over a long text that tells which DLP rules might match it.

The built-in rules are Python regexes (look-behind and look-ahead keep a token from being
flagged inside a longer one), and Python's engine runs each of them over the whole text
as soon as one of its literal needles appears: a 16 MiB body dense with near-miss shapes
cost 0.75 s of CPU. RE2 has no look-around, but every rule has a form RE2 can run that
matches whenever the Python regex does (a look-around over one character class becomes
that class, or the text's edge, consumed). All of them go into one `re2.Set`: one linear
pass answers "which rules may match"; only those then run their exact Python regex.

The RE2 forms are supersets, never looser about what they miss: a rule whose form cannot
be built, or a Set that cannot be compiled, is always a candidate. Policy patterns are
RE2 already and join the Set as they are.

The Set is compiled multi-line: the scanner checks the short texts of a request's head in
one pass, joined by newlines, and a form's ^ and $ (the text's edge, where a look-around
stood) must then hold at each one's edges. On a single text that only widens the superset.

The seed-phrase rule's form (runs of 12 or more BIP-39 words, a 2048-word alternation) costs
the pass nothing measurable but the Set ~25 ms to compile: the scanner builds its prefilter
on first use, not when the firewall starts or a controller command builds a scanner.

RE2 answers a Set's search with no matches at all when its DFA gives up (memory): that must
not read as "no rule may match". A pattern that matches at every text's end comes first in
the Set; a search that did not reach the end does not report it, and every rule is then a
candidate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import re2

# Python's `\s` on text is wider than RE2's ASCII `\s`; under IGNORECASE Python's [A-Za-z]
# also takes four non-ASCII letters that fold onto ASCII ones.
_SPACE = r"[\s\pZ\x{1c}-\x{1f}\x{85}]"
_FOLDED_LETTERS = r"\x{130}\x{131}\x{17f}\x{212a}"
_LITERAL_THEN_LOOKBEHIND = re.compile(r"^([A-Za-z-]+)\(\?<!\[([^\]]+)\]\1\)")
_LOOKBEHIND = re.compile(r"\(\?<!\[([^\]]+)\]\)")
_LOOKAHEAD = re.compile(r"\(\?!\[([^\]]+)\]\)")
_ANY_LOOKAROUND = re.compile(r"\(\?<?[!=]")
SET_MEMORY = 64 << 20


def re2_form(pattern: str, flags: int) -> str | None:
    """An RE2 pattern that matches every text `re.compile(pattern, flags)` matches; None when
    this function cannot build one (the rule then always runs its own regex)."""
    p = _LITERAL_THEN_LOOKBEHIND.sub(lambda m: f"(?:^|[^{m.group(2)}]){m.group(1)}", pattern)
    p = _LOOKBEHIND.sub(r"(?:^|[^\1])", p)
    p = _LOOKAHEAD.sub(r"(?:$|[^\1])", p)
    if _ANY_LOOKAROUND.search(p) or "\\b" in p or "\\w" in p or "\\d" in p:
        return None  # a construct whose RE2 meaning differs: no shortcut
    p = p.replace(r"\s", _SPACE)
    if flags & re.IGNORECASE:
        p = "(?i)" + p.replace("A-Za-z", "A-Za-z" + _FOLDED_LETTERS)
    return p


class Prefilter:
    """`candidates(text)`: the indices of the rules that may match `text`."""

    REACHED_THE_END = r"\z"  # the Set's first pattern: matched by every search that completes

    def __init__(self, sources: Sequence[str | None]):
        """`sources[i]`: the RE2 form of rule i, or None (rule i is always a candidate)."""
        self.every = frozenset(range(len(sources)))
        self.always = frozenset(i for i, s in enumerate(sources) if s is None)
        self.index: list[int] = []  # the Set's pattern k + 1 is rule index[k]
        self.set = None
        options = re2.Options()
        options.max_mem = SET_MEMORY
        candidate_set = re2.Set.SearchSet(options)
        try:
            candidate_set.Add(self.REACHED_THE_END)
            for i, source in enumerate(sources):
                if source is not None:
                    candidate_set.Add("(?m)" + source)
                    self.index.append(i)
            candidate_set.Compile()
        except Exception:  # noqa: BLE001 - RE2 refused a form or ran out of memory: no shortcut
            self.always, self.index = self.every, []
            return
        self.set = candidate_set

    def candidates(self, text: str | bytes) -> frozenset[int]:
        """`text` as a string, or as its UTF-8 (a caller that holds it saves the copy)."""
        if self.set is None:
            return self.always
        try:
            # surrogatepass: a lone surrogate (from JSON's \ud800) must not make the pass fail
            found = self.set.Match(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")) or ()
        except Exception:  # noqa: BLE001 - whatever RE2 could not do, the rules' own regexes do
            return self.every
        if 0 not in found:  # the search stopped short of the text's end
            return self.every
        return self.always | {self.index[k - 1] for k in found if k}
