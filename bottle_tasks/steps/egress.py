"""`egress`: the egress proxy sidecar — the agent's only proxy when the bottle has routes —
which injects the credentials the agent never holds, and hands every request to the
firewall over the link network. A no-op without routes (the agent then uses the firewall).

Secrets come from the controller's environment at launch and reach only this sidecar, as
a 0600 stage file mounted read-only: never argv, never `docker inspect`, never the agent.
"""
from __future__ import annotations

import contextlib
import json
import re
from typing import TYPE_CHECKING

from invoke import Collection, task

from .. import console, policy_render, supervision
from ..containers import expect_ready, reload_and_confirm
from ..errors import BottleError
from ..manifest import PASSTHROUGH_ROUTE_FIX, allow_entry, passthrough_covering, route_allowed, split_port
from ..plan import EGRESS_ALIAS, EGRESS_PORT, FIREWALL_ALIAS, FIREWALL_PORT
from ..selection import current
from ..sidecar import hand_over, secret_values, start_sidecar
from ..sidecars.egress import routes as routes_mod
from ..stepping import step
from .proxy import proxy, reload_policy, write_policy

if TYPE_CHECKING:
    from ..selection import Bottle

READY_PROBE = ["/opt/bottle/venv/bin/python", "/opt/bottle/firewall/healthcheck.py", str(EGRESS_PORT), "--wait", "5"]


def routes_doc(bottle: Bottle) -> dict:
    """routes.json: the manifest's routes with the live changes of `inv route` applied."""
    return {"bottle": bottle.slug,
            "routes": policy_render.effective_routes(bottle.agent, bottle.state.get("route_changes") or {})}


def secret_names(bottle: Bottle) -> list[str]:
    """The secrets the egress proxy injects (its effective routes')."""
    return [i["secret"] for route in routes_doc(bottle)["routes"] for i in route["inject"]]


def staged_secrets(bottle: Bottle) -> dict[str, str]:
    """secrets.json of the running egress proxy (0600 in the stage dir), or nothing."""
    raw = None if bottle.dry else bottle.target.read(bottle.stage("egress", "secrets.json"))
    try:
        loaded = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(loaded, dict) else {}


def write_config(bottle: Bottle, keep_staged: bool = False) -> dict:
    """routes.json and secrets.json; `keep_staged`: a live change, which may be made from a
    shell without the secrets (the values already in the stage dir stay)."""
    doc = routes_doc(bottle)
    secrets = secret_values(bottle, secret_names(bottle), "egress_proxy", "egress proxy",
                            staged_secrets(bottle) if keep_staged else None)
    bottle.target.write(bottle.stage("egress", "routes.json"), (json.dumps(doc, indent=2) + "\n").encode())
    bottle.target.write(bottle.stage("egress", "secrets.json"), json.dumps(secrets).encode())
    hand_over(bottle, "egress")
    return doc


@task(pre=[proxy])
@step("egress")
def egress(c):
    """Start the egress proxy that injects credentials (no-op without routes)."""
    bottle = current(c)
    if not bottle.plan.wants_egress:
        return "no routes declared: nothing to start"
    internal = bottle.require("net-internal", "net")
    link = bottle.require("net-link", "net")
    doc = write_config(bottle)
    name, started = start_sidecar(
        bottle, "egress", "egress",
        network=link, connect=((internal, (EGRESS_ALIAS,)),),
        # Read at start only: a new CA needs a new container; routes and secrets are reloaded.
        inputs=(bottle.state.get("ca") or {}).get("egress", "").encode(),
        command=["--firewall", f"{FIREWALL_ALIAS}:{FIREWALL_PORT}"],
        limits={"memory": "512m", "pids-limit": "256"})
    if not started:
        reload_and_confirm(bottle, name, "routes-reload", "routes")
        return f"{name} already running as configured; routes re-read"
    expect_ready(bottle, name, READY_PROBE, f"answering on :{EGRESS_PORT}", announces=True)
    return f"{name} starting; {len(doc['routes'])} route(s) for {', '.join(sorted({r['host'] for r in doc['routes']}))}"


def show_route(route: dict) -> str:
    methods = ",".join(route["methods"]) or "any method"
    inject = ", ".join(f"{i['header']} <- {i['secret']}" for i in route["inject"]) or "nothing injected"
    where = route["host"] if route.get("port") is None else f"{route['host']}:{route['port']}"
    return f"{where}  {' '.join(route['paths'])}  {methods}  ({inject})"


@task
@step("routes")
def routes(c):
    """List the egress proxy's routes: host, path prefixes, methods, what is injected (never a value)."""
    bottle = current(c)
    doc = routes_doc(bottle)
    for route in doc["routes"]:
        console.out.print(console.plain(show_route(route)))  # a path may be a supervise approval's
    return f"{len(doc['routes'])} route(s)"


_TEMPLATED = re.compile(r"(?P<before>[^{}]*)\{(?P<secret>[A-Za-z_][A-Za-z0-9_]*)\}(?P<after>[^{}]*)")


