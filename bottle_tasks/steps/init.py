"""`init`: write a commented starter manifest (bottle.yaml) for the project in this folder."""
from pathlib import Path

from invoke import Collection, task

from .. import console, project, starter
from ..errors import BottleError


@task(help={"folder": "the project's folder (default: the current one)"})
def init(c, folder=None):
    """Write a starter bottle.yaml here: the model's API route, the registries this project uses."""
    where = Path(folder or Path.cwd()).absolute()
    if not where.is_dir():
        raise BottleError(f"{where} is not a folder", "run `bottle init` inside your project's folder")
    existing = [where / name for name in project.PROJECT_FILES if (where / name).exists()]
    if existing:
        raise BottleError(f"{existing[0]} already exists: not overwritten",
                          "edit it, or remove it and run `bottle init` again")
    path = where / project.PROJECT_FILES[0]
    text = starter.render(where)
    # "x": never overwrite, even a file that appeared since the check above.
    try:
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise BottleError(f"{path} already exists: not overwritten") from None
    found = ", ".join(ecosystem for ecosystem, _ in starter.registries(where)) or "none"
    console.out.print(f"wrote {path} (bottle {project.slug_for(where)}; registries: {found})\n"
                      "next: ANTHROPIC_API_KEY=... bottle launch, then bottle claude, then bottle pull")


ns = Collection(init)
