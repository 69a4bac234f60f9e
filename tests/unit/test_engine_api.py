"""engine_api: which engine it asks, which commands it answers, and what it prints; the engine
tests compare its answers with the real CLI's."""
import json
import shlex
import socketserver
import threading
from http.server import BaseHTTPRequestHandler

import pytest
from invoke import Config, MockContext, Result

from bottle_tasks import containers, docker, engine_api
from bottle_tasks.target import LocalTarget
from bottle_tasks.target import Result as Answer


# -- which engine --------------------------------------------------------------
@pytest.mark.parametrize("environ, config, expected", [
    ({}, None, engine_api.DEFAULT_SOCKET),
    ({"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, None, "/run/user/1000/docker.sock"),
    ({"DOCKER_HOST": "tcp://10.0.0.2:2376"}, None, None),
    ({"DOCKER_HOST": "ssh://me@builder"}, None, None),
    ({"DOCKER_CONTEXT": "remote"}, None, None),
    ({"DOCKER_CONTEXT": "default"}, None, engine_api.DEFAULT_SOCKET),
    ({}, {"currentContext": "remote"}, None),
    ({}, {"currentContext": "default", "auths": {}}, engine_api.DEFAULT_SOCKET),
    ({}, "not json", engine_api.DEFAULT_SOCKET),  # the CLI's own complaint is not ours to make
])
def test_the_socket_is_the_one_the_cli_would_use(tmp_path, environ, config, expected):
    if config is not None:
        (tmp_path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    assert engine_api.local_socket({"DOCKER_CONFIG": str(tmp_path), **environ}) == expected


# -- what it prints ------------------------------------------------------------
def test_json_is_printed_as_go_prints_it():
    assert engine_api.go_json({"b": "<x> & y", "a": "é\u2028\x01"}) == '{"a":"é\\u2028\\u0001","b":"<x> & y"}'
    assert engine_api.go_json(None) == "null" and engine_api.go_json([]) == "[]"


def test_every_inspect_format_of_docker_py_has_its_rendering():
    # (the *_ROW formats are listings', `docker ps` and `ls`: the CLI answers those)
    formats = {value for name, value in vars(docker).items()
               if name.isupper() and "{{" in str(value) and not name.endswith("_ROW")}
    assert formats == {fmt for _, fmt in engine_api.FORMATS}


@pytest.mark.parametrize("argv", [
    ["docker", "container", "inspect", "--format", "{{.Config.Image}}", "x"],  # a format it does not know
    ["docker", "network", "inspect", "--format", docker.ID, "x"],  # known, but not for networks
    ["docker", "container", "inspect", "--format", docker.ID, "--size", "x"],
    ["docker", "container", "inspect", "--format", docker.ID],
    ["docker", "start", "a", "b"],
    ["docker", "start", "--attach", "a"],
    ["docker", "network", "connect", "--ip", "10.0.0.9", "n", "c"],
    ["docker", "network", "connect", "--alias", "n", "c"],
    ["docker", "rm", "-f", "c"],
    ["docker", "logs", "--since", "10m", "c"],  # the CLI makes a unix time of it first
    ["docker", "logs", "--since", "2026-11-29T10:00:00", "c"],
    ["docker", "logs", "--timestamps", "c"],
    ["podman", "start", "c"],
])
def test_other_commands_are_left_to_the_cli(argv):
    assert engine_api.Engine("/nonexistent").answer(argv) is None


class FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """An engine API on a unix socket: `objects` maps a path to the JSON it answers (else 404);
    `requests` records (method, path, body)."""
    daemon_threads = True

    def __init__(self, path, objects, statuses=None):
        self.objects, self.statuses, self.requests = objects, statuses or {}, []
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw and self.headers["Content-Type"] == "application/json" else raw or None
                engine.requests.append((self.command, self.path, body))
                status = engine.statuses.get(self.path, 200 if self.path in engine.objects else 404)
                found = engine.objects.get(self.path, {"message": f"No such object: {self.path}"})
                data = b"" if status in (204, 304) else found if isinstance(found, bytes) else json.dumps(found).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args):
                pass

        super().__init__(path, Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def address_string(self):
        return "fake"


@pytest.fixture
def fake_engine(tmp_path):
    engines = []

    def make(objects, statuses=None):
        engines.append(FakeEngine(str(tmp_path / "engine.sock"), objects, statuses))
        return engines[-1]

    yield make
    for engine in engines:
        engine.shutdown()
        engine.server_close()


CONTAINER = {"Id": "c0ffee", "Name": "/bottle-x-agent", "State": {"Running": True},
             "Config": {"Labels": {"bottle.config": "d1g3st", "bottle.slug": "x"}},
             "NetworkSettings": {"Networks": {"net-b": {}, "net-a": {}}}}
NETWORK = {"Name": "net-a", "Labels": None, "IPAM": {"Config": [{"Subnet": "172.30.0.0/16", "Gateway": "x"}, {}]},
           "Containers": {"ff": {"Name": "second"}, "0a": {"Name": "first"}}}


def test_inspect_prints_a_line_per_object_found_and_fails_when_one_is_missing(fake_engine):
    engine = fake_engine({"/containers/bottle-x-agent/json": CONTAINER, "/networks/net-a": NETWORK})
    api = engine_api.Engine(engine.server_address)
    assert api.answer(docker.container_inspect("bottle-x-agent", docker.RUNNING_CONFIG_NETWORKS)).stdout == \
        "true|d1g3st|net-a net-b \n"
    both = api.answer(docker.container_inspect_many(["bottle-x-agent", "gone"], docker.NAME_AND_CONFIG_LABELS))
    assert both.stdout == '/bottle-x-agent {"bottle.config":"d1g3st","bottle.slug":"x"}\n'
    assert both.exited == 1 and "No such object" in both.stderr
    network = api.answer(docker.network_inspect_many(["net-a"], docker.NAME_AND_SUBNETS))
    assert network.stdout == "net-a 172.30.0.0/16  \n" and network.ok
    assert api.answer(docker.network_inspect("net-a", docker.ATTACHED_NAMES)).stdout == "first second \n"
    assert api.answer(docker.network_inspect("net-a", docker.LABELS)).stdout == "null\n"
    nothing = api.answer(docker.network_inspect("gone", docker.LABELS))
    assert (nothing.stdout, nothing.exited) == ("\n", 1)  # the CLI prints an empty line then


def test_start_and_connect_say_what_the_cli_says(fake_engine):
    engine = fake_engine({"/containers/a/start": None, "/containers/b/start": None, "/networks/n/connect": None},
                         statuses={"/containers/a/start": 204, "/containers/b/start": 304})
    api = engine_api.Engine(engine.server_address)
    assert api.answer(docker.container_start("a")).stdout == "a\n"
    assert api.answer(docker.container_start("b")).ok  # running already
    refused = api.answer(docker.container_start("c"))
    assert refused.exited == 1 and refused.stderr.endswith("Error: failed to start containers: c\n")
    assert api.answer(docker.network_connect("n", "a", ["api.upstream.test", "x"])).ok
    assert api.answer(docker.network_connect("n", "b")).ok
    assert not api.answer(docker.network_connect("m", "b")).ok
    connects = [body for method, path, body in engine.requests if path.endswith("/connect")]
    assert connects[:2] == [{"Container": "a", "EndpointConfig": {"Aliases": ["api.upstream.test", "x"]}},
                            {"Container": "b", "EndpointConfig": {}}]


def test_an_answer_of_another_shape_is_left_to_the_cli(fake_engine):
    engine = fake_engine({"/containers/a/json": {"Id": "c0ffee"}, "/networks/n": ["not", "an", "object"]})
    api = engine_api.Engine(engine.server_address)
    assert api.answer(docker.container_inspect_many(["a"], docker.NAME_AND_RUNNING)) is None  # no Name, no State
    assert api.answer(docker.network_inspect("n", docker.LABELS)) is None


def test_a_tar_is_put_at_the_root_from_the_staged_file(fake_engine, tmp_path):
    archive_path = "/containers/bottle-x-agent/archive?path=/&noOverwriteDirNonDir=true"
    engine = fake_engine({archive_path: None})
    api = engine_api.Engine(engine.server_address)
    staged = tmp_path / "provision.tar"
    staged.write_bytes(b"tar bytes")
    argv = docker.cp_tar_from_stdin("bottle-x-agent")
    assert api.answer(argv, str(staged)).ok
    assert engine.requests == [("PUT", archive_path, b"tar bytes")]
    assert api.answer(argv) is None  # without its input: not a command it knows
    assert api.answer(["docker", "cp", "-", "bottle-x-agent:/tmp"], str(staged)) is None
    assert api.answer(docker.container_start("bottle-x-agent"), str(staged)) is None
    assert not api.answer(docker.cp_tar_from_stdin("gone"), str(staged)).ok


def framed(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def test_logs_are_split_into_stdout_and_stderr_and_a_terminal_is_left_to_the_cli(fake_engine):
    engine = fake_engine({
        "/containers/a/json": {"Config": {"Tty": False}}, "/containers/t/json": {"Config": {"Tty": True}},
        "/containers/a/logs?stdout=1&stderr=1&tail=2&since=1795996117.398":
            framed(1, b"out-1\nou") + framed(2, b"err\n") + framed(1, b"t-2\n"),
    })
    api = engine_api.Engine(engine.server_address)
    assert api.answer(docker.logs("a", tail="2", since="1795996117.398")) == Answer("out-1\nout-2\n", "err\n", 0)
    assert api.answer(docker.logs("t")) is None  # one raw stream: the CLI's to print
    assert not api.answer(docker.logs("gone")).ok
    assert api.answer(docker.logs("a", follow=True)) is None  # a follower is `follow_stdout`'s


def test_a_ready_line_split_across_frames_is_seen(fake_engine):
    engine = fake_engine({"/containers/a/json": {"Config": {"Tty": False}},
                          "/containers/a/logs?follow=1&stdout=1": framed(1, b'starting\n{"event": "re')
                          + framed(1, b'ady"}\n')})
    api = engine_api.Engine(engine.server_address)
    assert containers._ready_in(api.follow_stdout("a", wait=5))
    assert api.follow_stdout("gone", wait=5) is None
    assert engine_api.Engine("/nonexistent/docker.sock").follow_stdout("a", wait=5) is None  # the CLI's, then


def test_kill_says_the_name_as_the_cli_does(fake_engine):
    engine = fake_engine({"/containers/a/kill?signal=HUP": None}, statuses={"/containers/a/kill?signal=HUP": 204})
    api = engine_api.Engine(engine.server_address)
    assert api.answer(docker.kill("a", "HUP")) == Answer("a\n", "", 0)
    assert not api.answer(docker.kill("b", "HUP")).ok


def test_removals_say_each_name_removed_and_a_missing_container_is_no_failure(fake_engine):
    gone = "/containers/{}?force=1&v=1"
    engine = fake_engine({gone.format("a"): None, gone.format("busy"): {"message": "removal in progress"},
                          "/networks/n": None},
                         statuses={gone.format("a"): 204, gone.format("busy"): 409, "/networks/n": 204})
    api = engine_api.Engine(engine.server_address)
    removed = api.answer(docker.container_rm("a", "missing"))
    assert (removed.stdout, removed.exited) == ("a\n", 0) and "No such object" in removed.stderr
    assert api.answer(docker.container_rm("busy", "a")) == Answer("a\n", "Error response from daemon: removal in progress\n", 1)
    networks = api.answer(docker.network_rm("n", "missing"))
    assert (networks.stdout, networks.exited) == ("n\n", 1) and networks.stderr


def test_names_are_quoted_into_the_path(fake_engine):
    engine = fake_engine({"/images/registry:5000/team/bottle:tag%3F/json": {"Id": "sha256:1"}})
    api = engine_api.Engine(engine.server_address)
    assert api.answer(docker.image_exists("registry:5000/team/bottle:tag?")).stdout == "sha256:1\n"


# -- when the target asks it ---------------------------------------------------
def target_on(monkeypatch, socket_path, runs, echo=False):
    monkeypatch.setenv("BOTTLE_ENGINE_API", "on")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_path}")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    context = MockContext(config=Config(overrides={"run": {"echo": echo}}), run=runs)
    return LocalTarget(context, "/nonexistent-stage")


def test_a_local_target_asks_the_socket_and_the_cli_for_the_rest(fake_engine, monkeypatch, tmp_path):
    engine = fake_engine({"/containers/a/json": {"Id": "c0ffee"}})
    listing = docker.image_ls("a")  # not one engine_api answers
    target = target_on(monkeypatch, engine.server_address, {shlex.join(listing): Result("from the cli\n")})
    assert target.run(docker.container_inspect("a", docker.ID)).stdout == "c0ffee\n"
    assert target.run(listing).stdout == "from the cli\n"  # MockContext: the CLI
    assert [path for _, path, _ in engine.requests] == ["/containers/a/json"]


def test_an_engine_the_socket_does_not_reach_is_left_to_the_cli(monkeypatch, tmp_path):
    argv = docker.container_inspect("a", docker.ID)
    target = target_on(monkeypatch, tmp_path / "no-engine.sock", {shlex.join(argv): Result("from the cli\n")})
    assert target.run(argv).stdout == "from the cli\n"
    engine = target.engine()
    assert engine is not None and engine.unreachable  # not asked again: the CLI's from now on
    def asked_again(self):
        raise AssertionError("the unreachable socket was asked again")

    monkeypatch.setattr(engine_api._UnixConnection, "connect", asked_again)
    assert target.run(argv).stdout == "from the cli\n"


def test_inv_echo_shows_every_command_so_the_cli_runs_them(fake_engine, monkeypatch, capsys):
    engine = fake_engine({"/containers/a/json": {"Id": "c0ffee"}})
    argv = docker.container_inspect("a\x1b[2J", docker.ID)  # a terminal escape, shown not sent
    target = target_on(monkeypatch, engine.server_address, {shlex.join(argv): Result("from the cli\n")}, echo=True)
    assert target.run(argv).stdout == "from the cli\n" and engine.requests == []
    shown = capsys.readouterr().err
    assert "$ docker container inspect --format '{{.Id}}' 'a\\x1b[2J'" in shown and "\x1b" not in shown


def test_only_the_execs_and_network_creates_bottle_asks_for_are_answered():
    """Their shapes exactly (docker.exec_, docker.bounded, docker.network_create); any other
    option (stdin, a terminal, a short or `=` form, a subnet) is the CLI's."""
    assert engine_api._exec_spec(["--user", "0", "--workdir", "/w", "c", "sh", "x"]) == ("c", ["sh", "x"], "0", "/w", [])
    assert engine_api._exec_spec(["--env", "A=1", "--env", "B=", "c", "true"]) == ("c", ["true"], None, None, ["A=1", "B="])
    for rest in (["--interactive", "c", "true"], ["--tty", "c", "true"], ["-u", "0", "c", "true"],
                 ["--user=0", "c", "true"], ["--env", "A", "c", "true"], ["-e", "A=1", "c", "true"], ["c"],
                 ["--user", "0"], ["-c", "true"]):
        assert engine_api._exec_spec(rest) is None, rest
    assert engine_api._network_spec(["--internal", "--opt", "a=b=c", "--label", "x=y"]) == (True, {"a": "b=c"}, {"x": "y"})
    for options in (["--subnet", "10.0.0.0/8"], ["--label", "no-value"], ["--opt"], ["--label", "x=y", "--internal"]):
        assert engine_api._network_spec(options) is None, options
    engine = engine_api.Engine("/nonexistent.sock")
    exec_argv = docker.exec_("c", ["true"])
    limit = str(docker.OUTPUT_LIMIT)
    assert engine.answer(["sh", "-c", docker.BOUNDED, "what", "1s", limit, *exec_argv]) is None  # not bounded's
    assert engine.answer(["sh", "-c", docker.BOUNDED, "what", "1", "8M", *exec_argv]) is None
    assert engine.answer(["sh", "-c", docker.BOUNDED + " ", "what", "1", limit, *exec_argv]) is None
