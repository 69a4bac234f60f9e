"""The `bottle` command without Docker: project discovery, `bottle init`'s starter manifest,
the project workspace default, the completion script, prune's choice, and the agent-side
snapshot script run against a real git repository on this machine."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import missing

from bottle_tasks import manifest, project, starter, workback
from bottle_tasks.steps import prune

BOTTLE = str(Path(sys.executable).with_name("bottle"))


def bottle(*args: str, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([BOTTLE, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    if check and proc.returncode:
        raise AssertionError(f"bottle {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


# -- discovery ------------------------------------------------------------------

def test_the_nearest_project_manifest_is_found_from_a_subfolder(tmp_path):
    (tmp_path / "outer").mkdir()
    (tmp_path / "outer" / "bottle.md").write_text("---\nname: x\n---\nhi\n")
    inner = tmp_path / "outer" / "My Project_2"
    (inner / "src" / "deep").mkdir(parents=True)
    (inner / "bottle.yaml").write_text("agents: {my-project-2: {}}\n")
    assert project.find(inner / "src" / "deep") == inner / "bottle.yaml"
    assert project.find(tmp_path / "outer") == tmp_path / "outer" / "bottle.md"
    found = project.discover(inner / "src")
    assert (found.agent, found.name) == ("my-project-2", "my-project-2")


def test_a_manifest_another_user_could_have_written_is_passed_over(tmp_path, capsys):
    """Git refuses a repository of someone else's (CVE-2022-24765): `/tmp/bottle.yaml` of
    another user's would be the project, with its hosts for your credentials, of anyone who
    runs `bottle` in a folder below it without a manifest of their own."""
    shared = tmp_path / "shared"
    work = shared / "victim" / "work"
    work.mkdir(parents=True)
    planted = shared / "bottle.yaml"
    planted.write_text("agents: {x: {secrets: [ANTHROPIC_API_KEY]}}\n")
    os.chown(planted, 65534, 65534)
    assert project.discover(work) is None
    assert f"passed over {planted}: its file belongs to uid 65534, not you" in capsys.readouterr().err
    os.chown(planted, os.geteuid(), os.getegid())
    shared.chmod(0o777)  # anyone may replace the file
    assert project.find(work) is None
    shared.chmod(0o1777)  # as /tmp: only its owner may replace it
    assert project.find(work) == planted
    planted.chmod(0o666)
    assert project.find(work) is None


@pytest.mark.parametrize("text", [
    "name: &a [x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
    "agents: {x: 1" + "1" * 5000 + "}\n",
    "agents: {x: 1}\n" + "y: " + "[" * 5000 + "]" * 5000 + "\n",
    "agents: {1: a, [x]: b}\n",
], ids=["alias bomb", "huge integer", "deep nesting", "odd keys"])
def test_a_hostile_manifest_leaves_bottles_help_quick_and_quiet(tmp_path, text):
    """The quiet reader behind `bottle --help` reads with the strict loader's bounds: an alias
    bomb of a few hundred bytes hung it, a 5,000-digit integer and deep nesting were tracebacks."""
    path = tmp_path / "bottle.yaml"
    path.write_text(text)
    assert project.agent_names(path) == []


def test_folder_names_become_bottle_names():
    assert project.slug_for(Path("/x/My Project_2")) == "my-project-2"
    assert project.slug_for(Path("/x/---")) == "project"
    assert len(project.slug_for(Path("/x/" + "a" * 80))) == 31


def test_without_a_project_the_manifest_bottle_init_would_write_is_named(tmp_path):
    chosen = project.selection_defaults(None, tmp_path)
    assert chosen["manifest"] == str(tmp_path / "bottle.yaml")


# -- bottle init ------------------------------------------------------------------

def test_starter_names_the_registries_the_project_uses_and_validates(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    for name in ("package.json", "requirements-dev.txt", "go.mod", "Cargo.toml"):
        (folder / name).write_text("")
    text = starter.render(folder)
    path = folder / "bottle.yaml"
    path.write_text(text)
    loaded = manifest.load(path)
    agent = loaded.agents["shop"]
    assert set(agent.network.allow) >= {"api.anthropic.com", "registry.npmjs.org", "pypi.org",
                                        "files.pythonhosted.org", "proxy.golang.org", "index.crates.io"}
    assert "rubygems.org" not in agent.network.allow
    assert agent.routes[0].host == "api.anthropic.com" and agent.secrets == ("ANTHROPIC_API_KEY",)
    assert agent.workspace.path == str(folder)  # a project's manifest works on its folder


def test_bottle_init_writes_once_and_refuses_to_overwrite(tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "pyproject.toml").write_text("[project]\nname='p'\n")
    out = bottle("init", cwd=folder)
    assert "wrote" in out.stdout and "PyPI" in out.stdout
    first = (folder / "bottle.yaml").read_text()
    again = bottle("init", cwd=folder, check=False)
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert (folder / "bottle.yaml").read_text() == first
    plan = bottle("plan", cwd=folder, env={"COLUMNS": "200"})
    assert "bottle proj (agent proj" in plan.stdout and "bottle/workspace-proj:" in plan.stdout


def test_workspace_defaults_only_in_project_manifests(tmp_path):
    body = "agents:\n  a: {}\n  b: {workspace: null}\n"
    (tmp_path / "bottle.yaml").write_text(body)
    (tmp_path / "other.yaml").write_text(body)
    loaded = manifest.load(tmp_path / "bottle.yaml")
    assert loaded.agents["a"].workspace.path == str(tmp_path) and loaded.agents["b"].workspace is None
    assert manifest.load(tmp_path / "other.yaml").agents["a"].workspace is None


def test_no_project_manifest_is_a_clear_error(tmp_path):
    out = bottle("plan", cwd=tmp_path, check=False)
    assert out.returncode == 1 and "bottle.yaml" in out.stderr and "bottle init" in out.stderr
    assert "Traceback" not in out.stderr


# -- the command itself -------------------------------------------------------------

def test_every_task_is_a_bottle_task(tmp_path):
    listed = bottle("--list", cwd=tmp_path).stdout
    for name in ("init", "launch", "claude", "pull", "diff", "prune", "down", "use"):
        assert f"  {name} " in listed, name


def test_completion_script_loads_in_bash(tmp_path):
    script = bottle("--print-completion-script", "bash", cwd=tmp_path).stdout
    (tmp_path / "c.bash").write_text(script)
    out = subprocess.run(["bash", "-c", f"source {tmp_path}/c.bash && complete -p bottle"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "bottle" in out.stdout, out.stderr
    candidates = bottle("--complete", "--", "bottle", "pu", cwd=tmp_path).stdout.split()
    assert "pull" in candidates


# -- prune's choice -------------------------------------------------------------------

def test_prune_keeps_what_containers_and_the_manifest_use():
    images = [prune.Image("bottle/agent:old", "sha256:1", 0, 100),
              prune.Image("bottle/agent:new", "sha256:2", 0, 200),
              prune.Image("bottle/firewall:run", "sha256:3", 1, 300),
              prune.Image("bottle/firewall:alias", "sha256:3", 0, 300)]
    remove, kept = prune.choose(images, {"bottle/agent:new"})
    assert [i.ref for i in remove] == ["bottle/agent:old"]
    assert {i.ref for i, _ in kept} == {"bottle/agent:new", "bottle/firewall:run", "bottle/firewall:alias"}
    assert prune.parse_size("533.2kB") == 533200 and prune.parse_size("1.04GB") == 1040000000
    assert prune.parse_size("0B") == 0 and prune.parse_size("?") == 0


# -- the snapshot script, on a real repository ----------------------------------------------

def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


@pytest.fixture
def agent_repo(tmp_path):
    """A user's repo with one commit, and the agent's copy of it (its .git included)."""
    user = tmp_path / "user"
    user.mkdir()
    git(user, "init", "-q", "-b", "main")
    (user / "a.txt").write_text("one\n")
    git(user, "add", "a.txt")
    git(user, "commit", "-qm", "first")
    agent = tmp_path / "agent"
    shutil.copytree(user, agent)
    return user, agent


def snapshot(agent: Path, known: list[str], bundle: Path) -> workback.Snapshot:
    """The snapshot, and its bundle in `bundle` when the controller lacks commits (as `pull`)."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null"}  # the identity fallback of the script
    out = subprocess.run(workback.snapshot_argv(None, known), cwd=agent, capture_output=True, text=True,
                         check=True, env=env)
    snap = workback.parse_snapshot(out.stdout)
    if snap.new:
        made = subprocess.run(workback.bundle_argv(snap.tip, known), cwd=agent, capture_output=True, check=True,
                              env=env)
        bundle.write_bytes(made.stdout)
        assert workback.bundle_problem(str(bundle)) is None
    return snap


