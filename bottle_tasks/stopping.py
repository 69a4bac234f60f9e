"""A SIGTERM or SIGHUP (a CI job cancelled, `kill`, `timeout`, a closed terminal) ends a run
as a Ctrl-C does: the run stops, rolls back what it created, and exits 128 + the signal's
number with the reason, instead of dying half-made.

The signal is raised in the main thread as `Stopped`, a KeyboardInterrupt, so every path that
copes with a Ctrl-C copes with it too. One difference: a Ctrl-C from a terminal reaches the
docker command in flight as well, which exits 130 and fails the step; a SIGTERM sent to bottle
alone does not, and invoke's runner, waiting on that command, takes the KeyboardInterrupt for
one to forward and keeps waiting. So the signal is also remembered, and `raise_if_stopped`,
called after each command, raises it again once the command is done.

A Ctrl-C that invoke forwarded while it waited is noted here too (`ctrl_c_in_command`): the
command may have taken it for a normal end (`docker exec` exits 0), and the run must end all
the same (`took_ctrl_c`, in `Target.run`). And one whose KeyboardInterrupt Python swallowed
(raised in a weakref callback, say an import's module lock) is raised again after the next
command, with no traceback (`_unraisable`).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any

from .errors import CTRL_C_EXIT, STOP_SIGNALS


class Stopped(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.signal = signal.Signals(signum).name
        self.exit_code = 128 + signum


_received: int | None = None  # the first stop signal of this run, until the clean-up handles it
_swallowed_ctrl_c = False  # a Ctrl-C's KeyboardInterrupt that Python swallowed (see _unraisable)
_ctrl_c_in_command = False  # a Ctrl-C came while a command ran (invoke forwarded it, and waited)
_terminals: list[int] = []  # our stdout and stderr, those of them that are a terminal
_other_unraisable = sys.__unraisablehook__  # the hook before ours: the other exceptions go to it


def _on_signal(signum: int, _frame) -> None:
    global _received
    if signum == signal.SIGHUP:
        _leave_hung_up_terminal()
    if _received is not None:
        # Stopping already. A hang-up often comes twice (from the kernel, and from the shell
        # passing it on to its jobs): raised again, it would land in the executor's own
        # handling of the first, before the clean-up is shielded.
        return
    _received = signum
    raise Stopped(signum)


def _leave_hung_up_terminal() -> None:
    """After a hang-up, writing to the terminal fails (EIO), and a failed write would cut the
    rollback short: output that went to a terminal goes to /dev/null instead (a pipe or a
    file, a CI log, keeps it). Which ones did is known from the start of the run: a terminal
    that hung up no longer says it is one."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in _terminals:
            with contextlib.suppress(OSError):
                os.dup2(null, fd)
        os.close(null)


def _unraisable(unraisable) -> None:
    """Python swallows an exception raised where it cannot propagate (a weakref callback, a
    __del__) and prints its traceback. A `Stopped` swallowed so is remembered all the same, and
    raised again by `raise_if_stopped`: no traceback for the user. So is a Ctrl-C: one that
    landed in an import's module-lock callback printed a traceback, and the launch went on."""
    global _swallowed_ctrl_c
    if isinstance(unraisable.exc_value, Stopped):
        return
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        _swallowed_ctrl_c = True
        return
    _other_unraisable(unraisable)


def begin() -> None:
    """At the start of a run, in the main thread: SIGTERM and SIGHUP stop it."""
    global _received, _terminals, _other_unraisable, _ctrl_c_in_command, _swallowed_ctrl_c
    _received, _ctrl_c_in_command, _swallowed_ctrl_c = None, False, False
    _terminals = [fd for fd in (1, 2) if os.isatty(fd)]
    if sys.unraisablehook is not _unraisable:
        _other_unraisable, sys.unraisablehook = sys.unraisablehook, _unraisable
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_signal)


def ctrl_c_in_command() -> None:
    """invoke got a Ctrl-C while it waited for a command (not a terminal session's, where the
    Ctrl-C is the program's): the command got it too, but may have taken it for a request to
    stop waiting, not a failure (`docker exec` then exits 0). `took_ctrl_c` says so, once."""
    global _ctrl_c_in_command
    _ctrl_c_in_command = True


def took_ctrl_c() -> bool:
    """After a command, in the main thread (the one a Ctrl-C interrupts): did a Ctrl-C come
    while it ran? Asked once: the answer is used up."""
    global _ctrl_c_in_command
    if threading.current_thread() is not threading.main_thread():
        return False
    came, _ctrl_c_in_command = _ctrl_c_in_command, False
    return came


def raise_if_stopped() -> None:
    """After a command: a stop signal that came while it ran (invoke kept waiting) ends the run
    now; and before a run counts as done, one that Python swallowed. Only the main thread
    stops; the run's background threads are waited for by it."""
    global _swallowed_ctrl_c
    if threading.current_thread() is not threading.main_thread():
        return
    if _received is not None:
        raise Stopped(_received)
    if _swallowed_ctrl_c:
        _swallowed_ctrl_c = False  # raised once: from here it is an ordinary Ctrl-C
        raise KeyboardInterrupt


def shielded() -> dict[signal.Signals, Any]:
    """From here on neither a Ctrl-C nor a stop signal cuts the clean-up short (the starts
    still ending, then the rollback): all three are ignored, also by the docker commands it
    runs (target.PromptLocal keeps them out of the terminal's reach). The handlers before,
    for `unshielded`."""
    global _received, _ctrl_c_in_command, _swallowed_ctrl_c
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, *STOP_SIGNALS)}
    # handled (none can come now): the rollback's commands run
    _received, _ctrl_c_in_command, _swallowed_ctrl_c = None, False, False
    return previous


def unshielded(previous: dict[signal.Signals, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def described(interrupt: KeyboardInterrupt) -> tuple[str, int]:
    """What to tell the user, and the exit code, for a Ctrl-C or a stop signal."""
    if isinstance(interrupt, Stopped):
        return f"stopped by {interrupt.signal}", interrupt.exit_code
    return "interrupted", CTRL_C_EXIT
