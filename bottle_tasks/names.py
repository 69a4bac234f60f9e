"""Bottle resources on the Docker host by name: finding them (by name, by label) and claiming free names."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import docker, run
from .docker import LABEL_ROLE, LABEL_SLUG
from .errors import BottleError

if TYPE_CHECKING:
    from .selection import Bottle

MAX_SUFFIX = 9


@dataclass(frozen=True)
class Found:
    kind: str  # container | network | volume
    name: str
    slug: str
    role: str
    status: str = ""


def _found(kind: str, out: str) -> list[Found]:
    """Rows of `docker ps|network ls|volume ls` (docker.CONTAINER_ROW, NAMED_ROW) as Found."""
    found = []
    for line in out.splitlines():
        if line.strip():
            row = json.loads(line)
            name = row.get("Names") or row.get("Name") or ""
            found.append(Found(kind, name, row.get("Slug", ""), row.get("Role", ""),
                               row.get("Status") or row.get("State") or ""))
    return found


def _selector(slug: str | None) -> str:
    """The label filter for one bottle's resources, or every bottle's."""
    return f"{LABEL_SLUG}={slug}" if slug else LABEL_SLUG


def listed(target, slug: str | None = None) -> tuple[list[Found], list[Found]]:
    """(`labelled`, `labelled_volumes`) from three listings run side by side."""
    selector = _selector(slug)
    containers, networks, volumes = at_once(target, [docker.container_ls(selector), docker.network_ls(selector),
                                                     docker.volume_ls(selector)])
    return _found("container", containers) + _found("network", networks), _found("volume", volumes)


def labelled(target, slug: str | None = None) -> list[Found]:
    """Every container and network bottle created (of one bottle, or all). Selected by the
    slug label, which bottle sets at creation: images carry no bottle label a container
    could inherit, so a container someone else runs from a bottle image is not ours."""
    selector = _selector(slug)
    containers, networks = at_once(target, [docker.container_ls(selector), docker.network_ls(selector)])
    return _found("container", containers) + _found("network", networks)


def labelled_volumes(target, slug: str | None = None) -> list[Found]:
    """Bottle's volumes (of one bottle, or all). Apart from `labelled`: a volume outlives
    its bottle's `down` on purpose, so it is neither a leftover to sweep nor an orphan."""
    selector = _selector(slug)
    return _found("volume", target.run(docker.volume_ls(selector)).stdout)


def at_once(target, commands: list[list[str]]) -> list[str]:
    """The output of each command (each must succeed), run side by side: one engine round
    trip's wait instead of one each. A dry run prints them, in order, instead."""
    if target.dry or len(commands) < 2:
        return [target.run(argv).stdout for argv in commands]
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda argv: target.run(argv).stdout, commands))


def appears(target, kind: str, name: str, expected: tuple[str, str], wait: float) -> bool:
    """Is `name` there, labelled `expected` (slug, role), now or within `wait` seconds? After
    an interrupted create: the CLI may return before the engine, which finishes the request,
    has made the resource."""
    deadline = time.monotonic() + wait
    while owner(target, kind, name) != expected:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _labels_field(kind: str) -> str:
    return docker.CONFIG_LABELS if kind == "container" else docker.LABELS


def _slug_and_role(labels_json: str) -> tuple[str, str]:
    labels = json.loads(labels_json or "null") or {}
    return labels.get(LABEL_SLUG, ""), labels.get(LABEL_ROLE, "")


def owner(target, kind: str, name: str) -> tuple[str, str] | None:
    """(slug, role) labels of an existing resource, ('', '') if unlabelled, None if absent."""
    inspect = {"container": docker.container_inspect, "volume": docker.volume_inspect}.get(
        kind, docker.network_inspect)
    result = target.run(inspect(name, _labels_field(kind)), check=False)
    if not result.ok:
        return None
    return _slug_and_role(result.stdout)


def owners(target, kind: str, names: list[str]) -> dict[str, tuple[str, str] | None]:
    """`owner` of several containers or networks in one docker call (a missing one fails the
    call, and the others are still printed: one line each)."""
    if kind == "container":
        argv = docker.container_inspect_many(names, docker.NAME_AND_CONFIG_LABELS)
    else:
        argv = docker.network_inspect_many(names, docker.NAME_AND_LABELS)
    result = target.run(argv, check=False)
    found: dict[str, tuple[str, str] | None] = dict.fromkeys(names)
    for line in result.stdout.splitlines():
        name, _, labels = line.partition(" ")
        if name.lstrip("/") in found:  # a container's name comes with a leading slash
            found[name.lstrip("/")] = _slug_and_role(labels)
    return found


def _first_owner(bottle: Bottle, kind: str, name: str) -> tuple[str, str] | None:
    """`owner` of one of the planned names, asked for all of a kind at once the first time
    one of them is claimed in this run (a launch claims two to five containers, two to four
    networks: one call each instead of one a name). Each answer is used once, the moment
    its name is claimed; asked again (a later claim, a suffix), the engine answers afresh.
    A foreign resource made meanwhile still makes the create fail, as it would have anyway."""
    surveyed = run.now().owners
    planned = [bottle.state.resource(role) or bottle.plan.name(role) for role in bottle.plan.roles(kind)]
    if (bottle.slug, kind) not in surveyed and name in planned and len(planned) > 1:
        surveyed[(bottle.slug, kind)] = owners(bottle.target, kind, planned)
    answers = surveyed.get((bottle.slug, kind), {})
    return answers.pop(name) if name in answers else owner(bottle.target, kind, name)


def claim_name(bottle: Bottle, kind: str, role: str) -> tuple[str, bool]:
    """The name to use for `role`, and whether it already exists as ours.

    The planned name, or the one recorded in state; when something that is not
    this bottle's holds it, the next suffix (-2, -3, ...) — unless the user pinned
    the bottle's name (`inv use AGENT --name NAME`): then a conflict is an error,
    never a silently different name.
    """
    base = bottle.state.resource(role) or bottle.plan.name(role)
    if bottle.dry:
        return base, False
    pinned = bottle.pinned
    candidates = [base] if pinned else [base] + [f"{base}-{n}" for n in range(2, MAX_SUFFIX + 1)]
    for name in candidates:
        held = _first_owner(bottle, kind, name) if name == base else owner(bottle.target, kind, name)
        if held is None:
            return name, False
        if held == (bottle.slug, role):
            return name, True
    remove = {"container": f"docker rm -f {base}", "volume": f"docker volume rm {base}"}.get(
        kind, f"docker network rm {base}")
    if pinned:
        raise BottleError(f"the {kind} name {base} is taken by something that is not bottle {bottle.slug}'s",
                          f"you pinned the name with --name: remove it ({remove}) or pick another --name")
    raise BottleError(f"no free {kind} name for {base} (tried -2 … -{MAX_SUFFIX})",
                      "run `inv status` to see what holds them, `inv down --all` to clear bottles")