def test_snapshot_keeps_the_agents_branch_index_and_files(agent_repo, tmp_path):
    user, agent = agent_repo
    base = git(user, "rev-parse", "HEAD")
    (agent / "a.txt").write_text("two\n")
    git(agent, "commit", "-qam", "agent's commit")
    agent_head = git(agent, "rev-parse", "HEAD")
    (agent / "a.txt").write_text("three\n")      # uncommitted
    (agent / "new.txt").write_text("untracked\n")  # untracked
    status_before = git(agent, "status", "--porcelain")
    bundle = tmp_path / "x.bundle"
    snap = snapshot(agent, [base], bundle)
    assert (snap.head, snap.base, snap.new, snap.dirty) == (agent_head, base, 2, True)
    assert git(agent, "rev-parse", "HEAD") == agent_head and git(agent, "status", "--porcelain") == status_before
    assert git(agent, "for-each-ref", "refs/bottle") == ""  # the bundle's ref is gone again
    # The user's repo: fetch into the branch; their branch and files stay as they were.
    git(user, "fetch", "-q", "--no-write-fetch-head", str(bundle), "+refs/bottle/pull:refs/heads/bottle/t")
    assert git(user, "rev-parse", "bottle/t") == snap.tip and git(user, "rev-parse", "HEAD") == base
    assert git(user, "show", "bottle/t:a.txt") == "three" and git(user, "show", "bottle/t:new.txt") == "untracked"
    assert git(user, "rev-parse", "bottle/t~1") == agent_head
    assert (user / "a.txt").read_text() == "one\n" and git(user, "status", "--porcelain") == ""