def parse_injections(bottle: Bottle, values) -> list[dict]:
    """`HEADER=SECRET_NAME`, or `HEADER=text {SECRET_NAME} text` (e.g. "authorization=Bearer {GITHUB_TOKEN}")."""
    out = []
    for value in values or []:
        header, sep, secret = value.partition("=")
        if not sep:
            raise BottleError(f"--inject {value!r}: write HEADER=SECRET_NAME, e.g. x-api-key=ANTHROPIC_API_KEY")
        fmt = "{secret}"
        if templated := _TEMPLATED.fullmatch(secret):
            secret, fmt = templated["secret"], templated["before"] + "{secret}" + templated["after"]
        if secret not in bottle.agent.secrets:
            raise BottleError(f"--inject {value!r}: {secret} is not one of this agent's secrets "
                              f"({', '.join(bottle.agent.secrets) or 'none'})",
                              f"declare it in {bottle.manifest.path} under agents.{bottle.agent.name}.secrets")
        out.append({"header": header.lower(), "secret": secret, "format": fmt})
    return out


def apply_route_change(bottle: Bottle, changes: dict, verb: str) -> str:
    """Validate, record, re-render both sidecars' files, and have both reload (verdicts awaited).
    On any refusal the previous routes come back, in the files and in both sidecars."""
    name = bottle.state.resource("egress")
    if not bottle.plan.wants_egress or not name:
        raise BottleError(f"bottle {bottle.slug} runs without an egress proxy",
                          "declare egress_proxy.routes in the manifest and launch again; "
                          "the proxy is put in front of the agent at launch, not while it runs")
    before = bottle.state.get("route_changes") or {}
    bottle.state.set("route_changes", changes)
    try:
        doc = reconfigure(bottle, name, verb)
    except BottleError:
        bottle.state.set("route_changes", before)
        with contextlib.suppress(BottleError):
            reconfigure(bottle, name, "rm" if verb == "add" else "add")
        raise
    supervision.publish(bottle)  # in force: what the agent (and supervise) read of the routes
    return f"{name} reloaded; {len(doc['routes'])} route(s)"


def reconfigure(bottle: Bottle, name: str, verb: str) -> dict:
    doc = write_config(bottle, keep_staged=True)  # raises before writing anything when a secret is unknown
    write_policy(bottle)
    firewall = bottle.state.resource("firewall")
    # Firewall first when adding (its DLP exemption must exist before the header is
    # injected), egress proxy first when removing (no injection left when it goes).
    if verb == "add" and firewall:
        reload_policy(bottle, firewall)
    reload_and_confirm(bottle, name, "routes-reload", "routes")
    if verb != "add" and firewall:
        reload_policy(bottle, firewall)
    return doc


def route_add_changes(bottle: Bottle, host: str, paths, methods, injections: list[dict]) -> dict:
    """The bottle's route changes with one route added: validated as the egress proxy would,
    and only for a host the firewall allows (shared by `inv route add` and supervise)."""
    changes = {key: list(value) for key, value in (bottle.state.get("route_changes") or {}).items()}
    name, port = split_port(host)  # `host:8443`: that port alone (the allowlist's grammar)
    spec = {"host": name, **({} if port is None else {"port": port}), "paths": list(paths or ["/"]),
            "methods": [m.upper() for m in methods or []], "inject": injections}
    try:
        routes_mod.parse_route(spec)
    except routes_mod.RouteError as e:
        raise BottleError(f"route add {host}: {e}") from None
    allow = policy_render.effective_allow(bottle.agent, bottle.state.get("policy_changes") or {})
    if not route_allowed(name, port, allow):
        entry = allow_entry(name, port)
        raise BottleError(f"route add {host}: {entry} is not on the allowlist, so the firewall would refuse it",
                          f"allow it first: inv allow {entry}")
    unopened = passthrough_covering(name, bottle.agent.network.passthrough)
    if unopened:
        raise BottleError(f"route add {host}: {name} is covered by network.passthrough ('{unopened}') in "
                          f"{bottle.manifest.path}", PASSTHROUGH_ROUTE_FIX)
    changes["added"] = [*changes.get("added", []), spec]
    return changes


@task(positional=["action", "host"], iterable=["path", "method", "inject"],
      help={"action": "add or rm", "host": "the exact host the route serves (must be allowed); host:port for "
                                     "one port other than the web ports (rm HOST: every route of the host; "
                                     "rm HOST:PORT: those on that port)",
            "path": "a path prefix (repeatable; default /)", "method": "an HTTP method (repeatable; default any)",
            "inject": "HEADER=SECRET_NAME or 'HEADER=Bearer {SECRET_NAME}', a secret the manifest declares "
                      "(repeatable)"})
@step("route")
def route(c, action, host, path=None, method=None, inject=None):
    """Add or remove an egress route on the running proxy, without a restart."""
    bottle = current(c)
    changes = {key: list(value) for key, value in (bottle.state.get("route_changes") or {}).items()}
    if action == "add":
        changes = route_add_changes(bottle, host, path, method, parse_injections(bottle, inject))
    elif action == "rm":
        name, port = split_port(host)
        entry = {name} if port is None else {f"{name}:{port}"}  # a host: all its routes; host:port: that port's
        if not any(policy_render.route_removed(r, entry) for r in routes_doc(bottle)["routes"]):
            raise BottleError(f"route rm {host}: no route for {host}", "`inv routes` lists them")
        changes["added"] = [r for r in changes.get("added", []) if not policy_render.route_removed(r, entry)]
        if any(policy_render.route_removed(r.to_json(), entry) for r in bottle.agent.routes):
            changes["removed"] = sorted({*changes.get("removed", []), *entry})
    else:
        raise BottleError(f"route {action!r}: say `route add HOST ...` or `route rm HOST`")
    return apply_route_change(bottle, changes, action)


ns = Collection(egress, routes, route)
