"""Which files of the workspace enter the bottle, and which stay out and why.

- A git repository: what git counts as part of it (tracked files, and untracked files
  that are not ignored), asked of git itself, plus the `.git` directory, so the agent can
  commit and the work can be read back. Any other folder: every file.
- Then `.bottleignore` at the workspace root (gitignore syntax) leaves more out.
- A listed path leading out of the workspace stays out: absolute, `..`, or through a link
  to a folder (`_leads_outside`: git lists whatever `.git/index` holds, and links are
  copied as links, never followed).
- Credential files by name stay out (credentials.by_name / by_token).
- bottle's own state folder, should the workspace hold it (a workspace of `~`): every
  bottle's stage files, the secrets the sidecars read among them. Nothing brings it back.
- `workspace.include` (gitignore-style patterns) brings back what any of these left out,
  explicitly; included files are not scanned either.

Nothing is read here but names, link targets and `lstat`, plus the few small token files:
the content scan runs while the files are packed (pack.py), only when the image is built.
The digest keys the workspace image: an unchanged selection (same paths, modes, sizes,
mtimes, link targets) finds its image and skips the copy.
"""
from __future__ import annotations

import functools
import hashlib
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pathspec

from ..errors import BottleError
from ..state import state_root
from . import BOTTLEIGNORE, credentials

GIT_DIR = ".git"
# Parts of .git the agent's git needs none of to commit, and that hold what the scans never
# read: submodules' whole histories (compressed objects, their remotes' URLs), reflogs (each
# command line, such as `git pull https://user:token@host/...`), Git LFS's stored versions.
# Reflogs are in every repository and nobody misses them: not listed as left out.
GIT_LEFT_OUT = {
    f"{GIT_DIR}/modules": "submodules' own histories (not copied)",
    f"{GIT_DIR}/logs": None,
    f"{GIT_DIR}/lfs": "Git LFS's stored versions (not copied)",
}
# git's config files, where a credential hides in a remote URL or an http.extraheader.
GIT_CONFIGS = frozenset({f"{GIT_DIR}/config", f"{GIT_DIR}/config.worktree"})
# core.fsmonitor can name a program git would run; listing files must run nothing of the repo's.
GIT = ("git", "-c", "core.fsmonitor=false", "-c", "core.quotepath=false")


@dataclass(frozen=True)
class Entry:
    rel: str            # posix, relative to the workspace root
    kind: str           # "file" | "link" | "dir"
    mode: int           # permission bits (exec bits kept)
    size: int = 0
    mtime_ns: int = 0
    target: str = ""    # a link's target, copied as it is, never followed
    scan: bool = True   # run the content scan (not for .git internals or included files)


@dataclass(frozen=True)
class LeftOut:
    rel: str            # a trailing "/" marks a whole directory
    reason: str


@dataclass(frozen=True)
class Selection:
    root: Path
    source: str                     # "git" or "folder"
    entries: tuple[Entry, ...]      # sorted by path; parents before their contents
    left_out: tuple[LeftOut, ...]
    digest: str

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def files(self) -> int:
        return sum(e.kind != "dir" for e in self.entries)


def spec(patterns) -> pathspec.GitIgnoreSpec | None:
    lines = [p for p in patterns if p.strip() and not p.lstrip().startswith("#")]
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


@functools.lru_cache(maxsize=8)
def selected(root: str, include: tuple[str, ...], patterns: tuple = ()) -> Selection:
    """`select`, once per process: every step of one launch plans with the same selection."""
    return select(Path(root), include, patterns)


def select(root: Path, include: tuple[str, ...] = (), patterns: tuple = ()) -> Selection:
    """`patterns`: the agent's `network.dlp.patterns`, part of the digest (the scan uses them)."""
    wanted = spec(include)
    ignore = spec(_read_bottleignore(root))
    own = _bottles_own(root)
    left: list[LeftOut] = [LeftOut(own + "/", BOTTLES_OWN)] if own else []
    if _in_git_work_tree(root):
        source, paths = "git", _git_paths(root, wanted, left)
    else:
        source, paths = "folder", _walk(root, None if wanted else ignore, left, own)
    chosen: dict[str, Entry] = {}
    seen: set[str] = set()  # folders reported as left out whole
    folders: set[str] = set()  # folders below the root checked to be real folders
    for rel in paths:
        if own and (rel + "/").startswith(own + "/"):
            continue  # reported once, as the folder
        outside = _leads_outside(root, rel, folders)
        if outside:
            left.append(LeftOut(rel, outside))
            continue
        is_wanted = bool(wanted and wanted.match_file(rel))
        if ignore and not is_wanted and ignore.match_file(rel):
            _ignored(rel, ignore, left, seen)
            continue
        reason = None if is_wanted else credentials.by_name(rel) or _token_file(root, rel)
        if reason:
            left.append(LeftOut(rel, reason))
            continue
        entry = _entry(root, rel, scan=not is_wanted, left=left)
        if entry:
            chosen[rel] = entry
    if source == "git":
        _add_git_dir(root, chosen, left, ignore)
    entries = _with_parents(root, chosen)
    return Selection(root, source, entries, tuple(left), _digest(root, include, patterns, entries))