def test_snapshot_of_a_clean_agent_bundles_nothing(agent_repo, tmp_path):
    user, agent = agent_repo
    base = git(user, "rev-parse", "HEAD")
    snap = snapshot(agent, [base], tmp_path / "none.bundle")
    assert (snap.tip, snap.new, snap.dirty, snap.base) == (base, 0, False, base)
    assert not (tmp_path / "none.bundle").exists()
    assert workback.describe(snap, "bottle/t", None).startswith("branch bottle/t created at")



@pytest.mark.parametrize("forged", [
    "snapshot head=none tip=--output=/tmp/x base=none new=1 dirty=1",  # an option for the controller's git
    "snapshot head=none tip=HEAD base=none new=1 dirty=1",
    "snapshot head=none tip=" + "a" * 40 + " base=main new=1 dirty=1",
    "snapshot head=none tip=" + "a" * 40 + " base=none new=many dirty=1",
    "no snapshot at all",
])
def test_a_forged_snapshot_line_is_refused(forged):
    with pytest.raises(ValueError, match="no snapshot line bottle can read"):
        workback.parse_snapshot(forged + "\n")


def test_only_a_bundle_within_its_bound_is_fetched(tmp_path, monkeypatch):
    path = tmp_path / "b"
    path.write_bytes(b"# v2 git bundle\n" + b"x" * 10)
    assert workback.bundle_problem(str(path)) is None
    path.write_bytes(b"junk\n# v2 git bundle\n")
    assert "not a git bundle" in workback.bundle_problem(str(path))
    monkeypatch.setattr(workback, "MAX_BUNDLE_BYTES", 10)
    path.write_bytes(b"# v2 git bundle\n" + b"x" * 10)
    assert "larger than" in workback.bundle_problem(str(path))


