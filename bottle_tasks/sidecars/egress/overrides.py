"""The methods (and paths) a request asks its upstream to take instead of its own.

Many web frameworks take a POST as another method when the request names one:
- an override header (``X-HTTP-Method-Override`` and kin: Rails, Symfony, Express's
  method-override);
- a ``_method`` parameter in the query;
- a ``_method`` field in the body: of a form (Rack reads a POST with no content type as
  one; Symfony, Spring's HiddenHttpMethodFilter, PHP's ``$_POST``, multipart included), or
  of JSON (Laravel takes a JSON body as its input; Express's method-override with a body
  getter).

And some servers take the path a header names over the request line's (``X-Original-URL``,
``X-Rewrite-URL``: IIS's URL Rewrite, Symfony and Zend before they dropped it), so a routed
request naming one is refused outright (``in_path_headers``).

A route's method rule must hold for every method a request claims, or a route limited to
POST hands its credential to a DELETE. Claims are read generously: a claim too many refuses
a request, a claim too few lets a credential do what its route does not allow. So:
- a query or form key names the field as PHP reads it too: leading spaces dropped, then a
  ``.`` or ``[`` in its first place read as ``_`` (``.method`` is ``$_POST['_method']``);
  any letter case, any of it percent-encoded, ``;`` a separator as well as ``&``;
- every copy counts (a JSON object's repeated key included);
- a multipart body's part names are read from every ``Content-Disposition`` line in it,
  plain, RFC 2231 (``name*=``) or RFC 2047 (``=?utf-8?q?...?=``) encoded, wherever it is.
A body is read only where it can carry a field (a form, multipart, JSON), its type read as
generously as the frameworks read it: cut at `;`, `,` or a space, and JSON wherever `json`
appears in the header; a key ends at a NUL as PHP's does. Every search is
linear (RE2), so no body, however shaped, costs more than a pass or two over it; JSON is
decoded only when a search finds something that could spell the field.
"""
from __future__ import annotations

import email.header
import json
import re
from collections.abc import Sequence
from urllib.parse import unquote, unquote_plus

import re2

# A request's header fields in order, every copy: mitmproxy's `headers.items(multi=True)`.
Fields = Sequence[tuple[str, str]]

# headers with which a request asks the upstream to take it as another method
HEADERS = ("x-http-method-override", "x-http-method", "x-method-override")
# headers with which some servers take the request as another path
PATH_HEADERS = ("x-original-url", "x-rewrite-url")
FIELD = "_method"
FORM = "application/x-www-form-urlencoded"
# Bounds on what one body costs to read. More distinct claims than there are methods hold
# one no route allows; more fields (or part headers that could name one) than any form has
# are refused rather than read one by one; a part header longer than any real one too.
MAX_CLAIMS = 16
MAX_FIELDS = 64
MAX_PART_HEADER = 8192
MAX_JSON_CONTAINERS = 200_000  # arrays and objects of a JSON body decoded (a model request: a few thousand)
CLAIM_CHARS = 64  # of a claimed value: longer than any method, and a refusal shows no more


def _latin1(pattern: bytes):
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1  # a byte is a character: any bytes
    options.case_sensitive = False
    return re2.compile(pattern, options=options)


def _spelled(text: str) -> bytes:
    """Each character of `text` as itself or percent-encoded."""
    return b"".join(b"(?:%s|%%%02x)" % (re.escape(c).encode(), ord(c)) for c in text)


_SPACE = rb"(?:[ \t+]|%20|%09)"
# A form or query key that decodes to the field (the value, if any, in group 1); the pair
# must end there: the caller checks that a separator or the end follows.
_FORM_FIELD = _latin1(rb"(?:^|[&;])" + _SPACE + rb"*(?:[_.\[]|%5f|%2e|%5b)" + _spelled("method")
                      + _SPACE + rb"*(?:(?:%00|\x00)[^=&;]*)?(?:=([^&;]*))?")
# (PHP measures a decoded key with strlen: `_method%00anything` is `_method`.)
# JSON: anything that could spell the field: the letters, an escape, or UTF-16/32 (NULs)
_JSON_MAYBE = _latin1(rb"method|\\u|\x00")
# A part header that could name the field: the letters, or an encoding (RFC 2231's `%` and
# `name*0` continuations, RFC 2047's `=?`); the others need no closer look.
# (No capture: RE2 finds where one starts without tracking submatches over a long line.)
_DISPOSITION = _latin1(rb"(?m)^[ \t]*content-disposition[ \t]*:[^\r\n]*(?:method|%|=\?|\*[0-9])")
_NAME_PARAM = re.compile(r"""(?:^|;)\s*name(\*?)\s*=\s*("[^"]*"|[^;]*)""", re.IGNORECASE)


class Unreadable(ValueError):
    """A body that could hold the field but cannot be read for sure."""


def in_head(method: str, fields: Fields, path: str) -> list[str]:
    """The methods the request's headers and query claim, its own first."""
    claimed = [method]
    claimed += [v.strip().upper() for k, v in fields if k.lower() in HEADERS]
    query = path.partition("?")[2]
    return claimed + _form_claims(query.encode("latin-1", "replace"))


def in_path_headers(fields: Fields) -> list[str]:
    """The names of the headers that ask the upstream to take another path."""
    return [k for k, _ in fields if k.lower() in PATH_HEADERS]


def body_may_claim(http_version: str, fields: Fields) -> bool:
    """Whether the request may have a body of a kind that can carry the field."""
    if not _may_have_body(http_version, fields):
        return False
    types = _media_types(fields)
    return not types or any(_is_form(t) or _is_multipart(t) for t in types) or _says_json(fields)


