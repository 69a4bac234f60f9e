"""Shared fixtures. Engine tests run against the real Docker Engine: when it does
not answer they FAIL under CI=true (a skipped engine test proves nothing), and
skip only on a developer's machine without one."""
from __future__ import annotations

import subprocess

import pytest
from helpers import missing


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


@pytest.fixture
def state_home(tmp_path, monkeypatch):
    """An isolated XDG state dir, for this process and the `inv` processes it starts."""
    home = tmp_path / "state"
    home.mkdir()
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home
