"""The secret scan of the workspace's git history: `.git` enters the bottle whole, and the
agent reads any object in it with git (`git show`, `git log -p`, `git fsck --lost-found`).

Leaving a working file out (credentials.py) does not take it out of the history: a `.env`
once committed, stashed (`git stash --all`), or `git add`ed and then unstaged is a blob
in `.git/objects`. So before the workspace is copied, every object git has is read
(`git cat-file --batch-all-objects --batch`: reachable or not, packed or loose) and goes
through the same content scan as the working files: each blob's first
``credentials.MAX_SCAN_BYTES`` (a binary blob's printable runs), and commit and tag messages.
Trees are not scanned (names only, as the working files' names are not).

Objects cannot be left out one by one (the repository would be broken), so a finding
refuses the launch, naming where each secret is (the path and commit of a blob the history
holds, or "no commit holds it" for a dropped stash or an unstaged add) and the fixes. A blob
found at a path `workspace.include` names is the user's to give (included working files
are not scanned either), and passes.
"""
from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import console
from ..errors import BottleError
from .credentials import MAX_SCAN_BYTES, ContentScan
from .selection import GIT, GIT_DIR, Selection

SCANNED_KINDS = (b"blob", b"commit", b"tag")
SHOWN = 5  # findings named in the error; the count stays exact
GIT_TIMEOUT = 600


@dataclass(frozen=True)
class Finding:
    oid: str
    kind: str
    reason: str          # what the content scan recognised (never the match itself)
    where: str = ""      # a path the history holds the blob at; "" when no commit holds it


def refuse_secrets(selection: Selection, scan: ContentScan, included: Callable[[str], bool]) -> None:
    """Raise a BottleError naming each secret in the copied `.git`; nothing when it holds none."""
    if not _history_comes_along(selection):
        return
    found = [Finding(oid, kind, reason) for oid, kind, reason in scan_objects(selection.root, scan)]
    if not found:
        return
    paths = paths_of(selection.root, {f.oid for f in found if f.kind == "blob"})
    located = [Finding(f.oid, f.kind, f.reason, paths.get(f.oid, "")) for f in found]
    refused = [f for f in located if not (f.kind == "blob" and f.where and included(f.where))]
    if refused:
        raise BottleError(f"workspace {selection.root}: its git history holds "
                          f"{'a secret' if len(refused) == 1 else f'{len(refused)} secrets'} the agent "
                          "could read with git (.git is copied whole; leaving a working file out does "
                          "not take it out of the history)", _detail(selection.root, refused))


def _history_comes_along(selection: Selection) -> bool:
    return selection.source == "git" and any(e.rel == GIT_DIR and e.kind == "dir" for e in selection.entries)


def scan_objects(root: Path, scan: ContentScan) -> Iterator[tuple[str, str, str]]:
    """(oid, kind, reason) of each object whose content the scan recognises a secret in."""
    argv = [*GIT, "-C", str(root), "cat-file", "--batch-all-objects", "--batch", "--unordered"]
    with tempfile.TemporaryFile() as errors:  # a file: warnings without end cannot stall git
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise BottleError(f"workspace {root} is a git repository, but git is not installed",
                              "install git (apt-get install git): bottle reads its history for secrets") from None
        assert proc.stdout is not None
        unreadable = ""
        try:
            for oid, kind, body in _objects(proc.stdout):
                reason = scan.finding(body) if kind in SCANNED_KINDS else None
                if reason:
                    yield oid, kind.decode(), reason
        except _Unreadable as exc:
            unreadable = f"git listed an object it cannot read: {exc}"
        finally:
            proc.stdout.close()
            code = proc.wait(timeout=GIT_TIMEOUT)
        errors.seek(0)
        error = (unreadable + "\n" + errors.read(4096).decode(errors="replace")).strip()
    if code or unreadable:  # fail closed: a history that cannot be read whole is not copied unscanned
        raise BottleError(f"git could not read the history of the workspace {root}",
                          f"{error}\nfix the repository (git fsck), or keep the history out of the bottle: "
                          f"add {GIT_DIR}/ to {root}/.bottleignore")


def _objects(out) -> Iterator[tuple[str, bytes, bytes]]:
    """`cat-file --batch` output: "<oid> <kind> <size>\\n<content>\\n" per object; of each
    content at most MAX_SCAN_BYTES are kept (the rest is read past, never held)."""
    while header := out.readline():
        fields = header.split()
        if len(fields) != 3 or not fields[2].isdigit():  # "<oid> missing", or worse
            raise _Unreadable(header.decode(errors="replace").strip()[:200])
        oid, kind, size = fields[0], fields[1], int(fields[2])
        body = out.read(min(size, MAX_SCAN_BYTES))
        rest = size - len(body) + 1  # and the newline after the content
        while rest > 0:
            skipped = len(out.read(min(rest, 1 << 20)))
            if not skipped:
                break
            rest -= skipped
        yield oid.decode(), kind, body


class _Unreadable(Exception):
    pass


def paths_of(root: Path, oids: set[str]) -> dict[str, str]:
    """A path each of the blobs `oids` has in some commit, ref or reflog entry (the first git
    lists); blobs no commit holds are missing."""
    if not oids:
        return {}
    done = subprocess.run([*GIT, "-C", str(root), "rev-list", "--objects", "--all", "--reflog", "--indexed-objects"],
                          capture_output=True, timeout=GIT_TIMEOUT)
    paths: dict[str, str] = {}
    for line in done.stdout.decode("utf-8", "surrogateescape").splitlines():
        oid, _, path = line.partition(" ")
        if oid in oids and path and oid not in paths:
            paths[oid] = path
    return paths


def _detail(root: Path, refused: list[Finding]) -> str:
    lines = [f"{_where(f)}: {f.reason}" for f in refused[:SHOWN]]
    if len(refused) > SHOWN:
        lines.append(f"and {len(refused) - SHOWN} more")
    lines += [
        "fix, one of:",
        "- take it out of the history (git filter-repo --invert-paths --path PATH, or rewrite the "
        "commit), drop the stash that holds it (git stash drop), then let git forget it: "
        "git reflog expire --expire=now --all && git gc --prune=now",
        f"- keep the history out of the bottle: add {GIT_DIR}/ to {root}/.bottleignore "
        "(the agent then gets no repository: no commits, no `inv diff`/`inv pull`)",
        "- a file that is no secret (a test fixture): list its path in workspace.include",
    ]
    return "\n".join(lines)


def _where(finding: Finding) -> str:
    short = finding.oid[:12]
    if finding.kind != "blob":
        return f"{finding.kind} {short} (its message)"
    if finding.where:
        return f"{console.visible(finding.where)} (blob {short}, in the history)"
    return f"blob {short} (no commit holds it: an unstaged add, a dropped stash)"
