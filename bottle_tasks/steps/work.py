"""`pull` and `diff`: the agent's work, back in the project's repository.

The git plumbing is in workback.py; this module moves the bundle from the agent to the
controller (the agent's stdout into a new file on the Docker host, bounded; SFTP from a
remote one) and drives git in the controller's repo through the invoke Context, never the
user's working tree. `diff` too runs git on the controller, on the fetched snapshot: git in
the agent prints whatever the agent's config, attributes and hooks make it print.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from invoke import Collection, task

from .. import console, containers, docker, project, provisioning, run, workback
from ..errors import BottleError
from ..selection import current
from ..workspace import BOTTLEIGNORE

if TYPE_CHECKING:
    from ..selection import Bottle

AGENT_USER = f"{provisioning.AGENT_UID}:{provisioning.AGENT_GID}"
# Seconds git in the agent may take for a snapshot or a bundle (a large workspace: minutes).
AGENT_GIT_WAIT = 900


# Paths here are the agent's file names: a name such as ":(exclude)x/bottle.yaml" is no
# pathspec magic, only a name (it made `ls-tree` fail, after the branch was updated and before
# pull could warn that the agent changed bottle.yaml).
LITERAL_PATHS = {"GIT_LITERAL_PATHSPECS": "1"}


def local_git(c, argv: list[str], check: bool = True, stream: bool = False, out_stream=None):
    """git on the controller: the user's repository lives here, whichever host runs Docker.
    `out_stream`: where its stdout goes as it comes (its stderr is kept for the result)."""
    hide = "err" if out_stream is not None else not stream
    result = c.run(shlex.join(argv), hide=hide, warn=True, in_stream=False, pty=False, env=LITERAL_PATHS,
                   out_stream=out_stream)
    if check and not result.ok:
        raise BottleError(f"`{' '.join(argv[3:6])} …` failed in {argv[2]} (exit {result.exited})",
                          (result.stderr or result.stdout).strip()[-2000:])
    return result


def host_repo(c, bottle) -> str:
    """The controller's git repository the workspace was copied from."""
    workspace = getattr(bottle.agent, "workspace", None) if bottle.agent else None
    folder = workspace.path if workspace else os.getcwd()
    found = local_git(c, workback.git(folder, "rev-parse", "--show-toplevel"), check=False)
    if not found.ok:
        raise BottleError(f"{folder} is not in a git repository",
                          "bottle pull brings the agent's work back as a branch: run `git init` and commit "
                          "your project before `bottle launch`")
    return found.stdout.strip()


def recorded_base(bottle: Bottle) -> str | None:
    """The commit the workspace was copied from, recorded at launch for this very container."""
    record = bottle.state.get("work_base") or {}
    name = bottle.state.resource("agent")
    container = containers.container_id(bottle, name) if name else None
    commit = record.get("commit") if container and record.get("container") == container else None
    # git in the agent answered it (remember_base): it goes into git's argv here, so a commit id only
    return commit if isinstance(commit, str) and workback.is_oid(commit) else None


def agent_git(name: str, argv: list[str], output_limit: int = docker.OUTPUT_LIMIT) -> list[str]:
    """`docker exec` of `argv` (git, or a script of git commands) as the agent, in its workspace.
    The agent can hold it up (a FIFO for .git/HEAD, SIGSTOP of its own uid's processes), so it
    is ended after AGENT_GIT_WAIT rather than keep `pull`, `diff` or a launch waiting for ever;
    and it can make it write without end, so at most `output_limit` of each stream is read."""
    return docker.bounded(docker.exec_(name, argv, user=AGENT_USER, workdir=workback.WORKSPACE),
                          "git in the agent's workspace", AGENT_GIT_WAIT, output_limit)


