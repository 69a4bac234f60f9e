"""One rich console for everything bottle prints: step lines, tables, errors."""
from __future__ import annotations

import re
import sys

from rich.console import Console
from rich.markup import escape
from rich.text import Text

# Progress and errors go to stderr so `--json` output on stdout stays parseable.
err = Console(stderr=True, highlight=False, soft_wrap=True)
# Tables piped to a file or a pager get room, not rich's 80-column default.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def step_done(name: str, seconds: float, summary: str = "") -> None:
    err.print(f"[green]✓[/] [bold]{name:<10}[/] {seconds:6.2f}s  {escape(visible_lines(summary))}")


def step_failed(name: str, seconds: float) -> None:
    err.print(f"[red]✗[/] [bold]{name:<10}[/] {seconds:6.2f}s  failed")


def note(text: str) -> None:
    err.print(f"  {escape(visible_lines(text))}")


# C0/C1 control characters (ESC starts terminal escape sequences), DEL, the Unicode
# line/paragraph separators and the bidirectional controls (marks, embeddings, overrides,
# isolates: "Trojan Source", a diff line shown in another order than it reads to the
# compiler): shown as escapes, never sent to the terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(control: re.Match) -> str:
    return control.group().encode("unicode_escape").decode("ascii")  # ESC as the four characters \x1b


def visible(text: str) -> str:
    """`text` with its control characters shown as escapes (`\\x1b`), for text that may come
    from the agent: a terminal never interprets it."""
    return _CONTROL.sub(_escaped, text)


def plain(value: object, style: str = "") -> Text:
    """A cell or line that may hold what the agent wrote (directly, or through the firewall's
    audit log): a Text, so markup is printed, not interpreted; control characters shown as
    escapes, since rich lets ESC through to the terminal."""
    return Text(visible(str(value)), style=style)


# Layout a command's output needs (line breaks, tabs); every other control character is escaped.
_CONTROL_BUT_LAYOUT = re.compile(_CONTROL.pattern.replace(r"\x00-\x1f", r"\x00-\x08\x0b-\x1f"))


class VisibleStream:
    """Writes what the agent printed to a terminal with its control characters shown as escapes
    (line breaks and tabs kept): a terminal obeys them otherwise (OSC 52 sets the clipboard,
    OSC 8 makes links, CR overwrites a line). Any chunking is safe: each character is
    escaped alone."""

    def __init__(self, stream, keeps_output: bool = True):
        self.stream = stream
        # False: invoke's runner keeps none of it for the result either (`target.LinearOutput`)
        self.keeps_output = keeps_output

    def write(self, text: str) -> int:
        return self.stream.write(_CONTROL_BUT_LAYOUT.sub(_escaped, text))

    def flush(self) -> None:
        self.stream.flush()


def terminal_safe_streams() -> dict:
    """`out_stream`/`err_stream` for a command whose output the agent controls: escaped where it
    goes to a terminal, as it is where it goes to a file or a pipe."""
    return {name: VisibleStream(stream) for name, stream in (("out_stream", sys.stdout), ("err_stream", sys.stderr))
            if stream.isatty()}


def visible_lines(text: str) -> str:
    """`visible`, line by line: a message keeps its line breaks, nothing else raw."""
    return "\n".join(visible(line) for line in text.split("\n"))


def dry(argv_text: str) -> None:
    err.print(f"[dim]dry:[/] {escape(visible(argv_text))}")


def echo(command: str) -> None:
    """`inv --echo`: a command as it runs (invoke's own echo is off with hidden output)."""
    err.print(f"[dim]$[/] {escape(visible(command))}")


def error(text: str) -> None:
    # an error may quote a command's stderr, and that command may have run in the agent
    err.print(f"[red bold]error:[/] {escape(visible_lines(text))}")


def warning(text: str) -> None:
    err.print(f"[yellow bold]warning:[/] {escape(visible_lines(text))}")


def is_tty() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()
