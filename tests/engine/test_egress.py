"""The egress proxy in a real bottle: Claude Code and curl inside the agent reach a stand-in
Messages API (alias api.anthropic.com on the bottle's egress network) through egress proxy
and firewall; the upstream records the real key while the agent only ever holds a
placeholder. Also: routes (path, method, normalisation), injected headers replacing what
the agent sent, the topology, secrets absent everywhere, SSE timing through both hops, and
a launch without the secret failing cleanly."""
from __future__ import annotations

import base64
import json
import re
import secrets
import shlex
import string
import subprocess
import time
from pathlib import Path

import pytest
from helpers import docker, inv, labelled
from test_bottle_e2e import OTHER, UPSTREAM, module_bottle, upstream_records

from bottle_tasks.provisioning import PLACEHOLDER
from bottle_tasks.sidecars.firewall import capacity

pytestmark = pytest.mark.usefixtures("engine")

API = "api.anthropic.com"
TUNNEL_JS = Path(__file__).resolve().parent / "tunnel.js"
FLOOD_PY = Path(__file__).resolve().parent / "flood.py"
H2_FLOOD_PY = Path(__file__).resolve().parent / "h2_flood.py"
AGENT_TUNNEL_PY = Path(__file__).resolve().parent / "agent_tunnel.py"  # what the two scripts above import
WS_CLIENT = Path(__file__).resolve().parent / "ws_client.py"
PINNED = "pinned.upstream.test"  # a passthrough host: its clients must see the real certificate
REPLY = "Hello from the stand-in Messages API."
# Key-shaped like a real Anthropic key, so the firewall's DLP rule would catch it anywhere
# it is not exempt: only the injected header, on the API host, from the egress proxy.
REAL_KEY = "sk-ant-api03-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(93)) + "AA"
AGENT_KEY_SHAPED = "sk-ant-api03-" + "B" * 93 + "AA"  # what the agent might try to send itself

def api_bottle(secret: str, inject: str) -> str:
    """The manifest entry of a bottle whose route to the API host injects `inject`."""
    return f"""    prompt: egress test bottle
    secrets: [{secret}]
    resources: {{memory: 2g, cpus: 1, pids: 512}}
    network:
      allow: [{API}, {UPSTREAM}, {PINNED}]
      passthrough: [{PINNED}]
      allowed_cidrs: []
    egress_proxy:
      routes:
        - host: {API}
          # what Claude Code sends, with a key or a subscription; and the SSE test's path
          paths: [/v1/, /api/claude_code/, /sse-timed]
          methods: [GET, POST]
          inject: [{inject}]
"""


# The API host is also allowed on 8443, where the upstream answers as well: a route serves
# its own port only. /public/ injects nothing; /v8443/ injects on 8443 alone.
BODY = api_bottle("ANTHROPIC_API_KEY", "{header: x-api-key, secret: ANTHROPIC_API_KEY}").replace(
    f"allow: [{API}, ", f"allow: [{API}, '{API}:8443', ") + f"""        - host: {API}
          paths: [/public/]
        - host: '{API}:8443'
          paths: [/v8443/]
          inject: [{{header: x-api-key, secret: ANTHROPIC_API_KEY}}]
"""


@pytest.fixture(scope="module")
def bottle(tmp_path_factory, test_ca, trust_bundle):
    yield from module_bottle(tmp_path_factory, test_ca, trust_bundle, prefix="egr", body=BODY,
                             env={"ANTHROPIC_API_KEY": REAL_KEY}, aliases=(API, UPSTREAM, OTHER, PINNED))


records = upstream_records


def header_values(record: dict, name: str) -> list[str]:
    return [value for key, value in record["headers"] if key.lower() == name]


def networks(container: str) -> set[str]:
    """The bottle's own networks the container is on (the harness's private test network aside)."""
    joined = json.loads(docker("inspect", container).stdout)[0]["NetworkSettings"]["Networks"]
    return {name for name in joined if not name.startswith("bottle-test-")}


# -- topology ----------------------------------------------------------------------------------------


def test_agent_reaches_only_the_egress_proxy(bottle):
    slug = bottle.slug
    assert networks(f"bottle-{slug}-agent") == {f"bottle-{slug}-net-internal"}
    assert networks(f"bottle-{slug}-egress") == {f"bottle-{slug}-net-internal", f"bottle-{slug}-net-link"}
    assert networks(f"bottle-{slug}-firewall") == {f"bottle-{slug}-net-link", f"bottle-{slug}-net-egress"}
    env = bottle.sh("env").stdout
    assert "HTTPS_PROXY=http://egress:8080" in env
    assert bottle.sh("getent hosts firewall").returncode != 0
    fw_ip = json.loads(docker("inspect", f"bottle-{slug}-firewall").stdout)[0][
        "NetworkSettings"]["Networks"][f"bottle-{slug}-net-link"]["IPAddress"]
    out = bottle.sh(f"curl -sS --noproxy '*' --max-time 5 http://{fw_ip}:3128/")
    assert out.returncode != 0, "the agent reached the firewall directly"
    for role in ("egress", "firewall"):
        info = json.loads(docker("inspect", f"bottle-{slug}-{role}").stdout)[0]
        assert info["HostConfig"]["ReadonlyRootfs"] and info["HostConfig"]["CapDrop"] in (["ALL"], ["all"])
        assert "no-new-privileges" in info["HostConfig"]["SecurityOpt"]
        assert info["HostConfig"]["Memory"] > 0 and info["HostConfig"]["PidsLimit"] > 0


