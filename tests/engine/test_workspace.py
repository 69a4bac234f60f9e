"""The workspace on the real engine: a git repository with a git-ignored `.env`, build output,
each kind of credential file, a .bottleignore, an include list and links out of the
workspace; what is inside the agent's /workspace, what the launch says it left out, and
an unchanged workspace relaunching from the image `down` kept (checked by image id, not
by time: speed is for `make bench`)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import docker, labelled, unique, write_manifest
from test_bottle_e2e import Bottle, agent_body, module_bottle, teardown

pytestmark = pytest.mark.usefixtures("engine")

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GITHUB_TOKEN = "ghp_" + "Zq9x" * 9
OUTSIDE = "OUTSIDE-THE-WORKSPACE-7c1d"

# path -> (content, tracked)
FILES = {
    ".gitignore": (".env\ndist/\nnode_modules/\n", True),
    ".bottleignore": ("scratch/\n", True),
    "README.md": ("# project\n", True),
    "src/main.py": ("print('hello')\n", True),
    "run.sh": ("#!/bin/sh\necho run\n", True),
    ".env.example": ("AWS_SECRET_ACCESS_KEY=\n", True),
    "web/.npmrc": ("registry=https://registry.npmjs.org/\n", True),
    "config/server.pem": ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", True),
    "scratch/tmp.txt": ("left out by .bottleignore\n", True),
    "untracked.txt": ("untracked, not ignored\n", False),
    # git-ignored
    ".env": (f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}\n", False),
    "dist/app.js": ("built output\n", False),
    "node_modules/pkg/index.js": ("module.exports = 1\n", False),
    # credentials by name, untracked and not ignored: only their name keeps them out
    ".env.local": ("LOCAL=1\n", False),
    "keys/id_ed25519": ("not really a key\n", False),
    ".aws/credentials": ("[default]\n", False),
    "gcloud/application_default_credentials.json": ("{}\n", False),
    ".netrc": ("machine example.com\n", False),
    ".git-credentials": ("https://example.com\n", False),
    ".npmrc": ("//registry.npmjs.org/:_authToken=abc\n", False),
    ".pypirc": ("[pypi]\npassword = x\n", False),
    # credentials by content (the firewall's DLP rules)
    "notes.md": (f"token: {GITHUB_TOKEN}\n", False),
    "settings.py": (f"AWS_SECRET_ACCESS_KEY = '{AWS_SECRET}'\n", False),
    # brought back by workspace.include
    "certs/dev.pem": ("dev certificate\n", False),
}
INCLUDE = "[dist/, certs/dev.pem]"
INSIDE = {".gitignore", ".bottleignore", "README.md", "src", "src/main.py", "run.sh", ".env.example", "web",
          "web/.npmrc", "untracked.txt", "dist", "dist/app.js", "certs", "certs/dev.pem", "to-shadow",
          "to-outside"}
LEFT_OUT = {".env": "git-ignored", "node_modules/": "git-ignored", "scratch/": ".bottleignore",
            "config/server.pem": "key or certificate file", ".env.local": "(.env*)", "keys/id_ed25519": "(id_*)",
            ".aws/credentials": "AWS credentials", "gcloud/application_default_credentials.json": "Google Cloud",
            ".netrc": ".netrc", ".git-credentials": "git credentials", ".npmrc": "holding a token",
            ".pypirc": "holding a password", "notes.md": "a GitHub token",
            "settings.py": "an AWS secret access key"}


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                   env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                            GIT_COMMITTER_EMAIL="t@t"))


def make_repository(folder: Path) -> Path:
    root = folder / "project"
    root.mkdir()
    git(root, "init", "-q")
    for rel, (text, _) in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "run.sh").chmod(0o755)
    (folder / "outside").write_text(OUTSIDE + "\n")
    (root / "to-shadow").symlink_to("/etc/shadow")
    (root / "to-outside").symlink_to("../outside")
    git(root, "add", "-f", *[rel for rel, (_, tracked) in FILES.items() if tracked], "to-shadow", "to-outside")
    git(root, "commit", "-qm", "init")
    return root


def workspace_images(slug: str) -> set[str]:
    return set(docker("image", "ls", "-q", "--filter", f"reference=bottle/workspace-{slug}").stdout.split())


def agent_image(slug: str) -> str:
    return docker("inspect", "-f", "{{.Image}}", f"bottle-{slug}-agent").stdout.strip()


@pytest.fixture(scope="module")
def bottle(tmp_path_factory, test_ca, trust_bundle):
    root = make_repository(tmp_path_factory.mktemp("ws"))
    launch = module_bottle(tmp_path_factory, test_ca, trust_bundle, with_upstreams=False, prefix="ws",
                           extra=f"    workspace: {{path: {root}, include: {INCLUDE}}}\n")
    launched = next(launch)
    launched.root = root
    try:
        yield launched
    finally:
        launched.inv("down", "--purge", check=False)
        for image in workspace_images(launched.slug):  # only this bottle's
            docker("image", "rm", "-f", image, check=False)
        next(launch, None)  # module_bottle's own teardown


def listing(bottle) -> dict[str, str]:
    """path -> "type owner mode" of everything in /workspace but .git's insides."""
    out = bottle.sh("cd /workspace && find . -path ./.git -prune -o -mindepth 1 -printf '%P\\t%y %u %m\\n'",
                    check=True).stdout
    return dict(line.split("\t") for line in out.splitlines() if line and not line.startswith(".git\t"))


