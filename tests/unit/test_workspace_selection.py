"""What enters the workspace image (no Docker): git's view of the repository, .bottleignore,
workspace.include, credential files by name and by content, links and modes, the digest."""
from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from bottle_tasks.manifest import DlpPattern
from bottle_tasks.workspace import credentials, image, pack
from bottle_tasks.workspace.selection import LeftOut, select

AWS_SECRET = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
GITHUB_TOKEN = "ghp_" + "a1B2" * 9


def write(root: Path, rel: str, text: str = "x\n", mode: int | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                   env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                            GIT_COMMITTER_EMAIL="t@t"))


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    write(root, ".gitignore", ".env\ndist/\nnode_modules/\n*.log\n")
    write(root, "src/main.py", "print('hi')\n")
    write(root, "run.sh", "#!/bin/sh\necho hi\n", mode=0o755)
    write(root, ".env", AWS_SECRET)
    write(root, "dist/app.js", "built\n")
    write(root, "node_modules/pkg/index.js", "module\n")
    write(root, "debug.log", "log\n")
    (root / "to-shadow").symlink_to("/etc/shadow")
    (root / "to-outside").symlink_to("../outside")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    write(root, "untracked.txt", "new\n")  # untracked, not ignored: it belongs
    return root


def rels(selection) -> set[str]:
    return {e.rel for e in selection.entries if not e.rel.startswith(".git/") and e.rel != ".git"}


def reasons(selection) -> dict[str, str]:
    return {item.rel: item.reason for item in selection.left_out}


def test_git_repository_copies_what_git_counts_and_its_history(repo):
    chosen = select(repo)
    assert chosen.source == "git"
    assert rels(chosen) == {".gitignore", "src", "src/main.py", "run.sh", "to-shadow", "to-outside", "untracked.txt"}
    assert any(e.rel == ".git/HEAD" for e in chosen.entries)
    out = reasons(chosen)
    assert out[".env"] == "git-ignored" and out["dist/"] == "git-ignored" and out["node_modules/"] == "git-ignored"
    assert "node_modules/pkg/index.js" not in out  # an ignored folder is one line


def test_repositories_inside_stay_out(repo):
    (repo / "vendor" / "lib").mkdir(parents=True)
    git(repo / "vendor" / "lib", "init", "-q")
    write(repo, "vendor/lib/code.py")
    assert reasons(select(repo))["vendor/lib/"] == "a git repository of its own (not copied)"


def test_left_out_list_travels_in_the_image_label(capsys):
    left = [LeftOut(f"f{i}", "git-ignored") for i in range(image.LABEL_ITEMS + 3)]
    back = image._from_label(image._to_label(left))
    assert back[: image.LABEL_ITEMS] == left[: image.LABEL_ITEMS] and back[-1].rel == "3 more"
    assert image._from_label("not json") == [] and image._from_label(None) == []


def test_links_stay_links_and_modes_stay(repo):
    entries = {e.rel: e for e in select(repo).entries}
    assert entries["to-shadow"].kind == "link" and entries["to-shadow"].target == "/etc/shadow"
    assert entries["to-outside"].target == "../outside"
    assert entries["run.sh"].mode == 0o755 and entries["src/main.py"].mode == 0o644


CREDENTIALS = {
    ".env.local": "credential file name (.env*)",
    "deploy/.envrc": "credential file name (.env*)",
    "certs/server.pem": "key or certificate file (*.pem)",
    "certs/tls.key": "key or certificate file (*.key)",
    "keys/id_rsa": "SSH private key name (id_*)",
    "keys/id_ed25519": "SSH private key name (id_*)",
    ".aws/credentials": "AWS credentials (.aws/)",
    "gcloud/application_default_credentials.json": "Google Cloud credentials",
    ".netrc": "login credentials (.netrc)",
    ".git-credentials": "git credentials (.git-credentials)",
    ".kube/config": "Kubernetes credentials (.kube/config)",
    ".docker/config.json": "Docker registry credentials (.docker/config.json)",
}


def test_credential_files_stay_out_by_name_even_when_tracked(repo):
    for rel in CREDENTIALS:
        write(repo, rel, "not a shape the DLP rules know\n")
    write(repo, "keys/id_rsa.pub", "ssh-ed25519 AAAA\n")
    write(repo, ".env.example", "KEY=\n")
    git(repo, "add", "-A")  # tracked does not make them safe
    chosen = select(repo)
    out = reasons(chosen)
    for rel, reason in CREDENTIALS.items():
        assert out.get(rel) == reason, rel
    assert {"keys/id_rsa.pub", ".env.example", "keys"} <= rels(chosen) and ".aws" not in rels(chosen)