def test_the_agents_output_is_bounded_and_lands_in_a_new_file(tmp_path):
    from bottle_tasks.steps.work import bounded_output

    dest = tmp_path / "out"
    subprocess.run(bounded_output(["sh", "-c", "head -c 100000 /dev/zero"], str(dest), 1000), check=True)
    assert dest.stat().st_size == 1000
    dest.write_text("there before")  # never written through, nor replaced
    ran = subprocess.run(bounded_output(["echo", "hi"], str(dest), 1000), capture_output=True)
    assert ran.returncode != 0 and dest.read_text() == "there before"

def test_a_branch_checked_out_is_recognised():
    listing = "worktree /r\nHEAD abc\nbranch refs/heads/main\n\nworktree /w\nbranch refs/heads/bottle/x\n"
    assert workback.checked_out(listing, "refs/heads/bottle/x")
    assert not workback.checked_out(listing, "refs/heads/bottle/y")


# -- --on HOST as ssh resolves it ------------------------------------------------------

def test_ssh_g_output_becomes_connection_settings(tmp_path):
    from bottle_tasks import sshconfig

    key = tmp_path / "id_test"
    key.write_text("not a real key")
    parsed = sshconfig.parse(f"user bob\nhostname 10.1.2.3\nport 2222\nidentityfile {key}\n"
                             f"identityfile {tmp_path}/missing\nproxyjump jump1,jump2\nidentitiesonly yes\n"
                             "proxycommand none\n")
    assert (parsed.hostname, parsed.user, parsed.port) == ("10.1.2.3", "bob", 2222)
    assert parsed.identity_files == (str(key),) and parsed.proxy_jump == "jump1" and parsed.identities_only
    assert parsed.proxy_command is None
    assert sshconfig.split("root@127.0.0.1:2200") == ("root@127.0.0.1", 2200)
    assert sshconfig.ssh_g_argv("root@h:2200", "/x/config") == ["ssh", "-G", "-F", "/x/config", "-p", "2200",
                                                                "--", "root@h"]


def test_an_included_host_resolves_through_ssh_itself(tmp_path, monkeypatch):
    from bottle_tasks import sshconfig

    if not shutil.which("ssh"):
        missing("needs the OpenSSH client (openssh-client, which openssh-server brings)")
    (tmp_path / "more.conf").write_text("Host box\n  HostName 192.0.2.7\n  Port 2022\n  User deploy\n")
    (tmp_path / "config").write_text(f"Include {tmp_path}/more.conf\n")
    monkeypatch.setenv("BOTTLE_SSH_CONFIG", str(tmp_path / "config"))
    host = sshconfig.resolve("box")
    assert (host.hostname, host.port, host.user) == ("192.0.2.7", 2022, "deploy")


# -- progress off a terminal, and hints that name the command in use --------------------------

def test_build_output_becomes_one_plain_line_per_step():
    import io

    from rich.console import Console

    from bottle_tasks import progress

    sink = io.StringIO()
    with progress.Board(Console(file=sink, width=200), live=False) as board:
        row = board.row("agent", "building bottle/agent:abc")
        out = progress.BuildOutput(row)
        out.write("Sending build context\nStep 1/2 : FROM debian\n ---> 123\nStep 2/2 : RUN apt-get upd")
        out.write("ate &&     apt-get install -y git\nSuccessfully built 123\n")
        row.finish("built bottle/agent:abc")
    lines = sink.getvalue().splitlines()
    assert [line.rsplit(" [", 1)[0] for line in lines] == [
        "  agent: building bottle/agent:abc", "  agent: step 1/2: FROM debian",
        "  agent: step 2/2: RUN apt-get update && apt-get install -y git", "  agent: built bottle/agent:abc"]
    assert out.tail[-1] == "Successfully built 123"


