"""A project that names files outside itself, on the real engine: what git lists comes from
`.git/index`, a file that came with the project like any other, and git prints an absolute
path (`/home/me/.bash_history`) or `../x` it finds there as it is. None of the operator's
files may reach the agent's /workspace, only the project's, and the launch says what it
left out. (A tracked file behind a folder that became a link: tests/unit/test_workspace_paths_leading_out.py;
the engine cannot even build that context.)"""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import docker, forged_index, git_output
from test_bottle_e2e import module_bottle

pytestmark = pytest.mark.usefixtures("engine")

ABSOLUTE = "OPERATOR-FILE-BY-ABSOLUTE-PATH-5e1a"
UPWARD = "OPERATOR-FILE-BY-DOTDOT-5e1a"
PROJECT = "the project's own file\n"


def make_project(folder: Path) -> Path:
    home = folder / "home"
    home.mkdir()
    (home / "history").write_text(ABSOLUTE + "\n")
    (home / "upward").write_text(UPWARD + "\n")
    root = folder / "project"
    root.mkdir()
    (root / "main.py").write_text(PROJECT)
    git_output(root, "init", "-q")
    git_output(root, "add", "main.py")
    git_output(root, "commit", "-qm", "init")
    forged_index(root, ["main.py", str(home / "history"), "../home/upward"])
    listed = git_output(root, "ls-files", "--cached").decode()
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
