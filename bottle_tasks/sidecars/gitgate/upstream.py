"""git commands against an upstream: only through the firewall (its proxy, its CA alone),
with the credential helper as the only source of the token, bounded in time.

Configuration travels as GIT_CONFIG_* variables of the child process only: nothing in
the container's environment, nothing on a command line but the remote's public URL."""
from __future__ import annotations

import os
import subprocess
import sys

from . import config
from .remotes import Remote

TIMEOUT = 300  # seconds for one fetch or push to the upstream
CA = "firewall-ca.pem"


def git_config(remote: Remote) -> list[tuple[str, str]]:
    helper = f"!{sys.executable} -m gitgate.credential {remote.name}"
    return [
        ("credential.helper", ""),           # forget any other helper
        ("credential.helper", helper),
        ("credential.useHttpPath", "true"),  # the helper sees the path and answers for this repo only
        ("http.followRedirects", "false"),   # a redirect cannot take the token elsewhere
        ("protocol.allow", "never"),
        ("protocol.https.allow", "always"),
        ("core.askPass", ""),
        ("transfer.fsckObjects", "true"),
    ]


def env(remote: Remote, extra: dict[str, str] | None = None) -> dict[str, str]:
    proxy = f"http://{config.firewall()}"
    out = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(config.RUN_DIR / "home"),
        "PYTHONPATH": os.environ.get("PYTHONPATH", "/opt/bottle"),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_SSL_CAINFO": str(config.CONF_DIR / CA),
        "HTTPS_PROXY": proxy, "https_proxy": proxy,
        "LANG": "C.UTF-8",
    }
    pairs = git_config(remote)
    out["GIT_CONFIG_COUNT"] = str(len(pairs))
    for i, (key, value) in enumerate(pairs):
        out[f"GIT_CONFIG_KEY_{i}"], out[f"GIT_CONFIG_VALUE_{i}"] = key, value
    out.update(extra or {})
    return out


def run(remote: Remote, args: list[str], cwd: str, extra_env: dict[str, str] | None = None,
        timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=env(remote, extra_env), capture_output=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def local_env() -> dict[str, str]:
    """For git commands that touch only the mirror: no network configuration at all."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(config.RUN_DIR / "home"), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0", "LANG": "C.UTF-8"}
