"""`gitgate`: the git gate sidecar — the agent's only way to its git remotes — which holds
the tokens, refreshes a bare mirror per remote from the upstream before serving it, checks
pushes against the manifest's push policy and the firewall's DLP rules, and pushes them
upstream through the firewall. A no-op without git remotes.

Tokens come from the controller's environment at launch and reach only this sidecar, as a
0600 stage file mounted read-only, read by its credential helper: never argv, never
`docker inspect`, never the agent."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from invoke import Collection, task

from ..containers import expect_ready
from ..plan import FIREWALL_ALIAS, FIREWALL_PORT, GITGATE_ALIAS, GITGATE_PORT
from ..selection import current
from ..sidecar import hand_over, secret_values, start_sidecar
from ..stepping import step
from .proxy import proxy

if TYPE_CHECKING:
    from ..selection import Bottle

READY_PROBE = ["/opt/bottle/venv/bin/python", "-m", "gitgate.health"]


def gate_doc(bottle: Bottle) -> dict:
    """gitgate.json: the remotes and their push policies (no secret values)."""
    return {"bottle": bottle.slug, "firewall": f"{FIREWALL_ALIAS}:{FIREWALL_PORT}",
            "remotes": [remote.to_json() for remote in bottle.agent.gated_remotes]}


def secret_names(bottle: Bottle) -> list[str]:
    """The credentials the git gate pushes with."""
    return [remote.secret for remote in bottle.agent.gated_remotes if remote.secret]


def write_config(bottle: Bottle) -> dict:
    doc = gate_doc(bottle)
    secrets = secret_values(bottle, secret_names(bottle), "git.remotes", "git gate")  # raises before anything is written
    bottle.target.write(bottle.stage("gitgate", "gitgate.json"), (json.dumps(doc, indent=2) + "\n").encode())
    bottle.target.write(bottle.stage("gitgate", "secrets.json"), json.dumps(secrets).encode())
    # The gate reaches the upstreams through the firewall, which intercepts TLS with its CA.
    firewall_ca = (bottle.state.get("ca") or {}).get("firewall", "")
    bottle.target.write(bottle.stage("gitgate", "firewall-ca.pem"), firewall_ca.encode())
    hand_over(bottle, "gitgate")
    return doc


@task(pre=[proxy])
@step("gitgate")
def gitgate(c):
    """Start the git gate that holds the git tokens and enforces the push policy (no-op without remotes)."""
    bottle = current(c)
    if not bottle.plan.wants_gitgate:
        return "no git remotes declared: nothing to start"
    internal = bottle.require("net-internal", "net")
    gate_net = bottle.require("net-gate", "net")
    doc = write_config(bottle)
    ca = (bottle.state.get("ca") or {}).get("firewall", "")
    name, started = start_sidecar(
        bottle, "gitgate", "gitgate",
        # On the gate's network (to the firewall) and the agent's (alias gitgate), nothing else.
        network=gate_net, connect=((internal, (GITGATE_ALIAS,)),),
        # The files are read per request (a new token needs no new container); the remotes
        # and push policies are inputs all the same: a change gets a fresh gate and mirrors.
        inputs=ca.encode() + json.dumps(doc, sort_keys=True).encode(),
        tmpfs="/tmp:rw,noexec,nosuid,size=2g",  # the bare mirrors live here
        # One core at most: what an agent makes the gate's git do is not taken from the host's rest.
        limits={"memory": "2g", "cpus": "1", "pids-limit": "256"})
    if not started:
        return f"{name} already running as configured"
    expect_ready(bottle, name, READY_PROBE, f"answering on :{GITGATE_PORT}")
    return f"{name} starting; remotes {', '.join(r['name'] for r in doc['remotes'])}"


ns = Collection(gitgate)
