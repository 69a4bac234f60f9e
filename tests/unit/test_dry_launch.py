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


def test_a_missing_secret_stops_a_launch_before_it_builds_or_creates_anything(tmp_path, state_home):
    manifest = write_manifest(tmp_path, {"routed": (
        "    prompt: p\n    secrets: [ROUTE_KEY_UNSET]\n    network: {allow: [api.example.org]}\n    egress_proxy:\n"
        "      routes: [{host: api.example.org, inject: [{header: x-api-key, secret: ROUTE_KEY_UNSET}]}]")})
    # No engine answers here: any docker command would fail with an error of its own.
    out = inv("use", "routed", "launch", manifest=manifest, check=False,
              env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "agents.routed.egress_proxy: the secret(s) ROUTE_KEY_UNSET are not set in this shell" in text
    assert "export ROUTE_KEY_UNSET=..." in text
    assert "✗ secrets" in text and "✓" not in text  # the first step, and nothing ran before it
    assert "docker" not in text.lower()


def test_a_secret_with_a_line_break_stops_a_launch_before_it_builds_or_creates_anything(tmp_path, state_home):
    """A value read from a file keeps its trailing newline; the egress proxy refused it, after the
    images were built and the firewall started."""
    manifest = write_manifest(tmp_path, {"routed": (
        "    prompt: p\n    secrets: [ROUTE_KEY]\n    network: {allow: [api.example.org]}\n    egress_proxy:\n"
        "      routes: [{host: api.example.org, inject: [{header: x-api-key, secret: ROUTE_KEY}]}]")})
    out = inv("use", "routed", "launch", manifest=manifest, check=False,
              env={"ROUTE_KEY": SECRET + "\n", "DOCKER_HOST": "unix:///nonexistent.sock"})
    text = out.stdout + out.stderr
    assert out.returncode == 1 and "the secret ROUTE_KEY holds a line break" in text, text
    assert "✗ secrets" in text and "✓" not in text and SECRET not in text


def test_an_empty_on_never_means_the_local_engine(tmp_path, state_home):
    manifest = write_manifest(tmp_path, {"drybot": "    prompt: p\n    network: {allow: [example.org]}"})
    out = inv("use", "drybot", "--on", "", "status", manifest=manifest, check=False,
              env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert out.returncode == 1 and "--on names no host" in out.stderr, out.stdout + out.stderr
