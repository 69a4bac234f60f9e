"""A successful run of the `inv`/`bottle` process ends at once (executor.exit_now), skipping
Python's finalization, and loses none of its output on the way; a failed run exits as before."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from helpers import REPO

PROGRAM = textwrap.dedent("""
    import atexit, os, signal, sys
    from invoke import Collection, Config, Exit, task
    from bottle_tasks import executor

    @task
    def talk(c):
        print("x" * 200_000)  # more than any stdio buffer holds
        print("last line", file=sys.stderr, end="")  # no newline: only a flush sends it

    @task
    def fail(c):
        from bottle_tasks.errors import BottleError
        raise BottleError("it failed")

    def signalled_while_ending():  # a second Ctrl-C, as the process ends
        os.kill(os.getpid(), signal.SIGINT)
        print("not cut short", file=sys.stderr)

    atexit.register(lambda: print("finalized", file=sys.stderr))
    if sys.argv[3:] == ["signalled-while-ending"]:
        atexit.register(signalled_while_ending)  # runs first
    executor.EXIT_WHEN_DONE = sys.argv[2] == "at-once"
    try:
        executor.BottleExecutor(Collection(talk, fail), Config()).execute(sys.argv[1])
    except Exit as e:  # as invoke's Program ends a failed run
        sys.exit(e.code)
""")


def run(task_name: str, mode: str, *more: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as users run it
    return subprocess.run([sys.executable, "-c", PROGRAM, task_name, mode, *more], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env=env)


def test_a_successful_run_ends_at_once_with_all_of_its_output():
    done = run("talk", "at-once")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "x" * 200_000 + "\n"
    assert done.stderr == "last line"  # flushed, and Python's finalization (atexit) skipped


def test_without_the_entry_points_flag_the_process_finalizes_as_usual():
    done = run("talk", "finalize")
    assert done.returncode == 0 and done.stderr == "last linefinalized\n"


def test_a_failed_run_still_exits_through_invoke_with_its_code():
    done = run("fail", "at-once")
    assert done.returncode == 1 and "it failed" in done.stderr and done.stderr.endswith("finalized\n")


def test_a_second_ctrl_c_while_a_failed_run_ends_is_ignored():
    """The entry points' process stays shielded to its end: Python's own handler back would
    raise the second Ctrl-C into whatever its finalization runs, or kill it by the signal."""
    done = run("fail", "at-once", "signalled-while-ending")
    assert done.returncode == 1, done.stderr
    assert done.stderr == "error: it failed\nnot cut short\nfinalized\n", done.stderr
