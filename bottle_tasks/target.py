"""Where commands run: the local invoke Context or a Fabric Connection, behind one interface.

Steps never call subprocess or docker themselves; they call `target.run(argv)`.
Nothing secret goes through argv (locally `ps` shows it, remotely Fabric puts env
values on the remote command line): secrets reach the Docker host as 0600 files
in the stage dir, through `put`/`write`.
"""
from __future__ import annotations

import codecs
import contextlib
import io
import os
import shlex
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from invoke.runners import Local

from . import console, docker, stopping
from .errors import CTRL_C_EXIT, INTERRUPTED_EXITS, BottleError
from .plan import SLUG_RE as SLUG
from .private_files import write_private

if TYPE_CHECKING:
    from .engine_api import Engine

STDERR_TAIL_LINES = 15
# How often invoke's runners look whether a command has ended. Its default, 10 ms, cost
# about 9 ms on each docker call; a launch makes some 25 of them (benchmarked in `make bench`).
POLL_SECONDS = 0.002
# After a Ctrl-C or stop signal: how long the command in flight is given to end (a docker call).
COMMAND_END_WAIT = 30.0


class LinearOutput:
    """For invoke's runners: after every 1,000-byte read, invoke joins all of a command's output
    so far to offer it to watchers (`Runner.respond`), even when there are none: quadratic in
    the output, which the agent may control (8 MB of output took 5.1 s here, 100 MB would take
    minutes). bottle gives no watchers, so nothing is joined. And an output stream that says
    `keeps_output = False` (a `logs --follow` sink: it runs for hours) is not also kept in
    memory for the result. Each stream is decoded as one text, not each read alone: invoke
    replaced a character split between two reads with two U+FFFD, so a file name the agent
    placed at a read's edge came back as another name."""

    watchers: list
    encoding: str
    read_chunk_size: int

    def read_proc_output(self, reader: Callable) -> Generator[str, None, None]:
        decoder = codecs.getincrementaldecoder(self.encoding)("replace")
        while data := reader(self.read_chunk_size):
            if text := decoder.decode(data):
                yield text
        if tail := decoder.decode(b"", final=True):
            yield tail

    def respond(self, buffer_: list[str]) -> None:
        if self.watchers:
            super().respond(buffer_)  # type: ignore[misc]

    def _handle_output(self, buffer_: list[str], hide: bool, output, reader) -> None:
        if getattr(output, "keeps_output", True):
            super()._handle_output(buffer_, hide, output, reader)  # type: ignore[misc]
            return
        for data in self.read_proc_output(reader):
            if not hide:
                self.write_our_output(stream=output, string=data)  # type: ignore[attr-defined]


