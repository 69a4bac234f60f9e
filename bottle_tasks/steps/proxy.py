"""`proxy`: the firewall sidecar — the only container of a bottle with a route out — and
the rendering of its policy (`write_policy`, `reload_policy`), which `allow`/`deny`,
`route` and supervise use too."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from invoke import Collection, task

from .. import policy_render
from ..containers import expect_ready, reload_and_confirm
from ..errors import BottleError
from ..plan import FIREWALL_ALIAS, FIREWALL_PORT
from ..selection import current
from ..sidecar import hand_over, start_sidecar
from ..sidecars.firewall import policy as firewall_policy
from ..stepping import step
from .build import build
from .ca import ca
from .net import net

if TYPE_CHECKING:
    from ..selection import Bottle

# The image's own health check: a request answered by the proxy's event loop, not just a TCP accept.
READY_PROBE = ["/opt/bottle/venv/bin/python", "/opt/bottle/firewall/healthcheck.py", "--wait", "5"]


def render_policy(bottle: Bottle, changes: dict) -> dict:
    """The policy the firewall will get, checked by the firewall's own parser first,
    so a policy it would refuse fails here, before anything starts or reloads."""
    cidrs = bottle.state.get("cidr") or {}
    routes = policy_render.effective_routes(bottle.agent, bottle.state.get("route_changes") or {})
    rendered = policy_render.render(bottle.slug, bottle.agent, cidrs.get("net-internal"), changes, cidrs.get("net-link"),
                             routes, gate_cidr=cidrs.get("net-gate") if bottle.plan.wants_gitgate else None)
    try:
        firewall_policy.parse(rendered)
    except firewall_policy.PolicyError as exc:
        raise BottleError(f"{bottle.manifest.path}: agents.{bottle.agent.name}.network: "
                          "the firewall would refuse this policy", "\n".join(exc.problems)) from None
    return rendered


def write_policy(bottle: Bottle) -> dict:
    """Render policy.json into the stage dir (atomic rename: the running firewall
    sees either the old file or the new one, never half of it). The egress proxy gets a
    copy of its own: it relays the tunnels this policy accepts to the firewall unopened."""
    rendered = render_policy(bottle, bottle.state.get("policy_changes") or {})
    text = (json.dumps(rendered, indent=2) + "\n").encode()
    for role in policy_readers(bottle):
        bottle.target.write(bottle.stage(role, "policy.json"), text)
        hand_over(bottle, role)
    return rendered


def policy_readers(bottle: Bottle) -> tuple[str, ...]:
    """The firewall; the egress proxy (it relays what the policy allows); the git gate (it
    scans pushes with the policy's DLP rules)."""
    return ("firewall", *(("egress",) if bottle.plan.wants_egress else ()),
            *(("gitgate",) if bottle.plan.wants_gitgate else ()))


def extra_ca(bottle: Bottle) -> bytes:
    path = bottle.manifest.trust.extra_ca_bundle
    return Path(path).read_bytes() if path else b""


@task(pre=[build, net, ca])
@step("proxy")
def proxy(c):
    """Start the firewall sidecar (allowlist, SSRF guard, DLP, audit log)."""
    bottle = current(c)
    # The firewall's inside: the agent's network, or the link to the egress proxy.
    inside = bottle.require(bottle.plan.firewall_network, "net")
    egress_net = bottle.require("net-egress", "net")
    # With git remotes the firewall also joins the gate's network, the only way the gate reaches it.
    gate = ((bottle.require("net-gate", "net"), (FIREWALL_ALIAS,)),) if bottle.plan.wants_gitgate else ()
    rendered = write_policy(bottle)
    bundle = extra_ca(bottle)
    bottle.target.write(bottle.stage("firewall", "extra-ca.pem"), bundle)
    hand_over(bottle)  # extra-ca.pem too
    name, started = start_sidecar(
        bottle, "firewall", "proxy",
        network=egress_net, connect=((inside, (FIREWALL_ALIAS,)), *gate),
        # Read at start only: a new CA or bundle needs a new container, not a reload.
        inputs=(bottle.state.get("ca") or {}).get("firewall", "").encode() + bundle,
        limits={"memory": "512m", "pids-limit": "256"})
    if not started:
        reload_policy(bottle, name)
        return f"{name} already running as configured; policy re-read"
    expect_ready(bottle, name, READY_PROBE, f"answering on :{FIREWALL_PORT}", announces=True)
    return f"{name} starting; allows {', '.join(rendered['allow']) or 'nothing'}"


def reload_policy(bottle: Bottle, name: str) -> None:
    """SIGHUP the firewall and wait for its verdict on the new policy file."""
    reload_and_confirm(bottle, name, "policy-reload", "policy")


ns = Collection(proxy)
