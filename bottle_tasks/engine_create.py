"""`docker create` as `docker.create` builds it, translated to the engine API's request.

Why: a launch's three to five creates run one after the other on its critical path, each a CLI
start-up (~12 ms of CPU). `translate` gives the body docker CLI 28 sends an API 1.41 engine, or
None for any flag, value or env file it does not translate exactly: the CLI runs then. Nothing
is dropped silently (the hardening is asked for here); the engine test compares the containers.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

API_VERSION = "1.41"  # the engine's API whose request this is (the engine test's)

SWITCHES = {"--init", "--read-only"}
REPEATED = {"--label", "--log-opt", "--network-alias", "--cap-drop", "--security-opt", "--tmpfs", "--dns",
            "--env-file", "--env", "--volume"}
SINGLE = {"--name", "--network", "--log-driver", "--user", "--memory", "--memory-swap", "--cpus", "--pids-limit",
          "--runtime"}

# The shapes answered (anything else is the CLI's): plain names, no option syntax of their own.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]+")
ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]*")  # a label's, a log option's
PLAIN_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?|")  # printable ASCII, no outer spaces
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?")
IMAGE = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?")
MEMORY = re.compile(r"([0-9]+(?:\.[0-9]+)?)([bkmgtpBKMGTP]?)")  # units.RAMInBytes: 1024-based
CPUS = re.compile(r"[0-9]{1,6}(\.[0-9]{1,9})?")  # exact as a decimal: NanoCpus
PIDS = re.compile(r"0|[1-9][0-9]{0,17}")  # pflag reads base 0: no leading zeros here
TMPFS = re.compile(r"(/[^:\s]*)(?::([A-Za-z0-9=,._-]*))?")
BIND = re.compile(r"(/[^:\s]*|[A-Za-z0-9][A-Za-z0-9_.-]+):(/[^:\s]*)(:ro|:rw)?")
LOCALHOST = re.compile(r"((127\.([0-9]{1,3}\.){2}[0-9]{1,3})|(::1)$)")  # the CLI warns of these
SPECIAL_NETWORKS = {"default", "bridge", "host", "none"}
UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
LONGEST_LINE = 60_000  # the CLI's line scanner stops at 64 KiB


def translate(argv: list[str]) -> tuple[str, dict] | None:
    """(the container's name, the request's JSON body) of `argv`, or None."""
    if argv[:2] != ["docker", "create"]:
        return None
    flags, image, command = _flags(argv[2:])
    if flags is None or image is None or not IMAGE.fullmatch(image):
        return None
    one = {flag: values[0] for flag, values in flags.items() if flag in SINGLE}
    name, network = one.get("--name"), one.get("--network")
    if name is None or not NAME.fullmatch(name) or network is None or not NAME.fullmatch(network) \
            or network in SPECIAL_NETWORKS:
        return None
    labels, log_config, env, binds = _labels(flags), _log(flags, one), _env(flags), _binds(flags)
    tmpfs, resources, dns = _tmpfs(flags), _resources(one), _dns(flags)
    if labels is None or log_config is None or env is None or binds is None or tmpfs is None \
            or resources is None or dns is None:
        return None
    aliases = flags.get("--network-alias", [])
    if not all(ALIAS.fullmatch(alias) for alias in aliases) \
            or not set(flags.get("--cap-drop", [])) <= {"ALL"} \
            or not set(flags.get("--security-opt", [])) <= {"no-new-privileges"} \
            or not USER.fullmatch(one.get("--user", "x")) or not NAME.fullmatch(one.get("--runtime", "xx")):
        return None
    config = {
        "Hostname": "", "Domainname": "", "User": one.get("--user", ""),
        "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "Tty": False, "OpenStdin": False,
        "StdinOnce": False, "Env": env or None, "Cmd": command or None, "Image": image, "Volumes": {},
        "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": labels,
    }
    host = {
        "Binds": binds or None, "ContainerIDFile": "", "LogConfig": log_config, "NetworkMode": network,
        "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
        "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None,
        "CapDrop": flags.get("--cap-drop"), "CgroupnsMode": "", "Dns": dns, "DnsOptions": [], "DnsSearch": [],
        "ExtraHosts": None, "GroupAdd": None, "IpcMode": "", "Cgroup": "", "Links": None, "OomScoreAdj": 0,
        "PidMode": "", "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": "--read-only" in flags,
        "SecurityOpt": flags.get("--security-opt"), **({"Tmpfs": tmpfs} if tmpfs else {}), "UTSMode": "",
        "UsernsMode": "", "ShmSize": 0, **({"Runtime": one["--runtime"]} if "--runtime" in one else {}),
        "Isolation": "", "CpuShares": 0, "Memory": resources["Memory"], "NanoCpus": resources["NanoCpus"],
        "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0,
        "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
        "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0,
        "MemorySwap": resources["MemorySwap"], "MemorySwappiness": -1, "OomKillDisable": False,
        "PidsLimit": resources["PidsLimit"], "Ulimits": [],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "MaskedPaths": None,
        "ReadonlyPaths": None, **({"Init": True} if "--init" in flags else {}),
    }
    # One network: the CLI leaves its endpoint out unless there are aliases to set on it.
    endpoints = {network: {**ENDPOINT, "Aliases": aliases}} if aliases else {}
    return name, {**config, "HostConfig": host, "NetworkingConfig": {"EndpointsConfig": endpoints}}


ENDPOINT = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
            "GwPriority": 0, "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}


def _flags(args: list[str]) -> tuple[dict[str, list[str]] | None, str | None, list[str]]:
    """({flag: its values}, image, command): the flags up to the first operand (the CLI's too:
    it stops reading flags there); None where one is not ours, or a value looks like a flag."""
    flags: dict[str, list[str]] = {}
    at = 0
    while at < len(args) and args[at].startswith("-"):
        flag = args[at]
        if flag in SWITCHES:
            flags.setdefault(flag, [])
            at += 1
            continue
        if flag not in REPEATED | SINGLE or at + 1 >= len(args) or args[at + 1].startswith("-") \
                or (flag in SINGLE and flag in flags):
            return None, None, []
        flags.setdefault(flag, []).append(args[at + 1])
        at += 2
    if at >= len(args):
        return None, None, []
    return flags, args[at], args[at + 1:]


def _pairs(values: list[str], key: re.Pattern) -> dict[str, str] | None:
    """`k=v` values as a map (the last of a key wins, as in the CLI's map)."""
    pairs = [value.partition("=") for value in values]
    if not all(sep and key.fullmatch(k) and PLAIN_VALUE.fullmatch(v) for k, sep, v in pairs):
        return None
    return {k: v for k, _, v in pairs}


def _labels(flags: dict[str, list[str]]) -> dict[str, str] | None:
    return _pairs(flags.get("--label", []), KEY)


def _log(flags: dict[str, list[str]], one: dict[str, str]) -> dict | None:
    driver = one.get("--log-driver", "")
    options = _pairs(flags.get("--log-opt", []), KEY)
    if options is None or not (driver == "" or NAME.fullmatch(driver)) or (driver == "none" and options):
        return None
    return {"Type": driver, "Config": options}


def _env(flags: dict[str, list[str]]) -> list[str] | None:
    """The env files' entries in order, then `--env`'s (whose order the CLI leaves to a Go map's:
    distinct keys only, here in argv order)."""
    entries: list[str] = []
    for path in flags.get("--env-file", []):
        read = env_file(path)
        if read is None:
            return None
        entries += read
    given = flags.get("--env", [])
    keys = [value.partition("=")[0] for value in given]
    if len(set(keys)) != len(keys) or not all("=" in value and ENV_KEY.fullmatch(key)
                                              for key, value in zip(keys, given, strict=True)):
        return None  # `--env K` takes the controller's own K: the CLI's to do
    return entries + given


def env_file(path: str) -> list[str] | None:
    """The entries of an env file as the CLI reads it: blank and `#` lines skipped, `K=V` as it
    is (no quotes removed, no trimming). None for anything unusual (unreadable, invalid UTF-8, a
    BOM, a CR, leading whitespace, a line without `=`, which the CLI fills from its own
    environment, a key that is not a plain name, a very long line): the CLI says what it makes of it."""
    if not os.path.isabs(path):
        return None
    try:
        data = Path(path).read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if text.startswith("\ufeff") or "\r" in text or "\0" in text:
        return None
    entries = []
    for line in text.split("\n"):
        if line == "" or line.startswith("#"):
            continue
        key, sep, _ = line.partition("=")
        if not sep or not ENV_KEY.fullmatch(key) or len(line.encode()) > LONGEST_LINE:
            return None
        entries.append(line)
    return entries


def _binds(flags: dict[str, list[str]]) -> list[str] | None:
    """`--volume SRC:DST[:ro|rw]`, a host path or a named volume: HostConfig.Binds as written (an
    anonymous volume, a relative source or other modes are the CLI's)."""
    volumes = flags.get("--volume", [])
    if len(set(volumes)) != len(volumes) or not all(BIND.fullmatch(volume) for volume in volumes):
        return None
    return volumes


def _tmpfs(flags: dict[str, list[str]]) -> dict[str, str] | None:
    mounts: dict[str, str] = {}
    for value in flags.get("--tmpfs", []):
        found = TMPFS.fullmatch(value)
        if found is None:
            return None
        mounts[found[1]] = found[2] or ""
    return mounts


def _resources(one: dict[str, str]) -> dict[str, int] | None:
    cpus, pids = one.get("--cpus", "0"), one.get("--pids-limit", "0")
    memory, swap = _in_bytes(one.get("--memory", "0")), _in_bytes(one.get("--memory-swap", "0"))
    if memory is None or swap is None or not CPUS.fullmatch(cpus) or not PIDS.fullmatch(pids):
        return None
    return {"Memory": memory, "MemorySwap": swap, "NanoCpus": int(Decimal(cpus) * 1_000_000_000),
            "PidsLimit": int(pids)}


def _in_bytes(text: str) -> int | None:
    """A size as Go's units.RAMInBytes reads it (a float64 times the unit, truncated); None
    for one it would read otherwise than exactly."""
    size = MEMORY.fullmatch(text)
    if size is None:
        return None
    in_bytes = int(float(size[1]) * UNITS[size[2].lower()])
    return in_bytes if in_bytes < 1 << 53 else None


def _dns(flags: dict[str, list[str]]) -> list[str] | None:
    """IPv4 addresses as the CLI prints them back (it normalises through Go's net.IP); a loopback
    one, which the CLI warns of, or IPv6 are the CLI's."""
    servers = flags.get("--dns", [])
    for server in servers:
        try:
            canonical = str(ipaddress.IPv4Address(server)) == server
        except ValueError:
            return None
        if not canonical or LOCALHOST.search(server):
            return None
    return servers


def cli_adds_nothing(environ: Mapping[str, str]) -> bool:
    """Whether the CLI would send the body as `translate` makes it: not with content trust on (it
    resolves the image's digest first), a default platform, or proxies in its config file (it
    adds their variables to the container's environment)."""
    if environ.get("DOCKER_CONTENT_TRUST") or environ.get("DOCKER_DEFAULT_PLATFORM"):
        return False
    config = Path(environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        text = config.read_text()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        found = json.loads(text)
    except ValueError:
        return False
    return isinstance(found, dict) and not found.get("proxies")
