"""Project manifests: `bottle.yaml` / `bottle.md` found from the current folder upwards,
the way git finds `.git`, and the starter manifest `bottle init` writes.

A project manifest's folder is the project: the workspace defaults to it (manifest.py)
and the bottle's default name is the folder's name, so two projects never share a
bottle by accident.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from . import console
from .schema import MAX_MANIFEST_BYTES, Invalid, parse_yaml

#: looked for in this order in each folder, from the current one up to /
PROJECT_FILES = ("bottle.yaml", "bottle.md")


@dataclass(frozen=True)
class Project:
    manifest: Path   # the bottle.yaml / bottle.md found
    agent: str | None  # the agent a bare `bottle launch` acts on (None: let validation say why)
    name: str        # the default bottle name: the folder's name as a bottle name

    @property
    def folder(self) -> Path:
        return self.manifest.parent


def find(start: Path | None = None, warn=None) -> Path | None:
    """The nearest project manifest in `start` (default: the current folder) or its parents
    that is yours: one another user could have written is passed over, said so to `warn`."""
    folder = (start or Path.cwd()).absolute()
    for candidate in (folder, *folder.parents):
        for name in PROJECT_FILES:
            path = candidate / name
            if path.is_file():
                doubt = not_yours(path)
                if doubt is None:
                    return path
                if warn:
                    warn(f"passed over {path}: {doubt}; a manifest names the hosts your credentials "
                         "go to. `bottle --manifest FILE` takes it anyway")
    return None


def not_yours(path: Path) -> str | None:
    """Why another user could have written the manifest `path` (as git refuses a repository
    of someone else's, CVE-2022-24765): `/tmp/bottle.yaml` would otherwise be the project of
    anyone who runs `bottle` in a folder below /tmp without one."""
    me = os.geteuid()
    for item, kind in ((path, "file"), (path.parent, "folder")):
        info = item.stat()
        if info.st_uid not in (me, 0):
            return f"its {kind} belongs to uid {info.st_uid}, not you"
        writable_by_others = info.st_mode & 0o022
        if writable_by_others and not (kind == "folder" and info.st_mode & stat.S_ISVTX and info.st_uid == 0
                                       and path.stat().st_uid == me):
            return f"its {kind} is writable by other users"
    return None


def slug_for(folder: Path) -> str:
    """A folder's name as a bottle name: 1-31 of a-z, 0-9 and '-', starting with one of a-z0-9."""
    slug = re.sub(r"[^a-z0-9-]+", "-", folder.name.lower()).strip("-")[:31].strip("-")
    return slug or "project"


def agent_names(manifest: Path) -> list[str]:
    """The agents a manifest declares, read quietly: a broken manifest still lets `bottle --help`
    run; `manifest.load` reports the problem when a task needs the manifest. Read with the
    strict loader and its bounds all the same (an alias bomb of a few hundred bytes made
    `bottle --help` build gigabytes)."""
    try:
        if manifest.stat().st_size > MAX_MANIFEST_BYTES:
            return []
        text = manifest.read_text(encoding="utf-8-sig")
        if manifest.suffix == ".md":
            front = text.split("\n---", 1)[0].removeprefix("---")
            doc = parse_yaml(front) or {}
            name = doc.get("name", manifest.stem) if isinstance(doc, dict) else None
            return [name] if isinstance(name, str) else []
        doc = parse_yaml(text) or {}
        agents = doc.get("agents") if isinstance(doc, dict) else None
        return [name for name in agents if isinstance(name, str)] if isinstance(agents, dict) else []
    except (OSError, UnicodeDecodeError, Invalid):
        return []


def discover(start: Path | None = None) -> Project | None:
    path = find(start, warn=console.warning)
    if path is None:
        return None
    names = agent_names(path)
    slug = slug_for(path.parent)
    # The agent named after the folder, else the first one: `bottle init` writes exactly one.
    agent = slug if slug in names else (names[0] if names else None)
    return Project(path, agent, slug)


def selection_defaults(project: Project | None, cwd: Path) -> dict:
    """The `bottle.*` config defaults of the `bottle` command run in `cwd`."""
    if project is None:
        # Nothing found: the manifest that `bottle init` would write, so the error names it.
        return {"manifest": str(cwd.absolute() / PROJECT_FILES[0]), "agent": slug_for(cwd)}
    chosen = {"manifest": str(project.manifest), "agent": project.agent or project.name}
    if project.agent is not None:
        chosen["name"] = project.name
    return chosen
