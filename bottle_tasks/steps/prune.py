"""`prune`: remove bottle images that no container and no current manifest uses.

Images are tagged by a hash of their inputs, so every change to a Dockerfile, the
sidecar code or the CA bundle leaves the previous image behind. Only images bottle
built are candidates: a `bottle.image` label *and* a `bottle/` repository (an image
someone built FROM a bottle image inherits the label, never the name). Kept: images
any container uses (running or stopped: a stopped bottle restarts from its image) and
every tag the current manifest's agents would launch with.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from invoke import Collection, task

from .. import console, manifest
from ..connections import target_for
from ..errors import BottleError
from ..plan import build_plan
from ..selection import manifest_path, selection
from ..stepping import step

LABEL = "bottle.image"
REPOSITORY = "bottle/"
_SIZE = re.compile(r"^([0-9.]+)\s*([kKMGTP]?)B$")
_UNITS = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}


@dataclass(frozen=True)
class Image:
    ref: str          # repository:tag
    id: str
    containers: int   # containers (any state) created from it
    unique_size: int  # bytes only this image holds: what removing it frees


def parse_size(text: str) -> int:
    """Docker's human sizes (decimal units: 533.2kB, 1.04GB) in bytes; unknown -> 0."""
    found = _SIZE.match(text.strip())
    return int(float(found[1]) * _UNITS[found[2]]) if found else 0


def human(size: int) -> str:
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"


def choose(images: list[Image], wanted: set[str]) -> tuple[list[Image], list[tuple[Image, str]]]:
    """(to remove, [(kept, why)]). An image id is removed only when none of its tags is kept."""
    kept_ids = set()
    reasons = {}
    for image in images:
        if image.containers:
            reasons[image.ref] = f"used by {image.containers} container(s)"
        elif image.ref in wanted:
            reasons[image.ref] = "the current manifest uses it"
        if image.ref in reasons:
            kept_ids.add(image.id)
    remove = [image for image in images if image.id not in kept_ids]
    kept = [(image, reasons.get(image.ref, "another tag of it is kept")) for image in images
            if image.id in kept_ids]
    return remove, kept


def wanted_tags(c) -> tuple[set[str], str | None]:
    """Every image tag the selected manifest's agents would launch with, and a note when
    that manifest does not load (then nothing is wanted: a rebuild brings images back)."""
    chosen = selection(c)
    try:
        loaded = manifest.load(str(manifest_path(chosen["manifest"])))
    except BottleError as exc:
        return set(), f"the manifest does not load, so no image counts as wanted by it ({exc.message})"
    tags = set()
    for agent in loaded.agents.values():
        slug = chosen["name"] if agent.name == chosen["agent"] and chosen["name"] else agent.name
        tags |= {spec.tag for spec in build_plan(slug, loaded, agent).images.values()}
    return tags, None


def list_images(target, only: str | None) -> list[Image]:
    argv = ["docker", "image", "ls", "--filter", f"label={LABEL}", "--format", "{{.Repository}}:{{.Tag}}"]
    if only:
        argv[3:3] = ["--filter", f"label={only}"]
    refs = {ref for ref in target.run(argv).stdout.split() if ref.startswith(REPOSITORY) and not ref.endswith(":<none>")}
    if not refs:
        return []
    # One call for ids, container counts and unique sizes of every image.
    rows = json.loads(target.run(["docker", "system", "df", "-v", "--format", "{{json .Images}}"]).stdout or "[]")
    images = []
    for row in rows:
        ref = f"{row.get('Repository')}:{row.get('Tag')}"
        if ref in refs:
            images.append(Image(ref, row.get("ID", ""), int(row.get("Containers") or 0),
                                parse_size(row.get("UniqueSize", ""))))
    return sorted(images, key=lambda image: image.ref)


@task(help={"only": "prune only images that also carry this label, KEY=VALUE",
            "verbose": "also list the images kept, and why"})
@step("prune")
def prune(c, only=None, verbose=False):
    """Remove bottle images no container and no current manifest uses; report the space freed."""
    target = target_for(c, selection(c)["remote"])
    if only and "=" not in only:
        raise BottleError(f"--only {only!r}: expected a label as KEY=VALUE")
    wanted, note = wanted_tags(c)
    if note:
        console.note(note)
    remove, kept = choose(list_images(target, only), wanted)
    if verbose:
        for image, why in kept:
            console.note(f"kept {image.ref}: {why}")
    if not remove:
        return f"nothing to remove; {len(kept)} image(s) in use"
    removed, freed, failed = [], 0, []
    for image in remove:
        # No --force: an image a container started from meanwhile stays.
        result = target.run(["docker", "image", "rm", image.ref], check=False)
        if result.ok:
            removed.append(image)
            console.note(f"removed {image.ref}")
        else:
            failed.append(image.ref)
    freed = sum({image.id: image.unique_size for image in removed}.values())
    summary = f"removed {len(removed)} image(s), freed {human(freed)}; kept {len(kept)} in use"
    if failed:
        summary += f"; could not remove {', '.join(failed)}"
    return summary


ns = Collection(prune)
