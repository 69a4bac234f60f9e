"""The shared context: which bottle the tasks of one command line act on.

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

from . import images, manifest
from .errors import BottleError
from .images import REPO_ROOT
from .plan import Plan, check_slug
from .state import State, state_root
from .target import LocalTarget, RemoteTarget, Target

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
    slug: str
    manifest: object  # manifest.Manifest
    agent: object     # manifest.Agent
    plan: Plan
    state: State
    target: Target
    pinned: bool = False  # the user chose the name: a name conflict is an error, not a suffix

    @property
    def dry(self) -> bool:
        return self.target.dry

    def run(self, argv: list[str], **kwargs):
        return self.target.run(argv, **kwargs)

    def stage(self, *parts: str) -> str:
        """A path in this bottle's stage dir on the Docker host."""
        return "/".join([self.target.stage_dir(self.slug), *parts])


def selection(c) -> dict:
    chosen = dict(DEFAULTS)
    chosen.update({k: v for k, v in dict(c.config.get("bottle", {}) or {}).items() if v is not None})
    return chosen


def select(c, **changes) -> None:
    """Assign a new selection into config (never mutate the nested dict: invoke#535)."""
    chosen = selection(c)
    chosen.update({k: v for k, v in changes.items() if v is not None})
    c.config.bottle = chosen


def manifest_path(value: str) -> Path:
    path = Path(os.path.expanduser(value))
    if path.is_absolute() or path.exists():
        return path.resolve()
    return (REPO_ROOT / path).resolve()


def _target(c, remote: str | None) -> Target:
    dry = bool(c.config.run.get("dry", False))
    if not remote:
        return LocalTarget(c, state_root(), dry=dry)
    from fabric import Connection  # imported here: local runs never pay for paramiko

    return RemoteTarget(Connection(remote), dry=dry)


def load_manifest(c):
    return manifest.load(str(manifest_path(selection(c)["manifest"])))


def current(c) -> Bottle:
    """The selected bottle: manifest + agent + plan + persisted state + target."""
    chosen = selection(c)
    try:
        loaded = manifest.load(str(manifest_path(chosen["manifest"])))
    except manifest.ManifestError as exc:
        raise BottleError(str(exc)) from None
    agent = loaded.agents.get(chosen["agent"])
    if agent is None:
        raise BottleError(
            f"{loaded.path}: agents: no agent named {chosen['agent']!r}",
            f"available: {', '.join(sorted(loaded.agents))} — choose one with `inv use NAME ...`")
    slug = chosen["name"] or agent.name
    problem = check_slug(slug)
    if problem:
        raise BottleError(problem, "pick another with `inv use AGENT --name NAME`")
    target = _target(c, chosen["remote"])
    state = State.load(slug, persist=not target.dry)
    return Bottle(slug, loaded, agent, build_plan(slug, loaded, agent), state, target,
                  pinned=bool(chosen["name"]))


def build_plan(slug: str, loaded, agent) -> Plan:
    extra_ca = loaded.trust.extra_ca_bundle
    specs = {name: images.spec_for(name, loaded.images.base, loaded.images.proxy_base, extra_ca)
             for name in images.available()}
    if agent.workspace and agent.workspace.copy and "agent" in specs:
        specs["workspace"] = images.workspace_spec(specs["agent"].tag, slug, Path(agent.workspace.path))
    return Plan(slug, agent, specs)
