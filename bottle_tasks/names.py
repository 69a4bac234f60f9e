"""Bottle resources on the Docker host by name: finding them (by name, by label) and claiming free names."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import docker
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


def _parse_labels(text: str) -> dict[str, str]:
    labels = {}
    for item in (text or "").split(","):
        key, _, value = item.partition("=")
        if key:
            labels[key.strip()] = value.strip()
    return labels


def labelled(target, slug: str | None = None) -> list[Found]:
    """Every container and network bottle created (of one bottle, or all). Selected by the
    slug label, which bottle sets at creation: images carry no bottle label a container
    could inherit, so a container someone else runs from a bottle image is not ours."""
    selector = f"{LABEL_SLUG}={slug}" if slug else LABEL_SLUG
    found = []
    for kind, argv in (("container", docker.container_ls(selector)), ("network", docker.network_ls(selector))):
        for line in target.run(argv).stdout.splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            labels = _parse_labels(row.get("Labels", ""))
            name = row.get("Names") or row.get("Name") or ""
            found.append(Found(kind, name, labels.get(LABEL_SLUG, ""), labels.get(LABEL_ROLE, ""),
                               row.get("Status") or row.get("State") or ""))
    return found


def labelled_volumes(target, slug: str | None = None) -> list[Found]:
    """Bottle's volumes (of one bottle, or all). Apart from `labelled`: a volume outlives
    its bottle's `down` on purpose, so it is neither a leftover to sweep nor an orphan."""
    selector = f"{LABEL_SLUG}={slug}" if slug else LABEL_SLUG
    found = []
    for line in target.run(docker.volume_ls(selector)).stdout.splitlines():
        if line.strip():
            row = json.loads(line)
            labels = _parse_labels(row.get("Labels", ""))
            found.append(Found("volume", row.get("Name", ""), labels.get(LABEL_SLUG, ""),
                               labels.get(LABEL_ROLE, "")))
    return found


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


def owner(target, kind: str, name: str) -> tuple[str, str] | None:
    """(slug, role) labels of an existing resource, ('', '') if unlabelled, None if absent."""
    if kind == "container":
        argv = docker.container_inspect(name, "{{json .Config.Labels}}")
    else:
        argv = (docker.volume_inspect if kind == "volume" else docker.network_inspect)(name, "{{json .Labels}}")
    result = target.run(argv, check=False)
    if not result.ok:
        return None
    labels = json.loads(result.stdout or "null") or {}
    return labels.get(LABEL_SLUG, ""), labels.get(LABEL_ROLE, "")


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
        held = owner(bottle.target, kind, name)
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
