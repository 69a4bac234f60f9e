"""The only place that builds docker argv. Pure functions: argv lists in, argv lists out."""
from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping

LABEL_SLUG = "bottle.slug"
LABEL_ROLE = "bottle.role"
LABEL_MANAGED = "bottle.managed"
LABEL_CONFIG = "bottle.config"  # what a container was made from (containers.config_digest)


# -- inspect formats -----------------------------------------------------------
# Every Go template bottle passes to `docker ... inspect --format`, named: the callers read
# what they print, and `engine_api` prints the same for each without the CLI.
ID = "{{.Id}}"
CONFIG_LABELS = "{{json .Config.Labels}}"
NAME_AND_CONFIG_LABELS = "{{.Name}} {{json .Config.Labels}}"
NAME_AND_RUNNING = "{{.Name}} {{.State.Running}}"
RUNNING_CONFIG_NETWORKS = (f'{{{{.State.Running}}}}|{{{{index .Config.Labels "{LABEL_CONFIG}"}}}}|'
                           "{{range $net, $_ := .NetworkSettings.Networks}}{{$net}} {{end}}")
LABELS = "{{json .Labels}}"  # of a network or a volume
NAME_AND_LABELS = "{{.Name}} {{json .Labels}}"
NAME_AND_SUBNETS = "{{.Name}} {{range .IPAM.Config}}{{.Subnet}} {{end}}"
ATTACHED_NAMES = "{{range .Containers}}{{.Name}} {{end}}"
REPO_TAGS = "{{json .RepoTags}}"


def _labels(labels: Mapping[str, str]) -> list[str]:
    argv: list[str] = []
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    return argv


# -- images ------------------------------------------------------------------
def image_exists(tag: str) -> list[str]:
    return ["docker", "image", "inspect", "--format", ID, tag]


def images_inspect(tags: Iterable[str], fmt: str) -> list[str]:
    """One call for several images: one output line each (a missing one fails the call)."""
    return ["docker", "image", "inspect", "--format", fmt, *tags]


def image_labels(tag: str) -> list[str]:
    return ["docker", "image", "inspect", "--format", CONFIG_LABELS, tag]


def image_ls(reference: str) -> list[str]:
    return ["docker", "image", "ls", "--quiet", "--filter", f"reference={reference}"]


def image_rm(image_ids: list[str], force: bool = True) -> list[str]:
    return ["docker", "image", "rm", *(["--force"] if force else []), *image_ids]


def build(tag: str, dockerfile: str, context: str, build_args: Mapping[str, str],
          labels: Mapping[str, str], quiet: bool = True) -> list[str]:
    """`quiet=False`: the builder's `Step N/M` lines, for the progress display. `--force-rm`:
    a failed build leaves no stopped container of its failed step behind (the legacy
    builder keeps it otherwise, one per failure)."""
    argv = ["docker", "build", *(["--quiet"] if quiet else []), "--force-rm", "--tag", tag, "--file", dockerfile]
    for key, value in sorted(build_args.items()):
        argv += ["--build-arg", f"{key}={value}"]
    return argv + _labels(labels) + [context]


# -- networks ----------------------------------------------------------------
def network_create(name: str, labels: Mapping[str, str], internal: bool) -> list[str]:
    argv = ["docker", "network", "create", "--driver", "bridge"]
    if internal:
        # --internal drops routing out, but the host keeps an address on the bridge,
        # and every host service listening on 0.0.0.0 answers there. Without an
        # address on the bridge the host is unreachable; containers still talk (L2)
        # and Docker's embedded DNS still resolves their names.
        argv += ["--internal", "--opt", "com.docker.network.bridge.inhibit_ipv4=true"]
    return argv + _labels(labels) + [name]


def network_inspect(name: str, fmt: str) -> list[str]:
    return ["docker", "network", "inspect", "--format", fmt, name]


def network_inspect_many(names: list[str], fmt: str) -> list[str]:
    """One call for several networks: one output line each."""
    return ["docker", "network", "inspect", "--format", fmt, *names]


def network_rm(*names: str) -> list[str]:
    return ["docker", "network", "rm", *names]


def network_connect(network: str, container: str, aliases: Iterable[str] = ()) -> list[str]:
    argv = ["docker", "network", "connect"]
    for alias in aliases:
        argv += ["--alias", alias]
    return argv + [network, container]


def network_disconnect(network: str, container: str) -> list[str]:
    return ["docker", "network", "disconnect", "--force", network, container]


# A listing's rows as JSON, with the two labels bottle reads asked for by name: the CLI's
# `.Labels` joins every label with commas, and a value may hold one (the workspace image's
# bottle.workspace.left-out lists file names, some of them the agent's: `x,bottle.slug=other`).
_labelled = f'"Slug":{{{{json (.Label "{LABEL_SLUG}")}}}},"Role":{{{{json (.Label "{LABEL_ROLE}")}}}}'
CONTAINER_ROW = '{"Names":{{json .Names}},"State":{{json .State}},"Status":{{json .Status}},' + _labelled + "}"
NAMED_ROW = '{"Name":{{json .Name}},' + _labelled + "}"


