"""bottle: run AI coding agents in locked-down Docker bottles, as invoke tasks."""
from invoke import Collection

from .selection import DEFAULTS
from .steps import (
    agent,
    allow,
    build,
    ca,
    down,
    egress,
    gitgate,
    init,
    inside,
    launch,
    logs,
    net,
    plan,
    proxy,
    prune,
    secrets,
    select,
    status,
    supervise,
    work,
)
from .target import PromptLocal

TOPICS = (select, secrets, build, net, ca, proxy, allow, egress, gitgate, supervise, agent, launch, inside, logs, down, status,
          plan, init, work, prune)


def namespace() -> Collection:
    """All tasks at the top level (`inv net`, not `inv net.net`), with bottle's defaults."""
    root = Collection()
    for topic in TOPICS:
        for name, body in topic.ns.tasks.items():
            root.add_task(body, name)
    root.configure({"bottle": dict(DEFAULTS), "runners": {"local": PromptLocal}})
    return root
