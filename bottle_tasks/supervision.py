"""The operator's side of supervise: the bottle's current policy as the agent may read it,
the requests of every supervised bottle, and applying a decision.

The controller reaches a supervise sidecar only with `docker exec` (its control socket),
so all of this works the same against an `--on` host and nothing on the agent's network
can decide anything. An approval goes through exactly the code of `inv allow` /
`inv route add` (validated, the reload verdict awaited, kept in the bottle's state); only
when that succeeded is the agent told "approved".
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from . import docker, policy_render
from .errors import BottleError
from .sidecar import hand_over

if TYPE_CHECKING:
    from .selection import Bottle

CURRENT_POLICY = "/etc/bottle/current/policy.json"
CONTROL = ["/opt/bottle/venv/bin/python", "-m", "supervise.control"]


# -- what the agent may read ---------------------------------------------------------------

def current_view(bottle: Bottle) -> dict:
    """The bottle's policy now, without a secret: what `get_policy` returns and the agent
    can read at CURRENT_POLICY."""
    agent = bottle.agent
    changes = bottle.state.get("policy_changes") or {}
    allow = policy_render.effective_allow(agent, changes)
    routes = policy_render.effective_routes(agent, bottle.state.get("route_changes") or {})
    return {
        "bottle": bottle.slug,
        "allow": allow,
        "passthrough": [h for h in agent.network.passthrough if policy_render.allowed_on_some_port(h, allow)],
        "never": list(agent.network.never),
        # header names and secret names only: the values live in the egress proxy
        "routes": [{"host": r["host"], "paths": r["paths"], "methods": r["methods"],
                    "inject": [{"header": i["header"], "secret": i["secret"]} for i in r["inject"]]}
                   for r in routes],
        "dlp": {"action": agent.network.dlp.action, "hosts": dict(agent.network.dlp.hosts)},
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def view_bytes(bottle: Bottle) -> bytes:
    return (json.dumps(current_view(bottle), indent=2) + "\n").encode()


def publish(bottle: Bottle) -> None:
    """After a live change (allow, deny, route, an approval) is in force: the supervise
    sidecar's copy (its stage dir) and the agent's read-only copy (root-owned, written through
    `docker exec` as root). At launch both get it with their own config instead."""
    if bottle.agent is None:
        return
    data = view_bytes(bottle)
    if bottle.plan.wants_supervise:
        bottle.target.write(bottle.stage("supervise", "policy.json"), data)
        hand_over(bottle, "supervise")
    agent = bottle.state.resource("agent")
    if not agent or bottle.dry:
        return
    staged = bottle.stage("current-policy.json")
    bottle.target.write(staged, data)
    script = ('umask 022; mkdir -p "${1%/*}" && cat > "$1.new" && mv "$1.new" "$1"')
    bottle.run(docker.exec_(agent, ["sh", "-c", script, "publish", CURRENT_POLICY], interactive=True, user="0"),
               stdin_path=staged, check=False)  # a stopped agent gets it at its next provision


# -- the requests --------------------------------------------------------------------------

def sidecars(target) -> dict[str, str]:
    """Running supervise sidecars on this Docker host: slug -> container name."""
    out = target.run(docker.container_ls(f"{docker.LABEL_ROLE}=supervise"), check=False).stdout
    found = {}
    for line in out.splitlines():
        item = json.loads(line)
        labels = dict(kv.split("=", 1) for kv in item.get("Labels", "").split(",") if "=" in kv)
        if item.get("State") == "running" and labels.get(docker.LABEL_SLUG):
            found[labels[docker.LABEL_SLUG]] = item["Names"]
    return found


def control(target, container: str, *args: str) -> dict:
    result = target.run(docker.exec_(container, [*CONTROL, *args]), check=False)
    try:
        reply = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BottleError(f"supervise sidecar {container} did not answer",
                          (result.stderr or result.stdout).strip()[-400:] or "is it running? `inv status`") from None
    return reply


def requests(target) -> list[dict]:
    """Every request of every supervised bottle on this host, pending first, newest first."""
    out = []
    for slug, container in sidecars(target).items():
        reply = control(target, container, "list")
        out += [{**r, "bottle": slug} for r in reply.get("requests", [])]
    return sorted(out, key=lambda r: (r["state"] != "pending", -r["created"]))


def find(target, request_id: str) -> dict:
    for request in requests(target):
        if request["id"] == request_id:
            return request
    raise BottleError(f"no request {request_id!r} on {target.describe()}", "`inv requests` lists them")


def describe(request: dict) -> str:
    what = request["what"]
    if request["kind"] == "host":
        return f"allow {what['host']}"
    if request["kind"] == "route":
        inject = ", ".join(f"{i.get('header')} <- {i.get('secret')}" for i in what.get("inject", []))
        methods = ",".join(what.get("methods") or []) or "any method"
        return f"route {what['host']} {' '.join(what.get('paths', []))} {methods}" + (f" ({inject})" if inject else "")
    return f"question: {what.get('question', '')}"


# -- deciding ------------------------------------------------------------------------------

def apply(c, bottle, request: dict) -> str:
    """Make an approved request true, through the code of `inv allow` / `inv route add`."""
    from .steps.allow import change_policy
    from .steps.egress import apply_route_change, parse_injections, route_add_changes

    what = request["what"]
    if request["kind"] == "host":
        return change_policy(c, what["host"], "allow", bottle)  # refuses a network.never host
    if request["kind"] == "route":
        inject = [f"{i['header']}={i.get('format', '{secret}').replace('{secret}', '{' + i['secret'] + '}')}"
                  for i in what.get("inject", [])]
        changes = route_add_changes(bottle, what["host"], what.get("paths"), what.get("methods"),
                                    parse_injections(bottle, inject))
        return apply_route_change(bottle, changes, "add")
    return "answered"


def decide(c, request_id: str, verdict: str, note: str, bottle_for) -> str:
    """Approve (apply, then tell the agent) or reject one request. `bottle_for(slug)` opens
    the request's bottle as `inv use` would."""
    request = find(c_target(c), request_id)
    if request["state"] != "pending":
        raise BottleError(f"request {request_id} is already {request['state']}")
    bottle = bottle_for(request["bottle"])
    applied = apply(c, bottle, request) if verdict == "approved" else "nothing changed"
    container = bottle.state.resource("supervise")
    reply = control(bottle.target, container, "decide", request_id, verdict, note)
    if not reply.get("ok"):
        raise BottleError(f"request {request_id}: {reply.get('error')}")
    return f"{request_id} {verdict} ({describe(request)}): {applied}"


def c_target(c):
    """The Docker host this command line acts on (`--on`, or the local engine)."""
    from .connections import target_for
    from .selection import selection

    return target_for(c, selection(c)["remote"])
