"""Pure plan naming, and the exact docker command lines of steps (invoke MockContext)."""
from __future__ import annotations

import json
import shlex

import pytest
from helpers import write_manifest
from invoke import Config, MockContext, Result

from bottle_tasks import docker, images
from bottle_tasks.manifest import load
from bottle_tasks.plan import build_plan, check_slug
from bottle_tasks.steps.net import net


@pytest.fixture
def manifest(tmp_path):
    return write_manifest(tmp_path, {"demo": "    prompt: hi\n    network: {allow: [example.org]}"})


def test_names_labels_and_proxy_url(manifest):
    loaded = load(str(manifest))
    plan = build_plan("demo", loaded, loaded.agents["demo"])
    assert plan.name("agent") == "bottle-demo-agent"
    assert plan.name("net-internal") == "bottle-demo-net-internal"
    assert plan.labels("firewall") == {"bottle.slug": "demo", "bottle.role": "firewall", "bottle.managed": "1"}
    assert plan.proxy_url == "http://firewall:3128"  # no routes: straight to the firewall
    assert [row[0] for row in plan.describe()][:4] == ["secrets", "build", "net", "ca"]


def test_image_tags_hash_their_inputs(manifest, tmp_path):
    bundle = tmp_path / "extra.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    first = images.spec_for("agent", "debian:bookworm-slim", "debian:trixie-slim", None)
    again = images.spec_for("agent", "debian:bookworm-slim", "debian:trixie-slim", None)
    other_base = images.spec_for("agent", "debian:other", "debian:trixie-slim", None)
    with_ca = images.spec_for("agent", "debian:bookworm-slim", "debian:trixie-slim", str(bundle))
    assert first.tag == again.tag
    assert len({first.tag, other_base.tag, with_ca.tag}) == 3
    assert first.tag.startswith("bottle/agent:")


def test_packages_make_a_derived_agent_image_cached_by_their_list(tmp_path):
    """images.packages: one image FROM the agent image, shared by every bottle asking for the
    same list (in any order), and the one the agent (and a workspace copy) runs from."""
    def plan_for(packages: str, slug: str = "demo"):
        folder = tmp_path / f"{slug}-{abs(hash(packages))}"
        folder.mkdir()
        path = write_manifest(folder, {slug: "    prompt: hi"}, extra=f"images: {{packages: {packages}}}\n")
        loaded = load(str(path))
        return build_plan(slug, loaded, loaded.agents[slug])

    plan = plan_for("[openjdk-17-jdk-headless, maven]")
    spec = plan.images["packages"]
    assert spec.tag.startswith("bottle/agent-packages:") and plan.agent_image is spec
    assert spec.dockerfile_text.startswith(f"FROM {plan.images['agent'].tag}\n")
    assert "install -y --no-install-recommends maven openjdk-17-jdk-headless;" in spec.dockerfile_text
    assert plan_for("[maven, openjdk-17-jdk-headless]", "other").images["packages"].tag == spec.tag
    assert plan_for("[maven]").images["packages"].tag != spec.tag
    assert "packages" not in plan_for("[]").images
    assert images.DERIVED.index("packages") < images.DERIVED.index("workspace")


@pytest.mark.parametrize("slug,ok", [("demo", True), ("a-b-1", True), ("Demo", False), ("-x", False),
                                     ("x" * 32, False), ("a_b", False)])
def test_slug_rules(slug, ok):
    assert (check_slug(slug) is None) is ok


def _context(manifest, runs):
    config = Config(overrides={"bottle": {"agent": "demo", "manifest": str(manifest)}})
    return MockContext(config=config, run=runs)


