"""Which ref updates a push may make: pure rules, checked by the pre-receive hook before
anything goes upstream. Every refusal names its rule and says what would be allowed."""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from .remotes import PushPolicy

ZERO = "0" * 40
MAX_REF_LENGTH = 200
# Stricter than git's check-ref-format: no component starts with '.' or '-', no '..', no
# '@{', no '.lock' ending, printable ASCII only. A ref name is printed to the agent and
# written to the audit log: nothing in it may be a terminal escape.
_COMPONENT = re.compile(r"^[A-Za-z0-9_+=,][A-Za-z0-9._+=,-]*$")
_OID = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Update:
    old: str
    new: str
    ref: str

    @property
    def kind(self) -> str:
        if self.new == ZERO:
            return "delete"
        return "create" if self.old == ZERO else "update"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    rule: str          # "allowed", "refs", "default-branch", "force", "delete", "tags", "ref-name",
                       # "object-type" (and the hook's own "stale")
    message: str       # for the agent's terminal: what refused it and what would be allowed


@dataclass(frozen=True)
class Target:
    """What an update's new value is, as git's quarantine holds it."""
    kind: str | None       # "commit", "tag", "tree" or "blob"; None when git does not have it
    peels_to_commit: bool  # it is a commit, or a tag (of a tag...) of one


def check_target(update: Update, target: Target | None) -> Verdict | None:
    """A refusal when a branch would hold anything but a commit, or a tag lead to no commit:
    git itself refuses neither before the push has gone upstream, and the upstream may take
    them (a tag at a blob is a way to publish content no commit holds)."""
    if update.kind == "delete":
        return None
    kind = (target.kind if target else None) or "missing object"
    if update.ref.startswith("refs/heads/") and kind != "commit":
        return Verdict(False, "object-type", f"{update.ref} would point at a {kind}: a branch can only hold "
                       "a commit; push a commit to it")
    if update.ref.startswith("refs/tags/") and not (target and target.peels_to_commit):
        return Verdict(False, "object-type", f"{update.ref} would point at a {kind} that leads to no commit: "
                       "a tag can only tag a commit (git tag NAME COMMIT)")
    return None


def check_ref_name(ref: str) -> str | None:
    """None when `ref` is a branch or tag name the gate accepts, else why not."""
    if len(ref) > MAX_REF_LENGTH:
        return f"a ref name longer than {MAX_REF_LENGTH} characters"
    if not ref.startswith(("refs/heads/", "refs/tags/")):
        return "only branches (refs/heads/...) and tags (refs/tags/...) can be pushed"
    parts = ref.split("/")[2:]
    if not parts or any(not _COMPONENT.match(p) or p.endswith((".lock", ".")) for p in parts) or ".." in ref:
        return "the ref name has a character or component git does not allow here"
    return None


def parse_update(line: str) -> Update | None:
    """`<old> <new> <ref>` as git hands it to pre-receive; None when malformed."""
    parts = line.split(" ")
    if len(parts) != 3 or not _OID.match(parts[0]) or not _OID.match(parts[1]):
        return None
    return Update(*parts)


def allowed_summary(policy: PushPolicy, default_branch: str | None) -> str:
    refs = ", ".join(policy.refs) if policy.refs else (
        f"any branch except {default_branch}" if default_branch else "any branch except the default branch")
    extras = [what for what, on in (("force pushes", policy.force), ("deletions", policy.delete),
                                    ("tags", policy.tags)) if on]
    return f"allowed: {refs}" + (f"; also {', '.join(extras)}" if extras else "; no force pushes, deletions or tags")


def _matches(pattern: str, ref: str) -> bool:
    target = ref if pattern.startswith("refs/") else ref.removeprefix("refs/heads/")
    if not pattern.startswith("refs/") and not ref.startswith("refs/heads/"):
        return False
    return fnmatch.fnmatchcase(target, pattern)


def check(update: Update, policy: PushPolicy, default_branch: str | None, fast_forward: bool | None) -> Verdict:
    """`default_branch`: the upstream's (refs/heads/main); `fast_forward`: whether `new`
    descends from the ref's current value (None for a create or delete)."""
    summary = allowed_summary(policy, default_branch.removeprefix("refs/heads/") if default_branch else None)
    bad = check_ref_name(update.ref)
    if bad:
        return Verdict(False, "ref-name", f"{bad}; {summary}")
    ref = update.ref
    if ref.startswith("refs/tags/") and not policy.tags:
        return Verdict(False, "tags", f"pushing tags is not allowed (push.tags: false); {summary}")
    if update.kind == "delete":
        if not policy.delete:
            return Verdict(False, "delete", f"deleting {ref} is not allowed (push.delete: false); {summary}")
    elif update.kind == "update" and fast_forward is False and not policy.force:
        return Verdict(False, "force", f"{ref} would be rewritten, not fast-forwarded (push.force: false); "
                       f"push a new branch instead, or pull and merge; {summary}")
    if ref.startswith("refs/heads/"):
        if policy.refs:
            if not any(_matches(p, ref) for p in policy.refs):
                return Verdict(False, "refs", f"{ref} matches none of push.refs; {summary}")
        elif default_branch is None:
            return Verdict(False, "default-branch", "the upstream's default branch is not known yet, so no branch "
                           f"can be told apart from it; fetch first; {summary}")
        elif ref == default_branch:
            return Verdict(False, "default-branch", f"{ref} is the upstream's default branch; push a review "
                           f"branch instead (git push origin HEAD:refs/heads/review/NAME); {summary}")
    return Verdict(True, "allowed", f"{ref}: {update.kind} allowed")
