"""The sidecars' JSON lines on stdout (sidecars/firewall/jsonlines.py): batched for a moment
(BATCH_SECONDS) in a running proxy, at once elsewhere; a failed write breaks the log for good."""
from __future__ import annotations

import asyncio
import io
import json
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bottle_tasks" / "sidecars"))
from firewall.jsonlines import BATCH_SECONDS, JsonLines

PAST_THE_BATCH = BATCH_SECONDS * 5


class CountingOut(io.StringIO):
    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, text):
        self.writes += 1
        return super().write(text)


class FailingOut:
    def __init__(self):
        self.writes = 0

    def write(self, text):
        self.writes += 1
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        pass


def records(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_unbatched_lines_are_written_at_once_even_inside_a_loop():
    out = CountingOut()
    lines = JsonLines(out)

    async def turn():
        lines.write({"n": 1})
        assert records(out) == [{"n": 1}]

    asyncio.run(turn())


def test_lines_of_a_moment_go_out_together_in_order_when_it_ends():
    out = CountingOut()
    lines = JsonLines(out, batched=True)

    async def turns():
        lines.write({"n": 0})
        await asyncio.sleep(0)  # another turn of the loop, within the moment
        for n in (1, 2):
            lines.write({"n": n})
        assert out.getvalue() == ""
        await asyncio.sleep(PAST_THE_BATCH)
        assert records(out) == [{"n": 0}, {"n": 1}, {"n": 2}] and out.writes == 1
        lines.write({"n": 3})
        await asyncio.sleep(PAST_THE_BATCH)
        assert records(out)[-1] == {"n": 3} and out.writes == 2

    asyncio.run(turns())


def test_flush_writes_what_is_pending_now():
    out = CountingOut()
    lines = JsonLines(out, batched=True)

    async def turn():
        lines.write({"event": "last"})
        lines.flush()
        assert records(out) == [{"event": "last"}]

    asyncio.run(turn())


def test_a_batched_log_written_from_a_thread_without_a_loop_writes_at_once():
    out = CountingOut()
    lines = JsonLines(out, batched=True)
    thread = threading.Thread(target=lines.write, args=({"from": "thread"},))
    thread.start()
    thread.join()
    assert records(out) == [{"from": "thread"}]


def test_a_failed_write_breaks_the_log_tells_once_and_every_later_line_raises():
    out = FailingOut()
    told: list[str] = []
    lines = JsonLines(out)
    lines.on_broken = told.append
    with pytest.raises(BrokenPipeError):
        lines.write({"n": 1})
    with pytest.raises(OSError, match="cannot be written"):
        lines.write({"n": 2})
    assert out.writes == 1 and lines.broken and told == [lines.broken]


def test_a_failed_write_at_the_end_of_a_batch_breaks_the_log_for_the_next_hook():
    out = FailingOut()
    told: list[str] = []
    lines = JsonLines(out, batched=True)
    lines.on_broken = told.append

    async def turns():
        lines.write({"n": 1})  # pending: the failure comes at the end of the moment, outside any hook
        await asyncio.sleep(PAST_THE_BATCH)
        assert told and "BrokenPipeError" in told[0]
        with pytest.raises(OSError, match="cannot be written"):
            lines.write({"n": 2})  # the next hook that logs fails, and so fails closed

    asyncio.run(turns())
    assert len(told) == 1


def test_lines_are_ascii_json_and_odd_values_are_strings():
    out = io.StringIO()
    JsonLines(out).write({"host": "é\u202e", "obj": Path("/x")})
    line = out.getvalue()
    assert line.isascii() and line.endswith("\n") and json.loads(line) == {"host": "é\u202e", "obj": "/x"}
