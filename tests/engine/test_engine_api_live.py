"""engine_api against the real engine and the real CLI: every command it answers, for objects
that are there, missing, or some of each, says what `docker` itself says (stdout and exit
code, and an error exactly when the CLI has one), and starts and joins really happen."""
import json
import subprocess

import pytest
from helpers import docker, labelled, unique

from bottle_tasks import docker as argv_for
from bottle_tasks import engine_api
from bottle_tasks.target import Result

IMAGE = "debian:bookworm-slim"  # made by `make engine`


def cli(argv: list[str]) -> Result:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return Result(done.stdout, done.stderr, done.returncode)


def answered(engine: engine_api.Engine, argv: list[str]) -> Result:
    result = engine.answer(argv)
    assert result is not None, f"not answered: {argv}"
    return result


def same_as_the_cli(engine: engine_api.Engine, argv: list[str]) -> Result:
    """Asks the API, then the CLI (read-only commands): the two must agree."""
    api, reference = answered(engine, argv), cli(argv)
    assert (api.stdout, api.exited) == (reference.stdout, reference.exited), (argv, api, reference)
    assert bool(api.stderr) == bool(reference.stderr), (argv, api, reference)
    return api


@pytest.fixture(scope="module")
def objects(engine):
    """A labelled network, an unlabelled one, two containers (created, not started) and a volume,
    named after one fresh slug; all removed afterwards."""
    slug = unique("api")
    names = {"net": f"{slug}-net", "bare": f"{slug}-bare", "one": f"{slug}-one", "two": f"{slug}-two",
             "volume": f"{slug}-home"}
    labels = ["--label", f"bottle.slug={slug}", "--label", "bottle.test=<&> é\u2028"]  # what JSON encoders differ on
    try:
        docker("network", "create", "--internal", *labels, names["net"])
        docker("network", "create", names["bare"])
        for role in ("one", "two"):
            docker("create", "--name", names[role], "--network", names["net"], *labels,
                   "--label", "bottle.config=d1g3st", IMAGE, "sleep", "infinity")
        docker("volume", "create", *labels, names["volume"])
        yield slug, names
    finally:
        docker("rm", "-f", names["one"], names["two"], check=False)
        docker("network", "rm", names["net"], names["bare"], check=False)
        docker("volume", "rm", names["volume"], check=False)
        assert labelled(slug) == []


def inspect_argv(kind: str, fmt: str, names: list[str]) -> list[str]:
    return ["docker", kind, "inspect", "--format", fmt, *names]


@pytest.mark.parametrize("kind, fmt", sorted(engine_api.FORMATS))
def test_every_inspect_prints_what_the_cli_prints(objects, kind, fmt):
    _, names = objects
    engine = engine_api.Engine(engine_api.local_socket())
    present = {"container": names["one"], "network": names["net"], "image": IMAGE, "volume": names["volume"]}[kind]
    for asked in ([present], [f"{present}-missing"], [present, f"{present}-missing"]):
        same_as_the_cli(engine, inspect_argv(kind, fmt, asked))
    if kind == "network":  # the labelless network (Labels {}), and one with a container attached
        same_as_the_cli(engine, inspect_argv(kind, fmt, [names["bare"], names["net"]]))
    if kind == "container":
        same_as_the_cli(engine, inspect_argv(kind, fmt, [names["one"], names["two"]]))


def test_start_and_join_happen_and_answer_as_the_cli(objects):
    _, names = objects
    engine = engine_api.Engine(engine_api.local_socket())
    joined = answered(engine, argv_for.network_connect(names["bare"], names["one"], ["api.upstream.test", "x"]))
    assert joined == Result("", "", 0)
    assert answered(engine, argv_for.container_start(names["one"])) == Result(names["one"] + "\n", "", 0)
    assert cli(argv_for.container_start(names["two"])) == Result(names["two"] + "\n", "", 0)  # the same, by the CLI
    inspected = json.loads(docker("container", "inspect", names["one"]).stdout)[0]
    assert inspected["State"]["Running"] is True
    assert {"api.upstream.test", "x"} <= set(inspected["NetworkSettings"]["Networks"][names["bare"]]["Aliases"])
    # Now running, on both networks: the inspects still agree (networks listed, attached names).
    for kind, fmt in engine_api.FORMATS:
        if kind in ("container", "network"):
            asked = [names["one"], names["two"]] if kind == "container" else [names["net"], names["bare"]]
            same_as_the_cli(engine, inspect_argv(kind, fmt, asked))
    # Started again (the engine says 304) and joined again (refused): as the CLI says.
    assert answered(engine, argv_for.container_start(names["one"])) == cli(argv_for.container_start(names["one"]))
    again = argv_for.network_connect(names["bare"], names["one"])
    assert answered(engine, again).exited == cli(again).exited == 1


def test_what_cannot_start_or_join_fails_as_with_the_cli(objects):
    slug, names = objects
    engine = engine_api.Engine(engine_api.local_socket())
    for argv in (argv_for.container_start(f"{slug}-missing"),
                 argv_for.network_connect(f"{slug}-missing", names["two"]),
                 argv_for.network_connect(names["bare"], f"{slug}-missing")):
        api, reference = answered(engine, argv), cli(argv)
        assert (api.stdout, api.exited) == (reference.stdout, reference.exited) and api.stderr, (argv, api, reference)