def remember_base(bottle: Bottle) -> None:
    """At launch, before the agent did anything: the workspace's HEAD is what it was copied from."""
    if bottle.agent is not None and bottle.agent.workspace is None:
        return  # an empty /workspace at launch: no starting point to remember
    name = bottle.state.resource("agent")
    container = containers.container_id(bottle, name) if name else None
    if not name or not container:
        return
    recorded = bottle.state.get("work_base") or {}
    if recorded.get("container") == container and recorded.get("commit"):
        return  # this container's starting point is known already
    if not created_by_this_run(name):
        return  # kept running from before: its HEAD is whatever the agent made it since
    found = bottle.run(agent_git(name, ["git", "rev-parse", "--verify", "-q", "HEAD^{commit}"]), check=False)
    commit = found.stdout.strip()
    if found.ok and workback.is_oid(commit):
        bottle.state.set("work_base", {"container": container, "commit": commit})


def created_by_this_run(container: str) -> bool:
    """Whether this run created `container` (its creation is in the run's journal)."""
    return any(action.kind == "container" and action.name == container for _, action in run.now().journal)


def take_snapshot(c, bottle, repo: str, previous: str | None = None) -> tuple[workback.Snapshot, list[str]]:
    """The agent's snapshot, and the commits the controller has (what a bundle may leave out)."""
    name = bottle.require("agent", "launch")
    known = workback.known_commits(local_git(c, workback.known_commits_argv(repo)).stdout)
    head = local_git(c, workback.git(repo, "rev-parse", "--verify", "-q", "HEAD^{commit}"), check=False)
    known = list(dict.fromkeys(([head.stdout.strip()] if head.ok else []) + known))
    recorded = recorded_base(bottle)
    result = bottle.run(agent_git(name, workback.snapshot_argv(recorded, known, previous)), check=False)
    if result.exited == 3:
        raise BottleError(f"bottle {bottle.slug}: {workback.WORKSPACE} in the agent is not a git repository",
                          "pull and diff need a workspace copied from a git repository (with its .git)")
    if not result.ok:
        raise BottleError(f"bottle {bottle.slug}: taking a snapshot of the agent's work failed",
                          (result.stderr or result.stdout)[-2000:])
    if bottle.dry:
        return workback.Snapshot(None, workback.EMPTY_TREE, workback.EMPTY_TREE, 0, False), known
    try:
        snapshot = workback.parse_snapshot(result.stdout)
    except ValueError as e:
        raise BottleError(f"bottle {bottle.slug}: the agent's snapshot cannot be read", str(e)) from None
    return dataclasses.replace(snapshot, base=trusted_base(c, bottle.slug, repo, snapshot.base, recorded, known)), known


def trusted_base(c, slug: str, repo: str, claimed: str, recorded: str | None, known: list[str]) -> str:
    """The commit `diff` and the rule-file warning compare the agent's work with. The agent's
    snapshot line is its to forge (a process of its uid writes into the exec's stdout): a base
    of its own making, one of its commits with its edit of bottle.yaml in it, would hide that
    edit from both. So the base recorded at launch, when there is one; else the agent's claim
    only if it is a commit of the operator's history (outside bottle/ branches)."""
    if recorded:
        return recorded
    if claimed == workback.EMPTY_TREE:
        return claimed  # everything the snapshot holds is shown as new: nothing hidden
    outside = local_git(c, workback.git(repo, "rev-list", "-n", "1", claimed, "--not", *known, "--"), check=False)
    if not outside.ok or outside.stdout.strip():
        raise BottleError(f"bottle {slug}: the agent's snapshot names {claimed[:12]} as the commit its "
                          "workspace was copied from, and that is no commit of your branches or tags",
                          "nothing was fetched; relaunching the bottle records its starting point")
    return claimed


