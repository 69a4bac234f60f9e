"""`docker create` over the engine's socket against the real engine and the real CLI: for each
container a bottle creates (the agent and every sidecar, with the arguments their steps pass),
the container the API makes is the CLI's, field for field (hardening, limits, DNS, env, mounts,
networks); an engine error answers as the CLI's, and an image that is not here is the CLI's."""
import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import docker, labelled, unique

from bottle_tasks import docker as argv_for
from bottle_tasks import engine_api, plan, provisioning, sidecar
from bottle_tasks.manifest import Resources
from bottle_tasks.steps.agent import DEAD_RESOLVER, env_file_text
from bottle_tasks.target import Result

IMAGE = "debian:bookworm-slim"  # made by `make engine`

# What each sidecar step passes `sidecar.start_sidecar` besides its network, `connect` and
# `inputs` (those `containers.start` keeps for itself): steps/proxy.py, egress.py, gitgate.py,
# supervise.py.
SIDECARS = {
    "firewall": {"limits": {"memory": "512m", "pids-limit": "256"}},
    "egress": {"command": ["--firewall", f"{plan.FIREWALL_ALIAS}:{plan.FIREWALL_PORT}"],
               "limits": {"memory": "512m", "pids-limit": "256"}},
    "gitgate": {"tmpfs": "/tmp:rw,noexec,nosuid,size=2g", "limits": {"memory": "2g", "cpus": "1", "pids-limit": "256"}},
    "supervise": {"aliases": [plan.SUPERVISE_ALIAS], "limits": {"memory": "256m", "pids-limit": "128"}},
}


def cli(argv: list[str]) -> Result:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return Result(done.stdout, done.stderr, done.returncode)


@pytest.fixture(scope="module")
def bottle(engine, tmp_path_factory):
    """A slug, its labelled network, a stage folder and the agent's env file; whatever the tests
    create is named after the slug and removed afterwards, even when a test failed."""
    slug = unique("cr")
    stage = tmp_path_factory.mktemp("stage")
    network = f"{slug}-net"
    docker("network", "create", "--internal", "--label", f"bottle.slug={slug}", "--label", "bottle.test=1", network)
    try:
        yield SimpleNamespace(slug=slug, stage=stage, network=network, home=f"{slug}-home")
    finally:
        names = labelled(slug)
        containers = [name for name in names if name != network]
        if containers:
            docker("rm", "-f", "-v", *containers, check=False)
        docker("network", "rm", network, check=False)
        docker("volume", "rm", f"{slug}-home", check=False)  # the agent's home, made by its create
        assert labelled(slug) == []


def sidecar_argv(bottle, role: str, name: str, monkeypatch) -> list[str]:
    """`docker.create` of the `role` sidecar as `start_sidecar` asks `containers.start` for it (its
    user, read-only root, tmpfs, stage mount and limits), and `containers.start` then builds it."""
    asked = {}

    def start(_bottle, role_, _step, image, *, network, connect=(), inputs=b"", **run_options):
        asked.update(role=role_, image=image, network=network, run_options=run_options)
        return name, True

    monkeypatch.setattr(sidecar, "start", start)
    fake = SimpleNamespace(target=SimpleNamespace(ids=lambda: (os.getuid(), os.getgid())),
                           plan=SimpleNamespace(images={role: SimpleNamespace(tag=IMAGE)}),
                           stage=lambda *parts: str(Path(bottle.stage, *parts)))
    sidecar.start_sidecar(fake, role, role, network=bottle.network, connect=(), inputs=b"", **SIDECARS[role])
    return argv_for.create(name, asked["image"], labels(bottle, role), network=asked["network"], **asked["run_options"])


def agent_argv(bottle, name: str, resources: Resources) -> list[str]:
    """`docker.create` of the agent with what steps/agent.py passes `containers.start`."""
    env_path = bottle.stage / "agent.env"
    env_path.write_text(env_file_text({"BOTTLE": bottle.slug, "HTTPS_PROXY": "http://firewall:3128",
                                       "NO_PROXY": "localhost,127.0.0.1,firewall", "NODE_EXTRA_CA_CERTS": "/etc/ssl/x.pem",
                                       "ODD": 'a b = "c" \\ $HOME é'}))
    return argv_for.create(
        name, IMAGE, labels(bottle, "agent"), network=bottle.network, env_file=str(env_path), dns=[DEAD_RESOLVER],
        mounts=[f"{bottle.home}:{provisioning.HOME}"], user=f"{provisioning.AGENT_UID}:{provisioning.AGENT_GID}",
        limits={"memory": resources.memory, "cpus": str(resources.cpus), "pids-limit": str(resources.pids)}, runtime=None)