def network_ls(label_filter: str) -> list[str]:
    return ["docker", "network", "ls", "--filter", f"label={label_filter}", "--format", NAMED_ROW]


# -- volumes -----------------------------------------------------------------
def volume_create(name: str, labels: Mapping[str, str]) -> list[str]:
    return ["docker", "volume", "create", *_labels(labels), name]


def volume_inspect(name: str, fmt: str) -> list[str]:
    return ["docker", "volume", "inspect", "--format", fmt, name]


def volume_ls(label_filter: str) -> list[str]:
    return ["docker", "volume", "ls", "--filter", f"label={label_filter}", "--format", NAMED_ROW]


def volume_rm(name: str) -> list[str]:
    return ["docker", "volume", "rm", name]


# -- containers --------------------------------------------------------------
def container_inspect(name: str, fmt: str) -> list[str]:
    return ["docker", "container", "inspect", "--format", fmt, name]


def container_inspect_many(names: Iterable[str], fmt: str) -> list[str]:
    """One call for several containers: one output line each (a missing one fails the call)."""
    return ["docker", "container", "inspect", "--format", fmt, *names]


def container_start(name: str) -> list[str]:
    return ["docker", "start", name]


def side_by_side(commands: list[list[str]]) -> list[str]:
    """One command that runs several docker commands at once (the same locally and over SSH)
    and fails if any of them failed; their output is dropped, their errors reach stderr.
    (`docker network create` one after another waits for each in turn.) A Ctrl-C stops them
    all, as any docker command in flight (the CLI takes back the SIGINT a non-interactive
    shell's background jobs ignore), and the engine may still make what was asked for: the
    caller looks for it before the rollback (`names.appears`)."""
    if len(commands) == 1:
        return commands[0]
    jobs = "".join(f'{shlex.join(argv)} >/dev/null & pids="$pids $!"; ' for argv in commands)
    return ["sh", "-c", f'pids=""; {jobs}ok=0; for pid in $pids; do wait "$pid" || ok=1; done; exit $ok']


def container_rm(*names: str) -> list[str]:
    # -f: nothing in a bottle needs a graceful stop, and --init makes the kill instant.
    return ["docker", "rm", "-f", "-v", *names]


def container_ls(label_filter: str) -> list[str]:
    return ["docker", "ps", "-a", "--no-trunc", "--filter", f"label={label_filter}", "--format", CONTAINER_ROW]


# Every container's log is bounded on the Docker host (json-file, rotated: at most 5 files of
# 20 MB): the firewall writes a line per request, and an agent that floods requests, or writes
# to its PID 1's stdout, must not fill the host's disk. Set here, not left to the engine's
# default, which keeps a json-file log without limit.
LOG_LIMITS = ("--log-driver", "json-file", "--log-opt", "max-size=20m", "--log-opt", "max-file=5")


def create(name: str, image: str, labels: Mapping[str, str], *, network: str,
        aliases: Iterable[str] = (), user: str | None = None, env_file: str | None = None,
        env: Mapping[str, str] | None = None, mounts: Iterable[str] = (),
        hardening: bool = True, read_only: bool = False, tmpfs: Iterable[str] = (),
        limits: Mapping[str, str] | None = None, runtime: str | None = None,
        dns: Iterable[str] = (), extra: Iterable[str] = (), command: Iterable[str] = ()) -> list[str]:
    """`docker create` with bottle's defaults: --init (instant stop), labels, hardening.
    Created, not started: see containers.start."""
    argv = ["docker", "create", "--init", "--name", name, "--network", network, *LOG_LIMITS]
    argv += _labels(labels)
    for alias in aliases:
        argv += ["--network-alias", alias]
    if user:
        argv += ["--user", user]
    if hardening:
        argv += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    if read_only:
        argv.append("--read-only")
    for path in tmpfs:
        argv += ["--tmpfs", path]
    for key, value in (limits or {}).items():
        argv += [f"--{key}", value]
    if runtime:
        argv += ["--runtime", runtime]
    for server in dns:
        argv += ["--dns", server]
    if env_file:
        argv += ["--env-file", env_file]
    for key, value in sorted((env or {}).items()):
        argv += ["--env", f"{key}={value}"]
    for mount in mounts:
        argv += ["--volume", mount]
    return argv + list(extra) + [image] + list(command)


def exec_(container: str, command: Iterable[str], *, interactive: bool = False, tty: bool = False,
          user: str | None = None, workdir: str | None = None) -> list[str]:
    argv = ["docker", "exec"]
    if interactive:
        argv.append("--interactive")
    if tty:
        argv.append("--tty")
    if user:
        argv += ["--user", user]
    if workdir:
        argv += ["--workdir", workdir]
    return argv + [container] + list(command)


