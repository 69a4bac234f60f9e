"""The executor: runs invoke's task chain, and on failure rolls back what this run
created and exits cleanly with the reason (no traceback reaches the user)."""
from __future__ import annotations

import contextlib
import errno
import os
import sys
import traceback

from invoke import Exit, Failure
from invoke.executor import Executor

from . import connections, console, containers, locks, run, stopping, undo
from .errors import BottleError
from .private_files import write_private
from .state import state_root

# Set by the entry points (`inv`'s tasks.py, the `bottle` command), so a successful run ends
# the process at once; never by tests that run an executor inside their own process.
EXIT_WHEN_DONE = False


class BottleExecutor(Executor):
    def execute(self, *tasks):
        run.begin()
        stopping.begin()  # SIGTERM, SIGHUP: as a Ctrl-C
        locks.begin_run(getattr(task, "name", task) for task in tasks)
        try:
            self._check_one_bottle(tasks)
            results = super().execute(*tasks)
            containers.settle()  # `inv proxy` alone is done only once the firewall listens
            stopping.raise_if_stopped()
            # Done: a Ctrl-C or stop signal from here on would only make invoke exit 1 silently
            # with the work complete (a launched bottle the caller would then take for rolled back).
            stopping.shielded()
            connections.close_connections()
            locks.end_run()
            if EXIT_WHEN_DONE:
                exit_now()
            return results
        except Exit:
            connections.close_connections()
            locks.end_run()
            raise  # a task's own exit status (`inv exec "false"`): not a failure of the run
        except BottleError as exc:  # a command a Ctrl-C stopped ends the run as the Ctrl-C would
            message, code = str(exc), exc.stop_code or 1
        except Failure as exc:  # a c.run outside the target (should not happen) — still no traceback
            message, code = f"command failed: {exc.result.command}\n{exc.result.stderr[-2000:]}", 1
        except KeyboardInterrupt as exc:  # a Ctrl-C, or stopping.Stopped (SIGTERM, SIGHUP)
            message, code = stopping.described(exc)
        except Exception as exc:  # noqa: BLE001 - a bug of ours, or the controller's disk: still roll back
            message, code = unexpected(exc)
        previous = stopping.shielded()  # the starts still ending and the rollback run to the end
        try:
            # invoke re-merges the one config every step's context shares before each step (it
            # empties it, then fills it): a Ctrl-C landing in between leaves it without its
            # keys (`runners`), and the rollback's commands could not run. Merged whole again.
            self.config.merge()
            console.error(message)
            containers.abandon_starts()
            self._finish_failed_run()  # still under the bottle's lock: no other run sees half of it
        finally:
            # The entry points' process ends with this run, so it stays shielded to its end: with
            # Python's handler back, a second Ctrl-C or SIGTERM (a terminal's, a CI runner's) that
            # landed while the process finalized killed it by that signal (exit -2), after it had
            # said why and rolled back. An ignored signal stays ignored through finalization.
            if not EXIT_WHEN_DONE:
                stopping.unshielded(previous)
        connections.close_connections()
        locks.end_run()
        raise Exit(code=code)

    def _check_one_bottle(self, tasks) -> None:
        """invoke dedupes tasks across one command line, so `use a net use b net`
        would silently run `net` for `a` only: refuse rather than mislead."""
        uses = [t for t in tasks if getattr(t, "name", t) == "use"]
        if len(uses) > 1:
            raise BottleError("one bottle per command line: `use` appears more than once",
                              "run one `inv use NAME ...` command per bottle")

    def _finish_failed_run(self) -> None:
        keep = bool((self.config.get("bottle") or {}).get("keep"))
        if not run.now().journal:
            return
        if keep:
            names = ", ".join(action.name for _, action in run.now().journal)
            console.note(f"kept for debugging (--keep): {names}; remove with `inv down`")
            return
        failures = undo.rollback()  # a Ctrl-C meanwhile is ignored (execute)
        for failure in failures:
            console.error(f"rollback: {failure}")
        if not failures:
            console.note("rolled back everything this run created")


# A file the controller could not write for a reason of the machine's, not of bottle's code.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def unexpected(exc: Exception) -> tuple[str, int]:
    """What to say, and the exit code, for an exception that is not a BottleError: a full or
    read-only disk (a stage file, the state) is the operator's to fix, said so; anything else
    is a bug of ours, its traceback kept in a file for a bug report (never on screen)."""
    if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
        where = f" ({exc.filename})" if exc.filename else ""
        return (f"the controller could not write its files{where}: {exc.strerror or exc}\n"
                f"    free space on that disk (bottle keeps its state and stage files below {state_root()}), "
                "then run the command again"), 1
    return f"internal error: {type(exc).__name__}: {exc} (details: {write_traceback()})", 70


def exit_now() -> None:
    """End a successful run's process without Python's finalization: tearing down every module
    and object a launch imported took 35-40 ms after the work was done, on every command. There
    is nothing left to finalize: output is flushed here, every file bottle writes is closed when
    written, SSH connections and bottle locks are closed before, and no thread or command runs
    (invoke's runners wait for theirs)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or hung-up terminal
            stream.flush()
    os._exit(0)


def write_traceback() -> str:
    """Keep the traceback of an internal error in a file, for a bug report: 0600, as the state
    beside it (an error's message may quote what the operator keeps to themselves)."""
    path = state_root() / "last-error.log"
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, traceback.format_exc())
    return str(path)
