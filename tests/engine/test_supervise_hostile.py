"""Supervise against a hostile agent, in a real bottle: what the operator approves is what
is applied, whatever the agent does around the approval. Each test checks what reached
the test upstream, or the bottle's state, never only what the agent was told."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from helpers import docker
from invoke import Context
from test_bottle_e2e import UPSTREAM, module_bottle, upstream_records
from test_supervise import mcp_client, result_of

from bottle_tasks.dashboard import Dashboard, snapshot
from bottle_tasks.state import state_root
from bottle_tasks.supervision import describe
from bottle_tasks.target import LocalTarget

pytestmark = pytest.mark.usefixtures("engine")

DOCS = "docs.upstream.test"   # what the agent asks for first: the operator means to approve it
EVIL = "evil.upstream.test"   # what it asks for meanwhile: nobody means to approve it
TIMEOUT = 300                 # no request times out while a test runs
TOKEN = "hostile-test-token-value-0123456789"
BODY = f"""    prompt: supervise hostile test bottle
    secrets: [SUP_TOKEN]
    resources: {{memory: 2g, cpus: 1, pids: 512}}
    network:
      allow: [{UPSTREAM}]
      allowed_cidrs: []
    egress_proxy:
      routes:
        - {{host: {UPSTREAM}, paths: [/routed/], inject: [{{header: x-sup-token, secret: SUP_TOKEN}}]}}
    supervise: {{enabled: true, timeout: {TIMEOUT}}}
"""

# The agent: asks for DOCS, then (on "next") for EVIL, then (on "cancel") stops waiting for
# DOCS, so that the request the operator has selected ends under the operator's keys.
SWAP = """
import asyncio, json, sys
from mcp import Client

async def line():
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

async def main():
    async with Client("http://supervise:9100/mcp") as client:
        docs = asyncio.ensure_future(client.call_tool("request_host", {"host": sys.argv[1], "reason": "the docs"}))
        await line()
        evil = asyncio.ensure_future(client.call_tool("request_host", {"host": sys.argv[2], "reason": "more docs"}))
        await line()
        docs.cancel()
        print(json.dumps((await evil).structured_content), flush=True)

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def bottle(tmp_path_factory, test_ca, trust_bundle):
    yield from module_bottle(tmp_path_factory, test_ca, trust_bundle, prefix="suph", body=BODY,
                             env={"SUP_TOKEN": TOKEN}, aliases=(UPSTREAM, DOCS, EVIL))


def requests_of(bottle) -> list[dict]:
    return [r for r in json.loads(bottle.inv("requests", "--json").stdout) if r["bottle"] == bottle.slug]


def wait_for(bottle, host: str, state: str = "pending", timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in requests_of(bottle) if r["state"] == state and r["what"].get("host") == host]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no {state} request for {host}")


def reject_pending(bottle) -> None:
    for request in requests_of(bottle):
        if request["state"] == "pending":
            bottle.inv("reject", request["id"], check=False)


def our_snapshot(bottle):
    """The dashboard's snapshot of the real engine, narrowed to this test's bottle (other
    bottles on the engine may have requests of their own)."""
    snap = snapshot(LocalTarget(Context(), state_root()))
    snap.requests = [r for r in snap.requests if r["bottle"] == bottle.slug]
    return snap


def allowed_in_state(bottle) -> list[str]:
    state = json.loads((bottle.state_home / "bottle" / bottle.slug / "state.json").read_text())
    return (state.get("policy_changes") or {}).get("allow", [])