# The PATH of what bottle runs as root in the agent's container.
ROOT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def exec_as_root(container: str, command: Iterable[str], container_env: Iterable[str], *,
                 interactive: bool = False) -> list[str]:
    """`docker exec` as root with none of the container's own variables in force: those are
    the manifest's (a bottle.yaml the agent edited and the operator merged among them), and a
    PATH through ~/.local/bin, an LD_PRELOAD or a JAVA_TOOL_OPTIONS of the agent's would run
    its code as root. An exec cannot drop a container's variable, so each is set empty, PATH
    to the system's; in `/`, not the agent's workspace. `command` names its program by path."""
    names = sorted(set(container_env) - {"PATH"})
    env = ["--env", f"PATH={ROOT_PATH}", *(item for name in names for item in ("--env", f"{name}="))]
    argv = exec_(container, command, interactive=interactive, user="0", workdir="/")
    return argv[:2] + env + argv[2:]


# What `bounded` says when its time is up, and when the command wrote more than the controller
# takes (the engine's API says the same: engine_api).
NOT_ENDED = "{what} did not end within {seconds} s (the agent container may be holding it up)"
TOO_MUCH_OUTPUT = "{what} wrote more than {mib} MiB to stdout or stderr: the rest was not read"
# The most of a command's stdout, and of its stderr, the controller takes by default. What runs
# in the agent can write without end (a git hook, or any process of its uid through
# /proc/PID/fd/1 of the exec), and whatever reads a command's output (invoke, Fabric,
# engine_api) held all of it in memory until the command ended: gigabytes within
# AGENT_GIT_WAIT. Every exec bottle reads answers in lines (a snapshot line, a commit id, a
# probe, supervise's board); the one that says more, the bundle `pull` fetches, goes to a file.
OUTPUT_LIMIT = 8 << 20
# The script `bounded` runs, the same for every command (engine_api recognises it): $0 names the
# command, $1 is the bound in seconds, $2 the most bytes of stdout and of stderr, the rest is
# the command. Its stdout and its stderr each pass through a `head -c` on the Docker host; once
# one has had its fill, the command's next write breaks its pipe (SIGPIPE, exit 141), which is
# said as too much output. The exit code comes back through a file, as a pipeline's status is
# its last command's.
BOUNDED = (
    'seconds=$1 limit=$2; shift 2; '
    'run() { if command -v timeout >/dev/null 2>&1; then timeout "$seconds" "$@"; else "$@"; fi; }; '
    'codes=$(mktemp) || exit 125; '
    '{ { run "$@"; echo $? > "$codes"; } 2>&1 >&3 | head -c "$limit" >&2; } 3>&1 | head -c "$limit"; '
    'code=$(cat "$codes"); rm -f "$codes"; '
    'if [ "$code" = 124 ]; then echo "' + NOT_ENDED.format(what="$0", seconds="$seconds") + '" >&2; '
    'elif [ "$code" = 141 ]; then echo "' + TOO_MUCH_OUTPUT.format(what="$0", mib="$((limit >> 20))")
    + '" >&2; code=1; fi; '
    'exit "$code"')


def bounded(argv: list[str], what: str, seconds: int, output_limit: int = OUTPUT_LIMIT) -> list[str]:
    """argv, ended by `timeout` on the Docker host if it has not ended within `seconds`, with an
    error naming `what`, and at most `output_limit` bytes of its stdout and of its stderr read.
    For a `docker exec` of something the agent can hold up or make write without end (a process
    of its uid it can SIGSTOP, a FIFO it planted where git or cp reads, a git hook): not bounded
    inside the container, where the agent could stop a `timeout` too. Where the host has no
    `timeout` (coreutils), argv runs without the time bound."""
    return ["sh", "-c", BOUNDED, what, str(seconds), str(output_limit), *argv]


def cp_tar_from_stdin(container: str) -> list[str]:
    """`docker cp` of a tar read from stdin, unpacked at the container's root.

    A tar on stdin keeps the owners set in it. Not `-a`: that chowns everything to
    the container's user, and engine 20.10 resolves that user on the host."""
    return ["docker", "cp", "-", f"{container}:/"]


def kill(container: str, signal: str) -> list[str]:
    return ["docker", "kill", "--signal", signal, container]


def logs(container: str, follow: bool = False, tail: str | None = None, since: str | None = None) -> list[str]:
    argv = ["docker", "logs"]
    if follow:
        argv.append("--follow")
    if tail:
        argv += ["--tail", tail]
    if since:
        argv += ["--since", since]
    return argv + [container]


def runtimes() -> list[str]:
    return ["docker", "info", "--format", "{{json .Runtimes}}"]
