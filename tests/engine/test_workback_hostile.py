"""`pull` and `diff` against an agent that attacks the operator's controller: it writes without
end into the execs bottle reads (a git hook, or a process of its uid holding the exec's
/proc/PID/fd/N), forges the snapshot line, hides text behind Unicode bidi controls.

What is checked is what reached the operator: the controller's peak memory (the `bottle`
process and its children, from wait4), the bytes it printed, the branch it wrote. One bottle
for the module, from a project folder of its own; each test undoes what it planted."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import labelled, module_state_home
from test_project_e2e import AGENT_ENV, BOTTLE, agent_sh, bottle, git, new_project, remove_workspace_images, volumes

from bottle_tasks.steps import work

pytestmark = pytest.mark.usefixtures("engine")

FLOOD = 256 << 20  # what the agent writes: held whole, the controller's memory grew by 2-3 times this
PEAK_LIMIT_KIB = 200 << 10  # `bottle diff` itself peaks at about 70 MiB


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    with module_state_home(tmp_path_factory, "workback-hostile") as (tmp, _):
        folder = new_project(tmp, "wbh")
        slug = folder.name
        try:
            bottle("launch", cwd=folder)
            yield folder
        finally:
            bottle("down", "--purge", cwd=folder, check=False)
            remove_workspace_images(slug)
            assert labelled(slug) == [] and not volumes(slug)


def measured(folder: Path, *args: str, env: dict | None = None) -> tuple[int, str, str, int]:
    """`bottle ARGS` in `folder`: (exit code, stdout, stderr, peak RSS in KiB of it and its children)."""
    out, err = folder.parent / "measured.out", folder.parent / "measured.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        run = subprocess.Popen([BOTTLE, *args], cwd=folder, env={**os.environ, **AGENT_ENV, **(env or {})},
                               stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(run.pid, 0)
        run.returncode = os.waitstatus_to_exitcode(status)
    return run.returncode, out.read_text(errors="replace"), err.read_text(errors="replace"), usage.ru_maxrss


def plant(slug: str, path: str, script: str) -> None:
    """An executable file of the agent's in its workspace's .git."""
    agent_sh(slug, f"cat > {path} <<'EOF'\n{script}EOF\nchmod +x {path}")


@pytest.mark.parametrize("engine_api", ["on", "off"])
def test_a_flood_into_the_snapshot_is_cut_off_not_held(project, engine_api):
    """git in the agent runs its fsmonitor hook for `git add -A`; the hook's stderr is the exec's.
    Over the engine's socket the controller held every byte until the exec ended (900 s); through
    the docker CLI (a remote Docker host, BOTTLE_ENGINE_API=off) invoke did, and grew slower
    with every chunk it read."""
    slug = project.name
    plant(slug, ".git/flood", f"#!/bin/sh\nhead -c {FLOOD} /dev/zero >&2\n")
    agent_sh(slug, "git config core.fsmonitor \"$PWD/.git/flood\"")
    try:
        code, _, err, peak = measured(project, "diff", env={"BOTTLE_ENGINE_API": engine_api})
    finally:
        agent_sh(slug, "git config --unset core.fsmonitor; rm -f .git/flood")
    assert peak < PEAK_LIMIT_KIB, f"the controller peaked at {peak >> 10} MiB"
    assert code == 1 and "taking a snapshot of the agent's work failed" in err, err[-3000:]
    assert "wrote more than 8 MiB" in err and len(err) < 10_000, err[-3000:]


def test_a_flood_on_the_bundles_stderr_is_cut_off_not_held(project):
    """The bundle's exec always runs through the docker CLI (its stdout goes to a file on the
    Docker host); a reference-transaction hook floods its stderr, which invoke held whole."""
    slug = project.name
    marker = "/tmp/bottle-test-flooded"
    plant(slug, ".git/hooks/reference-transaction",
          f"#!/bin/sh\n[ -e {marker} ] && exit 0\n: > {marker}\nhead -c {FLOOD} /dev/zero >&2\n")
    agent_sh(slug, f"rm -f {marker}; echo flood > flood.txt")
    branch = f"bottle/{slug}"
    try:
        code, _, err, peak = measured(project, "pull")
    finally:
        agent_sh(slug, f"rm -f .git/hooks/reference-transaction flood.txt {marker}")
    assert peak < PEAK_LIMIT_KIB, f"the controller peaked at {peak >> 10} MiB"
    assert code == 1 and "nothing was fetched" in err, err[-3000:]
    assert len(err) < 20_000, f"{len(err)} characters printed"
    assert subprocess.run(["git", "-C", str(project), "rev-parse", "-q", "--verify", branch],
                          capture_output=True).returncode != 0  # no branch made of it


def test_a_forged_base_does_not_hide_the_agents_edit_of_the_rules(project):
    """The agent edits bottle.yaml in one commit and adds another on top; a process of its uid then
    appends its own snapshot line to the exec's stdout, naming its first commit as the base. Taken
    at its word, `pull` saw no change to the rules and `diff` did not show it."""
    slug = project.name
    agent_sh(slug, "printf '    allow: [evil.example]\\n' >> bottle.yaml && git add bottle.yaml && git commit -qm 'agent: rules'"
                   " && echo more > more.txt && git add more.txt && git commit -qm 'agent: more'")
    edit, tip = agent_sh(slug, "git rev-parse HEAD~1 HEAD").split()
    forged = f"snapshot head={tip} tip={tip} base={edit} new=2 dirty=0 commits=1"
    # Run by git during the snapshot: holds the snapshot script's stdout open and, once the script
    # has printed its own line and ended, prints the forged one after it (the last one is read).
    plant(slug, ".git/forge", "#!/bin/sh\n"
          # the script's own shell: the oldest (its $(...) subshells hold other pipes)
          "script=$(grep -l bottle-snapsho[t] /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 | sort -n | head -n 1)\n"
          "[ -n \"$script\" ] || exit 0\n"
          f"(exec 3>/proc/$script/fd/1; while kill -0 $script 2>/dev/null; do sleep 0.05; done; echo '{forged}' >&3)"
          " </dev/null >/dev/null 2>&1 &\n")
    agent_sh(slug, "git config core.fsmonitor \"$PWD/.git/forge\"")
    try:
        pulled = bottle("pull", cwd=project)
        shown = bottle("diff", cwd=project).stdout
    finally:
        agent_sh(slug, "git config --unset core.fsmonitor; rm -f .git/forge")
    assert git(project, "rev-parse", f"bottle/{slug}") == tip  # the agent's work, fetched
    assert "the agent changed the bottle's own rules" in pulled.stderr and "bottle.yaml" in pulled.stderr, \
        pulled.stdout + pulled.stderr
    assert "+    allow: [evil.example]" in shown, shown


def test_bidi_controls_in_the_agents_diff_are_shown_not_obeyed(project):
    """A "Trojan Source" line: a right-to-left override makes the terminal show the code in another
    order than the one it runs in. `diff` prints what the operator reviews before a merge."""
    slug = project.name
    agent_sh(slug, "printf 'access = \"user\\342\\200\\256 \\342\\201\\246// admin\\342\\201\\251\\342\\201\\246\"\\n'"
                   " > trojan.py")
    try:
        code, out, err, _ = measured(project, "diff")
    finally:
        agent_sh(slug, "rm -f trojan.py")
    assert code == 0, err
    assert "\u202e" not in out and "\u2066" not in out and "\u2069" not in out, repr(out)
    assert '+access = "user\\u202e \\u2066// admin\\u2069\\u2066"' in out, out



def test_a_relaunch_that_keeps_the_container_takes_no_base_from_it(project):
    """`launch` remembers the workspace's HEAD as diff's base only for an agent container it
    created: one kept running from before has whatever HEAD the agent gave it since, and taken as
    the base it would hide the agent's own commits (an edit of bottle.yaml among them)."""
    slug = project.name
    bottle("launch", cwd=project)  # what changed in the project since (diff's fetches) is the agent's now
    state = Path(os.environ["XDG_STATE_HOME"]) / "bottle" / slug / "state.json"
    first = json.loads(state.read_text())
    recorded = first.pop("work_base")  # as after a first launch that had no commit to record
    assert recorded["commit"] == git(project, "rev-parse", "HEAD")
    state.write_text(json.dumps(first))
    start = agent_sh(slug, "git rev-parse HEAD").strip()
    agent_sh(slug, "git commit -q --allow-empty -m 'agent: a start of its own'")
    try:
        relaunched = bottle("launch", cwd=project)
        assert f"bottle-{slug}-agent already running" in relaunched.stderr, relaunched.stderr  # kept
        assert "work_base" not in json.loads(state.read_text()), relaunched.stderr
    finally:
        agent_sh(slug, f"git reset -q --hard {start}")
        kept = json.loads(state.read_text())
        state.write_text(json.dumps({**kept, "work_base": recorded}))


