"""The `bottle` command: invoke's own Program with bottle's namespace and executor, so
every task works as `bottle TASK` from any folder (`inv` keeps working in this repo).

What `invoke.yaml` gives `inv` in the repo, the command gives itself: the executor
with rollback, and `bottle.*` defaults — here taken from the project manifest
(`bottle.yaml` / `bottle.md`) found from the current folder upwards. They sit at the
collection level, the lowest one, so INVOKE_BOTTLE_* and `bottle use ...` still win.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

from invoke import Argument, Program

from . import executor, namespace, project
from .executor import BottleExecutor


def _version() -> str:
    try:
        return metadata.version("bottle")
    except metadata.PackageNotFoundError:  # run from a checkout without an install
        return "0+unknown"


class BottleProgram(Program):
    """`bottle [--on HOST] TASK...`: `--on` is a core flag, so no `use` is needed for it."""

    def core_args(self):
        return super().core_args() + [
            Argument(names=("on",), help="run against the Docker host HOST over SSH (as `ssh HOST` "
                                         "resolves it: ~/.ssh/config with Include, Match, ProxyJump)"),
        ]

    def update_config(self, merge: bool = True) -> None:
        super().update_config(merge=False)
        if self.args.on.value:
            # The overrides level: above the project defaults and INVOKE_BOTTLE_*; a later
            # `use --on` on the command line still wins (it sets config at run time).
            overrides = dict(self.config._overrides)
            overrides["bottle"] = {**overrides.get("bottle", {}), "remote": self.args.on.value}
            self.config.load_overrides(overrides, merge=False)
        if merge:
            self.config.merge()


def program(cwd: Path | None = None) -> BottleProgram:
    cwd = cwd or Path.cwd()
    root = namespace()
    defaults = dict(root.configuration().get("bottle", {}))
    defaults.update(project.selection_defaults(project.discover(cwd), cwd))
    # The project command's hints say `bottle ...`, not `inv use ...`.
    defaults["command"] = "bottle"
    defaults["home"] = {key: defaults.get(key) for key in ("agent", "name", "manifest")}
    root.configure({"bottle": defaults})
    return BottleProgram(name="bottle", binary="bottle", version=_version(), namespace=root,
                         executor_class=BottleExecutor)


def main() -> None:
    """The `bottle` command, once loaded (the console script enters at `command.main`)."""
    executor.EXIT_WHEN_DONE = True  # this is the command's own process
    program().run()
