"""The secret scan of a workspace's git history (no Docker; real git repositories): every
object git holds, reachable or not, goes through the working files' content scan, and a
finding refuses the launch with where it is and the fixes."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import git_output as git

from bottle_tasks.errors import BottleError
from bottle_tasks.workspace import credentials, history
from bottle_tasks.workspace.selection import select, spec

GITHUB_TOKEN = "ghp_" + "a1B2" * 9
AWS_SECRET = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"


def commit(root: Path, rel: str, text: str | bytes, message: str = "add") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    git(root, "add", rel)
    git(root, "commit", "-qm", message)


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    commit(root, "README.md", "# project\n", "init")
    return root


def refusal(root: Path, include: tuple[str, ...] = ()) -> BottleError | None:
    included = spec(include)
    try:
        history.refuse_secrets(select(root, include), credentials.ContentScan(),
                               lambda path: bool(included and included.match_file(path)))
    except BottleError as exc:
        return exc
    return None


def said(exc: BottleError) -> str:
    return exc.message + "\n" + exc.detail


def test_a_clean_history_passes(repo):
    commit(repo, "src/main.py", "print('hello')\n")
    assert refusal(repo) is None


def test_a_secret_committed_and_then_deleted_is_found_with_its_path(repo):
    commit(repo, "config/settings.py", AWS_SECRET)
    git(repo, "rm", "-q", "config/settings.py")
    git(repo, "commit", "-qm", "remove it")
    exc = refusal(repo)
    assert exc is not None
    assert "its git history holds a secret" in exc.message
    assert "config/settings.py (blob" in exc.detail and "AWS secret access key" in exc.detail
    assert ".bottleignore" in exc.detail and "git gc --prune=now" in exc.detail
    assert "wJalrXUtnFEMI" not in said(exc)  # where, never the secret itself


def test_a_working_file_left_out_still_refuses_while_its_history_holds_it(repo):
    commit(repo, "notes.md", f"token: {GITHUB_TOKEN}\n")
    exc = refusal(repo)
    assert exc is not None and "notes.md" in exc.detail and "GitHub token" in exc.detail


def test_a_stash_holding_an_untracked_file_is_found(repo):
    (repo / "scratch.txt").write_text(f"token: {GITHUB_TOKEN}\n")
    git(repo, "stash", "--all")
    assert not (repo / "scratch.txt").exists()
    exc = refusal(repo)
    assert exc is not None and "scratch.txt" in exc.detail


def test_an_unstaged_add_is_found_although_no_commit_holds_it(repo):
    (repo / "later.py").write_text(AWS_SECRET)
    git(repo, "add", "later.py")
    git(repo, "reset", "-q")
    os.unlink(repo / "later.py")
    exc = refusal(repo)
    assert exc is not None and "no commit holds it" in exc.detail


def test_a_packed_history_is_read_as_well(repo):
    commit(repo, "old.cfg", f"token={GITHUB_TOKEN}\n")
    git(repo, "rm", "-q", "old.cfg")
    git(repo, "commit", "-qm", "gone")
    git(repo, "gc", "-q")
    assert not list((repo / ".git" / "objects").glob("??/*")), "gc left loose objects: the pack is not tested"
    exc = refusal(repo)
    assert exc is not None and "old.cfg" in exc.detail


def test_a_secret_in_a_commit_message_is_found(repo):
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-qm", f"rotate the key, old one was {GITHUB_TOKEN}")
    exc = refusal(repo)
    assert exc is not None and "(its message)" in exc.detail and exc.detail.count("commit ") >= 1


def test_a_token_inside_a_binary_blob_is_found(repo):
    commit(repo, "assets/blob.bin", b"\0\x01\x02" * 100 + GITHUB_TOKEN.encode() + b"\0" * 100)
    exc = refusal(repo)
    assert exc is not None and "assets/blob.bin" in exc.detail


def test_a_secret_past_the_scanned_head_of_a_large_blob_is_not_read(repo):
    # The bound is the working files' (credentials.MAX_SCAN_BYTES of each): a large blob's
    # head is scanned, and the rest read past, never held.
    commit(repo, "big.txt", "x" * credentials.MAX_SCAN_BYTES + f"\n{GITHUB_TOKEN}\n")
    commit(repo, "small.txt", "fine\n")
    assert refusal(repo) is None


def test_a_path_workspace_include_names_passes(repo):
    commit(repo, "tests/fixtures/keys.txt", f"token: {GITHUB_TOKEN}\n")
    assert refusal(repo) is not None
    assert refusal(repo, include=("tests/fixtures/",)) is None


def test_history_left_out_by_bottleignore_is_not_read(repo):
    commit(repo, "old.cfg", f"token={GITHUB_TOKEN}\n")
    commit(repo, ".bottleignore", ".git/\n")
    assert refusal(repo) is None


def test_many_findings_name_five_and_count_the_rest(repo):
    for i in range(8):
        commit(repo, f"keys/k{i}.txt", f"token: ghp_{i}{'a1B2' * 9}\n")
    exc = refusal(repo)
    assert exc is not None and "8 secrets" in exc.message and "and 3 more" in exc.detail


def test_a_path_with_terminal_markup_is_shown_escaped(repo):
    commit(repo, "evil\x1b[2Jname.txt", f"token: {GITHUB_TOKEN}\n")
    exc = refusal(repo)
    assert exc is not None and "\x1b" not in said(exc) and "evil\\x1b[2Jname.txt" in exc.detail


def test_a_history_git_cannot_read_refuses_rather_than_copies_unscanned(repo):
    commit(repo, "old.cfg", "plain\n")
    loose = next(p for p in (repo / ".git" / "objects").glob("??/*"))
    loose.chmod(0o644)
    loose.write_bytes(b"not a zlib stream")
    exc = refusal(repo)
    assert exc is not None and "could not read the history" in exc.message


def test_a_committed_credential_file_is_refused_by_its_name_whatever_it_holds(repo):
    commit(repo, "deploy/.env", "DB_PASSWORD=hunter2\n")  # no shape a DLP rule knows
    git(repo, "rm", "-q", "deploy/.env")
    git(repo, "commit", "-qm", "gone")
    exc = refusal(repo)
    assert exc is not None and "deploy/.env (blob" in exc.detail and "(.env*)" in exc.detail
    assert "hunter2" not in said(exc)
    assert refusal(repo, include=("deploy/.env",)) is None


def test_templates_and_certificates_pass_and_a_pem_private_key_is_found_by_content(repo):
    commit(repo, ".env.example", "DB_PASSWORD=\n")
    commit(repo, "certs/server.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    assert refusal(repo) is None
    commit(repo, "certs/client.pem", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    exc = refusal(repo)
    assert exc is not None and "certs/client.pem" in exc.detail and "private key" in exc.detail
    assert "certs/server.pem" not in exc.detail


def test_a_blob_both_rules_find_is_named_once(repo):
    commit(repo, ".env", AWS_SECRET)
    exc = refusal(repo)
    assert exc is not None and "holds a secret " in exc.message and exc.detail.count(".env (blob") == 1


def test_a_changed_history_scan_makes_a_new_workspace_image():
    # The image's tag has the rules' fingerprint in it: a kept image was built by the scan
    # of its day, and a changed scan must not reuse it unscanned.
    assert Path(history.__file__).read_bytes() in credentials.fingerprint()


def test_a_history_git_cannot_list_refuses_rather_than_copies_unchecked(repo):
    (repo / ".git" / "refs" / "heads" / "broken").write_text("1" * 40 + "\n")  # a ref to no object
    exc = refusal(repo)
    assert exc is not None and "could not list the history" in exc.message and ".bottleignore" in exc.detail


def test_a_files_versions_are_named_once_and_the_paths_sorted(repo):
    commit(repo, "b/second.txt", f"token: {GITHUB_TOKEN} b\n")
    commit(repo, "a/first.txt", f"token: {GITHUB_TOKEN}\n")
    commit(repo, "a/first.txt", f"token: {GITHUB_TOKEN} v2\n")
    exc = refusal(repo)
    assert exc is not None and "3 secrets" in exc.message
    assert exc.detail.index("a/first.txt (2 versions, in the history): contains a GitHub token") \
        < exc.detail.index("b/second.txt (blob")
