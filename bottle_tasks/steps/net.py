"""`net`: the bottle's two networks, and the internal CIDR the firewall lets through."""
from invoke import Collection, task

from .. import docker
from ..context import current
from ..resources import claim_name
from ..stepping import step
from ..undo import record

# The agent's network has no route out (--internal); only sidecars join the egress one.
NETWORKS = (("net-internal", True), ("net-egress", False))


def ensure_network(bottle, role: str, internal: bool) -> str:
    name, exists = claim_name(bottle, "network", role)
    if not exists:
        bottle.run(docker.network_create(name, bottle.plan.labels(role), internal=internal))
        record(bottle, "network", name, role, "net")
    return name


def subnet(bottle, network: str) -> str:
    if bottle.dry:
        return "<cidr>"
    fmt = "{{range .IPAM.Config}}{{.Subnet}} {{end}}"
    return bottle.run(docker.network_inspect(network, fmt)).stdout.split()[0]


@task
@step("net")
def net(c):
    """Create the bottle's internal (--internal) and egress networks."""
    bottle = current(c)
    names = {role: ensure_network(bottle, role, internal) for role, internal in NETWORKS}
    cidrs = {role: subnet(bottle, name) for role, name in names.items()}
    bottle.state.set("cidr", cidrs)
    return ", ".join(f"{names[role]} ({cidrs[role]})" for role, _ in NETWORKS)


ns = Collection(net)
