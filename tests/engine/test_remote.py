"""Fabric: the whole chain against a "remote" Docker host over SSH — a real sshd on
loopback, reached with a key held by a real ssh-agent. Stage files travel by SFTP."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
from helpers import docker, interrupted_at_event, inv, labelled, missing, unique, write_manifest

pytestmark = pytest.mark.usefixtures("engine")
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def known_host_line(port: int, public_key) -> str:
    """The known_hosts line for the loopback sshd on `port` with the key in `public_key`."""
    key_type, key = open(public_key).read().split()[:2]
    return f"[127.0.0.1]:{port} {key_type} {key}\n"


@contextlib.contextmanager
def loopback_sshd(work, *options: str):
    """(user@host:port, env with SSH_AUTH_SOCK) for a sshd on 127.0.0.1; `options` are more
    `-o` settings of the sshd."""
    if not os.path.exists(SSHD):
        missing("sshd is not installed (apt-get install openssh-server; `make test` does it)")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", work / "host_key"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", work / "client_key"], check=True)
    shutil.copy(work / "client_key.pub", work / "authorized_keys")
    os.makedirs("/run/sshd", exist_ok=True)
    port = free_port()
    sshd = subprocess.Popen([SSHD, "-D", "-e", "-p", str(port), "-o", "ListenAddress=127.0.0.1",
                             "-h", str(work / "host_key"), "-o", f"AuthorizedKeysFile={work}/authorized_keys",
                             "-o", "StrictModes=no", "-o", "PasswordAuthentication=no",
                             "-o", "PermitRootLogin=prohibit-password", "-o", f"PidFile={work}/sshd.pid",
                             *(arg for option in options for arg in ("-o", option))],
                            stderr=open(work / "sshd.log", "w"))
    agent = subprocess.run(["ssh-agent", "-s", "-a", str(work / "agent.sock")], capture_output=True, text=True,
                           check=True)
    agent_pid = int(agent.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])
    env = {"SSH_AUTH_SOCK": str(work / "agent.sock")}
    subprocess.run(["ssh-add", "-q", work / "client_key"], env={**os.environ, **env}, check=True)
    for _ in range(50):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    # The host's key is recorded as `ssh` would record it once accepted: bottle refuses a host
    # whose key is in no known_hosts file. The config names this file, never the user's own.
    (work / "known_hosts").write_text(known_host_line(port, work / "host_key.pub"))
    (work / "ssh_config").write_text(f"UserKnownHostsFile {work}/known_hosts\nGlobalKnownHostsFile none\n")
    env["BOTTLE_SSH_CONFIG"] = str(work / "ssh_config")
    try:
        yield f"root@127.0.0.1:{port}", env
    finally:
        sshd.terminate()
        sshd.wait(10)
        os.kill(agent_pid, 15)


@pytest.fixture(scope="module")
def ssh(tmp_path_factory):
    with loopback_sshd(tmp_path_factory.mktemp("sshd")) as found:
        yield found


def test_launch_and_down_on_a_remote_docker_host(ssh, tmp_path, state_home):
    remote, env = ssh
    slug = unique("rem")
    # A base image of its own name gives the agent image a tag of its own, so `build`
    # really sends a build context over SSH (Docker's layer cache keeps it quick).
    base = f"bottle-test/base:{slug}"
    docker("tag", "debian:bookworm-slim", base)
    manifest = write_manifest(tmp_path, {slug: "    prompt: remote test\n    network: {allow: [example.org]}"},
                              extra=f"images: {{base: '{base}'}}\n")
    try:
        out = inv("use", slug, "--on", remote, "launch", manifest=manifest, env=env)
    finally:
        docker("rmi", base, check=False)
    assert "ready" in out.stdout, out.stderr
    assert "built agent" in out.stderr, out.stderr
    state = json.loads((state_home / "bottle" / slug / "state.json").read_text())  # the controller keeps it
    stage = state["resources"]["stage"]
    assert stage.startswith("/root/.local/state/bottle/"), stage  # the stage dir lives on the Docker host
    mode = subprocess.run(["stat", "-c", "%a", f"{stage}/firewall/mitmproxy-ca.pem"], capture_output=True, text=True)
    assert mode.stdout.strip() == "600"
    for directory in (stage, os.path.dirname(stage)):
        assert oct(os.stat(directory).st_mode & 0o777) == "0o700", directory
    agent_image = docker("inspect", "-f", "{{.Config.Image}}", f"bottle-{slug}-agent").stdout.strip()
    agent = docker("exec", f"bottle-{slug}-agent", "cat", "/home/agent/.claude/CLAUDE.md")
    assert "remote test" in agent.stdout
    refused = inv("use", slug, "--on", remote, "exec", "curl -sS https://example.com/", manifest=manifest,
                  env=env, check=False)
    assert refused.returncode != 0 and "403" in refused.stderr + refused.stdout
    inv("use", slug, "--on", remote, "down", manifest=manifest, env=env)
    assert labelled(slug) == []
    assert not os.path.exists(os.path.dirname(stage))  # nothing left on the Docker host
    docker("rmi", agent_image, check=False)  # built for this test's own base only


# net and ca, proxy, agent, provision, the readiness wait: by the engine's events (of the same
# engine here), as test_interrupts.EVENTS
EVENTS = (1, 3, 5, 11, 14)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c twice", "sigterm twice"])
def test_a_stop_into_a_remote_launch_leaves_nothing(ssh, tmp_path, state_home, trust_bundle, signum):
    """Over SSH a Ctrl-C does not reach the Docker host's commands (they finish there) and
    Fabric hands it to us at once: the rollback, over the same connection, must still find and
    remove all that was made, wherever the launch was. SIGTERM (to `inv` alone, as `kill` or a
    CI runner sends it) must do the same: Fabric raises it like a Ctrl-C."""
    remote, env = ssh
    slug = unique("rint")
    manifest = write_manifest(tmp_path, {slug: "    prompt: t\n    network: {allow: [example.org]}"},
                              bundle=str(trust_bundle))
    use = ("use", slug, "--on", remote)
    stopped = 128 + signum
    try:
        inv(*use, "build", manifest=manifest, env=env)  # warm: the launches below start at once
        outcomes = []
        for nth in EVENTS:
            code, err, seen = interrupted_at_event([*use, "launch"], manifest, slug, nth, twice=True, env=env,
                                                   signum=signum)
            outcomes.append(code)
            assert "Traceback" not in err and "rollback:" not in err, err
            if code == 0:  # finished before the signal
                inv(*use, "down", manifest=manifest, env=env)
            else:
                assert code == stopped, f"exit {code} after the events {seen}:\n{err}"
            assert labelled(slug) == [], f"left behind after {signum!r} at the event {nth} of a launch: {labelled(slug)}\n{err}"
        print(f"{signal.Signals(signum).name} twice into a remote launch, at the events {EVENTS}:", outcomes)
        assert outcomes[0] == stopped, f"a stop as the first network was made did not stop the launch: {outcomes}"
    finally:
        inv(*use, "down", manifest=manifest, env=env, check=False)


def test_supervise_requests_are_decided_on_a_remote_docker_host(ssh, tmp_path, state_home):
    """The operator's commands reach the sidecar through `docker exec` over SSH."""
    from test_supervise import CLIENT

    remote, env = ssh
    slug = unique("rsup")
    manifest = write_manifest(tmp_path, {slug: "    prompt: remote supervise\n    network: {allow: [example.org]}\n"
                                               "    supervise: {enabled: true, timeout: 60}"})

    def on_remote(*args, check=True):
        return inv("use", slug, "--on", remote, *args, manifest=manifest, env=env, check=check)

    try:
        on_remote("launch")
        image = docker("inspect", "-f", "{{.Config.Image}}", f"bottle-{slug}-supervise").stdout.strip()
        call = subprocess.Popen(["docker", "run", "--rm", "--label", "bottle.test=1", "--network",
                                 f"bottle-{slug}-net-internal", "--entrypoint", "/opt/bottle/venv/bin/python", image,
                                 "-c", CLIENT, "request_host", json.dumps({"host": "pypi.org", "reason": "remote"})],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        request = None
        for _ in range(60):
            found = [r for r in json.loads(on_remote("requests", "--json").stdout) if r["state"] == "pending"]
            if found:
                request = found[0]
                break
            time.sleep(0.5)
        assert request and request["what"] == {"host": "pypi.org"} and request["bottle"] == slug
        on_remote("approve", request["id"], "--note", "from afar")
        out, err = call.communicate(timeout=60)
        assert json.loads(out.strip().splitlines()[-1])["status"] == "approved", err
        view = docker("exec", f"bottle-{slug}-agent", "cat", "/etc/bottle/current/policy.json").stdout
        assert "pypi.org" in json.loads(view)["allow"]
    finally:
        on_remote("down", check=False)
    assert labelled(slug) == []


def test_the_git_gate_on_a_remote_docker_host(ssh, tmp_path, state_home, test_ca, trust_bundle):
    """Clone and push through the gate of a bottle launched with --on: the gate's stage
    files (its token among them) travel by SFTP, and the token stays in the gate."""
    from test_gitgate import TOKEN, URL, body, start_git_upstream

    from bottle_tasks.manifest import load
    from bottle_tasks.plan import build_plan

    remote, env = ssh
    slug = unique("rgate")
    manifest = write_manifest(tmp_path, {slug: body("10.255.255.0/24")}, bundle=str(trust_bundle))
    env = {**env, "GIT_TOKEN": TOKEN}

    def on_remote(*args, check=True):
        return inv("use", slug, "--on", remote, *args, manifest=manifest, env=env, check=check)

    upstream = None
    try:
        on_remote("net")
        cidr = json.loads((state_home / "bottle" / slug / "state.json").read_text())["cidr"]["net-egress"]
        manifest.write_text(manifest.read_text().replace("10.255.255.0/24", cidr))
        on_remote("build")
        loaded = load(str(manifest))
        gate_image = build_plan(slug, loaded, loaded.agents[slug]).images["gitgate"].tag
        upstream = start_git_upstream(test_ca, tmp_path, f"bottle-{slug}-net-egress", gate_image)
        on_remote("launch")
        agent = f"bottle-{slug}-agent"
        script = (f"git clone -q {URL} ~/repo && cd ~/repo && git config user.email a@b.invalid && "
                  "git config user.name agent && git checkout -qb review/remote && echo hi > remote.txt && "
                  "git add remote.txt && git commit -qm remote && git push -q origin review/remote 2>&1")
        out = docker("exec", agent, "sh", "-c", script, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        pushed = docker("exec", upstream, "git", "--git-dir=/tmp/upstream/org/repo.git", "rev-parse", "-q",
                        "--verify", "refs/heads/review/remote", check=False).stdout.strip()
        assert pushed and pushed == docker("exec", agent, "git", "-C", "/home/agent/repo", "rev-parse", "HEAD").stdout.strip()
        assert TOKEN not in docker("exec", agent, "env").stdout
    finally:
        on_remote("down", check=False)
        if upstream:
            docker("rm", "-f", upstream, check=False)
    assert labelled(slug) == []


def spoofed_host_gets_nothing(ssh, tmp_path, known_hosts: str, refusal: str) -> None:
    """`--on` a host whose key is not the recorded one: bottle must refuse before it logs in,
    so the host sees no authentication and receives no stage file (the CA key here, the
    operator's API keys in a launch)."""
    remote, env = ssh
    work = os.path.dirname(env["SSH_AUTH_SOCK"])  # the fixture's folder: sshd's log is there
    (tmp_path / "known_hosts").write_text(known_hosts)
    config = tmp_path / "ssh_config"
    config.write_text(f"UserKnownHostsFile {tmp_path}/known_hosts\nGlobalKnownHostsFile none\n")
    slug = unique("rkey")
    manifest = write_manifest(tmp_path, {slug: "    prompt: t\n    network: {allow: [example.org]}"})
    logins_before = open(f"{work}/sshd.log").read().count("Accepted publickey")
    on = {**env, "BOTTLE_SSH_CONFIG": str(config)}
    try:
        refused = inv("use", slug, "--on", remote, "ca", manifest=manifest, env=on, check=False)
        assert refused.returncode != 0 and refusal in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr, refused.stderr
        assert not os.path.exists(f"/root/.local/state/bottle/{slug}")  # the loopback host is this machine
        assert open(f"{work}/sshd.log").read().count("Accepted publickey") == logins_before
    finally:
        inv("use", slug, "--on", remote, "down", manifest=manifest, env=env, check=False)


def test_a_host_whose_key_changed_gets_nothing(ssh, tmp_path, state_home):
    remote, _env = ssh
    port = int(remote.rsplit(":", 1)[1])
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "other_key"], check=True)
    spoofed_host_gets_nothing(ssh, tmp_path, known_host_line(port, tmp_path / "other_key.pub"), "does not match")