class PromptLocal(LinearOutput, Local):
    """invoke's local runner, noticing a command's end within `POLL_SECONDS`
    (installed as the `runners.local` config of bottle's task namespace) without
    `Popen.poll`, keeping a Ctrl-C away from the commands of a stretch that ignores it
    (a rollback), and reading output in linear time (`LinearOutput`)."""

    input_sleep = POLL_SECONDS
    _exit_code: int | None = None  # the command's, once it has ended (invoke makes a runner per command)
    _reaped = False

    def start(self, command: str, shell: str, env: dict) -> None:
        if self.using_pty or signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            super().start(command, shell, env)
            return
        # While we ignore SIGINT, so must our commands: a terminal sends Ctrl-C to the whole
        # process group, and the docker CLI acts on it even when it was ignored at exec (Go's
        # signal.Notify takes an ignored SIGINT back), so a second Ctrl-C would stop a
        # rollback's `docker rm` half-way. A session of their own is out of the group's reach.
        self.process = subprocess.Popen(command, shell=True, executable=shell, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, stdin=subprocess.PIPE, start_new_session=True)

    @property
    def process_is_finished(self) -> bool:
        return self._ended() is not None

    def returncode(self) -> int | None:
        return self._ended()

    def _child(self) -> int | None:
        """The command's process id; None until it is started."""
        if getattr(self, "using_pty", False):
            return getattr(self, "pid", None)
        process = getattr(self, "process", None)
        return process.pid if process is not None else None

    def _ended(self) -> int | None:
        """The command's exit code once it has ended, else None; invoke asks every `POLL_SECONDS`.

        Not `Popen.poll`: a Ctrl-C or stop signal raises its KeyboardInterrupt from a signal
        handler, and one raised between poll's non-blocking acquire of its waitpid lock and
        the `try` that releases it leaves the lock held; every later poll then answers
        "running", and invoke waited for ever on a command long ended (a launch hung after a
        Ctrl-C, its docker call a zombie). Each step here can be cut short and done again:
        the end is peeked at (WNOWAIT) and kept before the child is reaped."""
        pid = self._child()
        if pid is None:
            return None
        if self._exit_code is None:
            try:
                ended = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # reaped by someone else (Popen.wait): ended, as Popen saw it, if it did
                known = None if self.using_pty else self.process.returncode
                self._exit_code, self._reaped = (-1 if known is None else known), True
            else:
                if ended is None:
                    return None
                self._exit_code = self._code_of(ended)
        if not self._reaped:
            with contextlib.suppress(ChildProcessError):  # reaped by an earlier call, cut short
                os.waitpid(pid, os.WNOHANG)
            self._reaped = True
        if not self.using_pty:
            self.process.returncode = self._exit_code  # Popen then never waits for it itself
        return self._exit_code

    def _code_of(self, ended: os.waitid_result) -> int:
        """As invoke says it: with a pty, the exit status or the signal's number; without,
        as Popen does (a signal's number negative)."""
        killed = ended.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
        return -ended.si_status if killed and not self.using_pty else ended.si_status

    def send_interrupt(self, interrupt: KeyboardInterrupt) -> None:
        """invoke, waiting on the command, got a KeyboardInterrupt: it keeps waiting after this."""
        if isinstance(interrupt, stopping.Stopped):
            self._pass_on(interrupt)
            return
        super().send_interrupt(interrupt)  # a Ctrl-C: the terminal sent it to the command too
        if not self.using_pty:  # in a terminal session (a shell, Claude Code) a Ctrl-C is the program's
            stopping.ctrl_c_in_command()

    def _pass_on(self, stop: stopping.Stopped) -> None:
        """A command whose output is shown (a build, `logs --follow`, a shell) may run for long
        or for ever: the stop signal is passed on to it. A quick engine call (its output hidden,
        ours to read) is waited out instead, so the rollback finds what it made."""
        if not getattr(self, "opts", {}).get("hide", True):
            pid = self._child()
            if pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(pid, stop.signum)

    def run(self, command: str, **kwargs):
        try:
            return super().run(command, **kwargs)
        except KeyboardInterrupt as interrupt:
            # Raised before invoke waited for the command (a stop signal reaches bottle alone, so
            # the command runs on; a Ctrl-C ends it too): its end is waited for, so that the
            # rollback, next, finds what it made (a network created a moment after its `rm`
            # found nothing would be left behind).
            if self._child() is not None:
                if isinstance(interrupt, stopping.Stopped):
                    self._pass_on(interrupt)
                deadline = time.monotonic() + COMMAND_END_WAIT
                while self._ended() is None and time.monotonic() < deadline:
                    time.sleep(POLL_SECONDS)
            raise


