"""Fewer docker calls, same answers: who holds the planned names (names.py) and which images
are there (steps/build.py), against a recording stand-in for the engine."""
from __future__ import annotations

import json

from bottle_tasks import names
from bottle_tasks.steps.build import images_present
from bottle_tasks.target import Result


class FakeEngine:
    """`docker container inspect` / `docker image inspect` of several names, as the engine
    answers them: one line for each one it has, and a failed call if any is missing."""

    dry = False

    def __init__(self, containers: dict[str, dict], images: dict[str, list[str]] | None = None):
        self.containers, self.images = containers, images or {}
        self.commands: list[list[str]] = []

    def run(self, argv, check=True, **_):
        self.commands.append(argv)
        fmt = argv[argv.index("--format") + 1]
        asked = argv[argv.index("--format") + 2:]
        if argv[1] == "container":
            named = fmt.startswith("{{.Name}}")  # several at once: each line says whose it is
            lines = [f"/{n} " * named + json.dumps(self.containers[n]) for n in asked if n in self.containers]
        else:
            lines = [json.dumps(self.images[n]) for n in asked if n in self.images]
        missing = [n for n in asked if n not in (self.containers if argv[1] == "container" else self.images)]
        said = "Error response from daemon: No such " + ("container" if argv[1] == "container" else "image")
        return Result("".join(line + "\n" for line in lines), "".join(f"{said}: {n}\n" for n in missing),
                      1 if missing else 0)


class FakePlan:
    def __init__(self, slug: str, roles: tuple[str, ...]):
        self.slug, self._roles = slug, roles

    def roles(self, kind: str) -> tuple[str, ...]:
        return self._roles if kind == "container" else ()

    def name(self, role: str) -> str:
        return f"bottle-{self.slug}-{role}"


class FakeState:
    def resource(self, role: str) -> None:
        return None


class FakeBottle:
    dry = False
    pinned = False

    def __init__(self, engine: FakeEngine, roles=("firewall", "egress", "agent")):
        self.slug, self.target, self.plan, self.state = "demo", engine, FakePlan("demo", roles), FakeState()

    def run(self, argv, **kwargs):
        return self.target.run(argv, **kwargs)


def ours(role: str) -> dict:
    return {"bottle.slug": "demo", "bottle.role": role}


def test_the_planned_containers_are_asked_about_in_one_call_and_each_answer_is_used_once():
    engine = FakeEngine({"bottle-demo-firewall": ours("firewall")})
    bottle = FakeBottle(engine)
    assert names.claim_name(bottle, "container", "firewall") == ("bottle-demo-firewall", True)
    assert names.claim_name(bottle, "container", "egress") == ("bottle-demo-egress", False)
    assert names.claim_name(bottle, "container", "agent") == ("bottle-demo-agent", False)
    assert len(engine.commands) == 1  # the three planned names, one inspect
    assert engine.commands[0][-3:] == ["bottle-demo-firewall", "bottle-demo-egress", "bottle-demo-agent"]
    # Claimed again in the same run (a relaunch step): the engine is asked afresh.
    engine.containers["bottle-demo-agent"] = ours("agent")
    assert names.claim_name(bottle, "container", "agent") == ("bottle-demo-agent", True)
    assert len(engine.commands) == 2


def test_a_name_someone_else_holds_moves_to_a_suffix_asked_about_alone():
    engine = FakeEngine({"bottle-demo-firewall": {"app": "theirs"}})
    bottle = FakeBottle(engine)
    assert names.claim_name(bottle, "container", "firewall") == ("bottle-demo-firewall-2", False)
    assert engine.commands[-1][-1] == "bottle-demo-firewall-2"  # not in the survey: its own inspect


def test_images_present_reads_the_tags_of_one_inspect():
    engine = FakeEngine({}, images={"bottle/agent:1": ["bottle/agent:1", "bottle/agent:latest"],
                                    "bottle/firewall:2": ["bottle/firewall:2"]})
    bottle = FakeBottle(engine)
    asked = ["bottle/agent:1", "bottle/firewall:2", "bottle/egress:3"]
    assert images_present(bottle, asked) == {"bottle/agent:1", "bottle/firewall:2"}  # egress: to build
    assert len(engine.commands) == 1
