"""Shared fixtures. Engine tests run against the real Docker Engine: when it does
not answer they FAIL under CI=true (a skipped engine test proves nothing), and
skip only on a developer's machine without one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from helpers import missing

# The controller's own environment switches (the sidecars' are set inside their containers).
CONTROLLER_SWITCHES = ("BOTTLE_ENGINE_API", "BOTTLE_SSH_CONFIG")


def pytest_configure(config):
    """A test's Ctrl-C stands for a terminal's, whose foreground job has SIGINT at its default.
    A test run started in the background of a script (`make test &`, nohup; POSIX shells
    ignore SIGINT for those) would hand every `inv` it starts an ignored SIGINT, which bottle
    rightly keeps ignoring: the Ctrl-C tests would find every launch finished. A Python handler
    here becomes the default again in each child."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def away_from_the_operators_bottles(tmp_path_factory):
    """`make test` runs beside the developer's own bottles, often from a shell that selects
    one (INVOKE_BOTTLE_MANIFEST, INVOKE_BOTTLE_AGENT) or sets other invoke config or bottle's
    switches, and whose XDG_STATE_HOME holds their bottles' state. None of it may steer a
    test, or a test's `inv`, at their bottles (a `prune` planned against their manifest
    removes images) or off the path users take: every test says what it selects and sets,
    and state goes to a directory of the session's own unless a test names another."""
    patch = pytest.MonkeyPatch()
    for name in [name for name in os.environ if name.startswith("INVOKE_") or name in CONTROLLER_SWITCHES]:
        patch.delenv(name)
    patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state-home")))
    yield
    patch.undo()


def engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def engine():
    if not engine_answers():
        missing("no Docker engine answers (`make engine` starts one)")


@pytest.fixture(autouse=True)
def fresh_run():
    """Each test is a command line of its own: a fresh `run.now()` (its journal, the starts in
    flight, the names it asked the engine about), as the executor begins for each."""
    from bottle_tasks import run

    run.begin()


@pytest.fixture(autouse=True)
def own_signal_handlers():
    """A test that runs the executor in this process leaves pytest's signal handlers (and its
    hook for unraisable exceptions) as it found them: the executor sets its own (stopping.py),
    and ignores Ctrl-C and the stop signals once a run is done."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    unraisable = sys.unraisablehook
    yield
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    sys.unraisablehook = unraisable


@pytest.fixture
def state_home(tmp_path, monkeypatch):
    """An isolated XDG state dir, for this process and the `inv` processes it starts."""
    home = tmp_path / "state"
    home.mkdir()
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home