def test_token_config_files_stay_out_only_with_a_token(repo):
    write(repo, ".npmrc", "//registry.npmjs.org/:_authToken=abc\n")
    write(repo, "web/.npmrc", "registry=https://registry.npmjs.org/\n")
    write(repo, ".pypirc", "[pypi]\nusername = __token__\npassword = pypi-x\n")
    chosen = select(repo)
    assert reasons(chosen)[".npmrc"] == "an .npmrc holding a token"
    assert reasons(chosen)[".pypirc"] == "a .pypirc holding a password"
    assert "web/.npmrc" in rels(chosen)


def test_bottleignore_and_include(repo):
    write(repo, ".bottleignore", "assets/\n*.psd\n")
    write(repo, "assets/big.bin", "0" * 100)
    write(repo, "art/cover.psd", "psd")
    write(repo, "certs/dev.pem", "dev cert")
    git(repo, "add", "-A")
    chosen = select(repo, include=("dist/", "certs/dev.pem", "art/*.psd"))
    out = reasons(chosen)
    assert out["assets/"] == ".bottleignore" and "assets/big.bin" not in out  # tracked, still left out
    assert {"dist/app.js", "certs/dev.pem", "art/cover.psd"} <= rels(chosen)  # brought back explicitly
    assert "node_modules/pkg/index.js" not in rels(chosen)
    included = {e.rel: e for e in chosen.entries}
    assert included["certs/dev.pem"].scan is False and included["src/main.py"].scan is True


def test_a_folder_that_is_not_a_repository(tmp_path):
    root = tmp_path / "plain"
    write(root, "a.txt")
    write(root, "node_modules/x.js")  # no fixed skip list any more
    write(root, "build/out.o")
    write(root, ".bottleignore", "build/\n")
    write(root, "id_ecdsa", "key")
    (root / "linkdir").symlink_to(root / "build")
    chosen = select(root)
    assert chosen.source == "folder"
    assert rels(chosen) == {".bottleignore", "a.txt", "node_modules", "node_modules/x.js", "linkdir"}
    assert reasons(chosen) == {"build/": ".bottleignore", "id_ecdsa": "SSH private key name (id_*)"}
    assert {e.rel: e.kind for e in chosen.entries}["linkdir"] == "link"  # never descended


def test_digest_follows_what_enters_and_nothing_else(repo):
    first = select(repo).digest
    assert select(repo).digest == first
    write(repo, "dist/app.js", "rebuilt, and git-ignored\n")
    write(repo, "new.log", "ignored\n")
    assert select(repo).digest == first
    assert select(repo, include=("dist/",)).digest != first
    write(repo, "src/main.py", "print('changed')\n")
    assert select(repo).digest != first


def test_pack_leaves_out_secret_contents_and_keeps_links_and_modes(repo, tmp_path):
    write(repo, "notes.txt", f"the token is {GITHUB_TOKEN}\n")
    write(repo, "config/settings.py", AWS_SECRET)
    write(repo, "custom.txt", "internal-id ACME-1234-SECRET\n")
    write(repo, "fixtures/keep.txt", AWS_SECRET)
    out = tmp_path / "ctx.tar"
    patterns = (DlpPattern("acme", r"ACME-[0-9]{4}-SECRET"),)
    chosen = select(repo, include=("fixtures/keep.txt",), patterns=patterns)
    left = pack.write_context(chosen, "FROM scratch\n", out, credentials.ContentScan(patterns))
    assert {i.rel: i.reason for i in left} == {
        "notes.txt": "contains a GitHub token",
        "config/settings.py": "contains an AWS secret access key assignment",
        "custom.txt": "contains a match for the DLP pattern 'acme'",
    }
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("Dockerfile").read() == b"FROM scratch\n"
        assert tar.extractfile("workspace/fixtures/keep.txt").read().decode() == AWS_SECRET  # included
        assert members["workspace/to-shadow"].issym() and members["workspace/to-shadow"].linkname == "/etc/shadow"
        assert members["workspace/to-outside"].linkname == "../outside"
        assert members["workspace/run.sh"].mode == 0o755
        assert "workspace/.git/HEAD" in members and "workspace/.env" not in members
        assert "workspace/notes.txt" not in members
        assert tar.extractfile("workspace/src/main.py").read() == b"print('hi')\n"


