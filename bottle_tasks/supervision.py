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

from . import console, docker, policy_render
from .errors import BottleError
from .sidecar import hand_over
from .sidecars.supervise.rules import PLACEHOLDER, injection_problem

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
        "routes": [{"host": r["host"], **({"port": r["port"]} if "port" in r else {}),
                    "paths": r["paths"], "methods": r["methods"],
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
    from .steps.agent import agent_env  # (the steps import this module)

    bottle.run(docker.exec_as_root(agent, ["/bin/sh", "-c", script, "publish", CURRENT_POLICY], agent_env(bottle),
                                   interactive=True),
               stdin_path=staged, check=False)  # a stopped agent gets it at its next provision


# -- the requests --------------------------------------------------------------------------

def sidecars(target) -> dict[str, str]:
    """Running supervise sidecars on this Docker host: slug -> container name."""
    out = target.run(docker.container_ls(f"{docker.LABEL_ROLE}=supervise"), check=False).stdout
    found = {}
    for line in out.splitlines():
        item = json.loads(line)
        if item.get("State") == "running" and item.get("Slug"):
            found[item["Slug"]] = item["Names"]
    return found


def control(target, container: str, *args: str) -> dict:
    result = target.run(docker.exec_(container, [*CONTROL, *args]), check=False)
    try:
        reply = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BottleError(f"supervise sidecar {container} did not answer",
                          (result.stderr or result.stdout).strip()[-400:] or "is it running? `inv status`") from None
    return reply


def requests(target, silent: list[str] | None = None) -> list[dict]:
    """Every request of every supervised bottle on this host, pending first, newest first. A
    sidecar that does not answer is left out, with a warning (or its name added to `silent`):
    one bottle's sidecar, stuck or stopped, must not keep the operator from the others'."""
    out = []
    for slug, container in sidecars(target).items():
        try:
            reply = control(target, container, "list")
        except BottleError as exc:
            if silent is None:
                console.warning(f"{exc.message}: bottle {slug}'s requests are not shown")
            else:
                silent.append(container)
            continue
        out += [{**r, "bottle": slug} for r in reply.get("requests", [])]
    return sorted(out, key=lambda r: (r["state"] != "pending", -r["created"]))


def find(target, request_id: str) -> dict:
    """The one request with this id. Each sidecar picks its own ids: should two bottles' agents
    hold the same one, the operator's decision must not go to the bottle they did not mean."""
    found = [request for request in requests(target) if request["id"] == request_id]
    if len(found) > 1:
        raise BottleError(f"request id {request_id} names requests of several bottles "
                          f"({', '.join(r['bottle'] for r in found)}): nothing was decided",
                          "both time out by themselves (supervise.timeout); the agents can ask again")
    if not found:
        raise BottleError(f"no request {request_id!r} on {target.describe()}", "`inv requests` lists them")
    return found[0]


PATH_SHOWN = 32  # characters of each path in describe(): `inv requests --json` has them whole


def describe(request: dict) -> str:
    what = request["what"]
    if request["kind"] == "host":
        return f"allow {what['host']}"
    if request["kind"] == "route":
        return describe_route(what)
    return f"question: {what.get('question', '')}"


def describe_route(what: dict) -> str:
    """Host and injections first, paths last and cut short: however many and long the paths
    the agent sends, what is injected from which secret stays on the operator's screen."""
    inject = "; ".join(describe_injection(i) for i in what.get("inject", [])) or "no header injected"
    methods = ",".join(what.get("methods") or []) or "any method"
    paths = what.get("paths") or []
    shown = " ".join(p if len(p) <= PATH_SHOWN else p[:PATH_SHOWN - 1] + "…" for p in paths)
    return f"route {what['host']}: {inject}; {methods}; {len(paths)} path(s): {shown}"


def describe_injection(injection: dict) -> str:
    # The format is shown quoted: it is part of the header's value, and what it may hold is
    # checked (rules.format_problem) so that `secret` is the only secret it can carry.
    fmt = json.dumps(injection.get("format", PLACEHOLDER), ensure_ascii=False)
    return f"{injection.get('header')} <- {injection.get('secret')} as {fmt}"


# -- deciding ------------------------------------------------------------------------------

def apply(c, bottle, request: dict) -> str:
    """Make an approved request true, through the code of `inv allow` / `inv route add`."""
    from .steps.allow import change_policy
    from .steps.egress import apply_route_change, route_add_changes

    what = request["what"]
    if request["kind"] == "host":
        return change_policy(c, what["host"], "allow", bottle)  # refuses a network.never host
    if request["kind"] == "route":
        changes = route_add_changes(bottle, what["host"], what.get("paths"), what.get("methods"),
                                    approved_injections(bottle, request))
        return apply_route_change(bottle, changes, "add")
    return "answered"


def approved_injections(bottle: Bottle, request: dict) -> list[dict]:
    """The injections exactly as describe() showed them, for the egress proxy. Handed over
    as they are, never re-parsed from a `HEADER=format` string (whose `{NAME}` picks the
    secret); a format that could carry another secret is refused here too (fail closed)."""
    out = []
    for injection in request["what"].get("inject", []):
        problem = injection_problem(injection, bottle.agent.secrets)
        if problem:
            raise BottleError(f"request {request['id']} cannot be applied: {problem}",
                              f"nothing was changed; reject it: inv reject {request['id']}")
        out.append({"header": injection["header"].lower(), "secret": injection["secret"],
                    "format": injection.get("format", PLACEHOLDER)})
    return out


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
        if verdict == "approved":  # it timed out (or ended) while the change was being made
            raise BottleError(f"request {request_id}: the change was made ({applied}), but the agent was not "
                              f"told: {reply.get('error')}",
                              "it stays in force; `inv deny HOST` or `inv route rm HOST` takes it back")
        raise BottleError(f"request {request_id}: {reply.get('error')}")
    return f"{request_id} {verdict} ({describe(request)}): {applied}"


def c_target(c):
    """The Docker host this command line acts on (`--on`, or the local engine)."""
    from .connections import target_for
    from .selection import selection

    return target_for(c, selection(c)["remote"])