# -- injection ------------------------------------------------------------------------------------------


def test_the_upstream_gets_the_real_key_the_agent_sent_a_placeholder(bottle):
    out = bottle.sh(f"curl -sS --max-time 20 https://{API}/v1/messages -H \"x-api-key: $ANTHROPIC_API_KEY\" "
                    "-H 'content-type: application/json' -d '{\"model\": \"m\", \"max_tokens\": 5}'")
    assert REPLY in out.stdout, out.stdout + out.stderr
    [seen] = records(bottle, path="/v1/messages", method="POST")
    assert header_values(seen, "x-api-key") == [REAL_KEY]
    assert f"ANTHROPIC_API_KEY={PLACEHOLDER}" in bottle.sh("env").stdout


def test_what_the_agent_sent_in_the_header_is_dropped_in_any_case(bottle):
    path = "/v1/messages/dup"
    bottle.sh(f"curl -sS --max-time 20 https://{API}{path} -X POST -H 'X-API-KEY: one' -H 'x-Api-Key: two' -d x")
    [seen] = records(bottle, path=path)
    assert header_values(seen, "x-api-key") == [REAL_KEY]


@pytest.mark.parametrize("method, path", [("GET", "/v2/models"), ("DELETE", "/v1/messages/x"), ("GET", "/")])
def test_a_request_no_route_covers_is_refused_with_the_fix(bottle, method, path):
    codes, body = bottle.curl(f"https://{API}{path}", "-X", method)
    assert codes.endswith("403"), (codes, body)
    assert API in body and method in body and path in body and "inv route add" in body
    assert records(bottle, path=path) == []


def test_a_route_serves_its_own_port_and_no_other(bottle):
    # The firewall allows the API host on 8443 too; the web ports' route must not put the key there.
    codes, body = bottle.curl(f"https://{API}:8443/v1/messages", "-d", "{}")
    assert codes.endswith("403") and f"inv route add {API}:8443 --path /v1/messages" in body, (codes, body)
    assert records(bottle, port=8443, path="/v1/messages") == []
    codes, body = bottle.curl(f"https://{API}:8443/v8443/x")
    assert codes.endswith("200"), (codes, body)
    [seen] = records(bottle, port=8443, path="/v8443/x")
    assert header_values(seen, "x-api-key") == [REAL_KEY]
    codes, body = bottle.curl(f"https://{API}/v8443/x")
    assert codes.endswith("403") and f"inv route add {API} --path /v8443/x" in body, (codes, body)
    assert records(bottle, port=443, path="/v8443/x") == []


def test_a_route_that_injects_nothing_drops_what_the_hosts_routes_inject(bottle):
    # The firewall exempts x-api-key from DLP on the API host (from the egress proxy): on a route
    # that injects nothing, the agent's own value under that name would pass it unscanned.
    codes, body = bottle.curl(f"https://{API}/public/leak", "-H", f"x-api-key: {AGENT_KEY_SHAPED}",
                              "-H", f"X-API-Key: {AGENT_KEY_SHAPED}")
    assert codes.endswith("200"), (codes, body)
    [seen] = records(bottle, path="/public/leak")
    assert header_values(seen, "x-api-key") == []
    assert AGENT_KEY_SHAPED not in json.dumps(seen)


@pytest.mark.parametrize("override", [
    ("-H", "X-HTTP-Method-Override: DELETE"), ("-H", "x-http-method: delete"), ("-H", "X-Method-Override: PUT"),
    ("-H", "X-HTTP-Method-Override: GET", "-H", "X-HTTP-Method-Override: DELETE"), ("?_method=DELETE",)])
def test_a_method_override_the_routes_do_not_allow_is_refused(bottle, override):
    # Many frameworks take a POST as the method these name: the route's method rule must hold for it.
    path = f"/v1/messages/override-{len(records(bottle))}"
    query = override[0] if override[0].startswith("?") else ""
    codes, body = bottle.curl(f"https://{API}{path}{query}", "-d", "x", *override[:0 if query else None])
    assert codes.endswith("403") and "no-route" in body and "method override" in body, (codes, body)
    assert records(bottle, path=path + query) == []


