"""A Ctrl-C never leaves half a rollback. While bottle ignores Ctrl-C (the clean-up after a
failure), so do the commands it runs, even one that takes SIGINT back at start, as the docker
CLI does (Go's signal.Notify un-ignores it); and a Ctrl-C that lands while invoke re-merges
its config between two steps does not leave the rollback without a runner."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest
from helpers import REPO
from invoke import Collection, Config, Exit, task

from bottle_tasks import run
from bottle_tasks.executor import BottleExecutor
from bottle_tasks.state import UndoAction
from bottle_tasks.target import LocalTarget

# Runs in a session of its own (the test's own process group is never signalled). The command
# plays the docker CLI: it takes SIGINT back, then sends Ctrl-C to the group that started it,
# as a terminal would, and reports whether it lived through it.
SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from invoke import Context
    from bottle_tasks.target import PromptLocal
    if sys.argv[1] == "ignored":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = ("import os, signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); "
             f"os.killpg({os.getpgrp()}, signal.SIGINT); time.sleep(0.3); print('survived')")
    try:
        result = PromptLocal(Context()).run(f"{sys.executable} -c \\"{child}\\"", hide=True, warn=True, in_stream=False)
        print(result.exited, result.stdout.strip())
    except KeyboardInterrupt:
        print("interrupted")
""")


def run_in_own_session(mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=REPO, capture_output=True, text=True,
                          timeout=30, start_new_session=True)
    return done.stdout.strip()


def test_a_command_run_while_sigint_is_ignored_lives_through_ctrl_c():
    assert run_in_own_session("ignored") == "0 survived"


def test_otherwise_ctrl_c_reaches_the_command_in_flight():
    """The control: outside such a stretch a Ctrl-C stops the command (a long build, a copy)."""
    assert run_in_own_session("default") != "0 survived"


class JournalOnlyState:
    path = "(test)"

    def forget(self, action) -> None:
        pass


class VolumeOnlyBottle:
    def __init__(self, target):
        self.target, self.state = target, JournalOnlyState()


def test_a_ctrl_c_amid_invokes_config_merge_still_rolls_back(tmp_path, monkeypatch, capsys):
    calls = tmp_path / "docker-calls"
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")

    @task
    def interrupted(c):
        volume = UndoAction("volume", "bottle-test-home", "agent")
        run.now().journal.append((VolumeOnlyBottle(LocalTarget(c, tmp_path)), volume))
        c.config._set(_config={})  # what a Ctrl-C inside invoke's Config.merge leaves behind
        raise KeyboardInterrupt

    with pytest.raises(Exit) as exited:
        BottleExecutor(Collection(interrupted), Config()).execute("interrupted")
    assert exited.value.code == 130
    assert "rollback:" not in capsys.readouterr().err
    assert calls.read_text() == "volume rm bottle-test-home\n"
