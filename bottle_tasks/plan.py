"""The pure plan of a bottle: names, labels, images and what each step will do. No I/O."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import images
from .docker import LABEL_MANAGED, LABEL_ROLE, LABEL_SLUG
from .images import ImageSpec

if TYPE_CHECKING:
    from .manifest import Agent, Manifest  # manifest imports plan (the slug rule)

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
FIREWALL_PORT = 3128
FIREWALL_ALIAS = "firewall"
EGRESS_PORT = 8080
EGRESS_ALIAS = "egress"
SUPERVISE_PORT = 9100
SUPERVISE_ALIAS = "supervise"
GITGATE_PORT = 8080
GITGATE_ALIAS = "gitgate"
GITGATE_URL = f"http://{GITGATE_ALIAS}:{GITGATE_PORT}"


def check_slug(slug: str) -> str | None:
    """None when `slug` is usable in Docker names, else what is wrong with it."""
    if SLUG_RE.match(slug):
        return None
    return (f"bottle name {slug!r} must be 1-31 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit")


def resource_name(slug: str, role: str) -> str:
    """`bottle-<slug>-<role>`. Networks keep their `net-` prefix: `bottle-x-egress` is
    the egress proxy's container, `bottle-x-net-egress` its network, never ambiguous."""
    return f"bottle-{slug}-{role}"


@dataclass(frozen=True)
class Plan:
    slug: str
    agent: Agent
    images: dict[str, ImageSpec] = field(default_factory=dict)

    # -- names and labels ----------------------------------------------------
    def name(self, role: str) -> str:
        return resource_name(self.slug, role)

    def labels(self, role: str) -> dict[str, str]:
        return {LABEL_SLUG: self.slug, LABEL_ROLE: role, LABEL_MANAGED: "1"}

    # -- what the bottle needs -------------------------------------------------
    @property
    def wants_egress(self) -> bool:
        return bool(self.agent.routes)

    @property
    def wants_gitgate(self) -> bool:
        return bool(self.agent.gated_remotes)

    @property
    def wants_supervise(self) -> bool:
        return self.agent.supervise is not None

    @property
    def agent_image(self) -> ImageSpec:
        """What the agent runs: the last derived image, else the agent image (always planned)."""
        return self.images.get("workspace") or self.images.get("packages") or self.images["agent"]

    # net-link joins the egress proxy and the firewall (only when the bottle has routes): the
    # agent then shares no network with the firewall at all.
    # net-gate joins the git gate and the firewall (only when the bottle has git remotes): the
    # firewall tells the gate's requests from the agent's by that network's addresses.
    @property
    def networks(self) -> tuple[tuple[str, bool], ...]:
        """(role, --internal) of the networks this bottle needs. Only net-egress has a route out."""
        link = (("net-link", True),) if self.wants_egress else ()
        gate = (("net-gate", True),) if self.wants_gitgate else ()
        return (("net-internal", True), *link, *gate, ("net-egress", False))

    def roles(self, kind: str) -> tuple[str, ...]:
        """The roles of this bottle's containers, or networks, in the order a launch makes them."""
        if kind == "network":
            return tuple(role for role, _ in self.networks)
        if kind == "container":
            optional = (("egress", self.wants_egress), ("gitgate", self.wants_gitgate),
                        ("supervise", self.wants_supervise))
            return ("firewall", *(role for role, wanted in optional if wanted), "agent")
        return ()

    @property
    def firewall_network(self) -> str:
        """The network on which the firewall is reachable as `firewall`: the agent's own, or,
        with an egress proxy in front, the link network the agent is not on."""
        return "net-link" if self.wants_egress else "net-internal"

    @property
    def proxy_url(self) -> str:
        """The one place that says where the agent sends its traffic."""
        if self.wants_egress:
            return f"http://{EGRESS_ALIAS}:{EGRESS_PORT}"
        return f"http://{FIREWALL_ALIAS}:{FIREWALL_PORT}"

    def describe(self) -> list[tuple[str, str]]:
        """(step, what it will do) for `inv plan`."""
        net = self.agent.network
        held = sorted({i.secret for route in self.agent.routes for i in route.inject}
                      | {remote.secret for remote in self.agent.gated_remotes if remote.secret})
        rows = [
            ("secrets", f"{', '.join(held)} must be set in this shell" if held else "none needed"),
            ("build", ", ".join(f"{spec.name} → {spec.tag}" for spec in self.images.values()) or "no images"),
            ("net", ", ".join(f"{self.name(role)}{' (--internal)' if internal else ''}"
                              for role, internal in self.networks)),
            ("ca", "mint firewall CA and egress CA in-process; keys 0600 in the stage dir"),
            ("proxy", f"{self.name('firewall')} on {self.name(self.firewall_network)} and "
                      f"{self.name('net-egress')}, :{FIREWALL_PORT}; allow "
                      + (", ".join(net.allow) or "nothing")),
            ("egress", f"{self.name('egress')} on {self.name('net-internal')} and {self.name('net-link')}, "
                       f":{EGRESS_PORT}: {len(self.agent.routes)} route(s)" if self.wants_egress
             else "no routes declared: skipped"),
            ("gitgate", f"{self.name('gitgate')} on {self.name('net-internal')} and {self.name('net-gate')}, "
                        f":{GITGATE_PORT}: {', '.join(r.name for r in self.agent.gated_remotes)}"
             if self.wants_gitgate else "no git remotes: skipped"),
            ("supervise", self.name("supervise") if self.wants_supervise else "not declared: skipped"),
            ("agent", f"{self.name('agent')} on {self.name('net-internal')} only, proxy {self.proxy_url}; "
                      f"home on volume {self.name('home')} (kept by `down`)"),
            ("provision", "CA trust, git identity, Claude settings, prompt: one docker cp + one docker exec"),
        ]
        return rows


def build_plan(slug: str, loaded: Manifest, agent: Agent) -> Plan:
    """The images and names a launch of `agent` as bottle `slug` needs (reads Dockerfiles only)."""
    extra_ca = loaded.trust.extra_ca_bundle
    # Optional sidecars' images only for bottles that declare them.
    wanted = [name for name in images.available() if images.needed(name, agent)]
    specs = {name: images.spec_for(name, loaded.images.base, loaded.images.proxy_base, extra_ca)
             for name in wanted}
    if loaded.images.packages and "agent" in specs:
        specs["packages"] = images.packages_spec(specs["agent"].tag, loaded.images.packages, extra_ca)
    if agent.workspace and agent.workspace.copy and "agent" in specs:
        # FROM the agent image with the manifest's packages, when it asks for any.
        base = (specs.get("packages") or specs["agent"]).tag
        specs["workspace"] = images.workspace_spec(base, slug, agent)
    return Plan(slug, agent, specs)
