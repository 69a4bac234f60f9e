"""engine_create: `docker create` as `docker.create` builds it, translated to the body the CLI
sends (each flag, the values the CLI parses), and None for anything else: the CLI runs then. The
engine test compares the containers the two make."""
import json

import pytest
from test_engine_api import fake_engine  # noqa: F401 (a fixture)

from bottle_tasks import docker, engine_api, engine_create

IMAGE = "bottle/firewall:f227accc87fc"
GiB, MiB = 1 << 30, 1 << 20


def body(*flags: str, image: str = IMAGE, command: tuple[str, ...] = ()) -> dict:
    asked = engine_create.translate(["docker", "create", "--name", "b-firewall", "--network", "b-egress",
                                     *flags, image, *command])
    assert asked is not None, flags
    assert asked[0] == "b-firewall"
    return asked[1]


def refused(*flags: str, image: str = IMAGE, named: bool = True) -> bool:
    head = ["--name", "b-firewall", "--network", "b-egress"] if named else []
    return engine_create.translate(["docker", "create", *head, *flags, image]) is None


# -- what a bottle's creates ask ------------------------------------------------------------------
def test_a_sidecar_as_docker_create_builds_it(tmp_path):
    argv = docker.create("b-firewall", IMAGE, {"bottle.slug": "b", "bottle.role": "firewall"}, network="b-egress",
                         aliases=["firewall"], user="1000:1000", read_only=True, tmpfs=["/tmp"],
                         mounts=[f"{tmp_path}:/etc/bottle:ro"], limits={"memory": "512m", "pids-limit": "256"},
                         command=["--firewall", "firewall:3128"])
    name, sent = engine_create.translate(argv)
    host = sent["HostConfig"]
    assert name == "b-firewall"
    assert (sent["Image"], sent["Cmd"], sent["User"], sent["Env"]) == (IMAGE, ["--firewall", "firewall:3128"], "1000:1000", None)
    assert sent["Labels"] == {"bottle.slug": "b", "bottle.role": "firewall"}
    assert (host["Init"], host["ReadonlyRootfs"], host["CapDrop"], host["SecurityOpt"]) == (
        True, True, ["ALL"], ["no-new-privileges"])
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "20m", "max-file": "5"}}
    assert (host["Memory"], host["PidsLimit"], host["NanoCpus"]) == (512 * MiB, 256, 0)
    assert (host["Tmpfs"], host["Binds"], sent["Volumes"]) == ({"/tmp": ""}, [f"{tmp_path}:/etc/bottle:ro"], {})
    assert host["NetworkMode"] == "b-egress" and "Runtime" not in host
    assert sent["NetworkingConfig"]["EndpointsConfig"]["b-egress"]["Aliases"] == ["firewall"]
    assert (host["Dns"], host["DnsOptions"], host["DnsSearch"]) == ([], [], [])
    assert (host["MemorySwappiness"], host["ConsoleSize"], host["RestartPolicy"]) == (
        -1, [0, 0], {"Name": "no", "MaximumRetryCount": 0})


def test_the_agent_as_docker_create_builds_it(tmp_path):
    env_file = tmp_path / "agent.env"
    env_file.write_text("BOTTLE=b\nHTTPS_PROXY=http://firewall:3128\nNO_PROXY=localhost,firewall\n")
    argv = docker.create("b-agent", "bottle/agent:60d05e94ee13", {"bottle.slug": "b"}, network="b-internal",
                         env_file=str(env_file), dns=["192.0.2.53"], mounts=["b-home:/home/agent"], user="1000:1000",
                         limits={"memory": "4g", "memory-swap": "4g", "cpus": "2.0", "pids-limit": "512"},
                         runtime="runsc")
    name, sent = engine_create.translate(argv)
    host = sent["HostConfig"]
    assert name == "b-agent"
    assert sent["Env"] == ["BOTTLE=b", "HTTPS_PROXY=http://firewall:3128", "NO_PROXY=localhost,firewall"]
    assert (host["Memory"], host["MemorySwap"], host["NanoCpus"], host["PidsLimit"]) == (4 * GiB, 4 * GiB,
                                                                                         2_000_000_000, 512)
    assert (host["Dns"], host["Binds"], host["Runtime"], host["ReadonlyRootfs"]) == (
        ["192.0.2.53"], ["b-home:/home/agent"], "runsc", False)
    assert "Tmpfs" not in host
    assert sent["NetworkingConfig"] == {"EndpointsConfig": {}}  # one network, no aliases: the CLI leaves it out


