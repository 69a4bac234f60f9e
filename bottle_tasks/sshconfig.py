"""`--on HOST` as OpenSSH resolves it: `ssh -G` evaluates the user's whole config
(Include, Match, ProxyJump, IdentityFile, ...), which paramiko's own parser does not
(it ignores Include, common in real configs). The result becomes an explicit Fabric
Connection; Fabric's own ssh-config loading is switched off so nothing is applied twice.

The host's key is checked as OpenSSH checks it, against the known_hosts files its config
names (UserKnownHostsFile, GlobalKnownHostsFile): Fabric on its own loads none and accepts
any key (paramiko's AutoAddPolicy), so a spoofed host would be handed the stage files, the
operator's API keys among them. An unknown key is refused unless the config says
`StrictHostKeyChecking no`; a changed key is always refused (paramiko's BadHostKeyException).

BOTTLE_SSH_CONFIG=FILE makes ssh read FILE instead of ~/.ssh/config (`ssh -F`).
"""
from __future__ import annotations

import contextlib
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

    @property
    def known_hosts_files(self) -> tuple[str, ...]:
        """The files ssh would look the host's key up in, user's first (`none`: no file)."""
        names = []
        for key in ("userknownhostsfile", "globalknownhostsfile"):
            names += [name for name in self.options.get(key, "").split() if name != "none"]
        return tuple(os.path.expanduser(name) for name in names)

    @property
    def accepts_unknown_keys(self) -> bool:
        """Only an explicit `StrictHostKeyChecking no` (or `off`) lets ssh take an unknown key
        without asking; bottle cannot ask, so `ask`, `yes` and `accept-new` refuse it."""
        return self.options.get("stricthostkeychecking", "ask").lower() in ("no", "off")


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

    from .target import POLL_SECONDS, LinearOutput

    class PromptRemote(LinearOutput, Remote):
        input_sleep = POLL_SECONDS  # as the local runner: see target.PromptLocal

    runners = {"runners": {"remote": PromptRemote}}
    host = resolve(remote)
    if host is None:  # no OpenSSH client: Fabric's own (paramiko's) config reading
        destination, port = split(remote)
        fallback = Connection(destination, port=port, config=Config(overrides=runners))
        hop = fallback
        while isinstance(hop, Connection):  # Fabric made each ProxyJump hop from ~/.ssh/config itself
            check_host_keys(hop, DEFAULT_KNOWN_HOSTS, accept_unknown=False)
            hop = hop.gateway
        return fallback
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
    found = Connection(host.hostname, user=host.user, port=host.port, config=config,
                       connect_kwargs=connect_kwargs, gateway=gateway)
    return check_host_keys(found, host.known_hosts_files, accept_unknown=host.accepts_unknown_keys)


#: OpenSSH's defaults, for when there is no `ssh -G` to ask
DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2", "/etc/ssh/ssh_known_hosts",
                       "/etc/ssh/ssh_known_hosts2")


def check_host_keys(connection, files: tuple[str, ...], *, accept_unknown: bool):
    """Make `connection` check the host's key against `files` instead of Fabric's
    accept-anything (see the module's doc). paramiko refuses a key that differs from the
    one recorded; the policy decides about a host recorded nowhere."""
    from paramiko import AutoAddPolicy

    client = connection.client
    for name in files:
        with contextlib.suppress(OSError):  # as ssh: a listed file that is not there holds no keys
            client.load_system_host_keys(os.path.expanduser(name))
    client.set_missing_host_key_policy(AutoAddPolicy() if accept_unknown else RefuseUnknownHost())
    return connection


class RefuseUnknownHost:
    """paramiko's missing-host-key policy that refuses, saying how to record the key."""

    def missing_host_key(self, client, hostname: str, key) -> None:
        from paramiko import SSHException

        raise SSHException(f"the host key of {hostname} ({key.get_name()}) is in no known_hosts file: "
                           f"connect once with `ssh` to check and record it, then run bottle again")