BOTTLES_OWN = "bottle's own state: every bottle's stage files and the secrets its sidecars read (never copied)"


def _bottles_own(root: Path) -> str | None:
    """bottle's state folder, relative to the workspace `root` when the workspace holds it."""
    state = state_root().resolve()
    workspace = root.resolve()
    if workspace == state or workspace.is_relative_to(state):
        raise BottleError(f"workspace {root} is inside bottle's own state folder {state}",
                          "give the agent a project folder: `workspace.path` in the manifest")
    return state.relative_to(workspace).as_posix() if state.is_relative_to(workspace) else None


def _read_bottleignore(root: Path) -> list[str]:
    path = root / BOTTLEIGNORE
    if path.is_symlink() or not path.is_file():
        return []
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([*GIT, "-C", str(root), *args], capture_output=True, timeout=120)
    except FileNotFoundError:
        raise BottleError(f"workspace {root} is a git repository, but git is not installed",
                          "install git (apt-get install git): bottle asks git which files belong") from None


def _in_git_work_tree(root: Path) -> bool:
    try:
        done = subprocess.run([*GIT, "-C", str(root), "rev-parse", "--is-inside-work-tree"],
                              capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        if (root / GIT_DIR).exists():
            _git(root)  # raises the "install git" error
        return False
    if done.returncode == 0:
        return done.stdout.strip() == "true"
    if "not a git repository" in done.stderr:
        return False
    # e.g. "dubious ownership": never fall back to copying what git would ignore.
    raise BottleError(f"git cannot read the workspace {root}: {done.stderr.strip()}",
                      "fix what git says (for another user's repository: git config --global --add "
                      "safe.directory PATH), or set workspace.copy: false")


def _git_list(root: Path, *args: str) -> list[str]:
    done = _git(root, "ls-files", "-z", *args)
    if done.returncode:
        raise BottleError(f"git ls-files failed in the workspace {root}",
                          done.stderr.decode(errors="replace").strip())
    return [p for p in done.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def _git_paths(root: Path, wanted, left: list[LeftOut]) -> list[str]:
    """Tracked files and untracked files git does not ignore (paths relative to `root`, also
    when `root` is a folder inside a repository); ignored files only where `include` names them."""
    listed = dict.fromkeys(_git_list(root, "--cached", "--others", "--exclude-standard"))
    # An untracked repository inside this one is listed as "folder/": its own history, not ours.
    for rel in [rel for rel in listed if rel.endswith("/")]:
        del listed[rel]
        left.append(LeftOut(rel, "a git repository of its own (not copied)"))
    paths = dict(listed)
    # Ignored files and folders, a folder as one line ("node_modules/"): the report, cheaply.
    ignored = _git_list(root, "--others", "--ignored", "--exclude-standard", "--directory")
    if wanted:
        for rel in _git_list(root, "--others", "--ignored", "--exclude-standard"):
            if wanted.match_file(rel):
                paths[rel] = None
    brought_back = [p for p in paths if p not in listed] if wanted else []
    for rel in ignored:
        if rel.endswith("/") and any(p.startswith(rel) for p in brought_back):
            left.append(LeftOut(rel, "git-ignored (workspace.include brings part of it back)"))
        elif rel not in paths:
            left.append(LeftOut(rel, "git-ignored"))
    return list(paths)


def _walk(root: Path, ignore, left: list[LeftOut], own: str | None = None) -> list[str]:
    """Every file and link below `root`; links to folders are links, never descended.
    Folders `.bottleignore` leaves out are not even entered (when no include may want them),
    nor bottle's own state folder (`own`)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        for name in list(dirnames):
            if prefix + name == own:
                dirnames.remove(name)
            elif os.path.islink(os.path.join(dirpath, name)):
                dirnames.remove(name)
                filenames.append(name)
            elif name == GIT_DIR:  # a repository inside: its compressed history no scan can read
                dirnames.remove(name)
                left.append(LeftOut(prefix + name + "/", "the history of a repository inside (not copied)"))
            elif ignore and ignore.match_file(prefix + name + "/"):
                dirnames.remove(name)
                left.append(LeftOut(prefix + name + "/", ".bottleignore"))
        dirnames.sort()
        out += [prefix + name for name in sorted(filenames)]
    return out


def _leads_outside(root: Path, rel: str, folders: set[str]) -> str | None:
    """Why the listed path `rel` names a file outside the workspace, or None.

    Git lists what its index holds, and `.git/index` is a file like any other: one that came
    with the project can list `/home/me/.ssh/config` or `../x`, and git prints them as they
    are. A tracked `conf/x` whose folder `conf` is now a link (to `~/.config/app`) names a
    file behind the link. Links are copied as links, never followed: so is a link's folder."""
    parts = rel.split("/")
    if rel.startswith("/") or any(part in ("", ".", "..") for part in parts):
        return "a path leading out of the workspace (not copied)"
    for i in range(1, len(parts)):
        folder = "/".join(parts[:i])
        if folder in folders:
            continue
        try:
            st = os.lstat(root / folder)
        except OSError:
            return None  # gone (tracked but deleted): _entry finds nothing either
        if stat.S_ISLNK(st.st_mode):
            return "inside a link to a folder (the link is copied, not what it points at)"
        if not stat.S_ISDIR(st.st_mode):
            return None  # a file where a folder was: nothing below it to copy
        folders.add(folder)
    return None


def _ignored(rel: str, ignore, left: list[LeftOut], seen: set[str]) -> None:
    """Report a file `.bottleignore` leaves out, or rather the topmost folder it leaves out
    whole (once): `assets/`, not its thousand files."""
    parts = rel.split("/")
    for i in range(1, len(parts)):
        folder = "/".join(parts[:i]) + "/"
        if ignore.match_file(folder):
            if folder not in seen:
                seen.add(folder)
                left.append(LeftOut(folder, ".bottleignore"))
            return
    left.append(LeftOut(rel, ".bottleignore"))


def _token_file(root: Path, rel: str) -> str | None:
    if Path(rel).name not in credentials.TOKEN_FILES:
        return None
    try:
        with open(root / rel, "rb", opener=_nofollow) as handle:
            return credentials.by_token(rel, handle.read(credentials.TOKEN_FILE_BYTES))
    except OSError:
        return None  # a link or unreadable: _entry decides


def _nofollow(path, flags):
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)


def _entry(root: Path, rel: str, scan: bool, left: list[LeftOut]) -> Entry | None:
    try:
        st = os.lstat(root / rel)
    except (FileNotFoundError, NotADirectoryError):
        return None  # tracked but deleted in the work tree
    if stat.S_ISLNK(st.st_mode):
        return Entry(rel, "link", 0o777, 0, st.st_mtime_ns, os.readlink(root / rel))
    if stat.S_ISREG(st.st_mode):
        return Entry(rel, "file", stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns, scan=scan)
    if stat.S_ISDIR(st.st_mode):  # a git submodule: its own repository, not copied
        left.append(LeftOut(rel + "/", "git submodule (not copied)"))
    else:
        left.append(LeftOut(rel, "not a file, link or folder"))
    return None


def _add_git_dir(root: Path, chosen: dict[str, Entry], left: list[LeftOut], ignore) -> None:
    git_dir = root / GIT_DIR
    if ignore and ignore.match_file(GIT_DIR + "/"):
        left.append(LeftOut(GIT_DIR + "/", ".bottleignore"))
        return
    if git_dir.is_symlink() or not git_dir.exists():
        return  # the workspace is a folder inside a repository: no history comes along
    if not git_dir.is_dir():
        left.append(LeftOut(GIT_DIR, "a .git file pointing outside the workspace (worktree or submodule)"))
        return
    for dirpath, dirnames, filenames in os.walk(git_dir):
        for name in list(dirnames):
            rel = Path(dirpath, name).relative_to(root).as_posix()
            if rel in GIT_LEFT_OUT:
                dirnames.remove(name)
                if reason := GIT_LEFT_OUT[rel]:
                    left.append(LeftOut(rel + "/", reason))
        for name in sorted(dirnames + filenames):
            rel = Path(dirpath, name).relative_to(root).as_posix()
            # Of the rest only git's config may hold a credential (in a remote URL): scan it.
            entry = _entry_in_git(root, rel, scan=rel in GIT_CONFIGS)
            if entry:
                chosen[rel] = entry


def _entry_in_git(root: Path, rel: str, scan: bool) -> Entry | None:
    st = os.lstat(root / rel)
    if stat.S_ISDIR(st.st_mode):
        return Entry(rel, "dir", stat.S_IMODE(st.st_mode))
    if stat.S_ISLNK(st.st_mode):
        return Entry(rel, "link", 0o777, 0, st.st_mtime_ns, os.readlink(root / rel))
    if stat.S_ISREG(st.st_mode):
        return Entry(rel, "file", stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns, scan=scan)
    return None  # e.g. fsmonitor's socket


def _with_parents(root: Path, chosen: dict[str, Entry]) -> tuple[Entry, ...]:
    """Every folder above a chosen entry gets an entry of its own, with its mode."""
    out = dict(chosen)
    for rel in chosen:
        parent = rel.rpartition("/")[0]
        while parent and parent not in out:
            out[parent] = Entry(parent, "dir", stat.S_IMODE(os.lstat(root / parent).st_mode))
            parent = parent.rpartition("/")[0]
    # Sorted by path components, so a folder comes before what is in it.
    return tuple(out[rel] for rel in sorted(out, key=lambda r: r.split("/")))


def _digest(root: Path, include, patterns, entries) -> str:
    # Folders count by mode only: an ignored file created next to a chosen one changes
    # the folder's mtime, and must not cost a rebuild.
    h = hashlib.sha256()
    h.update(repr((str(root), tuple(include))).encode())
    h.update(credentials.fingerprint(patterns))
    for e in entries:
        fields = (e.rel, e.kind, e.mode) if e.kind == "dir" else (e.rel, e.kind, e.mode, e.size, e.mtime_ns,
                                                                   e.target, e.scan)
        h.update(repr(fields).encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()[:16]