def in_body(fields: Fields, body: bytes) -> list[str]:
    """The methods the body's fields claim; raises Unreadable."""
    if not body:
        return []
    types = _media_types(fields)
    claimed: list[str] = []
    if not types or any(_is_form(t) for t in types):
        claimed += _form_claims(body)
    if _says_json(fields):
        claimed += _json_claims(body)
    if any(_is_multipart(t) for t in types):
        claimed += _multipart_claims(body)
    return claimed


def names_the_field(key: str) -> bool:
    """A decoded key that a framework takes as ``_method`` (PHP: leading spaces go, then a
    ``.`` or ``[`` in the first place becomes ``_``)."""
    key = key.strip().lower()
    return key[1:] == "method" and key[:1] in ("_", ".", "[")


def _form_claims(data: bytes) -> list[str]:
    claimed: dict[str, None] = {}
    for number, match in enumerate(_FORM_FIELD.finditer(data)):
        if number >= MAX_FIELDS:
            raise Unreadable(f"more than {MAX_FIELDS} fields that could name {FIELD}")
        end = match.end()
        if end < len(data) and data[end:end + 1] not in (b"&", b";"):
            continue  # a longer key (_methods=...)
        if match.group(1) is not None:
            value = match.group(1)[:3 * CLAIM_CHARS].decode("latin-1")  # each character may be %XX
            claimed[unquote_plus(value, encoding="latin-1").strip().upper()[:CLAIM_CHARS]] = None
            if len(claimed) >= MAX_CLAIMS:
                break
    return list(claimed)


def _json_claims(body: bytes) -> list[str]:
    if not _JSON_MAYBE.search(body):
        return []
    if body.count(b"[") + body.count(b"{") > MAX_JSON_CONTAINERS:
        # decoded, each costs Python ~60 bytes or more: 32 MiB of `[],` took ~800 MiB
        raise Unreadable(f"a JSON body of more than {MAX_JSON_CONTAINERS} arrays and objects")
    try:
        top = json.loads(body, object_pairs_hook=list)  # every copy of a key, not the last alone
    except (ValueError, RecursionError) as e:
        raise Unreadable(f"the body is not JSON the egress proxy can read ({type(e).__name__})") from None
    if not isinstance(top, list) or not all(isinstance(p, tuple) for p in top):
        return []  # not an object: no fields
    claimed = {(v.strip().upper() if isinstance(v, str) else json.dumps(v))[:CLAIM_CHARS]: None
               for k, v in top if names_the_field(k)}
    return list(claimed)[:MAX_CLAIMS]


def _multipart_claims(body: bytes) -> list[str]:
    """A part named as the field cannot be told apart from file data without parsing the
    parts as the upstream would (and parsers differ): any such name refuses."""
    for number, match in enumerate(_DISPOSITION.finditer(body)):
        start = match.start()
        stop = min(len(body), start + MAX_PART_HEADER + 1)
        end = body.find(b"\n", start, stop)
        raw = body[start:end if end >= 0 else stop]
        header = raw.decode("latin-1").partition(":")[2]
        if number >= MAX_FIELDS or len(raw) > MAX_PART_HEADER or re.search(r"\*[0-9]", header):
            raise Unreadable(f"a multipart body whose part names cannot be read for sure (more than {MAX_FIELDS} "
                             f"that could name {FIELD}, one longer than {MAX_PART_HEADER} bytes, or one continued)")
        for star, value in _NAME_PARAM.findall(header):
            if names_the_field(_decoded_name(value.strip().strip('"'), bool(star))):
                raise Unreadable(f"a multipart body with a part named {FIELD}")
    return []


def _decoded_name(value: str, extended: bool) -> str:
    if extended:  # RFC 2231: charset'language'percent-encoded
        value = unquote(value.rpartition("'")[2], encoding="latin-1")
    if "=?" in value:  # RFC 2047 encoded words
        try:
            value = "".join(part.decode("latin-1") if isinstance(part, bytes) else part
                            for part, _ in email.header.decode_header(value))
        except (ValueError, LookupError):
            pass
    return value


def _may_have_body(http_version: str, fields: Fields) -> bool:
    lengths, codings = _values(fields, "content-length"), _values(fields, "transfer-encoding")
    if http_version.startswith("HTTP/1") and not lengths and not codings:
        return False  # an HTTP/1 request with neither has no body
    return not (not codings and [v.strip() for v in lengths] == ["0"])


def _media_types(fields: Fields) -> list[str]:
    """Every media type a Content-Type could be read as: what comes before its first `;`, and
    each piece of that a `,` or a space sets apart (PHP cuts a type at either, Rack at `,`:
    `application/x-www-form-urlencoded, text/plain` is a form to them)."""
    types = []
    for value in _values(fields, "content-type"):
        head = value.partition(";")[0].strip().lower()
        types += [head, *(piece for piece in re.split(r"[,\s]+", head) if piece)]
    return types


def _says_json(fields: Fields) -> bool:
    """Laravel takes a body as JSON when its Content-Type holds `/json` or `+json` anywhere,
    parameters included (`text/plain; x=/json`)."""
    return any("json" in value.lower() for value in _values(fields, "content-type"))


def _values(fields: Fields, name: str) -> list[str]:
    return [v for k, v in fields if k.lower() == name]


def _is_form(media_type: str) -> bool:
    return media_type in (FORM, "")


def _is_multipart(media_type: str) -> bool:
    return media_type.startswith("multipart/")


