"""The secret scan of the workspace's git history: `.git` enters the bottle whole, and the
agent reads any object in it with git (`git show`, `git log -p`, `git fsck --lost-found`).

Leaving a working file out (credentials.py) does not take it out of the history: a `.env`
once committed, stashed (`git stash --all`), or `git add`ed and then unstaged is a blob
in `.git/objects`. So before the workspace is copied, the history is checked by the
working files' two rules:

- by content: every object git has is read (`git cat-file --batch-all-objects --batch`:
  reachable or not, packed or loose): each blob's first ``credentials.MAX_SCAN_BYTES`` (a
  binary blob's printable runs), and commit and tag messages, through the same scan. Trees
  are not (names only, as the working files' names are not);
- by name: every blob a commit, ref, reflog entry or the index holds, at the path git lists
  it at, through `credentials.by_name` (a committed `.env` whose password has no shape a
  DLP rule knows), but for `.pem` files: a certificate is no secret, and a PEM private key
  is found by its content.

Objects cannot be left out one by one (the repository would be broken), so a finding
refuses the launch, naming where each secret is (the path of a blob, a commit's message, or
"no commit holds it" for a dropped stash or an unstaged add) and the fixes. A blob at a
path `workspace.include` names is the user's to give (included working files are not
scanned either), and passes. A history git cannot read or list whole refuses too.
"""
from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import console
from ..errors import BottleError
from ..sidecars.gitgate import batch
from .credentials import MAX_SCAN_BYTES, ContentScan, by_name
from .selection import GIT, GIT_DIR, Selection

SCANNED_KINDS = ("blob", "commit", "tag")
SHOWN = 5  # findings named in the error; the count stays exact
GIT_TIMEOUT = 600


@dataclass(frozen=True)
class Finding:
    oid: str
    kind: str
    reason: str          # what the content scan or a credential name rule recognised (never the match)
    where: str = ""      # a path the history holds the blob at; "" when no commit holds it


def refuse_secrets(selection: Selection, scan: ContentScan, included: Callable[[str], bool]) -> None:
    """Raise a BottleError naming each secret in the copied `.git`; nothing when it holds none."""
    if not _history_comes_along(selection):
        return
    root = selection.root
    by_content = {oid: Finding(oid, kind, reason) for oid, kind, reason in scan_objects(root, scan)}
    by_name: list[Finding] = []
    for oid, path in blob_paths(root):  # streamed: a large history's paths are never all held
        found = by_content.get(oid)
        if found and not found.where:
            by_content[oid] = Finding(oid, found.kind, found.reason, path)
        reason = credential_name(path)
        if reason:
            by_name.append(Finding(oid, "blob", reason, path))
    refused, seen = [], set()
    for finding in [*by_content.values(), *by_name]:  # a blob once, by content if both found it
        if finding.oid not in seen and not (finding.kind == "blob" and finding.where and included(finding.where)):
            seen.add(finding.oid)
            refused.append(finding)
    if refused:
        raise BottleError(f"workspace {root}: its git history holds "
                          f"{'a secret' if len(refused) == 1 else f'{len(refused)} secrets'} the agent "
                          "could read with git (.git is copied whole; leaving a working file out does "
                          "not take it out of the history)", _detail(root, refused))


def credential_name(path: str) -> str | None:
    """Why a blob at `path` is a credential by its name (credentials.by_name), but for a
    `.pem`: a certificate is no secret, and a PEM private key is found by its content."""
    return None if path.endswith(".pem") else by_name(path)


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
                    yield oid, kind, reason
        except batch.BatchError as exc:
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


def _objects(out) -> Iterator[tuple[str, str, bytes]]:
    """(oid, kind, content) per object; of each content at most MAX_SCAN_BYTES are kept (the
    rest is read past, never held); raises batch.BatchError."""
    while (header := batch.read_header(out)) is not None:
        oid, kind, size = header
        yield oid, kind, batch.read_content(out, size, keep=MAX_SCAN_BYTES)


def blob_paths(root: Path) -> Iterator[tuple[str, str]]:
    """(oid, path) of every blob a commit, ref, reflog entry or the index holds, at the path
    git first lists it at (`rev-list --objects`: a blob is listed once, under one of its
    names), blobs only (`cat-file --batch-check` tells the kind). Fails closed, as the scan."""
    listing = [*GIT, "-C", str(root), "rev-list", "--objects", "--all", "--reflog", "--indexed-objects"]
    check = [*GIT, "-C", str(root), "cat-file", "--batch-check=%(objecttype) %(objectname) %(rest)"]
    with tempfile.TemporaryFile() as errors:
        lister = subprocess.Popen(listing, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
        checker = subprocess.Popen(check, stdin=lister.stdout, stdout=subprocess.PIPE, stderr=errors)
        assert lister.stdout is not None and checker.stdout is not None
        lister.stdout.close()  # the checker's now: the lister sees its end if it ends early
        try:
            for line in checker.stdout:
                kind, _, rest = line.rstrip(b"\n").partition(b" ")
                oid, _, path = rest.partition(b" ")
                if kind == b"blob" and path:
                    yield oid.decode(), path.decode("utf-8", "surrogateescape")
        finally:
            checker.stdout.close()
            failed = checker.wait(timeout=GIT_TIMEOUT) | lister.wait(timeout=GIT_TIMEOUT)
        errors.seek(0)
        error = errors.read(4096).decode(errors="replace").strip()
    if failed:
        raise BottleError(f"git could not list the history of the workspace {root}",
                          f"{error}\nfix the repository (git fsck), or keep the history out of the bottle: "
                          f"add {GIT_DIR}/ to {root}/.bottleignore")


def _detail(root: Path, refused: list[Finding]) -> str:
    """Each path once (a file's versions together, sorted: what `workspace.include` would
    name), then what no path names."""
    by_path: dict[str, list[Finding]] = {}
    for finding in refused:
        if finding.where:
            by_path.setdefault(finding.where, []).append(finding)
    lines = []
    for path in sorted(by_path)[:SHOWN]:
        found = by_path[path]
        which = f"{len(found)} versions" if len(found) > 1 else f"blob {found[0].oid[:12]}"
        lines.append(f"{console.visible(path)} ({which}, in the history): {'; '.join(sorted({f.reason for f in found}))}")
    if len(by_path) > SHOWN:
        lines.append(f"and {len(by_path) - SHOWN} more paths")
    pathless = [f for f in refused if not f.where]
    lines += [f"{_where(f)}: {f.reason}" for f in pathless[:SHOWN]]
    if len(pathless) > SHOWN:
        lines.append(f"and {len(pathless) - SHOWN} more")
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
    return (f"blob {short} (no commit holds it: an unstaged add, a dropped stash, an agent's work that "
            "`bottle diff` fetched or a deleted bottle/ branch held)")
