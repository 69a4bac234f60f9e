"""The methods a request asks its upstream to take instead of its own.

Many web frameworks take a POST as another method when the request names one:
- an override header (``X-HTTP-Method-Override`` and kin: Rails, Symfony, Express's
  method-override);
- a ``_method`` query parameter;
- a ``_method`` field in the body: of a form (Rack reads a POST with no content type as
  one; Symfony, Spring's HiddenHttpMethodFilter, PHP's ``$_POST``), or of JSON (Laravel
  takes a JSON body as its input; Express's method-override with a body getter).

A route's method rule must hold for every method a request claims, or a route limited to
POST hands its credential to a DELETE. Claims are read generously (every copy, keys in any
letter case, ``;`` as a separator too): a claim too many refuses a request, a claim too few
lets a credential do what its route does not allow. A body is read only where it can carry
a field (a form, multipart, JSON), and only when a quick look finds something that could
spell ``_method``: the multi-MiB JSON of a model request is searched, not parsed.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, unquote_plus

# A request's header fields in order, every copy: mitmproxy's `headers.items(multi=True)`.
Fields = Sequence[tuple[str, str]]

# headers with which a request asks the upstream to take it as another method
HEADERS = ("x-http-method-override", "x-http-method", "x-method-override")
FIELD = "_method"
FORM = "application/x-www-form-urlencoded"
_FIELD_ANY_CASE = re.compile(re.escape(FIELD.encode()), re.IGNORECASE)
_FORM_SEPARATORS = re.compile("[&;]")


class Unreadable(ValueError):
    """A body that could hold a ``_method`` field whose value cannot be read for sure."""


def in_head(method: str, fields: Fields, path: str) -> list[str]:
    """The methods the request's headers and query claim, its own first."""
    claimed = [method]
    claimed += [v.strip().upper() for k, v in fields if k.lower() in HEADERS]
    query = path.partition("?")[2]
    claimed += [v.strip().upper() for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() == FIELD]
    return claimed


def body_may_claim(http_version: str, fields: Fields) -> bool:
    """Whether the request may have a body of a kind that can carry a ``_method`` field."""
    if not _may_have_body(http_version, fields):
        return False
    types = _media_types(fields)
    return not types or any(_is_form(t) or _is_multipart(t) or _is_json(t) for t in types)


def in_body(fields: Fields, body: bytes) -> list[str]:
    """The methods the body's ``_method`` fields claim; raises Unreadable."""
    if not body:
        return []
    types = _media_types(fields)
    claimed: list[str] = []
    if not types or any(_is_form(t) for t in types):
        claimed += _form_claims(body)
    if any(_is_json(t) for t in types):
        claimed += _json_claims(body)
    if any(_is_multipart(t) for t in types) and (_FIELD_ANY_CASE.search(body) or b"%" in body):
        # A part's name can be quoted, escaped or RFC 2231-encoded, and parsers differ on each:
        # rather than guess which one the upstream runs, a name that could spell it refuses.
        raise Unreadable(f"a multipart body whose part names could spell {FIELD}")
    return claimed


def _form_claims(body: bytes) -> list[str]:
    if b"%" not in body and not _FIELD_ANY_CASE.search(body):
        return []  # no key can decode to _method
    claimed = []
    for pair in _FORM_SEPARATORS.split(body.decode("latin-1")):
        key, _, value = pair.partition("=")
        if unquote_plus(key, encoding="latin-1").strip().lower() == FIELD:
            claimed.append(unquote_plus(value, encoding="latin-1").strip().upper())
    return claimed


def _json_claims(body: bytes) -> list[str]:
    if b"\\u" not in body and b"\0" not in body and not _FIELD_ANY_CASE.search(body):
        return []  # no key can be _method: not escaped, not in UTF-16 or -32 (NULs), not as it is
    try:
        top = json.loads(body, object_pairs_hook=list)  # every copy of a key, not the last alone
    except (ValueError, RecursionError) as e:
        raise Unreadable(f"the body is not JSON the egress proxy can read ({type(e).__name__})") from None
    if not isinstance(top, list) or not all(isinstance(p, tuple) for p in top):
        return []  # not an object: no fields
    return [v.strip().upper() if isinstance(v, str) else json.dumps(v)[:40] for k, v in top if k.lower() == FIELD]


def _may_have_body(http_version: str, fields: Fields) -> bool:
    lengths, codings = _values(fields, "content-length"), _values(fields, "transfer-encoding")
    if http_version.startswith("HTTP/1") and not lengths and not codings:
        return False  # an HTTP/1 request with neither has no body
    return not (not codings and [v.strip() for v in lengths] == ["0"])


def _media_types(fields: Fields) -> list[str]:
    return [v.partition(";")[0].strip().lower() for v in _values(fields, "content-type")]


def _values(fields: Fields, name: str) -> list[str]:
    return [v for k, v in fields if k.lower() == name]


def _is_form(media_type: str) -> bool:
    return media_type in (FORM, "")


def _is_multipart(media_type: str) -> bool:
    return media_type.startswith("multipart/")


def _is_json(media_type: str) -> bool:
    return "json" in media_type  # application/json, application/*+json, text/json (Laravel: "/json", "+json")