def test_a_request_that_ends_under_the_operators_keys_hands_them_no_other(bottle):
    """The operator reads the selected request and presses `a`; the agent ends that request
    just before (it cancels its call) with another one waiting. The key must not approve the
    other one, which the operator was not looking at."""
    agent = subprocess.Popen(
        ["docker", "run", "--rm", "-i", "--label", "bottle.test=1", "--network", f"bottle-{bottle.slug}-net-internal",
         "--entrypoint", "/opt/bottle/venv/bin/python",
         json.loads(docker("inspect", f"bottle-{bottle.slug}-supervise").stdout)[0]["Config"]["Image"],
         "-c", SWAP, DOCS, EVIL], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert agent.stdin
    try:
        docs = wait_for(bottle, DOCS)
        board = Dashboard(lambda rid, verdict, note: bottle.inv("approve" if verdict == "approved" else "reject",
                                                                rid).stdout)
        board.update(our_snapshot(bottle))
        assert board.selected == docs["id"]  # what the operator is reading
        agent.stdin.write("next\n")
        agent.stdin.flush()
        wait_for(bottle, EVIL)
        board.update(our_snapshot(bottle))
        assert board.selected == docs["id"]
        agent.stdin.write("cancel\n")
        agent.stdin.flush()
        wait_for(bottle, DOCS, state="timed-out")
        board.update(our_snapshot(bottle))
        board.key("a")  # meant for the docs request, which the operator saw selected
        assert EVIL not in allowed_in_state(bottle)
        assert bottle.curl(f"https://{EVIL}/after-the-swap")[0].endswith("403")
        assert not upstream_records(bottle, path="/after-the-swap")
    finally:
        reject_pending(bottle)
        agent.kill()
        agent.communicate(timeout=60)


def test_an_approved_route_brings_back_no_route_the_operator_removed(bottle):
    """The operator took the manifest's credential route away (`inv route rm`); the agent asks
    for a route on the same host that injects nothing. Approving it adds that route alone: it
    once also put the removed route, and its credential, back."""
    bottle.inv("route", "rm", UPSTREAM)
    bottle.curl(f"https://{UPSTREAM}/routed/before-the-ask")
    [seen] = upstream_records(bottle, path="/routed/before-the-ask")
    assert TOKEN not in json.dumps(seen)  # taken away
    ask = {"host": UPSTREAM, "paths": ["/public/"], "methods": ["GET"], "reason": "the public pages"}
    call = mcp_client(bottle, "request_route", json.dumps(ask))
    try:
        request = wait_for(bottle, UPSTREAM)
        assert "no header injected" in describe(request)  # what the operator is shown
        bottle.inv("approve", request["id"])
    finally:
        reject_pending(bottle)
        result_of(call)
    bottle.curl(f"https://{UPSTREAM}/public/after-approval")
    bottle.curl(f"https://{UPSTREAM}/routed/after-approval")
    [seen] = upstream_records(bottle, path="/public/after-approval")
    assert TOKEN not in json.dumps(seen) and not [k for k, _ in seen["headers"] if k.lower() == "x-sup-token"]
    assert not upstream_records(bottle, path="/routed/after-approval")  # no route serves it now


FLOOD = """
import asyncio, json, sys
from mcp import Client

async def main():
    async with Client("http://supervise:9100/mcp") as client:
        answers = [(await client.call_tool("request_host", {"host": "not a host!", "reason": "noise"})).structured_content
                   for _ in range(int(sys.argv[1]))]
        print(json.dumps(sorted({a["status"] for a in answers})))

asyncio.run(main())
"""


def test_the_agents_refusals_leave_the_operators_decisions_on_record(bottle):
    """A refusal costs the agent nothing: a flood of them must not take the operator's approval
    off the sidecar's record (`inv requests`)."""
    from bottle_tasks.sidecars.supervise.board import KEPT_DECIDED

    call = mcp_client(bottle, "request_host", json.dumps({"host": DOCS, "reason": "the docs"}))
    request = wait_for(bottle, DOCS)
    bottle.inv("approve", request["id"])
    assert result_of(call)["status"] == "approved"
    image = json.loads(docker("inspect", f"bottle-{bottle.slug}-supervise").stdout)[0]["Config"]["Image"]
    flood = docker("run", "--rm", "--label", "bottle.test=1", "--network", f"bottle-{bottle.slug}-net-internal",
                   "--entrypoint", "/opt/bottle/venv/bin/python", image, "-c", FLOOD, str(2 * KEPT_DECIDED))
    assert json.loads(flood.stdout.strip().splitlines()[-1]) == ["refused"]
    kept = {r["id"]: r["state"] for r in requests_of(bottle)}
    assert kept.get(request["id"]) == "approved"


def cpu_seconds(container: str) -> float:
    """CPU time the container's processes have used since it started (cgroup v1 or v2)."""
    cid = docker("inspect", "--format", "{{.Id}}", container).stdout.strip()
    v1 = Path("/sys/fs/cgroup/cpuacct/docker") / cid / "cpuacct.usage"
    if v1.exists():
        return int(v1.read_text()) / 1e9
    stat = next(Path("/sys/fs/cgroup").glob(f"**/*{cid}*/cpu.stat")).read_text()
    return int(stat.split("usage_usec ", 1)[1].split()[0]) / 1e6


def test_a_host_name_of_megabytes_costs_the_sidecar_nothing_and_is_quoted_short(bottle):
    """IDNA encoding is quadratic in a label's length, and the sidecar encoded the agent's host
    before it checked its length: 20,000 CJK characters kept its one event loop busy for
    about 35 s (no `inv requests` of any bottle answered meanwhile), and the refusal quoted the
    whole host back into the board, the log and every `list`."""
    sidecar = f"bottle-{bottle.slug}-supervise"
    host = "".join(chr(0x4E00 + i % 8000) for i in range(20000))
    before = cpu_seconds(sidecar)
    answer = result_of(mcp_client(bottle, "request_host", json.dumps({"host": host, "reason": "a long one"})),
                       timeout=120)
    used = cpu_seconds(sidecar) - before
    assert used < 5, f"the sidecar spent {used:.1f} CPU-seconds on one request"
    assert answer["status"] == "refused" and "longer than 320 characters" in answer["note"], answer
    assert len(answer["note"]) <= 300, len(answer["note"])
    listed = [r for r in requests_of(bottle) if r["state"] == "refused" and "longer than" in r["note"]]
    assert listed and all(len(r["note"]) <= 300 and len(r["what"]["host"]) <= 200 for r in listed), listed
    log = docker("logs", sidecar).stdout
    assert max(len(line) for line in log.splitlines()) < 4000


INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "flood", "version": "1"}}})


