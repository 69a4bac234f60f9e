"""Text from elsewhere (the upstream's messages, git's errors) made safe to print in the
agent's terminal or a log: no control characters but newlines, bounded length."""
from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def clean(text: str | bytes, limit: int = 4000) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = _CONTROL.sub("?", text)
    return text if len(text) <= limit else text[:limit] + "\n[... cut]"
