"""pre-receive in the gate's mirror: the push policy, the secret scan, then the push to the
upstream, synchronously. Whatever it prints reaches the agent's terminal as `remote:` lines;
its exit status decides whether the mirror takes the push. Run with the pushed objects in
git's quarantine: nothing is in the mirror, and nothing went upstream, unless it passes.

The server passes, in the environment of `git http-backend`: BOTTLE_GATE_REMOTE (the
remote's name), BOTTLE_GATE_DEFAULT (the upstream's default branch, empty if unknown),
BOTTLE_GATE_VERDICT (where to write the verdict for the audit line) and BOTTLE_GATE_REFUSE
(when not empty, why the server could not check this push: the mirror could not be
refreshed from the upstream; every update is refused with it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from . import config, push_policy, scan, upstream
from .text import clean

MAX_UPDATES = 50
MAX_INPUT = 64 * 1024
# What a push to the upstream takes from the hook's environment: git's quarantine.
QUARANTINE = ("GIT_DIR", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH")


def say(text: str) -> None:
    for line in clean(text).splitlines():
        sys.stderr.write(f"bottle git gate: {line}\n")
    sys.stderr.flush()


def quarantine() -> dict[str, str]:
    return {k: os.environ[k] for k in QUARANTINE if k in os.environ}


def git_local(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    """git on the mirror, seeing the pushed objects; `input` on its stdin (else none)."""
    return subprocess.run(["git", *args], env={**upstream.local_env(), **quarantine()}, capture_output=True,
                          timeout=120, input=input, stdin=None if input is not None else subprocess.DEVNULL)


def fast_forward(update: push_policy.Update) -> bool | None:
    if update.kind != "update":
        return None
    current = git_local("rev-parse", "--verify", "-q", update.ref).stdout.decode().strip() or update.old
    return git_local("merge-base", "--is-ancestor", current, update.new).returncode == 0


def current_value(ref: str) -> str:
    """The ref's value in the mirror (the upstream's, as the last refresh saw it), or ZERO."""
    return git_local("rev-parse", "--verify", "-q", ref).stdout.decode().strip() or push_policy.ZERO


def targets(updates: list[push_policy.Update]) -> dict[str, push_policy.Target]:
    """What each update's new value is: its object type, and whether it peels to a commit.
    One `cat-file --batch-check` for all: `<oid>` gives the type, `<oid>^{commit}` peels."""
    oids = sorted({u.new for u in updates if u.kind != "delete"})
    if not oids:
        return {}
    query = "".join(f"{oid}\n{oid}^{{commit}}\n" for oid in oids).encode()
    result = git_local("cat-file", "--batch-check=%(objecttype)", input=query)
    result.check_returncode()
    answers = result.stdout.decode("ascii", "replace").splitlines()
    if len(answers) != 2 * len(oids):
        raise ValueError("git cat-file did not answer for every pushed object")
    return {oid: push_policy.Target(kind=_object_type(answers[2 * i]), peels_to_commit=answers[2 * i + 1] == "commit")
            for i, oid in enumerate(oids)}


def _object_type(answer: str) -> str | None:
    # "<name> missing" for an object git does not have
    return answer if answer in ("commit", "tree", "blob", "tag") else None


def stale(update: push_policy.Update) -> push_policy.Verdict | None:
    """A refusal when the ref is no longer where the agent's push assumes: the upstream moved
    since the agent's fetch (the server refreshed the mirror before this push). Judged and
    pushed anyway, the push would reach the upstream and then fail to land in the mirror."""
    current = current_value(update.ref)
    if current == update.old:
        return None
    return push_policy.Verdict(False, "stale", f"{update.ref} changed upstream since your last fetch; "
                                                "fetch (git pull), then push again")


class Gate:
    def __init__(self):
        self.record: dict = {"decision": "deny", "rule": "error", "reason": "", "updates": []}

    def refuse(self, rule: str, reason: str) -> int:
        self.record.update(decision="deny", rule=rule, reason=reason)
        say(f"push refused ({rule}): {reason}")
        say("nothing was sent upstream")
        return 1

    def run(self) -> int:
        remote = config.remotes().get(os.environ.get("BOTTLE_GATE_REMOTE", ""))
        if remote is None:
            return self.refuse("config", "this remote is not served by the gate")
        default = os.environ.get("BOTTLE_GATE_DEFAULT") or None
        unchecked = os.environ.get("BOTTLE_GATE_REFUSE", "")
        if unchecked:
            return self.refuse("upstream", f"{unchecked}; nothing can be pushed until the gate can read the "
                                           "upstream; try again later")
        raw = sys.stdin.buffer.read(MAX_INPUT + 1)
        lines = raw.decode("ascii", "replace").splitlines()
        if len(raw) > MAX_INPUT or len(lines) > MAX_UPDATES:
            return self.refuse("size", f"at most {MAX_UPDATES} refs can be pushed at once")
        updates = []
        for line in lines:
            update = push_policy.parse_update(line)
            if update is None:
                return self.refuse("ref-name", "a ref update the gate cannot read")
            updates.append(update)
        refused, forced = None, set()
        kinds = targets(updates)
        for update in updates:
            ff = fast_forward(update)
            verdict = (stale(update) or push_policy.check_target(update, kinds.get(update.new))
                       or push_policy.check(update, remote.push, default, ff))
            self.record["updates"].append({"ref": clean(update.ref, 300), "old": update.old, "new": update.new,
                                           "kind": update.kind, "ok": verdict.ok, "rule": verdict.rule})
            if not verdict.ok and refused is None:
                refused = verdict
            if ff is False:
                forced.add(update.ref)
        if refused:
            return self.refuse(refused.rule, refused.message)
        try:
            text = scan.pushed_text(os.getcwd(), [u.new for u in updates if u.kind != "delete"])
            action, names = scan.findings(text, remote.host)
        except scan.Unscannable as exc:
            return self.refuse(exc.rule, str(exc))
        if names and action == "block":
            return self.refuse("dlp", f"the pushed commits add {scan.describe(names)} (rule {', '.join(names)}); "
                                      "take it out of every commit (git commit --amend, git rebase -i), "
                                      "keep secrets out of the repository, and push again")
        if names:
            say(f"warning: the pushed commits add {scan.describe(names)} (rule {', '.join(names)}); "
                "the bottle's DLP action for this host is warn")
        return self.push(remote, updates, forced, names)

    def push(self, remote, updates, forced: set[str], warned: list[str]) -> int:
        # A rewrite reaches this point only when push.force allows it.
        specs = [f":{u.ref}" if u.kind == "delete" else f"{'+' if u.ref in forced else ''}{u.new}:{u.ref}"
                 for u in updates]
        try:
            result = upstream.run(remote, ["push", "--porcelain", "--atomic", remote.url, *specs], os.getcwd(),
                                  quarantine())
        except subprocess.TimeoutExpired:
            return self.refuse("upstream", f"the upstream did not answer within {upstream.TIMEOUT}s")
        out = (result.stderr + result.stdout).decode("utf-8", "replace")
        say(f"upstream {remote.url} says:")
        say(out.strip() or "(nothing)")
        if result.returncode != 0:
            self.record.update(decision="deny", rule="upstream", reason=clean(out, 600).strip())
            say("the upstream refused the push; the gate's mirror is unchanged")
            return 1
        self.record.update(decision="allow", rule="dlp-warn" if warned else "allowed",
                           reason=f"pushed to {remote.url}")
        return 0


def main() -> int:
    gate = Gate()
    try:
        status = gate.run()
    except Exception as exc:  # noqa: BLE001 - fail closed: an error refuses the push
        status = gate.refuse("error", f"the gate failed while checking the push ({type(exc).__name__})")
    path = os.environ.get("BOTTLE_GATE_VERDICT")
    if path:
        with open(path, "w") as f:
            json.dump(gate.record, f)
    return status


if __name__ == "__main__":
    sys.exit(main())