@dataclass
class Result:
    stdout: str
    stderr: str
    exited: int

    @property
    def ok(self) -> bool:
        return self.exited == 0

    @property
    def interrupted(self) -> bool:
        """Stopped by a Ctrl-C (SIGINT to the process group)."""
        return self.exited in INTERRUPTED_EXITS


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Target:
    """Base: runs argv lists somewhere, and places files in a stage dir there."""

    #: where the per-bottle stage dirs live on the Docker host
    stage_root: str
    #: True when the Docker host is another machine (files must be sent there)
    is_remote = False

    def __init__(self, runner, dry: bool = False):
        self._runner = runner  # invoke Context or fabric Connection: both have .run
        self.dry = dry

    # -- commands ----------------------------------------------------------
    def run(self, argv: list[str], *, check: bool = True, interactive: bool = False, pty: bool = False,
            stream: bool = False, timeout: float | None = None, out_stream=None, err_stream=None,
            stdin_path: str | None = None) -> Result:
        """Run argv; raise BottleError with the stderr tail when it fails and `check`.

        `stream=True` lets output through to the terminal; `interactive=True` also
        hands it our stdin (a shell, Claude Code)."""
        command = shlex.join(argv)
        if stdin_path:  # binary input (a tar): a file on the Docker host, redirected by its shell
            command += f" < {shlex.quote(stdin_path)}"
        if self.dry:
            console.dry(command)
            return Result("", "", 0)
        plain = not (interactive or pty or stream or timeout or out_stream or err_stream)
        answered = self._answered(argv, stdin_path) if plain else None
        if answered is not None:
            result = answered
        else:
            result = self._run_command(argv, command, check=check, interactive=interactive, pty=pty,
                                       stream=stream, timeout=timeout, out_stream=out_stream, err_stream=err_stream)
        if check and not result.ok:
            raise command_failed(argv, result, self.describe())
        return result

    def _answered(self, argv: list[str], stdin_path: str | None) -> Result | None:
        """The result of `argv` got without running it (see `LocalTarget`), or None."""
        return None

    def run_together(self, commands: list[list[str]]) -> None:
        """Run docker commands at once; fail (as `run` does) if any of them failed. Here as one
        shell command (`docker.side_by_side`), the same locally and over SSH."""
        self.run(docker.side_by_side(commands))

    def engine(self) -> Engine | None:
        """The engine's API where the CLI would talk to a local socket; else None."""
        return None

    def _run_command(self, argv: list[str], command: str, *, check: bool, interactive: bool, pty: bool,
                     stream: bool, timeout: float | None, out_stream, err_stream) -> Result:
        kwargs = dict(hide=not stream, warn=True, pty=pty, timeout=timeout)
        if out_stream is not None:
            kwargs["out_stream"] = out_stream
        if err_stream is not None:  # with stream=True: output to a sink (progress), not the terminal
            kwargs["err_stream"] = err_stream
        if not interactive:
            kwargs["in_stream"] = False  # never wait on, or swallow, the user's terminal
        if self._runner.config.run.echo:  # `inv --echo`; invoke echoes only commands whose output it shows
            console.echo(command)
        try:
            self._connect()
            raw = self._runner.run(command, **kwargs)
        except BottleError:
            raise  # said already, in the operator's words (`_connect`)
        except FileNotFoundError:
            raise BottleError(f"`{argv[0]}` is not installed on {self.describe()}",
                              "run `make engine` to install and start the Docker engine") from None
        except Exception as exc:  # noqa: BLE001 - invoke's CommandTimedOut, SSH errors, ...
            stopping.raise_if_stopped()  # the failure may be the stop's own doing
            raise BottleError(f"`{command[:120]}` could not run on {self.describe()}: {exc}") from None
        stopping.raise_if_stopped()  # invoke waited the command out: the stop ends the run now
        result = Result(raw.stdout or "", raw.stderr or "", raw.exited if raw.exited is not None else -1)
        if stopping.took_ctrl_c():  # the run ends, whatever the command made of it (`docker exec` ends 0)
            if not check:  # a caller that reads the result: as a Ctrl-C between two commands
                raise KeyboardInterrupt
            result = Result(result.stdout, result.stderr, CTRL_C_EXIT)
        return result

    def _connect(self) -> None:
        """Before a command: whatever must be open for it to run (an SSH connection)."""

    # -- files -------------------------------------------------------------
    def stage_dir(self, slug: str) -> str:
        return f"{self.stage_root}/{slug}/stage"

    def write(self, path: str, data: bytes) -> None:
        """Place `data` at `path` on the Docker host, mode 0600 from the first byte."""
        raise NotImplementedError

    def read(self, path: str) -> bytes | None:
        """The content of a (stage) file on the Docker host; None when it is not there."""
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        """Whether anything (a link included) is at `path` on the Docker host."""
        return self.run(["sh", "-c", 'test -e "$1" || test -L "$1"', "exists", path], check=False).ok

    def staged_slugs(self) -> list[str]:
        """The bottles with a stage dir on the Docker host, state or no state."""
        script = 'for d in "$1"/*/stage; do [ -d "$d" ] && [ ! -L "$d" ] && basename "$(dirname "$d")"; done; true'
        listed = self.run(["sh", "-c", script, "staged", self.stage_root], check=False).stdout
        return sorted(name for name in listed.split() if name and SLUG.fullmatch(name))

    def put_tree(self, local_dir: Path, remote_dir: str) -> str:
        """Make `local_dir`'s content available at `remote_dir` on the Docker host."""
        raise NotImplementedError

    def put_file(self, local: Path, path: str) -> str:
        """Make the local file `local` readable on the Docker host (0600); return where."""
        raise NotImplementedError

    def remove_tree(self, path: str) -> None:
        """Remove `path` and everything below it, then its parent if that is left empty."""
        raise NotImplementedError

    def ids(self) -> tuple[int, int]:
        """The uid and gid commands run as on the Docker host."""
        raise NotImplementedError

    def chown_tree(self, path: str, uid: int, gid: int) -> None:
        """Give `path` and everything below it to uid:gid (needs root on the Docker host)."""
        self.run(["chown", "-R", f"{uid}:{gid}", path])

    def describe(self) -> str:
        raise NotImplementedError