def test_content_scan_reads_only_the_head_of_large_files(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(pack, "MAX_SCAN_BYTES", 1024)
    write(repo, "big.txt", "a" * 4096 + f"\n{GITHUB_TOKEN}\n")
    write(repo, "small.txt", f"{GITHUB_TOKEN}\n")
    left = pack.write_context(select(repo), "FROM scratch\n", tmp_path / "c.tar", credentials.ContentScan())
    assert [i.rel for i in left] == ["small.txt"]


def test_binary_files_are_scanned_for_their_printable_runs():
    scan = credentials.ContentScan()
    noise = bytes(range(256)) * 64
    assert scan.finding(noise) is None
    assert scan.finding(noise + f"\0{GITHUB_TOKEN}\0".encode() + noise) == "contains a GitHub token"


def test_progress_prints_plain_lines_when_not_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(pack, "LARGE", 100)
    progress = pack.Progress(400, "copying")
    for _ in range(8):
        progress.advance(50)
    progress.close()
    lines = [line for line in capsys.readouterr().err.splitlines() if "copying" in line]
    assert len(lines) == 4 and lines[-1].strip() == "copying: 0 of 0 MB"


def test_the_parts_of_git_no_scan_reads_stay_out(repo):
    """Submodules' histories, reflogs (a command line such as `git pull https://user:token@...`)
    and LFS's stored versions: the agent's git commits without them, and no scan reads them."""
    write(repo, ".git/modules/vendor/sub/objects/c4/ab1d", "a compressed .env of the submodule's history")
    write(repo, ".git/modules/vendor/sub/config", "[remote]\n\turl = https://bob:hunter2hunter2@git.example/x\n")
    write(repo, ".git/logs/HEAD", f"0 1 t <t@t> 0 +0000\tpull -q https://bob:{GITHUB_TOKEN}@github.com/o/r\n")
    write(repo, ".git/lfs/objects/aa/bb/aabb", "an old version of a large file\n")
    chosen = select(repo)
    assert not [e.rel for e in chosen.entries if e.rel.startswith((".git/modules", ".git/logs", ".git/lfs"))]
    out = reasons(chosen)
    assert out[".git/modules/"] == "submodules' own histories (not copied)"
    assert ".git/logs/" not in out and out[".git/lfs/"].startswith("Git LFS")  # reflogs: in every repository
    assert any(e.rel == ".git/HEAD" for e in chosen.entries)  # the rest of the history comes along


def test_a_repository_inside_a_plain_folder_comes_without_its_history(tmp_path):
    root = tmp_path / "plain"
    write(root, "app/main.py")
    git(root / "app", "init", "-q")
    chosen = select(root)
    assert chosen.source == "folder"
    assert "app/main.py" in rels(chosen) and not [e.rel for e in chosen.entries if "/.git" in e.rel]
    assert reasons(chosen)["app/.git/"] == "the history of a repository inside (not copied)"


@pytest.mark.parametrize("config, kept", [
    ("[remote \"origin\"]\n\turl = https://bob:hunter2hunter2@gitlab.example/o/r.git\n", False),
    ("[http \"https://github.com/\"]\n\textraheader = AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hz\n", False),
    ("[remote \"origin\"]\n\turl = https://github.com/o/r.git\n\tpushurl = git@github.com:o/r.git\n", True),
])
def test_a_credential_in_gits_config_keeps_it_out(repo, tmp_path, config, kept):
    for name in (".git/config", ".git/config.worktree"):
        write(repo, name, config)
    out = tmp_path / "ctx.tar"
    left = pack.write_context(select(repo), "FROM scratch\n", out, credentials.ContentScan())
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    for name in (".git/config", ".git/config.worktree"):
        assert (f"workspace/{name}" in names) == kept, name
        assert ({i.rel: i.reason for i in left}.get(name) is None) == kept


@pytest.mark.parametrize("as_repo", [True, False], ids=["git", "folder"])
def test_bottles_own_state_folder_never_enters_a_workspace_that_holds_it(tmp_path, monkeypatch, as_repo):
    """A workspace of `~` (or a dotfiles repository there) holds every bottle's stage files,
    the secrets the egress proxy and the git gate read among them: none of it is copied, not
    even when `workspace.include` names it."""
    home = tmp_path / "home"
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    write(home, "notes.txt")
    secrets = write(home, ".local/state/bottle/other/stage/egress/secrets.json", '{"TOKEN": "tok_123"}')
    if as_repo:
        git(home, "init", "-q")
    chosen = select(home, include=(".local/",))
    assert reasons(chosen)[".local/state/bottle/"].startswith("bottle's own state")
    assert not any(e.rel.startswith(".local/state/bottle") for e in chosen.entries), rels(chosen)
    assert "notes.txt" in rels(chosen) and secrets.exists()


def test_a_workspace_inside_bottles_own_state_folder_is_refused(tmp_path, monkeypatch):
    from bottle_tasks.errors import BottleError

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    write(tmp_path, "bottle/x/stage/egress/secrets.json", "{}")
    with pytest.raises(BottleError, match="inside bottle's own state folder"):
        select(tmp_path / "bottle" / "x")
