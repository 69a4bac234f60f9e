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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .errors import BottleError
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
    malformed: dict[str, str] = field(default_factory=dict)  # a recorded field of another shape -> why

    # -- loading and saving --------------------------------------------------
    @classmethod
    def load(cls, slug: str, persist: bool = True) -> "State":
        path = state_root() / slug / "state.json"
        data: dict = {}
        malformed: dict[str, str] = {}
        if path.exists():
            try:
                raw = json.loads(path.read_text())
            except (OSError, ValueError):
                raw = {}  # a corrupt state file: labels still let `down` find everything
            data = well_formed(raw, path)
            # Kept as they are (a save writes them back): refused where read, never forgotten.
            malformed = misshapen(raw)
        data.setdefault("slug", slug)
        data.setdefault("resources", {})
        data.setdefault("undo", [])
        return cls(slug, path, data, persist, malformed)

    def save(self) -> None:
        if not self.persist:
            return
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private(self.path, (json.dumps(self.data, indent=2, sort_keys=True) + "\n").encode())
        except OSError as exc:  # a full disk, a read-only one, a directory in the file's place
            raise BottleError(f"could not write {self.path}: {exc.strerror or exc}", STATE_FIX) from None

    def delete(self) -> None:
        if self.persist and self.path.exists():
            try:
                self.path.unlink()
            except OSError as exc:
                raise BottleError(f"could not remove {self.path}: {exc.strerror or exc}", STATE_FIX) from None
            with contextlib.suppress(OSError):  # not empty: the local stage dir is still there
                self.path.parent.rmdir()
        self.data = {"slug": self.slug, "resources": {}, "undo": []}

    # -- resources -----------------------------------------------------------
    def get(self, key: str, default=None):
        """A recorded field; one a hand edit left of another shape is refused, naming the
        file, the field and the fix (never guessed at: a `deny` or a route's removal dropped
        silently would open what the operator closed)."""
        if key in self.malformed:
            recorded = RECORDED[key]
            raise BottleError(f"{self.path}: field {key} is not of the shape bottle writes ({self.malformed[key]})",
                              f"it holds {recorded.shape}; {recorded.fix}")
        return self.data.get(key, default)

    def set(self, key: str, value) -> None:
        self.data[key] = value
        self.malformed.pop(key, None)
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
        # The resource is gone. A file that still names it (the write failed: a full disk) is
        # harmless, `down` takes a resource that is not there as removed; a rollback or `down`
        # stopped half-way by the failed write would leave the rest behind.
        with contextlib.suppress(BottleError):
            self.save()


STATE_FIX = ("free space on that disk, or make the path a writable file again, then run the command again "
             "(`down` finds what is left by its labels)")


def well_formed(data: object, path: Path) -> dict:
    """The parts of a state file that have the shape bottle writes. A hand edit, a file cut
    short or another version's can hold any JSON; a part of another shape is left out (said
    once, naming the file), as a file that is not JSON is ignored whole: `down` still finds
    the bottle's resources by their labels, and its stage dir by its path."""
    if not isinstance(data, dict):
        _ignored(path, "the whole file: not a JSON object")
        return {}
    kept = {key: value for key, value in data.items() if key not in TEXT_FIELDS or isinstance(value, str)}
    resources = data.get("resources", {})
    kept["resources"] = {role: name for role, name in resources.items()
                         if isinstance(role, str) and isinstance(name, str)} if isinstance(resources, dict) else {}
    undo = data.get("undo", [])
    kept["undo"] = [entry for entry in undo if _undo_entry(entry)] if isinstance(undo, list) else []
    left_out = [key for key in data if key not in kept or kept[key] != data[key]]
    if left_out:
        _ignored(path, f"{'fields' if len(left_out) > 1 else 'field'} {', '.join(left_out)}: not of the shape bottle writes")
    return kept


def _str_lists(value: object, keys: set[str]) -> str:
    if not isinstance(value, dict):
        return "not an object"
    for key, items in value.items():
        if key not in keys:
            return f"unknown key {key!r}"
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            return f"{key} is not a list of names"
    return ""


def _route_changes(value: object) -> str:
    if not isinstance(value, dict):
        return "not an object"
    problem = _str_lists({k: v for k, v in value.items() if k != "added"}, {"removed"})
    if problem:
        return problem
    added = value.get("added", [])
    if not isinstance(added, list):
        return "added is not a list of routes"
    from .sidecars.egress import routes  # only where a route was added live

    for i, spec in enumerate(added):
        try:
            routes.parse_route(spec, f"added[{i}]")
        except routes.RouteError as exc:
            return str(exc)
    return ""


def _str_map(value: object) -> str:
    ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    return "" if ok else "not an object of names and texts"


def _work_base(value: object) -> str:
    ok = isinstance(value, dict) and set(value) == {"container", "commit"} and all(isinstance(v, str) for v in value.values())
    return "" if ok else 'not {"container": ..., "commit": ...}'


class Recorded(NamedTuple):
    shape: str                       # what the field holds, in words
    fix: str                         # what to do when a hand edit broke it
    problem: Callable[[object], str]  # "" for a value of that shape, else what is wrong


# The other fields steps record.
RECORDED = {
    "policy_changes": Recorded('{"allow": [host, ...], "deny": [host, ...]}, what `inv allow`/`inv deny` changed',
                               "correct it, or remove the field and make those changes again with `inv allow`/`inv deny`",
                               lambda value: _str_lists(value, {"allow", "deny"})),
    "route_changes": Recorded('{"added": [route, ...], "removed": [host or host:port, ...]}, what `inv route` changed',
                              "correct it, or remove the field and make those changes again with `inv route`",
                              _route_changes),
    "ca": Recorded('{"firewall": PEM, "egress": PEM}, the bottle\'s CA certificates',
                   "remove the field, then `inv down` and launch again: the CAs are minted anew", _str_map),
    "cidr": Recorded('{"net-internal": CIDR, ...}, the bottle\'s networks', "remove the field and run `inv net` again",
                     _str_map),
    "work_base": Recorded('{"container": id, "commit": sha}, what the workspace was copied from',
                          "remove the field (`inv diff` and `inv pull` then take the image's commit)", _work_base),
}


def misshapen(data: object) -> dict[str, str]:
    """The recorded fields (RECORDED) of `data` that bottle did not write so, each with why."""
    if not isinstance(data, dict):
        return {}
    problems = {key: recorded.problem(data[key]) for key, recorded in RECORDED.items() if key in data}
    return {key: problem for key, problem in problems.items() if problem}


TEXT_FIELDS = ("slug", "host", "agent", "manifest")
UNDO_KEYS = {"kind", "name", "step"}


def _undo_entry(entry: object) -> bool:
    return (isinstance(entry, dict) and set(entry) == UNDO_KEYS
            and all(isinstance(value, str) for value in entry.values()))


_WARNED: set[Path] = set()  # every step of a run loads the state: said once


def _ignored(path: Path, what: str) -> None:
    if path in _WARNED:
        return
    _WARNED.add(path)
    from . import console  # rich: only when there is something to say

    console.warning(f"{path}: ignored {what} (`down` still finds the bottle's resources by their labels)")


def known_slugs() -> list[str]:
    root = state_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "state.json").exists())
