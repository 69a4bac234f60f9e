"""`inv --dry launch` issues no docker command, and shows the ones a launch would run:
none of them carries a secret or key material on its command line."""
from __future__ import annotations

from helpers import inv, write_manifest

SECRET = "sk-ant-api03-" + "x" * 40


def test_dry_launch_prints_commands_without_secrets(tmp_path, state_home):
    manifest = write_manifest(tmp_path, {"drybot": "    prompt: p\n    secrets: [ANTHROPIC_API_KEY]\n"
                                                   "    network: {allow: [example.org]}"})
    out = inv("--dry", "use", "drybot", "launch", manifest=manifest,
              env={"ANTHROPIC_API_KEY": SECRET, "DOCKER_HOST": "unix:///nonexistent.sock"})
    text = out.stdout + out.stderr
    runs = [line for line in text.splitlines() if line.startswith("dry: docker create")]
    assert len(runs) == 2  # firewall, agent
    agent_run = next(line for line in runs if "bottle-drybot-agent " in line)
    for flag in ("--cap-drop ALL", "no-new-privileges", "--network bottle-drybot-net-internal",
                 "--dns 192.0.2.53", "--env-file", "--pids-limit", "--memory", "--init"):
        assert flag in agent_run, flag
    assert "--env " not in agent_run  # everything through the 0600 env file
    assert SECRET not in text and "PRIVATE KEY" not in text
    assert "ready bottle drybot" in text
    assert not (state_home / "bottle" / "drybot").exists()  # a dry run leaves nothing
