"""The secrets the egress proxy injects never come back to the agent in what it returns.

An upstream on a routed host may echo a request's headers back: in a response header, a
redirect, a cookie, an error message, a body, a WebSocket message. That request carried the
real credential, injected here; the agent must still never read it. So every secret value,
in the forms a reflection would show it (as sent, JSON-escaped, percent-encoded), is masked
in place, with a mask of the same length: a Content-Length stays true and no framing moves.
The forms: as sent (and in upper or lower case), JSON-escaped (PHP's `\\/` too),
percent-encoded (either case of hex digit), as the usual encoders write it, each encoding
some of its characters and not others (Python's `quote`, JavaScript's `encodeURIComponent`,
Go's `PathEscape` and `json`, HTML escaping, `&#x2F;` and `\\u002f` escapers), and the
encodings an echo may wrap the whole header value in: hex (either case) and base64 (standard and URL-safe), the latter at
each of the three offsets a secret can start at inside a longer encoded text ("Basic " +
base64 of "user:secret", an echo of "Bearer secret" encoded whole). Of an encoded form only
the characters the secret alone determines are matched (those it shares with the bytes
around it depend on them); an encoded form shorter than ``MIN_ENCODED`` is left out, as it
would mask ordinary text. Masked with RE2 (a dozen alternatives cost Python's `re` about
7 ms a MiB, RE2 under 2), where a plain substring search found a needle (`needles`).

Bodies are scrubbed as they stream, and a form split between two chunks must still be whole
when it is masked: so the end of each chunk waits for the next chunk (or the body's end). How
much waits must not depend on the secret. Holding back just a tail that could start a secret
would show the agent, by where the stream it reads is cut, whether bytes it chose (a file it
stored upstream, read back at the end of a body) begin a secret: the secret one character at a
time. What waits is what follows the chunk's last line break, at most ``hold`` bytes: no form
holds a line break (a secret with one is refused where it is loaded, ``routes.load_secrets``,
and its JSON form escapes it), so a form that goes on in the next chunk starts after it. Where
the cut falls then depends on the line breaks and on ``hold``, and ``hold`` is at least
``HOLD_AT_LEAST`` bytes, which covers every form of a secret of the usual length (a `\\u`
form is six bytes a character the encoder writes) and so does not tell its length either.
Server-sent events and other line-by-line streams go out as
they come; a stream without line breaks is held back by up to ``hold`` bytes until it goes on.
Pure Python, no mitmproxy.
"""

from __future__ import annotations

import base64
import html
import json
import re
import string
from collections.abc import Callable, Iterable
from urllib.parse import quote

import re2

MASK = b"BOTTLE-REDACTED-"  # a header token's characters: a masked header name stays one
MIN_ENCODED = 12  # bytes: a shorter encoded form would also match text that merely looks like it
HOLD_AT_LEAST = 1023  # bytes a streamed body's end may wait, whatever the secrets' length (see above)
LINE_BREAKS = (b"\n", b"\r")


def forms(secret: str) -> set[bytes]:
    """The byte strings a reflected `secret` shows as (see the module's docstring)."""
    raw = secret.encode()
    escaped, percent = json.dumps(secret)[1:-1], quote(secret, safe="")
    # (a short secret's other forms, its case changed among them, would mask ordinary text)
    encoded = {raw.upper(), raw.lower(), raw.hex().encode(), raw.hex().upper().encode(), *base64_forms(raw)}
    return {raw, escaped.encode(),
            escaped.replace("/", "\\/").encode(),  # PHP's json_encode escapes '/'
            percent.encode(), re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), percent).encode(),
            *(form.encode() for form in encoders_forms(secret)),
            *(form for form in encoded if len(form) >= MIN_ENCODED)}


# Characters no encoder below writes otherwise ("unreserved" in URLs), and a few that HTML
# escapers leave as they are too.
ALNUM = frozenset(string.ascii_letters + string.digits)
UNRESERVED = ALNUM | frozenset("-_.~")


def each(secret: str, keep: frozenset, write: Callable[[str], str]) -> str:
    return "".join(ch if ch in keep else write(ch) for ch in secret)


