"""Egress routes: path normalisation (what is matched is what is forwarded), prefix and
method matching, strict parsing, and the secrets file."""
from __future__ import annotations

import json

import pytest

from bottle_tasks.sidecars.egress import routes as R


@pytest.mark.parametrize("target, normal", [
    ("/v1/messages", "/v1/messages"),
    ("/v1/messages?beta=true", "/v1/messages?beta=true"),
    ("/v1/../admin", "/admin"),
    ("/v1/%2e%2e/admin", "/admin"),
    ("/v1/%2E%2e/admin", "/admin"),
    ("/v1/.%2e/admin", "/admin"),
    ("/v1//messages", "/v1/messages"),
    ("//v1/messages", "/v1/messages"),
    ("/v1/./messages", "/v1/messages"),
    ("/v1/%2e/messages", "/v1/messages"),
    ("/v1/", "/v1/"),
    ("/v1/x/..", "/v1/"),
    ("/", "/"),
    ("/v1/messages?next=/../../admin", "/v1/messages?next=/../../admin"),  # the query is not a path
    ("/v1/a%20b", "/v1/a%20b"),
])
def test_paths_are_normalised(target, normal):
    assert R.normalize_path(target) == normal


@pytest.mark.parametrize("target", [
    "/v1%2fmessages", "/v1%2Fmessages", "/v1%5cadmin", "/v1\\admin", "/v1;jsessionid=x/messages",
    "/v1/messages;x", "/..", "/v1/../../admin", "/%2e%2e/admin", "/v1%00", "v1/messages", "*",
])
def test_ambiguous_paths_are_refused(target):
    with pytest.raises(R.PathError):
        R.normalize_path(target)


@pytest.mark.parametrize("prefix, path, matches", [
    ("/v1/", "/v1/messages", True),
    ("/v1/", "/v1", True),
    ("/v1/", "/v10/messages", False),
    ("/v1", "/v1", True),
    ("/v1", "/v1/messages", True),
    ("/v1", "/v10", False),
    ("/", "/anything", True),
    ("/api/claude_code/", "/api/claude_code/settings", True),
    ("/api/claude_code/", "/api/claude_codex", False),
])
def test_prefixes_match_whole_segments(prefix, path, matches):
    assert R.path_has_prefix(path, prefix) is matches


def test_route_matches_method_and_path():
    route = R.parse_route({"host": "api.example.com", "paths": ["/v1/"], "methods": ["POST"]})
    assert route.matches("POST", "/v1/messages")
    assert not route.matches("GET", "/v1/messages")
    assert not route.matches("POST", "/v2/messages")
    anything = R.parse_route({"host": "api.example.com"})
    assert anything.matches("DELETE", "/x") and anything.paths == ("/",)


def test_a_route_serves_the_web_ports_or_the_one_port_it_names():
    web = R.parse_route({"host": "api.example.com"})
    assert web.serves(443) and web.serves(80) and not web.serves(8443)
    assert web.to_json()["host"] == "api.example.com" and "port" not in web.to_json()
    one = R.parse_route({"host": "api.example.com", "port": 8443})
    assert one.serves(8443) and not one.serves(443) and not one.serves(80)
    assert R.parse_route(one.to_json()) == one
    assert not R.parse_route({"host": "api.example.com", "port": 443}).serves(80)


@pytest.mark.parametrize("text, split", [
    ("api.example.com", ("api.example.com", None)),
    ("api.example.com:8443", ("api.example.com", 8443)),
    ("api.example.com:", ("api.example.com:", None)),
    ("api.example.com:84x", ("api.example.com:84x", None)),
    ("api.example.com:123456", ("api.example.com:123456", None)),
    ("api.example.com:8443\n", ("api.example.com:8443\n", None)),
    ("api.example.com:\u00b2", ("api.example.com:\u00b2", None)),
    ("api.example.com:\u0668\u0664\u0664\u0663", ("api.example.com:\u0668\u0664\u0664\u0663", None)),
])
def test_a_users_host_and_port_are_split_and_anything_else_stays_in_the_host(text, split):
    from bottle_tasks.manifest import split_port  # what `inv route` splits a route's host with

    assert split_port(text) == split


def test_injection_value_and_header_case():
    route = R.parse_route({"host": "api.example.com",
                           "inject": [{"header": "Authorization", "secret": "TOKEN", "format": "Bearer {secret}"}]})
    [injection] = route.inject
    assert injection.header == "authorization" and injection.value("abc") == "Bearer abc"