def test_a_method_override_the_routes_allow_passes(bottle):
    path = "/v1/messages/override-allowed"
    codes, body = bottle.curl(f"https://{API}{path}?_method=get", "-d", "x", "-H", "X-HTTP-Method-Override: GET")
    assert codes.endswith("200"), (codes, body)
    [seen] = records(bottle, path=path + "?_method=get")
    assert header_values(seen, "x-http-method-override") == ["GET"] and header_values(seen, "x-api-key") == [REAL_KEY]


@pytest.mark.parametrize("body", [
    ("-d", "text=hello&_method=DELETE"),                                          # Rack, Symfony, Spring
    ("-H", "content-type:", "-d", "_method=DELETE"),                              # Rack: no type is a form
    ("-d", "%5Fmethod=put"),
    ("-d", "a=1&.method=DELETE"),                                                 # PHP reads it as _method
    ("-H", "content-type: application/json", "-d", '{"model": "m", "_method": "DELETE"}'),  # Laravel
    ("-H", "content-type: application/json", "-d", '{"\\u005fmethod": "PATCH"}'),
    ("-F", "_method=DELETE"),                                                     # multipart
    ("-F", "file=@/etc/hostname", "-F", "_method=DELETE"),
])
def test_a_method_the_body_asks_for_that_the_routes_do_not_allow_is_refused(bottle, body):
    # A route limited to GET and POST must not lend its key to a POST the upstream takes as a DELETE.
    path = f"/v1/messages/body-override-{len(records(bottle))}"
    codes, answer = bottle.curl(f"https://{API}{path}", *body)
    assert codes.endswith("403") and "no-route" in answer, (codes, answer)
    assert records(bottle, path=path) == []


@pytest.mark.parametrize("body, sent", [
    (("-d", "text=hello&_method=post"), b"text=hello&_method=post"),
    (("-H", "content-type: application/json", "-d", '{"_method": "GET", "n": 1}'), b'{"_method": "GET", "n": 1}'),
])
def test_a_method_the_body_asks_for_that_the_routes_allow_passes_whole(bottle, body, sent):
    path = f"/v1/messages/body-override-allowed-{len(records(bottle))}"
    codes, answer = bottle.curl(f"https://{API}{path}", *body)
    assert codes.endswith("200"), (codes, answer)
    [seen] = records(bottle, path=path)
    assert seen["method"] == "POST" and seen["body_bytes"] == len(sent)
    assert header_values(seen, "x-api-key") == [REAL_KEY]


def json_file(bottle, path: str, start: str, size: int) -> str:
    """Write `{"text": "<start><size x's>"}` to `path` in the agent (too large for a command line)."""
    bottle.sh(f"""{{ printf '{{"text": "%s' {shlex.quote(start)}; head -c {size} /dev/zero | tr '\\0' x; """
              f"""printf '"}}'; }} > {path}""", check=True)
    return path


@pytest.mark.parametrize("framing", [("-H", "expect: 100-continue"), ("-H", "transfer-encoding: chunked")])
def test_a_body_held_to_be_read_arrives_whole(bottle, framing):
    # A model request's shape: JSON, most of the firewall's 1 MiB bound, with a \u escape, so
    # the egress proxy decodes it before it sends any of it on.
    path = f"/v1/messages/held-whole-{len(records(bottle))}"
    body = json_file(bottle, "/tmp/whole.json", "\\u00e9", 1_000_000)
    codes, answer = bottle.curl(f"https://{API}{path}", "-H", "content-type: application/json", *framing,
                                "--data-binary", f"@{body}")
    assert codes.endswith("200"), (codes, answer)
    [seen] = records(bottle, path=path)
    assert seen["body_bytes"] == 1_000_000 + len('{"text": "\\u00e9"}') and header_values(seen, "x-api-key") == [REAL_KEY]


@pytest.mark.parametrize("framing", [(), ("-H", "transfer-encoding: chunked")])
def test_a_body_held_to_be_read_is_bounded_as_the_firewall_bounds_it(bottle, framing):
    # The bottle keeps dlp.max_body_bytes at its default, 1 MiB: a JSON body past it is refused
    # by the egress proxy, from its length or as it arrives, and nothing of it is sent on.
    path = f"/v1/messages/held-too-large-{len(framing)}"
    body = json_file(bottle, "/tmp/held.json", "", 1_100_000)
    codes, answer = bottle.curl(f"https://{API}{path}", "-H", "content-type: application/json", *framing,
                                "--data-binary", f"@{body}")
    assert codes.endswith("413") and "larger than dlp.max_body_bytes" in answer, (codes, answer)
    assert records(bottle, path=path) == []
    refused = [json.loads(line) for line in docker("logs", f"bottle-{bottle.slug}-egress").stdout.splitlines()
               if path in line and '"deny"' in line]
    # from its length: refused before any of it is read; chunked: as it arrives (mitm_limits,
    # whose refusals the egress proxy logs with their reason)
    assert refused and refused[0]["rule"] == "body-too-large", refused
    assert ("larger than dlp.max_body_bytes" in refused[0].get("reason", "")) == bool(framing), refused


