"""`build`: every image with a Dockerfile under dockerfiles/, tagged by a hash of its inputs."""
from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from invoke import Collection, task

from .. import console, docker, progress
from ..errors import BottleError
from ..images import DERIVED
from ..selection import current
from ..stepping import step
from ..target import Result, command_failed
from ..workspace import image as workspace_image

if TYPE_CHECKING:
    from ..selection import Bottle


def image_present(bottle: Bottle, tag: str) -> bool:
    return not bottle.dry and _inspected(bottle, docker.image_exists(tag)).ok


def images_present(bottle: Bottle, tags: list[str]) -> set[str]:
    """Which of these tags the engine has, in one call."""
    if bottle.dry or not tags:
        return set()
    out = _inspected(bottle, docker.images_inspect(tags, docker.REPO_TAGS)).stdout
    held = {tag for line in out.splitlines() if line.startswith("[") for tag in json.loads(line)}
    return held & set(tags)


def _inspected(bottle: Bottle, argv: list[str]) -> Result:
    """An image inspect, where "no such image" is an answer; any other failure (no engine
    answers, say) is the run's, as `run` reports it, not an image to build or to go and get."""
    result = bottle.run(argv, check=False)
    if not result.ok and "no such image" not in result.stderr.lower():
        raise command_failed(argv, result, bottle.target.describe())
    return result


def require_base(bottle: Bottle, image: str) -> None:
    if not image_present(bottle, image) and not bottle.dry:
        raise BottleError(f"base image {image} is not on {bottle.target.describe()}",
                          "run `make engine`: it pulls it, or builds it with debootstrap when no "
                          "registry answers (set images.base / images.proxy_base to use another)")


def build_one(bottle: Bottle, spec) -> None:
    console.note(f"building {spec.name} → {spec.tag}")
    context = spec.make_context()
    try:
        remote = bottle.target.put_tree(context, bottle.stage("build", spec.name))
        # Not bottle.slug/bottle.managed: containers inherit image labels, and anyone's
        # container from this image must not look like one bottle created.
        labels = {"bottle.image": spec.name}
        with progress.board() as board:
            row = board.row(spec.name, f"building {spec.tag}")
            sink = progress.BuildOutput(row)
            result = bottle.run(docker.build(spec.tag, f"{remote}/Dockerfile", remote, spec.build_args, labels,
                                             quiet=False), stream=True, out_stream=sink, err_stream=sink, check=False)
            row.finish(f"built {spec.tag}" if result.ok else "failed")
        if not result.ok:  # what the builder printed last: the failing step's own output
            raise BottleError(f"building image {spec.name} failed (exit {result.exited})",
                              "\n".join(sink.tail[-15:]) or result.stderr)
    except BottleError as exc:
        raise BottleError(f"building image {spec.name} failed", exc.detail or exc.message) from None
    finally:
        shutil.rmtree(context, ignore_errors=True)
        if bottle.target.is_remote:
            bottle.target.remove_tree(bottle.stage("build", spec.name))


@task
@step("build")
def build(c):
    """Build the bottle's images (cached by a hash of their inputs)."""
    bottle = current(c)
    specs = bottle.plan.images
    # Derived images (packages, workspace) are FROM the agent image: built after the others.
    derived = [specs[name] for name in DERIVED if name in specs]
    present = images_present(bottle, [spec.tag for name, spec in specs.items() if name not in DERIVED])
    missing = [spec for name, spec in specs.items() if name not in DERIVED and spec.tag not in present]
    for base in sorted({spec.build_args["BASE_IMAGE"] for spec in missing}):
        require_base(bottle, base)
    # Independent images build side by side: most of their time is waiting on registries.
    with ThreadPoolExecutor(max_workers=max(1, len(missing))) as pool:
        for future in [pool.submit(build_one, bottle, spec) for spec in missing]:
            future.result()
    for spec in derived:
        if spec.name == "workspace":  # its own packing: selected files, secrets left out, a report
            if workspace_image.ensure(bottle, spec):
                missing.append(spec)
        elif not image_present(bottle, spec.tag):
            build_one(bottle, spec)
            missing.append(spec)
    cached = len(specs) - len(missing)
    built = ", ".join(spec.name for spec in missing) or "nothing"
    return f"built {built}; {cached} cached"


ns = Collection(build)