def test_sessions_past_the_sidecars_bound_are_refused_and_it_serves_on(bottle):
    """Each bare `initialize` kept a session of 41 KB for 30 minutes, up to the SDK's 10,000:
    the 256 MiB sidecar died in under a minute, and nothing restarted it."""
    opened = bottle.sh(
        "for i in $(seq 40); do curl -s -o /dev/null -D - --max-time 10 -X POST http://supervise:9100/mcp "
        "-H 'content-type: application/json' -H 'accept: application/json, text/event-stream' "
        f"-d '{INITIALIZE}' | tr -d '\\r' "
        "| awk 'NR==1{print \"code\", $2} tolower($1)==\"mcp-session-id:\"{print \"id\", $2}'; done").stdout.split("\n")
    codes = [line.split()[1] for line in opened if line.startswith("code ")]
    sessions = [line.split()[1] for line in opened if line.startswith("id ")]
    assert len(codes) == 40 and codes.count("503") >= 8 and len(sessions) <= 32, codes
    assert docker("inspect", "--format", "{{.State.Running}}", f"bottle-{bottle.slug}-supervise").stdout.strip() == "true"
    for session in sessions:  # the agent ends its own sessions: room for the next
        bottle.sh(f"curl -s --max-time 10 -X DELETE http://supervise:9100/mcp -H 'mcp-session-id: {session}'")
    asking = mcp_client(bottle, "request_host", json.dumps({"host": "after.example", "reason": "served again"}))
    wait_for(bottle, "after.example")  # it reached the operator: the sidecar serves on
    reject_pending(bottle)
    assert result_of(asking)["status"] == "rejected"