def test_a_host_whose_key_is_unknown_gets_nothing(ssh, tmp_path, state_home):
    spoofed_host_gets_nothing(ssh, tmp_path, "", "in no known_hosts file")


def test_a_user_without_a_home_gets_no_stage_dir_in_tmp(tmp_path, state_home):
    """A Docker host whose user has no $HOME: the stage files must not fall back to a
    directory every user there can write (/tmp), where another user could own the path first
    and read the CA and API keys written into it. bottle refuses, and nothing is written."""
    slug = unique("rhome")
    manifest = write_manifest(tmp_path, {slug: "    prompt: t\n    network: {allow: [example.org]}"})
    (tmp_path / "sshd").mkdir()
    with loopback_sshd(tmp_path / "sshd", "SetEnv=HOME=") as (remote, env):
        try:
            refused = inv("use", slug, "--on", remote, "ca", manifest=manifest, env=env, check=False)
            assert refused.returncode != 0 and "not an absolute path" in refused.stderr, refused.stderr
            assert "Traceback" not in refused.stderr, refused.stderr
            assert not os.path.exists(f"/tmp/.local/state/bottle/{slug}")  # the loopback host is this machine
        finally:
            inv("use", slug, "--on", remote, "down", manifest=manifest, env=env, check=False)
            shutil.rmtree(f"/tmp/.local/state/bottle/{slug}", ignore_errors=True)


def test_a_host_that_cannot_be_reached_or_logged_into_is_said_with_its_fix(ssh, tmp_path, state_home):
    """A port where no sshd listens, and a user the host refuses: each said in the operator's
    words, with what to check, not as a socket's or paramiko's error on a docker command."""
    remote, env = ssh
    port = remote.rsplit(":", 1)[1]
    slug = unique("rreach")
    manifest = write_manifest(tmp_path, {slug: "    prompt: t\n    network: {allow: [example.org]}"})
    for on, said in ((f"root@127.0.0.1:{free_port()}", "error: cannot reach root@127.0.0.1 over SSH"),
                     (f"nosuchuser@127.0.0.1:{port}", "error: nosuchuser@127.0.0.1 refused the SSH login")):
        refused = inv("use", slug, "--on", on, "net", manifest=manifest, env=env, check=False)
        assert refused.returncode != 0 and said in refused.stderr, refused.stderr
        assert "`ssh USER@HOST true` must work" in refused.stderr and "could not run" not in refused.stderr
        assert "Traceback" not in refused.stderr, refused.stderr
    assert labelled(slug) == []
