"""`--on HOST` as OpenSSH resolves it: `ssh -G` evaluates the user's whole config
(Include, Match, ProxyJump, IdentityFile, ...), which paramiko's own parser does not
(it ignores Include, common in real configs). The result becomes an explicit Fabric
Connection; Fabric's own ssh-config loading is switched off so nothing is applied twice.

BOTTLE_SSH_CONFIG=FILE makes ssh read FILE instead of ~/.ssh/config (`ssh -F`).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

_PORT = re.compile(r"^(?P<host>[^:\[\]]+):(?P<port>[0-9]{1,5})$")


@dataclass(frozen=True)
class SshHost:
    hostname: str
    user: str | None = None
    port: int = 22
    identity_files: tuple[str, ...] = ()
    proxy_jump: str | None = None      # the first hop of ProxyJump (the rest resolve through it)
    proxy_command: str | None = None
    identities_only: bool = False
    options: dict = field(default_factory=dict)


def split(remote: str) -> tuple[str, int | None]:
    """`user@host:port` (bottle's own shorthand) -> (`user@host`, port); ssh itself has no `:port`."""
    found = _PORT.match(remote)
    return (found["host"], int(found["port"])) if found else (remote, None)


def ssh_g_argv(remote: str, config_file: str | None = None) -> list[str]:
    destination, port = split(remote)
    argv = ["ssh", "-G"]
    if config_file:
        argv += ["-F", config_file]
    if port:
        argv += ["-p", str(port)]
    return argv + ["--", destination]


def parse(output: str) -> SshHost:
    """`ssh -G` output: one lower-case `key value` per line; identityfile may repeat."""
    options: dict[str, list[str]] = {}
    for line in output.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            options.setdefault(key.lower(), []).append(value.strip())

    def one(key: str) -> str | None:
        value = (options.get(key) or [""])[0]
        return None if value in ("none", "") else value

    jump = one("proxyjump")
    files = tuple(os.path.expanduser(path) for path in options.get("identityfile", []))
    return SshHost(
        hostname=one("hostname") or "",
        user=one("user"),
        port=int(one("port") or 22),
        identity_files=tuple(path for path in files if os.path.isfile(path)),
        proxy_jump=jump.split(",")[0] if jump else None,
        proxy_command=one("proxycommand"),
        identities_only=one("identitiesonly") == "yes",
        options={key: values[0] for key, values in options.items()},
    )


def resolve(remote: str) -> SshHost | None:
    """The host as `ssh` would reach it; None when no OpenSSH client is installed."""
    if not shutil.which("ssh"):
        return None
    argv = ssh_g_argv(remote, os.environ.get("BOTTLE_SSH_CONFIG"))
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if result.returncode:
        from .errors import BottleError

        raise BottleError(f"--on {remote}: ssh cannot resolve this host", result.stderr.strip()[-1000:])
    return parse(result.stdout)


def connection(remote: str, depth: int = 0):
    """A Fabric Connection to `remote` with what OpenSSH's config says about it."""
    from fabric import Config, Connection  # local runs never pay for paramiko
    from fabric.runners import Remote

    from .target import POLL_SECONDS

    class PromptRemote(Remote):
        input_sleep = POLL_SECONDS  # as the local runner: see target.PromptLocal

    runners = {"runners": {"remote": PromptRemote}}
    host = resolve(remote)
    if host is None:  # no OpenSSH client: Fabric's own (paramiko's) config reading
        destination, port = split(remote)
        return Connection(destination, port=port, config=Config(overrides=runners))
    config = Config(overrides={**runners, "load_ssh_configs": False})
    connect_kwargs: dict = {}
    if host.identity_files:
        connect_kwargs["key_filename"] = list(host.identity_files)
    if host.identities_only:
        connect_kwargs["allow_agent"] = False  # IdentitiesOnly: the listed keys, not the agent's others
        connect_kwargs["look_for_keys"] = False
    gateway = None
    if host.proxy_jump and depth < 5:
        gateway = connection(host.proxy_jump, depth + 1)
    elif host.proxy_command:
        gateway = host.proxy_command
    return Connection(host.hostname, user=host.user, port=host.port, config=config,
                      connect_kwargs=connect_kwargs, gateway=gateway)
