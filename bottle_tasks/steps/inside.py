"""Getting inside a running bottle: `claude`, `shell`, `exec`."""
from invoke import Collection, task

from .. import console, docker
from ..selection import current


def _exec(c, command: list[str], interactive: bool) -> int:
    bottle = current(c, need_manifest=False)
    name = bottle.require("agent", "launch")
    tty = interactive and console.is_tty()
    argv = docker.exec_(name, command, interactive=interactive, tty=tty)
    # A session on a terminal is the agent's terminal by design; anything else (one command, or
    # a session fed from a pipe) is only text the agent wrote, and is never printed raw.
    streams = {} if tty else console.agent_output_streams()
    result = bottle.target.run(argv, check=False, stream=True, pty=tty, interactive=interactive, **streams)
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


ns = Collection(claude, shell, exec_)
