"""The `bottle` console script's first instructions: quiet on a Ctrl-C while it loads.

Importing invoke and bottle's modules takes about 0.1 s. A Ctrl-C in that time would raise
KeyboardInterrupt in the middle of an import, outside anything that handles it, and Python
would print its traceback. Nothing has been done yet then, so the command says so and exits
130 (as a shell reports a Ctrl-C). Once loaded, Python's own handler is back: the executor
turns a Ctrl-C into a rollback, as before. This module imports nothing heavy itself; the
package's `__init__` imports nothing at all.
"""
from __future__ import annotations

import os
import signal

from .errors import CTRL_C_EXIT

NOTHING_DONE = b"bottle: interrupted while starting; nothing was done\n"


def _interrupted_while_loading(_signum: int, _frame) -> None:
    # os._exit: an exception raised here would land inside whatever module is importing
    os.write(2, NOTHING_DONE)
    os._exit(CTRL_C_EXIT)


def main() -> None:
    """Console-script entry point (pyproject.toml: [project.scripts] bottle)."""
    signal.signal(signal.SIGINT, _interrupted_while_loading)
    from .cli import main as run_program

    signal.signal(signal.SIGINT, signal.default_int_handler)
    run_program()
