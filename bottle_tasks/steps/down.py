"""`down`: undo what the steps created, newest first; then sweep leftovers by label."""
from invoke import Collection, task

from .. import console, docker
from ..context import current, selection, _target
from ..resources import labelled
from ..state import State, known_slugs
from ..stepping import step
from ..undo import remove_network, undo


def sweep(target, slug: str | None) -> list[str]:
    """Remove labelled resources the undo log did not know (lost state, crashed runs)."""
    removed = []
    found = labelled(target, slug)
    # Containers first: a network in use cannot be removed.
    for item in sorted(found, key=lambda f: f.kind != "container"):
        if item.kind == "container":
            target.run(docker.container_rm(item.name))
        else:
            remove_network(target, item.name)
        removed.append(item.name)
    return removed


@task(help={"all": "remove every bottle's labelled containers and networks, orphans included"})
@step("down")
def down(c, all=False):
    """Tear the selected bottle down (idempotent); --all removes every bottle."""
    if all:
        target = _target(c, selection(c)["remote"])
        removed = sweep(target, None)
        for slug in known_slugs():
            state = State.load(slug, persist=not target.dry)
            stage = state.resource("stage")
            if stage:
                target.remove_tree(stage)
            state.delete()
        return f"removed {len(removed)} labelled resources" + (f": {', '.join(removed)}" if removed else "")
    bottle = current(c)
    undone = []
    for action in bottle.state.undo_actions():
        undo(bottle, action)
        undone.append(action.name)
    leftovers = sweep(bottle.target, bottle.slug)
    for name in leftovers:
        console.note(f"removed leftover {name} (found by label)")
    bottle.state.delete()
    count = len(undone) + len(leftovers)
    return f"bottle {bottle.slug}: removed {count} resource(s)" if count else f"bottle {bottle.slug}: nothing to remove"


ns = Collection(down)
