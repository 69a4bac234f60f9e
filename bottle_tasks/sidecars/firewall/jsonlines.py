"""JSON lines on stdout: the firewall's audit log and the egress proxy's decision lines.

Docker carries a container's stdout through containerd's shim to dockerd, which stores
each line: every write wakes both, on the cores the proxy needs. Under load the proxies
write a line per request, and `make bench` measured those wake-ups at about 8 % of the
firewall's requests/s with 16 connections. So a sidecar's running proxy (`batched`) writes
the lines made within ``BATCH_SECONDS`` (2 ms) of the first one together: no line waits
longer, there are only fewer writes. Written at the end of the turn that made it instead,
the egress proxy's route decision went out between its hook and the request's hand-over to
the firewall, in every routed request's path: 2 ms later, routed keep-alive requests ran
7 % faster (A/B, 4 interleaved rounds: 479 -> 512 req/s). Elsewhere (tests, tools, another
thread) a line is written at once.

A write that fails leaves the log broken: every later line raises (the hook that would
have logged fails closed, `failclosed.py`), and `on_broken` is told once: the sidecars stop
there, since no request may pass that the operator will never see.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import IO

# How long a batched line may wait for others (see above).
BATCH_SECONDS = 0.002


class JsonLines:
    def __init__(self, out: IO[str] | None = None, batched: bool = False):
        self._out = out
        self.batched = batched
        self._pending: list[str] = []
        self._broken: str | None = None
        self.on_broken: Callable[[str], None] | None = None

    @property
    def out(self) -> IO[str]:
        return self._out if self._out is not None else sys.stdout

    def write(self, record: dict) -> None:
        if self._broken is not None:
            raise OSError(f"the log cannot be written ({self._broken})")
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=True, default=str) + "\n"
        loop = _running_loop() if self.batched else None
        if loop is None:
            self._emit(line)
            return
        self._pending.append(line)
        if len(self._pending) == 1:
            loop.call_later(BATCH_SECONDS, self._end_of_turn)

    def flush(self) -> None:
        """Write what is pending now (the loop is ending, or a test wants it)."""
        if self._pending:
            text, self._pending = "".join(self._pending), []
            self._emit(text)

    @property
    def broken(self) -> str | None:
        """Why the log cannot be written, once a write failed."""
        return self._broken

    def _end_of_turn(self) -> None:
        try:
            self.flush()
        except (OSError, ValueError):
            pass  # `on_broken` was told; no hook is here to fail closed

    def _emit(self, text: str) -> None:
        try:
            out = self.out
            out.write(text)
            out.flush()
        except (OSError, ValueError) as e:  # ValueError: the stream was closed
            first = self._broken is None
            self._broken = f"{type(e).__name__}: {e}"
            if first and self.on_broken is not None:
                self.on_broken(self._broken)
            raise


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # no loop runs in this thread
        return None