def test_a_bundle_larger_than_an_execs_output_bound_still_comes_back(project):
    """The bundle's stdout goes to a file on the Docker host (up to MAX_BUNDLE_BYTES), not into
    the controller's memory: the 8 MiB bound on what an exec's reader holds is not the bundle's."""
    slug = project.name
    branch = f"bottle/{slug}"
    start = agent_sh(slug, "git rev-parse HEAD").strip()
    agent_sh(slug, "head -c 12000000 /dev/urandom > big.bin && git add big.bin && git commit -qm 'agent: 12 MB'")
    tip = agent_sh(slug, "git rev-parse HEAD").strip()
    try:
        pulled = bottle("pull", cwd=project, check=False)
        assert pulled.returncode == 0, pulled.stderr[-3000:]
        # the agent's commit, under the snapshot of what it left uncommitted (the copied bottle.yaml)
        held = subprocess.run(["git", "-C", str(project), "merge-base", "--is-ancestor", tip, branch])
        assert held.returncode == 0, pulled.stderr[-3000:]
        assert git(project, "cat-file", "-s", f"{branch}:big.bin") == "12000000"
    finally:
        agent_sh(slug, f"git reset -q --hard {start}")
        subprocess.run(["git", "-C", str(project), "branch", "-q", "-D", branch], capture_output=True)


