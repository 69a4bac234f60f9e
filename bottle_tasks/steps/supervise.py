"""`supervise`: the MCP sidecar the agent asks through (a no-op unless declared); and the
operator's side: `requests`, `approve`, `reject`, `dashboard`."""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from invoke import Collection, task
from rich.table import Table

from .. import console, supervision
from ..containers import expect_ready
from ..locks import end_run
from ..plan import SUPERVISE_ALIAS, SUPERVISE_PORT
from ..selection import bottle_named, current
from ..sidecar import hand_over, start_sidecar
from ..stepping import step
from .build import build
from .net import net

if TYPE_CHECKING:
    from ..selection import Bottle

READY_PROBE = ["/opt/bottle/venv/bin/python", "-m", "supervise.health"]


def write_config(bottle: Bottle, timeout: int) -> None:
    agent = bottle.agent
    config = {"bottle": bottle.slug, "timeout": timeout, "never": list(agent.network.never),
              "secrets": list(agent.secrets)}
    bottle.target.write(bottle.stage("supervise", "supervise.json"), (json.dumps(config, indent=2) + "\n").encode())
    bottle.target.write(bottle.stage("supervise", "policy.json"), supervision.view_bytes(bottle))
    hand_over(bottle, "supervise")


@task(pre=[build, net])
@step("supervise")
def supervise(c):
    """Start the supervise MCP sidecar, on the agent's network only (no-op unless declared)."""
    bottle = current(c)
    settings = bottle.agent.supervise
    if settings is None:
        return "not declared: nothing to start"
    internal = bottle.require("net-internal", "net")
    write_config(bottle, settings.timeout)
    name, started = start_sidecar(
        bottle, "supervise", "supervise",
        # The agent's network only: it makes no outbound call and has no route out.
        network=internal, aliases=[SUPERVISE_ALIAS],
        inputs=json.dumps([settings.timeout, bottle.agent.network.never, bottle.agent.secrets]).encode(),
        limits={"memory": "256m", "pids-limit": "128"})
    if not started:
        return f"{name} already running as configured"
    expect_ready(bottle, name, READY_PROBE, f"answering on :{SUPERVISE_PORT}")
    return f"{name} starting; requests wait up to {settings.timeout} s for an operator"


# -- the operator's side -------------------------------------------------------------------------

def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


SHARES = {"what": 3, "reason": 2, "state": 1}  # of the width left by id, bottle, kind and age, on one line


def requests_table(items: list[dict], selected: str | None = None, one_line: bool = False) -> Table:
    """Every value is console.plain(): what the agent wrote is shown as it is, never interpreted.
    `one_line`: each request on one line, cut (the dashboard, which shows the selected one whole)."""
    table = Table(title="requests", title_justify="left", expand=True)
    for column in ("id", "bottle", "kind", "what", "reason", "age", "state"):
        if one_line:  # the agent's text shares what the short columns leave, never squeezes them out
            table.add_column(column, overflow="ellipsis", no_wrap=True, ratio=SHARES.get(column))
        else:
            table.add_column(column, overflow="fold")
    now = time.time()
    for r in items:
        style = "reverse" if r["id"] == selected else ("bold" if r["state"] == "pending" else "dim")
        table.add_row(*(console.plain(v) for v in (r["id"], r["bottle"], r["kind"], supervision.describe(r),
                                               r["reason"], age(now - r["created"]),
                                               r["state"] + (f": {r['note']}" if r["note"] else ""))),
                      style=style)
    return table


@task(help={"json_": "print JSON instead of a table"})
def requests(c, json_=False):
    """List the pending and recent requests of every supervised bottle on this Docker host."""
    items = supervision.requests(supervision.c_target(c))
    if json_:
        # ensure_ascii: C1 controls (8-bit escapes) printed as \u escapes, like the C0 ones
        console.out.print_json(json.dumps(items), ensure_ascii=True)
    elif items:
        console.out.print(requests_table(items))
    else:
        console.out.print("no requests")


def decide(c, request_id: str, verdict: str, note: str) -> str:
    try:  # the summary repeats the request: the step line and the dashboard show it through visible()
        return supervision.decide(c, request_id, verdict, note, lambda slug: bottle_named(c, slug))
    finally:
        end_run()  # the bottle's lock: an open dashboard must not keep `inv allow` waiting


@task(help={"note": "a note the agent reads with the decision"})
@step("approve")
def approve(c, request_id, note=""):
    """Approve request ID: applied live (as `inv allow` / `inv route add` would), then the agent is told."""
    return decide(c, request_id, "approved", note)


@task(help={"note": "a note the agent reads with the decision"})
@step("reject")
def reject(c, request_id, note=""):
    """Reject request ID: nothing changes; the agent is told, with the note."""
    return decide(c, request_id, "rejected", note)


@task
def dashboard(c):
    """Live view of the running bottles, pending requests and the latest firewall decisions;
    arrow keys or j/k to choose a request, a to approve, r to reject, q to quit."""
    from ..dashboard import run

    try:
        run(c, lambda request_id, verdict, note: decide(c, request_id, verdict, note))
    except KeyboardInterrupt:
        pass


ns = Collection(supervise, requests, approve, reject, dashboard)