def test_docker_creates_extra_and_anything_after_the_image():
    argv = docker.create("b-x", IMAGE, {}, network="b-n", extra=["--privileged"])
    assert engine_create.translate(argv) is None  # no caller passes `extra`: what it holds is the CLI's
    assert body(command=("sh", "-c", "echo --read-only", "--init"))["Cmd"] == ["sh", "-c", "echo --read-only", "--init"]
    assert body()["HostConfig"].get("Init") is None and body()["Cmd"] is None


# -- each flag -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    ("4g", 4 * GiB), ("512m", 512 * MiB), ("1.5g", 3 * GiB // 2), ("0.25g", GiB // 4), ("1G", GiB), ("7M", 7 * MiB),
    ("3k", 3072), ("100", 100), ("100b", 100), ("2t", 2 << 40), ("1.3m", int(1.3 * MiB)),
])
def test_memory_is_counted_in_powers_of_1024(value, expected):
    assert body("--memory", value)["HostConfig"]["Memory"] == expected


@pytest.mark.parametrize("value, expected", [
    ("1.5", 1_500_000_000), ("0.25", 250_000_000), ("2.0", 2_000_000_000), ("1", 1_000_000_000),
    ("0.000000001", 1), ("3.333333333", 3_333_333_333), ("0", 0),
])
def test_cpus_are_exact_nano_cpus(value, expected):
    assert body("--cpus", value)["HostConfig"]["NanoCpus"] == expected