def encoders_forms(secret: str) -> set[str]:
    """`secret` as the usual encoders write it, each encoding some of its characters and not
    others: a form the whole-string encodings above miss (Python's `quote` keeps '/', Go's
    `PathEscape` keeps '+' and '=', HTML and JavaScript escapers write '/' as `&#x2F;` or
    `\\u002f`)."""
    json_escaped = json.dumps(secret)[1:-1]
    return {
        quote(secret),                                   # Python's urllib: '/' kept
        quote(secret, safe="-_.!~*'()"),                 # JavaScript's encodeURIComponent
        quote(secret, safe="-_.~$&+,:;=@"),              # Go's url.PathEscape
        html.escape(secret), html.escape(secret, quote=False),
        each(secret, ALNUM, lambda ch: f"&#x{ord(ch):x};"), each(secret, ALNUM, lambda ch: f"&#x{ord(ch):X};"),
        each(secret, UNRESERVED, lambda ch: f"&#x{ord(ch):x};"), each(secret, UNRESERVED, lambda ch: f"&#x{ord(ch):X};"),
        each(secret, ALNUM, lambda ch: f"&#{ord(ch)};"), each(secret, UNRESERVED, lambda ch: f"&#{ord(ch)};"),
        each(secret, ALNUM, lambda ch: f"\\u{ord(ch):04x}"), each(secret, ALNUM, lambda ch: f"\\u{ord(ch):04X}"),
        json_escaped.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"),  # Go's json
    }


def base64_forms(raw: bytes) -> set[bytes]:
    """`raw` in base64 and base64url, starting at each offset (mod 3) of a longer encoded
    text: the characters that only its own bits make up (6 bits a character)."""
    found = set()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * offset + raw)
            found.add(text[(offset * 8 + 5) // 6:(offset + len(raw)) * 8 // 6])
    return found


ANCHOR_AT_LEAST = 8  # bytes: a shorter run of letters and digits turns up in ordinary text


def needles(secrets: Iterable[str]) -> tuple[bytes, ...]:
    """Byte strings of which every form of every secret holds at least one. Most forms keep the
    secret's letters and digits as they are (only its other characters are encoded, in one of
    a dozen ways): for those, the longest run of them stands in, one search instead of one a
    form; the rest (case, hex, base64) are searched for as they are."""
    found = set()
    for secret in secrets:
        if not secret:
            continue
        anchor = max(re.findall("[A-Za-z0-9]+", secret), key=len, default="").encode()
        for form in forms(secret):
            found.add(anchor if len(anchor) >= ANCHOR_AT_LEAST and anchor in form else form)
    return tuple(sorted(found))


def mask(length: int) -> bytes:
    return (MASK + b"*" * length)[:length]


class Scrubber:
    """Masks every form of the given secret values in bytes, header fields and streams."""

    def __init__(self, secrets: Iterable[str]):
        secrets = tuple(secrets)  # read twice below: a generator would give the needles nothing
        patterns = sorted({f for s in secrets if s for f in forms(s)}, key=len, reverse=True)
        options = re2.Options()
        options.encoding = re2.Options.Encoding.LATIN1  # a byte is a character: any bytes, any secret
        options.log_errors = False
        # leftmost, and the longest form first where several start there (as Python's `re`)
        self._pattern = re2.compile(b"|".join(map(re.escape, patterns)), options=options) if patterns else None
        # The commonest case by far is no form at all: CPython's substring search skips along
        # a long needle (1-3.5 GB/s for the dozen forms), where the RE2 pass steps every byte
        # (0.6 GB/s); the pass runs only where a needle is, and every form holds one.
        self._needles = needles(secrets)
        # a form split between two chunks: all but its last byte may end the first one
        self.hold = max(max(map(len, patterns)) - 1, HOLD_AT_LEAST) if patterns else 0
        # where a chunk may be cut without cutting a form (all of them, for secrets as loaded)
        self._breaks = tuple(b for b in LINE_BREAKS if not any(b in form for form in patterns))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def scrub(self, data: bytes) -> bytes:
        if self._pattern is None or not any(needle in data for needle in self._needles):
            return data
        return self._pattern.sub(lambda m: mask(len(m.group())), data)

    def fields(self, fields: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
        """Header fields (name, value) with every secret masked in names and values."""
        return tuple((self.scrub(name), self.scrub(value)) for name, value in fields)

    def held_back(self, data: bytes) -> int:
        """How many bytes at the end of `data` wait for the next chunk: those after its last
        line break, at most `hold`. Never a function of the secrets (see the docstring)."""
        start = max(len(data) - self.hold, 0)  # a break before this holds back `hold` bytes all the same
        after_break = max((data.rfind(b, start) + 1 for b in self._breaks), default=0)
        return min(self.hold, len(data) - after_break)

    def stream(self) -> Callable[[bytes], bytes]:
        """A mitmproxy ``stream`` callable for one body: called with each chunk, then with
        b"" at the end of the body (which releases what was held back)."""
        pending = b""

        def scrub_chunk(chunk: bytes) -> bytes:
            nonlocal pending
            data = self.scrub(pending + chunk)
            keep = self.held_back(data) if chunk else 0
            pending = data[len(data) - keep:]
            return data[:len(data) - keep]

        return scrub_chunk
