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



def test_a_request_whose_caller_went_away_frees_its_place():
    async def scenario():
        board = Board(max_pending=1)
        request = board.submit("host", {"host": "example.com"}, "x")
        waiting = asyncio.ensure_future(board.wait(request, 60))
        await asyncio.sleep(0)
        waiting.cancel()  # the MCP client disconnected
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert request.state == "timed-out" and "stopped waiting" in request.note
        assert board.pending() == []
        board.submit("host", {"host": "example.org"}, "y")  # its place is free again
        with pytest.raises(ValueError):
            board.decide(request.id, "approved")

    asyncio.run(scenario())

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


@pytest.mark.parametrize("spelled", ["METADATA.example.internal", "metadata.example.internal.",
                                     " metadata.example.internal", "Metadata.Example.Internal:8443"])
def test_an_allow_spelled_otherwise_still_meets_network_never(spelled):
    """The firewall reads `METADATA.x.` as `metadata.x`: so does `inv allow` (and an approval),
    before it compares with network.never and before anything is recorded."""
    from types import SimpleNamespace

    from bottle_tasks.steps.allow import change_policy

    class Untouchable:
        def get(self, *_):
            raise AssertionError("the state was read: the never rule was passed")

    bottle = SimpleNamespace(agent=SimpleNamespace(network=SimpleNamespace(never=("metadata.example.internal",))),
                             manifest=SimpleNamespace(path="m.yaml"), state=Untouchable())
    with pytest.raises(BottleError, match="network.never"):
        change_policy(None, spelled, "allow", bottle)


# -- a route request: what the operator is shown is what is injected ---------------------------

SECRETS = ("PUBLIC_DEMO_TOKEN", "GITHUB_TOKEN")


def route_request(inject: list[dict], paths: list[str] | None = None) -> dict:
    what = {"host": "api.github.com", "paths": paths or ["/repos/"], "methods": ["GET"], "inject": inject}
    return {"id": "r0a1b2c", "bottle": "demo", "kind": "route", "what": what, "reason": "the API",
            "created": time.time(), "state": "pending", "note": "", "decided": None}


@pytest.mark.parametrize("fmt", ["{GITHUB_TOKEN}", "Bearer {secret} {GITHUB_TOKEN}", "{secret}{secret}",
                                 "Bearer", "{secret} {}", "{secret}}", "{{secret}}"])
def test_a_format_that_could_carry_another_secret_is_refused_when_asked(fmt):
    from bottle_tasks.sidecars.supervise.rules import route_problem  # what request_route checks

    what = route_request([{"header": "x-demo-key", "secret": "PUBLIC_DEMO_TOKEN", "format": fmt}])["what"]
    problem = route_problem(what, frozenset(SECRETS))
    assert problem and "{secret}" in problem


@pytest.mark.parametrize("inject", [[], [{"header": "authorization", "secret": "GITHUB_TOKEN"}],
                                    [{"header": "authorization", "secret": "GITHUB_TOKEN", "format": "Bearer {secret}"}]])
def test_a_plain_injection_is_asked_for(inject):
    from bottle_tasks.sidecars.supervise.rules import route_problem

    assert route_problem(route_request(inject)["what"], frozenset(SECRETS)) is None


@pytest.fixture
def route_applied(monkeypatch):
    """supervision.apply on a bottle declaring SECRETS; the bottle-touching calls recorded."""
    from types import SimpleNamespace

    from bottle_tasks import supervision
    from bottle_tasks.steps import egress

    applied: list[list[dict]] = []
    def route_add_changes(bottle, host, paths, methods, injections):
        applied.append(injections)
        return {"added": [{"host": host, "paths": paths, "methods": methods, "inject": injections}]}

    monkeypatch.setattr(egress, "route_add_changes", route_add_changes)
    monkeypatch.setattr(egress, "apply_route_change", lambda bottle, changes, verb: "reloaded")
    bottle = SimpleNamespace(agent=SimpleNamespace(name="demo", secrets=list(SECRETS), routes=()),
                             manifest=SimpleNamespace(path="bottle.yaml"), state=SimpleNamespace(get=lambda key: None))
    return lambda request: supervision.apply(None, bottle, request), applied


