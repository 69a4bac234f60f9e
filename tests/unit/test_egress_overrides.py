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
    (b"method=DELETE&x_method=DELETE", []),
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


@pytest.mark.parametrize("body", [
    b'--b\r\ncontent-disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--b--\r\n',
    b"--b\r\ncontent-disposition: form-data; name*=utf-8''%5Fmethod\r\n\r\nDELETE\r\n--b--\r\n",
])
def test_a_multipart_body_whose_names_could_spell_the_field_is_unreadable(body):
    with pytest.raises(O.Unreadable, match="multipart"):
        O.in_body(MULTIPART, body)


def test_a_multipart_body_without_it_claims_nothing():
    body = b'--b\r\ncontent-disposition: form-data; name="file"\r\n\r\nhello\r\n--b--\r\n'
    assert O.in_body(MULTIPART, body) == []
