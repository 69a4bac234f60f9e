"""Helpers shared by the tests: run the real `inv` CLI and docker, write manifests."""
from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import secrets
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INV = str(Path(sys.executable).with_name("inv"))
HOST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def missing(message: str) -> None:
    """A test's prerequisite (the engine, sshd, the ssh client) is missing: under CI=true the
    run fails (a skipped test proves nothing); on a developer's machine the test skips."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{message} (required under CI=true)", pytrace=False)
    pytest.skip(message)


@contextlib.contextmanager
def module_state_home(tmp_path_factory, prefix: str):
    """(folder, state dir) for one test module's bottle, with XDG_STATE_HOME pointing at the
    state dir until the block ends (a module-scoped fixture cannot use `monkeypatch`)."""
    import pytest

    tmp = tmp_path_factory.mktemp(prefix)
    state_home = tmp / "state"
    state_home.mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_STATE_HOME", str(state_home))
    try:
        yield tmp, state_home
    finally:
        mp.undo()


#: every bottle name unique() handed out in this test process (their home volumes, which
#: `down` keeps on purpose, are removed at the end of the session: tests/engine/conftest.py)
SLUGS: set[str] = set()


def unique(prefix: str = "t") -> str:
    slug = f"{prefix}{secrets.token_hex(3)}"
    SLUGS.add(slug)
    return slug


def remove_home_volumes(slugs: set[str]) -> list[str]:
    """Remove the home volumes of these bottles (only theirs: selected by the slug label)."""
    out = docker("volume", "ls", "--filter", "label=bottle.slug", "--format",
                 '{{.Name}} {{.Label "bottle.slug"}}', check=False).stdout
    names = [name for name, _, slug in (line.partition(" ") for line in out.splitlines()) if slug in slugs]
    for name in names:
        docker("volume", "rm", name, check=False)
    return names


def write_manifest(folder: Path, agents: dict, extra: str = "", bundle: str = HOST_BUNDLE) -> Path:
    """A manifest for tests; agents maps name -> YAML body (already indented 4)."""
    lines = ["version: 1", "trust:", f"  extra_ca_bundle: {bundle}", "agents:"]
    for name, body in agents.items():
        lines.append(f"  {name}:")
        lines.append(body.rstrip() or "    prompt: test")
    path = folder / "bottles.yaml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def inv(*args: str, manifest: Path | None = None, check: bool = True, timeout: int = 900,
        env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """Run the real `inv` CLI from the repo, as a user would."""
    full_env = dict(os.environ)
    if manifest:
        full_env["INVOKE_BOTTLE_MANIFEST"] = str(manifest)
    full_env.update(env or {})
    proc = subprocess.run([INV, *args], cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"inv {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=300)


def labelled(slug: str) -> list[str]:
    """Names of every container and network labelled with this bottle's slug."""
    names = []
    for kind in (["ps", "-a"], ["network", "ls"]):
        out = docker(*kind, "--filter", f"label=bottle.slug={slug}", "--format", "{{.Names}}"
                     if kind[0] == "ps" else "{{.Name}}").stdout
        names += [line for line in out.splitlines() if line]
    return names


#: the engine's events of a removal, as `interrupted_at_event` matches them
REMOVALS = ("container kill", "container die", "container stop", "container destroy")


def interrupted_at_event(args: list[str], manifest: Path, slug: str, nth: int, kinds: tuple[str, ...] = (),
                         twice: bool = False, env: dict | None = None,
                         signum: int = signal.SIGINT) -> tuple[int, str, list[str]]:
    """`inv ARGS`, Ctrl-C'd as soon as the engine has reported the `nth` event of bottle
    `slug`'s containers and networks (of those `kinds`, "TYPE ACTION" such as "container
    create", when given), and with `twice` again 0.15 s later. SIGINT goes to the whole process
    group, as a terminal sends a Ctrl-C, so the docker (or ssh) commands in flight get it too;
    another `signum` (SIGTERM) to bottle alone, as `kill` sends it.

    A point inside the command's own work, whatever this machine's start-up takes: a Ctrl-C
    while Python still imports invoke is Python's (a KeyboardInterrupt traceback), and a delay
    long enough for a slow machine's start-up misses a quick machine's work. Its exit code, its
    stderr, and the events seen before the signal (fewer than `nth`: it ended first, unsignalled)."""
    # --since replays what happened before `docker events` had subscribed: none is missed.
    events = subprocess.Popen(["docker", "events", "--since", f"{time.time():.3f}", "--format",
                               "{{.Actor.Attributes.name}}|{{.Type}} {{.Action}}"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    reported: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in events.stdout or ():
            name, _, what = line.strip().partition("|")
            if name.startswith(f"bottle-{slug}-") and (not kinds or what.startswith(kinds)):
                reported.put(what)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        run = subprocess.Popen([INV, *args], cwd=REPO, env=signalled_inv_env(manifest, env), text=True,
                               start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
        while len(seen) < nth and run.poll() is None:
            with contextlib.suppress(queue.Empty):
                seen.append(reported.get(timeout=0.005))
        for again in (False, True) if twice else (False,):
            if again:
                time.sleep(0.15)
            if run.poll() is None and signum == signal.SIGINT:
                os.killpg(run.pid, signum)
            elif run.poll() is None:
                run.send_signal(signum)
        err = ended(run, f"`inv {' '.join(args)}` signalled ({signum}) after the events {seen}")
    finally:
        events.kill()
        events.wait()
    return run.returncode, err, seen


def signalled_inv_env(manifest: Path, env: dict | None = None) -> dict:
    """The environment of an `inv` a test signals: with Python's fault handler on, so that one
    that hangs can be made to show where (`ended`)."""
    return dict(os.environ, INVOKE_BOTTLE_MANIFEST=str(manifest), PYTHONFAULTHANDLER="1", **(env or {}))


def ended(run: subprocess.Popen, what: str, timeout: float = 120) -> str:
    """The stderr of `run` (started with `signalled_inv_env`, in a session of its own) once it
    has ended. One that does not end within `timeout` fails the test with what it was doing:
    the processes of its session, and every Python thread's stack (SIGABRT to the fault handler)."""
    try:
        return run.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        processes = subprocess.run(["ps", "-o", "pid,ppid,pgid,stat,etime,args", "-s", str(run.pid)],
                                   capture_output=True, text=True).stdout
        run.send_signal(signal.SIGABRT)
        try:
            err = run.communicate(timeout=20)[1]
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            err = run.communicate()[1]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        raise AssertionError(f"{what} did not end within {timeout:.0f}s:\n{processes}\n{err}") from None


def git_output(root: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """git in `root` with a fixed author and committer; its stdout."""
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, input=stdin,
                          env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
                                   GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")).stdout


def forged_index(root: Path, paths: list[str]) -> None:
    """A version-2 `.git/index` listing `paths`, each a regular file holding one blob: git
    itself refuses to add absolute or `..` paths, but a project's index is just a file."""
    blob = bytes.fromhex(git_output(root, "hash-object", "-w", "--stdin", stdin=b"x\n").decode().strip())
    body = b""
    for path in sorted(p.encode() for p in paths):
        entry = struct.pack(">10I", 0, 0, 0, 0, 0, 0, 0o100644, 0, 0, 2) + blob + struct.pack(">H", len(path)) + path
        body += entry + b"\0" * (8 - len(entry) % 8)
    data = b"DIRC" + struct.pack(">II", 2, len(paths)) + body
    (root / ".git" / "index").write_bytes(data + hashlib.sha1(data).digest())
