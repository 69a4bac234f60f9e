"""The agent's home as a labelled volume, one per bottle: Claude Code's state (~/.claude,
~/.claude.json: login, settings, history, `claude --continue`) and whatever else the agent
keeps there outlive its container. A relaunch of the same bottle mounts it again; `down`
keeps it; `down --purge` removes it.

Not in the bottle's undo log on purpose: `down` undoes that log, and must not take the
agent's state with it; the volume is found by name and label instead (`claim_name`). Only
the run that creates it journals it, so a failed first launch leaves no empty volume."""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from . import docker, run
from .errors import BottleError
from .names import claim_name, labelled_volumes
from .state import UndoAction
from .undo import creating

if TYPE_CHECKING:
    from .selection import Bottle

ROLE = "home"


# The manifest a home was made for. Two projects in folders of one name (~/oss/api, ~/work/api)
# get one bottle name: without it, the second would mount what the first's agent left in its
# home (hooks in ~/.claude, a shell's rc files) and run it with the second's credentials.
LABEL_MANIFEST = "bottle.manifest"


def ensure(bottle: Bottle) -> str:
    """The bottle's home volume, created (labelled) when it has none. A new volume is filled
    by the engine from the image's /home/agent on first mount (owner and skeleton files)."""
    name, exists = claim_name(bottle, "volume", ROLE)
    made_for = str(bottle.manifest.path)
    if exists:
        labels = json.loads(bottle.run(docker.volume_inspect(name, docker.LABELS)).stdout or "null") or {}
        other = labels.get(LABEL_MANIFEST)
        if other and os.path.realpath(other) != os.path.realpath(made_for) and not bottle.dry:
            raise BottleError(f"the home volume {name} holds what the agent of {other} left there; this bottle "
                              f"is {made_for}'s", "give this one another name (`--name`), or remove that "
                              f"home: `down --purge` of that bottle, or `docker volume rm {name}`")
    else:
        run.now().journal.append((bottle, UndoAction("volume", name, "agent")))  # first: see undo.record
        with creating(bottle, "volume", {name: ROLE}):
            bottle.run(docker.volume_create(name, {**bottle.plan.labels(ROLE), LABEL_MANIFEST: made_for}))
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
