"""Project manifests: `bottle.yaml` / `bottle.md` found from the current folder upwards,
the way git finds `.git`, and the starter manifest `bottle init` writes.

A project manifest's folder is the project: the workspace defaults to it (manifest.py)
and the bottle's default name is the folder's name, so two projects never share a
bottle by accident.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

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


def find(start: Path | None = None) -> Path | None:
    """The nearest project manifest in `start` (default: the current folder) or its parents."""
    folder = (start or Path.cwd()).absolute()
    for candidate in (folder, *folder.parents):
        for name in PROJECT_FILES:
            path = candidate / name
            if path.is_file():
                return path
    return None


def slug_for(folder: Path) -> str:
    """A folder's name as a bottle name: 1-31 of a-z, 0-9 and '-', starting with one of a-z0-9."""
    slug = re.sub(r"[^a-z0-9-]+", "-", folder.name.lower()).strip("-")[:31].strip("-")
    return slug or "project"


def agent_names(manifest: Path) -> list[str]:
    """The agents a manifest declares, read loosely: a broken manifest still lets `bottle --help`
    run; the strict loader reports the problem when a task needs the manifest."""
    try:
        text = manifest.read_text(encoding="utf-8-sig")
        if manifest.suffix == ".md":
            front = text.split("\n---", 1)[0].removeprefix("---")
            doc = yaml.safe_load(front) or {}
            return [str(doc.get("name", manifest.stem))] if isinstance(doc, dict) else []
        doc = yaml.safe_load(text) or {}
        agents = doc.get("agents") if isinstance(doc, dict) else None
        return [str(name) for name in agents] if isinstance(agents, dict) else []
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []


def discover(start: Path | None = None) -> Project | None:
    path = find(start)
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
