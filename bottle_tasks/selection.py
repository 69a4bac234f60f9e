"""The selection: which bottle the tasks of one command line act on, and the `Bottle` a
step opens from it (`current(c)`).

invoke cannot hand arguments to pre-tasks (pyinvoke/invoke#261) and Fabric runs
pre-tasks with a plain local Context (fabric/fabric#1890), so the selection lives
in invoke config under `bottle.*`: defaults from invoke.yaml, INVOKE_BOTTLE_*
environment variables, or the `use` task placed first on the command line.
Every step reads it through `current(c)`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from . import manifest, run
from .connections import target_for
from .errors import BottleError
from .images import REPO_ROOT
from .locks import lock_bottle
from .manifest import Agent, Manifest
from .plan import Plan, build_plan, check_slug, resource_name
from .state import State
from .target import Target

# Code-side defaults; invoke.yaml (the user-facing place) and INVOKE_BOTTLE_* override them.
DEFAULTS = {
    "agent": "demo",
    "manifest": "config/bottles.yaml",
    "name": None,     # bottle instance name (slug); defaults to the agent's name
    "remote": None,   # user@host of a remote Docker host, reached over SSH by Fabric
    "keep": False,    # keep what a failed run created, for debugging
}


@dataclass
class Bottle:
    """The selected bottle. `manifest`, `agent` and `plan` are None only for a bottle opened
    with `current(c, need_manifest=False)` whose manifest no longer loads (`down`, `logs`,
    `exec`, `pull`, `diff`), and those check; every other step can rely on them."""
    slug: str
    manifest: Manifest
    agent: Agent
    plan: Plan
    state: State
    target: Target
    pinned: bool = False  # the user chose the name: a name conflict is an error, not a suffix
    selector: str = ""    # `inv use ...` / `bottle ...` words that select this bottle again, for hints

    @property
    def dry(self) -> bool:
        return self.target.dry

    def run(self, argv: list[str], **kwargs):
        return self.target.run(argv, **kwargs)

    def stage(self, *parts: str) -> str:
        """A path in this bottle's stage dir on the Docker host."""
        return "/".join([self.target.stage_dir(self.slug), *parts])

    def require(self, role: str, step_name: str) -> str:
        """The name of a resource an earlier step made; a clear error if it did not."""
        name = self.state.resource(role)
        if not name and not self.dry:
            raise BottleError(f"bottle {self.slug} has no {role} yet", f"run `{self.selector} {step_name}` first")
        return name or resource_name(self.slug, role)


def selection(c) -> dict:
    chosen = dict(DEFAULTS)
    chosen.update({k: v for k, v in dict(c.config.get("bottle", {}) or {}).items() if v is not None})
    return chosen


def manifest_path(value: str) -> Path:
    path = Path(os.path.expanduser(value))
    if path.is_absolute() or path.exists():
        return path.resolve()
    return (REPO_ROOT / path).resolve()


def host_label(remote: str | None) -> str:
    return remote or "local"


def selector(chosen: dict) -> str:
    """The command words that select this bottle again, for hints: `inv use ...`, or, from
    the `bottle` command, just `bottle` for the project's own bottle."""
    if chosen.get("command") == "bottle":
        return bottle_selector(chosen)
    words = ["inv", "use", chosen["agent"]]
    if chosen["name"]:
        words += ["--name", chosen["name"]]
    if chosen["manifest"] != DEFAULTS["manifest"]:
        words += ["--manifest", str(chosen["manifest"])]
    if chosen["remote"]:
        words += ["--on", chosen["remote"]]
    return " ".join(words)


def bottle_selector(chosen: dict) -> str:
    home = dict(chosen.get("home") or {})  # the project's defaults (cli.py)
    words = ["bottle"] + (["--on", chosen["remote"]] if chosen["remote"] else [])
    if (chosen["agent"], chosen["name"], chosen["manifest"]) != (home.get("agent"), home.get("name"), home.get("manifest")):
        words += ["use", chosen["agent"]] + (["--name", chosen["name"]] if chosen["name"] else [])
        if chosen["manifest"] != home.get("manifest"):
            words += ["--manifest", str(chosen["manifest"])]
    return " ".join(words)


