"""`down`: undo what the steps created, newest first; then sweep leftovers by label."""
from invoke import Collection, task

from .. import console, docker
from ..context import current, host_label, selection, target_for
from ..resources import labelled
from ..state import State, known_slugs
from ..stepping import step
from ..undo import remove, undo


def sweep(target, slug: str | None) -> list[str]:
    """Remove labelled resources the undo log did not know (lost state, crashed runs)."""
    removed = []
    found = labelled(target, slug)
    # Containers first: a network in use cannot be removed.
    for item in sorted(found, key=lambda f: f.kind != "container"):
        remove(target, item.kind, item.name)
        removed.append(item.name)
    return removed


@task(help={"all": "remove every bottle's labelled containers and networks, orphans included"})
@step("down")
def down(c, all=False):
    """Tear the selected bottle down (idempotent); --all removes every bottle."""
    if all:
        remote = selection(c)["remote"]
        target = target_for(c, remote)
        removed = sweep(target, None)
        for slug in known_slugs():
            state = State.load(slug, persist=not target.dry)
            if state.get("host", "local") != host_label(remote):
                continue  # a bottle on another Docker host: its state stays
            stage = state.resource("stage")
            if stage:
                target.remove_tree(stage)
            state.delete()
        return f"removed {len(removed)} labelled resources" + (f": {', '.join(removed)}" if removed else "")
    bottle = current(c, need_manifest=False)
    undone = []
    for action in bottle.state.undo_actions():
        undo(bottle, action)
        undone.append(action.name)
    leftovers = sweep(bottle.target, bottle.slug)
    for name in leftovers:
        console.note(f"removed leftover {name} (found by label)")
    # The workspace image holds a copy of the user's files: it goes with the bottle.
    workspace_images = bottle.run(docker.image_ls(f"bottle/workspace-{bottle.slug}")).stdout.split()
    if workspace_images:
        bottle.run(docker.image_rm(sorted(set(workspace_images))))
        undone.append("workspace image")
    bottle.state.delete()
    count = len(undone) + len(leftovers)
    return f"bottle {bottle.slug}: removed {count} resource(s)" if count else f"bottle {bottle.slug}: nothing to remove"


ns = Collection(down)