def test_an_approval_injects_exactly_what_the_operator_was_shown(route_applied):
    from bottle_tasks.supervision import describe

    apply, applied = route_applied
    injection = {"header": "authorization", "secret": "GITHUB_TOKEN", "format": "Bearer {secret}"}
    request = route_request([injection])
    assert 'authorization <- GITHUB_TOKEN as "Bearer {secret}"' in describe(request)
    assert apply(request) == "reloaded"
    assert applied == [[injection]]


def test_an_approval_never_applies_a_format_naming_another_secret(route_applied):
    """A request the sidecar should have refused (an older sidecar, a bug): applying it fails
    closed instead of injecting GITHUB_TOKEN where the operator read PUBLIC_DEMO_TOKEN."""
    apply, applied = route_applied
    swap = route_request([{"header": "x-demo-key", "secret": "PUBLIC_DEMO_TOKEN", "format": "{GITHUB_TOKEN}"}])
    with pytest.raises(BottleError, match=r"\{secret\}"):
        apply(swap)
    assert applied == []



def test_an_approval_whose_request_ended_meanwhile_says_the_change_stays(monkeypatch):
    """The change is made before the agent is told; if the request timed out in between, the
    operator must not read a plain failure while the change is in force."""
    from types import SimpleNamespace

    from bottle_tasks import supervision

    request = route_request([])
    monkeypatch.setattr(supervision, "find", lambda target, rid: request)
    monkeypatch.setattr(supervision, "c_target", lambda c: None)
    monkeypatch.setattr(supervision, "apply", lambda c, bottle, req: "route added, egress proxy reloaded")
    monkeypatch.setattr(supervision, "control", lambda *a: {"ok": False, "error": "request r0a1b2c is timed-out"})
    bottle = SimpleNamespace(state=SimpleNamespace(resource=lambda role: "bottle-demo-supervise"), target=None)
    with pytest.raises(BottleError) as raised:
        supervision.decide(None, request["id"], "approved", "", lambda slug: bottle)
    assert "the change was made" in raised.value.message and "timed-out" in raised.value.message
    assert "inv route rm" in raised.value.detail
    with pytest.raises(BottleError) as raised:  # a rejection changed nothing: the error alone
        supervision.decide(None, request["id"], "rejected", "", lambda slug: bottle)
    assert "change" not in raised.value.message

def test_what_is_injected_stays_on_screen_whatever_the_paths():
    """A full-screen dashboard crops to the terminal's height: 16 paths of 200 characters must
    not push the injected header and secret off it."""
    from rich.screen import Screen

    inject = [{"header": "authorization", "secret": "GITHUB_TOKEN", "format": "Bearer {secret}"}]
    dash = Dashboard(lambda *a: "")
    dash.update(Snapshot(bottles={"demo": []}, requests=[route_request(inject, ["/api/v1/" + "a" * 192] * 16)]))
    console = Console(record=True, width=120, height=40, color_system=None)
    console.print(Screen(dash.render()))
    screen = console.export_text()
    for shown in ("api.github.com", "GITHUB_TOKEN", "authorization <- GITHUB_TOKEN as \"Bearer", "{secret}\"",
                  "16 path(s)"):
        assert shown in screen, shown


def test_terminal_escapes_reach_the_operator_as_text():
    """The audit log is JSON, so an ESC the agent put in a request path comes back as ESC;
    rich lets ESC through: every cell the dashboard shows goes through console.visible()."""
    import io
    import json

    path = "/x\x1b[2J\x1b[H FAKE \x1b]0;owned\x1b\\"
    line = json.dumps({"ts": "2026-01-01T00:00:00.000Z", "method": "GET", "host": "pypi.org", "path": path,
                       "decision": "allow", "rule": "allowlist"})
    hostile = request("r1", reason="\x1b[31mred\x9b2J")  # as if it got past the sidecar's clean()
    dash = Dashboard(lambda *a: "")
    dash.update(Snapshot(bottles={"demo": [{"role": "firewall", "status": "Up"}]}, requests=[hostile],
                         decisions=[{"bottle": "demo", **json.loads(line)}]))
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=200).print(dash.render())
    screen = out.getvalue()
    for raw in ("\x1b[2J", "\x1b[H", "\x1b]0;owned", "\x1b[31mred", "\x9b"):
        assert raw not in screen, repr(raw)
    assert "\\x1b[2J" in screen and "\\x1b[31mred" in screen


