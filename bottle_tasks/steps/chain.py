"""Optional sidecars of the chain. Each is a no-op when the bottle does not declare it;
a bottle that declares one that is not built yet is refused plainly, never launched
without it."""
from invoke import Collection, task

from ..context import current
from ..errors import BottleError
from ..stepping import step
from .net import net


def not_built(bottle, field: str, sidecar: str, fix: str):
    raise BottleError(f"{bottle.manifest.path}: agents.{bottle.agent.name}.{field}: the {sidecar} "
                      "is not built yet", fix)


@task(pre=[net])
@step("supervise")
def supervise(c):
    """Start the supervise MCP sidecar (no-op unless declared)."""
    bottle = current(c)
    if not bottle.plan.wants_supervise:
        return "not declared: nothing to start"
    not_built(bottle, "supervise", "supervise sidecar", "set supervise: {enabled: false} to launch without it")


ns = Collection(supervise)
