"""Claude Code's state survives: the agent's home is a labelled volume that a relaunch of
the same bottle mounts again (after `down`, or when the container is replaced); `down`
keeps it, `down --purge` removes it, `status` shows it; provisioning still sets the
manifest's keys and managed settings on top of what the agent kept."""
from __future__ import annotations

import json

import pytest
from helpers import docker, inv, labelled, unique, write_manifest

pytestmark = pytest.mark.usefixtures("engine")


def volume_labels(name: str) -> dict | None:
    result = docker("volume", "inspect", "--format", "{{json .Labels}}", name, check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def test_claude_state_survives_a_relaunch(tmp_path, state_home, trust_bundle):
    slug = unique("cs")
    manifest = write_manifest(tmp_path, {slug: "    prompt: remember me\n    resources: {memory: 1g}"},
                              bundle=str(trust_bundle))
    volume = f"bottle-{slug}-home"
    agent = f"bottle-{slug}-agent"

    def run(*args, check=True):
        return inv("use", slug, *args, manifest=manifest, check=check)

    def sh(command: str) -> str:
        return docker("exec", agent, "bash", "-c", command).stdout

    try:
        run("launch")
        assert volume_labels(volume) == {"bottle.slug": slug, "bottle.role": "home", "bottle.managed": "1",
                                         "bottle.manifest": str(manifest)}  # never mounted for another
        # Claude Code's own state, as a session leaves it: history, a project, its own settings.
        sh("echo '{\"display\":\"hello\"}' >> ~/.claude/history.jsonl && mkdir -p ~/.claude/projects/-workspace "
           "&& echo '{}' > ~/.claude/projects/-workspace/s1.jsonl && echo '{\"theme\":\"dark\"}' > ~/.claude/settings.json "
           "&& jq '.numStartups = 7 | .hasCompletedOnboarding = false' ~/.claude.json > /tmp/c && cat /tmp/c > ~/.claude.json")
        status = json.loads(run("status", "--json").stdout)["bottles"][slug]
        assert status["volumes"] == [{"name": volume, "role": "home"}]

        out = run("down")
        assert f"kept {volume}" in out.stdout + out.stderr
        assert docker("ps", "-a", "--filter", f"name={agent}", "--format", "{{.Names}}").stdout.strip() == ""
        assert volume_labels(volume) is not None
        # After down: listed with its bottle, not as an orphan.
        report = json.loads(run("status", "--json").stdout)
        assert report["bottles"][slug]["volumes"] == [{"name": volume, "role": "home"}]
        assert not [o for o in report["orphans"] if o["slug"] == slug]

        run("launch")  # a new container on the same home
        assert '"display":"hello"' in sh("cat ~/.claude/history.jsonl")
        assert sh("ls ~/.claude/projects/-workspace").split() == ["s1.jsonl"]
        assert json.loads(sh("cat ~/.claude/settings.json")) == {"theme": "dark"}
        state = json.loads(sh("cat ~/.claude.json"))
        assert state["numStartups"] == 7                 # the agent's own state kept ...
        assert state["hasCompletedOnboarding"] is True   # ... the manifest's keys set on top
        assert "remember me" in sh("cat ~/.claude/CLAUDE.md")
        assert "permissions" in json.loads(sh("cat /etc/claude-code/managed-settings.json"))
        assert sh("stat -c %U ~ ~/.claude ~/.claude.json").split() == ["agent"] * 3

        out = run("down", "--purge")
        assert volume_labels(volume) is None
        assert not labelled(slug)
    finally:
        run("down", "--purge", check=False)
        docker("volume", "rm", volume, check=False)