def command_failed(argv: list[str], result: Result, where: str) -> BottleError:
    text = tail(result.stderr or result.stdout) or f"exit code {result.exited}"
    # Before the engine check: a docker CLI stopped mid-request says "error during connect:
    # … docker.sock …: context canceled", and that is the Ctrl-C, not a missing engine.
    if result.interrupted:
        return BottleError(f"interrupted: `{' '.join(argv[:3])} …` was stopped by Ctrl-C on {where}",
                           exit_code=result.exited)
    if "Cannot connect to the Docker daemon" in text or "docker.sock" in text and "permission" not in text:
        return BottleError(f"no Docker engine answers on {where}",
                           text + "\nstart it with `make engine` (installs docker.io and starts dockerd)")
    return BottleError(f"`{' '.join(argv[:3])} …` failed on {where} (exit {result.exited})", text,
                       exit_code=result.exited)


def _makedirs_private(directory: Path) -> None:
    """mkdir -p where every directory it creates is 0700 (makedirs applies the mode
    to the last one only)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # the umask must not widen or narrow it


class LocalTarget(Target):
    """The local Docker engine, through the invoke Context of the running task."""

    def __init__(self, context, stage_root: Path, dry: bool = False):
        super().__init__(context, dry)
        self.stage_root = str(stage_root)
        self._engine: Engine | None | Literal[False] = False  # None: the CLI asks; False: not looked for yet

    def _answered(self, argv: list[str], stdin_path: str | None) -> Result | None:
        """The commands `engine_api` knows, asked over the engine's socket rather than by the
        CLI; not when the CLI would talk to another engine, nor under `inv --echo` (every
        command is shown then, as the CLI runs it), nor with BOTTLE_ENGINE_API=off."""
        engine = self.engine() if argv[:1] == ["docker"] or argv[:3] == ["sh", "-c", docker.BOUNDED] else None
        result = engine.answer(argv, stdin_path) if engine is not None else None
        if result is not None:
            stopping.raise_if_stopped()  # as after a command: a stop that came meanwhile ends the run
        return result

    def run_together(self, commands: list[list[str]]) -> None:
        """With the engine's API, each command in a thread of its own (answered over the socket,
        or by the CLI if not one `engine_api` knows): no shell and no CLI start-up per command.
        A failure is reported as `run` reports it, the first one's; all have ended by then."""
        if len(commands) < 2 or self.engine() is None:
            return super().run_together(commands)
        with ThreadPoolExecutor(len(commands)) as pool:
            results = list(pool.map(lambda argv: self.run(argv, check=False), commands))
        for argv, result in zip(commands, results, strict=True):
            if not result.ok:
                raise command_failed(argv, result, self.describe())

    def engine(self) -> Engine | None:
        if self._engine is False and not self.dry:
            from . import engine_api  # imports this module

            path = engine_api.local_socket()
            wanted = os.environ.get("BOTTLE_ENGINE_API", "on") != "off" and not self._runner.config.run.echo
            self._engine = engine_api.Engine(path) if path and wanted else None
        return self._engine or None

    def write(self, path: str, data: bytes) -> None:
        if self.dry:
            console.dry(f"write {path} ({len(data)} bytes, mode 600)")
            return
        target = Path(path)
        _makedirs_private(target.parent)
        write_private(target, data)

    def read(self, path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def staged_slugs(self) -> list[str]:
        root = Path(self.stage_root)
        if not root.is_dir():
            return []
        return sorted(entry.name for entry in root.iterdir()
                      if SLUG.fullmatch(entry.name) and (entry / "stage").is_dir() and not (entry / "stage").is_symlink())

    def put_tree(self, local_dir: Path, remote_dir: str) -> str:
        return str(local_dir)  # already on the Docker host

    def put_file(self, local: Path, path: str) -> str:
        return str(local)  # already on the Docker host

    def chown_tree(self, path: str, uid: int, gid: int) -> None:
        if self.dry:
            return super().chown_tree(path, uid, gid)
        # As root: a link in the stage dir is given away itself, never what it points at
        # (as `chown -R` does on a remote host); os.walk does not enter linked dirs either.
        for root, _dirs, files in os.walk(path):
            os.chown(root, uid, gid, follow_symlinks=False)
            for name in files:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)

    def remove_tree(self, path: str) -> None:
        if not self.dry:
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(path))

    def ids(self) -> tuple[int, int]:
        return os.getuid(), os.getgid()

    def describe(self) -> str:
        return "the local Docker host"


