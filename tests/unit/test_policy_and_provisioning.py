"""Pure renderers: the firewall's policy.json and what provisioning puts in the agent."""
from __future__ import annotations

import io
import json
import subprocess
import tarfile

from helpers import write_manifest

from bottle_tasks import docker, policy_render, provisioning
from bottle_tasks.manifest import load
from bottle_tasks.provisioning import PLACEHOLDER
from bottle_tasks.steps.agent import agent_env, env_file_text

BODY = """    prompt: "Be careful."
    secrets: [API_KEY]
    env: {GREETING: hello}
    claude:
      permissions: {allow: [Read], deny: [WebFetch]}
      mcp_servers: {notes: {command: notes-server, args: [--stdio], env: {NOTES_DIR: /workspace/notes}}}
    network:
      allow: [api.example.com, "*.pypi.org"]
      passthrough: [files.pypi.org]
      allowed_cidrs: [10.9.0.0/16]
      dlp: {hosts: {api.example.com: warn}, patterns: [{name: itk, regex: "itk_[a-z]{8}"}]}
    egress_proxy:
      routes:
        - host: api.example.com
          inject: [{header: X-Api-Key, secret: API_KEY}]
"""


def agent(tmp_path):
    return load(str(write_manifest(tmp_path, {"demo": BODY}))).agents["demo"]


def test_policy_render(tmp_path):
    rendered = policy_render.render("demo", agent(tmp_path), "172.30.0.0/16", {})
    assert rendered["allow"] == ["api.example.com", "*.pypi.org"]
    assert rendered["passthrough"] == ["files.pypi.org"]  # covered by the wildcard
    assert rendered["allowed_cidrs"] == ["10.9.0.0/16", "172.30.0.0/16"]
    assert rendered["dlp"]["exempt_headers"] == {"api.example.com": ["x-api-key"]}
    assert rendered["dlp"]["patterns"] == [{"name": "itk", "regex": "itk_[a-z]{8}"}]
    assert rendered["dlp"]["hosts"] == {"api.example.com": "warn"}


def test_live_changes_apply_and_deny_wins(tmp_path):
    a = agent(tmp_path)
    rendered = policy_render.render("demo", a, None, {"allow": ["example.org"], "deny": ["*.pypi.org"]})
    assert rendered["allow"] == ["api.example.com", "example.org"]
    assert rendered["passthrough"] == []  # nothing covers it any more


def test_agent_env_holds_placeholders_never_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("API_KEY", "real-secret-value")

    class FakeBottle:
        slug = "demo"
        plan = type("P", (), {"proxy_url": "http://egress:8080"})()

    FakeBottle.agent = agent(tmp_path)
    env = agent_env(FakeBottle)
    text = env_file_text(env)
    assert "real-secret-value" not in text
    assert env["API_KEY"] == PLACEHOLDER and env["GREETING"] == "hello"
    assert env["HTTPS_PROXY"] == "http://egress:8080" and "firewall" in env["NO_PROXY"]


def test_provision_tar_owners_and_content(tmp_path):
    a = agent(tmp_path)
    data = provisioning.tarball(provisioning.files(a, "-----BEGIN CERTIFICATE-----\nAAA\n", "http://firewall:3128"))
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = {m.name: m for m in archive.getmembers()}
        read = lambda name: archive.extractfile(members[name]).read().decode()
        # nothing is extracted into the agent's home: its files are staged, root-owned
        assert not any(name.startswith("home/") for name in members)
        assert members["opt/bottle/agent-files/.claude.json"].uid == 0
        assert members["usr/local/share/ca-certificates/bottle-ca.crt"].uid == 0
        assert members["opt/bottle/provision.sh"].mode == 0o755
        place = read("opt/bottle/place.sh")
        # Claude Code's own state is merged into (it lives in the home volume), never replaced.
        assert "merge /opt/bottle/agent-files/.claude.json /home/agent/.claude.json 600" in place
        assert "place /opt/bottle/agent-files/.claude/CLAUDE.md /home/agent/.claude/CLAUDE.md 644" in place
        state = json.loads(read("opt/bottle/agent-files/.claude.json"))
        assert state["hasCompletedOnboarding"] is True
        assert state["mcpServers"] == {"notes": {"command": "notes-server", "args": ["--stdio"],
                                                 "env": {"NOTES_DIR": "/workspace/notes"}}}
        settings = json.loads(read("etc/claude-code/managed-settings.json"))
        assert settings["permissions"] == {"allow": ["Read"], "deny": ["WebFetch"]}
        assert members["etc/claude-code/managed-settings.json"].uid == 0  # the agent cannot edit it
        assert read("opt/bottle/agent-files/.claude/CLAUDE.md").startswith("Be careful.")
        assert "email = agent@bottle.invalid" in read("opt/bottle/agent-files/.gitconfig")
    # No parent directories are in the tar: they keep their owners.
    assert "opt/bottle" not in members and "usr" not in members


