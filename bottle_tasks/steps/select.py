"""`use`: select the bottle the following tasks on the same command line act on."""
from invoke import Collection, task

from ..selection import selection


@task(help={
    "agent": "agent name from the manifest (default: bottle.agent, 'demo')",
    "manifest": "manifest file, YAML or Markdown (default: bottle.manifest)",
    "name": "bottle instance name, to run the same agent twice (default: the agent's name)",
    "on": "run against the Docker host user@host over SSH (Fabric)",
    "keep": "keep what a failed run created, for debugging",
})
def use(c, agent, manifest=None, name=None, on=None, keep=False):
    """Select the bottle for the tasks after it: `inv use reviewer net ca`."""
    chosen = selection(c)
    # A new agent means a new default instance name, unless one is given.
    chosen.update(agent=agent, name=name)
    given = {"manifest": manifest, "remote": on, "keep": keep or None}
    chosen.update({key: value for key, value in given.items() if value is not None})
    # Assign a new value; never mutate invoke's nested config in place (invoke#535).
    c.config.bottle = chosen


ns = Collection(use)
