"""`proxy`: the firewall sidecar — the only container of a bottle with a route out.
Also `allow`/`deny` (live policy changes) and `logs` (the audit log)."""
import json
from pathlib import Path

from invoke import Collection, task
from rich.table import Table

from .. import console, docker, policy
from ..containers import expect_ready, running, start
from ..context import current
from ..errors import BottleError
from ..plan import FIREWALL_ALIAS, FIREWALL_PORT
from ..stepping import step
from .build import build
from .ca import ca
from .net import net

CONFIG_DIR = "/etc/bottle"
READY_PROBE = ["python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {FIREWALL_PORT}), 1)"]


def write_policy(bottle) -> dict:
    """Render policy.json into the stage dir (atomic rename: the running firewall
    sees either the old file or the new one, never half of it)."""
    cidrs = bottle.state.get("cidr") or {}
    rendered = policy.render(bottle.slug, bottle.agent, cidrs.get("net-internal"),
                             bottle.state.get("policy_changes") or {})
    bottle.target.write(bottle.stage("firewall", "policy.json"),
                        (json.dumps(rendered, indent=2) + "\n").encode())
    return rendered


def extra_ca(bottle) -> bytes:
    path = bottle.manifest.trust.extra_ca_bundle
    return Path(path).read_bytes() if path else b""


def require(bottle, role: str, step_name: str) -> str:
    name = bottle.state.resource(role)
    if not name and not bottle.dry:
        raise BottleError(f"bottle {bottle.slug} has no {role} yet", f"run `inv use {bottle.agent.name} {step_name}` first")
    return name or bottle.plan.name(role)


@task(pre=[build, net, ca])
@step("proxy")
def proxy(c):
    """Start the firewall sidecar (allowlist, SSRF guard, DLP, audit log)."""
    bottle = current(c)
    internal = require(bottle, "net-internal", "net")
    egress_net = require(bottle, "net-egress", "net")
    rendered = write_policy(bottle)
    bottle.target.write(bottle.stage("firewall", "extra-ca.pem"), extra_ca(bottle))
    uid, gid = bottle.target.ids()
    name, started = start(
        bottle, "firewall", "proxy", bottle.plan.images["firewall"].tag,
        network=egress_net, connect=((internal, (FIREWALL_ALIAS,)),),
        # It reads the 0600 stage files, so it runs as their owner — with no capabilities.
        user=f"{uid}:{gid}", read_only=True, tmpfs=["/tmp"],
        mounts=[f"{bottle.stage('firewall')}:{CONFIG_DIR}:ro"],
        limits={"memory": "512m", "pids-limit": "256"})
    if not started:
        reload_policy(bottle, name)
        return f"{name} already running; policy re-read"
    expect_ready(bottle, name, READY_PROBE, f"listening on :{FIREWALL_PORT}")
    return f"{name} started; allows {', '.join(rendered['allow']) or 'nothing'}"


def reload_policy(bottle, name: str) -> None:
    bottle.run(docker.kill(name, "HUP"))


def change_policy(c, host: str, verb: str) -> str:
    from ..manifest import check_host  # the manifest's own rule for what a host may look like

    bottle = current(c)
    problem = check_host(host)
    if problem:
        raise BottleError(f"{verb} {host!r}: {problem}")
    changes = {key: list(value) for key, value in (bottle.state.get("policy_changes") or {}).items()}
    add_to, remove_from = ("allow", "deny") if verb == "allow" else ("deny", "allow")
    changes[remove_from] = [h for h in changes.get(remove_from, []) if h != host]
    if host not in changes.setdefault(add_to, []):
        changes[add_to].append(host)
    bottle.state.set("policy_changes", changes)
    rendered = write_policy(bottle)
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


def audit_lines(text: str):
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "decision" in record:
                yield record


COLUMNS = ("ts", "decision", "method", "host", "path", "rule", "status", "reason")


def cell(record: dict, column: str) -> str:
    value = str(record.get(column, ""))
    return value[11:19] if column == "ts" else value  # the time of day is enough on screen


@task(help={"blocked": "only refusals", "follow": "keep printing new decisions as they happen",
            "json": "raw JSON lines instead of a table"})
def logs(c, blocked=False, follow=False, json_=False):
    """Show the firewall's audit log: one line per decision."""
    bottle = current(c)
    name = require(bottle, "firewall", "proxy")
    wanted = (lambda r: r["decision"] == "deny") if blocked else (lambda r: True)
    if follow:
        stream = AuditStream(wanted, json_)
        bottle.target.run(docker.logs(name, follow=True), stream=True, out_stream=stream, check=False)
        return
    result = bottle.run(docker.logs(name))
    records = [r for r in audit_lines(result.stdout) if wanted(r)]
    if json_:
        for record in records:
            print(json.dumps(record))
        return
    table = Table(title=f"{name}: {len(records)} decision(s)", title_justify="left")
    for column in COLUMNS:
        table.add_column("time" if column == "ts" else column, overflow="fold",
                         no_wrap=column not in ("path", "reason"))
    for record in records:
        style = "red" if record["decision"] == "deny" else ("yellow" if record["decision"] == "warn" else "")
        table.add_row(*(cell(record, column) for column in COLUMNS), style=style)
    console.out.print(table)


class AuditStream:
    """A file-like sink for `docker logs --follow` that prints each decision as it arrives."""

    def __init__(self, wanted, raw: bool):
        self.wanted, self.raw, self.buffer = wanted, raw, ""

    def write(self, data: str) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split("\n")
        for record in audit_lines("\n".join(lines)):
            if not self.wanted(record):
                continue
            if self.raw:
                print(json.dumps(record), flush=True)
            else:
                console.out.print(" ".join(cell(record, column) for column in COLUMNS))

    def flush(self) -> None:
        pass


ns = Collection(proxy, allow, deny, logs)
