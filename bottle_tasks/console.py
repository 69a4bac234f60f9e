"""One rich console for everything bottle prints: step lines, tables, errors."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

# Progress and errors go to stderr so `--json` output on stdout stays parseable.
err = Console(stderr=True, highlight=False, soft_wrap=True)
# Tables piped to a file or a pager get room, not rich's 80-column default.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def step_done(name: str, seconds: float, summary: str = "") -> None:
    err.print(f"[green]✓[/] [bold]{name:<10}[/] {seconds:6.2f}s  {escape(summary)}")


def step_failed(name: str, seconds: float) -> None:
    err.print(f"[red]✗[/] [bold]{name:<10}[/] {seconds:6.2f}s  failed")


def note(text: str) -> None:
    err.print(f"  {escape(text)}")


def dry(argv_text: str) -> None:
    err.print(f"[dim]dry:[/] {escape(argv_text)}")


def error(text: str) -> None:
    err.print(f"[red bold]error:[/] {escape(text)}")


def is_tty() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()
