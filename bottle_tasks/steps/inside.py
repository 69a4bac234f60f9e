"""`launch`, and getting inside a running bottle: `claude`, `shell`, `exec`."""
import time

from invoke import Collection, task

from .. import console, containers, docker, stepping
from ..context import current
from . import work
from .agent import provision


@task(pre=[provision])
def launch(c):
    """Launch the selected bottle: the whole chain, through pre-tasks."""
    bottle = current(c)
    containers.settle()
    work.remember_base(bottle)  # before the agent does anything: what `bottle diff` compares with
    took = time.monotonic() - stepping.RUN_STARTED
    console.out.print(f"[green bold]ready[/] bottle {bottle.slug} in {took:.1f}s — get in: "
                      f"`{bottle.selector} claude` (or shell, exec \"CMD\"); "
                      f"tear down: `{bottle.selector} down`")


def _exec(c, command: list[str], interactive: bool) -> int:
    bottle = current(c, need_manifest=False)
    name = bottle.require("agent", "launch")
    tty = interactive and console.is_tty()
    argv = docker.exec_(name, command, interactive=interactive, tty=tty)
    result = bottle.target.run(argv, check=False, stream=True, pty=tty, interactive=interactive)
    return result.exited


def _exit_with(code: int) -> None:
    if code:
        from invoke import Exit

        raise Exit(code=code)


@task(help={"prompt": "run one prompt non-interactively (claude -p PROMPT) and print the answer"})
def claude(c, prompt=None):
    """Start Claude Code inside the agent (interactive, or -p PROMPT)."""
    command = ["claude"] + (["-p", prompt] if prompt else [])
    _exit_with(_exec(c, command, interactive=prompt is None))


@task
def shell(c):
    """Open a shell inside the agent."""
    _exit_with(_exec(c, ["bash", "-l"], interactive=True))


@task(name="exec", help={"command": "the command line to run inside the agent, e.g. \"git status\""})
def exec_(c, command):
    """Run one command inside the agent and print its output."""
    _exit_with(_exec(c, ["sh", "-c", command], interactive=False))


ns = Collection(launch, claude, shell, exec_)