# -- a hostile agent around the operator's decisions ---------------------------------------------

def test_the_agents_own_noise_never_pushes_the_operators_decisions_off_the_board():
    """Refusals cost the agent nothing (a `never` host, a malformed one) and so does a call it
    cancels: thousands of them must not take the operator's approvals off `inv requests`."""
    from bottle_tasks.sidecars.supervise.board import KEPT_DECIDED

    async def scenario():
        board = Board()
        approved = board.submit("host", {"host": "pypi.org"}, "packages")
        board.decide(approved.id, "approved")
        for _ in range(3 * KEPT_DECIDED):
            board.refuse("host", {"host": "never.example"}, "x", "network.never")
            cancelled = board.submit("host", {"host": "x.example"}, "x")
            waiting = asyncio.ensure_future(board.wait(cancelled, 60))
            await asyncio.sleep(0)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        return board, approved

    board, approved = asyncio.run(scenario())
    assert board.requests[approved.id].state == "approved"
    assert len(board.requests) <= 2 * KEPT_DECIDED + 1  # still bounded


def test_no_request_takes_the_id_of_one_before_it():
    """Not of one on the board (the operator may be looking at it), nor of one forgotten since
    (the operator may act on an id read from an older listing): random 24-bit ids came again."""
    async def scenario():
        board = Board()
        ids = [board.refuse("host", {"host": "never.example"}, "x", "network.never").id for _ in range(20000)]
        shown = board.submit("host", {"host": "pypi.org"}, "packages")
        return board, ids, shown

    board, ids, shown = asyncio.run(scenario())
    assert len(set(ids + [shown.id])) == 20001
    assert all(len(i) == 7 and i.startswith("r") for i in ids)
    assert board.requests[shown.id].what == {"host": "pypi.org"} and board.requests[shown.id].state == "pending"


def test_an_id_two_bottles_share_decides_nothing(monkeypatch):
    from bottle_tasks import supervision

    twins = [{**request("rabcdef", host="pypi.org"), "bottle": "mine"},
             {**request("rabcdef", host="evil.example"), "bottle": "theirs"}]
    monkeypatch.setattr(supervision, "requests", lambda target: twins)
    monkeypatch.setattr(supervision, "c_target", lambda c: None)
    opened = []
    with pytest.raises(BottleError, match="several bottles"):
        supervision.decide(None, "rabcdef", "approved", "", opened.append)
    assert opened == []  # no bottle was even opened, let alone changed


def test_a_selected_request_that_ends_is_not_replaced_by_another():
    """The agent ends the request the operator is reading (it cancels its call) while another
    waits: `a`, pressed for the first, must not approve the second."""
    decided = []
    dash = Dashboard(lambda rid, verdict, note: decided.append((rid, verdict)) or "done")
    dash.update(Snapshot(requests=[request("r1", host="docs.example")]))
    assert dash.selected == "r1"  # the first snapshot picks one: nothing was on screen before
    dash.update(Snapshot(requests=[request("r2", host="evil.example"), request("r1", host="docs.example")]))
    assert dash.selected == "r1"
    dash.update(Snapshot(requests=[request("r2", host="evil.example"), request("r1", state="timed-out")]))
    assert "r1 ended (timed-out)" in render(dash) and "nothing is selected" in render(dash)
    dash.key("a")
    assert decided == [] and dash.selected is None
    dash.key("j")  # the operator chooses: now they see what `a` acts on
    assert dash.selected == "r2" and "selected r2 (demo): allow evil.example" in render(dash)
    dash.key("a")
    assert decided == [("r2", "approved")]


def test_a_decision_the_operator_made_leaves_its_own_message():
    dash = Dashboard(lambda rid, verdict, note: f"{rid} {verdict}: applied")
    dash.update(Snapshot(requests=[request("r1")]))
    dash.key("a")
    dash.update(Snapshot(requests=[request("r1", state="approved")]))
    assert "r1 approved: applied" in render(dash) and "ended" not in render(dash)


