"""Undoing what the steps created: one function per kind of resource, and the
journal of this process's creations that a failed run rolls back."""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import console, docker, run
from .errors import BottleError
from .state import UndoAction
from .target import Result

if TYPE_CHECKING:
    from .selection import Bottle



def record(bottle: Bottle, kind: str, name: str, role: str, step: str) -> None:
    """Remember a resource and how to undo it, just before creating it: an interrupt can
    land after the engine made it and before the CLI returned, and it must still be undone."""
    bottle.state.record(kind, name, role, step)
    run.now().journal.append((bottle, UndoAction(kind, name, step)))


def unrecord(bottle: Bottle, kind: str, name: str) -> None:
    """The creation failed (the engine said so): there is nothing to undo."""
    journal = run.now().journal
    for entry in [e for e in journal if e[0] is bottle and (e[1].kind, e[1].name) == (kind, name)]:
        journal.remove(entry)
        bottle.state.forget(entry[1])


def undo(bottle: Bottle, action: UndoAction) -> None:
    """Remove one resource; a resource that is already gone counts as removed."""
    if action.kind in ("container", "network"):
        remove(bottle.target, action.kind, action.name)
    elif action.kind == "volume":  # only ever in the run's journal (home.py): a failed first launch's new home
        result = bottle.target.run(docker.volume_rm(action.name), check=False)
        if not (result.ok or "no such volume" in result.stderr.lower()):
            raise BottleError(f"could not remove volume {action.name}", result.stderr.strip())
    elif action.kind == "stage":
        # Only ever below the stage root: a hand-edited state file must not aim rm -rf elsewhere.
        if not action.name.startswith(bottle.target.stage_root + "/"):
            raise BottleError(f"refusing to remove {action.name}: not below {bottle.target.stage_root}",
                              f"fix or delete {bottle.state.path}")
        bottle.target.remove_tree(action.name)
    else:
        raise BottleError(f"unknown undo action {action.kind!r} in {bottle.state.path}")
    bottle.state.forget(action)


def remove_together(target, kind: str, names: list[str]) -> None:
    """Several containers, or networks, in one docker call (the engine removes them side by
    side); when that call fails, one at a time, each with `remove`'s care."""
    if len(names) > 1:
        argv = docker.container_rm(*names) if kind == "container" else docker.network_rm(*names)
        result = target.run(argv, check=False)
        if result.ok:
            return
        stop_if_interrupted(result, f"{kind}s {', '.join(names)}")
    for name in names:
        remove(target, kind, name)


def remove(target, kind: str, name: str) -> None:
    """Remove a container or network; one that is already gone counts as removed.

    Containers that are not the bottle's (a debugging shell, a test upstream) are
    detached from its network first rather than blocking `down`."""
    if kind == "container":
        result = target.run(docker.container_rm(name), check=False)
    else:
        result = target.run(docker.network_rm(name), check=False)
        stop_if_interrupted(result, f"{kind} {name}")
        if "active endpoints" in result.stderr:
            attached = target.run(docker.network_inspect(name, "{{range .Containers}}{{.Name}} {{end}}"),
                                  check=False).stdout.split()
            for container in attached:
                target.run(docker.network_disconnect(name, container), check=False)
            result = target.run(docker.network_rm(name), check=False)
    stop_if_interrupted(result, f"{kind} {name}")
    if not (result.ok or "No such" in result.stderr or "not found" in result.stderr):
        raise BottleError(f"could not remove {kind} {name}", result.stderr.strip())


DOWN_AGAIN = "run the same `inv ... down` again: it removes what is left"


def stop_if_interrupted(result: Result, what: str) -> None:
    """A removal a Ctrl-C stopped (`down`; a rollback ignores Ctrl-C) ends the run there: asked
    again at once, the engine, still removing, would only answer "already in progress"."""
    if result.interrupted:
        raise BottleError(f"interrupted while removing {what}", DOWN_AGAIN, exit_code=result.exited)


def rollback() -> list[str]:
    """Undo this process's creations, newest first; returns what could not be undone."""
    failures = []
    journal = run.now().journal
    while journal:
        bottle, action = journal.pop()
        try:
            undo(bottle, action)
            console.note(f"rolled back {action.kind} {action.name}")
        except BottleError as exc:
            failures.append(str(exc))
    return failures
