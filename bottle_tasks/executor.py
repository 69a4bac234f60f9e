"""The executor: runs invoke's task chain, and on failure rolls back what this run
created and exits cleanly with the reason (no traceback reaches the user)."""
from __future__ import annotations

import time

from invoke import Exit, Failure
from invoke.executor import Executor

from . import console, containers, stepping, undo
from .errors import BottleError


class BottleExecutor(Executor):
    def execute(self, *tasks):
        undo.JOURNAL.clear()
        containers.PENDING.clear()
        stepping.RUN_STARTED = time.monotonic()
        try:
            results = super().execute(*tasks)
            containers.settle()  # `inv proxy` alone is done only once the firewall listens
            return results
        except BottleError as exc:
            message, code = str(exc), 1
        except Failure as exc:  # a c.run outside the target (should not happen) — still no traceback
            message, code = f"command failed: {exc.result.command}\n{exc.result.stderr[-2000:]}", 1
        except KeyboardInterrupt:
            message, code = "interrupted", 130
        console.error(message)
        self._finish_failed_run()
        raise Exit(code=code)

    def _finish_failed_run(self) -> None:
        keep = bool((self.config.get("bottle") or {}).get("keep"))
        if not undo.JOURNAL:
            return
        if keep:
            names = ", ".join(action.name for _, action in undo.JOURNAL)
            console.note(f"kept for debugging (--keep): {names}; remove with `inv down`")
            return
        failures = undo.rollback()
        for failure in failures:
            console.error(f"rollback: {failure}")
        if not failures:
            console.note("rolled back everything this run created")
