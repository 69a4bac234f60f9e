"""Run `git http-backend` (CGI) for one request: a bounded request body in, its headers
and streamed body out. Only the headers git's protocol needs are passed back."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import config, upstream

MAX_CGI_HEAD = 64 * 1024
# A pushed object is inflated by git before any hook sees it, and zlib turns 1 KiB into
# 1 MiB: a 400 KiB pack can hold a 400 MB blob. Larger than this, git streams an object
# rather than holding it whole in memory (index-pack, cat-file); the scan reads at most
# 32 MiB anyway.
BIG_FILE_THRESHOLD = "16m"
# CPU-seconds any one git process of a push may use (inflating and hashing a push's objects;
# a real 50 MiB pack needs a few). A pack of zeros inflates at ~100 MB/s of CPU, so without
# it one push of push.max_bytes could keep a core busy for minutes before the hook runs.
PUSH_CPU_SECONDS = 60
PASSED_HEADERS = {"content-type", "cache-control", "expires", "pragma"}
HOOKS = Path(__file__).resolve().parent / "hooks"


def backend_env(remote_name: str, path_info: str, query: str, method: str, content_type: str,
                length: int, git_protocol: str, extra: dict[str, str]) -> dict[str, str]:
    pairs = [
        ("http.receivepack", "true"),        # the agent is the only client, and the hook judges
        ("http.uploadpack", "true"),
        ("core.hooksPath", str(HOOKS)),
        ("receive.fsckObjects", "true"),     # malformed objects from the agent are refused
        ("receive.denyDeleteCurrent", "false"),  # the push policy decides, with a reason
        ("uploadpack.allowFilter", "true"),
        ("receive.advertisePushOptions", "false"),
        ("core.bigFileThreshold", BIG_FILE_THRESHOLD),
    ]
    env = {
        **upstream.local_env(),
        "PYTHONPATH": os.environ.get("PYTHONPATH", "/opt/bottle"),
        "GIT_PROJECT_ROOT": str(config.MIRRORS),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(length),
        "REMOTE_USER": "agent",
        "REMOTE_ADDR": "agent",
        "GIT_CONFIG_COUNT": str(len(pairs)),
        **extra,
    }
    if git_protocol:
        env["GIT_PROTOCOL"] = git_protocol
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    return env


def start(env: dict[str, str], body, cpu_seconds: int | None = None) -> subprocess.Popen:
    """`git http-backend`; with `cpu_seconds`, each of its processes is killed (SIGXCPU, then
    SIGKILL) when it has used that much CPU."""
    return subprocess.Popen(cpu_limited(["git", "http-backend"], cpu_seconds), env=env, stdin=body,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(config.MIRRORS))


def cpu_limited(argv: list[str], cpu_seconds: int | None) -> list[str]:
    """`argv` under RLIMIT_CPU, which its children inherit (set by prlimit before exec: not
    from Python between fork and exec, which is unsafe in this threaded server)."""
    if cpu_seconds is None:
        return argv
    return ["prlimit", f"--cpu={cpu_seconds}:{cpu_seconds + 5}", "--", *argv]


def read_head(stream) -> tuple[int, list[tuple[str, str]]]:
    """The CGI header block: (status, headers worth passing on)."""
    status, size = 200, 0
    headers: list[tuple[str, str]] = []
    while True:
        line = stream.readline(MAX_CGI_HEAD)
        size += len(line)
        if not line or size > MAX_CGI_HEAD:
            raise ValueError("git http-backend ended before its headers did")
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            return status, headers
        name, _, value = text.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "status":
            status = int(value.split(" ", 1)[0])
        elif name in PASSED_HEADERS:
            headers.append((name, value))
