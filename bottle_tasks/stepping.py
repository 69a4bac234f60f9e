"""The `step` decorator: one console line per step, with its elapsed time."""
from __future__ import annotations

import functools
import time

from . import console


def step(name: str):
    """Wrap a task body that returns a one-line summary (or None)."""

    def decorate(body):
        @functools.wraps(body)
        def timed(c, *args, **kwargs):
            started = time.monotonic()
            try:
                summary = body(c, *args, **kwargs)
            except BaseException:
                console.step_failed(name, time.monotonic() - started)
                raise
            console.step_done(name, time.monotonic() - started, summary or "")
            return summary

        return timed

    return decorate