_OPENING = threading.Lock()


class RemoteTarget(Target):
    """A remote Docker host over SSH (Fabric); stage files go there by SFTP, 0600."""

    is_remote = True

    def __init__(self, connection, dry: bool = False):
        super().__init__(connection, dry)
        self.connection = connection
        self._home: str | None = None
        self._ids: tuple[int, int] | None = None

    def _connect(self) -> None:
        # Commands run side by side (starts, probes, listings) share this one connection:
        # the first opens it, the others wait for it. Fabric would otherwise let each thread
        # open and authenticate it at once, and the engine's answer be an SSH error.
        if not self.connection.is_connected:
            with _OPENING:
                if not self.connection.is_connected:
                    self._open()

    def _open(self) -> None:
        """Open the SSH connection; the commonest reasons it cannot be are said with their fix
        (a refused host key is said by the policy that refused it, `sshconfig`)."""
        import socket

        from paramiko import AuthenticationException
        from paramiko.ssh_exception import NoValidConnectionsError

        try:
            self.connection.open()
        except socket.gaierror as exc:
            raise BottleError(f"cannot reach {self.describe()}: its host name does not resolve ({exc.strerror})",
                              "check the host after --on, or its Host entry in ~/.ssh/config") from None
        except AuthenticationException:
            raise BottleError(f"{self.describe()} refused the SSH login",
                              "check the user after --on and that ssh holds your key (`ssh-add -l`, or "
                              "IdentityFile in ~/.ssh/config); `ssh USER@HOST true` must work") from None
        except (NoValidConnectionsError, TimeoutError, ConnectionError) as exc:
            raise BottleError(f"cannot reach {self.describe()} over SSH: {exc}",
                              "check that sshd runs there and the port (--on USER@HOST:PORT, or Port in "
                              "~/.ssh/config); `ssh USER@HOST true` must work") from None

    @property
    def stage_root(self) -> str:  # type: ignore[override]
        if self._home is None:
            self._home = "~" if self.dry else self._remote_home()
        return f"{self._home}/.local/state/bottle"

    def _remote_home(self) -> str:
        """The remote user's $HOME, or an error. Never a fallback such as /tmp: the stage files
        (CA keys, API keys) would go below a directory every user of the host can write, where
        another user could have made `.local/state/bottle/<slug>` theirs beforehand and read,
        or swap, each file written there."""
        home = self.run(["sh", "-c", 'printf %s "$HOME"']).stdout.strip()
        if not home.startswith("/"):
            raise BottleError(f"$HOME of {self.describe()} is {home!r}, not an absolute path",
                              "bottle keeps its stage files (keys among them) in $HOME/.local/state/bottle "
                              "on the Docker host: give this user a home directory")
        return home.rstrip("/")

    def _mkdir(self, path: str) -> None:
        # umask, not `mkdir -m`: every directory it creates must be 0700, not only the last.
        self.run(["sh", "-c", 'umask 077 && mkdir -p "$1"', "mkdir", path])

    def write(self, path: str, data: bytes) -> None:
        if self.dry:
            console.dry(f"sftp put {path} ({len(data)} bytes, mode 600)")
            return
        self._mkdir(os.path.dirname(path))
        sftp = self.connection.sftp()
        tmp = f"{path}.tmp"
        # Create with the final mode before any byte is written.
        with sftp.open(tmp, "wb") as handle:
            handle.chmod(0o600)
            handle.write(data)
        sftp.posix_rename(tmp, path)

    def read(self, path: str) -> bytes | None:
        try:
            with self.connection.sftp().open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def put_file(self, local: Path, path: str) -> str:
        """Stream a (large) file by SFTP, 0600 before the first byte, never whole in memory."""
        if self.dry:
            console.dry(f"sftp put {path} (mode 600)")
            return path
        self._mkdir(os.path.dirname(path))
        sftp = self.connection.sftp()
        with sftp.open(f"{path}.tmp", "wb") as handle, open(local, "rb") as source:
            handle.chmod(0o600)
            handle.set_pipelined(True)
            shutil.copyfileobj(source, handle, 1 << 20)
        sftp.posix_rename(f"{path}.tmp", path)
        return path

    def put_tree(self, local_dir: Path, remote_dir: str) -> str:
        """Send a build context as one tar stream and unpack it on the host."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            archive.add(str(local_dir), arcname=".")
        self.run(["rm", "-rf", remote_dir])
        self.write(remote_dir + ".tar", buffer.getvalue())
        self._mkdir(remote_dir)
        self.run(["tar", "-xf", remote_dir + ".tar", "-C", remote_dir])
        self.run(["rm", "-f", remote_dir + ".tar"])
        return remote_dir

    def remove_tree(self, path: str) -> None:
        self.run(["rm", "-rf", path], check=False)
        self.run(["rmdir", "--ignore-fail-on-non-empty", os.path.dirname(path)], check=False)

    def ids(self) -> tuple[int, int]:
        if self._ids is None:
            out = self.run(["id", "-u"]).stdout.strip(), self.run(["id", "-g"]).stdout.strip()
            self._ids = (int(out[0] or 0), int(out[1] or 0))
        return self._ids

    def describe(self) -> str:
        return f"{self.connection.user}@{self.connection.host}"