@pytest.mark.parametrize("header", ["X-Original-URL: /admin/keys", "x-rewrite-url: /admin/keys"])
def test_a_header_naming_another_path_is_refused(bottle, header):
    # IIS's URL Rewrite (and Symfony, Zend before they dropped it) take this path over the
    # request line's: a route's path rule must not be stepped around with it.
    path = f"/v1/messages/path-override-{len(records(bottle))}"
    codes, answer = bottle.curl(f"https://{API}{path}", "-H", header)
    assert codes.endswith("403") and "path-override" in answer, (codes, answer)
    assert records(bottle, path=path) == []


def test_paths_are_normalised_before_matching_and_forwarded_normalised(bottle):
    codes, body = bottle.curl(f"https://{API}/v1/../admin", "--path-as-is")
    assert codes.endswith("403") and "/admin" in body, (codes, body)
    codes, _ = bottle.curl(f"https://{API}/v1/%2e%2e/v1/models", "--path-as-is")
    assert codes.endswith("200")
    assert records(bottle, path="/v1/models"), "the upstream must see the normalised path"
    codes, body = bottle.curl(f"https://{API}/v1%2fmessages", "--path-as-is")
    assert codes.endswith("400"), (codes, body)
    assert records(bottle, path="/admin") == [] and records(bottle, path="/v1%2fmessages") == []


def test_a_host_header_naming_another_host_is_refused(bottle):
    before = len(records(bottle, kind="http"))
    codes, body = bottle.curl(f"https://{API}/v1/messages", "-H", f"Host: {UPSTREAM}", "-d", "x")
    assert codes.endswith("403") and "host-mismatch" in body, (codes, body)
    assert len(records(bottle, kind="http")) == before


@pytest.mark.parametrize("spelled", ["{upper}.", "{host}:443"], ids=["upper, dot", "port"])
def test_a_routed_request_reaches_the_upstream_with_the_routes_own_host_name(bottle, spelled):
    """Each spelling normalises to the route's host, so the request passes; an upstream's front
    end could pick another virtual host for it, with the credential: it gets the plain name."""
    path = f"/v1/spelled-{len(records(bottle, kind='http'))}"
    host = spelled.format(upper=API.upper(), host=API)
    codes, body = bottle.curl(f"https://{API}{path}", "-H", f"Host: {host}")
    assert codes.endswith("200"), (codes, body)
    [seen] = records(bottle, path=path)
    assert header_values(seen, "host") == [API] and header_values(seen, "x-api-key") == [REAL_KEY], seen


def test_hosts_without_routes_pass_unchanged(bottle):
    codes, body = bottle.curl(f"https://{UPSTREAM}/no-route", "-H", "x-api-key: agent-value")
    assert codes.endswith("200"), body
    [seen] = records(bottle, path="/no-route")
    assert header_values(seen, "x-api-key") == ["agent-value"]
    codes, body = bottle.curl(f"https://{OTHER}/not-allowed")
    assert codes.startswith("403") or codes.endswith("403"), (codes, body)  # the firewall still decides


def issuer(bottle, url: str) -> str:
    """Who signed the certificate the agent was shown for `url` (-k: the passthrough host's
    certificate is the test CA's, which the agent need not trust)."""
    out = bottle.sh(f"curl -sS -k -v --max-time 20 -o /dev/null {url} 2>&1").stdout
    found = re.search(r"issuer: (.*)", out)
    assert found, out
    return found.group(1)


def test_tls_is_opened_once_by_the_proxy_that_needs_it(bottle):
    # routed: the egress proxy opens it (it injects); not routed: relayed unopened, the
    # firewall opens it; passthrough: nobody does, as in a bottle without routes
    assert "egress CA" in issuer(bottle, f"https://{API}/v1/models")
    assert "firewall CA" in issuer(bottle, f"https://{UPSTREAM}/relayed")
    assert "bottle tests upstream CA" in issuer(bottle, f"https://{PINNED}/pinned")
    assert records(bottle, path="/relayed") and records(bottle, path="/pinned")
    egress_log = docker("logs", f"bottle-{bottle.slug}-egress").stdout
    assert "/relayed" not in egress_log and "/pinned" not in egress_log  # never opened there


def test_raw_bytes_in_a_relayed_tunnel_never_reach_the_upstream(bottle):
    docker("cp", str(TUNNEL_JS), f"bottle-{bottle.slug}-agent:/tmp/tunnel.js")
    payload = base64.b64encode(b"SSH-2.0-OpenSSH_9.2\r\nhello").decode()
    out = bottle.sh(f"node /tmp/tunnel.js {UPSTREAM} 443 raw {payload}").stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["closed"] and result["received"] == "", result
    assert not [r for r in records(bottle) if "SSH" in json.dumps(r)]
    audit = [json.loads(line) for line in docker("logs", f"bottle-{bottle.slug}-firewall").stdout.splitlines()
             if line.startswith("{")]
    assert any(r.get("method") == "TCP" and r.get("rule") == "raw-tcp" and r.get("decision") == "deny"
               for r in audit)