def fetch_bundle(c, bottle, repo: str, ref: str, snapshot: workback.Snapshot, known: list[str]) -> None:
    """Agent (stdout) -> a new file on the Docker host -> controller (SFTP when remote) -> `git
    fetch` into `ref`, which must then hold the snapshot's tip."""
    name = bottle.require("agent", "launch")
    # A name of this run's own: `pull` and `diff` take no lock (they only look), and two at once
    # removed or took each other's bundle.
    staged = bottle.stage(f"pull-{os.getpid()}-{secrets.token_hex(4)}.bundle")
    # Its stdout goes to a file on the Docker host (bounded_output), not into memory: a bundle may
    # be larger than an exec's usual bound, up to the size bundle_problem refuses.
    bundle = agent_git(name, workback.bundle_argv(snapshot.tip, known), workback.MAX_BUNDLE_BYTES + 1)
    with tempfile.TemporaryDirectory(prefix="bottle-pull-") as scratch:
        local = os.path.join(scratch, "agent.bundle")
        try:
            bottle.run(["rm", "-f", staged])
            made = bottle.run(bounded_output(bundle, staged, workback.MAX_BUNDLE_BYTES + 1), check=False)
            if bottle.target.is_remote:
                bottle.target.connection.get(staged, local)
            else:
                shutil.move(staged, local)
            problem = workback.bundle_problem(local)
            if problem:
                raise BottleError(f"bottle {bottle.slug}: {problem}; nothing was fetched", made.stderr[-2000:])
            take_in(c, repo, local, ref, bottle.slug)
        finally:
            bottle.run(["rm", "-f", staged], check=False)
    fetched = local_git(c, workback.git(repo, "rev-parse", "--verify", "-q", ref), check=False).stdout.strip()
    if fetched != snapshot.tip:
        raise BottleError(f"bottle {bottle.slug}: the agent's bundle holds {fetched[:12] or 'nothing'}, "
                          f"not the snapshot {snapshot.tip[:12]} it announced")


# What git on the operator's machine may spend taking in the agent's bundle. A bundle of a few
# hundred bytes can hold deltas that each build a blob of gigabytes (a run of copy instructions
# over a small base): git's index-pack inflated two such to 4 GiB in 40 s, in threads side by
# side, and thousands would hash for hours. One thread, at most FETCH_MEMORY_KIB of address
# space and FETCH_CPU_SECONDS of CPU; fsck refuses malformed objects.
FETCH_MEMORY_KIB = 4 << 20
FETCH_CPU_SECONDS = 600


def take_in(c, repo: str, bundle: str, ref: str, slug: str) -> None:
    """`git fetch` of the agent's `bundle` into `ref` of `repo`, within the FETCH_ bounds.
    `+`: the agent may have rewritten its history since the last pull; the report says so."""
    fetched = local_git(c, bounded_git(workback.git(
        repo, "-c", "pack.threads=1", "-c", "transfer.fsckObjects=true", "fetch", "--quiet", "--no-tags",
        "--no-write-fetch-head", bundle, f"+refs/bottle/pull:{ref}")), check=False)
    if fetched.ok:
        too_many = tree_too_large(repo, ref)
        if too_many:
            raise BottleError(f"bottle {slug}: the agent's work {too_many}: refused",
                              "a tree of a few hundred bytes can name millions of paths (one subtree named "
                              "again and again); the work stays in the bottle: `bottle exec 'git log --stat'`")
    else:
        raise BottleError(f"bottle {slug}: git could not take the agent's bundle in {repo} "
                          f"(exit {fetched.exited}); nothing was fetched",
                          f"{fetched.stderr.strip()[-2000:]}\ngit may use {FETCH_MEMORY_KIB >> 10} MiB of memory "
                          f"and {FETCH_CPU_SECONDS} s of CPU for it (a file of gigabytes, or a hand-made pack, "
                          "does not fit); the work stays in the bottle: `bottle exec 'git log --stat'` shows it")


# How many paths, and bytes of their names, the agent's tree may hold: a tree whose entries all
# name one subtree, a few levels deep, is a bundle of 1.2 KB and 10 million paths, and `git
# diff` of it grew to 3.2 GB before it wrote a byte.
MAX_TREE_PATHS = 1_000_000
MAX_TREE_NAME_BYTES = 64 << 20


