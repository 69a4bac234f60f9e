"""The git gate's judgement of a push with real git: the gate's own pre-receive hook
(`gitgate.hook`) in a bare mirror, pushed to by a clone, so the pushed objects sit in git's
quarantine exactly as in the gate. The upstream push at the end goes to a proxy that is not
there (it fails): a push that gets that far passed the policy and the scan.

Each bypass below once carried a secret past the scan (the red team's list); each must now
be refused with the scan's own message, and its key must not reach the mirror."""
from __future__ import annotations

import email.message
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SIDECARS = Path(__file__).resolve().parents[2] / "bottle_tasks" / "sidecars"
sys.path.insert(0, str(SIDECARS))

from gitgate import cgi, config, mirror, scan, server  # noqa: E402 - after the sidecars' path
from gitgate.remotes import Remote  # noqa: E402

URL = "https://git.upstream.test/org/repo.git"
MAIN = "refs/heads/main"
ZERO = "0" * 40


def key(case: str) -> str:
    """An AWS access key id, the shape the firewall's `aws-access-key-id` rule knows."""
    return ("AKIA" + case.upper() + "X" * 16)[:20]


def git(cwd: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "agent", "GIT_AUTHOR_EMAIL": "a@b.invalid",
            "GIT_COMMITTER_NAME": "agent", "GIT_COMMITTER_EMAIL": "a@b.invalid"}
    return subprocess.run(["git", *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True,
                          check=check, timeout=60)


class Gate:
    """A mirror with the gate's hook, its config files, and an agent's clone of it."""

    def __init__(self, root: Path, default: str = MAIN, refuse: str = ""):
        self.root, self.default, self.refuse = root, default, refuse
        self.conf, self.run = root / "conf", root / "run"
        self.mirror = self.run / "mirrors" / "origin.git"
        self.agent = root / "agent"
        self.verdict = root / "verdict.json"
        self.write_conf()
        self.make_mirror()

    def write_conf(self) -> None:
        self.conf.mkdir(parents=True)
        remote = {"name": "origin", "url": URL, "secret": "GIT_TOKEN", "username": "x-access-token",
                  "push": {"refs": [], "force": False, "delete": False, "tags": True, "max_bytes": 1 << 20}}
        (self.conf / "gitgate.json").write_text(json.dumps({"firewall": "127.0.0.1:9", "remotes": [remote]}))
        (self.conf / "policy.json").write_text(json.dumps({"bottle": "t", "allow": [], "dlp": {"action": "block"}}))
        (self.conf / "secrets.json").write_text(json.dumps({"GIT_TOKEN": "not-a-token"}))
        (self.conf / "firewall-ca.pem").write_text("")
        hooks = self.root / "hooks"
        hooks.mkdir()
        (hooks / "pre-receive").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gitgate.hook\n')
        (hooks / "pre-receive").chmod(0o755)

    def make_mirror(self) -> None:
        (self.run / "home").mkdir(parents=True)
        git(self.root, "init", "-q", "--bare", str(self.mirror))
        git(self.root, "init", "-q", "-b", "main", str(self.agent))
        (self.agent / "README.md").write_text("upstream repository\n")
        git(self.agent, "add", "README.md")
        git(self.agent, "commit", "-qm", "initial commit")
        git(self.agent, "push", "-q", str(self.mirror), "main:main")  # the upstream's state, before the hook
        git(self.mirror, "symbolic-ref", "HEAD", MAIN)
        for name, value in (("core.hooksPath", str(self.root / "hooks")), ("receive.fsckObjects", "true")):
            git(self.mirror, "config", name, value)
        git(self.agent, "remote", "add", "origin", str(self.mirror))
        git(self.agent, "fetch", "-q", "origin")

    def push(self, *refspecs: str) -> str:
        """The agent's `git push` output; the hook runs with what the gate's server passes it."""
        env = {"PYTHONPATH": str(SIDECARS), "BOTTLE_GITGATE_CONF": str(self.conf), "BOTTLE_GITGATE_RUN": str(self.run),
               "BOTTLE_GATE_REMOTE": "origin", "BOTTLE_GATE_DEFAULT": self.default,
               "BOTTLE_GATE_VERDICT": str(self.verdict), "BOTTLE_GATE_REFUSE": self.refuse}
        result = git(self.agent, "push", "origin", *refspecs, env=env, check=False)
        return result.stdout + result.stderr

    def mirror_has(self, text: str) -> bool:
        """Whether any object the mirror holds contains `text` (after a refused push: none may)."""
        objects = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=self.mirror,
                                 capture_output=True, check=True).stdout
        return text.encode() in objects

    def commit(self, message: str = "change", **env: str) -> str:
        git(self.agent, "commit", "-q", "--allow-empty", "-m", message, env=env)
        return git(self.agent, "rev-parse", "HEAD").stdout.strip()

    def blob(self, text: str) -> str:
        return self.stdin_git(text, "hash-object", "-w", "--stdin")

    def tree(self, blob: str, name: str) -> str:
        return self.stdin_git(f"100644 blob {blob}\t{name}\n", "mktree")

    def stdin_git(self, text: str, *args: str) -> str:
        env = {"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
        return subprocess.run(["git", *args], cwd=self.agent, input=text, text=True, capture_output=True,
                              check=True, env=env).stdout.strip()


@pytest.fixture
def gate(tmp_path) -> Gate:
    return Gate(tmp_path)


def refused_by_scan(out: str) -> bool:
    return "push refused (dlp)" in out and "says:" not in out


def reached_upstream(out: str) -> bool:
    """Past the policy and the scan: the hook tried the (absent) upstream."""
    return f"upstream {URL} says:" in out


def test_a_clean_push_passes_the_scan(gate):
    git(gate.agent, "checkout", "-qb", "review/clean")
    (gate.agent / "notes.txt").write_text("nothing secret\n")
    git(gate.agent, "add", "notes.txt")
    gate.commit("a clean change")
    assert reached_upstream(gate.push("HEAD:refs/heads/review/clean"))


def test_a_key_in_a_file_is_refused(gate):
    k = key("file")
    (gate.agent / "cfg").write_text(f"k = {k}\n")
    git(gate.agent, "add", "cfg")
    gate.commit()
    out = gate.push("HEAD:refs/heads/review/file")
    assert refused_by_scan(out), out
    assert not gate.mirror_has(k)


@pytest.mark.parametrize("line", [" {k}", "-{k}", "-----BEGIN x----- {k}"])
def test_a_message_line_starting_with_a_space_or_dash_is_scanned(gate, line):
    k = key("msg")
    gate.commit("harmless subject\n\n" + line.format(k=k))
    out = gate.push("HEAD:refs/heads/review/msg")
    assert refused_by_scan(out), out
    assert not gate.mirror_has(k)


def test_the_committer_is_scanned(gate):
    k = key("committer")
    gate.commit("c", GIT_COMMITTER_NAME=k, GIT_COMMITTER_EMAIL=f"{k}@example.com")
    assert refused_by_scan(out := gate.push("HEAD:refs/heads/review/committer")), out


def test_the_name_of_an_empty_file_is_scanned(gate):
    k = key("name")
    (gate.agent / k).write_text("")
    git(gate.agent, "add", k)
    gate.commit()
    assert refused_by_scan(out := gate.push("HEAD:refs/heads/review/name")), out


def test_what_a_merge_commit_adds_itself_is_scanned(gate):
    k = key("merge")
    git(gate.agent, "checkout", "-qb", "side")
    (gate.agent / "side.txt").write_text("side\n")
    git(gate.agent, "add", "side.txt")
    gate.commit("side")
    git(gate.agent, "checkout", "-q", "main")
    git(gate.agent, "merge", "-q", "--no-ff", "--no-commit", "side")
    (gate.agent / "evil.txt").write_text(f"k = {k}\n")
    git(gate.agent, "add", "evil.txt")
    gate.commit("merge side")
    out = gate.push("HEAD:refs/heads/review/merge")
    assert refused_by_scan(out), out
    assert not gate.mirror_has(k)


def test_an_annotated_tag_message_is_scanned(gate):
    k = key("tagmsg")
    git(gate.agent, "tag", "-a", "-m", f"release notes {k}", "v5", "main")
    assert refused_by_scan(out := gate.push("refs/tags/v5")), out


def test_an_extra_commit_header_is_scanned(gate):
    k = key("header")
    tree = git(gate.agent, "rev-parse", "main^{tree}").stdout.strip()
    parent = git(gate.agent, "rev-parse", "main").stdout.strip()
    raw = (f"tree {tree}\nparent {parent}\nauthor a <a@b> 1700000000 +0000\n"
           f"committer a <a@b> 1700000000 +0000\nx-note {k}\n\nc6\n")
    commit = gate.stdin_git(raw, "hash-object", "-t", "commit", "-w", "--stdin")
    assert refused_by_scan(out := gate.push(f"{commit}:refs/heads/review/header")), out


def test_a_lightweight_tag_at_a_blob_is_scanned(gate):
    k = key("tagblob")
    git(gate.agent, "tag", "t7", gate.blob(f"k = {k}\n"))
    out = gate.push("refs/tags/t7")
    assert "push refused" in out and "says:" not in out, out
    assert not gate.mirror_has(k)


def test_an_annotated_tag_at_a_tree_is_scanned(gate):
    k = key("tagtree")
    blob = gate.blob(f"k = {k}\n")
    git(gate.agent, "tag", "-a", "-m", "t8", "t8", gate.tree(blob, "k.txt"))
    out = gate.push("refs/tags/t8")
    assert "push refused" in out and "says:" not in out, out
    assert not gate.mirror_has(k)


def test_a_branch_must_point_at_a_commit(gate):
    blob = gate.blob("nothing secret\n")
    out = gate.push(f"{blob}:refs/heads/review/blob")
    assert "push refused (object-type)" in out and "says:" not in out, out


@pytest.mark.parametrize("target", ["blob", "tree"])
def test_a_tag_must_lead_to_a_commit(gate, target):
    blob = gate.blob("nothing secret\n")
    obj = blob if target == "blob" else gate.tree(blob, "f.txt")
    git(gate.agent, "tag", "-a", "-m", "a tag", "t1", obj)
    out = gate.push("refs/tags/t1")
    assert "push refused (object-type)" in out and "commit" in out and "says:" not in out, out


def test_an_annotated_tag_of_a_commit_passes(gate):
    git(gate.agent, "tag", "-a", "-m", "release", "v1", "main")
    assert reached_upstream(out := gate.push("refs/tags/v1")), out


# -- the default branch ------------------------------------------------------------------


def test_the_gate_refuses_every_push_when_the_server_could_not_refresh(tmp_path):
    gate = Gate(tmp_path, refuse="the upstream https://git.upstream.test/org/repo.git could not be reached: boom")
    gate.commit()
    out = gate.push("HEAD:refs/heads/review/x")
    assert "push refused (upstream)" in out and "could not be reached: boom" in out and "says:" not in out, out


@pytest.fixture
def gate_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "RUN_DIR", tmp_path)
    monkeypatch.setattr(config, "MIRRORS", tmp_path / "mirrors")
    (tmp_path / "home").mkdir()
    return tmp_path


