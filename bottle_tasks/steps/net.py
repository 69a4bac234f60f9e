"""`net`: the bottle's networks (two, or three with an egress proxy), and their CIDRs."""
from __future__ import annotations

from typing import TYPE_CHECKING

from invoke import Collection, task

from .. import docker
from ..errors import BottleError
from ..names import appears, claim_name
from ..selection import current
from ..stepping import step
from ..undo import record, unrecord

if TYPE_CHECKING:
    from ..selection import Bottle

def ensure_network(bottle: Bottle, role: str, internal: bool) -> str:
    """One at a time, on purpose: a Ctrl-C must find each network either recorded and made,
    or forgotten; creations in flight side by side could finish after the rollback."""
    name, exists = claim_name(bottle, "network", role)
    if not exists:
        record(bottle, "network", name, role, "net")  # first: see undo.record
        try:
            bottle.run(docker.network_create(name, bottle.plan.labels(role), internal=internal))
        except BottleError as exc:
            # Forget it only when it really is not there as ours (an interrupted CLI may
            # return before the engine has made it).
            if bottle.dry or not appears(bottle.target, "network", name, (bottle.slug, role),
                                         wait=2.0 if exc.interrupted else 0.0):
                unrecord(bottle, "network", name)
            raise
    return name


def subnets(bottle: Bottle, names: dict[str, str]) -> dict[str, str]:
    if bottle.dry:
        return {role: "<cidr>" for role in names}
    fmt = "{{.Name}} {{range .IPAM.Config}}{{.Subnet}} {{end}}"
    out = bottle.run(docker.network_inspect_many(list(names.values()), fmt)).stdout
    by_name = {line.split()[0]: line.split()[1] for line in out.splitlines() if len(line.split()) > 1}
    return {role: by_name[name] for role, name in names.items()}


@task
@step("net")
def net(c):
    """Create the bottle's networks: internal (--internal, the agent's), egress (the way out)
    and, with an egress proxy, the link (--internal) between it and the firewall."""
    bottle = current(c)
    # The agent's network and the link have no route out; only the firewall joins net-egress.
    networks = bottle.plan.networks
    names = {role: ensure_network(bottle, role, internal) for role, internal in networks}
    cidrs = subnets(bottle, names)
    bottle.state.set("cidr", cidrs)
    return ", ".join(f"{names[role]} ({cidrs[role]})" for role, _ in networks)


ns = Collection(net)
