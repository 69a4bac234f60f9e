"""Starting a bottle container idempotently, and waiting until it is ready."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import console, docker, run
from .docker import LABEL_CONFIG
from .errors import BottleError
from .names import claim_name
from .target import Result, tail
from .undo import creating, record

if TYPE_CHECKING:
    from .selection import Bottle


@dataclass(frozen=True)
class Inspected:
    running: bool
    config: str  # the config label (config_digest)
    networks: frozenset[str]


def inspect_config(bottle: Bottle, name: str) -> Inspected | None:
    """Whether a container runs, its config label and its networks; None when there is none."""
    result = bottle.run(docker.container_inspect(name, docker.RUNNING_CONFIG_NETWORKS), check=False)
    if not result.ok:
        return None
    running_flag, config, networks = (result.stdout.strip().split("|") + ["", ""])[:3]
    return Inspected(running_flag == "true", config, frozenset(networks.split()))


def current_config(bottle: Bottle, name: str) -> str | None:
    """The config label of a running container; None when it is not running."""
    found = inspect_config(bottle, name)
    return found.config if found and found.running else None


def running(bottle: Bottle, name: str) -> bool:
    return current_config(bottle, name) is not None


def running_among(bottle: Bottle, names: list[str]) -> set[str]:
    """Which of these containers run (one call)."""
    out = bottle.run(docker.container_inspect_many(names, docker.NAME_AND_RUNNING), check=False).stdout
    return {name.lstrip("/") for name, flag in (line.split() for line in out.splitlines() if line.count(" ") == 1)
            if flag == "true"}


def config_digest(image: str, network: str, connect: tuple, run_options: dict, inputs: bytes) -> str:
    """What a container was started from: the create command its image, network and run
    options make (with bottle's fixed flags: a hardening flag a later bottle adds must replace a
    container an earlier one made, not adopt it), the networks it joins after, and the contents
    of files it reads only at start (a CA, a bundle). A change means a new container."""
    made = docker.create("", image, {}, network=network, **run_options)
    text = json.dumps([made, connect], default=str).encode()
    return hashlib.sha256(text + b"\0" + inputs).hexdigest()[:16]


def start(bottle: Bottle, role: str, step: str, image: str, *, network: str,
          connect: tuple[tuple[str, tuple[str, ...]], ...] = (), inputs: bytes = b"",
          **run_options) -> tuple[str, bool]:
    """Create the `role` container unless it already runs as configured; (name, new).

    A new container is created here, and its start begins in the background (`Starting`):
    the next steps create theirs while it starts, and whatever needs it running waits for it
    (`await_started`). A stopped, half-made or differently configured container of ours is
    replaced; `connect` joins further networks (with aliases), right after the start."""
    name, exists = claim_name(bottle, "container", role)
    digest = config_digest(image, network, connect, run_options, inputs)
    if exists:
        found = inspect_config(bottle, name)
        # As configured: the same digest, and on each of its networks (a controller killed
        # between the start and a join leaves a container that lacks one: it is replaced).
        # A network someone joined it to besides (a debugging container's) is no reason.
        if found and found.config == digest and {network, *(net for net, _ in connect)} <= found.networks:
            if found.running:
                bottle.state.adopt(role, name)
                return name, False
            # Stopped (the engine restarted, or someone stopped it) but as configured: start
            # it again rather than replace it, so what the agent did inside is kept.
            if bottle.run(docker.container_start(name), check=False).ok and running(bottle, name):
                bottle.state.adopt(role, name)
                return name, True
        bottle.run(docker.container_rm(name))
    # Registered before `docker create`: a container that is created but never
    # starts still exists, and must still be removed by rollback or `down`.
    record(bottle, "container", name, role, step)
    labels = {**bottle.plan.labels(role), LABEL_CONFIG: digest}
    with creating(bottle, "container", {name: role}):
        bottle.run(docker.create(name, image, labels, network=network, **run_options))
    run.now().starting.append(Starting.begin(bottle, name, connect))
    return name, True


@dataclass
class Starting:
    """A container start in flight, in a thread of its own, then its further networks joined.
    Only starts and joins run in the background, never creations: they make nothing a rollback
    could miss (the container is journaled already, and `docker rm -f` removes it started or
    not, joined or not). The joins come after the start, not before: a start wires up each
    network the container is on, and the one it needs first (its way out) is enough to start
    booting; the others are joined while it boots, and `await_started` waits for them too."""
    bottle: Bottle
    name: str
    began: float
    connect: tuple[tuple[str, tuple[str, ...]], ...] = ()
    thread: threading.Thread | None = None
    result: Result | None = None
    failed: str = ""  # what did not work: the start, or joining a network
    took: float = 0.0

    @classmethod
    def begin(cls, bottle: Bottle, name: str, connect: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> Starting:
        item = cls(bottle, name, time.monotonic(), connect)
        if bottle.dry:  # nothing runs: the commands are printed where they belong
            item._start()
            return item
        item.thread = threading.Thread(target=item._start, name=f"start {name}", daemon=True)
        item.thread.start()
        return item

    def _start(self) -> None:
        commands = [("did not start, or stopped right after it started", docker.container_start(self.name))]
        commands += [(f"could not join network {network}", docker.network_connect(network, self.name, aliases))
                     for network, aliases in self.connect]
        for failed, argv in commands:
            try:
                self.result = self.bottle.run(argv, check=False)
            except BottleError as exc:  # could not even run the command: reported by await_started
                self.result = Result("", str(exc), -1)
            if not self.result.ok:
                self.failed = failed
                break
        self.took = time.monotonic() - self.began


def await_started(name: str | None = None) -> None:
    """Wait for the starts in flight (all of them, or container `name`'s) and check that each
    container runs; a failure is the run's."""
    starting = run.now().starting
    chosen = [item for item in starting if name is None or item.name == name]
    for item in chosen:
        if item.thread is not None:
            item.thread.join()
        starting.remove(item)
    live = [item for item in chosen if not item.bottle.dry]
    up = running_among(live[0].bottle, [item.name for item in live]) if live else set()
    for item in live:
        if item.failed or item.name not in up:
            problem = tail(item.result.stderr, 5) if item.result else ""
            raise BottleError(f"{item.name} {item.failed or 'stopped right after it started'}",
                              (problem + "\n" + logs_tail(item.bottle, item.name)).strip())
        console.step_done("start", item.took, f"{item.name} running")


def abandon_starts() -> None:
    """After a failure: let the starts in flight end (a Ctrl-C ends them too) before the rollback."""
    starting = run.now().starting
    while starting:
        item = starting.pop()
        if item.thread is not None:
            item.thread.join(timeout=30)


def container_id(bottle: Bottle, name: str) -> str | None:
    """The engine's id of container `name` (a replaced container has a new one)."""
    if bottle.dry:
        return None
    result = bottle.run(docker.container_inspect(name, docker.ID), check=False)
    return result.stdout.strip() or None if result.ok else None


def logs_tail(bottle: Bottle, name: str, lines: int = 20) -> str:
    result = bottle.run(docker.logs(name, tail=str(lines)), check=False)
    return tail(result.stdout + result.stderr, lines)


def wait_until(bottle: Bottle, name: str, probe: list[str], what: str, timeout: float = 30.0) -> float:
    """Run `probe` inside the container until it succeeds; seconds waited."""
    if bottle.dry:
        return 0.0
    started = time.monotonic()
    while True:
        if bottle.run(docker.exec_(name, probe), check=False).ok:
            return time.monotonic() - started
        if not running(bottle, name):
            raise BottleError(f"{name} exited before {what}", logs_tail(bottle, name))
        if time.monotonic() - started > timeout:
            raise BottleError(f"{name}: {what} did not happen within {timeout:.0f}s", logs_tail(bottle, name))
        time.sleep(0.1)


# How long a sidecar's "ready" line is waited for, before the probe (which says what is wrong).
READY_LINE_WAIT = 10


def announced_ready(name: str, wait: float = READY_LINE_WAIT, target=None) -> bool:
    """Whether the local container `name` logs its `{"event": "ready"}` line within `wait`
    seconds (False also when it stops first). The firewall and the egress proxy log it once
    mitmproxy listens and its event loop runs. Its log followed, where a probe exec costs the
    engine some 50 ms of CPU more, in the middle of the boot it waits for: a launch is
    CPU-bound on two cores. Over the engine's socket when `target` has it (`engine_api`);
    else by one waiting `docker logs --follow`, which `timeout` bounds even if this process
    dies first."""
    engine = target.engine() if target is not None else None
    followed = engine.follow_stdout(name, wait) if engine is not None else None
    if followed is not None:
        return _ready_in(followed)
    try:
        follower = subprocess.Popen(["timeout", str(int(wait)), *docker.logs(name, follow=True)], text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                    start_new_session=True)  # ended below, not by the terminal's Ctrl-C
    except OSError:  # no `timeout` (coreutils) here: the probe it is
        return False
    assert follower.stdout is not None
    try:
        return _ready_in(follower.stdout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(follower.pid, signal.SIGKILL)  # `timeout` and its docker: a group of their own
        follower.wait()


def _ready_in(output: Iterable[str | bytes]) -> bool:
    """Whether a `{"event": "ready"}` line comes in `output` (lines, or chunks of them) before it
    ends or times out."""
    pending = b""
    for chunk in output:
        *lines, pending = (pending + (chunk.encode() if isinstance(chunk, str) else chunk)).split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == "ready":
                    return True
    return False


@dataclass
class Pending:
    """A readiness check still to pass. It is first made once in the background, as soon as the
    container's start is done, so it overlaps the steps that follow: the container's "ready"
    line (`announces`, on a local engine), or else the probe (the firewall's and egress proxy's
    probes wait inside the container while mitmproxy boots). Failing that, `settle` runs the
    probe until it passes or says why not."""
    bottle: Bottle
    name: str
    probe: list[str]
    what: str
    started: float
    announces: bool = False
    passed: bool = False
    thread: threading.Thread | None = None

    def _check_once_started(self, start: Starting | None) -> None:
        if start is not None and start.thread is not None:
            start.thread.join()
        if start is None or not start.failed:  # started, and on all its networks
            if self.announces and not self.bottle.target.is_remote:
                self.passed = announced_ready(self.name, target=self.bottle.target)
            else:
                self.passed = self.bottle.run(docker.exec_(self.name, self.probe), check=False).ok


def expect_ready(bottle: Bottle, name: str, probe: list[str], what: str, announces: bool = False) -> None:
    """Note that `name` must be ready before the run counts as done: it passes `probe`, or, if
    it `announces` it, logs its "ready" line.

    The wait happens in `settle`, at the end of the run, so the containers that do not depend
    on this one start while it boots: a firewall takes a third of a second to start mitmproxy."""
    item = Pending(bottle, name, probe, what, time.monotonic(), announces)
    if not bottle.dry:
        start = next((s for s in run.now().starting if s.name == name), None)
        item.thread = threading.Thread(target=item._check_once_started, args=(start,), name=f"ready {name}",
                                       daemon=True)
        item.thread.start()
    run.now().pending.append(item)


def settle() -> None:
    """Wait for the run's starts, then until each new container is ready; a failure is the run's."""
    await_started()
    pending = run.now().pending
    began = time.monotonic()
    while pending:
        item = pending[0]
        if item.thread is not None:
            item.thread.join()
        waited = (time.monotonic() - began if item.passed
                  else wait_until(item.bottle, item.name, item.probe, item.what))
        pending.pop(0)
        console.step_done("ready", waited, f"{item.name} {item.what} "
                          f"({time.monotonic() - item.started:.1f}s after its start)")


RELOAD_TIMEOUT = 10.0


def reload_and_confirm(bottle: Bottle, name: str, event: str, what: str) -> None:
    """SIGHUP a sidecar and wait for its verdict, the `event` line it logs (`ok`, `reason`):
    a sidecar that refuses the new file keeps the old one, and the change fails here."""
    if bottle.dry:
        bottle.run(docker.kill(name, "HUP"))
        return
    since = f"{time.time() - 1:.3f}"
    seen = len(_events(bottle, name, since, event))
    bottle.run(docker.kill(name, "HUP"))
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while time.monotonic() < deadline:
        events = _events(bottle, name, since, event)
        if len(events) > seen:
            if not events[-1].get("ok"):
                raise BottleError(f"{name} refused the new {what} and keeps the old one",
                                  str(events[-1].get("reason", "")))
            return
        time.sleep(0.05)
    raise BottleError(f"{name} did not confirm the {what} reload within {RELOAD_TIMEOUT:.0f}s",
                      logs_tail(bottle, name))


def _events(bottle: Bottle, name: str, since: str, event: str) -> list[dict]:
    """The sidecar's own `event` lines since `since`. Only a line whose `event` is that, and
    that is no decision: the agent names the hosts of the decision lines (a request for
    http://policy-reload/ is logged with that text in it), and taken as a verdict, its refusal
    made every reload look refused (`route rm` put a route back the operator had removed)."""
    out = bottle.run(docker.logs(name, since=since), check=False).stdout
    events = []
    for line in out.splitlines():
        if f'"{event}"' in line:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == event and "decision" not in record:
                    events.append(record)
    return events