def test_a_new_mirror_names_no_default_branch(gate_dirs):
    """git init's HEAD (refs/heads/master) would make master the default branch, and main
    pushable, until the first refresh; a new mirror's HEAD names no branch."""
    repo = mirror.ensure(Remote("origin", URL))
    assert server._symbolic_head(repo) is None


def test_a_fresh_mirror_lets_no_branch_pass_for_the_default(gate_dirs, tmp_path):
    repo = mirror.ensure(Remote("origin", URL))
    gate = Gate(tmp_path / "g", default=server._symbolic_head(repo) or "")
    gate.commit("straight onto main")
    out = gate.push("HEAD:refs/heads/main")
    assert "push refused (default-branch)" in out and "says:" not in out, out


class _Handler(server.Handler):
    """The server's handler without a socket: an empty receive-pack request."""

    def __init__(self):  # no request to handle at construction (the base class would serve one)
        self.headers = email.message.Message()
        self.headers["Content-Length"] = "0"
        self.rfile = io.BytesIO(b"")
        self.deadline = time.monotonic() + 60
        self.calls: list[tuple[str, dict]] = []

    def run_backend(self, remote, path_info, query, method, body, length, extra, cpu_seconds=None) -> None:
        self.calls.append(("backend", {**extra, "cpu_seconds": cpu_seconds}))