@pytest.mark.parametrize("item, problem", [
    ({"host": "API.example.com"}, "host"),
    ({"host": "*.example.com"}, "host"),
    ({"host": "a.example.com", "extra": 1}, "unknown key"),
    ({"host": "a.example.com:8443"}, "host"),
    ({"host": "a.example.com", "port": 0}, "port"),
    ({"host": "a.example.com", "port": 65536}, "port"),
    ({"host": "a.example.com", "port": "8443"}, "port"),
    ({"host": "a.example.com", "port": True}, "port"),
    ({"host": "a.example.com", "paths": ["v1"]}, "paths"),
    ({"host": "a.example.com", "methods": ["FETCH"]}, "methods"),
    ({"host": "a.example.com", "inject": [{"header": "bad header", "secret": "X"}]}, "header"),
    ({"host": "a.example.com", "inject": [{"header": "x-key", "secret": "1X"}]}, "secret"),
    ({"host": "a.example.com", "inject": [{"header": "x-key", "secret": "X", "format": "no placeholder"}]}, "format"),
    ({"host": "a.example.com", "inject": [{"header": "x-key", "secret": "X", "format": "{secret}\r\nX-Evil: 1"}]},
     "format"),
])
def test_bad_routes_are_refused(item, problem):
    with pytest.raises(R.RouteError, match=problem):
        R.parse_route(item)


def test_routes_file_and_secrets(tmp_path):
    doc = {"bottle": "demo", "routes": [{"host": "api.example.com", "inject": [{"header": "x-key", "secret": "KEY"}]}]}
    (tmp_path / "routes.json").write_text(json.dumps(doc))
    bottle, routes = R.load(tmp_path / "routes.json")
    assert bottle == "demo" and routes[0].host == "api.example.com"
    (tmp_path / "secrets.json").write_text(json.dumps({"OTHER": "x"}))
    with pytest.raises(R.RouteError, match="KEY"):
        R.load_secrets(tmp_path / "secrets.json", routes)
    (tmp_path / "secrets.json").write_text(json.dumps({"KEY": "one\ntwo"}))
    with pytest.raises(R.RouteError, match="line break"):
        R.load_secrets(tmp_path / "secrets.json", routes)
    (tmp_path / "secrets.json").write_text(json.dumps({"KEY": "value"}))
    assert R.load_secrets(tmp_path / "secrets.json", routes) == {"KEY": "value"}
    (tmp_path / "routes.json").write_text(json.dumps({"routes": [], "nope": 1}))
    with pytest.raises(R.RouteError, match="nope"):
        R.load(tmp_path / "routes.json")


def test_cli_injections_plain_and_templated():
    from types import SimpleNamespace

    from bottle_tasks.errors import BottleError
    from bottle_tasks.steps.egress import parse_injections

    bottle = SimpleNamespace(agent=SimpleNamespace(secrets=("GITHUB_TOKEN",), name="a"), manifest=SimpleNamespace(path="m"))
    assert parse_injections(bottle, ["X-Token=GITHUB_TOKEN", "authorization=Bearer {GITHUB_TOKEN}"]) == [
        {"header": "x-token", "secret": "GITHUB_TOKEN", "format": "{secret}"},
        {"header": "authorization", "secret": "GITHUB_TOKEN", "format": "Bearer {secret}"},
    ]
    for bad in ["no-equals", "x=UNDECLARED", "x=Bearer {UNDECLARED}"]:
        with pytest.raises(BottleError):
            parse_injections(bottle, [bad])


def test_route_rm_of_a_host_takes_all_its_routes_and_of_host_port_those_on_that_port():
    from types import SimpleNamespace

    from bottle_tasks.policy_render import effective_routes

    web = R.parse_route({"host": "api.test", "inject": [{"header": "x-key", "secret": "K"}]})
    admin = R.parse_route({"host": "api.test", "port": 8443, "paths": ["/admin/"]})
    agent = SimpleNamespace(routes=[web, admin])
    assert effective_routes(agent, {"removed": ["api.test:8443"]}) == [web.to_json()]
    assert effective_routes(agent, {"removed": ["api.test:443"]}) == [web.to_json(), admin.to_json()]
    assert effective_routes(agent, {"removed": ["api.test"]}) == []
