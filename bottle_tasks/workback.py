"""Getting the agent's work back: what runs inside the agent, and on the controller's repo.

Inside the agent one script takes a *snapshot*: its commits as they are, plus its
uncommitted changes (untracked files too, .gitignore respected) as one more commit,
built with a temporary index and `git commit-tree` so neither the agent's branch,
its index nor its files move. A second one writes a git bundle of what the controller's
repo lacks (the controller sends the commit ids it has; those the agent also has become
the bundle's prerequisites) to its stdout, which `git fetch` then stores as branch
`bottle/<name>` (`pull`) or a scratch ref that `diff` compares on the controller. The
user's checked-out branch and working tree are never touched: only that one ref changes,
and git refuses a fetch into a checked-out branch anyway.

Everything the agent answers is the agent's to forge: the snapshot line must name commit
ids, the bundle arrives as bytes on a pipe (never as a path in the agent, which it could
make a symlink, a directory or a sparse terabyte), bounded, and must be a bundle.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

WORKSPACE = "/workspace"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's empty tree: the base of a repo with no history
#: at most this many of the controller's commit ids go to the agent (argv, not a secret)
MAX_KNOWN = 2000
#: the most a bundle of the agent's work may weigh on the controller
MAX_BUNDLE_BYTES = 1 << 30
BUNDLE_HEADS = (b"# v2 git bundle\n", b"# v3 git bundle\n")
_OID = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")

# $@: the controller's commits; sets $known to "^C" for each the agent has too.
KNOWN_SCRIPT = r"""
known=""
for commit in "$@"; do
  if git cat-file -e "$commit^{commit}" 2>/dev/null; then known="$known ^$commit"; fi
done
"""

# Run in the workspace. $1 recorded base commit or "", $2 the previous snapshot (the bottle
# branch's tip) or "", $3... commits the controller has.
SNAPSHOT_SCRIPT = r"""
set -eu
base=$1 previous=$2
shift 2
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "bottle: $(pwd) in the agent is not a git repository" >&2
  exit 3
fi
git config user.name >/dev/null || export GIT_AUTHOR_NAME="bottle agent" GIT_COMMITTER_NAME="bottle agent"
git config user.email >/dev/null || export GIT_AUTHOR_EMAIL=agent@bottle.invalid GIT_COMMITTER_EMAIL=agent@bottle.invalid
head=$(git rev-parse --verify -q 'HEAD^{commit}' || true)
# A copy of the index: what the agent staged stays staged, and its own index is never written.
index=$(mktemp -u /tmp/bottle-index.XXXXXX)
trap 'rm -f "$index" "$index.lock"' EXIT
real=$(git rev-parse --git-path index)
if [ -f "$real" ]; then cp "$real" "$index"; fi
GIT_INDEX_FILE=$index git add -A
tree=$(GIT_INDEX_FILE=$index git write-tree)
tip=$head dirty=0
if [ -z "$head" ] || [ "$tree" != "$(git rev-parse "$head^{tree}")" ]; then
  dirty=1
  # The same changes on the same commit as the last pull: the same snapshot, not a new one.
  if [ -n "$previous" ] && [ -n "$head" ] && git cat-file -e "$previous^{commit}" 2>/dev/null \
     && [ "$(git rev-parse "$previous^{tree}")" = "$tree" ] \
     && [ "$(git rev-parse -q --verify "$previous^1" || true)" = "$head" ]; then
    tip=$previous
  else
    tip=$(git commit-tree "$tree" ${head:+-p "$head"} -m "bottle: the agent's uncommitted changes")
  fi
fi
""" + KNOWN_SCRIPT + r"""
if [ -z "$base" ] || ! git cat-file -e "$base^{commit}" 2>/dev/null; then
  # Not recorded: the newest commit of the tip's first-parent line the controller also has.
  oldest=$(git rev-list --first-parent "$tip" $known | tail -n 1)
  if [ -z "$oldest" ]; then base=$tip
  else base=$(git rev-parse --verify -q "$oldest^1" || echo none); fi
fi
count=$(git rev-list --count "$tip" $known)
commits=0
if [ -n "$head" ]; then
  if [ "$base" = none ]; then commits=$(git rev-list --count "$head")
  else commits=$(git rev-list --count "$head" "^$base"); fi
