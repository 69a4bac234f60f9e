"""A Ctrl-C never leaves half a rollback. While bottle ignores Ctrl-C (the clean-up after a
failure), so do the commands it runs, even one that takes SIGINT back at start, as the docker
CLI does (Go's signal.Notify un-ignores it); and a Ctrl-C that lands while invoke re-merges
its config between two steps does not leave the rollback without a runner. SIGTERM and SIGHUP
end a run as a Ctrl-C does (stopping.py), though they reach bottle alone, not the command in
flight."""
from __future__ import annotations

import os
import pty
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import REPO
from invoke import Collection, Config, Context, Exit, task

from bottle_tasks import run
from bottle_tasks.executor import BottleExecutor
from bottle_tasks.state import UndoAction
from bottle_tasks.stopping import Stopped
from bottle_tasks.target import LocalTarget, PromptLocal

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


def recording_docker(tmp_path) -> tuple[str, Path]:
    """A `docker` that only records its arguments, one line a call: (a PATH that finds it first,
    the file of its calls)."""
    calls = tmp_path / "docker-calls"
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return f"{fake.parent}{os.pathsep}{os.environ['PATH']}", calls


def test_a_ctrl_c_amid_invokes_config_merge_still_rolls_back(tmp_path, monkeypatch, capsys):
    path, calls = recording_docker(tmp_path)
    monkeypatch.setenv("PATH", path)

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


# A launch played in a process of its own (a signal that bottle failed to handle must not end
# pytest): it journals a volume, says it is ready on the report pipe, then either runs a command
# or waits in Python while the test signals it. The report: the run's exit code, and whether the
# step went on after the signal (it must not), or a traceback.
PLAYED_LAUNCH = textwrap.dedent("""
    import os, subprocess, sys, time, traceback
    from invoke import Collection, Config, Exit, task
    from bottle_tasks import run
    from bottle_tasks.executor import BottleExecutor
    from bottle_tasks.state import UndoAction
    from bottle_tasks.target import LocalTarget, PromptLocal
    from test_interrupted_runs import VolumeOnlyBottle
    where, workdir, report, terminal = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if terminal != "-":  # its output goes to this terminal, which it takes as its own
        tty = os.open(terminal, os.O_RDWR)
        os.dup2(tty, 1); os.dup2(tty, 2)

    @task
    def launch(c):
        target = LocalTarget(c, workdir)
        run.now().journal.append((VolumeOnlyBottle(target), UndoAction("volume", "bottle-test-home", "agent")))
        os.write(report, b"x")
        if where == "command":  # the signal comes while the command runs (it is not signalled)
            target.run(["sh", "-c", "sleep 1; echo finished"])
        elif where == "swallowing":  # one that takes a Ctrl-C for "stop waiting": it exits 0
            target.run(["sh", "-c", "trap 'exit 0' INT; sleep 1 & wait"])
        elif where == "shown":  # one whose output is shown, and which would run for ever
            target.run(["sh", "-c", "while :; do sleep 0.05; done"], stream=True)
        else:
            time.sleep(30)
        os.write(report, b" went on")

    try:  # bottle's own runner, as its namespace configures it
        BottleExecutor(Collection(launch), Config(overrides={"runners": {"local": PromptLocal}})).execute("launch")
    except Exit as exc:
        os.write(report, str(exc.code).encode())
    except BaseException:
        os.write(report, traceback.format_exc().encode())
""")


