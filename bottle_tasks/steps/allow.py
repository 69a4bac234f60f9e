"""`allow` / `deny`: change the running firewall's allowlist, without a restart (kept in the
bottle's state, so a relaunch keeps it). Also the code path of an approved supervise request."""
from __future__ import annotations

from typing import TYPE_CHECKING

from invoke import Collection, task

from .. import docker, policy_render, supervision
from ..containers import reload_and_confirm, running
from ..errors import BottleError
from ..manifest import allowlist_entry, covers, never_hit
from ..schema import Invalid
from ..selection import current
from ..stepping import step
from .proxy import reload_policy, render_policy, write_policy

if TYPE_CHECKING:
    from ..selection import Bottle


def change_policy(c, host: str, verb: str, bottle: Bottle | None = None) -> str:
    """`inv allow|deny HOST`, or an approved supervise request for `bottle`."""
    bottle = bottle or current(c)
    try:  # compared and recorded as the firewall reads it: `METADATA.x.` is `metadata.x`
        host = allowlist_entry(host)
    except Invalid as exc:
        raise BottleError(f"{verb} {host!r}: {exc.message}") from None
    banned = never_hit(host, bottle.agent.network.never) if verb == "allow" else None
    if banned:
        raise BottleError(f"allow {host}: it reaches {banned}, which network.never of {bottle.manifest.path} forbids",
                          "a host under network.never cannot be allowed while the bottle runs")
    changes = {key: list(value) for key, value in (bottle.state.get("policy_changes") or {}).items()}
    if verb == "deny":
        allowed = policy_render.effective_allow(bottle.agent, changes)
        wider = [pattern for pattern in allowed if pattern != host and covers(pattern, host)]
        if wider and host not in allowed:
            raise BottleError(f"deny {host}: it is allowed through {', '.join(wider)}, not by name",
                              f"deny the wildcard (`inv deny '{wider[0]}'`) and allow the hosts you still want")
    add_to, remove_from = ("allow", "deny") if verb == "allow" else ("deny", "allow")
    changes[remove_from] = [h for h in changes.get(remove_from, []) if h != host]
    if host not in changes.setdefault(add_to, []):
        changes[add_to].append(host)
    render_policy(bottle, changes)  # refuse before anything is saved
    before = bottle.state.get("policy_changes")
    bottle.state.set("policy_changes", changes)
    rendered = write_policy(bottle)
    name = bottle.state.resource("firewall")
    if name and running(bottle, name):
        try:
            reload_policy(bottle, name)
        except (BottleError, KeyboardInterrupt) as e:
            # Not confirmed. An allow is taken back, so that no later reload puts it in force
            # unseen; a deny stays: it is the safe side, and the firewall takes it at its next
            # reload or start.
            if verb == "allow":
                take_back(bottle, name, before)
            if isinstance(e, BottleError) and not e.interrupted:
                raise unconfirmed(name, verb, host, e) from None
            raise
        # then the egress proxy, which relays tunnels to what the firewall now allows
        egress = bottle.state.resource("egress")
        if egress and running(bottle, egress):
            reload_and_confirm(bottle, egress, "routes-reload", "routes")
        supervision.publish(bottle)  # in force: what the agent (and supervise) read of it
        return f"{verb} {host}: firewall {name} reloaded; allows {', '.join(rendered['allow']) or 'nothing'}"
    supervision.publish(bottle)
    return f"{verb} {host}: recorded; the firewall starts with it"


def unconfirmed(name: str, verb: str, host: str, error: BottleError) -> BottleError:
    """The error of a change firewall `name` did not confirm, saying what became of it."""
    if verb == "allow":
        outcome = "the allow was taken back (state and policy file); run it again once the firewall answers"
    else:
        outcome = (f"the deny stays recorded and applies at the firewall's next reload or start; until then "
                   f"{name} may still allow {host} (`inv down` stops all of the bottle's traffic)")
    return BottleError(f"{verb} {host}: {error.message}", "\n".join(filter(None, [error.detail, outcome])),
                       exit_code=error.exit_code)


def take_back(bottle: Bottle, name: str, before) -> None:
    """The live changes as they were, in the state and in the policy file, and the firewall asked
    to read it (not waited for: it did not answer the last time)."""
    bottle.state.set("policy_changes", before or {})
    write_policy(bottle)
    bottle.run(docker.kill(name, "HUP"), check=False)


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


ns = Collection(allow, deny)
