"""While bottle ignores Ctrl-C (a rollback), so do the commands it runs, even one that takes
SIGINT back at start, as the docker CLI does (Go's signal.Notify un-ignores it)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from helpers import REPO

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