def test_hints_name_the_bottle_command_for_the_project_bottle():
    from bottle_tasks.selection import selector

    home = {"agent": "shop", "name": "shop", "manifest": "/p/bottle.yaml"}
    chosen = {"agent": "shop", "name": "shop", "manifest": "/p/bottle.yaml", "remote": None, "command": "bottle",
              "home": home}
    assert selector(chosen) == "bottle"
    assert selector({**chosen, "remote": "box"}) == "bottle --on box"
    assert selector({**chosen, "agent": "rev", "name": None}) == "bottle use rev"
    assert selector({**chosen, "command": None}).startswith("inv use shop --name shop")


@pytest.mark.parametrize("shell, registers", [("zsh", "compctl -K _complete_bottle"), ("fish", "complete --command bottle")])
def test_completion_scripts_for_zsh_and_fish_name_the_command(tmp_path, shell, registers):
    """Neither shell is installed here: the scripts are checked for what registers them."""
    script = bottle("--print-completion-script", shell, cwd=tmp_path).stdout
    assert registers in script and "bottle" in script, script[:400]


def test_a_snapshot_the_agent_holds_up_ends_with_its_reason(agent_repo, monkeypatch):
    """git in the agent runs as the agent's uid, which can SIGSTOP it (or plant a FIFO where git
    reads): `pull` and `diff` once waited for ever. The real wrapper, with a git that stops."""
    from types import SimpleNamespace

    from invoke import Context

    from bottle_tasks import docker
    from bottle_tasks.errors import BottleError
    from bottle_tasks.steps import work

    user, _agent = agent_repo  # the controller's repository
    monkeypatch.setattr(work, "AGENT_GIT_WAIT", 1, raising=False)
    monkeypatch.setattr(work, "recorded_base", lambda bottle: None)
    monkeypatch.setattr(docker, "exec_", lambda name, argv, **options: ["sh", "-c", "kill -STOP $$"])

    def run(argv, check=True):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return SimpleNamespace(ok=done.returncode == 0, exited=done.returncode, stdout=done.stdout, stderr=done.stderr)

    bottle = SimpleNamespace(slug="held", dry=False, require=lambda *a: "bottle-held-agent", run=run)
    with pytest.raises(BottleError) as raised:
        work.take_snapshot(Context(), bottle, str(user))
    assert "did not end within 1 s" in raised.value.detail


def test_pull_names_the_bottles_own_rules_the_agent_changed(agent_repo):
    """The agent can edit bottle.yaml or .bottleignore in its workspace; merged, that edit would
    be the next bottle's allowlist and routes. pull says so; other files it does not flag, nor
    a rule file the snapshot holds just as the operator's folder does (one that was never
    committed comes back in the snapshot as it was copied in)."""
    from invoke import Context

    from bottle_tasks.steps import work

    def rules_changed(repo: str, snapshot: workback.Snapshot) -> list[str]:
        return work.rule_files_changed(Context(), repo, snapshot, work.changed_paths(Context(), repo, snapshot))

    user, _agent = agent_repo
    base = git(user, "rev-parse", "HEAD")
    (user / "bottle.yaml").write_text("version: 1\n")
    (user / "deep;touch x").mkdir()
    (user / "deep;touch x" / ".bottleignore").write_text("!secret\n")
    (user / "deep;touch x" / ".gitignore").write_text("!*\n")  # git-ignored files would enter the next bottle
    # names git would read as pathspec magic: ls-tree failed on the first, the second hid the rest
    for decoy in (":(exclude)z", ":"):
        (user / decoy).mkdir()
        (user / decoy / "bottle.yaml").write_text("decoy\n")
    (user / "a.txt").write_text("two\n")
    git(user, "add", "-A")
    git(user, "commit", "-qm", "the agent's")
    tip = git(user, "rev-parse", "HEAD")
    git(user, "reset", "-q", "--hard", base)  # the operator's folder as it was at the copy
    snapshot = workback.Snapshot(head=None, tip=tip, base=base, new=1, dirty=False)
    changed = rules_changed(str(user), snapshot)
    assert sorted(changed) == [":(exclude)z/bottle.yaml", ":/bottle.yaml", "bottle.yaml", "deep;touch x/.bottleignore",
                               "deep;touch x/.gitignore"]
    (user / "bottle.yaml").write_text("version: 1\n")  # the operator's own, uncommitted: as in the snapshot
    assert sorted(rules_changed(str(user), snapshot)) == [
        ":(exclude)z/bottle.yaml", ":/bottle.yaml", "deep;touch x/.bottleignore", "deep;touch x/.gitignore"]
    unchanged = workback.Snapshot(head=None, tip=base, base=base, new=0, dirty=False)
    assert rules_changed(str(user), unchanged) == []