def test_a_refused_host_gets_the_firewalls_answer_through_the_egress_proxy(bottle):
    codes, body = bottle.curl(f"https://{OTHER}/refused")
    assert codes.endswith("403") and "inv allow" in body, (codes, body)


def test_dlp_exempts_only_the_injected_header_on_its_host(bottle):
    # the same key shape from the agent: in a body to the API host, in a header to another host
    codes, _ = bottle.curl(f"https://{API}/v1/messages", "-d", json.dumps({"leak": AGENT_KEY_SHAPED}))
    assert codes.endswith("403")
    codes, _ = bottle.curl(f"https://{UPSTREAM}/leak", "-H", f"x-api-key: {AGENT_KEY_SHAPED}")
    assert codes.endswith("403")
    assert records(bottle, path="/leak") == []


# -- secrets --------------------------------------------------------------------------------------------


# -- framing, cleartext, bounds -------------------------------------------------------------------

# What a request body would carry to have the hop after the egress proxy read it as a request
# of its own: outside the routes, with the real key injected by nobody's decision.
SMUGGLED = f"DELETE /v1/smuggled HTTP/1.1\r\nHost: {API}\r\n\r\n"


def test_an_http2_body_without_a_length_arrives_whole_and_alone(bottle):
    # curl uploads stdin over HTTP/2 without a content-length: the frames carry the length,
    # and the egress proxy's HTTP/1 hop to the firewall must frame it (chunked) itself.
    out = bottle.sh(f"printf %s {shlex.quote(SMUGGLED)} | curl -sS --max-time 20 --http2 -X POST -T - "
                    f"-o /dev/null -w '%{{http_version}} %{{http_code}}' https://{API}/v1/h2-body")
    assert out.stdout == "2 200", out.stdout + out.stderr
    [seen] = records(bottle, path="/v1/h2-body")
    assert seen["method"] == "POST" and seen["body_bytes"] == len(SMUGGLED)
    assert header_values(seen, "x-api-key") == [REAL_KEY]
    time.sleep(1)  # a smuggled request would follow on the same connection
    assert records(bottle, path="/v1/smuggled") == []


def test_a_route_that_injects_refuses_plain_http(bottle):
    before = len(records(bottle))
    codes, body = bottle.curl(f"http://{API}/v1/models")
    assert codes.endswith("403") and "cleartext" in body and f"https://{API}" in body, (codes, body)
    assert len(records(bottle)) == before


