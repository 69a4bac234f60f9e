"""`plan`: what launching the selected bottle would create, without touching Docker."""
from invoke import Collection, task
from rich.table import Table

from .. import console
from ..selection import current


@task(name="plan")
def plan_(c):
    """Print what launching the selected bottle would create, without touching Docker."""
    bottle = current(c)
    table = Table(title=f"bottle {bottle.slug} (agent {bottle.agent.name}, {bottle.manifest.path})",
                  title_justify="left")
    table.add_column("step")
    table.add_column("will do")
    for step_name, text in bottle.plan.describe():
        table.add_row(step_name, text)
    console.out.print(table)
    labels = ", ".join(f"{k}={v}" for k, v in bottle.plan.labels("<role>").items())
    console.out.print(f"labels on every container and network: {labels}")


ns = Collection(plan_)
