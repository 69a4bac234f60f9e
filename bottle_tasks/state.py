"""Persisted per-bottle state: what the steps created, and how to undo it.

Layout (XDG state dir, default ~/.local/state/bottle/<slug>/):
  state.json   resource names, the internal CIDR, and the ordered undo log
  stage/       0700; CA keys, rendered configs, env files, each 0600

Every creation is recorded right after it happens (`record`), so `down` and a
failed run's rollback can undo exactly what exists, newest first. The same
records also go to a per-process journal (undo.py): the part of the undo log
that *this* run created, which is what a failed run rolls back.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .private_files import write_private


def state_root() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "bottle"


@dataclass
class UndoAction:
    kind: str  # container | network | stage
    name: str
    step: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "step": self.step}


@dataclass
class State:
    slug: str
    path: Path
    data: dict = field(default_factory=dict)
    persist: bool = True  # False under --dry: a dry run leaves nothing behind

    # -- loading and saving --------------------------------------------------
    @classmethod
    def load(cls, slug: str, persist: bool = True) -> "State":
        path = state_root() / slug / "state.json"
        data = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = {}  # a corrupt state file: labels still let `down` find everything
        data.setdefault("slug", slug)
        data.setdefault("resources", {})
        data.setdefault("undo", [])
        return cls(slug, path, data, persist)

    def save(self) -> None:
        if not self.persist:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_private(self.path, (json.dumps(self.data, indent=2, sort_keys=True) + "\n").encode())

    def delete(self) -> None:
        if self.persist and self.path.exists():
            self.path.unlink()
            with contextlib.suppress(OSError):  # not empty: the local stage dir is still there
                self.path.parent.rmdir()
        self.data = {"slug": self.slug, "resources": {}, "undo": []}

    # -- resources -----------------------------------------------------------
    def get(self, key: str, default=None):
        return self.data.get(key, default)

    def set(self, key: str, value) -> None:
        self.data[key] = value
        self.save()

    def resource(self, role: str) -> str | None:
        return self.data["resources"].get(role)

    def adopt(self, role: str, name: str) -> None:
        """A resource that is ours by its labels but missing here (a run killed outright left
        it, a state file was deleted): known again, so the steps after find it, though not
        this run's to undo (`down` sweeps it by its labels)."""
        if self.data["resources"].get(role) != name:
            self.data["resources"][role] = name
            self.save()

    def record(self, kind: str, name: str, role: str, step: str) -> None:
        """Remember a resource this run just created, and how to undo it."""
        action = UndoAction(kind, name, step)
        self.data["resources"][role] = name
        if action.as_dict() not in self.data["undo"]:
            self.data["undo"].append(action.as_dict())
        self.save()

    def undo_actions(self) -> list[UndoAction]:
        return [UndoAction(**entry) for entry in reversed(self.data["undo"])]

    def forget(self, action: UndoAction) -> None:
        self.data["undo"] = [a for a in self.data["undo"] if a != action.as_dict()]
        for role, name in list(self.data["resources"].items()):
            if name == action.name:
                del self.data["resources"][role]
        self.save()


def known_slugs() -> list[str]:
    root = state_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "state.json").exists())