def test_pids_tmpfs_labels_logs_user_dns_runtime():
    host = body("--pids-limit", "128", "--tmpfs", "/tmp:rw,noexec,nosuid,size=2g", "--tmpfs", "/run",
                "--runtime", "runc", "--dns", "192.0.2.53", "--dns", "10.0.0.2")["HostConfig"]
    assert (host["PidsLimit"], host["Runtime"], host["Dns"]) == (128, "runc", ["192.0.2.53", "10.0.0.2"])
    assert host["Tmpfs"] == {"/tmp": "rw,noexec,nosuid,size=2g", "/run": ""}
    sent = body("--label", "a=1", "--label", "b=", "--label", "c=x=y", "--label", "a=2", "--user", "65534:65534",
                "--log-driver", "json-file", "--log-opt", "max-size=1m")
    assert sent["Labels"] == {"a": "2", "b": "", "c": "x=y"}  # the CLI's map: the last of a key wins
    assert sent["User"] == "65534:65534"
    assert sent["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert "Init" not in sent["HostConfig"] and sent["HostConfig"]["CapDrop"] is None
    assert sent["HostConfig"]["SecurityOpt"] is None and sent["HostConfig"]["ReadonlyRootfs"] is False


def test_volumes_are_binds_as_written(tmp_path):
    sent = body("--volume", f"{tmp_path}:/etc/bottle:ro", "--volume", "b-home:/home/agent", "--volume", "/srv:/srv:rw")
    assert sent["HostConfig"]["Binds"] == [f"{tmp_path}:/etc/bottle:ro", "b-home:/home/agent", "/srv:/srv:rw"]
    assert sent["Volumes"] == {}
    assert body()["HostConfig"]["Binds"] is None


def test_network_aliases_are_set_on_the_network():
    endpoints = body("--network-alias", "firewall", "--network-alias", "fw")["NetworkingConfig"]["EndpointsConfig"]
    assert list(endpoints) == ["b-egress"] and endpoints["b-egress"]["Aliases"] == ["firewall", "fw"]
    assert endpoints["b-egress"]["IPAMConfig"] is None and endpoints["b-egress"]["MacAddress"] == ""


# -- env files ---------------------------------------------------------------------------------
def test_env_files_are_read_as_the_cli_reads_them(tmp_path):
    env_file = tmp_path / "a.env"
    env_file.write_bytes("# a comment\n\nA=1\nB=x y = \"z\" \t\n#C=3\nlower_k=é\nEMPTY=\nLAST=no newline".encode())
    other = tmp_path / "b.env"
    other.write_text("A=again\n")
    sent = body("--env-file", str(env_file), "--env-file", str(other), "--env", "Z=last", "--env", "Y=9")
    assert sent["Env"] == ["A=1", "B=x y = \"z\" \t", "lower_k=é", "EMPTY=", "LAST=no newline", "A=again", "Z=last", "Y=9"]
    (tmp_path / "c.env").write_text("# nothing\n\n")
    assert body("--env-file", str(tmp_path / "c.env"))["Env"] is None  # nothing at all: as without


@pytest.mark.parametrize("content", [
    b"A=1\nNO_VALUE\n",          # the CLI fills it from its own environment
    b"A B=1\n",                  # whitespace in a key: the CLI's error
    b" A=1\n",                   # leading whitespace
    b"\tA=1\n",
    b"   \nA=1\n",               # a line of spaces only
    b"A=1\r\nB=2\r\n",           # CRLF
    b"A=\xff\xfe\n",             # invalid UTF-8: the CLI's error
    b"\xef\xbb\xbfA=1\n",        # a BOM
    b"=1\n",                     # no name
    b"1A=1\n",                   # not a plain name
    b"A.B=1\n",
    b"A=" + b"x" * 70_000 + b"\n",  # longer than the CLI's line scanner takes
])
def test_unusual_env_files_are_the_clis(tmp_path, content):
    env_file = tmp_path / "odd.env"
    env_file.write_bytes(content)
    assert refused("--env-file", str(env_file))


def test_env_files_not_read_are_the_clis(tmp_path):
    assert refused("--env-file", str(tmp_path / "missing.env"))
    assert refused("--env-file", "relative.env")


# -- the CLI's: other flags, values and shapes -----------------------------------------------------
@pytest.mark.parametrize("flags", [
    ["--privileged"], ["--cap-add", "NET_ADMIN"], ["--cap-drop", "NET_RAW"], ["-e", "A=1"], ["--memory=4g"],
    ["--security-opt", "seccomp=unconfined"], ["--security-opt", "no-new-privileges=true"],
    ["--memory", "4GiB"], ["--memory", "4gb"], ["--memory", "1e3"], ["--memory", "-1"], ["--memory", "1.2.3g"],
    ["--cpus", "1e0"], ["--cpus", "1/2"], ["--cpus", "0.0000000001"], ["--cpus", ".5"],
    ["--pids-limit", "010"], ["--pids-limit", "0x10"], ["--pids-limit", "1_000"], ["--pids-limit", "-1"],
    ["--dns", "127.0.0.1"], ["--dns", "::1"], ["--dns", "2001:db8::1"], ["--dns", "010.1.1.1"], ["--dns", "dns.example"],
    ["--volume", "/anonymous"], ["--volume", "./relative:/x"], ["--volume", "/a:/b:z"], ["--volume", "/a:/b:ro,nocopy"],
    ["--volume", "c:/x"], ["--volume", "/a:/b", "--volume", "/a:/b"],
    ["--tmpfs", "relative"], ["--tmpfs", "/t:size=1m opt"],
    ["--env", "NO_VALUE"], ["--env", "A=1", "--env", "A=2"], ["--env", "=1"],
    ["--label", "novalue"], ["--label", " a=1"], ["--log-opt", "max-size"], ["--log-driver", "none", "--log-opt", "a=b"],
    ["--name", "again"], ["--network", "b-other"], ["--network-alias", "-x"], ["--user", ""], ["--runtime", "a b"],
    ["--init", "--", "x"], ["--read-only", "--unknown"],
])
def test_anything_else_is_the_clis(flags):
    assert refused(*flags)


@pytest.mark.parametrize("argv", [
    ["docker", "create", "--name", "x1", IMAGE],                                       # no network
    ["docker", "create", "--network", "n1", IMAGE],                                     # no name
    ["docker", "create", "--name", "x1", "--network", "host", IMAGE],                   # not a network of ours
    ["docker", "create", "--name", "x1", "--network", "n1,alias=a", IMAGE],            # the CLI's advanced syntax
    ["docker", "create", "--name", "x1", "--network", "n1"],                            # no image
    ["docker", "create", "--name", "x1", "--network", "n1", "Upper/Case"],              # not a reference
    ["docker", "create", "--name", "x1", "--network", "n1", "localhost:5000/img:1"],    # a registry: not ours
    ["docker", "create", "--name", "x1", "--network", "n1", "img@sha256:" + "0" * 64],
    ["docker", "container", "create", "--name", "x1", "--network", "n1", IMAGE],
    ["docker", "run", "--name", "x1", "--network", "n1", IMAGE],
])
def test_other_shapes_are_the_clis(argv):
    assert engine_create.translate(argv) is None


@pytest.mark.parametrize("environ, config, expected", [
    ({}, None, True),
    ({}, {"auths": {}, "currentContext": "default"}, True),
    ({}, {"proxies": {"default": {"httpProxy": "http://proxy:3128"}}}, False),  # the CLI adds its variables
    ({}, "not json", False),
    ({"DOCKER_CONTENT_TRUST": "1"}, None, False),  # it resolves the image's digest first
    ({"DOCKER_DEFAULT_PLATFORM": "linux/arm64"}, None, False),
])
def test_what_the_clis_own_settings_would_add_is_the_clis(tmp_path, environ, config, expected):
    if config is not None:
        (tmp_path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    assert engine_create.cli_adds_nothing({"DOCKER_CONFIG": str(tmp_path), **environ}) is expected


# -- what it answers -------------------------------------------------------------------------------
ARGV = docker.create("b-x", IMAGE, {"bottle.slug": "b"}, network="b-n", read_only=True)
CREATED = "/containers/create?name=b-x"


@pytest.fixture
def no_docker_config(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-config"))
    for name in ("DOCKER_CONTENT_TRUST", "DOCKER_DEFAULT_PLATFORM"):
        monkeypatch.delenv(name, raising=False)


def test_the_answer_is_the_clis(fake_engine, no_docker_config):  # noqa: F811
    version = {"/version": {"ApiVersion": "1.41"}}
    engine = fake_engine({**version, CREATED: {"Id": "f" * 64, "Warnings": ["swap limit not supported"]}},
                         {CREATED: 201})
    answer = engine_api.Engine(engine.server_address).answer(ARGV)
    assert (answer.stdout, answer.stderr, answer.exited) == ("f" * 64 + "\n", "WARNING: swap limit not supported\n", 0)
    assert engine.requests[-1] == ("POST", CREATED, engine_create.translate(ARGV)[1])


def test_engine_errors_are_the_clis(fake_engine, no_docker_config):  # noqa: F811
    taken = fake_engine({"/version": {"ApiVersion": "1.41"},
                         CREATED: {"message": 'Conflict. The container name "/b-x" is already in use'}}, {CREATED: 409})
    answer = engine_api.Engine(taken.server_address).answer(ARGV)
    assert (answer.stdout, answer.stderr, answer.exited) == (
        "", 'Error response from daemon: Conflict. The container name "/b-x" is already in use\n', 1)


def test_a_missing_image_is_left_to_the_cli(fake_engine, no_docker_config):  # noqa: F811
    missing = fake_engine({"/version": {"ApiVersion": "1.41"}, CREATED: {"message": "No such image: " + IMAGE}},
                          {CREATED: 404})
    assert engine_api.Engine(missing.server_address).answer(ARGV) is None  # the CLI pulls, or says why not


def test_another_api_version_is_the_clis(fake_engine, no_docker_config):  # noqa: F811
    engine = fake_engine({"/version": {"ApiVersion": "1.47"}})
    assert engine_api.Engine(engine.server_address).answer(ARGV) is None
    assert [path for _, path, _ in engine.requests] == ["/version"]  # nothing created


def test_the_api_version_is_asked_once_for_all_creates(fake_engine, no_docker_config):  # noqa: F811
    """The engine takes 5-7 ms to answer /version: a launch's creates share one answer, though
    each step has an `Engine` of its own."""
    engine = fake_engine({"/version": {"ApiVersion": "1.41"}, CREATED: {"Id": "f" * 64}}, {CREATED: 201})
    assert engine_api.Engine(engine.server_address).answer(ARGV).exited == 0
    assert engine_api.Engine(engine.server_address).answer(ARGV).exited == 0
    assert [path for _, path, _ in engine.requests] == ["/version", CREATED, CREATED]


def test_an_engine_that_did_not_say_its_version_is_asked_again(fake_engine, no_docker_config):  # noqa: F811
    engine = fake_engine({"/version": {"message": "busy"}}, {"/version": 500})
    api = engine_api.Engine(engine.server_address)
    assert api.answer(ARGV) is None and api.answer(ARGV) is None  # the CLI's, each time
    assert [path for _, path, _ in engine.requests] == ["/version", "/version"]
