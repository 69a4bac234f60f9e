"""`down`: undo what the steps created, newest first; then sweep leftovers by label."""
from concurrent.futures import ThreadPoolExecutor

from invoke import Collection, task

from .. import console, home
from ..connections import target_for
from ..errors import BottleError
from ..locks import lock_bottle
from ..names import labelled, listed
from ..selection import current, host_label, selection
from ..state import State, known_slugs
from ..stepping import step
from ..stopping import described
from ..undo import DOWN_AGAIN, remove, remove_together, undo
from ..workspace import image as workspace_image


def sweep(target, slug: str | None, found: list | None = None) -> list[str]:
    """Remove labelled resources the undo log did not know (lost state, crashed runs);
    `found`: what `labelled` lists, when it is known already."""
    removed = []
    found = labelled(target, slug) if found is None else found
    # Containers first: a network in use cannot be removed.
    for item in sorted(found, key=lambda f: f.kind != "container"):
        remove(target, item.kind, item.name)
        removed.append(item.name)
    return removed


def remove_stage(target, slug: str) -> bool:
    """Remove `slug`'s stage dir (its CA keys, the secrets the sidecars inject) if it is still
    there; whether it was. Its path is fixed by the Docker host and the name, so it is found
    whatever the state says: a corrupt or lost state.json, or one on another controller, must
    not leave key material behind. The undo log has normally removed it already."""
    stage = target.stage_dir(slug)
    if target.dry or not target.exists(stage):
        return False
    target.remove_tree(stage)
    return True


def batches(actions):
    """Runs of neighbouring actions of one kind (containers, networks); others alone."""
    out: list[list] = []
    for action in actions:
        if out and action.kind in ("container", "network") and out[-1][-1].kind == action.kind:
            out[-1].append(action)
        else:
            out.append([action])
    return out


def undo_log(bottle) -> list[str]:
    """Undo the whole log, newest first; neighbouring containers (then networks) go in one call
    each. The names removed."""
    undone = []
    for batch in batches(bottle.state.undo_actions()):
        if len(batch) > 1:
            remove_together(bottle.target, batch[0].kind, [action.name for action in batch])
            for action in batch:
                bottle.state.forget(action)
        else:
            undo(bottle, batch[0])
        undone += [action.name for action in batch]
    return undone


@task(help={"all": "remove every bottle's labelled containers and networks, orphans included",
            "purge": "also remove the home volume (Claude's login, settings, history) and the "
                     "workspace image, kept otherwise"})
@step("down")
def down(c, all=False, purge=False):
    """Tear the selected bottle down (idempotent); --all removes every bottle; --purge its home too."""
    try:
        return tear_down(c, all, purge)
    except KeyboardInterrupt as exc:  # between two commands: as when one of them was stopped (undo)
        message, code = described(exc)
        raise BottleError(message, DOWN_AGAIN, exit_code=code) from None


def tear_down_all(c, purge: bool) -> str:
    """Every bottle on the selected Docker host: what is labelled as a bottle's, each stage dir
    there (a bottle whose state.json was lost or is another controller's has one too: its CA
    keys and secrets), and the states of the bottles on that host. Each of those bottles is
    locked first: one that another run is changing is busy, and nothing is removed."""
    remote = selection(c)["remote"]
    target = target_for(c, remote)
    here = [State.load(slug, persist=not target.dry) for slug in known_slugs()]
    here = [state for state in here if state.get("host", "local") == host_label(remote)]  # others' stay
    staged = [] if target.dry else target.staged_slugs()
    for slug in sorted({state.slug for state in here} | set(staged)):
        lock_bottle(slug)
    removed = sweep(target, None)
    removed += home.purge(target, None) if purge else []
    removed += workspace_image.purge(target, None) if purge else []
    for slug in staged:
        remove_stage(target, slug)
    for state in here:
        state.delete()
    return f"removed {len(removed)} labelled resources" + (f": {', '.join(removed)}" if removed else "")


def tear_down(c, all: bool, purge: bool) -> str:
    if all:
        return tear_down_all(c, purge)
    bottle = current(c, need_manifest=False)
    if bottle.target.dry:
        undone = undo_log(bottle)
        found, volumes = listed(bottle.target, bottle.slug)
    else:
        # What is labelled as the bottle's is listed while the log is undone (one engine round
        # trip less to wait for); what the log removed is not swept again.
        with ThreadPoolExecutor(1) as pool:
            listing = pool.submit(listed, bottle.target, bottle.slug)
            undone = undo_log(bottle)
            found, volumes = listing.result()
    leftovers = sweep(bottle.target, bottle.slug, [item for item in found if item.name not in undone])
    for name in leftovers:
        console.note(f"removed leftover {name} (found by label)")
    if remove_stage(bottle.target, bottle.slug):
        leftovers.append("stage dir")
        console.note("removed the leftover stage dir (the CA keys, the sidecars' secrets) the state did not know")
    # The home volume outlives `down` (a relaunch finds Claude's state again) unless purged;
    # so does the workspace image (an unchanged workspace relaunches without a copy).
    kept = [] if purge else [volume.name for volume in volumes]
    if not purge and (bottle.agent is None or (bottle.agent.workspace and bottle.agent.workspace.copy)):
        kept += workspace_image.kept(bottle.target, bottle.slug)  # an image listing: only when there may be one
    undone += home.purge(bottle.target, bottle.slug) if purge else []
    undone += workspace_image.purge(bottle.target, bottle.slug) if purge else []
    bottle.state.delete()
    count = len(undone) + len(leftovers)
    done = f"bottle {bottle.slug}: removed {count} resource(s)" if count else f"bottle {bottle.slug}: nothing to remove"
    return done + (f"; kept {', '.join(kept)} (`down --purge` removes {'them' if len(kept) > 1 else 'it'})"
                   if kept else "")


ns = Collection(down)
