"""The methods a request asks its upstream to take instead of its own (egress/overrides.py):
override headers, the `_method` query parameter, and `_method` fields of form, multipart and
JSON bodies. What the route's method rule is then checked against (engine: test_egress.py)."""
from __future__ import annotations

import json

import pytest

from bottle_tasks.sidecars.egress import overrides as O

FORM = [("content-type", "application/x-www-form-urlencoded")]
JSON = [("content-type", "application/json")]
MULTIPART = [("content-type", "multipart/form-data; boundary=b")]


def test_the_head_claims_its_method_its_override_headers_and_query():
    fields = [("X-HTTP-Method-Override", " delete "), ("x-method-override", "PUT"), ("accept", "*/*")]
    assert O.in_head("POST", fields, "/v1/x?a=1&_METHOD=patch") == ["POST", "DELETE", "PUT", "PATCH"]
    assert O.in_head("POST", [], "/v1/x?.method=delete") == ["POST", "DELETE"]  # PHP's $_GET['_method']
    assert O.in_head("GET", [], "/v1/x") == ["GET"]


@pytest.mark.parametrize("version, fields, may", [
    ("HTTP/1.1", [], False),                                    # HTTP/1 without a length: no body
    ("HTTP/1.1", [("content-length", "0")], False),
    ("HTTP/1.1", [("content-length", "12")], True),              # no content type: Rack reads a form
    ("HTTP/1.1", [("transfer-encoding", "chunked")], True),
    ("HTTP/1.1", [("content-length", "0"), ("transfer-encoding", "chunked")], True),
    ("HTTP/2.0", [], True),                                     # HTTP/2: the head cannot tell
    ("HTTP/1.1", [("content-length", "5"), *FORM], True),
    ("HTTP/1.1", [("content-length", "5"), ("Content-Type", "Multipart/Form-Data; boundary=x")], True),
    ("HTTP/1.1", [("content-length", "5"), ("content-type", "application/vnd.api+json")], True),
    ("HTTP/1.1", [("content-length", "5"), ("content-type", "text/plain")], False),
    ("HTTP/1.1", [("content-length", "5"), ("content-type", "application/octet-stream")], False),
    ("HTTP/1.1", [("content-length", "5"), ("content-type", "text/plain"), *JSON], True),  # any copy
    ("HTTP/1.1", [("content-length", "5"), ("content-type", "")], True),
])
def test_a_body_is_read_only_where_it_can_carry_a_field(version, fields, may):
    assert O.body_may_claim(version, fields) is may


@pytest.mark.parametrize("body, claims", [
    (b"_method=DELETE", ["DELETE"]),
    (b"a=1&_method=delete&b=2", ["DELETE"]),
    (b"a=1;_method=PUT", ["PUT"]),                     # ';' read as a separator too
    (b"a=1&   _method=PUT", ["PUT"]),                  # Rack strips the spaces after '&'
    (b"%5Fmethod=DELETE", ["DELETE"]),
    (b"_%6Dethod=DELETE", ["DELETE"]),
    (b"_Method=PATCH&_method=GET", ["PATCH", "GET"]),  # every copy, any letter case
    (b"_method=%20delete+", ["DELETE"]),
    (b"+%20_method=DELETE", ["DELETE"]),               # PHP drops leading spaces of a name...
    (b".method=DELETE", ["DELETE"]),                   # ... and reads a '.', ...
    (b"%2Emethod=DELETE", ["DELETE"]),
    (b"[method=DELETE", ["DELETE"]),                   # ... or an unclosed '[' as '_'
    (b"method=DELETE&x_method=DELETE&_methods=DELETE&_method[]=DELETE&+method=DELETE", []),
    (b"text=about+the+100%25", []),
    (b"", []),
])
def test_a_forms_method_fields(body, claims):
    assert O.in_body(FORM, body) == claims
    assert O.in_body([], body) == claims  # a body without a content type is read as a form


@pytest.mark.parametrize("body, claims", [
    ({"_method": "DELETE"}, ["DELETE"]),
    ({"model": "m", "_method": " put "}, ["PUT"]),
    ({"_method": ["DELETE"]}, ['["DELETE"]']),          # not a method: no route allows it
    ({"messages": [{"_method": "DELETE"}]}, []),       # nested: no framework takes it
    ([["_method", "DELETE"]], []),                     # an array holds no fields
    ({"text": "a _method of its own"}, []),
])
def test_a_json_bodys_top_level_method_fields(body, claims):
    assert O.in_body(JSON, json.dumps(body).encode()) == claims


def test_json_is_read_for_every_copy_and_every_escape():
    assert O.in_body(JSON, b'{"_method": "POST", "_method": "DELETE"}') == ["POST", "DELETE"]
    assert O.in_body(JSON, b'{"\\u005fmethod": "DELETE"}') == ["DELETE"]
    assert O.in_body(JSON, b'{"_m\\u0065thod": "DELETE"}') == ["DELETE"]
    assert O.in_body(JSON, '{"_method": "DELETE"}'.encode("utf-16")) == ["DELETE"]


def test_json_without_anything_that_could_spell_the_field_is_not_parsed():
    # not valid JSON, and never parsed: a model request's megabytes are searched, not decoded
    assert O.in_body(JSON, b'{"messages": [' + b"x" * 1000) == []


