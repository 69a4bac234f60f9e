"""The one exception type a user can cause; the executor turns it into a clean exit."""


class BottleError(Exception):
    """A failure with a message meant for the person at the keyboard.

    `detail` carries supporting text (for example the tail of Docker's stderr)
    that is shown under the message, never a Python traceback.
    """

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        if not self.detail:
            return self.message
        indented = "\n".join("    " + line for line in self.detail.rstrip().splitlines())
        return f"{self.message}\n{indented}"
