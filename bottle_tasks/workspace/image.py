"""The workspace image: FROM the agent image, the selected files at /workspace, tagged by
the selection's digest (selection.py). `down` keeps it and only `down --purge` removes it,
so an unchanged workspace relaunches with one `docker image inspect` and no copy.
What was left out travels in a label, so a relaunch can say it again without a rescan."""
from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from .. import console, docker
from ..errors import BottleError

# Packing and the content scan (pathspec, the DLP rules) are imported when a workspace is
# packed, not by every `inv` command: most bottles have no workspace copy.
if TYPE_CHECKING:
    from ..selection import Bottle
    from .selection import LeftOut, Selection

LEFT_OUT_LABEL = "bottle.workspace.left-out"
LABEL_ITEMS = 200   # the label keeps this many paths; the count stays exact
SHOWN_PER_REASON = 5


def selection_for(agent) -> Selection:
    from .selection import selected

    workspace = agent.workspace
    return selected(workspace.path, tuple(workspace.include), tuple(agent.network.dlp.patterns))


def repository(tag: str) -> str:
    return tag.rpartition(":")[0]


def ensure(bottle: Bottle, spec) -> bool:
    """The workspace image for `spec.tag`, built unless it is there; True when built."""
    selection = selection_for(bottle.agent)
    if not bottle.dry:
        found = bottle.run(docker.image_labels(spec.tag), check=False)
        if found.ok:
            labels = json.loads(found.stdout or "null") or {}
            report(selection, _from_label(labels.get(LEFT_OUT_LABEL)), reused=True)
            return False
    build(bottle, spec, selection)
    return True


def build(bottle: Bottle, spec, selection: Selection) -> None:
    labels_base = {"bottle.image": "workspace"}  # as build.build_one: no bottle.slug on images
    if bottle.dry:
        bottle.run(docker.build(spec.tag, "Dockerfile", "-", {}, labels_base),
                   stdin_path=bottle.stage("build", "workspace.tar"))
        return
    from . import history, pack
    from .credentials import ContentScan
    from .selection import spec as include_spec

    scan = ContentScan(bottle.agent.network.dlp.patterns)
    workspace = bottle.agent.workspace
    included = include_spec(workspace.include if workspace else ())
    # Before anything is written: a secret in .git refuses the launch (its own message).
    history.refuse_secrets(selection, scan, lambda path: bool(included and included.match_file(path)))
    fd, local = tempfile.mkstemp(prefix=f"bottle-workspace-{bottle.slug}-", suffix=".tar")  # 0600
    os.close(fd)
    remote = None
    try:
        left = [*selection.left_out, *pack.write_context(selection, spec.dockerfile_text, Path(local), scan)]
        remote = bottle.target.put_file(Path(local), bottle.stage("build", "workspace.tar"))
        if selection.size >= pack.LARGE:
            console.note(f"workspace: building the image ({selection.size / 1e6:.0f} MB)")
        labels = {**labels_base, LEFT_OUT_LABEL: _to_label(left)}
        bottle.run(docker.build(spec.tag, "Dockerfile", "-", {}, labels), stdin_path=remote)
    except BottleError as exc:
        raise BottleError("building image workspace failed", exc.detail or exc.message) from None
    finally:
        os.unlink(local)
        if remote and bottle.target.is_remote:
            bottle.target.run(["rm", "-f", remote], check=False)
    report(selection, left, reused=False)
    remove_older(bottle, spec.tag)


def remove_older(bottle: Bottle, tag: str) -> None:
    """Earlier workspace images of this bottle: each is a full copy. One a container still
    runs from stays (the engine refuses), and goes on a later build, `down --purge` or prune."""
    current = bottle.run(docker.image_exists(tag)).stdout.strip()
    ids = set(bottle.run(docker.image_ls(repository(tag))).stdout.split())
    older = sorted(i for i in ids if not current.removeprefix("sha256:").startswith(i.removeprefix("sha256:")))
    if older:
        bottle.run(docker.image_rm(older, force=False), check=False)


def report(selection: Selection, left: list[LeftOut], reused: bool) -> None:
    what = "unchanged, image reused" if reused else "copied"
    console.note(f"workspace {what}: {selection.files} files, {selection.size / 1e6:.1f} MB "
                 f"({'git: tracked and not-ignored files, and .git' if selection.source == 'git' else 'folder'})")
    if not left:
        return
    by_reason: dict[str, list[str]] = defaultdict(list)
    for item in left:
        by_reason[item.reason].append(item.rel)
    console.note("workspace: left out (list a path in workspace.include to bring it back):")
    for reason, paths in by_reason.items():
        # A file name may hold a line break: shown as `\n`, so no name prints a line of its own.
        shown = ", ".join(console.visible(path) for path in paths[:SHOWN_PER_REASON])
        more = f" and {len(paths) - SHOWN_PER_REASON} more" if len(paths) > SHOWN_PER_REASON else ""
        console.note(f"  {reason}: {shown}{more}")


def _to_label(left: list[LeftOut]) -> str:
    return json.dumps({"count": len(left), "items": [[i.rel, i.reason] for i in left[:LABEL_ITEMS]]},
                      separators=(",", ":"))


def _from_label(text: str | None) -> list[LeftOut]:
    from .selection import LeftOut

    try:
        doc = json.loads(text or "{}")
        items = [LeftOut(str(rel), str(reason)) for rel, reason in doc.get("items", [])]
    except (ValueError, TypeError, AttributeError):
        return []
    missing = int(doc.get("count", len(items))) - len(items)
    return items + ([LeftOut(f"{missing} more", "not listed")] if missing > 0 else [])


def _images(target, slug: str | None) -> list[str]:
    """Ids of one bottle's workspace images, or of every bottle's (slug None)."""
    reference = f"bottle/workspace-{slug}" if slug else "bottle/workspace-*"
    return sorted(set(target.run(docker.image_ls(reference)).stdout.split()))


def kept(target, slug: str) -> list[str]:
    """What `down` leaves of the workspace: its image, for a fast relaunch."""
    return ["workspace image"] if _images(target, slug) else []


def purge(target, slug: str | None) -> list[str]:
    """`down --purge`: the workspace image (a copy of the user's files) goes too."""
    ids = _images(target, slug)
    if ids:
        target.run(docker.image_rm(ids))
    return ["workspace image"] * bool(ids) if slug else [f"workspace image {i}" for i in ids]