def test_receive_pack_refreshes_the_mirror_before_the_push(gate_dirs, monkeypatch):
    handler = _Handler()

    def refresh(remote):
        handler.calls.append(("refresh", {}))
        git(Path(mirror.ensure(remote)), "symbolic-ref", "HEAD", MAIN)
        return []

    monkeypatch.setattr(mirror, "refresh", refresh)
    handler.receive_pack(Remote("origin", URL))
    assert [name for name, _ in handler.calls] == ["refresh", "backend"]
    extra = handler.calls[1][1]
    assert extra["BOTTLE_GATE_DEFAULT"] == MAIN and not extra.get("BOTTLE_GATE_REFUSE")
    assert extra["cpu_seconds"] == cgi.PUSH_CPU_SECONDS  # a push's git is CPU-bounded


def test_receive_pack_refuses_the_push_when_the_refresh_fails(gate_dirs, monkeypatch):
    def refresh(remote):
        raise mirror.RefreshError("connection refused")

    monkeypatch.setattr(mirror, "refresh", refresh)
    handler = _Handler()
    handler.receive_pack(Remote("origin", URL))
    extra = handler.calls[-1][1]
    assert "connection refused" in extra["BOTTLE_GATE_REFUSE"] and extra["BOTTLE_GATE_DEFAULT"] == ""



