"""Undoing what the steps created: one function per kind of resource, and the
journal of this process's creations that a failed run rolls back."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from . import console, docker, run
from .errors import BottleError
from .names import appears
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


# How long the rollback gives the engine to finish a creation a stop cut short.
IN_FLIGHT_WAIT = 2.0


@contextmanager
def creating(bottle: Bottle, kind: str, roles: dict[str, str]) -> Iterator[None]:
    """Around the docker command that creates the recorded resources `roles` (name -> role).
    A Ctrl-C can stop the CLI, or land before invoke waits for it, while the engine goes on
    and makes them a moment later: after a rollback that found nothing to remove. Until the
    command has returned they are in flight, and the rollback first waits for them
    (`settle_in_flight`). One the engine refused (it answered) is forgotten at once."""
    entries = [(bottle, kind, name, role) for name, role in roles.items()]
    flying = run.now().creating
    flying.extend(entries)
    try:
        yield
    except BottleError as exc:
        if exc.interrupted:
            raise  # cut short: still in flight
        for entry in entries:  # the engine answered: what it did not make, it will not make
            flying.remove(entry)
            if not bottle.dry and not appears(bottle.target, kind, entry[2], (bottle.slug, entry[3]), wait=0):
                unrecord(bottle, kind, entry[2])
        raise
    for entry in entries:
        flying.remove(entry)


def settle_in_flight() -> None:
    """Before the rollback (which ignores a second Ctrl-C): each creation a stop cut short is
    waited for, up to `IN_FLIGHT_WAIT`; one that does not appear as ours was not made (or a
    resource that is not ours took the name) and is not undone."""
    flying = run.now().creating
    while flying:
        bottle, kind, name, role = flying.pop()
        if bottle.dry or not appears(bottle.target, kind, name, (bottle.slug, role), wait=IN_FLIGHT_WAIT):
            unrecord(bottle, kind, name)


def undo(bottle: Bottle, action: UndoAction) -> None:
    """Remove one resource; a resource that is already gone counts as removed."""
    if action.kind in ("container", "network"):
        remove(bottle.target, action.kind, action.name)
    elif action.kind == "volume":  # only ever in the run's journal (home.py): a failed first launch's new home
        result = bottle.target.run(docker.volume_rm(action.name), check=False)
        if not (result.ok or "no such volume" in result.stderr.lower()):
            raise BottleError(f"could not remove volume {action.name}", result.stderr.strip())
    elif action.kind == "stage":
        # Only ever this bottle's own stage dir, the one `ca` records: a hand-edited (or planted)
        # state file must not aim rm -rf elsewhere ("<stage root>/x/../../.." is below it by name).
        own = bottle.target.stage_dir(bottle.slug)
        if action.name != own:
            raise BottleError(f"refusing to remove {action.name}: not this bottle's stage dir ({own})",
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
            attached = target.run(docker.network_inspect(name, docker.ATTACHED_NAMES),
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
    settle_in_flight()
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
