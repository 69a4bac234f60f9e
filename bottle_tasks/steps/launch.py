"""`launch`: the whole chain, through pre-tasks, then the wait for every sidecar's readiness."""
import time

from invoke import Collection, task

from .. import console, containers, run
from ..selection import current
from . import work
from .agent import provision


@task(pre=[provision])
def launch(c):
    """Launch the selected bottle: the whole chain, through pre-tasks."""
    bottle = current(c)
    containers.settle()
    work.remember_base(bottle)  # before the agent does anything: what `bottle diff` compares with
    took = time.monotonic() - run.now().started
    console.out.print(f"[green bold]ready[/] bottle {bottle.slug} in {took:.1f}s — get in: "
                      f"`{bottle.selector} claude` (or shell, exec \"CMD\"); "
                      f"tear down: `{bottle.selector} down`")


ns = Collection(launch)