def test_net_issues_exactly_these_commands(manifest, state_home):
    owners_fmt = "{{.Name}} {{json .Labels}}"
    subnet_fmt = "{{.Name}} {{range .IPAM.Config}}{{.Subnet}} {{end}}"
    runs = {
        # Who holds the planned names: one call for both.
        f"docker network inspect --format '{owners_fmt}' bottle-demo-net-internal bottle-demo-net-egress":
            Result(exited=1, stderr="network bottle-demo-net-internal not found"),
        # Both created side by side, by one shell command.
        shlex.join(docker.side_by_side([
            ("docker network create --driver bridge --internal --opt com.docker.network.bridge.inhibit_ipv4=true "
             "--label bottle.managed=1 --label bottle.role=net-internal "
             "--label bottle.slug=demo bottle-demo-net-internal").split(),
            ("docker network create --driver bridge --label bottle.managed=1 --label bottle.role=net-egress "
             "--label bottle.slug=demo bottle-demo-net-egress").split()])): Result(""),
        f"docker network inspect --format '{subnet_fmt}' bottle-demo-net-internal bottle-demo-net-egress":
            Result("bottle-demo-net-internal 172.30.1.0/24 \nbottle-demo-net-egress 172.30.2.0/24 \n"),
    }
    c = _context(manifest, runs)
    net(c)
    state = json.loads((state_home / "bottle" / "demo" / "state.json").read_text())
    assert state["cidr"] == {"net-internal": "172.30.1.0/24", "net-egress": "172.30.2.0/24"}
    assert [a["name"] for a in state["undo"]] == ["bottle-demo-net-internal", "bottle-demo-net-egress"]


def test_net_reuses_its_own_networks(manifest, state_home):
    owners_fmt = "{{.Name}} {{json .Labels}}"
    subnet_fmt = "{{.Name}} {{range .IPAM.Config}}{{.Subnet}} {{end}}"
    ours = lambda role: f"bottle-demo-{role} " + json.dumps({"bottle.slug": "demo", "bottle.role": role})
    runs = {
        f"docker network inspect --format '{owners_fmt}' bottle-demo-net-internal bottle-demo-net-egress":
            Result(ours("net-internal") + "\n" + ours("net-egress") + "\n"),
        f"docker network inspect --format '{subnet_fmt}' bottle-demo-net-internal bottle-demo-net-egress":
            Result("bottle-demo-net-internal 172.30.1.0/24\nbottle-demo-net-egress 172.30.2.0/24"),
    }
    net(_context(manifest, runs))  # any `docker network create` would be an unexpected command
    state = json.loads((state_home / "bottle" / "demo" / "state.json").read_text())
    assert state["cidr"] == {"net-internal": "172.30.1.0/24", "net-egress": "172.30.2.0/24"}
    assert state["undo"] == []  # found, not created: nothing of this run to undo
    # The state had lost them (a killed run left them): the steps after must find them again.
    assert state["resources"] == {"net-internal": "bottle-demo-net-internal", "net-egress": "bottle-demo-net-egress"}


def test_create_argv_hardening_and_secrets_stay_in_env_file():
    argv = docker.create("bottle-x-agent", "img", {"bottle.slug": "x"}, network="n", env_file="/stage/agent.env",
                      limits={"memory": "2g", "pids-limit": "256"}, dns=["192.0.2.53"])
    text = " ".join(argv)
    assert "--init" in argv and "--cap-drop ALL" in text and "no-new-privileges" in text
    assert "--log-opt max-size=20m --log-opt max-file=5" in text  # a bounded log on the Docker host
    assert "--env-file /stage/agent.env" in text and "--memory 2g" in text and "--dns 192.0.2.53" in text


@pytest.mark.parametrize("outcomes, status", [(["true", "true"], 0), (["false", "true"], 1), (["true", "false"], 1),
                                              (["sh -c 'sleep 0.2; exit 3'", "true"], 1)])
def test_side_by_side_fails_when_any_command_fails(outcomes, status):
    """The shell that runs docker commands at once reports each one's failure, also one that
    ends before the others or after them."""
    import subprocess

    argv = docker.side_by_side([shlex.split(command) for command in outcomes])
    assert subprocess.run(argv).returncode == status


def test_side_by_side_runs_the_commands_at_once(tmp_path):
    """A rendezvous: each command marks its start, then waits for the other's mark. Run one after
    the other, the first would wait in vain (and give up after 5 s: the call fails)."""
    import subprocess

    def meet(me: str, other: str) -> list[str]:
        return ["sh", "-c", f"touch {tmp_path}/{me}; for i in $(seq 500); do [ -e {tmp_path}/{other} ] && exit 0; "
                            "sleep 0.01; done; exit 1"]

    assert subprocess.run(docker.side_by_side([meet("a", "b"), meet("b", "a")])).returncode == 0