def test_an_endless_request_head_is_cut_by_the_egress_proxy(bottle):
    # 1 MiB of one header, never ended: mitmproxy alone would buffer it without a bound.
    script = ("const net=require('net');const u=new URL(process.env.HTTPS_PROXY);"
              "const s=net.connect(+u.port,u.hostname,()=>{s.write('GET http://" + API + "/ HTTP/1.1\\r\\nX-Big: ');"
              "s.write('a'.repeat(1<<20));});let got='';s.on('data',d=>got+=d);s.on('error',()=>{});"
              "const done=(closed)=>{console.log(JSON.stringify({closed,got:got.slice(0,40)}));process.exit(0)};"
              "s.on('close',()=>done(true));setTimeout(()=>done(false),15000);")
    out = bottle.sh(f"node -e {shlex.quote(script)}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["closed"], (result, out.stderr)
    assert result["got"] == "" or result["got"].startswith("HTTP/1.1 431"), result  # a reset may drop the 431


def test_the_real_key_is_nowhere_but_in_the_egress_proxy(bottle):
    slug = bottle.slug
    for role in ("agent", "egress", "firewall"):
        name = f"bottle-{slug}-{role}"
        assert REAL_KEY not in docker("inspect", name).stdout, f"key in docker inspect of {role}"
        logs = docker("logs", name)
        assert REAL_KEY not in logs.stdout + logs.stderr, f"key in the logs of {role}"
    agent = f"bottle-{slug}-agent"
    environ = docker("exec", "-u", "0", agent, "sh", "-c", "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'")
    assert REAL_KEY not in environ.stdout
    found = docker("exec", "-u", "0", agent, "grep", "-rlF", REAL_KEY, "/home", "/tmp", "/etc", "/workspace",
                   check=False)
    assert found.stdout == "", found.stdout
    assert REAL_KEY not in bottle.inv("logs", "--json").stdout
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert REAL_KEY not in ps


def test_launch_without_the_secret_fails_first_and_creates_nothing(bottle):
    other = bottle.slug + "x"
    manifest = bottle.manifest
    out = inv("use", bottle.slug, "--name", other, "launch", manifest=manifest, check=False,
              env={"ANTHROPIC_API_KEY": ""})
    assert out.returncode != 0
    assert "ANTHROPIC_API_KEY" in out.stderr and "egress" in out.stderr and "Traceback" not in out.stderr
    assert "✗ secrets" in out.stderr and "✓" not in out.stderr  # before any build or creation
    assert labelled(other) == []
    # The egress step alone still checks for itself (`inv egress` does not run `secrets`).
    out = inv("use", bottle.slug, "--name", other, "egress", manifest=manifest, check=False,
              env={"ANTHROPIC_API_KEY": ""})
    assert out.returncode != 0 and "✗ egress" in out.stderr and "ANTHROPIC_API_KEY" in out.stderr
    assert labelled(other) == []  # what the egress step's pre-tasks made is rolled back


def test_an_egress_proxy_that_cannot_write_its_log_stops_rather_than_serve(bottle):
    """A copy of the bottle's egress proxy (its image, user, command and stage), whose stdout's
    reader is gone: its first line (ready) cannot be written, and no request may pass that the
    operator will never see. It must stop at once (74) and say why; one that kept serving would
    hold `docker run` until the timeout."""
    found = json.loads(docker("inspect", f"bottle-{bottle.slug}-egress").stdout)[0]
    config = found["Config"]
    command = shlex.join([*config["Entrypoint"], *config["Cmd"]])
    name = f"bottle-test-{bottle.slug}-deaf-egress"  # removed below even if it never stops
    try:
        run = subprocess.run(
            ["docker", "run", "--rm", "--name", name, "--network", "none", "--user", config["User"], "--read-only",
             "--tmpfs", "/tmp", *(flag for bind in found["HostConfig"]["Binds"] for flag in ("-v", bind)),
             "--entrypoint", "/bin/sh", config["Image"],
             "-c", f'{{ {command}; echo "exited $?" >&2; }} | true'],  # `true` has exited before the first line
            capture_output=True, text=True, timeout=60)
    finally:
        docker("rm", "-f", name, check=False)
    assert "exited 74" in run.stderr, run.stderr
    assert "bottle-egress: error: stdout (the log of its decisions) cannot be written" in run.stderr
    assert "BrokenPipeError" in run.stderr and "Traceback" not in run.stderr


# -- live route changes ------------------------------------------------------------------------------------


def started_at(bottle, role: str) -> str:
    return docker("inspect", "-f", "{{.State.StartedAt}}", f"bottle-{bottle.slug}-{role}").stdout


def test_routes_change_live_without_a_restart(bottle):
    before = {role: started_at(bottle, role) for role in ("egress", "firewall")}
    listed = bottle.inv("routes").stdout
    assert API in listed and "x-api-key" in listed and REAL_KEY not in listed
    # a stream to the host, relayed unopened while it has no route (the upstream's /sse runs 30 s)
    stream = subprocess.Popen(["docker", "exec", f"bottle-{bottle.slug}-agent", "curl", "-sSN", "--max-time", "60",
                               f"https://{UPSTREAM}/sse"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert stream.stdout.readline().startswith("data:")
        bottle.inv("route", "add", UPSTREAM, "--path", "/added/", "--method", "GET",
                   "--inject", "x-api-key=ANTHROPIC_API_KEY")
        # the route closed it (the stream has 150 events in 30 s; a close-delimited body ends
        # "cleanly" for curl): the agent's next connection is opened by the egress proxy
        stream.wait(timeout=15)
        assert "data: event 149" not in stream.stdout.read()
    finally:
        stream.kill()
    codes, _ = bottle.curl(f"https://{UPSTREAM}/added/one", "-H", "x-api-key: agent-value")
    assert codes.endswith("200")
    [seen] = records(bottle, path="/added/one")
    assert header_values(seen, "x-api-key") == [REAL_KEY]  # injected, and exempt from DLP on this host
    codes, body = bottle.curl(f"https://{UPSTREAM}/elsewhere")
    assert codes.endswith("403") and "no-route" in body  # the host now has routes: off-route is refused
    assert UPSTREAM in bottle.inv("routes").stdout
    bottle.inv("route", "rm", UPSTREAM)
    codes, _ = bottle.curl(f"https://{UPSTREAM}/added/two", "-H", "x-api-key: agent-value")
    assert codes.endswith("200")
    [seen] = records(bottle, path="/added/two")
    assert header_values(seen, "x-api-key") == ["agent-value"]
    assert {role: started_at(bottle, role) for role in ("egress", "firewall")} == before


def test_route_changes_work_from_a_shell_without_the_secret(bottle):
    """A later shell need not hold the key again: the egress proxy's staged value stays."""
    no_key = {**bottle.env, "ANTHROPIC_API_KEY": ""}
    inv("use", *bottle.selector, "route", "add", UPSTREAM, "--path", "/no-env/",
        "--inject", "x-api-key=ANTHROPIC_API_KEY", manifest=bottle.manifest, env=no_key)
    try:
        assert bottle.curl(f"https://{UPSTREAM}/no-env/one")[0].endswith("200")
        [seen] = records(bottle, path="/no-env/one")
        assert header_values(seen, "x-api-key") == [REAL_KEY]
    finally:
        inv("use", *bottle.selector, "route", "rm", UPSTREAM, manifest=bottle.manifest, env=no_key)


def test_a_route_added_live_for_one_port_serves_that_port(bottle):
    bottle.inv("allow", f"{UPSTREAM}:8443")
    try:
        bottle.inv("route", "add", f"{UPSTREAM}:8443", "--path", "/live8443/", "--inject", "x-api-key=ANTHROPIC_API_KEY")
        assert f"{UPSTREAM}:8443  /live8443/" in bottle.inv("routes").stdout
        assert bottle.curl(f"https://{UPSTREAM}:8443/live8443/one")[0].endswith("200")
        [seen] = records(bottle, port=8443, path="/live8443/one")
        assert header_values(seen, "x-api-key") == [REAL_KEY]
        # the host now has routes, none on the web ports: there, every request is refused
        assert bottle.curl(f"https://{UPSTREAM}/live8443/one")[0].endswith("403")
        assert records(bottle, port=443, path="/live8443/one") == []
        bottle.inv("route", "rm", f"{UPSTREAM}:8443")  # that port's routes: here, all the host had
        assert UPSTREAM not in bottle.inv("routes").stdout
    finally:
        bottle.inv("route", "rm", UPSTREAM, check=False)
        bottle.inv("deny", f"{UPSTREAM}:8443")
    assert bottle.curl(f"https://{UPSTREAM}/live8443/two")[0].endswith("200")  # unrouted again


@pytest.mark.parametrize("args, message", [
    (["route", "add", UPSTREAM, "--inject", "x-api-key=UNDECLARED"], "UNDECLARED"),
    (["route", "add", f"{UPSTREAM}:8443"], f"inv allow {UPSTREAM}:8443"),
    (["route", "add", f"{API}:70000"], "port"),
    (["route", "rm", f"{API}:9443"], "no route"),
    (["route", "add", UPSTREAM, "--path", "no-slash"], "paths"),
    (["route", "add", OTHER], "allow"),
    (["route", "rm", "nothing.example"], "no route"),
    (["route", "add", PINNED, "--inject", "x-api-key=ANTHROPIC_API_KEY"], "take the host out of network.passthrough"),
])
def test_bad_route_changes_are_refused_and_change_nothing(bottle, args, message):
    before = bottle.inv("routes").stdout
    out = bottle.inv(*args, check=False)
    assert out.returncode != 0 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert bottle.inv("routes").stdout == before


# -- streaming --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", [API, UPSTREAM])  # opened by the egress proxy; relayed to the firewall
def test_server_sent_events_arrive_as_they_are_produced(bottle, host):
    before = len(records(bottle, kind="sse-sent"))
    out = bottle.sh(f"curl -sN --max-time 20 https://{host}/sse-timed | "
                    "while read -r line; do [ -n \"$line\" ] && echo \"$(date +%s.%N) $line\"; done")
    received = [line.split(" ", 1) for line in out.stdout.splitlines()]
    assert [text for _, text in received] == ["data: timed 0", "data: timed 1", "data: timed 2"], out
    sent = {r["n"]: r["t"] for r in records(bottle, kind="sse-sent")[before:]}
    assert float(received[0][0]) < sent[1], "the first event arrived only after the second was sent"


@pytest.mark.parametrize("host, path", [(API, "/v1/ws"), (UPSTREAM, "/ws")])  # routed; relayed
def test_websockets_pass_both_paths_with_the_injection_on_the_routed_one(bottle, host, path):
    docker("cp", str(WS_CLIENT), f"bottle-{bottle.slug}-agent:/tmp/ws_client.py")
    message = f"hello over {host}"
    out = bottle.sh(f"python3 /tmp/ws_client.py {host} {path} '{message}'")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"status": "101", "echo": message}, out.stdout + out.stderr
    assert [r["text"] for r in records(bottle, kind="ws", path=path)] == [message]  # it really arrived
    [handshake] = records(bottle, kind="http", path=path)
    expected = [REAL_KEY] if host == API else ["agent-value"]
    assert header_values(handshake, "x-api-key") == expected


# -- Claude Code ----------------------------------------------------------------------------------------------


def test_claude_code_answers_through_the_chain(bottle):
    since = f"{time.time() - 1:.3f}"
    out = bottle.inv("claude", "-p", "Say hello.", check=False)
    assert REPLY in out.stdout, out.stdout + out.stderr
    calls = records(bottle, method="POST", path="/v1/messages?beta=true") or records(bottle, method="POST",
                                                                                     path="/v1/messages")
    assert calls and all(header_values(c, "x-api-key") == [REAL_KEY] for c in calls)
    # Everything Claude Code sent to the API host was covered by the routes (none refused).
    refused = [line for line in docker("logs", "--since", since, f"bottle-{bottle.slug}-egress").stdout.splitlines()
               if '"no-route"' in line]
    assert refused == [], refused


def test_interactive_claude_starts_without_asking_for_the_key(bottle):
    """`inv claude` in a terminal: Claude Code takes the placeholder key (pre-approved at
    provisioning) and shows its prompt; it neither asks about the key nor to log in."""
    screen = run_in_terminal(bottle, ["claude"], until="API Usage Billing", seconds=40)
    assert "API Usage Billing" in screen, screen[-2000:]
    for question in ("Do you want to use this API key", "Select login method", "/login"):
        assert question not in screen, screen[-2000:]


def run_in_terminal(bottle, args: list[str], until: str, seconds: float) -> str:
    """Run `inv use SLUG ARGS` on a pseudo-terminal until `until` shows or time runs out; the screen text."""
    import os
    import pty
    import re
    import select

    from helpers import INV, REPO

    main_fd, child_fd = pty.openpty()
    env = dict(os.environ, INVOKE_BOTTLE_MANIFEST=str(bottle.manifest), TERM="xterm-256color",
               COLUMNS="150", LINES="40", **bottle.env)
    proc = subprocess.Popen([INV, "use", *bottle.selector, *args], cwd=REPO, env=env,
                            stdin=child_fd, stdout=child_fd, stderr=child_fd, start_new_session=True)
    os.close(child_fd)
    raw = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main_fd], [], [], 0.5)
            if ready:
                try:
                    raw += os.read(main_fd, 65536)
                except OSError:
                    break
            text = re.sub(r"\x1b\[[0-9;?]*[ -/]*[@-~]", " ", raw.decode("utf-8", "replace"))
            if until in text:
                break
    finally:
        proc.kill()
        proc.wait()
        os.close(main_fd)
    return re.sub(r"\x1b\[[0-9;?]*[ -/]*[@-~]", " ", raw.decode("utf-8", "replace"))


