"""Container starts in the background and readiness probes (containers.py), against a
recording stand-in for a bottle: which docker commands run, and what a failed start reports."""
from __future__ import annotations

import os
import shlex
import threading
import time
from pathlib import Path

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


def fake_docker_logs(tmp_path, monkeypatch, lines: list[str], then: str) -> Path:
    """A `docker` on PATH whose `logs --follow` prints `lines`, then runs `then` (a sleep: still
    running; `true`: stopped); it notes its pid, to see that nothing of it is left running."""
    pid_file = tmp_path / "docker.pid"
    script = tmp_path / "bin" / "docker"
    script.parent.mkdir()
    printed = "".join(f"printf '%s\\n' {shlex.quote(line)}\n" for line in lines)
    script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\n{printed}exec {then}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    return pid_file


def gone(pid_file: Path, within: float = 2.0) -> bool:
    """Ended within `within` seconds: no such process, or a zombie waiting for whoever adopted
    it to reap it. (A SIGKILL is sent at once, but the process's exit completes on its own
    time: checked at once, a killed process could still show as sleeping.)"""
    deadline = time.monotonic() + within
    while True:
        try:
            status = Path(f"/proc/{int(pid_file.read_text())}/status").read_text()
        except FileNotFoundError:
            return True
        if "State:\tZ" in status:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


NOT_READY = [
    "bottle-firewall: starting",  # not JSON
    '["event", "ready"]',  # JSON, not an event
    '{"event": "allow", "host": "{\\"event\\": \\"ready\\"}"}',  # the words, inside another event
]


def test_the_ready_line_is_found_among_others_and_the_follower_is_ended(tmp_path, monkeypatch):
    pid_file = fake_docker_logs(tmp_path, monkeypatch, [*NOT_READY, '{"ts": "x", "event": "ready"}'], "sleep 60")
    started = time.monotonic()
    assert containers.announced_ready("bottle-demo-firewall")
    assert time.monotonic() - started < 5 and gone(pid_file)


def test_no_ready_line_before_the_container_stops_is_no_readiness(tmp_path, monkeypatch):
    fake_docker_logs(tmp_path, monkeypatch, NOT_READY, "true")
    assert not containers.announced_ready("bottle-demo-firewall")


def test_no_ready_line_within_the_wait_is_no_readiness(tmp_path, monkeypatch):
    pid_file = fake_docker_logs(tmp_path, monkeypatch, NOT_READY, "sleep 60")
    started = time.monotonic()
    assert not containers.announced_ready("bottle-demo-firewall", wait=1)
    assert time.monotonic() - started < 5 and gone(pid_file)


def test_without_timeout_on_path_the_probe_is_left_to_say_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither `timeout` nor `docker`
    assert not containers.announced_ready("bottle-demo-firewall")


class ReloadingSidecar:
    """`docker logs` of a sidecar the agent floods with requests for http://policy-reload/: each
    decision line names that host. The sidecar's own verdict comes after the first of them."""

    dry = False
    FLOOD = ('{"ts":"t","client":"172.24.0.2","method":"GET","host":"policy-reload","port":80,"path":"/",'
             '"decision":"deny","rule":"not-allowlisted","reason":"policy-reload is not on the allowlist"}')
    VERDICT = '{"ts":"t","event":"policy-reload","ok":true,"policy":"/etc/bottle/policy.json"}'

    def __init__(self):
        self.logs, self.reads = [self.FLOOD], 0

    def run(self, argv, check=True, **_):
        if argv[:2] == ["docker", "logs"]:
            self.reads += 1
            if self.reads == 2:  # after the signal: first more of the agent's lines, then the verdict
                self.logs.append(self.FLOOD)
            elif self.reads == 3:
                self.logs += [self.VERDICT, self.FLOOD]
            return Result(stdout="\n".join(self.logs) + "\n", stderr="", exited=0)
        return Result(stdout="", stderr="", exited=0)


def test_a_reload_is_decided_by_the_sidecars_verdict_not_by_lines_naming_it(monkeypatch):
    monkeypatch.setattr(containers.time, "sleep", lambda seconds: None)
    sidecar = ReloadingSidecar()
    containers.reload_and_confirm(sidecar, "bottle-demo-firewall", "policy-reload", "policy")  # no error
    assert sidecar.reads == 3


def test_a_container_made_before_a_hardening_flag_was_added_is_not_taken_as_configured(monkeypatch):
    """The digest a container is labelled with covers the create command bottle's fixed flags
    make, not only its options: a flag a later bottle adds (here, one more hardening option)
    replaces a container an earlier bottle made, instead of adopting it unhardened."""
    before = containers.config_digest("img", "net", (), {"user": "1000"}, b"ca")
    assert containers.config_digest("img", "net", (), {"user": "1000"}, b"ca") == before
    made = containers.docker.create
    monkeypatch.setattr(containers.docker, "create",
                        lambda *a, **k: [*made(*a, **k)[:3], "--security-opt", "seccomp=x", *made(*a, **k)[3:]])
    assert containers.config_digest("img", "net", (), {"user": "1000"}, b"ca") != before
