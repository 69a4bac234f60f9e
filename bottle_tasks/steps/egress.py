"""`egress`: the egress proxy sidecar — the agent's only proxy when the bottle has routes —
which injects the credentials the agent never holds, and hands every request to the
firewall over the link network. A no-op without routes (the agent then uses the firewall).

Secrets come from the controller's environment at launch and reach only this sidecar, as
a 0600 stage file mounted read-only: never argv, never `docker inspect`, never the agent.
"""
import json
import os

from invoke import Collection, task

from ..containers import expect_ready, reload_and_confirm, start
from ..context import current
from ..errors import BottleError
from ..plan import EGRESS_ALIAS, EGRESS_PORT, FIREWALL_ALIAS, FIREWALL_PORT
from ..stepping import step
from .proxy import CONFIG_DIR, hand_over, proxy, sidecar_user

READY_PROBE = ["/opt/bottle/venv/bin/python", "/opt/bottle/firewall/healthcheck.py", str(EGRESS_PORT)]


def route_json(route) -> dict:
    return {"host": route.host, "paths": list(route.paths), "methods": list(route.methods),
            "inject": [{"header": i.header, "secret": i.secret, "format": i.format} for i in route.inject]}


def routes_doc(bottle) -> dict:
    """routes.json: the manifest's routes with the live changes of `inv route` applied."""
    routes = [route_json(route) for route in bottle.agent.routes]
    changed = bottle.state.get("route_changes") or {}
    removed = set(changed.get("removed", []))
    routes = [r for r in routes if r["host"] not in removed] + list(changed.get("added", []))
    return {"bottle": bottle.slug, "routes": routes}


def secret_values(bottle, doc: dict) -> dict[str, str]:
    """The values of the secrets the routes inject, from the controller's environment."""
    names = sorted({i["secret"] for route in doc["routes"] for i in route["inject"]})
    missing = [name for name in names if not os.environ.get(name)]
    if missing and not bottle.dry:
        raise BottleError(
            f"{bottle.manifest.path}: agents.{bottle.agent.name}.egress_proxy: the secret(s) "
            f"{', '.join(missing)} are not set in this shell",
            f"export {missing[0]}=... (the value stays on this machine and in the egress proxy; "
            "the agent only ever sees a placeholder), then launch again")
    return {name: os.environ.get(name, "") for name in names}


def write_config(bottle) -> dict:
    doc = routes_doc(bottle)
    secrets = secret_values(bottle, doc)
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
    uid, gid = sidecar_user(bottle)
    name, started = start(
        bottle, "egress", "egress", bottle.plan.images["egress"].tag,
        network=link, connect=((internal, (EGRESS_ALIAS,)),),
        # Read at start only: a new CA needs a new container; routes and secrets are reloaded.
        inputs=(bottle.state.get("ca") or {}).get("egress", "").encode(),
        user=f"{uid}:{gid}", read_only=True, tmpfs=["/tmp"],
        mounts=[f"{bottle.stage('egress')}:{CONFIG_DIR}:ro"],
        command=["--firewall", f"{FIREWALL_ALIAS}:{FIREWALL_PORT}"],
        limits={"memory": "512m", "pids-limit": "256"})
    if not started:
        reload_and_confirm(bottle, name, "routes-reload", "routes")
        return f"{name} already running as configured; routes re-read"
    expect_ready(bottle, name, READY_PROBE, f"answering on :{EGRESS_PORT}")
    return f"{name} started; {len(doc['routes'])} route(s) for {', '.join(sorted({r['host'] for r in doc['routes']}))}"


ns = Collection(egress)
