"""Supervise without Docker: the requests board (bounded, hostile text made harmless), the
dashboard's screen and keys (rich's recording console), never-host rules."""
from __future__ import annotations

import asyncio
import time

import pytest
from rich.console import Console

from bottle_tasks.dashboard import Dashboard, Snapshot
from bottle_tasks.errors import BottleError
from bottle_tasks.manifest import never_hit
from bottle_tasks.sidecars.supervise.board import MAX_TEXT, Board, BoardFull, clean


def test_a_request_waits_for_the_decision():
    async def scenario():
        board = Board()
        request = board.submit("host", {"host": "pypi.org"}, "packages")
        waiting = asyncio.create_task(board.wait(request, timeout=5))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        board.decide(request.id, "approved", "ok")
        return await waiting

    done = asyncio.run(scenario())
    assert (done.state, done.note) == ("approved", "ok")


def test_a_request_nobody_decides_times_out_and_cannot_be_decided_later():
    async def scenario():
        board = Board()
        request = board.submit("question", {"question": "?"}, "")
        await board.wait(request, timeout=0.05)
        with pytest.raises(ValueError):
            board.decide(request.id, "approved")
        return request

    assert asyncio.run(scenario()).state == "timed-out"


def test_the_board_is_bounded():
    async def scenario():
        board = Board(max_pending=3)
        for i in range(3):
            board.submit("host", {"host": f"h{i}.example"}, "")
        with pytest.raises(BoardFull):
            board.submit("host", {"host": "one-more.example"}, "")

    asyncio.run(scenario())


@pytest.mark.parametrize("hostile", ["\x1b[2J\x1b[31mred", "line\nforged | row", "\u202eevil", "[bold]markup[/]"])
def test_what_the_agent_writes_is_shown_as_text(hostile):
    cleaned = clean(hostile)
    assert "\x1b" not in cleaned and "\n" not in cleaned and "\u202e" not in cleaned
    assert len(clean("x" * 10 * MAX_TEXT)) == MAX_TEXT
    dash = Dashboard(lambda *a: "")
    dash.update(Snapshot(requests=[request("r1", reason=cleaned)]))
    screen = render(dash)
    assert "\x1b[2J" not in screen
    if hostile.startswith("[bold]"):
        assert "[bold]markup[/]" in screen  # markup is printed, not interpreted


def request(rid: str, state: str = "pending", reason: str = "needs it", host: str = "pypi.org") -> dict:
    return {"id": rid, "bottle": "demo", "kind": "host", "what": {"host": host}, "reason": reason,
            "created": time.time() - 30, "state": state, "note": "", "decided": None}


def render(dash: Dashboard) -> str:
    console = Console(record=True, width=160, color_system=None)
    console.print(dash.render())
    return console.export_text()


def test_the_dashboard_shows_pending_requests_and_decides_with_keys():
    decided = []
    dash = Dashboard(lambda rid, verdict, note: decided.append((rid, verdict, note)) or f"{rid} {verdict}")
    dash.update(Snapshot(
        bottles={"demo": [{"role": "agent", "status": "Up 3 minutes"}, {"role": "firewall", "status": "Up 3 minutes"}]},
        requests=[request("r1"), request("r2", host="registry.npmjs.org"), request("r0", state="approved")],
        decisions=[{"ts": "2026-11-29T05:00:00Z", "bottle": "demo", "decision": "deny", "method": "GET",
                    "host": "evil.example", "path": "/", "rule": "not-allowed"}]))
    screen = render(dash)
    assert "r1" in screen and "allow pypi.org" in screen and "needs it" in screen
    assert "Up 3 minutes" in screen and "evil.example" in screen
    assert dash.selected == "r1"
    assert dash.key("j") and dash.selected == "r2"
    assert dash.key("k") and dash.selected == "r1"
    assert dash.key("a")
    assert dash.key("R", ask_note=lambda: "not now")
    assert decided == [("r1", "approved", ""), ("r1", "rejected", "not now")]
    assert not dash.key("q")


def test_a_failed_decision_is_shown_not_raised():
    def refuse(*_):
        raise BottleError("allow x: it reaches x, which network.never forbids")

    dash = Dashboard(refuse)
    dash.update(Snapshot(requests=[request("r1")]))
    dash.key("a")
    assert "network.never" in render(dash)


@pytest.mark.parametrize("entry, never, hit", [
    ("evil.example", ("evil.example",), "evil.example"),
    ("evil.example:8443", ("evil.example",), "evil.example"),
    ("*.example", ("evil.example",), "evil.example"),
    ("x.bad.example", ("*.bad.example",), "*.bad.example"),
    ("*.bad.example", ("*.example",), "*.example"),
    ("good.example", ("evil.example",), None),
    ("bad.example", ("*.bad.example",), None),   # *.bad.example does not cover bad.example itself
])
def test_never_covers_what_would_reach_it(entry, never, hit):
    assert never_hit(entry, never) == hit