def test_connections_past_the_egress_proxys_cap_are_closed_and_it_serves_on(bottle):
    """The agent's only proxy serves at most capacity.MAX_CLIENT_CONNECTIONS of its connections
    at once; more are closed before a byte of them is read, and it stays up."""
    for script in (FLOOD_PY, AGENT_TUNNEL_PY):
        docker("cp", str(script), f"bottle-{bottle.slug}-agent:/tmp/{script.name}")
    out = bottle.sh(f"python3 /tmp/flood.py {UPSTREAM} 300 1000 2")
    assert out.returncode == 0, out.stderr
    flood = json.loads(out.stdout.strip().splitlines()[-1])
    served = flood["held"] + sum(flood["answered"].values())
    assert flood["held"] > 0 and served <= capacity.MAX_CLIENT_CONNECTIONS, flood
    assert flood["no_tunnel"] >= 300 - capacity.MAX_CLIENT_CONNECTIONS, flood
    egress = f"bottle-{bottle.slug}-egress"
    assert docker("inspect", "--format", "{{.State.Running}} {{.RestartCount}}", egress).stdout.split() == ["true", "0"]
    refusals = [json.loads(line) for line in docker("logs", egress).stdout.splitlines() if '"connection-limit"' in line]
    assert refusals and refusals[0]["decision"] == "deny", refusals
    assert upstream_records(bottle, path="/flood") == [], "a body that never ended reached the upstream"
    assert bottle.curl(f"https://{UPSTREAM}/after-the-flood")[0].endswith("200")


