"""The sidecar pattern: how every sidecar container of a bottle (firewall, egress proxy, git
gate, supervise) is started. Its config and secrets reach it only as 0600 files in its stage
dir, mounted read-only at /etc/bottle and owned by the user it runs as (never root); its
root file system is read-only, with a private /tmp; it has no capabilities and cannot gain
privileges (docker.run's defaults for every container), and memory and pids limits."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .containers import start
from .errors import BottleError
from .schema import has_control

if TYPE_CHECKING:
    from .selection import Bottle

CONFIG_DIR = "/etc/bottle"
# When bottle runs as root, the sidecars do not: they get their stage files, and run as,
# the unprivileged `nobody` (no user namespaces: in-container root is host root).
UNPRIVILEGED = 65534


def sidecar_user(bottle: Bottle) -> tuple[int, int]:
    """The uid:gid the sidecars run as: the owner of the stage files, never root."""
    uid, gid = bottle.target.ids()
    return (UNPRIVILEGED, UNPRIVILEGED) if uid == 0 else (uid, gid)


def hand_over(bottle: Bottle, role: str = "firewall") -> None:
    """A sidecar reads its 0600 stage files as their owner: make them its own."""
    if bottle.target.ids()[0] == 0:
        bottle.target.chown_tree(bottle.stage(role), *sidecar_user(bottle))


def secret_values(bottle: Bottle, names, field: str, sidecar: str,
                  staged: dict[str, str] | None = None) -> dict[str, str]:
    """The values of the secrets a sidecar holds for the agent, from the controller's environment
    (or, for a live change, `staged`: what the running sidecar already has). A missing one
    fails before anything is written, naming the variable and the manifest field."""
    values = {name: os.environ.get(name) or (staged or {}).get(name, "") for name in sorted(set(names))}
    missing = [name for name, value in values.items() if not value]
    if missing and not bottle.dry:
        raise BottleError(
            f"{bottle.manifest.path}: agents.{bottle.agent.name}.{field}: the secret(s) "
            f"{', '.join(missing)} are not set in this shell",
            f"export {missing[0]}=... (the value stays on this machine and in the {sidecar}; "
            "the agent never holds it), then launch again")
    broken = [name for name, value in values.items() if has_control(value)]
    if broken and not bottle.dry:  # a header value on one line; the sidecar would refuse it after the build
        raise BottleError(f"the secret {broken[0]} holds a line break or another control character",
                          f"set {broken[0]} to the value alone (a trailing newline from a file: "
                          f'export {broken[0]}="$(cat FILE)" drops it)')
    return values


def start_sidecar(bottle: Bottle, role: str, step: str, *, network: str, limits: dict[str, str],
                  tmpfs: str = "/tmp", **options) -> tuple[str, bool]:
    """`containers.start` of the `role` sidecar (its image, its stage dir), hardened as above;
    `options`: connect, aliases, inputs, command."""
    uid, gid = sidecar_user(bottle)
    return start(bottle, role, step, bottle.plan.images[role].tag, network=network,
                 user=f"{uid}:{gid}", read_only=True, tmpfs=[tmpfs],
                 mounts=[f"{bottle.stage(role)}:{CONFIG_DIR}:ro"], limits=limits, **options)