def test_a_flood_of_ended_requests_leaves_the_firewall_decisions_on_screen():
    """Refused requests cost the agent nothing: a screen full of them, each with a reason of
    1,000 characters, must not push the firewall's decisions or the operator's keys off a
    full-screen dashboard (which crops to the terminal's height)."""
    from rich.screen import Screen

    flood = [request(f"r{i:06x}", state="refused", reason="y" * MAX_TEXT) for i in range(50)]
    pending = [request(f"p{i:06x}", reason="z" * MAX_TEXT) for i in range(16)]
    dash = Dashboard(lambda *a: "")
    dash.update(Snapshot(bottles={"demo": [{"role": "firewall", "status": "Up"}]}, requests=[*pending, *flood],
                         decisions=[{"ts": "t", "bottle": "demo", "decision": "deny", "method": "GET",
                                     "host": "exfil.example", "path": "/x", "rule": "dlp"}]))
    console = Console(record=True, width=120, height=50, color_system=None)
    console.print(Screen(dash.render()))
    screen = console.export_text()
    assert "exfil.example" in screen and "a approve" in screen
    assert "p000000" in screen and "pending" in screen


def test_long_request_paths_in_the_firewall_log_leave_the_selected_request_on_screen():
    """The dashboard shows the selected request whole in the operator's panel, below the
    firewall's decisions: eight paths of 8,000 characters the agent sent must not push it off."""
    from rich.screen import Screen

    decisions = [{"ts": "t", "bottle": "demo", "decision": "deny", "method": "GET", "host": "x.example",
                  "path": "/" + "p" * 8000, "rule": "not-allowed"} for _ in range(8)]
    dash = Dashboard(lambda *a: "")
    dash.update(Snapshot(requests=[request("r1", host="docs.example")], decisions=decisions))
    console = Console(record=True, width=120, height=50, color_system=None)
    console.print(Screen(dash.render()))
    assert "selected r1 (demo): allow docs.example" in console.export_text()


def test_a_route_added_after_a_removal_is_that_route_alone():
    """`inv route rm HOST` took the manifest's credential route away; a route added for HOST
    afterwards (by hand or by an approval) once brought it back, credential and all."""
    from types import SimpleNamespace

    from bottle_tasks.policy_render import effective_routes

    manifest_route = {"host": "api.test", "paths": ["/"], "methods": [], "inject": [{"header": "x-key", "secret": "K"}]}
    agent = SimpleNamespace(routes=[SimpleNamespace(host="api.test", to_json=lambda: manifest_route)])
    added = {"host": "api.test", "paths": ["/public/"], "methods": ["GET"], "inject": []}
    assert effective_routes(agent, {}) == [manifest_route]
    assert effective_routes(agent, {"removed": ["api.test"]}) == []
    assert effective_routes(agent, {"removed": ["api.test"], "added": [added]}) == [added]


def test_a_sidecar_that_does_not_answer_leaves_the_others_requests_listed(monkeypatch, capsys):
    """One bottle's sidecar, stuck (its agent kept its loop busy) or gone, made `inv requests`,
    `approve` and `reject` of every bottle on the host fail, and ended the dashboard."""
    from bottle_tasks import supervision

    monkeypatch.setattr(supervision, "sidecars", lambda target: {"stuck": "bottle-stuck-supervise",
                                                                 "fine": "bottle-fine-supervise"})

    fine = request("rabcdef", host="pypi.org")

    def control(target, container, *args):
        if container == "bottle-stuck-supervise":
            raise BottleError(f"supervise sidecar {container} did not answer")
        return {"requests": [fine]}

    monkeypatch.setattr(supervision, "control", control)
    listed = supervision.requests(None)
    assert [(r["id"], r["bottle"]) for r in listed] == [("rabcdef", "fine")]
    assert "bottle-stuck-supervise did not answer: bottle stuck's requests are not shown" in capsys.readouterr().err
    silent: list[str] = []
    assert supervision.requests(None, silent) == listed and silent == ["bottle-stuck-supervise"]
