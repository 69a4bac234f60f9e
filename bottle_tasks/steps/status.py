"""`status`: what exists on the Docker host: bottles, their containers, networks, volumes, orphans."""
import json

from invoke import Collection, task
from rich.table import Table
from rich.text import Text

from .. import console
from ..connections import target_for
from ..names import labelled, labelled_volumes
from ..selection import selection
from ..state import State, known_slugs


def gather(target) -> dict:
    found = labelled(target)
    # Home volumes are kept after `down` on purpose: a bottle that has only one is listed
    # with it (relaunching it finds its Claude state), never as an orphan.
    volumes = labelled_volumes(target)
    slugs = set(known_slugs())
    bottles = {}
    for slug in sorted(slugs | {f.slug for f in found} | {v.slug for v in volumes}):
        state = State.load(slug, persist=False)
        bottles[slug] = {
            "agent": state.get("agent"),
            "state": str(state.path) if slug in slugs else None,
            "cidr": None if "cidr" in state.malformed else state.get("cidr"),  # an overview: no refusal
            "containers": [{"name": f.name, "role": f.role, "status": f.status}
                           for f in found if f.slug == slug and f.kind == "container"],
            "networks": [{"name": f.name, "role": f.role} for f in found if f.slug == slug and f.kind == "network"],
            "volumes": [{"name": v.name, "role": v.role} for v in volumes if v.slug == slug],
        }
    orphans = [{"kind": f.kind, "name": f.name, "slug": f.slug} for f in found if f.slug not in slugs]
    return {"bottles": bottles, "orphans": orphans}


@task(help={"json": "print machine-readable JSON on stdout instead of tables"})
def status(c, json_=False):
    """Show bottles, their containers and networks, and orphans (labelled, no state)."""
    report = gather(target_for(c, selection(c)["remote"]))
    if json_:
        print(json.dumps(report, indent=2, sort_keys=True))
        return
    table = Table(title="bottles", title_justify="left")
    for column in ("bottle", "kind", "role", "name", "status"):
        table.add_column(column)
    for slug, info in report["bottles"].items():
        for item in info["containers"]:
            table.add_row(*cells(slug, "container", item["role"], item["name"], item["status"]))
        for item in info["networks"]:
            table.add_row(*cells(slug, "network", item["role"], item["name"], ""))
        for item in info["volumes"]:
            table.add_row(*cells(slug, "volume", item["role"], item["name"],
                                 "in use" if info["containers"] else "kept (`down --purge` removes it)"))
        if not info["containers"] and not info["networks"] and not info["volumes"]:
            table.add_row(*cells(slug, "", "", "(state only)", ""))
    console.out.print(table if report["bottles"] else "no bottles")
    if report["orphans"]:
        names = ", ".join(o["name"] for o in report["orphans"])
        console.out.print(Text.assemble(("orphans (labelled, no state): ", "yellow"), console.plain(names),
                                        " — `inv down --all` removes them"))


def cells(*values: str) -> list[Text]:
    """Table cells from the engine's names, labels and states: printed, never read as markup."""
    return [console.plain(value) for value in values]


ns = Collection(status)