def test_a_rule_file_under_a_name_that_is_not_utf8_counts_as_changed(agent_repo):
    """git prints such a name's bytes; decoded, it holds U+FFFD and names no file git knows,
    in the snapshot or in the operator's folder: the two looked equal and pull said nothing."""
    from invoke import Context

    from bottle_tasks.steps import work

    user, _agent = agent_repo
    base = git(user, "rev-parse", "HEAD")
    folder = user / os.fsdecode(b"lat\xe9")
    folder.mkdir()
    (folder / "bottle.yaml").write_text("network: {allow: [evil.test]}\n")
    git(user, "add", "-A")
    git(user, "commit", "-qm", "the agent's")
    tip = git(user, "rev-parse", "HEAD")
    git(user, "reset", "-q", "--hard", base)
    snapshot = workback.Snapshot(head=None, tip=tip, base=base, new=1, dirty=False)
    changed = work.changed_paths(Context(), str(user), snapshot)
    assert work.rule_files_changed(Context(), str(user), snapshot, changed) == ["lat\ufffd/bottle.yaml"]


def test_the_review_command_names_only_files_a_paste_would_name():
    from bottle_tasks.steps import work

    plain = work.review_command("abc", "bottle/x", ["a b/bottle.yaml", ".gitignore"])
    assert plain == "git --literal-pathspecs diff abc bottle/x -- 'a b/bottle.yaml' .gitignore"
    hidden = work.review_command("abc", "bottle/x", ["x\n\nnote: nothing to review\ny/bottle.yaml"])
    assert hidden.startswith("git diff --stat abc bottle/x ") and "\n" not in hidden


@pytest.mark.parametrize("name, written", [
    ("bottle.yaml", True), ("a/b/.bottleignore", True), ("a/.gitignore", True), ("a/.github/x", True),
    ("../workspace/bottle.yaml", False), ("a/../bottle.yaml", False), ("/etc/passwd", False), ("a//b", False),
    ("./bottle.yaml", False), (".git/config", False), ("a/.GIT/hooks/x", False), ("a/.git. /x", False)])
def test_a_path_git_never_writes_is_told_apart(name, written):
    """Such a path is in a tree only by hand (git mktree, an index written byte by byte): the
    agent's. `../workspace/bottle.yaml` made pull's check of the rule files fail after the branch
    had moved, so it never named the real bottle.yaml the same commit changed."""
    assert workback.path_git_writes(name) is written


