"""`build`: every image with a Dockerfile under dockerfiles/, tagged by a hash of its inputs."""
import shutil
from concurrent.futures import ThreadPoolExecutor

from invoke import Collection, task

from .. import console, docker
from ..context import current
from ..errors import BottleError
from ..stepping import step


def image_present(bottle, tag: str) -> bool:
    return not bottle.dry and bottle.run(docker.image_exists(tag), check=False).ok


def require_base(bottle, image: str) -> None:
    if not image_present(bottle, image) and not bottle.dry:
        raise BottleError(f"base image {image} is not on {bottle.target.describe()}",
                          "run `make engine`: it pulls it, or builds it with debootstrap when no "
                          "registry answers (set images.base / images.proxy_base to use another)")


def build_one(bottle, spec) -> None:
    console.note(f"building {spec.name} → {spec.tag}")
    context = spec.make_context()
    try:
        remote = bottle.target.put_tree(context, bottle.stage("build", spec.name))
        # Not bottle.slug/bottle.managed: containers inherit image labels, and anyone's
        # container from this image must not look like one bottle created.
        labels = {"bottle.image": spec.name}
        bottle.run(docker.build(spec.tag, f"{remote}/Dockerfile", remote, spec.build_args, labels))
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
    # The workspace image is FROM the agent image: it is built after the others.
    workspace = specs.get("workspace")
    missing = [spec for name, spec in specs.items()
               if name != "workspace" and not image_present(bottle, spec.tag)]
    for base in sorted({spec.build_args["BASE_IMAGE"] for spec in missing}):
        require_base(bottle, base)
    # Independent images build side by side: most of their time is waiting on registries.
    with ThreadPoolExecutor(max_workers=max(1, len(missing))) as pool:
        for future in [pool.submit(build_one, bottle, spec) for spec in missing]:
            future.result()
    if workspace and not image_present(bottle, workspace.tag):
        build_one(bottle, workspace)
        missing.append(workspace)
    cached = len(specs) - len(missing)
    built = ", ".join(spec.name for spec in missing) or "nothing"
    return f"built {built}; {cached} cached"


ns = Collection(build)
