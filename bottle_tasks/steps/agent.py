"""`agent` and `provision`: the agent container, on the internal network only, and
what goes into it (CA trust, git identity, Claude Code settings, the prompt)."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from invoke import Collection, task

from .. import containers, docker, home, provisioning, supervision, toolchains
from ..containers import start
from ..errors import BottleError
from ..plan import EGRESS_ALIAS, FIREWALL_ALIAS, SUPERVISE_ALIAS
from ..selection import current
from ..stepping import step
from .build import build
from .egress import egress
from .gitgate import gitgate
from .proxy import proxy
from .secrets import secrets
from .supervise import supervise

if TYPE_CHECKING:
    from ..selection import Bottle

# Docker's embedded DNS (127.0.0.11) answers sidecar names itself and forwards
# every other name to the container's upstream resolvers. Engines before 25.0.5
# forward even from --internal networks, from the host's namespace
# (CVE-2024-29018): a query for <data>.attacker.example is an exfiltration
# channel. The upstream is set to an address where no resolver can ever answer:
# TEST-NET-1 (RFC 5737) is never routed. Not 127.0.0.1: Docker forwards to a
# loopback --dns from the *host's* namespace, where a local resolver may listen.
DEAD_RESOLVER = "192.0.2.53"

# How long provisioning's two execs may take (~1 s; a JDK's truststore a few). The agent can
# hold up the one that runs as its own uid (SIGSTOP it, or a FIFO where it writes): without a
# bound the launch waited for ever, holding the bottle's lock (docker.bounded).
PROVISION_WAIT = 120


def agent_env(bottle: Bottle) -> dict[str, str]:
    """The agent's environment: manifest env, proxy settings, CA paths, and at most
    a placeholder for each secret (the real values never enter the agent)."""
    agent, proxy_url = bottle.agent, bottle.plan.proxy_url
    # supervise is reached directly: a request is held open for minutes, longer than a proxy would wait.
    no_proxy = ",".join(["localhost", "127.0.0.1", "::1", FIREWALL_ALIAS, EGRESS_ALIAS, SUPERVISE_ALIAS])
    env = dict(agent.env)
    env.update({name: provisioning.PLACEHOLDER for name in agent.secrets})
    # Proxy and CA for every toolchain, each by the variable it reads (docs/toolchains.md).
    env.update(toolchains.env(proxy_url, no_proxy.split(","), agent.env))
    env.update(toolchains.node_extra_ca(provisioning.BOTTLE_CA))
    env.update({
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
        "BOTTLE": bottle.slug,
    })
    if agent.supervise:  # Claude Code's own MCP tool timeout (ms) must outlast the operator's
        env["MCP_TOOL_TIMEOUT"] = str((agent.supervise.timeout + 30) * 1000)
    return env


def env_file_text(env: dict[str, str]) -> str:
    for key, value in env.items():
        if "\n" in value:
            raise BottleError(f"env {key}: values may not contain a newline (Docker env files are line-based)")
    return "".join(f"{key}={value}\n" for key, value in sorted(env.items()))


def check_runtime(bottle: Bottle) -> None:
    if bottle.agent.runtime == "runc" or bottle.dry:
        return
    runtimes = json.loads(bottle.run(docker.runtimes()).stdout or "{}")
    if bottle.agent.runtime not in runtimes:
        raise BottleError(
            f"{bottle.manifest.path}: agents.{bottle.agent.name}.runtime: the engine on "
            f"{bottle.target.describe()} has no runtime {bottle.agent.runtime!r} (it has: {', '.join(sorted(runtimes))})",
            "install gVisor and register it with dockerd (https://gvisor.dev/docs/user_guide/install/), "
            "or set runtime: runc")


@task(pre=[secrets, build, proxy, egress, gitgate, supervise])
@step("agent")
def agent(c):
    """Create the agent container, on the internal network only (provision starts it)."""
    bottle = current(c)
    internal = bottle.require("net-internal", "net")
    check_runtime(bottle)
    env_path = bottle.stage("agent.env")
    env_text = env_file_text(agent_env(bottle)).encode()
    bottle.target.write(env_path, env_text)
    resources = bottle.agent.resources
    # The home is a volume of its own: Claude Code's state survives a new container and `down`.
    volume = home.ensure(bottle)
    name, started = start(
        bottle, "agent", "agent", bottle.plan.agent_image.tag, network=internal,
        env_file=env_path, inputs=env_text, dns=[DEAD_RESOLVER], mounts=[f"{volume}:{provisioning.HOME}"],
        user=f"{provisioning.AGENT_UID}:{provisioning.AGENT_GID}",
        # memory-swap as memory: no swap (Docker's default allows as much swap again)
        limits={"memory": resources.memory, "memory-swap": resources.memory, "cpus": str(resources.cpus),
                "pids-limit": str(resources.pids)},
        runtime=None if bottle.agent.runtime == "runc" else bottle.agent.runtime)
    return f"{name} {'starting' if started else 'already running'} (proxy {bottle.plan.proxy_url})"


@task(pre=[agent])
@step("provision")
def provision(c):
    """Provision the agent: CA trust, git, Claude settings, prompt (one cp, two execs)."""
    bottle = current(c)
    name = bottle.require("agent", "agent")
    containers.await_started(name)  # the sidecars may still be starting: provisioning needs only the agent
    # With routes the egress proxy intercepts the routed hosts and the firewall the tunnels
    # the egress proxy relays to it unopened: the agent trusts both (one PEM file, two certs).
    ca_roles = ("egress", "firewall") if bottle.plan.wants_egress else ("firewall",)
    cas = bottle.state.get("ca") or {}
    if not all(cas.get(role) for role in ca_roles) and not bottle.dry:
        raise BottleError(f"bottle {bottle.slug} has no {' and '.join(ca_roles)} CA yet", "run `inv ca` first")
    ca_pem = "".join(cas.get(role) or "" for role in ca_roles)
    archive = bottle.stage("provision.tar")
    payload = provisioning.files(bottle.agent, ca_pem, bottle.plan.proxy_url)
    payload.append((supervision.CURRENT_POLICY, supervision.view_bytes(bottle), 0o644, 0))  # read-only for it
    bottle.target.write(archive, provisioning.tarball(payload))
    bottle.run(docker.cp_tar_from_stdin(name), stdin_path=archive)  # the agent's files stay the agent's
    # Side by side, as they touch different files: root's (CA trust, JDK, Maven), and the agent's,
    # placed as the agent (links it planted are replaced, never followed).
    bottle.target.run_together([
        docker.bounded(docker.exec_as_root(name, ["/bin/sh", provisioning.SCRIPT], agent_env(bottle)),
                       f"{provisioning.SCRIPT} (root)", PROVISION_WAIT),
        docker.bounded(docker.exec_(name, ["sh", provisioning.PLACE_SCRIPT],
                                    user=f"{provisioning.AGENT_UID}:{provisioning.AGENT_GID}"),
                       f"{provisioning.PLACE_SCRIPT} (the agent)", PROVISION_WAIT),
    ])
    return f"{name}: trusts the bottle's {' and '.join(ca_roles)} CA; git, Claude settings and prompt in place"


ns = Collection(agent, provision)