def delta_bomb_bundle(path: Path, inflated: int) -> None:
    """A bundle of a few hundred bytes whose one delta builds a blob of `inflated` bytes: a run
    of copy instructions, each taking the whole 64 KiB base again."""
    import hashlib
    import struct
    import zlib

    def varint(n: int) -> bytes:  # a delta header's size
        out = bytearray()
        while True:
            low, n = n & 0x7F, n >> 7
            out.append(low | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def entry_head(kind: int, size: int) -> bytes:  # a pack entry's type and size
        out, first, size = bytearray(), (kind << 4) | (size & 0x0F), size >> 4
        while size:
            out.append(first | 0x80)
            first, size = size & 0x7F, size >> 7
        return bytes(out + bytes([first]))

    def oid(kind: str, data: bytes) -> bytes:
        return hashlib.sha1(f"{kind} {len(data)}\0".encode() + data).digest()

    base = b"A" * 0x10000
    tree = b""
    commit = f"tree {oid('tree', tree).hex()}\nauthor a <a@a> 0 +0000\ncommitter a <a@a> 0 +0000\n\nx\n".encode()
    delta = varint(len(base)) + varint(inflated) + b"\x80" * (inflated // len(base))  # 0x80: copy 64 KiB from 0
    entries = [entry_head(1, len(commit)) + zlib.compress(commit), entry_head(2, 0) + zlib.compress(tree),
               entry_head(3, len(base)) + zlib.compress(base),
               entry_head(7, len(delta)) + oid("blob", base) + zlib.compress(delta)]
    pack = b"PACK" + struct.pack(">II", 2, len(entries)) + b"".join(entries)
    pack += hashlib.sha1(pack).digest()
    path.write_bytes(b"# v2 git bundle\n" + f"{oid('commit', commit).hex()} refs/bottle/pull\n\n".encode() + pack)


def test_a_bundle_that_inflates_past_the_bounds_is_refused_and_fetches_nothing(tmp_path, monkeypatch):
    """A few hundred bytes of the agent's built a blob of gigabytes in the operator's git (index-
    pack inflated two to 4 GiB in 40 s, in threads side by side): git takes a bundle in within
    bounds of memory and CPU, one thread, and fsck."""
    from invoke import Context

    from bottle_tasks.errors import BottleError
    from bottle_tasks.steps import work

    monkeypatch.setattr(work, "FETCH_MEMORY_KIB", 128 << 10)
    repo = tmp_path / "operator"
    git(tmp_path, "init", "-q", str(repo))
    bomb = tmp_path / "bomb.bundle"
    delta_bomb_bundle(bomb, 512 << 20)
    assert bomb.stat().st_size < 2000
    with pytest.raises(BottleError, match="could not take the agent's bundle") as refused:
        work.take_in(Context(), str(repo), str(bomb), "refs/heads/bottle/x", "x")
    assert "128 MiB of memory" in refused.value.detail
    assert git(repo, "for-each-ref") == ""
    fine = tmp_path / "fine.bundle"  # an ordinary bundle is taken in within the same bounds
    delta_bomb_bundle(fine, 1 << 20)
    work.take_in(Context(), str(repo), str(fine), "refs/heads/bottle/x", "x")
    assert git(repo, "for-each-ref").endswith("refs/heads/bottle/x")


def test_a_bottle_with_resources_is_one_manifests(tmp_path, monkeypatch):
    """Projects in folders of one name get one bottle name: the second's launch is refused
    while the first's bottle has anything to undo, and is fine once it has not."""
    from bottle_tasks.errors import BottleError
    from bottle_tasks.selection import check_manifest
    from bottle_tasks.state import State

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    (tmp_path / "oss" / "api").mkdir(parents=True)
    (tmp_path / "oss" / "api" / "bottle.yaml").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "oss")
    state = State.load("api", persist=False)
    state.data.update(manifest=str(tmp_path / "oss" / "api" / "bottle.yaml"), undo=[{"kind": "network"}])
    check_manifest(state, str(tmp_path / "link" / "api" / "bottle.yaml"))  # the same file, another way
    with pytest.raises(BottleError, match="is the bottle of .*/oss/api/bottle.yaml"):
        check_manifest(state, str(tmp_path / "work" / "api" / "bottle.yaml"))
    state.data["undo"] = []
    check_manifest(state, str(tmp_path / "work" / "api" / "bottle.yaml"))


def commit_of_paths(repo: Path, paths: list[str], parent: str) -> str:
    """A commit of `parent`'s tree plus an empty blob at each of `paths`, made without the files
    (git's index takes any path): what a hand-made tree of the agent's holds."""
    env = {**os.environ, "GIT_INDEX_FILE": str(repo / ".git" / "scratch-index")}
    blob = git(repo, "hash-object", "-w", "--stdin")
    subprocess.run(["git", "-C", str(repo), "read-tree", parent], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "update-index", "--add", "--index-info"], check=True, env=env,
                   input="".join(f"100644 {blob}\t{path}\n" for path in paths).encode())
    tree = subprocess.run(["git", "-C", str(repo), "write-tree"], check=True, env=env, capture_output=True,
                          text=True).stdout.strip()
    return git(repo, "commit-tree", tree, "-p", parent, "-m", "the agent's")


