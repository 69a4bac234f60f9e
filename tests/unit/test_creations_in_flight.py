"""A creation a Ctrl-C cut short (undo.creating): the docker CLI is stopped, or the Ctrl-C
lands before invoke waits for it, and the engine makes the network a moment later. The
rollback must wait for it and remove it, not find nothing and leave it behind (seen: a
launch Ctrl-C'd during `net` left bottle-…-net-egress, and every later launch of that bottle
then failed with "has no net-egress yet")."""
from __future__ import annotations

import json
import threading
import time

import pytest

from bottle_tasks import run, undo
from bottle_tasks.errors import CTRL_C_EXIT, BottleError
from bottle_tasks.state import State
from bottle_tasks.target import Result, command_failed


class SlowEngine:
    """A Docker host whose engine makes a network `delay` seconds after it was asked (None:
    never), and records what it was asked to remove."""

    dry = False

    def __init__(self, delay: float | None):
        self.delay, self.made, self.removed = delay, set(), []
        self.labels = {"bottle.slug": "demo", "bottle.role": "net-egress"}

    def create(self, name: str) -> None:
        if self.delay is not None:
            threading.Timer(self.delay, self.made.add, [name]).start()

    def run(self, argv, check=True, **_):
        if argv[1:3] == ["network", "inspect"]:
            name = argv[-1]
            return Result(json.dumps(self.labels) + "\n", "", 0) if name in self.made \
                else Result("", f"Error: No such network: {name}", 1)
        if argv[1:3] == ["network", "rm"]:
            self.removed += argv[3:]
            self.made -= set(argv[3:])
            return Result("", "", 0)
        raise AssertionError(f"unexpected command {argv}")


class Bottle:
    slug = "demo"
    dry = False

    def __init__(self, target: SlowEngine, tmp_path):
        self.target = target
        self.state = State("demo", tmp_path / "state.json", {"resources": {}, "undo": []}, persist=False)


@pytest.fixture(autouse=True)
def fresh_run():
    run.begin()


def launch_stopped_during_create(bottle: Bottle, stop: BaseException) -> None:
    """`net`: record, then the create command, which the stop cuts short."""
    name = "bottle-demo-net-egress"
    undo.record(bottle, "network", name, "net-egress", "net")
    with pytest.raises(type(stop)), undo.creating(bottle, "network", {name: "net-egress"}):
        bottle.target.create(name)
        raise stop


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), BottleError("interrupted", exit_code=CTRL_C_EXIT)],
                         ids=["before invoke waited", "the CLI stopped"])
def test_the_rollback_waits_for_a_creation_a_ctrl_c_cut_short_and_removes_it(tmp_path, stop):
    engine = SlowEngine(delay=0.3)
    launch_stopped_during_create(Bottle(engine, tmp_path), stop)
    assert undo.rollback() == []
    time.sleep(0.5)  # long after the engine made it
    assert engine.removed == ["bottle-demo-net-egress"] and engine.made == set()


def test_one_the_engine_never_makes_is_given_up_after_a_bounded_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(undo, "IN_FLIGHT_WAIT", 0.3)
    engine = SlowEngine(delay=None)
    bottle = Bottle(engine, tmp_path)
    launch_stopped_during_create(bottle, KeyboardInterrupt())
    started = time.monotonic()
    assert undo.rollback() == []
    assert engine.removed == [] and time.monotonic() - started < 2  # not ours to remove: nothing is
    assert bottle.state.undo_actions() == []


def test_a_creation_the_engine_refused_is_forgotten_at_once(tmp_path):
    engine = SlowEngine(delay=None)
    bottle = Bottle(engine, tmp_path)
    launch_stopped_during_create(bottle, BottleError("network with name … already exists"))
    assert run.now().creating == [] and run.now().journal == []


def test_a_ctrl_c_that_stopped_the_cli_mid_request_is_not_taken_for_a_missing_engine():
    """The CLI says "error during connect: … docker.sock …: context canceled"."""
    stderr = ('error during connect: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.50/networks/bottle-demo-net": '
              "context canceled")
    error = command_failed(["docker", "network", "inspect"], Result("", stderr, CTRL_C_EXIT), "the local Docker host")
    assert str(error).startswith("interrupted") and error.exit_code == CTRL_C_EXIT