def current(c, need_manifest: bool = True, chosen: dict | None = None) -> Bottle:
    """The selected bottle: manifest + agent + plan + persisted state + target.

    With need_manifest=False (`down`, `logs`) a manifest that no longer loads, or
    no longer has the agent, still gives the bottle from its name and state alone.
    `chosen`: another selection than the command line's (`bottle_named`)."""
    chosen = chosen or selection(c)
    loaded = agent = plan = None
    try:
        loaded = _load_once(manifest_path(chosen["manifest"]))
        agent = loaded.agents.get(chosen["agent"])
        if agent is None:
            raise BottleError(
                f"{loaded.path}: agents: no agent named {chosen['agent']!r}",
                f"available: {', '.join(sorted(loaded.agents))} — choose one with `inv use NAME ...`")
    except BottleError:
        if need_manifest:
            raise
    slug = chosen["name"] or (agent.name if agent else chosen["agent"])
    problem = check_slug(slug)
    if problem:
        raise BottleError(problem, "pick another with `inv use AGENT --name NAME`")
    target = target_for(c, chosen["remote"])
    if not target.dry:
        lock_bottle(slug)
    state = State.load(slug, persist=not target.dry)
    check_docker_host(state, chosen)
    if need_manifest and loaded:
        check_manifest(state, str(loaded.path))
    if agent and loaded:
        state.data["agent"] = agent.name
        state.data["manifest"] = str(loaded.path)
        plan = _plan_once(slug, loaded, agent)
    # None only with need_manifest=False, where the callers check (see Bottle)
    return Bottle(slug, cast(Manifest, loaded), cast(Agent, agent), cast(Plan, plan), state, target,
                  pinned=bool(chosen["name"]),
                  selector=selector(chosen))


# Each step of a run starts with `current`: a launch's ten steps would read and validate the
# manifest ten times, and hash the image inputs ten times, for the same answer. Once a run:
# a manifest is read again only if its file changed meanwhile.
def _load_once(path: Path) -> Manifest:
    try:
        stat = path.stat()
        key = ("manifest", str(path), stat.st_mtime_ns, stat.st_size)
    except OSError:
        return manifest.load(str(path))  # its own error: not found, not readable
    memo = run.now().memo
    if key not in memo:
        memo[key] = manifest.load(str(path))
    return memo[key]


def _plan_once(slug: str, loaded: Manifest, agent: Agent) -> Plan:
    memo = run.now().memo
    key = ("plan", slug, id(loaded), agent.name)  # `loaded` is kept in the memo: its id stays its own
    if key not in memo:
        memo[key] = build_plan(slug, loaded, agent)
    return memo[key]


def bottle_named(c, slug: str) -> Bottle:
    """Bottle `slug` as its last run selected it (its state records the agent and the
    manifest): the operator's commands act on any bottle of the host, not one `use`d."""
    recorded = State.load(slug, persist=False)
    if not recorded.get("agent") or not recorded.get("manifest"):
        raise BottleError(f"bottle {slug}: its state does not record its manifest",
                          f"select it yourself: inv use AGENT --name {slug} --manifest FILE ...")
    return current(c, chosen={**selection(c), "agent": recorded.get("agent"), "name": slug,
                              "manifest": recorded.get("manifest")})


def check_manifest(state: State, path: str) -> None:
    """A bottle is one manifest's: two projects in folders of one name (~/oss/api, ~/work/api)
    get one bottle name, and the second's launch would take over the first's containers and
    state (its approved policy changes among them). `down` and the other commands that need no
    manifest still reach it, from anywhere."""
    recorded = state.get("manifest")
    if recorded and state.get("undo") and os.path.realpath(recorded) != os.path.realpath(path):
        raise BottleError(f"bottle {state.slug} is the bottle of {recorded}, not of {path}",
                          "give this one another name (`--name NAME`), or take that one down first "
                          f"(`inv use {state.get('agent') or state.slug} --manifest {recorded} down`)")


def check_docker_host(state: State, chosen: dict) -> None:
    """A bottle lives on one Docker host: acting on it from another selection would
    "undo" names that do not exist there and orphan the real ones."""
    here = host_label(chosen["remote"])
    recorded = state.get("host")
    if recorded and state.get("undo") and recorded != here:
        where = f"--on {recorded}" if recorded != "local" else "without --on"
        raise BottleError(f"bottle {state.slug} lives on {recorded}, not on {here}",
                          f"select it {where}")
    state.data["host"] = here
