"""Starting a bottle container idempotently, and waiting until it is ready."""
from __future__ import annotations

import time
from dataclasses import dataclass

from . import console, docker
from .errors import BottleError
from .resources import claim_name
from .target import tail
from .undo import record


def running(bottle, name: str) -> bool:
    result = bottle.run(docker.container_inspect(name, "{{.State.Running}}"), check=False)
    return result.ok and result.stdout.strip() == "true"


def start(bottle, role: str, step: str, image: str, *, network: str,
          connect: tuple[tuple[str, tuple[str, ...]], ...] = (),
          **run_options) -> tuple[str, bool]:
    """Run the `role` container unless it already runs; (name, started_now).

    A stopped or half-made container of ours is replaced; `connect` joins further
    networks (with aliases) after the start, before anyone uses it."""
    name, exists = claim_name(bottle, "container", role)
    if exists and running(bottle, name):
        return name, False
    if exists:
        bottle.run(docker.container_rm(name))
    bottle.run(docker.run(name, image, bottle.plan.labels(role), network=network, **run_options))
    # Registered right after it exists, so a failure below still removes it.
    record(bottle, "container", name, role, step)
    for other, aliases in connect:
        bottle.run(docker.network_connect(other, name, aliases))
    return name, True


def logs_tail(bottle, name: str, lines: int = 20) -> str:
    result = bottle.run(docker.logs(name, tail=str(lines)), check=False)
    return tail(result.stdout + result.stderr, lines)


def wait_until(bottle, name: str, probe: list[str], what: str, timeout: float = 30.0) -> float:
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


@dataclass
class Pending:
    bottle: object
    name: str
    probe: list[str]
    what: str
    started: float


#: containers this run started and has not yet seen ready, oldest first
PENDING: list[Pending] = []


def expect_ready(bottle, name: str, probe: list[str], what: str) -> None:
    """Note that `name` must pass `probe` before the run counts as done.

    The wait happens in `settle`, at the end of the run (or before a step that
    needs it), so the containers that do not depend on this one start while it
    boots: a firewall takes most of a second to import mitmproxy."""
    PENDING.append(Pending(bottle, name, probe, what, time.monotonic()))


def settle() -> None:
    """Wait until every container this run started is ready; a failure is the run's."""
    while PENDING:
        item = PENDING[0]
        waited = wait_until(item.bottle, item.name, item.probe, item.what)
        PENDING.pop(0)
        console.step_done("ready", waited, f"{item.name} {item.what} "
                          f"({time.monotonic() - item.started:.1f}s after its start)")
