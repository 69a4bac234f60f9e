"""Where a bottle's docker commands run: the local engine, or a remote Docker host over SSH
(Fabric), with one SSH connection per host for the whole run, not one per step."""
from __future__ import annotations

from . import run
from .errors import BottleError
from .state import state_root
from .target import LocalTarget, RemoteTarget, Target


def target_for(c, remote: str | None) -> Target:
    dry = bool(c.config.run.get("dry", False))
    if remote is not None and not remote.strip():  # `--on "$UNSET"`: never the local engine unasked
        raise BottleError("--on names no host (an empty value)", "give the Docker host, as `ssh HOST` names it, "
                          "or leave --on out for the local engine")
    if not remote:
        return LocalTarget(c, state_root(), dry=dry)
    connections = run.now().connections
    if remote not in connections:
        from .sshconfig import connection  # resolves like `ssh` (Include, Match, ProxyJump)

        connections[remote] = connection(remote)
    return RemoteTarget(connections[remote], dry=dry)


def close_connections() -> None:
    connections = run.now().connections
    while connections:
        connections.popitem()[1].close()