def test_rule_files_are_found_however_long_and_many_their_names(agent_repo):
    """The changed rule files' names went on one command line: 40 `.gitignore`s under 3.9 KB
    names made it too long to run, after the branch had moved, and the warning never came."""
    from invoke import Context

    from bottle_tasks.steps import work

    user, _agent = agent_repo
    base = git(user, "rev-parse", "HEAD")
    deep = lambda i: "/".join([f"{i:03d}" + "d" * 200] * 19)  # 3.8 KB, under PATH_MAX
    tip = commit_of_paths(user, ["bottle.yaml", *(f"{deep(i)}/.gitignore" for i in range(40))], base)
    snapshot = workback.Snapshot(head=None, tip=tip, base=base, new=1, dirty=False)
    changed = work.changed_paths(Context(), str(user), snapshot)
    found = work.rule_files_changed(Context(), str(user), snapshot, changed)
    assert len(found) == 41 and "bottle.yaml" in found


def test_a_tree_naming_too_many_paths_is_not_taken_in(tmp_path, monkeypatch):
    """A tree whose entries all name one subtree, a few levels deep: a bundle of 1.2 KB named
    10 million paths, and `git diff` of it grew to 3.2 GB before it wrote a byte."""
    from invoke import Context

    from bottle_tasks.errors import BottleError
    from bottle_tasks.steps import work

    monkeypatch.setattr(work, "MAX_TREE_PATHS", 1000)
    agent = tmp_path / "agent"
    git(tmp_path, "init", "-q", str(agent))
    blob = git(agent, "hash-object", "-w", "--stdin")
    leaf = subprocess.run(["git", "-C", str(agent), "mktree"], check=True, capture_output=True, text=True,
                          input="".join(f"100644 blob {blob}\tf{i}\n" for i in range(40))).stdout.strip()
    top = subprocess.run(["git", "-C", str(agent), "mktree"], check=True, capture_output=True, text=True,
                         input="".join(f"040000 tree {leaf}\td{i}\n" for i in range(40))).stdout.strip()
    git(agent, "update-ref", "refs/bottle/pull", git(agent, "commit-tree", top, "-m", "1,600 paths"))
    git(agent, "bundle", "create", "-q", str(tmp_path / "wide.bundle"), "refs/bottle/pull")
    repo = tmp_path / "operator"
    git(tmp_path, "init", "-q", str(repo))
    with pytest.raises(BottleError, match="names more than 1,000 paths"):
        work.take_in(Context(), str(repo), str(tmp_path / "wide.bundle"), "refs/heads/bottle/x", "x")


def test_what_diff_fetches_never_lands_in_the_operators_repository(agent_repo, tmp_path):
    """`diff` fetched the agent's objects into the operator's repository, where every later
    launch's history scan reads them: a blob shaped like a secret refused them all."""
    from invoke import Context

    from bottle_tasks.steps import work

    user, agent = agent_repo
    base = git(user, "rev-parse", "HEAD")
    (agent / "planted.txt").write_text("the agent's\n")
    git(agent, "add", "-A")
    git(agent, "commit", "-qm", "the agent's")
    tip = git(agent, "rev-parse", "HEAD")
    git(agent, "update-ref", "refs/bottle/pull", tip)
    git(agent, "bundle", "create", "-q", str(tmp_path / "work.bundle"), "refs/bottle/pull", f"^{base}")
    with work.borrowing_repo(Context(), str(user)) as scratch:
        work.take_in(Context(), scratch, str(tmp_path / "work.bundle"), "refs/bottle/diff", "x")  # needs base: borrowed
        assert "planted.txt" in git(Path(scratch), "diff", "--stat", base, tip)
    missing = subprocess.run(["git", "-C", str(user), "cat-file", "-e", tip], capture_output=True)
    assert missing.returncode != 0 and not Path(scratch).exists()