@pytest.mark.parametrize("mode", ["block", "streams"])
def test_http2_heads_that_never_end_do_not_kill_the_egress_proxy(bottle, mode):
    """The egress proxy speaks HTTP/2 to the agent. Before mitm_limits bounded what HTTP/2 heads
    may hold per connection, 100 connections each with a head block that never ends (8 MiB,
    kept by the h2 library until the block ends), or with 100 streams each waiting with a head
    near 64 KiB, had the kernel kill it (512 MiB): the bottle's only way out."""
    for script in (H2_FLOOD_PY, AGENT_TUNNEL_PY):
        docker("cp", str(script), f"bottle-{bottle.slug}-agent:/tmp/{script.name}")
    out = bottle.sh(f"python3 /tmp/h2_flood.py {API} 100 2 {mode}")
    assert out.returncode == 0, out.stderr
    flood = json.loads(out.stdout.strip().splitlines()[-1])
    egress = f"bottle-{bottle.slug}-egress"
    state = docker("inspect", "--format", "{{.State.Running}} {{.State.OOMKilled}} {{.RestartCount}}", egress)
    assert state.stdout.split() == ["true", "false", "0"], (state.stdout, flood)
    assert flood == {"open": 0, "closed": 100, "no_h2": 0}, flood  # each closed or refused at its bound
    assert records(bottle, path="/h2-flood") == [], "a request whose head never ended reached the upstream"
    out = bottle.sh(f"curl -sS --max-time 20 --http2 -o /dev/null -w '%{{http_version}} %{{http_code}}' "
                    f"https://{API}/v1/after-the-h2-flood")
    assert out.stdout == "2 200", out.stdout + out.stderr