fi
echo "snapshot head=${head:-none} tip=$tip base=$base new=$count dirty=$dirty commits=$commits"
"""


@dataclass(frozen=True)
class Snapshot:
    head: str | None   # the agent's HEAD (None: no commit yet)
    tip: str           # HEAD, or the commit of its uncommitted changes on top
    base: str          # the commit the workspace was copied from (EMPTY_TREE: none)
    new: int           # commits the controller's repo lacks
    dirty: bool        # the agent had uncommitted changes
    commits: int = 0   # commits the agent made since the copy


# Run in the workspace. $1 the snapshot's tip, $2... commits the controller has. The bundle
# goes to stdout; the temporary ref it needs is removed whatever happens.
BUNDLE_SCRIPT = r"""
set -eu
tip=$1
shift
""" + KNOWN_SCRIPT + r"""
git update-ref refs/bottle/pull "$tip"
trap 'git update-ref -d refs/bottle/pull' EXIT
git bundle create - refs/bottle/pull $known 2>/dev/null
"""


def snapshot_argv(base: str | None, known: list[str], previous: str | None = None) -> list[str]:
    """The command run inside the agent (as the agent user, with the workspace as working directory)."""
    return ["sh", "-c", SNAPSHOT_SCRIPT, "bottle-snapshot", base or "", previous or "", *known[:MAX_KNOWN]]


def bundle_argv(tip: str, known: list[str]) -> list[str]:
    """Run inside the agent as snapshot_argv is: the bundle of `tip`, less what is `known`, on stdout."""
    return ["sh", "-c", BUNDLE_SCRIPT, "bottle-bundle", tip, *known[:MAX_KNOWN]]


def parse_snapshot(stdout: str) -> Snapshot:
    """The snapshot line, read as what it is: the agent's claim. Its commits must be commit ids,
    since they go into git's argv on the controller."""
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith("snapshot ")), "")
    try:
        fields = dict(part.split("=", 1) for part in line.split()[1:])
        head = None if fields["head"] == "none" else _oid(fields["head"])
        base = EMPTY_TREE if fields["base"] == "none" else _oid(fields["base"])
        return Snapshot(head, _oid(fields["tip"]), base, int(fields["new"]), fields["dirty"] == "1",
                        int(fields.get("commits", 0)))
    except (KeyError, ValueError):
        raise ValueError(f"no snapshot line bottle can read in the agent's output: {stdout[-500:]!r}") from None


def is_oid(text: str) -> bool:
    return bool(_OID.fullmatch(text))


def _oid(text: str) -> str:
    if not is_oid(text):
        raise ValueError(f"not a commit id: {text[:80]!r}")
    return text


def bundle_problem(path: str) -> str | None:
    """Why the file the agent's bundle was written to is not one to fetch from, or None."""
    if os.path.getsize(path) > MAX_BUNDLE_BYTES:
        return f"the agent's work is larger than {MAX_BUNDLE_BYTES >> 20} MiB as a git bundle"
    with open(path, "rb") as bundle:
        if bundle.readline(64) not in BUNDLE_HEADS:
            return "what the agent sent is not a git bundle"
    return None


# -- the controller's repository -------------------------------------------------

def git(repo: str, *args: str) -> list[str]:
    return ["git", "-C", repo, *args]


def known_commits_argv(repo: str) -> list[str]:
    """The tips the controller's repo has: the agent bundles only what lies beyond them. Not the
    bottle/ branches: an earlier pull must not pass for the commit the workspace was copied from."""
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/remotes", "refs/tags")


def known_commits(for_each_ref: str) -> list[str]:
    return [line.split()[1] for line in for_each_ref.splitlines()
            if len(line.split()) == 2 and not line.startswith("refs/heads/bottle/")]


def branch_for(slug: str) -> str:
    return f"bottle/{slug}"


def path_git_writes(name: str) -> bool:
    """Could git itself have made this path of a tree? Never absolute, no empty, `.` or `..`
    part, no `.git` (as a case-insensitive or Windows file system reads it). The snapshot is the
    agent's: a hand-written index puts `../x/bottle.yaml` in a tree, and git fetches it."""
    return not name.startswith("/") and all(
        part not in ("", ".", "..") and part.rstrip(". ").lower() != ".git" for part in name.split("/"))


def checked_out(worktree_list: str, ref: str) -> bool:
    """Is `ref` checked out in a worktree (`git worktree list --porcelain` output)?"""
    return any(line == f"branch {ref}" for line in worktree_list.splitlines())


def describe(snapshot: Snapshot, branch: str, old: str | None) -> str:
    parts = []
    commits = snapshot.commits
    parts.append(f"{commits} commit{'s' if commits != 1 else ''} of the agent")
    if snapshot.dirty:
        parts.append("its uncommitted changes as one last commit")
    what = " + ".join(parts)
    moved = f" (was {old[:12]})" if old and old != snapshot.tip else ""
    verb = "created" if not old else ("unchanged" if old == snapshot.tip else "updated")
    return f"branch {branch} {verb} at {snapshot.tip[:12]}{moved}: {what}"
