"""`proxy`: the firewall sidecar — the only container of a bottle with a route out —
and `allow`/`deny`, which change its policy while it runs."""
import contextlib
import json
import time
from pathlib import Path

from invoke import Collection, task
from .. import docker, policy
from ..containers import expect_ready, logs_tail, running, start
from ..context import current
from ..errors import BottleError
from ..manifest import check_host, covers
from ..sidecars.firewall import policy as firewall_policy
from ..plan import FIREWALL_ALIAS, FIREWALL_PORT
from ..stepping import step
from .build import build
from .ca import ca
from .net import net

CONFIG_DIR = "/etc/bottle"
# When bottle runs as root, the firewall does not: it gets its stage files, and
# runs as, the unprivileged `nobody` (no user namespaces: in-container root is host root).
UNPRIVILEGED = 65534
# The image's own health check: a request answered by the proxy's event loop, not just a TCP accept.
READY_PROBE = ["/opt/bottle/venv/bin/python", "/opt/bottle/firewall/healthcheck.py"]


def render_policy(bottle, changes: dict) -> dict:
    """The policy the firewall will get, checked by the firewall's own parser first,
    so a policy it would refuse fails here, before anything starts or reloads."""
    cidrs = bottle.state.get("cidr") or {}
    rendered = policy.render(bottle.slug, bottle.agent, cidrs.get("net-internal"), changes)
    try:
        firewall_policy.parse(rendered)
    except firewall_policy.PolicyError as exc:
        raise BottleError(f"{bottle.manifest.path}: agents.{bottle.agent.name}.network: "
                          "the firewall would refuse this policy", "\n".join(exc.problems)) from None
    return rendered


def write_policy(bottle) -> dict:
    """Render policy.json into the stage dir (atomic rename: the running firewall
    sees either the old file or the new one, never half of it)."""
    rendered = render_policy(bottle, bottle.state.get("policy_changes") or {})
    bottle.target.write(bottle.stage("firewall", "policy.json"),
                        (json.dumps(rendered, indent=2) + "\n").encode())
    return rendered


def firewall_user(bottle) -> tuple[int, int]:
    uid, gid = bottle.target.ids()
    return (UNPRIVILEGED, UNPRIVILEGED) if uid == 0 else (uid, gid)


def hand_over(bottle) -> None:
    """The firewall reads its 0600 stage files as their owner: make it theirs."""
    if bottle.target.ids()[0] == 0:
        bottle.target.chown_tree(bottle.stage("firewall"), *firewall_user(bottle))


def extra_ca(bottle) -> bytes:
    path = bottle.manifest.trust.extra_ca_bundle
    return Path(path).read_bytes() if path else b""


@task(pre=[build, net, ca])
@step("proxy")
def proxy(c):
    """Start the firewall sidecar (allowlist, SSRF guard, DLP, audit log)."""
    bottle = current(c)
    internal = bottle.require("net-internal", "net")
    egress_net = bottle.require("net-egress", "net")
    rendered = write_policy(bottle)
    bundle = extra_ca(bottle)
    bottle.target.write(bottle.stage("firewall", "extra-ca.pem"), bundle)
    hand_over(bottle)
    uid, gid = firewall_user(bottle)
    name, started = start(
        bottle, "firewall", "proxy", bottle.plan.images["firewall"].tag,
        network=egress_net, connect=((internal, (FIREWALL_ALIAS,)),),
        # Read at start only: a new CA or bundle needs a new container, not a reload.
        inputs=(bottle.state.get("ca") or {}).get("firewall", "").encode() + bundle,
        # It reads the 0600 stage files, so it runs as their owner — with no capabilities.
        user=f"{uid}:{gid}", read_only=True, tmpfs=["/tmp"],
        mounts=[f"{bottle.stage('firewall')}:{CONFIG_DIR}:ro"],
        limits={"memory": "512m", "pids-limit": "256"})
    if not started:
        reload_policy(bottle, name)
        return f"{name} already running as configured; policy re-read"
    expect_ready(bottle, name, READY_PROBE, f"answering on :{FIREWALL_PORT}")
    return f"{name} started; allows {', '.join(rendered['allow']) or 'nothing'}"


RELOAD_TIMEOUT = 10.0


def reload_policy(bottle, name: str) -> None:
    """SIGHUP the firewall and wait for its verdict on the new policy file."""
    if bottle.dry:
        bottle.run(docker.kill(name, "HUP"))
        return
    since = f"{time.time() - 1:.3f}"
    seen = len(reload_events(bottle, name, since))
    bottle.run(docker.kill(name, "HUP"))
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while time.monotonic() < deadline:
        events = reload_events(bottle, name, since)
        if len(events) > seen:
            if not events[-1].get("ok"):
                raise BottleError(f"{name} refused the new policy and keeps the old one",
                                  str(events[-1].get("reason", "")))
            return
        time.sleep(0.05)
    raise BottleError(f"{name} did not confirm the policy reload within {RELOAD_TIMEOUT:.0f}s",
                      logs_tail(bottle, name))


def reload_events(bottle, name: str, since: str) -> list[dict]:
    out = bottle.run(docker.logs(name, since=since), check=False).stdout
    events = []
    for line in out.splitlines():
        if '"policy-reload"' in line:
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events


def change_policy(c, host: str, verb: str) -> str:
    bottle = current(c)
    problem = check_host(host)
    if problem:
        raise BottleError(f"{verb} {host!r}: {problem}")
    changes = {key: list(value) for key, value in (bottle.state.get("policy_changes") or {}).items()}
    if verb == "deny":
        allowed = policy.effective_allow(bottle.agent, changes)
        wider = [pattern for pattern in allowed if pattern != host and covers(pattern, host)]
        if wider and host not in allowed:
            raise BottleError(f"deny {host}: it is allowed through {', '.join(wider)}, not by name",
                              f"deny the wildcard (`inv deny '{wider[0]}'`) and allow the hosts you still want")
    add_to, remove_from = ("allow", "deny") if verb == "allow" else ("deny", "allow")
    changes[remove_from] = [h for h in changes.get(remove_from, []) if h != host]
    if host not in changes.setdefault(add_to, []):
        changes[add_to].append(host)
    render_policy(bottle, changes)  # refuse before anything is saved
    bottle.state.set("policy_changes", changes)
    rendered = write_policy(bottle)
    hand_over(bottle)
    name = bottle.state.resource("firewall")
    if name and running(bottle, name):
        reload_policy(bottle, name)
        return f"{verb} {host}: firewall {name} reloaded; allows {', '.join(rendered['allow']) or 'nothing'}"
    return f"{verb} {host}: recorded; the firewall starts with it"


@task(help={"host": "exact host (api.example.com) or wildcard (*.example.com)"})
@step("allow")
def allow(c, host):
    """Allow HOST through the running firewall, without a restart."""
    return change_policy(c, host, "allow")


@task(help={"host": "host to take off the allowlist"})
@step("deny")
def deny(c, host):
    """Take HOST off the running firewall's allowlist, without a restart."""
    return change_policy(c, host, "deny")


ns = Collection(proxy, allow, deny)
