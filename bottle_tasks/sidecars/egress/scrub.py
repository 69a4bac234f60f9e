"""The secrets the egress proxy injects never come back to the agent in what it returns.

An upstream on a routed host may echo a request's headers back: in a response header, a
redirect, a cookie, an error message, a body, a WebSocket message. That request carried the
real credential, injected here; the agent must still never read it. So every secret value,
in the forms a reflection would show it (as sent, JSON-escaped, percent-encoded), is masked
in place, with a mask of the same length: a Content-Length stays true and no framing moves.

Bodies are scrubbed as they stream: only a chunk's tail that could be the start of a secret
is held back for the next chunk (at most the longest form's length less one byte), so server-
sent events are not delayed by anything that cannot be a secret. Pure Python, no mitmproxy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import quote

MASK = b"BOTTLE-REDACTED-"  # a header token's characters: a masked header name stays one


def forms(secret: str) -> set[bytes]:
    """The byte strings a reflected `secret` shows as: as sent, JSON-escaped, percent-encoded."""
    return {secret.encode(), json.dumps(secret)[1:-1].encode(), quote(secret, safe="").encode()}


def mask(length: int) -> bytes:
    return (MASK + b"*" * length)[:length]


class Scrubber:
    """Masks every form of the given secret values in bytes, header fields and streams."""

    def __init__(self, secrets: Iterable[str]):
        patterns = sorted({f for s in secrets if s for f in forms(s)}, key=len, reverse=True)
        self._pattern = re.compile(b"|".join(map(re.escape, patterns))) if patterns else None
        # every proper prefix of a form: a chunk ending in one may continue in the next chunk
        self._prefixes = frozenset(p[:i] for p in patterns for i in range(1, len(p)))
        self._longest = max(map(len, patterns), default=0)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def scrub(self, data: bytes) -> bytes:
        if self._pattern is None:
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
