"""What a route request may ask for: checked by the sidecar when the agent asks (a clear
refusal, nobody is bothered) and again by the controller when the operator approves (it
fails closed), so the two can never disagree.

Plain Python with no import from the controller or the MCP SDK: the sidecar image holds
it as ``supervise.rules``, the controller as ``bottle_tasks.sidecars.supervise.rules``.

An injection is shown to the operator as ``header <- SECRET as "format"``, and the egress
proxy sets the header to the format with ``{secret}`` replaced by that secret's value. So
the format must name no other secret: exactly one ``{secret}`` and no other ``{...}``
(``{GITHUB_TOKEN}`` in a format that claims ``PUBLIC_DEMO_TOKEN`` once became the CLI's
``HEADER={GITHUB_TOKEN}`` and injected the secret nobody was shown).
"""

from __future__ import annotations

import re
from collections.abc import Collection

PLACEHOLDER = "{secret}"
# An HTTP header name (RFC 9110 token), as the egress proxy's route parser wants it: also
# keeps ` <- ` and quotes out of what the operator reads as "header <- secret".
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def format_problem(fmt: object) -> str | None:
    """Why `fmt` could inject something other than its own secret, or None."""
    if not isinstance(fmt, str):
        return "a format is a string such as \"Bearer {secret}\""
    around = fmt.replace(PLACEHOLDER, "")
    if fmt.count(PLACEHOLDER) != 1 or "{" in around or "}" in around:
        return (f"format {fmt!r}: write the secret's place as {PLACEHOLDER} exactly once and no other "
                f"{{...}}, e.g. \"Bearer {PLACEHOLDER}\"; the secret is the injection's `secret`")
    if "\n" in fmt or "\r" in fmt:
        return f"format {fmt!r}: no line break"
    return None


def injection_problem(injection: dict, secrets: Collection[str]) -> str | None:
    """Why this injection can never be approved, or None. A missing format is {secret}."""
    header, secret = injection.get("header"), injection.get("secret")
    if not header:
        return "every injection names a header"
    if not isinstance(header, str) or not _HEADER.fullmatch(header):
        return f"header {header!r} is not an HTTP header name"
    if not isinstance(secret, str) or secret not in secrets:
        return f"secret {secret!r} is not one of this bottle's secrets ({', '.join(sorted(secrets)) or 'none'})"
    return format_problem(injection.get("format", PLACEHOLDER))


def route_problem(what: dict, secrets: Collection[str]) -> str | None:
    """Why a route request ({host, paths, methods, inject}) can never be approved, or None."""
    if any(not p.startswith("/") for p in what["paths"]):
        return "every path must start with /"
    unknown = [m for m in what["methods"] if m not in METHODS]
    if unknown:
        return f"unknown method(s) {', '.join(unknown)}"
    for injection in what["inject"]:
        problem = injection_problem(injection, secrets)
        if problem:
            return problem
    return None
