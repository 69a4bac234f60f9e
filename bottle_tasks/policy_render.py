"""Render the firewall's policy.json from the manifest, the bottle's networks and the
live changes made with `inv allow` / `inv deny` and `inv route`. Pure: data in, dict out."""
from __future__ import annotations

from .manifest import allowed_on_some_port


def effective_allow(agent, changes: dict) -> list[str]:
    """The manifest's allowlist with live changes applied (deny wins over allow)."""
    hosts = list(agent.network.allow) + [h for h in changes.get("allow", []) if h not in agent.network.allow]
    denied = set(changes.get("deny", []))
    return [host for host in hosts if host not in denied]


def gate_allow(agent, gate_cidr: str | None) -> dict[str, list[str]]:
    """The git remotes' hosts, for requests from the git gate's network only: the agent
    reaches them through the gate, never directly (unless network.allow lists them too)."""
    entries = sorted({remote.allow_entry for remote in agent.gated_remotes})
    return {gate_cidr: entries} if gate_cidr and entries else {}


def effective_routes(agent, changes: dict) -> list[dict]:
    """The manifest's routes with the live changes of `inv route` applied: a removed host
    loses the manifest's routes, a removed `host:port` those on that port (`inv route rm`
    also drops the routes added for it); added routes come after the manifest's. A route
    added after a removal is that route alone: it never brings back the manifest's routes
    for its host, nor their credentials."""
    removed = set(changes.get("removed", []))
    routes = [route for route in (r.to_json() for r in agent.routes) if not route_removed(route, removed)]
    return routes + list(changes.get("added", []))


def route_removed(route: dict, removed) -> bool:
    """Is `route` (as routes.json holds it) one that `inv route rm` of an entry in `removed`
    (a host: all its routes; `host:port`: those naming that port) takes away?"""
    return route["host"] in removed or ("port" in route and f"{route['host']}:{route['port']}" in removed)


def exempt_headers(routes: list[dict]) -> dict[str, list[str]]:
    """Headers an egress route injects: exempt from DLP on that route's host only."""
    exempt: dict[str, list[str]] = {}
    for route in routes:
        names = exempt.setdefault(route["host"], [])
        for injection in route["inject"]:
            if injection["header"].lower() not in names:
                names.append(injection["header"].lower())
    return exempt


# Model traffic is arbitrary prose (the agent's whole context), in which runs of BIP-39 list
# words with a valid checksum turn up: the seed-phrase rule is off on the model's API host
# once a route serves it. Every other rule keeps the host's action there.
MODEL_HOSTS = frozenset({"api.anthropic.com"})


def rules_off(routes: list[dict]) -> dict[str, list[str]]:
    return {route["host"]: ["seed-phrase"] for route in routes if route["host"] in MODEL_HOSTS}


def render(slug: str, agent, internal_cidr: str | None, changes: dict, link_cidr: str | None = None,
           routes: list[dict] | None = None, gate_cidr: str | None = None) -> dict:
    """`link_cidr`: the network between the egress proxy and the firewall. Injected headers
    are exempt from DLP only on requests from there (the egress proxy), never the agent's.
    `routes`: the effective routes (default: the manifest's). `gate_cidr`: the network between
    the git gate and the firewall; the git remotes' hosts are allowed from there only."""
    routes = effective_routes(agent, {}) if routes is None else routes
    network = agent.network
    allow = effective_allow(agent, changes)
    cidrs = list(network.allowed_cidrs)
    gate_hosts = gate_allow(agent, gate_cidr)
    # The bottle's own internal network is always reachable: its sidecars live there.
    if internal_cidr and internal_cidr not in cidrs:
        cidrs.append(internal_cidr)
    return {
        "bottle": slug,
        "allow": allow,
        # A passthrough host stays tunnelled only while something in the allowlist covers it.
        "passthrough": [host for host in network.passthrough if allowed_on_some_port(host, allow)],
        "allowed_cidrs": cidrs,
        "idle_timeout": network.idle_timeout,
        "allow_for": gate_hosts,
        "dlp": {
            "action": network.dlp.action,
            "hosts": dict(network.dlp.hosts),
            "patterns": [{"name": p.name, "regex": p.regex} for p in network.dlp.patterns],
            "max_body_bytes": network.dlp.max_body_bytes,
            "exempt_headers": exempt_headers(routes),
            "exempt_sources": [link_cidr] if link_cidr and routes else [],
            "rules_off": rules_off(routes),
            # The git gate's own requests to its remotes: the token rides in Authorization, and
            # the gate scans every line a push adds itself (a pack's bytes are compressed).
            "delegated": {cidr: ["authorization"] for cidr in gate_hosts},
        },
    }
