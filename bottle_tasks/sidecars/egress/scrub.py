"""The secrets the egress proxy injects never come back to the agent in what it returns.

An upstream on a routed host may echo a request's headers back: in a response header, a
redirect, a cookie, an error message, a body, a WebSocket message. That request carried the
real credential, injected here; the agent must still never read it. So every secret value,
in the forms a reflection would show it (as sent, JSON-escaped, percent-encoded), is masked
in place, with a mask of the same length: a Content-Length stays true and no framing moves.
The forms: as sent, JSON-escaped, percent-encoded, and the encodings an echo may wrap the
whole header value in: hex (either case) and base64 (standard and URL-safe), the latter at
each of the three offsets a secret can start at inside a longer encoded text ("Basic " +
base64 of "user:secret", an echo of "Bearer secret" encoded whole). Of an encoded form only
the characters the secret alone determines are matched (those it shares with the bytes
around it depend on them); an encoded form shorter than ``MIN_ENCODED`` is left out, as it
would mask ordinary text. Masked with RE2 (a dozen alternatives cost Python's `re` about
7 ms a MiB, RE2 under 2), where a plain substring search found a form.

Bodies are scrubbed as they stream: only a chunk's tail that could be the start of a secret
is held back for the next chunk (at most the longest form's length less one byte), so server-
sent events are not delayed by anything that cannot be a secret. Pure Python, no mitmproxy.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import quote

import re2

MASK = b"BOTTLE-REDACTED-"  # a header token's characters: a masked header name stays one
MIN_ENCODED = 12  # bytes: a shorter encoded form would also match text that merely looks like it


def forms(secret: str) -> set[bytes]:
    """The byte strings a reflected `secret` shows as (see the module's docstring)."""
    raw = secret.encode()
    encoded = {raw.hex().encode(), raw.hex().upper().encode(), *base64_forms(raw)}
    return {raw, json.dumps(secret)[1:-1].encode(), quote(secret, safe="").encode(),
            *(form for form in encoded if len(form) >= MIN_ENCODED)}


def base64_forms(raw: bytes) -> set[bytes]:
    """`raw` in base64 and base64url, starting at each offset (mod 3) of a longer encoded
    text: the characters that only its own bits make up (6 bits a character)."""
    found = set()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * offset + raw)
            found.add(text[(offset * 8 + 5) // 6:(offset + len(raw)) * 8 // 6])
    return found


def mask(length: int) -> bytes:
    return (MASK + b"*" * length)[:length]


class Scrubber:
    """Masks every form of the given secret values in bytes, header fields and streams."""

    def __init__(self, secrets: Iterable[str]):
        patterns = sorted({f for s in secrets if s for f in forms(s)}, key=len, reverse=True)
        options = re2.Options()
        options.encoding = re2.Options.Encoding.LATIN1  # a byte is a character: any bytes, any secret
        options.log_errors = False
        # leftmost, and the longest form first where several start there (as Python's `re`)
        self._pattern = re2.compile(b"|".join(map(re.escape, patterns)), options=options) if patterns else None
        # The commonest case by far is no form at all: CPython's substring search skips along
        # a long needle (1-3.5 GB/s for the dozen forms), where the RE2 pass steps every byte
        # (0.6 GB/s); the pass runs only where a form is.
        self._forms = tuple(patterns)
        # every proper prefix of a form: a chunk ending in one may continue in the next chunk
        self._prefixes = frozenset(p[:i] for p in patterns for i in range(1, len(p)))
        self._longest = max(map(len, patterns), default=0)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def scrub(self, data: bytes) -> bytes:
        if self._pattern is None or not any(form in data for form in self._forms):
            return data
        return self._pattern.sub(lambda m: mask(len(m.group())), data)

    def fields(self, fields: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
        """Header fields (name, value) with every secret masked in names and values."""
        return tuple((self.scrub(name), self.scrub(value)) for name, value in fields)

    def held_back(self, data: bytes) -> int:
        """How many bytes at the end of `data` could be the start of a secret."""
        for length in range(min(self._longest - 1, len(data)), 0, -1):
            if data[-length:] in self._prefixes:
                return length
        return 0

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
