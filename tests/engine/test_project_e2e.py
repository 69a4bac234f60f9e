"""The `bottle` command from a project folder outside this repo, as a new user runs it:
`bottle init`, `bottle launch`, work inside the agent, `bottle pull` / `bottle diff`;
`bottle prune`; `--on` a host known only through an `Include`d ssh config.

Each test acts only on what it created: its own project folder (so its own bottle
name), its own images (labelled bottle.test=<unique>), and its own sshd."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HOST_BUNDLE, docker, labelled, unique
from test_remote import ssh  # noqa: F401  (the loopback sshd fixture)

from bottle_tasks import manifest
from bottle_tasks.plan import build_plan

pytestmark = pytest.mark.usefixtures("engine")
BOTTLE = str(Path(sys.executable).with_name("bottle"))
AGENT_ENV = {"ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key"}


def bottle(*args: str, cwd: Path, check: bool = True, env: dict | None = None, timeout: int = 900):
    full = {**os.environ, **AGENT_ENV, **(env or {})}
    proc = subprocess.run([BOTTLE, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode:
        raise AssertionError(f"bottle {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "user", "GIT_AUTHOR_EMAIL": "user@example.invalid",
           "GIT_COMMITTER_NAME": "user", "GIT_COMMITTER_EMAIL": "user@example.invalid"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def new_project(tmp_path: Path, prefix: str) -> Path:
    """A git project with one commit on `main`, `bottle init`ed, trusting the host CA bundle
    (registries are reached through an intercepting proxy here)."""
    folder = tmp_path / unique(prefix)
    folder.mkdir()
    git(folder, "init", "-q", "-b", "main")
    (folder / "package.json").write_text('{"name": "demo"}\n')
    (folder / "app.py").write_text("print('hello')\n")
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "the user's first commit")
    out = bottle("init", cwd=folder)
    assert "wrote" in out.stdout and "npm" in out.stdout
    path = folder / "bottle.yaml"
    text = path.read_text()
    assert "# trust:\n#   extra_ca_bundle:" in text
    path.write_text(text.replace("# trust:\n#   extra_ca_bundle: /etc/ssl/certs/ca-certificates.crt",
                                 f"trust:\n  extra_ca_bundle: {HOST_BUNDLE}"))
    return folder


def remove_workspace_images(slug: str) -> None:
    ids = docker("image", "ls", "-q", "--filter", f"reference=bottle/workspace-{slug}", check=False).stdout.split()
    if ids:
        docker("image", "rm", "-f", *sorted(set(ids)), check=False)


def volumes(slug: str) -> list[str]:
    return docker("volume", "ls", "-q", "--filter", f"label=bottle.slug={slug}").stdout.split()


def agent_sh(slug: str, command: str) -> str:
    return docker("exec", "-u", "1000:1000", "-w", "/workspace", f"bottle-{slug}-agent", "sh", "-c", command).stdout


def work_in_the_agent(slug: str) -> None:
    """One commit, then an uncommitted edit and an untracked file."""
    agent_sh(slug, "printf 'print(\"from the agent\")\\n' > app.py && git commit -qam 'agent: greet differently'")
    agent_sh(slug, "echo 'not committed yet' > notes.md && echo '# wip' >> app.py")


def test_init_launch_pull_and_diff_from_a_project_folder(tmp_path, state_home):
    folder = new_project(tmp_path, "proj")
    slug = folder.name
    (folder / "user-scratch.txt").write_text("the user's own uncommitted file\n")
    before = (git(folder, "rev-parse", "HEAD"), git(folder, "symbolic-ref", "HEAD"),
              git(folder, "status", "--porcelain"), (folder / "app.py").read_text())
    (folder / "src").mkdir()
    try:
        # From a subfolder: the manifest is found in the parents, like git finds .git.
        launched = bottle("launch", cwd=folder / "src")
        assert "ready" in launched.stdout and f"bottle {slug}" in launched.stdout, launched.stderr
        assert agent_sh(slug, "git log --format=%s -1") == "the user's first commit\n"  # .git came along
        work_in_the_agent(slug)
        agent_head = agent_sh(slug, "git rev-parse HEAD").strip()
        agent_status = agent_sh(slug, "git status --porcelain")

        pulled = bottle("pull", cwd=folder)
        assert f"branch bottle/{slug} created" in pulled.stdout, pulled.stdout + pulled.stderr
        branch = f"bottle/{slug}"
        assert git(folder, "rev-parse", f"{branch}~1") == agent_head
        assert git(folder, "log", "--format=%s", "-1", f"{branch}~1") == "agent: greet differently"
        assert git(folder, "show", f"{branch}:notes.md") == "not committed yet"
        assert git(folder, "show", f"{branch}:app.py") == 'print("from the agent")\n# wip'
        assert git(folder, "rev-parse", f"{branch}~2") == before[0]
        # The user's branch, index and files: exactly as they were.
        after = (git(folder, "rev-parse", "HEAD"), git(folder, "symbolic-ref", "HEAD"),
                 git(folder, "status", "--porcelain"), (folder / "app.py").read_text())
        assert after == before
        # ...and the agent's: its HEAD and its uncommitted work did not move either.
        assert agent_sh(slug, "git rev-parse HEAD").strip() == agent_head
        assert agent_sh(slug, "git status --porcelain") == agent_status

        again = bottle("pull", cwd=folder)
        assert f"branch {branch} unchanged" in again.stdout, again.stdout
        # bottle.yaml came back as the user has it (never committed): no warning. Changed by the
        # agent, it would be the next bottle's rules once merged: pull says so.
        assert "own rules" not in pulled.stderr + again.stderr, pulled.stderr + again.stderr
        agent_sh(slug, "printf '    allow: [evil.example]\\n' >> bottle.yaml")
        loosened = bottle("pull", cwd=folder)
        assert "the agent changed the bottle's own rules" in loosened.stderr, loosened.stderr
        assert "bottle.yaml" in loosened.stderr

        diff = bottle("diff", cwd=folder).stdout
        assert "+print(\"from the agent\")" in diff and "-print('hello')" in diff
        assert "+not committed yet" in diff and "+# wip" in diff
        stat = bottle("diff", "--stat", cwd=folder).stdout
        assert "app.py" in stat and "notes.md" in stat

        # The agent is hostile: its git config, attributes and hooks never shape what the user reads
        # or gets. An external diff that shows nothing and a terminal title in a file:
        agent_sh(slug, "git config diff.external /bin/true && printf 'x\\033]0;owned\\007\\n' > esc.txt")
        diff = bottle("diff", cwd=folder).stdout
        assert "+not committed yet" in diff and "\x1b" not in diff and "\\x1b]0;owned" in diff, diff
        # A hook that writes into the bundle's stream: refused, the branch as it was.
        agent_sh(slug, "printf '#!/bin/sh\\necho junk > /proc/$PPID/fd/1\\n' > .git/hooks/reference-transaction "
                       "&& chmod +x .git/hooks/reference-transaction && echo more >> notes.md")
        tip = git(folder, "rev-parse", branch)
        corrupted = bottle("pull", cwd=folder, check=False)
        assert corrupted.returncode == 1 and "not a git bundle" in corrupted.stderr, corrupted.stderr
        assert git(folder, "rev-parse", branch) == tip
        agent_sh(slug, "rm .git/hooks/reference-transaction")

        # A checked-out bottle branch is never pulled into: that would change the user's files.
        git(folder, "worktree", "add", "-q", str(tmp_path / "wt"), branch)
        refused = bottle("pull", cwd=folder, check=False)
        assert refused.returncode == 1 and "checked out" in refused.stderr
    finally:
        bottle("down", "--purge", cwd=folder, check=False)
        remove_workspace_images(slug)
    assert labelled(slug) == [] and not volumes(slug)


def test_two_projects_in_folders_of_one_name_never_share_a_bottle(tmp_path, state_home):
    """~/oss/api and ~/work/api are both bottle `api`: the second's launch would take over the
    first's containers and state, and mount the home the first's agent left its hooks in."""
    import shutil

    (tmp_path / "oss").mkdir()
    first = new_project(tmp_path / "oss", "twin")
    second = tmp_path / "work" / first.name
    shutil.copytree(first, second)
    slug = first.name
    try:
        bottle("launch", cwd=first)
        agent_id = docker("inspect", "--format", "{{.Id}}", f"bottle-{slug}-agent").stdout
        taken = bottle("launch", cwd=second, check=False)
        assert taken.returncode == 1 and f"bottle {slug} is the bottle of {first / 'bottle.yaml'}" in taken.stderr, \
            taken.stderr
        assert "Traceback" not in taken.stderr
        assert docker("inspect", "--format", "{{.Id}}", f"bottle-{slug}-agent").stdout == agent_id  # untouched
        bottle("down", cwd=first)  # keeps the home, with whatever the agent left in it
        home = bottle("launch", cwd=second, check=False)
        assert home.returncode == 1 and f"holds what the agent of {first / 'bottle.yaml'} left" in home.stderr, \
            home.stderr
        assert labelled(slug) == [] and volumes(slug) == [f"bottle-{slug}-home"]  # the refused launch made nothing
    finally:
        bottle("down", "--purge", cwd=first, check=False)
        bottle("down", "--purge", cwd=second, check=False)
        remove_workspace_images(slug)
    assert labelled(slug) == [] and not volumes(slug)


def test_prune_removes_a_stale_image_and_keeps_those_in_use(tmp_path, state_home):
    mark = unique("prune")
    folder = new_project(tmp_path, "pr")
    # A proxy base of this test's own name gives the proxy images tags no one else uses.
    path = folder / "bottle.yaml"
    path.write_text(path.read_text().replace("version: 1\n", f"version: 1\nimages: {{proxy_base: 'bottle-test/{mark}:base'}}\n"))
    loaded = manifest.load(path)
    plan = build_plan(folder.name, loaded, loaded.agents[folder.name])
    wanted = plan.images["firewall"].tag
    images = {"stale": f"bottle/firewall:{mark}stale", "wanted": wanted,
              "used": f"bottle/agent:{mark}used", "foreign": f"bottle-test/{mark}:derived"}
    container = f"{mark}-user"
    try:
        for role, tag in images.items():  # four tiny images with ids of their own
            dockerfile = f"FROM debian:bookworm-slim\nLABEL bottle.image=firewall bottle.test={mark} role={role}\n"
            subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True,
                           capture_output=True, check=True)
        docker("create", "--label", f"bottle.test={mark}", "--name", container, images["used"], "true")
        out = bottle("prune", "--only", f"bottle.test={mark}", "--verbose", cwd=folder)
        assert f"removed {images['stale']}" in out.stderr and "freed" in out.stderr, out.stderr
        assert f"kept {images['used']}: used by 1 container(s)" in out.stderr
        assert f"kept {wanted}: the current manifest uses it" in out.stderr
        present = {role: docker("image", "inspect", tag, check=False).returncode == 0 for role, tag in images.items()}
        assert present == {"stale": False, "wanted": True, "used": True, "foreign": True}
    finally:
        docker("rm", "-f", container, check=False)
        docker("image", "rm", "-f", *images.values(), check=False)


def test_on_a_host_from_an_included_ssh_config(ssh, tmp_path, state_home):  # noqa: F811
    remote, env = ssh
    port = remote.rsplit(":", 1)[1]
    keys = Path(env["SSH_AUTH_SOCK"]).parent  # the fixture's folder: its client key is there
    alias = unique("bottle-host-")
    included = tmp_path / "ssh" / "hosts.conf"
    included.parent.mkdir()
    included.write_text(f"Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
                        f"  IdentityFile {keys / 'client_key'}\n  IdentitiesOnly yes\n"
                        f"  UserKnownHostsFile {keys / 'known_hosts'}\n")
    config = tmp_path / "ssh" / "config"
    config.write_text(f"Include {included}\n")
    # No agent: the key is reachable only through the Included IdentityFile.
    on = {"BOTTLE_SSH_CONFIG": str(config), "SSH_AUTH_SOCK": ""}
    folder = new_project(tmp_path, "rp")
    slug = folder.name
    try:
        bottle("--on", alias, "launch", cwd=folder, env=on)
        state = (state_home / "bottle" / slug / "state.json").read_text()
        assert f'"host": "{alias}"' in state
        work_in_the_agent(slug)
        pulled = bottle("--on", alias, "pull", cwd=folder, env=on)
        assert f"branch bottle/{slug} created" in pulled.stdout, pulled.stdout + pulled.stderr
        assert git(folder, "show", f"bottle/{slug}:notes.md") == "not committed yet"
        assert "+# wip" in bottle("--on", alias, "diff", cwd=folder, env=on).stdout
        status = bottle("--on", alias, "status", "--json", cwd=folder, env=on).stdout
        assert f"bottle-{slug}-agent" in status
    finally:
        bottle("--on", alias, "down", "--purge", cwd=folder, env=on, check=False)
        remove_workspace_images(slug)
    assert labelled(slug) == [] and not volumes(slug)


def test_a_build_off_a_terminal_logs_one_plain_line_per_step(tmp_path, capsys):
    """Progress of a real `docker build` through build_one, with stderr not a terminal."""
    from types import SimpleNamespace

    from invoke import Context

    from bottle_tasks.images import ImageSpec
    from bottle_tasks.steps.build import build_one
    from bottle_tasks.target import LocalTarget

    mark = unique("progress")
    tag = f"bottle-test/{mark}:1"
    spec = ImageSpec("progress", tag, f"FROM debian:bookworm-slim\nLABEL bottle.test={mark}\nRUN echo {mark}\n")
    target = LocalTarget(Context(), tmp_path)
    fake = SimpleNamespace(target=target, dry=False, run=target.run, stage=lambda *parts: str(tmp_path.joinpath(*parts)))
    try:
        build_one(fake, spec)
    finally:
        docker("image", "rm", "-f", tag, check=False)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("  progress: ")]
    # One line per update, each with the elapsed time; the builder adds a LABEL step of its own.
    texts = [line.removeprefix("  progress: ").rsplit(" [", 1)[0] for line in lines]
    assert texts[0] == f"building {tag}" and texts[-1] == f"built {tag}", err
    assert [text.split(":")[0] for text in texts[1:-1]] == ["step 1/4", "step 2/4", "step 3/4", "step 4/4"], err
    assert texts[3] == f"step 3/4: RUN echo {mark}" and all(line.endswith("s]") for line in lines)
    assert "\x1b[" not in err  # plain text: no live display codes
