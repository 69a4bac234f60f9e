"""engine_api against the real engine and the real CLI: every command it answers, for objects
that are there, missing, or some of each, says what `docker` itself says (stdout and exit
code, and an error exactly when the CLI has one), and starts and joins really happen."""
import io
import json
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from helpers import docker, labelled, unique
from invoke import Context

from bottle_tasks import containers, engine_api
from bottle_tasks import docker as argv_for
from bottle_tasks.errors import BottleError
from bottle_tasks.target import LocalTarget, Result

IMAGE = "debian:bookworm-slim"  # made by `make engine`


def cli(argv: list[str]) -> Result:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return Result(done.stdout, done.stderr, done.returncode)


def cli_exactly(argv: list[str]) -> Result:
    """As `cli`, with the output as the CLI wrote it (text mode would turn \\r\\n into \\n)."""
    done = subprocess.run(argv, capture_output=True, timeout=120)
    return Result(done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"), done.returncode)


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


def test_a_tar_copied_in_lands_as_with_the_cli(objects, tmp_path):
    """`docker cp - NAME:/` (provisioning): owners and modes kept, and a file or directory is
    never replaced by one of the other kind from the tar (the CLI's default)."""
    slug, names = objects
    engine = engine_api.Engine(engine_api.local_socket())
    tar = tmp_path / "in.tar"
    with tarfile.open(tar, "w") as archive:
        for name, mode, uid in ((f"{slug}-staged/", 0o700, 1000), (f"{slug}-staged/key", 0o600, 1000),
                                (f"{slug}-staged/ca.pem", 0o644, 0)):
            info = tarfile.TarInfo(name.rstrip("/"))
            info.type = tarfile.DIRTYPE if name.endswith("/") else tarfile.REGTYPE
            info.mode, info.uid, info.gid = mode, uid, uid
            data = b"" if info.isdir() else name.encode()
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    argv = argv_for.cp_tar_from_stdin(names["two"])
    assert answered_with(engine, argv, tar) == Result("", "", 0)
    by_cli = subprocess.run(argv_for.cp_tar_from_stdin(names["one"]), stdin=tar.open("rb"), capture_output=True)
    assert by_cli.returncode == 0, by_cli.stderr
    listings = [subprocess.run(["docker", "cp", f"{names[role]}:/{slug}-staged", "-"], capture_output=True,
                               check=True).stdout for role in ("two", "one")]
    members = [[(m.name, m.mode & 0o7777, m.uid, m.gid, m.size) for m in tarfile.open(fileobj=io.BytesIO(listing))]
               for listing in listings]
    assert members[0] == members[1] and (f"{slug}-staged/key", 0o600, 1000, 1000, len(f"{slug}-staged/key")) in members[0]
    # A directory where the container has a file: refused by both (the engine would replace it).
    clash = tmp_path / "clash.tar"
    with tarfile.open(clash, "w") as archive:
        info = tarfile.TarInfo("etc/debian_version")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(info)
    api = answered_with(engine, argv, clash)
    by_cli = subprocess.run(argv, stdin=clash.open("rb"), capture_output=True)
    assert api.exited == by_cli.returncode == 1 and api.stderr
    missing = argv_for.cp_tar_from_stdin(f"{slug}-missing")
    assert answered_with(engine, missing, tar).exited == 1


def answered_with(engine: engine_api.Engine, argv: list[str], stdin: Path) -> Result:
    result = engine.answer(argv, str(stdin))
    assert result is not None, f"not answered: {argv}"
    return result


@pytest.fixture
def talker(objects):
    """A running container that wrote a line to stdout, one to stderr, then its ready line to
    stdout a moment later; removed afterwards."""
    slug, _ = objects
    name = f"{slug}-talker"
    script = 'echo out-1; echo err-1 >&2; echo out-2; sleep 0.7; echo \'{"event": "ready"}\'; sleep infinity'
    docker("run", "-d", "--name", name, "--label", f"bottle.slug={slug}", IMAGE, "sh", "-c", script)
    try:
        yield name
    finally:
        docker("rm", "-f", name, check=False)


def test_logs_and_kill_answer_as_the_cli(objects, talker):
    slug, _ = objects
    engine = engine_api.Engine(engine_api.local_socket())
    deadline = time.monotonic() + 10
    while "ready" not in cli(argv_for.logs(talker)).stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    for argv in (argv_for.logs(talker), argv_for.logs(talker, tail="2"), argv_for.logs(talker, since="1"),
                 argv_for.logs(talker, since=f"{time.time() + 60:.3f}"), argv_for.logs(f"{slug}-missing")):
        api, reference = answered(engine, argv), cli(argv)
        assert (api.stdout, api.exited) == (reference.stdout, reference.exited), (argv, api, reference)
        assert (api.stderr == reference.stderr) if reference.ok else api.stderr, (argv, api, reference)
    assert "err-1" in answered(engine, argv_for.logs(talker)).stderr
    for argv in (argv_for.kill(talker, "HUP"), argv_for.kill(f"{slug}-missing", "HUP")):
        api, reference = answered(engine, argv), cli(argv)
        assert (api.stdout, api.exited) == (reference.stdout, reference.exited), (argv, api, reference)


def test_a_ready_line_is_seen_over_the_socket(objects, talker, tmp_path, monkeypatch):
    slug, names = objects
    docker("start", names["one"])  # running, silent
    target = LocalTarget(Context(), tmp_path)
    assert target.engine() is not None
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker CLI to follow the log with: the socket only
    started = time.monotonic()
    assert containers.announced_ready(talker, wait=10, target=target)  # it comes 0.7 s after the start
    assert time.monotonic() - started < 5
    # One that never says it: not ready once the wait is over; one that is not there: not ready.
    started = time.monotonic()
    assert not containers.announced_ready(names["one"], wait=1, target=target)
    assert 0.9 < time.monotonic() - started < 5
    assert not containers.announced_ready(f"{slug}-missing", wait=1, target=target)


def test_removals_answer_as_the_cli(objects):
    """`docker rm -f -v` and `docker network rm` of what is there, missing, or in use: one set
    of look-alike objects removed by the API, another by the CLI, the answers compared with
    each set's names in place."""
    slug, _ = objects
    engine = engine_api.Engine(engine_api.local_socket())
    made = []
    try:
        for way in ("api", "cli"):
            docker("network", "create", "--label", f"bottle.slug={slug}", f"{slug}-{way}-net")
            docker("network", "create", "--label", f"bottle.slug={slug}", f"{slug}-{way}-busy")
            docker("create", "--label", f"bottle.slug={slug}", "--name", f"{slug}-{way}-idle", IMAGE, "true")
            docker("run", "-d", "--label", f"bottle.slug={slug}", "--name", f"{slug}-{way}-busy",
                   "--network", f"{slug}-{way}-busy", IMAGE, "sleep", "infinity")
            made.append(way)
        commands = [
            lambda way: argv_for.container_rm(f"{slug}-{way}-idle", f"{slug}-{way}-missing"),
            lambda way: argv_for.network_rm(f"{slug}-{way}-net", f"{slug}-{way}-busy", f"{slug}-{way}-missing"),
            lambda way: argv_for.container_rm(f"{slug}-{way}-busy"),  # running: -f kills it
            lambda way: argv_for.network_rm(f"{slug}-{way}-busy"),  # no endpoint left now
        ]
        answers = []
        for command in commands:
            api, reference = answered(engine, command("api")), cli(command("cli"))
            assert (api.stdout.replace("-api-", "-cli-"), api.exited) == (reference.stdout, reference.exited), \
                (command("api"), api, reference)
            assert bool(api.stderr) == bool(reference.stderr), (command("api"), api, reference)
            answers.append(api)
        assert "active endpoints" in answers[1].stderr  # what `undo.remove` looks for, to detach others
        assert [name for name in labelled(slug) if "-api-" in name or "-cli-" in name] == []
    finally:
        for way in made:
            docker("rm", "-f", f"{slug}-{way}-idle", f"{slug}-{way}-busy", check=False)
            docker("network", "rm", f"{slug}-{way}-net", f"{slug}-{way}-busy", check=False)


def network_shape(name: str) -> dict:
    """`docker network inspect NAME`, less what two networks made the same way differ in: the
    name and id, when it was made, and the free subnet the engine picked for it."""
    found = json.loads(docker("network", "inspect", name).stdout)[0]
    for key in ("Name", "Id", "Created"):
        found.pop(key)
    found["IPAM"]["Config"] = [sorted(config) for config in found["IPAM"]["Config"]]  # keys, not addresses
    return found


def test_networks_created_over_the_socket_are_the_clis(objects):
    """`docker network create` as `net` asks it (internal with its option, and plain; labelled):
    the network the API makes is the one the CLI makes; a name taken is refused by both."""
    slug, names = objects
    engine = engine_api.Engine(engine_api.local_socket())
    labels = {"bottle.slug": slug, "bottle.role": "net-x", "bottle.test": "<&> é"}
    made = []
    try:
        for internal in (True, False):
            api_name, cli_name = f"{slug}-api-{internal}", f"{slug}-cli-{internal}"
            made += [api_name, cli_name]
            api = answered(engine, argv_for.network_create(api_name, labels, internal))
            reference = cli(argv_for.network_create(cli_name, labels, internal))
            assert (api.exited, api.stderr, len(api.stdout)) == (reference.exited, reference.stderr, len(reference.stdout))
            assert api.stdout.strip() == json.loads(docker("network", "inspect", api_name).stdout)[0]["Id"]
            assert network_shape(api_name) == network_shape(cli_name)
            assert network_shape(api_name)["Internal"] is internal
        taken = argv_for.network_create(names["net"], labels, True)
        api, reference = answered(engine, taken), cli(taken)
        assert (api.stdout, api.exited) == (reference.stdout, reference.exited) == ("", 1)
        assert api.stderr == reference.stderr, (api, reference)
    finally:
        docker("network", "rm", *made, check=False)


@pytest.fixture
def running(objects):
    """A running container with a user of its own, and one that is created only; removed afterwards."""
    slug, _ = objects
    name, idle = f"{slug}-exec", f"{slug}-exec-idle"
    docker("run", "-d", "--name", name, "--label", f"bottle.slug={slug}", IMAGE, "sleep", "infinity")
    docker("create", "--name", idle, "--label", f"bottle.slug={slug}", IMAGE, "true")
    try:
        docker("exec", name, "useradd", "-u", "1000", "-m", "someone")
        yield name, idle
    finally:
        docker("rm", "-f", name, idle, check=False)


def test_execs_answer_as_the_cli(objects, running):
    """`docker exec [--env] [--user] [--workdir]` as provisioning and `pull` ask it: the same stdout,
    stderr and exit code as the CLI's, for a command that works, fails, or cannot start, as a
    user or in a folder that is not there, and in a container that is not running or not there."""
    slug, _ = objects
    name, idle = running
    engine = engine_api.Engine(engine_api.local_socket())
    for argv in (argv_for.exec_(name, ["sh", "-c", "echo out; echo err >&2; printf 'no newline'; exit 3"]),
                 argv_for.exec_(name, ["sh", "-c", "id -u; pwd; head -c 300000 /dev/zero | tr '\\0' x"],
                                user="1000:1000", workdir="/home/someone"),
                 argv_for.exec_(name, ["id", "-un"], user="someone"),
                 argv_for.exec_(name, ["true"], user="nobody-here"),
                 argv_for.exec_(name, ["no-such-command"]),
                 argv_for.exec_(name, ["pwd"], workdir="/no/such/folder"),
                 argv_for.exec_as_root(name, ["/bin/sh", "-c", "echo $PATH; echo x${HOSTNAME}x; pwd; id -u"],
                                       ["HOSTNAME", "PATH"])):
        api, reference = answered(engine, argv), cli_exactly(argv)
        assert (api.stdout, api.stderr, api.exited) == (reference.stdout, reference.stderr, reference.exited), \
            (argv, api, reference)
    for argv in (argv_for.exec_(idle, ["true"]), argv_for.exec_(f"{slug}-missing", ["true"])):
        api, reference = answered(engine, argv), cli_exactly(argv)
        assert (api.stdout, api.exited) == (reference.stdout, reference.exited) == ("", 1), (argv, api, reference)
        assert api.stderr.lower() == reference.stderr.lower(), (argv, api, reference)  # the CLI says "container"
    assert engine.answer(["docker", "exec", "--interactive", name, "true"]) is None  # stdin: the CLI's
    assert engine.answer(["docker", "exec", "--tty", name, "true"]) is None


def test_a_bounded_exec_ends_as_the_cli_and_its_timeout_do(objects, running, tmp_path):
    """`docker.bounded` over the socket: a command within its time answers as it is; one that
    outlives it (the agent stopped it) ends the wait with the same error and exit 124 as
    `timeout` ending the CLI, and the run goes on."""
    name, _ = running
    engine = engine_api.Engine(engine_api.local_socket())
    quick = argv_for.bounded(argv_for.exec_(name, ["sh", "-c", "echo done; exit 2"]), "quick (x)", 30)
    api, reference = answered(engine, quick), cli_exactly(quick)
    assert (api.stdout, api.stderr, api.exited) == (reference.stdout, reference.stderr, reference.exited) \
        == ("done\n", "", 2)
    held = argv_for.bounded(argv_for.exec_(name, ["sh", "-c", "echo before; kill -STOP $$"]), "held (the agent)", 1)
    api, reference = answered(engine, held), cli_exactly(held)
    assert (api.stderr, api.exited) == (reference.stderr, reference.exited) == (
        "held (the agent) did not end within 1 s (the agent container may be holding it up)\n", 124)
    # One that writes without end is cut off after docker.OUTPUT_LIMIT, on either path, said alike.
    for stream in ("", ">&2"):
        flood = argv_for.bounded(argv_for.exec_(name, ["sh", "-c", f"cat /dev/zero {stream}"]), "flood (x)", 60)
        api, reference = answered(engine, flood), cli_exactly(flood)
        said = "flood (x) wrote more than 8 MiB to stdout or stderr: the rest was not read\n"
        assert api.exited == reference.exited == 1 and api.stderr.endswith(said) and reference.stderr.endswith(said)
        assert max(len(api.stdout), len(reference.stdout)) <= argv_for.OUTPUT_LIMIT
        assert len(api.stderr) <= argv_for.OUTPUT_LIMIT + len(said) >= len(reference.stderr)
    # Through a LocalTarget (provisioning's path): side by side, the failure reported as by `run`.
    target = LocalTarget(Context(), tmp_path)
    with pytest.raises(BottleError, match="did not end within 1 s"):
        target.run_together([argv_for.bounded(argv_for.exec_(name, ["true"]), "quick (x)", 30), held])
