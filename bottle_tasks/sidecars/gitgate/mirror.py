"""The bare mirror of one remote: created empty, refreshed from the upstream before every
fetch and push the agent starts, so it serves the upstream's current branches and tags
and knows the upstream's default branch."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from . import config, upstream
from .push_policy import check_ref_name
from .remotes import Remote
from .text import clean

UNKNOWN_HEAD = "refs/bottle/unknown-default-branch"
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class RefreshError(Exception):
    pass


def lock(name: str) -> threading.Lock:
    """One refresh or push per remote at a time: a push is checked against the refs it sees."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(name, threading.Lock())


def ensure(remote: Remote) -> str:
    """The remote's mirror, created if need be. Caller holds lock(remote.name)."""
    path = config.mirror(remote.name)
    if not (path / "HEAD").exists():
        create(path)
    return str(path)


def create(path: Path) -> None:
    """A new bare mirror whose HEAD names no branch. git init's HEAD (refs/heads/master) would
    be taken for the upstream's default branch until a refresh, and a push to the real one
    (main) let through; so the mirror is made aside and moved into place with HEAD set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A dot name: no URL of the gate's routes can name it while it is being made
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for argv in (["init", "--quiet", "--bare", str(staging)],
                     ["-C", str(staging), "symbolic-ref", "HEAD", UNKNOWN_HEAD]):
            subprocess.run(["git", *argv], env=upstream.local_env(), check=True, capture_output=True, timeout=30)
        shutil.rmtree(path, ignore_errors=True)  # what a crash left half made: a mirror is only a cache
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def default_branch(remote: Remote, repo: str) -> str | None:
    result = upstream.run(remote, ["ls-remote", "--symref", remote.url, "HEAD"], repo)
    if result.returncode != 0:
        raise RefreshError(clean(result.stderr, 1500).strip() or f"git ls-remote exited {result.returncode}")
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        target, _, name = line.partition("\t")
        if target.startswith("ref: ") and name == "HEAD":
            ref = target[5:].strip()
            return ref if check_ref_name(ref) is None and ref.startswith("refs/heads/") else None
    return None


def refresh(remote: Remote) -> list[dict]:
    """Fetch the upstream's branches and tags into the mirror (pruning what went away);
    the refs that changed, as {ref, old, new}. Caller holds lock(remote.name)."""
    repo = ensure(remote)
    head = default_branch(remote, repo)
    result = upstream.run(remote, ["fetch", "--porcelain", "--prune", "--no-write-fetch-head", remote.url,
                                   "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"], repo)
    if result.returncode != 0:
        raise RefreshError(clean(result.stderr, 1500).strip() or f"git fetch exited {result.returncode}")
    # Unknown (an empty upstream): HEAD points outside refs/heads, so no branch is taken for
    # the default one and the push policy refuses branch pushes until it is known.
    subprocess.run(["git", "symbolic-ref", "HEAD", head or UNKNOWN_HEAD], cwd=repo, env=upstream.local_env(),
                   check=True, capture_output=True, timeout=30)
    changed = []
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split(" ")
        if len(parts) == 4:
            _flag, old, new, ref = parts
            changed.append({"ref": clean(ref, 300), "old": old[:40], "new": new[:40]})
    return changed

