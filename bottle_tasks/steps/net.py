"""`net`: the bottle's networks (two, or three with an egress proxy), and their CIDRs."""
from __future__ import annotations

import contextlib
import importlib
import threading
from typing import TYPE_CHECKING

from invoke import Collection, task

from .. import docker
from ..names import claim_name
from ..selection import current
from ..stepping import step
from ..undo import creating, record

if TYPE_CHECKING:
    from ..selection import Bottle


def ensure_networks(bottle: Bottle, networks) -> dict[str, str]:
    """The bottle's networks (role -> name), the missing ones created side by side.

    Each is recorded before its creation (see undo.record); one the engine refused is
    forgotten again, and one a Ctrl-C cut short is waited for by the rollback (undo.creating)."""
    names, missing = {}, []
    for role, internal in networks:
        names[role], exists = claim_name(bottle, "network", role)
        if exists:
            bottle.state.adopt(role, names[role])  # ours, though a killed run lost it
        else:
            record(bottle, "network", names[role], role, "net")
            missing.append((role, internal))
    if not missing:
        return names
    prefetch_for_the_next_steps(bottle)
    with creating(bottle, "network", {names[role]: role for role, _ in missing}):
        bottle.target.run_together([docker.network_create(names[role], bottle.plan.labels(role), internal)
                                    for role, internal in missing])
    return names


def prefetch_for_the_next_steps(bottle: Bottle) -> None:
    """In a thread, while this process only waits for the engine to create the networks: import
    what the `ca` step (next) needs (cryptography takes ~25 ms to import, on the launch's path
    otherwise), and ask the local engine's API version, which the first container's create needs
    (5-7 ms). Only a warm-up: the steps run as before, and find these done."""
    threading.Thread(target=_prefetch_quietly, args=("bottle_tasks.pki", bottle.target.engine()),
                     daemon=True).start()


def _prefetch_quietly(module: str, engine) -> None:
    with contextlib.suppress(Exception):  # the step's own import reports any failure, not this thread
        importlib.import_module(module)
    if engine is not None:
        with contextlib.suppress(Exception):  # the create asks again, and says what went wrong
            engine.api_version()


def subnets(bottle: Bottle, names: dict[str, str]) -> dict[str, str]:
    if bottle.dry:
        return {role: "<cidr>" for role in names}
    out = bottle.run(docker.network_inspect_many(list(names.values()), docker.NAME_AND_SUBNETS)).stdout
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
    names = ensure_networks(bottle, networks)
    cidrs = subnets(bottle, names)
    bottle.state.set("cidr", cidrs)
    return ", ".join(f"{names[role]} ({cidrs[role]})" for role, _ in networks)


ns = Collection(net)
