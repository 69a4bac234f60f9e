"""Progress on long work (image builds, large copies): live rows on a terminal, one
plain log line per step when the output is a file or a pipe (CI logs, tests).

A `Board` holds one row per activity; rows may be updated from several threads
(images build side by side). `BuildOutput` is a file-like sink for `docker build`'s
output that turns the legacy builder's `Step N/M : INSTRUCTION` lines into row updates.
"""
from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.markup import escape

from . import console

if TYPE_CHECKING:
    from rich.progress import Progress

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
WIDTH = 70  # of an instruction shown in a row: the rest is noise on one line


class Row:
    def __init__(self, board: "Board", name: str, task_id=None):
        self.board, self.name, self.task_id = board, name, task_id
        self.started = time.monotonic()

    def update(self, text: str) -> None:
        self.board._update(self, text)

    def finish(self, text: str = "done") -> None:
        """The activity ended: its live row goes (the step's own line reports it)."""
        self.board._finish(self, text)


class Board:
    """Live rows (rich) when stderr is a terminal, else a plain line per update."""

    def __init__(self, out=None, live: bool | None = None):
        self.out = out or console.err
        self.live = self.out.is_terminal if live is None else live
        self._lock = threading.Lock()
        self._progress: Progress | None = None

    def __enter__(self) -> "Board":
        if self.live:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn  # builds only

            self._progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[name]:<10}[/]"),
                                      TimeElapsedColumn(), TextColumn("{task.description}"),
                                      console=self.out, transient=True)
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress:
            self._progress.stop()

    def row(self, name: str, text: str = "starting") -> Row:
        task_id = self._progress.add_task(_shown(text), name=_shown(name), total=None) if self._progress else None
        row = Row(self, name, task_id)
        if not self._progress:
            self._line(row, text)
        return row

    def _update(self, row: Row, text: str) -> None:
        if self._progress:
            self._progress.update(row.task_id, description=_shown(text))
        else:
            self._line(row, text)

    def _finish(self, row: Row, text: str) -> None:
        if self._progress:
            self._progress.remove_task(row.task_id)
        else:
            self._line(row, text)

    def _line(self, row: Row, text: str) -> None:
        with self._lock:  # whole lines, even from threads side by side
            took = time.monotonic() - row.started
            self.out.print(f"  {_shown(row.name)}: {_shown(text)} [{took:.0f}s]", highlight=False)


def _shown(text: str) -> str:
    """A build's line for rich's markup: a Dockerfile's step, or what its RUN printed."""
    return escape(console.visible(text))


_SHARED: dict = {"board": None, "users": 0}
_SHARED_LOCK = threading.Lock()


@contextmanager
def board():
    """The board of the current activity: callers at the same time (threads building images
    side by side) share one, since a terminal has room for one live display."""
    with _SHARED_LOCK:
        if _SHARED["board"] is None:
            _SHARED["board"] = Board().__enter__()
        _SHARED["users"] += 1
        shared = _SHARED["board"]
    try:
        yield shared
    finally:
        with _SHARED_LOCK:
            _SHARED["users"] -= 1
            if not _SHARED["users"]:
                _SHARED["board"] = None
                shared.__exit__(None, None, None)


class BuildOutput:
    """A write()-able sink for `docker build` output: each `Step N/M` becomes a row update.
    Keeps the last lines, so a failed build can show what it printed last."""

    def __init__(self, row: Row, keep: int = 30):
        self.row, self.keep = row, keep
        self.tail: list[str] = []
        self._partial = ""

    def write(self, data: str) -> int:
        self._partial += data
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._line(line.rstrip("\r"))
        return len(data)

    def flush(self) -> None:
        pass

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        self.tail = (self.tail + [line])[-self.keep:]
        found = _STEP.match(line)
        if found:
            number, total, instruction = found.groups()
            instruction = " ".join(instruction.split())
            if len(instruction) > WIDTH:
                instruction = instruction[:WIDTH - 1] + "…"
            self.row.update(f"step {number}/{total}: {instruction}")
