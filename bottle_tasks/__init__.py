"""bottle: run AI coding agents in locked-down Docker bottles, as invoke tasks.

The package imports nothing itself: `namespace()` imports invoke and the steps when it is
called, so the `bottle` command (`command.py`) owns its process before anything heavy loads,
and a module of the package (the egress routes, the manifest) loads alone.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from invoke import Collection


def namespace() -> Collection:
    """All tasks at the top level (`inv net`, not `inv net.net`), with bottle's defaults."""
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

    topics = (select, secrets, build, net, ca, proxy, allow, egress, gitgate, supervise, agent, launch, inside, logs,
              down, status, plan, init, work, prune)
    root = Collection()
    for topic in topics:
        for name, body in topic.ns.tasks.items():
            root.add_task(body, name)
    root.configure({"bottle": dict(DEFAULTS), "runners": {"local": PromptLocal}})
    return root