def tree_too_large(repo: str, rev: str) -> str | None:
    """What is too large in `rev`'s tree, or None; read as git lists it, and stopped at the bound."""
    listing = subprocess.Popen(workback.git(repo, "ls-tree", "-r", "-z", "--name-only", rev),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    assert listing.stdout is not None
    paths = size = 0
    try:
        while chunk := listing.stdout.read(1 << 16):
            paths, size = paths + chunk.count(b"\0"), size + len(chunk)
            if paths > MAX_TREE_PATHS:
                return f"names more than {MAX_TREE_PATHS:,} paths"
            if size > MAX_TREE_NAME_BYTES:
                return f"names paths of more than {MAX_TREE_NAME_BYTES >> 20} MiB"
    finally:
        listing.kill()
        listing.wait()
    return None


def bounded_git(argv: list[str]) -> list[str]:
    """`argv` (git on the controller) under the FETCH_ bounds, set by the shell that runs it."""
    return ["sh", "-c", 'ulimit -v "$1" && ulimit -t "$2" && shift 2 && exec "$@"', "bottle-bounded-git",
            str(FETCH_MEMORY_KIB), str(FETCH_CPU_SECONDS), *argv]


# The most of the bundle exec's stderr the controller reads (it is quoted in an error): the
# agent can write there without end (a reference-transaction hook, /proc/PID/fd/2 of the exec),
# and the CLI that runs this holds all it reads in memory.
BUNDLE_STDERR_LIMIT = 64 << 10


def bounded_output(argv: list[str], dest: str, limit: int, stderr_limit: int = BUNDLE_STDERR_LIMIT) -> list[str]:
    """argv run on the Docker host with at most `limit` bytes of its stdout in the new file
    `dest` (noclobber: never a file that was there), and at most `stderr_limit` bytes of its
    stderr passed on, whatever it writes (once a `head` has had its fill, the writer's pipe breaks)."""
    script = ('set -C; dest=$1 limit=$2 errors=$3; shift 3; '
              '{ "$@" 2>&1 >&3 | head -c "$errors" >&2; } 3>&1 | head -c "$limit" > "$dest"')
    return ["sh", "-c", script, "bottle-bounded", dest, str(limit), str(stderr_limit), *argv]


@task(help={"branch": "the branch to create or update (default: bottle/<name>)"})
def pull(c, branch=None):
    """Bring the agent's work back as branch bottle/<name>: its commits, then its uncommitted changes."""
    bottle = current(c, need_manifest=False)
    repo = host_repo(c, bottle)
    branch = branch or workback.branch_for(bottle.slug)
    ref = f"refs/heads/{branch}"
    if local_git(c, workback.git(repo, "check-ref-format", ref), check=False).exited:
        raise BottleError(f"{branch!r} is not a valid branch name", "pick another with --branch")
    worktrees = local_git(c, workback.git(repo, "worktree", "list", "--porcelain")).stdout
    if workback.checked_out(worktrees, ref):
        raise BottleError(f"{branch} is checked out in {repo}: pulling would change your working tree",
                          "switch to another branch first, or pull into another with --branch NAME")
    old = local_git(c, workback.git(repo, "rev-parse", "--verify", "-q", ref), check=False).stdout.strip() or None
    snapshot, known = take_snapshot(c, bottle, repo, previous=old)
    if bottle.dry:
        return
    try:  # whatever stops the pull from here on puts the branch back as it was
        if snapshot.new:
            fetch_bundle(c, bottle, repo, ref, snapshot, known)
        else:  # nothing the repo lacks: the branch points at a commit it already has
            local_git(c, workback.git(repo, "update-ref", ref, snapshot.tip))
        changed = changed_paths(c, repo, snapshot)
        strange = [name for name in changed if not workback.path_git_writes(name)]
        if strange:
            raise BottleError(f"bottle {bottle.slug}: the agent's work holds paths git never writes: "
                              f"{', '.join(repr(name) for name in strange[:5])}; nothing was pulled",
                              "a hand-made git index of the agent's puts them there; `bottle diff` shows its work")
        changed_rules = rule_files_changed(c, repo, snapshot, changed)
    except BaseException:
        put_back(c, repo, ref, old)
        raise
    console.out.print(workback.describe(snapshot, branch, old) + f"; copied from {snapshot.base[:12]}")
    if changed_rules:
        console.warning(f"the agent changed the bottle's own rules on {branch}: "
                        f"{', '.join(console.visible(name) for name in changed_rules)}. Merged, they are the "
                        f"next bottle's allowlist, routes and workspace; read them first: "
                        + review_command(snapshot.base[:12], branch, changed_rules))


def review_command(base: str, branch: str, names: list[str]) -> str:
    """The command that shows the operator the agent's edit of `names`. The names are the
    agent's: quoted for the shell, should the operator paste the command; one that a terminal
    cannot show as it is (a control or invisible character, shown escaped) would name another
    file once pasted, so then the command names none and lists every file changed."""
    if all(console.visible(name) == name for name in names):
        return shlex.join(["git", "--literal-pathspecs", "diff", base, branch, "--", *names])
    return (shlex.join(["git", "diff", "--stat", base, branch])
            + " (some of the names hold characters shown escaped above)")


# The files that make a bottle what it is: merged into the operator's branch, an edit of the
# agent's would be the next bottle's allowlist, routes, secrets and workspace (in a git
# repository, git-ignored files stay out of it: a `.gitignore` of the agent's could let them in).
RULE_FILES = frozenset({*project.PROJECT_FILES, BOTTLEIGNORE, ".gitignore"})


def put_back(c, repo: str, ref: str, old: str | None) -> None:
    """`ref` as it was before the pull (or gone, if it was not there)."""
    local_git(c, workback.git(repo, "update-ref", ref, old) if old else
              workback.git(repo, "update-ref", "-d", ref), check=False)


def changed_paths(c, repo: str, snapshot: workback.Snapshot) -> list[str]:
    """The paths the snapshot changed since the copy, as git names them."""
    names = local_git(c, workback.git(repo, "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff",
                                      snapshot.base, snapshot.tip, "--")).stdout
    return [name for name in names.split("\0") if name]


def rule_files_changed(c, repo: str, snapshot: workback.Snapshot, changed: list[str]) -> list[str]:
    """The RULE_FILES (at any depth) the snapshot holds otherwise than the operator's folder
    does: changed since the copy, and not as the operator has them now (an uncommitted
    bottle.yaml of the operator's own comes back in the snapshot as it was copied)."""
    candidates = [name for name in changed if name.rsplit("/", 1)[-1] in RULE_FILES]
    if not candidates:
        return []
    # The whole tree, filtered here: the names on git's command line made it too long to run
    # (33 changed `.gitignore`s of 4 KB names), after the branch had moved. The tree is bounded
    # (`take_in`).
    listed = local_git(c, workback.git(repo, "ls-tree", "-r", "-z", snapshot.tip)).stdout
    wanted = set(candidates)
    in_snapshot = {name: entry.split()[2] for entry in listed.split("\0") if "\t" in entry
                   for name in [entry.split("\t", 1)[1]] if name in wanted}
    # A name that is not UTF-8 reached us with U+FFFD in it: git knows no such file, here or in
    # the operator's folder, so it would compare equal. What cannot be looked at counts as changed.
    return [name for name in candidates
            if UNDECODABLE in name or in_snapshot.get(name) != operators_blob(c, repo, name)]


UNDECODABLE = "\ufffd"  # what the runners decode a byte that is not UTF-8 to (`target.LinearOutput`)


def operators_blob(c, repo: str, name: str) -> str | None:
    """The blob id of the file `name` in the operator's folder (None: not a plain file there)."""
    path = os.path.join(repo, name)
    if os.path.islink(path) or not os.path.isfile(path):
        return None
    return local_git(c, workback.git(repo, "hash-object", "--no-filters", "--", name)).stdout.strip()


@task(help={"stat": "only the summary: files changed, lines added and removed"})
def diff(c, stat=False):
    """Show what the agent changed (commits and uncommitted) against the commit the workspace was copied from."""
    bottle = current(c, need_manifest=False)
    repo = host_repo(c, bottle)
    snapshot, known = take_snapshot(c, bottle, repo)
    if bottle.dry:
        return
    with borrowing_repo(c, repo) as scratch:  # the snapshot's objects, for this diff only
        if snapshot.new:
            fetch_bundle(c, bottle, scratch, "refs/bottle/diff", snapshot, known)
        # no external diff or textconv: the snapshot's .gitattributes are the agent's
        argv = workback.git(scratch, "--no-pager", "diff", "--no-color", "--no-ext-diff", "--no-textconv",
                            *(["--stat"] if stat else []), snapshot.base, snapshot.tip, "--")
        shown = DiffPrinter()
        result = local_git(c, cut_at(argv, DIFF_SHOWN_LIMIT), check=False, out_stream=shown)
        shown.close()
        if result.exited == WAS_CUT:
            console.warning(f"the diff is longer than {DIFF_SHOWN_LIMIT >> 20} MiB: the rest is not shown. "
                            f"`bottle pull`, then `git diff --stat {snapshot.base[:12]} "
                            f"{workback.branch_for(bottle.slug)}` in {repo} lists the files")
        elif not result.ok:
            raise BottleError(f"`git diff` failed in {repo} (exit {result.exited})", result.stderr.strip()[-2000:])


@contextlib.contextmanager
def borrowing_repo(c, repo: str) -> Iterator[str]:
    """A throwaway bare repository that reads `repo`'s objects (git's alternates) and keeps its
    own apart: what `diff` fetches of the agent's never lands in the operator's repository,
    whose history every later launch scans (a secret-like blob the agent planted there would
    refuse them all)."""
    objects = local_git(c, workback.git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir")).stdout
    with tempfile.TemporaryDirectory(prefix="bottle-diff-") as scratch:
        local_git(c, ["git", "init", "-q", "--bare", scratch])
        Path(scratch, "objects", "info", "alternates").write_text(os.path.join(objects.strip(), "objects") + "\n")
        yield scratch


# The most of a diff `diff` prints. The agent's bundle may be 1 GiB of zlib, and inflated and
# diffed that is up to a terabyte of text: without a bound the controller held it all in
# memory before printing the first line.
DIFF_SHOWN_LIMIT = 8 << 20
WAS_CUT = 99


def cut_at(argv: list[str], limit: int) -> list[str]:
    """argv with at most `limit` bytes of its stdout passed on. Exit WAS_CUT if it wrote more
    (it is then stopped by its broken pipe), else its own exit code (pipefail). GNU head
    reads no more than it passes on, so the second one sees the byte after the limit."""
    script = f'set -o pipefail; "$@" | {{ head -c "$0"; [ "$(head -c 1 | wc -c)" = 0 ] || exit {WAS_CUT}; }}'
    return ["bash", "-c", script, str(limit), *argv]


DIFF_STYLES = (("+++ ", "bold"), ("--- ", "bold"), ("diff --git ", "bold"), ("@@", "cyan"), ("+", "green"),
               ("-", "red"))


class DiffPrinter:
    """An `out_stream` for `git diff`: prints each line as it arrives, kept nowhere (the runner
    keeps none of it, `target.LinearOutput`). A long line's pieces are joined once it ends, not
    at every piece (invoke writes in chunks of 1,000 bytes)."""

    keeps_output = False

    def __init__(self):
        self.pieces: list[str] = []

    def write(self, data: str) -> None:
        if "\n" not in data:
            self.pieces.append(data)
            return
        first, *lines, last = data.split("\n")
        show_diff(["".join(self.pieces) + first, *lines])
        self.pieces = [last] if last else []

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """The last line, when the diff does not end with a line break (a cut one)."""
        if self.pieces:
            show_diff(["".join(self.pieces)])
            self.pieces = []


def show_diff(lines: list[str]) -> None:
    """The agent's lines as text: control characters shown as escapes, colour by git's prefixes."""
    for line in lines:
        style = next((s for prefix, s in DIFF_STYLES if line.startswith(prefix)), "")
        console.out.print(console.plain(line, style))


ns = Collection(pull, diff)