def played_launch(tmp_path, where: str, signals, terminal: str = "-", hang_up=None) -> tuple[str, str]:
    """Start the played launch, send `signals` (to it alone, as `kill` does) once it is ready:
    (its report, the rollback's docker calls)."""
    path, calls = recording_docker(tmp_path)
    report_read, report_write = os.pipe()
    env = dict(os.environ, PATH=path,
               PYTHONPATH=os.pathsep.join([str(REPO), str(Path(__file__).parent), str(REPO / "tests")]))
    child = subprocess.Popen([sys.executable, "-c", PLAYED_LAUNCH, where, str(tmp_path), str(report_write), terminal],
                             cwd=REPO, env=env, pass_fds=(report_write,), start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    os.close(report_write)
    try:
        assert os.read(report_read, 1) == b"x", child.communicate(timeout=30)[1]
        if where in ("command", "shown", "swallowing"):
            time.sleep(0.3)  # well inside the command, past invoke's start of it
        if hang_up:
            hang_up()
        for signum in signals:
            child.send_signal(signum)
        _, err = child.communicate(timeout=30)
        with os.fdopen(report_read, "rb") as rest:
            report = rest.read().decode()
    finally:
        if child.poll() is None:
            child.kill()
    assert "Traceback" not in err, err
    return report, calls.read_text() if calls.exists() else ""


def test_sigterm_while_a_command_runs_stops_the_run_once_it_is_done_and_rolls_back(tmp_path):
    """A SIGTERM reaches bottle alone (`kill`, `timeout`, a cancelled CI job), not the command in
    flight: invoke waits that command out, and the run stops right after it, as a Ctrl-C's would."""
    report, calls = played_launch(tmp_path, "command", [signal.SIGTERM])
    assert report == "143"  # not " went on": the step did not go on past its command
    assert calls == "volume rm bottle-test-home\n"


def test_a_ctrl_c_that_a_command_takes_for_a_normal_end_still_ends_the_run(tmp_path):
    """`docker exec` exits 0 on a Ctrl-C (its process in the container runs on): invoke, which
    forwarded the Ctrl-C and waited, returns that as a success; the run must stop all the same."""
    report, calls = played_launch(tmp_path, "swallowing", [signal.SIGINT])
    assert report == "130"  # not " went on"
    assert calls == "volume rm bottle-test-home\n"


def test_sigterm_stops_a_command_whose_output_is_shown_too(tmp_path):
    """A build, `logs --follow`, a shell: such a command may run for ever, so it gets the signal."""
    report, calls = played_launch(tmp_path, "shown", [signal.SIGTERM])
    assert report == "143"
    assert calls == "volume rm bottle-test-home\n"


def test_sigterm_between_commands_stops_the_run_at_once(tmp_path):
    started = time.monotonic()
    report, calls = played_launch(tmp_path, "python", [signal.SIGTERM, signal.SIGTERM])
    assert report == "143" and time.monotonic() - started < 20  # the 30 s wait was cut short
    assert calls == "volume rm bottle-test-home\n"


def test_sighup_after_the_terminal_closed_still_rolls_back_to_the_end(tmp_path):
    """A terminal window closes: its pty's other end goes away, then the hang-up comes, often
    twice (from the kernel and from the shell). Nothing printed can reach the terminal any
    more, and the rollback still runs to its end."""
    primary, secondary = pty.openpty()
    terminal = os.ttyname(secondary)
    os.close(secondary)
    report, calls = played_launch(tmp_path, "python", [signal.SIGHUP, signal.SIGHUP], terminal,
                                  hang_up=lambda: os.close(primary))
    assert report == "129"
    assert calls == "volume rm bottle-test-home\n"


class StoppedRightAfterTheStart(PromptLocal):
    """A stop signal landing the moment the command has been started, before invoke waits."""

    def start(self, command: str, shell: str, env: dict) -> None:
        super().start(command, shell, env)
        raise Stopped(signal.SIGTERM)


def test_a_stop_before_invoke_waits_still_waits_for_the_command_to_end(tmp_path):
    """The command runs on (the signal reached bottle alone): the rollback, next, must find what
    it made, so its end is waited for before the stop goes on."""
    made = tmp_path / "network"
    with pytest.raises(Stopped):
        StoppedRightAfterTheStart(Context()).run(f"sleep 0.3; touch {made}", hide=True, warn=True, in_stream=False)
    assert made.exists()


def test_a_stop_before_invoke_waits_is_passed_on_to_a_command_whose_output_is_shown(tmp_path):
    runner = StoppedRightAfterTheStart(Context())
    started = time.monotonic()
    with pytest.raises(Stopped):
        runner.run("while :; do sleep 0.05; done", hide=False, warn=True, in_stream=False)
    assert runner.process.poll() == -signal.SIGTERM and time.monotonic() - started < 10


class HeldLockLocal(PromptLocal):
    """Popen's waitpid lock held, as a KeyboardInterrupt raised inside `Popen.poll`, between its
    lock's acquire and its `try`, leaves it: `poll` then answers "running" for ever."""

    def start(self, command: str, shell: str, env: dict) -> None:
        super().start(command, shell, env)
        self.process._waitpid_lock.acquire()


def test_a_commands_end_is_seen_though_popens_wait_lock_was_left_held():
    done: list[int] = []
    waiting = threading.Thread(target=lambda: done.append(
        HeldLockLocal(Context()).run("sleep 0.1; exit 3", hide=True, warn=True, in_stream=False).exited), daemon=True)
    waiting.start()
    waiting.join(timeout=20)
    assert done == [3]


# Ctrl-C after Ctrl-C lands inside invoke's wait for the command (the runner looks without a
# pause, so that many land inside its check for the command's end). Each run must still end,
# with its command's own exit code. In a session of its own: the signals go to this child alone.
CTRL_C_STORM = textwrap.dedent("""
    import os, signal, sys, threading, time
    from invoke import Context
    from bottle_tasks.target import PromptLocal

    class Eager(PromptLocal):
        input_sleep = 0

    def inside_invokes_wait(signum, frame):
        while frame is not None:
            if frame.f_code.co_name == "wait" and frame.f_code.co_filename.endswith("invoke/runners.py"):
                raise KeyboardInterrupt
            frame = frame.f_back

    def storm():
        while True:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.0002)

    signal.signal(signal.SIGINT, inside_invokes_wait)
    threading.Thread(target=storm, daemon=True).start()
    for _ in range(int(sys.argv[1])):
        print(Eager(Context()).run("sleep 0.2; exit 3", hide=True, warn=True, in_stream=False).exited, flush=True)
""")


def test_a_storm_of_ctrl_c_while_invoke_waits_never_hangs_the_run():
    runs = 12
    try:
        done = subprocess.run([sys.executable, "-c", CTRL_C_STORM, str(runs)], cwd=REPO, capture_output=True,
                              text=True, timeout=60, start_new_session=True)
    except subprocess.TimeoutExpired as hung:
        raise AssertionError(f"a run hung after {hung.stdout!r}") from None
    assert done.stdout.split() == ["3"] * runs, done.stderr


SWALLOWED = textwrap.dedent("""
    import weakref
    from bottle_tasks import stopping
    stopping.begin()

    class Thing:
        pass

    def callback(_ref):  # as importlib's module-lock callback, where a Ctrl-C once landed
        raise KeyboardInterrupt

    thing = Thing()
    ref = weakref.ref(thing, callback)
    del thing  # Python runs the callback and swallows what it raises
    print("went on")
    try:
        stopping.raise_if_stopped()  # the next command's end
        print("not interrupted")
    except KeyboardInterrupt as interrupt:
        print("interrupted", type(interrupt).__name__)
    stopping.raise_if_stopped()  # once only
    print("then done")
""")


def test_a_ctrl_c_python_swallowed_still_ends_the_run_without_a_traceback():
    """A Ctrl-C whose KeyboardInterrupt lands where Python cannot raise it (a weakref callback
    during an import) printed a traceback, and the launch went on to the end."""
    done = subprocess.run([sys.executable, "-c", SWALLOWED], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.stdout.split("\n")[:3] == ["went on", "interrupted KeyboardInterrupt", "then done"], done.stdout
    assert done.stderr == "", done.stderr
