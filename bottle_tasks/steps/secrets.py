"""`secrets`: the first step of a launch. Every secret the bottle's sidecars will hold for the
agent (the egress proxy's injected headers, the git gate's credentials) must be set in this
shell; a launch missing one fails here, before it builds an image or creates anything, not
after the build with a firewall already running (the egress and git gate steps check again,
for when they run alone)."""
from __future__ import annotations

from invoke import Collection, task

from ..selection import current
from ..sidecar import secret_values
from ..stepping import step
from . import egress, gitgate


@task
@step("secrets")
def secrets(c):
    """Check that this shell holds every secret the bottle's sidecars need (names only, never values)."""
    bottle = current(c)
    needed: dict[tuple[str, str], list[str]] = {}  # (manifest field, sidecar) -> secret names
    if bottle.plan.wants_egress:
        needed["egress_proxy", "egress proxy"] = egress.secret_names(bottle)
    if bottle.plan.wants_gitgate:
        needed["git.remotes", "git gate"] = gitgate.secret_names(bottle)
    for (field, sidecar), names in needed.items():
        secret_values(bottle, names, field, sidecar)  # raises, naming the variable and the field
    listed = ", ".join(sorted({name for names in needed.values() for name in names}))
    if not listed:
        return "none needed"
    return f"{listed}: not checked (dry run)" if bottle.dry else f"{listed} set in this shell"


ns = Collection(secrets)