def test_a_gate_failure_is_answered_not_a_dropped_connection(gate_dirs, monkeypatch, capsys):
    handler = _Handler()
    handler.path, handler.request_version, handler.requestline = "/origin.git/git-receive-pack", "HTTP/1.1", "POST"
    handler.client_address, handler.wfile = ("127.0.0.1", 1), io.BytesIO()
    handler.log_message = lambda *a: None

    def broken(method):
        raise RuntimeError("an unforeseen failure")

    monkeypatch.setattr(handler, "route", broken)
    handler.serve("POST")
    answer = handler.wfile.getvalue()
    assert answer.split(b"\r\n")[0].endswith(b" 500 Internal Server Error"), answer
    assert b"the git gate failed (RuntimeError)" in answer
    assert handler.close_connection and "an unforeseen failure" in capsys.readouterr().err  # its log, not the agent
    assert handler.slots.acquire(blocking=False)  # its slot was given back
    handler.slots.release()

# -- the scan itself ------------------------------------------------------------------


def test_more_than_the_scan_limit_is_refused_unscanned(gate, monkeypatch):
    """In-process, with the agent's objects where git's quarantine would put them."""
    monkeypatch.setattr(scan, "MAX_SCAN_BYTES", 1000)
    monkeypatch.setattr(config, "RUN_DIR", gate.run)
    monkeypatch.setenv("GIT_ALTERNATE_OBJECT_DIRECTORIES", str(gate.agent / ".git" / "objects"))
    (gate.agent / "big.txt").write_text("x" * 2000)
    git(gate.agent, "add", "big.txt")
    tip = gate.commit()
    with pytest.raises(scan.TooLarge):
        scan.pushed_text(str(gate.mirror), [tip])
    monkeypatch.setattr(scan, "MAX_SCAN_BYTES", 1 << 20)
    text = scan.pushed_text(str(gate.mirror), [tip])
    assert "x" * 2000 in text and "big.txt" in text
    assert "upstream repository" not in text  # the mirror's own objects are the upstream's, not scanned again


def test_the_mirror_head_is_never_a_branch_after_ensure_even_when_a_stale_dir_is_there(gate_dirs):
    stale = config.mirror("origin")
    stale.mkdir(parents=True)
    (stale / "junk").write_text("left by a crash")
    repo = mirror.ensure(Remote("origin", URL))
    assert server._symbolic_head(repo) is None and os.path.exists(os.path.join(repo, "HEAD"))


def test_a_push_that_assumes_an_old_value_of_the_ref_is_refused_as_stale(gate, monkeypatch):
    """The server refreshes the mirror before a push: if the upstream moved since the agent's
    fetch, the update's old value is not the ref's any more."""
    from gitgate import hook, push_policy

    base = git(gate.agent, "rev-parse", "main").stdout.strip()
    moved = gate.commit("upstream moved")
    monkeypatch.setenv("GIT_DIR", str(gate.mirror))
    assert hook.stale(push_policy.Update(base, moved, MAIN)) is None
    verdict = hook.stale(push_policy.Update(moved, base, MAIN))
    assert verdict is not None and verdict.rule == "stale" and "fetch" in verdict.message


def test_the_scan_reads_tags_trees_and_blobs_that_no_commit_holds(gate, monkeypatch):
    """Apart from the type check that refuses such refs first: the scan still reads them all."""
    monkeypatch.setattr(config, "RUN_DIR", gate.run)
    monkeypatch.setenv("GIT_ALTERNATE_OBJECT_DIRECTORIES", str(gate.agent / ".git" / "objects"))
    blob = gate.blob("blob content\n")
    tree = gate.tree(gate.blob("in a tree\n"), "name-in-a-tree.txt")
    git(gate.agent, "tag", "-a", "-m", "the tag's message", "t1", tree)
    tag = git(gate.agent, "rev-parse", "t1").stdout.strip()
    text = scan.pushed_text(str(gate.mirror), [blob, tag])
    for part in ("blob content", "in a tree", "name-in-a-tree.txt", "the tag's message", "tagger agent"):
        assert part in text
