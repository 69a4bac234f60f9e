"""One run at a time per bottle: a run that changes a bottle holds its lock (`flock` on
`<state>/locks/<slug>.lock`) to the end, rollback included; a second run of the same bottle
stops at once with "busy" and the holder's pid. Runs that only look take no lock."""
from __future__ import annotations

import fcntl
import os

from . import run
from .errors import BottleError
from .state import state_root

#: tasks that only look: they never take a bottle's lock (a long `claude` session must
#: not keep `allow` or `down` waiting)
READ_ONLY_TASKS = frozenset({"use", "status", "plan", "logs", "routes", "claude", "shell", "exec",
                             "pull", "diff"})


def begin_run(task_names) -> None:
    """Called by the executor: does this command line change bottles (and so lock them)?"""
    run.now().locking = not set(task_names) <= READ_ONLY_TASKS


def lock_bottle(slug: str) -> None:
    """Hold bottle `slug`'s lock until the run ends; a bottle another run holds is busy.
    Two launches of one bottle at once would otherwise both create, and undo, its parts."""
    held = run.now().locks
    if slug in held or not run.now().locking:
        return
    folder = state_root() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{slug}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise BottleError(f"bottle {slug} is busy: another `inv` run (pid {holder}) is changing it",
                          "wait for it to finish, then run again") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    held[slug] = fd


def end_run() -> None:
    """Release every bottle lock this run holds (the kernel would, at exit, anyway)."""
    held = run.now().locks
    while held:
        os.close(held.popitem()[1])
