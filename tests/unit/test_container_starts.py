"""Container starts in the background and readiness probes (containers.py), against a
recording stand-in for a bottle: which docker commands run, and what a failed start reports."""
from __future__ import annotations

import threading

import pytest

from bottle_tasks import containers, run
from bottle_tasks.errors import BottleError
from bottle_tasks.target import Result


class FakeBottle:
    """Answers docker commands as a real engine would for containers that start (or not)."""

    slug = "demo"
    dry = False

    def __init__(self, failing: set[str] = frozenset(), gate: threading.Event | None = None,
                 unjoinable: set[str] = frozenset()):
        self.failing, self.gate, self.unjoinable = failing, gate, unjoinable
        self.commands: list[list[str]] = []
        self.lock = threading.Lock()

    def run(self, argv, check=True, **_):
        with self.lock:
            self.commands.append(argv)
        verb = argv[1]
        if argv[1:3] == ["network", "connect"]:
            network = argv[-2]
            return Result("", f"Error response from daemon: network {network} not found", 1) \
                if network in self.unjoinable else Result("", "", 0)
        if verb == "start":
            if self.gate is not None:
                self.gate.wait(5)
            name = argv[-1]
            return Result("", f"Error response from daemon: {name}: cannot start", 1) \
                if name in self.failing else Result(name + "\n", "", 0)
        if verb == "container":  # inspect, one line a container
            names = argv[argv.index("--format") + 2:]
            return Result("".join(f"/{n} {'false' if n in self.failing else 'true'}\n" for n in names), "", 0)
        if verb == "logs":
            return Result("bottle-firewall: error: bad policy\n", "", 0)
        if verb == "exec":
            return Result("", "", 0)
        raise AssertionError(f"unexpected command {argv}")


@pytest.fixture(autouse=True)
def fresh_run():
    run.begin()
    yield
    containers.abandon_starts()


def test_a_start_runs_in_the_background_and_is_awaited():
    gate = threading.Event()
    bottle = FakeBottle(gate=gate)
    item = containers.Starting.begin(bottle, "bottle-demo-firewall")
    run.now().starting.append(item)
    assert item.thread is not None and item.thread.is_alive()  # begun, not waited for
    gate.set()
    containers.await_started()
    assert run.now().starting == []
    assert ["docker", "start", "bottle-demo-firewall"] in bottle.commands


def test_waiting_for_one_container_leaves_the_others_in_flight():
    gate = threading.Event()
    bottle = FakeBottle(gate=gate)
    for name in ("bottle-demo-firewall", "bottle-demo-agent"):
        run.now().starting.append(containers.Starting.begin(bottle, name))
    gate.set()
    containers.await_started("bottle-demo-agent")
    assert [item.name for item in run.now().starting] == ["bottle-demo-firewall"]


def test_a_failed_start_fails_the_run_with_the_engine_s_reason_and_the_logs():
    bottle = FakeBottle(failing={"bottle-demo-firewall"})
    run.now().starting.append(containers.Starting.begin(bottle, "bottle-demo-firewall"))
    with pytest.raises(BottleError) as caught:
        containers.await_started()
    assert "bottle-demo-firewall did not start" in str(caught.value)
    assert "cannot start" in caught.value.detail and "bad policy" in caught.value.detail


def test_a_probe_runs_once_the_start_is_done_and_settle_takes_its_verdict():
    gate = threading.Event()
    bottle = FakeBottle(gate=gate)
    run.now().starting.append(containers.Starting.begin(bottle, "bottle-demo-firewall"))
    containers.expect_ready(bottle, "bottle-demo-firewall", ["probe"], "answering")
    probe = run.now().pending[0].thread
    assert probe is not None
    probe.join(timeout=0.3)  # a probe that did not wait for the start would be done by now
    assert probe.is_alive() and not any(argv[1] == "exec" for argv in bottle.commands)
    gate.set()
    containers.settle()
    assert run.now().pending == []
    commands = [argv[1] for argv in bottle.commands]
    assert commands.index("exec") > commands.index("start")  # probed only after the start


def test_no_probe_for_a_container_whose_start_failed():
    bottle = FakeBottle(failing={"bottle-demo-firewall"})
    run.now().starting.append(containers.Starting.begin(bottle, "bottle-demo-firewall"))
    containers.expect_ready(bottle, "bottle-demo-firewall", ["probe"], "answering")
    with pytest.raises(BottleError):
        containers.settle()
    assert not any(argv[1] == "exec" for argv in bottle.commands)


JOIN = (("bottle-demo-net-internal", ("firewall",)),)


def test_networks_are_joined_after_the_start_and_the_probe_waits_for_them():
    gate = threading.Event()
    bottle = FakeBottle(gate=gate)
    run.now().starting.append(containers.Starting.begin(bottle, "bottle-demo-firewall", JOIN))
    containers.expect_ready(bottle, "bottle-demo-firewall", ["probe"], "answering")
    gate.set()
    containers.settle()
    verbs = [" ".join(argv[1:3]) for argv in bottle.commands]
    join = ["docker", "network", "connect", "--alias", "firewall", "bottle-demo-net-internal", "bottle-demo-firewall"]
    assert join in bottle.commands
    start, joined = verbs.index("start bottle-demo-firewall"), bottle.commands.index(join)
    probed = next(i for i, argv in enumerate(bottle.commands) if argv[1] == "exec")
    assert start < joined < probed  # joined while it boots; ready only once joined


def test_a_failed_join_fails_the_run_naming_the_network_and_no_probe_runs():
    bottle = FakeBottle(unjoinable={"bottle-demo-net-internal"})
    run.now().starting.append(containers.Starting.begin(bottle, "bottle-demo-firewall", JOIN))
    containers.expect_ready(bottle, "bottle-demo-firewall", ["probe"], "answering")
    with pytest.raises(BottleError) as caught:
        containers.settle()  # the container runs: only the failed join says what is wrong
    assert "bottle-demo-firewall could not join network bottle-demo-net-internal" in str(caught.value)
    assert "not found" in caught.value.detail
    assert not any(argv[1] == "exec" for argv in bottle.commands)