def labels(bottle, role: str) -> dict[str, str]:
    return {"bottle.slug": bottle.slug, "bottle.role": role, "bottle.managed": "1", "bottle.config": "d1g3st"}


def shape(name: str) -> dict:
    """`docker inspect NAME`, less only what two containers made alike must differ in. (Created,
    not started: the paths of its log, hosts and resolv.conf files are still empty, and the
    engine has added no alias of its own.)"""
    found = json.loads(docker("container", "inspect", name).stdout)[0]
    for key in ("Id", "Name",  # each container's own
                "Created"):  # when it was made
        found.pop(key)
    found["Config"].pop("Hostname")  # the container's short id, unless one is asked for (none is)
    found["GraphDriver"].pop("Data")  # the folders of its own layer (upper, work and merged dirs)
    return found


def differences(one, other, at: str = "") -> list[str]:
    """Where two inspects differ, as paths (a failure says which fields)."""
    if isinstance(one, dict) and isinstance(other, dict):
        return [path for key in sorted(set(one) | set(other))
                for path in differences(one.get(key), other.get(key), f"{at}.{key}")]
    return [] if one == other else [f"{at}: {one!r} != {other!r}"]


def test_every_container_a_bottle_creates_is_the_clis(bottle, monkeypatch):
    """Each create, once by the CLI and once over the socket: the same container but for names and ids."""
    engine = engine_api.Engine(engine_api.local_socket())
    creates = {role: lambda name, role=role: sidecar_argv(bottle, role, name, monkeypatch) for role in SIDECARS}
    creates["agent"] = lambda name: agent_argv(bottle, name, Resources())
    creates["agent-small"] = lambda name: agent_argv(bottle, name, Resources(memory="512m", cpus=0.25, pids=64))
    for role, argv_of in creates.items():
        by_cli, by_api = f"{bottle.slug}-{role}-cli", f"{bottle.slug}-{role}-api"
        reference, answer = cli(argv_of(by_cli)), engine.answer(argv_of(by_api))
        assert reference.exited == 0, reference
        assert answer is not None, f"not answered: {argv_of(by_api)}"
        assert (answer.stderr, answer.exited) == (reference.stderr, reference.exited) == ("", 0)
        made = json.loads(docker("container", "inspect", by_api).stdout)[0]["Id"]
        assert answer.stdout == made + "\n" and len(answer.stdout) == len(reference.stdout)
        assert differences(shape(by_api), shape(by_cli)) == [], role
        host = json.loads(docker("container", "inspect", by_api).stdout)[0]["HostConfig"]
        assert (host["CapDrop"], host["SecurityOpt"], host["Init"]) == (["ALL"], ["no-new-privileges"], True), role
        assert host["ReadonlyRootfs"] is (role in SIDECARS) and host["Memory"] > 0 and host["PidsLimit"] > 0, role


def test_an_engine_error_answers_as_the_cli(bottle, monkeypatch):
    """A name taken: the same exit code, no output and the same error as the CLI's."""
    engine = engine_api.Engine(engine_api.local_socket())
    name = f"{bottle.slug}-taken"
    argv = sidecar_argv(bottle, "firewall", name, monkeypatch)
    assert cli(argv).exited == 0
    answer, reference = engine.answer(argv), cli(argv)
    assert answer is not None
    assert (answer.stdout, answer.exited) == (reference.stdout, reference.exited) == ("", 1)
    assert answer.stderr == reference.stderr and "is already in use" in answer.stderr, (answer, reference)


def test_an_image_that_is_not_here_is_left_to_the_cli(bottle):
    """The CLI would pull it (and say why it could not): not answered, and nothing made."""
    engine = engine_api.Engine(engine_api.local_socket())
    name = f"{bottle.slug}-unpulled"
    argv = argv_for.create(name, f"bottle/{bottle.slug}-missing:1", labels(bottle, "x"), network=bottle.network)
    assert engine.answer(argv) is None
    assert docker("container", "inspect", name, check=False).returncode == 1