def test_maven_settings_name_the_bottle_proxy(tmp_path):
    entries = {path: data for path, data, *_ in provisioning.files(agent(tmp_path), "ca", "http://egress:8080")}
    settings = entries[provisioning.MAVEN_STAGED].decode()
    assert "<host>egress</host>" in settings and "<port>8080</port>" in settings
    assert "<protocol>http</protocol>" in settings


def test_toolchain_env_points_every_toolchain_at_the_bundle_and_proxy():
    from bottle_tasks import toolchains

    env = toolchains.env("http://firewall:3128", ["localhost", "firewall"],
                         {"NODE_OPTIONS": "--max-old-space-size=512", "JAVA_TOOL_OPTIONS": "-Xmx1g"})
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE", "CARGO_HTTP_CAINFO",
                 "DENO_CERT", "GIT_SSL_CAINFO"):
        assert env[name] == toolchains.CA_BUNDLE, name
    assert env["https_proxy"] == env["HTTPS_PROXY"] == env["http_proxy"] == "http://firewall:3128"
    assert env["no_proxy"] == env["NO_PROXY"] == "localhost,firewall"
    # the manifest's own options are kept, after bottle's (a later -D wins in the JVM)
    assert env["NODE_OPTIONS"] == f"--require {toolchains.NODE_PRELOAD} --max-old-space-size=512"
    java = env["JAVA_TOOL_OPTIONS"]
    assert "-Dhttps.proxyHost=firewall" in java and "-Dhttps.proxyPort=3128" in java
    assert "-Dhttp.nonProxyHosts=localhost|firewall" in java and java.endswith(" -Xmx1g")
    assert f"-Djavax.net.ssl.trustStore={toolchains.JAVA_TRUSTSTORE}" in java


def test_seed_phrase_rule_is_off_on_a_routed_model_host_only(tmp_path):
    from bottle_tasks.manifest import load
    from bottle_tasks.policy_render import render

    path = tmp_path / "m.yaml"
    path.write_text("""version: 1
agents:
  a:
    prompt: p
    secrets: [ANTHROPIC_API_KEY, GH]
    network: {allow: [api.anthropic.com, api.github.com]}
    egress_proxy:
      routes:
        - {host: api.anthropic.com, inject: [{header: x-api-key, secret: ANTHROPIC_API_KEY}]}
        - {host: api.github.com, inject: [{header: authorization, secret: GH, format: "Bearer {secret}"}]}
""")
    agent = load(str(path)).agents["a"]
    doc = render("a", agent, "172.30.1.0/24", {}, "172.30.2.0/24")
    assert doc["dlp"]["rules_off"] == {"api.anthropic.com": ["seed-phrase"]}
    assert doc["dlp"]["exempt_sources"] == ["172.30.2.0/24"]
    assert doc["dlp"]["exempt_headers"] == {"api.anthropic.com": ["x-api-key"], "api.github.com": ["authorization"]}


def test_claude_state_carries_the_mcp_servers_as_written(tmp_path):
    """Nested fields (args, env) are frozen in the manifest model; Claude's state is JSON."""
    state = json.loads(json.dumps(provisioning.claude_state(agent(tmp_path))))
    assert state["mcpServers"]["notes"] == {"command": "notes-server", "args": ["--stdio"],
                                            "env": {"NOTES_DIR": "/workspace/notes"}}


def test_an_unconfirmed_deny_stays_recorded_and_says_the_host_may_still_pass():
    from bottle_tasks.errors import BottleError
    from bottle_tasks.steps.allow import unconfirmed

    error = unconfirmed("bottle-demo-firewall", "deny", "example.org",
                        BottleError("bottle-demo-firewall did not confirm the policy reload within 10s", "log tail"))
    assert error.message == "deny example.org: bottle-demo-firewall did not confirm the policy reload within 10s"
    assert error.detail.startswith("log tail\n") and "may still allow example.org" in error.detail
    assert "stays recorded" in error.detail


def test_commands_the_agent_can_hold_up_are_ended():
    """The agent can stop place.sh or git (its own uid): the docker exec waiting for it would
    wait for ever. `bounded` ends it on the Docker host after its time, and says which one."""
    held = subprocess.run(docker.bounded(["sh", "-c", "kill -STOP $$"], "place.sh (the agent)", seconds=1),
                          capture_output=True, text=True, timeout=60)
    assert held.returncode == 124
    assert held.stderr.startswith("place.sh (the agent) did not end within 1 s")
    failed = subprocess.run(docker.bounded(["sh", "-c", "echo refused >&2; exit 3"], "x", 60), capture_output=True, text=True)
    assert (failed.returncode, failed.stderr) == (3, "refused\n")  # its own exit and error, unchanged