@pytest.mark.parametrize("body", [b'{"_method": "DELETE"', b'{"\\u005fmethod": ' + b"[" * 100_000])
def test_json_that_could_hold_the_field_but_cannot_be_read_is_unreadable(body):
    with pytest.raises(O.Unreadable):
        O.in_body(JSON, body)


@pytest.mark.parametrize("disposition", [
    b'content-disposition: form-data; name="_method"',
    b"Content-Disposition: form-data; name=_METHOD",
    b'content-disposition:form-data;name=".method"',
    b"content-disposition: form-data; name*=utf-8''%5Fmethod",
    b'content-disposition: form-data; name="=?utf-8?q?=5Fmethod?="',
    b'  content-disposition : form-data; filename="a.txt"; name="_method"',
])
def test_a_multipart_body_with_a_part_named_as_the_field_is_unreadable(disposition):
    body = b"--b\r\n" + disposition + b"\r\n\r\nDELETE\r\n--b--\r\n"
    with pytest.raises(O.Unreadable, match="multipart"):
        O.in_body(MULTIPART, body)


def test_a_multipart_body_is_judged_by_its_part_names_not_its_data():
    data = b"100% of the _method=DELETE text in a file, {\"_method\": \"DELETE\"}"
    body = (b'--b\r\ncontent-disposition: form-data; name="file"; filename="_method.txt"\r\n\r\n'
            + data + b"\r\n--b--\r\n")
    assert O.in_body(MULTIPART, body) == []


@pytest.mark.parametrize("body", [
    b"content-disposition: form-data; " + b";" * O.MAX_PART_HEADER + b' name="_method"\r\n\r\nDELETE',
    b"content-disposition: form-data; name*0=_me; name*1=thod\r\n\r\nDELETE",    # RFC 2231 continued
    b"".join(b'content-disposition: form-data; name="method%d"\r\n\r\n' % i for i in range(O.MAX_FIELDS + 1)),
])
def test_part_names_that_cannot_be_read_for_sure_are_unreadable(body):
    with pytest.raises(O.Unreadable, match="for sure"):
        O.in_body(MULTIPART, body)


def test_more_fields_that_could_name_it_than_any_form_has_are_unreadable():
    with pytest.raises(O.Unreadable, match="more than"):
        O.in_body(FORM, b"_method=GET&" * (O.MAX_FIELDS + 1))
    assert O.in_body(FORM, b"_method=GET&" * O.MAX_FIELDS) == ["GET"]


def test_a_claimed_value_is_kept_short_and_never_shortened_into_a_method():
    [claim] = O.in_body(FORM, b"_method=" + b"+" * 500 + b"DELETE")   # padded past what is read
    assert claim == ""                                                # refused as no method, as a route sees it
    [claim] = O.in_body(JSON, b'{"_method": "' + b"x" * 10_000 + b'"}')
    assert claim == "X" * O.CLAIM_CHARS


def test_headers_that_name_another_path_are_found_in_any_case():
    assert O.in_path_headers([("X-Original-URL", "/admin"), ("accept", "*/*"), ("x-rewrite-url", "/x")]) == [
        "X-Original-URL", "x-rewrite-url"]
    assert O.in_path_headers([("x-original-method", "GET")]) == []


@pytest.mark.parametrize("body", [b"_method%00=DELETE", b"a=1&_method%00x=DELETE", b"_method\x00=DELETE"])
def test_a_key_cut_at_a_nul_still_names_the_field(body):
    """PHP measures a decoded key with strlen: `_method%00=DELETE` is its `$_POST['_method']`,
    which Symfony and Laravel take as the method."""
    assert O.in_body(FORM, body) == ["DELETE"]


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded, text/plain",
                                          "application/x-www-form-urlencoded text/plain",
                                          "text/plain, application/x-www-form-urlencoded"])
def test_a_content_type_a_framework_cuts_at_a_comma_or_space_is_read_as_it_reads_it(content_type):
    """PHP cuts a type at `,` or a space, Rack splits at `,`: to them this is a form, and Rails'
    Rack::MethodOverride takes its `_method`. The proxy read no body of such a type."""
    fields = [("content-length", "14"), ("content-type", content_type)]
    assert O.body_may_claim("HTTP/1.1", fields)
    assert O.in_body(fields, b"_method=DELETE") == ["DELETE"]


def test_json_named_anywhere_in_the_content_type_is_read_as_json():
    """Laravel's isJson() looks for /json or +json in the whole header, parameters too."""
    fields = [("content-length", "21"), ("content-type", "text/plain; x=/json")]
    assert O.body_may_claim("HTTP/1.1", fields)
    assert O.in_body(fields, b'{"_method": "DELETE"}') == ["DELETE"]


def test_json_of_more_containers_than_any_request_has_is_not_decoded():
    """Decoded, 32 MiB of `[],` would take ~800 MiB of the proxy's 512 (8.6 MiB took 215 MiB)."""
    body = b'{"method": 0, "x": [' + b"[]," * 300_000 + b"[]]}"
    with pytest.raises(O.Unreadable, match="arrays and objects"):
        O.in_body(JSON, body)
