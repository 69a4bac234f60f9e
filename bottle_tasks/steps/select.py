"""`use`: select the bottle the following tasks on the same command line act on."""
from invoke import Collection, task

from ..context import select, selection


@task(help={
    "agent": "agent name from the manifest (default: bottle.agent, 'demo')",
    "manifest": "manifest file, YAML or Markdown (default: bottle.manifest)",
    "name": "bottle instance name, to run the same agent twice (default: the agent's name)",
    "on": "run against the Docker host user@host over SSH (Fabric)",
    "keep": "keep what a failed run created, for debugging",
})
def use(c, agent, manifest=None, name=None, on=None, keep=False):
    """Select the bottle for the tasks after it: `inv use reviewer net ca`."""
    # A new agent means a new default instance name, unless one is given.
    select(c, agent=agent, manifest=manifest, remote=on, keep=keep or None)
    if name is None:
        chosen = selection(c)
        chosen["name"] = None
        c.config.bottle = chosen
    else:
        select(c, name=name)


ns = Collection(use)
