"""A project that names files outside itself, on the real engine: what git lists comes from
`.git/index`, a file that came with the project like any other, and git prints an absolute
path (`/home/me/.bash_history`) or `../x` it finds there as it is. None of the operator's
files may reach the agent's /workspace, only the project's, and the launch says what it
left out. (A tracked file behind a folder that became a link: tests/unit/test_workspace_escape.py;
the engine cannot even build that context.)"""
from __future__ import annotations

import hashlib
import os
import struct
import subprocess
from pathlib import Path

import pytest
from helpers import docker
from test_bottle_e2e import module_bottle

pytestmark = pytest.mark.usefixtures("engine")

ABSOLUTE = "OPERATOR-FILE-BY-ABSOLUTE-PATH-5e1a"
UPWARD = "OPERATOR-FILE-BY-DOTDOT-5e1a"
PROJECT = "the project's own file\n"


def git(root: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, input=stdin,
                          env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
                                   GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")).stdout


def write_index(root: Path, paths: list[str]) -> None:
    """A version-2 `.git/index` listing `paths` (git itself refuses to add such paths; a
    project's index is still just a file): each a regular file holding one blob."""
    blob = bytes.fromhex(git(root, "hash-object", "-w", "--stdin", stdin=b"x\n").decode().strip())
    body = b""
    for path in sorted(p.encode() for p in paths):
        entry = struct.pack(">10I", 0, 0, 0, 0, 0, 0, 0o100644, 0, 0, 2) + blob + struct.pack(">H", len(path)) + path
        body += entry + b"\0" * (8 - len(entry) % 8)
    data = b"DIRC" + struct.pack(">II", 2, len(paths)) + body
    (root / ".git" / "index").write_bytes(data + hashlib.sha1(data).digest())


def make_project(folder: Path) -> Path:
    home = folder / "home"
    home.mkdir()
    (home / "history").write_text(ABSOLUTE + "\n")
    (home / "upward").write_text(UPWARD + "\n")
    root = folder / "project"
    root.mkdir()
    (root / "main.py").write_text(PROJECT)
    git(root, "init", "-q")
    git(root, "add", "main.py")
    git(root, "commit", "-qm", "init")
    write_index(root, ["main.py", str(home / "history"), "../home/upward"])
    listed = git(root, "ls-files", "--cached").decode()
    assert str(home / "history") in listed and "../home/upward" in listed  # git lists them as they are
    return root


@pytest.fixture(scope="module")
def bottle(tmp_path_factory, test_ca, trust_bundle):
    root = make_project(tmp_path_factory.mktemp("wsesc"))
    launch = module_bottle(tmp_path_factory, test_ca, trust_bundle, with_upstreams=False, prefix="wsesc",
                           extra=f"    workspace: {{path: {root}}}\n")
    launched = next(launch)
    try:
        yield launched
    finally:
        launched.inv("down", "--purge", check=False)
        for image in docker("image", "ls", "-q", "--filter",
                            f"reference=bottle/workspace-{launched.slug}").stdout.split():
            docker("image", "rm", "-f", image, check=False)
        next(launch, None)


def test_no_file_of_the_operators_reached_the_agent(bottle):
    for needle in (ABSOLUTE, UPWARD):
        found = bottle.sh(f"grep -rlF {needle} /workspace")
        # 1: read everything, found nothing (2 would be a folder it could not read).
        assert (found.returncode, found.stdout) == (1, ""), f"{needle}: {found.stdout}{found.stderr}"


def test_the_project_itself_came_along(bottle):
    assert bottle.sh("cat /workspace/main.py").stdout == PROJECT


def test_launch_says_what_it_left_out_and_why(bottle):
    said = bottle.launch_output.stderr
    assert "a path leading out of the workspace" in said and "../home/upward" in said and "/history" in said
