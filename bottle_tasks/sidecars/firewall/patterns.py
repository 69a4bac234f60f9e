"""The DLP patterns a manifest adds: compiled with RE2, which runs in linear time.

A user pattern such as ``(a+)+$`` makes a backtracking engine (Python's ``re``) take
exponential time on a crafted header, pinning the firewall at 100% CPU. RE2 has no
backtracking, so no pattern can do that; it also has no look-around or backreferences,
and a pattern that needs them is refused at validation with RE2's reason. The manifest
(controller) and the policy (firewall) both compile through ``compile_pattern``.
"""

from __future__ import annotations

import re2

# Large counted repetitions blow up RE2's program size; its default memory budget refuses
# those at compile time (a clear error), which is what we want.
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the reason goes into our error, not onto stderr


class PatternError(ValueError):
    """The pattern cannot be used; the message says why."""


def compile_pattern(text: str):
    """A compiled RE2 pattern; raises PatternError naming the problem."""
    try:
        compiled = re2.compile(text, options=_OPTIONS)
    except re2.error as e:
        reason = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise PatternError(
            f"RE2 cannot compile it ({reason}); DLP patterns run on RE2, which has no look-around "
            "or backreferences"
        ) from None
    if compiled.search("") is not None:
        raise PatternError("matches the empty string, so it would flag every request")
    return compiled
