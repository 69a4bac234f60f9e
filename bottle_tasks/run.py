"""One command line's run: everything it accumulates while its steps execute, in one object
the executor creates at the start (`begin`) and that the modules reach as `run.now()`.

What it holds: when the run started (the ready line's time), the journal of what this run
created (rolled back on failure) and the creations a stop cut short, the readiness probes
still to settle, the SSH connections it opened, the bottle locks it holds, and the container
starts in flight.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fabric import Connection

    from .selection import Bottle
    from .state import UndoAction


@dataclass
class Run:
    started: float = field(default_factory=time.monotonic)
    journal: list[tuple[Bottle, UndoAction]] = field(default_factory=list)  # oldest first
    starting: list[Any] = field(default_factory=list)        # containers.Starting: starts in flight
    # (bottle, kind, name, role): creations whose docker command a stop cut short (undo.creating)
    creating: list[tuple[Bottle, str, str, str]] = field(default_factory=list)
    pending: list[Any] = field(default_factory=list)         # containers.Pending, oldest first
    connections: dict[str, Connection] = field(default_factory=dict)  # one per remote host
    locks: dict[str, int] = field(default_factory=dict)      # bottle slug -> lock file descriptor
    locking: bool = True  # False for runs that only look (they take no lock)
    memo: dict[tuple, Any] = field(default_factory=dict)  # the manifest and plan, read once (selection.py)
    # (slug, kind) -> name -> owner: the planned names' owners, asked once (names._first_owner)
    owners: dict[tuple[str, str], dict[str, tuple[str, str] | None]] = field(default_factory=dict)


_CURRENT = Run()


def now() -> Run:
    return _CURRENT


def begin() -> Run:
    """A fresh run (the executor, at the start of a command line)."""
    global _CURRENT
    _CURRENT = Run()
    return _CURRENT
