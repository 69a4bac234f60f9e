"""The one exception type a user can cause; the executor turns it into a clean exit."""

import signal

# A run a signal ends exits 128 + the signal's number, as a shell reports it: 130 for a Ctrl-C.
CTRL_C_EXIT = 128 + signal.SIGINT
# How a command stopped by Ctrl-C (SIGINT) ends: the docker CLI exits 130, a shell's child dies of it.
INTERRUPTED_EXITS = (CTRL_C_EXIT, -signal.SIGINT)
# The signals that stop a run as a Ctrl-C does (stopping.py), and how such a run exits.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
STOPPED_EXITS = tuple(128 + signum for signum in STOP_SIGNALS)


class BottleError(Exception):
    """A failure with a message meant for the person at the keyboard.

    `detail` carries supporting text (for example the tail of Docker's stderr)
    that is shown under the message, never a Python traceback.
    """

    def __init__(self, message: str, detail: str = "", exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.exit_code = exit_code  # of the command that failed, when one did

    @property
    def interrupted(self) -> bool:
        """The failed command was stopped by a Ctrl-C (SIGINT to the process group)."""
        return self.exit_code in INTERRUPTED_EXITS

    @property
    def stop_code(self) -> int | None:
        """The run's exit code when this failure is a Ctrl-C's (130) or a stop signal's."""
        if self.interrupted:
            return CTRL_C_EXIT
        return self.exit_code if self.exit_code in STOPPED_EXITS else None

    def __str__(self) -> str:
        if not self.detail:
            return self.message
        indented = "\n".join("    " + line for line in self.detail.rstrip().splitlines())
        return f"{self.message}\n{indented}"
