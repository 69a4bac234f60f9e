"""One rich console for everything bottle prints: step lines, tables, errors."""
from __future__ import annotations

import re
import sys
import unicodedata
from functools import lru_cache

from rich.console import Console
from rich.markup import escape
from rich.text import Text

# Progress and errors go to stderr so `--json` output on stdout stays parseable. No emoji
# codes: `:white_check_mark:` in the agent's text would print as a status icon.
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
# Tables piped to a file or a pager get room, not rich's 80-column default.
out = Console(highlight=False, soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 160)


def step_done(name: str, seconds: float, summary: str = "") -> None:
    err.print(f"[green]✓[/] [bold]{name:<10}[/] {seconds:6.2f}s  {escape(visible_lines(summary))}")


def step_failed(name: str, seconds: float) -> None:
    err.print(f"[red]✗[/] [bold]{name:<10}[/] {seconds:6.2f}s  failed")


def note(text: str) -> None:
    err.print(f"  {escape(visible_lines(text))}")


# What a terminal could obey or hide rather than show: every character of Unicode's "other"
# categories (C0/C1 controls, ESC among them; format characters: the bidirectional controls
# of "Trojan Source", zero-width ones; surrogates, private-use and unassigned code points)
# and the line/paragraph separators. Each is shown as an escape (ESC as the four characters
# \x1b), never sent raw. Printable ASCII is the fast path: only other runs are looked at.
_SUSPECT = re.compile(r"[^\x20-\x7e]+")
_HIDDEN_CATEGORIES = ("Zl", "Zp")


@lru_cache(maxsize=4096)
def _shown(char: str, layout: str) -> str:
    if char in layout:
        return char
    category = unicodedata.category(char)
    if category[0] == "C" or category in _HIDDEN_CATEGORIES:
        return char.encode("unicode_escape").decode("ascii")
    return char


def _escaper(layout: str):
    def escaped(run: re.Match) -> str:
        return "".join(_shown(char, layout) for char in run.group())
    return escaped


_escaped = _escaper("")
_escaped_but_layout = _escaper("\n\t")  # the line breaks and tabs a command's output needs


def visible(text: str) -> str:
    """`text` with its control and invisible characters shown as escapes (`\\x1b`), for text
    that may come from the agent: a terminal never interprets it, nothing in it is hidden."""
    return _SUSPECT.sub(_escaped, text)


def plain(value: object, style: str = "") -> Text:
    """A cell or line that may hold what the agent wrote (directly, or through the firewall's
    audit log): a Text, so markup is printed, not interpreted; control characters shown as
    escapes, since rich lets ESC through to the terminal."""
    return Text(visible(str(value)), style=style)


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
        return self.stream.write(_SUSPECT.sub(_escaped_but_layout, text))

    def flush(self) -> None:
        self.stream.flush()


def agent_output_streams() -> dict:
    """`out_stream`/`err_stream` for a command whose output the agent controls: escaped wherever
    it goes (a pipe or a file is often read on a terminal: `| head`, `| less -R`, `cat`), and
    not kept whole in memory as well, so a command may print for as long as it likes. Exactness
    is not lost: invoke has already decoded the bytes, each read alone, replacing what is not
    UTF-8."""
    return {"out_stream": VisibleStream(sys.stdout, keeps_output=False),
            "err_stream": VisibleStream(sys.stderr, keeps_output=False)}


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
