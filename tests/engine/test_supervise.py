"""Supervise in a real bottle: a real MCP client (the `mcp` SDK, in a container on the
agent's network) asks; the call stays pending until `inv approve` / `inv reject`, or the
bottle's timeout; an approved host then answers from inside the agent, with no restart.
Also: a `never` host is refused without asking, nothing on the agent's network can
decide, the agent reads the current policy, and Claude Code sees the server connected."""
from __future__ import annotations

import json
import subprocess
import time

import pytest
from helpers import docker, inv
from invoke import Context
from rich.console import Console
from test_bottle_e2e import OTHER, UPSTREAM, module_bottle, upstream_records

from bottle_tasks.dashboard import Dashboard, snapshot
from bottle_tasks.state import state_root
from bottle_tasks.supervision import describe
from bottle_tasks.target import LocalTarget

pytestmark = pytest.mark.usefixtures("engine")

THIRD = "third.upstream.test"     # asked for, and rejected
NEVER = "never.upstream.test"     # network.never: cannot be approved
TIMEOUT = 12

TOKEN = "sup-test-token-value-0123456789"
# With a route (so an egress proxy too): route requests have something to change.
BODY = f"""    prompt: supervise test bottle
    secrets: [SUP_TOKEN]
    resources: {{memory: 2g, cpus: 1, pids: 512}}
    network:
      allow: [{UPSTREAM}, "{UPSTREAM}:8443"]
      never: [{NEVER}]
      allowed_cidrs: []
    egress_proxy:
      routes:
        - {{host: {UPSTREAM}, paths: [/routed/], inject: [{{header: x-sup-token, secret: SUP_TOKEN}}]}}
    supervise: {{enabled: true, timeout: {TIMEOUT}}}
"""