def test_exactly_the_right_files_are_inside(bottle):
    inside = listing(bottle)
    assert set(inside) == INSIDE
    # The user's files, as the agent user, exec bits kept.
    assert inside["run.sh"] == "f agent 755" and inside["src/main.py"] == "f agent 644"
    assert all(value.split()[1] == "agent" for value in inside.values())
    assert bottle.sh("/workspace/run.sh").stdout.strip() == "run"


def test_no_secret_reached_the_workspace(bottle):
    for needle in (AWS_SECRET, GITHUB_TOKEN, OUTSIDE, "_authToken"):
        found = docker("exec", "-u", "0", f"bottle-{bottle.slug}-agent", "grep", "-rlF", needle, "/workspace",
                       check=False)
        assert found.stdout == "", f"{needle[:8]}… found in {found.stdout}"


def test_links_are_links_and_never_followed(bottle):
    assert bottle.sh("readlink /workspace/to-shadow").stdout.strip() == "/etc/shadow"
    assert bottle.sh("readlink /workspace/to-outside").stdout.strip() == "../outside"
    assert bottle.sh("cat /workspace/to-outside").returncode != 0  # nothing of the host's file came along
    assert bottle.sh("cat /workspace/to-shadow").returncode != 0   # the container's own, unreadable


def test_the_repository_came_along(bottle):
    assert bottle.sh("git -C /workspace log --oneline").stdout.count("\n") == 1
    assert bottle.sh("cd /workspace && git add -A && git commit -qm agent-work && echo ok").stdout.strip() == "ok"


def test_launch_says_what_it_left_out_and_why(bottle):
    said = bottle.launch_output.stderr
    assert "left out" in said
    lines = [line.strip() for line in said.splitlines()]
    for rel, reason in LEFT_OUT.items():
        assert any(rel in line and reason in line for line in lines), f"{rel} ({reason}) not reported:\n{said}"
    assert AWS_SECRET not in said and GITHUB_TOKEN not in said


def test_unchanged_workspace_relaunches_from_the_kept_image(bottle):
    image = agent_image(bottle.slug)
    assert bottle.inv("down").returncode == 0
    assert any(image.removeprefix("sha256:").startswith(i) for i in workspace_images(bottle.slug))  # kept
    relaunched = bottle.inv("launch")
    assert agent_image(bottle.slug) == image  # the same image: no copy, no build
    assert "workspace unchanged, image reused" in relaunched.stderr
    assert "node_modules/" in relaunched.stderr  # and it says again what it left out
    assert listing(bottle).keys() == INSIDE


def test_a_changed_workspace_gets_a_new_image_and_the_old_one_goes(bottle):
    old = agent_image(bottle.slug)
    bottle.inv("down")
    (bottle.root / "src" / "main.py").write_text("print('changed')\n")
    relaunched = bottle.inv("launch")
    assert "workspace copied" in relaunched.stderr
    assert agent_image(bottle.slug) != old
    assert len(workspace_images(bottle.slug)) == 1  # the earlier copy was removed
    assert bottle.sh("cat /workspace/src/main.py").stdout == "print('changed')\n"
    bottle.inv("down", "--purge")
    assert workspace_images(bottle.slug) == set()


def test_a_secret_in_the_history_refuses_the_launch_and_leaves_nothing(tmp_path, state_home, trust_bundle):
    """A key committed once and deleted since is still in .git, which the agent could read
    with git: the launch is refused before anything is made, saying where it is."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q")
    (root / "settings.py").write_text(f"AWS_SECRET_ACCESS_KEY = '{AWS_SECRET}'\n")
    git(root, "add", "settings.py")
    git(root, "commit", "-qm", "settings")
    git(root, "rm", "-q", "settings.py")
    git(root, "commit", "-qm", "the key goes")
    slug = unique("wshist")
    bottle = Bottle(slug, write_manifest(tmp_path, {slug: agent_body(None, f"    workspace: {{path: {root}}}\n")},
                                         bundle=str(trust_bundle)))
    try:
        out = bottle.inv("launch", check=False)
        said = out.stdout + out.stderr
        assert out.returncode == 1, said
        assert "its git history holds a secret" in said and "settings.py (blob" in said, said
        assert ".bottleignore" in said and "Traceback" not in said and AWS_SECRET not in said
        assert labelled(slug) == [] and not workspace_images(slug)
        assert not docker("volume", "ls", "-q", "--filter", f"label=bottle.slug={slug}").stdout.split()
    finally:  # a launch that went through (the bug) leaves its home volume and workspace image
        bottle.inv("down", "--purge", check=False)
        teardown(bottle)