def test_a_diff_that_inflates_without_end_is_cut_not_held(project):
    """A bundle is bounded in bytes of zlib, and zlib turns 1 KiB into 1 MiB: 160 MB of one
    repeated line comes back in a few hundred KiB, and its diff is 160 MB of text. `diff` held
    all of it (2-3 times over) before printing the first line."""
    slug = project.name
    line = "x" * 999
    agent_sh(slug, f"yes {line} | head -c 160000000 > inflated.txt")
    try:
        code, out, err, peak = measured(project, "diff")
    finally:
        agent_sh(slug, "rm -f inflated.txt")
    assert peak < PEAK_LIMIT_KIB, f"the controller peaked at {peak >> 10} MiB"
    assert code == 0, err[-3000:]
    assert "+++ b/inflated.txt" in out and f"+{line}" in out, out[:3000]
    assert work.DIFF_SHOWN_LIMIT * 0.9 < len(out) < work.DIFF_SHOWN_LIMIT * 1.1, len(out)  # the cut, shown
    assert "the diff is longer than 8 MiB: the rest is not shown" in err, err[-3000:]


# The agent's index written byte by byte (format 2), with one entry more than git would ever
# make: `../workspace/bottle.yaml`, beside the entries `git ls-files -s` listed.
HAND_MADE_INDEX = """
import hashlib, struct
entries = [line.split(None, 3) for line in open("/tmp/entries").read().splitlines()]
entries = [(int(mode, 8), bytes.fromhex(oid), path.encode()) for mode, oid, _, path in entries]
blob = next(oid for _, oid, path in entries if path == b"bottle.yaml")
entries.append((0o100644, blob, b"../workspace/bottle.yaml"))
out = b"DIRC" + struct.pack(">II", 2, len(entries))
for mode, oid, path in sorted(entries, key=lambda e: e[2]):
    entry = struct.pack(">10I", 0, 0, 0, 0, 0, 0, mode, 0, 0, 0) + oid + struct.pack(">H", len(path)) + path
    out += entry + b"\\0" * (8 - len(entry) % 8)
open(".git/index", "wb").write(out + hashlib.sha1(out).digest())
""".replace("'", "")


def test_a_path_outside_the_repository_in_the_agents_tree_stops_the_pull(project):
    """The agent edits bottle.yaml and writes its own git index with one more entry, for the
    same file as `../workspace/bottle.yaml` (git never makes such a path; it reads one). Its
    snapshot kept it, git fetched it, and pull's check of the rule files then failed on it after
    the branch had moved, never naming the bottle.yaml the agent changed."""
    slug = project.name
    branch = f"bottle/{slug}"
    start = agent_sh(slug, "git rev-parse HEAD").strip()
    before = branch_tip(project, branch)
    agent_sh(slug, "printf '    allow: [evil.example]\\n' >> bottle.yaml && git add bottle.yaml"
                   f" && git ls-files -s > /tmp/entries && python3 -c '{HAND_MADE_INDEX}'")
    try:
        pulled = bottle("pull", cwd=project, check=False)
        assert pulled.returncode == 1 and "paths git never writes: '../workspace/bottle.yaml'" in pulled.stderr, \
            pulled.stdout + pulled.stderr
        assert branch_tip(project, branch) == before  # not moved, nor made
    finally:
        agent_sh(slug, f"rm -f .git/index && git reset -q --hard {start}")


def branch_tip(project: Path, branch: str) -> str:
    return subprocess.run(["git", "-C", str(project), "rev-parse", "-q", "--verify", branch],
                          capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