CLIENT = """
import asyncio, json, sys
from mcp import Client

async def main():
    async with Client("http://supervise:9100/mcp") as client:
        if sys.argv[1] == "list":
            tools = await client.list_tools()
            print(json.dumps(sorted(t.name for t in tools.tools)))
            return
        result = await client.call_tool(sys.argv[1], json.loads(sys.argv[2]))
        print(json.dumps(result.structured_content))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def bottle(tmp_path_factory, test_ca, trust_bundle):
    yield from module_bottle(tmp_path_factory, test_ca, trust_bundle, prefix="sup", body=BODY, env={"SUP_TOKEN": TOKEN},
                             aliases=(UPSTREAM, OTHER, THIRD, NEVER))


def mcp_client(bottle, *args: str) -> subprocess.Popen:
    """The SDK's client, in a container of the supervise image on the agent's network."""
    image = json.loads(docker("inspect", f"bottle-{bottle.slug}-supervise").stdout)[0]["Config"]["Image"]
    return subprocess.Popen(["docker", "run", "--rm", "--label", "bottle.test=1", "--network",
                             f"bottle-{bottle.slug}-net-internal", "--entrypoint", "/opt/bottle/venv/bin/python",
                             image, "-c", CLIENT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result_of(call: subprocess.Popen, timeout: float = 60) -> dict:
    out, err = call.communicate(timeout=timeout)
    assert call.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def pending(bottle, host: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in json.loads(bottle.inv("requests", "--json").stdout)
                 if r["state"] == "pending" and r["what"].get("host") == host]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no pending request for {host}")


def test_the_agent_sees_only_the_four_tools(bottle):
    assert result_of(mcp_client(bottle, "list")) == ["ask_operator", "get_policy", "request_host", "request_route"]


def test_an_approved_host_answers_from_the_agent_without_a_restart(bottle):
    started = {r: docker("inspect", "-f", "{{.State.StartedAt}}", f"bottle-{bottle.slug}-{r}").stdout
               for r in ("firewall", "agent", "supervise")}
    assert bottle.curl(f"https://{OTHER}/before")[0].endswith("403")
    call = mcp_client(bottle, "request_host", json.dumps({"host": OTHER, "reason": "docs for the task"}))
    request = pending(bottle, OTHER)
    assert request["reason"] == "docs for the task" and request["bottle"] == bottle.slug
    assert call.poll() is None, "the tool call returned before anyone decided"
    out = bottle.inv("approve", request["id"], "--note", "go ahead")
    assert "approved" in out.stderr + out.stdout
    answer = result_of(call)
    assert answer["status"] == "approved" and answer["note"] == "go ahead", answer
    codes, _ = bottle.curl(f"https://{OTHER}/after-approval")
    assert codes.endswith("200")
    assert upstream_records(bottle, path="/after-approval")
    # kept in the bottle's state (a relaunch keeps it), published to the agent
    state = json.loads((bottle.state_home / "bottle" / bottle.slug / "state.json").read_text())
    assert OTHER in state["policy_changes"]["allow"]
    assert OTHER in json.loads(bottle.sh("cat /etc/bottle/current/policy.json").stdout)["allow"]
    assert {r: docker("inspect", "-f", "{{.State.StartedAt}}", f"bottle-{bottle.slug}-{r}").stdout
            for r in started} == started


def test_an_approved_route_injects_from_then_on(bottle):
    ask = {"host": UPSTREAM, "paths": ["/extra/"], "methods": ["GET"], "reason": "the extra API",
           "inject": [{"header": "x-extra", "secret": "SUP_TOKEN", "format": "Token {secret}"}]}
    call = mcp_client(bottle, "request_route", json.dumps(ask))
    request = pending(bottle, UPSTREAM)
    # the operator is shown the format too: it is part of what the header will carry
    assert 'x-extra <- SUP_TOKEN as "Token {secret}"' in describe(request)
    # the operator's shell need not hold the secret: the egress proxy's value stays
    inv("approve", request["id"], manifest=bottle.manifest, env={"SUP_TOKEN": ""})
    assert result_of(call)["status"] == "approved"
    assert bottle.curl(f"https://{UPSTREAM}/extra/one")[0].endswith("200")
    [seen] = upstream_records(bottle, path="/extra/one")
    assert [v for k, v in seen["headers"] if k.lower() == "x-extra"] == [f"Token {TOKEN}"]
    routes = json.loads(bottle.sh("cat /etc/bottle/current/policy.json").stdout)["routes"]
    assert any("/extra/" in r["paths"] for r in routes) and TOKEN not in json.dumps(routes)


def test_an_approved_route_on_one_port_injects_on_that_port_alone(bottle):
    ask = {"host": f"{UPSTREAM}:8443", "paths": ["/p8443/"], "methods": [], "reason": "the admin API",
           "inject": [{"header": "x-port-token", "secret": "SUP_TOKEN"}]}
    call = mcp_client(bottle, "request_route", json.dumps(ask))
    request = pending(bottle, f"{UPSTREAM}:8443")
    assert f"route {UPSTREAM}:8443:" in describe(request)
    bottle.inv("approve", request["id"])
    assert result_of(call)["status"] == "approved"
    assert bottle.curl(f"https://{UPSTREAM}:8443/p8443/one")[0].endswith("200")
    [seen] = upstream_records(bottle, port=8443, path="/p8443/one")
    assert [v for k, v in seen["headers"] if k.lower() == "x-port-token"] == [TOKEN]
    assert bottle.curl(f"https://{UPSTREAM}/p8443/one")[0].endswith("403")  # not on the web ports
    assert upstream_records(bottle, port=443, path="/p8443/one") == []
    routes = json.loads(bottle.sh("cat /etc/bottle/current/policy.json").stdout)["routes"]
    assert any(r.get("port") == 8443 and r["paths"] == ["/p8443/"] for r in routes)


def test_an_undeclared_secret_is_refused_without_asking(bottle):
    ask = {"host": UPSTREAM, "paths": ["/x/"], "methods": [], "reason": "r",
           "inject": [{"header": "authorization", "secret": "AWS_SECRET_ACCESS_KEY"}]}
    answer = result_of(mcp_client(bottle, "request_route", json.dumps(ask)))
    assert answer["status"] == "refused" and "AWS_SECRET_ACCESS_KEY" in answer["note"]


@pytest.mark.parametrize("fmt", ["{HOME}", "Bearer {secret} {SUP_TOKEN}"])
def test_a_format_that_could_carry_another_secret_is_refused_without_asking(bottle, fmt):
    """The operator is shown `header <- SECRET`: a `{NAME}` in the format once chose, on
    approval, which secret was really injected."""
    ask = {"host": UPSTREAM, "paths": ["/swap/"], "methods": [], "reason": "r",
           "inject": [{"header": "x-swap", "secret": "SUP_TOKEN", "format": fmt}]}
    answer = result_of(mcp_client(bottle, "request_route", json.dumps(ask)), timeout=TIMEOUT + 60)
    assert answer["status"] == "refused" and "{secret}" in answer["note"], answer


def test_the_dashboard_shows_a_real_pending_request(bottle):
    call = mcp_client(bottle, "request_host", json.dumps({"host": "fifth.upstream.test", "reason": "dashboard"}))
    request = pending(bottle, "fifth.upstream.test")
    try:
        board = Dashboard(lambda *a: "")
        board.update(snapshot(LocalTarget(Context(), state_root())))
        console = Console(record=True, width=200, color_system=None)
        console.print(board.render())
        screen = console.export_text()
        assert request["id"] in screen and "allow fifth.upstream.test" in screen and bottle.slug in screen
        assert board.selected == request["id"]
    finally:
        bottle.inv("reject", request["id"])
        result_of(call)


def test_a_rejected_host_stays_refused(bottle):
    call = mcp_client(bottle, "request_host", json.dumps({"host": THIRD, "reason": "curious"}))
    request = pending(bottle, THIRD)
    bottle.inv("reject", request["id"], "--note", "not for this task")
    answer = result_of(call)
    assert answer["status"] == "rejected" and answer["note"] == "not for this task"
    assert bottle.curl(f"https://{THIRD}/x")[0].endswith("403")


def test_an_undecided_request_times_out_and_changes_nothing(bottle):
    call = mcp_client(bottle, "ask_operator", json.dumps({"question": "anyone there?"}))
    answer = result_of(call, timeout=TIMEOUT + 60)
    assert answer["status"] == "timed-out", answer


def test_a_never_host_is_refused_without_asking(bottle):
    answer = result_of(mcp_client(bottle, "request_host", json.dumps({"host": NEVER, "reason": "please"})))
    assert answer["status"] == "refused" and "never" in answer["note"]
    assert not [r for r in json.loads(bottle.inv("requests", "--json").stdout) if r["state"] == "pending"]
    out = bottle.inv("allow", NEVER, check=False)
    assert out.returncode != 0 and "never" in out.stderr


def test_nothing_on_the_agents_network_can_decide(bottle):
    call = mcp_client(bottle, "request_host", json.dumps({"host": "fourth.upstream.test", "reason": "x"}))
    request = pending(bottle, "fourth.upstream.test")
    try:
        probes = [f"curl -s -o /dev/null -w '%{{http_code}} ' -X {method} http://supervise:9100{path}"
                  for method in ("GET", "POST") for path in ("/decide", "/approve", f"/requests/{request['id']}",
                                                             "/control", "/admin")]
        codes = bottle.sh(" ; ".join(probes)).stdout.split()
        assert codes and all(code in ("404", "405", "421") for code in codes), codes
        assert pending(bottle, "fourth.upstream.test")["id"] == request["id"]  # still pending
    finally:
        bottle.inv("reject", request["id"])
        result_of(call)


def test_the_agent_reads_the_current_policy(bottle):
    view = json.loads(bottle.sh("cat /etc/bottle/current/policy.json").stdout)
    assert UPSTREAM in view["allow"] and view["never"] == [NEVER]
    assert bottle.sh("echo x > /etc/bottle/current/policy.json").returncode != 0  # read-only for it
    answer = result_of(mcp_client(bottle, "get_policy", "{}"))
    assert answer["allow"] == view["allow"]


def test_claude_code_sees_supervise_connected(bottle):
    out = bottle.sh("claude mcp list 2>&1")
    assert "supervise" in out.stdout and "Connected" in out.stdout, out.stdout


def test_supervise_is_hardened_and_has_no_way_out(bottle):
    info = json.loads(docker("inspect", f"bottle-{bottle.slug}-supervise").stdout)[0]
    host = info["HostConfig"]
    assert host["ReadonlyRootfs"] and host["CapDrop"] in (["ALL"], ["all"])
    assert "no-new-privileges" in host["SecurityOpt"] and not info["Config"]["User"].startswith("0")
    # the agent's network only: nothing that leads out
    assert list(info["NetworkSettings"]["Networks"]) == [f"bottle-{bottle.slug}-net-internal"]
