"""The agent's home as a labelled volume, one per bottle: Claude Code's state (~/.claude,
~/.claude.json: login, settings, history, `claude --continue`) and whatever else the agent
keeps there outlive its container. A relaunch of the same bottle mounts it again; `down`
keeps it; `down --purge` removes it.

Not in the bottle's undo log on purpose: `down` undoes that log, and must not take the
agent's state with it; the volume is found by name and label instead (`claim_name`). Only
the run that creates it journals it, so a failed first launch leaves no empty volume."""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import docker, run
from .errors import BottleError
from .names import claim_name, labelled_volumes
from .state import UndoAction
from .undo import creating

if TYPE_CHECKING:
    from .selection import Bottle

ROLE = "home"


def ensure(bottle: Bottle) -> str:
    """The bottle's home volume, created (labelled) when it has none. A new volume is filled
    by the engine from the image's /home/agent on first mount (owner and skeleton files)."""
    name, exists = claim_name(bottle, "volume", ROLE)
    if not exists:
        run.now().journal.append((bottle, UndoAction("volume", name, "agent")))  # first: see undo.record
        with creating(bottle, "volume", {name: ROLE}):
            bottle.run(docker.volume_create(name, bottle.plan.labels(ROLE)))
    return name


def purge(target, slug: str | None) -> list[str]:
    """Remove the volumes of one bottle (or of every bottle); their containers must be gone."""
    removed = []
    for found in labelled_volumes(target, slug):
        result = target.run(docker.volume_rm(found.name), check=False)
        if not (result.ok or "no such volume" in result.stderr.lower()):
            raise BottleError(f"could not remove volume {found.name}", result.stderr.strip())
        removed.append(found.name)
    return removed
