"""Where a bottle's docker commands run: the local engine, or a remote Docker host over SSH
(Fabric), with one SSH connection per host for the whole run, not one per step."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .state import state_root
from .target import LocalTarget, RemoteTarget, Target

if TYPE_CHECKING:
    from fabric import Connection

_CONNECTIONS: dict[str, Connection] = {}


def target_for(c, remote: str | None) -> Target:
    dry = bool(c.config.run.get("dry", False))
    if not remote:
        return LocalTarget(c, state_root(), dry=dry)
    if remote not in _CONNECTIONS:
        from .sshconfig import connection  # resolves like `ssh` (Include, Match, ProxyJump)

        _CONNECTIONS[remote] = connection(remote)
    return RemoteTarget(_CONNECTIONS[remote], dry=dry)


def close_connections() -> None:
    while _CONNECTIONS:
        _CONNECTIONS.popitem()[1].close()
